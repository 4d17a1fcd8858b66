//! The neuron model as the back ends see it: symbols, derivatives, threshold, reset, refractoriness.
//!
//! Lowering resolves every name of the front end's syntax trees: constants are folded into the
//! DAG (unless the user supplies them per neuron or per step), subexpressions are substituted
//! (cycles are reported), booleans and numbers are kept apart.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::expr::{BinOp, ExprArena, ExprId, Func, Ty, VarId};
use crate::diagnostics::{nearest_names, Diagnostic};
use crate::frontend::ast::{AssignOp, Ast, UnaryOp};
use crate::frontend::brian::{parse_equations, EquationLine, LineKind};
use crate::frontend::parser::{parse_expression, parse_statements};
use crate::spec::{Dynamics, ModelSpec, Refractory};
use crate::types::ElemType;

/// What a name in the model stands for, and so how a kernel gets its value.
#[derive(Clone, Debug, PartialEq)]
pub enum SymbolKind {
    /// Integrated by the ODE solver; loaded once, kept in registers, stored once.
    State,
    /// A per-neuron value (`x : unit`), read-only unless the reset writes it.
    Param,
    /// A constant the user gives as an `(n,)` array instead of a folded number.
    PerNeuronConstant,
    /// A value given for every step, `(batch, steps, n_inner)`.
    PerStep,
    /// `not_refractory`: true when the neuron integrates its `(unless refractory)` equations.
    NotRefractory,
    /// `t`: the current time (step counter times dt).
    Time,
    /// `i`: the neuron's index within its population.
    NeuronIndex,
    /// `N`: the number of neurons in the population.
    NeuronCount,
    /// `lastspike`: the time of the neuron's last spike (needs a refractory duration, whose
    /// bookkeeping keeps the step of the last spike).
    LastSpike,
    /// A subexpression flagged `constant over dt`: evaluated once from the values at the start
    /// of the step and held through the integrator's stages (Brian2's semantics).
    HeldSubexpression,
    /// `xi`, `xi_*`: white noise, a fresh standard normal per neuron and step (Euler-Maruyama:
    /// a term `g*xi` in dx/dt adds `g*sqrt(dt)*N(0,1)` to x each step).
    Noise,
}

#[derive(Clone, Debug)]
pub struct Symbol {
    pub name: String,
    pub kind: SymbolKind,
    pub unit: String,
    /// `(shared)`: one value for the whole population (per batch member), not per neuron.
    pub shared: bool,
}

#[derive(Clone, Debug)]
pub enum RefractoryIr {
    None,
    /// Refractory for `timestep(duration, dt)` steps after a spike; the duration may depend on
    /// per-neuron values.
    Duration(ExprId),
    /// Refractory after a spike until the condition stops holding (Brian2's semantics).
    Condition(ExprId),
}

#[derive(Clone, Debug)]
pub struct NeuronIr {
    pub arena: ExprArena,
    pub symbols: Vec<Symbol>,
    /// State symbols in definition order, with their derivative (subexpressions inlined) and
    /// whether the `(unless refractory)` flag clamps them.
    pub states: Vec<StateEq>,
    pub threshold: Option<ExprId>,
    /// Reset statements in order; `x += e` is already `x = x + e`.
    pub reset: Vec<(VarId, ExprId)>,
    pub refractory: RefractoryIr,
    /// Named subexpressions, for recording.
    pub subexpressions: BTreeMap<String, ExprId>,
    /// `constant over dt` subexpressions, in an order where each comes after those it uses:
    /// the kernel computes them at the start of each step.
    pub held: Vec<(VarId, ExprId)>,
    /// Noise symbols (`xi`, `xi_*`) in order of first use.
    pub noise: Vec<VarId>,
    pub dt: f64,
    /// Set for a model class (`spec.dynamics`): how `ode()`'s direct assignments and bounds
    /// enter the step. `states` then holds every stored variable, integrated or not.
    pub python: Option<super::python_model::PythonOde>,
}

