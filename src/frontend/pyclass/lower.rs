//! A model class's `ode()` (the `neural` / NeuroDriver style, parsed by [`super::parse`]), with
//! the events given beside the class, -> [`GroupIr`] whose dynamics are explicit updates.
//!
//! The body runs once, symbolically, over the stored values of the element: every `self.x` and
//! every local is an SSA value in an environment; `if/elif/else` lowers both branches and merges
//! them with selects (a value assigned in both branches becomes `cond ? a : b`). What comes out
//! is, for each stored variable `x`, its derivative `self.d_x` (if `ode()` assigns one) and its
//! value at the end of the body ([`Update`]). The step built from them (`crate::step` and
//! docs/DESIGN.md, "Model classes") is
//!
//! ```text
//! x_next = clip(end_value(x) + (the scheme's change of x), min, max)
//! ```
//!
//! which for Euler is exactly what `neural`'s forward Euler does: `ode()` runs (its direct
//! assignments such as Oizumi's `self.g += self.NT*self.q` take effect at once), then
//! `x += dt * d_x` with the derivatives computed in that same call, then the clip.
//!
//! Python is typed loosely and the models rely on it: a comparison used as a number is 1 or 0
//! (`(self.v > 0) * self.v`), and a number used as a condition is true when non-zero
//! (`if stimulus:`). Unlike the equation front end, both are accepted here.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::parse::{parse_ode, AssignOp, OdeMethod, PyExpr, Stmt, Target, UnaryOp, FIELD};
use crate::diagnostics::{nearest_names, Diagnostic, Span};
use crate::frontend::brian::events::{lower_events, EventScope};
use crate::frontend::brian::expr::{common_name, quote_list, unknown_name, Place, Scope};
use crate::frontend::builder::{GroupBuilder, Lowered, BUILTIN_NAMES};
use crate::frontend::method::{self, Explain, Term};
use crate::frontend::{too_many_stored, MAX_STORED};
use crate::ir::{
    BinOp, Draw, Dynamics, ExprArena, ExprId, Func, GroupIr, Site, SpanTable, SymbolKind, Ty,
    Update, VarId,
};
use crate::spec::{names, numbers, Method, ModelClassSpec, ModelSpec};
use crate::types::ElemType;

/// What a name or attribute holds at a point of the body.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Binding {
    Value(ExprId, Ty, Span),
    /// Assigned on some paths through the body but not all (the span of one assignment).
    Partial(Span),
}

/// Locals under their name, attributes under `self.<name>`.
type Env = BTreeMap<String, Binding>;

/// Lowers a spec whose dynamics are the model class `class`, reporting the first error with its
/// place.
pub fn lower(spec: &ModelSpec, class: &ModelClassSpec) -> Result<GroupIr, Diagnostic> {
    let ode = parse_ode(&class.source)?;
    let mut cx = Lowering::new(spec, class, &ode)?;
    let mut env = cx.initial_env();
    cx.block(&ode.body, &mut env)?;
    let lowered = cx.finish(env)?;
    let method = method::resolve(spec, &cx.group, &lowered, &ClassTerms)?;
    cx.group
        .finish(lowered, method, spec.substeps, spec.dt, &spec.record)
}

/// Model classes name a derivative `self.d_x`; a scheme that does not apply is shown at its
/// assignment (from the span table).
struct ClassTerms;

impl Explain for ClassTerms {
    fn derivative_name(&self, x: &str) -> String {
        format!("self.d_{x}")
    }

    fn locate_term(&self, _of: VarId, _method: Method) -> Option<Term> {
        None
    }
}

struct Lowering<'a> {
    spec: &'a ModelSpec,
    class: &'a ModelClassSpec,
    src: &'a str,
    group: GroupBuilder,
    /// States then internals: the per-neuron values kept between steps.
    stored: Vec<(String, VarId)>,
    params: HashSet<&'a str>,
    args: Vec<&'a str>,
    /// Constants given as per-neuron or per-step arrays, by name.
    arrays: HashMap<String, VarId>,
    /// How deep `Scope::expr` (the events' lowering) recurses now.
    depth: usize,
}

