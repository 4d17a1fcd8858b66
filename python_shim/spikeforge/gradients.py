"""Gradients through neuron runs: ``jax.grad`` / ``jax.vjp`` of ``model.run``.

Why here: ``model.run`` is one FFI call that runs every step; JAX cannot differentiate it. This
module wraps it in a ``jax.custom_vjp`` whose backward pass is the library's generated adjoint
kernel (``spikeforge_neuron_grad``: the derivative of one step, taken symbolically from the
step's own expression DAG, walked backwards through time; ``src/step/adjoint.rs``,
``src/codegen/adjoint_kernel.rs``).

Memory and launches: the forward pass under differentiation is one launch of the run's kernel
that also keeps the state every ``k`` steps (checkpoints, ``O(N steps/k)``; the variant with
``spec.checkpoint``). The backward pass is one launch of the adjoint kernel: for each segment
from the last, it recomputes the segment's start-of-step values from its checkpoint and walks them
backwards. Up to the model's ``register_segment`` steps (32 for a small model, fewer for a larger
state, none past a register budget) the kernel keeps them in registers, a kernel compiled for that
``k``; a longer segment goes to a scratch (``O(N k)``, a buffer of that call). ``k`` defaults to
the longest in registers, else about ``sqrt(steps)``, fewer for large populations
(:func:`segment_length`); ``run(..., checkpoint_every=k)`` sets it.

Differentiable: the initial state (stored variables), real parameters, constants given per neuron
in the state, per-step inputs; through the final state, the recorded traces and, with a
surrogate (``spikeforge.surrogate``), the spike counts and the spike train (then real-valued; a
window's cotangent in the train is the cotangent of each of its steps' spikes, the adjoint
kernel's per-step ``spike_cotangent``, :func:`spike_train_cotangent`). Reverse mode only: forward
mode (``jax.jvp``, ``jax.jacfwd``) raises a ModelError naming ``jax.grad`` / ``jax.jacrev``.

Not differentiable (a ``ModelError`` that names why, raised when ``jax.grad`` traces the run):
random numbers, ``int()`` / ``floor()`` / ``ceil()`` of a differentiated value (quoting the
equation, subexpression, threshold or reset it is in), refractory periods that are conditions or
expressions, resets that write parameters, float16 / bfloat16 states, sub-steps beyond 4, a spike
record (``record_spikes``).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from . import _native, clock
from .errors import ModelError
from .ffi_primitive import FfiCall, ffi_primitive

__all__ = [
    "neuron_grad_p",
    "differentiable_run",
    "segment_length",
    "check_differentiable_call",
    "spike_train_cotangent",
    "reverse_mode_only",
]


def _lowering(*, spec, key, steps, n_inner, segment, record_every, spike_train) -> FfiCall:
    return FfiCall(
        attributes=dict(
            spec=spec,
            key=key,
            steps=steps,
            n_inner=n_inner,
            segment=segment,
            record_every=record_every,
            spike_train=spike_train,
        )
    )


# vmap folds the batch into the neuron axis, as for the run.
neuron_grad_p = ffi_primitive("spikeforge_neuron_grad", _lowering)


# The scratch rows (element x segment step) the backward pass should keep in a GPU's L2 cache at
# once, for a model whose segments do not fit in registers: the elements a GPU runs at once
# (about 2^18 threads on an H100/H200) times 2 k rows of the two segments in flight, of the state
# and the re-read per-step inputs, must stay well under its L2 (50 MB); past that the segments'
# rows go to device memory and back.
_RESIDENT_ELEMENTS = 1 << 18
_SCRATCH_ROWS = 1 << 21
# The default segment in registers for populations of at least _RESIDENT_ELEMENTS.
_LARGE_POPULATION_SEGMENT = 8


def segment_length(steps: int, checkpoint_every: int | None, n: int = 1, register_segment: int = 0) -> int:
    """The steps between checkpoints, at most ``steps``: ``checkpoint_every``, or by default the
    longest segment the adjoint kernel keeps in registers (``register_segment``, the model's:
    ``N steps/k`` stored values, no scratch; at most 8 for a population of 2^18 or more) or, for
    a model without one, about ``sqrt(steps)`` (the fewest stored values, ``N (steps/k + k)``),
    fewer for a large population ``n`` (at least 4), so that the backward pass's scratch stays in
    the GPU's L2."""
    if checkpoint_every is None:
        if register_segment > 0:
            # A large population is bound by the threads the registers let a GPU hold: shorter
            # segments, fewer registers (H200, 1M LIF neurons x 1000 steps at 7093b77: k = 32
            # 12.7 ms, 16 8.1 ms, 8 6.9 ms; 10k neurons, latency-bound, k = 32 0.75 ms).
            k = register_segment if n < _RESIDENT_ELEMENTS else min(register_segment, _LARGE_POPULATION_SEGMENT)
        else:
            k = max(1, math.isqrt(steps - 1) + 1)
            k = min(k, max(4, _SCRATCH_ROWS // min(max(n, 1), _RESIDENT_ELEMENTS)))
    else:
        k = int(checkpoint_every)
        if k < 1:
            raise ModelError(
                f"checkpoint_every must be a positive integer, got {checkpoint_every!r}", field="checkpoint_every"
            )
    return min(k, steps)


def _adjoint_info(model, spec: str) -> dict:
    """The adjoint kernel's layout for the variant ``spec`` (``layout``) and the longest segment it
    keeps in registers (``register_segment``), or a ModelError naming why the model's runs are
    not differentiable."""
    cache = model.__dict__.setdefault("_adjoints", {})
    if spec not in cache:
        answer = _native.model_adjoint(spec, "c")
        if not answer.get("ok"):
            error = answer["error"]
            if error.get("kind") == "model":
                raise model._native_error(error)
            raise ModelError(f"jax.grad through run: {error['message']}", field="gradient")
        cache[spec] = {"layout": answer["layout"], "register_segment": int(answer["register_segment"])}
    return cache[spec]


def _is_float(x) -> bool:
    return jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating)


def _zero_cotangent(x):
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.floating):
        return jnp.zeros(x.shape, x.dtype)
    return np.zeros(x.shape, dtype=jax.dtypes.float0)


