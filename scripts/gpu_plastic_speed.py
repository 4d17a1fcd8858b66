#!/usr/bin/env python
"""The speed of a plastic COBA network (Brian2's STDP on E->E) against the same network without
plasticity (issue 11), on the default JAX device: 4000 neurons, p = 0.02, float32, 1 s of
biological time per call, the best of three calls after compilation, in both modes.

    python scripts/gpu_plastic_speed.py [--seconds 1.0] [--n 4000]

Prints one line per (network, mode): the wall time per simulated second and the spike count
(the plastic network's rates differ as its weights learn)."""

import argparse
import time

import jax
import numpy as np
import spikeforge as sf

EQS = """
dv/dt = (ge*(Ee-v) + gi*(Ei-v) - (v-El))/taum : volt (unless refractory)
dge/dt = -ge/taue : 1
dgi/dt = -gi/taui : 1
"""
CONSTANTS = dict(taum=20.0, taue=5.0, taui=10.0, Vt=-50.0, Vr=-60.0, El=-60.0, Ee=0.0, Ei=-80.0)
STDP_MODEL = """w : 1
dApre/dt = -Apre / taupre : 1 (event-driven)
dApost/dt = -Apost / taupost : 1 (event-driven)"""


def network(n, plastic, deterministic):
    """Brette et al.'s COBA (tutorial 03), E->E plastic or not."""
    n_e = n * 4 // 5
    P = sf.NeuronGroup(n, EQS, threshold="v > Vt", reset="v = Vr", refractory=5.0, constants=CONSTANTS, name="P")
    Pe, Pi = P[:n_e], P[n_e:]
    if plastic:
        gmax = 1.2
        Ce = sf.Synapses(
            Pe, P, STDP_MODEL,
            on_pre="ge += w; Apre += dApre; w = clip(w + Apost, 0, gmax)",
            on_post="Apost += dApost; w = clip(w + Apre, 0, gmax)",
            constants=dict(taupre=20.0, taupost=20.0, gmax=gmax, dApre=0.01 * gmax, dApost=-0.0105 * gmax),
            name="Ce",
        )  # fmt: skip
    else:
        Ce = sf.Synapses(Pe, P, "w : 1", on_pre="ge += w", name="Ce")
    Ci = sf.Synapses(Pi, P, on_pre="gi += 6.7", name="Ci")
    Ce.connect(p=0.02)
    Ci.connect(p=0.02)
    net = sf.Network(P, Ce, Ci, dt=0.1, deterministic=deterministic)
    return net, n_e


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--n", type=int, default=4000)
    args = ap.parse_args()
    print("device:", jax.devices()[0])
    for deterministic in (False, True):
        for plastic in (False, True):
            net, n_e = network(args.n, plastic, deterministic)
            rng = np.random.default_rng(0)
            start = dict(
                v=-60.0 + 10.0 * rng.random(args.n),
                ge=np.clip(rng.normal(4.0, 1.5, args.n), 0, None) / 10.0,
                gi=np.clip(rng.normal(20.0, 12.0, args.n), 0, None) / 10.0,
            )
            state = net.init_state(seed=1, P=start, Ce=dict(w=0.6))
            run = jax.jit(lambda s, net=net: net.run(s, duration=args.seconds * 1000.0, progress=False))
            out_state, out = run(state)
            jax.block_until_ready(out_state)
            best = np.inf
            for _ in range(3):
                t0 = time.perf_counter()
                out_state, out = run(state)
                jax.block_until_ready(out_state)
                best = min(best, time.perf_counter() - t0)
            spikes = int(np.asarray(out.spike_count["P"]).sum())
            label = ("plastic E->E" if plastic else "static") + (", deterministic" if deterministic else "")
            per_s = best / args.seconds * 1e3
            print(f"{label:>30}: {per_s:8.1f} ms per simulated s, {spikes} spikes, path {net.last_strategy}")


if __name__ == "__main__":
    main()
