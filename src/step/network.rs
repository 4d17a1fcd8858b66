//! The semantics of one network step, decided once per network: which phase does what, so that
//! the kernels reproduce Brian2's schedule (docs/NETWORKS.md, "one step").
//!
//! A step is three phases. **Update** (one thread per neuron of every group): state monitors
//! record, groups integrate, thresholds fire, spikes are compacted into each group's spike
//! queue, and the reset runs there too when nothing delivered in this step can observe its order.
//! **Deliver** (every projection): the events whose arrival step is this one run their `on_pre`
//! statements; spike and rate monitors read the queue. **After delivery** (one thread per
//! neuron, only when needed): counted arrivals are added, Poisson inputs add their draws, and the
//! late resets run. This module says, per group and projection, what goes where.
//!
//! How a projection delivers:
//! * [`Delivery::Atomic`]: every statement adds to a target variable (`x_post += e`) or writes a
//!   synaptic parameter, and reads nothing another delivery writes: events run in parallel, the
//!   additions as atomic adds (in any order: float sums may differ in the last bits from run to
//!   run on the GPU).
//! * [`Delivery::Counted`] (deterministic mode): every statement adds one value the same for all
//!   synapses of the step (a constant, a shared parameter, a function of `t`): events count
//!   arrivals per target with integer atomics, and the after-delivery phase adds
//!   `count * value` once: exact, and the same from run to run.
//! * [`Delivery::Ordered`]: anything else (assignments, `*=`, writes to the source group, reads of
//!   what a delivery writes, and in deterministic mode per-synapse values): events run one after
//!   another in Brian2's order (spike step, then neuron index, then synapse order), so the result
//!   is Brian2's and the same from run to run. The source groups of ordered projections compact
//!   their spikes in ascending order. Plastic projections (`on_post`, `(event-driven)`
//!   variables) are delivered like any other when their postsynaptic pathways run in the
//!   after-delivery phase ([`NetworkPlan::post_after_delivery`]) and no two of their
//!   presynaptic pathways share a synaptic variable; else ordered.
//!
//! On CUDA, an atomic presynaptic pathway with per-synapse delays whose increments nothing can
//! change between a spike and its arrival is delivered at emission ([`at_emission`],
//! [`ProjectionPlan::at_emission`]): in the spike's own step into ring buffers of future
//! arrivals, taken by each target neuron in the after-delivery phase of the arrival step. The
//! sums differ from delivery at arrival in order only; the C kernels deliver at arrival.
//!
//! The pathways of the synapses slot run in Brian2's order ([`NetworkPlan::pathways`]): a
//! pathway is named `<projection>_<pathway>` (`S_pre`, `S_post`, or `S_up` for a named one),
//! Brian2 gives every presynaptic pathway order -1 and every postsynaptic one +1 (whatever the
//! `Synapses`' own `order`), and sorts by `(order, name)`: every presynaptic pathway by name (of
//! all projections, interleaved), then every postsynaptic one by name. A presynaptic pathway
//! delivers the spikes of its delay ago; a postsynaptic one runs over the target's spikes of its
//! delay ago, each through the by-post index.
//!
//! Synapses with dynamics add two phases ([`NetworkPlan::sums`], [`NetworkPlan::clock_driven`]),
//! in Brian2's `groups` slot: Brian2 runs every summed-variable updater at order
//! `target.order - 1`, before the state updaters (order 0, by name), so the **sums** phase runs
//! before the update phase: each neuron of a `(summed)` target range gets the sum over its
//! synapses (gathered in synapse creation order, on one thread per neuron: deterministic, and
//! Brian2's `bincount` order), kept in the work buffer until the neuron's update takes it after
//! its state monitors record (Brian2's monitors record in the `start` slot, before the sums).
//! The **clock-driven** phase runs after the update phase (Brian2's synapse state updater,
//! `<name>_stateupdater`, sorts after the groups' that it reads: the front end refuses the other
//! order), before the deliveries: one thread per synapse integrates its `(clock-driven)`
//! variables from the groups' updated values, before their resets (a reset that assigns what
//! the integration reads runs late).

