"""The XLA FFI boundary: the targets the library reports and the shim registers, and what the
handlers refuse when a call reaches them directly (a forged or corrupt attribute, a buffer of the
wrong type, a size that wraps), each with an error instead of a wrong answer or a crash.

Issue 8 items 7 and 11 (FFI bullets); every case here was accepted before."""

import hashlib
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import spikeforge as sf
from conftest import check_written
from spikeforge import _native
from spikeforge.neuron import neuron_run_p

TILE = 8192


# -- the registry ------------------------------------------------------------------------------


def test_the_shim_registers_what_the_library_reports():
    report = _native.ffi_targets()
    assert report["api_version"] == [0, 3]
    got = {(t["name"], t["platform"]): t for t in report["targets"]}
    names = (
        "spikeforge_neuron_run",
        "spikeforge_neuron_grad",
        "spikeforge_custom_call",
        "spikeforge_reduce",
        "spikeforge_connect",
        "spikeforge_network_run",
        "spikeforge_network_grad",
    )
    assert set(got) == {(n, p) for n in names for p in ("cpu", "CUDA")}
    for t in report["targets"]:
        assert t["symbol"] == f"sf_{t['name'].removeprefix('spikeforge_')}_{t['platform'].lower()}"
        assert t["stages"] == ["instantiate", "execute"]
        assert hasattr(_native._lib, t["symbol"])
    assert not hasattr(_native, "FFI_TARGETS"), "no hand-kept list in the shim"
    assert got[("spikeforge_neuron_run", "CUDA")]["command_buffer_compatible"]
    assert got[("spikeforge_network_run", "CUDA")]["command_buffer_compatible"]
    # The reduction's partials are a result since issue 8 item 12: nothing allocated per call.
    assert got[("spikeforge_reduce", "CUDA")]["command_buffer_compatible"]
    assert got[("spikeforge_custom_call", "CUDA")]["command_buffer_compatible"]


# -- (a) a key must be the hash of its spec / plan, whatever ran before --------------------------


def _decay(tau):
    return sf.NeuronModel("dv/dt = -v/tau : 1", constants=dict(tau=tau), method="euler")


def _run_with(model, state, spec=None, key=None):
    """`model.run` for 10 steps with the call's `spec` / `key` attributes replaced."""

    def forged(*, outs, spec: str, key: str, steps, record_every, n_inner, **_):
        call = jax.ffi.ffi_call("spikeforge_neuron_run", outs)
        attrs = dict(spec=forged.spec or spec, key=forged.key or key)
        return lambda *ins: call(
            *ins, **attrs, steps=np.int64(steps), record_every=np.int64(record_every), n_inner=np.int64(n_inner)
        )

    forged.spec, forged.key = spec, key
    neuron_run_p.def_kernel("forged", "cpu", forged, asdefault=True)
    try:
        jax.clear_caches()
        return model.run(state, dt=0.1, steps=10)
    finally:
        neuron_run_p.set_default("cpu", "spikeforge")


def test_a_spec_sent_with_another_specs_key_is_refused():
    with jax.default_device(jax.devices("cpu")[0]):
        fast, slow = _decay(1.0), _decay(100.0)
        state = fast.init_state(4, v=1.0)
        ran, _ = fast.run(state, dt=0.1, steps=10)  # the key's kernel is compiled and cached
        np.testing.assert_allclose(np.asarray(ran["v"]), 0.9**10, rtol=1e-5)
        fast_key = fast._variant(dt=0.1, dtype="float32", per_neuron=(), per_step=(), record=())["key"]
        # Before: the cached kernel of `fast` ran for `slow`'s spec (v = 0.9**10 instead of 0.999**10).
        with pytest.raises(Exception, match="attribute 'key' does not match attribute 'spec'"):
            jax.block_until_ready(_run_with(slow, slow.init_state(4, v=1.0), key=fast_key))
        ok, _ = _run_with(slow, slow.init_state(4, v=1.0))
        np.testing.assert_allclose(np.asarray(ok["v"]), 0.999**10, rtol=1e-5)


