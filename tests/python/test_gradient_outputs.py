"""Outputs of neuron runs that carry gradients (spikeforge.gradients): the spike train
(``record_spike_train=True``) and the population rate made of it, against jax.grad of the pure-JAX
lax.scan reference of tests/python/test_gradients.py with the same surrogate, in f64; how a run
behaves under forward mode (jax.jvp: a clear error), jax.jacrev and jax.vmap of jax.grad; what is
not differentiable named with its expression."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import spikeforge as sf
from conftest import check_written
from test_gradients import ARGS, CURRENTS, DT, LIF, STEPS, TAU, V0, VTH, N, lif_model, lif_reference, relative_error

RNG = np.random.default_rng(1212)
W_FINAL = RNG.normal(size=N)
W_COUNT = RNG.normal(size=N)


def windows(train, record_every):
    """The (steps, N) spikes summed over windows of ``record_every`` steps (the last one may be
    shorter), as the kernel writes the spike train."""
    steps = train.shape[0]
    rows = -(-steps // record_every)
    padded = jnp.zeros((rows * record_every,) + train.shape[1:], train.dtype).at[:steps].set(train)
    return padded.reshape((rows, record_every) + train.shape[1:]).sum(axis=1)


def reference_train(v0, tau, v_th, currents, method, refractory_steps=5, kind="fast_sigmoid", slope=5.0):
    v, _, train = lif_reference(
        v0, tau, v_th, currents, method=method, kind=kind, slope=slope, detach=False,
        refractory_steps=refractory_steps, spike_train=True,
    )  # fmt: skip
    return v, train


def run_lif(model, v0, tau, v_th, currents, *, method, record_every, checkpoint_every=None):
    values = dict(v=v0, v_th=v_th)
    if method == "euler":  # exact integration needs a folded time constant
        values["tau"] = tau
    state = dict(model.init_state(N, dtype=jnp.float64, **{k: np.zeros(N) for k in values}), **values)
    return model.run(
        state,
        dt=DT,
        steps=currents.shape[0],
        inputs={"I": currents},
        record_every=record_every,
        record_spike_train=True,
        checkpoint_every=checkpoint_every,
    )


@pytest.mark.parametrize("record_every", [1, 3, 7])
@pytest.mark.parametrize("surrogate", [True, False])
def test_the_spike_train_is_the_reference_spikes_per_window(device, record_every, surrogate):
    model = lif_model("euler", kind="fast_sigmoid" if surrogate else None)
    new, out = run_lif(model, *ARGS, method="euler", record_every=record_every)
    _, train = reference_train(*ARGS, "euler")
    assert int(train.sum()) > 20, "the run spikes"
    rows = -(-STEPS // record_every)
    assert out.spike_train.shape == (rows, N)
    assert out.spike_train.dtype == (jnp.float64 if surrogate else jnp.int32)
    check_written(out.spike_train)
    np.testing.assert_array_equal(out.spike_train, windows(train, record_every))
    np.testing.assert_array_equal(out.spike_train.sum(axis=0), out.spike_count)
    if record_every == 1:
        assert set(np.unique(np.asarray(out.spike_train)).tolist()) <= {0, 1}


def test_the_spike_train_agrees_with_the_spike_record(device):
    """Both outputs of one run (C: the record written after the vector loop, the train from the
    lanes; CUDA: the record by atomics, the train per thread) give the same spikes."""
    model = lif_model("exact", kind=None)
    state = model.init_state(N, dtype=jnp.float64, v=V0, v_th=VTH)
    _, out = model.run(
        state, dt=DT, steps=STEPS, inputs={"I": CURRENTS}, record_spikes=STEPS * N, record_spike_train=True
    )
    count = int(out.spikes.count)
    assert count > 20 and int(out.spikes.dropped) == 0
    steps = np.rint(np.asarray(out.spikes.t[:count]) / DT).astype(int)
    from_record = np.zeros((STEPS, N), np.int32)
    np.add.at(from_record, (steps, np.asarray(out.spikes.i[:count])), 1)
    np.testing.assert_array_equal(out.spike_train, from_record)


def test_without_the_flag_there_is_no_spike_train(device):
    model = lif_model("euler")
    state = model.init_state(N, dtype=jnp.float64, v=V0)
    _, out = model.run(state, dt=DT, steps=STEPS, inputs={"I": CURRENTS})
    assert out.spike_train is None


@pytest.mark.parametrize(
    "method,record_every,checkpoint_every",
    [("euler", 1, None), ("euler", 3, 7), ("exact", 1, 13), ("exact", 7, None), ("euler", 7, 500)],
)
def test_grad_through_the_spike_train_matches_jax_grad_of_lax_scan(device, method, record_every, checkpoint_every):
    model = lif_model(method)
    rows = -(-STEPS // record_every)
    w_train = jnp.asarray(RNG.normal(size=(rows, N)))

    def loss(v0, tau, v_th, currents):
        new, out = run_lif(
            model, v0, tau, v_th, currents, method=method, record_every=record_every, checkpoint_every=checkpoint_every
        )
        return (w_train * out.spike_train).sum() + (W_COUNT * out.spike_count).sum() + (W_FINAL * new["v"]).sum()

    def reference(v0, tau, v_th, currents):
        v, train = reference_train(v0, tau if method == "euler" else 10.0, v_th, currents, method)
        return (
            (w_train * windows(train, record_every)).sum() + (W_COUNT * train.sum(axis=0)).sum() + (W_FINAL * v).sum()
        )

    argnums = (0, 1, 2, 3) if method == "euler" else (0, 2, 3)
    got_value, got = jax.value_and_grad(loss, argnums=argnums)(*ARGS)
    want_value, want = jax.value_and_grad(reference, argnums=argnums)(*ARGS)
    np.testing.assert_allclose(got_value, want_value, rtol=1e-12)
    for k, g, w in zip(argnums, got, want):
        assert np.max(np.abs(w)) > 0, k
        assert relative_error(g, w) < 1e-8, (k, relative_error(g, w))


def test_the_train_alone_carries_the_gradient(device):
    """Only the spike train in the loss (the count's cotangent is zero): the train's cotangent
    reaches the adjoint kernel by itself."""
    model = lif_model("euler")
    w_train = jnp.asarray(RNG.normal(size=(STEPS, N)))

    def loss(v0, currents):
        _, out = run_lif(model, v0, ARGS[1], ARGS[2], currents, method="euler", record_every=1)
        return (w_train * out.spike_train).sum()

    def reference(v0, currents):
        return (w_train * reference_train(v0, ARGS[1], ARGS[2], currents, "euler")[1]).sum()

    got = jax.grad(loss, argnums=(0, 1))(ARGS[0], ARGS[3])
    want = jax.grad(reference, argnums=(0, 1))(ARGS[0], ARGS[3])
    for g, w in zip(got, want):
        assert np.max(np.abs(w)) > 0
        assert relative_error(g, w) < 1e-8, relative_error(g, w)


@pytest.mark.parametrize("record_every", [1, 7])
def test_population_rate_trace_and_its_gradient(device, record_every):
    model = lif_model("euler", kind="sigmoid", slope=4.0)
    target = jnp.linspace(50.0, 150.0, -(-STEPS // record_every))

    def loss(v0, currents):
        _, out = run_lif(model, v0, ARGS[1], ARGS[2], currents, method="euler", record_every=record_every)
        rate = sf.population_rate_trace(out.spike_train, dt=DT, record_every=record_every, steps=STEPS)
        return jnp.mean((rate - target) ** 2), rate

    def reference(v0, currents):
        _, train = reference_train(v0, ARGS[1], ARGS[2], currents, "euler", kind="sigmoid", slope=4.0)
        counts = windows(train, record_every)
        width = np.full(counts.shape[0], record_every * DT)
        width[-1] = (STEPS - (counts.shape[0] - 1) * record_every) * DT
        rate = counts.mean(axis=1) * 1000.0 / width
        return jnp.mean((rate - target) ** 2), rate

    (got_value, rate), got = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(ARGS[0], ARGS[3])
    (want_value, want_rate), want = jax.value_and_grad(reference, argnums=(0, 1), has_aux=True)(ARGS[0], ARGS[3])
    np.testing.assert_allclose(rate, want_rate, rtol=1e-12)
    np.testing.assert_allclose(got_value, want_value, rtol=1e-12)
    for g, w in zip(got, want):
        assert np.max(np.abs(w)) > 0
        assert relative_error(g, w) < 1e-8, relative_error(g, w)


def test_population_rate_trace_checks_its_arguments():
    train = jnp.zeros((4, 3))
    np.testing.assert_allclose(sf.population_rate_trace(jnp.ones((4, 3)), dt=0.5), np.full(4, 2000.0))
    with pytest.raises(ValueError, match="windows"):
        sf.population_rate_trace(train, dt=0.1, record_every=3, steps=20)
    with pytest.raises(ValueError, match=r"\(windows, N\)"):
        sf.population_rate_trace(jnp.zeros(4), dt=0.1)
    with pytest.raises(sf.ModelError, match="dt"):
        sf.population_rate_trace(train, dt=-1.0)


def test_spike_train_errors(device):
    model = lif_model("euler")
    state = model.init_state(N, dtype=jnp.float64)
    with pytest.raises(sf.ModelError, match="record_spike_train"):
        model.run(state, dt=DT, steps=5, inputs={"I": CURRENTS[:5]}, record_spike_train="yes")
    silent = sf.NeuronModel("dv/dt = -v / (10*ms) : 1", method="euler")
    with pytest.raises(sf.ModelError, match="threshold"):
        silent.run(silent.init_state(3, dtype=jnp.float64), dt=DT, steps=5, record_spike_train=True)


def test_forward_mode_raises_an_error_that_names_what_to_use(device):
    model = lif_model("euler")
    state = model.init_state(N, dtype=jnp.float64)

    def final_v(v0):
        return model.run(dict(state, v=v0), dt=DT, steps=10, inputs={"I": jnp.asarray(CURRENTS[:10])})[0]["v"]

    v0 = jnp.asarray(V0)
    for transform in (
        lambda: jax.jvp(final_v, (v0,), (jnp.ones(N),)),
        lambda: jax.jacfwd(final_v)(v0),
        lambda: jax.hessian(lambda v: final_v(v).sum())(v0),
    ):
        with pytest.raises(sf.ModelError, match=r"forward-mode.*jax\.grad.*jax\.jacrev"):
            transform()


def test_jacrev_matches_the_reference(device):
    model = lif_model("euler")
    n, steps = 5, 40
    state = model.init_state(n, dtype=jnp.float64, tau=TAU[:n], v_th=VTH[:n])
    currents = jnp.asarray(CURRENTS[:steps, :n])

    def final_v(v0):
        new, out = model.run(dict(state, v=v0), dt=DT, steps=steps, inputs={"I": currents}, record_spike_train=True)
        return jnp.concatenate([new["v"], out.spike_train.sum(axis=1)])

    def reference(v0):
        v, _, train = lif_reference(v0, TAU[:n], VTH[:n], currents, method="euler", kind="fast_sigmoid", slope=5.0,
                                    detach=False, refractory_steps=5, spike_train=True)  # fmt: skip
        return jnp.concatenate([v, train.sum(axis=1)])

    got = jax.jacrev(final_v)(jnp.asarray(V0[:n]))
    want = jax.jacrev(reference)(jnp.asarray(V0[:n]))
    assert got.shape == (n + steps, n)
    assert relative_error(got, want) < 1e-8


def test_vmap_of_grad_over_per_step_inputs_with_the_spike_train(device):
    model = lif_model("euler")
    w_train = jnp.asarray(RNG.normal(size=(STEPS, N)))

    def loss(currents, v0):
        new, out = run_lif(model, v0, ARGS[1], ARGS[2], currents, method="euler", record_every=1, checkpoint_every=9)
        return (w_train * out.spike_train).sum() + (W_FINAL * new["v"]).sum()

    def reference(currents, v0):
        v, train = reference_train(v0, ARGS[1], ARGS[2], currents, "euler")
        return (w_train * train).sum() + (W_FINAL * v).sum()

    batch = jnp.stack([ARGS[3], ARGS[3] * 0.8, ARGS[3] * 1.2])
    v0s = jnp.stack([ARGS[0], ARGS[0] - 0.1, ARGS[0] + 0.05])
    got = jax.jit(jax.vmap(jax.grad(loss, argnums=(0, 1))))(batch, v0s)
    for b in range(3):
        want = jax.grad(reference, argnums=(0, 1))(batch[b], v0s[b])
        for g, w in zip(got, want):
            assert relative_error(g[b], w) < 1e-8, (b, relative_error(g[b], w))


@pytest.mark.parametrize(
    "equations,named",
    [
        ("dv/dt = (int(v) - v) / (10*ms) : 1", r"int\(\) \(in equations `dv/dt = \(int\(v\) - v\) / \(10\*ms\) : 1`\)"),
        (
            "dv/dt = (w - v) / (10*ms) : 1\nw = floor(2*v) : 1",
            r"floor\(\) \(in the subexpression `w`, used in equations `dv/dt = \(w - v\)",
        ),
    ],
)
def test_what_is_not_differentiable_is_named_with_its_expression(device, equations, named):
    model = sf.NeuronModel(equations, method="euler")
    state = model.init_state(3, dtype=jnp.float64)
    with pytest.raises(sf.ModelError, match=named):
        jax.grad(lambda v0: model.run(dict(state, v=v0), dt=DT, steps=5)[0]["v"].sum())(jnp.ones(3) * 0.5)


def test_threshold_and_reset_expressions_are_named(device):
    model = sf.NeuronModel(LIF, threshold="v > v_th", reset="v = floor(v)", method="euler",
                           constants=dict(v_rest=0.0, tau=10.0, v_th=1.0),
                           surrogate=sf.surrogate.fast_sigmoid(5.0))  # fmt: skip
    state = model.init_state(3, dtype=jnp.float64)
    with pytest.raises(sf.ModelError, match=r"floor\(\) \(in reset `v = floor\(v\)`\)"):
        jax.grad(
            lambda v0: model.run(dict(state, v=v0), dt=DT, steps=20, inputs={"I": jnp.full((20, 3), 2.0)})[0]["v"].sum()
        )(jnp.zeros(3))
