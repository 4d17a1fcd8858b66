"""Plastic synapses (issue 11): ``on_post`` pathways, ``(event-driven)`` traces and Brian2's STDP
(examples/synapses/STDP.py) with stored input spike trains, against a float64 numpy reference
written here from Brian2's semantics (independent of the generated code) and against Brian2
itself (numpy target, float64); the pathway order of Brian2's synapses slot; bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import spikeforge as sf
from plasticity_helpers import GPU, final_x, fresh_brian2, gpu_only, run_in_chunks

DT = 0.1
# Brian2's STDP example, in the kernels' units (ms, mV); gmax, dApre, dApost dimensionless.
STDP = dict(taum=10.0, taupre=20.0, taupost=20.0, Ee=0.0, vt=-54.0, vr=-60.0, El=-74.0, taue=5.0)
GMAX = 0.01
DAPRE = 0.01 * GMAX
DAPOST = -0.01 * STDP["taupre"] / STDP["taupost"] * 1.05 * GMAX
NEURON_EQS = "dv/dt = (ge * (Ee-v) + El - v) / taum : volt\ndge/dt = -ge / taue : 1"
SYNAPSE_MODEL = "w : 1\ndApre/dt = -Apre / taupre : 1 (event-driven)\ndApost/dt = -Apost / taupost : 1 (event-driven)"
ON_PRE = "ge += w\nApre += dApre\nw = clip(w + Apost, 0, gmax)"
ON_POST = "Apost += dApost\nw = clip(w + Apre, 0, gmax)"
SYN_CONSTANTS = dict(taupre=STDP["taupre"], taupost=STDP["taupost"], gmax=GMAX, dApre=DAPRE, dApost=DAPOST)


def input_trains(n_in, rate_hz, steps, seed):
    """Deterministic input spike trains: (neuron, step) pairs, at most one per neuron and step,
    sorted by step then neuron (a Bernoulli draw per step at ``rate_hz``)."""
    rng = np.random.default_rng(seed)
    fired = rng.random((steps, n_in)) < rate_hz * 1e-3 * DT
    step, neuron = np.nonzero(fired)
    return neuron.astype(np.int64), step.astype(np.int64)


def synapse_pairs(n_in, n_out):
    """All-to-all, in Brian2's creation order for ``connect()`` (i major)."""
    i, j = np.meshgrid(np.arange(n_in), np.arange(n_out), indexing="ij")
    return i.ravel(), j.ravel()


def reference(n_in, n_out, neuron, step, w0, steps, v0):
    """Brian2's schedule for STDP.py, in float64: groups (Euler), thresholds (and the
    generator's spikes), synapses (every ``_pre`` pathway, then every ``_post`` one; each
    event: the traces decayed over ``t - lastupdate``, the statements, ``lastupdate = t``),
    resets. Returns the final weights (creation order), traces, and the post spikes."""
    c = STDP
    pre_i, post_j = synapse_pairs(n_in, n_out)
    w = np.array(w0, dtype=np.float64)
    apre = np.zeros_like(w)
    apost = np.zeros_like(w)
    last = np.zeros_like(w)
    v = np.array(v0, dtype=np.float64)
    ge = np.zeros(n_out)
    by_step = {}
    for k, s in zip(neuron, step):
        by_step.setdefault(int(s), []).append(int(k))
    post_spikes = []

    def decay(syn, t):
        apre[syn] *= np.exp(-(t - last[syn]) / c["taupre"])
        apost[syn] *= np.exp(-(t - last[syn]) / c["taupost"])

    for k in range(steps):
        t = k * DT
        dv = (ge * (c["Ee"] - v) + c["El"] - v) / c["taum"]
        dge = -ge / c["taue"]
        v, ge = v + DT * dv, ge + DT * dge
        fired = np.nonzero(v > c["vt"])[0]
        for i in sorted(by_step.get(k, [])):
            for syn in np.nonzero(pre_i == i)[0]:
                decay(syn, t)
                ge[post_j[syn]] += w[syn]
                apre[syn] += DAPRE
                w[syn] = min(max(w[syn] + apost[syn], 0.0), GMAX)
                last[syn] = t
        for j in fired:
            for syn in np.nonzero(post_j == j)[0]:
                decay(syn, t)
                apost[syn] += DAPOST
                w[syn] = min(max(w[syn] + apre[syn], 0.0), GMAX)
                last[syn] = t
            post_spikes.append((k, int(j)))
        v[fired] = c["vr"]
    return dict(w=w, apre=apre, apost=apost, lastupdate=last, spikes=post_spikes, v=v, ge=ge)


