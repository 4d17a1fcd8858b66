//! Checked calls through XLA's `XLA_FFI_Api` function table, and the error type they return.
//!
//! Each function checks that the table is non-null, that it is long enough to hold the entry
//! (`struct_size` of an older XLA can be shorter than our header's) and that the entry is set,
//! then turns an `XLA_FFI_Error*` coming back into an [`FfiError`] (reading its message and
//! destroying it, since ownership passes to us).

use std::ffi::{c_void, CStr, CString};
use std::fmt;
use std::ptr;

use super::sys;

/// abseil status codes, as XLA FFI carries them (`XLA_FFI_Error_Code`); `OK` is not an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    Cancelled,
    Unknown,
    InvalidArgument,
    DeadlineExceeded,
    NotFound,
    AlreadyExists,
    PermissionDenied,
    ResourceExhausted,
    FailedPrecondition,
    Aborted,
    OutOfRange,
    Unimplemented,
    Internal,
    Unavailable,
    DataLoss,
    Unauthenticated,
}

/// (code, C value, abseil name), one row per code, so the three can't drift apart.
#[rustfmt::skip]
const CODES: [(ErrorCode, sys::XLA_FFI_Error_Code, &str); 16] = [
    (ErrorCode::Cancelled, sys::XLA_FFI_Error_Code_CANCELLED, "CANCELLED"),
    (ErrorCode::Unknown, sys::XLA_FFI_Error_Code_UNKNOWN, "UNKNOWN"),
    (ErrorCode::InvalidArgument, sys::XLA_FFI_Error_Code_INVALID_ARGUMENT, "INVALID_ARGUMENT"),
    (ErrorCode::DeadlineExceeded, sys::XLA_FFI_Error_Code_DEADLINE_EXCEEDED, "DEADLINE_EXCEEDED"),
    (ErrorCode::NotFound, sys::XLA_FFI_Error_Code_NOT_FOUND, "NOT_FOUND"),
    (ErrorCode::AlreadyExists, sys::XLA_FFI_Error_Code_ALREADY_EXISTS, "ALREADY_EXISTS"),
    (ErrorCode::PermissionDenied, sys::XLA_FFI_Error_Code_PERMISSION_DENIED, "PERMISSION_DENIED"),
    (ErrorCode::ResourceExhausted, sys::XLA_FFI_Error_Code_RESOURCE_EXHAUSTED, "RESOURCE_EXHAUSTED"),
    (ErrorCode::FailedPrecondition, sys::XLA_FFI_Error_Code_FAILED_PRECONDITION, "FAILED_PRECONDITION"),
    (ErrorCode::Aborted, sys::XLA_FFI_Error_Code_ABORTED, "ABORTED"),
    (ErrorCode::OutOfRange, sys::XLA_FFI_Error_Code_OUT_OF_RANGE, "OUT_OF_RANGE"),
    (ErrorCode::Unimplemented, sys::XLA_FFI_Error_Code_UNIMPLEMENTED, "UNIMPLEMENTED"),
    (ErrorCode::Internal, sys::XLA_FFI_Error_Code_INTERNAL, "INTERNAL"),
    (ErrorCode::Unavailable, sys::XLA_FFI_Error_Code_UNAVAILABLE, "UNAVAILABLE"),
    (ErrorCode::DataLoss, sys::XLA_FFI_Error_Code_DATA_LOSS, "DATA_LOSS"),
    (ErrorCode::Unauthenticated, sys::XLA_FFI_Error_Code_UNAUTHENTICATED, "UNAUTHENTICATED"),
];

impl ErrorCode {
    fn row(self) -> &'static (ErrorCode, sys::XLA_FFI_Error_Code, &'static str) {
        CODES
            .iter()
            .find(|row| row.0 == self)
            .expect("every code has a row")
    }

    /// The `XLA_FFI_Error_Code` value.
    pub fn to_raw(self) -> sys::XLA_FFI_Error_Code {
        self.row().1
    }

    /// Codes this build does not know (and `OK`, which is no error) read as `Unknown`.
    pub fn from_raw(raw: sys::XLA_FFI_Error_Code) -> ErrorCode {
        CODES
            .iter()
            .find(|row| row.1 == raw)
            .map_or(ErrorCode::Unknown, |row| row.0)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.row().2)
    }
}

/// An error a handler reports to XLA: becomes an `XLA_FFI_Error` (an `absl::Status` on the XLA
/// side, which JAX raises as an exception carrying `message`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FfiError {
    pub code: ErrorCode,
    pub message: String,
}

