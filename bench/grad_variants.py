"""Times the gradient of ``bench_gradients.py``'s loss at one population size under variants of the
neuron adjoint kernel (``SPIKEFORGE_ADJOINT_TUNING``, ``SPIKEFORGE_BLOCK``, ``--checkpoint-every``),
one process per variant, so that each variant's kernels are compiled for it; no ``lax.scan``
(``bench_gradients.py`` compares against it and checks the numbers).

Usage::

    python bench/grad_variants.py [--neurons 1000000] [--steps 1000] [--repeats 10]
        [--variants "none:8,prefetch:8,streaming:8,prefetch,streaming:8,none:16"] [--blocks 0,128]
    python bench/grad_variants.py --profile   # one forward, one gradient: for ncu

A variant is ``tuning:k`` (the tuning as ``SPIKEFORGE_ADJOINT_TUNING`` reads it, ``k`` the steps
between checkpoints); each runs with every block size of ``--blocks`` (``SPIKEFORGE_BLOCK``; 0:
the library's choice). Per variant: the forward alone (no trace, no checkpoints), the forward
under ``jax.vjp`` (checkpoints and the trace written; the loss's value only), the gradient (forward + backward),
their difference (the backward and the trace's cotangent), and a digest of the gradients: the
same for every tuning of one ``k`` (the tuning moves loads and stores, not arithmetic), and
close across ``k``. Inputs are drawn on the device (``jax.random``) so that a 1M x 1000 input
does not cross from the host.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def measure(n: int, steps: int, repeats: int, k: int, profile: bool) -> dict:
    import jax
    import jax.numpy as jnp

    sys.path.insert(0, os.path.dirname(__file__))
    from bench_gradients import DT, model, spikeforge_loss

    key = jax.random.PRNGKey(0)
    k1, k2, k3 = jax.random.split(key, 3)
    v0 = jax.random.uniform(k1, (n,), jnp.float32, 0.0, 0.9)
    currents = jax.random.uniform(k2, (steps, n), jnp.float32, 0.8, 1.6)
    w = jax.random.normal(k3, (n,), jnp.float32)
    m = model()
    state0 = m.init_state(n, dtype=jnp.float32)

    loss = spikeforge_loss(m, state0, w, steps, k)

    forward = jax.jit(lambda v0, c: m.run(dict(state0, v=v0), dt=DT, steps=steps, inputs={"I": c})[0]["v"])
    # The forward under differentiation (the run's kernel writes its checkpoints and trace, the
    # loss reads them): its value only, for returning the residuals would copy the input.
    primal = jax.jit(lambda v0, c: jax.vjp(loss, v0, c)[0])
    grad = jax.jit(jax.grad(loss, argnums=(0, 1)))

    def timed(fn):
        jax.block_until_ready(fn(v0, currents))
        if profile:
            return 0.0
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            jax.block_until_ready(fn(v0, currents))
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    t_grad = timed(grad)
    t_forward = timed(forward)
    t_primal = timed(primal)
    g_v0, g_c = grad(v0, currents)
    digest = [float(jnp.linalg.norm(g_v0)), float(jnp.linalg.norm(g_c)), float(g_c.sum())]
    return dict(forward=t_forward, primal=t_primal, gradient=t_grad, digest=digest)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--neurons", type=int, default=1_000_000)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--variants", default="none:8,prefetch:8,streaming:8,prefetch,streaming:8,none:16,prefetch:16")
    p.add_argument("--blocks", default="0")
    p.add_argument("--profile", action="store_true", help="one call of each (for ncu), default tuning, k = 8")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.profile or args.one:
        k = 8 if args.one is None else int(args.one)
        row = measure(args.neurons, args.steps, args.repeats, k, args.profile)
        print(json.dumps(row))
        return 0
    variants = _split_variants(args.variants)
    print(f"gradient variants, {args.neurons} neurons x {args.steps} steps, float32, median of {args.repeats}")
    print(
        f"{'tuning':>34}{'k':>4}{'block':>6}{'forward ms':>11}{'fwd(vjp) ms':>12}{'fwd+bwd ms':>11}"
        f"{'bwd ms':>8}{'ratio':>7}  digest"
    )
    status = 0
    for tuning, k in variants:
        for block in [int(b) for b in args.blocks.split(",")]:
            env = dict(os.environ, SPIKEFORGE_ADJOINT_TUNING=tuning)
            if block:
                env["SPIKEFORGE_BLOCK"] = str(block)
            else:
                env.pop("SPIKEFORGE_BLOCK", None)
            command = [sys.executable, __file__, "--one", str(k), "--neurons", str(args.neurons)]
            command += ["--steps", str(args.steps), "--repeats", str(args.repeats)]
            done = subprocess.run(command, capture_output=True, text=True, env=env)
            if done.returncode != 0:
                print(f"{tuning:>34}{k:>4}{block:>6}  failed:\n{done.stdout}{done.stderr}", file=sys.stderr)
                status = 1
                continue
            r = json.loads(done.stdout.strip().splitlines()[-1])
            backward = r["gradient"] - r["primal"]
            digest = " ".join(f"{x:.6e}" for x in r["digest"])
            print(
                f"{tuning:>34}{k:>4}{block or 'lib':>6}{1e3 * r['forward']:11.3f}{1e3 * r['primal']:12.3f}"
                f"{1e3 * r['gradient']:11.3f}{1e3 * backward:8.3f}{r['gradient'] / r['forward']:7.2f}  {digest}",
                flush=True,
            )
    return status


def _split_variants(text: str) -> list[tuple[str, int]]:
    """``"prefetch,streaming:8,none:16"`` -> ``[("prefetch,streaming", 8), ("none", 16)]``: a
    variant ends at its ``:k``."""
    out, rest = [], text
    while rest:
        tuning, _, tail = rest.partition(":")
        k_text, _, rest = tail.partition(",")
        out.append((tuning, int(k_text)))
    return out


if __name__ == "__main__":
    sys.exit(main())
