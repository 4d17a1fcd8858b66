"""Benchmarks gradients through network runs: spikeforge's forward + generated network adjoint
kernel against its forward alone and against ``jax.grad`` of a pure-JAX ``lax.scan`` of the same
network, in one process, and the peak device memory of the gradient call.

Usage::

    python bench/bench_network_gradients.py [--neurons 4000] [--steps 1000] [--dtype float32]
        [--repeats 3] [--checkpoint-every K] [--quick] [--json PATH]

The network (issue 12: "a COBA x1 network for 1000 steps"): bench/bench_networks.py's ``coba_be``
(brainevent's COBA: 4000 LIF neurons, 80% excitatory, fixed out-degree 80 drawn with
replacement, conductances ``ge``/``gi`` with the 1e-3 factor, 20 mV drive, refractory 5 ms,
dt 0.1 ms) integrated by forward Euler, with a fast-sigmoid surrogate threshold and its weights
trainable, the reset detached (``detach_reset=True``, snnTorch's: the
differentiated reset's jump of 10 mV through the surrogate makes the gradients of a 1000-step
run overflow float32): the excitatory projection's per synapse (``w``, around 0.6), the inhibitory one's
shared (``wi``, 6.7). The loss reads the spike counts (a squared distance to a target count)
and the final ``v``; gradients with respect to ``w``, ``wi`` and the initial ``v``.

The ``lax.scan`` baseline is written here, apart from the generated code: Brian2's schedule
(refractoriness from the start of the step, the Euler update, threshold through a
Heaviside whose derivative is the surrogate (the step plus ``s - stop_gradient(s)``, ``s`` the
surrogate's antiderivative), the step's spikes propagated by a
``segment_sum`` over the synapses, the reset with the spike under ``stop_gradient``), reading
spikeforge's connectivity from the state.
Both gradients are computed in the same run and compared: norm-wise relative difference per
parameter, within 5e-2 in float32 (a neuron right at threshold may round differently; the
comparison is there to catch a wrong kernel, not float32 noise), and, in the same run, a small
network (200 neurons, 200 steps) in float64 to 1e-8 (``--no-check`` skips it). The exit status
is 1 when either is above its tolerance, so a wrong kernel is flagged instead of reported as
fast.

``--blocks 16,32,64``: fwd+bwd timed again with the CUDA adjoint kernel's grid limited to each
of these numbers of blocks (``SPIKEFORGE_NETWORK_ADJOINT_BLOCKS``; no effect on a CPU), a
gradient program compiled for each (XLA replays a program's custom calls from a CUDA graph
recorded at its first run: a setting changed after that has no effect on it).
``--configuration 'VAR=a VAR2=b'``: the same with several variables set together (e.g. main's
defaults where a run changes two), as one entry of the same sweeps.
``--setting 'VAR=a;b'``: fwd+bwd timed again (and its gradients compared with ``lax.scan``'s)
with the environment variable VAR set to each value in turn (settings read at each call, e.g.
``SPIKEFORGE_NETWORK_ADJOINT_FAST=none;walk``), twice over in that order (drift shows).

Times are medians of ``--repeats`` calls of the jitted functions after a warm-up call that
compiles. Peak memory: the device's ``peak_bytes_in_use`` (``jax.Device.memory_stats()``, where
the backend has it) above what was in use before the first call of the spikeforge gradient, then
of the ``lax.scan`` gradient (only where it raised the peak). Targets (issue 12):
forward + backward <= 3x forward alone; >= 10x faster than ``jax.grad`` of ``lax.scan``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

import jax

jax.config.update("jax_enable_x64", True)  # the float64 check; float32 arrays stay float32

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import spikeforge as sf  # noqa: E402
from bench_gradients import memory_in_use, timed  # noqa: E402  (this folder: the same timing)

DT = 0.1  # ms
OUT_DEGREE = 80
EXC_FRACTION = 0.8
REFRACTORY_STEPS = 50  # 5 ms
FACTOR = 1e-3  # brainevent's COBA: the weights are in mS against mV
C = dict(tau=20.0, El=-60.0, Vt=-50.0, Vr=-60.0, Ee=0.0, Ei=-80.0, taue=5.0, taui=10.0, I_ext=20.0)
WE, WI = 0.6, 6.7
SLOPE = 1.0  # fast sigmoid, per mV
TARGET_COUNT = 3.0
EQUATIONS = f"""
dv/dt = (-(v - El) + I_ext + {FACTOR}*(ge*(Ee - v) + gi*(Ei - v)))/tau : 1 (unless refractory)
dge/dt = -ge/taue : 1
dgi/dt = -gi/taui : 1
"""


def build(n: int):
    """The spikeforge network: one group, the excitatory and inhibitory projections."""
    n_exc = round(EXC_FRACTION * n)
    P = sf.NeuronGroup(
        n,
        EQUATIONS,
        threshold="v > Vt",
        reset="v = Vr",
        refractory=REFRACTORY_STEPS * DT,
        constants=C,
        method="euler",
        surrogate=sf.surrogate.fast_sigmoid(SLOPE, detach_reset=True),
        name="P",
    )
    Ce = sf.Synapses(P[:n_exc], P, "w : 1", on_pre="ge_post += w", name="Ce")
    Ci = sf.Synapses(P[n_exc:], P, "wi : 1 (shared)", on_pre="gi_post += wi", name="Ci")
    Ce.connect(fixed_out_degree=OUT_DEGREE, replace=True, seed=11)
    Ci.connect(fixed_out_degree=OUT_DEGREE, replace=True, seed=12)
    return sf.Network(P, Ce, Ci, dt=DT), n_exc


def initial_state(net, n: int, dtype):
    rng = np.random.default_rng(0)
    v0 = rng.normal(-55.0, 2.0, n)
    return net.init_state(
        seed=0,
        dtype=dtype,
        P=dict(v=v0, ge=0.0, gi=0.0),
        Ce=dict(w=lambda m: np.random.default_rng(1).uniform(0.5, 1.5, m) * WE),
        Ci=dict(wi=WI),
    )


def synapses(state, name: str, source_start: int):
    """(source, target) of every synapse of a projection, as indices of the group, in the
    state's (CSR) order."""
    rows = np.asarray(state[name]["row_offsets"])
    i = np.repeat(np.arange(rows.size - 1), np.diff(rows)) + source_start
    return i, np.asarray(state[name]["targets"]).astype(np.int64)


