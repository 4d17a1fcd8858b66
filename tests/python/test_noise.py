"""White noise (xi): Euler-Maruyama with a counter-based stream keyed by (seed, neuron, step)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import spikeforge as sf
from conftest import PLATFORMS, check_written

OU = "dx/dt = -x/tau + sigma*sqrt(2/tau)*xi : 1"


def ou(dtype=jnp.float32):
    return sf.NeuronModel(OU, constants=dict(tau=10.0, sigma=2.0))


def test_ornstein_uhlenbeck_moments(device):
    """Stationary OU: mean 0, variance sigma^2 (exact for the Euler-Maruyama chain: sigma^2 /
    (1 - dt/(2 tau))), lag-k autocorrelation (1 - dt/tau)^k."""
    model = ou()
    n, dt, tau, sigma = 20_000, 0.1, 10.0, 2.0
    state = model.init_state(n, dtype=jnp.float64, rng_seed=7)
    state, _ = jax.jit(lambda s: model.run(s, dt=dt, steps=2000))(state)  # 20 tau: stationary
    new, out = jax.jit(lambda s: model.run(s, dt=dt, steps=50, record=["x"], record_every=50))(state)
    x0, x1 = np.asarray(state["x"]), np.asarray(new["x"])
    check_written(x1)
    var = sigma**2 / (1 - dt / (2 * tau))
    assert abs(x0.mean()) < 4 * np.sqrt(var / n)
    assert abs(x0.var() / var - 1) < 4 * np.sqrt(2 / n)
    rho = np.corrcoef(x0, x1)[0, 1]
    assert abs(rho - (1 - dt / tau) ** 50) < 4 / np.sqrt(n)


def test_stream_is_a_function_of_seed_neuron_and_step(device):
    model = ou()
    s = model.init_state(64, rng_seed=3)
    a, _ = model.run(s, dt=0.1, steps=100)
    b, _ = model.run(s, dt=0.1, steps=100)
    np.testing.assert_array_equal(np.asarray(a["x"]), np.asarray(b["x"]))
    c, _ = model.run(dict(s, rng_seed=jnp.int32(4)), dt=0.1, steps=100)
    assert not np.array_equal(np.asarray(a["x"]), np.asarray(c["x"]))
    # Split runs continue the same stream (the step counter lives in the state).
    half, _ = model.run(s, dt=0.1, steps=50)
    whole, _ = model.run(half, dt=0.1, steps=50)
    np.testing.assert_array_equal(np.asarray(a["x"]), np.asarray(whole["x"]))


@pytest.mark.skipif("gpu" not in PLATFORMS, reason="needs a GPU to compare with")
def test_cpu_and_gpu_streams_are_bit_identical():
    model = sf.NeuronModel("dx/dt = xi/sqrt(dt) : 1")  # x accumulates the raw normals
    outs = []
    for platform in ("cpu", "gpu"):
        with jax.default_device(jax.devices(platform)[0]):
            s = model.init_state(1000, rng_seed=11)
            new, _ = model.run(s, dt=1.0, steps=3)
            outs.append(np.asarray(new["x"]))
    np.testing.assert_array_equal(outs[0], outs[1])


def test_noise_errors():
    with pytest.raises(sf.ModelError, match=r"'euler' \(additive noise\) or 'heun'"):
        sf.NeuronModel(OU, constants=dict(tau=10.0, sigma=2.0), method="rk4")
    with pytest.raises(sf.ModelError, match="must enter linearly"):
        sf.NeuronModel("dx/dt = xi**2 : 1")
    with pytest.raises(sf.ModelError, match="can only appear in the equations"):
        sf.NeuronModel("dx/dt = -x : 1", threshold="xi > 1")


def test_multiplicative_noise_uses_stratonovich_heun_pathwise(device):
    """Geometric Brownian motion in Stratonovich form, dx = mu x dt + s x o dW, is solved exactly
    by x = x0 exp(mu t + s W). W is integrated alongside from the same normals, so Heun's path can
    be compared with the exact solution path by path (strong error O(dt))."""
    model = sf.NeuronModel("dx/dt = mu*x + s*x*xi : 1\ndW/dt = xi : 1", constants=dict(mu=0.05, s=0.3))
    assert model.method == "heun"
    n, dt, steps = 4000, 0.01, 1000
    state = model.init_state(n, dtype=jnp.float64, x=1.0, W=0.0, rng_seed=5)
    new, _ = jax.jit(lambda st: model.run(st, dt=dt, steps=steps))(state)
    x, w = np.asarray(new["x"]), np.asarray(new["W"])
    exact = np.exp(0.05 * dt * steps + 0.3 * w)
    assert np.abs(x / exact - 1).max() < 5e-3
    assert abs(w.var() / (dt * steps) - 1) < 0.1  # W is a Brownian motion at t = 10


def test_euler_refuses_multiplicative_noise():
    with pytest.raises(sf.ModelError, match="additive noise only"):
        sf.NeuronModel("dx/dt = x*xi : 1", method="euler")
