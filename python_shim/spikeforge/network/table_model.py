"""A neuron model whose equations call TimedArrays (``I = stim(t, i) : amp``).

Why its own class: a model alone is validated by the library's model compiler, which knows no
TimedArray; a network's groups may call the network's TimedArrays. So a model that calls them is
validated as what it will be, a group of a network holding those TimedArrays: a one-group network
spec, compiled by ``sf_network_compile``, whose answer names the model's variables as a model's
own compile does. Everything else is :class:`~spikeforge.NeuronModel`'s.
"""

from __future__ import annotations

import json

from ..errors import ModelError
from ..neuron import NeuronModel
from . import _abi

__all__ = ["TableModel", "compile_spec"]


def compile_spec(spec: dict) -> dict:
    """The library's answer for a network spec; its error as a :class:`ModelError`."""
    answer = _abi.network_compile(json.dumps(spec))
    if not answer.get("ok"):
        raise ModelError.from_native(answer["error"])
    return answer


class TableModel(NeuronModel):
    """A NeuronModel compiled with ``tables`` (name -> :class:`~spikeforge.TimedArray`) in reach.
    ``owner``: the group's name (errors name it)."""

    def __init__(self, equations, *, tables: dict, owner: str, **keywords):
        self.tables = dict(tables)
        self.owner = owner
        super().__init__(equations, **keywords)

    def _variant(self, *, dt, dtype, per_neuron, per_step, record) -> dict:
        key = (float(dt), dtype, tuple(per_neuron), tuple(per_step), tuple(record))
        if key in self._variants:
            return self._variants[key]
        if per_step or record:
            raise ModelError(
                f"NeuronGroup {self.owner!r}: a model that calls TimedArrays runs in a network (monitors record it)",
                field="equations",
            )
        model = dict(self._base, per_neuron=list(per_neuron))
        spec = {
            "dt": float(dt),
            "dtype": dtype,
            "groups": [{"kind": "neuron", "name": self.owner, "n": 1, "model": model}],
            "timed_arrays": [{"name": k, "dt": t.dt, "shape": list(t.values.shape)} for k, t in self.tables.items()],
        }
        answer = _abi.network_compile(json.dumps(spec))
        if not answer.get("ok"):
            raise self._native_error(answer["error"])
        group = answer["groups"][0]
        inputs = [
            {**a, "shape": "batch" if a["shape"] == [] else "neuron"}
            for a in answer["layout"]["inputs"]
            if a["owner"] == self.owner
        ]
        info = {
            "states": group["states"],
            "subexpressions": group["subexpressions"],
            "method": group["method"],
            "layout": {"inputs": inputs, "outputs": []},
        }
        self._variants[key] = info
        return info

    def run(self, *args, **kwargs):
        raise ModelError(
            f"NeuronGroup {self.owner!r}: a model that calls TimedArrays runs only in a network (sf.Network)",
            field="equations",
        )

    def source(self, *args, **kwargs) -> str:
        raise ModelError(
            f"NeuronGroup {self.owner!r}: a model that calls TimedArrays has no kernel of its own: "
            "see the network's (net.source())",
            field="equations",
        )
