//! `spikeforge_neuron_run`: runs the fused neuron kernel of a model for `steps` steps.
//!
//! Attributes: `spec` (the model spec JSON), `key` (its hash), `steps`, `record_every`,
//! `n_inner`, `spike_capacity` (with a spike record), `checkpoint_every` (with `spec.checkpoint`). Buffers follow [`crate::codegen::layout`]. Instantiation (once per call site)
//! parses the spec, checks that `key` is its hash, lowers it, computes the layout and reads the
//! sizes; the first execution compiles the kernel (or finds it in the caches); an execution after
//! that checks the buffers and launches.

use std::ffi::c_void;
use std::sync::{Arc, LazyLock};

use super::buffers::{self, Expected, SharedPtr};
use super::loaded_kernels::LoadedKernels;
use super::poison;
use crate::codegen::{self, Dialect, Layout, Role, ShapeKind};
use crate::ir::GroupIr;
use crate::runtime::{cpu, cuda};
use crate::spec::ModelSpec;
use crate::xla::{Attrs, CallFrame, DataType, FfiError, Handler, HandlerTraits, Instance};

/// The neuron-specific part of a call site: the spec, lowered, with its argument layout.
struct Model {
    spec: ModelSpec,
    ir: GroupIr,
    layout: Layout,
}

impl Model {
    /// Parses `spec`, checks that `key` is its hash, lowers it and lays out its arguments.
    fn prepare(spec: &str, key: &str) -> Result<Model, FfiError> {
        let spec = ModelSpec::from_json(spec)
            .map_err(|e| FfiError::invalid_argument(format!("attribute 'spec': {e}")))?;
        if spec.key() != key {
            return Err(FfiError::invalid_argument(
                "attribute 'key' does not match attribute 'spec'",
            ));
        }
        let (ir, layout) = codegen::prepare(&spec)?;
        Ok(Model { spec, ir, layout })
    }

    /// The kernel's source in `dialect`.
    fn source(&self, dialect: Dialect) -> String {
        codegen::generate(&self.ir, &self.spec, dialect).source
    }
}

/// The sizes of a run, from the attributes.
#[derive(Clone, Copy, Debug)]
struct Sizes {
    steps: usize,
    record_every: usize,
    n_inner: usize,
    /// Trace rows: `ceil(steps / record_every)`.
    n_rec: usize,
    /// Entries of the spike record per batch member (0 without one).
    spike_capacity: usize,
    /// Steps between checkpoints (`spec.checkpoint`; 0 without).
    checkpoint_every: usize,
    /// Checkpoint rows: `ceil(steps / checkpoint_every)` (0 without).
    n_ckpt: usize,
}

impl Sizes {
    fn from_attrs(attrs: &Attrs, layout: &Layout) -> Result<Sizes, FfiError> {
        // The kernels count steps in int32.
        let steps = int32_count(attrs, "steps")?;
        let record_every = int32_count(attrs, "record_every")?;
        let n_inner = attrs.get_usize("n_inner")?;
        if n_inner == 0 || i64::try_from(n_inner).is_err() {
            return Err(FfiError::invalid_argument(format!(
                "attribute 'n_inner': must be in 1..=2^63-1, got {n_inner}"
            )));
        }
        let records_spikes = layout.outputs.iter().any(|a| a.shape == ShapeKind::Spikes);
        let spike_capacity = if records_spikes {
            int32_count(attrs, "spike_capacity")?
        } else {
            0
        };
        let checkpoints = layout
            .outputs
            .iter()
            .any(|a| a.shape == ShapeKind::Checkpoint);
        let checkpoint_every = if checkpoints {
            int32_count(attrs, "checkpoint_every")?
        } else {
            0
        };
        // The forward pass under differentiation walks rows by a 32-bit stride, as the adjoint
        // kernel does (`codegen::group_kernel`).
        if checkpoints && i32::try_from(n_inner).is_err() {
            return Err(FfiError::invalid_argument(format!(
                "attribute 'n_inner': the gradient of a run takes 1..=2^31-1 neurons a batch \
                 member, got {n_inner}"
            )));
        }
        Ok(Sizes {
            steps,
            record_every,
            n_inner,
            n_rec: steps.div_ceil(record_every),
            spike_capacity,
            checkpoint_every,
            n_ckpt: if checkpoints {
                steps.div_ceil(checkpoint_every)
            } else {
                0
            },
        })
    }
}

