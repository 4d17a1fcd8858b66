"""``spikeforge_network_run`` through XLA, at the FFI level (the user API is tested in
test_network*.py of the network package): the handler's buffer checks, starting the run from the
state, the kernels on each platform against a float64 numpy reference, deterministic mode from
run to run, poisoned outputs, batches, and bad input (clear errors, no crash).

On a GPU these tests run the CUDA handler and kernels; under compute-sanitizer:
``compute-sanitizer --tool memcheck python -m pytest tests/python/test_network_ffi.py -k gpu``
(and ``--tool racecheck``).
"""

from __future__ import annotations

import ctypes
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import PLATFORMS, check_written
from spikeforge import _native

_native._lib.sf_network_compile.argtypes = [ctypes.c_char_p]
_native._lib.sf_network_compile.restype = ctypes.c_void_p


def network_compile(spec: dict) -> dict:
    return _native._take_json(_native._lib.sf_network_compile(json.dumps(spec).encode()))


def operands(compiled: dict, values: dict, nb: int = 1) -> list:
    """The inputs of the layout, from ``values`` by ``owner.name`` (one member's values are
    repeated over the batch), zeros otherwise (``lastspike_step``: never spiked)."""
    real = np.float64 if compiled["dtype"] == "float64" else np.float32
    n_syn = {
        a["owner"]: len(values.get(f"{a['owner']}.targets", []))
        for a in compiled["layout"]["inputs"]
        if a["name"] == "targets"
    }
    out = []
    for a in compiled["layout"]["inputs"]:
        key = f"{a['owner']}.{a['name']}" if a["owner"] else a["name"]
        shape = tuple(n_syn[a["owner"]] if d == "n_syn" else d for d in a["shape"])
        dtype = real if a["elem"] == "real" else np.dtype(a["elem"])
        if key in values:
            x = np.asarray(values[key], dtype)
            x = x.reshape(shape) if x.size == int(np.prod(shape)) else x.reshape((nb,) + shape)
        elif a["name"] == "lastspike_step":
            x = np.full(shape, -(10**9), dtype)
        else:
            x = np.zeros(shape, dtype)
        if a["batched"] and x.shape == shape:
            x = np.broadcast_to(x, (nb,) + shape).copy()
        out.append(jnp.asarray(x))
    return out


