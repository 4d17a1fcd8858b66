//! Brian2's `Synapses`: the synapse model (per-synapse parameters, `(shared)` ones,
//! subexpressions, `(event-driven)` variables), the `on_pre` and `on_post` statements and the
//! delay -> [`SynapsesIr`].
//!
//! Names in `on_pre` and `on_post` resolve as in Brian2: the synapse group's own variables first;
//! `x_pre` and `x_post` are variables of the source and target groups; a bare name the target
//! group has is the target's (`ge += w` is `ge_post += w`, in both pathways); then the
//! projection's constants, `i` and `j` (the pre- and postsynaptic indices within the (sub)groups),
//! `N_pre`, `N_post`, `t`, `dt`, units. `lastspike_pre` / `lastspike_post` are the neighbours'
//! last spike times. `on_post` may not assign the presynaptic side (each postsynaptic spike
//! runs over the synapses onto one neuron, from any source neuron).
//!
//! An `(event-driven)` variable must be linear with constant coefficients (`dx/dt = a*x + b`):
//! each pathway starts with its exact solution over `t - lastupdate` and ends with
//! `lastupdate = t`, as Brian2's `SynapticPathway` does.
//!
//! A `(clock-driven)` variable (or a differential equation without a flag, as in Brian2) is
//! integrated every step by the integrators of neuron groups (the projection's `method`, or
//! Brian2's choice). A `(summed)` variable (`g_post = g_syn : 1 (summed)`) sets a parameter of
//! the target (`_post`) or source (`_pre`) group to the sum over each neuron's synapses, with
//! Brian2's rules: the variable exists and is a parameter of that group (not integrated, not
//! shared, not constant), and one projection sums onto it once. Neither may depend on an
//! `(event-driven)` variable (Brian2's rule).

use std::collections::{HashMap, HashSet};

use super::equations::{parse_equations_with_flags, subexpression_cycle, EquationLine, LineKind};
use super::expr::{common_name, quote_list, require_real, unknown_name, Place, Scope};
use crate::diagnostics::{nearest_names, Diagnostic, Span};
use crate::frontend::builder::{GroupBuilder, Lowered};
use crate::frontend::syntax::ast::{AssignOp, Ast};
use crate::frontend::syntax::parser::{parse_expression, parse_statements};
use crate::integrators::choice;
use crate::ir::derivative::derivative;
use crate::ir::synapses::{
    DelayIr, Effect, Pathway, PathwayIr, Side, Statement, Summed, SynapsesIr,
};
use crate::ir::{
    Dynamics, Events, ExprArena, ExprId, Func, GroupIr, IndexOf, Site, StateEq, SymbolKind, Ty,
    VarId,
};
use crate::spec::network::{DelaySpec, NumberOrExpr, PathwayCode, ProjectionSpec};
use crate::spec::{names, Method};
use crate::types::ElemType;

/// The longest delay a spike queue holds, in steps (6.5 s at dt = 0.1 ms).
pub const MAX_DELAY_STEPS: u32 = 65_535;

/// The longest per-synapse delay, in steps (a delivery walks every delay step up to it).
pub const MAX_PER_SYNAPSE_DELAY_STEPS: u32 = 4095;

/// What issue 11 brings later, and the place it is refused.
const NEXT_ISSUE: &str = "not supported yet (issue 11)";

/// The flags of a synapse model that neuron models do not have, as the equation parser reads
/// them (one word: the model's `event-driven` is rewritten to `event_driven`, same length).
const SYNAPSE_FLAGS: &[&str] = &["event_driven", "clock_driven", "summed"];

/// The per-synapse time of the last event (Brian2's `lastupdate`), kept with `(event-driven)`
/// variables.
const LASTUPDATE: &str = "lastupdate";

/// A group on one side of a projection, as the synapses see it.
pub struct Neighbour<'a> {
    /// How messages name it (`NeuronGroup 'P'`).
    pub describe: String,
    /// Its IR, for a neuron group; spike sources have no variables.
    pub ir: Option<&'a GroupIr>,
    pub n: usize,
    /// Its variables flagged `(constant)`, which synapses may read but not assign.
    pub constant: HashSet<String>,
}

impl Neighbour<'_> {
    /// The variable `name` of the group, if it has one a synapse may refer to.
    fn var(&self, name: &str) -> Option<VarId> {
        let ir = self.ir?;
        let v = ir.lookup(name)?;
        match ir.symbol(v).kind {
            SymbolKind::State
            | SymbolKind::Param
            | SymbolKind::PerNeuronConstant
            | SymbolKind::LastSpike => Some(v),
            _ => None,
        }
    }

    /// The names a synapse may read (for suggestions).
    fn names(&self) -> Vec<String> {
        let Some(ir) = self.ir else {
            return Vec::new();
        };
        ir.symbols
            .iter()
            .filter(|s| {
                matches!(
                    s.kind,
                    SymbolKind::State | SymbolKind::Param | SymbolKind::PerNeuronConstant
                )
            })
            .map(|s| s.name.clone())
            .collect()
    }
}

/// Lowers one projection's synapse model, pathways and delay. Errors name the field (`model`,
/// `on_pre`, `on_post`, `delay`, `max_delay`); the caller adds the projection's name.
pub fn lower(
    spec: &ProjectionSpec,
    pre: &Neighbour,
    post: &Neighbour,
    dt: f64,
    dtype: ElemType,
) -> Result<SynapsesIr, Diagnostic> {
    // `(event-driven)` and `(clock-driven)` as one word each, at the same columns.
    let model = spec
        .model
        .replace("event-driven", "event_driven")
        .replace("clock-driven", "clock_driven");
    let lines = if model.trim().is_empty() {
        Vec::new()
    } else {
        parse_equations_with_flags(&model, SYNAPSE_FLAGS).map_err(|mut d| {
            d.field = "model".into();
            d
        })?
    };
    let mut cx = SynapseScope::new(spec, &lines, pre, post, dt, dtype)?;
    let event_driven = cx.event_driven_updates()?;
    let pathways = cx.pathways(&event_driven)?;
    let clock_driven = cx.clock_driven()?;
    let summed = cx.summed()?;
    let event_driven: Vec<VarId> = event_driven.iter().map(|(v, _)| *v).collect();
    cx.check_dynamics(&clock_driven, &summed, &event_driven)?;
    let dynamics = Dynamics::Odes(clock_driven);
    let method = cx.method(&dynamics)?;
    let subexpressions = std::mem::take(&mut cx.subexpr_values).into_iter().collect();
    let lowered = Lowered {
        dynamics,
        events: Events::none(),
        subexpressions,
        held: Vec::new(),
        noise: Vec::new(),
    };
    let group = cx.group.finish(lowered, method, 1, dt, &[])?;
    Ok(SynapsesIr {
        clock_driven: group.stored(),
        group,
        pathways,
        event_driven,
        summed,
    })
}

/// The field a pathway's statements are written in: `on_pre` for a single text, `on_pre['up']`
/// for a named one.
fn field_of(kind: Pathway, code: &PathwayCode, name: &str) -> String {
    let base = match kind {
        Pathway::Pre => "on_pre",
        Pathway::Post => "on_post",
    };
    match code {
        PathwayCode::One(_) => base.into(),
        PathwayCode::Named(_) => format!("{base}['{name}']"),
    }
}

/// The field a pathway's delay is given in.
fn delay_field(delay: &DelaySpec, name: &str) -> String {
    match delay {
        DelaySpec::One(_) => "delay".into(),
        DelaySpec::Named(_) => format!("delay['{name}']"),
    }
}

