"""Bad input gives a clear Python exception naming the problem, and the process keeps working."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import spikeforge as sf
from references import load_spec

LIF = load_spec("lif_32")


def lif(**changes):
    kw = dict(
        equations=LIF["equations"],
        threshold=LIF["threshold"],
        reset=LIF["reset"],
        refractory=LIF["refractory"],
        constants=LIF["constants"],
    )
    kw.update(changes)
    return sf.NeuronModel(**kw)


def test_malformed_equation_has_line_column_and_caret():
    with pytest.raises(sf.ModelError) as e:
        lif(equations="I : amp\ndv/dt = (v_rest - v + R*I / tau : volt")
    err = e.value
    assert (err.field, err.line) == ("equations", 2)
    text = str(err)
    assert "line 2, column" in text and "^" in text
    source_line, caret_line = text.splitlines()[1:3]
    assert source_line.strip().startswith("dv/dt")
    assert caret_line.index("^") == err.column - 1 + 4


def test_unknown_symbol_is_named_with_a_suggestion():
    with pytest.raises(sf.ModelError) as e:
        lif(equations="dv/dt = (v_rest - v + R*I) / tauu : volt (unless refractory)\nI : amp")
    assert "unknown name 'tauu'" in str(e.value)
    assert "did you mean 'tau'" in str(e.value)
    assert e.value.column == 30


@pytest.mark.parametrize(
    "changes,needle",
    [
        (dict(threshold="v + 1"), "must be a condition"),
        (dict(reset="v_th = 1"), "cannot assign to 'v_th': it is a constant"),
        (dict(threshold="v >"), "expected a value"),
        (dict(equations="dv/dt = -v/tau : volt (unless refactory)"), "unknown flag 'unless refactory'"),
        (dict(equations="dv/dt = exq(v) : 1", refractory=None, threshold=None, reset=None), "unknown function 'exq'"),
        (
            dict(equations="dv/dt = a : 1\na = b : 1\nb = a : 1", refractory=None, threshold=None, reset=None),
            "cyclic subexpressions",
        ),
    ],
)
def test_model_errors(changes, needle):
    with pytest.raises(sf.ModelError) as e:
        lif(**changes)
    assert needle in str(e.value)


def test_run_argument_errors_name_the_argument():
    model = lif()
    state = model.init_state(10, v=-65.0, I=1.0)
    wrong = jnp.float64 if jax.config.jax_enable_x64 else jnp.int32
    bad_dtype = dict(state, I=state["I"].astype(wrong))
    with pytest.raises(TypeError, match=r"state\['I'\] has dtype"):
        model.run(bad_dtype, dt=0.1, steps=10)
    with pytest.raises(ValueError, match=r"state\['v'\] must have shape \(N,\)"):
        model.run(dict(state, v=jnp.zeros((2, 10), jnp.float32)), dt=0.1, steps=10)
    with pytest.raises(ValueError, match=r"state\['I'\] has shape \(9,\), expected \(10,\)"):
        model.run(dict(state, I=jnp.zeros(9, jnp.float32)), dt=0.1, steps=10)
    missing = {k: v for k, v in state.items() if k != "I"}
    with pytest.raises(KeyError, match="missing 'I'"):
        model.run(missing, dt=0.1, steps=10)
    with pytest.raises(ValueError, match=r"inputs\['I'\] has shape"):
        model.run(state, dt=0.1, steps=10, inputs={"I": jnp.zeros((9, 10), jnp.float32)})
    with pytest.raises(sf.ModelError, match="cannot record 'vv'"):
        model.run(state, dt=0.1, steps=10, record=["vv"])
    with pytest.raises(ValueError, match="unknown variable 'x'"):
        model.init_state(10, x=1.0)
    # The process keeps working.
    _, out = model.run(state, dt=0.1, steps=10)
    assert out.spike_count.shape == (10,)


def test_handler_rejects_wrong_buffers_with_an_xla_error_naming_the_argument():
    model = lif()
    state = model.init_state(8, v=-65.0, I=1.0)
    info = model._variant(dt=0.1, dtype="float32", per_neuron=(), per_step=(), record=())
    args = [state["v"][:7], state["I"], state["lastspike"], jnp.zeros((1, 2), jnp.int32)]
    outs = [
        jax.ShapeDtypeStruct((8,), jnp.float32),
        jax.ShapeDtypeStruct((8, 2), jnp.int32),
        jax.ShapeDtypeStruct((8,), jnp.int32),
        jax.ShapeDtypeStruct((1, 2), jnp.int32),
    ]
    # Errors of a GPU call surface when its result is awaited.
    with pytest.raises(Exception, match=r"argument 'v': expected float32\[8\], got float32\[7\]"):
        jax.block_until_ready(
            sf.neuron_run_p(
                *args,
                outs=outs,
                spec=info["spec"],
                key=info["key"],
                steps=5,
                record_every=1,
                n_inner=8,
            )
        )
    with pytest.raises(Exception, match="attribute 'key' does not match"):
        jax.block_until_ready(
            sf.neuron_run_p(
                state["v"],
                state["I"],
                state["lastspike"],
                jnp.zeros((1, 2), jnp.int32),
                outs=outs,
                spec=info["spec"],
                key="0" * 64,
                steps=5,
                record_every=1,
                n_inner=8,
            )
        )
    _, out = model.run(state, dt=0.1, steps=10)
    assert np.asarray(out.spike_count).shape == (8,)


# -- messages that name the argument (issue 8, items 9 and 11) -------------------------------------


def test_a_string_constant_names_the_constant():
    with pytest.raises(sf.ModelError, match=r"constants\['tau'\] is the string '10\*ms'") as e:
        lif(constants=dict(LIF["constants"], tau="10*ms"))
    assert e.value.field == "constants"


def test_an_array_constant_says_to_give_it_to_init_state():
    with pytest.raises(sf.ModelError, match=r"constants\['tau'\] is an array of shape \(5,\).*init_state\(n, tau="):
        lif(constants=dict(LIF["constants"], tau=np.full(5, 10.0)))


@pytest.mark.parametrize("n,needle", [(-3, "n must be >= 1, got -3"), (0, ">= 1"), (2.5, "must be an integer")])
def test_init_state_checks_n(n, needle):
    with pytest.raises(sf.ModelError, match=needle):
        lif().init_state(n)


def test_per_neuron_sizes_that_disagree_are_both_named():
    model = lif()
    state = model.init_state(4, v=-65.0, I=1.0)
    with pytest.raises(ValueError, match=r"state\['v'\] has 4 elements and state\['I'\] has 3"):
        model.run(dict(state, I=jnp.ones(3, jnp.float32)), dt=0.1, steps=10)
    with pytest.raises(ValueError, match=r"init_state: 'I' has shape \(3,\), but the group has n=4"):
        model.init_state(4, v=np.zeros(4), I=np.ones(3))
    with pytest.raises(ValueError, match=r"3 columns, but state\['v'\] has 4 elements"):
        model.run(state, dt=0.1, steps=10, inputs={"I": jnp.zeros((10, 3), jnp.float32)})
    with pytest.raises(ValueError, match="9 rows, but the run has steps=10"):
        model.run(state, dt=0.1, steps=10, inputs={"I": jnp.zeros((9, 4), jnp.float32)})


def test_recording_a_variable_twice_is_refused():
    model = lif()
    state = model.init_state(4, v=-65.0, I=1.0)
    with pytest.raises(sf.ModelError, match="record names 'v' more than once"):
        model.run(state, dt=0.1, steps=10, record=["v", "v"])


@pytest.mark.parametrize("steps", [10.7, 10.0, "10", True, None])
def test_steps_must_be_an_integer(steps):
    model = lif()
    state = model.init_state(4, v=-65.0, I=1.0)
    with pytest.raises(sf.ModelError, match="steps"):
        model.run(state, dt=0.1, steps=steps)


def test_numpy_integer_steps_reach_the_ffi_as_int64():
    model = lif()
    state = model.init_state(4, v=-65.0, I=20.0)
    want, want_out = model.run(state, dt=0.1, steps=100)
    for steps in (np.uint64(100), np.int32(100), np.int64(100), np.uint8(100)):
        text = jax.jit(lambda s, k=steps: model.run(s, dt=0.1, steps=k)).lower(state).as_text()
        assert "steps = 100 : i64" in text, steps
        got, out = model.run(state, dt=0.1, steps=steps)
        np.testing.assert_array_equal(np.asarray(got["v"]), np.asarray(want["v"]))
        np.testing.assert_array_equal(np.asarray(out.spike_count), np.asarray(want_out.spike_count))
        assert float(sf.time_of(got)) == 100 * 0.1
    with pytest.raises(sf.ModelError, match="record_every must be >= 1"):
        model.run(state, dt=0.1, steps=10, record_every=np.uint64(0))


@pytest.mark.parametrize("dt", [float("nan"), float("inf"), 0.0, -0.1, "0.1", None])
def test_dt_is_checked_in_python_and_named(dt):
    model = lif()
    state = model.init_state(4, v=-65.0, I=1.0)
    with pytest.raises(sf.ModelError, match=r"^dt ") as e:
        model.run(state, dt=dt, steps=10)
    assert e.value.field == "dt"
    with pytest.raises(sf.ModelError, match=r"^dt "):
        model.source("c", dt=dt)


def test_refractory_must_be_a_duration():
    with pytest.raises(sf.ModelError, match=r"refractory must be a finite duration >= 0"):
        lif(refractory=-1.0)
    with pytest.raises(sf.ModelError, match=r"refractory must be a finite duration"):
        lif(refractory=float("nan"))


def test_run_takes_steps_or_a_duration():
    model = lif()
    state = model.init_state(4, v=-65.0, I=1.0)
    with pytest.raises(sf.ModelError, match="either steps= or duration="):
        model.run(state, dt=0.1)
    with pytest.raises(sf.ModelError, match="either steps= or duration="):
        model.run(state, dt=0.1, steps=10, duration=1.0)
    # Brian2's count: a whole number of steps up to 1e-4 of a step, else rounded up.
    for duration, steps in ((1.0, 10), (0.3, 3), (0.7, 7), (1.05, 11), (0.100001, 1)):
        new, _ = model.run(state, dt=0.1, duration=duration)
        assert float(sf.time_of(new)) == steps * 0.1, duration
