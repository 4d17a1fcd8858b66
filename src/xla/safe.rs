//! Types a handler holds while XLA keeps the call frame alive: the frame itself, its buffers and
//! its attributes, each decoding from the raw C structs with checks and errors that name the
//! argument or attribute at fault.

use std::ffi::c_void;
use std::fmt;
use std::marker::PhantomData;
use std::slice;

use half::{bf16, f16};

use super::result::{self, FfiError};
use super::sys;

// ---------------------------------------------------------------------------------------------
// Data types

/// Element type of a buffer, scalar or array (`XLA_FFI_DataType`, i.e. `xla::PrimitiveType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DataType {
    Pred,
    S1,
    S2,
    S4,
    S8,
    S16,
    S32,
    S64,
    U1,
    U2,
    U4,
    U8,
    U16,
    U32,
    U64,
    F16,
    F32,
    F64,
    BF16,
    C64,
    C128,
    Token,
    F8E5M2,
    F8E3M4,
    F8E4M3,
    F8E4M3FN,
    F8E4M3B11FNUZ,
    F8E5M2FNUZ,
    F8E4M3FNUZ,
    F4E2M1FN,
    F8E8M0FNU,
}

/// (type, C value, numpy / ml_dtypes name, bytes per element as XLA's `ByteWidth` counts them:
/// sub-byte types take a byte each, a token none).
#[rustfmt::skip]
const DTYPES: [(DataType, sys::XLA_FFI_DataType, &str, usize); 31] = [
    (DataType::Pred, sys::XLA_FFI_DataType_PRED, "bool", 1),
    (DataType::S1, sys::XLA_FFI_DataType_S1, "int1", 1),
    (DataType::S2, sys::XLA_FFI_DataType_S2, "int2", 1),
    (DataType::S4, sys::XLA_FFI_DataType_S4, "int4", 1),
    (DataType::S8, sys::XLA_FFI_DataType_S8, "int8", 1),
    (DataType::S16, sys::XLA_FFI_DataType_S16, "int16", 2),
    (DataType::S32, sys::XLA_FFI_DataType_S32, "int32", 4),
    (DataType::S64, sys::XLA_FFI_DataType_S64, "int64", 8),
    (DataType::U1, sys::XLA_FFI_DataType_U1, "uint1", 1),
    (DataType::U2, sys::XLA_FFI_DataType_U2, "uint2", 1),
    (DataType::U4, sys::XLA_FFI_DataType_U4, "uint4", 1),
    (DataType::U8, sys::XLA_FFI_DataType_U8, "uint8", 1),
    (DataType::U16, sys::XLA_FFI_DataType_U16, "uint16", 2),
    (DataType::U32, sys::XLA_FFI_DataType_U32, "uint32", 4),
    (DataType::U64, sys::XLA_FFI_DataType_U64, "uint64", 8),
    (DataType::F16, sys::XLA_FFI_DataType_F16, "float16", 2),
    (DataType::F32, sys::XLA_FFI_DataType_F32, "float32", 4),
    (DataType::F64, sys::XLA_FFI_DataType_F64, "float64", 8),
    (DataType::BF16, sys::XLA_FFI_DataType_BF16, "bfloat16", 2),
    (DataType::C64, sys::XLA_FFI_DataType_C64, "complex64", 8),
    (DataType::C128, sys::XLA_FFI_DataType_C128, "complex128", 16),
    (DataType::Token, sys::XLA_FFI_DataType_TOKEN, "token", 0),
    (DataType::F8E5M2, sys::XLA_FFI_DataType_F8E5M2, "float8_e5m2", 1),
    (DataType::F8E3M4, sys::XLA_FFI_DataType_F8E3M4, "float8_e3m4", 1),
    (DataType::F8E4M3, sys::XLA_FFI_DataType_F8E4M3, "float8_e4m3", 1),
    (DataType::F8E4M3FN, sys::XLA_FFI_DataType_F8E4M3FN, "float8_e4m3fn", 1),
    (DataType::F8E4M3B11FNUZ, sys::XLA_FFI_DataType_F8E4M3B11FNUZ, "float8_e4m3b11fnuz", 1),
    (DataType::F8E5M2FNUZ, sys::XLA_FFI_DataType_F8E5M2FNUZ, "float8_e5m2fnuz", 1),
    (DataType::F8E4M3FNUZ, sys::XLA_FFI_DataType_F8E4M3FNUZ, "float8_e4m3fnuz", 1),
    (DataType::F4E2M1FN, sys::XLA_FFI_DataType_F4E2M1FN, "float4_e2m1fn", 1),
    (DataType::F8E8M0FNU, sys::XLA_FFI_DataType_F8E8M0FNU, "float8_e8m0fnu", 1),
];

