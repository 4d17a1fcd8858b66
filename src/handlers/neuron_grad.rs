//! `spikeforge_neuron_grad`: the whole backward pass of a neuron run, one launch (the generated
//! adjoint kernel, [`crate::codegen::adjoint_kernel`]).
//!
//! Attributes: `spec` (the model spec JSON, as for the run), `key` (its hash), `steps` (the
//! run's steps), `n_inner`, `segment` (`k`, the steps between checkpoints, `1..=steps`),
//! `record_every` (the traces' recording interval), `spike_train` (1 when the call passes a
//! per-step spike cotangent, 0 when its buffer is empty, shape `(0,)`). Buffers follow
//! [`adjoint_layout`](crate::codegen::adjoint_kernel::adjoint_layout). Instantiation parses and
//! lowers the spec and derives the adjoint (a model whose runs are not differentiable is an
//! error that names why); the first execution compiles the kernel; every execution checks the
//! buffers and launches, on the CPU over element ranges, on CUDA one thread per element on
//! XLA's stream (the same work every time, so XLA may capture it into a CUDA graph).

use std::ffi::c_void;
use std::sync::Arc;

use super::buffers::{self, Expected};
use super::loaded_kernels::LoadedKernels;
use super::neuron_run::{
    block_size, cpu_options, cuda_options, grid_for, int32_count, launch_with_buffers,
    run_elements, CEntry,
};
use super::poison;
use crate::codegen::adjoint_kernel::{
    generate_adjoint, generate_adjoint_tuned, AdjointArg, AdjointLayout, AdjointShape,
    AdjointTuning, SegmentStore, ADJOINT_ENTRY,
};
use crate::codegen::{self, Dialect};
use crate::ir::GroupIr;
use crate::runtime::cuda;
use crate::spec::ModelSpec;
use crate::xla::{CallFrame, DataType, FfiError, Handler, HandlerTraits, Instance};

type CpuKernel = super::loaded_kernels::CpuKernel<CEntry>;

/// One call site of `spikeforge_neuron_grad`.
pub struct NeuronGrad {
    /// The key of the compiled adjoint kernel (distinct from the run's).
    kernel_key: String,
    spec: ModelSpec,
    ir: GroupIr,
    layout: AdjointLayout,
    steps: usize,
    n_inner: usize,
    /// The steps between checkpoints.
    segment: usize,
    /// Where the kernel keeps a segment: in registers, a source for this `segment` (its
    /// scratch outputs empty), or in the scratch.
    store: SegmentStore,
    /// The CUDA kernel's memory tuning (`SPIKEFORGE_ADJOINT_TUNING`, read at instantiation).
    tuning: AdjointTuning,
    record_every: usize,
    /// Whether the per-step spike cotangent has rows.
    spike_train: bool,
    kernels: LoadedKernels<CpuKernel, Arc<cuda::CudaFunction>>,
}

/// The registers a thread of the adjoint kernel keeps its segment in by default
/// (`--maxrregcount`), where that spills nothing: more threads resident on a multiprocessor, a
/// walk that waits on memory overlapped by more others. On an H200 (bench_gradients' LIF, 1M
/// neurons x 1000 steps, k = 8, three processes each) the backward took 2.63-2.78 ms at 40
/// registers against 2.90-3.02 at the compiler's 63, and 2.80-2.86 at 48.
const ADJOINT_REGISTERS: u32 = 40;

impl NeuronGrad {
    /// The adjoint kernel on `stream`'s device: a segment in registers is compiled with at most
    /// [`ADJOINT_REGISTERS`] registers a thread unless the tuning names a limit, and without
    /// the limit where ptxas spilled under it (local memory: the driver says how much).
    fn load_cuda(&self, stream: *mut c_void) -> Result<Arc<cuda::CudaFunction>, FfiError> {
        let load = |tuning: AdjointTuning| {
            cuda::load_function_keyed(
                &self.kernel_key,
                ADJOINT_ENTRY,
                stream,
                &cuda::CudaCompileOptions {
                    extra: tuning.compile_options(),
                    ..cuda_options(false)
                },
                || self.source(Dialect::Cuda),
            )
        };
        if self.tuning.max_registers == 0 && matches!(self.store, SegmentStore::Registers(_)) {
            let limited = load(AdjointTuning {
                max_registers: ADJOINT_REGISTERS,
                ..self.tuning
            })?;
            if cuda::function_local_bytes(&limited)? == 0 {
                return Ok(limited);
            }
        }
        Ok(load(self.tuning)?)
    }

    fn source(&self, dialect: Dialect) -> String {
        generate_adjoint_tuned(
            &self.ir,
            &self.spec,
            dialect,
            self.segment,
            self.tuning,
            Some(self.spike_train),
        )
        .expect("checked at instantiation")
        .source
    }
}