use std::collections::HashSet;

use crate::ir::network::{MonitorIr, NetGroupKind, NetworkIr};
use crate::ir::synapses::{DelayIr, Effect, Pathway, Side, SynapsesIr};
use crate::ir::{ExprId, GroupIr, IndexOf, SymbolKind, VarId};

/// How one projection's events are run (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    Atomic,
    Counted,
    Ordered,
}

/// What the step does for one group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupPlan {
    /// Slots of the spike queue: 1 + the longest delay of the projections leaving the group; 0
    /// when nothing reads the group's spikes (no projection, spike or rate monitor).
    pub depth: usize,
    /// Spikes are compacted in ascending index order (deterministic mode, or a source of an
    /// ordered projection), not in the order threads find them.
    pub ordered_compaction: bool,
    /// The reset runs after delivery (a delivery reads or writes what it writes, or writes what
    /// it reads).
    pub late_reset: bool,
    /// Variables of the group that deliveries or Poisson inputs assign (outputs of the run).
    pub written: Vec<VarId>,
    /// The group keeps each neuron's last spike step (`lastspike_step`): its refractory period
    /// is a duration, or its code or a projection's reads `lastspike`.
    pub lastspike: bool,
}

/// What the step does for one projection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProjectionPlan {
    pub delivery: Delivery,
    /// An ordered delivery whose events may run a row at a time, in parallel over its synapses:
    /// every statement adds to the target (each variable by one statement) or writes the
    /// synapse, and reads nothing a delivery writes. Additions to one target within a row are
    /// then summed in synapse order by one thread: the same order as one thread for all.
    pub row_parallel: bool,
    /// Per pathway (the synapses' order), the delays (in steps) whose events arrive in a step:
    /// one for a homogeneous delay, every step from 0 to the longest for per-synapse delays.
    pub delays: Vec<Vec<u32>>,
    /// Per pathway: the CUDA kernels deliver it at emission ([`at_emission`]): each spike's
    /// synapses add their increments into ring buffers of future arrivals in the spike's own
    /// step, and each target neuron takes its arrivals of a step after the deliveries. The C
    /// kernels (and every other pathway) deliver at arrival, in Brian2's order.
    pub at_emission: Vec<bool>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkPlan {
    pub groups: Vec<GroupPlan>,
    pub projections: Vec<ProjectionPlan>,
    /// Every (projection, pathway index), in the order the synapses slot runs them (module
    /// docs).
    pub pathways: Vec<(usize, usize)>,
    /// Whether the after-delivery phase runs.
    pub after_delivery: bool,
    /// The CUDA kernels run every postsynaptic pathway in the after-delivery phase, each target
    /// neuron's on its own thread (after its counted arrivals and Poisson inputs, before its
    /// late reset), instead of on one thread in the delivery phase: every postsynaptic pathway
    /// of the network reads nothing of its source group (so it touches only its target neuron
    /// and the synapses onto it, and runs after every presynaptic pathway of the step, as in
    /// Brian2). The presynaptic pathways of plastic projections are then delivered like any
    /// other (in parallel). The C kernels run them in the delivery phase, in Brian2's order.
    pub post_after_delivery: bool,
    /// Whether the sums phase runs (a projection has `(summed)` variables).
    pub sums: bool,
    /// Whether the clock-driven phase runs (a projection has `(clock-driven)` variables).
    pub clock_driven: bool,
}

/// A variable of a group of the network.
type GroupVar = (usize, VarId);

/// The neighbours' variables a projection reads and writes, as (group, variable).
fn touched(net: &NetworkIr, p: usize) -> (Vec<GroupVar>, Vec<GroupVar>) {
    let proj = &net.projections[p];
    let s = &proj.synapses;
    let mut read = Vec::new();
    let mut written = Vec::new();
    for side in [IndexOf::Pre, IndexOf::Post] {
        read.extend(
            s.neighbours_read(side)
                .into_iter()
                .map(|v| (proj.group_on(side), v)),
        );
        written.extend(
            s.neighbours_written(side)
                .into_iter()
                .map(|v| (proj.group_on(side), v)),
        );
    }
    (read, written)
}

