"""The network part of the library's C ABI (``ffi/spikeforge.h``), JSON in and out like the rest:
``sf_network_compile`` (validation, canonical spec, key, argument layout), ``sf_network_source``
(the generated kernels, for reading), ``sf_network_adjoint`` (the backward kernel of
runs, ``gradients``) and ``sf_network_last_path`` (which path a run took)."""

from __future__ import annotations

import ctypes

from .. import _native

__all__ = ["network_adjoint", "network_compile", "network_last_path", "network_last_path_detail", "network_source"]

_lib = _native._lib


def _bind(name: str, nargs: int):
    fn = getattr(_lib, name, None)
    if fn is None:
        return None
    fn.argtypes = [ctypes.c_char_p] * nargs
    fn.restype = ctypes.c_void_p
    return fn


_compile = _bind("sf_network_compile", 1)
_source = _bind("sf_network_source", 2)
_last_path = _bind("sf_network_last_path", 1)
_adjoint = _bind("sf_network_adjoint", 2)


def _missing(name: str):
    raise RuntimeError(
        f"spikeforge: the library at {_native.LIBRARY_PATH} has no {name}: it predates networks; rebuild it "
        "(cargo build --release) or reinstall the package"
    )


def network_compile(spec_json: str) -> dict:
    if _compile is None:
        _missing("sf_network_compile")
    return _native._take_json(_compile(spec_json.encode("utf-8")))


def network_source(spec_json: str, target: str) -> dict:
    if _source is None:
        _missing("sf_network_source")
    return _native._take_json(_source(spec_json.encode("utf-8"), target.encode("utf-8")))


def network_adjoint(spec_json: str, target: str) -> dict:
    """The network's adjoint kernel and its buffers, or why its runs are not differentiable."""
    if _adjoint is None:
        _missing("sf_network_adjoint")
    return _native._take_json(_adjoint(spec_json.encode("utf-8"), target.encode("utf-8")))


def network_last_path(key: str):
    """The path the last run of the network with this key took ("per_step", "block", "grid",
    "cpu"), or None before its first run."""
    if _last_path is None:
        _missing("sf_network_last_path")
    return _native._take_json(_last_path(key.encode("utf-8")))["path"]


def network_last_path_detail(key: str):
    """How the last GPU run of the network with this key ran its path ("grid: 313 blocks of 128
    threads, flat barrier, 4 register slots"), or None before one."""
    if _last_path is None:
        _missing("sf_network_last_path")
    return _native._take_json(_last_path(key.encode("utf-8"))).get("detail")