impl DataType {
    fn row(self) -> &'static (DataType, sys::XLA_FFI_DataType, &'static str, usize) {
        DTYPES
            .iter()
            .find(|row| row.0 == self)
            .expect("every dtype has a row")
    }

    /// Every dtype this build knows.
    pub fn all() -> impl Iterator<Item = DataType> {
        DTYPES.iter().map(|row| row.0)
    }

    /// `None` for `INVALID` and for codes newer than this build.
    pub fn from_raw(raw: sys::XLA_FFI_DataType) -> Option<DataType> {
        DTYPES.iter().find(|row| row.1 == raw).map(|row| row.0)
    }

    pub fn to_raw(self) -> sys::XLA_FFI_DataType {
        self.row().1
    }

    /// The numpy (or ml_dtypes) name: `float32`, `int64`, `bool`, `bfloat16`, ...
    pub fn name(self) -> &'static str {
        self.row().2
    }

    pub fn size_bytes(self) -> usize {
        self.row().3
    }

    pub fn is_integer(self) -> bool {
        use DataType::*;
        matches!(
            self,
            S1 | S2 | S4 | S8 | S16 | S32 | S64 | U1 | U2 | U4 | U8 | U16 | U32 | U64
        )
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

fn dtype_of(raw: sys::XLA_FFI_DataType, what: impl fmt::Display) -> Result<DataType, FfiError> {
    DataType::from_raw(raw)
        .ok_or_else(|| FfiError::invalid_argument(format!("{what}: unsupported dtype code {raw}")))
}

mod sealed {
    pub trait Sealed {}
}

/// Rust types whose memory layout is that of one XLA dtype, for typed slice access.
pub trait Element: Copy + sealed::Sealed {
    const DTYPE: DataType;
}

macro_rules! element {
    ($($t:ty => $d:ident),* $(,)?) => {$(
        impl sealed::Sealed for $t {}
        impl Element for $t {
            const DTYPE: DataType = DataType::$d;
        }
    )*};
}

// `bool` relies on XLA storing PRED as one byte holding 0 or 1, which it does. The `half` types
// are `repr(transparent)` over their IEEE / bfloat16 bits, as XLA stores them.
element!(bool => Pred, i8 => S8, i16 => S16, i32 => S32, i64 => S64, u8 => U8, u16 => U16,
         u32 => U32, u64 => U64, f16 => F16, bf16 => BF16, f32 => F32, f64 => F64);

/// `len` elements of `T` at `data`, checking dtype and alignment; empty for a null pointer.
unsafe fn typed<'a, T: Element>(
    dtype: DataType,
    data: *const c_void,
    len: usize,
) -> Result<&'a [T], FfiError> {
    if dtype != T::DTYPE {
        return Err(FfiError::invalid_argument(format!(
            "expected {}, got {dtype}",
            T::DTYPE
        )));
    }
    if len == 0 {
        return Ok(&[]);
    }
    if data.is_null() || !data.cast::<T>().is_aligned() {
        return Err(FfiError::invalid_argument(format!(
            "{dtype} data at {data:p} is null or misaligned"
        )));
    }
    Ok(slice::from_raw_parts(data.cast::<T>(), len))
}

/// A byte span (`ptr` may be null when `len` is 0).
unsafe fn bytes<'a>(span: &sys::XLA_FFI_ByteSpan) -> &'a [u8] {
    if span.ptr.is_null() || span.len == 0 {
        &[]
    } else {
        slice::from_raw_parts(span.ptr.cast::<u8>(), span.len)
    }
}

