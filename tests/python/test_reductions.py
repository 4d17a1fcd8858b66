"""Reductions (sum, mean, max, min, count) against float64 numpy references, on every platform.

Outputs are poisoned (conftest), so a segment the kernels do not write shows up as a mismatch
(NaN or -1 where the reference has a number; for the NaN of an empty mean, by its bit pattern).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import spikeforge as sf

DTYPES = [np.bool_, np.int32, jnp.float16, jnp.bfloat16, np.float32, np.float64]
DTYPE_IDS = ["bool", "int32", "f16", "bf16", "f32", "f64"]
OPS = {
    "sum": sf.reduce_sum,
    "mean": sf.reduce_mean,
    "max": sf.reduce_max,
    "min": sf.reduce_min,
    "count": sf.count_nonzero,
}
POISON_F32 = 0xFFFFFFFF


def random_input(rng, n, dtype):
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return rng.random(n) < 0.3
    if dtype == np.int32:
        return rng.integers(-1000, 1000, n, dtype=np.int32)
    x = rng.standard_normal(n)
    x[rng.random(n) < 0.05] = 0.0  # zeros, so that count has something to skip
    return x.astype(dtype)


def reference(op, x, offsets):
    """float64 (or exact integer) reference per segment; identities for empty segments."""
    x64 = np.asarray(x).astype(np.float64)
    out = []
    for lo, hi in zip(offsets[:-1], offsets[1:]):
        seg = x64[lo:hi]
        if op == "sum":
            out.append(math.fsum(seg))
        elif op == "mean":
            out.append(math.fsum(seg) / len(seg) if len(seg) else math.nan)
        elif op == "count":
            out.append(np.count_nonzero(seg))
        elif len(seg) == 0:
            out.append(None)
        else:
            out.append(seg.max() if op == "max" else seg.min())
    return out


def expected_dtype(op, dtype):
    spec = jax.ShapeDtypeStruct((1,), dtype)
    fn = {"sum": jnp.sum, "mean": jnp.mean, "count": jnp.count_nonzero}.get(op)
    return np.dtype(dtype) if fn is None else np.dtype(jax.eval_shape(fn, spec).dtype)


def check_against_reference(op, x, got, offsets):
    got = np.asarray(got)
    dtype = np.dtype(x.dtype)
    assert got.dtype == expected_dtype(op, dtype), (op, dtype, got.dtype)
    ref = reference(op, x, offsets)
    lengths = np.diff(offsets)
    for s, (r, g, length) in enumerate(zip(ref, got.reshape(-1), lengths)):
        where = f"{op} of {dtype}, segment {s} (length {length})"
        if r is None:  # max/min of an empty segment: the identity
            if dtype.kind == "f" or dtype in (np.dtype(jnp.float16), np.dtype(jnp.bfloat16)):
                assert float(g) == (-math.inf if op == "max" else math.inf), where
            elif dtype == np.bool_:
                assert bool(g) == (op == "min"), where
            else:
                info = np.iinfo(np.int32)
                assert int(g) == (info.min if op == "max" else info.max), where
            continue
        if isinstance(r, float) and math.isnan(r):
            assert np.isnan(float(g)), where
            if got.dtype == np.float32:
                assert np.asarray(g).view(np.uint32) != POISON_F32, f"{where}: unwritten"
            continue
        if op in ("max", "min", "count") or got.dtype.kind in "iub":
            assert float(g) == float(r), f"{where}: {g} != {r}"
            continue
        # Floats: float32/halves are accumulated in double, so the result is the exact value
        # rounded to the output type (plus one more rounding for halves, which go via float32).
        # float64: the bound of src/codegen/reduction.rs.
        out_eps = float(jnp.finfo(got.dtype).eps)
        abs_sum = math.fsum(np.abs(np.asarray(x[offsets[s] : offsets[s + 1]], np.float64)))
        scale = abs_sum / max(length, 1) if op == "mean" else abs_sum
        if got.dtype == np.float64:
            tol = (600 + length / 8192) * 2.0**-53 * scale
        else:
            tol = out_eps * abs(r) + 1e-12 * scale + float(jnp.finfo(got.dtype).smallest_subnormal)
        assert abs(float(g) - r) <= tol, f"{where}: {g} vs {r} (|err| {abs(float(g) - r):.3g} > {tol:.3g})"


SEGMENTINGS = {
    "all": None,
    "empty-and-odd": lambda n: (0, n // 3, 0, n - n // 3 - n // 7, n // 7, 0),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("n", [1, 31, 1025, 8192 * 2 + 5])
def test_all_ops_dtypes_and_sizes(device, op, dtype, n):
    rng = np.random.default_rng()  # fresh inputs every run: the bounds are rigorous
    x = random_input(rng, n, dtype)
    got = OPS[op](jnp.asarray(x))
    assert np.shape(got) == ()
    check_against_reference(op, x, got, (0, n))
    segments = SEGMENTINGS["empty-and-odd"](n)
    got = OPS[op](jnp.asarray(x), segments=segments)
    assert np.shape(got) == (len(segments),)
    check_against_reference(op, x, got, tuple(np.concatenate([[0], np.cumsum(segments)])))


@pytest.mark.parametrize("n", [10**6 + 3, 10**7])
def test_float32_sum_error_bound_on_large_inputs(device, n):
    """float32 accumulated in double: at most half an ulp from the exact sum (fsum), where
    jnp.sum's float32 tree may be off by more. A shifted input (mean 1) keeps the sum large."""
    rng = np.random.default_rng(n)
    x = (rng.standard_normal(n) + 1.0).astype(np.float32)
    x64 = x.astype(np.float64)
    exact = math.fsum(x64) if n <= 10**6 + 3 else float(np.sum(x64))  # pairwise f64: ~1e-16 rel
    got = float(sf.reduce_sum(jnp.asarray(x)))
    half_ulp = float(np.spacing(np.float32(abs(exact)))) / 2
    assert abs(got - exact) <= half_ulp * 1.001, f"{got} vs {exact}"
    mean = float(sf.reduce_mean(jnp.asarray(x)))
    assert abs(mean - exact / n) <= float(np.spacing(np.float32(abs(exact / n)))) / 2 * 1.001


