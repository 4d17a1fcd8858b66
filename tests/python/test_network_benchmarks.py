"""CUBA (Brian2's examples/CUBA.py) and COBA (Brette et al. 2007, benchmark 1), 4000 neurons for
1 s, against the float64 numpy references of network_references.py and against Brian2 itself
(numpy target, float64) where it is installed, with the same explicit i/j connectivity and
initial values (network_models.py).

float64: identical spike trains. float32: the same population rate within 1% and spike-count
distributions that a two-sample Kolmogorov-Smirnov test does not tell apart. Also: traces and
rates of the monitors, and two runs of 500 ms == one run of 1 s, exactly.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import spikeforge as sf
from network_models import DT, draw, spikeforge_objects
from network_references import benchmark_network, simulate

DURATION = 1000.0
STEPS = round(DURATION / DT)
RECORDED = np.array([0, 7, 3199, 3200, 3999])


@functools.cache
def drawn(name):
    return draw(name)


@functools.cache
def reference(name):
    """The float64 reference run: spikes, counts, traces of v of RECORDED, rates."""
    net = drawn(name)
    groups, projections = benchmark_network(net, DT)
    return simulate(groups, projections, STEPS, record=[("P", "v")])


def spikeforge_network(net, *, every=1):
    P, Ce, Ci = spikeforge_objects(net)
    return sf.Network(
        P,
        Ce,
        Ci,
        spikes=sf.SpikeMonitor(P),
        v=sf.StateMonitor(P, "v", record=RECORDED, every=every),
        rate=sf.PopulationRateMonitor(P),
        dt=DT,
    )


def canonical_queue(queue, counts):
    """The spike queue with each step's entries (the first ``count`` of its row) sorted, and the
    rest of the row, stale entries that no kernel reads, blanked."""
    queue, counts = np.array(queue), np.asarray(counts)
    for row, count in zip(queue.reshape(-1, queue.shape[-1]), counts.reshape(-1)):
        row[:count] = np.sort(row[:count])
        row[count:] = -1
    return queue


def initial(net):
    return dict(v=net.v, ge=net.ge, gi=net.gi)


def run(network, state, duration=DURATION):
    return jax.jit(lambda s: network.run(s, duration=duration))(state)


def spike_pairs(steps, indices):
    """Spikes as a sorted (step, index) array."""
    order = np.lexsort((indices, steps))
    return np.stack([np.asarray(steps)[order], np.asarray(indices)[order]])


def sf_spikes(out):
    i, t = out.spikes.numpy()
    assert int(out.spikes.dropped) == 0
    return spike_pairs(np.rint(t / DT).astype(np.int64), i)


def first_difference(a, b) -> str:
    m = min(a.shape[1], b.shape[1])
    diff = np.nonzero((a[:, :m] != b[:, :m]).any(0))[0]
    k = int(diff[0]) if diff.size else m
    return f"{a.shape[1]} vs {b.shape[1]} spikes; first difference at #{k}: {a[:, k : k + 1].T} vs {b[:, k : k + 1].T}"


def ks_distance(a, b) -> float:
    """The two-sample Kolmogorov-Smirnov statistic."""
    a, b = np.sort(a), np.sort(b)
    grid = np.union1d(a, b)
    fa = np.searchsorted(a, grid, side="right") / a.size
    fb = np.searchsorted(b, grid, side="right") / b.size
    return float(np.abs(fa - fb).max())


def ks_critical(n, m, alpha_coefficient=1.628) -> float:
    """The KS statistic's critical value at the 1% level (c(0.01) = 1.628)."""
    return alpha_coefficient * np.sqrt((n + m) / (n * m))


def run_drawn(name, dtype):
    """The drawn network run by spikeforge for 1 s: (drawn network, its reference, state, out)."""
    net = drawn(name)
    network = spikeforge_network(net)
    state = network.init_state(seed=0, dtype=dtype, P=initial(net))
    return net, reference(name), *run(network, state)


