"""A hostile model (issue 8, items 10 and 11): names that carry code, forged specs at the FFI,
expressions that would exhaust the stack, values that do not fit the model's precision and
sub-step counts that would never compile. Each case here ran code, crashed, hung or compiled
into a wrong kernel before; now each is a located error that names the culprit, or works."""

import hashlib
import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import spikeforge as sf

CPU = jax.devices("cpu")[0]


def _payload(path):
    """A constant name that, pasted into C, declares and calls system()."""
    return f'y; extern int system(const char*); system("echo INJECTED >> {path}"); //'


def _assert_refused(excinfo, marker, name):
    message = str(excinfo.value)
    assert f"'{name}' is not a valid name" in message, message
    assert not marker.exists(), "the payload ran"


# -- item 10: names that carry code --------------------------------------------------------------


def test_a_per_neuron_constant_named_with_code_never_runs(tmp_path):
    marker = tmp_path / "f"
    bad = _payload(marker)
    with jax.default_device(CPU), pytest.raises(sf.ModelError) as e:
        model = sf.NeuronModel("dv/dt = -v/tau : 1", constants={"tau": 10.0, bad: 1.0})
        state = model.init_state(4, **{bad: np.ones(4)})
        jax.block_until_ready(model.run(state, dt=0.1, steps=2))
    _assert_refused(e, marker, bad)
    assert e.value.field == "constants"


def test_a_per_step_input_named_with_code_never_runs(tmp_path):
    marker = tmp_path / "f"
    bad = _payload(marker)
    model = sf.NeuronModel("dv/dt = -v/tau : 1", constants={"tau": 10.0})
    with jax.default_device(CPU), pytest.raises(sf.ModelError) as e:
        state = model.init_state(4)
        jax.block_until_ready(model.run(state, dt=0.1, steps=2, inputs={bad: np.ones((2, 4))}))
    _assert_refused(e, marker, bad)
    assert e.value.field == "inputs"


def test_a_model_class_internal_named_with_code_never_runs(tmp_path):
    marker = tmp_path / "f"
    bad = _payload(marker)

    class Leaky(sf.Model):
        Default_States = {"v": 0.0}
        Default_Inters = {bad: 0.0}

        def ode(self):
            self.d_v = -self.v

    with jax.default_device(CPU), pytest.raises(sf.ModelError) as e:
        model = sf.NeuronModel.from_class(Leaky)
        jax.block_until_ready(model.run(model.init_state(4), dt=0.1, steps=2))
    _assert_refused(e, marker, bad)
    assert "Default_Inters" in str(e.value)


def _canonical(spec: dict) -> str:
    """The spec's JSON as Rust writes it (compact, field order kept, constants sorted), whose
    SHA-256 is the key the handler checks."""
    spec = dict(spec, constants=dict(sorted(spec["constants"].items())))
    return json.dumps(spec, separators=(",", ":"), ensure_ascii=False)


def _forge(model, change):
    """A spec changed by `change` (a dict -> None function), with its correct key."""
    info = model._variant(dt=0.1, dtype="float32", per_neuron=(), per_step=(), record=())
    spec = json.loads(info["spec"])
    assert _canonical(spec) == info["spec"], "the test writes specs as Rust does"
    change(spec)
    text = _canonical(spec)
    return text, hashlib.sha256(text.encode()).hexdigest()


def _call_forged(text, key, inputs, outputs):
    call = jax.ffi.ffi_call("spikeforge_neuron_run", outputs)
    return call(*inputs, spec=text, key=key, steps=np.int64(2), record_every=np.int64(1), n_inner=np.int64(4))