/// Whether an increment is the same for every event of a step: it reads only `t`, shared
/// parameters and constants.
fn uniform(s: &SynapsesIr, e: ExprId) -> bool {
    s.group.arena.vars_of(e).into_iter().all(|v| {
        let sym = s.group.symbol(v);
        matches!(sym.kind, SymbolKind::Time) || (sym.kind == SymbolKind::Param && sym.shared)
    })
}

/// Whether every presynaptic statement adds to the target, or writes a synaptic parameter.
fn additive(s: &SynapsesIr) -> bool {
    s.pre_statements().all(|st| {
        matches!(
            (st.side, st.effect),
            (Side::Post, Effect::Add(_)) | (Side::Synapse, _)
        )
    })
}

/// Whether no two statements of one presynaptic pathway assign one variable of the target (a
/// row by a warp adds each statement's increments target by target).
fn one_statement_per_variable(s: &SynapsesIr) -> bool {
    s.pathways_of(Pathway::Pre).all(|k| {
        let mut vars: Vec<VarId> = s
            .statements(k)
            .iter()
            .filter(|st| st.side != Side::Synapse)
            .map(|st| st.var)
            .collect();
        let n = vars.len();
        vars.sort();
        vars.dedup();
        vars.len() == n
    })
}

/// Whether two presynaptic pathways of the projection touch a synaptic variable one of them
/// writes (`(event-driven)` traces, `lastupdate`, weights): their events of one step must then
/// run one pathway after the other, in Brian2's order.
fn pathways_conflict(s: &SynapsesIr) -> bool {
    let pre: Vec<usize> = s
        .pathways_of(Pathway::Pre)
        .filter(|k| !s.statements(*k).is_empty())
        .collect();
    let synaptic =
        |v: VarId| s.neighbour(v).is_none() && s.group.symbol(v).kind == SymbolKind::Param;
    let written = |k: usize| -> HashSet<VarId> {
        s.statements(k)
            .iter()
            .filter(|st| st.side == Side::Synapse)
            .map(|st| st.var)
            .collect()
    };
    let touched = |k: usize| -> HashSet<VarId> {
        s.statements(k)
            .iter()
            .flat_map(|st| {
                let e = match st.effect {
                    Effect::Add(e) | Effect::Set(e) => e,
                };
                s.group.arena.vars_of(e).into_iter().chain([st.var])
            })
            .filter(|v| synaptic(*v))
            .collect()
    };
    pre.iter().any(|&a| {
        let w = written(a);
        pre.iter()
            .any(|&b| a != b && touched(b).iter().any(|v| w.contains(v)))
    })
}

/// Whether every postsynaptic pathway of the projection reads nothing of the source group
/// (`x_pre`, `lastspike_pre`): each target neuron's pathway then touches only that neuron and
/// the synapses onto it, so the CUDA kernels run it on the neuron's own thread after the
/// deliveries (see [`NetworkPlan::post_after_delivery`]).
fn post_local(s: &SynapsesIr) -> bool {
    s.pathways_of(Pathway::Post)
        .flat_map(|k| s.statements(k))
        .all(|st| {
            let e = match st.effect {
                Effect::Add(e) | Effect::Set(e) => e,
            };
            s.group
                .arena
                .vars_of(e)
                .into_iter()
                .all(|v| !matches!(s.neighbour(v), Some((IndexOf::Pre, _))))
        })
}

fn countable(s: &SynapsesIr) -> bool {
    s.pre_statements().all(|st| match (st.side, st.effect) {
        (Side::Post, Effect::Add(e)) => uniform(s, e),
        _ => false,
    })
}

/// The most words (per batch member) of one ring buffer of arrivals ([`at_emission`]): 64 MiB.
pub const RING_MAX_WORDS: usize = 1 << 24;

