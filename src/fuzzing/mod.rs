//! Entry points shared by the fuzz targets (fuzz/) and the tests that replay their corpora and
//! run them from a fixed seed (tests/fuzz_corpus.rs, tests/fuzz_specs.rs), so that CI re-checks
//! every input the fuzzer kept.
//!
//! * [`frontends`]: any text, as equations, as an `ode()` method and as events;
//! * [`specs`]: whole specs, as JSON (the fuzzer mutates the test models' specs) or built from
//!   the bytes ([`specs`] module: every part, from pools of ordinary and hostile values); every
//!   spec that validates must generate both dialects inside the grammar of generated code
//!   ([`grammar`]: every identifier a C word the printers use, a generated name, or a name of
//!   the model as the printers spell it).

pub mod grammar;
mod specs;

use arbitrary::Unstructured;

use crate::codegen::{generate, prepare, Dialect};
use crate::spec::{Method, ModelClassSpec, ModelSpec, Refractory};

/// What became of one input of [`specs`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The input is not a spec (JSON that does not read as one).
    NotASpec,
    /// A spec, refused with an error that renders.
    Refused,
    /// A spec that validated, and both dialects' kernels inside the grammar.
    Generated,
}

/// A whole spec: the input as JSON when it starts with `{`, else a spec built from the bytes.
/// It gives an error that renders, or kernels inside the grammar (panics otherwise, with the
/// spec and the offending source).
pub fn specs(data: &[u8]) -> Outcome {
    let spec = if data.first() == Some(&b'{') {
        match std::str::from_utf8(data).map(ModelSpec::from_json) {
            Ok(Ok(spec)) => spec,
            Ok(Err(e)) => {
                let _ = e.to_string();
                return Outcome::NotASpec;
            }
            Err(_) => return Outcome::NotASpec,
        }
    } else {
        spec_from_bytes(data)
    };
    check_spec(&spec)
}

/// The spec [`specs`] builds from `data` when it is not JSON (to see what the fuzzer makes).
pub fn spec_from_bytes(data: &[u8]) -> ModelSpec {
    specs::spec(&mut Unstructured::new(data))
}

/// The check of [`specs`] on one spec.
pub fn check_spec(spec: &ModelSpec) -> Outcome {
    match prepare(spec) {
        Err(d) => {
            let _ = d.render();
            Outcome::Refused
        }
        Ok((ir, _)) => {
            for dialect in [Dialect::C, Dialect::Cuda] {
                let source = generate(&ir, spec, dialect).source;
                if let Err(e) = grammar::check_source(&source, &ir, spec, dialect) {
                    panic!(
                        "generated {dialect:?} source outside the grammar: {e}\n--- spec\n{}\n--- source\n{source}",
                        spec.to_json()
                    );
                }
            }
            Outcome::Generated
        }
    }
}

/// Any text must give a model or an error that renders, never a panic; a model must generate
/// both dialects. The text is split into fields at 0x1f: the first is read as equations and as
/// the body of a model class's `ode()`, the next ones as the threshold, reset and refractory
/// period beside either; the whole text is also parsed as an `ode()` method.
pub fn frontends(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = crate::frontend::pyclass::parse::parse_ode(text);
    let mut parts = text.split('\u{1f}');
    let first = parts.next().unwrap_or("");
    let field = |s: Option<&str>| s.filter(|s| !s.is_empty()).map(str::to_string);
    let threshold = field(parts.next());
    let reset = field(parts.next());
    let refractory = field(parts.next()).map(Refractory::Code);
    let class = ModelClassSpec::new("Fuzzed", first)
        .state("v", Some(-100.0), Some(100.0))
        .internals(["w"])
        .params(["tau", "v_th"]);
    for spec in [
        ModelSpec::from_equations(first, 0.1),
        ModelSpec::from_class(class, 0.1),
    ] {
        let mut spec = spec.constants([("tau", 10.0), ("v_th", -50.0)]);
        spec.threshold = threshold.clone();
        spec.reset = reset.clone();
        spec.refractory = refractory.clone();
        lowers_or_explains(&spec);
    }
}

/// A model or an error that renders; a model's kernels inside the grammar, and with RK4 and
/// fast math too.
fn lowers_or_explains(spec: &ModelSpec) {
    if check_spec(spec) == Outcome::Generated {
        let mut rk4 = spec.clone();
        rk4.method = Some(Method::Rk4);
        rk4.fast_math = true;
        check_spec(&rk4);
    }
}
