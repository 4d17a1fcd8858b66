"""The populations of a network and their slices: ``NeuronGroup`` (a model and a size),
``PoissonGroup`` (``rand() < rates*dt`` each step), ``SpikeGeneratorGroup`` (given spike times)
and ``Subgroup`` (``P[:3200]``: an index range of its group, not a copy).

Why one base (:class:`SpikeSource`): synapses take their spikes from any of them, and monitors
record any of them, through the same three facts: the group that owns the state (``root``) and
the range ``[start, stop)`` within it. A group is its own root with the whole range.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping

import numpy as np

from .. import arguments
from ..errors import ModelError
from ..group import Group
from ..neuron import NeuronModel
from ..units import TIME, to_kernel_units
from .base import NetworkObject, describe

__all__ = ["SpikeSource", "NeuronGroup", "Subgroup", "PoissonGroup", "SpikeGeneratorGroup", "RATE"]

# 1/time: rates are in 1/ms in the kernels' unit system (15*Hz -> 0.015).
RATE = tuple(-x for x in TIME)

# The keywords of NeuronModel that NeuronGroup passes on when it is given equations.
_MODEL_KEYWORDS = ("threshold", "reset", "refractory", "constants", "method", "fast_math", "substeps", "surrogate")


class SpikeSource(NetworkObject):
    """A population whose spikes synapses carry and monitors record, or a slice of one.

    ``root``: the group that holds the state; ``start``, ``stop``: this population's range in it.
    ``len(x)`` and ``x.n`` are its size. Indexing with a slice of step 1 (``P[:3200]``,
    ``P[3200:]``, ``P[10:20]``) or an integer (``P[5]``) gives a :class:`Subgroup`."""

    root: SpikeSource
    start: int
    stop: int

    @property
    def n(self) -> int:
        return self.stop - self.start

    @property
    def N(self) -> int:  # Brian2's name
        return self.n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, key) -> Subgroup:
        if isinstance(key, slice):
            if key.step not in (None, 1):
                raise self.error(f"a subgroup is a contiguous range: slice step {key.step!r} is not supported")
            try:
                lo, hi, _ = key.indices(self.n)
            except TypeError:
                raise self.error(f"subgroup bounds must be integers, got {key!r}", cls=TypeError) from None
            if hi <= lo:
                raise self.error(f"the slice {_slice_text(key)} of {self.n} neurons is empty", field="subgroup")
        else:
            try:
                k = operator.index(key)
            except TypeError:
                raise self.error(
                    f"index a group with a slice (P[:3200]) or an integer, got {type(key).__name__}", cls=TypeError
                ) from None
            if not -self.n <= k < self.n:
                raise self.error(f"index {k} is out of range for {self.n} neurons", cls=IndexError)
            lo = k % self.n
            hi = lo + 1
        return Subgroup(self.root, self.start + lo, self.start + hi)

    @property
    def variables(self) -> tuple:
        """The names a monitor may record and a synapse may address on this population."""
        return self.root.variables

    def contains(self, other: SpikeSource) -> bool:
        return other.root is self.root and self.start <= other.start and other.stop <= self.stop


def _slice_text(key: slice) -> str:
    a = "" if key.start is None else key.start
    b = "" if key.stop is None else key.stop
    return f"[{a}:{b}]"


class Subgroup(SpikeSource):
    """The neurons ``[start, stop)`` of ``root``: a view, which synapses, inputs and monitors may
    use wherever they take a group. It is named ``root[start:stop]`` and has no state of its
    own (initial values are given for the whole group)."""

    def __init__(self, root: SpikeSource, start: int, stop: int):
        self.root = root
        self.start = int(start)
        self.stop = int(stop)
        self.name = f"{root.name}[{self.start}:{self.stop}]"
        self.kind = root.kind

    def error(self, message: str, *, field: str | None = None, cls=ModelError) -> Exception:
        text = f"{self.kind} {self.name!r}: {message}"
        return cls(text, field=field) if issubclass(cls, ModelError) else cls(text)

    def __repr__(self):
        return f"<subgroup {self.name!r} of {describe(self.root)}>"


class _Root(SpikeSource):
    """A group that owns its state: its own root, the whole range."""

    def __init__(self, n, name):
        super().__init__(name)
        self.root = self
        self.start = 0
        self.stop = arguments.count(n, f"{self.kind} {self.name!r}: n")


class NeuronGroup(_Root):
    """``n`` neurons of one model, Brian2's ``NeuronGroup``.

    ``model``: a :class:`~spikeforge.NeuronModel` (equations or a model class), or the equations
    themselves (a string or a ``brian2.Equations``) with NeuronModel's keywords (``threshold``,
    ``reset``, ``refractory``, ``constants``, ``method``, ``fast_math``, ``substeps``)::

        P = sf.NeuronGroup(4000, eqs, threshold="v > Vt", reset="v = Vr", refractory=5.0,
                           constants=dict(Vt=-50.0, Vr=-60.0, ...), method="exact", name="P")
        Pe, Pi = P[:3200], P[3200:]
    """

    kind = "NeuronGroup"

    def __init__(self, n, model, *, name: str | None = None, **model_keywords):
        super().__init__(n, name)
        unknown = sorted(set(model_keywords) - set(_MODEL_KEYWORDS))
        if unknown:
            raise self.error(
                f"unknown keyword(s) {', '.join(unknown)}; a NeuronGroup takes n, the model (or equations), "
                f"name= and NeuronModel's keywords {_MODEL_KEYWORDS}",
                cls=TypeError,
            )
        constants = model_keywords.pop("constants", None)
        self.timed_arrays = tables_in(constants, self)
        if isinstance(model, Group):
            if model_keywords or constants is not None:
                given = sorted(model_keywords) + (["constants"] if constants is not None else [])
                raise self.error(
                    f"the model is already a NeuronModel: give {', '.join(given)} to the model, not to the group",
                    cls=TypeError,
                )
            self.model = model
        else:
            numbers = {k: v for k, v in (constants or {}).items() if k not in self.timed_arrays}
            try:
                if self.timed_arrays:
                    from .table_model import TableModel

                    self.model = TableModel(
                        model, tables=self.timed_arrays, owner=self.name, constants=numbers, **model_keywords
                    )
                else:
                    self.model = NeuronModel(
                        model, constants=numbers if constants is not None else None, **model_keywords
                    )
            except ModelError as err:
                err.add_note(f"in the model of {describe(self)}")
                raise
        self.n_neurons = self.stop

    @property
    def variables(self) -> tuple:
        m = self.model
        return tuple(m.state_variables) + tuple(m.parameters) + tuple(m.subexpressions)

    def __repr__(self):
        return f"<NeuronGroup {self.name!r}: {self.n} neurons, states {self.model.state_variables}>"


def tables_in(constants, owner: NetworkObject) -> dict:
    """The TimedArrays among ``constants`` (Brian2's namespace: ``constants=dict(stim=ta)`` makes
    ``stim(t, i)`` callable), by the name the expressions call them. A TimedArray keeps its own
    name; one left to its automatic name takes the key it is given under."""
    from .inputs import TimedArray

    if constants is None:
        return {}
    if not isinstance(constants, Mapping):
        raise owner.error(
            f"constants must be a mapping name -> value, got {type(constants).__name__}", field="constants"
        )
    tables = {}
    for key, value in constants.items():
        if isinstance(value, TimedArray):
            value.adopt_name(key)
            if value.name != key:
                raise owner.error(
                    f"constants[{key!r}] is TimedArray {value.name!r}: a TimedArray is called by its name, give it "
                    f"under that name ({value.name}=...) or name it {key!r}",
                    field="constants",
                )
            tables[key] = value
    return tables


def rate_value(value, what: str, owner: NetworkObject):
    """A rate: a number (1/ms: the kernels' unit system) or a frequency quantity (15*Hz), one
    value or one per neuron; or a string (an expression, compiled by the library)."""
    if isinstance(value, str):
        return value
    value = to_kernel_units(value, what, expect=RATE)
    array = np.asarray(value, dtype=np.float64) if not hasattr(value, "aval") else None
    if array is None:
        raise owner.error(f"{what} is a traced value: it is part of the network's definition", field=what)
    if array.ndim > 1 or not np.isfinite(array).all() or (array < 0).any():
        raise owner.error(
            f"{what} must be a finite rate >= 0 (1/ms, or a quantity such as 15*Hz), one value or one per neuron",
            field=what,
        )
    return float(array) if array.ndim == 0 else array


class PoissonGroup(_Root):
    """``n`` independent Poisson neurons, Brian2's ``PoissonGroup``: neuron ``i`` spikes in a step
    when ``rand() < rates*dt``. ``rates``: in 1/ms (the kernels' unit system: 15 Hz is 0.015) or
    a frequency quantity (``15*Hz``); one value, one per neuron, or a string expression of ``t``
    and ``i`` (a TimedArray call, for example; ``constants`` names the numbers and TimedArrays it
    uses). Its random numbers come from the network's counter-based generator (identical on CPU
    and GPU)."""

    kind = "PoissonGroup"

    def __init__(self, n, rates, *, constants=None, name: str | None = None):
        super().__init__(n, name)
        self.timed_arrays = tables_in(constants, self)
        self.constants = arguments.constants({k: v for k, v in (constants or {}).items() if k not in self.timed_arrays})
        self.rates = rate_value(rates, "rates", self)
        if isinstance(self.rates, np.ndarray) and self.rates.shape != (self.n,):
            raise self.error(
                f"rates has shape {self.rates.shape}: give one rate or one per neuron ({self.n},)", field="rates"
            )

    def check_dt(self, dt: float):
        """``rates*dt`` is a probability: a number past 1 is almost surely Hz given as 1/ms."""
        if isinstance(self.rates, str):
            return
        top = float(np.max(self.rates))
        if top * dt > 1:
            raise self.error(
                f"rates*dt = {top * dt:g} is more than 1: rates are in 1/ms (the kernels' unit system), so "
                f"{top:g} is {top * 1000:g} Hz; for {top:g} Hz write {top / 1000:g} or a quantity (15*Hz)",
                field="rates",
            )

    @property
    def variables(self) -> tuple:
        return ()


class SpikeGeneratorGroup(_Root):
    """``n`` neurons that spike at given times, Brian2's ``SpikeGeneratorGroup``.

    ``indices`` and ``times`` (ms, or time quantities) list the spikes; a time falls in step
    ``int((t + 1e-3 dt) / dt)`` as in Brian2. ``period`` (optional, > 0): the pattern repeats
    with that period, which must be a whole number of steps longer than every spike time. Two
    spikes of one neuron in one step are an error (Brian2's)."""

    kind = "SpikeGeneratorGroup"

    def __init__(self, n, indices, times, period=None, *, sorted: bool = False, name: str | None = None):
        super().__init__(n, name)
        idx = np.asarray(indices)
        if idx.ndim != 1 or (idx.size and idx.dtype.kind not in "iu"):
            raise self.error(
                f"indices must be a 1-d array of integers, got {idx.dtype} of shape {idx.shape}", field="indices"
            )
        t = np.asarray(to_kernel_units(times, f"{describe(self)}: times", expect=TIME), dtype=np.float64)
        if t.ndim != 1 or t.shape != idx.shape:
            raise self.error(
                f"indices ({idx.size}) and times ({t.size if t.ndim == 1 else t.shape}) must have the same length",
                field="times",
            )
        if idx.size and (idx.min() < 0 or idx.max() >= self.n):
            bad = int(idx[(idx < 0) | (idx >= self.n)][0])
            raise self.error(f"index {bad} is out of range: indices must lie in [0, {self.n})", field="indices")
        if not np.isfinite(t).all() or (t < 0).any():
            raise self.error("spike times must be finite and >= 0", field="times")
        if period is None or (
            not isinstance(period, str) and np.all(np.asarray(to_kernel_units(period, "period")) == 0)
        ):
            self.period = None
        else:
            self.period = arguments.duration(period, f"{describe(self)}: period", allow_zero=False)
            if t.size and t.max() >= self.period:
                raise self.error(
                    f"period {self.period} ms must be longer than every spike time (the last is {t.max()} ms)",
                    field="period",
                )
        order = np.lexsort((idx, t)) if not sorted else np.arange(idx.size)
        self.indices = idx[order].astype(np.int32)
        self.times = t[order]

    def spike_steps(self, dt: float) -> tuple[np.ndarray, np.ndarray, int]:
        """(steps, indices, period in steps or 0) for a network of step ``dt`` (ms), checked as
        Brian2 checks them."""
        steps = np.floor((self.times + 1e-3 * dt) / dt).astype(np.int64)
        order = np.lexsort((self.indices, steps))
        steps, idx = steps[order], self.indices[order]
        same = (np.diff(steps) == 0) & (np.diff(idx) == 0)
        if same.any():
            k = int(np.nonzero(same)[0][0])
            raise self.error(
                f"neuron {int(idx[k])} spikes more than once in step {int(steps[k])} (dt = {dt} ms)", field="times"
            )
        period_steps = 0
        if self.period is not None:
            period_steps = round(self.period / dt)
            if period_steps < 1 or abs(period_steps * dt - self.period) > self.period * np.finfo(np.float64).eps * 4:
                raise self.error(
                    f"period {self.period} ms is not a whole number of steps of dt = {dt} ms", field="period"
                )
            if steps.size and steps.max() >= period_steps:
                raise self.error(
                    f"the last spike falls in step {int(steps.max())}, not within the period", field="period"
                )
        if steps.size and steps.max() >= 2**31 - 1:
            raise self.error("a spike time is beyond the step counter's range (int32 steps)", field="times")
        return steps.astype(np.int32), idx, int(period_steps)

    @property
    def variables(self) -> tuple:
        return ()
