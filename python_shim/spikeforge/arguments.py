"""The arguments users give (counts, durations, names, constants) checked and brought into the form
the library takes, each mistake reported as a :class:`~spikeforge.errors.ModelError` that names
the argument.

Why here and not in Rust: these values never reach the model text (a step count is an FFI
attribute, ``n`` a shape), and Python can say which argument was wrong in the caller's own terms
(``steps=10.7``, ``constants['tau']``, ``init_state(-3)``) before any JAX shape error or FFI
cast hides it.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping, Sequence

import jax
import numpy as np

from .errors import ModelError
from .units import TIME, to_kernel_units

__all__ = ["count", "duration", "time_step", "steps_for", "number", "constant", "constants", "names"]

_INT64_MAX = 2**63 - 1


def count(value, what: str, *, minimum: int = 1) -> int:
    """An integer ``>= minimum`` (Python or numpy integers, ``np.uint64`` included; not floats,
    not bools), as a Python ``int`` that fits in int64."""
    if isinstance(value, jax.core.Tracer):
        raise ModelError(
            f"{what} is a traced value: it sets shapes or the kernel's loop, so it must be a Python or "
            f"numpy integer (make it static: jax.jit(..., static_argnames=...))",
            field=what,
        )
    if isinstance(value, (bool, np.bool_)):
        raise ModelError(f"{what} must be an integer, got {value!r}", field=what)
    try:
        n = operator.index(value)
    except TypeError:
        hint = " (a float is not rounded or truncated here)" if isinstance(value, (float, np.floating)) else ""
        raise ModelError(f"{what} must be an integer, got {value!r}{hint}", field=what) from None
    if n < minimum:
        raise ModelError(f"{what} must be >= {minimum}, got {n}", field=what)
    if n > _INT64_MAX:
        raise ModelError(f"{what}={n} does not fit in a 64-bit integer", field=what)
    return int(n)


def duration(value, what: str, *, allow_zero: bool = True) -> float:
    """A duration in ms: a number (already in ms) or a quantity of time; finite and ``>= 0``
    (``> 0`` without ``allow_zero``)."""
    value = to_kernel_units(value, what, expect=TIME)
    if isinstance(value, jax.core.Tracer):
        raise ModelError(
            f"{what} is a traced value: it is compiled into the kernel, so it must be a Python number "
            f"(make it static: jax.jit(..., static_argnames={what!r}))",
            field=what,
        )
    try:
        array = np.asarray(value)
    except Exception:  # noqa: BLE001 - whatever it is, it is not a number
        array = None
    if array is None or array.ndim != 0 or array.dtype.kind not in "iuf":
        raise ModelError(f"{what} must be a number (ms) or a time quantity, got {value!r}", field=what)
    t = float(array)
    if not math.isfinite(t) or t < 0 or (t == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ModelError(f"{what} must be a finite duration {bound} (ms), got {value!r}", field=what)
    return t


def time_step(dt) -> float:
    """``dt`` in ms, finite and positive."""
    return duration(dt, "dt", allow_zero=False)


# Brian2's tolerance when it turns a run's duration into steps (brian2.core.clocks.Clock).
_EPSILON_DT = 1e-4


def steps_for(duration_ms: float, dt: float) -> int:
    """The steps of ``dt`` in ``duration_ms``, as Brian2 counts them: the nearest integer when the
    duration is a whole number of steps up to 1e-4 of a step, else rounded up."""
    n = round(duration_ms / dt)
    if abs(n * dt - duration_ms) > _EPSILON_DT * dt:
        n = math.ceil(duration_ms / dt)
    return count(n, "steps (from duration / dt)")


def number(value, what: str, *, field: str, array_hint: str = "") -> float:
    """One finite number: a plain number (already in the kernels' units) or a quantity of any
    dimension the unit system covers. ``what`` names it in messages (``constants['tau']``)."""
    value = to_kernel_units(value, what)
    if isinstance(value, str):
        raise ModelError(
            f"{what} is the string {value!r}: give a number (in the kernels' units: ms, mV, nA, uS, nF, "
            "MOhm, um, mM) or a Brian2 / brainunit quantity such as 10*ms; expressions belong in the "
            "equations",
            field=field,
        )
    if isinstance(value, jax.core.Tracer):
        raise ModelError(f"{what} is a traced value: it is compiled into the kernel{array_hint}", field=field)
    try:
        array = np.asarray(value)
    except Exception:  # noqa: BLE001 - whatever it is, it is not a number
        array = None
    if array is None or array.dtype.kind not in "biuf":
        raise ModelError(f"{what} must be a number, got {value!r}", field=field)
    if array.ndim != 0:
        raise ModelError(f"{what} is an array of shape {array.shape}: it must be one number{array_hint}", field=field)
    v = float(array)
    if not math.isfinite(v):
        raise ModelError(f"{what} must be finite, got {value!r}", field=field)
    return v


def constant(name: str, value) -> float:
    """One of a model's ``constants=``: one number for the whole model (see :func:`number`); a
    per-neuron array is not a constant, it goes to ``init_state``."""
    hint = (
        f"; to give every neuron its own value, pass it to init_state(n, {name}=array) (per neuron) "
        f"or run(inputs={{{name!r}: array}}) (per step)"
    )
    return number(value, f"constants[{name!r}]", field="constants", array_hint=hint)


def constants(values: Mapping | None) -> dict:
    """A model's ``constants=``: name -> number (see :func:`constant`)."""
    if values is None:
        return {}
    if not isinstance(values, Mapping):
        raise ModelError(f"constants must be a mapping name -> value, got {type(values).__name__}", field="constants")
    out = {}
    for k, v in values.items():
        if not isinstance(k, str):
            raise ModelError(f"constants: names must be strings, got {k!r}", field="constants")
        out[k] = constant(k, v)
    return out


def names(values, what: str) -> tuple[str, ...]:
    """A sequence of distinct variable names (one string is one name)."""
    if isinstance(values, str):
        values = (values,)
    if not isinstance(values, Sequence):
        raise ModelError(f"{what} must be a list of names, got {values!r}", field=what)
    out = tuple(values)
    for v in out:
        if not isinstance(v, str):
            raise ModelError(f"{what} must hold variable names (strings), got {v!r}", field=what)
    repeated = sorted({v for v in out if out.count(v) > 1})
    if repeated:
        raise ModelError(f"{what} names {', '.join(map(repr, repeated))} more than once: name each once", field=what)
    return out
