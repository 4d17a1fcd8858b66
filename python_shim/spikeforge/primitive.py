"""``XLACustomKernel``: a JAX primitive with kernels registered per backend and platform.

The registration style follows brainevent: ``def_kernel(backend, platform, generator)`` where
``generator(**kwargs)`` returns a function of the input arrays, and calls are made as
``prim(*ins, outs=..., **kwargs)``. The primitive lowers through ``mlir.lower_fun`` to whatever
the generator returns (for spikeforge, a ``jax.ffi.ffi_call`` to the Rust handlers), so it works
under ``jax.jit``; batching, JVP and transpose rules are declared per primitive. An eager call runs
the primitive as a one-primitive ``jax.jit`` function, compiled once per set of parameters (the
public counterpart of what jax does for its own primitives). Only public jax modules are used.

spikeforge's own primitives are made by :func:`spikeforge.ffi_primitive.ffi_primitive`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import jax
from jax.interpreters import ad, batching, mlir

try:  # jax >= 0.4.36
    from jax.extend.core import Primitive
except ImportError:  # pragma: no cover - older jax
    from jax.core import Primitive

__all__ = ["XLACustomKernel", "PLATFORMS"]

PLATFORMS = ("cpu", "cuda")
# brainevent (and jax) say "gpu" where XLA's platform is "cuda".
_ALIASES = {"gpu": "cuda"}


def _platform(platform: str) -> str:
    if not isinstance(platform, str):
        raise TypeError(f"platform must be a string, got {type(platform).__name__}")
    p = _ALIASES.get(platform.lower(), platform.lower())
    if p not in PLATFORMS:
        raise ValueError(f"unknown platform {platform!r}: use one of {PLATFORMS} (or 'gpu' for 'cuda')")
    return p


@functools.lru_cache(maxsize=1024)
def _jitted(primitive: Primitive, params: tuple) -> Callable:
    kwargs = dict(params)
    return jax.jit(lambda *ins: primitive.bind(*ins, **kwargs))


def _apply(primitive: Primitive, *ins, **params):
    """The eager implementation: ``primitive`` bound inside ``jax.jit`` (where it lowers), one
    compiled function per parameter set (parameters are hashable: they key XLA's cache too)."""
    key = tuple(sorted(params.items()))
    try:
        fn = _jitted(primitive, key)
    except TypeError:  # an unhashable parameter (bound directly, not through __call__)
        fn = jax.jit(lambda *xs: primitive.bind(*xs, **params))
    return fn(*ins)


def _as_struct(o) -> jax.ShapeDtypeStruct:
    if isinstance(o, jax.ShapeDtypeStruct):
        return o
    if hasattr(o, "shape") and hasattr(o, "dtype"):
        return jax.ShapeDtypeStruct(tuple(o.shape), o.dtype)
    raise TypeError(f"outs: expected jax.ShapeDtypeStruct objects (or arrays), got {o!r}")


class XLACustomKernel:
    """A named primitive whose kernels are chosen per platform (``cpu``, ``cuda``; ``gpu`` is
    an alias of ``cuda``) and backend.

    The first kernel registered for a platform is its default; ``def_kernel(...,
    asdefault=True)`` or :meth:`set_default` change it, and ``backend=`` on a call picks one for
    that call. A platform without a kernel fails with an error naming the platforms that have one.
    """

    def __init__(self, name: str):
        self.name = name
        self.primitive = Primitive(name)
        self.primitive.multiple_results = True
        self.primitive.def_impl(functools.partial(_apply, self.primitive))
        self.primitive.def_abstract_eval(self._abstract_eval)
        self._kernels: dict[str, dict[str, Callable]] = {}
        self._defaults: dict[str, str] = {}
        for platform in PLATFORMS:
            mlir.register_lowering(
                self.primitive,
                mlir.lower_fun(functools.partial(self._run_kernel, platform), multiple_results=True),
                platform=platform,
            )

    def __repr__(self):
        return f"XLACustomKernel({self.name!r}, kernels={ {p: sorted(k) for p, k in self._kernels.items()} })"

    # -- registration -------------------------------------------------------------------------

    def def_kernel(
        self,
        backend: str,
        platform: str,
        generator: Callable,
        asdefault: bool = False,
        *,
        default: bool | None = None,
    ):
        """Registers ``generator`` as the kernel of ``backend`` on ``platform``.

        ``generator(**kwargs)`` receives the call's keyword arguments (``outs``, a tuple of
        ``jax.ShapeDtypeStruct``, and every other keyword given to the call, e.g. ``alpha``) and
        returns a function of the input arrays that returns the outputs. ``asdefault=True``
        (brainevent's name; ``default=`` is accepted too) makes it the platform's default.
        """
        if not isinstance(backend, str) or not backend:
            raise TypeError(f"backend must be a non-empty string, got {backend!r}")
        if not callable(generator):
            raise TypeError(f"the kernel generator must be callable, got {type(generator).__name__}")
        platform = _platform(platform)
        self._kernels.setdefault(platform, {})[backend] = generator
        if asdefault or default or platform not in self._defaults:
            self._defaults[platform] = backend
        return generator

    def def_cpu_kernel(self, generator: Callable, backend: str = "spikeforge", **kw):
        return self.def_kernel(backend, "cpu", generator, **kw)

    def def_gpu_kernel(self, generator: Callable, backend: str = "spikeforge", **kw):
        return self.def_kernel(backend, "cuda", generator, **kw)

    def set_default(self, platform: str, backend: str):
        platform = _platform(platform)
        if backend not in self._kernels.get(platform, {}):
            raise ValueError(
                f"{self.name}: no {backend!r} kernel registered for {platform} "
                f"(registered: {self.available_backends(platform) or 'none'})"
            )
        if self._defaults.get(platform) != backend:
            self._defaults[platform] = backend
            # Lowerings are cached per call site: recompile with the new default.
            jax.clear_caches()

    def get_default(self, platform: str) -> str | None:
        return self._defaults.get(_platform(platform))

    @property
    def defaults(self) -> dict[str, str]:
        return dict(self._defaults)

    def available_backends(self, platform: str) -> list[str]:
        return sorted(self._kernels.get(_platform(platform), {}))

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
        """Binds the primitive. ``outs``: one ``jax.ShapeDtypeStruct`` (returns one array) or a
        sequence of them (returns a list). Other keywords reach the kernel generator; they are
        compile-time constants, so they must be hashable Python values, not traced arrays."""
        for k, v in kwargs.items():
            if isinstance(v, jax.core.Tracer):
                raise TypeError(
                    f"{self.name}: keyword argument {k!r} is a traced value; kernel parameters are "
                    f"compile-time constants: make it static (jax.jit(..., static_argnames={k!r})) "
                    "or pass it as an input array"
                )
            try:
                hash(v)
            except TypeError:
                raise TypeError(
                    f"{self.name}: keyword argument {k!r}={v!r} must be hashable (it is part of "
                    "the compilation cache key): use a tuple instead of a list, for example"
                ) from None
        single = not isinstance(outs, Sequence)
        outs_t = (_as_struct(outs),) if single else tuple(_as_struct(o) for o in outs)
        results = self.primitive.bind(*ins, outs=outs_t, backend=backend, **kwargs)
        return results[0] if single else results

    def bind(self, *ins, **params):
        return self.primitive.bind(*ins, **params)

    # -- primitive plumbing ---------------------------------------------------------------------

    def _abstract_eval(self, *ins, outs, **kwargs):
        return [jax.core.ShapedArray(o.shape, o.dtype) for o in outs]

    def _run_kernel(self, platform, *ins, backend=None, **kwargs):
        kernels = self._kernels.get(platform, {})
        if not kernels:
            others = sorted(p for p, k in self._kernels.items() if k)
            raise NotImplementedError(
                f"{self.name}: no kernel registered for platform {platform!r}"
                + (f"; kernels exist for {others}" if others else "")
                + f" (register one with def_kernel(backend, {platform!r}, generator))"
            )
        backend = backend or self._defaults.get(platform)
        if backend not in kernels:
            raise NotImplementedError(
                f"{self.name}: no {backend!r} kernel for platform {platform!r} (registered: {sorted(kernels)})"
            )
        try:
            kernel = kernels[backend](**kwargs)
            out = kernel(*ins)
        except Exception as exc:
            exc.add_note(
                f"while building the {backend!r} kernel of primitive {self.name!r} for {platform!r} "
                f"(backends registered there: {sorted(kernels)})"
            )
            raise
        return list(out) if isinstance(out, (list, tuple)) else [out]
