"""Plastic COBA (issue 11): brainevent's COBA network with Brian2's STDP rule on the E->E
synapses, timed against the same network without plasticity, in one process.

Usage::

    python bench/bench_plasticity.py [--cpu | --gpu] [--quick] [--scales 1,10] [--duration MS]
        [--strategy per_step,block,grid,auto] [--check-ms MS] [--json PATH]

The network: ``bench_networks.py``'s ``coba_be`` (4000*s LIF neurons, 80% excitatory, 80 targets
per neuron drawn with replacement, 1e-3 on the synaptic term, ~50 Hz), with each excitatory
neuron's 80 targets split into 64 among the excitatory neurons (``Cee``) and 16 among the
inhibitory ones (``Cei``). ``Cee`` has a weight per synapse (starting at we = 0.6):

- static: ``w : 1``, ``on_pre='ge_post += w'``;
- plastic: Brian2's ``examples/synapses/STDP.py`` rule, traces ``(event-driven)``, taupre =
  taupost = 20 ms, wmax = 2 we, dApre = 0.01 wmax, dApost = -1.05 dApre, bounds by ``clip``:
  ``on_pre='ge_post += w; Apre += dApre; w = clip(w + Apost, 0, wmax)'``,
  ``on_post='Apost += dApost; w = clip(w + Apre, 0, wmax)'``.

Checked before timing is reported (exit status 1 otherwise), at every scale:

1. the static network's rate against the pure-JAX implementation of ``bench_networks.py`` on the
   same synapses (the two projections' targets as one 80-column table), within 1%;
2. the plastic network over ``--check-ms`` (with a SpikeMonitor): the final weights against an
   independent numpy float64 replay of the STDP rule on the recorded spike trains (Brian2's
   order: each step every ``_pre`` event, then every ``_post`` one; traces decayed exactly over
   the time since the synapse's last update), to 1e-4 wmax; the weights must have moved;
3. the plastic network's rate within 5% of the static one's (the 1e-3 factor keeps the weights'
   effect on the rates small).

Timing: a warm-up call, then at least 3 timed calls (median, min) of the whole run. A plastic
run whose warm-up and timed calls, projected from the check run, would exceed ``--budget-s`` is
not timed; its row gives the projection.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import spikeforge as sf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_networks as bn  # noqa: E402

EE_DEGREE = 64  # of the 80 targets of an excitatory neuron, those among excitatory neurons
TAUPRE = TAUPOST = 20.0
WMAX = 2 * bn.MODELS["coba_be"].we
DAPRE = 0.01 * WMAX
DAPOST = -DAPRE * TAUPRE / TAUPOST * 1.05
STDP = dict(taupre=TAUPRE, taupost=TAUPOST, wmax=WMAX, dApre=DAPRE, dApost=DAPOST)
STDP_MODEL = "w : 1\ndApre/dt = -Apre/taupre : 1 (event-driven)\ndApost/dt = -Apost/taupost : 1 (event-driven)"
STDP_PRE = "ge_post += w\nApre += dApre\nw = clip(w + Apost, 0, wmax)"
STDP_POST = "Apost += dApost\nw = clip(w + Apre, 0, wmax)"

WORKLOADS = {
    "gpu": dict(scales=(1, 10, 100), duration_ms=10_000.0),
    "cpu": dict(scales=(1, 10), duration_ms=1000.0),
    "quick": dict(scales=(1,), duration_ms=100.0),
}


def build_network(case: bn.Case, plastic: bool, strategy: str = "auto", monitor: bool = False):
    m = case.model
    n, ne = case.n, case.n_exc
    P = sf.NeuronGroup(
        n,
        m.equations,
        threshold="v > Vt",
        reset="v = Vr",
        refractory=bn.REFRACTORY,
        constants=m.constants,
        method=m.method,
        name="P",
    )
    if plastic:
        Cee = sf.Synapses(P[:ne], P[:ne], STDP_MODEL, on_pre=STDP_PRE, on_post=STDP_POST, constants=STDP, name="Cee")
    else:
        Cee = sf.Synapses(P[:ne], P[:ne], "w : 1", on_pre="ge_post += w", name="Cee")
    Cei = sf.Synapses(P[:ne], P[ne:], on_pre="ge_post += we", constants=dict(we=m.we), name="Cei")
    Ci = sf.Synapses(P[ne:], P, on_pre="gi_post += wi", constants=dict(wi=m.wi), name="Ci")
    Cee.connect(fixed_out_degree=EE_DEGREE, replace=True, seed=21)
    Cei.connect(fixed_out_degree=bn.OUT_DEGREE - EE_DEGREE, replace=True, seed=22)
    Ci.connect(fixed_out_degree=bn.OUT_DEGREE, replace=True, seed=12)
    extra = {}
    if monitor:
        # room for 4x the expected 50 Hz
        extra["spikes"] = sf.SpikeMonitor(P, capacity=int(4 * n * 50e-3 * case.duration_ms) + 1024)
    return sf.Network(P, Cee, Cei, Ci, dt=bn.DT, strategy=strategy, **extra)


def init(net, case: bn.Case, dtype):
    return net.init_state(seed=0, dtype=dtype, P=dict(v=bn.initial_v(case.model, case.n)), Cee=dict(w=case.model.we))


def excitatory_table(state: dict, case: bn.Case) -> np.ndarray:
    """``(n_exc, 80)`` targets of every excitatory neuron: its Cee targets, then its Cei ones
    (offset by n_exc), i.e. the static network as ``bench_networks``' one E projection."""
    ne = case.n_exc
    ee = np.asarray(state["Cee"]["targets"]).reshape(ne, EE_DEGREE)
    ei = np.asarray(state["Cei"]["targets"]).reshape(ne, bn.OUT_DEGREE - EE_DEGREE) + ne
    return np.hstack([ee, ei])


