"""Gradients through network runs (spikeforge.network.gradients), in float64 on the CPU.

A small random LIF network (excitatory and inhibitory projections, a delay, a refractory period,
a surrogate threshold) against ``jax.grad`` of a pure-JAX ``lax.scan`` of the same network,
written here independently from the library: Brian2's order within a step (update, threshold,
synaptic effects, reset), each synapse's arrival ``int(d/dt + 0.5)`` steps after the spike, the
spike a ``custom_jvp`` Heaviside whose derivative is the surrogate. Gradients with respect to
per-synapse and shared weights, the initial state and a parameter agree to 1e-8 relative. A
smooth sub-threshold run is checked against central finite differences. What is out of scope
is a ModelError naming the construct when ``jax.grad`` traces the run.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import spikeforge as sf
from conftest import check_written
from spikeforge.network import _abi
from spikeforge.network.gradients import segment_lengths
from test_gradients import SURROGATES, heaviside

DT = 0.1
N, N_E = 30, 20
EQS = """
dv/dt = (ge - gi - v + I) / tau : 1
dge/dt = -ge / tau_e : 1
dgi/dt = -gi / tau_i : 1
I : 1
"""
CONSTANTS = dict(tau=10.0, tau_e=5.0, tau_i=8.0, v_th=1.0)
SLOPE = 5.0
REFRACTORY_STEPS = 3


def build(
    *,
    per_synapse_delay=False,
    v_scale=1.0,
    threshold=True,
    seed=0,
    n=N,
    n_e=N_E,
    synapses=(150, 50),
    hub=0,
    delay=0.2,
    strategy="auto",
):
    """The test network; ``hub``: that many more synapses from the first neuron of each
    projection's source (a row longer than the others); ``delay``: the excitatory
    projection's (without ``per_synapse_delay``); ``strategy``: the GPU's path."""
    kw = dict(threshold="v > v_th", reset="v = 0", refractory=REFRACTORY_STEPS * DT) if threshold else {}
    P = sf.NeuronGroup(
        n,
        EQS,
        method="euler",
        constants=CONSTANTS,
        surrogate=sf.surrogate.fast_sigmoid(SLOPE),
        name="P",
        **kw,
    )
    if per_synapse_delay:
        E = sf.Synapses(P[:n_e], P, "w : 1\nd : second", on_pre="ge += w", delay="d", name="E")
    else:
        E = sf.Synapses(P[:n_e], P, "w : 1", on_pre="ge += w", delay=delay, name="E")
    Inh = sf.Synapses(P[n_e:], P, "wi : 1 (shared)", on_pre=f"v_post -= {v_scale}*wi", name="I")
    rng = np.random.default_rng(seed)
    first = np.zeros(hub, np.int64)
    E.connect(i=np.concatenate([rng.integers(0, n_e, synapses[0]), first]), j=rng.integers(0, n, synapses[0] + hub))
    Inh.connect(
        i=np.concatenate([rng.integers(0, n - n_e, synapses[1]), first]), j=rng.integers(0, n, synapses[1] + hub)
    )
    return sf.Network(P, E, Inh, vm=sf.StateMonitor(P, "v"), dt=DT, strategy=strategy)


def initial(net, *, per_synapse_delay=False, v0=None, current=None, n=N):
    rng = np.random.default_rng(1)
    values = dict(
        P=dict(
            v=rng.uniform(0.0, 0.9, n) if v0 is None else v0,
            ge=rng.uniform(0.0, 0.2, n),
            gi=rng.uniform(0.0, 0.1, n),
            I=rng.uniform(1.0, 2.5, n) if current is None else current,
        ),
        I=dict(wi=0.15),
    )
    values["E"] = dict(w=lambda n: np.random.default_rng(2).uniform(0.05, 0.4, n))
    if per_synapse_delay:
        values["E"]["d"] = lambda n: np.random.default_rng(3).uniform(0.0, 0.5, n)
    return net.init_state(seed=0, dtype=jnp.float64, **values)


def synapses(state, name, source_start, target_start):
    """(i, j) of every synapse in the state's (CSR) order, as indices of the group."""
    rows = np.asarray(state[name]["row_offsets"])
    i = np.repeat(np.arange(rows.size - 1), np.diff(rows)) + source_start
    j = np.asarray(state[name]["targets"]) + target_start
    return i, j


