"""Surrogate spikes: the smooth stand-in for the threshold's derivative when a run is
differentiated (``jax.grad`` through ``model.run``).

Why: a spike is a step function of the threshold's argument ``z`` (``v - v_th`` for
``threshold="v > v_th"``), whose derivative is 0 almost everywhere, so gradient descent through
spikes learns nothing. The forward pass stays exact (the same spikes); the backward pass replaces
``H'(z)`` by a bump ``s(z)``, named in the model::

    lif = sf.NeuronModel(eqs, threshold="v > v_th", reset="v = v_r",
                         surrogate=sf.surrogate.fast_sigmoid(25.0))

The functions are snnTorch's, with slope ``k``:

- ``fast_sigmoid(k)`` (SuperSpike): ``s(z) = 1 / (1 + k|z|)^2``
- ``sigmoid(k)``: ``s(z) = k σ(kz) (1 - σ(kz))``
- ``arctan(k)``: ``s(z) = (k/2) / (1 + (π k z / 2)^2)``
- ``piecewise_linear(k)`` (``triangle``): ``s(z) = max(0, k (1 - k|z|))``

``detach_reset``: the reset ``x' = spike ? r(x) : x`` has, besides the derivatives of its
branches, a term ``(r(x) - x) s(z) dz`` through the spike. By default it is differentiated;
``detach_reset=True`` drops it, which is what snnTorch always does (its reset signal is
``detach()``-ed) and SpikingJelly's ``detach_reset=True``.

A surrogate is data (a kind from this list and a positive slope), validated by the library; it
does not change the forward kernel. Without one, a run still differentiates, with the spike's
exact derivative 0 (right for runs without threshold crossings).
"""

from __future__ import annotations

import dataclasses
import math
import numbers

from .errors import ModelError

__all__ = ["Surrogate", "fast_sigmoid", "sigmoid", "arctan", "piecewise_linear", "triangle"]

KINDS = ("fast_sigmoid", "sigmoid", "arctan", "piecewise_linear")


@dataclasses.dataclass(frozen=True)
class Surrogate:
    """A surrogate function (``kind`` one of ``KINDS``) with its ``slope``; see the module docs."""

    kind: str
    slope: float
    detach_reset: bool = False

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ModelError(f"surrogate kind must be one of {KINDS}, got {self.kind!r}", field="surrogate")
        slope = self.slope
        if isinstance(slope, bool) or not isinstance(slope, numbers.Real):
            raise ModelError(f"surrogate slope must be a number, got {slope!r}", field="surrogate")
        if not (math.isfinite(float(slope)) and float(slope) > 0):
            raise ModelError(f"surrogate slope must be positive and finite, got {slope!r}", field="surrogate")
        object.__setattr__(self, "slope", float(slope))
        object.__setattr__(self, "detach_reset", bool(self.detach_reset))

    def spec(self) -> dict:
        """The model spec's ``surrogate`` entry."""
        return {"kind": self.kind, "slope": self.slope, "detach_reset": self.detach_reset}


def fast_sigmoid(slope: float = 25.0, *, detach_reset: bool = False) -> Surrogate:
    """SuperSpike's fast sigmoid: ``s(z) = 1 / (1 + slope |z|)^2``."""
    return Surrogate("fast_sigmoid", slope, detach_reset)


def sigmoid(slope: float = 25.0, *, detach_reset: bool = False) -> Surrogate:
    """The logistic's derivative: ``s(z) = slope σ(slope z) (1 - σ(slope z))``."""
    return Surrogate("sigmoid", slope, detach_reset)


def arctan(slope: float = 2.0, *, detach_reset: bool = False) -> Surrogate:
    """The arctangent's: ``s(z) = (slope/2) / (1 + (π slope z / 2)^2)``."""
    return Surrogate("arctan", slope, detach_reset)


def piecewise_linear(slope: float = 1.0, *, detach_reset: bool = False) -> Surrogate:
    """The triangle: ``s(z) = max(0, slope (1 - slope |z|))``."""
    return Surrogate("piecewise_linear", slope, detach_reset)


triangle = piecewise_linear
