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

from .errors import ModelError
from .units import to_kernel_units

__all__ = ["Layout", "NEVER_SPIKED", "STEP_COUNTER"]

# The step counter of a neuron that never spiked: far enough in the past for any refractory period.
NEVER_SPIKED = -(10**9)

STEP_COUNTER = "t_step"
"""The state entry holding the step counter (the ``start_step`` operand, named ``t0`` in the layout)."""

# Where each role's operand comes from: the per-step inputs, or the state under another name.
_STATE_KEY = {"start_step": STEP_COUNTER}


class Layout:
    """The argument layout of one compiled variant: ``inputs`` and ``outputs``, each a list of
    ``{"name", "role", "elem", "shape"}`` (element type ``real`` is the model's dtype)."""

    def __init__(self, layout: Mapping, real_dtype):
        self.inputs = list(layout["inputs"])
        self.outputs = list(layout["outputs"])
        self.real = np.dtype(real_dtype)

    def dtype(self, arg: Mapping) -> np.dtype:
        return self.real if arg["elem"] == "real" else np.dtype(arg["elem"])

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
            if role == "start_step":
                state[STEP_COUNTER] = jnp.zeros((), dtype)
            elif role == "seed":
                state[name] = jnp.asarray(rng_seed, dtype)
            elif role == "lastspike_step":
                state[name] = jnp.full((n,), NEVER_SPIKED, dtype)
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
            key = _STATE_KEY.get(role, name)
            where = f"inputs[{name!r}]" if role == "per_step" else f"state[{key!r}]"
            if role == "per_step":
                x = inputs[name]
            elif role == "start_step":
                x = state.get(key, np.zeros((), self.dtype(a)))
                if steps > np.iinfo(self.dtype(a)).max:
                    raise ModelError(
                        f"steps={steps} is more than the step counter ({self.dtype(a)}) can count", field="steps"
                    )
            else:
                if key not in state:
                    raise KeyError(f"the state is missing {key!r} (build it with init_state)")
                x = state[key]
            x = jnp.asarray(to_kernel_units(x, where))
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
                if x.shape != ():
                    raise ValueError(f"{where} has shape {x.shape}, expected () (one value for the population)")
                shaped = x.reshape((1,))
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

    def result_structs(self, *, n: int, n_rec: int) -> list:
        shape = {"neuron": (n,), "trace": (1, n_rec, n)}
        return [jax.ShapeDtypeStruct(shape[a["shape"]], self.dtype(a)) for a in self.outputs]

    def unpack(self, state: Mapping, results, *, n: int, n_rec: int, steps: int) -> tuple[dict, dict, dict]:
        """(new state, traces by name, other results by role): each result put back where its
        operand came from, the step counter advanced by ``steps``; traces reshaped to
        ``(n_rec, n)``."""
        new_state, traces, others = dict(state), {}, {}
        counter = next(self.dtype(a) for a in self.inputs if a["role"] == "start_step")
        new_state[STEP_COUNTER] = jnp.asarray(state.get(STEP_COUNTER, 0), counter) + jnp.asarray(steps, counter)
        for a, r in zip(self.outputs, results):
            if a["role"] == "trace":
                traces[a["name"].split(":", 1)[1]] = r.reshape((n_rec, n))
            elif a["role"] in ("state", "param", "lastspike_step", "not_refractory"):
                new_state[a["name"]] = r
            else:
                others[a["role"]] = r
        return new_state, traces, others
