"""User kernels from source (sf.cuda_kernel, sf.cuda_callable), the registration API
(sf.XLACustomKernel, sf.brainevent) and their errors.

Every kernel has a CUDA source and a C twin, so each numeric test runs on every platform the
`device` fixture offers (the C twin on the CPU, the CUDA kernel on a GPU) against a float64 numpy
reference on fresh random inputs, with outputs poisoned by the handler (conftest). Every CUDA
source here and in tutorials/02_custom_kernels.ipynb is compiled with NVRTC (no GPU needed).
"""

import json
import re
import sys
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import spikeforge as sf
from conftest import check_written
from kernel_sources import (
    ALL_CUDA,
    BLOCK_SUM_C,
    BLOCK_SUM_CU,
    ELEMENTWISE_C,
    ELEMENTWISE_CU,
    GRID_C,
    GRID_CU,
    LEAKY_C,
    LEAKY_CU,
    PIPELINE_C,
    PIPELINE_CU,
    M,
    N,
)

ROOT = Path(__file__).resolve().parents[2]


def rand(shape, seed=None, dtype=np.float32, scale=3.0):
    return (np.random.default_rng(seed).normal(size=shape) * scale).astype(dtype)


def f32(n):
    return jax.ShapeDtypeStruct((n,) if isinstance(n, int) else n, jnp.float32)


def elementwise(name, n, **kw):
    kw.setdefault("launch_dims", n)
    return sf.cuda_kernel(ELEMENTWISE_CU, name, f32(n), c_source=ELEMENTWISE_C, sizes=True, **kw)


# -- element-wise kernels ------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 1000, 4099])
def test_relu_and_sigmoid_match_numpy(device, n):
    x = rand(n)
    x64 = x.astype(np.float64)
    relu = elementwise("relu", n, threads_per_block=128)
    sigmoid = elementwise("sigmoid", n)
    r, s = relu(jnp.asarray(x)), sigmoid(jnp.asarray(x))
    check_written(r, s)
    np.testing.assert_array_equal(np.asarray(r), np.maximum(x64, 0.0).astype(np.float32))
    np.testing.assert_allclose(np.asarray(s), 1.0 / (1.0 + np.exp(-x64)), rtol=2e-6, atol=1e-7)


def test_explicit_grid_and_block(device):
    n = 1024
    x = rand(n)
    relu = sf.cuda_kernel(ELEMENTWISE_CU, "relu", f32(n), grid=4, block=256, c_source=ELEMENTWISE_C, sizes=True)
    r = relu(jnp.asarray(x))
    check_written(r)
    np.testing.assert_array_equal(np.asarray(r), np.maximum(x, 0.0))


def test_multiple_outputs(device):
    n = 777
    x = rand(n)
    split = sf.cuda_kernel(ELEMENTWISE_CU, "split", [f32(n), f32(n)], launch_dims=n, c_source=ELEMENTWISE_C, sizes=True)
    pos, neg = split(jnp.asarray(x))
    check_written(pos, neg)
    np.testing.assert_array_equal(np.asarray(pos), np.maximum(x, 0))
    np.testing.assert_array_equal(np.asarray(neg), np.minimum(x, 0))


def test_float64_under_jit_with_several_inputs(device):
    n = 513
    a, x, y = rand(1, dtype=np.float64), rand(n, dtype=np.float64), rand(n, dtype=np.float64)
    axpy = sf.cuda_kernel(
        ELEMENTWISE_CU,
        "axpy64",
        jax.ShapeDtypeStruct((n,), jnp.float64),
        launch_dims=n,
        c_source=ELEMENTWISE_C,
        sizes=True,
    )
    f = jax.jit(lambda a, x, y: axpy(a, x, y) * 2.0)
    for _ in range(3):  # later calls reuse the compiled kernel
        r = f(jnp.asarray(a), jnp.asarray(x), jnp.asarray(y))
    check_written(r)
    # The GPU fuses a*x + y into one FMA (one rounding), numpy rounds twice: the two differ by a
    # few ulps of the terms, not of the (possibly cancelling) sum.
    scale = 2.0 * (np.abs(a[0] * x) + np.abs(y))
    assert np.all(np.abs(np.asarray(r) - 2.0 * (a[0] * x + y)) <= 4 * np.finfo(np.float64).eps * scale)


