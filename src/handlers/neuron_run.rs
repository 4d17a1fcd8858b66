//! `spikeforge_neuron_run`: runs the fused neuron kernel of a model for `steps` steps.
//!
//! Attributes: `spec` (the model spec JSON), `key` (its hash), `steps`, `record_every`,
//! `n_inner`. Buffers follow [`crate::codegen::layout`]. The first call for a key parses the spec,
//! generates and compiles the kernel; later calls are a map lookup, buffer checks and a launch.

use std::ffi::c_void;
use std::sync::{Arc, LazyLock, Mutex, OnceLock};

use crate::codegen::{self, Dialect, ElemType, Layout, ShapeKind};
use crate::ir::NeuronIr;
use crate::runtime::cache::Lru;
use crate::runtime::{cpu, cuda, RuntimeError};
use crate::spec::{DType, ModelSpec, Storage};
use crate::xla::{Attrs, CallFrame, DataType, FfiError};

/// A model spec resolved once per process: the IR to generate from and the argument layout.
struct Prepared {
    spec: ModelSpec,
    ir: NeuronIr,
    layout: Layout,
    /// The loaded kernels, so that a call after the first is one map lookup: the C kernel, and
    /// the CUDA kernel per XLA stream (a stream belongs to one context for its whole life).
    cpu: OnceLock<Arc<cpu::CpuModule>>,
    cuda: Mutex<Vec<(usize, Arc<cuda::CudaFunction>)>>,
}

static PREPARED: LazyLock<Lru<Prepared>> = LazyLock::new(Lru::new);

fn prepared(attrs: &Attrs, key: &str) -> Result<Arc<Prepared>, FfiError> {
    PREPARED.get_or_try_insert(key, || {
        let text = attrs.get_str("spec")?;
        let spec = ModelSpec::from_json(text)
            .map_err(|e| FfiError::invalid_argument(format!("attribute 'spec': {e}")))?;
        if spec.key() != key {
            return Err(FfiError::invalid_argument(
                "attribute 'key' does not match attribute 'spec'",
            ));
        }
        let ir = crate::ir::lower(&spec).map_err(|d| FfiError::invalid_argument(d.render()))?;
        let layout = codegen::layout::layout(&ir, &spec);
        Ok(Arc::new(Prepared {
            spec,
            ir,
            layout,
            cpu: OnceLock::new(),
            cuda: Mutex::new(Vec::new()),
        }))
    })
}

/// The sizes of one call, read from the attributes and checked against the buffers.
struct Run {
    n: usize,
    n_inner: usize,
    steps: usize,
    record_every: usize,
    n_rec: usize,
    inputs: Vec<*mut c_void>,
    outputs: Vec<*mut c_void>,
}

fn data_type(elem: ElemType, spec: &ModelSpec) -> DataType {
    match (elem, spec.storage, spec.dtype) {
        (ElemType::Real, Some(Storage::Float16), _) => DataType::F16,
        (ElemType::Real, Some(Storage::Bfloat16), _) => DataType::BF16,
        (ElemType::Real, None, DType::Float32) => DataType::F32,
        (ElemType::Real, None, DType::Float64) => DataType::F64,
        (ElemType::Int32, _, _) => DataType::S32,
        (ElemType::Bool, _, _) => DataType::Pred,
    }
}

