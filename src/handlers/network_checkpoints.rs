//! Checkpointed network runs: `spikeforge_network_run` with the attribute `checkpoint_every`
//! (`k` > 0) also returns the groups' state at the start of every `k`-step segment of the run,
//! for the network adjoint's backward pass (`python_shim/spikeforge/network/gradients.py`).
//!
//! Why in the run's call: under `jax.grad` the forward pass needs the state at each segment's
//! start (its checkpoints); as one call per segment it paid, each segment, the call's state
//! copies, counter fills and XLA's glue (H200, COBA x1, 20 segments of 50 steps: 4.41 ms
//! against 4.06 ms for one call of 1000 steps). Here one call runs the segments back to back
//! (the persistent kernel's chunk `[s0, s1)` launches, the per-step kernels, or the C entry a
//! segment at a time) and copies the checkpointed buffers into their slots between them.
//!
//! The checkpointed buffers: the batched outputs of roles `state`, `param`, `lastspike_step`,
//! `not_refractory`, `spike_queue` and `spike_queue_counts` (what a group's step reads of its
//! own state, and the spikes in flight), in layout order, each as a
//! result `[nb, segments, ...]` (the buffer's shape with the segment axis after the batch axis)
//! between the run's outputs and its work buffer.

use std::ffi::c_void;

use crate::codegen::network_layout::{Dim, NetLayout, NetRole};
use crate::runtime::cuda;
use crate::xla::{Buffer, FfiError};

/// The roles of the outputs a checkpointed run copies (Python: `CHECKPOINT_ROLES`).
pub const CHECKPOINT_ROLES: [NetRole; 6] = [
    NetRole::State,
    NetRole::Param,
    NetRole::LastspikeStep,
    NetRole::NotRefractory,
    NetRole::SpikeQueue,
    NetRole::SpikeQueueCounts,
];

/// The positions in `layout.outputs` of the buffers a checkpointed run copies.
pub fn checkpointed(layout: &NetLayout) -> Vec<usize> {
    layout
        .outputs
        .iter()
        .enumerate()
        .filter(|(_, a)| a.batched && CHECKPOINT_ROLES.contains(&a.role))
        .map(|(k, _)| k)
        .collect()
}

/// The run's segments `[s0, s1)`: `k` steps each, the last one shorter; the whole run as one
/// when `k` is 0.
pub fn segments(steps: usize, k: usize) -> Vec<(usize, usize)> {
    if k == 0 || k >= steps {
        return vec![(0, steps)];
    }
    (0..steps)
        .step_by(k)
        .map(|s0| (s0, (s0 + k).min(steps)))
        .collect()
}

/// Why a network's runs cannot be checkpointed, if they cannot: an input with a per-step axis
/// (its rows would need moving with each segment, which only the outputs' do).
pub fn refusal(layout: &NetLayout) -> Option<String> {
    layout
        .inputs
        .iter()
        .find(|a| {
            a.shape
                .iter()
                .any(|d| matches!(d, Dim::Sized(s) if *s != "n_syn"))
        })
        .map(|a| {
            format!(
                "attribute 'checkpoint_every': the input {}.{} has a per-step axis",
                a.owner, a.name
            )
        })
}