/// Names in a synapse group with a built-in meaning.
const SYNAPSE_BUILTINS: &[&str] = &["t", "dt", "i", "j", "N_pre", "N_post", "N", "xi"];

struct SynapseScope<'a> {
    spec: &'a ProjectionSpec,
    lines: &'a [EquationLine],
    pre: &'a Neighbour<'a>,
    post: &'a Neighbour<'a>,
    dt: f64,
    group: GroupBuilder,
    /// The symbols made so far for neighbours' variables.
    neighbours: HashMap<(IndexOf, VarId), VarId>,
    subexpr_values: HashMap<String, ExprId>,
    in_progress: Vec<String>,
    /// The network's precision: every number the text writes must fit it.
    dtype: ElemType,
    /// How deep lowering recurses now (`Scope::depth`).
    depth: usize,
}

impl<'a> SynapseScope<'a> {
    fn new(
        spec: &'a ProjectionSpec,
        lines: &'a [EquationLine],
        pre: &'a Neighbour<'a>,
        post: &'a Neighbour<'a>,
        dt: f64,
        dtype: ElemType,
    ) -> Result<Self, Diagnostic> {
        let mut group = GroupBuilder::default();
        let model = spec.model.as_str();
        for line in lines {
            let name = line.name.as_str();
            let at = |msg: String| Diagnostic::new("model", msg).at(model, line.name_span);
            if line.has_flag("summed") {
                check_summed_line(line, model)?;
                continue;
            }
            if let Some(message) = names::invalid(name) {
                return Err(at(message));
            }
            if SYNAPSE_BUILTINS.contains(&name)
                || name.starts_with("sf_")
                || name.starts_with('_')
                || name.starts_with("xi_")
                || name == "lastspike"
                || name == "not_refractory"
            {
                return Err(at(format!("'{name}' is a reserved name")));
            }
            if name.ends_with("_pre") || name.ends_with("_post") {
                return Err(at(format!(
                    "'{name}' is a reserved name: names ending in _pre or _post refer to the source and target groups"
                )));
            }
            if spec.constants.contains_key(name) {
                return Err(at(format!(
                    "'{name}' is defined in the model and also given as a constant"
                )));
            }
            let synapse_flag = line
                .flags
                .iter()
                .find(|(f, _)| SYNAPSE_FLAGS.contains(&f.as_str()));
            match (line.kind, synapse_flag) {
                (LineKind::Differential, Some((f, _))) if f == "event_driven" => {
                    if let Some((flag, span)) = line.flags.iter().find(|(f, _)| f != "event_driven")
                    {
                        return Err(Diagnostic::new(
                            "model",
                            format!(
                                "the flag '({flag})' does not apply to an (event-driven) variable"
                            ),
                        )
                        .at(model, *span));
                    }
                    group.add_symbol(name, SymbolKind::Param, &line.unit);
                }
                (LineKind::Differential, _) => {
                    // (clock-driven), or no flag: Brian2 integrates it every step.
                    if let Some((flag, span)) = line.flags.iter().find(|(f, _)| f != "clock_driven")
                    {
                        return Err(Diagnostic::new(
                            "model",
                            format!(
                                "the flag '({})' does not apply to a (clock-driven) variable",
                                flag.replace('_', "-")
                            ),
                        )
                        .at(model, *span));
                    }
                    group.add_symbol(name, SymbolKind::Param, &line.unit);
                }
                (_, Some((f, span))) => {
                    let shown = f.replace('_', "-");
                    return Err(Diagnostic::new(
                        "model",
                        format!("the flag '({shown})' applies to differential equations only"),
                    )
                    .at(model, *span));
                }
                (LineKind::Parameter, None) => {
                    if let Some((flag, span)) = line
                        .flags
                        .iter()
                        .find(|(f, _)| f != "shared" && f != "constant")
                    {
                        return Err(Diagnostic::new(
                            "model",
                            format!("the flag '({flag})' does not apply to a synaptic parameter"),
                        )
                        .at(model, *span));
                    }
                    let v = group.add_symbol(name, SymbolKind::Param, &line.unit);
                    group.symbols[v.index()].shared = line.has_flag("shared");
                }
                (LineKind::Subexpression, None) => {
                    if let Some((flag, span)) = line.flags.first() {
                        return Err(Diagnostic::new(
                            "model",
                            format!(
                                "the flag '({flag})' does not apply to a synaptic subexpression"
                            ),
                        )
                        .at(model, *span));
                    }
                }
            }
        }
        if lines.iter().any(|l| l.has_flag("event_driven")) {
            if let Some(line) = lines.iter().find(|l| l.name == LASTUPDATE) {
                return Err(Diagnostic::new(
                    "model",
                    format!("'{LASTUPDATE}' is a reserved name: (event-driven) variables keep each synapse's last update time in it"),
                )
                .at(model, line.name_span));
            }
            group.add_symbol(LASTUPDATE, SymbolKind::Param, "second");
        }
        group.add_symbol("t", SymbolKind::Time, "second");
        group.add_symbol("i", SymbolKind::Index(IndexOf::Pre), "integer");
        group.add_symbol("j", SymbolKind::Index(IndexOf::Post), "integer");
        group.add_symbol("N_pre", SymbolKind::Count(IndexOf::Pre), "integer");
        group.add_symbol("N_post", SymbolKind::Count(IndexOf::Post), "integer");
        Ok(SynapseScope {
            spec,
            lines,
            pre,
            post,
            dt,
            group,
            neighbours: HashMap::new(),
            subexpr_values: HashMap::new(),
            in_progress: Vec::new(),
            dtype,
            depth: 0,
        })
    }

