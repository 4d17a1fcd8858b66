//! `SPIKEFORGE_POISON_OUTPUTS=1`: every handler fills its results (and temporary buffers) with
//! 0xFF bytes before its kernels run: NaN for floats, -1 for integers, an invalid truth value.
//! The tests set it, so an element a kernel fails to write shows up as a wrong answer.

use std::ffi::c_void;
use std::sync::LazyLock;

use crate::runtime::cuda;
use crate::xla::FfiError;

/// The fill byte.
const POISON: u8 = 0xFF;

/// Whether the environment asks for poisoning (read once per process).
pub fn enabled() -> bool {
    static ENABLED: LazyLock<bool> = LazyLock::new(|| {
        std::env::var("SPIKEFORGE_POISON_OUTPUTS").is_ok_and(|v| !v.is_empty() && v != "0")
    });
    *ENABLED
}

/// Fills host buffers, given as `(pointer, bytes)`.
///
/// # Safety
/// Each pointer must be host memory of at least its byte count that nothing else uses meanwhile.
pub unsafe fn host(buffers: impl IntoIterator<Item = (*mut c_void, usize)>) {
    for (ptr, bytes) in buffers {
        if bytes > 0 {
            // SAFETY: forwarded to the caller.
            unsafe { std::ptr::write_bytes(ptr.cast::<u8>(), POISON, bytes) };
        }
    }
}

/// Fills device buffers, given as `(pointer, bytes)`, on `stream` (asynchronously, in order with
/// the kernels queued after it).
///
/// # Safety
/// Each pointer must be device memory of at least its byte count in the context of `stream`.
pub unsafe fn device(
    buffers: impl IntoIterator<Item = (*mut c_void, usize)>,
    stream: *mut c_void,
) -> Result<(), FfiError> {
    for (ptr, bytes) in buffers {
        if bytes > 0 {
            // SAFETY: forwarded to the caller.
            unsafe { cuda::memset_async(ptr, POISON, bytes, stream) }?;
        }
    }
    Ok(())
}