def test_2d_and_3d_launch_dims(device):
    a, b = rand((M, N)), rand((M, N))
    hadamard = sf.cuda_kernel(GRID_CU, "hadamard", f32((M, N)), launch_dims=(M, N), c_source=GRID_C)
    c = hadamard(jnp.asarray(a), jnp.asarray(b))
    check_written(c)
    np.testing.assert_allclose(np.asarray(c), a.astype(np.float64) * b, rtol=1e-6)
    a3, b3 = rand((5, 9, 17)), rand((5, 9, 17))
    add3d = sf.cuda_kernel(GRID_CU, "add3d", f32((5, 9, 17)), launch_dims=(5, 9, 17), c_source=GRID_C)
    c3 = jax.jit(add3d)(jnp.asarray(a3), jnp.asarray(b3))
    check_written(c3)
    np.testing.assert_allclose(np.asarray(c3), a3.astype(np.float64) + b3, rtol=1e-6)


def test_launch_config_matches_the_documented_blocks():
    assert sf.launch_config(1000) == ((4,), (256,))
    assert sf.launch_config(1000, 128) == ((8,), (128,))
    assert sf.launch_config(10) == ((1,), (10,))
    assert sf.launch_config((37, 50)) == ((3, 4), (16, 16))
    assert sf.launch_config((5, 9, 17)) == ((1, 2, 3), (5, 8, 8))


