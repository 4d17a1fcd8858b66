"""brainevent's COBA (bench/bench_networks.py's coba_be) by the thread-block cluster kernel
(codegen::network_kernel::grid::cluster) against the register grid and the resident block: the
same initial state, each strategy's spike counts per neuron (equal in float64, the rates within 1%
in float32), the path each took (``net.last_path_detail``). Short enough for compute-sanitizer.

Usage: python scripts/cluster_short.py NEURONS STEPS DTYPE STRATEGY [STRATEGY ...]
(a strategy as bench_networks.py's --strategy takes it: ``cluster``, ``cluster::16`` (a cluster of
16 blocks), ``grid``, ``block``); exits 1 when a strategy's spikes differ from the first's.
"""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "bench"))
import bench_networks as bn  # noqa: E402

n, steps, dtype = int(sys.argv[1]), int(sys.argv[2]), jnp.dtype(sys.argv[3])
if dtype == jnp.float64:
    jax.config.update("jax_enable_x64", True)
case = bn.Case(bn.MODELS["coba_be"], n, steps * bn.DT)
first = None
failed = False
for text in sys.argv[4:]:
    strategy, settings = bn.parse_strategy(text)
    net = bn.build_network(case, strategy)
    state = net.init_state(seed=0, dtype=dtype, P=dict(v=bn.initial_v(case.model, n)))
    with bn.grid_settings(settings):
        _, out = jax.block_until_ready(jax.jit(lambda s, net=net: net.run(s, steps=steps, progress=False))(state))
    counts = np.asarray(out.spike_count["P"])
    rate = counts.mean() / (steps * bn.DT / 1000.0)
    if first is None:
        first = (text, counts)
        verdict = "reference"
    elif dtype == jnp.float64:
        same = np.array_equal(counts, first[1])
        verdict = "same spikes" if same else f"DIFFERENT spikes from {first[0]}"
        failed |= not same
    else:
        close = abs(counts.sum() - first[1].sum()) <= 0.01 * max(first[1].sum(), 1)
        verdict = "rate within 1%" if close else f"RATE DIFFERS from {first[0]}"
        failed |= not close
    print(f"{text}: {net.last_path_detail}; {counts.sum()} spikes, {rate:.2f} Hz; {verdict}", flush=True)
sys.exit(1 if failed else 0)