def stdp_reference(state0: dict, spikes_i: np.ndarray, spikes_step: np.ndarray, n_exc: int, steps: int):
    """Final E->E weights (stored order) from replaying Brian2's STDP rule in float64 on the
    recorded spikes: each step, every synapse of a spiking source (decay its traces to t,
    ``Apre += dApre``, ``w = clip(w + Apost)``), then every synapse onto a spiking target
    (decay, ``Apost += dApost``, ``w = clip(w + Apre)``)."""
    cee = state0["Cee"]
    offsets = np.asarray(cee["row_offsets"], np.int64)
    targets = np.asarray(cee["targets"], np.int64)
    n_syn = targets.size
    w = np.asarray(cee["w"], np.float64).copy()
    apre = np.zeros(n_syn)
    apost = np.zeros(n_syn)
    last = np.zeros(n_syn)
    # by target: synapse ids onto each excitatory neuron
    by_post = np.argsort(targets, kind="stable")
    post_offsets = np.concatenate([[0], np.cumsum(np.bincount(targets, minlength=n_exc))])
    exc = spikes_i < n_exc
    order = np.argsort(spikes_step[exc], kind="stable")
    s_i, s_step = spikes_i[exc][order], spikes_step[exc][order]
    bounds = np.searchsorted(s_step, np.arange(steps + 1))

    def rows(starts, stops):
        lengths = stops - starts
        return np.repeat(starts - np.cumsum(np.concatenate([[0], lengths[:-1]])), lengths) + np.arange(lengths.sum())

    def decay(syn, t):
        dt = t - last[syn]
        apre[syn] *= np.exp(-dt / TAUPRE)
        apost[syn] *= np.exp(-dt / TAUPOST)
        last[syn] = t

    for k in range(steps):
        who = s_i[bounds[k] : bounds[k + 1]]
        if who.size == 0:
            continue
        t = k * bn.DT
        pre = rows(offsets[who], offsets[who + 1])  # distinct synapses: each row once
        decay(pre, t)
        apre[pre] += DAPRE
        w[pre] = np.clip(w[pre] + apost[pre], 0.0, WMAX)
        post = by_post[rows(post_offsets[who], post_offsets[who + 1])]
        decay(post, t)
        apost[post] += DAPOST
        w[post] = np.clip(w[post] + apre[post], 0.0, WMAX)
    return w


