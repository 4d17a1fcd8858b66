//! Checked CUDA driver calls (through cudarc's dynamically loaded `sys` bindings).
//!
//! Every call's `CUresult` is turned into [`RuntimeError::CudaCall`] naming the entry point and
//! the error. Nothing here synchronises: kernels are enqueued on XLA's stream and XLA orders the
//! rest.

use crate::runtime::error::{catch_panic, RuntimeError};
use cudarc::driver::sys;
use std::ffi::{c_void, CStr};
use std::sync::atomic::{AtomicBool, Ordering};

/// `Ok` when `r` is `CUDA_SUCCESS`, else the error for `call`.
pub(crate) fn check(call: &'static str, r: sys::CUresult) -> Result<(), RuntimeError> {
    if r == sys::CUresult::CUDA_SUCCESS {
        return Ok(());
    }
    let mut text: *const std::ffi::c_char = std::ptr::null();
    // SAFETY: valid out-pointer; the driver returns a static string or leaves it null. The
    // library is loaded (we have a result from it), so this cannot panic in cudarc.
    let description = if unsafe { sys::cuGetErrorString(r, &mut text) }
        == sys::CUresult::CUDA_SUCCESS
        && !text.is_null()
    {
        // SAFETY: NUL-terminated static string from the driver.
        unsafe { CStr::from_ptr(text) }
            .to_string_lossy()
            .into_owned()
    } else {
        String::new()
    };
    Err(RuntimeError::CudaCall {
        call,
        result: format!("{r:?}"),
        description,
    })
}

/// Makes sure the driver library can be loaded and is initialised. Cheap after the first success
/// (XLA has usually initialised the driver already; `cuInit` again is harmless).
pub(crate) fn init() -> Result<(), RuntimeError> {
    static READY: AtomicBool = AtomicBool::new(false);
    if READY.load(Ordering::Acquire) {
        return Ok(());
    }
    catch_panic("loading the CUDA driver", || {
        // Checked first because cudarc panics when it cannot dlopen the library.
        // SAFETY: only dlopens (and closes) the library.
        if !unsafe { sys::is_culib_present() } {
            return Err(RuntimeError::CudaDriverNotFound);
        }
        // SAFETY: no pointers.
        check("cuInit", unsafe { sys::cuInit(0) })?;
        READY.store(true, Ordering::Release);
        Ok(())
    })
}

/// The context `stream` belongs to.
///
/// # Safety
/// `stream` must be a live stream (or null for the current context's legacy default stream).
pub(crate) unsafe fn stream_context(stream: sys::CUstream) -> Result<sys::CUcontext, RuntimeError> {
    let mut ctx: sys::CUcontext = std::ptr::null_mut();
    // SAFETY: forwarded to the caller; valid out-pointer.
    check("cuStreamGetCtx", unsafe {
        sys::cuStreamGetCtx(stream, &mut ctx)
    })?;
    Ok(ctx)
}

/// The calling thread's current context (null if none).
pub(crate) fn current_context() -> Result<sys::CUcontext, RuntimeError> {
    let mut ctx: sys::CUcontext = std::ptr::null_mut();
    // SAFETY: valid out-pointer.
    check("cuCtxGetCurrent", unsafe { sys::cuCtxGetCurrent(&mut ctx) })?;
    Ok(ctx)
}

/// Keeps a context current on this thread while alive. XLA calls handlers on threads where its
/// context is normally current already; when it is not, the context is pushed and popped again
/// on drop, so the thread is left exactly as it was found.
pub(crate) struct CurrentContext {
    pushed: bool,
}

impl CurrentContext {
    /// # Safety
    /// `ctx` must be a live context.
    pub(crate) unsafe fn enter(ctx: sys::CUcontext) -> Result<Self, RuntimeError> {
        if current_context()? == ctx {
            return Ok(CurrentContext { pushed: false });
        }
        // SAFETY: forwarded to the caller.
        check("cuCtxPushCurrent", unsafe { sys::cuCtxPushCurrent_v2(ctx) })?;
        Ok(CurrentContext { pushed: true })
    }
}

impl Drop for CurrentContext {
    fn drop(&mut self) {
        if self.pushed {
            let mut popped: sys::CUcontext = std::ptr::null_mut();
            // SAFETY: pops what `enter` pushed on this thread. Cannot fail unless the context
            // was destroyed meanwhile, and then there is nothing left to restore.
            let _ = unsafe { sys::cuCtxPopCurrent_v2(&mut popped) };
        }
    }
}

/// The device of the current context.
pub(crate) fn current_device() -> Result<sys::CUdevice, RuntimeError> {
    let mut dev: sys::CUdevice = 0;
    // SAFETY: valid out-pointer.
    check("cuCtxGetDevice", unsafe { sys::cuCtxGetDevice(&mut dev) })?;
    Ok(dev)
}

