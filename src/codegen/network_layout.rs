//! The argument layout of a network run: which buffers, in which order, of which shape, owned by
//! which object of the network. Defined once here; the generated kernels, the FFI handler and
//! (through `sf_network_compile`) the Python shim follow it (docs/NETWORKS.md, "Layout").
//!
//! Every buffer has a leading batch axis (`nb` independent networks, `jax.vmap`) unless it is
//! connectivity (`batched: false`: one connectivity for all members). Shapes are given without
//! that axis; a dimension is a number, or a name for a size known only at the call: `n_syn` (the
//! projection's synapses), `steps`, `records` (`ceil(steps / every)` of a state monitor).
//! Identifiers in generated code are made from positions only (`g0_v2`: group 0, symbol 2), so
//! no name a user wrote reaches the source.

use serde::{Serialize, Serializer};

use super::network_kernel::accumulated;
use crate::ir::network::{MonitorIr, NetGroupKind, NetworkIr, Recorded};
use crate::ir::synapses::Pathway;
use crate::ir::{GroupIr, RefractoryIr, SymbolKind, VarId};
use crate::step::network::{Delivery, NetworkPlan};
use crate::types::ElemType;

/// A dimension of a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Dim {
    Fixed(usize),
    /// `"n_syn"`, `"steps"` or `"records"`.
    Sized(&'static str),
}

/// What a buffer holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NetRole {
    /// The step counter at the start of the run (`state["t_step"]`).
    StartStep,
    /// The seed of every random stream (`state["rng_seed"]`).
    Seed,
    State,
    Param,
    LastspikeStep,
    NotRefractory,
    PerNeuronConstant,
    /// A Poisson group's rate per neuron (1/ms).
    Rates,
    /// A spike generator's neuron indices, sorted by step (Brian2's order: by time, then index).
    SpikeIndices,
    /// A spike generator's steps (`int((t + 1e-3 dt) / dt)`, within the period if there is one).
    SpikeSteps,
    /// A spike generator's position in its spikes.
    SpikeCursor,
    /// The spike queue: the compacted spiking indices of the last `depth` steps.
    SpikeQueue,
    SpikeQueueCounts,
    RowOffsets,
    Targets,
    DelayBuckets,
    /// The by-post index of a projection with `on_post`: `post_offsets[j]..post_offsets[j + 1]`
    /// index `post_synapses`, the synapses onto target `j` (ascending creation order).
    PostOffsets,
    PostSynapses,
    /// The presynaptic index (within the source range) of each synapse (for `on_post`).
    Sources,
    /// A per-synapse parameter (`w`), in CSR order.
    SynapseParam,
    /// A `(shared)` synaptic parameter.
    SharedParam,
    TimedArray,
    /// Spikes per neuron during the run.
    SpikeCount,
    MonitorIndex,
    MonitorStep,
    MonitorCount,
    MonitorDropped,
    MonitorTrace,
    MonitorRate,
    /// Scratch memory of the kernels (dropped after the call).
    Work,
}

/// One buffer of the call.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NetArg {
    /// The object that owns it: a group, projection, TimedArray or monitor name; `""` for the
    /// network's own entries (`t_step`, `rng_seed`, `work`).
    pub owner: String,
    /// Its key within the owner (`v`, `spike_queue`, `row_offsets`, `w`, `i`, ...).
    pub name: String,
    pub role: NetRole,
    /// `"real"` for the network's dtype, else the type's name.
    #[serde(serialize_with = "elem_json")]
    pub elem: ElemType,
    pub shape: Vec<Dim>,
    pub batched: bool,
    /// The identifier in generated code.
    #[serde(skip)]
    pub ident: String,
    /// Group or projection index, and symbol, where there is one.
    #[serde(skip)]
    pub at: Option<(usize, VarId)>,
}

fn elem_json<S: Serializer>(elem: &ElemType, s: S) -> Result<S::Ok, S::Error> {
    if elem.is_float() {
        s.serialize_str("real")
    } else {
        elem.serialize(s)
    }
}

