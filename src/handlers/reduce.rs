//! `spikeforge_reduce`: deterministic sum / mean / max / min / count, over all elements or per
//! segment (see [`crate::codegen::reduction`] for the scheme and its accuracy).
//!
//! Arguments: `x` (any shape, read flat; bool, int32, float16, bfloat16, float32, float64) and
//! `segments` (the int64 table `[2, n_segments + 1]` of element offsets, then tile offsets,
//! carried as an int32 `[2, 2 * (n_segments + 1)]` of little-endian word pairs, since JAX
//! without x64 has no int64 arrays). Results: `out` `[n_segments]`, then `partials`, the
//! per-tile partial results of pass 1 (int32 `[2 * max(n_tiles, 1)]`: 8 bytes a tile, room for
//! any accumulator), which the Python wrapper drops. Attributes: `op` (`"sum"`, `"mean"`, `"max"`, `"min"`, `"count"`), `tile`
//! (must equal [`TILE`], so a table built for another tiling is refused), `n_tiles` (the last
//! tile offset: the grid of pass 1 and the size of the partials) and `max_tiles` (the most tiles
//! of one segment: sizes the blocks of pass 2). The input and output dtypes are those of the
//! buffers, checked against the op. The attributes are read once per call site.
//!
//! The partials are a result, so XLA allocates them with its other buffers: an execution
//! allocates nothing and enqueues the same launches every time (on CUDA one when no segment has
//! more than one tile, else two), which lets XLA capture the CUDA handler into a command buffer
//! (a CUDA graph), as it does the neuron run and custom kernels.

use std::ffi::c_void;
use std::fmt;
use std::sync::{Arc, LazyLock};

use super::buffers::SharedPtr;
use super::loaded_kernels::LoadedKernels;
use super::poison;
use crate::codegen::reduction::{
    self, ReduceKernel, ReduceOp, CUDA_BLOCK, CUDA_FINISH_MAX_BLOCK, ENTRY_FINISH, ENTRY_ONE_PASS,
    ENTRY_TILES, TILE,
};
use crate::codegen::Dialect;
use crate::runtime::cache::Lru;
use crate::runtime::{cpu, cuda};
use crate::types::ElemType;
use crate::xla::{Buffer, CallFrame, DataType, FfiError, Handler, HandlerTraits, Instance};

/// One call site of `spikeforge_reduce`: its attributes, and the kernels it loaded (with the
/// reduction they compute, which the buffers' dtypes decide).
pub struct Reduce {
    op: ReduceOp,
    ntiles: usize,
    max_tiles: usize,
    kernels: LoadedKernels<(ReduceKernel, Arc<CKernel>), (ReduceKernel, CudaKernels)>,
}

impl Instance for Reduce {
    fn instantiate(call: &CallFrame) -> Result<Reduce, FfiError> {
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
        // One block per tile (pass 1): CUDA grids reach 2^31 - 1 blocks.
        if ntiles > i32::MAX as usize || max_tiles > ntiles {
            return Err(FfiError::invalid_argument(format!(
                "attributes 'n_tiles' ({ntiles}) / 'max_tiles' ({max_tiles}): at most 2^31 - 1 \
                 tiles, and no segment with more tiles than all of them"
            )));
        }
        Ok(Reduce {
            op,
            ntiles,
            max_tiles,
            kernels: LoadedKernels::new(),
        })
    }
}

/// Bytes of `partials` per tile: the widest accumulator (int64, double).
const PARTIAL_BYTES: usize = 8;

/// One call, decoded and checked.
struct Call<'a> {
    kernel: ReduceKernel,
    x: Buffer<'a>,
    table: Buffer<'a>,
    out: Buffer<'a>,
    /// Room for `ntiles` accumulators, 8-byte aligned.
    partials: Buffer<'a>,
    n: usize,
    nseg: usize,
}

