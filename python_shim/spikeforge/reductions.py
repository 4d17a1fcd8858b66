"""Deterministic reductions as primitives: sum, mean, max, min and count of nonzero elements, over
all elements or per segment (a population of neurons), on the CPU and the GPU.

``x`` is read flat (C order). ``segments`` is a static sequence of segment lengths that add up to
``x.size`` (``offsets`` the same as boundaries ``0 = o_0 <= ... <= o_k = x.size``); the result has
one value per segment, or is a scalar when neither is given. Empty segments give 0 (sum, count),
NaN (mean), and the identity of max/min (-inf/+inf for floats, the int32 extremes, False/True for
bool).

The kernels are generated in Rust (``src/codegen/reduction.rs``): a shared-memory block sum per
tile of 8192 elements, then a second pass per segment; no atomics, so repeated calls give the
same bits. The per-tile partials are a second result of the call, allocated by XLA and dropped.
float32/float16/bfloat16 sums accumulate in float64 (so the result is the exact sum rounded once,
except under heavy cancellation), float64 sums in float64 with trees; max, min and count are exact;
int32 sums accumulate in int64 and wrap to an int32 result like any int32 sum.

Result dtypes follow ``jax.numpy`` (``jnp.sum``, ``jnp.mean``, ``jnp.max``, ``jnp.count_nonzero``
of the same input, so they depend on ``jax_enable_x64`` as jnp's do).

``jax.vmap``: the batch is folded into more segments of the same launch (one kernel call for the
whole batch). ``jax.jvp`` / ``jax.grad``: sum and mean are linear (JVP and transpose rules);
count has a zero derivative; max and min are not differentiable here.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.interpreters import ad

from .ffi_primitive import FfiCall, ffi_primitive, fold_batch
from .units import TIME, to_kernel_units

__all__ = [
    "reduce_sum",
    "reduce_mean",
    "reduce_max",
    "reduce_min",
    "count_nonzero",
    "population_rate",
    "reduce_p",
    "TILE",
]

TILE = 8192
"""Elements per tile of pass 1 (must match ``codegen::reduction::TILE`` in Rust, which checks)."""

_SUPPORTED = tuple(np.dtype(d) for d in (np.bool_, np.int32, jnp.float16, jnp.bfloat16, np.float32, np.float64))
_HALVES = (np.dtype(jnp.float16), np.dtype(jnp.bfloat16))

# -- segments ------------------------------------------------------------------------------------


def _static_ints(values, what: str) -> tuple:
    if isinstance(values, jax.core.Tracer):
        raise TypeError(f"{what} must be static (a tuple of ints), not a traced array")
    try:
        arr = np.asarray(values)
    except Exception as e:  # noqa: BLE001
        raise TypeError(f"{what} must be a sequence of ints, got {values!r}") from e
    if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
        raise TypeError(f"{what} must be a 1-D sequence of ints, got {values!r}")
    return tuple(operator.index(int(v)) for v in arr)


def _offsets(size: int, segments, offsets) -> tuple[tuple, bool]:
    """The segment boundaries, and whether the result is per segment (else a scalar)."""
    if segments is not None and offsets is not None:
        raise ValueError("give segments (lengths) or offsets (boundaries), not both")
    if segments is None and offsets is None:
        return (0, size), False
    if segments is not None:
        lengths = _static_ints(segments, "segments")
        if any(n < 0 for n in lengths):
            raise ValueError(f"segments: lengths must be >= 0, got {lengths}")
        total = sum(lengths)
        if total != size:
            raise ValueError(f"segments: the lengths add up to {total} but x has {size} elements")
        return tuple(int(v) for v in np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])), True
    bounds = _static_ints(offsets, "offsets")
    if len(bounds) < 1 or bounds[0] != 0 or bounds[-1] != size:
        raise ValueError(f"offsets must start at 0 and end at x.size = {size}, got {bounds}")
    if any(b < a for a, b in zip(bounds, bounds[1:])):
        raise ValueError(f"offsets must be non-decreasing, got {bounds}")
    return bounds, True


def _table(offsets: tuple):
    """The int64 [2, k+1] table the kernels read (element offsets, tile offsets), its tile count
    and the most tiles of one segment."""
    o = np.asarray(offsets, dtype=np.int64)
    tiles = -(-np.diff(o) // TILE)
    t = np.concatenate([[0], np.cumsum(tiles)]).astype(np.int64)
    return np.stack([o, t]), int(t[-1]), int(tiles.max(initial=0))


# -- the primitive -------------------------------------------------------------------------------


#: Bytes of pass 1's partial result per tile: room for the widest accumulator (int64, float64).
_PARTIAL_BYTES = 8


def _lowering(*, op, offsets) -> FfiCall:
    table, n_tiles, max_tiles = _table(offsets)
    # int64 words carried as pairs of int32 (little-endian), so that the table keeps its width
    # whether or not jax_enable_x64 is set. The partials (one accumulator per tile) are a result
    # that the primitive drops: XLA allocates them with its other buffers, so a call allocates
    # nothing and XLA may capture it into a CUDA graph.
    partials = jax.ShapeDtypeStruct((max(n_tiles, 1) * _PARTIAL_BYTES // 4,), np.int32)
    return FfiCall(
        attributes=dict(op=op, tile=TILE, n_tiles=n_tiles, max_tiles=max_tiles),
        operands=(jnp.asarray(table.view(np.int32)),),
        scratch=(partials,),
    )


def _more_segments(size, operands, params):
    """The batch becomes more segments of the same launch: (B, n) -> B * k segments."""
    offsets = params["offsets"]
    n = offsets[-1]
    o = np.asarray(offsets, dtype=np.int64)
    folded = (0,) + tuple(int(v) for v in (o[1:][None, :] + n * np.arange(size)[:, None]).reshape(-1))
    return dict(params, offsets=folded)


reduce_p = ffi_primitive("spikeforge_reduce", _lowering, batching=fold_batch(_more_segments))


def _lengths(offsets) -> np.ndarray:
    return np.diff(np.asarray(offsets, dtype=np.int64))


@reduce_p.def_jvp_rule
def _jvp_rule(primals, tangents, *, outs, op, offsets, **params):
    (x,), (dx,) = primals, tangents
    res = reduce_p.bind(x, outs=outs, op=op, offsets=offsets, **params)
    zeros = [ad.Zero(jax.core.ShapedArray(o.shape, o.dtype).to_tangent_aval()) for o in outs]
    if op == "count":
        return res, zeros
    if op not in ("sum", "mean"):
        raise NotImplementedError(f"spikeforge: reduce_{op} has no derivative rule (only sum and mean do)")
    if type(dx) is ad.Zero:
        return res, zeros
    tan = reduce_p.bind(dx, outs=outs, op=op, offsets=offsets, **params)
    return res, tan


@reduce_p.def_transpose_rule
def _transpose_rule(cts, x, *, outs, op, offsets, **params):
    (ct,) = cts
    aval = x.aval
    if type(ct) is ad.Zero:
        return [ad.Zero(aval)]
    lengths = _lengths(offsets)
    if op == "mean":
        ct = ct / jnp.asarray(np.maximum(lengths, 1), dtype=ct.dtype)
    elif op != "sum":
        raise NotImplementedError(f"spikeforge: reduce_{op} is not linear")
    return [jnp.repeat(ct, lengths, total_repeat_length=int(offsets[-1])).astype(aval.dtype)]


# -- the user functions --------------------------------------------------------------------------


def _check_dtype(x, name: str):
    dtype = np.dtype(x.dtype)
    if dtype not in _SUPPORTED:
        supported = ", ".join(str(d) for d in _SUPPORTED)
        raise TypeError(f"{name}: x has dtype {dtype}, which is not supported (use one of {supported})")
    return dtype


def _result_dtype(op: str, dtype: np.dtype) -> tuple[np.dtype, np.dtype]:
    """(what the kernel writes, what the user gets): jnp's result dtype; halves via float32."""
    spec = jax.ShapeDtypeStruct((1,), dtype)
    if op == "sum":
        want = jax.eval_shape(jnp.sum, spec).dtype
    elif op == "mean":
        want = jax.eval_shape(jnp.mean, spec).dtype
    elif op == "count":
        want = jax.eval_shape(jnp.count_nonzero, spec).dtype
    else:
        want = dtype
    want = np.dtype(want)
    kernel = np.dtype(np.float32) if want in _HALVES else want
    return kernel, want


