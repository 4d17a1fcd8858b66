# %% [markdown]
# # Tutorial 3: a COBA network from equations
#
# Tutorials 1 and 2 ran populations whose neurons never talk to each other. Here the neurons are
# connected: **Brette et al. (2007)'s benchmark 1**, the Vogels–Abbott network with
# conductance-based synapses (COBA), written as in Brian2, with the same names:
#
# | Brian2 | spikeforge |
# |---|---|
# | `NeuronGroup(N, eqs, threshold=, reset=, refractory=, method=)` | `sf.NeuronGroup(N, eqs, ..., constants=)` |
# | `P[:3200]` (a subgroup) | `P[:3200]` |
# | `Synapses(Pe, P, on_pre='ge += we').connect(p=0.02)` | `sf.Synapses(Pe, P, on_pre="ge += we").connect(p=0.02)` |
# | `SpikeMonitor`, `StateMonitor`, `PopulationRateMonitor` | the same, passed to `sf.Network(..., name=monitor)` |
# | `run(1*second)` | `state, out = net.run(state, duration=1000.0)`: a pure function of the state |
#
# The whole network (every group, every projection, every step, the monitors) runs inside **one
# call** of a generated kernel: CUDA on a GPU, C on a CPU (this notebook runs on whatever JAX
# uses). Brian2's schedule is followed exactly: in each step the groups integrate, thresholds
# fire, synapses deliver (a delay of `d` steps delivers at step `k + d`), then resets run, so a
# float64 run gives Brian2's spike trains.
#
# **Units.** As everywhere in spikeforge, numbers are in the kernels' unit system (ms, mV, nA,
# µS, nF; **rates in 1/ms**). Here the conductances are in units of the leak conductance, as in
# Brette et al.'s benchmark, so they have no unit.

# %%
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import spikeforge as sf

jax.config.update("jax_enable_x64", True)  # for the float64 check at the end
STDP_SECONDS = 20  # section 8's learning run (Brian2's example runs 100 s)
print("spikeforge", sf.__version__, "| jax", jax.__version__, "| running on:", jax.devices()[0])

# %% [markdown]
# ## 1. The network
#
# 4000 leaky integrate-and-fire neurons, 80% excitatory. Each neuron's conductances `ge`, `gi`
# decay exponentially and jump by `we` / `wi` when a presynaptic spike arrives; every pair of
# neurons is connected with probability 2%.

# %%
eqs = """
dv/dt = (ge*(Ee-v) + gi*(Ei-v) - (v-El))/taum : volt (unless refractory)
dge/dt = -ge/taue : 1
dgi/dt = -gi/taui : 1
"""
constants = dict(taum=20.0, taue=5.0, taui=10.0, Vt=-50.0, Vr=-60.0, El=-60.0, Ee=0.0, Ei=-80.0)  # ms, mV
N, N_exc = 4000, 3200

P = sf.NeuronGroup(N, eqs, threshold="v > Vt", reset="v = Vr", refractory=5.0, constants=constants, name="P")
Pe, Pi = P[:N_exc], P[N_exc:]  # subgroups: index ranges of P, not copies
Ce = sf.Synapses(Pe, P, on_pre="ge += we", constants=dict(we=6.0 / 10.0), name="Ce")  # 6 nS / 10 nS leak
Ci = sf.Synapses(Pi, P, on_pre="gi += wi", constants=dict(wi=67.0 / 10.0), name="Ci")
Ce.connect(p=0.02)
Ci.connect(p=0.02)
print(P, "| integration:", P.model.method)  # Brian2's choice: the coefficients depend on ge, gi

# %% [markdown]
# Monitors are passed to the network by name, and come back under that name: all spikes of `P`,
# the membrane potential of three neurons, the population rate of each subgroup.

# %%
net = sf.Network(
    P,
    Ce,
    Ci,
    spikes=sf.SpikeMonitor(P),
    trace=sf.StateMonitor(P, ["v", "ge", "gi"], record=[0, 1, 3999]),
    rate_e=sf.PopulationRateMonitor(Pe),
    rate_i=sf.PopulationRateMonitor(Pi),
    dt=0.1,
)
print(net)