def test_a_forged_spec_at_the_ffi_never_runs_its_payload(tmp_path):
    """No Python between the attacker and the handler: an exported program could carry this
    spec. The buffers match the layout the forged spec asks for (v, the constant per neuron,
    t0 -> v, spike_count), so only the name check stands in the way."""
    marker = tmp_path / "f"
    bad = _payload(marker)
    model = sf.NeuronModel("dv/dt = -v/tau : 1", constants={"tau": 10.0}, method="euler")

    def per_neuron_payload(spec):
        spec["constants"][bad] = 1.0
        spec["per_neuron"] = [bad]

    text, key = _forge(model, per_neuron_payload)
    f32 = jax.ShapeDtypeStruct((4,), jnp.float32)
    outs = (f32, jax.ShapeDtypeStruct((4,), jnp.int32))
    with jax.default_device(CPU):
        inputs = (jnp.ones(4, jnp.float32), jnp.ones(4, jnp.float32), jnp.zeros(1, jnp.int32))
        with pytest.raises(Exception) as e:
            jax.block_until_ready(_call_forged(text, key, inputs, outs))
    _assert_refused(e, marker, bad)


def test_a_forged_model_class_at_the_ffi_never_runs_its_payload(tmp_path):
    marker = tmp_path / "f"
    bad = _payload(marker)

    class Leaky(sf.Model):
        Default_States = {"v": 0.0}

        def ode(self):
            self.d_v = -self.v

    model = sf.NeuronModel.from_class(Leaky)
    text, key = _forge(model, lambda spec: spec["model_class"]["internals"].append(bad))
    f32 = jax.ShapeDtypeStruct((4,), jnp.float32)
    outs = (f32, f32, jax.ShapeDtypeStruct((4,), jnp.int32))
    with jax.default_device(CPU):
        inputs = (jnp.ones(4, jnp.float32), jnp.ones(4, jnp.float32), jnp.zeros(1, jnp.int32))
        with pytest.raises(Exception) as e:
            jax.block_until_ready(_call_forged(text, key, inputs, outs))
    _assert_refused(e, marker, bad)


@pytest.mark.parametrize("name", ["NAN", "INFINITY", "int32_t", "SF_LANES", "powf", "xor", "throw", "nullptr"])
def test_names_that_c_or_cuda_already_use_run(name):
    """Before, each of these failed in the C compiler (or NVRTC) at the first run; now each
    is spelled sf_u_<name> in the kernel, and its value is what the model says."""
    model = sf.NeuronModel(f"dv/dt = -v/tau + {name} : 1\n{name} : 1", constants={"tau": 10.0}, method="euler")
    with jax.default_device(CPU):
        state = model.init_state(3, v=1.0, **{name: np.array([0.0, 1.0, 2.0])})
        state, out = model.run(state, dt=0.1, steps=1, record=[name])
    np.testing.assert_allclose(np.asarray(state["v"]), 1.0 - 0.01 + 0.1 * np.array([0.0, 1.0, 2.0]), rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(out.traces[name])[0], [0.0, 1.0, 2.0])
    assert f"sf_u_{name}" in model.source("c")


def test_exp_and_exp_underscore_are_two_variables():
    """Before, both became `exp_` in the kernel (a redefinition)."""
    model = sf.NeuronModel("dv/dt = exp_ - v : 1\nexp_ : 1\nexpo = 2*exp_ : 1", method="euler")
    with jax.default_device(CPU):
        state, _ = model.run(model.init_state(2, v=0.0, exp_=np.array([1.0, 2.0])), dt=0.1, steps=1)
    np.testing.assert_allclose(np.asarray(state["v"]), [0.1, 0.2], rtol=1e-6)


def test_odd_unicode_in_a_name_is_a_located_error():
    with pytest.raises(sf.ModelError) as e:
        sf.NeuronModel("dvé/dt = -vé : 1")
    assert e.value.line == 1 and e.value.column == 2
    assert "'é' (U+00E9) is not allowed in a name" in str(e.value)
    with pytest.raises(sf.ModelError, match=r"U\+200B"):
        sf.NeuronModel("dv/dt = -v : 1\nw\u200b : 1")


# -- item 11: deep or long expressions -----------------------------------------------------------