/// Where each scratch region starts in the `work` buffer (in int32 words, per batch member).
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize)]
pub struct WorkLayout {
    /// Two write cursors per group (the spike counts being compacted, by step parity).
    pub cursors: usize,
    /// One ticket counter per member (ordered compaction's dynamic block ids).
    pub tickets: usize,
    /// One 64-bit status word per update block (ordered compaction's look-back), 2 words each.
    pub status: usize,
    /// Arrival counts of counted projections, per counted statement: `(n_post,)` each.
    pub arrivals: Vec<usize>,
    /// Spike flags of groups whose reset runs after delivery, `(n,)` each (by group).
    pub spiked: Vec<Option<usize>>,
    /// The sums of `(summed)` variables between the sums phase and the update (real values,
    /// 1 or 2 words each): one region per summed variable, in [`summed_variables`] order, of
    /// its range's length.
    pub sums: Vec<usize>,
    /// The persistent kernel's grid barrier (`codegen::network_kernel::grid`), zeroed with the
    /// rest at the start of a call: a release word, a top counter and [`BARRIER_GROUPS`] group
    /// counters (64-bit), each on a line of [`BARRIER_LINE_WORDS`] words. After the state's
    /// regions, with the accumulators: the resident kernel, which uses neither, keeps only the
    /// words before it ([`WorkLayout::resident_words`]).
    pub barrier: usize,
    /// The ring buffers of arrivals of the pathways delivered at emission, one per target
    /// variable, in [`rings`] order: `slots x n` reals each (slot `T mod slots` holds what
    /// arrives at step `T`), last in the buffer.
    pub rings: Vec<usize>,
    /// The one-barrier grid kernel's accumulators (`codegen::network_kernel::grid`), per
    /// accumulated variable in [`accumulated`] order: two regions of its group's length (real
    /// values, by step parity). After the barrier, before the rings.
    pub accumulators: Vec<usize>,
    /// Words per member.
    pub words: usize,
}

impl WorkLayout {
    /// The words the resident kernel keeps in shared memory: those before the grid barrier's,
    /// the accumulators and the rings (which stay in global memory).
    pub fn resident_words(&self) -> usize {
        self.barrier
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NetLayout {
    pub inputs: Vec<NetArg>,
    pub outputs: Vec<NetArg>,
    pub scratch: Vec<NetArg>,
    #[serde(skip)]
    pub work: WorkLayout,
}

/// Group counters of the grid barrier (see [`WorkLayout::barrier`]).
pub const BARRIER_GROUPS: usize = 64;
/// Words between the grid barrier's words: 128 bytes, a line of the caches.
pub const BARRIER_LINE_WORDS: usize = 32;

/// Threads per block of the per-neuron kernels; each group starts on a block of its own.
pub const UPDATE_BLOCK: usize = 128;

/// Blocks of the update kernel for a group of `n` neurons.
pub fn blocks(n: usize) -> usize {
    n.div_ceil(UPDATE_BLOCK)
}

/// Blocks of the update kernel for a group: one per `UPDATE_BLOCK` neurons; one for a spike
/// generator (its spikes are read in order by one thread).
pub fn update_blocks(g: &crate::ir::network::NetGroup) -> usize {
    match g.kind {
        NetGroupKind::SpikeGenerator { .. } => 1,
        _ => blocks(g.n),
    }
}

struct Builder<'a> {
    net: &'a NetworkIr,
    real: ElemType,
}

impl Builder<'_> {
    fn arg(
        &self,
        owner: &str,
        name: &str,
        role: NetRole,
        elem: ElemType,
        shape: Vec<Dim>,
        ident: String,
    ) -> NetArg {
        NetArg {
            owner: owner.to_string(),
            name: name.to_string(),
            role,
            elem,
            shape,
            batched: !matches!(
                role,
                NetRole::RowOffsets
                    | NetRole::Targets
                    | NetRole::DelayBuckets
                    | NetRole::PostOffsets
                    | NetRole::PostSynapses
                    | NetRole::Sources
            ),
            ident,
            at: None,
        }
    }

