//! Deterministic reductions (sum, mean, max, min, count of nonzero) over all elements or per
//! segment, generated for each (op, input dtype, output dtype) in the CUDA and C dialects.
//!
//! # Why two passes
//! Float atomics make a sum depend on the order in which blocks finish, so results change from
//! run to run. Here the order is a function of the sizes only:
//!
//! 1. The elements of each segment are cut into tiles of [`TILE`] elements (the last tile of a
//!    segment may be shorter; an empty segment has none). Pass 1 reduces each tile to one
//!    partial: on CUDA one block per tile, each thread accumulating [`CUDA_ITEMS`] strided
//!    elements in registers, then the shared-memory tree of seed 004 section 3.2; in C, one call
//!    per tile, [`C_LANES`] independent lanes (so GCC vectorises without reassociating) folded
//!    by a fixed tree.
//! 2. Pass 2 reduces the partials of each segment in tile order (CUDA: one block per segment,
//!    strided then the same tree; C: sequentially) and finalises (mean divides by the length).
//!
//! On CUDA, when no segment has more than one tile, one launch does both ([`ENTRY_ONE_PASS`]:
//! block `s` reduces segment `s` with pass 1's code, then finalises as pass 2 would), which saves
//! a launch per call where the call's cost is mostly launches (small populations, a reduction
//! per step of a loop). Pass 2 on a single partial `p` computes `combine(identity, p)` and then
//! combines that with identities, which changes nothing more (`x + 0 == x` once `x` is not
//! `-0.0`, `max(x, -inf) == x`): so the one-pass kernel gives the same bits as the two passes.
//!
//! Which core or block runs which tile never changes a result, so repeated runs are bit-identical
//! on one platform (CUDA and C use different orders within a tile, so they may differ from each
//! other in the last bits of a float sum).
//!
//! # Accuracy
//! Sums of float32 / float16 / bfloat16 accumulate in double: with at most 2^31 elements the
//! accumulated error is below 2^-21 ulp-of-double relative to sum|x|, so the result is the exact
//! sum rounded once to float32 in all but contrived cancellation cases. This costs nothing
//! measurable: the reduction is bound by memory bandwidth (H100 runs FP64 at half the FP32
//! rate; on the CPU the double lanes still vectorise). Float64 sums accumulate in double with a
//! short sequential run per lane/thread (CUDA 32, C `TILE / C_LANES` = 512) then trees, so the
//! error is at most about (512 + log2 n + n / TILE) * 2^-53 * sum|x| (in practice ~sqrt of that).
//! int32 and bool sums accumulate in int64 (exact; an int32 output wraps modulo 2^32, as a
//! two's-complement int32 sum does in any order). Max, min and count are exact. Max and min
//! propagate NaN like `numpy.max`.
//!
//! # Segment table
//! Pass 1 and 2 read one int64 table `[2, n_segments + 1]`: row 0 the element offsets of the
//! segments (`0 = o_0 <= o_1 <= ... = n`), row 1 the tile offsets (`t_{s+1} - t_s =
//! ceil((o_{s+1} - o_s) / TILE)`). Python builds it once per segmentation (it is static) as a
//! constant of the XLA program. The kernels clamp every index they derive from it, so even a
//! corrupt table cannot make them read or write out of bounds (the CPU handler also validates it).

use std::fmt::{self, Write};

use super::dialect::Dialect;
use super::writer::{render, SourceWriter};
use crate::types::ElemType;

/// Elements per tile (pass 1). The same on both platforms so that one table serves both.
pub const TILE: usize = 8192;
/// CUDA threads per block in pass 1.
pub const CUDA_BLOCK: usize = 256;
/// Elements per CUDA thread in pass 1 (`CUDA_BLOCK * CUDA_ITEMS == TILE`).
pub const CUDA_ITEMS: usize = TILE / CUDA_BLOCK;
/// Most CUDA threads per block in pass 2 (the shared tree is sized for it).
pub const CUDA_FINISH_MAX_BLOCK: usize = 1024;
/// Independent accumulators per tile in the C dialect.
pub const C_LANES: usize = 16;