def _reduce(op: str, name: str, x, segments, offsets):
    x = jnp.asarray(x)
    dtype = _check_dtype(x, name)
    bounds, per_segment = _offsets(int(x.size), segments, offsets)
    kernel_dtype, want = _result_dtype(op, dtype)
    out = jax.ShapeDtypeStruct((len(bounds) - 1,), kernel_dtype)
    (res,) = reduce_p(x.reshape((-1,)), outs=(out,), op=op, offsets=bounds)
    if want != kernel_dtype:
        res = res.astype(want)
    return res if per_segment else res[0]


def reduce_sum(x, segments: Sequence[int] | None = None, *, offsets: Sequence[int] | None = None):
    """Sum of ``x`` (a scalar), or per segment (``(len(segments),)``)."""
    return _reduce("sum", "reduce_sum", x, segments, offsets)


def reduce_mean(x, segments: Sequence[int] | None = None, *, offsets: Sequence[int] | None = None):
    """Mean of ``x``, or per segment; NaN for an empty segment."""
    return _reduce("mean", "reduce_mean", x, segments, offsets)


def reduce_max(x, segments: Sequence[int] | None = None, *, offsets: Sequence[int] | None = None):
    """Maximum of ``x``, or per segment (NaN propagates; an empty segment gives the identity)."""
    return _reduce("max", "reduce_max", x, segments, offsets)


def reduce_min(x, segments: Sequence[int] | None = None, *, offsets: Sequence[int] | None = None):
    """Minimum of ``x``, or per segment (NaN propagates; an empty segment gives the identity)."""
    return _reduce("min", "reduce_min", x, segments, offsets)


def count_nonzero(x, segments: Sequence[int] | None = None, *, offsets: Sequence[int] | None = None):
    """Number of nonzero (true) elements of ``x``, or per segment (NaN counts as nonzero)."""
    return _reduce("count", "count_nonzero", x, segments, offsets)


def population_rate(
    spike_count, duration_ms, segments: Sequence[int] | None = None, *, offsets: Sequence[int] | None = None
):
    """Mean firing rate in Hz of each population (or of all neurons): the spikes of a run
    (``RunResult.spike_count``) averaged over the population's neurons, per second of
    ``duration_ms`` (ms, or a time quantity). An empty population gives NaN."""
    duration_ms = to_kernel_units(duration_ms, "duration_ms", expect=TIME)
    mean = _reduce("mean", "population_rate", spike_count, segments, offsets)
    return mean * (1000.0 / jnp.asarray(duration_ms, dtype=mean.dtype))
