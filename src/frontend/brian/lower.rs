//! Brian2 equations (and the events beside them) -> [`GroupIr`].
//!
//! Lowering resolves every name of the syntax trees: constants are folded into the DAG (unless
//! the user supplies them per neuron or per step), subexpressions are substituted (cycles are
//! reported), booleans and numbers are kept apart; then the scheme is resolved, with errors
//! located at the term that prevents it (`super::method`).

use std::collections::{HashMap, HashSet};

use super::equations::{parse_equations, subexpression_cycle, EquationLine, LineKind};
use super::events::{check_lastspike, lower_events, EventScope};
use super::expr::{common_name, quote_list, unknown_name, Place, Scope};
use super::method::EquationTerms;
use super::tables::TableRef;
use crate::diagnostics::{nearest_names, Diagnostic, Span};
use crate::frontend::builder::{GroupBuilder, Lowered, BUILTIN_NAMES};
use crate::frontend::method;
use crate::ir::{
    Dynamics, ExprArena, ExprId, GroupIr, Site, SpanTable, StateEq, SymbolKind, Ty, VarId,
};
use crate::spec::ModelSpec;

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
    Ok(cx.group.finish(lowered, method, spec.substeps, spec.dt))
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
        };
        for line in lines {
            let n = line.name.as_str();
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
        let defined: HashSet<&str> = lines.iter().map(|l| l.name.as_str()).collect();
        for name in spec.constants.keys() {
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
        let events = lower_events(self, self.spec)?;
        if self.spec.refractory.is_none() {
            if let Some(l) = self.lines.iter().find(|l| l.has_flag("unless refractory")) {
                let span = l
                    .flags
                    .iter()
                    .find(|(f, _)| f == "unless refractory")
                    .unwrap()
                    .1;
                return Err(Diagnostic::new(
                    "equations",
                    "'(unless refractory)' needs a refractory period",
                )
                .at(self.equations, span)
                .suggest(
                    "give refractory= a duration (e.g. 2.0) or a condition (e.g. 'v > -20')",
                ));
            }
        }
        check_lastspike(
            &self.group.arena,
            self.group.names["lastspike"],
            &events,
            states.iter().map(|s| s.derivative),
        )?;
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
                    SymbolKind::State | SymbolKind::Param | SymbolKind::PerStep
                )
            }) || self.subexpr_values.contains_key(name);
            if !known {
                let candidates: Vec<&str> = self.lines.iter().map(|l| l.name.as_str()).collect();
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
    /// `g(x) * xi`), checked by evaluating the derivatives at random points.
    fn check_noise(&self, states: &[StateEq], noise: &[VarId]) -> Result<(), Diagnostic> {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut random = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        };
        let name = |v: VarId| self.group.symbols[v.index()].name.as_str();
        for st in states {
            for &xi in noise {
                let point: Vec<f64> = (0..self.group.symbols.len()).map(|_| random()).collect();
                let at = |x: f64| {
                    self.group.arena.eval(st.derivative, &|v| {
                        if v == xi {
                            x
                        } else {
                            point[v.index()]
                        }
                    })
                };
                let (d0, d1, d2) = (at(0.0), at(1.0), at(2.0));
                if ((d2 - d0) - 2.0 * (d1 - d0)).abs() > 1e-9 * (1.0 + d2.abs()) {
                    return Err(Diagnostic::new(
                        "equations",
                        format!(
                            "in d{}/dt the noise '{}' must enter linearly (as g*{})",
                            name(st.var),
                            name(xi),
                            name(xi)
                        ),
                    ));
                }
            }
        }
        Ok(())
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
        if line.has_flag("constant over dt") {
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

    fn table(&self, name: &str) -> Option<(TableRef, f64)> {
        let t = self.tables.iter().find(|t| t.name == name)?;
        Some((t.clone(), self.spec.dt))
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
    fn reset_target(&self, name: &str, span: Span, code: &str) -> Result<VarId, Diagnostic> {
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
        match self.group.kind(var) {
            SymbolKind::State | SymbolKind::Param => Ok(var),
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
