"""What every object of a network shares: a name, unique within its network, that keys its part of
the state pytree and of the outputs and that every error message uses.

Names follow Brian2: given with ``name=``, or made from the class (``neurongroup``,
``neurongroup_1``, ...). A name must be a Python identifier (it becomes a key and a name in the
network spec) and may not be one of the network's own entries (``t_step``, ``rng_seed``,
``spike_count``, ``sf_*``).
"""

from __future__ import annotations

import itertools
import re

import numpy as np

from ..errors import ModelError

__all__ = ["NetworkObject", "describe", "schedule_order", "schedule_key", "RESERVED"]

RESERVED = frozenset({"t_step", "rng_seed", "spike_count"})
"""Names the state or the outputs use for the network's own entries."""

_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
_COUNTERS: dict[str, itertools.count] = {}


def _default_name(kind: str) -> str:
    counter = _COUNTERS.setdefault(kind, itertools.count())
    k = next(counter)
    return kind if k == 0 else f"{kind}_{k}"


class NetworkObject:
    """A named part of a network. ``kind`` is the class name users see in messages."""

    kind = "object"

    def __init__(self, name: str | None):
        if name is None:
            name = _default_name(type(self).__name__.lower())
        if not isinstance(name, str) or not _IDENTIFIER.match(name):
            raise ModelError(
                f"{self.kind}: name must be an identifier (letters, digits, '_', starting with a letter), got {name!r}",
                field="name",
            )
        if name in RESERVED or name.startswith("sf_"):
            raise ModelError(
                f"{self.kind}: the name {name!r} is the network's own (t_step, rng_seed, sf_*): choose another",
                field="name",
            )
        self.name = name

    def error(self, message: str, *, field: str | None = None, cls=ModelError) -> Exception:
        """An exception naming this object: ``Synapses 'Ce': <message>``."""
        text = f"{describe(self)}: {message}"
        return cls(text, field=field) if issubclass(cls, ModelError) else cls(text)

    def __repr__(self):
        return f"<{self.kind} {self.name!r}>"


def schedule_order(order, obj) -> int:
    """Brian2's ``order=``: an integer; objects of one slot of the schedule (here: synapses and
    Poisson inputs) run by ``(order, name)``."""
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)):
        raise obj.error(f"order must be an integer, got {order!r}", field="order", cls=TypeError)
    return int(order)


def schedule_key(obj, suffix: str = "") -> tuple:
    """The key Brian2 sorts one slot's objects by: ``(order, name)`` (a synapse pathway's order is
    Brian2's own, -1 for ``<name>_pre`` and +1 for ``<name>_post``: see ``collect``)."""
    return (obj.order, obj.name + suffix)


def describe(obj) -> str:
    """``Synapses 'Ce'`` for messages."""
    return f"{obj.kind} {obj.name!r}"
