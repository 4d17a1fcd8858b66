//! The network front end: a [`NetworkSpec`] -> [`NetworkIr`], or the first mistake, named by its
//! object and field (`Synapses 'S', on_pre, line 1, column 1: unknown name 'gee'`).
//!
//! Each neuron group lowers as a model does alone (with the network's TimedArrays callable);
//! each projection through the synapse front end ([`brian::synapses`]) against the groups on its
//! two sides; Poisson inputs, Poisson groups' rates and monitors against the group they name.

use std::collections::HashSet;
use std::ops::Range;

use super::brian::equations::parse_equations;
use super::brian::expr::{common_name, unknown_name, Place, Scope};
use super::brian::synapses::{self, Neighbour};
use super::brian::tables::{max_elements, TableRef};
use super::builder::GroupBuilder;
use crate::diagnostics::Diagnostic;
use crate::frontend::syntax::parser::parse_expression;
use crate::ir::group::ValueType;
use crate::ir::network::{
    MonitorIr, NetGroup, NetGroupKind, NetworkIr, PoissonInputIr, Projection, Recorded, TableIr,
};
use crate::ir::synapses::{Effect, Pathway};
use crate::ir::{ExprArena, ExprId, GroupIr, IndexOf, SymbolKind, Ty, VarId};
use crate::spec::network::{GroupSpec, MonitorSpec, NetworkSpec, NumberOrExpr, Rates, Record};
use crate::spec::{Dynamics, ModelSpec};
use crate::types::ElemType;

/// The most (projection, delay step) pairs a network delivers from: each projection with
/// per-synapse delays counts its longest delay in steps plus one, every other projection one
/// (the delivery kernel keeps a prefix over them in shared memory).
pub const MAX_DELAY_BUCKETS: usize = 16_384;

/// Names the network's state keeps for itself.
const NETWORK_NAMES: &[&str] = &["t_step", "rng_seed"];

/// Lowers a network spec, reporting the first error with the object and field it is in. Runs
/// on a stack of its own (`frontend::stack`), as a model's lowering does.
pub fn lower(spec: &NetworkSpec) -> Result<NetworkIr, Diagnostic> {
    super::stack::on_own_stack(|| lower_here(spec))
}

/// [`lower`] on the calling thread's stack.
fn lower_here(spec: &NetworkSpec) -> Result<NetworkIr, Diagnostic> {
    spec.check_sizes()?;
    spec.check_names()?;
    spec.check_numbers()?;
    check_network(spec)?;
    let tables = tables(spec)?;
    let table_refs: Vec<TableRef> = tables
        .iter()
        .enumerate()
        .map(|(k, t)| TableRef {
            id: k as u16,
            name: t.name.clone(),
            dt: t.dt,
            rows: t.rows,
            columns: t.columns,
        })
        .collect();
    let mut groups = Vec::new();
    let mut offset = 0usize;
    for g in &spec.groups {
        let kind = group_kind(spec, g, &table_refs)?;
        groups.push(NetGroup {
            name: g.name().to_string(),
            n: g.n(),
            offset,
            kind,
        });
        offset = offset.checked_add(g.n()).ok_or_else(|| {
            Diagnostic::new("groups", "the groups hold more than 2^64 neurons together")
        })?;
    }
    if offset > i32::MAX as usize {
        return Err(Diagnostic::new(
            "groups",
            format!("the groups hold {offset} neurons together: at most 2^31 - 1 are supported"),
        ));
    }
    let projections = spec
        .projections
        .iter()
        .map(|p| projection(spec, p, &groups))
        .collect::<Result<Vec<_>, _>>()?;
    let buckets: usize = projections
        .iter()
        .map(|p| match p.synapses.row_delay() {
            Some((_, max_steps)) => max_steps as usize + 1,
            None => 1,
        })
        .sum();
    if buckets > MAX_DELAY_BUCKETS {
        return Err(Diagnostic::new(
            "projections",
            format!(
                "the projections' delays span {buckets} steps together: at most {MAX_DELAY_BUCKETS} (each per-synapse delay queue counts its longest delay in steps, plus one)"
            ),
        ));
    }
    let poisson_inputs = spec
        .poisson_inputs
        .iter()
        .map(|p| poisson_input(spec, p, &groups))
        .collect::<Result<Vec<_>, _>>()?;
    post_pathways_after_poisson_inputs(&projections, &poisson_inputs)?;
    super::synapse_dynamics::check(&groups, &projections)?;
    let monitors = spec
        .monitors
        .iter()
        .map(|m| monitor(m, &groups))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(NetworkIr {
        dt: spec.dt,
        dtype: spec.dtype,
        fast_math: spec.fast_math,
        deterministic: spec.deterministic,
        groups,
        projections,
        poisson_inputs,
        tables,
        monitors,
    })
}

