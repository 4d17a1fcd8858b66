# %% [markdown]
# # Tutorial 1: LIF and Hodgkin–Huxley neurons from equations
#
# **spikeforge** runs neuron models written the way you write them in Brian2 (equations,
# `threshold`, `reset`, `refractory`, `method`) as generated GPU / CPU kernels that you call from
# JAX:
#
# ```
# equations ──parse, check──▶ one IR ──integrate──▶ generated kernel ──▶ XLA FFI call ──▶ jax.jit / jax.vmap
#                                                   CUDA C (NVRTC) on a GPU,
#                                                   C (system compiler) on a CPU
# ```
#
# The integration scheme is Brian2's `method=`: `"euler"`, `"rk2"`, `"heun"`, `"rk4"`,
# `"exponential_euler"`, `"exact"`, or left out to be chosen as Brian2 does.
#
# The whole run (all neurons, all time steps, threshold, reset, refractoriness, recording) is
# **one kernel launch**; the kernel is generated and compiled the first time a model variant is
# used, then cached.
#
# **Units.** Kernels compute in one consistent system of units, ms, mV, nA, µS, nF and MΩ
# (MΩ · nA = mV, µS · mV = nA), and numbers (constants, initial values, `dt`, `refractory`) are
# taken as already in it. The unit after `:` in an equation must be a unit name (a typo is an
# error) but nothing is converted; a unit name inside an expression is that unit's value in this
# system (`-50*mV` is -50, `5*ms` is 5). The LIF below is in mV, ms, nA and MΩ; Hodgkin–Huxley
# keeps its classic per-area units, µA/cm², mS/cm² and µF/cm², which are consistent among
# themselves (mS/cm² · mV = µA/cm²). Time is in ms, so a rate is `spikes / (T / 1000)` in Hz.
#
# **Brian2 → spikeforge.**
#
# | Brian2 | spikeforge |
# |---|---|
# | `NeuronGroup(N, eqs, threshold=, reset=, refractory=, method=)` | `sf.NeuronModel(eqs, ...)`, same keywords |
# | the group's size `N` | `model.init_state(N, v=..., I=...)` |
# | constants from the namespace | `constants=dict(...)` |
# | `run(duration)` | `model.run(state, dt=, steps=)`: a pure function that returns the new state |
# | `StateMonitor(G, "v", dt=...)` | `record=["v"], record_every=k` |
# | `SpikeMonitor(G).count` | `spike_count` |

# %%
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import spikeforge as sf

print("spikeforge", sf.__version__, "| jax", jax.__version__)
print("running on:", jax.devices()[0], f"(backend {jax.default_backend()!r})")

# %% [markdown]
# ## 1. A leaky integrate-and-fire population
#
# The model is the textbook LIF; `(unless refractory)` clamps `v` during the 2 ms refractory
# period, as in Brian2. `I : amp` declares a per-neuron parameter.

# %%
lif = sf.NeuronModel(
    """
    dv/dt = (v_rest - v + R*I) / tau : volt (unless refractory)
    I : amp
    """,
    threshold="v > v_th",
    reset="v = v_reset",
    refractory=2.0,  # ms
    constants=dict(v_rest=-65.0, R=1.0, tau=10.0, v_th=-50.0, v_reset=-65.0),  # mV, MOhm, ms
    method="euler",
)
print(lif)

# %% [markdown]
# A *state* is a plain dict of arrays, one element per neuron. Besides `v` and `I` it holds
# `lastspike` (the time of each neuron's last spike, for the refractory period) and `t`, the time
# of the state (both float64 milliseconds, carried as int32 word pairs; `sf.time_of(state)` reads
# the time): a run continues from wherever the state stopped. Here 1000 neurons get currents from
# 0 to 30 nA.

# %%
N = 1000
I_lif = jnp.linspace(0.0, 30.0, N, dtype=jnp.float32)  # nA
state0 = lif.init_state(N, v=-65.0, I=I_lif)
{name: (x.shape, str(x.dtype)) for name, x in state0.items()}

