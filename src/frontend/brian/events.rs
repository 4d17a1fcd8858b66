//! A group's events, written in Brian2's syntax whatever describes its dynamics: the threshold
//! (a condition), the reset (statements in order) and the refractory period (a duration, an
//! expression of one, or a condition), lowered to [`Events`]. The equation front end and the
//! model-class front end both call [`lower_events`], each with its own [`EventScope`].

use crate::diagnostics::{Diagnostic, Span};
use crate::frontend::syntax::ast::AssignOp;
use crate::frontend::syntax::parser::{parse_expression, parse_statements};
use crate::ir::{Events, RefractoryIr, Site, SpanTable, Ty, VarId};
use crate::spec::{ModelSpec, Refractory};

use super::expr::{require_real, Scope};

/// A [`Scope`] that also says what a reset statement may assign and where spans are recorded.
pub(crate) trait EventScope: Scope {
    /// The variable `name` (the target of a reset statement at `span` of `code`) and whether it
    /// holds a truth value (a boolean parameter), or why it cannot be assigned.
    fn reset_target(&self, name: &str, span: Span, code: &str) -> Result<(VarId, Ty), Diagnostic>;

    fn spans(&mut self) -> &mut SpanTable;
}

/// Lowers the spec's threshold, reset and refractory period, in that order.
pub(crate) fn lower_events(
    cx: &mut impl EventScope,
    spec: &ModelSpec,
) -> Result<Events, Diagnostic> {
    let mut events = Events::none();
    if let Some(code) = &spec.threshold {
        let ast = parse_expression(code, "threshold")?;
        let (e, ty) = cx.expr(&ast, "threshold", code)?;
        if ty != Ty::Bool {
            return Err(Diagnostic::new(
                "threshold",
                "the threshold must be a condition (e.g. 'v > v_th')",
            )
            .at(code, ast.span()));
        }
        cx.spans()
            .insert(Site::Threshold, "threshold", code, ast.span());
        events.threshold = Some(e);
    }
    if let Some(code) = &spec.reset {
        for st in parse_statements(code, "reset")? {
            let (var, target) = cx.reset_target(&st.target, st.target_span, code)?;
            let (value, ty) = cx.expr(&st.value, "reset", code)?;
            match (target, st.op) {
                (Ty::Real, _) => require_real(ty, &st.value, "reset", code)?,
                (Ty::Bool, AssignOp::Set) if ty == Ty::Bool => {}
                (Ty::Bool, AssignOp::Set) => {
                    return Err(Diagnostic::new(
                        "reset",
                        format!("'{}' is boolean: assign it a condition", st.target),
                    )
                    .at(code, st.value.span())
                    .suggest(format!(
                        "e.g. '{} = v > 0' or '{} = True'",
                        st.target, st.target
                    )))
                }
                (Ty::Bool, _) => {
                    return Err(Diagnostic::new(
                        "reset",
                        format!("'{}' is boolean: only '=' assigns it", st.target),
                    )
                    .at(code, st.target_span))
                }
            }
            let arena = cx.arena();
            let old = arena.var(var);
            let new = match st.op {
                AssignOp::Set => value,
                AssignOp::Add => arena.add(old, value),
                AssignOp::Sub => arena.sub(old, value),
                AssignOp::Mul => arena.mul(old, value),
                AssignOp::Div => arena.div(old, value),
            };
            let k = events.reset.len();
            cx.spans()
                .insert(Site::Reset(k), "reset", code, st.target_span);
            events.reset.push((var, new));
        }
    }
    match &spec.refractory {
        None => {}
        Some(Refractory::Duration(d)) => {
            if !(d.is_finite() && *d >= 0.0) {
                return Err(Diagnostic::new(
                    "refractory",
                    format!("the refractory period must be >= 0, got {d}"),
                ));
            }
            let c = cx.arena().constant(*d);
            events.refractory = RefractoryIr::Duration(c);
        }
        Some(Refractory::Code(code)) => {
            let ast = parse_expression(code, "refractory")?;
            let (e, ty) = cx.expr(&ast, "refractory", code)?;
            cx.spans()
                .insert(Site::Refractory, "refractory", code, ast.span());
            events.refractory = match ty {
                Ty::Bool => RefractoryIr::Condition(e),
                Ty::Real => RefractoryIr::Duration(e),
            };
        }
    }
    Ok(events)
}
