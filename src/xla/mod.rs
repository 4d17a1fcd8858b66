//! The XLA FFI bridge: how XLA calls into spikeforge.
//!
//! Layered like cudarc, each layer using only the one below it:
//!
//! * [`sys`]: bindgen output for `xla/ffi/api/c_api.h` of the oldest supported jaxlib (0.10.2,
//!   API 0.3), committed. Raw and unchecked.
//! * [`result`]: checked calls through the `XLA_FFI_Api` function table (create an error, get the
//!   stream, allocate scratch memory), each returning `Result<_, FfiError>`.
//! * [`safe`]: what a handler holds: [`CallFrame`], [`Buffer`], [`Attrs`], with errors that name
//!   the argument or attribute at fault.
//! * [`instance`]: handlers with per-executable state (an [`Instance`] prepared once per call
//!   site, then [`Handler::execute`] with it), kept in XLA's execution state.
//! * this file: [`dispatch`], the one place where C meets Rust (metadata handshake, panic
//!   barrier, error conversion), and [`xla_ffi_handler!`](crate::xla_ffi_handler), which exports
//!   a [`Handler`] as a symbol.
//!
//! Header versions: the bindings are API 0.3's, and every jaxlib from 0.10.2 to 0.12 (API 0.3 to
//! 0.5) keeps what they declare at the same offsets (`tests/xla_ffi_bindings.rs` checks the
//! installed headers). The one later addition the bridge uses is the error code that API 0.4's
//! `Error_GetDetails` appends to `Error_GetMessage`'s args (see `result::error_details`).

use std::any::Any;
use std::panic::{self, AssertUnwindSafe};
use std::ptr;

pub mod instance;
pub mod result;
pub mod safe;
pub mod sys;

#[cfg(test)]
mod tests;

pub use instance::{Handler, HandlerTraits, Instance};
pub use result::{ErrorCode, FfiError};
pub use safe::{
    ArrayAttr, AttrValue, Attrs, Buffer, BufferRole, CallFrame, DataType, Element, Scalar, Scratch,
};

/// FFI API version of the header the committed bindings were generated from.
pub const HEADER_API_VERSION: (i32, i32) =
    (sys::XLA_FFI_API_MAJOR as i32, sys::XLA_FFI_API_MINOR as i32);

/// The version our handlers announce in the metadata handshake: the bindings' own, API 0.3.
///
/// jaxlib 0.10.2's XLA rejects any handler whose version differs from its own 0.3, while 0.11 and
/// 0.12 accept any version in their supported range, which reaches back to 0.3: so 0.3 is accepted
/// by every supported jaxlib, and it is honest, since the bindings are 0.3's (args structs we pass
/// may be larger than 0.3's, which XLA explicitly allows).
pub const REPORTED_API_VERSION: (i32, i32) = HEADER_API_VERSION;

// Bindings of another version need a review of this module before they are announced.
const _: () = assert!(
    HEADER_API_VERSION.0 == 0 && HEADER_API_VERSION.1 == 3,
    "the XLA FFI bindings are not API 0.3's: review src/xla"
);

/// `XLA_FFI_Extension_Metadata`, typed as the extension header's `type_`. The cast is a no-op
/// where clang gives the C enum `unsigned` type, but that choice is the compiler's, not the
/// header's.
#[allow(clippy::unnecessary_cast)]
const METADATA_EXTENSION: sys::XLA_FFI_Extension_Type =
    sys::XLA_FFI_Extension_Metadata as sys::XLA_FFI_Extension_Type;

/// Runs the stage XLA asks for of the [`Handler`] `H` (see [`instance`]) through [`dispatch`].
///
/// # Safety
/// As for [`dispatch`].
pub unsafe fn dispatch_handler<H: Handler>(
    frame: *mut sys::XLA_FFI_CallFrame,
) -> *mut sys::XLA_FFI_Error {
    dispatch(frame, H::TRAITS, instance::run_stage::<H>)
}

/// Calls `handler` on behalf of XLA and converts the outcome into what XLA expects: null on
/// success, an `XLA_FFI_Error` otherwise.
///
/// * A metadata request (XLA asks every handler for its API version when it is registered) is
///   answered before anything else is read: XLA sends it with no api table, no arguments. The
///   answer carries `traits`.
/// * The handler runs inside `catch_unwind`: a panic must not unwind into XLA's C++ frames. It
///   becomes an `Internal` error carrying the panic message.
/// * A null frame gets null back: without a frame there is no api table to create an error with.
///
/// # Safety
/// `frame` must be null or the live call frame XLA passed to the handler symbol.
pub unsafe fn dispatch(
    frame: *mut sys::XLA_FFI_CallFrame,
    traits: HandlerTraits,
    handler: impl FnOnce(&CallFrame<'_>) -> Result<(), FfiError>,
) -> *mut sys::XLA_FFI_Error {
    let Some(raw) = frame.as_ref() else {
        return ptr::null_mut();
    };
    if let Some(extension) = metadata_request(raw) {
        return match fill_metadata(extension, traits) {
            Ok(()) => ptr::null_mut(),
            Err(e) => report(raw.api, &e),
        };
    }
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        let call = CallFrame::from_raw(frame)?;
        handler(&call)
    }));
    let error = match outcome {
        Ok(Ok(())) => return ptr::null_mut(),
        Ok(Err(e)) => e,
        Err(payload) => {
            let error =
                FfiError::internal(format!("handler panicked: {}", panic_message(&*payload)));
            // A payload whose destructor panics would otherwise unwind into XLA from here.
            let _ = panic::catch_unwind(AssertUnwindSafe(move || drop(payload)));
            error
        }
    };
    report(raw.api, &error)
}

