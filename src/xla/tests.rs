//! Tests against call frames fabricated in memory, laid out as XLA lays them out, with a fake
//! `XLA_FFI_Api` whose errors are boxes we can read back. Fabricated memory is leaked: it keeps
//! the helpers short, and a test process is short-lived.

use std::alloc::{alloc, dealloc, Layout};
use std::cell::{Cell, RefCell};
use std::ffi::{c_void, CStr, CString};
use std::ptr;

use super::*;

// ---------------------------------------------------------------------------------------------
// Fake XLA: errors, stream, device memory

struct FakeError {
    code: sys::XLA_FFI_Error_Code,
    message: CString,
}

thread_local! {
    static DESTROYED_ERRORS: Cell<usize> = const { Cell::new(0) };
    /// (address, size, alignment) of each block the fake allocator handed out.
    static LIVE_ALLOCATIONS: RefCell<Vec<(usize, usize, usize)>> = const { RefCell::new(Vec::new()) };
}

fn leak<T>(value: T) -> *mut T {
    Box::into_raw(Box::new(value))
}

fn leak_slice<T: Clone>(values: &[T]) -> *mut T {
    Box::leak(values.to_vec().into_boxed_slice()).as_mut_ptr()
}

fn fake_error(code: sys::XLA_FFI_Error_Code, message: &str) -> *mut sys::XLA_FFI_Error {
    leak(FakeError {
        code,
        message: CString::new(message).unwrap(),
    })
    .cast()
}

unsafe extern "C" fn fake_error_create(
    args: *mut sys::XLA_FFI_Error_Create_Args,
) -> *mut sys::XLA_FFI_Error {
    let args = &*args;
    assert!(args.struct_size >= sys::XLA_FFI_Error_Create_Args_STRUCT_SIZE as usize);
    fake_error(args.errc, CStr::from_ptr(args.message).to_str().unwrap())
}

/// Like XLA >= 0.4 (jaxlib 0.11+): `Error_GetDetails` writes the message and, when the args
/// struct is large enough, the code.
unsafe extern "C" fn fake_error_details(args: *mut sys::XLA_FFI_Error_GetMessage_Args) {
    let error = &*(*args).error.cast::<FakeError>();
    (*args).message = error.message.as_ptr();
    if (*args).struct_size >= result::ERROR_GET_DETAILS_ARGS_STRUCT_SIZE {
        (*args.cast::<result::ErrorGetDetailsArgs>()).errc = error.code;
    }
}

/// Like XLA 0.3 (jaxlib 0.10): `Error_GetMessage` only writes the message.
unsafe extern "C" fn fake_error_message_only(args: *mut sys::XLA_FFI_Error_GetMessage_Args) {
    (*args).message = (*(*args).error.cast::<FakeError>()).message.as_ptr();
}

unsafe extern "C" fn fake_error_destroy(args: *mut sys::XLA_FFI_Error_Destroy_Args) {
    drop(Box::from_raw((*args).error.cast::<FakeError>()));
    DESTROYED_ERRORS.with(|n| n.set(n.get() + 1));
}

const FAKE_STREAM: usize = 0x5713_ea11;

/// Like XLA: a stream only exists on GPU, which fabricated frames signal with a non-null ctx.
unsafe extern "C" fn fake_stream_get(
    args: *mut sys::XLA_FFI_Stream_Get_Args,
) -> *mut sys::XLA_FFI_Error {
    if (*args).ctx.is_null() {
        return fake_error(
            sys::XLA_FFI_Error_Code_UNIMPLEMENTED,
            "XLA FFI GPU context is not available",
        );
    }
    (*args).stream = FAKE_STREAM as *mut c_void;
    ptr::null_mut()
}

unsafe extern "C" fn fake_allocate(
    args: *mut sys::XLA_FFI_DeviceMemory_Allocate_Args,
) -> *mut sys::XLA_FFI_Error {
    let args = &mut *args;
    let data = alloc(Layout::from_size_align(args.size, args.alignment).unwrap());
    LIVE_ALLOCATIONS.with(|live| {
        live.borrow_mut()
            .push((data as usize, args.size, args.alignment))
    });
    args.data = data.cast();
    ptr::null_mut()
}

unsafe extern "C" fn fake_free(
    args: *mut sys::XLA_FFI_DeviceMemory_Free_Args,
) -> *mut sys::XLA_FFI_Error {
    let args = &*args;
    let (_, size, alignment) = LIVE_ALLOCATIONS.with(|live| {
        let mut live = live.borrow_mut();
        let at = live
            .iter()
            .position(|&(p, ..)| p == args.data as usize)
            .expect("freeing a live block");
        live.remove(at)
    });
    assert_eq!(size, args.size, "freed with the allocated size");
    dealloc(
        args.data.cast(),
        Layout::from_size_align(size, alignment).unwrap(),
    );
    ptr::null_mut()
}

fn fake_api() -> *const sys::XLA_FFI_Api {
    // SAFETY: the table is integers, pointers and optional fn pointers: all-zero is valid.
    let mut api: sys::XLA_FFI_Api = unsafe { std::mem::zeroed() };
    api.struct_size = std::mem::size_of::<sys::XLA_FFI_Api>();
    api.XLA_FFI_Error_Create = Some(fake_error_create);
    api.XLA_FFI_Error_GetMessage = Some(fake_error_details);
    api.XLA_FFI_Error_Destroy = Some(fake_error_destroy);
    api.XLA_FFI_Stream_Get = Some(fake_stream_get);
    api.XLA_FFI_DeviceMemory_Allocate = Some(fake_allocate);
    api.XLA_FFI_DeviceMemory_Free = Some(fake_free);
    leak(api)
}

/// Reads back (and frees) an error returned by `dispatch`.
fn take(error: *mut sys::XLA_FFI_Error) -> (ErrorCode, String) {
    assert!(!error.is_null(), "expected an error, got success");
    // SAFETY: every error in these tests is a `FakeError` made by `fake_error`.
    let error = unsafe { Box::from_raw(error.cast::<FakeError>()) };
    (
        ErrorCode::from_raw(error.code),
        error.message.to_str().unwrap().to_owned(),
    )
}

