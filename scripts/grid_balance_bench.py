"""The register grid's variants side by side in one process, on brainevent's COBA
(bench/bench_networks.py's ``coba_be``, float32): one network per scale and one jitted run per
variant, timed under the variant's settings (``SPIKEFORGE_GRID_BARRIER``, ``SPIKEFORGE_GRID_BLOCKS``,
``SPIKEFORGE_GRID_DELIVERY``, which the handler reads when it runs: a program of its own per
variant, since XLA may replay a recorded command buffer without calling the handler again). Calls
alternate between the variants (a warm-up each, then ``--repeats`` rounds of one call each: the
median), so that drift hits every variant alike. ``main`` is the defaults (main's behaviour: warp
deliveries, flat barrier). Then, at ``--final-ms`` (10 s biological by default), ``main`` against
the fastest variant of the short runs, the same way.

Prints one line a variant: seconds (median, min), µs a step, the rate, and the path the run
took (``Network.last_path_detail``). The float64 equality with the references is the GPU tests'
(tests/python/test_network_one_barrier.py); here the rates of every variant are printed.

Usage: python scripts/grid_balance_bench.py [--scales 10,100] [--ms 1000] [--final-ms 10000]
"""

import argparse
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "bench"))
import bench_networks as bn  # noqa: E402

VARIANTS = {
    "main": "",
    "acquire": "acquire",
    "spread": "spread",
    "balanced": "flat::balanced",
    "balanced+acquire": "acquire::balanced",
    "balanced+spread": "spread::balanced",
}
# x10 also on fewer blocks (a block's slots share its warps once the deliveries are balanced)
FEWER = {10: {"balanced+acquire, 157 blocks": "acquire:157:balanced"}}


def timed(make_run, state, variants: dict, repeats: int) -> dict:
    """{variant: (seconds of each call, spike counts of its last)} with calls alternating, each
    variant its own compiled program (``make_run()``): XLA may run a custom call's handler only
    when it records the program into a command buffer and replay it after, so a setting changed
    between calls of one program need not take effect."""
    runs = {v: make_run() for v in variants}
    times = {v: [] for v in variants}
    counts = {}
    for rnd in range(repeats + 1):
        for name, setting in variants.items():
            with bn.grid_settings(bn.parse_strategy(f"grid:{setting}")[1] if setting else {}):
                t0 = time.perf_counter()
                _, out = jax.block_until_ready(runs[name](state))
                dt = time.perf_counter() - t0
            if rnd > 0:  # the first round warms up
                times[name].append(dt)
            counts[name] = np.asarray(out.spike_count["P"])
    return {v: (times[v], counts[v]) for v in variants}


def report(label: str, results: dict, steps: int, seconds: float) -> None:
    for name, (ts, counts) in results.items():
        med = statistics.median(ts)
        rate = counts.mean() / seconds
        print(
            f"  {label} {name:32s} {med:.4f} s ({min(ts):.4f}) {1e6 * med / steps:6.2f} µs/step  {rate:.2f} Hz",
            flush=True,
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scales", default="10,100")
    ap.add_argument("--ms", type=float, default=1000.0)
    ap.add_argument("--final-ms", type=float, default=10_000.0)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    print("device:", jax.devices()[0], flush=True)
    for scale in (int(s) for s in args.scales.split(",")):
        t0 = time.perf_counter()
        case = bn.Case(bn.MODELS["coba_be"], 4000 * scale, args.ms)
        net = bn.build_network(case, "auto")
        state = net.init_state(seed=0, dtype=jnp.float32, P=dict(v=bn.initial_v(case.model, case.n)))
        jax.block_until_ready(state)
        variants = {**VARIANTS, **FEWER.get(scale, {})}
        for ms in (args.ms, args.final_ms):
            if ms <= 0:
                continue
            steps = round(ms / bn.DT)

            def make_run(net=net, steps=steps):
                return jax.jit(lambda st: net.run(st, steps=steps, progress=False))

            results = timed(make_run, state, variants, args.repeats)
            label = f"x{scale} {ms / 1000:g} s"
            print(f"{label} (built and compiled in {time.perf_counter() - t0:.1f} s):", flush=True)
            report(label, results, steps, ms / 1000)
            with bn.grid_settings({}):
                _ = jax.block_until_ready(make_run()(state))
            print(f"  {label} main's path: {net.last_strategy} ({net.last_path_detail})", flush=True)
            # the longer run: main against the fastest variant but main
            fastest = min((v for v in results if v != "main"), key=lambda v: statistics.median(results[v][0]))
            variants = {"main": "", fastest: variants[fastest]}


if __name__ == "__main__":
    main()