/// A C array of `len` items (`len` from XLA's `int64_t size`).
unsafe fn items<'a, T>(ptr: *const T, len: i64) -> &'a [T] {
    match usize::try_from(len) {
        Ok(len) if len > 0 && !ptr.is_null() => slice::from_raw_parts(ptr, len),
        _ => &[],
    }
}

// ---------------------------------------------------------------------------------------------
// Buffers

/// Whether a buffer is an input or an output of the call, for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BufferRole {
    Argument,
    Result,
}

/// One argument or result buffer. `data` is device memory on GPU platforms, host memory on CPU.
#[derive(Clone, Copy, Debug)]
pub struct Buffer<'a> {
    pub role: BufferRole,
    pub dtype: DataType,
    pub data: *mut c_void,
    pub dims: &'a [i64],
}

impl<'a> Buffer<'a> {
    /// # Safety
    /// `raw` must be null or point to an `XLA_FFI_Buffer` live for `'a`.
    unsafe fn from_raw(
        raw: *const sys::XLA_FFI_Buffer,
        role: BufferRole,
        index: usize,
    ) -> Result<Buffer<'a>, FfiError> {
        let what = || format!("{role} {index}");
        let raw = raw
            .as_ref()
            .ok_or_else(|| FfiError::invalid_argument(format!("{} is null", what())))?;
        if raw.rank < 0 || (raw.rank > 0 && raw.dims.is_null()) {
            let message = format!("{} has invalid rank {}", what(), raw.rank);
            return Err(FfiError::invalid_argument(message));
        }
        let dtype = DataType::from_raw(raw.dtype).ok_or_else(|| {
            FfiError::invalid_argument(format!("{}: unsupported dtype code {}", what(), raw.dtype))
        })?;
        let dims = items(raw.dims, raw.rank);
        // Checked once here, so that `element_count` and `size_bytes` cannot wrap.
        let bytes = dims
            .iter()
            .try_fold(dtype.size_bytes(), |acc, &d| {
                usize::try_from(d).ok().and_then(|d| acc.checked_mul(d))
            })
            .filter(|&bytes| bytes <= isize::MAX as usize);
        if bytes.is_none() {
            let message = format!("{} has an invalid shape {dims:?}", what());
            return Err(FfiError::invalid_argument(message));
        }
        Ok(Buffer {
            role,
            dtype,
            data: raw.data,
            dims,
        })
    }

    pub fn rank(&self) -> usize {
        self.dims.len()
    }

    /// Product of the dimensions (1 for a scalar). Cannot overflow: the shape was checked when
    /// the buffer was decoded.
    pub fn element_count(&self) -> usize {
        self.dims.iter().map(|&d| d as usize).product()
    }

    pub fn size_bytes(&self) -> usize {
        self.element_count() * self.dtype.size_bytes()
    }

    /// Checks dtype and shape: `argument 'v': expected float32[1000], got float64[1000]`.
    pub fn expect(&self, name: &str, dtype: DataType, dims: &[i64]) -> Result<(), FfiError> {
        if self.dtype == dtype && self.dims == dims {
            return Ok(());
        }
        Err(FfiError::invalid_argument(format!(
            "{} '{name}': expected {}, got {self}",
            self.role,
            Shape(dtype, dims)
        )))
    }

    /// Checks the dtype only: `argument 'v': expected float32, got float64[1000]`.
    pub fn expect_dtype(&self, name: &str, dtype: DataType) -> Result<(), FfiError> {
        if self.dtype == dtype {
            return Ok(());
        }
        Err(FfiError::invalid_argument(format!(
            "{} '{name}': expected {dtype}, got {self}",
            self.role
        )))
    }

    /// The elements as a host slice.
    ///
    /// # Safety
    /// `data` must be host memory (CPU platform) that nothing writes while the slice lives.
    pub unsafe fn as_slice<T: Element>(&self) -> Result<&'a [T], FfiError> {
        typed(self.dtype, self.data, self.element_count())
    }

    /// The elements as a mutable host slice.
    ///
    /// # Safety
    /// `data` must be host memory (CPU platform) that nothing else accesses while the slice lives
    /// (XLA may alias an output with an input).
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn as_mut_slice<T: Element>(&self) -> Result<&'a mut [T], FfiError> {
        let shared = typed::<T>(self.dtype, self.data, self.element_count())?;
        Ok(slice::from_raw_parts_mut(
            shared.as_ptr().cast_mut(),
            shared.len(),
        ))
    }
}