def test_dynamic_shared_memory_block_sum(device):
    n = 5000
    x = rand(n)
    n_blocks = -(-n // 256)
    block_sum = sf.cuda_kernel(
        BLOCK_SUM_CU, "block_sum", f32(n_blocks), launch_dims=n, shared_mem=256 * 4, c_source=BLOCK_SUM_C, sizes=True
    )
    s = block_sum(jnp.asarray(x))
    check_written(s)
    want = np.add.reduceat(x.astype(np.float64), np.arange(0, n, 256))
    np.testing.assert_allclose(np.asarray(s), want, rtol=1e-5, atol=1e-4)


def test_poisoning_catches_an_unwritten_element(device):
    # Launching one thread short leaves the last element as the handler's poison (NaN).
    n = 300
    relu = sf.cuda_kernel(ELEMENTWISE_CU, "relu", f32(n), launch_dims=n, c_source=ELEMENTWISE_C, sizes=True)
    short = sf.cuda_kernel(
        "#define relu relu_short\n" + ELEMENTWISE_CU.replace("if (i < n)", "if (i < n - 1)", 1),
        "relu_short",
        f32(n),
        launch_dims=n,
        c_source=ELEMENTWISE_C.replace("i < sizes[1]", "i < sizes[1] - 1", 1).replace(
            "void relu(", "void relu_short(", 1
        ),
        sizes=True,
    )
    x = jnp.asarray(rand(n))
    check_written(relu(x))
    r = np.asarray(short(x))
    assert np.isnan(r[-1]) and not np.isnan(r[:-1]).any()
    with pytest.raises(AssertionError, match="unwritten"):
        check_written(r)


# -- multi-kernel callables ----------------------------------------------------------------------


def abs_callable(n):
    return sf.cuda_callable(
        PIPELINE_CU,
        inputs=["x"],
        outs={"out": f32(n)},
        temps={"tmp": f32(n)},
        steps=[
            sf.Launch("square", ["x", "tmp"], launch_dims=n),
            sf.Launch("root", ["tmp", "out"], launch_dims=n, threads_per_block=128),
        ],
        c_source=PIPELINE_C,
        sizes=True,
    )


def test_abs_as_two_kernels_with_a_temp(device):
    n = 2049
    x = rand(n)
    out = jax.jit(abs_callable(n))(jnp.asarray(x))
    check_written(out)
    np.testing.assert_allclose(np.asarray(out), np.abs(x.astype(np.float64)), rtol=1e-6)


def lif_callable(n, source=PIPELINE_CU, c_source=PIPELINE_C, **kw):
    return sf.cuda_callable(
        source,
        inputs=["v", "v_th", "v_rest"],
        outs={"spikes": jax.ShapeDtypeStruct((n,), jnp.int32), "v_out": f32(n)},
        steps=[
            sf.Launch("detect", ["v", "v_th", "spikes"], launch_dims=n),
            sf.Launch("reset", ["v", "spikes", "v_rest", "v_out"], launch_dims=n),
        ],
        c_source=c_source,
        sizes=True,
        vmap_method="sequential",
        **kw,
    )


def test_lif_detect_and_reset(device):
    n = 10_000
    v = np.random.default_rng().uniform(-75.0, -50.0, n).astype(np.float32)
    v_th, v_rest = np.array([-55.0], np.float32), np.array([-70.0], np.float32)
    spikes, v_out = lif_callable(n)(jnp.asarray(v), jnp.asarray(v_th), jnp.asarray(v_rest))
    check_written(spikes, v_out)
    want = v.astype(np.float64) >= -55.0
    assert 0 < want.sum() < n
    np.testing.assert_array_equal(np.asarray(spikes), want.astype(np.int32))
    np.testing.assert_array_equal(np.asarray(v_out), np.where(want, np.float32(-70.0), v))


def test_vmap_sequential_and_broadcast_all(device):
    n, b = 300, 4
    v = np.random.default_rng().uniform(-75.0, -50.0, (b, n)).astype(np.float32)
    v_th = np.array([[-55.0], [-60.0], [-65.0], [-52.0]], np.float32)
    rest = np.array([-70.0], np.float32)
    spikes, v_out = jax.vmap(lif_callable(n), in_axes=(0, 0, None))(
        jnp.asarray(v), jnp.asarray(v_th), jnp.asarray(rest)
    )
    check_written(spikes, v_out)
    want = v >= v_th
    np.testing.assert_array_equal(np.asarray(spikes), want.astype(np.int32))
    np.testing.assert_array_equal(np.asarray(v_out), np.where(want, np.float32(-70.0), v))

    relu = elementwise("relu", n, vmap_method="broadcast_all")
    x = rand((3, b, n))
    r = jax.jit(jax.vmap(jax.vmap(relu)))(jnp.asarray(x))
    check_written(r)
    np.testing.assert_array_equal(np.asarray(r), np.maximum(x, 0))
    r = jax.vmap(relu, in_axes=1, out_axes=1)(jnp.asarray(x[0].T.copy()))
    np.testing.assert_array_equal(np.asarray(r), np.maximum(x[0].T, 0))


def test_vmap_without_a_declared_rule_is_an_error():
    relu = elementwise("relu", 8)
    with pytest.raises(ValueError, match="cannot be vmapped: pass vmap_method="):
        jax.vmap(relu)(jnp.zeros((2, 8), jnp.float32))
    with pytest.raises(ValueError, match="needs sizes=True"):
        sf.cuda_kernel(ELEMENTWISE_CU, "relu", f32(8), launch_dims=8, vmap_method="broadcast_all")
    with pytest.raises(ValueError, match="needs 1-D launch_dims"):
        sf.cuda_kernel(ELEMENTWISE_CU, "relu", f32(8), grid=1, block=8, sizes=True, vmap_method="broadcast_all")
    with pytest.raises(ValueError, match="vmap_method must be one of"):
        elementwise("relu", 8, vmap_method="expand_dims")


# -- in place: input_output_aliases ------------------------------------------------------------


def loop_body_hlo(fn, *args) -> str:
    """The computation holding the custom call, as XLA compiled ``fn`` (the loop body)."""
    text = jax.jit(fn).lower(*args).compile().as_text()
    at = text.index('custom_call_target="spikeforge_custom_call"')
    start = text.rfind("\n%", 0, at)
    return text[start : text.index("\n}", at)]


def test_in_place_kernel_in_a_loop_needs_no_copy(device):
    """A kernel updating its input in place, carried by a fori_loop: the same numbers as the plain
    kernel and numpy, and XLA's loop body holds no copy of the carried array (the plain kernel's
    does: its output is a new buffer that must be copied back into the loop's)."""
    n, calls = 1000, 20
    x = rand(n, scale=1.0)
    plain = elementwise("sigmoid", n)
    in_place = elementwise("sigmoid", n, input_output_aliases={0: 0})

    def loop(kernel):
        return lambda x: jax.lax.fori_loop(0, calls, lambda _, x: kernel(x), x)

    want = x.astype(np.float64)
    for _ in range(calls):
        want = 1.0 / (1.0 + np.exp(-want))
    got = jax.jit(loop(in_place))(jnp.asarray(x))
    check_written(got)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(jax.jit(loop(plain))(jnp.asarray(x))))
    assert " copy(" in loop_body_hlo(loop(plain), jnp.asarray(x))
    assert " copy(" not in loop_body_hlo(loop(in_place), jnp.asarray(x))


