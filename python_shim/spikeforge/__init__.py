"""spikeforge: spiking-neuron models written as equations, run as generated CUDA / C kernels
through XLA FFI custom calls, under ``jax.jit`` and ``jax.vmap``."""

from . import _native, brainevent
from .kernels import (
    CustomKernel,
    KernelError,
    Launch,
    compile_cuda,
    cuda_callable,
    cuda_kernel,
    kernel_generator,
    launch_config,
)
from .model_class import Model, PythonModel
from .neuron import ModelError, NeuronModel, RunResult, neuron_run_p
from .primitive import XLACustomKernel
from .reductions import count_nonzero, population_rate, reduce_max, reduce_mean, reduce_min, reduce_sum

__version__ = _native.version()

__all__ = [
    # neuron models
    "NeuronModel", "ModelError", "RunResult", "Model", "PythonModel", "generate", "neuron_run_p",
    # primitives and custom kernels
    "XLACustomKernel", "cuda_kernel", "cuda_callable", "Launch", "CustomKernel", "KernelError",
    "compile_cuda", "launch_config", "kernel_generator", "brainevent",
    # reductions
    "reduce_sum", "reduce_mean", "reduce_max", "reduce_min", "count_nonzero", "population_rate",
]  # fmt: skip


def generate(model: NeuronModel, target: str = "cuda", **kwargs) -> str:
    """The generated kernel source of ``model`` for ``target`` ("cuda" or "c")."""
    return model.source(target, **kwargs)
