"""Runs on every supported jax (CI: 0.12 on Python 3.12 and 0.10.2 on Python 3.11, one library)."""

import jax
import jax.numpy as jnp
import numpy as np
import spikeforge as sf
from spikeforge import _native


def test_compat_library_loads_and_registers_its_targets():
    assert sf.__version__
    assert _native.LIBRARY_PATH.is_file()
    assert jax.ffi  # the FFI registration API this jax offers


def test_compat_handshake_and_one_model_run():
    """XLA calls the handler's metadata handshake when the target is used: a version this jaxlib
    does not accept would fail here."""
    model = sf.NeuronModel(
        "dv/dt = (I - v) / tau : 1\nI : 1",
        threshold="v > 1",
        reset="v = 0",
        constants={"tau": 10.0},
        method="euler",
    )
    state = model.init_state(100, I=jnp.linspace(0.0, 3.0, 100))
    new, out = jax.jit(lambda s: model.run(s, dt=0.1, steps=500, record=["v"]))(state)
    # Exact reference of forward Euler in float64, compared with float32 tolerance.
    current = np.linspace(0.0, 3.0, 100)
    v = np.zeros(100)
    counts = np.zeros(100, int)
    for _ in range(500):
        v = v + 0.1 * (current - v) / 10.0
        spike = v > 1
        v = np.where(spike, 0.0, v)
        counts += spike
    np.testing.assert_allclose(np.asarray(new["v"]), v, atol=1e-4)
    assert np.abs(np.asarray(out.spike_count) - counts).max() <= 1
    assert out.traces["v"].shape == (500, 100)