def test_float64_sum_error_bound_on_large_input(device):
    n = 10**6 + 3
    rng = np.random.default_rng(7)
    x = rng.standard_normal(n) * 1e3
    exact = math.fsum(x)
    got = float(sf.reduce_sum(jnp.asarray(x), segments=(n - 12345, 12345))[0] + 0.0)
    exact_first = math.fsum(x[: n - 12345])
    bound = (600 + n / 8192) * 2.0**-53 * math.fsum(np.abs(x))
    assert abs(got - exact_first) <= bound
    assert abs(float(sf.reduce_sum(jnp.asarray(x))) - exact) <= bound


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_repeated_runs_give_the_same_bits(device, dtype):
    n = 10**6 + 3
    x = jnp.asarray(np.random.default_rng(3).standard_normal(n).astype(dtype))
    segments = (1, 300_000, 0, n - 300_001)
    f = jax.jit(lambda a: (sf.reduce_sum(a, segments), sf.reduce_mean(a), sf.reduce_sum(a)))
    first = [np.asarray(r) for r in f(x)]
    for _ in range(3):
        for a, b in zip(first, f(x)):
            np.testing.assert_array_equal(np.atleast_1d(a).view(np.uint8), np.atleast_1d(np.asarray(b)).view(np.uint8))
    # The same value eagerly (another executable, same kernel and tiling).
    np.testing.assert_array_equal(np.asarray(sf.reduce_sum(x, segments)), first[0])


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("op", list(OPS))
def test_one_pass_and_two_passes_give_the_same_bits(device, op, dtype):
    """On CUDA, segments of at most one tile take one launch, longer ones the two passes: the
    same segments must give the same bits either way (and the right values). Here the same short
    segments (empty, one element, a signed zero, a NaN, a full tile) are reduced alone (one pass)
    and next to a segment of two tiles (two passes)."""
    rng = np.random.default_rng()
    lengths = (0, 1, 1, 1000, 8192, 17)
    short = random_input(rng, sum(lengths), dtype)
    if np.dtype(dtype).kind == "f" or dtype in (jnp.float16, jnp.bfloat16):
        short[1] = -0.0
        short[2] = np.nan
    long = random_input(rng, 8193, dtype)
    offsets = tuple(np.concatenate([[0], np.cumsum(lengths)]))
    alone = OPS[op](jnp.asarray(short), segments=lengths)
    beside = OPS[op](jnp.asarray(np.concatenate([short, long])), segments=lengths + (8193,))
    alone, beside = np.asarray(alone), np.asarray(beside)
    np.testing.assert_array_equal(alone.view(np.uint8), beside[: len(lengths)].view(np.uint8))
    check_against_reference(op, short, alone, offsets)


def test_nan_propagates_through_max_and_min_and_counts(device):
    x = np.array([1.0, np.nan, 3.0, -0.0, 0.0, 2.0], np.float32)
    assert np.isnan(float(sf.reduce_max(jnp.asarray(x))))
    assert np.isnan(float(sf.reduce_min(jnp.asarray(x))))
    np.testing.assert_array_equal(np.asarray(sf.reduce_max(jnp.asarray(x), segments=(1, 2, 3))), [1.0, np.nan, 2.0])
    assert int(sf.count_nonzero(jnp.asarray(x))) == 4  # NaN counts, -0.0 does not (numpy)


