//! A synapse group (Brian2's `Synapses`), lowered: the synapses as a population ([`GroupIr`]:
//! per-synapse parameters, `i`, `j`, `N_pre`, `N_post`, `t`, and references to the variables of
//! the groups on either side) and its pathways, each with its statements and delay: run when a
//! presynaptic spike arrives (`on_pre`, one pathway `pre` or several by name) or when a
//! postsynaptic neuron spikes (`on_post`).
//!
//! `(event-driven)` variables are per-synapse values that only events change: each pathway's
//! statements start with their exact update over the time since the synapse's `lastupdate` and
//! end with `lastupdate = t` (Brian2's code for a pathway), so the kernels need nothing more than
//! statements.
//!
//! `(clock-driven)` variables are per-synapse values integrated every step: they are the
//! synapse group's dynamics (`group.dynamics`, with its resolved `group.method`), stepped by the
//! same integrators as a neuron group's. `(summed)` variables ([`Summed`]) set a variable of the
//! source or target group, each step, to the sum over that neuron's synapses of an expression.

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

/// Which spikes run a pathway: Brian2's `prepost` of a `SynapticPathway`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Pathway {
    /// Run for each synapse of a presynaptic spike, after its delay (`on_pre`).
    Pre,
    /// Run for each synapse onto a postsynaptic neuron that spiked, after its delay (`on_post`).
    Post,
}

/// One pathway of a synapse group: Brian2's `SynapticPathway` `<name>_<pathway name>`.
#[derive(Clone, Debug)]
pub struct PathwayIr {
    /// Its name: `pre` or `post` for a single `on_pre` / `on_post` text, else the key it was
    /// given under (`on_pre={'up': ...}`).
    pub name: String,
    pub kind: Pathway,
    /// Run once per (arriving spike, synapse), in order. With `(event-driven)` variables: their
    /// updates first and `lastupdate = t` last. An `on_post` pathway never assigns the
    /// presynaptic side.
    pub statements: Vec<Statement>,
    /// How long after the spike it runs. A `Post` pathway's delay is homogeneous.
    pub delay: DelayIr,
}

/// A `(summed)` variable (`g_syn_post = s : 1 (summed)`): every step, before the groups update,
/// each neuron of the `side` range gets the sum of `value` over its synapses (0 without any).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summed {
    /// `Pre`: onto the source group (`x_pre`), `Post`: onto the target group (`x_post`).
    pub side: IndexOf,
    /// The variable of that group (a parameter, not shared, not constant).
    pub var: VarId,
    /// The per-synapse value, in the synapse group's arena.
    pub value: ExprId,
}

/// One synapse group's model and pathways.
#[derive(Clone, Debug)]
pub struct SynapsesIr {
    /// The synapses as a population (symbols, subexpressions, spans).
    pub group: GroupIr,
    /// Every pathway: the `Pre` ones by name, then the `Post` ones by name (each set in
    /// Brian2's order within the projection).
    pub pathways: Vec<PathwayIr>,
    /// The `(event-driven)` variables (per-synapse parameters that the pathways update).
    pub event_driven: Vec<VarId>,
    /// The `(clock-driven)` variables (per-synapse parameters that `group.dynamics` integrates
    /// every step).
    pub clock_driven: Vec<VarId>,
    /// The `(summed)` variables, in the model's order.
    pub summed: Vec<Summed>,
}

impl SynapsesIr {
    /// Pathway k's statements.
    pub fn statements(&self, k: usize) -> &[Statement] {
        &self.pathways[k].statements
    }

