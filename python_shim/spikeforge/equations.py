"""The equations of a model as the library reads them: a string, or a ``brian2.Equations`` object.

Why not ``str(brian2.Equations(...))``: Brian2 prints units by their symbols (``V``, ``S/(m^2)``)
and ``boolean`` as ``1``, so the text it prints is not the text that was written. The object is
written back one definition per line from its parts instead (name, expression, unit, type,
flags), in the order they were given. brian2 is not imported here: an ``Equations`` object can
only exist once brian2 is.
"""

from __future__ import annotations

import sys

from .errors import ModelError

__all__ = ["equations_text", "is_brian_equations"]


def is_brian_equations(value) -> bool:
    brian2 = sys.modules.get("brian2")
    return brian2 is not None and isinstance(value, brian2.Equations)


def _unit(eq) -> str:
    """The annotation after ``:``: the variable's type or its unit, in SI names."""
    if eq.var_type in ("boolean", "integer"):
        return eq.var_type
    if eq.dim.is_dimensionless:
        return "1"
    from brian2 import get_unit  # already imported: the Equations object exists

    return repr(get_unit(eq.dim))


def _line(name: str, eq) -> str:
    flags = f" ({', '.join(eq.flags)})" if eq.flags else ""
    annotation = f" : {_unit(eq)}{flags}"
    if eq.type == "differential equation":
        return f"d{name}/dt = {eq.expr.code}{annotation}"
    if eq.type == "subexpression":
        return f"{name} = {eq.expr.code}{annotation}"
    return f"{name}{annotation}"


def equations_text(equations) -> str:
    """The equations as text: a string unchanged, a ``brian2.Equations`` written back line by line."""
    if isinstance(equations, str):
        return equations
    if is_brian_equations(equations):
        return "\n".join(_line(name, eq) for name, eq in equations.items())
    raise ModelError(
        f"equations must be a string or a brian2.Equations object, got {type(equations).__name__}",
        field="equations",
    )
