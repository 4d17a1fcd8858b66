"""``SpikeRecord``: the spikes of a run as (index, time) pairs, in time order.

Why a record and not only counts: analyses (rasters, spike-time statistics) and comparisons with
Brian2's ``SpikeMonitor`` need the times. The kernel writes each spike as (element, step of the
run) into a buffer of a capacity the caller chooses, counting every spike atomically, so a spike
that does not fit is counted, never silently lost: ``dropped`` says how many there were. The
order in which parallel threads record spikes is arbitrary; :func:`from_kernel` sorts the record
by (time, index), so that the result is the same on every run and platform when nothing was
dropped. Network monitors record the same three buffers per group and reuse :func:`from_kernel`.

A run's spike train (``run(..., record_spike_train=True)``) is dense instead, the spikes of each
element in each window of steps; :func:`population_rate_trace` turns it into the population's
rate over time, in JAX, so that it differentiates with the train.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from . import arguments, clock

__all__ = ["SpikeRecord", "from_kernel", "population_rate_trace"]

_INT32_MAX = 2**31 - 1


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SpikeRecord:
    """The spikes of a run, sorted by time, then by index."""

    i: jax.Array
    """``(capacity,)`` int32: the index of the element of each spike; -1 past ``count``."""
    t: jax.Array
    """``(capacity,)``: the time of each spike in ms (float64 with x64, else float32); NaN past
    ``count``."""
    count: jax.Array
    """``()`` int32: spikes recorded (at most the capacity)."""
    dropped: jax.Array
    """``()`` int32: spikes that did not fit (0 when the capacity sufficed; saturates at
    2^31 - 1)."""


def from_kernel(index, step, total_words, *, t_end_words, steps: int, dt: float) -> SpikeRecord:
    """The record of one group from its kernel's buffers: ``index`` and ``step`` ``(capacity,)``
    in the order the threads wrote them, ``total_words`` the int64 count of every spike (int32
    words ``(2,)``), ``t_end_words`` the time at the end of the run (float64 words)."""
    capacity = index.shape[-1]
    lo = jax.lax.bitcast_convert_type(total_words[..., 0], jnp.uint32)
    hi = total_words[..., 1]
    huge = (hi != 0) | (lo > jnp.uint32(_INT32_MAX))
    total = jnp.where(huge, _INT32_MAX, lo.astype(jnp.int32))
    count = jnp.minimum(total, capacity).astype(jnp.int32)
    dropped = jnp.where(huge, _INT32_MAX, jnp.maximum(total - capacity, 0)).astype(jnp.int32)
    valid = jnp.arange(capacity) < count
    by_step = jnp.where(valid, step, _INT32_MAX)
    by_index = jnp.where(valid, index, _INT32_MAX)
    order = jnp.lexsort((by_index, by_step))
    valid = valid[order]
    t_end = clock.value(t_end_words)
    times = t_end - (steps - step[order]).astype(t_end.dtype) * jnp.asarray(dt, t_end.dtype)
    return SpikeRecord(
        i=jnp.where(valid, index[order], -1).astype(jnp.int32),
        t=jnp.where(valid, times, jnp.nan),
        count=count,
        dropped=dropped,
    )


def population_rate_trace(spike_train, *, dt, record_every: int = 1, steps: int | None = None):
    """The population's rate in Hz over time, from a run's spike train
    (``RunResult.spike_train``, ``(windows, N)``): the spikes of each window averaged over the
    neurons, per second of the window (``record_every`` steps of ``dt``, ms or a time quantity;
    with ``steps`` the run's steps, the last window is as long as the run left it). Plain JAX,
    so that with a surrogate it carries the train's gradients (what Brian2's
    ``PopulationRateMonitor`` gives with ``record_every=1``)."""
    dt = arguments.time_step(dt)
    record_every = arguments.count(record_every, "record_every")
    train = jnp.asarray(spike_train)
    if train.ndim != 2:
        raise ValueError(f"spike_train must have shape (windows, N), got {train.shape}")
    windows = train.shape[0]
    width = jnp.full((windows,), float(record_every))
    if steps is not None:
        steps = arguments.count(steps, "steps")
        if -(-steps // record_every) != windows:
            raise ValueError(
                f"steps={steps} with record_every={record_every} makes {-(-steps // record_every)} windows, "
                f"but spike_train has {windows} rows"
            )
        width = width.at[-1].set(float(steps - (windows - 1) * record_every))
    real = train.dtype if jnp.issubdtype(train.dtype, jnp.floating) else jnp.result_type(float)
    mean = jnp.mean(train.astype(real), axis=1)
    return mean * (1000.0 / (width.astype(real) * dt))
