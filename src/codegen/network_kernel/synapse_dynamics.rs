//! The phases of the synapses' own dynamics (docs/NETWORKS.md, "Semantics of one step"; what
//! runs where is decided in `crate::step::network`):
//!
//! * **sums** (before the update): one thread per neuron of each `(summed)` range adds its
//!   synapses' values in creation order (the by-post index for `_post`, the row for `_pre`:
//!   Brian2's `bincount` order) and leaves the sum in the work buffer; the neuron's update takes
//!   it into the variable after its state monitors record. One thread per sum and a fixed order:
//!   the same bits on every run, on the CPU and the GPU, in both modes.
//! * **clock-driven** (after the update, before the deliveries): one thread per synapse steps
//!   its `(clock-driven)` variables with the projection's integration scheme, through the
//!   step printer of neuron groups ([`StepBody`]).
//!
//! In the per-step path each is a kernel of its own ([`SUMS_ENTRY`], [`SYNAPSES_ENTRY`]); the
//! persistent kernel runs them between grid barriers. Both loop over their items with a
//! grid-stride loop, so any grid runs them.

use std::fmt::{self, Write};

use super::{scope, write_clamp, Gen, EVENT};
use crate::codegen::dialect::Dialect;
use crate::codegen::network_layout::{group_var_ident, summed_variables, UPDATE_BLOCK};
use crate::codegen::step_body::StepBody;
use crate::codegen::writer::SourceWriter;
use crate::ir::{IndexOf, VarId};
use crate::step::network::NetworkPlan;
use crate::step::{self, FastMath};

/// The sums phase's CUDA kernel (per step, before the update).
pub const SUMS_ENTRY: &str = "sf_network_sums";
/// The clock-driven phase's CUDA kernel (per step, after the update).
pub const SYNAPSES_ENTRY: &str = "sf_network_synapses";

/// Which launch shape a per-step CUDA kernel takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepGrid {
    /// The update kernel's: its blocks of `UPDATE_BLOCK` threads (the sums and clock-driven
    /// kernels too: their grid-stride loops take any grid).
    Update,
    /// The delivery kernel's: `2 x SMs` blocks (at least one warp per task) of `DELIVER_BLOCK`
    /// threads, with the segments' dynamic shared memory.
    Deliver,
}

/// The per-step CUDA kernels of a network, in launch order, with their launch shape (the
/// after-delivery kernel only where the update does not fold it: [`super::closing_launches`]).
pub fn step_launches(plan: &NetworkPlan) -> Vec<(&'static str, StepGrid)> {
    let mut out = Vec::new();
    if plan.sums {
        out.push((SUMS_ENTRY, StepGrid::Update));
    }
    out.push((super::UPDATE_ENTRY, StepGrid::Update));
    if plan.clock_driven {
        out.push((SYNAPSES_ENTRY, StepGrid::Update));
    }
    out.push((super::DELIVER_ENTRY, StepGrid::Deliver));
    if plan.after_delivery && !super::after_folded(plan) {
        out.push((super::AFTER_ENTRY, StepGrid::Update));
    }
    out
}

/// Barriers the persistent kernel passes per step: after the update and after the delivery;
/// with sums, before them (after the previous step's after-delivery phase, which writes what
/// they read) and after them; with clock-driven variables, after their phase.
pub fn barriers_per_step(plan: &NetworkPlan) -> u64 {
    let sums = if plan.sums {
        1 + u64::from(plan.after_delivery)
    } else {
        0
    };
    2 + sums + u64::from(plan.clock_driven)
}