fn decode<'a>(call: &CallFrame<'a>, site: &Reduce) -> Result<Call<'a>, FfiError> {
    if call.num_args() != 2 || call.num_rets() != 2 {
        return Err(FfiError::invalid_argument(format!(
            "expected 2 arguments (x, segments) and 2 results (out, partials), got {} and {}",
            call.num_args(),
            call.num_rets()
        )));
    }
    let x = call.arg(0)?;
    let table = call.arg(1)?;
    let out = call.ret(0)?;
    let partials = call.ret(1)?;
    let input = ElemType::try_from(x.dtype).map_err(|_| {
        FfiError::invalid_argument(format!(
            "argument 'x': {} is not supported (bool, int32, float16, bfloat16, float32, float64)",
            x.dtype
        ))
    })?;
    let output = ElemType::try_from(out.dtype).map_err(|_| {
        FfiError::invalid_argument(format!("result 'out': {} is not supported", out.dtype))
    })?;
    let kernel = ReduceKernel::new(site.op, input, output)
        .map_err(|e| FfiError::invalid_argument(e.to_string()))?;
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
    let (ntiles, max_tiles) = (site.ntiles, site.max_tiles);
    // `ntiles` is at most 2^31 - 1 (checked at instantiation): the count cannot overflow.
    let words = (ntiles.max(1) * (PARTIAL_BYTES / 4)) as i64;
    partials.expect("partials", DataType::S32, &[words])?;
    debug_assert!(kernel.accumulator_bytes() <= PARTIAL_BYTES);
    if partials.data.align_offset(PARTIAL_BYTES) != 0 {
        return Err(FfiError::invalid_argument(
            "result 'partials': buffer is not 8-byte aligned",
        ));
    }
    if ntiles > n.div_ceil(TILE).saturating_add(nseg) {
        return Err(FfiError::invalid_argument(format!(
            "attributes 'n_tiles' ({ntiles}) / 'max_tiles' ({max_tiles}) do not fit {n} elements in {nseg} segments"
        )));
    }
    // One block per segment (pass 2): CUDA grids reach 2^31 - 1 blocks.
    if nseg > i32::MAX as usize {
        return Err(FfiError::invalid_argument(format!(
            "{n} elements in {nseg} segments are too many for one launch"
        )));
    }
    Ok(Call {
        kernel,
        x,
        table,
        out,
        partials,
        n,
        nseg,
    })
}

/// What is wrong with a segment table.
#[derive(Clone, Debug, PartialEq, Eq)]
enum TableError {
    Entries {
        segments: usize,
        got: usize,
    },
    FirstOffset,
    NegativeLength {
        segment: usize,
        start: i64,
        end: i64,
    },
    /// The element offsets reach `covered`, past the `n` elements of `x` (or short of them).
    Coverage {
        covered: i64,
        n: usize,
    },
    Tiles {
        segment: usize,
        first: i64,
        end: i64,
        len: u64,
    },
    TileTotal {
        table: i64,
        ntiles: usize,
    },
}

impl fmt::Display for TableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use TableError::*;
        match self {
            Entries { segments, got } => write!(
                f,
                "expected 2 * ({segments} + 1) entries for {segments} segments, got {got}"
            ),
            FirstOffset => f.write_str("the first offset must be 0"),
            NegativeLength {
                segment,
                start,
                end,
            } => write!(
                f,
                "segment {segment} has negative length (offsets {start} then {end})"
            ),
            Coverage { covered, n } => {
                write!(f, "the segments cover {covered} elements but x has {n}")
            }
            Tiles {
                segment,
                first,
                end,
                len,
            } => write!(
                f,
                "segment {segment}: tile offsets {first}..{end} do not match its length {len}"
            ),
            TileTotal { table, ntiles } => write!(
                f,
                "the table has {table} tiles, attribute 'n_tiles' says {ntiles}"
            ),
        }
    }
}

/// Checks a segment table (as read from the input buffer) against the number of elements and
/// tiles: element offsets start at 0, never decrease and end at `n`; tile offsets start at 0 and
/// grow by each segment's `ceil(len / TILE)` to `ntiles`. Each offset is compared with the
/// previous one and with the total before anything is subtracted, so no arithmetic can wrap (a
/// table whose differences wrap around 2^64 to plausible lengths is refused).
fn check_segment_table(
    table: &[i64],
    nseg: usize,
    n: usize,
    ntiles: usize,
) -> Result<(), TableError> {
    let expected_len = nseg.checked_add(1).and_then(|k| k.checked_mul(2));
    if expected_len != Some(table.len()) {
        return Err(TableError::Entries {
            segments: nseg,
            got: table.len(),
        });
    }
    let (offsets, tiles) = table.split_at(nseg + 1);
    if offsets[0] != 0 || tiles[0] != 0 {
        return Err(TableError::FirstOffset);
    }
    for s in 0..nseg {
        let (start, end) = (offsets[s], offsets[s + 1]);
        if end < start {
            return Err(TableError::NegativeLength {
                segment: s,
                start,
                end,
            });
        }
        // 0 <= start <= end here, so both fit u64 and the difference cannot wrap.
        if end as u64 > n as u64 {
            return Err(TableError::Coverage { covered: end, n });
        }
        let len = (end - start) as u64;
        let (first, end_tile) = (tiles[s], tiles[s + 1]);
        let tiles_ok = first >= 0
            && end_tile >= first
            && end_tile as u64 <= ntiles as u64
            && (end_tile - first) as u64 == len.div_ceil(TILE as u64);
        if !tiles_ok {
            return Err(TableError::Tiles {
                segment: s,
                first,
                end: end_tile,
                len,
            });
        }
    }
    if offsets[nseg] as u64 != n as u64 {
        return Err(TableError::Coverage {
            covered: offsets[nseg],
            n,
        });
    }
    if tiles[nseg] as u64 != ntiles as u64 {
        return Err(TableError::TileTotal {
            table: tiles[nseg],
            ntiles,
        });
    }
    Ok(())
}

