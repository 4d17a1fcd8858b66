//! The adjoint of one step: what reverse-mode differentiation (backpropagation through time)
//! needs from the step, as one DAG derived from the step's own DAG by symbolic differentiation.
//!
//! Why symbolic: the forward step is already one hash-consed DAG over the values at the start of
//! the step (`step::build`: the integrator's stages, the `(unless refractory)` clamp, the
//! threshold, the reset). Differentiating that DAG (`ir::derivative`) gives the derivative of
//! every scheme the forward supports, with the forward's shared subterms shared again, and the
//! printers print it like any step; no graph of small operations is taped at run time.
//!
//! One step maps the stored values `x` (and the inputs `p`: parameters, per-neuron constants,
//! per-step inputs) to `x' = select(spike, R(u), u)`, `u = U(x, p)` the updated values, `R` the
//! reset, `spike = gate and H(z(u))` with `z` the threshold's argument (`v - v_th` for
//! `v > v_th`) and `gate` the discrete rest (`not_refractory`, boolean parameters). Given the
//! adjoint `a'` of `x'`, the cotangent `g` of the step's spike and the cotangents `c` of the
//! step's traces (recorded at the start of the step), the adjoint of each input `y` is
//!
//! ```text
//! a_y = d/dy [ sum_i a'_i x'_i + sum_r c_r trace_r ]          (the selects keep their branches)
//!     + select(gate and surrogate, K s(z), 0) dz/dy,
//! K   = g + sum_{i reset} a'_i (R_i(u) - u_i)                 (the second term: unless detached)
//! ```
//!
//! where `s` is the spec's surrogate (`spec::surrogate`; without one the spike's derivative is
//! 0, the exact derivative almost everywhere, so smooth runs differentiate exactly). The adjoint
//! variables `a'`, `g`, `c` are new variables numbered after the group's symbols.
//!
//! What is not differentiable is an error naming it: random numbers (`xi`, `rand()`,
//! `randn()`), `int()` / `floor()` / `ceil()` of a differentiated value, sub-steps run as a loop,
//! a refractory period that is a condition or an expression, a reset that writes parameters,
//! states stored as integers or booleans, a threshold that is not one comparison (and-ed with
//! conditions that have no derivative).

use std::collections::HashMap;
use std::fmt;

use super::{build, run_reset, FastMath};
use crate::ir::derivative::{depends_on, derivative};
use crate::ir::{
    BinOp, Dynamics, ExprArena, ExprId, Func, GroupIr, Node, RefractoryIr, Site, SymbolKind,
    ValueType, VarId,
};
use crate::spec::{Surrogate, SurrogateKind};

/// Why a model's runs cannot be differentiated (the message names the construct).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotDifferentiable(pub String);

impl fmt::Display for NotDifferentiable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "this model's runs are not differentiable: {}", self.0)
    }
}

impl std::error::Error for NotDifferentiable {}

/// The adjoint of one step (see the module documentation).
pub struct AdjointDag {
    pub arena: ExprArena,
    /// The stored variables, in the order of `GroupIr::stored`.
    pub stored: Vec<VarId>,
    /// `a'`: the adjoint of each stored variable at the end of the step (new variables).
    pub adjoint_next: Vec<VarId>,
    /// `g`: the cotangent of the step's spike (a new variable).
    pub spike_cotangent: VarId,
    /// `c`: the cotangent of each recorded trace at this step (new variables, in the order of
    /// the spec's `record`).
    pub trace_cotangents: Vec<VarId>,
    /// The adjoint of each stored variable at the start of the step.
    pub adjoint: Vec<ExprId>,
    /// Each differentiable input (a real parameter, per-neuron constant or per-step input) and
    /// its adjoint contribution from this step.
    pub inputs: Vec<(VarId, ExprId)>,
    /// The forward spike of the step (recomputed from the start values).
    pub spike: Option<ExprId>,
    /// The forward step's new value of each stored variable (in the order of `stored`), read
    /// from the values at the start of the step and what was delivered in it (`delivered`, for
    /// a network's group): what the adjoint kernels recompute the segments between their
    /// checkpoints with (the group kernel's own step DAG, `step::build`).
    pub next_state: Vec<ExprId>,
    /// The threshold's argument `z`, after the update (for tests and the surrogate).
    pub threshold_argument: Option<ExprId>,
    /// `Δ`: what a network's synapses delivered to each of these stored variables in this step
    /// (new variables; empty for a group run alone), added after the update and before the
    /// reset ([`adjoint_with_deliveries`]).
    pub delivered: Vec<VarId>,
    /// The adjoint of each `Δ` (the derivative of `W` by it; the spike does not depend on it).
    pub delivered_adjoint: Vec<ExprId>,
}

