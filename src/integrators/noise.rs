//! Stochastic differential equations, as Brian2 reads them: white noise symbols `xi_k` enter each
//! derivative linearly, `f = a(x, t) + sum_k g_k(x, t) xi_k`, and a term `g xi` in `dx/dt` adds
//! `g sqrt(dt) N(0, 1)` to `x` over a step.
//!
//! [`split`] separates the drift `a` (the derivative with every `xi` at 0) from the diffusion
//! coefficients `g_k = df/dxi_k`, taken by symbolic differentiation ([`crate::ir::derivative`]),
//! so that a coefficient is exactly the term the user wrote (`-v/tau + 0.9*xi` has `g = 0.9`, not
//! `(-v/tau + 0.9) - (-v/tau)`). [`NoiseKind`] is Brian2's classification (`Equations
//! .stochastic_type`): additive when no coefficient reads a state variable or the time, else
//! multiplicative. [`euler_maruyama`] and [`stochastic_heun`] are Brian2's `euler` and `heun`
//! for stochastic equations, term for term.

use std::collections::HashMap;

use super::Ode;
use crate::ir::derivative::derivative;
use crate::ir::{ExprArena, ExprId, VarId};

/// One equation's derivative, split: `f = drift + sum_k diffusion[k] xi_k`.
#[derive(Clone, Debug, PartialEq)]
pub struct Split {
    pub var: VarId,
    pub drift: ExprId,
    /// `df/dxi_k` for every noise symbol, in the order of the group's noise list.
    pub diffusion: Vec<ExprId>,
}

/// A noise symbol that does not enter a derivative linearly (`xi**2`, `xi_a*xi_b`, `exp(xi)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotLinearInNoise {
    /// The variable whose derivative it is.
    pub of: VarId,
    pub xi: VarId,
}

/// Brian2's classification of stochastic equations (`Equations.stochastic_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoiseKind {
    /// No noise coefficient reads a state variable or the time: Euler-Maruyama applies.
    Additive,
    /// Some coefficient `g` of `var`'s derivative reads `reads` (a state variable or `t`).
    Multiplicative { of: VarId, reads: VarId },
}

/// Splits every derivative into drift and diffusion, or says which noise enters non-linearly.
pub fn split(
    arena: &mut ExprArena,
    odes: &[Ode],
    noise: &[VarId],
) -> Result<Vec<Split>, NotLinearInNoise> {
    odes.iter()
        .map(|ode| {
            let drift = arena.drop_terms(ode.derivative, noise);
            let diffusion = noise
                .iter()
                .map(|&xi| {
                    let g = derivative(arena, ode.derivative, xi);
                    // Linear in xi_k, and no product of two noises: g_k reads no noise at all.
                    match arena.vars_of(g).into_iter().find(|v| noise.contains(v)) {
                        Some(_) => Err(NotLinearInNoise { of: ode.var, xi }),
                        None => Ok(g),
                    }
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Split {
                var: ode.var,
                drift,
                diffusion,
            })
        })
        .collect()
}

/// Brian2's rule: multiplicative as soon as one coefficient reads a state variable (of
/// `states`) or the time `t`.
pub fn kind(
    arena: &ExprArena,
    splits: &[Split],
    states: &[VarId],
    time: Option<VarId>,
) -> NoiseKind {
    for s in splits {
        for &g in &s.diffusion {
            let reads = arena.vars_of(g);
            if let Some(v) = reads
                .into_iter()
                .find(|v| states.contains(v) || Some(*v) == time)
            {
                return NoiseKind::Multiplicative {
                    of: s.var,
                    reads: v,
                };
            }
        }
    }
    NoiseKind::Additive
}

/// The noise of one step: `normals[k]` is the k-th symbol's standard normal, `sqrt_dt` the
/// constant `sqrt(dt)`.
pub struct Increments<'a> {
    pub normals: &'a [ExprId],
    pub dt: f64,
}

impl Increments<'_> {
    /// `dW_k = sqrt(dt) N_k`.
    fn dw(&self, arena: &mut ExprArena, k: usize) -> ExprId {
        let s = arena.constant(self.dt.sqrt());
        arena.mul(s, self.normals[k])
    }
}

/// Euler-Maruyama's noise (Brian2's `euler`: `x + dt f(x, t) + g(x, t) dW`): adds
/// `sum_k g_k dW_k`, with `g_k` at the start of the step, to each value of `after_drift` (the
/// state after the scheme integrated the drift).
pub fn euler_maruyama(
    arena: &mut ExprArena,
    splits: &[Split],
    after_drift: &[ExprId],
    noise: &Increments,
) -> Vec<ExprId> {
    splits
        .iter()
        .zip(after_drift)
        .map(|(s, &x)| {
            let mut total = x;
            for (k, &g) in s.diffusion.iter().enumerate() {
                if arena.as_const(g) == Some(0.0) {
                    continue;
                }
                let dw = noise.dw(arena, k);
                let kick = arena.mul(g, dw);
                total = arena.add(total, kick);
            }
            total
        })
        .collect()
}

