"""Brian2's language that users type in the first hour (issue 8, item 8): pi and e, int() and
sign(), boolean and integer parameters, (unless refractory) without a refractory period, recording
t, lastspike and not_refractory, rand() and randn()."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import spikeforge as sf
from conftest import PLATFORMS, check_written

# Deterministic, with every new piece of the language in it; Brian2 reads the same strings.
FIRST_HOUR = """
dv/dt = (-v + pi*e*int(2.7)/10 + 0.2*sign(v - 0.5) + 0.1*int(v > 0.3))/tau : 1 (unless refractory)
active : boolean
k : integer
"""


def first_hour_model():
    return sf.NeuronModel(
        FIRST_HOUR,
        threshold="v > 0.9 and active",
        reset="v = 0; k += 1",
        constants=dict(tau=10.0),
        method="euler",
    )


def test_the_first_hour_language_runs_and_matches_a_reference(device):
    model = first_hour_model()
    assert model.parameters == ("active", "k")
    active = np.array([True, False, True, True])
    state = model.init_state(4, dtype=jnp.float64, v=np.array([0.0, 0.0, 0.6, 0.2]), active=active)
    # Booleans and integers are stored as such.
    assert state["active"].dtype == jnp.bool_ and state["k"].dtype == jnp.int32
    new, out = jax.jit(lambda s: model.run(s, dt=0.1, steps=3000, record=["v", "k", "active", "t", "not_refractory"]))(
        state
    )
    check_written(new["v"], new["k"], out.spike_count, *out.traces.values())
    # float64 reference of the same equations.
    v = np.array([0.0, 0.0, 0.6, 0.2])
    k = np.zeros(4, int)
    drive = np.pi * np.e * 2 / 10
    for s in range(3000):
        np.testing.assert_allclose(np.asarray(out.traces["v"])[s], v, atol=1e-12)
        np.testing.assert_array_equal(np.asarray(out.traces["k"])[s], k)
        v = v + 0.1 * (-v + drive + 0.2 * np.sign(v - 0.5) + 0.1 * (v > 0.3)) / 10.0
        spike = (v > 0.9) & active
        v = np.where(spike, 0.0, v)
        k = k + spike
    np.testing.assert_allclose(np.asarray(new["v"]), v, atol=1e-12)
    np.testing.assert_array_equal(np.asarray(new["k"]), k)
    np.testing.assert_array_equal(np.asarray(out.spike_count), k)
    assert k[0] > 3 and k[1] == 0
    # Traces of a boolean, an integer, the time and not_refractory (never refractory here).
    assert out.traces["k"].dtype == jnp.int32 and out.traces["active"].dtype == jnp.bool_
    np.testing.assert_array_equal(np.asarray(out.traces["active"]), np.broadcast_to(active, (3000, 4)))
    np.testing.assert_allclose(np.asarray(out.traces["t"])[:, 0], 0.1 * np.arange(3000), atol=1e-12)
    assert np.asarray(out.traces["not_refractory"]).all()


def test_the_first_hour_language_matches_brian2():
    b2 = pytest.importorskip("brian2")
    from brian2 import Network, NeuronGroup, StateMonitor, defaultclock, ms

    b2.start_scope()
    b2.prefs.codegen.target = "numpy"
    defaultclock.dt = 0.1 * ms
    group = NeuronGroup(
        4, FIRST_HOUR, threshold="v > 0.9 and active", reset="v = 0; k += 1", method="euler", namespace={"tau": 10 * ms}
    )
    v0 = np.array([0.0, 0.0, 0.6, 0.2])
    active = np.array([True, False, True, True])
    group.v = v0
    group.active = active
    mon = StateMonitor(group, ["v", "k"], record=True)
    Network(group, mon).run(300 * ms)
    model = first_hour_model()
    state = model.init_state(4, dtype=jnp.float64, v=v0, active=active)
    new, out = model.run(state, dt=0.1, steps=3000, record=["v", "k"])
    np.testing.assert_allclose(np.asarray(out.traces["v"]), np.asarray(mon.v).T, atol=1e-9)
    np.testing.assert_array_equal(np.asarray(out.traces["k"]), np.asarray(mon.k).T)
    np.testing.assert_array_equal(np.asarray(new["k"]), np.asarray(group.k))


def test_integer_and_boolean_parameters_in_resets_and_inputs(device):
    model = sf.NeuronModel(
        "dv/dt = 1/ms : 1\nk : integer\nflag : boolean\nhalf : integer",
        threshold="v > 1",
        reset="v = 0; k += 1; flag = k > 2; half = k / 2",
        method="euler",
    )
    state = model.init_state(3, dtype=jnp.float64, k=np.array([0, 10, -7]))
    new, out = model.run(state, dt=0.1, steps=100, record=["flag"])
    # 9 spikes (every 11 steps); half truncates toward zero as Brian2's int().
    k = np.array([0, 10, -7]) + 9
    np.testing.assert_array_equal(np.asarray(new["k"]), k)
    np.testing.assert_array_equal(np.asarray(new["half"]), np.trunc(k / 2).astype(int))
    np.testing.assert_array_equal(np.asarray(new["flag"]), k > 2)
    # A boolean parameter given per step.
    gate = sf.NeuronModel("dv/dt = 1/ms : 1\nopen : boolean", threshold="v > 0.55 and open", reset="v = 0")
    s = gate.init_state(2, dtype=jnp.float32)
    opened = np.zeros((50, 2), bool)
    opened[30:, 0] = True
    _, out = gate.run(s, dt=0.1, steps=50, inputs={"open": opened})
    # Open from step 30: a spike at once (v = 3), then every 6 steps (36, 42, 48).
    np.testing.assert_array_equal(np.asarray(out.spike_count), [4, 0])
    with pytest.raises(sf.ModelError, match="'flag' is boolean: assign it a condition"):
        sf.NeuronModel("dv/dt = -v : 1\nflag : boolean", threshold="v > 1", reset="flag = 1")
    with pytest.raises(sf.ModelError, match="a differential equation's variable is a number"):
        sf.NeuronModel("dk/dt = 1 : integer")


def test_unless_refractory_without_a_refractory_period_is_never_refractory(device):
    """Brian2 accepts the flag without refractory=: the neuron is never refractory."""
    flagged = sf.NeuronModel("dv/dt = 1/ms : 1 (unless refractory)", threshold="v > 1", reset="v = 0")
    plain = sf.NeuronModel("dv/dt = 1/ms : 1", threshold="v > 1", reset="v = 0")
    runs = [m.run(m.init_state(2, dtype=jnp.float64), dt=0.1, steps=100) for m in (flagged, plain)]
    np.testing.assert_array_equal(np.asarray(runs[0][0]["v"]), np.asarray(runs[1][0]["v"]))
    np.testing.assert_array_equal(np.asarray(runs[0][1].spike_count), 9)


def recorded_refractoriness(refractory):
    model = sf.NeuronModel("dv/dt = 1/ms : 1", threshold="v > 1", reset="v = 0", refractory=refractory)
    _, out = model.run(model.init_state(1, dtype=jnp.float64), dt=0.1, steps=30, record=["not_refractory", "lastspike"])
    return np.asarray(out.traces["not_refractory"])[:, 0], np.asarray(out.traces["lastspike"])[:, 0]


@pytest.mark.parametrize("refractory", [0.5, "0.5*ms", "v < 0.35"])
def test_not_refractory_and_lastspike_can_be_recorded(device, refractory):
    """Traces show Brian2's stored values at the start of each step: a spike in step s clears
    not_refractory, which stays False until the step in which the refractory period ends."""
    nr, ls = recorded_refractoriness(refractory)
    # Spikes at steps 10 and 21 (t = 1.0 and 2.1 ms); 0.5 ms = 5 steps (v < 0.35: the same here).
    np.testing.assert_array_equal(np.nonzero(~nr)[0], [11, 12, 13, 14, 15, 22, 23, 24, 25, 26])
    assert np.isneginf(ls[:11]).all() and (ls[11:22] == 1.0).all() and (ls[22:] == 2.1).all()


def test_recorded_refractoriness_matches_brian2():
    b2 = pytest.importorskip("brian2")
    from brian2 import Network, NeuronGroup, StateMonitor, defaultclock, ms

    b2.start_scope()
    b2.prefs.codegen.target = "numpy"
    defaultclock.dt = 0.1 * ms
    group = NeuronGroup(1, "dv/dt = 1/ms : 1", threshold="v > 1", reset="v = 0", refractory=0.5 * ms)
    mon = StateMonitor(group, ["not_refractory", "lastspike"], record=True)
    Network(group, mon).run(3 * ms)
    nr, ls = recorded_refractoriness(0.5)
    np.testing.assert_array_equal(nr, np.asarray(mon.not_refractory)[0])
    theirs = np.asarray(mon.lastspike / ms)[0]
    never = theirs == -1e7  # Brian2's -10000 s; spikeforge says -inf
    assert np.isneginf(ls[never]).all()
    np.testing.assert_allclose(ls[~never], theirs[~never], atol=1e-12)


@pytest.mark.parametrize("name", ["pi", "e"])
def test_pi_and_e_are_constants_not_names(name):
    with pytest.raises(sf.ModelError, match=f"'{name}' is the name of a constant"):
        sf.NeuronModel(f"dv/dt = -v : 1\n{name} : 1")
    with pytest.raises(sf.ModelError, match=f"'{name}' is the name of a built-in constant"):
        sf.NeuronModel("dv/dt = -v/tau : 1", constants={"tau": 1.0, name: 2.0})


# -- rand() and randn() -----------------------------------------------------------------------

DRAWS = """
u = rand() : 1 (constant over dt)
z = randn() : 1 (constant over dt)
dx/dt = (rand() - x)/dt : 1
"""


def draws_model():
    return sf.NeuronModel(DRAWS, method="euler")


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_rand_and_randn_have_the_right_moments_and_are_independent(device, dtype):
    """u and z (drawn once per step in 'constant over dt' subexpressions) and x (Euler with
    dt*(rand() - x)/dt: x is each step's draw of a third call) are recorded: every draw is
    uniform or standard normal, and the three calls, the neurons and the steps are independent."""
    model = draws_model()
    n, steps = 2000, 50
    state = model.init_state(n, dtype=dtype, rng_seed=12)
    _, out = jax.jit(lambda s: model.run(s, dt=0.1, steps=steps + 1, record=["u", "z", "x"]))(state)
    u = np.asarray(out.traces["u"], np.float64)[:steps]
    z = np.asarray(out.traces["z"], np.float64)[:steps]
    x = np.asarray(out.traces["x"], np.float64)[1:]
    m = u.size
    for w in (u, x):
        assert w.min() >= 0 and w.max() < 1
        assert abs(w.mean() - 0.5) < 4 * np.sqrt(1 / 12 / m)
        assert abs(w.var() - 1 / 12) < 4 * np.sqrt(1 / 180 / m)
    assert abs(z.mean()) < 4 / np.sqrt(m)
    assert abs(z.var() - 1) < 4 * np.sqrt(2 / m)
    assert abs(np.mean(z**4) - 3) < 0.2  # normal, not merely unit variance
    for a, b in ((u, x), (u, z), (x, z), (u[:-1], u[1:]), (u[:, :-1], u[:, 1:])):
        assert abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < 4 / np.sqrt(a.size)


def test_random_numbers_are_reproducible_and_follow_the_seed(device):
    model = draws_model()
    state = model.init_state(64, dtype=jnp.float32, rng_seed=5)
    run = jax.jit(lambda s, steps: model.run(s, dt=0.1, steps=steps, record=["u", "z"]), static_argnums=1)
    a, out_a = run(state, 40)
    b, out_b = run(state, 40)
    for name in ("u", "z"):
        np.testing.assert_array_equal(np.asarray(out_a.traces[name]), np.asarray(out_b.traces[name]))
    # Split runs draw the same numbers (the stream is counted by the step).
    half, out_1 = run(state, 20)
    _, out_2 = run(half, 20)
    np.testing.assert_array_equal(
        np.asarray(out_a.traces["u"]), np.concatenate([np.asarray(out_1.traces["u"]), np.asarray(out_2.traces["u"])])
    )
    # Another seed, other numbers; under vmap each batch member has its own seed.
    _, out_c = run(dict(state, rng_seed=jnp.int32(6)), 40)
    assert not np.array_equal(np.asarray(out_a.traces["u"]), np.asarray(out_c.traces["u"]))
    seeds = jax.vmap(lambda s: model.init_state(64, dtype=jnp.float32, rng_seed=s))(jnp.array([5, 6], jnp.int32))
    _, out_v = jax.jit(jax.vmap(lambda s: model.run(s, dt=0.1, steps=40, record=["u"])))(seeds)
    np.testing.assert_array_equal(np.asarray(out_v.traces["u"])[0], np.asarray(out_a.traces["u"]))
    np.testing.assert_array_equal(np.asarray(out_v.traces["u"])[1], np.asarray(out_c.traces["u"]))


def test_rand_in_threshold_and_reset(device):
    """A Poisson neuron as Brian2 users write it: threshold='rand() < rate*dt'."""
    model = sf.NeuronModel("v : 1\nrate : 1", threshold="rand() < rate*dt", reset="v = rand()")
    rates = np.array([0.0, 0.01, 0.1, 0.5])  # per ms
    state = model.init_state(4, dtype=jnp.float32, rate=rates, rng_seed=1)
    batch = jax.vmap(lambda s: model.init_state(4, dtype=jnp.float32, rate=rates, rng_seed=s))(jnp.arange(500))
    _, out = jax.jit(jax.vmap(lambda s: model.run(s, dt=0.1, steps=1000)))(batch)
    counts = np.asarray(out.spike_count, np.float64)
    expected = rates * 0.1 * 1000
    np.testing.assert_array_equal(counts[:, 0], 0)
    assert np.all(np.abs(counts.mean(0)[1:] - expected[1:]) < 4 * np.sqrt(expected[1:] / 500))
    new, out = model.run(state, dt=0.1, steps=1000)
    v = np.asarray(new["v"])
    assert (v[1:] > 0).all() and (v < 1).all()


def test_where_rand_may_appear():
    # In a subexpression, only 'constant over dt' (Brian2's rule).
    with pytest.raises(sf.ModelError, match="calls rand\\(\\) or randn\\(\\).*constant over dt") as e:
        sf.NeuronModel("dx/dt = r/ms : 1\nr = rand() : 1")
    assert "(constant over dt)" in e.value.suggestion
    # In a differential equation: one draw per step, which is what Euler (and exponential Euler)
    # do in Brian2; Brian2's multi-stage schemes draw again in every stage: refused, with the way
    # out. Exact integration does not apply (as in Brian2), so the choice is Euler.
    assert sf.NeuronModel("dx/dt = -x/ms + rand()/ms : 1").method == "euler"
    assert sf.NeuronModel("dx/dt = -x/ms + rand()/ms : 1", method="exponential_euler").method == "exponential_euler"
    for method in ("rk2", "rk4", "heun"):
        with pytest.raises(sf.ModelError, match="draw once per step.*Brian2 would draw again in every stage") as e:
            sf.NeuronModel("dx/dt = -x/ms + rand()/ms : 1", method=method)
        assert "constant over dt" in e.value.suggestion
    with pytest.raises(sf.ModelError, match="not constant over a time step"):
        sf.NeuronModel("dx/dt = -x/ms + rand()/ms : 1", method="exact")
    # With a 'constant over dt' draw, every scheme applies.
    assert sf.NeuronModel("dx/dt = -x/ms + r/ms : 1\nr = rand() : 1 (constant over dt)", method="rk4").method == "rk4"
    with pytest.raises(sf.ModelError, match="rand\\(\\) takes 0 argument"):
        sf.NeuronModel("dx/dt = rand(1) : 1")


@pytest.mark.skipif("gpu" not in PLATFORMS, reason="needs a GPU to compare with")
def test_cpu_and_gpu_draw_the_same_numbers():
    model = draws_model()
    outs = []
    for platform in ("cpu", "gpu"):
        with jax.default_device(jax.devices(platform)[0]):
            for dtype in (jnp.float32, jnp.float64):
                s = model.init_state(500, dtype=dtype, rng_seed=11)
                _, out = model.run(s, dt=0.1, steps=20, record=["u", "z", "x"])
                outs.append({k: np.asarray(v) for k, v in out.traces.items()})
    for cpu, gpu in zip(outs[:2], outs[2:]):
        for name in cpu:
            np.testing.assert_array_equal(cpu[name], gpu[name])


# -- initial values given as expressions ------------------------------------------------------


def test_initial_values_given_as_expressions():
    model = sf.NeuronModel(
        "dv/dt = (v_r - v)/tau : volt\nw : 1\nk : integer\nup : boolean",
        constants=dict(v_r=-70.0, v_t=-50.0, tau=10.0),
    )
    n = 20_000
    state = model.init_state(
        n,
        dtype=jnp.float64,
        rng_seed=4,
        v="v_r + rand()*(v_t - v_r)",
        w="2*v/mV + i",  # reads the values set before it
        k="int(randn() * 1000)",
        up="v > -60*mV",
    )
    v, w, k, up = (np.asarray(state[x]) for x in ("v", "w", "k", "up"))
    assert state["k"].dtype == jnp.int32 and state["up"].dtype == jnp.bool_
    assert (v >= -70).all() and (v < -50).all()
    assert abs(v.mean() + 60) < 4 * 20 / np.sqrt(12 * n)
    np.testing.assert_allclose(w, 2 * v + np.arange(n), rtol=1e-15)
    np.testing.assert_array_equal(up, v > -60)
    assert abs(k.std() / 1000 - 1) < 4 * np.sqrt(2 / n) and abs(k.mean()) < 4 * 1000 / np.sqrt(n)
    # The same seed gives the same values; the stream is the library's, not numpy's.
    again = model.init_state(n, dtype=jnp.float64, rng_seed=4, v="v_r + rand()*(v_t - v_r)")
    np.testing.assert_array_equal(np.asarray(again["v"]), v)
    other = model.init_state(n, dtype=jnp.float64, rng_seed=5, v="v_r + rand()*(v_t - v_r)")
    assert not np.array_equal(np.asarray(other["v"]), v)
    # A float32 state rounds the float64 values once.
    small = model.init_state(n, dtype=jnp.float32, rng_seed=4, v="v_r + rand()*(v_t - v_r)")
    np.testing.assert_array_equal(np.asarray(small["v"]), v.astype(np.float32))
    # Arrays given beside expressions are read by them; a constant may be set per element.
    st = model.init_state(3, dtype=jnp.float64, w=np.array([1.0, 2.0, 3.0]), v="v_r + w*mV", tau="5 + i")
    np.testing.assert_array_equal(np.asarray(st["v"]), [-69.0, -68.0, -67.0])
    np.testing.assert_array_equal(np.asarray(st["tau"]), [5.0, 6.0, 7.0])
    new, _ = model.run(st, dt=0.1, steps=10)
    assert np.isfinite(np.asarray(new["v"])).all()


def test_initial_value_mistakes_are_located():
    model = sf.NeuronModel("dv/dt = -v/tau : 1\nup : boolean", constants=dict(tau=10.0))
    with pytest.raises(sf.ModelError, match="unknown name 'tua'") as e:
        model.init_state(4, v="tua * 2")
    assert e.value.field == "init_state: v" and "did you mean 'tau'?" in str(e.value)
    with pytest.raises(sf.ModelError, match="'dt' has no value"):
        model.init_state(4, v="dt")
    with pytest.raises(sf.ModelError, match="'up' is boolean"):
        model.init_state(4, up="1")
    with pytest.raises(sf.ModelError, match="evaluated when the state is made"):
        jax.jit(lambda x: model.init_state(4, v="rand()", up=x > 0))(1.0)
