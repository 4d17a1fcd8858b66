"""A network kernel's step with and without spikes: brainevent's COBA (bench_networks.py's
coba_be, x1 unless SCALE is given: x10 and x100 run on the register grid) at its drive and with
none (no neuron reaches threshold, nothing is delivered), timed and profiled by phase
(SPIKEFORGE_CLUSTER_PROFILE=on in the environment prints the cluster kernel's profile), so that a
step's floor (update, barrier) and its deliveries' share are measured apart.

Usage: python scripts/cluster_floor.py STEPS STRATEGY [SCALE]
"""

import sys

import jax
import numpy as np

sys.path.insert(0, __file__.rsplit("/", 2)[0] + "/bench")
import bench_networks as bn  # noqa: E402

steps, text = int(sys.argv[1]), sys.argv[2]
scale = int(sys.argv[3]) if len(sys.argv) > 3 else 1
case = bn.Case(bn.MODELS["coba_be"], 4000 * scale, steps * bn.DT)
strategy, settings = bn.parse_strategy(text)
for drive in (20.0, 0.0):
    net = bn.build_network(case, strategy, constants=dict(I_ext=drive))
    # at no drive, v starts at rest so that no neuron ever fires
    v0 = bn.initial_v(case.model, case.n) if drive else np.full(case.n, -60.0)
    state = net.init_state(seed=0, P=dict(v=v0))
    with bn.grid_settings(settings):
        timing, (_, out) = bn.time_calls(jax.jit(lambda s, net=net: net.run(s, steps=steps, progress=False)), state)
    spikes = int(np.asarray(out.spike_count["P"]).sum())
    per_step = 1e9 * timing.median / steps
    print(f"x{scale}, I_ext {drive}: {timing.median:.4f} s, {per_step:.0f} ns a step, {spikes} spikes")
