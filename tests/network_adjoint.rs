//! The network adjoint (`step::network_adjoint`, `codegen::network_adjoint_kernel`): what is out
//! of scope is refused with an error naming the construct, and the kernel of a network in scope
//! is generated in both dialects (the CUDA one compiled by NVRTC where it is available). Its
//! numbers are checked from Python (tests/python/test_network_gradients.py, against `jax.grad`
//! of an independent `lax.scan` network).

mod common;
use common::nvrtc_available;

use serde_json::{json, Value};
use spikeforge::codegen::network_adjoint_kernel::generate_network_adjoint;
use spikeforge::codegen::{prepare_network, Dialect};
use spikeforge::runtime::cuda::{compile_cubin, CudaCompileOptions};
use spikeforge::spec::network::NetworkSpec;

const EQS: &str = "dv/dt = (ge - gi - v + I) / tau : 1\ndge/dt = -ge / tau_e : 1\ndgi/dt = -gi / tau_i : 1\nI : 1";

fn lif(name: &str, n: usize) -> Value {
    json!({"kind": "neuron", "name": name, "n": n, "model": {
        "equations": EQS, "threshold": "v > v_th", "reset": "v = 0", "refractory": 0.3,
        "method": "euler", "surrogate": {"kind": "fast_sigmoid", "slope": 5.0},
        "constants": {"tau": 10.0, "tau_e": 5.0, "tau_i": 8.0, "v_th": 1.0}}})
}

/// An E/I network in scope: a per-synapse delay, a shared weight, a second group.
fn network(dtype: &str) -> Value {
    json!({
        "dt": 0.1, "dtype": dtype,
        "groups": [lif("P", 30), lif("Q", 10)],
        "projections": [
            {"name": "E", "source": "P", "source_range": [0, 20], "target": "P",
             "model": "w : 1\nd : second", "on_pre": "ge += w", "delay": "d", "max_delay": 0.5},
            {"name": "I", "source": "P", "source_range": [20, 30], "target": "P",
             "model": "wi : 1 (shared)", "on_pre": "v_post -= 2*wi"},
            {"name": "F", "source": "P", "target": "Q", "model": "w : 1", "on_pre": "ge += w; gi += 0.5*w",
             "delay": 0.2}
        ],
        "monitors": [{"kind": "state", "name": "vm", "source": "P", "variables": ["v"], "record": true},
                     {"kind": "rate", "name": "rate", "source": "Q"}]
    })
}

fn refusal(spec: &Value) -> String {
    let spec = NetworkSpec::from_json(&spec.to_string()).expect("the spec reads");
    let net = prepare_network(&spec).expect("the network lowers");
    match generate_network_adjoint(&net, Dialect::C) {
        Ok(_) => panic!("expected a refusal"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_network_in_scope_generates_in_both_dialects() {
    for dtype in ["float32", "float64"] {
        let spec = NetworkSpec::from_json(&network(dtype).to_string()).unwrap();
        let net = prepare_network(&spec).unwrap();
        let c = generate_network_adjoint(&net, Dialect::C).unwrap();
        let cuda = generate_network_adjoint(&net, Dialect::Cuda).unwrap();
        assert_eq!(c.layout, cuda.layout);
        // Per-synapse and shared weights get gradients; the delay does not.
        let grads: Vec<String> = c
            .layout
            .outputs
            .iter()
            .filter(|a| a.role == "grad")
            .map(|a| format!("{}/{}", a.owner, a.name))
            .collect();
        for g in ["P/grad:I", "Q/grad:I", "E/grad:w", "I/grad:wi", "F/grad:w"] {
            assert!(grads.contains(&g.to_string()), "{g} in {grads:?}");
        }
        assert!(!grads.iter().any(|g| g.ends_with("grad:d")), "{grads:?}");
        assert!(
            cuda.source.contains("atomicAdd"),
            "shared additions are atomic on CUDA"
        );
        if nvrtc_available() {
            let cubin = compile_cubin(&cuda.source, (9, 0), &CudaCompileOptions::default())
                .unwrap_or_else(|e| panic!("{dtype}: {e}\n{}", cuda.source));
            assert_eq!(&cubin[..4], b"\x7fELF");
        }
    }
}

#[test]
fn what_is_out_of_scope_is_named() {
    let with_projection = |p: Value| {
        let mut spec = network("float64");
        spec["projections"] = json!([p]);
        spec
    };
    let cases = [
        (
            with_projection(
                json!({"name": "S", "source": "P", "target": "P", "model": "w : 1",
                "on_pre": "ge += w; w = clip(w + 0.1, 0, 1)"}),
            ),
            "synaptic variable 'w'",
        ),
        (
            with_projection(
                json!({"name": "S", "source": "P", "target": "P", "model": "w : 1",
                "on_pre": "ge += w", "on_post": "w += 0.1"}),
            ),
            "on_post",
        ),
        (
            with_projection(json!({"name": "S", "source": "P", "target": "P",
                "model": "w : 1\ndA/dt = -A/(10*ms) : 1 (event-driven)", "on_pre": "ge += w; A += 1"})),
            "(event-driven) variable 'A'",
        ),
        (
            with_projection(json!({"name": "S", "source": "P", "target": "P",
                "model": "dg/dt = -g/(5*ms) : 1 (clock-driven)\nw : 1", "on_pre": "ge += w"})),
            "(clock-driven) variable 'g'",
        ),
        (
            with_projection(
                json!({"name": "S", "source": "P", "target": "P", "model": "w : 1",
                "on_pre": "ge = w"}),
            ),
            "assign 'ge'",
        ),
        (
            with_projection(
                json!({"name": "S", "source": "P", "target": "P", "model": "w : 1",
                "on_pre": "ge += w * v_post"}),
            ),
            "reads 'v_post'",
        ),
        (
            with_projection(
                json!({"name": "S", "source": "P", "target": "P", "model": "w : 1",
                "on_pre": "I += w"}),
            ),
            "not a state variable",
        ),
        (
            with_projection(
                json!({"name": "S", "source": "P", "target": "P", "model": "w : 1",
                "on_pre": "v_pre += w"}),
            ),
            "presynaptic variable 'v'",
        ),
    ];
    for (spec, needle) in cases {
        let e = refusal(&spec);
        assert!(e.contains(needle), "{needle:?} not in {e:?}");
        assert!(e.contains("'S'"), "the projection is named: {e}");
    }
    let mut poisson = network("float64");
    poisson["groups"]
        .as_array_mut()
        .unwrap()
        .push(json!({"kind": "poisson", "name": "pg", "n": 5, "rates": 0.01}));
    assert!(refusal(&poisson).contains("PoissonGroup 'pg'"));
    let mut input = network("float64");
    input["poisson_inputs"] = json!([{"name": "inp", "target": "P", "variable": "ge", "n": 10,
        "rate": 0.01, "weight": 0.1}]);
    assert!(refusal(&input).contains("PoissonInput 'inp'"));
    let mut noisy = network("float64");
    noisy["groups"][1]["model"]["equations"] =
        json!(format!("{EQS}\ndn/dt = -n/(1*ms) + xi/sqrt(ms) : 1"));
    let e = refusal(&noisy);
    assert!(
        e.contains("NeuronGroup 'Q'") && e.contains("random numbers"),
        "{e}"
    );
    let mut monitor = network("float64");
    monitor["monitors"] =
        json!([{"kind": "state", "name": "im", "source": "P", "variables": ["I"], "record": true}]);
    assert!(refusal(&monitor).contains("StateMonitor 'im' records 'I'"));
}
