"""``XLACustomKernel``: a JAX primitive with kernels registered per backend and platform.

The registration style follows brainevent: ``def_kernel(backend, platform, generator)`` where
``generator(**kwargs)`` returns a function of the input arrays, and calls are made as
``prim(*ins, outs=..., **kwargs)``. The primitive lowers through ``mlir.lower_fun`` to whatever
the generator returns (for spikeforge, a ``jax.ffi.ffi_call`` to the Rust handlers), so it works
under ``jax.jit``; batching, JVP and transpose rules are declared per primitive.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import jax
import numpy as np
from jax.interpreters import ad, batching, mlir

try:  # jax >= 0.4.36
    from jax.extend.core import Primitive
except ImportError:  # pragma: no cover - older jax
    from jax.core import Primitive

from jax._src import dispatch

__all__ = ["XLACustomKernel"]

_PLATFORMS = ("cpu", "cuda")


def _as_struct(o) -> jax.ShapeDtypeStruct:
    if isinstance(o, jax.ShapeDtypeStruct):
        return o
    return jax.ShapeDtypeStruct(np.shape(o), np.asarray(o).dtype if not hasattr(o, "dtype") else o.dtype)


class XLACustomKernel:
    """A named primitive whose kernels are chosen per platform (``cpu``, ``cuda``) and backend."""

    def __init__(self, name: str):
        self.name = name
        self.primitive = Primitive(name)
        self.primitive.multiple_results = True
        self.primitive.def_impl(functools.partial(dispatch.apply_primitive, self.primitive))
        self.primitive.def_abstract_eval(self._abstract_eval)
        self._kernels: dict[str, dict[str, Callable]] = {}
        self._defaults: dict[str, str] = {}

    # -- registration -------------------------------------------------------------------------

    def def_kernel(self, backend: str, platform: str, generator: Callable, default: bool = False):
        """Registers ``generator`` as the kernel of ``backend`` on ``platform``.

        ``generator(**kwargs)`` receives the call's keyword arguments (``outs`` included) and
        returns a function of the input arrays that returns the outputs.
        """
        platform = platform.lower()
        if platform not in _PLATFORMS:
            raise ValueError(f"unknown platform {platform!r}: use one of {_PLATFORMS}")
        first = platform not in self._kernels
        self._kernels.setdefault(platform, {})[backend] = generator
        if default or platform not in self._defaults:
            self._defaults[platform] = backend
        if first:
            mlir.register_lowering(
                self.primitive,
                mlir.lower_fun(functools.partial(self._run_kernel, platform), multiple_results=True),
                platform=platform,
            )
        return generator

    def def_cpu_kernel(self, generator: Callable, backend: str = "spikeforge", **kw):
        return self.def_kernel(backend, "cpu", generator, **kw)

    def def_gpu_kernel(self, generator: Callable, backend: str = "spikeforge", **kw):
        return self.def_kernel(backend, "cuda", generator, **kw)

    def set_default(self, platform: str, backend: str):
        if backend not in self._kernels.get(platform, {}):
            raise ValueError(f"{self.name}: no {backend!r} kernel registered for {platform}")
        self._defaults[platform] = backend

    def def_batching_rule(self, rule: Callable):
        batching.primitive_batchers[self.primitive] = rule
        return rule

    def def_jvp_rule(self, rule: Callable):
        ad.primitive_jvps[self.primitive] = rule
        return rule

    def def_transpose_rule(self, rule: Callable):
        ad.primitive_transposes[self.primitive] = rule
        return rule

    # -- calling --------------------------------------------------------------------------------

    def __call__(self, *ins, outs, backend: str | None = None, **kwargs):
        single = isinstance(outs, (jax.ShapeDtypeStruct,)) or not isinstance(outs, Sequence)
        outs_t = (_as_struct(outs),) if single else tuple(_as_struct(o) for o in outs)
        results = self.primitive.bind(*ins, outs=outs_t, backend=backend, **kwargs)
        return results

    def bind(self, *ins, **params):
        return self.primitive.bind(*ins, **params)

    # -- primitive plumbing ---------------------------------------------------------------------

    def _abstract_eval(self, *ins, outs, **kwargs):
        return [jax.core.ShapedArray(o.shape, o.dtype) for o in outs]

    def _run_kernel(self, platform, *ins, backend=None, **kwargs):
        kernels = self._kernels.get(platform, {})
        backend = backend or self._defaults.get(platform)
        if backend not in kernels:
            raise NotImplementedError(
                f"{self.name}: no kernel for platform {platform!r}"
                + (f" and backend {backend!r}" if backend else "")
                + f" (registered: {sorted(kernels) or 'none'})"
            )
        kernel = kernels[backend](**kwargs)
        out = kernel(*ins)
        return list(out) if isinstance(out, (list, tuple)) else [out]