/// `(t0, t1, table, nseg, n, x, partials)`
type CTiles = unsafe extern "C" fn(i64, i64, *const i64, i64, i64, *const c_void, *mut c_void);
/// `(s0, s1, table, nseg, n, ntiles, partials, out)`
type CFinish =
    unsafe extern "C" fn(i64, i64, *const i64, i64, i64, i64, *const c_void, *mut c_void);

/// Both C entry points of a kernel, resolved once per process.
pub struct CKernel {
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
        })?;
        // SAFETY: the generated entry points have exactly these signatures.
        let tiles: CTiles = unsafe { module.entry::<CTiles>() };
        let finish: CFinish = unsafe { *module.symbol::<CFinish>(ENTRY_FINISH)? };
        Ok(Arc::new(CKernel {
            tiles,
            finish,
            _module: module,
        }))
    })
}

/// The kernel a call site loaded, if it computes `want`. The buffers' dtypes, which choose the
/// kernel, are fixed for a call site; a call that differed would be refused rather than run the
/// wrong kernel.
fn same_kernel<T: Clone>(loaded: &(ReduceKernel, T), want: ReduceKernel) -> Result<T, FfiError> {
    if loaded.0 == want {
        Ok(loaded.1.clone())
    } else {
        Err(FfiError::internal(format!(
            "this call site was prepared for {:?} and is now asked for {want:?}",
            loaded.0
        )))
    }
}

/// `spikeforge_reduce` on the CPU: tiles, then segments, spread over the cores.
pub struct ReduceCpu;

impl Handler for ReduceCpu {
    type Instance = Reduce;
    const TRAITS: HandlerTraits = HandlerTraits::NONE;

    fn execute(call: &CallFrame<'_>, site: &Reduce) -> Result<(), FfiError> {
        let c = decode(call, site)?;
        // SAFETY: host memory on the CPU platform, not written during the call, 8-byte aligned
        // (checked in `decode`), holding 2 * (nseg + 1) int64 as int32 pairs.
        let table: &[i64] =
            unsafe { std::slice::from_raw_parts(c.table.data.cast::<i64>(), 2 * (c.nseg + 1)) };
        check_segment_table(table, c.nseg, c.n, site.ntiles)
            .map_err(|e| FfiError::invalid_argument(format!("argument 'segments': {e}")))?;
        let loaded = site.kernels.cpu(|| Ok((c.kernel, c_kernel(&c.kernel)?)))?;
        let k = same_kernel(loaded, c.kernel)?;
        if poison::enabled() {
            // SAFETY: host buffers of these sizes owned by XLA for this call.
            unsafe { poison::host([&c.out, &c.partials]) };
        }
        let partials = SharedPtr::new(c.partials.data);
        let x = SharedPtr::new(c.x.data);
        let (nseg, n, ntiles) = (c.nseg as i64, c.n as i64, site.ntiles as i64);
        // A tile is ~8k elements (a few µs); 4 tiles per chunk make a thread hand-off worth it.
        // The chunking never changes a result: each tile is reduced on its own.
        cpu::parallel_chunks(site.ntiles, 4, |t0, t1| {
            // SAFETY: the table was validated; the kernel writes partials[t0..t1] only and reads
            // x within the segments, which cover exactly x's elements.
            unsafe {
                (k.tiles)(
                    t0 as i64,
                    t1 as i64,
                    table.as_ptr(),
                    nseg,
                    n,
                    x.get(),
                    partials.get(),
                )
            };
        });
        let out = SharedPtr::new(c.out.data);
        cpu::parallel_chunks(c.nseg, 4096, |s0, s1| {
            // SAFETY: as above; writes out[s0..s1] only.
            unsafe {
                (k.finish)(
                    s0 as i64,
                    s1 as i64,
                    table.as_ptr(),
                    nseg,
                    n,
                    ntiles,
                    partials.get(),
                    out.get(),
                )
            };
        });
        Ok(())
    }
}

