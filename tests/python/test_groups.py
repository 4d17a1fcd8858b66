"""The shared base of the Python layer (issue 7, item 5): both front ends build a full Group, one
helper binds every FFI target, the state is marshalled from the library's layout, errors live in
one module, and no private jax module is imported."""

import ast
import inspect
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import spikeforge as sf
from model_class_reference import run_reference
from references import hh_rk4, load_spec
from seed000_models import Alpha, HodgkinHuxley, Oizumi
from spikeforge import errors, ffi_primitive, group
from spikeforge.ffi_primitive import FfiCall
from test_models import model_from

SHIM = Path(sf.__file__).resolve().parent


def equation_model():
    return model_from(load_spec("lif_32"))


def public_attributes(obj):
    return sorted(n for n in dir(obj) if not n.startswith("_"))


def test_every_attribute_of_a_neuron_model_works_on_a_class_built_model():
    eq = equation_model()
    cls_model = sf.NeuronModel.from_class(Oizumi, method="rk4")
    assert isinstance(cls_model, sf.NeuronModel) and isinstance(cls_model, sf.Group)
    names = public_attributes(eq)
    assert {"substeps", "state_variables", "parameters", "shared_parameters", "subexpressions", "constants"} <= set(
        names
    )
    for name in names:
        a, b = getattr(eq, name), getattr(cls_model, name)  # no AttributeError
        if a is not None and b is not None:  # threshold, reset, refractory are optional
            assert isinstance(b, type(a)) or (callable(a) and callable(b)), (name, type(a), type(b))
    assert cls_model.substeps == 1 and cls_model.method == "rk4" and cls_model.fast_math is False
    assert (cls_model.threshold, cls_model.reset, cls_model.refractory) == (None, None, None)
    assert cls_model.parameters == () and cls_model.shared_parameters == () and cls_model.subexpressions == ()
    assert cls_model.constants["q"] == 1.07 and cls_model.constants["input"] == 0.0
    assert "euler" in repr(sf.NeuronModel.from_class(Oizumi)) and "Oizumi" in repr(cls_model)
    assert "__global__" in cls_model.source("cuda", per_step=["input"])


def test_class_built_models_take_the_group_keywords(device):
    """constants and rng_seed go through the same code as for equations."""
    faster = sf.NeuronModel.from_class(Oizumi, constants=dict(tauN0=50.0))
    state = faster.init_state(3, dtype=jnp.float64, rng_seed=1, N=40.0)
    new, _ = faster.run(state, dt=1.0, steps=1)
    np.testing.assert_allclose(np.asarray(new["N"]), 40.0 + 121 / 50, rtol=1e-12)


