"""Inputs that are not neurons: ``PoissonInput`` (Brian2's: ``Binomial(n, rate*dt) * weight``
added to a target variable every step, without synapses) and ``TimedArray`` (values sampled on
their own time grid, read in equations as ``stim(t)`` or ``stim(t, i)``).
"""

from __future__ import annotations

import numpy as np

from .. import arguments
from ..units import TIME, to_kernel_units
from .base import NetworkObject, describe, schedule_order
from .groups import NeuronGroup, Subgroup, rate_value

__all__ = ["PoissonInput", "TimedArray"]


class PoissonInput(NetworkObject):
    """``n`` independent Poisson sources of rate ``rate`` acting on ``target_var`` of every neuron
    of ``target`` (Brian2's ``PoissonInput(target, target_var, N, rate, weight)``): each step,
    ``target_var += Binomial(n, rate*dt) * weight`` in the synapses phase.

    ``rate``: 1/ms (the kernels' unit system: 10 Hz is 0.01) or a frequency quantity;
    ``rate*dt`` must be at most 1. ``weight``: a number or quantity, or a string expression
    of the target's variables and constants (``"we"``) or of ``constants``. ``order``: Poisson
    inputs run by ``(order, name)``, after the projections' deliveries of the step (Brian2 sorts
    them together with the synapse pathways; both only add, so this moves no value but the
    rounding of a sum)."""

    kind = "PoissonInput"

    def __init__(
        self,
        target,
        target_var: str,
        n=None,
        rate=None,
        weight=None,
        *,
        N=None,
        constants=None,
        order: int = 0,
        name: str | None = None,
    ):
        super().__init__(name)
        self.order = schedule_order(order, self)
        if n is None:
            n = N
        elif N is not None:
            raise self.error("give n or its Brian2 name N, not both", cls=TypeError)
        if n is None or rate is None or weight is None:
            missing = [k for k, v in dict(n=n, rate=rate, weight=weight).items() if v is None]
            raise self.error(f"missing {', '.join(missing)}", cls=TypeError)
        if not isinstance(target, (NeuronGroup, Subgroup)) or not isinstance(target.root, NeuronGroup):
            raise self.error(
                f"the target must be a NeuronGroup or a slice of one, got {type(target).__name__}", cls=TypeError
            )
        if not isinstance(target_var, str):
            raise self.error(f"target_var must be a variable name, got {target_var!r}", cls=TypeError)
        model = target.root.model
        writable = tuple(model.state_variables) + tuple(model.parameters)
        if target_var not in writable:
            raise self.error(
                f"target variable {target_var!r} is not a variable of {describe(target.root)} "
                f"(its state variables and parameters: {', '.join(writable) or 'none'})",
                field="target_var",
            )
        self.target = target
        self.target_var = target_var
        self.n = arguments.count(n, f"{describe(self)}: n")
        self.rate = rate_value(rate, "rate", self)
        if isinstance(self.rate, np.ndarray):
            raise self.error("rate must be one value (Brian2's PoissonInput has one rate)", field="rate")
        self.constants = {**_numeric(model.constants), **arguments.constants(constants)}
        if isinstance(weight, str):
            self.weight = weight
        else:
            self.weight = arguments.number(weight, f"{describe(self)}: weight", field="weight")

    def check_dt(self, dt: float):
        """``rate*dt`` is a probability: it must not pass 1."""
        if isinstance(self.rate, float) and self.rate * dt > 1:
            raise self.error(
                f"rate*dt = {self.rate * dt:g} is more than 1: rates are in 1/ms (the kernels' unit system), so "
                f"rate={self.rate:g} is {self.rate * 1000:g} Hz; for {self.rate:g} Hz write {self.rate / 1000:g} or "
                "a quantity (10*Hz)",
                field="rate",
            )


def _numeric(constants) -> dict:
    return {k: float(v) for k, v in constants.items() if isinstance(v, (int, float))}


class TimedArray(NetworkObject):
    """Values on a time grid of step ``dt``, Brian2's ``TimedArray``: ``values`` of shape
    ``(n_times,)`` (one value for every neuron) or ``(n_times, n)`` (one per neuron). In
    equations, ``name(t)`` or ``name(t, i)`` is the value of the sample ``int(t / dt)``, the last
    one after the end (Brian2's rule). It is stored once, at its own sampling interval, not once
    per step. Its ``name`` is the function's name in the equations."""

    kind = "TimedArray"

    def __init__(self, values, dt, *, name: str | None = None):
        self._automatic_name = name is None
        super().__init__(name)
        array = np.asarray(to_kernel_units(values, f"{describe(self)}: values"), dtype=np.float64)
        if array.ndim not in (1, 2) or array.shape[0] == 0:
            raise self.error(f"values must have shape (n_times,) or (n_times, n), got {array.shape}", field="values")
        if not np.isfinite(array).all():
            raise self.error("values must be finite", field="values")
        self.values = array
        self.dt = arguments.duration(dt, f"{describe(self)}: dt", allow_zero=False)
        to_kernel_units(dt, "dt", expect=TIME)

    def adopt_name(self, name: str):
        """Takes ``name`` if it was left to its automatic one (the key it is first given under)."""
        if self._automatic_name:
            self.name = name
            self._automatic_name = False

    @property
    def n_times(self) -> int:
        return self.values.shape[0]

    @property
    def per_neuron(self) -> bool:
        return self.values.ndim == 2