_DEEP = {
    "parentheses": "equations = 'dv/dt = ' + '(' * 2600 + '-v' + ')' * 2600 + ' : 1'",
    "flat sum": "equations = 'dv/dt = -(' + ' + '.join(['v'] * 30000) + ') : 1'",
    "chained subexpressions": (
        "equations = 'dv/dt = -a0 : 1\\n' + ''.join(f'a{k} = a{k + 1} + v : 1\\n' for k in range(6000))"
        " + 'a6000 = v : 1'"
    ),
}

_DEFINE = """
import spikeforge as sf
{equations}
try:
    sf.NeuronModel(equations, method="euler")
except sf.ModelError as e:
    print("REFUSED", e.field, e.line, str(e).splitlines()[0])
"""

_FORGE = """
import hashlib, json
import jax, jax.numpy as jnp, numpy as np
import spikeforge as sf
{equations}
ok = sf.NeuronModel("dv/dt = -v : 1", method="euler")
spec = json.loads(ok._variant(dt=0.1, dtype="float32", per_neuron=(), per_step=(), record=())["spec"])
spec["equations"] = equations
text = json.dumps(spec, separators=(",", ":"), ensure_ascii=False)
key = hashlib.sha256(text.encode()).hexdigest()
f32 = jax.ShapeDtypeStruct((4,), jnp.float32)
call = jax.ffi.ffi_call("spikeforge_neuron_run", (f32, jax.ShapeDtypeStruct((4,), jnp.int32)))
try:
    with jax.default_device(jax.devices("cpu")[0]):
        args = (jnp.ones(4, jnp.float32), jnp.zeros(1, jnp.int32))
        kw = dict(steps=np.int64(2), record_every=np.int64(1), n_inner=np.int64(4))
        jax.block_until_ready(call(*args, spec=text, key=key, **kw))
except Exception as e:
    print("REFUSED", str(e).splitlines()[0])
"""


def _run(script):
    """Runs `script` in a fresh interpreter: before, these inputs killed the process (SIGSEGV)."""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"exit status {done.returncode}:\n{done.stderr[-2000:]}"
    return done.stdout


@pytest.mark.parametrize("case", sorted(_DEEP))
def test_deep_expressions_are_located_errors(case):
    out = _run(_DEFINE.format(equations=_DEEP[case]))
    assert out.startswith("REFUSED equations "), out
    limit = {
        "parentheses": "nests more than 200 levels deep",
        "flat sum": "more than 1000 operations deep",
        "chained subexpressions": "with its subexpressions substituted",
    }[case]
    assert limit in out, out


@pytest.mark.parametrize("case", sorted(_DEEP))
def test_deep_expressions_in_a_forged_spec_are_refused_by_the_handler(case):
    out = _run(_FORGE.format(equations=_DEEP[case]))
    assert out.startswith("REFUSED"), out
    assert "in equations, line" in out, out


# -- item 11: values the model's precision cannot hold -------------------------------------------


def _decay_to(equations, **constants):
    return sf.NeuronModel(equations, constants=constants, method="euler")


def test_a_constant_beyond_float32_is_an_error_in_float32_and_works_in_float64():
    """Before: 1e39 was printed as `inf.0f`, and the C compiler failed inside XLA."""
    model = _decay_to("dv/dt = (c*1e-39 - v)/(1*ms) : 1", c=1e39)
    with jax.default_device(CPU):
        with pytest.raises(sf.ModelError, match=r"the constant 'c' = 1e39 does not fit float32") as e:
            model.run(model.init_state(2, dtype=jnp.float32), dt=0.1, steps=1)
        assert e.value.field == "constants"
        state, _ = model.run(model.init_state(2, dtype=jnp.float64), dt=0.1, steps=1)
    np.testing.assert_allclose(np.asarray(state["v"]), 0.1, rtol=1e-12)


