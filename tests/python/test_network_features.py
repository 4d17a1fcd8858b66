"""Network features against hand-computed results and the float64 references: subgroups,
multapses, statements that depend on the order of events, ``_pre``/``i``/``j``/``lastspike_pre``,
spike generators with a period, Poisson groups and inputs (their statistics), TimedArrays, the
monitors (spike indices of subgroups, overflow warnings, rates), ``step`` in a ``lax.scan``, the
progress bar's chunked run, ``jax.vmap`` over network states, and the deterministic mode."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import spikeforge as sf
from jax import lax
from network_references import Group, simulate

DT = 0.1
COUNTER = "dx/dt = 0 : 1"


def counters(n, name="T"):
    return sf.NeuronGroup(n, COUNTER, name=name)


def final_x(net, state, steps, **kw):
    new, out = net.run(state, steps=steps, progress=False, **kw)
    return np.asarray(new["T"]["x"]), out


def test_subgroups_and_multapses(device):
    sg = sf.SpikeGeneratorGroup(4, [1, 3, 1], [0.0, 0.0, 0.5], name="sg")
    T = counters(6)
    # source sg[1:4] (indices 0..2 within it are sg's 1..3), target T[2:5]
    S = sf.Synapses(sg[1:4], T[2:5], "w : 1", on_pre="x_post += w", name="S")
    S.connect(i=[0, 0, 0, 2], j=[0, 0, 2, 1])  # a multapse 0 -> 0 (twice)
    net = sf.Network(sg, T, S, spikes=sf.SpikeMonitor(sg[1:4]), dt=DT)
    state = net.init_state(dtype=jnp.float64, S=dict(w=[1.0, 10.0, 100.0, 1000.0]))
    x, out = final_x(net, state, 10)
    # sg 1 spikes twice (i = 0 in the subgroup): 2 x (1 + 10) on T[2], 2 x 100 on T[4]; sg 3 once: 1000 on T[3]
    np.testing.assert_array_equal(x, [0, 0, 22, 1000, 200, 0])
    i, t = out.spikes.numpy()
    order = np.lexsort((i, t))  # within a step, the GPU records spikes in the order threads find them
    np.testing.assert_array_equal(i[order], [0, 2, 0])  # indices within the monitored subgroup
    np.testing.assert_allclose(t[order], [0.0, 0.0, 0.5])


def test_statement_order_follows_brian2(device):
    """``x = 2*x + w`` depends on the order of the events: spike step, neuron index, synapse."""
    sg = sf.SpikeGeneratorGroup(3, [2, 0, 1, 0], [0.0, 0.0, 0.0, 0.2], name="sg")
    T = counters(1)
    S = sf.Synapses(sg, T, "w : 1", on_pre="x_post = 2*x_post + w", name="S")
    pre, post = np.array([2, 0, 1, 0]), np.zeros(4, int)
    S.connect(i=pre, j=post)
    w = np.array([1.0, 3.0, 5.0, 7.0])
    net = sf.Network(sg, T, S, x=sf.StateMonitor(T, "x"), dt=DT)
    state = net.init_state(dtype=jnp.float64, S=dict(w=w))
    _, out = net.run(state, steps=5, progress=False)
    # step 0: neurons 0, 1, 2 in index order; neuron 0's two synapses in creation order (w 3, 7)
    x = 0.0
    for wk in (3.0, 7.0, 5.0, 1.0):
        x = 2 * x + wk
    after0 = x
    for wk in (3.0, 7.0):  # step 2: neuron 0 again
        x = 2 * x + wk
    np.testing.assert_array_equal(np.asarray(out.x.x)[:, 0], [0, after0, after0, x, x])


def test_pre_and_index_names(device):
    src = sf.NeuronGroup(
        3,
        "dv/dt = rate/ms : 1 (unless refractory)\nrate : 1",
        threshold="v > 1",
        reset="v = 0",
        refractory=0.25,
        name="src",
    )
    T = counters(2)
    S = sf.Synapses(src, T, on_pre="x_post += 100*i + 10*j + lastspike_pre + rate_pre", name="S")
    S.connect(i=[0, 1, 2], j=[1, 0, 1])
    net = sf.Network(src, T, S, spikes=sf.SpikeMonitor(src), dt=DT)
    rates = np.array([0.5, 1.0, 2.0])
    state = net.init_state(dtype=jnp.float64, src=dict(rate=rates))
    x, out = final_x(net, state, 40)

    def update(state, not_ref):
        return dict(v=np.where(not_ref, state["v"] + DT * state["rate"], state["v"]), rate=state["rate"])

    def reset(state, idx):
        state["v"][idx] = 0.0

    # refractory 0.25 ms is 2 steps: Brian2 counts int((0.25 + 1e-3 dt) / dt)
    group = Group(3, dict(v=np.zeros(3), rate=rates), update, lambda s: s["v"] > 1, reset, refractory_steps=2)
    ref = simulate({"src": group}, [], 40)
    steps, idx = ref.spikes["src"]
    expect = np.zeros(2)
    post = {0: 1, 1: 0, 2: 1}
    for k, i in zip(steps, idx):
        expect[post[i]] += 100 * i + 10 * post[i] + k * DT + rates[i]
    np.testing.assert_allclose(x, expect, rtol=1e-12)
    assert steps.size >= 5


def test_spike_generator_period(device):
    sg = sf.SpikeGeneratorGroup(2, [0, 1], [0.0, 0.35], period=1.0, name="sg")
    T = counters(2)
    S = sf.Synapses(sg, T, on_pre="x_post += 1", name="S")
    S.connect(i=[0, 1], j=[0, 1])
    net = sf.Network(sg, T, S, spikes=sf.SpikeMonitor(sg), dt=DT)
    state = net.init_state(dtype=jnp.float64)
    half, out1 = net.run(state, steps=25, progress=False)  # split inside a period
    new, out2 = net.run(half, steps=25, progress=False)
    np.testing.assert_array_equal(np.asarray(new["T"]["x"]), [5, 5])
    i = np.concatenate([out1.spikes.numpy()[0], out2.spikes.numpy()[0]])
    t = np.concatenate([out1.spikes.numpy()[1], out2.spikes.numpy()[1]])
    np.testing.assert_array_equal(i, [0, 1] * 5)
    np.testing.assert_allclose(t, np.repeat(np.arange(5.0), 2) + np.tile([0.0, 0.3], 5), atol=1e-12)


def test_poisson_group_statistics_and_seeds(device):
    n, steps, rate = 2000, 2000, 0.05  # p = 0.005 per step: 10 spikes per neuron expected
    pg = sf.PoissonGroup(n, rates=rate, name="pg")
    net = sf.Network(pg, rate=sf.PopulationRateMonitor(pg), dt=DT)
    state = net.init_state(seed=3)
    _, out = net.run(state, steps=steps, progress=False)
    counts = np.asarray(out.spike_count["pg"])
    p = rate * DT
    mean, var = steps * p, steps * p * (1 - p)
    assert abs(counts.mean() - mean) < 4 * np.sqrt(var / n)
    assert abs(counts.var() / var - 1) < 0.15
    np.testing.assert_allclose(np.asarray(out.rate.rate).sum() * DT, counts.sum() / n, rtol=1e-5)
    _, again = net.run(net.init_state(seed=3), steps=steps, progress=False)
    np.testing.assert_array_equal(np.asarray(again.spike_count["pg"]), counts)
    _, other = net.run(net.init_state(seed=4), steps=steps, progress=False)
    assert (np.asarray(other.spike_count["pg"]) != counts).any()
    half, a = net.run(state, steps=steps // 2, progress=False)
    _, b = net.run(half, steps=steps // 2, progress=False)
    np.testing.assert_array_equal(np.asarray(a.spike_count["pg"]) + np.asarray(b.spike_count["pg"]), counts)


def test_poisson_group_per_neuron_rates(device):
    rates = np.linspace(0.0, 0.1, 50)
    pg = sf.PoissonGroup(50, rates=rates, name="pg")
    net = sf.Network(pg, dt=DT)
    _, out = net.run(net.init_state(seed=1), steps=20000, progress=False)
    counts = np.asarray(out.spike_count["pg"])
    expect = 20000 * rates * DT
    assert counts[0] == 0
    assert np.all(np.abs(counts - expect) <= 5 * np.sqrt(expect + 1))


def test_poisson_input_is_binomial(device):
    n, steps, n_src, rate, weight = 500, 400, 100, 0.02, 0.5
    T = counters(n)
    inp = sf.PoissonInput(T, "x", n=n_src, rate=rate, weight=weight, name="inp")
    net = sf.Network(T, inp, dt=DT)
    state = net.init_state(seed=7, dtype=jnp.float64)
    x, _ = final_x(net, state, steps)
    events = x / weight
    np.testing.assert_array_equal(events, np.round(events))
    p = rate * DT
    mean, var = steps * n_src * p, steps * n_src * p * (1 - p)
    assert abs(events.mean() - mean) < 4 * np.sqrt(var / n)
    assert abs(events.var() / var - 1) < 0.2


def test_timed_array_in_equations(device):
    values = np.arange(12.0).reshape(4, 3) * 1.5
    stim = sf.TimedArray(values, dt=1.0, name="stim")
    G = sf.NeuronGroup(3, "dv/dt = 0 : 1\nI = stim(t, i) : 1", constants=dict(stim=stim), name="G")
    net = sf.Network(G, I=sf.StateMonitor(G, "I"), dt=DT)
    _, out = net.run(net.init_state(dtype=jnp.float64), steps=60, progress=False)
    rows = np.minimum(np.arange(60) // 10, 3)  # the last value after the end (Brian2)
    np.testing.assert_array_equal(np.asarray(out.I.I), values[rows])


def test_spike_monitor_overflow_is_reported(device):
    pg = sf.PoissonGroup(100, rates=1.0, name="pg")  # p = 0.1 per step
    net = sf.Network(pg, spikes=sf.SpikeMonitor(pg, capacity=50), dt=DT)
    state = net.init_state(seed=0)
    with pytest.warns(RuntimeWarning, match=r"SpikeMonitor .*'spikes'.* spikes were not recorded.*capacity"):
        _, out = net.run(state, steps=100, progress=False)
        jax.effects_barrier()
    total = int(np.asarray(out.spike_count["pg"]).sum())
    assert int(out.spikes.count) == 50 and int(out.spikes.dropped) == total - 50
    i, t = out.spikes.numpy()
    assert i.size == 50 and np.all(np.diff(t) >= 0)
    with pytest.warns(RuntimeWarning, match="not recorded"):
        jax.block_until_ready(jax.jit(lambda s: net.run(s, steps=100))(state))
        jax.effects_barrier()


def lif_network(n=50):
    eqs = "dv/dt = (I - v)/(10*ms) : 1 (unless refractory)\nI : 1"
    P = sf.NeuronGroup(n, eqs, threshold="v > 1", reset="v = 0", refractory=1.0, name="P")
    S = sf.Synapses(P, P, "w : 1", on_pre="v_post += w", delay=0.3, name="S")
    S.connect(i=np.arange(n), j=(np.arange(n) * 7 + 3) % n)
    return sf.Network(P, S, spikes=sf.SpikeMonitor(P), v=sf.StateMonitor(P, "v", record=[0, 1]), dt=DT)


def lif_state(net, drive, dtype=jnp.float64):
    n = net.groups[0].n
    return net.init_state(dtype=dtype, P=dict(I=drive * np.linspace(1.0, 1.5, n)), S=dict(w=0.05))


def test_step_in_a_scan_is_the_run(device):
    net = lif_network()
    state = lif_state(net, 1.2)
    whole, out = jax.jit(lambda s: net.run(s, steps=200))(state)

    def body(s, _):
        s, o = net.step(s)
        return s, o.spike_count["P"]

    last, per_step = jax.jit(lambda s: lax.scan(body, s, None, length=200))(state)
    for k in ("v", "lastspike_step"):
        np.testing.assert_array_equal(np.asarray(last["P"][k]), np.asarray(whole["P"][k]))
    np.testing.assert_array_equal(np.asarray(per_step).sum(0), np.asarray(out.spike_count["P"]))
    assert int(np.asarray(per_step).max()) == 1


def test_progress_bar_chunks_give_the_single_run(device, capsys):
    net = lif_network()
    state = lif_state(net, 1.3)
    one, out1 = jax.jit(lambda s: net.run(s, steps=4000))(state)
    chunked, out2 = net.run(state, steps=4000)  # from Python: a progress bar, 20 chunks
    assert "400.0/400.0 ms" in capsys.readouterr().err  # the bar reached the end
    np.testing.assert_array_equal(np.asarray(one["P"]["v"]), np.asarray(chunked["P"]["v"]))
    np.testing.assert_array_equal(np.asarray(out1.spike_count["P"]), np.asarray(out2.spike_count["P"]))
    np.testing.assert_array_equal(np.asarray(out1.v.v), np.asarray(out2.v.v))
    np.testing.assert_array_equal(np.asarray(out1.v.t), np.asarray(out2.v.t))
    for field in ("count", "dropped"):
        np.testing.assert_array_equal(np.asarray(getattr(out1.spikes, field)), np.asarray(getattr(out2.spikes, field)))
    (i1, t1), (i2, t2) = out1.spikes.numpy(), out2.spikes.numpy()
    o1, o2 = np.lexsort((i1, t1)), np.lexsort((i2, t2))  # the GPU's order within a step may differ
    np.testing.assert_array_equal(i1[o1], i2[o2])
    np.testing.assert_array_equal(t1[o1], t2[o2])
    assert np.isnan(np.asarray(out2.spikes.t)[int(out2.spikes.count) :]).all()


def test_vmap_over_network_states_is_one_call(device):
    net = lif_network()
    drives = [1.1, 1.3, 1.6]
    members = [lif_state(net, d) for d in drives]
    batch = net.stack(members)
    axes = net.batch_axes(batch)
    run = jax.jit(jax.vmap(lambda s: net.run(s, steps=300), in_axes=(axes,), out_axes=(axes, 0)))
    hlo = run.lower(batch).as_text()
    assert hlo.count("spikeforge_network_run") == 1 and "while" not in hlo
    new, out = run(batch)
    for b, member in enumerate(members):
        one, one_out = jax.jit(lambda s: net.run(s, steps=300))(member)
        np.testing.assert_array_equal(np.asarray(new["P"]["v"][b]), np.asarray(one["P"]["v"]))
        np.testing.assert_array_equal(np.asarray(out.spike_count["P"][b]), np.asarray(one_out.spike_count["P"]))
        np.testing.assert_array_equal(np.asarray(out.v.v[b]), np.asarray(one_out.v.v))
    # members with their own connectivity: still right (one call per member)
    run_all = jax.jit(jax.vmap(lambda s: net.run(s, steps=300)))
    new2, _ = run_all(jax.tree_util.tree_map(lambda *x: jnp.stack(x), *members))
    np.testing.assert_array_equal(np.asarray(new2["P"]["v"]), np.asarray(new["P"]["v"]))


def test_deterministic_mode_is_bit_identical(device):
    P = sf.NeuronGroup(
        400,
        "dv/dt = (I - v)/(10*ms) : 1 (unless refractory)\nI : 1",
        threshold="v > 1",
        reset="v = 0",
        refractory=1.0,
        name="P",
    )
    S = sf.Synapses(P, P, "w : 1", on_pre="v_post += w", name="S")
    S.connect(p=0.1, seed=5)
    net = sf.Network(P, S, dt=DT, deterministic=True)
    state = net.init_state(dtype=jnp.float32, P=dict(I=np.linspace(1.0, 1.6, 400)), S=dict(w=0.01))
    run = jax.jit(lambda s: net.run(s, steps=500))
    a, oa = run(state)
    b, ob = run(state)
    np.testing.assert_array_equal(np.asarray(a["P"]["v"]), np.asarray(b["P"]["v"]))
    np.testing.assert_array_equal(np.asarray(oa.spike_count["P"]), np.asarray(ob.spike_count["P"]))


def test_init_state_errors_name_the_object(device):
    net = lif_network()
    with pytest.raises(sf.ModelError, match="no group or synapses called 'Q'"):
        net.init_state(Q=dict(v=0.0))
    with pytest.raises(sf.ModelError, match="NeuronGroup 'P'.*no variable 'u'"):
        net.init_state(P=dict(u=1.0))
    with pytest.raises(sf.ModelError, match=r"Synapses 'S'.*'w' has shape \(3,\), but the projection has 50 synapses"):
        net.init_state(S=dict(w=[1.0, 2.0, 3.0]))
    with pytest.raises(sf.ModelError, match=r"NeuronGroup 'P'.*'v' has shape \(2,\)"):
        net.init_state(P=dict(v=[0.0, 1.0]))
    with pytest.raises(sf.ModelError, match="give either duration= or steps="):
        net.run(net.init_state(), progress=False)
    state = net.init_state(dtype=jnp.float32)
    bad = dict(state, P=dict(state["P"], v=state["P"]["v"][:10]))
    with pytest.raises(ValueError, match=r"state\['P'\]\['v'\] has shape \(10,\), expected \(50,\)"):
        net.run(bad, steps=1, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        net.run(state, steps=1, progress=False)  # the process keeps working


@pytest.mark.parametrize("library", ["brian2", "brainunit"])
def test_quantities_are_accepted_everywhere(library, device):
    u = pytest.importorskip(library)
    ms, mV, Hz = u.ms, u.mV, u.Hz

    def build(q):
        pg = sf.PoissonGroup(20, rates=q(15.0, Hz, 1e-3), name="pg")
        sg = sf.SpikeGeneratorGroup(2, [0, 1], q(np.array([0.5, 1.5]), ms, 1.0), period=q(3.0, ms, 1.0), name="sg")
        eqs = "dv/dt = (El - v)/(10*ms) : volt\nx : 1"
        P = sf.NeuronGroup(
            20, eqs, threshold="v > -50", reset="v = -60", constants=dict(El=q(-45.0, mV, 1.0)), name="P"
        )
        A = sf.Synapses(pg, P, on_pre="v_post += 2", delay=q(1.5, ms, 1.0), name="A")
        A.connect(i=np.arange(20), j=np.arange(20))
        B = sf.Synapses(sg, P, "d : second", on_pre="x_post += 1", delay="d", name="B")
        B.connect(i=[0, 1], j=[3, 4])
        inp = sf.PoissonInput(P, "v", n=10, rate=q(20.0, Hz, 1e-3), weight=q(0.5, mV, 1.0), name="inp")
        net = sf.Network(pg, sg, P, A, B, inp, spikes=sf.SpikeMonitor(P), dt=q(0.1, ms, 1.0))
        state = net.init_state(
            seed=2, dtype=jnp.float64, P=dict(v=q(-60.0, mV, 1.0)), B=dict(d=q(np.array([0.2, 0.7]), ms, 1.0))
        )
        return net.run(state, duration=q(20.0, ms, 1.0), progress=False)

    plain = build(lambda value, unit, factor: value * factor)
    with_units = build(lambda value, unit, factor: value * unit)
    for a, b in zip(jax.tree_util.tree_leaves(plain), jax.tree_util.tree_leaves(with_units)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert int(plain[1].spikes.count) > 0


def test_projections_deliver_in_brian2_schedule_order(device):
    """Brian2 runs the objects of its ``synapses`` slot by ``(order, name)``, a projection's pathway
    being ``<name>_pre`` with order -1 whatever the Synapses' ``order``, not in creation order:
    assignments show the order."""
    sg = sf.SpikeGeneratorGroup(1, [0], [0.0], name="sg")

    def final(projections):
        T = counters(1)
        made = []
        for name, statement, order in projections:
            S = sf.Synapses(sg, T, on_pre=statement, order=order, name=name)
            S.connect(i=[0], j=[0])
            made.append(S)
        net = sf.Network(sg, T, *made, dt=DT)
        state = net.init_state(dtype=jnp.float64, **{T.name: dict(x=np.ones(1))})
        new, _ = net.run(state, steps=3, progress=False)
        return float(np.asarray(new[T.name]["x"])[0])

    square, double = "x_post = x_post*x_post + 3", "x_post = 2*x_post + 1"
    # created zz, aa: Brian2 runs aa_pre first (square, then double)
    assert final([("zz", double, 0), ("aa", square, 0)]) == 2 * (1 * 1 + 3) + 1
    assert final([("aa", double, 0), ("zz", square, 0)]) == (2 * 1 + 1) ** 2 + 3
    # 'S_1_pre' < 'S_pre' ('1' sorts before 'p'), as Brian2's default names synapses_1 < synapses
    assert final([("S", double, 0), ("S_1", square, 0)]) == 2 * (1 * 1 + 3) + 1
    # the Synapses' order= does not move its pathways (Brian2 gives every _pre pathway order -1)
    assert final([("zz", double, -1), ("aa", square, 0)]) == 2 * (1 * 1 + 3) + 1
    with pytest.raises(TypeError, match="order must be an integer"):
        sf.Synapses(sg, counters(1), on_pre=double, order=1.5)


def test_projection_order_is_brian2s():
    brian2 = pytest.importorskip("brian2")
    square, double = "x_post = x_post*x_post + 3", "x_post = 2*x_post + 1"
    results = []
    for make in ("brian2", "spikeforge"):
        if make == "brian2":
            brian2.start_scope()
            brian2.prefs.codegen.target = "numpy"
            sg = brian2.SpikeGeneratorGroup(1, [0], [0.0] * brian2.ms, dt=DT * brian2.ms)
            T = brian2.NeuronGroup(1, "x : 1", dt=DT * brian2.ms)
            T.x = 1.0
            made = [
                brian2.Synapses(sg, T, on_pre=st, name=nm, order=o, dt=DT * brian2.ms)
                for nm, st, o in (("b", double, -2), ("a", square, 0), ("a_1", double, 3))
            ]
            for S in made:
                S.connect(i=0, j=0)
            brian2.Network(sg, T, *made).run(0.3 * brian2.ms)
            results.append(float(T.x[0]))
        else:
            sg = sf.SpikeGeneratorGroup(1, [0], [0.0], name="sg")
            T = counters(1)
            made = []
            for nm, st, o in (("b", double, -2), ("a", square, 0), ("a_1", double, 3)):
                S = sf.Synapses(sg, T, on_pre=st, name=nm, order=o)
                S.connect(i=[0], j=[0])
                made.append(S)
            net = sf.Network(sg, T, *made, dt=DT)
            new, _ = net.run(net.init_state(dtype=jnp.float64, T=dict(x=np.ones(1))), steps=3, progress=False)
            results.append(float(np.asarray(new["T"]["x"])[0]))
    # a_1_pre < a_pre < b_pre: double, square, double (order= changes nothing)
    assert results[0] == results[1] == 2 * ((2 * 1 + 1) ** 2 + 3) + 1


def test_per_synapse_values_as_functions_of_the_synapse_count():
    """A projection's value given as a function is called with its synapse count (known only
    once a rule has built the synapses) and stored as the same values given as an array in
    creation order would be, delays included; a wrong length is the usual clear error."""
    P = sf.NeuronGroup(20, "dv/dt = -v/(10*ms) : 1", name="P")
    S = sf.Synapses(P, P, "w : 1\nd : second", on_pre="v_post += w", delay="d", name="S")
    S.connect(p=0.3, seed=5)
    net = sf.Network(P, S, dt=DT)
    seen = []

    def weights(n):
        seen.append(n)
        return np.arange(n, dtype=np.float64)

    def delays(n):
        return (np.arange(n) % 7) * 0.1

    by_function = net.init_state(dtype=jnp.float64, S=dict(w=weights, d=delays))
    (n,) = set(seen)
    assert n == np.asarray(by_function["S"]["targets"]).size > 0
    by_array = net.init_state(dtype=jnp.float64, S=dict(w=weights(n), d=delays(n)))
    for key in by_array["S"]:
        np.testing.assert_array_equal(np.asarray(by_function["S"][key]), np.asarray(by_array["S"][key]), err_msg=key)
    with pytest.raises(sf.ModelError, match=f"but the projection has {n} synapses"):
        net.init_state(S=dict(w=lambda k: np.zeros(k + 1)))
