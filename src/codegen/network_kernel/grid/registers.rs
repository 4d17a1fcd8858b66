//! **State in registers across steps** in the one-barrier grid kernel (see the parent module):
//! a block keeps the per-neuron state of its first `SF_SLOTS` virtual blocks (the slots: virtual
//! block `blockIdx.x + k gridDim.x` is slot k, one neuron a thread) in registers for the whole
//! launch. The state is loaded once at the launch's start and stored once at its end; in
//! between a step reads and writes only the accumulators (the previous step's arrivals, folded
//! into the registers), the spike queue and the connectivity. Nothing else reads a neuron's
//! state during the launch: the one-barrier kernel's deliveries read no neuron's variable, it
//! has no after-delivery phase, no sums and no spike or rate monitor, and the state monitors
//! record from the registers.
//!
//! The slots are register arrays indexed by the unrolled slot loop's constant (`#pragma
//! unroll`), so they are registers, not local memory. A register array is shared by the groups
//! (a slot's virtual block belongs to one group, which the launch's grid decides): group g's
//! j-th held buffer of C type t is `sf_reg{t}_{j}[slot]`. Virtual blocks beyond the slots (a
//! grid smaller than the network's virtual blocks over `SF_SLOTS`) run as before, their state in
//! global memory, so any grid gives the same results.
//!
//! Held: every per-neuron (not shared) state variable, parameter and per-neuron constant of a
//! neuron group, its last spike step, refractoriness flag and spike count; a Poisson group's
//! spike count. The read-only ones (inputs) are loaded and never stored.

use std::fmt::{self, Write};

use super::super::{scope, Gen};
use super::{accumulated, prefetched};
use crate::codegen::network_layout::group_var_ident;
use crate::codegen::writer::SourceWriter;
use crate::ir::network::{NetGroupKind, NetworkIr};
use crate::ir::{RefractoryIr, SymbolKind, VarId};
use crate::step::network::NetworkPlan;

/// The most register slots (virtual blocks whose state a block keeps in registers). With
/// blocks of 128 threads and 8 blocks a multiprocessor (the occupancy at 64 registers a
/// thread), 4 slots hold 540,672 neurons on 132 multiprocessors (the H200): COBA x100's 400,000.
pub const REGISTER_SLOTS: usize = 4;

/// The most shared memory a block's row tables take ([`Gen::row_tables`]): COBA's two
/// projections take 4,128 bytes in blocks of 128 with 4 slots (8 blocks a multiprocessor: 33 kB).
pub const ROW_TABLE_BYTES: usize = 8192;

/// The register slots of `net`'s persistent kernel in blocks of `block` threads: at most
/// [`REGISTER_SLOTS`], at most its virtual blocks; 0 when it is not the one-barrier kernel.
pub fn register_slots(net: &NetworkIr, plan: &NetworkPlan, block: usize) -> usize {
    if !super::one_barrier(net, plan) {
        return 0;
    }
    let blocks: usize = (net.groups.iter())
        .map(|g| super::super::virtual_blocks(g, block))
        .sum();
    REGISTER_SLOTS.min(blocks).max(1)
}

/// A per-neuron buffer that the one-barrier kernel keeps in registers.
struct Held {
    ident: String,
    group: usize,
    /// The register array (one element per slot).
    reg: String,
    c_type: &'static str,
    /// Whether the run writes it (an output, stored at the end).
    written: bool,
}