impl Gen<'_> {
    /// `for` over items `0..count` of a phase: every item on the CPU, a grid-stride share on
    /// the GPU.
    fn items(&self, var: &str, count: &str) -> String {
        match self.dialect {
            Dialect::Cuda => format!(
                "for (int64_t {var} = (int64_t) blockIdx.x * blockDim.x + threadIdx.x; {var} < {count}; {var} += (int64_t) gridDim.x * blockDim.x)"
            ),
            Dialect::C => format!("for (int64_t {var} = 0; {var} < {count}; ++{var})"),
        }
    }

    /// Element `index` of sum `k`'s region of the work buffer.
    fn sum_slot(&self, k: usize, index: &str) -> String {
        format!(
            "(({}*) (sf_w + {}))[{index}]",
            self.real_t(),
            self.layout.work.sums[k]
        )
    }

    /// The sums phase: every `(summed)` variable's sums into the work buffer. Needs `sf_b` and
    /// the step prologue.
    pub(super) fn write_sums_phase(&self, w: &mut SourceWriter) -> fmt::Result {
        let real = self.real_t();
        for (k, (p, index)) in summed_variables(self.net).into_iter().enumerate() {
            let proj = &self.net.projections[p];
            let summed = proj.synapses.summed[index];
            let (n_pre, n_post) = (proj.n_pre(), proj.n_post());
            let start_pre = proj.source_range.start;
            let names = |v: VarId| self.synapse_name(p, v, &EVENT);
            let printer = self.synapse_printer(p, &names);
            let add = |w: &mut SourceWriter| -> fmt::Result {
                let text = printer.block(&[summed.value], "sf_v", w)?.remove(0);
                writeln!(w, "sf_acc += {text};")
            };
            let n = if summed.side == IndexOf::Pre {
                n_pre
            } else {
                n_post
            };
            writeln!(w, "/* projection {p}, sum {index} */")?;
            w.block(self.items("sf_x", &n.to_string()), |w| {
                writeln!(w, "{real} sf_acc = {};", self.lit(0.0))?;
                if summed.side == IndexOf::Post {
                    writeln!(w, "const int32_t sf_j = (int32_t) sf_x;")?;
                    self.write_synapses_onto(p, w, add)?;
                } else {
                    writeln!(w, "const int32_t sf_r = (int32_t) sf_x;")?;
                    writeln!(w, "const int32_t sf_pre = sf_r + {start_pre};")?;
                    writeln!(w, "(void) sf_pre;")?;
                    let rows = self.row_offsets(p);
                    writeln!(w, "int64_t sf_lo = {rows}[sf_r], sf_hi = {rows}[sf_r + 1];")?;
                    write_clamp(p, w)?;
                    w.block(
                        "for (int64_t sf_syn = sf_lo; sf_syn < sf_hi; ++sf_syn)",
                        |w| {
                            self.write_target(p, w)?;
                            add(w)
                        },
                    )?;
                }
                writeln!(w, "{} = sf_acc;", self.sum_slot(k, "sf_x"))
            })?;
        }
        Ok(())
    }

    /// In neuron `sf_i`'s update of group g, after its state monitors recorded: the sums onto
    /// the group taken into their variables (the register and the stored value).
    pub(super) fn write_sums_taken(&self, g: usize, w: &mut SourceWriter) -> fmt::Result {
        for (k, (p, index)) in summed_variables(self.net).into_iter().enumerate() {
            let proj = &self.net.projections[p];
            let summed = proj.synapses.summed[index];
            if proj.group_on(summed.side) != g {
                continue;
            }
            let range = if summed.side == IndexOf::Pre {
                &proj.source_range
            } else {
                &proj.target_range
            };
            let (a, b) = (range.start, range.end);
            let v = summed.var;
            w.block(format!("if (sf_i >= {a} && sf_i < {b})"), |w| {
                writeln!(
                    w,
                    "x{} = {};",
                    v.0,
                    self.sum_slot(k, &format!("sf_i - {a}"))
                )?;
                writeln!(w, "{} = x{};", self.at(&group_var_ident(g, v), "sf_i"), v.0)
            })?;
        }
        Ok(())
    }

    /// The clock-driven phase: each synapse of each projection with `(clock-driven)` variables
    /// integrated over one step. Needs `sf_b` and the step prologue.
    pub(super) fn write_clock_driven_phase(&self, w: &mut SourceWriter) -> fmt::Result {
        let fast_math = match (self.net.fast_math, self.dialect) {
            (false, _) => FastMath::Off,
            (true, d) => FastMath::On {
                exp2: d == Dialect::Cuda,
            },
        };
        for (p, proj) in self.net.projections.iter().enumerate() {
            let ir = &proj.synapses.group;
            if proj.synapses.clock_driven.is_empty() {
                continue;
            }
            let dag = step::build(ir, &[], fast_math);
            let (n_pre, start_pre) = (proj.n_pre(), proj.source_range.start);
            let names = |v: VarId| self.synapse_name(p, v, &EVENT);
            let next = |v: VarId| format!("sf_next{}", v.0);
            let body = StepBody {
                ir,
                dag: &dag,
                dt: self.net.dt,
                dtype: self.real,
                dialect: self.dialect,
                var_name: &names,
                next_name: &next,
                lane: "",
                noise_element: "0",
                lastspike: false,
            };
            w.block(self.items("sf_syn", &format!("sf_nsyn{p}")), |w| {
                self.write_target(p, w)?;
                writeln!(w, "const int32_t sf_r = in_p{p}_sources[sf_syn];")?;
                writeln!(w, "if (sf_r < 0 || sf_r >= {n_pre}) continue;")?;
                writeln!(w, "const int32_t sf_pre = sf_r + {start_pre};")?;
                writeln!(w, "(void) sf_pre;")?;
                body.write(w)
            })?;
        }
        Ok(())
    }

    /// A per-step kernel that runs one of the phases above.
    fn write_phase_cuda(
        &self,
        entry: &str,
        phase: impl FnOnce(&Self, &mut SourceWriter) -> fmt::Result,
        w: &mut SourceWriter,
    ) -> fmt::Result {
        writeln!(w, "{}\n{{", self.cuda_signature(entry, UPDATE_BLOCK))?;
        w.indented(|w| {
            writeln!(w, "const int32_t sf_b = (int32_t) blockIdx.y;")?;
            self.step_prologue(w)?;
            phase(self, w)
        })?;
        w.write_str("}\n")
    }

    /// The per-step kernels of the phases this network has (before the update kernel's
    /// source: the order does not matter to CUDA).
    pub(super) fn write_dynamics_cuda(&self, w: &mut SourceWriter) -> fmt::Result {
        if self.plan.sums {
            self.write_phase_cuda(SUMS_ENTRY, Self::write_sums_phase, w)?;
            writeln!(w)?;
        }
        if self.plan.clock_driven {
            self.write_phase_cuda(SYNAPSES_ENTRY, Self::write_clock_driven_phase, w)?;
            writeln!(w)?;
        }
        Ok(())
    }

    /// The persistent kernel's sums phase of a step, between its barriers.
    pub(super) fn write_persistent_sums(&self, w: &mut SourceWriter) -> fmt::Result {
        if !self.plan.sums {
            return Ok(());
        }
        if self.plan.after_delivery {
            self.write_barrier(w)?;
        }
        scope(w, |w| {
            self.step_prologue(w)?;
            self.write_sums_phase(w)
        })?;
        self.write_barrier(w)
    }

    /// The persistent kernel's clock-driven phase of a step, then its barrier.
    pub(super) fn write_persistent_clock_driven(&self, w: &mut SourceWriter) -> fmt::Result {
        if !self.plan.clock_driven {
            return Ok(());
        }
        scope(w, |w| {
            self.step_prologue(w)?;
            self.write_clock_driven_phase(w)
        })?;
        self.write_barrier(w)
    }
}

impl Gen<'_> {
    /// The persistent kernel's barrier: `__syncthreads` in the resident (one-block) kernel, else
    /// the grid barrier (`sf_grid_sync`, the next arrival count).
    fn write_barrier(&self, w: &mut SourceWriter) -> fmt::Result {
        if self.resident_now() {
            return writeln!(w, "__syncthreads();");
        }
        writeln!(w, "sf_target += gridDim.x;")?;
        writeln!(w, "sf_grid_sync(sf_barrier, sf_target, sf_group_blocks);")
    }
}
