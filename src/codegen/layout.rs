//! The argument layout of the fused group kernel: which buffers, in which order, of which shape.
//!
//! Defined once here; the generated kernels, the FFI handler and (through the C ABI) the Python
//! shim all follow it. docs/DESIGN.md describes it in words.

use serde::{Serialize, Serializer};

use super::identifiers::ident;

use crate::ir::{GroupIr, RefractoryIr, SymbolKind, Ty, ValueType, VarId};
use crate::spec::ModelSpec;
use crate::step::timestep;
use crate::types::ElemType;

/// The shape of a buffer in terms of the run: `n` neurons (batch folded in), `nb` batch members
/// of `n_inner` neurons, `steps`, and `n_rec = ceil(steps / record_every)` recordings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ShapeKind {
    /// `(n,)`
    Neuron,
    /// `(nb, steps, n_inner)`
    PerStep,
    /// `(nb,)`
    Batch,
    /// `(nb, n_rec, n_inner)`
    Trace,
    /// `(nb, capacity)`: the spike record, `capacity` entries per batch member.
    Spikes,
    /// `(nb, n_ckpt, n_inner)`, `n_ckpt = ceil(steps / checkpoint_every)`: checkpoints.
    Checkpoint,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    State,
    Param,
    /// The time of each element's last spike (ms, float64; `-inf`: never), when the group keeps
    /// it (`ir::Bookkeeping`).
    Lastspike,
    NotRefractory,
    PerNeuronConstant,
    PerStep,
    /// The seed of the random streams, one per batch member (int32 bits).
    Seed,
    /// The time of the state (ms, float64), one per batch member: at the start of the run as an
    /// input, at its end as an output.
    Time,
    SpikeCount,
    /// The spike train (when the spec asks for it): the spikes of each element in each window of
    /// `record_every` steps (int32; 0 or 1 when `record_every` is 1), one row per window, shaped
    /// like a trace.
    SpikeTrain,
    Trace,
    /// The spike record (when the spec asks for it): the element of each recorded spike...
    SpikeIndex,
    /// ... the step of the run it happened in ...
    SpikeStep,
    /// ... and how many spikes there were, recorded or not (int64, as int32 words; the handler
    /// zeroes it before the kernel counts into it).
    SpikeTotal,
    /// With `spec.checkpoint`: a stored variable, or (`checkpoint:refractory_left`) the steps
    /// for which the element stays refractory under a constant refractory period, at the start
    /// of every `checkpoint_every`-th step (the adjoint kernel's checkpoints): `uint8` where the
    /// period is at most [`REFRACTORY_LEFT_U8_MAX`] steps (at 1M elements and a checkpoint
    /// every 8 steps that is 0.375 GB less to write and read again than int32), else int32.
    Checkpoint,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Arg {
    /// The name in the state dict / input dict (`v`, `lastspike_step`, `trace:v`, ...).
    pub name: String,
    /// The identifier used in generated code.
    pub ident: String,
    pub role: Role,
    /// The type of the buffer's elements: for real numbers the model's dtype, or its storage
    /// type. The JSON says `"real"` for those (Python asks for the dtype it calls with), else the
    /// type's name (`"int32"`, `"bool"`).
    #[serde(serialize_with = "elem_json")]
    pub elem: ElemType,
    /// `Some(t)`: the buffer holds 64-bit values of type `t` (float64 times), each as two int32
    /// words, low then high, along a trailing axis of 2 (JAX without x64 has no 64-bit arrays);
    /// `elem` is then int32. On the little-endian hosts and GPUs spikeforge runs on, the buffer
    /// is byte for byte an array of `t`, which is how the kernel reads it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub words: Option<ElemType>,
    pub shape: ShapeKind,
    /// The model variable behind the argument, where there is one.
    #[serde(skip)]
    pub var: Option<VarId>,
}

