//! Numerical integration schemes: derivatives in the DAG -> the state after one step, in the DAG.
//!
//! Each scheme is written once against the expression arena; stages are built by substituting
//! the intermediate states into the derivatives, so work shared between stages (and with the
//! threshold and reset, which are built on top) is computed once after hash-consing.
//!
//! The schemes are Brian2's: `euler`, `rk2` (midpoint), `heun`, `rk4`, `exponential_euler`
//! (conditionally linear equations, [`linear`]) and `exact` (linear equations with constant
//! coefficients, solved with a matrix exponential computed at compile time, [`expm`]).
//! [`integrate`] gives the values after a step (differential equations); [`increments`] gives
//! the change over a step, for a model class, which adds it to the values `ode()` leaves.
//! [`choice`] checks that a requested scheme applies, says why not, and picks one when the
//! model names none; [`noise`] splits stochastic equations into drift and diffusion and holds
//! Brian2's two stochastic schemes.

pub mod choice;
pub mod expm;
pub mod linear;
pub mod noise;

use std::collections::HashMap;

use crate::ir::{ExprArena, ExprId, VarId};
use crate::spec::Method;

pub use choice::{resolve, MethodError};

/// One ODE: the variable it integrates and its derivative.
#[derive(Clone, Copy, Debug)]
pub struct Ode {
    pub var: VarId,
    pub derivative: ExprId,
}

impl From<&crate::ir::StateEq> for Ode {
    fn from(s: &crate::ir::StateEq) -> Ode {
        Ode {
            var: s.var,
            derivative: s.derivative,
        }
    }
}

/// What one step integrates: the ODEs, and the variables with a special role in them.
#[derive(Clone, Copy, Debug)]
pub struct Problem<'a> {
    pub odes: &'a [Ode],
    /// The time `t`, when the derivatives may read it: stages see `t + c h`.
    pub time: Option<VarId>,
    /// A truth value constant over the step that the derivatives may switch on
    /// (`not_refractory`): exact integration solves the system once for each case.
    pub switch: Option<VarId>,
}

/// Why a scheme cannot integrate a system (the caller turns it into a located diagnostic).
#[derive(Clone, Debug, PartialEq)]
pub enum NotIntegrable {
    /// `d f_of / d var` depends on `var` (exponential Euler, exact).
    NotLinear { of: VarId, var: VarId },
    /// `d f_of / d var` is not a constant (exact): it reads `reads`.
    CoefficientNotConstant {
        of: VarId,
        var: VarId,
        reads: Vec<VarId>,
    },
    /// The derivative of `of` reads the time (exact).
    TimeDependent { of: VarId },
    /// `exp(M dt)` overflows: the system grows beyond f64 within one step (exact).
    Overflow { of: VarId },
}

/// The value of every variable after `substeps` steps of `dt / substeps`, in the order of
/// `problem.odes`.
pub fn integrate(
    arena: &mut ExprArena,
    problem: &Problem,
    method: Method,
    dt: f64,
    substeps: u32,
) -> Result<Vec<ExprId>, NotIntegrable> {
    if method == Method::Exact {
        // Exact for any step: sub-steps would only repeat the same map.
        return linear::exact(arena, problem, dt);
    }
    let substeps = substeps.max(1);
    let h = dt / f64::from(substeps);
    let one = one_step(arena, problem, method, h)?;
    let mut current = one.clone();
    for k in 1..substeps {
        // Sub-step k starts from the values after sub-step k - 1, at time t + k h.
        let mut map: HashMap<VarId, ExprId> = problem
            .odes
            .iter()
            .zip(&current)
            .map(|(o, x)| (o.var, *x))
            .collect();
        if let Some(t) = problem.time {
            let tv = arena.var(t);
            let off = arena.constant(f64::from(k) * h);
            map.insert(t, arena.add(tv, off));
        }
        current = one.iter().map(|e| arena.substitute(*e, &map)).collect();
    }
    Ok(current)
}

