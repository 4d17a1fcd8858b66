//! The schemes that use the linear structure of the equations, found by symbolic differentiation
//! ([`crate::ir::derivative`]):
//!
//! * exponential Euler, for conditionally linear equations `dx/dt = A + B x` where `A` and `B`
//!   may depend on every variable but `x` (Hodgkin-Huxley gating, conductance-based voltages);
//! * exact integration of linear systems `dX/dt = M X + c` whose matrix `M` is constant after
//!   constant folding (`c` may be anything constant over a step: parameters, inputs).

use std::collections::HashMap;

use super::expm::{expm, Matrix};
use super::{NotIntegrable, Ode, Problem};
use crate::ir::derivative::{depends_on, derivative};
use crate::ir::{BinOp, ExprArena, ExprId, Func, VarId};

/// `B = df/dx` for each equation, checked to be free of `x`.
pub fn self_coefficients(
    arena: &mut ExprArena,
    odes: &[Ode],
) -> Result<Vec<ExprId>, NotIntegrable> {
    odes.iter()
        .map(|o| {
            let b = derivative(arena, o.derivative, o.var);
            if depends_on(arena, b, o.var) {
                Err(NotIntegrable::NotLinear {
                    of: o.var,
                    var: o.var,
                })
            } else {
                Ok(b)
            }
        })
        .collect()
}

/// `phi(z) = (exp(z) - 1) / z`, with `phi(0) = 1`: the formula away from 0, its Taylor series
/// (to `z^5/720`, truncation below `z^6/5040 < 2e-16` there) where `|z| < 1e-2`, where the
/// formula loses digits to cancellation. Branch-free: both sides are computed and one selected.
fn phi(arena: &mut ExprArena, z: ExprId) -> ExprId {
    let one = arena.constant(1.0);
    let e = arena.call(Func::Exp, z);
    let em1 = arena.sub(e, one);
    let formula = arena.div(em1, z);
    // Horner: 1 + z (1/2 + z (1/6 + z (1/24 + z (1/120 + z/720))))
    let mut series = arena.constant(1.0 / 720.0);
    for c in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0] {
        let t = arena.mul(z, series);
        let cc = arena.constant(c);
        series = arena.add(cc, t);
    }
    let az = arena.call(Func::Abs, z);
    let small = arena.constant(1e-2);
    let near = arena.bin(BinOp::Lt, az, small);
    arena.select(near, series, formula)
}

/// Exponential Euler (Brian2's `exponential_euler`): with `f = A + B x` and the other variables
/// held at their values at the start of the step,
/// `x_new = -A/B + (x + A/B) exp(B h)`, written as `x + h f phi(B h)`, which is the same value,
/// needs no `A`, and tends to Euler's `x + h A` as `B -> 0` without a division by zero.
pub fn exponential_euler(
    arena: &mut ExprArena,
    problem: &Problem,
    h: f64,
) -> Result<Vec<ExprId>, NotIntegrable> {
    exponential_euler_with(arena, problem, h, |arena, x, inc| {
        let x = arena.var(x);
        arena.add(x, inc)
    })
}

/// Exponential Euler's increments `h f phi(B h)` (the change of each variable over the step).
pub fn exponential_euler_increments(
    arena: &mut ExprArena,
    problem: &Problem,
    h: f64,
) -> Result<Vec<ExprId>, NotIntegrable> {
    exponential_euler_with(arena, problem, h, |_, _, inc| inc)
}

/// `finish(x, increment)` for each variable.
fn exponential_euler_with(
    arena: &mut ExprArena,
    problem: &Problem,
    h: f64,
    mut finish: impl FnMut(&mut ExprArena, VarId, ExprId) -> ExprId,
) -> Result<Vec<ExprId>, NotIntegrable> {
    let b = self_coefficients(arena, problem.odes)?;
    let hc = arena.constant(h);
    Ok(problem
        .odes
        .iter()
        .zip(b)
        .map(|(o, b)| {
            let z = arena.mul(hc, b);
            let p = phi(arena, z);
            let hf = arena.mul(hc, o.derivative);
            let inc = arena.mul(hf, p);
            finish(arena, o.var, inc)
        })
        .collect())
}

/// `dX/dt = M X + c`: the constant matrix `M` and the inhomogeneous part `c` (an expression
/// free of the variables, constant over a step).
pub struct LinearSystem {
    pub matrix: Matrix,
    pub inhomogeneous: Vec<ExprId>,
}

