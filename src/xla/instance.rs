//! Handlers with per-executable state, through XLA FFI's execution stages.
//!
//! XLA calls a handler registered with an `instantiate` stage once per call site when it loads
//! the executable, then `execute` at every run. A [`Handler`] does its expensive, call-independent
//! work in [`Instance::instantiate`] (parse the attributes, check them, prepare what to launch) and
//! keeps the result, its *instance*, in XLA's execution state; [`Handler::execute`] gets it back
//! with one table lookup instead of decoding string attributes on every call. XLA owns the
//! instance and drops it (through the deleter registered here) with the executable.
//!
//! One exported symbol serves both stages: XLA passes the stage in the call frame, so Python
//! registers the same function as `instantiate` and `execute`.
//!
//! Every instance is stored under one XLA type, registered the first time an instance is stored
//! (registration needs the API table, which only a call frame provides), as a boxed
//! `dyn Any`: the handler downcasts it to its own instance type, so a state of the wrong type is
//! an error, never a reinterpretation.

use std::any::Any;
use std::ffi::c_void;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Mutex;

use super::result::{self, FfiError};
use super::safe::CallFrame;
use super::sys;

/// What a handler may promise XLA about itself (`XLA_FFI_Handler_Traits`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HandlerTraits {
    /// Every execution enqueues exactly the same device work for the same buffers (no host
    /// synchronisation, no allocation, no choice that depends on data), so XLA may capture it
    /// into a command buffer (a CUDA graph) and replay it.
    pub command_buffer_compatible: bool,
}

impl HandlerTraits {
    /// No promise.
    pub const NONE: HandlerTraits = HandlerTraits {
        command_buffer_compatible: false,
    };
    /// See [`HandlerTraits::command_buffer_compatible`].
    pub const COMMAND_BUFFER_COMPATIBLE: HandlerTraits = HandlerTraits {
        command_buffer_compatible: true,
    };

    /// The `XLA_FFI_Handler_Traits` bits.
    pub fn bits(self) -> u32 {
        #[allow(clippy::unnecessary_cast)] // a C enum: `u32` or `i32` depending on the compiler
        let command_buffer = sys::XLA_FFI_HANDLER_TRAITS_COMMAND_BUFFER_COMPATIBLE as u32;
        if self.command_buffer_compatible {
            command_buffer
        } else {
            0
        }
    }
}

/// What a handler prepares once per call site, for every execution there.
pub trait Instance: Sized + Send + Sync + 'static {
    /// Called once per call site when XLA instantiates the executable. The frame carries the
    /// attributes but no buffers, stream or scratch memory.
    fn instantiate(call: &CallFrame<'_>) -> Result<Self, FfiError>;
}

/// An XLA FFI handler with an [`Instance`] per call site.
pub trait Handler {
    type Instance: Instance;

    /// What the handler promises XLA.
    const TRAITS: HandlerTraits;

