"""Experiments on the generated kernel itself (issue 10, COBA x100). `gathered`: the register grid's
deliveries with the first two spikes of every register slot gathered and all their rows' targets
loaded before any reduction (bench/micro/grid_step.cu's mode 5, -1.1 us a step in the harness),
instead of the slots one after another; `flag`: its acquire barrier made grid_step.cu's flag
barrier (barrier 2); `both`. The code generator does not emit this; the script
patches the generated CUDA source of this one network, compiles it with NVRTC (CuPy's bindings,
the library's options) and puts the CUBIN in the library's disk cache in place of the image the
library compiled, so that the next process runs the patched kernel through the library.

Usage (on the GPU machine, one cache folder for the three steps, each its own process):
  SPIKEFORGE_CACHE_DIR=/tmp/sfc python scripts/gathered_experiment.py time     # main's kernel
  SPIKEFORGE_CACHE_DIR=/tmp/sfc python scripts/gathered_experiment.py patch [gathered|flag|both]
  SPIKEFORGE_CACHE_DIR=/tmp/sfc python scripts/gathered_experiment.py time     # the patched one
The spike counts of the two timed runs must be equal (float reductions in another order can
move a spike in float32; the run prints the counts).
"""

import hashlib
import os
import pathlib
import sys

import jax
import numpy as np

sys.path.insert(0, __file__.rsplit("/", 2)[0] + "/bench")
import bench_networks as bn  # noqa: E402

STEPS = 10000
SCALE = 100

# where the register-slot kernel's deliveries start, and its pair loop's head (first occurrences:
# sf_network_persistent)
DELIVERED = "            /* The slots' spikes, delivered. */\n"
PAIRS = "for (unsigned sf_left = sf_ballot; sf_left != 0u;) {"
# what the patch assumes of the network's source (COBA x100: 3125 virtual blocks of 128, the
# excitatory projection's sources below 320,000, the accumulators at these work-buffer words)
ASSUMED = [
    "#define SF_SLOTS 4",
    "sf_vb < 3125",
    "sf_i < 320000",
    "((float*) (sf_w + 8366))[(int64_t) (sf_t_step & 1) * 400000 + (0 + sf_j)], 0.6f",
    "((float*) (sf_w + 808366))[(int64_t) (sf_t_step & 1) * 400000 + (0 + sf_j)], 6.7f",
]

# the acquire barrier (sf_group_blocks -2) made a flag barrier (bench/micro/grid_step.cu's
# barrier 2): the arrival an acq_rel atomic with its result on the split barrier's counter (its
# own line), the last arrival stores the target in the release word, which every block polls
BARRIER = "    if (threadIdx.x == 0) {\n        if (sf_group_blocks < 0) {\n"
FLAG = """    if (threadIdx.x == 0 && sf_group_blocks == -2) {
        unsigned long long sf_old;
        asm volatile("atom.acq_rel.gpu.global.add.u64 %0, [%1], 1;" : "=l"(sf_old) : "l"(sf_arrived + 32) : "memory");
        if (sf_old + 1ull == sf_target)
            asm volatile("st.release.gpu.global.u64 [%0], %1;" :: "l"(sf_arrived), "l"(sf_target) : "memory");
        else
            while (sf_poll_acquire(sf_arrived) < sf_target) {}
    }
    else
"""