impl Instance for NeuronGrad {
    fn instantiate(call: &CallFrame) -> Result<NeuronGrad, FfiError> {
        let attrs = call.attrs()?;
        let key = attrs.get_str("key")?;
        let spec = ModelSpec::from_json(attrs.get_str("spec")?)
            .map_err(|e| FfiError::invalid_argument(format!("attribute 'spec': {e}")))?;
        if spec.key() != key {
            return Err(FfiError::invalid_argument(
                "attribute 'key' does not match attribute 'spec'",
            ));
        }
        let (ir, _) = codegen::prepare(&spec)?;
        let steps = int32_count(&attrs, "steps")?;
        let n_inner = attrs.get_usize("n_inner")?;
        // The adjoint kernel walks rows by a 32-bit stride (`codegen::adjoint_kernel`).
        if n_inner == 0 || i32::try_from(n_inner).is_err() {
            return Err(FfiError::invalid_argument(format!(
                "attribute 'n_inner': the gradient of a run takes 1..=2^31-1 neurons a batch \
                 member, got {n_inner}"
            )));
        }
        let segment = attrs.get_usize("segment")?;
        if segment == 0 || segment > steps {
            return Err(FfiError::invalid_argument(format!(
                "attribute 'segment': must be in 1..=steps ({steps}), got {segment}"
            )));
        }
        let generated = generate_adjoint(&ir, &spec, Dialect::C, segment)
            .map_err(|e| FfiError::invalid_argument(e.to_string()))?;
        let (layout, store) = (generated.layout, generated.store);
        let spike_train = match attrs.get_usize("spike_train")? {
            0 => false,
            1 => true,
            other => {
                return Err(FfiError::invalid_argument(format!(
                    "attribute 'spike_train': must be 0 or 1, got {other}"
                )))
            }
        };
        let tuning = crate::runtime::settings::adjoint_tuning()
            .map_err(|e| FfiError::invalid_argument(e.to_string()))?;
        // A source in registers is one of `segment`, and every source one of calls with or
        // without a spike train: its key says so; a tuned CUDA source names its tuning (the C
        // source has none).
        let mut kernel_key = match store {
            SegmentStore::Registers(k) => format!("adjoint\n{key}\nregisters {k}"),
            SegmentStore::Scratch => format!("adjoint\n{key}"),
        };
        kernel_key.push_str(&format!("\nspike_train {}", u8::from(spike_train)));
        if tuning != AdjointTuning::default() {
            kernel_key.push_str(&format!("\ntuning {}", tuning.name()));
        }
        let record_every = int32_count(&attrs, "record_every")?;
        Ok(NeuronGrad {
            kernel_key: crate::runtime::cache::sha256_hex(&kernel_key),
            spec,
            ir,
            layout,
            steps,
            n_inner,
            segment,
            store,
            tuning,
            record_every,
            spike_train,
            kernels: LoadedKernels::new(),
        })
    }
}

/// The checked buffers of one call and the element count.
struct Call<'a> {
    n: usize,
    buffers: buffers::Checked<'a>,
}

fn decode<'a>(call: &CallFrame<'a>, site: &NeuronGrad) -> Result<Call<'a>, FfiError> {
    let t_index = site
        .layout
        .inputs
        .iter()
        .position(|a| a.name == "t")
        .expect("the time is an input");
    let t = call.arg(t_index)?;
    let nb = match t.dims {
        [nb, 2] if *nb > 0 => *nb,
        _ => {
            return Err(FfiError::invalid_argument(format!(
                "argument 't': expected int32[nb, 2] (the time as float64 words), got {t}"
            )))
        }
    };
    let (steps, n_inner) = (site.steps as i64, site.n_inner as i64);
    let segment = site.segment as i64;
    let (segments, records) = (
        site.steps.div_ceil(site.segment) as i64,
        site.steps.div_ceil(site.record_every) as i64,
    );
    let n = n_inner.checked_mul(nb).ok_or_else(|| {
        FfiError::invalid_argument(format!(
            "{nb} batch members of {n_inner} neurons are more than 2^63 neurons"
        ))
    })?;
    let dims = |shape: AdjointShape| -> Vec<i64> {
        match shape {
            AdjointShape::Neuron => vec![n],
            AdjointShape::Batch => vec![nb],
            AdjointShape::PerStep => vec![nb, steps, n_inner],
            // Without a spike train, an empty buffer (one axis: a vmap folds it as it is).
            AdjointShape::OptionalPerStep if !site.spike_train => vec![0],
            AdjointShape::OptionalPerStep => vec![nb, steps, n_inner],
            AdjointShape::PerRecord => vec![nb, records, n_inner],
            AdjointShape::PerSegment => vec![nb, segments, n_inner],
            // Two halves: one segment walked back while the one before it is recomputed; none
            // when the segment is in registers.
            AdjointShape::SegmentStep => match site.store {
                SegmentStore::Registers(_) => vec![0],
                SegmentStore::Scratch => vec![nb, 2 * segment, n_inner],
            },
            AdjointShape::BatchWords => vec![nb, 2],
        }
    };
    let shapes =
        |args: &[AdjointArg]| -> Vec<Vec<i64>> { args.iter().map(|a| dims(a.shape)).collect() };
    let (in_dims, out_dims) = (shapes(&site.layout.inputs), shapes(&site.layout.outputs));
    let inputs = expected_owned(&site.layout.inputs, &in_dims);
    let outputs = expected_owned(&site.layout.outputs, &out_dims);
    let buffers = buffers::check(call, &inputs, &outputs)?;
    Ok(Call {
        n: usize::try_from(n).expect("a product of positive i64 that did not overflow"),
        buffers,
    })
}

