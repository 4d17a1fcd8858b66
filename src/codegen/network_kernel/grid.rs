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
//! barriers `t` and `t+1`; the next writes to it come after barrier `t+1`. Only the launch's
//! last step compacts its spikes into the queue (one slot: delay 0): block 0 zeroes the write
//! cursor of step `t+1` at the start of step `t`, and stores the last step's count after the
//! loop.
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

mod balanced;
mod cluster;
mod registers;
pub use balanced::{
    balanced_kernel, BALANCED_LIST_BYTES, BALANCED_MAX_SYNAPSES, BALANCED_UNROLL,
    PERSISTENT_BALANCED_ENTRY,
};
pub use cluster::{
    cluster_blocks, cluster_counts_arrivals, cluster_counts_every_arrival, cluster_mode,
    cluster_shape, ClusterShape, CLUSTER_ACC_MAX_BYTES, CLUSTER_ENTRY, CLUSTER_MAX, COUNT_ARRIVAL,
    COUNT_ARRIVAL_TRACKED, GLOBAL_TIMER, MBARRIER_ARRIVE, MBARRIER_INIT, MBARRIER_INIT_FENCE,
    MBARRIER_WAIT, TARGET_CACHE_BYTES, TRACKED_MAX_SYNAPSES,
};
pub use registers::{register_slots, REGISTER_SLOTS};

use std::fmt::{self, Write};

use super::{scope, Gen, EVENT};
use crate::codegen::network_layout::group_var_ident;
use crate::codegen::network_layout::{BARRIER_GROUPS, BARRIER_LINE_WORDS};
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

/// The register array of a step's prefetched arrivals at group g's `v` (one element a slot).
pub(super) fn prefetched(g: usize, v: VarId) -> String {
    format!("sf_pa{g}_{}", v.0)
}

/// The body of `sf_arrive_release(sf_word)`: one added to the barrier word with release
/// semantics at the GPU's scope (the release barrier's arrival). The CPU emulation of the
/// kernels (tests/network_cuda_emulation.rs) replaces this line.
pub const ARRIVE_RELEASE: &str =
    "asm volatile(\"red.release.gpu.global.add.u64 [%0], 1;\" :: \"l\"(sf_word) : \"memory\");";

/// The body of `sf_fence_acquire()`: an acquire fence at the GPU's scope (after the release
/// barrier's poll). The CPU emulation replaces this line.
pub const FENCE_ACQUIRE: &str = "asm volatile(\"fence.acq_rel.gpu;\" ::: \"memory\");";

/// The body of `sf_poll_acquire(sf_word)`: the barrier word, loaded with acquire semantics at
/// the GPU's scope (the acquire barrier's poll: no fence after it). The CPU emulation replaces
/// this line.
pub const POLL_ACQUIRE: &str = "unsigned long long sf_v; asm volatile(\"ld.acquire.gpu.global.u64 %0, [%1];\" : \"=l\"(sf_v) : \"l\"(sf_word) : \"memory\"); return sf_v;";

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
    /// The flat barrier's one counter, with a release reduction for the arrival
    /// (`red.release.gpu`) and an acquire fence after the poll (`fence.acq_rel.gpu`) instead of
    /// the sequentially consistent fences (`__threadfence`) around a plain atomic.
    Release,
    /// The release barrier's arrival, polled with acquire loads (`ld.acquire.gpu`) and no fence
    /// after the poll.
    Acquire,
    /// [`SPREAD_COUNTERS`] arrival counters (block b on counter b modulo them), which the first
    /// warp of every block polls together (acquire loads, a lane a counter) until they sum to
    /// the arrivals: no address sees more than a few dozen arrivals, and no hop is added.
    Spread,
}

/// The arrival counters of the spread barrier ([`BarrierVariant::Spread`]): a warp's lanes.
pub const SPREAD_COUNTERS: usize = 32;
// They are the grouped barrier's group counters (the work buffer's barrier words), one a lane.
const _: () = assert!(SPREAD_COUNTERS <= BARRIER_GROUPS && SPREAD_COUNTERS == 32);

