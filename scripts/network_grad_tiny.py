"""A network gradient on the GPU whose adjoint kernel runs on a grid of tens of blocks, for
compute-sanitizer (memcheck, synccheck, racecheck) on ``sf_network_adjoint``:

    XLA_PYTHON_CLIENT_PREALLOCATE=false compute-sanitizer --tool memcheck --error-exitcode 9 \\
        --kernel-name kns=sf_network_adjoint python scripts/network_grad_tiny.py

1500 LIF neurons (1200 excitatory rows: ~38 blocks of 1024 threads), per-synapse delays reaching
back across segments (the checkpoint's spike queue), a shared inhibitory weight, a refractory
period, 24 steps in segments of 5 and of 3 (the record mode); float32 then float64. Prints the
gradients' norms and "ok". ``--quick``: float32 and segments of 3 only (the record mode, in
which the float32 default is the kernel's warp-a-neuron variant), for a short sanitizer run.
"""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import spikeforge as sf

jax.config.update("jax_enable_x64", True)
N, N_E, DT = 1500, 1200, 0.1
EQS = "dv/dt = (ge - gi - v + I) / tau : 1\ndge/dt = -ge / tau_e : 1\ndgi/dt = -gi / tau_i : 1\nI : 1"
P = sf.NeuronGroup(
    N,
    EQS,
    method="euler",
    constants=dict(tau=10.0, tau_e=5.0, tau_i=8.0, v_th=1.0),
    threshold="v > v_th",
    reset="v = 0",
    refractory=0.3,
    surrogate=sf.surrogate.fast_sigmoid(5.0),
    name="P",
)
E = sf.Synapses(P[:N_E], P, "w : 1\nd : second", on_pre="ge += w", delay="d", name="E")
Inh = sf.Synapses(P[N_E:], P, "wi : 1 (shared)", on_pre="v_post -= wi", name="I")
rng = np.random.default_rng(0)
E.connect(i=rng.integers(0, N_E, 6000), j=rng.integers(0, N, 6000))
Inh.connect(i=rng.integers(0, N - N_E, 1500), j=rng.integers(0, N, 1500))
net = sf.Network(P, E, Inh, vm=sf.StateMonitor(P, "v", record=[0, 700, 1499]), dt=DT)
QUICK = "--quick" in sys.argv[1:]
for dtype in (jnp.float32,) if QUICK else (jnp.float32, jnp.float64):
    r = np.random.default_rng(1)
    state = net.init_state(
        seed=0,
        dtype=dtype,
        P=dict(v=r.uniform(0, 0.9, N), ge=r.uniform(0, 0.2, N), gi=r.uniform(0, 0.1, N), I=r.uniform(1, 2.5, N)),
        E=dict(
            w=lambda n: np.random.default_rng(2).uniform(0.05, 0.4, n),
            d=lambda n: np.random.default_rng(3).uniform(0, 0.5, n),
        ),
        I=dict(wi=0.15),
    )

    # Segments of 5 steps (the per-step recomputation) and of 3 (the refractory period: the
    # record mode): the same gradients.
    found = []
    for every in (3,) if QUICK else (5, 3):

        def loss(v0, w, wi, state=state, every=every):
            s = dict(state, P=dict(state["P"], v=v0), E=dict(state["E"], w=w), I=dict(state["I"], wi=wi))
            new, out = net.run(s, steps=24, checkpoint_every=every)
            return jnp.sum(new["P"]["v"] ** 2) + jnp.sum(out.vm.v**2) + 0.05 * out.spike_count["P"].sum()

        grads = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(state["P"]["v"], state["E"]["w"], state["I"]["wi"])
        norms = [float(jnp.linalg.norm(g)) for g in grads]
        assert all(np.isfinite(norms)) and norms[1] > 0, norms
        print(jnp.dtype(dtype).name, f"segments of {every}: gradient norms", norms)
        found.append(grads)
    for a, b in zip(*found) if len(found) == 2 else ():
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        assert np.linalg.norm(a - b) <= (1e-4 if dtype == jnp.float32 else 1e-10) * np.linalg.norm(b), (a, b)
print("ok")