    fn side(&self, side: IndexOf) -> &Neighbour<'a> {
        if side == IndexOf::Pre {
            self.pre
        } else {
            self.post
        }
    }

    /// The symbol standing for variable `var` of the neighbour on `side`.
    fn neighbour_symbol(&mut self, side: IndexOf, var: VarId) -> VarId {
        if let Some(v) = self.neighbours.get(&(side, var)) {
            return *v;
        }
        let ir = self
            .side(side)
            .ir
            .expect("variables come from a neuron group");
        let sym = ir.symbol(var);
        let suffix = if side == IndexOf::Pre { "pre" } else { "post" };
        let name = format!("{}_{suffix}", sym.name);
        let unit = sym.unit.clone();
        let v = self
            .group
            .add_symbol(&name, SymbolKind::Neighbour(side, var), &unit);
        self.neighbours.insert((side, var), v);
        v
    }

    /// A neighbour's variable written with a suffix (`v_post`), or the error that says the group
    /// has no such variable.
    fn suffixed(&mut self, name: &str, at: Place) -> Option<Result<VarId, Diagnostic>> {
        let (base, side) = if let Some(b) = name.strip_suffix("_pre") {
            (b, IndexOf::Pre)
        } else if let Some(b) = name.strip_suffix("_post") {
            (b, IndexOf::Post)
        } else {
            return None;
        };
        let group = self.side(side);
        let role = if side == IndexOf::Pre {
            "source"
        } else {
            "target"
        };
        if let Some(v) = group.var(base) {
            // (A group keeps `lastspike` when a synapse reads it: `step::network`.)
            return Some(Ok(self.neighbour_symbol(side, v)));
        }
        if group
            .ir
            .is_some_and(|ir| ir.subexpressions.contains_key(base))
        {
            return Some(Err(at.error(format!(
                "'{name}': reading the {role}'s subexpression '{base}' from a synapse is {NEXT_ISSUE}"
            ))));
        }
        let mut d = at.error(format!(
            "'{name}': the {role} {} has no variable '{base}'",
            group.describe
        ));
        let names = group.names();
        let near = nearest_names(base, names.iter().map(String::as_str));
        if !near.is_empty() {
            let suffix = if side == IndexOf::Pre {
                "_pre"
            } else {
                "_post"
            };
            let near: Vec<String> = near.iter().map(|n| format!("{n}{suffix}")).collect();
            d = d.suggest(format!("did you mean {}?", quote_list(&near)));
        } else if group.ir.is_none() {
            d = d.suggest(format!("the {role} is a spike source: it has no variables"));
        }
        Some(Err(d))
    }

    /// The variable a statement of `field` (`on_pre`, `on_post`, written in `code`) assigns, and
    /// its side; or why it cannot be assigned.
    fn target(
        &mut self,
        name: &str,
        span: Span,
        field: &str,
        code: &str,
    ) -> Result<(VarId, Side), Diagnostic> {
        let at = Place {
            field,
            src: code,
            span,
        };
        let err = |msg: String| Diagnostic::new(field, msg).at(code, span);
        if name == LASTUPDATE && self.lines.iter().any(|l| l.has_flag("event_driven")) {
            return Err(err(format!(
                "cannot assign to '{LASTUPDATE}': the pathways keep it (the time of each synapse's last event)"
            )));
        }
        // (A neighbour's symbol made by an earlier statement resolves as a neighbour below.)
        if let Some(v) = self.group.names.get(name).copied().filter(|v| {
            !matches!(
                self.group.symbols[v.index()].kind,
                SymbolKind::Neighbour(..)
            )
        }) {
            let sym = &self.group.symbols[v.index()];
            return match sym.kind {
                SymbolKind::Param if sym.shared => Err(err(format!(
                    "cannot assign to '{name}': it is shared (one value for all synapses)"
                ))),
                SymbolKind::Param if self.flagged_constant(name) => Err(err(format!(
                    "cannot assign to '{name}': it is flagged (constant)"
                ))),
                SymbolKind::Param => Ok((v, Side::Synapse)),
                _ => Err(err(format!(
                    "cannot assign to '{name}': only synaptic parameters and variables of the source and target groups can be assigned"
                ))),
            };
        }
        if self
            .lines
            .iter()
            .any(|l| l.name == name && !l.has_flag("summed"))
        {
            return Err(err(format!(
                "cannot assign to '{name}': it is a subexpression"
            )));
        }
        let resolved = match self.suffixed(name, at) {
            Some(r) => Some(r?),
            None => self
                .post
                .var(name)
                .map(|v| self.neighbour_symbol(IndexOf::Post, v)),
        };
        if let Some(v) = resolved {
            let SymbolKind::Neighbour(side, var) = self.group.symbols[v.index()].kind else {
                unreachable!("a neighbour's symbol");
            };
            let group = self.side(side);
            let ir = group.ir.expect("a neuron group");
            let sym = ir.symbol(var);
            let base = sym.name.clone();
            if group.constant.contains(&base) {
                return Err(err(format!(
                    "cannot assign to '{name}': '{base}' of {} is flagged (constant)",
                    group.describe
                )));
            }
            if sym.shared {
                return Err(err(format!(
                    "cannot assign to '{name}': '{base}' of {} is shared",
                    group.describe
                )));
            }
            if !matches!(sym.kind, SymbolKind::State | SymbolKind::Param) {
                return Err(err(format!(
                    "cannot assign to '{name}': only state variables and parameters of {} can be assigned",
                    group.describe
                )));
            }
            let side = if side == IndexOf::Pre {
                Side::Pre
            } else {
                Side::Post
            };
            return Ok((v, side));
        }
        if self.spec.constants.contains_key(name) {
            return Err(err(format!("cannot assign to '{name}': it is a constant"))
                .suggest("declare it as a synaptic parameter in the model (e.g. 'w : 1') to make it per synapse and writable"));
        }
        if SYNAPSE_BUILTINS.contains(&name)
            || common_name(&mut ExprArena::new(), self.dt, name, at).is_some()
        {
            return Err(err(format!("cannot assign to '{name}'")));
        }
        Err(self.unknown(name, at))
    }

    /// The `(event-driven)` variables with their exact update over `t - lastupdate`: for
    /// `dx/dt = a*x + b` (`a`, `b` constant), `x*exp(a*h)` (`b = 0`), `x + b*h` (`a = 0`), else
    /// `(x + b/a)*exp(a*h) - b/a`. Anything else is a located error.
    fn event_driven_updates(&mut self) -> Result<Vec<(VarId, ExprId)>, Diagnostic> {
        let model = self.spec.model.clone();
        let lines: Vec<&EquationLine> = self
            .lines
            .iter()
            .filter(|l| l.has_flag("event_driven"))
            .collect();
        let mut out = Vec::new();
        for line in lines {
            let name = line.name.as_str();
            let ast = line.expr.as_ref().expect("a differential equation");
            let (f, ty) = self.expr(ast, "model", &model)?;
            require_real(ty, ast, "model", &model)?;
            let x = self.group.names[name];
            let arena = &mut self.group.arena;
            let at = |msg: String| {
                Diagnostic::new("model", msg)
                    .at(&model, ast.span())
                    .suggest("an (event-driven) variable is a trace such as 'dx/dt = -x/tau : 1 (event-driven)': linear in itself, with constant coefficients")
            };
            let slope = derivative(arena, f, x);
            let Some(a) = arena.as_const(slope) else {
                let reads_itself = arena.vars_of(slope).contains(&x);
                return Err(at(if reads_itself {
                    format!("the (event-driven) equation of '{name}' is not linear in '{name}': it cannot be integrated exactly between events")
                } else {
                    format!("the (event-driven) equation of '{name}' has a coefficient that is not constant: {NEXT_ISSUE}")
                }));
            };
            let zero = arena.constant(0.0);
            let rest = arena.substitute(f, &[(x, zero)].into_iter().collect());
            let Some(b) = arena.as_const(rest) else {
                let others: Vec<String> = arena
                    .vars_of(rest)
                    .into_iter()
                    .map(|v| self.group.symbols[v.index()].name.clone())
                    .collect();
                return Err(at(format!(
                    "the (event-driven) equation of '{name}' depends on {}: coupled or time-dependent (event-driven) equations are {NEXT_ISSUE}",
                    quote_list(&others)
                )));
            };
            let t = self.group.names["t"];
            let last = self.group.names[LASTUPDATE];
            let arena = &mut self.group.arena;
            let (tv, lv, xv) = (arena.var(t), arena.var(last), arena.var(x));
            let h = arena.sub(tv, lv);
            let value = if a == 0.0 {
                let bc = arena.constant(b);
                let inc = arena.mul(bc, h);
                arena.add(xv, inc)
            } else {
                let ac = arena.constant(a);
                let ah = arena.mul(ac, h);
                let decay = arena.call(Func::Exp, ah);
                if b == 0.0 {
                    arena.mul(xv, decay)
                } else {
                    let fixed = arena.constant(b / a);
                    let shifted = arena.add(xv, fixed);
                    let scaled = arena.mul(shifted, decay);
                    arena.sub(scaled, fixed)
                }
            };
            out.push((x, value));
        }
        Ok(out)
    }

    /// One pathway's statements: the `(event-driven)` updates, the statements of `code`, and
    /// `lastupdate = t` (the updates and `lastupdate` only where `code` has statements: a
    /// pathway that does nothing changes nothing, as in Brian2, which makes none).
    fn pathway(
        &mut self,
        pathway: Pathway,
        field: &str,
        code: &str,
        event_driven: &[(VarId, ExprId)],
    ) -> Result<Vec<Statement>, Diagnostic> {
        if code.trim().is_empty() {
            return Ok(Vec::new());
        }
        let mut out: Vec<Statement> = event_driven
            .iter()
            .map(|(var, value)| Statement {
                var: *var,
                side: Side::Synapse,
                effect: Effect::Set(*value),
            })
            .collect();
        for st in parse_statements(code, field)? {
            let (var, side) = self.target(&st.target, st.target_span, field, code)?;
            if pathway == Pathway::Post && side == Side::Pre {
                return Err(Diagnostic::new(
                    field,
                    format!("on_post writing a presynaptic variable ('{}'): a postsynaptic spike runs over the synapses onto one neuron, from many source neurons", st.target),
                )
                .at(code, st.target_span)
                .suggest("on_post may assign synaptic variables and the target's variables"));
            }
            let (value, ty) = self.expr(&st.value, field, code)?;
            require_real(ty, &st.value, field, code)?;
            let arena = &mut self.group.arena;
            let old = arena.var(var);
            let effect = match st.op {
                AssignOp::Set => Effect::Set(value),
                AssignOp::Add => Effect::Add(value),
                AssignOp::Sub => Effect::Add(arena.neg(value)),
                AssignOp::Mul => Effect::Set(arena.mul(old, value)),
                AssignOp::Div => Effect::Set(arena.div(old, value)),
            };
            out.push(Statement { var, side, effect });
        }
        if let Some(&last) = self.group.names.get(LASTUPDATE) {
            if !event_driven.is_empty() {
                let t = self.group.names["t"];
                let now = self.group.arena.var(t);
                out.push(Statement {
                    var: last,
                    side: Side::Synapse,
                    effect: Effect::Set(now),
                });
            }
        }
        Ok(out)
    }

    fn flagged_constant(&self, name: &str) -> bool {
        self.lines
            .iter()
            .any(|l| l.name == name && l.has_flag("constant"))
    }

    fn unknown(&self, name: &str, at: Place) -> Diagnostic {
        let mut known: Vec<String> = self.lines.iter().map(|l| l.name.clone()).collect();
        known.extend(self.spec.constants.keys().cloned());
        known.extend(self.post.names());
        known.extend(self.post.names().iter().map(|n| format!("{n}_post")));
        known.extend(self.pre.names().iter().map(|n| format!("{n}_pre")));
        known.extend(["i", "j", "t", "N_pre", "N_post"].map(String::from));
        unknown_name(
            name,
            at,
            known.iter().map(String::as_str),
            "define it in the synapse model (e.g. 'w : 1'), give it in constants, or use x_pre / x_post for the source's and target's variables",
        )
    }

    fn subexpression(&mut self, name: &str) -> Result<ExprId, Diagnostic> {
        if let Some(e) = self.subexpr_values.get(name) {
            return Ok(*e);
        }
        let line = self.lines.iter().find(|l| l.name == name).unwrap();
        if let Some(d) = subexpression_cycle(
            &self.in_progress,
            name,
            "model",
            &self.spec.model,
            line.name_span,
        ) {
            return Err(d);
        }
        self.in_progress.push(name.to_string());
        let ast = line.expr.as_ref().unwrap();
        let (e, _) = self.expr(ast, "model", &self.spec.model)?;
        self.in_progress.pop();
        self.subexpr_values.insert(name.to_string(), e);
        Ok(e)
    }

    /// Every pathway, Brian2's `SynapticPathway`s: `on_pre`'s (one called `pre`, or one per
    /// name) by name, then `on_post`'s, each with its statements and its delay. A delay given
    /// for a pathway that does not exist, two pathways of one name, or a name that is not an
    /// identifier or is a name of the model, are errors.
    fn pathways(&mut self, event_driven: &[(VarId, ExprId)]) -> Result<Vec<PathwayIr>, Diagnostic> {
        let spec = self.spec;
        let mut given: Vec<(Pathway, &PathwayCode)> = vec![(Pathway::Pre, &spec.on_pre)];
        given.extend(spec.on_post.as_ref().map(|c| (Pathway::Post, c)));
        let mut names: Vec<&str> = Vec::new();
        let mut out = Vec::new();
        for (kind, code) in given {
            let default = match kind {
                Pathway::Pre => "pre",
                Pathway::Post => "post",
            };
            for (name, text) in code.pathways(default) {
                let field = field_of(kind, code, name);
                self.check_pathway_name(name, &field, &names)?;
                names.push(name);
                let statements = self.pathway(kind, &field, text, event_driven)?;
                let delay = self.delay(kind, name)?;
                out.push(PathwayIr {
                    name: name.to_string(),
                    kind,
                    statements,
                    delay,
                });
            }
        }
        if let Some(delay) = &spec.delay {
            for (name, _) in delay.by_pathway() {
                if !names.contains(&name) {
                    let field = delay_field(delay, name);
                    let known = names.iter().map(|n| format!("'{n}'")).collect::<Vec<_>>();
                    let mut d = Diagnostic::new(
                        &field,
                        format!(
                            "a delay for the pathway '{name}', which the synapses do not have (their pathways: {})",
                            if known.is_empty() { "none".to_string() } else { known.join(", ") }
                        ),
                    );
                    if let Some(near) = nearest_names(name, names.iter().copied()).first() {
                        d = d.suggest(format!("did you mean '{near}'?"));
                    } else {
                        d = d.suggest("name the pathways in on_pre / on_post ({'up': ..., 'down': ...}) and give their delays under the same names");
                    }
                    return Err(d);
                }
            }
        }
        let per_synapse: Vec<(VarId, &str)> = out
            .iter()
            .filter_map(|p| match p.delay {
                DelayIr::PerSynapse { var, .. } => Some((var, p.name.as_str())),
                DelayIr::Homogeneous { .. } => None,
            })
            .collect();
        if let Some(&(other, name)) = per_synapse.iter().find(|(v, _)| *v != per_synapse[0].0) {
            let first = self.group.symbols[per_synapse[0].0.index()].name.clone();
            let second = self.group.symbols[other.index()].name.clone();
            return Err(Diagnostic::new(
                &delay_field(spec.delay.as_ref().expect("delays given"), name),
                format!(
                    "pathways with per-synapse delays from two variables ('{first}', '{second}'): {NEXT_ISSUE} (each row of synapses is sorted by one delay)"
                ),
            )
            .suggest(format!("give every pathway with per-synapse delays the same variable ('{first}')")));
        }
        if per_synapse.is_empty() && spec.max_delay.is_some() {
            return Err(Diagnostic::new(
                "max_delay",
                "max_delay is the queue length of per-synapse delays; no pathway has per-synapse delays",
            ));
        }
        Ok(out)
    }

    /// A pathway name is an identifier, used once, and not a name of the model (Brian2 makes
    /// it an attribute of the `Synapses`: `S.up`).
    fn check_pathway_name(&self, name: &str, field: &str, seen: &[&str]) -> Result<(), Diagnostic> {
        let problem = if let Some(message) = names::invalid(name) {
            Some(format!("the pathway name '{name}' is not valid: {message}"))
        } else if seen.contains(&name) {
            Some(format!(
                "two pathways are called '{name}' (on_pre's and on_post's pathways share one set of names)"
            ))
        } else if self.lines.iter().any(|l| l.name == name) || SYNAPSE_BUILTINS.contains(&name) {
            Some(format!(
                "the pathway name '{name}' is a name of the synapses' model"
            ))
        } else {
            None
        };
        match problem {
            Some(message) => Err(Diagnostic::new(field, message)
                .suggest("pathway names are identifiers, distinct from each other and from the model's names")),
            None => Ok(()),
        }
    }

    /// The delay of the pathway `name`: as given under its name in `delay` (a single value is
    /// the `pre` pathway's), else 0. A postsynaptic pathway's delay is one for all synapses.
    fn delay(&mut self, kind: Pathway, name: &str) -> Result<DelayIr, Diagnostic> {
        let Some(delay) = &self.spec.delay else {
            return Ok(DelayIr::Homogeneous { steps: 0 });
        };
        let Some((_, given)) = delay.by_pathway().into_iter().find(|(n, _)| *n == name) else {
            return Ok(DelayIr::Homogeneous { steps: 0 });
        };
        let field = delay_field(delay, name);
        let d = self.delay_value(given, &field)?;
        if kind == Pathway::Post && matches!(d, DelayIr::PerSynapse { .. }) {
            return Err(Diagnostic::new(
                &field,
                format!("per-synapse delays of a postsynaptic pathway ('{name}') are {NEXT_ISSUE}"),
            )
            .suggest("give the on_post pathway one delay for all synapses (a duration)"));
        }
        Ok(d)
    }

    /// One delay (given in `field`): a duration, a constant expression, or a per-synapse
    /// variable.
    fn delay_value(&mut self, given: &NumberOrExpr, field: &str) -> Result<DelayIr, Diagnostic> {
        let dt = self.dt;
        let steps_of = |d: f64, field: &str| -> Result<u32, Diagnostic> {
            if !(d.is_finite() && d >= 0.0) {
                return Err(Diagnostic::new(
                    field,
                    format!("a delay must be a duration >= 0, got {d}"),
                ));
            }
            // Brian2's rounding (`int(d/dt + 0.5)`), in float64.
            let steps = (d / dt + 0.5).floor();
            if steps > f64::from(MAX_DELAY_STEPS) {
                return Err(Diagnostic::new(
                    field,
                    format!(
                        "a delay of {d} is {steps} steps of dt = {dt}: the longest a spike queue holds is {MAX_DELAY_STEPS} steps"
                    ),
                ));
            }
            Ok(steps as u32)
        };
        let homogeneous =
            |steps: u32| -> Result<DelayIr, Diagnostic> { Ok(DelayIr::Homogeneous { steps }) };
        let max_delay = self.spec.max_delay;
        let code = match given {
            NumberOrExpr::Number(d) => return homogeneous(steps_of(*d, field)?),
            NumberOrExpr::Expression(code) => code.clone(),
        };
        let ast = parse_expression(&code, field)?;
        if let Ast::Name(name, span) = &ast {
            if let Some(&v) = self.group.names.get(name.as_str()) {
                let sym = &self.group.symbols[v.index()];
                if sym.kind == SymbolKind::Param && !sym.shared {
                    let Some(max) = max_delay else {
                        return Err(Diagnostic::new(
                            field,
                            format!("per-synapse delays ('{name}') need max_delay: the longest delay the spike queue must hold"),
                        )
                        .at(&code, *span));
                    };
                    let max_steps = steps_of(max, "max_delay")?;
                    if max_steps > MAX_PER_SYNAPSE_DELAY_STEPS {
                        return Err(Diagnostic::new(
                            "max_delay",
                            format!("max_delay {max} is {max_steps} steps of dt = {dt}: per-synapse delays span at most {MAX_PER_SYNAPSE_DELAY_STEPS} steps"),
                        ));
                    }
                    return Ok(DelayIr::PerSynapse { var: v, max_steps });
                }
            }
        }
        let (e, ty) = self.expr(&ast, field, &code)?;
        require_real(ty, &ast, field, &code)?;
        match self.group.arena.as_const(e) {
            Some(d) => homogeneous(steps_of(d, field)?),
            None => Err(Diagnostic::new(
                field,
                "a delay must be a duration, a constant expression, or the name of a per-synapse variable of the model",
            )
            .at(&code, ast.span())
            .suggest("for delays that differ per synapse, declare 'd : second' in the model, give delay='d' and the values in init_state")),
        }
    }
}

