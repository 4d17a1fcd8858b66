//! `spikeforge_connect`: the two passes of building a projection's connectivity from a rule
//! and a seed (see [`crate::connect`] and [`crate::codegen::connect_kernel`]).
//!
//! Attributes: `spec` (the canonical connection spec, as `sf_connect_compile` returns it), `key`
//! (its hash), `phase` (`"count"` or `"fill"`), `n_pre`, `n_post` (at most 2^31 - 1 each: the
//! targets are int32) and `self_offset` (the postsynaptic index of presynaptic neuron 0 when both
//! sides are one group, else [`NO_SELF`]).
//!
//! Arguments: `key` uint32[2] (seed, stream); `pre_values` / `post_values` int32[k, n, 2], the
//! float64 values of the variables the rule reads, as little-endian word pairs (exact whether or
//! not JAX has x64); for the fill pass, `offsets` int32[rows + 1, 2] (int64 row offsets as word
//! pairs). Result: `counts` int32[rows, 2] (int64 per row, negative for an error) or `targets`
//! int32[n_syn]. The rows are the presynaptic neurons, or the postsynaptic ones for a fixed
//! in-degree.
//!
//! Connectivity is built once, when a network's state is made, outside `jit`: nothing here is
//! tuned for repeated calls (no command buffers).

use std::ffi::c_void;
use std::sync::Arc;

use super::buffers::{self, Expected, SharedPtr};
use super::loaded_kernels::LoadedKernels;
use super::poison;
use crate::codegen::connect_kernel::{self, CUDA_BLOCK, CUDA_OPTIONS, ENTRY_COUNT, ENTRY_FILL};
use crate::codegen::Dialect;
use crate::connect::{lower, ConnectIr, ConnectSpec, Rows, NO_SELF};
use crate::runtime::{cpu, cuda};
use crate::xla::{CallFrame, DataType, FfiError, Handler, HandlerTraits, Instance};

/// Which pass a call site runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Count,
    Fill,
}

/// One call site of `spikeforge_connect`.
pub struct Connect {
    key: String,
    ir: ConnectIr,
    phase: Phase,
    n_pre: usize,
    n_post: usize,
    self_offset: i64,
    rows: Rows,
    kernels: LoadedKernels<Arc<CKernels>, Arc<cuda::CudaFunction>>,
}

impl Connect {
    fn n_rows(&self) -> usize {
        match self.rows {
            Rows::Pre => self.n_pre,
            Rows::Post => self.n_post,
        }
    }

    fn source(&self, dialect: Dialect) -> String {
        connect_kernel::generate(&self.ir, dialect)
    }

    fn entry(&self) -> &'static str {
        match self.phase {
            Phase::Count => ENTRY_COUNT,
            Phase::Fill => ENTRY_FILL,
        }
    }
}

impl Instance for Connect {
    fn instantiate(call: &CallFrame) -> Result<Connect, FfiError> {
        let attrs = call.attrs()?;
        let key = attrs.get_str("key")?;
        let spec = ConnectSpec::from_json(attrs.get_str("spec")?)
            .map_err(|e| FfiError::invalid_argument(format!("attribute 'spec': {e}")))?;
        if spec.key() != key {
            return Err(FfiError::invalid_argument(
                "attribute 'key' does not match attribute 'spec'",
            ));
        }
        let (ir, _) = lower(&spec)?;
        let phase = match attrs.get_str("phase")? {
            "count" => Phase::Count,
            "fill" => Phase::Fill,
            other => {
                return Err(FfiError::invalid_argument(format!(
                    "attribute 'phase': {other:?} is neither \"count\" nor \"fill\""
                )))
            }
        };
        let size = |name: &str| -> Result<usize, FfiError> {
            let n = attrs.get_usize(name)?;
            if n > i32::MAX as usize {
                return Err(FfiError::invalid_argument(format!(
                    "attribute '{name}': {n} neurons do not fit the int32 indices of the synapses"
                )));
            }
            Ok(n)
        };
        let (n_pre, n_post) = (size("n_pre")?, size("n_post")?);
        let self_offset = attrs.get_i64("self_offset")?;
        if self_offset != NO_SELF && self_offset.unsigned_abs() > i32::MAX as u64 {
            return Err(FfiError::invalid_argument(format!(
                "attribute 'self_offset': {self_offset} is neither an index offset nor NO_SELF"
            )));
        }
        Ok(Connect {
            key: key.to_owned(),
            rows: spec.rows(),
            ir,
            phase,
            n_pre,
            n_post,
            self_offset,
            kernels: LoadedKernels::new(),
        })
    }
}

/// One call's buffers, checked.
struct Call<'a> {
    buffers: buffers::Checked<'a>,
    /// The fill pass's number of synapses (the length of `targets`).
    n_syn: usize,
}

