//! `spikeforge_network_run`: runs a network (docs/NETWORKS.md) for `steps` steps.
//!
//! Attributes: `spec` (the network spec JSON), `key` (its hash), `steps`. Buffers follow
//! [`crate::codegen::network_layout`]: the inputs, then the outputs and the work buffer as
//! results. Instantiation (once per call site) parses the spec, checks the key, lowers it, plans
//! the step and lays out the arguments. An execution checks the buffers (reading the batch size
//! from `t_step` and each projection's synapse count from its `targets`), starts the outputs from
//! the input state (a copy, skipped when XLA aliases them), zeroes the run's counters and the
//! work buffer, and runs: on the CPU one call of the C entry per batch member range; on CUDA the
//! path that `handlers::network_path` chooses from the spec's `strategy`, the network's size and
//! the device: per step, the update, delivery and (when needed) after-delivery kernels; or the
//! persistent kernel once for every step, as one block per member or as a cooperative grid. All
//! on XLA's stream, with grids fixed by the network and the device, so every execution enqueues
//! the same work (no allocation, no synchronisation) and XLA may capture it into a CUDA graph.

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::Arc;

use super::buffers::{self, Expected, SharedPtr};
use super::loaded_kernels::LoadedKernels;
use super::network_checkpoints as checkpoints;
use super::network_path::{self, Path};
use super::neuron_run::{cpu_options, cuda_options};
use super::poison;
use crate::codegen::network_kernel::{
    self, BarrierVariant, StepGrid, DELIVER_BLOCK, PERSISTENT_BLOCK,
};
use crate::codegen::network_layout::{self, Dim, NetArg, NetLayout, NetRole, UPDATE_BLOCK};
use crate::codegen::Dialect;
use crate::ir::network::{MonitorIr, NetworkIr};
use crate::runtime::{cpu, cuda, settings};
use crate::spec::NetworkSpec;
use crate::step::network::{self as plan, NetworkPlan};
use crate::xla::{Buffer, CallFrame, DataType, FfiError, Handler, HandlerTraits, Instance};

/// A kernel's parameter space: the classic 4 KiB (newer drivers allow more; this stays portable).
const PARAM_BYTES: usize = 4096;

/// The network of a call site: lowered, planned and laid out.
struct Network {
    net: NetworkIr,
    plan: NetworkPlan,
    layout: NetLayout,
    /// The CUDA kernels' launch shape.
    shape: network_kernel::KernelShape,
    /// Where the resident kernel keeps the state in shared memory.
    resident: network_kernel::ResidentLayout,
    /// `every` of the state monitors, by name (their traces have `ceil(steps / every)` rows).
    every: HashMap<String, usize>,
    /// How CUDA runs are launched (the spec's `strategy`).
    strategy: crate::spec::Strategy,
    /// The cluster kernel's shape, where the source has one (the last of [`entries`]).
    cluster: Option<network_kernel::ClusterShape>,
    /// Whether the cluster kernel counts every arrival (`network_kernel::cluster_counts`).
    counts_every_arrival: bool,
    /// The one-barrier kernel's register slots at [`PERSISTENT_BLOCK`] (0: none).
    register_slots: usize,
}

impl Network {
    fn prepare(spec: &str, key: &str) -> Result<Network, FfiError> {
        let spec = NetworkSpec::from_json(spec)
            .map_err(|e| FfiError::invalid_argument(format!("attribute 'spec': {e}")))?;
        if spec.key() != key {
            return Err(FfiError::invalid_argument(
                "attribute 'key' does not match attribute 'spec'",
            ));
        }
        let net = crate::codegen::prepare_network(&spec)?;
        let plan = plan::plan(&net);
        let layout = network_layout::layout(&net, &plan);
        let pointers = layout.inputs.len() + layout.outputs.len() + 1;
        // The persistent kernel's scalars: three int32 (padded to 16 bytes), then the counts.
        let bytes = 16 + 8 * net.projections.len() + 8 * pointers;
        if bytes > PARAM_BYTES {
            return Err(FfiError::invalid_argument(format!(
                "the network has {pointers} buffers and {} projections: its kernels' parameters take {bytes} bytes, more than the {PARAM_BYTES} one launch passes (merge groups into one, or projections between the same groups)",
                net.projections.len()
            )));
        }
        let every = net
            .monitors
            .iter()
            .filter_map(|m| match m {
                MonitorIr::State { name, every, .. } => Some((name.clone(), *every as usize)),
                _ => None,
            })
            .collect();
        let shape = network_kernel::kernel_shape(&net, &plan);
        let resident = network_kernel::resident_layout(&layout, shape.segments);
        // Properties of the network that every call's choice of path reads, found once.
        let cluster = network_kernel::cluster_shape(&net, &plan);
        let counts_every_arrival = network_kernel::cluster_counts_every_arrival(&net, &plan);
        let register_slots = network_kernel::register_slots(&net, &plan, PERSISTENT_BLOCK);
        Ok(Network {
            net,
            plan,
            layout,
            shape,
            resident,
            every,
            strategy: spec.strategy,
            cluster,
            counts_every_arrival,
            register_slots,
        })
    }

