//! Brian2 equations (and the events beside them) -> [`GroupIr`].
//!
//! Lowering resolves every name of the syntax trees: constants are folded into the DAG (unless
//! the user supplies them per neuron or per step), subexpressions are substituted (cycles are
//! reported), booleans and numbers are kept apart; then the scheme is resolved, with errors
//! located at the term that prevents it (`super::method`).

use std::collections::{HashMap, HashSet};

use super::equations::{parse_equations, subexpression_cycle, EquationLine, LineKind};
use super::events::{lower_events, EventScope};
use super::expr::{common_name, quote_list, unknown_name, Place, Scope};
use super::method::EquationTerms;
use super::tables::TableRef;
use crate::diagnostics::{nearest_names, Diagnostic, Span};
use crate::frontend::builder::{GroupBuilder, Lowered, BUILTIN_NAMES, MATH_CONSTANTS};
use crate::frontend::method;
use crate::frontend::{too_many_stored, MAX_STORED};
use crate::integrators::{noise, Ode};
use crate::ir::{
    Draw, Dynamics, ExprArena, ExprId, GroupIr, Site, SpanTable, StateEq, SymbolKind, Ty,
    ValueType, VarId,
};
use crate::spec::{names, ModelSpec};
use crate::types::ElemType;

/// Lowers a spec whose dynamics are `equations`, reporting the first error with its place.
pub fn lower(spec: &ModelSpec, equations: &str) -> Result<GroupIr, Diagnostic> {
    lower_with_tables(spec, equations, &[])
}

/// [`lower`], where expressions may also call the TimedArrays `tables` (a network's).
pub fn lower_with_tables(
    spec: &ModelSpec,
    equations: &str,
    tables: &[TableRef],
) -> Result<GroupIr, Diagnostic> {
    let lines = parse_equations(equations)?;
    let mut cx = Lowering::new(spec, equations, &lines, tables)?;
    let lowered = cx.lower_all()?;
    let terms = EquationTerms {
        spec,
        equations,
        lines: &lines,
        symbols: &cx.group.symbols,
        states: &lowered.dynamics,
    };
    let method = method::resolve(spec, &cx.group, &lowered, &terms)?;
    cx.group
        .finish(lowered, method, spec.substeps, spec.dt, &spec.record)
}

struct Lowering<'a> {
    spec: &'a ModelSpec,
    equations: &'a str,
    lines: &'a [EquationLine],
    group: GroupBuilder,
    /// The TimedArrays expressions may call.
    tables: &'a [TableRef],
    held: Vec<(VarId, ExprId)>,
    /// Lowered subexpressions, by name.
    subexpr_values: HashMap<String, ExprId>,
    /// Subexpressions being lowered, to detect cycles.
    in_progress: Vec<String>,
    /// How deep `Scope::expr` recurses now.
    depth: usize,
}