/// An attribute of `device` (multiprocessor count, shared memory per block, ...).
pub fn device_attribute(
    device: sys::CUdevice,
    attr: sys::CUdevice_attribute,
) -> Result<i32, RuntimeError> {
    catch_panic("querying a device attribute", || {
        init()?;
        let mut v = 0;
        // SAFETY: valid out-pointer; an invalid device is reported as an error.
        check("cuDeviceGetAttribute", unsafe {
            sys::cuDeviceGetAttribute(&mut v, attr, device)
        })?;
        Ok(v)
    })
}

/// `(major, minor)` compute capability of `device`, e.g. `(9, 0)` for H100.
pub(crate) fn compute_capability(device: sys::CUdevice) -> Result<(u32, u32), RuntimeError> {
    use sys::CUdevice_attribute::*;
    let major = device_attribute(device, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?;
    let minor = device_attribute(device, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?;
    Ok((major as u32, minor as u32))
}

/// Loads a CUBIN (or NUL-terminated PTX) into the current context.
pub(crate) fn load_module(image: &[u8]) -> Result<sys::CUmodule, RuntimeError> {
    let mut module: sys::CUmodule = std::ptr::null_mut();
    // SAFETY: `image` is a complete CUBIN/PTX image (the driver reads it by its own headers).
    check("cuModuleLoadData", unsafe {
        sys::cuModuleLoadData(&mut module, image.as_ptr().cast())
    })?;
    Ok(module)
}

/// Unloads `module` from the current context. The driver waits for the module's kernels that are
/// still running. Allowed even while this thread captures a stream into a CUDA graph: the
/// thread's capture mode is relaxed for the call (an unload enqueues nothing, so a graph being
/// captured is unaffected, where a forbidden call would have invalidated it).
///
/// # Safety
/// `module` must be loaded in the current context, and nothing may use its functions again.
pub(crate) unsafe fn unload_module(module: sys::CUmodule) -> Result<(), RuntimeError> {
    let mut mode = sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_RELAXED;
    // SAFETY: valid in-out pointer; swaps this thread's mode, restored below.
    check("cuThreadExchangeStreamCaptureMode", unsafe {
        sys::cuThreadExchangeStreamCaptureMode(&mut mode)
    })?;
    // SAFETY: forwarded to the caller.
    let unloaded = check("cuModuleUnload", unsafe { sys::cuModuleUnload(module) });
    // SAFETY: puts back the mode swapped out above.
    let _ = unsafe { sys::cuThreadExchangeStreamCaptureMode(&mut mode) };
    unloaded
}

/// The kernel `name` of `module`; [`RuntimeError::KernelNotFound`] if it has none.
///
/// # Safety
/// `module` must be loaded in the current context.
pub(crate) unsafe fn module_function(
    module: sys::CUmodule,
    name: &CStr,
) -> Result<sys::CUfunction, RuntimeError> {
    let mut f: sys::CUfunction = std::ptr::null_mut();
    // SAFETY: forwarded to the caller; valid out-pointer and name.
    let r = unsafe { sys::cuModuleGetFunction(&mut f, module, name.as_ptr()) };
    if r == sys::CUresult::CUDA_ERROR_NOT_FOUND {
        return Err(RuntimeError::KernelNotFound {
            name: name.to_string_lossy().into_owned(),
            module: "the compiled CUDA module".to_owned(),
        });
    }
    check("cuModuleGetFunction", r)?;
    Ok(f)
}

/// # Safety
/// `f` must be a live function handle.
pub(crate) unsafe fn function_attribute(
    f: sys::CUfunction,
    attr: sys::CUfunction_attribute,
) -> Result<i32, RuntimeError> {
    let mut v = 0;
    // SAFETY: forwarded to the caller; valid out-pointer.
    check("cuFuncGetAttribute", unsafe {
        sys::cuFuncGetAttribute(&mut v, attr, f)
    })?;
    Ok(v)
}

/// # Safety
/// `f` must be a live function handle.
pub(crate) unsafe fn set_function_attribute(
    f: sys::CUfunction,
    attr: sys::CUfunction_attribute,
    value: i32,
) -> Result<(), RuntimeError> {
    // SAFETY: forwarded to the caller.
    check("cuFuncSetAttribute", unsafe {
        sys::cuFuncSetAttribute(f, attr, value)
    })
}

/// The launch attribute that makes clusters of `width` x 1 x 1 blocks.
fn cluster_attribute(width: u32) -> sys::CUlaunchAttribute {
    // SAFETY: a plain C struct and union of integers, for which all zeroes is valid.
    let mut attr: sys::CUlaunchAttribute = unsafe { std::mem::zeroed() };
    attr.id = sys::CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION;
    attr.value.clusterDim.x = width;
    attr.value.clusterDim.y = 1;
    attr.value.clusterDim.z = 1;
    attr
}

/// `body` given a `cuLaunchKernelEx` configuration of clusters of `width` x 1 x 1 blocks.
fn with_cluster_config<R>(
    grid: (u32, u32, u32),
    block: (u32, u32, u32),
    shared_mem: u32,
    stream: sys::CUstream,
    width: u32,
    body: impl FnOnce(&sys::CUlaunchConfig) -> R,
) -> R {
    let mut attrs = [cluster_attribute(width)];
    let config = sys::CUlaunchConfig {
        gridDimX: grid.0,
        gridDimY: grid.1,
        gridDimZ: grid.2,
        blockDimX: block.0,
        blockDimY: block.1,
        blockDimZ: block.2,
        sharedMemBytes: shared_mem,
        hStream: stream,
        attrs: attrs.as_mut_ptr(),
        numAttrs: attrs.len() as u32,
    };
    body(&config)
}

/// How many clusters of `width` blocks of `f` (`block` threads, `shared_mem` bytes of dynamic
/// shared memory each) the device runs at once (`cuOccupancyMaxActiveClusters`; 0: none).
///
/// # Safety
/// `f` must be a live function handle of the current context.
pub(crate) unsafe fn max_active_clusters(
    f: sys::CUfunction,
    width: u32,
    block: u32,
    shared_mem: u32,
) -> Result<u32, RuntimeError> {
    let grid = (width, 1, 1);
    let mut n = 0;
    with_cluster_config(
        grid,
        (block, 1, 1),
        shared_mem,
        std::ptr::null_mut(),
        width,
        |c| {
            // SAFETY: forwarded to the caller; valid out-pointer, the configuration outlives the call.
            check("cuOccupancyMaxActiveClusters", unsafe {
                sys::cuOccupancyMaxActiveClusters(&mut n, f, c)
            })
        },
    )?;
    Ok(n.max(0) as u32)
}

/// Enqueues `f` on `stream` as thread-block clusters of `cluster` x 1 x 1 blocks
/// (`cuLaunchKernelEx`; the driver refuses a cluster the device cannot run).
///
/// # Safety
/// As [`launch_kernel`].
pub(crate) unsafe fn launch_kernel_clustered(
    f: sys::CUfunction,
    grid: (u32, u32, u32),
    block: (u32, u32, u32),
    shared_mem: u32,
    stream: sys::CUstream,
    params: &mut [*mut c_void],
    cluster: u32,
) -> Result<(), RuntimeError> {
    with_cluster_config(grid, block, shared_mem, stream, cluster, |c| {
        // SAFETY: forwarded to the caller; the configuration outlives the call.
        check("cuLaunchKernelEx", unsafe {
            sys::cuLaunchKernelEx(c, f, params.as_mut_ptr(), std::ptr::null_mut())
        })
    })
}

/// Enqueues `f` on `stream`. Returns as soon as the launch is queued (errors found here are
/// configuration errors: too many threads, too much shared memory, a bad stream). A
/// `cooperative` launch has every block resident at once (the driver refuses a grid larger than
/// the device holds with `CUDA_ERROR_COOPERATIVE_LAUNCH_TOO_LARGE`), so that the blocks may wait
/// for each other.
///
/// # Safety
/// `f` must belong to the current context and `stream` to the same context; `params` must hold
/// one pointer to a value of the right type for each kernel parameter, and every device pointer
/// among those values must stay valid until the kernel has run.
pub(crate) unsafe fn launch_kernel(
    f: sys::CUfunction,
    grid: (u32, u32, u32),
    block: (u32, u32, u32),
    shared_mem: u32,
    stream: sys::CUstream,
    params: &mut [*mut c_void],
    cooperative: bool,
) -> Result<(), RuntimeError> {
    let (g, b, p) = (grid, block, params.as_mut_ptr());
    if cooperative {
        // SAFETY: forwarded to the caller.
        return check("cuLaunchCooperativeKernel", unsafe {
            sys::cuLaunchCooperativeKernel(f, g.0, g.1, g.2, b.0, b.1, b.2, shared_mem, stream, p)
        });
    }
    // SAFETY: forwarded to the caller.
    check("cuLaunchKernel", unsafe {
        sys::cuLaunchKernel(
            f,
            g.0,
            g.1,
            g.2,
            b.0,
            b.1,
            b.2,
            shared_mem,
            stream,
            p,
            std::ptr::null_mut(),
        )
    })
}

/// How many blocks of `block` threads and `shared_mem` bytes of dynamic shared memory of `f`
/// one multiprocessor holds at once.
///
/// # Safety
/// `f` must be a live function handle of the current context.
pub(crate) unsafe fn occupancy_blocks_per_sm(
    f: sys::CUfunction,
    block: u32,
    shared_mem: u32,
) -> Result<u32, RuntimeError> {
    let mut n = 0;
    // SAFETY: forwarded to the caller; valid out-pointer.
    check("cuOccupancyMaxActiveBlocksPerMultiprocessor", unsafe {
        sys::cuOccupancyMaxActiveBlocksPerMultiprocessor(
            &mut n,
            f,
            block as i32,
            shared_mem as usize,
        )
    })?;
    Ok(n.max(0) as u32)
}

/// Fills `bytes` bytes at `ptr` with `value`, in stream order.
///
/// # Safety
/// `ptr` must be device memory of at least `bytes` bytes in `stream`'s context, valid until the
/// fill has run.
pub(crate) unsafe fn memset_d8_async(
    ptr: *mut c_void,
    value: u8,
    bytes: usize,
    stream: sys::CUstream,
) -> Result<(), RuntimeError> {
    // SAFETY: forwarded to the caller.
    check("cuMemsetD8Async", unsafe {
        sys::cuMemsetD8Async(ptr as sys::CUdeviceptr, value, bytes, stream)
    })
}

/// Copies `bytes` bytes from `src` to `dst` (both device memory), in stream order.
///
/// # Safety
/// Both must be device memory of at least `bytes` bytes in `stream`'s context, not overlapping,
/// valid until the copy has run.
pub(crate) unsafe fn memcpy_dtod_async(
    dst: *mut c_void,
    src: *const c_void,
    bytes: usize,
    stream: sys::CUstream,
) -> Result<(), RuntimeError> {
    // SAFETY: forwarded to the caller.
    check("cuMemcpyDtoDAsync", unsafe {
        sys::cuMemcpyDtoDAsync_v2(
            dst as sys::CUdeviceptr,
            src as sys::CUdeviceptr,
            bytes,
            stream,
        )
    })
}

/// While XLA captures its stream into a CUDA graph (a command buffer), lets this thread make the
/// calls capture forbids ("potentially unsafe" ones, such as loading a module the first time a
/// handler runs), and restores the thread's capture mode when dropped. Does nothing when the
/// stream is not being captured. Loading a module enqueues nothing on the stream, so the graph
/// is unaffected.
pub(crate) struct RelaxedCapture {
    previous: Option<sys::CUstreamCaptureMode>,
}

impl RelaxedCapture {
    /// # Safety
    /// `stream` must be a live stream.
    pub(crate) unsafe fn enter(stream: sys::CUstream) -> Result<Self, RuntimeError> {
        let mut status = sys::CUstreamCaptureStatus::CU_STREAM_CAPTURE_STATUS_NONE;
        // SAFETY: forwarded to the caller; valid out-pointer.
        check("cuStreamIsCapturing", unsafe {
            sys::cuStreamIsCapturing(stream, &mut status)
        })?;
        if status == sys::CUstreamCaptureStatus::CU_STREAM_CAPTURE_STATUS_NONE {
            return Ok(RelaxedCapture { previous: None });
        }
        let mut mode = sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_RELAXED;
        // SAFETY: valid in-out pointer.
        check("cuThreadExchangeStreamCaptureMode", unsafe {
            sys::cuThreadExchangeStreamCaptureMode(&mut mode)
        })?;
        Ok(RelaxedCapture {
            previous: Some(mode),
        })
    }
}

impl Drop for RelaxedCapture {
    fn drop(&mut self) {
        if let Some(mut mode) = self.previous {
            // SAFETY: puts back the mode `enter` exchanged on this thread.
            let _ = unsafe { sys::cuThreadExchangeStreamCaptureMode(&mut mode) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_driver_is_an_error_not_a_panic() {
        // This test machine may or may not have libcuda.so.1: either way no panic escapes.
        match init() {
            Ok(()) => {}
            Err(RuntimeError::CudaDriverNotFound) => {
                let msg = RuntimeError::CudaDriverNotFound.to_string();
                assert!(msg.starts_with("libcuda.so.1 not found: install the NVIDIA driver"));
                assert!(matches!(
                    device_attribute(
                        0,
                        sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT
                    ),
                    Err(RuntimeError::CudaDriverNotFound)
                ));
            }
            // A driver without a GPU (or a stub library): a named CUresult.
            Err(RuntimeError::CudaCall {
                call: "cuInit",
                result,
                ..
            }) => {
                assert!(result.starts_with("CUDA_ERROR_"), "{result}");
            }
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
}