    fn group_var(&self, g: usize, ir: &GroupIr, v: VarId, role: NetRole) -> NetArg {
        let group = &self.net.groups[g];
        let sym = ir.symbol(v);
        let shape = if sym.shared {
            vec![]
        } else {
            vec![Dim::Fixed(group.n)]
        };
        let mut a = self.arg(
            &group.name,
            &sym.name,
            role,
            self.real,
            shape,
            format!("g{g}_v{}", v.0),
        );
        a.at = Some((g, v));
        a
    }
}

/// The identifier of a group's variable in generated code.
pub fn group_var_ident(g: usize, v: VarId) -> String {
    format!("g{g}_v{}", v.0)
}

/// The identifier of a projection's per-synapse or shared parameter.
pub fn synapse_var_ident(p: usize, v: VarId) -> String {
    format!("p{p}_v{}", v.0)
}

/// The layout of `net` under `plan`.
pub fn layout(net: &NetworkIr, plan: &NetworkPlan) -> NetLayout {
    let b = Builder {
        net,
        real: net.dtype,
    };
    let i32_ = ElemType::I32;
    let mut inputs = vec![b.arg(
        "",
        "t_step",
        NetRole::StartStep,
        i32_,
        vec![],
        "sf_t_step".into(),
    )];
    if needs_seed(net) {
        inputs.push(b.arg(
            "",
            "rng_seed",
            NetRole::Seed,
            i32_,
            vec![],
            "sf_rng_seed".into(),
        ));
    }
    let mut outputs = Vec::new();
    for (g, group) in net.groups.iter().enumerate() {
        let name = group.name.as_str();
        let n = group.n;
        let gp = &plan.groups[g];
        match &group.kind {
            NetGroupKind::Neuron { ir, .. } => {
                for v in ir.stored() {
                    inputs.push(b.group_var(g, ir, v, NetRole::State));
                    outputs.push(b.group_var(g, ir, v, NetRole::State));
                }
                let mut written: Vec<VarId> = ir.written_params();
                written.extend(
                    gp.written
                        .iter()
                        .filter(|v| ir.symbol(**v).kind == SymbolKind::Param),
                );
                written.sort();
                written.dedup();
                for v in ir.vars_of_kind(&SymbolKind::Param) {
                    inputs.push(b.group_var(g, ir, v, NetRole::Param));
                    if written.contains(&v) {
                        outputs.push(b.group_var(g, ir, v, NetRole::Param));
                    }
                }
                let mut refractory = Vec::new();
                if gp.lastspike {
                    refractory.push(b.arg(
                        name,
                        "lastspike_step",
                        NetRole::LastspikeStep,
                        i32_,
                        vec![Dim::Fixed(n)],
                        format!("g{g}_lastspike"),
                    ));
                }
                if let RefractoryIr::Condition(_) = ir.events.refractory {
                    refractory.push(b.arg(
                        name,
                        "not_refractory",
                        NetRole::NotRefractory,
                        ElemType::Bool,
                        vec![Dim::Fixed(n)],
                        format!("g{g}_not_refractory"),
                    ));
                }
                inputs.extend(refractory.clone());
                outputs.extend(refractory);
                for v in ir.vars_of_kind(&SymbolKind::PerNeuronConstant) {
                    inputs.push(b.group_var(g, ir, v, NetRole::PerNeuronConstant));
                }
            }
            NetGroupKind::Poisson { rates, .. } => {
                if rates.is_none() {
                    inputs.push(b.arg(
                        name,
                        "rates",
                        NetRole::Rates,
                        b.real,
                        vec![Dim::Fixed(n)],
                        format!("g{g}_rates"),
                    ));
                }
            }
            NetGroupKind::SpikeGenerator { n_spikes, .. } => {
                let k = *n_spikes;
                inputs.push(b.arg(
                    name,
                    "indices",
                    NetRole::SpikeIndices,
                    i32_,
                    vec![Dim::Fixed(k)],
                    format!("g{g}_sg_index"),
                ));
                inputs.push(b.arg(
                    name,
                    "steps",
                    NetRole::SpikeSteps,
                    i32_,
                    vec![Dim::Fixed(k)],
                    format!("g{g}_sg_step"),
                ));
                let cursor = b.arg(
                    name,
                    "cursor",
                    NetRole::SpikeCursor,
                    i32_,
                    vec![],
                    format!("g{g}_sg_cursor"),
                );
                inputs.push(cursor.clone());
                outputs.push(cursor);
            }
        }
        if gp.depth > 0 {
            let queue = b.arg(
                name,
                "spike_queue",
                NetRole::SpikeQueue,
                i32_,
                vec![Dim::Fixed(gp.depth), Dim::Fixed(n)],
                format!("g{g}_queue"),
            );
            let counts = b.arg(
                name,
                "spike_queue_counts",
                NetRole::SpikeQueueCounts,
                i32_,
                vec![Dim::Fixed(gp.depth)],
                format!("g{g}_queue_count"),
            );
            inputs.extend([queue.clone(), counts.clone()]);
            outputs.extend([queue, counts]);
        }
        outputs.push(b.arg(
            name,
            "spike_count",
            NetRole::SpikeCount,
            i32_,
            vec![Dim::Fixed(n)],
            format!("g{g}_spike_count"),
        ));
    }
    for (p, proj) in net.projections.iter().enumerate() {
        let name = proj.name.as_str();
        let s = &proj.synapses;
        let n_pre = proj.n_pre();
        inputs.push(b.arg(
            name,
            "row_offsets",
            NetRole::RowOffsets,
            i32_,
            vec![Dim::Fixed(n_pre + 1)],
            format!("p{p}_rows"),
        ));
        inputs.push(b.arg(
            name,
            "targets",
            NetRole::Targets,
            i32_,
            vec![Dim::Sized("n_syn")],
            format!("p{p}_targets"),
        ));
        if let Some((_, max_steps)) = s.row_delay() {
            let buckets = n_pre * (max_steps as usize + 1) + 1;
            inputs.push(b.arg(
                name,
                "delay_buckets",
                NetRole::DelayBuckets,
                i32_,
                vec![Dim::Fixed(buckets)],
                format!("p{p}_buckets"),
            ));
        }
        if s.by_post_index() {
            for (key, role, shape, ident) in [
                (
                    "post_offsets",
                    NetRole::PostOffsets,
                    Dim::Fixed(proj.n_post() + 1),
                    "post_rows",
                ),
                (
                    "post_synapses",
                    NetRole::PostSynapses,
                    Dim::Sized("n_syn"),
                    "post_syn",
                ),
                ("sources", NetRole::Sources, Dim::Sized("n_syn"), "sources"),
            ] {
                inputs.push(b.arg(name, key, role, i32_, vec![shape], format!("p{p}_{ident}")));
            }
        }
        let written = s.synapse_written();
        for v in s.per_synapse() {
            let mut a = b.arg(
                name,
                &s.group.symbol(v).name,
                NetRole::SynapseParam,
                b.real,
                vec![Dim::Sized("n_syn")],
                synapse_var_ident(p, v),
            );
            a.at = Some((p, v));
            inputs.push(a.clone());
            if written.contains(&v) {
                outputs.push(a);
            }
        }
        for v in s.shared() {
            let mut a = b.arg(
                name,
                &s.group.symbol(v).name,
                NetRole::SharedParam,
                b.real,
                vec![],
                synapse_var_ident(p, v),
            );
            a.at = Some((p, v));
            inputs.push(a);
        }
    }
    for (k, t) in net.tables.iter().enumerate() {
        let mut shape = vec![Dim::Fixed(t.rows)];
        shape.extend(t.columns.map(Dim::Fixed));
        inputs.push(b.arg(
            &t.name,
            "values",
            NetRole::TimedArray,
            b.real,
            shape,
            format!("ta{k}"),
        ));
    }
    for (m, mon) in net.monitors.iter().enumerate() {
        let name = mon.name();
        match mon {
            MonitorIr::Spike { capacity, .. } => {
                let buffer = vec![Dim::Fixed(*capacity)];
                for (key, role, shape, ident) in [
                    ("i", NetRole::MonitorIndex, buffer.clone(), "i"),
                    ("t_step", NetRole::MonitorStep, buffer, "step"),
                    ("count", NetRole::MonitorCount, vec![], "count"),
                    ("dropped", NetRole::MonitorDropped, vec![], "dropped"),
                ] {
                    outputs.push(b.arg(name, key, role, i32_, shape, format!("m{m}_{ident}")));
                }
            }
            MonitorIr::State {
                group,
                variables,
                record,
                ..
            } => {
                let n_rec = match record {
                    Recorded::All => net.groups[*group].n,
                    Recorded::Indices(list) => list.len(),
                };
                for (k, v) in variables.iter().enumerate() {
                    outputs.push(b.arg(
                        name,
                        v,
                        NetRole::MonitorTrace,
                        b.real,
                        vec![Dim::Sized("records"), Dim::Fixed(n_rec)],
                        format!("m{m}_x{k}"),
                    ));
                }
            }
            MonitorIr::Rate { .. } => {
                outputs.push(b.arg(
                    name,
                    "rate",
                    NetRole::MonitorRate,
                    b.real,
                    vec![Dim::Sized("steps")],
                    format!("m{m}_rate"),
                ));
            }
        }
    }
    let work = work_layout(net, plan);
    let scratch = vec![b.arg(
        "",
        "work",
        NetRole::Work,
        i32_,
        vec![Dim::Fixed(work.words)],
        "sf_work".into(),
    )];
    NetLayout {
        inputs,
        outputs,
        scratch,
        work,
    }
}