/// Threads per block of pass 2: enough to read a segment's partials in a few strided rounds,
/// at least a warp, a power of two (the shared tree halves it).
fn finish_block(max_tiles: usize) -> u32 {
    (max_tiles.div_ceil(4).next_power_of_two()).clamp(32, CUDA_FINISH_MAX_BLOCK) as u32
}

/// The CUDA kernels of a reduction, for one stream's context: pass 1, pass 2, and both in one.
#[derive(Clone)]
struct CudaKernels {
    tiles: Arc<cuda::CudaFunction>,
    finish: Arc<cuda::CudaFunction>,
    one_pass: Arc<cuda::CudaFunction>,
}

/// `spikeforge_reduce` on CUDA: on XLA's stream, one launch when no segment has more than one
/// tile (`max_tiles <= 1`, an attribute: the same choice at every execution), else the two
/// passes. The same work every execution (the partials are XLA's buffer; no allocation, no
/// synchronisation), so XLA may capture it into a CUDA graph.
pub struct ReduceCuda;

impl Handler for ReduceCuda {
    type Instance = Reduce;
    const TRAITS: HandlerTraits = HandlerTraits::COMMAND_BUFFER_COMPATIBLE;

    fn execute(call: &CallFrame<'_>, site: &Reduce) -> Result<(), FfiError> {
        let c = decode(call, site)?;
        let stream = call.stream()?;
        let loaded = site.kernels.cuda(stream, || {
            let key = c.kernel.key();
            let opts = cuda::CudaCompileOptions::default();
            let source = || reduction::generate(&c.kernel, Dialect::Cuda);
            let load = |entry| cuda::load_function_keyed(&key, entry, stream, &opts, source);
            let kernels = CudaKernels {
                tiles: load(ENTRY_TILES)?,
                finish: load(ENTRY_FINISH)?,
                one_pass: load(ENTRY_ONE_PASS)?,
            };
            Ok((c.kernel, kernels))
        })?;
        let CudaKernels {
            tiles,
            finish,
            one_pass,
        } = same_kernel(&loaded, c.kernel)?;
        if poison::enabled() {
            // SAFETY: device buffers of these sizes on XLA's stream for this call.
            unsafe { poison::device([&c.out, &c.partials], stream) }?;
        }
        if c.nseg == 0 {
            return Ok(());
        }
        let mut table = c.table.data;
        let mut nseg = c.nseg as i64;
        let mut n = c.n as i64;
        let mut ntiles = site.ntiles as i64;
        let mut x = c.x.data;
        let mut partials = c.partials.data;
        let mut out = c.out.data;
        if site.max_tiles <= 1 {
            let mut params = [
                param(&mut table),
                param(&mut nseg),
                param(&mut n),
                param(&mut x),
                param(&mut out),
            ];
            // SAFETY: parameters in the order and types of the generated kernel; it clamps every
            // index it takes from the table, and the buffers live for the call.
            return unsafe { launch_1d(&one_pass, c.nseg, CUDA_BLOCK as u32, stream, &mut params) };
        }
        if site.ntiles > 0 {
            let mut params = [
                param(&mut table),
                param(&mut nseg),
                param(&mut n),
                param(&mut ntiles),
                param(&mut x),
                param(&mut partials),
            ];
            // SAFETY: as above.
            unsafe { launch_1d(&tiles, site.ntiles, CUDA_BLOCK as u32, stream, &mut params) }?;
        }
        let mut params = [
            param(&mut table),
            param(&mut nseg),
            param(&mut n),
            param(&mut ntiles),
            param(&mut partials),
            param(&mut out),
        ];
        // The tree needs a power of two: round the kernel's limit down to one.
        let limit = finish.max_threads_per_block().max(32);
        let block = finish_block(site.max_tiles).min(1 << (31 - limit.leading_zeros()));
        // SAFETY: as above.
        unsafe { launch_1d(&finish, c.nseg, block, stream, &mut params) }
    }
}

/// A kernel parameter: the address of its value, as `cuLaunchKernel` takes it.
fn param<T>(value: &mut T) -> *mut c_void {
    (value as *mut T).cast()
}

