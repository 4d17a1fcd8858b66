"""Gradients through neuron runs (spikeforge.gradients): the generated adjoint kernel against
central finite differences (smooth runs) and against jax.grad of an independent pure-JAX
lax.scan implementation of the same model with the same surrogate (runs with spikes), in f64."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import spikeforge as sf
from references import load_spec

DT = 0.1
LIF = "dv/dt = (v_rest - v + I) / tau : 1 (unless refractory)\nI : 1"


def heaviside(surrogate_derivative):
    """H(z) with the surrogate's derivative (a custom_jvp), written from the formulas."""

    @jax.custom_jvp
    def h(z):
        return (z > 0).astype(z.dtype)

    @h.defjvp
    def h_jvp(primals, tangents):
        (z,), (dz,) = primals, tangents
        return h(z), surrogate_derivative(z) * dz

    return h


SURROGATES = {
    "fast_sigmoid": lambda k: lambda z: 1.0 / (1.0 + k * jnp.abs(z)) ** 2,
    "sigmoid": lambda k: lambda z: k * jax.nn.sigmoid(k * z) * (1.0 - jax.nn.sigmoid(k * z)),
    "arctan": lambda k: lambda z: (k / 2) / (1.0 + (jnp.pi * k * z / 2) ** 2),
    "piecewise_linear": lambda k: lambda z: jnp.maximum(0.0, k * (1.0 - k * jnp.abs(z))),
}


def lif_reference(
    v0, tau, v_th, currents, *, method, kind, slope, detach, refractory_steps, v_rest=0.0, v_r=0.0, spike_train=False
):
    """Pure-JAX LIF with Brian2's order: refractoriness from the start of the step, the update
    (held while refractory), the threshold on the new value, the reset; traces at the start.
    Returns the final v, the trace and the spike counts (``spike_train``: the (steps, N) spikes)."""
    h = heaviside(SURROGATES[kind](slope))
    n = v0.shape[0]

    def step(carry, inp):
        v, free_from, s = carry
        nr = s >= free_from
        if method == "euler":
            u = v + DT * (v_rest - v + inp) / tau
        else:
            v_inf = v_rest + inp
            u = v_inf + (v - v_inf) * jnp.exp(-DT / tau)
        u = jnp.where(nr, u, v)
        spike = h(u - v_th) * nr
        reset_weight = jax.lax.stop_gradient(spike) if detach else spike
        v_new = reset_weight * v_r + (1 - reset_weight) * u
        fired = jax.lax.stop_gradient(spike) > 0
        free_from = jnp.where(fired, s + refractory_steps, free_from)
        return (v_new, free_from, s + 1), (v, spike)

    start = (v0, jnp.full((n,), -(2**30), jnp.int32), jnp.int32(0))
    (v, _, _), (trace, spikes) = jax.lax.scan(step, start, currents)
    return v, trace, spikes if spike_train else spikes.sum(axis=0)


def lif_model(method, kind="fast_sigmoid", slope=5.0, detach=False, refractory=0.5):
    surrogate = None if kind is None else sf.surrogate.Surrogate(kind, slope, detach)
    return sf.NeuronModel(
        LIF,
        threshold="v > v_th",
        reset="v = v_r",
        refractory=refractory,
        constants=dict(v_rest=0.0, tau=10.0, v_th=1.0, v_r=0.0),
        method=method,
        surrogate=surrogate,
    )


def relative_error(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)


