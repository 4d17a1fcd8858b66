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
        (dict(refractory=None), "'(unless refractory)' needs a refractory period"),
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
    args = [state["v"][:7], state["I"], state["lastspike_step"], jnp.zeros((1,), jnp.int32)]
    outs = [
        jax.ShapeDtypeStruct((8,), jnp.float32),
        jax.ShapeDtypeStruct((8,), jnp.int32),
        jax.ShapeDtypeStruct((8,), jnp.int32),
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
                state["lastspike_step"],
                jnp.zeros((1,), jnp.int32),
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
