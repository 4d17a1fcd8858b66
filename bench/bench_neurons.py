"""Benchmarks spikeforge kernels against pure-JAX ``lax.scan`` implementations of the same models.

Usage::

    python bench/bench_neurons.py [--cpu | --gpu] [--quick] [--json PATH]

``--cpu`` / ``--gpu`` pick the workload set (default: ``--gpu`` when JAX sees a GPU); the models run
on whatever platform JAX uses. ``--quick`` is a seconds-long smoke run. Every simulation is run by
both implementations in this process and their spike counts are compared, so a wrong kernel is
flagged instead of reported as fast; the exit status is 1 when any comparison fails.

See bench/README.md for what each table measures.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import spikeforge as sf
from jax import lax

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "tests" / "models"
REFERENCES = REPO / "tests" / "python"

# A comparison passes when at most this fraction of neurons have different spike counts (or end
# with a non-finite v in either run) and no count differs by more than MAX_COUNT_DIFF. float32 runs
# of the same equations by two compilers legitimately disagree for neurons sitting right at
# threshold (a last-bit difference decides whether the last spike of the run happens before the
# end); anything more is a bug.
MAX_DIFFERING_FRACTION = 0.01
MAX_COUNT_DIFF = 1
# At most this many disagreeing neurons are re-run in float64 numpy to say which side is right.
MAX_ARBITRATED = 16
SIDES = ("spikeforge", "lax.scan")

# The lax.scan LIF's own step of the last spike of a neuron that never spiked.
NEVER_SPIKED = -(10**9)


# -- workloads ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SimCase:
    model: str  # a key of MODEL_KINDS
    n: int
    steps: int
    target_ms: float | None = None
    h100_refs: str = ""  # reference numbers measured on an H100, printed next to the results


@dataclasses.dataclass(frozen=True)
class Workloads:
    sims: tuple[SimCase, ...]
    overhead_calls: int
    compile_models: tuple[str, ...]


WORKLOADS = {
    "gpu": Workloads(
        sims=(
            SimCase("hh", 10_000, 5000, 1.0, "fused fast-math CUDA 1.25, lax.scan 38"),
            SimCase("hh-fast", 10_000, 5000, 1.0, "fused fast-math CUDA 1.25, lax.scan 38"),
            SimCase("hh", 1_000_000, 5000, 46.0, "fused fast-math CUDA 55, lax.scan 108"),
            SimCase("hh-fast", 1_000_000, 5000, 46.0, "fused fast-math CUDA 55, lax.scan 108"),
            SimCase("lif", 1_000_000, 10_000, 4.0),
        ),
        overhead_calls=1000,
        compile_models=("lif", "hh"),
    ),
    "cpu": Workloads(
        sims=(
            SimCase("hh", 10_000, 5000, 320.0),
            SimCase("hh-fast", 10_000, 5000, 320.0),
            SimCase("lif", 100_000, 10_000),
        ),
        overhead_calls=1000,
        compile_models=("lif", "hh"),
    ),
    "quick": Workloads(
        sims=(SimCase("hh", 1000, 200), SimCase("lif", 1000, 1000)),
        overhead_calls=100,
        compile_models=("lif",),
    ),
}


# -- the models: spikeforge definition, lax.scan baseline, float64 arbiter ---------------------


def load_spec(name: str) -> dict:
    return json.loads((MODELS / f"{name}.json").read_text())


def make_sf_model(spec: dict, constants: dict | None = None) -> sf.NeuronModel:
    return sf.NeuronModel(
        spec["equations"],
        threshold=spec.get("threshold"),
        reset=spec.get("reset"),
        refractory=spec.get("refractory"),
        constants=constants if constants is not None else spec["constants"],
        method=spec["method"],
        fast_math=spec.get("fast_math", False),
    )


def hh_rates(v):
    am = 0.1 * (v + 40) / (1 - jnp.exp(-(v + 40) / 10))
    bm = 4 * jnp.exp(-(v + 65) / 18)
    ah = 0.07 * jnp.exp(-(v + 65) / 20)
    bh = 1 / (1 + jnp.exp(-(v + 35) / 10))
    an = 0.01 * (v + 55) / (1 - jnp.exp(-(v + 55) / 10))
    bn = 0.125 * jnp.exp(-(v + 65) / 80)
    return am, bm, ah, bh, an, bn


def hh_derivatives(y, current, c):
    v, m, h, n = y
    am, bm, ah, bh, an, bn = hh_rates(v)
    i_ion = c["gNa"] * m**3 * h * (v - c["ENa"]) + c["gK"] * n**4 * (v - c["EK"]) + c["gL"] * (v - c["EL"])
    return ((current - i_ion) / c["Cm"], am * (1 - m) - bm * m, ah * (1 - h) - bh * h, an * (1 - n) - bn * n)


def hh_scan(c: dict, dt: float, steps: int) -> Callable:
    """Classical RK4 under lax.scan. Spikes are upward 0 mV crossings: with refractory 'v > 0' and a
    start below 0 mV, that is exactly Brian2's threshold-while-not-refractory rule."""

    def shifted(y, k, a):
        return tuple(yi + a * ki for yi, ki in zip(y, k))

    def run(y, current):
        def step(carry, _):
            y, count = carry
            k1 = hh_derivatives(y, current, c)
            k2 = hh_derivatives(shifted(y, k1, dt / 2), current, c)
            k3 = hh_derivatives(shifted(y, k2, dt / 2), current, c)
            k4 = hh_derivatives(shifted(y, k3, dt), current, c)
            y_new = tuple(yi + dt / 6 * (a + 2 * b + 2 * e + d) for yi, a, b, e, d in zip(y, k1, k2, k3, k4))
            crossed = (y[0] <= 0) & (y_new[0] > 0)
            return (y_new, count + crossed.astype(jnp.int32)), None

        (y, count), _ = lax.scan(step, (y, jnp.zeros(current.shape, jnp.int32)), None, length=steps)
        return y[0], count

    return run