pub fn linear_system(
    arena: &mut ExprArena,
    odes: &[Ode],
    time: Option<VarId>,
) -> Result<LinearSystem, NotIntegrable> {
    let vars: Vec<VarId> = odes.iter().map(|o| o.var).collect();
    let mut matrix = vec![vec![0.0; odes.len()]; odes.len()];
    for (i, o) in odes.iter().enumerate() {
        for (j, &x) in vars.iter().enumerate() {
            let d = derivative(arena, o.derivative, x);
            match arena.as_const(d) {
                Some(c) => matrix[i][j] = c,
                None => {
                    let reads = arena.vars_of(d);
                    return Err(if reads.iter().any(|v| vars.contains(v)) {
                        NotIntegrable::NotLinear { of: o.var, var: x }
                    } else if time.is_some_and(|t| reads.contains(&t)) {
                        NotIntegrable::TimeDependent { of: o.var }
                    } else {
                        NotIntegrable::CoefficientNotConstant {
                            of: o.var,
                            var: x,
                            reads,
                        }
                    });
                }
            }
        }
    }
    let zero = arena.constant(0.0);
    let at_zero: HashMap<VarId, ExprId> = vars.iter().map(|v| (*v, zero)).collect();
    let mut inhomogeneous = Vec::new();
    for o in odes {
        let c = arena.substitute(o.derivative, &at_zero);
        if time.is_some_and(|t| depends_on(arena, c, t)) {
            return Err(NotIntegrable::TimeDependent { of: o.var });
        }
        inhomogeneous.push(c);
    }
    Ok(LinearSystem {
        matrix,
        inhomogeneous,
    })
}

/// `(E, G)` with `E = exp(M h)` and `G = int_0^h exp(M s) ds`, from one exponential of the
/// block matrix `[[M h, I h], [0, 0]]` = `[[E, G], [0, I]]`, so a singular `M` (a variable
/// with no decay, a conserved sum) needs no inverse.
pub fn propagators(matrix: &Matrix, h: f64) -> (Matrix, Matrix) {
    let n = matrix.len();
    let mut aug = vec![vec![0.0; 2 * n]; 2 * n];
    for i in 0..n {
        for j in 0..n {
            aug[i][j] = matrix[i][j] * h;
        }
        aug[i][n + i] = h;
    }
    let full = expm(&aug);
    let e = (0..n).map(|i| full[i][..n].to_vec()).collect();
    let g = (0..n).map(|i| full[i][n..].to_vec()).collect();
    (e, g)
}

/// `X_new = E X + G c` for one linear system.
fn exact_system(
    arena: &mut ExprArena,
    odes: &[Ode],
    time: Option<VarId>,
    h: f64,
) -> Result<Vec<ExprId>, NotIntegrable> {
    let sys = linear_system(arena, odes, time)?;
    let (e, g) = propagators(&sys.matrix, h);
    let n = odes.len();
    if let Some(i) = (0..n).find(|&i| !e[i].iter().chain(&g[i]).all(|x| x.is_finite())) {
        return Err(NotIntegrable::Overflow { of: odes[i].var });
    }
    Ok((0..n)
        .map(|i| {
            // Constant parts are summed in f64 first: one constant, one rounding.
            let mut constant = 0.0;
            let mut terms = Vec::new();
            for j in 0..n {
                if e[i][j] != 0.0 {
                    let c = arena.constant(e[i][j]);
                    let x = arena.var(odes[j].var);
                    terms.push(arena.mul(c, x));
                }
                if g[i][j] != 0.0 {
                    let cj = sys.inhomogeneous[j];
                    match arena.as_const(cj) {
                        Some(v) => constant += g[i][j] * v,
                        None => {
                            let k = arena.constant(g[i][j]);
                            terms.push(arena.mul(k, cj));
                        }
                    }
                }
            }
            let mut sum = arena.constant(constant);
            for t in terms {
                sum = arena.add(sum, t);
            }
            sum
        })
        .collect())
}