N, STEPS = 24, 120
RNG = np.random.default_rng(12)
V0 = RNG.uniform(-0.2, 0.9, N)
CURRENTS = RNG.uniform(0.5, 2.5, (STEPS, N))
TAU = RNG.uniform(6.0, 14.0, N)
VTH = RNG.uniform(0.9, 1.1, N)
W_FINAL, W_TRACE, W_COUNT = RNG.normal(size=N), RNG.normal(size=(STEPS // 2, N)), RNG.normal(size=N)


def spikeforge_loss(model, method, checkpoint_every=None, record_every=2, w_trace=W_TRACE, w_count=W_COUNT):
    per_tau = method == "euler"  # exact integration needs a folded time constant

    def loss(v0, tau, v_th, currents):
        values = dict(v=v0, v_th=v_th)
        if per_tau:
            values["tau"] = tau
        state = model.init_state(N, dtype=jnp.float64, **{k: np.zeros(N) for k in values})
        state = dict(state, **values)
        new, out = model.run(
            state,
            dt=DT,
            steps=STEPS,
            inputs={"I": currents},
            record=["v"],
            record_every=record_every,
            checkpoint_every=checkpoint_every,
        )
        return (W_FINAL * new["v"]).sum() + (w_trace * out.traces["v"]).sum() + (w_count * out.spike_count).sum()

    return loss


def reference_loss(method, kind="fast_sigmoid", slope=5.0, detach=False):
    def loss(v0, tau, v_th, currents):
        tau = tau if method == "euler" else 10.0
        v, trace, count = lif_reference(
            v0, tau, v_th, currents, method=method, kind=kind, slope=slope, detach=detach, refractory_steps=5
        )
        return (W_FINAL * v).sum() + (W_TRACE * trace[::2]).sum() + (W_COUNT * count).sum()

    return loss


ARGS = (jnp.asarray(V0), jnp.asarray(TAU), jnp.asarray(VTH), jnp.asarray(CURRENTS))


@pytest.mark.parametrize("method", ["euler", "exact"])
def test_lif_with_spikes_matches_jax_grad_of_lax_scan(device, method):
    model = lif_model(method)
    got_value, got = jax.value_and_grad(spikeforge_loss(model, method), argnums=(0, 1, 2, 3))(*ARGS)
    want_value, want = jax.value_and_grad(reference_loss(method), argnums=(0, 1, 2, 3))(*ARGS)
    np.testing.assert_allclose(got_value, want_value, rtol=1e-12)
    _, _, counts = lif_reference(*ARGS[:1], 10.0 if method == "exact" else ARGS[1], *ARGS[2:], method=method,
                                 kind="fast_sigmoid", slope=5.0, detach=False, refractory_steps=5)  # fmt: skip
    assert int(np.sum(counts)) > 20, "the run spikes"
    names = ["v0", "tau", "v_th", "I"] if method == "euler" else ["v0", None, "v_th", "I"]
    for name, g, w in zip(names, got, want):
        if name is None:
            continue
        assert np.max(np.abs(w)) > 0, name
        assert relative_error(g, w) < 1e-8, (name, relative_error(g, w))


@pytest.mark.parametrize("kind", list(SURROGATES))
@pytest.mark.parametrize("detach", [False, True])
def test_every_surrogate_and_reset_option_matches_the_reference(device, kind, detach):
    slope = {"fast_sigmoid": 5.0, "sigmoid": 4.0, "arctan": 2.0, "piecewise_linear": 3.0}[kind]
    model = lif_model("euler", kind=kind, slope=slope, detach=detach)
    got = jax.grad(spikeforge_loss(model, "euler", checkpoint_every=7), argnums=(0, 2, 3))(*ARGS)
    ref = reference_loss("euler", kind=kind, slope=slope, detach=detach)
    want = jax.grad(ref, argnums=(0, 2, 3))(*ARGS)
    for g, w in zip(got, want):
        assert relative_error(g, w) < 1e-8, relative_error(g, w)


def test_checkpoint_spacing_does_not_change_the_gradient(device):
    model = lif_model("euler")
    grads = [
        jax.grad(spikeforge_loss(model, "euler", checkpoint_every=k), argnums=(0, 3))(*ARGS) for k in (1, 10, 120, 500)
    ]
    for g in grads[1:]:
        for a, b in zip(g, grads[0]):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def lif_loss_pair(model, *, record_every, checkpoint_every, w_steps=None):
    """(spikeforge loss, reference loss) of the Euler LIF with spikes and a refractory period,
    its trace every ``record_every`` steps; ``w_steps`` (steps, N): a weight for each step's
    spikes in the reference, in place of the counts' weights (the spike train's cotangent)."""
    n_rec = -(-STEPS // record_every)
    w_trace = np.random.default_rng(record_every).normal(size=(n_rec, N))
    w_count = 0.0 if w_steps is not None else W_COUNT

    ours = spikeforge_loss(
        model, "euler", checkpoint_every, record_every=record_every, w_trace=w_trace, w_count=w_count
    )

    def reference(v0, tau, v_th, currents):
        v, trace, spikes = lif_spike_train(v0, tau, v_th, currents)
        per_step = (w_steps * spikes).sum() if w_steps is not None else (W_COUNT * spikes.sum(axis=0)).sum()
        return (W_FINAL * v).sum() + (w_trace * trace[::record_every]).sum() + per_step

    return ours, reference


def lif_spike_train(v0, tau, v_th, currents):
    """:func:`lif_reference` (Euler, fast sigmoid 5, 5 refractory steps) with each step's spikes."""
    h = heaviside(SURROGATES["fast_sigmoid"](5.0))

    def step(carry, inp):
        v, free_from, s = carry
        nr = s >= free_from
        u = jnp.where(nr, v + DT * (0.0 - v + inp) / tau, v)
        spike = h(u - v_th) * nr
        v_new = spike * 0.0 + (1 - spike) * u
        free_from = jnp.where(jax.lax.stop_gradient(spike) > 0, s + 5, free_from)
        return (v_new, free_from, s + 1), (v, spike)

    start = (v0, jnp.full(v0.shape, -(2**30), jnp.int32), jnp.int32(0))
    (v, _, _), (trace, spikes) = jax.lax.scan(step, start, currents)
    return v, trace, spikes


@pytest.mark.parametrize("record_every", [1, 3])
def test_checkpoint_spacings_with_a_remainder_match_the_reference(device, record_every):
    """k = 1, several spacings that leave a shorter last segment, k = steps and more than steps:
    the same gradient as the lax.scan reference, and the same as each other to 1e-12."""
    model = lif_model("euler")
    spacings = (1, 7, 16, 119, STEPS, 500)
    segments = [sf.gradients.segment_length(STEPS, k) for k in spacings]
    assert sum(STEPS % k != 0 for k in segments if k < STEPS) >= 2, segments
    grads = []
    for k in spacings:
        ours, reference = lif_loss_pair(model, record_every=record_every, checkpoint_every=k)
        grads.append(jax.grad(ours, argnums=(0, 1, 2, 3))(*ARGS))
    want = jax.grad(reference, argnums=(0, 1, 2, 3))(*ARGS)
    for g, w in zip(grads[0], want):
        assert relative_error(g, w) < 1e-8, relative_error(g, w)
    for other in grads[1:]:
        for a, b in zip(other, grads[0]):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_a_spike_train_cotangent_enters_each_step(device, monkeypatch):
    """The adjoint kernel's per-step spike cotangent (what a spike-train output's cotangent
    feeds): each step's spikes weighted apart, against the lax.scan reference."""
    w_steps = np.random.default_rng(9).normal(size=(STEPS, N))
    monkeypatch.setattr(
        sf.gradients, "spike_train_cotangent", lambda ct_train, *, steps, record_every: jnp.asarray(w_steps)
    )
    ours, reference = lif_loss_pair(lif_model("euler"), record_every=2, checkpoint_every=11, w_steps=w_steps)
    got = jax.grad(ours, argnums=(0, 1, 2, 3))(*ARGS)
    want = jax.grad(reference, argnums=(0, 1, 2, 3))(*ARGS)
    for g, w in zip(got, want):
        assert np.max(np.abs(w)) > 0
        assert relative_error(g, w) < 1e-8, relative_error(g, w)


def test_the_differentiated_forward_is_the_plain_run(device):
    """Under jax.vjp the run is the kernel variant that also keeps checkpoints: its results are
    the plain run's, bit for bit."""
    model = lif_model("euler")
    state = model.init_state(N, dtype=jnp.float64, v=V0)

    def run(v0):
        new, out = model.run(
            dict(state, v=v0), dt=DT, steps=STEPS, inputs={"I": CURRENTS}, record=["v"], record_every=3
        )
        return new["v"], new["lastspike"], new["t"], out.traces["v"], out.spike_count

    plain = run(jnp.asarray(V0))
    differentiated, _ = jax.vjp(run, jnp.asarray(V0))
    for a, b in zip(differentiated, plain):
        np.testing.assert_array_equal(np.asarray(a, np.float64), np.asarray(b, np.float64))


def central_difference(f, x, h):
    x = np.asarray(x, np.float64)
    out = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = h
        out[i] = (f(x + e) - f(x - e)) / (2 * h)
    return out


def test_subthreshold_lif_matches_finite_differences(device):
    # Without a surrogate: a surrogate's derivative is not 0 below the threshold, so only the
    # exact derivative (0 for the spike) matches finite differences.
    model = lif_model("euler", kind=None, refractory=None)
    n, steps = 6, 80
    v0 = np.linspace(-0.5, 0.2, n)
    tau = np.linspace(8.0, 12.0, n)
    currents = np.full((steps, n), 0.5)

    def loss(v0, tau):
        state = dict(model.init_state(n, dtype=jnp.float64, tau=np.ones(n)), v=v0, tau=tau)
        new, out = model.run(state, dt=DT, steps=steps, inputs={"I": currents}, record=["v"])
        return jnp.sum(new["v"] ** 2) + jnp.sum(jnp.sin(out.traces["v"]))

    g_v0, g_tau = jax.grad(loss, argnums=(0, 1))(jnp.asarray(v0), jnp.asarray(tau))
    f = jax.jit(loss)
    fd_v0 = central_difference(lambda x: float(f(x, tau)), v0, 1e-5)
    fd_tau = central_difference(lambda x: float(f(v0, x)), tau, 1e-5)
    assert relative_error(g_v0, fd_v0) < 1e-6
    assert relative_error(g_tau, fd_tau) < 1e-6


@pytest.mark.parametrize("method", ["rk4", "exponential_euler"])
def test_subthreshold_hodgkin_huxley_matches_finite_differences(device, method):
    spec = load_spec("hh_64")
    constants = dict(spec["constants"])
    model = sf.NeuronModel(spec["equations"], constants=constants, method=method)
    n, steps, dt = 4, 300, 0.01
    start = dict(v=-65.0, m=0.05, h=0.6, n=0.32)
    currents = np.linspace(0.0, 2.0, n)

    def loss(v0, gna):
        state = model.init_state(n, dtype=jnp.float64, I=currents, gNa=np.full(n, 120.0), **start)
        state = dict(state, v=v0, gNa=gna)
        new, out = model.run(state, dt=dt, steps=steps, record=["v"], record_every=3)
        return jnp.sum(new["m"] * 10) + jnp.sum(out.traces["v"] ** 2) / steps

    v0 = np.full(n, -65.0) + np.linspace(0, 1, n)
    gna = np.full(n, 120.0)
    g_v0, g_gna = jax.grad(loss, argnums=(0, 1))(jnp.asarray(v0), jnp.asarray(gna))
    f = jax.jit(loss)
    fd_v0 = central_difference(lambda x: float(f(x, gna)), v0, 1e-4)
    fd_gna = central_difference(lambda x: float(f(v0, x)), gna, 1e-4)
    assert relative_error(g_v0, fd_v0) < 1e-6, relative_error(g_v0, fd_v0)
    assert relative_error(g_gna, fd_gna) < 1e-6, relative_error(g_gna, fd_gna)


def test_grad_under_jit_and_vmap(device):
    model = lif_model("euler")
    loss = spikeforge_loss(model, "euler")
    v0s = jnp.stack([ARGS[0], ARGS[0] + 0.05, ARGS[0] - 0.1])
    batched = jax.jit(jax.vmap(jax.grad(loss), in_axes=(0, None, None, None)))(v0s, *ARGS[1:])
    for b in range(3):
        one = jax.grad(loss)(v0s[b], *ARGS[1:])
        np.testing.assert_allclose(batched[b], one, rtol=1e-12, atol=1e-14)


def test_what_is_not_differentiable_is_named(device):
    noisy = sf.NeuronModel("dv/dt = -v / (10*ms) + 0.1*xi / sqrt(ms) : 1", method="euler")
    state = noisy.init_state(3, dtype=jnp.float64)

    def loss(v0):
        new, _ = noisy.run(dict(state, v=v0), dt=DT, steps=5)
        return new["v"].sum()

    with pytest.raises(sf.ModelError, match="random numbers"):
        jax.grad(loss)(jnp.zeros(3))
    truncated = sf.NeuronModel("dv/dt = (int(v) - v) / (10*ms) : 1", method="euler")
    state = truncated.init_state(3, dtype=jnp.float64)
    with pytest.raises(sf.ModelError, match=r"int\(\)"):
        jax.grad(lambda v0: truncated.run(dict(state, v=v0), dt=DT, steps=5)[0]["v"].sum())(jnp.ones(3) * 0.5)
    model = lif_model("euler")
    state = model.init_state(3, dtype=jnp.float64)
    with pytest.raises(sf.ModelError, match="record_spikes"):
        jax.grad(
            lambda v0: model.run(dict(state, v=v0), dt=DT, steps=5, inputs={"I": jnp.ones((5, 3))}, record_spikes=10)[
                0
            ]["v"].sum()
        )(jnp.zeros(3))


def test_surrogates_are_validated():
    with pytest.raises(sf.ModelError, match="slope"):
        sf.surrogate.fast_sigmoid(-1.0)
    with pytest.raises(sf.ModelError, match="kind"):
        sf.surrogate.Surrogate("exp", 1.0)
    with pytest.raises(sf.ModelError, match="surrogate"):
        sf.NeuronModel(LIF, threshold="v > 1", surrogate="fast_sigmoid")
    model = lif_model("euler")
    assert json.loads(model._variant(dt=DT, dtype="float64", per_neuron=(), per_step=(), record=())["spec"])[
        "surrogate"
    ] == {"kind": "fast_sigmoid", "slope": 5.0, "detach_reset": False}


def test_without_grad_the_run_is_unchanged(device):
    model = lif_model("euler")
    state = model.init_state(N, dtype=jnp.float64, v=V0)
    new, out = model.run(state, dt=DT, steps=STEPS, inputs={"I": CURRENTS})
    v, _, count = lif_reference(jnp.asarray(V0), 10.0, 1.0, jnp.asarray(CURRENTS), method="euler",
                                kind="fast_sigmoid", slope=5.0, detach=False, refractory_steps=5)  # fmt: skip
    np.testing.assert_allclose(new["v"], v, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(out.spike_count, count)


class Leaky(sf.Model):
    """The LIF above as a model class (bounds wide enough never to clip)."""

    Default_States = {"v": (0.0, -100.0, 100.0)}
    Default_Params = {"tau": 10.0, "v_rest": 0.0}

    def ode(self, I=0.0):  # noqa: E741 (the input's name in the model)
        self.d_v = (self.v_rest - self.v + I) / self.tau


def test_model_class_with_a_surrogate_matches_the_reference(device):
    model = sf.NeuronModel.from_class(
        Leaky, method="euler", threshold="v > 1", reset="v = 0", surrogate=sf.surrogate.sigmoid(4.0)
    )

    def loss(v0, currents):
        state = dict(model.init_state(N, dtype=jnp.float64), v=v0)
        new, out = model.run(state, dt=DT, steps=STEPS, inputs={"I": currents}, record=["v"], record_every=2)
        return (W_FINAL * new["v"]).sum() + (W_TRACE * out.traces["v"]).sum() + (W_COUNT * out.spike_count).sum()

    def reference(v0, currents):
        v, trace, count = lif_reference(v0, 10.0, 1.0, currents, method="euler", kind="sigmoid", slope=4.0,
                                        detach=False, refractory_steps=0)  # fmt: skip
        return (W_FINAL * v).sum() + (W_TRACE * trace[::2]).sum() + (W_COUNT * count).sum()

    got = jax.grad(loss, argnums=(0, 1))(ARGS[0], ARGS[3])
    want = jax.grad(reference, argnums=(0, 1))(ARGS[0], ARGS[3])
    for g, w in zip(got, want):
        assert relative_error(g, w) < 1e-8, relative_error(g, w)


def test_float32_gradients_follow_float64(device):
    model = lif_model("euler")
    loss = spikeforge_loss(model, "euler")

    def loss32(v0, currents):
        state = dict(model.init_state(N, dtype=jnp.float32), v=v0, v_th=jnp.asarray(VTH, jnp.float32))
        new, out = model.run(state, dt=DT, steps=STEPS, inputs={"I": currents}, record=["v"], record_every=2)
        return (W_FINAL * new["v"]).sum() + (W_TRACE * out.traces["v"]).sum() + (W_COUNT * out.spike_count).sum()

    g32 = jax.grad(loss32, argnums=(0, 1))(ARGS[0].astype(jnp.float32), ARGS[3].astype(jnp.float32))
    assert g32[0].dtype == jnp.float32
    tau = jnp.full(N, 10.0)
    g64 = jax.grad(loss, argnums=(0, 3))(ARGS[0], tau, ARGS[2], ARGS[3])
    for a, b in zip(g32, g64):
        assert relative_error(a, b) < 1e-3, relative_error(a, b)


def test_shared_parameter_gradient_sums_over_the_population(device):
    model = sf.NeuronModel("dv/dt = (g - v) / (10*ms) : 1\ng : 1 (shared)", method="euler")
    n, steps = 5, 30
    v0 = np.linspace(0.0, 1.0, n)

    def loss(g):
        state = dict(model.init_state(n, dtype=jnp.float64, v=v0), g=g)
        new, _ = model.run(state, dt=DT, steps=steps)
        return jnp.sum(new["v"] ** 2)

    g = jax.grad(loss)(jnp.asarray(0.7))
    assert g.shape == ()
    fd = (loss(0.7 + 1e-6) - loss(0.7 - 1e-6)) / 2e-6
    assert abs(float(g) - float(fd)) < 1e-6 * abs(float(fd))


def test_the_adjoint_target_refuses_forged_attributes_and_wrong_buffers():
    from spikeforge.gradients import neuron_grad_p

    model = lif_model("euler")
    info = model._variant(dt=DT, dtype="float64", per_neuron=(), per_step=("I",), record=())
    adjoint = sf.gradients._adjoint_info(model, info["spec"])
    layout = adjoint["layout"]
    n, k, segment = 4, 3, 2
    # A segment this short is kept in registers: the scratch is empty.
    assert segment <= adjoint["register_segment"], adjoint["register_segment"]
    shapes = {
        "per_step": (1, k, n),
        "optional_per_step": (0,),
        "per_segment": (1, 2, n),
        "segment_step": (0,),
        "neuron": (n,),
        "batch": (1,),
        "neuron_words": (n, 2),
        "batch_words": (1, 2),
    }

    def array(a):
        dtype = jnp.float64 if a["elem"] == "real" else jnp.dtype(a["elem"])
        return jnp.zeros(shapes[a["shape"]], dtype)

    operands = [array(a) for a in layout["inputs"]]
    outs = [
        jax.ShapeDtypeStruct(shapes[a["shape"]], jnp.float64 if a["elem"] == "real" else a["elem"])
        for a in layout["outputs"]
    ]

    def call(*ops, spec=info["spec"], key=info["key"], segment=segment, spike_train=0, n_inner=n):
        # Waited for: on a GPU a handler's error surfaces when the results are.
        return jax.block_until_ready(
            neuron_grad_p(
                *ops,
                outs=outs,
                spec=spec,
                key=key,
                steps=k,
                n_inner=n_inner,
                segment=segment,
                record_every=1,
                spike_train=spike_train,
            )
        )

    results = call(*operands)
    # The results (not the scratch, whose rows past a short last segment are never written).
    assert all(
        np.all(np.isfinite(np.asarray(r, np.float64)))
        for a, r in zip(layout["outputs"], results)
        if a["role"] in ("adjoint", "grad")
    )
    with pytest.raises(Exception, match="key"):
        call(*operands, key="0" * 64)
    with pytest.raises(Exception, match="segment"):
        call(*operands, segment=k + 1)
    with pytest.raises(Exception, match="spike_train"):
        call(*operands, spike_train=2)
    # The adjoint kernel walks rows by a 32-bit stride.
    with pytest.raises(Exception, match="n_inner"):
        call(*operands, n_inner=2**31)
    # A spike train's cotangent, announced but missing: a per-step buffer is expected.
    with pytest.raises(Exception, match="spike_cotangent"):
        call(*operands, spike_train=1)
    wrong = list(operands)
    wrong[0] = jnp.zeros((n + 1,))
    with pytest.raises(Exception, match="checkpoint:v"):
        call(*wrong)
    noisy = json.loads(info["spec"])
    noisy["equations"] = "dv/dt = (v_rest - v + I) / tau + xi / sqrt(ms) : 1 (unless refractory)\nI : 1"
    compiled = sf._native.model_compile(json.dumps(noisy))
    with pytest.raises(Exception, match="not differentiable"):
        call(*operands, spec=compiled["spec"], key=compiled["key"])