#[derive(Clone, Debug)]
pub struct StateEq {
    pub var: VarId,
    pub derivative: ExprId,
    pub unless_refractory: bool,
}

impl NeuronIr {
    pub fn symbol(&self, v: VarId) -> &Symbol {
        &self.symbols[v.index()]
    }

    pub fn lookup(&self, name: &str) -> Option<VarId> {
        self.symbols
            .iter()
            .position(|s| s.name == name)
            .map(VarId::at)
    }

    pub fn vars_of_kind(&self, kind: &SymbolKind) -> Vec<VarId> {
        (0..self.symbols.len())
            .map(VarId::at)
            .filter(|v| &self.symbols[v.index()].kind == kind)
            .collect()
    }

    /// Parameters assigned by the reset: they become outputs of the kernel.
    pub fn written_params(&self) -> Vec<VarId> {
        let mut out: Vec<VarId> = self
            .reset
            .iter()
            .map(|(v, _)| *v)
            .filter(|v| self.symbol(*v).kind == SymbolKind::Param)
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

/// Names with a built-in meaning in every model.
const RESERVED_NAMES: &[&str] = &["t", "dt", "i", "N", "not_refractory", "lastspike", "xi"];

const FUNCTIONS: &[&str] = &[
    "exp", "log", "log10", "sqrt", "cbrt", "abs", "fabs", "sin", "cos", "tan", "tanh", "sinh",
    "cosh", "floor", "ceil", "pow", "min", "max", "clip", "where", "exprel",
];

/// Lowers a spec to the IR, reporting the first error with its place.
pub fn lower(spec: &ModelSpec) -> Result<NeuronIr, Diagnostic> {
    if !(spec.dt.is_finite() && spec.dt > 0.0) {
        return Err(Diagnostic::new(
            "dt",
            format!("dt must be a positive number, got {}", spec.dt),
        ));
    }
    if !ElemType::PRECISIONS.contains(&spec.dtype) {
        return Err(Diagnostic::new(
            "dtype",
            format!("dtype must be float32 or float64, got {}", spec.dtype),
        ));
    }
    if let Some(storage) = spec.storage {
        if !ElemType::STORAGES.contains(&storage) {
            return Err(Diagnostic::new(
                "storage",
                format!("storage must be float16 or bfloat16, got {storage}"),
            ));
        }
        if spec.dtype != ElemType::F32 {
            return Err(Diagnostic::new(
                "dtype",
                "float16 / bfloat16 storage computes in float32: use dtype float32",
            ));
        }
    }
    let equations = match &spec.dynamics {
        Dynamics::ModelClass(class) => return super::python_model::lower_python(spec, class),
        Dynamics::Equations(text) => text.as_str(),
    };
    let lines = parse_equations(equations)?;
    let mut cx = Lowering::new(spec, equations, &lines)?;
    cx.lower_all()?;
    let ir = cx.finish();
    // The integration scheme is part of the model: one that does not apply is a model error.
    crate::integrators::resolve_method(&ir, spec)?;
    Ok(ir)
}

struct Lowering<'a> {
    spec: &'a ModelSpec,
    equations: &'a str,
    lines: &'a [EquationLine],
    arena: ExprArena,
    symbols: Vec<Symbol>,
    names: HashMap<String, VarId>,
    held: Vec<(VarId, ExprId)>,
    /// Lowered subexpressions, by name.
    subexpr_values: HashMap<String, ExprId>,
    /// Subexpressions being lowered, to detect cycles.
    in_progress: Vec<String>,
    states: Vec<StateEq>,
    threshold: Option<ExprId>,
    reset: Vec<(VarId, ExprId)>,
    refractory: RefractoryIr,
}

impl<'a> Lowering<'a> {
    fn new(
        spec: &'a ModelSpec,
        equations: &'a str,
        lines: &'a [EquationLine],
    ) -> Result<Self, Diagnostic> {
        let mut cx = Lowering {
            spec,
            equations,
            lines,
            arena: ExprArena::new(),
            symbols: Vec::new(),
            names: HashMap::new(),
            subexpr_values: HashMap::new(),
            held: Vec::new(),
            in_progress: Vec::new(),
            states: Vec::new(),
            threshold: None,
            reset: Vec::new(),
            refractory: RefractoryIr::None,
        };
        for line in lines {
            let n = line.name.as_str();
            if RESERVED_NAMES.contains(&n)
                || n.starts_with("sf_")
                || n.starts_with('_')
                || n.starts_with("xi_")
            {
                return Err(
                    Diagnostic::new("equations", format!("'{n}' is a reserved name"))
                        .at(equations, line.name_span)
                        .suggest(format!(
                            "reserved: {}, and names starting with '_' or 'sf_'",
                            RESERVED_NAMES.join(", ")
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
            let v = cx.add_symbol(&line.name, kind, &line.unit);
            cx.symbols[v.index()].shared = line.has_flag("shared");
        }
        for name in &spec.per_neuron {
            if spec.constants.contains_key(name) {
                cx.add_symbol(name, SymbolKind::PerNeuronConstant, "");
            }
        }
        for name in &spec.per_step {
            if spec.constants.contains_key(name) {
                cx.add_symbol(name, SymbolKind::PerStep, "");
            }
        }
        cx.add_symbol("not_refractory", SymbolKind::NotRefractory, "boolean");
        cx.add_symbol("lastspike", SymbolKind::LastSpike, "second");
        cx.add_symbol("t", SymbolKind::Time, "second");
        cx.add_symbol("i", SymbolKind::NeuronIndex, "integer");
        cx.add_symbol("N", SymbolKind::NeuronCount, "integer");
        Ok(cx)
    }

    fn add_symbol(&mut self, name: &str, kind: SymbolKind, unit: &str) -> VarId {
        let id = VarId::at(self.symbols.len());
        self.symbols.push(Symbol {
            name: name.to_string(),
            kind,
            unit: unit.to_string(),
            shared: false,
        });
        self.names.insert(name.to_string(), id);
        id
    }

    fn lower_all(&mut self) -> Result<(), Diagnostic> {
        let src = self.equations;
        for line in self.lines {
            match line.kind {
                LineKind::Differential => {
                    let (e, ty) = self.expr(line.expr.as_ref().unwrap(), "equations", src)?;
                    self.require_real(e, ty, line.expr.as_ref().unwrap(), "equations", src)?;
                    let var = self.names[&line.name];
                    self.states.push(StateEq {
                        var,
                        derivative: e,
                        unless_refractory: line.has_flag("unless refractory"),
                    });
                }
                LineKind::Subexpression => {
                    self.subexpression(&line.name, "equations", src)?;
                }
                LineKind::Parameter => {}
            }
        }
        if let Some(code) = &self.spec.threshold {
            let ast = parse_expression(code, "threshold")?;
            let (e, ty) = self.expr(&ast, "threshold", code)?;
            if ty != Ty::Bool {
                return Err(Diagnostic::new(
                    "threshold",
                    "the threshold must be a condition (e.g. 'v > v_th')",
                )
                .at(code, ast.span()));
            }
            self.threshold = Some(e);
        }
        if let Some(code) = &self.spec.reset {
            for st in parse_statements(code, "reset")? {
                let Some(&var) = self.names.get(&st.target) else {
                    if self.spec.constants.contains_key(&st.target) {
                        return Err(Diagnostic::new("reset", format!("cannot assign to '{}': it is a constant", st.target))
                            .at(code, st.target_span)
                            .suggest("declare it as a parameter in the equations (e.g. 'x : 1') to make it per-neuron and writable"));
                    }
                    return Err(self.unknown_name(&st.target, st.target_span, "reset", code));
                };
                let line = self.lines.iter().find(|l| l.name == st.target);
                if let Some(flag) =
                    line.and_then(|l| ["constant", "shared"].into_iter().find(|f| l.has_flag(f)))
                {
                    return Err(Diagnostic::new(
                        "reset",
                        format!("cannot assign to '{}': it is flagged ({flag})", st.target),
                    )
                    .at(code, st.target_span));
                }
                match self.symbols[var.index()].kind {
                    SymbolKind::State | SymbolKind::Param => {}
                    _ => {
                        return Err(Diagnostic::new(
                            "reset",
                            format!("cannot assign to '{}': only state variables and parameters can be reset", st.target),
                        )
                        .at(code, st.target_span))
                    }
                }
                let (value, ty) = self.expr(&st.value, "reset", code)?;
                self.require_real(value, ty, &st.value, "reset", code)?;
                let old = self.arena.var(var);
                let new = match st.op {
                    AssignOp::Set => value,
                    AssignOp::Add => self.arena.add(old, value),
                    AssignOp::Sub => self.arena.sub(old, value),
                    AssignOp::Mul => self.arena.mul(old, value),
                    AssignOp::Div => self.arena.div(old, value),
                };
                self.reset.push((var, new));
            }
        }
        match &self.spec.refractory {
            None => {}
            Some(Refractory::Duration(d)) => {
                if !(d.is_finite() && *d >= 0.0) {
                    return Err(Diagnostic::new(
                        "refractory",
                        format!("the refractory period must be >= 0, got {d}"),
                    ));
                }
                let c = self.arena.constant(*d);
                self.refractory = RefractoryIr::Duration(c);
            }
            Some(Refractory::Code(code)) => {
                let ast = parse_expression(code, "refractory")?;
                let (e, ty) = self.expr(&ast, "refractory", code)?;
                self.refractory = match ty {
                    Ty::Bool => RefractoryIr::Condition(e),
                    Ty::Real => RefractoryIr::Duration(e),
                };
            }
        }
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
        if !matches!(self.refractory, RefractoryIr::Duration(_)) {
            let lastspike = self.names["lastspike"];
            let uses = self
                .states
                .iter()
                .map(|s| s.derivative)
                .chain(self.threshold)
                .chain(self.reset.iter().map(|r| r.1));
            let roots: Vec<ExprId> = uses.collect();
            if roots
                .iter()
                .any(|r| self.arena.vars_of(*r).contains(&lastspike))
            {
                return Err(Diagnostic::new(
                    "equations",
                    "'lastspike' is only kept when the refractory period is a duration",
                )
                .suggest("give refractory= a duration (e.g. 2.0 or '2*ms')"));
            }
        }
        if self.symbols.iter().any(|s| s.kind == SymbolKind::Noise) {
            self.check_noise()?;
        }
        for name in &self.spec.record {
            let known = self.names.get(name).is_some_and(|v| {
                matches!(
                    self.symbols[v.index()].kind,
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

    /// Stochastic equations: Euler-Maruyama, and each `xi` entering linearly (an additive or
    /// multiplicative term `g(x) * xi`), checked by evaluating the derivatives at random points.
    fn check_noise(&self) -> Result<(), Diagnostic> {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut random = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        };
        let noise: Vec<VarId> = self.vars_of_kind_local(&SymbolKind::Noise);
        for st in &self.states {
            for &xi in &noise {
                let point: Vec<f64> = (0..self.symbols.len()).map(|_| random()).collect();
                let at = |x: f64| {
                    self.arena.eval(st.derivative, &|v| {
                        if v == xi {
                            x
                        } else {
                            point[v.index()]
                        }
                    })
                };
                let (d0, d1, d2) = (at(0.0), at(1.0), at(2.0));
                if ((d2 - d0) - 2.0 * (d1 - d0)).abs() > 1e-9 * (1.0 + d2.abs()) {
                    let name = &self.symbol_name(st.var);
                    return Err(Diagnostic::new(
                        "equations",
                        format!(
                            "in d{name}/dt the noise '{}' must enter linearly (as g*{})",
                            self.symbol_name(xi),
                            self.symbol_name(xi)
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    fn symbol_name(&self, v: VarId) -> String {
        self.symbols[v.index()].name.clone()
    }

    fn finish(self) -> NeuronIr {
        let noise = self.vars_of_kind_local(&SymbolKind::Noise);
        let subexpressions = self.subexpr_values.into_iter().collect();
        NeuronIr {
            arena: self.arena,
            symbols: self.symbols,
            states: self.states,
            threshold: self.threshold,
            reset: self.reset,
            refractory: self.refractory,
            subexpressions,
            noise,
            held: self.held,
            dt: self.spec.dt,
            python: None,
        }
    }

    fn vars_of_kind_local(&self, kind: &SymbolKind) -> Vec<VarId> {
        (0..self.symbols.len())
            .map(VarId::at)
            .filter(|v| &self.symbols[v.index()].kind == kind)
            .collect()
    }

    fn subexpression(&mut self, name: &str, field: &str, src: &str) -> Result<ExprId, Diagnostic> {
        if let Some(e) = self.subexpr_values.get(name) {
            return Ok(*e);
        }
        let line = self.lines.iter().find(|l| l.name == name).unwrap();
        if let Some(pos) = self.in_progress.iter().position(|n| n == name) {
            let mut cycle: Vec<String> = self.in_progress[pos..].to_vec();
            cycle.push(name.to_string());
            return Err(Diagnostic::new(
                field,
                format!("cyclic subexpressions: {}", cycle.join(" -> ")),
            )
            .at(self.equations, line.name_span));
        }
        self.in_progress.push(name.to_string());
        let ast = line.expr.as_ref().unwrap();
        let (e, _) = self.expr(ast, "equations", self.equations)?;
        self.in_progress.pop();
        let _ = src;
        if line.has_flag("constant over dt") {
            if self.arena.ty(e) == Ty::Bool {
                return Err(Diagnostic::new(
                    "equations",
                    "a 'constant over dt' subexpression must be a number",
                )
                .at(self.equations, line.name_span));
            }
            let unit = line.unit.clone();
            let v = self.add_symbol(name, SymbolKind::HeldSubexpression, &unit);
            self.held.push((v, e));
        }
        self.subexpr_values.insert(name.to_string(), e);
        Ok(e)
    }

    fn unknown_name(
        &self,
        name: &str,
        span: crate::diagnostics::Span,
        field: &str,
        src: &str,
    ) -> Diagnostic {
        let mut known: Vec<&str> = self.lines.iter().map(|l| l.name.as_str()).collect();
        known.extend(self.spec.constants.keys().map(String::as_str));
        known.extend(["t", "dt", "i", "N", "not_refractory", "lastspike"]);
        let near = nearest_names(name, known.iter().copied());
        let d = Diagnostic::new(field, format!("unknown name '{name}'")).at(src, span);
        if near.is_empty() {
            d.suggest("define it in the equations (e.g. 'x : 1') or give it in constants")
        } else {
            d.suggest(format!("did you mean {}?", quote_list(&near)))
        }
    }

    fn require_real(
        &self,
        _e: ExprId,
        ty: Ty,
        ast: &Ast,
        field: &str,
        src: &str,
    ) -> Result<(), Diagnostic> {
        if ty == Ty::Bool {
            return Err(
                Diagnostic::new(field, "a condition is used where a number is expected")
                    .at(src, ast.span())
                    .suggest("use where(condition, a, b) to turn a condition into a number"),
            );
        }
        Ok(())
    }

    fn expr(&mut self, ast: &Ast, field: &str, src: &str) -> Result<(ExprId, Ty), Diagnostic> {
        Ok(match ast {
            Ast::Num(v, _) => (self.arena.constant(*v), Ty::Real),
            Ast::Bool(b, _) => (self.arena.boolean(*b), Ty::Bool),
            Ast::Name(name, span) => self.name(name, *span, field, src)?,
            Ast::Unary(UnaryOp::Neg, inner, _) => {
                let (e, ty) = self.expr(inner, field, src)?;
                self.require_real(e, ty, inner, field, src)?;
                (self.arena.neg(e), Ty::Real)
            }
            Ast::Unary(UnaryOp::Not, inner, _) => {
                let (e, ty) = self.expr(inner, field, src)?;
                self.require_bool(ty, inner, "not", field, src)?;
                (self.arena.not(e), Ty::Bool)
            }
            Ast::Binary(op, l, r, _) => {
                let (a, ta) = self.expr(l, field, src)?;
                let (b, tb) = self.expr(r, field, src)?;
                let bop = BinOp::from(*op);
                if bop.is_logical() {
                    let word = if bop == BinOp::And { "and" } else { "or" };
                    self.require_bool(ta, l, word, field, src)?;
                    self.require_bool(tb, r, word, field, src)?;
                } else {
                    self.require_real(a, ta, l, field, src)?;
                    self.require_real(b, tb, r, field, src)?;
                }
                let e = self.arena.bin(bop, a, b);
                (
                    e,
                    if bop.is_comparison() || bop.is_logical() {
                        Ty::Bool
                    } else {
                        Ty::Real
                    },
                )
            }
            Ast::Call(fname, args, span) => self.call(fname, args, *span, field, src)?,
        })
    }

    fn require_bool(
        &self,
        ty: Ty,
        ast: &Ast,
        op: &str,
        field: &str,
        src: &str,
    ) -> Result<(), Diagnostic> {
        if ty != Ty::Bool {
            return Err(Diagnostic::new(
                field,
                format!("'{op}' needs a condition, but this is a number"),
            )
            .at(src, ast.span())
            .suggest("compare it explicitly, e.g. 'x != 0'"));
        }
        Ok(())
    }

    fn name(
        &mut self,
        name: &str,
        span: crate::diagnostics::Span,
        field: &str,
        src: &str,
    ) -> Result<(ExprId, Ty), Diagnostic> {
        if self
            .lines
            .iter()
            .any(|l| l.name == name && l.kind == LineKind::Subexpression)
        {
            let e = self.subexpression(name, field, src)?;
            if let Some(&(held, _)) = self
                .held
                .iter()
                .find(|(v, _)| self.symbols[v.index()].name == name)
            {
                return Ok((self.arena.var(held), Ty::Real));
            }
            return Ok((e, self.arena.ty(e)));
        }
        if let Some(&v) = self.names.get(name) {
            let ty = if self.symbols[v.index()].kind == SymbolKind::NotRefractory {
                Ty::Bool
            } else {
                Ty::Real
            };
            return Ok((self.arena.var(v), ty));
        }
        if let Some(c) = self.spec.constants.get(name) {
            return Ok((self.arena.constant(*c), Ty::Real));
        }
        if name == "xi" || name.starts_with("xi_") {
            if field != "equations" {
                return Err(Diagnostic::new(
                    field,
                    format!("'{name}' (white noise) can only appear in the equations"),
                )
                .at(src, span));
            }
            let v = self.add_symbol(name, SymbolKind::Noise, "second**-0.5");
            return Ok((self.arena.var(v), Ty::Real));
        }
        if name == "dt" {
            return Ok((self.arena.constant(self.spec.dt), Ty::Real));
        }
        // A unit name is its value in the kernels' unit system (`-50*mV` is -50, `5*ms` is 5).
        if let Some(scale) = crate::frontend::units::unit_value(name) {
            return Ok((self.arena.constant(scale), Ty::Real));
        }
        if FUNCTIONS.contains(&name) {
            return Err(Diagnostic::new(
                field,
                format!("'{name}' is a function: call it with arguments, e.g. {name}(x)"),
            )
            .at(src, span));
        }
        Err(self.unknown_name(name, span, field, src))
    }

    fn call(
        &mut self,
        fname: &str,
        args: &[Ast],
        span: crate::diagnostics::Span,
        field: &str,
        src: &str,
    ) -> Result<(ExprId, Ty), Diagnostic> {
        let arity = match fname {
            "pow" | "min" | "max" => 2,
            "clip" | "where" => 3,
            "exprel" => 1,
            _ if Func::from_name(fname).is_some() => 1,
            _ => {
                let near = nearest_names(fname, FUNCTIONS.iter().copied());
                let mut d =
                    Diagnostic::new(field, format!("unknown function '{fname}'")).at(src, span);
                if !near.is_empty() {
                    d = d.suggest(format!("did you mean {}?", quote_list(&near)));
                }
                return Err(d);
            }
        };
        if args.len() != arity {
            return Err(Diagnostic::new(
                field,
                format!("{fname}() takes {arity} argument(s), got {}", args.len()),
            )
            .at(src, span));
        }
        let mut vals = Vec::new();
        for (k, a) in args.iter().enumerate() {
            let (e, ty) = self.expr(a, field, src)?;
            if fname == "where" && k == 0 {
                self.require_bool(ty, a, "where", field, src)?;
            } else {
                self.require_real(e, ty, a, field, src)?;
            }
            vals.push(e);
        }
        let e = match fname {
            "pow" => self.arena.bin(BinOp::Pow, vals[0], vals[1]),
            "min" => self.arena.bin(BinOp::Min, vals[0], vals[1]),
            "max" => self.arena.bin(BinOp::Max, vals[0], vals[1]),
            "clip" => {
                let lo = self.arena.bin(BinOp::Max, vals[0], vals[1]);
                self.arena.bin(BinOp::Min, lo, vals[2])
            }
            "where" => self.arena.select(vals[0], vals[1], vals[2]),
            "exprel" => self.arena.exprel(vals[0]),
            _ => self.arena.call(Func::from_name(fname).unwrap(), vals[0]),
        };
        Ok((e, Ty::Real))
    }
}

fn quote_list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(" or ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::ModelSpec;

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
        assert_eq!(ir.states.len(), 1);
        let v = ir.lookup("v").unwrap();
        let i = ir.lookup("I").unwrap();
        let d = ir.states[0].derivative;
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
        assert!(ir.states[0].unless_refractory);
        assert!(matches!(ir.refractory, RefractoryIr::Duration(_)));
    }

    #[test]
    fn unknown_name_suggests_nearest() {
        let mut s = lif_spec();
        s.dynamics =
            Dynamics::Equations("dv/dt = (v_rest - v + R*I) / tauu : volt\nI : amp".into());
        s.refractory = None;
        let e = lower(&s).unwrap_err();
        assert!(e.message.contains("unknown name 'tauu'"), "{}", e.render());
        assert_eq!(e.span.unwrap().col, 30);
        assert!(e.suggestion.unwrap().contains("'tau'"));
    }

    #[test]
    fn cyclic_subexpressions_are_reported() {
        let mut s = lif_spec();
        s.dynamics = Dynamics::Equations("dv/dt = a : 1\na = b + 1 : 1\nb = a * 2 : 1".into());
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
        s.dynamics = Dynamics::Equations("dv/dt = (v > 0) * 2 : 1\nI : 1".into());
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
            lower(&s).unwrap().refractory,
            RefractoryIr::Condition(_)
        ));
        s.refractory = Some(Refractory::Code("2*dt".into()));
        assert!(matches!(
            lower(&s).unwrap().refractory,
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