/// An element type in a layout's JSON: `"real"` for the model's precision, else its name.
pub(crate) fn elem_json<S: Serializer>(elem: &ElemType, s: S) -> Result<S::Ok, S::Error> {
    if elem.is_float() {
        s.serialize_str("real")
    } else {
        elem.serialize(s)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Layout {
    pub inputs: Vec<Arg>,
    pub outputs: Vec<Arg>,
}

impl Arg {
    /// The C type of one element as the kernel reads it (the 64-bit type of a word pair).
    pub fn c_type(&self) -> &'static str {
        self.words.unwrap_or(self.elem).c_type()
    }
}

/// The buffer element type of a variable's values: the model's real type, `int32` for
/// integers, `bool` for truth values.
pub fn value_elem(value: ValueType, real: ElemType) -> ElemType {
    match value {
        ValueType::Real => real,
        ValueType::Integer => ElemType::I32,
        ValueType::Boolean => ElemType::Bool,
    }
}

fn arg(ir: &GroupIr, v: VarId, role: Role, real: ElemType, shape: ShapeKind) -> Arg {
    let symbol = ir.symbol(v);
    Arg {
        ident: ident(&symbol.name),
        name: symbol.name.clone(),
        role,
        elem: value_elem(symbol.value, real),
        words: None,
        shape,
        var: Some(v),
    }
}

fn special(name: &str, role: Role, elem: ElemType, shape: ShapeKind) -> Arg {
    Arg {
        name: name.into(),
        ident: format!("sf_{name}"),
        role,
        elem,
        words: None,
        shape,
        var: None,
    }
}

/// A float64 value carried as int32 word pairs.
fn float64_words(name: &str, role: Role, shape: ShapeKind) -> Arg {
    Arg {
        words: Some(ElemType::F64),
        ..special(name, role, ElemType::I32, shape)
    }
}

/// Whether the refractory period is a constant duration (the kernels then keep, per element,
/// the step of the run from which it is free again).
pub fn constant_refractory(ir: &GroupIr) -> bool {
    matches!(ir.events.refractory, RefractoryIr::Duration(d) if ir.arena.as_const(d).is_some())
}

/// The longest constant refractory period, in steps, whose steps left fit the `uint8`
/// checkpoint: a neuron checkpointed at step `s` spiked at `s - 1` at the latest, so it has at
/// most `period - 1` steps left.
pub const REFRACTORY_LEFT_U8_MAX: i64 = 256;

/// The steps of a constant refractory period at time step `dt` (Brian2's `timestep`, at least
/// 0), or `None` where the model has none or an expression.
pub fn constant_refractory_steps(ir: &GroupIr, dt: f64) -> Option<i64> {
    match ir.events.refractory {
        RefractoryIr::Duration(d) => ir
            .arena
            .as_const(d)
            .map(|c| timestep(c, dt).clamp(0, 1 << 61)),
        _ => None,
    }
}

/// The element type of the `checkpoint:refractory_left` checkpoint of a model with a constant
/// refractory period ([`Role::Checkpoint`]).
pub fn refractory_left_elem(ir: &GroupIr, dt: f64) -> ElemType {
    match constant_refractory_steps(ir, dt) {
        Some(r) if r <= REFRACTORY_LEFT_U8_MAX => ElemType::U8,
        _ => ElemType::I32,
    }
}

pub fn layout(ir: &GroupIr, spec: &ModelSpec) -> Layout {
    let real = spec.buffer_real();
    let arg = |v: VarId, role: Role, shape: ShapeKind| arg(ir, v, role, real, shape);
    let states: Vec<VarId> = ir.stored();
    let params = ir.vars_of_kind(&SymbolKind::Param);
    let written = ir.written_params();
    let mut bookkeeping = Vec::new();
    if ir.bookkeeping.lastspike {
        bookkeeping.push(float64_words(
            "lastspike",
            Role::Lastspike,
            ShapeKind::Neuron,
        ));
    }
    if matches!(ir.events.refractory, RefractoryIr::Condition(_)) {
        bookkeeping.push(special(
            "not_refractory",
            Role::NotRefractory,
            ElemType::Bool,
            ShapeKind::Neuron,
        ));
    }
    let time = float64_words("t", Role::Time, ShapeKind::Batch);
    let mut inputs = Vec::new();
    inputs.extend(
        states
            .iter()
            .map(|v| arg(*v, Role::State, ShapeKind::Neuron)),
    );
    // A shared parameter has one value per batch member.
    inputs.extend(params.iter().map(|v| {
        let shape = if ir.symbol(*v).shared {
            ShapeKind::Batch
        } else {
            ShapeKind::Neuron
        };
        arg(*v, Role::Param, shape)
    }));
    inputs.extend(bookkeeping.iter().cloned());
    inputs.extend(
        ir.vars_of_kind(&SymbolKind::PerNeuronConstant)
            .iter()
            .map(|v| arg(*v, Role::PerNeuronConstant, ShapeKind::Neuron)),
    );
    inputs.extend(
        ir.vars_of_kind(&SymbolKind::PerStep)
            .iter()
            .map(|v| arg(*v, Role::PerStep, ShapeKind::PerStep)),
    );
    if !ir.stream_draws().is_empty() {
        inputs.push(special(
            "rng_seed",
            Role::Seed,
            ElemType::I32,
            ShapeKind::Batch,
        ));
    }
    inputs.push(time.clone());

    let mut outputs = Vec::new();
    outputs.extend(
        states
            .iter()
            .map(|v| arg(*v, Role::State, ShapeKind::Neuron)),
    );
    outputs.extend(
        written
            .iter()
            .map(|v| arg(*v, Role::Param, ShapeKind::Neuron)),
    );
    outputs.extend(bookkeeping);
    outputs.push(special(
        "spike_count",
        Role::SpikeCount,
        ElemType::I32,
        ShapeKind::Neuron,
    ));
    outputs.push(time);
    if spec.record_spikes {
        outputs.push(special(
            "spike_index",
            Role::SpikeIndex,
            ElemType::I32,
            ShapeKind::Spikes,
        ));
        outputs.push(special(
            "spike_step",
            Role::SpikeStep,
            ElemType::I32,
            ShapeKind::Spikes,
        ));
        outputs.push(Arg {
            words: Some(ElemType::I64),
            ..special(
                "spike_total",
                Role::SpikeTotal,
                ElemType::I32,
                ShapeKind::Batch,
            )
        });
    }
    if spec.record_spike_train {
        outputs.push(special(
            "spike_train",
            Role::SpikeTrain,
            ElemType::I32,
            ShapeKind::Trace,
        ));
    }
    if spec.checkpoint {
        outputs.extend(states.iter().map(|v| Arg {
            name: format!("checkpoint:{}", ir.symbol(*v).name),
            ident: format!("sf_ckpt_{}", ident(&ir.symbol(*v).name)),
            ..arg(*v, Role::Checkpoint, ShapeKind::Checkpoint)
        }));
        if constant_refractory(ir) {
            outputs.push(Arg {
                ident: "sf_ckpt_refractory_left".into(),
                ..special(
                    "checkpoint:refractory_left",
                    Role::Checkpoint,
                    refractory_left_elem(ir, spec.dt),
                    ShapeKind::Checkpoint,
                )
            });
        }
    }
    for name in &spec.record {
        let var = ir.lookup(name);
        let elem = match (var, ir.subexpressions.get(name)) {
            (_, Some(e)) if ir.arena.ty(*e) == Ty::Bool => ElemType::Bool,
            (Some(v), _) => value_elem(ir.symbol(v).value, real),
            _ => real,
        };
        outputs.push(Arg {
            name: format!("trace:{name}"),
            ident: format!("sf_trace_{}", ident(name)),
            role: Role::Trace,
            elem,
            words: None,
            shape: ShapeKind::Trace,
            var,
        });
    }
    Layout { inputs, outputs }
}
