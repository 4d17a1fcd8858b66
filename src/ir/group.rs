//! The group IR: one population of elements (the neurons of a neuron group; in time the synapses
//! of a synapse group) as every back end sees it, whichever front end described it.
//!
//! A group has a symbol table (what every name of its expressions stands for), dynamics (how the
//! stored state evolves in a step: differential equations, or the explicit updates of a model
//! class), events (threshold, reset, refractoriness), the integration scheme resolved for it, and
//! a table from its equations back to the text they came from ([`SpanTable`]). Front ends build
//! it (`crate::frontend`); this module holds the data and answers questions about it.

use std::collections::BTreeMap;

use super::expr::{ExprArena, ExprId, VarId};
use super::spans::SpanTable;
use crate::spec::Method;

/// Whose index or count an index symbol holds. A neuron group has only its own elements; a
/// synapse group (Brian2's `Synapses`) also names the presynaptic (`i`) and postsynaptic (`j`)
/// neuron of each synapse, and their populations' sizes (`N_pre`, `N_post`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IndexOf {
    /// The group's own elements (`i` and `N` in a neuron group).
    Element,
    /// The presynaptic neuron of a synapse.
    Pre,
    /// The postsynaptic neuron of a synapse.
    Post,
}

/// What a name in the group stands for, and so how a kernel gets its value.
#[derive(Clone, Debug, PartialEq)]
pub enum SymbolKind {
    /// Stored between steps: loaded once, kept in registers, stored once (an integrated
    /// variable, or a model class's state or internal).
    State,
    /// A per-element value (`x : unit`), read-only unless the reset writes it.
    Param,
    /// A constant the user gives as an `(n,)` array instead of a folded number.
    PerNeuronConstant,
    /// A value given for every step, `(batch, steps, n_inner)`.
    PerStep,
    /// `not_refractory`: true when the element integrates its `(unless refractory)` equations.
    NotRefractory,
    /// `t`: the current time (step counter times dt).
    Time,
    /// An index (`i`; `i`, `j` in a synapse group).
    Index(IndexOf),
    /// A population size (`N`; `N_pre`, `N_post` in a synapse group).
    Count(IndexOf),
    /// `lastspike`: the time of the element's last spike (needs a refractory duration, whose
    /// bookkeeping keeps the step of the last spike).
    LastSpike,
    /// A subexpression flagged `constant over dt`: evaluated once from the values at the start
    /// of the step and held through the integrator's stages (Brian2's semantics).
    HeldSubexpression,
    /// `xi`, `xi_*`: white noise, a fresh standard normal per element and step (a term `g*xi` in
    /// dx/dt adds `g*sqrt(dt)*N(0,1)` to x each step).
    Noise,
    /// One call of `rand()` or `randn()` in the group's code: a fresh number per element and
    /// step, drawn at the start of the step (the same value wherever the step reads it).
    Random(Draw),
    /// In a synapse group: a variable of the presynaptic (`x_pre`) or postsynaptic (`x_post`, or
    /// a bare name the target has) neuron group, by its id in that group's IR.
    Neighbour(IndexOf, VarId),
}

/// What one call of a random function draws.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Draw {
    /// `rand()`: uniform on [0, 1).
    Uniform,
    /// `randn()`: standard normal.
    Normal,
}

/// What a symbol's values are. Parameters declared `: boolean` or `: integer` are stored as
/// truth values (`bool` buffers) or integers (`int32` buffers); expressions read an integer as
/// a number in the model's precision and a boolean as a condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValueType {
    Real,
    Integer,
    Boolean,
}