/// The positive int32 attribute `name` (a count of steps or entries the kernels keep in int32).
pub(super) fn int32_count(attrs: &Attrs, name: &str) -> Result<usize, FfiError> {
    let v = attrs.get_usize(name)?;
    if v == 0 || v > i32::MAX as usize {
        return Err(FfiError::invalid_argument(format!(
            "attribute '{name}': must be in 1..=2^31-1, got {v}"
        )));
    }
    Ok(v)
}

/// The C entry point: `(start, end, dims, inputs, outputs)`.
pub(super) type CEntry =
    unsafe extern "C" fn(i64, i64, *const i64, *const *mut c_void, *const *mut c_void);

type CpuKernel = super::loaded_kernels::CpuKernel<CEntry>;

/// One call site of `spikeforge_neuron_run`.
pub struct NeuronRun {
    key: String,
    model: Model,
    sizes: Sizes,
    kernels: LoadedKernels<CpuKernel, Arc<cuda::CudaFunction>>,
}

impl Instance for NeuronRun {
    fn instantiate(call: &CallFrame) -> Result<NeuronRun, FfiError> {
        let attrs = call.attrs()?;
        let key = attrs.get_str("key")?;
        let model = Model::prepare(attrs.get_str("spec")?, key)?;
        let sizes = Sizes::from_attrs(&attrs, &model.layout)?;
        Ok(NeuronRun {
            key: key.to_owned(),
            model,
            sizes,
            kernels: LoadedKernels::new(),
        })
    }
}

/// The dims of each kind of argument in one call (`*_words`: a 64-bit value per element, as a
/// trailing pair of int32 words).
struct ShapeDims {
    neuron: [i64; 1],
    neuron_words: [i64; 2],
    per_step: [i64; 3],
    batch: [i64; 1],
    batch_words: [i64; 2],
    trace: [i64; 3],
    spikes: [i64; 2],
    checkpoint: [i64; 3],
}

impl ShapeDims {
    fn of(&self, shape: ShapeKind, words: bool) -> &[i64] {
        match (shape, words) {
            (ShapeKind::Neuron, false) => &self.neuron,
            (ShapeKind::Neuron, true) => &self.neuron_words,
            (ShapeKind::Batch, false) => &self.batch,
            (ShapeKind::Batch, true) => &self.batch_words,
            (ShapeKind::PerStep, _) => &self.per_step,
            (ShapeKind::Trace, _) => &self.trace,
            (ShapeKind::Spikes, _) => &self.spikes,
            (ShapeKind::Checkpoint, _) => &self.checkpoint,
        }
    }

    /// What each of `args` must be in this call.
    fn expected<'e>(&'e self, args: &'e [codegen::Arg]) -> Vec<Expected<'e>> {
        args.iter()
            .map(|a| Expected {
                name: &a.name,
                dtype: DataType::from(a.elem),
                dims: self.of(a.shape, a.words.is_some()),
            })
            .collect()
    }
}

/// The buffers of one call, checked against the layout, and the neuron count `n` (the batch,
/// read from `t0`, times `n_inner`).
struct Run<'a> {
    n: usize,
    buffers: buffers::Checked<'a>,
}

