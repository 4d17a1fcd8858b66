//! The state update of a model class (explicit updates): `ode()` run on the stored values `y`
//! gives the derivatives `F(y)` of the integrated variables and the value `E(y)` every stored
//! variable has at the end of the body (its direct assignments). A step is
//!
//! ```text
//! y' = clip(E(y) + Δ(y))
//! ```
//!
//! where `Δ` is the change the scheme gives the integrated variables (`dt F(y)` for Euler; RK4's
//! `dt/6 (k1 + 2 k2 + 2 k3 + k4)` with `k1 = F(y)`, `k2 = F(y + dt/2 k1)`, ...; exponential
//! Euler's `dt F phi(B dt)`; exact integration's `Φ(y) - y`; with sub-steps, `k` steps of
//! `dt / k`), 0 for the others, and `clip` applies `Default_States`' bounds. The stages move
//! only the integrated variables (internals and assigned-only states keep their stored value
//! inside a stage, and `ode()`'s assignments are recomputed from the stage's values wherever a
//! derivative reads them). For Euler this is `neural`'s forward Euler exactly: the direct
//! assignments take effect during `ode()`, the derivatives computed in the same call are added,
//! then the states are clipped.

use std::collections::HashMap;

use super::substeps::Loops;
use crate::integrators::{self, Ode, Problem};
use crate::ir::{BinOp, ExprArena, ExprId, GroupIr, SymbolKind, Update, VarId};

/// How the scheme gives an integrated variable's change.
enum Change {
    /// Add this to the end value.
    By(ExprId),
    /// The variable's value after the step, from its stored value.
    To(ExprId),
}

/// The value of every stored variable after the update, in the order of `updates`.
pub(super) fn update(
    ir: &GroupIr,
    updates: &[Update],
    arena: &mut ExprArena,
    loops: &mut Loops,
) -> Vec<ExprId> {
    let mut changes = changes(ir, arena, loops);
    updates
        .iter()
        .map(|u| {
            let end = u.end_value;
            let mut x = match changes.remove(&u.var) {
                Some(Change::By(inc)) => arena.add(end, inc),
                Some(Change::To(value)) => {
                    let stored = arena.var(u.var);
                    if end == stored {
                        value
                    } else {
                        let inc = arena.sub(value, stored);
                        arena.add(end, inc)
                    }
                }
                None => end,
            };
            // The clip as selects, not fmax/fmin: GCC vectorises a compare-and-blend but not
            // fmaxf (whose NaN rule has no vector instruction), and a NaN stays visible instead
            // of being clipped to a bound.
            let (lo, hi) = u.bounds;
            if let Some(lo) = lo {
                let c = arena.constant(lo);
                let below = arena.bin(BinOp::Lt, x, c);
                x = arena.select(below, c, x);
            }
            if let Some(hi) = hi {
                let c = arena.constant(hi);
                let above = arena.bin(BinOp::Gt, x, c);
                x = arena.select(above, c, x);
            }
            x
        })
        .collect()
}

/// The change of every integrated variable over the step.
fn changes(ir: &GroupIr, arena: &mut ExprArena, loops: &mut Loops) -> HashMap<VarId, Change> {
    let odes: Vec<Ode> = ir
        .integrated()
        .into_iter()
        .map(|(var, derivative)| Ode { var, derivative })
        .collect();
    let problem = Problem {
        odes: &odes,
        time: ir.vars_of_kind(&SymbolKind::Time).first().copied(),
        switch: None,
    };
    let method = ir.method;
    let checked = |e: integrators::NotIntegrable| -> ! {
        panic!("{method:?} was checked to apply when lowering: {e:?}")
    };
    let increments = if ir.substeps > 1 {
        None
    } else {
        integrators::increments(arena, &problem, method, ir.dt).unwrap_or_else(|e| checked(e))
    };
    let changes: Vec<Change> = match increments {
        Some(incs) => incs.into_iter().map(Change::By).collect(),
        None => loops
            .integrate(arena, &problem, method, ir.dt, ir.substeps)
            .unwrap_or_else(|e| checked(e))
            .into_iter()
            .map(Change::To)
            .collect(),
    };
    odes.iter().map(|o| o.var).zip(changes).collect()
}

#[cfg(test)]
mod tests {
    use crate::frontend::lower;
    use crate::spec::{Method, ModelClassSpec, ModelSpec};
    use crate::step::{build, FastMath};

    const TAU: f64 = 5.0;
    const DT: f64 = 0.2;