/// One step of `h` of `method`: the value of every variable after it.
pub fn one_step(
    arena: &mut ExprArena,
    problem: &Problem,
    method: Method,
    h: f64,
) -> Result<Vec<ExprId>, NotIntegrable> {
    Ok(match method {
        Method::Euler => euler(arena, problem, h),
        Method::Rk2 => rk2(arena, problem, h),
        Method::Heun => heun(arena, problem, h),
        Method::Rk4 => rk4(arena, problem, h),
        Method::ExponentialEuler => linear::exponential_euler(arena, problem, h)?,
        Method::Exact => linear::exact(arena, problem, h)?,
    })
}

/// The change of every variable over one step of `h`, `x_next - x`, written as the scheme
/// forms it (the weighted sum of the stage derivatives of an explicit Runge-Kutta scheme,
/// exponential Euler's `h f phi(B h)`), for dynamics that add it to something other than `x` (a
/// model class adds it to the value `ode()` leaves). `None` for exact integration, which gives
/// the values after the step only.
pub fn increments(
    arena: &mut ExprArena,
    problem: &Problem,
    method: Method,
    h: f64,
) -> Result<Option<Vec<ExprId>>, NotIntegrable> {
    let k1 = first_stage(problem);
    let scaled = |arena: &mut ExprArena, k: &[ExprId], h: f64| -> Vec<ExprId> {
        let hc = arena.constant(h);
        k.iter().map(|k| arena.mul(hc, *k)).collect()
    };
    Ok(Some(match method {
        Method::Euler => scaled(arena, &k1, h),
        Method::Rk2 => {
            let mid = advance(arena, problem.odes, &k1, h / 2.0);
            let k2 = derivatives_at(arena, problem, &mid, h / 2.0);
            scaled(arena, &k2, h)
        }
        Method::Heun => {
            let end = advance(arena, problem.odes, &k1, h);
            let k2 = derivatives_at(arena, problem, &end, h);
            let sum: Vec<ExprId> = k1.iter().zip(&k2).map(|(a, b)| arena.add(*a, *b)).collect();
            scaled(arena, &sum, h / 2.0)
        }
        Method::Rk4 => {
            let odes = problem.odes;
            let x2 = advance(arena, odes, &k1, h / 2.0);
            let k2 = derivatives_at(arena, problem, &x2, h / 2.0);
            let x3 = advance(arena, odes, &k2, h / 2.0);
            let k3 = derivatives_at(arena, problem, &x3, h / 2.0);
            let x4 = advance(arena, odes, &k3, h);
            let k4 = derivatives_at(arena, problem, &x4, h);
            rk4_increments(arena, [&k1, &k2, &k3, &k4], h)
        }
        Method::ExponentialEuler => linear::exponential_euler_increments(arena, problem, h)?,
        Method::Exact => return Ok(None),
    }))
}

/// Evaluates every derivative where each variable has the value `at[k]`, at time `t + dt_off`.
fn derivatives_at(
    arena: &mut ExprArena,
    problem: &Problem,
    at: &[ExprId],
    t_off: f64,
) -> Vec<ExprId> {
    let mut map: HashMap<VarId, ExprId> = problem
        .odes
        .iter()
        .zip(at)
        .map(|(o, v)| (o.var, *v))
        .collect();
    if let (Some(t), true) = (problem.time, t_off != 0.0) {
        let tv = arena.var(t);
        let off = arena.constant(t_off);
        map.insert(t, arena.add(tv, off));
    }
    problem
        .odes
        .iter()
        .map(|o| arena.substitute(o.derivative, &map))
        .collect()
}

/// `x + h * k` for every variable.
fn advance(arena: &mut ExprArena, odes: &[Ode], k: &[ExprId], h: f64) -> Vec<ExprId> {
    let hc = arena.constant(h);
    odes.iter()
        .zip(k)
        .map(|(o, k)| {
            let x = arena.var(o.var);
            let dk = arena.mul(hc, *k);
            arena.add(x, dk)
        })
        .collect()
}

fn first_stage(problem: &Problem) -> Vec<ExprId> {
    problem.odes.iter().map(|o| o.derivative).collect()
}

