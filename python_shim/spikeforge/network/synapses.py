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
from collections.abc import Mapping

import numpy as np

from .. import arguments, connectivity
from ..equations import equations_text
from ..errors import ModelError
from ..units import TIME, to_kernel_units
from .base import NetworkObject, describe, schedule_order
from .groups import NeuronGroup, SpikeSource, Subgroup

__all__ = ["Synapses", "Connection", "ExplicitSynapses", "GeneratedSynapses"]


@dataclasses.dataclass(frozen=True)
class ExplicitSynapses:
    """``connect(i=..., j=...)``: indices within the source and the target, in the order given
    (multapses of ``n=`` repeated, invalid pairs of ``skip_if_invalid=True`` left out)."""

    i: np.ndarray
    j: np.ndarray


@dataclasses.dataclass(frozen=True)
class GeneratedSynapses:
    """A rule (``spikeforge.connectivity``'s ``Pairs``, ``FixedOutDegree`` or ``FixedInDegree``)
    that the library's connectivity kernels build from ``seed`` (None: the network's)."""

    rule: object
    seed: int | None = None


Connection = ExplicitSynapses | GeneratedSynapses


def _index_array(value, what: str, size: int, owner, skip: bool) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype == np.bool_ or (array.size and array.dtype.kind not in "iu"):
        raise owner.error(
            f"connect: {what} must hold integers, got dtype {array.dtype}", field="connect", cls=TypeError
        )
    if array.ndim > 1:
        raise owner.error(f"connect: {what} must be one index or a 1-d array, got shape {array.shape}", field="connect")
    array = array.astype(np.int64).reshape(-1)
    bad = (array < 0) | (array >= size)
    if bad.any() and not skip:
        k = int(np.nonzero(bad)[0][0])
        side = "source" if what == "i" else "target"
        raise owner.error(
            f"connect: {what}[{k}] = {int(array[k])} is out of range: the {side} has {size} neurons "
            f"({what} in [0, {size})); skip_if_invalid=True drops such pairs",
            field="connect",
            cls=IndexError,
        )
    return array