/// Pass-1 entry point (both dialects).
pub const ENTRY_TILES: &str = "sf_reduce_tiles";
/// Pass-2 entry point (both dialects).
pub const ENTRY_FINISH: &str = "sf_reduce_finish";
/// Both passes in one launch when every segment fits in one tile (CUDA only).
pub const ENTRY_ONE_PASS: &str = "sf_reduce_one_pass";

const _: () = assert!(CUDA_BLOCK * CUDA_ITEMS == TILE && TILE % C_LANES == 0);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReduceOp {
    Sum,
    Mean,
    Max,
    Min,
    /// Number of elements that are not zero (NaN counts, -0.0 does not), as numpy.
    Count,
}

impl ReduceOp {
    pub const ALL: [ReduceOp; 5] = [
        ReduceOp::Sum,
        ReduceOp::Mean,
        ReduceOp::Max,
        ReduceOp::Min,
        ReduceOp::Count,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ReduceOp::Sum => "sum",
            ReduceOp::Mean => "mean",
            ReduceOp::Max => "max",
            ReduceOp::Min => "min",
            ReduceOp::Count => "count",
        }
    }

    pub fn parse(name: &str) -> Option<ReduceOp> {
        ReduceOp::ALL.into_iter().find(|op| op.name() == name)
    }
}

/// The C type a reduction buffer holds: an element's bits, with no headers (C's `bool` needs
/// `<stdbool.h>`, so truth values are bytes).
fn storage(t: ElemType) -> &'static str {
    match t {
        ElemType::Bool => "uint8_t",
        t => t.c_type(),
    }
}

/// A reduction that spikeforge does not generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceError {
    /// An input type no reduction reads (int64).
    UnsupportedInput { op: ReduceOp, input: ElemType },
    /// An output type that is not a result type of `op` on `input` ([`allowed_outputs`]).
    UnsupportedOutput {
        op: ReduceOp,
        input: ElemType,
        output: ElemType,
    },
}

impl fmt::Display for ReduceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ReduceError::UnsupportedInput { op, input } => write!(
                f,
                "{} of {input} is not supported (inputs: bool, int32, float16, bfloat16, float32, float64)",
                op.name()
            ),
            ReduceError::UnsupportedOutput { op, input, output } => {
                let names: Vec<&str> = allowed_outputs(op, input)
                    .iter()
                    .map(|d| d.name())
                    .collect();
                write!(
                    f,
                    "{} of {input} cannot produce {output} (allowed: {})",
                    op.name(),
                    names.join(", ")
                )
            }
        }
    }
}

impl std::error::Error for ReduceError {}

/// One reduction kernel: what it computes, what it reads, what it writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReduceKernel {
    pub op: ReduceOp,
    pub input: ElemType,
    pub output: ElemType,
}

impl ReduceKernel {
    /// Checks that `output` is a result type of `op` on `input`; the error says which are.
    pub fn new(
        op: ReduceOp,
        input: ElemType,
        output: ElemType,
    ) -> Result<ReduceKernel, ReduceError> {
        if matches!(input, ElemType::I64 | ElemType::U8) {
            return Err(ReduceError::UnsupportedInput { op, input });
        }
        if !allowed_outputs(op, input).contains(&output) {
            return Err(ReduceError::UnsupportedOutput { op, input, output });
        }
        Ok(ReduceKernel { op, input, output })
    }

    /// A name that determines the generated source (the kernel cache key).
    pub fn key(&self) -> String {
        format!(
            "sf-reduce-v1:{}:{}:{}",
            self.op.name(),
            self.input,
            self.output
        )
    }