impl AdjointDag {
    /// Every expression the adjoint step computes: the stored variables' adjoints, then the
    /// inputs'.
    pub fn roots(&self) -> Vec<ExprId> {
        let mut roots = self.adjoint.clone();
        roots.extend(self.inputs.iter().map(|(_, e)| *e));
        roots
    }

    /// Whether `v` is one of the adjoint variables (numbered from the group's symbol count).
    pub fn is_adjoint_var(&self, v: VarId) -> bool {
        self.adjoint_next.contains(&v)
            || v == self.spike_cotangent
            || self.trace_cotangents.contains(&v)
            || self.delivered.contains(&v)
    }
}

/// Whether runs of `ir` can be differentiated; `Err` names what prevents it.
pub fn check(ir: &GroupIr) -> Result<(), NotDifferentiable> {
    if !ir.stream_draws().is_empty() {
        return Err(NotDifferentiable(
            "it draws random numbers (xi, rand() or randn()): a stochastic model has no pathwise \
             derivative here"
                .into(),
        ));
    }
    match &ir.events.refractory {
        RefractoryIr::None => {}
        RefractoryIr::Duration(d) if ir.arena.as_const(*d).is_some() => {}
        RefractoryIr::Duration(_) => {
            return Err(NotDifferentiable(
                "its refractory period is an expression; gradients need a constant duration".into(),
            ))
        }
        RefractoryIr::Condition(_) => {
            return Err(NotDifferentiable(
                "its refractory period is a condition; gradients need a constant duration".into(),
            ))
        }
    }
    if let Some(p) = ir.written_params().first() {
        return Err(NotDifferentiable(format!(
            "its reset writes the parameter '{}'; make it a state variable",
            ir.symbol(*p).name
        )));
    }
    for v in ir.stored() {
        let s = ir.symbol(v);
        if s.value != ValueType::Real {
            return Err(NotDifferentiable(format!(
                "the state variable '{}' is not real",
                s.name
            )));
        }
    }
    Ok(())
}

/// The threshold as the argument `z` of its comparison (the spike is `z > 0`) and the
/// conditions and-ed with it, which have no derivative.
fn split_threshold(
    ir: &GroupIr,
    arena: &mut ExprArena,
    thr: ExprId,
) -> Result<(ExprId, Vec<ExprId>), NotDifferentiable> {
    let differentiable = differentiable_vars(ir);
    let reads_differentiable =
        |arena: &ExprArena, e: ExprId| arena.vars_of(e).iter().any(|v| differentiable.contains(v));
    let mut conditions = vec![thr];
    let mut comparison = None;
    let mut gates = Vec::new();
    while let Some(c) = conditions.pop() {
        match *arena.node(c) {
            Node::Bin(BinOp::And, a, b) => conditions.extend([a, b]),
            _ if !reads_differentiable(arena, c) => gates.push(c),
            Node::Bin(op @ (BinOp::Gt | BinOp::Ge | BinOp::Lt | BinOp::Le), a, b)
                if comparison.is_none() =>
            {
                comparison = Some(match op {
                    BinOp::Gt | BinOp::Ge => arena.sub(a, b),
                    _ => arena.sub(b, a),
                });
            }
            _ => {
                return Err(NotDifferentiable(
                    "its threshold is not one comparison (<, <=, >, >=) of real values, and-ed \
                     with conditions that read no state: the surrogate needs the comparison's \
                     two sides"
                        .into(),
                ))
            }
        }
    }
    let z = comparison.ok_or_else(|| {
        NotDifferentiable("its threshold reads no state variable through a comparison".into())
    })?;
    Ok((z, gates))
}

