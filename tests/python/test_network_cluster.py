"""The one-barrier kernel as one thread-block cluster (``strategy="cluster"``,
codegen::network_kernel::grid::cluster: every neuron's state in a block's register slots, the
step's arrivals accumulated in the target block's shared memory through distributed shared
memory, one cluster barrier a step) on a GPU with clusters (compute capability 9.0 or newer),
against the float64 numpy references of network_references.py: CUBA and COBA (Brian2's examples,
network_models.py, 4000 neurons) without a spike or rate monitor, with a state monitor, 1 s.

float64: the references' spike counts, traces and final state, in a cluster of 16 blocks of 256
threads (a virtual block each: the default on the H200) and of 8 (``SPIKEFORGE_GRID_BLOCKS``: 2
register slots each), with the deliveries by the warp (the default where every arrival is counted)
and by the block (``SPIKEFORGE_CLUSTER_DELIVERY=block``; their targets from the target cache, or
``SPIKEFORGE_CLUSTER_TARGETS=global``), the arrivals
counted (the default: both networks' weights are one value a projection) and added as floats
(``SPIKEFORGE_CLUSTER_ARRIVALS=add``); the spike queue the
last step leaves is the register grid's; two half runs are one run. GPU only (skipped without
one, and without clusters); the CPU checks at the end run everywhere.
"""

import numpy as np
import pytest
import spikeforge as sf
from network_models import DT, spikeforge_objects
from test_network_benchmarks import DURATION, drawn, reference
from test_network_one_barrier import assert_is_the_reference, gpu_state, one_barrier_network, run
from test_network_persistent import GPU

CLUSTERS = GPU is not None and float(getattr(GPU, "compute_capability", "0")) >= 9.0
cluster_only = pytest.mark.skipif(not CLUSTERS, reason="needs a GPU with thread-block clusters (sm_90)")
# the cluster's width, and its deliveries: by the warp where every arrival is counted (the default
# for these networks), by the block with the target cache or with every target from global memory
# (SPIKEFORGE_CLUSTER_DELIVERY=block), by the block where floats are added (that case's default)
SETTINGS = {
    "16 blocks": {},
    "8 blocks": {"SPIKEFORGE_GRID_BLOCKS": "8"},
    "16 blocks, by the block": {"SPIKEFORGE_CLUSTER_DELIVERY": "block"},
    "8 blocks, by the block": {"SPIKEFORGE_GRID_BLOCKS": "8", "SPIKEFORGE_CLUSTER_DELIVERY": "block"},
    "16 blocks, by the block, global targets": {
        "SPIKEFORGE_CLUSTER_DELIVERY": "block",
        "SPIKEFORGE_CLUSTER_TARGETS": "global",
    },
    "16 blocks, arrivals added": {"SPIKEFORGE_CLUSTER_ARRIVALS": "add"},
    "8 blocks, by the warp, arrivals added": {
        "SPIKEFORGE_GRID_BLOCKS": "8",
        "SPIKEFORGE_CLUSTER_DELIVERY": "warp",
        "SPIKEFORGE_CLUSTER_ARRIVALS": "add",
    },
}
DELIVERIES = {
    "16 blocks": "deliveries by the warp, target cache of",
    "8 blocks": "deliveries by the warp, target cache of",
    "16 blocks, by the block": "deliveries by the block, target cache of",
    "8 blocks, by the block": "deliveries by the block, target cache of",
    "16 blocks, by the block, global targets": "deliveries by the block, targets in global memory",
    "16 blocks, arrivals added": "deliveries by the block, target cache of",
    "8 blocks, by the warp, arrivals added": "deliveries by the warp",
}


def test_the_one_barrier_network_has_the_cluster_kernel():
    source = one_barrier_network(drawn("coba")).source("cuda", dtype="float64")
    assert "One cluster barrier a step" in source
    assert "barrier.cluster.arrive.release" in source and "mapa.u64" in source


def test_cluster_is_a_strategy():
    assert "cluster" in sf.Network.STRATEGIES


@cluster_only
@pytest.mark.parametrize("setting", list(SETTINGS))
@pytest.mark.parametrize("name", ["cuba", "coba"])
def test_cluster_float64_is_the_reference(name, setting):
    net, ref = drawn(name), reference(name)
    network = one_barrier_network(net, strategy="cluster")
    new, out = run(network, gpu_state(network, net), settings=SETTINGS[setting])
    assert network.last_strategy == "cluster"
    blocks = 16 if setting.startswith("16 blocks") else 8
    assert f"1 cluster of {blocks} blocks" in network.last_path_detail, network.last_path_detail
    assert DELIVERIES[setting] in network.last_path_detail, network.last_path_detail
    # both networks' weights are one value a projection: the cluster counts their arrivals
    # (an integer reduction a synapse), unless asked to add them as floats
    arrivals = "arrivals added" if setting.endswith("arrivals added") else "arrivals counted"
    assert arrivals in network.last_path_detail, network.last_path_detail
    assert_is_the_reference(net, ref, new, out)


