//! The adjoint (reverse-time) kernel of a neuron group: one segment of a run, backwards.
//!
//! Backpropagation through a run of `steps` steps keeps checkpoints of the state every `k`
//! steps (the forward pass runs the group kernel segment by segment); the backward pass, for
//! each segment from the last, recomputes the segment's start-of-step values with the group
//! kernel (its traces of every stored variable, `k` rows) and calls this kernel, which walks the
//! segment's steps backwards and applies the adjoint of one step ([`crate::step::adjoint`]):
//! memory `O(N (steps/k + k))`. Each element is independent (one CUDA thread, or one iteration
//! of the C loop over an element range), holds its adjoints and accumulated gradients in
//! registers, and reads and writes each step's row once.
//!
//! With a refractory period, the kernel first walks the segment forwards to recompute each
//! step's `not_refractory` from the checkpoint's `lastspike` and the spikes of the recomputed
//! values, with the group kernel's clock helpers (the same int32 comparison), and keeps it in a
//! scratch buffer, which the backward walk reads.
//!
//! Layout ([`adjoint_layout`]), `k` the segment's steps, `(nb, k, n_inner)` a per-step buffer:
//! inputs `state:<x>` per step for each stored variable (the values at the start of each step),
//! every parameter `(n,)` (or `(nb,)` when shared), `lastspike` `(n, 2)` (words, with a
//! refractory period: at the segment's start), every per-neuron constant `(n,)`, every per-step
//! input per step, `t` `(nb, 2)` (the segment's start), `adjoint:<x>` `(n,)` (at the segment's
//! end), `spike_cotangent` per step, `trace_cotangent:<r>` per step for each recorded name,
//! `grad:<p>` `(n,)` for each differentiable parameter or per-neuron constant (accumulated so
//! far); outputs `adjoint:<x>` (at the segment's start), `grad:<p>` (accumulated with this
//! segment), `grad:<q>` per step for each real per-step input, and the scratch
//! `not_refractory` per step (bool) with a refractory period.

use std::fmt::{self, Write};

use serde::Serialize;

use super::clock::clock_source;
use super::dialect::Dialect;
use super::identifiers::ident;
use super::layout::{elem_json, value_elem};
use super::printer::{local_type, prelude, Printer};
use super::writer::{render, SourceWriter};
use crate::ir::{GroupIr, IndexOf, RefractoryIr, SymbolKind, ValueType, VarId};
use crate::spec::ModelSpec;
use crate::step::adjoint::{adjoint, AdjointDag, NotDifferentiable};
use crate::types::ElemType;

/// The name of the generated entry point in both dialects.
pub const ADJOINT_ENTRY: &str = "sf_neuron_adjoint";

/// The shape of an adjoint kernel buffer: `(n,)`, `(nb,)`, `(nb, k, n_inner)`, or `(n, 2)` /
/// `(nb, 2)` float64 word pairs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AdjointShape {
    Neuron,
    Batch,
    PerStep,
    NeuronWords,
    BatchWords,
}

/// What a buffer of the adjoint kernel holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AdjointRole {
    /// The values of a stored variable at the start of each step.
    State,
    /// A parameter, per-neuron constant or per-step input, as the forward kernel reads it.
    Input,
    Lastspike,
    Time,
    /// The adjoint of a stored variable.
    Adjoint,
    SpikeCotangent,
    TraceCotangent,
    /// A gradient of a differentiable input.
    Grad,
    /// Scratch: `not_refractory` of each step.
    NotRefractory,
}

/// One buffer of the adjoint kernel.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AdjointArg {
    /// `state:v`, `I`, `adjoint:v`, `grad:tau`, ...
    pub name: String,
    pub role: AdjointRole,
    /// `"real"` in the JSON for the model's precision, else the type's name.
    #[serde(serialize_with = "elem_json")]
    pub elem: ElemType,
    pub shape: AdjointShape,
    #[serde(skip)]
    pub var: Option<VarId>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AdjointLayout {
    pub inputs: Vec<AdjointArg>,
    pub outputs: Vec<AdjointArg>,
}