/// Launches `f` on `stream` over `blocks` blocks of `threads` threads (1-D, no dynamic shared
/// memory). `blocks` is at most 2^31 - 1: tile and segment counts are checked in `decode`.
///
/// # Safety
/// As for [`cuda::launch`]: `params` match the kernel's parameters, the buffers live for the call.
unsafe fn launch_1d(
    f: &cuda::CudaFunction,
    blocks: usize,
    threads: u32,
    stream: *mut c_void,
    params: &mut [*mut c_void],
) -> Result<(), FfiError> {
    // SAFETY: forwarded to the caller.
    unsafe { cuda::launch(f, (blocks as u32, 1, 1), (threads, 1, 1), 0, stream, params) }?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The C kernels straight from Rust: float32 sums of three segments (one empty, one spanning
    /// several tiles) against a float64 reference, and the same bits however the tiles are split
    /// between calls (as `parallel_chunks` may split them between threads).
    #[test]
    fn c_sum_matches_float64_and_ignores_the_chunking() {
        let k = ReduceKernel::new(ReduceOp::Sum, ElemType::F32, ElemType::F32).unwrap();
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

    /// The tables the shim builds pass, and each kind of corruption is named.
    #[test]
    fn segment_tables_are_checked() {
        let lengths = [1000, 0, 3 * TILE + 17];
        let table = reduction::segment_table(&lengths);
        let n: usize = lengths.iter().sum();
        let ntiles = *table.last().unwrap() as usize;
        assert_eq!(check_segment_table(&table, 3, n, ntiles), Ok(()));
        let fails = |table: &[i64], nseg, n, ntiles| {
            check_segment_table(table, nseg, n, ntiles).unwrap_err()
        };
        let err = fails(&table, 3, n + 1, ntiles);
        assert_eq!(
            err.to_string(),
            format!("the segments cover {n} elements but x has {}", n + 1)
        );
        let err = fails(&table, 3, n, ntiles + 1);
        assert!(
            err.to_string().contains("attribute 'n_tiles' says"),
            "{err}"
        );
        assert!(matches!(
            fails(&table, 2, n, ntiles),
            TableError::Entries { segments: 2, .. }
        ));
        let mut backwards = table.clone();
        backwards[1] = 2000;
        let err = fails(&backwards, 3, n, ntiles);
        assert!(
            matches!(err, TableError::NegativeLength { segment: 1, .. }),
            "{err}"
        );
        let mut past = table.clone();
        past[1] = n as i64 + 5;
        let err = fails(&past, 3, n, ntiles);
        assert!(matches!(err, TableError::Coverage { covered, .. } if covered == n as i64 + 5));
        let mut tiles = table.clone();
        tiles[5] += 1;
        assert!(matches!(
            fails(&tiles, 3, n, ntiles),
            TableError::Tiles { .. }
        ));
        let mut first = table.clone();
        first[0] = 1;
        assert_eq!(fails(&first, 3, n, ntiles), TableError::FirstOffset);
    }

    /// Issue 8 item 11: offsets whose differences wrap around 2^64 to plausible lengths, with
    /// tile offsets that wrap the same way, passed the old check (it subtracted first), and the
    /// kernels then read far outside `x`. 2^14 segments of 2^63 - 8192 elements (2^50 - 1 tiles
    /// each) and one last segment bring both sums back, modulo 2^64, to 8192 elements in 1 tile.
    #[test]
    fn tables_whose_offsets_wrap_around_are_refused() {
        let big = i64::MAX - (TILE as i64 - 1); // 2^63 - 8192, a multiple of TILE
        let count = 1usize << 14;
        let mut offsets = vec![0i64];
        let mut tiles = vec![0i64];
        for _ in 0..count {
            offsets.push(offsets.last().unwrap().wrapping_add(big));
            tiles.push(tiles.last().unwrap().wrapping_add(big / TILE as i64));
        }
        offsets.push(TILE as i64);
        tiles.push(1);
        let nseg = count + 1;
        // Every difference, taken with wrapping as the old check took it, looks valid.
        let last = offsets[nseg].wrapping_sub(offsets[nseg - 1]);
        assert_eq!(
            tiles[nseg].wrapping_sub(tiles[nseg - 1]),
            (last as u64).div_ceil(TILE as u64) as i64
        );
        let table: Vec<i64> = offsets.into_iter().chain(tiles).collect();
        let err = check_segment_table(&table, nseg, TILE, 1).unwrap_err();
        assert_eq!(
            err,
            TableError::Coverage {
                covered: big,
                n: TILE
            }
        );
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