def test_class_built_models_integrate_sub_steps(device):
    """substeps=2 at dt is two steps of dt/2 (the Alpha class without stimulus is a pure ODE)."""
    coarse = sf.NeuronModel.from_class(Alpha, method="rk4", substeps=2)
    fine = sf.NeuronModel.from_class(Alpha, method="rk4")
    assert coarse.substeps == 2
    state = fine.init_state(3, dtype=jnp.float64, s=np.array([0.0, 0.5, 1.0]), u=np.array([1.0, 0.0, -2.0]))
    a, _ = coarse.run(state, dt=0.2, steps=50)
    b, _ = fine.run(state, dt=0.1, steps=100)
    np.testing.assert_allclose(np.asarray(a["s"]), np.asarray(b["s"]), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(np.asarray(a["u"]), np.asarray(b["u"]), rtol=1e-12, atol=1e-14)
    assert not np.allclose(np.asarray(a["s"]), np.asarray(state["s"]))


def test_class_built_model_with_a_threshold(device):
    """An HH class with threshold="v > 0", as a network needs."""
    model = sf.NeuronModel.from_class(HodgkinHuxley, method="rk4", threshold="v > 0", refractory="v > 0")
    n, dt, steps = 8, 0.01, 3000
    current = np.linspace(0.0, 20.0, n)
    init = dict(v=np.full(n, -65.0), n=np.full(n, 0.32), m=np.full(n, 0.05), h=np.full(n, 0.6))
    state = model.init_state(n, dtype=jnp.float64, stimulus=current, **init)
    new, out = jax.jit(lambda s: model.run(s, dt=dt, steps=steps, record=["v"]))(state)
    ref, traces = run_reference(HodgkinHuxley, init, dt, steps, "rk4", per_neuron={"stimulus": current}, record=["v"])
    np.testing.assert_allclose(np.asarray(new["v"]), ref["v"], rtol=1e-9, atol=1e-7)
    v = np.vstack([traces["v"], ref["v"][None]])
    crossings = ((v[:-1] <= 0) & (v[1:] > 0)).sum(axis=0)
    assert crossings.max() >= 2
    np.testing.assert_array_equal(np.asarray(out.spike_count), crossings)


def test_state_comes_from_the_layout():
    """init_state has exactly the entries the layout reads (the time of the state among them);
    run's results go back under the same names."""
    model = equation_model()
    state = model.init_state(5, v=-65.0, I=1.0, tau=np.linspace(5, 10, 5))
    info = model._variant(dt=0.1, dtype="float32", per_neuron=("tau",), per_step=(), record=())
    in_state = {a["name"] for a in info["layout"]["inputs"] if a["role"] != "per_step"}
    assert set(state) == in_state and "t" in state
    # Times are float64 values carried as int32 word pairs (spikeforge.clock).
    assert state["lastspike"].dtype == jnp.int32 and state["lastspike"].shape == (5, 2)
    assert state["t"].shape == (2,) and state["tau"].shape == (5,)
    np.testing.assert_array_equal(np.asarray(sf.clock.value(state["lastspike"])), -np.inf)
    new, _ = model.run(state, dt=0.1, steps=3)
    assert set(new) == set(state) and float(sf.time_of(new)) == 3 * 0.1


def test_one_helper_binds_every_ffi_target():
    """Every spikeforge primitive comes from ffi_primitive, with the same kernel generator on every
    platform and a batching rule."""
    prims = (sf.neuron_run_p, sf.kernels.custom_call_p, sf.reductions.reduce_p)
    for p in prims:
        # (other tests may register extra backends, e.g. test_ffi's forged one)
        assert "spikeforge" in p.available_backends("cpu") and "spikeforge" in p.available_backends("cuda")
    for module in ("neuron.py", "kernels.py", "reductions.py"):
        text = (SHIM / module).read_text()
        assert "ffi_primitive(" in text and "jax.ffi.ffi_call" not in text, module


def test_ffi_attributes_are_int64_strings_or_floats():
    prim = ffi_primitive.ffi_primitive(
        "spikeforge_reduce", lambda **p: FfiCall(attributes=p), batching=ffi_primitive.fold_batch()
    )
    convert = ffi_primitive._attribute
    assert convert("t", "steps", np.uint64(7)).dtype == np.int64
    assert convert("t", "steps", 2**40) == 2**40
    with pytest.raises(OverflowError, match="'steps'=18446744073709551615 does not fit in int64"):
        convert("t", "steps", np.uint64(2**64 - 1))
    with pytest.raises(TypeError, match="is a bool"):
        convert("t", "flag", True)
    assert isinstance(prim, sf.XLACustomKernel)


def test_fold_batch_merges_the_batch_into_the_leading_axis():
    assert ffi_primitive.folded_shape((5,), 3) == (15,)
    assert ffi_primitive.folded_shape((1, 10, 5), 3) == (3, 10, 5)
    assert ffi_primitive.folded_shape((), 3) == (3,)


def test_eager_calls_compile_once_per_parameter_set():
    from spikeforge import primitive

    primitive._jitted.cache_clear()
    x = jnp.arange(10.0)
    for _ in range(3):
        sf.reduce_sum(x)
    sf.reduce_sum(x, segments=(4, 6))
    info = primitive._jitted.cache_info()
    assert (info.misses, info.hits) == (2, 2)


def _imports(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module


def test_no_private_jax_modules():
    for path in SHIM.glob("*.py"):
        private = [m for m in _imports(path) if m.startswith("jax._src") or m.startswith("jaxlib")]
        assert not private, (path.name, private)
        assert "jax._src" not in path.read_text(), path.name


def test_errors_are_defined_in_one_module():
    for name in ("ModelError", "UnitError", "KernelError", "SpikeforgeError"):
        assert getattr(sf, name) is getattr(errors, name)
        assert issubclass(getattr(sf, name), sf.SpikeforgeError)
    defined = []
    for path in SHIM.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and any(
                getattr(b, "id", "").endswith(("Error", "Exception")) for b in node.bases
            ):
                defined.append((path.name, node.name))
    assert {f for f, _ in defined} == {"errors.py"}, defined
    assert issubclass(sf.ModelError, ValueError) and issubclass(sf.KernelError, RuntimeError)


def test_group_is_the_base_of_neuron_models():
    assert sf.NeuronModel.__mro__[1] is group.Group
    assert inspect.signature(sf.PythonModel).parameters.keys() >= {"cls", "method", "fast_math", "kwargs"}
    # HH equations and the HH class run through the same Group.init_state / run.
    spec = load_spec("hh_64")
    model = sf.NeuronModel(spec["equations"], threshold=spec["threshold"], constants=spec["constants"], method="rk4")
    state = model.init_state(4, dtype=jnp.float64, v=-65.0, m=0.05, h=0.6, n=0.32, I=np.linspace(0, 10, 4))
    new, out = model.run(state, dt=0.01, steps=500)
    ref, _ = hh_rk4(np.linspace(0, 10, 4), 0.01, 500, spec["constants"])
    np.testing.assert_allclose(np.asarray(new["v"]), ref[0], rtol=1e-9, atol=1e-9)