def scan_run(state, n: int, n_exc: int, steps: int):
    """``(v0, w, wi) -> (final v, spike counts)``: the network as a ``lax.scan``."""

    def heaviside(z):
        """The step, with the fast sigmoid's derivative ``1 / (1 + slope |z|)^2`` as its
        derivative: the step plus ``s(z) - s(z)`` (exactly 0), ``s(z) = z / (1 + slope |z|)``
        being the derivative's antiderivative, the second ``s`` without gradient."""
        s = z / (1 + SLOPE * jnp.abs(z))
        return (z > 0).astype(z.dtype) + (s - jax.lax.stop_gradient(s))

    i_e, j_e = synapses(state, "Ce", 0)
    i_i, j_i = synapses(state, "Ci", n_exc)
    ge0, gi0 = state["P"]["ge"], state["P"]["gi"]

    def run(v0, w, wi):
        def step(carry, t):
            v, ge, gi, lastspike, count = carry
            not_refractory = lastspike <= t - REFRACTORY_STEPS
            dv = (-(v - C["El"]) + C["I_ext"] + FACTOR * (ge * (C["Ee"] - v) + gi * (C["Ei"] - v))) / C["tau"]
            u_v = jnp.where(not_refractory, v + DT * dv, v)
            u_ge = ge + DT * (-ge / C["taue"])
            u_gi = gi + DT * (-gi / C["taui"])
            spike = not_refractory.astype(v.dtype) * heaviside(u_v - C["Vt"])
            new_ge = u_ge + jax.ops.segment_sum(w * spike[i_e], j_e, num_segments=n)
            new_gi = u_gi + jax.ops.segment_sum(wi * spike[i_i], j_i, num_segments=n)
            fired = jax.lax.stop_gradient(spike)  # the reset detached (snnTorch's)
            new_v = fired * C["Vr"] + (1 - fired) * u_v
            lastspike = jnp.where(spike > 0, t, lastspike)
            return (new_v, new_ge, new_gi, lastspike, count + spike), None

        never = jnp.full((n,), -(10**9), jnp.int32)
        carry = (v0, ge0, gi0, never, jnp.zeros(n, v0.dtype))
        (v, _, _, _, count), _ = jax.lax.scan(step, carry, jnp.arange(steps, dtype=jnp.int32))
        return v, count

    return run


def loss_of(v, count):
    return jnp.mean((count - TARGET_COUNT) ** 2) + 1e-3 * jnp.mean((v - C["El"]) ** 2)