    fn source(&self, dialect: Dialect) -> String {
        network_kernel::generate(&self.net, &self.plan, &self.layout, dialect).source
    }
}

/// The C entry point: `(member start, member end, dims, inputs, outputs, work)`.
type CEntry =
    unsafe extern "C" fn(i64, i64, *const i64, *const *mut c_void, *const *mut c_void, *mut i32);

type CpuKernel = super::loaded_kernels::CpuKernel<CEntry>;

/// The CUDA kernels of one stream, in launch order.
type CudaKernels = Arc<Vec<Arc<cuda::CudaFunction>>>;

/// One call site of `spikeforge_network_run`.
pub struct NetworkRun {
    key: String,
    network: Network,
    steps: usize,
    /// Steps between the checkpoints the call returns (`network_checkpoints`; 0: none).
    checkpoint_every: usize,
    kernels: LoadedKernels<CpuKernel, CudaKernels>,
}

impl Instance for NetworkRun {
    fn instantiate(call: &CallFrame) -> Result<NetworkRun, FfiError> {
        let attrs = call.attrs()?;
        let key = attrs.get_str("key")?;
        let network = Network::prepare(attrs.get_str("spec")?, key)?;
        let steps = attrs.get_usize("steps")?;
        if steps == 0 || steps > i32::MAX as usize {
            return Err(FfiError::invalid_argument(format!(
                "attribute 'steps': must be in 1..=2^31-1, got {steps}"
            )));
        }
        let checkpoint_every = match attrs.get("checkpoint_every") {
            Some(_) => attrs.get_usize("checkpoint_every")?,
            None => 0,
        };
        if checkpoint_every > 0 {
            if let Some(why) = checkpoints::refusal(&network.layout) {
                return Err(FfiError::invalid_argument(why));
            }
        }
        Ok(NetworkRun {
            key: key.to_owned(),
            network,
            steps,
            checkpoint_every,
            kernels: LoadedKernels::new(),
        })
    }
}

/// The buffers of one call, checked, with the sizes read from them.
struct Run<'a> {
    /// Batch members.
    nb: usize,
    /// Synapses of each projection.
    n_syn: Vec<i64>,
    args: Vec<*mut c_void>,
    /// The outputs, then the work buffer.
    rets: Vec<Buffer<'a>>,
    /// The checkpoints (`network_checkpoints`), one for each checkpointed output.
    checkpoints: Vec<Buffer<'a>>,
}

/// The dims a layout entry must have in this call.
fn dims_of(a: &NetArg, nb: i64, n_syn: i64, rows: i64, steps: i64) -> Vec<i64> {
    let mut dims = Vec::with_capacity(a.shape.len() + 1);
    if a.batched {
        dims.push(nb);
    }
    dims.extend(a.shape.iter().map(|d| match d {
        Dim::Fixed(n) => *n as i64,
        Dim::Sized("n_syn") => n_syn,
        Dim::Sized("records") => rows,
        Dim::Sized(_) => steps,
    }));
    dims
}

fn decode<'a>(call: &CallFrame<'a>, site: &NetworkRun) -> Result<Run<'a>, FfiError> {
    let network = &site.network;
    let layout = &network.layout;
    let t_step = call.arg(0)?;
    let nb = match t_step.dims {
        [nb] if *nb > 0 && *nb <= 65_535 => *nb,
        _ => {
            return Err(FfiError::invalid_argument(format!(
                "argument 't_step': expected int32[nb] with 1 <= nb <= 65535, got {t_step}"
            )))
        }
    };
    // Each projection's synapse count, from its `targets` (in projection order).
    let mut n_syn = Vec::new();
    for (k, a) in layout.inputs.iter().enumerate() {
        if a.role == NetRole::Targets {
            let b = call.arg(k)?;
            match b.dims {
                [n] if *n >= 0 && *n <= i32::MAX as i64 => n_syn.push(*n),
                _ => {
                    return Err(FfiError::invalid_argument(format!(
                        "argument '{}.targets': expected int32[n_syn] with n_syn < 2^31, got {b}",
                        a.owner
                    )))
                }
            }
        }
    }
    let projection = |owner: &str| {
        network
            .net
            .projections
            .iter()
            .position(|p| p.name == owner)
            .map_or(0, |p| n_syn[p])
    };
    let steps = site.steps as i64;
    let rows = |owner: &str| {
        let every = network.every.get(owner).copied().unwrap_or(1) as i64;
        (steps + every - 1) / every
    };
    let expect = |list: &[NetArg]| -> Vec<(String, DataType, Vec<i64>)> {
        list.iter()
            .map(|a| {
                (
                    if a.owner.is_empty() {
                        a.name.clone()
                    } else {
                        format!("{}.{}", a.owner, a.name)
                    },
                    DataType::from(a.elem),
                    dims_of(a, nb, projection(&a.owner), rows(&a.owner), steps),
                )
            })
            .collect()
    };
    let inputs = expect(&layout.inputs);
    let mut outputs = expect(&layout.outputs);
    let n_out = outputs.len();
    let segments = checkpoints::segments(site.steps, site.checkpoint_every).len() as i64;
    if site.checkpoint_every > 0 {
        let stored: Vec<_> = checkpoints::checkpointed(layout)
            .into_iter()
            .map(|k| {
                let (name, dtype, dims) = &outputs[k];
                let mut dims = dims.clone();
                dims.insert(1, segments);
                (format!("{name} checkpoints"), *dtype, dims)
            })
            .collect();
        outputs.extend(stored);
    }
    outputs.extend(expect(&layout.scratch));
    let checked = buffers::check(call, &view(&inputs), &view(&outputs))?;
    let mut rets = checked.rets;
    let checkpoints = rets
        .drain(n_out..n_out + outputs.len() - n_out - layout.scratch.len())
        .collect();
    Ok(Run {
        nb: nb as usize,
        n_syn,
        args: checked.args,
        rets,
        checkpoints,
    })
}