# %% [markdown]
# ## 2. The state
#
# `init_state` builds the synapses (on the device, from the seed: the same seed gives the same
# synapses on a CPU and a GPU) and returns the state: a dict of arrays, one dict per object.
# The initial values are those of Brette et al.: `v` uniform between reset and threshold, the
# conductances around their mean values in the self-sustained regime.

# %%
rng = np.random.default_rng(2007)
v0 = -60.0 + 10.0 * rng.random(N)
ge0 = np.clip(rng.normal(4.0, 1.5, N), 0, None) / 10.0
gi0 = np.clip(rng.normal(20.0, 12.0, N), 0, None) / 10.0
state0 = net.init_state(seed=1, P=dict(v=v0, ge=ge0, gi=gi0))
print(jax.tree_util.tree_map(lambda x: f"{x.dtype}{list(x.shape)}", state0))
n_syn = state0["Ce"]["targets"].size + state0["Ci"]["targets"].size
print(f"{n_syn} synapses ({n_syn / N:.1f} per neuron)")

# %% [markdown]
# ## 3. One second of activity
#
# `net.run` is one call of the network kernel: under `jax.jit` it runs all 10 000 steps without
# returning to the host. (Called directly from Python it shows a progress bar instead, by running
# the same compiled program in chunks.)

# %%
run = jax.jit(lambda s: net.run(s, duration=1000.0))
for label in ("first call (trace, generate + compile the kernels, run)", "second call (compiled)"):
    t0 = time.perf_counter()
    state1, out = jax.block_until_ready(run(state0))
    print(f"{label}: {time.perf_counter() - t0:.2f} s")

counts = np.asarray(out.spike_count["P"])
print(f"spikes: {int(out.spikes.count)} recorded, {int(out.spikes.dropped)} dropped")
print(f"mean rate: excitatory {counts[:N_exc].mean():.1f} Hz, inhibitory {counts[N_exc:].mean():.1f} Hz")

# %% [markdown]
# The raster of the first 400 neurons of each population, and the population rates smoothed
# over 5 ms. `out.spikes` is padded to the monitor's capacity (entries after `count` are `-1` and
# NaN); `sf.plot_raster` and `out.spikes.numpy()` keep the valid part.

# %%
i, t = out.spikes.numpy()
inh = (i >= N_exc) & (i < N_exc + 400)
fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 5), sharex=True, gridspec_kw=dict(height_ratios=[3, 1]))
sf.plot_raster((i[i < 400], t[i < 400]), ax=ax1, markersize=1.5)
sf.plot_raster((i[inh] - N_exc, t[inh]), ax=ax1, offset=400, markersize=1.5, color="C3")
ax1.set(xlabel="", ylabel="neuron (E below, I above)", title="COBA: raster of 400 + 400 neurons")
for key, label in (("rate_e", "excitatory"), ("rate_i", "inhibitory")):
    rec = out[key]
    ax2.plot(rec.t, 1000 * rec.smooth(5.0, net.dt), label=label)  # 1/ms -> Hz
