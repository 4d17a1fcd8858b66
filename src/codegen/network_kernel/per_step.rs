//! The per-step path's launches around the after-delivery phase (docs/NETWORKS.md, "Kernels"):
//! where nothing runs between a step's after-delivery phase and the next step's update but a
//! kernel boundary (no sums phase), the update kernel of step s runs the after-delivery phase
//! of step s - 1 first, each neuron on the thread that updates it, and the after-delivery kernel
//! is launched once, after a call's last step. One launch fewer a step (on the H200 a launch
//! costs microseconds, the cortical microcircuit's whole step about 36 µs), with the same order
//! of work for every neuron: what the after-delivery phase of a neuron reads of other threads'
//! work (its arrivals, the spike queue) was written by the delivery kernel before, and the
//! persistent kernel already runs the two phases back to back on one thread without a barrier.

use std::fmt::{self, Write};

use super::{scope, Gen, StepGrid, AFTER_ENTRY};
use crate::codegen::writer::SourceWriter;
use crate::step::network::NetworkPlan;

/// Whether the per-step path's update kernel runs the previous step's after-delivery phase
/// (and the after-delivery kernel runs only after a call's last step): an after-delivery phase
/// and no sums phase (which reads what the after-delivery phase writes, before the update).
pub fn after_folded(plan: &NetworkPlan) -> bool {
    plan.after_delivery && !plan.sums
}

/// The per-step kernels launched once after a call's last step (as that step, `sf_s = steps -
/// 1`), with their launch shape: the after-delivery kernel where [`after_folded`].
pub fn closing_launches(plan: &NetworkPlan) -> Vec<(&'static str, StepGrid)> {
    if after_folded(plan) {
        vec![(AFTER_ENTRY, StepGrid::Update)]
    } else {
        Vec::new()
    }
}

impl Gen<'_> {
    /// In the update kernel, where [`after_folded`]: the after-delivery phase of the previous
    /// step of the call (none at its first step: the previous call's last after-delivery
    /// kernel ran it), with that step's `sf_t_step` and `sf_t`. Needs `sf_vb`.
    pub(super) fn write_folded_after(&self, w: &mut SourceWriter) -> fmt::Result {
        if !after_folded(self.plan) {
            return Ok(());
        }
        let real = self.real_t();
        w.block("if (sf_s > 0)", |w| {
            writeln!(w, "/* The after-delivery phase of the previous step. */")?;
            writeln!(w, "const int32_t sf_t_previous = sf_t_step - 1;")?;
            scope(w, |w| {
                writeln!(w, "const int32_t sf_t_step = sf_t_previous;")?;
                writeln!(
                    w,
                    "const {real} sf_t = ({real}) sf_t_step * {};",
                    self.lit(self.net.dt)
                )?;
                writeln!(w, "(void) sf_t;")?;
                self.write_after_phase(w)
            })
        })
    }
}
