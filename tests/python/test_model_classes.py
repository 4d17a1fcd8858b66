"""Model classes (seed 000: neural's Hodgkin-Huxley, Alpha synapse, Oizumi, OTP) against a float64
reference that runs the same ode() with numpy, with euler and rk4, on every platform."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import spikeforge as sf
from conftest import check_written
from model_class_reference import class_layout, run_reference
from seed000_models import OTP, Alpha, HodgkinHuxley, Oizumi

N = 12


def _setup(name, rng):
    """(class, dt, steps, initial values, per-neuron values, per-step inputs) for one seed model."""
    if name == "hh":
        v0 = rng.uniform(-75, -50, N)
        v0[:2] = (-55.0, -40.0)  # exactly on the removable singularities: the `abs(alpha) <= 1e-7` branch
        init = dict(v=v0, n=rng.uniform(0.2, 0.4, N), m=rng.uniform(0.0, 0.1, N), h=rng.uniform(0.4, 0.7, N))
        return HodgkinHuxley, 0.01, 400, init, dict(stimulus=rng.uniform(0, 20, N)), {}
    if name == "alpha":
        spikes = (rng.random((300, N)) < 0.05).astype(float)
        return Alpha, 0.001, 300, {}, {}, dict(stimulus=spikes)
    if name == "oizumi":
        spikes = (rng.random((300, N)) < 0.1).astype(float)
        init = dict(N=rng.uniform(30, 51, N), g=rng.uniform(0, 5, N))
        return Oizumi, 0.5, 300, init, dict(f=rng.uniform(0, 100, N)), dict(input=spikes)
    if name == "otp":
        stim = np.repeat(rng.uniform(0, 100, (6, N)), 50, axis=0)  # odorant steps every 50 dt
        return OTP, 1e-4, 300, {}, {}, dict(stimulus=stim)
    raise ValueError(name)


def _run_both(name, method, dtype, device, seed=0):
    rng = np.random.default_rng(seed)
    cls, dt, steps, init, per_neuron, per_step = _setup(name, rng)
    model = sf.NeuronModel.from_class(cls, method=method)
    state = model.init_state(N, dtype=dtype, **init, **per_neuron)
    stored = model.state_variables
    run = jax.jit(lambda s, i: model.run(s, dt=dt, steps=steps, inputs=i, record=[stored[0]]))
    new, out = run(state, {k: jnp.asarray(v, dtype) for k, v in per_step.items()})
    ref_init = {k: np.asarray(state[k], np.float64) for k in stored}
    ref, ref_traces = run_reference(cls, ref_init, dt, steps, method, per_neuron, per_step, record=[stored[0]])
    check_written(*(new[k] for k in stored), out.spike_count, out.traces[stored[0]])
    return model, new, out, ref, ref_traces


# Scales for the comparison: the typical magnitude of each model's variables.
SCALE = {"hh": 100.0, "alpha": 100.0, "oizumi": 50.0, "otp": 100.0}


@pytest.mark.parametrize("method", ["euler", "rk4"])
@pytest.mark.parametrize("name", ["hh", "alpha", "oizumi", "otp"])
def test_seed_models_match_the_numpy_reference_f64(device, name, method):
    model, new, out, ref, ref_traces = _run_both(name, method, jnp.float64, device)
    for k in model.state_variables:
        got = np.asarray(new[k], np.float64)
        np.testing.assert_allclose(got, ref[k], rtol=1e-9, atol=1e-9 * SCALE[name], err_msg=f"{name}.{k}")
    first = model.state_variables[0]
    np.testing.assert_allclose(np.asarray(out.traces[first]), ref_traces[first], rtol=1e-9, atol=1e-9 * SCALE[name])


@pytest.mark.parametrize("name", ["hh", "alpha", "oizumi", "otp"])
def test_seed_models_float32_stay_close(device, name):
    model, new, _, ref, _ = _run_both(name, "rk4", jnp.float32, device, seed=1)
    for k in model.state_variables:
        got = np.asarray(new[k], np.float64)
        scale = max(1.0, np.abs(ref[k]).max())
        assert np.abs(got - ref[k]).max() <= 1e-3 * scale, f"{name}.{k}: {np.abs(got - ref[k]).max()}"


def test_models_do_something_nontrivial(device):
    """Guards the comparisons above against vacuous agreement (everything at rest)."""
    _, new, _, ref, _ = _run_both("oizumi", "euler", jnp.float64, device)
    assert ref["g"].max() > 1 and ref["N"].min() < 45, "spikes must release transmitter"
    _, new, _, ref, _ = _run_both("hh", "rk4", jnp.float64, device)
    assert np.ptp(ref["v"]) > 10
    _, new, _, ref, _ = _run_both("otp", "rk4", jnp.float64, device)
    assert ref["I"].max() > 1 and ref["v"].max() > 0 and (ref["v"] >= 0).all()
    _, new, _, ref, _ = _run_both("alpha", "euler", jnp.float64, device)
    assert ref["s"].max() > 0.1


def test_init_state_uses_class_defaults_and_bounds_hold(device):
    model = sf.NeuronModel.from_class(Oizumi, method="euler")
    assert model.state_variables == ("N", "g", "p", "NT")
    state = model.init_state(4, dtype=jnp.float64)
    np.testing.assert_array_equal(np.asarray(state["N"]), 51.0)
    np.testing.assert_array_equal(np.asarray(state["p"]), 0.0)
    # Every step a spike: N is depleted, g grows; the bounds hold throughout.
    spikes = jnp.ones((200, 4), jnp.float64)
    new, out = model.run(state, dt=1.0, steps=200, inputs={"input": spikes}, record=["N"])
    check_written(new["N"], new["g"], out.traces["N"])
    assert (np.asarray(out.traces["N"]) >= 0).all() and (np.asarray(out.traces["N"]) <= 51).all()
    assert (np.asarray(new["g"]) <= 1000).all() and np.asarray(new["g"]).min() > 10
    # Above the upper bound, d_N > 0 would push N further: the clip brings it back to 51.
    new, _ = model.run(model.init_state(4, dtype=jnp.float64, N=60.0), dt=1.0, steps=1)
    np.testing.assert_array_equal(np.asarray(new["N"]), 51.0)


def test_per_neuron_parameters(device):
    """A Default_Params value given to init_state becomes a per-neuron array."""
    model = sf.NeuronModel.from_class(Alpha, method="rk4")
    ar = np.linspace(5, 20, N)
    state = model.init_state(N, dtype=jnp.float64, ar=ar, s=0.0, u=1.0)
    new, _ = model.run(state, dt=0.001, steps=50)
    ref, _ = run_reference(Alpha, {"s": np.zeros(N), "u": np.ones(N)}, 0.001, 50, "rk4", per_neuron={"ar": ar})
    np.testing.assert_allclose(np.asarray(new["s"]), ref["s"], rtol=1e-10, atol=1e-12)
    assert np.ptp(np.asarray(new["s"])) > 1e-3


def test_vmap_over_a_batch_of_inputs(device):
    model = sf.NeuronModel.from_class(Oizumi, method="rk4")
    rng = np.random.default_rng(3)
    spikes = (rng.random((3, 40, 5)) < 0.2).astype(np.float64)
    state = model.init_state(5, dtype=jnp.float64)
    batched = jax.vmap(lambda sp: model.run(state, dt=0.5, steps=40, inputs={"input": sp})[0]["g"])(jnp.asarray(spikes))
    for b in range(3):
        ref, _ = run_reference(
            Oizumi,
            {k: np.asarray(state[k]) for k in model.state_variables},
            0.5,
            40,
            "rk4",
            per_step={"input": spikes[b]},
        )
        np.testing.assert_allclose(np.asarray(batched[b]), ref["g"], rtol=1e-10, atol=1e-10)


def test_oizumi_source_is_not_the_seeds_broken_code():
    """The seed's generator printed `self = ...` for Oizumi's internals; ours stores them."""
    model = sf.NeuronModel.from_class(Oizumi, method="euler")
    for target in ("cuda", "c"):
        src = model.source(target, per_step=["input"])
        assert "self" not in src
        for v in ("N", "g", "p", "NT"):
            assert f"sf_next_{v} =" in src and f"out_{v}" in src
        assert "input" in src


def test_reference_layout_matches_the_model():
    for cls in (HodgkinHuxley, Alpha, Oizumi, OTP):
        states, internals, _, _, _ = class_layout(cls)
        assert sf.NeuronModel.from_class(cls).state_variables == tuple(states + internals)


# -- diagnostics ---------------------------------------------------------------------------------


class WithLoop(sf.Model):
    Default_States = dict(v=0.0)
    Default_Params = dict(tau=10.0)

    def ode(self, current=0.0):
        for _ in range(3):
            self.d_v = -self.v / self.tau


class WithUnknownFunction(sf.Model):
    Default_States = dict(v=0.0)

    def ode(self):
        self.d_v = np.sinc(self.v)


class WithListComprehension(sf.Model):
    Default_States = dict(v=0.0)

    def ode(self):
        w = [x for x in range(2)]
        self.d_v = w


class WithTypo(sf.Model):
    Default_States = dict(v=(0.0, -1.0, 1.0))
    Default_Params = dict(tau=10.0)

    def ode(self):
        self.d_v = -self.v / self.tua


class WithParamWrite(sf.Model):
    Default_States = dict(v=0.0)
    Default_Params = dict(tau=10.0)

    def ode(self):
        self.tau = 3.0
        self.d_v = -self.v


class WithAttributeChain(sf.Model):
    Default_States = dict(v=0.0)

    def ode(self):
        self.d_v = np.random.rand()


@pytest.mark.parametrize(
    "cls,needle,line,column",
    [
        (WithLoop, "unsupported construct in ode(): a 'for' loop", 2, 5),
        (WithUnknownFunction, "unknown function 'np.sinc'", 2, 16),
        (WithListComprehension, "a list comprehension", 2, 9),
        (WithTypo, "unknown attribute 'self.tua'", 2, 26),
        (WithParamWrite, "cannot assign to 'tau': it is a parameter", 2, 5),
        (WithAttributeChain, "a call to 'np.random.rand'", 2, 16),
    ],
)
def test_unsupported_constructs_are_named_and_located(cls, needle, line, column):
    with pytest.raises(sf.ModelError) as e:
        sf.NeuronModel.from_class(cls)
    err = e.value
    text = str(err)
    assert needle in text, text
    assert (err.field, err.line, err.column) == ("ode", line, column), text
    # The rendering names the class, the file and the line in that file, and puts a caret under the place.
    assert f"{cls.__name__}.ode()" in text and "test_model_classes.py" in text
    src_line, caret = text.splitlines()[1:3]
    assert caret.index("^") - 4 == column - 1, text
    assert err.file_line == cls.ode.__code__.co_firstlineno + line - 1
    if cls is WithTypo:
        assert "did you mean 'self.tau'" in text


def test_class_definition_errors():
    class NoDefault(sf.Model):
        Default_States = dict(v=0.0)

        def ode(self, current):
            self.d_v = current

    with pytest.raises(sf.ModelError, match="'current' has no value"):
        sf.NeuronModel.from_class(NoDefault)

    class BadBounds(sf.Model):
        Default_States = dict(v=(5.0, 0.0, 1.0))

        def ode(self):
            self.d_v = 1.0

    with pytest.raises(ValueError, match="outside"):
        sf.NeuronModel.from_class(BadBounds)
    with pytest.raises(ValueError, match="method"):
        sf.NeuronModel.from_class(Alpha, method="heun4")
