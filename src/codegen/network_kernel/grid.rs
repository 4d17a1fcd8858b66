//! The cooperative grid's **one-barrier step** (docs/NETWORKS.md, "The persistent kernel"): the
//! persistent kernel of a network whose every delivery is an atomic addition of a synaptic
//! value onto a target variable, in the spike's own step, runs one grid barrier a step instead
//! of two.
//!
//! The two barriers of the general kernel order a step's spikes (complete after the update) and
//! their additions (complete before the next update reads them). Here the warp that finds its
//! spikes delivers them at once, in the update phase, into an **accumulator** of the target
//! variable (two per variable, by step parity, in the work buffer) instead of the variable: the
//! updates of that step read the other parity's accumulator, which holds the previous step's
//! arrivals, complete since the barrier. Each neuron's update folds that accumulator into its
//! variable (`x = x + a` where anything arrived) and zeroes it, before anything reads the
//! variable (state monitors included); at the end of a launch the last step's arrivals are
//! folded the same way, so the state the launch leaves is the general kernel's. Step `t`:
//!
//! ```text
//! update(t): x_j += acc[(t-1) & 1][j], acc[(t-1) & 1][j] = 0; integrate; threshold; compact;
//!            for each spike: acc[t & 1][target] += value (atomic)          -- grid barrier
//! ```
//!
//! `acc[t & 1]` is written only between barriers `t-1` and `t`; it is read and zeroed between
//! barriers `t` and `t+1`; the next writes to it come after barrier `t+1`. The queue's counts
//! follow one step late: block 0 stores the count of step `t-1` and zeroes the write cursor of
//! step `t+1` (the same word) at the start of step `t`, and the last step's after the loop.
//!
//! What changes against the general kernel is the association of the float additions: `x +
//! (a1 + a2 + ...)` instead of `(x + a1) + a2 + ...`, in an order that is already the atomics'
//! (any) order; the spikes are the same (the tests of every path check it).
//!
//! Which networks: no sums, clock-driven synapses or after-delivery phase; no spike or rate
//! monitor (they read the step's whole queue after a barrier); no spike generator with a
//! queue; unordered compaction; every projection delivered atomically, with presynaptic
//! pathways only, each with delay 0 and statements `x_post += e` only, where `e` reads no
//! neuron's variable (a synaptic weight, a constant, `t`) and `x` is a per-neuron state variable
//! or parameter of a neuron group. Anything else runs the general kernel.

mod cluster;
mod registers;
pub use cluster::{
    cluster_blocks, cluster_shape, ClusterShape, CLUSTER_ACC_MAX_BYTES, CLUSTER_ENTRY, CLUSTER_MAX,
};
pub use registers::{register_slots, REGISTER_SLOTS};

use std::fmt::{self, Write};

use super::{scope, Gen, EVENT};
use crate::codegen::network_layout::group_var_ident;
use crate::codegen::network_layout::{BARRIER_GROUPS, BARRIER_LINE_WORDS};
use crate::codegen::printer::Printer;
use crate::codegen::writer::SourceWriter;
use crate::ir::network::{MonitorIr, NetGroupKind, NetworkIr};
use crate::ir::synapses::{DelayIr, Effect, Pathway, Side};
use crate::ir::{IndexOf, SymbolKind, VarId};
use crate::step::network::{Delivery, NetworkPlan};

