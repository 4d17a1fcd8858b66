"""Benchmarks spikeforge networks against a pure-JAX implementation of the same network and
brainevent 0.3's event-driven propagation, in one process: COBA and CUBA networks at scales x1,
x10, x100, and (``--scaling``) the cost against neurons and firing rate.

Usage::

    python bench/bench_networks.py [--cpu | --gpu] [--quick] [--models coba_be,coba,cuba | all]
        [--scales 1,10] [--duration MS] [--strategy per_step,block,grid,auto]
        [--baselines jax,brainevent | none] [--json PATH]
    python bench/bench_networks.py --scaling [--sizes 1000,4000,...] [--drives 10.5,11,20,60] ...

The networks (issue 9 / 10), ``4000*s`` LIF neurons, 80% excitatory, every neuron with 80 targets
drawn with replacement among all neurons (fixed out-degree), refractory 5 ms, dt 0.1 ms:

- ``coba_be``: brainevent's ``examples/COBA_2005.py``: conductance synapses (we 0.6, wi 6.7 in
  the example's mS against mV, hence the 1e-3 factor on the synaptic term), tau 20 ms, a constant
  input of 20 mV, V0 ~ N(-55, 2) mV, exponential Euler (brainstate's ``exp_euler_step``); ~50 Hz.
- ``coba``: the same at full strength (Brette et al. 2007's COBA / Vogels-Abbott weights,
  6 nS and 67 nS in units of the 10 nS leak: 0.6 and 6.7, no 1e-3), so recurrent inhibition
  shapes the rate (~21 Hz); the 20 mV input keeps it driven (without it the activity of a
  random start dies out).
- ``cuba``: Brian2's ``examples/CUBA.py`` (we 1.62 mV, wi -9 mV, El -49 mV, exact integration,
  v0 = Vr + rand*(Vt - Vr)), with fixed out-degree 80 in place of p = 0.02 so that the scales keep
  80 synapses a neuron.

Every implementation simulates the very same synapses (the baselines read spikeforge's
connectivity from the state) and initial state, with Brian2's schedule; the rates are compared
(float32: within 1% for ``coba_be``, 10% for the chaotic ``coba`` and ``cuba``, whose float32
trajectories diverge; float64: equal spike counts for every neuron), so a wrong kernel fails the
run (exit status 1) instead of being reported as fast.

Baselines: ``jax``, a jitted ``lax.scan`` with event-driven propagation (compacted spike indices,
then a scatter-add of their rows); ``brainevent``, the same scan with propagation by brainevent's
``binary_fcnmv`` (fixed-connection event-driven matvec, backend ``cuda_raw`` on a GPU, what
brainevent's COBA example runs; ``numba`` or ``jax_raw`` on a CPU); a clear line says when
brainevent cannot be imported and its column is left out.

Also measured: the bytes of each projection's connectivity in the state against its floor
(4 bytes per synapse for the target index, the weight's bytes only when weights are per synapse,
and the row offsets), and on a GPU the peak device memory of building it.

``--strategy``: the GPU paths to time in the same run (``Network(strategy=...)``: the per-step
kernels, the persistent kernel as one block or as a cooperative grid, or auto's choice), one
table row each, with the path each run took (``net.last_strategy``); default ``auto``. A strategy
may name the grid barrier, cap the grid's blocks and name the register grid's deliveries for its
row: ``grid:flat``, ``grid:split``, ``grid:grouped``, ``grid:acquire``, ``grid:spread``, ``grid:flat:132``,
``auto::264``, ``grid:flat::balanced``, ``auto:acquire:157:warp`` (the settings
``SPIKEFORGE_GRID_BARRIER``, ``SPIKEFORGE_GRID_BLOCKS`` and ``SPIKEFORGE_GRID_DELIVERY`` during
that row's calls), so that barrier variants, grid sizes and deliveries are timed side by side.

``--scaling``: brainevent's COBA from 1k to 1M neurons at its 20 mV drive, and at a few sizes
the drive varied (``--drives``, I_ext in mV: about 9, 19, 53 and 116 Hz) so that the rate
changes; µs per step for every strategy and baseline, so the crossover between paths shows.

Timing: a warm-up call, then at least 3 timed calls (median, min), each the whole run as one
jitted call.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import spikeforge as sf
from jax import lax

# -- the networks ----------------------------------------------------------------------------------

DT = 0.1  # ms
OUT_DEGREE = 80
REFRACTORY = 5.0
EXC_FRACTION = 0.8


@dataclasses.dataclass(frozen=True)
class NetModel:
    """One of the benchmark's networks: the neurons' equations and constants, the two
    projections' weights (``ge_post += we``, ``gi_post += wi``), and how ``v`` starts."""

    name: str
    title: str
    equations: str
    constants: dict
    method: str
    we: float
    wi: float
    kind: str  # "coba" (conductances, exponential Euler) or "cuba" (currents, exact)
    factor: float = 1.0  # coba: the factor on the synaptic term
    v0: str = "normal"  # "normal": N(-55, 2) mV (brainevent's); "uniform": Vr + rand*(Vt - Vr) (Brian2's)
    # relative rate difference allowed in float32: brainevent's COBA is driven, its trajectories
    # stay together (1%); the recurrent ones are chaotic, float32 roundings make the trajectories
    # diverge within ~100 ms and only the statistics agree (the float64 check stays exact: equal
    # spike counts for every neuron)
    rate_tolerance: float = 0.01


