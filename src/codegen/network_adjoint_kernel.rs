//! The adjoint (reverse-time) kernel of a network: one segment of a run, backwards
//! ([`crate::step::network_adjoint`] says what one step's adjoint is).
//!
//! As for a neuron group (`adjoint_kernel`), the forward pass keeps the network's state every
//! `k` steps; the backward pass calls this kernel for each segment from the last, with the
//! segment's checkpoint: memory `O(N (steps/k + k))`. The kernel has three parts:
//!
//! 1. **Recomputation** from the checkpoint, one grid barrier a step: each neuron's thread
//!    completes step `s - 1` (its new state from the values at its start and `Δ`, what the
//!    synapses delivered in it: the DAG's `next_state`), then computes step `s`'s
//!    refractoriness and spike and adds the spike's increments to `Δ` of the steps it arrives
//!    at within the segment (atomically; on CUDA the warp delivers its lanes' spikes one after
//!    another, its lanes sharing each spike's row); spikes from before the segment arrive from
//!    the checkpoint's spike queues, added first. It keeps every step's start values, spikes,
//!    refractoriness and `Δ` (`O(N k)` scratch).
//! 2. The adjoints of what was delivered in the segment's last step.
//! 3. **Backwards**, one grid barrier a step, a warp a neuron: the neuron gathers its spike's
//!    cotangent from its own synapses (the transposed propagation as a pull: `sum_s e(w_s)
//!    a_Δ(j_s, t + D_s)`, its lanes sharing the row; where it spiked, its synapses' weights'
//!    gradients), runs its step adjoint, then computes the adjoints of what was delivered to it
//!    a step earlier (from the adjoints just computed, in its lanes' registers), which the next
//!    step's gathers read. Every value of its own that the step reads (recomputed states of
//!    both steps, `Δ`, cotangents) is loaded before the gathers, so that a step waits on one
//!    round of loads besides the gathers'. A source writes only its own
//!    synapses' gradients and its own adjoints: no atomic addition but a shared weight's (its
//!    lanes' sum, added by lane 0).
//!
//! **Warp-a-neuron variant** (CUDA, [`FAST_VARIANTS`]; a kernel of its own, for a grid with a
//! warp for every neuron of the largest group): warp `sf_wi` owns neuron `sf_wi` of each
//! group. Record mode's deliveries become a warp a spiking neuron ([`FAST_DELIVERIES`]), and
//! the walk back holds the neuron for the segment ([`FAST_WALK`]): its lanes keep its first
//! synapses' targets and increments ([`GATHER_SLOTS`] a lane) and its adjoints in registers, so
//! that a step's gather is one round of loads (the adjoints of its targets) instead of three
//! dependent ones (row ends, targets, adjoints) and nothing is stored but the history.
//!
//! The adjoints of what was delivered live in a history of `2 + longest delay` steps per group
//! and variable, carried from segment to segment (the spikes of a segment read the adjoints of
//! later steps; one slot is written while the others are read). The C dialect runs the same
//! parts on one thread (a warp is one lane); its entry has the C entries' signature
//! (`sf_start`, `sf_end` unused). The CUDA dialect runs on a cooperative grid (as many blocks
//! of [`CUDA_BLOCK`] threads as [`cuda_threads`] asks and the device holds at once): every
//! phase is a grid-stride loop (a thread a neuron, or a warp a neuron, or a thread a step and
//! queue entry), phases are separated by the kernel's grid barrier (`sf_grid_sync`, its
//! arrival counter the scratch output [`GRID_BARRIER`]; fences around a relaxed atomic, or a
//! release reduction and acquire polls when the launch's [`ACQUIRE_RELEASE_PARAM`] says so:
//! `SPIKEFORGE_NETWORK_ADJOINT_BARRIER`); float sums in another order than the
//! C kernel's (atomic additions into `Δ`, the warps' sums) differ from it in the last bits.
//!
//! Layout ([`network_adjoint_layout`], each buffer named by owner and name as the network's
//! state is, shapes with `"steps"` for the segment's steps and `"n_syn"` for the projection's
//! synapses): inputs `("", "t_step")` (the segment's first step); per group `checkpoint:<x>`
//! `[n]` (the stored variables at the segment's start), its parameters and per-neuron
//! constants, `lastspike_step` (with a refractory period), `spike_queue` /
//! `spike_queue_counts` (when its spikes are delivered with a delay), `adjoint:<x>` `[n]` (at
//! the segment's end), `spike_cotangent` `[steps, n]`, `state_cotangent:<x>` `[steps, n]` (of
//! the values at each step's start), `grad:<p>` `[n]`, `history:<x>` `[H, n]` for each
//! delivered variable; per projection its connectivity, its parameters and `grad:<w>`
//! (`[n_syn]`, or `[]` shared). Outputs: per group `adjoint:<x>`, `grad:<p>`, `history:<x>`,
//! per projection `grad:<w>`, then scratch buffers (per group the recomputed `state:<x>`
//! `[steps, n]`, spikes, refractoriness, `Δ`; the grid barrier's counter).

use std::collections::HashMap;
use std::fmt::{self, Write};

use serde::Serialize;

use super::dialect::Dialect;
use super::printer::{literal, prelude, reciprocal, Printer};
use super::step_body::NEVER_SPIKED;
use super::writer::{render, SourceWriter};
use crate::ir::network::NetworkIr;
use crate::ir::synapses::DelayIr;
use crate::ir::{ExprArena, ExprId, GroupIr, IndexOf, SymbolKind, VarId};
use crate::step::adjoint::NotDifferentiable;
use crate::step::network_adjoint::{network_adjoint, NetworkAdjoint};
use crate::types::ElemType;

/// The name of the generated entry point.
pub const NETWORK_ADJOINT_ENTRY: &str = "sf_network_adjoint";

/// Threads of each block of the cooperative grid that runs a segment on CUDA (a multiple of
/// the warp's 32: the transposed propagation gives each source row a warp).
pub const CUDA_BLOCK: u32 = 1024;

/// The CUDA kernel's parameter after the synapse counts, the grid barrier's kind: 0 fences, 1
/// a release reduction and acquire loads, 2 a release reduction, relaxed polls and one acquire
/// fence (`SPIKEFORGE_NETWORK_ADJOINT_BARRIER`; see `write_cuda_functions`).
pub const ACQUIRE_RELEASE_PARAM: &str = "sf_acquire_release";

/// The CUDA kernel's warp-a-neuron variants ([`generate_network_adjoint_variant`]'s `fast`: a
/// sum of [`FAST_WALK`] and [`FAST_DELIVERIES`]; 0 the grid-stride kernel, which any grid
/// runs). A variant runs on a grid of at least a warp per neuron of the largest group (it traps
/// on a smaller one); the handler takes it where its grid is that large and
/// `SPIKEFORGE_NETWORK_ADJOINT_FAST` asks for it. Separate kernels, not a launch parameter: both
/// walks in one kernel (a branch) made ptxas spill under the 64 registers a thread.
/// [`FAST_P2P`] is a third flag, meaningful with [`FAST_WALK`] only.
pub const FAST_VARIANTS: i32 = FAST_WALK | FAST_DELIVERIES | FAST_P2P;

/// The walk back with each warp's neuron held for the whole segment: its synapses' targets and
/// increments in its lanes' registers (loaded once, so that a step's gather is one round of
/// loads of the adjoints it reads, not three dependent ones: row ends, targets, adjoints), its
/// adjoints in registers from step to step (stored once, when the walk reaches the segment's
/// start).
pub const FAST_WALK: i32 = 1;

/// Record mode's deliveries by a warp a spiking neuron (the warp's lanes share its row, each
/// lane's targets and increments loaded before its atomic additions), instead of a thread a
/// neuron whose warp delivers its lanes' spikes one after another.
pub const FAST_DELIVERIES: i32 = 2;

/// The held walk back ([`FAST_WALK`]) without a grid barrier a step: the adjoints of what was
/// delivered go into a scratch of one slot per step of the segment (`walk:<x>`, `[steps, n]`,
/// each slot set to all ones at the segment's start, a NaN whose payload no arithmetic makes:
/// the GPU's NaNs are the canonical `0x7fffffff` / `0x7fffffffffffffff`; each slot written
/// once, by a volatile store), and a step's
/// gather waits for the values it reads (volatile loads, again while a value is unset): each
/// warp waits only for its targets' step after, not for the whole grid. Nothing else of
/// another warp is read in the walk (a neuron's synapses' gradients are its own, a shared
/// weight's are atomic additions), every warp is resident (a cooperative grid) and step
/// `steps - 1` reads only values written before the walk's barrier, so every wait ends. After
/// the walk, a barrier, then the history (`history:<x>`, the ring the previous segment
/// reads) written from the slots as the barrier walk leaves it.
pub const FAST_P2P: i32 = 4;

/// Synapses that each lane of the walk back's warp holds in registers ([`FAST_WALK`]) for the
/// deliveries (with homogeneous delays) from its neuron's group: rows of up to 32 times that
/// many synapses are gathered from registers alone, the rest of a longer row loaded at every
/// step. One set for deliveries whose source ranges are disjoint (COBA's two projections: rows
/// of up to 128 synapses, its rows have 80), else `max(1, GATHER_SLOTS / m)` for each of `m`.
pub const GATHER_SLOTS: usize = 4;

/// What a wait of the barrier-free walk ([`FAST_P2P`]) does past 2^33 cycles (`sf_since` its
/// start; seconds, where a wait lasts a step of another warp, microseconds): a message and a
/// trap, as the grid barrier's (after 2^36).
const P2P_TIMEOUT: &str = "if (clock64() - sf_since > (1ll << 33)) { printf(\"spikeforge: block %u of the network adjoint kernel waited for a value of its barrier-free walk for more than 2^33 cycles\\n\", blockIdx.x); __trap(); }\n";

/// The scratch output (owner `""`) that holds the CUDA grid barrier's arrival counter: one
/// 32-bit word the handler zeroes before each launch.
pub const GRID_BARRIER: &str = "grid_barrier";

/// Threads the CUDA kernel can keep busy in a segment of `steps` steps with `neurons` neurons
/// in all, `largest` in the largest group and `rows` source rows in the largest projection: a
/// thread per neuron (the recomputation), a warp per neuron of a group (the walk back: with
/// fewer warps some take two neurons a step, and every block waits for them at the step's
/// barrier), a warp per row, a thread per (step, row) in the queued deliveries. The handler
/// launches as many blocks as that needs and the device holds at once.
pub fn cuda_threads(neurons: usize, largest: usize, rows: usize, steps: usize) -> usize {
    neurons
        .max(32 * largest)
        .max(32 * rows)
        .max(steps.saturating_mul(rows))
}

/// One dimension of a buffer: a number, the segment's steps or the projection's synapses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Dim {
    Fixed(usize),
    Named(&'static str),
}

const STEPS: Dim = Dim::Named("steps");
const N_SYN: Dim = Dim::Named("n_syn");

/// One buffer of the network adjoint kernel.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NetAdjointArg {
    /// The group or projection (`""` for the network's own).
    pub owner: String,
    /// `state:v`, `tau`, `adjoint:v`, `grad:w`, `row_offsets`, ...
    pub name: String,
    /// What Python passes or takes: `time`, `state`, `input`, `adjoint`, `spike_cotangent`,
    /// `state_cotangent`, `grad`, `history`, `scratch`.
    pub role: &'static str,
    #[serde(serialize_with = "super::layout::elem_json")]
    pub elem: ElemType,
    pub shape: Vec<Dim>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NetAdjointLayout {
    pub inputs: Vec<NetAdjointArg>,
    pub outputs: Vec<NetAdjointArg>,
    /// The longest segment the kernel recomputes in record mode ([`recorded_segment`]), if any.
    pub recorded_segment: Option<i64>,
}

/// A generated network adjoint kernel.
pub struct GeneratedNetworkAdjoint {
    pub source: String,
    pub entry: &'static str,
    pub layout: NetAdjointLayout,
}