/// Whether the persistent grid kernel of `net` runs one barrier a step (see the module
/// documentation for which networks do).
pub fn one_barrier(net: &NetworkIr, plan: &NetworkPlan) -> bool {
    if plan.sums || plan.clock_driven || plan.after_delivery || net.projections.is_empty() {
        return false;
    }
    let monitors_queue = net
        .monitors
        .iter()
        .any(|m| matches!(m, MonitorIr::Spike { .. } | MonitorIr::Rate { .. }));
    let queued_generator = (net.groups.iter().zip(&plan.groups))
        .any(|(g, gp)| matches!(g.kind, NetGroupKind::SpikeGenerator { .. }) && gp.depth > 0);
    let ordered = plan.groups.iter().any(|g| g.ordered_compaction);
    if monitors_queue || queued_generator || ordered {
        return false;
    }
    (net.projections.iter().zip(&plan.projections)).all(|(proj, pp)| {
        let s = &proj.synapses;
        let target = net.groups[proj.target].neuron_ir();
        pp.delivery == Delivery::Atomic
            && s.pathways
                .iter()
                .all(|pw| pw.kind == Pathway::Pre && pw.delay == DelayIr::Homogeneous { steps: 0 })
            && s.pre_statements().all(|st| {
                let Effect::Add(e) = st.effect else {
                    return false;
                };
                let reads_neuron = (s.group.arena.vars_of(e).into_iter())
                    .any(|v| matches!(s.group.symbol(v).kind, SymbolKind::Neighbour(..)));
                let accumulable = match (s.neighbour(st.var), target) {
                    (Some((IndexOf::Post, v)), Some(ir)) => {
                        let sym = ir.symbol(v);
                        !sym.shared && matches!(sym.kind, SymbolKind::State | SymbolKind::Param)
                    }
                    _ => false,
                };
                st.side == Side::Post && accumulable && !reads_neuron
            })
    })
}

/// The variables the one-barrier kernel accumulates, as (group, variable), each once, in the
/// order the projections first add to them; none when the kernel is not [`one_barrier`].
pub fn accumulated(net: &NetworkIr, plan: &NetworkPlan) -> Vec<(usize, VarId)> {
    let mut out = Vec::new();
    if !one_barrier(net, plan) {
        return out;
    }
    for proj in &net.projections {
        let s = &proj.synapses;
        for st in s.pre_statements() {
            if let Some((IndexOf::Post, v)) = s.neighbour(st.var) {
                if !out.contains(&(proj.target, v)) {
                    out.push((proj.target, v));
                }
            }
        }
    }
    out
}

/// Cycles (`clock64`) a block waits at a grid barrier before it stops the kernel with an error
/// (`__trap`): about 35 s at 2 GHz, far beyond any step, so that blocks that are not all
/// resident (a launch that broke the co-residency the barrier needs) fail instead of hanging.
const SPIN_CYCLES: u64 = 1 << 36;

/// The grid barrier's variant (see [`Gen::write_grid_sync`]), a launch parameter of the
/// persistent kernel (`sf_group_blocks`), so that one compiled kernel runs either.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarrierVariant {
    /// One counter, polled by every block.
    Flat,
    /// One arrival counter and a release word on lines of their own (the grouped barrier with
    /// one group): the last arrival stores the release, so the polls never meet the arrivals.
    Split,
    /// Arrival groups of about this many blocks, a top counter, a release word.
    Grouped { group_blocks: u32 },
}

/// Blocks per arrival group of the grouped grid barrier (at most [`BARRIER_GROUPS`] groups).
pub const BARRIER_GROUP_BLOCKS: u32 = 32;

impl BarrierVariant {
    /// The kernel's `sf_group_blocks` parameter.
    pub fn group_blocks(self) -> i32 {
        match self {
            BarrierVariant::Flat => 0,
            BarrierVariant::Split => i32::MAX,
            BarrierVariant::Grouped { group_blocks } => {
                group_blocks.clamp(1, i32::MAX as u32) as i32
            }
        }
    }

    /// Its name, as [`BarrierVariant::parse`] reads it.
    pub fn name(self) -> &'static str {
        match self {
            BarrierVariant::Flat => "flat",
            BarrierVariant::Split => "split",
            BarrierVariant::Grouped { .. } => "grouped",
        }
    }

    /// `flat`, `split` or `grouped`.
    pub fn parse(text: &str) -> Option<BarrierVariant> {
        match text.trim() {
            "flat" => Some(BarrierVariant::Flat),
            "split" => Some(BarrierVariant::Split),
            "grouped" => Some(BarrierVariant::Grouped {
                group_blocks: BARRIER_GROUP_BLOCKS,
            }),
            _ => None,
        }
    }
}

