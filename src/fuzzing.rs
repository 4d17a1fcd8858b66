//! Entry points shared by the fuzz targets (fuzz/) and the corpus replay test
//! (tests/fuzz_corpus.rs), so that CI re-checks every input the fuzzer kept.

use crate::codegen::{generate_from_spec, Dialect};
use crate::spec::{Method, ModelClassSpec, ModelSpec, Refractory};

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

fn lowers_or_explains(spec: &ModelSpec) {
    match crate::frontend::lower(spec) {
        Err(d) => {
            let _ = d.render();
        }
        Ok(_) => {
            for dialect in [Dialect::C, Dialect::Cuda] {
                let k = generate_from_spec(spec, dialect).expect("lowered specs generate");
                assert!(k.source.contains("sf_neuron_run"));
            }
            let mut rk4 = spec.clone();
            rk4.method = Some(Method::Rk4);
            rk4.fast_math = true;
            let _ = generate_from_spec(&rk4, Dialect::Cuda);
        }
    }
}
