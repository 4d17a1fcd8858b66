//! **Balanced deliveries** in the one-barrier register grid ([`PERSISTENT_BALANCED_ENTRY`]): the
//! register slots' spikes of a step are delivered by every warp of the block, a synapse a
//! thread, instead of by the warp that found them, spike after spike.
//!
//! In the warp deliveries (the parent module's `write_push`) a warp delivers each of its slots'
//! spikes in turn: a block whose spikes fall in one warp, or a warp with spikes in several
//! slots, makes one round trip of target loads after another while the other warps wait at the
//! grid barrier (COBA x100: about 2.6 spikes a block a step over 4 slots, the slowest block of
//! 782 about 9). Here, after every slot's update:
//!
//! 1. each warp appends its firing lanes' rows to its block's **row list** of each projection,
//!    in shared memory: the row's start, its presynaptic neuron, and its first synapse in the
//!    block's flat numbering of the step's synapses (a warp scan of the row lengths where more
//!    than one lane lists a row, then one shared 64-bit atomic a warp and projection that adds
//!    the rows and the synapses at once, so that the list's order is the numbering's);
//! 2. one `__syncthreads`;
//! 3. thread t takes the step's synapses t, t + block, ... ([`BALANCED_UNROLL`] at a time,
//!    shared by the projections): it finds each one's row by a binary search of the list's
//!    first synapses, loads every target, then makes the atomics. The block's deliveries then
//!    take one round trip of target loads for up to `block` · [`BALANCED_UNROLL`] synapses,
//!    whichever warps found the spikes.
//!
//! The lists' words (`sf_bn{p}`: rows in the high 32 bits, synapses in the low 32) are kept by
//! step parity: step s appends to parity `s & 1` and thread 0 zeroes parity `(s + 1) & 1`
//! (last read in step s - 1, before its grid barrier; next written in step s + 1, after step
//! s's). A block's synapses of a step are at most its projection's synapses (the rows of
//! distinct neurons are disjoint), so 32 bits hold them where a projection has fewer than
//! 2^31 synapses ([`BALANCED_MAX_SYNAPSES`]: the handler takes the warp deliveries above).
//! The additions are the warp deliveries' (the same atomics, in another order): the spikes are
//! the same on every path (tests/network_cuda_emulation.rs, the one-barrier GPU tests).

use std::fmt::{self, Write};

use super::super::{scope, Gen};
use super::registers::register_slots;
use crate::codegen::writer::SourceWriter;
use crate::ir::network::{NetGroupKind, NetworkIr};
use crate::ir::synapses::Pathway;
use crate::step::network::NetworkPlan;

/// The one-barrier kernel with balanced deliveries (parameters: the persistent kernel's).
pub const PERSISTENT_BALANCED_ENTRY: &str = "sf_network_persistent_balanced";

/// Synapses a thread loads before their atomics, per round, over every projection (each takes
/// an equal share, at least one): COBA's two projections 2 each, 256 synapses of each a block
/// a round. (4 of each spill at the register cap: 16 bytes.)
pub const BALANCED_UNROLL: usize = 4;

/// The most shared memory a block's row lists may take (counted with 64-bit row starts); a
/// network whose lists need more has no balanced kernel. COBA's two projections in blocks of
/// 128 with 4 slots: 16,416 bytes so counted (12,320 with its 32-bit rows), which with the row
/// tables leaves 8 blocks a multiprocessor their shared memory.
pub const BALANCED_LIST_BYTES: usize = 24 * 1024;

/// The most synapses a projection may have for the balanced deliveries (a block's flat
/// numbering of a step's synapses is 32-bit).
pub const BALANCED_MAX_SYNAPSES: u64 = i32::MAX as u64;

/// A projection's row list: its projection, its capacity (rows), the C type of a row start.
struct RowList {
    p: usize,
    cap: usize,
    c_type: &'static str,
}

