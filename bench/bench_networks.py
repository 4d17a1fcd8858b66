"""Benchmarks spikeforge networks against a pure-JAX implementation of the same network, in one
process: brainevent's ``examples/COBA_2005.py`` network at scales x1, x10, x100.

Usage::

    python bench/bench_networks.py [--cpu | --gpu] [--quick] [--scales 1,10] [--duration MS]
        [--strategy per_step,block,grid,auto] [--json PATH]

The network (issue 9 / 10): ``4000*s`` LIF neurons, 80% excitatory, every neuron with 80 targets
drawn with replacement among all neurons (fixed out-degree), conductance synapses (we 0.6, wi 6.7
in the example's mS against mV, hence the 1e-3 factor on the synaptic term), tau 20 ms,
refractory 5 ms, a constant input of 20 mV, V0 ~ N(-55, 2) mV, dt 0.1 ms, exponential Euler
(brainstate's ``exp_euler_step``). Both implementations simulate the very same synapses (the
pure-JAX one reads spikeforge's connectivity from the state) and the same initial state, with
Brian2's schedule; the rates are compared (and, in float64, the spike trains), so a wrong kernel
fails the run (exit status 1) instead of being reported as fast.

Also measured: the bytes of each projection's connectivity in the state against its floor
(4 bytes per synapse for the target index, the weight's bytes only when weights are per synapse,
and the row offsets), and on a GPU the peak device memory of building it.

``--strategy``: the GPU paths to time in the same run (``Network(strategy=...)``: the per-step
kernels, the persistent kernel as one block or as a cooperative grid, or auto's choice), one
table row each, with the path each run took (``net.last_strategy``); default ``auto``.

Timing: a warm-up call, then at least 3 timed calls (median, min), each the whole run as one
jitted call; the pure-JAX run is a jitted ``lax.scan`` with event-driven propagation (compacted
spike indices, then a scatter-add of their rows).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import spikeforge as sf
from jax import lax

# -- the network -----------------------------------------------------------------------------------

DT = 0.1  # ms
OUT_DEGREE = 80
CONSTANTS = dict(tau=20.0, El=-60.0, Vt=-50.0, Vr=-60.0, Ee=0.0, Ei=-80.0, taue=5.0, taui=10.0, I_ext=20.0)
WE, WI = 0.6, 6.7
REFRACTORY = 5.0
EQUATIONS = """
dv/dt = (-(v - El) + I_ext + 1e-3*(ge*(Ee - v) + gi*(Ei - v)))/tau : volt (unless refractory)
dge/dt = -ge/taue : 1
dgi/dt = -gi/taui : 1
"""


@dataclasses.dataclass(frozen=True)
class Case:
    scale: int
    duration_ms: float

    @property
    def n(self) -> int:
        return 4000 * self.scale

    @property
    def n_exc(self) -> int:
        return 3200 * self.scale

    @property
    def steps(self) -> int:
        return round(self.duration_ms / DT)


WORKLOADS = {
    "gpu": dict(scales=(1, 10, 100), duration_ms=10_000.0),
    "cpu": dict(scales=(1, 10), duration_ms=1000.0),
    "quick": dict(scales=(1,), duration_ms=100.0),
}


def build_network(case: Case, strategy: str = "auto"):
    """The spikeforge network of ``case`` (one group, two projections, a spike counter), run
    by ``strategy`` on a GPU."""
    P = sf.NeuronGroup(
        case.n,
        EQUATIONS,
        threshold="v > Vt",
        reset="v = Vr",
        refractory=REFRACTORY,
        constants=CONSTANTS,
        method="exponential_euler",
        name="P",
    )
    Ce = sf.Synapses(P[: case.n_exc], P, on_pre="ge_post += we", constants=dict(we=WE), name="Ce")
    Ci = sf.Synapses(P[case.n_exc :], P, on_pre="gi_post += wi", constants=dict(wi=WI), name="Ci")
    Ce.connect(fixed_out_degree=OUT_DEGREE, replace=True, seed=11)
    Ci.connect(fixed_out_degree=OUT_DEGREE, replace=True, seed=12)
    return sf.Network(P, Ce, Ci, dt=DT, strategy=strategy)


def initial_v(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(-55.0, 2.0, n)


# -- the pure-JAX implementation ------------------------------------------------------------------


def jax_network(case: Case, targets_e: np.ndarray, targets_i: np.ndarray, dtype, max_events: int):
    """A jitted function ``(v0) -> (spike counts, overflow)`` running the network for
    ``case.steps`` steps with Brian2's schedule (refractoriness from the start of the step,
    exponential-Euler update, threshold, propagation of this step's spikes, reset).
    ``targets_*``: ``(n_pre, 80)`` postsynaptic indices. Propagation is event-driven: at most
    ``max_events`` spiking neurons per step and population are compacted (``overflow`` counts
    the steps where more spiked, which would make the result wrong) and only their rows are
    scattered."""
    c = CONSTANTS
    n, n_exc = case.n, case.n_exc
    ref_steps = round(REFRACTORY / DT)
    decay_e = math.exp(-DT / c["taue"])
    decay_i = math.exp(-DT / c["taui"])
    # padded rows: index n (one past the end) is dropped by the scatter
    te = jnp.asarray(np.vstack([targets_e, np.full((1, OUT_DEGREE), n)]), jnp.int32)
    ti = jnp.asarray(np.vstack([targets_i, np.full((1, OUT_DEGREE), n)]), jnp.int32)
    k_e, k_i = min(max_events, n_exc), min(max_events, n - n_exc)

    def deliver(g, spikes, table, k, w):
        idx = jnp.nonzero(spikes, size=k, fill_value=spikes.shape[0])[0]
        rows = table[idx].reshape(-1)
        return g.at[rows].add(jnp.asarray(w, dtype), mode="drop"), jnp.sum(spikes) > k

    def step(carry, k):
        v, ge, gi, last, count, overflow = carry
        active = (k - last) >= ref_steps
        a = (c["El"] + c["I_ext"] + 1e-3 * (ge * c["Ee"] + gi * c["Ei"])) / c["tau"]
        b = -(1.0 + 1e-3 * (ge + gi)) / c["tau"]
        v_new = -a / b + (v + a / b) * jnp.exp(b * DT)
        v = jnp.where(active, v_new, v)
        ge, gi = ge * decay_e, gi * decay_i
        spike = active & (v > c["Vt"])
        last = jnp.where(spike, k, last)
        ge, over_e = deliver(ge, spike[:n_exc], te, k_e, WE)
        gi, over_i = deliver(gi, spike[n_exc:], ti, k_i, WI)
        v = jnp.where(spike, c["Vr"], v)
        return (v, ge, gi, last, count + spike, overflow + (over_e | over_i)), None

    @jax.jit
    def run(v0):
        zeros = jnp.zeros(n, dtype)
        carry = (v0.astype(dtype), zeros, zeros, jnp.full(n, -(10**9), jnp.int32), jnp.zeros(n, jnp.int32), 0)
        (v, _, _, _, count, overflow), _ = lax.scan(step, carry, jnp.arange(case.steps, dtype=jnp.int32))
        return count, overflow

    return run


# -- measuring ------------------------------------------------------------------------------------


@dataclasses.dataclass
class Timing:
    times: list

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    def text(self) -> str:
        return f"{self.median:.3f} ({min(self.times):.3f})"


def time_calls(fn, *args, repeats: int = 3):
    out = jax.block_until_ready(fn(*args))  # compile and warm up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return Timing(times), out


def connectivity_bytes(state: dict, projection: str) -> tuple[int, int, int]:
    """(bytes in the state, floor, synapses) of one projection's connectivity."""
    entry = state[projection]
    held = sum(int(np.asarray(a).nbytes) for a in jax.tree_util.tree_leaves(entry))
    n_syn = int(np.asarray(entry["targets"]).size)
    n_rows = int(np.asarray(entry["row_offsets"]).size)
    weights = sum(int(np.asarray(a).nbytes) for k, a in entry.items() if k not in ("targets", "row_offsets"))
    floor = 4 * n_syn + weights + 4 * n_rows
    return held, floor, n_syn