/// The variables a gradient is taken with respect to: the stored variables and the real
/// parameters, per-neuron constants and per-step inputs.
fn differentiable_vars(ir: &GroupIr) -> Vec<VarId> {
    (0..ir.symbols.len())
        .map(VarId::at)
        .filter(|v| {
            let s = ir.symbol(*v);
            s.value == ValueType::Real
                && matches!(
                    s.kind,
                    SymbolKind::State
                        | SymbolKind::Param
                        | SymbolKind::PerNeuronConstant
                        | SymbolKind::PerStep
                )
        })
        .collect()
}

/// The inputs the adjoint differentiates besides the state: every real parameter,
/// per-neuron constant and per-step input, in symbol order.
pub fn differentiable_inputs(ir: &GroupIr) -> Vec<VarId> {
    differentiable_vars(ir)
        .into_iter()
        .filter(|v| ir.symbol(*v).kind != SymbolKind::State)
        .collect()
}

/// `s(z)`, the surrogate's derivative, as an expression (see `spec::surrogate`). Its
/// reciprocals of denominators >= 1 are `Func::Recip`: one hardware instruction in the CUDA
/// float32 adjoint kernels (approximate, within an ulp or two), the exact division elsewhere.
fn surrogate_expr(arena: &mut ExprArena, s: Surrogate, z: ExprId) -> ExprId {
    let k = arena.constant(s.slope);
    let one = arena.constant(1.0);
    match s.kind {
        SurrogateKind::FastSigmoid => {
            let az = arena.call(Func::Abs, z);
            let kz = arena.mul(k, az);
            let d = arena.add(one, kz);
            let d2 = arena.mul(d, d);
            arena.call(Func::Recip, d2)
        }
        SurrogateKind::Sigmoid => {
            let mk = arena.constant(-s.slope);
            let e = arena.mul(mk, z);
            let e = arena.call(Func::Exp, e);
            let d = arena.add(one, e);
            let sig = arena.call(Func::Recip, d);
            let rest = arena.sub(one, sig);
            let p = arena.mul(sig, rest);
            arena.mul(k, p)
        }
        SurrogateKind::Arctan => {
            let c = arena.constant(std::f64::consts::FRAC_PI_2 * s.slope);
            let a = arena.mul(c, z);
            let a2 = arena.mul(a, a);
            let d = arena.add(one, a2);
            let half_k = arena.constant(0.5 * s.slope);
            arena.div(half_k, d)
        }
        SurrogateKind::PiecewiseLinear => {
            let az = arena.call(Func::Abs, z);
            let kz = arena.mul(k, az);
            let r = arena.sub(one, kz);
            let r = arena.mul(k, r);
            let zero = arena.constant(0.0);
            arena.bin(BinOp::Max, zero, r)
        }
    }
}

/// `e` with every held (`constant over dt`) value replaced by its expression, so that the
/// derivative sees through it.
fn unhold(ir: &GroupIr, arena: &mut ExprArena, e: ExprId) -> ExprId {
    let held: HashMap<VarId, ExprId> = ir.held.iter().copied().collect();
    let mut e = e;
    // Held values nest in dependency order, so a few passes resolve them fully.
    for _ in 0..=held.len() {
        e = arena.substitute(e, &held);
    }
    e
}

/// The first `int()`, `floor()` or `ceil()` of a differentiated value among `roots`.
fn piecewise_constant(arena: &ExprArena, roots: &[ExprId], vars: &[VarId]) -> Option<Func> {
    let mut seen = vec![false; arena.len()];
    let mut stack = roots.to_vec();
    while let Some(id) = stack.pop() {
        if std::mem::replace(&mut seen[id.0 as usize], true) {
            continue;
        }
        if let Node::Call(f @ (Func::Trunc | Func::Floor | Func::Ceil), a) = *arena.node(id) {
            if vars.iter().any(|v| depends_on(arena, a, *v)) {
                return Some(f);
            }
        }
        stack.extend(arena.children(id));
    }
    None
}

