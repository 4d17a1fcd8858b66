//! Brian2's `Synapses`: the synapse model (per-synapse parameters, `(shared)` ones,
//! subexpressions), the `on_pre` statements and the delay -> [`SynapsesIr`].
//!
//! Names in `on_pre` resolve as in Brian2: the synapse group's own variables first; `x_pre` and
//! `x_post` are variables of the source and target groups; a bare name the target group has is
//! the target's (`ge += w` is `ge_post += w`); then the projection's constants, `i` and `j`
//! (the pre- and postsynaptic indices within the (sub)groups), `N_pre`, `N_post`, `t`, `dt`,
//! units. `lastspike_pre` / `lastspike_post` are the neighbours' last spike times. What the next issue brings (`on_post`, synaptic
//! differential equations `(clock-driven)` / `(event-driven)`, `(summed)` variables) is refused
//! with a located "not supported yet" message.

use std::collections::{HashMap, HashSet};

use super::equations::{parse_equations, subexpression_cycle, EquationLine, LineKind};
use super::expr::{common_name, quote_list, require_real, unknown_name, Place, Scope};
use crate::diagnostics::{nearest_names, Diagnostic, Span};
use crate::frontend::builder::{GroupBuilder, Lowered};
use crate::frontend::syntax::ast::{AssignOp, Ast};
use crate::frontend::syntax::lexer::{tokenize, Tok};
use crate::frontend::syntax::parser::{parse_expression, parse_statements};
use crate::ir::synapses::{DelayIr, Effect, Side, Statement, SynapsesIr};
use crate::ir::{Dynamics, Events, ExprArena, ExprId, GroupIr, IndexOf, SymbolKind, Ty, VarId};
use crate::spec::network::{NumberOrExpr, ProjectionSpec};
use crate::spec::{names, Method};
use crate::types::ElemType;

/// The longest delay a spike queue holds, in steps (6.5 s at dt = 0.1 ms).
pub const MAX_DELAY_STEPS: u32 = 65_535;

/// The longest per-synapse delay, in steps (a delivery walks every delay step up to it).
pub const MAX_PER_SYNAPSE_DELAY_STEPS: u32 = 4095;

/// What issue 11 brings, and the place it is refused.
const NEXT_ISSUE: &str = "not supported yet (issue 11)";

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

/// Lowers one projection's synapse model, `on_pre` and delay. Errors name the field (`model`,
/// `on_pre`, `on_post`, `delay`, `max_delay`); the caller adds the projection's name.
pub fn lower(
    spec: &ProjectionSpec,
    pre: &Neighbour,
    post: &Neighbour,
    dt: f64,
    dtype: ElemType,
) -> Result<SynapsesIr, Diagnostic> {
    if let Some(code) = spec.on_post.as_deref().filter(|c| !c.trim().is_empty()) {
        let first = first_token(code, "on_post")?;
        return Err(Diagnostic::new("on_post", format!("on_post is {NEXT_ISSUE}"))
            .at(code, first)
            .suggest("postsynaptic statements (STDP and other plasticity) come with the next issue; use on_pre"));
    }
    let lines = if spec.model.trim().is_empty() {
        Vec::new()
    } else {
        refuse_next_issue_flags(&spec.model)?;
        parse_equations(&spec.model)?
    };
    let mut cx = SynapseScope::new(spec, &lines, pre, post, dt, dtype)?;
    let mut on_pre = Vec::new();
    if !spec.on_pre.trim().is_empty() {
        for st in parse_statements(&spec.on_pre, "on_pre")? {
            let (var, side) = cx.target(&st.target, st.target_span)?;
            let (value, ty) = cx.expr(&st.value, "on_pre", &spec.on_pre)?;
            require_real(ty, &st.value, "on_pre", &spec.on_pre)?;
            let arena = &mut cx.group.arena;
            let old = arena.var(var);
            let effect = match st.op {
                AssignOp::Set => Effect::Set(value),
                AssignOp::Add => Effect::Add(value),
                AssignOp::Sub => Effect::Add(arena.neg(value)),
                AssignOp::Mul => Effect::Set(arena.mul(old, value)),
                AssignOp::Div => Effect::Set(arena.div(old, value)),
            };
            on_pre.push(Statement { var, side, effect });
        }
    }
    let delay = cx.delay()?;
    let subexpressions = std::mem::take(&mut cx.subexpr_values).into_iter().collect();
    let lowered = Lowered {
        dynamics: Dynamics::Odes(Vec::new()),
        events: Events::none(),
        subexpressions,
        held: Vec::new(),
        noise: Vec::new(),
    };
    let group = cx.group.finish(lowered, Method::Euler, 1, dt, &[])?;
    Ok(SynapsesIr {
        group,
        on_pre,
        delay,
    })
}