impl<'a> Lowering<'a> {
    fn new(
        spec: &'a ModelSpec,
        equations: &'a str,
        lines: &'a [EquationLine],
        tables: &'a [TableRef],
    ) -> Result<Self, Diagnostic> {
        let mut cx = Lowering {
            spec,
            equations,
            lines,
            group: GroupBuilder::default(),
            tables,
            subexpr_values: HashMap::new(),
            held: Vec::new(),
            in_progress: Vec::new(),
            depth: 0,
        };
        for line in lines {
            let n = line.name.as_str();
            if let Some(message) = names::invalid(n) {
                return Err(Diagnostic::new("equations", message).at(equations, line.name_span));
            }
            if let Some((_, value)) = MATH_CONSTANTS.iter().find(|(c, _)| *c == n) {
                return Err(Diagnostic::new(
                    "equations",
                    format!("'{n}' is the name of a constant ({value}), it cannot be used as a variable name"),
                )
                .at(equations, line.name_span));
            }
            if BUILTIN_NAMES.contains(&n)
                || n.starts_with("sf_")
                || n.starts_with('_')
                || n.starts_with("xi_")
            {
                return Err(
                    Diagnostic::new("equations", format!("'{n}' is a reserved name"))
                        .at(equations, line.name_span)
                        .suggest(format!(
                            "reserved: {}, and names starting with '_' or 'sf_'",
                            BUILTIN_NAMES.join(", ")
                        )),
                );
            }
        }
        let mut states = lines.iter().filter(|l| l.kind == LineKind::Differential);
        if let Some(line) = states.nth(MAX_STORED) {
            let count = MAX_STORED + 1 + states.count();
            return Err(too_many_stored("equations", count).at(equations, line.name_span));
        }
        let defined: HashSet<&str> = lines.iter().map(|l| l.name.as_str()).collect();
        for name in spec.constants.keys() {
            if let Some((_, value)) = MATH_CONSTANTS.iter().find(|(c, _)| c == name) {
                return Err(Diagnostic::new(
                    "constants",
                    format!("'{name}' is the name of a built-in constant ({value}): give this constant another name"),
                ));
            }
            if defined.contains(name.as_str()) {
                return Err(Diagnostic::new(
                    "constants",
                    format!("'{name}' is defined in the equations and also given as a constant"),
                ));
            }
        }
        for name in spec.per_neuron.iter().chain(&spec.per_step) {
            let is_param = lines
                .iter()
                .any(|l| &l.name == name && l.kind == LineKind::Parameter);
            if !spec.constants.contains_key(name) && !is_param {
                return Err(Diagnostic::new(
                    "inputs",
                    format!("'{name}' is given as an array but is neither a constant nor a parameter of the model"),
                ));
            }
        }
        for line in lines {
            let value = ValueType::of_unit(&line.unit);
            if line.kind == LineKind::Differential && value != ValueType::Real {
                return Err(Diagnostic::new(
                    "equations",
                    format!(
                        "d{}/dt: a differential equation's variable is a number, not '{}'",
                        line.name, line.unit
                    ),
                )
                .at(equations, line.name_span)
                .suggest("declare it with a physical unit or '1'; 'boolean' and 'integer' are for parameters"));
            }
            let kind = match line.kind {
                LineKind::Differential => SymbolKind::State,
                LineKind::Parameter if spec.per_step.contains(&line.name) => SymbolKind::PerStep,
                LineKind::Parameter => SymbolKind::Param,
                LineKind::Subexpression => continue,
            };
            if line.has_flag("shared") && kind != SymbolKind::Param {
                let span = line.flags.iter().find(|(f, _)| f == "shared").unwrap().1;
                return Err(Diagnostic::new(
                    "equations",
                    "only parameters ('x : unit') can be shared",
                )
                .at(equations, span));
            }
            let v = cx.group.add_symbol(&line.name, kind, &line.unit);
            cx.group.symbols[v.index()].shared = line.has_flag("shared");
        }
        for name in &spec.per_neuron {
            if spec.constants.contains_key(name) {
                cx.group.add_symbol(name, SymbolKind::PerNeuronConstant, "");
            }
        }
        for name in &spec.per_step {
            if spec.constants.contains_key(name) {
                cx.group.add_symbol(name, SymbolKind::PerStep, "");
            }
        }
        cx.group.add_builtins();
        Ok(cx)
    }

    fn lower_all(&mut self) -> Result<Lowered, Diagnostic> {
        let src = self.equations;
        let mut states = Vec::new();
        for line in self.lines {
            match line.kind {
                LineKind::Differential => {
                    let ast = line.expr.as_ref().unwrap();
                    let (e, ty) = self.expr(ast, "equations", src)?;
                    super::expr::require_real(ty, ast, "equations", src)?;
                    let var = self.group.names[&line.name];
                    self.group
                        .spans
                        .insert(Site::Dynamics(var), "equations", src, line.name_span);
                    states.push(StateEq {
                        var,
                        derivative: e,
                        unless_refractory: line.has_flag("unless refractory"),
                    });
                }
                LineKind::Subexpression => {
                    self.subexpression(&line.name, "equations")?;
                }
                LineKind::Parameter => {}
            }
        }
        // `(unless refractory)` without a refractory period is accepted, as in Brian2: the
        // element is never refractory, so the flag has no effect.
        let events = lower_events(self, self.spec)?;
        let noise = crate::ir::group::vars_of_kind(&self.group.symbols, &SymbolKind::Noise);
        self.check_noise(&states, &noise)?;
        self.check_record()?;
        Ok(Lowered {
            dynamics: Dynamics::Odes(states),
            events,
            subexpressions: std::mem::take(&mut self.subexpr_values)
                .into_iter()
                .collect(),
            held: std::mem::take(&mut self.held),
            noise,
        })
    }

