"""Physical quantities (Brian2's, brainunit's / saiunit's) -> numbers in the kernels' unit system.

Why this exists: kernels compute in one system of units, ms, mV, nA, uS, nF, MOhm, um, mM (README,
"Unit convention"), and a plain number is taken as already in it. A Brian2 quantity holds its
value in SI units (``5*ms`` is 0.005), so reading it as a number would be silently 1000 times off.
Every place that takes a number (constants, initial values, ``dt``, ``refractory``, durations,
inputs) passes it through :func:`to_kernel_units`, which converts a quantity by its dimension and
rejects one whose dimension does not fit there, naming the argument.

The conversion factor of any dimension follows from the factors of the SI base units, so every
product and power of them is covered. In the kernels' system the base units are

====================  ===========  ===========================================
SI base unit          kernel unit  why
====================  ===========  ===========================================
metre                 um           (README)
second                ms           (README)
ampere                nA           (README)
kilogram              ug           volt = kg m^2 s^-3 A^-1 must be mV
mole                  amol         mol / m^3 must be mM: amol / um^3 = mM
kelvin                K            temperatures are kept in kelvin
====================  ===========  ===========================================

so that volt -> mV (1e3), siemens -> uS (1e6), farad -> nF (1e9), ohm -> MOhm (1e-6),
hertz -> 1/ms (1e-3). Candela is not part of the system (a quantity with it is refused).

The quantity libraries are optional and never imported here: a quantity can only exist once its
library is imported, so they are recognised by the module of their type.
"""

from __future__ import annotations

import math

import numpy as np

from .errors import UnitError

__all__ = ["TIME", "DIMENSIONLESS", "is_quantity", "dimension_of", "describe", "to_kernel_units"]

# The SI base dimensions in the order Brian2 and saiunit store them.
BASE_DIMENSIONS = ("m", "kg", "s", "A", "K", "mol", "cd")
# One SI base unit in kernel units, as a power of ten (None: not in the kernels' system).
_TEN_POWER = {"m": 6, "kg": 9, "s": 3, "A": 9, "K": 0, "mol": 18, "cd": None}

Dimension = tuple  # exponents of BASE_DIMENSIONS


def _dim(**exponents) -> Dimension:
    return tuple(float(exponents.get(b, 0)) for b in BASE_DIMENSIONS)


DIMENSIONLESS = _dim()
TIME = _dim(s=1)

# Names for the dimensions a neuron model uses most, with their kernel unit, for messages.
_NAMES = {
    DIMENSIONLESS: "dimensionless",
    TIME: "time (ms)",
    _dim(s=-1): "frequency (1/ms)",
    _dim(m=2, kg=1, s=-3, A=-1): "voltage (mV)",
    _dim(A=1): "current (nA)",
    _dim(m=-2, kg=-1, s=3, A=2): "conductance (uS)",
    _dim(m=-2, kg=-1, s=4, A=2): "capacitance (nF)",
    _dim(m=2, kg=1, s=-3, A=-2): "resistance (MOhm)",
    _dim(m=1): "length (um)",
    _dim(m=-3, mol=1): "concentration (mM)",
}

_QUANTITY_LIBRARIES = ("brian2", "brainunit", "saiunit")


def is_quantity(value) -> bool:
    """Whether ``value`` is a Brian2 or brainunit/saiunit quantity (or unit)."""
    module = type(value).__module__.split(".", 1)[0]
    return module in _QUANTITY_LIBRARIES and hasattr(value, "dim")


def dimension_of(value) -> Dimension:
    """The exponents of the SI base dimensions of a quantity."""
    dim = value.dim
    return tuple(float(dim.get_dimension(b)) for b in BASE_DIMENSIONS)


def describe(dim: Dimension) -> str:
    """A dimension for a message: its name where it has a common one, and its SI exponents."""
    parts = []
    for base, e in zip(BASE_DIMENSIONS, dim):
        if e:
            parts.append(base if e == 1 else f"{base}^{e:g}")
    si = " ".join(parts) or "1"
    name = _NAMES.get(tuple(dim))
    return f"{name}, {si}" if name and si != "1" else (name or si)


def _ten_power(dim: Dimension, what: str, value) -> float:
    """log10 of the factor from SI to kernel units for ``dim``."""
    p = 0.0
    for base, e in zip(BASE_DIMENSIONS, dim):
        if not e:
            continue
        if _TEN_POWER[base] is None:
            raise UnitError(
                f"{what}: {value!r} has the dimension {describe(dim)}, which the kernels' unit system "
                "(ms, mV, nA, uS, nF, MOhm, um, mM, K) does not cover",
                field=what,
            )
        p += e * _TEN_POWER[base]
    return p


def _times_ten_to(x, p: float):
    """``x * 10**p`` rounded once where ``p`` is an integer (multiplying by ``10.0**-3`` would
    round twice: ``0.1 * 1e-3`` is not the nearest double to 1e-4)."""
    if p == 0:
        return x
    if float(p).is_integer() and abs(p) <= 22:  # 10**22 is the largest exact power of ten
        k = int(p)
        return x * 10.0**k if k > 0 else x / 10.0**-k
    return x * 10.0**p


def _quantity_in_kernel_units(q, what: str):
    dim = dimension_of(q)
    p = _ten_power(dim, what, q)
    top = type(q).__module__.split(".", 1)[0]
    if top == "brian2":  # an ndarray holding SI values
        value = np.asarray(q)
        return dim, _times_ten_to(value if value.ndim else value.item(), p)
    # saiunit / brainunit: a mantissa in the quantity's own unit, which is
    # factor * base**scale SI units; a bare Unit is one of itself.
    unit = q.unit if hasattr(q, "unit") else q
    mantissa = q.mantissa if hasattr(q, "mantissa") else 1.0
    factor, base, scale = float(unit.factor), float(unit.base), float(unit.scale)
    if factor != 1.0:
        mantissa = mantissa * factor
    if base == 10.0:
        return dim, _times_ten_to(mantissa, scale + p)
    return dim, _times_ten_to(mantissa * base**scale, p)


def _same(a: Dimension, b: Dimension) -> bool:
    return all(math.isclose(x, y, abs_tol=1e-9) for x, y in zip(a, b))


def to_kernel_units(value, what: str, expect: Dimension | None = None):
    """``value`` in the kernels' unit system.

    A quantity is converted by its dimension (``0.1*ms`` -> 0.1, ``-65*mV`` -> -65, ``10*nS`` ->
    0.01); with ``expect``, a quantity of another dimension is a :class:`UnitError` naming
    ``what``. A plain number or array is returned unchanged (it is already in this system). Lists
    and tuples are converted element by element.
    """
    if is_quantity(value):
        dim, converted = _quantity_in_kernel_units(value, what)
        if expect is not None and not _same(dim, expect):
            raise UnitError(
                f"{what}: {value!r} has the dimension {describe(dim)}; expected {describe(expect)}",
                field=what,
            )
        return converted
    if isinstance(value, (list, tuple)) and any(is_quantity(v) or isinstance(v, (list, tuple)) for v in value):
        return [to_kernel_units(v, what, expect) for v in value]
    return value
