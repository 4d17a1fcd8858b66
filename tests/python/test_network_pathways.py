"""Named pathways with their own delays (issue 11, Brian2's ``on_pre={'up': ..., 'down': ...}``,
``delay={'up': ..., 'down': ...}``): against a float64 numpy reference written here from Brian2's
semantics (independent of the generated code) and against Brian2 itself (numpy target, float64)
with the same spikes; Brian2's order of pathways (by ``<name>_<pathway>``); bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import spikeforge as sf
from plasticity_helpers import GPU, final_x, fresh_brian2, gpu_only, run_in_chunks

DT = 0.1
C = dict(taum=10.0, taue=5.0, taui=10.0, Ee=0.0, Ei=-80.0, El=-74.0, vt=-54.0, vr=-60.0)
NEURON_EQS = "dv/dt = (ge*(Ee-v) + gi*(Ei-v) + El - v) / taum : volt\ndge/dt = -ge / taue : 1\ndgi/dt = -gi / taui : 1"
GMAX = 0.08
# Two presynaptic pathways (excitation now, inhibition later) and, in the plastic variant, a
# delayed postsynaptic one that potentiates by the presynaptic trace.
PLAIN = dict(model="w : 1", on_pre={"up": "ge += w", "down": "gi += 0.5*w"}, on_post=None)
PLASTIC = dict(
    model="w : 1\nd : second\ndApre/dt = -Apre / taupre : 1 (event-driven)",
    on_pre={"up": "ge += w\nApre += 0.01", "down": "gi += 0.5*w\nw = clip(w - 0.2*Apre*w, 0, gmax)"},
    on_post={"back": "w = clip(w + gmax*Apre, 0, gmax)"},
)
SYN_CONSTANTS = dict(taupre=20.0, gmax=GMAX)


def trains(n_in, rate_hz, steps, seed):
    rng = np.random.default_rng(seed)
    step, neuron = np.nonzero(rng.random((steps, n_in)) < rate_hz * 1e-3 * DT)
    return neuron.astype(np.int64), step.astype(np.int64)


def pairs(n_in, n_out):
    i, j = np.meshgrid(np.arange(n_in), np.arange(n_out), indexing="ij")
    return i.ravel(), j.ravel()


def steps_of(d_ms):
    return np.floor(np.asarray(d_ms, dtype=np.float64) / DT + 0.5).astype(np.int64)


def reference(case, n_in, n_out, neuron, step, w0, d_syn, delays, steps, v0):
    """Brian2's schedule in float64: groups (Euler), thresholds, the synapses slot (pathways by
    ``(order, name)``: ``S_down``, ``S_up`` at -1, ``S_back`` at +1; a presynaptic pathway runs
    the events whose spike step plus its delay is now, spike step, neuron, synapse order; the
    postsynaptic one the target's spikes of its delay ago), resets. ``delays``: per pathway, a
    number of steps, or None for the per-synapse delays ``d_syn``."""
    pre_i, post_j = pairs(n_in, n_out)
    w = np.array(w0, dtype=np.float64)
    apre = np.zeros_like(w)
    last = np.zeros_like(w)
    v = np.array(v0, dtype=np.float64)
    ge = np.zeros(n_out)
    gi = np.zeros(n_out)
    syn_steps = steps_of(d_syn)
    in_spikes = {}
    for i, s in zip(neuron, step):
        in_spikes.setdefault(int(s), []).append(int(i))
    out_spikes = {}
    plastic = case is PLASTIC

    def event_driven(syn, t):
        if plastic:
            apre[syn] *= np.exp(-(t - last[syn]) / 20.0)

    def up(syn, t):
        event_driven(syn, t)
        ge[post_j[syn]] += w[syn]
        if plastic:
            apre[syn] += 0.01
            last[syn] = t

    def down(syn, t):
        event_driven(syn, t)
        gi[post_j[syn]] += 0.5 * w[syn]
        if plastic:
            w[syn] = min(max(w[syn] - 0.2 * apre[syn] * w[syn], 0.0), GMAX)
            last[syn] = t

    def back(syn, t):
        event_driven(syn, t)
        w[syn] = min(max(w[syn] + GMAX * apre[syn], 0.0), GMAX)
        last[syn] = t

    def pre_events(k, delay):
        """(synapse) in delivery order for the spikes arriving now."""
        out = []
        if delay is None:
            for s in range(k - int(syn_steps.max()), k + 1):
                for i in sorted(in_spikes.get(s, [])):
                    out.extend(syn for syn in np.nonzero(pre_i == i)[0] if s + syn_steps[syn] == k)
        else:
            for i in sorted(in_spikes.get(k - delay, [])):
                out.extend(np.nonzero(pre_i == i)[0])
        return out

    spikes = []
    for k in range(steps):
        t = k * DT
        dv = (ge * (C["Ee"] - v) + gi * (C["Ei"] - v) + C["El"] - v) / C["taum"]
        v, ge, gi = v + DT * dv, ge + DT * (-ge / C["taue"]), gi + DT * (-gi / C["taui"])
        fired = np.nonzero(v > C["vt"])[0]
        out_spikes[k] = list(fired)
        for name in ("down", "up"):
            for syn in pre_events(k, delays[name]):
                (up if name == "up" else down)(syn, t)
        if plastic:
            for j in out_spikes.get(k - delays["back"], []):
                for syn in np.nonzero(post_j == j)[0]:
                    back(syn, t)
        spikes.extend((k, int(j)) for j in fired)
        v[fired] = C["vr"]
    return dict(w=w, apre=apre, spikes=spikes, v=v)


def case_inputs(seed, n_in=60, n_out=3, steps=2500):
    neuron, step = trains(n_in, 60.0, steps, seed)
    rng = np.random.default_rng(seed + 1)
    w0 = rng.random(n_in * n_out) * GMAX
    d_syn = rng.integers(0, 25, n_in * n_out) * DT + 0.02  # 0 to 2.4 ms, off the step grid
    v0 = np.linspace(-60.0, -56.0, n_out)
    return n_in, n_out, neuron, step, w0, d_syn, v0, steps


def run_spikeforge(case, delay, n_in, n_out, neuron, step, w0, d_syn, v0, chunks, **net_kw):
    inp = sf.SpikeGeneratorGroup(n_in, neuron, step * DT, name="inp")
    post = sf.NeuronGroup(n_out, NEURON_EQS, threshold="v>vt", reset="v = vr", method="euler", constants=C, name="post")
    S = sf.Synapses(
        inp, post, case["model"], on_pre=case["on_pre"], on_post=case["on_post"], delay=delay,
        constants=SYN_CONSTANTS, name="S",
    )  # fmt: skip
    S.connect()
    net = sf.Network(inp, post, S, spikes=sf.SpikeMonitor(post), dt=DT, **net_kw)
    values = dict(w=w0)
    if "d :" in case["model"]:
        values["d"] = d_syn
    state = net.init_state(dtype=jnp.float64, S=values, post=dict(v=v0))
    state, i, t = run_in_chunks(net, state, chunks)
    return net, state, sorted(zip(np.round(t / DT).astype(int).tolist(), i.tolist()))


PLAIN_DELAY = ({"up": 0.0, "down": 1.5}, {"up": 0, "down": 15})
PLASTIC_DELAY = ({"up": 0.3, "down": "d", "back": 0.7}, {"up": 3, "down": None, "back": 7})


@pytest.mark.parametrize("which", ["plain", "plastic"])
def test_named_pathways_match_the_float64_reference(which, device):
    case, (delay, ref_delays) = {"plain": (PLAIN, PLAIN_DELAY), "plastic": (PLASTIC, PLASTIC_DELAY)}[which]
    n_in, n_out, neuron, step, w0, d_syn, v0, steps = case_inputs(seed=21)
    ref = reference(case, n_in, n_out, neuron, step, w0, d_syn, ref_delays, steps, v0)
    assert len(ref["spikes"]) > 10, "the targets must spike for the test to mean anything"
    with jax.default_device(device):
        net, state, spikes = run_spikeforge(
            case, delay, n_in, n_out, neuron, step, w0, d_syn, v0, [steps // 3, steps - steps // 3]
        )
    assert spikes == ref["spikes"]
    np.testing.assert_allclose(np.asarray(state["post"]["v"]), ref["v"], rtol=0, atol=1e-9)
    # The stored synapses are in creation order here (all-to-all rows, sorted by delay when per synapse).
    w = np.asarray(state["S"]["w"])
    if "d :" in case["model"]:
        order = np.lexsort((steps_of(d_syn), pairs(n_in, n_out)[0]))
        w_ref, apre_ref = ref["w"][order], ref["apre"][order]
        np.testing.assert_allclose(np.asarray(state["S"]["Apre"]), apre_ref, rtol=0, atol=1e-12)
    else:
        w_ref = ref["w"]
    np.testing.assert_allclose(w, w_ref, rtol=0, atol=1e-12)
    if case is PLASTIC:
        assert np.abs(ref["w"] - w0).max() > 1e-4, "plasticity happened"


@gpu_only
@pytest.mark.parametrize("strategy", ["per_step", "block", "grid"])
@pytest.mark.parametrize("deterministic", [False, True])
@pytest.mark.parametrize("which", ["plain", "plastic"])
def test_named_pathways_on_every_gpu_path(which, deterministic, strategy):
    case, (delay, ref_delays) = {"plain": (PLAIN, PLAIN_DELAY), "plastic": (PLASTIC, PLASTIC_DELAY)}[which]
    n_in, n_out, neuron, step, w0, d_syn, v0, steps = case_inputs(seed=22)
    ref = reference(case, n_in, n_out, neuron, step, w0, d_syn, ref_delays, steps, v0)
    with jax.default_device(GPU):
        net, state, spikes = run_spikeforge(
            case, delay, n_in, n_out, neuron, step, w0, d_syn, v0, [700, steps - 700],
            strategy=strategy, deterministic=deterministic,
        )  # fmt: skip
    assert net.last_strategy == strategy
    assert spikes == ref["spikes"]
    tol = 1e-12 if case is PLASTIC else 1e-9  # atomic float sums: the last bits may differ
    w = np.asarray(state["S"]["w"])
    if "d :" in case["model"]:
        w_ref = ref["w"][np.lexsort((steps_of(d_syn), pairs(n_in, n_out)[0]))]
    else:
        w_ref = ref["w"]
    np.testing.assert_allclose(w, w_ref, rtol=0, atol=tol)
    np.testing.assert_allclose(np.asarray(state["post"]["v"]), ref["v"], rtol=0, atol=1e-6)


def brian2_run(case, brian_delay, per_synapse, n_in, n_out, neuron, step, w0, d_syn, v0, steps):
    b2 = fresh_brian2(DT)
    ms, mV = b2.ms, b2.mV
    ns = dict(
        taum=10 * ms, taue=5 * ms, taui=10 * ms, Ee=0 * mV, Ei=-80 * mV, El=-74 * mV, vt=-54 * mV, vr=-60 * mV,
        taupre=20 * ms, gmax=GMAX,
    )  # fmt: skip
    inp = b2.SpikeGeneratorGroup(n_in, neuron, step * DT * ms, name="inp")
    post = b2.NeuronGroup(
        n_out, NEURON_EQS, threshold="v>vt", reset="v = vr", method="euler", namespace=ns, name="post"
    )
    post.v = v0 * mV
    model = case["model"].replace("d : second\n", "")
    kw = dict(on_post=case["on_post"]) if case["on_post"] else {}
    S = b2.Synapses(inp, post, model, on_pre=case["on_pre"], delay=brian_delay, namespace=ns, name="S", **kw)
    S.connect()
    S.w = w0
    if per_synapse:
        getattr(S, per_synapse).delay = d_syn * ms
    mon = b2.SpikeMonitor(post)
    b2.Network(inp, post, S, mon).run(steps * DT * ms)
    spikes = sorted(zip(np.round(np.asarray(mon.t / ms) / DT).astype(int).tolist(), np.asarray(mon.i).tolist()))
    return np.asarray(S.w[:]), spikes


@pytest.mark.parametrize("which", ["plain", "plastic"])
def test_named_pathways_match_brian2(which):
    """Brian2 with the same named pathways and delays (per-synapse ones through ``S.down.delay``):
    the same spikes, and the same final weights to 1e-9 (skipped without brian2)."""
    ms = pytest.importorskip("brian2").ms

    n_in, n_out, neuron, step, w0, d_syn, v0, steps = case_inputs(seed=31, steps=3000)
    if which == "plain":
        case, delay, b2_delay, per_synapse = PLAIN, PLAIN_DELAY[0], {"up": 0 * ms, "down": 1.5 * ms}, None
    else:
        case, delay, b2_delay, per_synapse = PLASTIC, PLASTIC_DELAY[0], {"up": 0.3 * ms, "back": 0.7 * ms}, "down"
    w_b2, spikes_b2 = brian2_run(case, b2_delay, per_synapse, n_in, n_out, neuron, step, w0, d_syn, v0, steps)
    assert len(spikes_b2) > 10
    _, state, spikes = run_spikeforge(case, delay, n_in, n_out, neuron, step, w0, d_syn, v0, [steps])
    assert spikes == spikes_b2
    w = np.asarray(state["S"]["w"])
    if per_synapse:
        w_b2 = w_b2[np.lexsort((steps_of(d_syn), pairs(n_in, n_out)[0]))]
    np.testing.assert_allclose(w, w_b2, rtol=0, atol=1e-9)


def test_pathways_of_several_projections_interleave_by_name(device):
    """Brian2 sorts the pathway objects of the synapses slot by name: ``A_m`` < ``A_n_pre`` <
    ``A_z`` (pathways of two projections interleave), and the ``_post`` ones after them;
    assignments to one target variable show the order, checked against Brian2."""
    pytest.importorskip("brian2", reason="brian2 gives the expected order")
    made = [
        ("A", {"m": "x_post = x_post*x_post + 3", "z": "x_post = 2*x_post + 1"}, {"q": "x_post = x_post - 7"}, 0),
        ("A_n", "x_post = x_post + 10", "x_post = x_post*3", 0),
    ]
    results = [final_x(made, make, device) for make in ("brian2", "spikeforge")]
    x = 1.0
    for f in (lambda x: x * x + 3, lambda x: x + 10, lambda x: 2 * x + 1):  # A_m, A_n_pre, A_z
        x = f(x)
    for f in (lambda x: x * 3, lambda x: x - 7):  # A_n_post, A_q
        x = f(x)
    assert results == [x, x]


def test_named_pathway_errors_are_clear():
    P = sf.NeuronGroup(3, "dv/dt = -v/(10*ms) : 1\nx : 1", threshold="v > 1", reset="v = 0", name="P")
    with pytest.raises(sf.ModelError, match=r"delay\['dwn'\].*pathway 'dwn', which the synapses do not have") as e:
        sf.Synapses(P, P, "w : 1", on_pre={"up": "x += w", "down": "v += w"}, delay={"dwn": 1.0}, name="S1")
    assert "did you mean 'down'" in str(e.value)
    with pytest.raises(sf.ModelError, match="pathway 'pre', which the synapses do not have"):
        sf.Synapses(P, P, "w : 1", on_pre={"up": "x += w"}, delay=1.0, name="S2")
    with pytest.raises(sf.ModelError, match=r"on_pre\['up'\].*unknown name 'ww'"):
        sf.Synapses(P, P, "w : 1", on_pre={"up": "x += ww"}, name="S3")
    with pytest.raises(sf.ModelError, match="two pathways are called 'up'"):
        sf.Synapses(P, P, "w : 1", on_pre={"up": "x += w"}, on_post={"up": "w += 1"}, name="S4")
    with pytest.raises(sf.ModelError, match="per-synapse delays of a postsynaptic pathway"):
        sf.Synapses(P, P, "w : 1\nd : second", on_pre="x += w", on_post="w += 1", delay={"post": "d"}, name="S5")
    with pytest.raises(sf.ModelError, match="two variables"):
        sf.Synapses(
            P,
            P,
            "d1 : second\nd2 : second",
            on_pre={"a": "x += 1", "b": "v += 1"},
            delay={"a": "d1", "b": "d2"},
            name="S6",
        )
    with pytest.raises(TypeError, match="pathway names"):
        sf.Synapses(P, P, on_pre={1: "x += 1"}, name="S7")
    with pytest.raises(sf.ModelError, match=r"delay\['up'\] must be a finite duration"):
        sf.Synapses(P, P, on_pre={"up": "x += 1"}, delay={"up": -1.0}, name="S8")
    with pytest.raises(sf.ModelError, match="on_post must be a string of statements or a dict"):
        sf.Synapses(P, P, on_pre="x += 1", on_post=3, name="S9")
