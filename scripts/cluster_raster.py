"""A network's spike raster as the cluster microbenchmark's input (bench/micro/cluster_arrivals.cu
FILE): brainevent's COBA (bench_networks.py's coba_be, x1) run for STEPS steps with a spike
monitor, its spikes written as firing ballots, one uint32 word for each 32 neurons (4096 / 32 a
step, the neurons beyond the network's 4000 silent), so that the microbenchmark's exchanges are
timed on the network's own spikes (its bursts included) rather than on 20 drawn a step.

Usage: python scripts/cluster_raster.py STEPS FILE [MODEL]
"""

import sys

import jax
import numpy as np

sys.path.insert(0, __file__.rsplit("/", 2)[0] + "/bench")
import bench_networks as bn  # noqa: E402

WORDS = 4096 // 32


def main(argv) -> int:
    steps, path = int(argv[1]), argv[2]
    model = bn.MODELS[argv[3] if len(argv) > 3 else "coba_be"]
    case = bn.Case(model, 4000, steps * bn.DT)
    m = case.model
    net = bn.build_network(case, spikes=True)
    state = net.init_state(seed=0, P=dict(v=bn.initial_v(m, case.n)))
    _, out = jax.jit(lambda s: net.run(s, steps=steps, progress=False))(state)
    i, t = out.spikes.numpy()
    step = np.rint(t / bn.DT).astype(np.int64)
    words = np.zeros((steps, WORDS), np.uint32)
    np.bitwise_or.at(words, (step, i // 32), (np.uint32(1) << (i % 32).astype(np.uint32)))
    words.tofile(path)
    per_step = np.bincount(step, minlength=steps)
    print(
        f"{m.name} x1, {steps} steps: {len(i)} spikes ({len(i) / case.n / (steps * bn.DT / 1000):.2f} Hz), "
        f"a step: mean {per_step.mean():.1f}, median {np.median(per_step):.0f}, 99th percentile "
        f"{np.percentile(per_step, 99):.0f}, most {per_step.max()}; written to {path}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
