//! The adjoint (reverse-time) kernel of a neuron group: the whole backward pass of a run, in
//! one launch.
//!
//! Backpropagation through a run of `steps` steps needs each step's start values, backwards.
//! The forward pass under differentiation is the group kernel with `spec.checkpoint`: besides
//! its usual results it keeps the state every `k` steps (checkpoints, `O(N steps/k)`). Each
//! element is independent (one CUDA thread, or one lane of a C block), so this kernel, for each
//! segment from the last, walks the segment forwards again from its checkpoint with the forward
//! step of the same DAG the group kernel prints ([`crate::step::build`], kept in
//! [`AdjointDag::next_state`] and printed by the same [`Printer`]), keeping each step's start
//! values, then walks them backwards, applying the adjoint of one step
//! ([`crate::step::adjoint`]) with the adjoints and accumulated gradients in registers (lanes in
//! C). One launch, however many segments.
//!
//! Where the segment's start values are kept ([`SegmentStore`]):
//! - **registers** (`k <= register_segment`, [`register_segment`]: the model's step values times
//!   `k` fit a register budget): `k` is a constant of the source (`SF_K`), both walks are fully
//!   unrolled, so each step's start values (the stored variables, the per-step inputs it read,
//!   `not_refractory`) are local arrays indexed by constants, which the compiler keeps in
//!   registers (in C, arrays on the stack, `[SF_K][SF_LANES]`). The backward pass then reads
//!   only the checkpoints, each per-step input once and the cotangents, and writes the
//!   gradients: no scratch traffic. Full segments are walked without guards (so that the loads
//!   of a segment are issued together); the last one, shorter when `k` does not divide
//!   `steps`, has each step guarded. Rows are reached through pointers moved a row at a time
//!   (few instructions a step: at 1M elements the kernel is otherwise bound by issue, not
//!   memory). Memory `O(N steps/k)`.
//! - **scratch** (a larger `k`, or a model whose step keeps too many values): a per-element
//!   scratch of `2 k` rows in global memory (`O(N (steps/k + k))`). While a segment is walked
//!   back from one half, the segment before it is recomputed into the other, in the same loop:
//!   the two walks are independent chains of arithmetic and loads, which a thread whose walk
//!   waits on memory overlaps.
//!
//! With a refractory period, the checkpoints keep the steps for which the element stays
//! refractory (`uint8` where the period is short enough, else int32: see
//! [`crate::codegen::layout::refractory_left_elem`]); the walks turn them into the group
//! kernel's bookkeeping (the step of the run from which the element is free again) and update it
//! as the group kernel does (the same int32 comparison; in registers, counted from the segment's first step, the
//! same booleans); each step's `not_refractory` is kept for the backward walk.
//!
//! The surrogates' reciprocals (`Func::Recip`) are one approximate instruction in the CUDA
//! float32 kernels ([`crate::codegen::printer::reciprocal`]), exact divisions elsewhere.
//!
//! Layout ([`adjoint_layout`], the same for both stores); `(nb, rows, n_inner)` a buffer of rows
//! per batch member: per step (`steps` rows), per recorded step (`ceil(steps / record_every)`),
//! per segment (`ceil(steps / k)`) or per step of two segments (`2 k`, the scratch; empty, `(0,)`,
//! when the segment is in registers). Inputs: `checkpoint:<x>` per segment for
//! each stored variable, `checkpoint:refractory_left` per segment (uint8 or int32, with a refractory period),
//! every parameter `(n,)` (or `(nb,)` when shared), every per-neuron constant `(n,)`, every
//! per-step input per step, `t` `(nb, 2)` (the run's start), `adjoint:<x>` `(n,)` (at the run's
//! end), `spike_count_cotangent` `(n,)`, `spike_cotangent` per step (a spike train's; empty,
//! `(0,)`, when the call has none, attribute `spike_train` 0), `trace_cotangent:<r>` per
//! recorded step for each recorded name. Outputs: `adjoint:<x>` (at the run's start),
//! `grad:<p>` `(n,)` for each differentiable parameter or per-neuron constant, `grad:<q>` per
//! step for each real per-step input, and the scratch: `segment:<x>` per step of two segments,
//! `not_refractory` per step of two segments (bool, with a refractory period).

use std::fmt::{self, Write};

use serde::Serialize;

use super::clock::clock_source;
use super::dialect::Dialect;
use super::identifiers::ident;
use super::layout::{constant_refractory_steps, elem_json, refractory_left_elem, value_elem};
use super::printer::{local_type, prelude, reciprocal, Printer};
use super::writer::{render, SourceWriter};
use crate::ir::{GroupIr, IndexOf, RefractoryIr, SymbolKind, ValueType, VarId};
use crate::spec::ModelSpec;
use crate::step::adjoint::{adjoint, AdjointDag, NotDifferentiable};
use crate::types::ElemType;

/// The name of the generated entry point in both dialects.
pub const ADJOINT_ENTRY: &str = "sf_neuron_adjoint";

/// The shape of an adjoint kernel buffer: `(n,)`, `(nb,)`, rows per batch member `(nb, rows,
/// n_inner)` (per step, per recorded step, per segment, per step of two segments), or `(nb, 2)`
/// float64 word pairs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AdjointShape {
    Neuron,
    Batch,
    PerStep,
    /// Per step when the call passes a spike train's cotangent (attribute `spike_train` 1),
    /// else empty, `(0,)`.
    OptionalPerStep,
    PerRecord,
    PerSegment,
    /// Per step of two segments on the scratch path; empty, `(0,)`, when the segment is kept in
    /// registers ([`SegmentStore::Registers`]).
    SegmentStep,
    BatchWords,
}

/// What a buffer of the adjoint kernel holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AdjointRole {
    /// A parameter, per-neuron constant or per-step input, as the forward kernel reads it.
    Input,
    Time,
    /// The adjoint of a stored variable.
    Adjoint,
    /// The cotangent of each step's spike (a spike train's), per step.
    SpikeCotangent,
    /// The cotangent of the spike count, which every step's spike adds to.
    SpikeCountCotangent,
    TraceCotangent,
    /// A gradient of a differentiable input.
    Grad,
    /// A stored variable (or, with a refractory period, `refractory_left`: the steps for which
    /// the element stays refractory) at the start of each segment, as the forward kernel
    /// wrote it (`spec.checkpoint`, [`crate::codegen::layout::Role::Checkpoint`]).
    Checkpoint,
    /// Scratch: a stored variable at the start of each step of the segment being walked back.
    Segment,
    /// Scratch: `not_refractory` of each step of the segment being walked back.
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
    let stored = |role: AdjointRole, shape: AdjointShape, prefix: &str| -> Vec<AdjointArg> {
        dag.stored
            .iter()
            .map(|v| named(*v, role, shape, prefix))
            .collect()
    };
    let mut inputs = stored(
        AdjointRole::Checkpoint,
        AdjointShape::PerSegment,
        "checkpoint:",
    );
    if has_refractory(ir) {
        inputs.push(buffer(
            "checkpoint:refractory_left".into(),
            AdjointRole::Checkpoint,
            refractory_left_elem(ir, spec.dt),
            AdjointShape::PerSegment,
        ));
    }
    for v in ir.vars_of_kind(&SymbolKind::Param) {
        let shape = if ir.symbol(v).shared {
            AdjointShape::Batch
        } else {
            AdjointShape::Neuron
        };
        inputs.push(named(v, AdjointRole::Input, shape, ""));
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
    let adjoints = stored(AdjointRole::Adjoint, AdjointShape::Neuron, "adjoint:");
    inputs.extend(adjoints.iter().cloned());
    inputs.push(buffer(
        "spike_count_cotangent".into(),
        AdjointRole::SpikeCountCotangent,
        real,
        AdjointShape::Neuron,
    ));
    inputs.push(buffer(
        "spike_cotangent".into(),
        AdjointRole::SpikeCotangent,
        real,
        AdjointShape::OptionalPerStep,
    ));
    for name in &spec.record {
        inputs.push(buffer(
            format!("trace_cotangent:{name}"),
            AdjointRole::TraceCotangent,
            real,
            AdjointShape::PerRecord,
        ));
    }
    let (per_step, accumulated): (Vec<VarId>, Vec<VarId>) = dag
        .inputs
        .iter()
        .map(|(v, _)| *v)
        .partition(|v| ir.symbol(*v).kind == SymbolKind::PerStep);
    let mut outputs = adjoints;
    outputs.extend(accumulated.iter().map(|v| {
        AdjointArg {
            // A shared parameter's gradient is kept per element; Python sums it.
            shape: AdjointShape::Neuron,
            ..named(*v, AdjointRole::Grad, AdjointShape::Neuron, "grad:")
        }
    }));
    outputs.extend(
        per_step
            .iter()
            .map(|v| named(*v, AdjointRole::Grad, AdjointShape::PerStep, "grad:")),
    );
    outputs.extend(stored(
        AdjointRole::Segment,
        AdjointShape::SegmentStep,
        "segment:",
    ));
    if has_refractory(ir) {
        outputs.push(buffer(
            "not_refractory".into(),
            AdjointRole::NotRefractory,
            ElemType::Bool,
            AdjointShape::SegmentStep,
        ));
    }
    AdjointLayout { inputs, outputs }
}

