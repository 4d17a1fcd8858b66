//! The fused group kernel: load the state once, then for every step update it, test the
//! threshold, reset, keep the refractory bookkeeping, count spikes and record traces; store once.
//!
//! The step itself is one DAG ([`crate::step`]); this module only prints it, in both dialects.
//! Only the loop around it differs: one CUDA thread per element, or, in C, a block of `SF_LANES`
//! elements whose per-step body is an `omp simd` loop so that the compiler vectorises across
//! elements (structure of arrays in registers/L1).

use std::fmt::{self, Write};

use super::dialect::Dialect;
use super::layout::{ident, layout, Arg, Layout, Role, ShapeKind};
use super::printer::{literal, prelude, storage_conversions, Printer};
use super::step_body::StepBody;
use super::writer::{render, SourceWriter};
use crate::ir::{ExprId, GroupIr, IndexOf, RefractoryIr, SymbolKind, VarId};
use crate::spec::ModelSpec;
use crate::step::{self, FastMath, StepDag};
use crate::types::ElemType;

/// The name of the generated entry point in both dialects.
pub const ENTRY: &str = "sf_neuron_run";

/// Elements per vectorised block in the C dialect.
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
    let writer = KernelWriter {
        ir,
        spec,
        dag: &dag,
        layout: &layout,
        dialect,
    };
    GeneratedKernel {
        source: render(|w| writer.write(w)),
        entry: ENTRY,
        layout,
    }
}

