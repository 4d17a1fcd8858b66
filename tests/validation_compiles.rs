//! A model that validates compiles (issue 8, items 5 and 10): every name an expression may use,
//! in every place it may appear, and every name C, C++, CUDA or the generated code reserve, is
//! lowered; where lowering accepts the model, its generated C must compile with the system C
//! compiler and its CUDA with NVRTC (where NVRTC loads; `SPIKEFORGE_REQUIRE_NVRTC=1` makes its
//! absence a failure, as in the NVRTC compile check).
//!
//! The names and places are tables: a name a front end learns is one more row of [`NAMES`].

use std::io::Write;
use std::process::{Command, Stdio};

mod common;
use common::nvrtc_available;

use spikeforge::codegen::identifiers::listed_reserved_names;
use spikeforge::codegen::{generate, Dialect};
use spikeforge::runtime::cpu::CpuCompileOptions;
use spikeforge::runtime::cuda::{compile_cubin, CudaCompileOptions};
use spikeforge::spec::{ModelClassSpec, ModelSpec, Refractory};

/// The system C compiler's verdict on `source` (`-fsyntax-only`: every error about names is a
/// front-end error), with the flags kernels are built with, in ISO and in GNU mode (GNU mode
/// predefines macros such as `linux`).
fn c_compiles(source: &str) -> Result<(), String> {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    for std in ["-std=c11", "-std=gnu11"] {
        let mut flags: Vec<String> = CpuCompileOptions::default()
            .flags()
            .into_iter()
            .filter(|f| !f.starts_with("-std=") && f != "-shared")
            .collect();
        flags.extend([
            std.into(),
            "-fsyntax-only".into(),
            "-x".into(),
            "c".into(),
            "-".into(),
        ]);
        let mut child = Command::new(&cc)
            .args(&flags)
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("a C compiler");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(source.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        if !out.status.success() {
            return Err(format!("{std}: {}", String::from_utf8_lossy(&out.stderr)));
        }
    }
    Ok(())
}

/// Lowers `spec`; if it validates, generates both dialects and compiles them (panicking with
/// the source and the compiler's message if one does not compile). Whether it validated.
fn validates_then_compiles(what: &str, spec: &ModelSpec, nvrtc: bool) -> bool {
    let ir = match spikeforge::frontend::lower(spec) {
        Ok(ir) => ir,
        Err(_) => return false,
    };
    let c = generate(&ir, spec, Dialect::C).source;
    if let Err(e) = c_compiles(&c) {
        panic!("{what}: validated, but its C does not compile:\n{e}\n--- source\n{c}");
    }
    if nvrtc {
        let cuda = generate(&ir, spec, Dialect::Cuda).source;
        if let Err(e) = compile_cubin(&cuda, (9, 0), &CudaCompileOptions::default()) {
            panic!("{what}: validated, but its CUDA does not compile:\n{e}\n--- source\n{cuda}");
        }
    }
    true
}

/// A name an expression may use: how to define it in a model, and how to read it as a number
/// and as a condition.
struct Name {
    label: &'static str,
    /// Equation lines the name needs (added to the base model's).
    lines: &'static str,
    /// `(name, value, per_neuron, per_step)`: a constant the name needs.
    constant: Option<(&'static str, f64, bool, bool)>,
    /// Parameters given per step.
    per_step: &'static [&'static str],
    number: &'static str,
    condition: &'static str,
    /// Recorded, in the record place (where recording it makes sense).
    record: Option<&'static str>,
    /// Places where the model must validate (the others may refuse it with an error).
    must: &'static [Place],
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Place {
    Equations,
    Subexpression,
    Threshold,
    Reset,
    RefractoryDuration,
    RefractoryCondition,
    Record,
}

use Place::*;

const PLACES: [Place; 7] = [
    Equations,
    Subexpression,
    Threshold,
    Reset,
    RefractoryDuration,
    RefractoryCondition,
    Record,
];

/// Every place an expression is written in.
const EXPRESSIONS: &[Place] = &[
    Equations,
    Subexpression,
    Threshold,
    Reset,
    RefractoryDuration,
    RefractoryCondition,
];

#[rustfmt::skip]
const NAMES: &[Name] = &[
    Name { label: "t", lines: "", constant: None, per_step: &[], number: "t", condition: "t > 1", record: None, must: &[Equations, Threshold, Reset, RefractoryDuration, RefractoryCondition] },
    Name { label: "dt", lines: "", constant: None, per_step: &[], number: "dt", condition: "dt > 0", record: None, must: &[Equations, Threshold, Reset, RefractoryDuration, RefractoryCondition] },
    Name { label: "i", lines: "", constant: None, per_step: &[], number: "i", condition: "i > 0", record: None, must: &[Equations, Threshold, Reset, RefractoryDuration, RefractoryCondition] },
    Name { label: "N", lines: "", constant: None, per_step: &[], number: "N", condition: "N > 2", record: None, must: &[Equations, Threshold, Reset, RefractoryDuration, RefractoryCondition] },
    Name { label: "lastspike", lines: "", constant: None, per_step: &[], number: "lastspike", condition: "(t - lastspike) < 3*ms", record: None, must: EXPRESSIONS },
    Name { label: "not_refractory", lines: "", constant: None, per_step: &[], number: "where(not_refractory, 1, 0)", condition: "not_refractory", record: None, must: &[Equations, Threshold, Reset, RefractoryDuration] },
    Name { label: "constant", lines: "", constant: Some(("c", 1.5, false, false)), per_step: &[], number: "c", condition: "c > 1", record: None, must: &[Equations, Threshold, Reset, RefractoryDuration, RefractoryCondition] },
    Name { label: "per-neuron constant", lines: "", constant: Some(("c", 1.5, true, false)), per_step: &[], number: "c", condition: "c > 1", record: None, must: &[Equations, Threshold, Reset, RefractoryDuration, RefractoryCondition] },
    Name { label: "per-step constant", lines: "", constant: Some(("c", 1.5, false, true)), per_step: &[], number: "c", condition: "c > 1", record: Some("c"), must: &PLACES },
    Name { label: "parameter", lines: "p : 1", constant: None, per_step: &[], number: "p", condition: "p > 0", record: Some("p"), must: &PLACES },
    Name { label: "shared parameter", lines: "p : 1 (shared)", constant: None, per_step: &[], number: "p", condition: "p > 0", record: Some("p"), must: &PLACES },
    Name { label: "per-step parameter", lines: "p : 1", constant: None, per_step: &["p"], number: "p", condition: "p > 0", record: Some("p"), must: &PLACES },
    Name { label: "subexpression", lines: "s = 2*v + p : 1\np : 1", constant: None, per_step: &[], number: "s", condition: "s > 1", record: Some("s"), must: &PLACES },
    Name { label: "held subexpression", lines: "h = v + 1 : 1 (constant over dt)", constant: None, per_step: &[], number: "h", condition: "h > 1", record: Some("h"), must: &PLACES },
    Name { label: "noise", lines: "", constant: None, per_step: &[], number: "xi", condition: "xi > 0", record: None, must: &[Equations] },
    Name { label: "unit", lines: "", constant: None, per_step: &[], number: "3*mV", condition: "mV > 0", record: None, must: &[Equations, Threshold, Reset, RefractoryDuration, RefractoryCondition] },
    Name { label: "function", lines: "", constant: None, per_step: &[], number: "exp(-v)", condition: "exp(-v) > 0", record: None, must: EXPRESSIONS },
    Name { label: "pi", lines: "", constant: None, per_step: &[], number: "pi", condition: "pi > 3", record: None, must: EXPRESSIONS },
    Name { label: "e", lines: "", constant: None, per_step: &[], number: "e", condition: "e > 2", record: None, must: EXPRESSIONS },
    Name { label: "int()", lines: "", constant: None, per_step: &[], number: "int(3*v)", condition: "int(3*v) > 0", record: None, must: EXPRESSIONS },
    Name { label: "sign()", lines: "", constant: None, per_step: &[], number: "sign(v - 0.5)", condition: "sign(v - 0.5) > 0", record: None, must: EXPRESSIONS },
    Name { label: "floor/ceil", lines: "", constant: None, per_step: &[], number: "floor(v) + ceil(v)", condition: "floor(v) < ceil(v + 1)", record: None, must: EXPRESSIONS },
    Name { label: "rand()", lines: "", constant: None, per_step: &[], number: "rand()", condition: "rand() < 0.5", record: None, must: &[Equations, Threshold, Reset, RefractoryDuration, RefractoryCondition] },
    Name { label: "randn()", lines: "", constant: None, per_step: &[], number: "randn()", condition: "randn() > 0", record: None, must: &[Equations, Threshold, Reset, RefractoryDuration, RefractoryCondition] },
    Name { label: "boolean parameter", lines: "active : boolean", constant: None, per_step: &[], number: "int(active)", condition: "active", record: Some("active"), must: &PLACES },
    Name { label: "integer parameter", lines: "k : integer", constant: None, per_step: &[], number: "k", condition: "k > 0", record: Some("k"), must: &PLACES },
    Name { label: "reserved C name", lines: "NAN : 1\nint32_t : 1", constant: None, per_step: &[], number: "NAN + int32_t", condition: "NAN > int32_t", record: Some("NAN"), must: &PLACES },
    Name { label: "reserved CUDA name", lines: "dthrow/dt = -throw : 1", constant: Some(("xor", 2.0, true, false)), per_step: &[], number: "throw * xor", condition: "throw > xor", record: Some("throw"), must: &PLACES },
];

/// The base model: a leaky variable with a parameter, a threshold, a reset and a refractory
/// period of 2 ms, into which `place` puts `name`.
fn model(name: &Name, place: Place) -> ModelSpec {
    let number = name.number;
    let term = |here: Place| {
        if place == here {
            format!("1e-3*({number})")
        } else {
            "0".into()
        }
    };
    let equations = format!(
        "dv/dt = (-v + 10 + {} + sx) / (10*ms) : 1 (unless refractory)\nsx = {} : 1\n{}",
        term(Equations),
        term(Subexpression),
        name.lines
    );
    let mut spec = ModelSpec::from_equations(equations, 0.1)
        .threshold(if place == Threshold {
            format!("v > 5 and {}", name.condition)
        } else {
            "v > 5".into()
        })
        .reset(if place == Reset {
            format!("v = 1e-3*({number})")
        } else {
            "v = 0".into()
        })
        .refractory(match place {
            RefractoryDuration => Refractory::Code(format!("2*ms + 1e-3*({number})")),
            RefractoryCondition => Refractory::Code(format!("v > 4 and {}", name.condition)),
            _ => Refractory::Duration(2.0),
        })
        .per_step(name.per_step.iter().copied());
    if let Some((c, value, per_neuron, per_step)) = name.constant {
        spec = spec.constants([(c, value)]);
        if per_neuron {
            spec = spec.per_neuron([c]);
        }
        if per_step {
            spec = spec.per_step([c]);
        }
    }
    if place == Record {
        spec = spec.record(name.record.into_iter().chain(["v"]));
    }
    spec
}

#[test]
fn every_name_in_every_place_compiles_where_it_validates() {
    let nvrtc = nvrtc_available();
    let mut table = String::new();
    for name in NAMES {
        for place in PLACES {
            if place == Record && name.record.is_none() {
                continue;
            }
            let spec = model(name, place);
            let what = format!("{} in {place:?}", name.label);
            let ok = validates_then_compiles(&what, &spec, nvrtc);
            if name.must.contains(&place) {
                let err = spikeforge::frontend::lower(&spec).err().map(|d| d.render());
                assert!(ok, "{what} must validate: {}", err.unwrap_or_default());
            }
            table.push_str(&format!(
                "{:<22} {:<20} {}\n",
                name.label,
                format!("{place:?}"),
                if ok { "compiles" } else { "refused" }
            ));
        }
    }
    eprintln!("{table}");
}

/// The events given beside a model class read the same names (`t`, `dt`, `i`, `N`,
/// `lastspike`, `not_refractory`, units) and the class's own: states, internals, parameters and
/// the arguments of `ode()`, given per neuron or per step.
#[test]
fn a_model_class_and_its_events_compile_where_they_validate() {
    let nvrtc = nvrtc_available();
    let source = "def ode(self, inp=0.0):\n    self.w = self.w + inp\n    self.d_v = (self.q - self.v) / 10.0 + self.w\n";
    let class = ModelClassSpec::new("C", source)
        .state("v", Some(-100.0), Some(100.0))
        .internals(["w"])
        .params(["q"]);
    let reads = [
        "t",
        "dt",
        "i",
        "N",
        "lastspike",
        "v",
        "w",
        "q",
        "inp",
        "mV",
        "exp(v)",
    ];
    for (per_neuron, per_step) in [(false, false), (true, false), (false, true)] {
        for read in reads {
            let mut spec = ModelSpec::from_class(class.clone(), 0.1)
                .constants([("q", 1.0), ("inp", 0.0)])
                .threshold(format!("v > 5 + 1e-3*({read})"))
                .reset(format!("v = 1e-3*({read}); w += 1"))
                .refractory(format!("2*ms + 1e-3*({read})"))
                .record(["v", "w"]);
            if per_neuron {
                spec = spec.per_neuron(["q", "inp"]);
            }
            if per_step {
                spec = spec.per_step(["inp"]).record(["inp"]);
            }
            let what = format!("{read} beside a model class ({per_neuron}, {per_step})");
            assert!(
                validates_then_compiles(&what, &spec, nvrtc),
                "{what} must validate"
            );
            let condition = spec
                .clone()
                .refractory(format!("v > 4 and 1e-3*({read}) < 1e9"));
            validates_then_compiles(&format!("{what}, as a condition"), &condition, nvrtc);
        }
    }
}

/// Every name C, C++, CUDA, their headers or the generated code use (keywords, types, macros,
/// math functions in every precision, CUDA's built-ins and vector types, the generated code's
/// prefixes) works as a state variable, a parameter, a per-neuron constant and a model class's
/// names: each is printed with a prefix that cannot collide.
#[test]
fn every_reserved_name_is_a_usable_variable() {
    let nvrtc = nvrtc_available();
    let usable = |n: &str| {
        let spec = ModelSpec::from_equations(format!("dv/dt = -v + {n} : 1\n{n} : 1"), 0.1);
        spikeforge::frontend::lower(&spec).is_ok()
    };
    let mut names = listed_reserved_names();
    names.extend(["sf_t", "sf_spike", "in_v", "out_v", "SF_SIMD"].map(String::from));
    // Names the model language gives a meaning of its own.
    let (names, refused): (Vec<String>, Vec<String>) = names.into_iter().partition(|n| usable(n));
    for n in &refused {
        assert!(
            ["and", "or", "not", "true", "false"].contains(&n.as_str())
                || n.starts_with('_')
                || n.starts_with("sf_"),
            "{n} is refused as a parameter name"
        );
    }
    assert!(names.len() > 600, "{} names", names.len());
    // A model class's names are Python's too: its keywords cannot be names there.
    let in_class = |n: &str| {
        let source = format!("def ode(self, {n}=0.0):\n    self.d_v = {n} + self.{n}2\n");
        let class = ModelClassSpec::new("C", source)
            .state("v", None, None)
            .params([format!("{n}2")]);
        let spec = ModelSpec::from_class(class, 0.1).constants([(n, 0.0), (&format!("{n}2"), 0.0)]);
        spikeforge::frontend::lower(&spec).is_ok()
    };
    for (k, batch) in names.chunks(40).enumerate() {
        let mut equations = String::from("dv/dt = -v");
        for n in batch {
            equations.push_str(&format!(" + {n}"));
        }
        equations.push_str(" : 1\n");
        let (states, params) = batch.split_at(batch.len() / 2);
        for n in states {
            equations.push_str(&format!("d{n}/dt = -{n} : 1\n"));
        }
        let (params, constants) = params.split_at(params.len() / 2);
        for n in params {
            equations.push_str(&format!("{n} : 1\n"));
        }
        let spec = ModelSpec::from_equations(equations, 0.1)
            .constants(constants.iter().map(|n| (n.as_str(), 1.0)))
            .per_neuron(constants.iter().cloned())
            .record(batch.iter().take(params.len() + states.len()).cloned())
            .threshold("v > 1")
            .reset(format!("v = 0; {} = 1", params[0]));
        assert!(
            validates_then_compiles(&format!("batch {k} ({batch:?})"), &spec, nvrtc),
            "batch {k} must validate: {:?}",
            spikeforge::frontend::lower(&spec).err().map(|d| d.render())
        );
        // The same names as a model class's states, parameters and ode() arguments.
        let batch: Vec<String> = batch.iter().filter(|n| in_class(n)).cloned().collect();
        let (stored, read) = batch.split_at(batch.len() / 2);
        let (args, params) = read.split_at(read.len() / 2);
        let mut source = format!(
            "def ode(self, {}):\n",
            args.iter()
                .map(|a| format!("{a}=0.0"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        for (k, s) in stored.iter().enumerate() {
            let r = &read[k % read.len()];
            let value = if params.contains(r) {
                format!("self.{r}")
            } else {
                r.clone()
            };
            source.push_str(&format!("    self.d_{s} = -self.{s} + {value}\n"));
        }
        let mut class = ModelClassSpec::new("Reserved", source).params(params.iter().cloned());
        for s in stored {
            class = class.state(s.clone(), None, None);
        }
        let spec = ModelSpec::from_class(class, 0.1)
            .constants(read.iter().map(|n| (n.as_str(), 1.0)))
            .per_neuron(params.iter().cloned())
            .per_step(args.iter().cloned());
        assert!(
            validates_then_compiles(&format!("class batch {k}"), &spec, nvrtc),
            "class batch {k} must validate: {:?}",
            spikeforge::frontend::lower(&spec).err().map(|d| d.render())
        );
    }
}

/// Sub-steps past the unrolled ones are a loop in the kernel: with every scheme, a clamp
/// `(unless refractory)` (which integrates each case), the time, a model class, fast math, both
/// precisions. (Sub-steps with white noise are refused: Brian2's stochastic schemes take one
/// step of dt.)
#[test]
fn sub_step_loops_compile() {
    use spikeforge::spec::Method;
    use spikeforge::types::ElemType;
    let nvrtc = nvrtc_available();
    let equations = "dv/dt = (-v + w + sin(t/ms)) / (10*ms) : 1 (unless refractory)\n\
                     dw/dt = (v - w) / (20*ms) : 1";
    for method in [Method::Euler, Method::Rk2, Method::Heun, Method::Rk4] {
        for (dtype, fast) in [(ElemType::F32, false), (ElemType::F64, true)] {
            let spec = ModelSpec::from_equations(equations, 0.1)
                .method(method)
                .substeps(10)
                .threshold("v > 1")
                .reset("v = 0")
                .refractory(2.0)
                .dtype(dtype)
                .fast_math(fast);
            let what = format!("{method:?} with 10 sub-steps ({dtype})");
            assert!(validates_then_compiles(&what, &spec, nvrtc), "{what}");
        }
    }
    let noisy = ModelSpec::from_equations("dv/dt = -v / (10*ms) + 0.1*xi/sqrt(ms) : 1", 0.1)
        .method(Method::Heun)
        .substeps(10);
    let d = spikeforge::frontend::lower(&noisy).unwrap_err();
    assert_eq!(d.field, "substeps", "{}", d.render());
    let source = "def ode(self, I=0.0):\n    self.d_v = (I - self.v) / 10.0\n";
    let class = ModelClassSpec::new("C", source).state("v", Some(-1.0), Some(1.0));
    let spec = ModelSpec::from_class(class, 0.1)
        .constants([("I", 0.5)])
        .per_step(["I"])
        .method(Method::Rk4)
        .substeps(100);
    assert!(validates_then_compiles(
        "a model class with 100 sub-steps",
        &spec,
        nvrtc
    ));
}

/// The names a network's expressions may read, in every place a network writes one (`on_pre`,
/// a delay expression, a Poisson input's weight, a Poisson group's rates), and a network whose
/// names C or CUDA reserve, or whose group runs sub-steps as a loop: where the network
/// validates, its C compiles with the system C compiler and its CUDA with NVRTC. (The Python
/// test `test_names_in_every_place.py` runs the same rows on the CPU.)
#[test]
fn every_name_in_every_place_of_a_network_compiles_where_it_validates() {
    use serde_json::json;
    use spikeforge::codegen::network_kernel::generate_from_spec;
    use spikeforge::spec::NetworkSpec;
    let nvrtc = nvrtc_available();
    // (label, code, places where it must validate)
    let on_pre_only: &[&str] = &["on_pre"];
    let everywhere: &[&str] = &["on_pre", "delay", "weight", "rates"];
    let rows: &[(&str, &str, &[&str])] = &[
        ("v_pre", "v_pre", on_pre_only),
        ("v_post", "v_post", on_pre_only),
        ("synaptic parameter", "w", on_pre_only),
        ("i", "i", &["on_pre", "rates"]),
        ("j", "j", on_pre_only),
        ("N_pre", "N_pre", on_pre_only),
        ("N_post", "N_post", on_pre_only),
        ("lastspike_pre", "lastspike_pre", on_pre_only),
        ("t", "t", &["on_pre", "weight", "rates"]),
        ("dt", "dt", everywhere),
        ("constant", "c", everywhere),
        ("reserved constant", "int32_t + NAN", everywhere),
        ("pi", "pi", everywhere),
        ("e", "e", everywhere),
        ("int()", "int(3*c)", everywhere),
        ("sign()", "sign(c - 0.5)", everywhere),
        ("floor/ceil", "floor(c) + ceil(c)", everywhere),
    ];
    let network = |code: &str, place: &str| {
        let term = |here: &str| {
            if here == place {
                format!("1e-3*({code})")
            } else {
                "0".into()
            }
        };
        let constants = json!({"c": 1.5, "int32_t": 1.0, "NAN": 2.0});
        json!({
            "dt": 0.1,
            "groups": [
                {"kind": "neuron", "name": "src", "n": 3, "model": {
                    "equations": "dv/dt = (1 + i) / (0.5*ms) : 1 (unless refractory)",
                    "threshold": "v > 1", "reset": "v = 0", "refractory": 0.3}},
                {"kind": "neuron", "name": "T", "n": 2, "model": {
                    "equations": "dv/dt = (0.5 - v + xor) / (10*ms) : 1\nxor : 1",
                    "threshold": "v > 1", "reset": "v = 0"}},
                {"kind": "poisson", "name": "pg", "n": 2,
                 "rates": format!("0.1 + {}*kHz", term("rates")), "constants": constants},
            ],
            "projections": [
                {"name": "S", "source": "src", "target": "T", "model": "w : 1\nthrow : 1",
                 "on_pre": format!("v_post += w + throw + {}", term("on_pre")),
                 "delay": format!("0.2*ms + {}*ms", term("delay")), "constants": constants},
                {"name": "P", "source": "pg", "target": "T", "on_pre": "v_post += 0.01"},
            ],
            "poisson_inputs": [
                {"name": "inp", "target": "T", "variable": "v", "n": 5, "rate": 0.1,
                 "weight": format!("0.01 + {}", term("weight").replace("_post", "")),
                 "constants": constants},
            ],
        })
    };
    let mut table = String::new();
    for (label, code, must) in rows {
        for place in ["on_pre", "delay", "weight", "rates"] {
            let json = network(code, place).to_string();
            let spec = NetworkSpec::from_json(&json).unwrap();
            let what = format!("{label} in {place}");
            let validated = match generate_from_spec(&spec, Dialect::C) {
                Err(d) => {
                    assert!(!must.contains(&place), "{what} must validate: {d}");
                    false
                }
                Ok(c) => {
                    if let Err(e) = c_compiles(&c.source) {
                        panic!("{what}: validated, but its C does not compile:\n{e}");
                    }
                    if nvrtc {
                        let cuda = generate_from_spec(&spec, Dialect::Cuda).unwrap();
                        if let Err(e) =
                            compile_cubin(&cuda.source, (9, 0), &CudaCompileOptions::default())
                        {
                            panic!("{what}: validated, but its CUDA does not compile:\n{e}");
                        }
                    }
                    true
                }
            };
            table.push_str(&format!(
                "{label:<20} {place:<8} {}\n",
                if validated { "compiles" } else { "refused" }
            ));
        }
    }
    eprintln!("{table}");
}

/// A network's neuron group with more sub-steps than are unrolled: the network's step printer
/// writes the loop as the group kernel does (before, it wrote none, and the kernel read
/// undeclared loop variables).
#[test]
fn a_network_group_with_a_sub_step_loop_compiles() {
    use spikeforge::codegen::network_kernel::generate_from_spec;
    use spikeforge::spec::NetworkSpec;
    let nvrtc = nvrtc_available();
    let json = r#"{"dt": 0.1, "groups": [{"kind": "neuron", "name": "P", "n": 4, "model": {
        "equations": "dv/dt = (1.5 - v + sin(t/ms)) / (10*ms) : 1\ndw/dt = (v - w) / (5*ms) : 1",
        "threshold": "v > 1", "reset": "v = 0", "method": "rk4", "substeps": 10}}]}"#;
    let spec = NetworkSpec::from_json(json).unwrap();
    let c = generate_from_spec(&spec, Dialect::C).unwrap().source;
    assert!(
        c.contains("for (int32_t sf_sub0_k = 0; sf_sub0_k < 10;"),
        "{c}"
    );
    c_compiles(&c).unwrap_or_else(|e| panic!("{e}\n{c}"));
    if nvrtc {
        let cuda = generate_from_spec(&spec, Dialect::Cuda).unwrap().source;
        compile_cubin(&cuda, (9, 0), &CudaCompileOptions::default())
            .unwrap_or_else(|e| panic!("{e}"));
    }
}