/// The expectations as [`buffers::check`] takes them.
fn view(list: &[(String, DataType, Vec<i64>)]) -> Vec<Expected<'_>> {
    list.iter()
        .map(|(name, dtype, dims)| Expected {
            name,
            dtype: *dtype,
            dims,
        })
        .collect()
}

/// How a run starts each result (outputs, then the work buffer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// A copy of this input: the state the run advances.
    Copy(usize),
    /// Every byte this value: counters 0, unused monitor entries -1 (`0xFF`).
    Fill(u8),
    /// Written by the kernels at every position (traces, rates).
    Written,
}

/// What each result starts from (outputs, then scratch).
pub fn starts(layout: &NetLayout) -> Vec<Start> {
    layout
        .outputs
        .iter()
        .chain(&layout.scratch)
        .map(|o| {
            let input = layout
                .inputs
                .iter()
                .position(|i| i.owner == o.owner && i.name == o.name && i.role == o.role);
            match (input, o.role) {
                (Some(k), _) => Start::Copy(k),
                (None, NetRole::MonitorIndex | NetRole::MonitorStep) => Start::Fill(0xFF),
                (None, NetRole::MonitorTrace | NetRole::MonitorRate) => Start::Written,
                (None, _) => Start::Fill(0),
            }
        })
        .collect()
}

/// The results the kernels must write at every position, the ones `SPIKEFORGE_POISON_OUTPUTS`
/// fills first (the others start as a copy of the state, which may be the same buffer when XLA
/// aliases them, or with a fill).
fn written<'r, 'a>(
    rets: &'r [Buffer<'a>],
    starts: &'r [Start],
) -> impl Iterator<Item = &'r Buffer<'a>> {
    rets.iter()
        .zip(starts)
        .filter(|(_, s)| **s == Start::Written)
        .map(|(b, _)| b)
}

/// `spikeforge_network_run` on the CPU: the C entry, batch members spread over the cores.
pub struct NetworkRunCpu;

impl Handler for NetworkRunCpu {
    type Instance = NetworkRun;
    const TRAITS: HandlerTraits = HandlerTraits::NONE;

    fn execute(call: &CallFrame<'_>, site: &NetworkRun) -> Result<(), FfiError> {
        let run = decode(call, site)?;
        // SAFETY: `CEntry` is the generated entry's signature.
        let kernel = unsafe {
            site.kernels.cpu_keyed(
                &site.key,
                network_kernel::C_ENTRY,
                &cpu_options(site.network.net.fast_math),
                || site.network.source(Dialect::C),
            )
        }?;
        // The step counter must not pass int32 within the run.
        // SAFETY: `t_step` is a host int32[nb] buffer (checked).
        let t0 = unsafe { std::slice::from_raw_parts(run.args[0].cast::<i32>(), run.nb) };
        if let Some(t) = t0
            .iter()
            .find(|t| **t < 0 || (**t as i64) + site.steps as i64 > i32::MAX as i64)
        {
            return Err(FfiError::invalid_argument(format!(
                "t_step {t} + {} steps is outside 0..2^31-1",
                site.steps
            )));
        }
        let starts = starts(&site.network.layout);
        if poison::enabled() {
            // SAFETY: host buffers of these sizes owned by XLA for this call.
            unsafe { poison::host(written(&run.rets, &starts).chain(&run.checkpoints)) };
        }
        for (r, start) in starts.iter().enumerate() {
            let out = &run.rets[r];
            match start {
                Start::Copy(k) if run.args[*k] != out.data => {
                    // SAFETY: the input and the result have the same dtype and dims (checked),
                    // are host memory of XLA's, and are distinct buffers.
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            run.args[*k].cast::<u8>(),
                            out.data.cast::<u8>(),
                            out.size_bytes(),
                        )
                    };
                }
                Start::Fill(byte) => {
                    // SAFETY: a host result of this size.
                    unsafe {
                        std::ptr::write_bytes(out.data.cast::<u8>(), *byte, out.size_bytes())
                    };
                }
                _ => {}
            }
        }
        let entry = kernel.entry;
        if site.checkpoint_every > 0 {
            network_path::record(&site.key, "cpu");
            return run_cpu_segments(site, &run, entry);
        }
        let mut dims = vec![site.steps as i64];
        dims.extend(&run.n_syn);
        let outputs: Vec<*mut c_void> = run.rets.iter().map(|b| b.data).collect();
        let n_out = site.network.layout.outputs.len();
        let work = SharedPtr::new(outputs[n_out].cast::<i32>());
        let inputs = SharedPtr::new(run.args.as_ptr().cast_mut());
        let outputs = SharedPtr::new(outputs.as_ptr().cast_mut());
        network_path::record(&site.key, "cpu");
        cpu::parallel_chunks(run.nb, 1, |start, end| {
            // SAFETY: the buffers were checked against the layout and outlive the section; the
            // kernel touches batch members [start, end) only (each member's rows of every
            // batched buffer and of the work buffer) and reads the shared connectivity.
            unsafe {
                entry(
                    start as i64,
                    end as i64,
                    dims.as_ptr(),
                    inputs.get(),
                    outputs.get(),
                    work.get(),
                )
            };
        });
        Ok(())
    }
}

