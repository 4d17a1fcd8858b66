"""The CUBA and COBA networks of network_models.py run by Brian2 itself (numpy target, float64),
from their equation strings, with the drawn connectivity given as explicit i/j arrays and the
drawn initial values. Imported only where brian2 is installed.
"""

from __future__ import annotations

import numpy as np
from network_models import DT, REFRACTORY_MS, RESET, THRESHOLD


def run_brian2(net, duration_ms: float, *, record_v=()) -> dict:
    """Spikes as (step, index) arrays in Brian2's emission order, spike counts, and v traces of
    the neurons in ``record_v`` (values at the start of each step, mV)."""
    import brian2 as b2
    from brian2 import ms, mV

    b2.start_scope()
    b2.prefs.codegen.target = "numpy"
    b2.prefs.core.default_float_dtype = np.float64
    b2.defaultclock.dt = DT * ms
    units = {"cuba": dict(v=mV, g=mV), "coba": dict(v=mV, g=1)}[net.name]
    ns = {}
    for k, value in net.constants.items():
        ns[k] = value * (ms if k.startswith("tau") else mV)
    for k, value in net.weights.items():
        ns[k] = value * units["g"]
    P = b2.NeuronGroup(
        net.n,
        net.equations,
        threshold=THRESHOLD,
        reset=RESET,
        refractory=REFRACTORY_MS * ms,
        method="linear" if net.name == "cuba" else "euler",
        namespace=ns,
        name="P",
    )
    P.v = net.v * mV
    P.ge = net.ge * units["g"]
    P.gi = net.gi * units["g"]
    Pe, Pi = P[: net.n_exc], P[net.n_exc :]
    Ce = b2.Synapses(Pe, P, on_pre="ge += we", namespace=ns, name="Ce")
    Ci = b2.Synapses(Pi, P, on_pre="gi += wi", namespace=ns, name="Ci")
    Ce.connect(i=net.exc_i, j=net.exc_j)
    Ci.connect(i=net.inh_i, j=net.inh_j)
    spikes = b2.SpikeMonitor(P)
    objects = [P, Ce, Ci, spikes]
    if len(record_v):
        trace = b2.StateMonitor(P, "v", record=list(record_v))
        objects.append(trace)
    network = b2.Network(*objects)
    network.run(duration_ms * ms)
    steps = np.asarray(np.round(np.asarray(spikes.t / ms) / DT), dtype=np.int64)
    out = dict(steps=steps, indices=np.asarray(spikes.i, dtype=np.int64), counts=np.asarray(spikes.count))
    if len(record_v):
        out["v"] = np.asarray(trace.v / mV).T  # (steps, n_rec)
    return out