def reference_run(v0, ge0, gi0, current, w, wi, *, state, steps, v_scale=1.0, threshold=True):
    """The network as a lax.scan: (final v, ge, gi), the traces of v and ge (start of each
    step), the spike counts."""
    h = heaviside(SURROGATES["fast_sigmoid"](SLOPE))
    i_e, j_e = synapses(state, "E", 0, 0)
    n, n_e = np.shape(v0)[0], np.asarray(state["E"]["row_offsets"]).size - 1
    i_i, j_i = synapses(state, "I", n_e, 0)
    if "d" in state["E"]:
        d_e = (np.asarray(state["E"]["d"], np.float64) / DT + 0.5).astype(np.int64)
    else:
        d_e = np.full(i_e.size, 2)
    depth = int(d_e.max()) + 1
    c = CONSTANTS

    def step(carry, t):
        v, ge, gi, lastspike, history, count = carry
        u_v = v + DT * (ge - gi - v + current) / c["tau"]
        u_ge = ge + DT * (-ge / c["tau_e"])
        u_gi = gi + DT * (-gi / c["tau_i"])
        if threshold:
            not_refractory = (lastspike <= t - REFRACTORY_STEPS).astype(v.dtype)
            spike = not_refractory * h(u_v - c["v_th"])
        else:
            spike = jnp.zeros_like(v)
        history = jnp.roll(history, 1, axis=0).at[0].set(spike)  # history[D] = spikes of t - D
        delta_ge = jax.ops.segment_sum(w * history[d_e, i_e], j_e, num_segments=n)
        delta_v = jax.ops.segment_sum(-v_scale * wi * history[0, i_i], j_i, num_segments=n)
        before_reset = u_v + delta_v
        new_v = spike * 0.0 + (1.0 - spike) * before_reset if threshold else before_reset
        lastspike = jnp.where(spike > 0, t, lastspike)
        return (new_v, u_ge + delta_ge, u_gi, lastspike, history, count + spike), (v, ge)

    never = jnp.full((n,), -(10**9), jnp.int64)
    carry = (v0, ge0, gi0, never, jnp.zeros((depth, n)), jnp.zeros(n))
    (v, ge, gi, _, _, count), trace = jax.lax.scan(step, carry, jnp.arange(steps))
    return v, ge, gi, trace, count


def loss_terms(v, ge, trace, count):
    target = jnp.linspace(0.0, 1.0, v.shape[0])
    return jnp.sum((v - target) ** 2) + 0.3 * jnp.sum(ge**2) + 0.01 * jnp.sum(trace**2) + 0.05 * jnp.sum(count)


def spikeforge_loss(net, state, steps, checkpoint_every=None):
    def loss(v0, ge0, current, w, wi):
        s = dict(state)
        s["P"] = dict(state["P"], v=v0, ge=ge0, I=current)
        s["E"] = dict(state["E"], w=w)
        s["I"] = dict(state["I"], wi=wi)
        new, out = net.run(s, steps=steps, checkpoint_every=checkpoint_every)
        return loss_terms(new["P"]["v"], new["P"]["ge"], out.vm.v, out.spike_count["P"])

    return loss


def reference_loss(state, steps, **kw):
    def loss(v0, ge0, current, w, wi):
        v, ge, _, (trace, _), count = reference_run(
            v0, ge0, state["P"]["gi"], current, w, wi, state=state, steps=steps, **kw
        )
        return loss_terms(v, ge, trace, count)

    return loss


def arguments(state):
    return (state["P"]["v"], state["P"]["ge"], state["P"]["I"], state["E"]["w"], state["I"]["wi"])


