//! The fused neuron kernel: load the state once, then for every step integrate, test the
//! threshold, reset, keep the refractory bookkeeping, count spikes and record traces; store once.
//!
//! The step itself is one DAG (integration, threshold and reset composed by substitution), built
//! once and printed by both dialects. Only the loop around it differs: one CUDA thread per neuron,
//! or, in C, a block of `SF_LANES` neurons whose per-step body is an `omp simd` loop so that the
//! compiler vectorises across neurons (structure of arrays in registers/L1).

use std::collections::HashMap;
use std::fmt::Write;

use super::layout::{ident, layout, Arg, Layout, Role, ShapeKind};
use super::printer::{literal, prelude, Dialect, Printer};
use crate::integrators::{self, Ode};
use crate::ir::{
    Dynamics, ExprArena, ExprId, GroupIr, IndexOf, RefractoryIr, StateEq, SymbolKind, VarId,
};
use crate::spec::ModelSpec;
use crate::types::ElemType;

/// The name of the generated entry point in both dialects.
pub const ENTRY: &str = "sf_neuron_run";

/// Neurons per vectorised block in the C dialect.
pub const C_LANES: usize = 16;

/// One time step as a DAG over the current values of the model's variables.
pub struct StepDag {
    pub arena: ExprArena,
    /// The value of each stored variable at the end of the step (after reset), in the order of
    /// `ir.stored()`.
    pub next_state: Vec<ExprId>,
    /// Parameters written by the reset, and their value at the end of the step.
    pub next_params: Vec<(VarId, ExprId)>,
    /// Whether the neuron spiked during the step.
    pub spike: Option<ExprId>,
    /// Refractoriness, evaluated at the start of the step from the current values.
    pub refractory: RefractoryIr,
    /// Traces: the value of each recorded variable at the start of the step.
    pub traces: Vec<ExprId>,
}

pub fn step_dag(ir: &GroupIr, spec: &ModelSpec, dialect: Dialect) -> StepDag {
    let states: &[StateEq] = match &ir.dynamics {
        Dynamics::Updates(updates) => {
            return super::python_step::step_dag(ir, updates, spec, dialect)
        }
        Dynamics::Odes(states) => states,
    };
    let mut arena = ir.arena.clone();
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
    let single_stage = matches!(
        method,
        crate::spec::Method::Euler | crate::spec::Method::ExponentialEuler
    ) && spec.substeps <= 1;
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
    let integrate = |arena: &mut ExprArena, odes: &[Ode]| {
        let problem = integrators::Problem { odes, time, switch };
        integrators::integrate(arena, &problem, method, ir.dt, ir.substeps)
            .unwrap_or_else(|e| panic!("{method:?} was checked to apply: {e:?}"))
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
            let active = case(&mut arena, false);
            let held = case(&mut arena, true);
            let on = integrate(&mut arena, &active);
            let off = integrate(&mut arena, &held);
            on.iter()
                .zip(&off)
                .map(|(a, b)| arena.select(nr, *a, *b))
                .collect()
        }
        _ => integrate(&mut arena, &odes),
    };
    let sqrt_dt = arena.constant(spec.dt.sqrt());
    let stochastic_heun = !ir.noise.is_empty() && method == crate::spec::Method::Heun;
    if stochastic_heun {
        // Stratonovich Heun (Brian2's `heun` for multiplicative noise), with D = sum_k g_k xi_k:
        // x* = x + f dt + D sqrt(dt);  x' = x + (f + f*) dt/2 + (D + D*) sqrt(dt)/2, where f*, D*
        // are evaluated at x* with the same normals.
        let dt = arena.constant(spec.dt);
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
        let half_dt = arena.constant(spec.dt / 2.0);
        let half_sqrt_dt = arena.constant(spec.dt.sqrt() / 2.0);
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
    let after_step: HashMap<VarId, ExprId> = odes
        .iter()
        .zip(&integrated)
        .map(|(o, x)| (o.var, *x))
        .collect();

    let spike = ir.events.threshold.map(|thr| {
        let crossed = arena.substitute(thr, &after_step);
        match (has_refractory, not_ref) {
            (true, Some(nr)) => arena.bin(crate::ir::BinOp::And, crossed, nr),
            _ => crossed,
        }
    });
    // Reset statements run in order, each seeing the values the previous ones left.
    let mut env = after_step.clone();
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
    let pick = |arena: &mut ExprArena, var: VarId, otherwise: ExprId| match spike {
        Some(s) if env.get(&var).is_some_and(|r| *r != otherwise) => {
            arena.select(s, env[&var], otherwise)
        }
        _ => otherwise,
    };
    let next_state: Vec<ExprId> = odes
        .iter()
        .zip(&integrated)
        .map(|(o, x)| pick(&mut arena, o.var, *x))
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
    let (next_state, next_params, spike) = if spec.fast_math {
        let mut roots = next_state.clone();
        roots.extend(next_params.iter().map(|(_, e)| *e));
        roots.extend(spike);
        let shared = arena.share_exponentials(&roots, dialect == Dialect::Cuda);
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
    let traces = spec
        .record
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
        next_params,
        spike,
        refractory: ir.events.refractory.clone(),
        traces,
    }
}

