//! The argument layout of the fused group kernel: which buffers, in which order, of which shape.
//!
//! Defined once here; the generated kernels, the FFI handler and (through the C ABI) the Python
//! shim all follow it. docs/DESIGN.md describes it in words.

use serde::{Serialize, Serializer};

use super::identifiers::ident;

use crate::ir::{GroupIr, RefractoryIr, SymbolKind, VarId};
use crate::spec::ModelSpec;
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
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    State,
    Param,
    LastspikeStep,
    NotRefractory,
    PerNeuronConstant,
    PerStep,
    StartStep,
    /// The seed of the noise stream, one per batch member (int32 bits).
    Seed,
    SpikeCount,
    Trace,
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
    pub shape: ShapeKind,
    /// The model variable behind the argument, where there is one.
    #[serde(skip)]
    pub var: Option<VarId>,
}

fn elem_json<S: Serializer>(elem: &ElemType, s: S) -> Result<S::Ok, S::Error> {
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

fn arg(ir: &GroupIr, v: VarId, role: Role, real: ElemType, shape: ShapeKind) -> Arg {
    let name = ir.symbol(v).name.clone();
    Arg {
        ident: ident(&name),
        name,
        role,
        elem: real,
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
        shape,
        var: None,
    }
}

pub fn layout(ir: &GroupIr, spec: &ModelSpec) -> Layout {
    let real = spec.buffer_real();
    let arg = |v: VarId, role: Role, shape: ShapeKind| arg(ir, v, role, real, shape);
    let states: Vec<VarId> = ir.stored();
    let params = ir.vars_of_kind(&SymbolKind::Param);
    let written = ir.written_params();
    let refractory = match ir.events.refractory {
        RefractoryIr::None => None,
        RefractoryIr::Duration(_) => Some(special(
            "lastspike_step",
            Role::LastspikeStep,
            ElemType::I32,
            ShapeKind::Neuron,
        )),
        RefractoryIr::Condition(_) => Some(special(
            "not_refractory",
            Role::NotRefractory,
            ElemType::Bool,
            ShapeKind::Neuron,
        )),
    };
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
    inputs.extend(refractory.clone());
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
    if !ir.noise.is_empty() {
        inputs.push(special(
            "rng_seed",
            Role::Seed,
            ElemType::I32,
            ShapeKind::Batch,
        ));
    }
    inputs.push(special(
        "t0",
        Role::StartStep,
        ElemType::I32,
        ShapeKind::Batch,
    ));

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
    outputs.extend(refractory);
    outputs.push(special(
        "spike_count",
        Role::SpikeCount,
        ElemType::I32,
        ShapeKind::Neuron,
    ));
    for name in &spec.record {
        outputs.push(Arg {
            name: format!("trace:{name}"),
            ident: format!("sf_trace_{}", ident(name)),
            role: Role::Trace,
            elem: real,
            shape: ShapeKind::Trace,
            var: ir.lookup(name),
        });
    }
    Layout { inputs, outputs }
}
