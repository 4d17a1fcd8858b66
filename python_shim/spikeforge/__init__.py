"""spikeforge: spiking-neuron models written as equations, run as generated CUDA / C kernels
through XLA FFI custom calls, under ``jax.jit`` and ``jax.vmap``."""

from . import _native
from .model_class import Model, PythonModel
from .neuron import ModelError, NeuronModel, RunResult, neuron_run_p
from .primitive import XLACustomKernel

__version__ = _native.version()

__all__ = ["NeuronModel", "ModelError", "RunResult", "XLACustomKernel", "neuron_run_p", "generate"]
__all__ += ["Model", "PythonModel"]


def generate(model: NeuronModel, target: str = "cuda", **kwargs) -> str:
    """The generated kernel source of ``model`` for ``target`` ("cuda" or "c")."""
    return model.source(target, **kwargs)
