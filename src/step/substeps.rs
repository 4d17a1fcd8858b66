//! Sub-steps: `k` steps of `dt / k` within a step of `dt`. Up to [`UNROLLED_SUBSTEPS`] they are
//! unrolled into the step's DAG (the scheme substituted into itself, `crate::integrators`), which
//! lets work be shared across sub-steps; past that, unrolling would make the DAG, the source and
//! the C compiler's work grow with `k` (`substeps=10**6` never finished compiling), so the step
//! holds a [`SubstepLoop`] instead: one sub-step of the scheme, over variables the loop carries,
//! which the printers write as a loop in the kernel.

use std::collections::HashMap;

use crate::integrators::{self, NotIntegrable, Problem};
use crate::ir::{ExprArena, ExprId, VarId};
use crate::spec::Method;

/// The most sub-steps unrolled into the DAG; more are a loop in the kernel.
pub const UNROLLED_SUBSTEPS: u32 = 4;

/// `count` sub-steps of length `h`, as a loop: each carried variable starts at its `start`
/// value (an expression of the step's DAG) and becomes its `next` value (an expression of the
/// carried variables and `time`) once per iteration. After the loop, a carried variable's
/// [`VarId`] stands for its final value in the rest of the step's DAG.
#[derive(Clone, Debug)]
pub struct SubstepLoop {
    pub count: u32,
    pub h: f64,
    pub carried: Vec<Carried>,
    /// The time at the start of the iteration's sub-step, `t + k h` (when the scheme reads `t`).
    pub time: Option<VarId>,
}

#[derive(Clone, Debug)]
pub struct Carried {
    pub var: VarId,
    pub start: ExprId,
    pub next: ExprId,
}

/// The loops of one step, and the variables they introduce (numbered after the group's
/// symbols, so that they never collide with one).
#[derive(Debug)]
pub(crate) struct Loops {
    next_var: usize,
    pub loops: Vec<SubstepLoop>,
}

impl Loops {
    pub fn new(symbols: usize) -> Loops {
        Loops {
            next_var: symbols,
            loops: Vec::new(),
        }
    }

    fn fresh(&mut self) -> VarId {
        let v = VarId::at(self.next_var);
        self.next_var += 1;
        v
    }

    /// The value of every variable of `problem` after `substeps` steps of `dt / substeps`:
    /// unrolled up to [`UNROLLED_SUBSTEPS`] (and for exact integration, which needs none),
    /// else a loop whose carried variables stand for the values.
    pub fn integrate(
        &mut self,
        arena: &mut ExprArena,
        problem: &Problem,
        method: Method,
        dt: f64,
        substeps: u32,
    ) -> Result<Vec<ExprId>, NotIntegrable> {
        if substeps <= UNROLLED_SUBSTEPS || method == Method::Exact {
            return integrators::integrate(arena, problem, method, dt, substeps);
        }
        let h = dt / f64::from(substeps);
        let one = integrators::one_step(arena, problem, method, h)?;
        let mut map: HashMap<VarId, ExprId> = HashMap::new();
        let vars: Vec<VarId> = problem.odes.iter().map(|_| self.fresh()).collect();
        for (o, v) in problem.odes.iter().zip(&vars) {
            map.insert(o.var, arena.var(*v));
        }
        let time = problem.time.map(|t| {
            let tau = self.fresh();
            map.insert(t, arena.var(tau));
            tau
        });
        let carried: Vec<Carried> = problem
            .odes
            .iter()
            .zip(&vars)
            .zip(&one)
            .map(|((o, v), e)| Carried {
                var: *v,
                start: arena.var(o.var),
                next: arena.substitute(*e, &map),
            })
            .collect();
        // The loop's time only where one of its sub-steps reads it.
        let time = time.filter(|tau| carried.iter().any(|c| arena.vars_of(c.next).contains(tau)));
        let out = vars.iter().map(|v| arena.var(*v)).collect();
        self.loops.push(SubstepLoop {
            count: substeps,
            h,
            carried,
            time,
        });
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use crate::frontend::lower;
    use crate::spec::{Method, ModelSpec};
    use crate::step::{build, FastMath};

    /// The loop runs one sub-step of the scheme `count` times: interpreting it gives what the
    /// unrolled sub-steps give (dx/dt = -x + cos(t), which reads the sub-step's time).
    #[test]
    fn a_loop_of_sub_steps_is_the_unrolled_sub_steps() {
        for method in [Method::Euler, Method::Rk2, Method::Heun, Method::Rk4] {
            let spec = |k: u32| {
                ModelSpec::from_equations("dx/dt = (-x + cos(t)) / ms : 1", 0.4)
                    .method(method)
                    .substeps(k)
            };
            let step = |k: u32, x: f64, t: f64| {
                let ir = lower(&spec(k)).unwrap();
                let dag = build(&ir, &[], FastMath::Off);
                let (xv, tv) = (ir.lookup("x").unwrap(), ir.lookup("t").unwrap());
                let mut vals = std::collections::HashMap::new();
                vals.insert(xv, x);
                vals.insert(tv, t);
                for l in &dag.loops {
                    for c in &l.carried {
                        let start = dag.arena.eval(c.start, &|v| vals[&v]);
                        vals.insert(c.var, start);
                    }
                    for k in 0..l.count {
                        if let Some(tau) = l.time {
                            vals.insert(tau, t + f64::from(k) * l.h);
                        }
                        let next: Vec<f64> = l
                            .carried
                            .iter()
                            .map(|c| dag.arena.eval(c.next, &|v| vals[&v]))
                            .collect();
                        for (c, n) in l.carried.iter().zip(next) {
                            vals.insert(c.var, n);
                        }
                    }
                }
                (
                    dag.loops.len(),
                    dag.arena.eval(dag.next_state[0], &|v| vals[&v]),
                )
            };
            let (loops, looped) = step(8, 0.3, 1.0);
            assert_eq!(loops, 1, "{method:?}");
            // Two steps of dt/2 with 4 unrolled sub-steps each are the same 8 sub-steps.
            let (unrolled_loops, half) = step(4, 0.3, 1.0);
            assert_eq!(unrolled_loops, 0);
            let mut half_spec = spec(4);
            half_spec.dt = 0.2;
            let ir = lower(&half_spec).unwrap();
            let dag = build(&ir, &[], FastMath::Off);
            let (xv, tv) = (ir.lookup("x").unwrap(), ir.lookup("t").unwrap());
            let at = |x: f64, t: f64| {
                dag.arena.eval(dag.next_state[0], &|v| {
                    if v == xv {
                        x
                    } else if v == tv {
                        t
                    } else {
                        f64::NAN
                    }
                })
            };
            let twice = at(at(0.3, 1.0), 1.2);
            assert!(
                (looped - twice).abs() < 1e-14,
                "{method:?}: {looped} vs {twice}"
            );
            assert!(
                (half - looped).abs() > 1e-9,
                "{method:?}: 4 and 8 sub-steps differ"
            );
        }
    }
}
