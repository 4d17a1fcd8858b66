"""Delays by a hand-built graph where every arrival step is known.

A SpikeGeneratorGroup fires at chosen steps; every synapse has its own target neuron, whose
counter ``x`` (``dx/dt = 0``) the spike increments on arrival. A StateMonitor records ``x`` at the
start of every step, so ``x`` at step k counts the arrivals of steps < k: each synapse's arrival
steps are read off exactly and compared with ``spike step + int(d/dt + 0.5)`` (Brian2's rounding),
for homogeneous and heterogeneous delays of 0, one step, non-integer multiples of dt and the
longest supported. Also: a delay-0 spike arrives after the target's update and before its reset,
so a reset that assigns overwrites it.
"""

import jax.numpy as jnp
import numpy as np
import pytest
import spikeforge as sf
from network_references import Group, Projection, delay_steps, simulate

DT = 0.1
COUNTER = "dx/dt = 0 : 1"
SPIKE_TIMES = np.array([0.0, 0.3, 1.0, 2.05])  # ms -> steps 0, 3, 10, 20 (2.05 + 1e-4 -> 20)
SPIKE_STEPS = np.array([0, 3, 10, 20])


def generator(name="sg"):
    return sf.SpikeGeneratorGroup(1, np.zeros(SPIKE_TIMES.size, int), SPIKE_TIMES, name=name)


def arrivals_from_trace(trace):
    """(steps, synapse) arrival counts: x at step k+1 minus x at step k."""
    return np.diff(np.asarray(trace), axis=0)


def expected_arrivals(steps, delays_steps):
    out = np.zeros((steps - 1, len(delays_steps)), dtype=np.int64)
    for s, d in enumerate(delays_steps):
        for k in SPIKE_STEPS + d:
            if k < steps - 1:
                out[k, s] += 1
    return out


def run_counter_network(delay, model=None, values=None, n_targets=1, steps=None, homogeneous=None):
    sg = generator()
    T = sf.NeuronGroup(n_targets, COUNTER, name="T")
    S = sf.Synapses(sg, T, model, on_pre="x_post += 1", delay=delay, name="S")
    S.connect(i=np.zeros(n_targets, int), j=np.arange(n_targets))
    net = sf.Network(sg, T, S, x=sf.StateMonitor(T, "x"), dt=DT)
    init = dict(T=dict(x=0.0))
    if values is not None:
        init["S"] = values
    state = net.init_state(seed=0, dtype=jnp.float64, **init)
    _, out = net.run(state, steps=steps)
    return np.asarray(out.x.x)


@pytest.mark.parametrize(
    "delay,expect",
    [(0.0, 0), (0.1, 1), (0.25, 3), (0.14, 1), (0.15, 1), (0.16, 2), (1.0, 10), (1.234, 12)],
)
def test_homogeneous_delays_arrive_at_the_rounded_step(delay, expect, device):
    assert delay_steps(delay, DT) == expect  # Brian2's int(d/dt + 0.5), computed in float64 ms
    steps = 40
    trace = run_counter_network(delay, steps=steps)
    np.testing.assert_array_equal(arrivals_from_trace(trace), expected_arrivals(steps, [expect]))


def test_heterogeneous_delays_arrive_at_their_own_steps(device):
    delays = np.array([0.0, 0.1, 0.14, 0.15, 0.16, 0.25, 0.5, 1.0, 1.234, 0.0, 2.5])
    steps = 60
    trace = run_counter_network("d", model="d : second", values=dict(d=delays), n_targets=delays.size, steps=steps)
    np.testing.assert_array_equal(arrivals_from_trace(trace), expected_arrivals(steps, delay_steps(delays, DT)))