def test_in_place_leaves_the_callers_array_alone(device):
    n = 257
    x = jnp.asarray(rand(n))
    before = np.asarray(x).copy()
    r = elementwise("relu", n, input_output_aliases={0: 0})(x)
    np.testing.assert_array_equal(np.asarray(r), np.maximum(before, 0.0))
    np.testing.assert_array_equal(np.asarray(x), before)


def test_in_place_callable_by_name_and_poisoning_of_the_other_outputs(device):
    """v_out written over v (by name), under jit and vmap; spikes is still a fresh, poisoned
    buffer, so a kernel that leaves an element unwritten is still caught."""
    n = 3000
    v = np.random.default_rng().uniform(-75.0, -50.0, n).astype(np.float32)
    v_th, v_rest = np.array([-55.0], np.float32), np.array([-70.0], np.float32)

    step = lif_callable(n, input_output_aliases={"v": "v_out"})
    spikes, v_out = jax.jit(step)(jnp.asarray(v), jnp.asarray(v_th), jnp.asarray(v_rest))
    check_written(spikes, v_out)
    want = v.astype(np.float64) >= -55.0
    assert 0 < want.sum() < n
    np.testing.assert_array_equal(np.asarray(spikes), want.astype(np.int32))
    np.testing.assert_array_equal(np.asarray(v_out), np.where(want, np.float32(-70.0), v))
    batch = np.stack([v, v[::-1]])
    _, vb = jax.vmap(step, in_axes=(0, None, None))(jnp.asarray(batch), jnp.asarray(v_th), jnp.asarray(v_rest))
    np.testing.assert_array_equal(np.asarray(vb), np.where(batch >= -55.0, np.float32(-70.0), batch))
    # detect one thread short: the last spike flag keeps the poison.
    short_cu = PIPELINE_CU.replace("if (i < n) spikes[i]", "if (i < n - 1) spikes[i]", 1)
    short_c = PIPELINE_C.replace("i < sizes[0]; i++) spikes[i]", "i < sizes[0] - 1; i++) spikes[i]", 1)
    assert short_cu != PIPELINE_CU and short_c != PIPELINE_C
    short = lif_callable(n, short_cu, short_c, input_output_aliases={"v": "v_out"})
    spikes, _ = short(jnp.asarray(v), jnp.asarray(v_th), jnp.asarray(v_rest))
    with pytest.raises(AssertionError, match="unwritten"):
        check_written(spikes)


def test_in_place_errors():
    n = 16
    with pytest.raises(ValueError, match=r"input 'input 0' \(float32\[17\]\) cannot be updated in place as output "):
        elementwise("relu", n, input_output_aliases={0: 0})(jnp.ones(17, jnp.float32))
    with pytest.raises(ValueError, match="names input 1, but the call has 1 inputs"):
        elementwise("relu", n, input_output_aliases={1: 0})(jnp.ones(n, jnp.float32))
    with pytest.raises(ValueError, match="output 1 does not exist"):
        elementwise("relu", n, input_output_aliases={0: 1})
    with pytest.raises(ValueError, match="unknown input 'w'"):
        sf.cuda_callable(
            PIPELINE_CU,
            inputs=["x"],
            outs={"out": f32(n)},
            steps=[sf.Launch("square", ["x", "out"], launch_dims=n)],
            input_output_aliases={"w": "out"},
        )
    with pytest.raises(ValueError, match="one input only"):
        sf.cuda_callable(
            PIPELINE_CU,
            inputs=["x", "y"],
            outs={"out": f32(n)},
            steps=[sf.Launch("square", ["x", "out"], launch_dims=n)],
            input_output_aliases={"x": "out", "y": "out"},
        )
    with pytest.raises(TypeError, match="a mapping input -> output"):
        elementwise("relu", n, input_output_aliases=[(0, 0)])