impl FfiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> FfiError {
        FfiError {
            code,
            message: message.into(),
        }
    }
    pub fn invalid_argument(message: impl Into<String>) -> FfiError {
        FfiError::new(ErrorCode::InvalidArgument, message)
    }
    pub fn internal(message: impl Into<String>) -> FfiError {
        FfiError::new(ErrorCode::Internal, message)
    }
    pub fn unimplemented(message: impl Into<String>) -> FfiError {
        FfiError::new(ErrorCode::Unimplemented, message)
    }
    pub fn not_found(message: impl Into<String>) -> FfiError {
        FfiError::new(ErrorCode::NotFound, message)
    }
    pub fn failed_precondition(message: impl Into<String>) -> FfiError {
        FfiError::new(ErrorCode::FailedPrecondition, message)
    }
    pub fn out_of_range(message: impl Into<String>) -> FfiError {
        FfiError::new(ErrorCode::OutOfRange, message)
    }
    pub fn resource_exhausted(message: impl Into<String>) -> FfiError {
        FfiError::new(ErrorCode::ResourceExhausted, message)
    }
    pub fn unknown(message: impl Into<String>) -> FfiError {
        FfiError::new(ErrorCode::Unknown, message)
    }

    /// Prefixes the message (`"{context}: {message}"`), keeping the code.
    pub fn context(self, context: impl fmt::Display) -> FfiError {
        FfiError {
            code: self.code,
            message: format!("{context}: {}", self.message),
        }
    }
}

impl fmt::Display for FfiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for FfiError {}

/// The api table behind `api`, or an error if XLA gave none.
///
/// # Safety
/// `api` must be null or point to a live `XLA_FFI_Api` for `'a`.
pub unsafe fn api_ref<'a>(api: *const sys::XLA_FFI_Api) -> Result<&'a sys::XLA_FFI_Api, FfiError> {
    api.as_ref()
        .ok_or_else(|| FfiError::internal("XLA passed no XLA_FFI_Api table"))
}

/// Reads one entry of the function table, checking the table's `struct_size` covers it: an XLA
/// older than our header has a shorter table, and reading past it would read garbage.
macro_rules! api_fn {
    ($api:expr, $field:ident) => {{
        let api: &sys::XLA_FFI_Api = $api;
        let end =
            std::mem::offset_of!(sys::XLA_FFI_Api, $field) + std::mem::size_of_val(&api.$field);
        if api.struct_size < end {
            Err(FfiError::unimplemented(concat!(
                "this XLA's FFI API table is too old to have ",
                stringify!($field)
            )))
        } else {
            api.$field.ok_or_else(|| {
                FfiError::unimplemented(concat!(
                    stringify!($field),
                    " is not set in XLA's FFI API table"
                ))
            })
        }
    }};
}

/// Struct sizes in the header are `enum` constants (C `unsigned`); args structs want `usize`.
fn size_of_args(header_size: u32) -> usize {
    header_size as usize
}

/// Creates the `XLA_FFI_Error` that a handler returns to report `error`.
///
/// Returns null only when there is no way to report anything (no table, or no `Error_Create`);
/// the caller must treat that case itself, since null means success to XLA.
///
/// # Safety
/// `api` must be null or point to a live `XLA_FFI_Api`.
pub unsafe fn error_create(
    api: *const sys::XLA_FFI_Api,
    error: &FfiError,
) -> *mut sys::XLA_FFI_Error {
    let Ok(api) = api_ref(api) else {
        return ptr::null_mut();
    };
    let Ok(create) = api_fn!(api, XLA_FFI_Error_Create) else {
        return ptr::null_mut();
    };
    // XLA copies the message into its absl::Status, so the CString may die after the call.
    // Interior NULs would silently truncate the message, so they are dropped instead.
    let message = CString::new(error.message.replace('\0', "")).expect("NULs were removed");
    let mut args = sys::XLA_FFI_Error_Create_Args {
        struct_size: size_of_args(sys::XLA_FFI_Error_Create_Args_STRUCT_SIZE),
        extension_start: ptr::null_mut(),
        message: message.as_ptr(),
        errc: error.code.to_raw(),
    };
    create(&mut args)
}

