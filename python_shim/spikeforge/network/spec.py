"""The network spec (JSON, docs/NETWORKS.md) written from a network's objects.

Why a function of a few choices: the objects fix almost everything, but some facts become known
only with a state or a run, and each gives its own compiled variant: the precision, which
constants a group holds per neuron (given as arrays to ``init_state``), the longest per-synapse
delay of each projection (from the delays given to ``init_state``), and the capacity of each spike
monitor (from the run's length, when it was left to the network). :class:`Variant` holds those
choices; :func:`network_spec` writes the spec for one.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .collect import Members
from .groups import NeuronGroup, PoissonGroup, SpikeGeneratorGroup, SpikeSource
from .monitors import PopulationRateMonitor, SpikeMonitor, StateMonitor

__all__ = ["Variant", "network_spec", "source_range"]


@dataclasses.dataclass(frozen=True)
class Variant:
    """What, besides the objects, one compiled network depends on."""

    dtype: str = "float32"
    per_neuron: tuple = ()  # ((group, (constant, ...)), ...)
    max_delay: tuple = ()  # ((projection, ms), ...)
    capacity: tuple = ()  # ((monitor output name, capacity), ...)


def source_range(x: SpikeSource):
    """``[start, stop]`` of a slice, None for a whole group."""
    if x.start == 0 and x.stop == x.root.n:
        return None
    return [x.start, x.stop]


def _group(g, per_neuron: dict) -> dict:
    if isinstance(g, NeuronGroup):
        model = dict(g.model._base, per_neuron=list(per_neuron.get(g.name, ())))
        return {"kind": "neuron", "name": g.name, "n": g.n, "model": model}
    if isinstance(g, PoissonGroup):
        rates = None if isinstance(g.rates, np.ndarray) else g.rates
        return {"kind": "poisson", "name": g.name, "n": g.n, "rates": rates, "constants": dict(g.constants)}
    if isinstance(g, SpikeGeneratorGroup):
        return {
            "kind": "spike_generator",
            "name": g.name,
            "n": g.n,
            "n_spikes": int(g.indices.size),
            "period": g.period,
        }
    raise TypeError(g)  # pragma: no cover - collect() admits no other group


def _monitor(key: str, m, capacity: dict) -> dict:
    if isinstance(m, SpikeMonitor):
        return {
            "kind": "spike",
            "name": key,
            "source": m.source.root.name,
            "range": source_range(m.source),
            "capacity": int(capacity[key]),
        }
    if isinstance(m, StateMonitor):
        record = (m.record + m.source.start).tolist()
        return {
            "kind": "state",
            "name": key,
            "source": m.source.root.name,
            "variables": list(m.variables),
            "record": record,
            "every": m.every,
        }
    if isinstance(m, PopulationRateMonitor):
        return {"kind": "rate", "name": key, "source": m.source.root.name, "range": source_range(m.source)}
    raise TypeError(m)  # pragma: no cover


def network_spec(members: Members, *, dt: float, deterministic: bool, variant: Variant, strategy: str = "auto") -> dict:
    per_neuron = dict(variant.per_neuron)
    max_delay = dict(variant.max_delay)
    capacity = dict(variant.capacity)
    projections = []
    for s in members.synapses:
        if isinstance(s.delay, dict):
            delay = dict(s.delay)
        else:
            delay = s.delay if isinstance(s.delay, str) or s.delay != 0.0 else None
        projection = {
            "name": s.name,
            "source": s.source.root.name,
            "source_range": source_range(s.source),
            "target": s.target.root.name,
            "target_range": source_range(s.target),
            "model": s.model,
            "on_pre": dict(s.on_pre) if isinstance(s.on_pre, dict) else s.on_pre,
            "delay": delay,
            "max_delay": max_delay.get(s.name),
            "constants": dict(s.constants),
        }
        if s.on_post is not None:
            projection["on_post"] = dict(s.on_post) if isinstance(s.on_post, dict) else s.on_post
        if s.method is not None:
            projection["method"] = s.method
        projections.append(projection)
    inputs = [
        {
            "name": p.name,
            "target": p.target.root.name,
            "target_range": source_range(p.target),
            "variable": p.target_var,
            "n": p.n,
            "rate": p.rate,
            "weight": p.weight,
            "constants": dict(p.constants),
        }
        for p in members.inputs
    ]
    timed = [{"name": t.name, "dt": t.dt, "shape": list(t.values.shape)} for t in members.timed_arrays]
    return {
        "dt": float(dt),
        "dtype": variant.dtype,
        "deterministic": bool(deterministic),
        "strategy": strategy,
        "groups": [_group(g, per_neuron) for g in members.groups],
        "projections": projections,
        "poisson_inputs": inputs,
        "timed_arrays": timed,
        "monitors": [_monitor(k, m, capacity) for k, m in members.monitors.items()],
    }