/// A `(summed)` line's form, before its names are resolved: a subexpression (`x_post = e : unit
/// (summed)`) onto a name ending in `_pre` or `_post`, with no other flag.
fn check_summed_line(line: &EquationLine, model: &str) -> Result<(), Diagnostic> {
    let (_, at_flag) = line
        .flags
        .iter()
        .find(|(f, _)| f == "summed")
        .expect("a (summed) line");
    if line.kind != LineKind::Subexpression {
        return Err(Diagnostic::new(
            "model",
            "'(summed)' applies to a subexpression onto a variable of the source or target group",
        )
        .at(model, *at_flag)
        .suggest("write it as 'g_post = g_syn : 1 (summed)'"));
    }
    if let Some((flag, span)) = line.flags.iter().find(|(f, _)| f != "summed") {
        return Err(Diagnostic::new(
            "model",
            format!("the flag '({flag})' does not apply to a (summed) variable"),
        )
        .at(model, *span));
    }
    if !(line.name.ends_with("_pre") || line.name.ends_with("_post")) {
        return Err(Diagnostic::new(
            "model",
            format!(
                "the summed variable '{}' does not end in '_pre' or '_post': it sets a variable of the source or target group",
                line.name
            ),
        )
        .at(model, line.name_span)
        .suggest(format!("'{}_post' sums onto the target's '{}'", line.name, line.name)));
    }
    Ok(())
}