impl ValueType {
    /// The value type a declared unit says: `boolean`, `integer`, or a number.
    pub fn of_unit(unit: &str) -> ValueType {
        match unit.trim() {
            "boolean" => ValueType::Boolean,
            "integer" => ValueType::Integer,
            _ => ValueType::Real,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Symbol {
    pub name: String,
    pub kind: SymbolKind,
    pub unit: String,
    /// Numbers, integers or truth values (from the unit).
    pub value: ValueType,
    /// `(shared)`: one value for the whole population (per batch member), not per element.
    pub shared: bool,
}

/// One differential equation: a stored variable and its derivative (subexpressions inlined).
#[derive(Clone, Debug)]
pub struct StateEq {
    pub var: VarId,
    pub derivative: ExprId,
    /// `(unless refractory)`: the variable is held while the element is refractory.
    pub unless_refractory: bool,
}

/// How one stored variable of a model class changes in a step: `ode()` run on the stored values
/// gives its value at the end of the body and, when `ode()` assigns `self.d_x`, its derivative.
/// The step is `x' = clip(end_value + (the scheme's change of x), min, max)` (docs/DESIGN.md).
#[derive(Clone, Debug)]
pub struct Update {
    pub var: VarId,
    /// `self.d_x`, when `ode()` assigns it (the variable is integrated).
    pub derivative: Option<ExprId>,
    /// The value at the end of `ode()`: the stored value itself unless `ode()` assigns it.
    pub end_value: ExprId,
    /// `(min, max)` from `Default_States`; internals have none.
    pub bounds: (Option<f64>, Option<f64>),
}

/// How the stored state evolves within a step.
#[derive(Clone, Debug)]
pub enum Dynamics {
    /// Differential equations, one per stored variable.
    Odes(Vec<StateEq>),
    /// Explicit updates (a model class): one per stored variable, the states in class order
    /// then the internals.
    Updates(Vec<Update>),
}

#[derive(Clone, Debug)]
pub enum RefractoryIr {
    None,
    /// Refractory for `timestep(duration, dt)` steps after a spike; the duration may depend on
    /// per-element values.
    Duration(ExprId),
    /// Refractory after a spike until the condition stops holding (Brian2's semantics).
    Condition(ExprId),
}

/// What happens once per step after the state update: Brian2's threshold, reset and
/// refractoriness.
#[derive(Clone, Debug)]
pub struct Events {
    /// The spiking condition, tested on the updated values (only when not refractory).
    pub threshold: Option<ExprId>,
    /// Reset statements in order; `x += e` is already `x = x + e`.
    pub reset: Vec<(VarId, ExprId)>,
    pub refractory: RefractoryIr,
}

impl Events {
    /// No threshold, no reset, never refractory.
    pub fn none() -> Events {
        Events {
            threshold: None,
            reset: Vec::new(),
            refractory: RefractoryIr::None,
        }
    }
}

/// The per-element bookkeeping a group keeps besides its variables, decided while lowering from
/// every place that reads it (so that a model that lowers compiles: `lastspike` read in a
/// refractory condition keeps the time of the last spike, without a refractory duration too).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bookkeeping {
    /// The time of each element's last spike: kept when the refractory period is a duration, or
    /// when any expression (or the record list) reads `lastspike`.
    pub lastspike: bool,
    /// Some expression or trace reads the value of `lastspike` (not only the refractory
    /// duration's step counting).
    pub lastspike_value: bool,
}

/// One group, lowered: everything the step semantics and the printers need.
#[derive(Clone, Debug)]
pub struct GroupIr {
    pub arena: ExprArena,
    /// Every name the group's expressions read, indexed by [`VarId`].
    pub symbols: Vec<Symbol>,
    pub dynamics: Dynamics,
    pub events: Events,
    /// The integration scheme, resolved once by the front end (the one the spec names, checked
    /// to apply, or Brian2's choice).
    pub method: Method,
    /// Integration steps of `dt / substeps` per step of `dt`.
    pub substeps: u32,
    pub dt: f64,
    /// Named subexpressions, for recording.
    pub subexpressions: BTreeMap<String, ExprId>,
    /// `constant over dt` subexpressions, in an order where each comes after those it uses:
    /// the kernel computes them at the start of each step.
    pub held: Vec<(VarId, ExprId)>,
    /// Noise symbols (`xi`, `xi_*`) in order of first use.
    pub noise: Vec<VarId>,
    /// The calls of `rand()` / `randn()` in the group's code, in order of lowering.
    pub draws: Vec<VarId>,
    /// The bookkeeping the kernel keeps (see [`Bookkeeping`]).
    pub bookkeeping: Bookkeeping,
    /// Where the group's equations and events were written.
    pub spans: SpanTable,
}

impl GroupIr {
    pub fn symbol(&self, v: VarId) -> &Symbol {
        &self.symbols[v.index()]
    }

    pub fn lookup(&self, name: &str) -> Option<VarId> {
        lookup(&self.symbols, name)
    }

    pub fn vars_of_kind(&self, kind: &SymbolKind) -> Vec<VarId> {
        vars_of_kind(&self.symbols, kind)
    }

    /// The variables kept from one step to the next, in the order of the dynamics.
    pub fn stored(&self) -> Vec<VarId> {
        match &self.dynamics {
            Dynamics::Odes(odes) => odes.iter().map(|s| s.var).collect(),
            Dynamics::Updates(updates) => updates.iter().map(|u| u.var).collect(),
        }
    }

    /// The differential equations the scheme integrates: every equation, or the derivatives a
    /// model class assigns.
    pub fn integrated(&self) -> Vec<(VarId, ExprId)> {
        integrated(&self.dynamics)
    }

    /// Every random number a step uses, with its index in the step's stream (`crate::random`):
    /// the noise symbols first, then the calls of `rand()` / `randn()`.
    pub fn stream_draws(&self) -> Vec<(VarId, u32)> {
        self.noise
            .iter()
            .chain(&self.draws)
            .enumerate()
            .map(|(k, v)| {
                (
                    *v,
                    u32::try_from(k).expect("fewer than 2^32 draws per step"),
                )
            })
            .collect()
    }

    /// Parameters assigned by the reset: they become outputs of the kernel.
    pub fn written_params(&self) -> Vec<VarId> {
        let mut out: Vec<VarId> = self
            .events
            .reset
            .iter()
            .map(|(v, _)| *v)
            .filter(|v| self.symbol(*v).kind == SymbolKind::Param)
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

/// The symbol called `name`.
pub fn lookup(symbols: &[Symbol], name: &str) -> Option<VarId> {
    symbols.iter().position(|s| s.name == name).map(VarId::at)
}

/// The symbols of one kind, in table order.
pub fn vars_of_kind(symbols: &[Symbol], kind: &SymbolKind) -> Vec<VarId> {
    (0..symbols.len())
        .map(VarId::at)
        .filter(|v| &symbols[v.index()].kind == kind)
        .collect()
}

/// See [`GroupIr::integrated`].
pub fn integrated(dynamics: &Dynamics) -> Vec<(VarId, ExprId)> {
    match dynamics {
        Dynamics::Odes(odes) => odes.iter().map(|s| (s.var, s.derivative)).collect(),
        Dynamics::Updates(updates) => updates
            .iter()
            .filter_map(|u| u.derivative.map(|d| (u.var, d)))
            .collect(),
    }
}