/// A checkpointed CPU run (`network_checkpoints`): for each segment, the checkpoints copied,
/// then each batch member's segment as a run of its own of the C entry (one member, `t_step`
/// at the segment's start, the work buffer zeroed as a call does, every batched buffer's
/// pointer moved to the member and each per-step output's to the segment's first row), so
/// that the segments continue each other as consecutive calls do.
fn run_cpu_segments(site: &NetworkRun, run: &Run<'_>, entry: CEntry) -> Result<(), FfiError> {
    let layout = &site.network.layout;
    let nb = run.nb;
    let stored: Vec<Buffer<'_>> = checkpoints::checkpointed(layout)
        .into_iter()
        .map(|k| run.rets[k])
        .collect();
    let bytes = checkpoints::member_bytes(&stored, nb)?;
    let segments = checkpoints::segments(site.steps, site.checkpoint_every);
    let work = run.rets[layout.outputs.len()];
    let work_member = work.size_bytes() / nb;
    // SAFETY: `t_step` is a host int32[nb] buffer (checked).
    let t0 = unsafe { std::slice::from_raw_parts(run.args[0].cast::<i32>(), nb) }.to_vec();
    let input_member: Vec<usize> = layout
        .inputs
        .iter()
        .map(|a| {
            let elems: i64 = a
                .shape
                .iter()
                .map(|d| match d {
                    Dim::Fixed(n) => *n as i64,
                    _ => run.n_syn[projection_of(&site.network, &a.owner)],
                })
                .product();
            elems as usize * DataType::from(a.elem).size_bytes()
        })
        .collect();
    for (slot, &(s0, s1)) in segments.iter().enumerate() {
        // SAFETY: the checkpointed outputs and their checkpoints, host buffers of these sizes
        // (checked), distinct.
        unsafe {
            checkpoints::copy_host(&stored, &run.checkpoints, &bytes, nb, segments.len(), slot)
        };
        let mut dims = vec![(s1 - s0) as i64];
        dims.extend(&run.n_syn);
        for (b, t_start) in t0.iter().enumerate() {
            let mut t = [t_start + s0 as i32];
            let inputs: Vec<*mut c_void> = layout
                .inputs
                .iter()
                .zip(&run.args)
                .zip(&input_member)
                .enumerate()
                .map(|(k, ((a, p), m))| match (k, a.batched) {
                    (0, _) => t.as_mut_ptr().cast(),
                    // SAFETY: member b's part of a batched input of nb members.
                    (_, true) => unsafe { p.cast::<u8>().add(b * m).cast() },
                    _ => *p,
                })
                .collect();
            let mut outputs: Vec<*mut c_void> = layout
                .outputs
                .iter()
                .zip(&run.rets)
                .map(|(a, out)| {
                    let member = if a.batched { out.size_bytes() / nb } else { 0 };
                    let offset = b * member + segment_offset(site, a, out, s0);
                    // SAFETY: within the buffer: the member's part, at the segment's rows.
                    unsafe { out.data.cast::<u8>().add(offset).cast() }
                })
                .collect();
            // SAFETY: member b's words of the work buffer.
            let w = unsafe { work.data.cast::<u8>().add(b * work_member) };
            // SAFETY: as above.
            unsafe { std::ptr::write_bytes(w, 0, work_member) };
            outputs.push(w.cast());
            // SAFETY: the buffers were checked against the layout; the pointers are member b's
            // and the segment's, so the entry (one member, `dims[0]` steps) stays within them.
            unsafe {
                entry(
                    0,
                    1,
                    dims.as_ptr(),
                    inputs.as_ptr(),
                    outputs.as_ptr(),
                    w.cast(),
                )
            };
        }
    }
    Ok(())
}

/// The position of projection `owner` (0 where it is not one).
fn projection_of(network: &Network, owner: &str) -> usize {
    network
        .net
        .projections
        .iter()
        .position(|p| p.name == owner)
        .unwrap_or(0)
}

/// Bytes from a member's first row of output `a` to the row of step `s0` where it has a
/// per-step axis (a state monitor's records, a rate monitor's steps), else 0.
fn segment_offset(site: &NetworkRun, a: &NetArg, out: &Buffer<'_>, s0: usize) -> usize {
    let Some(axis) = a
        .shape
        .iter()
        .position(|d| matches!(d, Dim::Sized(s) if *s != "n_syn"))
    else {
        return 0;
    };
    let rows = match a.shape[axis] {
        Dim::Sized("records") => s0 / site.network.every.get(&a.owner).copied().unwrap_or(1),
        _ => s0,
    };
    let after: usize = a.shape[axis + 1..]
        .iter()
        .map(|d| match d {
            Dim::Fixed(n) => *n,
            _ => 1,
        })
        .product();
    rows * after * out.dtype.size_bytes()
}

