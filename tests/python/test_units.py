"""Unit names in expressions are scale factors into the kernels' system (ms, mV, nA, uS, nF)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import spikeforge as sf


def lif(threshold, reset, refractory, tau):
    return sf.NeuronModel(
        f"dv/dt = (-65*mV - v + I) / ({tau}) : volt (unless refractory)\nI : amp",
        threshold=threshold,
        reset=reset,
        refractory=refractory,
    )


def test_units_in_expressions_equal_plain_numbers(device):
    with_units = lif("v > -50*mV", "v = -0.065*volt", "2*ms", "0.01*second")
    plain = lif("v > -50", "v = -65", 2.0, "10")
    n = 200
    current = np.linspace(0, 40, n)
    outs = []
    for model in (with_units, plain):
        state = model.init_state(n, dtype=jnp.float64, v=-65.0, I=current)
        new, out = jax.jit(lambda s, m=model: m.run(s, dt=0.1, steps=3000))(state)
        outs.append((np.asarray(new["v"]), np.asarray(out.spike_count)))
    np.testing.assert_allclose(outs[0][0], outs[1][0], rtol=1e-12)
    np.testing.assert_array_equal(outs[0][1], outs[1][1])
    assert outs[1][1].max() > 10


def test_conductance_times_voltage_is_a_current():
    # 10 nS * 1 mV = 10 pA = 0.01 nA: with I = g*(E - v) the units agree without conversions.
    m = sf.NeuronModel("dv/dt = g*(E - v)/C : volt", constants=dict(g=10 * 1e-3, E=0.0, C=1.0))
    m2 = sf.NeuronModel("dv/dt = 10*nS*(E - v)/(1*nF) : volt", constants=dict(E=0.0))
    s1 = m.init_state(4, dtype=jnp.float64, v=-70.0)
    s2 = m2.init_state(4, dtype=jnp.float64, v=-70.0)
    a, _ = m.run(s1, dt=0.1, steps=100)
    b, _ = m2.run(s2, dt=0.1, steps=100)
    np.testing.assert_allclose(np.asarray(a["v"]), np.asarray(b["v"]), rtol=1e-12)


def test_unknown_unit_annotation_is_located():
    with pytest.raises(sf.ModelError, match="unknown unit 'vlot'") as e:
        sf.NeuronModel("dv/dt = -v/tau : vlot", constants=dict(tau=10.0))
    assert e.value.column == 18
