//! `spikeforge_reduce`: deterministic sum / mean / max / min / count, over all elements or per
//! segment (see [`crate::codegen::reduction`] for the scheme and its accuracy).
//!
//! Arguments: `x` (any shape, read flat; bool, int32, float16, bfloat16, float32, float64) and
//! `segments` (the int64 table `[2, n_segments + 1]` of element offsets, then tile offsets,
//! carried as an int32 `[2, 2 * (n_segments + 1)]` of little-endian word pairs, since JAX
//! without x64 has no int64 arrays). Result: `out`
//! `[n_segments]`. Attributes: `op` (`"sum"`, `"mean"`, `"max"`, `"min"`, `"count"`), `tile`
//! (must equal [`TILE`], so a table built for another tiling is refused), `n_tiles` (the last
//! tile offset: the grid of pass 1 and the size of the partials) and `max_tiles` (the most tiles
//! of one segment: sizes the blocks of pass 2). The input and output dtypes are those of the
//! buffers, checked against the op.
//!
//! The partials live in a host vector on the CPU and in XLA scratch memory on the GPU.

use std::ffi::c_void;
use std::sync::{Arc, LazyLock};

use crate::codegen::reduction::{
    self, RDType, ReduceKernel, ReduceOp, CUDA_BLOCK, CUDA_FINISH_MAX_BLOCK, ENTRY_FINISH,
    ENTRY_TILES, TILE,
};
use crate::codegen::Dialect;
use crate::runtime::cache::Lru;
use crate::runtime::{cpu, cuda, RuntimeError};
use crate::xla::{Buffer, CallFrame, DataType, FfiError};

fn rdtype(dtype: DataType) -> Option<RDType> {
    Some(match dtype {
        DataType::Pred => RDType::Bool,
        DataType::S32 => RDType::I32,
        DataType::S64 => RDType::I64,
        DataType::F16 => RDType::F16,
        DataType::BF16 => RDType::BF16,
        DataType::F32 => RDType::F32,
        DataType::F64 => RDType::F64,
        _ => return None,
    })
}

/// One call, decoded and checked.
struct Call<'a> {
    kernel: ReduceKernel,
    x: Buffer<'a>,
    table: Buffer<'a>,
    out: Buffer<'a>,
    n: usize,
    nseg: usize,
    ntiles: usize,
    max_tiles: usize,
}

fn decode<'a>(call: &CallFrame<'a>) -> Result<Call<'a>, FfiError> {
    let attrs = call.attrs()?;
    let op_name = attrs.get_str("op")?;
    let op = ReduceOp::parse(op_name).ok_or_else(|| {
        FfiError::invalid_argument(format!(
            "attribute 'op': unknown reduction {op_name:?} (use sum, mean, max, min or count)"
        ))
    })?;
    let tile = attrs.get_usize("tile")?;
    if tile != TILE {
        return Err(FfiError::invalid_argument(format!(
            "attribute 'tile': the segment table was built for tiles of {tile} elements, this library uses {TILE}"
        )));
    }
    let ntiles = attrs.get_usize("n_tiles")?;
    let max_tiles = attrs.get_usize("max_tiles")?;
    if call.num_args() != 2 || call.num_rets() != 1 {
        return Err(FfiError::invalid_argument(format!(
            "expected 2 arguments (x, segments) and 1 result (out), got {} and {}",
            call.num_args(),
            call.num_rets()
        )));
    }
    let x = call.arg(0)?;
    let table = call.arg(1)?;
    let out = call.ret(0)?;
    let input = rdtype(x.dtype).ok_or_else(|| {
        FfiError::invalid_argument(format!(
            "argument 'x': {} is not supported (bool, int32, float16, bfloat16, float32, float64)",
            x.dtype
        ))
    })?;
    let output = rdtype(out.dtype).ok_or_else(|| {
        FfiError::invalid_argument(format!("result 'out': {} is not supported", out.dtype))
    })?;
    let kernel = ReduceKernel::new(op, input, output).map_err(FfiError::invalid_argument)?;
    // int64 entries carried as little-endian int32 pairs (JAX without x64 has no int64 arrays).
    let nseg = match (table.dtype, table.dims) {
        (DataType::S32, [2, m]) if *m >= 2 && *m % 2 == 0 => (*m / 2 - 1) as usize,
        _ => {
            return Err(FfiError::invalid_argument(format!(
                "argument 'segments': expected int32[2,2*(n_segments+1)] (int64 offsets as int32 pairs), got {table}"
            )))
        }
    };
    if table.data.align_offset(8) != 0 {
        return Err(FfiError::invalid_argument(
            "argument 'segments': buffer is not 8-byte aligned",
        ));
    }
    out.expect("out", out.dtype, &[nseg as i64])?;
    let n = x.element_count();
    if ntiles > n.div_ceil(TILE) + nseg || max_tiles > ntiles {
        return Err(FfiError::invalid_argument(format!(
            "attributes 'n_tiles' ({ntiles}) / 'max_tiles' ({max_tiles}) do not fit {n} elements in {nseg} segments"
        )));
    }
    // One block per tile (pass 1) and per segment (pass 2): CUDA grids reach 2^31 - 1 blocks.
    if ntiles > i32::MAX as usize || nseg > i32::MAX as usize {
        return Err(FfiError::invalid_argument(format!(
            "{n} elements in {nseg} segments are too many for one launch"
        )));
    }
    Ok(Call {
        kernel,
        x,
        table,
        out,
        n,
        nseg,
        ntiles,
        max_tiles,
    })
}