def targets_table(state: dict, projection: str, n_pre: int) -> np.ndarray:
    """The ``(n_pre, 80)`` target table of a fixed-out-degree projection, from its CSR."""
    offsets = np.asarray(state[projection]["row_offsets"])
    assert (np.diff(offsets) == OUT_DEGREE).all(), "fixed out-degree rows"
    return np.asarray(state[projection]["targets"]).reshape(n_pre, OUT_DEGREE)


def peak_device_bytes() -> int | None:
    stats = jax.devices()[0].memory_stats() or {}
    return stats.get("peak_bytes_in_use")


def run_case(case: Case, dtype, repeats: int, strategies=("auto",)) -> list[dict]:
    """One row per strategy: spikeforge's time by that path, the pure-JAX time (measured once),
    the rates, whether they agree, and the connectivity's memory."""
    nets = {st: build_network(case, st) for st in strategies}
    first = nets[strategies[0]]
    peak_before = peak_device_bytes()
    t0 = time.perf_counter()
    state = first.init_state(seed=0, dtype=dtype, P=dict(v=initial_v(case.n)))
    jax.block_until_ready(state)
    build_s = time.perf_counter() - t0
    peak_after = peak_device_bytes()
    memory = {p: connectivity_bytes(state, p) for p in ("Ce", "Ci")}

    te = targets_table(state, "Ce", case.n_exc)
    ti = targets_table(state, "Ci", case.n - case.n_exc)
    max_events = max(256, case.n // 10)
    run_jax = jax_network(case, te, ti, dtype, max_events)
    t_jax, (counts_jax, overflow) = time_calls(run_jax, jnp.asarray(initial_v(case.n), dtype), repeats=repeats)
    counts_jax = np.asarray(counts_jax)
    seconds = case.duration_ms / 1000.0
    rate_jax = counts_jax.mean() / seconds

    rows = []
    for strategy, net in nets.items():
        # every network of the case has the same definition but its strategy: one state for all
        run_sf = jax.jit(lambda s, net=net: net.run(s, duration=case.duration_ms, progress=False))
        t_sf, (_, out) = time_calls(run_sf, state, repeats=repeats)
        counts_sf = np.asarray(out.spike_count["P"])
        rate_sf = counts_sf.mean() / seconds
        agree = int(overflow) == 0 and abs(rate_sf - rate_jax) <= 0.01 * max(rate_jax, 1e-9)
        if jnp.dtype(dtype) == jnp.float64:
            agree = agree and bool((counts_sf == counts_jax).all())
        rows.append(
            dict(
                scale=case.scale,
                n=case.n,
                synapses=sum(m[2] for m in memory.values()),
                duration_ms=case.duration_ms,
                dtype=jnp.dtype(dtype).name,
                strategy=strategy,
                path=net.last_strategy,
                spikeforge_s=t_sf.median,
                spikeforge_times=t_sf.times,
                jax_s=t_jax.median,
                jax_times=t_jax.times,
                rate_spikeforge_hz=float(rate_sf),
                rate_jax_hz=float(rate_jax),
                jax_overflow_steps=int(overflow),
                agree=bool(agree),
                connect_s=build_s,
                connectivity_bytes=sum(m[0] for m in memory.values()),
                connectivity_floor=sum(m[1] for m in memory.values()),
                peak_device_bytes_before=peak_before,
                peak_device_bytes_after=peak_after,
            )
        )
    return rows


def print_tables(rows: list[dict]):
    print(
        "\n| scale | neurons | synapses | dtype | bio ms | strategy (path) | spikeforge s, median (min) | "
        "pure JAX s | speedup | rate sf / JAX (Hz) | agree |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        speed = f"{r['jax_s'] / r['spikeforge_s']:.1f}x" if r["agree"] else "-"
        print(
            f"| x{r['scale']} | {r['n']} | {r['synapses']} | {r['dtype']} | {r['duration_ms']:.0f} | "
            f"{r['strategy']} ({r['path']}) | "
            f"{r['spikeforge_s']:.3f} ({min(r['spikeforge_times']):.3f}) | {r['jax_s']:.3f} "
            f"({min(r['jax_times']):.3f}) | {speed} | {r['rate_spikeforge_hz']:.2f} / {r['rate_jax_hz']:.2f} | "
            f"{'yes' if r['agree'] else '**MISMATCH**'} |"
        )
    print("\n| scale | synapses | connectivity bytes | floor | ratio | build s | device peak before / after (MB) |")
    print("|---|---|---|---|---|---|---|")
    for r in {r["scale"]: r for r in rows}.values():
        peak = "-"
        if r["peak_device_bytes_after"] is not None:
            peak = f"{(r['peak_device_bytes_before'] or 0) / 1e6:.1f} / {r['peak_device_bytes_after'] / 1e6:.1f}"
        print(
            f"| x{r['scale']} | {r['synapses']} | {r['connectivity_bytes'] / 1e6:.1f} MB | "
            f"{r['connectivity_floor'] / 1e6:.1f} MB | {r['connectivity_bytes'] / r['connectivity_floor']:.3f} | "
            f"{r['connect_s']:.2f} | {peak} |"
        )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--cpu", action="store_true", help="CPU workload set (x1, x10 for 1 s)")
    group.add_argument("--gpu", action="store_true", help="GPU workload set (x1, x10, x100 for 10 s)")
    parser.add_argument("--quick", action="store_true", help="smoke run: x1 for 100 ms (CI)")
    parser.add_argument("--scales", help="comma-separated scales, overriding the set's")
    parser.add_argument("--duration", type=float, help="biological ms, overriding the set's")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--strategy",
        default="auto",
        help="comma-separated GPU paths to time, one row each: per_step, block, grid, auto (default auto)",
    )
    parser.add_argument("--json", help="also write every number here")
    args = parser.parse_args(argv)
    strategies = tuple(s.strip() for s in args.strategy.split(",") if s.strip())
    unknown = [s for s in strategies if s not in sf.Network.STRATEGIES]
    if unknown or not strategies:
        parser.error(
            f"--strategy: {', '.join(unknown) or 'none given'}; choose among {', '.join(sf.Network.STRATEGIES)}"
        )
    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    if args.quick:
        kind = "quick"
    elif args.gpu or args.cpu:
        kind = "gpu" if args.gpu else "cpu"
    else:
        kind = "gpu" if jax.default_backend() == "gpu" else "cpu"
    work = dict(WORKLOADS[kind])
    scales = tuple(int(s) for s in args.scales.split(",")) if args.scales else work["scales"]
    duration = args.duration or work["duration_ms"]
    print(f"spikeforge {sf.__version__}, jax {jax.__version__}, device {jax.devices()[0]}, set {kind!r}")
    rows = []
    for s in scales:
        for r in run_case(Case(s, duration), jnp.dtype(args.dtype), args.repeats, strategies):
            rows.append(r)
            print(
                f"  x{s} {r['strategy']} ({r['path']}): spikeforge {r['spikeforge_s']:.3f} s, "
                f"pure JAX {r['jax_s']:.3f} s",
                flush=True,
            )
    print_tables(rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0 if all(r["agree"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
