"""Time in a state: continuing with another dt (Brian2's Clock rules), step counts past 2^31,
refractory periods of any length, and `lastspike` read anywhere (issue 8, items 5, 6, 11)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import spikeforge as sf
from conftest import check_written

LIF = "dv/dt = (v_rest - v + R*I) / tau : volt (unless refractory)\nI : amp"
LIF_CONSTANTS = dict(v_rest=-65.0, R=1.0, tau=10.0, v_th=-50.0, v_reset=-65.0)


def lif(refractory=2.0):
    return sf.NeuronModel(
        LIF, threshold="v > v_th", reset="v = v_reset", refractory=refractory, constants=LIF_CONSTANTS, method="euler"
    )


def test_another_dt_continues_the_time(device):
    """400 steps of 0.1 ms then 10 of 0.05 ms end at 40.5 ms (a step counter read with the new dt
    gave 20.5)."""
    model = lif()
    state = model.init_state(4, dtype=jnp.float64, v=-65.0, I=20.0)
    state, _ = model.run(state, dt=0.1, steps=400)
    assert float(sf.time_of(state)) == 400 * 0.1
    state, out = model.run(state, dt=0.05, steps=10, record=["t"])
    assert float(sf.time_of(state)) == pytest.approx(40.5, abs=1e-12)
    np.testing.assert_allclose(np.asarray(out.traces["t"])[:, 0], 40.0 + 0.05 * np.arange(10), atol=1e-12)
    # 40.5 ms is not a multiple of 0.2 ms: refused, as Brian2 refuses it, when the time is known.
    with pytest.raises(ValueError, match="not a multiple"):
        model.run(state, dt=0.2, steps=10)
    # Under jit the time is not known: the run starts at the next multiple (Brian2's
    # Clock._calc_timestep rounds up), 40.6 ms.
    later, _ = jax.jit(lambda s: model.run(s, dt=0.2, steps=10))(state)
    assert float(sf.time_of(later)) == pytest.approx(42.6, abs=1e-12)


def lif_reference(v, current, segments, refractory):
    """Brian2's semantics in float64 over segments of (dt, steps): Euler, refractory counted as
    timestep(t - lastspike, dt) >= timestep(refractory, dt), lastspike the time of the spike's step
    (timestep * dt), the step counter rescaled as Brian2's Clock does when dt changes."""
    p = LIF_CONSTANTS
    v = np.array(v, dtype=np.float64)
    lastspike = np.full(v.shape, -1e4 * 1000.0)  # Brian2's -10000 s
    counts = np.zeros(v.shape, int)
    t = 0.0
    for dt, steps in segments:
        first = int(np.round(t / dt))
        ref_steps = int((refractory + 1e-3 * dt) / dt)
        for s in range(first, first + steps):
            now = s * dt
            not_ref = ((now - lastspike + 1e-3 * dt) / dt).astype(np.int64) >= ref_steps
            v = np.where(not_ref, v + dt * (p["v_rest"] - v + p["R"] * current) / p["tau"], v)
            spike = not_ref & (v > p["v_th"])
            v = np.where(spike, p["v_reset"], v)
            lastspike = np.where(spike, now, lastspike)
            counts += spike
        t = (first + steps) * dt
    return v, lastspike, counts


def test_refractoriness_across_a_dt_change_matches_brian2s_semantics(device):
    model = lif(refractory=2.0)
    # Up to firing limited by the refractory period: spikes fall near every dt change.
    current = np.linspace(16.0, 400.0, 64)
    state = model.init_state(64, dtype=jnp.float64, v=-65.0, I=current)
    segments = [(0.1, 403), (0.05, 98), (0.2, 60)]
    total = np.zeros(64, int)
    for dt, steps in segments:
        state, out = jax.jit(lambda s, dt=dt, steps=steps: model.run(s, dt=dt, steps=steps))(state)
        total += np.asarray(out.spike_count)
    check_written(state["v"], state["lastspike"])
    v, lastspike, counts = lif_reference(np.full(64, -65.0), current, segments, 2.0)
    np.testing.assert_array_equal(total, counts)
    np.testing.assert_allclose(np.asarray(state["v"]), v, atol=1e-9)
    np.testing.assert_allclose(np.asarray(sf.clock.value(state["lastspike"])), lastspike, atol=1e-9)
    assert counts.min() >= 2 and counts.max() > 20


