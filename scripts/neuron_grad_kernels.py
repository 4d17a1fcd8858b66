"""Times the two kernels of a neuron-run gradient alone, at 1M neurons x 1000 steps, float32, with
CuPy: the forward pass under differentiation (the run's kernel with checkpoints and a trace) and
the adjoint kernel, for ``bench_gradients.py``'s model, as the library generates them (sources
from ``spikeforge._native``), under variants the handlers do not offer: checkpoint spacing ``k``,
NVRTC's register limit, block size, the forward's unrolling. Each kernel's time is the median of
``--repeats`` launches (CUDA events); its bandwidth counts the bytes it must move (the byte budget
of bench/NOTES.md: the forward reads the input and writes checkpoints and the trace, the adjoint
reads the input, checkpoints and the trace's cotangent and writes the input's gradient). With
``SPIKEFORGE_LIBRARY`` set to another build, that build's kernels (a baseline). The
adjoint reads the checkpoints the forward wrote; its gradient's digest is printed per variant
(the same for every register limit and block of one ``k``).

    python scripts/neuron_grad_kernels.py [--neurons 1000000] [--steps 1000] [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys

# JAX (imported with the benchmark's model) must not take the device's memory first.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import cupy as cp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "bench"))
from bench_gradients import DT, RECORD_EVERY, model  # noqa: E402
from spikeforge import _native  # noqa: E402


def sources() -> tuple[str, str, str]:
    """(forward alone, forward under differentiation, adjoint of the longest segment) in CUDA."""
    m = model()
    base = dict(dt=DT, dtype="float32", per_neuron=[], per_step=["I"])
    alone = json.dumps(m._spec(**base, record=[]))
    under = json.dumps(m._spec(**base, record=["v"], checkpoint=True))
    return (
        _native.model_source(alone, "cuda")["source"],
        _native.model_source(under, "cuda")["source"],
        _native.model_adjoint(under, "cuda")["source"],
    )


def adjoint_for(source: str, k: int) -> str:
    """The adjoint source of segments of k steps for calls without a spike train, as the
    handler compiles it (the spike cotangent's row neither read nor walked)."""
    source = re.sub(r"#define SF_K \d+", f"#define SF_K {k}", source)
    source = re.sub(r"const float sf_a_spike = sf_spike_train[^;]*;", "const float sf_a_spike = sf_a_count;", source)
    return "\n".join(line for line in source.splitlines() if "sf_row_in6" not in line)


def timed(kernel, grid, block, args, repeats):
    kernel(grid, block, args)
    cp.cuda.Device().synchronize()
    times = []
    for _ in range(repeats):
        a, b = cp.cuda.Event(), cp.cuda.Event()
        a.record()
        kernel(grid, block, args)
        b.record()
        b.synchronize()
        times.append(cp.cuda.get_elapsed_time(a, b) * 1e-3)
    return statistics.median(times)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--neurons", type=int, default=1_000_000)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--ks", default="4,8,16")
    p.add_argument("--adjoint", default="0:256,0:128,40:256,48:256", help="register limit:block, ...")
    args = p.parse_args()
    n, steps, repeats = args.neurons, args.steps, args.repeats
    n_rec = -(-steps // RECORD_EVERY)
    alone, under, adjoint = sources()
    # Drawn on the device: a 1M x 1000 input does not cross from the host.
    cp.random.seed(0)
    current = cp.random.uniform(0.8, 1.6, (steps, n), dtype=cp.float32)
    v0 = cp.random.uniform(0.0, 0.9, n, dtype=cp.float32)
    never = np.full(n, -np.inf).view(np.int32)  # the last spike's time as float64 words: never
    t0 = cp.zeros(2, cp.int32)
    i64, i32 = np.int64, np.int32
    print(f"neuron gradient kernels, {n} neurons x {steps} steps, float32, median of {repeats}, CuPy {cp.__version__}")
    print(f"{'kernel':>34}{'k':>4}{'regs':>6}{'block':>6}{'ms':>9}{'GB':>7}{'GB/s':>8}  digest")

    def report(name, k, regs, block, seconds, gb, digest=""):
        print(
            f"{name:>34}{k:>4}{regs:>6}{block:>6}{1e3 * seconds:9.3f}{gb:7.2f}{gb / seconds:8.0f}  {digest}", flush=True
        )

    # The forward alone, the ratio's denominator.
    f = cp.RawKernel(alone, "sf_neuron_run", options=("-std=c++17",))
    outs = [cp.empty(n, cp.float32), cp.empty(2 * n, cp.int32), cp.empty(n, cp.int32), cp.empty(2, cp.int32)]
    a = [i64(n), i64(n), i32(steps), i32(RECORD_EVERY), i32(n_rec), v0, cp.asarray(never), current, t0, *outs]
    report("forward alone", 0, f.num_regs, 256, timed(f, (-(-n // 256),), (256,), a, repeats), 4 * n * steps / 1e9)
    for k in [int(x) for x in args.ks.split(",")]:
        n_seg = -(-steps // k)
        ckpt_v, ckpt_f = cp.empty(n_seg * n, cp.float32), cp.empty(n_seg * n, cp.int32)
        trace = cp.empty(n_rec * n, cp.float32)
        gb = 4 * n * (steps + 2 * n_seg + n_rec) / 1e9
        for unroll in (4, 8):
            loop = r"#pragma unroll \d+(\n\s*for \(int32_t sf_s = sf_s0)"
            if not re.search(loop, under) and unroll != 4:
                continue  # a library whose forward has no segment loop (before grad1m3)
            src = re.sub(loop, rf"#pragma unroll {unroll}\1", under)
            f = cp.RawKernel(src, "sf_neuron_run", options=("-std=c++17",))
            outs = [cp.empty(n, cp.float32), cp.empty(2 * n, cp.int32), cp.empty(n, cp.int32), cp.empty(2, cp.int32)]
            a = [i64(n), i64(n), i32(steps), i32(RECORD_EVERY), i32(n_rec), i32(k), v0, cp.asarray(never), current, t0]
            a += [*outs, ckpt_v, ckpt_f, trace]
            report(
                f"forward under grad, unroll {unroll}",
                k,
                f.num_regs,
                256,
                timed(f, (-(-n // 256),), (256,), a, repeats),
                gb,
            )
        # The adjoint from the forward's checkpoints; cotangents as the benchmark's loss has them.
        trace_ct = 2e-3 * trace
        a_v, a_count = cp.random.standard_normal(n, dtype=cp.float32), cp.random.standard_normal(n, dtype=cp.float32)
        gb = 4 * n * (2 * steps + 2 * n_seg + n_rec) / 1e9
        # The variants, then the first with the surrogate's reciprocal exact (the tuning
        # exact_reciprocal; where the source has the approximate one).
        exact = adjoint.replace('asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x));', "r = 1.0f / x;")
        variants = [(v, adjoint, "adjoint") for v in args.adjoint.split(",")]
        if exact != adjoint:
            variants.append((variants[0][0], exact, "adjoint, exact reciprocal"))
        for variant, source, label in variants:
            regs, block = (int(x) for x in variant.split(":"))
            options = ("-std=c++17",) + ((f"--maxrregcount={regs}",) if regs else ())
            try:
                g = cp.RawKernel(adjoint_for(source, k), "sf_neuron_adjoint", options=options)
                out_a, grad = cp.empty(n, cp.float32), cp.empty(steps * n, cp.float32)
                empty = cp.zeros(1, cp.float32)
                a = [i64(n), i64(n), i32(steps), i32(k), i32(RECORD_EVERY), i32(0)]
                a += [
                    ckpt_v,
                    ckpt_f,
                    current,
                    t0,
                    a_v,
                    a_count,
                    empty,
                    trace_ct,
                    out_a,
                    grad,
                    empty,
                    cp.zeros(1, cp.bool_),
                ]
                seconds = timed(g, (-(-n // block),), (block,), a, repeats)
                digest = f"{float(cp.linalg.norm(out_a)):.6e} {float(cp.linalg.norm(grad)):.6e}"
                report(label, k, g.num_regs, block, seconds, gb, digest)
            except Exception as e:  # a variant that does not compile or launch: say so, go on
                print(f"{label:>34}{k:>4}{regs:>6}{block:>6}  failed: {e}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