fn arg(
    owner: &str,
    name: String,
    role: &'static str,
    elem: ElemType,
    shape: Vec<Dim>,
) -> NetAdjointArg {
    NetAdjointArg {
        owner: owner.to_string(),
        name,
        role,
        elem,
        shape,
    }
}

/// The real parameters and per-neuron constants of a group that its kernel takes, in symbol
/// order (what the forward layout holds in the state).
fn group_inputs(ir: &GroupIr) -> Vec<VarId> {
    (0..ir.symbols.len())
        .map(VarId::at)
        .filter(|v| {
            matches!(
                ir.symbol(*v).kind,
                SymbolKind::Param | SymbolKind::PerNeuronConstant
            )
        })
        .collect()
}

/// Whether group g's spikes are delivered along some projection.
fn is_source(net: &NetworkIr, adj: &NetworkAdjoint, g: usize) -> bool {
    adj.deliveries
        .iter()
        .any(|d| net.projections[d.projection].source == g)
}

/// The longest segment whose spikes the forward pass's state records, if every group whose
/// spikes are delivered has a refractory period: the shortest of those periods, in steps. A
/// neuron then spikes at most once in a segment that long, at the step that its `lastspike`
/// reads at the segment's end (the next checkpoint's), so that the kernel's recomputation can
/// deliver the whole segment's spikes at once (see `write_recorded_deliveries`).
pub fn recorded_segment(net: &NetworkIr, adj: &NetworkAdjoint) -> Option<i64> {
    let mut shortest: Option<i64> = None;
    for ga in &adj.groups {
        if !is_source(net, adj, ga.group) {
            continue;
        }
        let r = ga.refractory_steps?;
        shortest = Some(shortest.map_or(r, |s| s.min(r)));
    }
    shortest.filter(|r| *r >= 1)
}

/// Whether group g's spikes are delivered with a delay (the kernel then reads its queue).
fn delayed_source(net: &NetworkIr, adj: &NetworkAdjoint, g: usize) -> bool {
    adj.deliveries
        .iter()
        .any(|d| net.projections[d.projection].source == g && d.delay.max_steps() > 0)
}

/// The kernel's buffers (see the module documentation).
pub fn network_adjoint_layout(net: &NetworkIr, adj: &NetworkAdjoint) -> NetAdjointLayout {
    let real = net.dtype;
    let recorded = recorded_segment(net, adj).is_some();
    let mut inputs = vec![arg("", "t_step".into(), "time", ElemType::I32, vec![])];
    let mut outputs = Vec::new();
    let mut scratch = Vec::new();
    for ga in &adj.groups {
        let group = &net.groups[ga.group];
        let ir = group.neuron_ir().expect("a neuron group");
        let (o, n) = (group.name.as_str(), group.n);
        let name = |v: VarId| ir.symbol(v).name.clone();
        // One buffer `<prefix>:<x>` for each stored variable x.
        let per_stored = |prefix: &str, role: &'static str, shape: Vec<Dim>| {
            ga.dag
                .stored
                .iter()
                .map(|v| {
                    arg(
                        o,
                        format!("{prefix}:{}", name(*v)),
                        role,
                        real,
                        shape.clone(),
                    )
                })
                .collect::<Vec<_>>()
        };
        inputs.extend(per_stored("checkpoint", "checkpoint", vec![Dim::Fixed(n)]));
        for v in group_inputs(ir) {
            let shape = if ir.symbol(v).shared {
                vec![]
            } else {
                vec![Dim::Fixed(n)]
            };
            inputs.push(arg(o, name(v), "input", real, shape));
        }
        if ga.refractory_steps.is_some() {
            inputs.push(arg(
                o,
                "lastspike_step".into(),
                "input",
                ElemType::I32,
                vec![Dim::Fixed(n)],
            ));
        }
        if recorded && is_source(net, adj, ga.group) {
            // The last spike's step at the segment's end (the next checkpoint's
            // `lastspike_step`): the segment's spikes when it is short enough.
            inputs.push(arg(
                o,
                "lastspike_after".into(),
                "spike_record",
                ElemType::I32,
                vec![Dim::Fixed(n)],
            ));
        }
        if delayed_source(net, adj, ga.group) {
            let depth = adj.plan.groups[ga.group].depth;
            inputs.push(arg(
                o,
                "spike_queue".into(),
                "input",
                ElemType::I32,
                vec![Dim::Fixed(depth), Dim::Fixed(n)],
            ));
            inputs.push(arg(
                o,
                "spike_queue_counts".into(),
                "input",
                ElemType::I32,
                vec![Dim::Fixed(depth)],
            ));
        }
        let adjoints: Vec<NetAdjointArg> = ga
            .dag
            .stored
            .iter()
            .map(|v| {
                arg(
                    o,
                    format!("adjoint:{}", name(*v)),
                    "adjoint",
                    real,
                    vec![Dim::Fixed(n)],
                )
            })
            .collect();
        inputs.extend(adjoints.iter().cloned());
        outputs.extend(adjoints);
        inputs.push(arg(
            o,
            "spike_cotangent".into(),
            "spike_cotangent",
            real,
            vec![STEPS, Dim::Fixed(n)],
        ));
        inputs.extend(per_stored(
            "state_cotangent",
            "state_cotangent",
            vec![STEPS, Dim::Fixed(n)],
        ));
        let grads: Vec<NetAdjointArg> = ga
            .dag
            .inputs
            .iter()
            .map(|(v, _)| {
                arg(
                    o,
                    format!("grad:{}", name(*v)),
                    "grad",
                    real,
                    vec![Dim::Fixed(n)],
                )
            })
            .collect();
        inputs.extend(grads.iter().cloned());
        outputs.extend(grads);
        let history: Vec<NetAdjointArg> = ga
            .delivered_targets
            .clone()
            .iter()
            .map(|v| {
                arg(
                    o,
                    format!("history:{}", name(*v)),
                    "history",
                    real,
                    vec![Dim::Fixed(ga.history), Dim::Fixed(n)],
                )
            })
            .collect();
        inputs.extend(history.iter().cloned());
        outputs.extend(history);
        scratch.extend(per_stored("state", "scratch", vec![STEPS, Dim::Fixed(n)]));
        scratch.push(arg(
            o,
            "spikes".into(),
            "scratch",
            ElemType::I32,
            vec![STEPS, Dim::Fixed(n)],
        ));
        if ga.refractory_steps.is_some() {
            scratch.push(arg(
                o,
                "not_refractory".into(),
                "scratch",
                ElemType::I32,
                vec![STEPS, Dim::Fixed(n)],
            ));
            scratch.push(arg(
                o,
                "lastspike".into(),
                "scratch",
                ElemType::I32,
                vec![Dim::Fixed(n)],
            ));
        }
        for v in ga.delivered_targets.clone() {
            scratch.push(arg(
                o,
                format!("delivered:{}", name(v)),
                "scratch",
                real,
                vec![STEPS, Dim::Fixed(n)],
            ));
        }
        // The barrier-free walk's slots ([`FAST_P2P`]; unused by the other kernels).
        for v in ga.delivered_targets.clone() {
            scratch.push(arg(
                o,
                format!("walk:{}", name(v)),
                "scratch",
                real,
                vec![STEPS, Dim::Fixed(n)],
            ));
        }
    }
    for (p, proj) in net.projections.iter().enumerate() {
        let o = proj.name.as_str();
        let s = &proj.synapses;
        inputs.push(arg(
            o,
            "row_offsets".into(),
            "input",
            ElemType::I32,
            vec![Dim::Fixed(proj.n_pre() + 1)],
        ));
        inputs.push(arg(
            o,
            "targets".into(),
            "input",
            ElemType::I32,
            vec![N_SYN],
        ));
        if let Some((_, max)) = s.row_delay() {
            let b = max as usize + 1;
            inputs.push(arg(
                o,
                "delay_buckets".into(),
                "input",
                ElemType::I32,
                vec![Dim::Fixed(proj.n_pre() * b + 1)],
            ));
        }
        for v in s.per_synapse() {
            inputs.push(arg(
                o,
                s.group.symbol(v).name.clone(),
                "input",
                real,
                vec![N_SYN],
            ));
        }
        for v in s.shared() {
            inputs.push(arg(
                o,
                s.group.symbol(v).name.clone(),
                "input",
                real,
                vec![],
            ));
        }
        for v in differentiated_weights(adj, p) {
            let shape = if s.group.symbol(v).shared {
                vec![]
            } else {
                vec![N_SYN]
            };
            let g = arg(
                o,
                format!("grad:{}", s.group.symbol(v).name),
                "grad",
                real,
                shape,
            );
            inputs.push(g.clone());
            outputs.push(g);
        }
    }
    // The CUDA grid barrier's arrival counter (zeroed by the handler before each launch).
    scratch.push(arg(
        "",
        GRID_BARRIER.into(),
        "scratch",
        ElemType::I32,
        vec![Dim::Fixed(1)],
    ));
    outputs.extend(scratch);
    NetAdjointLayout {
        inputs,
        outputs,
        recorded_segment: recorded_segment(net, adj),
    }
}

/// The synaptic parameters of projection p that some increment reads, in symbol order.
fn differentiated_weights(adj: &NetworkAdjoint, p: usize) -> Vec<VarId> {
    let mut out: Vec<VarId> = adj
        .deliveries
        .iter()
        .filter(|d| d.projection == p)
        .flat_map(|d| d.grads.iter().map(|(v, _)| *v))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The network adjoint kernel of `net` in `dialect`, or why its runs are not differentiable.
pub fn generate_network_adjoint(
    net: &NetworkIr,
    dialect: Dialect,
) -> Result<GeneratedNetworkAdjoint, NotDifferentiable> {
    generate_network_adjoint_variant(net, dialect, 0)
}

/// [`generate_network_adjoint`] with the CUDA kernel's warp-a-neuron paths `fast` (see
/// [`FAST_VARIANTS`]; the C kernel is the same whatever `fast`).
pub fn generate_network_adjoint_variant(
    net: &NetworkIr,
    dialect: Dialect,
    fast: i32,
) -> Result<GeneratedNetworkAdjoint, NotDifferentiable> {
    let adj = network_adjoint(net)?;
    let layout = network_adjoint_layout(net, &adj);
    let fast = match dialect {
        Dialect::C => 0,
        // (the barrier-free walk is the held walk's)
        Dialect::Cuda if fast & FAST_WALK == 0 => fast & FAST_DELIVERIES,
        Dialect::Cuda => fast & FAST_VARIANTS,
    };
    let writer = Writer {
        net,
        adj: &adj,
        layout: &layout,
        dialect,
        fast,
    };
    Ok(GeneratedNetworkAdjoint {
        source: render(|w| writer.write(w)),
        entry: NETWORK_ADJOINT_ENTRY,
        layout,
    })
}

/// The parts of a group's backward pass.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    /// The adjoints of what was delivered in the segment's last step.
    LastDelivered,
    /// One step back (`sf_k`), each neuron of the group by a warp of the grid-stride loop.
    Step,
    /// One step back (`sf_k`), the neuron `sf_wi` of the group (if any) by this warp, its
    /// adjoints and its synapses held in registers ([`FAST_WALK`], `write_held_walk`).
    HeldStep,
}

/// The passes of a delivery in the kernel.
#[derive(Clone, Copy)]
enum Pass {
    /// The recomputation: spikes of the checkpoint's queue arriving in the segment.
    Queued,
    /// The recomputation: the spike of neuron `sf_i` at `sf_s`, its arrivals in the segment
    /// (CUDA: by the warp of the neuron's thread, the row's ends from its lane).
    Spike,
    /// Record mode's spike of neuron `sf_i` at `sf_s` by a warp of its own
    /// ([`FAST_DELIVERIES`]): the lanes share the row, each loads its targets and increments
    /// ([`DELIVERY_UNROLL`] of them) before its atomic additions.
    WarpSpike,
    /// The transposed propagation for source neuron `sf_i` at step `sf_s`: its spike's
    /// cotangent gathered from the history of `a_Δ`, and its synapses' weights' gradients.
    /// `held`: the row's first synapses are the lane's registers (`write_held_walk`).
    Gather { held: bool },
}