def test_heterogeneous_delays_arrive_on_time_in_split_runs(device):
    """A run in calls of a few steps each. With per-synapse delays the CUDA kernels deliver at
    emission into ring buffers of arrivals that do not outlive a call: each call's first step
    rebuilds the arrivals still on their way from the spike queue (the C kernels deliver at
    arrival). Every synapse's arrivals come at their own steps, whatever the calls' bounds."""
    delays = np.array([0.0, 0.1, 0.25, 0.5, 1.0, 1.234, 2.5, 0.3])
    sg = generator()
    T = sf.NeuronGroup(delays.size, COUNTER, name="T")
    S = sf.Synapses(sg, T, "d : second", on_pre="x_post += 1", delay="d", name="S")
    S.connect(i=np.zeros(delays.size, int), j=np.arange(delays.size))
    net = sf.Network(sg, T, S, x=sf.StateMonitor(T, "x"), dt=DT)
    state = net.init_state(seed=0, dtype=jnp.float64, T=dict(x=0.0), S=dict(d=delays))
    traces = []
    for steps in (7, 1, 5, 12, 25, 10):
        state, out = net.run(state, steps=steps)
        traces.append(np.asarray(out.x.x))
    trace = np.concatenate(traces)
    expect = expected_arrivals(trace.shape[0], delay_steps(delays, DT))
    np.testing.assert_array_equal(arrivals_from_trace(trace), expect)


def test_longest_supported_delay(device):
    """The longest delay the queue takes arrives on time (one for all synapses, and per synapse);
    one step more is a clear error."""
    longest = sf.Network.MAX_DELAY_STEPS
    steps = longest + 30
    trace = run_counter_network(longest * DT, steps=steps)
    np.testing.assert_array_equal(arrivals_from_trace(trace), expected_arrivals(steps, [longest]))
    with pytest.raises(sf.ModelError, match="Synapses 'S'.*delay"):
        run_counter_network((longest + 1) * DT, steps=10)
    per_synapse = sf.Network.MAX_PER_SYNAPSE_DELAY_STEPS
    delays = np.array([0.0, per_synapse * DT, 1.0])
    trace = run_counter_network("d", model="d : second", values=dict(d=delays), n_targets=3, steps=per_synapse + 30)
    expect = expected_arrivals(per_synapse + 30, delay_steps(delays, DT))
    np.testing.assert_array_equal(arrivals_from_trace(trace), expect)
    with pytest.raises(sf.ModelError, match="Synapses 'S'.*delay"):
        run_counter_network("d", model="d : second", values=dict(d=[(per_synapse + 1) * DT]), steps=10)


def test_negative_per_synapse_delays_are_an_error():
    with pytest.raises(sf.ModelError, match="Synapses 'S'.*negative"):
        run_counter_network("d", model="d : second", values=dict(d=[-0.1]), steps=10)


def test_delay_zero_arrives_after_the_update_and_before_the_reset(device):
    """A neuron driven over threshold, with synapses onto itself (delay 0) and onto a second
    neuron that never spikes: on the spiking neuron the reset overwrites what arrived in the same
    step; on the other, the arrival is seen at the next step, not integrated in its own step."""
    eqs = "dv/dt = drive/(1*ms) : 1 (unless refractory)\ndrive : 1"
    P = sf.NeuronGroup(2, eqs, threshold="v > 1", reset="v = 0", refractory=0.3, name="P")
    S = sf.Synapses(P[:1], P, on_pre="v_post += 0.15", name="S")
    S.connect(i=[0, 0], j=[0, 1])
    net = sf.Network(P, S, v=sf.StateMonitor(P, "v"), spikes=sf.SpikeMonitor(P), dt=DT)
    state = net.init_state(dtype=jnp.float64, P=dict(v=[0.0, 0.0], drive=[3.0, 0.0]))
    _, out = net.run(state, steps=30)

    def update(state, not_ref):
        return dict(v=np.where(not_ref, state["v"] + DT * state["drive"], state["v"]), drive=state["drive"])

    def reset(state, idx):
        state["v"][idx] = 0.0

    group = Group(
        n=2,
        state=dict(v=np.zeros(2), drive=np.array([3.0, 0.0])),
        update=update,
        threshold=lambda s: s["v"] > 1,
        reset=reset,
        refractory_steps=3,
    )
    ref = simulate(
        {"P": group}, [Projection("P", "P", np.array([0, 0]), np.array([0, 1]), "v", 0.15)], 30, record=[("P", "v")]
    )
    np.testing.assert_allclose(np.asarray(out.v.v), ref.traces[("P", "v")], rtol=0, atol=1e-12)
    assert ref.counts["P"][0] >= 2 and ref.counts["P"][1] == 0
    i, t = out.spikes.numpy()
    np.testing.assert_array_equal(i, ref.spikes["P"][1])
    np.testing.assert_array_equal(np.rint(t / DT), ref.spikes["P"][0])