/// Whether presynaptic pathway k of projection p (delivered as [`Delivery::Atomic`]) may be
/// delivered at emission, exactly: its delays are per synapse (so that delivery at arrival walks
/// every delay step's spikes and buckets each step), and each of its statements adds to a
/// non-shared variable of the target group an increment that nothing can change between the
/// spike and its arrival: constants, per-synapse parameters that no pathway writes and no
/// equation integrates, shared parameters (inputs, never written by a run), indices and counts;
/// not the groups' variables, not `t`. The sum of a step's arrivals then differs from the
/// additions at arrival in order only, as atomic additions do. The ring of each target variable
/// takes `(longest delay + 1) x n` reals: a pathway whose ring would pass [`RING_MAX_WORDS`]
/// is delivered at arrival.
pub fn at_emission(net: &NetworkIr, p: usize, k: usize) -> bool {
    let proj = &net.projections[p];
    let s = &proj.synapses;
    let pw = &s.pathways[k];
    let DelayIr::PerSynapse { max_steps, .. } = pw.delay else {
        return false;
    };
    let NetGroupKind::Neuron { ir: target, .. } = &net.groups[proj.target].kind else {
        return false;
    };
    let words = (max_steps as usize + 1) * net.groups[proj.target].n * net.dtype.size().div_ceil(4);
    let written = s.synapse_written();
    let fixed = |v: VarId| match s.group.symbol(v).kind {
        SymbolKind::Param => s.group.symbol(v).shared || !written.contains(&v),
        SymbolKind::Index(_) | SymbolKind::Count(_) => true,
        _ => false,
    };
    pw.kind == Pathway::Pre
        && !pw.statements.is_empty()
        && words <= RING_MAX_WORDS
        && pw.statements.iter().all(|st| match (st.side, st.effect) {
            (Side::Post, Effect::Add(e)) => {
                matches!(s.neighbour(st.var), Some((IndexOf::Post, v)) if !target.symbol(v).shared)
                    && s.group.arena.vars_of(e).into_iter().all(fixed)
            }
            _ => false,
        })
}