    /// The indices of the pathways of one kind.
    pub fn pathways_of(&self, kind: Pathway) -> impl Iterator<Item = usize> + '_ {
        (0..self.pathways.len()).filter(move |k| self.pathways[*k].kind == kind)
    }

    /// Whether the projection has a postsynaptic pathway (it may have no statements).
    pub fn has_post(&self) -> bool {
        self.pathways_of(Pathway::Post).next().is_some()
    }

    /// The presynaptic pathways' statements, pathway after pathway.
    pub fn pre_statements(&self) -> impl Iterator<Item = &Statement> {
        self.pathways_of(Pathway::Pre)
            .flat_map(move |k| self.pathways[k].statements.iter())
    }

    /// The per-synapse delay the connectivity's rows are sorted by (at most one variable for all
    /// presynaptic pathways), with its longest delay in steps.
    pub fn row_delay(&self) -> Option<(VarId, u32)> {
        self.pathways.iter().find_map(|p| match p.delay {
            DelayIr::PerSynapse { var, max_steps } => Some((var, max_steps)),
            DelayIr::Homogeneous { .. } => None,
        })
    }

    /// The longest delay of the pathways of one kind, in steps (0 without any).
    pub fn max_delay(&self, kind: Pathway) -> u32 {
        self.pathways_of(kind)
            .map(|k| self.pathways[k].delay.max_steps())
            .max()
            .unwrap_or(0)
    }

    /// Every statement of every pathway.
    fn all_statements(&self) -> impl Iterator<Item = &Statement> {
        self.pathways.iter().flat_map(|p| p.statements.iter())
    }

    /// Whether the synapses change anything but their targets on events of their own: an
    /// `on_post` pathway or `(event-driven)` variables (plasticity).
    pub fn plastic(&self) -> bool {
        self.has_post() || !self.event_driven.is_empty()
    }

    /// Whether the synapses have per-step work of their own: `(clock-driven)` variables or
    /// `(summed)` variables.
    pub fn has_dynamics(&self) -> bool {
        !self.clock_driven.is_empty() || !self.summed.is_empty()
    }

    /// Whether the kernels need the by-post index (`post_offsets`, `post_synapses`, `sources`):
    /// for `on_post`, for the presynaptic index of each synapse (clock-driven integration), and
    /// for sums onto the target.
    pub fn by_post_index(&self) -> bool {
        self.has_post() || self.has_dynamics()
    }

    /// Every variable of the source or target group that the `(clock-driven)` derivatives read,
    /// by its id in that group, sorted.
    pub fn neighbours_read_by_clock_driven(&self, side: IndexOf) -> Vec<VarId> {
        let roots = self.group.integrated().into_iter().map(|(_, e)| e);
        self.on_side(side, roots.flat_map(|e| self.group.arena.vars_of(e)))
    }

    /// Every variable of the source or target group that the `(summed)` values read, by its id
    /// in that group, sorted.
    pub fn neighbours_read_by_sums(&self, side: IndexOf) -> Vec<VarId> {
        let roots = self.summed.iter().map(|s| s.value);
        self.on_side(side, roots.flat_map(|e| self.group.arena.vars_of(e)))
    }

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

    /// Every variable of the source (`Pre`) or target (`Post`) group whose value a pathway reads
    /// (in a statement's expression: `x *= c` reads `x`; the `x` that `x += e` adds to is not
    /// counted, an addition being one indivisible update), by its id in that group, sorted.
    pub fn neighbours_read(&self, side: IndexOf) -> Vec<VarId> {
        self.on_side(
            side,
            self.all_statements().flat_map(|s| {
                let e = match s.effect {
                    Effect::Add(e) | Effect::Set(e) => e,
                };
                self.group.arena.vars_of(e)
            }),
        )
    }

    /// Every variable of the source or target group that a pathway assigns, sorted.
    pub fn neighbours_written(&self, side: IndexOf) -> Vec<VarId> {
        self.on_side(side, self.all_statements().map(|s| s.var))
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

    /// The per-synapse parameters a pathway assigns or the step integrates.
    pub fn synapse_written(&self) -> Vec<VarId> {
        let mut out: Vec<VarId> = self
            .all_statements()
            .filter(|s| s.side == Side::Synapse)
            .map(|s| s.var)
            .chain(self.clock_driven.iter().copied())
            .collect();
        out.sort();
        out.dedup();
        out
    }
}