/// `spikeforge_network_run` on CUDA: the persistent kernel once, or per step two or three
/// launches, on XLA's stream.
pub struct NetworkRunCuda;

impl Handler for NetworkRunCuda {
    type Instance = NetworkRun;
    const TRAITS: HandlerTraits = HandlerTraits::COMMAND_BUFFER_COMPATIBLE;

    fn execute(call: &CallFrame<'_>, site: &NetworkRun) -> Result<(), FfiError> {
        let run = decode(call, site)?;
        let stream = call.stream()?;
        let kernels = site.kernels.cuda(stream, || {
            let opts = cuda_options(site.network.net.fast_math);
            let mut source: Option<String> = None;
            let mut loaded = Vec::new();
            for entry in entries(&site.network) {
                loaded.push(cuda::load_function_keyed(
                    &site.key,
                    entry,
                    stream,
                    &opts,
                    || {
                        source
                            .get_or_insert_with(|| site.network.source(Dialect::Cuda))
                            .clone()
                    },
                )?);
            }
            Ok(Arc::new(loaded))
        })?;
        let starts = starts(&site.network.layout);
        if poison::enabled() {
            // SAFETY: device buffers of these sizes on XLA's stream for this call.
            unsafe { poison::device(written(&run.rets, &starts).chain(&run.checkpoints), stream) }?;
        }
        for (r, start) in starts.iter().enumerate() {
            let out = &run.rets[r];
            if out.size_bytes() == 0 {
                continue;
            }
            match start {
                Start::Copy(k) if run.args[*k] != out.data => {
                    // SAFETY: same dtype and dims (checked), device memory of XLA's stream,
                    // distinct buffers.
                    unsafe {
                        cuda::memcpy_async(out.data, run.args[*k], out.size_bytes(), stream)
                    }?;
                }
                Start::Fill(byte) => {
                    // SAFETY: a device result of this size on XLA's stream.
                    unsafe { cuda::memset_async(out.data, *byte, out.size_bytes(), stream) }?;
                }
                _ => {}
            }
        }
        let sms = kernels[0].multiprocessor_count().max(1);
        let shape = &site.network.shape;
        let nb = run.nb as u32;
        let shared = if shape.segments > 0 {
            8 * (shape.segments as u32 + 1)
        } else {
            0
        };
        let per_step_kernels = kernels.len() - 2 - usize::from(balanced_kernel(&site.network));
        let (persistent, resident) = match &kernels[per_step_kernels..per_step_kernels + 2] {
            [p, r] => (p, r),
            _ => unreachable!("the persistent and resident kernels follow the per-step kernels"),
        };
        // The cluster kernel where the network has one, compiled for the mode the settings ask
        // (`network_kernel::cluster_mode`, a constant of its compilation).
        let cluster_mode = cluster_mode(site)?;
        let cluster = match cluster_mode {
            Some(mode) => Some(load_cluster_kernel(site, mode, stream)?),
            None => None,
        };
        let cluster = cluster.as_ref();
        // The one-barrier kernel with balanced deliveries, where the network has one and the
        // setting (or the default) asks for it.
        let balanced = kernels.get(per_step_kernels + 2);
        let wants_balanced = settings::grid_delivery_balanced()?
            .unwrap_or(network_path::GRID_DELIVERY_BALANCED)
            && run
                .n_syn
                .iter()
                .all(|n| (*n as u64) < network_kernel::BALANCED_MAX_SYNAPSES);
        let (persistent, balanced) = match balanced {
            Some(b) if wants_balanced => (b, true),
            _ => (persistent, false),
        };
        let (path, cluster_width) =
            choose_path(site, &run, persistent, resident, cluster, sms, shared)?;
        network_path::record(&site.key, path.name());
        let mut n_syn = run.n_syn.clone();
        let mut pointers: Vec<*mut c_void> = run
            .args
            .iter()
            .copied()
            .chain(run.rets.iter().map(|b| b.data))
            .collect();
        let steps = site.steps as i32;
        // A checkpointed call's copies into slot `slot` (`network_checkpoints`), before its
        // segment's first step.
        let stored: Vec<Buffer<'_>> = checkpoints::checkpointed(&site.network.layout)
            .into_iter()
            .map(|k| run.rets[k])
            .collect();
        let bytes = checkpoints::member_bytes(&stored, run.nb)?;
        let segments = checkpoints::segments(site.steps, site.checkpoint_every);
        let checkpoint = |slot: usize| -> Result<(), FfiError> {
            if site.checkpoint_every == 0 {
                return Ok(());
            }
            // SAFETY: the checkpointed outputs and their checkpoints, device buffers of these
            // sizes (checked) on XLA's stream, distinct.
            unsafe {
                checkpoints::copy_device(
                    &stored,
                    &run.checkpoints,
                    &bytes,
                    run.nb,
                    segments.len(),
                    slot,
                    stream,
                )
            }
        };
        let tail = |n_syn: &mut Vec<i64>, pointers: &mut Vec<*mut c_void>| {
            let mut p: Vec<*mut c_void> = n_syn
                .iter_mut()
                .map(|n| (n as *mut i64).cast::<c_void>())
                .collect();
            p.extend(
                pointers
                    .iter_mut()
                    .map(|b| (b as *mut *mut c_void).cast::<c_void>()),
            );
            p
        };
        // (kernel, blocks, threads per block, dynamic shared memory)
        let (kernel, blocks, threads, shared) = match path {
            Path::PerStep => {
                let detail = network_path::describe(path, 0, 0, BarrierVariant::Flat, 0);
                network_path::record_detail(&site.key, detail);
                let per_step = &kernels[..per_step_kernels];
                return launch_per_step(
                    site,
                    per_step,
                    &mut tail(&mut n_syn, &mut pointers),
                    (nb, sms, shared),
                    stream,
                    |step| match step % site.checkpoint_every.max(1) {
                        0 => checkpoint(step / site.checkpoint_every.max(1)),
                        _ => Ok(()),
                    },
                );
            }
            Path::Block { resident: true } => (
                resident,
                1,
                shape.resident_block,
                site.network.resident.bytes as u32,
            ),
            Path::Block { resident: false } => (persistent, 1, PERSISTENT_BLOCK, shared),
            Path::Grid { blocks } => {
                let blocks = settings::grid_blocks()?.map_or(blocks, |cap| blocks.min(cap));
                (persistent, blocks, PERSISTENT_BLOCK, shared)
            }
            // SPIKEFORGE_GRID_BLOCKS asks another width (within the device's widest)
            Path::Cluster { blocks } => {
                let c =
                    cluster_shape(&site.network).expect("a cluster path has the cluster kernel");
                let blocks = settings::grid_blocks()?
                    .and_then(|p| {
                        let (vblocks, slots) = (c.vblocks as u32, c.slots as u32);
                        network_kernel::cluster_blocks(vblocks, slots, cluster_width, Some(p))
                    })
                    .unwrap_or(blocks);
                let kernel = cluster.expect("a cluster path has the cluster kernel");
                (kernel, blocks, c.block, cluster_shared(kernel, &run)?)
            }
        };
        // The persistent kernel's grid barrier (the resident kernel has none); the cluster
        // kernel's mode (`network_kernel::cluster_mode`: deliveries, arrivals, profile).
        // The persistent kernel's register slots (0: not the one-barrier kernel), which also
        // choose its default barrier.
        let register_slots = site.network.register_slots;
        let barrier =
            network_path::barrier_variant(blocks, register_slots > 0, settings::grid_barrier()?);
        let mut group_blocks = match path {
            Path::Cluster { .. } => cluster_mode.expect("a cluster path has the cluster kernel"),
            _ => barrier.group_blocks(),
        };
        let slots = match path {
            Path::Cluster { .. } => cluster_shape(&site.network).map_or(0, |c| c.slots),
            _ => register_slots,
        } as u32;
        let mut detail = network_path::describe(path, blocks, threads as u32, barrier, slots);
        if let Path::Cluster { .. } = path {
            detail += if group_blocks & 1 == 0 {
                ", deliveries by the block"
            } else {
                ", deliveries by the warp"
            };
            detail += &match shared {
                0 => ", targets in global memory".to_owned(),
                bytes => format!(", target cache of {} KiB", bytes / 1024),
            };
            if network_kernel::cluster_counts_arrivals(&site.network.net, &site.network.plan) {
                detail += if group_blocks & 2 == 0 {
                    ", arrivals counted"
                } else {
                    ", arrivals added"
                };
            }
            detail += if group_blocks & 8 != 0 {
                ", arrivals tracked by mbarriers"
            } else {
                ", a cluster barrier a step"
            };
        }
        if balanced && matches!(path, Path::Grid { .. }) {
            detail.push_str(", balanced deliveries");
        }
        network_path::record_detail(&site.key, detail);
        // The run in one launch, steps [0, steps), or in a checkpointed call one launch a
        // segment, `s0` and `s1` set before each (a launch reads its parameters when made).
        let (s0, s1, mut total) = (
            std::cell::Cell::new(0i32),
            std::cell::Cell::new(steps),
            steps,
        );
        let mut params: Vec<*mut c_void> = vec![
            s0.as_ptr().cast(),
            s1.as_ptr().cast(),
            (&mut total as *mut i32).cast(),
        ];
        if path != (Path::Block { resident: true }) {
            params.push((&mut group_blocks as *mut i32).cast());
        }
        params.extend(tail(&mut n_syn, &mut pointers));
        // A grid of more than one block is launched cooperatively: every block resident, which
        // its barrier needs (the driver refuses a grid the device cannot hold); the cluster
        // kernel as one cluster per member (its blocks co-scheduled).
        let launch = cuda::LaunchShape {
            grid: (blocks, nb, 1),
            block: (threads as u32, 1, 1),
            shared_mem: shared,
            cooperative: blocks > 1,
        };
        for (slot, &(a, b)) in segments.iter().enumerate() {
            checkpoint(slot)?;
            s0.set(a as i32);
            s1.set(b as i32);
            if let Path::Cluster { .. } = path {
                // SAFETY: the cluster kernel's parameters are the persistent kernel's; as below.
                unsafe { cuda::launch_clustered(kernel, launch, blocks, stream, &mut params) }?;
                continue;
            }
            // SAFETY: the parameters match the persistent kernel's signature in order and type;
            // the buffers belong to XLA's stream and stay valid for the call.
            unsafe { cuda::launch_shaped(kernel, launch, stream, &mut params) }?;
        }
        Ok(())
    }
}