def _coba(factor: str) -> str:
    return f"""
dv/dt = (-(v - El) + I_ext + {factor}*(ge*(Ee - v) + gi*(Ei - v)))/tau : volt (unless refractory)
dge/dt = -ge/taue : 1
dgi/dt = -gi/taui : 1
"""


COBA_CONSTANTS = dict(tau=20.0, El=-60.0, Vt=-50.0, Vr=-60.0, Ee=0.0, Ei=-80.0, taue=5.0, taui=10.0, I_ext=20.0)
MODELS = {
    "coba_be": NetModel(
        "coba_be",
        "COBA of brainevent's examples/COBA_2005.py (1e-3 on the synaptic term)",
        _coba("1e-3"),
        COBA_CONSTANTS,
        "exponential_euler",
        we=0.6,
        wi=6.7,
        kind="coba",
        factor=1e-3,
    ),
    "coba": NetModel(
        "coba",
        "COBA at full strength (Brette et al. 2007 / Vogels-Abbott weights in units of gL: a recurrent network)",
        _coba("1.0"),
        COBA_CONSTANTS,
        "exponential_euler",
        we=0.6,
        wi=6.7,
        kind="coba",
        factor=1.0,
        rate_tolerance=0.1,
    ),
    "cuba": NetModel(
        "cuba",
        "CUBA of Brian2's examples/CUBA.py (we 1.62 mV, wi -9 mV, El -49 mV, exact)",
        """
dv/dt = (ge + gi - (v - El))/taum : volt (unless refractory)
dge/dt = -ge/taue : volt
dgi/dt = -gi/taui : volt
""",
        dict(taum=20.0, taue=5.0, taui=10.0, Vt=-50.0, Vr=-60.0, El=-49.0),
        "exact",
        we=1.62,
        wi=-9.0,
        kind="cuba",
        v0="uniform",
        rate_tolerance=0.1,
    ),
}


@dataclasses.dataclass(frozen=True)
class Case:
    model: NetModel
    n: int
    duration_ms: float

    @property
    def scale(self) -> float:
        return self.n / 4000

    @property
    def label(self) -> str:
        s = self.scale
        return f"x{s:g}" if s >= 1 else f"{self.n}"

    @property
    def n_exc(self) -> int:
        return round(EXC_FRACTION * self.n)

    @property
    def steps(self) -> int:
        return round(self.duration_ms / DT)


WORKLOADS = {
    "gpu": dict(scales=(1, 10, 100), duration_ms=10_000.0),
    "cpu": dict(scales=(1, 10), duration_ms=1000.0),
    "quick": dict(scales=(1,), duration_ms=100.0),
}


def build_network(case: Case, strategy: str = "auto", constants: dict | None = None, spikes: bool = False):
    """The spikeforge network of ``case`` (one group, two projections of fixed out-degree 80
    drawn with replacement, a spike counter), run by ``strategy`` on a GPU. ``constants``
    overrides some of the model's (the scaling table's drive); ``spikes`` adds a SpikeMonitor of
    the group (``out.spikes``)."""
    m = case.model
    P = sf.NeuronGroup(
        case.n,
        m.equations,
        threshold="v > Vt",
        reset="v = Vr",
        refractory=REFRACTORY,
        constants={**m.constants, **(constants or {})},
        method=m.method,
        name="P",
    )
    Ce = sf.Synapses(P[: case.n_exc], P, on_pre="ge_post += we", constants=dict(we=m.we), name="Ce")
    Ci = sf.Synapses(P[case.n_exc :], P, on_pre="gi_post += wi", constants=dict(wi=m.wi), name="Ci")
    Ce.connect(fixed_out_degree=OUT_DEGREE, replace=True, seed=11)
    Ci.connect(fixed_out_degree=OUT_DEGREE, replace=True, seed=12)
    monitors = dict(spikes=sf.SpikeMonitor(P)) if spikes else {}
    return sf.Network(P, Ce, Ci, **monitors, dt=DT, strategy=strategy)