impl<'a> Lowering<'a> {
    fn new(
        spec: &'a ModelSpec,
        class: &'a ModelClassSpec,
        ode: &'a OdeMethod,
    ) -> Result<Self, Diagnostic> {
        let mut cx = Lowering {
            spec,
            class,
            src: &class.source,
            group: GroupBuilder::default(),
            stored: Vec::new(),
            params: class.params.iter().map(String::as_str).collect(),
            args: ode.args.iter().map(|a| a.name.as_str()).collect(),
            arrays: HashMap::new(),
            depth: 0,
        };
        for a in &ode.args {
            if let Some(message) = names::invalid(&a.name) {
                return Err(Diagnostic::new(FIELD, message).at(&class.source, a.span));
            }
        }
        // One name, one meaning: the state dict and the constants share a namespace.
        let mut seen: HashMap<&str, &str> = HashMap::new();
        let groups: [(&str, Vec<&str>); 4] = [
            (
                "Default_States",
                class.states.iter().map(|s| s.name.as_str()).collect(),
            ),
            (
                "Default_Inters",
                class.internals.iter().map(String::as_str).collect(),
            ),
            (
                "Default_Params",
                class.params.iter().map(String::as_str).collect(),
            ),
            ("the arguments of ode()", cx.args.clone()),
        ];
        for (group, names) in &groups {
            for name in names {
                if let Some(prev) = seen.insert(name, group) {
                    let d = Diagnostic::new(
                        "model_class",
                        format!(
                            "'{name}' is both in {prev} and in {group}: give them different names"
                        ),
                    );
                    return Err(match ode.args.iter().find(|a| a.name == *name) {
                        Some(a) => Diagnostic::new(FIELD, d.message).at(&class.source, a.span),
                        None => d,
                    });
                }
                if name.starts_with("sf_") || name.starts_with("__") || name.is_empty() {
                    return Err(Diagnostic::new(
                        "model_class",
                        format!("'{name}' is a reserved name (names starting with 'sf_' or '__')"),
                    ));
                }
            }
        }
        let stored = class.states.len() + class.internals.len();
        if stored > MAX_STORED {
            return Err(too_many_stored("model_class", stored));
        }
        for s in &class.states {
            if let (Some(lo), Some(hi)) = (s.min, s.max) {
                if lo > hi {
                    return Err(Diagnostic::new(
                        "model_class",
                        format!("the bounds of '{}' are empty: min {lo} > max {hi}", s.name),
                    ));
                }
            }
        }
        for name in class
            .params
            .iter()
            .map(String::as_str)
            .chain(cx.args.iter().copied())
        {
            if !spec.constants.contains_key(name) {
                let d = Diagnostic::new(
                    FIELD,
                    format!("'{name}' has no value: give the parameter a value in Default_Params, or the ode() argument a default"),
                );
                return Err(match ode.args.iter().find(|a| a.name == name) {
                    Some(a) => d.at(&class.source, a.span),
                    None => d,
                });
            }
        }
        for name in spec.per_neuron.iter().chain(&spec.per_step) {
            let is_constant = class.params.contains(name) || cx.args.contains(&name.as_str());
            if !is_constant || !spec.constants.contains_key(name) {
                return Err(Diagnostic::new(
                    "inputs",
                    format!("'{name}' is given as an array but is neither a parameter nor an argument of ode()"),
                ));
            }
        }
        let names: Vec<String> = class
            .states
            .iter()
            .map(|s| s.name.clone())
            .chain(class.internals.iter().cloned())
            .collect();
        for name in names {
            let v = cx.add_symbol(&name, SymbolKind::State);
            cx.stored.push((name, v));
        }
        for name in &spec.per_neuron {
            let v = cx.add_symbol(name, SymbolKind::PerNeuronConstant);
            cx.arrays.insert(name.clone(), v);
        }
        for name in &spec.per_step {
            let v = cx.add_symbol(name, SymbolKind::PerStep);
            cx.arrays.insert(name.clone(), v);
        }
        cx.group.add_builtins();
        Ok(cx)
    }

    fn add_symbol(&mut self, name: &str, kind: SymbolKind) -> VarId {
        self.group.add_symbol(name, kind, "")
    }

    fn error(&self, span: Span, msg: impl Into<String>) -> Diagnostic {
        Diagnostic::new(FIELD, msg).at(self.src, span)
    }

    /// Every stored variable starts as its stored value.
    fn initial_env(&mut self) -> Env {
        let mut env = Env::new();
        for (name, v) in self.stored.clone() {
            let e = self.group.arena.var(v);
            env.insert(
                format!("self.{name}"),
                Binding::Value(e, Ty::Real, Span::default()),
            );
        }
        env
    }