fn decode<'a>(call: &CallFrame<'a>, site: &NeuronRun) -> Result<Run<'a>, FfiError> {
    let layout = &site.model.layout;
    // The batch size comes from `t`, the time of the state: one per batch member.
    let t_index = layout
        .inputs
        .iter()
        .position(|a| a.role == Role::Time)
        .expect("the time is always an input");
    let t = call.arg(t_index)?;
    let nb = match t.dims {
        [nb, 2] if *nb > 0 => *nb,
        _ => {
            return Err(FfiError::invalid_argument(format!(
                "argument 't': expected int32[nb, 2] (the time as float64 words), got {t}"
            )))
        }
    };
    let Sizes {
        steps,
        n_inner,
        n_rec,
        spike_capacity,
        n_ckpt,
        ..
    } = site.sizes;
    // Each fits an i64: `steps`, `n_rec` and the capacity are at most 2^31 - 1, `n_inner` was
    // checked.
    let (steps, n_rec, n_inner, spike_capacity) = (
        steps as i64,
        n_rec as i64,
        n_inner as i64,
        spike_capacity as i64,
    );
    let n = n_inner.checked_mul(nb).ok_or_else(|| {
        FfiError::invalid_argument(format!(
            "{nb} batch members of {n_inner} neurons are more than 2^63 neurons"
        ))
    })?;
    let dims = ShapeDims {
        neuron: [n],
        neuron_words: [n, 2],
        per_step: [nb, steps, n_inner],
        batch: [nb],
        batch_words: [nb, 2],
        trace: [nb, n_rec, n_inner],
        spikes: [nb, spike_capacity],
        checkpoint: [nb, n_ckpt as i64, n_inner],
    };
    let inputs = dims.expected(&layout.inputs);
    let outputs = dims.expected(&layout.outputs);
    let buffers = buffers::check(call, &inputs, &outputs)?;
    Ok(Run {
        n: usize::try_from(n).expect("a product of positive i64 that did not overflow"),
        buffers,
    })
}

/// Compiler options for a model's (or network's) C kernel. Under fast math, divisions and square
/// roots may use the approximate reciprocal instructions refined by one Newton step (`-mrecip`).
pub(super) fn cpu_options(fast_math: bool) -> cpu::CpuCompileOptions {
    let extra_flags = if fast_math {
        vec!["-mrecip".to_string()]
    } else {
        vec![]
    };
    cpu::CpuCompileOptions {
        fast_math,
        extra_flags,
    }
}

/// `spikeforge_neuron_run` on the CPU: the C kernel, neuron ranges spread over the cores.
pub struct NeuronRunCpu;

impl Handler for NeuronRunCpu {
    type Instance = NeuronRun;
    const TRAITS: HandlerTraits = HandlerTraits::NONE;

    fn execute(call: &CallFrame<'_>, site: &NeuronRun) -> Result<(), FfiError> {
        let run = decode(call, site)?;
        // SAFETY: `CEntry` is the generated entry's signature.
        let kernel = unsafe {
            site.kernels.cpu_keyed(
                &site.key,
                codegen::ENTRY,
                &cpu_options(site.model.spec.fast_math),
                || site.model.source(Dialect::C),
            )
        }?;
        let rets = &run.buffers.rets;
        if poison::enabled() {
            // SAFETY: host buffers of these sizes owned by XLA for this call.
            unsafe { poison::host(rets) };
        }
        // SAFETY: host buffers of these sizes owned by XLA for this call.
        unsafe { zero_spike_totals(&site.model.layout, rets) };
        let outputs: Vec<*mut c_void> = run.buffers.ret_ptrs().collect();
        let s = site.sizes;
        let dims = [
            s.n_inner as i64,
            s.steps as i64,
            s.record_every as i64,
            s.n_rec as i64,
            s.spike_capacity as i64,
            s.checkpoint_every as i64,
        ];
        run_elements(
            kernel.entry,
            run.n,
            s.steps,
            &dims,
            &run.buffers.args,
            &outputs,
        );
        Ok(())
    }
}