def segment_length(net, state, steps: int, checkpoint_every: int | None, n: int) -> int:
    """The steps between the gradient's checkpoints (no state monitor here; the adjoint
    kernel's record mode's longest segment, the refractory period, by default where it fits)."""
    from spikeforge.network import _abi
    from spikeforge.network.gradients import segment_lengths

    spec = net._compile(net._variant_of(state, steps)[0])["spec"]
    recorded = _abi.network_adjoint(spec, "c")["layout"].get("recorded_segment")
    return segment_lengths(steps, checkpoint_every, [], n, recorded)[0]


def relative_differences(got, want) -> list[float]:
    """Norm-wise relative difference of each gradient."""
    out = []
    for a, b in zip(got, want):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        out.append(float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300)))
    return out


def gradient_functions(n: int, steps: int, dtype, checkpoint_every):
    """The network, its state, the jitted (forward, spikeforge gradient, lax.scan gradient, ...)
    and a maker of more jitted spikeforge gradients (each a program of its own: see
    ``with_settings``)."""
    net, n_exc = build(n)
    state = initial_state(net, n, dtype)
    scan = scan_run(state, n, n_exc, steps)

    def with_params(v0, w, wi):
        return dict(state, P=dict(state["P"], v=v0), Ce=dict(state["Ce"], w=w), Ci=dict(state["Ci"], wi=wi))

    def sf_loss(v0, w, wi):
        new, out = net.run(with_params(v0, w, wi), steps=steps, checkpoint_every=checkpoint_every)
        return loss_of(new["P"]["v"], out.spike_count["P"])

    def scan_loss(v0, w, wi):
        return loss_of(*scan(v0, w, wi))

    def forward(v0, w, wi):
        new, out = net.run(with_params(v0, w, wi), steps=steps)
        return new["P"]["v"], out.spike_count["P"]

    def sf_vjp_forward(v0, w, wi):
        return jax.vjp(sf_loss, v0, w, wi)[0]

    args = (state["P"]["v"], state["Ce"]["w"], state["Ci"]["wi"])
    argnums = (0, 1, 2)

    def fresh_grad():
        return jax.jit(jax.grad(lambda *a: sf_loss(*a), argnums=argnums))

    return (
        state,
        args,
        jax.jit(forward),
        jax.jit(jax.grad(sf_loss, argnums=argnums)),
        jax.jit(jax.grad(scan_loss, argnums=argnums)),
        jax.jit(scan),
        jax.jit(sf_vjp_forward),
        net,
        fresh_grad,
    )


BLOCKS_VAR = "SPIKEFORGE_NETWORK_ADJOINT_BLOCKS"


def with_settings(fresh_grad, args, g_scan, settings: list[tuple[tuple[str, str], ...]], repeats: int) -> dict:
    """fwd+bwd and its gradients' differences from ``g_scan`` with each entry of ``settings``
    (one or more (variable, value) pairs) in the environment (the others as the run's), the
    list timed twice over; the variables restored after. Each entry times a gradient program of its own
    (``fresh_grad()``, compiled and first run with the value set): XLA records a program's
    custom calls into a CUDA graph at its first run (command buffers) and replays it, so a
    handler reads the environment when the graph is recorded, not at each call."""
    saved = {var: os.environ.get(var) for entry in settings for var, _ in entry}

    def restore():
        for var, value in saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value

    out, grads = {}, {}
    try:
        for sweep in range(2):
            for pairs in settings:
                restore()  # only this entry's variables differ from the run's environment
                for var, value in pairs:
                    os.environ[var] = value
                entry = out.setdefault(" ".join(f"{var}={value}" for var, value in pairs), dict(times=[]))
                if "error" in entry:
                    continue
                try:
                    sf_grad = grads.setdefault(pairs, fresh_grad())
                    t = timed(sf_grad, *args, repeats=repeats)
                    if sweep == 0:
                        entry["differences"] = relative_differences(jax.block_until_ready(sf_grad(*args)), g_scan)
                except Exception as e:  # noqa: BLE001 - a failing setting is reported, the others kept
                    entry["error"] = f"{type(e).__name__}: {e}"[:500]
                    continue
                entry["times"].append(t)
    finally:
        restore()
    return out