impl fmt::Display for Buffer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Shape(self.dtype, self.dims).fmt(f)
    }
}

impl fmt::Display for BufferRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BufferRole::Argument => "argument",
            BufferRole::Result => "result",
        })
    }
}

/// Prints `float32[2,3]`, numpy-like and compact.
struct Shape<'d>(DataType, &'d [i64]);

impl fmt::Display for Shape<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dims: Vec<String> = self.1.iter().map(i64::to_string).collect();
        write!(f, "{}[{}]", self.0, dims.join(","))
    }
}

// ---------------------------------------------------------------------------------------------
// Call frame

/// The call frame XLA passes to a handler, valid for the duration of the call.
#[derive(Clone, Copy)]
pub struct CallFrame<'a> {
    raw: &'a sys::XLA_FFI_CallFrame,
}

impl<'a> CallFrame<'a> {
    /// # Safety
    /// `frame` must be null or point to a call frame that stays live, unmodified, for `'a`.
    pub unsafe fn from_raw(
        frame: *const sys::XLA_FFI_CallFrame,
    ) -> Result<CallFrame<'a>, FfiError> {
        let raw = frame
            .as_ref()
            .ok_or_else(|| FfiError::internal("XLA passed a null call frame"))?;
        let expected = sys::XLA_FFI_CallFrame_STRUCT_SIZE as usize;
        if raw.struct_size < expected {
            return Err(FfiError::invalid_argument(format!(
                "XLA_FFI_CallFrame is {} bytes, expected at least {expected}: jaxlib is older than this build supports",
                raw.struct_size
            )));
        }
        Ok(CallFrame { raw })
    }

    pub fn raw(&self) -> &'a sys::XLA_FFI_CallFrame {
        self.raw
    }

    pub fn api(&self) -> *const sys::XLA_FFI_Api {
        self.raw.api
    }

    pub fn ctx(&self) -> *mut sys::XLA_FFI_ExecutionContext {
        self.raw.ctx
    }

    /// `XLA_FFI_ExecutionStage_*`; plain handlers are only registered for EXECUTE.
    pub fn stage(&self) -> sys::XLA_FFI_ExecutionStage {
        self.raw.stage
    }

    pub fn num_args(&self) -> usize {
        usize::try_from(self.raw.args.size).unwrap_or(0)
    }

    pub fn num_rets(&self) -> usize {
        usize::try_from(self.raw.rets.size).unwrap_or(0)
    }

    pub fn arg(&self, index: usize) -> Result<Buffer<'a>, FfiError> {
        let args = &self.raw.args;
        // SAFETY: XLA sizes `types` and `args` by `size`; `items` bounds everything by it.
        let (types, ptrs) = unsafe { (items(args.types, args.size), items(args.args, args.size)) };
        buffer_at(
            types,
            ptrs,
            sys::XLA_FFI_ArgType_BUFFER,
            BufferRole::Argument,
            index,
        )
    }

    pub fn ret(&self, index: usize) -> Result<Buffer<'a>, FfiError> {
        let rets = &self.raw.rets;
        // SAFETY: as in `arg`.
        let (types, ptrs) = unsafe { (items(rets.types, rets.size), items(rets.rets, rets.size)) };
        buffer_at(
            types,
            ptrs,
            sys::XLA_FFI_RetType_BUFFER,
            BufferRole::Result,
            index,
        )
    }

    /// All arguments, in order.
    pub fn args(&self) -> Result<Vec<Buffer<'a>>, FfiError> {
        (0..self.num_args()).map(|i| self.arg(i)).collect()
    }

    /// All results, in order.
    pub fn rets(&self) -> Result<Vec<Buffer<'a>>, FfiError> {
        (0..self.num_rets()).map(|i| self.ret(i)).collect()
    }

    pub fn attrs(&self) -> Result<Attrs<'a>, FfiError> {
        Ok(Attrs {
            raw: &self.raw.attrs,
        })
    }

    /// The platform stream (`CUstream` on CUDA); an error on the CPU platform.
    pub fn stream(&self) -> Result<*mut c_void, FfiError> {
        // SAFETY: api and ctx come from the live frame.
        unsafe { result::stream_get(self.raw.api, self.raw.ctx) }
    }

    /// Device scratch memory from XLA's allocator, freed when the [`Scratch`] drops.
    pub fn scratch(&self, size: usize, alignment: usize) -> Result<Scratch<'a>, FfiError> {
        // SAFETY: api and ctx come from the live frame.
        let data =
            unsafe { result::device_memory_allocate(self.raw.api, self.raw.ctx, size, alignment)? };
        Ok(Scratch {
            frame: *self,
            data,
            size,
        })
    }
}