/// Brian2's `timestep(duration, dt)`: the number of whole steps, robust to rounding of `duration`.
pub fn timestep(duration: f64, dt: f64) -> i64 {
    ((duration + 1e-3 * dt) / dt).floor() as i64
}

/// A generated kernel: its source, entry point and argument layout.
#[derive(Clone, Debug)]
pub struct GeneratedKernel {
    pub source: String,
    pub entry: &'static str,
    pub layout: Layout,
}

pub fn generate(ir: &GroupIr, spec: &ModelSpec, dialect: Dialect) -> GeneratedKernel {
    let dag = step_dag(ir, spec, dialect);
    let layout = layout(ir, spec);
    let source = KernelWriter {
        ir,
        spec,
        dag: &dag,
        layout: &layout,
        dialect,
    }
    .write();
    GeneratedKernel {
        source,
        entry: ENTRY,
        layout,
    }
}

struct KernelWriter<'a> {
    ir: &'a GroupIr,
    spec: &'a ModelSpec,
    dag: &'a StepDag,
    layout: &'a Layout,
    dialect: Dialect,
}

impl KernelWriter<'_> {
    fn real(&self) -> &'static str {
        self.spec.dtype.c_type()
    }

    /// The type of a per-neuron value inside the kernel (lane arrays, registers): reals in the
    /// model's precision, truth values in the dialect's vectorisable boolean type.
    fn local_type(&self, e: ElemType) -> &'static str {
        match e {
            ElemType::Bool => self.dialect.bool_type(),
            e if e.is_float() => self.real(),
            e => e.c_type(),
        }
    }

    /// A buffer element read as a kernel value (converted from the storage type).
    fn load(&self, a: &Arg, element: &str) -> String {
        if ElemType::STORAGES.contains(&a.elem) {
            format!("sf_load({element})")
        } else {
            element.to_string()
        }
    }

    /// A kernel value written to a buffer element of `a` (converted to the storage type).
    fn store(&self, a: &Arg, value: &str) -> String {
        if ElemType::STORAGES.contains(&a.elem) {
            format!("sf_store({value})")
        } else {
            value.to_string()
        }
    }

    /// How a DAG variable is spelled inside the step: a register (CUDA) or a lane of a block (C).
    fn var_name(&self, v: VarId) -> String {
        let sym = self.ir.symbol(v);
        let lane = if self.dialect == Dialect::C {
            "[sf_l]"
        } else {
            ""
        };
        match sym.kind {
            // A condition keeps it as per-neuron state; a duration recomputes it every step.
            SymbolKind::NotRefractory => match self.dag.refractory {
                RefractoryIr::Condition(_) => format!("sf_not_refractory{lane}"),
                _ => "sf_not_refractory".into(),
            },
            SymbolKind::Time => "sf_t".into(),
            SymbolKind::Index(IndexOf::Element) => match self.dialect {
                Dialect::Cuda => format!("(({}) sf_j)", self.real()),
                Dialect::C => format!("(({}) (sf_j0 + sf_l))", self.real()),
            },
            SymbolKind::Count(IndexOf::Element) => format!("(({}) sf_n_inner)", self.real()),
            SymbolKind::LastSpike => format!(
                "(({}) sf_lastspike_step{lane} * {})",
                self.real(),
                literal(self.spec.dt, self.spec.dtype)
            ),
            // Held values and the step's normals are per-step locals (scalars in both dialects).
            SymbolKind::HeldSubexpression => ident(&sym.name),
            SymbolKind::Noise => format!("sf_{}", ident(&sym.name)),
            SymbolKind::State
            | SymbolKind::Param
            | SymbolKind::PerNeuronConstant
            | SymbolKind::PerStep => format!("{}{lane}", ident(&sym.name)),
            SymbolKind::Index(IndexOf::Pre | IndexOf::Post)
            | SymbolKind::Count(IndexOf::Pre | IndexOf::Post) => {
                unreachable!(
                    "only synapse groups have pre/post indices, and no front end builds one"
                )
            }
        }
    }

    fn write(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "/* Generated by spikeforge {} for a {} neuron model ({}, dt = {}). */",
            env!("CARGO_PKG_VERSION"),
            self.spec.dtype.name(),
            {
                let m = self.ir.method.name();
                match self.ir.substeps {
                    1 => m.to_string(),
                    k => format!("{m}, {k} sub-steps"),
                }
            },
            self.spec.dt
        );
        match self.dialect {
            Dialect::Cuda => {
                s.push_str("typedef int int32_t;\ntypedef long long int64_t;\ntypedef unsigned short uint16_t;\ntypedef unsigned int uint32_t;\ntypedef unsigned long long uint64_t;\n");
            }
            Dialect::C => {
                s.push_str("#include <math.h>\n#include <stdbool.h>\n#include <stdint.h>\n");
                let _ = writeln!(s, "#define SF_LANES {C_LANES}");
            }
        }
        s.push_str(&prelude(self.dialect, self.spec.dtype));
        if !self.ir.noise.is_empty() {
            s.push_str(&super::random::normal_source(self.dialect));
        }
        if let Some(storage) = self.spec.storage {
            s.push_str(&super::printer::storage_conversions(self.dialect, storage));
        }
        s.push('\n');
        match self.dialect {
            Dialect::Cuda => self.write_cuda(&mut s),
            Dialect::C => self.write_c(&mut s),
        }
        s
    }

    fn refractory_steps(&self, indent: &str, out: &mut String) -> Option<String> {
        let RefractoryIr::Duration(d) = self.dag.refractory else {
            return None;
        };
        if let Some(c) = self.dag.arena.as_const(d) {
            return Some(timestep(c, self.spec.dt).to_string());
        }
        let names = |v: VarId| self.var_name(v);
        let p = Printer {
            arena: &self.dag.arena,
            dtype: self.spec.dtype,
            dialect: self.dialect,
            var_name: &names,
        };
        let e = p.block(&[d], "sf_r", indent, out).remove(0);
        let dt = literal(self.spec.dt, self.spec.dtype);
        let floor = super::printer::math_fn("floor", self.spec.dtype);
        Some(format!(
            "(int32_t) {floor}(({e} + {dt} * {}) / {dt})",
            literal(1e-3, self.spec.dtype)
        ))
    }

    /// The body of one step for one neuron, in terms of `var_name`; assigns the new values.
    fn step_body(&self, indent: &str, out: &mut String) {
        let lane = if self.dialect == Dialect::C {
            "[sf_l]"
        } else {
            ""
        };
        let names = |v: VarId| self.var_name(v);
        let p = Printer {
            arena: &self.dag.arena,
            dtype: self.spec.dtype,
            dialect: self.dialect,
            var_name: &names,
        };
        // One standard normal per noise symbol, from the counter-based stream (seed, neuron, step).
        for (k, v) in self.ir.noise.iter().enumerate() {
            let j = match self.dialect {
                Dialect::Cuda => "(uint32_t) sf_j",
                Dialect::C => "(uint32_t) (sf_j0 + sf_l)",
            };
            let _ = writeln!(
                out,
                "{indent}const {} sf_{} = ({}) sf_normal((uint32_t) sf_seed, {j}, (uint32_t) sf_t_step, {k}u);",
                self.real(),
                ident(&self.ir.symbol(*v).name),
                self.real()
            );
        }
        // `constant over dt` subexpressions: computed once from the values at the step's start.
        for (v, e) in &self.ir.held {
            let text = p.block(&[*e], &format!("sf_h{v}_"), indent, out).remove(0);
            let _ = writeln!(
                out,
                "{indent}const {} {} = {text};",
                self.real(),
                ident(&self.ir.symbol(*v).name)
            );
        }
        // Refractoriness first: it is decided by the values at the start of the step.
        match self.dag.refractory {
            RefractoryIr::None => {}
            RefractoryIr::Duration(_) => {
                let steps = self.refractory_steps(indent, out).unwrap();
                let _ = writeln!(
                    out,
                    "{indent}const {b} sf_not_refractory = sf_lastspike_step{lane} <= sf_t_step - ({steps});",
                    b = self.dialect.bool_type()
                );
            }
            RefractoryIr::Condition(c) => {
                let cond = p.block(&[c], "sf_c", indent, out).remove(0);
                let _ = writeln!(
                    out,
                    "{indent}sf_not_refractory{lane} = sf_not_refractory{lane} {or} !({cond});",
                    or = if self.dialect == Dialect::C {
                        "|"
                    } else {
                        "||"
                    }
                );
            }
        }
        let mut roots: Vec<ExprId> = self.dag.next_state.clone();
        roots.extend(self.dag.next_params.iter().map(|(_, e)| *e));
        roots.extend(self.dag.spike);
        let texts = p.block(&roots, "sf_", indent, out);
        let real = self.real();
        let n_state = self.dag.next_state.len();
        let mut assigned = Vec::new();
        for (k, var) in self.ir.stored().into_iter().enumerate() {
            let _ = writeln!(
                out,
                "{indent}const {real} sf_next_{} = {};",
                ident(&self.ir.symbol(var).name),
                texts[k]
            );
            assigned.push(var);
        }
        for (k, (v, _)) in self.dag.next_params.iter().enumerate() {
            let _ = writeln!(
                out,
                "{indent}const {real} sf_next_{} = {};",
                ident(&self.ir.symbol(*v).name),
                texts[n_state + k]
            );
            assigned.push(*v);
        }
        if self.dag.spike.is_some() {
            let _ = writeln!(
                out,
                "{indent}const {} sf_spike = {};",
                self.dialect.bool_type(),
                texts.last().unwrap()
            );
        }
        for v in assigned {
            let id = ident(&self.ir.symbol(v).name);
            let _ = writeln!(out, "{indent}{id}{lane} = sf_next_{id};");
        }
        if self.dag.spike.is_some() {
            match self.dag.refractory {
                RefractoryIr::Duration(_) => {
                    let _ = writeln!(
                        out,
                        "{indent}sf_lastspike_step{lane} = sf_spike ? sf_t_step : sf_lastspike_step{lane};"
                    );
                }
                RefractoryIr::Condition(_) => {
                    let and = if self.dialect == Dialect::C {
                        "&"
                    } else {
                        "&&"
                    };
                    let _ = writeln!(out, "{indent}sf_not_refractory{lane} = sf_not_refractory{lane} {and} !sf_spike;");
                }
                RefractoryIr::None => {}
            }
            let _ = writeln!(out, "{indent}sf_spike_count{lane} += sf_spike ? 1 : 0;");
        }
    }

    /// Writes the trace values of the current step; `store(k, value)` gives the statement.
    fn record(&self, indent: &str, out: &mut String, store: &dyn Fn(usize, &str) -> String) {
        let names = |v: VarId| self.var_name(v);
        let p = Printer {
            arena: &self.dag.arena,
            dtype: self.spec.dtype,
            dialect: self.dialect,
            var_name: &names,
        };
        let texts = p.block(&self.dag.traces, "sf_rec", indent, out);
        for (k, t) in texts.iter().enumerate() {
            let _ = writeln!(out, "{indent}{}", store(k, t));
        }
    }

    fn params(&self, restrict: &str) -> Vec<String> {
        let mut params = Vec::new();
        for a in &self.layout.inputs {
            params.push(format!(
                "const {}* {restrict} in_{}",
                a.elem.c_type(),
                a.ident
            ));
        }
        for a in &self.layout.outputs {
            params.push(format!("{}* {restrict} out_{}", a.elem.c_type(), a.ident));
        }
        params
    }

    fn is_written(&self, a: &Arg) -> bool {
        self.layout.outputs.iter().any(|o| o.ident == a.ident)
    }

    fn traces(&self) -> Vec<&Arg> {
        self.layout
            .outputs
            .iter()
            .filter(|a| a.role == Role::Trace)
            .collect()
    }

    fn write_cuda(&self, s: &mut String) {
        let real = self.real();
        let params = self.params("__restrict__");
        let _ = writeln!(
            s,
            "extern \"C\" __global__ void {ENTRY}(\n    const int64_t sf_n, const int64_t sf_n_inner, const int32_t sf_steps,\n    const int32_t sf_rec_every, const int32_t sf_n_rec,\n    {})\n{{",
            params.join(",\n    ")
        );
        s.push_str("    const int64_t sf_i = (int64_t) blockIdx.x * blockDim.x + threadIdx.x;\n");
        s.push_str("    if (sf_i >= sf_n) return;\n");
        s.push_str("    const int64_t sf_b = sf_i / sf_n_inner;\n    const int64_t sf_j = sf_i - sf_b * sf_n_inner;\n");
        for a in &self.layout.inputs {
            match a.role {
                Role::PerStep => {
                    let _ = writeln!(
                        s,
                        "    const {}* __restrict__ sf_step_{1} = in_{1} + sf_b * (int64_t) sf_steps * sf_n_inner + sf_j;",
                        a.elem.c_type(),
                        a.ident
                    );
                }
                Role::StartStep => {
                    s.push_str("    const int32_t sf_t0 = in_sf_t0[sf_b];\n");
                }
                Role::Seed => {
                    s.push_str("    const int32_t sf_seed = in_sf_rng_seed[sf_b];\n");
                }
                _ => {
                    let konst = if self.is_written(a) { "" } else { "const " };
                    let index = if a.shape == ShapeKind::Batch {
                        "sf_b"
                    } else {
                        "sf_i"
                    };
                    let _ = writeln!(
                        s,
                        "    {konst}{} {} = {};",
                        self.local_type(a.elem),
                        a.ident,
                        self.load(a, &format!("in_{}[{index}]", a.ident))
                    );
                }
            }
        }
        for t in self.traces() {
            let _ = writeln!(
                s,
                "    {}* sf_rec_{} = out_{} + sf_b * (int64_t) sf_n_rec * sf_n_inner + sf_j;",
                t.elem.c_type(),
                t.ident,
                t.ident
            );
        }
        s.push_str("    int32_t sf_spike_count = 0;\n    int32_t sf_rec_countdown = 0;\n");
        // Unrolling amortises the loop's own counter, compare and branch over several steps.
        s.push_str("    #pragma unroll 4\n    for (int32_t sf_s = 0; sf_s < sf_steps; ++sf_s) {\n");
        s.push_str("        const int32_t sf_t_step = sf_t0 + sf_s;\n");
        let _ = writeln!(
            s,
            "        const {real} sf_t = ({real}) sf_t_step * {};",
            literal(self.spec.dt, self.spec.dtype)
        );
        for a in self
            .layout
            .inputs
            .iter()
            .filter(|a| a.role == Role::PerStep)
        {
            let _ = writeln!(
                s,
                "        const {real} {} = {};",
                a.ident,
                self.load(
                    a,
                    &format!("sf_step_{}[(int64_t) sf_s * sf_n_inner]", a.ident)
                )
            );
        }
        if !self.traces().is_empty() {
            s.push_str("        if (sf_rec_countdown == 0) {\n");
            let traces = self.traces();
            self.record("            ", s, &|k, v| {
                format!(
                    "*sf_rec_{0} = {1}; sf_rec_{0} += sf_n_inner;",
                    traces[k].ident,
                    self.store(traces[k], v)
                )
            });
            s.push_str("            sf_rec_countdown = sf_rec_every;\n        }\n        --sf_rec_countdown;\n");
        }
        let mut body = String::new();
        self.step_body("        ", &mut body);
        s.push_str(&body);
        s.push_str("    }\n");
        for a in self.layout.outputs.iter().filter(|a| a.role != Role::Trace) {
            let _ = writeln!(
                s,
                "    out_{}[sf_i] = {};",
                a.ident,
                self.store(a, &a.ident)
            );
        }
        s.push_str("}\n");
    }

    fn write_c(&self, s: &mut String) {
        let real = self.real();
        let _ = writeln!(
            s,
            "/* Runs neurons [sf_start, sf_end); dims = {{n_inner, steps, rec_every, n_rec}}. */\nvoid {ENTRY}(int64_t sf_start, int64_t sf_end, const int64_t* sf_dims, void* const* sf_in, void* const* sf_out)\n{{"
        );
        s.push_str("    const int64_t sf_n_inner = sf_dims[0], sf_steps = sf_dims[1], sf_rec_every = sf_dims[2], sf_n_rec = sf_dims[3];\n");
        for (k, a) in self.layout.inputs.iter().enumerate() {
            let t = a.elem.c_type();
            let _ = writeln!(
                s,
                "    const {t}* restrict in_{} = (const {t}*) sf_in[{k}];",
                a.ident
            );
        }
        for (k, a) in self.layout.outputs.iter().enumerate() {
            let t = a.elem.c_type();
            let _ = writeln!(s, "    {t}* restrict out_{} = ({t}*) sf_out[{k}];", a.ident);
        }
        s.push_str("    for (int64_t sf_c0 = sf_start; sf_c0 < sf_end;) {\n");
        s.push_str(
            "        const int64_t sf_b = sf_c0 / sf_n_inner, sf_j0 = sf_c0 - sf_b * sf_n_inner;\n",
        );
        s.push_str("        int64_t sf_w = sf_end - sf_c0;\n        if (sf_w > SF_LANES) sf_w = SF_LANES;\n        if (sf_w > sf_n_inner - sf_j0) sf_w = sf_n_inner - sf_j0;\n");
        // Lane arrays: every per-neuron value of the block. Lanes past sf_w repeat lane 0 so that
        // the vector loop always runs full width on finite values.
        for a in self
            .layout
            .inputs
            .iter()
            .filter(|a| !matches!(a.role, Role::StartStep | Role::Seed))
        {
            let _ = writeln!(
                s,
                "        {} {}[SF_LANES];",
                self.local_type(a.elem),
                a.ident
            );
        }
        s.push_str("        int32_t sf_spike_count[SF_LANES];\n");
        s.push_str("        for (int sf_l = 0; sf_l < SF_LANES; ++sf_l) {\n");
        s.push_str("            const int64_t sf_k = sf_c0 + (sf_l < sf_w ? sf_l : 0);\n");
        for a in self.layout.inputs.iter() {
            match a.role {
                Role::StartStep | Role::Seed => {}
                Role::PerStep => {
                    let _ = writeln!(s, "            {}[sf_l] = 0;", a.ident);
                }
                _ => {
                    // Blocks never straddle batch members, so a shared value is one per block.
                    let index = if a.shape == ShapeKind::Batch {
                        "sf_b"
                    } else {
                        "sf_k"
                    };
                    let value = self.load(a, &format!("in_{}[{index}]", a.ident));
                    let _ = writeln!(s, "            {}[sf_l] = {value};", a.ident);
                }
            }
        }
        s.push_str("            sf_spike_count[sf_l] = 0;\n        }\n");
        s.push_str("        const int32_t sf_t0 = in_sf_t0[sf_b];\n");
        if !self.ir.noise.is_empty() {
            s.push_str("        const int32_t sf_seed = in_sf_rng_seed[sf_b];\n");
        }
        s.push_str("        for (int64_t sf_s = 0; sf_s < sf_steps; ++sf_s) {\n");
        s.push_str("            const int32_t sf_t_step = sf_t0 + (int32_t) sf_s;\n");
        let _ = writeln!(
            s,
            "            const {real} sf_t = ({real}) sf_t_step * {};",
            literal(self.spec.dt, self.spec.dtype)
        );
        for a in self
            .layout
            .inputs
            .iter()
            .filter(|a| a.role == Role::PerStep)
        {
            let _ = writeln!(
                s,
                "            const {}* sf_row_{1} = in_{1} + (sf_b * sf_steps + sf_s) * sf_n_inner + sf_j0;\n            for (int sf_l = 0; sf_l < sf_w; ++sf_l) {1}[sf_l] = {2};",
                a.elem.c_type(),
                a.ident,
                self.load(a, &format!("sf_row_{}[sf_l]", a.ident))
            );
        }
        let traces = self.traces();
        if !traces.is_empty() {
            s.push_str("            if (sf_s % sf_rec_every == 0) {\n");
            s.push_str("                const int64_t sf_r = sf_s / sf_rec_every;\n");
            s.push_str("                for (int sf_l = 0; sf_l < sf_w; ++sf_l) {\n");
            self.record("                    ", s, &|k, v| {
                format!(
                    "out_{}[(sf_b * sf_n_rec + sf_r) * sf_n_inner + sf_j0 + sf_l] = {};",
                    traces[k].ident,
                    self.store(traces[k], v)
                )
            });
            s.push_str("                }\n            }\n");
        }
        s.push_str("            #pragma omp simd\n");
        s.push_str("            for (int sf_l = 0; sf_l < SF_LANES; ++sf_l) {\n");
        let mut body = String::new();
        self.step_body("                ", &mut body);
        s.push_str(&body);
        s.push_str("            }\n        }\n");
        s.push_str("        for (int sf_l = 0; sf_l < sf_w; ++sf_l) {\n");
        for a in self.layout.outputs.iter().filter(|a| a.role != Role::Trace) {
            let value = self.store(a, &format!("{}[sf_l]", a.ident));
            let _ = writeln!(s, "            out_{}[sf_c0 + sf_l] = {value};", a.ident);
        }
        s.push_str("        }\n        sf_c0 += sf_w;\n    }\n}\n");
    }
}