def run(compiled: dict, ops: list, steps: int, alias: bool = False) -> dict:
    """Runs the network; returns every result by ``owner.name``. With ``alias``, each state
    result is the buffer of its input (XLA's ``input_output_aliases``, as donated state is)."""
    real = jnp.float64 if compiled["dtype"] == "float64" else jnp.float32
    nb = ops[0].shape[0]
    n_syn = {}
    for a, x in zip(compiled["layout"]["inputs"], ops):
        if a["name"] == "targets":
            n_syn[a["owner"]] = x.shape[0]
    spec = json.loads(compiled["spec"])
    every = {m["name"]: m.get("every", 1) for m in spec.get("monitors", []) if m["kind"] == "state"}
    structs, keys = [], []
    for a in compiled["layout"]["outputs"] + compiled["layout"]["scratch"]:
        sized = {"n_syn": n_syn.get(a["owner"]), "steps": steps, "records": -(-steps // every.get(a["owner"], 1))}
        dims = [sized.get(d, d) for d in a["shape"]]
        shape = ((nb,) if a["batched"] else ()) + tuple(dims)
        structs.append(jax.ShapeDtypeStruct(shape, real if a["elem"] == "real" else jnp.dtype(a["elem"])))
        keys.append(f"{a['owner']}.{a['name']}" if a["owner"] else a["name"])
    aliases = {}
    if alias:
        outs = compiled["layout"]["outputs"]
        for k, a in enumerate(compiled["layout"]["inputs"]):
            for r, o in enumerate(outs):
                if (o["owner"], o["name"], o["role"]) == (a["owner"], a["name"], a["role"]):
                    aliases[k] = r
    call = jax.ffi.ffi_call("spikeforge_network_run", structs, input_output_aliases=aliases)
    fn = jax.jit(
        lambda *xs: call(*xs, spec=compiled["spec"], key=compiled["key"], steps=np.int64(steps)),
        donate_argnums=tuple(aliases),
    )
    results = fn(*([jnp.array(x, copy=True) for x in ops] if alias else ops))
    return dict(zip(keys, results))


def spikes(r: dict, monitor: str, b: int = 0) -> list:
    n = int(r[f"{monitor}.count"][b])
    pairs = zip(np.asarray(r[f"{monitor}.t_step"][b][:n]).tolist(), np.asarray(r[f"{monitor}.i"][b][:n]).tolist())
    return sorted(pairs)


# -- a current-based network and its float64 reference -------------------------------------------

CUBA_EQ = (
    "dv/dt = (ge + gi - (v - El))/taum : volt (unless refractory)\ndge/dt = -ge/taue : volt\ndgi/dt = -gi/taui : volt"
)
CONST = dict(El=-49.0, taum=20.0, taue=5.0, taui=10.0, Vt=-50.0, Vr=-60.0)


def cuba_network(n=40, n_e=32, seed=3, p=0.2, deterministic=False, shared=False):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        row = []
        for j in np.flatnonzero(rng.random(n) < p):
            w = 1.5 + rng.random() if i < n_e else -(4.0 + 4.0 * rng.random())
            if shared:
                w = 1.25 if i < n_e else -4.5
            row.append((int(j), w))
            if rng.random() < 0.05:
                row.append((int(j), w if shared else 0.5 * w))  # a multapse
        rows.append(row)
    model = "" if shared else "w : volt"
    spec = {
        "dt": 0.1,
        "dtype": "float64",
        "deterministic": deterministic,
        "groups": [
            {
                "kind": "neuron",
                "name": "P",
                "n": n,
                "model": {
                    "equations": CUBA_EQ,
                    "threshold": "v > Vt",
                    "reset": "v = Vr",
                    "refractory": 5.0,
                    "method": "euler",
                    "constants": CONST,
                },
            }
        ],
        "projections": [
            {
                "name": "Ce",
                "source": "P",
                "source_range": [0, n_e],
                "target": "P",
                "model": model,
                "on_pre": "ge += 1.25" if shared else "ge += w",
                "delay": 0.1,
            },
            {
                "name": "Ci",
                "source": "P",
                "source_range": [n_e, n],
                "target": "P",
                "model": model,
                "on_pre": "gi -= 4.5" if shared else "gi += w",
                "delay": 0.1,
            },
        ],
        "monitors": [
            {"kind": "spike", "name": "sp", "source": "P", "capacity": 20000},
            {"kind": "rate", "name": "rate", "source": "P"},
            {"kind": "state", "name": "vm", "source": "P", "variables": ["v", "ge"], "record": [0, 5, 9], "every": 3},
        ],
    }
    values = {}
    for name, sl in (("Ce", range(n_e)), ("Ci", range(n_e, n))):
        offsets, targets, weights = [0], [], []
        for i in sl:
            targets += [j for j, _ in rows[i]]
            weights += [w for _, w in rows[i]]
            offsets.append(len(targets))
        values[f"{name}.row_offsets"] = offsets
        values[f"{name}.targets"] = targets
        if not shared:
            values[f"{name}.w"] = weights
    values["P.v"] = -60.0 + 12.0 * np.random.default_rng(seed + 1).random(n)
    return spec, values, rows


def cuba_reference(rows, v0, n_e, steps):
    """Brian2's schedule in float64: update (Euler, refractoriness from the start of the step),
    threshold, reset, then the spikes of the previous step delivered (delay 1 step) in ascending
    neuron order, synapses in row order."""
    dt, el, taum, taue, taui, vt, vr = 0.1, -49.0, 20.0, 5.0, 10.0, -50.0, -60.0
    n = len(rows)
    v, ge, gi = np.array(v0, float), np.zeros(n), np.zeros(n)
    last = np.full(n, -(10**9))
    out, previous, trace = [], [], []
    for k in range(steps):
        if k % 3 == 0:
            trace.append(v[[0, 5, 9]].copy())
        fired = []
        for i in range(n):
            active = last[i] <= k - 50
            nv = v[i] + dt * ((ge[i] + gi[i] - (v[i] - el)) / taum) if active else v[i]
            ge[i] += dt * (-ge[i] / taue)
            gi[i] += dt * (-gi[i] / taui)
            v[i] = nv
            if active and v[i] > vt:
                fired.append(i)
                last[i] = k
                v[i] = vr
                out.append((k, i))
        for i in previous:
            for j, w in rows[i]:
                if i < n_e:
                    ge[j] += w
                else:
                    gi[j] += w
        previous = fired
    return out, v, np.array(trace)


def test_a_current_based_network_matches_its_float64_reference(device):
    spec, values, rows = cuba_network()
    compiled = network_compile(spec)
    assert compiled["ok"], compiled
    steps = 1500
    r = run(compiled, operands(compiled, values), steps)
    want, v, trace = cuba_reference(rows, values["P.v"], 32, steps)
    assert len(want) > 100
    assert spikes(r, "sp") == want
    np.testing.assert_allclose(np.asarray(r["P.v"][0]), v, atol=1e-9)
    np.testing.assert_allclose(np.asarray(r["vm.v"][0]), trace, atol=1e-9)
    check_written(r["vm.v"], r["vm.ge"], r["rate.rate"], r["P.v"], r["P.spike_queue_counts"])
    counts = np.bincount([k for k, _ in want], minlength=steps)
    np.testing.assert_allclose(np.asarray(r["rate.rate"][0]), counts / (40 * 0.1), rtol=1e-12)
    # Unused monitor entries are -1, counted ones valid.
    n = int(r["sp.count"][0])
    assert (np.asarray(r["sp.i"][0][n:]) == -1).all() and int(r["sp.dropped"][0]) == 0


def test_two_runs_continue_one_another_and_a_batch_runs_each_member(device):
    spec, values, _ = cuba_network(seed=5)
    compiled = network_compile(spec)
    ops = operands(compiled, values)
    whole = run(compiled, ops, 600)
    first = run(compiled, ops, 300)
    state = dict(ops=list(ops))
    ins = compiled["layout"]["inputs"]
    for k, a in enumerate(ins):
        key = f"{a['owner']}.{a['name']}" if a["owner"] else a["name"]
        if key in first:
            state["ops"][k] = first[key]
    state["ops"][0] = ops[0] + 300
    second = run(compiled, state["ops"], 300)
    assert spikes(first, "sp") + spikes(second, "sp") == spikes(whole, "sp")
    for key in ("P.v", "P.ge", "P.lastspike_step", "P.spike_queue", "P.spike_queue_counts"):
        np.testing.assert_array_equal(np.asarray(second[key]), np.asarray(whole[key]), err_msg=key)
    # The state buffers given to XLA as the results' (donated state): the same run.
    aliased = run(compiled, ops, 600, alias=True)
    assert spikes(aliased, "sp") == spikes(whole, "sp")
    np.testing.assert_array_equal(np.asarray(aliased["P.v"]), np.asarray(whole["P.v"]))
    # Two members: the second starts from other potentials.
    other = dict(values)
    other["P.v"] = values["P.v"] - 3.0
    batch = dict(values)
    batch["P.v"] = np.stack([values["P.v"], other["P.v"]])
    both = run(compiled, operands(compiled, batch, nb=2), 600)
    alone = run(compiled, operands(compiled, other), 600)
    assert spikes(both, "sp", 0) == spikes(whole, "sp")
    assert spikes(both, "sp", 1) == spikes(alone, "sp")


@pytest.mark.parametrize("shared", [True, False])
def test_deterministic_mode_is_the_same_from_run_to_run(device, shared):
    spec, values, rows = cuba_network(n=200, n_e=160, p=0.1, deterministic=True, shared=shared, seed=9)
    spec["dtype"] = "float32"
    compiled = network_compile(spec)
    delivery = {p["name"]: p["delivery"] for p in compiled["projections"]}
    assert delivery == ({"Ce": "counted", "Ci": "counted"} if shared else {"Ce": "ordered", "Ci": "ordered"})
    ops = operands(compiled, values)
    a = run(compiled, ops, 800)
    b = run(compiled, ops, 800)
    assert int(a["sp.count"][0]) > 50
    for key in ("P.v", "P.ge", "P.gi", "sp.i", "sp.t_step", "P.spike_queue", "vm.v"):
        assert np.asarray(a[key]).tobytes() == np.asarray(b[key]).tobytes(), key
    # In order: the monitor's spikes ascend by (step, index).
    n = int(a["sp.count"][0])
    pairs = list(zip(np.asarray(a["sp.t_step"][0][:n]).tolist(), np.asarray(a["sp.i"][0][:n]).tolist()))
    assert pairs == sorted(pairs)


def test_a_reset_overwrites_what_a_zero_delay_delivery_wrote(device):
    spec = {
        "dt": 0.1,
        "dtype": "float64",
        "groups": [
            {"kind": "spike_generator", "name": "G", "n": 1, "n_spikes": 2},
            {
                "kind": "neuron",
                "name": "T",
                "n": 1,
                "model": {
                    "equations": "dc/dt = 1/ms : 1\nv : 1",
                    "threshold": "c > 0.45",
                    "reset": "c = 0\nv = -1",
                    "method": "euler",
                },
            },
        ],
        "projections": [
            {"name": "Now", "source": "G", "target": "T", "on_pre": "v += 10"},
            {"name": "Next", "source": "G", "target": "T", "on_pre": "v += 100", "delay": 0.1},
        ],
        "monitors": [{"kind": "state", "name": "vm", "source": "T", "variables": ["v"], "record": True}],
    }
    compiled = network_compile(spec)
    assert compiled["groups"][1]["late_reset"]
    values = {
        "G.indices": [0, 0],
        "G.steps": [4, 7],
        "Now.row_offsets": [0, 1],
        "Now.targets": [0],
        "Next.row_offsets": [0, 1],
        "Next.targets": [0],
    }
    r = run(compiled, operands(compiled, values), 12)
    np.testing.assert_array_equal(np.asarray(r["vm.v"][0][:, 0]), [0, 0, 0, 0, 0, -1, 99, 99, 109, 209, -1, -1])


def test_bad_input_is_a_clear_error_and_the_process_keeps_working(device):
    spec, values, _ = cuba_network(n=20, n_e=16)
    compiled = network_compile(spec)
    ops = operands(compiled, values)
    call = jax.ffi.ffi_call("spikeforge_network_run", [jax.ShapeDtypeStruct((1, 20), jnp.float64)])
    with pytest.raises(Exception, match="does not match"):
        jax.jit(lambda *xs: call(*xs, spec=compiled["spec"], key="0" * 64, steps=np.int64(5)))(*ops)
    with pytest.raises(Exception, match="steps"):
        run(compiled, ops, 0)
    bad = list(ops)
    at = [a["name"] for a in compiled["layout"]["inputs"]].index("v")
    bad[at] = ops[at].astype(jnp.float32)
    with pytest.raises(Exception, match=r"P\.v"):
        # A GPU reports a handler's error when the result is awaited.
        jax.block_until_ready(run(compiled, bad, 5))
    with pytest.raises(Exception, match="invalid network spec"):
        jax.jit(lambda *xs: call(*xs, spec="{", key="0", steps=np.int64(5)))(*ops)
    # Connectivity pointing outside the target or past the synapses is skipped, never written.
    broken = dict(values)
    broken["Ce.targets"] = list(values["Ce.targets"])
    broken["Ce.targets"][0] = 10**6
    broken["Ce.row_offsets"] = list(values["Ce.row_offsets"])
    broken["Ce.row_offsets"][-1] = 10**7
    r = run(compiled, operands(compiled, broken), 200)
    assert np.isfinite(np.asarray(r["P.v"])).all()
    # And the process still runs a network.
    assert spikes(run(compiled, ops, 200), "sp") is not None


def test_errors_name_the_object_and_field():
    spec, _, _ = cuba_network(n=20, n_e=16)
    spec["projections"][0]["on_pre"] = "gee += w"
    out = network_compile(spec)
    assert not out["ok"]
    assert out["error"]["rendered"].startswith("in Synapses 'Ce', on_pre, line 1, column 1: unknown name 'gee'")
    spec["projections"][0]["on_pre"] = "ge_post += w"
    spec["projections"][0]["model"] = "w : 1\ndx/dt = -x/(5*ms) + N/ms : 1 (clock-driven)"
    out = network_compile(spec)
    assert "not supported yet (issue 11)" in out["error"]["message"]
    assert out["error"]["field"] == "Synapses 'Ce', model"


@pytest.mark.skipif("gpu" not in PLATFORMS, reason="needs a GPU")
def test_cpu_and_gpu_draw_the_same_random_numbers_and_spikes():
    """Poisson groups and inputs draw the same numbers on both platforms (counter-based Philox,
    correctly rounded binomial inversion), so the counts agree exactly; a float64 network's
    spikes agree too."""
    spec = {
        "dt": 0.1,
        "dtype": "float32",
        "groups": [
            {"kind": "poisson", "name": "pg", "n": 500, "rates": "0.02 + 0.01*sin(t/ms)"},
            {"kind": "neuron", "name": "T", "n": 300, "model": {"equations": "dy/dt = 0/ms : 1\nx : 1\nz : 1"}},
        ],
        "poisson_inputs": [
            {"name": "few", "target": "T", "variable": "x", "n": 7, "rate": 0.3, "weight": 1.0},
            {"name": "many", "target": "T", "variable": "z", "n": 3000, "rate": 2.0, "weight": 1.0},
        ],
        "monitors": [{"kind": "spike", "name": "sp", "source": "pg", "capacity": 100000}],
    }
    compiled = network_compile(spec)
    results = {}
    for platform in ("cpu", "gpu"):
        with jax.default_device(jax.devices(platform)[0]):
            results[platform] = run(compiled, operands(compiled, {"rng_seed": [11]}), 400)
    for key in ("pg.spike_count", "T.x", "T.z"):
        np.testing.assert_array_equal(np.asarray(results["cpu"][key]), np.asarray(results["gpu"][key]), err_msg=key)
    assert spikes(results["cpu"], "sp") == spikes(results["gpu"], "sp")
    net, values, _ = cuba_network(n=120, n_e=96, p=0.1, seed=4)
    compiled = network_compile(net)
    out = {}
    for platform in ("cpu", "gpu"):
        with jax.default_device(jax.devices(platform)[0]):
            out[platform] = run(compiled, operands(compiled, values), 1000)
    assert spikes(out["cpu"], "sp") == spikes(out["gpu"], "sp")
