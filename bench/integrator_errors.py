"""The error of every integration scheme on four models, against float64 references.

Usage::

    python bench/integrator_errors.py

Runs in float64 on the default JAX platform and prints a Markdown table: the maximum absolute
error over every recorded step (every state variable, every neuron) against

* exponential decay ``dv/dt = -v/tau`` (tau 10, dt 0.1, 1000 steps): the exact solution;
* harmonic oscillator ``dx/dt = v, dv/dt = -w^2 x`` (w 2, dt 0.05, 200 steps): cos / sin;
* LIF (tests/models/lif_64.json, I below threshold so no spikes, dt 0.1, 1000 steps): the
  exact solution;
* Hodgkin-Huxley (tests/models/hh_64.json, I 0..10 with spikes, dt 0.01, 2000 steps): float64
  RK4 at dt 0.001 (numpy), so schemes of order > 1 show mostly spike-timing shifts.

"n/a" marks a scheme that does not apply (the model error spikeforge gives is shown below the
table).
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "python"))

import spikeforge as sf  # noqa: E402
from references import hh_derivatives, load_spec  # noqa: E402

METHODS = ["euler", "rk2", "heun", "rk4", "exponential_euler", "exact"]


def simulate(model, count, dt, steps, record, /, **values):
    state = model.init_state(count, dtype=np.float64, **values)
    _, out = jax.jit(lambda s: model.run(s, dt=dt, steps=steps, record=record))(state)
    return {k: np.asarray(v) for k, v in out.traces.items()}


def decay(method):
    tau, dt, steps = 10.0, 0.1, 1000
    model = sf.NeuronModel("dv/dt = -v / tau : 1", constants={"tau": tau}, method=method)
    v0 = np.linspace(-1, 1, 64)
    tr = simulate(model, 64, dt, steps, ["v"], v=v0)
    t = np.arange(steps)[:, None] * dt
    return np.abs(tr["v"] - v0 * np.exp(-t / tau)).max()


def oscillator(method):
    w, dt, steps = 2.0, 0.05, 200
    model = sf.NeuronModel("dx/dt = v : 1\ndv/dt = -w**2 * x : 1", constants={"w": w}, method=method)
    x0, v0 = np.linspace(-1, 1, 64), np.linspace(1, -1, 64)
    tr = simulate(model, 64, dt, steps, ["x", "v"], x=x0, v=v0)
    t = np.arange(steps)[:, None] * dt
    x = x0 * np.cos(w * t) + v0 / w * np.sin(w * t)
    v = -x0 * w * np.sin(w * t) + v0 * np.cos(w * t)
    return max(np.abs(tr["x"] - x).max(), np.abs(tr["v"] - v).max())


def lif(method):
    spec = load_spec("lif_64")
    p = spec["constants"]
    dt, steps = 0.1, 1000
    model = sf.NeuronModel(
        spec["equations"],
        threshold=spec["threshold"],
        reset=spec["reset"],
        refractory=spec["refractory"],
        constants=p,
        method=method,
    )
    current = np.linspace(0, 14, 64)  # v_inf = v_rest + R I stays below v_th = -50
    tr = simulate(model, 64, dt, steps, ["v"], v=-70.0, I=current)
    t = np.arange(steps)[:, None] * dt
    v_inf = p["v_rest"] + p["R"] * current
    return np.abs(tr["v"] - (v_inf + (-70.0 - v_inf) * np.exp(-t / p["tau"]))).max()


def hh_reference(current, dt, steps, p, fine=10):
    y = np.stack([np.full_like(current, c) for c in (-65.0, 0.05, 0.6, 0.32)])
    out = np.empty((steps,) + y.shape)
    h = dt / fine
    for s in range(steps):
        out[s] = y
        for _ in range(fine):
            k1 = hh_derivatives(y, current, p)
            k2 = hh_derivatives(y + h / 2 * k1, current, p)
            k3 = hh_derivatives(y + h / 2 * k2, current, p)
            k4 = hh_derivatives(y + h * k3, current, p)
            y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return out


_HH_REF = {}


def hh(method):
    spec = load_spec("hh_64")
    p = spec["constants"]
    dt, steps = 0.01, 2000
    current = np.linspace(0, 10, 32)
    model = sf.NeuronModel(
        spec["equations"],
        threshold=spec["threshold"],
        refractory=spec["refractory"],
        constants=p,
        method=method,
    )
    tr = simulate(model, 32, dt, steps, ["v", "m", "h", "n"], I=current, v=-65.0, m=0.05, h=0.6, n=0.32)
    if "ref" not in _HH_REF:
        _HH_REF["ref"] = hh_reference(current, dt, steps, p)
    ref = _HH_REF["ref"]
    return max(np.abs(tr[k] - ref[:, i]).max() for i, k in enumerate("vmhn"))


def main():
    models = [
        ("exp decay", decay),
        ("oscillator", oscillator),
        ("LIF (sub-threshold)", lif),
        ("HH (spiking)", hh),
    ]
    notes = []
    print(f"platform: {jax.devices()[0].platform}, float64\n")
    print("| method | " + " | ".join(m for m, _ in models) + " |")
    print("|---" * (len(models) + 1) + "|")
    for method in METHODS:
        row = []
        for name, fn in models:
            try:
                row.append(f"{fn(method):.2e}")
            except sf.ModelError as e:
                row.append("n/a")
                notes.append(f"{method} / {name}: {e.detail}")
        print(f"| {method} | " + " | ".join(row) + " |")
    chosen = []
    for label in ["lif_64", "hh_64"]:
        spec = load_spec(label)
        model = sf.NeuronModel(
            spec["equations"],
            threshold=spec.get("threshold"),
            reset=spec.get("reset"),
            refractory=spec.get("refractory"),
            constants=spec["constants"],
        )
        chosen.append(f"{label}: {model.method}")
    print("\nmethod=None chooses: " + ", ".join(chosen))
    for n in notes:
        print(f"\n- {n}")


if __name__ == "__main__":
    main()
