"""The generated source, as users see it through ``model.source`` / ``sf.generate``."""

import re

import jax.numpy as jnp
import spikeforge as sf
from references import load_spec

HH = load_spec("hh_32")


def hh():
    return sf.NeuronModel(
        HH["equations"], threshold=HH["threshold"], refractory=HH["refractory"], constants=HH["constants"], method="rk4"
    )


def test_cuda_and_c_come_from_one_model():
    model = hh()
    cuda = sf.generate(model, "cuda", dt=0.01)
    c = sf.generate(model, "c", dt=0.01)
    assert "__global__ void sf_neuron_run" in cuda
    assert "#pragma omp simd" in c and "__global__" not in c
    # One IR: the same folded constants appear in both dialects.
    for literal in ("0.055555556f", "54.387f"):
        assert literal in cuda and literal in c


def test_float32_kernels_contain_no_double_arithmetic():
    for target in ("cuda", "c"):
        src = hh().source(target, dt=0.01, dtype=jnp.float32)
        body = src.split("sf_neuron_run", 1)[1]
        assert "double" not in body
        unsuffixed = re.findall(r"(?<![\w.])\d+\.\d*(?:e[-+]?\d+)?(?![\w.])", body)
        assert not unsuffixed, f"float literals without f suffix: {unsuffixed[:5]}"
        assert re.search(r"\bexp\(", body) is None, "f32 kernels call expf, not exp"


def test_common_subexpressions_are_computed_once():
    src = hh().source("cuda", dt=0.01)
    step = src.split("for (int32_t sf_s", 1)[1]
    # 4 RK stages x 6 rate functions with exponentials = 24 distinct exps per step, never more.
    assert len(re.findall(r"expf\(", step)) == 24
