"""``Group``: what every group of a model shares, whichever front end defined it.

Why a base class: a group (a neuron population now; synapse groups next) is a model spec that the
library validates and compiles into variants (one per dtype, ``dt``, recorded variables, per-element
and per-step inputs), whose state is laid out by the library. Equations and model classes are two
front ends that each produce a :class:`Definition` (the dynamics part of the spec, default values,
how to locate an error in what the user wrote); ``Group.__init__`` does the rest for both, so every
attribute exists whichever front end was used.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from . import _native, arguments
from .equations import equations_text
from .errors import ModelError
from .layout import Layout
from .surrogate import Surrogate
from .units import to_kernel_units

__all__ = ["Definition", "Group", "METHODS"]

# Brian2's integration schemes; "linear" is Brian2's other name for "exact".
METHODS = ("euler", "rk2", "heun", "rk4", "exponential_euler", "exact", "linear")

# Real dtypes a state may have. float16 and bfloat16 are storage types: the kernel loads them
# into float32 registers once, computes in float32 and rounds once when it stores.
REAL_DTYPES = ("float32", "float64", "float16", "bfloat16")

# The dt of the variant compiled when a group is defined (validation and the layout).
_DEFINITION_DT = 0.1

# Its precision: the widest, since the model may run in either. A number float32 cannot hold
# (a constant of 1e39, a dt of 1e-300) is refused when a float32 variant is compiled (run,
# source), with the same located error.
_DEFINITION_DTYPE = "float64"


def dtype_name(dtype, what: str = "the state") -> str:
    name = jnp.dtype(dtype).name
    if name not in REAL_DTYPES:
        raise TypeError(f"{what} has dtype {name}: spikeforge states are float32, float64, float16 or bfloat16")
    return name


class Definition:
    """What a front end read from the user.

    ``spec``: the dynamics part of the model spec (``{"equations": text}``, or the model-class
    entry); ``constants``: constants the definition brings (a model class's parameters);
    ``initial``: initial values of stored variables (a model class's defaults). :meth:`locate`
    adds the place in the user's source to an error the library reports.
    """

    def __init__(self, spec: Mapping, *, constants: Mapping = (), initial: Mapping = ()):
        self.spec = dict(spec)
        self.constants = dict(constants)
        self.initial = dict(initial)

    def locate(self, error: ModelError) -> ModelError:
        return error


def _text(value, field: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise ModelError(f"{field} must be a string (code) or None, got {value!r}", field=field)


def _refractory(value):
    """``refractory=``: None/False (none), a duration (a number in ms or a time quantity), or a
    string (a duration expression or a condition, read by the library)."""
    if value is None or value is False:
        return None
    if isinstance(value, str):
        return value
    return arguments.duration(value, "refractory")


class Group:
    """A group of elements (neurons) sharing one model; see :class:`spikeforge.NeuronModel`.

    ``equations``: a string or a ``brian2.Equations`` (the equation front end), or the
    :class:`Definition` another front end made (a model class: :class:`spikeforge.PythonModel`).

    Attributes: ``state_variables``, ``parameters``, ``shared_parameters``, ``subexpressions``,
    ``constants``, ``method`` (the scheme used: the one given or the one chosen), ``substeps``,
    ``threshold``, ``reset``, ``refractory``, ``fast_math``, ``surrogate``, ``definition``.
    """

    def __init__(
        self,
        equations,
        threshold: str | None = None,
        reset: str | None = None,
        refractory=None,
        constants: Mapping | None = None,
        method: str | None = None,
        fast_math: bool = False,
        substeps: int = 1,
        surrogate: Surrogate | None = None,
    ):
        if surrogate is not None and not isinstance(surrogate, Surrogate):
            raise ModelError(
                f"surrogate must be made by spikeforge.surrogate (fast_sigmoid, sigmoid, arctan, "
                f"piecewise_linear) or None, got {surrogate!r}",
                field="surrogate",
            )
        if method is not None and method not in METHODS:
            raise ModelError(f"method must be one of {METHODS} or None (automatic), got {method!r}", field="method")
        if isinstance(equations, Definition):
            definition = equations
        else:
            definition = Definition({"equations": equations_text(equations)})
        self.definition = definition
        self.threshold = _text(threshold, "threshold")
        self.reset = _text(reset, "reset")
        self.refractory = _refractory(refractory)
        self.constants = {**definition.constants, **arguments.constants(constants)}
        self.fast_math = bool(fast_math)
        self.substeps = arguments.count(substeps, "substeps")
        self._base = {
            **definition.spec,
            "threshold": self.threshold,
            "reset": self.reset,
            "refractory": self.refractory,
            "constants": dict(self.constants),
            "method": method,
            "fast_math": self.fast_math,
        }
        self.surrogate = surrogate
        if surrogate is not None:
            # Left out when absent, like the Rust spec does, so that cache keys stay as they were.
            self._base["surrogate"] = surrogate.spec()
        if self.substeps != 1:
            # Left out when 1, like the Rust spec does, so that cache keys stay as they were.
            self._base["substeps"] = self.substeps
        self._variants: dict = {}
        info = self._variant(dt=_DEFINITION_DT, dtype=_DEFINITION_DTYPE, per_neuron=(), per_step=(), record=())
        inputs = info["layout"]["inputs"]
        self.state_variables: tuple = tuple(info["states"])
        self.parameters: tuple = tuple(a["name"] for a in inputs if a["role"] == "param")
        self.shared_parameters: tuple = tuple(
            a["name"] for a in inputs if a["role"] == "param" and a["shape"] == "batch"
        )
        self.subexpressions: tuple = tuple(info["subexpressions"])
        self.method: str = info["method"]
        """The integration scheme used: the one given, or the one chosen when ``method=None``."""

    def __repr__(self):
        return (
            f"{type(self).__name__}(states={self.state_variables}, "
            f"parameters={self.parameters}, method={self.method!r})"
        )

    # -- compilation ------------------------------------------------------------------------

    def _spec(
        self, *, dt, dtype, per_neuron, per_step, record, spikes=False, spike_train=False, checkpoint=False
    ) -> dict:
        storage = {"storage": dtype} if dtype in ("float16", "bfloat16") else {}
        # Left out when False, like the Rust spec does, so that cache keys stay as they were.
        spike_record = {"record_spikes": True} if spikes else {}
        if spike_train:
            spike_record["record_spike_train"] = True
        # The forward pass under differentiation also writes the adjoint's checkpoints.
        checkpoints = {"checkpoint": True} if checkpoint else {}
        return dict(
            self._base,
            **storage,
            **spike_record,
            **checkpoints,
            dt=float(dt),
            dtype="float32" if storage else dtype,
            per_neuron=list(per_neuron),
            per_step=list(per_step),
            record=list(record),
        )

    def _native_error(self, error: Mapping) -> ModelError:
        return self.definition.locate(ModelError.from_native(error))

    def _variant(
        self, *, dt, dtype, per_neuron, per_step, record, spikes=False, spike_train=False, checkpoint=False
    ) -> dict:
        """The library's answer for one variant (spec, cache key, layout), compiled once."""
        key = (
            float(dt),
            dtype,
            tuple(per_neuron),
            tuple(per_step),
            tuple(record),
            bool(spikes),
            bool(spike_train),
            bool(checkpoint),
        )
        if key not in self._variants:
            spec = self._spec(
                dt=dt,
                dtype=dtype,
                per_neuron=per_neuron,
                per_step=per_step,
                record=record,
                spikes=spikes,
                spike_train=spike_train,
                checkpoint=checkpoint,
            )
            info = _native.model_compile(json.dumps(spec))
            if not info.get("ok"):
                raise self._native_error(info["error"])
            self._variants[key] = info
        return self._variants[key]

    def source(
        self,
        target: str = "cuda",
        *,
        dt: float = _DEFINITION_DT,
        dtype=jnp.float32,
        record: Sequence[str] = (),
        per_neuron: Sequence[str] = (),
        per_step: Sequence[str] = (),
    ) -> str:
        """The generated kernel source for ``target`` ("cuda" or "c")."""
        spec = self._spec(
            dt=arguments.time_step(dt),
            dtype=dtype_name(dtype, "dtype"),
            per_neuron=arguments.names(per_neuron, "per_neuron"),
            per_step=arguments.names(per_step, "per_step"),
            record=arguments.names(record, "record"),
        )
        out = _native.model_source(json.dumps(spec), target)
        if not out.get("ok"):
            raise self._native_error(out["error"])
        return out["source"]

    # -- state ------------------------------------------------------------------------------

    def init_state(self, n: int, /, dtype=jnp.float32, rng_seed: int = 0, **values) -> dict:
        """A state dict for ``n`` elements. Any state variable or parameter may be given as a
        scalar or an ``(n,)`` array (or a quantity: converted to the kernels' units), or as an
        expression in the model's language (``v='v_r + rand()*(v_t - v_r)'``); the others start at
        their defaults (0 for equations). A constant given here becomes a per-element array for
        this state.

        Expressions are evaluated by the library (never by Python) when the state is made, in
        the order given, each seeing the values given or set before it, as Brian2's assignments
        do; they may read the model's variables, constants and subexpressions, ``i``, ``N``,
        units, ``pi``, ``e`` and every function. ``rand()`` / ``randn()`` draw from the initial-value
        stream keyed by ``rng_seed`` (the same numbers on every platform)."""
        n = arguments.count(n, "init_state: n")
        dtype = jnp.dtype(dtype)
        dtype_name(dtype, "init_state: dtype")
        known = set(self.state_variables) | set(self.parameters) | set(self.constants)
        for k in values:
            if k not in known:
                raise ModelError(
                    f"init_state: unknown variable {k!r}; the model has states {self.state_variables}, "
                    f"parameters {self.parameters} and constants {tuple(self.constants)}",
                    field=k,
                )
        values = {k: v if isinstance(v, str) else to_kernel_units(v, f"init_state: {k!r}") for k, v in values.items()}
        per_neuron = tuple(sorted(k for k in values if k in self.constants))
        info = self._variant(dt=_DEFINITION_DT, dtype=_DEFINITION_DTYPE, per_neuron=per_neuron, per_step=(), record=())
        if any(isinstance(v, str) for v in values.values()):
            values = self._evaluate_initial(info, n, rng_seed, values)
        initial = self.definition.initial

        def value_of(name):
            if name in values:
                return values[name]
            return initial.get(name, self.constants.get(name, 0.0))

        return Layout(info["layout"], dtype).initial_state(n, value_of, rng_seed=_seed(rng_seed))

    def _evaluate_initial(self, info: Mapping, n: int, rng_seed, values: dict) -> dict:
        """``values`` with its expressions replaced by their values, computed by the library
        (``sf_initial_values``) from the other values and the defaults."""
        initial = self.definition.initial
        seed = _concrete(rng_seed, "rng_seed")
        given = {}
        for a in info["layout"]["inputs"]:
            name = a["name"]
            if a["role"] not in ("state", "param", "per_neuron_constant"):
                continue
            value = values.get(name, initial.get(name, self.constants.get(name, 0.0)))
            if isinstance(value, str):
                continue
            array = np.asarray(_concrete(value, f"init_state: {name!r}"), dtype=np.float64)
            if array.ndim == 0:
                given[name] = float(array)
            elif array.shape == (n,):
                given[name] = {"base64": base64.b64encode(array.astype("<f8").tobytes()).decode("ascii")}
        statements = [[k, v] for k, v in values.items() if isinstance(v, str)]
        answer = _native.initial_values(
            dict(spec=info["spec"], n=n, seed=int(_seed(seed)), values=given, statements=statements)
        )
        if not answer.get("ok"):
            error = answer["error"]
            if error.get("kind") != "model":
                raise ModelError(f"init_state: {error['message']}", field="init_state")
            raise self._native_error(error)
        out = dict(values)
        for name, data in answer["values"]:
            out[name] = np.frombuffer(base64.b64decode(data), dtype="<f8")
        return out


def _concrete(value, what: str):
    """A value an expression of ``init_state`` reads: known now, not traced."""
    if isinstance(value, jax.core.Tracer):
        raise ModelError(
            f"{what} is a traced value, but initial values given as expressions are evaluated when the "
            "state is made: call init_state outside jax.jit / jax.vmap, or give the values as arrays",
            field="init_state",
        )
    return value


def _seed(value):
    """The noise seed: an int32 (or a traced int32 under vmap)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        if not -(2**31) <= int(value) < 2**31:
            raise ModelError(f"rng_seed must fit in int32, got {value}", field="rng_seed")
    return value
