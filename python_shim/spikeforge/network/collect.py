"""The objects of a network, gathered and checked: every group (also those only reached through a
synapse, an input or a monitor), the projections and the Poisson inputs in Brian2's order (its
schedule sorts the objects of one slot by ``(order, name)``; a projection's pathways are named
``<name>_pre`` (order -1) and ``<name>_post`` (order +1), whatever the ``Synapses``' own
``order``, and named ones ``<name>_<key>``; the projections are listed by ``<name>_pre`` and the
library sorts every pathway by its name, presynaptic ones first; the order of groups does not matter: their
updates are independent), the timed arrays and the monitors with the names their records come back
under.

Why apart from :class:`~spikeforge.Network`: what belongs to a network, and whether the names
are unique and the references consistent, is decided once, before any spec is written; the
network then only turns this into a spec and a state.
"""

from __future__ import annotations

import dataclasses

from .base import RESERVED, NetworkObject, describe, schedule_key
from .groups import NeuronGroup, PoissonGroup, SpikeGeneratorGroup, SpikeSource, Subgroup
from .inputs import PoissonInput, TimedArray
from .monitors import PopulationRateMonitor, SpikeMonitor, StateMonitor, _Monitor
from .synapses import Synapses

__all__ = ["Members", "collect"]

ROOTS = (NeuronGroup, PoissonGroup, SpikeGeneratorGroup)


@dataclasses.dataclass
class Members:
    groups: list  # roots, in order of first appearance
    synapses: list
    inputs: list  # PoissonInput
    timed_arrays: list
    monitors: dict  # output name -> monitor

    def by_name(self) -> dict:
        out = {}
        for obj in [*self.groups, *self.synapses, *self.inputs, *self.timed_arrays, *self.monitors.values()]:
            out[obj.name] = obj
        return out

    @property
    def spike_monitors(self) -> dict:
        return {k: m for k, m in self.monitors.items() if isinstance(m, SpikeMonitor)}

    @property
    def state_monitors(self) -> dict:
        return {k: m for k, m in self.monitors.items() if isinstance(m, StateMonitor)}

    @property
    def rate_monitors(self) -> dict:
        return {k: m for k, m in self.monitors.items() if isinstance(m, PopulationRateMonitor)}


def collect(objects, named_monitors: dict) -> Members:
    """Gathers ``objects`` (groups, synapses, inputs, timed arrays, monitors, or lists of them)
    and the keyword monitors. A monitor passed positionally comes back under its own name."""
    groups: list = []
    synapses: list = []
    inputs: list = []
    timed: list = []
    monitors: dict = {}

    def add_group(g):
        if g not in groups:
            groups.append(g)

    def add(obj, key=None):
        if isinstance(obj, (list, tuple)):
            for o in obj:
                add(o)
            return
        if isinstance(obj, Subgroup):
            raise TypeError(
                f"Network: {obj.name!r} is a slice of {describe(obj.root)}: add the group itself "
                "(its slices are used by synapses and monitors as they are)"
            )
        if isinstance(obj, ROOTS):
            add_group(obj)
        elif isinstance(obj, Synapses):
            if obj not in synapses:
                synapses.append(obj)
        elif isinstance(obj, PoissonInput):
            if obj not in inputs:
                inputs.append(obj)
        elif isinstance(obj, TimedArray):
            if obj not in timed:
                timed.append(obj)
        elif isinstance(obj, _Monitor):
            name = key or obj.name
            if name in monitors and monitors[name] is not obj:
                raise ValueError(f"Network: two monitors come back as {name!r}: give them different names")
            monitors[name] = obj
        else:
            raise TypeError(
                f"Network: cannot add {obj!r} ({type(obj).__name__}); a network holds NeuronGroup, PoissonGroup, "
                "SpikeGeneratorGroup, Synapses, PoissonInput, TimedArray and monitors"
            )

    for obj in objects:
        add(obj)
    for key, mon in named_monitors.items():
        if not isinstance(mon, _Monitor):
            raise TypeError(
                f"Network: keyword {key}= must be a monitor (SpikeMonitor, StateMonitor, PopulationRateMonitor), "
                f"got {type(mon).__name__}; other objects are positional arguments"
            )
        add(mon, key)
    # Groups reached only through another object belong to the network too (in creation order).
    for s in synapses:
        add_group(s.source.root)
        add_group(s.target.root)
    for p in inputs:
        add_group(p.target.root)
    for m in monitors.values():
        add_group(m.source.root)
    for g in groups:
        for table in getattr(g, "timed_arrays", {}).values():
            if table not in timed:
                timed.append(table)
    if not groups:
        raise ValueError("Network: there is no group to simulate")
    synapses.sort(key=lambda s: s.name + "_pre")
    inputs.sort(key=schedule_key)
    members = Members(groups, synapses, inputs, timed, monitors)
    _check_names(members)
    return members


def _check_names(members: Members):
    seen: dict[str, NetworkObject] = {}
    for obj in [*members.groups, *members.synapses, *members.inputs, *members.timed_arrays, *members.monitors.values()]:
        other = seen.get(obj.name)
        if other is not None and other is not obj:
            raise ValueError(
                f"Network: {describe(other)} and {describe(obj)} have the same name {obj.name!r}: names key the "
                "state and the outputs, give each object its own (name=...)"
            )
        seen[obj.name] = obj
    for key, mon in members.monitors.items():
        if key in RESERVED or key.startswith("sf_"):
            raise ValueError(f"Network: {key!r} is a name of the network's own entries: name the monitor otherwise")
        other = seen.get(key)
        if other is not None and other is not mon:
            raise ValueError(
                f"Network: the monitor given as {key}= has the name of {describe(other)}: names key the state and the "
                "outputs, use another keyword"
            )


def source_of(obj) -> SpikeSource:
    return obj.source