/// Runs a per-element C entry `(start, end, dims, inputs, outputs)` over `n` elements of a
/// `steps`-step loop, element ranges spread over the cores.
pub(super) fn run_elements(
    entry: CEntry,
    n: usize,
    steps: usize,
    dims: &[i64],
    inputs: &[*mut c_void],
    outputs: &[*mut c_void],
) {
    let inputs = SharedPtr::new(inputs.as_ptr().cast_mut());
    let outputs = SharedPtr::new(outputs.as_ptr().cast_mut());
    // Small runs stay on the calling thread: a chunk should be worth a thread hand-off
    // (~10 µs).
    let min_chunk = (1usize << 18) / steps;
    cpu::parallel_chunks(n, min_chunk, |start, end| {
        // SAFETY: the callers checked the buffers against the kernel's layout; they outlive the
        // parallel section; the kernel writes elements [start, end) only (and reads shared
        // inputs).
        unsafe {
            entry(
                start as i64,
                end as i64,
                dims.as_ptr(),
                inputs.get(),
                outputs.get(),
            )
        };
    });
}

/// NVRTC options for a model's (or network's) CUDA kernels.
pub(super) fn cuda_options(fast_math: bool) -> cuda::CudaCompileOptions {
    cuda::CudaCompileOptions {
        fast_math,
        ..Default::default()
    }
}

/// Sets the spike record's counts to 0 before the kernel counts into them.
///
/// # Safety
/// `rets` are the host results of this call, in the order of `layout.outputs`.
unsafe fn zero_spike_totals(layout: &Layout, rets: &[crate::xla::Buffer]) {
    for (a, b) in layout.outputs.iter().zip(rets) {
        if a.role == Role::SpikeTotal {
            // SAFETY: forwarded to the caller; XLA allocated `size_bytes` for the buffer.
            unsafe { std::ptr::write_bytes(b.data.cast::<u8>(), 0, b.size_bytes()) };
        }
    }
}

/// Threads per block: full blocks for large populations, smaller ones when that spreads a small
/// population over more multiprocessors (a time loop of thousands of steps is latency-bound).
pub(super) fn block_size(n: usize, multiprocessors: u32, max_threads: u32) -> u32 {
    // SPIKEFORGE_BLOCK overrides the choice, for tuning experiments.
    static OVERRIDE: LazyLock<Option<u32>> = LazyLock::new(|| {
        std::env::var("SPIKEFORGE_BLOCK")
            .ok()
            .and_then(|v| v.parse().ok())
    });
    if let Some(b) = *OVERRIDE {
        return b.clamp(32, max_threads.max(32));
    }
    let mut block = 256u32.min(max_threads.max(32));
    while block > 32 && (n as u64).div_ceil(block as u64) < 2 * multiprocessors as u64 {
        block /= 2;
    }
    block
}

/// Blocks of `block` threads that cover `n` elements (one thread each), or an error when they
/// are more than one launch takes.
pub(super) fn grid_for(n: usize, block: u32) -> Result<u32, FfiError> {
    u32::try_from((n as u64).div_ceil(u64::from(block)))
        .map_err(|_| FfiError::invalid_argument(format!("{n} neurons are too many for one launch")))
}

/// `spikeforge_neuron_run` on CUDA: one launch on XLA's stream. The same work every execution
/// (no allocation, no synchronisation), so XLA may capture it into a CUDA graph.
pub struct NeuronRunCuda;

impl Handler for NeuronRunCuda {
    type Instance = NeuronRun;
    const TRAITS: HandlerTraits = HandlerTraits::COMMAND_BUFFER_COMPATIBLE;