/// Brian2 runs the `on_post` pathways after the Poisson inputs (`<name>_post` has order 1, a
/// `PoissonInput` 0); the kernels run them with the deliveries, before the Poisson inputs. The
/// two orders agree unless an `on_post` touches what a Poisson input writes, or writes what it
/// reads: refused.
fn post_pathways_after_poisson_inputs(
    projections: &[Projection],
    inputs: &[PoissonInputIr],
) -> Result<(), Diagnostic> {
    for proj in projections {
        let s = &proj.synapses;
        let mut touched = Vec::new();
        let mut written = Vec::new();
        for st in s.pathways_of(Pathway::Post).flat_map(|k| s.statements(k)) {
            let e = match st.effect {
                Effect::Add(e) | Effect::Set(e) => e,
            };
            for v in s.group.arena.vars_of(e).into_iter().chain([st.var]) {
                if let Some((side, var)) = s.neighbour(v) {
                    touched.push((proj.group_on(side), var));
                    if v == st.var {
                        written.push((proj.group_on(side), var));
                    }
                }
            }
        }
        for input in inputs {
            let reads = input.arena.vars_of(input.weight);
            let clash = touched.contains(&(input.target, input.var))
                || written
                    .iter()
                    .any(|(g, v)| *g == input.target && reads.contains(v));
            if clash {
                return Err(within(
                    &format!("Synapses '{}'", proj.name),
                    Diagnostic::new(
                        "on_post",
                        format!(
                            "on_post touches a variable that the PoissonInput '{}' changes: Brian2 runs on_post after the Poisson inputs, this version before them; this combination is not supported yet",
                            input.name
                        ),
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// `what` (an object's description), `field`: the prefix of a diagnostic's field.
fn within(what: &str, mut d: Diagnostic) -> Diagnostic {
    d.field = format!("{what}, {}", d.field);
    d
}

/// Every object's name (an identifier, `NetworkSpec::check_names`) unique and not the
/// network's own; at least one group, none empty.
fn check_network(spec: &NetworkSpec) -> Result<(), Diagnostic> {
    if spec.groups.is_empty() {
        return Err(Diagnostic::new(
            "groups",
            "a network needs at least one group",
        ));
    }
    let mut seen = HashSet::new();
    for (what, name) in spec.objects() {
        if name.starts_with("sf_") || NETWORK_NAMES.contains(&name) {
            return Err(Diagnostic::new(
                "name",
                format!("{what}: the name must be other than t_step, rng_seed and names starting with 'sf_'"),
            ));
        }
        if !seen.insert(name) {
            return Err(Diagnostic::new(
                "name",
                format!("{what}: the name '{name}' is used by another object of the network"),
            ));
        }
    }
    for g in &spec.groups {
        if g.n() == 0 {
            return Err(within(
                &g.describe(),
                Diagnostic::new("n", "a group needs at least one element"),
            ));
        }
    }
    Ok(())
}

fn tables(spec: &NetworkSpec) -> Result<Vec<TableIr>, Diagnostic> {
    if spec.timed_arrays.len() > usize::from(u16::MAX) {
        return Err(Diagnostic::new("timed_arrays", "at most 65535 TimedArrays"));
    }
    spec.timed_arrays
        .iter()
        .map(|t| {
            let what = format!("TimedArray '{}'", t.name);
            if !(t.dt.is_finite() && t.dt > 0.0) {
                return Err(within(
                    &what,
                    Diagnostic::new("dt", format!("dt must be a positive number, got {}", t.dt)),
                ));
            }
            let (rows, columns) = match t.shape[..] {
                [r] => (r, None),
                [r, c] => (r, Some(c)),
                _ => {
                    return Err(within(
                        &what,
                        Diagnostic::new(
                            "shape",
                            format!("a TimedArray has 1 or 2 dimensions, got {:?}", t.shape),
                        ),
                    ))
                }
            };
            let elements = rows.checked_mul(columns.unwrap_or(1));
            if rows == 0 || columns == Some(0) {
                return Err(within(
                    &what,
                    Diagnostic::new("shape", "a TimedArray needs at least one value"),
                ));
            }
            if elements.is_none_or(|e| e > max_elements(spec.dtype)) {
                return Err(within(
                    &what,
                    Diagnostic::new(
                        "shape",
                        format!(
                            "{:?} values are more than a {} network can index (at most {})",
                            t.shape,
                            spec.dtype,
                            max_elements(spec.dtype)
                        ),
                    ),
                ));
            }
            Ok(TableIr {
                name: t.name.clone(),
                dt: t.dt,
                rows,
                columns,
            })
        })
        .collect()
}

/// The variables the state monitors of group `name` record, in order of first mention.
fn monitored(spec: &NetworkSpec, name: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for m in &spec.monitors {
        if let MonitorSpec::State {
            source, variables, ..
        } = m
        {
            if source == name {
                for v in variables {
                    if !out.contains(v) {
                        out.push(v.clone());
                    }
                }
            }
        }
    }
    out
}

fn group_kind(
    spec: &NetworkSpec,
    g: &GroupSpec,
    tables: &[TableRef],
) -> Result<NetGroupKind, Diagnostic> {
    let what = g.describe();
    match g {
        GroupSpec::Neuron { .. } => {
            let mut model = g
                .model_spec(spec)
                .expect("a neuron group")
                .map_err(|e| within(&what, Diagnostic::new("model", e)))?;
            let refuse = |field: &str, why: &str| Err(within(&what, Diagnostic::new(field, why)));
            if !model.record.is_empty() {
                return refuse("record", "in a network, record with a StateMonitor");
            }
            if !model.per_step.is_empty() {
                return refuse(
                    "per_step",
                    "in a network, give inputs that change with time as a TimedArray",
                );
            }
            if model.storage.is_some() {
                return refuse(
                    "storage",
                    "16-bit storage is not supported in networks (use dtype float32)",
                );
            }
            if model.record_spikes {
                return refuse(
                    "record_spikes",
                    "in a network, record spikes with a SpikeMonitor",
                );
            }
            if model.record_spike_train {
                return refuse(
                    "record_spike_train",
                    "in a network, record spikes with a SpikeMonitor",
                );
            }
            // Lowered without `record`: the monitors check their variables, naming themselves.
            let ir =
                crate::frontend::lower_with_tables(&model, tables).map_err(|d| within(&what, d))?;
            let typed = |s: &&crate::ir::Symbol| {
                s.value != ValueType::Real
                    && matches!(
                        s.kind,
                        SymbolKind::State | SymbolKind::Param | SymbolKind::PerNeuronConstant
                    )
            };
            if let Some(sym) = ir.symbols.iter().find(typed) {
                return Err(within(
                    &what,
                    Diagnostic::new(
                        "equations",
                        format!(
                            "'{}' is declared {}: boolean and integer variables are not supported in networks yet",
                            sym.name, sym.unit
                        ),
                    ),
                ));
            }
            model.record = monitored(spec, g.name());
            Ok(NetGroupKind::Neuron {
                spec: Box::new(model),
                ir,
            })
        }
        GroupSpec::Poisson {
            rates, constants, ..
        } => {
            let mut b = GroupBuilder::default();
            b.add_symbol("t", SymbolKind::Time, "second");
            b.add_symbol("i", SymbolKind::Index(IndexOf::Element), "integer");
            b.add_symbol("N", SymbolKind::Count(IndexOf::Element), "integer");
            let mut scope = ConstScope {
                builder: b,
                constants,
                dt: spec.dt,
                tables,
                vars: true,
                dtype: spec.dtype,
                depth: 0,
            };
            let rates = match rates {
                None => None,
                Some(Rates::Number(r)) => {
                    if !(r.is_finite() && *r >= 0.0) {
                        return Err(within(
                            &what,
                            Diagnostic::new("rates", format!("rates must be >= 0, got {r}")),
                        ));
                    }
                    Some(scope.builder.arena.constant(*r))
                }
                Some(Rates::Expression(code)) => {
                    let ast = parse_expression(code, "rates").map_err(|d| within(&what, d))?;
                    let (e, ty) = scope
                        .expr(&ast, "rates", code)
                        .map_err(|d| within(&what, d))?;
                    super::brian::expr::require_real(ty, &ast, "rates", code)
                        .map_err(|d| within(&what, d))?;
                    Some(e)
                }
            };
            let lowered = super::builder::Lowered {
                dynamics: crate::ir::Dynamics::Odes(Vec::new()),
                events: crate::ir::Events::none(),
                subexpressions: Default::default(),
                held: Vec::new(),
                noise: Vec::new(),
            };
            let ir = scope
                .builder
                .finish(lowered, crate::spec::Method::Euler, 1, spec.dt, &[])
                .map_err(|d| within(&what, d))?;
            Ok(NetGroupKind::Poisson { ir, rates })
        }
        GroupSpec::SpikeGenerator {
            n_spikes, period, ..
        } => {
            let period_steps = match period {
                None => None,
                Some(p) => {
                    // Brian2: the period is a whole number of steps (round(period / dt)).
                    let steps = (p / spec.dt).round();
                    let bad = !(p.is_finite() && *p > 0.0)
                        || steps < 1.0
                        || (steps * spec.dt - p).abs() > p * f64::EPSILON
                        || steps > i32::MAX as f64;
                    if bad {
                        return Err(within(
                            &what,
                            Diagnostic::new(
                                "period",
                                format!(
                                    "the period must be a positive whole number of steps of dt = {}, got {p}",
                                    spec.dt
                                ),
                            ),
                        ));
                    }
                    Some(steps as u32)
                }
            };
            if *n_spikes > i32::MAX as usize {
                return Err(within(
                    &what,
                    Diagnostic::new("n_spikes", "at most 2^31 - 1 spikes"),
                ));
            }
            Ok(NetGroupKind::SpikeGenerator {
                n_spikes: *n_spikes,
                period_steps,
            })
        }
    }
}

/// Names in a rate or weight expression: constants, units, `dt`, TimedArrays, and (with
/// `vars`) the symbols of the group being built.
struct ConstScope<'a> {
    builder: GroupBuilder,
    constants: &'a std::collections::BTreeMap<String, f64>,
    dt: f64,
    tables: &'a [TableRef],
    vars: bool,
    dtype: ElemType,
    /// How deep lowering recurses now (`Scope::depth`).
    depth: usize,
}

impl Scope for ConstScope<'_> {
    fn depth(&mut self) -> &mut usize {
        &mut self.depth
    }

    fn precision(&self) -> ElemType {
        self.dtype
    }

    fn arena(&mut self) -> &mut ExprArena {
        &mut self.builder.arena
    }

    fn table(&self, name: &str) -> Option<(TableRef, f64)> {
        let t = self.tables.iter().find(|t| t.name == name)?;
        Some((t.clone(), self.dt))
    }

    fn name(&mut self, name: &str, at: Place) -> Result<(ExprId, Ty), Diagnostic> {
        if self.vars {
            if let Some(found) = self.builder.symbol_value(name) {
                return Ok(found);
            }
        }
        if let Some(c) = self.constants.get(name) {
            return Ok((self.builder.arena.constant(*c), Ty::Real));
        }
        if let Some(found) = common_name(&mut self.builder.arena, self.dt, name, at) {
            return found;
        }
        let mut known: Vec<&str> = self.constants.keys().map(String::as_str).collect();
        if self.vars {
            known.extend(self.builder.symbols.iter().map(|s| s.name.as_str()));
        }
        Err(unknown_name(name, at, known, "give it in constants"))
    }
}

/// A `[start, end)` range of a group of `n` elements (the whole group when absent).
fn range_in(
    range: Option<[usize; 2]>,
    n: usize,
    field: &str,
    group: &str,
) -> Result<Range<usize>, Diagnostic> {
    let Some([a, b]) = range else {
        return Ok(0..n);
    };
    if a >= b || b > n {
        return Err(Diagnostic::new(
            field,
            format!("[{a}, {b}) is not a non-empty range of {group}'s {n} elements"),
        ));
    }
    Ok(a..b)
}

fn group_named<'g>(
    groups: &'g [NetGroup],
    name: &str,
    field: &str,
) -> Result<(usize, &'g NetGroup), Diagnostic> {
    groups
        .iter()
        .enumerate()
        .find(|(_, g)| g.name == name)
        .ok_or_else(|| {
            let names: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
            let mut d = Diagnostic::new(field, format!("no group is called '{name}'"));
            let near = crate::diagnostics::nearest_names(name, names.iter().copied());
            if !near.is_empty() {
                d = d.suggest(format!(
                    "did you mean {}?",
                    super::brian::expr::quote_list(&near)
                ));
            }
            d
        })
}

fn describe(g: &NetGroup) -> String {
    let kind = match g.kind {
        NetGroupKind::Neuron { .. } => "NeuronGroup",
        NetGroupKind::Poisson { .. } => "PoissonGroup",
        NetGroupKind::SpikeGenerator { .. } => "SpikeGeneratorGroup",
    };
    format!("{kind} '{}'", g.name)
}

/// The variables of a neuron group's equations flagged `(constant)`.
fn constant_names(spec: &ModelSpec) -> HashSet<String> {
    match &spec.dynamics {
        Dynamics::Equations(text) => parse_equations(text)
            .map(|lines| {
                lines
                    .into_iter()
                    .filter(|l| l.has_flag("constant"))
                    .map(|l| l.name)
                    .collect()
            })
            .unwrap_or_default(),
        Dynamics::ModelClass(_) => HashSet::new(),
    }
}

fn neighbour<'g>(g: &'g NetGroup, range: &Range<usize>) -> Neighbour<'g> {
    let (ir, constant) = match &g.kind {
        NetGroupKind::Neuron { spec, ir } => (Some(ir), constant_names(spec)),
        _ => (None, HashSet::new()),
    };
    Neighbour {
        describe: describe(g),
        ir,
        n: range.len(),
        constant,
    }
}

fn projection(
    spec: &NetworkSpec,
    p: &crate::spec::network::ProjectionSpec,
    groups: &[NetGroup],
) -> Result<Projection, Diagnostic> {
    let what = format!("Synapses '{}'", p.name);
    let (source, sg) = group_named(groups, &p.source, "source").map_err(|d| within(&what, d))?;
    let (target, tg) = group_named(groups, &p.target, "target").map_err(|d| within(&what, d))?;
    if matches!(
        tg.kind,
        NetGroupKind::Poisson { .. } | NetGroupKind::SpikeGenerator { .. }
    ) {
        return Err(within(
            &what,
            Diagnostic::new(
                "target",
                format!(
                    "the target {} is a spike source: it has no variables to act on",
                    describe(tg)
                ),
            ),
        ));
    }
    let source_range =
        range_in(p.source_range, sg.n, "source_range", &sg.name).map_err(|d| within(&what, d))?;
    let target_range =
        range_in(p.target_range, tg.n, "target_range", &tg.name).map_err(|d| within(&what, d))?;
    let pre = neighbour(sg, &source_range);
    let post = neighbour(tg, &target_range);
    let synapses =
        synapses::lower(p, &pre, &post, spec.dt, spec.dtype).map_err(|d| within(&what, d))?;
    Ok(Projection {
        name: p.name.clone(),
        source,
        source_range,
        target,
        target_range,
        synapses,
    })
}

fn poisson_input(
    spec: &NetworkSpec,
    p: &crate::spec::network::PoissonInputSpec,
    groups: &[NetGroup],
) -> Result<PoissonInputIr, Diagnostic> {
    let what = format!("PoissonInput '{}'", p.name);
    let err = |field: &str, msg: String| within(&what, Diagnostic::new(field, msg));
    let (target, tg) = group_named(groups, &p.target, "target").map_err(|d| within(&what, d))?;
    let NetGroupKind::Neuron { spec: model, ir } = &tg.kind else {
        return Err(err(
            "target",
            format!(
                "the target {} is a spike source: it has no variables",
                describe(tg)
            ),
        ));
    };
    let target_range =
        range_in(p.target_range, tg.n, "target_range", &tg.name).map_err(|d| within(&what, d))?;
    let var = ir
        .lookup(&p.variable)
        .filter(|v| matches!(ir.symbol(*v).kind, SymbolKind::State | SymbolKind::Param))
        .ok_or_else(|| {
            err(
                "variable",
                format!(
                    "{} has no state variable or parameter '{}'",
                    describe(tg),
                    p.variable
                ),
            )
        })?;
    if ir.symbol(var).shared || constant_names(model).contains(&p.variable) {
        return Err(err(
            "variable",
            format!(
                "'{}' of {} is flagged shared or constant",
                p.variable,
                describe(tg)
            ),
        ));
    }
    if p.n == 0 || p.n > i32::MAX as u64 {
        return Err(err("n", format!("n must be in 1..=2^31-1, got {}", p.n)));
    }
    let rate = constant_value(&p.rate, &p.constants, spec.dt, spec.dtype, "rate")
        .map_err(|d| within(&what, d))?;
    let prob = rate * spec.dt;
    if !(rate.is_finite() && rate >= 0.0 && prob <= 1.0) {
        return Err(err(
            "rate",
            format!(
                "rate * dt must be a probability in [0, 1], got {rate} * {} = {prob}",
                spec.dt
            ),
        ));
    }
    let mut scope = TargetScope {
        ir,
        arena: ir.arena.clone(),
        constants: &p.constants,
        dt: spec.dt,
        dtype: spec.dtype,
        depth: 0,
    };
    let weight = match &p.weight {
        NumberOrExpr::Number(w) => scope.arena.constant(*w),
        NumberOrExpr::Expression(code) => {
            let ast = parse_expression(code, "weight").map_err(|d| within(&what, d))?;
            let (e, ty) = scope
                .expr(&ast, "weight", code)
                .map_err(|d| within(&what, d))?;
            super::brian::expr::require_real(ty, &ast, "weight", code)
                .map_err(|d| within(&what, d))?;
            e
        }
    };
    Ok(PoissonInputIr {
        name: p.name.clone(),
        target,
        target_range,
        var,
        n: p.n,
        p: prob,
        arena: scope.arena,
        weight,
    })
}

/// A number, or an expression that folds to one (constants, units, `dt`).
fn constant_value(
    value: &NumberOrExpr,
    constants: &std::collections::BTreeMap<String, f64>,
    dt: f64,
    dtype: ElemType,
    field: &str,
) -> Result<f64, Diagnostic> {
    let code = match value {
        NumberOrExpr::Number(v) => return Ok(*v),
        NumberOrExpr::Expression(code) => code,
    };
    let ast = parse_expression(code, field)?;
    let mut scope = ConstScope {
        builder: GroupBuilder::default(),
        constants,
        dt,
        tables: &[],
        vars: false,
        dtype,
        depth: 0,
    };
    let (e, ty) = scope.expr(&ast, field, code)?;
    super::brian::expr::require_real(ty, &ast, field, code)?;
    scope.builder.arena.as_const(e).ok_or_else(|| {
        Diagnostic::new(field, "must be a number or a constant expression").at(code, ast.span())
    })
}

/// Names in a Poisson input's weight: the target group's states, parameters, per-neuron
/// constants, `t`, `i`, `N`, then the input's constants and the common names.
struct TargetScope<'a> {
    ir: &'a GroupIr,
    arena: ExprArena,
    constants: &'a std::collections::BTreeMap<String, f64>,
    dt: f64,
    dtype: ElemType,
    /// How deep lowering recurses now (`Scope::depth`).
    depth: usize,
}

impl Scope for TargetScope<'_> {
    fn depth(&mut self) -> &mut usize {
        &mut self.depth
    }

    fn precision(&self) -> ElemType {
        self.dtype
    }

    fn arena(&mut self) -> &mut ExprArena {
        &mut self.arena
    }

    fn name(&mut self, name: &str, at: Place) -> Result<(ExprId, Ty), Diagnostic> {
        let usable = |v: VarId| {
            matches!(
                self.ir.symbol(v).kind,
                SymbolKind::State
                    | SymbolKind::Param
                    | SymbolKind::PerNeuronConstant
                    | SymbolKind::Time
                    | SymbolKind::Index(IndexOf::Element)
                    | SymbolKind::Count(IndexOf::Element)
            )
        };
        if let Some(v) = self.ir.lookup(name).filter(|v| usable(*v)) {
            return Ok((self.arena.var(v), Ty::Real));
        }
        if let Some(c) = self.constants.get(name) {
            return Ok((self.arena.constant(*c), Ty::Real));
        }
        if let Some(found) = common_name(&mut self.arena, self.dt, name, at) {
            return found;
        }
        let mut known: Vec<&str> = self.constants.keys().map(String::as_str).collect();
        known.extend(self.ir.symbols.iter().map(|s| s.name.as_str()));
        Err(unknown_name(
            name,
            at,
            known,
            "give it in constants, or use a variable of the target group",
        ))
    }
}

