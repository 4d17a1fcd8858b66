"""Float64 references (numpy) for networks, written from Brian2's documented schedule, apart from
the generated code: nothing here is shared with the library or its Python layer.

One step k (t = k*dt), Brian2's default schedule:

1. start: traces recorded (values at the start of the step);
2. groups: refractoriness from the start of the step (``k - lastspike >= refractory steps``),
   every group integrated (variables "unless refractory" held while refractory);
3. thresholds on the new values (not while refractory); ``lastspike = k``; spikes recorded;
4. synapses: every projection, in creation order, delivers the spikes of step ``k - d`` through
   its synapses with delay ``d`` steps (``d = int(delay/dt + 0.5)``), events ordered by spike step,
   then neuron index, then synapse order; each event runs ``target[j] += w`` (or ``= w``);
5. resets on the neurons that spiked in 3;
6. end: population rates counted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

NEVER = -(10**9)


@dataclasses.dataclass
class Group:
    """A population: ``state`` name -> (n,) float64; ``update(state, not_refractory)`` returns
    the integrated state; ``threshold(state)`` a bool mask; ``reset(state, mask)`` changes the
    state in place; ``refractory_steps`` (0: none). ``spike_steps`` (optional): a generator
    group's own spikes, step -> indices, instead of a threshold."""

    n: int
    state: dict
    update: Callable | None = None
    threshold: Callable | None = None
    reset: Callable | None = None
    refractory_steps: int = 0
    spike_steps: dict | None = None


@dataclasses.dataclass
class Projection:
    """Synapses ``i`` (source index) -> ``j`` (target index), each with a delay in steps and a
    weight (one number or one per synapse), acting on ``target_var`` by ``op`` ("+=" or "=")."""

    source: str
    target: str
    i: np.ndarray
    j: np.ndarray
    target_var: str
    weight: np.ndarray | float
    delay_steps: np.ndarray | int = 0
    op: str = "+="


def delay_steps(delay_ms, dt_ms: float) -> np.ndarray:
    """Brian2's rounding of a delay to steps: ``int(d/dt + 0.5)``."""
    return np.floor(np.asarray(delay_ms, dtype=np.float64) / dt_ms + 0.5).astype(np.int64)


@dataclasses.dataclass
class Result:
    spikes: dict  # group -> (steps array, indices array), in order of emission
    traces: dict  # (group, var) -> (steps, n) values at the start of each step
    counts: dict  # group -> (n,) spike counts
    state: dict  # group -> final state
    rate: dict  # group -> (steps,) spikes per step / n


def simulate(groups: dict, projections: list, steps: int, *, record=(), start_step: int = 0) -> Result:
    """Runs ``steps`` steps from ``start_step``; ``record`` is a list of (group, var)."""
    lastspike = {g: np.full(grp.n, NEVER, dtype=np.int64) for g, grp in groups.items()}
    history = {g: {} for g in groups}  # step -> spiking indices (kept for the delays)
    spikes = {g: ([], []) for g in groups}
    counts = {g: np.zeros(grp.n, dtype=np.int64) for g, grp in groups.items()}
    traces = {key: np.empty((steps, groups[key[0]].n)) for key in record}
    rate = {g: np.zeros(steps) for g in groups}
    prepared = []
    for p in projections:
        order = np.argsort(p.i, kind="stable")
        d = np.broadcast_to(np.asarray(p.delay_steps, dtype=np.int64), p.i.shape)[order]
        w = np.broadcast_to(np.asarray(p.weight, dtype=np.float64), p.i.shape)[order]
        offsets = np.zeros(groups[p.source].n + 1, dtype=np.int64)
        np.cumsum(np.bincount(p.i, minlength=groups[p.source].n), out=offsets[1:])
        prepared.append((p, offsets, p.j[order], d, w))
    max_delay = max((int(d.max()) for *_, d, _ in prepared if d.size), default=0)
    if any(int(d.min()) < 0 for *_, d, _ in prepared if d.size):
        raise ValueError("negative delay")

    for s in range(steps):
        k = start_step + s
        for key in record:
            traces[key][s] = groups[key[0]].state[key[1]]
        fired = {}
        for g, grp in groups.items():
            if grp.spike_steps is not None:
                fired[g] = np.asarray(grp.spike_steps.get(k, ()), dtype=np.int64)
                continue
            not_ref = (k - lastspike[g]) >= grp.refractory_steps
            if grp.update is not None:
                grp.state = grp.update(grp.state, not_ref)
            if grp.threshold is not None:
                fired[g] = np.nonzero(grp.threshold(grp.state) & not_ref)[0]
            else:
                fired[g] = np.zeros(0, dtype=np.int64)
        for g, idx in fired.items():
            lastspike[g][idx] = k
            history[g][k] = idx
            spikes[g][0].append(np.full(idx.size, k))
            spikes[g][1].append(idx)
            counts[g][idx] += 1
            rate[g][s] = idx.size / groups[g].n
        for p, offsets, pj, d, w in prepared:
            target = groups[p.target].state[p.target_var]
            for spike_step in sorted(history[p.source]):
                neurons = history[p.source][spike_step]
                if not neurons.size:
                    continue
                # this step's events of those spikes: neuron order, then synapse order
                syn = np.concatenate([np.arange(offsets[n], offsets[n + 1]) for n in neurons])
                syn = syn[spike_step + d[syn] == k]
                if p.op == "+=":
                    np.add.at(target, pj[syn], w[syn])
                else:
                    for s_ in syn:
                        target[pj[s_]] = w[s_]
        for g, idx in fired.items():
            if groups[g].reset is not None and idx.size:
                groups[g].reset(groups[g].state, idx)
        for g in groups:
            for old in [t for t in history[g] if t < k - max_delay]:
                del history[g][old]
    spikes = {
        g: (np.concatenate(st) if st else np.zeros(0, np.int64), np.concatenate(ix) if ix else np.zeros(0, np.int64))
        for g, (st, ix) in spikes.items()
    }
    return Result(spikes, traces, counts, {g: grp.state for g, grp in groups.items()}, rate)