/// Where the model's text calls `f`, quoted, so that the error names the expression: the first
/// equation (or model-class assignment), threshold or reset statement that calls it, and the
/// subexpression it is written in, if any.
fn written_at(ir: &GroupIr, f: Func) -> Option<String> {
    let calls = |root: ExprId| {
        let mut stack = vec![root];
        while let Some(id) = stack.pop() {
            if matches!(*ir.arena.node(id), Node::Call(g, _) if g == f) {
                return true;
            }
            stack.extend(ir.arena.children(id));
        }
        false
    };
    let mut sites: Vec<(Site, ExprId)> = Vec::new();
    match &ir.dynamics {
        Dynamics::Odes(eqs) => {
            sites.extend(eqs.iter().map(|e| (Site::Dynamics(e.var), e.derivative)))
        }
        Dynamics::Updates(updates) => {
            for u in updates {
                sites.extend(u.derivative.map(|d| (Site::Dynamics(u.var), d)));
                sites.push((Site::Dynamics(u.var), u.end_value));
            }
        }
    }
    sites.extend(ir.events.threshold.map(|t| (Site::Threshold, t)));
    sites.extend(
        ir.events
            .reset
            .iter()
            .enumerate()
            .map(|(k, (_, e))| (Site::Reset(k), *e)),
    );
    let quoted = sites.into_iter().find_map(|(site, root)| {
        let at = ir.spans.get(&site).filter(|_| calls(root))?;
        Some(format!("{} `{}`", at.field, at.line.trim()))
    });
    // A subexpression's text is inlined where it is used: name it, then where it is used.
    let subexpression = ir
        .subexpressions
        .iter()
        .find(|(_, e)| calls(**e))
        .map(|(name, _)| name);
    match (subexpression, quoted) {
        (Some(name), Some(at)) => Some(format!("in the subexpression `{name}`, used in {at}")),
        (Some(name), None) => Some(format!("in the subexpression `{name}`")),
        (None, Some(at)) => Some(format!("in {at}")),
        (None, None) => None,
    }
}

/// The adjoint of one step of `ir` with the traces of `record` (see the module documentation).
pub fn adjoint(
    ir: &GroupIr,
    record: &[String],
    surrogate: Option<Surrogate>,
) -> Result<AdjointDag, NotDifferentiable> {
    adjoint_with_deliveries(ir, record, surrogate, &[])
}