    fn check_record(&self) -> Result<(), Diagnostic> {
        for name in &self.spec.record {
            let known = self.group.names.get(name).is_some_and(|v| {
                matches!(
                    self.group.kind(*v),
                    SymbolKind::State
                        | SymbolKind::Param
                        | SymbolKind::PerStep
                        | SymbolKind::Time
                        | SymbolKind::LastSpike
                        | SymbolKind::NotRefractory
                )
            }) || self.subexpr_values.contains_key(name);
            if !known {
                let mut candidates: Vec<&str> =
                    self.lines.iter().map(|l| l.name.as_str()).collect();
                candidates.extend(["t", "lastspike", "not_refractory"]);
                let mut d = Diagnostic::new(
                    "record",
                    format!("cannot record '{name}': it is not a variable of the model"),
                );
                let near = nearest_names(name, candidates.iter().copied());
                if !near.is_empty() {
                    d = d.suggest(format!("did you mean {}?", quote_list(&near)));
                }
                return Err(d);
            }
        }
        Ok(())
    }

    /// Stochastic equations: each `xi` enters linearly (an additive or multiplicative term
    /// `g(x) * xi`, no product of noises), checked by differentiating with respect to it.
    fn check_noise(&self, states: &[StateEq], noise: &[VarId]) -> Result<(), Diagnostic> {
        let odes: Vec<Ode> = states.iter().map(Ode::from).collect();
        let mut arena = self.group.arena.clone();
        let name = |v: VarId| self.group.symbols[v.index()].name.as_str();
        noise::split(&mut arena, &odes, noise).map(|_| ()).map_err(|e| {
            let line = self.lines.iter().find(|l| l.name == name(e.of));
            let d = Diagnostic::new(
                "equations",
                format!(
                    "in d{}/dt the noise '{}' must enter linearly (as g*{}, where g does not read any noise)",
                    name(e.of),
                    name(e.xi),
                    name(e.xi)
                ),
            );
            match line {
                Some(l) => d.at(self.equations, l.name_span),
                None => d,
            }
        })
    }

    fn subexpression(&mut self, name: &str, field: &str) -> Result<ExprId, Diagnostic> {
        if let Some(e) = self.subexpr_values.get(name) {
            return Ok(*e);
        }
        let line = self.lines.iter().find(|l| l.name == name).unwrap();
        if let Some(d) = subexpression_cycle(
            &self.in_progress,
            name,
            field,
            self.equations,
            line.name_span,
        ) {
            return Err(d);
        }
        self.in_progress.push(name.to_string());
        let ast = line.expr.as_ref().unwrap();
        let (e, _) = self.expr(ast, "equations", self.equations)?;
        self.in_progress.pop();
        let reads = self.group.arena.vars_of(e);
        let held = line.has_flag("constant over dt");
        if !held
            && reads
                .iter()
                .any(|v| matches!(self.group.kind(*v), SymbolKind::Random(_)))
        {
            // Brian2's rule: a subexpression is substituted wherever it is used, so a draw in it
            // would be drawn again at every use.
            return Err(Diagnostic::new(
                "equations",
                format!("the subexpression '{name}' calls rand() or randn(): such expressions are evaluated once per step only when flagged 'constant over dt'"),
            )
            .at(self.equations, line.name_span)
            .suggest(format!("declare it as '{name} = ... : {} (constant over dt)'", line.unit)));
        }
        if held
            && reads
                .iter()
                .any(|v| *self.group.kind(*v) == SymbolKind::Noise)
        {
            return Err(Diagnostic::new(
                "equations",
                format!("the 'constant over dt' subexpression '{name}' reads white noise (xi), which only a differential equation can integrate"),
            )
            .at(self.equations, line.name_span));
        }
        if held {
            if self.group.arena.ty(e) == Ty::Bool {
                return Err(Diagnostic::new(
                    "equations",
                    "a 'constant over dt' subexpression must be a number",
                )
                .at(self.equations, line.name_span));
            }
            let v = self
                .group
                .add_symbol(name, SymbolKind::HeldSubexpression, &line.unit);
            self.held.push((v, e));
        }
        self.subexpr_values.insert(name.to_string(), e);
        Ok(e)
    }