def assert_close(got, want, rtol, names=("v0", "ge0", "I", "w", "wi")):
    for name, g, r in zip(names, got, want):
        g, r = np.asarray(g), np.asarray(r)
        scale = max(float(np.abs(r).max()), 1e-300)
        err = float(np.abs(g - r).max()) / scale
        assert err <= rtol, f"d/d{name}: relative error {err:.3e} (max |ref| {scale:.3e})"


@pytest.mark.parametrize("per_synapse_delay", [False, True])
def test_network_gradients_match_jax_grad_of_lax_scan(device, per_synapse_delay):
    net = build(per_synapse_delay=per_synapse_delay)
    state = initial(net, per_synapse_delay=per_synapse_delay)
    steps = 120
    _, out = net.run(state, steps=steps)
    spikes = float(np.asarray(out.spike_count["P"]).sum())
    assert spikes > 20, f"the test network should spike (got {spikes})"
    # The forward run and the reference agree (the same spikes, so the same surrogate terms).
    v_ref, _, _, (trace_ref, _), count_ref = reference_run(
        *arguments(state)[:2], state["P"]["gi"], *arguments(state)[2:], state=state, steps=steps
    )
    np.testing.assert_array_equal(np.asarray(out.spike_count["P"]), np.asarray(count_ref))
    np.testing.assert_allclose(np.asarray(out.vm.v), np.asarray(trace_ref), rtol=1e-12, atol=1e-12)
    argnums = tuple(range(5))
    got = jax.grad(spikeforge_loss(net, state, steps), argnums=argnums)(*arguments(state))
    want = jax.grad(reference_loss(state, steps), argnums=argnums)(*arguments(state))
    assert float(np.abs(np.asarray(want[3])).max()) > 0, "the weights' gradient should not vanish"
    assert_close(got, want, 1e-8)


@pytest.mark.parametrize("per_synapse_delay", [False, True])
def test_record_mode_matches_jax_grad_of_lax_scan(device, per_synapse_delay):
    """Segments no longer than the refractory period (3 steps): the adjoint kernel delivers each
    segment's spikes at once from the record (the next checkpoint's ``lastspike_step``) and each
    neuron recomputes its steps alone; against the reference to 1e-8, and against the per-step
    recomputation (segments of 4 steps) to 1e-12."""
    net = build(per_synapse_delay=per_synapse_delay)
    state = initial(net, per_synapse_delay=per_synapse_delay)
    steps = 60
    adjoint = _abi.network_adjoint(net._compile(net._variant_of(state, steps)[0])["spec"], "c")
    assert any(a["role"] == "spike_record" for a in adjoint["layout"]["inputs"])
    assert f"if (sf_steps <= {REFRACTORY_STEPS})" in adjoint["source"]
    argnums = tuple(range(5))
    recorded = jax.grad(spikeforge_loss(net, state, steps, checkpoint_every=3), argnums=argnums)(*arguments(state))
    per_step = jax.grad(spikeforge_loss(net, state, steps, checkpoint_every=4), argnums=argnums)(*arguments(state))
    want = jax.grad(reference_loss(state, steps), argnums=argnums)(*arguments(state))
    assert float(np.abs(np.asarray(want[3])).max()) > 0, "the weights' gradient should not vanish"
    assert_close(recorded, want, 1e-8)
    assert_close(recorded, per_step, 1e-12)