def test_int32_sum_wraps_like_jnp_when_the_result_is_int32(device):
    x = np.full(5, 2**30, np.int32)
    with jax.enable_x64(False):
        got = sf.reduce_sum(jnp.asarray(x))
        assert got.dtype == np.int32
        assert int(got) == int(jnp.sum(jnp.asarray(x)))
    got = sf.reduce_sum(jnp.asarray(x))  # x64: int64, exact
    assert got.dtype == np.int64 and int(got) == 5 * 2**30


def test_under_jit_and_vmap(device):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((4, 1000)).astype(np.float32)
    segments = (10, 0, 990)
    batched = jax.jit(jax.vmap(lambda a: sf.reduce_sum(a, segments)))(jnp.asarray(x))
    assert batched.shape == (4, 3)
    for b in range(4):
        check_against_reference("sum", x[b], batched[b], (0, 10, 10, 1000))
    # Batch on another axis, and nested vmap.
    on_axis1 = jax.vmap(lambda a: sf.reduce_max(a), in_axes=1)(jnp.asarray(x.T))
    np.testing.assert_array_equal(np.asarray(on_axis1), x.max(axis=1))
    nested = jax.vmap(jax.vmap(lambda a: sf.reduce_mean(a)))(jnp.asarray(x.reshape(2, 2, 1000)))
    np.testing.assert_allclose(np.asarray(nested), x.reshape(2, 2, 1000).astype(np.float64).mean(-1), rtol=1e-6)
    # A vmapped batch of one element per member, and empty members.
    np.testing.assert_array_equal(np.asarray(jax.vmap(sf.count_nonzero)(jnp.asarray(x[:, :1]))), x[:, 0] != 0)


def test_jvp_and_grad_of_sum_and_mean(device):
    x = jnp.asarray(np.random.default_rng(5).standard_normal(20))
    segments = (5, 0, 15)
    primal, tangent = jax.jvp(lambda a: sf.reduce_sum(a, segments), (x,), (jnp.ones_like(x),))
    np.testing.assert_allclose(np.asarray(tangent), [5.0, 0.0, 15.0])
    weights = jnp.asarray([1.0, 2.0, 3.0])
    g = jax.grad(lambda a: jnp.dot(sf.reduce_mean(a, segments).at[1].set(0.0), weights))(x)
    np.testing.assert_allclose(np.asarray(g), np.r_[np.full(5, 1 / 5), np.full(15, 3 / 15)])
    g = jax.jit(jax.grad(lambda a: sf.reduce_sum(a)))(x)
    np.testing.assert_array_equal(np.asarray(g), np.ones(20))
    # count: zero derivative; max: a clear error.
    assert float(jax.grad(lambda a: sf.count_nonzero(a) * 1.0 + sf.reduce_sum(a))(x)[0]) == 1.0
    with pytest.raises(NotImplementedError, match="reduce_max has no derivative"):
        jax.grad(lambda a: sf.reduce_max(a))(x)


def test_population_rate(device):
    rng = np.random.default_rng(2)
    counts = rng.integers(0, 50, 1000).astype(np.int32)
    segments = (800, 200, 0)
    rate = np.asarray(sf.population_rate(jnp.asarray(counts), 500.0, segments))
    ref = [counts[:800].mean() / 0.5, counts[800:].mean() / 0.5]
    np.testing.assert_allclose(rate[:2], ref, rtol=1e-6)
    assert np.isnan(rate[2])
    assert float(sf.population_rate(jnp.asarray(counts), 500.0)) == pytest.approx(counts.mean() * 2, rel=1e-6)


def test_population_rate_of_a_model_run(device):
    """Excitatory and inhibitory populations of one LIF run: per-population rates from the
    spike counts, under jit, against numpy."""
    lif = sf.NeuronModel(
        "dv/dt = (v_rest - v + I) / tau : volt (unless refractory)\nI : amp",
        threshold="v > v_th",
        reset="v = v_rest",
        refractory=2.0,
        constants=dict(v_rest=-65.0, tau=10.0, v_th=-50.0),
    )
    n_exc, n_inh = 80, 20
    state = lif.init_state(n_exc + n_inh, v=-65.0, I=jnp.linspace(10.0, 40.0, n_exc + n_inh))

    @jax.jit
    def rates(s):
        _, out = lif.run(s, dt=0.1, steps=1000)
        return out.spike_count, sf.population_rate(out.spike_count, 100.0, (n_exc, n_inh))

    counts, r = rates(state)
    counts = np.asarray(counts)
    assert counts.sum() > 0
    np.testing.assert_allclose(np.asarray(r), [counts[:n_exc].mean() * 10, counts[n_exc:].mean() * 10], rtol=1e-6)