# -- bad launch configurations and sources: Python exceptions, and the process keeps working -----


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(grid=1, block=8, launch_dims=8), "not both"),
        (dict(grid=1), "go together"),
        (dict(), "give a launch configuration"),
        (dict(launch_dims=0), "zero threads"),
        (dict(grid=(1, 0), block=8), "zero threads"),
        (dict(grid=1, block=0), "zero threads"),
        (dict(launch_dims=8, threads_per_block=0), "threads_per_block must be in"),
        (dict(grid=1, block=(64, 32)), "2048 threads"),
        (dict(launch_dims=(1, 2, 3, 4)), "1 to 3 dimensions"),
        (dict(launch_dims=8, shared_mem=1 << 20), "more than any CUDA device"),
        (dict(launch_dims=8, shared_mem=-1), "shared_mem must be"),
    ],
)
def test_bad_launch_configurations(kw, match):
    with pytest.raises(ValueError, match=match):
        sf.cuda_kernel(ELEMENTWISE_CU, "relu", f32(8), c_source=ELEMENTWISE_C, **kw)
    with pytest.raises(ValueError, match=match):
        sf.Launch("relu", ["x", "out"], **kw)


def test_bad_names_and_callable_descriptions():
    with pytest.raises(ValueError, match="kernel 'relux' does not appear in the CUDA source"):
        sf.cuda_kernel(ELEMENTWISE_CU, "relux", f32(8), launch_dims=8)
    with pytest.raises(ValueError, match="C function 'relu_c'"):
        sf.cuda_kernel(ELEMENTWISE_CU, "relu", f32(8), launch_dims=8, c_source=ELEMENTWISE_C, c_name="relu_c")
    mk = lambda **kw: sf.cuda_callable(  # noqa: E731
        PIPELINE_CU,
        **{
            "inputs": ["x"],
            "outs": {"out": f32(8)},
            "temps": {"tmp": f32(8)},
            "steps": [
                sf.Launch("square", ["x", "tmp"], launch_dims=8),
                sf.Launch("root", ["tmp", "out"], launch_dims=8),
            ],
            **kw,
        },
    )
    with pytest.raises(ValueError, match="unknown buffer 'tmq'"):
        mk(steps=[sf.Launch("square", ["x", "tmq"], launch_dims=8)])
    with pytest.raises(ValueError, match=r"outputs \['out'\] are not an argument"):
        mk(steps=[sf.Launch("square", ["x", "tmp"], launch_dims=8)])
    with pytest.raises(ValueError, match="must be distinct"):
        mk(temps={"x": f32(8)})
    with pytest.raises(TypeError, match="takes 1 inputs"):
        mk()(jnp.zeros(8), jnp.zeros(8))


def _still_works():
    x = rand(64)
    r = elementwise("relu", 64)(jnp.asarray(x))
    np.testing.assert_array_equal(np.asarray(r), np.maximum(x, 0))


def test_declared_inputs_are_checked_by_name():
    relu = elementwise("relu", 8, inputs=[f32(8)])
    with pytest.raises(ValueError, match=r"input 'input 0' has shape \(9,\), expected \(8,\)"):
        relu(jnp.zeros(9, jnp.float32))
    with pytest.raises(TypeError, match="input 'input 0' has dtype int32, expected float32"):
        relu(jnp.zeros(8, jnp.int32))
    with pytest.raises(TypeError, match="takes 1 inputs"):
        relu(jnp.zeros(8, jnp.float32), jnp.zeros(8, jnp.float32))
    lif = sf.cuda_callable(
        PIPELINE_CU,
        inputs={"v": f32(8), "v_th": ((1,), np.float32), "v_rest": f32(1)},
        outs={"spikes": jax.ShapeDtypeStruct((8,), jnp.int32), "v_out": f32(8)},
        steps=[
            sf.Launch("detect", ["v", "v_th", "spikes"], launch_dims=8),
            sf.Launch("reset", ["v", "spikes", "v_rest", "v_out"], launch_dims=8),
        ],
        c_source=PIPELINE_C,
        sizes=True,
    )
    with pytest.raises(TypeError, match="input 'v_th' has dtype float64, expected float32"):
        lif(jnp.zeros(8, jnp.float32), jnp.zeros(1, jnp.float64), jnp.zeros(1, jnp.float32))
    spikes, _ = lif(jnp.full(8, -50.0, jnp.float32), jnp.full(1, -55.0, jnp.float32), jnp.zeros(1, jnp.float32))
    np.testing.assert_array_equal(np.asarray(spikes), np.ones(8, np.int32))


