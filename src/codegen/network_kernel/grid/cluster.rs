//! The one-barrier kernel as **one thread-block cluster** per batch member (Hopper and newer:
//! compute capability 9.0): [`CLUSTER_ENTRY`]. It is the register grid's kernel (the parent
//! module and [`super::registers`]: every virtual block's state in a block's register slots for
//! the whole launch) with three changes:
//!
//! - the **accumulators** of a step's arrivals are in the shared memory of the block that holds
//!   the target neuron's registers (virtual block `vb` is slot `vb >> log2(gridDim.x)` of block
//!   `vb & (gridDim.x - 1)`), two by step parity as in the grid kernel, in a static `__shared__`
//!   array (`sf_acc`: parity, accumulated variable, slot, thread). A delivery's addition is an
//!   atomic on the target block's shared memory through distributed shared memory (`mapa`); a
//!   neuron's fold reads and zeroes its own block's;
//! - the step's barrier is the cluster's hardware barrier (`barrier.cluster.arrive.release`,
//!   `barrier.cluster.wait.acquire`: about 0.2 µs for 8 blocks on an H200, against 1.0-1.2 µs
//!   for a grid barrier through global memory). Release and acquire at cluster scope order every
//!   write before it (shared::cluster and global: the queue counts, the last step's compaction)
//!   before every read after it, which is all that the grid barrier's fences give the grid
//!   kernel, so the step's update is the grid kernel's, printed by the same code;
//! - a step's deliveries are the **block's**, not each warp's (below).
//!
//! The deliveries: a warp that finds spikes lists their
//! rows (offset, length, row and projection, and the row's first chunk of 32 synapses) in the
//! block's shared memory (one 64-bit shared atomic a spike hands out its entries and chunks), and
//! after a block barrier every warp of the block takes a share of the listed chunks (chunk k by
//! warp k mod the warps, [`CLUSTER_UNROLL`] chunks a warp at a time: their targets loaded before
//! any of their additions). The rows' bounds of the slots' neurons are in registers for the
//! launch, so nothing on a step's chain waits for global memory but the targets. In the register
//! grid the warp that finds a spike delivers its row, spike after spike, after loading the row's
//! bounds: at COBA x1 (about 20 spikes a step in 16 blocks) a few warps of a few blocks carry the
//! step's chain.
//!
//! The kernel's **mode** ([`cluster_mode`]: which deliveries, counted or added arrivals, the
//! profile, barrier or mbarriers) is a constant of its compilation, not a parameter: the source
//! holds the kernel only inside `#ifdef SF_CLUSTER_MODE`, and the handler compiles it apart from
//! the network's other kernels with `-DSF_CLUSTER_MODE=<mode>`, so that the other modes'
//! branches fold away (H200, COBA x1 10 s, session 10: 0.129 s compiled for its mode against
//! 0.157 s with every mode's branches and the mode a parameter).
//!
//! The mode may ask for the register grid's deliveries by the warp that finds the spikes
//! instead (bit 0, `SPIKEFORGE_CLUSTER_DELIVERY=warp`): two spikes at a time over the warp's
//! lanes, their bounds from the slots' registers and their targets from the target cache (the
//! cluster kernel of session 6 read both from global memory), with no block barrier a step.
//!
//! The targets themselves are read from the block's **target cache** where they fit: at the
//! launch's start each block copies the targets of its slots' neurons' rows (a run of the
//! connectivity a slot and projection) into its dynamic shared memory, as much as the handler
//! gives (`SPIKEFORGE_CLUSTER_TARGETS`: what the device allows a block, or nothing); a row whose
//! run did not fit reads global memory.
//!
//! Where a target variable's only presynaptic statement adds one value the same for every
//! synapse and step (a constant or shared parameter: COBA's and CUBA's weights), its arrivals
//! are **counted** ([`cluster_counts`]): a delivery adds one to a 32-bit count in the target
//! block's shared memory, an integer reduction the device makes in one instruction that nothing
//! waits for until the cluster barrier, and the fold adds `count * value`. A float addition on
//! distributed shared memory has no such instruction: the compiler makes it a load and a
//! compare-and-swap loop on the other multiprocessor (two round trips, more on a conflict),
//! which each delivering lane waits for, chunk after chunk (the SASS of session 7's kernel).
//! `SPIKEFORGE_CLUSTER_ARRIVALS=add` keeps the float additions ([`cluster_mode`]'s bit 1), and
//! `SPIKEFORGE_CLUSTER_PROFILE=on` measures the step's phases with the multiprocessor's clock
//! and prints them at the end of the launch (bit 2). `SPIKEFORGE_CLUSTER_SYNC=mbarrier` (bit 3,
//! where every arrival is counted) replaces the step's cluster barrier by mbarriers that count
//! the step's arrivals (each an asynchronous reduction tracked by the target block's mbarrier):
//! 0.61 µs a step against 0.72-0.81 for barrier and reductions in isolation, but 0.139 s against
//! the barrier's 0.129 s in the whole COBA x1 run (H200, session 10), hence not the default.
//!
//! Its spike queue is written in the launch's last step only, as the grid kernel's (every queue
//! one slot, nothing reading it during the launch), but its write cursors are zeroed once at the
//! launch's start instead of a step ahead in every step, and the last step's count stored after
//! the loop: the state a launch leaves is the grid kernel's.
//!
//! The kernel needs every virtual block in a register slot (`gridDim.x * SF_SLOTS` at least
//! the virtual blocks) and a power-of-two cluster (the block of a virtual block is then a mask,
//! its slot a shift); it checks both and traps otherwise. It starts with its accumulators
//! zeroed and a cluster barrier (every block of the cluster running before any block's shared
//! memory is written by another); after its last step's barrier no block touches another's
//! shared memory, so blocks exit without a further barrier.
//!
//! On devices below compute capability 9.0 the kernel's body is compiled out (`__trap`): the
//! handler never launches it there, and the source stays one source for every device.

use std::fmt::{self, Write};

use super::super::{scope, Gen, Printing, EVENT, PERSISTENT_SCALARS};
use super::accumulated;
use crate::codegen::writer::SourceWriter;
use crate::ir::network::{NetGroupKind, NetworkIr};
use crate::ir::synapses::{Effect, Pathway};
use crate::ir::{IndexOf, SymbolKind, VarId};
use crate::step::network::NetworkPlan;

/// The cluster kernel's entry point (parameters: the persistent kernel's).
pub const CLUSTER_ENTRY: &str = "sf_network_cluster";

/// The most blocks of a cluster: 16 where the device allows non-portable cluster sizes (H100,
/// H200), else the portable 8 (the handler asks the device which).
pub const CLUSTER_MAX: u32 = 16;

/// The most bytes of the accumulators (`sf_acc`, static shared memory, 48 KiB at most in all):
/// 2 parities x accumulated variables x slots x threads x the real's size. COBA x1 (2 variables,
/// 2 slots of 256 threads, float): 8 KiB.
pub const CLUSTER_ACC_MAX_BYTES: usize = 32 * 1024;

/// The portable cluster size: the slots are enough for a cluster of this many blocks.
const CLUSTER_PORTABLE: usize = 8;

/// The most static shared memory of the cluster kernel's accumulators and row list together
/// (48 KiB is the static limit; the update's own few words fit in the rest).
pub const CLUSTER_SHARED_MAX_BYTES: usize = 44 * 1024;

/// Bytes of a listed row in shared memory, at most: offset (8), length, first chunk, row and
/// projection, offset in the target cache (4 each).
const LISTED_ROW_BYTES: usize = 24;

/// The most row registers a thread holds (projections x slots: an offset, a length and an
/// offset in the target cache each).
const CLUSTER_ROW_REGISTERS: usize = 32;

/// The line of the cluster kernel that reads its dynamic shared memory's size (the target
/// cache's bytes: `Gen::write_rows_and_targets`). The CPU emulation replaces it.
pub const TARGET_CACHE_BYTES: &str =
    "asm(\"mov.u32 %0, %%dynamic_smem_size;\" : \"=r\"(sf_tgt_bytes));";

/// Chunks (32 synapses of a listed row) a warp takes at a time: their targets loaded together,
/// then their additions.
pub const CLUSTER_UNROLL: usize = 4;

