"""Model classes in the style of ``neural`` / NeuroDriver: ``Default_States``, ``Default_Params``,
``Default_Inters`` and an ``ode()`` method, compiled to the same fused kernel as equations.

::

    class Oizumi(sf.Model):
        Default_Inters = {"p": 0.0, "NT": 0}
        Default_States = {"N": (51.0, 0.0, 51.0), "g": (0.0, 0.0, 1000.0)}
        Default_Params = {"N0": 51, "q": 1.07, "tauO": 10, "tauN0": 100, "pmax": 0.79, "Kpre": 0.0035}

        def ode(self, input=0, f=1.0):
            self.p = self.pmax * np.exp(-self.Kpre * f)
            ...

    model = sf.NeuronModel.from_class(Oizumi, method="rk4")
    state = model.init_state(100)                       # every variable at its default
    state, out = model.run(state, dt=0.1, steps=1000, inputs={"input": spikes})

The source of ``ode()`` (``inspect.getsource``) is sent to the Rust library, which parses the
Python subset it uses and lowers it to the same IR as equations; nothing of the class runs at
kernel time. The semantics of one step (docs/DESIGN.md, "Python model classes"): ``ode()`` runs
on the stored values; its direct assignments (``self.x = ...``, ``self.g += ...``) give each
variable's value at the end of the call, to which the integrator's increment from the
derivatives ``self.d_x`` is added; then the states are clipped to their ``(min, max)`` bounds.
For ``euler`` that is exactly ``neural``'s forward Euler.

* ``Default_States``: ``name -> initial`` or ``name -> (initial, min, max)`` (``None`` for no
  bound). A state whose ``self.d_x`` ``ode()`` assigns is integrated; one it only assigns (OTP's
  ``v`` and ``I``) is stored as computed.
* ``Default_Params``: read-only values (``self.x``), folded into the kernel unless given per
  neuron to ``init_state`` (or per step in ``run(inputs=...)``).
* ``Default_Inters``: per-neuron values ``ode()`` writes and reads back, not integrated.
* ``ode()``'s keyword arguments are inputs with their defaults: give them per neuron to
  ``init_state`` or per step to ``run(inputs=...)`` (a spike indicator, a current).

Values in the class may be numbers (in the kernels' units) or Brian2 / brainunit quantities.

This module is the model-class front end on the Python side: :class:`ModelClass` reads the class
into a :class:`~spikeforge.group.Definition` (the spec's model-class entry, defaults, and the file
and line of ``ode()`` for errors); :class:`PythonModel` is the :class:`~spikeforge.NeuronModel`
built from it.
"""

from __future__ import annotations

import inspect
import textwrap

from . import arguments
from .errors import ModelError
from .group import Definition
from .neuron import NeuronModel

__all__ = ["Model", "ModelClass", "PythonModel", "SPEC_KEY"]

SPEC_KEY = "python_model"
"""The key of the model-class entry in the model spec (docs/DESIGN.md)."""


class Model:
    """A minimal base for model classes (``neural``'s ``Model`` works as well: only the class
    attributes below and ``ode()`` are read)."""

    Default_States: dict = {}
    Default_Params: dict = {}
    Default_Inters: dict = {}

    def ode(self, **inputs):  # pragma: no cover - overridden by every model
        raise NotImplementedError


def _number(value, what: str) -> float:
    return arguments.number(value, what, field="model class")


def _state_entry(cls_name: str, name: str, value):
    """``initial`` or ``(initial, min, max)`` -> (initial, min, max) with ``None`` for no bound."""
    what = f"{cls_name}.Default_States[{name!r}]"
    if isinstance(value, (tuple, list)):
        if len(value) != 3:
            raise ModelError(f"{what} must be a number or (initial, min, max), got {value!r}", field="model class")
        initial = _number(value[0], what + " initial value")
        lo = None if value[1] is None else _number(value[1], what + " min")
        hi = None if value[2] is None else _number(value[2], what + " max")
        if lo is not None and hi is not None and lo > hi:
            raise ModelError(f"{what}: min {lo} > max {hi}", field="model class")
        if (lo is not None and initial < lo) or (hi is not None and initial > hi):
            raise ModelError(f"{what}: the initial value {initial} is outside [{lo}, {hi}]", field="model class")
        return initial, lo, hi
    return _number(value, what), None, None