fn buffer(name: String, role: AdjointRole, elem: ElemType, shape: AdjointShape) -> AdjointArg {
    AdjointArg {
        name,
        role,
        elem,
        shape,
        var: None,
    }
}

/// The adjoint kernel's buffers (see the module documentation).
pub fn adjoint_layout(ir: &GroupIr, spec: &ModelSpec, dag: &AdjointDag) -> AdjointLayout {
    let real = spec.dtype;
    let named = |v: VarId, role: AdjointRole, shape: AdjointShape, prefix: &str| {
        let s = ir.symbol(v);
        AdjointArg {
            var: Some(v),
            ..buffer(
                format!("{prefix}{}", s.name),
                role,
                value_elem(s.value, real),
                shape,
            )
        }
    };
    let mut inputs: Vec<AdjointArg> = dag
        .stored
        .iter()
        .map(|v| named(*v, AdjointRole::State, AdjointShape::PerStep, "state:"))
        .collect();
    for v in ir.vars_of_kind(&SymbolKind::Param) {
        let shape = if ir.symbol(v).shared {
            AdjointShape::Batch
        } else {
            AdjointShape::Neuron
        };
        inputs.push(named(v, AdjointRole::Input, shape, ""));
    }
    if has_refractory(ir) {
        inputs.push(buffer(
            "lastspike".into(),
            AdjointRole::Lastspike,
            ElemType::I32,
            AdjointShape::NeuronWords,
        ));
    }
    for v in ir.vars_of_kind(&SymbolKind::PerNeuronConstant) {
        inputs.push(named(v, AdjointRole::Input, AdjointShape::Neuron, ""));
    }
    for v in ir.vars_of_kind(&SymbolKind::PerStep) {
        inputs.push(named(v, AdjointRole::Input, AdjointShape::PerStep, ""));
    }
    inputs.push(buffer(
        "t".into(),
        AdjointRole::Time,
        ElemType::I32,
        AdjointShape::BatchWords,
    ));
    let adjoints: Vec<AdjointArg> = dag
        .stored
        .iter()
        .map(|v| named(*v, AdjointRole::Adjoint, AdjointShape::Neuron, "adjoint:"))
        .collect();
    inputs.extend(adjoints.iter().cloned());
    inputs.push(buffer(
        "spike_cotangent".into(),
        AdjointRole::SpikeCotangent,
        real,
        AdjointShape::PerStep,
    ));
    for name in &spec.record {
        inputs.push(buffer(
            format!("trace_cotangent:{name}"),
            AdjointRole::TraceCotangent,
            real,
            AdjointShape::PerStep,
        ));
    }
    let (per_step, accumulated): (Vec<VarId>, Vec<VarId>) = dag
        .inputs
        .iter()
        .map(|(v, _)| *v)
        .partition(|v| ir.symbol(*v).kind == SymbolKind::PerStep);
    let grads: Vec<AdjointArg> = accumulated
        .iter()
        .map(|v| {
            AdjointArg {
                // A shared parameter's gradient is kept per element; Python sums it.
                shape: AdjointShape::Neuron,
                ..named(*v, AdjointRole::Grad, AdjointShape::Neuron, "grad:")
            }
        })
        .collect();
    inputs.extend(grads.iter().cloned());
    let mut outputs = adjoints;
    outputs.extend(grads);
    outputs.extend(
        per_step
            .iter()
            .map(|v| named(*v, AdjointRole::Grad, AdjointShape::PerStep, "grad:")),
    );
    if has_refractory(ir) {
        outputs.push(buffer(
            "not_refractory".into(),
            AdjointRole::NotRefractory,
            ElemType::Bool,
            AdjointShape::PerStep,
        ));
    }
    AdjointLayout { inputs, outputs }
}