/// Brian2's `heun` for stochastic equations (the Stratonovich Heun scheme), per noise symbol k:
///
/// ```text
/// x_support_k = x + g_k(x, t) dW_k                 (every variable, with its own g_k)
/// g_support_k = g_k(x_support_k, t + dt)
/// x_new       = x + dt f(x, t) + sum_k dW_k (g_k(x, t) + g_support_k) / 2
/// ```
///
/// where `f` is the drift. `time` is the symbol `t`, when the coefficients may read it.
pub fn stochastic_heun(
    arena: &mut ExprArena,
    splits: &[Split],
    noise: &Increments,
    time: Option<VarId>,
) -> Vec<ExprId> {
    let dt = arena.constant(noise.dt);
    let half = arena.constant(0.5);
    let n_noise = splits.first().map_or(0, |s| s.diffusion.len());
    let mut supports: Vec<HashMap<VarId, ExprId>> = Vec::with_capacity(n_noise);
    for k in 0..n_noise {
        let dw = noise.dw(arena, k);
        let mut at: HashMap<VarId, ExprId> = splits
            .iter()
            .map(|s| {
                let x = arena.var(s.var);
                let g = s.diffusion[k];
                let moved = if arena.as_const(g) == Some(0.0) {
                    x
                } else {
                    let step = arena.mul(g, dw);
                    arena.add(x, step)
                };
                (s.var, moved)
            })
            .collect();
        if let Some(t) = time {
            let tv = arena.var(t);
            at.insert(t, arena.add(tv, dt));
        }
        supports.push(at);
    }
    splits
        .iter()
        .map(|s| {
            let x = arena.var(s.var);
            let drift = arena.mul(dt, s.drift);
            let mut total = arena.add(x, drift);
            for (k, &g) in s.diffusion.iter().enumerate() {
                if arena.as_const(g) == Some(0.0) {
                    continue;
                }
                let g_support = arena.substitute(g, &supports[k]);
                let sum = arena.add(g, g_support);
                let dw = noise.dw(arena, k);
                let w = arena.mul(half, dw);
                let term = arena.mul(w, sum);
                total = arena.add(total, term);
            }
            total
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The split of dx/dt = f (x is VarId 0, xi VarId 1).
    fn split_one(a: &mut ExprArena, f: ExprId) -> Result<Vec<Split>, NotLinearInNoise> {
        let ode = Ode {
            var: VarId(0),
            derivative: f,
        };
        split(a, &[ode], &[VarId(1)])
    }

    /// dx/dt = -x/10 + c(x) xi (x is VarId 0, xi VarId 1, t VarId 2).
    fn one(c: impl Fn(&mut ExprArena, ExprId) -> ExprId) -> (ExprArena, Vec<Split>) {
        let mut a = ExprArena::new();
        let x = a.var(VarId(0));
        let xi = a.var(VarId(1));
        let k = a.constant(-0.1);
        let decay = a.mul(k, x);
        let g = c(&mut a, x);
        let noise = a.mul(g, xi);
        let f = a.add(decay, noise);
        let splits = split_one(&mut a, f).unwrap();
        (a, splits)
    }

    #[test]
    fn additive_noise_has_the_coefficient_the_user_wrote() {
        let (a, s) = one(|a, _| a.constant(0.9));
        assert_eq!(a.as_const(s[0].diffusion[0]), Some(0.9));
        assert_eq!(
            kind(&a, &s, &[VarId(0)], Some(VarId(2))),
            NoiseKind::Additive
        );
        let (a, s) = one(|a, x| a.mul(x, x));
        assert_eq!(
            kind(&a, &s, &[VarId(0)], Some(VarId(2))),
            NoiseKind::Multiplicative {
                of: VarId(0),
                reads: VarId(0)
            }
        );
        // A coefficient that reads the time is multiplicative for Brian2 too.
        let (a, s) = one(|a, _| a.var(VarId(2)));
        assert!(matches!(
            kind(&a, &s, &[VarId(0)], Some(VarId(2))),
            NoiseKind::Multiplicative { .. }
        ));
    }

    #[test]
    fn noise_must_enter_linearly() {
        let mut a = ExprArena::new();
        let xi = a.var(VarId(1));
        let sq = a.mul(xi, xi);
        let e = split_one(&mut a, sq).unwrap_err();
        assert_eq!(
            e,
            NotLinearInNoise {
                of: VarId(0),
                xi: VarId(1)
            }
        );
    }

    #[test]
    fn stochastic_heun_is_brians_scheme() {
        // dx/dt = mu x + s x xi, with a fixed normal N: Brian2's update by hand.
        let (mu, s, x0, n, dt) = (0.05, 0.3, 1.3, 0.7, 0.01);
        let mut a = ExprArena::new();
        let x = a.var(VarId(0));
        let xi = a.var(VarId(1));
        let (muc, sc) = (a.constant(mu), a.constant(s));
        let drift = a.mul(muc, x);
        let sx = a.mul(sc, x);
        let noise = a.mul(sx, xi);
        let f = a.add(drift, noise);
        let splits = split_one(&mut a, f).unwrap();
        let normal = a.var(VarId(3));
        let new = stochastic_heun(
            &mut a,
            &splits,
            &Increments {
                normals: &[normal],
                dt,
            },
            None,
        );
        let got = a.eval(new[0], &|v| if v == VarId(0) { x0 } else { n });
        let dw = dt.sqrt() * n;
        let support = x0 + s * x0 * dw;
        let want = x0 + dt * mu * x0 + 0.5 * dw * (s * x0 + s * support);
        assert!((got - want).abs() < 1e-15, "{got} vs {want}");
    }
}
