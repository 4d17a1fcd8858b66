//! The fused group kernel: load the state once, then for every step update it, test the
//! threshold, reset, keep the refractory bookkeeping, count spikes and record traces; store once.
//!
//! The step itself is one DAG ([`crate::step`]); this module only prints it, in both dialects.
//! Only the loop around it differs: one CUDA thread per element, or, in C, a block of `SF_LANES`
//! elements whose per-step body is an `omp simd` loop so that the compiler vectorises across
//! elements (structure of arrays in registers/L1).

use std::fmt::{self, Write};

use super::clock::{clock_source, NEVER};
use super::dialect::Dialect;
use super::identifiers::ident;
use super::layout::{layout, Arg, Layout, Role, ShapeKind};
use super::printer::{
    int32_conversion, literal, local_type, prelude, storage_conversions, Printer,
};
use super::random::draw_parts;
use super::substep_loop::{loop_var_name, write_loops};
use super::writer::{render, SourceWriter};
use crate::ir::{ExprId, GroupIr, IndexOf, RefractoryIr, SymbolKind, ValueType, VarId};
use crate::spec::ModelSpec;
use crate::step::{self, FastMath, StepDag};
use crate::types::ElemType;

/// The name of the generated entry point in both dialects.
pub const ENTRY: &str = "sf_neuron_run";

/// Elements per vectorised block in the C dialect.
pub const C_LANES: usize = 16;

/// The steps ahead of its use that the CUDA forward pass under differentiation loads each
/// per-step input (a queue of registers): a thread then has this many loads in flight, where the
/// loop's unrolling alone let ptxas issue about 4. A long run of a large population is a stream
/// of the per-step input, bound by how many bytes are in flight.
const INPUT_AHEAD: usize = 8;

/// The CUDA run loop's unrolling for a model without per-step inputs: the loop's own counter,
/// compare and branch amortised over this many steps.
const RUN_UNROLL: usize = 4;

/// The CUDA run loop's unrolling for a model with per-step inputs: the steps whose input loads
/// a thread has in flight.
const PER_STEP_UNROLL: usize = 8;

/// How a CUDA step reads its per-step inputs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum StepInputs {
    /// From the input's row of the step, `sf_step_<a>[sf_s * sf_n_inner]`.
    Indexed,
    /// From the queue `sf_q_<a>0..` loaded [`INPUT_AHEAD`] steps before (`sf_ahead_<a>`: the
    /// next row to load).
    Queued,
}

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

/// The head of a per-element kernel's file: CUDA's integer types, or C's headers and the
/// number of lanes per block (also the adjoint kernel's, `codegen::adjoint_kernel`).
pub(crate) fn includes(dialect: Dialect) -> String {
    match dialect {
        Dialect::Cuda => {
            dialect.integer_typedefs(&["uint8_t", "int32_t", "int64_t", "uint16_t", "uint32_t", "uint64_t"])
        }
        Dialect::C => format!(
            "#include <math.h>\n#include <stdbool.h>\n#include <stdint.h>\n#define SF_LANES {C_LANES}\n"
        ),
    }
}

/// How the kernel counts the steps of a refractory duration.
enum RefractoryCount {
    /// A constant number of steps: each element keeps the step of the run from which it is free
    /// again (int32; `INT32_MIN` never spiked, `INT32_MAX` not within this run).
    Constant(i64),
    /// A duration that depends on per-element values, in steps every step: each element keeps
    /// the int64 step of its last spike.
    Expression,
}