    /// The C type partials are kept in.
    pub fn accumulator(&self) -> &'static str {
        match self.op {
            ReduceOp::Sum | ReduceOp::Mean if self.input.is_float() => "double",
            ReduceOp::Sum | ReduceOp::Mean | ReduceOp::Count => "int64_t",
            ReduceOp::Max | ReduceOp::Min => match self.input {
                ElemType::F64 => "double",
                ElemType::F16 | ElemType::BF16 | ElemType::F32 => "float",
                _ => "int32_t",
            },
        }
    }

    /// Bytes of one partial (the scratch per tile).
    pub fn accumulator_bytes(&self) -> usize {
        match self.accumulator() {
            "float" | "int32_t" => 4,
            _ => 8,
        }
    }
}

/// The output types `op` may produce from `input` (the first is what numpy/jax produce by default
/// without x64; halves produce float32, which Python casts back).
pub fn allowed_outputs(op: ReduceOp, input: ElemType) -> Vec<ElemType> {
    use ElemType::*;
    match op {
        ReduceOp::Sum if input.is_float() => match input {
            F64 => vec![F64],
            _ => vec![F32],
        },
        ReduceOp::Sum | ReduceOp::Count => vec![I32, I64],
        ReduceOp::Mean => match input {
            F64 => vec![F64],
            F16 | BF16 | F32 => vec![F32],
            _ => vec![F32, F64],
        },
        ReduceOp::Max | ReduceOp::Min => match input {
            F16 | BF16 | F32 => vec![F32],
            other => vec![other],
        },
    }
}

/// The generated source of `k` for `dialect`: both entry points, [`ENTRY_TILES`] and
/// [`ENTRY_FINISH`].
pub fn generate(k: &ReduceKernel, dialect: Dialect) -> String {
    render(|w| write_kernels(w, k, dialect))
}