/// Exact integration (Brian2's `exact` / `linear`). Derivatives that switch on
/// `problem.switch` (the `(unless refractory)` clamp) are solved for each case, and the case is
/// selected per neuron.
pub fn exact(
    arena: &mut ExprArena,
    problem: &Problem,
    h: f64,
) -> Result<Vec<ExprId>, NotIntegrable> {
    let switch = problem.switch.filter(|s| {
        problem
            .odes
            .iter()
            .any(|o| depends_on(arena, o.derivative, *s))
    });
    let Some(sw) = switch else {
        return exact_system(arena, problem.odes, problem.time, h);
    };
    let mut cases = Vec::new();
    for value in [true, false] {
        let b = arena.boolean(value);
        let map: HashMap<VarId, ExprId> = [(sw, b)].into_iter().collect();
        let odes: Vec<Ode> = problem
            .odes
            .iter()
            .map(|o| Ode {
                var: o.var,
                derivative: arena.substitute(o.derivative, &map),
            })
            .collect();
        cases.push(exact_system(arena, &odes, problem.time, h)?);
    }
    let cond = arena.var(sw);
    Ok(cases[0]
        .iter()
        .zip(&cases[1])
        .map(|(on, off)| arena.select(cond, *on, *off))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_euler_is_exact_for_constant_coefficients() {
        // dx/dt = (3 - x) / 2 from x = 0: x(t) = 3 (1 - exp(-t/2)).
        let mut a = ExprArena::new();
        let x = a.var(VarId(0));
        let three = a.constant(3.0);
        let d = a.sub(three, x);
        let half = a.constant(0.5);
        let f = a.mul(d, half);
        let odes = [Ode {
            var: VarId(0),
            derivative: f,
        }];
        let p = Problem {
            odes: &odes,
            time: None,
            switch: None,
        };
        for method_exact in [false, true] {
            let mut a = a.clone();
            let next = if method_exact {
                exact(&mut a, &p, 0.1).unwrap()
            } else {
                exponential_euler(&mut a, &p, 0.1).unwrap()
            };
            let mut v = 0.0;
            for _ in 0..100 {
                v = a.eval(next[0], &|_| v);
            }
            let want = 3.0 * (1.0 - (-5.0f64).exp());
            assert!((v - want).abs() < 1e-14, "{v} vs {want}");
        }
    }

    #[test]
    fn exponential_euler_handles_a_vanishing_coefficient() {
        // dx/dt = 1 - b x with b a variable that is 0: the linear limit x + h.
        let mut a = ExprArena::new();
        let x = a.var(VarId(0));
        let b = a.var(VarId(1));
        let bx = a.mul(b, x);
        let one = a.constant(1.0);
        let f = a.sub(one, bx);
        let odes = [Ode {
            var: VarId(0),
            derivative: f,
        }];
        let p = Problem {
            odes: &odes,
            time: None,
            switch: None,
        };
        let next = exponential_euler(&mut a, &p, 0.1).unwrap();
        let v = a.eval(next[0], &|v| if v == VarId(0) { 2.0 } else { 0.0 });
        assert!((v - 2.1).abs() < 1e-15, "{v}");
        let v = a.eval(next[0], &|v| if v == VarId(0) { 2.0 } else { 1e-9 });
        // x + (A + B x) (exp(B h) - 1) / B, without cancellation.
        let want = 2.0 + (1.0 - 2e-9) * (-1e-10f64).exp_m1() / -1e-9;
        assert!((v - want).abs() < 1e-12, "{v} vs {want}");
    }

    #[test]
    fn nonlinear_equations_are_refused() {
        let mut a = ExprArena::new();
        let x = a.var(VarId(0));
        let y = a.var(VarId(1));
        let f = a.mul(x, x);
        let g = a.mul(x, y);
        let odes = [
            Ode {
                var: VarId(0),
                derivative: f,
            },
            Ode {
                var: VarId(1),
                derivative: g,
            },
        ];
        assert_eq!(
            self_coefficients(&mut a, &odes).unwrap_err(),
            NotIntegrable::NotLinear {
                of: VarId(0),
                var: VarId(0)
            }
        );
        // x*y is linear in y: fine for exponential Euler, not for exact.
        assert!(self_coefficients(&mut a, &odes[1..]).is_ok());
        assert!(matches!(
            linear_system(&mut a, &odes, None),
            Err(NotIntegrable::NotLinear {
                of: VarId(0),
                var: VarId(0)
            })
        ));
        // Alone, y's equation has the coefficient x: not a constant.
        assert!(matches!(
            linear_system(&mut a, &odes[1..], None),
            Err(NotIntegrable::CoefficientNotConstant {
                of: VarId(1),
                var: VarId(1),
                ..
            })
        ));
        // A per-neuron coefficient: not constant.
        let p = a.var(VarId(5));
        let px = a.mul(p, x);
        let odes = [Ode {
            var: VarId(0),
            derivative: px,
        }];
        assert!(matches!(
            linear_system(&mut a, &odes, None),
            Err(NotIntegrable::CoefficientNotConstant {
                of: VarId(0),
                var: VarId(0),
                ..
            })
        ));
        // A system that leaves f64 within a step is an error, not a panic.
        let big = a.constant(1e300);
        let grow = a.mul(big, x);
        let odes = [Ode {
            var: VarId(0),
            derivative: grow,
        }];
        let p = Problem {
            odes: &odes,
            time: None,
            switch: None,
        };
        assert_eq!(
            exact(&mut a, &p, 0.1).unwrap_err(),
            NotIntegrable::Overflow { of: VarId(0) }
        );
    }
}
