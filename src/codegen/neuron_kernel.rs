//! The fused neuron kernel: load the state once, then for every step integrate, test the
//! threshold, reset, keep the refractory bookkeeping, count spikes and record traces; store once.
//!
//! The step itself is one DAG (integration, threshold and reset composed by substitution), built
//! once and printed by both dialects. Only the loop around it differs: one CUDA thread per neuron,
//! or, in C, a block of `SF_LANES` neurons whose per-step body is an `omp simd` loop so that the
//! compiler vectorises across neurons (structure of arrays in registers/L1).

use std::fmt::Write;

use super::layout::{ident, layout, Arg, Layout, Role, ShapeKind};
use super::printer::{literal, prelude, Dialect, Printer};
use crate::ir::{ExprId, GroupIr, IndexOf, RefractoryIr, SymbolKind, VarId};
use crate::spec::ModelSpec;
use crate::step::{self, FastMath, StepDag};
use crate::types::ElemType;

/// The name of the generated entry point in both dialects.
pub const ENTRY: &str = "sf_neuron_run";

/// Neurons per vectorised block in the C dialect.
pub const C_LANES: usize = 16;

/// A generated kernel: its source, entry point and argument layout.
#[derive(Clone, Debug)]
pub struct GeneratedKernel {
    pub source: String,
    pub entry: &'static str,
    pub layout: Layout,
}

pub fn generate(ir: &GroupIr, spec: &ModelSpec, dialect: Dialect) -> GeneratedKernel {
    let fast_math = match (spec.fast_math, dialect) {
        (false, _) => FastMath::Off,
        (true, dialect) => FastMath::On {
            exp2: dialect == Dialect::Cuda,
        },
    };
    let dag = step::build(ir, &spec.record, fast_math);
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
            return Some(step::timestep(c, self.spec.dt).to_string());
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

    /// A model class's kernel writes every stored variable (states and internals).
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
