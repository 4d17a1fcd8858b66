"""A network's state pytree <-> the operands and results of its FFI call, in one place.

Why: the library decides the call's argument layout (``codegen::network_layout`` in Rust,
docs/NETWORKS.md) and returns it with every compiled network; this module is the only Python
code that reads it. Each buffer belongs to an object (``owner``: a group, projection, TimedArray or
monitor name; ``""`` for the network's own ``t_step`` and ``rng_seed``) under a ``name``; in the
state it is ``state[owner][name]`` (``state[name]`` for the network's own). A buffer is
``batched`` (one per member of a ``jax.vmap``: a leading axis in the call) unless it is
connectivity, which the members share. Shapes may name sizes known only at the call:
``n_syn`` (the projection's synapses, from its ``targets``), ``steps`` and ``records``
(``ceil(steps / every)`` of a state monitor).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from ..units import to_kernel_units

__all__ = ["NetworkLayout", "STATE_ROLES", "OUTPUT_ROLES", "CHECKPOINT_ROLES"]

# Results that go back into the state (what carries over to the next run).
STATE_ROLES = frozenset(
    {
        "state",
        "param",
        "lastspike_step",
        "not_refractory",
        "spike_cursor",
        "spike_queue",
        "spike_queue_counts",
        "synapse_param",
    }
)
# Results that are the run's outputs.
OUTPUT_ROLES = frozenset(
    {
        "spike_count",
        "monitor_index",
        "monitor_step",
        "monitor_count",
        "monitor_dropped",
        "monitor_trace",
        "monitor_rate",
    }
)


# Outputs a checkpointed run copies at each segment's start (batched ones; Rust:
# ``handlers::network_checkpoints::CHECKPOINT_ROLES``).
CHECKPOINT_ROLES = frozenset(
    {"state", "param", "lastspike_step", "not_refractory", "spike_queue", "spike_queue_counts"}
)


def _path(arg: Mapping) -> str:
    return f"state[{arg['name']!r}]" if not arg["owner"] else f"state[{arg['owner']!r}][{arg['name']!r}]"


class NetworkLayout:
    """The argument layout of one compiled network: ``inputs``, ``outputs`` and ``scratch``,
    each a list of ``{"owner", "name", "role", "elem", "shape", "batched"}``."""

    def __init__(self, layout: Mapping, real_dtype, every: Mapping):
        self.inputs = list(layout["inputs"])
        self.outputs = list(layout["outputs"])
        self.scratch = list(layout.get("scratch", ()))
        self.real = np.dtype(real_dtype)
        self.every = dict(every)  # state monitor name -> every

    def dtype(self, arg: Mapping) -> np.dtype:
        return self.real if arg["elem"] == "real" else np.dtype(arg["elem"])

    def by_role(self, role: str) -> list:
        return [a for a in self.inputs if a["role"] == role]

    # -- shapes ------------------------------------------------------------------------------------

    def shape(self, arg: Mapping, *, steps: int, n_syn: Mapping) -> tuple:
        """The shape of ``arg`` without the batch axis, every named size resolved."""
        out = []
        for d in arg["shape"]:
            if isinstance(d, int):
                out.append(d)
            elif d == "n_syn":
                out.append(n_syn[arg["owner"]])
            elif d == "steps":
                out.append(steps)
            elif d == "records":
                out.append(math.ceil(steps / self.every[arg["owner"]]))
            else:  # pragma: no cover - the library names no other size
                raise ValueError(f"layout: unknown size {d!r} in {_path(arg)}")
        return tuple(out)

    def synapse_counts(self, state: Mapping) -> dict:
        """Each projection's synapse count, from its ``targets`` in the state."""
        counts = {}
        for a in self.inputs:
            if a["role"] == "targets":
                targets = state.get(a["owner"], {}).get("targets")
                if targets is None:
                    raise KeyError(f"the state is missing {_path(a)} (build it with net.init_state)")
                counts[a["owner"]] = int(np.shape(targets)[0])
        return counts

    # -- operands ----------------------------------------------------------------------------------

    def entry(self, state: Mapping, arg: Mapping):
        if not arg["owner"]:
            if arg["name"] not in state:
                raise KeyError(f"the state is missing {_path(arg)} (build it with net.init_state)")
            return state[arg["name"]]
        owner = state.get(arg["owner"])
        if not isinstance(owner, Mapping) or arg["name"] not in owner:
            raise KeyError(f"the state is missing {_path(arg)} (build it with net.init_state)")
        return owner[arg["name"]]

    def operands(self, state: Mapping, *, steps: int) -> list:
        """The operands in layout order, each checked against its entry in ``state``; batched
        ones get the call's batch axis (of 1: ``jax.vmap`` adds members to it)."""
        n_syn = self.synapse_counts(state)
        args = []
        for a in self.inputs:
            x = jnp.asarray(to_kernel_units(self.entry(state, a), _path(a)))
            want_shape = self.shape(a, steps=steps, n_syn=n_syn)
            if x.shape != want_shape:
                raise ValueError(
                    f"{_path(a)} has shape {x.shape}, expected {want_shape}"
                    + (" (one value per element of its object)" if len(want_shape) == 1 else "")
                )
            want = self.dtype(a)
            if x.dtype != want:
                raise TypeError(f"{_path(a)} has dtype {x.dtype}, expected {want} (the network runs in {self.real})")
            args.append(x.reshape((1,) + x.shape) if a["batched"] else x)
        return args

    def result_structs(self, *, steps: int, n_syn: Mapping, nb: int = 1) -> list:
        return [
            jax.ShapeDtypeStruct(
                ((nb,) if a["batched"] else ()) + self.shape(a, steps=steps, n_syn=n_syn), self.dtype(a)
            )
            for a in self.outputs
        ]

    def checkpointed(self) -> list:
        """The outputs a checkpointed run copies at each segment's start, in layout order."""
        return [a for a in self.outputs if a["batched"] and a["role"] in CHECKPOINT_ROLES]

    def checkpoint_structs(self, stored: list, segments: int, nb: int = 1) -> list:
        """The checkpoints' results: ``[nb, segments, ...]`` for each of ``stored``."""
        return [jax.ShapeDtypeStruct((nb, segments) + self.shape(a, steps=0, n_syn={}), self.dtype(a)) for a in stored]

    def scratch_structs(self, *, nb: int) -> list:
        return [
            jax.ShapeDtypeStruct(((nb,) if a["batched"] else ()) + self.shape(a, steps=0, n_syn={}), self.dtype(a))
            for a in self.scratch
        ]

    def unbatched_inputs(self) -> tuple:
        """Positions of the operands the members of a batch share (connectivity)."""
        return tuple(k for k, a in enumerate(self.inputs) if not a["batched"])

    # -- results -----------------------------------------------------------------------------------

    def unpack(self, state: Mapping, results, *, steps: int) -> tuple[dict, dict]:
        """(new state, outputs by (owner, name)): every result without the call's batch axis,
        state results put back where their operand came from, ``t_step`` advanced."""
        new_state = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in state.items()}
        outputs = {}
        for a, r in zip(self.outputs, results):
            r = r.reshape(r.shape[1:]) if a["batched"] else r
            if a["role"] in STATE_ROLES:
                new_state[a["owner"]][a["name"]] = r
            else:
                outputs[(a["owner"], a["name"])] = r
        counter = jnp.asarray(state["t_step"])
        new_state["t_step"] = counter + jnp.asarray(steps, counter.dtype)
        return new_state, outputs