GATHERED = """            /* EXPERIMENT (scripts/gathered_experiment.py): the first two spikes of every slot,
               all their rows' targets loaded before any reduction; the rest below. */
            unsigned sf_rest[SF_SLOTS];
            {
                int32_t sf_gj[SF_SLOTS][2][3];
                int32_t sf_gp[SF_SLOTS][2];
                #pragma unroll
                for (int32_t sf_slot = 0; sf_slot < SF_SLOTS; ++sf_slot) {
                    const int32_t sf_vb = (int32_t) blockIdx.x + sf_slot * (int32_t) gridDim.x;
                    unsigned sf_b0 = sf_ballots[sf_slot];
                    #pragma unroll
                    for (int32_t sf_e = 0; sf_e < 2; ++sf_e) {
                        const int32_t sf_src = sf_b0 != 0u ? __ffs((int) sf_b0) - 1 : -1;
                        if (sf_b0 != 0u) sf_b0 &= sf_b0 - 1u;
                        const int32_t sf_t = (int32_t) (threadIdx.x & ~31u) + sf_src;
                        const int32_t sf_pre = sf_src >= 0 ? sf_vb * 128 + sf_t : -1;
                        sf_gp[sf_slot][sf_e] = sf_pre;
                        int32_t sf_lo = 0, sf_len = 0;
                        const int32_t* sf_tg = in_p0_targets;
                        if (sf_pre >= 0 && sf_pre < 320000) {
                            sf_lo = sf_rows0[sf_slot * 129 + sf_t];
                            sf_len = sf_rows0[sf_slot * 129 + sf_t + 1] - sf_lo;
                        } else if (sf_pre >= 320000) {
                            sf_lo = sf_rows1[sf_slot * 129 + sf_t];
                            sf_len = sf_rows1[sf_slot * 129 + sf_t + 1] - sf_lo;
                            sf_tg = in_p1_targets;
                        }
                        if (sf_len > 96) __trap();  /* COBA's rows are 80 */
                        #pragma unroll
                        for (int32_t sf_u = 0; sf_u < 3; ++sf_u) {
                            const int32_t sf_at = sf_lane + 32 * sf_u;
                            sf_gj[sf_slot][sf_e][sf_u] = sf_at < sf_len ? sf_tg[sf_lo + sf_at] : -1;
                        }
                    }
                    sf_rest[sf_slot] = sf_b0;
                }
                #pragma unroll
                for (int32_t sf_slot = 0; sf_slot < SF_SLOTS; ++sf_slot) {
                    #pragma unroll
                    for (int32_t sf_e = 0; sf_e < 2; ++sf_e) {
                        #pragma unroll
                        for (int32_t sf_u = 0; sf_u < 3; ++sf_u) {
                            const int32_t sf_j = sf_gj[sf_slot][sf_e][sf_u];
                            if (sf_j < 0 || sf_j >= 400000) continue;
                            const int64_t sf_at = (int64_t) (sf_t_step & 1) * 400000 + sf_j;
                            if (sf_gp[sf_slot][sf_e] < 320000) atomicAdd(&((float*) (sf_w + 8366))[sf_at], 0.6f);
                            else atomicAdd(&((float*) (sf_w + 808366))[sf_at], 6.7f);
                        }
                    }
                }
            }
"""


def network():
    case = bn.Case(bn.MODELS["coba_be"], 4000 * SCALE, STEPS * bn.DT)
    return case, bn.build_network(case, "auto")


def time_it():
    case, net = network()
    state = net.init_state(seed=0, P=dict(v=bn.initial_v(case.model, case.n)))
    timing, (_, out) = bn.time_calls(jax.jit(lambda s: net.run(s, steps=STEPS, progress=False)), state)
    spikes = int(np.asarray(out.spike_count["P"]).sum())
    per_step = 1e9 * timing.median / STEPS
    print(f"x{SCALE}: {timing.median:.4f} s, {per_step:.0f} ns a step, {spikes} spikes, {net.last_path_detail}")


def patched(source: str, kind: str) -> str:
    for text in ASSUMED + [DELIVERED, PAIRS, BARRIER]:
        if text not in source:
            raise SystemExit(f"the source is not the one this patch was written for: no {text!r}")
    if kind in ("flag", "both"):
        at = source.index(BARRIER)
        source = source[:at] + FLAG + source[at:]
    if kind == "flag":
        return source
    at = source.index(DELIVERED)
    source = source[:at] + GATHERED + source[at:]
    pairs = source.index(PAIRS, at)
    return source[:pairs] + "for (unsigned sf_left = sf_rest[sf_slot]; sf_left != 0u;) {" + source[pairs + len(PAIRS) :]


def nvrtc_cubin(source: str) -> bytes:
    from cupy_backends.cuda.libs import nvrtc

    prog = nvrtc.createProgram(source, "patched.cu", [], [])
    try:
        nvrtc.compileProgram(prog, ["--gpu-architecture=sm_90", "-std=c++17", "--ptxas-options=-v"])
    finally:
        log = nvrtc.getProgramLog(prog)
    for line in log.splitlines():
        if "sf_network_persistent" in line or "spill" in line or "registers" in line:
            print("  nvrtc:", line.strip())
    return nvrtc.getCUBIN(prog)


def patch(kind: str):
    _, net = network()
    cubin = nvrtc_cubin(patched(net.source("cuda"), kind))
    folder = pathlib.Path(os.environ["SPIKEFORGE_CACHE_DIR"]) / "cuda"
    hits = [p for p in folder.glob("*.cubin") if b"sf_network_persistent" in p.read_bytes()]
    if len(hits) != 1:
        raise SystemExit(f"expected one cached image with the persistent kernel, found {len(hits)}")
    hits[0].write_bytes(b"SPKFBLB1" + hashlib.sha256(cubin).digest() + cubin)
    print(f"patched ({kind}) {hits[0].name}: {len(cubin)} bytes")


if __name__ == "__main__":
    if sys.argv[1] == "time":
        time_it()
    else:
        patch(sys.argv[2] if len(sys.argv) > 2 else "gathered")
