//! The state update of differential equations: the scheme applied to the derivatives, with
//! white noise (Brian2's schemes: Euler-Maruyama for additive noise, Stratonovich Heun for
//! multiplicative noise, `integrators::noise`)
//! and the `(unless refractory)` clamp (Brian2: a clamped variable has a zero derivative in every
//! stage and sub-step while refractory).

use std::collections::HashMap;

use super::substeps::Loops;
use crate::integrators::{noise, Ode, Problem};
use crate::ir::{ExprArena, ExprId, GroupIr, RefractoryIr, StateEq, SymbolKind, VarId};
use crate::spec::Method;

/// The value of every state variable after the update, in the order of `states`.
pub(super) fn update(
    ir: &GroupIr,
    states: &[StateEq],
    arena: &mut ExprArena,
    loops: &mut Loops,
) -> Vec<ExprId> {
    let not_ref = ir.lookup("not_refractory").map(|v| arena.var(v));
    let zero = arena.constant(0.0);
    let has_refractory = !matches!(ir.events.refractory, RefractoryIr::None);
    let clamped = |s: &StateEq| s.unless_refractory && has_refractory && not_ref.is_some();
    let method = ir.method;
    // `(unless refractory)` holds a variable while refractory. When every variable is held, or
    // the scheme is one stage that reads only the start of the step (Euler, exponential Euler,
    // without sub-steps), holding the result (`nr ? x + h f : x`) is the same as zeroing the
    // derivative in every stage, and cheaper. Otherwise (Brian2: the clamped derivative enters
    // every stage) the step is integrated for each case, derivatives clamped or not, and the
    // case selected once per variable at the end: the same values as a clamp in every stage,
    // without repeated selects on one condition, which GCC threads into two code paths and
    // then does not vectorise.
    let single_stage =
        matches!(method, Method::Euler | Method::ExponentialEuler) && ir.substeps <= 1;
    let hold_result = single_stage || states.iter().all(clamped);
    // Stochastic equations: dx/dt = f + sum_k g_k xi_k. The scheme integrates the drift f
    // (every xi at 0); the noise is added as Brian2's scheme says (`integrators::noise`).
    let written: Vec<Ode> = states.iter().map(Ode::from).collect();
    let splits = noise::split(arena, &written, &ir.noise)
        .expect("the lowering checked that every xi enters linearly");
    let drifts: Vec<ExprId> = splits.iter().map(|s| s.drift).collect();
    let odes: Vec<Ode> = states
        .iter()
        .zip(&drifts)
        .map(|(s, &drift)| Ode {
            var: s.var,
            derivative: drift,
        })
        .collect();
    let time = ir.vars_of_kind(&SymbolKind::Time).first().copied();
    let switch = ir.lookup("not_refractory");
    let mut integrate = |arena: &mut ExprArena, odes: &[Ode]| {
        let problem = Problem { odes, time, switch };
        loops
            .integrate(arena, &problem, method, ir.dt, ir.substeps)
            .unwrap_or_else(|e| panic!("{method:?} was checked to apply when lowering: {e:?}"))
    };
    let normals: Vec<ExprId> = ir.noise.iter().map(|v| arena.var(*v)).collect();
    let increments = noise::Increments {
        normals: &normals,
        dt: ir.dt,
    };
    let stochastic_heun = !ir.noise.is_empty() && method == Method::Heun;
    let integrated = match (not_ref, switch) {
        // Brian2's heun for stochastic equations: an Euler step of the drift and the
        // trapezoidal rule on the noise; held while refractory by the select below.
        _ if stochastic_heun => noise::stochastic_heun(arena, &splits, &increments, time),
        (Some(nr), Some(sw)) if !hold_result && states.iter().any(clamped) => {
            let case = |arena: &mut ExprArena, refractory: bool| -> Vec<Ode> {
                let b = arena.boolean(!refractory);
                let map: HashMap<VarId, ExprId> = [(sw, b)].into_iter().collect();
                states
                    .iter()
                    .zip(&drifts)
                    .map(|(s, &drift)| Ode {
                        var: s.var,
                        derivative: if refractory && clamped(s) {
                            zero
                        } else {
                            arena.substitute(drift, &map)
                        },
                    })
                    .collect()
            };
            let active = case(arena, false);
            let held = case(arena, true);
            let on = integrate(arena, &active);
            let off = integrate(arena, &held);
            on.iter()
                .zip(&off)
                .map(|(a, b)| arena.select(nr, *a, *b))
                .collect()
        }
        _ => integrate(arena, &odes),
    };
    let mut integrated = if ir.noise.is_empty() || stochastic_heun {
        integrated
    } else {
        noise::euler_maruyama(arena, &splits, &integrated, &increments)
    };
    if let (true, Some(nr)) = (hold_result || stochastic_heun, not_ref) {
        for (s, x) in states.iter().zip(integrated.iter_mut()) {
            if clamped(s) {
                let old = arena.var(s.var);
                *x = arena.select(nr, *x, old);
            }
        }
    }
    integrated
}