/// Whether `net`'s source has the balanced kernel ([`PERSISTENT_BALANCED_ENTRY`]): a
/// one-barrier network whose row lists fit [`BALANCED_LIST_BYTES`] in blocks of `block`.
pub fn balanced_kernel(net: &NetworkIr, plan: &NetworkPlan, block: usize) -> bool {
    list_bytes(net, plan, block).is_some_and(|b| b <= BALANCED_LIST_BYTES)
}

/// Whether group g's spikes are delivered from its update (it has a queue and is not a
/// generator).
pub(super) fn spiking(net: &NetworkIr, plan: &NetworkPlan, g: usize) -> bool {
    plan.groups[g].depth > 0 && !matches!(net.groups[g].kind, NetGroupKind::SpikeGenerator { .. })
}

/// The rows a block may list of projection `p` in a step: its slots' neurons in the source
/// range.
fn capacity(net: &NetworkIr, plan: &NetworkPlan, block: usize, p: usize) -> usize {
    let proj = &net.projections[p];
    let range = proj.source_range.end - proj.source_range.start;
    (register_slots(net, plan, block) * block).min(range)
}

/// The bytes of the row lists (rows as 64-bit where a projection's synapses might need it),
/// or `None` when the network has no one-barrier kernel.
fn list_bytes(net: &NetworkIr, plan: &NetworkPlan, block: usize) -> Option<usize> {
    if register_slots(net, plan, block) == 0 {
        return None;
    }
    let bytes = (0..net.projections.len())
        .filter(|&p| spiking(net, plan, net.projections[p].source))
        .map(|p| 16 + capacity(net, plan, block, p) * 16)
        .sum();
    Some(bytes)
}

