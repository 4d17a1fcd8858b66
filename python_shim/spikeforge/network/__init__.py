"""Networks: groups of neurons connected by synapses, with inputs and monitors, simulated with
Brian2's schedule by generated kernels (docs/NETWORKS.md; the user's guide: README.md, "Networks").

Modules, in the order a network is made: ``base`` (names), ``groups`` (NeuronGroup, PoissonGroup,
SpikeGeneratorGroup, subgroups), ``synapses`` (Synapses and connect), ``inputs`` (PoissonInput,
TimedArray), ``monitors`` (monitors and their records), ``collect`` (what belongs to a network),
``spec`` (the network spec the library compiles), ``csr`` (synapses in the kernels' order),
``layout`` (state <-> FFI operands), ``primitive`` (the FFI call and its vmap rule),
``progress``, ``output``, ``network`` (Network: init_state, run, step), ``plot``.
"""

from .groups import NeuronGroup, PoissonGroup, SpikeGeneratorGroup, Subgroup
from .inputs import PoissonInput, TimedArray
from .monitors import PopulationRateMonitor, RateRecord, SpikeMonitor, SpikeRecord, StateMonitor, StateRecord
from .network import Network
from .output import NetworkOutput
from .plot import plot_raster
from .synapses import Synapses

__all__ = [
    "NeuronGroup", "Subgroup", "PoissonGroup", "SpikeGeneratorGroup", "Synapses", "PoissonInput", "TimedArray",
    "SpikeMonitor", "StateMonitor", "PopulationRateMonitor", "SpikeRecord", "StateRecord", "RateRecord",
    "Network", "NetworkOutput", "plot_raster",
]  # fmt: skip
