"""Bad network input is a Python exception that names the object and the problem, raised where the
mistake is made (the group, the projection, connect, the network, init_state), and the process
keeps working afterwards."""

import numpy as np
import pytest
import spikeforge as sf

LIF = "dv/dt = (El - v)/tau : volt (unless refractory)\nx : 1"
LIF_KW = dict(threshold="v > -50", reset="v = -60", refractory=2.0, constants=dict(El=-49.0, tau=10.0))


def group(n=10, name=None):
    return sf.NeuronGroup(n, LIF, name=name, **LIF_KW)


# -- groups ------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, -3, 2.5, "10", True])
def test_group_size_must_be_a_positive_integer(n):
    with pytest.raises((sf.ModelError, TypeError), match="NeuronGroup"):
        group(n)


def test_group_keywords_and_models():
    with pytest.raises(TypeError, match="unknown keyword.*treshold"):
        sf.NeuronGroup(5, LIF, treshold="v > 0")
    model = sf.NeuronModel(LIF, **LIF_KW)
    with pytest.raises(TypeError, match="already a NeuronModel.*threshold"):
        sf.NeuronGroup(5, model, threshold="v > 0")
    with pytest.raises(sf.ModelError, match="unknown name 'tauu'") as e:
        sf.NeuronGroup(5, "dv/dt = -v/tauu : volt", name="G")
    assert any("NeuronGroup 'G'" in note for note in e.value.__notes__)
    with pytest.raises(sf.ModelError, match="name must be an identifier"):
        group(name="my group")
    assert sf.NeuronGroup(5, model).model is model


def test_subgroups_are_index_ranges():
    P = group(100, name="P")
    a, b = P[:80], P[80:]
    assert (a.start, a.stop, b.start, b.stop) == (0, 80, 80, 100)
    assert a.root is P and len(b) == 20 and b.n == 20
    c = b[5:10]
    assert (c.root, c.start, c.stop) == (P, 85, 90)
    assert P[-1].start == 99 and P[-1].n == 1
    with pytest.raises(sf.ModelError, match="contiguous range"):
        P[::2]
    with pytest.raises(sf.ModelError, match="empty"):
        P[50:50]
    with pytest.raises(IndexError, match="out of range"):
        P[100]
    with pytest.raises(TypeError, match="slice"):
        P["a"]


# -- synapses ----------------------------------------------------------------------------------


def test_synapse_endpoints_and_delays():
    P = group(name="P")
    pg = sf.PoissonGroup(5, rates=0.01, name="pg")
    with pytest.raises(TypeError, match="target must be a NeuronGroup"):
        sf.Synapses(P, pg, on_pre="x += 1")
    with pytest.raises(TypeError, match="source must be"):
        sf.Synapses(np.arange(3), P, on_pre="x += 1")
    with pytest.raises(sf.ModelError, match="on_post writing a presynaptic variable"):
        sf.Synapses(P, P, on_pre="x += 1", on_post="x_pre += 1")
    with pytest.raises(sf.ModelError, match="Synapses 'S'.*delay must be a finite duration >= 0"):
        sf.Synapses(P, P, on_pre="x += 1", delay=-1.0, name="S")
    with pytest.raises(sf.ModelError, match="delay is an array"):
        sf.Synapses(P, P, on_pre="x += 1", delay=np.ones(3))
    brainunit = pytest.importorskip("brainunit")
    with pytest.raises(sf.UnitError, match="delay"):
        sf.Synapses(P, P, on_pre="x += 1", delay=5 * brainunit.mV)


def test_connect_arguments_are_checked():
    P = group(10, name="P")
    S = sf.Synapses(P[:4], P, on_pre="x += 1", name="S")
    with pytest.raises(sf.ModelError, match="Synapses 'S': connect: i has 3 entries and j has 2"):
        S.connect(i=[0, 1, 2], j=[0, 1])
    with pytest.raises(IndexError, match=r"i\[1\] = 4 is out of range: the source has 4 neurons"):
        S.connect(i=[0, 4], j=[0, 1])
    with pytest.raises(IndexError, match=r"j\[1\] = -1 is out of range"):
        S.connect(i=[0, 1], j=[0, -1])
    with pytest.raises(TypeError, match="must hold integers"):
        S.connect(i=[0.5], j=[1])
    with pytest.raises(sf.ModelError, match="give both i and j"):
        S.connect(i=[0])
    with pytest.raises(sf.ModelError, match="cannot be combined with i/j arrays"):
        S.connect(i=[0], j=[1], p=0.5)
    with pytest.raises(sf.ModelError, match="p"):
        S.connect(p=1.5)
    with pytest.raises(sf.ModelError, match="not both"):
        S.connect(fixed_out_degree=3, fixed_in_degree=3)
    with pytest.raises(sf.ModelError, match="without replacement needs at least 11"):
        S.connect(fixed_out_degree=11, replace=False)
    with pytest.raises(sf.ModelError, match="generator syntax is not supported"):
        S.connect(i=0, j="k for k in range(3)")
    with pytest.raises(sf.ModelError, match="unknown name 'k'") as e:
        S.connect(condition="k != j")
    assert any("connect() of Synapses 'S'" in note for note in e.value.__notes__)
    assert S.connections == []
    S.connect(condition="x_post > 0 and i != j", p=0.5)  # the target's parameter x
    S.connections.clear()
    S.connect(i=2, j=[3, 4, 5])
    S.connect(p=0.5, condition="i != j", seed=3)
    assert len(S.connections) == 2
    np.testing.assert_array_equal(S.connections[0].i, [2, 2, 2])