/// The cluster kernel's dynamic shared memory, its target cache (`network_kernel::grid::cluster`):
/// what the device allows a block beside the kernel's static shared memory, at most the
/// synapses' targets; none where `SPIKEFORGE_CLUSTER_TARGETS` is `global`.
fn cluster_shared(f: &cuda::CudaFunction, run: &Run<'_>) -> Result<u32, FfiError> {
    if !settings::cluster_targets_shared()? {
        return Ok(0);
    }
    let room = (f.max_shared_mem_per_block()).saturating_sub(cuda::function_static_shared(f)?);
    let targets: u64 = run.n_syn.iter().map(|n| 4 * (*n).max(0) as u64).sum();
    Ok((u64::from(room).min(targets) as u32) & !15)
}

/// The path of this call (`handlers::network_path`), and the widest cluster the device runs of
/// the cluster kernel (0 where not asked): the device is asked what it holds only when the
/// choice depends on it.
fn choose_path(
    site: &NetworkRun,
    run: &Run<'_>,
    persistent: &cuda::CudaFunction,
    resident: &cuda::CudaFunction,
    cluster: Option<&Arc<cuda::CudaFunction>>,
    sms: u32,
    shared: u32,
) -> Result<(Path, u32), FfiError> {
    let net = &site.network.net;
    let work = network_path::Work {
        neurons: net.groups.iter().map(|g| g.n as u64).sum(),
        synapses: run.n_syn.iter().map(|n| *n as u64).sum(),
        update_blocks: site.network.shape.update_blocks as u32,
        members: run.nb as u32,
        resident_bytes: (site.network.resident.bytes as u32)
            .saturating_add(cuda::function_static_shared(resident)?),
        register_slots: site.network.register_slots as u32,
        steps: site.steps as u64,
        cluster_vblocks: cluster_shape(&site.network).map_or(0, |c| c.vblocks as u32),
        cluster_slots: cluster_shape(&site.network).map_or(0, |c| c.slots as u32),
        // by default only where the cluster counts every arrival (measured so: session 8)
        auto_cluster: settings::auto_cluster()?.unwrap_or(
            network_path::AUTO_TAKES_CLUSTER
                && !settings::cluster_arrivals_added()?
                && site.network.counts_every_arrival,
        ),
    };
    let strategy = site.network.strategy;
    let max_shared_bytes = resident.max_shared_mem_per_block();
    let needs_device = match strategy {
        crate::spec::Strategy::Grid => true,
        // whether the grid is the choice depends on the device only past the block's limits
        crate::spec::Strategy::Auto => {
            work.neurons + work.synapses > network_path::BLOCK_MAX_WORK
                || work.synapses > network_path::RESIDENT_MAX_SYNAPSES
                || work.resident_bytes > max_shared_bytes
        }
        _ => false,
    };
    let resident_blocks = if needs_device {
        cuda::resident_blocks(persistent, PERSISTENT_BLOCK as u32, shared)?
    } else {
        0
    };
    let asks_cluster = match strategy {
        crate::spec::Strategy::Cluster => true,
        crate::spec::Strategy::Auto => work.auto_cluster,
        _ => false,
    };
    let cluster_width = match (cluster, cluster_shape(&site.network)) {
        (Some(f), Some(c)) if asks_cluster => {
            let shared = cluster_shared(f, run)?;
            cuda::cluster_width(f, c.block as u32, shared, network_kernel::CLUSTER_MAX)?
        }
        _ => 0,
    };
    let device = network_path::Device {
        multiprocessors: sms,
        resident_blocks,
        max_shared_bytes,
        cluster_width,
    };
    let path = network_path::choose(strategy, work, device).map_err(FfiError::invalid_argument)?;
    Ok((path, cluster_width))
}

