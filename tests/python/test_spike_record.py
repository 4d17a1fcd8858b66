"""Spike times out of a plain run (issue 8, item 8): run(..., record_spikes=capacity) gives every
spike as (index, time) in time order, with spikes past the capacity counted, never lost silently."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import spikeforge as sf
from references import lif_euler, load_spec

SPEC = load_spec("lif_32")


def lif():
    return sf.NeuronModel(
        SPEC["equations"],
        threshold=SPEC["threshold"],
        reset=SPEC["reset"],
        refractory=SPEC["refractory"],
        constants=SPEC["constants"],
        method="euler",
    )


def reference_spikes(current, steps, t0=0.0):
    """(index, time) of every spike of the float64 reference, in time order, then index."""
    _, _, spike_steps = lif_euler(np.full(current.shape, -65.0), current, 0.1, steps, SPEC["constants"], 20)
    pairs = [(s, i) for s, idx in enumerate(spike_steps) for i in idx]
    i = np.array([p[1] for p in pairs], dtype=np.int32)
    t = np.array([t0 + p[0] * 0.1 for p in pairs])
    return i, t


def test_spike_times_match_a_float64_reference(device):
    model = lif()
    current = np.linspace(10.0, 40.0, 200)
    state = model.init_state(200, dtype=jnp.float64, v=-65.0, I=current)
    new, out = jax.jit(lambda s: model.run(s, dt=0.1, steps=1500, record_spikes=5000))(state)
    i_ref, t_ref = reference_spikes(current, 1500)
    rec = out.spikes
    count = int(rec.count)
    assert count == len(i_ref) == int(np.asarray(out.spike_count).sum()) > 500
    assert int(rec.dropped) == 0
    np.testing.assert_array_equal(np.asarray(rec.i)[:count], i_ref)
    np.testing.assert_allclose(np.asarray(rec.t)[:count], t_ref, atol=1e-9)
    assert (np.asarray(rec.i)[count:] == -1).all() and np.isnan(np.asarray(rec.t)[count:]).all()
    # A second run continues the times.
    _, out2 = jax.jit(lambda s: model.run(s, dt=0.1, steps=10, record_spikes=100))(new)
    assert (np.asarray(out2.spikes.t)[: int(out2.spikes.count)] >= 150.0).all()


def test_spikes_past_the_capacity_are_counted(device):
    model = lif()
    current = np.linspace(10.0, 40.0, 200)
    state = model.init_state(200, dtype=jnp.float32, v=-65.0, I=current)
    _, out = model.run(state, dt=0.1, steps=1500, record_spikes=100)
    total = int(np.asarray(out.spike_count).sum())
    assert int(out.spikes.count) == 100 and int(out.spikes.dropped) == total - 100 > 0
    # The recorded ones are real spikes, in time order.
    t = np.asarray(out.spikes.t)
    assert np.all(np.diff(t) >= 0) and np.isfinite(t).all()


def test_spike_records_under_vmap(device):
    model = lif()
    currents = jnp.stack([jnp.full((16,), 20.0), jnp.full((16,), 30.0)])
    states = jax.vmap(lambda c: model.init_state(16, dtype=jnp.float64, v=-65.0, I=c))(currents)
    _, out = jax.jit(jax.vmap(lambda s: model.run(s, dt=0.1, steps=500, record_spikes=1000)))(states)
    assert out.spikes.i.shape == (2, 1000)
    for b, c in enumerate((20.0, 30.0)):
        i_ref, t_ref = reference_spikes(np.full(16, c), 500)
        count = int(out.spikes.count[b])
        assert count == len(i_ref)
        np.testing.assert_array_equal(np.asarray(out.spikes.i[b])[:count], i_ref)
        np.testing.assert_allclose(np.asarray(out.spikes.t[b])[:count], t_ref, atol=1e-9)


def test_spike_record_errors():
    with pytest.raises(sf.ModelError, match="needs a threshold"):
        sf.NeuronModel("dv/dt = -v : 1").run(
            sf.NeuronModel("dv/dt = -v : 1").init_state(2), dt=0.1, steps=2, record_spikes=3
        )
    model = lif()
    with pytest.raises(sf.ModelError, match="record_spikes"):
        model.run(model.init_state(2, v=-65.0, I=1.0), dt=0.1, steps=2, record_spikes=-1)
