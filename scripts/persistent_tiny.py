"""A tiny network run on the GPU by one path, for compute-sanitizer (scripts/gpu_persistent.sh):
a recurrent current-based group with delays of 0 and 2 steps, a Poisson group with per-synapse
delays, a spike generator, a Poisson input and every kind of monitor, 30 steps, float32 with float
atomics and float64 in deterministic mode (ordered compaction, counted and ordered deliveries).

Usage: python scripts/persistent_tiny.py STRATEGY   (per_step, block, grid, auto)
"""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import spikeforge as sf

jax.config.update("jax_enable_x64", True)
strategy = sys.argv[1]
for dtype, deterministic in ((jnp.float32, False), (jnp.float64, True)):
    P = sf.NeuronGroup(
        300,
        "dv/dt = (ge + gi - (v + 49))/(20*ms) : volt (unless refractory)\n"
        "dge/dt = -ge/(5*ms) : volt\ndgi/dt = -gi/(10*ms) : volt",
        threshold="v > -50",
        reset="v = -60",
        refractory=2.0,
        name="P",
    )
    Ce = sf.Synapses(P[:240], P, "w : volt", on_pre="ge += w", name="Ce")
    Ce.connect(p=0.1, seed=1)
    Ci = sf.Synapses(P[240:], P, on_pre="gi -= 4.5", delay=0.2, name="Ci")
    Ci.connect(p=0.1, seed=2)
    pg = sf.PoissonGroup(20, rates=0.2, name="pg")
    Sp = sf.Synapses(pg, P, "w : volt\nd : second", on_pre="v_post += w", delay="d", name="Sp")
    Sp.connect(i=np.repeat(np.arange(20), 5), j=np.arange(100) * 3)
    gen = sf.SpikeGeneratorGroup(2, [0, 1, 0], [0.0, 0.5, 1.2], name="gen")
    Sg = sf.Synapses(gen, P, on_pre="v += 5", name="Sg")
    Sg.connect(i=[0, 0, 1], j=[1, 2, 3])
    bg = sf.PoissonInput(P[:100], "ge", n=10, rate=0.05, weight=0.4, name="bg")
    net = sf.Network(
        P,
        Ce,
        Ci,
        pg,
        Sp,
        gen,
        Sg,
        bg,
        spikes=sf.SpikeMonitor(P),
        v=sf.StateMonitor(P, "v", record=[0, 5, 299], every=2),
        rate=sf.PopulationRateMonitor(P),
        dt=0.1,
        deterministic=deterministic,
        strategy=strategy,
    )
    rng = np.random.default_rng(0)
    state = net.init_state(
        seed=1,
        dtype=dtype,
        P=dict(v=-60 + 12 * rng.random(300)),
        Ce=dict(w=1.5),
        Sp=dict(w=2.0, d=rng.integers(0, 4, 100) * 0.1),
    )
    new, out = jax.block_until_ready(net.run(state, steps=30, progress=False))
    print(
        f"{strategy} ({net.last_strategy}), {jnp.dtype(dtype).name}: "
        f"{int(np.asarray(out.spike_count['P']).sum())} spikes, v[0] = {float(new['P']['v'][0]):.6f}"
    )