fn has_refractory(ir: &GroupIr) -> bool {
    matches!(ir.events.refractory, RefractoryIr::Duration(_))
}

/// Where the backward pass keeps a segment's recomputed start-of-step values while it walks it
/// back (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegmentStore {
    /// Local arrays of `k` steps, a constant of the source: registers on CUDA.
    Registers(usize),
    /// The `segment:<x>` / `not_refractory` outputs, `2 k` rows in global memory.
    Scratch,
}

impl SegmentStore {
    /// The store of a run with checkpoints every `k` steps, for a model whose segments of up
    /// to `register_segment` steps fit in registers.
    pub fn for_segment(k: usize, register_segment: usize) -> SegmentStore {
        if k <= register_segment {
            SegmentStore::Registers(k)
        } else {
            SegmentStore::Scratch
        }
    }
}

/// How the CUDA kernel issues its memory traffic: the same arithmetic, so the same results bit
/// for bit (`tests/neuron_adjoint_stores.rs`), only the loads' and stores' placement and cache
/// hints differ. The C dialect ignores it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AdjointTuning {
    /// With the segment in registers: the next segment's checkpoint and per-step inputs are
    /// loaded before the current segment is walked back (into a second set of registers), so
    /// that their loads are in flight while the backward walk computes and stores, instead of
    /// every segment waiting on its own loads first.
    pub prefetch: bool,
    /// Streaming cache hints (`__ldcs`, `__stcs`: evict first) on what the kernel touches
    /// once: per-step inputs, checkpoints, cotangents read, per-step gradients written.
    pub streaming: bool,
    /// The most registers a thread may use (NVRTC's `--maxrregcount`): more threads resident on
    /// a multiprocessor, for a kernel that spills nothing under it
    /// ([`AdjointTuning::compile_options`]). 0: the handler's default, 40 for a segment in
    /// registers where that spills nothing, else the compiler's choice
    /// (`handlers::neuron_grad`); `registers=255` leaves the choice to the compiler.
    pub max_registers: u32,
    /// The surrogates' reciprocal as the IEEE division in float32 too (`sf_rcp`, see
    /// [`crate::codegen::printer::reciprocal`]), as before it was one approximate instruction:
    /// results as the CPU's, for comparing the two on a GPU.
    pub exact_reciprocal: bool,
}

impl AdjointTuning {
    /// The tuning of `spikeforge_neuron_grad` unless `SPIKEFORGE_ADJOINT_TUNING` says otherwise.
    pub const DEFAULT: AdjointTuning = AdjointTuning {
        prefetch: false,
        streaming: false,
        max_registers: 0,
        exact_reciprocal: false,
    };

    /// `none`, `default`, or a comma-separated list of `prefetch`, `streaming`,
    /// `exact_reciprocal` and `registers=N` (N in 16..=255); `None` for anything else.
    pub fn parse(text: &str) -> Option<AdjointTuning> {
        let mut t = AdjointTuning::default();
        match text.trim() {
            "none" => return Some(t),
            "default" => return Some(AdjointTuning::DEFAULT),
            list => {
                for word in list.split(',').map(str::trim) {
                    match word {
                        "prefetch" => t.prefetch = true,
                        "streaming" => t.streaming = true,
                        "exact_reciprocal" => t.exact_reciprocal = true,
                        other => {
                            let n = other.strip_prefix("registers=")?.parse::<u32>().ok()?;
                            if !(16..=255).contains(&n) {
                                return None;
                            }
                            t.max_registers = n;
                        }
                    }
                }
            }
        }
        Some(t)
    }

    /// A short name for kernel keys and reports, as [`AdjointTuning::parse`] reads it:
    /// `none`, `prefetch`, `prefetch,streaming,registers=64`, `exact_reciprocal`, ...
    pub fn name(self) -> String {
        let mut words: Vec<String> = [
            (self.prefetch, "prefetch"),
            (self.streaming, "streaming"),
            (self.exact_reciprocal, "exact_reciprocal"),
        ]
        .into_iter()
        .filter(|(on, _)| *on)
        .map(|(_, w)| w.to_string())
        .collect();
        if self.max_registers > 0 {
            words.push(format!("registers={}", self.max_registers));
        }
        if words.is_empty() {
            "none".into()
        } else {
            words.join(",")
        }
    }

    /// The NVRTC options beyond the defaults that this tuning compiles with.
    pub fn compile_options(self) -> Vec<String> {
        if self.max_registers > 0 {
            vec![format!("--maxrregcount={}", self.max_registers)]
        } else {
            Vec::new()
        }
    }
}

/// The 32-bit registers a thread may give to a segment's kept values: with the walk's own
/// values (the step's arithmetic, adjoints, parameters) it stays well within the 255 a CUDA
/// thread has, so that the kernel does not spill.
pub const SEGMENT_REGISTERS: usize = 96;

/// The longest segment kept in registers: more steps, more code (both walks are unrolled) and
/// fewer threads per multiprocessor, for checkpoints that are already few.
pub const MAX_REGISTER_SEGMENT: usize = 32;

/// The shortest: a model whose step keeps so many values, or is so long, that fewer steps fit
/// takes the scratch path.
const MIN_REGISTER_SEGMENT: usize = 4;

/// The expression nodes of the adjoint DAG (forward and backward step) times the segment's
/// steps that the unrolled walks may hold: a model with a long step (Hodgkin-Huxley's rates, a
/// Runge-Kutta method with sub-steps) keeps so many temporaries live that a few steps unrolled
/// spill to local memory, and NVRTC takes long over the unrolled code. Measured with ptxas for
/// sm_90 (`tests/nvrtc_compile_check.rs` checks that no kernel in registers spills): a LIF
/// (58 nodes) at 32 steps uses 104 registers, an adaptive LIF in float64 (137) at 16 steps 162;
/// a Hodgkin-Huxley model (about 2000) spills at 4.
pub const UNROLLED_NODES: usize = 2560;

/// The longest segment (steps between checkpoints) whose start values the backward pass keeps
/// in registers for this model, or 0 when its step keeps too many values ([`SEGMENT_REGISTERS`]
/// 32-bit words over what one step keeps: each stored variable and per-step input, and
/// `not_refractory`) or is too long ([`UNROLLED_NODES`]).
pub fn register_segment(ir: &GroupIr, spec: &ModelSpec, dag: &AdjointDag) -> usize {
    let words = |e: ElemType| e.size().div_ceil(4);
    let real = spec.dtype;
    let stored: usize = dag
        .stored
        .iter()
        .map(|v| words(value_elem(ir.symbol(*v).value, real)))
        .sum();
    let inputs: usize = ir
        .vars_of_kind(&SymbolKind::PerStep)
        .into_iter()
        .map(|v| words(value_elem(ir.symbol(v).value, real)))
        .sum();
    let per_step = stored + inputs + usize::from(has_refractory(ir));
    // A float64 walk's own values (the step's arithmetic, adjoints) take two registers each
    // too: three quarters of the budget for its segment (Izhikevich in float64 at 16 steps,
    // its full segments' loads issued together, spilled at 255 registers).
    let budget = match real.size() {
        8 => SEGMENT_REGISTERS * 3 / 4,
        _ => SEGMENT_REGISTERS,
    };
    let k = (budget / per_step.max(1))
        .min(UNROLLED_NODES / dag.arena.len().max(1))
        .min(MAX_REGISTER_SEGMENT);
    if k < MIN_REGISTER_SEGMENT {
        0
    } else {
        k
    }
}