fn has_refractory(ir: &GroupIr) -> bool {
    matches!(ir.events.refractory, RefractoryIr::Duration(_))
}

/// A generated adjoint kernel: its source and argument layout.
#[derive(Clone, Debug)]
pub struct GeneratedAdjoint {
    pub source: String,
    pub entry: &'static str,
    pub layout: AdjointLayout,
}

/// The adjoint kernel of `ir` (lowered from `spec`) in `dialect`, or why the model's runs are
/// not differentiable.
pub fn generate_adjoint(
    ir: &GroupIr,
    spec: &ModelSpec,
    dialect: Dialect,
) -> Result<GeneratedAdjoint, NotDifferentiable> {
    if spec.storage.is_some() {
        return Err(NotDifferentiable(
            "its state is stored as float16 / bfloat16; differentiate float32 or float64 runs"
                .into(),
        ));
    }
    let dag = adjoint(ir, &spec.record, spec.surrogate)?;
    let layout = adjoint_layout(ir, spec, &dag);
    let writer = AdjointWriter {
        ir,
        spec,
        dag: &dag,
        layout: &layout,
        dialect,
    };
    Ok(GeneratedAdjoint {
        source: render(|w| writer.write(w)),
        entry: ADJOINT_ENTRY,
        layout,
    })
}

struct AdjointWriter<'a> {
    ir: &'a GroupIr,
    spec: &'a ModelSpec,
    dag: &'a AdjointDag,
    layout: &'a AdjointLayout,
    dialect: Dialect,
}