fn monitor(m: &MonitorSpec, groups: &[NetGroup]) -> Result<MonitorIr, Diagnostic> {
    let what = m.describe();
    let (group, g) = group_named(groups, m.source(), "source").map_err(|d| within(&what, d))?;
    let err = |field: &str, msg: String| within(&what, Diagnostic::new(field, msg));
    Ok(match m {
        MonitorSpec::Spike {
            name,
            range,
            capacity,
            ..
        } => {
            if *capacity == 0 || *capacity > i32::MAX as usize {
                return Err(err(
                    "capacity",
                    format!("the capacity must be in 1..=2^31-1, got {capacity}"),
                ));
            }
            MonitorIr::Spike {
                name: name.clone(),
                group,
                range: range_in(*range, g.n, "range", &g.name).map_err(|d| within(&what, d))?,
                capacity: *capacity,
            }
        }
        MonitorSpec::Rate { name, range, .. } => MonitorIr::Rate {
            name: name.clone(),
            group,
            range: range_in(*range, g.n, "range", &g.name).map_err(|d| within(&what, d))?,
        },
        MonitorSpec::State {
            name,
            variables,
            record,
            every,
            ..
        } => {
            let Some(ir) = g.neuron_ir() else {
                return Err(err(
                    "source",
                    format!("{} has no state to record", describe(g)),
                ));
            };
            if variables.is_empty() {
                return Err(err("variables", "name at least one variable".into()));
            }
            for v in variables {
                let known = ir.lookup(v).is_some_and(|x| {
                    matches!(
                        ir.symbol(x).kind,
                        SymbolKind::State | SymbolKind::Param | SymbolKind::PerNeuronConstant
                    )
                }) || ir.subexpressions.contains_key(v);
                if !known {
                    return Err(err(
                        "variables",
                        format!("{} has no variable '{v}' to record", describe(g)),
                    ));
                }
                let reads_refractoriness = ir.subexpressions.get(v).is_some_and(|e| {
                    ir.arena
                        .vars_of(*e)
                        .iter()
                        .any(|x| ir.symbol(*x).kind == SymbolKind::NotRefractory)
                });
                if reads_refractoriness
                    && matches!(ir.events.refractory, crate::ir::RefractoryIr::Duration(_))
                {
                    return Err(err(
                        "variables",
                        format!("recording '{v}', which reads not_refractory, is not supported in networks yet"),
                    ));
                }
            }
            let record = match record {
                Record::All(true) => Recorded::All,
                Record::All(false) => {
                    return Err(err(
                        "record",
                        "record: give true or a list of indices".into(),
                    ))
                }
                Record::Indices(list) => {
                    let mut seen = HashSet::new();
                    for &i in list {
                        if i >= g.n {
                            return Err(err(
                                "record",
                                format!("index {i} is outside {}'s {} elements", g.name, g.n),
                            ));
                        }
                        if !seen.insert(i) {
                            return Err(err("record", format!("index {i} is given twice")));
                        }
                    }
                    if list.is_empty() {
                        return Err(err("record", "record at least one index".into()));
                    }
                    Recorded::Indices(list.clone())
                }
            };
            if *every == 0 {
                return Err(err("every", "every must be at least 1".into()));
            }
            MonitorIr::State {
                name: name.clone(),
                group,
                variables: variables.clone(),
                record,
                every: *every,
            }
        }
    })
}