# %% [markdown]
# One second of simulated time at `dt = 0.1` ms is 10 000 steps, run in one call under
# `jax.jit`. `record=["v"], record_every=10` keeps `v` every 1 ms (the value at the start of
# every 10th step, like a `StateMonitor` with `dt=1*ms`).

# %%
dt, T = 0.1, 1000.0  # ms
steps, every = round(T / dt), 10
run_lif = jax.jit(lambda s: lif.run(s, dt=dt, steps=steps, record=["v"], record_every=every))

for label in ("first call (trace, generate + compile or load the kernel, run)", "second call (compiled)"):
    t0 = time.perf_counter()
    state1, res1 = jax.block_until_ready(run_lif(state0))
    print(f"{label}: {time.perf_counter() - t0:.3f} s")

print("spike_count:", res1.spike_count.shape, "| traces['v']:", res1.traces["v"].shape, "(samples, neurons)")

# %%
t_rec = np.arange(res1.traces["v"].shape[0]) * dt * every  # ms
fig, ax = plt.subplots(figsize=(8, 3))
for target in (12.0, 16.0, 25.0):
    i = int(np.argmin(np.abs(np.asarray(I_lif) - target)))
    ax.plot(t_rec, res1.traces["v"][:, i], label=f"I = {float(I_lif[i]):.1f} nA")
ax.set(xlim=(0, 150), xlabel="t (ms)", ylabel="v (mV)", title="LIF voltage traces (first 150 ms)")
ax.legend(loc="lower right", fontsize=8)
plt.show()

# %% [markdown]
# ### f–I curve
#
# With `v_reset = v_rest` the analytic rate of the LIF is
# $f(I) = 1 / \left(t_\mathrm{ref} + \tau \ln \frac{RI}{RI - (v_\mathrm{th} - v_\mathrm{rest})}\right)$
# for $RI > v_\mathrm{th} - v_\mathrm{rest}$ and 0 below. The simulation counts whole spikes in
# 1 s on a 0.1 ms grid with forward Euler, so expect deviations of up to about 2 Hz from the
# continuous-time formula (a few % just above threshold, where rates are low). As an exact
# check, a float64 numpy loop with the same Euler scheme and Brian2's step order (integrate,
# threshold, reset) gives the same spike counts.

# %%
v_rest, R, tau, v_th, v_reset, t_ref = -65.0, 1.0, 10.0, -50.0, -65.0, 2.0
I64 = np.asarray(I_lif, dtype=np.float64)
rate = np.asarray(res1.spike_count) / (T / 1000.0)  # Hz


def lif_rate(current):
    # analytic f-I curve in Hz (times in ms)
    RI = R * np.asarray(current, dtype=np.float64)
    out = np.zeros_like(RI)
    supra = RI > v_th - v_rest
    out[supra] = 1000.0 / (t_ref + tau * np.log(RI[supra] / (RI[supra] - (v_th - v_rest))))
    return out


def lif_euler_counts(current, dt, steps):
    # independent float64 reference: forward Euler, Brian2 step order
    v = np.full(current.shape, v_rest)
    last = np.full(current.shape, -(10**9))
    count = np.zeros(current.shape, dtype=np.int64)
    ref_steps = round(t_ref / dt)
    for s in range(steps):
        active = s - last >= ref_steps
        v = np.where(active, v + dt * (v_rest - v + R * current) / tau, v)
        spike = active & (v > v_th)
        v = np.where(spike, v_reset, v)
        last = np.where(spike, s, last)
        count += spike
    return count


theory = lif_rate(I64)
fires = theory > 5.0
print(f"max |rate - analytic|          : {np.max(np.abs(rate - theory)):.2f} Hz")
print(f"max relative deviation (>5 Hz) : {np.max(np.abs(rate - theory)[fires] / theory[fires]):.2%}")
ref_counts = lif_euler_counts(I64, dt, steps)
same = np.asarray(res1.spike_count) == ref_counts
print(
    f"spike counts equal to the float64 Euler reference: {same.sum()}/{N}"
    f" (max difference {np.max(np.abs(np.asarray(res1.spike_count) - ref_counts))})"
)
assert np.max(np.abs(rate - theory)) < 3.0
assert np.max(np.abs(np.asarray(res1.spike_count) - ref_counts)) <= 1

