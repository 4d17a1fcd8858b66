"""Benchmarks spikeforge's deterministic reductions against the copy bandwidth and jax.numpy.

Usage::

    python bench/bench_reductions.py [--cpu | --gpu] [--quick] [--n N] [--json PATH]

The copy bandwidth is measured in the same run: a jitted ``-x`` (reads and writes every element,
which XLA cannot elide), counted as 2 * bytes / time like a device-to-device memcpy. A reduction
reads every element once, so its bandwidth is bytes / time; the target (issue 4) is at least 80%
of the copy bandwidth for 1e8 float32 elements on the GPU. Each row is also checked against a
float64 reference, and the exit status is 1 if any result is wrong (or if spikeforge's repeated
calls differ in any bit).

Timing: a jitted function is called ``reps`` times back to back (dispatch is asynchronous, so the
launches queue up on the device) and the wall time divided by ``reps``; the median of ``rounds``
such measurements is reported.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import spikeforge as sf


def timed(fn, x, reps: int, rounds: int) -> float:
    """Median seconds per call of ``fn(x)``, asynchronous calls queued back to back."""
    jax.block_until_ready(fn(x))  # compile + warm up
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        out = None
        for _ in range(reps):
            out = fn(x)
        jax.block_until_ready(out)
        samples.append((time.perf_counter() - t0) / reps)
    return statistics.median(samples)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    group = ap.add_mutually_exclusive_group()
    group.add_argument("--cpu", action="store_true", help="CPU sizes (default when JAX has no GPU)")
    group.add_argument("--gpu", action="store_true", help="GPU sizes (1e8 elements)")
    ap.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    ap.add_argument("--n", type=float, default=None, help="elements (overrides the set's size)")
    ap.add_argument("--json", default=None, help="also write every number to this file")
    args = ap.parse_args(argv)

    on_gpu = jax.default_backend() == "gpu"
    gpu_set = args.gpu or (on_gpu and not args.cpu)
    if args.quick:
        n, reps, rounds = 10**6, 5, 3
    elif gpu_set:
        n, reps, rounds = 10**8, 50, 5
    else:
        n, reps, rounds = 2 * 10**7, 5, 3
    if args.n is not None:
        n = int(args.n)
    n_segments = 1000

    key = jax.random.PRNGKey(0)
    x = jax.random.normal(key, (n,), jnp.float32) + 1.0
    spikes = (jax.random.uniform(key, (n,)) < 0.01).astype(jnp.int32)
    jax.block_until_ready((x, spikes))
    x_host = np.asarray(x, np.float64)
    exact_sum = float(np.sum(x_host))
    seg_len = n // n_segments
    segments = (seg_len,) * (n_segments - 1) + (n - seg_len * (n_segments - 1),)
    seg_ids = jnp.asarray(np.repeat(np.arange(n_segments), segments))
    seg_ref = np.add.reduceat(x_host, np.concatenate([[0], np.cumsum(segments)[:-1]]))

    bytes_x = n * 4
    rows = []
    failures = []

    def row(name, fn, data, read_bytes, check=None, deterministic=False, copy=False):
        t = timed(fn, data, reps, rounds)
        bw = (2 * read_bytes if copy else read_bytes) / t / 1e9
        rows.append(dict(name=name, ms=t * 1e3, gbps=bw))
        if check is not None:
            ok, what = check(fn(data))
            if not ok:
                failures.append(f"{name}: {what}")
        if deterministic:
            a, b = np.asarray(fn(data)), np.asarray(fn(data))
            if a.tobytes() != b.tobytes():
                failures.append(f"{name}: two calls differ in their bits")

    def close_to(ref, rtol):
        def check(got):
            got = np.asarray(got, np.float64)
            err = np.max(np.abs(got - ref) / np.maximum(np.abs(ref), 1e-30))
            return bool(err <= rtol), f"relative error {err:.3g} > {rtol:g}"

        return check

    row("copy (-x, read + write)", jax.jit(lambda a: -a), x, bytes_x, copy=True)
    row("sf.reduce_sum", jax.jit(sf.reduce_sum), x, bytes_x, close_to(exact_sum, 1e-6), deterministic=True)
    row("jnp.sum", jax.jit(jnp.sum), x, bytes_x, close_to(exact_sum, 1e-3))
    row("sf.reduce_mean", jax.jit(sf.reduce_mean), x, bytes_x, close_to(exact_sum / n, 1e-6), deterministic=True)
    row("sf.reduce_max", jax.jit(sf.reduce_max), x, bytes_x, close_to(x_host.max(), 0))
    row("jnp.max", jax.jit(jnp.max), x, bytes_x, close_to(x_host.max(), 0))
    spikes_host = np.asarray(spikes)
    row(
        "sf.count_nonzero (int32)",
        jax.jit(sf.count_nonzero),
        spikes,
        bytes_x,
        lambda got: (int(got) == int(np.count_nonzero(spikes_host)), f"{got} != {np.count_nonzero(spikes_host)}"),
    )
    row(
        f"sf.reduce_sum, {n_segments} segments",
        jax.jit(lambda a: sf.reduce_sum(a, segments)),
        x,
        bytes_x,
        close_to(seg_ref, 1e-6),
        deterministic=True,
    )
    row(
        f"jax.ops.segment_sum, {n_segments} segments",
        jax.jit(lambda a: jax.ops.segment_sum(a, seg_ids, n_segments, indices_are_sorted=True)),
        x,
        bytes_x,
        close_to(seg_ref, 1e-3),
    )

    # Latency of a small call: the population rate of 10k neurons in 2 populations.
    small = spikes[:10_000]
    small_ref = np.asarray(small[:8000]).mean() * 10, np.asarray(small[8000:]).mean() * 10
    rate_sf = jax.jit(lambda c: sf.population_rate(c, 100.0, (8000, 2000)))
    rate_jnp = jax.jit(lambda c: jnp.stack([c[:8000].mean(), c[8000:].mean()]) * 10.0)
    small_rows = []
    for name, fn in (("sf.population_rate", rate_sf), ("jnp (slices + mean)", rate_jnp)):
        t = timed(fn, small, max(reps, 100), rounds)
        small_rows.append(dict(name=name, us=t * 1e6))
        ok, what = close_to(np.asarray(small_ref), 1e-6)(fn(small))
        if not ok:
            failures.append(f"{name}: {what}")

    copy_bw = rows[0]["gbps"]
    device = jax.devices()[0]
    print(f"\n### Reductions of {n:.3g} float32 elements on {device.device_kind} ({jax.default_backend()})\n")
    print("| operation | time (ms) | bandwidth (GB/s) | % of copy bandwidth |")
    print("|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['name']} | {r['ms']:.3f} | {r['gbps']:.1f} | {100 * r['gbps'] / copy_bw:.0f}% |")
    print("\n### Small call: population rate of 10k neurons, 2 populations\n")
    print("| operation | time per call (us) |")
    print("|---|---:|")
    for r in small_rows:
        print(f"| {r['name']} | {r['us']:.1f} |")
    sf_sum = next(r for r in rows if r["name"] == "sf.reduce_sum")
    ratio = sf_sum["gbps"] / copy_bw
    print(f"\nsf.reduce_sum reaches {100 * ratio:.0f}% of the copy bandwidth (target >= 80% on the GPU at 1e8).")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(n=n, device=str(device), rows=rows, small=small_rows, failures=failures), f, indent=1)
    for msg in failures:
        print("FAILED:", msg, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