impl Gen<'_> {
    /// The buffers held in registers, by group.
    fn held(&self) -> Vec<Held> {
        let mut types: Vec<&'static str> = Vec::new();
        let mut out = Vec::new();
        for (g, group) in self.net.groups.iter().enumerate() {
            let mut idents = Vec::new();
            match &group.kind {
                NetGroupKind::Neuron { .. } => {
                    let code = self.groups[g].as_ref().expect("a neuron group");
                    let ir = &code.ir;
                    for (k, sym) in ir.symbols.iter().enumerate() {
                        let per_neuron = matches!(
                            sym.kind,
                            SymbolKind::State | SymbolKind::Param | SymbolKind::PerNeuronConstant
                        );
                        if per_neuron && !sym.shared {
                            idents.push(group_var_ident(g, VarId::at(k)));
                        }
                    }
                    if self.plan.groups[g].lastspike {
                        idents.push(format!("g{g}_lastspike"));
                    }
                    if let RefractoryIr::Condition(_) = ir.events.refractory {
                        idents.push(format!("g{g}_not_refractory"));
                    }
                    if code.dag.spike.is_some() {
                        idents.push(format!("g{g}_spike_count"));
                    }
                }
                NetGroupKind::Poisson { .. } => idents.push(format!("g{g}_spike_count")),
                NetGroupKind::SpikeGenerator { .. } => {}
            }
            let mut per_type: Vec<usize> = Vec::new();
            for ident in idents {
                let Some((written, arg)) = self.args.get(&ident) else {
                    continue;
                };
                let c_type = arg.elem.c_type();
                let t = match types.iter().position(|c| *c == c_type) {
                    Some(t) => t,
                    None => {
                        types.push(c_type);
                        types.len() - 1
                    }
                };
                per_type.resize(types.len(), 0);
                let j = per_type[t];
                per_type[t] += 1;
                out.push(Held {
                    ident,
                    group: g,
                    reg: format!("sf_reg{t}_{j}"),
                    c_type,
                    written: *written,
                });
            }
        }
        out
    }

    /// The register slot that element `index` of buffer `ident` is in, while the update of a
    /// slot is being printed (`sf_slot` in scope): `None` otherwise, or for another element.
    pub(in crate::codegen::network_kernel) fn held_register(
        &self,
        ident: &str,
        index: &str,
    ) -> Option<String> {
        if !self.in_registers.get() || index != "sf_i" {
            return None;
        }
        let held = self.held();
        let h = held.iter().find(|h| h.ident == ident)?;
        Some(format!("{}[sf_slot]", h.reg))
    }

    /// The loop over the block's slots (`#pragma unroll`), each with its virtual block `sf_vb`,
    /// around `body`. In the balanced kernel (`grid::balanced`) the loop stops at the first
    /// slot beyond the virtual blocks (every later one is too): a block whose slots are not
    /// all used (COBA x10: 313 blocks of 4 slots for 313 virtual blocks) jumps over the unused
    /// slots' code at once instead of testing each.
    pub(super) fn write_slots(
        &self,
        w: &mut SourceWriter,
        body: impl FnOnce(&mut SourceWriter) -> fmt::Result,
    ) -> fmt::Result {
        let total_blocks: usize = (0..self.net.groups.len()).map(|g| self.vblocks(g)).sum();
        writeln!(w, "#pragma unroll")?;
        w.block(
            "for (int32_t sf_slot = 0; sf_slot < SF_SLOTS; ++sf_slot)",
            |w| {
                writeln!(
                    w,
                    "const int32_t sf_vb = (int32_t) blockIdx.x + sf_slot * (int32_t) gridDim.x;"
                )?;
                if self.balancing() {
                    writeln!(w, "if (sf_vb >= {total_blocks}) break;")?;
                }
                body(w)
            },
        )
    }

    /// For each group that holds registers, its neuron `sf_i` of slot `sf_vb` (when the slot is
    /// one of the group's virtual blocks and the neuron exists), around `body(g)`.
    fn write_held_neurons(
        &self,
        held: &[Held],
        block: usize,
        w: &mut SourceWriter,
        mut body: impl FnMut(usize, &mut SourceWriter) -> fmt::Result,
    ) -> fmt::Result {
        let mut first = 0usize;
        for g in 0..self.net.groups.len() {
            let end = first + self.vblocks(g);
            if held.iter().any(|h| h.group == g) {
                let n = self.net.groups[g].n;
                w.block(format!("if (sf_vb >= {first} && sf_vb < {end})"), |w| {
                    writeln!(
                        w,
                        "const int64_t sf_i = (int64_t) (sf_vb - {first}) * {block} + threadIdx.x;"
                    )?;
                    w.block(format!("if (sf_i < {n})"), |w| body(g, w))
                })?;
            }
            first = end;
        }
        Ok(())
    }

    /// The slots' registers, declared and loaded from the state buffers (at the launch's start;
    /// `sf_b` in scope).
    pub(super) fn write_register_loads(
        &self,
        block: usize,
        slots: usize,
        w: &mut SourceWriter,
    ) -> fmt::Result {
        let held = self.held();
        writeln!(w, "/* The state of this block's first SF_SLOTS virtual blocks, in registers for the whole launch (codegen::network_kernel::grid::registers). */")?;
        let mut declared: Vec<&str> = Vec::new();
        for h in &held {
            if !declared.contains(&h.reg.as_str()) {
                declared.push(&h.reg);
                writeln!(w, "{} {}[{slots}] = {{}};", h.c_type, h.reg)?;
            }
        }
        self.write_slots(w, |w| {
            self.write_held_neurons(&held, block, w, |g, w| {
                for h in held.iter().filter(|h| h.group == g) {
                    writeln!(w, "{}[sf_slot] = {};", h.reg, self.at(&h.ident, "sf_i"))?;
                }
                Ok(())
            })
        })?;
        self.write_row_tables(block, w)
    }

    /// The previous step's arrivals at the slots' neurons, loaded into registers
    /// ([`prefetched`]) before any slot is updated (`sf_t_step`, `sf_w` in scope): the loads of
    /// every slot and variable go out together, and none waits for a fold's branch or store.
    pub(super) fn write_accumulator_loads(
        &self,
        block: usize,
        w: &mut SourceWriter,
    ) -> fmt::Result {
        let acc = accumulated(self.net, self.plan);
        let real = self.real_t();
        for (g, v) in &acc {
            writeln!(w, "{real} {}[SF_SLOTS];", prefetched(*g, *v))?;
        }
        self.write_slots(w, |w| {
            let mut first = 0usize;
            for g in 0..self.net.groups.len() {
                let end = first + self.vblocks(g);
                let n = self.net.groups[g].n;
                let i = format!("(int64_t) (sf_vb - {first}) * {block} + threadIdx.x");
                let here = format!("sf_vb >= {first} && sf_vb < {end} && {i} < {n}");
                // The cluster kernel's own neurons read their block's shared memory (its
                // `sf_i` accessor needs only `sf_vb` and the thread, both in scope here); a
                // distributed shared memory address is for deliveries only.
                let index = if self.clustered() {
                    "sf_i".to_owned()
                } else {
                    format!("({i})")
                };
                for (_, v) in acc.iter().filter(|(ag, _)| *ag == g) {
                    let at = self
                        .accumulator(g, *v, "(sf_t_step + 1) & 1", &index)
                        .expect("an accumulated variable");
                    let value = self.arrivals_value(g, *v, &at, true, w)?;
                    writeln!(w, "{}[sf_slot] = {here} ? {value} : 0;", prefetched(g, *v))?;
                }
                first = end;
            }
            Ok(())
        })
    }

    /// The projections whose row bounds at the slots' neurons are kept in shared memory for
    /// the launch (`sf_rows{p}`: [`SF_SLOTS`] runs of `block + 1` offsets), with their C type:
    /// every projection of the one-barrier kernel while they take at most
    /// [`ROW_TABLE_BYTES`] a block, else none. A firing lane then reads its row's bounds there
    /// (tens of cycles) instead of from global memory (an L2 round trip on the step's chain).
    pub(in crate::codegen::network_kernel) fn row_tables(
        &self,
        block: usize,
    ) -> Vec<(usize, &'static str)> {
        let slots = register_slots(self.net, self.plan, block);
        // The cluster kernel keeps its slots' rows in registers (`grid::cluster`).
        if slots == 0 || self.clustered() {
            return Vec::new();
        }
        let mut out = Vec::new();
        let mut bytes = 0;
        for p in 0..self.net.projections.len() {
            let Some((_, arg)) = self.args.get(&format!("p{p}_rows")) else {
                return Vec::new();
            };
            let c_type = arg.elem.c_type();
            bytes += slots * (block + 1) * if c_type.contains("64") { 8 } else { 4 };
            out.push((p, c_type));
        }
        if bytes > ROW_TABLE_BYTES {
            return Vec::new();
        }
        out
    }

    /// The row tables ([`Gen::row_tables`]) declared and filled from the row offsets (at the
    /// launch's start, after the register loads), then a block barrier.
    fn write_row_tables(&self, block: usize, w: &mut SourceWriter) -> fmt::Result {
        let tables = self.row_tables(block);
        if tables.is_empty() {
            return Ok(());
        }
        writeln!(w, "/* The slots' neurons' row bounds, in shared memory for the launch (codegen::network_kernel::grid::registers). */")?;
        for (p, c_type) in &tables {
            writeln!(
                w,
                "__shared__ {c_type} sf_rows{p}[SF_SLOTS * {}];",
                block + 1
            )?;
        }
        let held = self.held();
        self.write_slots(w, |w| {
            self.write_held_neurons(&held, block, w, |g, w| {
                for (p, _) in &tables {
                    let proj = &self.net.projections[*p];
                    if proj.source != g {
                        continue;
                    }
                    let (a, b) = (proj.source_range.start, proj.source_range.end);
                    let rows = self.row_offsets(*p);
                    w.block(format!("if (sf_i >= {a} && sf_i < {b})"), |w| {
                        let at = format!("sf_rows{p}[sf_slot * {} + threadIdx.x]", block + 1);
                        writeln!(w, "{at} = {rows}[sf_i - {a}];")?;
                        writeln!(
                            w,
                            "if (sf_i + 1 == {b} || threadIdx.x == {}) sf_rows{p}[sf_slot * {} + threadIdx.x + 1] = {rows}[sf_i - {a} + 1];",
                            block - 1,
                            block + 1
                        )
                    })?;
                }
                Ok(())
            })
        })?;
        writeln!(w, "__syncthreads();")
    }

    /// A step's update of the slots (state in registers), then their spikes' deliveries, then
    /// the update of the virtual blocks beyond them (state in global memory). Needs what
    /// [`Gen::write_update_phase`] needs but `sf_vb`.
    ///
    /// Every slot is updated before any slot's spikes are delivered (their ballots kept in
    /// `sf_ballots`): a slot's loads of its accumulators then wait for no other slot's atomics
    /// (which the compiler cannot move them past: the same buffer), so the slots' loads go out
    /// together, one round trip a step instead of one a slot.
    pub(super) fn write_register_update(
        &self,
        total_blocks: usize,
        block: usize,
        w: &mut SourceWriter,
    ) -> fmt::Result {
        self.write_slot_updates(block, w)?;
        self.write_slot_spikes(block, w)?;
        if self.balancing() {
            writeln!(w, "__syncthreads();")?;
            self.write_balanced_deliveries(block, w)?;
        }
        writeln!(
            w,
            "/* Virtual blocks beyond the slots: their state in global memory. */"
        )?;
        let beyond = format!(
            "for (int32_t sf_vb = (int32_t) blockIdx.x + SF_SLOTS * (int32_t) gridDim.x; sf_vb < {total_blocks}; sf_vb += (int32_t) gridDim.x)"
        );
        w.block(beyond, |w| self.write_update_phase(w))
    }

    /// Every slot's update (their arrivals loaded first), each slot's ballot kept in
    /// `sf_ballots`.
    pub(super) fn write_slot_updates(&self, block: usize, w: &mut SourceWriter) -> fmt::Result {
        writeln!(w, "unsigned sf_ballots[SF_SLOTS];")?;
        self.write_accumulator_loads(block, w)?;
        self.write_slots(w, |w| {
            writeln!(w, "sf_ballots[sf_slot] = 0u;")?;
            self.in_registers.set(true);
            let written = self.write_update_phase(w);
            self.in_registers.set(false);
            written
        })
    }

    /// The slots' spikes (`sf_ballots`), delivered by the warps that found them (in the
    /// cluster kernel: listed for the block's warps, `grid::cluster`; in the balanced grid
    /// kernel: listed for the block's threads, `grid::balanced`).
    pub(super) fn write_slot_spikes(&self, block: usize, w: &mut SourceWriter) -> fmt::Result {
        let balanced = self.balancing();
        if balanced {
            writeln!(
                w,
                "/* The slots' spikes, listed for the block's deliveries. */"
            )?;
        } else {
            writeln!(w, "/* The slots' spikes, delivered. */")?;
        }
        self.write_slots(w, |w| {
            writeln!(w, "const unsigned sf_ballot = sf_ballots[sf_slot];")?;
            w.block("if (sf_ballot != 0u)", |w| {
                let mut first = 0usize;
                for g in 0..self.net.groups.len() {
                    let end = first + self.vblocks(g);
                    if super::balanced::spiking(self.net, self.plan, g) {
                        w.block(format!("if (sf_vb >= {first} && sf_vb < {end})"), |w| {
                            writeln!(
                                w,
                                "const int64_t sf_i = (int64_t) (sf_vb - {first}) * {block} + threadIdx.x;"
                            )?;
                            writeln!(
                                w,
                                "const bool sf_fire = ((sf_ballot >> sf_lane) & 1u) != 0u;"
                            )?;
                            writeln!(
                                w,
                                "const int32_t sf_rank = __popc(sf_ballot & ((1u << sf_lane) - 1u));"
                            )?;
                            // A slot's spikes: their rows' bounds from the row tables.
                            self.in_registers.set(true);
                            let written = if balanced {
                                self.write_row_list_append(g, block, w)
                                    .and_then(|_| self.write_warp_compaction(g, w))
                            } else {
                                self.write_warp_spikes(g, w)
                            };
                            self.in_registers.set(false);
                            written
                        })?;
                    }
                    first = end;
                }
                Ok(())
            })
        })
    }

    /// At the launch's end (after its last barrier; the last step's prologue in scope): the
    /// last step's arrivals folded into the slots' registers, and the written registers stored.
    pub(super) fn write_register_stores(&self, block: usize, w: &mut SourceWriter) -> fmt::Result {
        let held = self.held();
        let real = self.real_t();
        let acc = accumulated(self.net, self.plan);
        self.write_slots(w, |w| {
            self.write_held_neurons(&held, block, w, |g, w| {
                for (_, v) in acc.iter().filter(|(ag, _)| *ag == g) {
                    scope(w, |w| {
                        self.in_registers.set(true);
                        let x = self.at(&group_var_ident(g, *v), "sf_i");
                        let folded = writeln!(w, "{real} x{} = {x};", v.0)
                            .and_then(|_| self.write_fold(g, *v, "sf_t_step & 1", "sf_i", true, w));
                        self.in_registers.set(false);
                        folded
                    })?;
                }
                for h in held.iter().filter(|h| h.group == g && h.written) {
                    writeln!(w, "{} = {}[sf_slot];", self.at(&h.ident, "sf_i"), h.reg)?;
                }
                Ok(())
            })
        })
    }

    /// Whether neuron `sf_i` of group g (its virtual blocks from `first`, of `block` neurons) is
    /// in a slot: a C condition.
    pub(super) fn in_slot(&self, first: usize, block: usize) -> String {
        format!("{first} + sf_i / {block} < (int64_t) SF_SLOTS * gridDim.x")
    }
}