/// Whether anything draws random numbers (noise, Poisson groups and inputs).
pub fn needs_seed(net: &NetworkIr) -> bool {
    !net.poisson_inputs.is_empty()
        || net.groups.iter().any(|g| match &g.kind {
            NetGroupKind::Neuron { ir, .. } => !ir.noise.is_empty(),
            NetGroupKind::Poisson { .. } => true,
            NetGroupKind::SpikeGenerator { .. } => false,
        })
}

/// The statements whose arrivals are counted: (projection, pathway, statement) in order.
pub fn counted_statements(net: &NetworkIr, plan: &NetworkPlan) -> Vec<(usize, usize, usize)> {
    net.projections
        .iter()
        .enumerate()
        .filter(|(p, _)| plan.projections[*p].delivery == Delivery::Counted)
        .flat_map(|(p, proj)| {
            let s = &proj.synapses;
            s.pathways_of(Pathway::Pre)
                .flat_map(move |k| (0..s.statements(k).len()).map(move |st| (p, k, st)))
        })
        .collect()
}

/// A ring buffer of arrivals: what the pathways delivered at emission
/// ([`crate::step::network::at_emission`]) add to one variable of one group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ring {
    pub group: usize,
    pub var: VarId,
    /// Steps it holds: the longest delay of its pathways + 1. The delivery of step t adds into
    /// the slots of steps t..=t + longest; the after-delivery phase of step t takes slot t,
    /// before (a kernel boundary or a barrier) the delivery of step t + 1 adds into it again
    /// (as step t + 1 + longest).
    pub slots: usize,
    /// (projection, pathway, statement) of the statements that add into it, in order.
    pub statements: Vec<(usize, usize, usize)>,
}