    fn is_stored(&self, name: &str) -> bool {
        self.stored.iter().any(|(n, _)| n == name)
    }

    fn is_state(&self, name: &str) -> bool {
        self.class.states.iter().any(|s| s.name == name)
    }

    /// A parameter or an argument of ode(): folded, or read from its per-neuron / per-step array.
    fn constant(&mut self, name: &str) -> ExprId {
        if let Some(&v) = self.arrays.get(name) {
            return self.group.arena.var(v);
        }
        self.group.arena.constant(self.spec.constants[name])
    }

    fn real(&mut self, (e, ty): (ExprId, Ty)) -> ExprId {
        match ty {
            Ty::Real => e,
            // Python: True * x == x, False * x == 0.
            Ty::Bool => {
                let (one, zero) = (
                    self.group.arena.constant(1.0),
                    self.group.arena.constant(0.0),
                );
                self.group.arena.select(e, one, zero)
            }
        }
    }

    fn condition(&mut self, (e, ty): (ExprId, Ty)) -> ExprId {
        match ty {
            Ty::Bool => e,
            // Python: a number is true when it is not zero.
            Ty::Real => {
                let zero = self.group.arena.constant(0.0);
                self.group.arena.bin(BinOp::Ne, e, zero)
            }
        }
    }

    fn block(&mut self, body: &[Stmt], env: &mut Env) -> Result<(), Diagnostic> {
        for st in body {
            match st {
                Stmt::Assign {
                    target,
                    span,
                    op,
                    value,
                } => self.assign(target, *span, *op, value, env)?,
                Stmt::If { branches, orelse } => self.if_chain(branches, orelse, env)?,
            }
        }
        Ok(())
    }

    /// `if c1: b1 elif c2: b2 ... else: orelse`: every branch runs on the environment before
    /// the statement (conditions have no effects), then the environments merge from the last
    /// branch outwards, `c1 ? b1 : (c2 ? b2 : ... orelse)`. A loop, not a recursion over the
    /// `elif`s, whatever their number; nodes are made in the order a recursion would make them.
    fn if_chain(
        &mut self,
        branches: &[(PyExpr, Vec<Stmt>)],
        orelse: &[Stmt],
        env: &mut Env,
    ) -> Result<(), Diagnostic> {
        let mut taken: Vec<(ExprId, Env)> = Vec::with_capacity(branches.len());
        for (cond, body) in branches {
            let c = self.ode_expr(cond, env)?;
            let c = self.condition(c);
            let mut then_env = env.clone();
            self.block(body, &mut then_env)?;
            taken.push((c, then_env));
        }
        let mut merged = env.clone();
        self.block(orelse, &mut merged)?;
        for (c, then_env) in taken.into_iter().rev() {
            merged = self.merge(c, &then_env, &merged);
        }
        *env = merged;
        Ok(())
    }

    /// The environment after `c ? then_env : else_env`.
    fn merge(&mut self, c: ExprId, then_env: &Env, else_env: &Env) -> Env {
        let keys: Vec<String> = then_env.keys().chain(else_env.keys()).cloned().collect();
        let mut merged = Env::new();
        for key in keys {
            if merged.contains_key(&key) {
                continue;
            }
            let b = match (then_env.get(&key), else_env.get(&key)) {
                (Some(Binding::Value(a, ta, sa)), Some(Binding::Value(b, tb, _))) => {
                    if ta == tb {
                        Binding::Value(self.group.arena.select(c, *a, *b), *ta, *sa)
                    } else {
                        let a = self.real((*a, *ta));
                        let b = self.real((*b, *tb));
                        Binding::Value(self.group.arena.select(c, a, b), Ty::Real, *sa)
                    }
                }
                (Some(Binding::Value(_, _, s)), _)
                | (_, Some(Binding::Value(_, _, s)))
                | (Some(Binding::Partial(s)), _)
                | (_, Some(Binding::Partial(s))) => Binding::Partial(*s),
                (None, None) => unreachable!("the key came from one of the two"),
            };
            merged.insert(key, b);
        }
        merged
    }