/// The element type of a network's real buffers.
pub fn real(ir: &NetworkIr) -> ElemType {
    ir.dtype
}

/// The test networks (`tests/networks/`), for the tests of every stage.
#[cfg(test)]
pub(crate) mod tests_support {
    /// Neurons, a Poisson group, a subgroup projection, per-synapse delays, a Poisson input and
    /// every kind of monitor.
    pub(crate) const COBA_LIKE: &str = include_str!("../../tests/networks/mixed_small.json");
}

#[cfg(test)]
mod tests {
    use super::tests_support::COBA_LIKE;
    use super::*;

    #[test]
    fn lowers_groups_projections_inputs_and_monitors() {
        let spec = NetworkSpec::from_json(COBA_LIKE).unwrap();
        let net = lower(&spec).unwrap();
        assert_eq!(net.groups[1].offset, 8);
        assert_eq!(net.total(), 12);
        assert_eq!(net.projections[0].source_range, 0..6);
        assert_eq!(net.projections[1].synapses.max_delay(Pathway::Pre), 20);
        assert!((net.poisson_inputs[0].p - 0.001).abs() < 1e-15);
        let NetGroupKind::Neuron { spec: model, .. } = &net.groups[0].kind else {
            panic!()
        };
        assert_eq!(model.record, ["v", "ge"]);
    }