def test_state_average_of_float64_state(device):
    v = jnp.asarray(np.random.default_rng(9).uniform(-70, -50, 3001))
    got = sf.reduce_mean(v, offsets=(0, 1000, 3001))
    np.testing.assert_allclose(np.asarray(got), [np.mean(v[:1000]), np.mean(v[1000:])], rtol=1e-14)


def test_multi_dimensional_input_is_read_flat(device):
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    assert float(sf.reduce_sum(jnp.asarray(x))) == 276.0
    np.testing.assert_array_equal(np.asarray(sf.reduce_sum(jnp.asarray(x), (12, 12))), [66.0, 210.0])


def test_empty_input_and_no_segments(device):
    empty = jnp.zeros((0,), jnp.float32)
    assert float(sf.reduce_sum(empty)) == 0.0
    assert np.isnan(float(sf.reduce_mean(empty)))
    assert int(sf.count_nonzero(empty)) == 0
    assert sf.reduce_sum(empty, segments=()).shape == (0,)


def test_bad_input_gives_clear_errors(device):
    x = jnp.ones(10, jnp.float32)
    with pytest.raises(TypeError, match="reduce_sum: x has dtype int64"):
        sf.reduce_sum(jnp.ones(10, jnp.int64))
    with pytest.raises(TypeError, match="reduce_max: x has dtype complex64"):
        sf.reduce_max(jnp.ones(10, jnp.complex64))
    with pytest.raises(ValueError, match="add up to 9 but x has 10 elements"):
        sf.reduce_sum(x, segments=(4, 5))
    with pytest.raises(ValueError, match="lengths must be >= 0"):
        sf.reduce_sum(x, segments=(11, -1))
    with pytest.raises(ValueError, match="offsets must be non-decreasing"):
        sf.reduce_sum(x, offsets=(0, 6, 4, 10))
    with pytest.raises(ValueError, match="start at 0 and end at x.size"):
        sf.reduce_sum(x, offsets=(0, 6))
    with pytest.raises(ValueError, match="not both"):
        sf.reduce_sum(x, segments=(10,), offsets=(0, 10))
    with pytest.raises(TypeError, match="segments must be a 1-D sequence of ints"):
        sf.reduce_sum(x, segments=(4.5, 5.5))
    with pytest.raises(TypeError, match="must be static"):
        jax.jit(lambda a, s: sf.reduce_sum(a, segments=s))(x, jnp.asarray([4, 6]))
    # The process keeps working.
    assert float(sf.reduce_sum(x)) == 10.0


def test_handler_rejects_a_corrupt_segment_table(device):
    """A direct FFI call with a table that does not cover x: an error, not an out-of-bounds read
    (the CPU handler validates; the CUDA kernels clamp every index, see reduction.rs)."""
    if device.platform != "cpu":
        pytest.skip("the GPU handler cannot read the table without a synchronisation; it clamps")
    table = np.array([[0, 20], [0, 1]], np.int64).view(np.int32)
    # Results: out, then the per-tile partials (8 bytes a tile, as int32 pairs).
    call = jax.ffi.ffi_call(
        "spikeforge_reduce", (jax.ShapeDtypeStruct((1,), jnp.float32), jax.ShapeDtypeStruct((2,), jnp.int32))
    )

    def attrs(op="sum", tile=8192):
        return dict(op=op, tile=np.int64(tile), n_tiles=np.int64(1), max_tiles=np.int64(1))

    with pytest.raises(Exception, match="the segments cover 20 elements but x has 10"):
        call(jnp.ones(10, jnp.float32), jnp.asarray(table), **attrs())
    with pytest.raises(Exception, match='unknown reduction "avg"'):
        call(jnp.ones(20, jnp.float32), jnp.asarray(table), **attrs(op="avg"))
    with pytest.raises(Exception, match="built for tiles of 4096"):
        call(jnp.ones(20, jnp.float32), jnp.asarray(table), **attrs(tile=4096))
    np.testing.assert_array_equal(np.asarray(call(jnp.ones(20, jnp.float32), jnp.asarray(table), **attrs())[0]), [20.0])
    # Partials too small for the tiles: refused before any kernel runs.
    short = jax.ffi.ffi_call(
        "spikeforge_reduce", (jax.ShapeDtypeStruct((1,), jnp.float32), jax.ShapeDtypeStruct((1,), jnp.int32))
    )
    with pytest.raises(Exception, match=r"result 'partials': expected int32\[2\], got int32\[1\]"):
        short(jnp.ones(20, jnp.float32), jnp.asarray(table), **attrs())