# -- inputs ------------------------------------------------------------------------------------


def test_inputs_are_checked():
    P = group(name="P")
    with pytest.raises(sf.ModelError, match="PoissonInput 'inp': target variable 'gee' is not a variable"):
        sf.PoissonInput(P, "gee", n=10, rate=0.01, weight=1.0, name="inp")
    with pytest.raises(TypeError, match="missing weight"):
        sf.PoissonInput(P, "v", n=10, rate=0.01)
    with pytest.raises(sf.ModelError, match="rate must be a finite rate >= 0"):
        sf.PoissonInput(P, "v", n=10, rate=-1.0, weight=1.0)
    inp = sf.PoissonInput(P, "v", N=10, rate=15.0, weight=1.0, name="inp2")
    with pytest.raises(sf.ModelError, match=r"rate\*dt = 1.5 is more than 1.*0.015"):
        sf.Network(P, inp, dt=0.1)
    with pytest.raises(sf.ModelError, match=r"PoissonGroup 'pg15': rates\*dt = 1.5 is more than 1"):
        sf.Network(sf.PoissonGroup(4, rates=15.0, name="pg15"), dt=0.1)
    with pytest.raises(sf.ModelError, match="one value or one per neuron"):
        sf.PoissonGroup(4, rates=np.ones((2, 2)))
    with pytest.raises(sf.ModelError, match=r"rates has shape \(3,\)"):
        sf.PoissonGroup(4, rates=np.ones(3))


def test_spike_generator_is_checked():
    with pytest.raises(sf.ModelError, match="same length"):
        sf.SpikeGeneratorGroup(3, [0, 1], [1.0])
    with pytest.raises(sf.ModelError, match="index 3 is out of range"):
        sf.SpikeGeneratorGroup(3, [0, 3], [1.0, 2.0])
    with pytest.raises(sf.ModelError, match="finite and >= 0"):
        sf.SpikeGeneratorGroup(3, [0], [-1.0])
    with pytest.raises(sf.ModelError, match="longer than every spike time"):
        sf.SpikeGeneratorGroup(3, [0], [5.0], period=5.0)
    sg = sf.SpikeGeneratorGroup(3, [0, 0], [1.0, 1.05], name="sg")
    with pytest.raises(sf.ModelError, match="SpikeGeneratorGroup 'sg': neuron 0 spikes more than once in step 10"):
        sg.spike_steps(0.1)
    steps, idx, period = sf.SpikeGeneratorGroup(3, [2, 0, 1], [0.3, 0.1, 0.1], period=1.0).spike_steps(0.1)
    np.testing.assert_array_equal(steps, [1, 1, 3])
    np.testing.assert_array_equal(idx, [0, 1, 2])
    assert period == 10
    with pytest.raises(sf.ModelError, match="not a whole number of steps"):
        sf.SpikeGeneratorGroup(3, [0], [0.1], period=1.05).spike_steps(0.1)


# -- monitors and the network ------------------------------------------------------------------


def test_monitors_are_checked():
    P = group(10, name="P")
    with pytest.raises(sf.ModelError, match="has no variable 'u'"):
        sf.StateMonitor(P, "u")
    with pytest.raises(IndexError, match="record index 10 is out of range for 10"):
        sf.StateMonitor(P, "v", record=[0, 10])
    with pytest.raises(IndexError, match="record index 3 is out of range for 2"):
        sf.StateMonitor(P[8:], "v", record=[3])
    with pytest.raises(sf.ModelError, match="capacity must be >= 1"):
        sf.SpikeMonitor(P, capacity=0)
    with pytest.raises(sf.ModelError, match="every must be >= 1"):
        sf.StateMonitor(P, "v", every=0)
    with pytest.raises(TypeError, match="monitors record a group"):
        sf.SpikeMonitor("P")


def test_network_membership_and_names():
    P = group(name="P")
    Q = group(name="P")
    with pytest.raises(ValueError, match="same name 'P'"):
        sf.Network(P, Q)
    with pytest.raises(TypeError, match="add the group itself"):
        sf.Network(P[:3])
    with pytest.raises(TypeError, match="keyword spikes= must be a monitor"):
        sf.Network(P, spikes=P)
    with pytest.raises(TypeError, match="cannot add"):
        sf.Network(P, 3)
    with pytest.raises(sf.ModelError, match="dt must be a finite duration > 0"):
        sf.Network(P, dt=0)


def test_synapse_statements_are_checked_where_the_projection_is_made():
    P = group(10, name="P")
    Q = sf.NeuronGroup(5, "dw/dt = -w/(10*ms) : 1", name="Q")
    with pytest.raises(sf.ModelError, match="Synapses 'S'") as e:
        sf.Synapses(P, P, on_pre="gee_post += 1", name="S")
    assert e.value.field.endswith("on_pre") and "^" in str(e.value)
    with pytest.raises(sf.ModelError, match="Synapses 'S2'.*'v'") as e:
        sf.Synapses(P, Q, on_pre="v_post += 1", name="S2")  # Q has no v
    with pytest.raises(sf.ModelError, match="Synapses 'S3'"):
        sf.Synapses(P, P, model="w : 1", on_pre="w_pre += 1", name="S3")
    # the process keeps working: a correct projection of the same groups
    S = sf.Synapses(P, Q, "w : 1", on_pre="w_post += w", name="S4")
    assert S.delay_variable() is None
    D = sf.Synapses(P, P, "d : second", on_pre="x_post += 1", delay="d", name="S5")
    assert D.delay_variable() == "d"
