//! `spikeforge_network_grad`: the backward pass of one segment of a network run (the generated
//! network adjoint kernel, [`crate::codegen::network_adjoint_kernel`]).
//!
//! Attributes: `spec` (the canonical network spec, as for the run), `key` (its hash), `steps`
//! (the segment's steps). Buffers follow
//! [`network_adjoint_layout`](crate::codegen::network_adjoint_kernel::network_adjoint_layout),
//! without a batch axis (one network). Instantiation parses and lowers the spec and derives the
//! adjoint (a network whose runs are not differentiable is an error that names why); the first
//! execution compiles the kernel; every execution reads each projection's synapse count from
//! its `targets`, checks the buffers and runs the segment: on one CPU thread, or on CUDA by a
//! cooperative grid on XLA's stream (as many blocks as the segment's work needs and the device
//! holds at once; its grid barrier's counter zeroed first).

use std::ffi::c_void;
use std::sync::Arc;

use super::buffers::{self, Expected};
use super::loaded_kernels::LoadedKernels;
use super::network_path;
use super::neuron_run::{cpu_options, cuda_options, launch_shaped_with_buffers, CEntry};
use super::poison;
use crate::codegen::network_adjoint_kernel::{
    concrete_shape, cuda_threads, generate_network_adjoint, generate_network_adjoint_variant,
    projection_order, NetAdjointArg, NetAdjointLayout, CUDA_BLOCK, FAST_DELIVERIES, FAST_VARIANTS,
    FAST_WALK, GRID_BARRIER, NETWORK_ADJOINT_ENTRY,
};
use crate::codegen::Dialect;
use crate::ir::network::NetworkIr;
use crate::runtime::cuda;
use crate::spec::network::NetworkSpec;
use crate::xla::{CallFrame, DataType, FfiError, Handler, HandlerTraits, Instance};

type CpuKernel = super::loaded_kernels::CpuKernel<CEntry>;

/// One call site of `spikeforge_network_grad`.
pub struct NetworkGrad {
    /// The key of the network (the run's).
    key: String,
    net: NetworkIr,
    layout: NetAdjointLayout,
    steps: usize,
    /// The kernels by their warp-a-neuron variant (`fast`, 0 to [`FAST_VARIANTS`]; the CPU's
    /// is the first).
    kernels: Vec<LoadedKernels<CpuKernel, Arc<cuda::CudaFunction>>>,
}

impl NetworkGrad {
    fn source(&self, dialect: Dialect, fast: i32) -> String {
        generate_network_adjoint_variant(&self.net, dialect, fast)
            .expect("checked at instantiation")
            .source
    }

    /// The key of the compiled adjoint kernel of variant `fast` (distinct from the run's).
    fn kernel_key(&self, fast: i32) -> String {
        let key = &self.key;
        crate::runtime::cache::sha256_hex(&match fast {
            0 => format!("network adjoint\n{key}"),
            _ => format!("network adjoint, warp-a-neuron variant {fast}\n{key}"),
        })
    }
}

impl Instance for NetworkGrad {
    fn instantiate(call: &CallFrame) -> Result<NetworkGrad, FfiError> {
        let attrs = call.attrs()?;
        let key = attrs.get_str("key")?;
        let spec = NetworkSpec::from_json(attrs.get_str("spec")?)
            .map_err(|e| FfiError::invalid_argument(format!("attribute 'spec': {e}")))?;
        if spec.key() != key {
            return Err(FfiError::invalid_argument(
                "attribute 'key' does not match attribute 'spec'",
            ));
        }
        let net = crate::codegen::prepare_network(&spec)?;
        let layout = generate_network_adjoint(&net, Dialect::C)
            .map_err(|e| FfiError::invalid_argument(e.to_string()))?
            .layout;
        let steps = attrs.get_usize("steps")?;
        if steps == 0 || steps > i32::MAX as usize {
            return Err(FfiError::invalid_argument(format!(
                "attribute 'steps': must be in 1..=2^31-1, got {steps}"
            )));
        }
        Ok(NetworkGrad {
            key: key.to_owned(),
            net,
            layout,
            steps,
            kernels: (0..=FAST_VARIANTS).map(|_| LoadedKernels::new()).collect(),
        })
    }
}

/// What each of `args` must be, named `names`, with `dims` its dimensions in this call.
fn expected<'e>(
    args: &[NetAdjointArg],
    names: &'e [String],
    dims: &'e [Vec<i64>],
) -> Vec<Expected<'e>> {
    args.iter()
        .zip(names)
        .zip(dims)
        .map(|((a, name), d)| Expected {
            name,
            dtype: DataType::from(a.elem),
            dims: d,
        })
        .collect()
}

/// The checked buffers of one call and each projection's synapse count.
struct Call<'a> {
    n_syn: Vec<i64>,
    buffers: buffers::Checked<'a>,
}