fn decode<'a>(call: &CallFrame<'a>, site: &Connect) -> Result<Call<'a>, FfiError> {
    let rows = site.n_rows() as i64;
    let pre_dims = [site.ir.pre_variables.len() as i64, site.n_pre as i64, 2];
    let post_dims = [site.ir.post_variables.len() as i64, site.n_post as i64, 2];
    let offsets_dims = [rows + 1, 2];
    let counts_dims = [rows, 2];
    let mut args = vec![
        Expected {
            name: "key",
            dtype: DataType::U32,
            dims: &[2],
        },
        Expected {
            name: "pre_values",
            dtype: DataType::S32,
            dims: &pre_dims,
        },
        Expected {
            name: "post_values",
            dtype: DataType::S32,
            dims: &post_dims,
        },
    ];
    let n_syn;
    let targets_dims;
    let rets = match site.phase {
        Phase::Count => {
            n_syn = 0;
            vec![Expected {
                name: "counts",
                dtype: DataType::S32,
                dims: &counts_dims,
            }]
        }
        Phase::Fill => {
            args.push(Expected {
                name: "offsets",
                dtype: DataType::S32,
                dims: &offsets_dims,
            });
            // The one size the attributes do not give: read it from the result.
            let targets = call.ret(0)?;
            n_syn = match targets.dims {
                [n] if *n >= 0 => *n as usize,
                _ => {
                    return Err(FfiError::invalid_argument(format!(
                        "result 'targets': expected int32[n_syn], got {targets}"
                    )))
                }
            };
            targets_dims = [n_syn as i64];
            vec![Expected {
                name: "targets",
                dtype: DataType::S32,
                dims: &targets_dims,
            }]
        }
    };
    let buffers = buffers::check(call, &args, &rets)?;
    // The word pairs are read as 8-byte values: values, offsets, counts.
    let wide = buffers.args[1..]
        .iter()
        .copied()
        .chain((site.phase == Phase::Count).then(|| buffers.rets[0].data));
    if wide.into_iter().any(|p| p.align_offset(8) != 0) {
        return Err(FfiError::invalid_argument(
            "the values, offsets and counts buffers must be 8-byte aligned",
        ));
    }
    Ok(Call { buffers, n_syn })
}

/// Checks row offsets (read from the `offsets` buffer) before the C kernel trusts them: they
/// start at 0, never decrease and end at `n_syn`.
fn check_offsets(offsets: &[i64], n_syn: usize) -> Result<(), String> {
    if offsets.first() != Some(&0) {
        return Err("the first row offset must be 0".into());
    }
    if let Some(k) = offsets.windows(2).position(|w| w[1] < w[0]) {
        return Err(format!(
            "row offsets decrease at row {k} ({} then {})",
            offsets[k],
            offsets[k + 1]
        ));
    }
    let last = *offsets.last().expect("rows + 1 >= 1 offsets");
    if last as u64 != n_syn as u64 {
        return Err(format!(
            "the row offsets end at {last}, but targets has {n_syn} elements"
        ));
    }
    Ok(())
}

/// `(r0, r1, sizes, key, pre, post, counts)`
type CCount =
    unsafe extern "C" fn(i64, i64, *const i64, *const u32, *const f64, *const f64, *mut i64);
/// `(r0, r1, sizes, key, pre, post, offsets, targets)`
type CFill = unsafe extern "C" fn(
    i64,
    i64,
    *const i64,
    *const u32,
    *const f64,
    *const f64,
    *const i64,
    *mut i32,
);

/// Both C entry points of a rule.
pub struct CKernels {
    count: CCount,
    fill: CFill,
    _module: Arc<cpu::CpuModule>,
}

/// Rows per chunk handed to a thread: rows are independent but uneven (a row of a
/// condition-only rule visits every postsynaptic neuron), so keep chunks small enough to
/// balance.
const ROWS_PER_CHUNK: usize = 64;

/// `spikeforge_connect` on the CPU: rows spread over the cores.
pub struct ConnectCpu;

impl Handler for ConnectCpu {
    type Instance = Connect;
    const TRAITS: HandlerTraits = HandlerTraits::NONE;