// ---------------------------------------------------------------------------------------------
// Fabricated call frames

type Attr = (sys::XLA_FFI_AttrType, *mut c_void);

fn buffer<T: Clone>(dtype: DataType, dims: &[i64], data: &[T]) -> *mut c_void {
    leak(sys::XLA_FFI_Buffer {
        struct_size: sys::XLA_FFI_Buffer_STRUCT_SIZE as usize,
        extension_start: ptr::null_mut(),
        dtype: dtype.to_raw(),
        data: leak_slice(data).cast(),
        rank: dims.len() as i64,
        dims: leak_slice(dims),
    })
    .cast()
}

fn scalar<T>(dtype: DataType, value: T) -> Attr {
    let raw = sys::XLA_FFI_Scalar {
        dtype: dtype.to_raw(),
        value: leak(value).cast(),
    };
    (sys::XLA_FFI_AttrType_SCALAR, leak(raw).cast())
}

fn span(bytes: &[u8]) -> sys::XLA_FFI_ByteSpan {
    sys::XLA_FFI_ByteSpan {
        ptr: leak_slice(bytes).cast_const().cast(),
        len: bytes.len(),
    }
}

fn string(bytes: &[u8]) -> Attr {
    (sys::XLA_FFI_AttrType_STRING, leak(span(bytes)).cast())
}

fn array<T: Clone>(dtype: DataType, values: &[T]) -> Attr {
    let raw = sys::XLA_FFI_Array {
        dtype: dtype.to_raw(),
        size: values.len(),
        data: leak_slice(values).cast(),
    };
    (sys::XLA_FFI_AttrType_ARRAY, leak(raw).cast())
}

fn attrs(entries: &[(&str, Attr)]) -> sys::XLA_FFI_Attrs {
    let types: Vec<_> = entries.iter().map(|(_, (kind, _))| *kind).collect();
    let names: Vec<_> = entries
        .iter()
        .map(|(name, _)| leak(span(name.as_bytes())))
        .collect();
    let values: Vec<_> = entries.iter().map(|(_, (_, value))| *value).collect();
    sys::XLA_FFI_Attrs {
        struct_size: sys::XLA_FFI_Attrs_STRUCT_SIZE as usize,
        extension_start: ptr::null_mut(),
        size: entries.len() as i64,
        types: leak_slice(&types),
        names: leak_slice(&names),
        attrs: leak_slice(&values),
    }
}

fn dict(entries: &[(&str, Attr)]) -> Attr {
    (
        sys::XLA_FFI_AttrType_DICTIONARY,
        leak(attrs(entries)).cast(),
    )
}

/// A GPU-like execution frame (non-null ctx) on the fake api.
fn frame(
    args: &[*mut c_void],
    rets: &[*mut c_void],
    attributes: &[(&str, Attr)],
) -> *mut sys::XLA_FFI_CallFrame {
    let mut frame = sys::XLA_FFI_CallFrame {
        struct_size: std::mem::size_of::<sys::XLA_FFI_CallFrame>(),
        api: fake_api(),
        ctx: leak(0u64).cast(),
        stage: sys::XLA_FFI_ExecutionStage_EXECUTE,
        attrs: attrs(attributes),
        ..Default::default()
    };
    frame.args.struct_size = sys::XLA_FFI_Args_STRUCT_SIZE as usize;
    frame.args.size = args.len() as i64;
    frame.args.types = leak_slice(&vec![sys::XLA_FFI_ArgType_BUFFER; args.len()]);
    frame.args.args = leak_slice(args);
    frame.rets.struct_size = sys::XLA_FFI_Rets_STRUCT_SIZE as usize;
    frame.rets.size = rets.len() as i64;
    frame.rets.types = leak_slice(&vec![sys::XLA_FFI_RetType_BUFFER; rets.len()]);
    frame.rets.rets = leak_slice(rets);
    leak(frame)
}