impl Gen<'_> {
    /// Whether the balanced kernel is being printed.
    pub(in crate::codegen::network_kernel) fn balancing(&self) -> bool {
        self.balanced.get()
    }

    /// The row lists of the block's slots (`block` threads), a projection from a spiking group
    /// each.
    fn row_lists(&self, block: usize) -> Vec<RowList> {
        (0..self.net.projections.len())
            .filter(|&p| spiking(self.net, self.plan, self.net.projections[p].source))
            .map(|p| RowList {
                p,
                cap: capacity(self.net, self.plan, block, p),
                c_type: self
                    .args
                    .get(&format!("p{p}_rows"))
                    .map_or("int64_t", |(_, a)| a.elem.c_type()),
            })
            .collect()
    }

    /// The row lists declared and their words zeroed, then a block barrier (at the launch's
    /// start).
    pub(super) fn write_row_lists(&self, block: usize, w: &mut SourceWriter) -> fmt::Result {
        writeln!(w, "/* The block's row lists of a step's spikes (codegen::network_kernel::grid::balanced). */")?;
        for l in self.row_lists(block) {
            let (p, cap, t) = (l.p, l.cap, l.c_type);
            writeln!(w, "__shared__ unsigned long long sf_bn{p}[2];")?;
            writeln!(w, "__shared__ int32_t sf_bstart{p}[{cap}];")?;
            writeln!(w, "__shared__ {t} sf_blo{p}[{cap}];")?;
            writeln!(w, "__shared__ int32_t sf_bpre{p}[{cap}];")?;
            writeln!(w, "if (threadIdx.x < 2) sf_bn{p}[threadIdx.x] = 0ull;")?;
        }
        writeln!(w, "__syncthreads();")
    }

    /// The next step's list words zeroed (thread 0; `sf_s` in scope).
    pub(super) fn write_row_lists_reset(&self, block: usize, w: &mut SourceWriter) -> fmt::Result {
        w.block("if (threadIdx.x == 0)", |w| {
            for l in self.row_lists(block) {
                writeln!(w, "sf_bn{}[(sf_s + 1) & 1] = 0ull;", l.p)?;
            }
            Ok(())
        })
    }

    /// A warp's firing lanes of a slot of group g (`sf_ballot` not 0, `sf_fire`, `sf_i`,
    /// `sf_slot` in scope) appended to the row lists of the projections leaving g.
    pub(super) fn write_row_list_append(
        &self,
        g: usize,
        block: usize,
        w: &mut SourceWriter,
    ) -> fmt::Result {
        let tables = self.row_tables(block);
        for l in self.row_lists(block) {
            let p = l.p;
            let proj = &self.net.projections[p];
            if proj.source != g {
                continue;
            }
            let (a, b) = (proj.source_range.start, proj.source_range.end);
            let (lo, hi) = self.row_bounds(p, block, &tables);
            scope(w, |w| {
                writeln!(w, "int64_t sf_lo = 0, sf_len = 0;")?;
                w.block(format!("if (sf_fire && sf_i >= {a} && sf_i < {b})"), |w| {
                    writeln!(w, "sf_lo = {lo};")?;
                    writeln!(w, "int64_t sf_hi = {hi};")?;
                    writeln!(w, "if (sf_lo < 0) sf_lo = 0;")?;
                    writeln!(w, "if (sf_hi > sf_nsyn{p}) sf_hi = sf_nsyn{p};")?;
                    writeln!(w, "sf_len = sf_hi > sf_lo ? sf_hi - sf_lo : 0;")
                })?;
                writeln!(
                    w,
                    "const unsigned sf_has = __ballot_sync(0xffffffffu, sf_len > 0);"
                )?;
                w.block("if (sf_has != 0u)", |w| {
                    writeln!(w, "/* The lanes' first synapses (an inclusive scan, where more than one lane lists a row), then one atomic for the warp's rows and synapses by the last listing lane, which holds their sum. */")?;
                    writeln!(w, "int32_t sf_sum = (int32_t) sf_len;")?;
                    w.block("if ((sf_has & (sf_has - 1u)) != 0u)", |w| {
                        writeln!(w, "#pragma unroll")?;
                        w.block("for (int32_t sf_d = 1; sf_d < 32; sf_d <<= 1)", |w| {
                            writeln!(
                                w,
                                "const int32_t sf_y = __shfl_up_sync(0xffffffffu, sf_sum, sf_d);"
                            )?;
                            writeln!(w, "if (sf_lane >= sf_d) sf_sum += sf_y;")
                        })
                    })?;
                    writeln!(w, "const int32_t sf_last = 31 - __clz((int) sf_has);")?;
                    writeln!(w, "unsigned long long sf_base = 0ull;")?;
                    writeln!(
                        w,
                        "if (sf_lane == sf_last) sf_base = atomicAdd(&sf_bn{p}[sf_s & 1], ((unsigned long long) __popc(sf_has) << 32) | (unsigned long long) (uint32_t) sf_sum);"
                    )?;
                    writeln!(w, "sf_base = __shfl_sync(0xffffffffu, sf_base, sf_last);")?;
                    w.block("if (sf_len > 0)", |w| {
                        writeln!(
                            w,
                            "const int32_t sf_k = (int32_t) (sf_base >> 32) + __popc(sf_has & ((1u << sf_lane) - 1u));"
                        )?;
                        writeln!(
                            w,
                            "sf_bstart{p}[sf_k] = (int32_t) (uint32_t) sf_base + sf_sum - (int32_t) sf_len;"
                        )?;
                        writeln!(w, "sf_blo{p}[sf_k] = ({}) sf_lo;", l.c_type)?;
                        writeln!(w, "sf_bpre{p}[sf_k] = (int32_t) sf_i;")
                    })
                })
            })?;
        }
        Ok(())
    }

    /// The block's listed synapses of this step, a synapse a thread (after the block barrier
    /// that follows the appends): rounds of [`BALANCED_UNROLL`] synapses a thread (shared by
    /// the projections), each round's targets loaded before its atomics.
    pub(super) fn write_balanced_deliveries(
        &self,
        block: usize,
        w: &mut SourceWriter,
    ) -> fmt::Result {
        let lists = self.row_lists(block);
        if lists.is_empty() {
            return Ok(());
        }
        let u = (BALANCED_UNROLL / lists.len()).max(1);
        writeln!(
            w,
            "/* The block's spikes' synapses, a synapse a thread (codegen::network_kernel::grid::balanced). */"
        )?;
        writeln!(w, "int32_t sf_rounds = 0;")?;
        for l in &lists {
            let p = l.p;
            writeln!(w, "const unsigned long long sf_bw{p} = sf_bn{p}[sf_s & 1];")?;
            writeln!(w, "const int32_t sf_bnr{p} = (int32_t) (sf_bw{p} >> 32);")?;
            writeln!(
                w,
                "const int32_t sf_btot{p} = (int32_t) (uint32_t) sf_bw{p};"
            )?;
            writeln!(w, "if (sf_btot{p} > sf_rounds) sf_rounds = sf_btot{p};")?;
        }
        let each = format!("for (int32_t sf_u = 0; sf_u < {u}; ++sf_u)");
        let round = format!(
            "for (int32_t sf_g0 = 0; sf_g0 < sf_rounds; sf_g0 += {})",
            block * u
        );
        w.block(round, |w| {
            for l in &lists {
                let p = l.p;
                writeln!(w, "int32_t sf_js{p}[{u}], sf_ks{p}[{u}];")?;
                writeln!(w, "#pragma unroll")?;
                w.block(&each, |w| {
                    writeln!(
                        w,
                        "const int32_t sf_g = sf_g0 + (int32_t) threadIdx.x + {block} * sf_u;"
                    )?;
                    writeln!(w, "int32_t sf_k = 0;")?;
                    writeln!(w, "sf_js{p}[sf_u] = -1;")?;
                    w.block(format!("if (sf_g < sf_btot{p})"), |w| {
                        writeln!(w, "/* The row: the last whose first synapse is at most sf_g. */")?;
                        w.block(
                            format!("for (int32_t sf_top = sf_bnr{p} - 1; sf_k < sf_top;)"),
                            |w| {
                                writeln!(w, "const int32_t sf_mid = (sf_k + sf_top + 1) >> 1;")?;
                                writeln!(
                                    w,
                                    "if (sf_bstart{p}[sf_mid] <= sf_g) sf_k = sf_mid; else sf_top = sf_mid - 1;"
                                )
                            },
                        )?;
                        writeln!(
                            w,
                            "sf_js{p}[sf_u] = in_p{p}_targets[(int64_t) sf_blo{p}[sf_k] + (sf_g - sf_bstart{p}[sf_k])];"
                        )
                    })?;
                    writeln!(w, "sf_ks{p}[sf_u] = sf_k;")
                })?;
            }
            for l in &lists {
                let p = l.p;
                let proj = &self.net.projections[p];
                let a = proj.source_range.start;
                let n_post = proj.n_post();
                writeln!(w, "#pragma unroll")?;
                w.block(&each, |w| {
                    writeln!(w, "const int32_t sf_j = sf_js{p}[sf_u];")?;
                    writeln!(w, "if (sf_j < 0 || sf_j >= {n_post}) continue;")?;
                    writeln!(w, "const int32_t sf_k = sf_ks{p}[sf_u];")?;
                    writeln!(
                        w,
                        "const int32_t sf_g = sf_g0 + (int32_t) threadIdx.x + {block} * sf_u;"
                    )?;
                    writeln!(
                        w,
                        "const int64_t sf_syn = (int64_t) sf_blo{p}[sf_k] + (sf_g - sf_bstart{p}[sf_k]);"
                    )?;
                    writeln!(w, "const int32_t sf_pre = sf_bpre{p}[sf_k];")?;
                    writeln!(w, "const int32_t sf_r = sf_pre - {a};")?;
                    for k in proj.synapses.pathways_of(Pathway::Pre) {
                        scope(w, |w| self.write_accumulations(p, k, w))?;
                    }
                    Ok(())
                })?;
            }
            Ok(())
        })
    }
}
