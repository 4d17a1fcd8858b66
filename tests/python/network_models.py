"""The networks the network tests run: their equation strings, constants, connectivity and initial
values, drawn once with numpy so that spikeforge, the float64 references (network_references.py)
and Brian2 (brian2_networks.py) all get the very same synapses and starting state.

CUBA is Brian2's ``examples/CUBA.py`` (Brette et al. 2007, benchmark 2), verbatim equations, exact
(``linear``) integration. COBA is Brette et al. 2007's benchmark 1 (Vogels & Abbott 2005 with
conductances, in units of the leak conductance: we = 6 nS / 10 nS, wi = 67 nS / 10 nS), integrated
with Euler as Brian2 chooses for it. Constants are numbers in the kernels' unit system (ms, mV).
"""

from __future__ import annotations

import dataclasses

import numpy as np

DT = 0.1  # ms

CUBA_EQUATIONS = """
dv/dt  = (ge+gi-(v-El))/taum : volt (unless refractory)
dge/dt = -ge/taue : volt
dgi/dt = -gi/taui : volt
"""
CUBA_CONSTANTS = dict(taum=20.0, taue=5.0, taui=10.0, Vt=-50.0, Vr=-60.0, El=-49.0)
CUBA_WEIGHTS = dict(we=60 * 0.27 / 10, wi=-20 * 4.5 / 10)  # mV

COBA_EQUATIONS = """
dv/dt = (ge*(Ee-v)+gi*(Ei-v)-(v-El))/taum : volt (unless refractory)
dge/dt = -ge/taue : 1
dgi/dt = -gi/taui : 1
"""
COBA_CONSTANTS = dict(taum=20.0, taue=5.0, taui=10.0, Vt=-50.0, Vr=-60.0, El=-60.0, Ee=0.0, Ei=-80.0)
COBA_WEIGHTS = dict(we=6.0 / 10.0, wi=67.0 / 10.0)  # in units of the leak conductance

THRESHOLD = "v>Vt"
RESET = "v = Vr"
REFRACTORY_MS = 5.0


@dataclasses.dataclass(frozen=True)
class Network:
    """One drawn network: ``n`` neurons, the first ``n_exc`` excitatory; projections from the
    excitatory (``exc_i`` within 0..n_exc, ``exc_j`` within 0..n) and inhibitory (``inh_i`` within
    0..n - n_exc) subgroups onto the whole group, sorted by presynaptic index (creation order);
    initial values ``v``, ``ge``, ``gi``."""

    name: str
    n: int
    n_exc: int
    exc_i: np.ndarray
    exc_j: np.ndarray
    inh_i: np.ndarray
    inh_j: np.ndarray
    v: np.ndarray
    ge: np.ndarray
    gi: np.ndarray

    @property
    def equations(self) -> str:
        return CUBA_EQUATIONS if self.name == "cuba" else COBA_EQUATIONS

    @property
    def constants(self) -> dict:
        return CUBA_CONSTANTS if self.name == "cuba" else COBA_CONSTANTS

    @property
    def weights(self) -> dict:
        return CUBA_WEIGHTS if self.name == "cuba" else COBA_WEIGHTS

    @property
    def method(self) -> str:
        return "exact" if self.name == "cuba" else "euler"


def _bernoulli_pairs(rng, n_pre: int, n_post: int, p: float) -> tuple[np.ndarray, np.ndarray]:
    """Every (i, j) pair with probability p, sorted by i then j (Brian2's order for p=)."""
    mask = rng.random((n_pre, n_post)) < p
    i, j = np.nonzero(mask)
    return i.astype(np.int32), j.astype(np.int32)


def draw(name: str, n: int = 4000, *, p: float = 0.02, seed: int = 2007) -> Network:
    """CUBA or COBA with ``n`` neurons (80% excitatory), connection probability ``p``."""
    if name not in ("cuba", "coba"):
        raise ValueError(name)
    rng = np.random.default_rng(seed)
    n_exc = (4 * n) // 5
    exc_i, exc_j = _bernoulli_pairs(rng, n_exc, n, p)
    inh_i, inh_j = _bernoulli_pairs(rng, n - n_exc, n, p)
    c = CUBA_CONSTANTS if name == "cuba" else COBA_CONSTANTS
    v = c["Vr"] + rng.random(n) * (c["Vt"] - c["Vr"])
    if name == "cuba":
        ge = np.zeros(n)
        gi = np.zeros(n)
    else:
        # Brette et al. 2007's initial conductances (in units of the leak conductance), which
        # start the self-sustained activity of benchmark 1.
        ge = np.clip(rng.normal(4.0, 1.5, n), 0, None) / 10.0
        gi = np.clip(rng.normal(20.0, 12.0, n), 0, None) / 10.0
    return Network(name, n, n_exc, exc_i, exc_j, inh_i, inh_j, v, ge, gi)


def spikeforge_objects(net: Network, *, inh_delay: float = 0.0) -> tuple:
    """The drawn network as spikeforge objects: the group ``P`` and its projections ``Ce``, ``Ci``
    (explicit i/j connectivity; the inhibitory one with ``inh_delay`` ms)."""
    import spikeforge as sf

    P = sf.NeuronGroup(
        net.n,
        net.equations,
        threshold=THRESHOLD,
        reset=RESET,
        refractory=REFRACTORY_MS,
        constants=net.constants,
        method=net.method,
        name="P",
    )
    Ce = sf.Synapses(P[: net.n_exc], P, on_pre="ge += we", constants=dict(we=net.weights["we"]), name="Ce")
    Ci = sf.Synapses(
        P[net.n_exc :], P, on_pre="gi += wi", constants=dict(wi=net.weights["wi"]), delay=inh_delay or None, name="Ci"
    )
    Ce.connect(i=net.exc_i, j=net.exc_j)
    Ci.connect(i=net.inh_i, j=net.inh_j)
    return P, Ce, Ci
