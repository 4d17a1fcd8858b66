//! Entry points shared by the fuzz targets (fuzz/) and the corpus replay test
//! (tests/fuzz_corpus.rs), so that CI re-checks every input the fuzzer kept.

use crate::codegen::{generate_from_spec, Dialect};
use crate::spec::{Method, ModelSpec, Refractory};

/// Any text, as equations, threshold, reset and refractory (fields separated by 0x1f) and as an
/// `ode()` body, must give a model or an error that renders, never a panic; a model must
/// generate both dialects.
pub fn frontends(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = crate::frontend::pyclass::parse::parse_ode(text);
    let mut parts = text.split('\u{1f}');
    let equations = parts.next().unwrap_or("").to_string();
    let field = |s: Option<&str>| s.filter(|s| !s.is_empty()).map(str::to_string);
    let threshold = field(parts.next());
    let reset = field(parts.next());
    let refractory = field(parts.next()).map(Refractory::Code);
    let mut spec =
        ModelSpec::from_equations(equations, 0.1).constants([("tau", 10.0), ("v_th", -50.0)]);
    spec.threshold = threshold;
    spec.reset = reset;
    spec.refractory = refractory;
    match crate::frontend::lower(&spec) {
        Err(d) => {
            let _ = d.render();
        }
        Ok(_) => {
            for dialect in [Dialect::C, Dialect::Cuda] {
                let k = generate_from_spec(&spec, dialect).expect("lowered specs generate");
                assert!(k.source.contains("sf_neuron_run"));
            }
            let mut rk4 = spec.clone();
            rk4.method = Some(Method::Rk4);
            rk4.fast_math = true;
            let _ = generate_from_spec(&rk4, Dialect::Cuda);
        }
    }
}