/// Targets a lane loads together before their atomics in the one-barrier kernel's deliveries
/// (see [`Gen::write_push`]): rows of up to 128 synapses take one round trip.
pub const PUSH_UNROLL: usize = 4;

/// The registers a thread of the one-barrier kernel may use (its launch bounds ask for the
/// blocks a multiprocessor holds at this many): 64, 8 blocks of 128 threads on a multiprocessor
/// of 65,536 registers, without spills (tests/nvrtc_compile_check.rs).
pub const REGISTER_CAP: usize = 64;

/// Blocks per arrival group of the grouped grid barrier (at most [`BARRIER_GROUPS`] groups).
pub const BARRIER_GROUP_BLOCKS: u32 = 32;

impl BarrierVariant {
    /// The kernel's `sf_group_blocks` parameter.
    pub fn group_blocks(self) -> i32 {
        match self {
            BarrierVariant::Flat => 0,
            BarrierVariant::Release => -1,
            BarrierVariant::Acquire => -2,
            BarrierVariant::Spread => -3,
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
            BarrierVariant::Release => "release",
            BarrierVariant::Acquire => "acquire",
            BarrierVariant::Spread => "spread",
        }
    }

    /// `flat`, `release`, `acquire`, `spread`, `split` or `grouped`.
    pub fn parse(text: &str) -> Option<BarrierVariant> {
        match text.trim() {
            "flat" => Some(BarrierVariant::Flat),
            "release" => Some(BarrierVariant::Release),
            "acquire" => Some(BarrierVariant::Acquire),
            "spread" => Some(BarrierVariant::Spread),
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
    ///   release word that its last arrival stores, on separate lines;
    /// - **release** (`sf_group_blocks` -1): flat, but the arrival is a release reduction
    ///   (`red.release.gpu`, which orders the block's writes before it: `__syncthreads` made
    ///   them the arriving thread's by causality) and the waiter's fence after the poll an
    ///   acquire one (`fence.acq_rel.gpu`), instead of the sequentially consistent fences;
    /// - **acquire** (`sf_group_blocks` -2): release's arrival, and the poll an acquire load
    ///   (`ld.acquire.gpu`), which orders the waiter's later reads after it without a fence
    ///   (the rest of its block by `__syncthreads`, by causality again): one fence less on each
    ///   step's chain than release;
    /// - **spread** (`sf_group_blocks` -3): [`SPREAD_COUNTERS`] arrival counters on lines of
    ///   their own (the grouped barrier's group counters), block b arriving on counter b modulo
    ///   them with release's reduction; the first warp of each block loads them all (acquire, a
    ///   lane a counter) and sums them until the sum is `sf_target`. Flat's one counter takes
    ///   every arrival and every poll (COBA x100: 782 of each a barrier) on one address; here
    ///   each counter takes a few dozen, with no extra hop. (While a block has not arrived at
    ///   barrier n, no block has passed it, so no counter holds an arrival at barrier n + 1 and
    ///   the sum stays below the target.)
    ///
    /// Either way the release word reads `sf_target` once every block has arrived. The counters
    /// only grow (`sf_target / gridDim.x` is the barrier's number since the call began: a
    /// group's count reaches that times the group's size), so nothing is reset and no sense
    /// flips; 64 bits never wrap. Memory order (but release): each hop is `__threadfence` (fence.sc,
    /// cumulative), then the atomic or the store; a waiter that reads the release (a volatile
    /// load, not cached in L1) fences before its block goes on, so every write made before any
    /// arrival is visible after the barrier. A wait of more than `SPIN_CYCLES` cycles traps
    /// (an error, never a hang).
    pub(super) fn write_grid_sync(&self, w: &mut SourceWriter) -> fmt::Result {
        let line = BARRIER_LINE_WORDS / 2;
        w.block(
            "static __device__ __forceinline__ void sf_arrive_release(unsigned long long* sf_word)",
            |w| writeln!(w, "{ARRIVE_RELEASE}"),
        )?;
        w.block(
            "static __device__ __forceinline__ void sf_fence_acquire()",
            |w| writeln!(w, "{FENCE_ACQUIRE}"),
        )?;
        w.block(
            "static __device__ __forceinline__ unsigned long long sf_poll_acquire(unsigned long long* sf_word)",
            |w| writeln!(w, "{POLL_ACQUIRE}"),
        )?;
        let head = "static __device__ __forceinline__ void sf_grid_sync(unsigned long long* sf_arrived, const unsigned long long sf_target, const int32_t sf_group_blocks)";
        let spin = |w: &mut SourceWriter| {
            w.block(format!("if (clock64() - sf_t0 > {SPIN_CYCLES}ll)"), |w| {
                writeln!(
                    w,
                    "printf(\"spikeforge: block %u of the persistent network kernel waited at a grid barrier for more than {SPIN_CYCLES} cycles (blocks not all resident?)\\n\", blockIdx.x);"
                )?;
                writeln!(w, "__trap();")
            })
        };
        w.block(head, |w| {
            writeln!(w, "__syncthreads();")?;
            writeln!(w, "if (gridDim.x == 1u) return;")?;
            w.block("if (sf_group_blocks == -3)", |w| {
                w.block(format!("if (threadIdx.x < {SPREAD_COUNTERS})"), |w| {
                    writeln!(
                        w,
                        "if (threadIdx.x == 0) sf_arrive_release(sf_arrived + {line} * (2 + blockIdx.x % {SPREAD_COUNTERS}u));"
                    )?;
                    writeln!(w, "const long long sf_t0 = clock64();")?;
                    w.block("for (;;)", |w| {
                        writeln!(
                            w,
                            "unsigned long long sf_sum = sf_poll_acquire(sf_arrived + {line} * (2 + threadIdx.x));"
                        )?;
                        writeln!(w, "#pragma unroll")?;
                        w.block(
                            format!("for (int32_t sf_o = {}; sf_o > 0; sf_o >>= 1)", SPREAD_COUNTERS / 2),
                            |w| writeln!(w, "sf_sum += __shfl_xor_sync(0xffffffffu, sf_sum, sf_o);"),
                        )?;
                        writeln!(w, "if (sf_sum >= sf_target) break;")?;
                        spin(w)
                    })
                })?;
                writeln!(w, "__syncthreads();")?;
                writeln!(w, "return;")
            })?;
            w.block("if (threadIdx.x == 0)", |w| {
                w.block("if (sf_group_blocks < 0)", |w| {
                    writeln!(w, "sf_arrive_release(sf_arrived);")
                })?;
                w.block("else if (sf_group_blocks == 0)", |w| {
                    writeln!(w, "__threadfence();")?;
                    writeln!(w, "atomicAdd(sf_arrived, 1ull);")
                })?;
                w.block("else", |w| {
                    writeln!(w, "__threadfence();")?;
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
                w.block("if (sf_group_blocks == -2)", |w| {
                    w.block("while (sf_poll_acquire(sf_arrived) < sf_target)", spin)
                })?;
                w.block("else", |w| {
                    w.block(
                        "while (*(volatile unsigned long long*) sf_arrived < sf_target)",
                        spin,
                    )?;
                    w.block("if (sf_group_blocks < 0)", |w| {
                        writeln!(w, "sf_fence_acquire();")
                    })?;
                    w.block("else", |w| writeln!(w, "__threadfence();"))
                })
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
    pub(super) fn accumulator(
        &self,
        g: usize,
        v: VarId,
        parity: &str,
        index: &str,
    ) -> Option<String> {
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
    /// for the fold at the end of a launch). Nothing when `v` is not accumulated. In a step's
    /// update of a register slot (not `store`), the arrivals were loaded before the slots'
    /// updates ([`Gen::write_accumulator_loads`]), all at once.
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
        if self.in_registers.get() && !store {
            writeln!(
                w,
                "const {} sf_a{k} = {}[sf_slot];",
                self.real_t(),
                prefetched(g, v)
            )?;
        } else {
            let value = self.arrivals_value(g, v, &acc, false, w)?;
            writeln!(w, "const {} sf_a{k} = {value};", self.real_t())?;
        }
        w.block(format!("if (sf_a{k} != 0)"), |w| {
            writeln!(w, "x{k} = x{k} + sf_a{k};")?;
            if self.counts_only_grow(g, v) {
                writeln!(w, "if (!sf_tracked) {acc} = 0;")?;
            } else {
                writeln!(w, "{acc} = 0;")?;
            }
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

    /// The delivery of a warp's spikes of group g in this step (`sf_ballot`, `sf_fire`, `sf_i`
    /// in scope), by the warp, into the accumulators of this step's parity: for each spike, its
    /// rows of every projection leaving g.
    ///
    /// The latency chain of a warp's deliveries is kept short: every firing lane loads its own
    /// rows' bounds first (one round trip for all the warp's spikes, instead of one a spike),
    /// which the spikes' loop then takes from the lane (`__shfl_sync`); a register slot's lanes
    /// read them from the row tables in shared memory instead ([`Gen::row_tables`]). The loop
    /// takes two spikes at a time and loads [`PUSH_UNROLL`] targets a lane of each row before
    /// their atomics: one round trip for two spikes' rows of up to 32 · [`PUSH_UNROLL`]
    /// synapses, where a loop over 32 synapses at a time, a spike at a time, made one per 32
    /// synapses of each spike.
    pub(super) fn write_push(&self, g: usize, w: &mut SourceWriter) -> fmt::Result {
        if !self.pushing.get() {
            return Ok(());
        }
        if self.clustered() {
            // the block's warps deliver its spikes together, after a block barrier, unless the
            // launch asks for the deliveries by the warp (`grid::cluster`)
            w.block("if ((sf_mode & 1) == 0)", |w| {
                self.write_cluster_listing(g, w)
            })?;
            return w.block("else", |w| self.write_warp_push(g, w));
        }
        self.write_warp_push(g, w)
    }

    /// [`Gen::write_push`]'s deliveries by the warp.
    fn write_warp_push(&self, g: usize, w: &mut SourceWriter) -> fmt::Result {
        let leaving: Vec<usize> = (self.net.projections.iter().enumerate())
            .filter(|(_, proj)| proj.source == g)
            .map(|(p, _)| p)
            .collect();
        writeln!(
            w,
            "/* The firing lanes' rows, loaded at once (codegen::network_kernel::grid). */"
        )?;
        // A register slot's lanes read their rows' bounds from the row tables.
        let (tables, block) = match self.printing.get() {
            super::Printing::Persistent { block, .. } if self.in_registers.get() => {
                (self.row_tables(block), block)
            }
            _ => (Vec::new(), 0),
        };
        for &p in &leaving {
            let proj = &self.net.projections[p];
            let (a, b) = (proj.source_range.start, proj.source_range.end);
            if self.clustered() {
                // the cluster kernel's slots keep their rows in registers, and where each
                // starts in the target cache (`grid::cluster`)
                writeln!(
                    w,
                    "const int64_t sf_rlo{p}_ = sf_rlo{p}[sf_slot], sf_rhi{p} = sf_rlo{p}_ + sf_rlen{p}[sf_slot];"
                )?;
                writeln!(w, "const int32_t sf_rsh{p}_ = sf_rsh{p}[sf_slot];")?;
                continue;
            }
            let (lo, hi) = self.row_bounds(p, block, &tables);
            writeln!(w, "int64_t sf_rlo{p} = 0, sf_rhi{p} = 0;")?;
            w.block(format!("if (sf_fire && sf_i >= {a} && sf_i < {b})"), |w| {
                writeln!(w, "sf_rlo{p} = {lo};")?;
                writeln!(w, "sf_rhi{p} = {hi};")
            })?;
        }
        // Two spikes at a time (lanes `sf_src` and `sf_src2`; `sf_two`: there is a second).
        w.block("for (unsigned sf_left = sf_ballot; sf_left != 0u;)", |w| {
            writeln!(w, "const int32_t sf_src = __ffs((int) sf_left) - 1;")?;
            writeln!(w, "sf_left &= sf_left - 1u;")?;
            writeln!(w, "const bool sf_two = sf_left != 0u;")?;
            writeln!(
                w,
                "const int32_t sf_src2 = sf_two ? __ffs((int) sf_left) - 1 : sf_src;"
            )?;
            writeln!(w, "sf_left &= sf_left - 1u;")?;
            for (name, src) in [("sf_pre", "sf_src"), ("sf_pre2", "sf_src2")] {
                writeln!(
                    w,
                    "const int32_t {name} = __shfl_sync(0xffffffffu, (int32_t) sf_i, {src});"
                )?;
            }
            for &p in &leaving {
                for k in self.net.projections[p].synapses.pathways_of(Pathway::Pre) {
                    w.block("do", |w| self.write_pushed_rows(p, k, w))?;
                    writeln!(w, "while (0);")?;
                }
            }
            Ok(())
        })
    }

    /// The bounds of neuron `sf_i`'s row of projection p (in its source range), as C
    /// expressions: from the row tables of a register slot (`sf_slot` in scope, blocks of
    /// `block` threads) where `tables` ([`Gen::row_tables`]) has p's, else from the row offsets.
    pub(super) fn row_bounds(
        &self,
        p: usize,
        block: usize,
        tables: &[(usize, &'static str)],
    ) -> (String, String) {
        let a = self.net.projections[p].source_range.start;
        if tables.iter().any(|(q, _)| *q == p) {
            let at = format!("sf_rows{p}[sf_slot * {} + threadIdx.x", block + 1);
            (format!("{at}]"), format!("{at} + 1]"))
        } else {
            let rows = self.row_offsets(p);
            (
                format!("{rows}[sf_i - {a}]"),
                format!("{rows}[sf_i - {a} + 1]"),
            )
        }
    }

    /// The rows of projection p's pathway k of spikes `sf_pre` and (when `sf_two`) `sf_pre2`
    /// (their bounds in lanes `sf_src`, `sf_src2`'s `sf_rlo{p}`, `sf_rhi{p}`), by the warp's
    /// lanes, added to the accumulators: each lane loads its [`PUSH_UNROLL`] targets of both
    /// rows, then makes their atomics (one round trip for two spikes' rows of up to 128).
    fn write_pushed_rows(&self, p: usize, pathway: usize, w: &mut SourceWriter) -> fmt::Result {
        let proj = &self.net.projections[p];
        let (a, b) = (proj.source_range.start, proj.source_range.end);
        writeln!(w, "const bool sf_in = sf_pre >= {a} && sf_pre < {b};")?;
        writeln!(
            w,
            "const bool sf_in2 = sf_two && sf_pre2 >= {a} && sf_pre2 < {b};"
        )?;
        writeln!(w, "if (!sf_in && !sf_in2) continue;")?;
        // the cluster kernel's rows: in registers (`sf_rlo{p}_`), their targets in the target
        // cache where `sf_sh` is not -1
        let (lo_reg, cached) = if self.clustered() {
            (format!("sf_rlo{p}_"), true)
        } else {
            (format!("sf_rlo{p}"), false)
        };
        for (x, src, inside) in [("", "sf_src", "sf_in"), ("2", "sf_src2", "sf_in2")] {
            writeln!(
                w,
                "int64_t sf_lo{x} = __shfl_sync(0xffffffffu, {lo_reg}, {src}), sf_hi{x} = __shfl_sync(0xffffffffu, sf_rhi{p}, {src});"
            )?;
            if cached {
                writeln!(
                    w,
                    "const int32_t sf_sh{x} = __shfl_sync(0xffffffffu, sf_rsh{p}_, {src});"
                )?;
            }
            writeln!(w, "if (sf_lo{x} < 0) sf_lo{x} = 0;")?;
            writeln!(w, "if (sf_hi{x} > sf_nsyn{p}) sf_hi{x} = sf_nsyn{p};")?;
            writeln!(
                w,
                "const int64_t sf_len{x} = {inside} && sf_hi{x} > sf_lo{x} ? sf_hi{x} - sf_lo{x} : 0;"
            )?;
        }
        let n_post = proj.n_post();
        let head = format!(
            "for (int64_t sf_c = 0; sf_c < sf_len || sf_c < sf_len2; sf_c += {})",
            32 * PUSH_UNROLL
        );
        let each = format!("for (int32_t sf_u = 0; sf_u < {PUSH_UNROLL}; ++sf_u)");
        w.block(head, |w| {
            writeln!(w, "int32_t sf_js[{PUSH_UNROLL}], sf_js2[{PUSH_UNROLL}];")?;
            writeln!(w, "#pragma unroll")?;
            w.block(&each, |w| {
                writeln!(w, "const int64_t sf_at = sf_c + sf_lane + 32 * sf_u;")?;
                for x in ["", "2"] {
                    let target = if cached {
                        format!("(sf_sh{x} >= 0 ? sf_tgt[sf_sh{x} + sf_at] : in_p{p}_targets[sf_lo{x} + sf_at])")
                    } else {
                        format!("in_p{p}_targets[sf_lo{x} + sf_at]")
                    };
                    writeln!(w, "sf_js{x}[sf_u] = sf_at < sf_len{x} ? {target} : -1;")?;
                }
                Ok(())
            })?;
            for x in ["", "2"] {
                // Spike x's atomics, its names (`sf_pre`, `sf_r`) in a scope of their own.
                scope(w, |w| {
                    if !x.is_empty() {
                        writeln!(w, "const int32_t sf_pre = sf_pre{x};")?;
                    }
                    writeln!(w, "const int32_t sf_r = sf_pre - {a};")?;
                    writeln!(w, "#pragma unroll")?;
                    w.block(&each, |w| {
                        writeln!(
                            w,
                            "const int64_t sf_syn = sf_lo{x} + sf_c + sf_lane + 32 * sf_u;"
                        )?;
                        writeln!(w, "const int32_t sf_j = sf_js{x}[sf_u];")?;
                        writeln!(w, "if (sf_j < 0 || sf_j >= {n_post}) continue;")?;
                        self.write_accumulations(p, pathway, w)
                    })
                })?;
            }
            Ok(())
        })
    }

    /// The additions of one synapse of projection p's pathway to the accumulators of this
    /// step's parity (`sf_j`, `sf_syn`, `sf_pre`, `sf_r` in scope): one atomic a statement.
    pub(super) fn write_accumulations(
        &self,
        p: usize,
        pathway: usize,
        w: &mut SourceWriter,
    ) -> fmt::Result {
        let proj = &self.net.projections[p];
        let s = &proj.synapses;
        let names = |v: VarId| self.synapse_name(p, v, &EVENT);
        let printer = self.synapse_printer(p, &names);
        for (k, st) in s.statements(pathway).iter().enumerate() {
            let (Effect::Add(e), Some((IndexOf::Post, v))) = (st.effect, s.neighbour(st.var))
            else {
                unreachable!("a one-barrier network adds to the target only")
            };
            let index = format!("({} + {})", proj.target_range.start, EVENT.post);
            let acc = (self.accumulator(proj.target, v, "sf_t_step & 1", &index))
                .expect("an accumulated variable");
            let text = printer.block(&[e], &format!("sf_q{k}_"), w)?.remove(0);
            if self.counted_arrival(proj.target, v).is_some() {
                writeln!(
                    w,
                    "if (sf_counting) sf_count_arrival(&{acc}, sf_tracked, &sf_mbars[sf_ln & 1], sf_sent + (sf_ln & 1) * {CLUSTER_MAX}); else atomicAdd(&{acc}, {text});"
                )?;
            } else {
                writeln!(w, "atomicAdd(&{acc}, {text});")?;
            }
        }
        Ok(())
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
        // At most REGISTER_CAP registers a thread (ptxas otherwise takes ~95 for the values in
        // flight, which leaves 5 blocks of 128 a multiprocessor instead of 8: fewer blocks,
        // so fewer neurons in register slots at COBA x100).
        let min_blocks = (65536 / (REGISTER_CAP * block)).max(1);
        let entry = if self.balancing() {
            PERSISTENT_BALANCED_ENTRY
        } else {
            super::PERSISTENT_ENTRY
        };
        let signature = (self.cuda_signature_with(entry, block, &super::PERSISTENT_SCALARS))
            .replacen(
                &format!("__launch_bounds__({block})"),
                &format!("__launch_bounds__({block}, {min_blocks})"),
                1,
            );
        let slots = register_slots(self.net, self.plan, block);
        if !self.balancing() {
            writeln!(w, "#define SF_SLOTS {slots}")?;
        }
        writeln!(w, "{signature}\n{{")?;
        w.indented(|w| {
            writeln!(w, "/* One grid barrier a step: deliveries into accumulators (codegen::network_kernel::grid). */")?;
            writeln!(w, "const int32_t sf_b = (int32_t) blockIdx.y;")?;
            self.write_barrier_start("", w)?;
            self.write_register_loads(block, slots, w)?;
            if self.balancing() {
                self.write_row_lists(block, w)?;
            }
            w.block("for (int32_t sf_s = sf_s0; sf_s < sf_s1; ++sf_s)", |w| {
                scope(w, |w| {
                    self.step_prologue(w)?;
                    writeln!(w, "const int32_t sf_lane = (int32_t) (threadIdx.x & 31u);")?;
                    if self.balancing() {
                        self.write_row_lists_reset(block, w)?;
                    }
                    // The write cursor of step t + 1 zeroed (a store: nothing waits for it).
                    // Only the last step compacts its spikes (see `write_compaction`) and
                    // every queue has one slot, so no count but the last step's is stored.
                    w.block("if (blockIdx.x == 0 && threadIdx.x == 0)", |w| {
                        for (g, gp) in self.plan.groups.iter().enumerate() {
                            if gp.depth > 0 {
                                writeln!(w, "{} = 0;", self.cursor(g, 1))?;
                            }
                        }
                        Ok(())
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
    fn barrier_variants_parse_their_names_and_pick_the_kernels_branch() {
        for name in ["flat", "release", "acquire", "spread", "split", "grouped"] {
            assert_eq!(BarrierVariant::parse(name).unwrap().name(), name);
        }
        assert_eq!(BarrierVariant::parse("fast"), None);
        // sf_grid_sync: -3 spread, -2 acquire, -1 release, 0 flat, > 0 grouped (split: one
        // group).
        assert_eq!(BarrierVariant::Release.group_blocks(), -1);
        assert_eq!(BarrierVariant::Acquire.group_blocks(), -2);
        assert_eq!(BarrierVariant::Spread.group_blocks(), -3);
        assert_eq!(BarrierVariant::Flat.group_blocks(), 0);
        assert!(BarrierVariant::parse("grouped").unwrap().group_blocks() > 0);
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