    fn assign(
        &mut self,
        target: &Target,
        span: Span,
        op: AssignOp,
        value: &PyExpr,
        env: &mut Env,
    ) -> Result<(), Diagnostic> {
        let key = match target {
            Target::Local(name) => name.clone(),
            Target::SelfAttr(attr) => {
                self.check_attribute_target(attr, span)?;
                format!("self.{attr}")
            }
        };
        let rhs = self.ode_expr(value, env)?;
        let new = match op {
            AssignOp::Set => match target {
                // Locals keep truth values (`spiking = self.v > 0`); stored values are numbers.
                Target::Local(_) => rhs,
                Target::SelfAttr(_) => (self.real(rhs), Ty::Real),
            },
            _ => {
                let old = match env.get(&key) {
                    Some(Binding::Value(e, ty, _)) => (*e, *ty),
                    Some(Binding::Partial(_)) => {
                        return Err(self.error(
                            span,
                            format!("'{}' is not assigned on every path before this update", key),
                        ))
                    }
                    None => {
                        return Err(
                            self.error(span, format!("'{}' is updated before it is assigned", key))
                        )
                    }
                };
                let (a, b) = (self.real(old), self.real(rhs));
                let bop = match op {
                    AssignOp::Add => BinOp::Add,
                    AssignOp::Sub => BinOp::Sub,
                    AssignOp::Mul => BinOp::Mul,
                    AssignOp::Div => BinOp::Div,
                    AssignOp::Set => unreachable!(),
                };
                (self.group.arena.bin(bop, a, b), Ty::Real)
            }
        };
        env.insert(key, Binding::Value(new.0, new.1, span));
        Ok(())
    }

    /// `self.x = ...` must name a stored variable, `self.d_x = ...` a state.
    fn check_attribute_target(&self, attr: &str, span: Span) -> Result<(), Diagnostic> {
        if self.is_stored(attr) {
            return Ok(());
        }
        if let Some(x) = attr.strip_prefix("d_") {
            if self.is_state(x) {
                return Ok(());
            }
            if self.class.internals.iter().any(|i| i == x) {
                return Err(self.error(span, format!("'{x}' is an internal (Default_Inters), which is not integrated: it has no derivative"))
                    .suggest(format!("move '{x}' to Default_States to integrate it")));
            }
        }
        if self.params.contains(attr) {
            return Err(self.error(span, format!("cannot assign to '{attr}': it is a parameter (Default_Params), read-only in ode()"))
                .suggest(format!("declare '{attr}' in Default_Inters to keep a per-neuron value that ode() writes")));
        }
        if self.args.contains(&attr) {
            return Err(self.error(
                span,
                format!(
                    "'{attr}' is an argument of ode(), not an attribute: assign it without 'self.'"
                ),
            ));
        }
        let mut known: Vec<String> = self.stored.iter().map(|(n, _)| n.clone()).collect();
        known.extend(self.class.states.iter().map(|s| format!("d_{}", s.name)));
        let near = nearest_names(attr, known.iter().map(String::as_str));
        let d = if let Some(x) = attr.strip_prefix("d_") {
            self.error(
                span,
                format!(
                    "cannot assign the derivative 'self.d_{x}': '{x}' is not in Default_States"
                ),
            )
        } else {
            self.error(
                span,
                format!(
                    "cannot assign to 'self.{attr}': it is not in Default_States or Default_Inters"
                ),
            )
        };
        Err(if near.is_empty() {
            d.suggest(format!("declare '{attr}' in Default_Inters (a per-neuron value ode() writes) or Default_States"))
        } else {
            d.suggest(format!("did you mean {}?", quote_self(&near)))
        })
    }