fn decode<'a>(call: &CallFrame<'a>, site: &NetworkGrad) -> Result<Call<'a>, FfiError> {
    let projections = projection_order(&site.net);
    // Each projection's synapse count, from its `targets`.
    let mut n_syn = vec![0i64; site.net.projections.len()];
    for (k, a) in site.layout.inputs.iter().enumerate() {
        if a.name == "targets" {
            let b = call.arg(k)?;
            match b.dims {
                [n] => n_syn[projections[&a.owner]] = *n,
                _ => {
                    return Err(FfiError::invalid_argument(format!(
                        "argument '{}/targets': expected int32[n_syn], got {b}",
                        a.owner
                    )))
                }
            }
        }
    }
    let count = |owner: &str| -> usize {
        projections
            .get(owner)
            .map_or(0, |p| usize::try_from(n_syn[*p]).unwrap_or(0))
    };
    let shapes = |args: &[NetAdjointArg]| {
        args.iter()
            .map(|a| concrete_shape(a, site.steps, count(&a.owner)))
            .collect::<Vec<_>>()
    };
    let (in_dims, out_dims) = (shapes(&site.layout.inputs), shapes(&site.layout.outputs));
    let names = |args: &[NetAdjointArg]| {
        args.iter()
            .map(|a| format!("{}/{}", a.owner, a.name))
            .collect::<Vec<_>>()
    };
    let (in_names, out_names) = (names(&site.layout.inputs), names(&site.layout.outputs));
    let inputs = expected(&site.layout.inputs, &in_names, &in_dims);
    let outputs = expected(&site.layout.outputs, &out_names, &out_dims);
    let buffers = buffers::check(call, &inputs, &outputs)?;
    Ok(Call { n_syn, buffers })
}

/// `spikeforge_network_grad` on the CPU: the segment on one thread.
pub struct NetworkGradCpu;

impl Handler for NetworkGradCpu {
    type Instance = NetworkGrad;
    const TRAITS: HandlerTraits = HandlerTraits::NONE;

    fn execute(call: &CallFrame<'_>, site: &NetworkGrad) -> Result<(), FfiError> {
        let run = decode(call, site)?;
        // SAFETY: `CEntry` is the generated entry's signature.
        let kernel = unsafe {
            site.kernels[0].cpu_keyed(
                &site.kernel_key(0),
                NETWORK_ADJOINT_ENTRY,
                &cpu_options(false),
                || site.source(Dialect::C, 0),
            )
        }?;
        if poison::enabled() {
            // SAFETY: host buffers of these sizes owned by XLA for this call.
            unsafe { poison::host(&run.buffers.rets) };
        }
        let outputs: Vec<*mut c_void> = run.buffers.ret_ptrs().collect();
        let mut dims = vec![site.steps as i64];
        dims.extend(&run.n_syn);
        // SAFETY: the buffers were checked against the kernel's layout; the entry reads the
        // dims it was generated for and runs on this thread.
        unsafe {
            (kernel.entry)(
                0,
                1,
                dims.as_ptr(),
                run.buffers.args.as_ptr(),
                outputs.as_ptr(),
            )
        };
        Ok(())
    }
}

/// `spikeforge_network_grad` on CUDA: a cooperative grid on XLA's stream (one block where the
/// device cannot launch cooperatively), of the kernel's warp-a-neuron variant that
/// `SPIKEFORGE_NETWORK_ADJOINT_FAST` asks for (by default [`default_variant`]) where the grid
/// gives every neuron of the largest group a warp, else of the grid-stride kernel.
pub struct NetworkGradCuda;

impl Handler for NetworkGradCuda {
    type Instance = NetworkGrad;
    const TRAITS: HandlerTraits = HandlerTraits::COMMAND_BUFFER_COMPATIBLE;