/// Converts an error returned by an XLA API call into an [`FfiError`] and destroys it.
///
/// # Safety
/// `error` must be an `XLA_FFI_Error` created by this `api` that nobody else owns.
pub unsafe fn take_error(api: &sys::XLA_FFI_Api, error: *mut sys::XLA_FFI_Error) -> FfiError {
    let (code, message) = error_details(api, error);
    if let Ok(destroy) = api_fn!(api, XLA_FFI_Error_Destroy) {
        let mut args = sys::XLA_FFI_Error_Destroy_Args {
            struct_size: size_of_args(sys::XLA_FFI_Error_Destroy_Args_STRUCT_SIZE),
            extension_start: ptr::null_mut(),
            error,
        };
        destroy(&mut args);
    }
    FfiError::new(code, message)
}

/// The args of the error-details entry as API >= 0.4 declares them
/// (`XLA_FFI_Error_GetDetails_Args`): API 0.3's `XLA_FFI_Error_GetMessage_Args` with the error
/// code appended. The entry sits in the same slot of the function table in every version.
#[repr(C)]
pub(crate) struct ErrorGetDetailsArgs {
    pub(crate) base: sys::XLA_FFI_Error_GetMessage_Args,
    pub(crate) errc: sys::XLA_FFI_Error_Code,
}

/// `XLA_FFI_STRUCT_SIZE(XLA_FFI_Error_GetDetails_Args, errc)`.
pub(crate) const ERROR_GET_DETAILS_ARGS_STRUCT_SIZE: usize =
    std::mem::offset_of!(ErrorGetDetailsArgs, errc)
        + std::mem::size_of::<sys::XLA_FFI_Error_Code>();

/// The code and message of an XLA error. We always pass the larger args struct of API 0.4 and
/// later: their XLA (jaxlib 0.11+) fills in the code; API 0.3's (jaxlib 0.10), which accepts
/// larger args structs, only writes the message and leaves the code as preset, `UNKNOWN`.
unsafe fn error_details(
    api: &sys::XLA_FFI_Api,
    error: *mut sys::XLA_FFI_Error,
) -> (ErrorCode, String) {
    let mut args = ErrorGetDetailsArgs {
        base: sys::XLA_FFI_Error_GetMessage_Args {
            struct_size: ERROR_GET_DETAILS_ARGS_STRUCT_SIZE,
            extension_start: ptr::null_mut(),
            error,
            message: ptr::null(),
        },
        errc: sys::XLA_FFI_Error_Code_UNKNOWN,
    };
    if let Ok(get) = api_fn!(api, XLA_FFI_Error_GetMessage) {
        get(ptr::addr_of_mut!(args).cast());
    }
    (
        ErrorCode::from_raw(args.errc),
        message_text(args.base.message),
    )
}

unsafe fn message_text(message: *const std::ffi::c_char) -> String {
    if message.is_null() {
        "XLA reported an error without a message".to_owned()
    } else {
        CStr::from_ptr(message).to_string_lossy().into_owned()
    }
}

/// Turns the return value of an XLA API call into a `Result`.
unsafe fn check(api: &sys::XLA_FFI_Api, error: *mut sys::XLA_FFI_Error) -> Result<(), FfiError> {
    if error.is_null() {
        Ok(())
    } else {
        Err(take_error(api, error))
    }
}

/// The platform stream of this call (a `CUstream` on the CUDA platform).
///
/// # Safety
/// `api` and `ctx` must be the ones of the live call frame.
pub unsafe fn stream_get(
    api: *const sys::XLA_FFI_Api,
    ctx: *mut sys::XLA_FFI_ExecutionContext,
) -> Result<*mut c_void, FfiError> {
    let api = api_ref(api)?;
    let get = api_fn!(api, XLA_FFI_Stream_Get)?;
    let mut args = sys::XLA_FFI_Stream_Get_Args {
        struct_size: size_of_args(sys::XLA_FFI_Stream_Get_Args_STRUCT_SIZE),
        extension_start: ptr::null_mut(),
        ctx,
        stream: ptr::null_mut(),
    };
    check(api, get(&mut args))?;
    Ok(args.stream)
}

/// Allocates `size` bytes of device memory from XLA's allocator (GPU platforms only; XLA accepts
/// power-of-two alignments up to 16).
///
/// # Safety
/// `api` and `ctx` must be the ones of the live call frame.
pub unsafe fn device_memory_allocate(
    api: *const sys::XLA_FFI_Api,
    ctx: *mut sys::XLA_FFI_ExecutionContext,
    size: usize,
    alignment: usize,
) -> Result<*mut c_void, FfiError> {
    let api = api_ref(api)?;
    let allocate = api_fn!(api, XLA_FFI_DeviceMemory_Allocate)?;
    let mut args = sys::XLA_FFI_DeviceMemory_Allocate_Args {
        struct_size: size_of_args(sys::XLA_FFI_DeviceMemory_Allocate_Args_STRUCT_SIZE),
        extension_start: ptr::null_mut(),
        ctx,
        size,
        alignment,
        data: ptr::null_mut(),
    };
    check(api, allocate(&mut args))?;
    Ok(args.data)
}