def differentiable_run(
    model,
    state: dict,
    inputs: dict,
    *,
    call,
    info,
    steps,
    record,
    record_every,
    spike_capacity,
    checkpoint_every,
    spike_train=False,
):
    """``call(state, inputs, steps=, record=, record_every=, spike_train=)`` -> ``(new_state,
    traces, others)`` (one forward kernel call), wrapped so that ``jax.grad`` / ``jax.vjp`` run
    the adjoint kernel. With a surrogate, ``others["spike_count"]`` and ``others["spike_train"]``
    are real (they carry gradients)."""
    real = jnp.asarray(state[model._reference(state)]).dtype
    counts_are_real = model.surrogate is not None

    def forward(state, inputs, *, steps, record, record_every, spike_capacity=0, checkpoint_every=0):
        new_state, traces, others = call(
            state,
            inputs,
            steps=steps,
            record=record,
            record_every=record_every,
            spike_capacity=spike_capacity,
            spike_train=spike_train,
            checkpoint_every=checkpoint_every,
        )
        if counts_are_real:
            others = {role: _as_real(x, role, real) for role, x in others.items()}
        return new_state, traces, others

    run = jax.custom_vjp(
        functools.partial(forward, steps=steps, record=record, record_every=record_every, spike_capacity=spike_capacity)
    )
    n_elements = jnp.asarray(state[model._reference(state)]).shape[0]

    def segment() -> tuple[int, bool]:
        """(k, whether the adjoint kernel keeps a segment in registers); a ModelError for a model
        that is not differentiable."""
        limit = _adjoint_info(model, info["spec"])["register_segment"]
        k = segment_length(steps, checkpoint_every, n_elements, limit)
        return k, k <= limit

    def fwd(state, inputs):
        check_differentiable_call(spike_capacity)
        k, _ = segment()
        start = dict(state)
        # The backward pass reads the start time, which a state made by hand may leave out (0).
        start.setdefault("t", jnp.asarray(clock.words(0.0), jnp.int32))
        new_state, traces, others = forward(
            start, inputs, steps=steps, record=record, record_every=record_every, checkpoint_every=k
        )
        checkpoints = {name: others.pop(name) for name in list(others) if name.startswith("checkpoint:")}
        return (new_state, traces, others), (start, inputs, checkpoints)

    def bwd(res, ct):
        start, inputs, checkpoints = res
        # Known once fwd has run (it raises for a model that is not differentiable).
        layout = _adjoint_info(model, info["spec"])["layout"]
        k, registers = segment()
        ct_state, ct_traces, ct_others = ct
        n = jnp.asarray(start[model._reference(start)]).shape[0]
        n_rec = -(-steps // record_every)
        ct_count = ct_others.get("spike_count")
        if ct_count is None or not _is_float(ct_count):
            ct_count = jnp.zeros((n,), real)
        spike_train = spike_train_cotangent(ct_others.get("spike_train"), steps=steps, record_every=record_every)
        operands = []
        for a in layout["inputs"]:
            role, name = a["role"], a["name"].split(":", 1)[-1]
            if role == "checkpoint":
                operands.append(checkpoints[a["name"]])
            elif role == "input" and a["shape"] == "per_step":
                operands.append(jnp.asarray(inputs[name]).reshape((1, steps, n)))
            elif role == "input":
                x = jnp.asarray(start[name])
                operands.append(x.reshape((1,)) if a["shape"] == "batch" else x)
            elif role == "time":
                operands.append(jnp.asarray(start["t"]).reshape((1, 2)))
            elif role == "adjoint":
                operands.append(jnp.asarray(ct_state[name], real))
            elif role == "spike_count_cotangent":
                operands.append(jnp.asarray(ct_count, real))
            elif role == "spike_cotangent":
                rows = jnp.zeros((0,), real) if spike_train is None else spike_train.reshape((1, steps, n))
                operands.append(jnp.asarray(rows, real))
            elif role == "trace_cotangent":
                operands.append(jnp.asarray(ct_traces[name], real).reshape((1, n_rec, n)))
        rows = {"per_step": steps, "segment_step": 2 * k}
        outs = []
        for a in layout["outputs"]:
            dtype = real if a["elem"] == "real" else np.dtype(a["elem"])
            if a["shape"] == "segment_step" and registers:
                shape = (0,)  # the scratch, unused: the kernel keeps a segment in registers
            else:
                shape = (n,) if a["shape"] == "neuron" else (1, rows[a["shape"]], n)
            outs.append(jax.ShapeDtypeStruct(shape, dtype))
        results = neuron_grad_p(
            *operands,
            outs=outs,
            spec=info["spec"],
            key=info["key"],
            steps=steps,
            n_inner=n,
            segment=k,
            record_every=record_every,
            spike_train=int(spike_train is not None),
        )
        adjoint, acc, input_grads = {}, {}, {}
        for a, r in zip(layout["outputs"], results):
            role, name = a["role"], a["name"].split(":", 1)[-1]
            if role == "adjoint":
                adjoint[name] = r
            elif role == "grad" and a["shape"] == "per_step":
                input_grads[name] = r.reshape((steps, n))
            elif role == "grad":
                acc[name] = r
        state_ct = {}
        for name in state:
            x = start[name]
            if name in adjoint:
                state_ct[name] = adjoint[name].astype(jnp.asarray(x).dtype)
            elif not _is_float(x):
                state_ct[name] = _zero_cotangent(x)
            else:
                g = jnp.asarray(ct_state[name], real) if name in ct_state else jnp.zeros(jnp.shape(x), real)
                if name in acc:
                    extra = acc[name]
                    g = g + (extra.sum() if jnp.ndim(x) == 0 else extra)
                state_ct[name] = g.astype(jnp.asarray(x).dtype).reshape(jnp.shape(x))
        inputs_ct = {}
        for name, x in inputs.items():
            if name in input_grads:
                inputs_ct[name] = input_grads[name].astype(jnp.asarray(x).dtype)
            else:
                inputs_ct[name] = _zero_cotangent(x)
        return state_ct, inputs_ct

    run.defvjp(fwd, bwd)
    return reverse_mode_only(run, state, inputs)


FORWARD_MODE = (
    "forward-mode differentiation (jax.jvp, jax.jacfwd, jax.hessian) of model.run is not "
    "available: its derivative is the generated adjoint kernel, which runs backwards in time (reverse mode "
    "only). Use jax.grad / jax.value_and_grad / jax.vjp, and jax.jacrev for a Jacobian"
)


def reverse_mode_only(run, state, inputs):
    """``run(state, inputs)``; under forward-mode differentiation, which a ``custom_vjp`` does
    not have, a ModelError that says what to use instead (JAX's own error names neither the run
    nor the alternatives)."""
    try:
        return run(state, inputs)
    except TypeError as error:
        if "forward-mode" not in str(error):
            raise
        raise ModelError(FORWARD_MODE, field="gradient") from error


def refuse_forward_mode(primals, tangents, **params):
    """The JVP rule of the run and adjoint primitives: where forward mode reaches them (e.g.
    ``jax.jacfwd`` traces a ``custom_vjp``'s forward pass, ``jax.hessian`` the backward pass), the
    same ModelError, instead of JAX's "Differentiation rule ... not implemented"."""
    raise ModelError(FORWARD_MODE, field="gradient")


neuron_grad_p.def_jvp_rule(refuse_forward_mode)


def _as_real(x, role: str, real):
    """A run's count-like result (``spike_count``, ``spike_train``) in the real dtype, so that it
    carries gradients; other results as they are."""
    return x.astype(real) if role in ("spike_count", "spike_train") else x


def spike_train_cotangent(ct_train, *, steps: int, record_every: int):
    """A spike train's cotangent ``(windows, N)`` (a window: ``record_every`` steps, whose spikes
    add up) as the cotangent of each step's spike, ``(steps, N)``: the adjoint kernel's per-step
    ``spike_cotangent``, to which the kernel adds the spike count's (its own input). None
    without a (real) spike-train cotangent; the kernel then reads no per-step rows."""
    if ct_train is None or not _is_float(ct_train):
        return None
    return jnp.repeat(jnp.asarray(ct_train), record_every, axis=0)[:steps]


def check_differentiable_call(spike_capacity: int) -> None:
    """A spike record has integer times and indices: refused under differentiation."""
    if spike_capacity:
        raise ModelError(
            "jax.grad through run: a spike record (record_spikes) is not differentiable; use the "
            "spike counts or traces, or record spikes in a run outside jax.grad",
            field="record_spikes",
        )