/// The span of the first token of `code` (for messages about a whole field).
fn first_token(code: &str, field: &str) -> Result<Span, Diagnostic> {
    Ok(tokenize(code, field)?
        .into_iter()
        .find(|t| t.tok != Tok::Newline)
        .map_or(Span::new(1, 1, 1), |t| t.span))
}

/// `(event-driven)`, `(clock-driven)` and `(summed)`, which the equation parser does not know,
/// are the next issue's: refused where they are written.
fn refuse_next_issue_flags(model: &str) -> Result<(), Diagnostic> {
    for (k, line) in model.lines().enumerate() {
        let code = line.split('#').next().unwrap_or("");
        for flag in ["event-driven", "clock-driven", "summed"] {
            if let Some(col) = code.find(flag) {
                let col = code[..col].chars().count() + 1;
                return Err(Diagnostic::new(
                    "model",
                    format!("'({flag})' synaptic variables are {NEXT_ISSUE}"),
                )
                .at(model, Span::new(k + 1, col, flag.chars().count()))
                .suggest("synapses hold parameters for now ('w : 1', 'w : 1 (shared)')"));
            }
        }
    }
    Ok(())
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
            match line.kind {
                LineKind::Differential => {
                    return Err(at(format!(
                        "synaptic differential equations ('(clock-driven)', '(event-driven)') are {NEXT_ISSUE}"
                    ))
                    .suggest("synapses hold parameters for now ('w : 1')"));
                }
                LineKind::Parameter => {
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
                LineKind::Subexpression => {
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

    /// The variable an `on_pre` statement assigns, and its side; or why it cannot be assigned.
    fn target(&mut self, name: &str, span: Span) -> Result<(VarId, Side), Diagnostic> {
        let code = self.spec.on_pre.as_str();
        let at = Place {
            field: "on_pre",
            src: code,
            span,
        };
        let err = |msg: String| Diagnostic::new("on_pre", msg).at(code, span);
        if let Some(v) = self.group.names.get(name).copied() {
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
        if self.lines.iter().any(|l| l.name == name) {
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

    /// The projection's delay.
    fn delay(&mut self) -> Result<DelayIr, Diagnostic> {
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
        let max_delay = self.spec.max_delay;
        let homogeneous = |steps: u32| -> Result<DelayIr, Diagnostic> {
            if max_delay.is_some() {
                return Err(Diagnostic::new(
                    "max_delay",
                    "max_delay is the queue length of per-synapse delays; this delay is one value for all synapses",
                ));
            }
            Ok(DelayIr::Homogeneous { steps })
        };
        let code = match &self.spec.delay {
            None => return homogeneous(0),
            Some(NumberOrExpr::Number(d)) => return homogeneous(steps_of(*d, "delay")?),
            Some(NumberOrExpr::Expression(code)) => code.clone(),
        };
        let ast = parse_expression(&code, "delay")?;
        if let Ast::Name(name, span) = &ast {
            if let Some(&v) = self.group.names.get(name.as_str()) {
                let sym = &self.group.symbols[v.index()];
                if sym.kind == SymbolKind::Param && !sym.shared {
                    let Some(max) = max_delay else {
                        return Err(Diagnostic::new(
                            "delay",
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
        let (e, ty) = self.expr(&ast, "delay", &code)?;
        require_real(ty, &ast, "delay", &code)?;
        match self.group.arena.as_const(e) {
            Some(d) => homogeneous(steps_of(d, "delay")?),
            None => Err(Diagnostic::new(
                "delay",
                "a delay must be a duration, a constant expression, or the name of a per-synapse variable of the model",
            )
            .at(&code, ast.span())
            .suggest("for delays that differ per synapse, declare 'd : second' in the model, give delay='d' and the values in init_state")),
        }
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
            .any(|l| l.name == name && l.kind == LineKind::Subexpression)
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
            "dv/dt = (ge - v)/(10*ms) : volt (unless refractory)\ndge/dt = -ge/(5*ms) : volt\ntau : second (constant)",
            0.1,
        )
        .threshold("v > 1")
        .reset("v = 0")
        .refractory(2.0);
        crate::frontend::lower(&spec).unwrap()
    }

    fn projection(model: &str, on_pre: &str) -> ProjectionSpec {
        ProjectionSpec {
            name: "S".into(),
            source: "P".into(),
            source_range: None,
            target: "P".into(),
            target_range: None,
            model: model.into(),
            on_pre: on_pre.into(),
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
        assert_eq!(s.on_pre.len(), 3);
        assert_eq!(s.on_pre[0].side, Side::Post);
        assert!(matches!(s.on_pre[0].effect, Effect::Add(_)));
        assert_eq!(s.on_pre[2].side, Side::Synapse);
        assert_eq!(s.per_synapse().len(), 2);
        assert_eq!(s.delay, DelayIr::Homogeneous { steps: 0 });
        let written: Vec<&str> = s
            .neighbours_written(IndexOf::Post)
            .into_iter()
            .map(|v| target_ir().symbol(v).name.clone())
            .map(|n| if n == "v" { "v" } else { "ge" })
            .collect();
        assert_eq!(written.len(), 2);
        // v_post -= we is v_post += -1.5.
        let Effect::Add(e) = s.on_pre[1].effect else {
            panic!()
        };
        assert_eq!(s.group.arena.as_const(e), Some(-1.5));
    }

    #[test]
    fn delays_round_as_brian_and_per_synapse_delays_need_a_queue_length() {
        let mut p = projection("d : second", "ge += 1");
        p.delay = Some(NumberOrExpr::Number(0.25));
        assert_eq!(
            lower_with(&p).unwrap().delay,
            DelayIr::Homogeneous { steps: 3 }
        );
        p.delay = Some(NumberOrExpr::Expression("1.5*ms + 2*dt".into()));
        assert_eq!(
            lower_with(&p).unwrap().delay,
            DelayIr::Homogeneous { steps: 17 }
        );
        p.delay = Some(NumberOrExpr::Expression("d".into()));
        let e = lower_with(&p).unwrap_err();
        assert!(e.message.contains("need max_delay"), "{}", e.render());
        p.max_delay = Some(2.0);
        let s = lower_with(&p).unwrap();
        assert!(matches!(s.delay, DelayIr::PerSynapse { max_steps: 20, .. }));
        p.delay = Some(NumberOrExpr::Number(-1.0));
        p.max_delay = None;
        assert!(lower_with(&p).unwrap_err().message.contains(">= 0"));
        p.delay = Some(NumberOrExpr::Expression("d * 2".into()));
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
    fn the_next_issue_is_refused_where_it_is_written() {
        let e = lower_with(&projection(
            "dApre/dt = -Apre/tau : 1 (event-driven)",
            "ge += 1",
        ))
        .unwrap_err();
        assert!(
            e.message.contains("not supported yet (issue 11)"),
            "{}",
            e.render()
        );
        assert_eq!((e.span.unwrap().line, e.span.unwrap().col), (1, 27));
        let e = lower_with(&projection("dx/dt = -x : 1", "ge += 1")).unwrap_err();
        assert!(e.message.contains("issue 11"), "{}", e.render());
        let e = lower_with(&projection("g_syn = w : 1 (summed)\nw : 1", "")).unwrap_err();
        assert!(e.message.contains("'(summed)'"), "{}", e.render());
        let mut p = projection("w : 1", "ge += w");
        p.on_post = Some("w += 1".into());
        let e = lower_with(&p).unwrap_err();
        assert_eq!(e.field, "on_post");
        assert!(e.message.contains("issue 11"));
        let e = lower_with(&projection("x_post : 1", "")).unwrap_err();
        assert!(e.message.contains("reserved"), "{}", e.render());
    }
}
