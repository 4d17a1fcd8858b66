//! The network kernels, in both dialects (docs/NETWORKS.md, "Kernels"): the step of every group
//! fused into one update kernel (with spike compaction into the spike queues), every projection
//! fused into one delivery kernel (with the monitors' bookkeeping), and the after-delivery
//! kernel (counted arrivals, Poisson inputs, late resets). The C dialect runs the same three
//! phases for every step inside one call, sequentially, in Brian2's order.
//!
//! What each phase does is decided in `crate::step::network`; this module only prints it. Every
//! identifier is made from positions (`g0_v2`, `p1_v0`, `m3_i`), never from a name a user wrote.

use std::collections::HashMap;
use std::fmt::{self, Write};

mod grid;
mod per_step;
mod ring;
mod synapse_dynamics;
pub use grid::{
    accumulated, balanced_kernel, cluster_blocks, cluster_counts_arrivals,
    cluster_counts_every_arrival, cluster_mode, cluster_shape, one_barrier, register_slots,
    BarrierVariant, ClusterShape, ARRIVE_RELEASE, BALANCED_LIST_BYTES, BALANCED_MAX_SYNAPSES,
    BALANCED_UNROLL, BARRIER_GROUP_BLOCKS, CLUSTER_ACC_MAX_BYTES, CLUSTER_ENTRY, CLUSTER_MAX,
    COUNT_ARRIVAL, COUNT_ARRIVAL_TRACKED, FENCE_ACQUIRE, GLOBAL_TIMER, MBARRIER_ARRIVE,
    MBARRIER_INIT, MBARRIER_INIT_FENCE, MBARRIER_WAIT, PERSISTENT_BALANCED_ENTRY, POLL_ACQUIRE,
    REGISTER_SLOTS, TARGET_CACHE_BYTES, TRACKED_MAX_SYNAPSES,
};
pub use per_step::{after_folded, closing_launches};
pub use synapse_dynamics::{
    barriers_per_step, step_launches, StepGrid, SUMS_ENTRY, SYNAPSES_ENTRY,
};

use super::dialect::Dialect;
use super::network_layout::{
    counted_statements, group_var_ident, synapse_var_ident, update_blocks, Dim, NetArg, NetLayout,
    NetRole, UPDATE_BLOCK,
};
use super::printer::{literal, prelude, Printer};
use super::random::network_source;
use super::step_body::StepBody;
use super::writer::{render, SourceWriter};
use crate::ir::network::{MonitorIr, NetGroupKind, NetworkIr, Recorded};
use crate::ir::synapses::{DelayIr, Effect, Pathway, Side};
use crate::ir::{ExprArena, ExprId, GroupIr, IndexOf, RefractoryIr, SymbolKind, VarId};
use crate::step::network::{Delivery, NetworkPlan};
use crate::step::{self, FastMath, ResetDag, StepDag};
use crate::types::ElemType;

/// The CUDA kernels, in launch order within a step.
pub const UPDATE_ENTRY: &str = "sf_network_update";
pub const DELIVER_ENTRY: &str = "sf_network_deliver";
pub const AFTER_ENTRY: &str = "sf_network_after";
/// The persistent CUDA kernel: every phase of every step of a chunk of steps in one launch
/// (docs/NETWORKS.md, "The persistent kernel"), as one block per batch member or as a
/// cooperative grid.
pub const PERSISTENT_ENTRY: &str = "sf_network_persistent";
/// The persistent kernel's int32 scalars, before the synapse counts: the chunk's steps
/// `[sf_s0, sf_s1)`, the run's steps, and the grid barrier's variant
/// ([`BarrierVariant::group_blocks`]). (The resident kernel takes the first three.)
pub const PERSISTENT_SCALARS: [&str; 4] = ["sf_s0", "sf_s1", "sf_steps", "sf_group_blocks"];
/// The persistent kernel as one block per batch member with the groups' state resident in
/// shared memory (see [`ResidentLayout`]): the block path where that state fits.
pub const RESIDENT_ENTRY: &str = "sf_network_resident";
/// The C entry point (every phase of every step).
pub const C_ENTRY: &str = "sf_network_run";

/// Threads per block of the persistent kernel as a cooperative grid (or as one block whose
/// state is not resident): the update's blocks, so that a virtual block of the update and
/// after-delivery phases is one physical block's pass. (Blocks of 1024 threads were measured
/// slower for the grid on the H200: fewer multiprocessors update, and every `__syncthreads` of
/// the barriers and the delivery's prefix waits for 32 warps.)
pub const PERSISTENT_BLOCK: usize = UPDATE_BLOCK;

/// The most threads per block of the resident kernel (see [`resident_block`]).
pub const RESIDENT_BLOCK_MAX: usize = 1024;

/// Threads per block of the resident kernel, which are also the neurons of a virtual block of
/// its update and after-delivery phases: the largest group's neurons rounded up to whole update
/// blocks, at most [`RESIDENT_BLOCK_MAX`]. One block then updates a small network in a pass or
/// a few (with 128 threads, 32 passes a step over COBA's 4000 neurons).
pub fn resident_block(net: &NetworkIr) -> usize {
    let largest = (net.groups.iter())
        .filter(|g| !matches!(g.kind, NetGroupKind::SpikeGenerator { .. }))
        .map(|g| g.n)
        .max()
        .unwrap_or(0);
    (largest.div_ceil(UPDATE_BLOCK) * UPDATE_BLOCK).clamp(UPDATE_BLOCK, RESIDENT_BLOCK_MAX)
}

/// Virtual blocks of a group's update in a kernel whose blocks have `block` threads: one per
/// `block` neurons; one for a spike generator (its spikes are read in order by one thread).
pub fn virtual_blocks(g: &crate::ir::network::NetGroup, block: usize) -> usize {
    match g.kind {
        NetGroupKind::SpikeGenerator { .. } => 1,
        _ => g.n.div_ceil(block),
    }
}

/// Where the resident kernel ([`RESIDENT_ENTRY`]) keeps the groups' state in its dynamic shared
/// memory, in bytes from the start (the delivery's segment prefix `sf_seg`, `8 (segments + 1)`
/// bytes, comes first): every per-neuron buffer the run writes (state variables, last spike
/// steps, refractoriness flags, spike counts, the spike queue and its counts), the projections'
/// row offsets (read by every delivered spike) and the member's work words. Each region starts
/// on an 8-byte boundary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResidentLayout {
    pub buffers: Vec<ResidentBuffer>,
    /// The work words' byte offset.
    pub work: usize,
    /// The resident kernel's dynamic shared memory, in bytes.
    pub bytes: usize,
}

/// A buffer of the [`ResidentLayout`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResidentBuffer {
    pub ident: String,
    /// Byte offset in dynamic shared memory.
    pub offset: usize,
    /// Elements (per member, if batched).
    pub elems: usize,
    pub elem: ElemType,
    /// Whether the run writes it (an output, copied back at the end), or only reads it (an
    /// input, the same for every member).
    pub written: bool,
}

impl ResidentLayout {
    fn holds(&self, ident: &str) -> bool {
        self.buffers.iter().any(|b| b.ident == ident)
    }
}

/// See [`ResidentLayout`]; `segments`: [`KernelShape::segments`].
pub fn resident_layout(layout: &NetLayout, segments: usize) -> ResidentLayout {
    let mut at = 8 * (segments + 1);
    let mut buffers = Vec::new();
    let written = layout.outputs.iter().map(|a| (a, true));
    let read = layout.inputs.iter().map(|a| (a, false));
    for (a, out) in written.chain(read) {
        let wanted = match a.role {
            NetRole::State
            | NetRole::LastspikeStep
            | NetRole::NotRefractory
            | NetRole::SpikeCount
            | NetRole::SpikeQueue
            | NetRole::SpikeQueueCounts => out && a.batched,
            NetRole::RowOffsets => !out && !a.batched,
            _ => false,
        };
        let fixed: Option<Vec<usize>> = (a.shape.iter())
            .map(|d| match d {
                Dim::Fixed(n) => Some(*n),
                Dim::Sized(_) => None,
            })
            .collect();
        let Some(fixed) = fixed.filter(|f| wanted && !f.is_empty()) else {
            continue;
        };
        let elems: usize = fixed.iter().product();
        buffers.push(ResidentBuffer {
            ident: a.ident.clone(),
            offset: at,
            elems,
            elem: a.elem,
            written: out,
        });
        at += (elems * a.elem.size()).div_ceil(8) * 8;
    }
    let work = at;
    at += (4 * layout.work.resident_words()).div_ceil(8) * 8;
    ResidentLayout {
        buffers,
        work,
        bytes: at,
    }
}

/// Threads per block of the delivery kernel.
pub const DELIVER_BLOCK: usize = 256;

/// Streams of the random numbers (docs/NETWORKS.md, "Random numbers").
const POISSON_GROUP_STREAM: u32 = 0x5201_0000;
const POISSON_INPUT_STREAM: u32 = 0x5202_0000;

/// A generated network: its source and its entry points.
#[derive(Clone, Debug)]
pub struct GeneratedNetwork {
    pub source: String,
    /// The kernels, in launch order (CUDA), or the one C entry.
    pub entries: Vec<&'static str>,
}

/// Lowers, plans, lays out and generates a network's kernels for one dialect: the whole path
/// from spec to source.
pub fn generate_from_spec(
    spec: &crate::spec::NetworkSpec,
    dialect: Dialect,
) -> Result<GeneratedNetwork, crate::diagnostics::Diagnostic> {
    let net = super::prepare_network(spec)?;
    let plan = crate::step::network::plan(&net);
    let layout = super::network_layout::layout(&net, &plan);
    Ok(generate(&net, &plan, &layout, dialect))
}

/// How the CUDA kernels are launched: fixed by the network (grids never depend on data).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelShape {
    /// Blocks of the update and after-delivery kernels (per batch member).
    pub update_blocks: usize,
    /// (projection, delay) segments of the parallel deliveries: the delivery kernel's dynamic
    /// shared memory is `8 * (segments + 1)` bytes (none without segments).
    pub segments: usize,
    /// Warps the delivery kernel's bookkeeping needs (at least that many warps are launched).
    pub tasks: usize,
    /// Threads per block of the resident kernel ([`resident_block`]).
    pub resident_block: usize,
}

/// See [`KernelShape`].
pub fn kernel_shape(net: &NetworkIr, plan: &NetworkPlan) -> KernelShape {
    KernelShape {
        update_blocks: net.groups.iter().map(update_blocks).sum(),
        segments: segments(net, plan).len(),
        tasks: tasks(net, plan, Dialect::Cuda).len(),
        resident_block: resident_block(net),
    }
}

/// (projection, pathway, delay) of the parallel deliveries, in order.
fn segments(net: &NetworkIr, plan: &NetworkPlan) -> Vec<Segment> {
    (0..net.projections.len())
        .filter(|p| plan.projections[*p].delivery != Delivery::Ordered)
        .flat_map(|p| {
            net.projections[p]
                .synapses
                .pathways_of(Pathway::Pre)
                .filter(move |k| !plan.projections[p].at_emission[*k])
                .flat_map(move |k| {
                    plan.projections[p].delays[k]
                        .iter()
                        .map(move |d| (p, k, *d))
                })
        })
        .collect()
}

/// A parallel delivery's (projection, pathway, delay step).
type Segment = (usize, usize, u32);

/// The delivery kernel's bookkeeping tasks, one warp each.
fn tasks(net: &NetworkIr, plan: &NetworkPlan, dialect: Dialect) -> Vec<Task> {
    let mut t = vec![Task::Queues];
    t.extend(
        net.monitors
            .iter()
            .enumerate()
            .filter(|(_, m)| !matches!(m, MonitorIr::State { .. }))
            .map(|(k, _)| Task::Monitor(k)),
    );
    if dialect == Dialect::Cuda
        && plan
            .projections
            .iter()
            .any(|p| p.delivery == Delivery::Ordered)
    {
        t.push(Task::Ordered);
    }
    t
}

/// The step of one neuron group, as the update kernel prints it.
struct GroupCode {
    /// The group, without its reset when the reset runs after delivery.
    ir: GroupIr,
    dag: StepDag,
    /// The late reset, with held subexpressions substituted.
    reset: Option<ResetDag>,
    /// The variables the DAG's traces are of, in order.
    record: Vec<String>,
}