/// The value of the `checkpoint:refractory_left` checkpoint `a` at step `step`: the steps from
/// `step` until `free_from` (the first step free of the refractory period), none when it is
/// free already. The difference is taken in 64 bits: a neuron that never spiked has
/// `free_from` = INT32_MIN, and a 32-bit difference would wrap (NVVM turns a guarded 32-bit
/// subtraction into `max(free_from - step, 0)`). It is below the period, so it fits the
/// checkpoint's type ([`crate::codegen::layout::refractory_left_elem`]).
fn refractory_left(a: &Arg, free_from: &str, step: &str) -> String {
    format!(
        "({}) ((int64_t) {free_from} - {step} > 0 ? (int64_t) {free_from} - {step} : 0)",
        a.elem.c_type()
    )
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
        local_type(self.dialect, self.spec.dtype, e)
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
        self.var_name_at(v, false)
    }

    /// How a DAG variable is spelled inside the step, or where the traces are recorded, at the
    /// start of the step (`at_start`): there `not_refractory` is Brian2's stored value, the one
    /// the previous step left (`sf_nr_at_start` for a refractory duration, see [`Self::record`]).
    /// A variable a sub-step loop carries is the loop's local.
    fn var_name_at(&self, v: VarId, at_start: bool) -> String {
        if let Some(name) = loop_var_name(self.dag, v) {
            return name;
        }
        let sym = self.ir.symbol(v);
        let lane = self.lane();
        match sym.kind {
            // A condition keeps it as per-element state; a duration recomputes it every step;
            // without a refractory period an element is never refractory.
            SymbolKind::NotRefractory => match self.dag.refractory {
                RefractoryIr::Condition(_) => format!("sf_not_refractory{lane}"),
                RefractoryIr::Duration(_) if at_start => "sf_nr_at_start".into(),
                RefractoryIr::Duration(_) => "sf_not_refractory".into(),
                RefractoryIr::None => "true".into(),
            },
            SymbolKind::Time => "sf_t".into(),
            SymbolKind::Index(IndexOf::Element) => match self.dialect {
                Dialect::Cuda => format!("(({}) sf_j)", self.real()),
                Dialect::C => format!("(({}) (sf_j0 + sf_l))", self.real()),
            },
            SymbolKind::Count(IndexOf::Element) => format!("(({}) sf_n_inner)", self.real()),
            // The time of the last spike, as the model's precision reads it.
            SymbolKind::LastSpike => format!("sf_lastspike{lane}"),
            // Held values and the step's draws are per-step locals (scalars in both dialects).
            SymbolKind::HeldSubexpression => ident(&sym.name),
            // Where traces are recorded, before the step draws its numbers, a draw is drawn
            // again: the stream gives the same number for the same (element, step, k).
            SymbolKind::Noise | SymbolKind::Random(_) if at_start => self.draw_call(v),
            SymbolKind::Noise => format!("sf_{}", ident(&sym.name)),
            SymbolKind::Random(_) => sym.name.clone(),
            // Expressions read an integer as a number of the model's precision.
            SymbolKind::Param | SymbolKind::PerStep if sym.value == ValueType::Integer => {
                format!("(({}) {}{lane})", self.real(), ident(&sym.name))
            }
            SymbolKind::State
            | SymbolKind::Param
            | SymbolKind::PerNeuronConstant
            | SymbolKind::PerStep => format!("{}{lane}", ident(&sym.name)),
            SymbolKind::Index(IndexOf::Pre | IndexOf::Post)
            | SymbolKind::Count(IndexOf::Pre | IndexOf::Post)
            | SymbolKind::Neighbour(..) => {
                unreachable!("only synapse groups have pre/post indices and neighbours")
            }
        }
    }

    /// The call that draws the random number of `v` (a noise symbol or a call of `rand()` /
    /// `randn()`) for the current element and step.
    fn draw_call(&self, v: VarId) -> String {
        let (function, k) = draw_parts(self.ir, v);
        let j = match self.dialect {
            Dialect::Cuda => "(uint32_t) sf_j",
            Dialect::C => "(uint32_t) (sf_j0 + sf_l)",
        };
        format!(
            "(({}) {function}((uint32_t) sf_seed, {j}, sf_t_step, {k}u))",
            self.real()
        )
    }

    /// Writes expression blocks of the step DAG with this kernel's spelling of its variables.
    fn print_block(
        &self,
        roots: &[ExprId],
        temp_prefix: &str,
        w: &mut SourceWriter,
    ) -> Result<Vec<String>, fmt::Error> {
        self.print_block_at(roots, temp_prefix, false, w)
    }

    /// [`Self::print_block`] with the spelling of [`Self::var_name_at`].
    fn print_block_at(
        &self,
        roots: &[ExprId],
        temp_prefix: &str,
        at_start: bool,
        w: &mut SourceWriter,
    ) -> Result<Vec<String>, fmt::Error> {
        let names = |v: VarId| self.var_name_at(v, at_start);
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
        w.write_str(&includes(self.dialect))?;
        w.write_str(&prelude(self.dialect, self.spec.dtype))?;
        let writes_integers = self
            .dag
            .next_params
            .iter()
            .any(|(v, _)| self.ir.symbol(*v).value == ValueType::Integer);
        if writes_integers {
            w.write_str(&int32_conversion(self.dialect, self.spec.dtype))?;
        }
        w.write_str(&clock_source(self.dialect, self.spec.dt, self.spec.dtype))?;
        if !self.ir.stream_draws().is_empty() {
            w.write_str(&super::random::stream_source(
                self.dialect,
                self.spec.dt,
                self.spec.dtype,
            ))?;
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

    /// How a refractory duration is counted: a constant number of steps (`timestep(duration,
    /// dt)`, folded at compile time), or an expression evaluated every step.
    fn refractory_count(&self) -> Option<RefractoryCount> {
        let RefractoryIr::Duration(d) = self.dag.refractory else {
            return None;
        };
        Some(match self.dag.arena.as_const(d) {
            Some(c) => RefractoryCount::Constant(step::timestep(c, self.spec.dt).clamp(0, 1 << 61)),
            None => RefractoryCount::Expression,
        })
    }

    /// The body of one step for one element, in terms of `var_name`; assigns the new values.
    fn step_body(&self, w: &mut SourceWriter) -> fmt::Result {
        let lane = self.lane();
        let real = self.real();
        // The step's random numbers, from the counter-based stream (seed, element, step, k):
        // a standard normal per noise symbol, a number per call of rand() / randn().
        for (v, _) in self.ir.stream_draws() {
            writeln!(
                w,
                "const {real} {} = {};",
                self.var_name(v),
                self.draw_call(v)
            )?;
        }
        // `constant over dt` subexpressions: computed once from the values at the step's start.
        for (v, e) in &self.ir.held {
            let text = self.print_block(&[*e], &format!("sf_h{v}_"), w)?.remove(0);
            writeln!(
                w,
                "const {real} {} = {text};",
                ident(&self.ir.symbol(*v).name)
            )?;
        }
        // Refractoriness first: it is decided by the values at the start of the step.
        match self.dag.refractory {
            RefractoryIr::None => {}
            RefractoryIr::Duration(_) => match self.refractory_count() {
                // Free again from a step of this run, kept per element: one int32 comparison.
                Some(RefractoryCount::Constant(_)) => writeln!(
                    w,
                    "const {b} sf_not_refractory = sf_s32 >= sf_free_from{lane};",
                    b = self.dialect.bool_type(),
                )?,
                _ => {
                    let RefractoryIr::Duration(d) = self.dag.refractory else {
                        unreachable!()
                    };
                    let e = self.print_block(&[d], "sf_r", w)?.remove(0);
                    writeln!(
                        w,
                        "const {b} sf_not_refractory = (sf_lastspike_step{lane} == {NEVER}) {or} (sf_t_step - sf_lastspike_step{lane} >= sf_refractory_steps({e}));",
                        b = self.dialect.bool_type(),
                        or = self.dialect.or(),
                    )?;
                }
            },
            RefractoryIr::Condition(c) => {
                let cond = self.print_block(&[c], "sf_c", w)?.remove(0);
                writeln!(
                    w,
                    "sf_not_refractory{lane} = sf_not_refractory{lane} {or} !({cond});",
                    or = self.dialect.or()
                )?;
            }
        }
        let print = |roots: &[ExprId], prefix: &str, w: &mut SourceWriter| {
            self.print_block(roots, prefix, w)
        };
        write_loops(self.dag, self.spec.dtype, "sf_t", &print, w)?;
        let texts = self.print_block(&self.dag.roots(), "sf_", w)?;
        let assigned = self.dag.assigned(self.ir);
        for (var, text) in assigned.iter().zip(&texts) {
            let symbol = self.ir.symbol(*var);
            let (ty, value) = match symbol.value {
                ValueType::Real => (real, text.clone()),
                ValueType::Integer => ("int32_t", format!("sf_int32({text})")),
                ValueType::Boolean => (self.dialect.bool_type(), text.clone()),
            };
            writeln!(w, "const {ty} sf_next_{} = {value};", ident(&symbol.name))?;
        }
        if self.dag.spike.is_some() {
            writeln!(
                w,
                "const {} sf_spike = {};",
                self.dialect.bool_type(),
                texts.last().expect("the spike is the last root")
            )?;
        }
        for v in assigned {
            let id = ident(&self.ir.symbol(v).name);
            writeln!(w, "{id}{lane} = sf_next_{id};")?;
        }
        if self.dag.spike.is_some() {
            if self.ir.bookkeeping.lastspike {
                writeln!(w, "sf_last_s{lane} = sf_spike ? sf_s32 : sf_last_s{lane};")?;
            }
            match self.refractory_count() {
                Some(RefractoryCount::Constant(r)) => {
                    // Saturating: a period past the end of any run is INT32_MAX.
                    let free = if r >= i64::from(i32::MAX) {
                        "2147483647".to_string()
                    } else {
                        format!(
                            "(sf_s32 > {} ? 2147483647 : sf_s32 + {r})",
                            i32::MAX as i64 - r
                        )
                    };
                    writeln!(
                        w,
                        "sf_free_from{lane} = sf_spike ? {free} : sf_free_from{lane};"
                    )?;
                }
                Some(RefractoryCount::Expression) => writeln!(
                    w,
                    "sf_lastspike_step{lane} = sf_spike ? sf_t_step : sf_lastspike_step{lane};"
                )?,
                None => {}
            }
            if self.ir.bookkeeping.lastspike_value {
                writeln!(
                    w,
                    "sf_lastspike{lane} = sf_spike ? sf_t : sf_lastspike{lane};"
                )?;
            }
            if let RefractoryIr::Condition(_) = self.dag.refractory {
                writeln!(
                    w,
                    "sf_not_refractory{lane} = sf_not_refractory{lane} {} !sf_spike;",
                    self.dialect.and()
                )?;
            }
            writeln!(w, "sf_spike_count{lane} += sf_spike ? 1 : 0;")?;
            if self.spec.record_spike_train {
                writeln!(w, "sf_train_bin{lane} += sf_spike ? 1 : 0;")?;
            }
            if self.spec.record_spikes {
                match self.dialect {
                    // One slot of the batch member's spike record per spike, by an atomic count.
                    Dialect::Cuda => w.block("if (sf_spike)", |w| {
                        w.write_str("const unsigned long long sf_slot = atomicAdd((unsigned long long*) out_sf_spike_total + sf_b, 1ull);\n")?;
                        w.block("if (sf_slot < (unsigned long long) sf_spike_cap)", |w| {
                            w.write_str("out_sf_spike_index[sf_b * sf_spike_cap + (int64_t) sf_slot] = (int32_t) sf_j;\nout_sf_spike_step[sf_b * sf_spike_cap + (int64_t) sf_slot] = sf_s32;\n")
                        })
                    })?,
                    // Atomics stop vectorisation: the lanes that spiked are recorded after the
                    // vector loop (`Self::c_spike_record`).
                    Dialect::C => w.write_str("sf_spiked[sf_l] = sf_spike;\nsf_n_spiked += sf_spike;\n")?,
                }
            }
        }
        Ok(())
    }

    /// Writes the trace values of the current step; `store(trace, value)` gives the statement.
    fn record(&self, w: &mut SourceWriter, store: impl Fn(&Arg, &str) -> String) -> fmt::Result {
        if self.records_not_refractory() {
            // Brian2's stored not_refractory at the start of step s: computed in step s - 1 and
            // cleared by a spike in it.
            let lane = self.lane();
            let b = self.dialect.bool_type();
            let and = self.dialect.and();
            let or = self.dialect.or();
            match self.refractory_count() {
                Some(RefractoryCount::Constant(_)) => writeln!(
                    w,
                    "const {b} sf_nr_at_start = (sf_s32 - 1 >= sf_free_from{lane}) {and} (sf_last_s{lane} != sf_s32 - 1);"
                )?,
                _ => {
                    let RefractoryIr::Duration(d) = self.dag.refractory else {
                        unreachable!("records_not_refractory needs a duration")
                    };
                    let e = self.print_block(&[d], "sf_rr", w)?.remove(0);
                    writeln!(
                        w,
                        "const {b} sf_nr_at_start = (sf_lastspike_step{lane} != sf_t_step - 1) {and} ((sf_lastspike_step{lane} == {NEVER}) {or} (sf_t_step - 1 - sf_lastspike_step{lane} >= sf_refractory_steps({e})));"
                    )?;
                }
            }
        }
        let texts = self.print_block_at(&self.dag.traces, "sf_rec", true, w)?;
        for (trace, text) in self.traces().into_iter().zip(&texts) {
            // An integer is recorded as it is stored, not through the model's precision.
            let text = match trace.var.map(|v| self.ir.symbol(v)) {
                Some(sym) if sym.value == ValueType::Integer => {
                    format!("{}{}", ident(&sym.name), self.lane())
                }
                _ => text.clone(),
            };
            writeln!(w, "{}", store(trace, &text))?;
        }
        Ok(())
    }

    fn params(&self) -> Vec<String> {
        let restrict = self.dialect.restrict();
        let inputs = self
            .layout
            .inputs
            .iter()
            .map(|a| format!("const {}* {restrict} in_{}", a.elem.c_type(), a.ident));
        let outputs = self
            .layout
            .outputs
            .iter()
            .map(|a| format!("{}* {restrict} out_{}", a.elem.c_type(), a.ident));
        inputs.chain(outputs).collect()
    }

    /// The per-element registers of the bookkeeping, loaded from element `index` once `sf_t0` is
    /// known (CUDA: declared here; C: lane arrays, declared by [`Self::bookkeeping_lanes`]).
    fn load_bookkeeping(&self, w: &mut SourceWriter, index: &str) -> fmt::Result {
        let cuda = self.dialect == Dialect::Cuda;
        let (lane, decl) = if cuda { ("", true) } else { ("[sf_l]", false) };
        let ty = |t: &str| if decl { format!("{t} ") } else { String::new() };
        if !self.ir.bookkeeping.lastspike {
            return Ok(());
        }
        if self.records_not_refractory() {
            // -1 when the last spike was in the step before the run (the trace at the run's
            // first step needs it).
            writeln!(
                w,
                "{}sf_last_s{lane} = sf_previous_step_spike(in_sf_lastspike, {index}, sf_t0);",
                ty("int32_t")
            )?;
        } else {
            writeln!(w, "{}sf_last_s{lane} = -1;", ty("int32_t"))?;
        }
        match self.refractory_count() {
            Some(RefractoryCount::Constant(r)) => writeln!(
                w,
                "{}sf_free_from{lane} = sf_first_free_step(in_sf_lastspike, {index}, sf_t0, {r}LL);",
                ty("int32_t")
            )?,
            Some(RefractoryCount::Expression) => writeln!(
                w,
                "{}sf_lastspike_step{lane} = sf_spike_step(in_sf_lastspike, {index});",
                ty("int64_t")
            )?,
            None => {}
        }
        if self.ir.bookkeeping.lastspike_value {
            writeln!(
                w,
                "{}sf_lastspike{lane} = sf_time_value(in_sf_lastspike, {index});",
                ty(self.real())
            )?;
        }
        Ok(())
    }

    /// Whether a trace reads `not_refractory` under a refractory duration, which the step
    /// computes from the step's refractory count, not from a stored value.
    fn records_not_refractory(&self) -> bool {
        let Some(nr) = self.ir.lookup("not_refractory") else {
            return false;
        };
        matches!(self.dag.refractory, RefractoryIr::Duration(_))
            && self
                .dag
                .traces
                .iter()
                .any(|t| self.dag.arena.vars_of(*t).contains(&nr))
    }

    /// Writes the checkpoint outputs (`spec.checkpoint`) of element row `sf_c`: the stored
    /// variables and a constant refractory period's `sf_free_from`, at the start of the step.
    fn checkpoint(&self, w: &mut SourceWriter) -> fmt::Result {
        let lane = self.lane();
        for a in self
            .layout
            .outputs
            .iter()
            .filter(|a| a.role == Role::Checkpoint)
        {
            let value = match a.var {
                Some(v) => format!("{}{lane}", ident(&self.ir.symbol(v).name)),
                None => refractory_left(a, &format!("sf_free_from{lane}"), "sf_s"),
            };
            writeln!(w, "out_{}[sf_c] = {};", a.ident, self.store(a, &value))?;
        }
        Ok(())
    }

    /// The lane arrays of the bookkeeping registers (C).
    fn bookkeeping_lanes(&self, w: &mut SourceWriter) -> fmt::Result {
        if !self.ir.bookkeeping.lastspike {
            return Ok(());
        }
        w.write_str("int32_t sf_last_s[SF_LANES];\n")?;
        match self.refractory_count() {
            Some(RefractoryCount::Constant(_)) => {
                w.write_str("int32_t sf_free_from[SF_LANES];\n")?
            }
            Some(RefractoryCount::Expression) => {
                w.write_str("int64_t sf_lastspike_step[SF_LANES];\n")?
            }
            None => {}
        }
        if self.ir.bookkeeping.lastspike_value {
            writeln!(w, "{} sf_lastspike[SF_LANES];", self.real())?;
        }
        Ok(())
    }

    /// The statement that stores output `a` of element `index` (CUDA: from the registers;
    /// C: from lane `sf_l`). The time of the state is written by the first element of each batch
    /// member.
    fn store_output(&self, w: &mut SourceWriter, a: &Arg, index: &str) -> fmt::Result {
        let lane = self.lane();
        match a.role {
            Role::Lastspike => writeln!(
                w,
                "if (sf_spike_count{lane} > 0) sf_store_step_time(out_sf_lastspike, {index}, sf_t0 + sf_last_s{lane}); else sf_copy_time(out_sf_lastspike, in_sf_lastspike, {index});"
            ),
            Role::Time => {
                let first = match self.dialect {
                    Dialect::Cuda => "sf_j == 0",
                    Dialect::C => "sf_j0 + sf_l == 0",
                };
                writeln!(
                    w,
                    "if ({first}) sf_store_step_time(out_sf_t, sf_b, sf_t0 + (int64_t) sf_steps);"
                )
            }
            _ => writeln!(
                w,
                "out_{}[{index}] = {};",
                a.ident,
                self.store(a, &format!("{}{lane}", a.ident))
            ),
        }
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
            "extern \"C\" __global__ void {ENTRY}(\n    const int64_t sf_n, const int64_t sf_n_inner, const int32_t sf_steps,\n    const int32_t sf_rec_every, const int32_t sf_n_rec,{}{}\n    {})\n{{",
            if self.spec.record_spikes {
                " const int64_t sf_spike_cap,"
            } else {
                ""
            },
            if self.spec.checkpoint {
                " const int32_t sf_ckpt_every,"
            } else {
                ""
            },
            self.params().join(",\n    ")
        )?;
        w.indented(|w| {
            w.write_str("const int64_t sf_i = (int64_t) blockIdx.x * blockDim.x + threadIdx.x;\n")?;
            w.write_str("if (sf_i >= sf_n) return;\n")?;
            w.write_str("const int64_t sf_b = sf_i / sf_n_inner;\nconst int64_t sf_j = sf_i - sf_b * sf_n_inner;\n")?;
            w.write_str("const int64_t sf_t0 = sf_start_step(in_sf_t, sf_b);\n")?;
            for a in &self.layout.inputs {
                match a.role {
                    Role::PerStep => writeln!(
                        w,
                        "const {}* __restrict__ sf_step_{1} = in_{1} + sf_b * (int64_t) sf_steps * sf_n_inner + sf_j;",
                        a.elem.c_type(),
                        a.ident
                    )?,
                    Role::Time => {}
                    Role::Seed => w.write_str("const int32_t sf_seed = in_sf_rng_seed[sf_b];\n")?,
                    Role::Lastspike => self.load_bookkeeping(w, "sf_i")?,
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
            if self.spec.record_spike_train {
                w.write_str("int32_t* sf_train = out_sf_spike_train + sf_b * (int64_t) sf_n_rec * sf_n_inner + sf_j;\nint32_t sf_train_bin = 0;\n")?;
            }
            w.write_str("int32_t sf_spike_count = 0;\nint32_t sf_rec_countdown = 0;\n")?;
            if self.spec.checkpoint {
                self.checkpoint_segments(w)
            } else {
                // Unrolling amortises the loop's own counter, compare and branch over several
                // steps and, with per-step inputs, lets ptxas issue that many steps' loads before
                // the first is used: the run is then a stream of the inputs, bound by the bytes in
                // flight (at 1M neurons x 1000 steps on an H200, LIF float32, 1.10 ms unrolled by 4
                // against 0.94 by 8, a plain column walk's 4.3 TB/s).
                let unroll = if self.per_step_inputs().next().is_some() {
                    PER_STEP_UNROLL
                } else {
                    RUN_UNROLL
                };
                writeln!(w, "#pragma unroll {unroll}")?;
                w.block("for (int32_t sf_s = 0; sf_s < sf_steps; ++sf_s)", |w| {
                    self.cuda_step(w, StepInputs::Indexed, "sf_n_inner")
                })
            }?;
            for a in self.layout.outputs.iter().filter(|a| a.shape == ShapeKind::Neuron || a.role == Role::Time) {
                self.store_output(w, a, "sf_i")?;
            }
            Ok(())
        })?;
        w.write_str("}\n")
    }

    /// One step of the CUDA kernel's loop over steps `sf_s`: per-step input `a` read as
    /// `inputs` says, trace pointers moved by `row` after each record.
    fn cuda_step(&self, w: &mut SourceWriter, inputs: StepInputs, row: &str) -> fmt::Result {
        w.write_str("const int32_t sf_s32 = sf_s;\nconst int64_t sf_t_step = sf_t0 + sf_s;\n")?;
        self.time(w)?;
        for a in self.per_step_inputs() {
            let id = &a.ident;
            let element = match inputs {
                StepInputs::Indexed => format!("sf_step_{id}[(int64_t) sf_s * sf_n_inner]"),
                StepInputs::Queued => format!("sf_q_{id}0"),
            };
            writeln!(
                w,
                "const {} {id} = {};",
                self.local_type(a.elem),
                self.load(a, &element)
            )?;
            if inputs == StepInputs::Queued {
                // The queue moves up a step; its last slot takes the row INPUT_AHEAD steps on
                // (the run's last row again near the end: a valid load whose value is unused).
                for u in 0..INPUT_AHEAD - 1 {
                    write!(w, "sf_q_{id}{u} = sf_q_{id}{};", u + 1)?;
                }
                writeln!(
                    w,
                    "\nsf_q_{id}{} = *sf_ahead_{id}; sf_ahead_{id} += sf_s + {} < sf_steps ? {row} : 0;",
                    INPUT_AHEAD - 1,
                    INPUT_AHEAD + 1
                )?;
            }
        }
        if !self.traces().is_empty() {
            w.block("if (sf_rec_countdown == 0)", |w| {
                self.record(w, |trace, value| {
                    format!(
                        "*sf_rec_{0} = {1}; sf_rec_{0} += {row};",
                        trace.ident,
                        self.store(trace, value)
                    )
                })?;
                w.write_str("sf_rec_countdown = sf_rec_every;\n")
            })?;
            w.write_str("--sf_rec_countdown;\n")?;
        }
        self.step_body(w)?;
        self.store_spike_train(w)
    }

    /// The CUDA loop over steps of the forward pass under differentiation (`spec.checkpoint`):
    /// segments of `sf_ckpt_every` steps, each starting with its checkpoint, so that the steps
    /// in between hold no test or branch for it; rows reached through pointers moved by a row
    /// (a 32-bit stride: the handler checks `n_inner` < 2^31) instead of 64-bit row products;
    /// per-step inputs through the queue of [`StepInputs::Queued`].
    fn checkpoint_segments(&self, w: &mut SourceWriter) -> fmt::Result {
        w.write_str("const int32_t sf_n_ckpt = (sf_steps + sf_ckpt_every - 1) / sf_ckpt_every;\nconst int32_t sf_stride = (int32_t) sf_n_inner;\n")?;
        let checkpoints: Vec<&Arg> = self
            .layout
            .outputs
            .iter()
            .filter(|a| a.role == Role::Checkpoint)
            .collect();
        for a in &checkpoints {
            writeln!(
                w,
                "{}* sf_ckpt_{1} = out_{1} + sf_b * (int64_t) sf_n_ckpt * sf_n_inner + sf_j;",
                a.elem.c_type(),
                a.ident
            )?;
        }
        // Each per-step input's next INPUT_AHEAD rows in registers, loaded that many steps before
        // they are used (rows past the run's end read as its last row).
        for a in self.per_step_inputs() {
            let (ty, id) = (a.elem.c_type(), &a.ident);
            for u in 0..INPUT_AHEAD {
                writeln!(
                    w,
                    "{ty} sf_q_{id}{u} = sf_step_{id}[(int64_t) (sf_steps > {u} ? {u} : sf_steps - 1) * sf_stride];"
                )?;
            }
            writeln!(
                w,
                "const {ty}* sf_ahead_{id} = sf_step_{id} + (int64_t) (sf_steps > {INPUT_AHEAD} ? {INPUT_AHEAD} : sf_steps - 1) * sf_stride;"
            )?;
        }
        w.block(
            "for (int32_t sf_s0 = 0; sf_s0 < sf_steps; sf_s0 += sf_ckpt_every)",
            |w| {
                for a in &checkpoints {
                    let value = match a.var {
                        Some(v) => ident(&self.ir.symbol(v).name),
                        None => refractory_left(a, "sf_free_from", "sf_s0"),
                    };
                    writeln!(
                        w,
                        "*sf_ckpt_{0} = {1}; sf_ckpt_{0} += sf_stride;",
                        a.ident,
                        self.store(a, &value)
                    )?;
                }
                // Unrolled by the queue's length, so that its slots are renamed, not moved.
                writeln!(w, "const int32_t sf_s1 = sf_steps - sf_s0 > sf_ckpt_every ? sf_s0 + sf_ckpt_every : sf_steps;\n#pragma unroll {INPUT_AHEAD}")?;
                w.block("for (int32_t sf_s = sf_s0; sf_s < sf_s1; ++sf_s)", |w| {
                    self.cuda_step(w, StepInputs::Queued, "sf_stride")
                })
            },
        )
    }

    fn write_c(&self, w: &mut SourceWriter) -> fmt::Result {
        writeln!(
            w,
            "/* Runs neurons [sf_start, sf_end); dims = {{n_inner, steps, rec_every, n_rec{}{}}}. */\nvoid {ENTRY}(int64_t sf_start, int64_t sf_end, const int64_t* sf_dims, void* const* sf_in, void* const* sf_out)\n{{",
            if self.spec.record_spikes || self.spec.checkpoint { ", spike_capacity" } else { "" },
            if self.spec.checkpoint { ", checkpoint_every" } else { "" }
        )?;
        w.indented(|w| {
            w.write_str("const int64_t sf_n_inner = sf_dims[0], sf_steps = sf_dims[1], sf_rec_every = sf_dims[2], sf_n_rec = sf_dims[3];\n")?;
            if self.spec.record_spikes {
                w.write_str("const int64_t sf_spike_cap = sf_dims[4];\n")?;
            }
            if self.spec.checkpoint {
                w.write_str("const int64_t sf_ckpt_every = sf_dims[5], sf_n_ckpt = (sf_steps + sf_ckpt_every - 1) / sf_ckpt_every;\n")?;
            }
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

    /// After the vector loop of a step (C): each lane that spiked takes one slot of its batch
    /// member's spike record, by an atomic count (blocks run on several threads).
    fn c_spike_record(&self, w: &mut SourceWriter) -> fmt::Result {
        if !self.spec.record_spikes {
            return Ok(());
        }
        w.block("if (sf_n_spiked > 0)", |w| {
            w.block("for (int sf_l = 0; sf_l < sf_w; ++sf_l)", |w| {
                w.block("if (sf_spiked[sf_l])", |w| {
                    w.write_str("const int64_t sf_slot = __atomic_fetch_add((int64_t*) out_sf_spike_total + sf_b, (int64_t) 1, __ATOMIC_RELAXED);\n")?;
                    w.block("if (sf_slot < sf_spike_cap)", |w| {
                        w.write_str("out_sf_spike_index[sf_b * sf_spike_cap + sf_slot] = (int32_t) (sf_j0 + sf_l);\nout_sf_spike_step[sf_b * sf_spike_cap + sf_slot] = sf_s32;\n")
                    })
                })
            })
        })
    }

    /// At the end of a step that closes a window of `record_every` steps (or the run): the
    /// window's spikes of each element go to its row of the spike train, and the count restarts.
    fn store_spike_train(&self, w: &mut SourceWriter) -> fmt::Result {
        if !self.spec.record_spike_train {
            return Ok(());
        }
        w.block(
            "if ((sf_s + 1) % sf_rec_every == 0 || sf_s + 1 == sf_steps)",
            |w| match self.dialect {
                Dialect::Cuda => w.write_str(
                    "*sf_train = sf_train_bin;\nsf_train += sf_n_inner;\nsf_train_bin = 0;\n",
                ),
                Dialect::C => {
                    w.write_str("const int64_t sf_r = sf_s / sf_rec_every;\n")?;
                    w.write_str("for (int sf_l = 0; sf_l < sf_w; ++sf_l) out_sf_spike_train[(sf_b * sf_n_rec + sf_r) * sf_n_inner + sf_j0 + sf_l] = sf_train_bin[sf_l];\n")?;
                    w.write_str("for (int sf_l = 0; sf_l < SF_LANES; ++sf_l) sf_train_bin[sf_l] = 0;\n")
                }
            },
        )
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
            .filter(|a| !matches!(a.role, Role::Time | Role::Seed | Role::Lastspike))
        {
            writeln!(w, "{} {}[SF_LANES];", self.local_type(a.elem), a.ident)?;
        }
        self.bookkeeping_lanes(w)?;
        w.write_str("int32_t sf_spike_count[SF_LANES];\n")?;
        if self.spec.record_spikes {
            w.write_str("int32_t sf_spiked[SF_LANES];\n")?;
        }
        if self.spec.record_spike_train {
            w.write_str("int32_t sf_train_bin[SF_LANES];\n")?;
        }
        w.write_str("const int64_t sf_t0 = sf_start_step(in_sf_t, sf_b);\n")?;
        w.block("for (int sf_l = 0; sf_l < SF_LANES; ++sf_l)", |w| {
            w.write_str("const int64_t sf_k = sf_c0 + (sf_l < sf_w ? sf_l : 0);\n")?;
            for a in &self.layout.inputs {
                match a.role {
                    Role::Time | Role::Seed => {}
                    Role::Lastspike => self.load_bookkeeping(w, "sf_k")?,
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
            w.write_str("sf_spike_count[sf_l] = 0;\n")?;
            if self.spec.record_spike_train {
                w.write_str("sf_train_bin[sf_l] = 0;\n")?;
            }
            Ok(())
        })?;
        if !self.ir.stream_draws().is_empty() {
            w.write_str("const int32_t sf_seed = in_sf_rng_seed[sf_b];\n")?;
        }
        w.block("for (int64_t sf_s = 0; sf_s < sf_steps; ++sf_s)", |w| {
            w.write_str("const int32_t sf_s32 = (int32_t) sf_s;\nconst int64_t sf_t_step = sf_t0 + sf_s;\n")?;
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
            if self.spec.checkpoint {
                w.block("if (sf_s % sf_ckpt_every == 0)", |w| {
                    w.write_str("const int64_t sf_r = sf_s / sf_ckpt_every;\n")?;
                    w.block("for (int sf_l = 0; sf_l < sf_w; ++sf_l)", |w| {
                        w.write_str("const int64_t sf_c = (sf_b * sf_n_ckpt + sf_r) * sf_n_inner + sf_j0 + sf_l;\n")?;
                        self.checkpoint(w)
                    })
                })?;
            }
            if self.spec.record_spikes {
                w.write_str("int32_t sf_n_spiked = 0;\n#pragma omp simd reduction(+:sf_n_spiked)\n")?;
            } else {
                w.write_str("#pragma omp simd\n")?;
            }
            w.block("for (int sf_l = 0; sf_l < SF_LANES; ++sf_l)", |w| {
                self.step_body(w)
            })?;
            self.c_spike_record(w)?;
            self.store_spike_train(w)
        })?;
        w.block("for (int sf_l = 0; sf_l < sf_w; ++sf_l)", |w| {
            for a in self
                .layout
                .outputs
                .iter()
                .filter(|a| a.shape == ShapeKind::Neuron || a.role == Role::Time)
            {
                self.store_output(w, a, "sf_c0 + sf_l")?;
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
            assert_eq!(inputs, ["N", "g", "p", "NT", "f", "input", "t"]);
        }
    }

    /// `record_spike_train` adds one trace-shaped int32 output, written in both dialects, and
    /// nothing else; without it the kernel does not mention it.
    #[test]
    fn the_spike_train_is_an_output_only_when_asked() {
        use crate::codegen::layout::{Role, ShapeKind};
        use crate::spec::ModelSpec;
        use crate::types::ElemType;
        let spec = ModelSpec::from_equations("dv/dt = (2 - v) / (10*ms) : 1", 0.1)
            .threshold("v > 1")
            .reset("v = 0");
        for dialect in [Dialect::Cuda, Dialect::C] {
            let plain = generate_from_spec(&spec, dialect).unwrap();
            let train =
                generate_from_spec(&spec.clone().record_spike_train(true), dialect).unwrap();
            assert!(!plain.source.contains("spike_train"));
            assert!(train.source.contains("out_sf_spike_train"));
            assert!(train.source.contains("sf_train_bin"));
            let extra: Vec<_> = train
                .layout
                .outputs
                .iter()
                .filter(|a| !plain.layout.outputs.contains(a))
                .collect();
            assert_eq!(extra.len(), 1);
            assert_eq!(
                (extra[0].role, extra[0].shape, extra[0].elem),
                (Role::SpikeTrain, ShapeKind::Trace, ElemType::I32)
            );
            assert_eq!(train.layout.inputs, plain.layout.inputs);
        }
        let silent =
            ModelSpec::from_equations("dv/dt = -v / (10*ms) : 1", 0.1).record_spike_train(true);
        let error = generate_from_spec(&silent, Dialect::C).unwrap_err();
        assert_eq!(error.field, "record_spike_train");
    }
}