fn write_kernels(s: &mut SourceWriter, k: &ReduceKernel, dialect: Dialect) -> fmt::Result {
    let cuda = dialect == Dialect::Cuda;
    let q = dialect.inline_fn();
    let acc = k.accumulator();
    writeln!(
        s,
        "/* spikeforge reduction: {} of {} -> {} ({} dialect). Generated; see src/codegen/reduction.rs. */",
        k.op.name(),
        k.input,
        k.output,
        if cuda { "CUDA" } else { "C" }
    )?;
    if cuda {
        s.write_str(&dialect.integer_typedefs(&[
            "int8_t", "uint8_t", "uint16_t", "int32_t", "uint32_t", "int64_t",
        ]))?;
    } else {
        s.write_str("#include <stdint.h>\n#include <string.h>\n")?;
    }
    writeln!(
        s,
        "typedef {} in_t;\ntypedef {} out_t;\ntypedef {acc} acc_t;\n#define SF_TILE {TILE}\n",
        storage(k.input),
        storage(k.output)
    )?;

    // Bit casts for the half conversions.
    if cuda {
        writeln!(
            s,
            "{q} float sf_bits_to_float(uint32_t b) {{ return __uint_as_float(b); }}"
        )?;
    } else {
        writeln!(
            s,
            "{q} float sf_bits_to_float(uint32_t b) {{ float f; memcpy(&f, &b, 4); return f; }}"
        )?;
    }
    let nan = if cuda {
        "__longlong_as_double(0x7ff8000000000000LL)"
    } else {
        "__builtin_nan(\"\")"
    };

    // Load: one input element as the accumulator type.
    let load = match (k.op, k.input) {
        (ReduceOp::Count, ElemType::F16) => "(acc_t)((x & 0x7fffu) != 0u)".to_string(),
        (ReduceOp::Count, ElemType::BF16) => "(acc_t)((x & 0x7fffu) != 0u)".to_string(),
        (ReduceOp::Count, _) => "(acc_t)(x != 0)".to_string(),
        (_, ElemType::F16) => "(acc_t)sf_f16_to_float(x)".to_string(),
        (_, ElemType::BF16) => "(acc_t)sf_bits_to_float((uint32_t)x << 16)".to_string(),
        (_, ElemType::Bool) => "(acc_t)(x != 0)".to_string(),
        _ => "(acc_t)x".to_string(),
    };
    if k.input == ElemType::F16 {
        writeln!(
            s,
            "/* IEEE binary16 -> float, exactly (subnormals included). */\n\
             {q} float sf_f16_to_float(uint16_t h) {{\n\
             \x20   uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;\n\
             \x20   if (e == 0u) {{ float f = (float)m * 5.9604644775390625e-08f; return sign ? -f : f; }}\n\
             \x20   if (e == 31u) return sf_bits_to_float(sign | 0x7f800000u | (m << 13));\n\
             \x20   return sf_bits_to_float(sign | ((e + 112u) << 23) | (m << 13));\n\
             }}"
        )?;
    }
    writeln!(s, "{q} acc_t sf_load(in_t x) {{ return {load}; }}")?;

    // Combine, identity and finalisation.
    let (combine, identity) = match k.op {
        ReduceOp::Sum | ReduceOp::Mean | ReduceOp::Count => ("a + b".to_string(), "0".to_string()),
        ReduceOp::Max | ReduceOp::Min => {
            let cmp = if k.op == ReduceOp::Max { ">" } else { "<" };
            let identity = match (k.op, acc) {
                (ReduceOp::Max, "int32_t") if k.input == ElemType::Bool => "0".to_string(),
                (ReduceOp::Min, "int32_t") if k.input == ElemType::Bool => "1".to_string(),
                (ReduceOp::Max, "int32_t") => "(-2147483647 - 1)".to_string(),
                (ReduceOp::Min, "int32_t") => "2147483647".to_string(),
                (ReduceOp::Max, _) => "(-1.0 / 0.0)".to_string(),
                (_, _) => "(1.0 / 0.0)".to_string(),
            };
            if acc == "int32_t" {
                (format!("a {cmp} b ? a : b"), identity)
            } else {
                // NaN wins wherever it is: `a` if it is NaN, else `b` when `b` is NaN.
                (format!("(a {cmp} b || a != a) ? a : b"), identity)
            }
        }
    };
    writeln!(
        s,
        "{q} acc_t sf_combine(acc_t a, acc_t b) {{ return {combine}; }}\n#define SF_IDENTITY ((acc_t){identity})"
    )?;
    let finalize = match k.op {
        ReduceOp::Mean => format!("len > 0 ? (out_t)((double)a / (double)len) : (out_t){nan}"),
        ReduceOp::Max | ReduceOp::Min if k.input == ElemType::Bool => "(out_t)(a != 0)".to_string(),
        _ => "(out_t)a".to_string(),
    };
    writeln!(
        s,
        "{q} out_t sf_finalize(acc_t a, int64_t len) {{ (void)len; return {finalize}; }}"
    )?;

    // The segment of a tile: the last s with tile_offsets[s] <= tile (empty segments share their
    // tile offset with the next one, so "last" skips them).
    writeln!(
        s,
        "{q} int64_t sf_segment_of(const int64_t* tile_offsets, int64_t nseg, int64_t tile) {{\n\
         \x20   int64_t lo = 0, hi = nseg; /* invariant: answer in [lo, hi) */\n\
         \x20   while (hi - lo > 1) {{\n\
         \x20       int64_t mid = lo + (hi - lo) / 2;\n\
         \x20       if (tile_offsets[mid] <= tile) lo = mid; else hi = mid;\n\
         \x20   }}\n\
         \x20   return lo;\n\
         }}\n\
         {q} int64_t sf_clamp(int64_t v, int64_t lo, int64_t hi) {{ return v < lo ? lo : (v > hi ? hi : v); }}"
    )?;

    if cuda {
        cuda_kernels(s)
    } else {
        c_kernels(s)
    }
}

