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
    Threshold,
    Reset,
    RefractoryDuration,
    RefractoryCondition,
    Record,
}

use Place::*;

const PLACES: [Place; 6] = [
    Equations,
    Threshold,
    Reset,
    RefractoryDuration,
    RefractoryCondition,
    Record,
];

const EVENTS: &[Place] = &[Equations, Threshold, Reset, RefractoryDuration];

#[rustfmt::skip]
const NAMES: &[Name] = &[
    Name { label: "t", lines: "", constant: None, per_step: &[], number: "t", condition: "t > 1", record: None, must: &[Equations, Threshold, Reset, RefractoryDuration, RefractoryCondition] },
    Name { label: "dt", lines: "", constant: None, per_step: &[], number: "dt", condition: "dt > 0", record: None, must: &[Equations, Threshold, Reset, RefractoryDuration, RefractoryCondition] },
    Name { label: "i", lines: "", constant: None, per_step: &[], number: "i", condition: "i > 0", record: None, must: &[Equations, Threshold, Reset, RefractoryDuration, RefractoryCondition] },
    Name { label: "N", lines: "", constant: None, per_step: &[], number: "N", condition: "N > 2", record: None, must: &[Equations, Threshold, Reset, RefractoryDuration, RefractoryCondition] },
    Name { label: "lastspike", lines: "", constant: None, per_step: &[], number: "lastspike", condition: "lastspike > 0", record: None, must: EVENTS },
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
    Name { label: "function", lines: "", constant: None, per_step: &[], number: "exp(-v)", condition: "exp(-v) > 0", record: None, must: &[Equations, Threshold, Reset, RefractoryDuration, RefractoryCondition] },
    Name { label: "reserved C name", lines: "NAN : 1\nint32_t : 1", constant: None, per_step: &[], number: "NAN + int32_t", condition: "NAN > int32_t", record: Some("NAN"), must: &PLACES },
    Name { label: "reserved CUDA name", lines: "dthrow/dt = -throw : 1", constant: Some(("xor", 2.0, true, false)), per_step: &[], number: "throw * xor", condition: "throw > xor", record: Some("throw"), must: &PLACES },
];

/// The base model: a leaky variable with a parameter, a threshold, a reset and a refractory
/// period of 2 ms, into which `place` puts `name`.
fn model(name: &Name, place: Place) -> ModelSpec {
    let number = name.number;
    let equations = format!(
        "dv/dt = (-v + 10 + {}) / (10*ms) : 1 (unless refractory)\n{}",
        if place == Equations {
            format!("1e-3*({number})")
        } else {
            "0".into()
        },
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