/// A generated adjoint kernel: its source, argument layout and the longest segment it would
/// keep in registers.
#[derive(Clone, Debug)]
pub struct GeneratedAdjoint {
    pub source: String,
    pub entry: &'static str,
    pub layout: AdjointLayout,
    /// [`register_segment`] of the model: a run with checkpoints every `k <= register_segment`
    /// steps keeps its segments in registers (its scratch outputs empty, `(0,)`), and its
    /// source depends on `k`; a larger `k`, the scratch, whose source does not.
    pub register_segment: usize,
    /// Where this source keeps a segment.
    pub store: SegmentStore,
}

/// The adjoint kernel of `ir` (lowered from `spec`) in `dialect` for runs with checkpoints
/// every `segment` steps, or why the model's runs are not differentiable.
pub fn generate_adjoint(
    ir: &GroupIr,
    spec: &ModelSpec,
    dialect: Dialect,
    segment: usize,
) -> Result<GeneratedAdjoint, NotDifferentiable> {
    generate_adjoint_tuned(ir, spec, dialect, segment, AdjointTuning::DEFAULT, None)
}

/// [`generate_adjoint`] with the CUDA kernel's memory traffic tuned by `tuning`, for calls
/// that pass a spike train's cotangent or not (`spike_train`: a constant of the source, so
/// that the walks hold no branch on it; `None`: read at run time, `sf_spike_train`).
pub fn generate_adjoint_tuned(
    ir: &GroupIr,
    spec: &ModelSpec,
    dialect: Dialect,
    segment: usize,
    tuning: AdjointTuning,
    spike_train: Option<bool>,
) -> Result<GeneratedAdjoint, NotDifferentiable> {
    generate(ir, spec, dialect, tuning, spike_train, |limit| {
        SegmentStore::for_segment(segment, limit)
    })
}

/// [`generate_adjoint_tuned`] with the store chosen by the caller, whatever the model's
/// [`register_segment`]: for tests that run one `k` in both stores.
pub fn generate_adjoint_in(
    ir: &GroupIr,
    spec: &ModelSpec,
    dialect: Dialect,
    store: SegmentStore,
    tuning: AdjointTuning,
) -> Result<GeneratedAdjoint, NotDifferentiable> {
    generate(ir, spec, dialect, tuning, None, |_| store)
}

/// The kernel with the store `choose` picks from the model's [`register_segment`].
fn generate(
    ir: &GroupIr,
    spec: &ModelSpec,
    dialect: Dialect,
    tuning: AdjointTuning,
    spike_train: Option<bool>,
    choose: impl FnOnce(usize) -> SegmentStore,
) -> Result<GeneratedAdjoint, NotDifferentiable> {
    if spec.storage.is_some() {
        return Err(NotDifferentiable(
            "its state is stored as float16 / bfloat16; differentiate float32 or float64 runs"
                .into(),
        ));
    }
    let dag = adjoint(ir, &spec.record, spec.surrogate)?;
    let layout = adjoint_layout(ir, spec, &dag);
    let register_segment = register_segment(ir, spec, &dag);
    let store = choose(register_segment);
    let writer = AdjointWriter {
        ir,
        spec,
        dag: &dag,
        layout: &layout,
        dialect,
        store,
        tuning: match dialect {
            Dialect::Cuda => tuning,
            Dialect::C => AdjointTuning::default(),
        },
        spike_train,
        guarded: true,
    };
    Ok(GeneratedAdjoint {
        source: render(|w| writer.write(w)),
        entry: ADJOINT_ENTRY,
        layout,
        register_segment,
        store,
    })
}