fn cuda_kernels(s: &mut SourceWriter) -> fmt::Result {
    write!(
        s,
        r#"
#define SF_BLOCK {CUDA_BLOCK}
#define SF_ITEMS {CUDA_ITEMS}
#define SF_FINISH_MAX_BLOCK {CUDA_FINISH_MAX_BLOCK}

/* Seed 004 section 3.2: a tree in shared memory, halving the active threads each step. The order
   of every combination is fixed by the thread indices, so the result is deterministic.
   blockDim.x must be a power of two; the result is valid in thread 0. */
static __device__ __forceinline__ acc_t sf_block_reduce(acc_t v, acc_t* shared) {{
    const unsigned tid = threadIdx.x;
    shared[tid] = v;
    __syncthreads();
    for (unsigned stride = blockDim.x / 2; stride > 0; stride /= 2) {{
        if (tid < stride) shared[tid] = sf_combine(shared[tid], shared[tid + stride]);
        __syncthreads();
    }}
    return shared[0];
}}

/* x[lo, hi) (at most one tile) reduced by a block of SF_BLOCK threads: each thread combines its
   strided elements in order, then the tree. Shared by pass 1 and the one-pass kernel, so that a
   tile gives the same bits in both. Valid in thread 0. */
static __device__ __forceinline__ acc_t sf_tile_reduce(
    const in_t* __restrict__ x, int64_t lo, int64_t hi, acc_t* shared) {{
    const unsigned tid = threadIdx.x;
    acc_t acc = SF_IDENTITY;
    if (hi - lo == SF_TILE) {{
        const in_t* p = x + lo + tid;
        in_t v[SF_ITEMS];
#pragma unroll
        for (int k = 0; k < SF_ITEMS; ++k) v[k] = p[k * SF_BLOCK];
#pragma unroll
        for (int k = 0; k < SF_ITEMS; ++k) acc = sf_combine(acc, sf_load(v[k]));
    }} else {{
        for (int64_t i = lo + tid; i < hi; i += SF_BLOCK) acc = sf_combine(acc, sf_load(x[i]));
    }}
    return sf_block_reduce(acc, shared);
}}

/* Pass 1: block b reduces tile b to partials[b]. */
extern "C" __global__ void __launch_bounds__(SF_BLOCK) {ENTRY_TILES}(
    const int64_t* __restrict__ table, int64_t nseg, int64_t n, int64_t ntiles,
    const in_t* __restrict__ x, acc_t* __restrict__ partials) {{
    __shared__ acc_t shared[SF_BLOCK];
    const int64_t tile = blockIdx.x;
    if (tile >= ntiles || nseg <= 0) return;
    const int64_t* offsets = table;
    const int64_t* tile_offsets = table + nseg + 1;
    const int64_t s = sf_segment_of(tile_offsets, nseg, tile);
    const int64_t end = sf_clamp(offsets[s + 1], 0, n);
    const int64_t lo = sf_clamp(offsets[s] + (tile - tile_offsets[s]) * SF_TILE, 0, end);
    const int64_t hi = lo + SF_TILE < end ? lo + SF_TILE : end;
    const acc_t acc = sf_tile_reduce(x, lo, hi, shared);
    if (threadIdx.x == 0) partials[tile] = acc;
}}

/* Pass 2: block s reduces the partials of segment s, in tile order per thread then the tree. */
extern "C" __global__ void __launch_bounds__(SF_FINISH_MAX_BLOCK) {ENTRY_FINISH}(
    const int64_t* __restrict__ table, int64_t nseg, int64_t n, int64_t ntiles,
    const acc_t* __restrict__ partials, out_t* __restrict__ out) {{
    __shared__ acc_t shared[SF_FINISH_MAX_BLOCK];
    const int64_t s = blockIdx.x;
    if (s >= nseg) return;
    const int64_t* offsets = table;
    const int64_t* tile_offsets = table + nseg + 1;
    const int64_t t1 = sf_clamp(tile_offsets[s + 1], 0, ntiles);
    const int64_t t0 = sf_clamp(tile_offsets[s], 0, t1);
    acc_t acc = SF_IDENTITY;
    for (int64_t t = t0 + threadIdx.x; t < t1; t += blockDim.x) acc = sf_combine(acc, partials[t]);
    acc = sf_block_reduce(acc, shared);
    if (threadIdx.x == 0) {{
        const int64_t end = sf_clamp(offsets[s + 1], 0, n);
        out[s] = sf_finalize(acc, end - sf_clamp(offsets[s], 0, end));
    }}
}}

/* Both passes in one launch when no segment has more than one tile: block s reduces segment s as
   pass 1 reduces its tile (an empty segment gives the identity, as the tree of identities does
   in pass 2), then finishes as pass 2 does with that one partial: combine(identity, p), then
   only identities, which change nothing more. A longer segment (a corrupt table) is cut at one
   tile: a wrong sum, never an access out of bounds. */
extern "C" __global__ void __launch_bounds__(SF_BLOCK) {ENTRY_ONE_PASS}(
    const int64_t* __restrict__ table, int64_t nseg, int64_t n,
    const in_t* __restrict__ x, out_t* __restrict__ out) {{
    __shared__ acc_t shared[SF_BLOCK];
    const int64_t s = blockIdx.x;
    if (s >= nseg) return;
    const int64_t end = sf_clamp(table[s + 1], 0, n);
    const int64_t lo = sf_clamp(table[s], 0, end);
    const int64_t hi = lo + SF_TILE < end ? lo + SF_TILE : end;
    const acc_t acc = sf_tile_reduce(x, lo, hi, shared);
    if (threadIdx.x == 0) out[s] = sf_finalize(sf_combine(SF_IDENTITY, acc), end - lo);
}}
"#
    )
}