def test_a_plan_sent_with_another_plans_key_is_refused():
    source = 'extern "C" __global__ void k(const float* x, float* y, long long a, long long b) {}'
    c_twin = (
        "void k(void **a, const int64_t *s) {"
        " float *x = a[0], *y = a[1]; for (int64_t i = 0; i < s[1]; i++) y[i] = x[i] * %s; }"
    )

    def scaling(factor):
        out = jax.ShapeDtypeStruct((4,), jnp.float32)
        return sf.cuda_kernel(source, "k", out, launch_dims=4, sizes=True, c_source=c_twin % factor)

    twice, thrice = scaling("2"), scaling("3")
    with jax.default_device(jax.devices("cpu")[0]):
        x = jnp.arange(4, dtype=jnp.float32)
        np.testing.assert_array_equal(np.asarray(twice(x)), [0, 2, 4, 6])
        avals = ((tuple(x.shape), np.dtype(x.dtype)),)
        _, twice_key, outs = twice._plan(avals, 1)[:3]
        thrice_plan, thrice_key = thrice._plan(avals, 1)[:2]
        assert hashlib.sha256(thrice_plan.encode()).hexdigest() == thrice_key
        call = jax.ffi.ffi_call("spikeforge_custom_call", outs)
        # Before: `twice`'s kernel (cached under its key) ran for `thrice`'s plan.
        with pytest.raises(Exception, match="attribute 'key' is not the SHA-256 of attribute 'plan'"):
            jax.block_until_ready(call(x, plan=thrice_plan, key=twice_key))
        np.testing.assert_array_equal(np.asarray(call(x, plan=thrice_plan, key=thrice_key)[0]), [0, 3, 6, 9])


# -- (b) segment tables whose offsets wrap around 2^64 -------------------------------------------


def _partials(n_tiles: int) -> jax.ShapeDtypeStruct:
    """The reduction's second result: 8 bytes per tile (as int32 pairs)."""
    return jax.ShapeDtypeStruct((2 * max(n_tiles, 1),), jnp.int32)