/// Frees memory from [`device_memory_allocate`].
///
/// # Safety
/// `api` and `ctx` must be the ones of the live call frame; `data`/`size` one live allocation.
pub unsafe fn device_memory_free(
    api: *const sys::XLA_FFI_Api,
    ctx: *mut sys::XLA_FFI_ExecutionContext,
    size: usize,
    data: *mut c_void,
) -> Result<(), FfiError> {
    let api = api_ref(api)?;
    let free = api_fn!(api, XLA_FFI_DeviceMemory_Free)?;
    let mut args = sys::XLA_FFI_DeviceMemory_Free_Args {
        struct_size: size_of_args(sys::XLA_FFI_DeviceMemory_Free_Args_STRUCT_SIZE),
        extension_start: ptr::null_mut(),
        ctx,
        size,
        data,
    };
    check(api, free(&mut args))
}

/// Registers a user type with XLA under `name`. `type_id` is in-out: `XLA_FFI_UNKNOWN_TYPE_ID`
/// (0) asks XLA for a new id, which is written back.
///
/// # Safety
/// `api` must be null or point to a live `XLA_FFI_Api`; `info` must stay valid (its deleter
/// callable) for as long as XLA may destroy objects of this type, i.e. the process.
pub unsafe fn type_register(
    api: *const sys::XLA_FFI_Api,
    name: &str,
    type_id: &mut sys::XLA_FFI_TypeId,
    info: &'static sys::XLA_FFI_TypeInfo,
) -> Result<(), FfiError> {
    let api = api_ref(api)?;
    let register = api_fn!(api, XLA_FFI_Type_Register)?;
    let mut args = sys::XLA_FFI_Type_Register_Args {
        struct_size: size_of_args(sys::XLA_FFI_Type_Register_Args_STRUCT_SIZE),
        extension_start: ptr::null_mut(),
        name: sys::XLA_FFI_ByteSpan {
            ptr: name.as_ptr().cast(),
            len: name.len(),
        },
        type_id,
        type_info: info,
    };
    check(api, register(&mut args))
}

/// Hands `state` (an object of the registered type `type_id`) to XLA as the state of this call
/// site for `stage`; XLA destroys it with the type's deleter when the executable goes away.
///
/// # Safety
/// `api` and `ctx` must be the ones of the live call frame; `state` must be an object the
/// type's deleter may destroy. On error the state was not taken: the caller still owns it.
pub unsafe fn state_set(
    api: *const sys::XLA_FFI_Api,
    ctx: *mut sys::XLA_FFI_ExecutionContext,
    stage: sys::XLA_FFI_ExecutionStage,
    mut type_id: sys::XLA_FFI_TypeId,
    state: *mut c_void,
) -> Result<(), FfiError> {
    let api = api_ref(api)?;
    let set = api_fn!(api, XLA_FFI_State_Set)?;
    let mut args = sys::XLA_FFI_State_Set_Args {
        struct_size: size_of_args(sys::XLA_FFI_State_Set_Args_STRUCT_SIZE),
        extension_start: ptr::null_mut(),
        ctx,
        stage,
        type_id: &mut type_id,
        state,
    };
    check(api, set(&mut args))
}

/// The state stored for `stage` of this call site, which must be of type `type_id`.
///
/// # Safety
/// `api` and `ctx` must be the ones of the live call frame.
pub unsafe fn state_get(
    api: *const sys::XLA_FFI_Api,
    ctx: *mut sys::XLA_FFI_ExecutionContext,
    stage: sys::XLA_FFI_ExecutionStage,
    mut type_id: sys::XLA_FFI_TypeId,
) -> Result<*mut c_void, FfiError> {
    let api = api_ref(api)?;
    let get = api_fn!(api, XLA_FFI_State_Get)?;
    let mut args = sys::XLA_FFI_State_Get_Args {
        struct_size: size_of_args(sys::XLA_FFI_State_Get_Args_STRUCT_SIZE),
        extension_start: ptr::null_mut(),
        ctx,
        stage,
        type_id: &mut type_id,
        state: ptr::null_mut(),
    };
    check(api, get(&mut args))?;
    Ok(args.state)
}