/// Prints one group's [`StepDag`] inside the kernel's loops.
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

    /// The type of a per-element value inside the kernel (lane arrays, registers): reals in the
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

    /// How a per-element value is indexed inside the step: a register (CUDA) or a lane of the
    /// block (C).
    fn lane(&self) -> &'static str {
        match self.dialect {
            Dialect::Cuda => "",
            Dialect::C => "[sf_l]",
        }
    }

    /// How a DAG variable is spelled inside the step.
    fn var_name(&self, v: VarId) -> String {
        let sym = self.ir.symbol(v);
        let lane = self.lane();
        match sym.kind {
            // A condition keeps it as per-element state; a duration recomputes it every step.
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
            | SymbolKind::Count(IndexOf::Pre | IndexOf::Post)
            | SymbolKind::Neighbour(..) => {
                unreachable!(
                    "only synapse groups have pre/post indices, and no front end builds one"
                )
            }
        }
    }

    /// Writes expression blocks of the step DAG with this kernel's spelling of its variables.
    fn print_block(
        &self,
        roots: &[ExprId],
        temp_prefix: &str,
        w: &mut SourceWriter,
    ) -> Result<Vec<String>, fmt::Error> {
        let names = |v: VarId| self.var_name(v);
        Printer {
            arena: &self.dag.arena,
            dtype: self.spec.dtype,
            dialect: self.dialect,
            var_name: &names,
        }
        .block(roots, temp_prefix, w)
    }

    fn write(&self, w: &mut SourceWriter) -> fmt::Result {
        let method = match self.ir.substeps {
            1 => self.ir.method.name().to_string(),
            k => format!("{}, {k} sub-steps", self.ir.method.name()),
        };
        writeln!(
            w,
            "/* Generated by spikeforge {} for a {} neuron model ({method}, dt = {}). */",
            env!("CARGO_PKG_VERSION"),
            self.spec.dtype.name(),
            self.spec.dt
        )?;
        match self.dialect {
            Dialect::Cuda => w.write_str(
                &self
                    .dialect
                    .integer_typedefs(&["int32_t", "int64_t", "uint16_t", "uint32_t", "uint64_t"]),
            )?,
            Dialect::C => {
                w.write_str("#include <math.h>\n#include <stdbool.h>\n#include <stdint.h>\n")?;
                writeln!(w, "#define SF_LANES {C_LANES}")?;
            }
        }
        w.write_str(&prelude(self.dialect, self.spec.dtype))?;
        if !self.ir.noise.is_empty() {
            w.write_str(&super::random::normal_source(self.dialect))?;
        }
        if let Some(storage) = self.spec.storage {
            w.write_str(&storage_conversions(self.dialect, storage))?;
        }
        writeln!(w)?;
        match self.dialect {
            Dialect::Cuda => self.write_cuda(w),
            Dialect::C => self.write_c(w),
        }
    }

    /// The body of one step for one element, in terms of `var_name`; assigns the new values.
    fn step_body(&self, w: &mut SourceWriter) -> fmt::Result {
        let names = |v: VarId| self.var_name(v);
        let next = |v: VarId| format!("sf_next_{}", ident(&self.ir.symbol(v).name));
        StepBody {
            ir: self.ir,
            dag: self.dag,
            dt: self.spec.dt,
            dtype: self.spec.dtype,
            dialect: self.dialect,
            var_name: &names,
            next_name: &next,
            lane: self.lane(),
            noise_element: match self.dialect {
                Dialect::Cuda => "(uint32_t) sf_j",
                Dialect::C => "(uint32_t) (sf_j0 + sf_l)",
            },
        }
        .write(w)
    }

    /// Writes the trace values of the current step; `store(trace, value)` gives the statement.
    fn record(&self, w: &mut SourceWriter, store: impl Fn(&Arg, &str) -> String) -> fmt::Result {
        let texts = self.print_block(&self.dag.traces, "sf_rec", w)?;
        for (trace, text) in self.traces().into_iter().zip(&texts) {
            writeln!(w, "{}", store(trace, text))?;
        }
        Ok(())
    }

    fn params(&self) -> Vec<String> {
        let d = self.dialect;
        let inputs = (self.layout.inputs.iter())
            .map(|a| d.pointer_param(a.elem, &format!("in_{}", a.ident), false));
        let outputs = (self.layout.outputs.iter())
            .map(|a| d.pointer_param(a.elem, &format!("out_{}", a.ident), true));
        inputs.chain(outputs).collect()
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

    fn per_step_inputs(&self) -> impl Iterator<Item = &Arg> {
        self.layout
            .inputs
            .iter()
            .filter(|a| a.role == Role::PerStep)
    }

    /// The time of the step, once the step counter `sf_t_step` is known.
    fn time(&self, w: &mut SourceWriter) -> fmt::Result {
        let real = self.real();
        writeln!(
            w,
            "const {real} sf_t = ({real}) sf_t_step * {};",
            literal(self.spec.dt, self.spec.dtype)
        )
    }

    fn write_cuda(&self, w: &mut SourceWriter) -> fmt::Result {
        writeln!(
            w,
            "extern \"C\" __global__ void {ENTRY}(\n    const int64_t sf_n, const int64_t sf_n_inner, const int32_t sf_steps,\n    const int32_t sf_rec_every, const int32_t sf_n_rec,\n    {})\n{{",
            self.params().join(",\n    ")
        )?;
        w.indented(|w| {
            w.write_str("const int64_t sf_i = (int64_t) blockIdx.x * blockDim.x + threadIdx.x;\n")?;
            w.write_str("if (sf_i >= sf_n) return;\n")?;
            w.write_str("const int64_t sf_b = sf_i / sf_n_inner;\nconst int64_t sf_j = sf_i - sf_b * sf_n_inner;\n")?;
            for a in &self.layout.inputs {
                match a.role {
                    Role::PerStep => writeln!(
                        w,
                        "const {}* __restrict__ sf_step_{1} = in_{1} + sf_b * (int64_t) sf_steps * sf_n_inner + sf_j;",
                        a.elem.c_type(),
                        a.ident
                    )?,
                    Role::StartStep => w.write_str("const int32_t sf_t0 = in_sf_t0[sf_b];\n")?,
                    Role::Seed => w.write_str("const int32_t sf_seed = in_sf_rng_seed[sf_b];\n")?,
                    _ => {
                        let konst = if self.is_written(a) { "" } else { "const " };
                        let index = if a.shape == ShapeKind::Batch {
                            "sf_b"
                        } else {
                            "sf_i"
                        };
                        writeln!(
                            w,
                            "{konst}{} {} = {};",
                            self.local_type(a.elem),
                            a.ident,
                            self.load(a, &format!("in_{}[{index}]", a.ident))
                        )?;
                    }
                }
            }
            for t in self.traces() {
                writeln!(
                    w,
                    "{}* sf_rec_{1} = out_{1} + sf_b * (int64_t) sf_n_rec * sf_n_inner + sf_j;",
                    t.elem.c_type(),
                    t.ident,
                )?;
            }
            w.write_str("int32_t sf_spike_count = 0;\nint32_t sf_rec_countdown = 0;\n")?;
            // Unrolling amortises the loop's own counter, compare and branch over several steps.
            w.write_str("#pragma unroll 4\n")?;
            w.block("for (int32_t sf_s = 0; sf_s < sf_steps; ++sf_s)", |w| {
                w.write_str("const int32_t sf_t_step = sf_t0 + sf_s;\n")?;
                self.time(w)?;
                for a in self.per_step_inputs() {
                    writeln!(
                        w,
                        "const {} {} = {};",
                        self.real(),
                        a.ident,
                        self.load(a, &format!("sf_step_{}[(int64_t) sf_s * sf_n_inner]", a.ident))
                    )?;
                }
                if !self.traces().is_empty() {
                    w.block("if (sf_rec_countdown == 0)", |w| {
                        self.record(w, |trace, value| {
                            format!(
                                "*sf_rec_{0} = {1}; sf_rec_{0} += sf_n_inner;",
                                trace.ident,
                                self.store(trace, value)
                            )
                        })?;
                        w.write_str("sf_rec_countdown = sf_rec_every;\n")
                    })?;
                    w.write_str("--sf_rec_countdown;\n")?;
                }
                self.step_body(w)
            })?;
            for a in self.layout.outputs.iter().filter(|a| a.role != Role::Trace) {
                writeln!(w, "out_{}[sf_i] = {};", a.ident, self.store(a, &a.ident))?;
            }
            Ok(())
        })?;
        w.write_str("}\n")
    }

    fn write_c(&self, w: &mut SourceWriter) -> fmt::Result {
        writeln!(
            w,
            "/* Runs neurons [sf_start, sf_end); dims = {{n_inner, steps, rec_every, n_rec}}. */\nvoid {ENTRY}(int64_t sf_start, int64_t sf_end, const int64_t* sf_dims, void* const* sf_in, void* const* sf_out)\n{{"
        )?;
        w.indented(|w| {
            w.write_str("const int64_t sf_n_inner = sf_dims[0], sf_steps = sf_dims[1], sf_rec_every = sf_dims[2], sf_n_rec = sf_dims[3];\n")?;
            for (k, a) in self.layout.inputs.iter().enumerate() {
                let t = a.elem.c_type();
                writeln!(w, "const {t}* restrict in_{} = (const {t}*) sf_in[{k}];", a.ident)?;
            }
            for (k, a) in self.layout.outputs.iter().enumerate() {
                let t = a.elem.c_type();
                writeln!(w, "{t}* restrict out_{} = ({t}*) sf_out[{k}];", a.ident)?;
            }
            w.block("for (int64_t sf_c0 = sf_start; sf_c0 < sf_end;)", |w| {
                self.c_block(w)
            })
        })?;
        w.write_str("}\n")
    }

    /// One block of `SF_LANES` elements: load them into lane arrays, run every step, store.
    fn c_block(&self, w: &mut SourceWriter) -> fmt::Result {
        w.write_str(
            "const int64_t sf_b = sf_c0 / sf_n_inner, sf_j0 = sf_c0 - sf_b * sf_n_inner;\n",
        )?;
        w.write_str("int64_t sf_w = sf_end - sf_c0;\nif (sf_w > SF_LANES) sf_w = SF_LANES;\nif (sf_w > sf_n_inner - sf_j0) sf_w = sf_n_inner - sf_j0;\n")?;
        // Lane arrays: every per-element value of the block. Lanes past sf_w repeat lane 0 so
        // that the vector loop always runs full width on finite values.
        for a in self
            .layout
            .inputs
            .iter()
            .filter(|a| !matches!(a.role, Role::StartStep | Role::Seed))
        {
            writeln!(w, "{} {}[SF_LANES];", self.local_type(a.elem), a.ident)?;
        }
        w.write_str("int32_t sf_spike_count[SF_LANES];\n")?;
        w.block("for (int sf_l = 0; sf_l < SF_LANES; ++sf_l)", |w| {
            w.write_str("const int64_t sf_k = sf_c0 + (sf_l < sf_w ? sf_l : 0);\n")?;
            for a in &self.layout.inputs {
                match a.role {
                    Role::StartStep | Role::Seed => {}
                    Role::PerStep => writeln!(w, "{}[sf_l] = 0;", a.ident)?,
                    _ => {
                        // Blocks never straddle batch members, so a shared value is one per
                        // block.
                        let index = if a.shape == ShapeKind::Batch {
                            "sf_b"
                        } else {
                            "sf_k"
                        };
                        let value = self.load(a, &format!("in_{}[{index}]", a.ident));
                        writeln!(w, "{}[sf_l] = {value};", a.ident)?;
                    }
                }
            }
            w.write_str("sf_spike_count[sf_l] = 0;\n")
        })?;
        w.write_str("const int32_t sf_t0 = in_sf_t0[sf_b];\n")?;
        if !self.ir.noise.is_empty() {
            w.write_str("const int32_t sf_seed = in_sf_rng_seed[sf_b];\n")?;
        }
        w.block("for (int64_t sf_s = 0; sf_s < sf_steps; ++sf_s)", |w| {
            w.write_str("const int32_t sf_t_step = sf_t0 + (int32_t) sf_s;\n")?;
            self.time(w)?;
            for a in self.per_step_inputs() {
                writeln!(
                    w,
                    "const {}* sf_row_{1} = in_{1} + (sf_b * sf_steps + sf_s) * sf_n_inner + sf_j0;\nfor (int sf_l = 0; sf_l < sf_w; ++sf_l) {1}[sf_l] = {2};",
                    a.elem.c_type(),
                    a.ident,
                    self.load(a, &format!("sf_row_{}[sf_l]", a.ident))
                )?;
            }
            if !self.traces().is_empty() {
                w.block("if (sf_s % sf_rec_every == 0)", |w| {
                    w.write_str("const int64_t sf_r = sf_s / sf_rec_every;\n")?;
                    w.block("for (int sf_l = 0; sf_l < sf_w; ++sf_l)", |w| {
                        self.record(w, |trace, value| {
                            format!(
                                "out_{}[(sf_b * sf_n_rec + sf_r) * sf_n_inner + sf_j0 + sf_l] = {};",
                                trace.ident,
                                self.store(trace, value)
                            )
                        })
                    })
                })?;
            }
            w.write_str("#pragma omp simd\n")?;
            w.block("for (int sf_l = 0; sf_l < SF_LANES; ++sf_l)", |w| {
                self.step_body(w)
            })
        })?;
        w.block("for (int sf_l = 0; sf_l < sf_w; ++sf_l)", |w| {
            for a in self.layout.outputs.iter().filter(|a| a.role != Role::Trace) {
                let value = self.store(a, &format!("{}[sf_l]", a.ident));
                writeln!(w, "out_{}[sf_c0 + sf_l] = {value};", a.ident)?;
            }
            Ok(())
        })?;
        w.write_str("sf_c0 += sf_w;\n")
    }
}

#[cfg(test)]
mod tests {
    use crate::codegen::{generate_from_spec, Dialect};

    /// A model class's kernel writes every stored variable (states and internals).
    #[test]
    fn oizumi_generates_a_kernel_that_writes_every_stored_variable() {
        let spec = crate::spec::seed000_oizumi();
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
            assert_eq!(inputs, ["N", "g", "p", "NT", "f", "input", "t0"]);
        }
    }
}
