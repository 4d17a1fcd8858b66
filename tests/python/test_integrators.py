"""Every integration scheme against known solutions and independent float64 references (numpy).

Runs on every platform (the ``device`` fixture); all in float64 so that the errors measured are
the schemes' own, not float32 rounding.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import spikeforge as sf
from conftest import check_written
from references import hh_exponential_euler, hh_rk4, load_spec

F64 = jnp.float64


def run(model, count, dt, steps, /, record=(), **values):
    state = model.init_state(count, dtype=F64, **values)
    new, out = jax.jit(lambda s: model.run(s, dt=dt, steps=steps, record=list(record)))(state)
    return new, out


# -- exponential decay: exact to rounding ----------------------------------------------------


@pytest.mark.parametrize("method", ["exact", "linear", "exponential_euler"])
def test_exponential_decay_is_exact_to_rounding(device, method):
    model = sf.NeuronModel("dv/dt = -v / tau : 1", constants={"tau": 7.0}, method=method)
    assert model.method == ("exact" if method == "linear" else method)
    rng = np.random.default_rng(1)
    v0 = rng.uniform(-2, 2, 257)
    steps, dt = 1000, 0.1
    new, _ = run(model, 257, dt, steps, v=v0)
    check_written(new["v"])
    want = v0 * np.exp(-steps * dt / 7.0)
    err = np.abs(np.asarray(new["v"]) - want).max()
    # 1000 steps, each one multiplication rounded: a few hundred ulp of |v0| at most.
    assert err <= 2e-13 * np.abs(v0).max(), f"{method}: {err}"


def test_euler_decay_error_is_what_euler_gives(device):
    """The same check fails for Euler (the test above can fail), by Euler's known error."""
    model = sf.NeuronModel("dv/dt = -v / tau : 1", constants={"tau": 7.0}, method="euler")
    new, _ = run(model, 4, 0.1, 1000, v=1.0)
    np.testing.assert_allclose(np.asarray(new["v"]), (1 - 0.1 / 7.0) ** 1000, rtol=1e-12)
    assert abs(float(new["v"][0]) - np.exp(-100 / 7.0)) > 1e-8


# -- harmonic oscillator: order of accuracy ------------------------------------------------

OSCILLATOR = "dx/dt = v : 1\ndv/dt = -w**2 * x : 1"


def oscillator_error(method, dt, t_end=2.0, substeps=1):
    w = 2.0
    model = sf.NeuronModel(OSCILLATOR, constants={"w": w}, method=method, substeps=substeps)
    rng = np.random.default_rng(7)
    x0, v0 = rng.uniform(-1, 1, 64), rng.uniform(-1, 1, 64)
    steps = round(t_end / dt)
    new, _ = run(model, 64, dt, steps, x=x0, v=v0)
    check_written(new["x"], new["v"])
    t = steps * dt
    x = x0 * np.cos(w * t) + v0 / w * np.sin(w * t)
    v = -x0 * w * np.sin(w * t) + v0 * np.cos(w * t)
    return max(np.abs(np.asarray(new["x"]) - x).max(), np.abs(np.asarray(new["v"]) - v).max())


@pytest.mark.parametrize("method,order", [("euler", 1), ("rk2", 2), ("heun", 2), ("rk4", 4)])
def test_oscillator_order_of_accuracy(device, method, order):
    e1 = oscillator_error(method, 0.02)
    e2 = oscillator_error(method, 0.01)
    slope = np.log2(e1 / e2)
    assert abs(slope - order) <= 0.2, f"{method}: errors {e1:.3e} -> {e2:.3e}, slope {slope:.3f}"


def test_oscillator_exact_is_exact(device):
    assert oscillator_error("exact", 0.05) < 1e-13


def test_substeps_reduce_euler_error_by_k(device):
    e1 = oscillator_error("euler", 0.02)
    e4 = oscillator_error("euler", 0.02, substeps=4)
    assert 3.5 < e1 / e4 < 4.5, f"{e1:.3e} / {e4:.3e} = {e1 / e4:.2f}"
    # k sub-steps of dt/k are k * (dt/k) = the same as steps of dt/k.
    np.testing.assert_allclose(e4, oscillator_error("euler", 0.005), rtol=1e-9)


# -- Hodgkin-Huxley: exponential Euler -----------------------------------------------------

HH_START = dict(v=-65.0, m=0.05, h=0.6, n=0.32)


def hh_model(method):
    spec = load_spec("hh_64")
    return sf.NeuronModel(
        spec["equations"],
        threshold=spec["threshold"],
        refractory=spec["refractory"],
        constants=spec["constants"],
        method=method,
    )