def test_refractoriness_across_a_dt_change_matches_brian2():
    b2 = pytest.importorskip("brian2")
    from brian2 import Network, NeuronGroup, SpikeMonitor, defaultclock, ms, mV

    b2.start_scope()
    b2.prefs.codegen.target = "numpy"
    current = np.linspace(16.0, 400.0, 16)
    ns = {k: (v * ms if k == "tau" else v * mV) for k, v in LIF_CONSTANTS.items() if k != "R"}
    group = NeuronGroup(
        16,
        "dv/dt = (v_rest - v + I) / tau : volt (unless refractory)\nI : volt",
        threshold="v > v_th",
        reset="v = v_reset",
        refractory=2 * ms,
        method="euler",
        namespace=ns,
    )
    group.v = -65 * mV
    group.I = current * mV
    spikes = SpikeMonitor(group)
    net = Network(group, spikes)
    model = lif(refractory=2.0)
    state = model.init_state(16, dtype=jnp.float64, v=-65.0, I=current)
    counts = np.zeros(16, int)
    for dt, duration in ((0.1, 40.3), (0.05, 4.9), (0.2, 12.0)):
        defaultclock.dt = dt * ms
        net.run(duration * ms)
        state, out = model.run(state, dt=dt, duration=duration)
        counts += np.asarray(out.spike_count)
    np.testing.assert_array_equal(counts, np.asarray(spikes.count))
    np.testing.assert_allclose(np.asarray(state["v"]), np.asarray(group.v / mV), atol=1e-9)
    np.testing.assert_allclose(
        np.asarray(sf.clock.value(state["lastspike"])), np.asarray(group.lastspike / ms), atol=1e-9
    )
    assert float(sf.time_of(state)) == pytest.approx(float(defaultclock.t / ms), abs=1e-9)


def test_the_time_counts_past_2_to_the_31_steps(device):
    """A state 10 steps before step 2^31 runs across it: the neurons keep spiking as from t = 0
    (an int32 step counter wrapped, and they stopped for good)."""
    model = lif(refractory=0.5)
    n, dt = 8, 0.1
    fresh = model.init_state(n, dtype=jnp.float64, v=-65.0, I=np.linspace(20.0, 60.0, n))
    late = dict(fresh, t=sf.clock.words((2**31 - 10) * dt))
    a, out_a = model.run(fresh, dt=dt, steps=400)
    b, out_b = model.run(late, dt=dt, steps=400)
    np.testing.assert_array_equal(np.asarray(out_a.spike_count), np.asarray(out_b.spike_count))
    np.testing.assert_array_equal(np.asarray(a["v"]), np.asarray(b["v"]))
    assert np.asarray(out_b.spike_count).min() >= 2
    assert float(sf.time_of(b)) == (2**31 + 390) * dt
    # The spikes after the boundary are at the right times.
    shift = (2**31 - 10) * dt
    np.testing.assert_allclose(
        np.asarray(sf.clock.value(b["lastspike"])) - shift, np.asarray(sf.clock.value(a["lastspike"])), atol=1e-6
    )
    # Far past 2^32 steps too (the high word of the step in the noise counter, no wrap anywhere).
    far = dict(fresh, t=sf.clock.words(3 * 2**32 * dt))
    c, out_c = model.run(far, dt=dt, steps=400)
    np.testing.assert_array_equal(np.asarray(out_a.spike_count), np.asarray(out_c.spike_count))