fn euler(arena: &mut ExprArena, problem: &Problem, dt: f64) -> Vec<ExprId> {
    let k = first_stage(problem);
    advance(arena, problem.odes, &k, dt)
}

/// Brian2's `rk2`, the midpoint rule: `x + dt f(x + dt/2 f(x, t), t + dt/2)`.
fn rk2(arena: &mut ExprArena, problem: &Problem, dt: f64) -> Vec<ExprId> {
    let k1 = first_stage(problem);
    let mid = advance(arena, problem.odes, &k1, dt / 2.0);
    let k2 = derivatives_at(arena, problem, &mid, dt / 2.0);
    advance(arena, problem.odes, &k2, dt)
}

/// Brian2's `heun` without noise, the trapezoidal rule:
/// `k1 = f(x, t)`, `k2 = f(x + dt k1, t + dt)`, `x + dt/2 (k1 + k2)`.
fn heun(arena: &mut ExprArena, problem: &Problem, dt: f64) -> Vec<ExprId> {
    let k1 = first_stage(problem);
    let end = advance(arena, problem.odes, &k1, dt);
    let k2 = derivatives_at(arena, problem, &end, dt);
    let sum: Vec<ExprId> = k1.iter().zip(&k2).map(|(a, b)| arena.add(*a, *b)).collect();
    advance(arena, problem.odes, &sum, dt / 2.0)
}

/// The classical fourth-order Runge-Kutta scheme: `x` plus its [`increments`].
fn rk4(arena: &mut ExprArena, problem: &Problem, dt: f64) -> Vec<ExprId> {
    let increments = increments(arena, problem, Method::Rk4, dt)
        .ok()
        .flatten()
        .expect("RK4 gives increments for any system");
    problem
        .odes
        .iter()
        .zip(increments)
        .map(|(o, inc)| {
            let x = arena.var(o.var);
            arena.add(x, inc)
        })
        .collect()
}

