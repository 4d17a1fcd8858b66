"""spikeforge: spiking-neuron models written as equations, run as generated CUDA / C kernels
through XLA FFI custom calls, under ``jax.jit`` and ``jax.vmap``.

Modules: ``group`` (what every group shares) and ``neuron`` (NeuronModel) with their front ends
``equations`` and ``model_class``; ``layout`` (state <-> FFI operands), ``clock`` (times in the
state), ``spikes`` (spike records), ``arguments`` and ``units``
(what users pass, checked and converted), ``errors``; ``ffi_primitive`` (the library's FFI
targets as JAX primitives) on ``primitive`` (XLACustomKernel); ``kernels`` (custom kernels),
``reductions``, ``brainevent``; ``network`` (networks: groups, synapses, inputs, monitors);
``_native`` (loading the library)."""

from . import _native, brainevent, clock, gradients, spikes, surrogate
from .clock import time_of
from .errors import KernelError, ModelError, SpikeforgeError, UnitError
from .group import Group
from .kernels import (
    CustomKernel,
    Launch,
    compile_cuda,
    cuda_callable,
    cuda_kernel,
    kernel_generator,
    launch_config,
)
from .model_class import Model, PythonModel
from .network import (
    Network,
    NetworkOutput,
    NeuronGroup,
    PoissonGroup,
    PoissonInput,
    PopulationRateMonitor,
    SpikeGeneratorGroup,
    SpikeMonitor,
    StateMonitor,
    Subgroup,
    Synapses,
    TimedArray,
    plot_raster,
)
from .neuron import NeuronModel, RunResult, neuron_run_p
from .primitive import XLACustomKernel
from .reductions import count_nonzero, population_rate, reduce_max, reduce_mean, reduce_min, reduce_sum
from .spikes import population_rate_trace

__version__ = _native.version()

__all__ = [
    # groups and neuron models
    "Group", "NeuronModel", "RunResult", "Model", "PythonModel", "generate", "neuron_run_p",
    "clock", "time_of", "spikes", "surrogate", "gradients",
    # networks
    "NeuronGroup", "Subgroup", "PoissonGroup", "SpikeGeneratorGroup", "Synapses", "PoissonInput", "TimedArray",
    "SpikeMonitor", "StateMonitor", "PopulationRateMonitor", "Network", "NetworkOutput", "plot_raster",
    # errors
    "SpikeforgeError", "ModelError", "UnitError", "KernelError",
    # primitives and custom kernels
    "XLACustomKernel", "cuda_kernel", "cuda_callable", "Launch", "CustomKernel",
    "compile_cuda", "launch_config", "kernel_generator", "brainevent",
    # reductions
    "reduce_sum", "reduce_mean", "reduce_max", "reduce_min", "count_nonzero", "population_rate",
    # spikes
    "population_rate_trace",
]  # fmt: skip


def generate(model: NeuronModel, target: str = "cuda", **kwargs) -> str:
    """The generated kernel source of ``model`` for ``target`` ("cuda" or "c")."""
    return model.source(target, **kwargs)