def test_a_segment_table_that_wraps_around_is_refused():
    """2^14 segments of 2^63 - 8192 elements and a last one: every difference, taken modulo 2^64,
    is a valid length, and the sums come back to 8192 elements in 1 tile. Before, the table was
    accepted and the kernels read far outside x."""
    big = 2**63 - TILE
    count = 2**14
    offsets = [(k * big) % 2**64 for k in range(count + 1)] + [TILE]
    tiles = [(k * (big // TILE)) % 2**64 for k in range(count + 1)] + [1]
    table = np.array([offsets, tiles], dtype=np.uint64).view(np.int64).view(np.int32)
    call = jax.ffi.ffi_call("spikeforge_reduce", (jax.ShapeDtypeStruct((count + 1,), jnp.float32), _partials(1)))
    with jax.default_device(jax.devices("cpu")[0]):
        with pytest.raises(Exception, match="argument 'segments': the segments cover"):
            jax.block_until_ready(
                call(
                    jnp.ones(TILE, jnp.float32),
                    jnp.asarray(table),
                    op="sum",
                    tile=np.int64(TILE),
                    n_tiles=np.int64(1),
                    max_tiles=np.int64(1),
                )
            )
        assert float(sf.reduce_sum(jnp.ones(TILE, jnp.float32))) == TILE


# -- (c) attribute types Python may send ---------------------------------------------------------


@pytest.mark.parametrize("kind", [np.uint64, np.uint32, np.int32, np.int64, int])
def test_steps_of_any_integer_type(device, kind):
    model = _decay(10.0)
    state, out = model.run(model.init_state(3, v=1.0), dt=0.1, steps=kind(5), record=["v"], record_every=kind(2))
    check_written(state["v"], out.traces["v"])
    np.testing.assert_allclose(np.asarray(state["v"]), 0.99**5, rtol=1e-6)
    assert out.traces["v"].shape == (3, 3)


def test_unsigned_attributes_reach_the_handler():
    """The attributes as a caller of the FFI target may send them (numpy unsigned scalars): the
    handlers read any integer type. (The shim itself sends int64 only.)"""
    with jax.default_device(jax.devices("cpu")[0]):
        x = jnp.arange(10, dtype=jnp.float32)
        table = np.array([[0, 10], [0, 1]], np.int64).view(np.int32)
        call = jax.ffi.ffi_call("spikeforge_reduce", (jax.ShapeDtypeStruct((1,), jnp.float32), _partials(1)))
        attrs = dict(op="sum", tile=np.uint64(TILE), n_tiles=np.uint32(1), max_tiles=np.uint8(1))
        got, _ = call(x, jnp.asarray(table), **attrs)
        assert float(got[0]) == 45.0


# -- (d) sizes past what can be allocated --------------------------------------------------------


@pytest.mark.parametrize("n", [2**62, 2**61, 2**60])
def test_a_temp_too_large_to_allocate_is_an_error(n):
    """f64[2**62] is 2**65 bytes: the byte count wrapped, 1 byte was allocated and the kernel
    wrote past it (heap corruption); f64[2**61] (2**64 bytes, 0 when wrapped) hung."""
    with pytest.raises(ValueError, match=r"temps\['tmp'\]: float64\[\d+\] is \d+ bytes, more than one buffer can hold"):
        sf.cuda_callable(
            'extern "C" __global__ void k(const double* x, double* t, double* y) {}',
            inputs=["x"],
            outs={"y": jax.ShapeDtypeStruct((4,), jnp.float64)},
            temps={"tmp": ((n,), jnp.float64)},
            steps=[sf.Launch("k", ["x", "tmp", "y"], launch_dims=4)],
        )


def test_a_forged_plan_with_a_huge_temp_is_refused_by_the_handler():
    """The same temp in a plan sent straight to the FFI target: checked in Rust before anything
    is allocated or launched."""
    plan = {
        "cuda_source": "",
        "c_source": "void k(void **a, const int64_t *s) {}",
        "inputs": [{"name": "x", "dtype": "float64", "shape": [4]}],
        "outputs": [{"name": "y", "dtype": "float64", "shape": [4]}],
        "temps": [{"name": "tmp", "dtype": "float64", "shape": [2**62]}],
        "steps": [{"kernel": "k", "args": [0, 2, 1], "grid": [1, 1, 1], "block": [4, 1, 1]}],
    }
    text = json.dumps(plan)
    key = hashlib.sha256(text.encode()).hexdigest()
    outs = (jax.ShapeDtypeStruct((4,), jnp.float64), jax.ShapeDtypeStruct((4,), jnp.float64))
    call = jax.ffi.ffi_call("spikeforge_custom_call", outs)
    with jax.default_device(jax.devices("cpu")[0]):
        too_large = r"buffer 'tmp': float64\[4611686018427387904\] is larger than any allocation"
        with pytest.raises(Exception, match=too_large):
            jax.block_until_ready(call(jnp.zeros(4), plan=text, key=key))


# -- item 7: buffers against the kernel's declared pointer types ---------------------------------

COUNT_CU = r"""
extern "C" __global__ void count(const unsigned char* spikes, int* total, long long n_s, long long n_t) {
    long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (i < n_s && spikes[i]) atomicAdd(total, 1);
}
extern "C" __global__ void zero(int* total, long long n) { if (threadIdx.x == 0) total[0] = 0; }
"""
COUNT_C = r"""
void zero(void **a, const int64_t *s) { ((int32_t *) a[0])[0] = 0; }
void count(void **a, const int64_t *s) {
    const unsigned char *spikes = a[0]; int32_t *total = a[1];
    for (int64_t i = 0; i < s[0]; i++) total[0] += spikes[i] != 0;
}
"""


def _spike_counter(n):
    return sf.cuda_callable(
        COUNT_CU,
        inputs=["spikes"],
        outs={"total": jax.ShapeDtypeStruct((1,), jnp.int32)},
        steps=[sf.Launch("zero", ["total"], launch_dims=1), sf.Launch("count", ["spikes", "total"], launch_dims=n)],
        c_source=COUNT_C,
        sizes=True,
    )


def test_buffers_must_match_the_declared_pointer_types(device):
    n = 1000
    spikes = np.random.default_rng(0).random(n) < 0.3
    counter = _spike_counter(n)
    for ok in (spikes, spikes.astype(np.uint8)):
        assert int(counter(jnp.asarray(ok))[0]) == int(spikes.sum())
    # Before: float32 spikes ran and returned a count of the non-zero *bytes* of the floats.
    with pytest.raises(
        Exception,
        match=r"step 1 \(kernel 'count'\): parameter 0 \(`const unsigned char\* spikes`\) takes bool or uint8, "
        r"but buffer 'spikes' is float32",
    ):
        jax.block_until_ready(counter(jnp.asarray(spikes, jnp.float32)))
