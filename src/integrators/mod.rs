//! Numerical integration schemes: derivatives in the DAG -> the state after one step, in the DAG.
//!
//! Each scheme is written once against the expression arena; stages are built by substituting
//! the intermediate states into the derivatives, so work shared between stages (and with the
//! threshold and reset, which are built on top) is computed once after hash-consing.

use std::collections::HashMap;

use crate::ir::{ExprArena, ExprId, VarId};
use crate::spec::Method;

/// One ODE: the variable it integrates and its derivative.
#[derive(Clone, Copy, Debug)]
pub struct Ode {
    pub var: VarId,
    pub derivative: ExprId,
}

/// The value of every variable after one step of size `dt`, in the order of `odes`.
pub fn step(arena: &mut ExprArena, odes: &[Ode], method: Method, dt: f64) -> Vec<ExprId> {
    match method {
        Method::Euler => euler(arena, odes, dt),
        Method::Rk4 => rk4(arena, odes, dt),
    }
}

/// Evaluates every derivative at the point where each variable has the value `at[k]`.
fn derivatives_at(arena: &mut ExprArena, odes: &[Ode], at: &[ExprId]) -> Vec<ExprId> {
    let map: HashMap<VarId, ExprId> = odes.iter().zip(at).map(|(o, v)| (o.var, *v)).collect();
    odes.iter()
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

fn euler(arena: &mut ExprArena, odes: &[Ode], dt: f64) -> Vec<ExprId> {
    let k: Vec<ExprId> = odes.iter().map(|o| o.derivative).collect();
    advance(arena, odes, &k, dt)
}

/// The classical fourth-order Runge-Kutta scheme.
fn rk4(arena: &mut ExprArena, odes: &[Ode], dt: f64) -> Vec<ExprId> {
    let k1: Vec<ExprId> = odes.iter().map(|o| o.derivative).collect();
    let x2 = advance(arena, odes, &k1, dt / 2.0);
    let k2 = derivatives_at(arena, odes, &x2);
    let x3 = advance(arena, odes, &k2, dt / 2.0);
    let k3 = derivatives_at(arena, odes, &x3);
    let x4 = advance(arena, odes, &k3, dt);
    let k4 = derivatives_at(arena, odes, &x4);
    let two = arena.constant(2.0);
    let sixth = arena.constant(dt / 6.0);
    (0..odes.len())
        .map(|i| {
            let a = arena.mul(two, k2[i]);
            let b = arena.mul(two, k3[i]);
            let s = arena.add(k1[i], a);
            let s = arena.add(s, b);
            let s = arena.add(s, k4[i]);
            let x = arena.var(odes[i].var);
            let inc = arena.mul(sixth, s);
            arena.add(x, inc)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::BinOp;

    /// Integrates dx/dt = -x and dy/dt = x (so x(t)=e^-t) with the scheme, in the interpreter.
    fn error_after(method: Method, dt: f64) -> f64 {
        let mut a = ExprArena::new();
        let x = a.var(0);
        let dx = a.neg(x);
        let odes = [Ode {
            var: 0,
            derivative: dx,
        }];
        let next = step(&mut a, &odes, method, dt);
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

    #[test]
    fn rk4_stages_share_work() {
        let mut a = ExprArena::new();
        let x = a.var(0);
        let e = a.call(crate::ir::Func::Exp, x);
        let d = a.bin(BinOp::Mul, e, x);
        let odes = [Ode {
            var: 0,
            derivative: d,
        }];
        let before = a.len();
        step(&mut a, &odes, Method::Rk4, 0.1);
        // 3 more derivative evaluations of 2 nodes each plus the combinations: far fewer nodes
        // than re-evaluating everything with fresh copies would need.
        assert!(a.len() - before < 40, "{} nodes", a.len() - before);
    }
}