/// Decides every phase of the step of `net`.
pub fn plan(net: &NetworkIr) -> NetworkPlan {
    let np = net.projections.len();
    let touch: Vec<_> = (0..np).map(|p| touched(net, p)).collect();
    let written_by_any: HashSet<GroupVar> = touch.iter().flat_map(|(_, w)| w.clone()).collect();
    let post_after_delivery = net.projections.iter().all(|p| post_local(&p.synapses))
        && net.projections.iter().any(|p| p.synapses.has_post());
    // A plastic projection's pathways of one step follow Brian2's order: its presynaptic ones
    // run in parallel only when its postsynaptic ones wait for the after-delivery phase.
    let plastic_ordered = |s: &SynapsesIr| s.plastic() && s.has_post() && !post_after_delivery;
    let mut delivery: Vec<Delivery> = net
        .projections
        .iter()
        .enumerate()
        .map(|(p, proj)| {
            let s = &proj.synapses;
            let reads_written = touch[p].0.iter().any(|gv| written_by_any.contains(gv));
            if !additive(s) || reads_written || plastic_ordered(s) || pathways_conflict(s) {
                Delivery::Ordered
            } else if net.deterministic && countable(s) {
                Delivery::Counted
            } else if net.deterministic {
                Delivery::Ordered
            } else {
                Delivery::Atomic
            }
        })
        .collect();
    // What an ordered delivery touches is run in order by everything that writes it, and what
    // it reads is not counted (counts are added after every delivery).
    loop {
        let mut ordered_touch: HashSet<GroupVar> = HashSet::new();
        let mut ordered_read: HashSet<GroupVar> = HashSet::new();
        for p in (0..np).filter(|p| delivery[*p] == Delivery::Ordered) {
            ordered_touch.extend(touch[p].0.iter().chain(&touch[p].1).copied());
            ordered_read.extend(touch[p].0.iter().copied());
        }
        let mut changed = false;
        for p in 0..np {
            let conflict = match delivery[p] {
                Delivery::Atomic => touch[p].1.iter().any(|gv| ordered_touch.contains(gv)),
                Delivery::Counted => touch[p].1.iter().any(|gv| ordered_read.contains(gv)),
                Delivery::Ordered => false,
            };
            if conflict {
                delivery[p] = Delivery::Ordered;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let projections: Vec<ProjectionPlan> = net
        .projections
        .iter()
        .zip(&delivery)
        .enumerate()
        .map(|(p, (proj, d))| ProjectionPlan {
            delivery: *d,
            row_parallel: *d == Delivery::Ordered
                && !plastic_ordered(&proj.synapses)
                && !pathways_conflict(&proj.synapses)
                && additive(&proj.synapses)
                && !touch[p].0.iter().any(|gv| written_by_any.contains(gv))
                && one_statement_per_variable(&proj.synapses),
            delays: proj
                .synapses
                .pathways
                .iter()
                .map(|pw| match pw.delay {
                    DelayIr::Homogeneous { steps } => vec![steps],
                    DelayIr::PerSynapse { max_steps, .. } => (0..=max_steps).collect(),
                })
                .collect(),
            at_emission: (0..proj.synapses.pathways.len())
                .map(|k| *d == Delivery::Atomic && at_emission(net, p, k))
                .collect(),
        })
        .collect();

    let groups: Vec<GroupPlan> = net
        .groups
        .iter()
        .enumerate()
        .map(|(g, group)| {
            let outgoing: Vec<usize> = (0..np)
                .filter(|p| net.projections[*p].source == g)
                .collect();
            let monitored = net.monitors.iter().any(|m| {
                matches!(m, MonitorIr::Spike { .. } | MonitorIr::Rate { .. }) && m.group() == g
            });
            // The target of an `on_post` pathway reads its own spikes (of the step, or of its
            // delay ago), in order.
            let incoming_post: Vec<usize> = (0..np)
                .filter(|p| {
                    net.projections[*p].target == g && net.projections[*p].synapses.has_post()
                })
                .collect();
            let post_pathway = !incoming_post.is_empty();
            let depth = if outgoing.is_empty() && !monitored && !post_pathway {
                0
            } else {
                let pre = outgoing
                    .iter()
                    .map(|p| net.projections[*p].synapses.max_delay(Pathway::Pre));
                // Run in the after-delivery phase, a postsynaptic pathway reads its slot while
                // the next step's update may write the next one: one slot more.
                let extra = u32::from(post_after_delivery);
                let post = incoming_post
                    .iter()
                    .map(|p| net.projections[*p].synapses.max_delay(Pathway::Post) + extra);
                1 + pre.chain(post).max().unwrap_or(0) as usize
            };
            let ordered_compaction = depth > 0
                && (net.deterministic
                    || post_pathway
                    || outgoing.iter().any(|p| delivery[*p] == Delivery::Ordered));
            let mut written: Vec<VarId> = touch
                .iter()
                .flat_map(|(_, w)| w.iter())
                .filter(|(gg, _)| *gg == g)
                .map(|(_, v)| *v)
                .chain(
                    net.poisson_inputs
                        .iter()
                        .filter(|i| i.target == g)
                        .map(|i| i.var),
                )
                .chain(summed_onto(net, g))
                .collect();
            written.sort();
            written.dedup();
            let read: HashSet<VarId> = touch
                .iter()
                .flat_map(|(r, _)| r.iter())
                .filter(|(gg, _)| *gg == g)
                .map(|(_, v)| *v)
                .chain(read_by_clock_driven(net, g))
                .collect();
            let (late_reset, lastspike) = match &group.kind {
                NetGroupKind::Neuron { ir, .. } => {
                    let read_by_synapses =
                        ir.lookup("lastspike").is_some_and(|v| read.contains(&v));
                    (
                        reset_observed(ir, &written, &read),
                        ir.bookkeeping.lastspike || read_by_synapses,
                    )
                }
                _ => (false, false),
            };
            GroupPlan {
                depth,
                ordered_compaction,
                late_reset,
                written,
                lastspike,
            }
        })
        .collect();
    let after_delivery = !net.poisson_inputs.is_empty()
        || delivery.contains(&Delivery::Counted)
        || projections.iter().any(|p| p.at_emission.contains(&true))
        || groups.iter().any(|g| g.late_reset)
        || post_after_delivery;
    let sums = net
        .projections
        .iter()
        .any(|p| !p.synapses.summed.is_empty());
    let clock_driven = net
        .projections
        .iter()
        .any(|p| !p.synapses.clock_driven.is_empty());
    NetworkPlan {
        groups,
        projections,
        pathways: pathways(net),
        after_delivery,
        post_after_delivery,
        sums,
        clock_driven,
    }
}

/// The variables of group g that `(summed)` variables set.
fn summed_onto(net: &NetworkIr, g: usize) -> Vec<VarId> {
    net.projections
        .iter()
        .flat_map(|p| {
            p.synapses
                .summed
                .iter()
                .filter(move |s| p.group_on(s.side) == g)
                .map(|s| s.var)
        })
        .collect()
}

/// The variables of group g that `(clock-driven)` equations read: the clock-driven phase runs
/// after the update, so a reset that assigns one of them waits (late reset) to run after it.
fn read_by_clock_driven(net: &NetworkIr, g: usize) -> Vec<VarId> {
    net.projections
        .iter()
        .flat_map(|p| {
            [IndexOf::Pre, IndexOf::Post]
                .into_iter()
                .filter(move |side| p.group_on(*side) == g)
                .flat_map(move |side| p.synapses.neighbours_read_by_clock_driven(side))
        })
        .collect()
}

/// The synapses slot's pathways in Brian2's order (module docs): by `(order, name)`, where a
/// pathway `<projection>_<pathway name>` has order -1 when presynaptic, +1 when postsynaptic.
fn pathways(net: &NetworkIr) -> Vec<(usize, usize)> {
    let mut all: Vec<(i32, String, usize, usize)> = Vec::new();
    for (p, proj) in net.projections.iter().enumerate() {
        for (k, pw) in proj.synapses.pathways.iter().enumerate() {
            let order = match pw.kind {
                Pathway::Pre => -1,
                Pathway::Post => 1,
            };
            all.push((order, format!("{}_{}", proj.name, pw.name), p, k));
        }
    }
    all.sort();
    all.into_iter().map(|(_, _, p, k)| (p, k)).collect()
}

/// Whether deliveries that write `written` and read `read` (variables of the group) can observe
/// the order of the group's reset: they touch what it assigns, or assign what it reads.
fn reset_observed(ir: &GroupIr, written: &[VarId], read: &HashSet<VarId>) -> bool {
    let assigned: HashSet<VarId> = ir.events.reset.iter().map(|(v, _)| *v).collect();
    let reads: HashSet<VarId> = ir
        .events
        .reset
        .iter()
        .flat_map(|(_, e)| ir.arena.vars_of(*e))
        .collect();
    written
        .iter()
        .any(|v| assigned.contains(v) || reads.contains(v))
        || read.iter().any(|v| assigned.contains(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::NetworkSpec;

    fn planned(json: &str) -> (NetworkIr, NetworkPlan) {
        let ir = crate::frontend::network::lower(&NetworkSpec::from_json(json).unwrap()).unwrap();
        let plan = plan(&ir);
        (ir, plan)
    }

    fn net(projections: &str, deterministic: bool) -> String {
        format!(
            r#"{{"dt": 0.1, "deterministic": {deterministic},
            "groups": [{{"kind": "neuron", "name": "P", "n": 4,
              "model": {{"equations": "dv/dt = -v/(10*ms) : 1\ndge/dt = -ge/(5*ms) : 1\nx : 1", "threshold": "v > 1", "reset": "v = 0"}}}}],
            "projections": [{projections}]}}"#
        )
    }

    #[test]
    fn deliveries_are_atomic_counted_or_ordered() {
        let (_, p) = planned(&net(
            r#"{"name": "A", "source": "P", "target": "P", "model": "w : 1", "on_pre": "ge += w"}"#,
            false,
        ));
        assert_eq!(p.projections[0].delivery, Delivery::Atomic);
        assert!(!p.groups[0].late_reset, "ge is not reset");
        assert_eq!(p.groups[0].depth, 1);
        assert!(!p.after_delivery);
        let (_, p) = planned(&net(
            r#"{"name": "A", "source": "P", "target": "P", "on_pre": "ge += 2*we", "constants": {"we": 1}, "delay": 0.3}"#,
            true,
        ));
        assert_eq!(p.projections[0].delivery, Delivery::Counted);
        assert_eq!(p.groups[0].depth, 4);
        assert!(p.groups[0].ordered_compaction && p.after_delivery);
        let (_, p) = planned(&net(
            r#"{"name": "A", "source": "P", "target": "P", "model": "w : 1", "on_pre": "ge += w"}"#,
            true,
        ));
        assert_eq!(p.projections[0].delivery, Delivery::Ordered);
        assert!(p.projections[0].row_parallel);
        let (_, p) = planned(&net(
            r#"{"name": "A", "source": "P", "target": "P", "model": "w : 1", "on_pre": "ge += w\nge += 2*w"}"#,
            true,
        ));
        assert!(!p.projections[0].row_parallel, "two statements add to ge");
    }

    #[test]
    fn what_an_ordered_delivery_touches_is_ordered_and_resets_wait() {
        let (_, p) = planned(&net(
            r#"{"name": "A", "source": "P", "target": "P", "on_pre": "ge = 0"},
               {"name": "B", "source": "P", "target": "P", "on_pre": "ge += 1"},
               {"name": "C", "source": "P", "target": "P", "on_pre": "x += 1"},
               {"name": "D", "source": "P", "target": "P", "on_pre": "v_post += 1"}"#,
            false,
        ));
        let d: Vec<Delivery> = p.projections.iter().map(|x| x.delivery).collect();
        assert_eq!(
            d,
            [
                Delivery::Ordered,
                Delivery::Ordered,
                Delivery::Atomic,
                Delivery::Atomic
            ]
        );
        assert!(p.groups[0].late_reset, "v is reset and written by D");
        assert!(p.groups[0].ordered_compaction);
        assert_eq!(p.groups[0].written.len(), 3);
    }

    #[test]
    fn plastic_projections_deliver_in_parallel_and_pathways_run_in_brian2s_order() {
        let plastic = |name: &str| {
            format!(
                r#"{{"name": "{name}", "source": "P", "target": "P", "model": "w : 1", "on_pre": "ge += w", "on_post": "w += 1"}}"#
            )
        };
        let (ir, p) = planned(&net(
            &format!(
                "{}, {}, {}",
                plastic("S"),
                plastic("S_pq"),
                r#"{"name": "A", "source": "P", "target": "P", "model": "w : 1", "on_pre": "ge += w"}"#
            ),
            false,
        ));
        assert!(ir.projections[0].synapses.plastic());
        let d: Vec<Delivery> = p.projections.iter().map(|x| x.delivery).collect();
        // No on_post reads the source: they run on the targets' threads after the deliveries,
        // and every on_pre is delivered in parallel.
        assert!(p.post_after_delivery && p.after_delivery);
        assert_eq!(d, [Delivery::Atomic; 3]);
        // Every _pre pathway by name, then the _post ones by name: 'S_pq_pre' sorts before
        // 'S_pre', but 'S_post' before 'S_pq_post'.
        assert_eq!(p.pathways, [(2, 0), (1, 0), (0, 0), (0, 1), (1, 1)]);
        // One queue slot more: the after phase reads this step's while the next update writes.
        assert!(p.groups[0].ordered_compaction && p.groups[0].depth == 2);
        // An on_post that reads the source keeps the plastic projections on one thread.
        let reads_pre = r#"{"name": "R", "source": "P", "target": "P", "model": "w : 1", "on_pre": "ge += w", "on_post": "w += x_pre"}"#;
        let (_, p) = planned(&net(&format!("{reads_pre}, {}", plastic("S")), false));
        assert!(!p.post_after_delivery);
        assert_eq!(p.projections[0].delivery, Delivery::Ordered);
        assert_eq!(p.projections[1].delivery, Delivery::Ordered);
        assert!(!p.projections[0].row_parallel && p.groups[0].depth == 1);
        // Two presynaptic pathways sharing a trace run one after the other (ordered), else in
        // parallel.
        let two = |model: &str| {
            format!(
                r#"{{"name": "T", "source": "P", "target": "P", "model": "{model}", "on_pre": {{"a": "ge += w", "b": "x_post += w"}}, "delay": {{"b": 0.2}}}}"#
            )
        };
        let (_, p) = planned(&net(&two("w : 1"), false));
        assert_eq!(p.projections[0].delivery, Delivery::Atomic);
        assert_eq!(p.projections[0].delays, [vec![0], vec![2]]);
        let traced = two("w : 1\\ndA/dt = -A/(10*ms) : 1 (event-driven)");
        let (_, p) = planned(&net(&traced, false));
        assert_eq!(p.projections[0].delivery, Delivery::Ordered);
    }

    #[test]
    fn the_target_of_an_on_post_keeps_its_spikes() {
        let json = r#"{"dt": 0.1,
            "groups": [{"kind": "poisson", "name": "pg", "n": 3, "rates": 0.1},
                       {"kind": "neuron", "name": "T", "n": 2, "model": {"equations": "dv/dt = -v/(10*ms) : 1", "threshold": "v > 1", "reset": "v = 0"}}],
            "projections": [{"name": "S", "source": "pg", "target": "T", "model": "w : 1\ndA/dt = -A/(20*ms) : 1 (event-driven)",
                             "on_pre": "v += w\nA += 1", "on_post": "w += A"}]}"#;
        let (ir, p) = planned(json);
        assert_eq!(ir.projections[0].synapses.event_driven.len(), 1);
        assert_eq!(
            (p.groups[1].depth, p.groups[1].ordered_compaction),
            (2, true)
        );
        assert_eq!(p.projections[0].delivery, Delivery::Atomic);
    }

    #[test]
    fn per_synapse_delays_with_fixed_increments_are_delivered_at_emission() {
        let with = |on_pre: &str, model: &str, delay: &str| {
            format!(
                r#"{{"name": "A", "source": "P", "target": "P", "model": "{model}", "on_pre": {on_pre}, "delay": {delay}, "max_delay": 1.0}}"#
            )
        };
        let per_synapse = r#"{"a": "d", "b": "d"}"#;
        let at = |json: String, deterministic: bool| {
            let (_, p) = planned(&net(&json, deterministic));
            (p.projections[0].at_emission.clone(), p.after_delivery)
        };
        // Weights, shared parameters, constants, indices: fixed from spike to arrival.
        let fixed = with(
            r#"{"a": "ge += w", "b": "x_post += k*w + 0.5*j + i"}"#,
            "w : 1\\nd : second\\nk : 1 (shared)",
            per_synapse,
        );
        assert_eq!(at(fixed.clone(), false), (vec![true, true], true));
        // Deterministic mode and the C kernels deliver at arrival (in order).
        assert_eq!(at(fixed, true).0, [false, false]);
        // A homogeneous delay: delivered at arrival.
        let homogeneous = with(
            r#"{"a": "ge += w", "b": "x_post += w"}"#,
            "w : 1\\nd : second",
            r#"{"a": "d", "b": 0.2}"#,
        );
        assert_eq!(at(homogeneous, false).0, [true, false]);
        // Increments that can change before the arrival: a group's variable, t, a weight that a
        // pathway writes.
        for (on_pre, model) in [
            (
                r#"{"a": "ge += w*v_pre", "b": "x_post += w"}"#,
                "w : 1\\nd : second",
            ),
            (
                r#"{"a": "ge += w*t/ms", "b": "x_post += w"}"#,
                "w : 1\\nd : second",
            ),
            (
                r#"{"a": "ge += w", "b": "w = 0.5*w"}"#,
                "w : 1\\nd : second",
            ),
        ] {
            let got = at(with(on_pre, model, per_synapse), false).0;
            assert!(!got[0], "{on_pre}: {got:?}");
        }
    }
}