fn c_kernels(s: &mut SourceWriter) -> fmt::Result {
    write!(
        s,
        r#"
#define SF_LANES {C_LANES}

/* [lo, hi) in SF_LANES independent lanes (vectorisable without reassociation), then a fixed
   tree over the lanes. `omp simd` on the lane loop: without it GCC unrolls the 16 lanes and
   SLP-vectorises them with one scalar conversion per element (2x slower); vectorising across
   lanes never reorders the operations of any one lane. */
static acc_t sf_reduce_range(const in_t* x, int64_t lo, int64_t hi) {{
    acc_t lanes[SF_LANES];
    for (int j = 0; j < SF_LANES; ++j) lanes[j] = SF_IDENTITY;
    int64_t i = lo;
    for (; i + SF_LANES <= hi; i += SF_LANES) {{
#pragma omp simd
        for (int j = 0; j < SF_LANES; ++j) lanes[j] = sf_combine(lanes[j], sf_load(x[i + j]));
    }}
    for (int j = 0; i < hi; ++i, ++j) lanes[j] = sf_combine(lanes[j], sf_load(x[i]));
    for (int w = SF_LANES / 2; w >= 1; w /= 2)
        for (int j = 0; j < w; ++j) lanes[j] = sf_combine(lanes[j], lanes[j + w]);
    return lanes[0];
}}

/* Pass 1 over tiles [t0, t1). */
void {ENTRY_TILES}(int64_t t0, int64_t t1, const int64_t* table, int64_t nseg, int64_t n,
                   const void* x_, void* partials_) {{
    const in_t* x = (const in_t*)x_;
    acc_t* partials = (acc_t*)partials_;
    const int64_t* offsets = table;
    const int64_t* tile_offsets = table + nseg + 1;
    for (int64_t tile = t0; tile < t1; ++tile) {{
        const int64_t s = sf_segment_of(tile_offsets, nseg, tile);
        const int64_t end = sf_clamp(offsets[s + 1], 0, n);
        const int64_t lo = sf_clamp(offsets[s] + (tile - tile_offsets[s]) * SF_TILE, 0, end);
        const int64_t hi = lo + SF_TILE < end ? lo + SF_TILE : end;
        partials[tile] = sf_reduce_range(x, lo, hi);
    }}
}}

/* Pass 2 over segments [s0, s1): the partials of each segment in tile order. */
void {ENTRY_FINISH}(int64_t s0, int64_t s1, const int64_t* table, int64_t nseg, int64_t n,
                    int64_t ntiles, const void* partials_, void* out_) {{
    const acc_t* partials = (const acc_t*)partials_;
    out_t* out = (out_t*)out_;
    const int64_t* offsets = table;
    const int64_t* tile_offsets = table + nseg + 1;
    for (int64_t s = s0; s < s1; ++s) {{
        const int64_t t1 = sf_clamp(tile_offsets[s + 1], 0, ntiles);
        acc_t acc = SF_IDENTITY;
        for (int64_t t = sf_clamp(tile_offsets[s], 0, t1); t < t1; ++t) acc = sf_combine(acc, partials[t]);
        const int64_t end = sf_clamp(offsets[s + 1], 0, n);
        out[s] = sf_finalize(acc, end - sf_clamp(offsets[s], 0, end));
    }}
}}
"#
    )
}