    fn execute(call: &CallFrame<'_>, site: &Connect) -> Result<(), FfiError> {
        let c = decode(call, site)?;
        let kernels = site.kernels.cpu(|| {
            let opts = cpu::CpuCompileOptions::default();
            let module =
                cpu::load_keyed(&site.key, ENTRY_COUNT, &opts, || site.source(Dialect::C))?;
            // SAFETY: the generated entry points have exactly these signatures.
            let count: CCount = unsafe { module.entry::<CCount>() };
            let fill: CFill = unsafe { *module.symbol::<CFill>(ENTRY_FILL)? };
            Ok(Arc::new(CKernels {
                count,
                fill,
                _module: module,
            }))
        })?;
        let rows = site.n_rows();
        let sizes = [site.n_pre as i64, site.n_post as i64, site.self_offset];
        // The fill pass trusts its offsets: check them first.
        let offsets = match site.phase {
            Phase::Count => std::ptr::null(),
            Phase::Fill => {
                // SAFETY: host memory, 8-byte aligned (checked), rows + 1 int64 as int32 pairs,
                // not written during the call.
                let offsets: &[i64] = unsafe {
                    std::slice::from_raw_parts(c.buffers.args[3].cast::<i64>(), rows + 1)
                };
                check_offsets(offsets, c.n_syn)
                    .map_err(|e| FfiError::invalid_argument(format!("argument 'offsets': {e}")))?;
                offsets.as_ptr()
            }
        };
        if poison::enabled() {
            // SAFETY: a host buffer of this size owned by XLA for this call.
            unsafe { poison::host(&c.buffers.rets) };
        }
        let [key, pre, post] = [0, 1, 2].map(|k| SharedPtr::new(c.buffers.args[k]));
        let offsets = SharedPtr::new(offsets.cast_mut());
        let out = SharedPtr::new(c.buffers.rets[0].data);
        let (phase, count, fill) = (site.phase, kernels.count, kernels.fill);
        cpu::parallel_chunks(rows, ROWS_PER_CHUNK, |r0, r1| {
            let (r0, r1) = (r0 as i64, r1 as i64);
            let (key, pre, post) = (key.get().cast(), pre.get().cast(), post.get().cast());
            // SAFETY: the buffers were checked (shapes, alignment) and outlive the section. The
            // count pass writes counts[r0..r1) only; the fill pass, whose offsets were checked,
            // writes targets[offsets[r]..offsets[r + 1]) for its rows r only, disjoint between
            // rows.
            unsafe {
                match phase {
                    Phase::Count => count(r0, r1, sizes.as_ptr(), key, pre, post, out.get().cast()),
                    Phase::Fill => fill(
                        r0,
                        r1,
                        sizes.as_ptr(),
                        key,
                        pre,
                        post,
                        offsets.get(),
                        out.get().cast(),
                    ),
                }
            }
        });
        Ok(())
    }
}

/// `spikeforge_connect` on CUDA: one launch on XLA's stream, one thread per row.
pub struct ConnectCuda;

impl Handler for ConnectCuda {
    type Instance = Connect;
    const TRAITS: HandlerTraits = HandlerTraits::NONE;

    fn execute(call: &CallFrame<'_>, site: &Connect) -> Result<(), FfiError> {
        let c = decode(call, site)?;
        let stream = call.stream()?;
        let f = site.kernels.cuda(stream, || {
            let opts = cuda::CudaCompileOptions {
                fast_math: false,
                extra: CUDA_OPTIONS.iter().map(|o| o.to_string()).collect(),
            };
            Ok(cuda::load_function_keyed(
                &site.key,
                site.entry(),
                stream,
                &opts,
                || site.source(Dialect::Cuda),
            )?)
        })?;
        if poison::enabled() {
            // SAFETY: device buffers of these sizes on XLA's stream for this call.
            unsafe { poison::device(&c.buffers.rets, stream) }?;
        }
        let rows = site.n_rows();
        if rows == 0 {
            return Ok(());
        }
        // At most 2^31 - 1 rows (checked at instantiation), so the grid fits.
        let grid = (rows as u64).div_ceil(u64::from(CUDA_BLOCK)) as u32;
        let mut n_rows = rows as i64;
        let mut n_pre = site.n_pre as i64;
        let mut n_post = site.n_post as i64;
        let mut self_offset = site.self_offset;
        let mut n_syn = c.n_syn as i64;
        let mut pointers: Vec<*mut c_void> = c
            .buffers
            .args
            .iter()
            .copied()
            .chain(c.buffers.ret_ptrs())
            .collect();
        let mut params: Vec<*mut c_void> = vec![
            (&mut n_rows as *mut i64).cast(),
            (&mut n_pre as *mut i64).cast(),
            (&mut n_post as *mut i64).cast(),
            (&mut self_offset as *mut i64).cast(),
        ];
        if site.phase == Phase::Fill {
            params.push((&mut n_syn as *mut i64).cast());
        }
        params.extend(
            pointers
                .iter_mut()
                .map(|p| (p as *mut *mut c_void).cast::<c_void>()),
        );
        // SAFETY: the parameters match the generated kernel's signature in order and type (key,
        // pre, post[, offsets], result); the buffers belong to XLA's stream for the call. The
        // fill kernel clamps every offset to [0, n_syn].
        unsafe { cuda::launch(&f, (grid, 1, 1), (CUDA_BLOCK, 1, 1), 0, stream, &mut params) }?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::check_offsets;

    #[test]
    fn offsets_are_checked_before_the_kernel_trusts_them() {
        assert_eq!(check_offsets(&[0, 2, 2, 5], 5), Ok(()));
        assert_eq!(check_offsets(&[0], 0), Ok(()));
        assert!(check_offsets(&[1, 2], 2).unwrap_err().contains("first"));
        assert!(check_offsets(&[0, 3, 2, 5], 5)
            .unwrap_err()
            .contains("decrease at row 1"));
        assert!(check_offsets(&[0, 2, 6], 5)
            .unwrap_err()
            .contains("end at 6"));
        // A wrapped offset is a decrease, never a huge slice.
        assert!(check_offsets(&[0, i64::MIN, 5], 5).is_err());
    }
}
