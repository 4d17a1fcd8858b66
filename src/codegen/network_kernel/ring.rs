//! Delivery at emission into ring buffers of arrivals (CUDA): the pathways that
//! [`crate::step::network::at_emission`] picks (per-synapse delays, increments that nothing
//! changes between a spike and its arrival, atomic mode).
//!
//! Delivered at arrival, a pathway with per-synapse delays walks, every step and for every delay
//! step d of its range, the spikes of step t - d and each spike's bucket of delay d: with tens
//! of delay steps and a few synapses a bucket, most of that work is empty (the cortical
//! microcircuit's 55 projections: about 10^5 segments a step for about 10^5 events). Delivered at
//! emission, each spike's synapses are visited once, in the delivery phase of the spike's own
//! step, by one thread each: synapse `s` of delay `d` adds its increment into its target's
//! entry of the ring slot of step `t + d` (`atomicAdd`); the after-delivery phase of each step
//! adds the target's entry of that step's slot to the variable and clears it. The increment is
//! the same at emission as at arrival, so the result differs from delivery at arrival in the
//! order of the additions only (which atomic delivery does not fix either). The C kernels and
//! deterministic mode keep delivery at arrival in Brian2's order.
//!
//! The rings are scratch (the `work` buffer, zeroed at the start of a call; global memory even
//! in the resident kernel), the spike queue stays the state: the first step of a call also
//! visits, for every spike of the last `longest delay` steps still in the queue, its synapses
//! whose arrival is still to come (`delay >= age`: a contiguous range of the row, which is
//! sorted by delay), so a run split into calls gives the run in one call.
//!
//! Work items: the units of a step are (spike, pathway) pairs: the group's index range is cut
//! at every pathway's source range bounds into intervals, and each interval lists the pathways
//! whose source range covers it (a table), so a spike has at most `L` units (the longest list;
//! the microcircuit's 55 projections of one group give 8). Every block computes the units'
//! bounds, [`CHUNK`] units at a time in rounds of one unit per thread, from tables indexed by
//! the pathway (its buckets, its synapse count, its delay steps and source start: no branch
//! per pathway, which serialised a warp whose units were of several), and the prefix of their
//! items (a warp-shuffle scan) in shared memory. An item is up to 32 consecutive synapses of one
//! unit, taken by one warp, a lane each: the warp finds its unit by a binary search in the
//! prefix (the same for every lane), copies the row's delay buckets into shared memory (where
//! they fit, [`STAGED_DEPTH`]; two coalesced loads instead of a chain of dependent global loads
//! per synapse), and each lane finds its synapse's delay step by a binary search there, loads
//! its target and increment (coalesced) and adds. (Measured on the H200, full-scale
//! microcircuit, before: one thread per synapse, each with its own searches, and a `switch` by
//! pathway in every unit: the delivery kernel took 24-42 µs a step of ~36.)

use std::fmt::{self, Write};

use super::{scope, Gen, EVENT};
use crate::codegen::dialect::Dialect;
use crate::codegen::network_layout::{group_var_ident, rings, Ring};
use crate::codegen::writer::SourceWriter;
use crate::ir::synapses::DelayIr;
use crate::ir::VarId;

/// Units (spike, pathway) a block's prefix holds at a time (24 bytes of shared memory each).
pub const CHUNK: usize = 512;

/// The most entries of a row's delay buckets (delay steps + 1) that a warp copies into shared
/// memory for its lanes' binary searches (256 bytes a warp); longer rows are searched in global
/// memory.
pub const STAGED_DEPTH: usize = 64;

/// The pathways of one source group delivered at emission, and its interval table.
struct Emitters {
    group: usize,
    /// (projection, pathway), in the network's order.
    pathways: Vec<(usize, usize)>,
    /// The intervals' starts, then the group's size.
    cuts: Vec<usize>,
    /// Per interval, `width` entries: the positions in `pathways` that cover it, then -1.
    table: Vec<i64>,
    /// Units per spike.
    width: usize,
    /// The longest delay of the pathways, in steps.
    longest: u32,
}