    /// Called for every execution, with the instance of this call site.
    fn execute(call: &CallFrame<'_>, instance: &Self::Instance) -> Result<(), FfiError>;
}

/// What XLA stores: a thin pointer to this box.
type Stored = Box<dyn Any + Send + Sync>;

/// Runs the stage of `call` for `H`: stores a new instance on `INSTANTIATE`, runs with the stored
/// one on `EXECUTE`. Without a stored instance (an XLA that skipped the instantiate stage) the
/// execution instantiates for itself: correct, only slower. Stages we are not registered for are
/// no-ops.
pub(super) fn run_stage<H: Handler>(call: &CallFrame<'_>) -> Result<(), FfiError> {
    match call.stage() {
        sys::XLA_FFI_ExecutionStage_INSTANTIATE => {
            store(call, Box::new(H::Instance::instantiate(call)?))
        }
        sys::XLA_FFI_ExecutionStage_EXECUTE => match stored(call) {
            Some(instance) => {
                let instance = instance.downcast_ref::<H::Instance>().ok_or_else(|| {
                    FfiError::internal(
                        "the state XLA kept for this call site belongs to another handler",
                    )
                })?;
                H::execute(call, instance)
            }
            None => H::execute(call, &H::Instance::instantiate(call)?),
        },
        _ => Ok(()),
    }
}

/// The XLA type id of [`Stored`] in the XLA runtime behind `api`, registered there on first use.
/// The name carries the address of this library's deleter, so that two copies of the library
/// loaded into one process (each with its own deleter) never share a type.
///
/// Type ids belong to one runtime's registry: the CPU client and a GPU plugin are separate XLA
/// runtimes, each with its own API table and its own numbering (seen on jaxlib 0.11.2: an id
/// registered with the CPU runtime named another library's type in the CUDA plugin, whose
/// serialiser then ran on our state and crashed). So the id is kept per API table.
fn stored_type(api: *const sys::XLA_FFI_Api) -> Result<sys::XLA_FFI_TypeId, FfiError> {
    /// (API table, type id) for every runtime seen so far: a handful at most.
    static TYPE_IDS: Mutex<Vec<(usize, i64)>> = Mutex::new(Vec::new());
    /// `XLA_FFI_TypeInfo` holds a (null) pointer, so it needs this to be a `static`.
    struct TypeInfo(sys::XLA_FFI_TypeInfo);
    // SAFETY: a null extension pointer and a function pointer, never written.
    unsafe impl Sync for TypeInfo {}
    static TYPE_INFO: TypeInfo = TypeInfo(sys::XLA_FFI_TypeInfo {
        struct_size: sys::XLA_FFI_TypeInfo_STRUCT_SIZE as usize,
        extension_start: std::ptr::null_mut(),
        deleter: Some(delete_stored),
    });
    let key = api as usize;
    let mut ids = TYPE_IDS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(&(_, type_id)) = ids.iter().find(|(a, _)| *a == key) {
        return Ok(sys::XLA_FFI_TypeId { type_id });
    }
    let name = format!(
        "spikeforge.HandlerInstance@{:p}",
        delete_stored as *const ()
    );
    let mut type_id = sys::XLA_FFI_TypeId { type_id: 0 };
    // SAFETY: `api` comes from a live frame; TYPE_INFO is static.
    unsafe { result::type_register(api, &name, &mut type_id, &TYPE_INFO.0) }
        .map_err(|e| e.context("registering the handler state type with XLA"))?;
    ids.push((key, type_id.type_id));
    Ok(type_id)
}

/// XLA's deleter for [`Stored`] objects. A panic in a destructor must not unwind into XLA.
unsafe extern "C" fn delete_stored(object: *mut c_void) {
    if object.is_null() {
        return;
    }
    let _ = panic::catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: XLA only hands back pointers made by `store`.
        drop(unsafe { Box::from_raw(object.cast::<Stored>()) })
    }));
}

fn store(call: &CallFrame<'_>, instance: Stored) -> Result<(), FfiError> {
    let type_id = stored_type(call.api())?;
    let raw = Box::into_raw(Box::new(instance));
    // SAFETY: api and ctx come from the live frame; `raw` is a `Stored` the deleter may destroy.
    let set = unsafe {
        result::state_set(
            call.api(),
            call.ctx(),
            sys::XLA_FFI_ExecutionStage_INSTANTIATE,
            type_id,
            raw.cast(),
        )
    };
    if set.is_err() {
        // SAFETY: XLA did not take it, so it is still ours.
        drop(unsafe { Box::from_raw(raw) });
    }
    set
}

/// The instance stored at instantiation, if XLA kept one for this call site.
fn stored<'a>(call: &CallFrame<'a>) -> Option<&'a (dyn Any + Send + Sync)> {
    let type_id = stored_type(call.api()).ok()?;
    // SAFETY: api and ctx come from the live frame.
    let raw = unsafe {
        result::state_get(
            call.api(),
            call.ctx(),
            sys::XLA_FFI_ExecutionStage_INSTANTIATE,
            type_id,
        )
    }
    .ok()?;
    // SAFETY: a non-null state of our type was made by `store`; XLA keeps it alive at least as
    // long as the executable, hence for this call.
    unsafe { raw.cast::<Stored>().as_ref() }.map(|boxed| &**boxed)
}
