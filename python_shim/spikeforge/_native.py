"""Finds and loads the spikeforge library and registers its XLA FFI targets with JAX.

The library is a plain C-ABI shared object (no Python extension module): model validation and
source generation are JSON-in/JSON-out calls, and the XLA handlers are handed to ``jax.ffi``.
Which handlers there are is the library's to say (``sf_ffi_targets``): this module registers
exactly what it reports, each for the execution stages it names.
"""

from __future__ import annotations

import ctypes
import glob
import json
import os
import sys
from pathlib import Path

import jax

_HERE = Path(__file__).resolve().parent


def _candidates():
    env = os.environ.get("SPIKEFORGE_LIBRARY")
    if env:
        yield Path(env)
    for pattern in ("_spikeforge*.so", "libspikeforge*.so"):
        yield from sorted(_HERE.glob(pattern))
    repo = _HERE.parent.parent
    for profile in ("release", "debug"):
        yield repo / "target" / profile / "libspikeforge.so"


def _find_library() -> Path:
    tried = []
    for p in _candidates():
        tried.append(str(p))
        if p.is_file():
            return p
    raise ImportError(
        "spikeforge: the native library was not found (looked at: "
        + ", ".join(tried)
        + "). Install the package with `pip install .` from the repository, or build it with "
        "`cargo build --release` and set SPIKEFORGE_LIBRARY to target/release/libspikeforge.so."
    )


def _preload_cuda_libraries():
    """Makes NVRTC findable by soname for the library's dynamic loading.

    pip's CUDA 13 wheels put libnvrtc in site-packages/nvidia/cu13/lib, which is not on the loader
    path; NVRTC itself dlopens libnvrtc-builtins. Loading both with RTLD_GLOBAL first lets a later
    dlopen("libnvrtc.so.13") find the already-loaded copy. Failures are silent: the CPU backend
    needs none of this, and the CUDA runtime reports a clear error if NVRTC is really missing.
    """
    dirs = []
    for base in sys.path:
        for sub in ("nvidia/cu13/lib", "nvidia/cuda_nvrtc/lib"):
            d = os.path.join(base, sub)
            if os.path.isdir(d):
                dirs.append(d)
    for env in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(env):
            dirs.append(os.path.join(os.environ[env], "lib64"))
    dirs.append("/usr/local/cuda/lib64")
    for name in ("libnvrtc-builtins.so.13*", "libnvrtc.so.13*"):
        for d in dirs:
            hits = sorted(glob.glob(os.path.join(d, name)))
            if hits:
                try:
                    ctypes.CDLL(hits[0], mode=ctypes.RTLD_GLOBAL)
                    break
                except OSError:
                    continue


_preload_cuda_libraries()
LIBRARY_PATH = _find_library()
_lib = ctypes.CDLL(str(LIBRARY_PATH))
_lib.sf_model_compile.argtypes = [ctypes.c_char_p]
_lib.sf_model_compile.restype = ctypes.c_void_p
_lib.sf_model_source.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
_lib.sf_model_source.restype = ctypes.c_void_p
_lib.sf_model_adjoint.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
_lib.sf_model_adjoint.restype = ctypes.c_void_p
_lib.sf_string_free.argtypes = [ctypes.c_void_p]
_lib.sf_string_free.restype = None
_lib.sf_version.restype = ctypes.c_char_p
_lib.sf_initial_values.argtypes = [ctypes.c_char_p]
_lib.sf_initial_values.restype = ctypes.c_void_p
_lib.sf_cuda_compile_check.argtypes = [ctypes.c_char_p]
_lib.sf_cuda_compile_check.restype = ctypes.c_void_p
_lib.sf_connect_compile.argtypes = [ctypes.c_char_p]
_lib.sf_connect_compile.restype = ctypes.c_void_p
_lib.sf_connect_source.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
_lib.sf_connect_source.restype = ctypes.c_void_p
_lib.sf_ffi_targets.argtypes = []
_lib.sf_ffi_targets.restype = ctypes.c_char_p


def _take_json(ptr) -> dict:
    if not ptr:
        raise RuntimeError("spikeforge: the native library returned no answer")
    try:
        return json.loads(ctypes.string_at(ptr).decode("utf-8"))
    finally:
        _lib.sf_string_free(ptr)


def model_compile(spec_json: str) -> dict:
    return _take_json(_lib.sf_model_compile(spec_json.encode("utf-8")))


def model_source(spec_json: str, target: str) -> dict:
    return _take_json(_lib.sf_model_source(spec_json.encode("utf-8"), target.encode("utf-8")))


def model_adjoint(spec_json: str, target: str) -> dict:
    """The adjoint kernel of a model and its buffers, or why its runs are not differentiable."""
    return _take_json(_lib.sf_model_adjoint(spec_json.encode("utf-8"), target.encode("utf-8")))


def initial_values(request: dict) -> dict:
    """Initial values given as expressions, evaluated by the library (``sf_initial_values``)."""
    return _take_json(_lib.sf_initial_values(json.dumps(request).encode("utf-8")))


def connect_compile(spec_json: str) -> dict:
    return _take_json(_lib.sf_connect_compile(spec_json.encode("utf-8")))


def connect_source(spec_json: str, target: str) -> dict:
    return _take_json(_lib.sf_connect_source(spec_json.encode("utf-8"), target.encode("utf-8")))


def cuda_compile_check(request: dict) -> dict:
    return _take_json(_lib.sf_cuda_compile_check(json.dumps(request).encode("utf-8")))


def version() -> str:
    return _lib.sf_version().decode()


def ffi_targets() -> dict:
    """What the library exports: ``{"api_version": [major, minor], "targets": [{"name",
    "platform", "symbol", "stages", "command_buffer_compatible"}, ...]}`` (static, from Rust's
    ``handlers::registry``)."""
    return json.loads(_lib.sf_ffi_targets().decode("utf-8"))


def _register_targets():
    for target in ffi_targets()["targets"]:
        capsule = jax.ffi.pycapsule(getattr(_lib, target["symbol"]))
        # One symbol serves every stage: XLA passes the stage in the call frame.
        stages = {stage: capsule for stage in target["stages"]}
        try:
            jax.ffi.register_ffi_target(target["name"], stages, platform=target["platform"])
        except Exception:  # noqa: BLE001 - a jaxlib without that platform: CPU still works
            if target["platform"] == "cpu":
                raise


_register_targets()