/// `types`/`ptrs` are the parallel arrays of `XLA_FFI_Args` or `XLA_FFI_Rets`; both kinds use 1
/// for "buffer".
fn buffer_at<'a, K: PartialEq + fmt::Display>(
    types: &[K],
    ptrs: &[*mut c_void],
    buffer_kind: K,
    role: BufferRole,
    index: usize,
) -> Result<Buffer<'a>, FfiError> {
    let (Some(kind), Some(&ptr)) = (types.get(index), ptrs.get(index)) else {
        return Err(FfiError::invalid_argument(format!(
            "{role} {index} requested but the call has {} {role}s",
            types.len().min(ptrs.len())
        )));
    };
    if *kind != buffer_kind {
        return Err(FfiError::unimplemented(format!(
            "{role} {index} has unsupported kind {kind}"
        )));
    }
    // SAFETY: XLA points buffer-kind entries at an `XLA_FFI_Buffer` live for the call.
    unsafe { Buffer::from_raw(ptr.cast(), role, index) }
}

/// Device memory borrowed from XLA for the duration of a call.
pub struct Scratch<'a> {
    frame: CallFrame<'a>,
    data: *mut c_void,
    size: usize,
}

impl Scratch<'_> {
    pub fn data(&self) -> *mut c_void {
        self.data
    }

    pub fn size(&self) -> usize {
        self.size
    }
}