/// The body of `sf_count_arrival(sf_a)`: one added to the 32-bit count at a distributed shared
/// memory address, an integer reduction that the device makes in one instruction (a float
/// addition there is a load and compare-and-swap loop: two round trips to the other
/// multiprocessor, more on a conflict). The CPU emulation replaces this line.
pub const COUNT_ARRIVAL: &str =
    "asm volatile(\"red.add.u32 [%0], 1;\" :: \"l\"(sf_a.sf_p) : \"memory\");";

/// The body of `sf_count_arrival` where the step's arrivals are **tracked** ([`cluster_mode`]'s
/// bit 3): the same one added to the count, as an asynchronous reduction whose completion the
/// target block's mbarrier of the step counts (4 bytes of its transactions), so that no release
/// fence waits for it. The CPU emulation replaces this line.
pub const COUNT_ARRIVAL_TRACKED: &str = "asm volatile(\"{\\n\\t.reg .b32 sf_d, sf_m;\\n\\t.reg .b64 sf_g;\\n\\tcvta.to.shared::cluster.u64 sf_g, %0;\\n\\tcvt.u32.u64 sf_d, sf_g;\\n\\tmapa.shared::cluster.u32 sf_m, %1, %2;\\n\\tred.async.relaxed.cluster.shared::cluster.mbarrier::complete_tx::bytes.add.u32 [sf_d], 1, [sf_m];\\n\\t}\" :: \"l\"(sf_a.sf_p), \"r\"((uint32_t) __cvta_generic_to_shared(sf_bar)), \"r\"(sf_a.sf_r) : \"memory\");";

/// The line that initialises an mbarrier of the cluster kernel (`sf_bar`, for `sf_count`
/// arrivals a phase). The CPU emulation replaces this line.
pub const MBARRIER_INIT: &str = "asm volatile(\"mbarrier.init.shared::cta.b64 [%0], %1;\" :: \"r\"((uint32_t) __cvta_generic_to_shared(sf_bar)), \"r\"(sf_count) : \"memory\");";

/// The fence that makes the mbarriers' initialisation visible to the cluster. The CPU
/// emulation removes this line (its cluster barrier orders it).
pub const MBARRIER_INIT_FENCE: &str =
    "asm volatile(\"fence.mbarrier_init.release.cluster;\" ::: \"memory\");";

/// The wait of a block's threads for the phase of parity `sf_parity` of its own mbarrier
/// `sf_bar` to complete (acquire at cluster scope: every tracked arrival and every arrival of
/// the phase seen after it). The CPU emulation replaces this line.
pub const MBARRIER_WAIT: &str = "asm volatile(\"{\\n\\t.reg .pred sf_done;\\n\\tSF_WAIT_%=:\\n\\tmbarrier.try_wait.parity.acquire.cluster.shared::cta.b64 sf_done, [%0], %1;\\n\\t@!sf_done bra SF_WAIT_%=;\\n\\t}\" :: \"r\"((uint32_t) __cvta_generic_to_shared(sf_bar)), \"r\"(sf_parity) : \"memory\");";

/// A block's arrival on the mbarrier of block `sf_rank` at the same place as its own `sf_bar`,
/// with the bytes of the tracked arrivals it sent there in the step (`sf_bytes`). Relaxed: what
/// it orders is counted by the mbarrier's transactions (PTX ISA 8.6, CUDA 12.8; older compilers
/// get the release form). The CPU emulation replaces this line.
pub const MBARRIER_ARRIVE: &str = "asm volatile(\"{\\n\\t.reg .b32 sf_m;\\n\\tmapa.shared::cluster.u32 sf_m, %0, %1;\\n\\tmbarrier.arrive.expect_tx.\" SF_ARRIVE_SEM \".cluster.shared::cluster.b64 _, [sf_m], %2;\\n\\t}\" :: \"r\"((uint32_t) __cvta_generic_to_shared(sf_bar)), \"r\"(sf_rank), \"r\"(sf_bytes) : \"memory\");";

/// The most synapses from one block into one block that tracked arrivals allow: a phase's
/// transactions are counted in bytes within 2^20 - 1, and the cluster's at most
/// [`CLUSTER_MAX`] blocks each send 4 bytes an arrival (a synapse arrives at most once a step).
pub const TRACKED_MAX_SYNAPSES: usize = ((1 << 20) - 1) / 4 / CLUSTER_MAX as usize;

/// The line of the cluster kernel's profile that reads the device's nanosecond timer into
/// `sf_ns`. The CPU emulation replaces this line.
pub const GLOBAL_TIMER: &str = "asm volatile(\"mov.u64 %0, %%globaltimer;\" : \"=l\"(sf_ns));";

/// The phases of a step that the cluster kernel's profile measures ([`cluster_mode`]).
const PROFILE_PHASES: [&str; 5] = [
    "fold+update",
    "listing",
    "block barrier",
    "deliveries",
    "cluster barrier",
];

/// The cluster kernel's mode, `SF_CLUSTER_MODE` of its compilation (the handler's
/// `-DSF_CLUSTER_MODE=<mode>`; the launch passes it as `sf_group_blocks` too, a parameter the
/// cluster has no grid barrier to use for): bit 0 its deliveries by the warp that finds the spikes (else by the block's warps),
/// bit 1 its arrivals added as floats where they could be counted
/// ([`cluster_counts_arrivals`]), bit 2 its step's phases measured and printed at the end of
/// the launch (one line a block: the clock cycles of each phase, the mean of the warps and the
/// slowest warp's, and the nanoseconds a step), bit 3 its counted arrivals **tracked** by
/// mbarriers instead of a cluster barrier a step (where every arrival is counted: see
/// [`Gen::write_cluster_kernel`]).
pub fn cluster_mode(by_warp: bool, added: bool, profile: bool, tracked: bool) -> i32 {
    i32::from(by_warp) | i32::from(added) << 1 | i32::from(profile) << 2 | i32::from(tracked) << 3
}

/// For each accumulated variable of the cluster kernel ([`accumulated`]), the statement
/// (projection, pathway, statement) whose arrivals it **counts**: the variable's only
/// presynaptic statement, adding a value the same for every synapse and every step (shared
/// parameters and constants: no synapse's, neuron's or time's value). Its deliveries then add
/// one to a 32-bit count on the target block's shared memory (an integer reduction), and the
/// target neuron's fold adds `count * value` (one rounding where the additions made one a
/// synapse; the order of the arrivals no longer matters). `None` where not.
pub fn cluster_counts(net: &NetworkIr, plan: &NetworkPlan) -> Vec<Option<(usize, usize, usize)>> {
    let statements = |g: usize, v: VarId| {
        let mut found = Vec::new();
        for (p, proj) in net.projections.iter().enumerate() {
            let s = &proj.synapses;
            for pathway in s.pathways_of(Pathway::Pre) {
                for (k, st) in s.statements(pathway).iter().enumerate() {
                    if proj.target == g && s.neighbour(st.var) == Some((IndexOf::Post, v)) {
                        found.push((p, pathway, k, st.effect));
                    }
                }
            }
        }
        found
    };
    (accumulated(net, plan).into_iter())
        .map(|(g, v)| match statements(g, v)[..] {
            [(p, pathway, k, Effect::Add(e))] => {
                let s = &net.projections[p].synapses;
                let fixed = s.group.arena.vars_of(e).into_iter().all(|x| {
                    let sym = s.group.symbol(x);
                    sym.kind == SymbolKind::Param && sym.shared
                });
                fixed.then_some((p, pathway, k))
            }
            _ => None,
        })
        .collect()
}

/// The registers of a tracked launch's last read counts of group g's `v` (`..a`, `..b`: one a
/// step parity, [`Gen::arrivals_value`]).
fn seen_counts(g: usize, v: VarId) -> String {
    format!("sf_seen{g}_{}", v.0)
}

/// The profile's `sf_ns`: the device's nanosecond timer (0 in the CPU emulation).
fn write_timer(w: &mut SourceWriter) -> fmt::Result {
    writeln!(w, "long long sf_ns = 0;")?;
    writeln!(w, "#if defined(__CUDA_ARCH__)")?;
    writeln!(w, "{GLOBAL_TIMER}")?;
    writeln!(w, "#endif")
}

/// Whether the cluster kernel of `net` (where it has one) counts the arrivals of some variable
/// ([`cluster_counts`]).
pub fn cluster_counts_arrivals(net: &NetworkIr, plan: &NetworkPlan) -> bool {
    cluster_shape(net, plan).is_some() && cluster_counts(net, plan).iter().any(Option::is_some)
}

