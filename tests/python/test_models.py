"""Model kernels against independent float64 numpy references, on every platform."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import spikeforge as sf
from conftest import check_written
from references import hh_rk4, lif_euler, load_spec


def model_from(spec):
    return sf.NeuronModel(
        spec["equations"],
        threshold=spec.get("threshold"),
        reset=spec.get("reset"),
        refractory=spec.get("refractory"),
        constants=spec["constants"],
        method=spec["method"],
    )


HH_START = dict(v=-65.0, m=0.05, h=0.6, n=0.32)


@pytest.mark.parametrize(
    "dtype,tol,fast_math",
    [(jnp.float32, 1e-2, False), (jnp.float32, 1e-2, True), (jnp.float64, 1e-6, False)],
    ids=["f32", "f32-fast-math", "f64"],
)
def test_hh_seed002_setting(device, dtype, tol, fast_math):
    """Seed 002: classic HH, RK4, dt 0.01 ms, 50 ms, I_i = 10*i/(N-1), 64 neurons.

    Fast math (approximate exp/division, shared exponentials) must meet the same bound."""
    spec = load_spec("hh_32")
    model = sf.NeuronModel(
        spec["equations"],
        threshold=spec["threshold"],
        refractory=spec["refractory"],
        constants=spec["constants"],
        method="rk4",
        fast_math=fast_math,
    )
    n = 64
    current = 10 * np.arange(n) / (n - 1)
    state = model.init_state(n, dtype=dtype, I=current, **HH_START)
    new, out = jax.jit(lambda s: model.run(s, dt=0.01, steps=5000))(state)
    ref, ref_spikes = hh_rk4(current, 0.01, 5000, spec["constants"])
    check_written(new["v"], new["m"], new["h"], new["n"], new["not_refractory"], out.spike_count)
    err = np.abs(np.asarray(new["v"], np.float64) - ref[0]).max()
    assert err <= tol, f"max |dV| at 50 ms = {err} mV"
    np.testing.assert_array_equal(np.asarray(out.spike_count), ref_spikes)
    assert ref_spikes.max() >= 4, "the setting must make neurons fire repetitively"


def test_hh_no_nan_across_a_fine_current_range(device):
    """100k neurons pass exactly through the 0/0 points of the rate functions (v = -40, -55 mV)
    somewhere in 50 ms: the removable singularities must not produce NaN."""
    spec = load_spec("hh_32")
    model = model_from(spec)
    n = 20_000
    state = model.init_state(n, dtype=jnp.float32, I=10 * np.arange(n) / (n - 1), **HH_START)
    new, _ = jax.jit(lambda s: model.run(s, dt=0.01, steps=5000))(state)
    assert not np.isnan(np.asarray(new["v"])).any()


def lif_setup(n, dtype):
    spec = load_spec("lif_32")
    model = model_from(spec)
    current = np.linspace(0, 30, n)
    return spec, model, current, model.init_state(n, dtype=dtype, v=-65.0, I=current)


def test_lif_float64_same_trajectory_and_spike_steps(device):
    spec, model, current, state = lif_setup(300, jnp.float64)
    steps = 1500
    new, out = jax.jit(lambda s: model.run(s, dt=0.1, steps=steps, record=["v"]))(state)
    v_ref, trace_ref, spike_steps = lif_euler(np.full(300, -65.0), current, 0.1, steps, spec["constants"], 20)
    check_written(new["v"], new["lastspike"], new["t"], out.spike_count, out.traces["v"])
    np.testing.assert_allclose(np.asarray(out.traces["v"]), trace_ref, rtol=0, atol=1e-9)
    np.testing.assert_allclose(np.asarray(new["v"]), v_ref, rtol=0, atol=1e-9)
    counts = np.zeros(300, int)
    last = np.full(300, -np.inf)
    for s, idx in enumerate(spike_steps):
        counts[idx] += 1
        last[idx] = s * 0.1  # Brian2's lastspike: the time of the spike's step, timestep * dt
    np.testing.assert_array_equal(np.asarray(out.spike_count), counts)
    np.testing.assert_array_equal(np.asarray(sf.clock.value(new["lastspike"])), last)
    assert float(sf.time_of(new)) == steps * 0.1
    assert counts.max() > 5


def test_lif_float32_agrees_with_reference(device):
    spec, model, current, state = lif_setup(1000, jnp.float32)
    new, out = jax.jit(lambda s: model.run(s, dt=0.1, steps=2000))(state)
    _, _, spike_steps = lif_euler(np.full(1000, -65.0), current, 0.1, 2000, spec["constants"], 20)
    counts = np.zeros(1000, int)
    for idx in spike_steps:
        counts[idx] += 1
    diff = np.abs(np.asarray(out.spike_count) - counts)
    # float32 may move a spike across the run's end for neurons that barely reach threshold.
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01


def test_record_every_subsamples_the_full_trace(device):
    _, model, _, state = lif_setup(200, jnp.float64)
    run = jax.jit(lambda s, k: model.run(s, dt=0.1, steps=1000, record=["v"], record_every=k), static_argnums=1)
    _, full = run(state, 1)
    _, sub = run(state, 7)
    assert sub.traces["v"].shape == (-(-1000 // 7), 200)
    check_written(sub.traces["v"])
    np.testing.assert_array_equal(np.asarray(sub.traces["v"]), np.asarray(full.traces["v"])[::7])


def test_runs_continue_where_they_stopped(device):
    """Two runs of 700 steps equal one of 1400: state, time and refractoriness carry over."""
    _, model, _, state = lif_setup(256, jnp.float64)
    run = jax.jit(lambda s, steps: model.run(s, dt=0.1, steps=steps), static_argnums=1)
    once, out_once = run(state, 1400)
    half, out1 = run(state, 700)
    twice, out2 = run(half, 700)
    np.testing.assert_array_equal(np.asarray(once["v"]), np.asarray(twice["v"]))
    np.testing.assert_array_equal(np.asarray(once["lastspike"]), np.asarray(twice["lastspike"]))
    np.testing.assert_array_equal(np.asarray(out_once.spike_count), np.asarray(out1.spike_count + out2.spike_count))
    assert float(sf.time_of(twice)) == 1400 * 0.1


def izhikevich_reference(v, u, current, p, dt):
    counts = np.zeros(v.shape, int)
    for s in range(current.shape[0]):
        i = current[s]
        v, u = v + dt * (0.04 * v * v + 5 * v + 140 - u + i), u + dt * (p["a"] * (p["b"] * v - u))
        spike = v >= 30
        v = np.where(spike, p["c"], v)
        u = np.where(spike, u + p["d"], u)
        counts += spike
    return v, u, counts


def test_per_step_inputs_and_multi_statement_reset(device):
    spec = load_spec("izhikevich_64")
    model = model_from(spec)
    n, steps = 100, 800
    rng = np.random.default_rng()
    current = rng.uniform(0, 15, size=(steps, n))
    state = model.init_state(n, dtype=jnp.float64, v=-65.0, u=-13.0)
    new, out = jax.jit(lambda s, i: model.run(s, dt=0.5, steps=steps, inputs={"I": i}))(state, current)
    v, u, counts = izhikevich_reference(np.full(n, -65.0), np.full(n, -13.0), current, spec["constants"], 0.5)
    check_written(new["v"], new["u"], out.spike_count)
    np.testing.assert_allclose(np.asarray(new["v"]), v, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(np.asarray(new["u"]), u, rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(np.asarray(out.spike_count), counts)
    assert counts.sum() > 0


def adex_reference(current, tref, p, dt, steps):
    v = np.full(current.shape, p["EL"])
    w = np.zeros(current.shape)
    last = np.full(current.shape, -(10**9))
    counts = np.zeros(current.shape, int)
    ref_steps = np.floor((tref + 1e-3 * dt) / dt)
    for s in range(steps):
        nr = (s - last) >= ref_steps
        spike_current = p["gL"] * p["DeltaT"] * np.exp((v - p["VT"]) / p["DeltaT"])
        dv = (p["gL"] * (p["EL"] - v) + spike_current + current - w) / p["C"]
        dw = (p["a"] * (v - p["EL"]) - w) / p["tauw"]
        v, w = np.where(nr, v + dt * dv, v), w + dt * dw
        spike = (v > -20) & nr
        v = np.where(spike, p["Vr"], v)
        w = np.where(spike, w + p["b"], w)
        last = np.where(spike, s, last)
        counts += spike
    return v, w, counts


def test_constant_given_per_neuron_and_expression_refractory(device):
    spec = load_spec("adex_64")
    model = model_from(spec)
    n = 64
    rng = np.random.default_rng()
    current = rng.uniform(700, 1200, n)
    tref = rng.uniform(0.0, 5.0, n)
    state = model.init_state(n, dtype=jnp.float64, v=spec["constants"]["EL"], I=current, tref=tref)
    new, out = jax.jit(lambda s: model.run(s, dt=0.1, steps=3000))(state)
    v, w, counts = adex_reference(current, tref, spec["constants"], 0.1, 3000)
    check_written(new["v"], new["w"], out.spike_count)
    np.testing.assert_array_equal(np.asarray(out.spike_count), counts)
    np.testing.assert_allclose(np.asarray(new["w"]), w, rtol=1e-8)
    assert (counts > 0).mean() > 0.5, counts


def test_vmap_folds_the_batch_into_one_launch(device):
    _, model, _, _ = lif_setup(10, jnp.float64)
    n, batch, steps = 50, 3, 400
    rng = np.random.default_rng()
    currents = rng.uniform(10, 30, size=(batch, n))
    per_step = rng.uniform(0, 5, size=(batch, steps, n))
    states = jax.vmap(lambda i: model.init_state(n, dtype=jnp.float64, v=-65.0, I=i))(currents)

    def run(s, x):
        return model.run(s, dt=0.1, steps=steps, inputs={"v_rest": x}, record=["v"], record_every=4)

    f = jax.jit(jax.vmap(run))
    hlo = f.lower(states, -65.0 + per_step).as_text()
    assert hlo.count("spikeforge_neuron_run") == 1, "the batch must be one custom call"
    new, out = f(states, -65.0 + per_step)
    for b in range(batch):
        one = jax.tree.map(lambda x, b=b: x[b], states)
        ref_state, ref_out = run(one, -65.0 + per_step[b])
        np.testing.assert_array_equal(np.asarray(new["v"][b]), np.asarray(ref_state["v"]))
        np.testing.assert_array_equal(np.asarray(out.spike_count[b]), np.asarray(ref_out.spike_count))
        np.testing.assert_array_equal(np.asarray(out.traces["v"][b]), np.asarray(ref_out.traces["v"]))