/// The registers of the held walk back that hold a delivery's first synapses (`Writer::held`):
/// `sf_ra_<name>`, `sf_rb_<name>` (the row's ends), `sf_tgt_<name>_<q>`, `sf_inc_<name>_<q>`.
struct HeldSet {
    name: String,
    slots: usize,
}

/// Synapses a lane of a warp-a-spike delivery ([`Pass::WarpSpike`]) loads before its atomics.
const DELIVERY_UNROLL: usize = 4;

struct Writer<'a> {
    net: &'a NetworkIr,
    adj: &'a NetworkAdjoint,
    layout: &'a NetAdjointLayout,
    dialect: Dialect,
    /// The warp-a-neuron paths (CUDA; 0 in C).
    fast: i32,
}

impl Writer<'_> {
    fn real(&self) -> &'static str {
        self.net.dtype.c_type()
    }

    fn lit(&self, x: f64) -> String {
        literal(x, self.net.dtype)
    }

    /// The deliveries whose source is group g, in order.
    fn deliveries_from(&self, g: usize) -> Vec<usize> {
        (0..self.adj.deliveries.len())
            .filter(|d| self.net.projections[self.adj.deliveries[*d].projection].source == g)
            .collect()
    }

    /// The pointer of the input named (owner, name).
    fn input(&self, owner: &str, name: &str) -> String {
        let k = self
            .layout
            .inputs
            .iter()
            .position(|a| a.owner == owner && a.name == name)
            .unwrap_or_else(|| panic!("the layout has the input {owner}/{name}"));
        format!("sf_in{k}")
    }

    /// The pointer of the output named (owner, name).
    fn output(&self, owner: &str, name: &str) -> String {
        let k = self
            .layout
            .outputs
            .iter()
            .position(|a| a.owner == owner && a.name == name)
            .unwrap_or_else(|| panic!("the layout has the output {owner}/{name}"));
        format!("sf_out{k}")
    }

    fn has_input(&self, owner: &str, name: &str) -> bool {
        self.layout
            .inputs
            .iter()
            .any(|a| a.owner == owner && a.name == name)
    }

    /// The loop of this thread over `0..n`: all of it in C, a grid-stride share on CUDA (the
    /// same share in every phase: a neuron's values written in one loop of a phase are read by
    /// the same thread in the next loop of that phase).
    fn each(&self, var: &str, n: &str) -> String {
        match self.dialect {
            Dialect::C => format!("for (int64_t {var} = 0; {var} < {n}; ++{var})"),
            Dialect::Cuda => format!(
                "for (int64_t {var} = (int64_t) blockIdx.x * blockDim.x + threadIdx.x; {var} < {n}; {var} += (int64_t) gridDim.x * blockDim.x)"
            ),
        }
    }

    /// The loop of this thread over the `n` neurons of a group in a phase whose threads read no
    /// other thread's values of the same phase (a barrier before and after): `each`, but in the
    /// warp-a-neuron variants the neurons' chunks of 32 go to the blocks in turn (chunk `c` to
    /// block `c mod gridDim.x`), so that a few thousand neurons' serial work (the record mode's
    /// recomputation of the segment's steps) runs on every multiprocessor, a warp each, instead
    /// of filling the first few blocks.
    /// (The spread loop counts in 32 bits: its 64-bit form made ptxas spill.)
    fn each_neuron(
        &self,
        n: usize,
        w: &mut SourceWriter,
        body: impl FnOnce(&mut SourceWriter) -> fmt::Result,
    ) -> fmt::Result {
        if self.fast == 0 {
            return w.block(self.each("sf_i", &n.to_string()), body);
        }
        w.block(
            format!(
                "for (int32_t sf_n = ((int32_t) (threadIdx.x >> 5) * (int32_t) gridDim.x + (int32_t) blockIdx.x) * 32 + (int32_t) (threadIdx.x & 31u); sf_n < {n}; sf_n += (int32_t) (gridDim.x * blockDim.x))"
            ),
            |w| {
                w.write_str("const int64_t sf_i = sf_n;\n")?;
                body(w)
            },
        )
    }

    /// The loop of this thread's warp over `0..n` (CUDA: a warp an element, its lanes
    /// `sf_lane` of `sf_width` share the element's work; C: the one thread, `sf_width` 1). The
    /// loop's condition is the same for the warp's lanes, so they may shuffle inside it.
    fn each_warp(&self, var: &str, n: &str) -> String {
        match self.dialect {
            Dialect::C => format!("for (int64_t {var} = 0; {var} < {n}; ++{var})"),
            Dialect::Cuda => format!(
                "for (int64_t {var} = ((int64_t) blockIdx.x * blockDim.x + threadIdx.x) >> 5; {var} < {n}; {var} += ((int64_t) gridDim.x * blockDim.x) >> 5)"
            ),
        }
    }

    /// The barrier between two phases (CUDA: the grid's, `sf_grid_sync`; C: one thread, none).
    /// Every thread passes the same barriers in the same order: `sf_arrivals` counts them.
    fn sync(&self, w: &mut SourceWriter) -> fmt::Result {
        match self.dialect {
            Dialect::C => Ok(()),
            Dialect::Cuda => {
                w.write_str("sf_arrivals += gridDim.x;\nsf_grid_sync(sf_barrier, sf_arrivals, sf_acquire_release);\n")
            }
        }
    }

    /// The guard of a store that lane 0 of a warp makes for the warp (C: none).
    fn lane0(&self) -> &'static str {
        match self.dialect {
            Dialect::C => "",
            Dialect::Cuda => "if ((threadIdx.x & 31u) == 0u) ",
        }
    }

    /// `x` summed over the warp's lanes, in every lane (C: `x`).
    fn warp_all_sum(&self, x: &str) -> String {
        match self.dialect {
            Dialect::C => x.to_string(),
            Dialect::Cuda => format!("sf_warp_all_sum({x})"),
        }
    }

    /// `x` summed over the warp's lanes, valid in lane 0 (C: `x`).
    fn warp_sum(&self, x: &str) -> String {
        match self.dialect {
            Dialect::C => x.to_string(),
            Dialect::Cuda => format!("sf_warp_sum({x})"),
        }
    }

    /// The device functions of the CUDA kernel: the grid barrier and the warp's sums.
    ///
    /// The grid barrier: the launch is cooperative (every block resident, so every block
    /// reaches it). Thread 0 of each block fences (every write of its block before the barrier
    /// is visible device-wide: the `__syncthreads` before it orders the block's writes before
    /// the fence), adds one to the arrival counter and waits until the counter reaches
    /// `sf_target` (the barriers passed so far times the blocks), then fences again. The
    /// counter only grows and is compared modulo 2^32 (a block is never more than one barrier
    /// ahead of another), so it is never reset within a launch. A wait of more than about
    /// 2^36 cycles traps (an error, never a hang).
    ///
    /// With `sf_acquire_release` (the launch's parameter, [`ACQUIRE_RELEASE_PARAM`]) the
    /// arrival is a release reduction (`red.release.gpu`) and the wait polls with acquire
    /// loads (`ld.acquire.gpu`): the same ordering (the block's writes, ordered before thread
    /// 0's release by the `__syncthreads`, are visible to every thread that acquires the
    /// count, ordered after it by the closing `__syncthreads`) without the two sequentially
    /// consistent fences; with `sf_acquire_release` 2 the polls are relaxed (volatile) loads
    /// and one acquire fence (`fence.acq_rel.gpu`) follows the last, as the persistent kernel's
    /// `release` barrier does. (Outside NVRTC, e.g. the emulation tests' host compiler, the
    /// fences stand in.)
    fn write_cuda_functions(&self, w: &mut SourceWriter) -> fmt::Result {
        let real = self.real();
        w.block(
            "static __device__ __forceinline__ void sf_grid_sync(unsigned int* sf_counter, const unsigned int sf_target, const int32_t sf_acquire_release)",
            |w| {
                w.write_str("__syncthreads();\nif (gridDim.x == 1u) return;\n")?;
                let timeout = |w: &mut SourceWriter| {
                    w.block("if (clock64() - sf_since > (1ll << 36))", |w| {
                        w.write_str("printf(\"spikeforge: block %u of the network adjoint kernel waited at its grid barrier for more than 2^36 cycles\\n\", blockIdx.x);\n__trap();\n")
                    })
                };
                w.block("if (threadIdx.x == 0)", |w| {
                    w.write_str("const long long sf_since = clock64();\n#ifdef __CUDA_ARCH__\n")?;
                    w.block("if (sf_acquire_release)", |w| {
                        w.write_str("asm volatile(\"red.release.gpu.global.add.u32 [%0], 1;\" :: \"l\"(sf_counter) : \"memory\");\nunsigned int sf_seen;\n")?;
                        w.block("if (sf_acquire_release == 2)", |w| {
                            w.block(
                                "while ((int) (*(volatile unsigned int*) sf_counter - sf_target) < 0)",
                                timeout,
                            )?;
                            w.write_str("asm volatile(\"fence.acq_rel.gpu;\" ::: \"memory\");\n")
                        })?;
                        w.block("else for (;;)", |w| {
                            w.write_str("asm volatile(\"ld.acquire.gpu.global.u32 %0, [%1];\" : \"=r\"(sf_seen) : \"l\"(sf_counter) : \"memory\");\nif ((int) (sf_seen - sf_target) >= 0) break;\n")?;
                            timeout(w)
                        })?;
                        Ok(())
                    })?;
                    w.write_str("else\n#endif\n")?;
                    w.block("", |w| {
                        w.write_str("(void) sf_acquire_release;\n__threadfence();\natomicAdd(sf_counter, 1u);\n")?;
                        w.block(
                            "while ((int) (*(volatile unsigned int*) sf_counter - sf_target) < 0)",
                            timeout,
                        )?;
                        w.write_str("__threadfence();\n")
                    })
                })?;
                w.write_str("__syncthreads();\n")
            },
        )?;
        w.block(
            format!("static __device__ __forceinline__ {real} sf_warp_sum({real} sf_x)"),
            |w| {
                w.write_str(
                    "for (int sf_o = 16; sf_o > 0; sf_o >>= 1) sf_x += __shfl_down_sync(0xffffffffu, sf_x, sf_o);\nreturn sf_x;\n",
                )
            },
        )?;
        w.block(
            format!("static __device__ __forceinline__ {real} sf_warp_all_sum({real} sf_x)"),
            |w| {
                w.write_str(
                    "for (int sf_o = 16; sf_o > 0; sf_o >>= 1) sf_x += __shfl_xor_sync(0xffffffffu, sf_x, sf_o);\nreturn sf_x;\n",
                )
            },
        )?;
        if self.fast & FAST_P2P == 0 {
            return Ok(());
        }
        // The barrier-free walk's slots ([`FAST_P2P`]): unset (all ones), read (volatile) and
        // waited for.
        let (bits, ones, value) = match self.net.dtype {
            ElemType::F64 => (
                "__double_as_longlong(sf_x)",
                "-1ll",
                "__longlong_as_double(-1ll)",
            ),
            _ => (
                "__float_as_uint(sf_x)",
                "0xffffffffu",
                "__uint_as_float(0xffffffffu)",
            ),
        };
        w.block(
            format!("static __device__ __forceinline__ bool sf_unset(const {real} sf_x)"),
            |w| writeln!(w, "return {bits} == {ones};"),
        )?;
        w.block(
            format!("static __device__ __forceinline__ {real} sf_unset_value()"),
            |w| writeln!(w, "return {value};"),
        )?;
        w.block(
            format!("static __device__ __forceinline__ {real} sf_peek(const {real}* sf_p)"),
            |w| writeln!(w, "return *(const volatile {real}*) sf_p;"),
        )?;
        w.block(
            format!("static __device__ {real} sf_wait(const {real}* sf_p)"),
            |w| {
                writeln!(
                    w,
                    "{real} sf_x = sf_peek(sf_p);\nconst long long sf_since = clock64();"
                )?;
                w.block("while (sf_unset(sf_x))", |w| {
                    w.write_str(P2P_TIMEOUT)?;
                    w.write_str("sf_x = sf_peek(sf_p);\n")
                })?;
                w.write_str("return sf_x;\n")
            },
        )
    }

    /// `target += value` where several threads may add to `target` (atomic on CUDA).
    fn accumulate(&self, target: &str, value: &str) -> String {
        match self.dialect {
            Dialect::C => format!("{target} += {value};"),
            Dialect::Cuda => format!("atomicAdd(&{target}, {value});"),
        }
    }

    fn write(&self, w: &mut SourceWriter) -> fmt::Result {
        writeln!(
            w,
            "/* Generated by spikeforge {}: the adjoint of a {} network (dt = {}). */",
            env!("CARGO_PKG_VERSION"),
            self.net.dtype.name(),
            self.net.dt
        )?;
        w.write_str(&super::group_kernel::includes(self.dialect))?;
        w.write_str(&prelude(self.dialect, self.net.dtype))?;
        w.write_str(reciprocal(self.dialect, self.net.dtype, false))?;
        if self.dialect == Dialect::Cuda {
            self.write_cuda_functions(w)?;
        }
        match self.dialect {
            Dialect::C => writeln!(
                w,
                "/* One segment, backwards; dims = {{steps, n_syn of each projection}}. */\nvoid {NETWORK_ADJOINT_ENTRY}(int64_t sf_start, int64_t sf_end, const int64_t* sf_dims, void* const* sf_ins, void* const* sf_outs)\n{{"
            )?,
            Dialect::Cuda => {
                let mut params = vec!["const int64_t sf_steps".to_string()];
                params.extend(
                    (0..self.net.projections.len()).map(|p| format!("const int64_t sf_nsyn{p}")),
                );
                params.push(format!("const int32_t {ACQUIRE_RELEASE_PARAM}"));
                params.extend(self.layout.inputs.iter().enumerate().map(|(k, a)| {
                    self.dialect.pointer_param(a.elem, &format!("sf_in{k}"), false)
                }));
                params.extend(self.layout.outputs.iter().enumerate().map(|(k, a)| {
                    self.dialect.pointer_param(a.elem, &format!("sf_out{k}"), true)
                }));
                writeln!(
                    w,
                    "/* One segment, backwards, by a cooperative grid. */\nextern \"C\" __global__ void __launch_bounds__({CUDA_BLOCK}) {NETWORK_ADJOINT_ENTRY}(\n    {})\n{{",
                    params.join(",\n    ")
                )?
            }
        }
        w.indented(|w| {
            if self.dialect == Dialect::C {
                w.write_str(
                    "(void) sf_start; (void) sf_end;\nconst int64_t sf_steps = sf_dims[0];\n",
                )?;
                for (k, a) in self.layout.inputs.iter().enumerate() {
                    let t = a.elem.c_type();
                    writeln!(
                        w,
                        "const {t}* restrict sf_in{k} = (const {t}*) sf_ins[{k}];"
                    )?;
                }
                for (k, a) in self.layout.outputs.iter().enumerate() {
                    let t = a.elem.c_type();
                    writeln!(w, "{t}* restrict sf_out{k} = ({t}*) sf_outs[{k}];")?;
                }
                for p in 0..self.net.projections.len() {
                    writeln!(w, "const int64_t sf_nsyn{p} = sf_dims[{}];", p + 1)?;
                }
            }
            writeln!(
                w,
                "const int64_t sf_t0 = (int64_t) {}[0];",
                self.input("", "t_step")
            )?;
            if self.dialect == Dialect::Cuda {
                writeln!(
                    w,
                    "unsigned int* const sf_barrier = (unsigned int*) {};\nunsigned int sf_arrivals = 0;",
                    self.output("", GRID_BARRIER)
                )?;
                if self.fast != 0 {
                    // The warp-a-neuron paths: a warp for each neuron of the largest group.
                    let largest = self.net.groups.iter().map(|g| g.n).max().unwrap_or(0);
                    writeln!(
                        w,
                        "const int64_t sf_wi = ((int64_t) blockIdx.x * blockDim.x + threadIdx.x) >> 5;\nconst int64_t sf_lane = (int64_t) (threadIdx.x & 31u);\n(void) sf_lane;"
                    )?;
                    w.block(
                        format!("if ((((int64_t) gridDim.x * blockDim.x) >> 5) < {largest})"),
                        |w| {
                            writeln!(w, "if (blockIdx.x == 0 && threadIdx.x == 0) printf(\"spikeforge: the network adjoint kernel's warp-a-neuron variant needs a warp for each of {largest} neurons, launched with %u blocks of %u threads\\n\", gridDim.x, blockDim.x);\n__trap();")
                        },
                    )?;
                }
            }
            // Forwards from the checkpoint: the segment recomputed, a barrier a step (see
            // `write_recompute`).
            self.write_copies(w)?;
            for ga in 0..self.adj.groups.len() {
                self.write_segment_start(ga, w)?;
            }
            self.sync(w)?;
            for d in 0..self.adj.deliveries.len() {
                self.write_queued_deliveries(d, w)?;
            }
            let per_step = |w: &mut SourceWriter| {
                w.block("for (int64_t sf_k = 0; sf_k < sf_steps; ++sf_k)", |w| {
                    for ga in 0..self.adj.groups.len() {
                        self.write_recompute(ga, w)?;
                    }
                    self.sync(w)
                })
            };
            match recorded_segment(self.net, self.adj) {
                // A segment no longer than the shortest refractory period: its spikes, from
                // the record, delivered at once (with the queued ones); then each neuron
                // recomputes its steps alone. Two barriers a segment, not one a step.
                Some(r) => {
                    w.block(format!("if (sf_steps <= {r})"), |w| {
                        for ga in 0..self.adj.groups.len() {
                            self.write_recorded_deliveries(ga, w)?;
                        }
                        self.sync(w)?;
                        for ga in 0..self.adj.groups.len() {
                            self.write_local_recompute(ga, w)?;
                        }
                        self.sync(w)
                    })?;
                    w.block("else", per_step)?;
                }
                None => per_step(w)?,
            }
            // Backwards, a barrier a step: first the adjoints of what was delivered in the
            // segment's last step; then at step sf_k, each neuron (a warp) gathers its spike's
            // cotangent from its synapses' targets (the transposed propagation, reading the
            // adjoints delivered at sf_k + D, complete since the last barrier), runs its step
            // adjoint and the adjoint of what was delivered to it at sf_k - 1.
            for ga in 0..self.adj.groups.len() {
                self.write_group(ga, Part::LastDelivered, w)?;
            }
            self.sync(w)?;
            if self.fast & FAST_WALK != 0 {
                return self.write_held_walk(w);
            }
            w.block(
                "for (int64_t sf_k = sf_steps - 1; sf_k >= 0; --sf_k)",
                |w| {
                    for ga in 0..self.adj.groups.len() {
                        self.write_group(ga, Part::Step, w)?;
                    }
                    self.sync(w)
                },
            )
        })?;
        w.write_str("}\n")
    }

    fn write_step_header(&self, w: &mut SourceWriter) -> fmt::Result {
        let real = self.real();
        writeln!(w, "const int64_t sf_t_step = sf_t0 + sf_s;")?;
        writeln!(
            w,
            "const {real} sf_t = ({real}) sf_t_step * {};",
            self.lit(self.net.dt)
        )?;
        w.write_str("(void) sf_t;\n")
    }

    /// Accumulated values start as given; scratch that accumulates starts at 0.
    fn write_copies(&self, w: &mut SourceWriter) -> fmt::Result {
        for (k, a) in self.layout.outputs.iter().enumerate() {
            if a.role == "scratch" {
                continue;
            }
            let i = self.input(&a.owner, &a.name);
            let len = match a.shape.as_slice() {
                [] => "1".to_string(),
                [N_SYN] => {
                    let p = self.projection_index(&a.owner);
                    format!("sf_nsyn{p}")
                }
                dims => dims
                    .iter()
                    .map(|d| match d {
                        Dim::Fixed(x) => x.to_string(),
                        Dim::Named(_) => unreachable!("only synapse counts"),
                    })
                    .collect::<Vec<_>>()
                    .join(" * "),
            };
            writeln!(
                w,
                "{} sf_out{k}[sf_k] = {i}[sf_k];",
                self.each("sf_k", &len)
            )?;
        }
        Ok(())
    }

    fn projection_index(&self, owner: &str) -> usize {
        self.net
            .projections
            .iter()
            .position(|p| p.name == owner)
            .expect("a projection")
    }

    /// How group ga's adjoint DAG names its variables inside the per-neuron loop.
    fn group_var(&self, ga: usize, v: VarId) -> String {
        let adj = &self.adj.groups[ga];
        let ir = self.net.groups[adj.group]
            .neuron_ir()
            .expect("a neuron group");
        let dag = &adj.dag;
        if let Some(k) = dag.adjoint_next.iter().position(|a| *a == v) {
            return format!("sf_a{k}");
        }
        if v == dag.spike_cotangent {
            return "sf_gs".into();
        }
        if let Some(k) = dag.delivered.iter().position(|a| *a == v) {
            return format!("sf_d{k}");
        }
        let real = self.real();
        let sym = ir.symbol(v);
        match sym.kind {
            SymbolKind::NotRefractory if adj.refractory_steps.is_some() => "sf_nr".into(),
            SymbolKind::NotRefractory => "true".into(),
            SymbolKind::Time => "sf_t".into(),
            SymbolKind::Index(IndexOf::Element) => format!("(({real}) sf_i)"),
            SymbolKind::Count(IndexOf::Element) => {
                format!("(({real}) {})", self.net.groups[adj.group].n)
            }
            _ => format!("x{}", v.0),
        }
    }

    /// Loads group ga's values of step `sf_s` for neuron `sf_i`.
    fn write_loads(&self, ga: usize, w: &mut SourceWriter) -> fmt::Result {
        self.write_step_values(ga, "sf_s", "", false, w)?;
        self.write_inputs(ga, w)
    }

    /// Group ga's values of step `step` for neuron `sf_i`: its recomputed stored variables
    /// (`x<id>`), refractoriness (`sf_nr`) and, with `delivered`, what was delivered in it
    /// (`sf_d<k>`), each name with `prefix` in front.
    fn write_step_values(
        &self,
        ga: usize,
        step: &str,
        prefix: &str,
        delivered: bool,
        w: &mut SourceWriter,
    ) -> fmt::Result {
        let adj = &self.adj.groups[ga];
        let group = &self.net.groups[adj.group];
        let ir = group.neuron_ir().expect("a neuron group");
        let (o, n, real) = (&group.name, group.n, self.real());
        for v in &adj.dag.stored {
            let p = self.output(o, &format!("state:{}", ir.symbol(*v).name));
            writeln!(
                w,
                "const {real} {prefix}x{} = {p}[({step}) * {n} + sf_i];",
                v.0
            )?;
        }
        if adj.refractory_steps.is_some() {
            writeln!(
                w,
                "const bool {prefix}sf_nr = {}[({step}) * {n} + sf_i] != 0;",
                self.output(o, "not_refractory")
            )?;
        }
        if delivered {
            for (k, v) in adj.delivered_targets.iter().enumerate() {
                let d = self.output(o, &format!("delivered:{}", ir.symbol(*v).name));
                writeln!(
                    w,
                    "const {real} {prefix}sf_d{k} = {d}[({step}) * {n} + sf_i];"
                )?;
            }
        }
        Ok(())
    }

    /// Group ga's parameters and per-neuron constants for neuron `sf_i` (`x<id>`).
    fn write_inputs(&self, ga: usize, w: &mut SourceWriter) -> fmt::Result {
        let adj = &self.adj.groups[ga];
        let group = &self.net.groups[adj.group];
        let ir = group.neuron_ir().expect("a neuron group");
        let (o, real) = (&group.name, self.real());
        for v in group_inputs(ir) {
            let p = self.input(o, &ir.symbol(v).name);
            let at = if ir.symbol(v).shared { "0" } else { "sf_i" };
            writeln!(w, "const {real} x{} = {p}[{at}];", v.0)?;
        }
        Ok(())
    }

    fn print(
        &self,
        ga: usize,
        roots: &[ExprId],
        prefix: &str,
        w: &mut SourceWriter,
    ) -> Result<Vec<String>, fmt::Error> {
        let names = |v: VarId| self.group_var(ga, v);
        Printer {
            arena: &self.adj.groups[ga].dag.arena,
            dtype: self.net.dtype,
            dialect: self.dialect,
            var_name: &names,
        }
        .block(roots, prefix, w)
    }

    /// Group ga at the segment's start: each neuron's thread zeroes what will be delivered to
    /// it, copies its checkpoint into the recomputed states' first step and its last spike.
    fn write_segment_start(&self, ga: usize, w: &mut SourceWriter) -> fmt::Result {
        let adj = &self.adj.groups[ga];
        let group = &self.net.groups[adj.group];
        let ir = group.neuron_ir().expect("a neuron group");
        let (o, n) = (&group.name, group.n);
        self.each_neuron(n, w, |w| {
            for v in &adj.delivered_targets {
                let d = self.output(o, &format!("delivered:{}", ir.symbol(*v).name));
                writeln!(
                    w,
                    "for (int64_t sf_s = 0; sf_s < sf_steps; ++sf_s) {d}[sf_s * {n} + sf_i] = 0;"
                )?;
                if self.fast & FAST_P2P != 0 {
                    let slots = self.output(o, &format!("walk:{}", ir.symbol(*v).name));
                    writeln!(
                        w,
                        "for (int64_t sf_s = 0; sf_s < sf_steps; ++sf_s) {slots}[sf_s * {n} + sf_i] = sf_unset_value();"
                    )?;
                }
            }
            for v in &adj.dag.stored {
                let name = &ir.symbol(*v).name;
                writeln!(
                    w,
                    "{}[sf_i] = {}[sf_i];",
                    self.output(o, &format!("state:{name}")),
                    self.input(o, &format!("checkpoint:{name}"))
                )?;
            }
            if adj.refractory_steps.is_some() {
                writeln!(
                    w,
                    "{}[sf_i] = {}[sf_i];",
                    self.output(o, "lastspike"),
                    self.input(o, "lastspike_step")
                )?;
            }
            Ok(())
        })
    }

    /// Group ga's part of the recomputation's step `sf_k`, each neuron by its thread (the one
    /// that wrote its values before: no barrier between its own steps): the step `sf_k - 1`
    /// completed (its new state from the values at its start and what was delivered in it, all
    /// of it since the last barrier), then step `sf_k`'s refractoriness and spike, and the
    /// spike's deliveries (atomic additions to what arrives at `sf_k + D`, where that is in the
    /// segment). Brian2's order within a step: the update and threshold read the values at the
    /// step's start, the deliveries are added before the reset (the DAG's `next_state`).
    fn write_recompute(&self, ga: usize, w: &mut SourceWriter) -> fmt::Result {
        self.write_spikes_delivered(ga, w, |w| {
            self.write_own_step(ga, false, w)?;
            w.write_str("sf_spike_step = sf_k;\n")
        })
    }

    /// Group ga's neuron `sf_i` at the recomputation's step `sf_k` (`bool sf_spike` declared
    /// by the caller): the step `sf_k - 1` completed (its new state from the values at its
    /// start and what was delivered in it, all of it since the last barrier), then step
    /// `sf_k`'s refractoriness and spike (`sf_spike`). `held`: the neuron's values of the
    /// step are in registers (`sf_c<k>`, `sf_c_nr`, `sf_c_ls`; record mode's loop over the
    /// steps), kept up to date besides the stores; else they are loaded.
    fn write_own_step(&self, ga: usize, held: bool, w: &mut SourceWriter) -> fmt::Result {
        let adj = &self.adj.groups[ga];
        let group = &self.net.groups[adj.group];
        let ir = group.neuron_ir().expect("a neuron group");
        let (o, n, real) = (&group.name, group.n, self.real());
        let spikes = self.output(o, "spikes");
        // The step's values: loaded, or (`held`) the registers `sf_c<k>`, `sf_c_nr`.
        let values = |w: &mut SourceWriter| -> fmt::Result {
            if !held {
                return self.write_loads(ga, w);
            }
            for (k, v) in adj.dag.stored.iter().enumerate() {
                writeln!(w, "const {real} x{} = sf_c{k};", v.0)?;
            }
            if adj.refractory_steps.is_some() {
                w.write_str("const bool sf_nr = sf_c_nr;\n")?;
            }
            self.write_inputs(ga, w)
        };
        w.block("if (sf_k > 0)", |w| {
            w.write_str("const int64_t sf_s = sf_k - 1;\n")?;
            self.write_step_header(w)?;
            values(w)?;
            for (k, v) in adj.delivered_targets.iter().enumerate() {
                let d = self.output(o, &format!("delivered:{}", ir.symbol(*v).name));
                writeln!(w, "const {real} sf_d{k} = {d}[sf_s * {n} + sf_i];")?;
            }
            let texts = self.print(ga, &adj.dag.next_state, "sf_x", w)?;
            for (k, (v, text)) in adj.dag.stored.iter().zip(texts).enumerate() {
                let x = self.output(o, &format!("state:{}", ir.symbol(*v).name));
                if held {
                    writeln!(w, "const {real} sf_n{k} = {text};")?;
                    writeln!(w, "{x}[(sf_s + 1) * {n} + sf_i] = sf_n{k};")?;
                } else {
                    writeln!(w, "{x}[(sf_s + 1) * {n} + sf_i] = {text};")?;
                }
            }
            if held {
                for k in 0..adj.dag.stored.len() {
                    writeln!(w, "sf_c{k} = sf_n{k};")?;
                }
            }
            Ok(())
        })?;
        w.write_str("const int64_t sf_s = sf_k;\n")?;
        self.write_step_header(w)?;
        // The last spike (with a refractory period): a register, or the scratch output.
        let ls = || self.output(o, "lastspike");
        let last = || {
            if held {
                "sf_c_ls".to_string()
            } else {
                format!("{}[sf_i]", ls())
            }
        };
        if let Some(r) = adj.refractory_steps {
            let nr = self.output(o, "not_refractory");
            let last = last();
            let now = format!("{last} <= {NEVER_SPIKED} || {last} <= sf_t_step - ({r})");
            if held {
                writeln!(w, "sf_c_nr = {now};")?;
            }
            let value = if held { "sf_c_nr" } else { now.as_str() };
            writeln!(w, "{nr}[sf_s * {n} + sf_i] = ({value}) ? 1 : 0;")?;
        }
        let Some(spike) = adj.dag.spike else {
            return writeln!(w, "{spikes}[sf_s * {n} + sf_i] = 0;");
        };
        values(w)?;
        let text = self.print(ga, &[spike], "sf_f", w)?.remove(0);
        writeln!(w, "sf_spike = {text};")?;
        writeln!(w, "{spikes}[sf_s * {n} + sf_i] = sf_spike ? 1 : 0;")?;
        if adj.refractory_steps.is_some() {
            let last = last();
            let also = if held {
                format!(" {}[sf_i] = {last};", ls())
            } else {
                String::new()
            };
            writeln!(w, "if (sf_spike) {{ {last} = (int32_t) sf_t_step;{also} }}")?;
        }
        Ok(())
    }

    /// Record mode's first phase for group ga (a source): each neuron whose recorded last
    /// spike (`lastspike_after`) falls in the segment spiked there, once (the segment is no
    /// longer than its refractory period): its increments are added to what arrives at that
    /// step plus each delay, within the segment, for the whole segment at once. In the
    /// variants with [`FAST_DELIVERIES`], warp `sf_wi`'s neuron delivers its spike with the
    /// warp's lanes.
    fn write_recorded_deliveries(&self, ga: usize, w: &mut SourceWriter) -> fmt::Result {
        let adj = &self.adj.groups[ga];
        let group = &self.net.groups[adj.group];
        if !is_source(self.net, self.adj, adj.group) {
            return Ok(());
        }
        let record = self.input(&group.name, "lastspike_after");
        if self.fast & FAST_DELIVERIES != 0 {
            return w.block(format!("if (sf_wi < {})", group.n), |w| {
                writeln!(
                    w,
                    "const int64_t sf_i = sf_wi;\nconst int64_t sf_s = (int64_t) {record}[sf_i] - sf_t0;"
                )?;
                w.block("if (sf_s >= 0 && sf_s < sf_steps)", |w| {
                    for d in self.deliveries_from(adj.group) {
                        self.write_delivery(d, Pass::WarpSpike, w)?;
                    }
                    Ok(())
                })
            });
        }
        self.write_spikes_delivered(ga, w, |w| {
            writeln!(
                w,
                "const int64_t sf_rec = (int64_t) {record}[sf_i] - sf_t0;\nif (sf_rec >= 0 && sf_rec < sf_steps) {{ sf_spike = true; sf_spike_step = sf_rec; }}"
            )
        })
    }

    /// Record mode's second phase for group ga: each neuron's thread recomputes the segment's
    /// steps alone (every delivery of the segment is in `Δ` since the last barrier).
    fn write_local_recompute(&self, ga: usize, w: &mut SourceWriter) -> fmt::Result {
        let adj = &self.adj.groups[ga];
        let group = &self.net.groups[adj.group];
        let ir = group.neuron_ir().expect("a neuron group");
        let (o, n, real) = (&group.name, group.n, self.real());
        self.each_neuron(n, w, |w| {
            // The neuron's state, refractoriness and last spike in registers from step to step
            // (written at the segment's start, before the last barrier).
            for (k, v) in adj.dag.stored.iter().enumerate() {
                let x = self.output(o, &format!("state:{}", ir.symbol(*v).name));
                writeln!(w, "{real} sf_c{k} = {x}[sf_i];")?;
            }
            if adj.refractory_steps.is_some() {
                writeln!(
                    w,
                    "int32_t sf_c_ls = {}[sf_i];
bool sf_c_nr = false;",
                    self.output(o, "lastspike")
                )?;
            }
            if self.dialect == Dialect::Cuda {
                w.write_str("#pragma unroll 4\n")?;
            }
            w.block("for (int64_t sf_k = 0; sf_k < sf_steps; ++sf_k)", |w| {
                w.write_str("bool sf_spike = false;\n")?;
                self.write_own_step(ga, true, w)?;
                w.write_str("(void) sf_spike;\n")
            })
        })
    }

    /// Group ga's neurons, each deciding (`lane`, for neuron `sf_i`) whether it spiked
    /// (`sf_spike`) and at which step of the segment (`sf_spike_step`), then the spikes'
    /// deliveries (atomic additions to what arrives at that step plus each delay, where that is
    /// in the segment). On CUDA the loop runs whole warps (a warp's lanes past the group's end
    /// decide nothing) and the warp delivers each of its lanes' spikes in turn, its lanes
    /// sharing the row (rows of ~100 synapses were one thread's serial loop of dependent loads
    /// and atomics per spike).
    fn write_spikes_delivered(
        &self,
        ga: usize,
        w: &mut SourceWriter,
        lane: impl Fn(&mut SourceWriter) -> fmt::Result,
    ) -> fmt::Result {
        let adj = &self.adj.groups[ga];
        let n = self.net.groups[adj.group].n;
        let sources = self.deliveries_from(adj.group);
        let deliveries = |w: &mut SourceWriter| -> fmt::Result {
            for d in &sources {
                self.write_spike_deliveries(*d, w)?;
            }
            Ok(())
        };
        let start = "bool sf_spike = false;\nint64_t sf_spike_step = 0;\n";
        match self.dialect {
            Dialect::C => w.block(self.each("sf_i", &n.to_string()), |w| {
                w.write_str(start)?;
                lane(w)?;
                if sources.is_empty() {
                    return w.write_str("(void) sf_spike; (void) sf_spike_step;\n");
                }
                w.block("if (sf_spike)", |w| {
                    w.write_str("const int64_t sf_s = sf_spike_step;\n")?;
                    deliveries(w)
                })
            }),
            Dialect::Cuda => w.block(
                format!(
                    "for (int64_t sf_i = (int64_t) blockIdx.x * blockDim.x + threadIdx.x; sf_i - (int64_t) (threadIdx.x & 31u) < {n}; sf_i += (int64_t) gridDim.x * blockDim.x)"
                ),
                |w| {
                    w.write_str(start)?;
                    // Each lane's own row ends (homogeneous delays), loaded with its other values
                    // and passed to the warp by a shuffle when its spike is delivered.
                    for d in &sources {
                        let del = &self.adj.deliveries[*d];
                        if !matches!(del.delay, DelayIr::Homogeneous { .. }) {
                            continue;
                        }
                        let proj = &self.net.projections[del.projection];
                        let rows = self.input(&proj.name, "row_offsets");
                        let (s0, n_pre) = (proj.source_range.start, proj.n_pre());
                        writeln!(w, "int64_t sf_row_a{d} = 0, sf_row_b{d} = 0;")?;
                        writeln!(
                            w,
                            "if (sf_i >= {s0} && sf_i < {s0} + {n_pre}) {{ sf_row_a{d} = {rows}[sf_i - {s0}]; sf_row_b{d} = {rows}[sf_i - {s0} + 1]; }}"
                        )?;
                    }
                    w.block(format!("if (sf_i < {n})"), &lane)?;
                    if sources.is_empty() {
                        return w.write_str("(void) sf_spike; (void) sf_spike_step;\n");
                    }
                    w.write_str("unsigned int sf_fired = __ballot_sync(0xffffffffu, sf_spike);\n")?;
                    w.block("while (sf_fired != 0u)", |w| {
                        w.write_str("const int sf_lane_src = __ffs((int) sf_fired) - 1;\nconst int64_t sf_src = sf_i - (int64_t) (threadIdx.x & 31u) + (int64_t) sf_lane_src;\nconst int64_t sf_src_step = __shfl_sync(0xffffffffu, sf_spike_step, sf_lane_src);\nsf_fired &= sf_fired - 1u;\n")?;
                        w.block("/* the spike of neuron sf_src */", |w| {
                            w.write_str("const int64_t sf_i = sf_src;\nconst int64_t sf_s = sf_src_step;\n")?;
                            deliveries(w)
                        })
                    })
                },
            ),
        }
    }

    /// Group ga's part of the backward pass, a warp a neuron (`each_warp`; its lanes share the
    /// gathers, compute the rest alike, and lane 0 stores). `Part::LastDelivered`: the
    /// adjoints of what was delivered at the segment's last step. `Part::Step`: at step `sf_k`,
    /// the neuron's spike cotangent from its synapses (each delivery it is a source of), its
    /// step adjoint, then the adjoints of what was delivered to it at `sf_k - 1` into the
    /// history (read by the gathers of the next barrier's step). `Part::HeldStep`: the same
    /// step for the warp's own neuron `sf_wi`, its adjoints and its parameters' gradients in
    /// the registers that `write_held_walk` declares (`sf_adj<ga>_<k>`, `sf_gin<ga>_<j>`),
    /// its first synapses too (the gathers' `held` pass).
    fn write_group(&self, ga: usize, part: Part, w: &mut SourceWriter) -> fmt::Result {
        let adj = &self.adj.groups[ga];
        let group = &self.net.groups[adj.group];
        let ir = group.neuron_ir().expect("a neuron group");
        let (o, n, real) = (&group.name, group.n, self.real());
        let lane0 = self.lane0();
        // The values both parts read: the step's recomputed state and inputs, the adjoints
        // after the step, what was delivered in it.
        // `held`: the adjoints after the step are this lane's `sf_next<k>` (the walk back
        // computed them in the step before), else they are read from `adjoint:<x>`.
        // (`held`: the step's values were loaded before, as `sf_prev_<name>`.)
        let held_step = part == Part::HeldStep;
        let common = |w: &mut SourceWriter, held: bool| -> fmt::Result {
            if held {
                for v in &adj.dag.stored {
                    writeln!(w, "const {real} x{0} = sf_prev_x{0};", v.0)?;
                }
                if adj.refractory_steps.is_some() {
                    w.write_str("const bool sf_nr = sf_prev_sf_nr;\n")?;
                }
                for k in 0..adj.delivered_targets.len() {
                    writeln!(w, "const {real} sf_d{k} = sf_prev_sf_d{k};")?;
                }
                self.write_inputs(ga, w)?;
            } else {
                self.write_step_values(ga, "sf_s", "", true, w)?;
                self.write_inputs(ga, w)?;
            }
            for (k, v) in adj.dag.stored.iter().enumerate() {
                if held {
                    writeln!(w, "const {real} sf_a{k} = sf_next{k};")?;
                } else if held_step {
                    writeln!(w, "const {real} sf_a{k} = sf_adj{ga}_{k};")?;
                } else {
                    let a = self.output(o, &format!("adjoint:{}", ir.symbol(*v).name));
                    writeln!(w, "const {real} sf_a{k} = {a}[sf_i];")?;
                }
            }
            Ok(())
        };
        let delivered = |w: &mut SourceWriter, step: &str, held: bool| -> fmt::Result {
            writeln!(w, "const int64_t sf_s = {step};")?;
            self.write_step_header(w)?;
            common(w, held)?;
            writeln!(w, "const {real} sf_gs = 0;")?;
            let texts = self.print(ga, &adj.dag.delivered_adjoint, "sf_h", w)?;
            for (v, text) in adj.delivered_targets.iter().zip(texts) {
                let name = &ir.symbol(*v).name;
                if self.fast & FAST_P2P != 0 {
                    // The step's slot, which the waits read (the history after the walk).
                    let slots = self.output(o, &format!("walk:{name}"));
                    writeln!(
                        w,
                        "{lane0}*(volatile {real}*) &{slots}[sf_s * {n} + sf_i] = {text};"
                    )?;
                    continue;
                }
                let h = self.output(o, &format!("history:{name}"));
                writeln!(
                    w,
                    "{lane0}{h}[(sf_t_step % {}) * {n} + sf_i] = {text};",
                    adj.history
                )?;
            }
            Ok(())
        };
        if part == Part::LastDelivered {
            if adj.delivered_targets.is_empty() {
                return Ok(());
            }
            return w.block(self.each_warp("sf_i", &n.to_string()), |w| {
                delivered(w, "sf_steps - 1", false)
            });
        }
        let sources = self.deliveries_from(adj.group);
        let head = if held_step {
            format!("if (sf_on{ga})")
        } else {
            self.each_warp("sf_i", &n.to_string())
        };
        w.block(head, |w| {
            if held_step {
                w.write_str("const int64_t sf_i = sf_wi;\n")?;
            }
            // The adjoints after step sf_k - 1, which the step computes: every lane's copy.
            for k in 0..adj.dag.stored.len() {
                writeln!(w, "{real} sf_next{k};")?;
            }
            if !adj.delivered_targets.is_empty() {
                // Step sf_k - 1's values (for the adjoints of what was delivered in it), loaded
                // with step sf_k's (an index clamped to the segment at sf_k = 0, unused then).
                w.write_str("const int64_t sf_prev = sf_k > 0 ? sf_k - 1 : 0;\n")?;
                self.write_step_values(ga, "sf_prev", "sf_prev_", true, w)?;
            }
            w.block("/* step sf_k */", |w| {
                w.write_str("const int64_t sf_s = sf_k;\n")?;
                self.write_step_header(w)?;
                // The neuron's own values first: their loads are in flight during the gathers'.
                common(w, false)?;
                writeln!(
                    w,
                    "const {real} sf_gs_given = {}[sf_s * {n} + sf_i];",
                    self.input(o, "spike_cotangent"),
                )?;
                for (k, v) in adj.dag.stored.iter().enumerate() {
                    let name = &ir.symbol(*v).name;
                    writeln!(
                        w,
                        "const {real} sf_sc{k} = {}[sf_s * {n} + sf_i];",
                        self.input(o, &format!("state_cotangent:{name}"))
                    )?;
                }
                writeln!(w, "{real} sf_synaptic = 0;")?;
                for d in &sources {
                    let held = held_step && self.held(*d).is_some();
                    self.write_delivery(*d, Pass::Gather { held }, w)?;
                }
                if !sources.is_empty() {
                    writeln!(w, "sf_synaptic = {};", self.warp_all_sum("sf_synaptic"))?;
                }
                writeln!(w, "const {real} sf_gs = sf_gs_given + sf_synaptic;")?;
                let mut roots = adj.dag.adjoint.clone();
                roots.extend(adj.dag.inputs.iter().map(|(_, e)| *e));
                let texts = self.print(ga, &roots, "sf_", w)?;
                let (states, inputs) = texts.split_at(adj.dag.stored.len());
                for (k, text) in states.iter().enumerate() {
                    writeln!(w, "const {real} sf_na{k} = {text};")?;
                }
                for (j, ((v, _), text)) in adj.dag.inputs.iter().zip(inputs).enumerate() {
                    if held_step {
                        writeln!(w, "sf_gin{ga}_{j} += {text};")?;
                        continue;
                    }
                    let g = self.output(o, &format!("grad:{}", ir.symbol(*v).name));
                    writeln!(w, "{lane0}{g}[sf_i] += {text};")?;
                }
                // Every lane has read the adjoints before lane 0 replaces them.
                if self.dialect == Dialect::Cuda && !held_step {
                    w.write_str("__syncwarp();\n")?;
                }
                for (k, v) in adj.dag.stored.iter().enumerate() {
                    let name = &ir.symbol(*v).name;
                    writeln!(w, "sf_next{k} = sf_na{k} + sf_sc{k};")?;
                    if held_step {
                        writeln!(w, "sf_adj{ga}_{k} = sf_next{k};")?;
                        continue;
                    }
                    writeln!(
                        w,
                        "{lane0}{}[sf_i] = sf_next{k};",
                        self.output(o, &format!("adjoint:{name}")),
                    )?;
                }
                Ok(())
            })?;
            if adj.delivered_targets.is_empty() {
                return Ok(());
            }
            // The adjoints just computed, from the lanes' registers (no store to wait for).
            w.block("if (sf_k > 0)", |w| delivered(w, "sf_k - 1", true))
        })
    }

    /// How delivery d's increment names the synapse's parameters (synapse `sf_syn`).
    fn synapse_var(&self, d: usize, v: VarId) -> String {
        let del = &self.adj.deliveries[d];
        let proj = &self.net.projections[del.projection];
        let sym = proj.synapses.group.symbol(v);
        let p = self.input(&proj.name, &sym.name);
        if sym.shared {
            format!("{p}[0]")
        } else {
            format!("{p}[sf_syn]")
        }
    }

    fn print_synapse(
        &self,
        d: usize,
        arena: &ExprArena,
        roots: &[ExprId],
        w: &mut SourceWriter,
    ) -> Result<Vec<String>, fmt::Error> {
        let names = |v: VarId| self.synapse_var(d, v);
        Printer {
            arena,
            dtype: self.net.dtype,
            dialect: self.dialect,
            var_name: &names,
        }
        .block(roots, "sf_e", w)
    }

    /// The recomputation's deliveries of spikes from before the segment (the checkpoint's
    /// queue), for every step of the segment at once.
    fn write_queued_deliveries(&self, d: usize, w: &mut SourceWriter) -> fmt::Result {
        self.write_delivery(d, Pass::Queued, w)
    }

    /// The recomputation's deliveries of the spike of source neuron `sf_i` at step `sf_s`.
    fn write_spike_deliveries(&self, d: usize, w: &mut SourceWriter) -> fmt::Result {
        self.write_delivery(d, Pass::Spike, w)
    }

    /// The registers in which a lane of the held walk back holds delivery d's first synapses,
    /// or `None` where d's delays are per synapse (its gather loads its row at every step).
    /// Where the group's deliveries with homogeneous delays have disjoint source ranges (a
    /// neuron is the source of one of them at most: COBA's two), they share one set of
    /// [`GATHER_SLOTS`] slots; else each has its own `max(1, GATHER_SLOTS / m)`.
    fn held(&self, d: usize) -> Option<HeldSet> {
        let homogeneous =
            |d: usize| matches!(self.adj.deliveries[d].delay, DelayIr::Homogeneous { .. });
        if !homogeneous(d) {
            return None;
        }
        let source = self.net.projections[self.adj.deliveries[d].projection].source;
        let mine: Vec<usize> = (self.deliveries_from(source).into_iter())
            .filter(|e| homogeneous(*e))
            .collect();
        let range =
            |e: usize| &self.net.projections[self.adj.deliveries[e].projection].source_range;
        let disjoint = mine.iter().enumerate().all(|(k, a)| {
            mine[k + 1..]
                .iter()
                .all(|b| range(*a).end <= range(*b).start || range(*b).end <= range(*a).start)
        });
        Some(if disjoint {
            HeldSet {
                name: format!("g{source}"),
                slots: GATHER_SLOTS,
            }
        } else {
            HeldSet {
                name: format!("d{d}"),
                slots: (GATHER_SLOTS / mine.len()).max(1),
            }
        })
    }

    /// The walk back with a warp a neuron held for the segment ([`FAST_WALK`]; CUDA, a grid of
    /// at least a warp per neuron of the largest group): warp `sf_wi` takes neuron `sf_wi` of
    /// each group (`sf_on<ga>`: if the group has one). Before the steps its lanes load the
    /// neuron's adjoints and its parameters' gradients (`sf_adj<ga>_<k>`, `sf_gin<ga>_<j>`),
    /// and for each delivery from it (homogeneous delays) its row's ends (`sf_ra<d>`,
    /// `sf_rb<d>`) and each lane's first synapses' targets and increments (`sf_tgt<d>_<q>`,
    /// -1 past the row's end; `sf_inc<d>_<q>`): a step's gather then loads only the adjoints
    /// it reads, all at once. The steps as `Part::HeldStep`, a barrier between two; lane 0
    /// stores the adjoints and gradients at the end.
    fn write_held_walk(&self, w: &mut SourceWriter) -> fmt::Result {
        let real = self.real();
        for (ga, adj) in self.adj.groups.iter().enumerate() {
            let group = &self.net.groups[adj.group];
            let ir = group.neuron_ir().expect("a neuron group");
            let (o, n) = (&group.name, group.n);
            writeln!(w, "const bool sf_on{ga} = sf_wi < {n};")?;
            for (k, v) in adj.dag.stored.iter().enumerate() {
                let a = self.output(o, &format!("adjoint:{}", ir.symbol(*v).name));
                writeln!(
                    w,
                    "{real} sf_adj{ga}_{k} = sf_on{ga} ? {a}[sf_wi] : ({real}) 0;"
                )?;
            }
            for (j, (v, _)) in adj.dag.inputs.iter().enumerate() {
                let g = self.output(o, &format!("grad:{}", ir.symbol(*v).name));
                writeln!(
                    w,
                    "{real} sf_gin{ga}_{j} = sf_on{ga} ? {g}[sf_wi] : ({real}) 0;"
                )?;
            }
            let mut declared: Vec<String> = Vec::new();
            for d in self.deliveries_from(adj.group) {
                let Some(HeldSet { name: set, slots }) = self.held(d) else {
                    continue;
                };
                let del = &self.adj.deliveries[d];
                let proj = &self.net.projections[del.projection];
                let p = del.projection;
                let (s0, n_pre, n_post) = (proj.source_range.start, proj.n_pre(), proj.n_post());
                let rows = self.input(&proj.name, "row_offsets");
                let targets = self.input(&proj.name, "targets");
                if !declared.contains(&set) {
                    writeln!(w, "int32_t sf_ra_{set} = 0, sf_rb_{set} = 0;")?;
                    for q in 0..slots {
                        writeln!(
                            w,
                            "int32_t sf_tgt_{set}_{q} = -1;\n{real} sf_inc_{set}_{q} = 0;"
                        )?;
                    }
                    declared.push(set.clone());
                }
                writeln!(w, "/* {}: the lanes' first synapses */", proj.name)?;
                w.block(
                    format!("if (sf_on{ga} && sf_wi >= {s0} && sf_wi < {s0} + {n_pre})"),
                    |w| {
                        writeln!(
                            w,
                            "int64_t sf_a = {rows}[sf_wi - {s0}], sf_b = {rows}[sf_wi - {s0} + 1];\nif (sf_a < 0) sf_a = 0;\nif (sf_b > sf_nsyn{p}) sf_b = sf_nsyn{p};\nsf_ra_{set} = (int32_t) sf_a;\nsf_rb_{set} = (int32_t) sf_b;"
                        )?;
                        for q in 0..slots {
                            w.block("", |w| {
                                writeln!(
                                    w,
                                    "const int64_t sf_syn = sf_a + sf_lane + {};",
                                    32 * q
                                )?;
                                w.block("if (sf_syn < sf_b)", |w| {
                                    writeln!(w, "const int64_t sf_j = {targets}[sf_syn];")?;
                                    w.block(format!("if (sf_j >= 0 && sf_j < {n_post})"), |w| {
                                        let e = self
                                            .print_synapse(d, &del.arena, &[del.increment], w)?
                                            .remove(0);
                                        writeln!(
                                            w,
                                            "sf_tgt_{set}_{q} = (int32_t) sf_j;\nsf_inc_{set}_{q} = {e};"
                                        )
                                    })
                                })
                            })?;
                        }
                        Ok(())
                    },
                )?;
            }
        }
        // (No barrier after the last step: nothing reads its writes but the next launch.)
        let p2p = self.fast & FAST_P2P != 0;
        w.block(
            "for (int64_t sf_k = sf_steps - 1; sf_k >= 0; --sf_k)",
            |w| {
                for ga in 0..self.adj.groups.len() {
                    self.write_group(ga, Part::HeldStep, w)?;
                }
                if p2p {
                    return Ok(()); // the gathers wait for their values
                }
                w.block("if (sf_k > 0)", |w| self.sync(w))
            },
        )?;
        if p2p {
            // The history that the barrier walk leaves (the ring the previous segment reads):
            // the slots of the segment's first `history` steps, over the input's carried ones.
            self.sync(w)?;
            for adj in &self.adj.groups {
                let group = &self.net.groups[adj.group];
                let ir = group.neuron_ir().expect("a neuron group");
                let (o, n, h) = (&group.name, group.n, adj.history);
                if adj.delivered_targets.is_empty() {
                    continue;
                }
                self.each_neuron(n, w, |w| {
                    for v in &adj.delivered_targets {
                        let name = &ir.symbol(*v).name;
                        let ring = self.output(o, &format!("history:{name}"));
                        let slots = self.output(o, &format!("walk:{name}"));
                        writeln!(
                            w,
                            "for (int64_t sf_s = 0; sf_s < sf_steps && sf_s < {h}; ++sf_s) {ring}[((sf_t0 + sf_s) % {h}) * {n} + sf_i] = {slots}[sf_s * {n} + sf_i];"
                        )?;
                    }
                    Ok(())
                })?;
            }
        }
        for (ga, adj) in self.adj.groups.iter().enumerate() {
            let group = &self.net.groups[adj.group];
            let ir = group.neuron_ir().expect("a neuron group");
            let o = &group.name;
            w.block(format!("if (sf_on{ga} && sf_lane == 0)"), |w| {
                for (k, v) in adj.dag.stored.iter().enumerate() {
                    let a = self.output(o, &format!("adjoint:{}", ir.symbol(*v).name));
                    writeln!(w, "{a}[sf_wi] = sf_adj{ga}_{k};")?;
                }
                for (j, (v, _)) in adj.dag.inputs.iter().enumerate() {
                    let g = self.output(o, &format!("grad:{}", ir.symbol(*v).name));
                    writeln!(w, "{g}[sf_wi] = sf_gin{ga}_{j};")?;
                }
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Delivery d in one of its passes (see [`Pass`]).
    fn write_delivery(&self, d: usize, pass: Pass, w: &mut SourceWriter) -> fmt::Result {
        let del = &self.adj.deliveries[d];
        let proj = &self.net.projections[del.projection];
        let source = &self.net.groups[proj.source];
        let target = &self.net.groups[proj.target];
        let tga = self
            .adj
            .groups
            .iter()
            .position(|g| g.group == proj.target)
            .expect("a group");
        let tadj = &self.adj.groups[tga];
        let tir = target.neuron_ir().expect("a neuron group");
        let x = &tir.symbol(tadj.delivered_targets[del.delivered]).name;
        let (ns, nt) = (source.n, target.n);
        let (s0, n_pre) = (proj.source_range.start, proj.n_pre());
        let (t0, n_post) = (proj.target_range.start, proj.n_post());
        let p = del.projection;
        let rows = self.input(&proj.name, "row_offsets");
        let targets = self.input(&proj.name, "targets");
        let spikes = self.output(&source.name, "spikes");
        let (delays, buckets) = match del.delay {
            DelayIr::Homogeneous { steps } => (
                format!("int64_t sf_D = {steps}; sf_D <= {steps}; ++sf_D"),
                None,
            ),
            DelayIr::PerSynapse { max_steps, .. } => (
                format!("int64_t sf_D = 0; sf_D <= {max_steps}; ++sf_D"),
                Some((
                    self.input(&proj.name, "delay_buckets"),
                    max_steps as usize + 1,
                )),
            ),
        };
        // The synapses of row sf_r with delay sf_D, clamped to the synapse count.
        // (`shuffled`: the row's ends come from the source's lane, `sf_lane_src`, which loaded
        // them as `sf_row_a<d>`, `sf_row_b<d>` (see `write_recompute`).)
        let range = |w: &mut SourceWriter, shuffled: bool| -> fmt::Result {
            match &buckets {
                None if shuffled => writeln!(
                    w,
                    "int64_t sf_a = __shfl_sync(0xffffffffu, sf_row_a{d}, sf_lane_src), sf_b = __shfl_sync(0xffffffffu, sf_row_b{d}, sf_lane_src);"
                ),
                None => writeln!(w, "int64_t sf_a = {rows}[sf_r], sf_b = {rows}[sf_r + 1];"),
                Some((b, width)) => writeln!(
                    w,
                    "int64_t sf_a = {b}[sf_r * {width} + sf_D], sf_b = {b}[sf_r * {width} + sf_D + 1];"
                ),
            }?;
            writeln!(
                w,
                "if (sf_a < 0) sf_a = 0;\nif (sf_b > sf_nsyn{p}) sf_b = sf_nsyn{p};"
            )
        };
        writeln!(w, "/* {} -> {}.{x} */", proj.name, target.name)?;
        let delta = self.output(&target.name, &format!("delivered:{x}"));
        // The synapses of row sf_r whose spike at sf_s - sf_D arrives at sf_s, their increments
        // added to what is delivered then.
        // `lanes`: the warp's lanes share the row (CUDA's spike deliveries), else one thread
        // walks it.
        let row = |w: &mut SourceWriter, at: &str, lanes: bool| -> fmt::Result {
            let lanes = lanes && self.dialect == Dialect::Cuda;
            range(w, lanes)?;
            let head = if lanes {
                "for (int64_t sf_syn = sf_a + (int64_t) (threadIdx.x & 31u); sf_syn < sf_b; sf_syn += 32)"
            } else {
                "for (int64_t sf_syn = sf_a; sf_syn < sf_b; ++sf_syn)"
            };
            w.block(head, |w| {
                writeln!(w, "const int64_t sf_j = {targets}[sf_syn];")?;
                writeln!(w, "if (sf_j < 0 || sf_j >= {n_post}) continue;")?;
                let e = self
                    .print_synapse(d, &del.arena, &[del.increment], w)?
                    .remove(0);
                let target = format!("{delta}[({at}) * {nt} + {t0} + sf_j]");
                writeln!(w, "{}", self.accumulate(&target, &e))
            })
        };
        match pass {
            Pass::Spike => {
                return w.block(format!("if (sf_i >= {s0} && sf_i < {s0} + {n_pre})"), |w| {
                    writeln!(w, "const int64_t sf_r = sf_i - {s0};")?;
                    w.block(format!("for ({delays})"), |w| {
                        w.write_str("if (sf_s + sf_D >= sf_steps) continue;\n")?;
                        row(w, "sf_s + sf_D", true)
                    })
                })
            }
            Pass::Queued => {
                if !self.has_input(&source.name, "spike_queue") {
                    return Ok(());
                }
                // A thread a (step, queue entry).
                let depth = self.adj.plan.groups[proj.source].depth;
                let queue = self.input(&source.name, "spike_queue");
                let counts = self.input(&source.name, "spike_queue_counts");
                return w.block(self.each("sf_w", &format!("sf_steps * {ns}")), |w| {
                    writeln!(
                        w,
                        "const int64_t sf_s = sf_w / {ns}, sf_q = sf_w % {ns};\nconst int64_t sf_t_step = sf_t0 + sf_s;"
                    )?;
                    w.block(format!("for ({delays})"), |w| {
                        w.write_str(
                            "if (sf_s - sf_D >= 0 || sf_t_step - sf_D < 0) continue;\n",
                        )?;
                        writeln!(w, "const int64_t sf_slot = (sf_t_step - sf_D) % {depth};")?;
                        writeln!(w, "int64_t sf_count = {counts}[sf_slot];")?;
                        writeln!(w, "if (sf_count > {ns}) sf_count = {ns};")?;
                        w.write_str("if (sf_q >= sf_count) continue;\n")?;
                        writeln!(
                            w,
                            "const int64_t sf_r = (int64_t) {queue}[sf_slot * {ns} + sf_q] - {s0};"
                        )?;
                        writeln!(w, "if (sf_r < 0 || sf_r >= {n_pre}) continue;")?;
                        row(w, "sf_s", false)
                    })
                });
            }
            Pass::WarpSpike => {
                // The warp's lanes share the row; each loads DELIVERY_UNROLL of its targets
                // and increments, then adds them (one round trip of loads, not one a synapse).
                let u = DELIVERY_UNROLL;
                let real = self.real();
                return w.block(format!("if (sf_i >= {s0} && sf_i < {s0} + {n_pre})"), |w| {
                    writeln!(w, "const int64_t sf_r = sf_i - {s0};")?;
                    w.block(format!("for ({delays})"), |w| {
                        w.write_str("if (sf_s + sf_D >= sf_steps) continue;\n")?;
                        range(w, false)?;
                        w.block(
                            format!("for (int64_t sf_base = sf_a + sf_lane; sf_base < sf_b; sf_base += {})", 32 * u),
                            |w| {
                                for q in 0..u {
                                    writeln!(w, "int64_t sf_j{q} = -1;\n{real} sf_v{q} = 0;")?;
                                    w.block("", |w| {
                                        writeln!(w, "const int64_t sf_syn = sf_base + {};", 32 * q)?;
                                        w.block("if (sf_syn < sf_b)", |w| {
                                            writeln!(w, "sf_j{q} = {targets}[sf_syn];")?;
                                            let e = self
                                                .print_synapse(d, &del.arena, &[del.increment], w)?
                                                .remove(0);
                                            writeln!(w, "sf_v{q} = {e};")
                                        })
                                    })?;
                                }
                                for q in 0..u {
                                    let target =
                                        format!("{delta}[(sf_s + sf_D) * {nt} + {t0} + sf_j{q}]");
                                    writeln!(
                                        w,
                                        "if (sf_j{q} >= 0 && sf_j{q} < {n_post}) {}",
                                        self.accumulate(&target, &format!("sf_v{q}"))
                                    )?;
                                }
                                Ok(())
                            },
                        )
                    })
                });
            }
            Pass::Gather { .. } => {}
        }
        let held = match pass {
            Pass::Gather { held } => held.then(|| self.held(d)).flatten(),
            _ => None,
        };
        // The gather: neuron sf_i's warp, its lanes sharing the row's synapses, adds its sum to
        // sf_synaptic (summed over the lanes by the caller); the shared weights' gradients are
        // summed over the lanes here and added by lane 0 (the warp's neuron spiked or not).
        let history = self.output(&target.name, &format!("history:{x}"));
        let h = tadj.history;
        // The barrier-free walk's gathers ([`FAST_P2P`]; the held walk's only).
        let p2p = self.fast & FAST_P2P != 0
            && matches!(pass, Pass::Gather { .. })
            && self.fast & FAST_WALK != 0;
        let slots = self.output(&target.name, &format!("walk:{x}"));
        let real = self.real();
        let mut roots = vec![del.increment];
        roots.extend(del.grads.iter().map(|(_, e)| *e));
        let shared: Vec<bool> = del
            .grads
            .iter()
            .map(|(v, _)| proj.synapses.group.symbol(*v).shared)
            .collect();
        let (lane, width) = match self.dialect {
            Dialect::C => ("0", "1"),
            Dialect::Cuda => ("(int64_t) (threadIdx.x & 31u)", "32"),
        };
        w.block(format!("if (sf_i >= {s0} && sf_i < {s0} + {n_pre})"), |w| {
            writeln!(w, "const int64_t sf_r = sf_i - {s0};")?;
            writeln!(w, "const int sf_fired = {spikes}[sf_s * {ns} + sf_i] != 0;")?;
            for (k, sh) in shared.iter().enumerate() {
                if *sh {
                    writeln!(w, "{real} sf_gw{k} = 0;")?;
                }
            }
            // Synapse sf_syn's weights' gradients (`texts`, the grads' expressions), its
            // adjoint sf_ad: where the neuron fired.
            let grads = |w: &mut SourceWriter, texts: &[String]| -> fmt::Result {
                w.block("if (sf_fired)", |w| {
                    for (k, (((v, _), text), sh)) in
                        del.grads.iter().zip(texts).zip(&shared).enumerate()
                    {
                        if *sh {
                            writeln!(w, "sf_gw{k} += sf_ad * ({text});")?;
                        } else {
                            let sym = proj.synapses.group.symbol(*v);
                            let g = self.output(&proj.name, &format!("grad:{}", sym.name));
                            writeln!(w, "{g}[sf_syn] += sf_ad * ({text});")?;
                        }
                    }
                    Ok(())
                })
            };
            w.block(format!("for ({delays})"), |w| {
                match &held {
                    // The lane's first synapses are registers; the loop below takes the rest.
                    Some(HeldSet { name: set, slots }) => writeln!(
                        w,
                        "const int64_t sf_a = (int64_t) sf_ra_{set} + {}, sf_b = sf_rb_{set};",
                        32 * slots
                    )?,
                    None => range(w, false)?,
                }
                writeln!(
                    w,
                    "const int64_t sf_at = ((sf_t_step + sf_D) % {h}) * {nt} + {t0};"
                )?;
                if p2p {
                    // Within the segment the step's slots (waited for), past it the history.
                    writeln!(
                        w,
                        "const bool sf_in_segment = sf_s + sf_D < sf_steps;\nconst {real}* const sf_from = sf_in_segment ? {slots} + (sf_s + sf_D) * {nt} + {t0} : {history} + sf_at;"
                    )?;
                }
                if let Some(HeldSet { name: set, slots }) = &held {
                    let slots = *slots;
                    // Every load first (one round trip), then the sums in the loop's order.
                    for q in 0..slots {
                        if p2p {
                            writeln!(
                                w,
                                "{real} sf_ad{q} = sf_tgt_{set}_{q} >= 0 ? sf_peek(sf_from + sf_tgt_{set}_{q}) : ({real}) 0;"
                            )?;
                            continue;
                        }
                        writeln!(
                            w,
                            "const {real} sf_ad{q} = sf_tgt_{set}_{q} >= 0 ? {history}[sf_at + sf_tgt_{set}_{q}] : ({real}) 0;"
                        )?;
                    }
                    if p2p {
                        // Again, each unset one, until none is (a lane's loads in flight together).
                        let unset: Vec<String> = (0..slots).map(|q| format!("sf_unset(sf_ad{q})")).collect();
                        w.block("if (sf_in_segment)", |w| {
                            w.write_str("const long long sf_since = clock64();\n")?;
                            w.block(format!("while ({})", unset.join(" || ")), |w| {
                                for q in 0..slots {
                                    writeln!(
                                        w,
                                        "if (sf_unset(sf_ad{q})) sf_ad{q} = sf_peek(sf_from + sf_tgt_{set}_{q});"
                                    )?;
                                }
                                w.write_str(P2P_TIMEOUT)
                            })
                        })?;
                    }
                    for q in 0..slots {
                        writeln!(w, "sf_synaptic += sf_inc_{set}_{q} * sf_ad{q};")?;
                    }
                    if !del.grads.is_empty() {
                        for q in 0..slots {
                            w.block(format!("if (sf_tgt_{set}_{q} >= 0)"), |w| {
                                writeln!(
                                    w,
                                    "const int64_t sf_syn = (int64_t) sf_ra_{set} + sf_lane + {};\nconst {real} sf_ad = sf_ad{q};\n(void) sf_syn;",
                                    32 * q
                                )?;
                                let texts = self.print_synapse(d, &del.arena, &roots[1..], w)?;
                                grads(w, &texts)
                            })?;
                        }
                    }
                }
                w.block(
                    format!(
                        "for (int64_t sf_syn = sf_a + {lane}; sf_syn < sf_b; sf_syn += {width})"
                    ),
                    |w| {
                        writeln!(w, "const int64_t sf_j = {targets}[sf_syn];")?;
                        writeln!(w, "if (sf_j < 0 || sf_j >= {n_post}) continue;")?;
                        if p2p {
                            writeln!(
                                w,
                                "const {real} sf_ad = sf_in_segment ? sf_wait(sf_from + sf_j) : sf_from[sf_j];"
                            )?;
                        } else {
                            writeln!(w, "const {real} sf_ad = {history}[sf_at + sf_j];")?;
                        }
                        let texts = self.print_synapse(d, &del.arena, &roots, w)?;
                        writeln!(w, "sf_synaptic += {} * sf_ad;", texts[0])?;
                        if del.grads.is_empty() {
                            return Ok(());
                        }
                        grads(w, &texts[1..])
                    },
                )
            })?;
            if !shared.iter().any(|x| *x) {
                return Ok(());
            }
            // sf_fired is the warp's: the lanes shuffle together.
            w.block("if (sf_fired)", |w| {
                for (k, ((v, _), sh)) in del.grads.iter().zip(&shared).enumerate() {
                    if !*sh {
                        continue;
                    }
                    let sym = proj.synapses.group.symbol(*v);
                    let g = self.output(&proj.name, &format!("grad:{}", sym.name));
                    writeln!(w, "sf_gw{k} = {};", self.warp_sum(&format!("sf_gw{k}")))?;
                    writeln!(
                        w,
                        "{}{}",
                        self.lane0(),
                        self.accumulate(&format!("{g}[0]"), &format!("sf_gw{k}"))
                    )?;
                }
                Ok(())
            })
        })
    }
}

/// The named dimensions of a buffer, for the handler's checks.
pub fn concrete_shape(a: &NetAdjointArg, steps: usize, n_syn: usize) -> Vec<i64> {
    a.shape
        .iter()
        .map(|d| match d {
            Dim::Fixed(x) => *x as i64,
            Dim::Named("steps") => steps as i64,
            Dim::Named(_) => n_syn as i64,
        })
        .collect()
}

/// Maps each projection's name to its index (the handler's synapse counts come in that order).
pub fn projection_order(net: &NetworkIr) -> HashMap<String, usize> {
    net.projections
        .iter()
        .enumerate()
        .map(|(k, p)| (p.name.clone(), k))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::cuda_threads;

    /// COBA x1 (one group of 4000, 3200 excitatory rows, segments of 32): a warp for each
    /// neuron of the walk back (4000 warps; 3200, a warp a row, left 800 warps two neurons).
    #[test]
    fn the_grid_gives_each_neuron_of_the_walk_back_a_warp() {
        assert_eq!(cuda_threads(4000, 4000, 3200, 32), 128_000);
        assert_eq!(cuda_threads(4000, 3000, 800, 200), 160_000);
        assert_eq!(cuda_threads(100_000, 100_000, 0, 32), 3_200_000);
    }
}