def spikeforge_stdp(n_in, n_out, neuron, step, delay=None):
    """The same network in spikeforge: its objects and a fresh state's ingredients."""
    inp = sf.SpikeGeneratorGroup(n_in, neuron, step * DT, name="inp")
    post = sf.NeuronGroup(
        n_out, NEURON_EQS, threshold="v>vt", reset="v = vr", method="euler", constants=STDP, name="post"
    )
    S = sf.Synapses(
        inp, post, SYNAPSE_MODEL, on_pre=ON_PRE, on_post=ON_POST, constants=SYN_CONSTANTS, delay=delay, name="S"
    )
    S.connect()
    return inp, post, S


def run_stdp(n_in, n_out, neuron, step, w0, v0, chunks, dtype=jnp.float64, strategy="auto", expect=None, delay=None):
    inp, post, S = spikeforge_stdp(n_in, n_out, neuron, step, delay)
    net = sf.Network(inp, post, S, spikes=sf.SpikeMonitor(post), dt=DT, strategy=strategy)
    state = net.init_state(dtype=dtype, S=dict(w=w0), post=dict(v=v0))
    state, i, t = run_in_chunks(net, state, chunks)
    if expect is not None:
        assert net.last_strategy == expect
    return state, i, t


def small_case(seed=3, n_in=100, n_out=2, steps=3000):
    neuron, step = input_trains(n_in, 200.0, steps, seed)
    rng = np.random.default_rng(seed + 100)
    w0 = rng.random(n_in * n_out) * GMAX
    v0 = np.array([-60.0, -57.0])[:n_out]
    return n_in, n_out, neuron, step, w0, v0, steps


def test_stdp_matches_the_float64_reference_and_persists_across_runs(device):
    n_in, n_out, neuron, step, w0, v0, steps = small_case()
    ref = reference(n_in, n_out, neuron, step, w0, steps, v0)
    assert len(ref["spikes"]) > 5, "the targets must spike for the test to mean anything"
    assert 0 < np.sum(ref["w"] == GMAX) < w0.size or np.ptp(ref["w"] - w0) > 1e-4
    one, i1, t1 = run_stdp(n_in, n_out, neuron, step, w0, v0, [steps])
    split, i2, t2 = run_stdp(n_in, n_out, neuron, step, w0, v0, [1234, steps - 1234])
    for state, i, t in ((one, i1, t1), (split, i2, t2)):
        np.testing.assert_allclose(np.asarray(state["S"]["w"]), ref["w"], rtol=0, atol=1e-12)
        np.testing.assert_allclose(np.asarray(state["S"]["Apre"]), ref["apre"], rtol=0, atol=1e-12)
        np.testing.assert_allclose(np.asarray(state["S"]["Apost"]), ref["apost"], rtol=0, atol=1e-12)
        np.testing.assert_allclose(np.asarray(state["S"]["lastupdate"]), ref["lastupdate"], rtol=0, atol=1e-9)
        got = sorted(zip(np.round(t / DT).astype(int).tolist(), i.tolist()))
        assert got == ref["spikes"]
    # The weights moved: plasticity happened, on both pathways.
    assert np.abs(np.asarray(one["S"]["w"]) - w0).max() > 1e-4