/// The `(clock-driven)` and `(summed)` variables (module docs).
impl SynapseScope<'_> {
    /// The `(clock-driven)` equations (and differential equations without a flag), in order.
    fn clock_driven(&mut self) -> Result<Vec<StateEq>, Diagnostic> {
        let model = self.spec.model.clone();
        let lines: Vec<&EquationLine> = self
            .lines
            .iter()
            .filter(|l| l.kind == LineKind::Differential && !l.has_flag("event_driven"))
            .collect();
        let mut out = Vec::new();
        for line in lines {
            let ast = line.expr.as_ref().expect("a differential equation");
            let (e, ty) = self.expr(ast, "model", &model)?;
            require_real(ty, ast, "model", &model)?;
            let var = self.group.names[&line.name];
            self.group
                .spans
                .insert(Site::Dynamics(var), "model", &model, line.name_span);
            out.push(StateEq {
                var,
                derivative: e,
                unless_refractory: false,
            });
        }
        Ok(out)
    }

    /// The `(summed)` variables, in order, each onto a parameter of its group (Brian2's rules).
    fn summed(&mut self) -> Result<Vec<Summed>, Diagnostic> {
        let model = self.spec.model.clone();
        let lines: Vec<&EquationLine> =
            self.lines.iter().filter(|l| l.has_flag("summed")).collect();
        let mut out: Vec<Summed> = Vec::new();
        for line in lines {
            let name = line.name.as_str();
            let (base, side) = match name.strip_suffix("_pre") {
                Some(b) => (b, IndexOf::Pre),
                None => (name.strip_suffix("_post").expect("checked"), IndexOf::Post),
            };
            let group = self.side(side);
            let role = if side == IndexOf::Pre {
                "source"
            } else {
                "target"
            };
            let at = |msg: String| Diagnostic::new("model", msg).at(&model, line.name_span);
            let Some(ir) = group.ir else {
                return Err(at(format!(
                    "the summed variable '{name}': the {role} {} is a spike source, it has no variables",
                    group.describe
                )));
            };
            let Some(var) = ir.lookup(base) else {
                let mut d = at(format!(
                    "the summed variable '{name}': the {role} {} has no variable '{base}'",
                    group.describe
                ));
                let near = nearest_names(base, group.names().iter().map(String::as_str));
                d = if near.is_empty() {
                    d.suggest(format!(
                        "declare '{base} : <unit>' in the {role}'s equations"
                    ))
                } else {
                    d.suggest(format!("did you mean {}?", quote_list(&near)))
                };
                return Err(d);
            };
            let sym = ir.symbol(var);
            let why = match sym.kind {
                SymbolKind::State => Some("integrated by the group (a differential equation)"),
                SymbolKind::Param if sym.shared => Some("shared (one value for the group)"),
                SymbolKind::Param if group.constant.contains(base) => Some("flagged (constant)"),
                SymbolKind::Param => None,
                _ => Some("not a parameter"),
            };
            if let Some(why) = why {
                return Err(at(format!(
                    "the summed variable '{name}' needs a parameter '{base}' in the {role} {}: '{base}' is {why}",
                    group.describe
                ))
                .suggest(format!(
                    "declare '{base} : <unit>' (a parameter) in the {role} and use it in its equations"
                )));
            }
            if out.iter().any(|s| s.side == side && s.var == var) {
                return Err(at(format!(
                    "the target variable '{base}' is already updated by another summed variable"
                )));
            }
            let ast = line.expr.as_ref().expect("a subexpression");
            let (value, ty) = self.expr(ast, "model", &model)?;
            require_real(ty, ast, "model", &model)?;
            out.push(Summed { side, var, value });
        }
        Ok(out)
    }

    /// Brian2's rules between the kinds of variables: neither a `(clock-driven)` equation nor a
    /// `(summed)` value depends on an `(event-driven)` variable; and what the kernels cannot
    /// give: a `(clock-driven)` equation reads no last spike time (the groups' thresholds run
    /// before the synapses integrate, Brian2's after).
    fn check_dynamics(
        &self,
        clock_driven: &[StateEq],
        summed: &[Summed],
        event_driven: &[VarId],
    ) -> Result<(), Diagnostic> {
        let model = &self.spec.model;
        let line_of = |name: &str| {
            self.lines
                .iter()
                .find(|l| l.name == name)
                .expect("a line of the model")
        };
        let summed_lines = self.lines.iter().filter(|l| l.has_flag("summed"));
        let roots: Vec<(String, ExprId, &str)> = clock_driven
            .iter()
            .map(|s| {
                let name = self.group.symbols[s.var.index()].name.clone();
                (name, s.derivative, "clock-driven")
            })
            .chain(
                summed_lines
                    .zip(summed)
                    .map(|(l, s)| (l.name.clone(), s.value, "summed")),
            )
            .collect();
        for (name, root, kind) in roots {
            let line = line_of(&name);
            for v in self.group.arena.vars_of(root) {
                let sym = &self.group.symbols[v.index()];
                if event_driven.contains(&v) {
                    return Err(Diagnostic::new(
                        "model",
                        format!(
                            "the {kind} '{name}' should not depend on the event-driven variable '{}'",
                            sym.name
                        ),
                    )
                    .at(model, line.name_span));
                }
                let reads_lastspike = self
                    .neighbour_kind(v)
                    .is_some_and(|k| k == SymbolKind::LastSpike);
                if kind == "clock-driven" && reads_lastspike {
                    return Err(Diagnostic::new(
                        "model",
                        format!(
                            "the clock-driven '{name}' reads '{}': a last spike time in a (clock-driven) equation is {NEXT_ISSUE}",
                            sym.name
                        ),
                    )
                    .at(model, line.name_span));
                }
            }
        }
        Ok(())
    }

    /// The kind of the neighbour's variable a symbol refers to.
    fn neighbour_kind(&self, v: VarId) -> Option<SymbolKind> {
        let SymbolKind::Neighbour(side, var) = self.group.symbols[v.index()].kind else {
            return None;
        };
        Some(self.side(side).ir?.symbol(var).kind.clone())
    }

    /// The scheme of the `(clock-driven)` equations: the spec's, checked, or Brian2's choice.
    fn method(&self, dynamics: &Dynamics) -> Result<Method, Diagnostic> {
        if crate::ir::group::integrated(dynamics).is_empty() {
            // Nothing to integrate: the method has no effect (Brian2 accepts it too).
            return Ok(Method::Euler);
        }
        choice::resolve(
            &self.group.arena,
            dynamics,
            &self.group.symbols,
            &[],
            self.dt,
            self.spec.method,
        )
        .map_err(|e| {
            Diagnostic::new("method", format!("the (clock-driven) equations: {e}"))
                .suggest("leave method unset for Brian2's choice (exact, euler, heun: the first that applies)")
        })
    }
}

