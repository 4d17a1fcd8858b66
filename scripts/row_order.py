"""Does the order of a row's targets matter to the persistent kernels? brainevent's COBA
(bench_networks.py's coba_be) with its two projections given as explicit pairs, fixed out-degree
80 with replacement, each row's targets in draw order or sorted (the target blocks of a warp's
32 lanes then a few, not up to 16). Counted arrivals make both orders' spikes equal.

Usage: python scripts/row_order.py SCALE STEPS STRATEGY [STRATEGY ...]
"""

import sys

import jax
import numpy as np

sys.path.insert(0, __file__.rsplit("/", 2)[0] + "/bench")
import bench_networks as bn  # noqa: E402
import spikeforge as sf  # noqa: E402

scale, steps = int(sys.argv[1]), int(sys.argv[2])
case = bn.Case(bn.MODELS["coba_be"], 4000 * scale, steps * bn.DT)
m, n, ne = case.model, case.n, case.n_exc
rng = np.random.default_rng(5)
pairs = {}
for name, lo, hi in (("Ce", 0, ne), ("Ci", ne, n)):
    j = rng.integers(0, n, size=(hi - lo, bn.OUT_DEGREE))
    i = np.repeat(np.arange(hi - lo), bn.OUT_DEGREE)
    pairs[name] = (i, j)


def build(strategy, order):
    P = sf.NeuronGroup(
        n,
        m.equations,
        threshold="v > Vt",
        reset="v = Vr",
        refractory=bn.REFRACTORY,
        constants=m.constants,
        method=m.method,
        name="P",
    )
    Ce = sf.Synapses(P[:ne], P, on_pre="ge_post += we", constants=dict(we=m.we), name="Ce")
    Ci = sf.Synapses(P[ne:], P, on_pre="gi_post += wi", constants=dict(wi=m.wi), name="Ci")
    for syn in (Ce, Ci):
        i, j = pairs[syn.name]
        j = np.sort(j, axis=1) if order == "sorted" else j
        syn.connect(i=i, j=j.reshape(-1))
    return sf.Network(P, Ce, Ci, dt=bn.DT, strategy=strategy)


v0 = bn.initial_v(m, n)
for text in sys.argv[3:]:
    strategy, settings = bn.parse_strategy(text)
    counts = {}
    for order in ("drawn", "sorted"):
        net = build(strategy, order)
        state = net.init_state(seed=0, P=dict(v=v0))
        with bn.grid_settings(settings):
            timing, (_, out) = bn.time_calls(jax.jit(lambda s, net=net: net.run(s, steps=steps, progress=False)), state)
        counts[order] = np.asarray(out.spike_count["P"])
        rate = counts[order].mean() / (steps * bn.DT / 1000.0)
        print(f"x{scale} {text} {order}: {timing.median:.4f} s, {rate:.2f} Hz [{net.last_path_detail}]", flush=True)
    same = np.array_equal(counts["drawn"], counts["sorted"])
    print(f"x{scale} {text}: spikes equal across orders: {same}", flush=True)
