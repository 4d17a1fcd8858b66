"""Gradients through neuron runs: ``jax.grad`` / ``jax.vjp`` of ``model.run``.

Why here: ``model.run`` is one FFI call that runs every step; JAX cannot differentiate it. This
module wraps it in a ``jax.custom_vjp`` whose backward pass is the library's generated adjoint
kernel (``spikeforge_neuron_grad``: the derivative of one step, taken symbolically from the
step's own expression DAG, walked backwards through time; ``src/step/adjoint.rs``,
``src/codegen/adjoint_kernel.rs``).

Memory: the forward pass under differentiation runs the group kernel in segments of ``k`` steps
and keeps the state at the start of each (checkpoints, ``O(N steps/k)``); the backward pass, for
each segment from the last, recomputes its start-of-step values with the group kernel (traces of
every stored variable, ``O(N k)``) and runs the adjoint kernel over it. ``k`` defaults to about
``sqrt(steps)`` (a multiple of ``record_every``); ``run(..., checkpoint_every=k)`` sets it.

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


def _lowering(*, spec, key, steps, n_inner) -> FfiCall:
    return FfiCall(attributes=dict(spec=spec, key=key, steps=steps, n_inner=n_inner))


# vmap folds the batch into the neuron axis, as for the run.
neuron_grad_p = ffi_primitive("spikeforge_neuron_grad", _lowering)


def segment_length(steps: int, record_every: int, checkpoint_every: int | None) -> int:
    """The steps between checkpoints: about ``sqrt(steps)``, a multiple of ``record_every`` (so
    that every segment's traces start on a recorded step), at most ``steps`` rounded up."""
    if checkpoint_every is None:
        k = max(1, math.isqrt(steps - 1) + 1)
    else:
        k = int(checkpoint_every)
        if k < 1:
            raise ModelError(
                f"checkpoint_every must be a positive integer, got {checkpoint_every!r}", field="checkpoint_every"
            )
    return -(-k // record_every) * record_every


def _adjoint_info(model, spec: str) -> dict:
    """The adjoint kernel's layout for the variant ``spec``, or a ModelError naming why the
    model's runs are not differentiable."""
    cache = model.__dict__.setdefault("_adjoints", {})
    if spec not in cache:
        answer = _native.model_adjoint(spec, "c")
        if not answer.get("ok"):
            error = answer["error"]
            if error.get("kind") == "model":
                raise model._native_error(error)
            raise ModelError(f"jax.grad through run: {error['message']}", field="gradient")
        cache[spec] = answer["layout"]
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

    def forward(state, inputs, *, steps, record, record_every, spike_capacity=0):
        new_state, traces, others = call(
            state,
            inputs,
            steps=steps,
            record=record,
            record_every=record_every,
            spike_capacity=spike_capacity,
            spike_train=spike_train,
        )
        if counts_are_real:
            others = {role: _as_real(x, role, real) for role, x in others.items()}
        return new_state, traces, others

    run = jax.custom_vjp(
        functools.partial(forward, steps=steps, record=record, record_every=record_every, spike_capacity=spike_capacity)
    )
    k = segment_length(steps, record_every, checkpoint_every)
    k = min(k, -(-steps // record_every) * record_every)
    full, rest = divmod(steps, k)

    def split(inputs, start, length):
        return {name: x[start : start + length] for name, x in inputs.items()}

    def fwd(state, inputs):
        check_differentiable_call(spike_capacity)
        _adjoint_info(model, info["spec"])
        checkpoints = []

        def segment(carry, xs):
            new, tr, oth = forward(carry, xs, steps=k, record=record, record_every=record_every)
            return new, (carry, tr, oth)

        start = dict(state)
        # The checkpoints carry the time, which a state made by hand may leave out (time 0).
        start.setdefault("t", jnp.asarray(clock.words(0.0), jnp.int32))
        if full:
            seg_inputs = {name: x[: full * k].reshape((full, k) + x.shape[1:]) for name, x in inputs.items()}
            state_end, (ckpts, tr, oth) = jax.lax.scan(segment, start, seg_inputs, length=full)
            traces = {name: t.reshape((-1,) + t.shape[2:]) for name, t in tr.items()}
            others = _join_segments(oth)
            checkpoints.append(ckpts)
        else:
            state_end, traces, others = start, {name: None for name in record}, None
        last = None
        if rest:
            last = state_end
            state_end, tr, oth = forward(
                state_end, split(inputs, full * k, rest), steps=rest, record=record, record_every=record_every
            )
            traces = {
                name: tr[name] if traces[name] is None else jnp.concatenate([traces[name], tr[name]]) for name in record
            }
            others = oth if others is None else _join_segments(others, oth)
        residuals = (state, inputs, checkpoints[0] if checkpoints else None, last)
        return (state_end, traces, others), residuals

    def bwd(res, ct):
        state, inputs, ckpts, last = res
        # Known once fwd has run (it raises for a model that is not differentiable).
        layout = _adjoint_info(model, info["spec"])
        ct_state, ct_traces, ct_others = ct
        n = jnp.asarray(state[model._reference(state)]).shape[0]
        stored = [a["name"].split(":", 1)[1] for a in layout["inputs"] if a["role"] == "state"]
        accumulated = [a["name"].split(":", 1)[1] for a in layout["inputs"] if a["role"] == "grad"]
        per_step_grads = [
            a["name"].split(":", 1)[1] for a in layout["outputs"] if a["role"] == "grad" and a["shape"] == "per_step"
        ]
        adjoint = {x: jnp.asarray(ct_state[x], real) for x in stored}
        acc = {p: jnp.zeros((n,), real) for p in accumulated}
        ct_count = ct_others.get("spike_count")
        if ct_count is None or not _is_float(ct_count):
            ct_count = jnp.zeros((n,), real)
        ct_rows = {}
        for name in record:
            c = jnp.asarray(ct_traces[name], real)
            ct_rows[name] = jnp.zeros((steps, n), real).at[::record_every].set(c)
        train_rows = spike_train_cotangent(ct_others.get("spike_train"), steps=steps, record_every=record_every)
        if train_rows is not None:
            # Each step's spike: the count's cotangent plus its window's in the train.
            ct_rows[_SPIKE_ROWS] = ct_count[None, :] + train_rows.astype(real)

        def backward_segment(adjoint, acc, checkpoint, seg_inputs, rows, length):
            _, states_at, _ = call(checkpoint, seg_inputs, steps=length, record=tuple(stored), record_every=1)
            operands = []
            for a in layout["inputs"]:
                role, name = a["role"], a["name"]
                if role == "state":
                    operands.append(states_at[name.split(":", 1)[1]].reshape((1, length, n)))
                elif role == "input" and a["shape"] == "per_step":
                    operands.append(jnp.asarray(seg_inputs[name]).reshape((1, length, n)))
                elif role == "input":
                    x = jnp.asarray(checkpoint[name])
                    operands.append(x.reshape((1,)) if a["shape"] == "batch" else x)
                elif role == "lastspike":
                    operands.append(checkpoint["lastspike"])
                elif role == "time":
                    operands.append(jnp.asarray(checkpoint["t"]).reshape((1, 2)))
                elif role == "adjoint":
                    operands.append(adjoint[name.split(":", 1)[1]])
                elif role == "spike_cotangent" and _SPIKE_ROWS in rows:
                    operands.append(rows[_SPIKE_ROWS].reshape((1, length, n)))
                elif role == "spike_cotangent":
                    operands.append(jnp.broadcast_to(ct_count, (length, n)).reshape((1, length, n)))
                elif role == "trace_cotangent":
                    operands.append(rows[name.split(":", 1)[1]].reshape((1, length, n)))
                elif role == "grad":
                    operands.append(acc[name.split(":", 1)[1]])
            outs = []
            for a in layout["outputs"]:
                dtype = real if a["elem"] == "real" else np.dtype(a["elem"])
                shape = (1, length, n) if a["shape"] == "per_step" else (n,)
                outs.append(jax.ShapeDtypeStruct(shape, dtype))
            results = neuron_grad_p(*operands, outs=outs, spec=info["spec"], key=info["key"], steps=length, n_inner=n)
            new_adjoint, new_acc, grads = dict(adjoint), dict(acc), {}
            for a, r in zip(layout["outputs"], results):
                role, name = a["role"], a["name"].split(":", 1)[-1]
                if role == "adjoint":
                    new_adjoint[name] = r
                elif role == "grad" and a["shape"] == "per_step":
                    grads[name] = r.reshape((length, n))
                elif role == "grad":
                    new_acc[name] = r
            return new_adjoint, new_acc, grads

        input_grads = {name: [] for name in per_step_grads}
        if rest:
            start = full * k
            rows = {name: c[start:] for name, c in ct_rows.items()}
            adjoint, acc, grads = backward_segment(adjoint, acc, last, split(inputs, start, rest), rows, rest)
            for name in per_step_grads:
                input_grads[name].append(grads[name])
        if full:
            seg_inputs = {name: x[: full * k].reshape((full, k) + x.shape[1:]) for name, x in inputs.items()}
            seg_rows = {name: c[: full * k].reshape((full, k, n)) for name, c in ct_rows.items()}

            def body(carry, xs):
                adjoint, acc = carry
                checkpoint, seg_in, rows = xs
                adjoint, acc, grads = backward_segment(adjoint, acc, checkpoint, seg_in, rows, k)
                return (adjoint, acc), grads

            (adjoint, acc), grads = jax.lax.scan(
                body, (adjoint, acc), (ckpts, seg_inputs, seg_rows), length=full, reverse=True
            )
            for name in per_step_grads:
                input_grads[name].insert(0, grads[name].reshape((full * k, n)))
        state_ct = {}
        for name, x in state.items():
            if name in adjoint:
                state_ct[name] = adjoint[name]
            elif not _is_float(x):
                state_ct[name] = _zero_cotangent(x)
            else:
                g = (
                    jnp.asarray(ct_state.get(name, jnp.zeros_like(x)), real)
                    if name in ct_state
                    else jnp.zeros(jnp.shape(x), real)
                )
                if name in acc:
                    extra = acc[name]
                    g = g + (extra.sum() if jnp.ndim(x) == 0 else extra)
                state_ct[name] = g.astype(jnp.asarray(x).dtype).reshape(jnp.shape(x))
        inputs_ct = {}
        for name, x in inputs.items():
            if name in input_grads and input_grads[name]:
                inputs_ct[name] = jnp.concatenate(input_grads[name]).astype(jnp.asarray(x).dtype)
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


# The key of the spikes' per-step cotangents among the traces' (not a variable's name).
_SPIKE_ROWS = "spike_cotangent:"


def _as_real(x, role: str, real):
    """A run's count-like result (``spike_count``, ``spike_train``) in the real dtype, so that it
    carries gradients; other results as they are."""
    return x.astype(real) if role in ("spike_count", "spike_train") else x


def _join_segments(first, second=None):
    """The others of consecutive segments as those of one run: ``first`` stacked over segments
    by a scan (``second`` None), or two runs one after the other. Counts add up, spike-train
    rows follow each other (segments are whole windows of ``record_every`` steps)."""
    if second is None:
        joined = {"spike_count": first["spike_count"].sum(axis=0).astype(first["spike_count"].dtype)}
        if "spike_train" in first:
            train = first["spike_train"]
            joined["spike_train"] = train.reshape((-1,) + train.shape[2:])
        return joined
    joined = {"spike_count": (first["spike_count"] + second["spike_count"]).astype(first["spike_count"].dtype)}
    if "spike_train" in first:
        joined["spike_train"] = jnp.concatenate([first["spike_train"], second["spike_train"]])
    return joined


def spike_train_cotangent(ct_train, *, steps: int, record_every: int):
    """The spike train's cotangent ``(windows, N)`` as the cotangent of each step's spike,
    ``(steps, N)``: a window's row on each of its steps (the spikes of a window add up). None
    without a (real) spike-train cotangent, which the adjoint kernel then does not need."""
    if ct_train is None or not _is_float(ct_train):
        return None
    ct_train = jnp.asarray(ct_train)
    per_step = jnp.repeat(ct_train, record_every, axis=0, total_repeat_length=ct_train.shape[0] * record_every)
    return per_step[:steps]


def check_differentiable_call(spike_capacity: int) -> None:
    """A spike record has integer times and indices: refused under differentiation."""
    if spike_capacity:
        raise ModelError(
            "jax.grad through run: a spike record (record_spikes) is not differentiable; use the "
            "spike counts or traces, or record spikes in a run outside jax.grad",
            field="record_spikes",
        )