pub fn generate(
    net: &NetworkIr,
    plan: &NetworkPlan,
    layout: &NetLayout,
    dialect: Dialect,
) -> GeneratedNetwork {
    let fast_math = match (net.fast_math, dialect) {
        (false, _) => FastMath::Off,
        (true, d) => FastMath::On {
            exp2: d == Dialect::Cuda,
        },
    };
    let groups: Vec<Option<GroupCode>> = net
        .groups
        .iter()
        .zip(&plan.groups)
        .map(|(g, gp)| {
            let NetGroupKind::Neuron { spec, ir } = &g.kind else {
                return None;
            };
            let mut k1 = ir.clone();
            let reset = gp.late_reset.then(|| {
                k1.events.reset.clear();
                let mut r = step::reset(ir);
                let held: HashMap<VarId, ExprId> = ir.held.iter().copied().collect();
                for (_, e) in r.assigned.iter_mut() {
                    for _ in 0..=held.len() {
                        *e = r.arena.substitute(*e, &held);
                    }
                }
                r
            });
            let dag = step::build(&k1, &spec.record, fast_math);
            Some(GroupCode {
                ir: k1,
                dag,
                reset,
                record: spec.record.clone(),
            })
        })
        .collect();
    let mut arenas: Vec<ExprArena> = Vec::new();
    let mut new_values: Vec<Vec<Vec<ExprId>>> = Vec::new();
    for p in &net.projections {
        let mut arena = p.synapses.group.arena.clone();
        let values = p
            .synapses
            .pathways
            .iter()
            .map(|pathway| {
                pathway
                    .statements
                    .iter()
                    .map(|st| st.new_value(&mut arena))
                    .collect()
            })
            .collect();
        arenas.push(arena);
        new_values.push(values);
    }
    let args: HashMap<String, (bool, NetArg)> = layout
        .inputs
        .iter()
        .map(|a| (a.ident.clone(), (false, a.clone())))
        .chain(
            layout
                .outputs
                .iter()
                .map(|a| (a.ident.clone(), (true, a.clone()))),
        )
        .collect();
    let segments = segments(net, plan);
    let segments_len = segments.len();
    let gen = Gen {
        net,
        plan,
        layout,
        dialect,
        real: net.dtype,
        groups,
        arenas,
        new_values,
        args,
        segments,
        counted: counted_statements(net, plan),
        printing: std::cell::Cell::new(Printing::PerStep),
        resident: resident_layout(layout, segments_len),
        pushing: std::cell::Cell::new(false),
        in_registers: std::cell::Cell::new(false),
        cluster: std::cell::Cell::new(false),
        balanced: std::cell::Cell::new(false),
    };
    let source = render(|w| gen.write(w));
    let entries = match dialect {
        Dialect::Cuda => step_launches(plan)
            .into_iter()
            .chain(closing_launches(plan))
            .map(|(entry, _)| entry)
            .chain([PERSISTENT_ENTRY, RESIDENT_ENTRY])
            .chain(cluster_shape(net, plan).map(|_| CLUSTER_ENTRY))
            .chain(
                balanced_kernel(net, plan, PERSISTENT_BLOCK).then_some(PERSISTENT_BALANCED_ENTRY),
            )
            .collect(),
        Dialect::C => vec![C_ENTRY],
    };
    GeneratedNetwork { source, entries }
}

/// A bookkeeping task of the delivery kernel, one warp each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Task {
    /// The slots' counts and the write cursors of every group.
    Queues,
    Monitor(usize),
    /// Every ordered projection, in creation order, on one thread.
    Ordered,
}

struct Gen<'a> {
    net: &'a NetworkIr,
    plan: &'a NetworkPlan,
    layout: &'a NetLayout,
    dialect: Dialect,
    real: ElemType,
    groups: Vec<Option<GroupCode>>,
    /// Each projection's arena, with the statements' new values (per pathway).
    arenas: Vec<ExprArena>,
    new_values: Vec<Vec<Vec<ExprId>>>,
    /// Each buffer by identifier, and whether the kernels use its output (the state being
    /// advanced, or a result) rather than its input.
    args: HashMap<String, (bool, NetArg)>,
    /// (projection, pathway, delay) of the parallel deliveries.
    segments: Vec<Segment>,
    /// (projection, pathway, statement) of the counted arrivals, in order.
    counted: Vec<(usize, usize, usize)>,
    /// The kernel being printed (the phases print themselves for it).
    printing: std::cell::Cell<Printing>,
    /// Where the resident kernel keeps the groups' state in shared memory.
    resident: ResidentLayout,
    /// Whether the one-barrier grid kernel is being printed (its update phase folds and
    /// delivers: see [`grid`]).
    pushing: std::cell::Cell<bool>,
    /// Whether a register slot's update is being printed (the one-barrier kernel's state in
    /// registers: see `grid::registers`).
    in_registers: std::cell::Cell<bool>,
    /// Whether the one-barrier kernel is being printed as one thread-block cluster (its
    /// accumulators in the cluster's shared memory: see `grid::cluster`).
    cluster: std::cell::Cell<bool>,
    /// Whether the one-barrier kernel with balanced deliveries is being printed (see
    /// `grid::balanced`).
    balanced: std::cell::Cell<bool>,
}

/// Which kernel the phases are being printed for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Printing {
    /// The per-step kernels (and the C entry): virtual blocks of `SF_BLOCK` (`UPDATE_BLOCK`)
    /// neurons.
    PerStep,
    /// A persistent kernel with blocks of `block` threads (virtual blocks of that many neurons,
    /// printed as a number); `resident`: the groups' state in shared memory.
    Persistent { block: usize, resident: bool },
}

/// How the indices of one event are spelled.
struct Event<'s> {
    /// The presynaptic neuron's index in its group.
    pre: &'s str,
    /// The synapse.
    syn: &'s str,
    /// The postsynaptic index within the projection's target range.
    post: &'s str,
    /// The presynaptic index within the source range.
    row: &'s str,
}

const EVENT: Event<'static> = Event {
    pre: "sf_pre",
    syn: "sf_syn",
    post: "sf_j",
    row: "sf_r",
};