impl Gen<'_> {
    /// The rings, on CUDA (none in C: it delivers at arrival).
    fn rings(&self) -> Vec<Ring> {
        match self.dialect {
            Dialect::Cuda => rings(self.net, self.plan),
            Dialect::C => Vec::new(),
        }
    }

    /// Whether group g takes arrivals from rings in its after-delivery phase.
    pub(super) fn takes_rings(&self, g: usize) -> bool {
        self.rings().iter().any(|r| r.group == g)
    }

    /// Ring `k`'s buffer (a pointer to reals; global memory in every kernel).
    fn ring_buffer(&self, k: usize) -> String {
        let w = &self.layout.work;
        format!(
            "(({}*) (sf_work + (int64_t) sf_b * {} + {}))",
            self.real_t(),
            w.words,
            w.rings[k]
        )
    }

    /// The pathways delivered at emission, by source group, with their tables.
    fn emitters(&self) -> Vec<Emitters> {
        let mut out: Vec<Emitters> = Vec::new();
        if self.dialect != Dialect::Cuda {
            return out;
        }
        for (p, proj) in self.net.projections.iter().enumerate() {
            for (k, on) in self.plan.projections[p].at_emission.iter().enumerate() {
                if !*on {
                    continue;
                }
                let longest = proj.synapses.pathways[k].delay.max_steps();
                match out.iter_mut().find(|e| e.group == proj.source) {
                    Some(e) => {
                        e.pathways.push((p, k));
                        e.longest = e.longest.max(longest);
                    }
                    None => out.push(Emitters {
                        group: proj.source,
                        pathways: vec![(p, k)],
                        cuts: Vec::new(),
                        table: Vec::new(),
                        width: 0,
                        longest,
                    }),
                }
            }
        }
        for e in &mut out {
            let n = self.net.groups[e.group].n;
            let ranges: Vec<_> = (e.pathways.iter())
                .map(|(p, _)| self.net.projections[*p].source_range.clone())
                .collect();
            let mut cuts: Vec<usize> = ranges.iter().flat_map(|r| [r.start, r.end]).collect();
            cuts.extend([0, n]);
            cuts.sort_unstable();
            cuts.dedup();
            let covering: Vec<Vec<i64>> = (cuts.windows(2))
                .map(|c| {
                    (ranges.iter().enumerate())
                        .filter(|(_, r)| r.start <= c[0] && c[1] <= r.end)
                        .map(|(q, _)| q as i64)
                        .collect()
                })
                .collect();
            e.width = covering.iter().map(Vec::len).max().unwrap_or(0).max(1);
            e.table = (covering.iter())
                .flat_map(|c| (0..e.width).map(|l| c.get(l).copied().unwrap_or(-1)))
                .collect();
            e.cuts = cuts;
        }
        out
    }

    /// The interval tables of the source groups (file scope, before the kernels).
    pub(super) fn write_ring_tables(&self, w: &mut SourceWriter) -> fmt::Result {
        for e in self.emitters() {
            let g = e.group;
            let join = |v: Vec<String>| v.join(", ");
            writeln!(
                w,
                "static __device__ const int32_t sf_ring{g}_cut[{}] = {{{}}};",
                e.cuts.len(),
                join(e.cuts.iter().map(usize::to_string).collect())
            )?;
            writeln!(
                w,
                "static __device__ const int32_t sf_ring{g}_path[{}] = {{{}}};",
                e.table.len(),
                join(e.table.iter().map(i64::to_string).collect())
            )?;
            let (depths, starts): (Vec<String>, Vec<String>) = (e.pathways.iter())
                .map(|&(p, k)| {
                    let start = self.net.projections[p].source_range.start;
                    (self.depth(p, k).to_string(), start.to_string())
                })
                .unzip();
            let q = e.pathways.len();
            writeln!(
                w,
                "static __device__ const int32_t sf_ring{g}_depth[{q}] = {{{}}};",
                join(depths)
            )?;
            writeln!(
                w,
                "static __device__ const int32_t sf_ring{g}_start[{q}] = {{{}}};",
                join(starts)
            )?;
        }
        Ok(())
    }

    /// The delivery phase's emissions: for every source group with pathways delivered at
    /// emission, the synapses of this step's spikes (and, at a call's first step, of the spikes
    /// still on their way) added into the rings. Every thread of every block runs it (it has
    /// `__syncthreads`); needs `sf_b`, `sf_s`, `sf_lane`, `sf_gwarp`, `sf_nwarps` and the step
    /// prologue.
    pub(super) fn write_ring_emission(&self, w: &mut SourceWriter) -> fmt::Result {
        let emitters = self.emitters();
        if emitters.is_empty() {
            return Ok(());
        }
        writeln!(w, "/* Delivery at emission into the rings of arrivals. */")?;
        writeln!(w, "__shared__ long long sf_ring_off[{CHUNK}];")?;
        writeln!(w, "__shared__ int32_t sf_ring_lo[{CHUNK}];")?;
        writeln!(w, "__shared__ int32_t sf_ring_hi[{CHUNK}];")?;
        writeln!(w, "__shared__ int32_t sf_ring_q[{CHUNK}];")?;
        writeln!(w, "__shared__ int32_t sf_ring_r[{CHUNK}];")?;
        writeln!(w, "__shared__ long long sf_ring_warp[32];")?;
        let staged = (emitters.iter())
            .flat_map(|e| &e.pathways)
            .map(|&(p, k)| self.depth(p, k))
            .filter(|d| *d <= STAGED_DEPTH)
            .max();
        if let Some(depth) = staged {
            // Each warp's copy of the delay buckets of the row it delivers.
            writeln!(
                w,
                "__shared__ int32_t sf_ring_bounds_all[{}][{depth}];",
                self.deliver_threads() / 32
            )?;
            writeln!(
                w,
                "int32_t* const sf_ring_bounds = sf_ring_bounds_all[threadIdx.x >> 5];"
            )?;
        }
        for e in &emitters {
            scope(w, |w| self.write_group_emission(e, w))?;
        }
        Ok(())
    }

    /// Delay steps of pathway k of projection p, plus one: the entries of a row's buckets.
    fn depth(&self, p: usize, k: usize) -> usize {
        let DelayIr::PerSynapse { max_steps, .. } =
            self.net.projections[p].synapses.pathways[k].delay
        else {
            unreachable!("delivered at emission: per-synapse delays")
        };
        max_steps as usize + 1
    }

    /// One source group's emissions (see [`Gen::write_ring_emission`]).
    fn write_group_emission(&self, e: &Emitters, w: &mut SourceWriter) -> fmt::Result {
        let g = e.group;
        let (width, intervals) = (e.width, e.cuts.len() - 1);
        // The pathways' buckets and synapse counts, by position in the table (no divergent
        // branch per pathway when a warp's units are of several).
        let paths = e.pathways.len();
        writeln!(w, "__shared__ const int32_t* sf_ring_bk[{paths}];")?;
        writeln!(w, "__shared__ long long sf_ring_n[{paths}];")?;
        w.block("if (threadIdx.x == 0)", |w| {
            for (q, &(p, _)) in e.pathways.iter().enumerate() {
                writeln!(w, "sf_ring_bk[{q}] = in_p{p}_buckets;")?;
                writeln!(w, "sf_ring_n[{q}] = sf_nsyn{p};")?;
            }
            Ok(())
        })?;
        writeln!(w, "__syncthreads();")?;
        writeln!(
            w,
            "const int32_t sf_oldest = sf_s == 0 ? {} : 0;",
            e.longest
        )?;
        w.block("for (int32_t sf_age = sf_oldest; sf_age >= 0; --sf_age)", |w| {
            writeln!(w, "const int32_t sf_count = {};", self.spikes_of(g, "sf_age"))?;
            writeln!(
                w,
                "const int32_t* const sf_list = {};",
                self.queue_row(g, &self.slot(g, "sf_age"))
            )?;
            writeln!(w, "const int64_t sf_units = (int64_t) sf_count * {width};")?;
            w.block(
                format!("for (int64_t sf_u0 = 0; sf_u0 < sf_units; sf_u0 += {CHUNK})"),
                |w| {
                    // The chunk's units in rounds of one per thread (a round only where the
                    // chunk has units: the same test in every thread), each round's prefix
                    // after the last.
                    writeln!(w, "long long sf_carry = 0;")?;
                    writeln!(w, "int32_t sf_filled = 0;")?;
                    w.block(
                        format!("for (int32_t sf_k0 = 0; sf_k0 < {CHUNK} && sf_u0 + sf_k0 < sf_units; sf_k0 += (int32_t) blockDim.x)"),
                        |w| {
                            writeln!(w, "const int32_t sf_k = sf_k0 + (int32_t) threadIdx.x;")?;
                            writeln!(w, "const int64_t sf_u = sf_u0 + sf_k;")?;
                            writeln!(w, "long long sf_lo = 0, sf_hi = 0;")?;
                            writeln!(w, "int32_t sf_q = -1, sf_r = 0;")?;
                            w.block(format!("if (sf_k < {CHUNK} && sf_u < sf_units)"), |w| {
                                writeln!(w, "const int32_t sf_pre = sf_list[sf_u / {width}];")?;
                                w.block(
                                    format!("if (sf_pre >= 0 && sf_pre < {})", self.net.groups[g].n),
                                    |w| {
                                        let cuts = format!("sf_ring{g}_cut");
                                        let range = ("0", intervals.to_string());
                                        write_last_at_most(w, "sf_m", range, &cuts, "sf_pre")?;
                                        writeln!(
                                            w,
                                            "sf_q = sf_ring{g}_path[sf_m * {width} + (int32_t) (sf_u % {width})];"
                                        )
                                    },
                                )?;
                                self.write_unit_bounds(g, w)
                            })?;
                            writeln!(
                                w,
                                "const long long sf_sum = sf_hi > sf_lo ? (sf_hi - sf_lo + 31) / 32 : 0;"
                            )?;
                            self.write_block_scan(w)?;
                            w.block(format!("if (sf_k < {CHUNK})"), |w| {
                                writeln!(w, "sf_ring_off[sf_k] = sf_carry + sf_run;")?;
                                writeln!(w, "sf_ring_lo[sf_k] = (int32_t) sf_lo;")?;
                                writeln!(w, "sf_ring_hi[sf_k] = (int32_t) sf_hi;")?;
                                writeln!(w, "sf_ring_q[sf_k] = sf_sum > 0 ? sf_q : -1;")?;
                                writeln!(w, "sf_ring_r[sf_k] = sf_r;")
                            })?;
                            writeln!(w, "sf_carry += sf_total;")?;
                            writeln!(
                                w,
                                "sf_filled = sf_k0 + (int32_t) blockDim.x < {CHUNK} ? sf_k0 + (int32_t) blockDim.x : {CHUNK};"
                            )?;
                            // The next round rewrites the warps' totals.
                            writeln!(w, "__syncthreads();")
                        },
                    )?;
                    writeln!(w, "const long long sf_total = sf_carry;")?;
                    // One warp per item: up to 32 consecutive synapses of one unit, a lane each
                    // (so the unit, its row and its pathway are the warp's).
                    w.block(
                        "for (long long sf_x = sf_gwarp; sf_x < sf_total; sf_x += sf_nwarps)",
                        |w| {
                            let range = ("0", "sf_filled");
                            write_last_at_most(w, "sf_a", range, "sf_ring_off", "sf_x")?;
                            writeln!(w, "const int32_t sf_r = sf_ring_r[sf_a];")?;
                            writeln!(
                                w,
                                "const int64_t sf_syn = (int64_t) sf_ring_lo[sf_a] + (sf_x - sf_ring_off[sf_a]) * 32 + sf_lane;"
                            )?;
                            writeln!(w, "const bool sf_mine = sf_syn < (int64_t) sf_ring_hi[sf_a];")?;
                            w.block("switch (sf_ring_q[sf_a])", |w| {
                                for (q, &(p, k)) in e.pathways.iter().enumerate() {
                                    writeln!(w, "case {q}:")?;
                                    scope(w, |w| self.write_emission(p, k, w))?;
                                    writeln!(w, "break;")?;
                                }
                                writeln!(w, "default: break;")
                            })
                        },
                    )?;
                    // The next chunk rewrites the prefix.
                    writeln!(w, "__syncthreads();")
                },
            )
        })
    }

    /// A unit's synapses (`sf_lo` to `sf_hi`) of pathway `sf_q` of group g's table for the
    /// spike `sf_pre` of `sf_age` steps ago: those of its row whose delay is at least the age
    /// (all of them for this step's spikes). Sets `sf_r`.
    fn write_unit_bounds(&self, g: usize, w: &mut SourceWriter) -> fmt::Result {
        w.block("if (sf_q >= 0)", |w| {
            writeln!(w, "const int32_t sf_depth = sf_ring{g}_depth[sf_q];")?;
            writeln!(w, "sf_r = sf_pre - sf_ring{g}_start[sf_q];")?;
            w.block("if (sf_age < sf_depth)", |w| {
                writeln!(
                    w,
                    "const int32_t* const sf_row = sf_ring_bk[sf_q] + (int64_t) sf_r * sf_depth;"
                )?;
                writeln!(w, "sf_lo = sf_row[sf_age];")?;
                writeln!(w, "sf_hi = sf_row[sf_depth];")?;
                writeln!(w, "if (sf_lo < 0) sf_lo = 0;")?;
                writeln!(w, "if (sf_hi > sf_ring_n[sf_q]) sf_hi = sf_ring_n[sf_q];")
            })
        })
    }

    /// The exclusive prefix of the threads' `sf_sum` over the block (`sf_run`, this thread's
    /// start) and the block's total (`sf_total`): a warp-shuffle scan, then one over the
    /// warps' totals.
    fn write_block_scan(&self, w: &mut SourceWriter) -> fmt::Result {
        let shuffle_scan = |w: &mut SourceWriter, v: &str| -> fmt::Result {
            w.block("for (int32_t sf_o = 1; sf_o < 32; sf_o <<= 1)", |w| {
                writeln!(
                    w,
                    "const long long sf_y = __shfl_sync(0xffffffffu, {v}, sf_lane >= sf_o ? sf_lane - sf_o : sf_lane);"
                )?;
                writeln!(w, "if (sf_lane >= sf_o) {v} += sf_y;")
            })
        };
        writeln!(w, "long long sf_inc = sf_sum;")?;
        shuffle_scan(w, "sf_inc")?;
        writeln!(
            w,
            "if (sf_lane == 31) sf_ring_warp[threadIdx.x >> 5] = sf_inc;"
        )?;
        writeln!(w, "__syncthreads();")?;
        w.block("if (threadIdx.x < 32u)", |w| {
            writeln!(w, "const int32_t sf_nw = (int32_t) (blockDim.x >> 5);")?;
            writeln!(
                w,
                "long long sf_v = sf_lane < sf_nw ? sf_ring_warp[sf_lane] : 0;"
            )?;
            shuffle_scan(w, "sf_v")?;
            writeln!(w, "if (sf_lane < sf_nw) sf_ring_warp[sf_lane] = sf_v;")
        })?;
        writeln!(w, "__syncthreads();")?;
        writeln!(
            w,
            "long long sf_run = sf_inc - sf_sum + ((threadIdx.x >> 5) > 0u ? sf_ring_warp[(threadIdx.x >> 5) - 1u] : 0);"
        )?;
        writeln!(
            w,
            "const long long sf_total = sf_ring_warp[(blockDim.x >> 5) - 1u];"
        )
    }

    /// The warp's item of pathway k of projection p (lane `sf_lane` has synapse `sf_syn` of
    /// row `sf_r` when `sf_mine`), of a spike `sf_age` steps ago: each synapse's delay step (its
    /// bucket: a binary search in the row's buckets, staged by the warp in shared memory when
    /// they fit), then each statement's increment added into its target's entry of the ring
    /// slot of its arrival step. Warp-uniform (every lane runs it, for `__syncwarp`).
    fn write_emission(&self, p: usize, k: usize, w: &mut SourceWriter) -> fmt::Result {
        let proj = &self.net.projections[p];
        let buckets = self.depth(p, k);
        let staged = buckets <= STAGED_DEPTH;
        writeln!(
            w,
            "const int32_t* const sf_bk = in_p{p}_buckets + (int64_t) sf_r * {buckets};"
        )?;
        let bounds = if staged {
            writeln!(
                w,
                "for (int32_t sf_e = sf_lane; sf_e < {buckets}; sf_e += 32) sf_ring_bounds[sf_e] = sf_bk[sf_e];"
            )?;
            writeln!(w, "__syncwarp();")?;
            "sf_ring_bounds"
        } else {
            "sf_bk"
        };
        // A loop of one pass, so that `break` leaves the synapse (and the warp meets again).
        w.block("if (sf_mine) do", |w| {
            let range = ("sf_age", buckets.to_string());
            write_last_at_most(w, "sf_d", range, bounds, "sf_syn")?;
            writeln!(w, "const int32_t sf_j = in_p{p}_targets[sf_syn];")?;
            writeln!(w, "if (sf_j < 0 || sf_j >= {}) break;", proj.n_post())?;
            writeln!(
                w,
                "const int32_t sf_pre = sf_r + {};",
                proj.source_range.start
            )?;
            writeln!(w, "(void) sf_pre;")?;
            let names = |v: VarId| self.synapse_name(p, v, &EVENT);
            let printer = self.synapse_printer(p, &names);
            let rings = self.rings();
            let n = self.net.groups[proj.target].n;
            for (st, statement) in proj.synapses.statements(k).iter().enumerate() {
                let crate::ir::synapses::Effect::Add(e) = statement.effect else {
                    unreachable!("delivered at emission: additions")
                };
                let ring = (rings.iter())
                    .position(|r| r.statements.contains(&(p, k, st)))
                    .expect("a ring for each statement delivered at emission");
                let text = printer.block(&[e], &format!("sf_q{st}_"), w)?.remove(0);
                writeln!(
                    w,
                    "atomicAdd(&{}[((int64_t) sf_t_step - sf_age + sf_d) % {} * {n} + {} + sf_j], {text});",
                    self.ring_buffer(ring),
                    rings[ring].slots,
                    proj.target_range.start
                )?;
            }
            Ok(())
        })?;
        writeln!(w, "while (0);")?;
        if staged {
            // The next item rewrites the staged buckets.
            writeln!(w, "__syncwarp();")?;
        }
        Ok(())
    }

    /// In the after-delivery phase of neuron `sf_i` of group g: its arrivals of this step taken
    /// from each ring onto the group into the variable, and the entry cleared.
    pub(super) fn write_ring_arrivals(&self, g: usize, w: &mut SourceWriter) -> fmt::Result {
        let n = self.net.groups[g].n;
        let real = self.real_t();
        for (k, ring) in self.rings().iter().enumerate() {
            if ring.group != g {
                continue;
            }
            scope(w, |w| {
                writeln!(
                    w,
                    "{real}* const sf_arrivals = {} + (int64_t) (sf_t_step % {}) * {n};",
                    self.ring_buffer(k),
                    ring.slots
                )?;
                writeln!(w, "const {real} sf_in = sf_arrivals[sf_i];")?;
                w.block(format!("if (sf_in != ({real}) 0)"), |w| {
                    let target = self.at(&group_var_ident(g, ring.var), "sf_i");
                    writeln!(w, "{target} = {target} + sf_in;")?;
                    writeln!(w, "sf_arrivals[sf_i] = ({real}) 0;")
                })
            })?;
        }
        Ok(())
    }
}

/// `int32_t var`: the last index in `[lo, hi)` whose entry of the ascending `array` is at most
/// `key` (`lo` when none is: the searches here start where the entry is known to be), by a
/// binary search.
fn write_last_at_most(
    w: &mut SourceWriter,
    var: &str,
    (lo, hi): (impl fmt::Display, impl fmt::Display),
    array: &str,
    key: &str,
) -> fmt::Result {
    writeln!(w, "int32_t {var} = {lo}, {var}_end = {hi};")?;
    w.block(format!("while ({var}_end - {var} > 1)"), |w| {
        writeln!(w, "const int32_t sf_mid = ({var} + {var}_end) / 2;")?;
        writeln!(
            w,
            "if ({array}[sf_mid] <= {key}) {var} = sf_mid; else {var}_end = sf_mid;"
        )
    })
}
