"""White noise (xi): Euler-Maruyama with a counter-based stream keyed by (seed, neuron, step)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import spikeforge as sf
from conftest import PLATFORMS, check_written

OU = "dx/dt = -x/tau + sigma*sqrt(2/tau)*xi : 1"


def ou(method=None):
    return sf.NeuronModel(OU, constants=dict(tau=10.0, sigma=2.0), method=method)


@pytest.mark.parametrize("method", [None, "euler"])
def test_ornstein_uhlenbeck_moments(device, method):
    """Stationary OU: mean 0, variance sigma^2 (exact for the Euler-Maruyama chain: sigma^2 /
    (1 - dt/(2 tau))), lag-k autocorrelation (1 - dt/tau)^k. Additive noise: Euler-Maruyama,
    whether named or chosen."""
    model = ou(method)
    assert model.method == "euler"
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


# (equations, Brian2's choice): additive noise -> euler; a coefficient that reads a state
# variable or the time -> heun (Brian2's Equations.stochastic_type). Written with Brian2's units so
# that Brian2 reads the same strings.
CHOICES = [
    ("dv/dt = -v/(10*ms) + 0.9*xi/sqrt(ms) : 1", "euler"),
    ("dv/dt = -v/(10*ms) + (0.3 + 0.2*0.5)*xi/sqrt(ms) : 1", "euler"),
    ("dv/dt = -v/(10*ms) + v*xi/sqrt(ms) : 1", "heun"),
    ("dv/dt = -v/(10*ms) + w*xi/sqrt(ms) : 1\ndw/dt = -w/(5*ms) : 1", "heun"),
    ("dv/dt = -v/(10*ms) + t/ms*xi/sqrt(ms) : 1", "heun"),
    ("dv/dt = -v/(10*ms) + p*xi/sqrt(ms) : 1\np : 1", "euler"),
    ("dv/dt = -v/(10*ms) + 0.5*xi_a/sqrt(ms) + 0.1*xi_b/sqrt(ms) : 1", "euler"),
]


@pytest.mark.parametrize("equations, brian_choice", CHOICES)
def test_the_method_is_chosen_as_brian2_chooses(equations, brian_choice):
    model = sf.NeuronModel(equations)
    assert model.method == brian_choice
    brian2 = pytest.importorskip("brian2")
    group = brian2.NeuronGroup(1, equations)
    net = brian2.Network(group)
    net.run(0.1 * brian2.ms, namespace={})
    assert group.state_updater.method_choice == ("exact", "euler", "heun")
    chosen = "heun" if "x_support" in group.state_updater.abstract_code else "euler"
    assert chosen == brian_choice


def test_euler_is_accepted_for_additive_noise_and_refused_for_multiplicative_noise():
    additive = sf.NeuronModel("dv/dt = -v/tau + 0.9*xi : 1", constants=dict(tau=10.0), method="euler")
    assert additive.method == "euler"
    # Brian2 refuses it too ("Cannot integrate equations with multiplicative noise with this state
    # updater"); the message says which coefficient makes the noise multiplicative.
    with pytest.raises(sf.ModelError, match=r"additive noise only .* the noise coefficient in dv/dt reads 'w'") as e:
        sf.NeuronModel("dv/dt = -v + w*xi : 1\ndw/dt = -w : 1", method="euler")
    assert "heun" in e.value.suggestion
    with pytest.raises(sf.ModelError, match=r"reads 't'"):
        sf.NeuronModel("dv/dt = -v + t*xi : 1", method="euler")


def test_noise_errors():
    with pytest.raises(sf.ModelError, match=r"'euler' \(additive noise\) or 'heun'"):
        sf.NeuronModel(OU, constants=dict(tau=10.0, sigma=2.0), method="rk4")
    with pytest.raises(sf.ModelError, match="must enter linearly"):
        sf.NeuronModel("dx/dt = xi**2 : 1")
    with pytest.raises(sf.ModelError, match="'xi_a' must enter linearly"):
        sf.NeuronModel("dx/dt = xi_a*xi_b : 1")
    with pytest.raises(sf.ModelError, match="sub-steps are not supported with white noise"):
        sf.NeuronModel(OU, constants=dict(tau=10.0, sigma=2.0), substeps=2)
    with pytest.raises(sf.ModelError, match="can only appear in the equations"):
        sf.NeuronModel("dx/dt = -x : 1", threshold="xi > 1")


@pytest.mark.parametrize("method", [None, "heun"])
def test_multiplicative_noise_uses_stratonovich_heun_pathwise(device, method):
    """Geometric Brownian motion in Stratonovich form, dx = mu x dt + s x o dW, is solved exactly
    by x = x0 exp(mu t + s W). W is integrated alongside from the same normals, so Heun's path can
    be compared with the exact solution path by path (strong error O(dt))."""
    model = sf.NeuronModel("dx/dt = mu*x + s*x*xi : 1\ndW/dt = xi : 1", constants=dict(mu=0.05, s=0.3), method=method)
    assert model.method == "heun"
    n, dt, steps = 4000, 0.01, 1000
    state = model.init_state(n, dtype=jnp.float64, x=1.0, W=0.0, rng_seed=5)
    new, _ = jax.jit(lambda st: model.run(st, dt=dt, steps=steps))(state)
    x, w = np.asarray(new["x"]), np.asarray(new["W"])
    exact = np.exp(0.05 * dt * steps + 0.3 * w)
    assert np.abs(x / exact - 1).max() < 5e-3
    assert abs(w.var() / (dt * steps) - 1) < 0.1  # W is a Brownian motion at t = 10


def test_stochastic_heun_is_brian2s_scheme_step_by_step(device):
    """Brian2's heun for stochastic equations, term for term: x_support = x + g(x) dW,
    x_new = x + dt f(x) + dW (g(x) + g(x_support)) / 2. The increments dW come out of the run
    (W integrates xi alone), and a float64 numpy loop of Brian2's formula with them gives the same
    path."""
    mu, s, dt, steps = 0.05, 0.3, 0.01, 200
    model = sf.NeuronModel("dx/dt = mu*x + s*x*xi : 1\ndW/dt = xi : 1", constants=dict(mu=mu, s=s), method="heun")
    state = model.init_state(50, dtype=jnp.float64, x=1.0, W=0.0, rng_seed=2)
    _, out = model.run(state, dt=dt, steps=steps + 1, record=["x", "W"])
    x_run, w = np.asarray(out.traces["x"]), np.asarray(out.traces["W"])
    dw = np.diff(w, axis=0)
    x = np.ones(50)
    for k in range(steps):
        support = x + s * x * dw[k]
        x = x + dt * mu * x + 0.5 * dw[k] * (s * x + s * support)
        np.testing.assert_allclose(x_run[k + 1], x, rtol=1e-12)
