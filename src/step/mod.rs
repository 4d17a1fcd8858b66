//! Step semantics: what one step of a group does, as one DAG over the values at the start of the
//! step, for every kind of dynamics; the kernel printers (`crate::codegen`) only print it.
//!
//! Brian2's order: traces record the values at the start of the step; refractoriness is
//! decided from them; the state is updated (`odes`: the scheme on the differential equations,
//! with noise and the `(unless refractory)` clamp; `updates`: a model class's end values plus
//! the scheme's change, clipped); the threshold is tested on the updated values (only when not
//! refractory); the reset statements run in order on the elements that spiked. Everything is
//! composed by substitution into one hash-consed DAG, so work shared between the update, the
//! threshold and the reset is computed once.

pub mod adjoint;
pub mod network;
pub mod network_adjoint;
mod odes;
pub mod substeps;
mod updates;

use std::collections::HashMap;

use crate::ir::{BinOp, Dynamics, ExprArena, ExprId, GroupIr, RefractoryIr, VarId};
use substeps::Loops;
pub use substeps::{Carried, SubstepLoop};

/// One time step as a DAG over the current values of the group's variables.
pub struct StepDag {
    pub arena: ExprArena,
    /// The value of each stored variable at the end of the step (after reset), in the order of
    /// `GroupIr::stored`.
    pub next_state: Vec<ExprId>,
    /// The value of each stored variable after the update, before the threshold and the reset
    /// (what the threshold tests; what the reset's derivative starts from, `step::adjoint`).
    pub updated: Vec<ExprId>,
    /// Parameters written by the reset, and their value at the end of the step.
    pub next_params: Vec<(VarId, ExprId)>,
    /// Whether the element spiked during the step.
    pub spike: Option<ExprId>,
    /// Refractoriness, evaluated at the start of the step from the current values.
    pub refractory: RefractoryIr,
    /// Traces: the value of each recorded variable at the start of the step.
    pub traces: Vec<ExprId>,
    /// Sub-steps integrated by loops in the kernel (past `substeps::UNROLLED_SUBSTEPS`), in the
    /// order they run, before everything else of the update; their carried variables (numbered
    /// after the group's symbols) stand for their results in the DAG.
    pub loops: Vec<SubstepLoop>,
}

impl StepDag {
    /// The number of operations the step prints: the nodes every root reaches (the update,
    /// the loops' bodies, the spike, the refractory condition or duration, the traces).
    pub fn size(&self) -> usize {
        let mut roots: Vec<ExprId> = self.next_state.clone();
        roots.extend(self.next_params.iter().map(|(_, e)| *e));
        roots.extend(self.spike);
        roots.extend(self.traces.iter().copied());
        if let RefractoryIr::Duration(e) | RefractoryIr::Condition(e) = self.refractory {
            roots.push(e);
        }
        for l in &self.loops {
            roots.extend(l.carried.iter().flat_map(|c| [c.start, c.next]));
        }
        let mut seen = vec![false; self.arena.len()];
        let mut stack = roots;
        let mut count = 0;
        while let Some(id) = stack.pop() {
            if std::mem::replace(&mut seen[id.0 as usize], true) {
                continue;
            }
            count += 1;
            stack.extend(self.arena.children(id));
        }
        count
    }

    /// The loop that carries `v`, and which of its variables `v` is (`None`: its time), when
    /// `v` is a variable of a loop rather than a symbol of the group.
    pub fn loop_var(&self, v: VarId) -> Option<(usize, Option<usize>)> {
        self.loops.iter().enumerate().find_map(|(k, l)| {
            if l.time == Some(v) {
                return Some((k, None));
            }
            l.carried
                .iter()
                .position(|c| c.var == v)
                .map(|i| (k, Some(i)))
        })
    }
}

impl StepDag {
    /// What a step computes, in order: each stored variable's new value, each written
    /// parameter's, then the spike (when there is a threshold).
    pub fn roots(&self) -> Vec<ExprId> {
        let mut roots = self.next_state.clone();
        roots.extend(self.next_params.iter().map(|(_, e)| *e));
        roots.extend(self.spike);
        roots
    }

    /// The variables a step assigns, in the order of [`StepDag::roots`]: the stored variables
    /// of `ir`, then the written parameters.
    pub fn assigned(&self, ir: &GroupIr) -> Vec<VarId> {
        ir.stored()
            .into_iter()
            .chain(self.next_params.iter().map(|(v, _)| *v))
            .collect()
    }
}

/// Rewrites that trade exactness for speed (the spec's `fast_math`), applied to the whole step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FastMath {
    Off,
    /// Exponentials of one variable with one slope share one evaluation; with `exp2`, every
    /// exponential becomes `exp2` (what GPUs evaluate natively).
    On {
        exp2: bool,
    },
}

