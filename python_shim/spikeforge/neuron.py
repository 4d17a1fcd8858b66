"""``NeuronModel``: a population of neurons -> a fused, generated kernel callable from ``jax.jit``.

A model is defined by Brian2-style equations (a string or a ``brian2.Equations``) or by a model
class (:meth:`NeuronModel.from_class`, ``spikeforge.model_class``); both are a
:class:`~spikeforge.group.Group`, validated in Rust when defined, so a mistake raises
:class:`~spikeforge.errors.ModelError` at once, with the line, the column and a caret. ``run``
binds the ``spikeforge_neuron_run`` primitive, which lowers to an XLA FFI call into the Rust
library; the kernel is generated, compiled (NVRTC for CUDA, the system C compiler for the CPU) and
cached the first time a variant (dtype, dt, recorded variables, per-neuron / per-step inputs) is
used.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from . import arguments, clock, gradients, spikes
from .clock import NEVER_SPIKED
from .errors import ModelError
from .ffi_primitive import FfiCall, ffi_primitive
from .group import METHODS, Group, dtype_name
from .layout import Layout
from .units import to_kernel_units

__all__ = ["NeuronModel", "ModelError", "RunResult", "neuron_run_p", "METHODS", "NEVER_SPIKED"]

# The kernels' loop over the steps of one call counts in int32.
_MAX_STEPS = 2**31 - 1


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class RunResult:
    """What a run produced besides the new state."""

    spike_count: jax.Array
    """``(N,)`` int32: spikes of each neuron during the run (with a surrogate: the model's real
    dtype, so that it carries gradients)."""
    traces: dict = dataclasses.field(default_factory=dict)
    """name -> ``(ceil(steps / record_every), N)``: the value at the start of every k-th step."""
    spike_train: jax.Array | None = None
    """With ``run(..., record_spike_train=True)``: ``(ceil(steps / record_every), N)``, the spikes
    of each neuron in each window of ``record_every`` steps (row ``r``: steps ``r k .. r k + k -
    1``; with ``record_every=1`` 0 or 1 per step). int32, or with a surrogate the model's real
    dtype, so that it carries gradients (``spikeforge.population_rate`` makes a rate of it)."""
    spikes: spikes.SpikeRecord | None = None
    """With ``run(..., record_spikes=capacity)``: every spike as (index, time), in time order
    (:class:`spikeforge.spikes.SpikeRecord`)."""


# -- the primitive -----------------------------------------------------------------------------


def _lowering(*, spec, key, steps, record_every, n_inner, spike_capacity=0, checkpoint_every=0) -> FfiCall:
    attributes = dict(spec=spec, key=key, steps=steps, record_every=record_every, n_inner=n_inner)
    if spike_capacity:
        attributes["spike_capacity"] = spike_capacity
    if checkpoint_every:
        attributes["checkpoint_every"] = checkpoint_every
    return FfiCall(attributes=attributes)


# vmap folds the batch into the neuron axis: one launch, ``n_inner`` neurons per batch member.
neuron_run_p = ffi_primitive("spikeforge_neuron_run", _lowering)
# Forward mode (jax.jvp) is refused with an error that names what to use instead.
neuron_run_p.def_jvp_rule(gradients.refuse_forward_mode)


# -- the model ---------------------------------------------------------------------------------


class NeuronModel(Group):
    """A population of neurons defined by equations (Brian2's names: equations, threshold,
    reset, refractory, method), or by a model class (:meth:`from_class`).

    ``equations``: a string or a ``brian2.Equations``. ``refractory``: a duration (a number in
    ms, or a time quantity such as ``5*ms``), a string (a duration expression or a condition), or
    None. ``constants``: name -> number or quantity (converted to the kernels' units). ``method``
    is one of ``METHODS``, or ``None`` to choose like Brian2 (exact integration for linear
    equations with constant coefficients, else Euler); ``model.method`` says which scheme is
    used. ``substeps=k`` integrates with ``k`` steps of ``dt / k`` per step of ``dt`` (threshold,
    reset and recording stay once per ``dt``).

    Numbers are taken as already in the kernels' unit system (ms, mV, nA, uS, nF, MOhm, um, mM);
    quantities are converted into it by their dimension.
    """

    @staticmethod
    def from_class(cls, method: str | None = "euler", fast_math: bool = False, **kwargs) -> NeuronModel:
        """A model from a ``neural``-style class (``Default_States``, ``Default_Params``,
        ``Default_Inters``, ``ode()``): see :class:`spikeforge.PythonModel`. Keywords
        (``threshold``, ``reset``, ``refractory``, ``constants``, ``substeps``) are those of
        :class:`NeuronModel`."""
        from .model_class import PythonModel

        return PythonModel(cls, method=method, fast_math=fast_math, **kwargs)

    # -- running ----------------------------------------------------------------------------

    def _reference(self, state: Mapping) -> str:
        """The state entry whose shape gives N and whose dtype gives the model's dtype."""
        names = self.state_variables + tuple(p for p in self.parameters if p not in self.shared_parameters)
        first = names[0]
        if first not in state:
            raise KeyError(f"the state is missing {first!r} (build it with init_state)")
        return first

    def run(
        self,
        state: Mapping,
        *,
        dt,
        steps: int | None = None,
        duration=None,
        inputs: Mapping | None = None,
        record: Sequence[str] = (),
        record_every: int = 1,
        record_spikes: int = 0,
        record_spike_train: bool = False,
        checkpoint_every: int | None = None,
    ):
        """Advances ``state`` by ``steps`` steps of ``dt`` in one kernel launch.

        ``dt``: ms, or a time quantity. Give either ``steps`` (an integer) or ``duration`` (ms or
        a time quantity; the number of steps is counted as Brian2 does). ``inputs`` maps parameter
        or constant names to per-step arrays of shape ``(steps, N)``. ``record``: names of
        variables whose values are recorded at the start of every ``record_every``-th step.
        Returns ``(new_state, RunResult)``; traces have ``ceil(steps / record_every)`` rows.
        ``record_spikes``: room for that many spikes, returned as ``RunResult.spikes`` (indices
        and times in time order; spikes past the capacity are counted in ``dropped``).
        ``record_spike_train=True``: the spikes of every neuron in every window of
        ``record_every`` steps, ``RunResult.spike_train`` (``(ceil(steps / record_every), N)``;
        0/1 per step with ``record_every=1``), written by the kernel as it runs.

        ``jax.grad`` / ``jax.vjp`` differentiate a run (``spikeforge.gradients``): with respect to
        the state's real entries and the per-step inputs, through the new state, the traces and,
        with a ``surrogate`` in the model, the spike counts and the spike train (then in the
        model's real dtype).
        ``checkpoint_every``: steps between the checkpoints the backward pass recomputes from
        (default about ``sqrt(steps)``).
        """
        dt = arguments.time_step(dt)
        if (steps is None) == (duration is None):
            raise ModelError("run: give either steps= or duration=", field="steps")
        if steps is None:
            steps = arguments.steps_for(arguments.duration(duration, "duration", allow_zero=False), dt)
        steps = arguments.count(steps, "steps")
        if steps > _MAX_STEPS:
            raise ModelError(
                f"steps={steps}: one run takes at most 2^31-1 steps (split it into several runs; the time "
                "of the state counts on without limit)",
                field="steps",
            )
        record_every = arguments.count(record_every, "record_every")
        record = arguments.names(record, "record")
        spike_capacity = arguments.count(record_spikes, "record_spikes", minimum=0)
        if not isinstance(record_spike_train, (bool, np.bool_)):
            raise ModelError(
                f"record_spike_train must be True or False, got {record_spike_train!r}", field="record_spike_train"
            )
        spike_train = bool(record_spike_train)
        if spike_capacity > _MAX_STEPS:
            raise ModelError(f"record_spikes={spike_capacity}: at most 2^31-1 spikes per run", field="record_spikes")
        if inputs is not None and not isinstance(inputs, Mapping):
            raise TypeError(f"inputs must be a mapping name -> (steps, N) array, got {type(inputs).__name__}")
        inputs = dict(inputs or {})
        reference = self._reference(state)
        ref = jnp.asarray(state[reference])
        if ref.ndim != 1:
            raise ValueError(f"state[{reference!r}] must have shape (N,), got {ref.shape}")
        n = ref.shape[0]
        dtype = dtype_name(ref.dtype, f"state[{reference!r}]")
        per_step = tuple(sorted(inputs))
        per_neuron = tuple(sorted(k for k in state if k in self.constants and k not in inputs))

        def variant(record, spike_capacity, spike_train, checkpoint=False):
            """The compiled variant that records ``record`` (and spikes, a spike train, the
            adjoint's checkpoints)."""
            return self._variant(
                dt=dt,
                dtype=dtype,
                per_neuron=per_neuron,
                per_step=per_step,
                record=record,
                spikes=spike_capacity > 0,
                spike_train=spike_train,
                checkpoint=checkpoint,
            )

        info = variant(record, spike_capacity, spike_train)
        if "t" in state:
            clock.check_continuation(state["t"], dt)
        # Quantities become numbers in the kernels' units here (a brian2 quantity is an ndarray:
        # JAX would take its value in SI units); leaves JAX cannot trace stay as they are, and
        # the run is then not differentiable.
        state = {k: v if isinstance(v, jax.Array) else to_kernel_units(v, f"state[{k!r}]") for k, v in state.items()}
        inputs = {k: v if isinstance(v, jax.Array) else to_kernel_units(v, f"inputs[{k!r}]") for k, v in inputs.items()}
        arrays = all(
            type(x) in (np.ndarray, int, float) or isinstance(x, (jax.Array, np.generic))
            for x in [*state.values(), *inputs.values()]
        )

        def call(
            state, inputs, *, steps, record, record_every, spike_capacity=0, spike_train=False, checkpoint_every=0
        ):
            """One call of the forward kernel: (new state, traces, other results by role; with
            ``checkpoint_every``, also the adjoint's checkpoints by name, ``checkpoint:<x>``)."""
            compiled = variant(record, spike_capacity, spike_train, checkpoint_every > 0)
            layout = Layout(compiled["layout"], dtype)
            n_rec = -(-steps // record_every)
            n_ckpt = -(-steps // checkpoint_every) if checkpoint_every else 0
            results = neuron_run_p(
                *layout.operands(state, inputs, n=n, reference=reference, steps=steps),
                outs=layout.result_structs(n=n, n_rec=n_rec, spike_capacity=spike_capacity, n_ckpt=n_ckpt),
                spec=compiled["spec"],
                key=compiled["key"],
                steps=steps,
                record_every=record_every,
                n_inner=n,
                spike_capacity=spike_capacity,
                checkpoint_every=checkpoint_every,
            )
            return layout.unpack(state, results, n=n, n_rec=n_rec)

        what = dict(
            steps=steps,
            record=record,
            record_every=record_every,
            spike_capacity=spike_capacity,
            spike_train=spike_train,
        )
        if arrays:
            new_state, traces, others = gradients.differentiable_run(
                self, dict(state), inputs, call=call, info=info, checkpoint_every=checkpoint_every, **what
            )
        else:
            # Quantities or other leaves JAX does not trace: converted by the layout, not differentiable.
            new_state, traces, others = call(state, inputs, **what)
        record_of_spikes = None
        if spike_capacity:
            record_of_spikes = spikes.from_kernel(
                others["spike_index"].reshape((spike_capacity,)),
                others["spike_step"].reshape((spike_capacity,)),
                others["spike_total"].reshape((2,)),
                t_end_words=new_state["t"],
                steps=steps,
                dt=dt,
            )
        return new_state, RunResult(
            spike_count=others["spike_count"],
            traces=traces,
            spikes=record_of_spikes,
            spike_train=others.get("spike_train"),
        )