/// Runs `handler` through `dispatch` and returns its error, if any.
fn run(
    frame: *mut sys::XLA_FFI_CallFrame,
    handler: impl FnOnce(&CallFrame<'_>) -> Result<(), FfiError>,
) -> Option<(ErrorCode, String)> {
    // SAFETY: fabricated frames are complete and leaked, so live for the call.
    let error = unsafe { dispatch(frame, HandlerTraits::default(), handler) };
    (!error.is_null()).then(|| take(error))
}

/// Runs `check` on the attributes of a frame carrying `entries`.
fn with_attrs(
    entries: &[(&str, Attr)],
    check: impl FnOnce(Attrs<'_>) -> Result<(), FfiError>,
) -> Option<(ErrorCode, String)> {
    run(frame(&[], &[], entries), |call| check(call.attrs()?))
}

/// The frame XLA sends when it asks a handler for its metadata (no api, no arguments), and the
/// metadata the handler should fill; `traits` starts non-zero to see it cleared.
fn metadata_frame(
    metadata_size: usize,
) -> (*mut sys::XLA_FFI_CallFrame, *const sys::XLA_FFI_Metadata) {
    let mut metadata = sys::XLA_FFI_Metadata {
        struct_size: metadata_size,
        traits: 0xff,
        ..Default::default()
    };
    metadata.api_version.struct_size = sys::XLA_FFI_Api_Version_STRUCT_SIZE as usize;
    let metadata = leak(metadata);
    let mut extension = sys::XLA_FFI_Metadata_Extension {
        metadata,
        ..Default::default()
    };
    extension.extension_base.struct_size = sys::XLA_FFI_Metadata_Extension_STRUCT_SIZE as usize;
    extension.extension_base.type_ = sys::XLA_FFI_Extension_Metadata;
    let frame = sys::XLA_FFI_CallFrame {
        struct_size: sys::XLA_FFI_CallFrame_STRUCT_SIZE as usize,
        extension_start: leak(extension).cast(),
        ..Default::default()
    };
    (leak(frame), metadata)
}

fn full_metadata_frame() -> (*mut sys::XLA_FFI_CallFrame, *const sys::XLA_FFI_Metadata) {
    metadata_frame(sys::XLA_FFI_Metadata_STRUCT_SIZE as usize)
}

/// The message of an expected error.
fn err<T>(result: Result<T, FfiError>) -> String {
    result.map(drop).unwrap_err().message
}

// ---------------------------------------------------------------------------------------------
// Metadata handshake and version

#[test]
fn metadata_handshake_reports_version_and_skips_handler() {
    let (frame, metadata) = full_metadata_frame();
    let mut called = false;
    let error = run(frame, |_| {
        called = true;
        Ok(())
    });
    assert_eq!(error, None);
    assert!(!called, "a metadata request must not run the handler");
    // SAFETY: leaked by `metadata_frame`.
    let metadata = unsafe { &*metadata };
    let version = (
        metadata.api_version.major_version,
        metadata.api_version.minor_version,
    );
    assert_eq!(version, REPORTED_API_VERSION);
    assert!(
        version <= (0, 3),
        "jaxlib 0.10.2 only accepts 0.3, got {version:?}"
    );
    assert_eq!(
        metadata.api_version.struct_size,
        sys::XLA_FFI_Api_Version_STRUCT_SIZE as usize
    );
    assert_eq!(metadata.traits, 0);
}

#[test]
fn metadata_extension_is_found_further_down_the_chain() {
    let (frame, metadata) = full_metadata_frame();
    let mut other = sys::XLA_FFI_Metadata_Extension::default();
    other.extension_base.type_ = 77;
    // SAFETY: `frame` and `metadata` were leaked by `metadata_frame`.
    unsafe {
        other.extension_base.next = (*frame).extension_start;
        (*frame).extension_start = leak(other).cast();
        assert_eq!(run(frame, |_| panic!("handler must not run")), None);
        assert_eq!(
            (*metadata).api_version.minor_version,
            REPORTED_API_VERSION.1
        );
    }
}

#[test]
fn undersized_metadata_is_reported_when_xla_gives_an_api() {
    let (frame, metadata) = metadata_frame(8);
    // SAFETY: `frame` and `metadata` were leaked by `metadata_frame`.
    unsafe { (*frame).api = fake_api() };
    let (code, message) = run(frame, |_| Ok(())).expect("an error");
    assert_eq!(code, ErrorCode::InvalidArgument);
    assert!(message.contains("XLA_FFI_Metadata is 8 bytes"), "{message}");
    assert_eq!(unsafe { (*metadata).traits }, 0xff, "nothing written");
}

#[test]
fn reported_version_is_the_oldest_runtimes() {
    // jaxlib 0.10.2 accepts exactly its own API version, 0.3; newer ones accept 0.3 too.
    assert_eq!(REPORTED_API_VERSION, (0, 3));
    assert_eq!(HEADER_API_VERSION, (0, 3));
}

#[test]
fn null_frame_returns_null_without_calling_handler() {
    assert_eq!(
        run(ptr::null_mut(), |_| panic!("handler must not run")),
        None
    );
}

#[test]
fn undersized_call_frame_is_an_error() {
    let frame = frame(&[], &[], &[]);
    // SAFETY: just leaked.
    unsafe { (*frame).struct_size = 16 };
    let (code, message) = run(frame, |_| Ok(())).expect("an error");
    assert_eq!(code, ErrorCode::InvalidArgument);
    assert!(
        message.starts_with("XLA_FFI_CallFrame is 16 bytes"),
        "{message}"
    );
}

// ---------------------------------------------------------------------------------------------
// Buffers

/// A shape whose size wraps (or is negative) is refused where the buffer is decoded, so that no
/// size computed from it later can wrap.
#[test]
fn buffers_whose_size_overflows_are_refused() {
    for dims in [
        &[1i64 << 62, 4][..],
        &[-1, 4],
        &[i64::MAX],
        &[1 << 31, 1 << 31, 1 << 2],
    ] {
        let x = buffer(DataType::F64, dims, &[0.0f64]);
        let (code, message) =
            run(frame(&[x], &[], &[]), |call| call.arg(0).map(drop)).expect("an error");
        assert_eq!(code, ErrorCode::InvalidArgument);
        assert!(
            message.starts_with("argument 0 has an invalid shape"),
            "{dims:?}: {message}"
        );
    }
    let empty = buffer(DataType::F64, &[0, i64::MAX], &[0.0f64]);
    let error = run(frame(&[empty], &[], &[]), |call| {
        assert_eq!(call.arg(0)?.size_bytes(), 0);
        Ok(())
    });
    assert_eq!(error, None);
}

#[test]
fn buffers_decode_with_dtype_dims_and_data() {
    let x = buffer(DataType::F32, &[2, 3], &[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let t0 = buffer(DataType::S32, &[], &[7i32]);
    let out = buffer(DataType::F64, &[4], &[0.0f64; 4]);
    let frame = frame(&[x, t0], &[out], &[]);
    let error = run(frame, |call| {
        assert_eq!((call.num_args(), call.num_rets()), (2, 1));
        let x = call.arg(0)?;
        assert_eq!(
            (x.role, x.dtype, x.dims),
            (BufferRole::Argument, DataType::F32, &[2i64, 3][..])
        );
        assert_eq!((x.rank(), x.element_count(), x.size_bytes()), (2, 6, 24));
        x.expect("x", DataType::F32, &[2, 3])?;
        assert_eq!(
            unsafe { x.as_slice::<f32>()? },
            &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
        );
        let t0 = call.arg(1)?;
        assert_eq!(
            (t0.rank(), t0.element_count(), t0.to_string()),
            (0, 1, "int32[]".to_owned())
        );
        assert_eq!(unsafe { t0.as_slice::<i32>()? }, &[7]);
        let out = call.ret(0)?;
        assert_eq!(out.role, BufferRole::Result);
        unsafe { out.as_mut_slice::<f64>()? }.copy_from_slice(&[1.5, 2.5, 3.5, 4.5]);
        assert_eq!(call.args()?.len(), 2);
        assert_eq!(call.rets()?.len(), 1);
        Ok(())
    });
    assert_eq!(error, None);
    // SAFETY: `out` is the leaked XLA_FFI_Buffer written above.
    let written = unsafe {
        std::slice::from_raw_parts((*out.cast::<sys::XLA_FFI_Buffer>()).data.cast::<f64>(), 4)
    };
    assert_eq!(written, &[1.5, 2.5, 3.5, 4.5]);
}

#[test]
fn dtype_mismatch_names_the_argument() {
    let v = buffer(DataType::F64, &[1000], &[0.0f64; 1000]);
    let frame = frame(&[v], &[], &[]);
    let (code, message) = run(frame, |call| {
        call.arg(0)?.expect("v", DataType::F32, &[1000])
    })
    .expect("an error");
    assert_eq!(code, ErrorCode::InvalidArgument);
    assert_eq!(
        message,
        "argument 'v': expected float32[1000], got float64[1000]"
    );
}

#[test]
fn shape_mismatch_names_the_result() {
    let count = buffer(DataType::S32, &[9], &[0i32; 9]);
    let frame = frame(&[], &[count], &[]);
    let (_, message) = run(frame, |call| {
        call.ret(0)?.expect("spike_count", DataType::S32, &[10])
    })
    .expect("an error");
    assert_eq!(
        message,
        "result 'spike_count': expected int32[10], got int32[9]"
    );
}

#[test]
fn half_precision_buffers_read_as_half_types() {
    // Raw bits as XLA stores them: 1.5, -2 in float16 and 1.5, -5 in bfloat16.
    let h = buffer(DataType::F16, &[2], &[0x3e00u16, 0xc000]);
    let b = buffer(DataType::BF16, &[2], &[0x3fc0u16, 0xc0a0]);
    let frame = frame(&[h, b], &[], &[]);
    let error = run(frame, |call| {
        let h = unsafe { call.arg(0)?.as_slice::<half::f16>()? };
        let b = unsafe { call.arg(1)?.as_slice::<half::bf16>()? };
        assert_eq!(
            h.iter().map(|x| x.to_f64()).collect::<Vec<_>>(),
            [1.5, -2.0]
        );
        assert_eq!(
            b.iter().map(|x| x.to_f64()).collect::<Vec<_>>(),
            [1.5, -5.0]
        );
        let wrong = unsafe { call.arg(0)?.as_slice::<half::bf16>() }.unwrap_err();
        assert_eq!(wrong.message, "expected bfloat16, got float16");
        Ok(())
    });
    assert_eq!(error, None);
}

#[test]
fn buffer_access_errors() {
    let x = buffer(DataType::F64, &[2], &[0.0f64; 2]);
    let frame = frame(&[x], &[], &[]);
    let error = run(frame, |call| {
        let out_of_range = call.arg(3).unwrap_err();
        assert_eq!(
            out_of_range.message,
            "argument 3 requested but the call has 1 arguments"
        );
        assert!(call.ret(0).is_err());
        let wrong_type = unsafe { call.arg(0)?.as_slice::<f32>() }.unwrap_err();
        assert_eq!(wrong_type.message, "expected float32, got float64");
        let dtype_only = call.arg(0)?.expect_dtype("w", DataType::S64).unwrap_err();
        assert_eq!(
            dtype_only.message,
            "argument 'w': expected int64, got float64[2]"
        );
        Ok(())
    });
    assert_eq!(error, None);
}

// ---------------------------------------------------------------------------------------------
// Attributes

#[test]
fn every_scalar_dtype_decodes() {
    let entries = [
        ("pred", scalar(DataType::Pred, true)),
        ("s8", scalar(DataType::S8, -8i8)),
        ("s16", scalar(DataType::S16, -16i16)),
        ("s32", scalar(DataType::S32, -32i32)),
        ("s64", scalar(DataType::S64, -64i64)),
        ("u8", scalar(DataType::U8, 8u8)),
        ("u16", scalar(DataType::U16, 16u16)),
        ("u32", scalar(DataType::U32, 32u32)),
        ("u64", scalar(DataType::U64, 64u64)),
        ("f16", scalar(DataType::F16, 0x3e00u16)),
        ("bf16", scalar(DataType::BF16, 0x3fc0u16)),
        ("f32", scalar(DataType::F32, 0.25f32)),
        ("f64", scalar(DataType::F64, -0.1f64)),
        ("c64", scalar(DataType::C64, [1.0f32, -1.0])),
        ("c128", scalar(DataType::C128, [2.0f64, -2.0])),
        ("f8", scalar(DataType::F8E4M3FN, 0x38u8)),
    ];
    let error = with_attrs(&entries, |attrs| {
        assert_eq!(attrs.len(), entries.len());
        let expected = [
            Scalar::Pred(true),
            Scalar::S8(-8),
            Scalar::S16(-16),
            Scalar::S32(-32),
            Scalar::S64(-64),
            Scalar::U8(8),
            Scalar::U16(16),
            Scalar::U32(32),
            Scalar::U64(64),
            Scalar::F16(half::f16::from_bits(0x3e00)),
            Scalar::BF16(half::bf16::from_bits(0x3fc0)),
            Scalar::F32(0.25),
            Scalar::F64(-0.1),
            Scalar::C64([1.0, -1.0]),
            Scalar::C128([2.0, -2.0]),
            Scalar::Other(DataType::F8E4M3FN, 0x38),
        ];
        for ((name, _), want) in entries.iter().zip(expected) {
            match attrs.get(name) {
                Some(AttrValue::Scalar(got)) => assert_eq!(got, want, "{name}"),
                other => panic!("{name}: {other:?}"),
            }
        }
        let widths = [
            ("s8", -8),
            ("s16", -16),
            ("s32", -32),
            ("s64", -64),
            ("u8", 8),
            ("u16", 16),
            ("u32", 32),
            ("u64", 64),
        ];
        for (name, want) in widths {
            assert_eq!(attrs.get_i64(name)?, want, "any integer width: {name}");
        }
        assert_eq!(attrs.get_f64("f16")?, 1.5);
        assert_eq!(attrs.get_f64("bf16")?, 1.5);
        assert_eq!(attrs.get_f64("f32")?, 0.25);
        assert_eq!(attrs.get_f64("f64")?, -0.1);
        assert_eq!(
            attrs.get_f64("s64")?,
            -64.0,
            "an int where a float was meant"
        );
        assert!(attrs.get_bool("pred")?);
        assert_eq!(attrs.get_usize("u16")?, 16);
        Ok(())
    });
    assert_eq!(error, None);
}

#[test]
fn strings_arrays_and_nested_dicts_decode() {
    let entries = [
        ("spec", string(b"{\"dt\": 0.1}")),
        ("empty", string(b"")),
        ("offsets", array(DataType::S64, &[1i64, -2, 3])),
        ("weights", array(DataType::F32, &[0.5f32, 1.5])),
        ("mask", array(DataType::Pred, &[true, false])),
        ("none", array::<f64>(DataType::F64, &[])),
        (
            "cfg",
            dict(&[
                ("method", string(b"rk4")),
                ("steps", scalar(DataType::S64, 100i64)),
                (
                    "inner",
                    dict(&[
                        ("tau", scalar(DataType::F64, 10.0f64)),
                        ("ids", array(DataType::S32, &[4i32, 5])),
                    ]),
                ),
            ]),
        ),
    ];
    let error = with_attrs(&entries, |attrs| {
        assert_eq!(attrs.get_str("spec")?, "{\"dt\": 0.1}");
        assert_eq!(attrs.get_bytes("empty")?, b"");
        assert_eq!(attrs.get_slice::<i64>("offsets")?, &[1, -2, 3]);
        assert_eq!(attrs.get_slice::<f32>("weights")?, &[0.5, 1.5]);
        assert_eq!(attrs.get_slice::<bool>("mask")?, &[true, false]);
        let none = attrs.get_array("none")?;
        assert_eq!(
            (none.dtype(), none.len(), none.is_empty()),
            (DataType::F64, 0, true)
        );
        assert_eq!(none.as_slice::<f64>()?, &[] as &[f64]);
        let cfg = attrs.get_dict("cfg")?;
        assert_eq!(
            (cfg.len(), cfg.get_str("method")?, cfg.get_i64("steps")?),
            (3, "rk4", 100)
        );
        let inner = cfg.get_dict("inner")?;
        assert_eq!(inner.get_f64("tau")?, 10.0);
        assert_eq!(inner.get_slice::<i32>("ids")?, &[4, 5]);
        assert!(matches!(attrs.get("cfg"), Some(AttrValue::Dict(d)) if d.contains("inner")));
        assert_eq!(
            attrs.names(),
            ["spec", "empty", "offsets", "weights", "mask", "none", "cfg"]
        );
        let debug = format!("{attrs:?}");
        assert!(
            debug.contains("\"method\": \"rk4\"") && debug.contains("\"ids\": int32[2]"),
            "{debug}"
        );
        Ok(())
    });
    assert_eq!(error, None);
}

#[test]
fn attribute_errors_name_the_attribute() {
    let entries = [
        ("spec", string(b"lif")),
        ("steps", scalar(DataType::S64, -3i64)),
        ("big", scalar(DataType::U64, u64::MAX)),
        ("dt", scalar(DataType::F64, 0.1f64)),
        ("bad_utf8", string(&[0xff, 0xfe])),
        ("ids", array(DataType::S32, &[1i32])),
        ("weird", (99, leak(0u64).cast())),
    ];
    let error = with_attrs(&entries, |attrs| {
        assert_eq!(
            err(attrs.get_i64("n_inner")),
            "attribute 'n_inner' is missing"
        );
        assert_eq!(
            err(attrs.get_i64("spec")),
            "attribute 'spec': expected an integer scalar, got string"
        );
        assert_eq!(
            err(attrs.get_i64("dt")),
            "attribute 'dt': expected an integer scalar, got float64 scalar"
        );
        assert_eq!(
            err(attrs.get_f64("spec")),
            "attribute 'spec': expected a real scalar, got string"
        );
        assert_eq!(
            err(attrs.get_bool("steps")),
            "attribute 'steps': expected a bool scalar, got int64 scalar"
        );
        assert_eq!(
            err(attrs.get_str("ids")),
            "attribute 'ids': expected a string, got array of int32"
        );
        assert_eq!(
            err(attrs.get_dict("spec")),
            "attribute 'spec': expected a dictionary, got string"
        );
        assert_eq!(
            err(attrs.get_usize("steps")),
            "attribute 'steps': expected a non-negative integer, got -3"
        );
        assert_eq!(
            err(attrs.get_i64("big")),
            "attribute 'big': U64(18446744073709551615) does not fit in int64"
        );
        assert!(
            err(attrs.get_str("bad_utf8")).starts_with("attribute 'bad_utf8': string is not UTF-8")
        );
        assert_eq!(
            err(attrs.get_slice::<i64>("ids")),
            "attribute 'ids': expected an array of int64, got array of int32"
        );
        assert_eq!(
            err(attrs.get_i64("weird")),
            "attribute 'weird': unsupported attribute kind 99"
        );
        assert!(attrs.get("weird").is_none());
        assert!(attrs.get("absent").is_none());
        assert_eq!(attrs.iter().filter(Result::is_err).count(), 1);
        Ok(())
    });
    assert_eq!(error, None);
}

#[test]
fn attribute_error_reaches_xla_with_code_and_message() {
    let entries = [("steps", string(b"ten"))];
    let (code, message) =
        with_attrs(&entries, |attrs| attrs.get_i64("steps").map(drop)).expect("an error");
    assert_eq!(code, ErrorCode::InvalidArgument);
    assert_eq!(
        message,
        "attribute 'steps': expected an integer scalar, got string"
    );
}

// ---------------------------------------------------------------------------------------------
// Errors and panics

#[test]
fn handler_error_becomes_an_xla_error() {
    let frame = frame(&[], &[], &[]);
    let error = run(frame, |_| {
        Err(FfiError::unimplemented("rk4 on cpu").context("sf_lif_cpu"))
    });
    assert_eq!(
        error,
        Some((
            ErrorCode::Unimplemented,
            "sf_lif_cpu: rk4 on cpu".to_owned()
        ))
    );
}

#[test]
fn panicking_handler_becomes_an_internal_error() {
    let (code, message) = run(frame(&[], &[], &[]), |_| panic!("boom {}", 42)).expect("an error");
    assert_eq!(
        (code, message.as_str()),
        (ErrorCode::Internal, "handler panicked: boom 42")
    );
    let (_, message) = run(frame(&[], &[], &[]), |_| panic!("static str")).expect("an error");
    assert_eq!(message, "handler panicked: static str");
    let (_, message) = run(frame(&[], &[], &[]), |_| std::panic::panic_any(7u8)).expect("an error");
    assert_eq!(message, "handler panicked: (non-string panic payload)");
}

#[test]
fn error_without_api_table_returns_null_rather_than_crashing() {
    let frame = frame(&[], &[], &[]);
    // SAFETY: just leaked.
    unsafe { (*frame).api = ptr::null() };
    assert_eq!(
        run(frame, |_| Err(FfiError::internal("nowhere to go"))),
        None
    );
}

#[test]
fn interior_nul_does_not_truncate_message() {
    let (_, message) =
        run(frame(&[], &[], &[]), |_| Err(FfiError::internal("a\0b"))).expect("an error");
    assert_eq!(message, "ab");
}

#[test]
fn error_codes_round_trip() {
    use ErrorCode::*;
    let all = [
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
    ];
    for (i, code) in all.into_iter().enumerate() {
        assert_eq!(code.to_raw(), i as u32 + 1, "{code:?} has abseil's number");
        assert_eq!(ErrorCode::from_raw(code.to_raw()), code);
    }
    assert_eq!(ErrorCode::from_raw(sys::XLA_FFI_Error_Code_OK), Unknown);
    assert_eq!(InvalidArgument.to_string(), "INVALID_ARGUMENT");
    assert_eq!(FfiError::internal("x").to_string(), "INTERNAL: x");
}

// ---------------------------------------------------------------------------------------------
// Through the api table: stream and scratch memory

#[test]
fn stream_comes_from_the_api_table() {
    let error = run(frame(&[], &[], &[]), |call| {
        assert_eq!(call.stream()? as usize, FAKE_STREAM);
        Ok(())
    });
    assert_eq!(error, None);
}

#[test]
fn api_errors_are_converted_and_destroyed() {
    let frame = frame(&[], &[], &[]);
    // SAFETY: just leaked. A null ctx makes the fake behave like XLA:CPU.
    unsafe { (*frame).ctx = ptr::null_mut() };
    let before = DESTROYED_ERRORS.with(Cell::get);
    let error = run(frame, |call| {
        let error = call.stream().unwrap_err();
        assert_eq!(error.message, "XLA FFI GPU context is not available");
        assert_eq!(error.code, ErrorCode::Unimplemented);
        Ok(())
    });
    assert_eq!(error, None);
    assert_eq!(
        DESTROYED_ERRORS.with(Cell::get),
        before + 1,
        "XLA's error is destroyed once"
    );
}

#[test]
fn api_errors_of_an_api_0_3_runtime_keep_their_message() {
    let frame = frame(&[], &[], &[]);
    // SAFETY: just leaked; the table is ours to change. A null ctx makes the stream call fail.
    unsafe {
        (*frame).ctx = ptr::null_mut();
        (*(*frame).api.cast_mut()).XLA_FFI_Error_GetMessage = Some(fake_error_message_only);
    }
    let error = run(frame, |call| {
        let error = call.stream().unwrap_err();
        assert_eq!(error.message, "XLA FFI GPU context is not available");
        assert_eq!(
            error.code,
            ErrorCode::Unknown,
            "API 0.3 has no code to give"
        );
        Ok(())
    });
    assert_eq!(error, None);
}

#[test]
fn scratch_memory_is_freed_on_drop() {
    let error = run(frame(&[], &[], &[]), |call| {
        let scratch = call.scratch(256, 16)?;
        assert_eq!(scratch.size(), 256);
        assert!(!scratch.data().is_null());
        assert_eq!(LIVE_ALLOCATIONS.with(|live| live.borrow().len()), 1);
        drop(scratch);
        assert_eq!(LIVE_ALLOCATIONS.with(|live| live.borrow().len()), 0);
        Ok(())
    });
    assert_eq!(error, None);
}

#[test]
fn short_api_table_is_an_error_not_a_read_past_its_end() {
    let frame = frame(&[], &[], &[]);
    // SAFETY: just leaked; the table is ours to shorten.
    unsafe {
        let api = (*frame).api.cast_mut();
        (*api).struct_size = std::mem::offset_of!(sys::XLA_FFI_Api, XLA_FFI_Stream_Get);
    }
    let error = run(frame, |call| {
        let error = call.stream().unwrap_err();
        assert_eq!(error.code, ErrorCode::Unimplemented);
        assert!(
            error.message.contains("too old to have XLA_FFI_Stream_Get"),
            "{}",
            error.message
        );
        Ok(())
    });
    assert_eq!(error, None);
}

// ---------------------------------------------------------------------------------------------
// Data types, half floats, the exported-symbol macro

#[test]
fn dtype_table_matches_header_and_numpy() {
    for (dtype, raw, name, size) in [
        (DataType::Pred, 1, "bool", 1),
        (DataType::S8, 2, "int8", 1),
        (DataType::S64, 5, "int64", 8),
        (DataType::U32, 8, "uint32", 4),
        (DataType::F16, 10, "float16", 2),
        (DataType::F32, 11, "float32", 4),
        (DataType::F64, 12, "float64", 8),
        (DataType::C64, 15, "complex64", 8),
        (DataType::BF16, 16, "bfloat16", 2),
        (DataType::C128, 18, "complex128", 16),
    ] {
        assert_eq!(
            (dtype.to_raw(), dtype.name(), dtype.size_bytes()),
            (raw, name, size)
        );
        assert_eq!(DataType::from_raw(raw), Some(dtype));
    }
    assert_eq!(DataType::all().count(), 31);
    for dtype in DataType::all() {
        assert_eq!(DataType::from_raw(dtype.to_raw()), Some(dtype));
        assert_eq!(
            DataType::all().filter(|d| d.name() == dtype.name()).count(),
            1
        );
    }
    assert_eq!(DataType::from_raw(sys::XLA_FFI_DataType_INVALID), None);
    assert_eq!(DataType::from_raw(999), None);
}

#[test]
fn half_precision_scalars_convert_exactly() {
    let f16 = |bits| Scalar::F16(half::f16::from_bits(bits)).as_f64().unwrap();
    assert_eq!(
        (f16(0x3c00), f16(0xc000), f16(0x0001), f16(0x7bff)),
        (1.0, -2.0, 2f64.powi(-24), 65504.0)
    );
    assert!(f16(0x7c00).is_infinite() && f16(0x7e00).is_nan());
    let bf16 = |bits| Scalar::BF16(half::bf16::from_bits(bits)).as_f64().unwrap();
    assert_eq!(
        (bf16(0x3f80), bf16(0xc0a0), bf16(0x0001), bf16(0x7f7f)),
        (1.0, -5.0, 2f64.powi(-133), 255.0 * 2f64.powi(120))
    );
    assert!(bf16(0x7f80).is_infinite() && bf16(0x7fc1).is_nan());
    assert_eq!(Scalar::Pred(true).as_f64(), None);
}

// ---------------------------------------------------------------------------------------------
// Handlers with an instance per call site (the instantiate stage)

thread_local! {
    static INSTANTIATED: Cell<usize> = const { Cell::new(0) };
    static DROPPED: Cell<usize> = const { Cell::new(0) };
}

/// What the test handler prepares: the `scale` attribute, counted in and out.
struct Prepared {
    scale: i64,
}

impl Drop for Prepared {
    fn drop(&mut self) {
        DROPPED.with(|n| n.set(n.get() + 1));
    }
}

/// Instantiation reads `scale`.
impl Instance for Prepared {
    fn instantiate(call: &CallFrame<'_>) -> Result<Prepared, FfiError> {
        INSTANTIATED.with(|n| n.set(n.get() + 1));
        Ok(Prepared {
            scale: call.attrs()?.get_i64("scale")?,
        })
    }
}

/// An execution reports the instance's `scale` and the argument count as an error, so the test
/// sees which instance ran.
struct TestHandler;

impl Handler for TestHandler {
    type Instance = Prepared;
    const TRAITS: HandlerTraits = HandlerTraits::COMMAND_BUFFER_COMPATIBLE;

    fn execute(call: &CallFrame<'_>, prepared: &Prepared) -> Result<(), FfiError> {
        Err(FfiError::not_found(format!(
            "{} args, scale {}",
            call.num_args(),
            prepared.scale
        )))
    }
}

/// Another handler, whose instance type differs.
struct OtherHandler;

struct OtherInstance;

impl Instance for OtherInstance {
    fn instantiate(_: &CallFrame<'_>) -> Result<OtherInstance, FfiError> {
        Ok(OtherInstance)
    }
}

impl Handler for OtherHandler {
    type Instance = OtherInstance;
    const TRAITS: HandlerTraits = HandlerTraits::NONE;

    fn execute(_: &CallFrame<'_>, _: &OtherInstance) -> Result<(), FfiError> {
        Ok(())
    }
}

crate::xla_ffi_handler!(fn sf_xla_tests_cpu => TestHandler);

/// XLA's execution state of one call site, as the fake API keeps it: (type id, object) set at
/// instantiation. (One call site per test thread.)
#[derive(Default)]
struct FakeState {
    instantiated: Option<(i64, usize)>,
}

thread_local! {
    static STATE: RefCell<FakeState> = RefCell::new(FakeState::default());
}

/// The deleter of each registered type id, so that a test can destroy a state as XLA does. Types
/// are registered once per process, like XLA's type registry.
static REGISTERED_TYPES: std::sync::Mutex<Vec<(i64, unsafe extern "C" fn(*mut c_void))>> =
    std::sync::Mutex::new(Vec::new());

unsafe extern "C" fn fake_type_register(
    args: *mut sys::XLA_FFI_Type_Register_Args,
) -> *mut sys::XLA_FFI_Error {
    let args = &*args;
    let mut types = REGISTERED_TYPES.lock().unwrap();
    let id = 100 + types.len() as i64;
    (*args.type_id).type_id = id;
    types.push((id, (*args.type_info).deleter.unwrap()));
    ptr::null_mut()
}

unsafe extern "C" fn fake_state_set(
    args: *mut sys::XLA_FFI_State_Set_Args,
) -> *mut sys::XLA_FFI_Error {
    let args = &*args;
    assert_eq!(args.stage, sys::XLA_FFI_ExecutionStage_INSTANTIATE);
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        if s.instantiated.is_some() {
            return fake_error(sys::XLA_FFI_Error_Code_ALREADY_EXISTS, "state already set");
        }
        s.instantiated = Some(((*args.type_id).type_id, args.state as usize));
        ptr::null_mut()
    })
}

unsafe extern "C" fn fake_state_get(
    args: *mut sys::XLA_FFI_State_Get_Args,
) -> *mut sys::XLA_FFI_Error {
    let args = &mut *args;
    STATE.with(|s| match s.borrow().instantiated {
        Some((id, state)) if id == (*args.type_id).type_id => {
            args.state = state as *mut c_void;
            ptr::null_mut()
        }
        Some(_) => fake_error(sys::XLA_FFI_Error_Code_INVALID_ARGUMENT, "wrong type"),
        None => fake_error(sys::XLA_FFI_Error_Code_NOT_FOUND, "state is not set"),
    })
}

/// The fake API with execution state, and a frame of `stage` carrying `scale`. Every frame of a
/// thread shares one API table, as every call of one XLA runtime does (type ids are per runtime).
fn stage_frame(stage: sys::XLA_FFI_ExecutionStage, scale: i64) -> *mut sys::XLA_FFI_CallFrame {
    thread_local! {
        static API: Cell<*const sys::XLA_FFI_Api> = const { Cell::new(std::ptr::null()) };
    }
    let frame = frame(&[], &[], &[("scale", scalar(DataType::S64, scale))]);
    // SAFETY: just leaked, as is the api table it points to.
    unsafe {
        if API.with(Cell::get).is_null() {
            let api = (*frame).api.cast_mut();
            (*api).XLA_FFI_Type_Register = Some(fake_type_register);
            (*api).XLA_FFI_State_Set = Some(fake_state_set);
            (*api).XLA_FFI_State_Get = Some(fake_state_get);
            API.with(|a| a.set(api));
        }
        (*frame).api = API.with(Cell::get);
        (*frame).stage = stage;
    }
    frame
}

/// XLA destroying the executable: the stored state goes to its type's deleter.
fn destroy_state() {
    let (id, state) = STATE
        .with(|s| s.borrow_mut().instantiated.take())
        .expect("a state");
    let deleter = REGISTERED_TYPES
        .lock()
        .unwrap()
        .iter()
        .find(|(t, _)| *t == id)
        .expect("a registered type")
        .1;
    // SAFETY: as XLA calls it, once, on the object stored with this type.
    unsafe { deleter(state as *mut c_void) };
}

#[test]
fn instance_is_prepared_once_and_used_by_every_execution() {
    let instantiate = stage_frame(sys::XLA_FFI_ExecutionStage_INSTANTIATE, 3);
    // SAFETY: fabricated frames, complete and leaked.
    assert!(unsafe { sf_xla_tests_cpu(instantiate) }.is_null());
    for _ in 0..3 {
        // The execution's own attributes say 99: the instance's 3 is what runs.
        let error =
            unsafe { sf_xla_tests_cpu(stage_frame(sys::XLA_FFI_ExecutionStage_EXECUTE, 99)) };
        assert_eq!(
            take(error),
            (ErrorCode::NotFound, "0 args, scale 3".to_owned())
        );
    }
    assert_eq!(INSTANTIATED.with(Cell::get), 1);
    // A handler with another instance type is refused the state, not handed it.
    let error = run_stage_of::<OtherHandler>(sys::XLA_FFI_ExecutionStage_EXECUTE);
    assert!(error.unwrap().1.contains("belongs to another handler"));
    assert_eq!(DROPPED.with(Cell::get), 0);
    destroy_state();
    assert_eq!(
        DROPPED.with(Cell::get),
        1,
        "XLA's deleter drops the instance"
    );
}

fn run_stage_of<H: Handler>(stage: sys::XLA_FFI_ExecutionStage) -> Option<(ErrorCode, String)> {
    // SAFETY: a fabricated frame, complete and leaked.
    let error = unsafe { dispatch_handler::<H>(stage_frame(stage, 5)) };
    (!error.is_null()).then(|| take(error))
}

#[test]
fn execution_without_an_instance_prepares_its_own() {
    let error = run_stage_of::<TestHandler>(sys::XLA_FFI_ExecutionStage_EXECUTE);
    assert_eq!(error, Some((ErrorCode::NotFound, "0 args, scale 5".into())));
    assert_eq!(INSTANTIATED.with(Cell::get), 1);
    assert_eq!(DROPPED.with(Cell::get), 1, "and drops it after the call");
    // Stages it is not registered for do nothing.
    assert_eq!(
        run_stage_of::<TestHandler>(sys::XLA_FFI_ExecutionStage_PREPARE),
        None
    );
    assert_eq!(INSTANTIATED.with(Cell::get), 1);
}

#[test]
fn instantiation_errors_reach_xla_and_store_nothing() {
    let frame = stage_frame(sys::XLA_FFI_ExecutionStage_INSTANTIATE, 0);
    // SAFETY: just leaked; drop the attribute the handler needs.
    unsafe { (*frame).attrs.size = 0 };
    let error = unsafe { sf_xla_tests_cpu(frame) };
    assert_eq!(
        take(error),
        (
            ErrorCode::InvalidArgument,
            "attribute 'scale' is missing".to_owned()
        )
    );
    assert!(STATE.with(|s| s.borrow().instantiated.is_none()));
}

#[test]
fn metadata_carries_the_handler_traits() {
    let (frame, metadata) = full_metadata_frame();
    // SAFETY: fabricated frames as above.
    unsafe {
        assert!(sf_xla_tests_cpu(frame).is_null());
        assert_eq!(
            (*metadata).api_version.minor_version,
            REPORTED_API_VERSION.1
        );
        assert_eq!(
            (*metadata).traits,
            HandlerTraits::COMMAND_BUFFER_COMPATIBLE.bits()
        );
        assert_ne!((*metadata).traits, 0);
    }
    let (frame, metadata) = full_metadata_frame();
    // SAFETY: as above.
    unsafe {
        assert!(dispatch_handler::<OtherHandler>(frame).is_null());
        assert_eq!((*metadata).traits, 0);
    }
}
