"""``Synapses``: a projection from a spike source to a neuron group, Brian2's ``Synapses``.

A projection is defined by its model (per-synapse variables, ``w : 1``), what a spike does when
it arrives (``on_pre``, statements on the target's variables: ``ge_post += w``), its delay, and
its synapses, made by one or more calls of :meth:`Synapses.connect` (explicit ``i``/``j``
arrays, or a rule the library builds from a seed). The statements are checked by the library
when the projection is defined, so a mistake (an unknown target variable, ``_post`` on a name
the target lacks) is reported at the line that made the projection, with a caret.

The synapses themselves are built by :meth:`spikeforge.Network.init_state` (the sizes become
concrete there); this module records and checks what was asked.
"""

from __future__ import annotations

import dataclasses
import math
import operator

import numpy as np

from .. import arguments
from ..equations import equations_text
from ..units import TIME, to_kernel_units
from .base import NetworkObject, describe
from .groups import NeuronGroup, SpikeSource, Subgroup

__all__ = ["Synapses", "Connection", "ExplicitSynapses", "GeneratedSynapses"]


@dataclasses.dataclass(frozen=True)
class ExplicitSynapses:
    """``connect(i=..., j=...)``: indices within the source and the target, in the order given."""

    i: np.ndarray
    j: np.ndarray


@dataclasses.dataclass(frozen=True)
class GeneratedSynapses:
    """A rule the library builds from a seed: ``condition`` (an expression of ``i``, ``j`` and
    group variables, or None), ``p`` (probability per pair) and ``n`` (synapses per accepted
    pair), each a number or an expression of ``i``, ``j`` and group variables,
    or a fixed out- / in-degree (``with_replacement``: targets drawn with replacement)."""

    condition: str | None = None
    p: float | str = 1.0
    n: int | str = 1
    fixed_out_degree: int | None = None
    fixed_in_degree: int | None = None
    with_replacement: bool = True
    seed: int | None = None


Connection = ExplicitSynapses | GeneratedSynapses


def _index_array(value, what: str, size: int, owner) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype == np.bool_ or (array.size and array.dtype.kind not in "iu"):
        raise owner.error(
            f"connect: {what} must hold integers, got dtype {array.dtype}", field="connect", cls=TypeError
        )
    if array.ndim > 1:
        raise owner.error(f"connect: {what} must be one index or a 1-d array, got shape {array.shape}", field="connect")
    array = array.astype(np.int64).reshape(-1)
    if array.size and (array.min() < 0 or array.max() >= size):
        bad = int(array[(array < 0) | (array >= size)][0])
        side = "source" if what == "i" else "target"
        raise owner.error(
            f"connect: {what} = {bad} is out of range: the {side} has {size} neurons ({what} in [0, {size}))",
            field="connect",
            cls=IndexError,
        )
    return array


def _probability(p, owner) -> float | str:
    if isinstance(p, str):
        return p
    try:
        value = float(p)
    except (TypeError, ValueError):
        raise owner.error(f"connect: p must be a number in [0, 1], got {p!r}", field="connect", cls=TypeError) from None
    if not 0.0 <= value <= 1.0 or not math.isfinite(value):
        raise owner.error(f"connect: p must lie in [0, 1], got {p!r}", field="connect")
    return value


def _degree(value, what: str, owner) -> int:
    try:
        k = operator.index(value)
    except TypeError:
        raise owner.error(
            f"connect: {what} must be an integer, got {value!r}", field="connect", cls=TypeError
        ) from None
    if isinstance(value, (bool, np.bool_)) or k < 0:
        raise owner.error(f"connect: {what} must be an integer >= 0, got {value!r}", field="connect")
    return int(k)