/// RK4's weighted increment `dt/6 (k1 + 2 k2 + 2 k3 + k4)` for every variable.
fn rk4_increments(arena: &mut ExprArena, [k1, k2, k3, k4]: [&[ExprId]; 4], dt: f64) -> Vec<ExprId> {
    let two = arena.constant(2.0);
    let sixth = arena.constant(dt / 6.0);
    (0..k1.len())
        .map(|i| {
            let a = arena.mul(two, k2[i]);
            let b = arena.mul(two, k3[i]);
            let s = arena.add(k1[i], a);
            let s = arena.add(s, b);
            let s = arena.add(s, k4[i]);
            arena.mul(sixth, s)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::BinOp;

    /// One step of an autonomous system (the schemes used here always apply).
    fn one_step_of(arena: &mut ExprArena, odes: &[Ode], method: Method, dt: f64) -> Vec<ExprId> {
        let problem = Problem {
            odes,
            time: None,
            switch: None,
        };
        integrate(arena, &problem, method, dt, 1).unwrap()
    }

    /// Integrates dx/dt = -x and dy/dt = x (so x(t)=e^-t) with the scheme, in the interpreter.
    fn error_after(method: Method, dt: f64) -> f64 {
        let mut a = ExprArena::new();
        let x = a.var(VarId(0));
        let dx = a.neg(x);
        let odes = [Ode {
            var: VarId(0),
            derivative: dx,
        }];
        let next = one_step_of(&mut a, &odes, method, dt);
        let mut v = 1.0;
        let steps = (1.0 / dt).round() as usize;
        for _ in 0..steps {
            v = a.eval(next[0], &|_| v);
        }
        (v - (-1.0f64).exp()).abs()
    }

    #[test]
    fn orders_of_accuracy() {
        let e1 = error_after(Method::Euler, 0.01) / error_after(Method::Euler, 0.005);
        assert!((e1 - 2.0).abs() < 0.1, "euler ratio {e1}");
        let e4 = error_after(Method::Rk4, 0.1) / error_after(Method::Rk4, 0.05);
        assert!((e4 - 16.0).abs() < 1.5, "rk4 ratio {e4}");
    }

    /// The harmonic oscillator dx/dt = v, dv/dt = -w^2 x from (1, 0) to t = 2, integrated in
    /// the interpreter; returns the max error of x and v against cos / sin.
    fn oscillator_error(method: Method, dt: f64, substeps: u32) -> f64 {
        let w = 2.0;
        let mut a = ExprArena::new();
        let x = a.var(VarId(0));
        let v = a.var(VarId(1));
        let w2 = a.constant(-w * w);
        let dv = a.mul(w2, x);
        let odes = [
            Ode {
                var: VarId(0),
                derivative: v,
            },
            Ode {
                var: VarId(1),
                derivative: dv,
            },
        ];
        let problem = Problem {
            odes: &odes,
            time: None,
            switch: None,
        };
        let next = integrate(&mut a, &problem, method, dt, substeps).unwrap();
        let mut s = [1.0, 0.0];
        let steps = (2.0 / dt).round() as usize;
        for _ in 0..steps {
            let cur = s;
            s = [
                a.eval(next[0], &|k| cur[k.index()]),
                a.eval(next[1], &|k| cur[k.index()]),
            ];
        }
        let t = steps as f64 * dt;
        (s[0] - (w * t).cos())
            .abs()
            .max((s[1] + w * (w * t).sin()).abs())
    }

    #[test]
    fn oscillator_slopes_match_the_orders() {
        for (method, order) in [
            (Method::Euler, 1.0),
            (Method::Rk2, 2.0),
            (Method::Heun, 2.0),
            (Method::Rk4, 4.0),
        ] {
            let slope =
                (oscillator_error(method, 0.02, 1) / oscillator_error(method, 0.01, 1)).log2();
            assert!((slope - order).abs() < 0.2, "{method:?}: slope {slope}");
        }
        assert!(oscillator_error(Method::Exact, 0.1, 1) < 1e-13);
    }

    #[test]
    fn substeps_are_steps_of_dt_over_k() {
        for method in [Method::Euler, Method::Heun, Method::Rk4] {
            let a = oscillator_error(method, 0.04, 4);
            let b = oscillator_error(method, 0.01, 1);
            assert!(
                (a - b).abs() <= 1e-12 * b.max(1e-300),
                "{method:?}: {a} vs {b}"
            );
        }
    }

    #[test]
    fn stages_see_the_time_of_the_stage() {
        // dx/dt = cos(t): RK4 is Simpson's rule, heun the trapezoidal rule, rk2 the midpoint rule,
        // only if stages read t + c h; with t frozen they are left Riemann sums (error ~0.07).
        let mut a = ExprArena::new();
        let t = a.var(VarId(1));
        let c = a.call(crate::ir::Func::Cos, t);
        let odes = [Ode {
            var: VarId(0),
            derivative: c,
        }];
        let problem = Problem {
            odes: &odes,
            time: Some(VarId(1)),
            switch: None,
        };
        for (method, tol) in [
            (Method::Rk4, 1e-6),
            (Method::Heun, 2e-3),
            (Method::Rk2, 2e-3),
        ] {
            for substeps in [1, 3] {
                let mut a = a.clone();
                let next = integrate(&mut a, &problem, method, 0.1, substeps).unwrap();
                let mut x = 0.0;
                for k in 0..20 {
                    let tk = k as f64 * 0.1;
                    x = a.eval(next[0], &|v| if v == VarId(0) { x } else { tk });
                }
                let err = (x - 2.0f64.sin()).abs();
                assert!(err < tol, "{method:?} x{substeps}: {err}");
            }
        }
    }

    #[test]
    fn rk4_stages_share_work() {
        let mut a = ExprArena::new();
        let x = a.var(VarId(0));
        let e = a.call(crate::ir::Func::Exp, x);
        let d = a.bin(BinOp::Mul, e, x);
        let odes = [Ode {
            var: VarId(0),
            derivative: d,
        }];
        let before = a.len();
        one_step_of(&mut a, &odes, Method::Rk4, 0.1);
        // 3 more derivative evaluations of 2 nodes each plus the combinations: far fewer nodes
        // than re-evaluating everything with fresh copies would need.
        assert!(a.len() - before < 40, "{} nodes", a.len() - before);
    }
}