    fn execute(call: &CallFrame<'_>, site: &NeuronRun) -> Result<(), FfiError> {
        let run = decode(call, site)?;
        let stream = call.stream()?;
        let rets = &run.buffers.rets;
        let f = site.kernels.cuda_for_call(
            stream,
            &site.key,
            codegen::ENTRY,
            &cuda_options(site.model.spec.fast_math),
            || site.model.source(Dialect::Cuda),
            rets,
        )?;
        // The spike record's counts start at 0 (the kernel counts into them atomically).
        for (a, b) in site.model.layout.outputs.iter().zip(rets) {
            if a.role == Role::SpikeTotal {
                // SAFETY: a device buffer of this size on XLA's stream for this call.
                unsafe { cuda::memset_async(b.data, 0, b.size_bytes(), stream) }?;
            }
        }
        let block = block_size(run.n, f.multiprocessor_count(), f.max_threads_per_block());
        let grid = grid_for(run.n, block)?;
        let s = site.sizes;
        let mut n = run.n as i64;
        let mut n_inner = s.n_inner as i64;
        // `Sizes` keeps these within int32.
        let mut steps = s.steps as i32;
        let mut record_every = s.record_every as i32;
        let mut n_rec = s.n_rec as i32;
        let mut spike_capacity = s.spike_capacity as i64;
        let mut params: Vec<*mut c_void> = vec![
            (&mut n as *mut i64).cast(),
            (&mut n_inner as *mut i64).cast(),
            (&mut steps as *mut i32).cast(),
            (&mut record_every as *mut i32).cast(),
            (&mut n_rec as *mut i32).cast(),
        ];
        let mut checkpoint_every = s.checkpoint_every as i32;
        if s.spike_capacity > 0 {
            params.push((&mut spike_capacity as *mut i64).cast());
        }
        if s.checkpoint_every > 0 {
            params.push((&mut checkpoint_every as *mut i32).cast());
        }
        // SAFETY: the scalars and the buffers, in this order, are the generated kernel's
        // parameters; the buffers belong to XLA's stream and stay valid for the call.
        unsafe { launch_with_buffers(&f, grid, block, stream, params, &run.buffers) }
    }
}

/// Launches `f` on `grid` blocks of `block` threads with the scalar parameters `scalars`
/// (pointers to their values) followed by every buffer of the call, inputs then outputs.
///
/// # Safety
/// The scalars and the buffers, in this order, must be `f`'s parameters; the scalars' values
/// must outlive the call.
pub(super) unsafe fn launch_with_buffers(
    f: &cuda::CudaFunction,
    grid: u32,
    block: u32,
    stream: *mut c_void,
    scalars: Vec<*mut c_void>,
    buffers: &buffers::Checked<'_>,
) -> Result<(), FfiError> {
    let shape = cuda::LaunchShape {
        grid: (grid, 1, 1),
        block: (block, 1, 1),
        shared_mem: 0,
        cooperative: false,
    };
    // SAFETY: forwarded to the caller.
    unsafe { launch_shaped_with_buffers(f, shape, stream, scalars, buffers) }
}

/// [`launch_with_buffers`] in a [`cuda::LaunchShape`] (a cooperative grid, for one).
///
/// # Safety
/// As [`launch_with_buffers`].
pub(super) unsafe fn launch_shaped_with_buffers(
    f: &cuda::CudaFunction,
    shape: cuda::LaunchShape,
    stream: *mut c_void,
    mut scalars: Vec<*mut c_void>,
    buffers: &buffers::Checked<'_>,
) -> Result<(), FfiError> {
    let mut pointers: Vec<*mut c_void> = buffers
        .args
        .iter()
        .copied()
        .chain(buffers.ret_ptrs())
        .collect();
    scalars.extend(
        pointers
            .iter_mut()
            .map(|b| (b as *mut *mut c_void).cast::<c_void>()),
    );
    // SAFETY: forwarded to the caller; the buffers belong to XLA's stream for the call.
    unsafe { cuda::launch_shaped(f, shape, stream, &mut scalars) }?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::block_size;

    #[test]
    fn block_size_spreads_small_populations() {
        assert_eq!(block_size(1_000_000, 132, 1024), 256);
        assert_eq!(block_size(10_000, 132, 1024), 32);
        assert!(block_size(100, 132, 1024) >= 32);
    }
}