impl Drop for Scratch<'_> {
    fn drop(&mut self) {
        // SAFETY: `data`/`size` are the allocation made through this frame.
        let freed = unsafe {
            result::device_memory_free(self.frame.api(), self.frame.ctx(), self.size, self.data)
        };
        if let Err(e) = freed {
            // Drop has no way to report to XLA; losing scratch memory is worth a line on stderr.
            eprintln!("spikeforge: freeing XLA scratch memory failed: {e}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Attributes

/// A dictionary of attributes: the call's own, or a nested dictionary attribute.
#[derive(Clone, Copy)]
pub struct Attrs<'a> {
    raw: &'a sys::XLA_FFI_Attrs,
}

/// One decoded attribute value.
#[derive(Clone, Copy)]
pub enum AttrValue<'a> {
    Scalar(Scalar),
    /// XLA passes strings as byte spans; see [`Attrs::get_str`] for the UTF-8 view.
    String(&'a [u8]),
    Array(ArrayAttr<'a>),
    Dict(Attrs<'a>),
}

/// A scalar attribute. Note what JAX sends: a Python `float` arrives as `F64`, an `int` as `S64`,
/// a `bool` as `Pred`; numpy scalars keep their dtype.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Scalar {
    Pred(bool),
    S8(i8),
    S16(i16),
    S32(i32),
    S64(i64),
    U8(u8),
    U16(u16),
    U32(u32),
    U64(u64),
    F16(f16),
    BF16(bf16),
    F32(f32),
    F64(f64),
    C64([f32; 2]),
    C128([f64; 2]),
    /// Any other one-byte dtype (float8 variants, sub-byte integers), as its raw byte.
    Other(DataType, u8),
}

/// A dense array attribute (`XLA_FFI_Array`).
#[derive(Clone, Copy)]
pub struct ArrayAttr<'a> {
    dtype: DataType,
    len: usize,
    data: *const c_void,
    _borrow: PhantomData<&'a [u8]>,
}

impl<'a> Attrs<'a> {
    pub fn len(&self) -> usize {
        usize::try_from(self.raw.size).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entries in XLA's order (sorted by name), each decoded.
    pub fn iter(&self) -> impl Iterator<Item = Result<(&'a str, AttrValue<'a>), FfiError>> + 'a {
        let this = *self;
        (0..self.len()).map(move |i| {
            let name = this.name_at(i);
            let name = std::str::from_utf8(name).map_err(|_| {
                FfiError::invalid_argument(format!("attribute {i} has a non-UTF-8 name"))
            })?;
            Ok((
                name,
                this.value_at(i)
                    .map_err(|e| e.context(format!("attribute '{name}'")))?,
            ))
        })
    }

    pub fn names(&self) -> Vec<&'a str> {
        self.iter()
            .filter_map(Result::ok)
            .map(|(name, _)| name)
            .collect()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.index_of(name).is_some()
    }

    /// The value, `None` if absent or undecodable (use [`Attrs::try_get`] to see why).
    pub fn get(&self, name: &str) -> Option<AttrValue<'a>> {
        self.try_get(name).ok().flatten()
    }

    /// The value, `Ok(None)` if absent, an error naming the attribute if it can't be decoded.
    pub fn try_get(&self, name: &str) -> Result<Option<AttrValue<'a>>, FfiError> {
        match self.index_of(name) {
            None => Ok(None),
            Some(i) => self
                .value_at(i)
                .map(Some)
                .map_err(|e| e.context(format!("attribute '{name}'"))),
        }
    }

    /// Any integer scalar that fits an `i64` (JAX sends Python ints as `S64`, numpy ints as is).
    pub fn get_i64(&self, name: &str) -> Result<i64, FfiError> {
        let value = self.required(name)?;
        let AttrValue::Scalar(scalar) = value else {
            return Err(mismatch(name, "an integer scalar", &value));
        };
        if !scalar.dtype().is_integer() {
            return Err(mismatch(name, "an integer scalar", &value));
        }
        scalar.as_i64().ok_or_else(|| {
            FfiError::invalid_argument(format!(
                "attribute '{name}': {scalar:?} does not fit in int64"
            ))
        })
    }

    /// A non-negative integer scalar (a count, a length).
    pub fn get_usize(&self, name: &str) -> Result<usize, FfiError> {
        let value = self.get_i64(name)?;
        usize::try_from(value).map_err(|_| {
            FfiError::invalid_argument(format!(
                "attribute '{name}': expected a non-negative integer, got {value}"
            ))
        })
    }

    /// Any float scalar, or an integer one (a Python `1` where `1.0` was meant).
    pub fn get_f64(&self, name: &str) -> Result<f64, FfiError> {
        let value = self.required(name)?;
        match value {
            AttrValue::Scalar(scalar) => scalar.as_f64(),
            _ => None,
        }
        .ok_or_else(|| mismatch(name, "a real scalar", &value))
    }

    pub fn get_bool(&self, name: &str) -> Result<bool, FfiError> {
        match self.required(name)? {
            AttrValue::Scalar(Scalar::Pred(b)) => Ok(b),
            other => Err(mismatch(name, "a bool scalar", &other)),
        }
    }

    pub fn get_bytes(&self, name: &str) -> Result<&'a [u8], FfiError> {
        match self.required(name)? {
            AttrValue::String(bytes) => Ok(bytes),
            other => Err(mismatch(name, "a string", &other)),
        }
    }

    pub fn get_str(&self, name: &str) -> Result<&'a str, FfiError> {
        std::str::from_utf8(self.get_bytes(name)?).map_err(|e| {
            FfiError::invalid_argument(format!("attribute '{name}': string is not UTF-8 ({e})"))
        })
    }

    pub fn get_array(&self, name: &str) -> Result<ArrayAttr<'a>, FfiError> {
        match self.required(name)? {
            AttrValue::Array(array) => Ok(array),
            other => Err(mismatch(name, "an array", &other)),
        }
    }

    /// An array attribute as a slice of `T` (`T` must match its dtype exactly).
    pub fn get_slice<T: Element>(&self, name: &str) -> Result<&'a [T], FfiError> {
        self.get_array(name)?
            .as_slice()
            .map_err(|e| e.context(format!("attribute '{name}'")))
    }

    pub fn get_dict(&self, name: &str) -> Result<Attrs<'a>, FfiError> {
        match self.required(name)? {
            AttrValue::Dict(dict) => Ok(dict),
            other => Err(mismatch(name, "a dictionary", &other)),
        }
    }

    fn required(&self, name: &str) -> Result<AttrValue<'a>, FfiError> {
        self.try_get(name)?
            .ok_or_else(|| FfiError::invalid_argument(format!("attribute '{name}' is missing")))
    }

    /// Linear scan: calls carry a handful of attributes, and a scan does not depend on XLA's
    /// sorting (which fabricated frames in tests need not follow).
    fn index_of(&self, name: &str) -> Option<usize> {
        (0..self.len()).find(|&i| self.name_at(i) == name.as_bytes())
    }

    fn name_at(&self, i: usize) -> &'a [u8] {
        // SAFETY: XLA sizes `names` by `size`, each pointing at a span live for the call.
        unsafe {
            let span = items(self.raw.names, self.raw.size).get(i);
            span.and_then(|span| span.as_ref())
                .map_or(&[], |span| bytes(span))
        }
    }

    fn value_at(&self, i: usize) -> Result<AttrValue<'a>, FfiError> {
        // SAFETY: `types` and `attrs` are sized by `size`; each value pointer is of the struct its
        // type names, live for the call.
        unsafe {
            let kind = items(self.raw.types, self.raw.size).get(i);
            let ptr = items(self.raw.attrs, self.raw.size).get(i);
            let (Some(&kind), Some(&ptr)) = (kind, ptr) else {
                return Err(FfiError::invalid_argument("type or value is missing"));
            };
            if ptr.is_null() {
                return Err(FfiError::invalid_argument("value is null"));
            }
            match kind {
                sys::XLA_FFI_AttrType_SCALAR => {
                    Scalar::from_raw(&*ptr.cast()).map(AttrValue::Scalar)
                }
                sys::XLA_FFI_AttrType_STRING => Ok(AttrValue::String(bytes(&*ptr.cast()))),
                sys::XLA_FFI_AttrType_ARRAY => {
                    ArrayAttr::from_raw(&*ptr.cast()).map(AttrValue::Array)
                }
                sys::XLA_FFI_AttrType_DICTIONARY => {
                    Ok(AttrValue::Dict(Attrs { raw: &*ptr.cast() }))
                }
                other => Err(FfiError::unimplemented(format!(
                    "unsupported attribute kind {other}"
                ))),
            }
        }
    }
}