/// The per-step path: per step, the update, delivery and (when needed) after-delivery kernels;
/// where the update kernels fold the after-delivery phase (`network_kernel::after_folded`), the
/// after-delivery kernel once, after the last step. `tail` holds the parameters after the step
/// and the step count; the grids' members, the device's multiprocessors and the deliveries'
/// dynamic shared memory; `before_step(s)` enqueues what must precede step `s` (a checkpoint).
fn launch_per_step(
    site: &NetworkRun,
    kernels: &[Arc<cuda::CudaFunction>],
    tail: &mut Vec<*mut c_void>,
    (nb, sms, shared): (u32, u32, u32),
    stream: *mut c_void,
    mut before_step: impl FnMut(usize) -> Result<(), FfiError>,
) -> Result<(), FfiError> {
    let shape = &site.network.shape;
    let update_grid = (shape.update_blocks as u32, nb, 1);
    let deliver_blocks = (2 * sms).max(shape.tasks.div_ceil(DELIVER_BLOCK / 32) as u32);
    let deliver_grid = (deliver_blocks, nb, 1);
    // The step within the run, which the launches read through `params` when they are made.
    let s = std::cell::Cell::new(0i32);
    let mut steps = site.steps as i32;
    let mut params: Vec<*mut c_void> = vec![s.as_ptr().cast(), (&mut steps as *mut i32).cast()];
    params.append(tail);
    let launches = network_kernel::step_launches(&site.network.plan);
    let closing = network_kernel::closing_launches(&site.network.plan);
    let (every_step, after_last) = kernels.split_at(launches.len());
    let mut launch = |kind: &StepGrid, f: &Arc<cuda::CudaFunction>| {
        let (grid, block, shared) = match kind {
            StepGrid::Deliver => (deliver_grid, DELIVER_BLOCK as u32, shared),
            StepGrid::Update => (update_grid, UPDATE_BLOCK as u32, 0),
        };
        // SAFETY: the parameters match the generated kernels' signature in order and type
        // (`s` set before); the buffers belong to XLA's stream and stay valid for the call.
        unsafe { cuda::launch(f, grid, (block, 1, 1), shared, stream, &mut params) }
    };
    for step in 0..site.steps {
        before_step(step)?;
        s.set(step as i32);
        for ((_, kind), f) in launches.iter().zip(every_step) {
            launch(kind, f)?;
        }
    }
    // The kernels run once, as the last step (the after-delivery phase that the update kernels
    // of the next call would otherwise run).
    if site.steps > 0 {
        for ((_, kind), f) in closing.iter().zip(after_last) {
            launch(kind, f)?;
        }
    }
    Ok(())
}