def test_c_errors_reach_python_and_the_process_keeps_working():
    # The name is in the source (a comment), but no such function: the loader's error.
    missing = sf.cuda_kernel(
        ELEMENTWISE_CU,
        "relu",
        f32(16),
        launch_dims=16,
        sizes=True,
        c_source="/* relu */ void other(void **a, const int64_t *s) {}",
    )
    with jax.default_device(jax.devices("cpu")[0]):
        x = jnp.asarray(rand(16))
        with pytest.raises(Exception, match="kernel `relu` not found"):
            jax.block_until_ready(missing(x))
        _still_works()
        broken = sf.cuda_kernel(
            ELEMENTWISE_CU,
            "relu",
            f32(16),
            launch_dims=16,
            sizes=True,
            c_source="void relu(void **a, const int64_t *s) { int x = ; }",
        )
        with pytest.raises(Exception, match=r"C compiler failed(.|\n)*c_source:1"):
            jax.block_until_ready(broken(x))
        _still_works()
        no_c = sf.cuda_kernel(ELEMENTWISE_CU, "relu", f32(16), launch_dims=16, sizes=True)
        with pytest.raises(Exception, match="has no C source"):
            jax.block_until_ready(no_c(x))
        _still_works()


def test_cuda_errors_reach_python_and_the_process_keeps_working(device):
    if device.platform == "cpu":
        pytest.skip("CUDA launch errors need a GPU (the NVRTC error path is tested by test_nvrtc_log_in_the_error)")
    x = jnp.asarray(rand(16))
    bad = sf.cuda_kernel(
        ELEMENTWISE_CU.replace("fmaxf(x[i]", "fmaxf(undefined_name[i]"), "relu", f32(16), launch_dims=16, sizes=True
    )
    with pytest.raises(Exception, match="undefined_name"):
        jax.block_until_ready(bad(x))
    _still_works()
    # In the text, but not a kernel of the compiled module (only in a comment).
    absent = sf.cuda_kernel("// ghost\n" + ELEMENTWISE_CU, "ghost", f32(16), launch_dims=16, sizes=True)
    with pytest.raises(Exception, match="kernel `ghost` not found"):
        jax.block_until_ready(absent(x))
    _still_works()
    # More threads than this kernel's registers allow is a launch error, not a crash.
    heavy = sf.cuda_kernel(ELEMENTWISE_CU, "relu", f32(16), grid=1, block=1024, sizes=True, shared_mem=227 * 1024)
    try:
        jax.block_until_ready(heavy(x))
    except Exception as e:  # the device's own limit (on H100 227 KiB is allowed, then it runs)
        assert "shared" in str(e) or "threads" in str(e), e
    _still_works()


def _nvrtc_or_skip():
    try:
        sf.compile_cuda('extern "C" __global__ void k(float* x) { x[0] = 1.0f; }', ["k"])
    except sf.KernelError as e:
        if e.kind == "nvrtc_missing":
            pytest.skip(str(e))
        raise


def test_nvrtc_log_in_the_error():
    _nvrtc_or_skip()
    with pytest.raises(sf.KernelError, match=r"(?s)undefined_name.*is undefined") as info:
        sf.compile_cuda(ELEMENTWISE_CU.replace("fmaxf(x[i]", "fmaxf(undefined_name[i]"), ["relu"])
    assert info.value.kind == "compile"
    with pytest.raises(sf.KernelError, match="kernel `ghost` is not in the compiled source") as info:
        sf.compile_cuda(ELEMENTWISE_CU, ["relu", "ghost"])
    assert info.value.kind == "kernel_not_found"
    ptx = elementwise("relu", 8).check_cuda()
    assert ".entry relu(" in ptx


def notebook_cuda_sources():
    """Every triple-quoted string with a __global__ kernel in the code cells of tutorial 02."""
    nb = json.loads((ROOT / "tutorials" / "02_custom_kernels.ipynb").read_text())
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    return [s for s in re.findall(r'r?"""(.*?)"""', code, flags=re.S) if "__global__" in s]