fn decode(call: &CallFrame, p: &Prepared, attrs: &Attrs) -> Result<Run, FfiError> {
    let steps = attrs.get_usize("steps")?;
    let record_every = attrs.get_usize("record_every")?;
    let n_inner = attrs.get_usize("n_inner")?;
    if steps == 0 || steps > i32::MAX as usize {
        return Err(FfiError::invalid_argument(format!(
            "attribute 'steps': must be in 1..=2^31-1, got {steps}"
        )));
    }
    if record_every == 0 || record_every > i32::MAX as usize {
        return Err(FfiError::invalid_argument(
            "attribute 'record_every': must be >= 1",
        ));
    }
    if n_inner == 0 {
        return Err(FfiError::invalid_argument(
            "attribute 'n_inner': must be >= 1",
        ));
    }
    let layout = &p.layout;
    if call.num_args() != layout.inputs.len() || call.num_rets() != layout.outputs.len() {
        let names = |args: &[codegen::Arg]| {
            args.iter()
                .map(|a| a.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(FfiError::invalid_argument(format!(
            "expected {} arguments ({}) and {} results ({}), got {} and {}",
            layout.inputs.len(),
            names(&layout.inputs),
            layout.outputs.len(),
            names(&layout.outputs),
            call.num_args(),
            call.num_rets()
        )));
    }
    // The batch size comes from `t0`, the one (nb,)-shaped argument.
    let t0_index = layout
        .inputs
        .iter()
        .position(|a| a.shape == ShapeKind::Batch)
        .expect("t0 is always an input");
    let t0 = call.arg(t0_index)?;
    let nb = match t0.dims {
        [nb] if *nb > 0 => *nb as usize,
        _ => {
            return Err(FfiError::invalid_argument(format!(
                "argument 't0': expected int32[nb], got {t0}"
            )))
        }
    };
    let n = nb * n_inner;
    let n_rec = steps.div_ceil(record_every);
    let dims_of = |shape: ShapeKind| -> Vec<i64> {
        match shape {
            ShapeKind::Neuron => vec![n as i64],
            ShapeKind::PerStep => vec![nb as i64, steps as i64, n_inner as i64],
            ShapeKind::Batch => vec![nb as i64],
            ShapeKind::Trace => vec![nb as i64, n_rec as i64, n_inner as i64],
        }
    };
    let mut inputs = Vec::with_capacity(layout.inputs.len());
    for (k, a) in layout.inputs.iter().enumerate() {
        let b = call.arg(k)?;
        b.expect(&a.name, data_type(a.elem, &p.spec), &dims_of(a.shape))?;
        inputs.push(b.data);
    }
    let mut outputs = Vec::with_capacity(layout.outputs.len());
    for (k, a) in layout.outputs.iter().enumerate() {
        let b = call.ret(k)?;
        b.expect(&a.name, data_type(a.elem, &p.spec), &dims_of(a.shape))?;
        outputs.push(b.data);
    }
    Ok(Run {
        n,
        n_inner,
        steps,
        record_every,
        n_rec,
        inputs,
        outputs,
    })
}

/// `SPIKEFORGE_POISON_OUTPUTS=1`: fill every output with 0xFF bytes (NaN for floats, -1 for
/// integers, an invalid truth value) before the kernel runs, so tests catch unwritten elements.
static POISON_OUTPUTS: LazyLock<bool> = LazyLock::new(|| {
    std::env::var("SPIKEFORGE_POISON_OUTPUTS").is_ok_and(|v| !v.is_empty() && v != "0")
});

/// The byte size of every output, in layout order.
fn output_bytes(call: &CallFrame, n_outputs: usize) -> Result<Vec<usize>, FfiError> {
    (0..n_outputs)
        .map(|k| call.ret(k).map(|b| b.size_bytes()))
        .collect()
}

fn runtime_error(e: RuntimeError) -> FfiError {
    FfiError::internal(e.to_string())
}

/// Compiler options for a model's C kernel. Under fast math, divisions and square roots may use
/// the approximate reciprocal instructions refined by one Newton step (`-mrecip`).
fn cpu_options(fast_math: bool) -> cpu::CpuCompileOptions {
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

/// The C entry point: `(start, end, dims, inputs, outputs)`.
type CEntry = unsafe extern "C" fn(i64, i64, *const i64, *const *mut c_void, *const *mut c_void);

/// Raw buffer pointers shared by the worker threads; each thread writes a disjoint neuron range.
struct SharedPtrs<'a>(&'a [*mut c_void], &'a [*mut c_void]);
// SAFETY: the buffers outlive the call and chunks write disjoint neuron ranges.
unsafe impl Sync for SharedPtrs<'_> {}

pub fn run_cpu(call: &CallFrame) -> Result<(), FfiError> {
    let attrs = call.attrs()?;
    let key = attrs.get_str("key")?;
    let p = prepared(&attrs, key)?;
    let run = decode(call, &p, &attrs)?;
    let module = match p.cpu.get() {
        Some(m) => Arc::clone(m),
        None => {
            let opts = cpu_options(p.spec.fast_math);
            let m = cpu::load_keyed(key, codegen::ENTRY, &opts, || {
                codegen::generate(&p.ir, &p.spec, Dialect::C).source
            })
            .map_err(runtime_error)?;
            Arc::clone(p.cpu.get_or_init(|| m))
        }
    };
    // SAFETY: the generated C entry has exactly this signature.
    let entry: CEntry = unsafe { module.entry::<CEntry>() };
    if *POISON_OUTPUTS {
        for (ptr, bytes) in run
            .outputs
            .iter()
            .zip(output_bytes(call, run.outputs.len())?)
        {
            // SAFETY: a host buffer of `bytes` bytes owned by XLA for this call.
            unsafe { std::ptr::write_bytes(ptr.cast::<u8>(), 0xFF, bytes) };
        }
    }
    let dims = [
        run.n_inner as i64,
        run.steps as i64,
        run.record_every as i64,
        run.n_rec as i64,
    ];
    let ptrs = SharedPtrs(&run.inputs, &run.outputs);
    // Small runs stay on the calling thread: a chunk should be worth a thread hand-off (~10 µs).
    let min_chunk = (1usize << 18) / run.steps.max(1);
    cpu::parallel_chunks(run.n, min_chunk, |start, end| {
        let ptrs = &ptrs;
        // SAFETY: buffers were checked against the layout; the kernel touches [start, end) only
        // (plus shared read-only inputs).
        unsafe {
            entry(
                start as i64,
                end as i64,
                dims.as_ptr(),
                ptrs.0.as_ptr(),
                ptrs.1.as_ptr(),
            )
        };
    });
    Ok(())
}

/// Threads per block: full blocks for large populations, smaller ones when that spreads a small
/// population over more multiprocessors (a time loop of thousands of steps is latency-bound).
fn block_size(n: usize, multiprocessors: u32, max_threads: u32) -> u32 {
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

/// The model's CUDA kernel for XLA's `stream`: a lookup after the first call on that stream.
fn cuda_function(
    p: &Prepared,
    key: &str,
    stream: *mut c_void,
) -> Result<Arc<cuda::CudaFunction>, FfiError> {
    let mut loaded = p.cuda.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, f)) = loaded.iter().find(|(s, _)| *s == stream as usize) {
        return Ok(Arc::clone(f));
    }
    let opts = cuda::CudaCompileOptions {
        fast_math: p.spec.fast_math,
        ..Default::default()
    };
    let f = cuda::load_function_keyed(key, codegen::ENTRY, stream, &opts, || {
        codegen::generate(&p.ir, &p.spec, Dialect::Cuda).source
    })
    .map_err(runtime_error)?;
    loaded.push((stream as usize, Arc::clone(&f)));
    Ok(f)
}

pub fn run_cuda(call: &CallFrame) -> Result<(), FfiError> {
    let attrs = call.attrs()?;
    let key = attrs.get_str("key")?;
    let p = prepared(&attrs, key)?;
    let run = decode(call, &p, &attrs)?;
    let stream = call.stream()?;
    let f = cuda_function(&p, key, stream)?;
    if *POISON_OUTPUTS {
        for (ptr, bytes) in run
            .outputs
            .iter()
            .zip(output_bytes(call, run.outputs.len())?)
        {
            // SAFETY: a device buffer of `bytes` bytes on XLA's stream for this call.
            unsafe { cuda::memset_async(*ptr, 0xFF, bytes, stream) }.map_err(runtime_error)?;
        }
    }
    let block = block_size(run.n, f.multiprocessor_count(), f.max_threads_per_block());
    let grid = (run.n as u64).div_ceil(block as u64);
    if grid > u32::MAX as u64 {
        return Err(FfiError::invalid_argument(format!(
            "{} neurons are too many for one launch",
            run.n
        )));
    }
    let mut n = run.n as i64;
    let mut n_inner = run.n_inner as i64;
    let mut steps = run.steps as i32;
    let mut record_every = run.record_every as i32;
    let mut n_rec = run.n_rec as i32;
    let mut buffers: Vec<*mut c_void> = run.inputs.iter().chain(&run.outputs).copied().collect();
    let mut params: Vec<*mut c_void> = vec![
        (&mut n as *mut i64).cast(),
        (&mut n_inner as *mut i64).cast(),
        (&mut steps as *mut i32).cast(),
        (&mut record_every as *mut i32).cast(),
        (&mut n_rec as *mut i32).cast(),
    ];
    params.extend(
        buffers
            .iter_mut()
            .map(|b| (b as *mut *mut c_void).cast::<c_void>()),
    );
    // SAFETY: the parameters match the generated kernel's signature in order and type; the
    // buffers belong to XLA's stream and stay valid for the call.
    unsafe {
        cuda::launch(
            &f,
            (grid as u32, 1, 1),
            (block, 1, 1),
            0,
            stream,
            &mut params,
        )
    }
    .map_err(runtime_error)
}

crate::xla_ffi_handler!(pub fn sf_neuron_run_cpu => run_cpu);
crate::xla_ffi_handler!(pub fn sf_neuron_run_cuda => run_cuda);

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
