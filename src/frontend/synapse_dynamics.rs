//! The network's rules for the synapses' per-step work (`(summed)` and `(clock-driven)`
//! variables), which one projection alone cannot check: Brian2's rule for several sums onto one
//! variable, and the orders the kernels reproduce (docs/NETWORKS.md, "Semantics of one step").
//!
//! * Brian2 refuses two summed variables onto one variable of one group unless they sum over
//!   non-overlapping subgroups (`Network.before_run`: "Multiple 'summed variables' target the
//!   variable ..."): the same here, over the projections' index ranges.
//! * Brian2 runs a summed-variable updater at `target.order - 1`: -1, before every state
//!   updater, for a whole group; but a `Subgroup` has order 1, so a sum onto a part of a group
//!   runs at order 0, among the state updaters by name (often after the group's update, which
//!   then reads the previous step's sum). Only the first is built: sums onto part of a group are
//!   refused.
//! * The sums phase computes every sum at once from the values at the step's start, so a sum
//!   may not read a variable another sum sets (Brian2 runs them one after another by name).
//! * The clock-driven phase runs after the groups' update: that is Brian2's order when each
//!   synapse state updater (`<projection>_stateupdater`) sorts after those of the groups whose
//!   integrated variables it reads (Brian2 runs the `groups` slot's order-0 objects by name).
//!   The other order would read the groups' values from before their update: refused, with the
//!   rename that gives Brian2's order here.

use crate::diagnostics::Diagnostic;
use crate::ir::network::{NetGroup, Projection};
use crate::ir::{IndexOf, SymbolKind};

/// Checks the synapses' dynamics of a network (module docs); errors name the projection.
pub fn check(groups: &[NetGroup], projections: &[Projection]) -> Result<(), Diagnostic> {
    check_sums_onto_whole_groups(groups, projections)?;
    check_sums_onto_one_variable(groups, projections)?;
    check_sums_read_no_sum(groups, projections)?;
    check_state_updater_order(groups, projections)
}

fn var_name(groups: &[NetGroup], g: usize, v: crate::ir::VarId) -> String {
    let ir = groups[g]
        .neuron_ir()
        .expect("a neuron group has the variable");
    ir.symbol(v).name.clone()
}

fn at(proj: &Projection, message: String) -> Diagnostic {
    let mut d = Diagnostic::new("model", message);
    d.field = format!("Synapses '{}', model", proj.name);
    d
}

/// Every (projection, group, variable, range) a `(summed)` variable sets.
fn sums(
    projections: &[Projection],
) -> Vec<(usize, usize, crate::ir::VarId, std::ops::Range<usize>)> {
    projections
        .iter()
        .enumerate()
        .flat_map(|(p, proj)| {
            proj.synapses.summed.iter().map(move |s| {
                let range = if s.side == IndexOf::Pre {
                    proj.source_range.clone()
                } else {
                    proj.target_range.clone()
                };
                (p, proj.group_on(s.side), s.var, range)
            })
        })
        .collect()
}

fn check_sums_onto_whole_groups(
    groups: &[NetGroup],
    projections: &[Projection],
) -> Result<(), Diagnostic> {
    for (p, g, v, range) in sums(projections) {
        if range.len() != groups[g].n {
            let proj = &projections[p];
            let role = if proj.target == g && range == proj.target_range {
                "target"
            } else {
                "source"
            };
            return Err(at(
                proj,
                format!(
                    "the summed variable onto '{}' sums over part of NeuronGroup '{}' (the {role} range [{}, {})): Brian2 runs a sum onto a subgroup among the state updaters, by name, not before them; this is not supported yet (issue 11)",
                    var_name(groups, g, v),
                    groups[g].name,
                    range.start,
                    range.end
                ),
            )
            .suggest("connect the whole group (synapses to a neuron outside the range are simply not created)"));
        }
    }
    Ok(())
}

fn check_sums_onto_one_variable(
    groups: &[NetGroup],
    projections: &[Projection],
) -> Result<(), Diagnostic> {
    let all = sums(projections);
    for (k, (p, g, v, range)) in all.iter().enumerate() {
        for (q, h, u, other) in &all[..k] {
            if g == h && v == u && range.start < other.end && other.start < range.end {
                let var = var_name(groups, *g, *v);
                return Err(at(
                    &projections[*p],
                    format!(
                        "multiple summed variables target the variable '{var}' of NeuronGroup '{}' (from Synapses '{}' and '{}') over overlapping neurons",
                        groups[*g].name, projections[*q].name, projections[*p].name
                    ),
                )
                .suggest("use one variable per summed variable in the target group and add them in its equations"));
            }
        }
    }
    Ok(())
}

fn check_sums_read_no_sum(
    groups: &[NetGroup],
    projections: &[Projection],
) -> Result<(), Diagnostic> {
    let all = sums(projections);
    for proj in projections {
        for side in [IndexOf::Pre, IndexOf::Post] {
            let g = proj.group_on(side);
            for v in proj.synapses.neighbours_read_by_sums(side) {
                if let Some((q, ..)) = all.iter().find(|(_, h, u, _)| *h == g && *u == v) {
                    return Err(at(
                        proj,
                        format!(
                            "a summed variable reads '{}' of NeuronGroup '{}', which the summed variable of Synapses '{}' sets: sums that read sums are not supported yet (issue 11)",
                            var_name(groups, g, v),
                            groups[g].name,
                            projections[*q].name
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

fn check_state_updater_order(
    groups: &[NetGroup],
    projections: &[Projection],
) -> Result<(), Diagnostic> {
    for proj in projections {
        let mine = format!("{}_stateupdater", proj.name);
        for side in [IndexOf::Pre, IndexOf::Post] {
            let g = proj.group_on(side);
            let Some(ir) = groups[g].neuron_ir() else {
                continue;
            };
            let theirs = format!("{}_stateupdater", groups[g].name);
            if mine >= theirs {
                continue;
            }
            let integrated = proj
                .synapses
                .neighbours_read_by_clock_driven(side)
                .into_iter()
                .find(|v| ir.symbol(*v).kind == SymbolKind::State);
            if let Some(v) = integrated {
                let suffix = if side == IndexOf::Pre { "pre" } else { "post" };
                return Err(at(
                    proj,
                    format!(
                        "the (clock-driven) equations read '{}_{suffix}', which NeuronGroup '{}' integrates: Brian2 runs state updaters by name, and '{mine}' runs before '{theirs}', so it would read the value from before the group's update; spikeforge integrates synapses after their groups: this order is not supported yet (issue 11)",
                        ir.symbol(v).name,
                        groups[g].name
                    ),
                )
                .suggest(format!(
                    "give the Synapses a name that sorts after '{}' (Brian2 compares '<name>_stateupdater'), and Brian2 and spikeforge agree",
                    groups[g].name
                )));
            }
        }
    }
    Ok(())
}