def test_every_cuda_source_compiles_with_nvrtc():
    _nvrtc_or_skip()
    for name, (source, kernels) in ALL_CUDA.items():
        for fast_math in (False, True):
            ptx = sf.compile_cuda(source, kernels, fast_math=fast_math)
            assert all(f".entry {k}(" in ptx for k in kernels), name
    sources = notebook_cuda_sources()
    assert len(sources) >= 4
    for source in sources:
        kernels = re.findall(r'extern "C" __global__ void (\w+)', source)
        assert kernels, source
        sf.compile_cuda(source, kernels)


# -- registration: XLACustomKernel generators with keyword arguments, brainevent -----------------


def leaky_generator(*, outs, alpha=0.01, **_):
    """A kernel generator: receives the call's keyword arguments, returns a function of the inputs."""
    n = outs[0].shape[0]
    define = f"#define ALPHA {float(alpha)!r}f\n"
    return sf.cuda_kernel(
        define + LEAKY_CU, "leaky_relu", outs[0], launch_dims=n, c_source=define + LEAKY_C, sizes=True
    )


leaky_relu_op = sf.XLACustomKernel("test_leaky_relu")
leaky_relu_op.def_cpu_kernel(leaky_generator)
leaky_relu_op.def_gpu_kernel(leaky_generator)


def test_generator_receives_keyword_arguments(device):
    x = rand(300)
    for alpha in (0.1, 0.25):
        f = jax.jit(
            lambda x, alpha: leaky_relu_op(x, outs=jax.ShapeDtypeStruct(x.shape, x.dtype), alpha=alpha),
            static_argnames="alpha",
        )
        r = f(jnp.asarray(x), alpha=alpha)
        check_written(r)
        np.testing.assert_allclose(np.asarray(r), np.where(x > 0, x, np.float32(alpha) * x), rtol=1e-6)
    # outs given as a list: a list comes back (brainevent's and the seed's style).
    (r,) = leaky_relu_op(jnp.asarray(x), outs=[jax.ShapeDtypeStruct(x.shape, x.dtype)], alpha=0.5)
    np.testing.assert_allclose(np.asarray(r), np.where(x > 0, x, 0.5 * x), rtol=1e-6)


def test_registration_errors_are_clear():
    x = jnp.ones(8, jnp.float32)
    out = jax.ShapeDtypeStruct((8,), jnp.float32)
    with pytest.raises(TypeError, match="'alpha' is a traced value.*static_argnames"):
        jax.jit(lambda x, a: leaky_relu_op(x, outs=out, alpha=a))(x, 0.1)
    with pytest.raises(TypeError, match="must be hashable"):
        leaky_relu_op(x, outs=out, alpha=[0.1])
    op = sf.XLACustomKernel("test_gpu_only")
    op.def_kernel("spikeforge", "gpu", leaky_generator)
    assert op.available_backends("cuda") == ["spikeforge"] and op.defaults == {"cuda": "spikeforge"}
    with jax.default_device(jax.devices("cpu")[0]):
        with pytest.raises(NotImplementedError, match="no kernel registered for platform 'cpu'; kernels exist for"):
            jax.jit(lambda x: op(x, outs=out))(x)
    with pytest.raises(ValueError, match="unknown platform 'tpu'"):
        op.def_kernel("spikeforge", "tpu", leaky_generator)
    with pytest.raises(ValueError, match="no 'numba' kernel"):
        op.set_default("gpu", "numba")

    def failing(**kw):
        raise RuntimeError("generator failed")

    op.def_kernel("broken", "cpu", failing)
    with jax.default_device(jax.devices("cpu")[0]):
        with pytest.raises(RuntimeError, match="generator failed") as info:
            jax.jit(lambda x: op(x, outs=out))(x)
    assert any("'broken' kernel of primitive 'test_gpu_only'" in n for n in info.value.__notes__)


