//! Fuzzes the front ends end to end: any text for equations, threshold, reset and refractory
//! must give a model or a located error, and a model must generate both dialects, without a
//! panic, a hang or unbounded memory.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spikeforge::codegen::{generate_from_spec, Dialect};
use spikeforge::spec::{ModelSpec, Refractory};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // Fields are separated by a 0x1f unit separator: equations, threshold, reset, refractory.
    let mut parts = text.split('\u{1f}');
    let equations = parts.next().unwrap_or("").to_string();
    let field = |s: Option<&str>| s.filter(|s| !s.is_empty()).map(str::to_string);
    let threshold = field(parts.next());
    let reset = field(parts.next());
    let refractory = field(parts.next()).map(Refractory::Code);
    let spec = ModelSpec {
        equations,
        threshold,
        reset,
        refractory,
        constants: [("tau".to_string(), 10.0), ("v_th".to_string(), -50.0)].into_iter().collect(),
        method: Default::default(),
        substeps: 1,
        dt: 0.1,
        dtype: Default::default(),
        per_neuron: vec![],
        per_step: vec![],
        record: vec![],
        fast_math: false,
        storage: None,
        python_model: None,
    };
    match spikeforge::ir::lower(&spec) {
        Err(d) => {
            // Every error renders, and a located one points inside its field.
            let _ = d.render();
        }
        Ok(_) => {
            for dialect in [Dialect::C, Dialect::Cuda] {
                let k = generate_from_spec(&spec, dialect).expect("lowered specs generate");
                assert!(k.source.contains("sf_neuron_run"));
            }
            let mut rk4 = spec.clone();
            rk4.method = Some(spikeforge::spec::Method::Rk4);
            rk4.fast_math = true;
            let _ = generate_from_spec(&rk4, Dialect::Cuda);
        }
    }
});
