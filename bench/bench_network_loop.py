"""What XLA's loop costs around a network stepped from JAX (issue 10 item 2: the per-step path for
users who put JAX code between steps), and which settings reduce it.

Usage::

    python bench/bench_network_loop.py [--steps 2000] [--scale 1] [--repeats 3] [--per-call 1,10]
        [--strategies auto,per_step] [--unrolls 1,8] [--settings default,...] [--json PATH]

The network is brainevent's COBA (``bench_networks.py``'s ``coba_be``) at ``--scale`` x 4000
neurons. Rows, each timed as one jitted call of ``--steps`` steps (median of ``--repeats`` after a
warm-up), in µs per step:

- ``one call``: ``net.run`` of every step in one call (the path ``auto`` picks, and the per-step
  kernels), the floor the loop rows are measured against;
- ``scan, k steps a call``: a ``lax.scan`` whose body runs ``k`` steps (``net.run(steps=k)``) and
  then a JAX op on the state (a drive added to ``v``: JAX code between steps), for each ``k`` of
  ``--per-call`` and each ``unroll`` of ``--unrolls``;

for each strategy of ``--strategies`` (on a GPU; ``auto`` alone on a CPU), so that the steps a call
at which the per-step kernels and the persistent ones cross over show;

each under several ``XLA_FLAGS`` (one subprocess per setting, since XLA reads its flags once):
the defaults; command buffers for the loop too (``--xla_gpu_enable_command_buffer`` with
``WHILE`` and ``CONDITIONAL``: the loop as a CUDA graph with conditional nodes, no host read of
the condition); and graphs of any size (``--xla_gpu_graph_min_graph_size=1``). A setting that the
installed XLA rejects is reported as such. Every row's spike count is checked against the
one-call run of the same setting (the same steps must give the same spikes: the JAX op adds
zero); exit status 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

FLAG_SETTINGS = {
    "default": "",
    "loop as graph": "--xla_gpu_enable_command_buffer=FUSION,CUBLAS,CUBLASLT,CUSTOM_CALL,CUDNN,WHILE,CONDITIONAL",
    "graphs of any size": "--xla_gpu_graph_min_graph_size=1",
}


def measure(steps: int, scale: float, repeats: int, per_call, strategies, unrolls) -> list[dict]:
    """Runs in the subprocess: every row of one flag setting."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import jax
    import jax.numpy as jnp
    import numpy as np
    from bench_networks import MODELS, Case, build_network, initial_v
    from jax import lax

    case = Case(MODELS["coba_be"], round(4000 * scale), steps * 0.1)
    rows = []
    strategies = strategies if jax.default_backend() == "gpu" else ("auto",)
    nets = {s: build_network(case, s) for s in strategies}
    state = nets["auto"].init_state(seed=0, P=dict(v=initial_v(case.model, case.n)))

    def timed(fn):
        out = jax.block_until_ready(fn(state))
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            out = jax.block_until_ready(fn(state))
            times.append(time.perf_counter() - t)
        return statistics.median(times) / steps * 1e6, int(np.asarray(out).sum())

    for strategy, net in nets.items():
        one = jax.jit(lambda s, net=net: net.run(s, steps=steps, progress=False)[1].spike_count["P"])
        us, spikes = timed(one)
        rows.append(dict(row=f"one call ({strategy})", path=net.last_strategy, us_per_step=us, spikes=spikes))
        reference = spikes
        for k in per_call:
            for unroll in unrolls:

                def looped(s, net=net, k=k, unroll=unroll):
                    def body(carry, _):
                        s, count = carry
                        s, out = net.run(s, steps=k, progress=False)
                        # JAX code between steps: a drive of zero added to v (XLA cannot fold it)
                        p = dict(s["P"], v=s["P"]["v"] + s["P"]["v"] * jnp.zeros((), s["P"]["v"].dtype))
                        return (dict(s, P=p), count + out.spike_count["P"]), None

                    zero = jnp.zeros(case.n, jnp.int32)
                    (s, count), _ = lax.scan(body, (s, zero), None, length=steps // k, unroll=unroll)
                    return count

                us, spikes = timed(jax.jit(looped))
                rows.append(
                    dict(
                        row=f"scan, {k} step{'s' if k > 1 else ''} a call, unroll {unroll} ({strategy})",
                        path=net.last_strategy,
                        us_per_step=us,
                        spikes=spikes,
                        agree=spikes == reference,
                    )
                )
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--settings", default=",".join(FLAG_SETTINGS), help="comma-separated, among the names above")
    p.add_argument("--per-call", default="1,10", help="comma-separated steps a call of the scan rows")
    p.add_argument("--strategies", default="auto,per_step", help="comma-separated strategies (GPU)")
    p.add_argument("--unrolls", default="1,8", help="comma-separated unroll factors of the scan rows")
    p.add_argument("--json", help="also write every number here")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    per_call = [int(k) for k in args.per_call.split(",")]
    unrolls = [int(u) for u in args.unrolls.split(",")]
    strategies = args.strategies.split(",")
    if any(k < 1 or args.steps % k for k in per_call):
        p.error(f"--per-call: each a divisor of --steps ({args.steps})")
    if any(u < 1 for u in unrolls):
        p.error("--unrolls: each at least 1")
    if args.child:
        print(json.dumps(measure(args.steps, args.scale, args.repeats, per_call, strategies, unrolls)))
        return 0
    results = {}
    for name in args.settings.split(","):
        if name not in FLAG_SETTINGS:
            p.error(f"--settings: {name!r} is not one of {', '.join(FLAG_SETTINGS)}")
        env = dict(os.environ, XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") + " " + FLAG_SETTINGS[name]).strip())
        cmd = [sys.executable, __file__, "--child", f"--steps={args.steps}", f"--scale={args.scale}"]
        cmd += [f"--repeats={args.repeats}", f"--per-call={args.per_call}", f"--strategies={args.strategies}"]
        cmd.append(f"--unrolls={args.unrolls}")
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode:
            tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
            print(f"  {name}: failed ({tail[:200]})", flush=True)
            results[name] = None
            continue
        results[name] = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"  {name}: done", flush=True)
    names = [n for n, r in results.items() if r]
    if not names:
        return 1
    head = f"COBA x{args.scale:g}, {args.steps} steps: µs per step, median of {args.repeats}"
    print(f"\n{head} (spikes checked against one call)")
    print("| loop | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    ok = True
    for i, row in enumerate(results[names[0]]):
        cells = []
        for n in names:
            r = results[n][i]
            mark = "" if r.get("agree", True) else " (spikes differ)"
            ok &= r.get("agree", True)
            cells.append(f"{r['us_per_step']:.2f}{mark}")
        print(f"| {row['row']} [{row['path']}] | " + " | ".join(cells) + " |")
    failed = [n for n, r in results.items() if r is None]
    if failed:
        print(f"\nnot measured (the installed XLA refused the setting): {', '.join(failed)}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
