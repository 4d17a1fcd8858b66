"""spikeforge kernels as the "spikeforge" backend of brainevent's own XLACustomKernel primitives
(runs where brainevent is installed: CI installs it on Python 3.12)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import spikeforge as sf
from kernel_sources import LEAKY_C, LEAKY_CU

brainevent = pytest.importorskip("brainevent")


def test_spikeforge_is_a_brainevent_backend(device):
    prim = brainevent.XLACustomKernel("sf_test_leaky_relu_backend")
    gen = sf.kernel_generator(LEAKY_CU, "leaky_relu", c_source=LEAKY_C, defines=("alpha",))
    sf.brainevent.register(prim, cpu=gen, gpu=gen, asdefault=True)
    platform = "gpu" if device.platform == "gpu" else "cpu"
    assert "spikeforge" in prim.available_backends(platform)
    x = np.random.default_rng().normal(size=1000).astype(np.float32)

    @jax.jit
    def f(x):
        return prim(x, outs=[jax.ShapeDtypeStruct(x.shape, x.dtype)], alpha=0.1, backend="spikeforge")

    (out,) = f(jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(out), np.where(x > 0, x, np.float32(0.1) * x), rtol=1e-6)