impl Scope for SynapseScope<'_> {
    fn depth(&mut self) -> &mut usize {
        &mut self.depth
    }

    fn precision(&self) -> ElemType {
        self.dtype
    }

    fn arena(&mut self) -> &mut ExprArena {
        &mut self.group.arena
    }

    fn name(&mut self, name: &str, at: Place) -> Result<(ExprId, Ty), Diagnostic> {
        if self
            .lines
            .iter()
            .any(|l| l.name == name && l.kind == LineKind::Subexpression && !l.has_flag("summed"))
        {
            let e = self.subexpression(name)?;
            return Ok((e, self.group.arena.ty(e)));
        }
        if let Some(found) = self.group.symbol_value(name) {
            return Ok(found);
        }
        if let Some(r) = self.suffixed(name, at) {
            let v = r?;
            return Ok(self.neighbour_value(v));
        }
        if let Some(v) = self.post.var(name) {
            let s = self.neighbour_symbol(IndexOf::Post, v);
            return Ok(self.neighbour_value(s));
        }
        if let Some(c) = self.spec.constants.get(name) {
            return Ok((self.group.arena.constant(*c), Ty::Real));
        }
        if name == "N" {
            return Err(at.error(format!(
                "'N' (the number of synapses) is {NEXT_ISSUE} in synapse code"
            )));
        }
        if name == "xi" || name.starts_with("xi_") {
            return Err(at.error(format!(
                "'{name}' (white noise) is {NEXT_ISSUE} in synapses"
            )));
        }
        if let Some(found) = common_name(&mut self.group.arena, self.dt, name, at) {
            return found;
        }
        Err(self.unknown(name, at))
    }
}

