//! How large a spec may be, checked before anything reads its text, so that work and memory stay
//! proportional to a model a person could write: every text (equations, an `ode()` method, a
//! threshold, a reset, a refractory expression) at most [`MAX_TEXT_BYTES`], every list or map of
//! names at most [`MAX_NAMES`] entries, and at most [`MAX_SUBSTEPS`] sub-steps (the kernel counts
//! them in int32). The kernel's own bounds (stored variables, buffers, operations per step) are
//! checked where they are known (`crate::frontend::MAX_STORED`, `crate::codegen::bounds`).

use super::network::{DelaySpec, GroupSpec, MonitorSpec, NetworkSpec, NumberOrExpr, PathwayCode};
use super::{Dynamics, ModelSpec, Refractory};
use crate::diagnostics::Diagnostic;

/// The longest text of one field (a megabyte: ten thousand lines of a hundred characters).
pub const MAX_TEXT_BYTES: usize = 1 << 20;

/// The most entries of one list or map of names.
pub const MAX_NAMES: usize = 10_000;

/// The most sub-steps per step.
pub const MAX_SUBSTEPS: u32 = i32::MAX as u32;

impl ModelSpec {
    /// The sizes above.
    pub fn check_sizes(&self) -> Result<(), Diagnostic> {
        let mut texts: Vec<(&str, &str)> = Vec::new();
        let mut lists: Vec<(&str, usize)> = vec![
            ("constants", self.constants.len()),
            ("per_neuron", self.per_neuron.len()),
            ("per_step", self.per_step.len()),
            ("record", self.record.len()),
        ];
        match &self.dynamics {
            Dynamics::Equations(text) => texts.push(("equations", text)),
            Dynamics::ModelClass(class) => {
                texts.push(("ode", &class.source));
                lists.extend([
                    ("Default_States", class.states.len()),
                    ("Default_Inters", class.internals.len()),
                    ("Default_Params", class.params.len()),
                ]);
            }
        }
        texts.extend(self.threshold.as_deref().map(|t| ("threshold", t)));
        texts.extend(self.reset.as_deref().map(|t| ("reset", t)));
        if let Some(Refractory::Code(code)) = &self.refractory {
            texts.push(("refractory", code));
        }
        check_texts_and_lists(texts, lists)?;
        if self.substeps > MAX_SUBSTEPS {
            return Err(Diagnostic::new(
                "substeps",
                format!(
                    "substeps must be at most {MAX_SUBSTEPS}, got {}",
                    self.substeps
                ),
            ));
        }
        Ok(())
    }
}

/// Every text at most [`MAX_TEXT_BYTES`], every list at most [`MAX_NAMES`] entries; the error
/// names the field (`texts`: field and text; `lists`: field and length).
fn check_texts_and_lists<F: AsRef<str>>(
    texts: Vec<(F, &str)>,
    lists: Vec<(F, usize)>,
) -> Result<(), Diagnostic> {
    for (field, text) in texts {
        if text.len() > MAX_TEXT_BYTES {
            return Err(Diagnostic::new(
                field.as_ref(),
                format!(
                    "the text is {} bytes; a field holds at most {MAX_TEXT_BYTES}",
                    text.len()
                ),
            ));
        }
    }
    for (list, len) in lists {
        if len > MAX_NAMES {
            let list = list.as_ref();
            return Err(Diagnostic::new(
                list,
                format!("{list} has {len} entries; at most {MAX_NAMES}"),
            ));
        }
    }
    Ok(())
}

impl NetworkSpec {
    /// The sizes above for what a network spec gives besides its neuron groups' models (which
    /// are checked as models when they are lowered): its lists of objects, each object's
    /// constants and monitored variables, and every text (synapse models, `on_pre`, `on_post`,
    /// rates, weights, delays given as expressions).
    pub fn check_sizes(&self) -> Result<(), Diagnostic> {
        let mut texts: Vec<(String, &str)> = Vec::new();
        let mut lists: Vec<(String, usize)> = vec![
            ("groups".into(), self.groups.len()),
            ("projections".into(), self.projections.len()),
            ("poisson_inputs".into(), self.poisson_inputs.len()),
            ("timed_arrays".into(), self.timed_arrays.len()),
            ("monitors".into(), self.monitors.len()),
        ];
        fn expression(v: &NumberOrExpr) -> Option<&str> {
            match v {
                NumberOrExpr::Expression(code) => Some(code),
                NumberOrExpr::Number(_) => None,
            }
        }
        for (k, g) in self.groups.iter().enumerate() {
            if let GroupSpec::Poisson {
                rates, constants, ..
            } = g
            {
                lists.push((format!("groups[{k}].constants"), constants.len()));
                texts.extend(
                    rates
                        .as_ref()
                        .and_then(expression)
                        .map(|t| (format!("groups[{k}].rates"), t)),
                );
            }
        }
        for (k, p) in self.projections.iter().enumerate() {
            let field = |f: &str| format!("projections[{k}].{f}");
            lists.push((field("constants"), p.constants.len()));
            texts.push((field("model"), &p.model));
            for (kind, code) in [("on_pre", Some(&p.on_pre)), ("on_post", p.on_post.as_ref())] {
                let Some(code) = code else { continue };
                let pathways = code.pathways(kind);
                lists.push((field(kind), pathways.len()));
                for (name, text) in pathways {
                    let at = match code {
                        PathwayCode::One(_) => field(kind),
                        PathwayCode::Named(_) => field(&format!("{kind}['{name}']")),
                    };
                    texts.push((at, text));
                }
            }
            for (name, d) in p.delay.iter().flat_map(DelaySpec::by_pathway) {
                let at = match p.delay {
                    Some(DelaySpec::Named(_)) => field(&format!("delay['{name}']")),
                    _ => field("delay"),
                };
                texts.extend(expression(d).map(|t| (at, t)));
            }
        }
        for (k, p) in self.poisson_inputs.iter().enumerate() {
            let field = |f: &str| format!("poisson_inputs[{k}].{f}");
            lists.push((field("constants"), p.constants.len()));
            texts.extend(expression(&p.rate).map(|t| (field("rate"), t)));
            texts.extend(expression(&p.weight).map(|t| (field("weight"), t)));
        }
        for (k, m) in self.monitors.iter().enumerate() {
            if let MonitorSpec::State { variables, .. } = m {
                lists.push((format!("monitors[{k}].variables"), variables.len()));
            }
        }
        check_texts_and_lists(texts, lists)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_lists_and_substeps_are_bounded() {
        let ok = ModelSpec::from_equations("dv/dt = -v : 1", 0.1);
        assert!(ok.check_sizes().is_ok());
        let long = ModelSpec::from_equations("x : 1\n".repeat(MAX_TEXT_BYTES / 6 + 1), 0.1);
        assert_eq!(long.check_sizes().unwrap_err().field, "equations");
        let many = ok
            .clone()
            .constants((0..=MAX_NAMES).map(|k| (format!("c{k}"), 1.0)));
        assert!(many
            .check_sizes()
            .unwrap_err()
            .message
            .contains("constants has 10001 entries"));
        let subs = ok.substeps(u32::MAX);
        assert_eq!(subs.check_sizes().unwrap_err().field, "substeps");
    }
}