/// `SPIKEFORGE_POISON_OUTPUTS=1`: outputs are filled with 0xFF bytes before the kernels run, as
/// in [`super::neuron_run`], so a segment the kernels fail to write is caught by the tests.
static POISON_OUTPUTS: LazyLock<bool> = LazyLock::new(|| {
    std::env::var("SPIKEFORGE_POISON_OUTPUTS").is_ok_and(|v| !v.is_empty() && v != "0")
});

fn runtime_error(e: RuntimeError) -> FfiError {
    FfiError::internal(e.to_string())
}

/// `(t0, t1, table, nseg, n, x, partials)`
type CTiles = unsafe extern "C" fn(i64, i64, *const i64, i64, i64, *const c_void, *mut c_void);
/// `(s0, s1, table, nseg, n, ntiles, partials, out)`
type CFinish =
    unsafe extern "C" fn(i64, i64, *const i64, i64, i64, i64, *const c_void, *mut c_void);

/// Both C entry points of a kernel, resolved once per process.
struct CKernel {
    tiles: CTiles,
    finish: CFinish,
    _module: Arc<cpu::CpuModule>,
}

fn c_kernel(k: &ReduceKernel) -> Result<Arc<CKernel>, FfiError> {
    static LOADED: LazyLock<Lru<CKernel>> = LazyLock::new(Lru::new);
    LOADED.get_or_try_insert(&k.key(), || {
        let opts = cpu::CpuCompileOptions::default();
        let module = cpu::load_keyed(&k.key(), ENTRY_TILES, &opts, || {
            reduction::generate(k, Dialect::C)
        })
        .map_err(runtime_error)?;
        // SAFETY: the generated entry points have exactly these signatures.
        let tiles: CTiles = unsafe { module.entry::<CTiles>() };
        let finish: CFinish = unsafe {
            *module
                .symbol::<CFinish>(ENTRY_FINISH)
                .map_err(runtime_error)?
        };
        Ok(Arc::new(CKernel {
            tiles,
            finish,
            _module: module,
        }))
    })
}

/// A raw pointer that worker threads may share: each chunk writes its own range only.
#[derive(Clone, Copy)]
struct SharedMut(*mut c_void);
// SAFETY: used for buffers that outlive the parallel section, written at disjoint indices.
unsafe impl Sync for SharedMut {}
unsafe impl Send for SharedMut {}