def test_hh_exponential_euler_matches_numpy_and_rk4(device):
    spec = load_spec("hh_64")
    model = hh_model("exponential_euler")
    n, dt, steps = 32, 0.01, 2000
    current = np.linspace(0, 10, n)
    new, out = run(model, n, dt, steps, I=current, **HH_START)
    check_written(new["v"], new["m"], new["h"], new["n"], out.spike_count)
    ref, ref_spikes = hh_exponential_euler(current, dt, steps, spec["constants"])
    got = np.stack([np.asarray(new[k]) for k in ("v", "m", "h", "n")])
    assert np.abs(got - ref).max() < 1e-8, np.abs(got - ref).max(axis=1)
    np.testing.assert_array_equal(np.asarray(out.spike_count), ref_spikes)
    assert ref_spikes.max() >= 1
    # Against RK4 at a 10x finer step: the same spikes; below threshold (I < 2) small errors;
    # with spikes (timing shifts dominate) first-order convergence: halving dt halves the error.
    rk, rk_spikes = hh_rk4(current, dt / 10, steps * 10, spec["constants"])
    np.testing.assert_array_equal(ref_spikes, rk_spikes)
    sub = current < 2
    assert np.abs(got[0, sub] - rk[0, sub]).max() < 0.01
    assert np.abs(got[1:, sub] - rk[1:, sub]).max() < 1e-4
    half, _ = run(model, n, dt / 2, steps * 2, I=current, **HH_START)
    e1 = np.abs(got[1] - rk[1]).max()
    e2 = np.abs(np.asarray(half["m"]) - rk[1]).max()
    assert abs(np.log2(e1 / e2) - 1) < 0.2, f"m errors {e1:.3e} -> {e2:.3e}"


# -- choice of the method, and its errors ----------------------------------------------------


def test_method_choice_follows_brian2():
    lif = load_spec("lif_64")
    model = sf.NeuronModel(
        lif["equations"],
        threshold=lif["threshold"],
        reset=lif["reset"],
        refractory=lif["refractory"],
        constants=lif["constants"],
    )
    assert model.method == "exact"
    assert "exact" in repr(model)
    # Hodgkin-Huxley is not linear: Brian2's ('exact', 'euler', 'heun') gives euler.
    assert hh_model(None).method == "euler"
    assert hh_model("rk2").method == "rk2"


def test_nonlinear_term_is_located():
    with pytest.raises(sf.ModelError) as e:
        sf.NeuronModel(
            "dv/dt = (v_rest - v) / tau + v**2 / 100 : volt\nI : amp",
            constants={"v_rest": -65.0, "tau": 10.0},
            method="exponential_euler",
        )
    err = e.value
    assert (err.field, err.line, err.column) == ("equations", 1, 30)
    assert "the term 'v**2' in dv/dt is not linear in v" in str(err)
    assert "^^^^" in str(err)
    assert "rk4" in err.suggestion
    with pytest.raises(sf.ModelError, match="'exact' needs linear equations with constant coefficients"):
        sf.NeuronModel("dv/dt = -v * I : 1\nI : 1", method="exact")
    with pytest.raises(ValueError, match="method must be one of"):
        sf.NeuronModel("dv/dt = -v : 1", method="rk3")
    with pytest.raises(ValueError, match="substeps"):
        sf.NeuronModel("dv/dt = -v : 1", substeps=0)


# -- exact integration with refractoriness -----------------------------------------------------


def expm_eig(m, dt):
    """exp(M dt) by eigendecomposition (independent of spikeforge's Taylor scaling-and-squaring)."""
    lam, vec = np.linalg.eig(m)
    return (vec @ np.diag(np.exp(lam * dt)) @ np.linalg.inv(vec)).real


@pytest.mark.parametrize("substeps", [1, 3])
def test_exact_with_partial_refractory_clamp(device, substeps):
    """v is held while refractory, w keeps decaying: exact integration solves both cases."""
    tau, tau_w, dt, steps = 10.0, 30.0, 0.1, 600
    model = sf.NeuronModel(
        "dv/dt = (I + w - v) / tau : 1 (unless refractory)\ndw/dt = -w / tau_w : 1\nI : 1",
        threshold="v > 1",
        reset="v = 0; w += 0.5",
        refractory=2.0,
        constants={"tau": tau, "tau_w": tau_w},
        method="exact",
        substeps=substeps,
    )
    n = 16
    current = np.linspace(0.5, 3.0, n)
    new, out = run(model, n, dt, steps, record=["v", "w"], I=current)
    check_written(new["v"], new["w"], out.traces["v"], out.spike_count)
    # float64 reference: the affine map [v, w, I] -> [v, w, I] in each case.
    on = np.array([[-1 / tau, 1 / tau, 1 / tau], [0, -1 / tau_w, 0], [0, 0, 0]])
    off = np.array([[0, 0, 0], [0, -1 / tau_w, 0], [0, 0, 0]])
    e_on, e_off = expm_eig(on, dt), expm_eig(off, dt)
    y = np.stack([np.zeros(n), np.zeros(n), current])
    last = np.full(n, -(10**9))
    trace = []
    spikes = np.zeros(n, int)
    for s in range(steps):
        trace.append(y[0].copy())
        nr = (s - last) >= 20
        y = np.where(nr, e_on @ y, e_off @ y)
        spike = (y[0] > 1) & nr
        y[0] = np.where(spike, 0.0, y[0])
        y[1] = np.where(spike, y[1] + 0.5, y[1])
        last = np.where(spike, s, last)
        spikes += spike
    assert spikes.max() >= 5
    np.testing.assert_array_equal(np.asarray(out.spike_count), spikes)
    np.testing.assert_allclose(np.asarray(out.traces["v"]), np.array(trace), atol=1e-9)
    np.testing.assert_allclose(np.asarray(new["w"]), y[1], atol=1e-9)