    fn unknown_name(&self, name: &str, at: Place) -> Diagnostic {
        let mut known: Vec<&str> = self.lines.iter().map(|l| l.name.as_str()).collect();
        known.extend(self.spec.constants.keys().map(String::as_str));
        known.extend(BUILTIN_NAMES.iter().filter(|n| **n != "xi"));
        unknown_name(
            name,
            at,
            known,
            "define it in the equations (e.g. 'x : 1') or give it in constants",
        )
    }
}

impl Scope for Lowering<'_> {
    fn arena(&mut self) -> &mut ExprArena {
        &mut self.group.arena
    }

    fn depth(&mut self) -> &mut usize {
        &mut self.depth
    }

    fn precision(&self) -> ElemType {
        self.spec.dtype
    }

    fn table(&self, name: &str) -> Option<(TableRef, f64)> {
        let t = self.tables.iter().find(|t| t.name == name)?;
        Some((t.clone(), self.spec.dt))
    }

    fn draw(&mut self, draw: Draw, _at: Place) -> Result<ExprId, Diagnostic> {
        Ok(self.group.draw(draw))
    }

    fn name(&mut self, name: &str, at: Place) -> Result<(ExprId, Ty), Diagnostic> {
        if self
            .lines
            .iter()
            .any(|l| l.name == name && l.kind == LineKind::Subexpression)
        {
            let e = self.subexpression(name, at.field)?;
            if let Some(&(held, _)) = self
                .held
                .iter()
                .find(|(v, _)| self.group.symbols[v.index()].name == name)
            {
                return Ok((self.group.arena.var(held), Ty::Real));
            }
            return Ok((e, self.group.arena.ty(e)));
        }
        if let Some(found) = self.group.symbol_value(name) {
            return Ok(found);
        }
        if let Some(c) = self.spec.constants.get(name) {
            return Ok((self.group.arena.constant(*c), Ty::Real));
        }
        if name == "xi" || name.starts_with("xi_") {
            if at.field != "equations" {
                return Err(at.error(format!(
                    "'{name}' (white noise) can only appear in the equations"
                )));
            }
            if let Some(message) = names::invalid(name) {
                return Err(at.error(message));
            }
            let v = self
                .group
                .add_symbol(name, SymbolKind::Noise, "second**-0.5");
            return Ok((self.group.arena.var(v), Ty::Real));
        }
        if let Some(found) = common_name(&mut self.group.arena, self.spec.dt, name, at) {
            return found;
        }
        Err(self.unknown_name(name, at))
    }
}