    /// A class whose integrated variable also jumps inside `ode()` (so end value and change
    /// both matter) and whose other state is assigned only: `v` relaxes to the stored `w`.
    fn relax(method: Option<Method>, substeps: u32) -> ModelSpec {
        let source = "def ode(self, I=0.):\n    self.d_v = (self.w - self.v) / self.tau\n    self.v += 0.5 * I\n    self.w = self.w * 0.5\n";
        let class = ModelClassSpec::new("Relax", source)
            .state("v", None, Some(3.0))
            .state("w", None, None)
            .params(["tau"]);
        let spec = ModelSpec::from_class(class, DT)
            .constants([("tau", TAU), ("I", 0.0)])
            .per_neuron(["I"])
            .substeps(substeps);
        match method {
            Some(m) => spec.method(m),
            None => spec,
        }
    }

    /// One step from (v, w) with input `i`, through the step DAG and the IR's interpreter.
    fn step(spec: &ModelSpec, v: f64, w: f64, i: f64) -> (Method, f64, f64) {
        let ir = lower(spec).unwrap_or_else(|d| panic!("{}", d.render()));
        let dag = build(&ir, &[], FastMath::Off);
        let (vv, wv, iv) = (
            ir.lookup("v").unwrap(),
            ir.lookup("w").unwrap(),
            ir.lookup("I").unwrap(),
        );
        let at = |x| {
            if x == vv {
                v
            } else if x == wv {
                w
            } else if x == iv {
                i
            } else {
                f64::NAN
            }
        };
        let next: Vec<f64> = dag
            .next_state
            .iter()
            .map(|e| dag.arena.eval(*e, &at))
            .collect();
        (ir.method, next[0], next[1])
    }

    /// The change of `v` over one step of `h` under each scheme, written out by hand for
    /// `dv/dt = f(v) = (w - v) / tau` with `w` held.
    fn reference_change(method: Method, v: f64, w: f64, h: f64) -> f64 {
        let f = |x: f64| (w - x) / TAU;
        match method {
            Method::Euler => h * f(v),
            Method::Rk2 => h * f(v + h / 2.0 * f(v)),
            Method::Heun => h / 2.0 * (f(v) + f(v + h * f(v))),
            Method::Rk4 => {
                let k1 = f(v);
                let k2 = f(v + h / 2.0 * k1);
                let k3 = f(v + h / 2.0 * k2);
                let k4 = f(v + h * k3);
                h / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
            }
            // Linear with a constant coefficient: both are exact.
            Method::ExponentialEuler | Method::Exact => (w - v) * (1.0 - (-h / TAU).exp()),
        }
    }

    #[test]
    fn a_model_class_takes_every_scheme_that_applies() {
        let (v, w, i) = (1.25, -0.5, 0.8);
        for method in [
            Method::Euler,
            Method::Rk2,
            Method::Heun,
            Method::Rk4,
            Method::ExponentialEuler,
            Method::Exact,
        ] {
            let (m, v1, w1) = step(&relax(Some(method), 1), v, w, i);
            assert_eq!(m, method);
            // ode()'s jump applies once, then the scheme's change of v from its stored value.
            let want = v + 0.5 * i + reference_change(method, v, w, DT);
            assert!((v1 - want).abs() < 1e-14, "{method:?}: {v1} vs {want}");
            assert_eq!(w1, 0.5 * w, "{method:?}");
        }
        // Left out, the scheme is Brian2's choice: exact applies to this linear equation.
        assert_eq!(step(&relax(None, 1), v, w, i).0, Method::Exact);
    }

    #[test]
    fn sub_steps_repeat_the_scheme_and_bounds_clip_after_the_jump() {
        let (v, w, i) = (1.25, -0.5, 0.8);
        for method in [Method::Euler, Method::Rk4] {
            let (_, v1, _) = step(&relax(Some(method), 4), v, w, i);
            let mut x = v;
            for _ in 0..4 {
                x += reference_change(method, x, w, DT / 4.0);
            }
            let want = v + 0.5 * i + (x - v);
            assert!((v1 - want).abs() < 1e-14, "{method:?}: {v1} vs {want}");
        }
        // v's max is 3: a jump past it is clipped after the change is added.
        let (_, v1, _) = step(&relax(Some(Method::Euler), 1), 2.9, 0.0, 2.0);
        assert_eq!(v1, 3.0);
    }

    #[test]
    fn a_scheme_that_does_not_apply_points_at_the_derivative() {
        let source = "def ode(self):\n    self.d_v = -self.v * self.v\n";
        let class = ModelClassSpec::new("Square", source).state("v", None, None);
        let spec = ModelSpec::from_class(class, DT).method(Method::ExponentialEuler);
        let d = lower(&spec).unwrap_err();
        assert_eq!(d.field, "ode");
        assert_eq!(d.span.map(|s| s.line), Some(2), "{}", d.render());
        assert!(
            d.message.contains(
                "'exponential_euler' needs every equation to be linear in its own variable: self.d_v is not linear in v"
            ),
            "{}",
            d.render()
        );
        assert!(d.suggestion.unwrap().contains("rk4"));
    }
}