impl fmt::Debug for Attrs<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for entry in self.iter() {
            match entry {
                Ok((name, value)) => map.entry(&name, &value),
                Err(e) => map.entry(&"<error>", &e.message),
            };
        }
        map.finish()
    }
}

// Hand-written so strings print as text and arrays without their pointer.
impl fmt::Debug for AttrValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttrValue::Scalar(s) => write!(f, "{s:?}"),
            AttrValue::String(b) => write!(f, "{:?}", String::from_utf8_lossy(b)),
            AttrValue::Array(a) => write!(f, "{a:?}"),
            AttrValue::Dict(d) => write!(f, "{d:?}"),
        }
    }
}

impl fmt::Debug for ArrayAttr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.dtype, self.len)
    }
}

fn mismatch(name: &str, expected: &str, got: &AttrValue<'_>) -> FfiError {
    FfiError::invalid_argument(format!(
        "attribute '{name}': expected {expected}, got {}",
        got.describe()
    ))
}

impl AttrValue<'_> {
    /// What the value is, for error messages: `string`, `float64 scalar`, `array of int64`, ...
    pub fn describe(&self) -> String {
        match self {
            AttrValue::Scalar(s) => format!("{} scalar", s.dtype()),
            AttrValue::String(_) => "string".to_owned(),
            AttrValue::Array(a) => format!("array of {}", a.dtype),
            AttrValue::Dict(_) => "dictionary".to_owned(),
        }
    }
}

