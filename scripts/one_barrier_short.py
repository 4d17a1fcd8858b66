"""A short run of brainevent's COBA (bench/bench_networks.py's coba_be) by the cooperative grid's
one-barrier kernel (codegen::network_kernel::grid, state in register slots), for
compute-sanitizer: float32, 200 steps, once per grid setting given (``flat``, ``split``, ``grouped``,
``flat:3``: the barrier, and a cap on the grid's blocks that leaves virtual blocks beyond the
register slots; ``flat::balanced``: the deliveries, bench_networks.parse_strategy's format).
Prints the path, the spikes and the rate of each.

Usage: python scripts/one_barrier_short.py NEURONS SETTING [SETTING ...]
"""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "bench"))
import bench_networks as bn  # noqa: E402

n = int(sys.argv[1])
case = bn.Case(bn.MODELS["coba_be"], n, 20.0)
net = bn.build_network(case, "grid")
assert "One grid barrier a step" in net.source("cuda"), "not the one-barrier kernel"
state = net.init_state(seed=0, dtype=jnp.float32, P=dict(v=bn.initial_v(case.model, n)))
for setting in sys.argv[2:]:
    _, settings = bn.parse_strategy(f"grid:{setting}")
    with bn.grid_settings(settings):
        _, out = jax.block_until_ready(jax.jit(lambda s: net.run(s, steps=case.steps, progress=False))(state))
    counts = np.asarray(out.spike_count["P"])
    rate = counts.mean() / (case.duration_ms / 1000.0)
    path = f"{net.last_strategy} ({net.last_path_detail})"
    print(f"{setting}: path {path}, {counts.sum()} spikes, {rate:.1f} Hz", flush=True)
