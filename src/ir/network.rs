//! A network, lowered: its groups (each a [`GroupIr`], or a spike source), its projections
//! (each a [`SynapsesIr`] between two index ranges), its Poisson inputs, tables and monitors,
//! every reference resolved to an index. The network front end (`crate::frontend::network`)
//! builds it from a [`NetworkSpec`](crate::spec::NetworkSpec); the step semantics
//! (`crate::step::network`) decide from it what each kernel does.

use std::ops::Range;

use super::expr::{ExprArena, ExprId, VarId};
use super::group::GroupIr;
use super::synapses::SynapsesIr;
use crate::spec::ModelSpec;
use crate::types::ElemType;

/// A population of the network.
#[derive(Clone, Debug)]
pub struct NetGroup {
    pub name: String,
    pub n: usize,
    /// Where the group starts in the network's index space (the groups concatenated in
    /// order): the element counter of its noise, so a network's first group draws the noise a
    /// run of that group alone draws.
    pub offset: usize,
    pub kind: NetGroupKind,
}

#[derive(Clone, Debug)]
pub enum NetGroupKind {
    /// A neuron group: its model spec (with the network's `dt` and `dtype`, and `record` set to
    /// what its state monitors read) and its IR.
    Neuron { spec: Box<ModelSpec>, ir: GroupIr },
    /// Brian2's `PoissonGroup`: spikes where `rand() < rates * dt`. `ir` holds the names a rate
    /// expression may read (`t`, `i`, `N`); `rates` is that expression, or `None` for one rate
    /// per neuron given in the state.
    Poisson { ir: GroupIr, rates: Option<ExprId> },
    /// Brian2's `SpikeGeneratorGroup`: `n_spikes` given (index, step) pairs, repeated every
    /// `period_steps` when there is a period.
    SpikeGenerator {
        n_spikes: usize,
        period_steps: Option<u32>,
    },
}

impl NetGroup {
    /// The group's IR, when it is a neuron group.
    pub fn neuron_ir(&self) -> Option<&GroupIr> {
        match &self.kind {
            NetGroupKind::Neuron { ir, .. } => Some(ir),
            _ => None,
        }
    }
}

/// A synapse group between `source[source_range]` and `target[target_range]`.
#[derive(Clone, Debug)]
pub struct Projection {
    pub name: String,
    pub source: usize,
    pub source_range: Range<usize>,
    pub target: usize,
    pub target_range: Range<usize>,
    pub synapses: SynapsesIr,
}

impl Projection {
    /// The group on one side: the source (`Pre`) or the target.
    pub fn group_on(&self, side: super::IndexOf) -> usize {
        if side == super::IndexOf::Pre {
            self.source
        } else {
            self.target
        }
    }

    pub fn n_pre(&self) -> usize {
        self.source_range.len()
    }

    pub fn n_post(&self) -> usize {
        self.target_range.len()
    }
}

/// Brian2's `PoissonInput`: `Binomial(n, p)` events a step per target neuron, each adding
/// `weight` (an expression over the target group's symbols, in `arena`) to `var`.
#[derive(Clone, Debug)]
pub struct PoissonInputIr {
    pub name: String,
    pub target: usize,
    pub target_range: Range<usize>,
    /// The target group's variable (a state or a parameter).
    pub var: VarId,
    pub n: u64,
    /// `rate * dt`, the probability of an event of one source in one step.
    pub p: f64,
    /// The target group's arena, extended with the weight.
    pub arena: ExprArena,
    pub weight: ExprId,
}

/// A TimedArray: `rows` samples every `dt`, of `columns` values each (`None`: a 1-D array).
#[derive(Clone, Debug, PartialEq)]
pub struct TableIr {
    pub name: String,
    pub dt: f64,
    pub rows: usize,
    pub columns: Option<usize>,
}

impl TableIr {
    /// Values per batch member.
    pub fn len(&self) -> usize {
        self.rows * self.columns.unwrap_or(1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Which elements a state monitor records, in the order of its rows.
#[derive(Clone, Debug, PartialEq)]
pub enum Recorded {
    /// Every element, in order.
    All,
    Indices(Vec<usize>),
}

#[derive(Clone, Debug)]
pub enum MonitorIr {
    Spike {
        name: String,
        group: usize,
        range: Range<usize>,
        capacity: usize,
    },
    State {
        name: String,
        group: usize,
        /// Names of the recorded variables (states, parameters or subexpressions of the group).
        variables: Vec<String>,
        record: Recorded,
        every: u32,
    },
    Rate {
        name: String,
        group: usize,
        range: Range<usize>,
    },
}

impl MonitorIr {
    pub fn name(&self) -> &str {
        match self {
            MonitorIr::Spike { name, .. }
            | MonitorIr::State { name, .. }
            | MonitorIr::Rate { name, .. } => name,
        }
    }

    pub fn group(&self) -> usize {
        match self {
            MonitorIr::Spike { group, .. }
            | MonitorIr::State { group, .. }
            | MonitorIr::Rate { group, .. } => *group,
        }
    }
}

/// The whole network.
#[derive(Clone, Debug)]
pub struct NetworkIr {
    pub dt: f64,
    pub dtype: ElemType,
    pub fast_math: bool,
    pub deterministic: bool,
    pub groups: Vec<NetGroup>,
    /// In creation order: the order in which they deliver.
    pub projections: Vec<Projection>,
    pub poisson_inputs: Vec<PoissonInputIr>,
    pub tables: Vec<TableIr>,
    pub monitors: Vec<MonitorIr>,
}

impl NetworkIr {
    /// Elements in the network's index space.
    pub fn total(&self) -> usize {
        self.groups.last().map_or(0, |g| g.offset + g.n)
    }
}