/// The step of `ir`, with traces of the variables named in `record` (checked when lowering).
pub fn build(ir: &GroupIr, record: &[String], fast_math: FastMath) -> StepDag {
    let mut arena = ir.arena.clone();
    let mut loops = Loops::new(ir.symbols.len());
    let updated = match &ir.dynamics {
        Dynamics::Odes(states) => odes::update(ir, states, &mut arena, &mut loops),
        Dynamics::Updates(list) => updates::update(ir, list, &mut arena, &mut loops),
    };
    let mut loops = loops.loops;
    let stored = ir.stored();
    let after_step: HashMap<VarId, ExprId> = stored
        .iter()
        .copied()
        .zip(updated.iter().copied())
        .collect();
    let has_refractory = !matches!(ir.events.refractory, RefractoryIr::None);
    let not_ref = ir.lookup("not_refractory").map(|v| arena.var(v));

    let spike = ir.events.threshold.map(|thr| {
        let crossed = arena.substitute(thr, &after_step);
        match (has_refractory, not_ref) {
            (true, Some(nr)) => arena.bin(BinOp::And, crossed, nr),
            _ => crossed,
        }
    });
    let env = run_reset(ir, &mut arena, after_step.clone());
    let pick = |arena: &mut ExprArena, var: VarId, otherwise: ExprId| match spike {
        Some(s) if env.get(&var).is_some_and(|r| *r != otherwise) => {
            arena.select(s, env[&var], otherwise)
        }
        _ => otherwise,
    };
    let next_state: Vec<ExprId> = stored
        .iter()
        .zip(&updated)
        .map(|(v, x)| pick(&mut arena, *v, *x))
        .collect();
    let next_params: Vec<(VarId, ExprId)> = ir
        .written_params()
        .into_iter()
        .map(|p| {
            let cur = arena.var(p);
            (p, pick(&mut arena, p, cur))
        })
        .collect();
    // Opt-in rewrites that trade exactness for speed act on the whole step at once.
    let (next_state, next_params, spike) = if let FastMath::On { exp2 } = fast_math {
        let mut roots = next_state.clone();
        roots.extend(next_params.iter().map(|(_, e)| *e));
        roots.extend(spike);
        let shared = arena.share_exponentials(&roots, exp2);
        for l in &mut loops {
            let next: Vec<ExprId> = l.carried.iter().map(|c| c.next).collect();
            for (c, e) in l
                .carried
                .iter_mut()
                .zip(arena.share_exponentials(&next, exp2))
            {
                c.next = e;
            }
        }
        let (s, rest) = shared.split_at(next_state.len());
        let (p, sp) = rest.split_at(next_params.len());
        let params = next_params
            .iter()
            .zip(p)
            .map(|((v, _), e)| (*v, *e))
            .collect();
        (s.to_vec(), params, sp.first().copied())
    } else {
        (next_state, next_params, spike)
    };
    // Traces are printed before the step body defines the held values: use their expressions.
    let held: HashMap<VarId, ExprId> = ir.held.iter().copied().collect();
    let traces = record
        .iter()
        .map(|name| match ir.subexpressions.get(name) {
            Some(e) => {
                // Held values nest in dependency order, so a few passes resolve them fully.
                let mut e = *e;
                for _ in 0..=held.len() {
                    e = arena.substitute(e, &held);
                }
                e
            }
            None => arena.var(
                ir.lookup(name)
                    .expect("recorded names are checked when lowering"),
            ),
        })
        .collect();
    StepDag {
        arena,
        next_state,
        updated,
        next_params,
        spike,
        refractory: ir.events.refractory.clone(),
        traces,
        loops,
    }
}

/// The reset statements, in order, each seeing the values the previous ones left, starting from
/// `env` (the value of each variable before the reset; a variable missing from it is read as
/// stored). Returns `env` with every assigned variable's new value.
fn run_reset(
    ir: &GroupIr,
    arena: &mut ExprArena,
    mut env: HashMap<VarId, ExprId>,
) -> HashMap<VarId, ExprId> {
    // The reset runs on neurons that just spiked: as in Brian2 (whose thresholder updates them
    // first), it sees `lastspike` as the current time and `not_refractory` as false.
    if let (Some(ls), Some(t)) = (ir.lookup("lastspike"), ir.lookup("t")) {
        let now = arena.var(t);
        env.insert(ls, now);
    }
    if let Some(nr) = ir.lookup("not_refractory") {
        let f = arena.boolean(false);
        env.insert(nr, f);
    }
    for (var, value) in &ir.events.reset {
        let v = arena.substitute(*value, &env);
        env.insert(*var, v);
    }
    env
}

/// The reset alone, as a separate phase of a step (a network resets after the synapses
/// deliver when their order can be observed): the new value of each variable the reset assigns,
/// over the values stored when it runs, in the order of first assignment.
pub struct ResetDag {
    pub arena: ExprArena,
    pub assigned: Vec<(VarId, ExprId)>,
}

/// See [`ResetDag`].
pub fn reset(ir: &GroupIr) -> ResetDag {
    let mut arena = ir.arena.clone();
    let env = run_reset(ir, &mut arena, HashMap::new());
    let mut assigned: Vec<(VarId, ExprId)> = Vec::new();
    for (var, _) in &ir.events.reset {
        if !assigned.iter().any(|(v, _)| v == var) {
            assigned.push((*var, env[var]));
        }
    }
    ResetDag { arena, assigned }
}

/// Brian2's `timestep(duration, dt)`: the number of whole steps, robust to rounding of `duration`.
pub fn timestep(duration: f64, dt: f64) -> i64 {
    ((duration + 1e-3 * dt) / dt).floor() as i64
}
