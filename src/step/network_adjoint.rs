//! The adjoint of one network step: what backpropagation through a network run needs, built
//! from the neuron groups' own step adjoints ([`crate::step::adjoint`]) and the transposed
//! event-driven propagation of the projections.
//!
//! Brian2's order within a step (docs/NETWORKS.md, section 4: update, threshold, synaptic
//! effects, reset) makes each neuron group's step `x' = select(spike(u), R(u + Δ), u + Δ)`, `Δ`
//! what the synapses delivered in the step; a delivery is linear in the spikes: a presynaptic
//! pathway with the statement `x_post += e(w)` adds, for a spike of source neuron `i` at step
//! `t` and each synapse `s = (i, j)` of delay `D_s`, `e(w_s)` to `Δ_x(j)` at step `t + D_s`. So
//! the adjoint walks steps backwards and, per step `t`:
//!
//! 1. each group gives `a_Δ(t)`, the adjoint of what was delivered to it (from its step adjoint
//!    with the delivered variables, [`adjoint_with_deliveries`]);
//! 2. each pathway propagates it back along its synapses (the transposed propagation): the
//!    spike of source `i` at `t` gets `sum_s e(w_s) a_Δ(j_s, t + D_s)`, and, event-driven over
//!    the steps where `i` spiked, `d/dw_s += a_Δ(j_s, t + D_s) de/dw_s`;
//! 3. each group applies its step adjoint with that spike cotangent (plus the spike counts'
//!    and rates' cotangents), which the surrogate turns into the state's adjoints.
//!
//! What is in scope is checked here, once per network, and everything else is a
//! [`NotDifferentiable`] naming the construct: neuron groups that differentiate as groups do
//! (a surrogate threshold for spikes), static synapses whose presynaptic statements add to a
//! state variable of the target a term that reads only synaptic parameters (per synapse or
//! shared) and constants, with any delays (per projection or per synapse), and spike, rate and
//! state monitors of state variables. Refused: plasticity (statements that write synaptic or
//! presynaptic variables, `on_post`, `(event-driven)` variables), synapse dynamics
//! (`(clock-driven)`, `(summed)`), assignments other than `+=`/`-=`, increments that read the
//! neurons' variables, Poisson groups, spike generators, Poisson inputs, TimedArrays, monitors
//! of parameters or subexpressions.

use crate::ir::derivative::derivative;
use crate::ir::network::{MonitorIr, NetGroupKind, NetworkIr};
use crate::ir::synapses::{DelayIr, Effect, Pathway, Side};
use crate::ir::{ExprArena, ExprId, IndexOf, RefractoryIr, SymbolKind, VarId};

use super::adjoint::{adjoint_with_deliveries, AdjointDag, NotDifferentiable};
use super::network::{plan, NetworkPlan};

/// One neuron group's step adjoint within the network.
pub struct GroupAdjoint {
    /// The group's index in the network.
    pub group: usize,
    pub dag: AdjointDag,
    /// The refractory period in steps (a constant duration), if any.
    pub refractory_steps: Option<i64>,
    /// Slots of the adjoint history of each delivered variable: 2 + the longest delay of the
    /// projections into the group (a spike at `t` reads `a_Δ` of `t + D`, `D` up to the
    /// longest delay, while `a_Δ` of `t - 1` is written in the same phase of the kernel).
    pub history: usize,
    /// The stored variables of the group that the synapses deliver to, in the order of the
    /// DAG's `Δ`s.
    pub delivered_targets: Vec<VarId>,
}

/// One statement `x_post += e` of a presynaptic pathway: what the transposed propagation runs.
pub struct DeliveryAdjoint {
    pub projection: usize,
    pub delay: DelayIr,
    /// The target group and the index of `x` among its delivered variables.
    pub target: usize,
    pub delivered: usize,
    /// `e`, in `arena` (the projection's synapse arena, with the derivatives added).
    pub increment: ExprId,
    /// Each synaptic parameter `e` reads and `de/dw`, in `arena`.
    pub grads: Vec<(VarId, ExprId)>,
    pub arena: ExprArena,
}

/// The adjoint of a network's step (see the module documentation).
pub struct NetworkAdjoint {
    pub plan: NetworkPlan,
    /// Per group of the network: its adjoint (every group is a neuron group here).
    pub groups: Vec<GroupAdjoint>,
    /// Every presynaptic statement, in the synapses' order.
    pub deliveries: Vec<DeliveryAdjoint>,
}

fn refuse<T>(what: String) -> Result<T, NotDifferentiable> {
    Err(NotDifferentiable(what))
}