    fn error_of(edit: impl Fn(&mut serde_json::Value)) -> String {
        let mut v: serde_json::Value = serde_json::from_str(COBA_LIKE).unwrap();
        edit(&mut v);
        let spec = NetworkSpec::from_json(&v.to_string()).unwrap();
        lower(&spec).unwrap_err().render()
    }

    #[test]
    fn errors_name_the_object_and_field() {
        use serde_json::json;
        let e = error_of(|v| v["projections"][0]["on_pre"] = json!("gee += we"));
        assert!(
            e.starts_with("in Synapses 'Ce', on_pre, line 1, column 1: unknown name 'gee'"),
            "{e}"
        );
        let e = error_of(|v| v["projections"][1]["source"] = json!("pgg"));
        assert!(
            e.contains("Synapses 'In', source: no group is called 'pgg'"),
            "{e}"
        );
        assert!(e.contains("did you mean 'pg'"), "{e}");
        let e = error_of(|v| v["projections"][0]["source_range"] = json!([4, 9]));
        assert!(
            e.contains("source_range: [4, 9) is not a non-empty range"),
            "{e}"
        );
        let e = error_of(|v| {
            v["groups"][0]["model"]["equations"] = json!("dv/dt = -vv : 1\ndge/dt = -ge : 1")
        });
        assert!(
            e.starts_with("in NeuronGroup 'P', equations, line 1"),
            "{e}"
        );
        let e = error_of(|v| v["monitors"][1]["variables"] = json!(["v", "gi"]));
        assert!(
            e.contains("StateMonitor 'vm', variables: NeuronGroup 'P' has no variable 'gi'"),
            "{e}"
        );
        let e = error_of(|v| v["poisson_inputs"][0]["rate"] = json!(20.0));
        assert!(e.contains("PoissonInput 'inp', rate"), "{e}");
        let e = error_of(|v| v["monitors"][0]["name"] = json!("inp"));
        assert!(e.contains("used by another object"), "{e}");
        let e = error_of(|v| v["monitors"][1]["record"] = json!([3, 8]));
        assert!(e.contains("index 8 is outside"), "{e}");
        let e = error_of(|v| v["projections"][1]["target"] = json!("pg"));
        assert!(e.contains("is a spike source"), "{e}");
    }

