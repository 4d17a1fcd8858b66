"""COBA x1 (bench/bench_network_gradients.py's network: 4000 neurons, float32): where a gradient
call's time goes (helper netgrad3, issue 12), in one process, medians of ``--repeats``:

- the forward as one call of 1000 steps and as chained calls (one jitted function) of 100, 50
  and 25 steps: the fixed cost of a call (the forward under ``jax.grad`` is one call a segment);
- fwd+bwd at segments of 50 (the default, record mode) and 25 (twice the segments): the fixed
  cost of a segment, forward and backward;
- ``--profile``: one more gradient call between ``cuProfilerStart`` and ``cuProfilerStop``
  (for ``ncu --profile-from-start off``: every kernel of one call, e.g. with
  ``--metrics gpu__time_duration.sum``).
"""

import argparse
import ctypes
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "bench"))
from bench_gradients import timed  # noqa: E402
from bench_network_gradients import build, gradient_functions, initial_state  # noqa: E402


def chained(net, state, length: int, calls: int):
    """``calls`` runs of ``length`` steps in one jitted function."""

    def run(v0):
        s = dict(state, P=dict(state["P"], v=v0))
        count = 0
        for _ in range(calls):
            s, out = net.run(s, steps=length)
            count = count + out.spike_count["P"]
        return s["P"]["v"], count

    return jax.jit(run)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--profile-only", action="store_true", help="only the profiled call")
    p.add_argument("--neurons", type=int, default=4000)
    p.add_argument("--steps", type=int, default=1000)
    a = p.parse_args()
    n, steps = a.neurons, a.steps
    if a.profile_only:
        _, args, _, sf_grad, *_ = gradient_functions(n, steps, jnp.float32, 50)
        profile(sf_grad, args)
        return
    net, _ = build(n)
    state = initial_state(net, n, np.float32)
    v0 = state["P"]["v"]
    base = None
    for length in (steps, 100, 50, 25):
        calls = steps // length
        t = timed(chained(net, state, length, calls), v0, repeats=a.repeats)
        base = t if base is None else base
        extra = (t - base) / max(calls - 1, 1) * 1e6
        print(f"forward, {calls} calls of {length} steps: {t * 1e3:.3f} ms ({extra:.1f} us a call more than one call)")
    grads = {}
    for k in (50, 25):
        _, args, _, sf_grad, *_ = gradient_functions(n, steps, jnp.float32, k)
        grads[k] = (sf_grad, args)
        t = timed(sf_grad, *args, repeats=a.repeats)
        print(f"fwd+bwd, segments of {k}: {t * 1e3:.3f} ms")
    if a.profile:
        profile(*grads[50])


def profile(sf_grad, args):
    jax.block_until_ready(sf_grad(*args))
    cuda = ctypes.CDLL("libcuda.so.1")
    cuda.cuProfilerStart()
    jax.block_until_ready(sf_grad(*args))
    cuda.cuProfilerStop()
    print("profiled one gradient call (segments of 50)")


if __name__ == "__main__":
    main()
