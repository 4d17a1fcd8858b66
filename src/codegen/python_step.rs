//! One time step of a model class (`spec.python_model`), as a DAG for the fused neuron kernel.
//!
//! `ode()` run on the stored values `y` gives the derivatives `F(y)` of the integrated variables
//! and the value `E(y)` every stored variable has at the end of the body (its direct
//! assignments). A step is
//!
//! ```text
//! euler: y' = clip(E(y) + dt F(y))
//! rk4:   k1 = F(y), k2 = F(y + dt/2 k1), k3 = F(y + dt/2 k2), k4 = F(y + dt k3)
//!        y' = clip(E(y) + dt/6 (k1 + 2 k2 + 2 k3 + k4))
//! ```
//!
//! where the stages move only the integrated variables (internals and assigned-only states keep
//! their stored value inside a stage, and `ode()`'s assignments are recomputed from the stage's
//! values wherever a derivative reads them), and `clip` applies `Default_States`' bounds. For
//! Euler this is `neural`'s forward Euler exactly: the direct assignments take effect during
//! `ode()`, the derivatives computed in the same call are added, then the states are clipped.

use std::collections::HashMap;

use super::neuron_kernel::StepDag;
use super::printer::Dialect;
use crate::ir::{BinOp, ExprArena, ExprId, GroupIr, RefractoryIr, Update, VarId};
use crate::spec::{Method, ModelSpec};

pub fn step_dag(ir: &GroupIr, updates: &[Update], spec: &ModelSpec, dialect: Dialect) -> StepDag {
    let mut arena = ir.arena.clone();
    let odes: Vec<(VarId, ExprId)> = ir.integrated();
    let increments = increments(&mut arena, &odes, ir.method, ir.dt);
    let mut by_var: HashMap<VarId, ExprId> = odes
        .iter()
        .zip(&increments)
        .map(|((v, _), inc)| (*v, *inc))
        .collect();
    let mut next_state = Vec::new();
    for u in updates {
        let end = u.end_value;
        let mut x = match by_var.remove(&u.var) {
            Some(inc) => arena.add(end, inc),
            None => end,
        };
        // The clip as selects, not fmax/fmin: GCC vectorises a compare-and-blend but not fmaxf
        // (whose NaN rule has no vector instruction), and a NaN stays visible instead of being
        // clipped to a bound.
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
        next_state.push(x);
    }
    if spec.fast_math {
        next_state = arena.share_exponentials(&next_state, dialect == Dialect::Cuda);
    }
    let traces = spec
        .record
        .iter()
        .map(|name| {
            let v = ir
                .lookup(name)
                .expect("recorded names are checked when lowering");
            arena.var(v)
        })
        .collect();
    StepDag {
        arena,
        next_state,
        next_params: Vec::new(),
        spike: None,
        refractory: RefractoryIr::None,
        traces,
    }
}

/// `dt * (the scheme's weighted sum of stage derivatives)` for every integrated variable.
fn increments(
    arena: &mut ExprArena,
    odes: &[(VarId, ExprId)],
    method: Method,
    dt: f64,
) -> Vec<ExprId> {
    let k1: Vec<ExprId> = odes.iter().map(|(_, d)| *d).collect();
    if method == Method::Euler {
        let h = arena.constant(dt);
        return k1.iter().map(|k| arena.mul(h, *k)).collect();
    }
    // Rk4 (the lowering refuses other methods for model classes).
    let k2 = stage(arena, odes, &k1, dt / 2.0);
    let k3 = stage(arena, odes, &k2, dt / 2.0);
    let k4 = stage(arena, odes, &k3, dt);
    crate::integrators::rk4_increments(arena, [&k1, &k2, &k3, &k4], dt)
}

/// The derivatives at `y + h k`.
fn stage(arena: &mut ExprArena, odes: &[(VarId, ExprId)], k: &[ExprId], h: f64) -> Vec<ExprId> {
    let hc = arena.constant(h);
    let map: HashMap<VarId, ExprId> = odes
        .iter()
        .zip(k)
        .map(|((v, _), k)| {
            let x = arena.var(*v);
            let dk = arena.mul(hc, *k);
            (*v, arena.add(x, dk))
        })
        .collect();
    odes.iter()
        .map(|(_, d)| arena.substitute(*d, &map))
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::codegen::{generate_from_spec, Dialect};
    use crate::spec::ModelSpec;

    const OIZUMI: &str = r#"{
        "model_class": {
            "class_name": "Oizumi",
            "source": "def ode(self, input=0, f=1.):\n    \"\"\"\n    Arguments:\n        input (bool): spike indicator.\n    \"\"\"\n    self.p = self.pmax * np.exp(-self.Kpre * f)\n    self.d_N = (self.N0 - self.N) ** 2 / self.tauN0\n    self.d_g = -self.g / self.tauO\n\n    if input == 1:\n        self.NT = self.N*self.p\n        self.g += self.NT*self.q\n        self.N -= self.NT\n    else:\n        self.NT = 0\n",
            "states": [{"name": "N", "min": 0, "max": 51}, {"name": "g", "min": 0, "max": 1000}],
            "internals": ["p", "NT"],
            "params": ["N0", "q", "tauO", "tauN0", "pmax", "Kpre"]
        },
        "constants": {"N0": 51, "q": 1.07, "tauO": 10, "tauN0": 100, "pmax": 0.79, "Kpre": 0.0035, "input": 0, "f": 1},
        "method": "rk4", "dt": 0.1, "per_step": ["input"], "record": ["g"]
    }"#;

    #[test]
    fn oizumi_generates_a_kernel_that_writes_every_stored_variable() {
        let spec = ModelSpec::from_json(OIZUMI).unwrap();
        for dialect in [Dialect::Cuda, Dialect::C] {
            let k = generate_from_spec(&spec, dialect).unwrap();
            for v in ["N", "g", "p", "NT"] {
                assert!(
                    k.source.contains(&format!("sf_next_{v} =")),
                    "{v} in\n{}",
                    k.source
                );
            }
            assert!(!k.source.contains("self"), "{}", k.source);
            let inputs: Vec<&str> = k.layout.inputs.iter().map(|a| a.name.as_str()).collect();
            assert_eq!(inputs, ["N", "g", "p", "NT", "input", "t0"]);
        }
    }
}