    fn ode_expr(&mut self, e: &PyExpr, env: &Env) -> Result<(ExprId, Ty), Diagnostic> {
        Ok(match e {
            PyExpr::Num(v, span) => {
                if let Some(why) = numbers::problem(*v, self.spec.dtype) {
                    return Err(self.error(*span, format!("the number {v:e} {why}")));
                }
                (self.group.arena.constant(*v), Ty::Real)
            }
            PyExpr::Bool(b, _) => (self.group.arena.boolean(*b), Ty::Bool),
            PyExpr::Name(name, span) => self.read_name(name, *span, env)?,
            PyExpr::SelfAttr(attr, span) => self.read_attribute(attr, *span, env)?,
            PyExpr::Unary(UnaryOp::Neg, inner, _) => {
                let v = self.ode_expr(inner, env)?;
                let v = self.real(v);
                (self.group.arena.neg(v), Ty::Real)
            }
            PyExpr::Unary(UnaryOp::Not, inner, _) => {
                let v = self.ode_expr(inner, env)?;
                let c = self.condition(v);
                (self.group.arena.not(c), Ty::Bool)
            }
            PyExpr::Binary(op, l, r, _) => {
                let a = self.ode_expr(l, env)?;
                let b = self.ode_expr(r, env)?;
                let bop = *op;
                let (a, b) = if bop.is_logical() {
                    (self.condition(a), self.condition(b))
                } else {
                    (self.real(a), self.real(b))
                };
                let ty = if bop.is_logical() || bop.is_comparison() {
                    Ty::Bool
                } else {
                    Ty::Real
                };
                (self.group.arena.bin(bop, a, b), ty)
            }
            PyExpr::IfElse(cond, a, b, _) => {
                let c = self.ode_expr(cond, env)?;
                let c = self.condition(c);
                let a = self.ode_expr(a, env)?;
                let b = self.ode_expr(b, env)?;
                if a.1 == Ty::Bool && b.1 == Ty::Bool {
                    (self.group.arena.select(c, a.0, b.0), Ty::Bool)
                } else {
                    let (a, b) = (self.real(a), self.real(b));
                    (self.group.arena.select(c, a, b), Ty::Real)
                }
            }
            PyExpr::Call(f, args, _) => {
                let mut vals = Vec::new();
                for (k, a) in args.iter().enumerate() {
                    let v = self.ode_expr(a, env)?;
                    vals.push(if f == "where" && k == 0 {
                        self.condition(v)
                    } else {
                        self.real(v)
                    });
                }
                let e = match f.as_str() {
                    "power" => self.group.arena.bin(BinOp::Pow, vals[0], vals[1]),
                    "minimum" => self.group.arena.bin(BinOp::Min, vals[0], vals[1]),
                    "maximum" => self.group.arena.bin(BinOp::Max, vals[0], vals[1]),
                    "clip" => {
                        let lo = self.group.arena.bin(BinOp::Max, vals[0], vals[1]);
                        self.group.arena.bin(BinOp::Min, lo, vals[2])
                    }
                    "where" => self.group.arena.select(vals[0], vals[1], vals[2]),
                    other => {
                        let func = Func::from_name(other)
                            .expect("the parser only accepts functions the IR has");
                        self.group.arena.call(func, vals[0])
                    }
                };
                (e, Ty::Real)
            }
        })
    }

    fn read_name(&mut self, name: &str, span: Span, env: &Env) -> Result<(ExprId, Ty), Diagnostic> {
        match env.get(name) {
            Some(Binding::Value(e, ty, _)) => return Ok((*e, *ty)),
            Some(Binding::Partial(_)) => {
                return Err(self
                    .error(
                        span,
                        format!("'{name}' is not assigned on every path before it is used here"),
                    )
                    .suggest("assign it before the 'if', or in every branch"))
            }
            None => {}
        }
        if self.args.contains(&name) {
            return Ok((self.constant(name), Ty::Real));
        }
        if self.is_stored(name) || self.params.contains(name) {
            return Err(self
                .error(span, format!("unknown name '{name}'"))
                .suggest(format!("did you mean 'self.{name}'?")));
        }
        let mut known: Vec<&str> = env
            .keys()
            .filter(|k| !k.starts_with("self."))
            .map(String::as_str)
            .collect();
        known.extend(self.args.iter().copied());
        let near = nearest_names(name, known);
        let d = self.error(span, format!("unknown name '{name}'"));
        Err(if near.is_empty() {
            d.suggest("assign it first, or read a state or parameter as 'self.x'")
        } else {
            d.suggest(format!("did you mean {}?", quote_list(&near)))
        })
    }

    fn read_attribute(
        &mut self,
        attr: &str,
        span: Span,
        env: &Env,
    ) -> Result<(ExprId, Ty), Diagnostic> {
        let key = format!("self.{attr}");
        match env.get(&key) {
            Some(Binding::Value(e, ty, _)) => return Ok((*e, *ty)),
            Some(Binding::Partial(_)) => {
                return Err(self.error(
                    span,
                    format!("'self.{attr}' is not assigned on every path before it is used here"),
                ))
            }
            None => {}
        }
        if self.params.contains(attr) {
            return Ok((self.constant(attr), Ty::Real));
        }
        if let Some(x) = attr.strip_prefix("d_") {
            if self.is_state(x) {
                return Err(self.error(
                    span,
                    format!("the derivative 'self.d_{x}' is read before ode() assigns it"),
                ));
            }
        }
        if self.args.contains(&attr) {
            return Err(self
                .error(
                    span,
                    format!("'{attr}' is an argument of ode(), not an attribute"),
                )
                .suggest(format!("write '{attr}' without 'self.'")));
        }
        let known: Vec<&str> = self
            .stored
            .iter()
            .map(|(n, _)| n.as_str())
            .chain(self.params.iter().copied())
            .collect();
        let near = nearest_names(attr, known);
        let d = self.error(span, format!("unknown attribute 'self.{attr}': not in Default_States, Default_Inters or Default_Params"));
        Err(if near.is_empty() {
            d
        } else {
            d.suggest(format!("did you mean {}?", quote_self(&near)))
        })
    }