# -- the two benchmark neuron models --------------------------------------------------------------


def cuba_update(c: dict, dt: float) -> Callable:
    """CUBA's exact step: with u = v - El, ge(t) = ge e^{-t/taue}, gi(t) = gi e^{-t/taui},
    du/dt = (-u + ge(t) + gi(t)) / taum has the solution
    u(dt) = (u - A - B) e^{-dt/taum} + A e^{-dt/taue} + B e^{-dt/taui},
    A = ge taue / (taue - taum), B = gi taui / (taui - taum). While refractory, v is held."""
    taum, taue, taui, el = c["taum"], c["taue"], c["taui"], c["El"]
    em, ee, ei = np.exp(-dt / taum), np.exp(-dt / taue), np.exp(-dt / taui)
    ka, kb = taue / (taue - taum), taui / (taui - taum)

    def update(state, not_ref):
        v, ge, gi = state["v"], state["ge"], state["gi"]
        a, b = ge * ka, gi * kb
        u = (v - el - a - b) * em + a * ee + b * ei
        return dict(v=np.where(not_ref, el + u, v), ge=ge * ee, gi=gi * ei)

    return update


def coba_update(c: dict, dt: float) -> Callable:
    """COBA's forward-Euler step (Brian2's choice for it: the coefficients depend on ge, gi)."""

    def update(state, not_ref):
        v, ge, gi = state["v"], state["ge"], state["gi"]
        dv = (ge * (c["Ee"] - v) + gi * (c["Ei"] - v) - (v - c["El"])) / c["taum"]
        return dict(v=np.where(not_ref, v + dt * dv, v), ge=ge + dt * (-ge / c["taue"]), gi=gi + dt * (-gi / c["taui"]))

    return update


def benchmark_network(net, dt: float) -> tuple[dict, list]:
    """The groups and projections of a drawn CUBA / COBA network (network_models.Network)."""
    c = net.constants
    update = cuba_update(c, dt) if net.name == "cuba" else coba_update(c, dt)

    def reset(state, idx):
        state["v"][idx] = c["Vr"]

    group = Group(
        n=net.n,
        state=dict(v=net.v.astype(np.float64).copy(), ge=net.ge.astype(np.float64).copy(), gi=net.gi.copy()),
        update=update,
        threshold=lambda s: s["v"] > c["Vt"],
        reset=reset,
        refractory_steps=int(round(5.0 / dt)),
    )
    w = net.weights
    projections = [
        Projection("P", "P", net.exc_i, net.exc_j, "ge", w["we"]),
        Projection("P", "P", net.inh_i + net.n_exc, net.inh_j, "gi", w["wi"]),
    ]
    return {"P": group}, projections