def lif_scan(c: dict, dt: float, steps: int, refractory: float) -> Callable:
    """Forward Euler with Brian2's order: refractory test, update (clamped while refractory),
    threshold, reset. Refractoriness is counted in whole steps, as Brian2 does."""
    refractory_steps = round(refractory / dt)

    def run(v, lastspike, current):
        def step(carry, s):
            v, lastspike, count = carry
            active = (s - lastspike) >= refractory_steps
            v = jnp.where(active, v + dt * ((c["v_rest"] - v + c["R"] * current) / c["tau"]), v)
            spike = active & (v > c["v_th"])
            v = jnp.where(spike, c["v_reset"], v)
            lastspike = jnp.where(spike, s, lastspike)
            return (v, lastspike, count + spike.astype(jnp.int32)), None

        carry = (v, lastspike, jnp.zeros(v.shape, jnp.int32))
        (v, _, count), _ = lax.scan(step, carry, jnp.arange(steps, dtype=jnp.int32))
        return v, count

    return run


@dataclasses.dataclass(frozen=True)
class ModelKind:
    """One benchmarked model: how to build its inputs for spikeforge and for lax.scan."""

    label: str
    spec_name: str
    currents: Callable[[int], np.ndarray]
    sf_state: Callable  # (NeuronModel, n) -> spikeforge state dict
    scan_fn: Callable  # (spec, steps) -> jittable fn(*scan_args) -> (v, spike_count)
    scan_args: Callable  # (n) -> tuple of arrays
    reference_counts: Callable  # (spec, currents float64, steps) -> float64 numpy spike counts
    fast_math: bool = False  # spikeforge's fast_math option (its accuracy is tested in tests/python)

    @property
    def spec(self) -> dict:
        return dict(load_spec(self.spec_name), fast_math=self.fast_math)


HH_Y0 = {"v": -65.0, "m": 0.05, "h": 0.6, "n": 0.32}


def hh_y0(n: int) -> tuple:
    return tuple(jnp.full((n,), x, jnp.float32) for x in HH_Y0.values())