    /// The updates `ode()` gives, then the events beside the class.
    fn finish(&mut self, env: Env) -> Result<Lowered, Diagnostic> {
        let mut updates = Vec::new();
        for (name, var) in self.stored.clone() {
            let Some(Binding::Value(end, _, _)) = env.get(&format!("self.{name}")).copied() else {
                let span = match env.get(&format!("self.{name}")) {
                    Some(Binding::Partial(s)) => *s,
                    _ => Span::default(),
                };
                return Err(
                    self.error(span, format!("'self.{name}' is not assigned on every path"))
                );
            };
            let derivative = match env.get(&format!("self.d_{name}")) {
                Some(Binding::Value(d, _, span)) => {
                    self.group
                        .spans
                        .insert(Site::Dynamics(var), FIELD, self.src, *span);
                    Some(*d)
                }
                Some(Binding::Partial(span)) => {
                    return Err(self
                        .error(*span, format!("the derivative 'self.d_{name}' is assigned on some paths through ode() but not all"))
                        .suggest("assign it in every branch (e.g. 'self.d_x = 0.' in the else branch)"))
                }
                None => None,
            };
            let bounds = self
                .class
                .states
                .iter()
                .find(|s| s.name == name)
                .map_or((None, None), |s| (s.min, s.max));
            updates.push(Update {
                var,
                derivative,
                end_value: end,
                bounds,
            });
        }
        self.check_record()?;
        let events = lower_events(self, self.spec)?;
        Ok(Lowered {
            dynamics: Dynamics::Updates(updates),
            events,
            subexpressions: Default::default(),
            held: Vec::new(),
            noise: Vec::new(),
        })
    }

    fn check_record(&self) -> Result<(), Diagnostic> {
        for name in &self.spec.record {
            let ok = self.is_stored(name)
                || self.spec.per_step.contains(name)
                || ["t", "lastspike", "not_refractory"].contains(&name.as_str());
            if !ok {
                let known: Vec<&str> = self.stored.iter().map(|(n, _)| n.as_str()).collect();
                let near = nearest_names(name, known);
                let mut d = Diagnostic::new(
                    "record",
                    format!("cannot record '{name}': only states, internals, per-step inputs, t, lastspike and not_refractory can be recorded"),
                );
                if !near.is_empty() {
                    d = d.suggest(format!("did you mean {}?", quote_list(&near)));
                }
                return Err(d);
            }
        }
        Ok(())
    }
}

/// The events beside a model class are Brian2-syntax code over the class's names: its states
/// and internals (without `self.`), its parameters and the arguments of `ode()` (constants), and
/// the names every group has (`t`, `dt`, `i`, `N`, `not_refractory`, `lastspike`, units).
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

    fn draw(&mut self, draw: Draw, _at: Place) -> Result<ExprId, Diagnostic> {
        Ok(self.group.draw(draw))
    }

    fn name(&mut self, name: &str, at: Place) -> Result<(ExprId, Ty), Diagnostic> {
        if self.params.contains(name) || self.args.contains(&name) {
            return Ok((self.constant(name), Ty::Real));
        }
        if let Some(found) = self.group.symbol_value(name) {
            return Ok(found);
        }
        if let Some(found) = common_name(&mut self.group.arena, self.spec.dt, name, at) {
            return found;
        }
        Err(self.unknown_event_name(name, at))
    }
}

