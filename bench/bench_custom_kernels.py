#!/usr/bin/env python
"""Custom kernels from source (sf.cuda_kernel / sf.cuda_callable) against the same operations in
plain JAX, in one process, on whatever platform JAX uses (the C twins on a CPU).

    python bench/bench_custom_kernels.py            # sizes for the platform
    python bench/bench_custom_kernels.py --quick    # smoke run (CI), a few seconds

Seed 004 section 8 timed the LIF detect/reset step per call (``block_until_ready`` after each):
1.034 ms through brainevent's Numba bridge against 0.098 ms in plain JAX on an H100, 10 000
neurons. Each row checks spikeforge's result against JAX's before timing it (exit status 1 on a
mismatch). Times: per call, median (min) over rounds of ``calls`` calls each.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import spikeforge as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "python"))
from kernel_sources import BLOCK_SUM_C, BLOCK_SUM_CU, PIPELINE_C, PIPELINE_CU  # noqa: E402


def per_call_ms(fn, *args, calls: int, rounds: int = 5):
    jax.block_until_ready(fn(*args))
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(calls):
            jax.block_until_ready(fn(*args))
        times.append((time.perf_counter() - t0) / calls * 1e3)
    return statistics.median(times), min(times)


def lif(n: int):
    step = sf.cuda_callable(
        PIPELINE_CU,
        inputs=["v", "v_th", "v_rest"],
        outs={"spikes": jax.ShapeDtypeStruct((n,), jnp.int32), "v_out": jax.ShapeDtypeStruct((n,), jnp.float32)},
        steps=[
            sf.Launch("detect", ["v", "v_th", "spikes"], launch_dims=n),
            sf.Launch("reset", ["v", "spikes", "v_rest", "v_out"], launch_dims=n),
        ],
        c_source=PIPELINE_C,
        sizes=True,
    )

    def plain(v, v_th, v_rest):
        spikes = (v >= v_th[0]).astype(jnp.int32)
        return spikes, jnp.where(spikes, v_rest[0], v)

    v = jnp.asarray(np.random.default_rng(0).uniform(-75.0, -50.0, n).astype(np.float32))
    args = (v, jnp.array([-55.0], jnp.float32), jnp.array([-70.0], jnp.float32))
    return f"LIF detect+reset (2 kernels), N={n:,}", jax.jit(step), jax.jit(plain), args


def block_sum(n: int):
    blocks = -(-n // 256)
    kernel = sf.cuda_kernel(
        BLOCK_SUM_CU,
        "block_sum",
        jax.ShapeDtypeStruct((blocks,), jnp.float32),
        launch_dims=n,
        shared_mem=256 * 4,
        c_source=BLOCK_SUM_C,
        sizes=True,
    )

    def plain(x):
        return jnp.pad(x, (0, blocks * 256 - n)).reshape(blocks, 256).sum(axis=1)

    x = jnp.asarray(np.random.default_rng(1).normal(size=n).astype(np.float32))
    return f"block sums of 256 (shared memory), N={n:,}", jax.jit(kernel), jax.jit(plain), (x,)


def close(a, b) -> bool:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.allclose(a, b, rtol=1e-4, atol=1e-3 * max(1.0, np.abs(b).max()))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a tiny smoke version (seconds)")
    args = p.parse_args(argv)
    gpu = jax.default_backend() == "gpu"
    if args.quick:
        cases, calls = [lif(10_000), block_sum(100_000)], 50
    elif gpu:
        cases = [lif(10_000), lif(1_000_000), block_sum(1_000_000), block_sum(100_000_000)]
        calls = 500
    else:
        cases, calls = [lif(10_000), lif(1_000_000), block_sum(1_000_000)], 200
    print(f"device: {jax.devices()[0]} | spikeforge {sf.__version__} | jax {jax.__version__}\n")
    print("| operation | spikeforge ms/call | plain JAX ms/call | JAX / spikeforge |")
    print("|---|---|---|---|")
    ok = True
    for label, ours, plain, xs in cases:
        a, b = ours(*xs), plain(*xs)
        a, b = (a if isinstance(a, tuple) else (a,)), (b if isinstance(b, tuple) else (b,))
        if not all(close(x, y) for x, y in zip(a, b)):
            print(f"| {label} | MISMATCH | | |")
            ok = False
            continue
        n_calls = calls if "100,000,000" not in label else max(10, calls // 50)
        (m1, lo1), (m2, lo2) = per_call_ms(ours, *xs, calls=n_calls), per_call_ms(plain, *xs, calls=n_calls)
        print(f"| {label} | {m1:.4f} ({lo1:.4f}) | {m2:.4f} ({lo2:.4f}) | {m2 / m1:.2f} |")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