fig, ax = plt.subplots(figsize=(5, 3.5))
ax.plot(I64, rate, ".", ms=3, label="spikeforge (1 s, dt = 0.1 ms)")
ax.plot(I64, theory, "k--", lw=1, label="analytic LIF")
ax.set(xlabel="I (nA)", ylabel="rate (Hz)", title="LIF f–I curve")
ax.legend()
plt.show()

# %% [markdown]
# ### Continuing a run
#
# `run` does not mutate anything: it returns a new state, and running that state again continues
# the simulation (the time, the membrane potential and the refractory bookkeeping all carry over).
# Two consecutive 1 s runs give bit-for-bit the same result as one 2 s run.

# %%
state2, res2 = run_lif(state1)  # the second second
print("t (ms):", float(sf.time_of(state0)), "->", float(sf.time_of(state1)), "->", float(sf.time_of(state2)))
print("first sample of run 2 == final v of run 1:", bool(np.array_equal(res2.traces["v"][0], state1["v"])))

state_2s, res_2s = jax.jit(lambda s: lif.run(s, dt=dt, steps=2 * steps, record=["v"], record_every=every))(state0)
print(
    "2 x 1 s == 1 x 2 s (v, spike counts, traces):",
    bool(np.array_equal(state2["v"], state_2s["v"])),
    bool(np.array_equal(res1.spike_count + res2.spike_count, res_2s.spike_count)),
    bool(np.array_equal(np.concatenate([res1.traces["v"], res2.traces["v"]]), res_2s.traces["v"])),
)

i = int(np.argmin(np.abs(np.asarray(I_lif) - 16.0)))
t2 = np.arange(2 * len(t_rec)) * dt * every
fig, ax = plt.subplots(figsize=(8, 2.5))
ax.plot(t2[: len(t_rec)], res1.traces["v"][:, i], label="run 1")
ax.plot(t2[len(t_rec) :], res2.traces["v"][:, i], label="run 2")
ax.set(xlim=(800, 1200), xlabel="t (ms)", ylabel="v (mV)", title=f"I = {float(I_lif[i]):.1f} nA across the two runs")
ax.legend(loc="lower right", fontsize=8)
plt.show()

# %% [markdown]
# ## 2. The generated code
#
# `model.source("cuda")` (or `sf.generate(model, "cuda")`) returns the kernel that runs on a GPU:
# one thread per neuron loops over all steps with the state in registers. Constants, `dt`, and
# the refractory period (2 ms = 20 steps) are folded into literals; each model variant (dtype,
# `dt`, recorded variables, per-neuron or per-step inputs) gets its own kernel.

# %%
print(lif.source("cuda"))

# %% [markdown]
# On a CPU the same IR goes through the **C dialect** of the same printer
# (`lif.source("c")`): neurons are processed in lanes of 16 with `#pragma omp simd`, so the step
# update vectorises. Its inner loop:

# %%
c_src = sf.generate(lif, "c")
lines = c_src.splitlines()
start = next(k for k, line in enumerate(lines) if "for (int64_t sf_s" in line)
print("\n".join(lines[start : start + 14]))

# %% [markdown]
# ## 3. Hodgkin–Huxley
#
# The classic squid-axon model (same equations and constants as `tests/models/hh_32.json`),
# integrated with RK4 at `dt = 0.01` ms. The rate functions are subexpressions; they are in
# 1/ms (the `: Hz` names a unit, nothing is converted). There is no reset: `threshold="v > 0"` with
# `refractory="v > 0"` — a *condition*, as in Brian2 — keeps the neuron refractory while
# `v > 0`, so each action potential counts as exactly one spike.

# %%
hh = sf.NeuronModel(
    """
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
    """,
    threshold="v > 0",
    refractory="v > 0",
    constants=dict(gNa=120.0, gK=36.0, gL=0.3, ENa=50.0, EK=-77.0, EL=-54.387, Cm=1.0),
    method="rk4",
)
print(hh)