impl EventScope for Lowering<'_> {
    fn reset_target(&self, name: &str, span: Span, code: &str) -> Result<(VarId, Ty), Diagnostic> {
        if let Some((_, v)) = self.stored.iter().find(|(n, _)| n == name) {
            return Ok((*v, Ty::Real));
        }
        if self.params.contains(name) || self.args.contains(&name) {
            return Err(Diagnostic::new(
                "reset",
                format!("cannot assign to '{name}': it is a constant (a parameter or an argument of ode())"),
            )
            .at(code, span)
            .suggest("declare it in Default_Inters to keep a per-neuron value the reset writes"));
        }
        if self.group.names.contains_key(name) {
            return Err(Diagnostic::new(
                "reset",
                format!("cannot assign to '{name}': only states and internals can be reset"),
            )
            .at(code, span));
        }
        Err(self.unknown_event_name(
            name,
            Place {
                field: "reset",
                src: code,
                span,
            },
        ))
    }

    fn spans(&mut self) -> &mut SpanTable {
        &mut self.group.spans
    }
}

impl Lowering<'_> {
    fn unknown_event_name(&self, name: &str, at: Place) -> Diagnostic {
        let mut known: Vec<&str> = self.stored.iter().map(|(n, _)| n.as_str()).collect();
        known.extend(self.params.iter().copied());
        known.extend(self.args.iter().copied());
        known.extend(BUILTIN_NAMES.iter().filter(|n| **n != "xi"));
        let bare = name.strip_prefix("self.").unwrap_or(name);
        unknown_name(
            bare,
            at,
            known,
            "use a state, an internal, a parameter or an argument of ode() of the class",
        )
    }
}

