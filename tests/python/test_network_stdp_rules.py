"""Learning rules written only in the model language (issue 11): the triplet STDP rule of Pfister
and Gerstner (2006, "all-to-all" traces, as in Brian2's documentation) with a multiplicative
(weight-dependent) potentiation, checked against a float64 numpy reference written here from
the rule's definition (independent of the generated code) on deterministic input spike trains."""

import jax
import jax.numpy as jnp
import numpy as np
import spikeforge as sf

DT = 0.1
NEURON = dict(taum=10.0, Ee=0.0, vt=-54.0, vr=-60.0, El=-74.0, taue=5.0)
NEURON_EQS = "dv/dt = (ge * (Ee-v) + El - v) / taum : volt\ndge/dt = -ge / taue : 1"
RULE = dict(
    tau_plus=16.8, tau_minus=33.7, tau_x=101.0, tau_y=125.0,
    A2p=5e-3, A3p=6e-3, A2m=1e-4, A3m=3e-5, wmax=0.02,
)  # fmt: skip
MODEL = """w : 1
dr1/dt = -r1 / tau_plus : 1 (event-driven)
dr2/dt = -r2 / tau_x : 1 (event-driven)
do1/dt = -o1 / tau_minus : 1 (event-driven)
do2/dt = -o2 / tau_y : 1 (event-driven)"""
# Depression at a presynaptic spike reads r2 before its own increment; potentiation, scaled by
# the room left below wmax (weight-dependent), reads o2 before the postsynaptic increment.
ON_PRE = "ge += w\nw = clip(w - o1 * (A2m + A3m * r2), 0, wmax)\nr1 += 1\nr2 += 1"
ON_POST = "w = clip(w + (wmax - w) * r1 * (A2p + A3p * o2), 0, wmax)\no1 += 1\no2 += 1"


def reference(n_in, neuron, step, w0, v0, steps):
    """Float64, Brian2's schedule: the neuron (Euler), its threshold, every presynaptic event
    (spike step, neuron index), then the postsynaptic spike's synapses, then the reset. Each
    synapse's four traces decay exactly over the time since its last event."""
    c, r = NEURON, RULE
    w = np.array(w0, dtype=np.float64)
    r1, r2, o1, o2 = (np.zeros(n_in) for _ in range(4))
    last = np.zeros(n_in)
    v, ge = float(v0), 0.0
    by_step = {}
    for i, s in zip(neuron, step):
        by_step.setdefault(int(s), []).append(int(i))
    spikes = []

    def decay(syn, t):
        h = t - last[syn]
        r1[syn] *= np.exp(-h / r["tau_plus"])
        r2[syn] *= np.exp(-h / r["tau_x"])
        o1[syn] *= np.exp(-h / r["tau_minus"])
        o2[syn] *= np.exp(-h / r["tau_y"])
        last[syn] = t

    for k in range(steps):
        t = k * DT
        dv = (ge * (c["Ee"] - v) + c["El"] - v) / c["taum"]
        v, ge = v + DT * dv, ge + DT * (-ge / c["taue"])
        fired = v > c["vt"]
        for i in sorted(by_step.get(k, [])):
            decay(i, t)
            ge += w[i]
            w[i] = min(max(w[i] - o1[i] * (r["A2m"] + r["A3m"] * r2[i]), 0.0), r["wmax"])
            r1[i] += 1.0
            r2[i] += 1.0
        if fired:
            for i in range(n_in):
                decay(i, t)
                w[i] = min(max(w[i] + (r["wmax"] - w[i]) * r1[i] * (r["A2p"] + r["A3p"] * o2[i]), 0.0), r["wmax"])
                o1[i] += 1.0
                o2[i] += 1.0
            spikes.append(k)
            v = c["vr"]
    return dict(w=w, r1=r1, r2=r2, o1=o1, o2=o2, spikes=spikes)


def test_triplet_stdp_matches_the_float64_reference(device):
    n_in, steps = 100, 4000
    rng = np.random.default_rng(41)
    step, neuron = np.nonzero(rng.random((steps, n_in)) < 100.0 * 1e-3 * DT)
    w0 = rng.random(n_in) * RULE["wmax"]
    ref = reference(n_in, neuron, step, w0, -60.0, steps)
    assert len(ref["spikes"]) > 10, "the target must spike for the test to mean anything"
    assert np.abs(ref["w"] - w0).max() > 1e-3, "the weights must move"
    assert 0 < np.sum(ref["w"] < RULE["wmax"]) < n_in, "some weights stay below the bound"
    assert (ref["o2"] > 0).all() and (ref["r2"] > 0).all(), "the triplet traces are used"

    inp = sf.SpikeGeneratorGroup(n_in, neuron, step * DT, name="inp")
    post = sf.NeuronGroup(
        1, NEURON_EQS, threshold="v>vt", reset="v = vr", method="euler", constants=NEURON, name="post"
    )
    S = sf.Synapses(inp, post, MODEL, on_pre=ON_PRE, on_post=ON_POST, constants=RULE, name="S")
    S.connect()
    net = sf.Network(inp, post, S, spikes=sf.SpikeMonitor(post), dt=DT)
    state = net.init_state(dtype=jnp.float64, S=dict(w=w0), post=dict(v=[-60.0]))
    with jax.default_device(device):
        state, out1 = net.run(state, steps=1500, progress=False)
        state, out2 = net.run(state, steps=steps - 1500, progress=False)
    t = np.concatenate([np.asarray(out1.spikes.numpy()[1]), np.asarray(out2.spikes.numpy()[1])])
    assert np.round(t / DT).astype(int).tolist() == ref["spikes"]
    for name in ("w", "r1", "r2", "o1", "o2"):
        np.testing.assert_allclose(np.asarray(state["S"][name]), ref[name], rtol=0, atol=1e-12, err_msg=name)
