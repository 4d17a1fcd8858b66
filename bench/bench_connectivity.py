"""Connectivity built from a seed (spikeforge.connectivity.build) at COBA's scales, against a
pure-JAX construction of the same rule in the same process, with the memory against the floor.

COBA (Brette et al. 2007, benchmark 1): 4000 neurons, p = 0.02, 320 k synapses. Scaled by the
synapse count: x10 and x100 keep p = 0.02 with sqrt(10) and 10 times the neurons (3.2 M and 32 M
synapses); the fixed-degree rows use brainevent's COBA scaling instead (80 synapses per neuron,
x100 = 400 k neurons, 32 M synapses). Times are the whole build (count pass, offsets on the host,
fill pass), the best of two calls (the first compiles); pure JAX draws the Bernoulli matrix row
by row (p) or `jax.random.randint` (fixed out-degree), which is what a JAX user writes.

    python bench/bench_connectivity.py            # x1, x10, x100 on JAX's default device
    python bench/bench_connectivity.py --quick    # x1 only (CI smoke run)
    python bench/bench_connectivity.py --cpu      # force the CPU
"""

from __future__ import annotations

import argparse
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
import spikeforge.connectivity as C

SCALES = {"x1": 1, "x10": 10, "x100": 100}


def timed(fn, repeats=2):
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        jax.block_until_ready(out.targets if hasattr(out, "targets") else out)
        best = min(best, time.perf_counter() - t)
    return best, out


def jax_bernoulli(n, p, seed, device):
    """CSR by pre of a Bernoulli(p) matrix drawn in blocks of rows on ``device`` (pure JAX)."""
    rows = max(1, min(n, 2**27 // max(n, 1)))  # ~128 M draws per block
    key = jax.random.key(seed)

    @jax.jit
    def block(key, start):
        mask = jax.random.bernoulli(jax.random.fold_in(key, start), 0.02, (rows, n))
        return mask.sum(axis=1, dtype=jnp.int32), mask

    counts, targets = [], []
    with jax.default_device(device):
        for start in range(0, n, rows):
            c, mask = block(key, start)
            valid = min(rows, n - start)
            counts.append(np.asarray(c[:valid]))
            targets.append(np.nonzero(np.asarray(mask[:valid]))[1].astype(np.int32))
    return jnp.asarray(np.concatenate(targets))


@functools.lru_cache
def _randint(n, k):
    return jax.jit(lambda key: jax.random.randint(key, (n, k), 0, n, dtype=jnp.int32).reshape(-1))


def jax_fixed_out(n, k, seed, device):
    with jax.default_device(device):
        return _randint(n, k)(jax.random.key(seed))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--cpu", action="store_true")
    parser.add_argument("--no-jax", action="store_true", help="skip the pure-JAX column")
    args = parser.parse_args()
    device = jax.devices("cpu")[0] if args.cpu else jax.devices()[0]
    platform = "cpu" if device.platform == "cpu" else "gpu"
    scales = {"x1": 1} if args.quick else SCALES
    print(f"device: {device}\n")
    print("| rule | scale | neurons | synapses | spikeforge (s) | pure JAX (s) | bytes | floor |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for label, scale in scales.items():
        n = int(round(4000 * np.sqrt(scale)))
        cases = [
            ("p = 0.02", n, C.Pairs(p=0.02), lambda n=n: jax_bernoulli(n, 0.02, 1, device)),
            (
                "out-degree 80",
                4000 * scale,
                C.FixedOutDegree(80),
                lambda m=4000 * scale: jax_fixed_out(m, 80, 1, device),
            ),
            ("in-degree 80", 4000 * scale, C.FixedInDegree(80), None),
        ]
        for name, size, rule, pure in cases:
            build = lambda rule=rule, size=size: C.build(rule, size, size, seed=1, platform=platform)  # noqa: E731
            t, conn = timed(build)
            t_jax = "-"
            if pure is not None and not args.no_jax and (name != "p = 0.02" or size <= 20_000):
                t_jax = f"{timed(pure)[0]:.2f}"
            print(
                f"| {name} | {label} | {size} | {conn.n_synapses} | {t:.2f} | {t_jax} | {conn.nbytes} | "
                f"{conn.floor_bytes} |"
            )
            assert conn.nbytes == conn.floor_bytes


if __name__ == "__main__":
    main()
