"""The paths of a network run on a GPU (``Network(strategy=...)``, docs/NETWORKS.md "Launches
and limits"): the per-step kernels, the persistent kernel as one block, as a cooperative grid, and
``auto``'s choice, on CUBA and COBA (Brian2's examples, network_models.py) with every input and
delay kind a persistent kernel must carry from step to step: delays of 0, 1 and 3 steps and
per-synapse delays of several steps, a Poisson group, a Poisson input, a spike generator, a
state monitor and a spike monitor.

float64 in deterministic mode: every path gives the per-step path's results bit for bit, and the
CPU's spike trains (the C kernels, themselves checked against float64 numpy references in
tests/network_c.rs and test_network_benchmarks.py). float32 (float atomics): the same rates. Two
half runs are one run on every path. GPU only (skipped without one); ``pytest -k persistent``
selects them. The CPU tests at the end run everywhere.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import spikeforge as sf
from network_models import DT, draw, spikeforge_objects

try:
    GPU = jax.devices("gpu")[0]
except RuntimeError:
    GPU = None
CPU = jax.devices("cpu")[0]

gpu_only = pytest.mark.skipif(GPU is None, reason="needs a GPU")

STEPS = 2000  # 200 ms
PATHS = ["per_step", "block", "grid", "auto"]
RECORDED = [0, 7, 3199, 3200, 3999]


@functools.cache
def drawn(name):
    return draw(name)


def build(name: str, strategy: str, deterministic: bool) -> sf.Network:
    """The drawn CUBA/COBA network with inputs of every kind and delays of 0, 1 and 3 steps and
    per synapse."""
    net = drawn(name)
    scale = 1.0 if name == "cuba" else 0.1  # CUBA's conductances are mV, COBA's unitless
    P, Ce, Ci = spikeforge_objects(net, inh_delay=DT)
    pg = sf.PoissonGroup(40, rates=0.02, name="pg")
    Sp = sf.Synapses(pg, P, model="w : 1\nd : second", on_pre="ge += w", delay="d", name="Sp")
    Sp.connect(i=np.repeat(np.arange(40), 25), j=(np.arange(1000) * 7) % net.n)
    gen = sf.SpikeGeneratorGroup(3, [0, 1, 2, 0, 2], [0.0, 0.3, 1.0, 20.0, 150.05], name="gen")
    Sg = sf.Synapses(gen, P, on_pre="v += 3", delay=0.3, name="Sg")
    Sg.connect(i=np.repeat(np.arange(3), 30), j=np.arange(90) * 11)
    bg = sf.PoissonInput(P[:500], "ge", n=20, rate=0.01, weight=0.5 * scale, name="bg")
    objects = [P, Ce, Ci, pg, Sp, gen, Sg, bg]
    return sf.Network(
        *objects,
        spikes=sf.SpikeMonitor(P),
        v=sf.StateMonitor(P, "v", record=RECORDED, every=3),
        rate=sf.PopulationRateMonitor(P),
        dt=DT,
        deterministic=deterministic,
        strategy=strategy,
    )


def initial_state(network, name, dtype, device):
    net = drawn(name)
    scale = 1.0 if name == "cuba" else 0.1
    rng = np.random.default_rng(11)
    with jax.default_device(device):
        state = network.init_state(
            seed=3,
            dtype=dtype,
            P=dict(v=net.v, ge=net.ge, gi=net.gi),
            Sp=dict(w=rng.uniform(0.2, 1.0, 1000) * scale, d=rng.integers(0, 6, 1000) * DT),
        )
    # Committed to the device, so that the jitted run executes there (default_device alone
    # leaves arrays uncommitted: a run outside the context would go to the default GPU).
    return jax.device_put(state, device)


def run(network, state, steps=STEPS):
    new, out = jax.jit(lambda s: network.run(s, steps=steps, progress=False))(state)
    return jax.block_until_ready(new), out


def spike_pairs(out):
    i, t = out.spikes.numpy()
    assert int(out.spikes.dropped) == 0
    steps = np.rint(np.asarray(t) / DT).astype(np.int64)
    order = np.lexsort((i, steps))
    return np.stack([steps[order], np.asarray(i)[order]])


def leaves(tree):
    return {jax.tree_util.keystr(k): np.asarray(v) for k, v in jax.tree_util.tree_leaves_with_path(tree)}


def assert_same(a, b, what):
    """Every leaf of two pytrees bit for bit."""
    la, lb = leaves(a), leaves(b)
    assert la.keys() == lb.keys(), what
    for k in la:
        np.testing.assert_array_equal(la[k], lb[k], err_msg=f"{what}: {k}")


@functools.cache
def cpu_run(name):
    """The CPU's float64 run (the C kernels, sequential, in Brian2's order)."""
    network = build(name, "auto", deterministic=False)
    state = initial_state(network, name, jnp.float64, CPU)
    new, out = run(network, state)
    assert network.last_strategy == "cpu"
    return new, out


@functools.cache
def gpu_run(name, strategy, dtype, deterministic):
    network = build(name, strategy, deterministic)
    state = initial_state(network, name, dtype, GPU)
    new, out = run(network, state)
    return network.last_strategy, new, out


@gpu_only
@pytest.mark.parametrize("strategy", PATHS)
@pytest.mark.parametrize("name", ["cuba", "coba"])
def test_persistent_paths_float64_are_the_per_step_path_and_the_cpu(name, strategy):
    taken, new, out = gpu_run(name, strategy, jnp.float64, True)
    if strategy == "auto":
        assert taken in ("block", "grid", "per_step"), taken
    else:
        assert taken == strategy
    _, base_new, base_out = gpu_run(name, "per_step", jnp.float64, True)
    # Deterministic mode: the same bits as the per-step path, state and every record.
    assert_same(new, base_new, f"{name} {strategy}: state")
    assert_same(out, base_out, f"{name} {strategy}: records")
    # ... and the CPU's spike trains (the counted sums differ from the CPU's in the last bits).
    cpu_new, cpu_out = cpu_run(name)
    ours, theirs = spike_pairs(out), spike_pairs(cpu_out)
    assert ours.shape[1] > 1000, "the network must be active"
    np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(np.asarray(out.spike_count["P"]), np.asarray(cpu_out.spike_count["P"]))
    np.testing.assert_array_equal(np.asarray(out.spike_count["pg"]), np.asarray(cpu_out.spike_count["pg"]))
    np.testing.assert_allclose(np.asarray(out.v.v), np.asarray(cpu_out.v.v), rtol=0, atol=1e-9)
    for var in ("v", "ge", "gi"):
        np.testing.assert_allclose(np.asarray(new["P"][var]), np.asarray(cpu_new["P"][var]), rtol=0, atol=1e-9)


@gpu_only
@pytest.mark.parametrize("strategy", PATHS)
@pytest.mark.parametrize("name", ["cuba", "coba"])
def test_persistent_paths_float32_give_the_same_rates(name, strategy):
    _, _, out = gpu_run(name, strategy, jnp.float32, False)
    _, _, base = gpu_run(name, "per_step", jnp.float32, False)
    _, cpu_out = cpu_run(name)
    counts = np.asarray(out.spike_count["P"]).astype(np.float64)
    # float32 on the GPU, every path: the per-step path's rate within 2%
    other = np.asarray(base.spike_count["P"])
    assert abs(counts.mean() - other.mean()) <= 0.02 * other.mean(), (counts.mean(), other.mean())
    # against the CPU's float64 run, 200 ms of a chaotic network at about 6 Hz (1.2 spikes a
    # neuron): float32 against float64 moves single spikes, which moves the mean by a few
    # percent (2.1% measured on the H200 for CUBA, the same on every path): 5%, and the
    # count distributions must agree by a two-sample Kolmogorov-Smirnov test
    other = np.asarray(cpu_out.spike_count["P"])
    assert abs(counts.mean() - other.mean()) <= 0.05 * other.mean(), (counts.mean(), other.mean())
    grid = np.arange(0, max(counts.max(), other.max()) + 2)
    cdf = lambda x: np.searchsorted(np.sort(x), grid, side="right") / len(x)  # noqa: E731
    d = np.abs(cdf(counts) - cdf(other)).max()
    assert d < 1.63 * np.sqrt(2 / len(counts)), d  # alpha = 0.01
    # the inputs' own spikes do not depend on the float order
    np.testing.assert_array_equal(np.asarray(out.spike_count["pg"]), np.asarray(cpu_out.spike_count["pg"]))


@gpu_only
@pytest.mark.parametrize("strategy", PATHS)
@pytest.mark.parametrize("name", ["cuba", "coba"])
def test_persistent_two_half_runs_are_one_run(name, strategy):
    network = build(name, strategy, deterministic=True)
    state = initial_state(network, name, jnp.float64, GPU)
    whole, out = run(network, state, 600)
    half, out1 = run(network, state, 300)
    second, out2 = run(network, half, 300)
    assert_same(second, whole, f"{name} {strategy}: split state")
    joined = np.concatenate([spike_pairs(out1), spike_pairs(out2)], axis=1)
    np.testing.assert_array_equal(joined, spike_pairs(out))
    np.testing.assert_array_equal(np.concatenate([out1.v.v, out2.v.v]), np.asarray(out.v.v))


def auto_path(n: int, p: float, steps: int = 200) -> str:
    """The path ``auto`` takes for a float32 group of ``n`` neurons connected with probability
    ``p``, run for ``steps`` steps on the GPU (in 200, every neuron spikes once, at 17.9 ms)."""
    G = sf.NeuronGroup(n, "dv/dt = (1.2 - v)/(10*ms) : 1", threshold="v > 1", reset="v = 0", name="G")
    S = sf.Synapses(G, G, on_pre="v_post += 0.01", name="S")
    S.connect(p=p, seed=1)
    net = sf.Network(G, S, dt=DT)
    with jax.default_device(GPU):
        _, out = run(net, net.init_state(dtype=jnp.float32), steps)
    assert (int(np.asarray(out.spike_count["G"]).sum()) > 0) == (steps >= 180)
    return net.last_strategy


@gpu_only
def test_persistent_auto_takes_a_block_for_small_networks_and_a_grid_beyond():
    assert auto_path(200, 0.05) == "block"
    # 2000 neurons (80,000 synapses): the state fits in one block's shared memory
    assert auto_path(2000, 0.04) == "block"
    # 4000 neurons: still the block, since this network's reset writes the variable its synapses
    # add to (a late reset), which the grid's one-barrier kernel does not take (one-barrier
    # networks take the grid from 4000 neurons: test_network_one_barrier.py)
    assert auto_path(4000, 0.02) == "block"
    # 20,000 neurons (about 300 kB of state) do not fit one block: a cooperative grid
    assert auto_path(20_000, 0.001) == "grid"


@gpu_only
def test_persistent_auto_runs_a_call_of_few_steps_per_step():
    # a persistent launch loads and stores the whole state around its steps: not worth it for
    # fewer than 16 steps (network_path::FEW_STEPS)
    assert auto_path(4000, 0.02, steps=15) == "per_step"
    assert auto_path(20_000, 0.001, steps=1) == "per_step"
    assert auto_path(2000, 0.04, steps=16) == "block"


@gpu_only
def test_persistent_grid_that_the_device_cannot_hold_is_an_error():
    G = sf.NeuronGroup(4, "dv/dt = (1.2 - v)/(10*ms) : 1", threshold="v > 1", reset="v = 0", name="G")
    net = sf.Network(G, dt=DT, strategy="grid")
    with jax.default_device(GPU):
        one = net.init_state(dtype=jnp.float32)
        # more members than the device holds resident blocks (an H200: 132 SMs, at most 16
        # blocks of 128 threads each, 2112)
        many = net.stack([one] * 4096)
        with pytest.raises(Exception, match="batch members"):
            jax.block_until_ready(jax.jit(jax.vmap(lambda s: net.run(s, steps=5, progress=False)))(many))


def test_persistent_strategy_is_checked_and_reported_on_the_cpu():
    G = sf.NeuronGroup(4, "dv/dt = (1.2 - v)/(10*ms) : 1", threshold="v > 1", reset="v = 0", name="G")
    with pytest.raises(sf.ModelError, match="unknown variant `fastest`"):
        sf.Network(G, dt=DT, strategy="fastest")
    with pytest.raises(sf.ModelError, match="strategy must be one of"):
        sf.Network(G, dt=DT, strategy=3)
    net = sf.Network(G, dt=DT, strategy="grid")
    assert net.last_strategy is None
    with jax.default_device(CPU):
        new, _ = run(net, net.init_state(dtype=jnp.float32), 20)
    assert net.last_strategy == "cpu"  # the CPU runs every step in one call, whatever the strategy
    assert "sf_network_persistent" in net.source("cuda")