/// The adjoint of one step of a network's neuron group whose stored variables `delivered`
/// receive what the synapses deliver in the step: Brian2's order (update, threshold, synaptic
/// effects, reset) makes the step `x' = select(spike(u), R(u + Δ), u + Δ)`, `Δ` zero for the
/// variables not delivered to (the forward kernels reset early only where that is the same).
/// `Δ` is one new variable per delivered variable, numbered after the trace cotangents.
pub fn adjoint_with_deliveries(
    ir: &GroupIr,
    record: &[String],
    surrogate: Option<Surrogate>,
    delivered: &[VarId],
) -> Result<AdjointDag, NotDifferentiable> {
    check(ir)?;
    let step = build(ir, record, FastMath::Off);
    if !step.loops.is_empty() {
        return Err(NotDifferentiable(format!(
            "its {} sub-steps run as a loop; gradients take at most {} sub-steps",
            ir.substeps,
            super::substeps::UNROLLED_SUBSTEPS
        )));
    }
    let mut arena = step.arena;
    let stored = ir.stored();
    let base = ir.symbols.len();
    let adjoint_next: Vec<VarId> = (0..stored.len()).map(|k| VarId::at(base + k)).collect();
    let spike_cotangent = VarId::at(base + stored.len());
    let trace_cotangents: Vec<VarId> = (0..record.len())
        .map(|k| VarId::at(base + stored.len() + 1 + k))
        .collect();
    let delta: Vec<VarId> = (0..delivered.len())
        .map(|k| VarId::at(base + stored.len() + 1 + record.len() + k))
        .collect();
    // The values the reset starts from: the updated ones plus what was delivered.
    let mut before_reset: HashMap<VarId, ExprId> = stored
        .iter()
        .copied()
        .zip(step.updated.iter().copied())
        .collect();
    for (v, d) in delivered.iter().zip(&delta) {
        let u = before_reset[v];
        let d = arena.var(*d);
        let sum = arena.add(u, d);
        before_reset.insert(*v, sum);
    }
    let next_state = if delivered.is_empty() {
        step.next_state.clone()
    } else {
        let env = run_reset(ir, &mut arena, before_reset.clone());
        stored
            .iter()
            .map(|v| {
                let otherwise = before_reset[v];
                match (step.spike, env.get(v)) {
                    (Some(s), Some(r)) if *r != otherwise => arena.select(s, *r, otherwise),
                    _ => otherwise,
                }
            })
            .collect()
    };

    // W = sum_i a'_i x'_i + sum_r c_r trace_r.
    let mut w = arena.constant(0.0);
    for (a, x) in adjoint_next.iter().zip(&next_state) {
        let a = arena.var(*a);
        let t = arena.mul(a, *x);
        w = arena.add(w, t);
    }
    for (c, trace) in trace_cotangents.iter().zip(&step.traces) {
        let c = arena.var(*c);
        let t = arena.mul(c, *trace);
        w = arena.add(w, t);
    }
    let w = unhold(ir, &mut arena, w);

    // The spike's term: select(gate, K s(z), 0) dz, z after the update.
    let after_step: HashMap<VarId, ExprId> = stored
        .iter()
        .copied()
        .zip(step.updated.iter().copied())
        .collect();
    let mut spike_term: Option<(ExprId, ExprId)> = None;
    let mut threshold_argument = None;
    if let Some(thr) = ir.events.threshold {
        let (z, gates) = split_threshold(ir, &mut arena, thr)?;
        let z = arena.substitute(z, &after_step);
        let z = unhold(ir, &mut arena, z);
        threshold_argument = Some(z);
        if let Some(s) = surrogate {
            let mut gate = arena.boolean(true);
            for g in gates {
                let g = arena.substitute(g, &after_step);
                gate = arena.bin(BinOp::And, gate, g);
            }
            if !matches!(ir.events.refractory, RefractoryIr::None) {
                if let Some(nr) = ir.lookup("not_refractory") {
                    let nr = arena.var(nr);
                    gate = arena.bin(BinOp::And, gate, nr);
                }
            }
            let gate = unhold(ir, &mut arena, gate);
            let mut k = arena.var(spike_cotangent);
            if !s.detach_reset {
                let env = run_reset(ir, &mut arena, before_reset.clone());
                for (v, a) in stored.iter().zip(&adjoint_next) {
                    let u = &before_reset[v];
                    if let Some(r) = env.get(v).filter(|r| *r != u) {
                        let jump = arena.sub(*r, *u);
                        let a = arena.var(*a);
                        let t = arena.mul(a, jump);
                        k = arena.add(k, t);
                    }
                }
            }
            let k = unhold(ir, &mut arena, k);
            let sz = surrogate_expr(&mut arena, s, z);
            let m = arena.mul(k, sz);
            let zero = arena.constant(0.0);
            let m = arena.select(gate, m, zero);
            spike_term = Some((m, z));
        }
    }

    let vars = differentiable_vars(ir);
    let mut roots = vec![w];
    roots.extend(threshold_argument);
    if let Some(f) = piecewise_constant(&arena, &roots, &vars) {
        let place = written_at(ir, f)
            .map(|at| format!(" ({at})"))
            .unwrap_or_default();
        return Err(NotDifferentiable(format!(
            "its step applies {}(){place} to a value that depends on the state or an input: its \
             derivative is 0 almost everywhere",
            match f {
                Func::Trunc => "int",
                Func::Floor => "floor",
                _ => "ceil",
            }
        )));
    }
    let adjoint_of = |arena: &mut ExprArena, v: VarId| {
        let d = derivative(arena, w, v);
        match spike_term {
            Some((m, z)) => {
                let dz = derivative(arena, z, v);
                if arena.as_const(dz) == Some(0.0) {
                    d
                } else {
                    let t = arena.mul(m, dz);
                    arena.add(d, t)
                }
            }
            None => d,
        }
    };
    let adjoint: Vec<ExprId> = stored.iter().map(|v| adjoint_of(&mut arena, *v)).collect();
    let spike = step.spike.map(|s| unhold(ir, &mut arena, s));
    let next_state: Vec<ExprId> = next_state
        .iter()
        .map(|x| unhold(ir, &mut arena, *x))
        .collect();
    let inputs: Vec<(VarId, ExprId)> = differentiable_inputs(ir)
        .into_iter()
        .map(|v| (v, adjoint_of(&mut arena, v)))
        .collect();
    let delivered_adjoint: Vec<ExprId> = delta
        .iter()
        .map(|d| derivative(&mut arena, w, *d))
        .collect();
    Ok(AdjointDag {
        arena,
        stored,
        adjoint_next,
        spike_cotangent,
        trace_cotangents,
        adjoint,
        inputs,
        spike,
        next_state,
        threshold_argument,
        delivered: delta,
        delivered_adjoint,
    })
    .and_then(|dag| {
        // The kernel knows each step's time, not each element's last spike.
        let mut roots = dag.adjoint.clone();
        roots.extend(dag.inputs.iter().map(|(_, e)| *e));
        roots.extend(dag.spike);
        roots.extend(dag.next_state.iter().copied());
        let reads_lastspike = roots.iter().any(|r| {
            dag.arena
                .vars_of(*r)
                .iter()
                .any(|v| v.index() < base && ir.symbol(*v).kind == SymbolKind::LastSpike)
        });
        if reads_lastspike {
            return Err(NotDifferentiable(
                "its step reads lastspike; gradients of such models are not supported yet".into(),
            ));
        }
        Ok(dag)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Method, ModelSpec};

    fn lowered(spec: &ModelSpec) -> GroupIr {
        crate::codegen::prepare(spec)
            .expect("the test model lowers")
            .0
    }

    /// Values of every variable: the group's (state, inputs) from `at`, the adjoint variables
    /// from `adj`, everything else (`not_refractory`, `t`) at a fixed value.
    fn values<'a>(
        ir: &'a GroupIr,
        dag: &'a AdjointDag,
        at: &'a HashMap<&'static str, f64>,
        adj: &'a [f64],
        g: f64,
    ) -> impl Fn(VarId) -> f64 + 'a {
        move |v: VarId| {
            if let Some(k) = dag.adjoint_next.iter().position(|a| *a == v) {
                return adj[k];
            }
            if v == dag.spike_cotangent {
                return g;
            }
            if dag.trace_cotangents.contains(&v) {
                return 0.0;
            }
            let s = ir.symbol(v);
            match s.kind {
                SymbolKind::NotRefractory => 1.0,
                _ => *at.get(s.name.as_str()).unwrap_or(&0.0),
            }
        }
    }

    /// Without spikes (a smooth step), the adjoint of every input is the vector-Jacobian
    /// product of the step's update, checked by central differences of the forward DAG, for
    /// each scheme of a two-variable model with a per-neuron constant and a per-step input.
    #[test]
    fn smooth_adjoint_is_the_steps_vector_jacobian_product() {
        for method in [
            Method::Euler,
            Method::Rk2,
            Method::Heun,
            Method::Rk4,
            Method::ExponentialEuler,
        ] {
            let spec = ModelSpec::from_equations(
                "dv/dt = (-v + w*w/4 + I) / tau : 1\ndw/dt = (exp(-v/10) - w) / tau_w : 1\nI : 1",
                0.1,
            )
            .dtype(crate::types::ElemType::F64)
            .constants([("tau", 10.0), ("tau_w", 30.0)])
            .per_neuron(["tau"])
            .method(method);
            let ir = lowered(&spec);
            let dag = adjoint(&ir, &[], None).unwrap();
            let step = build(&ir, &[], FastMath::Off);
            let at: HashMap<&'static str, f64> =
                [("v", 0.7), ("w", -0.4), ("I", 1.3), ("tau", 9.0)].into();
            let adj = [0.3, -1.1];
            let val = values(&ir, &dag, &at, &adj, 0.0);
            let forward = |name: &'static str, x: f64| -> f64 {
                let mut at = at.clone();
                at.insert(name, x);
                let f = values(&ir, &dag, &at, &adj, 0.0);
                step.next_state
                    .iter()
                    .zip(adj)
                    .map(|(e, a)| a * step.arena.eval(*e, &f))
                    .sum()
            };
            let mut checked = 0;
            let names = ["v", "w", "I", "tau"];
            let exprs: Vec<(VarId, ExprId)> = dag
                .stored
                .iter()
                .copied()
                .zip(dag.adjoint.iter().copied())
                .chain(dag.inputs.iter().copied())
                .collect();
            for (v, e) in exprs {
                let name = names
                    .iter()
                    .find(|n| ir.symbol(v).name == **n)
                    .expect("a named input");
                let x = at[name];
                let h = 1e-5 * x.abs().max(1.0);
                let fd = (forward(name, x + h) - forward(name, x - h)) / (2.0 * h);
                let sym = dag.arena.eval(e, &val);
                assert!(
                    (fd - sym).abs() <= 1e-8 * fd.abs().max(1.0),
                    "{method:?}, d/d{name}: symbolic {sym}, finite difference {fd}"
                );
                checked += 1;
            }
            assert_eq!(checked, 4, "{method:?}");
        }
    }

    /// With a spike and a surrogate, the adjoint adds `(g + a'(v_reset - u)) s(z) dz/dy` to the
    /// reset branch's derivative; detached, only `g s(z) dz/dy`.
    #[test]
    fn spike_terms_follow_the_surrogate_and_the_reset_option() {
        for detach in [false, true] {
            let spec = ModelSpec::from_equations("dv/dt = (I - v) / tau : 1\nI : 1", 0.5)
                .dtype(crate::types::ElemType::F64)
                .threshold("v > v_th")
                .reset("v = v_r")
                .constants([("tau", 10.0), ("v_th", 1.0), ("v_r", 0.0)])
                .per_neuron(["v_th"])
                .method(Method::Euler);
            let mut s = Surrogate::new(SurrogateKind::FastSigmoid, 5.0);
            s.detach_reset = detach;
            let ir = lowered(&spec);
            let dag = adjoint(&ir, &[], Some(s)).unwrap();
            let (v0, i, v_th, a, g) = (1.05, 2.0, 1.0, 0.7, 0.25);
            let at: HashMap<&'static str, f64> = [("v", v0), ("I", i), ("v_th", v_th)].into();
            let adj = [a];
            let val = values(&ir, &dag, &at, &adj, g);
            let u = v0 + 0.5 * (i - v0) / 10.0;
            let z = u - v_th;
            assert!(z > 0.0, "the step spikes");
            let sz = SurrogateKind::FastSigmoid.eval(5.0, z);
            let k = g + if detach { 0.0 } else { a * (0.0 - u) };
            let du_dv = 1.0 - 0.5 / 10.0;
            // The reset branch (v = v_r) does not depend on v: only the spike term remains.
            let want_v = k * sz * du_dv;
            let got_v = dag.arena.eval(dag.adjoint[0], &val);
            assert!((got_v - want_v).abs() < 1e-14, "{got_v} vs {want_v}");
            let (vth_var, e) = dag
                .inputs
                .iter()
                .find(|(v, _)| ir.symbol(*v).name == "v_th")
                .copied()
                .unwrap();
            let _ = vth_var;
            let want_th = -k * sz;
            let got_th = dag.arena.eval(e, &val);
            assert!((got_th - want_th).abs() < 1e-14, "{got_th} vs {want_th}");
        }
    }

    #[test]
    fn what_is_not_differentiable_is_named() {
        let noisy = ModelSpec::from_equations("dv/dt = -v / (10*ms) + xi / sqrt(ms) : 1", 0.1);
        let e = adjoint(&lowered(&noisy), &[], None)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("random numbers"), "{e}");
        let int = ModelSpec::from_equations("dv/dt = (int(v) - v) / (10*ms) : 1", 0.1)
            .method(Method::Euler);
        let e = adjoint(&lowered(&int), &[], None)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("int()"), "{e}");
        let cond = ModelSpec::from_equations("dv/dt = -v / (10*ms) : 1", 0.1)
            .threshold("v > 1")
            .reset("v = 0")
            .refractory("v > 0.5");
        let e = adjoint(&lowered(&cond), &[], None)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("condition"), "{e}");
        let loops = ModelSpec::from_equations("dv/dt = -v*v / (10*ms) : 1", 0.1)
            .method(Method::Rk4)
            .substeps(8);
        let e = adjoint(&lowered(&loops), &[], None)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("sub-steps"), "{e}");
    }
}