/// Whether the cluster kernel of `net` (where it has one) counts the arrivals of every
/// variable: no delivery of it adds a float on distributed shared memory (what `auto` asks of a
/// network before it takes the cluster: `handlers::network_path`).
pub fn cluster_counts_every_arrival(net: &NetworkIr, plan: &NetworkPlan) -> bool {
    cluster_shape(net, plan).is_some() && cluster_counts(net, plan).iter().all(Option::is_some)
}

/// How the cluster kernel runs a network: blocks of `block` threads (one neuron a thread, the
/// neurons of a virtual block), `slots` register slots a block (`SF_SLOTS`), `vblocks` virtual
/// blocks in all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClusterShape {
    pub block: usize,
    pub slots: usize,
    pub vblocks: usize,
    /// The most rows a block lists in a step (its slots' neurons all firing, in every
    /// projection that leaves each of them).
    pub rows: usize,
}

/// The cluster kernel's shape for `net`, or `None` when it has none (not a one-barrier network,
/// or accumulators beyond [`CLUSTER_ACC_MAX_BYTES`], accumulators and row list beyond
/// `CLUSTER_SHARED_MAX_BYTES`, row registers beyond `CLUSTER_ROW_REGISTERS`). One neuron a
/// thread: blocks of the largest group's neurons over [`CLUSTER_MAX`], in whole warps of 4 (128
/// threads), at most 1024, so that a cluster of 16 blocks updates it in one pass (H200, session
/// 6: 4 slots of 128 threads a block ran COBA x1 at 7.9 µs a step in 8 blocks, 6.2 in 16); slots
/// enough for the portable 8 blocks, at most
/// [`REGISTER_SLOTS`](super::REGISTER_SLOTS).
pub fn cluster_shape(net: &NetworkIr, plan: &NetworkPlan) -> Option<ClusterShape> {
    if !super::one_barrier(net, plan) {
        return None;
    }
    let largest = (net.groups.iter())
        .filter(|g| !matches!(g.kind, NetGroupKind::SpikeGenerator { .. }))
        .map(|g| g.n)
        .max()
        .unwrap_or(0);
    let block = (largest.div_ceil(CLUSTER_MAX as usize).div_ceil(128) * 128).clamp(128, 1024);
    let vblocks: usize = (net.groups.iter())
        .map(|g| super::super::virtual_blocks(g, block))
        .sum();
    let slots = vblocks
        .div_ceil(CLUSTER_PORTABLE)
        .clamp(1, super::REGISTER_SLOTS);
    let vars = accumulated(net, plan).len();
    let bytes = 2 * vars * slots * block * net.dtype.size();
    let rows = listed_rows(net, slots * block);
    let fits = bytes <= CLUSTER_ACC_MAX_BYTES
        && bytes + rows * LISTED_ROW_BYTES <= CLUSTER_SHARED_MAX_BYTES
        && net.projections.len() * slots <= CLUSTER_ROW_REGISTERS;
    fits.then_some(ClusterShape {
        block,
        slots,
        vblocks,
        rows,
    })
}

/// The most rows a block of `neurons` neurons (its slots') lists in a step: each neuron in as
/// many rows as there are projections whose sources hold it (at most the most that overlap at
/// one neuron of a group), and no projection more than its sources' rows.
fn listed_rows(net: &NetworkIr, neurons: usize) -> usize {
    let leaving = |g: usize| net.projections.iter().filter(move |p| p.source == g);
    let overlap = (0..net.groups.len())
        .flat_map(|g| {
            leaving(g).map(move |p| {
                let at = p.source_range.start;
                leaving(g).filter(|q| q.source_range.contains(&at)).count()
            })
        })
        .max()
        .unwrap_or(0);
    let by_projection: usize = (net.projections.iter())
        .map(|p| p.source_range.len().min(neurons))
        .sum();
    (neurons * overlap).min(by_projection)
}

/// Blocks of a cluster for a network of `vblocks` virtual blocks in `slots` register slots a
/// block, where the device runs clusters of at most `widest` blocks (a power of two): `prefer`
/// (rounded up to a power of two; default the fewest) within `widest`, at least the fewest that
/// hold every virtual block (a power of two), or `None` when `widest` does not.
pub fn cluster_blocks(vblocks: u32, slots: u32, widest: u32, prefer: Option<u32>) -> Option<u32> {
    if slots == 0 || widest == 0 {
        return None;
    }
    let need = vblocks.div_ceil(slots).max(1).next_power_of_two();
    let want = prefer.map_or(need, |p| p.max(1).next_power_of_two().max(need));
    (need <= widest).then_some(want.min(widest))
}

