"""float16 / bfloat16 storage: the kernel computes in float32 between one load and one store."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import spikeforge as sf
from conftest import check_written
from references import hh_rk4, load_spec


def hh_model():
    spec = load_spec("hh_32")
    return spec, sf.NeuronModel(
        spec["equations"],
        threshold=spec["threshold"],
        refractory=spec["refractory"],
        constants=spec["constants"],
        method="rk4",
    )


@pytest.mark.parametrize("storage", [jnp.bfloat16, jnp.float16])
def test_storage_rounds_only_at_the_ends(device, storage):
    """A run stored in 16 bits equals the float32 run from the same (rounded) start, rounded once."""
    spec, model = hh_model()
    n = 64
    current = 10 * np.arange(n) / (n - 1)
    start = dict(v=-65.0, m=0.05, h=0.6, n=0.32)
    s16 = model.init_state(n, dtype=storage, I=current, **start)
    s32 = {k: (v.astype(jnp.float32) if v.dtype == storage else v) for k, v in s16.items()}
    run = jax.jit(lambda s: model.run(s, dt=0.01, steps=2000, record=["v"], record_every=100))
    new16, out16 = run(s16)
    new32, out32 = run(s32)
    assert new16["v"].dtype == storage and out16.traces["v"].dtype == storage
    check_written(new16["v"].astype(jnp.float32), out16.traces["v"].astype(jnp.float32), out16.spike_count)
    np.testing.assert_array_equal(np.asarray(new16["v"]), np.asarray(new32["v"].astype(storage)))
    np.testing.assert_array_equal(np.asarray(out16.traces["v"]), np.asarray(out32.traces["v"].astype(storage)))
    np.testing.assert_array_equal(np.asarray(out16.spike_count), np.asarray(out32.spike_count))
    # And the float32 arithmetic inside still tracks a float64 reference from the rounded start.
    rounded = tuple(float(jnp.asarray(x, storage).astype(jnp.float32)) for x in start.values())
    ref, spikes = hh_rk4(np.asarray(s16["I"].astype(jnp.float32), np.float64), 0.01, 2000, spec["constants"], rounded)
    np.testing.assert_array_equal(np.asarray(out16.spike_count), spikes)
    assert np.abs(np.asarray(new32["v"], np.float64) - ref[0]).max() < 0.1


def test_per_step_inputs_in_bfloat16(device):
    model = sf.NeuronModel("dv/dt = (I - v)/tau : 1\nI : 1", constants=dict(tau=5.0))
    rng = np.random.default_rng()
    drive = jnp.asarray(rng.uniform(0, 2, size=(300, 40)), jnp.bfloat16)
    s = model.init_state(40, dtype=jnp.bfloat16)
    new, _ = model.run(s, dt=0.1, steps=300, inputs={"I": drive})
    v = np.zeros(40)
    for row in np.asarray(drive.astype(jnp.float32), np.float64):
        v = v + 0.1 * (row - v) / 5.0
    np.testing.assert_allclose(np.asarray(new["v"].astype(jnp.float32)), v, rtol=1e-2, atol=1e-2)