/// What each of `args` must be, with `dims` its dimensions in this call.
fn expected_owned<'e>(args: &'e [AdjointArg], dims: &'e [Vec<i64>]) -> Vec<Expected<'e>> {
    args.iter()
        .zip(dims)
        .map(|(a, d)| Expected {
            name: &a.name,
            dtype: DataType::from(a.elem),
            dims: d,
        })
        .collect()
}

/// `spikeforge_neuron_grad` on the CPU: element ranges spread over the cores.
pub struct NeuronGradCpu;

impl Handler for NeuronGradCpu {
    type Instance = NeuronGrad;
    const TRAITS: HandlerTraits = HandlerTraits::NONE;

    fn execute(call: &CallFrame<'_>, site: &NeuronGrad) -> Result<(), FfiError> {
        let run = decode(call, site)?;
        // SAFETY: `CEntry` is the generated entry's signature.
        let kernel = unsafe {
            site.kernels
                .cpu_keyed(&site.kernel_key, ADJOINT_ENTRY, &cpu_options(false), || {
                    site.source(Dialect::C)
                })
        }?;
        if poison::enabled() {
            // SAFETY: host buffers of these sizes owned by XLA for this call.
            unsafe { poison::host(&run.buffers.rets) };
        }
        let outputs: Vec<*mut c_void> = run.buffers.ret_ptrs().collect();
        let dims = [
            site.n_inner as i64,
            site.steps as i64,
            site.segment as i64,
            site.record_every as i64,
            i64::from(site.spike_train),
        ];
        run_elements(
            kernel.entry,
            run.n,
            site.steps,
            &dims,
            &run.buffers.args,
            &outputs,
        );
        Ok(())
    }
}

/// `spikeforge_neuron_grad` on CUDA: one launch on XLA's stream.
pub struct NeuronGradCuda;

impl Handler for NeuronGradCuda {
    type Instance = NeuronGrad;
    const TRAITS: HandlerTraits = HandlerTraits::COMMAND_BUFFER_COMPATIBLE;

    fn execute(call: &CallFrame<'_>, site: &NeuronGrad) -> Result<(), FfiError> {
        let run = decode(call, site)?;
        let stream = call.stream()?;
        let f = site
            .kernels
            .cuda_loaded_for_call(stream, &run.buffers.rets, || site.load_cuda(stream))?;
        // Spread over the multiprocessors as the forward kernel is (a small population in
        // small blocks): each thread's walk is long and latency-bound.
        let block = adjoint_block(run.n, f.multiprocessor_count(), f.max_threads_per_block());
        let grid = grid_for(run.n, block)?;
        let mut n = run.n as i64;
        let mut n_inner = site.n_inner as i64;
        // Checked at instantiation: within int32.
        let mut steps = site.steps as i32;
        let mut segment = site.segment as i32;
        let mut record_every = site.record_every as i32;
        let mut spike_train = i32::from(site.spike_train);
        let params: Vec<*mut c_void> = vec![
            (&mut n as *mut i64).cast(),
            (&mut n_inner as *mut i64).cast(),
            (&mut steps as *mut i32).cast(),
            (&mut segment as *mut i32).cast(),
            (&mut record_every as *mut i32).cast(),
            (&mut spike_train as *mut i32).cast(),
        ];
        // SAFETY: the scalars and the buffers, in this order, are the generated kernel's
        // parameters; the buffers belong to XLA's stream and stay valid for the call.
        unsafe { launch_with_buffers(&f, grid, block, stream, params, &run.buffers) }
    }
}

/// Threads per block of the adjoint kernel: [`block_size`], in blocks that divide what the
/// kernel's registers let a multiprocessor hold. A segment in registers takes many (a LIF's,
/// 32 steps: about 170), so `max_threads` (a block's limit: a multiprocessor's registers over
/// the kernel's) is e.g. 384: two blocks of 192 keep all 384 threads resident where one block of
/// 256 would keep 256.
fn adjoint_block(n: usize, multiprocessors: u32, max_threads: u32) -> u32 {
    let warps = (max_threads / 32).max(1);
    let fits = 32 * (warps / warps.div_ceil(8));
    block_size(n, multiprocessors, max_threads).min(fits)
}

#[cfg(test)]
mod tests {
    use super::adjoint_block;

    #[test]
    fn adjoint_blocks_divide_what_the_registers_hold() {
        // 168 registers a thread: 384 threads a multiprocessor, two blocks of 192.
        assert_eq!(adjoint_block(1_000_000, 132, 384), 192);
        // Few registers: blocks of 256, as the forward kernel's.
        assert_eq!(adjoint_block(1_000_000, 132, 1024), 256);
        // 19 warps: three blocks of 6.
        assert_eq!(adjoint_block(1_000_000, 132, 608), 192);
        // A small population still spreads over the multiprocessors.
        assert_eq!(adjoint_block(10_000, 132, 384), 32);
    }
}