pub fn run_cpu(call: &CallFrame) -> Result<(), FfiError> {
    let c = decode(call)?;
    // SAFETY: host memory on the CPU platform, not written during the call, 8-byte aligned
    // (checked in `decode`), holding 2 * (nseg + 1) int64 as int32 pairs.
    let table: &[i64] =
        unsafe { std::slice::from_raw_parts(c.table.data.cast::<i64>(), 2 * (c.nseg + 1)) };
    reduction::validate_table(table, c.nseg, c.n, c.ntiles)
        .map_err(|e| FfiError::invalid_argument(format!("argument 'segments': {e}")))?;
    let k = c_kernel(&c.kernel)?;
    if *POISON_OUTPUTS {
        // SAFETY: a host buffer of this size owned by XLA for this call.
        unsafe { std::ptr::write_bytes(c.out.data.cast::<u8>(), 0xFF, c.out.size_bytes()) };
    }
    // u64 storage keeps every accumulator type (at most 8 bytes) aligned.
    let mut partials = vec![0u64; c.ntiles];
    let partials_ptr = SharedMut(partials.as_mut_ptr().cast());
    let x = SharedMut(c.x.data);
    let (nseg, n, ntiles) = (c.nseg as i64, c.n as i64, c.ntiles as i64);
    // A tile is ~8k elements (a few µs); 4 tiles per chunk make a thread hand-off worth it. The
    // chunking never changes a result: each tile is reduced on its own.
    cpu::parallel_chunks(c.ntiles, 4, |t0, t1| {
        let (x, partials) = (x, partials_ptr);
        // SAFETY: the table was validated; the kernel writes partials[t0..t1] only and reads x
        // within the segments, which cover exactly x's elements.
        unsafe {
            (k.tiles)(
                t0 as i64,
                t1 as i64,
                table.as_ptr(),
                nseg,
                n,
                x.0,
                partials.0,
            )
        };
    });
    let out = SharedMut(c.out.data);
    cpu::parallel_chunks(c.nseg, 4096, |s0, s1| {
        let (out, partials) = (out, partials_ptr);
        // SAFETY: as above; writes out[s0..s1] only.
        unsafe {
            (k.finish)(
                s0 as i64,
                s1 as i64,
                table.as_ptr(),
                nseg,
                n,
                ntiles,
                partials.0,
                out.0,
            )
        };
    });
    Ok(())
}

/// Threads per block of pass 2: enough to read a segment's partials in a few strided rounds,
/// at least a warp, a power of two (the shared tree halves it).
fn finish_block(max_tiles: usize) -> u32 {
    (max_tiles.div_ceil(4).next_power_of_two()).clamp(32, CUDA_FINISH_MAX_BLOCK) as u32
}

pub fn run_cuda(call: &CallFrame) -> Result<(), FfiError> {
    let c = decode(call)?;
    let stream = call.stream()?;
    let key = c.kernel.key();
    let opts = cuda::CudaCompileOptions::default();
    let source = || reduction::generate(&c.kernel, Dialect::Cuda);
    let tiles = cuda::load_function_keyed(&key, ENTRY_TILES, stream, &opts, source)
        .map_err(runtime_error)?;
    let finish = cuda::load_function_keyed(&key, ENTRY_FINISH, stream, &opts, source)
        .map_err(runtime_error)?;
    if *POISON_OUTPUTS && c.out.size_bytes() > 0 {
        // SAFETY: a device buffer of this size on XLA's stream for this call.
        unsafe { cuda::memset_async(c.out.data, 0xFF, c.out.size_bytes(), stream) }
            .map_err(runtime_error)?;
    }
    if c.nseg == 0 {
        return Ok(());
    }
    // Scratch for the partials, from XLA's allocator (stream-ordered: freed when this handler
    // returns, reusable only by work queued after ours). At least one element so the pointer is
    // never null.
    let scratch = call.scratch(c.ntiles.max(1) * c.kernel.accumulator_bytes(), 16)?;
    let mut table = c.table.data;
    let mut nseg = c.nseg as i64;
    let mut n = c.n as i64;
    let mut ntiles = c.ntiles as i64;
    let mut x = c.x.data;
    let mut partials = scratch.data();
    let mut out = c.out.data;
    if c.ntiles > 0 {
        let mut params: [*mut c_void; 6] = [
            (&mut table as *mut *mut c_void).cast(),
            (&mut nseg as *mut i64).cast(),
            (&mut n as *mut i64).cast(),
            (&mut ntiles as *mut i64).cast(),
            (&mut x as *mut *mut c_void).cast(),
            (&mut partials as *mut *mut c_void).cast(),
        ];
        // SAFETY: parameters in the order and types of the generated kernel; the kernel clamps
        // every index it takes from the table, and the buffers live for the call.
        unsafe {
            cuda::launch(
                &tiles,
                (c.ntiles as u32, 1, 1),
                (CUDA_BLOCK as u32, 1, 1),
                0,
                stream,
                &mut params,
            )
        }
        .map_err(runtime_error)?;
    }
    let mut params: [*mut c_void; 6] = [
        (&mut table as *mut *mut c_void).cast(),
        (&mut nseg as *mut i64).cast(),
        (&mut n as *mut i64).cast(),
        (&mut ntiles as *mut i64).cast(),
        (&mut partials as *mut *mut c_void).cast(),
        (&mut out as *mut *mut c_void).cast(),
    ];
    // The tree needs a power of two: round the kernel's limit down to one.
    let limit = finish.max_threads_per_block().max(32);
    let block = finish_block(c.max_tiles).min(1 << (31 - limit.leading_zeros()));
    // SAFETY: as above.
    unsafe {
        cuda::launch(
            &finish,
            (c.nseg as u32, 1, 1),
            (block, 1, 1),
            0,
            stream,
            &mut params,
        )
    }
    .map_err(runtime_error)?;
    drop(scratch);
    Ok(())
}

