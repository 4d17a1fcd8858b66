"""Benchmarks gradients through neuron runs: spikeforge's forward + generated adjoint kernel
against its forward alone and against ``jax.grad`` of a pure-JAX ``lax.scan`` of the same model
with the same surrogate.

Usage::

    python bench/bench_gradients.py [--neurons 10000] [--steps 1000] [--dtype float32] [--quick]

The model is a LIF with a refractory period and a per-step input current, integrated exactly,
with a fast-sigmoid surrogate; the loss reads the final state, a trace and the spike counts. Both
gradients are computed in the same run and compared (relative difference, printed; the exit
status is 1 when it is above the dtype's tolerance), so a wrong kernel is flagged instead of
reported as fast. Times are medians of ``--repeats`` calls of the jitted functions, after a
warm-up call that compiles. Targets (issue 12): forward + backward <= 3x forward alone, >= 10x
faster than ``jax.grad`` of ``lax.scan``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import spikeforge as sf
from jax import lax

DT, TAU, V_TH, V_R, REFRACTORY_STEPS, SLOPE = 0.1, 10.0, 1.0, 0.0, 20, 25.0


def model():
    return sf.NeuronModel(
        "dv/dt = (I - v) / tau : 1 (unless refractory)\nI : 1",
        threshold="v > v_th",
        reset="v = v_r",
        refractory=REFRACTORY_STEPS * DT,
        constants=dict(tau=TAU, v_th=V_TH, v_r=V_R),
        method="exact",
        surrogate=sf.surrogate.fast_sigmoid(SLOPE),
    )


def scan_run(v0, currents):
    """The same LIF as a lax.scan, with a custom_jvp Heaviside (the surrogate)."""

    @jax.custom_jvp
    def heaviside(z):
        return (z > 0).astype(z.dtype)

    @heaviside.defjvp
    def _(primals, tangents):
        (z,), (dz,) = primals, tangents
        return heaviside(z), dz / (1 + SLOPE * jnp.abs(z)) ** 2

    decay = np.exp(-DT / TAU)

    def step(carry, current):
        v, free_from, s = carry
        nr = s >= free_from
        u = jnp.where(nr, current + (v - current) * decay.astype(v.dtype), v)
        spike = heaviside(u - V_TH) * nr
        v_new = spike * V_R + (1 - spike) * u
        free_from = jnp.where(lax.stop_gradient(spike) > 0, s + REFRACTORY_STEPS, free_from)
        return (v_new, free_from, s + 1), (v, spike)

    start = (v0, jnp.full(v0.shape, -(2**30), jnp.int32), jnp.int32(0))
    (v, _, _), (trace, spikes) = lax.scan(step, start, currents)
    return v, trace, spikes.sum(axis=0)


def timed(fn, *args, repeats):
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--neurons", type=int, default=10_000)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="1000 neurons x 200 steps, 2 repeats")
    args = p.parse_args()
    if args.quick:
        args.neurons, args.steps, args.repeats = 1000, 200, 2
    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    dtype = jnp.dtype(args.dtype)
    n, steps = args.neurons, args.steps
    rng = np.random.default_rng(0)
    v0 = jnp.asarray(rng.uniform(0.0, 0.9, n), dtype)
    currents = jnp.asarray(rng.uniform(0.8, 1.6, (steps, n)), dtype)
    w = jnp.asarray(rng.normal(size=n), dtype)
    m = model()
    state0 = m.init_state(n, dtype=dtype)

    def sf_loss(v0, currents):
        new, out = m.run(dict(state0, v=v0), dt=DT, steps=steps, inputs={"I": currents}, record=["v"], record_every=10)
        return (w * new["v"]).sum() + 1e-3 * (out.traces["v"] ** 2).sum() + (w * out.spike_count).sum()

    def scan_loss(v0, currents):
        v, trace, count = scan_run(v0, currents)
        return (w * v).sum() + 1e-3 * (trace[::10] ** 2).sum() + (w * count).sum()

    forward = jax.jit(lambda v0, c: m.run(dict(state0, v=v0), dt=DT, steps=steps, inputs={"I": c})[0]["v"])
    sf_grad = jax.jit(jax.grad(sf_loss, argnums=(0, 1)))
    scan_grad = jax.jit(jax.grad(scan_loss, argnums=(0, 1)))
    t_forward = timed(forward, v0, currents, repeats=args.repeats)
    t_sf = timed(sf_grad, v0, currents, repeats=args.repeats)
    t_scan = timed(scan_grad, v0, currents, repeats=args.repeats)
    g_sf, g_scan = sf_grad(v0, currents), scan_grad(v0, currents)
    # In float32 the two implementations may round a neuron right at threshold differently: a
    # norm-wise difference, not the largest element's.
    worst = max(float(jnp.linalg.norm(a - b) / jnp.maximum(jnp.linalg.norm(b), 1e-30)) for a, b in zip(g_sf, g_scan))
    tolerance = 1e-8 if args.dtype == "float64" else 1e-2
    device = jax.devices()[0]
    print(f"gradients, LIF exact + fast_sigmoid({SLOPE}), {n} neurons x {steps} steps, {args.dtype}, {device}")
    print(f"{'':34}{'seconds':>10}{'x forward':>12}")
    print(f"{'spikeforge forward':34}{t_forward:10.4f}{1.0:12.2f}")
    print(f"{'spikeforge forward + backward':34}{t_sf:10.4f}{t_sf / t_forward:12.2f}")
    print(f"{'jax.grad of lax.scan':34}{t_scan:10.4f}{t_scan / t_forward:12.2f}")
    print(f"speed-up of spikeforge over lax.scan (gradients): {t_scan / t_sf:.1f}x")
    print(f"relative difference of the gradients (norm): {worst:.2e} (tolerance {tolerance:.0e})")
    return 0 if worst <= tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
