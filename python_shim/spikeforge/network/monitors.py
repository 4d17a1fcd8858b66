"""Monitors (recorded on the device, inside the run) and what they give back.

``SpikeMonitor`` keeps the (index, step) of every spike of its population in a buffer of a size
fixed before the run (``capacity``); spikes past it are counted in ``dropped`` and reported with
a warning, never lost silently. ``StateMonitor`` records chosen variables of chosen neurons at the
start of every ``every``-th step (Brian2's ``start`` slot). ``PopulationRateMonitor`` gives the
fraction of the population that spiked in each step, per ms (1/ms; x1000 for Hz).

The records are pytrees of arrays (they come out of ``jax.jit``); under ``jit`` sizes are static,
so a spike record is padded: ``count`` entries are valid, ``i`` is -1 and ``t`` NaN after them
(NaN plots as nothing).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from .. import arguments
from .base import NetworkObject, describe
from .groups import SpikeSource

__all__ = [
    "SpikeMonitor",
    "StateMonitor",
    "PopulationRateMonitor",
    "SpikeRecord",
    "StateRecord",
    "RateRecord",
    "DEFAULT_MAX_RATE",
]

DEFAULT_MAX_RATE = 0.2
"""The rate (1/ms, i.e. 200 Hz) per neuron that ``capacity=None`` makes room for."""


class _Monitor(NetworkObject):
    def __init__(self, source, *, name: str | None = None):
        super().__init__(name)
        if not isinstance(source, SpikeSource):
            raise self.error(f"monitors record a group or a slice of one, got {type(source).__name__}", cls=TypeError)
        self.source = source


class SpikeMonitor(_Monitor):
    """Records the spikes of ``source`` (a group or a slice of one): indices within ``source``
    and times. ``capacity``: the most spikes one run keeps; None makes room for every neuron
    firing at 200 Hz for the whole run (``n * ceil(duration * 0.2/ms)``, at least 1024). Past it,
    spikes are counted in ``dropped`` and a warning says so."""

    kind = "SpikeMonitor"

    def __init__(self, source, capacity=None, *, name: str | None = None):
        super().__init__(source, name=name)
        self.capacity = None if capacity is None else arguments.count(capacity, f"{describe(self)}: capacity")
        if self.capacity is not None and self.capacity >= 2**31:
            raise self.error("capacity must be less than 2**31 (int32 indices)", field="capacity")

    def capacity_for(self, steps: int, dt: float) -> int:
        if self.capacity is not None:
            return self.capacity
        per_neuron = math.ceil(steps * dt * DEFAULT_MAX_RATE)
        return int(min(max(1024, self.source.n * per_neuron), 2**31 - 1))


class StateMonitor(_Monitor):
    """Records ``variables`` (a name or a list) of the neurons ``record`` of ``source`` at the
    start of every ``every``-th step. ``record``: True (every neuron), an index, or a list of
    indices within ``source``; False records nothing."""

    kind = "StateMonitor"

    def __init__(self, source, variables, record=True, every=1, *, name: str | None = None):
        super().__init__(source, name=name)
        self.variables = arguments.names(variables, f"{describe(self)}: variables")
        if not self.variables:
            raise self.error("give at least one variable to record", field="variables")
        known = source.variables
        for v in self.variables:
            if v not in known:
                raise self.error(
                    f"{describe(source) if source.root is source else repr(source.name)} has no variable {v!r} "
                    f"(it has {', '.join(known) or 'none'})",
                    field="variables",
                )
        if record is True:
            indices = np.arange(source.n)
        elif record is False:
            indices = np.zeros(0, dtype=np.int64)
        else:
            indices = np.asarray(record)
            if indices.dtype == np.bool_ or (indices.size and indices.dtype.kind not in "iu"):
                raise self.error(f"record must be True, False or integer indices, got {record!r}", field="record")
            indices = indices.reshape(-1).astype(np.int64)
            if indices.size and (indices.min() < 0 or indices.max() >= source.n):
                bad = int(indices[(indices < 0) | (indices >= source.n)][0])
                raise self.error(
                    f"record index {bad} is out of range for {source.n} neurons", field="record", cls=IndexError
                )
        if np.unique(indices).size != indices.size:
            raise self.error("record lists a neuron more than once: give each index once", field="record")
        self.record = indices.astype(np.int32)
        self.every = arguments.count(every, f"{describe(self)}: every")


class PopulationRateMonitor(_Monitor):
    """The population rate of ``source``: spikes in each step / (n * dt), in 1/ms."""

    kind = "PopulationRateMonitor"


# -- records ---------------------------------------------------------------------------------------


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SpikeRecord:
    """The spikes a SpikeMonitor kept in one run, in the order they were emitted (by step, then
    by index within the step on the CPU; within one step the order of indices may differ on the
    GPU)."""

    i: jax.Array
    """``(capacity,)`` int32: neuron index within the monitored population; -1 past ``count``."""
    t: jax.Array
    """``(capacity,)``: spike time in ms; NaN past ``count``."""
    count: jax.Array
    """``()`` int32: how many entries are valid."""
    dropped: jax.Array
    """``()`` int32: spikes not kept because the buffer was full (0 when all fit)."""

    def numpy(self) -> tuple[np.ndarray, np.ndarray]:
        """``(i, t)`` of the valid entries, as numpy arrays."""
        c = int(self.count)
        return np.asarray(self.i)[:c], np.asarray(self.t)[:c]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class StateRecord:
    """The traces a StateMonitor recorded in one run: ``record[name]`` (or ``record.name``) is
    ``(n_times, n_recorded)``; ``t`` the times (ms) of the rows, ``indices`` the neurons."""

    values: dict
    t: jax.Array
    indices: jax.Array

    def __getattr__(self, name):
        values = self.__dict__.get("values", {})
        if name in values:
            return values[name]
        raise AttributeError(f"the StateMonitor recorded {tuple(values)}, not {name!r}")

    def __getitem__(self, name):
        return self.values[name]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class RateRecord:
    """A PopulationRateMonitor's rate: ``rate`` ``(steps,)`` in 1/ms (x1000 for Hz), ``t`` in ms."""

    rate: jax.Array
    t: jax.Array

    def smooth(self, width_ms: float, dt: float) -> jax.Array:
        """The rate averaged over a flat window of ``width_ms`` (Brian2's ``smooth_rate``)."""
        k = max(1, round(width_ms / dt))
        return jnp.convolve(self.rate, jnp.ones(k, self.rate.dtype) / k, mode="same")