unsafe fn report(api: *const sys::XLA_FFI_Api, error: &FfiError) -> *mut sys::XLA_FFI_Error {
    let raw = result::error_create(api, error);
    if raw.is_null() {
        // XLA would read null as success; stderr is the only place left to say what happened.
        eprintln!("spikeforge: cannot report an error to XLA (no FFI API table): {error}");
    }
    raw
}

/// The metadata extension on the frame's extension chain, if XLA attached one.
unsafe fn metadata_request(
    frame: &sys::XLA_FFI_CallFrame,
) -> Option<&sys::XLA_FFI_Metadata_Extension> {
    // Bounded walk: a corrupt chain must not hang the process.
    let mut next = frame.extension_start.cast_const();
    for _ in 0..64 {
        let extension = next.as_ref()?;
        if extension.type_ == METADATA_EXTENSION {
            return Some(&*next.cast::<sys::XLA_FFI_Metadata_Extension>());
        }
        next = extension.next;
    }
    None
}

unsafe fn fill_metadata(
    extension: &sys::XLA_FFI_Metadata_Extension,
    traits: HandlerTraits,
) -> Result<(), FfiError> {
    let too_small = |what: &str, got: usize, want: u32| {
        FfiError::invalid_argument(format!("{what} is {got} bytes, expected at least {want}"))
    };
    if extension.extension_base.struct_size < sys::XLA_FFI_Metadata_Extension_STRUCT_SIZE as usize {
        let size = extension.extension_base.struct_size;
        return Err(too_small(
            "XLA_FFI_Metadata_Extension",
            size,
            sys::XLA_FFI_Metadata_Extension_STRUCT_SIZE,
        ));
    }
    let metadata = extension
        .metadata
        .as_mut()
        .ok_or_else(|| FfiError::invalid_argument("metadata extension without metadata"))?;
    if metadata.struct_size < sys::XLA_FFI_Metadata_STRUCT_SIZE as usize {
        return Err(too_small(
            "XLA_FFI_Metadata",
            metadata.struct_size,
            sys::XLA_FFI_Metadata_STRUCT_SIZE,
        ));
    }
    metadata.api_version.struct_size = sys::XLA_FFI_Api_Version_STRUCT_SIZE as usize;
    metadata.api_version.extension_start = ptr::null_mut();
    metadata.api_version.major_version = REPORTED_API_VERSION.0;
    metadata.api_version.minor_version = REPORTED_API_VERSION.1;
    // `state_type_id` (a later field) is left alone: XLA asks the execute stage, which sets no
    // state, and a 0.3 metadata struct may end before it.
    metadata.traits = traits.bits();
    Ok(())
}

fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "(non-string panic payload)"
    }
}

/// Defines an exported XLA FFI handler symbol that runs a [`Handler`] through
/// [`dispatch_handler`]:
///
/// ```ignore
/// struct LifCpu;
/// impl Handler for LifCpu { ... }
/// xla_ffi_handler!(pub fn sf_lif_cpu => LifCpu);
/// ```
///
/// Python registers the symbol for both stages: `jax.ffi.register_ffi_target(name,
/// {"instantiate": capsule, "execute": capsule})`.
#[macro_export]
macro_rules! xla_ffi_handler {
    ($(#[$meta:meta])* $vis:vis fn $name:ident => $handler:ty) => {
        $(#[$meta])*
        /// XLA FFI handler (exported, C ABI), for the instantiate and execute stages.
        ///
        /// # Safety
        /// Only XLA may call this, with a live `XLA_FFI_CallFrame` (or a metadata request).
        #[no_mangle]
        $vis unsafe extern "C" fn $name(
            frame: *mut $crate::xla::sys::XLA_FFI_CallFrame,
        ) -> *mut $crate::xla::sys::XLA_FFI_Error {
            $crate::xla::dispatch_handler::<$handler>(frame)
        }

        // The exported symbol must have exactly the C handler type.
        const _: $crate::xla::sys::XLA_FFI_Handler = Some($name);
    };
}