class Synapses(NetworkObject):
    """Synapses from ``source`` (a group or a slice of one: ``P[:3200]``) onto ``target`` (a
    :class:`NeuronGroup` or a slice of one; default: the source).

    ``model``: per-synapse variables and parameters in Brian2's syntax (``"w : 1\\nd : second"``),
    or None. ``on_pre``: the statements run for each spike arriving through a synapse (Brian2's
    ``ge += w`` or ``ge_post += w``; ``_pre`` / ``_post`` name the source's / target's variables,
    ``i`` / ``j`` their indices, ``lastspike_pre``). ``delay``: None (0), a duration (ms or a
    time quantity: one delay for every synapse), or a string naming a per-synapse variable of the
    model (``delay="d"``) or an expression; a delay becomes ``int(d/dt + 0.5)`` steps, as in
    Brian2. ``constants``: names used in ``model`` / ``on_pre`` (numbers or quantities).

    ``on_post`` and plastic synapses are not part of this version (a clear error)."""

    kind = "Synapses"

    def __init__(
        self,
        source,
        target=None,
        model=None,
        on_pre=None,
        *,
        on_post=None,
        pre=None,
        delay=None,
        constants=None,
        method=None,
        name: str | None = None,
    ):
        super().__init__(name)
        target = source if target is None else target
        if not isinstance(source, SpikeSource):
            raise self.error(
                f"the source must be a NeuronGroup, PoissonGroup, SpikeGeneratorGroup or a slice of one, "
                f"got {type(source).__name__}",
                cls=TypeError,
            )
        if not isinstance(target, (NeuronGroup, Subgroup)) or not isinstance(target.root, NeuronGroup):
            raise self.error(
                f"the target must be a NeuronGroup or a slice of one (a group with variables to act on), "
                f"got {describe(target) if isinstance(target, NetworkObject) else type(target).__name__}",
                cls=TypeError,
            )
        if on_post is not None:
            raise self.error(
                "on_post (and plasticity) is not supported yet: synapses act on spikes of the source only",
                field="on_post",
            )
        if pre is not None:
            if on_pre is not None:
                raise self.error("give on_pre or its old name pre, not both", field="on_pre", cls=TypeError)
            on_pre = pre
        self.source = source
        self.target = target
        self.model = "" if model is None else equations_text(model)
        if on_pre is not None and not isinstance(on_pre, str):
            raise self.error(f"on_pre must be a string of statements, got {type(on_pre).__name__}", field="on_pre")
        self.on_pre = on_pre or ""
        self.delay = self._delay(delay)
        self.constants = arguments.constants(constants)
        self.method = method
        self.connections: list = []

    # -- definition -----------------------------------------------------------------------------

    def _delay(self, delay):
        if delay is None:
            return 0.0
        if isinstance(delay, str):
            if not delay.strip():
                raise self.error("delay is an empty string", field="delay")
            return delay
        value = to_kernel_units(delay, f"{describe(self)}: delay", expect=TIME)
        array = np.asarray(value)
        if array.ndim != 0:
            raise self.error(
                "delay is an array: give per-synapse delays as a synapse variable (model 'd : second', "
                "delay='d') and their values to init_state",
                field="delay",
            )
        try:
            d = float(array)
        except (TypeError, ValueError):
            raise self.error(f"delay must be a duration, got {delay!r}", field="delay", cls=TypeError) from None
        if not math.isfinite(d) or d < 0:
            raise self.error(f"delay must be a finite duration >= 0 (ms), got {delay!r}", field="delay")
        return d

    # -- connectivity ---------------------------------------------------------------------------

    def connect(
        self,
        condition=None,
        i=None,
        j=None,
        p=1.0,
        n=1,
        *,
        fixed_out_degree=None,
        fixed_in_degree=None,
        with_replacement: bool = True,
        seed: int | None = None,
    ) -> Synapses:
        """Adds synapses, Brian2's ``connect``: ``connect(i=..., j=...)`` (arrays or one index,
        indices within the source and the target), ``connect()`` (all to all),
        ``connect(condition="i != j", p=0.02, n=2)``, ``connect(p=0.02)``, or a fixed degree
        (``fixed_out_degree=80``: each source neuron gets 80 targets; ``fixed_in_degree=80``;
        drawn with replacement unless ``with_replacement=False``). ``condition=True`` is all to
        all; a bool ``condition`` is Brian2's ``connect(True)``. ``seed``: the generator's seed
        (default: the network's seed). Several calls add up, in order. Returns ``self``."""
        explicit = i is not None or j is not None
        if isinstance(condition, (bool, np.bool_)):
            if not condition:
                return self
            condition = None
        if condition is not None and not isinstance(condition, str):
            raise self.error(f"connect: condition must be a string expression, got {condition!r}", field="connect")
        if explicit:
            if i is None or j is None:
                raise self.error(
                    "connect: give both i and j (arrays of the same length, or one index)", field="connect"
                )
            if isinstance(i, str) or isinstance(j, str):
                raise self.error(
                    "connect: generator syntax (j='k for k in ...') is not supported: use condition=, p=, n=, "
                    "fixed_out_degree= or fixed_in_degree=",
                    field="connect",
                )
            others = dict(condition=condition, fixed_out_degree=fixed_out_degree, fixed_in_degree=fixed_in_degree)
            given = (
                [k for k, v in others.items() if v is not None]
                + (["p"] if p != 1.0 else [])
                + (["n"] if n != 1 else [])
            )
            if given:
                raise self.error(f"connect: i/j arrays cannot be combined with {', '.join(given)}", field="connect")
            ia = _index_array(i, "i", self.source.n, self)
            ja = _index_array(j, "j", self.target.n, self)
            if ia.size == 1 and ja.size != 1:
                ia = np.full(ja.size, ia[0])
            elif ja.size == 1 and ia.size != 1:
                ja = np.full(ia.size, ja[0])
            if ia.size != ja.size:
                raise self.error(
                    f"connect: i has {ia.size} entries and j has {ja.size}: they must have the same length",
                    field="connect",
                )
            self.connections.append(ExplicitSynapses(ia.astype(np.int32), ja.astype(np.int32)))
            return self
        if fixed_out_degree is not None and fixed_in_degree is not None:
            raise self.error("connect: give fixed_out_degree or fixed_in_degree, not both", field="connect")
        degree = fixed_out_degree if fixed_out_degree is not None else fixed_in_degree
        prob = _probability(p, self)
        if degree is not None:
            what = "fixed_out_degree" if fixed_out_degree is not None else "fixed_in_degree"
            k = _degree(degree, what, self)
            if condition is not None or prob != 1.0 or n != 1:
                raise self.error(f"connect: {what} cannot be combined with condition=, p= or n=", field="connect")
            pool = self.target.n if fixed_out_degree is not None else self.source.n
            if not with_replacement and k > pool:
                raise self.error(
                    f"connect: {what}={k} without replacement needs at least {k} candidates, the "
                    f"{'target' if fixed_out_degree is not None else 'source'} has {pool}",
                    field="connect",
                )
            if fixed_out_degree is not None:
                fixed_out_degree = k
            else:
                fixed_in_degree = k
        multiplicity = n if isinstance(n, str) else _degree(n, "n", self)
        if isinstance(multiplicity, int) and multiplicity < 1:
            raise self.error("connect: n must be >= 1", field="connect")
        if seed is not None:
            seed = _degree(seed, "seed", self)
            if seed >= 2**64:
                raise self.error("connect: seed must fit in 64 bits", field="connect")
        self.connections.append(
            GeneratedSynapses(
                condition=condition,
                p=prob,
                n=multiplicity,
                fixed_out_degree=fixed_out_degree,
                fixed_in_degree=fixed_in_degree,
                with_replacement=bool(with_replacement),
                seed=seed,
            )
        )
        return self

    def __repr__(self):
        return f"<Synapses {self.name!r}: {self.source.name} -> {self.target.name}, on_pre={self.on_pre!r}>"
