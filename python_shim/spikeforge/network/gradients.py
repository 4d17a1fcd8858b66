"""Gradients through network runs: ``jax.grad`` / ``jax.vjp`` of ``Network.run``.

Why here: a network run is one FFI call that runs every step; JAX cannot differentiate it. This
module wraps it in a ``jax.custom_vjp`` whose backward pass is the library's generated network
adjoint kernel (``spikeforge_network_grad``: each neuron group's step adjoint, taken
symbolically from the group's own step (``src/step/adjoint.rs``), coupled by the transposed
event-driven propagation of the synapses; ``src/step/network_adjoint.rs``,
``src/codegen/network_adjoint_kernel.rs``).

Memory, as for neuron runs (``spikeforge.gradients``): the forward pass under differentiation
runs the network in segments of ``k`` steps and keeps the groups' state at the start of each
(checkpoints, ``O(N steps/k)``): by default as one call a segment, with
``SPIKEFORGE_NETWORK_GRAD_FORWARD=one_call`` as one call that returns them (``checkpoint_every``,
src/handlers/network_checkpoints.rs; not faster on the H200: XLA replays the calls from a CUDA
graph, and both launch the kernel a segment at a time); the backward pass calls the adjoint kernel for each segment
from the last, with the segment's checkpoint: the kernel recomputes the segment's states
(``O(N k)`` scratch) before it walks it back. ``k`` defaults to about ``sqrt(steps)`` (a
multiple of every state monitor's ``every``); ``run(..., checkpoint_every=k)`` sets it. When
``k`` is at most the refractory period of every group whose spikes are delivered, each neuron
spikes at most once a segment, at the step its ``lastspike_step`` reads at the segment's end (the
next checkpoint's, or the final state's): the kernel takes that as the segment's spike record
(no extra memory) and recomputes the segment with two grid barriers instead of one a step.

Differentiable (with a ``surrogate`` in the groups' models for gradients through spikes): the
initial state variables, the groups' real parameters and per-neuron constants, the synaptic
parameters (per synapse and ``(shared)``) that on_pre increments read; through the final state,
the state monitors' traces of state variables, the spike counts (real-valued in groups with a
surrogate) and the rate monitors. What is not (a ``ModelError`` naming it, raised when
``jax.grad`` traces the run): plasticity, synapse dynamics, summed variables, on_pre statements
other than additions of synaptic terms to state variables of the target, Poisson groups and
inputs, spike generators, TimedArrays, everything a neuron run refuses. CPU (one thread) and
CUDA (a cooperative grid).
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..errors import ModelError
from ..ffi_primitive import FfiCall, batch_axis_first, ffi_primitive
from ..gradients import _zero_cotangent, segment_length
from . import _abi
from .groups import NeuronGroup
from .monitors import PopulationRateMonitor, StateMonitor
from .output import NetworkOutput

__all__ = ["network_grad_p", "differentiable_run", "segment_lengths"]


def _lowering(*, spec, key, steps, scratch) -> FfiCall:
    structs = [jax.ShapeDtypeStruct(tuple(shape), np.dtype(dt)) for shape, dt in scratch]
    return FfiCall(attributes=dict(spec=spec, key=key, steps=steps), scratch=structs)


def _batching(primitive, args, dims, *, outs, **params):
    """One network per call: a vmap runs one call per member (``lax.map``)."""
    _, moved = batch_axis_first(args, dims)

    def member(xs):
        return tuple(primitive.bind(*xs, outs=outs, **params))

    results = lax.map(member, tuple(moved))
    return list(results), [0] * len(results)


network_grad_p = ffi_primitive("spikeforge_network_grad", _lowering, batching=_batching)


def _adjoint_answer(net, answer: dict) -> dict:
    """The adjoint kernel's layout for the compiled network ``answer``, or a ModelError naming
    why the network's runs are not differentiable."""
    cache = net.__dict__.setdefault("_adjoints", {})
    key = answer["key"]
    if key not in cache:
        out = _abi.network_adjoint(answer["spec"], "c")
        if not out.get("ok"):
            error = out["error"]
            if error.get("kind") == "model":
                raise ModelError.from_native(error)
            raise ModelError(f"jax.grad through Network.run: {error['message']}", field="gradient")
        cache[key] = out["layout"]
    return cache[key]


