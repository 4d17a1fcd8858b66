//! The state update of differential equations: the scheme applied to the derivatives, with
//! white noise (Euler-Maruyama for additive noise, Stratonovich Heun for multiplicative noise)
//! and the `(unless refractory)` clamp (Brian2: a clamped variable has a zero derivative in every
//! stage and sub-step while refractory).

use std::collections::HashMap;

use super::substeps::Loops;
use crate::integrators::{Ode, Problem};
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
    // Euler-Maruyama: dx/dt = f + sum_k g_k xi_k gives x + f dt + sqrt(dt) sum_k g_k N_k. The
    // drift f is the derivative with every xi at 0; g_k the change when xi_k is 1 (the lowering
    // checked that each xi enters linearly and that the method is Euler).
    let zeros: HashMap<VarId, ExprId> = ir.noise.iter().map(|v| (*v, zero)).collect();
    let mut drifts: Vec<ExprId> = Vec::new();
    let mut diffusion: Vec<ExprId> = Vec::new();
    for s in states {
        let drift = arena.substitute(s.derivative, &zeros);
        drifts.push(drift);
        let mut total = zero;
        for &xi in &ir.noise {
            let mut one_on = zeros.clone();
            one_on.insert(xi, arena.constant(1.0));
            let with = arena.substitute(s.derivative, &one_on);
            let g = arena.sub(with, drift);
            let n = arena.var(xi);
            let term = arena.mul(g, n);
            total = arena.add(total, term);
        }
        diffusion.push(total);
    }
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
    let mut integrated = match (not_ref, switch) {
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
    let sqrt_dt = arena.constant(ir.dt.sqrt());
    let stochastic_heun = !ir.noise.is_empty() && method == Method::Heun;
    if stochastic_heun {
        // Stratonovich Heun (Brian2's `heun` for multiplicative noise), with D = sum_k g_k xi_k:
        // x* = x + f dt + D sqrt(dt);  x' = x + (f + f*) dt/2 + (D + D*) sqrt(dt)/2, where f*, D*
        // are evaluated at x* with the same normals.
        let dt = arena.constant(ir.dt);
        let support: HashMap<VarId, ExprId> = states
            .iter()
            .enumerate()
            .map(|(k, s)| {
                let x = arena.var(s.var);
                let a = arena.mul(dt, drifts[k]);
                let b = arena.mul(sqrt_dt, diffusion[k]);
                let xa = arena.add(x, a);
                (s.var, arena.add(xa, b))
            })
            .collect();
        let half_dt = arena.constant(ir.dt / 2.0);
        let half_sqrt_dt = arena.constant(ir.dt.sqrt() / 2.0);
        integrated = states
            .iter()
            .enumerate()
            .map(|(k, s)| {
                let f_star = arena.substitute(drifts[k], &support);
                let d_star = arena.substitute(diffusion[k], &support);
                let x = arena.var(s.var);
                let fs = arena.add(drifts[k], f_star);
                let ds = arena.add(diffusion[k], d_star);
                let a = arena.mul(half_dt, fs);
                let b = arena.mul(half_sqrt_dt, ds);
                let xa = arena.add(x, a);
                arena.add(xa, b)
            })
            .collect();
    } else {
        for (x, g) in integrated.iter_mut().zip(&diffusion) {
            let kick = arena.mul(sqrt_dt, *g);
            *x = arena.add(*x, kick);
        }
    }
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
