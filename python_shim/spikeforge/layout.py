"""A group's state dict <-> the operands and results of its FFI call, in one place.

Why: the library decides the kernel's argument layout (``codegen::layout`` in Rust, described in
docs/DESIGN.md) and returns it with every compiled variant; this module is the only Python code
that reads it. Every operand is found by its role and name, shaped and type-checked with an
error that names the state or input entry, and every result is put back where it came from.
A new kind of group (synapses) gets its marshalling by returning a layout, not by new code here.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from . import clock
from .errors import ModelError
from .units import to_kernel_units

__all__ = ["Layout"]

# The state entries of the bookkeeping and their starting values (the others are the model's).
_START = {"time": lambda n: clock.words(0.0), "lastspike": lambda n: clock.words(np.full((n,), clock.NEVER_SPIKED))}


class Layout:
    """The argument layout of one compiled variant: ``inputs`` and ``outputs``, each a list of
    ``{"name", "role", "elem", "shape"}`` (element type ``real`` is the model's dtype), with
    ``"words": "float64"`` where a float64 value travels as a trailing pair of int32 words
    (``spikeforge.clock``)."""

    def __init__(self, layout: Mapping, real_dtype):
        self.inputs = list(layout["inputs"])
        self.outputs = list(layout["outputs"])
        self.real = np.dtype(real_dtype)

    def dtype(self, arg: Mapping) -> np.dtype:
        return self.real if arg["elem"] == "real" else np.dtype(arg["elem"])

    @staticmethod
    def trailing(arg: Mapping) -> tuple:
        """The trailing axis of a word-pair argument, ``(2,)``; ``()`` otherwise."""
        return (2,) if arg.get("words") else ()

    def roles(self) -> set:
        return {a["role"] for a in self.inputs}

    # -- a fresh state ---------------------------------------------------------------------------

    def initial_state(self, n: int, value_of, *, rng_seed: int) -> dict:
        """The state of ``n`` elements: every input that lives in the state, with ``value_of(name)``
        for the model's variables (a scalar or an ``(n,)`` array) and the bookkeeping entries
        (refractoriness, noise seed, step counter) at their starting values."""
        state = {}
        for a in self.inputs:
            role, name, dtype = a["role"], a["name"], self.dtype(a)
            if role == "per_step":
                continue
            if role in _START:
                state[name] = jnp.asarray(_START[role](n), dtype)
            elif role == "seed":
                state[name] = jnp.asarray(rng_seed, dtype)
            elif role == "not_refractory":
                state[name] = jnp.ones((n,), dtype)
            else:
                arr = jnp.asarray(value_of(name), dtype=dtype)
                if a["shape"] == "batch":  # (shared): one value for the population
                    if arr.ndim != 0:
                        raise ModelError(
                            f"init_state: {name!r} is shared: give one value, not shape {arr.shape}", field=name
                        )
                elif arr.ndim == 0:
                    arr = jnp.full((n,), arr, dtype=dtype)
                elif arr.shape != (n,):
                    raise ModelError(
                        f"init_state: {name!r} has shape {arr.shape}, but the group has n={n} elements: give one "
                        f"value or an ({n},) array",
                        field=name,
                    )
                state[name] = arr
        return state

    # -- operands ----------------------------------------------------------------------------------

    def operands(self, state: Mapping, inputs: Mapping, *, n: int, reference: str, steps: int) -> list:
        """The operands of the call, in layout order, each checked against its entry in ``state``
        (``(n,)`` per element, ``()`` per population) or ``inputs`` (``(steps, n)``)."""
        args = []
        for a in self.inputs:
            role, name = a["role"], a["name"]
            key = name
            where = f"inputs[{name!r}]" if role == "per_step" else f"state[{key!r}]"
            if role == "per_step":
                x = inputs[name]
            elif role == "time":
                x = state.get(key, clock.words(0.0))
            else:
                if key not in state:
                    raise KeyError(f"the state is missing {key!r} (build it with init_state)")
                x = state[key]
            x = jnp.asarray(to_kernel_units(x, where))
            tail = self.trailing(a)
            if role == "per_step":
                expect = (steps, n)
                if x.shape != expect:
                    detail = ""
                    if x.ndim == 2 and x.shape[0] == steps:
                        detail = f": {x.shape[1]} columns, but state[{reference!r}] has {n} elements"
                    elif x.ndim == 2 and x.shape[1] == n:
                        detail = f": {x.shape[0]} rows, but the run has steps={steps}"
                    raise ValueError(f"{where} has shape {x.shape}, expected (steps, N) = {expect}{detail}")
                shaped = x.reshape((1, steps, n))
            elif a["shape"] == "batch":
                if x.shape != tail:
                    raise ValueError(f"{where} has shape {x.shape}, expected {tail} (one value for the population)")
                shaped = x.reshape((1,) + tail)
            elif tail:
                if x.shape != (n,) + tail:
                    raise ValueError(
                        f"{where} has shape {x.shape}, expected {(n,) + tail}: one float64 time per element, "
                        "as int32 word pairs (spikeforge.clock)"
                    )
                shaped = x
            else:
                if x.shape != (n,):
                    if x.ndim == 1:
                        raise ValueError(
                            f"{where} has shape {x.shape}, expected ({n},): state[{reference!r}] has {n} elements "
                            f"and {where} has {x.shape[0]}; every per-element value needs one entry per element"
                        )
                    raise ValueError(f"{where} has shape {x.shape}, expected ({n},)")
                shaped = x
            want = self.dtype(a)
            if x.dtype != want:
                raise TypeError(f"{where} has dtype {x.dtype}, expected {want} (the model runs in {self.real})")
            args.append(shaped)
        return args

    # -- results -----------------------------------------------------------------------------------

    def result_structs(self, *, n: int, n_rec: int, spike_capacity: int = 0, n_ckpt: int = 0) -> list:
        shape = {
            "neuron": (n,),
            "batch": (1,),
            "trace": (1, n_rec, n),
            "spikes": (1, spike_capacity),
            "checkpoint": (1, n_ckpt, n),
        }
        return [jax.ShapeDtypeStruct(shape[a["shape"]] + self.trailing(a), self.dtype(a)) for a in self.outputs]

    def unpack(self, state: Mapping, results, *, n: int, n_rec: int) -> tuple[dict, dict, dict]:
        """(new state, traces by name, other results by role, checkpoints by name): each result
        put back where its operand came from (the time of the state is the kernel's); traces and
        the spike train
        reshaped to ``(n_rec, n)``."""
        new_state, traces, others = dict(state), {}, {}
        for a, r in zip(self.outputs, results):
            if a["role"] == "trace":
                traces[a["name"].split(":", 1)[1]] = r.reshape((n_rec, n))
            elif a["role"] == "spike_train":
                others["spike_train"] = r.reshape((n_rec, n))
            elif a["role"] == "time":
                new_state[a["name"]] = r.reshape(self.trailing(a))
            elif a["role"] in ("state", "param", "lastspike", "not_refractory"):
                new_state[a["name"]] = r
            elif a["role"] == "checkpoint":
                # Several per variant: by name (``checkpoint:v``), kept as (1, n_ckpt, n).
                others[a["name"]] = r
            else:
                others[a["role"]] = r
        return new_state, traces, others