def _ode_source(cls) -> tuple[str, str, int]:
    """The dedented source of ``cls.ode``, its file and the line of its ``def``."""
    ode = getattr(cls, "ode", None)
    if ode is None or not callable(ode):
        raise TypeError(f"{cls.__name__} has no ode() method")
    try:
        lines, first = inspect.getsourcelines(ode)
        filename = inspect.getsourcefile(ode) or "<unknown>"
    except (OSError, TypeError) as e:
        raise TypeError(
            f"the source of {cls.__name__}.ode() cannot be read ({e}); define the class in a file "
            "(or a notebook cell), not through exec or the plain REPL"
        ) from None
    return textwrap.dedent("".join(lines)), filename, first


def _ode_defaults(cls) -> dict:
    """The keyword arguments of ``ode()`` after ``self`` and their defaults (those without a
    default are left for the Rust front end to report, with their place)."""
    sig = inspect.signature(cls.ode)
    out = {}
    for k, p in enumerate(sig.parameters.values()):
        if k == 0:
            continue
        if p.default is not inspect.Parameter.empty:
            out[p.name] = _number(p.default, f"the default of {cls.__name__}.ode()'s argument {p.name!r}")
    return out


class ModelClass(Definition):
    """A model class read for the library: the spec's model-class entry (the source of ``ode()``,
    states with their bounds, internals, parameter names), its parameters and ``ode()`` defaults
    as constants, its states' and internals' defaults as initial values.

    ``model_class``: the class; ``bounds``: state -> (min, max); ``defaults``: stored variable ->
    initial value; ``inputs``: ``ode()``'s keyword arguments.
    """

    def __init__(self, cls):
        if not isinstance(cls, type):
            cls = type(cls)
        name = cls.__name__
        states = {str(k): _state_entry(name, k, v) for k, v in dict(getattr(cls, "Default_States", {}) or {}).items()}
        if not states:
            raise ModelError(f"{name}.Default_States is empty: a model needs at least one state", field="model class")
        params = {
            str(k): _number(v, f"{name}.Default_Params[{k!r}]")
            for k, v in (getattr(cls, "Default_Params", {}) or {}).items()
        }
        internals = {
            str(k): _number(v, f"{name}.Default_Inters[{k!r}]")
            for k, v in (getattr(cls, "Default_Inters", {}) or {}).items()
        }
        source, filename, first_line = _ode_source(cls)
        inputs = _ode_defaults(cls)
        self.model_class = cls
        self.bounds = {k: (lo, hi) for k, (_, lo, hi) in states.items()}
        self.defaults = {k: init for k, (init, _, _) in states.items()}
        self.defaults.update(internals)
        self.inputs = tuple(inputs)
        self.where = (name, filename, first_line)
        entry = {
            "class_name": name,
            "source": source,
            "states": [{"name": k, "min": lo, "max": hi} for k, (_, lo, hi) in states.items()],
            "internals": list(internals),
            "params": list(params),
        }
        super().__init__({SPEC_KEY: entry}, constants={**params, **inputs}, initial=self.defaults)

    def locate(self, error: ModelError) -> ModelError:
        """Adds the file and line of ``ode()`` to errors located in it (lines count from its def)."""
        if error.field != "ode" or error.line is None:
            return error
        name, filename, first = self.where
        located = ModelError(
            f"{name}.ode() ({filename}, line {first + error.line - 1}): {error}",
            field=error.field,
            line=error.line,
            column=error.column,
            suggestion=error.suggestion,
        )
        located.detail = error.detail
        located.file_line = first + error.line - 1
        return located


class PythonModel(NeuronModel):
    """A :class:`NeuronModel` defined by a model class (see the module docstring); what
    :meth:`NeuronModel.from_class` returns.

    Runs like any :class:`NeuronModel` (``init_state``, ``run``, ``source``) and has all its
    attributes; ``init_state`` starts every state and internal at its class default. Also:
    ``model_class``, ``bounds``, ``defaults`` and ``inputs`` (``ode()``'s arguments).
    """

    def __init__(self, cls, method: str | None = "euler", fast_math: bool = False, **kwargs):
        if kwargs.get("substeps", 1) != 1:
            # The library's model-class step ignores sub-steps (one step of dt per step): refused
            # here until it integrates them, rather than silently running with the wrong dt.
            raise ModelError(
                "substeps: model classes are integrated with one step of dt per step; give a smaller dt instead",
                field="substeps",
            )
        definition = ModelClass(cls)
        self.model_class = definition.model_class
        self.bounds = definition.bounds
        self.defaults = definition.defaults
        self.inputs = definition.inputs
        super().__init__(definition, method=method, fast_math=fast_math, **kwargs)

    def __repr__(self):
        name = self.model_class.__name__
        return f"PythonModel({name}, states={self.state_variables}, inputs={self.inputs}, method={self.method!r})"