def hh_currents(n: int) -> np.ndarray:
    return (10.0 * np.arange(n) / max(n - 1, 1)).astype(np.float32)


def lif_currents(n: int) -> np.ndarray:
    return np.linspace(0.0, 30.0, n, dtype=np.float32)


def _references():
    """tests/python/references.py, imported by path (the bench is not a package)."""
    sys.path.insert(0, str(REFERENCES))
    try:
        import references
    finally:
        sys.path.pop(0)
    return references


def hh_reference_counts(spec, currents, steps):
    _, spikes = _references().hh_rk4(currents, spec["dt"], steps, spec["constants"], tuple(HH_Y0.values()))
    return spikes


def lif_reference_counts(spec, currents, steps):
    refractory_steps = round(spec["refractory"] / spec["dt"])
    v0 = np.full(currents.shape, spec["constants"]["v_rest"])
    _, _, spike_steps = _references().lif_euler(v0, currents, spec["dt"], steps, spec["constants"], refractory_steps)
    return np.bincount(np.concatenate(spike_steps), minlength=currents.size)


MODEL_KINDS = {
    "hh": ModelKind(
        label="HH rk4 f32",
        spec_name="hh_32",
        currents=hh_currents,
        sf_state=lambda model, n: model.init_state(n, I=hh_currents(n), **HH_Y0),
        scan_fn=lambda spec, steps: hh_scan(spec["constants"], spec["dt"], steps),
        scan_args=lambda n: (hh_y0(n), jnp.asarray(hh_currents(n))),
        reference_counts=hh_reference_counts,
    ),
    "hh-fast": ModelKind(
        label="HH rk4 f32 fast-math",
        spec_name="hh_32",
        currents=hh_currents,
        sf_state=lambda model, n: model.init_state(n, I=hh_currents(n), **HH_Y0),
        scan_fn=lambda spec, steps: hh_scan(spec["constants"], spec["dt"], steps),
        scan_args=lambda n: (hh_y0(n), jnp.asarray(hh_currents(n))),
        reference_counts=hh_reference_counts,
        fast_math=True,
    ),
    "lif": ModelKind(
        label="LIF euler+refr f32",
        spec_name="lif_32",
        currents=lif_currents,
        sf_state=lambda model, n: model.init_state(n, v=-65.0, I=lif_currents(n)),
        scan_fn=lambda spec, steps: lif_scan(spec["constants"], spec["dt"], steps, spec["refractory"]),
        scan_args=lambda n: (
            jnp.full((n,), -65.0, jnp.float32),
            jnp.full((n,), NEVER_SPIKED, jnp.int32),
            jnp.asarray(lif_currents(n)),
        ),
        reference_counts=lif_reference_counts,
    ),
}


# -- timing ------------------------------------------------------------------------------------


@dataclasses.dataclass
class Timing:
    times_s: list[float]

    @property
    def median_ms(self) -> float:
        return 1e3 * statistics.median(self.times_s)

    @property
    def min_ms(self) -> float:
        return 1e3 * min(self.times_s)


def time_calls(fn: Callable, *args, min_repeats: int = 3, max_repeats: int = 30, budget_s: float = 3.0):
    """Times ``fn(*args)`` to completion after two untimed calls (compile, then first-run effects
    such as allocator growth); repeats until ``max_repeats`` or, past ``min_repeats``, the budget."""
    out = jax.block_until_ready(fn(*args))
    out = jax.block_until_ready(fn(*args))
    times: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(times) < min_repeats or (len(times) < max_repeats and time.perf_counter() < deadline):
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return Timing(times), out


# -- 1 & 2: simulations ------------------------------------------------------------------------


