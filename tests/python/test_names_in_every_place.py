"""Every name an expression may use, in every place it may appear, compiles and runs, or is
refused at definition with a located error, never later in the C compiler (issue 8, item 5).

Before: ``refractory="(t - lastspike) < 3*ms"`` validated, then failed inside XLA with the C
compiler's "'sf_lastspike_step' undeclared". The tables below put each name in each place of a
neuron model (equations, a subexpression, threshold, reset, a refractory condition, an
initial-value string) and of a network (``on_pre``, a delay expression, a Poisson input's weight,
a Poisson group's rates), run each on the CPU (the C dialect), and require that a refusal comes
from definition (``NeuronModel``, ``init_state``, the network's objects or ``init_state``) as a
``ModelError``. The rows Brian2 accepts must run. The CUDA of the same names is compiled by NVRTC
in ``tests/validation_compiles.rs`` and ``tests/nvrtc_compile_check.rs``."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import spikeforge as sf
from conftest import check_written

CPU = jax.devices("cpu")[0]

# name -> (as a number, as a condition). ``active`` is a boolean parameter, ``k`` an integer
# parameter, ``p`` a parameter, ``c`` a constant, ``s`` a subexpression, ``v`` the state.
NAMES = {
    "state": ("v", "v > 0.5"),
    "parameter": ("p", "p > 0"),
    "constant": ("c", "c > 1"),
    "subexpression": ("s", "s > 1"),
    "t": ("t", "t > 1*ms"),
    "dt": ("dt", "dt > 0*ms"),
    "i": ("i", "i > 0"),
    "N": ("N", "N > 2"),
    "lastspike": ("clip(lastspike, -1*ms, 1*ms)", "(t - lastspike) < 3*ms"),
    "not_refractory": ("int(not_refractory)", "not_refractory"),
    "pi": ("pi", "pi > 3"),
    "e": ("e", "e > 2"),
    "int()": ("int(v * 3)", "int(v * 3) > 0"),
    "sign()": ("sign(v - 0.5)", "sign(v - 0.5) > 0"),
    "floor/ceil": ("floor(v) + ceil(v)", "floor(v) < ceil(v + 1)"),
    "rand()": ("rand()", "rand() < 0.5"),
    "randn()": ("randn()", "randn() > 0"),
    "boolean parameter": ("int(active)", "active"),
    "integer parameter": ("k", "k > 0"),
}

PLACES = ("equations", "subexpression", "threshold", "reset", "refractory condition", "initial value")

# (name, place) pairs refused at definition, each with a located error; every other pair must
# run. Brian2 refuses them too: a subexpression defined by itself, random numbers in a
# subexpression not flagged '(constant over dt)' (it would be evaluated more than once per
# step), and dt in an initial value (the state is made before any run has a dt).
MAY_REFUSE = {
    ("subexpression", "subexpression"),
    ("rand()", "subexpression"),
    ("randn()", "subexpression"),
    ("dt", "initial value"),
}

BASE = """
dv/dt = (1.2 - v + {eq}) / (10*ms) : 1 (unless refractory)
s = 2*v + 1 + {sub} : 1
p : 1
active : boolean
k : integer
"""


def _model(number, condition, place):
    """The base model with the name put into ``place`` (0 elsewhere)."""
    zero = "0"
    eq = f"1e-3*({number})" if place == "equations" else zero
    sub = f"1e-3*({number})" if place == "subexpression" else zero
    threshold = f"v > 1 and ({condition})" if place == "threshold" else "v > 1"
    reset = f"v = 1e-3*({number}); k += 1" if place == "reset" else "v = 0; k += 1"
    refractory = f"v > 2 and ({condition})" if place == "refractory condition" else 2.0
    equations = BASE.format(eq=eq, sub=sub)
    if place == "subexpression":
        # The subexpression must be read to matter.
        equations = equations.replace("(1.2 - v + 0)", "(1.2 - v + 1e-3*s)")
    return sf.NeuronModel(
        equations,
        threshold=threshold,
        reset=reset,
        refractory=refractory,
        constants=dict(c=1.5),
        method="euler",
    )


def _run_neuron_row(label, place):
    number, condition = NAMES[label]
    try:
        model = _model(number, condition, place)
        values = dict(v=np.linspace(0.0, 0.9, 4), p=1.0, active=np.array([True, False, True, True]))
        if place == "initial value":
            values["v"] = f"0.5 + 1e-3*({number})"
        state = model.init_state(4, dtype=jnp.float64, **values)
    except sf.ModelError as e:
        return e
    # Past definition, nothing may fail: the C compiler, the handler, the kernel.
    new, out = model.run(state, dt=0.1, steps=40, record=["v"])
    check_written(new["v"], out.spike_count, out.traces["v"])
    return None


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("label", list(NAMES))
def test_every_name_in_every_place_of_a_neuron_model_runs_or_is_refused_at_definition(label, place):
    with jax.default_device(CPU):
        refused = _run_neuron_row(label, place)
    if refused is None:
        return
    assert (label, place) in MAY_REFUSE, f"{label} in {place} must run: {refused}"
    assert refused.field, refused


def test_a_refractory_condition_on_lastspike_runs_as_the_duration_it_spells():
    """The issue's own example: before, 'sf_lastspike_step undeclared' from the C compiler inside
    XLA. It now runs, and a condition that holds for 30 steps after a spike is refractoriness
    of 3 ms."""
    equations = "dv/dt = (1.5 - v) / (10*ms) : 1 (unless refractory)"
    common = dict(threshold="v > 1", reset="v = 0", method="euler")
    with jax.default_device(CPU):
        by_condition = sf.NeuronModel(equations, refractory="(t - lastspike) < 2.95*ms", **common)
        by_duration = sf.NeuronModel(equations, refractory="3*ms", **common)
        v0 = np.linspace(0.0, 0.9, 5)
        a, out_a = by_condition.run(by_condition.init_state(5, dtype=jnp.float64, v=v0), dt=0.1, steps=800)
        b, out_b = by_duration.run(by_duration.init_state(5, dtype=jnp.float64, v=v0), dt=0.1, steps=800)
    np.testing.assert_array_equal(np.asarray(out_a.spike_count), np.asarray(out_b.spike_count))
    np.testing.assert_allclose(np.asarray(a["v"]), np.asarray(b["v"]), atol=1e-12)
    assert (np.asarray(out_a.spike_count) >= 5).all()


# -- networks --------------------------------------------------------------------------------------

# Names a synapse statement may read: the source's and target's variables (_pre / _post),
# the synapse's own parameter, i, j, N_pre, N_post, lastspike_pre, t, dt, constants, pi, e and
# the functions.
SYNAPSE_NAMES = {
    "v_pre": "v_pre",
    "v_post": "v_post",
    "synaptic parameter": "w",
    "i": "i",
    "j": "j",
    "N_pre": "N_pre",
    "N_post": "N_post",
    "lastspike_pre": "lastspike_pre",
    "t": "t",
    "dt": "dt",
    "constant": "c",
    "pi": "pi",
    "e": "e",
    "int()": "int(v_post * 3)",
    "sign()": "sign(v_pre - 0.5)",
    "floor/ceil": "floor(v_post) + ceil(v_pre)",
    "parameter of the target": "g_post",
}

NETWORK_PLACES = ("on_pre", "delay", "poisson input weight", "poisson rates")

# What each place may read: a delay and a Poisson group's rates are one value for the whole
# object (constants, units, dt, pi, e, functions of those; rates also t, i, N), a Poisson input's
# weight reads the target's variables as plain names.
PLACE_READS = {
    "on_pre": set(SYNAPSE_NAMES),
    "delay": {"dt", "constant", "pi", "e"},
    "poisson input weight": {"constant", "pi", "e", "t", "dt"},
    "poisson rates": {"constant", "pi", "e", "t", "dt", "i"},
}

TARGET = "dv/dt = (0.5 - v + g) / (10*ms) : 1\ng : 1"


def _network(label, place):
    code = SYNAPSE_NAMES[label]
    # A source with variables (v, lastspike) that spikes every few steps.
    source = sf.NeuronGroup(3, "dv/dt = (1 + i) / (0.5*ms) : 1", threshold="v > 1", reset="v = 0", name="src")
    target = sf.NeuronGroup(2, TARGET, threshold="v > 1", reset="v = 0", name="T")
    objects = [source, target]
    if place in ("on_pre", "delay"):
        on_pre = f"v_post += 1e-3*({code})" if place == "on_pre" else "v_post += w"
        delay = f"0.2*ms + 1e-3*({code})*ms" if place == "delay" else 0.2
        S = sf.Synapses(source, target, "w : 1", on_pre=on_pre, delay=delay, constants=dict(c=1.5), name="S")
        S.connect(i=[0, 1, 2], j=[0, 1, 1])
        objects.append(S)
    elif place == "poisson input weight":
        weight = f"1e-3*({code.replace('_post', '')})"
        objects.append(sf.PoissonInput(target, "v", n=5, rate=0.1, weight=weight, constants=dict(c=1.5), name="inp"))
    else:
        pg = sf.PoissonGroup(4, rates=f"0.1 + 1e-3*({code})*kHz", constants=dict(c=1.5), name="pg")
        S = sf.Synapses(pg, target, on_pre="v_post += 0.01", name="S")
        S.connect(i=[0, 1, 2, 3], j=[0, 1, 0, 1])
        objects += [pg, S]
    net = sf.Network(*objects, dt=0.1)
    state = net.init_state(dtype=jnp.float64)
    return net, state


@pytest.mark.parametrize("place", NETWORK_PLACES)
@pytest.mark.parametrize("label", list(SYNAPSE_NAMES))
def test_every_name_in_every_place_of_a_network_runs_or_is_refused_at_definition(label, place):
    with jax.default_device(CPU):
        try:
            net, state = _network(label, place)
        except sf.ModelError as e:
            assert label not in PLACE_READS[place], f"{label} in {place} must run: {e}"
            assert "line 1" in str(e) or e.field, e
            return
        new, _ = net.run(state, steps=20, progress=False)
    check_written(new["T"]["v"])


def test_boolean_and_integer_variables_in_a_network_are_refused_at_definition():
    """Networks do not hold boolean or integer variables yet: refused when the network's state is
    made, naming the group and the variable, never in the compiler."""
    with jax.default_device(CPU):
        target = sf.NeuronGroup(2, "dv/dt = -v / (10*ms) : 1\nactive : boolean", threshold="v > 1 and active", name="T")
        with pytest.raises(sf.ModelError, match="'active' is declared boolean") as e:
            sf.Network(target, dt=0.1).init_state()
    assert "NeuronGroup 'T'" in str(e.value)