@gpu_only
@pytest.mark.parametrize("strategy", ["per_step", "block", "grid"])
def test_stdp_on_every_gpu_path_matches_the_reference(strategy):
    """The CUDA kernels (per step, and the persistent kernel as one block and as a grid): the
    presynaptic pathway adds to ``ge`` with float atomics (in any order: the last bits of ``ge``
    may differ), the postsynaptic one runs on the target's thread; the weights depend on the
    spike times and the traces only, so float64 gives the reference to 1e-12 on every path."""
    n_in, n_out, neuron, step, w0, v0, steps = small_case(seed=7)
    ref = reference(n_in, n_out, neuron, step, w0, steps, v0)
    assert len(ref["spikes"]) > 5
    with jax.default_device(GPU):
        state, i, t = run_stdp(
            n_in, n_out, neuron, step, w0, v0, [700, steps - 700], strategy=strategy, expect=strategy
        )
    np.testing.assert_allclose(np.asarray(state["S"]["w"]), ref["w"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.asarray(state["S"]["Apost"]), ref["apost"], rtol=0, atol=1e-12)
    assert sorted(zip(np.round(t / DT).astype(int).tolist(), i.tolist())) == ref["spikes"]


def test_stdp_float32_follows_the_reference(device):
    n_in, n_out, neuron, step, w0, v0, steps = small_case(seed=5, steps=1500)
    ref = reference(n_in, n_out, neuron, step, w0, steps, v0)
    state, _, _ = run_stdp(n_in, n_out, neuron, step, w0, v0, [steps], dtype=jnp.float32)
    np.testing.assert_allclose(np.asarray(state["S"]["w"]), ref["w"], rtol=0, atol=2e-5)


def brian2_stdp(n_in, neuron, step, w0, duration_steps, delay=None):
    b2 = fresh_brian2(DT)
    ms, mV = b2.ms, b2.mV
    ns = dict(
        taum=10 * ms, taupre=20 * ms, taupost=20 * ms, Ee=0 * mV, vt=-54 * mV, vr=-60 * mV, El=-74 * mV,
        taue=5 * ms, gmax=GMAX, dApre=DAPRE, dApost=DAPOST,
    )  # fmt: skip
    inp = b2.SpikeGeneratorGroup(n_in, neuron, step * DT * ms, name="inp")
    neurons = b2.NeuronGroup(1, NEURON_EQS, threshold="v>vt", reset="v = vr", method="euler", namespace=ns, name="post")
    neurons.v = -60 * mV
    S = b2.Synapses(inp, neurons, SYNAPSE_MODEL, on_pre=ON_PRE, on_post=ON_POST, namespace=ns, name="S")
    S.connect()
    S.w = w0
    if delay is not None:
        S.delay = delay * ms
    mon = b2.SpikeMonitor(neurons)
    b2.Network(inp, neurons, S, mon).run(duration_steps * DT * ms)
    return np.asarray(S.w[:]), np.round(np.asarray(mon.t / ms) / DT).astype(int)


@pytest.mark.parametrize("delay", [None, 1.5])
def test_stdp_matches_brian2(delay):
    """Brian2's STDP example with its Poisson inputs replaced by stored spike trains (fewer
    inputs, shorter): the same final weights to 1e-9 and the same post spike times; with a
    presynaptic delay, the traces decay to the arrival of each event."""
    n_in, steps = 200, 5000
    neuron, step = input_trains(n_in, 80.0, steps, seed=11)
    w0 = np.random.default_rng(12).random(n_in) * GMAX
    w_b2, t_b2 = brian2_stdp(n_in, neuron, step, w0, steps, delay)
    assert t_b2.size > 5
    state, i, t = run_stdp(n_in, 1, neuron, step, w0, np.array([-60.0]), [steps], delay=delay)
    np.testing.assert_array_equal(np.round(t / DT).astype(int), t_b2)
    np.testing.assert_allclose(np.asarray(state["S"]["w"]), w_b2, rtol=0, atol=1e-9)
    assert np.abs(w_b2 - w0).max() > 1e-4


def test_pathways_run_in_brian2s_order(device):
    """Brian2 runs every ``<name>_pre`` pathway (order -1) before every ``<name>_post`` one (+1),
    each set by name, whatever the Synapses' ``order``: assignments to one target variable
    show it (the target spikes in step 0, as the source does)."""
    pytest.importorskip("brian2", reason="brian2 gives the expected order")
    square, double, plus = "x_post = x_post*x_post + 3", "x_post = 2*x_post + 1", "x_post = x_post + 10"
    # (name, on_pre, on_post, order); 'S_pq' sorts between 'S_post' and 'S_pre'
    made = [("S", double, square, 0), ("S_pq", plus, double, -5), ("A", square, plus, 3)]
    results = [final_x(made, make, device) for make in ("brian2", "spikeforge")]
    # 'S_pq_pre' < 'S_pre' but 'S_post' < 'S_pq_post': the two sets run in different orders.
    x = 1.0
    for f in (lambda x: x * x + 3, lambda x: x + 10, lambda x: x * 2 + 1):  # A_pre, S_pq_pre, S_pre
        x = f(x)
    for f in (lambda x: x + 10, lambda x: x * x + 3, lambda x: 2 * x + 1):  # A_post, S_post, S_pq_post
        x = f(x)
    assert results == [x, x]


def test_on_post_reaches_only_the_synapses_onto_the_spiking_neuron(device):
    """The by-post index with subgroups, multapses and creation order across connect calls:
    ``on_post`` counts per synapse, and reads the source's index and variable."""
    sg = sf.SpikeGeneratorGroup(2, [0], [0.0], name="sg")
    src = sf.NeuronGroup(5, "dy/dt = 0 : 1", name="src")
    T = sf.NeuronGroup(4, "dx/dt = 0 : 1\ndu/dt = 0 : 1", threshold="u > 0", reset="u = 0", name="T")
    S = sf.Synapses(src[1:5], T[1:4], "c : 1\nk : 1", on_post="c += 1\nk = k*10 + i + y_pre", name="S")
    S.connect(i=[3, 0, 0, 2], j=[1, 1, 1, 0])
    S.connect(i=[1], j=[2])
    kick = sf.Synapses(sg, T, on_pre="u_post = 1", name="kick")
    kick.connect(i=[0], j=[2])  # T[2] (index 1 within T[1:4]) spikes at step 1
    net = sf.Network(sg, src, T, S, kick, dt=DT)
    state = net.init_state(dtype=jnp.float64, src=dict(y=np.arange(5) * 100.0), T=dict(u=[0, 0, 0, 1.0]))
    new, _ = net.run(state, steps=4, progress=False)
    # T[3] (j = 2) spikes at step 0: the synapse with i = 1; T[2] (j = 1) at step 1: those with
    # i = 3, 0, 0. The state holds the synapses by source (stored order): i = 0, 0, 1, 2, 3.
    np.testing.assert_array_equal(np.asarray(new["S"]["c"]), [1, 1, 1, 0, 1])
    y = lambda i: (i + 1) * 100.0  # noqa: E731  (y_pre: src[1:5]'s i is src's i + 1)
    np.testing.assert_array_equal(np.asarray(new["S"]["k"]), [0 + y(0), 0 + y(0), 1 + y(1), 0, 3 + y(3)])


def test_plasticity_errors_are_clear():
    P = sf.NeuronGroup(3, "dv/dt = -v/(10*ms) : 1\nx : 1", threshold="v > 1", reset="v = 0", name="P")
    with pytest.raises(sf.ModelError, match="on_post writing a presynaptic variable") as e:
        sf.Synapses(P, P, "w : 1", on_pre="x += w", on_post="x_pre += 1", name="S")
    assert "line 1, column 1" in str(e.value)
    with pytest.raises(sf.ModelError, match="not linear") as e:
        sf.Synapses(P, P, "da/dt = -a*a/(10*ms) : 1 (event-driven)", on_pre="a += 1", name="S2")
    assert "model" in str(e.value)
    # (clock-driven) and (summed) variables: tests/python/test_network_synapse_dynamics.py
    with pytest.raises(sf.ModelError, match="on_post must be a string"):
        sf.Synapses(P, P, on_pre="x += 1", on_post=3, name="S5")
    # Brian2 runs on_post after the Poisson inputs; here they come before: refused where it shows.
    S = sf.Synapses(P, P, "w : 1", on_pre="w += 1", on_post="x_post += w", name="S6")
    S.connect(i=[0], j=[1])
    bg = sf.PoissonInput(P, "x", n=5, rate=0.01, weight=1.0, name="bg")
    with pytest.raises(sf.ModelError, match="on_post touches a variable that the PoissonInput 'bg' changes"):
        sf.Network(P, S, bg, dt=DT).init_state()
