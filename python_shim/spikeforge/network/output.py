"""What a network run gives back besides the new state: one record per monitor, under the name the
monitor was given (``Network(..., spikes=SpikeMonitor(P))`` -> ``out.spikes``), and the spike
count of every neuron of every group (``out.spike_count["P"]``).

A pytree (it comes out of ``jax.jit`` and ``jax.vmap``), readable by attribute or by key.
"""

from __future__ import annotations

import jax

__all__ = ["NetworkOutput"]


@jax.tree_util.register_pytree_node_class
class NetworkOutput:
    def __init__(self, records: dict, spike_count: dict):
        self.records = dict(records)
        self.spike_count = dict(spike_count)

    def __getattr__(self, name):
        records = self.__dict__.get("records", {})
        if name in records:
            return records[name]
        raise AttributeError(
            f"the run has no record {name!r}: its monitors are {tuple(records) or 'none'} (and spike_count)"
        )

    def __getitem__(self, name):
        if name == "spike_count":
            return self.spike_count
        return self.records[name]

    def __contains__(self, name):
        return name in self.records or name == "spike_count"

    def keys(self):
        return tuple(self.records)

    def __repr__(self):
        return f"NetworkOutput(records={tuple(self.records)}, spike_count={tuple(self.spike_count)})"

    def tree_flatten(self):
        names = tuple(self.records)
        groups = tuple(self.spike_count)
        return (tuple(self.records[k] for k in names), tuple(self.spike_count[g] for g in groups)), (names, groups)

    @classmethod
    def tree_unflatten(cls, aux, children):
        names, groups = aux
        records, counts = children
        return cls(dict(zip(names, records)), dict(zip(groups, counts)))