def _is_float(x) -> bool:
    return x is not None and jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating)


def _surrogate_groups(net) -> list:
    return [g.name for g in net.members.groups if isinstance(g, NeuronGroup) and g.model.surrogate is not None]


def realify_counts(net, out: NetworkOutput, real) -> NetworkOutput:
    """Spike counts of groups with a surrogate in the real dtype (they carry gradients)."""
    counts = dict(out.spike_count)
    for name in _surrogate_groups(net):
        counts[name] = counts[name].astype(real)
    return NetworkOutput(out.records, counts)


def segment_lengths(steps: int, checkpoint_every, every: list, neurons: int, recorded: int | None = None) -> list:
    """The lengths of the run's segments between checkpoints: ``k`` each (the last one
    shorter), ``k`` the neuron runs' spacing (``checkpoint_every``, or about ``sqrt(steps)``;
    by default ``recorded`` instead where that is at least half of it, at most 4 times it:
    the longest segment the adjoint kernel recomputes in record mode, two grid barriers
    instead of one a step, the fewer segments the better: each costs a launch and a few
    barriers) rounded up to a multiple of every state monitor's ``every`` (each segment's run
    starts recording in phase), at most ``steps`` rounded up to that multiple."""
    multiple = int(np.lcm.reduce(every)) if every else 1
    k = segment_length(steps, checkpoint_every, neurons)
    if checkpoint_every is None and recorded is not None:
        longest = recorded // multiple * multiple
        if longest > 0 and 2 * longest >= k:  # at most twice the segments, at most 4 k's scratch
            k = min(longest, 4 * k)
    k = -(-k // multiple) * multiple
    k = min(k, -(-steps // multiple) * multiple)
    return [k] * (steps // k) + ([steps % k] if steps % k else [])


def differentiable_run(net, state: dict, *, steps: int, variant, dtype: str, checkpoint_every):
    """``net.run(state, steps=steps)`` (one forward call) wrapped so that ``jax.grad`` /
    ``jax.vjp`` run the network adjoint kernel."""
    real = jnp.dtype(dtype)

    def forward(state):
        new_state, out = net._run_chunk(state, steps, variant, dtype)
        return new_state, realify_counts(net, out, real)

    run = jax.custom_vjp(forward)
    every = [m.every for m in net.members.state_monitors.values()]
    neurons = sum(g.n for g in net.members.groups if isinstance(g, NeuronGroup))
    try:
        recorded = _adjoint_answer(net, net._compile(variant)).get("recorded_segment")
    except ModelError:
        recorded = None  # not differentiable: said by fwd if jax.grad asks (a traced run may not)
    lengths = segment_lengths(steps, checkpoint_every, every, neurons, recorded)

    def fwd(state):
        answer = net._compile(variant)
        layout = _adjoint_answer(net, answer)
        if _one_call_forward(net, answer, dtype):
            s, checkpoints, out = _checkpointed_run(net, state, steps, variant, dtype, lengths)
        else:  # one call a segment (SPIKEFORGE_NETWORK_GRAD_FORWARD=segments)
            checkpoints, outs = [], []
            s = state
            for length in lengths:
                checkpoints.append(s)
                seg_variant, _ = net._variant_of(s, length)
                s, out = net._run_chunk(s, length, seg_variant, dtype, warn=False)
                outs.append(out)
            out = outs[0] if len(outs) == 1 else net._join(outs, variant)
        net._warn_dropped(out)
        # The last spikes' steps at each segment's end (the next checkpoint's, or the final
        # state's): the segments' spikes for the adjoint kernel's record mode.
        recorded = [a["owner"] for a in layout["inputs"] if a["role"] == "spike_record"]
        ends = [{g: after[g]["lastspike_step"] for g in recorded} for after in checkpoints[1:] + [s]]
        return (s, realify_counts(net, out, real)), (state, checkpoints, ends)

    def bwd(res, ct):
        state, checkpoints, ends = res
        ct_state, ct_out = ct
        answer = net._compile(variant)
        layout = _adjoint_answer(net, answer)
        groups = [g for g in net.members.groups if isinstance(g, NeuronGroup)]
        n_of = {g.name: g.n for g in groups}
        stored = {g.name: [] for g in groups}
        for a in layout["inputs"]:
            if a["role"] == "checkpoint":
                stored[a["owner"]].append(a["name"].split(":", 1)[1])
        n_syn = {s.name: int(np.shape(state[s.name]["targets"])[0]) for s in net.members.synapses}

        def ct_of(owner, name):
            c = ct_state.get(owner, {}).get(name) if owner else ct_state.get(name)
            return c if _is_float(c) else None

        # What the backward walk carries: adjoints, accumulated gradients, the histories.
        carried = {}
        for a in layout["inputs"]:
            role, owner, name = a["role"], a["owner"], a["name"]
            shape = tuple(n_syn[owner] if d == "n_syn" else d for d in a["shape"])
            if role == "adjoint":
                c = ct_of(owner, name.split(":", 1)[1])
                carried[(owner, name)] = jnp.zeros(shape, real) if c is None else jnp.asarray(c, real)
            elif role in ("grad", "history"):
                carried[(owner, name)] = jnp.zeros(shape, real)
        starts = np.cumsum([0] + lengths[:-1])
        for checkpoint, end, length, start in reversed(list(zip(checkpoints, ends, lengths, starts))):
            spike_ct, state_ct = _segment_cotangents(net, ct_out, stored, n_of, int(start), length, real)
            operands = []
            for a in layout["inputs"]:
                role, owner, name = a["role"], a["owner"], a["name"]
                if role == "time":
                    operands.append(jnp.asarray(checkpoint["t_step"], jnp.int32).reshape(()))
                elif role == "checkpoint":
                    operands.append(jnp.asarray(checkpoint[owner][name.split(":", 1)[1]], real))
                elif role == "input":
                    operands.append(jnp.asarray(checkpoint[owner][name]))
                elif role == "spike_record":
                    operands.append(jnp.asarray(end[owner], jnp.int32))
                elif role == "spike_cotangent":
                    operands.append(spike_ct[owner])
                elif role == "state_cotangent":
                    operands.append(state_ct[(owner, name.split(":", 1)[1])])
                else:
                    operands.append(carried[(owner, name)])
            outs, scratch = [], []
            for a in layout["outputs"]:
                shape = tuple(length if d == "steps" else n_syn[a["owner"]] if d == "n_syn" else d for d in a["shape"])
                elem = real if a["elem"] == "real" else np.dtype(a["elem"])
                if a["role"] == "scratch":
                    scratch.append((shape, np.dtype(elem).name))
                else:
                    outs.append(jax.ShapeDtypeStruct(shape, elem))
            results = network_grad_p(
                *operands,
                outs=outs,
                spec=answer["spec"],
                key=answer["key"],
                steps=int(length),
                scratch=tuple(scratch),
            )
            kept = [a for a in layout["outputs"] if a["role"] != "scratch"]
            for a, r in zip(kept, results):
                carried[(a["owner"], a["name"])] = r
        return (_state_cotangent(state, ct_state, carried),)

    run.defvjp(fwd, bwd)
    return run(state)


FORWARD_SETTING = "SPIKEFORGE_NETWORK_GRAD_FORWARD"


def _one_call_forward(net, answer: dict, dtype: str) -> bool:
    """Whether the forward pass under differentiation runs as one checkpointed call
    (``SPIKEFORGE_NETWORK_GRAD_FORWARD=one_call``, read when ``jax.grad`` traces the run) rather
    than one call a segment (``segments``, the default: on the H200 the one call was not faster,
    COBA x1 fwd+bwd 8.13 / 7.96 ms against 8.00 / 7.95), unless an input of the run has a
    per-step axis (which the checkpointed call refuses)."""
    setting = os.environ.get(FORWARD_SETTING, "segments")
    if setting not in ("one_call", "segments"):
        raise ValueError(f"{FORWARD_SETTING}={setting!r}: expected 'one_call' or 'segments'")
    if setting == "segments":
        return False
    layout = net._layout(answer, dtype, None)
    return not any(isinstance(d, str) and d != "n_syn" for a in layout.inputs for d in a["shape"])


def _checkpointed_run(net, state: dict, steps: int, variant, dtype: str, lengths: list):
    """The run as one call that also returns the state at each segment's start (the
    checkpoints, src/handlers/network_checkpoints.rs): (final state, the checkpoints as states,
    the run's output)."""
    start = jnp.asarray(state["t_step"])
    s, raw = net._call(state, steps, variant, dtype, checkpoint_every=lengths[0])
    out = net._records({k: v for k, v in raw.items() if len(k) == 2}, start, steps, dtype)
    stored = {k[:2]: v for k, v in raw.items() if len(k) == 3}
    checkpoints = []
    for i, first in enumerate(np.cumsum([0] + lengths[:-1])):
        c = {k: (dict(v) if isinstance(v, dict) else v) for k, v in state.items()}
        c["t_step"] = start + jnp.asarray(int(first), start.dtype)
        for (owner, name), values in stored.items():
            c[owner][name] = values[i]
        checkpoints.append(c)
    return s, checkpoints, out


def _segment_cotangents(net, ct_out, stored: dict, n_of: dict, start: int, length: int, real):
    """The cotangents of the segment's steps ``[start, start + length)``: of each group's spikes
    (the spike counts' and rate monitors' cotangents, ``(length, n)``) and of the values of
    each stored variable at each step's start (the state monitors' recorded values'). Built
    per segment, so that the backward pass holds ``O(N k)`` of them, not ``O(N steps)``."""
    spike_ct = {}
    for g, n in n_of.items():
        c = ct_out.spike_count.get(g)
        spike_ct[g] = jnp.zeros((length, n), real)
        if _is_float(c):
            spike_ct[g] = spike_ct[g] + jnp.asarray(c, real)[None, :]
    state_ct = {(g, x): jnp.zeros((length, n_of[g]), real) for g in stored for x in stored[g]}
    for key, m in net.members.monitors.items():
        rec = ct_out.records[key]
        g = m.source.root.name
        if isinstance(m, StateMonitor):
            rows = (m.record + m.source.start).astype(np.int64)
            first = -(-start // m.every)  # the first record at or after the segment's start
            offset = first * m.every - start
            count = len(range(offset, length, m.every))
            if count == 0:
                continue
            for v in m.variables:
                c = rec.values[v]
                if _is_float(c):
                    part = jnp.asarray(c, real)[first : first + count]
                    state_ct[(g, v)] = state_ct[(g, v)].at[offset :: m.every, rows].add(part)
        elif isinstance(m, PopulationRateMonitor):
            c = rec.rate
            if _is_float(c):
                width = m.source.stop - m.source.start
                scale = jnp.asarray(c, real)[start : start + length, None] / (width * net.dt)
                spike_ct[g] = spike_ct[g].at[:, m.source.start : m.source.stop].add(scale)
    return spike_ct, state_ct


def _state_cotangent(state: dict, ct_state: dict, carried: dict) -> dict:
    """The cotangent of the run's input state: the adjoints at the run's start for the stored
    variables; for every other real entry, its cotangent as an output (it passes through the run
    unchanged) plus its accumulated gradient."""

    def entry(owner, name, x):
        if (owner, f"adjoint:{name}") in carried:
            return carried[(owner, f"adjoint:{name}")].astype(jnp.asarray(x).dtype)
        if not _is_float(x):
            return _zero_cotangent(x)
        out = ct_state.get(owner, {}).get(name) if owner else ct_state.get(name)
        g = jnp.zeros(jnp.shape(x), jnp.asarray(x).dtype) if not _is_float(out) else jnp.asarray(out)
        extra = carried.get((owner, f"grad:{name}"))
        if extra is not None:
            g = g + (extra.sum() if jnp.ndim(x) == 0 else extra.reshape(jnp.shape(x)))
        return g.astype(jnp.asarray(x).dtype)

    result = {}
    for key, value in state.items():
        if isinstance(value, dict):
            result[key] = {name: entry(key, name, x) for name, x in value.items()}
        else:
            result[key] = entry("", key, value)
    return result