impl SynapseScope<'_> {
    /// A neighbour's symbol as a value.
    fn neighbour_value(&mut self, v: VarId) -> (ExprId, Ty) {
        (self.group.arena.var(v), Ty::Real)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::ModelSpec;

    fn target_ir() -> GroupIr {
        let spec = ModelSpec::from_equations(
            "dv/dt = (ge - v)/(10*ms) : volt (unless refractory)\ndge/dt = -ge/(5*ms) : volt\ntau : second (constant)\ngs : volt",
            0.1,
        )
        .threshold("v > 1")
        .reset("v = 0")
        .refractory(2.0);
        crate::frontend::lower(&spec).unwrap()
    }

    fn projection(model: &str, on_pre: &str) -> ProjectionSpec {
        ProjectionSpec {
            method: None,
            name: "S".into(),
            source: "P".into(),
            source_range: None,
            target: "P".into(),
            target_range: None,
            model: model.into(),
            on_pre: PathwayCode::One(on_pre.into()),
            on_post: None,
            delay: None,
            max_delay: None,
            constants: [("we".to_string(), 1.5)].into_iter().collect(),
        }
    }

    fn lower_with(spec: &ProjectionSpec) -> Result<SynapsesIr, Diagnostic> {
        let ir = target_ir();
        let side = |ir| Neighbour {
            describe: "NeuronGroup 'P'".into(),
            ir: Some(ir),
            n: 10,
            constant: ["tau".to_string()].into_iter().collect(),
        };
        lower(spec, &side(&ir), &side(&ir), 0.1, ElemType::F32)
    }

    #[test]
    fn lowers_statements_on_the_target_and_the_synapse() {
        let s = lower_with(&projection(
            "w : 1\nd : second",
            "ge += w\nv_post -= we\nw = w * 0.5",
        ))
        .unwrap();
        let on_pre = s.statements(0);
        assert_eq!((s.pathways.len(), s.pathways[0].name.as_str()), (1, "pre"));
        assert_eq!(on_pre.len(), 3);
        assert_eq!(on_pre[0].side, Side::Post);
        assert!(matches!(on_pre[0].effect, Effect::Add(_)));
        assert_eq!(on_pre[2].side, Side::Synapse);
        assert_eq!(s.per_synapse().len(), 2);
        assert_eq!(s.pathways[0].delay, DelayIr::Homogeneous { steps: 0 });
        let written: Vec<&str> = s
            .neighbours_written(IndexOf::Post)
            .into_iter()
            .map(|v| target_ir().symbol(v).name.clone())
            .map(|n| if n == "v" { "v" } else { "ge" })
            .collect();
        assert_eq!(written.len(), 2);
        // v_post -= we is v_post += -1.5.
        let Effect::Add(e) = s.statements(0)[1].effect else {
            panic!()
        };
        assert_eq!(s.group.arena.as_const(e), Some(-1.5));
    }

    #[test]
    fn delays_round_as_brian_and_per_synapse_delays_need_a_queue_length() {
        let mut p = projection("d : second", "ge += 1");
        let one = |d| Some(DelaySpec::One(d));
        let delay = |p: &ProjectionSpec| lower_with(p).unwrap().pathways[0].delay;
        p.delay = one(NumberOrExpr::Number(0.25));
        assert_eq!(delay(&p), DelayIr::Homogeneous { steps: 3 });
        p.delay = one(NumberOrExpr::Expression("1.5*ms + 2*dt".into()));
        assert_eq!(delay(&p), DelayIr::Homogeneous { steps: 17 });
        p.delay = one(NumberOrExpr::Expression("d".into()));
        let e = lower_with(&p).unwrap_err();
        assert!(e.message.contains("need max_delay"), "{}", e.render());
        p.max_delay = Some(2.0);
        assert!(matches!(
            delay(&p),
            DelayIr::PerSynapse { max_steps: 20, .. }
        ));
        p.delay = one(NumberOrExpr::Number(-1.0));
        p.max_delay = None;
        assert!(lower_with(&p).unwrap_err().message.contains(">= 0"));
        p.delay = one(NumberOrExpr::Expression("d * 2".into()));
        assert!(lower_with(&p)
            .unwrap_err()
            .message
            .contains("constant expression"));
    }

    #[test]
    fn errors_are_located_and_say_what_is_wrong() {
        let cases = [
            (
                "w : 1",
                "gee_post += w",
                "the target NeuronGroup 'P' has no variable 'gee'",
                1,
            ),
            ("w : 1", "gee += w", "unknown name 'gee'", 1),
            (
                "w : 1",
                "we = 2",
                "cannot assign to 'we': it is a constant",
                1,
            ),
            ("w : 1", "tau_post = 2", "flagged (constant)", 1),
            ("w : 1 (shared)", "w = 2", "it is shared", 1),
            (
                "w : 1",
                "ge += w * x_pre",
                "the source NeuronGroup 'P' has no variable 'x'",
                11,
            ),
            ("w : 1", "i = 2", "cannot assign to 'i'", 1),
        ];
        for (model, on_pre, want, col) in cases {
            let e = lower_with(&projection(model, on_pre)).unwrap_err();
            assert!(e.message.contains(want), "{on_pre}: {}", e.render());
            assert_eq!(e.field, "on_pre");
            assert_eq!(e.span.unwrap().col, col, "{on_pre}: {}", e.render());
        }
        let e = lower_with(&projection("w : 1", "ge += ww")).unwrap_err();
        assert!(e.suggestion.unwrap().contains("'w'"));
    }

    #[test]
    fn clock_driven_and_summed_variables_lower_with_brian2s_rules() {
        let mut p = projection(
            "w : 1\ndg/dt = -g/tau_g : 1 (clock-driven)\ndh/dt = (v_pre - h)/tau_g : 1\ngs_post = w*g : volt (summed)",
            "g += 1",
        );
        p.constants.insert("tau_g".into(), 2.0);
        let s = lower_with(&p).map_err(|e| e.render()).unwrap();
        assert_eq!(
            s.clock_driven.len(),
            2,
            "an unflagged equation is clock-driven"
        );
        assert_eq!(
            s.group.method,
            Method::Exact,
            "Brian2's choice: exact first"
        );
        assert_eq!(s.summed.len(), 1);
        assert_eq!(s.summed[0].side, IndexOf::Post);
        assert_eq!(target_ir().symbol(s.summed[0].var).name, "gs");
        assert!(s.synapse_written().contains(&s.clock_driven[0]));
        assert!(s.by_post_index() && !s.plastic());
        let cases = [
            (
                "w : 1\ngz_post = w : 1 (summed)",
                "has no variable 'gz'",
                (2, 1),
            ),
            (
                "w : 1\nv_post = w : 1 (summed)",
                "integrated by the group",
                (2, 1),
            ),
            (
                "w : 1\ntau_post = w : 1 (summed)",
                "flagged (constant)",
                (2, 1),
            ),
            (
                "w : 1\nge = w : 1 (summed)",
                "does not end in '_pre' or '_post'",
                (2, 1),
            ),
            (
                "dx/dt = -x : 1 (clock-driven, constant)",
                "does not apply to a (clock-driven)",
                (1, 31),
            ),
            (
                "dA/dt = -A/tau_g : 1 (event-driven)\ngs_post = A : 1 (summed)",
                "should not depend on the event-driven variable 'A'",
                (2, 1),
            ),
        ];
        for (model, want, (line, col)) in cases {
            let mut p = projection(model, "");
            p.constants.insert("tau_g".into(), 2.0);
            let e = lower_with(&p).unwrap_err();
            assert!(e.message.contains(want), "{model}: {}", e.render());
            assert_eq!(e.field, "model");
            let at = e.span.unwrap();
            assert_eq!((at.line, at.col), (line, col), "{model}: {}", e.render());
        }
        let mut p = projection("dx/dt = -x*x/(10*ms) : 1", "");
        p.method = Some(Method::Exact);
        let e = lower_with(&p).unwrap_err();
        assert_eq!(e.field, "method");
        let e = lower_with(&projection("x_post : 1", "")).unwrap_err();
        assert!(e.message.contains("reserved"), "{}", e.render());
    }

    const STDP: &str = "w : 1\ndApre/dt = -Apre/taupre : 1 (event-driven)\ndApost/dt = -Apost/taupre : 1 (event-driven)";

    fn stdp(on_post: &str) -> ProjectionSpec {
        let mut p = projection(STDP, "ge += w\nApre += 0.01\nw = clip(w + Apost, 0, 1)");
        p.on_post = Some(PathwayCode::One(on_post.into()));
        p.constants.insert("taupre".into(), 20.0);
        p
    }

    #[test]
    fn event_driven_variables_are_updated_exactly_at_each_event_of_both_pathways() {
        let s = lower_with(&stdp("Apost += -0.01\nw = clip(w + Apre, 0, 1)")).unwrap();
        assert!(s.has_post() && s.plastic());
        assert_eq!(s.event_driven.len(), 2);
        // Apre, Apost decayed; the statements; lastupdate = t.
        let (on_pre, on_post) = (s.statements(0), s.statements(1));
        assert_eq!(s.pathways[1].kind, Pathway::Post);
        assert_eq!(on_pre.len(), 2 + 3 + 1);
        assert_eq!(on_post.len(), 2 + 2 + 1);
        let last = s.group.lookup("lastupdate").unwrap();
        assert_eq!(on_pre.last().unwrap().var, last);
        assert_eq!(on_post.last().unwrap().var, last);
        assert_eq!(on_post[2].side, Side::Synapse);
        // Apre(t) = Apre * exp(-(t - lastupdate)/taupre), evaluated.
        let Effect::Set(decay) = on_pre[0].effect else {
            panic!()
        };
        let apre = s.group.lookup("Apre").unwrap();
        let t = s.group.lookup("t").unwrap();
        let values: HashMap<VarId, f64> =
            [(apre, 2.0), (t, 13.0), (last, 3.0)].into_iter().collect();
        use crate::ir::eval::{evaluate, Column};
        let got = match &evaluate(&s.group.arena, &[decay], 1, &|v| Column::Scalar(values[&v]))[0] {
            Column::Scalar(x) => *x,
            Column::Values(x) => x[0],
        };
        assert!((got - 2.0 * (-0.5f64).exp()).abs() < 1e-15, "{got}");
        // A constant input: x + b h; both terms: the affine solution.
        let s = lower_with(&projection(
            "dx/dt = 0.5 : 1 (event-driven)\ndy/dt = (2 - y)/tau_y : 1 (event-driven)",
            "x += 1\ny += 1",
        ))
        .map_err(|e| e.render())
        .unwrap_err();
        assert!(s.contains("tau_y"), "{s}");
    }

    fn named(pairs: &[(&str, &str)]) -> PathwayCode {
        PathwayCode::Named(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn named_pathways_have_their_own_statements_and_delays() {
        let mut p = projection("w : 1\nd : second", "");
        p.on_pre = named(&[("up", "ge += w"), ("down", "v_post += 2*w")]);
        p.on_post = Some(named(&[("back", "w += 1")]));
        let delays = |pairs: &[(&str, NumberOrExpr)]| {
            Some(DelaySpec::Named(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect(),
            ))
        };
        p.delay = delays(&[
            ("down", NumberOrExpr::Number(0.5)),
            ("back", NumberOrExpr::Number(0.2)),
        ]);
        let s = lower_with(&p).unwrap();
        let got: Vec<(&str, Pathway, DelayIr, usize)> = s
            .pathways
            .iter()
            .map(|x| (x.name.as_str(), x.kind, x.delay, x.statements.len()))
            .collect();
        let steps = |steps| DelayIr::Homogeneous { steps };
        assert_eq!(
            got,
            [
                ("down", Pathway::Pre, steps(5), 1),
                ("up", Pathway::Pre, steps(0), 1),
                ("back", Pathway::Post, steps(2), 1)
            ]
        );
        assert_eq!(s.max_delay(Pathway::Pre), 5);
        assert_eq!(s.max_delay(Pathway::Post), 2);
        // Per-synapse delays on one pathway: the rows are sorted by them.
        p.delay = delays(&[("down", NumberOrExpr::Expression("d".into()))]);
        p.max_delay = Some(1.0);
        let s = lower_with(&p).unwrap();
        assert_eq!(s.row_delay().map(|(_, m)| m), Some(10));
        assert_eq!(s.pathways[1].delay, steps(0));
        // Errors, each at its field.
        let err = |p: &ProjectionSpec| lower_with(p).unwrap_err();
        p.delay = delays(&[("dwn", NumberOrExpr::Number(1.0))]);
        p.max_delay = None;
        let e = err(&p);
        assert_eq!(e.field, "delay['dwn']");
        assert!(
            e.message
                .contains("pathway 'dwn', which the synapses do not have")
                && e.message.contains("'down', 'up', 'back'"),
            "{}",
            e.render()
        );
        assert!(e.suggestion.unwrap().contains("'down'"));
        p.delay = Some(DelaySpec::One(NumberOrExpr::Number(1.0)));
        assert!(err(&p).message.contains("pathway 'pre'"));
        p.delay = delays(&[("back", NumberOrExpr::Expression("d".into()))]);
        p.max_delay = Some(1.0);
        let e = err(&p);
        assert!(
            e.field == "delay['back']" && e.message.contains("postsynaptic pathway"),
            "{}",
            e.render()
        );
        p.delay = delays(&[
            ("up", NumberOrExpr::Expression("d".into())),
            ("down", NumberOrExpr::Expression("w".into())),
        ]);
        assert!(err(&p).message.contains("two variables"));
        p.delay = None;
        p.max_delay = None;
        p.on_post = Some(named(&[("up", "w += 1")]));
        assert!(err(&p).message.contains("two pathways are called 'up'"));
        p.on_post = Some(named(&[("w", "w += 1")]));
        assert!(err(&p).message.contains("a name of the synapses' model"));
        p.on_post = Some(named(&[("2x", "w += 1")]));
        assert_eq!(err(&p).field, "on_post['2x']");
        p.on_post = None;
        p.on_pre = named(&[("up", "ge += ww")]);
        let e = err(&p);
        assert_eq!(e.field, "on_pre['up']");
        assert!(e.message.contains("unknown name 'ww'"), "{}", e.render());
    }

    #[test]
    fn plasticity_errors_are_located() {
        let e = lower_with(&stdp("Apost += 1\nv_pre = 0")).unwrap_err();
        assert_eq!(e.field, "on_post");
        assert!(
            e.message.contains("on_post writing a presynaptic variable"),
            "{}",
            e.render()
        );
        assert_eq!((e.span.unwrap().line, e.span.unwrap().col), (2, 1));
        let e =
            lower_with(&projection("dx/dt = -x*x/tau : 1 (event-driven)", "x += 1")).unwrap_err();
        assert!(e.message.contains("not linear"), "{}", e.render());
        assert_eq!(e.field, "model");
        // At the right-hand side (its top operator).
        assert_eq!((e.span.unwrap().line, e.span.unwrap().col), (1, 13));
        let e = lower_with(&projection(
            "w : 1\ndx/dt = -x/(10*ms) + w : 1 (event-driven)",
            "x += 1",
        ))
        .unwrap_err();
        assert!(e.message.contains("depends on 'w'"), "{}", e.render());
        let e = lower_with(&stdp("lastupdate = 0")).unwrap_err();
        assert!(
            e.message.contains("cannot assign to 'lastupdate'"),
            "{}",
            e.render()
        );
        let e = lower_with(&stdp("Apost += gmaxx")).unwrap_err();
        assert_eq!(e.field, "on_post");
        assert!(e.message.contains("unknown name 'gmaxx'"), "{}", e.render());
    }
}