#[derive(Clone, Copy)]
struct AdjointWriter<'a> {
    ir: &'a GroupIr,
    spec: &'a ModelSpec,
    dag: &'a AdjointDag,
    layout: &'a AdjointLayout,
    dialect: Dialect,
    store: SegmentStore,
    /// Always the untuned default in C.
    tuning: AdjointTuning,
    /// Whether the calls pass a spike train's cotangent, when the source is for such calls.
    spike_train: Option<bool>,
    /// In registers: whether the segment being printed may be the run's shorter last one,
    /// whose steps past the run's end read nothing and change nothing (`sf_u < sf_len`); the
    /// full segments are printed without these guards.
    guarded: bool,
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

    /// [`Self::per_element`] for a step's body: in C, an `omp simd` loop over the lanes (they
    /// are independent), so that the compiler vectorises across elements as in the group
    /// kernel.
    fn per_element_step(
        &self,
        w: &mut SourceWriter,
        body: impl FnOnce(&mut SourceWriter) -> fmt::Result,
    ) -> fmt::Result {
        if self.dialect == Dialect::C {
            w.write_str("#pragma omp simd\n")?;
        }
        self.per_element(w, body)
    }

    /// A loop over steps, on CUDA with `#pragma {unroll}`: `unroll 4` on the scratch path, as
    /// the group kernel's, so that the loads of later steps (which do not depend on the walk's
    /// values) are issued early; `unroll` (fully) for a segment in registers, so that every
    /// index of the kept arrays is a constant.
    fn step_loop(
        &self,
        w: &mut SourceWriter,
        unroll: &str,
        head: &str,
        body: impl FnOnce(&mut SourceWriter) -> fmt::Result,
    ) -> fmt::Result {
        if self.dialect == Dialect::Cuda {
            writeln!(w, "#pragma {unroll}")?;
        }
        w.block(head, body)
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

    /// Element `index` of input `k`, read once by the kernel: with a streaming hint
    /// ([`AdjointTuning::streaming`]) where CUDA has one for its type.
    fn read_once(&self, k: usize, index: &str) -> String {
        self.read_at(k, &format!("sf_in{k}[{index}]"))
    }

    /// [`Self::read_once`] of the element `place` of input `k` (`sf_in2[i]`, `sf_row_in2[0]`).
    fn read_at(&self, k: usize, place: &str) -> String {
        if self.streams(self.layout.inputs[k].elem) {
            format!("__ldcs(&{place})")
        } else {
            place.to_string()
        }
    }

    /// The statement that writes `value` to element `index` of output `k`, written once by the
    /// kernel (see [`Self::read_once`]).
    fn write_once(&self, k: usize, index: &str, value: &str) -> String {
        self.write_at(k, &format!("sf_out{k}[{index}]"), value)
    }

    /// [`Self::write_once`] to the element `place` of output `k`.
    fn write_at(&self, k: usize, place: &str, value: &str) -> String {
        if self.streams(self.layout.outputs[k].elem) {
            format!("__stcs(&{place}, {value});")
        } else {
            format!("{place} = {value};")
        }
    }

    /// With the segment in registers, per-step and per-record rows are reached through
    /// pointers that the walks move a row at a time ([`Self::walk_in_registers`]): the pointer
    /// to input (`output`: output) `k`'s row, at this thread's element (CUDA) or the block's
    /// first lane's (C).
    fn row_pointer(output: bool, k: usize) -> String {
        if output {
            format!("sf_row_out{k}")
        } else {
            format!("sf_row_in{k}")
        }
    }

    /// With the segment in registers: the pointer to checkpoint input `k`'s row of the segment
    /// being walked (from the last, a row back after each).
    fn checkpoint_pointer(k: usize) -> String {
        format!("sf_ckpt_in{k}")
    }

    /// With the segment in registers: the pointer to per-step input `k`'s first row of the
    /// segment being walked (from the last, `SF_K` rows back after each).
    fn segment_pointer(k: usize) -> String {
        format!("sf_seg_in{k}")
    }

    /// The element of the row `pointer` points at ([`Self::row_pointer`]): the thread's, or the
    /// lane's in C.
    fn at(&self, pointer: &str) -> String {
        match self.dialect {
            Dialect::Cuda => format!("{pointer}[0]"),
            Dialect::C => format!("{pointer}[sf_l]"),
        }
    }

    /// The index of this thread's element (CUDA) or the block's first lane's (C) in row `row`
    /// of a `(nb, rows, n_inner)` buffer, as a row pointer starts ([`Self::row_pointer`]).
    fn first_of_row(&self, rows: &str, row: &str) -> String {
        let j = match self.dialect {
            Dialect::Cuda => "sf_j",
            Dialect::C => "sf_j0",
        };
        format!("(sf_b * (int64_t) {rows} + {row}) * sf_n_inner + {j}")
    }

    /// Whether loads and stores of `elem` take a streaming hint: `__ldcs` / `__stcs` have
    /// `float`, `double` and `int` forms.
    fn streams(&self, elem: ElemType) -> bool {
        self.tuning.streaming && matches!(elem, ElemType::F32 | ElemType::F64 | ElemType::I32)
    }

    fn input(&self, role: AdjointRole, name: &str) -> Option<(usize, &AdjointArg)> {
        self.layout
            .inputs
            .iter()
            .enumerate()
            .find(|(_, a)| a.role == role && a.name == name)
    }

    /// The index of the output of `role` for `var` (or the one without a variable).
    fn output(&self, role: AdjointRole, var: Option<VarId>) -> Option<usize> {
        self.layout
            .outputs
            .iter()
            .position(|a| a.role == role && a.var == var)
    }

    /// The element `sf_j` of row `row` of a `(nb, rows, n_inner)` buffer.
    fn row_index(rows: &str, row: &str) -> String {
        format!("(sf_b * (int64_t) {rows} + {row}) * sf_n_inner + sf_j")
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
        w.write_str(reciprocal(
            self.dialect,
            self.spec.dtype,
            self.tuning.exact_reciprocal,
        ))?;
        w.write_str(&clock_source(self.dialect, self.spec.dt, self.spec.dtype))?;
        if let SegmentStore::Registers(k) = self.store {
            writeln!(
                w,
                "/* The steps between checkpoints: a segment's start values are kept in local arrays. */\n#define SF_K {k}"
            )?;
        }
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
                    "extern \"C\" __global__ void {ADJOINT_ENTRY}(\n    const int64_t sf_n, const int64_t sf_n_inner, const int32_t sf_steps,\n    const int32_t sf_k, const int32_t sf_rec_every, const int32_t sf_spike_train,\n    {})\n{{",
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
                    "/* Elements [sf_start, sf_end); dims = {{n_inner, steps, k, rec_every, spike_train}}. */\nvoid {ADJOINT_ENTRY}(int64_t sf_start, int64_t sf_end, const int64_t* sf_dims, void* const* sf_ins, void* const* sf_outs)\n{{"
                )?;
                w.indented(|w| {
                    w.write_str(
                        "const int64_t sf_n_inner = sf_dims[0];\nconst int32_t sf_steps = (int32_t) sf_dims[1], sf_k = (int32_t) sf_dims[2], sf_rec_every = (int32_t) sf_dims[3], sf_spike_train = (int32_t) sf_dims[4];\n",
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

    /// Loads what step `sf_s` reads besides the state (its per-step inputs, as locals named as
    /// the DAG reads them) and its time. On the scratch path `sf_row` is the step's row of
    /// per-step buffers; with the segment in registers, the forward walk reads each input from
    /// its row pointer ([`Self::row_pointer`], moved on by [`Self::advance_inputs`]) and keeps
    /// it in its slot, and the backward walk (`kept`) reads it from there.
    fn load_step(&self, w: &mut SourceWriter, kept: bool) -> fmt::Result {
        let real = self.real();
        let registers = matches!(self.store, SegmentStore::Registers(_));
        if !registers {
            writeln!(
                w,
                "const int64_t sf_row = {};",
                Self::row_index("sf_steps", "sf_s")
            )?;
        }
        writeln!(w, "const int64_t sf_t_step = sf_t0 + sf_s;")?;
        writeln!(
            w,
            "const {real} sf_t = ({real}) sf_t_step * {};",
            super::printer::literal(self.spec.dt, self.spec.dtype)
        )?;
        for (k, name, ty) in self.per_step_inputs() {
            let read = self.read_at(k, &self.at(&Self::row_pointer(false, k)));
            if kept {
                writeln!(w, "const {ty} {name} = {};", self.slot(&name))?;
            } else if self.prefetches() {
                let ahead = Self::ahead(&self.slot(&name));
                writeln!(w, "const {ty} {name} = {ahead};")?;
                writeln!(w, "{} = {name};", self.slot(&name))?;
            } else if registers && self.guarded {
                // None past the run's end.
                writeln!(w, "const {ty} {name} = sf_u < sf_len ? {read} : ({ty}) 0;")?;
                writeln!(w, "{} = {name};", self.slot(&name))?;
            } else if registers {
                writeln!(w, "const {ty} {name} = {read};")?;
                writeln!(w, "{} = {name};", self.slot(&name))?;
            } else {
                writeln!(w, "const {ty} {name} = {};", self.read_once(k, "sf_row"))?;
            }
        }
        Ok(())
    }

    /// With the segment in registers, after a step of the forward walk (outside C's loop over
    /// lanes): each per-step input's row pointer moved to the next step's row (not past the
    /// run's end in a shorter last segment).
    fn advance_inputs(&self, w: &mut SourceWriter) -> fmt::Result {
        if self.prefetches() {
            return Ok(());
        }
        let step = if self.guarded {
            "sf_u < sf_len ? sf_stride : 0"
        } else {
            "sf_stride"
        };
        for (k, _, _) in self.per_step_inputs() {
            writeln!(w, "{} += {step};", Self::row_pointer(false, k))?;
        }
        Ok(())
    }

    /// Whether this kernel loads each segment's checkpoint and inputs ahead
    /// ([`AdjointTuning::prefetch`]: CUDA, the segment in registers).
    fn prefetches(&self) -> bool {
        self.tuning.prefetch && matches!(self.store, SegmentStore::Registers(_))
    }

    /// The name of a value's copy loaded ahead: `sf_x_v` -> `sf_next_x_v`.
    fn ahead(name: &str) -> String {
        format!("sf_next_{}", name.strip_prefix("sf_").unwrap_or(name))
    }

    /// The per-step inputs: their input index, name and local type.
    fn per_step_inputs(&self) -> Vec<(usize, String, &'static str)> {
        self.layout
            .inputs
            .iter()
            .enumerate()
            .filter_map(|(k, a)| match (a.role, a.var, a.shape) {
                (AdjointRole::Input, Some(v), AdjointShape::PerStep) => {
                    Some((k, ident(&self.ir.symbol(v).name), self.local_type(a.elem)))
                }
                _ => None,
            })
            .collect()
    }

    /// The walked state's names besides the adjoints: each stored variable's `sf_x_<x>` and,
    /// with a refractory period, `sf_free_from` (CUDA: one element a thread).
    fn walked_state(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .dag
            .stored
            .iter()
            .map(|v| format!("sf_x_{}", ident(&self.ir.symbol(*v).name)))
            .collect();
        if has_refractory(self.ir) {
            names.push("sf_free_from".into());
        }
        names
    }

    /// Loads the checkpoint and every step's per-step inputs of the full segment `segment`
    /// (or the run's last, from clamped rows past its end) into their copies loaded ahead.
    fn load_ahead(
        &self,
        w: &mut SourceWriter,
        segment: &str,
        load_checkpoint: &dyn Fn(&mut SourceWriter, &str, bool) -> fmt::Result,
    ) -> fmt::Result {
        load_checkpoint(w, segment, true)?;
        writeln!(
            w,
            "const int64_t sf_ahead_row = {};",
            Self::row_index("sf_steps", "sf_g_load * SF_K")
        )?;
        self.step_loop(
            w,
            "unroll",
            "for (int32_t sf_u = 0; sf_u < SF_K; ++sf_u)",
            |w| {
                w.write_str(
                    "const int64_t sf_row = sf_ahead_row + (int64_t) sf_u * sf_n_inner;\n",
                )?;
                for (k, name, ty) in self.per_step_inputs() {
                    let ahead = Self::ahead(&self.slot(&name));
                    // None past the run's end.
                    writeln!(
                        w,
                        "{ahead} = sf_g_load * SF_K + sf_u < sf_steps ? {} : ({ty}) 0;",
                        self.read_once(k, "sf_row")
                    )?;
                }
                Ok(())
            },
        )
    }

    /// The slot of step `sf_u` of the segment in registers for the kept value `name` (a stored
    /// variable, a per-step input, `not_refractory`).
    fn slot(&self, name: &str) -> String {
        format!("sf_seg_{name}[sf_u]{}", self.lane())
    }

    /// The whole backward pass of one element `sf_i` (CUDA) or one block of lanes (C): the
    /// segments from the last, each recomputed from its checkpoint and walked back.
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
        let k = match self.store {
            SegmentStore::Registers(_) => "SF_K",
            SegmentStore::Scratch => "sf_k",
        };
        writeln!(w, "const int32_t sf_n_seg = (sf_steps + {k} - 1) / {k};")?;
        if !self.dag.trace_cotangents.is_empty() {
            w.write_str(
                "const int32_t sf_n_rec = (sf_steps + sf_rec_every - 1) / sf_rec_every;\n",
            )?;
        }
        // The values the walks keep per element, and their initial values: registers (CUDA)
        // or lane arrays (C).
        let mut kept: Vec<(String, &'static str, String)> = Vec::new();
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
                    kept.push((name, self.local_type(a.elem), format!("sf_in{k}[{index}]")));
                }
                AdjointRole::Adjoint => {
                    kept.push((format!("sf_a_{name}"), real, format!("sf_in{k}[sf_i]")))
                }
                _ => {}
            }
        }
        let (count, _) = self
            .input(AdjointRole::SpikeCountCotangent, "spike_count_cotangent")
            .expect("the spike count's cotangent is an input");
        kept.push(("sf_a_count".into(), real, format!("sf_in{count}[sf_i]")));
        for a in &self.layout.outputs {
            if let (AdjointRole::Grad, AdjointShape::Neuron, Some(v)) = (a.role, a.shape, a.var) {
                let name = ident(&self.ir.symbol(v).name);
                kept.push((format!("sf_g_{name}"), real, format!("({real}) 0")));
            }
        }
        let refractory = self.refractory_steps();
        // The walked state, loaded from each segment's checkpoint.
        let mut walked: Vec<(String, &'static str)> = self
            .dag
            .stored
            .iter()
            .map(|v| (format!("sf_x_{}", ident(&self.ir.symbol(*v).name)), real))
            .collect();
        if refractory.is_some() {
            walked.push(("sf_free_from".into(), "int32_t"));
        }
        // In registers, the walks count the refractory period from the segment's first step
        // (`sf_rem`, [`Self::refractory_from_segment`]).
        let remaining = if refractory.is_some() && matches!(self.store, SegmentStore::Registers(_))
        {
            match self.dialect {
                Dialect::Cuda => "int32_t sf_rem;\n",
                Dialect::C => "int32_t sf_rem[SF_LANES];\n",
            }
        } else {
            ""
        };
        w.write_str(remaining)?;
        if cuda {
            for (name, ty, init) in &kept {
                writeln!(w, "{ty} {name} = {init};")?;
            }
            for (name, ty) in &walked {
                writeln!(w, "{ty} {name};")?;
                if self.prefetches() {
                    writeln!(w, "{ty} {};", Self::ahead(name))?;
                }
            }
        } else {
            for (name, ty, _) in &kept {
                writeln!(w, "{ty} {name}[SF_LANES];")?;
            }
            for (name, ty) in &walked {
                writeln!(w, "{ty} {name}[SF_LANES];")?;
            }
            self.per_element(w, |w| {
                for (name, _, init) in &kept {
                    writeln!(w, "{name}[sf_l] = {init};")?;
                }
                Ok(())
            })?;
        }
        let lane = self.lane();
        let checkpoints = self.checkpoint_inputs();
        // The checkpoint of `segment` into the walked state, or (`ahead`) into its copy loaded
        // ahead ([`AdjointTuning::prefetch`]).
        let load_checkpoint = |w: &mut SourceWriter, segment: &str, ahead: bool| {
            writeln!(w, "const int32_t sf_g_load = {segment};")?;
            let row = Self::row_index("sf_n_seg", "sf_g_load");
            let first = match self.store {
                SegmentStore::Registers(_) => "sf_g_load * SF_K",
                SegmentStore::Scratch => "sf_g_load * sf_k",
            };
            self.per_element(w, |w| {
                for (k, kept) in &checkpoints {
                    let into = if ahead {
                        Self::ahead(kept)
                    } else {
                        kept.clone()
                    };
                    let value = self.checkpoint_value(*k, self.read_once(*k, &row), first);
                    writeln!(w, "{into} = {value};")?;
                }
                Ok(())
            })
        };
        match self.store {
            SegmentStore::Registers(k) => self.walk_in_registers(w, k, &load_checkpoint)?,
            SegmentStore::Scratch => self.walk_in_scratch(w, &load_checkpoint)?,
        }
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

    /// The walked value that checkpoint input `k`, read as `read`, starts the segment whose first
    /// step is `first` with: a stored variable's as it is; `sf_free_from` from the steps left
    /// of the refractory period (`checkpoint:refractory_left`), as the step the element is free
    /// from (the segment's first when none are left, which for every step of the segment reads
    /// as the forward kernel's earlier step or INT32_MIN did).
    fn checkpoint_value(&self, k: usize, read: String, first: &str) -> String {
        match self.layout.inputs[k].var {
            Some(_) => read,
            None => format!("(int32_t) ({first}) + (int32_t) {read}"),
        }
    }

    /// Each checkpoint input's index and the walked value it starts a segment with
    /// (`sf_x_<x>`, `sf_free_from`; a lane's in C).
    fn checkpoint_inputs(&self) -> Vec<(usize, String)> {
        let lane = self.lane();
        self.layout
            .inputs
            .iter()
            .enumerate()
            .filter(|(_, a)| a.role == AdjointRole::Checkpoint)
            .map(|(k, a)| {
                let kept = match a.var {
                    Some(v) => format!("sf_x_{}{lane}", ident(&self.ir.symbol(v).name)),
                    None => format!("sf_free_from{lane}"),
                };
                (k, kept)
            })
            .collect()
    }

    /// The segments from the last, each recomputed from its checkpoint into the two-half
    /// scratch in global memory and walked back (see the module documentation).
    fn walk_in_scratch(
        &self,
        w: &mut SourceWriter,
        load_checkpoint: &dyn Fn(&mut SourceWriter, &str, bool) -> fmt::Result,
    ) -> fmt::Result {
        let load_checkpoint =
            |w: &mut SourceWriter, segment: &str| load_checkpoint(w, segment, false);
        // One step forwards of the segment that starts at `start`, into the scratch half `half`.
        let forward = |w: &mut SourceWriter, step: &str, start: &str, half: &str| {
            writeln!(
                w,
                "const int32_t sf_s = {step}, sf_seg0 = {start};\nconst int64_t sf_half = {half};"
            )?;
            self.per_element_step(w, |w| self.forward_step(w))
        };
        w.write_str(
            "/* The last segment forwards from its checkpoint into its half of the scratch. */\n",
        )?;
        w.block("if (sf_n_seg > 0)", |w| {
            load_checkpoint(w, "sf_n_seg - 1")?;
            w.write_str("const int32_t sf_s0 = (sf_n_seg - 1) * sf_k;\n")?;
            self.step_loop(
                w,
                "unroll 4",
                "for (int32_t sf_u = 0; sf_u < sf_steps - sf_s0; ++sf_u)",
                |w| {
                    forward(
                        w,
                        "sf_s0 + sf_u",
                        "sf_s0",
                        "((sf_n_seg - 1) & 1) * (int64_t) sf_k",
                    )
                },
            )
        })?;
        w.write_str("/* Each segment from the last backwards, and at the same time (independent work for the\n   same thread) the segment before it forwards into the other half of the scratch. */\n")?;
        w.block("for (int32_t sf_g = sf_n_seg - 1; sf_g >= 0; --sf_g)", |w| {
            w.write_str("const int32_t sf_s0 = sf_g * sf_k;\nconst int32_t sf_s1 = sf_steps - sf_s0 > sf_k ? sf_s0 + sf_k : sf_steps;\n")?;
            w.block("if (sf_g > 0)", |w| load_checkpoint(w, "sf_g - 1"))?;
            self.step_loop(w, "unroll 4", "for (int32_t sf_u = 0; sf_u < sf_k; ++sf_u)", |w| {
                w.block("if (sf_u < sf_s1 - sf_s0)", |w| {
                    w.write_str("const int32_t sf_s = sf_s1 - 1 - sf_u, sf_seg0 = sf_s0;\nconst int64_t sf_half = (sf_g & 1) * (int64_t) sf_k;\n")?;
                    self.record_row(w, "sf_s")?;
                    self.per_element_step(w, |w| self.backward_step(w))
                })?;
                w.block("if (sf_g > 0)", |w| {
                    forward(w, "sf_s0 - sf_k + sf_u", "sf_s0 - sf_k", "((sf_g - 1) & 1) * (int64_t) sf_k")
                })
            })
        })
    }

    /// The segments from the last, each recomputed from its checkpoint into local arrays of
    /// `SF_K` = `k` steps and walked back, both walks unrolled (registers on CUDA). Every step
    /// computes (its loads predicated by `sf_u < sf_len`, so that the compiler issues a
    /// segment's loads together and without branches); in the backward walk only what a step
    /// changes (adjoints, gradients) is guarded by `sf_u < sf_len`, so that the steps past the
    /// run's end in a shorter last segment change nothing.
    ///
    /// Few instructions a step (at 1M elements the kernel must issue fewer than it moves bytes
    /// to be bound by memory): every per-step and per-record row is reached through a pointer
    /// ([`Self::row_pointer`]) that the walks move by a row (`sf_stride`, 32-bit: `n_inner` <
    /// 2^31, which the handler checks) after each step, one address instruction a load or
    /// store instead of 64-bit row products: checkpoints from the last segment's row
    /// backwards, a row a segment; per-step inputs from the segment's first row forwards (the
    /// segments' first rows from the last, `SF_K` rows back a segment); per-step gradients and
    /// the spike train's cotangent from the run's last row backwards across segments; the
    /// traces' cotangents from the last recorded row backwards, a row after each recorded step
    /// (`sf_rec_m` steps to the next recorded one, carried across segments). The refractory
    /// period is counted from the segment's first step ([`Self::refractory_from_segment`]).
    fn walk_in_registers(
        &self,
        w: &mut SourceWriter,
        k: usize,
        load_checkpoint: &dyn Fn(&mut SourceWriter, &str, bool) -> fmt::Result,
    ) -> fmt::Result {
        let dims = match self.dialect {
            Dialect::Cuda => "[SF_K]",
            Dialect::C => "[SF_K][SF_LANES]",
        };
        for (name, ty) in self.segment_values() {
            writeln!(w, "{ty} {name}{dims};")?;
        }
        let prefetch = self.prefetches();
        if prefetch {
            for (_, name, ty) in self.per_step_inputs() {
                writeln!(w, "{ty} {}{dims};", Self::ahead(&format!("sf_seg_{name}")))?;
            }
            w.write_str("/* The last segment's checkpoint and inputs, loaded ahead. */\n")?;
            w.block("if (sf_n_seg > 0)", |w| {
                self.load_ahead(w, "sf_n_seg - 1", load_checkpoint)
            })?;
        }
        if !self.dag.trace_cotangents.is_empty() {
            w.write_str("int32_t sf_rec_m = (int32_t) (((int64_t) sf_n_seg * SF_K - 1) % sf_rec_every);\nconst int32_t sf_rec_k = SF_K % sf_rec_every;\n")?;
        }
        w.write_str("/* Rows a row apart (n_inner < 2^31); the rows the backward walk reads and writes, from the\n   run's last (the traces': the last recorded). */\nconst int32_t sf_stride = (int32_t) sf_n_inner, sf_back = -sf_stride;\n")?;
        for (output, k, rows, ty) in self.backward_rows() {
            let (konst, buffer) = if output {
                ("", format!("sf_out{k}"))
            } else {
                ("const ", format!("sf_in{k}"))
            };
            let last = format!("{rows} - 1");
            writeln!(
                w,
                "{konst}{ty}* {} = {buffer} + ({});",
                Self::row_pointer(output, k),
                self.first_of_row(rows, &last)
            )?;
        }
        if !prefetch {
            // Each segment's checkpoint and first row of the per-step inputs, from the last.
            w.write_str("const int64_t sf_seg_back = (int64_t) SF_K * sf_n_inner;\n")?;
            for (k, _) in self.checkpoint_inputs() {
                writeln!(
                    w,
                    "const {}* {} = sf_in{k} + ({});",
                    self.layout.inputs[k].elem.c_type(),
                    Self::checkpoint_pointer(k),
                    self.first_of_row("sf_n_seg", "sf_n_seg - 1")
                )?;
            }
            for (k, _, _) in self.per_step_inputs() {
                writeln!(
                    w,
                    "const {}* {} = sf_in{k} + ({});",
                    self.layout.inputs[k].elem.c_type(),
                    Self::segment_pointer(k),
                    self.first_of_row("sf_steps", "(sf_n_seg - 1) * SF_K")
                )?;
            }
        }
        writeln!(
            w,
            "/* Segments of SF_K = {k} steps, in registers, from the last: a shorter last one with its\n   steps past the run's end guarded, then the full ones without. */\nint32_t sf_g = sf_n_seg - 1;"
        )?;
        w.block("if (sf_steps - sf_g * SF_K < SF_K)", |w| {
            self.segment_in_registers(w, load_checkpoint)?;
            w.write_str("--sf_g;\n")
        })?;
        let full = AdjointWriter {
            guarded: false,
            ..*self
        };
        w.block("for (; sf_g >= 0; --sf_g)", |w| {
            full.segment_in_registers(w, load_checkpoint)
        })
    }

    /// The rows the backward walk in registers reaches through pointers from the run's end:
    /// `(output, index, rows of the buffer, element type)` of the spike train's cotangent
    /// (unless the source is for calls without one), each per-step gradient (rows `sf_steps`)
    /// and each trace's cotangent (rows `sf_n_rec`).
    fn backward_rows(&self) -> Vec<(bool, usize, &'static str, &'static str)> {
        let mut rows = Vec::new();
        for (k, a) in self.layout.inputs.iter().enumerate() {
            match a.role {
                AdjointRole::SpikeCotangent if self.spike_train != Some(false) => {
                    rows.push((false, k, "sf_steps", a.elem.c_type()))
                }
                AdjointRole::TraceCotangent => rows.push((false, k, "sf_n_rec", a.elem.c_type())),
                _ => {}
            }
        }
        for (k, a) in self.layout.outputs.iter().enumerate() {
            if a.role == AdjointRole::Grad && a.shape == AdjointShape::PerStep {
                rows.push((true, k, "sf_steps", a.elem.c_type()));
            }
        }
        rows
    }

    /// Segment `sf_g` recomputed from its checkpoint into the local arrays and walked back
    /// (see [`Self::walk_in_registers`]); the steps past the run's end guarded when
    /// [`AdjointWriter::guarded`].
    fn segment_in_registers(
        &self,
        w: &mut SourceWriter,
        load_checkpoint: &dyn Fn(&mut SourceWriter, &str, bool) -> fmt::Result,
    ) -> fmt::Result {
        let prefetch = self.prefetches();
        if self.guarded {
            // Steps from the segment's first to the run's end: fewer than SF_K.
            w.write_str("const int32_t sf_s0 = sf_g * SF_K, sf_len = sf_steps - sf_s0;\n")?;
        } else {
            w.write_str("const int32_t sf_s0 = sf_g * SF_K;\n")?;
        }
        if prefetch {
            for kept in self.walked_state() {
                writeln!(w, "{kept} = {};", Self::ahead(&kept))?;
            }
        } else {
            // The segment's checkpoint; its pointers, and the per-step inputs' segment
            // pointers, a segment back.
            let checkpoints = self.checkpoint_inputs();
            self.per_element(w, |w| {
                for (k, kept) in &checkpoints {
                    let place = self.at(&Self::checkpoint_pointer(*k));
                    let value = self.checkpoint_value(*k, self.read_at(*k, &place), "sf_s0");
                    writeln!(w, "{kept} = {value};")?;
                }
                Ok(())
            })?;
            for (k, _) in &checkpoints {
                writeln!(w, "{} += sf_back;", Self::checkpoint_pointer(*k))?;
            }
            for (k, _, _) in self.per_step_inputs() {
                let segment = Self::segment_pointer(k);
                writeln!(
                    w,
                    "const {}* {} = {segment};\n{segment} -= sf_seg_back;",
                    self.layout.inputs[k].elem.c_type(),
                    Self::row_pointer(false, k),
                )?;
            }
        }
        self.refractory_from_segment(w)?;
        w.write_str("/* Forwards from the checkpoint, each step's start values kept (past the run's end in a\n   shorter last segment, from zero inputs: kept values never read). */\n")?;
        self.step_loop(
            w,
            "unroll",
            "for (int32_t sf_u = 0; sf_u < SF_K; ++sf_u)",
            |w| {
                w.write_str("const int32_t sf_s = sf_s0 + sf_u;\n")?;
                self.per_element_step(w, |w| self.forward_step(w))?;
                self.advance_inputs(w)
            },
        )?;
        if prefetch {
            w.write_str("/* The segment before, loaded ahead while this one is walked back. */\n")?;
            w.block("if (sf_g > 0)", |w| {
                self.load_ahead(w, "sf_g - 1", load_checkpoint)
            })?;
        }
        w.write_str(
            "/* Backwards from the kept values; a step past the run's end changes nothing. */\n",
        )?;
        let traces = !self.dag.trace_cotangents.is_empty();
        if traces {
            let within = if self.guarded {
                "if (sf_u < sf_len) "
            } else {
                ""
            };
            writeln!(w, "/* The segment's recorded steps (bit u: step sf_s0 + u; none past the run's end), and the\n   segment before's last step modulo the interval. */\nuint32_t sf_rec_bits = 0;\nfor (int32_t sf_u = SF_K - 1 - sf_rec_m; sf_u >= 0; sf_u -= sf_rec_every) {{\n    {within}sf_rec_bits |= 1u << sf_u;\n}}\nsf_rec_m -= sf_rec_k;\nif (sf_rec_m < 0) sf_rec_m += sf_rec_every;")?;
        }
        self.step_loop(
            w,
            "unroll",
            "for (int32_t sf_r = 0; sf_r < SF_K; ++sf_r)",
            |w| {
                w.write_str(
                    "const int32_t sf_u = SF_K - 1 - sf_r;\nconst int32_t sf_s = sf_s0 + sf_u;\n",
                )?;
                if traces {
                    // Traces are recorded at the start of every rec_every-th step; none read
                    // past the run's end.
                    writeln!(
                        w,
                        "const {} sf_recorded = (sf_rec_bits >> sf_u) & 1u;",
                        self.dialect.bool_type()
                    )?;
                }
                self.per_element_step(w, |w| self.backward_step(w))?;
                // Each row pointer a row back (C: after all lanes), not past the run's end.
                let back = if self.guarded {
                    "sf_u < sf_len ? sf_back : 0"
                } else {
                    "sf_back"
                };
                for (output, k, rows, _) in self.backward_rows() {
                    let step = if rows == "sf_n_rec" {
                        "sf_recorded ? sf_back : 0"
                    } else {
                        back
                    };
                    writeln!(w, "{} += {step};", Self::row_pointer(output, k))?;
                }
                Ok(())
            },
        )
    }

    /// With a refractory period and the segment in registers: `sf_rem`, the steps from the
    /// segment's first until the element is free again (0: free), from the checkpoint's
    /// `sf_free_from`, so that each step compares with its constant offset in the segment
    /// (`sf_u >= sf_rem`) and a spike sets `sf_rem` to a constant: the same `not_refractory` as
    /// the forward kernel's `sf_s >= sf_free_from` (see [`Self::forward_step`]). The difference
    /// is taken in 64 bits: a neuron that never spiked has `sf_free_from` = INT32_MIN, and NVVM
    /// turned `f > s0 ? f - s0 : 0` into `max(f - s0, 0)`, whose 32-bit subtraction wrapped to a
    /// huge count for every segment after the first (each such segment then read as refractory
    /// on the GPU only; the C dialect and the emulation kept the select).
    fn refractory_from_segment(&self, w: &mut SourceWriter) -> fmt::Result {
        if self.refractory_steps().is_none() {
            return Ok(());
        }
        let lane = self.lane();
        self.per_element(w, |w| {
            writeln!(
                w,
                "{{ const int64_t sf_d = (int64_t) sf_free_from{lane} - sf_s0; sf_rem{lane} = sf_d > 0 ? (int32_t) sf_d : 0; }}"
            )
        })
    }

    /// The local arrays a segment in registers keeps per step, and their types: each stored
    /// variable's start value, each per-step input, `not_refractory`.
    fn segment_values(&self) -> Vec<(String, &'static str)> {
        let mut values: Vec<(String, &'static str)> = self
            .dag
            .stored
            .iter()
            .map(|v| {
                (
                    format!("sf_seg_{}", ident(&self.ir.symbol(*v).name)),
                    self.real(),
                )
            })
            .collect();
        for a in &self.layout.inputs {
            if let (AdjointRole::Input, Some(v), AdjointShape::PerStep) = (a.role, a.var, a.shape) {
                values.push((
                    format!("sf_seg_{}", ident(&self.ir.symbol(v).name)),
                    self.local_type(a.elem),
                ));
            }
        }
        if has_refractory(self.ir) {
            values.push(("sf_seg_not_refractory".into(), self.dialect.bool_type()));
        }
        values
    }

    /// `sf_rec`: the row of step `step` in the traces' cotangents, or -1 (traces are recorded
    /// at the start of every rec_every-th step).
    fn record_row(&self, w: &mut SourceWriter, step: &str) -> fmt::Result {
        if self.dag.trace_cotangents.is_empty() {
            return Ok(());
        }
        writeln!(
            w,
            "const int32_t sf_rec = {step} % sf_rec_every == 0 ? {step} / sf_rec_every : -1;"
        )
    }

    /// The refractory period in steps, when there is one (a constant, checked).
    fn refractory_steps(&self) -> Option<i64> {
        let RefractoryIr::Duration(_) = self.ir.events.refractory else {
            return None;
        };
        Some(
            constant_refractory_steps(self.ir, self.spec.dt).expect("checked: a constant duration"),
        )
    }

    /// The row of step `sf_s` in the segment scratch: two halves of `k` rows (one segment
    /// walked back while the one before it is recomputed), `sf_half` the half's first row,
    /// `sf_seg0` the segment's first step.
    fn segment_row(&self) -> String {
        Self::row_index("(2 * sf_k)", "sf_half + (sf_s - sf_seg0)")
    }

    /// One step forwards, the group kernel's step DAG: from the kept state `sf_x_<x>` to the
    /// next, with the refractory bookkeeping (the step of the run from which the element is
    /// free again, from a constant period of `r` steps; in registers, the steps from the
    /// segment's first, [`Self::refractory_from_segment`]); the step's start values and
    /// `not_refractory` are kept first (registers or the scratch).
    fn forward_step(&self, w: &mut SourceWriter) -> fmt::Result {
        let real = self.real();
        let lane = self.lane();
        self.load_step(w, false)?;
        let registers = matches!(self.store, SegmentStore::Registers(_));
        if !registers {
            writeln!(w, "const int64_t sf_seg_row = {};", self.segment_row())?;
        }
        for v in &self.dag.stored {
            let name = ident(&self.ir.symbol(*v).name);
            writeln!(w, "const {real} {name} = sf_x_{name}{lane};")?;
            if registers {
                writeln!(w, "{} = {name};", self.slot(&name))?;
            } else {
                let k = self
                    .output(AdjointRole::Segment, Some(*v))
                    .expect("every stored variable has its scratch");
                writeln!(w, "sf_out{k}[sf_seg_row] = {name};")?;
            }
        }
        let refractory = self.refractory_steps();
        if refractory.is_some() {
            let free = if registers {
                format!("sf_u >= sf_rem{lane}")
            } else {
                format!("sf_s >= sf_free_from{lane}")
            };
            writeln!(
                w,
                "const {} sf_not_refractory = {free};",
                self.dialect.bool_type()
            )?;
            if registers {
                writeln!(w, "{} = sf_not_refractory;", self.slot("not_refractory"))?;
            } else {
                let k = self
                    .output(AdjointRole::NotRefractory, None)
                    .expect("a refractory period has the scratch");
                writeln!(w, "sf_out{k}[sf_seg_row] = sf_not_refractory != 0;")?;
            }
        }
        let mut roots = self.dag.next_state.clone();
        let spike = refractory.and_then(|r| self.dag.spike.map(|s| (r, s)));
        roots.extend(spike.map(|(_, s)| s));
        let texts = self.print_block(&roots, "sf_f", w)?;
        if let Some((r, _)) = spike {
            let text = texts.last().expect("the spike is the last root");
            if registers {
                // Free again `r` steps after this one (never within an int32 run, past it):
                // as `sf_free_from`'s clamp, which a run of fewer than 2^31 steps never
                // reaches before its end.
                let free = if r >= i64::from(i32::MAX) - MAX_REGISTER_SEGMENT as i64 {
                    "2147483647".to_string()
                } else {
                    format!("sf_u + {r}")
                };
                writeln!(w, "if ({text}) sf_rem{lane} = {free};")?;
            } else {
                let free = if r >= i64::from(i32::MAX) {
                    "2147483647".to_string()
                } else {
                    format!("(sf_s > {} ? 2147483647 : sf_s + {r})", i32::MAX as i64 - r)
                };
                writeln!(w, "if ({text}) sf_free_from{lane} = {free};")?;
            }
        }
        for (v, text) in self.dag.stored.iter().zip(&texts) {
            writeln!(
                w,
                "sf_x_{}{lane} = {text};",
                ident(&self.ir.symbol(*v).name)
            )?;
        }
        Ok(())
    }

    /// One step backwards: the adjoints at its start and the inputs' gradients, from the
    /// step's start values kept by the forward walk (registers or the scratch).
    fn backward_step(&self, w: &mut SourceWriter) -> fmt::Result {
        let real = self.real();
        let registers = matches!(self.store, SegmentStore::Registers(_));
        self.load_step(w, registers)?;
        if registers {
            for v in &self.dag.stored {
                let name = ident(&self.ir.symbol(*v).name);
                writeln!(w, "const {real} {name} = {};", self.slot(&name))?;
            }
            if has_refractory(self.ir) {
                writeln!(
                    w,
                    "const {} sf_not_refractory = {};",
                    self.dialect.bool_type(),
                    self.slot("not_refractory")
                )?;
            }
        } else {
            writeln!(w, "const int64_t sf_seg_row = {};", self.segment_row())?;
            for v in &self.dag.stored {
                let k = self
                    .output(AdjointRole::Segment, Some(*v))
                    .expect("every stored variable has its scratch");
                writeln!(
                    w,
                    "const {real} {} = sf_out{k}[sf_seg_row];",
                    ident(&self.ir.symbol(*v).name)
                )?;
            }
            if let Some(k) = self.output(AdjointRole::NotRefractory, None) {
                writeln!(
                    w,
                    "const {} sf_not_refractory = sf_out{k}[sf_seg_row] != 0;",
                    self.dialect.bool_type()
                )?;
            }
        }
        let mut rec = 0;
        // In registers: no row past the run's end is read; rows through the walk's pointers.
        let guarded = registers && self.guarded;
        let (train, recorded) = if registers {
            (
                if guarded {
                    "sf_spike_train && sf_u < sf_len"
                } else {
                    "sf_spike_train"
                },
                "sf_recorded",
            )
        } else {
            ("sf_spike_train", "sf_rec >= 0")
        };
        // Element `index` of input `k` on the scratch path; in registers, of its row pointer's row.
        let read = |k: usize, index: &str| {
            if registers {
                self.read_at(k, &self.at(&Self::row_pointer(false, k)))
            } else {
                self.read_once(k, index)
            }
        };
        // A source for calls that say: no branch on it.
        let train = match (self.spike_train, guarded) {
            (None, _) => train,
            (Some(false), _) => "0",
            (Some(true), true) => "sf_u < sf_len",
            (Some(true), false) => "1",
        };
        for (k, a) in self.layout.inputs.iter().enumerate() {
            match a.role {
                // Without a spike train, no row to read (nor, in registers, its pointer).
                AdjointRole::SpikeCotangent if train == "0" => {
                    writeln!(w, "const {real} sf_a_spike = sf_a_count{};", self.lane())?
                }
                AdjointRole::SpikeCotangent => writeln!(
                    w,
                    "const {real} sf_a_spike = {train} ? sf_a_count{} + {} : sf_a_count{};",
                    self.lane(),
                    read(k, "sf_row"),
                    self.lane()
                )?,
                AdjointRole::TraceCotangent => {
                    writeln!(
                        w,
                        "const {real} sf_a_rec{rec} = {recorded} ? {} : ({real}) 0;",
                        read(k, &Self::row_index("sf_n_rec", "sf_rec"))
                    )?;
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
        let commit = |w: &mut SourceWriter| -> fmt::Result {
            for ((v, _), text) in self.dag.inputs.iter().zip(inputs) {
                let name = ident(&self.ir.symbol(*v).name);
                if self.ir.symbol(*v).kind == SymbolKind::PerStep {
                    let k = self
                        .output(AdjointRole::Grad, Some(*v))
                        .expect("every per-step input has its gradient");
                    let write = if registers {
                        self.write_at(k, &self.at(&Self::row_pointer(true, k)), text)
                    } else {
                        self.write_once(k, "sf_row", text)
                    };
                    writeln!(w, "{write}")?;
                } else {
                    writeln!(w, "sf_g_{name}{} += {text};", self.lane())?;
                }
            }
            for v in &self.dag.stored {
                let name = ident(&self.ir.symbol(*v).name);
                writeln!(w, "sf_a_{name}{} = sf_n_{name};", self.lane())?;
            }
            Ok(())
        };
        if guarded {
            // A step past the run's end (a shorter last segment) changes nothing.
            w.block("if (sf_u < sf_len)", commit)
        } else {
            commit(w)
        }
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
    fn a_small_model_keeps_its_segments_in_registers_and_hodgkin_huxley_does_not() {
        let spec = lif();
        let (ir, _) = crate::codegen::prepare(&spec).unwrap();
        let k = generate_adjoint(&ir, &spec, Dialect::Cuda, 1).unwrap();
        assert_eq!(k.register_segment, MAX_REGISTER_SEGMENT);
        assert_eq!(k.store, SegmentStore::Registers(1));
        let longest = generate_adjoint(&ir, &spec, Dialect::Cuda, k.register_segment).unwrap();
        assert!(longest.source.contains("#define SF_K 32"));
        let longer = generate_adjoint(&ir, &spec, Dialect::Cuda, 33).unwrap();
        assert_eq!(longer.store, SegmentStore::Scratch);
        assert!(!longer.source.contains("SF_K"));
        // Hodgkin-Huxley: a step of about 2000 expression nodes.
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/models/seed000_hh.json");
        let hh = ModelSpec::from_json(&std::fs::read_to_string(path).unwrap())
            .unwrap()
            .surrogate(Surrogate::new(SurrogateKind::FastSigmoid, 3.0));
        let (ir, _) = crate::codegen::prepare(&hh).unwrap();
        let k = generate_adjoint(&ir, &hh, Dialect::Cuda, 4).unwrap();
        assert_eq!((k.register_segment, k.store), (0, SegmentStore::Scratch));
    }

    #[test]
    fn layout_orders_states_inputs_adjoints_and_gradients() {
        let spec = lif();
        let (ir, _) = crate::codegen::prepare(&spec).unwrap();
        let k = generate_adjoint(&ir, &spec, Dialect::C, 1000).unwrap();
        let names = |args: &[AdjointArg]| args.iter().map(|a| a.name.clone()).collect::<Vec<_>>();
        assert_eq!(
            names(&k.layout.inputs),
            [
                "checkpoint:v",
                "checkpoint:refractory_left",
                "tau",
                "I",
                "t",
                "adjoint:v",
                "spike_count_cotangent",
                "spike_cotangent",
                "trace_cotangent:v",
            ]
        );
        assert_eq!(
            names(&k.layout.outputs),
            [
                "adjoint:v",
                "grad:tau",
                "grad:I",
                "segment:v",
                "not_refractory"
            ]
        );
        assert!(k.source.contains("sf_neuron_adjoint"), "{}", k.source);
    }
}
