"""Optional integration with brainevent: spikeforge kernels as the ``"spikeforge"`` backend of
brainevent's own ``XLACustomKernel`` primitives, so a brainevent user switches with one call.

brainevent is not a dependency: importing this module works without it, and :func:`register`
raises an ``ImportError`` saying what to install. brainevent's API (0.3): ``prim.def_kernel(
backend, platform, kg, asdefault=False)`` with platforms ``"cpu"`` / ``"gpu"``, where the kernel
generator ``kg(**kwargs)`` receives the call's keyword arguments (``outs`` among them) and returns
a function of the input arrays; ``prim.set_default(platform, backend)``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

__all__ = ["BACKEND", "available", "register"]

BACKEND = "spikeforge"


def available() -> bool:
    """Whether brainevent can be imported."""
    try:
        importlib.import_module("brainevent")
    except ImportError:
        return False
    return True


def register(
    prim,
    *,
    cpu: Callable | None = None,
    gpu: Callable | None = None,
    asdefault: bool = False,
    backend: str = BACKEND,
):
    """Registers kernel generators as the ``backend`` (default ``"spikeforge"``) of the brainevent
    primitive ``prim`` on ``cpu`` and/or ``gpu``. A generator receives the call's keyword
    arguments and returns a function of the inputs, typically a :func:`spikeforge.cuda_kernel`
    built from them (the same generator can serve both platforms when the kernel has a C twin).
    ``asdefault=True`` makes spikeforge the default backend of those platforms.

    Raises ``ImportError`` when brainevent is not installed, ``TypeError`` when ``prim`` is not a
    brainevent ``XLACustomKernel`` (it has no ``def_kernel``), ``ValueError`` when neither
    ``cpu`` nor ``gpu`` is given.
    """
    if not available():
        raise ImportError(
            "spikeforge.brainevent.register needs brainevent: pip install brainevent "
            "(spikeforge's own sf.XLACustomKernel works without it)"
        )
    if not callable(getattr(prim, "def_kernel", None)):
        raise TypeError(f"expected a brainevent XLACustomKernel (with def_kernel), got {type(prim).__name__}")
    if cpu is None and gpu is None:
        raise ValueError("register: give a kernel generator for cpu=, gpu= or both")
    for platform, generator in (("cpu", cpu), ("gpu", gpu)):
        if generator is None:
            continue
        if not callable(generator):
            raise TypeError(f"register: {platform}= must be a kernel generator (callable), got {generator!r}")
        prim.def_kernel(backend, platform, generator, asdefault=asdefault)
    return prim
