"""The cooperative grid's one-barrier kernel (codegen::network_kernel::grid: every delivery an
atomic addition in the spike's own step, into accumulators; the state of each block's first
virtual blocks in registers across steps) on a GPU, against the float64 numpy references of
network_references.py: CUBA and COBA (Brian2's examples, network_models.py) without a spike or
rate monitor (they would take the general two-barrier kernel), with a state monitor, 1 s.

float64: the references' spike counts, traces and final state, for the grid barriers (flat, release,
acquire, spread and grouped, ``SPIKEFORGE_GRID_BARRIER``), for a grid of 3 blocks
(``SPIKEFORGE_GRID_BLOCKS``), whose blocks hold 4 of the 32 virtual blocks each in registers and
update the rest from global memory, and for the warp and the balanced deliveries
(``SPIKEFORGE_GRID_DELIVERY``, codegen::network_kernel::grid::balanced); two half runs are one run.
GPU only (skipped without one); the CPU check at the end runs everywhere.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import spikeforge as sf
from network_models import DT, spikeforge_objects
from test_network_benchmarks import DURATION, RECORDED, drawn, reference
from test_network_persistent import GPU, gpu_only

SETTINGS = {
    "default": {},
    "flat": {"SPIKEFORGE_GRID_BARRIER": "flat"},
    "grouped": {"SPIKEFORGE_GRID_BARRIER": "grouped"},
    "release": {"SPIKEFORGE_GRID_BARRIER": "release"},
    "3 blocks": {"SPIKEFORGE_GRID_BLOCKS": "3"},
    "3 blocks, release": {"SPIKEFORGE_GRID_BARRIER": "release", "SPIKEFORGE_GRID_BLOCKS": "3"},
    "acquire": {"SPIKEFORGE_GRID_BARRIER": "acquire"},
    "spread": {"SPIKEFORGE_GRID_BARRIER": "spread"},
    "balanced, spread": {"SPIKEFORGE_GRID_DELIVERY": "balanced", "SPIKEFORGE_GRID_BARRIER": "spread"},
    "warp": {"SPIKEFORGE_GRID_DELIVERY": "warp"},
    "balanced": {"SPIKEFORGE_GRID_DELIVERY": "balanced"},
    "balanced, acquire": {"SPIKEFORGE_GRID_DELIVERY": "balanced", "SPIKEFORGE_GRID_BARRIER": "acquire"},
    "balanced, 3 blocks": {"SPIKEFORGE_GRID_DELIVERY": "balanced", "SPIKEFORGE_GRID_BLOCKS": "3"},
    "balanced, 11 blocks": {"SPIKEFORGE_GRID_DELIVERY": "balanced", "SPIKEFORGE_GRID_BLOCKS": "11"},
}
# network_path::GRID_DELIVERY_BALANCED: the deliveries a run takes without the setting
DEFAULT_DELIVERY = "warp"
GRID_SETTINGS = ("SPIKEFORGE_GRID_BARRIER", "SPIKEFORGE_GRID_BLOCKS", "SPIKEFORGE_GRID_DELIVERY")


def one_barrier_network(net, strategy="grid"):
    P, Ce, Ci = spikeforge_objects(net)
    return sf.Network(P, Ce, Ci, v=sf.StateMonitor(P, "v", record=RECORDED), dt=DT, strategy=strategy)


def run(network, state, duration=DURATION, settings=None):
    names = GRID_SETTINGS + (
        "SPIKEFORGE_CLUSTER_DELIVERY",
        "SPIKEFORGE_CLUSTER_TARGETS",
        "SPIKEFORGE_CLUSTER_ARRIVALS",
        "SPIKEFORGE_AUTO_CLUSTER",
    )
    saved = {k: os.environ.pop(k, None) for k in names}
    os.environ.update(settings or {})
    try:
        new, out = jax.jit(lambda s: network.run(s, duration=duration, progress=False))(state)
        return jax.block_until_ready(new), out
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None)
            if v is not None:
                os.environ[k] = v


def gpu_state(network, net):
    with jax.default_device(GPU):
        state = network.init_state(seed=0, dtype=jnp.float64, P=dict(v=net.v, ge=net.ge, gi=net.gi))
    return jax.device_put(state, GPU)


@pytest.mark.parametrize("name", ["cuba", "coba"])
def test_the_network_takes_the_one_barrier_kernel(name):
    source = one_barrier_network(drawn(name)).source("cuda", dtype="float64")
    assert "One grid barrier a step" in source
    assert "#define SF_SLOTS 4" in source


@gpu_only
@pytest.mark.parametrize("name", ["cuba", "coba"])
def test_auto_takes_the_register_grid_from_4000_neurons(name):
    # network_path::REGISTER_GRID_MIN_NEURONS: the one-barrier grid with every neuron's state in
    # registers beats the resident block there (where auto does not take the cluster:
    # test_network_cluster.py checks where it does)
    net, ref = drawn(name), reference(name)
    assert net.n >= 4000
    network = one_barrier_network(net, strategy="auto")
    new, out = run(network, gpu_state(network, net), settings={"SPIKEFORGE_AUTO_CLUSTER": "off"})
    assert network.last_strategy == "grid"
    assert "register slots" in network.last_path_detail
    np.testing.assert_array_equal(np.asarray(out.spike_count["P"]), ref.counts["P"])


@gpu_only
@pytest.mark.parametrize("setting", list(SETTINGS))
@pytest.mark.parametrize("name", ["cuba", "coba"])
def test_one_barrier_grid_float64_is_the_reference(name, setting):
    net, ref = drawn(name), reference(name)
    network = one_barrier_network(net)
    new, out = run(network, gpu_state(network, net), settings=SETTINGS[setting])
    assert network.last_strategy == "grid"
    balanced = SETTINGS[setting].get("SPIKEFORGE_GRID_DELIVERY", DEFAULT_DELIVERY) == "balanced"
    assert network.last_path_detail.endswith(", balanced deliveries") == balanced, network.last_path_detail
    assert_is_the_reference(net, ref, new, out)


def assert_is_the_reference(net, ref, new, out):
    """A float64 run's spike counts (of an active network), trace and final state are the reference's."""
    counts = np.asarray(out.spike_count["P"])
    assert counts.sum() > 10 * net.n // 2, "the network must be active"
    np.testing.assert_array_equal(counts, ref.counts["P"])
    np.testing.assert_allclose(np.asarray(out.v.v), ref.traces[("P", "v")][:, RECORDED], rtol=0, atol=1e-9)
    for var in ("v", "ge", "gi"):
        np.testing.assert_allclose(np.asarray(new["P"][var]), ref.state["P"][var], rtol=0, atol=1e-9)


@gpu_only
@pytest.mark.parametrize("setting", ["default", "3 blocks", "balanced", "balanced, 3 blocks"])
def test_one_barrier_grid_two_half_runs_are_one_run(setting):
    net = drawn("coba")
    network = one_barrier_network(net)
    state = gpu_state(network, net)
    whole, out = run(network, state, settings=SETTINGS[setting])
    half, out1 = run(network, state, DURATION / 2, settings=SETTINGS[setting])
    second, out2 = run(network, half, DURATION / 2, settings=SETTINGS[setting])
    for var in ("v", "ge", "gi"):
        np.testing.assert_allclose(np.asarray(second["P"][var]), np.asarray(whole["P"][var]), rtol=0, atol=1e-9)
    np.testing.assert_array_equal(np.asarray(second["P"]["lastspike_step"]), np.asarray(whole["P"]["lastspike_step"]))
    halves = np.asarray(out1.spike_count["P"]) + np.asarray(out2.spike_count["P"])
    np.testing.assert_array_equal(halves, np.asarray(out.spike_count["P"]))
    np.testing.assert_array_equal(np.concatenate([out1.v.v, out2.v.v]), np.asarray(out.v.v))