impl Gen<'_> {
    /// The grid barrier of the persistent kernels (`sf_grid_sync`). One block: `__syncthreads`.
    /// A cooperative grid (every block resident, so every block reaches the barrier), in one
    /// of the variants that the launch picks (`sf_group_blocks`, see [`BarrierVariant`]):
    ///
    /// - **flat** (`sf_group_blocks` 0): each block's thread 0 adds one to one counter (the
    ///   release word) and polls it until it reaches `sf_target`;
    /// - **grouped** (`sf_group_blocks` > 0): the blocks arrive in groups (`blockIdx.x` modulo
    ///   the groups: about `sf_group_blocks` blocks each, at most [`BARRIER_GROUPS`] groups),
    ///   each block's thread 0 adding one to its group's counter; the last of a group adds one
    ///   to the top counter; the last group's last block stores `sf_target` into the release
    ///   word, which every block polls. Thousands of blocks thus never queue their atomics on
    ///   one address, and the polls never touch a counter (release word, top counter and group
    ///   counters on 128-byte lines of their own, [`BARRIER_LINE_WORDS`] apart), at the cost of
    ///   two more dependent round trips to L2 for the last arrival. With `sf_group_blocks` at
    ///   least the grid (**split**, `i32::MAX`) there is one group: one arrival counter, and the
    ///   release word that its last arrival stores, on separate lines.
    ///
    /// Either way the release word reads `sf_target` once every block has arrived. The counters
    /// only grow (`sf_target / gridDim.x` is the barrier's number since the call began: a
    /// group's count reaches that times the group's size), so nothing is reset and no sense
    /// flips; 64 bits never wrap. Memory order: each hop is `__threadfence` (fence.sc,
    /// cumulative), then the atomic or the store; a waiter that reads the release (a volatile
    /// load, not cached in L1) fences before its block goes on, so every write made before any
    /// arrival is visible after the barrier. A wait of more than `SPIN_CYCLES` cycles traps
    /// (an error, never a hang).
    pub(super) fn write_grid_sync(&self, w: &mut SourceWriter) -> fmt::Result {
        let line = BARRIER_LINE_WORDS / 2;
        let head = "static __device__ __forceinline__ void sf_grid_sync(unsigned long long* sf_arrived, const unsigned long long sf_target, const int32_t sf_group_blocks)";
        w.block(head, |w| {
            writeln!(w, "__syncthreads();")?;
            writeln!(w, "if (gridDim.x == 1u) return;")?;
            w.block("if (threadIdx.x == 0)", |w| {
                writeln!(w, "__threadfence();")?;
                w.block("if (sf_group_blocks <= 0)", |w| {
                    writeln!(w, "atomicAdd(sf_arrived, 1ull);")
                })?;
                w.block("else", |w| {
                    writeln!(w, "const unsigned long long sf_epoch = sf_target / gridDim.x;")?;
                    writeln!(
                        w,
                        "unsigned sf_groups = (gridDim.x + (unsigned) sf_group_blocks - 1u) / (unsigned) sf_group_blocks;"
                    )?;
                    writeln!(
                        w,
                        "if (sf_groups > {BARRIER_GROUPS}u) sf_groups = {BARRIER_GROUPS}u;"
                    )?;
                    writeln!(w, "const unsigned sf_g = blockIdx.x % sf_groups;")?;
                    writeln!(
                        w,
                        "const unsigned long long sf_size = (gridDim.x - 1u - sf_g) / sf_groups + 1u;"
                    )?;
                    let group = format!("atomicAdd(sf_arrived + {line} * (2 + sf_g), 1ull) + 1ull");
                    w.block(format!("if ({group} == sf_epoch * sf_size)"), |w| {
                        writeln!(w, "__threadfence();")?;
                        let top = format!("sf_groups == 1u || atomicAdd(sf_arrived + {line}, 1ull) + 1ull == sf_epoch * sf_groups");
                        w.block(format!("if ({top})"), |w| {
                            writeln!(w, "__threadfence();")?;
                            writeln!(w, "*(volatile unsigned long long*) sf_arrived = sf_target;")
                        })
                    })
                })?;
                writeln!(w, "const long long sf_t0 = clock64();")?;
                w.block(
                    "while (*(volatile unsigned long long*) sf_arrived < sf_target)",
                    |w| {
                        w.block(format!("if (clock64() - sf_t0 > {SPIN_CYCLES}ll)"), |w| {
                            writeln!(
                                w,
                                "printf(\"spikeforge: block %u of the persistent network kernel waited at a grid barrier for more than {SPIN_CYCLES} cycles (blocks not all resident?)\\n\", blockIdx.x);"
                            )?;
                            writeln!(w, "__trap();")
                        })
                    },
                )?;
                writeln!(w, "__threadfence();")
            })?;
            writeln!(w, "__syncthreads();")
        })
    }

    /// The member's grid barrier words (`sf_barrier`) and the arrivals before this chunk's
    /// first step (`sf_target`: `sf_s0` times `per_step`, a C factor such as `2ull * ` or
    /// nothing, times the blocks).
    pub(super) fn write_barrier_start(&self, per_step: &str, w: &mut SourceWriter) -> fmt::Result {
        writeln!(
            w,
            "unsigned long long* const sf_barrier = (unsigned long long*) (sf_work + (int64_t) sf_b * {} + {});",
            self.layout.work.words, self.layout.work.barrier
        )?;
        writeln!(
            w,
            "/* Arrivals at the grid barrier before this chunk's first step. */"
        )?;
        writeln!(
            w,
            "unsigned long long sf_target = (unsigned long long) sf_s0 * {per_step}gridDim.x;"
        )
    }

    /// Element `index` of the accumulator of (group g, variable v) for the steps of parity
    /// `parity` (a C expression), if the kernel being printed accumulates it.
    fn accumulator(&self, g: usize, v: VarId, parity: &str, index: &str) -> Option<String> {
        if !self.pushing.get() {
            return None;
        }
        let k = accumulated(self.net, self.plan)
            .iter()
            .position(|x| *x == (g, v))?;
        if self.clustered() {
            return Some(self.cluster_accumulator(g, k, parity, index));
        }
        Some(format!(
            "(({}*) (sf_w + {}))[(int64_t) ({parity}) * {} + {index}]",
            self.real_t(),
            self.layout.work.accumulators[k],
            self.net.groups[g].n
        ))
    }

    /// Whether the one-barrier kernel is being printed and accumulates group g's `v`.
    pub(super) fn accumulates(&self, g: usize, v: VarId) -> bool {
        self.accumulator(g, v, "0", "0").is_some()
    }

    /// Folds the accumulated arrivals of the previous step (`parity`: its parity) into register
    /// `x{v}` of neuron `index` of group g and zeroes them (`store`: the variable's buffer too,
    /// for the fold at the end of a launch). Nothing when `v` is not accumulated.
    pub(super) fn write_fold(
        &self,
        g: usize,
        v: VarId,
        parity: &str,
        index: &str,
        store: bool,
        w: &mut SourceWriter,
    ) -> fmt::Result {
        let Some(acc) = self.accumulator(g, v, parity, index) else {
            return Ok(());
        };
        let k = v.0;
        writeln!(w, "const {} sf_a{k} = {acc};", self.real_t())?;
        w.block(format!("if (sf_a{k} != 0)"), |w| {
            writeln!(w, "x{k} = x{k} + sf_a{k};")?;
            writeln!(w, "{acc} = 0;")?;
            if store {
                writeln!(w, "{} = x{k};", self.at(&group_var_ident(g, v), index))?;
            }
            Ok(())
        })
    }

    /// A warp's compaction of its spikes into the queue (`body`). In the one-barrier kernel
    /// only in the launch's last step: its deliveries take the spikes from the warp's ballot,
    /// every queue has one slot (delay 0), which nothing reads during the launch, so only the
    /// last step's spikes (the state the launch leaves, and its count) are stored, and the
    /// other steps make no atomic on the cursor (at COBA x100, about 2000 a step on one word).
    pub(super) fn write_compaction(
        &self,
        w: &mut SourceWriter,
        body: impl FnOnce(&mut SourceWriter) -> fmt::Result,
    ) -> fmt::Result {
        if !self.pushing.get() {
            return body(w);
        }
        debug_assert!(self.plan.groups.iter().all(|g| g.depth <= 1));
        w.block("if (sf_s == sf_s1 - 1)", body)
    }

    /// The delivery of a warp's spikes of group g in this step (`sf_ballot`, `sf_i` in scope),
    /// by the warp, into the accumulators of this step's parity: for each spike, its rows of
    /// every projection leaving g, 32 synapses at a time.
    pub(super) fn write_push(&self, g: usize, w: &mut SourceWriter) -> fmt::Result {
        if !self.pushing.get() {
            return Ok(());
        }
        let head = "for (unsigned sf_left = sf_ballot; sf_left != 0u; sf_left &= sf_left - 1u)";
        w.block(head, |w| {
            writeln!(
                w,
                "const int32_t sf_pre = __shfl_sync(0xffffffffu, (int32_t) sf_i, __ffs((int) sf_left) - 1);"
            )?;
            for (p, proj) in self.net.projections.iter().enumerate() {
                if proj.source != g {
                    continue;
                }
                for k in proj.synapses.pathways_of(Pathway::Pre) {
                    w.block("do", |w| self.write_pushed_row(p, k, w))?;
                    writeln!(w, "while (0);")?;
                }
            }
            Ok(())
        })
    }

    /// Spike `sf_pre`'s row of projection p's pathway k, by the warp's lanes, added to the
    /// accumulators.
    fn write_pushed_row(&self, p: usize, pathway: usize, w: &mut SourceWriter) -> fmt::Result {
        let proj = &self.net.projections[p];
        let s = &proj.synapses;
        self.write_row_bounds(p, pathway, "0", w)?;
        let head = "for (int64_t sf_syn = sf_lo + sf_lane; sf_syn < sf_hi; sf_syn += 32)";
        let names = |v: VarId| self.synapse_name(p, v, &EVENT);
        let (arena, dtype, dialect) = (&self.arenas[p], self.real, self.dialect);
        let var_name = &names;
        let printer = Printer {
            arena,
            dtype,
            dialect,
            var_name,
        };
        w.block(head, |w| {
            self.write_target(p, w)?;
            for (k, st) in s.statements(pathway).iter().enumerate() {
                let (Effect::Add(e), Some((IndexOf::Post, v))) = (st.effect, s.neighbour(st.var))
                else {
                    unreachable!("a one-barrier network adds to the target only")
                };
                let index = format!("({} + {})", proj.target_range.start, EVENT.post);
                let acc = (self.accumulator(proj.target, v, "sf_t_step & 1", &index))
                    .expect("an accumulated variable");
                let text = printer.block(&[e], &format!("sf_q{k}_"), w)?.remove(0);
                writeln!(w, "atomicAdd(&{acc}, {text});")?;
            }
            Ok(())
        })
    }

    /// The one-barrier persistent kernel (blocks of `block` threads): the slots' state loaded
    /// into registers ([`registers`]), every step's update phase (with its deliveries) and one
    /// grid barrier, then the last step's queue counts and arrivals, and the registers stored.
    pub(super) fn write_one_barrier_kernel(
        &self,
        block: usize,
        w: &mut SourceWriter,
    ) -> fmt::Result {
        let total_blocks: usize = (0..self.net.groups.len()).map(|g| self.vblocks(g)).sum();
        let signature =
            self.cuda_signature_with(super::PERSISTENT_ENTRY, block, &super::PERSISTENT_SCALARS);
        let slots = register_slots(self.net, self.plan, block);
        writeln!(w, "#define SF_SLOTS {slots}")?;
        writeln!(w, "{signature}\n{{")?;
        w.indented(|w| {
            writeln!(w, "/* One grid barrier a step: deliveries into accumulators (codegen::network_kernel::grid). */")?;
            writeln!(w, "const int32_t sf_b = (int32_t) blockIdx.y;")?;
            self.write_barrier_start("", w)?;
            self.write_register_loads(block, slots, w)?;
            w.block("for (int32_t sf_s = sf_s0; sf_s < sf_s1; ++sf_s)", |w| {
                scope(w, |w| {
                    self.step_prologue(w)?;
                    writeln!(w, "const int32_t sf_lane = (int32_t) (threadIdx.x & 31u);")?;
                    // The count of step t - 1 (when it ran in this launch) stored, the cursor
                    // of step t + 1 (the same word: parity) zeroed.
                    w.block("if (blockIdx.x == 0 && threadIdx.x == 0)", |w| {
                        self.write_queue_counts(1, "if (sf_s > sf_s0) ", true, w)
                    })?;
                    self.write_register_update(total_blocks, block, w)
                })?;
                writeln!(w, "sf_target += gridDim.x;")?;
                writeln!(w, "sf_grid_sync(sf_barrier, sf_target, sf_group_blocks);")
            })?;
            w.block("if (sf_s1 > sf_s0)", |w| {
                writeln!(w, "const int32_t sf_s = sf_s1 - 1;")?;
                self.step_prologue(w)?;
                w.block("if (blockIdx.x == 0 && threadIdx.x == 0)", |w| {
                    self.write_queue_counts(0, "", false, w)
                })?;
                self.write_register_stores(block, w)?;
                for (g, v) in accumulated(self.net, self.plan) {
                    let n = self.net.groups[g].n;
                    let first: usize = (0..g).map(|h| self.vblocks(h)).sum();
                    let items = format!(
                        "for (int64_t sf_i = (int64_t) blockIdx.x * blockDim.x + threadIdx.x; sf_i < {n}; sf_i += (int64_t) gridDim.x * blockDim.x)"
                    );
                    w.block(items, |w| {
                        writeln!(w, "if ({}) continue;", self.in_slot(first, block))?;
                        let real = self.real_t();
                        let x = self.at(&group_var_ident(g, v), "sf_i");
                        writeln!(w, "{real} x{} = {x};", v.0)?;
                        self.write_fold(g, v, "sf_t_step & 1", "sf_i", true, w)
                    })?;
                }
                Ok(())
            })
        })?;
        w.write_str("}\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::NetworkSpec;

    /// A change to a network's spec.
    type Edit = fn(&mut serde_json::Value);

    /// `one_barrier` and `accumulated` of tests/networks/coba_one_barrier.json, edited by `edit`.
    fn choice(edit: impl FnOnce(&mut serde_json::Value)) -> (bool, Vec<(usize, VarId)>) {
        let text = include_str!("../../../tests/networks/coba_one_barrier.json");
        let mut spec: serde_json::Value = serde_json::from_str(text).unwrap();
        edit(&mut spec);
        let spec = NetworkSpec::from_json(&spec.to_string()).unwrap();
        let net = crate::frontend::network::lower(&spec).unwrap();
        let plan = crate::step::network::plan(&net);
        (one_barrier(&net, &plan), accumulated(&net, &plan))
    }

    #[test]
    fn one_barrier_takes_atomic_additions_in_the_spikes_own_step_only() {
        let (yes, acc) = choice(|_| {});
        assert!(yes);
        // ge and gi of group 0, by the projections' order
        let ir = crate::frontend::network::lower(
            &NetworkSpec::from_json(include_str!(
                "../../../tests/networks/coba_one_barrier.json"
            ))
            .unwrap(),
        )
        .unwrap();
        let group = ir.groups[0].neuron_ir().unwrap();
        let names: Vec<&str> = acc
            .iter()
            .map(|(_, v)| group.symbol(*v).name.as_str())
            .collect();
        assert_eq!(acc.iter().map(|(g, _)| *g).collect::<Vec<_>>(), [0, 0]);
        assert_eq!(names, ["ge", "gi"]);
        let refused: [(&str, Edit); 5] = [
            (
                "a spike monitor",
                |s| s["monitors"] = serde_json::json!([{"kind": "spike", "name": "sp", "source": "P", "capacity": 10}]),
            ),
            ("a delay", |s| {
                s["projections"][0]["delay"] = serde_json::json!(0.2)
            }),
            ("an assignment", |s| {
                s["projections"][0]["on_pre"] = serde_json::json!("ge = we")
            }),
            ("a read of a neuron's variable", |s| {
                s["projections"][0]["on_pre"] = serde_json::json!("ge += we * (v_pre + 60)")
            }),
            ("deterministic mode", |s| {
                s["deterministic"] = serde_json::json!(true)
            }),
        ];
        for (what, edit) in refused {
            let (yes, acc) = choice(edit);
            assert!(!yes && acc.is_empty(), "{what}");
        }
    }
}
