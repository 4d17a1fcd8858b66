//! `SPIKEFORGE_POISON_OUTPUTS=1`: every handler fills its results (and temporary buffers) with
//! 0xFF bytes before its kernels run: NaN for floats, -1 for integers, an invalid truth value.
//! The tests set it, so an element a kernel fails to write shows up as a wrong answer.

use std::sync::LazyLock;

use crate::runtime::cuda;
use crate::xla::{Buffer, FfiError};

/// The fill byte.
const POISON: u8 = 0xFF;

/// Whether the environment asks for poisoning (read once per process).
pub fn enabled() -> bool {
    static ENABLED: LazyLock<bool> = LazyLock::new(|| {
        std::env::var("SPIKEFORGE_POISON_OUTPUTS").is_ok_and(|v| !v.is_empty() && v != "0")
    });
    *ENABLED
}

/// Fills host buffers (the results of a CPU call).
///
/// # Safety
/// The buffers must be host memory that nothing else uses meanwhile.
pub unsafe fn host<'b, 'a: 'b>(buffers: impl IntoIterator<Item = &'b Buffer<'a>>) {
    for b in buffers {
        if b.size_bytes() > 0 {
            // SAFETY: forwarded to the caller; XLA allocated `size_bytes` for the buffer.
            unsafe { std::ptr::write_bytes(b.data.cast::<u8>(), POISON, b.size_bytes()) };
        }
    }
}

/// Fills device buffers (the results of a CUDA call) on `stream`: asynchronously, in order with
/// the kernels queued after it.
///
/// # Safety
/// The buffers must be device memory in the context of `stream`.
pub unsafe fn device<'b, 'a: 'b>(
    buffers: impl IntoIterator<Item = &'b Buffer<'a>>,
    stream: *mut std::ffi::c_void,
) -> Result<(), FfiError> {
    for b in buffers {
        if b.size_bytes() > 0 {
            // SAFETY: forwarded to the caller.
            unsafe { cuda::memset_async(b.data, POISON, b.size_bytes(), stream) }?;
        }
    }
    Ok(())
}