class Synapses(NetworkObject):
    """Synapses from ``source`` (a group or a slice of one: ``P[:3200]``) onto ``target`` (a
    :class:`NeuronGroup` or a slice of one; default: the source).

    ``model``: per-synapse variables and parameters in Brian2's syntax (``"w : 1\\nd : second"``),
    or None. ``on_pre``: the statements run for each spike arriving through a synapse (Brian2's
    ``ge += w`` or ``ge_post += w``; ``_pre`` / ``_post`` name the source's / target's variables,
    ``i`` / ``j`` their indices, ``lastspike_pre``). ``delay``: None (0), a duration (ms or a
    time quantity: one delay for every synapse), or a string naming a per-synapse variable of the
    model (``delay="d"``) or an expression; a delay becomes ``int(d/dt + 0.5)`` steps, as in
    Brian2. ``constants``: names used in ``model`` / ``on_pre`` / ``on_post`` (numbers or
    quantities).

    **Named pathways** (Brian2's): ``on_pre={'up': 'x += w', 'down': 'y += w'}`` makes two
    presynaptic pathways, each run for every arriving spike after its own delay
    (``delay={'up': 0, 'down': 5*ms}``; a pathway left out of ``delay`` has none; a single
    ``delay`` is the pathway ``pre``'s); ``on_post`` takes a dict too. Per-synapse delays of a
    pathway: ``delay={'down': 'd'}`` with ``d : second`` in the model (Brian2's ``S.down.delay =
    ...``; one such variable per projection, presynaptic pathways only). A delay for a pathway
    that does not exist is an error, as in Brian2.

    ``on_post``: statements run, in the step a target neuron spikes, for each synapse onto it
    (STDP: ``Apost += dApost; w = clip(w + Apre, 0, gmax)``); they may assign synaptic variables
    and the target's, not the source's. ``model`` may declare ``(event-driven)`` traces
    (``dApre/dt = -Apre/taupre : 1 (event-driven)``), linear with constant coefficients: each
    pathway updates them exactly over the time since the synapse's last event (kept in the
    synapse variable ``lastupdate``), as Brian2 does. Weights and traces are per-synapse state:
    they persist from run to run.

    ``(clock-driven)`` variables (``dg/dt = -g/tau : 1 (clock-driven)``, or a differential
    equation without a flag) are integrated every step, after the groups they read, by the
    integrators of neuron groups (``method``: a scheme's name, or Brian2's choice when None).
    ``(summed)`` variables (``gsyn_post = g : 1 (summed)``) set a parameter of the target
    (``_post``) or source (``_pre``) group, every step before the groups update, to the sum over
    each neuron's synapses (Brian2's rules: a parameter of that group, one sum per variable).

    ``order``: accepted for Brian2 compatibility; as in Brian2 it does not move the pathways:
    the synapses slot runs every ``<name>_pre`` pathway (by name), then the Poisson inputs, then
    every ``<name>_post`` pathway (by name), which matters where statements assign
    (``v_post = ...``)."""

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
        method: str | None = None,
        order: int = 0,
        name: str | None = None,
    ):
        super().__init__(name)
        if method is not None and not isinstance(method, str):
            raise self.error(f"method must be a scheme's name or None, got {type(method).__name__}", field="method")
        self.method = method
        self.order = schedule_order(order, self)
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
        self.on_post = None if on_post is None else self._pathway_code(on_post, "on_post")
        if pre is not None:
            if on_pre is not None:
                raise self.error("give on_pre or its old name pre, not both", field="on_pre", cls=TypeError)
            on_pre = pre
        self.source = source
        self.target = target
        self.model = "" if model is None else equations_text(model)
        self.on_pre = "" if on_pre is None else self._pathway_code(on_pre, "on_pre")
        if isinstance(delay, Mapping):
            self.delay = {}
            for key, value in delay.items():
                if not isinstance(key, str):
                    raise self.error(
                        f"the keys of delay must be pathway names (strings), got {type(key).__name__}",
                        field="delay",
                        cls=TypeError,
                    )
                self.delay[key] = self._delay(value, f"delay[{key!r}]")
        else:
            self.delay = self._delay(delay, "delay")
        self.constants = arguments.constants(constants)
        self.connections: list = []
        self._validate()

    def _pathway_code(self, code, field: str):
        """``on_pre`` / ``on_post``: a string of statements (the pathway ``pre`` / ``post``), or
        a dict of pathway name -> statements (Brian2's named pathways, ``{'up': ..., 'down':
        ...}``), kept as given."""
        if isinstance(code, str):
            return code
        if isinstance(code, Mapping):
            out = {}
            for key, value in code.items():
                if not isinstance(key, str) or not isinstance(value, str):
                    raise self.error(
                        f"{field} as a dict maps pathway names (strings) to statements (strings), "
                        f"got {key!r}: {type(value).__name__}",
                        field=field,
                        cls=TypeError,
                    )
                out[key] = value
            return out
        raise self.error(
            f"{field} must be a string of statements or a dict of pathway name -> statements, "
            f"got {type(code).__name__}",
            field=field,
        )

    def delays(self) -> dict:
        """The delays given, by pathway name (a single delay is the ``pre`` pathway's)."""
        return dict(self.delay) if isinstance(self.delay, dict) else {"pre": self.delay}

    def has_dynamics(self) -> bool:
        """Whether the model has ``(summed)`` or ``(clock-driven)`` variables (their kernels read
        the by-post index, built with the connectivity)."""
        for line in self.model.splitlines():
            lhs, colon, rest = line.split("#")[0].partition(":")
            if not colon:
                continue
            flags = set()
            if "(" in rest:
                flags = {f.strip() for f in rest[rest.find("(") + 1 : rest.rfind(")")].split(",")}
            differential = lhs.strip().startswith("d") and "/dt" in lhs.replace(" ", "")
            if "summed" in flags or (differential and "event-driven" not in flags):
                return True
        return False

    def delay_variable(self) -> str | None:
        """The per-synapse variable that holds the delays (``delay="d"`` or ``delay={'up':
        'd'}`` with ``d`` in the model), or None when every delay is one for all synapses."""
        declared = [line.split(":")[0].strip() for line in self.model.splitlines() if ":" in line]
        for value in self.delays().values():
            if isinstance(value, str):
                name = value.strip()
                if name.isidentifier() and name in declared:
                    return name
        return None

    def _validate(self):
        """The projection checked by the library now, in a network of its two groups, so that a
        mistake in ``model``, ``on_pre`` or ``delay`` is reported where the projection is made."""
        from .collect import Members
        from .spec import Variant, network_spec
        from .table_model import compile_spec

        groups = [self.source.root] + ([self.target.root] if self.target.root is not self.source.root else [])
        tables = []
        for g in groups:
            for t in getattr(g, "timed_arrays", {}).values():
                if t not in tables:
                    tables.append(t)
        members = Members(groups=groups, synapses=[self], inputs=[], timed_arrays=tables, monitors={})
        max_delay = ((self.name, 0.1),) if self.delay_variable() is not None else ()
        spec = network_spec(members, dt=0.1, deterministic=False, variant=Variant(max_delay=max_delay))
        compile_spec(spec)

    # -- definition -----------------------------------------------------------------------------

    def _delay(self, delay, field: str):
        if delay is None:
            return 0.0
        if isinstance(delay, str):
            if not delay.strip():
                raise self.error(f"{field} is an empty string", field=field)
            return delay
        value = to_kernel_units(delay, f"{describe(self)}: {field}", expect=TIME)
        array = np.asarray(value)
        if array.ndim != 0:
            raise self.error(
                f"{field} is an array: give per-synapse delays as a synapse variable (model 'd : second', "
                "delay='d' or delay={'pathway': 'd'}) and their values to init_state",
                field=field,
            )
        try:
            d = float(array)
        except (TypeError, ValueError):
            raise self.error(f"{field} must be a duration, got {delay!r}", field=field, cls=TypeError) from None
        if not math.isfinite(d) or d < 0:
            raise self.error(f"{field} must be a finite duration >= 0 (ms), got {delay!r}", field=field)
        return d

    # -- connectivity ---------------------------------------------------------------------------

    def connect(
        self,
        condition=None,
        i=None,
        j=None,
        p=1.0,
        n=1,
        skip_if_invalid: bool = False,
        *,
        fixed_out_degree=None,
        fixed_in_degree=None,
        replace: bool = True,
        allow_self: bool = True,
        seed: int | None = None,
    ) -> Synapses:
        """Adds synapses, Brian2's ``connect``: ``connect(i=..., j=...)`` (arrays or one index,
        within the source and the target), ``connect()`` or ``connect(True)`` (all to all),
        ``connect(condition="i != j", p=0.02, n=2)`` (``p`` and ``n`` numbers or expressions of
        ``i``, ``j``, ``N_pre``, ``N_post``, ``x_pre``/``x_post`` group variables and the
        synapses' constants), or a fixed degree: ``fixed_out_degree=80`` (80 targets per source
        neuron), ``fixed_in_degree=80``, drawn with replacement unless ``replace=False``;
        ``allow_self=False`` leaves out a neuron's synapse onto itself. Rules are built by the
        library's connectivity kernels when the network's state is made, from ``seed`` (default:
        the network's seed); the same seed gives the same synapses on CPU and GPU. Several
        calls add up, in order. Returns ``self``."""
        try:
            rule = connectivity.connect_rule(
                condition,
                i,
                j,
                p,
                n,
                skip_if_invalid,
                fixed_out_degree=fixed_out_degree,
                fixed_in_degree=fixed_in_degree,
                replace=replace,
                allow_self=allow_self,
            )
        except ModelError as err:
            raise self.error(f"connect: {err}", field=err.field or "connect") from None
        if isinstance(rule, connectivity.Explicit):
            ia = _index_array(rule.i, "i", self.source.n, self, rule.skip_if_invalid)
            ja = _index_array(rule.j, "j", self.target.n, self, rule.skip_if_invalid)
            if ia.size == 1 and np.ndim(rule.i) == 0:
                ia = np.full(ja.size, ia[0])
            elif ja.size == 1 and np.ndim(rule.j) == 0:
                ja = np.full(ia.size, ja[0])
            if ia.size != ja.size:
                raise self.error(
                    f"connect: i has {ia.size} entries and j has {ja.size}: they must have the same length",
                    field="connect",
                )
            keep = (ia >= 0) & (ia < self.source.n) & (ja >= 0) & (ja < self.target.n)
            ia, ja = ia[keep], ja[keep]
            if rule.n != 1:
                ia, ja = np.repeat(ia, rule.n), np.repeat(ja, rule.n)
            self.connections.append(ExplicitSynapses(ia.astype(np.int32), ja.astype(np.int32)))
            return self
        if seed is not None:
            if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
                raise self.error(f"connect: seed must be an integer in 0..2^32-1, got {seed!r}", field="connect")
            seed = int(seed)
        if isinstance(rule, (connectivity.FixedOutDegree, connectivity.FixedInDegree)) and not rule.replace:
            out = isinstance(rule, connectivity.FixedOutDegree)
            pool = self.target.n if out else self.source.n
            if rule.k > pool:
                what = "fixed_out_degree" if out else "fixed_in_degree"
                raise self.error(
                    f"connect: {what}={rule.k} without replacement needs at least {rule.k} candidates, the "
                    f"{'target' if out else 'source'} has {pool}",
                    field="connect",
                )
        self._check_rule(rule)
        self.connections.append(GeneratedSynapses(rule, seed))
        return self

    def group_variables(self, side: str) -> tuple:
        """The variables of the source (``"pre"``) or target (``"post"``) group a rule may read."""
        root = (self.source if side == "pre" else self.target).root
        if not isinstance(root, NeuronGroup):
            return ()
        return tuple(root.model.state_variables) + tuple(root.model.parameters)

    def _check_rule(self, rule):
        """The rule's expressions checked by the library now, against the names they may read."""
        try:
            connectivity.check_rule(
                rule,
                pre_variables=self.group_variables("pre"),
                post_variables=self.group_variables("post"),
                constants=self.constants,
            )
        except ModelError as err:
            err.add_note(f"in connect() of {describe(self)}")
            raise

    def __repr__(self):
        return f"<Synapses {self.name!r}: {self.source.name} -> {self.target.name}, on_pre={self.on_pre!r}>"