@dataclasses.dataclass
class Agreement:
    """Spike counts of spikeforge vs lax.scan. Neurons whose final v is not finite in either run are
    left out of the count comparison and counted apart: a float32 model can reach NaN legitimately
    (HH's rate functions are 0/0 at exactly v = -40 and -55 mV), and the two runs hit it on
    different neurons, so it says nothing about the kernel unless it is frequent."""

    neurons: int
    compared: int  # neurons whose final v is finite in both runs
    differing: int  # of those, how many have different spike counts
    max_count_diff: int
    nonfinite_sf: int
    nonfinite_scan: int
    spikes_sf: int
    spikes_scan: int
    arbitrated: dict  # float64 reference's verdict on up to MAX_ARBITRATED disagreeing neurons

    @property
    def ok(self) -> bool:
        allowed = MAX_DIFFERING_FRACTION * self.neurons
        rare = max(self.differing, self.nonfinite_sf, self.nonfinite_scan) <= allowed
        return rare and self.max_count_diff <= MAX_COUNT_DIFF

    def summary(self) -> str:
        text = f"{self.compared - self.differing}/{self.compared} equal"
        if self.differing:
            text += f" (max diff {self.max_count_diff})"
        if self.compared < self.neurons:
            text += f"; non-finite v: sf {self.nonfinite_sf}, scan {self.nonfinite_scan} (not compared)"
        return text if self.ok else f"**MISMATCH** {text}"


def arbitrate(kind: ModelKind, case: SimCase, idx: np.ndarray, counts: dict, finite: dict) -> dict:
    """Re-runs a few disagreeing neurons in float64 numpy and says whose count it matches."""
    idx = idx[:MAX_ARBITRATED]
    all_currents = kind.currents(case.n)
    ref = kind.reference_counts(kind.spec, all_currents[idx].astype(np.float64), case.steps)
    verdict = {"checked": int(idx.size), "spikeforge": 0, "lax.scan": 0, "neither": 0, "details": []}
    for i, r in zip(idx, ref):
        a, b = int(counts["spikeforge"][i]), int(counts["lax.scan"][i])
        verdict["spikeforge" if r == a else "lax.scan" if r == b else "neither"] += 1
        detail = {"neuron": int(i), "I": float(all_currents[i]), "f64": int(r)}
        for name in SIDES:
            detail[name] = int(counts[name][i])
            detail[f"{name} v finite"] = bool(finite[name][i])
        verdict["details"].append(detail)
    return verdict


def compare(kind: ModelKind, case: SimCase, sf_out: tuple, scan_out: tuple) -> Agreement:
    """``*_out`` = (final v, spike counts) of each implementation."""
    finite = {"spikeforge": np.isfinite(np.asarray(sf_out[0])), "lax.scan": np.isfinite(np.asarray(scan_out[0]))}
    counts = {"spikeforge": np.asarray(sf_out[1], np.int64), "lax.scan": np.asarray(scan_out[1], np.int64)}
    diff = np.abs(counts["spikeforge"] - counts["lax.scan"])
    both_finite = finite["spikeforge"] & finite["lax.scan"]
    differing = diff.astype(bool) & both_finite
    # Disagreements among finite neurons first: they are the ones that could mean a kernel bug.
    idx = np.concatenate([np.flatnonzero(differing), np.flatnonzero(diff.astype(bool) & ~both_finite)])
    return Agreement(
        neurons=case.n,
        compared=int(both_finite.sum()),
        differing=int(differing.sum()),
        max_count_diff=int(diff[both_finite].max(initial=0)),
        nonfinite_sf=int((~finite["spikeforge"]).sum()),
        nonfinite_scan=int((~finite["lax.scan"]).sum()),
        spikes_sf=int(counts["spikeforge"].sum()),
        spikes_scan=int(counts["lax.scan"].sum()),
        arbitrated=arbitrate(kind, case, idx, counts, finite) if idx.size else {},
    )


def bench_sim(case: SimCase) -> dict:
    kind = MODEL_KINDS[case.model]
    spec = kind.spec
    model = make_sf_model(spec)
    state = kind.sf_state(model, case.n)
    sf_run = jax.jit(lambda s: model.run(s, dt=spec["dt"], steps=case.steps))
    sf_timing, (sf_state, sf_result) = time_calls(sf_run, state)

    scan_run = jax.jit(kind.scan_fn(spec, case.steps))
    scan_timing, scan_out = time_calls(scan_run, *kind.scan_args(case.n))

    agreement = compare(kind, case, (sf_state["v"], sf_result.spike_count), scan_out)
    return {"case": case, "sf": sf_timing, "scan": scan_timing, "agreement": agreement}