impl Gen<'_> {
    fn real_t(&self) -> &'static str {
        self.real.c_type()
    }

    fn lit(&self, v: f64) -> String {
        literal(v, self.real)
    }

    /// The buffer called `ident`: its output when the run writes it, else its input.
    fn buf(&self, ident: &str) -> String {
        match self.args.get(ident) {
            Some((true, _)) => format!("out_{ident}"),
            Some((false, _)) => format!("in_{ident}"),
            None => unreachable!("{ident} is in the layout"),
        }
    }

    /// Element `index` (within a batch member) of the buffer `ident`.
    fn at(&self, ident: &str, index: &str) -> String {
        if let Some(register) = self.held_register(ident, index) {
            return register;
        }
        if self.resident_now() && self.resident.holds(ident) {
            return format!("sf_r_{ident}[{index}]");
        }
        let (_, a) = &self.args[ident];
        let buf = self.buf(ident);
        if !a.batched {
            return format!("{buf}[{index}]");
        }
        if a.shape.is_empty() {
            return format!("{buf}[sf_b]");
        }
        let size = match a.role {
            NetRole::SynapseParam => {
                let (p, _) = a.at.expect("a projection's variable");
                format!("sf_nsyn{p}")
            }
            _ => a
                .shape
                .iter()
                .map(|d| match d {
                    super::network_layout::Dim::Fixed(n) => n.to_string(),
                    super::network_layout::Dim::Sized(s) => unreachable!("{s} is not a state"),
                })
                .collect::<Vec<_>>()
                .join(" * "),
        };
        format!("{buf}[(int64_t) sf_b * {size} + {index}]")
    }

    /// A group's variable at neuron `index` of the group (read as a kernel value).
    fn group_value(&self, g: usize, v: VarId, index: &str) -> String {
        let ir = self.net.groups[g].neuron_ir().expect("a neuron group");
        let sym = ir.symbol(v);
        match sym.kind {
            SymbolKind::LastSpike => format!(
                "(({}) {} * {})",
                self.real_t(),
                self.at(&format!("g{g}_lastspike"), index),
                self.lit(self.net.dt)
            ),
            _ => self.at(&group_var_ident(g, v), index),
        }
    }

    fn tasks(&self) -> Vec<Task> {
        tasks(self.net, self.plan, self.dialect)
    }

    /// How the kernel being printed spells the neurons of a virtual block of the update and
    /// after-delivery phases.
    fn vblock_size(&self) -> String {
        match self.printing.get() {
            Printing::Persistent { block, .. } => block.to_string(),
            Printing::PerStep => "SF_BLOCK".to_owned(),
        }
    }

    /// Threads per block of the kernel whose delivery phase is being printed.
    fn deliver_threads(&self) -> usize {
        match self.printing.get() {
            Printing::Persistent { block, .. } => block,
            Printing::PerStep => DELIVER_BLOCK,
        }
    }

    /// Virtual blocks of group g's update in the kernel being printed.
    fn vblocks(&self, g: usize) -> usize {
        let group = &self.net.groups[g];
        match self.printing.get() {
            Printing::Persistent { block, .. } => virtual_blocks(group, block),
            Printing::PerStep => update_blocks(group),
        }
    }

    /// Projection p's row offsets: resident in shared memory, or the input.
    fn row_offsets(&self, p: usize) -> String {
        let ident = format!("p{p}_rows");
        if self.resident_now() && self.resident.holds(&ident) {
            format!("sf_r_{ident}")
        } else {
            format!("in_{ident}")
        }
    }

    /// Whether the resident kernel is being printed.
    fn resident_now(&self) -> bool {
        matches!(
            self.printing.get(),
            Printing::Persistent { resident: true, .. }
        )
    }

    fn write(&self, w: &mut SourceWriter) -> fmt::Result {
        writeln!(
            w,
            "/* Generated by spikeforge {} for a {} network of {} groups and {} projections (dt = {}). */",
            env!("CARGO_PKG_VERSION"),
            self.real.name(),
            self.net.groups.len(),
            self.net.projections.len(),
            self.net.dt
        )?;
        match self.dialect {
            Dialect::Cuda => w.write_str(&self.dialect.integer_typedefs(&[
                "int32_t", "int64_t", "uint16_t", "uint32_t", "uint64_t",
            ]))?,
            Dialect::C => w.write_str(
                "#include <math.h>\n#include <stdbool.h>\n#include <stdint.h>\n#include <string.h>\n",
            )?,
        }
        writeln!(w, "#define SF_BLOCK {UPDATE_BLOCK}")?;
        w.write_str(&prelude(self.dialect, self.real))?;
        w.write_str(&network_source(self.dialect, self.net.dt, self.real))?;
        for k in 0..self.net.tables.len() {
            writeln!(
                w,
                "#define SF_TABLE{k}(x) ({})",
                self.at(&format!("ta{k}"), "(int64_t) (x)")
            )?;
        }
        self.write_record_tables(w)?;
        writeln!(w)?;
        match self.dialect {
            Dialect::Cuda => {
                self.write_dynamics_cuda(w)?;
                self.write_update_cuda(w)?;
                writeln!(w)?;
                self.write_deliver_cuda(w)?;
                if self.plan.after_delivery {
                    writeln!(w)?;
                    self.write_after_cuda(w)?;
                }
                writeln!(w)?;
                self.write_persistent_cuda(w)
            }
            Dialect::C => self.write_c(w),
        }
    }

    // -- parameters -------------------------------------------------------------------------

    /// The kernels' parameters after the scalars: every input, every output, the work buffer.
    fn pointer_params(&self) -> Vec<String> {
        let d = self.dialect;
        let inputs = (self.layout.inputs.iter())
            .map(|a| d.pointer_param(a.elem, &format!("in_{}", a.ident), false));
        let outputs = (self.layout.outputs.iter())
            .map(|a| d.pointer_param(a.elem, &format!("out_{}", a.ident), true));
        inputs
            .chain(outputs)
            .chain([d.pointer_param(ElemType::I32, "sf_work", true)])
            .collect()
    }

    fn cuda_signature(&self, entry: &str, block: usize) -> String {
        self.cuda_signature_with(entry, block, &["sf_s", "sf_steps"])
    }

    /// A kernel's signature: the int32 scalars `first`, each projection's synapse count, the
    /// pointers.
    fn cuda_signature_with(&self, entry: &str, block: usize, first: &[&str]) -> String {
        let mut params: Vec<String> = first
            .iter()
            .map(|name| format!("const int32_t {name}"))
            .collect();
        params.extend((0..self.net.projections.len()).map(|p| format!("const int64_t sf_nsyn{p}")));
        params.extend(self.pointer_params());
        format!(
            "extern \"C\" __global__ void __launch_bounds__({block}) {entry}(\n    {})",
            params.join(",\n    ")
        )
    }

    /// The names every phase of a step uses: the batch member's work words, the step, the time,
    /// the seed.
    fn step_prologue(&self, w: &mut SourceWriter) -> fmt::Result {
        let real = self.real_t();
        if self.resident_now() {
            writeln!(w, "int32_t* const sf_w = sf_r_work;")?;
        } else {
            writeln!(
                w,
                "int32_t* const sf_w = sf_work + (int64_t) sf_b * {};",
                self.layout.work.words
            )?;
        }
        // The cluster kernel loads the first step once (`sf_t_base`): a load at a step's start
        // would be the first link of the step's chain.
        if self.clustered() {
            writeln!(w, "const int32_t sf_t_step = sf_t_base + sf_s;")?;
        } else {
            writeln!(w, "const int32_t sf_t_step = in_sf_t_step[sf_b] + sf_s;")?;
        }
        writeln!(
            w,
            "const {real} sf_t = ({real}) sf_t_step * {};",
            self.lit(self.net.dt)
        )?;
        if self.args.contains_key("sf_rng_seed") {
            writeln!(
                w,
                "const uint32_t sf_seed = (uint32_t) in_sf_rng_seed[sf_b];"
            )?;
        }
        Ok(())
    }

    /// `(slot of step t - d)` of group g's queue.
    fn slot(&self, g: usize, delay: &str) -> String {
        let depth = self.plan.groups[g].depth;
        format!("(int32_t) ((((int64_t) sf_t_step - ({delay})) % {depth} + {depth}) % {depth})")
    }

    /// Group g's write cursor of step `t + ahead`.
    fn cursor(&self, g: usize, ahead: u32) -> String {
        let base = self.layout.work.cursors + 2 * g;
        if ahead == 0 {
            format!("sf_w[{base} + (sf_t_step & 1)]")
        } else {
            format!("sf_w[{base} + ((sf_t_step + {ahead}) & 1)]")
        }
    }

    /// The number of spikes of group g `delay` steps ago (this step's from the write cursor).
    fn spikes_of(&self, g: usize, delay: &str) -> String {
        format!(
            "(({delay}) == 0 ? {} : {})",
            self.cursor(g, 0),
            self.at(&format!("g{g}_queue_count"), &self.slot(g, delay))
        )
    }

    /// The first spike of group g's queue slot `slot` (a pointer expression).
    fn queue_row(&self, g: usize, slot: &str) -> String {
        let gp = &self.plan.groups[g];
        let n = self.net.groups[g].n;
        let queue = format!("g{g}_queue");
        if self.resident_now() && self.resident.holds(&queue) {
            return format!("(sf_r_{queue} + (int64_t) ({slot}) * {n})");
        }
        format!(
            "({} + ((int64_t) sf_b * {} + {slot}) * {n})",
            self.buf(&format!("g{g}_queue")),
            gp.depth
        )
    }

    // -- state monitors -----------------------------------------------------------------------

    /// Sorted (index, row) tables of the state monitors that record a scattered list.
    fn write_record_tables(&self, w: &mut SourceWriter) -> fmt::Result {
        for (m, mon) in self.net.monitors.iter().enumerate() {
            if let MonitorIr::State {
                record: Recorded::Indices(list),
                ..
            } = mon
            {
                if contiguous(list).is_some() {
                    continue;
                }
                let mut pairs: Vec<(usize, usize)> =
                    list.iter().enumerate().map(|(row, i)| (*i, row)).collect();
                pairs.sort_unstable();
                let q = match self.dialect {
                    Dialect::Cuda => "static __device__ const",
                    Dialect::C => "static const",
                };
                let items: Vec<String> = pairs.iter().map(|(i, r)| format!("{i}, {r}")).collect();
                writeln!(
                    w,
                    "{q} int32_t sf_rec{m}[{}] = {{{}}};",
                    2 * pairs.len(),
                    items.join(", ")
                )?;
            }
        }
        Ok(())
    }

    /// Records the state monitors of group g at the start of the step (the DAG's traces, in
    /// `code.record`'s order).
    fn write_records(
        &self,
        g: usize,
        code: &GroupCode,
        body: &StepBody,
        w: &mut SourceWriter,
    ) -> fmt::Result {
        for (m, mon) in self.net.monitors.iter().enumerate() {
            let MonitorIr::State {
                group,
                variables,
                record,
                every,
                ..
            } = mon
            else {
                continue;
            };
            if *group != g {
                continue;
            }
            let n_rec = match record {
                Recorded::All => self.net.groups[g].n,
                Recorded::Indices(list) => list.len(),
            };
            w.block(format!("if (sf_s % {every} == 0)"), |w| {
                match record {
                    Recorded::All => writeln!(w, "const int64_t sf_row = sf_i;")?,
                    Recorded::Indices(list) => match contiguous(list) {
                        Some(start) => writeln!(
                            w,
                            "const int64_t sf_row = sf_i >= {start} && sf_i < {} ? sf_i - {start} : -1;",
                            start + list.len()
                        )?,
                        None => {
                            writeln!(w, "int64_t sf_row = -1;")?;
                            writeln!(w, "int32_t sf_lo = 0, sf_hi = {};", list.len())?;
                            w.block("while (sf_lo < sf_hi)", |w| {
                                writeln!(w, "const int32_t sf_mid = (sf_lo + sf_hi) / 2;")?;
                                writeln!(w, "if (sf_rec{m}[2 * sf_mid] < sf_i) sf_lo = sf_mid + 1; else sf_hi = sf_mid;")
                            })?;
                            writeln!(w, "if (sf_lo < {} && sf_rec{m}[2 * sf_lo] == sf_i) sf_row = sf_rec{m}[2 * sf_lo + 1];", list.len())?;
                        }
                    },
                }
                w.block("if (sf_row >= 0)", |w| {
                    let roots: Vec<ExprId> = variables
                        .iter()
                        .map(|v| {
                            let k = code.record.iter().position(|r| r == v).expect("recorded");
                            code.dag.traces[k]
                        })
                        .collect();
                    // At the start of the step the draws are not made yet: a trace reading
                    // one draws it here (the stream gives the same number for the same
                    // element, step and k).
                    let ir = &code.ir;
                    let names = |v: VarId| match ir.symbol(v).kind {
                        SymbolKind::Noise | SymbolKind::Random(_) => body.draw_call(v),
                        _ => self.group_name(g, ir, v),
                    };
                    let texts = Printer {
                        arena: &code.dag.arena,
                        dtype: self.real,
                        dialect: self.dialect,
                        var_name: &names,
                    }
                    .block(&roots, &format!("sf_m{m}_"), w)?;
                    writeln!(
                        w,
                        "const int64_t sf_at = ((int64_t) sf_b * ((sf_steps + {every} - 1) / {every}) + sf_s / {every}) * {n_rec} + sf_row;"
                    )?;
                    for (k, text) in texts.iter().enumerate() {
                        writeln!(w, "out_m{m}_x{k}[sf_at] = {text};")?;
                    }
                    Ok(())
                })
            })?;
        }
        Ok(())
    }

    // -- the update phase ---------------------------------------------------------------------

    /// How group g's step names its variables (registers `x<id>` loaded by `write_loads`).
    fn group_name(&self, g: usize, ir: &GroupIr, v: VarId) -> String {
        let real = self.real_t();
        match &ir.symbol(v).kind {
            SymbolKind::State | SymbolKind::Param | SymbolKind::PerNeuronConstant => {
                format!("x{}", v.0)
            }
            SymbolKind::NotRefractory if matches!(ir.events.refractory, RefractoryIr::None) => {
                "true".into()
            }
            SymbolKind::NotRefractory => "sf_not_refractory".into(),
            SymbolKind::Random(_) => format!("sf_rnd{}", v.0),
            SymbolKind::Time => "sf_t".into(),
            SymbolKind::Index(IndexOf::Element) => format!("(({real}) sf_i)"),
            SymbolKind::Count(IndexOf::Element) => {
                format!("(({real}) {})", self.net.groups[g].n)
            }
            SymbolKind::LastSpike => {
                format!("(({real}) sf_lastspike_step * {})", self.lit(self.net.dt))
            }
            SymbolKind::HeldSubexpression => format!("h{}", v.0),
            SymbolKind::Noise => format!("sf_xi{}", v.0),
            other => unreachable!("{other:?} is not a neuron group's symbol in a network"),
        }
    }

    /// Loads group g's per-neuron values into registers (`sf_i`, `sf_b` in scope).
    fn write_loads(&self, g: usize, ir: &GroupIr, w: &mut SourceWriter) -> fmt::Result {
        let real = self.real_t();
        for (k, sym) in ir.symbols.iter().enumerate() {
            if matches!(
                sym.kind,
                SymbolKind::State | SymbolKind::Param | SymbolKind::PerNeuronConstant
            ) {
                let v = VarId::at(k);
                writeln!(w, "{real} x{k} = {};", self.group_value(g, v, "sf_i"))?;
                self.write_fold(g, v, "(sf_t_step + 1) & 1", "sf_i", false, w)?;
            }
        }
        if self.plan.groups[g].lastspike {
            writeln!(
                w,
                "int32_t sf_lastspike_step = {};",
                self.at(&format!("g{g}_lastspike"), "sf_i")
            )?;
        }
        if let RefractoryIr::Condition(_) = ir.events.refractory {
            writeln!(
                w,
                "{} sf_not_refractory = {};",
                self.dialect.bool_type(),
                self.at(&format!("g{g}_not_refractory"), "sf_i")
            )?;
        }
        Ok(())
    }

    /// Stores group g's registers that the step assigns.
    fn write_stores(
        &self,
        g: usize,
        ir: &GroupIr,
        vars: &[VarId],
        w: &mut SourceWriter,
    ) -> fmt::Result {
        for v in vars {
            if ir.symbol(*v).shared {
                continue;
            }
            writeln!(
                w,
                "{} = x{};",
                self.at(&group_var_ident(g, *v), "sf_i"),
                v.0
            )?;
        }
        Ok(())
    }

    /// The update of one neuron `sf_i` of neuron group g; sets `sf_fire`.
    fn write_neuron(&self, g: usize, w: &mut SourceWriter) -> fmt::Result {
        let code = self.groups[g].as_ref().expect("a neuron group");
        let ir = &code.ir;
        let group = &self.net.groups[g];
        self.write_loads(g, ir, w)?;
        writeln!(w, "int32_t sf_spike_count = 0;")?;
        let names = |v: VarId| self.group_name(g, ir, v);
        let next = |v: VarId| format!("sf_next{}", v.0);
        let element = format!("(uint32_t) ({} + sf_i)", group.offset);
        let body = StepBody {
            ir,
            dag: &code.dag,
            dt: self.net.dt,
            dtype: self.real,
            dialect: self.dialect,
            var_name: &names,
            next_name: &next,
            lane: "",
            noise_element: &element,
            lastspike: self.plan.groups[g].lastspike,
        };
        self.write_records(g, code, &body, w)?;
        self.write_sums_taken(g, w)?;
        body.write(w)?;
        let assigned = code.dag.assigned(ir);
        self.write_stores(g, ir, &assigned, w)?;
        let folded: Vec<VarId> = (0..ir.symbols.len())
            .map(VarId::at)
            .filter(|v| self.accumulates(g, *v) && !assigned.contains(v))
            .collect();
        self.write_stores(g, ir, &folded, w)?;
        // On CUDA the last spike step and the spike count are stored only when the neuron
        // spiked: at 50 Hz and dt 0.1 ms, 12 of the 40 bytes a neuron moves a step otherwise
        // (the C loops stay branch-free, for GCC's vectoriser).
        let on_spike = if self.dialect == Dialect::Cuda && code.dag.spike.is_some() {
            "if (sf_spike) "
        } else {
            ""
        };
        if self.plan.groups[g].lastspike {
            writeln!(
                w,
                "{on_spike}{} = sf_lastspike_step;",
                self.at(&format!("g{g}_lastspike"), "sf_i")
            )?;
        }
        if let RefractoryIr::Condition(_) = ir.events.refractory {
            writeln!(
                w,
                "{} = sf_not_refractory;",
                self.at(&format!("g{g}_not_refractory"), "sf_i")
            )?;
        }
        if code.dag.spike.is_some() {
            writeln!(
                w,
                "{on_spike}{} += sf_spike_count;",
                self.at(&format!("g{g}_spike_count"), "sf_i")
            )?;
            writeln!(w, "sf_fire = sf_spike;")?;
            if let Some(Some(at)) = self.layout.work.spiked.get(g) {
                writeln!(w, "sf_w[{at} + sf_i] = sf_spike ? 1 : 0;")?;
            }
        }
        Ok(())
    }

    /// A Poisson group's neuron `sf_i`: spikes where a uniform falls below `rates * dt`.
    fn write_poisson(&self, g: usize, w: &mut SourceWriter) -> fmt::Result {
        let NetGroupKind::Poisson { ir, rates } = &self.net.groups[g].kind else {
            unreachable!("a Poisson group")
        };
        let real = self.real_t();
        let rate = match rates {
            None => self.at(&format!("g{g}_rates"), "sf_i"),
            Some(e) => {
                let names = |v: VarId| self.group_name(g, ir, v);
                Printer {
                    arena: &ir.arena,
                    dtype: self.real,
                    dialect: self.dialect,
                    var_name: &names,
                }
                .block(&[*e], "sf_r", w)?
                .remove(0)
            }
        };
        let uniform = match self.real {
            ElemType::F64 => "sf_uniform53",
            _ => "sf_uniform24",
        };
        writeln!(w, "const {real} sf_rate = {rate};")?;
        writeln!(
            w,
            "const bool sf_spike = ({real}) {uniform}(sf_seed, {}u, (uint32_t) sf_i, (uint32_t) sf_t_step, 0u) < sf_rate * {};",
            POISSON_GROUP_STREAM + g as u32,
            self.lit(self.net.dt)
        )?;
        writeln!(
            w,
            "{} += sf_spike ? 1 : 0;",
            self.at(&format!("g{g}_spike_count"), "sf_i")
        )?;
        writeln!(w, "sf_fire = sf_spike;")
    }

    /// A spike generator's emission for this step (Brian2's algorithm), by one thread; appends
    /// to the queue slot when there is one and leaves the count in `sf_emitted`.
    fn write_generator(&self, g: usize, w: &mut SourceWriter) -> fmt::Result {
        let NetGroupKind::SpikeGenerator {
            n_spikes,
            period_steps,
        } = self.net.groups[g].kind
        else {
            unreachable!("a spike generator")
        };
        let n = self.net.groups[g].n;
        let steps = |k: &str| self.at(&format!("g{g}_sg_step"), k);
        writeln!(w, "int32_t sf_bin = sf_t_step;")?;
        writeln!(
            w,
            "int32_t sf_next = {};",
            self.at(&format!("g{g}_sg_cursor"), "")
        )?;
        if let Some(period) = period_steps {
            writeln!(w, "sf_bin %= {period};")?;
            writeln!(
                w,
                "if (sf_next > 0 && sf_next <= {n_spikes} && {} >= sf_bin) sf_next = 0;",
                steps("sf_next - 1")
            )?;
        }
        writeln!(w, "if (sf_next < 0) sf_next = 0;")?;
        writeln!(w, "int32_t sf_emitted = 0;")?;
        w.block(
            format!(
                "while (sf_next < {n_spikes} && {} <= sf_bin)",
                steps("sf_next")
            ),
            |w| {
                writeln!(
                    w,
                    "const int32_t sf_i = {};",
                    self.at(&format!("g{g}_sg_index"), "sf_next")
                )?;
                writeln!(w, "sf_next += 1;")?;
                // A queue slot holds n spikes: stored spikes that Python would refuse (a
                // neuron twice in one step, in a state edited by hand) are dropped past that,
                // never written beyond the slot.
                writeln!(
                    w,
                    "if (sf_i < 0 || sf_i >= {n} || sf_emitted >= {n}) continue;"
                )?;
                writeln!(w, "{} += 1;", self.at(&format!("g{g}_spike_count"), "sf_i"))?;
                if self.plan.groups[g].depth > 0 {
                    writeln!(
                        w,
                        "{}[sf_emitted] = sf_i;",
                        self.queue_row(g, &self.slot(g, "0"))
                    )?;
                }
                writeln!(w, "sf_emitted += 1;")
            },
        )?;
        writeln!(w, "{} = sf_next;", self.at(&format!("g{g}_sg_cursor"), ""))
    }

    fn write_update_cuda(&self, w: &mut SourceWriter) -> fmt::Result {
        let tickets = self.plan.groups.iter().any(|g| g.ordered_compaction);
        let total_blocks: usize = self.net.groups.iter().map(update_blocks).sum();
        writeln!(w, "{}\n{{", self.cuda_signature(UPDATE_ENTRY, UPDATE_BLOCK))?;
        w.indented(|w| {
            writeln!(w, "const int32_t sf_b = (int32_t) blockIdx.y;")?;
            self.step_prologue(w)?;
            writeln!(w, "const int32_t sf_lane = (int32_t) (threadIdx.x & 31u);")?;
            if tickets {
                // Dynamic block ids: a block gets its id after every lower id was handed out, so
                // the look-back only ever waits on blocks that are running.
                writeln!(w, "__shared__ int32_t sf_vblock;")?;
                writeln!(
                    w,
                    "if (threadIdx.x == 0) sf_vblock = atomicAdd(&sf_w[{}], 1) - sf_s * {total_blocks};",
                    self.layout.work.tickets
                )?;
                writeln!(w, "__syncthreads();")?;
                writeln!(w, "const int32_t sf_vb = sf_vblock;")?;
            } else {
                writeln!(w, "const int32_t sf_vb = (int32_t) blockIdx.x;")?;
            }
            self.write_folded_after(w)?;
            self.write_update_phase(w)
        })?;
        w.write_str("}\n")
    }

    /// The update of virtual block `sf_vb` (a group's block of `SF_BLOCK` neurons, or a spike
    /// generator): what the update kernel runs once and the persistent kernel once per virtual
    /// block it owns. Needs `sf_b`, `sf_s`, the step prologue, `sf_lane` and `sf_vb`.
    fn write_update_phase(&self, w: &mut SourceWriter) -> fmt::Result {
        writeln!(
            w,
            "__shared__ int32_t sf_warp_spikes[{} / 32];",
            self.vblock_size()
        )?;
        writeln!(w, "__shared__ int32_t sf_block_base;")?;
        let mut start = 0usize;
        for g in 0..self.net.groups.len() {
            let end = start + self.vblocks(g);
            w.block(format!("if (sf_vb >= {start} && sf_vb < {end})"), |w| {
                self.write_update_block(g, start, w)
            })?;
            start = end;
        }
        Ok(())
    }

    /// One block of group g's update (its blocks start at virtual block `first`).
    fn write_update_block(&self, g: usize, first: usize, w: &mut SourceWriter) -> fmt::Result {
        let group = &self.net.groups[g];
        let gp = &self.plan.groups[g];
        if let NetGroupKind::SpikeGenerator { .. } = group.kind {
            return w.block("if (threadIdx.x == 0)", |w| {
                self.write_generator(g, w)?;
                if gp.depth > 0 {
                    writeln!(w, "{} = sf_emitted;", self.cursor(g, 0))?;
                }
                Ok(())
            });
        }
        writeln!(
            w,
            "const int64_t sf_i = (int64_t) (sf_vb - {first}) * {} + threadIdx.x;",
            self.vblock_size()
        )?;
        writeln!(w, "bool sf_fire = false;")?;
        w.block(format!("if (sf_i < {})", group.n), |w| match group.kind {
            NetGroupKind::Neuron { .. } => self.write_neuron(g, w),
            _ => self.write_poisson(g, w),
        })?;
        if gp.depth == 0 {
            return Ok(());
        }
        let row = self.queue_row(g, &self.slot(g, "0"));
        writeln!(
            w,
            "const unsigned sf_ballot = __ballot_sync(0xffffffffu, sf_fire);"
        )?;
        writeln!(
            w,
            "const int32_t sf_rank = __popc(sf_ballot & ((1u << sf_lane) - 1u));"
        )?;
        if !gp.ordered_compaction {
            if self.in_registers.get() {
                // The slots' spikes are delivered after every slot's update (`grid::registers`).
                return writeln!(w, "sf_ballots[sf_slot] = sf_ballot;");
            }
            return self.write_warp_spikes(g, w);
        }
        // Ordered compaction: a block-wide scan, then a decoupled look-back over the group's
        // earlier blocks (64-bit status words: tag = step + 1, flag 1 = aggregate, 2 = prefix).
        let blocks = self.vblocks(g);
        let status = self.layout.work.status;
        writeln!(
            w,
            "if (sf_lane == 0) sf_warp_spikes[threadIdx.x >> 5] = __popc(sf_ballot);"
        )?;
        writeln!(w, "__syncthreads();")?;
        w.block("if (threadIdx.x == 0)", |w| {
            writeln!(w, "int32_t sf_total = 0;")?;
            w.block(format!("for (int k = 0; k < {} / 32; ++k)", self.vblock_size()), |w| {
                writeln!(w, "const int32_t c = sf_warp_spikes[k];")?;
                writeln!(w, "sf_warp_spikes[k] = sf_total;")?;
                writeln!(w, "sf_total += c;")
            })?;
            writeln!(
                w,
                "unsigned long long* const sf_status = (unsigned long long*) (sf_w + {status});"
            )?;
            writeln!(
                w,
                "const unsigned long long sf_tag = ((unsigned long long) ((sf_s + 1) & 0x3fffffff)) << 34;"
            )?;
            writeln!(w, "const int32_t sf_lb = sf_vb - {first};")?;
            writeln!(w, "int32_t sf_prefix = 0;")?;
            w.block("if (sf_lb > 0)", |w| {
                writeln!(
                    w,
                    "atomicExch(&sf_status[sf_vb], sf_tag | (1ull << 32) | (unsigned) sf_total);"
                )?;
                w.block(format!("for (int32_t sf_k = sf_vb - 1; sf_k >= {first};)"), |w| {
                    writeln!(
                        w,
                        "const unsigned long long sf_word = *(volatile unsigned long long*) &sf_status[sf_k];"
                    )?;
                    writeln!(
                        w,
                        "if ((sf_word & ~0x3ffffffffull) != sf_tag || ((sf_word >> 32) & 3ull) == 0ull) continue;"
                    )?;
                    writeln!(w, "sf_prefix += (int32_t) (sf_word & 0xffffffffull);")?;
                    writeln!(w, "if (((sf_word >> 32) & 3ull) == 2ull) break;")?;
                    writeln!(w, "--sf_k;")
                })
            })?;
            writeln!(
                w,
                "atomicExch(&sf_status[sf_vb], sf_tag | (2ull << 32) | (unsigned) (sf_prefix + sf_total));"
            )?;
            writeln!(w, "sf_block_base = sf_prefix;")?;
            writeln!(
                w,
                "if (sf_lb == {}) {} = sf_prefix + sf_total;",
                blocks - 1,
                self.cursor(g, 0)
            )
        })?;
        writeln!(w, "__syncthreads();")?;
        writeln!(
            w,
            "if (sf_fire) {row}[sf_block_base + sf_warp_spikes[threadIdx.x >> 5] + sf_rank] = (int32_t) sf_i;"
        )
    }

    /// A warp's spikes of group g (`sf_ballot`, `sf_fire`, `sf_rank`, `sf_i` in scope) in an
    /// unordered compaction: warp-aggregated atomics, one atomicAdd per warp on the group's
    /// write cursor. (The one-barrier kernel's deliveries first, and its queue only in the
    /// launch's last step: see `grid::Gen::write_compaction`.)
    fn write_warp_spikes(&self, g: usize, w: &mut SourceWriter) -> fmt::Result {
        w.block("if (sf_ballot != 0u)", |w| {
            self.write_push(g, w)?;
            self.write_warp_compaction(g, w)
        })
    }

    /// A warp's spikes of group g (`sf_ballot` not 0, `sf_fire`, `sf_rank`, `sf_i` in scope)
    /// appended to its queue: one atomicAdd per warp on the write cursor (in the one-barrier
    /// kernel, in the launch's last step only: `grid::Gen::write_compaction`).
    fn write_warp_compaction(&self, g: usize, w: &mut SourceWriter) -> fmt::Result {
        let row = self.queue_row(g, &self.slot(g, "0"));
        self.write_compaction(w, |w| {
            writeln!(w, "const int32_t sf_leader = __ffs((int) sf_ballot) - 1;")?;
            writeln!(w, "int32_t sf_at = 0;")?;
            writeln!(
                w,
                "if (sf_lane == sf_leader) sf_at = atomicAdd(&{}, __popc(sf_ballot));",
                self.cursor(g, 0)
            )?;
            writeln!(w, "sf_at = __shfl_sync(0xffffffffu, sf_at, sf_leader);")?;
            writeln!(w, "if (sf_fire) {row}[sf_at + sf_rank] = (int32_t) sf_i;")
        })
    }

    // -- the delivery phase -------------------------------------------------------------------

    /// Whether a parallel projection has more than one presynaptic pathway: the segments then
    /// say which (`sf_seg_w`).
    fn several_parallel_pathways(&self) -> bool {
        self.segments
            .iter()
            .any(|(p, k, _)| self.segments[0].0 == *p && self.segments[0].1 != *k)
            || self
                .segments
                .windows(2)
                .any(|x| x[0].0 == x[1].0 && x[0].1 != x[1].1)
    }

    /// The printer of projection `p`'s synaptic expressions, its variables spelled by `names`
    /// (usually [`Gen::synapse_name`] at some event).
    fn synapse_printer<'b>(&'b self, p: usize, names: &'b dyn Fn(VarId) -> String) -> Printer<'b> {
        Printer {
            arena: &self.arenas[p],
            dtype: self.real,
            dialect: self.dialect,
            var_name: names,
        }
    }

    /// How projection p's expressions name their variables for one event.
    fn synapse_name(&self, p: usize, v: VarId, ev: &Event) -> String {
        let proj = &self.net.projections[p];
        let s = &proj.synapses;
        let sym = s.group.symbol(v);
        let real = self.real_t();
        match &sym.kind {
            SymbolKind::Param => self.at(&synapse_var_ident(p, v), ev.syn),
            SymbolKind::Neighbour(IndexOf::Pre, var) => self.group_value(proj.source, *var, ev.pre),
            SymbolKind::Neighbour(_, var) => self.group_value(
                proj.target,
                *var,
                &format!("({} + {})", proj.target_range.start, ev.post),
            ),
            SymbolKind::Index(IndexOf::Pre) => format!("(({real}) {})", ev.row),
            SymbolKind::Index(_) => format!("(({real}) {})", ev.post),
            SymbolKind::Count(IndexOf::Pre) => format!("(({real}) {})", proj.n_pre()),
            SymbolKind::Count(_) => format!("(({real}) {})", proj.n_post()),
            SymbolKind::Time => "sf_t".into(),
            other => unreachable!("{other:?} is not a synapse group's symbol"),
        }
    }

    /// The variable statement k of a pathway assigns, for one event.
    fn statement_target(&self, p: usize, pathway: usize, k: usize, ev: &Event) -> String {
        let st = self.net.projections[p].synapses.statements(pathway)[k];
        self.synapse_name(p, st.var, ev)
    }

    /// The new value of statement k of a pathway.
    fn new_value(&self, p: usize, pathway: usize, k: usize) -> ExprId {
        self.new_values[p][pathway][k]
    }

    /// Projection p's statements of a pathway for one event, one after another (`atomic`:
    /// additions to the target as atomic adds; `counted`: arrivals counted instead).
    fn write_statements(
        &self,
        p: usize,
        pathway: usize,
        mode: Delivery,
        ev: &Event,
        w: &mut SourceWriter,
    ) -> fmt::Result {
        let proj = &self.net.projections[p];
        let arena = &self.arenas[p];
        let names = |v: VarId| self.synapse_name(p, v, ev);
        let printer = Printer {
            arena,
            dtype: self.real,
            dialect: self.dialect,
            var_name: &names,
        };
        for (k, st) in proj.synapses.statements(pathway).iter().enumerate() {
            let target = self.statement_target(p, pathway, k, ev);
            match (mode, st.side, st.effect) {
                (Delivery::Counted, _, _) => {
                    let c = self
                        .counted
                        .iter()
                        .position(|x| *x == (p, pathway, k))
                        .expect("a counted statement");
                    writeln!(
                        w,
                        "atomicAdd(&sf_w[{} + {}], 1);",
                        self.layout.work.arrivals[c], ev.post
                    )?;
                }
                (Delivery::Atomic, Side::Post, Effect::Add(e)) => {
                    let text = printer.block(&[e], &format!("sf_q{k}_"), w)?.remove(0);
                    writeln!(w, "atomicAdd(&{target}, {text});")?;
                }
                _ => {
                    let text = printer
                        .block(&[self.new_value(p, pathway, k)], &format!("sf_q{k}_"), w)?
                        .remove(0);
                    writeln!(w, "{target} = {text};")?;
                }
            }
        }
        Ok(())
    }

    /// The synapses of spike `sf_pre` of projection p that its pathway `pathway` reaches with
    /// delay `delay` (a C expression): their bounds `sf_lo`, `sf_hi`, clamped to the synapses
    /// there are (the whole row for a homogeneous delay, the delay's bucket for per-synapse
    /// delays). Skips spikes outside the source range.
    fn write_row_bounds(
        &self,
        p: usize,
        pathway: usize,
        delay: &str,
        w: &mut SourceWriter,
    ) -> fmt::Result {
        let proj = &self.net.projections[p];
        let (a, b) = (proj.source_range.start, proj.source_range.end);
        writeln!(w, "if (sf_pre < {a} || sf_pre >= {b}) continue;")?;
        writeln!(w, "const int32_t sf_r = sf_pre - {a};")?;
        match proj.synapses.pathways[pathway].delay {
            DelayIr::Homogeneous { .. } => {
                let rows = self.row_offsets(p);
                writeln!(w, "int64_t sf_lo = {rows}[sf_r], sf_hi = {rows}[sf_r + 1];")?;
            }
            DelayIr::PerSynapse { max_steps, .. } => {
                let buckets = max_steps as usize + 1;
                writeln!(
                    w,
                    "const int64_t sf_bucket = (int64_t) sf_r * {buckets} + ({delay});"
                )?;
                writeln!(
                    w,
                    "int64_t sf_lo = in_p{p}_buckets[sf_bucket], sf_hi = in_p{p}_buckets[sf_bucket + 1];"
                )?;
            }
        }
        write_clamp(p, w)
    }

    /// `sf_count` and `sf_list`: group g's spikes of `delay` steps ago (a C expression).
    fn write_spike_list(&self, g: usize, delay: &str, w: &mut SourceWriter) -> fmt::Result {
        writeln!(w, "const int32_t sf_count = {};", self.spikes_of(g, delay))?;
        writeln!(
            w,
            "const int32_t* const sf_list = {};",
            self.queue_row(g, &self.slot(g, delay))
        )
    }

    /// One event's target index `sf_j`, checked.
    fn write_target(&self, p: usize, w: &mut SourceWriter) -> fmt::Result {
        let n_post = self.net.projections[p].n_post();
        writeln!(w, "const int32_t sf_j = in_p{p}_targets[sf_syn];")?;
        writeln!(w, "if (sf_j < 0 || sf_j >= {n_post}) continue;")
    }

    /// Every event of projection p's presynaptic pathway `pathway` in this step in Brian2's
    /// order (spike step, neuron index, synapse order): on one thread, or (`warp`) a row at a
    /// time by a warp.
    fn write_ordered(
        &self,
        p: usize,
        pathway: usize,
        warp: bool,
        w: &mut SourceWriter,
    ) -> fmt::Result {
        let proj = &self.net.projections[p];
        let g = proj.source;
        let delays = &self.plan.projections[p].delays[pathway];
        let (lo, hi) = (delays[0], *delays.last().expect("a delay"));
        let head = if lo == hi {
            format!("for (int32_t sf_d = {lo}; sf_d == {lo}; --sf_d)")
        } else {
            format!("for (int32_t sf_d = {hi}; sf_d >= {lo}; --sf_d)")
        };
        w.block(head, |w| {
            self.write_spike_list(g, "sf_d", w)?;
            w.block("for (int32_t sf_k = 0; sf_k < sf_count; ++sf_k)", |w| {
                writeln!(w, "const int32_t sf_pre = sf_list[sf_k];")?;
                self.write_row_bounds(p, pathway, "sf_d", w)?;
                if warp {
                    return self.write_row_by_warp(p, pathway, w);
                }
                w.block(
                    "for (int64_t sf_syn = sf_lo; sf_syn < sf_hi; ++sf_syn)",
                    |w| {
                        self.write_target(p, w)?;
                        self.write_statements(p, pathway, Delivery::Ordered, &EVENT, w)
                    },
                )
            })
        })
    }

    /// Projection p's postsynaptic pathway `pathway` on one thread: for each spike of the
    /// target group in this step (or the pathway's delay ago; ascending), the synapses onto that
    /// neuron through the by-post index (ascending creation order), each running the
    /// pathway's statements.
    fn write_post_pathway(&self, p: usize, pathway: usize, w: &mut SourceWriter) -> fmt::Result {
        let proj = &self.net.projections[p];
        let g = proj.target;
        let (a, n_post) = (proj.target_range.start, proj.n_post());
        let delay = proj.synapses.pathways[pathway].delay.max_steps();
        scope(w, |w| {
            self.write_spike_list(g, &delay.to_string(), w)?;
            w.block("for (int32_t sf_k = 0; sf_k < sf_count; ++sf_k)", |w| {
                writeln!(w, "const int32_t sf_j = sf_list[sf_k] - {a};")?;
                writeln!(w, "if (sf_j < 0 || sf_j >= {n_post}) continue;")?;
                self.write_synapses_onto(p, w, |w| {
                    self.write_statements(p, pathway, Delivery::Ordered, &EVENT, w)
                })
            })
        })
    }

    /// For each synapse of projection p onto target `sf_j` (within the target range), through
    /// the by-post index in creation order: `body` with `sf_syn`, `sf_r`, `sf_pre` in scope.
    fn write_synapses_onto(
        &self,
        p: usize,
        w: &mut SourceWriter,
        body: impl FnOnce(&mut SourceWriter) -> fmt::Result,
    ) -> fmt::Result {
        let proj = &self.net.projections[p];
        let (n_pre, start_pre) = (proj.n_pre(), proj.source_range.start);
        let rows = format!("in_p{p}_post_rows");
        writeln!(w, "int64_t sf_lo = {rows}[sf_j], sf_hi = {rows}[sf_j + 1];")?;
        write_clamp(p, w)?;
        w.block("for (int64_t sf_m = sf_lo; sf_m < sf_hi; ++sf_m)", |w| {
            writeln!(w, "const int64_t sf_syn = in_p{p}_post_syn[sf_m];")?;
            writeln!(w, "if (sf_syn < 0 || sf_syn >= sf_nsyn{p}) continue;")?;
            writeln!(w, "const int32_t sf_r = in_p{p}_sources[sf_syn];")?;
            writeln!(w, "if (sf_r < 0 || sf_r >= {n_pre}) continue;")?;
            writeln!(w, "const int32_t sf_pre = sf_r + {start_pre};")?;
            writeln!(w, "(void) sf_pre;")?;
            body(w)
        })
    }

    /// One row of a row-parallel ordered projection, 32 synapses at a time by a warp: each lane
    /// computes its synapse's increments; the lanes with one target are grouped
    /// (`__match_any_sync`) and the lowest adds the group's increments in lane (synapse) order.
    fn write_row_by_warp(&self, p: usize, pathway: usize, w: &mut SourceWriter) -> fmt::Result {
        let proj = &self.net.projections[p];
        let real = self.real_t();
        let names = |v: VarId| self.synapse_name(p, v, &EVENT);
        let printer = self.synapse_printer(p, &names);
        w.block("for (int64_t sf_base = sf_lo; sf_base < sf_hi; sf_base += 32)", |w| {
            writeln!(w, "const int64_t sf_syn = sf_base + sf_lane;")?;
            writeln!(w, "const int32_t sf_j = sf_syn < sf_hi ? in_p{p}_targets[sf_syn] : -1;")?;
            writeln!(w, "const bool sf_ok = sf_j >= 0 && sf_j < {};", proj.n_post())?;
            for (k, st) in proj.synapses.statements(pathway).iter().enumerate() {
                let target = self.statement_target(p, pathway, k, &EVENT);
                match (st.side, st.effect) {
                    (Side::Post, Effect::Add(e)) => scope(w, |w| {
                        writeln!(w, "{real} sf_v = 0;")?;
                        w.block("if (sf_ok)", |w| {
                            let text = printer.block(&[e], &format!("sf_q{k}_"), w)?.remove(0);
                            writeln!(w, "sf_v = {text};")
                        })?;
                        writeln!(w, "sf_row_values[threadIdx.x] = sf_v;")?;
                        writeln!(
                            w,
                            "const unsigned sf_group = __match_any_sync(0xffffffffu, sf_ok ? sf_j : -1 - sf_lane);"
                        )?;
                        writeln!(w, "__syncwarp();")?;
                        w.block("if (sf_ok && sf_lane == __ffs((int) sf_group) - 1)", |w| {
                            writeln!(w, "{real} sf_x = {target};")?;
                            writeln!(
                                w,
                                "for (unsigned sf_m = sf_group; sf_m != 0u; sf_m &= sf_m - 1u) sf_x = sf_x + sf_row_values[(threadIdx.x & ~31u) + (unsigned) (__ffs((int) sf_m) - 1)];"
                            )?;
                            writeln!(w, "{target} = sf_x;")
                        })?;
                        writeln!(w, "__syncwarp();")
                    })?,
                    _ => w.block("if (sf_ok)", |w| {
                        let text = printer
                            .block(&[self.new_value(p, pathway, k)], &format!("sf_q{k}_"), w)?
                            .remove(0);
                        writeln!(w, "{target} = {text};")
                    })?,
                }
            }
            Ok(())
        })
    }

    /// Each group's slot count stored and its next write cursor zeroed.
    fn write_queue_bookkeeping(&self, w: &mut SourceWriter) -> fmt::Result {
        self.write_queue_counts(0, "", true, w)
    }

    /// Each group's count of step `t - back` (`back` 0 or 1) stored from its write cursor, under
    /// `guard` (a C `if (...) ` or nothing), and (`zero`) the write cursor of step `t + 1`
    /// zeroed.
    fn write_queue_counts(
        &self,
        back: u32,
        guard: &str,
        zero: bool,
        w: &mut SourceWriter,
    ) -> fmt::Result {
        for (g, gp) in self.plan.groups.iter().enumerate() {
            if gp.depth == 0 {
                continue;
            }
            writeln!(
                w,
                "{guard}{} = {};",
                self.at(
                    &format!("g{g}_queue_count"),
                    &self.slot(g, &back.to_string())
                ),
                self.cursor(g, back)
            )?;
            if zero {
                writeln!(w, "{} = 0;", self.cursor(g, 1))?;
            }
        }
        Ok(())
    }

    fn write_deliver_cuda(&self, w: &mut SourceWriter) -> fmt::Result {
        let s = self.segments.len();
        // The segments' projection, source group and delay.
        if s > 0 {
            let mut tables = vec![
                (
                    "sf_seg_p",
                    self.segments
                        .iter()
                        .map(|(p, _, _)| *p as u64)
                        .collect::<Vec<_>>(),
                ),
                (
                    "sf_seg_g",
                    self.segments
                        .iter()
                        .map(|(p, _, _)| self.net.projections[*p].source as u64)
                        .collect(),
                ),
                (
                    "sf_seg_d",
                    self.segments
                        .iter()
                        .map(|(_, _, d)| u64::from(*d))
                        .collect(),
                ),
            ];
            if self.several_parallel_pathways() {
                tables.push((
                    "sf_seg_w",
                    self.segments.iter().map(|(_, k, _)| *k as u64).collect(),
                ));
            }
            for (name, values) in tables {
                let items: Vec<String> = values.iter().map(u64::to_string).collect();
                writeln!(
                    w,
                    "static __device__ const int32_t {name}[{s}] = {{{}}};",
                    items.join(", ")
                )?;
            }
        }
        self.write_ring_tables(w)?;
        writeln!(
            w,
            "{}\n{{",
            self.cuda_signature(DELIVER_ENTRY, DELIVER_BLOCK)
        )?;
        w.indented(|w| {
            writeln!(w, "const int32_t sf_b = (int32_t) blockIdx.y;")?;
            self.step_prologue(w)?;
            self.write_deliver_phase(w)
        })?;
        w.write_str("}\n")
    }

    /// The delivery of one step by every warp of the grid: the bookkeeping tasks, then the work
    /// items. What the delivery kernel runs, and the persistent kernel once per step. Needs
    /// `sf_b`, `sf_s` and the step prologue.
    fn write_deliver_phase(&self, w: &mut SourceWriter) -> fmt::Result {
        let tasks = self.tasks();
        let s = self.segments.len();
        writeln!(w, "const int32_t sf_lane = (int32_t) (threadIdx.x & 31u);")?;
        writeln!(
            w,
            "const int64_t sf_gwarp = ((int64_t) blockIdx.x * blockDim.x + threadIdx.x) >> 5;"
        )?;
        writeln!(
            w,
            "const int64_t sf_nwarps = ((int64_t) gridDim.x * blockDim.x) >> 5;"
        )?;
        if self.plan.projections.iter().any(|p| p.row_parallel) {
            writeln!(
                w,
                "__shared__ {} sf_row_values[{}];",
                self.real_t(),
                self.deliver_threads()
            )?;
        }
        w.block(
            format!(
                "for (int64_t sf_task = sf_gwarp; sf_task < {}; sf_task += sf_nwarps)",
                tasks.len()
            ),
            |w| {
                for (k, task) in tasks.iter().enumerate() {
                    w.block(format!("if (sf_task == {k})"), |w| match task {
                        Task::Queues => {
                            w.block("if (sf_lane == 0)", |w| self.write_queue_bookkeeping(w))
                        }
                        Task::Monitor(m) => self.write_monitor(*m, w),
                        Task::Ordered => {
                            for &(p, k) in &self.plan.pathways {
                                let pp = &self.plan.projections[p];
                                if pp.delivery != Delivery::Ordered {
                                    continue;
                                }
                                let kind = self.net.projections[p].synapses.pathways[k].kind;
                                if kind == Pathway::Post && self.plan.post_after_delivery {
                                    continue;
                                }
                                if kind == Pathway::Post {
                                    w.block("if (sf_lane == 0)", |w| {
                                        self.write_post_pathway(p, k, w)
                                    })?;
                                } else if pp.row_parallel {
                                    scope(w, |w| self.write_ordered(p, k, true, w))?;
                                } else {
                                    w.block("if (sf_lane == 0)", |w| {
                                        self.write_ordered(p, k, false, w)
                                    })?;
                                }
                                writeln!(w, "__syncwarp();")?;
                            }
                            Ok(())
                        }
                    })?;
                }
                Ok(())
            },
        )?;
        self.write_ring_emission(w)?;
        if s == 0 {
            return Ok(());
        }
        self.write_segment_scan(w)?;
        w.block(
            format!("for (int64_t sf_item = sf_gwarp; sf_item < sf_seg[{s}]; sf_item += sf_nwarps)"),
            |w| {
                writeln!(w, "int32_t sf_lo_k = 0, sf_hi_k = {s};")?;
                w.block("while (sf_hi_k - sf_lo_k > 1)", |w| {
                    writeln!(w, "const int32_t sf_mid = (sf_lo_k + sf_hi_k) / 2;")?;
                    writeln!(w, "if (sf_seg[sf_mid] <= sf_item) sf_lo_k = sf_mid; else sf_hi_k = sf_mid;")
                })?;
                writeln!(w, "const int32_t sf_k = sf_lo_k;")?;
                writeln!(w, "const int32_t sf_pos = (int32_t) (sf_item - sf_seg[sf_k]);")?;
                writeln!(w, "const int32_t sf_d = sf_seg_d[sf_k];")?;
                let mut parallel: Vec<(usize, usize)> =
                    self.segments.iter().map(|(p, k, _)| (*p, *k)).collect();
                parallel.dedup();
                for (p, k) in parallel {
                    let pp = &self.plan.projections[p];
                    let test = if self.several_parallel_pathways() {
                        format!("if (sf_seg_p[sf_k] == {p} && sf_seg_w[sf_k] == {k})")
                    } else {
                        format!("if (sf_seg_p[sf_k] == {p})")
                    };
                    w.block(test, |w| {
                        let g = self.net.projections[p].source;
                        // A loop of one pass, so that `continue` leaves the item.
                        w.block("do", |w| {
                            writeln!(
                                w,
                                "const int32_t sf_pre = {}[sf_pos];",
                                self.queue_row(g, &self.slot(g, "sf_d"))
                            )?;
                            self.write_row_bounds(p, k, "sf_d", w)?;
                            w.block(
                                "for (int64_t sf_syn = sf_lo + sf_lane; sf_syn < sf_hi; sf_syn += 32)",
                                |w| {
                                    self.write_target(p, w)?;
                                    self.write_statements(p, k, pp.delivery, &EVENT, w)
                                },
                            )
                        })?;
                        writeln!(w, "while (0);")
                    })?;
                }
                Ok(())
            },
        )
    }

    /// The delivery kernel's prefix over the segments' spike counts, in shared memory.
    fn write_segment_scan(&self, w: &mut SourceWriter) -> fmt::Result {
        let s = self.segments.len();
        writeln!(w, "extern __shared__ long long sf_seg[];")?;
        // `sf_used` threads hold `sf_per` segments each; thread 0 scans their sums.
        writeln!(
            w,
            "__shared__ long long sf_part[{}];",
            s.min(self.deliver_threads())
        )?;
        writeln!(
            w,
            "const int32_t sf_per = ({s} + (int32_t) blockDim.x - 1) / (int32_t) blockDim.x;"
        )?;
        writeln!(w, "const int32_t sf_used = ({s} + sf_per - 1) / sf_per;")?;
        writeln!(w, "const int32_t sf_k0 = (int32_t) threadIdx.x * sf_per;")?;
        writeln!(
            w,
            "const int32_t sf_k1 = sf_k0 + sf_per < {s} ? sf_k0 + sf_per : {s};"
        )?;
        writeln!(w, "long long sf_sum = 0;")?;
        w.block("for (int32_t sf_k = sf_k0; sf_k < sf_k1; ++sf_k)", |w| {
            writeln!(w, "const int32_t sf_d = sf_seg_d[sf_k];")?;
            writeln!(w, "int32_t sf_c = 0;")?;
            let sources: std::collections::BTreeSet<usize> = self
                .segments
                .iter()
                .map(|(p, _, _)| self.net.projections[*p].source)
                .collect();
            for g in sources {
                writeln!(
                    w,
                    "if (sf_seg_g[sf_k] == {g}) sf_c = {};",
                    self.spikes_of(g, "sf_d")
                )?;
            }
            writeln!(w, "sf_seg[sf_k + 1] = sf_c;")?;
            writeln!(w, "sf_sum += sf_c;")
        })?;
        writeln!(
            w,
            "if ((int32_t) threadIdx.x < sf_used) sf_part[threadIdx.x] = sf_sum;"
        )?;
        writeln!(w, "__syncthreads();")?;
        w.block("if (threadIdx.x == 0)", |w| {
            writeln!(w, "long long sf_run = 0;")?;
            w.block("for (int32_t k = 0; k < sf_used; ++k)", |w| {
                writeln!(w, "const long long x = sf_part[k];")?;
                writeln!(w, "sf_part[k] = sf_run;")?;
                writeln!(w, "sf_run += x;")
            })?;
            writeln!(w, "sf_seg[0] = 0;")
        })?;
        writeln!(w, "__syncthreads();")?;
        w.block("if ((int32_t) threadIdx.x < sf_used)", |w| {
            writeln!(w, "long long sf_run = sf_part[threadIdx.x];")?;
            w.block("for (int32_t sf_k = sf_k0; sf_k < sf_k1; ++sf_k)", |w| {
                writeln!(w, "sf_run += sf_seg[sf_k + 1];")?;
                writeln!(w, "sf_seg[sf_k + 1] = sf_run;")
            })
        })?;
        writeln!(w, "__syncthreads();")
    }

    /// The spike list of this step of monitor m's group (`sf_count`, `sf_list`).
    fn write_monitor_list(&self, m: usize, w: &mut SourceWriter) -> fmt::Result {
        let g = self.net.monitors[m].group();
        writeln!(w, "const int32_t sf_count = {};", self.cursor(g, 0))?;
        writeln!(
            w,
            "const int32_t* const sf_list = {};",
            self.queue_row(g, &self.slot(g, "0"))
        )
    }

    /// A spike monitor stores spike `sf_i` (in its range) at position `at`, when there is room.
    fn write_monitor_store(
        &self,
        m: usize,
        range: &std::ops::Range<usize>,
        capacity: usize,
        at: &str,
        w: &mut SourceWriter,
    ) -> fmt::Result {
        writeln!(
            w,
            "out_m{m}_i[(int64_t) sf_b * {capacity} + {at}] = sf_i - {};",
            range.start
        )?;
        writeln!(
            w,
            "out_m{m}_step[(int64_t) sf_b * {capacity} + {at}] = sf_t_step;"
        )
    }

    /// A spike monitor's count and overflow after seeing `sf_seen` spikes in the run.
    fn write_monitor_totals(&self, m: usize, capacity: usize, w: &mut SourceWriter) -> fmt::Result {
        writeln!(
            w,
            "out_m{m}_count[sf_b] = sf_seen < {capacity} ? sf_seen : {capacity};"
        )?;
        writeln!(
            w,
            "out_m{m}_dropped[sf_b] = sf_seen < {capacity} ? 0 : sf_seen - {capacity};"
        )
    }

    /// A rate monitor's value of this step from `sf_in` spikes in its range.
    fn rate_value(&self, m: usize, range: &std::ops::Range<usize>) -> String {
        format!(
            "out_m{m}_rate[(int64_t) sf_b * sf_steps + sf_s] = ({}) sf_in / {};",
            self.real_t(),
            self.lit(range.len() as f64 * self.net.dt)
        )
    }

    /// A spike or rate monitor's work for this step: by one warp (CUDA), or a loop (C).
    fn write_monitor(&self, m: usize, w: &mut SourceWriter) -> fmt::Result {
        let mon = &self.net.monitors[m];
        let cuda = self.dialect == Dialect::Cuda;
        self.write_monitor_list(m, w)?;
        match mon {
            MonitorIr::Spike {
                range, capacity, ..
            } => {
                writeln!(
                    w,
                    "int32_t sf_seen = out_m{m}_count[sf_b] + out_m{m}_dropped[sf_b];"
                )?;
                let inside = format!("sf_i >= {} && sf_i < {}", range.start, range.end);
                if cuda {
                    w.block("for (int32_t sf_k0 = 0; sf_k0 < sf_count; sf_k0 += 32)", |w| {
                        writeln!(w, "const int32_t sf_k = sf_k0 + sf_lane;")?;
                        writeln!(w, "const int32_t sf_i = sf_k < sf_count ? sf_list[sf_k] : -1;")?;
                        writeln!(w, "const bool sf_in = {inside};")?;
                        writeln!(w, "const unsigned sf_ballot = __ballot_sync(0xffffffffu, sf_in);")?;
                        writeln!(
                            w,
                            "const int32_t sf_at = sf_seen + __popc(sf_ballot & ((1u << sf_lane) - 1u));"
                        )?;
                        w.block(format!("if (sf_in && sf_at < {capacity})"), |w| {
                            self.write_monitor_store(m, range, *capacity, "sf_at", w)
                        })?;
                        writeln!(w, "sf_seen += __popc(sf_ballot);")
                    })?;
                    w.block("if (sf_lane == 0)", |w| {
                        self.write_monitor_totals(m, *capacity, w)
                    })
                } else {
                    w.block("for (int32_t sf_k = 0; sf_k < sf_count; ++sf_k)", |w| {
                        writeln!(w, "const int32_t sf_i = sf_list[sf_k];")?;
                        writeln!(w, "if (!({inside})) continue;")?;
                        w.block(format!("if (sf_seen < {capacity})"), |w| {
                            self.write_monitor_store(m, range, *capacity, "sf_seen", w)
                        })?;
                        writeln!(w, "sf_seen += 1;")
                    })?;
                    self.write_monitor_totals(m, *capacity, w)
                }
            }
            MonitorIr::Rate { range, .. } => {
                let full = range.start == 0 && range.end == self.net.groups[mon.group()].n;
                writeln!(w, "int32_t sf_in = 0;")?;
                let (first, stride) = if cuda { ("sf_lane", "32") } else { ("0", "1") };
                if full {
                    writeln!(w, "sf_in = sf_count;")?;
                } else {
                    w.block(
                        format!("for (int32_t sf_k = {first}; sf_k < sf_count; sf_k += {stride})"),
                        |w| {
                            writeln!(
                                w,
                                "sf_in += sf_list[sf_k] >= {} && sf_list[sf_k] < {} ? 1 : 0;",
                                range.start, range.end
                            )
                        },
                    )?;
                    if cuda {
                        w.block("for (int sf_o = 16; sf_o > 0; sf_o >>= 1)", |w| {
                            writeln!(w, "sf_in += __shfl_down_sync(0xffffffffu, sf_in, sf_o);")
                        })?;
                    }
                }
                let store = self.rate_value(m, range);
                if cuda {
                    writeln!(w, "if (sf_lane == 0) {store}")
                } else {
                    writeln!(w, "{store}")
                }
            }
            MonitorIr::State { .. } => unreachable!("state monitors record in the update"),
        }
    }

    // -- the after-delivery phase -------------------------------------------------------------

    /// The after-delivery work of neuron `sf_i` of group g: counted arrivals, Poisson inputs,
    /// the late reset.
    fn write_after_neuron(&self, g: usize, w: &mut SourceWriter) -> fmt::Result {
        let group = &self.net.groups[g];
        let Some(code) = self.groups[g].as_ref() else {
            return Ok(());
        };
        let ir = group.neuron_ir().expect("a neuron group");
        let real = self.real_t();
        self.write_ring_arrivals(g, w)?;
        for (c, &(p, pathway, k)) in self.counted.iter().enumerate() {
            let proj = &self.net.projections[p];
            if proj.target != g {
                continue;
            }
            let st = proj.synapses.statements(pathway)[k];
            let Effect::Add(value) = st.effect else {
                unreachable!("counted statements add")
            };
            let (a, b) = (proj.target_range.start, proj.target_range.end);
            let at = self.layout.work.arrivals[c];
            w.block(format!("if (sf_i >= {a} && sf_i < {b})"), |w| {
                writeln!(w, "const int32_t sf_arrived = sf_w[{at} + sf_i - {a}];")?;
                w.block("if (sf_arrived != 0)", |w| {
                    let names = |v: VarId| self.synapse_name(p, v, &EVENT);
                    let text = self
                        .synapse_printer(p, &names)
                        .block(&[value], "sf_c", w)?
                        .remove(0);
                    let target = self.statement_target(
                        p,
                        pathway,
                        k,
                        &Event {
                            post: &format!("(sf_i - {a})"),
                            ..EVENT
                        },
                    );
                    writeln!(w, "{target} = {target} + ({real}) sf_arrived * ({text});")?;
                    writeln!(w, "sf_w[{at} + sf_i - {a}] = 0;")
                })
            })?;
        }
        for (q, input) in self.net.poisson_inputs.iter().enumerate() {
            if input.target != g {
                continue;
            }
            let (a, b) = (input.target_range.start, input.target_range.end);
            w.block(format!("if (sf_i >= {a} && sf_i < {b})"), |w| {
                writeln!(
                    w,
                    "const uint32_t sf_events = sf_binomial(sf_seed, {}u, (uint32_t) (sf_i - {a}), (uint32_t) sf_t_step, {}u, {:?});",
                    POISSON_INPUT_STREAM + q as u32,
                    input.n,
                    input.p
                )?;
                w.block("if (sf_events != 0u)", |w| {
                    let names = |v: VarId| match ir.symbol(v).kind {
                        SymbolKind::State | SymbolKind::Param | SymbolKind::PerNeuronConstant => {
                            self.group_value(g, v, "sf_i")
                        }
                        _ => self.group_name(g, ir, v),
                    };
                    let text = Printer {
                        arena: &input.arena,
                        dtype: self.real,
                        dialect: self.dialect,
                        var_name: &names,
                    }
                    .block(&[input.weight], "sf_pw", w)?
                    .remove(0);
                    let target = self.at(&group_var_ident(g, input.var), "sf_i");
                    writeln!(w, "{target} = {target} + ({real}) sf_events * ({text});")
                })
            })?;
        }
        for (p, k) in self.post_pathways_after(g) {
            self.write_post_pathway_of_neuron(p, k, w)?;
        }
        if let (Some(reset), Some(Some(at))) = (&code.reset, self.layout.work.spiked.get(g)) {
            w.block(format!("if (sf_w[{at} + sf_i] != 0)"), |w| {
                self.write_loads(g, ir, w)?;
                let names = |v: VarId| self.group_name(g, ir, v);
                let roots: Vec<ExprId> = reset.assigned.iter().map(|(_, e)| *e).collect();
                let texts = Printer {
                    arena: &reset.arena,
                    dtype: self.real,
                    dialect: self.dialect,
                    var_name: &names,
                }
                .block(&roots, "sf_z", w)?;
                let vars: Vec<VarId> = reset.assigned.iter().map(|(v, _)| *v).collect();
                for (v, text) in vars.iter().zip(&texts) {
                    writeln!(w, "x{} = {text};", v.0)?;
                }
                self.write_stores(g, ir, &vars, w)
            })?;
        }
        Ok(())
    }

    /// The postsynaptic pathways onto group g that its neurons' threads run after the
    /// deliveries (CUDA, [`NetworkPlan::post_after_delivery`]), in Brian2's order.
    fn post_pathways_after(&self, g: usize) -> Vec<(usize, usize)> {
        if self.dialect != Dialect::Cuda || !self.plan.post_after_delivery {
            return Vec::new();
        }
        self.plan
            .pathways
            .iter()
            .copied()
            .filter(|&(p, k)| {
                let proj = &self.net.projections[p];
                proj.target == g && proj.synapses.pathways[k].kind == Pathway::Post
            })
            .collect()
    }

    /// Projection p's postsynaptic pathway `pathway` for neuron `sf_i` of its target group, on
    /// the neuron's thread: when the neuron is in the spike list of the pathway's delay ago (a
    /// binary search: the target's spikes are compacted in ascending order), the synapses onto
    /// it in creation order (the by-post index). Each synapse has one target, so the threads
    /// never touch one synapse, and the pathway touches no other neuron.
    fn write_post_pathway_of_neuron(
        &self,
        p: usize,
        pathway: usize,
        w: &mut SourceWriter,
    ) -> fmt::Result {
        let proj = &self.net.projections[p];
        let g = proj.target;
        let (a, b) = (proj.target_range.start, proj.target_range.end);
        let delay = proj.synapses.pathways[pathway]
            .delay
            .max_steps()
            .to_string();
        w.block(format!("if (sf_i >= {a} && sf_i < {b})"), |w| {
            writeln!(w, "const int32_t sf_count = {};", self.spikes_of(g, &delay))?;
            writeln!(
                w,
                "const int32_t* const sf_list = {};",
                self.queue_row(g, &self.slot(g, &delay))
            )?;
            writeln!(w, "int32_t sf_lo_k = 0, sf_hi_k = sf_count;")?;
            w.block("while (sf_lo_k < sf_hi_k)", |w| {
                writeln!(w, "const int32_t sf_mid = (sf_lo_k + sf_hi_k) / 2;")?;
                writeln!(
                    w,
                    "if (sf_list[sf_mid] < sf_i) sf_lo_k = sf_mid + 1; else sf_hi_k = sf_mid;"
                )
            })?;
            w.block("if (sf_lo_k < sf_count && sf_list[sf_lo_k] == sf_i)", |w| {
                writeln!(w, "const int32_t sf_j = (int32_t) sf_i - {a};")?;
                self.write_synapses_onto(p, w, |w| {
                    self.write_statements(p, pathway, Delivery::Ordered, &EVENT, w)
                })
            })
        })
    }

    /// Whether group g has after-delivery work.
    fn has_after(&self, g: usize) -> bool {
        !self.post_pathways_after(g).is_empty()
            || self.takes_rings(g)
            || self.plan.groups[g].late_reset
            || self.net.poisson_inputs.iter().any(|i| i.target == g)
            || self
                .counted
                .iter()
                .any(|(p, _, _)| self.net.projections[*p].target == g)
    }

    fn write_after_cuda(&self, w: &mut SourceWriter) -> fmt::Result {
        writeln!(w, "{}\n{{", self.cuda_signature(AFTER_ENTRY, UPDATE_BLOCK))?;
        w.indented(|w| {
            writeln!(w, "const int32_t sf_b = (int32_t) blockIdx.y;")?;
            self.step_prologue(w)?;
            writeln!(w, "const int32_t sf_vb = (int32_t) blockIdx.x;")?;
            self.write_after_phase(w)
        })?;
        w.write_str("}\n")
    }

    /// The after-delivery work of virtual block `sf_vb` (the update's blocks, each neuron on the
    /// thread that updated it). Needs `sf_b`, `sf_s`, the step prologue and `sf_vb`.
    fn write_after_phase(&self, w: &mut SourceWriter) -> fmt::Result {
        let mut start = 0usize;
        for (g, group) in self.net.groups.iter().enumerate() {
            let end = start + self.vblocks(g);
            if self.has_after(g) {
                w.block(format!("if (sf_vb >= {start} && sf_vb < {end})"), |w| {
                    writeln!(
                        w,
                        "const int64_t sf_i = (int64_t) (sf_vb - {start}) * {} + threadIdx.x;",
                        self.vblock_size()
                    )?;
                    w.block(format!("if (sf_i < {})", group.n), |w| {
                        self.write_after_neuron(g, w)
                    })
                })?;
            }
            start = end;
        }
        Ok(())
    }

    // -- the persistent kernel ----------------------------------------------------------------

    /// The persistent kernel: steps `[sf_s0, sf_s1)` of the run in one launch, the phases of each
    /// step printed by the same functions as the per-step kernels, with the virtual blocks of the
    /// update and after-delivery phases looped over by the physical blocks (every block makes
    /// the same number of passes, so `__syncthreads` inside a phase stays legal) and the warps
    /// of the grid delivering. Between the update and the delivery, and after the delivery, a
    /// barrier: `__syncthreads` when the kernel runs as one block per member, the grid barrier
    /// of [`Gen::write_grid_sync`] when it runs as a cooperative grid. The after-delivery phase
    /// of step k and the update of step k + 1 need none: each neuron is on the same thread in
    /// both, and what either reads of other threads' work (the queue, the arrivals) was written
    /// before the barrier after step k's delivery.
    fn write_persistent_cuda(&self, w: &mut SourceWriter) -> fmt::Result {
        self.write_grid_sync(w)?;
        for resident in [false, true] {
            let block = if resident {
                resident_block(self.net)
            } else {
                PERSISTENT_BLOCK
            };
            writeln!(w)?;
            self.printing.set(Printing::Persistent { block, resident });
            let push = !resident && one_barrier(self.net, self.plan);
            self.pushing.set(push);
            let written = if push {
                self.write_one_barrier_kernel(block, w)
            } else {
                self.write_persistent_kernel(block, resident, w)
            };
            self.pushing.set(false);
            self.printing.set(Printing::PerStep);
            written?;
        }
        if balanced_kernel(self.net, self.plan, PERSISTENT_BLOCK) {
            writeln!(w)?;
            self.printing.set(Printing::Persistent {
                block: PERSISTENT_BLOCK,
                resident: false,
            });
            self.pushing.set(true);
            self.balanced.set(true);
            let written = self.write_one_barrier_kernel(PERSISTENT_BLOCK, w);
            self.balanced.set(false);
            self.pushing.set(false);
            self.printing.set(Printing::PerStep);
            written?;
        }
        if let Some(shape) = cluster_shape(self.net, self.plan) {
            writeln!(w)?;
            self.printing.set(Printing::Persistent {
                block: shape.block,
                resident: false,
            });
            self.pushing.set(true);
            self.cluster.set(true);
            let written = self.write_cluster_kernel(shape, w);
            self.cluster.set(false);
            self.pushing.set(false);
            self.printing.set(Printing::PerStep);
            written?;
        }
        Ok(())
    }

    /// The persistent kernel with blocks of `block` threads; `resident`: the one-block kernel
    /// with the groups' state in shared memory ([`RESIDENT_ENTRY`]), which loads it at the start
    /// of the launch, stores it at the end and synchronises with `__syncthreads` alone.
    fn write_persistent_kernel(
        &self,
        block: usize,
        resident: bool,
        w: &mut SourceWriter,
    ) -> fmt::Result {
        let total_blocks: usize = (0..self.net.groups.len()).map(|g| self.vblocks(g)).sum();
        let ordered = self.plan.groups.iter().any(|g| g.ordered_compaction);
        let vb_loop = format!(
            "for (int32_t sf_vb = (int32_t) blockIdx.x; sf_vb < {total_blocks}; sf_vb += (int32_t) gridDim.x)"
        );
        let entry = if resident {
            RESIDENT_ENTRY
        } else {
            PERSISTENT_ENTRY
        };
        writeln!(
            w,
            "{}\n{{",
            self.cuda_signature_with(
                entry,
                block,
                &PERSISTENT_SCALARS[..3 + usize::from(!resident)]
            )
        )?;
        let barrier = |w: &mut SourceWriter| {
            if resident {
                writeln!(w, "__syncthreads();")
            } else {
                writeln!(w, "sf_target += gridDim.x;")?;
                writeln!(w, "sf_grid_sync(sf_barrier, sf_target, sf_group_blocks);")
            }
        };
        w.indented(|w| {
            writeln!(w, "const int32_t sf_b = (int32_t) blockIdx.y;")?;
            if resident {
                self.write_resident_copies(true, w)?;
            } else {
                let per_step = format!("{}ull * ", barriers_per_step(self.plan));
                self.write_barrier_start(&per_step, w)?;
            }
            w.block("for (int32_t sf_s = sf_s0; sf_s < sf_s1; ++sf_s)", |w| {
                self.write_persistent_sums(w)?;
                scope(w, |w| {
                    self.step_prologue(w)?;
                    writeln!(w, "const int32_t sf_lane = (int32_t) (threadIdx.x & 31u);")?;
                    w.block(&vb_loop, |w| {
                        self.write_update_phase(w)?;
                        if ordered {
                            // The next pass rewrites the compaction's shared words.
                            writeln!(w, "__syncthreads();")?;
                        }
                        Ok(())
                    })
                })?;
                barrier(w)?;
                self.write_persistent_clock_driven(w)?;
                scope(w, |w| {
                    self.step_prologue(w)?;
                    self.write_deliver_phase(w)
                })?;
                barrier(w)?;
                if self.plan.after_delivery {
                    scope(w, |w| {
                        self.step_prologue(w)?;
                        w.block(&vb_loop, |w| self.write_after_phase(w))
                    })?;
                }
                Ok(())
            })?;
            if resident {
                writeln!(w, "__syncthreads();")?;
                self.write_resident_copies(false, w)?;
            }
            Ok(())
        })?;
        w.write_str("}\n")
    }

    /// The resident kernel's state copies: `load` (at the start: the pointers into dynamic
    /// shared memory, every resident buffer and the member's work words copied in, then a
    /// `__syncthreads`), or the copies back to global memory at the end.
    fn write_resident_copies(&self, load: bool, w: &mut SourceWriter) -> fmt::Result {
        let r = &self.resident;
        let words = self.layout.work.resident_words();
        if load {
            writeln!(w, "extern __shared__ long long sf_dynamic[];")?;
            for b in &r.buffers {
                let t = b.elem.c_type();
                writeln!(
                    w,
                    "{t}* const sf_r_{} = ({t}*) ((char*) sf_dynamic + {});",
                    b.ident, b.offset
                )?;
            }
            writeln!(
                w,
                "int32_t* const sf_r_work = (int32_t*) ((char*) sf_dynamic + {});",
                r.work
            )?;
        }
        // (shared, global, elements, a member's stride when batched): the inputs are copied in
        // only; the work words are the first `words` of a member's `layout.work.words` (the
        // grid barrier, the accumulators and the rings stay in global memory).
        let copies = (r.buffers.iter())
            .filter(|b| load || b.written)
            .map(|b| {
                let global = if b.written { "out" } else { "in" };
                let name = format!("{global}_{}", b.ident);
                (
                    format!("sf_r_{}", b.ident),
                    name,
                    b.elems,
                    b.written.then_some(b.elems),
                )
            })
            .chain([(
                "sf_r_work".to_owned(),
                "sf_work".to_owned(),
                words,
                Some(self.layout.work.words),
            )]);
        for (shared, global, elems, stride) in copies {
            let global = match stride {
                Some(stride) => format!("{global}[(int64_t) sf_b * {stride} + sf_k]"),
                None => format!("{global}[sf_k]"),
            };
            let shared = format!("{shared}[sf_k]");
            let (to, from) = if load {
                (shared, global)
            } else {
                (global, shared)
            };
            writeln!(
                w,
                "for (int32_t sf_k = (int32_t) threadIdx.x; sf_k < {elems}; sf_k += (int32_t) blockDim.x) {to} = {from};"
            )?;
        }
        if load {
            writeln!(w, "__syncthreads();")?;
        }
        Ok(())
    }

    // -- the C dialect ------------------------------------------------------------------------

    fn write_c(&self, w: &mut SourceWriter) -> fmt::Result {
        writeln!(
            w,
            "/* Runs batch members [sf_b0, sf_b1) for dims[0] steps; dims[1 + p] = projection p's synapses. */"
        )?;
        writeln!(
            w,
            "void {C_ENTRY}(int64_t sf_b0, int64_t sf_b1, const int64_t* sf_dims, void* const* sf_in, void* const* sf_out, int32_t* sf_work)\n{{"
        )?;
        w.indented(|w| {
            writeln!(w, "const int32_t sf_steps = (int32_t) sf_dims[0];")?;
            for p in 0..self.net.projections.len() {
                writeln!(w, "const int64_t sf_nsyn{p} = sf_dims[{}];", p + 1)?;
            }
            for (k, a) in self.layout.inputs.iter().enumerate() {
                let t = a.elem.c_type();
                writeln!(
                    w,
                    "const {t}* restrict in_{} = (const {t}*) sf_in[{k}];",
                    a.ident
                )?;
            }
            for (k, a) in self.layout.outputs.iter().enumerate() {
                let t = a.elem.c_type();
                writeln!(w, "{t}* restrict out_{} = ({t}*) sf_out[{k}];", a.ident)?;
            }
            w.block("for (int64_t sf_bl = sf_b0; sf_bl < sf_b1; ++sf_bl)", |w| {
                writeln!(w, "const int32_t sf_b = (int32_t) sf_bl;")?;
                w.block("for (int32_t sf_s = 0; sf_s < sf_steps; ++sf_s)", |w| {
                    self.step_prologue(w)?;
                    self.write_sums_phase(w)?;
                    self.write_c_update(w)?;
                    self.write_clock_driven_phase(w)?;
                    self.write_queue_bookkeeping(w)?;
                    for (m, mon) in self.net.monitors.iter().enumerate() {
                        if !matches!(mon, MonitorIr::State { .. }) {
                            scope(w, |w| self.write_monitor(m, w))?;
                        }
                    }
                    for &(p, k) in &self.plan.pathways {
                        match self.net.projections[p].synapses.pathways[k].kind {
                            Pathway::Pre => self.write_ordered(p, k, false, w)?,
                            Pathway::Post => self.write_post_pathway(p, k, w)?,
                        }
                    }
                    for (g, group) in self.net.groups.iter().enumerate() {
                        if self.has_after(g) {
                            w.block(
                                format!("for (int64_t sf_i = 0; sf_i < {}; ++sf_i)", group.n),
                                |w| self.write_after_neuron(g, w),
                            )?;
                        }
                    }
                    Ok(())
                })
            })
        })?;
        w.write_str("}\n")
    }

    /// The update phase in C: every group's neurons in order, spikes appended in ascending order.
    fn write_c_update(&self, w: &mut SourceWriter) -> fmt::Result {
        for (g, group) in self.net.groups.iter().enumerate() {
            let gp = &self.plan.groups[g];
            scope(w, |w| {
                if let NetGroupKind::SpikeGenerator { .. } = group.kind {
                    self.write_generator(g, w)?;
                    if gp.depth > 0 {
                        writeln!(w, "{} = sf_emitted;", self.cursor(g, 0))?;
                    }
                    return Ok(());
                }
                writeln!(w, "int32_t sf_found = 0;")?;
                w.block(
                    format!("for (int64_t sf_i = 0; sf_i < {}; ++sf_i)", group.n),
                    |w| {
                        writeln!(w, "bool sf_fire = false;")?;
                        match group.kind {
                            NetGroupKind::Neuron { .. } => self.write_neuron(g, w)?,
                            _ => self.write_poisson(g, w)?,
                        }
                        if gp.depth > 0 {
                            w.block("if (sf_fire)", |w| {
                                writeln!(
                                    w,
                                    "{}[sf_found] = (int32_t) sf_i;",
                                    self.queue_row(g, &self.slot(g, "0"))
                                )?;
                                writeln!(w, "sf_found += 1;")
                            })?;
                        }
                        Ok(())
                    },
                )?;
                if gp.depth > 0 {
                    writeln!(w, "{} = sf_found;", self.cursor(g, 0))?;
                }
                Ok(())
            })?;
        }
        Ok(())
    }
}

/// Synapse bounds `sf_lo`, `sf_hi` of projection p clamped to the synapses there are.
fn write_clamp(p: usize, w: &mut SourceWriter) -> fmt::Result {
    writeln!(w, "if (sf_lo < 0) sf_lo = 0;")?;
    writeln!(w, "if (sf_hi > sf_nsyn{p}) sf_hi = sf_nsyn{p};")
}

/// A block of its own: `{`, `body` one level deeper, `}`.
fn scope(w: &mut SourceWriter, body: impl FnOnce(&mut SourceWriter) -> fmt::Result) -> fmt::Result {
    writeln!(w, "{{")?;
    w.indented(body)?;
    writeln!(w, "}}")
}

/// The first index, when `list` is `first, first + 1, ...`.
fn contiguous(list: &[usize]) -> Option<usize> {
    let first = *list.first()?;
    list.iter()
        .enumerate()
        .all(|(k, i)| *i == first + k)
        .then_some(first)
}