def check_plasticity(case: bn.Case, dtype, check_ms: float) -> dict:
    """Runs the plastic network for ``check_ms`` with a SpikeMonitor and compares its final
    weights with :func:`stdp_reference`."""
    short = dataclasses.replace(case, duration_ms=check_ms)
    net = build_network(short, plastic=True, monitor=True)
    state0 = init(net, short, dtype)
    run = jax.jit(lambda s: net.run(s, duration=check_ms, progress=False))
    state, out = jax.block_until_ready(run(state0))
    t0 = time.perf_counter()
    jax.block_until_ready(run(state0))  # timed once: what a full run would take, projected
    check_run_s = time.perf_counter() - t0
    i, t = out.spikes.numpy()
    dropped = int(np.asarray(out.spikes.dropped)) if hasattr(out.spikes, "dropped") else 0
    steps = round(check_ms / bn.DT)
    ref = stdp_reference(
        state0, np.asarray(i, np.int64), np.round(np.asarray(t) / bn.DT).astype(np.int64), case.n_exc, steps
    )
    got = np.asarray(state["Cee"]["w"], np.float64)
    err = float(np.abs(got - ref).max()) if ref.size else 0.0
    moved = float(np.abs(ref - case.model.we).mean())
    ok = dropped == 0 and err <= 1e-4 * WMAX and moved > 0.0 and bool(((got >= 0) & (got <= WMAX)).all())
    return dict(
        check_ms=check_ms,
        check_run_s=check_run_s,
        weight_max_error=err,
        mean_weight_change=moved,
        spikes_dropped=dropped,
        ok=ok,
    )


