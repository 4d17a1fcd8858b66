"""Shared test setup: float64 enabled, outputs poisoned, every test run on each available platform."""

import os
import sys
from pathlib import Path

# Every output buffer is filled with 0xFF bytes before each kernel runs, so an element a kernel
# fails to write shows up as NaN / -1 / an invalid bool (see check_written below).
os.environ.setdefault("SPIKEFORGE_POISON_OUTPUTS", "1")
os.environ.setdefault("SPIKEFORGE_CACHE_DIR", str(Path(__file__).resolve().parents[2] / "target" / "test-cache"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_enable_x64", True)


def _platforms():
    out = ["cpu"]
    try:
        if jax.devices("gpu"):
            out.append("gpu")
    except RuntimeError:
        pass
    return out


PLATFORMS = _platforms()


@pytest.fixture(params=PLATFORMS)
def device(request):
    """Runs the test on one platform; arrays created inside go to that device."""
    dev = jax.devices(request.param)[0]
    with jax.default_device(dev):
        yield dev


def check_written(*arrays):
    """Fails if any element still holds the poison pattern (every byte 0xFF)."""
    for a in arrays:
        a = np.asarray(a)
        if a.dtype == np.bool_:
            raw = a.view(np.uint8)
            assert np.isin(raw, (0, 1)).all(), "unwritten bool elements"
        elif a.dtype.kind == "f":
            assert not np.isnan(a).any(), "unwritten (NaN) float elements"
        else:
            assert not (a == -1).any(), "unwritten (-1) integer elements"