def initial_v(model: NetModel, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if model.v0 == "uniform":
        c = model.constants
        return c["Vr"] + rng.random(n) * (c["Vt"] - c["Vr"])
    return rng.normal(-55.0, 2.0, n)


# -- the pure-JAX implementation (and brainevent's event-driven propagation) -----------------------


def brainevent_backend():
    """``(brainevent module, backend)`` for this platform, or ``(None, why)`` when brainevent
    cannot be imported: ``cuda_raw`` on a GPU (the issue's baseline), else ``numba`` where
    numba is installed, else ``jax_raw``."""
    try:
        import brainevent
    except Exception as err:  # ImportError, or a broken install
        return None, f"brainevent not importable ({type(err).__name__}: {err})"
    if jax.default_backend() == "gpu":
        return brainevent, "cuda_raw"
    try:
        import numba  # noqa: F401
    except ImportError:
        return brainevent, "jax_raw"
    return brainevent, "numba"


def _v_update(m: NetModel, dtype):
    """``(v, ge, gi) -> v`` after one step (before refractoriness), the model's integrator
    written out: exponential Euler for COBA (brainstate's ``exp_euler_step``: v is linear in
    itself with the conductances held), the exact solution of the linear system for CUBA."""
    c = m.constants
    if m.kind == "coba":
        f = m.factor

        def update(v, ge, gi):
            a = (c["El"] + c["I_ext"] + f * (ge * c["Ee"] + gi * c["Ei"])) / c["tau"]
            b = -(1.0 + f * (ge + gi)) / c["tau"]
            return -a / b + (v + a / b) * jnp.exp(b * DT)

        return update
    em, ee, ei = (math.exp(-DT / c[k]) for k in ("taum", "taue", "taui"))
    ke = c["taue"] / (c["taue"] - c["taum"])
    ki = c["taui"] / (c["taui"] - c["taum"])

    def update(v, ge, gi):
        # v(t) = El + Ae e^{-t/taue} + Ai e^{-t/taui} + (v0 - El - Ae - Ai) e^{-t/taum}
        ae, ai = ge * ke, gi * ki
        return c["El"] + ae * ee + ai * ei + (v - c["El"] - ae - ai) * em

    return update


def jax_network(
    case: Case,
    targets_e: np.ndarray,
    targets_i: np.ndarray,
    dtype,
    max_events: int,
    brainevent=None,
    backend: str | None = None,
    constants: dict | None = None,
):
    """A jitted function ``(v0) -> (spike counts, overflow)`` running the network for
    ``case.steps`` steps with Brian2's schedule (refractoriness from the start of the step,
    the update, threshold, propagation of this step's spikes, reset). ``targets_*``:
    ``(n_pre, 80)`` postsynaptic indices.

    Propagation is event-driven. Pure JAX (``brainevent=None``): at most ``max_events`` spiking
    neurons per step and population are compacted (``overflow`` counts the steps where more
    spiked, which would make the result wrong) and only their rows are scattered. With
    ``brainevent``: its fixed-connection event-driven matvec ``binary_fcnmv(transpose=True)``
    on the spike vector, by ``backend`` (what brainevent's COBA example runs), ``overflow`` 0."""
    m = case.model
    c = {**m.constants, **(constants or {})}
    m = dataclasses.replace(m, constants=c)
    update = _v_update(m, dtype)
    n, n_exc = case.n, case.n_exc
    ref_steps = round(REFRACTORY / DT)
    decay_e = math.exp(-DT / c["taue"])
    decay_i = math.exp(-DT / c["taui"])

    if brainevent is None:
        # padded rows: index n (one past the end) is dropped by the scatter
        te = jnp.asarray(np.vstack([targets_e, np.full((1, OUT_DEGREE), n)]), jnp.int32)
        ti = jnp.asarray(np.vstack([targets_i, np.full((1, OUT_DEGREE), n)]), jnp.int32)
        k_e, k_i = min(max_events, n_exc), min(max_events, n - n_exc)

        def deliver_e(g, spikes):
            return _scatter(g, spikes, te, k_e, m.we, dtype)

        def deliver_i(g, spikes):
            return _scatter(g, spikes, ti, k_i, m.wi, dtype)
    else:
        te = jnp.asarray(targets_e, jnp.int32)
        ti = jnp.asarray(targets_i, jnp.int32)

        def matvec(table, w, spikes):
            weights = jnp.asarray([w], dtype)
            shape = (table.shape[0], n)
            return brainevent.binary_fcnmv(weights, table, spikes, shape=shape, transpose=True, backend=backend)

        def deliver_e(g, spikes):
            return g + matvec(te, m.we, spikes), False

        def deliver_i(g, spikes):
            return g + matvec(ti, m.wi, spikes), False

    def step(carry, k):
        v, ge, gi, last, count, overflow = carry
        active = (k - last) >= ref_steps
        v = jnp.where(active, update(v, ge, gi), v)
        ge, gi = ge * decay_e, gi * decay_i
        spike = active & (v > c["Vt"])
        last = jnp.where(spike, k, last)
        ge, over_e = deliver_e(ge, spike[:n_exc])
        gi, over_i = deliver_i(gi, spike[n_exc:])
        v = jnp.where(spike, c["Vr"], v)
        return (v, ge, gi, last, count + spike, overflow + (over_e | over_i)), None

    @jax.jit
    def run(v0):
        zeros = jnp.zeros(n, dtype)
        carry = (v0.astype(dtype), zeros, zeros, jnp.full(n, -(10**9), jnp.int32), jnp.zeros(n, jnp.int32), 0)
        (v, _, _, _, count, overflow), _ = lax.scan(step, carry, jnp.arange(case.steps, dtype=jnp.int32))
        return count, overflow

    return run


def _scatter(g, spikes, table, k, w, dtype):
    idx = jnp.nonzero(spikes, size=k, fill_value=spikes.shape[0])[0]
    rows = table[idx].reshape(-1)
    return g.at[rows].add(jnp.asarray(w, dtype), mode="drop"), jnp.sum(spikes) > k


# -- measuring ------------------------------------------------------------------------------------


@dataclasses.dataclass
class Timing:
    times: list

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    def text(self) -> str:
        return f"{self.median:.3f} ({min(self.times):.3f})"


GRID_SETTINGS = (
    "SPIKEFORGE_GRID_BARRIER",
    "SPIKEFORGE_GRID_BLOCKS",
    "SPIKEFORGE_GRID_DELIVERY",
    "SPIKEFORGE_CLUSTER_DELIVERY",
    "SPIKEFORGE_CLUSTER_TARGETS",
    "SPIKEFORGE_CLUSTER_ARRIVALS",
    "SPIKEFORGE_CLUSTER_SYNC",
)
BARRIERS = ("flat", "release", "acquire", "spread", "split", "grouped")
DELIVERIES = ("warp", "balanced")
# the cluster kernel's variants (``cluster:<variant>[+<variant>...][:blocks]``): its deliveries by
# the block with the target cache, by the block with every target from global memory, or by the
# warp that finds the spikes (the default where every arrival is counted); its arrivals counted
# where a projection adds one value (the default) or added as floats (``add``); a step's wait for
# the arrivals before it at the cluster's barrier (``barrier``, the default) or by mbarriers that
# count them (``mbarrier``, where every arrival is counted)
CLUSTER_VARIANTS = {
    "mbarrier": {"SPIKEFORGE_CLUSTER_SYNC": "mbarrier"},
    "barrier": {"SPIKEFORGE_CLUSTER_SYNC": "barrier"},
    "block": {"SPIKEFORGE_CLUSTER_DELIVERY": "block"},
    "global": {"SPIKEFORGE_CLUSTER_DELIVERY": "block", "SPIKEFORGE_CLUSTER_TARGETS": "global"},
    "warp": {"SPIKEFORGE_CLUSTER_DELIVERY": "warp"},
    "add": {"SPIKEFORGE_CLUSTER_ARRIVALS": "add"},
}


def parse_strategy(text: str) -> tuple[str, dict]:
    """``strategy[:barrier[:blocks[:delivery]]]`` (``cluster[:variant[+variant...][:blocks]]``, a
    variant among ``CLUSTER_VARIANTS``) ->
    (strategy, the grid settings it sets); ValueError when a part is not one (an empty part leaves
    its setting unset)."""
    base, *rest = text.split(":")
    if base not in sf.Network.STRATEGIES or len(rest) > 3:
        raise ValueError(f"{text!r}: expected strategy[:{'|'.join(BARRIERS)}[:blocks[:{'|'.join(DELIVERIES)}]]]")
    settings = {}
    if base == "cluster" and rest and rest[0]:
        for variant in rest[0].split("+"):
            if variant not in CLUSTER_VARIANTS:
                raise ValueError(f"{text!r}: the cluster's variants are {', '.join(CLUSTER_VARIANTS)}, not {variant!r}")
            settings.update(CLUSTER_VARIANTS[variant])
    elif rest and rest[0]:
        if rest[0] not in BARRIERS:
            raise ValueError(f"{text!r}: the barrier is one of {', '.join(BARRIERS)}, not {rest[0]!r}")
        settings[GRID_SETTINGS[0]] = rest[0]
    if len(rest) >= 2 and rest[1]:
        if not rest[1].isdigit() or int(rest[1]) < 1:
            raise ValueError(f"{text!r}: the blocks are a whole number of at least 1, not {rest[1]!r}")
        settings[GRID_SETTINGS[1]] = rest[1]
    if len(rest) == 3 and rest[2]:
        if rest[2] not in DELIVERIES:
            raise ValueError(f"{text!r}: the deliveries are {' or '.join(DELIVERIES)}, not {rest[2]!r}")
        settings[GRID_SETTINGS[2]] = rest[2]
    return base, settings


@contextlib.contextmanager
def grid_settings(settings: dict):
    """The grid settings ``settings`` in the environment (the others unset) while inside: the
    handler reads them at every call."""
    saved = {k: os.environ.get(k) for k in GRID_SETTINGS}
    try:
        for k in GRID_SETTINGS:
            os.environ.pop(k, None)
        os.environ.update(settings)
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def time_calls(fn, *args, repeats: int = 3):
    out = jax.block_until_ready(fn(*args))  # compile and warm up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return Timing(times), out


def connectivity_bytes(state: dict, projection: str) -> tuple[int, int, int]:
    """(bytes in the state, floor, synapses) of one projection's connectivity."""
    entry = state[projection]
    held = sum(int(np.asarray(a).nbytes) for a in jax.tree_util.tree_leaves(entry))
    n_syn = int(np.asarray(entry["targets"]).size)
    n_rows = int(np.asarray(entry["row_offsets"]).size)
    weights = sum(int(np.asarray(a).nbytes) for k, a in entry.items() if k not in ("targets", "row_offsets"))
    floor = 4 * n_syn + weights + 4 * n_rows
    return held, floor, n_syn


def targets_table(state: dict, projection: str, n_pre: int) -> np.ndarray:
    """The ``(n_pre, 80)`` target table of a fixed-out-degree projection, from its CSR."""
    offsets = np.asarray(state[projection]["row_offsets"])
    assert (np.diff(offsets) == OUT_DEGREE).all(), "fixed out-degree rows"
    return np.asarray(state[projection]["targets"]).reshape(n_pre, OUT_DEGREE)


def peak_device_bytes() -> int | None:
    stats = jax.devices()[0].memory_stats() or {}
    return stats.get("peak_bytes_in_use")


def rates_agree(rate: float, reference: float, tolerance: float = 0.01) -> bool:
    return abs(rate - reference) <= tolerance * max(reference, 1e-9)


BASELINES = ("jax", "brainevent")


def run_baselines(case, state, dtype, repeats, baselines, constants=None) -> dict:
    """Each baseline's timing, spike counts and overflow on the network held in ``state``:
    ``{name: dict(timing=, counts=, overflow=)}``, or ``{name: dict(skipped=why)}``."""
    te = targets_table(state, "Ce", case.n_exc)
    ti = targets_table(state, "Ci", case.n - case.n_exc)
    v0 = jnp.asarray(initial_v(case.model, case.n), dtype)
    out = {}
    for name in baselines:
        if name == "jax":
            run = jax_network(case, te, ti, dtype, max(256, case.n // 10), constants=constants)
        else:
            module, backend = brainevent_backend()
            if module is None:
                out[name] = dict(skipped=backend)
                continue
            run = jax_network(case, te, ti, dtype, 0, brainevent=module, backend=backend, constants=constants)
        try:
            timing, (counts, overflow) = time_calls(run, v0, repeats=repeats)
        except Exception as err:  # a backend that cannot build its kernel here: say so, go on
            out[name] = dict(skipped=f"{name} failed: {type(err).__name__}: {str(err).splitlines()[0][:200]}")
            continue
        out[name] = dict(timing=timing, counts=np.asarray(counts), overflow=int(overflow))
        if name == "brainevent":
            out[name]["backend"] = backend
    return out


def run_case(case: Case, dtype, repeats: int, strategies=("auto",), baselines=BASELINES, constants=None) -> list[dict]:
    """One row per strategy: spikeforge's time by that path, the baselines' times (measured
    once, on the same synapses and initial state), the rates, whether they agree, and the
    connectivity's memory. ``constants``: overrides of the model's constants."""
    nets = {st: build_network(case, parse_strategy(st)[0], constants) for st in strategies}
    first = nets[strategies[0]]
    peak_before = peak_device_bytes()
    t0 = time.perf_counter()
    state = first.init_state(seed=0, dtype=dtype, P=dict(v=initial_v(case.model, case.n)))
    jax.block_until_ready(state)
    build_s = time.perf_counter() - t0
    peak_after = peak_device_bytes()
    memory = {p: connectivity_bytes(state, p) for p in ("Ce", "Ci")}
    seconds = case.duration_ms / 1000.0
    base = run_baselines(case, state, dtype, repeats, baselines, constants)
    for name, b in base.items():
        if "skipped" in b:
            print(f"  {case.model.name} {case.label}: {name} baseline skipped: {b['skipped']}", flush=True)
        else:
            b["rate"] = float(b["counts"].mean() / seconds)

    rows = []
    for strategy, net in nets.items():
        # every network of the case has the same definition but its strategy: one state for all
        run_sf = jax.jit(lambda s, net=net: net.run(s, duration=case.duration_ms, progress=False))
        with grid_settings(parse_strategy(strategy)[1]):
            try:
                t_sf, (_, out) = time_calls(run_sf, state, repeats=repeats)
            except jax.errors.JaxRuntimeError as e:
                # a strategy the network cannot take (e.g. 'cluster' without a cluster kernel, or
                # too large for one cluster): no row, said on one line
                if "strategy '" not in str(e):
                    raise
                print(f"  {case.model.name} n={case.n} {strategy}: skipped ({str(e).split(';')[0]})", flush=True)
                continue
        counts_sf = np.asarray(out.spike_count["P"])
        rate_sf = float(counts_sf.mean() / seconds)
        checks = []  # (baseline, agrees)
        for name, b in base.items():
            if "counts" not in b:
                continue
            ok = b["overflow"] == 0 and rates_agree(rate_sf, b["rate"], case.model.rate_tolerance)
            if jnp.dtype(dtype) == jnp.float64:
                ok = ok and bool((counts_sf == b["counts"]).all())
            checks.append((name, ok))
        row = dict(
            model=case.model.name,
            scale=case.scale,
            label=case.label,
            n=case.n,
            synapses=sum(m[2] for m in memory.values()),
            duration_ms=case.duration_ms,
            dtype=jnp.dtype(dtype).name,
            strategy=strategy,
            path=net.last_strategy,
            path_detail=net.last_path_detail,
            constants=dict(constants or {}),
            spikeforge_s=t_sf.median,
            spikeforge_times=t_sf.times,
            rate_spikeforge_hz=rate_sf,
            checked_against=[name for name, _ in checks],
            # None: no baseline was asked for (--baselines none), so nothing checked the row
            agree=all(ok for _, ok in checks) if checks else (False if baselines else None),
            connect_s=build_s,
            connectivity_bytes=sum(m[0] for m in memory.values()),
            connectivity_floor=sum(m[1] for m in memory.values()),
            peak_device_bytes_before=peak_before,
            peak_device_bytes_after=peak_after,
        )
        for name, b in base.items():
            if "timing" in b:
                row[f"{name}_s"] = b["timing"].median
                row[f"{name}_times"] = b["timing"].times
                row[f"rate_{name}_hz"] = b["rate"]
                row[f"{name}_overflow_steps"] = b["overflow"]
                if "backend" in b:
                    row[f"{name}_backend"] = b["backend"]
            else:
                row[f"{name}_skipped"] = b["skipped"]
        rows.append(row)
    return rows


def _baseline_cell(r: dict, name: str) -> str:
    if f"{name}_s" not in r:
        return "-"
    return f"{r[f'{name}_s']:.3f} ({min(r[f'{name}_times']):.3f})"


def _speedup(r: dict, name: str) -> str:
    if not r["agree"] or f"{name}_s" not in r:
        return "-"
    return f"{r[f'{name}_s'] / r['spikeforge_s']:.1f}x"


def _rates(r: dict, names) -> str:
    parts = [f"{r['rate_spikeforge_hz']:.2f}"]
    parts += [f"{r[f'rate_{n}_hz']:.2f}" for n in names if f"rate_{n}_hz" in r]
    return " / ".join(parts)


def _agreement(rows) -> str:
    """The agree cell of rows: a mismatch where any was checked and disagreed or no asked-for
    baseline ran, "unchecked" where no baseline was asked for."""
    if any(r["agree"] is False for r in rows):
        return "**MISMATCH**"
    return "yes" if all(r["agree"] for r in rows) else "unchecked"


def print_tables(rows: list[dict], baselines=BASELINES):
    for model in dict.fromkeys(r["model"] for r in rows):
        mrows = [r for r in rows if r["model"] == model]
        present = [b for b in baselines if any(f"{b}_s" in r for r in mrows)]
        backend = next((r["brainevent_backend"] for r in mrows if "brainevent_backend" in r), None)
        heads = [("pure JAX s", "vs JAX")] if "jax" in present else []
        if "brainevent" in present:
            heads.append((f"brainevent ({backend}) s", "vs brainevent"))
        print(f"\n{MODELS[model].title}")
        cols = ["scale", "neurons", "synapses", "dtype", "bio ms", "strategy (path)", "spikeforge s, median (min)"]
        cols += [h for pair in heads for h in pair]
        cols += ["rate sf / " + " / ".join("JAX" if b == "jax" else b for b in present) + " (Hz)", "agree"]
        print("| " + " | ".join(cols) + " |")
        print("|" + "---|" * len(cols))
        for r in mrows:
            cells = [
                r["label"],
                str(r["n"]),
                str(r["synapses"]),
                r["dtype"],
                f"{r['duration_ms']:.0f}",
                f"{r['strategy']} ({r['path']})",
                f"{r['spikeforge_s']:.3f} ({min(r['spikeforge_times']):.3f})",
            ]
            for b in present:
                cells += [_baseline_cell(r, b), _speedup(r, b)]
            cells += [_rates(r, present), _agreement([r])]
            print("| " + " | ".join(cells) + " |")
    print(
        "\n| model | scale | synapses | connectivity bytes | floor | ratio | build s "
        "| device peak before / after (MB) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in {(r["model"], r["n"]): r for r in rows}.values():
        peak = "-"
        if r["peak_device_bytes_after"] is not None:
            peak = f"{(r['peak_device_bytes_before'] or 0) / 1e6:.1f} / {r['peak_device_bytes_after'] / 1e6:.1f}"
        print(
            f"| {r['model']} | {r['label']} | {r['synapses']} | {r['connectivity_bytes'] / 1e6:.1f} MB | "
            f"{r['connectivity_floor'] / 1e6:.1f} MB | {r['connectivity_bytes'] / r['connectivity_floor']:.3f} | "
            f"{r['connect_s']:.2f} | {peak} |"
        )


# -- cost scaling ----------------------------------------------------------------------------------

SCALING = {
    "gpu": dict(sizes=(1000, 4000, 16000, 64000, 256000, 1000000), rate_sizes=(4000, 256000), duration_ms=1000.0),
    "cpu": dict(sizes=(1000, 4000, 16000, 64000), rate_sizes=(4000,), duration_ms=200.0),
    "quick": dict(sizes=(1000, 4000), rate_sizes=(1000,), duration_ms=50.0),
}
# I_ext (mV) of brainevent's COBA: the drive sets the rate (a neuron alone: 1/(5 ms + 20 ms
# ln(I/(I - 10))), i.e. about 9, 19, 53 and 116 Hz; the recurrent 1e-3 term moves it a little)
DRIVES = (10.5, 11.0, 20.0, 60.0)
BLOCK_MAX_NEURONS = 16_000


def run_scaling(kind: str, strategies, dtype, repeats: int, baselines, sizes=None, drives=None, duration=None):
    """Wall time against neurons (at the default drive) and against the rate (drive), each
    strategy a row, on brainevent's COBA; every row checked against the baselines' rates."""
    work = SCALING[kind]
    sizes = sizes or work["sizes"]
    drives = drives or DRIVES
    duration = duration or work["duration_ms"]
    model = MODELS["coba_be"]
    points = [(n, COBA_CONSTANTS["I_ext"]) for n in sizes]
    points += [(n, d) for n in work["rate_sizes"] for d in drives if (n, d) not in points]
    rows = []
    for n, drive in points:
        case = Case(model, n, duration)
        # one block runs every neuron and synapse with 128 threads: beyond ~16k neurons a run
        # takes minutes and says nothing new
        here = tuple(s for s in strategies if s != "block" or n <= BLOCK_MAX_NEURONS) or ("auto",)
        for r in run_case(case, dtype, repeats, here, baselines, constants=dict(I_ext=drive)):
            r["drive"] = drive
            rows.append(r)
            print(f"  scaling n={n} I_ext={drive} {r['strategy']} ({r['path']}): {r['spikeforge_s']:.3f} s", flush=True)
    return rows


def print_scaling(rows: list[dict], strategies, baselines=BASELINES):
    present = [b for b in baselines if any(f"{b}_s" in r for r in rows)]
    print("\nCost scaling (brainevent's COBA, fixed out-degree 80): µs per step, median of the timed runs")
    cols = ["neurons", "synapses", "I_ext mV", "rate Hz", "events/step"]
    cols += [f"{s}" for s in strategies] + [("pure JAX" if b == "jax" else b) for b in present]
    cols += ["paths taken", "agree"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    by_point = {}
    for r in rows:
        by_point.setdefault((r["n"], r["drive"]), []).append(r)
    for (n, drive), group in by_point.items():
        r0 = group[0]
        steps = round(r0["duration_ms"] / DT)
        events = r0["rate_spikeforge_hz"] * 1e-3 * DT * n * OUT_DEGREE
        per = {r["strategy"]: r for r in group}
        cells = [str(n), str(r0["synapses"]), f"{drive:g}", f"{r0['rate_spikeforge_hz']:.1f}", f"{events:.0f}"]
        cells += [f"{per[s]['spikeforge_s'] / steps * 1e6:.2f}" if s in per else "-" for s in strategies]
        cells += [f"{r0[f'{b}_s'] / steps * 1e6:.2f}" if f"{b}_s" in r0 else "-" for b in present]
        cells += [
            ", ".join(f"{r['strategy']}->{r['path']}" for r in group),
            _agreement(group),
        ]
        print("| " + " | ".join(cells) + " |")


def _csv(text: str, cast, what: str, parser):
    try:
        values = tuple(cast(s.strip()) for s in text.split(",") if s.strip())
    except ValueError:
        parser.error(f"{what}: a comma-separated list of numbers, got {text!r}")
    if not values:
        parser.error(f"{what}: none given")
    return values


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--cpu", action="store_true", help="CPU workload set (x1, x10 for 1 s)")
    group.add_argument("--gpu", action="store_true", help="GPU workload set (x1, x10, x100 for 10 s)")
    parser.add_argument("--quick", action="store_true", help="smoke run: x1 for 100 ms (CI)")
    parser.add_argument("--models", default="coba_be", help=f"comma-separated, among {', '.join(MODELS)}, or all")
    parser.add_argument("--scales", help="comma-separated scales (x 4000 neurons), overriding the set's")
    parser.add_argument("--duration", type=float, help="biological ms, overriding the set's")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--strategy",
        default="auto",
        help="comma-separated GPU paths to time, one row each: per_step, block, grid, auto (default auto), "
        "each with an optional grid barrier and block cap (grid:flat, grid:grouped:264)",
    )
    parser.add_argument(
        "--baselines", default="jax,brainevent", help="comma-separated among jax, brainevent, or none (default both)"
    )
    parser.add_argument("--scaling", action="store_true", help="the cost-scaling table instead (neurons and rate)")
    parser.add_argument("--sizes", help="--scaling: comma-separated neuron counts, overriding the set's")
    parser.add_argument("--drives", help="--scaling: comma-separated I_ext values (mV) of the rate rows")
    parser.add_argument("--json", help="also write every number here")
    args = parser.parse_args(argv)
    strategies = tuple(s.strip() for s in args.strategy.split(",") if s.strip())
    unknown = [s for s in strategies if s.split(":")[0] not in sf.Network.STRATEGIES]
    if unknown or not strategies:
        parser.error(
            f"--strategy: {', '.join(unknown) or 'none given'}; choose among {', '.join(sf.Network.STRATEGIES)}"
        )
    for s in strategies:
        try:
            parse_strategy(s)
        except ValueError as e:
            parser.error(f"--strategy: {e}")
    baselines = () if args.baselines == "none" else tuple(s.strip() for s in args.baselines.split(",") if s.strip())
    if any(b not in BASELINES for b in baselines):
        parser.error(f"--baselines: choose among {', '.join(BASELINES)}, or none; got {args.baselines!r}")
    models = tuple(MODELS) if args.models == "all" else tuple(s.strip() for s in args.models.split(","))
    if any(m not in MODELS for m in models):
        parser.error(f"--models: choose among {', '.join(MODELS)}, or all; got {args.models!r}")
    if args.repeats < 3:
        parser.error("--repeats: at least 3 timed runs")
    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    if args.quick:
        kind = "quick"
    elif args.gpu or args.cpu:
        kind = "gpu" if args.gpu else "cpu"
    else:
        kind = "gpu" if jax.default_backend() == "gpu" else "cpu"
    print(f"spikeforge {sf.__version__}, jax {jax.__version__}, device {jax.devices()[0]}, set {kind!r}")
    dtype = jnp.dtype(args.dtype)
    if args.scaling:
        sizes = _csv(args.sizes, int, "--sizes", parser) if args.sizes else None
        drives = _csv(args.drives, float, "--drives", parser) if args.drives else None
        rows = run_scaling(kind, strategies, dtype, args.repeats, baselines, sizes, drives, args.duration)
        print_scaling(rows, strategies, baselines)
    else:
        work = dict(WORKLOADS[kind])
        scales = _csv(args.scales, float, "--scales", parser) if args.scales else work["scales"]
        duration = args.duration or work["duration_ms"]
        rows = []
        for name in models:
            for s in scales:
                case = Case(MODELS[name], round(4000 * s), duration)
                for r in run_case(case, dtype, args.repeats, strategies, baselines):
                    rows.append(r)
                    times = ", ".join(f"{b} {r[f'{b}_s']:.3f} s" for b in baselines if f"{b}_s" in r)
                    print(
                        f"  {name} {case.label} {r['strategy']} ({r['path']}): spikeforge {r['spikeforge_s']:.3f} s"
                        + (f", {times}" if times else "")
                        + (f" [{r['path_detail']}]" if r.get("path_detail") else ""),
                        flush=True,
                    )
        print_tables(rows, baselines)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    bad = [r for r in rows if r["agree"] is False]
    for r in bad:
        why = "no baseline ran to check it" if not r["checked_against"] else "rates disagree"
        print(f"MISMATCH: {r['model']} {r['label']} {r['strategy']}: {why}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