def run_case(case: bn.Case, dtype, repeats: int, strategies, check_ms: float, budget_s: float) -> list[dict]:
    seconds = case.duration_ms / 1000.0
    static = {s: build_network(case, False, s) for s in strategies}
    plastic = {s: build_network(case, True, s) for s in strategies}
    state_static = init(static[strategies[0]], case, dtype)
    state_plastic = init(plastic[strategies[0]], case, dtype)
    n_syn = sum(int(np.asarray(state_static[p]["targets"]).size) for p in ("Cee", "Cei", "Ci"))
    n_ee = int(np.asarray(state_static["Cee"]["targets"]).size)

    te = excitatory_table(state_static, case)
    ti = bn.targets_table(state_static, "Ci", case.n - case.n_exc)
    run_jax = bn.jax_network(case, te, ti, dtype, max(256, case.n // 10))
    t_jax, (counts_jax, overflow) = bn.time_calls(
        run_jax, jnp.asarray(bn.initial_v(case.model, case.n), dtype), repeats=repeats
    )
    rate_jax = float(np.asarray(counts_jax).mean() / seconds)
    check = check_plasticity(case, dtype, check_ms)
    print(
        f"  x{case.scale:g}: STDP replay over {check_ms:.0f} ms: max |w - reference| {check['weight_max_error']:.2e}, "
        f"mean |dw| {check['mean_weight_change']:.2e} ({'ok' if check['ok'] else 'WRONG'})",
        flush=True,
    )

    projected = check["check_run_s"] * case.duration_ms / check_ms
    rows = []
    for strategy in strategies:
        timed = {}
        for kind, net, state in (
            ("static", static[strategy], state_static),
            ("plastic", plastic[strategy], state_plastic),
        ):
            if kind == "plastic" and projected * (repeats + 1) > budget_s:
                print(
                    f"  x{case.scale:g} {strategy}: plastic run projected at {projected:.1f} s from the "
                    f"{check_ms:.0f} ms check run; over --budget-s {budget_s:.0f} for {repeats + 1} runs, not timed",
                    flush=True,
                )
                timed[kind] = None
                continue
            fn = jax.jit(lambda s, net=net: net.run(s, duration=case.duration_ms, progress=False))
            timing, (final, out) = bn.time_calls(fn, state, repeats=repeats)
            timed[kind] = (timing, float(np.asarray(out.spike_count["P"]).mean() / seconds), net.last_strategy, final)
        t_st, rate_st, path_st, _ = timed["static"]
        static_ok = int(overflow) == 0 and bn.rates_agree(rate_st, rate_jax)
        if timed["plastic"] is None:
            t_pl, rate_pl, path_pl, w = None, float("nan"), "-", np.asarray(state_plastic["Cee"]["w"])
            plastic_ok = check["ok"]
        else:
            t_pl, rate_pl, path_pl, final = timed["plastic"]
            w = np.asarray(final["Cee"]["w"])
            plastic_ok = check["ok"] and bn.rates_agree(rate_pl, rate_st, 0.05)
        plastic_ok = plastic_ok and bool(((w >= 0) & (w <= WMAX)).all())
        rows.append(
            dict(
                scale=case.scale,
                n=case.n,
                synapses=n_syn,
                ee_synapses=n_ee,
                duration_ms=case.duration_ms,
                dtype=jnp.dtype(dtype).name,
                strategy=strategy,
                path_static=path_st,
                path_plastic=path_pl,
                static_s=t_st.median,
                static_times=t_st.times,
                plastic_s=None if t_pl is None else t_pl.median,
                plastic_times=None if t_pl is None else t_pl.times,
                plastic_projected_s=projected,
                jax_s=t_jax.median,
                jax_times=t_jax.times,
                rate_static_hz=rate_st,
                rate_plastic_hz=rate_pl,
                rate_jax_hz=rate_jax,
                final_mean_w=None if t_pl is None else float(w.mean()),
                check=check,
                agree=bool(static_ok and plastic_ok),
            )
        )
        plastic = "not timed" if t_pl is None else f"{t_pl.median:.3f} s"
        print(f"  x{case.scale:g} {strategy}: static {t_st.median:.3f} s, plastic {plastic}", flush=True)
    return rows


def print_table(rows: list[dict]):
    print(
        "\n| scale | neurons | synapses (E->E plastic) | bio ms | strategy (paths) | static s | plastic s | "
        "plastic / static | pure JAX static s | rate static / plastic / JAX (Hz) | mean w end | STDP replay err | ok |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r["plastic_s"] is None:  # over the budget: the projection from the check run
            plastic = f"~{r['plastic_projected_s']:.1f} (projected)"
            ratio = f"~{r['plastic_projected_s'] / r['static_s']:.0f}x" if r["agree"] else "-"
        else:
            plastic = f"{r['plastic_s']:.3f} ({min(r['plastic_times']):.3f})"
            ratio = f"{r['plastic_s'] / r['static_s']:.2f}x" if r["agree"] else "-"
        mean_w = "-" if r["final_mean_w"] is None else f"{r['final_mean_w']:.4f}"
        print(
            f"| x{r['scale']:g} | {r['n']} | {r['synapses']} ({r['ee_synapses']}) | {r['duration_ms']:.0f} | "
            f"{r['strategy']} ({r['path_static']}/{r['path_plastic']}) | "
            f"{r['static_s']:.3f} ({min(r['static_times']):.3f}) | "
            f"{plastic} | "
            f"{ratio} | {r['jax_s']:.3f} | {r['rate_static_hz']:.2f} / {r['rate_plastic_hz']:.2f} / "
            f"{r['rate_jax_hz']:.2f} | {mean_w} | {r['check']['weight_max_error']:.1e} | "
            f"{'yes' if r['agree'] else '**MISMATCH**'} |"
        )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--cpu", action="store_true", help="CPU workload set (x1, x10 for 1 s)")
    group.add_argument("--gpu", action="store_true", help="GPU workload set (x1, x10, x100 for 10 s)")
    parser.add_argument("--quick", action="store_true", help="smoke run: x1 for 100 ms")
    parser.add_argument("--scales", help="comma-separated scales (x 4000 neurons)")
    parser.add_argument("--duration", type=float, help="biological ms, overriding the set's")
    parser.add_argument("--check-ms", type=float, default=100.0, help="ms of the STDP replay check (default 100)")
    parser.add_argument(
        "--budget-s",
        type=float,
        default=120.0,
        help="skip timing a plastic run whose warm-up and timed runs, projected from the check run, "
        "would take longer (default 120)",
    )
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--strategy", default="auto", help="comma-separated: per_step, block, grid, auto")
    parser.add_argument("--json", help="also write every number here")
    args = parser.parse_args(argv)
    strategies = tuple(s.strip() for s in args.strategy.split(",") if s.strip())
    if not strategies or any(s not in sf.Network.STRATEGIES for s in strategies):
        parser.error(f"--strategy: choose among {', '.join(sf.Network.STRATEGIES)}")
    if args.repeats < 3:
        parser.error("--repeats: at least 3 timed runs")
    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    kind = "quick" if args.quick else "gpu" if args.gpu else "cpu" if args.cpu else None
    kind = kind or ("gpu" if jax.default_backend() == "gpu" else "cpu")
    work = WORKLOADS[kind]
    scales = tuple(float(s) for s in args.scales.split(",")) if args.scales else work["scales"]
    duration = args.duration or work["duration_ms"]
    check_ms = min(args.check_ms, duration)
    print(f"spikeforge {sf.__version__}, jax {jax.__version__}, device {jax.devices()[0]}, set {kind!r}")
    rows = []
    for s in scales:
        case = bn.Case(bn.MODELS["coba_be"], round(4000 * s), duration)
        rows += run_case(case, jnp.dtype(args.dtype), args.repeats, strategies, check_ms, args.budget_s)
    print_table(rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0 if all(r["agree"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
