"""The exceptions spikeforge raises, in one place.

Each one also derives from the built-in exception a Python user would expect for that kind of
mistake (a bad model or argument is a ``ValueError``, a kernel that does not build a
``RuntimeError``), so ``except ValueError`` keeps working; :class:`SpikeforgeError` catches them
all.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["SpikeforgeError", "ModelError", "UnitError", "KernelError"]


class SpikeforgeError(Exception):
    """The base of every exception spikeforge defines."""


class ModelError(SpikeforgeError, ValueError):
    """A mistake in a model or in a value given to it, located where that helps: ``field`` (the
    argument: ``equations``, ``threshold``, ``dt``, ...), ``line`` and ``column`` in that field's
    text, a ``suggestion``; ``str()`` renders it with a caret under the place.

    ``ModelError(message, field=...)`` for a mistake found in Python;
    :meth:`from_native` for a diagnostic returned by the library."""

    def __init__(
        self,
        message: str | Mapping,
        *,
        field: str | None = None,
        line: int | None = None,
        column: int | None = None,
        suggestion: str | None = None,
    ):
        if isinstance(message, Mapping):  # a diagnostic as the library returns it
            error = message
            field, line, column = error.get("field"), error.get("line"), error.get("column")
            suggestion = error.get("suggestion")
            self.detail = error.get("message")
            message = error.get("rendered") or error.get("message")
        else:
            self.detail = message
        self.field = field
        self.line = line
        self.column = column
        self.suggestion = suggestion
        super().__init__(message)

    @classmethod
    def from_native(cls, error: Mapping) -> ModelError:
        """The library's diagnostic (``{"field", "line", "column", "message", "rendered", ...}``)."""
        return cls(error)


class UnitError(ModelError):
    """A physical quantity whose dimension does not fit where it was given (``dt=5*mV``), or a
    quantity outside the kernels' unit system. ``field`` names the argument."""


class KernelError(SpikeforgeError, RuntimeError):
    """A kernel that does not compile, or a kernel name that is not in the source. ``kind`` is
    ``"compile"`` (the message carries NVRTC's log), ``"kernel_not_found"`` or ``"nvrtc_missing"``."""

    def __init__(self, kind: str, message: str):
        self.kind = kind
        super().__init__(message)