def test_generated_source_names_the_method():
    model = sf.NeuronModel("dv/dt = -v / tau : 1", constants={"tau": 7.0}, method="heun", substeps=2)
    assert "(heun, 2 sub-steps, dt = 0.1)" in model.source("c")


@pytest.mark.parametrize(
    "method,substeps", [("rk4", 1), ("heun", 2), ("rk2", 1), ("euler", 3), ("exponential_euler", 2)]
)
def test_partial_refractory_clamp_with_every_scheme(device, method, substeps):
    """Brian2's semantics: while refractory, dv/dt = 0 in every stage; w integrates on."""
    tau, tau_w, dt, steps = 10.0, 30.0, 0.1, 400

    def f(v, w, current, nr):
        return np.where(nr, (current + w - v) / tau, 0.0), -w / tau_w + 0.01 * v

    def stage(y, k, h):
        return y[0] + h * k[0], y[1] + h * k[1]

    def one(y, current, nr, h):
        if method == "euler":
            k = f(*y, current, nr)
            return stage(y, k, h)
        if method == "rk2":
            k1 = f(*y, current, nr)
            return stage(y, f(*stage(y, k1, h / 2), current, nr), h)
        if method == "heun":
            k1 = f(*y, current, nr)
            k2 = f(*stage(y, k1, h), current, nr)
            return stage(y, (k1[0] + k2[0], k1[1] + k2[1]), h / 2)
        if method == "rk4":
            k1 = f(*y, current, nr)
            k2 = f(*stage(y, k1, h / 2), current, nr)
            k3 = f(*stage(y, k2, h / 2), current, nr)
            k4 = f(*stage(y, k3, h), current, nr)
            return stage(y, tuple(a + 2 * b + 2 * c + d for a, b, c, d in zip(k1, k2, k3, k4)), h / 6)
        # exponential Euler, Brian2's form, each variable with the others at the start.
        v, w = y
        a_v, b_v = np.where(nr, (current + w) / tau, 0.0), np.where(nr, -1 / tau, 0.0)
        a_w, b_w = 0.01 * v, -1 / tau_w
        with np.errstate(divide="ignore", invalid="ignore"):
            v_new = np.where(b_v != 0, -a_v / b_v + (v + a_v / b_v) * np.exp(b_v * h), v + h * a_v)
        return v_new, -a_w / b_w + (w + a_w / b_w) * np.exp(b_w * h)

    model = sf.NeuronModel(
        "dv/dt = (I + w - v) / tau : 1 (unless refractory)\ndw/dt = -w / tau_w + 0.01 * v : 1\nI : 1",
        threshold="v > 1",
        reset="v = 0; w += 0.5",
        refractory=2.0,
        constants={"tau": tau, "tau_w": tau_w},
        method=method,
        substeps=substeps,
    )
    n = 16
    current = np.linspace(0.5, 3.0, n)
    new, out = run(model, n, dt, steps, I=current)
    check_written(new["v"], new["w"], out.spike_count)
    y = (np.zeros(n), np.zeros(n))
    last = np.full(n, -(10**9))
    spikes = np.zeros(n, int)
    for s in range(steps):
        nr = (s - last) >= 20
        for _ in range(substeps):
            y = one(y, current, nr, dt / substeps)
        spike = (y[0] > 1) & nr
        y = (np.where(spike, 0.0, y[0]), np.where(spike, y[1] + 0.5, y[1]))
        last = np.where(spike, s, last)
        spikes += spike
    assert spikes.max() >= 5
    np.testing.assert_array_equal(np.asarray(out.spike_count), spikes)
    np.testing.assert_allclose(np.asarray(new["v"]), y[0], atol=1e-9)
    np.testing.assert_allclose(np.asarray(new["w"]), y[1], atol=1e-9)


@pytest.mark.parametrize("method,order", [("rk2", 2), ("heun", 2), ("rk4", 4)])
def test_stages_read_the_time_of_the_stage(device, method, order):
    """dv/dt = cos(t): the stages must see t + c dt (frozen t would make every scheme first order)."""
    model = sf.NeuronModel("dv/dt = cos(t) : 1", method=method)

    def error(dt):
        new, _ = run(model, 4, dt, round(2.0 / dt), v=0.0)
        return abs(float(new["v"][0]) - np.sin(2.0))

    slope = np.log2(error(0.1) / error(0.05))
    assert abs(slope - order) < 0.2, f"{method}: slope {slope:.2f}"