fn quote_self(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("'self.{n}'"))
        .collect::<Vec<_>>()
        .join(" or ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontend::lower;
    use crate::spec::Dynamics as SpecDynamics;

    fn updates(ir: &GroupIr) -> &[Update] {
        match &ir.dynamics {
            Dynamics::Updates(u) => u,
            Dynamics::Odes(_) => panic!("a model class lowers to updates"),
        }
    }

    fn spec(
        source: &str,
        states: &[(&str, Option<f64>, Option<f64>)],
        internals: &[&str],
        params: &[(&str, f64)],
        args: &[(&str, f64)],
    ) -> ModelSpec {
        let mut class = ModelClassSpec::new("Test", source)
            .internals(internals.iter().copied())
            .params(params.iter().map(|(k, _)| *k));
        for (name, lo, hi) in states {
            class = class.state(*name, *lo, *hi);
        }
        ModelSpec::from_class(class, 0.1)
            .constants(params.iter().chain(args).copied())
            .method(Method::Euler)
    }

    /// The seed's Oizumi class with `f` folded, integrated with Euler.
    fn oizumi() -> ModelSpec {
        let mut spec = crate::spec::seed000_oizumi().method(Method::Euler);
        spec.per_neuron.clear();
        spec.per_step.clear();
        spec.record.clear();
        spec
    }

    #[test]
    fn oizumi_lowers_with_internals_and_jumps() {
        let mut s = oizumi();
        s.per_step = vec!["input".into()];
        let ir = lower(&s).unwrap();
        let up = updates(&ir);
        let names: Vec<&str> = up.iter().map(|u| ir.symbol(u.var).name.as_str()).collect();
        assert_eq!(names, ["N", "g", "p", "NT"]);
        let integrated: Vec<bool> = up.iter().map(|u| u.derivative.is_some()).collect();
        assert_eq!(integrated, [true, true, false, false]);
        let (n, g, input) = (
            ir.lookup("N").unwrap(),
            ir.lookup("g").unwrap(),
            ir.lookup("input").unwrap(),
        );
        let at = |inp: f64| {
            move |v: VarId| {
                if v == n {
                    40.0
                } else if v == g {
                    2.0
                } else if v == input {
                    inp
                } else {
                    0.0
                }
            }
        };
        let p = 0.79 * (-0.0035f64).exp();
        // With a spike: N loses N*p, g gains N*p*q; NT holds N*p.
        assert!((ir.arena.eval(up[0].end_value, &at(1.0)) - (40.0 - 40.0 * p)).abs() < 1e-12);
        assert!((ir.arena.eval(up[1].end_value, &at(1.0)) - (2.0 + 40.0 * p * 1.07)).abs() < 1e-12);
        assert!((ir.arena.eval(up[3].end_value, &at(1.0)) - 40.0 * p).abs() < 1e-12);
        assert_eq!(ir.arena.eval(up[3].end_value, &at(0.0)), 0.0);
        assert!((ir.arena.eval(up[2].end_value, &at(0.0)) - p).abs() < 1e-12);
        // Derivatives see N before the jump.
        assert!((ir.arena.eval(up[0].derivative.unwrap(), &at(1.0)) - 121.0 / 100.0).abs() < 1e-12);
        assert_eq!(up[1].bounds, (Some(0.0), Some(1000.0)));
        assert_eq!(up[2].bounds, (None, None));
    }

    #[test]
    fn derivative_in_both_branches_becomes_a_select_and_bools_are_numbers() {
        let src = "def ode(self):\n    a = self.v - 1.\n    if abs(a) <= 1e-7:\n        self.d_v = 1.\n    elif a > 0:\n        self.d_v = (a > 1) * a\n    else:\n        self.d_v = -a\n";
        let ir = lower(&spec(src, &[("v", None, None)], &[], &[], &[])).unwrap();
        let d = updates(&ir)[0].derivative.unwrap();
        let at = |x: f64| move |_: VarId| x;
        assert_eq!(ir.arena.eval(d, &at(1.0)), 1.0);
        assert_eq!(ir.arena.eval(d, &at(1.5)), 0.0);
        assert_eq!(ir.arena.eval(d, &at(3.0)), 2.0);
        assert_eq!(ir.arena.eval(d, &at(0.0)), 1.0);
    }

    fn lower_error(src: &str) -> Diagnostic {
        lower(&spec(
            src,
            &[("v", None, None)],
            &["w"],
            &[("tau", 10.0)],
            &[("I", 0.0)],
        ))
        .unwrap_err()
    }

    #[test]
    fn mistakes_are_located_and_explained() {
        let cases: &[(&str, &str, usize)] = &[
            (
                "    self.d_v = -self.vv / self.tau\n",
                "unknown attribute 'self.vv'",
                2,
            ),
            ("    self.d_v = -v\n", "did you mean 'self.v'", 2),
            ("    self.tau = 1.\n", "it is a parameter", 2),
            ("    self.d_w = 1.\n", "internal (Default_Inters)", 2),
            ("    self.d_x = 1.\n", "'x' is not in Default_States", 2),
            (
                "    if I > 0:\n        self.d_v = 1.\n",
                "assigned on some paths",
                3,
            ),
            (
                "    if I > 0:\n        y = 1.\n    self.d_v = y\n",
                "'y' is not assigned on every path",
                4,
            ),
            ("    self.d_v = self.I\n", "argument of ode()", 2),
            (
                "    self.d_v = self.d_v + 1\n",
                "read before ode() assigns it",
                2,
            ),
        ];
        for (body, needle, line) in cases {
            let e = lower_error(&format!("def ode(self, I=0.):\n{body}"));
            assert!(
                e.message.contains(needle)
                    || e.suggestion.as_deref().is_some_and(|s| s.contains(needle)),
                "{body:?}: {}",
                e.render()
            );
            assert_eq!(
                e.span.map(|s| s.line),
                Some(*line),
                "{body:?}: {}",
                e.render()
            );
        }
    }

    /// Deterministic mutations of a real model (characters deleted, duplicated, replaced) never
    /// panic: every outcome is a model or a located diagnostic.
    #[test]
    fn mutated_sources_never_panic() {
        let base = oizumi();
        let src: Vec<char> = crate::spec::seed000_oizumi_source().chars().collect();
        let alphabet: Vec<char> = "()[]{}:.,=+-*/<>!#'\"\\ \n\tabcdefgselfnp0123456789_"
            .chars()
            .collect();
        let mut seed = 0x9e3779b97f4a7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..3000 {
            let mut s = src.clone();
            for _ in 0..(1 + next() % 3) {
                let at = (next() as usize) % s.len();
                match next() % 3 {
                    0 => {
                        s.remove(at);
                    }
                    1 => s.insert(at, alphabet[(next() as usize) % alphabet.len()]),
                    _ => s[at] = alphabet[(next() as usize) % alphabet.len()],
                }
            }
            let mut spec = base.clone();
            let SpecDynamics::ModelClass(class) = &mut spec.dynamics else {
                unreachable!("oizumi() is a model class")
            };
            class.source = s.into_iter().collect();
            match lower(&spec) {
                Ok(ir) => {
                    let _ = crate::codegen::generate(&ir, &spec, crate::codegen::Dialect::C);
                }
                Err(d) => {
                    let _ = d.render();
                }
            }
        }
    }
}