def test_a_refractory_period_longer_than_any_sentinel(device):
    """2e9 steps of refractoriness: the neuron spikes once, then stays refractory (a never-spiked
    sentinel of -1e9 steps was within the period, and it never spiked at all)."""
    dt = 0.1
    model = lif(refractory=2e9 * dt)
    state = model.init_state(3, dtype=jnp.float64, v=-65.0, I=40.0)
    state, out = model.run(state, dt=dt, steps=200)
    np.testing.assert_array_equal(np.asarray(out.spike_count), 1)
    state, out = model.run(state, dt=dt, steps=200)
    np.testing.assert_array_equal(np.asarray(out.spike_count), 0)
    # A refractory period beyond any step count (1e30 ms) too.
    model = lif(refractory=1e30)
    _, out = model.run(model.init_state(3, dtype=jnp.float64, v=-65.0, I=40.0), dt=dt, steps=200)
    np.testing.assert_array_equal(np.asarray(out.spike_count), 1)


def test_a_refractory_condition_may_read_lastspike(device):
    """refractory='(t - lastspike) < 2.95*ms' (such a condition failed in the C compiler:
    'sf_lastspike_step' undeclared): refractory after a spike until it no longer holds, which is a
    3 ms refractory period at dt = 0.1 ms (2.95, not 3: t - lastspike is a float64 difference,
    which Brian2 too may round to just below 3 ms)."""
    by_condition = lif(refractory="(t - lastspike) < 2.95*ms")
    by_duration = lif(refractory=3.0)
    current = np.linspace(16.0, 40.0, 32)
    outs = []
    for model in (by_condition, by_duration):
        state = model.init_state(32, dtype=jnp.float64, v=-65.0, I=current)
        new, out = jax.jit(lambda s, m=model: m.run(s, dt=0.1, steps=2000, record=["v"]))(state)
        check_written(new["v"], new["lastspike"], out.spike_count)
        outs.append((np.asarray(out.spike_count), np.asarray(out.traces["v"])))
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
    np.testing.assert_allclose(outs[0][1], outs[1][1], atol=1e-9)
    assert outs[0][0].min() >= 5 and outs[0][0].max() > 20


def test_lastspike_without_a_refractory_period(device):
    """lastspike is kept when anything reads it, refractory period or not; the reset sees it as
    the current time, as in Brian2 (whose thresholder sets it first)."""
    model = sf.NeuronModel(
        "dv/dt = 1/ms : 1\nsince = t - lastspike : second\nat_reset : second",
        threshold="v > 1",
        reset="v = 0\nat_reset = lastspike",
    )
    state = model.init_state(2, dtype=jnp.float64)
    new, out = model.run(state, dt=0.1, steps=40, record=["lastspike", "since"])
    # Spikes at steps 10, 21, 32 (t = 1.0, 2.1, 3.2 ms); lastspike is -inf before the first.
    np.testing.assert_array_equal(np.asarray(out.spike_count), 3)
    np.testing.assert_allclose(np.asarray(new["at_reset"]), 3.2, atol=1e-12)
    trace = np.asarray(out.traces["lastspike"])[:, 0]
    assert np.isneginf(trace[:11]).all()
    np.testing.assert_allclose(trace[11:22], 1.0, atol=1e-12)
    np.testing.assert_allclose(trace[33:], 3.2, atol=1e-12)
    since = np.asarray(out.traces["since"])[:, 0]
    assert np.isposinf(since[:11]).all()
    np.testing.assert_allclose(since[11:22], 0.1 * np.arange(1, 12), atol=1e-12)


def test_times_read_back_with_and_without_x64():
    times = np.array([0.0, 1.5, -0.1, 40.5, 2**31 * 0.1, -np.inf, 3e38, 1e39, 1e-310])
    pairs = sf.clock.words(times)
    assert pairs.dtype == np.int32 and pairs.shape == (9, 2)
    np.testing.assert_array_equal(np.asarray(sf.clock.value(pairs)), times)
    if not hasattr(jax, "enable_x64"):
        pytest.skip("this jax cannot switch x64 off in a context")
    with jax.enable_x64(False):
        single = np.asarray(sf.clock.value(pairs))
    assert single.dtype == np.float32
    np.testing.assert_allclose(single[:7], times[:7].astype(np.float32), rtol=1e-7)
    assert np.isposinf(single[7]) and single[8] == 0.0