/// The bytes a batch member has of each checkpointed buffer (its output's bytes over `nb`),
/// checked to be whole 32-bit words (the CUDA copy moves words).
pub fn member_bytes(outputs: &[Buffer<'_>], nb: usize) -> Result<Vec<usize>, FfiError> {
    outputs
        .iter()
        .map(|b| {
            let bytes = b.size_bytes() / nb.max(1);
            if bytes % 4 != 0 {
                return Err(FfiError::invalid_argument(format!(
                    "a checkpointed buffer of {bytes} bytes a member is not whole 32-bit words"
                )));
            }
            Ok(bytes)
        })
        .collect()
}

/// Copies (host memory) each checkpointed output's members into slot `slot` of its checkpoint
/// buffer (`[nb, segments, ...]`).
///
/// # Safety
/// `outputs[j]` and `checkpoints[j]` are host buffers of `nb * bytes[j]` and
/// `nb * segments * bytes[j]` bytes, distinct; `slot < segments`.
pub unsafe fn copy_host(
    outputs: &[Buffer<'_>],
    checkpoints: &[Buffer<'_>],
    bytes: &[usize],
    nb: usize,
    segments: usize,
    slot: usize,
) {
    for ((out, ck), m) in outputs.iter().zip(checkpoints).zip(bytes) {
        for b in 0..nb {
            // SAFETY: within both buffers (the caller's sizes), which do not overlap.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    out.data.cast::<u8>().add(b * m),
                    ck.data.cast::<u8>().add((b * segments + slot) * m),
                    *m,
                )
            };
        }
    }
}

/// Buffers one launch of the CUDA copy kernel moves.
const COPIES: usize = 8;

/// The CUDA copy kernel's parameter (one struct, passed by value; `CopyParams` in
/// [`COPY_SOURCE`]).
#[repr(C)]
struct CopyParams {
    src: [*const c_void; COPIES],
    dst: [*mut c_void; COPIES],
    words: [i64; COPIES],
    n: i32,
    nb: i32,
    segments: i32,
    slot: i32,
}

/// The CUDA copy kernel: word `e` of member `b` of buffer `j` into slot `slot` of its
/// checkpoint, grid-stride over every buffer's words.
pub const COPY_SOURCE: &str = r#"
struct CopyParams {
    const unsigned int* src[8];
    unsigned int* dst[8];
    long long words[8];
    int n;
    int nb;
    int segments;
    int slot;
};
extern "C" __global__ void sf_network_checkpoint(const CopyParams c)
{
    const long long stride = (long long) gridDim.x * blockDim.x;
    for (int j = 0; j < c.n; ++j) {
        const long long m = c.words[j];
        for (long long x = (long long) blockIdx.x * blockDim.x + threadIdx.x; x < m * c.nb; x += stride) {
            const long long b = x / m;
            c.dst[j][(b * c.segments + c.slot) * m + (x - b * m)] = c.src[j][x];
        }
    }
}
"#;

/// The copy kernel's entry.
const COPY_ENTRY: &str = "sf_network_checkpoint";

/// Threads per block of the copy kernel.
const COPY_BLOCK: u32 = 256;

/// Enqueues on `stream` the copy of each checkpointed output's members into slot `slot` of
/// its checkpoint buffer (a launch for each [`COPIES`] buffers).
///
/// # Safety
/// As [`copy_host`], with device buffers of `stream`'s context.
pub unsafe fn copy_device(
    outputs: &[Buffer<'_>],
    checkpoints: &[Buffer<'_>],
    bytes: &[usize],
    nb: usize,
    segments: usize,
    slot: usize,
    stream: *mut c_void,
) -> Result<(), FfiError> {
    let f = cuda::load_function_keyed(
        "network checkpoint copy, v1",
        COPY_ENTRY,
        stream,
        &cuda::CudaCompileOptions::default(),
        || COPY_SOURCE.to_owned(),
    )?;
    let pairs: Vec<_> = outputs.iter().zip(checkpoints).zip(bytes).collect();
    for chunk in pairs.chunks(COPIES) {
        let mut p = CopyParams {
            src: [std::ptr::null(); COPIES],
            dst: [std::ptr::null_mut(); COPIES],
            words: [0; COPIES],
            n: chunk.len() as i32,
            nb: nb as i32,
            segments: segments as i32,
            slot: slot as i32,
        };
        let mut most = 0u64;
        for (j, ((out, ck), m)) in chunk.iter().enumerate() {
            p.src[j] = out.data.cast_const();
            p.dst[j] = ck.data;
            p.words[j] = (**m / 4) as i64;
            most = most.max((**m / 4 * nb) as u64);
        }
        let blocks = most.div_ceil(u64::from(COPY_BLOCK)).clamp(1, 1024) as u32;
        let mut params: Vec<*mut c_void> = vec![(&mut p as *mut CopyParams).cast()];
        // SAFETY: the kernel's one parameter is `CopyParams` (same layout); the pointers are
        // the caller's device buffers of these sizes.
        unsafe {
            cuda::launch(
                &f,
                (blocks, 1, 1),
                (COPY_BLOCK, 1, 1),
                0,
                stream,
                &mut params,
            )
        }?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_cover_the_run_in_order() {
        assert_eq!(segments(10, 0), [(0, 10)]);
        assert_eq!(segments(10, 10), [(0, 10)]);
        assert_eq!(segments(10, 4), [(0, 4), (4, 8), (8, 10)]);
        assert_eq!(segments(9, 3), [(0, 3), (3, 6), (6, 9)]);
    }
}