@cluster_only
@pytest.mark.parametrize("name", ["cuba", "coba"])
def test_auto_takes_the_cluster_where_it_may(name):
    # network_path: auto takes the cluster from 4000 to 4096 neurons where AUTO_TAKES_CLUSTER or
    # SPIKEFORGE_AUTO_CLUSTER=on, a virtual block a block, and says so
    net, ref = drawn(name), reference(name)
    network = one_barrier_network(net, strategy="auto")
    new, out = run(network, gpu_state(network, net), settings={"SPIKEFORGE_AUTO_CLUSTER": "on"})
    assert network.last_strategy == "cluster"
    assert "1 cluster of 16 blocks" in network.last_path_detail, network.last_path_detail
    assert_is_the_reference(net, ref, new, out)


@cluster_only
@pytest.mark.parametrize("name", ["cuba", "coba"])
def test_auto_takes_the_cluster_by_default_where_it_counts_every_arrival(name):
    # network_path::AUTO_TAKES_CLUSTER: at 4000 neurons whose projections each add one value,
    # auto takes the cluster (measured faster than the register grid); with the arrivals added
    # as floats (SPIKEFORGE_CLUSTER_ARRIVALS=add) it keeps the register grid
    net, ref = drawn(name), reference(name)
    network = one_barrier_network(net, strategy="auto")
    new, out = run(network, gpu_state(network, net))
    assert network.last_strategy == "cluster"
    assert "arrivals counted" in network.last_path_detail, network.last_path_detail
    assert_is_the_reference(net, ref, new, out)
    new, out = run(network, gpu_state(network, net), settings={"SPIKEFORGE_CLUSTER_ARRIVALS": "add"})
    assert network.last_strategy == "grid"
    assert_is_the_reference(net, ref, new, out)


@cluster_only
def test_cluster_leaves_the_register_grids_spike_queue_and_two_half_runs_are_one_run():
    net = drawn("coba")
    network = one_barrier_network(net, strategy="cluster")
    grid = one_barrier_network(net, strategy="grid")
    state = gpu_state(network, net)
    whole, out = run(network, state)
    by_grid, _ = run(grid, state)
    # the queue's one slot holds the last step's spikes in the order the warps' atomics took:
    # the same set, and the same count
    counts, grid_counts = (np.asarray(s["P"]["spike_queue_counts"]).ravel() for s in (whole, by_grid))
    np.testing.assert_array_equal(counts, grid_counts)
    queued, grid_queued = (np.sort(np.asarray(s["P"]["spike_queue"]).ravel()[: counts[0]]) for s in (whole, by_grid))
    np.testing.assert_array_equal(queued, grid_queued)
    half, out1 = run(network, state, DURATION / 2)
    second, out2 = run(network, half, DURATION / 2)
    for var in ("v", "ge", "gi"):
        np.testing.assert_allclose(np.asarray(second["P"][var]), np.asarray(whole["P"][var]), rtol=0, atol=1e-9)
    np.testing.assert_array_equal(np.asarray(second["P"]["lastspike_step"]), np.asarray(whole["P"]["lastspike_step"]))
    halves = np.asarray(out1.spike_count["P"]) + np.asarray(out2.spike_count["P"])
    np.testing.assert_array_equal(halves, np.asarray(out.spike_count["P"]))


@cluster_only
def test_cluster_refuses_a_network_without_the_one_barrier_kernel():
    net = drawn("coba")
    P, Ce, Ci = spikeforge_objects(net)
    # a spike monitor takes the general two-barrier kernel, which has no cluster variant
    network = sf.Network(P, Ce, Ci, spikes=sf.SpikeMonitor(P, 100_000), dt=DT, strategy="cluster")
    with pytest.raises(Exception, match="no cluster kernel"):
        run(network, gpu_state(network, net))
    # The failed call leaves the runtime token of its ordered effect (the monitor's report)
    # failed, and every later `jax.effects_barrier()` in the process would raise this error again
    # (test_network_features.py's monitor tests did): JAX forgets it only on request.
    from jax._src import dispatch

    dispatch.runtime_tokens.clear()


@pytest.mark.skipif(GPU is None or CLUSTERS, reason="needs a GPU without thread-block clusters")
def test_cluster_without_clusters_is_a_clear_error():
    net = drawn("coba")
    network = one_barrier_network(net, strategy="cluster")
    with pytest.raises(Exception, match="compute capability 9.0"):
        run(network, gpu_state(network, net))
