//! The integration scheme of a group, resolved once while lowering (by
//! `crate::integrators::choice`) and, when the spec names one that does not apply, a diagnostic
//! located in the text: at the term that prevents it when the front end can point at one (the
//! equation front end reads its syntax trees), else at the equation, from the span table.

use crate::diagnostics::{Diagnostic, Span};
use crate::integrators::choice::{self, alternatives, requirement, MethodError};
use crate::ir::{Site, SourceSpan, VarId};
use crate::spec::{Method, ModelSpec};

use super::builder::{GroupBuilder, Lowered};

/// The term that stops a scheme in an equation: its place and its text.
pub(crate) struct Term {
    pub at: SourceSpan,
    pub text: String,
}

/// How a front end names a variable's derivative and finds the term at fault.
pub(crate) trait Explain {
    /// How the user wrote the derivative of `x` (`dx/dt`, `self.d_x`).
    fn derivative_name(&self, x: &str) -> String;

    /// The term of `of`'s derivative that stops `method`, if the front end can point at one.
    fn locate_term(&self, of: VarId, method: Method) -> Option<Term>;
}

/// The scheme for a group with these parts: the spec's, checked, or Brian2's choice.
pub(crate) fn resolve(
    spec: &ModelSpec,
    group: &GroupBuilder,
    lowered: &Lowered,
    explain: &impl Explain,
) -> Result<Method, Diagnostic> {
    if spec.substeps == 0 {
        return Err(Diagnostic::new(
            "substeps",
            "substeps must be at least 1 (the number of integration steps per dt)",
        ));
    }
    if spec.substeps > 1 && !lowered.noise.is_empty() {
        return Err(Diagnostic::new(
            "substeps",
            "sub-steps are not supported with white noise (xi): Brian2's stochastic schemes take one step of dt",
        )
        .suggest("use substeps=1 with a smaller dt"));
    }
    choice::resolve(
        &group.arena,
        &lowered.dynamics,
        &group.symbols,
        &lowered.noise,
        spec.dt,
        spec.method,
    )
    .map_err(|e| diagnostic(&e, spec.dt, group, explain))
}

fn diagnostic(
    err: &MethodError,
    dt: f64,
    group: &GroupBuilder,
    explain: &impl Explain,
) -> Diagnostic {
    let (method, why) = match err {
        MethodError::NotApplicable { method, why } => (*method, why),
        MethodError::EulerWithMultiplicativeNoise { of, reads } => {
            let name = |v: VarId| group.symbols[v.index()].name.clone();
            let message = format!(
                "{err}: the noise coefficient in {} reads '{}'",
                explain.derivative_name(&name(*of)),
                name(*reads)
            );
            let d = match group.spans.get(&Site::Dynamics(*of)) {
                Some(at) => at.diagnostic(message),
                None => Diagnostic::new("method", message),
            };
            return d.suggest("use method='heun' (Stratonovich Heun, Brian2's scheme for multiplicative noise), or leave method unset");
        }
        MethodError::NotForNoise(_) => return Diagnostic::new("method", err.to_string()),
        MethodError::DrawsInDerivative { of, .. } => {
            let name = group.symbols[of.index()].name.clone();
            let message = format!("{err} (in {})", explain.derivative_name(&name));
            let d = match group.spans.get(&Site::Dynamics(*of)) {
                Some(at) => at.diagnostic(message),
                None => Diagnostic::new("method", message),
            };
            return d.suggest("use method='euler' or 'exponential_euler', or draw once per step in a subexpression flagged constant over dt (r = rand() : 1 (constant over dt)), which every scheme integrates");
        }
    };
    let name = |v: VarId| group.symbols[v.index()].name.clone();
    let (of, problem) = why.describe(method, dt, name);
    let derivative = explain.derivative_name(&name(of));
    let requirement = requirement(method);
    match explain.locate_term(of, method) {
        Some(term) => term
            .at
            .diagnostic(format!(
                "{requirement}: the term '{}' in {derivative} {problem}",
                term.text
            ))
            .suggest(alternatives(method)),
        None => {
            let message = format!("{requirement}: {derivative} {problem}");
            match group.spans.get(&Site::Dynamics(of)) {
                Some(at) => at.diagnostic(message),
                None => Diagnostic::new("equations", message),
            }
            .suggest(alternatives(method))
        }
    }
}

impl Term {
    /// The term at `span` of `text`, the whole text of `field`.
    pub fn new(field: &'static str, text: &str, span: Span) -> Term {
        let line = text.lines().nth(span.line.saturating_sub(1)).unwrap_or("");
        Term {
            text: line.chars().skip(span.col - 1).take(span.len).collect(),
            at: SourceSpan {
                field,
                span,
                line: line.to_string(),
            },
        }
    }
}