    /// A network's names, numbers and sizes meet the rules a model's do (issue 8, items 10 and
    /// 11): before, constants of projections and inputs were not checked at all.
    #[test]
    fn names_numbers_and_sizes_are_checked_as_a_models_are() {
        use serde_json::json;
        let payload = "y; system(\"echo INJECTED\"); //";
        let e = error_of(|v| v["projections"][0]["constants"] = json!({payload: 1.62}));
        assert!(
            e.contains("Synapses 'Ce'") && e.contains(&format!("'{payload}' is not a valid name")),
            "{e}"
        );
        let e = error_of(|v| v["poisson_inputs"][0]["constants"] = json!({"c\u{e9}": 1.0}));
        assert!(
            e.contains("PoissonInput 'inp'") && e.contains("U+00E9"),
            "{e}"
        );
        let e = error_of(|v| v["groups"][1]["name"] = json!("p g"));
        assert!(e.contains("'p g' is not a valid name: a space"), "{e}");
        let e = error_of(|v| v["projections"][1]["model"] = json!("w\u{200b} : 1"));
        assert!(e.contains("U+200B"), "{e}");
        let e = error_of(|v| {
            v["dtype"] = json!("float32");
            v["projections"][0]["constants"] = json!({"we": 1e39});
        });
        assert!(
            e.contains("Synapses 'Ce'") && e.contains("does not fit float32"),
            "{e}"
        );
        let e = error_of(|v| {
            v["dtype"] = json!("float32");
            v["dt"] = json!(1e-300);
        });
        assert!(
            e.starts_with("in dt:") && e.contains("too small for float32"),
            "{e}"
        );
        let e = error_of(|v| v["projections"][0]["on_pre"] = json!("ge += 1e39*we"));
        assert!(e.contains("does not fit float32"), "{e}");
        let long = format!(
            "ge += we{}",
            " ".repeat(crate::spec::limits::MAX_TEXT_BYTES)
        );
        let e = error_of(|v| v["projections"][0]["on_pre"] = json!(long));
        assert!(
            e.contains("projections[0].on_pre") && e.contains("at most"),
            "{e}"
        );
        // Deep expressions are located errors from any thread (lowering has its own stack).
        let deep = format!("ge += {}we{}", "(".repeat(2600), ")".repeat(2600));
        let e = std::thread::Builder::new()
            .stack_size(1 << 20)
            .spawn(move || error_of(|v| v["projections"][0]["on_pre"] = json!(deep)))
            .unwrap()
            .join()
            .unwrap();
        assert!(
            e.contains("Synapses 'Ce', on_pre") && e.contains("nest"),
            "{e}"
        );
    }
}