    fn execute(call: &CallFrame<'_>, site: &NetworkGrad) -> Result<(), FfiError> {
        let run = decode(call, site)?;
        let stream = call.stream()?;
        let load = |fast: i32| {
            site.kernels[fast as usize].cuda(stream, || {
                Ok(cuda::load_function_keyed(
                    &site.kernel_key(fast),
                    NETWORK_ADJOINT_ENTRY,
                    stream,
                    &cuda_options(false),
                    || site.source(Dialect::Cuda, fast),
                )?)
            })
        };
        let mut fast = crate::runtime::settings::network_adjoint_fast()?
            .unwrap_or_else(|| default_variant(site));
        // (The variants hold a row's ends in 32 bits.)
        if run.n_syn.iter().any(|n| *n > i64::from(i32::MAX)) {
            fast = 0;
        }
        let mut f = load(fast)?;
        let (mut block, mut blocks) = grid(site, &f)?;
        if fast != 0 && (blocks as usize) * (block as usize / 32) < largest_group(site) {
            fast = 0;
            f = load(fast)?;
            (block, blocks) = grid(site, &f)?;
        }
        network_path::record_detail(
            &adjoint_key(&site.key),
            match fast {
                0 => format!("grid-stride kernel: {blocks} blocks of {block} threads"),
                _ => format!("warp-a-neuron variant {fast}: {blocks} blocks of {block} threads"),
            },
        );
        if poison::enabled() {
            // SAFETY: the call's result buffers, device memory of these sizes, on XLA's stream.
            unsafe { poison::device(&run.buffers.rets, stream) }?;
        }
        // The barrier's counter starts at zero (after the outputs' poison, if any).
        let barrier = site
            .layout
            .outputs
            .iter()
            .position(|a| a.owner.is_empty() && a.name == GRID_BARRIER)
            .expect("the layout has the grid barrier's counter");
        let counter = &run.buffers.rets[barrier];
        // SAFETY: XLA's device buffer of this size, on this stream, for the call.
        unsafe { cuda::memset_async(counter.data, 0, counter.size_bytes(), stream) }?;
        let mut steps = site.steps as i64;
        let mut n_syn = run.n_syn.clone();
        let mut acquire_release =
            crate::runtime::settings::network_adjoint_barrier()?.unwrap_or(DEFAULT_BARRIER);
        let mut params: Vec<*mut c_void> = vec![(&mut steps as *mut i64).cast()];
        params.extend(n_syn.iter_mut().map(|n| (n as *mut i64).cast::<c_void>()));
        params.push((&mut acquire_release as *mut i32).cast());
        let shape = cuda::LaunchShape {
            grid: (blocks, 1, 1),
            block: (block, 1, 1),
            shared_mem: 0,
            cooperative: blocks > 1,
        };
        // SAFETY: the scalars (steps, synapse counts, the barrier's kind) and the buffers, in
        // this order, are the generated kernel's parameters; the buffers belong to XLA's stream and stay valid for the call.
        unsafe { launch_shaped_with_buffers(&f, shape, stream, params, &run.buffers) }
    }
}

/// The warp-a-neuron variant of float32 networks when `SPIKEFORGE_NETWORK_ADJOINT_FAST` is
/// unset: both paths, the walk with its barriers (`FAST_P2P` only where asked: not measured
/// yet). (Chosen before any GPU run of it, from the emulation suite's agreement with the C
/// kernel and NVRTC's no-spill report; 0 takes the grid-stride kernel, main's.)
const DEFAULT_FAST: i32 = FAST_WALK | FAST_DELIVERIES;

/// The grid barrier's kind when `SPIKEFORGE_NETWORK_ADJOINT_BARRIER` is unset (the kernel's
/// `sf_acquire_release`): 1, the release reduction and acquire polls (H200, COBA x1 gradient,
/// 1000 steps, one process: fwd+bwd 7.97 / 7.75 ms against the fences' 8.14 / 8.10; session 6
/// had measured it slower on an earlier kernel).
const DEFAULT_BARRIER: i32 = 1;

/// The warp-a-neuron variant a call takes when `SPIKEFORGE_NETWORK_ADJOINT_FAST` is unset:
/// [`DEFAULT_FAST`] in float32; none in float64, where ptxas spills the held walk back's
/// registers (its doubles) under the 64 registers a thread, and which was not measured.
fn default_variant(site: &NetworkGrad) -> i32 {
    match site.net.dtype {
        crate::types::ElemType::F32 => DEFAULT_FAST,
        _ => 0,
    }
}

/// The key under which the CUDA handler records the last launch of network `key`'s adjoint
/// kernel (`network_path::record_detail`; Python: `network_last_path_detail("adjoint\n" + key)`):
/// its variant and grid.
fn adjoint_key(key: &str) -> String {
    format!("adjoint\n{key}")
}

/// The neurons of the network's largest group (a warp-a-neuron variant's grid has a warp for
/// each).
fn largest_group(site: &NetworkGrad) -> usize {
    site.net.groups.iter().map(|g| g.n).max().unwrap_or(0)
}

/// The grid of kernel `f` for a call of `site`: blocks of a whole number of warps, as many as
/// the segment's work needs and the device holds at once (a cooperative grid: its blocks wait
/// for each other at its barriers), at most SPIKEFORGE_NETWORK_ADJOINT_BLOCKS; blocks of
/// SPIKEFORGE_NETWORK_ADJOINT_BLOCK threads where set.
fn grid(site: &NetworkGrad, f: &cuda::CudaFunction) -> Result<(u32, u32), FfiError> {
    let wanted_block = crate::runtime::settings::network_adjoint_block()?.unwrap_or(CUDA_BLOCK);
    let block = (wanted_block.min(f.max_threads_per_block()) / 32).max(1) * 32;
    let neurons = site.net.groups.iter().map(|g| g.n).sum();
    let rows = site
        .net
        .projections
        .iter()
        .map(|p| p.n_pre())
        .max()
        .unwrap_or(0);
    let wanted =
        cuda_threads(neurons, largest_group(site), rows, site.steps).div_ceil(block as usize);
    let mut most = cuda::resident_blocks(f, block, 0)?.max(1);
    if let Some(limit) = crate::runtime::settings::network_adjoint_blocks()? {
        most = most.min(limit);
    }
    let blocks = (wanted.min(u32::MAX as usize) as u32).clamp(1, most);
    Ok((block, blocks))
}