def test_segment_lengths():
    """``checkpoint_every`` sets the segments (rounded up to the state monitors' ``every``); by
    default about ``sqrt(steps)``."""
    lengths = segment_lengths
    assert lengths(60, 7, [1], 30) == [7] * 8 + [4]
    assert lengths(60, 1, [], 30) == [1] * 60
    assert lengths(60, 60, [1], 30) == [60]
    assert lengths(1000, None, [], 4000) == [32] * 31 + [8]
    assert lengths(47, 6, [3], 30) == [6] * 7 + [5]
    assert lengths(47, 4, [3], 30) == [6] * 7 + [5]
    assert lengths(10, 100, [4], 30) == [10]
    # By default the record mode's longest segment (a multiple of the monitors' every) where
    # that at most doubles the segments, at most 4 times the default's scratch.
    assert lengths(10000, None, [], 4000, 50) == [50] * 200
    assert lengths(10000, None, [5], 100, 50) == [50] * 200
    assert lengths(10000, None, [7], 100, 50) == [105] * 95 + [25]
    assert lengths(1000, None, [], 4000, 50) == [50] * 20
    assert lengths(1000, None, [3], 4000, 50) == [48] * 20 + [40]
    assert lengths(1000, None, [], 4000, 500) == [128] * 7 + [104]
    assert lengths(1000, None, [], 4000, 3) == [32] * 31 + [8]
    assert lengths(1000, None, [64], 4000, 50) == [64] * 15 + [40]
    assert lengths(10000, 70, [], 4000, 50) == [70] * 142 + [60]


def test_a_network_of_many_blocks_matches_jax_grad_of_lax_scan(device):
    """1500 neurons, 1200 excitatory rows: on a GPU the adjoint kernel runs on a grid of tens of
    blocks (a warp a row, grid-stride shares that wrap, rows and neurons across blocks, its grid
    barrier), per-synapse delays reaching back across segments; against the reference to 1e-8."""
    n, n_e = 1500, 1200
    net = build(per_synapse_delay=True, n=n, n_e=n_e, synapses=(6000, 1500))
    state = initial(net, per_synapse_delay=True, n=n)
    steps = 40
    _, out = net.run(state, steps=steps)
    assert float(np.asarray(out.spike_count["P"]).sum()) > 200
    argnums = tuple(range(5))
    got = jax.grad(spikeforge_loss(net, state, steps, checkpoint_every=9), argnums=argnums)(*arguments(state))
    want = jax.grad(reference_loss(state, steps), argnums=argnums)(*arguments(state))
    assert float(np.abs(np.asarray(want[3])).max()) > 0, "the weights' gradient should not vanish"
    assert_close(got, want, 1e-8)


# SPIKEFORGE_NETWORK_ADJOINT_FAST's values and the kernel the CUDA handler then records.
VARIANTS = {
    "none": "grid-stride kernel",
    "walk": "warp-a-neuron variant 1:",
    "deliveries": "warp-a-neuron variant 2:",
    "walk,deliveries": "warp-a-neuron variant 3:",
    "walk,deliveries,p2p": "warp-a-neuron variant 7:",
}


def test_warp_a_neuron_paths_match_jax_grad_of_lax_scan(device, monkeypatch):
    """CUDA: the adjoint kernel's warp-a-neuron variants (``SPIKEFORGE_NETWORK_ADJOINT_FAST``;
    the grid gives each neuron a warp: the walk back with each neuron's first
    synapses, adjoints and gradients in registers, record mode's deliveries a warp a spike) and
    the grid-stride kernel (``none``, main's), and the walk without a barrier a step (``p2p``:
    each gather waits for its values), against the reference to 1e-8: record mode
    (segments of 3) and the per-step recomputation (segments of 7), homogeneous delays (the
    gathers from registers) and per-synapse ones (from the row), hubs of 300 more synapses (rows
    longer than the registers hold)."""
    if device.platform == "cpu":
        pytest.skip("the setting chooses between CUDA kernels")
    n, n_e = 1500, 1200
    steps = 30
    argnums = tuple(range(5))
    for per_synapse_delay in (False, True):
        net = build(per_synapse_delay=per_synapse_delay, n=n, n_e=n_e, synapses=(6000, 1500), hub=300)
        state = initial(net, per_synapse_delay=per_synapse_delay, n=n)
        want = jax.grad(reference_loss(state, steps), argnums=argnums)(*arguments(state))
        assert float(np.abs(np.asarray(want[3])).max()) > 0, "the weights' gradient should not vanish"
        key = net._compile(net._variant_of(state, steps)[0])["key"]
        for every in (3, 7):
            for fast, taken in VARIANTS.items():
                # A program for each setting: XLA records the custom calls of a program into a
                # CUDA graph at its first run and replays it (the handler reads the setting then).
                monkeypatch.setenv("SPIKEFORGE_NETWORK_ADJOINT_FAST", fast)
                loss = spikeforge_loss(net, state, steps, checkpoint_every=every)
                got = jax.jit(jax.grad(loss, argnums=argnums))(*arguments(state))
                detail = _abi.network_last_path_detail("adjoint\n" + key)
                assert detail is not None and detail.startswith(taken), (fast, detail)
                assert_close(got, want, 1e-8)