def test_a_literal_beyond_float32_is_located():
    model = _decay_to("dv/dt = (1e39*1e-39 - v)/(1*ms) : 1")
    with jax.default_device(CPU):
        with pytest.raises(sf.ModelError, match="the number 1e39 does not fit float32") as e:
            model.run(model.init_state(2, dtype=jnp.float32), dt=0.1, steps=1)
        assert (e.value.field, e.value.line, e.value.column) == ("equations", 1, 10)
        state, _ = model.run(model.init_state(2, dtype=jnp.float64), dt=0.1, steps=1)
    np.testing.assert_allclose(np.asarray(state["v"]), 0.1, rtol=1e-12)


def test_a_time_step_that_vanishes_in_float32_is_refused():
    """Before: dt = 1e-300 was printed as 0.0f; the state never moved and nothing said so."""
    model = _decay_to("dv/dt = -v/(1*ms) : 1")
    with jax.default_device(CPU):
        with pytest.raises(sf.ModelError, match="too small for float32") as e:
            model.run(model.init_state(2, v=1.0, dtype=jnp.float32), dt=1e-300, steps=1)
        assert e.value.field == "dt"
        state, _ = model.run(model.init_state(2, v=1.0, dtype=jnp.float64), dt=1e-300, steps=1)
    np.testing.assert_array_equal(np.asarray(state["v"]), 1.0 - 1e-300)


def test_a_unit_too_small_for_float32_is_located():
    model = _decay_to("dv/dt = -v/(1*ms) + 1*ym3 : 1")
    too_small = r"'ym3' stands for 9\.9+\d*e-55, which is too small"
    with jax.default_device(CPU), pytest.raises(sf.ModelError, match=too_small) as e:
        model.run(model.init_state(2, dtype=jnp.float32), dt=0.1, steps=1)
    assert e.value.column == 23


# -- item 11: sub-steps and state variables that hung the C compiler -----------------------------


def test_a_million_sub_steps_run_as_a_loop():
    """Before: 10**6 sub-steps were unrolled into the source, which never finished compiling."""
    model = sf.NeuronModel("dv/dt = -v/tau : 1", constants=dict(tau=10.0), method="euler", substeps=10**6)
    assert "sf_sub0_k < 1000000" in model.source("c", dtype=jnp.float64)
    with jax.default_device(CPU):
        state, _ = model.run(model.init_state(3, v=1.0, dtype=jnp.float64), dt=0.1, steps=2)
    h = 0.1 / 10**6
    expected = (1.0 - h / 10.0) ** (2 * 10**6)  # Euler's sub-steps, in closed form
    np.testing.assert_allclose(np.asarray(state["v"]), expected, rtol=1e-9)
    np.testing.assert_allclose(np.asarray(state["v"]), np.exp(-0.02), rtol=1e-8)


def test_looped_sub_steps_are_the_unrolled_ones():
    """8 sub-steps of dt = 0.2 (a loop in the kernel) against 4 of dt = 0.1 (unrolled), twice
    as many steps: the same sub-steps of 0.025 at the same times (the equation reads t)."""
    model = lambda k: sf.NeuronModel(  # noqa: E731
        "dv/dt = (-v + sin(t/ms))/(2*ms) : 1", method="rk4", substeps=k
    )
    looped, unrolled = model(8), model(4)
    assert "sf_sub0_k" in looped.source("c", dtype=jnp.float64)
    assert "sf_sub0_k" not in unrolled.source("c", dtype=jnp.float64)
    with jax.default_device(CPU):
        a, _ = looped.run(looped.init_state(2, v=0.5, dtype=jnp.float64), dt=0.2, steps=5)
        b, _ = unrolled.run(unrolled.init_state(2, v=0.5, dtype=jnp.float64), dt=0.1, steps=10)
    np.testing.assert_allclose(np.asarray(a["v"]), np.asarray(b["v"]), rtol=1e-12)
    # and both are RK4 of the equation (against a float64 reference with the same sub-steps)
    v, t, h = 0.5, 0.0, 0.025
    f = lambda t, v: (-v + np.sin(t)) / 2.0  # noqa: E731
    for _ in range(40):
        k1 = f(t, v)
        k2 = f(t + h / 2, v + h / 2 * k1)
        k3 = f(t + h / 2, v + h / 2 * k2)
        k4 = f(t + h, v + h * k3)
        v, t = v + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4), t + h
    np.testing.assert_allclose(np.asarray(a["v"]), v, rtol=1e-12)


