"""Helpers of the plasticity and pathway tests: a fresh Brian2 (numpy target, float64), and
the order of Brian2's synapses slot observed (one spike source and one target neuron that both
spike in step 0, and projections whose pathways assign the target's ``x``: the final ``x``
depends on the order the pathways ran in)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import spikeforge as sf

DT = 0.1

try:
    GPU = jax.devices("gpu")[0]
except RuntimeError:
    GPU = None
gpu_only = pytest.mark.skipif(GPU is None, reason="needs a GPU")


def run_in_chunks(net, state, chunks):
    """Runs ``net`` from ``state`` for each number of steps in ``chunks``, one after another.
    Returns the final state and the ``spikes`` monitor's (i, t) of all the runs."""
    i_all, t_all = [], []
    for steps in chunks:
        state, out = net.run(state, steps=steps, progress=False)
        i, t = out.spikes.numpy()
        i_all.append(np.asarray(i))
        t_all.append(np.asarray(t))
    return state, np.concatenate(i_all), np.concatenate(t_all)


def fresh_brian2(dt=DT):
    """Brian2 in a new scope, numpy target, float64, ``dt`` in ms (skips without brian2)."""
    b2 = pytest.importorskip("brian2")
    b2.start_scope()
    b2.prefs.codegen.target = "numpy"
    b2.prefs.core.default_float_dtype = np.float64
    b2.defaultclock.dt = dt * b2.ms
    return b2


def final_x(made, make, device=None):
    """``x`` after 3 steps, ``made`` a list of ``(name, on_pre, on_post, order)`` (statements
    or dicts of named pathways), simulated by ``make``: ``"brian2"`` or ``"spikeforge"``."""
    if make == "brian2":
        b2 = fresh_brian2()
        ms = b2.ms
        sg = b2.SpikeGeneratorGroup(1, [0], [0.0] * ms, dt=DT * ms)
        T = b2.NeuronGroup(1, "x : 1\nu : 1", threshold="u > 0", reset="u = 0", dt=DT * ms)
        T.x, T.u = 1.0, 1.0
        objs = [b2.Synapses(sg, T, on_pre=a, on_post=b, order=o, name=n, dt=DT * ms) for n, a, b, o in made]
        for S in objs:
            S.connect(i=0, j=0)
        b2.Network(sg, T, *objs).run(0.3 * ms)
        return float(T.x[0])
    sg = sf.SpikeGeneratorGroup(1, [0], [0.0], name="sg")
    T = sf.NeuronGroup(1, "dx/dt = 0 : 1\ndu/dt = 0 : 1", threshold="u > 0", reset="u = 0", name="T")
    objs = [sf.Synapses(sg, T, on_pre=a, on_post=b, order=o, name=n) for n, a, b, o in made]
    for S in objs:
        S.connect(i=[0], j=[0])
    net = sf.Network(sg, T, *objs, dt=DT)
    state = net.init_state(dtype=jnp.float64, T=dict(x=np.ones(1), u=np.ones(1)))
    with jax.default_device(device or jax.devices()[0]):
        new, _ = net.run(state, steps=3, progress=False)
    return float(np.asarray(new["T"]["x"])[0])
