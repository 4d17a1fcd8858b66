"""Benchmarks gradients through neuron runs: spikeforge's forward + generated adjoint kernel
against its forward alone and against ``jax.grad`` of a pure-JAX ``lax.scan`` of the same model
with the same surrogate, and the peak device memory of the gradient call.

Usage::

    python bench/bench_gradients.py [--neurons 10000,1000000] [--steps 1000] [--dtype float32]
                                    [--checkpoint-every K] [--quick]

The model is a LIF with a refractory period and a per-step input current, integrated exactly,
with a fast-sigmoid surrogate; the loss reads the final state, a trace and the spike counts. Both
gradients are computed in the same run and compared (relative difference, printed; the exit
status is 1 when it is above the dtype's tolerance), so a wrong kernel is flagged instead of
reported as fast. Times are medians of ``--repeats`` calls of the jitted functions, after a
warm-up call that compiles. Targets (issue 12): forward + backward <= 3x forward alone, >= 10x
faster than ``jax.grad`` of ``lax.scan``.

Each population size runs in its own process, the spikeforge gradient first, so that the device's
``peak_bytes_in_use`` (``jax.Device.memory_stats()``, where the backend has it) is that call's:
printed as the peak above the inputs, beside the bound it should stay within, in bytes: the
checkpoints and the backward's scratch, ``N (ceil(steps/k) (s b + 1) + 2 k (s b + 1))`` (``s``
stored variables of ``b`` bytes, the refractory period's steps left, a uint8 checkpoint, and a bool per step;
the scratch holds two segments; no scratch when the adjoint kernel keeps a segment in registers,
``k`` up to the model's ``register_segment``), plus what the call must hold anyway: the gradient of the
``(steps, N)`` input, the trace and its cotangent.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
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


def spikeforge_loss(m, state0, w, steps: int, checkpoint_every: int | None):
    """The benchmark's loss of ``(v0, currents)`` through spikeforge's run of model ``m``: the
    final state, the trace (every ``RECORD_EVERY`` steps) and the spike counts, weighted by ``w``."""

    def loss(v0, currents):
        new, out = m.run(
            dict(state0, v=v0),
            dt=DT,
            steps=steps,
            inputs={"I": currents},
            record=["v"],
            record_every=RECORD_EVERY,
            checkpoint_every=checkpoint_every,
        )
        return (w * new["v"]).sum() + 1e-3 * (out.traces["v"] ** 2).sum() + (w * out.spike_count).sum()

    return loss


def timed(fn, *args, repeats):
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


RECORD_EVERY = 10


def memory_in_use(device) -> tuple[int, int] | None:
    """``(bytes_in_use, peak_bytes_in_use)`` of ``device``, or None where the backend has none."""
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if not stats or "peak_bytes_in_use" not in stats:
        return None
    return int(stats["bytes_in_use"]), int(stats["peak_bytes_in_use"])


def memory_bound(n: int, steps: int, k: int, itemsize: int, registers: bool) -> int:
    """The bytes the gradient call may hold above its inputs (see the module documentation)."""
    stored = 1
    scratch = 0 if registers else n * 2 * k * (stored * itemsize + 1)
    scratch += n * -(-steps // k) * (stored * itemsize + 1)
    n_rec = -(-steps // RECORD_EVERY)
    held = n * steps * itemsize + 2 * n * n_rec * itemsize
    return scratch + held


def measure(n: int, steps: int, dtype_name: str, repeats: int, checkpoint_every: int | None) -> dict:
    """One population size: times, the gradients' difference and the gradient call's memory."""
    if dtype_name == "float64":
        jax.config.update("jax_enable_x64", True)
    dtype = jnp.dtype(dtype_name)
    rng = np.random.default_rng(0)
    v0 = jnp.asarray(rng.uniform(0.0, 0.9, n), dtype)
    currents = jnp.asarray(rng.uniform(0.8, 1.6, (steps, n)), dtype)
    w = jnp.asarray(rng.normal(size=n), dtype)
    m = model()
    state0 = m.init_state(n, dtype=dtype)

    sf_loss = spikeforge_loss(m, state0, w, steps, checkpoint_every)

    def scan_loss(v0, currents):
        v, trace, count = scan_run(v0, currents)
        return (w * v).sum() + 1e-3 * (trace[::RECORD_EVERY] ** 2).sum() + (w * count).sum()

    device = jax.devices()[0]
    forward = jax.jit(lambda v0, c: m.run(dict(state0, v=v0), dt=DT, steps=steps, inputs={"I": c})[0]["v"])
    sf_grad = jax.jit(jax.grad(sf_loss, argnums=(0, 1)))
    scan_grad = jax.jit(jax.grad(scan_loss, argnums=(0, 1)))
    jax.block_until_ready((v0, currents, w, state0))
    before = memory_in_use(device)
    g_sf = jax.block_until_ready(sf_grad(v0, currents))
    after = memory_in_use(device)
    peak = None if before is None or after is None else after[1] - before[0]
    t_sf = timed(sf_grad, v0, currents, repeats=repeats)
    t_forward = timed(forward, v0, currents, repeats=repeats)
    t_scan = timed(scan_grad, v0, currents, repeats=repeats)
    g_scan = scan_grad(v0, currents)
    # In float32 the two implementations may round a neuron right at threshold differently: a
    # norm-wise difference, not the largest element's.
    worst = max(float(jnp.linalg.norm(a - b) / jnp.maximum(jnp.linalg.norm(b), 1e-30)) for a, b in zip(g_sf, g_scan))
    variant = m._variant(dt=DT, dtype=dtype_name, per_neuron=(), per_step=("I",), record=("v",))
    limit = sf.gradients._adjoint_info(m, variant["spec"])["register_segment"]
    k = sf.gradients.segment_length(steps, checkpoint_every, n, limit)
    return dict(
        neurons=n,
        steps=steps,
        k=k,
        forward=t_forward,
        gradient=t_sf,
        scan=t_scan,
        difference=worst,
        peak=peak,
        registers=k <= limit,
        bound=memory_bound(n, steps, k, dtype.itemsize, k <= limit),
        device=str(device),
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--neurons", default="10000,1000000", help="population sizes, comma-separated")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--checkpoint-every", type=int, default=None)
    p.add_argument("--quick", action="store_true", help="1000 neurons x 200 steps, 2 repeats")
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.quick:
        args.neurons, args.steps, args.repeats = "1000", 200, 2
    sizes = [int(x) for x in str(args.neurons).split(",")]
    if args.one:
        row = measure(sizes[0], args.steps, args.dtype, args.repeats, args.checkpoint_every)
        print(json.dumps(row))
        return 0
    rows = []
    for n in sizes:
        command = [sys.executable, __file__, "--one", "--neurons", str(n), "--steps", str(args.steps)]
        command += ["--dtype", args.dtype, "--repeats", str(args.repeats)]
        if args.checkpoint_every is not None:
            command += ["--checkpoint-every", str(args.checkpoint_every)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            print(done.stdout + done.stderr, file=sys.stderr)
            return done.returncode
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    tolerance = 1e-8 if args.dtype == "float64" else 1e-2
    print(f"gradients, LIF exact + fast_sigmoid({SLOPE}), {args.steps} steps, {args.dtype}, {rows[0]['device']}")
    head = (
        f"{'neurons':>9}{'k':>8}{'forward s':>11}{'fwd+bwd s':>11}{'ratio':>7}{'lax.scan s':>12}{'speed-up':>10}"
        f"{'peak MB':>10}{'bound MB':>10}{'rel. diff':>11}"
    )
    print(head)
    ok = True
    for r in rows:
        peak = "n/a" if r["peak"] is None else f"{r['peak'] / 1e6:.1f}"
        ratio, speed_up = r["gradient"] / r["forward"], r["scan"] / r["gradient"]
        segment = f"{r['k']} {'reg' if r['registers'] else 'scr'}"
        print(
            f"{r['neurons']:>9}{segment:>8}{r['forward']:11.5f}{r['gradient']:11.5f}{ratio:7.2f}"
            f"{r['scan']:12.5f}{speed_up:10.1f}{peak:>10}{r['bound'] / 1e6:10.1f}{r['difference']:11.2e}"
        )
        ok = ok and r["difference"] <= tolerance and math.isfinite(r["difference"])
    print(
        "ratio: forward + backward over forward alone (target <= 3); speed-up: jax.grad of lax.scan over "
        "spikeforge's gradient (target >= 10); peak: the gradient call's peak device memory above its inputs, "
        f"bound: N (ceil(steps/k) (b + 1) + 2 k (b + 1), without the 2 k term when the segment is in registers, "
        "'reg', not in the scratch, 'scr') + the input's gradient, trace and its cotangent; "
        f"rel. diff tolerance {tolerance:.0e}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