# -- 3: per-call overhead ----------------------------------------------------------------------


def bench_overhead(calls: int, n: int = 1000) -> dict:
    """Per-call cost of a one-step spikeforge run in a jitted fori_loop, next to a native XLA
    elementwise op in the same loop: the loop's own cost is common to both."""
    spec = load_spec("lif_32")
    model = make_sf_model(spec)
    state = model.init_state(n, v=-65.0, I=lif_currents(n))

    sf_loop = jax.jit(lambda s: lax.fori_loop(0, calls, lambda _, s: model.run(s, dt=spec["dt"], steps=1)[0], s))
    native_loop = jax.jit(lambda x: lax.fori_loop(0, calls, lambda _, x: x * 1.0001 + 1e-6, x))
    sf_timing, _ = time_calls(sf_loop, state)
    native_timing, _ = time_calls(native_loop, jnp.ones((n,), jnp.float32))
    return {"calls": calls, "n": n, "sf": sf_timing, "native": native_timing}


# -- 4: compile times --------------------------------------------------------------------------


def unique_constants(spec: dict, salt: int) -> dict:
    """The model's constants with one nudged by a process-unique amount: a spec no cache holds."""
    constants = dict(spec["constants"])
    name = next(iter(constants))
    constants[name] += 1e-4 * (1 + salt % 997)
    return constants


def first_call_overhead(fn: Callable, *args) -> dict:
    """First-call wall time minus the steady-state call time, split into JAX/XLA's part (trace,
    lower, compile) and the first execution (where spikeforge generates and builds its kernel)."""
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    t1 = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    t2 = time.perf_counter()
    steady = []
    for _ in range(5):
        t = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        steady.append(time.perf_counter() - t)
    steady_s = statistics.median(steady)
    return {
        "total_ms": 1e3 * (t2 - t0 - steady_s),
        "jit_ms": 1e3 * (t1 - t0),
        "first_exec_ms": 1e3 * (t2 - t1 - steady_s),
        "steady_ms": 1e3 * steady_s,
    }


COMPILE_N, COMPILE_STEPS = 1000, 10


def sf_first_call(model_name: str, constants: dict) -> dict:
    kind = MODEL_KINDS[model_name]
    spec = kind.spec
    model = make_sf_model(spec, constants)
    state = kind.sf_state(model, COMPILE_N)
    result = first_call_overhead(lambda s: model.run(s, dt=spec["dt"], steps=COMPILE_STEPS), state)
    # The disk cache is keyed by the generated source: a library rebuilt between the parent and the
    # child process (a developer's concurrent `cargo build`) would make the "disk hit" a miss.
    dialect = "cuda" if jax.devices()[0].platform == "gpu" else "c"
    source = model.source(dialect, dt=spec["dt"])
    result["source_sha256"] = hashlib.sha256(source.encode()).hexdigest()
    return result


def compile_child(arg: str) -> None:
    """Subprocess entry: same spec, same cache folder, fresh process (the disk-cache case)."""
    request = json.loads(arg)
    # Pay JAX's one-time backend start-up outside the measurement.
    jax.block_until_ready(jax.jit(lambda x: x + 1)(jnp.ones(4)))
    print(json.dumps(sf_first_call(request["model"], request["constants"])))