impl Gen<'_> {
    /// Whether the cluster kernel is being printed.
    pub(in crate::codegen::network_kernel) fn clustered(&self) -> bool {
        self.cluster.get()
    }

    /// The statement whose arrivals the cluster kernel being printed counts at group g's `v`
    /// ([`cluster_counts`]), if it counts them.
    pub(super) fn counted_arrival(&self, g: usize, v: VarId) -> Option<(usize, usize, usize)> {
        if !self.clustered() {
            return None;
        }
        let k = (accumulated(self.net, self.plan).iter()).position(|x| *x == (g, v))?;
        cluster_counts(self.net, self.plan)[k]
    }

    /// The arrivals at accumulator element `acc` (of group g's `v`) for a fold: where the
    /// cluster kernel counts them, `count * value` while the launch counts (`sf_counting`),
    /// else the element itself. What the value needs is printed first.
    ///
    /// Where the launch tracks its arrivals (`sf_tracked`, [`cluster_mode`]'s bit 3) the counts
    /// are never zeroed (a fold writing them could race with the next deliveries into the same
    /// parity, which no release orders): a count only grows, and the arrivals are its growth
    /// since this neuron last read it (`sf_seen{g}_{v}a[sf_slot]`, modulo 2^32). `rotate`: a
    /// step's fold, after which the seen count of the other parity is the next to subtract
    /// (`..b`, where this one goes); at the launch's end the last step's fold subtracts only.
    pub(super) fn arrivals_value(
        &self,
        g: usize,
        v: VarId,
        acc: &str,
        rotate: bool,
        w: &mut SourceWriter,
    ) -> Result<String, fmt::Error> {
        let Some((p, pathway, k)) = self.counted_arrival(g, v) else {
            return Ok(acc.to_owned());
        };
        let Effect::Add(value) = self.net.projections[p].synapses.statements(pathway)[k].effect
        else {
            unreachable!("counted statements add")
        };
        let names = |x: VarId| self.synapse_name(p, x, &EVENT);
        let text = (self.synapse_printer(p, &names))
            .block(&[value], &format!("sf_cv{}_", v.0), w)?
            .remove(0);
        let n = format!("sf_n{g}_{}", v.0);
        let seen = seen_counts(g, v);
        writeln!(w, "uint32_t {n} = *(const uint32_t*) &{acc};")?;
        if rotate {
            w.block("if (sf_tracked)", |w| {
                writeln!(w, "const uint32_t sf_now = {n};")?;
                writeln!(w, "{n} -= {seen}a[sf_slot];")?;
                writeln!(w, "{seen}a[sf_slot] = {seen}b[sf_slot];")?;
                writeln!(w, "{seen}b[sf_slot] = sf_now;")
            })?;
        } else {
            writeln!(w, "if (sf_tracked) {n} -= {seen}a[sf_slot];")?;
        }
        Ok(format!(
            "(sf_counting ? ({}) {n} * ({text}) : {acc})",
            self.real_t()
        ))
    }

    /// Whether the accumulator of group g's `v` is a count that a tracked launch never zeroes
    /// ([`Gen::arrivals_value`]): its fold leaves it where the launch tracks (`sf_tracked`).
    pub(super) fn counts_only_grow(&self, g: usize, v: VarId) -> bool {
        self.counted_arrival(g, v).is_some() && self.tracking()
    }

    /// Whether the cluster kernel being printed can track its arrivals by mbarriers: it counts
    /// every arrival ([`cluster_counts_every_arrival`]).
    pub(super) fn tracking(&self) -> bool {
        self.clustered() && cluster_counts_every_arrival(self.net, self.plan)
    }

    /// A mark of the cluster kernel's profile ([`cluster_mode`]): the clock cycles since the
    /// last mark added to phase `phase` ([`PROFILE_PHASES`]) when the launch measures.
    fn write_profile_mark(&self, phase: usize, w: &mut SourceWriter) -> fmt::Result {
        writeln!(
            w,
            "if (sf_profile) {{ const long long sf_now = clock64(); sf_phase[{phase}] += sf_now - sf_clock; sf_clock = sf_now; }}"
        )
    }

    /// The end of the cluster kernel's profile: each block's phases (the mean and the slowest
    /// of its warps, in clock cycles a step) gathered by block 0 through distributed shared
    /// memory between two cluster barriers, and printed by its thread 0 with the nanoseconds a
    /// step, a value a `printf` (one call's arguments are the only local memory it takes).
    fn write_profile_report(&self, w: &mut SourceWriter) -> fmt::Result {
        let n = PROFILE_PHASES.len();
        w.block("if (sf_profile)", |w| {
            write_timer(w)?;
            writeln!(w, "__shared__ unsigned long long sf_phase_sum[{n}], sf_phase_max[{n}];")?;
            writeln!(
                w,
                "if (threadIdx.x < {n}) {{ sf_phase_sum[threadIdx.x] = 0ull; sf_phase_max[threadIdx.x] = 0ull; }}"
            )?;
            writeln!(w, "__syncthreads();")?;
            w.block("if ((threadIdx.x & 31u) == 0u)", |w| {
                w.block(format!("for (int32_t sf_k = 0; sf_k < {n}; ++sf_k)"), |w| {
                    writeln!(
                        w,
                        "atomicAdd(&sf_phase_sum[sf_k], (unsigned long long) sf_phase[sf_k]);"
                    )?;
                    writeln!(
                        w,
                        "atomicMax(&sf_phase_max[sf_k], (unsigned long long) sf_phase[sf_k]);"
                    )
                })
            })?;
            writeln!(w, "sf_cluster_sync();")?;
            let steps = "(double) (sf_s1 > sf_s0 ? sf_s1 - sf_s0 : 1)";
            w.block("if (blockIdx.x == 0 && blockIdx.y == 0 && threadIdx.x == 0)", |w| {
                w.block("for (uint32_t sf_k = 0; sf_k < gridDim.x; ++sf_k)", |w| {
                    writeln!(
                        w,
                        "printf(\"spikeforge cluster profile: block %u, cycles a step (mean of the warps / slowest warp):\", sf_k);"
                    )?;
                    for (k, name) in PROFILE_PHASES.iter().enumerate() {
                        writeln!(
                            w,
                            "printf(\" {name} %.0f\", (double) *sf_rank_ptr(&sf_phase_sum[{k}], sf_k) / (double) (blockDim.x / 32u) / {steps});"
                        )?;
                        writeln!(
                            w,
                            "printf(\" / %.0f,\", (double) *sf_rank_ptr(&sf_phase_max[{k}], sf_k) / {steps});"
                        )?;
                    }
                    writeln!(w, "printf(\" %d steps\\n\", sf_s1 - sf_s0);")
                })?;
                writeln!(
                    w,
                    "printf(\"spikeforge cluster profile: %.1f ns a step\\n\", (double) (sf_ns - sf_ns0) / {steps});"
                )
            })?;
            writeln!(w, "sf_cluster_sync();")
        })
    }

    /// The cluster's barrier and distributed shared memory's addresses (`sf_cluster_sync`,
    /// `sf_rank_ptr`), compiled for compute capability 9.0 and newer.
    fn write_cluster_helpers(&self, w: &mut SourceWriter) -> fmt::Result {
        writeln!(
            w,
            "/* The cluster's barrier: every write of the cluster's threads before it is seen by every read after it (codegen::network_kernel::grid::cluster). */"
        )?;
        w.block(
            "static __device__ __forceinline__ void sf_cluster_sync()",
            |w| {
                writeln!(w, "#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 900")?;
                writeln!(
                    w,
                    "asm volatile(\"barrier.cluster.arrive.release;\\n\\tbarrier.cluster.wait.acquire;\" ::: \"memory\");"
                )?;
                writeln!(w, "#endif")
            },
        )?;
        writeln!(
            w,
            "/* The address of *sf_p (this block's shared memory) in the shared memory of the cluster's block sf_rank. */"
        )?;
        w.block(
            "template <class T> static __device__ __forceinline__ T* sf_rank_ptr(T* sf_p, const uint32_t sf_rank)",
            |w| {
                writeln!(w, "#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 900")?;
                writeln!(w, "uint64_t sf_q;")?;
                writeln!(
                    w,
                    "asm(\"mapa.u64 %0, %1, %2;\" : \"=l\"(sf_q) : \"l\"((uint64_t) sf_p), \"r\"(sf_rank));"
                )?;
                writeln!(w, "return (T*) sf_q;")?;
                writeln!(w, "#else")?;
                writeln!(w, "return sf_p;")?;
                writeln!(w, "#endif")
            },
        )
    }

    /// The mbarrier operations of a tracked launch (`sf_mbarrier_init`, `_wait`, `_arrive`),
    /// compiled for compute capability 9.0 and newer, each one line that the CPU emulation
    /// replaces.
    fn write_mbarrier_helpers(&self, w: &mut SourceWriter) -> fmt::Result {
        writeln!(
            w,
            "/* The mbarriers of a launch that tracks its arrivals (codegen::network_kernel::grid::cluster): a block's arrival at another block's is relaxed where the compiler knows the form (PTX ISA 8.6). */"
        )?;
        writeln!(
            w,
            "#if defined(__CUDACC_VER_MAJOR__) && (__CUDACC_VER_MAJOR__ * 100 + __CUDACC_VER_MINOR__ >= 1208)"
        )?;
        writeln!(w, "#define SF_ARRIVE_SEM \"relaxed\"")?;
        writeln!(w, "#else")?;
        writeln!(w, "#define SF_ARRIVE_SEM \"release\"")?;
        writeln!(w, "#endif")?;
        let helpers = [
            ("sf_mbarrier_init(uint64_t* sf_bar, const uint32_t sf_count)", MBARRIER_INIT),
            ("sf_mbarrier_wait(uint64_t* sf_bar, const uint32_t sf_parity)", MBARRIER_WAIT),
            (
                "sf_mbarrier_arrive(uint64_t* sf_bar, const uint32_t sf_rank, const uint32_t sf_bytes)",
                MBARRIER_ARRIVE,
            ),
        ];
        for (head, line) in helpers {
            w.block(
                format!("static __device__ __forceinline__ void {head}"),
                |w| {
                    writeln!(w, "#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 900")?;
                    writeln!(w, "{line}")?;
                    writeln!(w, "#endif")
                },
            )?;
        }
        Ok(())
    }

    /// The run of projection `p`'s connectivity that the rows of a virtual block's neurons
    /// hold (`sf_n0` its first neuron, in scope): `sf_g0 .. sf_g1`, clamped to the synapses,
    /// declared inside `if (sf_i0 < sf_i1)` (the block holds some of the projection's sources),
    /// where `body` follows.
    fn write_block_run(
        &self,
        p: usize,
        block: usize,
        w: &mut SourceWriter,
        body: impl FnOnce(&mut SourceWriter) -> fmt::Result,
    ) -> fmt::Result {
        let proj = &self.net.projections[p];
        let (a, b) = (proj.source_range.start, proj.source_range.end);
        let rows = self.row_offsets(p);
        writeln!(
            w,
            "const int64_t sf_i0 = sf_n0 > {a} ? sf_n0 : {a}, sf_i1 = sf_n0 + {block} < {b} ? sf_n0 + {block} : {b};"
        )?;
        w.block("if (sf_i0 < sf_i1)", |w| {
            writeln!(
                w,
                "int64_t sf_g0 = {rows}[sf_i0 - {a}], sf_g1 = {rows}[sf_i1 - {a}];"
            )?;
            writeln!(w, "if (sf_g0 < 0) sf_g0 = 0;")?;
            writeln!(w, "if (sf_g1 > sf_nsyn{p}) sf_g1 = sf_nsyn{p};")?;
            body(w)
        })
    }

    /// A tracked launch's check at its start (`sf_tracked` in scope, cleared where it fails):
    /// a phase of a block's mbarrier counts its transactions in bytes within 2^20 - 1, so the
    /// launch tracks its arrivals only where no block holds more than [`TRACKED_MAX_SYNAPSES`]
    /// synapses into any one block (a synapse arrives at most once a step). Each block counts
    /// its slots' rows' targets by block (in registers, then over its warps), and any block
    /// over the bound clears the flag in block 0's shared memory, which every block reads after
    /// a cluster barrier.
    fn write_tracking_check(&self, block: usize, w: &mut SourceWriter) -> fmt::Result {
        writeln!(w, "/* Arrivals tracked only where every block's synapses into each block are at most {TRACKED_MAX_SYNAPSES} (codegen::network_kernel::grid::cluster). */")?;
        w.block("if (sf_tracked)", |w| {
            writeln!(w, "__shared__ uint32_t sf_into[{CLUSTER_MAX}];")?;
            writeln!(
                w,
                "if (threadIdx.x < {CLUSTER_MAX}u) sf_into[threadIdx.x] = 0u;"
            )?;
            writeln!(w, "uint32_t sf_into_here[{CLUSTER_MAX}] = {{}};")?;
            writeln!(w, "__syncthreads();")?;
            self.write_slots(w, |w| {
                for (p, proj) in self.net.projections.iter().enumerate() {
                    let g = proj.source;
                    let first: usize = (0..g).map(|h| self.vblocks(h)).sum();
                    let end = first + self.vblocks(g);
                    let t = proj.target;
                    let target_first: usize = (0..t).map(|h| self.vblocks(h)).sum();
                    w.block(format!("if (sf_vb >= {first} && sf_vb < {end})"), |w| {
                        writeln!(w, "const int64_t sf_n0 = (int64_t) (sf_vb - {first}) * {block};")?;
                        self.write_block_run(p, block, w, |w| {
                            let each = "for (int64_t sf_k = sf_g0 + threadIdx.x; sf_k < sf_g1; sf_k += blockDim.x)";
                            w.block(each, |w| {
                                writeln!(w, "const int32_t sf_j = in_p{p}_targets[sf_k];")?;
                                writeln!(w, "if (sf_j < 0 || sf_j >= {}) continue;", proj.n_post())?;
                                writeln!(
                                    w,
                                    "const uint32_t sf_to = ({target_first}u + (uint32_t) ({} + sf_j) / {block}u) & (gridDim.x - 1u);",
                                    proj.target_range.start
                                )?;
                                writeln!(w, "#pragma unroll")?;
                                writeln!(
                                    w,
                                    "for (uint32_t sf_r = 0; sf_r < {CLUSTER_MAX}u; ++sf_r) sf_into_here[sf_r] += sf_to == sf_r ? 1u : 0u;"
                                )
                            })
                        })
                    })?;
                }
                Ok(())
            })?;
            writeln!(w, "#pragma unroll")?;
            w.block(
                format!("for (uint32_t sf_r = 0; sf_r < {CLUSTER_MAX}u; ++sf_r)"),
                |w| {
                    writeln!(w, "uint32_t sf_c = sf_into_here[sf_r];")?;
                    writeln!(
                        w,
                        "for (int32_t sf_o = 16; sf_o > 0; sf_o >>= 1) sf_c += __shfl_xor_sync(0xffffffffu, sf_c, sf_o);"
                    )?;
                    writeln!(
                        w,
                        "if ((threadIdx.x & 31u) == 0u && sf_c > 0u) atomicAdd(&sf_into[sf_r], sf_c);"
                    )
                },
            )?;
            writeln!(w, "__syncthreads();")?;
            writeln!(
                w,
                "if (threadIdx.x < {CLUSTER_MAX}u && sf_into[threadIdx.x] > {TRACKED_MAX_SYNAPSES}u) atomicAnd(sf_rank_ptr(sf_track_ok, 0u), 0u);"
            )?;
            writeln!(w, "sf_cluster_sync();")?;
            writeln!(w, "sf_tracked = *sf_rank_ptr(sf_track_ok, 0u) != 0u;")
        })
    }

    /// Element `index` of accumulator `k` (of group g) for the steps of parity `parity`, in the
    /// cluster kernel: `sf_i` (a neuron of the block printing it: its fold, with `sf_vb` in
    /// scope) in the block's own shared memory; any other neuron in its block's, through
    /// distributed shared memory.
    pub(super) fn cluster_accumulator(
        &self,
        g: usize,
        k: usize,
        parity: &str,
        index: &str,
    ) -> String {
        let Printing::Persistent { block, .. } = self.printing.get() else {
            unreachable!("the cluster kernel is a persistent kernel")
        };
        let vars = accumulated(self.net, self.plan).len();
        let base = format!(
            "sf_acc + (int64_t) ({parity}) * ({vars} * SF_SLOTS * {block}) + {k} * SF_SLOTS * {block}"
        );
        if index == "sf_i" {
            return format!(
                "({base})[(sf_vb >> sf_cluster_shift) * {block} + (int32_t) threadIdx.x]"
            );
        }
        let first: usize = (0..g).map(|h| self.vblocks(h)).sum();
        format!("(*sf_cluster_elem({base}, {first}, {index}, sf_cluster_shift))")
    }

    /// The C type of projection p's row offsets.
    fn rows_type(&self, p: usize) -> &'static str {
        (self.args.get(&format!("p{p}_rows"))).map_or("int64_t", |(_, a)| a.elem.c_type())
    }

    /// The block's row list in shared memory (`sf_list_*`, [`ClusterShape::rows`] entries) and
    /// its counts of this step and the next (`sf_listed`, by step parity: rows in the high 32
    /// bits, chunks in the low), zeroed; at the kernel's start, before its first cluster
    /// barrier.
    fn write_row_list(&self, shape: ClusterShape, w: &mut SourceWriter) -> fmt::Result {
        let rows = shape.rows.max(1);
        let offset = if (0..self.net.projections.len()).any(|p| self.rows_type(p) == "int64_t") {
            "int64_t"
        } else {
            "int32_t"
        };
        writeln!(
            w,
            "/* The rows of the block's spikes of a step: offset, length, first chunk (of 32 synapses, in the block's numbering), row << 8 | projection, offset in the target cache or -1 (codegen::network_kernel::grid::cluster). */"
        )?;
        writeln!(w, "__shared__ unsigned long long sf_listed[2];")?;
        writeln!(w, "__shared__ {offset} sf_list_lo[{rows}];")?;
        for name in ["len", "c0", "rp", "sh"] {
            writeln!(w, "__shared__ int32_t sf_list_{name}[{rows}];")?;
        }
        writeln!(
            w,
            "if (threadIdx.x == 0) {{ sf_listed[0] = 0ull; sf_listed[1] = 0ull; }}"
        )
    }

    /// The rows of the slots' neurons in every projection that leaves them, in registers for the
    /// launch (`sf_rlo{{p}}`, `sf_rlen{{p}}`: offset and length; length 0 where the neuron is not
    /// one of its sources), and the **target cache**: the targets of the block's rows (for each
    /// slot and projection, the run of its neurons' rows, one after another in the
    /// connectivity) copied into the kernel's dynamic shared memory where they fit
    /// (`%dynamic_smem_size`: the handler gives what the device allows, or nothing,
    /// `SPIKEFORGE_CLUSTER_TARGETS`); `sf_rsh{{p}}`: where a neuron's row starts there, or -1
    /// (its targets read from global memory). A delivery's target is then a shared load, not a
    /// round trip to L2.
    fn write_rows_and_targets(&self, block: usize, w: &mut SourceWriter) -> fmt::Result {
        writeln!(w, "/* The rows of the slots' neurons, in registers for the launch, and their targets in dynamic shared memory where they fit (codegen::network_kernel::grid::cluster). */")?;
        writeln!(w, "extern __shared__ int32_t sf_tgt[];")?;
        writeln!(w, "uint32_t sf_tgt_bytes = 0;")?;
        writeln!(w, "{TARGET_CACHE_BYTES}")?;
        writeln!(w, "int64_t sf_tgt_used = 0;")?;
        for p in 0..self.net.projections.len() {
            writeln!(w, "{} sf_rlo{p}[SF_SLOTS] = {{}};", self.rows_type(p))?;
            writeln!(w, "int32_t sf_rlen{p}[SF_SLOTS] = {{}};")?;
            writeln!(w, "int32_t sf_rsh{p}[SF_SLOTS];")?;
        }
        self.write_slots(w, |w| {
            for (p, proj) in self.net.projections.iter().enumerate() {
                let g = proj.source;
                let first: usize = (0..g).map(|h| self.vblocks(h)).sum();
                let end = first + self.vblocks(g);
                let (a, b) = (proj.source_range.start, proj.source_range.end);
                let rows = self.row_offsets(p);
                writeln!(w, "sf_rsh{p}[sf_slot] = -1;")?;
                w.block(format!("if (sf_vb >= {first} && sf_vb < {end})"), |w| {
                    writeln!(w, "const int64_t sf_n0 = (int64_t) (sf_vb - {first}) * {block};")?;
                    writeln!(w, "const int64_t sf_i = sf_n0 + threadIdx.x;")?;
                    w.block(format!("if (sf_i >= {a} && sf_i < {b})"), |w| {
                        writeln!(
                            w,
                            "int64_t sf_lo = {rows}[sf_i - {a}], sf_hi = {rows}[sf_i - {a} + 1];"
                        )?;
                        writeln!(w, "if (sf_lo < 0) sf_lo = 0;")?;
                        writeln!(w, "if (sf_hi > sf_nsyn{p}) sf_hi = sf_nsyn{p};")?;
                        writeln!(w, "sf_rlo{p}[sf_slot] = ({}) sf_lo;", self.rows_type(p))?;
                        writeln!(
                            w,
                            "sf_rlen{p}[sf_slot] = sf_hi > sf_lo ? (int32_t) (sf_hi - sf_lo) : 0;"
                        )
                    })?;
                    writeln!(w, "/* The block's run of the rows (the same in every thread). */")?;
                    self.write_block_run(p, block, w, |w| {
                        let fits = "sf_g1 > sf_g0 && sf_tgt_used + (sf_g1 - sf_g0) <= (int64_t) (sf_tgt_bytes / 4u)";
                        w.block(format!("if ({fits})"), |w| {
                            writeln!(
                                w,
                                "for (int64_t sf_k = threadIdx.x; sf_k < sf_g1 - sf_g0; sf_k += blockDim.x) sf_tgt[sf_tgt_used + sf_k] = in_p{p}_targets[sf_g0 + sf_k];"
                            )?;
                            writeln!(
                                w,
                                "if (sf_rlen{p}[sf_slot] > 0 && sf_rlo{p}[sf_slot] >= sf_g0 && sf_rlo{p}[sf_slot] + sf_rlen{p}[sf_slot] <= sf_g1) sf_rsh{p}[sf_slot] = (int32_t) (sf_tgt_used + sf_rlo{p}[sf_slot] - sf_g0);"
                            )?;
                            writeln!(w, "sf_tgt_used += sf_g1 - sf_g0;")
                        })
                    })
                })?;
            }
            Ok(())
        })?;
        writeln!(w, "__syncthreads();")
    }

    /// In place of the register grid's deliveries by the warp (`Gen::write_push`): the firing
    /// lanes of a slot of group g (`sf_fire`, `sf_i`, `sf_slot` in scope) list their rows of
    /// this step, each lane's rows and chunks taken at once from the step's counts.
    pub(super) fn write_cluster_listing(&self, g: usize, w: &mut SourceWriter) -> fmt::Result {
        let leaving: Vec<usize> = (self.net.projections.iter().enumerate())
            .filter(|(_, proj)| proj.source == g)
            .map(|(p, _)| p)
            .collect();
        if leaving.is_empty() {
            return Ok(());
        }
        writeln!(
            w,
            "/* The firing lanes' rows, listed for the block's warps (codegen::network_kernel::grid::cluster). */"
        )?;
        w.block("if (sf_fire)", |w| {
            let sum = |each: &dyn Fn(usize) -> String| {
                leaving.iter().map(|p| each(*p)).collect::<Vec<_>>().join(" + ")
            };
            writeln!(
                w,
                "const int32_t sf_rows = {};",
                sum(&|p| format!("(sf_rlen{p}[sf_slot] > 0 ? 1 : 0)"))
            )?;
            writeln!(
                w,
                "const int32_t sf_chunks = {};",
                sum(&|p| format!("((sf_rlen{p}[sf_slot] + 31) >> 5)"))
            )?;
            w.block("if (sf_rows > 0)", |w| {
                writeln!(
                    w,
                    "const unsigned long long sf_old = atomicAdd(&sf_listed[sf_t_step & 1], ((unsigned long long) sf_rows << 32) | (unsigned long long) sf_chunks);"
                )?;
                writeln!(w, "int32_t sf_e = (int32_t) (sf_old >> 32);")?;
                writeln!(w, "int32_t sf_c0 = (int32_t) (sf_old & 0xffffffffull);")?;
                for &p in &leaving {
                    let a = self.net.projections[p].source_range.start;
                    w.block(format!("if (sf_rlen{p}[sf_slot] > 0)"), |w| {
                        writeln!(w, "sf_list_lo[sf_e] = sf_rlo{p}[sf_slot];")?;
                        writeln!(w, "sf_list_len[sf_e] = sf_rlen{p}[sf_slot];")?;
                        writeln!(w, "sf_list_c0[sf_e] = sf_c0;")?;
                        writeln!(w, "sf_list_rp[sf_e] = ((int32_t) (sf_i - {a}) << 8) | {p};")?;
                        writeln!(w, "sf_list_sh[sf_e] = sf_rsh{p}[sf_slot];")?;
                        writeln!(w, "++sf_e;")?;
                        writeln!(w, "sf_c0 += (sf_rlen{p}[sf_slot] + 31) >> 5;")
                    })?;
                }
                Ok(())
            })
        })
    }

    /// The step's listed rows, delivered by every warp of the block after a block barrier:
    /// chunk k (32 synapses of a row) by warp k mod the warps, [`CLUSTER_UNROLL`] chunks a
    /// warp at a time, each lane's targets of all of them loaded before their additions. The
    /// next step's counts are zeroed here: every thread read them in the previous step, before
    /// its cluster barrier.
    fn write_listed_deliveries(&self, block: usize, w: &mut SourceWriter) -> fmt::Result {
        let warps = block / 32;
        let unroll = CLUSTER_UNROLL;
        writeln!(w, "/* The block's listed rows, delivered by all its warps (codegen::network_kernel::grid::cluster). */")?;
        writeln!(w, "__syncthreads();")?;
        self.write_profile_mark(2, w)?;
        writeln!(
            w,
            "const unsigned long long sf_listing = sf_listed[sf_t_step & 1];"
        )?;
        writeln!(
            w,
            "if (threadIdx.x == 0) sf_listed[(sf_t_step + 1) & 1] = 0ull;"
        )?;
        writeln!(w, "const int32_t sf_rows = (int32_t) (sf_listing >> 32);")?;
        writeln!(
            w,
            "const int32_t sf_chunks = (int32_t) (sf_listing & 0xffffffffull);"
        )?;
        let targets = (1..self.net.projections.len()).fold("in_p0_targets".to_owned(), |t, p| {
            format!("(sf_rp & 255) == {p} ? in_p{p}_targets : {t}")
        });
        let each = format!("for (int32_t sf_u = 0; sf_u < {unroll}; ++sf_u)");
        let head = format!(
            "for (int32_t sf_c = (int32_t) (threadIdx.x >> 5); sf_c < sf_chunks; sf_c += {})",
            warps * unroll
        );
        w.block(head, |w| {
            writeln!(
                w,
                "int32_t sf_es[{unroll}], sf_js[{unroll}], sf_rps[{unroll}];"
            )?;
            writeln!(w, "int64_t sf_syns[{unroll}];")?;
            writeln!(w, "#pragma unroll")?;
            w.block(&each, |w| {
                writeln!(w, "const int32_t sf_k = sf_c + {warps} * sf_u;")?;
                writeln!(w, "sf_es[sf_u] = -1;")?;
                writeln!(w, "sf_js[sf_u] = -1;")?;
                writeln!(w, "sf_rps[sf_u] = 0;")?;
                writeln!(w, "sf_syns[sf_u] = 0;")?;
                w.block("if (sf_k < sf_chunks)", |w| {
                    writeln!(
                        w,
                        "/* The row of chunk sf_k: the last whose first chunk is at most sf_k. */"
                    )?;
                    writeln!(w, "int32_t sf_e = 0, sf_end = sf_rows;")?;
                    w.block("while (sf_end - sf_e > 1)", |w| {
                        writeln!(w, "const int32_t sf_mid = (sf_e + sf_end) >> 1;")?;
                        writeln!(
                            w,
                            "if (sf_list_c0[sf_mid] <= sf_k) sf_e = sf_mid; else sf_end = sf_mid;"
                        )
                    })?;
                    writeln!(
                        w,
                        "const int32_t sf_at = (sf_k - sf_list_c0[sf_e]) * 32 + sf_lane;"
                    )?;
                    w.block("if (sf_at < sf_list_len[sf_e])", |w| {
                        writeln!(w, "const int32_t sf_rp = sf_list_rp[sf_e];")?;
                        writeln!(w, "const int32_t sf_sh = sf_list_sh[sf_e];")?;
                        writeln!(w, "sf_es[sf_u] = sf_e;")?;
                        writeln!(w, "sf_rps[sf_u] = sf_rp;")?;
                        writeln!(w, "sf_syns[sf_u] = (int64_t) sf_list_lo[sf_e] + sf_at;")?;
                        writeln!(
                            w,
                            "sf_js[sf_u] = sf_sh >= 0 ? sf_tgt[sf_sh + sf_at] : ({targets})[sf_syns[sf_u]];"
                        )
                    })
                })
            })?;
            writeln!(w, "#pragma unroll")?;
            w.block(&each, |w| {
                writeln!(w, "if (sf_es[sf_u] < 0) continue;")?;
                writeln!(w, "const int32_t sf_p = sf_rps[sf_u] & 255;")?;
                writeln!(w, "const int32_t sf_r = sf_rps[sf_u] >> 8;")?;
                writeln!(w, "const int64_t sf_syn = sf_syns[sf_u];")?;
                writeln!(w, "const int32_t sf_j = sf_js[sf_u];")?;
                for (p, proj) in self.net.projections.iter().enumerate() {
                    w.block(format!("if (sf_p == {p})"), |w| {
                        writeln!(w, "if (sf_j < 0 || sf_j >= {}) continue;", proj.n_post())?;
                        for k in proj.synapses.pathways_of(Pathway::Pre) {
                            scope(w, |w| self.write_accumulations(p, k, w))?;
                        }
                        Ok(())
                    })?;
                }
                Ok(())
            })
        })
    }

    /// The cluster kernel of `shape` (its `SF_SLOTS` defined before it): its helpers, then the
    /// kernel.
    pub(in crate::codegen::network_kernel) fn write_cluster_kernel(
        &self,
        shape: ClusterShape,
        w: &mut SourceWriter,
    ) -> fmt::Result {
        let ClusterShape { block, slots, .. } = shape;
        writeln!(
            w,
            "/* The cluster kernel, compiled where its launch's mode is named (SF_CLUSTER_MODE, codegen::network_kernel::grid::cluster_mode): a compilation of its own for each mode, its branches folded. */"
        )?;
        writeln!(w, "#ifdef SF_CLUSTER_MODE")?;
        self.write_cluster_helpers(w)?;
        writeln!(
            w,
            "/* An accumulator in another block's shared memory (a distributed shared memory address): a delivery's atomicAdd on it is a red (no value returned, nothing waited for until the cluster barrier). */"
        )?;
        w.block("template <class T> struct sf_dsmem", |w| {
            writeln!(w, "T* sf_p;")?;
            writeln!(
                w,
                "uint32_t sf_r; /* the block (rank) whose shared memory it is */"
            )?;
            writeln!(
                w,
                "__device__ __forceinline__ sf_dsmem operator*() const {{ return *this; }}"
            )?;
            writeln!(
                w,
                "__device__ __forceinline__ sf_dsmem operator&() const {{ return *this; }}"
            )
        })?;
        writeln!(w, ";")?;
        for (t, ptx, constraint) in [("float", "f32", "f"), ("double", "f64", "d")] {
            let head = format!("static __device__ __forceinline__ void atomicAdd(const sf_dsmem<{t}> sf_a, const {t} sf_v)");
            w.block(head, |w| {
                writeln!(w, "#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 900")?;
                writeln!(
                    w,
                    "asm volatile(\"red.add.{ptx} [%0], %1;\" :: \"l\"(sf_a.sf_p), \"{constraint}\"(sf_v));"
                )?;
                writeln!(w, "#endif")
            })?;
        }
        writeln!(
            w,
            "/* One arrival counted at a distributed shared memory address (a 32-bit count: codegen::network_kernel::grid::cluster). */"
        )?;
        writeln!(
            w,
            "/* Tracked (sf_tracked): an asynchronous reduction that the target block's mbarrier of the step (at sf_bar here) counts, and its 4 bytes added to what this block sent there (sf_sent, by rank). */"
        )?;
        w.block(
            "template <class T> static __device__ __forceinline__ void sf_count_arrival(const sf_dsmem<T> sf_a, const bool sf_tracked, uint64_t* sf_bar, uint32_t* sf_sent)",
            |w| {
                writeln!(w, "#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 900")?;
                w.block("if (sf_tracked)", |w| {
                    writeln!(w, "{COUNT_ARRIVAL_TRACKED}")?;
                    writeln!(w, "atomicAdd(&sf_sent[sf_a.sf_r], 4u);")
                })?;
                w.block("else", |w| writeln!(w, "{COUNT_ARRIVAL}"))?;
                writeln!(w, "#endif")
            },
        )?;
        self.write_mbarrier_helpers(w)?;
        writeln!(
            w,
            "/* Element sf_i (of a group whose virtual blocks start at sf_first) of an accumulator region, in the shared memory of the block that holds it. */"
        )?;
        w.block(
            "template <class T> static __device__ __forceinline__ sf_dsmem<T> sf_cluster_elem(T* sf_region, const int32_t sf_first, const int64_t sf_i, const uint32_t sf_shift)",
            |w| {
                writeln!(
                    w,
                    "const uint32_t sf_vb = (uint32_t) sf_first + (uint32_t) sf_i / {block}u;"
                )?;
                writeln!(w, "const uint32_t sf_rank = sf_vb & (gridDim.x - 1u);")?;
                writeln!(
                    w,
                    "return sf_dsmem<T>{{sf_rank_ptr(sf_region + (sf_vb >> sf_shift) * {block}u + (uint32_t) sf_i % {block}u, sf_rank), sf_rank}};"
                )
            },
        )?;
        let total_blocks: usize = (0..self.net.groups.len()).map(|g| self.vblocks(g)).sum();
        let vars = accumulated(self.net, self.plan).len();
        writeln!(w, "#undef SF_SLOTS\n#define SF_SLOTS {slots}")?;
        // At least one block a multiprocessor (a cluster's blocks each on their own): without
        // it ptxas keeps the kernel to 40 registers and spills the slots (sm_90, COBA).
        let signature = self
            .cuda_signature_with(CLUSTER_ENTRY, block, &PERSISTENT_SCALARS)
            .replacen(
                &format!("__launch_bounds__({block})"),
                &format!("__launch_bounds__({block}, 1)"),
                1,
            );
        writeln!(w, "{signature}\n{{")?;
        w.indented(|w| {
            writeln!(w, "#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900")?;
            writeln!(w, "__trap();")?;
            writeln!(w, "#else")?;
            writeln!(
                w,
                "/* One cluster barrier a step: deliveries into accumulators in the cluster's shared memory, by the block's warps together or by the warp that finds the spikes, arrivals counted or added, the step's phases measured or not, arrivals tracked or a barrier a step (sf_mode: codegen::network_kernel::grid::cluster_mode). */"
            )?;
            writeln!(w, "const int32_t sf_b = (int32_t) blockIdx.y;")?;
            writeln!(w, "const int32_t sf_t_base = in_sf_t_step[sf_b];")?;
            let check = format!(
                "if ((gridDim.x & (gridDim.x - 1u)) != 0u || gridDim.x * SF_SLOTS < {total_blocks}u)"
            );
            w.block(check, |w| {
                writeln!(
                    w,
                    "if (threadIdx.x == 0) printf(\"spikeforge: the cluster network kernel needs a power-of-two cluster of at least {} blocks, launched with %u\\n\", gridDim.x);",
                    total_blocks.div_ceil(slots.max(1))
                )?;
                writeln!(w, "__trap();")
            })?;
            writeln!(
                w,
                "const uint32_t sf_cluster_shift = (uint32_t) (__ffs((int) gridDim.x) - 1);"
            )?;
            writeln!(w, "const int32_t sf_mode = SF_CLUSTER_MODE;")?;
            writeln!(w, "const bool sf_counting = (sf_mode & 2) == 0;")?;
            writeln!(w, "const bool sf_profile = (sf_mode & 4) != 0;")?;
            writeln!(
                w,
                "/* Tracking (bit 3): the mbarriers of the step parities, the cluster's agreement (in block 0's), the tracked bytes sent to each block by step parity. */"
            )?;
            writeln!(
                w,
                "__shared__ unsigned long long sf_track[3 + {CLUSTER_MAX}];"
            )?;
            writeln!(w, "uint64_t* const sf_mbars = (uint64_t*) sf_track;")?;
            writeln!(w, "uint32_t* const sf_track_ok = (uint32_t*) (sf_track + 2);")?;
            writeln!(w, "uint32_t* const sf_sent = (uint32_t*) (sf_track + 3);")?;
            if self.tracking() {
                writeln!(
                    w,
                    "bool sf_tracked = (sf_mode & 8) != 0 && sf_counting;"
                )?;
            } else {
                writeln!(w, "bool sf_tracked = false;")?;
            }
            writeln!(
                w,
                "if (threadIdx.x < 2u * {CLUSTER_MAX}u) sf_sent[threadIdx.x] = 0u;"
            )?;
            w.block("if (sf_tracked && threadIdx.x == 0)", |w| {
                writeln!(w, "*sf_track_ok = 1u;")?;
                writeln!(w, "sf_mbarrier_init(&sf_mbars[0], gridDim.x);")?;
                writeln!(w, "sf_mbarrier_init(&sf_mbars[1], gridDim.x);")?;
                writeln!(w, "{MBARRIER_INIT_FENCE}")
            })?;
            writeln!(
                w,
                "__shared__ {} sf_acc[2 * {vars} * SF_SLOTS * {block}];",
                self.real_t()
            )?;
            writeln!(
                w,
                "for (int32_t sf_k = (int32_t) threadIdx.x; sf_k < 2 * {vars} * SF_SLOTS * {block}; sf_k += (int32_t) blockDim.x) sf_acc[sf_k] = 0;"
            )?;
            self.write_row_list(shape, w)?;
            // The queue is written in the launch's last step only (every queue one slot: see
            // `Gen::write_compaction`), so its write cursors are zeroed once, here, rather than
            // a step ahead in every step as the grid kernel does (a load and a store on block
            // 0's first warp every step): the last step's count is stored after the loop.
            w.block("if (blockIdx.x == 0 && threadIdx.x == 0)", |w| {
                writeln!(w, "const int32_t sf_s = sf_s0;")?;
                self.step_prologue(w)?;
                for (g, gp) in self.plan.groups.iter().enumerate() {
                    if gp.depth > 0 {
                        writeln!(w, "{} = 0;", self.cursor(g, 0))?;
                        writeln!(w, "{} = 0;", self.cursor(g, 1))?;
                    }
                }
                Ok(())
            })?;
            writeln!(w, "sf_cluster_sync();")?;
            self.write_register_loads(block, slots, w)?;
            self.write_rows_and_targets(block, w)?;
            self.write_tracking_check(block, w)?;
            for (g, v) in accumulated(self.net, self.plan) {
                if self.counts_only_grow(g, v) {
                    let seen = seen_counts(g, v);
                    writeln!(
                        w,
                        "uint32_t {seen}a[SF_SLOTS] = {{}}, {seen}b[SF_SLOTS] = {{}};"
                    )?;
                }
            }
            writeln!(
                w,
                "long long sf_phase[{}] = {{}}, sf_clock = 0, sf_ns0 = 0;",
                PROFILE_PHASES.len()
            )?;
            w.block("if (sf_profile)", |w| {
                writeln!(w, "sf_clock = clock64();")?;
                write_timer(w)?;
                writeln!(w, "sf_ns0 = sf_ns;")
            })?;
            w.block("for (int32_t sf_s = sf_s0; sf_s < sf_s1; ++sf_s)", |w| {
                writeln!(w, "const int32_t sf_ln = sf_s - sf_s0;")?;
                w.block("if (sf_tracked)", |w| {
                    writeln!(
                        w,
                        "/* The previous step's arrivals: its mbarrier's phase complete. */"
                    )?;
                    writeln!(
                        w,
                        "if (sf_ln > 0) sf_mbarrier_wait(&sf_mbars[(sf_ln - 1) & 1], (uint32_t) ((sf_ln - 1) >> 1) & 1u);"
                    )?;
                    self.write_profile_mark(4, w)
                })?;
                scope(w, |w| {
                    self.step_prologue(w)?;
                    writeln!(w, "const int32_t sf_lane = (int32_t) (threadIdx.x & 31u);")?;
                    self.write_slot_updates(block, w)?;
                    self.write_profile_mark(0, w)?;
                    self.write_slot_spikes(block, w)?;
                    self.write_profile_mark(1, w)?;
                    w.block("if ((sf_mode & 1) == 0)", |w| {
                        self.write_listed_deliveries(block, w)
                    })?;
                    self.write_profile_mark(3, w)
                })?;
                w.block("if (sf_tracked)", |w| {
                    writeln!(
                        w,
                        "/* Every warp's deliveries made: the block arrives at each block's mbarrier of the step with the bytes it sent there. */"
                    )?;
                    writeln!(w, "__syncthreads();")?;
                    w.block("if (threadIdx.x < gridDim.x)", |w| {
                        writeln!(
                            w,
                            "uint32_t* const sf_out = sf_sent + (sf_ln & 1) * {CLUSTER_MAX};"
                        )?;
                        writeln!(w, "const uint32_t sf_bytes = sf_out[threadIdx.x];")?;
                        writeln!(w, "sf_out[threadIdx.x] = 0u;")?;
                        writeln!(
                            w,
                            "sf_mbarrier_arrive(&sf_mbars[sf_ln & 1], threadIdx.x, sf_bytes);"
                        )
                    })
                })?;
                w.block("else", |w| {
                    writeln!(w, "sf_cluster_sync();")?;
                    self.write_profile_mark(4, w)
                })
            })?;
            w.block("if (sf_tracked)", |w| {
                writeln!(
                    w,
                    "/* The last step's arrivals, then a barrier: the queue's counts of every block seen, no block's shared memory written after. */"
                )?;
                writeln!(
                    w,
                    "if (sf_s1 > sf_s0) sf_mbarrier_wait(&sf_mbars[(sf_s1 - 1 - sf_s0) & 1], (uint32_t) ((sf_s1 - 1 - sf_s0) >> 1) & 1u);"
                )?;
                writeln!(w, "sf_cluster_sync();")
            })?;
            self.write_profile_report(w)?;
            w.block("if (sf_s1 > sf_s0)", |w| {
                writeln!(w, "const int32_t sf_s = sf_s1 - 1;")?;
                self.step_prologue(w)?;
                w.block("if (blockIdx.x == 0 && threadIdx.x == 0)", |w| {
                    self.write_queue_counts(0, "", false, w)
                })?;
                self.write_register_stores(block, w)
            })?;
            writeln!(w, "#endif")
        })?;
        w.write_str("}\n#endif /* SF_CLUSTER_MODE */\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cluster_is_the_smallest_power_of_two_that_holds_every_virtual_block() {
        // COBA x1: 16 virtual blocks of 256 in 2 slots: 8 blocks, or 16 when asked
        assert_eq!(cluster_blocks(16, 2, 16, None), Some(8));
        assert_eq!(cluster_blocks(16, 2, 16, Some(16)), Some(16));
        assert_eq!(cluster_blocks(16, 2, 8, Some(16)), Some(8));
        assert_eq!(cluster_blocks(16, 2, 16, Some(2)), Some(8));
        // 33 virtual blocks in 4 slots: 9 blocks, rounded up to 16
        assert_eq!(cluster_blocks(33, 4, 16, None), Some(16));
        assert_eq!(cluster_blocks(33, 4, 8, None), None);
        // small networks: fewer blocks, at least one
        assert_eq!(cluster_blocks(3, 3, 16, None), Some(1));
        assert_eq!(cluster_blocks(3, 3, 16, Some(4)), Some(4));
        // no slots (not the one-barrier kernel), no clusters
        assert_eq!(cluster_blocks(32, 0, 16, None), None);
        assert_eq!(cluster_blocks(32, 4, 0, None), None);
    }

    #[test]
    fn a_cluster_block_holds_a_sixteenth_of_the_largest_group() {
        let text = include_str!("../../../../tests/networks/coba_one_barrier.json");
        let spec = crate::spec::NetworkSpec::from_json(text).unwrap();
        let net = crate::frontend::network::lower(&spec).unwrap();
        let plan = crate::step::network::plan(&net);
        // 4000 neurons: 16 blocks of 256 threads, 2 slots for a portable cluster of 8; a neuron
        // is a source of one projection (E or I), so a block lists at most its 512 neurons' rows
        let want = ClusterShape {
            block: 256,
            slots: 2,
            vblocks: 16,
            rows: 512,
        };
        assert_eq!(cluster_shape(&net, &plan), Some(want));
    }
}
