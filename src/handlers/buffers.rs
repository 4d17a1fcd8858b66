//! The buffers of a call, checked against what a handler expects, and the raw pointers its
//! worker threads share.
//!
//! Every handler knows, from its instance, the dtype and shape each argument and result must
//! have; [`check`] compares the call with that list once and hands back the data pointers, with
//! an error that names the first buffer that does not fit (`argument 'v': expected
//! float32[1000], got float64[1000]`).

use std::ffi::c_void;

use crate::xla::{Buffer, CallFrame, DataType, FfiError};

/// A buffer a handler expects: the name errors call it by, its dtype and its shape.
#[derive(Clone, Copy, Debug)]
pub struct Expected<'a> {
    pub name: &'a str,
    pub dtype: DataType,
    pub dims: &'a [i64],
}

/// The data pointers of a call's arguments and results, each checked.
pub struct Checked<'a> {
    pub args: Vec<*mut c_void>,
    pub rets: Vec<Buffer<'a>>,
}

impl Checked<'_> {
    /// The data pointers of the results, in order.
    pub fn ret_ptrs(&self) -> impl Iterator<Item = *mut c_void> + '_ {
        self.rets.iter().map(|b| b.data)
    }
}

/// Checks the call's argument and result buffers against `args` and `rets` (count, dtype,
/// shape). The count error lists the expected names.
pub fn check<'a>(
    call: &CallFrame<'a>,
    args: &[Expected<'_>],
    rets: &[Expected<'_>],
) -> Result<Checked<'a>, FfiError> {
    if call.num_args() != args.len() || call.num_rets() != rets.len() {
        let names =
            |list: &[Expected<'_>]| list.iter().map(|e| e.name).collect::<Vec<_>>().join(", ");
        return Err(FfiError::invalid_argument(format!(
            "expected {} arguments ({}) and {} results ({}), got {} and {}",
            args.len(),
            names(args),
            rets.len(),
            names(rets),
            call.num_args(),
            call.num_rets()
        )));
    }
    let mut arg_ptrs = Vec::with_capacity(args.len());
    for (k, want) in args.iter().enumerate() {
        let b = call.arg(k)?;
        b.expect(want.name, want.dtype, want.dims)?;
        arg_ptrs.push(b.data);
    }
    let mut ret_bufs = Vec::with_capacity(rets.len());
    for (k, want) in rets.iter().enumerate() {
        let b = call.ret(k)?;
        b.expect(want.name, want.dtype, want.dims)?;
        ret_bufs.push(b);
    }
    Ok(Checked {
        args: arg_ptrs,
        rets: ret_bufs,
    })
}

/// A raw pointer that the worker threads of one parallel section may share. Sound only where
/// the section ends before the memory does and the workers write disjoint ranges, which is what
/// every use states.
#[derive(Debug)]
pub struct SharedPtr<T>(*mut T);

// Derived `Clone`/`Copy` would require `T: Copy`; a pointer is copyable whatever it points to.
impl<T> Clone for SharedPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for SharedPtr<T> {}

// SAFETY: see the type's documentation; each use site argues it.
unsafe impl<T> Send for SharedPtr<T> {}
unsafe impl<T> Sync for SharedPtr<T> {}

impl<T> SharedPtr<T> {
    pub fn new(ptr: *mut T) -> Self {
        SharedPtr(ptr)
    }

    /// The pointer. A method rather than a public field so that closures capture the whole
    /// wrapper (which is `Sync`), not the bare pointer (which is not).
    pub fn get(self) -> *mut T {
        self.0
    }
}
