"""spikeforge's primitives: each one binds an XLA FFI target of the library, on every platform,
with the batching rule that runs a ``jax.vmap`` as one bigger launch.

Why one helper: every primitive of the library (a neuron group's run, custom kernels, reductions,
and the groups of a network next) is the same thing, a JAX primitive lowered to
``jax.ffi.ffi_call(target, ...)``, whose static parameters become FFI attributes (integers as
int64, which is what the handlers declare, so an ``np.uint64`` never reaches XLA as another
type). They differ only in which parameters become which attributes and extra operands (a
:class:`FfiCall` made by the primitive's ``lowering``) and in how a batch is folded into the
launch (:func:`fold_batch` and its ``refold`` hook).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .primitive import PLATFORMS, XLACustomKernel

__all__ = ["BACKEND", "FfiCall", "ffi_primitive", "fold_batch", "batch_axis_first", "folded_shape"]

BACKEND = "spikeforge"
"""The backend name spikeforge's kernels are registered under."""

_INT64 = (-(2**63), 2**63 - 1)


@dataclasses.dataclass(frozen=True)
class FfiCall:
    """What one call of an FFI target receives besides the primitive's operands: ``attributes``
    (name -> str, int or float), extra ``operands`` appended after the primitive's own, and
    ``scratch``: buffers (``jax.ShapeDtypeStruct``) the target writes as extra results after the
    primitive's own, which the primitive drops (scratch memory XLA allocates with its other
    buffers, so that no call allocates: what lets XLA capture the call into a CUDA graph).
    ``input_output_aliases``: operand index -> result index of buffers the target updates in
    place (``jax.ffi.ffi_call``'s argument): XLA gives the result the operand's buffer, so a loop
    that carries it needs no copy."""

    attributes: Mapping[str, object]
    operands: Sequence = ()
    scratch: Sequence = ()
    input_output_aliases: Mapping[int, int] | None = None


def _attribute(target: str, name: str, value):
    """A parameter as the FFI attribute type the handlers declare: int64, f64 or a string."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{target}: attribute {name!r} is a bool; the handlers take int64, f64 or strings")
    if isinstance(value, (int, np.integer)):
        v = int(value)
        if not _INT64[0] <= v <= _INT64[1]:
            raise OverflowError(f"{target}: attribute {name!r}={v} does not fit in int64")
        return np.int64(v)
    if isinstance(value, (float, np.floating)):
        return np.float64(value)
    if isinstance(value, str):
        return value
    raise TypeError(f"{target}: attribute {name!r} has type {type(value).__name__}; expected int, float or str")


def ffi_primitive(
    target: str,
    lowering: Callable[..., FfiCall],
    *,
    batching: Callable | None = None,
) -> XLACustomKernel:
    """The primitive named ``target`` that lowers to the library's FFI target of that name.

    ``lowering(**params)`` gets the primitive's parameters (every keyword of the bind but
    ``outs``) and returns the :class:`FfiCall`. ``batching(primitive, args, dims, **params)`` is
    its vmap rule; the default, :func:`fold_batch`, folds the batch into the launch.
    """
    primitive = XLACustomKernel(target)

    def generator(*, outs, **params):
        call = lowering(**params)
        attributes = {k: _attribute(target, k, v) for k, v in call.attributes.items()}
        ffi = jax.ffi.ffi_call(
            target,
            tuple(outs) + tuple(call.scratch),
            input_output_aliases=dict(call.input_output_aliases) if call.input_output_aliases else None,
        )

        def kernel(*operands):
            results = ffi(*operands, *call.operands, **attributes)
            return results[: len(outs)] if call.scratch else results

        return kernel

    for platform in PLATFORMS:
        primitive.def_kernel(BACKEND, platform, generator)
    primitive.def_batching_rule(functools.partial(batching or fold_batch(), primitive))
    return primitive


# -- batching --------------------------------------------------------------------------------


def batch_axis_first(args, dims) -> tuple[int, list]:
    """The batch size and every operand with the batch on axis 0 (broadcast where unbatched)."""
    size = next(a.shape[d] for a, d in zip(args, dims) if d is not None)
    moved = [jnp.broadcast_to(a, (size,) + a.shape) if d is None else jnp.moveaxis(a, d, 0) for a, d in zip(args, dims)]
    return size, moved


def folded_shape(shape: Sequence[int], size: int) -> tuple[int, ...]:
    """``shape`` with a batch of ``size`` merged into its leading axis (a scalar gets one)."""
    shape = tuple(shape)
    return (size * shape[0],) + shape[1:] if shape else (size,)


def fold_batch(refold: Callable | None = None) -> Callable:
    """A batching rule that runs the vmapped call as one launch: the batch axis is merged into the
    leading axis of every operand and every result (``(B, n) -> (B*n,)``, ``(B, 1, steps, n) ->
    (B, steps, n)``), which is how every spikeforge kernel reads a longer population, more
    segments or a longer element-wise launch.

    ``refold(size, operands, params) -> params`` adjusts the parameters to the folded operands
    (``params["outs"]`` already has the folded result shapes).
    """

    def rule(primitive, args, dims, *, outs, **params):
        size, moved = batch_axis_first(args, dims)
        folded = [a.reshape((-1,) + a.shape[2:]) if a.ndim >= 2 else a for a in moved]
        new = dict(params, outs=tuple(jax.ShapeDtypeStruct(folded_shape(o.shape, size), o.dtype) for o in outs))
        if refold is not None:
            new = refold(size, folded, new)
        results = primitive.bind(*folded, **new)
        return [r.reshape((size,) + tuple(o.shape)) for r, o in zip(results, outs)], [0] * len(results)

    return rule
