"""``NeuronModel``: Brian2-style equations -> a fused, generated kernel callable from ``jax.jit``.

A model is validated in Rust when it is defined, so a mistake raises :class:`ModelError` at
once, with the line, the column and a caret. ``run`` binds the ``spikeforge_neuron_run``
primitive, which lowers to an XLA FFI call into the Rust library; the kernel is generated,
compiled (NVRTC for CUDA, the system C compiler for the CPU) and cached the first time a
variant (dtype, dt, recorded variables, per-neuron / per-step inputs) is used.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from . import _native
from .primitive import XLACustomKernel

__all__ = ["NeuronModel", "ModelError", "RunResult", "neuron_run_p"]

# The step counter of a neuron that never spiked: far enough in the past for any refractory period.
NEVER_SPIKED = -(10**9)


class ModelError(ValueError):
    """A mistake in a model, located: ``field``, ``line``, ``column``, with a caret rendering."""

    def __init__(self, error: Mapping):
        self.field = error.get("field")
        self.line = error.get("line")
        self.column = error.get("column")
        self.suggestion = error.get("suggestion")
        self.detail = error.get("message")
        super().__init__(error.get("rendered") or error.get("message"))


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class RunResult:
    """What a run produced besides the new state."""

    spike_count: jax.Array
    """``(N,)`` int32: spikes of each neuron during the run."""
    traces: dict = dataclasses.field(default_factory=dict)
    """name -> ``(ceil(steps / record_every), N)``: the value at the start of every k-th step."""


# -- the primitive -----------------------------------------------------------------------------

neuron_run_p = XLACustomKernel("spikeforge_neuron_run")


def _ffi_generator(*, outs, spec, key, steps, record_every, n_inner, shapes, **_):
    call = jax.ffi.ffi_call("spikeforge_neuron_run", outs)

    def kernel(*ins):
        return call(
            *ins,
            spec=spec,
            key=key,
            steps=np.int64(steps),
            record_every=np.int64(record_every),
            n_inner=np.int64(n_inner),
        )

    return kernel


neuron_run_p.def_kernel("spikeforge", "cpu", _ffi_generator)
neuron_run_p.def_kernel("spikeforge", "cuda", _ffi_generator)


def _fold(x, kind: str):
    """Merges a leading batch axis into the neuron (or batch-member) axis."""
    if kind == "neuron" or kind == "batch":
        return x.reshape((-1,))
    return x.reshape((-1,) + x.shape[2:])


@neuron_run_p.def_batching_rule
def _batch_rule(args, dims, *, outs, shapes, **params):
    """vmap without a scan: the batch becomes more neurons of the same kernel launch."""
    size = next(a.shape[d] for a, d in zip(args, dims) if d is not None)
    in_kinds, _ = shapes
    folded = []
    for a, d, kind in zip(args, dims, in_kinds):
        a = jnp.broadcast_to(a, (size,) + a.shape) if d is None else jnp.moveaxis(a, d, 0)
        folded.append(_fold(a, kind))
    new_outs = []
    for o in outs:
        shape = (size * o.shape[0],) + tuple(o.shape[1:])
        new_outs.append(jax.ShapeDtypeStruct(shape, o.dtype))
    res = neuron_run_p.bind(*folded, outs=tuple(new_outs), shapes=shapes, **params)
    res = [r.reshape((size,) + tuple(o.shape)) for r, o in zip(res, outs)]
    return res, [0] * len(res)


# -- the model ---------------------------------------------------------------------------------

_SHAPE_OF_ROLE = {"neuron": "neuron", "per_step": "per_step", "batch": "batch", "trace": "trace"}


def _normalise_refractory(refractory):
    if refractory is None or refractory is False:
        return None
    if isinstance(refractory, str):
        return refractory
    value = float(refractory)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"refractory must be a duration >= 0 or a condition string, got {refractory!r}")
    return value


# Real dtypes a state may have. float16 and bfloat16 are storage types: the kernel loads them
# into float32 registers once, computes in float32 and rounds once when it stores.
_REAL_DTYPES = ("float32", "float64", "float16", "bfloat16")


def roles_of_layout(info: dict) -> set:
    return {a["name"] for a in info["layout"]["inputs"]}


def _dtype_name(dtype) -> str:
    name = jnp.dtype(dtype).name
    if name not in _REAL_DTYPES:
        raise TypeError(f"spikeforge states are float32, float64, float16 or bfloat16, not {name}")
    return name


# Brian2's integration schemes; "linear" is Brian2's other name for "exact".
METHODS = ("euler", "rk2", "heun", "rk4", "exponential_euler", "exact", "linear")


class NeuronModel:
    """A population of neurons defined by equations (Brian2's names: equations, threshold,
    reset, refractory, method).

    ``method`` is one of ``METHODS``, or ``None`` to choose like Brian2 (exact integration for
    linear equations with constant coefficients, else Euler); ``model.method`` says which scheme
    is used. ``substeps=k`` integrates with ``k`` steps of ``dt / k`` per step of ``dt``
    (threshold, reset and recording stay once per ``dt``).

    Units in the equations are accepted and not converted: the kernel computes with the numbers
    as written, so keep one consistent unit system (e.g. mV, ms, nA, MOhm, pF).
    """

    # Parameters with one value per population (`(shared)`); set from the layout.
    shared_parameters: tuple = ()

    def __init__(
        self,
        equations: str,
        threshold: str | None = None,
        reset: str | None = None,
        refractory=None,
        constants: Mapping[str, float] | None = None,
        method: str | None = None,
        fast_math: bool = False,
        substeps: int = 1,
    ):
        if method is not None and method not in METHODS:
            raise ValueError(f"method must be one of {METHODS} or None (automatic), got {method!r}")
        if isinstance(substeps, bool) or not isinstance(substeps, int | np.integer) or substeps < 1:
            raise ValueError(f"substeps must be an integer >= 1, got {substeps!r}")
        self._base = {
            "equations": equations,
            "threshold": threshold,
            "reset": reset,
            "refractory": _normalise_refractory(refractory),
            "constants": {k: float(v) for k, v in (constants or {}).items()},
            "method": method,
            "fast_math": bool(fast_math),
        }
        if int(substeps) != 1:
            # Left out when 1, like the Rust spec does, so that cache keys stay as they were.
            self._base["substeps"] = int(substeps)
        self._variants: dict = {}
        info = self._variant(dt=0.1, dtype="float32", per_neuron=(), per_step=(), record=())
        self.state_variables: tuple = tuple(info["states"])
        self.parameters: tuple = tuple(a["name"] for a in info["layout"]["inputs"] if a["role"] == "param")
        self.shared_parameters: tuple = tuple(
            a["name"] for a in info["layout"]["inputs"] if a["role"] == "param" and a["shape"] == "batch"
        )
        self.subexpressions: tuple = tuple(info["subexpressions"])
        self.constants = dict(self._base["constants"])
        self.method: str = info["method"]
        """The integration scheme used: the one given, or the one chosen when ``method=None``."""
        self.substeps: int = int(substeps)

    @staticmethod
    def from_class(cls, method: str = "euler", fast_math: bool = False) -> NeuronModel:
        """A model from a ``neural``-style class (``Default_States``, ``Default_Params``,
        ``Default_Inters``, ``ode()``): see :class:`spikeforge.PythonModel`."""
        from .model_class import PythonModel

        return PythonModel(cls, method=method, fast_math=fast_math)

    def __repr__(self):
        states, params = getattr(self, "state_variables", ()), getattr(self, "parameters", ())
        return f"NeuronModel(states={states}, parameters={params}, method={getattr(self, 'method', None)!r})"

    # -- compilation ------------------------------------------------------------------------

    def _spec(self, *, dt, dtype, per_neuron, per_step, record) -> dict:
        storage = {"storage": dtype} if dtype in ("float16", "bfloat16") else {}
        return dict(
            self._base,
            **storage,
            dt=float(dt),
            dtype="float32" if storage else dtype,
            per_neuron=list(per_neuron),
            per_step=list(per_step),
            record=list(record),
        )

    def _variant(self, *, dt, dtype, per_neuron, per_step, record) -> dict:
        key = (float(dt), dtype, tuple(per_neuron), tuple(per_step), tuple(record))
        if key not in self._variants:
            spec = self._spec(dt=dt, dtype=dtype, per_neuron=per_neuron, per_step=per_step, record=record)
            info = _native.model_compile(json.dumps(spec))
            if not info.get("ok"):
                raise ModelError(info["error"])
            self._variants[key] = info
        return self._variants[key]

    def source(
        self,
        target: str = "cuda",
        *,
        dt: float = 0.1,
        dtype=jnp.float32,
        record: Sequence[str] = (),
        per_neuron: Sequence[str] = (),
        per_step: Sequence[str] = (),
    ) -> str:
        """The generated kernel source for ``target`` ("cuda" or "c")."""
        spec = self._spec(dt=dt, dtype=_dtype_name(dtype), per_neuron=per_neuron, per_step=per_step, record=record)
        out = _native.model_source(json.dumps(spec), target)
        if not out.get("ok"):
            raise ModelError(out["error"])
        return out["source"]

    # -- state ------------------------------------------------------------------------------

    def init_state(self, n: int, /, dtype=jnp.float32, rng_seed: int = 0, **values) -> dict:
        """A state dict for ``n`` neurons. Any state variable or parameter may be given as a
        scalar or an ``(n,)`` array (others start at 0); a constant given here becomes a
        per-neuron array for this state."""
        dtype = jnp.dtype(dtype)
        _dtype_name(dtype)
        known = set(self.state_variables) | set(self.parameters) | set(self.constants)
        for k in values:
            if k not in known:
                raise ValueError(
                    f"init_state: unknown variable {k!r}; the model has states {self.state_variables}, "
                    f"parameters {self.parameters} and constants {tuple(self.constants)}"
                )
        state = {}
        for name in self.state_variables + self.parameters + tuple(k for k in values if k in self.constants):
            v = values.get(name, self.constants.get(name, 0.0))
            arr = jnp.asarray(v, dtype=dtype)
            if name in self.shared_parameters:
                if arr.ndim != 0:
                    raise ValueError(f"init_state: {name!r} is shared: give one value, not shape {arr.shape}")
                state[name] = arr
                continue
            if arr.ndim == 0:
                arr = jnp.full((n,), arr, dtype=dtype)
            if arr.shape != (n,):
                raise ValueError(f"init_state: {name!r} has shape {arr.shape}, expected ({n},)")
            state[name] = arr
        refractory = self._base["refractory"]
        if refractory is not None:
            info = self._variant(dt=0.1, dtype="float32", per_neuron=(), per_step=(), record=())
            roles = {a["role"] for a in info["layout"]["inputs"]}
            if "lastspike_step" in roles:
                state["lastspike_step"] = jnp.full((n,), NEVER_SPIKED, dtype=jnp.int32)
            if "not_refractory" in roles:
                state["not_refractory"] = jnp.ones((n,), dtype=jnp.bool_)
        if "rng_seed" in roles_of_layout(self._variant(dt=0.1, dtype="float32", per_neuron=(), per_step=(), record=())):
            # The noise stream's seed: one per population (per batch member under vmap).
            state["rng_seed"] = jnp.asarray(rng_seed, dtype=jnp.int32)
        state["t_step"] = jnp.zeros((), dtype=jnp.int32)
        return state

    # -- running ----------------------------------------------------------------------------

    def run(
        self,
        state: Mapping,
        *,
        dt: float,
        steps: int,
        inputs: Mapping | None = None,
        record: Sequence[str] = (),
        record_every: int = 1,
    ):
        """Advances ``state`` by ``steps`` steps of ``dt`` in one kernel launch.

        ``inputs`` maps parameter or constant names to per-step arrays of shape ``(steps, N)``.
        Returns ``(new_state, RunResult)``.
        """
        steps = int(steps)
        record_every = int(record_every)
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        if record_every < 1:
            raise ValueError(f"record_every must be >= 1, got {record_every}")
        inputs = dict(inputs or {})
        if isinstance(record, str):
            record = (record,)
        first = self.state_variables[0] if self.state_variables else self.parameters[0]
        if first not in state:
            raise KeyError(f"the state is missing {first!r} (build it with init_state)")
        ref = jnp.asarray(state[first])
        if ref.ndim != 1:
            raise ValueError(f"state[{first!r}] must have shape (N,), got {ref.shape}")
        n = ref.shape[0]
        dtype = _dtype_name(ref.dtype)
        per_step = tuple(sorted(inputs))
        per_neuron = tuple(sorted(k for k in state if k in self.constants and k not in inputs))
        info = self._variant(dt=dt, dtype=dtype, per_neuron=per_neuron, per_step=per_step, record=tuple(record))
        layout = info["layout"]
        n_rec = -(-steps // record_every)
        real = jnp.dtype(dtype)
        elem_dtype = {"real": real, "int32": np.dtype(np.int32), "bool": np.dtype(np.bool_)}

        args, in_kinds = [], []
        for a in layout["inputs"]:
            name, want = a["name"], elem_dtype[a["elem"]]
            if a["role"] == "per_step":
                x = jnp.asarray(inputs[name])
                expect = (steps, n)
                shaped = lambda x: x.reshape((1, steps, n))  # noqa: E731
            elif a["role"] == "start_step":
                x = jnp.asarray(state.get("t_step", 0))
                expect = ()
                shaped = lambda x: x.reshape((1,))  # noqa: E731
            else:
                if name not in state:
                    raise KeyError(f"the state is missing {name!r} (build it with init_state)")
                x = jnp.asarray(state[name])
                if a["shape"] == "batch":  # a (shared) parameter: one value for the population
                    expect = ()
                    shaped = lambda x: x.reshape((1,))  # noqa: E731
                else:
                    expect = (n,)
                    shaped = lambda x: x  # noqa: E731
            if x.shape != expect:
                where = "inputs" if a["role"] == "per_step" else "state"
                raise ValueError(f"{where}[{name!r}] has shape {x.shape}, expected {expect}")
            if x.dtype != want:
                where = "inputs" if a["role"] == "per_step" else "state"
                raise TypeError(f"{where}[{name!r}] has dtype {x.dtype}, expected {want} (the model runs in {dtype})")
            args.append(shaped(x))
            in_kinds.append(a["shape"])

        outs, out_kinds = [], []
        for a in layout["outputs"]:
            shape = {"neuron": (n,), "trace": (1, n_rec, n)}[a["shape"]]
            outs.append(jax.ShapeDtypeStruct(shape, elem_dtype[a["elem"]]))
            out_kinds.append(a["shape"])

        results = neuron_run_p(
            *args,
            outs=outs,
            spec=info["spec"],
            key=info["key"],
            steps=steps,
            record_every=record_every,
            n_inner=n,
            shapes=(tuple(in_kinds), tuple(out_kinds)),
        )
        new_state = dict(state)
        traces = {}
        spike_count = None
        for a, r in zip(layout["outputs"], results):
            if a["role"] == "trace":
                traces[a["name"].split(":", 1)[1]] = r.reshape((n_rec, n))
            elif a["role"] == "spike_count":
                spike_count = r
            else:
                new_state[a["name"]] = r
        new_state["t_step"] = jnp.asarray(state.get("t_step", 0), dtype=jnp.int32) + jnp.int32(steps)
        return new_state, RunResult(spike_count=spike_count, traces=traces)