/// The network's cluster kernel's shape, where its source has one (the last of [`entries`]).
fn cluster_shape(network: &Network) -> Option<network_kernel::ClusterShape> {
    network.cluster
}

/// Whether the network's source has the cluster kernel.
fn cluster_kernel(network: &Network) -> bool {
    cluster_shape(network).is_some()
}

/// The mode of the network's cluster kernel that the settings ask
/// (`network_kernel::cluster_mode`), `None` where the network has no cluster kernel.
fn cluster_mode(site: &NetworkRun) -> Result<Option<i32>, FfiError> {
    if !cluster_kernel(&site.network) {
        return Ok(None);
    }
    let added = settings::cluster_arrivals_added()?;
    let counted = !added && site.network.counts_every_arrival;
    // By the warp where every arrival is counted (H200, COBA x1 10 s, session 8: 0.157 s
    // against the block's 0.172); by the block where floats are added (the warp's were slower
    // then: 0.425 s against 0.285, session 7).
    let by_warp = settings::cluster_delivery_by_warp()?.unwrap_or(counted);
    // Tracked by mbarriers only where asked and every arrival is counted (the kernel checks its
    // bound at the start of a launch and falls back to the barrier where it fails).
    let tracked = settings::cluster_sync_tracked()? && counted;
    let profile = settings::cluster_profile()?;
    Ok(Some(network_kernel::cluster_mode(
        by_warp, added, profile, tracked,
    )))
}

/// The network's cluster kernel compiled for `mode` (`-DSF_CLUSTER_MODE=<mode>`: the source's
/// cluster kernel exists only where its mode is named, and each mode's branches fold away).
/// One kernel with every mode's branches was slower: H200, COBA x1 10 s, 0.157 s against
/// 0.129 s compiled for its mode (session 10).
fn load_cluster_kernel(
    site: &NetworkRun,
    mode: i32,
    stream: *mut c_void,
) -> Result<Arc<cuda::CudaFunction>, FfiError> {
    let opts = cuda::CudaCompileOptions {
        extra: vec![format!("-DSF_CLUSTER_MODE={mode}")],
        ..cuda_options(site.network.net.fast_math)
    };
    Ok(cuda::load_function_keyed(
        &site.key,
        network_kernel::CLUSTER_ENTRY,
        stream,
        &opts,
        || site.network.source(Dialect::Cuda),
    )?)
}

/// Whether the network's source has the one-barrier kernel with balanced deliveries.
fn balanced_kernel(network: &Network) -> bool {
    network_kernel::balanced_kernel(&network.net, &network.plan, PERSISTENT_BLOCK)
}

/// The CUDA kernels of a network: the per-step kernels in launch order (those of every step,
/// then those launched once after the last), then the persistent kernel and the resident
/// kernel, then the one-barrier kernel with balanced deliveries where the network has one (the
/// cluster kernel is a compilation of its own: [`load_cluster_kernel`]).
fn entries(network: &Network) -> Vec<&'static str> {
    let mut e: Vec<&'static str> = network_kernel::step_launches(&network.plan)
        .into_iter()
        .chain(network_kernel::closing_launches(&network.plan))
        .map(|(entry, _)| entry)
        .collect();
    e.push(network_kernel::PERSISTENT_ENTRY);
    e.push(network_kernel::RESIDENT_ENTRY);
    if balanced_kernel(network) {
        e.push(network_kernel::PERSISTENT_BALANCED_ENTRY);
    }
    e
}