impl AdjointWriter<'_> {
    fn real(&self) -> &'static str {
        self.spec.dtype.c_type()
    }

    /// How a variable of the adjoint DAG is spelled inside the step.
    fn var_name(&self, v: VarId) -> String {
        let lane = self.lane();
        if let Some(k) = self.dag.adjoint_next.iter().position(|a| *a == v) {
            return format!(
                "sf_a_{}{lane}",
                ident(&self.ir.symbol(self.dag.stored[k]).name)
            );
        }
        if v == self.dag.spike_cotangent {
            return "sf_a_spike".into();
        }
        if let Some(k) = self.dag.trace_cotangents.iter().position(|a| *a == v) {
            return format!("sf_a_rec{k}");
        }
        let sym = self.ir.symbol(v);
        match sym.kind {
            SymbolKind::NotRefractory => {
                if has_refractory(self.ir) {
                    "sf_not_refractory".into()
                } else {
                    "true".into()
                }
            }
            SymbolKind::Time => "sf_t".into(),
            SymbolKind::Index(IndexOf::Element) => format!("(({}) sf_j)", self.real()),
            SymbolKind::Count(IndexOf::Element) => format!("(({}) sf_n_inner)", self.real()),
            SymbolKind::PerStep if sym.value == ValueType::Integer => {
                format!("(({}) {})", self.real(), ident(&sym.name))
            }
            SymbolKind::Param if sym.value == ValueType::Integer => {
                format!("(({}) {}{lane})", self.real(), ident(&sym.name))
            }
            // Per-element values the walk keeps (lane arrays in C); per-step ones are locals.
            SymbolKind::Param | SymbolKind::PerNeuronConstant => {
                format!("{}{lane}", ident(&sym.name))
            }
            _ => ident(&sym.name),
        }
    }

    /// How a per-element value the walk keeps is indexed: a register (CUDA) or a lane of the
    /// block (C).
    fn lane(&self) -> &'static str {
        match self.dialect {
            Dialect::Cuda => "",
            Dialect::C => "[sf_l]",
        }
    }

    /// Writes `body` for every element of the block: itself on CUDA (one thread, one element);
    /// inside the loop over the block's lanes in C, with the lane's `sf_j`.
    fn per_element(
        &self,
        w: &mut SourceWriter,
        body: impl FnOnce(&mut SourceWriter) -> fmt::Result,
    ) -> fmt::Result {
        match self.dialect {
            Dialect::Cuda => body(w),
            Dialect::C => w.block("for (int sf_l = 0; sf_l < sf_w; ++sf_l)", |w| {
                w.write_str(
                    "const int64_t sf_i = sf_c0 + sf_l;
const int64_t sf_j = sf_j0 + sf_l;
",
                )?;
                body(w)
            }),
        }
    }

    fn local_type(&self, e: ElemType) -> &'static str {
        local_type(self.dialect, self.spec.dtype, e)
    }

    fn print_block(
        &self,
        roots: &[crate::ir::ExprId],
        prefix: &str,
        w: &mut SourceWriter,
    ) -> Result<Vec<String>, fmt::Error> {
        let names = |v: VarId| self.var_name(v);
        Printer {
            arena: &self.dag.arena,
            dtype: self.spec.dtype,
            dialect: self.dialect,
            var_name: &names,
        }
        .block(roots, prefix, w)
    }

    /// The buffer pointer of argument `k` of `args` (inputs or outputs).
    fn pointer(&self, output: bool, k: usize) -> String {
        if output {
            format!("sf_out{k}")
        } else {
            format!("sf_in{k}")
        }
    }

    fn input(&self, role: AdjointRole, name: &str) -> Option<(usize, &AdjointArg)> {
        self.layout
            .inputs
            .iter()
            .enumerate()
            .find(|(_, a)| a.role == role && a.name == name)
    }

    fn write(&self, w: &mut SourceWriter) -> fmt::Result {
        writeln!(
            w,
            "/* Generated by spikeforge {}: the adjoint of a {} neuron model ({}, dt = {}). */",
            env!("CARGO_PKG_VERSION"),
            self.spec.dtype.name(),
            self.ir.method.name(),
            self.spec.dt
        )?;
        w.write_str(&super::group_kernel::includes(self.dialect))?;
        w.write_str(&prelude(self.dialect, self.spec.dtype))?;
        w.write_str(&clock_source(self.dialect, self.spec.dt, self.spec.dtype))?;
        writeln!(w)?;
        let pointers: Vec<String> = self
            .layout
            .inputs
            .iter()
            .enumerate()
            .map(|(k, a)| {
                self.dialect
                    .pointer_param(a.elem, &self.pointer(false, k), false)
            })
            .chain(self.layout.outputs.iter().enumerate().map(|(k, a)| {
                self.dialect
                    .pointer_param(a.elem, &self.pointer(true, k), true)
            }))
            .collect();
        match self.dialect {
            Dialect::Cuda => {
                writeln!(
                    w,
                    "extern \"C\" __global__ void {ADJOINT_ENTRY}(\n    const int64_t sf_n, const int64_t sf_n_inner, const int32_t sf_steps,\n    {})\n{{",
                    pointers.join(",\n    ")
                )?;
                w.indented(|w| {
                    w.write_str(
                        "const int64_t sf_i = (int64_t) blockIdx.x * blockDim.x + threadIdx.x;\n",
                    )?;
                    w.write_str("if (sf_i >= sf_n) return;\n")?;
                    self.element(w)
                })?;
                w.write_str("}\n")
            }
            Dialect::C => {
                writeln!(
                    w,
                    "/* Elements [sf_start, sf_end); dims = {{n_inner, steps}}. */\nvoid {ADJOINT_ENTRY}(int64_t sf_start, int64_t sf_end, const int64_t* sf_dims, void* const* sf_ins, void* const* sf_outs)\n{{"
                )?;
                w.indented(|w| {
                    w.write_str(
                        "const int64_t sf_n_inner = sf_dims[0];\nconst int32_t sf_steps = (int32_t) sf_dims[1];\n",
                    )?;
                    for (k, a) in self.layout.inputs.iter().enumerate() {
                        let t = a.elem.c_type();
                        writeln!(w, "const {t}* restrict sf_in{k} = (const {t}*) sf_ins[{k}];")?;
                    }
                    for (k, a) in self.layout.outputs.iter().enumerate() {
                        let t = a.elem.c_type();
                        writeln!(w, "{t}* restrict sf_out{k} = ({t}*) sf_outs[{k}];")?;
                    }
                    w.block("for (int64_t sf_c0 = sf_start; sf_c0 < sf_end;)", |w| {
                        // A block of lanes within one batch member: each step's rows are read
                        // for consecutive elements, as the group kernel reads them.
                        w.write_str("const int64_t sf_b = sf_c0 / sf_n_inner, sf_j0 = sf_c0 - sf_b * sf_n_inner;\nint64_t sf_w = sf_end - sf_c0;\nif (sf_w > SF_LANES) sf_w = SF_LANES;\nif (sf_w > sf_n_inner - sf_j0) sf_w = sf_n_inner - sf_j0;\n")?;
                        self.element(w)?;
                        w.write_str("sf_c0 += sf_w;\n")
                    })
                })?;
                w.write_str("}\n")
            }
        }
    }

    /// Loads the per-step values of step `sf_s` (the states at its start, the per-step inputs)
    /// into locals named as the DAG reads them, and its time.
    fn load_step(&self, w: &mut SourceWriter) -> fmt::Result {
        let real = self.real();
        w.write_str("const int64_t sf_row = (sf_b * (int64_t) sf_steps + sf_s) * sf_n_inner + sf_j;\nconst int64_t sf_t_step = sf_t0 + sf_s;\n")?;
        writeln!(
            w,
            "const {real} sf_t = ({real}) sf_t_step * {};",
            super::printer::literal(self.spec.dt, self.spec.dtype)
        )?;
        for (k, a) in self.layout.inputs.iter().enumerate() {
            let name = match (a.role, a.var) {
                (AdjointRole::State, Some(v)) => ident(&self.ir.symbol(v).name),
                (AdjointRole::Input, Some(v)) if a.shape == AdjointShape::PerStep => {
                    ident(&self.ir.symbol(v).name)
                }
                _ => continue,
            };
            writeln!(
                w,
                "const {} {name} = sf_in{k}[sf_row];",
                self.local_type(a.elem)
            )?;
        }
        Ok(())
    }

    /// The whole backward walk of one element `sf_i` (CUDA) or one block of lanes (C).
    fn element(&self, w: &mut SourceWriter) -> fmt::Result {
        let real = self.real();
        let cuda = self.dialect == Dialect::Cuda;
        if cuda {
            w.write_str("const int64_t sf_b = sf_i / sf_n_inner;\nconst int64_t sf_j = sf_i - sf_b * sf_n_inner;\n")?;
        }
        let (t, _) = self
            .input(AdjointRole::Time, "t")
            .expect("the time is an input");
        writeln!(w, "const int64_t sf_t0 = sf_start_step(sf_in{t}, sf_b);")?;
        // The values the walk keeps per element: registers (CUDA) or lane arrays (C).
        let mut kept: Vec<(usize, String, &'static str, &'static str)> = Vec::new();
        for (k, a) in self.layout.inputs.iter().enumerate() {
            let Some(v) = a.var else { continue };
            let name = ident(&self.ir.symbol(v).name);
            match a.role {
                AdjointRole::Input if a.shape != AdjointShape::PerStep => {
                    let index = if a.shape == AdjointShape::Batch {
                        "sf_b"
                    } else {
                        "sf_i"
                    };
                    kept.push((k, name, self.local_type(a.elem), index));
                }
                AdjointRole::Adjoint => kept.push((k, format!("sf_a_{name}"), real, "sf_i")),
                AdjointRole::Grad => kept.push((k, format!("sf_g_{name}"), real, "sf_i")),
                _ => {}
            }
        }
        let refractory = self.refractory_steps();
        if cuda {
            for (k, name, ty, index) in &kept {
                writeln!(w, "{ty} {name} = sf_in{k}[{index}];")?;
            }
        } else {
            for (_, name, ty, _) in &kept {
                writeln!(w, "{ty} {name}[SF_LANES];")?;
            }
            if refractory.is_some() {
                w.write_str("int32_t sf_free_from[SF_LANES];\n")?;
            }
        }
        let lane = self.lane();
        self.per_element(w, |w| {
            if !cuda {
                for (k, name, _, index) in &kept {
                    writeln!(w, "{name}{lane} = sf_in{k}[{index}];")?;
                }
            }
            if let (Some(r), Some((ls, _))) =
                (refractory, self.input(AdjointRole::Lastspike, "lastspike"))
            {
                writeln!(
                    w,
                    "{}sf_free_from{lane} = sf_first_free_step(sf_in{ls}, sf_i, sf_t0, {r}LL);",
                    if cuda { "int32_t " } else { "" }
                )?;
            }
            Ok(())
        })?;
        if let Some(r) = refractory {
            w.block("for (int32_t sf_s = 0; sf_s < sf_steps; ++sf_s)", |w| {
                self.per_element(w, |w| self.refractory_walk(w, r))
            })?;
        }
        w.block(
            "for (int32_t sf_s = sf_steps - 1; sf_s >= 0; --sf_s)",
            |w| self.per_element(w, |w| self.backward_step(w)),
        )?;
        self.per_element(w, |w| {
            for (k, a) in self.layout.outputs.iter().enumerate() {
                if a.shape != AdjointShape::Neuron {
                    continue;
                }
                let v = a.var.expect("adjoints and gradients name their variable");
                let prefix = if a.role == AdjointRole::Adjoint {
                    "sf_a_"
                } else {
                    "sf_g_"
                };
                writeln!(
                    w,
                    "sf_out{k}[sf_i] = {prefix}{}{lane};",
                    ident(&self.ir.symbol(v).name)
                )?;
            }
            Ok(())
        })
    }

    /// The refractory period in steps, when there is one (a constant, checked).
    fn refractory_steps(&self) -> Option<i64> {
        let RefractoryIr::Duration(d) = self.ir.events.refractory else {
            return None;
        };
        let d = self
            .ir
            .arena
            .as_const(d)
            .expect("checked: a constant duration");
        Some(crate::step::timestep(d, self.spec.dt).clamp(0, 1 << 61))
    }

    /// With a constant refractory period of `r` steps, one step of the forward walk over the
    /// segment: the step's `not_refractory` from the checkpoint's last spike and the recomputed
    /// spikes (the group kernel's bookkeeping: the step of the segment from which the element
    /// is free again), kept in the scratch output for the backward walk.
    fn refractory_walk(&self, w: &mut SourceWriter, r: i64) -> fmt::Result {
        let lane = self.lane();
        let scratch = self
            .layout
            .outputs
            .iter()
            .position(|a| a.role == AdjointRole::NotRefractory)
            .expect("a refractory period has the scratch");
        let free = if r >= i64::from(i32::MAX) {
            "2147483647".to_string()
        } else {
            format!("(sf_s > {} ? 2147483647 : sf_s + {r})", i32::MAX as i64 - r)
        };
        let spike = self
            .dag
            .spike
            .expect("a refractory period needs a threshold");
        self.load_step(w)?;
        writeln!(
            w,
            "const {} sf_not_refractory = sf_s >= sf_free_from{lane};",
            self.dialect.bool_type()
        )?;
        let text = self.print_block(&[spike], "sf_f", w)?.remove(0);
        writeln!(w, "if ({text}) sf_free_from{lane} = {free};")?;
        writeln!(w, "sf_out{scratch}[sf_row] = sf_not_refractory != 0;")
    }

    /// One step backwards: the adjoints at its start and the inputs' gradients.
    fn backward_step(&self, w: &mut SourceWriter) -> fmt::Result {
        let real = self.real();
        self.load_step(w)?;
        if let Some(k) = self
            .layout
            .outputs
            .iter()
            .position(|a| a.role == AdjointRole::NotRefractory)
        {
            writeln!(
                w,
                "const {} sf_not_refractory = sf_out{k}[sf_row] != 0;",
                self.dialect.bool_type()
            )?;
        }
        let mut rec = 0;
        for (k, a) in self.layout.inputs.iter().enumerate() {
            match a.role {
                AdjointRole::SpikeCotangent => {
                    writeln!(w, "const {real} sf_a_spike = sf_in{k}[sf_row];")?
                }
                AdjointRole::TraceCotangent => {
                    writeln!(w, "const {real} sf_a_rec{rec} = sf_in{k}[sf_row];")?;
                    rec += 1;
                }
                _ => {}
            }
        }
        let texts = self.print_block(&self.dag.roots(), "sf_d", w)?;
        let (adjoints, inputs) = texts.split_at(self.dag.adjoint.len());
        // Every new adjoint is computed from the old ones before any is replaced.
        for (v, text) in self.dag.stored.iter().zip(adjoints) {
            writeln!(
                w,
                "const {real} sf_n_{} = {text};",
                ident(&self.ir.symbol(*v).name)
            )?;
        }
        for ((v, _), text) in self.dag.inputs.iter().zip(inputs) {
            let name = ident(&self.ir.symbol(*v).name);
            if self.ir.symbol(*v).kind == SymbolKind::PerStep {
                let k = self
                    .layout
                    .outputs
                    .iter()
                    .position(|a| a.var == Some(*v) && a.role == AdjointRole::Grad)
                    .expect("every per-step input has its gradient");
                writeln!(w, "sf_out{k}[sf_row] = {text};")?;
            } else {
                writeln!(w, "sf_g_{name}{} += {text};", self.lane())?;
            }
        }
        for v in &self.dag.stored {
            let name = ident(&self.ir.symbol(*v).name);
            writeln!(w, "sf_a_{name}{} = sf_n_{name};", self.lane())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Method, Surrogate, SurrogateKind};

    /// A LIF model with a refractory period, a per-step input and a per-neuron constant.
    pub(crate) fn lif() -> ModelSpec {
        ModelSpec::from_equations(
            "dv/dt = (v_rest - v + I) / tau : 1 (unless refractory)\nI : 1",
            0.1,
        )
        .threshold("v > v_th")
        .reset("v = v_r")
        .refractory(0.5)
        .constants([("v_rest", 0.0), ("tau", 10.0), ("v_th", 1.0), ("v_r", 0.0)])
        .per_neuron(["tau"])
        .per_step(["I"])
        .record(["v"])
        .method(Method::Euler)
        .surrogate(Surrogate::new(SurrogateKind::FastSigmoid, 10.0))
    }

    #[test]
    fn layout_orders_states_inputs_adjoints_and_gradients() {
        let spec = lif();
        let (ir, _) = crate::codegen::prepare(&spec).unwrap();
        let k = generate_adjoint(&ir, &spec, Dialect::C).unwrap();
        let names = |args: &[AdjointArg]| args.iter().map(|a| a.name.clone()).collect::<Vec<_>>();
        assert_eq!(
            names(&k.layout.inputs),
            [
                "state:v",
                "lastspike",
                "tau",
                "I",
                "t",
                "adjoint:v",
                "spike_cotangent",
                "trace_cotangent:v",
                "grad:tau"
            ]
        );
        assert_eq!(
            names(&k.layout.outputs),
            ["adjoint:v", "grad:tau", "grad:I", "not_refractory"]
        );
        assert!(k.source.contains("sf_neuron_adjoint"), "{}", k.source);
    }
}