def measure(
    n: int,
    steps: int,
    dtype_name: str,
    repeats: int,
    checkpoint_every: int | None,
    blocks: list[int],
    settings: list[tuple[tuple[str, str], ...]] = (),
) -> dict:
    dtype = jnp.dtype(dtype_name)
    device = jax.devices()[0]
    state, args, forward, sf_grad, scan_grad, scan_forward, sf_vjp_forward, net, fresh_grad = gradient_functions(
        n, steps, dtype, checkpoint_every
    )
    jax.block_until_ready((state, args))
    before = memory_in_use(device)
    g_sf = jax.block_until_ready(sf_grad(*args))
    after = memory_in_use(device)
    peak_sf = None if before is None or after is None else after[1] - before[0]
    g_scan = jax.block_until_ready(scan_grad(*args))
    later = memory_in_use(device)
    peak_scan = None
    if later is not None and after is not None and later[1] > after[1]:
        peak_scan = later[1] - before[0]
    t_gradient = timed(sf_grad, *args, repeats=repeats)
    t_forward = timed(forward, *args, repeats=repeats)
    t_scan = timed(scan_grad, *args, repeats=repeats)
    t_scan_forward = timed(scan_forward, *args, repeats=repeats)
    t_vjp_forward = timed(sf_vjp_forward, *args, repeats=repeats)
    by_blocks = {}
    for b in blocks:  # the adjoint kernel's grid limited to b blocks (a program each: see with_settings)
        os.environ[BLOCKS_VAR] = str(b)
        by_blocks[b] = timed(fresh_grad(), *args, repeats=repeats)
    os.environ.pop(BLOCKS_VAR, None)
    by_setting = with_settings(fresh_grad, args, g_scan, list(settings), repeats)
    _, counts = forward(*args)
    _, counts_ref = scan_forward(*args)
    counts, counts_ref = np.asarray(counts), np.asarray(counts_ref)
    return dict(
        neurons=n,
        steps=steps,
        checkpoint_every=segment_length(net, state, steps, checkpoint_every, n),
        dtype=dtype_name,
        rate_hz=float(counts.sum() / n / (steps * DT * 1e-3)),
        neurons_with_other_counts=int((counts != counts_ref).sum()),
        forward=t_forward,
        gradient=t_gradient,
        scan=t_scan,
        scan_forward=t_scan_forward,
        vjp_forward=t_vjp_forward,
        gradient_by_blocks=by_blocks,
        gradient_by_setting=by_setting,
        differences=relative_differences(g_sf, g_scan),
        peak=peak_sf,
        peak_scan=peak_scan,
        device=str(device),
    )


def float64_check(n: int, steps: int) -> dict:
    """A small network in float64: the two gradients to 1e-8 (the same spikes, so the same
    surrogate terms)."""
    _, args, forward, sf_grad, scan_grad, scan_forward, *_ = gradient_functions(n, steps, jnp.float64, None)
    _, counts = forward(*args)
    _, counts_ref = scan_forward(*args)
    worst = []
    for a, b in zip(sf_grad(*args), scan_grad(*args)):
        a, b = np.asarray(a), np.asarray(b)
        worst.append(float(np.abs(a - b).max() / max(float(np.abs(b).max()), 1e-300)))
    return dict(
        neurons=n,
        steps=steps,
        spikes=int(np.asarray(counts).sum()),
        same_counts=bool((np.asarray(counts) == np.asarray(counts_ref)).all()),
        differences=worst,
    )


