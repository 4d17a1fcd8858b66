"""``python -m spikeforge.demo``: a demo simulation on the GPU when JAX has one, else on the CPU.

Runs the seed-002 Hodgkin-Huxley population (RK4, 50 ms at dt 0.01 ms) and a large LIF
population (Euler with refractoriness, 1 s at dt 0.1 ms) through generated kernels under
``jax.jit``, then Brian2's CUBA example network (Vogels & Abbott 2005: 4000 LIF neurons, 2%
connectivity, 1 s) as one network run, and prints what it did, how long it took and what the
neurons did.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from . import network as nw
from .neuron import NeuronModel

HH_EQUATIONS = """
dv/dt = (I - gNa*m**3*h*(v - ENa) - gK*n**4*(v - EK) - gL*(v - EL)) / Cm : volt
dm/dt = alpha_m*(1 - m) - beta_m*m : 1
dh/dt = alpha_h*(1 - h) - beta_h*h : 1
dn/dt = alpha_n*(1 - n) - beta_n*n : 1
alpha_m = 0.1*(v + 40)/(1 - exp(-(v + 40)/10)) : Hz
beta_m = 4*exp(-(v + 65)/18) : Hz
alpha_h = 0.07*exp(-(v + 65)/20) : Hz
beta_h = 1/(1 + exp(-(v + 35)/10)) : Hz
alpha_n = 0.01*(v + 55)/(1 - exp(-(v + 55)/10)) : Hz
beta_n = 0.125*exp(-(v + 65)/80) : Hz
I : amp
"""
HH_CONSTANTS = dict(gNa=120.0, gK=36.0, gL=0.3, ENa=50.0, EK=-77.0, EL=-54.387, Cm=1.0)


def _timed(f, *args):
    out = jax.block_until_ready(f(*args))  # compile (generate + NVRTC / cc) and first run
    t0 = time.perf_counter()
    out = jax.block_until_ready(f(*args))
    return out, (time.perf_counter() - t0) * 1e3


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hh", type=int, default=None, help="HH neurons (default: 100k GPU, 10k CPU)")
    parser.add_argument("--lif", type=int, default=None, help="LIF neurons (default: 1M GPU, 100k CPU)")
    parser.add_argument("--cuba", type=int, default=4000, help="neurons of the CUBA network (default 4000)")
    args = parser.parse_args(argv)
    device = jax.devices()[0]
    gpu = device.platform == "gpu"
    n_hh = args.hh or (100_000 if gpu else 10_000)
    n_lif = args.lif or (1_000_000 if gpu else 100_000)
    print(f"spikeforge demo on {device.platform.upper()} ({device.device_kind}), jax {jax.__version__}")

    hh = NeuronModel(HH_EQUATIONS, threshold="v > 0", refractory="v > 0", constants=HH_CONSTANTS, method="rk4")
    current = 10 * np.arange(n_hh) / (n_hh - 1)
    state = hh.init_state(n_hh, v=-65.0, m=0.05, h=0.6, n=0.32, I=current)
    run = jax.jit(lambda s: hh.run(s, dt=0.01, steps=5000, record=["v"], record_every=100))
    (state, out), ms = _timed(run, state)
    counts = np.asarray(out.spike_count)
    print(f"\nHodgkin-Huxley, {n_hh:,} neurons, RK4, 5000 steps of 0.01 ms (50 ms) in one launch: {ms:.1f} ms")
    print(
        f"  input current 0..10 uA/cm^2; spikes per neuron: min {counts.min()}, max {counts.max()}, "
        f"firing above I = {current[np.argmax(counts > 0)]:.2f}"
    )
    print(
        f"  recorded v every 1 ms: trace {tuple(out.traces['v'].shape)}, final v range "
        f"[{float(jnp.min(state['v'])):.1f}, {float(jnp.max(state['v'])):.1f}] mV"
    )

    lif = NeuronModel(
        "dv/dt = (v_rest - v + R*I) / tau : volt (unless refractory)\nI : amp",
        threshold="v > v_th",
        reset="v = v_reset",
        refractory=2.0,
        constants=dict(v_rest=-65.0, R=1.0, tau=10.0, v_th=-50.0, v_reset=-65.0),
        method="euler",
    )
    state = lif.init_state(n_lif, v=-65.0, I=jnp.linspace(0, 30, n_lif))
    run = jax.jit(lambda s: lif.run(s, dt=0.1, steps=10_000))
    (state, out), ms = _timed(run, state)
    rates = np.asarray(out.spike_count) / 1.0  # spikes in 1 s = Hz
    print(f"\nLIF, {n_lif:,} neurons, Euler + 2 ms refractoriness, 10000 steps of 0.1 ms (1 s): {ms:.1f} ms")
    print(
        f"  rates: median {np.median(rates):.1f} Hz, max {rates.max():.1f} Hz "
        f"(refractory limit {1000 / 2.0:.0f} Hz); {int(rates.sum()):,} spikes in total"
    )

    cuba_network(args.cuba)


CUBA_EQUATIONS = """
dv/dt = (ge + gi - (v - El)) / taum : volt (unless refractory)
dge/dt = -ge / taue : volt
dgi/dt = -gi / taui : volt
"""


def cuba_network(n: int) -> None:
    """Brian2's ``examples/CUBA.py``: 80% excitatory, 20% inhibitory, p = 0.02, 1 s."""
    n_exc = n * 4 // 5
    P = nw.NeuronGroup(
        n,
        CUBA_EQUATIONS,
        threshold="v > Vt",
        reset="v = Vr",
        refractory=5.0,
        method="exact",
        constants=dict(taum=20.0, taue=5.0, taui=10.0, Vt=-50.0, Vr=-60.0, El=-49.0),
        name="P",
    )
    Ce = nw.Synapses(P[:n_exc], P, on_pre="ge += we", constants=dict(we=60 * 0.27 / 10), name="Ce")
    Ci = nw.Synapses(P[n_exc:], P, on_pre="gi += wi", constants=dict(wi=-20 * 4.5 / 10), name="Ci")
    Ce.connect(p=0.02)
    Ci.connect(p=0.02)
    net = nw.Network(P, Ce, Ci, spikes=nw.SpikeMonitor(P), dt=0.1)
    v0 = -60.0 + 10.0 * np.random.default_rng(0).random(n)
    state = net.init_state(seed=1, P=dict(v=v0))
    run = jax.jit(lambda s: net.run(s, duration=1000.0, progress=False))
    (_, out), ms = _timed(run, state)
    synapses = int(state["Ce"]["targets"].shape[0] + state["Ci"]["targets"].shape[0])
    spikes = int(np.asarray(out.spikes.count).sum())
    print(
        f"\nCUBA network (Brian2's example), {n:,} neurons, {synapses:,} synapses, 10000 steps of 0.1 ms "
        f"(1 s) in one call: {ms:.1f} ms"
    )
    print(f"  {spikes:,} spikes: {spikes / n:.1f} Hz per neuron on average")


if __name__ == "__main__":
    main()