def disk_hit_in_subprocess(model_name: str, constants: dict) -> dict:
    request = json.dumps({"model": model_name, "constants": constants})
    # This process already holds JAX's preallocated share of GPU memory; the child must not ask
    # for the same share again.
    env = dict(os.environ, XLA_PYTHON_CLIENT_PREALLOCATE="false")
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--compile-child", request],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"compile child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_compile(model_name: str, salt: int) -> dict:
    kind = MODEL_KINDS[model_name]
    spec = kind.spec
    constants = unique_constants(spec, salt)
    cold = sf_first_call(model_name, constants)
    warm_memory = sf_first_call(model_name, constants)  # a new NeuronModel and a new jit, same spec
    warm_disk = disk_hit_in_subprocess(model_name, constants)
    scan = first_call_overhead(kind.scan_fn(spec, COMPILE_STEPS), *kind.scan_args(COMPILE_N))
    return {"model": model_name, "cold": cold, "warm_memory": warm_memory, "warm_disk": warm_disk, "scan": scan}


# -- reporting ---------------------------------------------------------------------------------


def environment() -> dict:
    dev = jax.devices()[0]
    try:
        rev = subprocess.run(
            ["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        rev = ""
    return {
        "device": dev.device_kind,
        "platform": dev.platform,
        "devices": jax.device_count(),
        "cpu_cores": os.cpu_count(),
        "jax": jax.__version__,
        "jaxlib": importlib.metadata.version("jaxlib"),
        "spikeforge": sf.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "machine": f"{platform.system()} {platform.machine()}",
        # Other work on the machine skews CPU timings; say how busy it was.
        "load avg (1 min)": f"{os.getloadavg()[0]:.2f}",
        "git": rev,
    }


def table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def ms(t: Timing) -> str:
    return f"{t.median_ms:.3g} ({t.min_ms:.3g})"


def sim_row(r: dict) -> list[str]:
    case, agreement = r["case"], r["agreement"]
    speedup = f"{r['scan'].median_ms / r['sf'].median_ms:.1f}x" if agreement.ok else "n/a (results differ)"
    if case.target_ms is None:
        target = "-"
    else:
        met = "met" if r["sf"].median_ms <= case.target_ms else "**missed**"
        target = f"<= {case.target_ms:g} ({met})"
    return [
        MODEL_KINDS[case.model].label,
        f"{case.n:,}",
        f"{case.steps:,}",
        ms(r["sf"]),
        ms(r["scan"]),
        speedup,
        target,
        case.h100_refs or "-",
        agreement.summary(),
    ]


def print_disagreements(r: dict) -> None:
    a, case = r["agreement"], r["case"]
    if not a.arbitrated:
        return
    arb = a.arbitrated
    print(
        f"\n{MODEL_KINDS[case.model].label} N={case.n:,}: {a.differing} neurons finite in both runs differ, "
        f"{a.neurons - a.compared} have a non-finite v in one run (total spikes: spikeforge {a.spikes_sf}, "
        f"lax.scan {a.spikes_scan}). float64 numpy on {arb['checked']} of the disagreeing neurons agrees with "
        f"spikeforge {arb['spikeforge']}, lax.scan {arb['lax.scan']}, neither {arb['neither']}:"
    )
    for d in arb["details"]:
        sides = ", ".join(f"{k} {d[k]}" + ("" if d[f"{k} v finite"] else " (v non-finite)") for k in SIDES)
        print(f"- neuron {d['neuron']} (I={d['I']:.6g}): {sides}, float64 {d['f64']}")


def print_sims(results: list[dict]) -> None:
    print("## Simulation: spikeforge vs lax.scan (ms, median (min))\n")
    headers = ["model", "N", "steps", "spikeforge", "lax.scan", "speedup", "target", "H100 refs", "spike counts"]
    print(table(headers, [sim_row(r) for r in results]))
    for r in results:
        print_disagreements(r)
    print()


def print_overhead(r: dict) -> None:
    per_call = lambda t: f"{1e3 * t.median_ms / r['calls']:.2f} ({1e3 * t.min_ms / r['calls']:.2f})"
    print(f"## Per-call overhead: {r['calls']} calls in a jitted fori_loop (us per call, median (min))\n")
    rows = [
        [f"spikeforge LIF run, N={r['n']}, steps=1", per_call(r["sf"])],
        [f"native XLA `x * 1.0001 + 1e-6`, {r['n']} elements", per_call(r["native"])],
    ]
    print(table(["op", "per call"], rows))
    extra = 1e3 * (r["sf"].median_ms - r["native"].median_ms) / r["calls"]
    print(f"\nspikeforge costs {extra:.2f} us per call more than the native op.\n")


def print_compile(results: list[dict]) -> None:
    print(
        f"## Compile time: first call minus steady-state call (ms; N={COMPILE_N}, steps={COMPILE_STEPS})\n\n"
        "total = JAX/XLA jit (trace, lower, compile) + first execution (spikeforge builds its kernel "
        "there) - one steady call.\n"
    )
    cell = lambda c: f"{c['total_ms']:.0f} (jit {c['jit_ms']:.0f} + exec {c['first_exec_ms']:.0f})"
    rows = []
    for r in results:
        label = MODEL_KINDS[r["model"]].label
        disk = cell(r["warm_disk"])
        if r["warm_disk"]["source_sha256"] != r["cold"]["source_sha256"]:
            disk = f"n/a: the library was rebuilt during the run, its kernel source changed ({disk})"
        rows.append([label, "cold: new spec, empty cache folder", cell(r["cold"])])
        rows.append([label, "warm: same spec, new jit (in-memory hit)", cell(r["warm_memory"])])
        rows.append([label, "warm: same spec, new process (disk hit)", disk])
        rows.append([label, "lax.scan of the same model (XLA only)", cell(r["scan"])])
    print(table(["model", "case", "first-call overhead"], rows))
    print()


def to_json(value):
    """Timings and dataclasses as plain JSON values."""
    if isinstance(value, Timing):
        return {"median_ms": value.median_ms, "min_ms": value.min_ms, "times_ms": [1e3 * t for t in value.times_s]}
    if dataclasses.is_dataclass(value):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    return value


# -- main --------------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    which = p.add_mutually_exclusive_group()
    which.add_argument("--cpu", action="store_true", help="the CPU workload set")
    which.add_argument("--gpu", action="store_true", help="the GPU workload set (default when JAX sees a GPU)")
    p.add_argument("--quick", action="store_true", help="a tiny smoke version (seconds)")
    p.add_argument("--json", metavar="PATH", help="also write the numbers to PATH")
    p.add_argument("--compile-child", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def workload_set(args, env: dict) -> str:
    if args.quick:
        return "quick"
    if args.cpu:
        return "cpu"
    if args.gpu:
        return "gpu"
    return "gpu" if env["platform"] == "gpu" else "cpu"


def run_all(workloads: Workloads) -> dict:
    sims = [bench_sim(case) for case in workloads.sims]
    print_sims(sims)
    overhead = bench_overhead(workloads.overhead_calls)
    print_overhead(overhead)
    salt = time.time_ns() ^ os.getpid()
    compiles = [bench_compile(name, salt) for name in workloads.compile_models]
    print_compile(compiles)
    return {"simulation": sims, "overhead": overhead, "compile": compiles}


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.compile_child:
        compile_child(args.compile_child)
        return 0
    env = environment()
    chosen = workload_set(args, env)
    print(f"# spikeforge benchmark ({chosen} workloads)\n")
    print(table(list(env), [[str(v) for v in env.values()]]) + "\n")
    if chosen == "gpu" and env["platform"] != "gpu":
        print("**warning**: GPU workloads on a non-GPU platform; this will be slow.\n")

    # A fresh cache folder: every kernel is built here (the compile table's cold case needs it) and
    # the user's cache is left untouched. The library reads this variable at each build.
    cache_dir = tempfile.mkdtemp(prefix="spikeforge-bench-")
    os.environ["SPIKEFORGE_CACHE_DIR"] = cache_dir
    t0 = time.perf_counter()
    try:
        results = run_all(WORKLOADS[chosen])
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)
    print(f"total benchmark time: {time.perf_counter() - t0:.1f} s")

    if args.json:
        Path(args.json).write_text(json.dumps(to_json({"environment": env, "workloads": chosen, **results}), indent=1))
    failed = [r for r in results["simulation"] if not r["agreement"].ok]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