/// The ring buffers of the network, by (group, variable) in order of first use.
pub fn rings(net: &NetworkIr, plan: &NetworkPlan) -> Vec<Ring> {
    let mut out: Vec<Ring> = Vec::new();
    for (p, proj) in net.projections.iter().enumerate() {
        let s = &proj.synapses;
        for k in (0..s.pathways.len()).filter(|k| plan.projections[p].at_emission[*k]) {
            let slots = s.pathways[k].delay.max_steps() as usize + 1;
            for (st, statement) in s.statements(k).iter().enumerate() {
                let Some((_, var)) = s.neighbour(statement.var) else {
                    unreachable!("a statement delivered at emission adds to the target")
                };
                match out
                    .iter_mut()
                    .find(|r| r.group == proj.target && r.var == var)
                {
                    Some(r) => {
                        r.slots = r.slots.max(slots);
                        r.statements.push((p, k, st));
                    }
                    None => out.push(Ring {
                        group: proj.target,
                        var,
                        slots,
                        statements: vec![(p, k, st)],
                    }),
                }
            }
        }
    }
    out
}

/// Every `(summed)` variable as (projection, index in its list), in order.
pub fn summed_variables(net: &NetworkIr) -> Vec<(usize, usize)> {
    net.projections
        .iter()
        .enumerate()
        .flat_map(|(p, proj)| (0..proj.synapses.summed.len()).map(move |k| (p, k)))
        .collect()
}