def test_backends_and_defaults(device):
    op = sf.XLACustomKernel("test_two_backends")
    op.def_cpu_kernel(leaky_generator)
    op.def_gpu_kernel(leaky_generator)

    def negate(*, outs, **_):
        return lambda x: -x

    op.def_kernel("jax", "cpu", negate)
    op.def_kernel("jax", "gpu", negate)
    x = jnp.asarray(rand(16))
    out = jax.ShapeDtypeStruct((16,), jnp.float32)
    np.testing.assert_allclose(np.asarray(op(x, outs=out, alpha=0.5)), np.where(x > 0, x, 0.5 * x), rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(op(x, outs=out, backend="jax")), -np.asarray(x))
    op.set_default(device.platform if device.platform == "cpu" else "gpu", "jax")
    np.testing.assert_array_equal(np.asarray(op(x, outs=out)), -np.asarray(x))


def test_kernel_generator_turns_keyword_arguments_into_defines(device):
    generator = sf.kernel_generator(LEAKY_CU, "leaky_relu", c_source=LEAKY_C, defines=("alpha",))
    op = sf.XLACustomKernel("test_generated_leaky_relu")
    op.def_cpu_kernel(generator)
    op.def_gpu_kernel(generator)
    x = rand((4, 25))  # launch_dims defaults to the element count of the first output
    f = jax.jit(
        lambda x, alpha: op(x, outs=jax.ShapeDtypeStruct(x.shape, x.dtype), alpha=alpha), static_argnames="alpha"
    )
    for alpha in (0.5, 2):
        r = f(jnp.asarray(x), alpha=alpha)
        check_written(r)
        np.testing.assert_allclose(np.asarray(r), np.where(x > 0, x, alpha * x.astype(np.float64)), rtol=1e-6)
    # A float keyword becomes a literal of the output's type: the same bits as a float32 slope.
    r = f(jnp.asarray(x), alpha=0.1)
    np.testing.assert_array_equal(np.asarray(r), np.where(x > 0, x, np.float32(0.1) * x))
    with pytest.raises(TypeError, match=r"needs the keyword arguments \['alpha'\]"):
        op(jnp.asarray(x), outs=jax.ShapeDtypeStruct(x.shape, x.dtype))
    with pytest.raises(TypeError, match="cannot become a #define"):
        op(jnp.asarray(x), outs=jax.ShapeDtypeStruct(x.shape, x.dtype), alpha="a")


def test_brainevent_register_without_brainevent(monkeypatch):
    monkeypatch.setitem(sys.modules, "brainevent", None)  # makes `import brainevent` fail
    assert not sf.brainevent.available()
    with pytest.raises(ImportError, match="pip install brainevent"):
        sf.brainevent.register(object(), cpu=leaky_generator)


class FakeBraineventPrimitive:
    """What brainevent 0.3's XLACustomKernel offers for registration."""

    def __init__(self):
        self.kernels, self.defaults = {}, {}

    def def_kernel(self, backend, platform, kg, asdefault=False):
        self.kernels.setdefault(platform, {})[backend] = kg
        if asdefault or platform not in self.defaults:
            self.defaults[platform] = backend


def test_brainevent_register_with_a_fake_brainevent(monkeypatch, device):
    monkeypatch.setitem(sys.modules, "brainevent", types.ModuleType("brainevent"))
    prim = FakeBraineventPrimitive()
    prim.def_kernel("numba", "cpu", None)
    sf.brainevent.register(prim, cpu=leaky_generator, gpu=leaky_generator)
    assert prim.kernels["cpu"]["spikeforge"] is leaky_generator and prim.kernels["gpu"]["spikeforge"] is leaky_generator
    assert prim.defaults == {"cpu": "numba", "gpu": "spikeforge"}
    sf.brainevent.register(prim, cpu=leaky_generator, asdefault=True)
    assert prim.defaults["cpu"] == "spikeforge"
    # What brainevent's lowering does with the generator: call it with the call's kwargs.
    x = rand(64)
    kernel = prim.kernels["cpu"]["spikeforge"](outs=(jax.ShapeDtypeStruct((64,), jnp.float32),), alpha=0.2)
    r = jax.jit(kernel)(jnp.asarray(x))
    check_written(r)
    np.testing.assert_allclose(np.asarray(r), np.where(x > 0, x, np.float32(0.2) * x), rtol=1e-6)
    with pytest.raises(TypeError, match="expected a brainevent XLACustomKernel"):
        sf.brainevent.register(object(), cpu=leaky_generator)
    with pytest.raises(ValueError, match="cpu=, gpu= or both"):
        sf.brainevent.register(prim)