def test_ten_thousand_state_variables_are_refused_at_once():
    """Before: the C compiler never returned."""
    equations = "".join(f"dv{k}/dt = -v{k}/(10*ms) : 1\n" for k in range(10_000))
    with pytest.raises(sf.ModelError, match="the model has 10000 state variables; one kernel holds at most 128") as e:
        sf.NeuronModel(equations)
    assert e.value.line == 129


# -- item 10: a forged network spec at the FFI ------------------------------------------------------


def _small_network():
    return {
        "dt": 0.1,
        "dtype": "float64",
        "groups": [
            {
                "kind": "neuron",
                "name": "P",
                "n": 4,
                "model": {
                    "equations": "dv/dt = (g - v) / tau : 1\ng : 1",
                    "threshold": "v > 1",
                    "reset": "v = 0",
                    "constants": {"tau": 10.0},
                },
            },
        ],
        "projections": [
            {"name": "S", "source": "P", "target": "P", "on_pre": "v_post += we", "constants": {"we": 0.5}}
        ],
    }


@pytest.mark.parametrize("where", ["a projection's constant", "a group model's constant", "a group's name"])
def test_a_forged_network_spec_at_the_ffi_never_runs_its_payload(tmp_path, where):
    """A network spec reaches the library by sf_network_compile and as the attribute of every
    spikeforge_network_run call: both check every name, so a forged spec (with its correct key,
    as an exported program could carry it) is refused, naming the name, and nothing runs."""
    from test_network_ffi import network_compile, operands, run

    marker = tmp_path / "f"
    bad = _payload(marker)
    compiled = network_compile(_small_network())
    assert compiled["ok"], compiled
    spec = json.loads(compiled["spec"])
    assert json.dumps(spec, separators=(",", ":"), ensure_ascii=False) == compiled["spec"], "Rust's JSON"
    if where == "a projection's constant":
        spec["projections"][0]["constants"] = {bad: 0.5}
        spec["projections"][0]["on_pre"] = "v_post += 1"
    elif where == "a group model's constant":
        spec["groups"][0]["model"]["constants"] = dict(sorted({bad: 1.0, "tau": 10.0}.items()))
    else:
        spec["groups"][0]["name"] = bad
        spec["projections"][0]["source"] = spec["projections"][0]["target"] = bad
    text = json.dumps(spec, separators=(",", ":"), ensure_ascii=False)
    key = hashlib.sha256(text.encode()).hexdigest()
    refused = network_compile(spec)
    assert not refused["ok"] and f"'{bad}' is not a valid name" in refused["error"]["rendered"], refused
    with jax.default_device(CPU), pytest.raises(Exception) as e:
        jax.block_until_ready(run(dict(compiled, spec=text, key=key), operands(compiled, {}), 3))
    _assert_refused(e, marker, bad)


def test_a_network_spec_sent_with_another_networks_key_is_refused():
    """The key of a network that already ran (its kernels compiled and cached under that key)
    with another network's spec: refused, not the cached kernels run on the other spec."""
    from test_network_ffi import network_compile, operands, run

    first = network_compile(_small_network())
    other = _small_network()
    other["projections"][0]["constants"]["we"] = 0.25
    second = network_compile(other)
    assert first["key"] != second["key"]
    with jax.default_device(CPU):
        ran = run(first, operands(first, {"P.g": [2.0] * 4}), 300)
        assert int(np.asarray(ran["P.spike_count"]).sum()) > 0
        with pytest.raises(Exception, match="attribute 'key' does not match attribute 'spec'"):
            jax.block_until_ready(run(dict(second, key=first["key"]), operands(second, {}), 3))