# %% [markdown]
# 64 neurons with $I_i = 10\, i / (N-1)$ µA/cm², starting near rest, for 50 ms (5000 steps),
# recording `v` every 0.1 ms.

# %%
N_hh, dt_hh, T_hh = 64, 0.01, 50.0
steps_hh, every_hh = round(T_hh / dt_hh), 10
rest = dict(v=-65.0, m=0.05, h=0.6, n=0.32)  # close to the resting steady state
I_hh = 10.0 * jnp.arange(N_hh, dtype=jnp.float32) / (N_hh - 1)
hh_state0 = hh.init_state(N_hh, I=I_hh, **rest)

run_hh = jax.jit(lambda s: hh.run(s, dt=dt_hh, steps=steps_hh, record=["v"], record_every=every_hh))
hh_state1, hh_res = jax.block_until_ready(run_hh(hh_state0))
hh_counts = np.asarray(hh_res.spike_count)
print(
    f"first spike from I = {float(I_hh[np.argmax(hh_counts >= 1)]):.2f}, "
    f"repetitive firing (>= 2 spikes) from I = {float(I_hh[np.argmax(hh_counts >= 2)]):.2f} µA/cm²"
)

t_hh = np.arange(hh_res.traces["v"].shape[0]) * dt_hh * every_hh
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.2), gridspec_kw=dict(width_ratios=[2, 1]))
for i in (0, 20, 40, 63):
    ax1.plot(t_hh, hh_res.traces["v"][:, i], lw=1, label=f"I = {float(I_hh[i]):.2f}")
ax1.set(xlabel="t (ms)", ylabel="v (mV)", ylim=(-85, 75), title="HH voltage traces (I in µA/cm²)")
ax1.legend(ncol=4, loc="upper center", fontsize=8)
ax2.step(np.asarray(I_hh), hh_counts, where="mid")
ax2.set(xlabel="I (µA/cm²)", ylabel="spikes in 50 ms", title="spike count vs current")
plt.tight_layout()
plt.show()

# %% [markdown]
# Weak currents stay subthreshold, intermediate ones give a single onset spike, and only above
# about 6 µA/cm² does the model fire repetitively (the classic type-II behaviour of HH).
#
# **Check against an independent reference:** a float64 numpy RK4 of the same equations, with
# spikes counted as upward crossings of 0 mV. After 50 ms the float32 kernel should agree to
# about 0.01 mV (float32 rounding, amplified a little by the spikes), with identical spike counts.

# %%
p = dict(gNa=120.0, gK=36.0, gL=0.3, ENa=50.0, EK=-77.0, EL=-54.387, Cm=1.0)


def hh_deriv(y, current):
    v, m, h, n = y
    am = 0.1 * (v + 40) / (1 - np.exp(-(v + 40) / 10))
    bm = 4 * np.exp(-(v + 65) / 18)
    ah = 0.07 * np.exp(-(v + 65) / 20)
    bh = 1 / (1 + np.exp(-(v + 35) / 10))
    an = 0.01 * (v + 55) / (1 - np.exp(-(v + 55) / 10))
    bn = 0.125 * np.exp(-(v + 65) / 80)
    i_ion = p["gNa"] * m**3 * h * (v - p["ENa"]) + p["gK"] * n**4 * (v - p["EK"]) + p["gL"] * (v - p["EL"])
    dv = (current - i_ion) / p["Cm"]
    return np.stack([dv, am * (1 - m) - bm * m, ah * (1 - h) - bh * h, an * (1 - n) - bn * n])


def hh_rk4(current, dt, steps):
    # classical RK4 in float64; spikes = upward crossings of 0 mV
    y = np.stack([np.full(current.shape, rest[k]) for k in "vmhn"])
    spikes = np.zeros(current.shape, dtype=np.int64)
    for _ in range(steps):
        k1 = hh_deriv(y, current)
        k2 = hh_deriv(y + dt / 2 * k1, current)
        k3 = hh_deriv(y + dt / 2 * k2, current)
        k4 = hh_deriv(y + dt * k3, current)
        y_new = y + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        spikes += (y[0] <= 0) & (y_new[0] > 0)
        y = y_new
    return y, spikes


