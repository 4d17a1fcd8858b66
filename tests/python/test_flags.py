"""Brian2's flags and built-in names: shared, constant, constant over dt, lastspike."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import spikeforge as sf


def test_shared_parameter_is_one_value_per_population(device):
    model = sf.NeuronModel("dv/dt = (E - v)/tau : 1\nE : 1 (shared)", constants=dict(tau=10.0), method="euler")
    state = model.init_state(5, dtype=jnp.float64, v=0.0, E=2.0)
    assert state["E"].shape == ()
    new, _ = jax.jit(lambda s: model.run(s, dt=0.1, steps=100))(state)
    expected = 2.0 * (1 - (1 - 0.01) ** 100)
    np.testing.assert_allclose(np.asarray(new["v"]), expected, rtol=1e-12)
    # Under vmap each batch member has its own shared value.
    states = jax.vmap(lambda e: model.init_state(5, dtype=jnp.float64, v=0.0, E=e))(jnp.array([1.0, 3.0]))
    new, _ = jax.jit(jax.vmap(lambda s: model.run(s, dt=0.1, steps=100)))(states)
    np.testing.assert_allclose(np.asarray(new["v"])[:, 0], [expected / 2, 1.5 * expected], rtol=1e-12)


def test_constant_over_dt_is_held_through_rk4_stages():
    # dx/dt = -k x with k held at its start-of-step value: RK4 then integrates dx/dt = -k0 x.
    held = sf.NeuronModel("dx/dt = -k*x : 1\nk = 1 + x : 1 (constant over dt)", method="rk4")
    live = sf.NeuronModel("dx/dt = -(1 + x)*x : 1", method="rk4")
    s = held.init_state(1, dtype=jnp.float64, x=0.5)
    a, _ = held.run(s, dt=0.1, steps=1)
    b, _ = live.run(live.init_state(1, dtype=jnp.float64, x=0.5), dt=0.1, steps=1)
    h, k0 = 0.1, 1.5
    # One RK4 step of a linear ODE with constant rate k0 is the 4th-order Taylor polynomial.
    z = -k0 * h
    np.testing.assert_allclose(float(a["x"][0]), 0.5 * (1 + z + z**2 / 2 + z**3 / 6 + z**4 / 24), rtol=1e-14)
    assert abs(float(a["x"][0]) - float(b["x"][0])) > 1e-6


def test_lastspike_is_the_time_of_the_last_spike(device):
    model = sf.NeuronModel(
        "dv/dt = 1/ms * (1 + 0*lastspike) : 1\nls : second",
        threshold="v > 1",
        reset="v = 0\nls = lastspike",
        refractory=0.0,
    )
    state = model.init_state(3, dtype=jnp.float64)
    new, out = jax.jit(lambda s: model.run(s, dt=0.1, steps=35))(state)
    assert int(out.spike_count[0]) == 3
    # v crosses 1 after 11 steps of 0.1 ms: spikes at steps 10, 21, 32 (times 1.0, 2.1, 3.2 ms).
    np.testing.assert_allclose(np.asarray(new["ls"]), 3.2, atol=1e-9)


@pytest.mark.parametrize(
    "equations,reset,needle",
    [
        ("dv/dt = -v : 1\nc : 1 (constant)", "c = 1", r"flagged \(constant\)"),
        ("dv/dt = -v : 1\nc : 1 (shared)", "c = 1", r"flagged \(shared\)"),
        ("dv/dt = -v : 1 (shared)", None, "only parameters"),
    ],
)
def test_flag_errors(equations, reset, needle):
    with pytest.raises(sf.ModelError, match=needle):
        sf.NeuronModel(equations, threshold="v > 1", reset=reset)