ax2.set(xlabel="time (ms)", ylabel="rate (Hz)")
ax2.legend(loc="upper right", fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# The traces of neuron 0: its conductances driven by the recurrent input, and its membrane
# potential, clamped at the reset value during the 5 ms refractory period after each spike.

# %%
fig, axes = plt.subplots(3, 1, figsize=(9, 5), sharex=True)
for ax, var, unit in zip(axes, ("v", "ge", "gi"), ("mV", "g_leak", "g_leak")):
    ax.plot(out.trace.t, out.trace[var][:, 0], lw=0.8)
    ax.set(ylabel=f"{var} ({unit})")
spikes_0 = t[i == 0]
axes[0].plot(spikes_0, np.full(spikes_0.shape, -48.0), "v", color="C3", ms=4)
axes[-1].set(xlabel="time (ms)", xlim=(0, 300))
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 4. Runs continue from the state
#
# Everything that carries over (the neurons' state, the spike queues, the step counter that the
# random numbers are keyed by) is in the state: two runs of 500 ms give exactly one run of 1 s.

# %%
half = jax.jit(lambda s: net.run(s, duration=500.0))
mid, out_a = half(state0)
end, out_b = half(mid)
print("t_step:", int(state0["t_step"]), "->", int(mid["t_step"]), "->", int(end["t_step"]))
same_v = bool(np.array_equal(end["P"]["v"], state1["P"]["v"]))
same_counts = bool(np.array_equal(out_a.spike_count["P"] + out_b.spike_count["P"], out.spike_count["P"]))
print("2 x 500 ms == 1 x 1 s:", same_v, same_counts)
assert same_v and same_counts

# %% [markdown]
# ## 5. Checked against an independent float64 reference
#
# In float64 the same network, run by a few lines of numpy that follow Brian2's schedule (Euler
# step, threshold, delivery of this step's spikes, reset), gives exactly the same spikes. The
# synapses are read from the state (`row_offsets`, `targets`: CSR by presynaptic neuron).

# %%
state64 = net.init_state(seed=1, dtype=jnp.float64, P=dict(v=v0, ge=ge0, gi=gi0))
T_check = 300.0
_, out64 = jax.jit(lambda s: net.run(s, duration=T_check))(state64)


def synapses(entry, n_pre):
    offsets = np.asarray(entry["row_offsets"])
    return np.repeat(np.arange(n_pre), np.diff(offsets)), np.asarray(entry["targets"])


def reference(steps, dt=0.1):
    c = constants
    v, ge, gi = v0.copy(), ge0.copy(), gi0.copy()
    last = np.full(N, -(10**9))
    ei, ej = synapses(state64["Ce"], N_exc)
    ii, ij = synapses(state64["Ci"], N - N_exc)
    out = []
    for k in range(steps):
        active = k - last >= 50  # 5 ms
        dv = (ge * (c["Ee"] - v) + gi * (c["Ei"] - v) - (v - c["El"])) / c["taum"]
        v = np.where(active, v + dt * dv, v)
        ge, gi = ge - dt * ge / c["taue"], gi - dt * gi / c["taui"]
        spike = active & (v > c["Vt"])
        last[spike] = k
        np.add.at(ge, ej[spike[ei]], 0.6)
        np.add.at(gi, ij[spike[N_exc + ii]], 6.7)
        v[spike] = c["Vr"]
        out += [(k, n) for n in np.nonzero(spike)[0]]
    return np.array(out)


ref = reference(round(T_check / 0.1))
i64, t64 = out64.spikes.numpy()
ours = np.stack([np.rint(t64 / 0.1).astype(int), i64], axis=1)
ours = ours[np.lexsort((ours[:, 1], ours[:, 0]))]  # on a GPU, spikes of one step come in any order
print(f"{len(ref)} reference spikes, {len(ours)} spikeforge spikes, identical: {np.array_equal(ours, ref)}")
assert np.array_equal(ours, ref)

# %% [markdown]
# ## 6. A parameter sweep in one call: `jax.vmap`
#
# Independent networks, here the same synapses started from three different initial states, run
# as one batch: `net.stack` stacks the members' states (keeping the shared connectivity once) and
# `net.batch_axes` tells `jax.vmap` which entries have the batch axis. The compiled program holds
# one network call for the whole batch.

# %%
members = []
for seed in (1, 2, 3):
    r = np.random.default_rng(seed)
    members.append(net.init_state(seed=1, P=dict(v=-60.0 + 10.0 * r.random(N), ge=ge0, gi=gi0)))
batch = net.stack(members)
axes = net.batch_axes(batch)
sweep = jax.jit(jax.vmap(lambda s: net.run(s, duration=200.0), in_axes=(axes,), out_axes=(axes, 0)))
print("network calls in the program:", sweep.lower(batch).as_text().count("custom_call @spikeforge_network_run"))
_, outs = sweep(batch)
print("mean rates (Hz):", np.round(np.asarray(outs.spike_count["P"]).mean(axis=1) / 0.2, 2))

# %% [markdown]
# ## 7. Mistakes are reported where they are made
#
# Synapses are checked by the library when they are defined, with the object, the field and a
# caret:

# %%
try:
    sf.Synapses(Pe, P, on_pre="gee += we", constants=dict(we=0.6), name="Cx")
except sf.ModelError as err:
    print(err)

# %% [markdown]
# ## 8. Learning: STDP
#
# Synapses can learn. Brian2's `examples/synapses/STDP.py` (Song, Miller & Abbott, 2000): 1000
# Poisson inputs at 15 Hz drive one neuron through synapses whose weights follow additive
# spike-timing-dependent plasticity. Each synapse keeps two traces, declared `(event-driven)`: they
# are updated exactly when a spike reaches the synapse, so a synapse costs nothing between its
# events. `on_pre` runs when an input spike arrives, `on_post` when the neuron fires; `clip` keeps
# each weight in `[0, gmax]`. The weights are part of the network's state: a second `run` goes on
# learning from where the first stopped.

# %%
taupre = taupost = 20.0  # ms
gmax = 0.01
dApre = 0.01 * gmax
dApost = -dApre * taupre / taupost * 1.05
N_in = 1000

inputs = sf.PoissonGroup(N_in, rates=0.015, name="inputs")  # 15 Hz = 0.015 / ms
neuron = sf.NeuronGroup(
    1,
    "dv/dt = (ge * (Ee-v) + El - v) / taum : volt\ndge/dt = -ge / taue : 1",
    threshold="v > vt",
    reset="v = vr",
    method="euler",
    constants=dict(taum=10.0, Ee=0.0, vt=-54.0, vr=-60.0, El=-74.0, taue=5.0),
    name="neuron",
)
S = sf.Synapses(
    inputs,
    neuron,
    """w : 1
    dApre/dt = -Apre / taupre : 1 (event-driven)
    dApost/dt = -Apost / taupost : 1 (event-driven)""",
    on_pre="ge += w; Apre += dApre; w = clip(w + Apost, 0, gmax)",
    on_post="Apost += dApost; w = clip(w + Apre, 0, gmax)",
    constants=dict(taupre=taupre, taupost=taupost, gmax=gmax, dApre=dApre, dApost=dApost),
    name="S",
)
S.connect()
learning = sf.Network(inputs, neuron, S, dt=0.1)
before = learning.init_state(seed=4, S=dict(w=np.random.default_rng(4).random(N_in) * gmax), neuron=dict(v=[-60.0]))

t0 = time.perf_counter()
after, out = jax.jit(lambda s: learning.run(s, duration=STDP_SECONDS * 1000.0))(before)
w_after = np.asarray(after["S"]["w"])
print(f"{STDP_SECONDS} s of biological time in {time.perf_counter() - t0:.1f} s (compilation included);",
      f"the neuron fired {int(np.asarray(out.spike_count['neuron'])[0])} times")  # fmt: skip

fig, axes = plt.subplots(1, 2, figsize=(10, 3), sharey=True)
for ax, w, title in ((axes[0], np.asarray(before["S"]["w"]), "before"), (axes[1], w_after, f"after {STDP_SECONDS} s")):
    ax.hist(w / gmax, bins=20, range=(0, 1))
    ax.set_xlabel("w / gmax")
    ax.set_title(title)
axes[0].set_ylabel("synapses")
plt.tight_layout()

# %% [markdown]
# The uniform start is splitting towards the two ends: competition between the inputs pushes
# weights to 0 or to `gmax`, because depression is slightly stronger than potentiation (`1.05`)
# and only the inputs that often fire just before the neuron keep strengthening. Run longer (Brian2's
# example runs 100 s) and the distribution becomes clearly bimodal, as in Song et al.

# %% [markdown]
# ## Summary
#
# * `sf.NeuronGroup`, `sf.Synapses(...).connect(...)`, `sf.PoissonGroup`, `sf.PoissonInput`,
#   `sf.SpikeGeneratorGroup`, `sf.TimedArray` and the monitors have Brian2's names and meaning.
# * `sf.Network(*objects, dt=, **monitors)`; `net.init_state(seed=, dtype=, **values)` builds the
#   synapses and the state; `net.run(state, duration=)` returns `(state, out)`, one kernel call
#   under `jax.jit`; `net.step(state)` is one step for a `lax.scan` of your own; `jax.vmap` over
#   stacked states (`net.stack`, `net.batch_axes`) runs a parameter sweep in one call.
# * float64 runs reproduce Brian2's schedule spike for spike.
# * Plastic synapses: `on_post`, `(event-driven)` traces, named pathways with their own delays
#   (`on_pre={'up': ..., 'down': ...}`, `delay={'down': 2.0}`); learned weights stay in the state.