y_ref, spikes_ref = hh_rk4(np.asarray(I_hh, dtype=np.float64), dt_hh, steps_hh)
max_dv = np.max(np.abs(np.asarray(hh_state1["v"], dtype=np.float64) - y_ref[0]))
print(f"max |V_spikeforge - V_reference| at {T_hh:g} ms: {max_dv:.2e} mV (float32 vs float64)")
print(
    f"spike counts match: {np.array_equal(hh_counts, spikes_ref)} "
    f"({np.sum(hh_counts == spikes_ref)}/{N_hh} neurons, {hh_counts.sum()} spikes in total)"
)
assert max_dv < 0.1 and np.max(np.abs(hh_counts - spikes_ref)) <= 1

# %% [markdown]
# ## 4. Batches of independent populations with `jax.vmap`
#
# A parameter sweep does not need a Python loop: `jax.vmap` over a batch of states runs every
# population in **one** kernel launch (the batch is folded into the neuron axis, each member keeps
# its own step counter). Here: 4 copies of the HH population with the current scaled by
# 0.5, 1, 1.5 and 2.

# %%
scales = jnp.array([0.5, 1.0, 1.5, 2.0], dtype=jnp.float32)
batch0 = jax.vmap(lambda c: hh.init_state(N_hh, I=c * I_hh, **rest))(scales)
print({name: x.shape for name, x in batch0.items()})

run_batch = jax.jit(jax.vmap(lambda s: hh.run(s, dt=dt_hh, steps=steps_hh)))
hlo = run_batch.lower(batch0).as_text()
print("spikeforge calls in the compiled program:", hlo.count("stablehlo.custom_call @spikeforge_neuron_run"))

batch1, batch_res = jax.block_until_ready(run_batch(batch0))
run_one = jax.jit(lambda s: hh.run(s, dt=dt_hh, steps=steps_hh))
for b, c in enumerate(np.asarray(scales)):
    one1, one_res = run_one({name: x[b] for name, x in batch0.items()})
    equal = np.array_equal(one1["v"], batch1["v"][b]) and np.array_equal(one_res.spike_count, batch_res.spike_count[b])
    print(f"I x {c:.1f}: {int(batch_res.spike_count[b].sum()):4d} spikes, identical to a separate run: {equal}")
    assert equal

# %% [markdown]
# ## 5. Mistakes are reported where they are
#
# Models are validated when they are defined, so an error surfaces at once as `sf.ModelError`,
# with the field, line, column and a caret (and a hint where one helps).

# %%
lif_constants = dict(v_rest=-65.0, R=1.0, tau=10.0)
broken = {
    "a missing ')'": "dv/dt = (v_rest - v + R*I / tau : volt\nI : amp",
    "a typo (tua)": "dv/dt = (v_rest - v + R*I) / tua : volt\nI : amp",
}
for what, eqs in broken.items():
    try:
        sf.NeuronModel(eqs, constants=lif_constants)
    except sf.ModelError as err:
        print(f"[{what}]")
        print(err)
        print(f"  -> field={err.field!r}, line={err.line}, column={err.column}\n")

# %% [markdown]
# ## Summary
#
# * `sf.NeuronModel(equations, threshold=, reset=, refractory=, constants=, method=)` defines a
#   model; `init_state(N, **values)` builds its state; `run(state, dt=, steps=, record=,
#   record_every=)` returns `(new_state, RunResult(spike_count, traces))`.
# * Numbers are taken in one system of units (ms, mV, nA, µS, nF, MΩ); unit names in expressions
#   are values in it, nothing is converted.
# * A run is one generated kernel launch (CUDA on GPU, C on CPU) called through XLA FFI; it works
#   under `jax.jit` and `jax.vmap`, and runs continue from the returned state.