NAMES = ("v0", "w", "wi")
TOLERANCE = {"float32": 5e-2, "float64": 1e-8}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--neurons", type=int, default=4000)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--checkpoint-every", type=int, default=None)
    p.add_argument("--quick", action="store_true", help="400 neurons x 100 steps, 2 repeats, a 100-neuron check")
    p.add_argument(
        "--blocks",
        default="",
        help="also time fwd+bwd with the CUDA adjoint kernel's grid limited to these blocks (comma-separated)",
    )
    p.add_argument(
        "--setting",
        action="append",
        default=[],
        help="VAR=a;b;c: also time fwd+bwd with the environment variable VAR at each value (repeatable)",
    )
    p.add_argument(
        "--configuration",
        action="append",
        default=[],
        help="'VAR=a VAR2=b': also time fwd+bwd with these variables set together (repeatable)",
    )
    p.add_argument("--no-check", action="store_true", help="skip the float64 check")
    p.add_argument("--json", default=None, help="also write the results to this file")
    args = p.parse_args()
    check_size = (200, 200)
    if args.quick:
        args.neurons, args.steps, args.repeats = 400, 100, 2
        check_size = (100, 60)
    blocks = [int(b) for b in args.blocks.split(",") if b.strip()]
    settings = []
    for text in args.configuration:
        settings.append(tuple((var.strip(), value) for var, _, value in (a.partition("=") for a in text.split())))
    for text in args.setting:
        var, _, values = text.partition("=")
        settings.extend(((var.strip(), v),) for v in values.split(";"))
    # (the check first: a setting that faults the device, reported below, must not take it along)
    check = None if args.no_check else float64_check(*check_size)
    row = measure(args.neurons, args.steps, args.dtype, args.repeats, args.checkpoint_every, blocks, settings)
    tolerance = TOLERANCE[args.dtype]
    ratio, speed_up = row["gradient"] / row["forward"], row["scan"] / row["gradient"]
    print(
        f"network gradients, COBA (coba_be) {args.neurons} neurons, Euler + fast_sigmoid({SLOPE}), "
        f"{args.steps} steps, {args.dtype}, {row['device']}; {row['rate_hz']:.1f} Hz"
    )
    print(
        f"{'forward s':>11}{'fwd+bwd s':>11}{'ratio':>7}{'lax.scan fwd s':>16}{'lax.scan grad s':>17}"
        f"{'speed-up':>10}{'peak MB':>10}{'scan peak MB':>14}"
    )
    peak = "n/a" if row["peak"] is None else f"{row['peak'] / 1e6:.1f}"
    peak_scan = "n/a" if row["peak_scan"] is None else f"{row['peak_scan'] / 1e6:.1f}"
    print(
        f"{row['forward']:11.5f}{row['gradient']:11.5f}{ratio:7.2f}{row['scan_forward']:16.5f}"
        f"{row['scan']:17.5f}{speed_up:10.1f}{peak:>10}{peak_scan:>14}"
    )
    k = row["checkpoint_every"]
    print(
        f"of fwd+bwd: the forward in segments of {k} steps (checkpoints) {row['vjp_forward']:.5f} s, "
        f"the backward (recomputation and adjoint kernel) {row['gradient'] - row['vjp_forward']:.5f} s"
    )
    for b, t in row["gradient_by_blocks"].items():
        print(f"fwd+bwd with the adjoint kernel on at most {b} blocks: {t:.5f} s ({t / row['forward']:.2f}x forward)")
    for name, entry in row["gradient_by_setting"].items():
        if "error" in entry:
            print(f"fwd+bwd with {name}: FAILED: {entry['error']}")
            print(f"FAILED: fwd+bwd with {name} raised", file=sys.stderr)
            row.setdefault("settings_ok", []).append(False)
            continue
        t = min(entry["times"])
        times = " / ".join(f"{x:.5f}" for x in entry["times"])
        diffs = ", ".join(f"d/d{k} {d:.2e}" for k, d in zip(NAMES, entry["differences"]))
        print(
            f"fwd+bwd with {name}: {times} s ({t / row['forward']:.2f}x forward, "
            f"{row['scan'] / t:.1f}x lax.scan); against lax.scan {diffs}"
        )
        ok_setting = all(math.isfinite(d) and d <= TOLERANCE[args.dtype] for d in entry["differences"])
        if not ok_setting:
            print(f"FAILED: the gradients with {name} disagree", file=sys.stderr)
        row.setdefault("settings_ok", []).append(ok_setting)
    diffs = ", ".join(f"d/d{k} {d:.2e}" for k, d in zip(NAMES, row["differences"]))
    print(
        f"against lax.scan ({args.dtype}, norm-wise, tolerance {tolerance:.0e}): {diffs}; "
        f"{row['neurons_with_other_counts']} neurons with other spike counts"
    )
    ok = all(math.isfinite(d) and d <= tolerance for d in row["differences"]) and all(row.get("settings_ok", []))
    if check is not None:
        diffs = ", ".join(f"d/d{k} {d:.2e}" for k, d in zip(NAMES, check["differences"]))
        print(
            f"float64 check, {check['neurons']} neurons x {check['steps']} steps, {check['spikes']} spikes "
            f"(same counts: {check['same_counts']}), largest element's relative difference (tolerance 1e-8): {diffs}"
        )
        ok = ok and check["same_counts"] and all(math.isfinite(d) and d <= 1e-8 for d in check["differences"])
    print(
        "ratio: forward + backward over forward alone (target <= 3); speed-up: jax.grad of lax.scan over "
        "spikeforge's gradient (target >= 10); peak: the gradient call's peak device memory above what was in use"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(result=row, float64_check=check, ok=ok), f, indent=1)
    if not ok:
        print("FAILED: the gradients disagree", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
