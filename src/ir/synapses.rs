//! A synapse group (Brian2's `Synapses`), lowered: the synapses as a population ([`GroupIr`]:
//! per-synapse parameters, `i`, `j`, `N_pre`, `N_post`, `t`, and references to the variables of
//! the groups on either side), the statements run when a presynaptic spike arrives (`on_pre`),
//! and the delay.
//!
//! The group's dynamics are empty for now: synaptic differential equations (`(clock-driven)`,
//! `(event-driven)`), `on_post` and `(summed)` variables are the next issue's, and have their
//! places here (`GroupIr::dynamics`, a second pathway) when they come.

use super::expr::{ExprArena, ExprId, VarId};
use super::group::{GroupIr, IndexOf, SymbolKind};

/// Which variable a statement assigns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// A per-synapse parameter (`w = w * 0.9`): one event per synapse and step at most, so no
    /// two events of a step write it.
    Synapse,
    /// A variable of the presynaptic neuron (`x_pre += 1`).
    Pre,
    /// A variable of the postsynaptic neuron (`ge_post += w`, `ge += w`, `v_post = 0`).
    Post,
}

/// How a statement changes its variable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// `x += e` (`x -= e` is `x += -e`, the same number): `e` is the increment.
    Add(ExprId),
    /// `x = e`, where `e` may read `x` (`x *= c` is `x = x * c`).
    Set(ExprId),
}

/// One `on_pre` statement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Statement {
    /// The assigned symbol of the synapse group: a `Param` (side `Synapse`) or a `Neighbour`.
    pub var: VarId,
    pub side: Side,
    pub effect: Effect,
}

impl Statement {
    /// The value the variable has after the statement, reading the variable as it was.
    pub fn new_value(&self, arena: &mut ExprArena) -> ExprId {
        match self.effect {
            Effect::Add(e) => {
                let old = arena.var(self.var);
                arena.add(old, e)
            }
            Effect::Set(e) => e,
        }
    }
}

/// When a presynaptic spike reaches its synapses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DelayIr {
    /// `steps` after the spike for every synapse (0: in the spike's own step).
    Homogeneous { steps: u32 },
    /// Each synapse's own `int(d/dt + 0.5)` steps of the per-synapse variable `var`, at most
    /// `max_steps`: the connectivity holds each row's synapses sorted by it, in buckets.
    PerSynapse { var: VarId, max_steps: u32 },
}

impl DelayIr {
    /// The longest delay, in steps.
    pub fn max_steps(&self) -> u32 {
        match *self {
            DelayIr::Homogeneous { steps } => steps,
            DelayIr::PerSynapse { max_steps, .. } => max_steps,
        }
    }
}

/// One synapse group's model and presynaptic pathway.
#[derive(Clone, Debug)]
pub struct SynapsesIr {
    /// The synapses as a population (symbols, subexpressions, spans).
    pub group: GroupIr,
    /// `on_pre`, in order: run once per (arriving spike, synapse of its row).
    pub on_pre: Vec<Statement>,
    pub delay: DelayIr,
}

impl SynapsesIr {
    /// The neighbour variable a symbol refers to, with its side.
    pub fn neighbour(&self, v: VarId) -> Option<(IndexOf, VarId)> {
        match self.group.symbol(v).kind {
            SymbolKind::Neighbour(side, var) => Some((side, var)),
            _ => None,
        }
    }

    /// The per-synapse parameters (not shared), in symbol order: the `(n_syn,)` arrays.
    pub fn per_synapse(&self) -> Vec<VarId> {
        self.group
            .vars_of_kind(&SymbolKind::Param)
            .into_iter()
            .filter(|v| !self.group.symbol(*v).shared)
            .collect()
    }

    /// The `(shared)` parameters: one value for the projection.
    pub fn shared(&self) -> Vec<VarId> {
        self.group
            .vars_of_kind(&SymbolKind::Param)
            .into_iter()
            .filter(|v| self.group.symbol(*v).shared)
            .collect()
    }

    /// Every variable of the source (`Pre`) or target (`Post`) group whose value `on_pre` reads
    /// (in a statement's expression: `x *= c` reads `x`; the `x` that `x += e` adds to is not
    /// counted, an addition being one indivisible update), by its id in that group, sorted.
    pub fn neighbours_read(&self, side: IndexOf) -> Vec<VarId> {
        self.on_side(
            side,
            self.on_pre.iter().flat_map(|s| {
                let e = match s.effect {
                    Effect::Add(e) | Effect::Set(e) => e,
                };
                self.group.arena.vars_of(e)
            }),
        )
    }

    /// Every variable of the source or target group that `on_pre` assigns, sorted.
    pub fn neighbours_written(&self, side: IndexOf) -> Vec<VarId> {
        self.on_side(side, self.on_pre.iter().map(|s| s.var))
    }

    /// The variables of the group on `side` that `symbols` (of the synapse group) refer to,
    /// sorted, once each.
    fn on_side(&self, side: IndexOf, symbols: impl Iterator<Item = VarId>) -> Vec<VarId> {
        let mut out: Vec<VarId> = symbols
            .filter_map(|v| self.neighbour(v))
            .filter(|(s, _)| *s == side)
            .map(|(_, v)| v)
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The per-synapse parameters `on_pre` assigns.
    pub fn synapse_written(&self) -> Vec<VarId> {
        let mut out: Vec<VarId> = self
            .on_pre
            .iter()
            .filter(|s| s.side == Side::Synapse)
            .map(|s| s.var)
            .collect();
        out.sort();
        out.dedup();
        out
    }
}