impl Scalar {
    unsafe fn from_raw(raw: &sys::XLA_FFI_Scalar) -> Result<Scalar, FfiError> {
        let dtype = dtype_of(raw.dtype, "scalar")?;
        let p = raw.value;
        if p.is_null() {
            return Err(FfiError::invalid_argument("scalar value is null"));
        }
        // `read_unaligned`: XLA's scalar storage is aligned in practice, but nothing promises it.
        unsafe fn get<T>(p: *const c_void) -> T {
            p.cast::<T>().read_unaligned()
        }
        Ok(match dtype {
            DataType::Pred => Scalar::Pred(get::<u8>(p) != 0),
            DataType::S8 => Scalar::S8(get(p)),
            DataType::S16 => Scalar::S16(get(p)),
            DataType::S32 => Scalar::S32(get(p)),
            DataType::S64 => Scalar::S64(get(p)),
            DataType::U8 => Scalar::U8(get(p)),
            DataType::U16 => Scalar::U16(get(p)),
            DataType::U32 => Scalar::U32(get(p)),
            DataType::U64 => Scalar::U64(get(p)),
            DataType::F16 => Scalar::F16(get(p)),
            DataType::BF16 => Scalar::BF16(get(p)),
            DataType::F32 => Scalar::F32(get(p)),
            DataType::F64 => Scalar::F64(get(p)),
            DataType::C64 => Scalar::C64(get(p)),
            DataType::C128 => Scalar::C128(get(p)),
            other if other.size_bytes() == 1 => Scalar::Other(other, get(p)),
            other => {
                return Err(FfiError::unimplemented(format!(
                    "{other} scalars are not supported"
                )))
            }
        })
    }

    pub fn dtype(&self) -> DataType {
        match self {
            Scalar::Pred(_) => DataType::Pred,
            Scalar::S8(_) => DataType::S8,
            Scalar::S16(_) => DataType::S16,
            Scalar::S32(_) => DataType::S32,
            Scalar::S64(_) => DataType::S64,
            Scalar::U8(_) => DataType::U8,
            Scalar::U16(_) => DataType::U16,
            Scalar::U32(_) => DataType::U32,
            Scalar::U64(_) => DataType::U64,
            Scalar::F16(_) => DataType::F16,
            Scalar::BF16(_) => DataType::BF16,
            Scalar::F32(_) => DataType::F32,
            Scalar::F64(_) => DataType::F64,
            Scalar::C64(_) => DataType::C64,
            Scalar::C128(_) => DataType::C128,
            Scalar::Other(dtype, _) => *dtype,
        }
    }

    /// Integer scalars of any width, if the value fits in `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Scalar::S8(v) => Some(v.into()),
            Scalar::S16(v) => Some(v.into()),
            Scalar::S32(v) => Some(v.into()),
            Scalar::S64(v) => Some(v),
            Scalar::U8(v) => Some(v.into()),
            Scalar::U16(v) => Some(v.into()),
            Scalar::U32(v) => Some(v.into()),
            Scalar::U64(v) => i64::try_from(v).ok(),
            _ => None,
        }
    }

    /// Real floats of any width, and integers (rounded to the nearest `f64` beyond 2^53).
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Scalar::F16(v) => Some(v.to_f64()),
            Scalar::BF16(v) => Some(v.to_f64()),
            Scalar::F32(v) => Some(v.into()),
            Scalar::F64(v) => Some(v),
            Scalar::U64(v) => Some(v as f64),
            _ => self.as_i64().map(|v| v as f64),
        }
    }
}

impl<'a> ArrayAttr<'a> {
    unsafe fn from_raw(raw: &'a sys::XLA_FFI_Array) -> Result<ArrayAttr<'a>, FfiError> {
        let dtype = dtype_of(raw.dtype, "array")?;
        Ok(ArrayAttr {
            dtype,
            len: raw.size,
            data: raw.data,
            _borrow: PhantomData,
        })
    }

    pub fn dtype(&self) -> DataType {
        self.dtype
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The elements as `T`, which must match the dtype exactly.
    pub fn as_slice<T: Element>(&self) -> Result<&'a [T], FfiError> {
        if self.dtype != T::DTYPE {
            return Err(FfiError::invalid_argument(format!(
                "expected an array of {}, got array of {}",
                T::DTYPE,
                self.dtype
            )));
        }
        // SAFETY: XLA keeps `len` elements of `dtype` at `data` alive for the call ('a).
        unsafe { typed(self.dtype, self.data, self.len) }
    }
}