/// The segment table for `lengths`: `[offsets..., tile_offsets...]`, row-major `[2, n + 1]`.
pub fn segment_table(lengths: &[usize]) -> Vec<i64> {
    let mut offsets = vec![0i64];
    let mut tiles = vec![0i64];
    for &len in lengths {
        offsets.push(offsets.last().unwrap() + len as i64);
        tiles.push(tiles.last().unwrap() + len.div_ceil(TILE) as i64);
    }
    offsets.extend(tiles);
    offsets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_types_follow_the_rules() {
        assert!(ReduceKernel::new(ReduceOp::Sum, ElemType::F32, ElemType::F32).is_ok());
        assert!(ReduceKernel::new(ReduceOp::Sum, ElemType::Bool, ElemType::I64).is_ok());
        let e = ReduceKernel::new(ReduceOp::Mean, ElemType::F32, ElemType::I32)
            .unwrap_err()
            .to_string();
        assert!(e.contains("allowed: float32"), "{e}");
        assert!(ReduceKernel::new(ReduceOp::Sum, ElemType::I64, ElemType::I64).is_err());
    }

    #[test]
    fn accumulators() {
        let k = |op, i, o| ReduceKernel::new(op, i, o).unwrap().accumulator();
        assert_eq!(k(ReduceOp::Sum, ElemType::F32, ElemType::F32), "double");
        assert_eq!(k(ReduceOp::Sum, ElemType::I32, ElemType::I32), "int64_t");
        assert_eq!(k(ReduceOp::Max, ElemType::BF16, ElemType::F32), "float");
        assert_eq!(k(ReduceOp::Count, ElemType::F64, ElemType::I32), "int64_t");
    }

    /// (The handler's check of such tables is tested in `handlers::reduce`.)
    #[test]
    fn segment_table_lists_element_then_tile_offsets() {
        let t = segment_table(&[3, 0, TILE + 1]);
        assert_eq!(t, vec![0, 3, 3, TILE as i64 + 4, 0, 1, 1, 3]);
    }

    #[test]
    fn every_kernel_generates_in_both_dialects() {
        for op in ReduceOp::ALL {
            for input in ElemType::ALL {
                for output in ElemType::ALL {
                    let Ok(k) = ReduceKernel::new(op, input, output) else {
                        continue;
                    };
                    for d in [Dialect::C, Dialect::Cuda] {
                        let src = generate(&k, d);
                        assert!(src.contains(ENTRY_TILES) && src.contains(ENTRY_FINISH));
                        assert_eq!(src.contains(ENTRY_ONE_PASS), d == Dialect::Cuda);
                    }
                }
            }
        }
    }
}