impl EventScope for Lowering<'_> {
    fn reset_target(&self, name: &str, span: Span, code: &str) -> Result<(VarId, Ty), Diagnostic> {
        let Some(&var) = self.group.names.get(name) else {
            if self.spec.constants.contains_key(name) {
                return Err(Diagnostic::new("reset", format!("cannot assign to '{name}': it is a constant"))
                    .at(code, span)
                    .suggest("declare it as a parameter in the equations (e.g. 'x : 1') to make it per-neuron and writable"));
            }
            return Err(self.unknown_name(
                name,
                Place {
                    field: "reset",
                    src: code,
                    span,
                },
            ));
        };
        let line = self.lines.iter().find(|l| l.name == name);
        if let Some(flag) =
            line.and_then(|l| ["constant", "shared"].into_iter().find(|f| l.has_flag(f)))
        {
            return Err(Diagnostic::new(
                "reset",
                format!("cannot assign to '{name}': it is flagged ({flag})"),
            )
            .at(code, span));
        }
        let ty = match self.group.symbols[var.index()].value {
            ValueType::Boolean => Ty::Bool,
            ValueType::Real | ValueType::Integer => Ty::Real,
        };
        match self.group.kind(var) {
            SymbolKind::State | SymbolKind::Param => Ok((var, ty)),
            _ => Err(Diagnostic::new(
                "reset",
                format!(
                    "cannot assign to '{name}': only state variables and parameters can be reset"
                ),
            )
            .at(code, span)),
        }
    }

    fn spans(&mut self) -> &mut SpanTable {
        &mut self.group.spans
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontend::lower;
    use crate::ir::RefractoryIr;
    use crate::spec::{Dynamics as SpecDynamics, ModelSpec, Refractory};

    pub(crate) fn lif_spec() -> ModelSpec {
        ModelSpec::from_equations(
            "dv/dt = (v_rest - v + R*I) / tau : volt (unless refractory)\nI : amp",
            0.1,
        )
        .threshold("v > v_th")
        .reset("v = v_reset")
        .refractory(2.0)
        .constants([
            ("v_rest", -65.0),
            ("R", 1.0),
            ("tau", 10.0),
            ("v_th", -50.0),
            ("v_reset", -65.0),
        ])
        .record(["v"])
    }

    #[test]
    fn lowers_lif_with_folded_constants() {
        let ir = lower(&lif_spec()).unwrap();
        let Dynamics::Odes(states) = &ir.dynamics else {
            panic!("equations lower to ODEs")
        };
        assert_eq!(states.len(), 1);
        let v = ir.lookup("v").unwrap();
        let i = ir.lookup("I").unwrap();
        let d = states[0].derivative;
        let f = |x: VarId| {
            if x == v {
                -60.0
            } else if x == i {
                2.0
            } else {
                f64::NAN
            }
        };
        assert!((ir.arena.eval(d, &f) - (-65.0 + 60.0 + 2.0) / 10.0).abs() < 1e-12);
        assert!(states[0].unless_refractory);
        assert!(matches!(ir.events.refractory, RefractoryIr::Duration(_)));
    }

    #[test]
    fn unknown_name_suggests_nearest() {
        let mut s = lif_spec();
        s.dynamics =
            SpecDynamics::Equations("dv/dt = (v_rest - v + R*I) / tauu : volt\nI : amp".into());
        s.refractory = None;
        let e = lower(&s).unwrap_err();
        assert!(e.message.contains("unknown name 'tauu'"), "{}", e.render());
        assert_eq!(e.span.unwrap().col, 30);
        assert!(e.suggestion.unwrap().contains("'tau'"));
    }

    #[test]
    fn cyclic_subexpressions_are_reported() {
        let mut s = lif_spec();
        s.dynamics = SpecDynamics::Equations("dv/dt = a : 1\na = b + 1 : 1\nb = a * 2 : 1".into());
        s.refractory = None;
        let e = lower(&s).unwrap_err();
        assert!(
            e.message.contains("cyclic subexpressions: a -> b -> a"),
            "{}",
            e.message
        );
    }

    #[test]
    fn booleans_and_numbers_are_kept_apart() {
        let mut s = lif_spec();
        s.threshold = Some("v + 1".into());
        assert!(lower(&s)
            .unwrap_err()
            .message
            .contains("must be a condition"));
        let mut s = lif_spec();
        s.dynamics = SpecDynamics::Equations("dv/dt = (v > 0) * 2 : 1\nI : 1".into());
        s.refractory = None;
        assert!(lower(&s)
            .unwrap_err()
            .message
            .contains("condition is used where a number"));
    }

    #[test]
    fn refractory_condition_is_recognised() {
        let mut s = lif_spec();
        s.refractory = Some(Refractory::Code("v > -20".into()));
        assert!(matches!(
            lower(&s).unwrap().events.refractory,
            RefractoryIr::Condition(_)
        ));
        s.refractory = Some(Refractory::Code("2*dt".into()));
        assert!(matches!(
            lower(&s).unwrap().events.refractory,
            RefractoryIr::Duration(_)
        ));
    }

    #[test]
    fn reset_cannot_assign_constants() {
        let mut s = lif_spec();
        s.reset = Some("v_th = 3".into());
        let e = lower(&s).unwrap_err();
        assert!(
            e.message
                .contains("cannot assign to 'v_th': it is a constant"),
            "{}",
            e.message
        );
    }
}