fn work_layout(net: &NetworkIr, plan: &NetworkPlan) -> WorkLayout {
    let mut at = 0usize;
    let mut take = |words: usize| {
        let start = at;
        // Regions start on 8-byte boundaries (the status words are 64-bit).
        at += words.div_ceil(2) * 2;
        start
    };
    let cursors = take(2 * net.groups.len());
    let tickets = take(1);
    let n_blocks: usize = net.groups.iter().map(update_blocks).sum();
    let status = take(2 * n_blocks);
    let arrivals = counted_statements(net, plan)
        .into_iter()
        .map(|(p, _, _)| take(net.projections[p].n_post()))
        .collect();
    let spiked = net
        .groups
        .iter()
        .zip(&plan.groups)
        .map(|(g, gp)| gp.late_reset.then(|| take(g.n)))
        .collect();
    let words_per_real = net.dtype.size().div_ceil(4);
    let sums = summed_variables(net)
        .into_iter()
        .map(|(p, k)| {
            let proj = &net.projections[p];
            let n = match proj.synapses.summed[k].side {
                crate::ir::IndexOf::Pre => proj.n_pre(),
                _ => proj.n_post(),
            };
            take(n * words_per_real)
        })
        .collect();
    let barrier = take((2 + BARRIER_GROUPS) * BARRIER_LINE_WORDS);
    let accumulators = accumulated(net, plan)
        .into_iter()
        .map(|(g, _)| take(2 * net.groups[g].n * words_per_real))
        .collect();
    let rings = rings(net, plan)
        .into_iter()
        .map(|r| take(r.slots * net.groups[r.group].n * words_per_real))
        .collect();
    WorkLayout {
        sums,
        cursors,
        tickets,
        status,
        arrivals,
        spiked,
        barrier,
        accumulators,
        rings,
        words: at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::NetworkSpec;

    #[test]
    fn lays_out_state_connectivity_and_monitors_in_order() {
        let spec =
            NetworkSpec::from_json(crate::frontend::network::tests_support::COBA_LIKE).unwrap();
        let net = crate::frontend::network::lower(&spec).unwrap();
        let plan = crate::step::network::plan(&net);
        let l = layout(&net, &plan);
        let names: Vec<String> = l
            .inputs
            .iter()
            .map(|a| format!("{}.{}", a.owner, a.name))
            .collect();
        assert_eq!(
            names,
            [
                ".t_step",
                ".rng_seed",
                "P.v",
                "P.ge",
                "P.lastspike_step",
                "P.spike_queue",
                "P.spike_queue_counts",
                "pg.spike_queue",
                "pg.spike_queue_counts",
                "Ce.row_offsets",
                "Ce.targets",
                "In.row_offsets",
                "In.targets",
                "In.delay_buckets",
                "In.w",
                "In.d"
            ]
        );
        let buckets = &l.inputs[13];
        assert_eq!(buckets.shape, [Dim::Fixed(4 * 21 + 1)]);
        assert!(!buckets.batched && l.inputs[14].batched);
        let outs: Vec<String> = l
            .outputs
            .iter()
            .map(|a| format!("{}.{}", a.owner, a.name))
            .collect();
        assert!(outs.contains(&"vm.ge".to_string()) && outs.contains(&"sp.dropped".to_string()));
        let json = serde_json::to_value(&l).unwrap();
        assert_eq!(json["inputs"][13]["shape"], serde_json::json!([85]));
        assert_eq!(json["inputs"][10]["shape"], serde_json::json!(["n_syn"]));
        assert_eq!(json["inputs"][2]["elem"], "real");
        assert_eq!(l.scratch.len(), 1);
    }
}