@pytest.mark.parametrize(
    "per_synapse_delay, delay, strategy, n",
    [
        (False, 0.2, "auto", N),
        (True, None, "auto", N),
        (False, 0.2, "grid", 600),
        (False, 0.0, "grid", 600),
        (False, 0.0, "block", N),
        (False, 0.0, "per_step", N),
    ],
)
def test_checkpointed_call_returns_each_segments_state(device, per_synapse_delay, delay, strategy, n):
    """The forward pass under ``jax.grad`` as one call (``checkpoint_every``: the state at each
    segment's start, src/handlers/network_checkpoints.rs): its checkpoints are the states of
    runs of ``i k`` steps, its final state and outputs (a state monitor's trace, the spike
    counts) those of the plain run; exactly on the CPU (each segment runs as a call would), to
    1e-12 on a GPU (the order of the deliveries' atomic additions; a spike queue's row in any
    order). On a GPU each path: the persistent kernel's launches of a chunk (as one block, as a
    grid, the one-barrier grid without delays) and the per-step kernels."""
    net = build(per_synapse_delay=per_synapse_delay, delay=delay, strategy=strategy, n=n, n_e=2 * n // 3)
    state = initial(net, per_synapse_delay=per_synapse_delay, n=n)
    steps, k = 47, 6
    variant, dtype = net._variant_of(state, steps)
    new, raw = net._call(state, steps, variant, dtype, checkpoint_every=k)
    stored = {key[:2]: v for key, v in raw.items() if len(key) == 3}
    assert {"v", "ge", "gi", "lastspike_step", "spike_queue"} <= {name for _, name in stored}
    check_written(*stored.values())
    rtol = 0.0 if device.platform == "cpu" else 1e-12
    for (owner, name), values in stored.items():
        assert values.shape == (8,) + np.shape(state[owner][name])
        s = state
        for i in range(8):
            if i > 0:
                s, _ = net.run(s, steps=k)
            got, want = np.asarray(values[i]), np.asarray(s[owner][name])
            if name == "spike_queue":  # each row a set of spikes, in the order of their atomics
                counts = np.asarray(s[owner]["spike_queue_counts"])
                got, want = (np.concatenate([np.sort(r[:c]) for r, c in zip(x, counts)]) for x in (got, want))
            np.testing.assert_allclose(got, want, rtol=rtol, atol=0, err_msg=f"{owner}.{name}[{i}]")
    plain, out = net.run(state, steps=steps)
    np.testing.assert_allclose(np.asarray(new["P"]["v"]), np.asarray(plain["P"]["v"]), rtol=rtol, atol=0)
    np.testing.assert_allclose(np.asarray(raw[("vm", "v")]), np.asarray(out.vm.v), rtol=rtol, atol=0)
    assert (np.asarray(raw[("P", "spike_count")]) == np.asarray(out.spike_count["P"])).all()
    assert int(np.asarray(new["t_step"])) == steps
    assert float(np.asarray(out.spike_count["P"]).sum()) > 0
    if device.platform != "cpu" and strategy != "auto":
        assert net.last_strategy == strategy


def test_forward_in_one_call_or_in_segments(device, monkeypatch):
    """``SPIKEFORGE_NETWORK_GRAD_FORWARD``: the forward pass under ``jax.grad`` as one
    checkpointed call or as one call a segment (the default) gives the same
    gradients (1e-12), both the reference's (1e-8); record mode (segments of 3) and the per-step
    recomputation (segments of 7)."""
    net = build(per_synapse_delay=True)
    state = initial(net, per_synapse_delay=True)
    steps = 40
    argnums = tuple(range(5))
    want = jax.grad(reference_loss(state, steps), argnums=argnums)(*arguments(state))
    for every in (3, 7):
        got = {}
        for setting in ("one_call", "segments"):
            monkeypatch.setenv("SPIKEFORGE_NETWORK_GRAD_FORWARD", setting)
            loss = spikeforge_loss(net, state, steps, checkpoint_every=every)
            got[setting] = jax.jit(jax.grad(loss, argnums=argnums))(*arguments(state))
            assert_close(got[setting], want, 1e-8)
        assert_close(got["one_call"], got["segments"], 1e-12)
    monkeypatch.setenv("SPIKEFORGE_NETWORK_GRAD_FORWARD", "both")
    with pytest.raises(ValueError, match="SPIKEFORGE_NETWORK_GRAD_FORWARD"):
        jax.grad(spikeforge_loss(net, state, steps), argnums=0)(*arguments(state))


def test_checkpoint_spacing_does_not_change_the_gradient(device):
    net = build()
    state = initial(net)
    steps = 60
    argnums = tuple(range(5))
    grads = [
        jax.grad(spikeforge_loss(net, state, steps, checkpoint_every=k), argnums=argnums)(*arguments(state))
        for k in (1, 7, 60)
    ]
    for g in grads[1:]:
        assert_close(g, grads[0], 1e-12)


def test_grad_under_jit(device):
    net = build()
    state = initial(net)
    steps = 40
    argnums = tuple(range(5))
    loss = spikeforge_loss(net, state, steps)
    eager = jax.grad(loss, argnums=argnums)(*arguments(state))
    jitted = jax.jit(jax.grad(loss, argnums=argnums))(*arguments(state))
    assert_close(jitted, eager, 1e-13)


def central_difference(f, x, h):
    x = np.asarray(x, np.float64)
    flat = x.reshape(-1)
    out = np.zeros_like(flat)
    for k in range(flat.size):
        up, down = flat.copy(), flat.copy()
        up[k] += h
        down[k] -= h
        out[k] = (f(up.reshape(x.shape)) - f(down.reshape(x.shape))) / (2 * h)
    return out.reshape(x.shape)


def test_subthreshold_network_matches_finite_differences(device):
    """Without a threshold the run is smooth and its gradient is the exact one (with a surrogate
    threshold that never fires, the surrogate's terms would still count): the states and the
    current are checked against central differences."""
    net = build(threshold=False)
    state = initial(net, v0=np.linspace(0.0, 0.3, N), current=np.linspace(0.1, 0.5, N))
    steps = 50
    _, out = net.run(state, steps=steps)
    assert float(np.asarray(out.spike_count["P"]).sum()) == 0
    loss = spikeforge_loss(net, state, steps)
    args = arguments(state)
    grads = jax.grad(loss, argnums=(0, 1, 2))(*args)
    for k, g in enumerate(grads):

        def f(x, k=k):
            a = list(args)
            a[k] = jnp.asarray(x)
            return float(loss(*a))

        fd = central_difference(f, args[k], 1e-5)
        np.testing.assert_allclose(np.asarray(g), fd, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize(
    "on_pre,model,needle",
    [
        ("ge += w; w = w * 0.9", "w : 1", "synaptic variable 'w'"),
        ("ge = w", "w : 1", "assign 'ge'"),
        ("ge += w * v_post", "w : 1", "reads 'v_post'"),
    ],
)
def test_what_is_not_differentiable_is_named(device, on_pre, model, needle):
    P = sf.NeuronGroup(4, EQS, method="euler", constants=CONSTANTS, threshold="v > v_th", reset="v = 0", name="P")
    S = sf.Synapses(P, P, model, on_pre=on_pre, name="S")
    S.connect(i=[0, 1], j=[2, 3])
    net = sf.Network(P, S, dt=DT)
    state = net.init_state(seed=0, dtype=jnp.float64, P=dict(I=1.5), S=dict(w=0.1))

    def loss(v0):
        new, _ = net.run(dict(state, P=dict(state["P"], v=v0)), steps=5)
        return new["P"]["v"].sum()

    with pytest.raises(sf.ModelError, match=needle):
        jax.grad(loss)(state["P"]["v"])


def test_rate_monitor_gradient_is_the_spike_counts(device):
    """The rate monitor's sum over the run is the group's spike count over ``N dt``: their
    gradients agree (both through the surrogate)."""
    net0 = build()
    P = net0.members.groups[0]
    E, Inh = net0.members.synapses
    net = sf.Network(P, E, Inh, vm=sf.StateMonitor(P, "v"), rate=sf.PopulationRateMonitor(P), dt=DT)
    state = initial(net)
    steps = 60

    def through(kind):
        def loss(current, w):
            s = dict(state, P=dict(state["P"], I=current), E=dict(state["E"], w=w))
            _, out = net.run(s, steps=steps)
            if kind == "rate":
                return out.rate.rate.sum() * N * DT
            return out.spike_count["P"].sum()

        return jax.grad(loss, argnums=(0, 1))(state["P"]["I"], state["E"]["w"])

    by_rate, by_count = through("rate"), through("count")
    assert float(np.abs(np.asarray(by_count[0])).max()) > 0
    assert_close(by_rate, by_count, 1e-12, names=("I", "w"))


def test_grad_under_vmap(device):
    """A vmap over the shared weight: each member's gradient is its own run's."""
    net = build()
    state = initial(net)
    steps = 30

    def loss(wi):
        new, out = net.run(dict(state, I=dict(state["I"], wi=wi)), steps=steps)
        return jnp.sum(new["P"]["v"] ** 2) + 0.05 * out.spike_count["P"].sum()

    wis = jnp.array([0.05, 0.15, 0.3])
    batched = jax.vmap(jax.grad(loss))(wis)
    one_by_one = jnp.stack([jax.grad(loss)(w) for w in wis])
    np.testing.assert_allclose(np.asarray(batched), np.asarray(one_by_one), rtol=1e-12)


def test_sparse_strided_state_monitor_on_a_subgroup(device):
    """A StateMonitor of a slice, some of its neurons, every 3rd step (and a run that is not a
    multiple of the segment length): its cotangents reach exactly the recorded (step, neuron)
    values, as in the reference."""
    net0 = build()
    P = net0.members.groups[0]
    E, Inh = net0.members.synapses
    net = sf.Network(P, E, Inh, ge_rec=sf.StateMonitor(P[10:], ["v", "ge"], record=[0, 4, 13], every=3), dt=DT)
    state = initial(net)
    steps = 47
    rows = np.array([10, 14, 23])

    def ours(v0, w):
        s = dict(state, P=dict(state["P"], v=v0), E=dict(state["E"], w=w))
        _, out = net.run(s, steps=steps, checkpoint_every=6)
        return jnp.sum(out.ge_rec.v**3) + jnp.sum(jnp.sin(out.ge_rec.ge)) + 0.1 * out.spike_count["P"].sum()

    def reference(v0, w):
        _, _, _, (v, ge), count = reference_run(
            v0, state["P"]["ge"], state["P"]["gi"], state["P"]["I"], w, state["I"]["wi"], state=state, steps=steps
        )
        return jnp.sum(v[::3, rows] ** 3) + jnp.sum(jnp.sin(ge[::3, rows])) + 0.1 * count.sum()

    args = (state["P"]["v"], state["E"]["w"])
    got = jax.grad(ours, argnums=(0, 1))(*args)
    want = jax.grad(reference, argnums=(0, 1))(*args)
    assert_close(got, want, 1e-8, names=("v0", "w"))