@pytest.mark.parametrize("name", ["cuba", "coba"])
def test_float64_spike_trains_are_the_references(name, device):
    net, ref, new, out = run_drawn(name, jnp.float64)
    ours, theirs = sf_spikes(out), spike_pairs(*ref.spikes["P"])
    assert ours.shape == theirs.shape and (ours == theirs).all(), first_difference(ours, theirs)
    np.testing.assert_array_equal(np.asarray(out.spike_count["P"]), ref.counts["P"])
    # traces at the start of every step, rates per step
    np.testing.assert_allclose(np.asarray(out.v.v), ref.traces[("P", "v")][:, RECORDED], rtol=0, atol=1e-9)
    np.testing.assert_allclose(np.asarray(out.rate.rate), ref.rate["P"] / DT, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(out.rate.t), np.arange(STEPS) * DT, rtol=1e-12)
    for var in ("v", "ge", "gi"):
        np.testing.assert_allclose(np.asarray(new["P"][var]), ref.state["P"][var], rtol=0, atol=1e-9)


@pytest.mark.parametrize("name", ["cuba", "coba"])
def test_float32_rates_and_count_distributions_match_the_references(name, device):
    net, ref, _, out = run_drawn(name, jnp.float32)
    counts = np.asarray(out.spike_count["P"])
    ref_counts = ref.counts["P"]
    assert counts.sum() > 10 * net.n // 2, "the network must be active"
    assert abs(counts.mean() - ref_counts.mean()) <= 0.01 * ref_counts.mean()
    for lo, hi in ((0, net.n_exc), (net.n_exc, net.n)):
        d = ks_distance(counts[lo:hi], ref_counts[lo:hi])
        assert d < ks_critical(hi - lo, hi - lo), (lo, hi, d)


@pytest.mark.parametrize("name", ["cuba", "coba"])
def test_two_half_runs_are_one_run(name, device):
    net = drawn(name)
    network = spikeforge_network(net, every=4)
    state = network.init_state(seed=0, dtype=jnp.float64, P=initial(net))
    whole, out = run(network, state)
    half, out1 = run(network, state, DURATION / 2)
    second, out2 = run(network, half, DURATION / 2)
    for k in whole:
        if not isinstance(whole[k], dict):
            np.testing.assert_array_equal(np.asarray(whole[k]), np.asarray(second[k]), err_msg=k)
            continue
        assert sorted(whole[k]) == sorted(second[k])
        for name in whole[k]:
            a, b = np.asarray(whole[k][name]), np.asarray(second[k][name])
            if name == "spike_queue":
                # A GPU compacts a step's spikes in the order its warps reach the queue: a set.
                a = canonical_queue(a, whole[k]["spike_queue_counts"])
                b = canonical_queue(b, second[k]["spike_queue_counts"])
            np.testing.assert_array_equal(a, b, err_msg=f"{k}.{name}")
    joined = np.concatenate([sf_spikes(out1), sf_spikes(out2)], axis=1)
    np.testing.assert_array_equal(joined, sf_spikes(out))
    # a run records its first step and every 4th after: 4 divides 5000, so the halves' rows are the whole's
    np.testing.assert_array_equal(np.concatenate([out1.v.t, out2.v.t]), np.asarray(out.v.t))
    np.testing.assert_array_equal(np.concatenate([out1.v.v, out2.v.v]), np.asarray(out.v.v))


@pytest.mark.parametrize("name", ["cuba", "coba"])
def test_matches_brian2(name):
    pytest.importorskip("brian2")
    from brian2_networks import run_brian2

    net = drawn(name)
    theirs = run_brian2(net, DURATION, record_v=RECORDED)
    network = spikeforge_network(net)
    state = network.init_state(seed=0, dtype=jnp.float64, P=initial(net))
    _, out = run(network, state)
    ours = sf_spikes(out)
    brian = spike_pairs(theirs["steps"], theirs["indices"])
    assert ours.shape == brian.shape and (ours == brian).all(), first_difference(ours, brian)
    rate_ours, rate_brian = ours.shape[1] / net.n, theirs["counts"].sum() / net.n
    assert abs(rate_ours - rate_brian) <= 0.01 * rate_brian
    np.testing.assert_allclose(np.asarray(out.v.v), theirs["v"], rtol=0, atol=1e-8)