/// The adjoint of `net`'s step, or what makes its runs not differentiable.
pub fn network_adjoint(net: &NetworkIr) -> Result<NetworkAdjoint, NotDifferentiable> {
    if let Some(t) = net.tables.first() {
        return refuse(format!(
            "it uses the TimedArray '{}'; gradients through TimedArrays are not supported yet",
            t.name
        ));
    }
    if let Some(p) = net.poisson_inputs.first() {
        return refuse(format!(
            "the PoissonInput '{}' draws random numbers: a stochastic input has no pathwise \
             derivative here",
            p.name
        ));
    }
    for g in &net.groups {
        match &g.kind {
            NetGroupKind::Neuron { .. } => {}
            NetGroupKind::Poisson { .. } => {
                return refuse(format!(
                    "the PoissonGroup '{}' draws random spikes: a stochastic input has no \
                     pathwise derivative here",
                    g.name
                ))
            }
            NetGroupKind::SpikeGenerator { .. } => {
                return refuse(format!(
                    "the SpikeGeneratorGroup '{}' is not supported by network gradients yet",
                    g.name
                ))
            }
        }
    }
    // Per group, the variables the synapses deliver to, in order of first delivery.
    let mut delivered: Vec<Vec<VarId>> = vec![Vec::new(); net.groups.len()];
    let mut history = vec![2usize; net.groups.len()];
    let mut deliveries = Vec::new();
    for (p, proj) in net.projections.iter().enumerate() {
        let s = &proj.synapses;
        let name = &proj.name;
        if s.has_post() {
            return refuse(format!(
                "the Synapses '{name}' have on_post statements (plasticity); gradients take \
                 static synapses"
            ));
        }
        if let Some(v) = s.event_driven.first() {
            return refuse(format!(
                "the Synapses '{name}' have the (event-driven) variable '{}' (plasticity)",
                s.group.symbol(*v).name
            ));
        }
        if let Some(v) = s.clock_driven.first() {
            return refuse(format!(
                "the Synapses '{name}' have the (clock-driven) variable '{}' (synapse dynamics)",
                s.group.symbol(*v).name
            ));
        }
        if let Some(sum) = s.summed.first() {
            return refuse(format!(
                "the Synapses '{name}' have the (summed) variable '{}'",
                s.group.symbol(sum.var).name
            ));
        }
        let target = proj.target;
        let target_ir = net.groups[target]
            .neuron_ir()
            .expect("every group is a neuron group here");
        for k in s.pathways_of(Pathway::Pre) {
            let pathway = &s.pathways[k];
            for st in &pathway.statements {
                // Named as the model names it: the target's variable, without `_post`.
                let source_ir = net.groups[proj.source]
                    .neuron_ir()
                    .expect("every group is a neuron group here");
                let var = match s.neighbour(st.var) {
                    Some((IndexOf::Post, x)) => &target_ir.symbol(x).name,
                    Some((IndexOf::Pre, x)) => &source_ir.symbol(x).name,
                    _ => &s.group.symbol(st.var).name,
                };
                let e = match (st.side, st.effect) {
                    (Side::Post, Effect::Add(e)) => e,
                    (Side::Synapse, _) => {
                        return refuse(format!(
                            "the Synapses '{name}' write the synaptic variable '{var}' on_pre \
                             (plasticity)"
                        ))
                    }
                    (Side::Pre, _) => {
                        return refuse(format!(
                            "the Synapses '{name}' write the presynaptic variable '{var}' on_pre"
                        ))
                    }
                    (Side::Post, Effect::Set(_)) => {
                        return refuse(format!(
                            "the Synapses '{name}' assign '{var}' on_pre (=, *=, /=); gradients \
                             take additions (+=, -=)"
                        ))
                    }
                };
                for v in s.group.arena.vars_of(e) {
                    let sym = s.group.symbol(v);
                    if sym.kind != SymbolKind::Param {
                        return refuse(format!(
                            "the Synapses '{name}' add an increment to '{var}' that reads \
                             '{}'; gradients take increments of synaptic parameters and \
                             constants",
                            sym.name
                        ));
                    }
                }
                let Some((IndexOf::Post, x)) = s.neighbour(st.var) else {
                    unreachable!("a postsynaptic statement assigns a variable of the target")
                };
                if !target_ir.stored().contains(&x) {
                    return refuse(format!(
                        "the Synapses '{name}' add to '{}', which is not a state variable of \
                         '{}'",
                        target_ir.symbol(x).name,
                        net.groups[target].name
                    ));
                }
                let list = &mut delivered[target];
                let index = list.iter().position(|y| *y == x).unwrap_or_else(|| {
                    list.push(x);
                    list.len() - 1
                });
                history[target] = history[target].max(2 + pathway.delay.max_steps() as usize);
                let mut arena = s.group.arena.clone();
                let grads = s
                    .group
                    .arena
                    .vars_of(e)
                    .into_iter()
                    .map(|w| (w, derivative(&mut arena, e, w)))
                    .collect();
                deliveries.push(DeliveryAdjoint {
                    projection: p,
                    delay: pathway.delay,
                    target,
                    delivered: index,
                    increment: e,
                    grads,
                    arena,
                });
            }
        }
    }
    for m in &net.monitors {
        if let MonitorIr::State {
            name,
            group,
            variables,
            ..
        } = m
        {
            let ir = net.groups[*group].neuron_ir().expect("a neuron group");
            for v in variables {
                let stored = ir.lookup(v).is_some_and(|x| ir.stored().contains(&x));
                if !stored {
                    return refuse(format!(
                        "the StateMonitor '{name}' records '{v}', which is not a state \
                         variable; gradients flow through recorded state variables"
                    ));
                }
            }
        }
    }
    let mut groups = Vec::new();
    for (g, group) in net.groups.iter().enumerate() {
        let NetGroupKind::Neuron { spec, ir } = &group.kind else {
            unreachable!("checked above")
        };
        let dag = adjoint_with_deliveries(ir, &[], spec.surrogate, &delivered[g]).map_err(|e| {
            NotDifferentiable(format!("in the NeuronGroup '{}': {}", group.name, e.0))
        })?;
        let refractory_steps = match ir.events.refractory {
            RefractoryIr::Duration(d) => Some(super::timestep(
                ir.arena.as_const(d).expect("checked: a constant duration"),
                net.dt,
            )),
            _ => None,
        };
        groups.push(GroupAdjoint {
            group: g,
            dag,
            refractory_steps,
            history: history[g],
            delivered_targets: delivered[g].clone(),
        });
    }
    Ok(NetworkAdjoint {
        plan: plan(net),
        groups,
        deliveries,
    })
}