crate::xla_ffi_handler!(pub fn sf_reduce_cpu => run_cpu);
crate::xla_ffi_handler!(pub fn sf_reduce_cuda => run_cuda);

#[cfg(test)]
mod tests {
    use super::*;

    /// The C kernels straight from Rust: float32 sums of three segments (one empty, one spanning
    /// several tiles) against a float64 reference, and the same bits however the tiles are split
    /// between calls (as `parallel_chunks` may split them between threads).
    #[test]
    fn c_sum_matches_float64_and_ignores_the_chunking() {
        let k = ReduceKernel::new(ReduceOp::Sum, RDType::F32, RDType::F32).unwrap();
        let kernel = c_kernel(&k).expect("a C compiler");
        let lengths = [1000, 0, 3 * TILE + 17];
        let n: usize = lengths.iter().sum();
        // A cheap deterministic pseudo-random sequence (no new crates): values in [-1, 2).
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let x: Vec<f32> = (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 40) as f32 / (1u64 << 24) as f32 * 3.0 - 1.0
            })
            .collect();
        let table = reduction::segment_table(&lengths);
        let ntiles = *table.last().unwrap() as usize;
        let nseg = lengths.len() as i64;
        let run = |splits: &[usize]| -> Vec<f32> {
            let mut partials = vec![0u64; ntiles];
            let mut out = vec![f32::NAN; lengths.len()];
            for w in splits.windows(2) {
                // SAFETY: a valid table for x; partials sized by the table.
                unsafe {
                    (kernel.tiles)(
                        w[0] as i64,
                        w[1] as i64,
                        table.as_ptr(),
                        nseg,
                        n as i64,
                        x.as_ptr().cast(),
                        partials.as_mut_ptr().cast(),
                    )
                };
            }
            // SAFETY: as above.
            unsafe {
                (kernel.finish)(
                    0,
                    nseg,
                    table.as_ptr(),
                    nseg,
                    n as i64,
                    ntiles as i64,
                    partials.as_ptr().cast(),
                    out.as_mut_ptr().cast(),
                )
            };
            out
        };
        let whole = run(&[0, ntiles]);
        let mut lo = 0;
        for (s, &len) in lengths.iter().enumerate() {
            let exact: f64 = x[lo..lo + len].iter().map(|&v| f64::from(v)).sum();
            let err = (f64::from(whole[s]) - exact).abs();
            assert!(
                err <= exact.abs() * f64::from(f32::EPSILON) / 2.0 + 1e-9,
                "segment {s}: {} vs {exact}",
                whole[s]
            );
            lo += len;
        }
        for splits in [
            &[0, 1, ntiles][..],
            &[0, 2, 3, ntiles],
            &[0, 1, 2, 3, ntiles],
        ] {
            let split = run(splits);
            assert_eq!(
                whole.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                split.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn finish_blocks_are_powers_of_two_within_limits() {
        assert_eq!(finish_block(0), 32);
        assert_eq!(finish_block(1), 32);
        assert_eq!(finish_block(12208), 1024);
        assert_eq!(finish_block(300), 128);
        for t in 0..5000 {
            assert!(finish_block(t).is_power_of_two());
        }
    }
}
