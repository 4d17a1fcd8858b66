//! CUDA back end: generated CUDA C++ -> NVRTC -> CUBIN -> a module in XLA's context, launched on
//! XLA's stream. What FFI handlers use:
//!
//! ```text
//! let f = load_function(&source, "kernel", stream, &opts)?;   // compile+load once; then a lookup
//! let block = f.max_threads_per_block().min(256);
//! unsafe { launch(&f, (blocks, 1, 1), (block, 1, 1), 0, stream, &mut params)? };  // no sync
//! ```
//!
//! Everything goes through cudarc's dynamically loaded bindings, so the crate loads on machines
//! without CUDA; the libraries are looked up by soname (`libcuda.so.1`, `libnvrtc.so.13`), which
//! the Python layer makes findable by preloading the pip wheels' copies.
//!
//! Layers: [`driver`] (checked driver calls), [`nvrtc`] (compilation), `module_cache` (compile
//! once, load once per context), this file (the API handlers call).

mod driver;
#[cfg(test)]
mod gpu_tests;
mod module_cache;
mod nvrtc;

pub use cudarc::driver::sys::{CUdevice, CUdevice_attribute, CUfunction_attribute};
pub use driver::device_attribute;
pub use nvrtc::{compile_cubin, compile_cubin_report, compile_ptx, nvrtc_version};

use super::cache::Aliases;
use super::error::{catch_panic, RuntimeError};
use cudarc::driver::sys;
use std::ffi::c_void;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, LazyLock};

/// How to compile generated CUDA code.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct CudaCompileOptions {
    /// Pass `--use_fast_math` (the model spec's `fast_math`).
    pub fast_math: bool,
    /// More NVRTC options, appended after the standard ones.
    pub extra: Vec<String>,
}

/// Dynamic shared memory a kernel may use without opting in (48 KiB on every architecture).
const DEFAULT_DYNAMIC_SHARED_LIMIT: u32 = 48 * 1024;

/// A kernel loaded into one CUDA context, with the launch limits handlers need.
pub struct CudaFunction {
    func: sys::CUfunction,
    ctx: sys::CUcontext,
    device: sys::CUdevice,
    arch: (u32, u32),
    name: String,
    max_threads_per_block: u32,
    multiprocessor_count: u32,
    max_shared_mem_optin: u32,
    /// The `MAX_DYNAMIC_SHARED_SIZE_BYTES` currently set on `func`.
    dynamic_shared_limit: AtomicU32,
    /// Its key in `module_cache::FUNCTIONS`.
    cache_key: String,
    /// Keeps the module (and so `func`) alive.
    _module: Arc<dyn Send + Sync>,
}

// SAFETY: CUDA driver handles may be used from any thread; every use here first makes `ctx`
// current on the calling thread. `func` stays valid while `_module` is alive.
unsafe impl Send for CudaFunction {}
unsafe impl Sync for CudaFunction {}

impl std::fmt::Debug for CudaFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaFunction")
            .field("name", &self.name)
            .field("device", &self.device)
            .field("arch", &self.arch)
            .field("max_threads_per_block", &self.max_threads_per_block)
            .finish_non_exhaustive()
    }
}

impl CudaFunction {
    /// The raw driver handle.
    pub fn raw(&self) -> sys::CUfunction {
        self.func
    }
    /// The kernel's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The device the kernel was loaded for.
    pub fn device(&self) -> CUdevice {
        self.device
    }
    /// The device's compute capability, e.g. `(9, 0)`.
    pub fn arch(&self) -> (u32, u32) {
        self.arch
    }
    /// The largest block this kernel can be launched with (limited by its register use).
    pub fn max_threads_per_block(&self) -> u32 {
        self.max_threads_per_block
    }
    /// The device's number of multiprocessors (for sizing grids).
    pub fn multiprocessor_count(&self) -> u32 {
        self.multiprocessor_count
    }
    /// The most shared memory one block may use on this device, after opting in.
    pub fn max_shared_mem_per_block(&self) -> u32 {
        self.max_shared_mem_optin
    }
}

/// The kernel `entry` of `source`, loaded into the context of XLA's `stream`.
///
/// The first call for a (context, source, options, entry) compiles with NVRTC (or reads the
/// CUBIN from the disk cache) for the device's compute capability, loads the module and looks up
/// the kernel (in relaxed capture mode if XLA is capturing `stream` into a CUDA graph, since a
/// command-buffer-compatible handler may run for the first time during a capture); later calls return the same `Arc` after a `cuStreamGetCtx`, a hash of `source` and
/// a map lookup (no compilation, no file access). The calling thread's current context is left
/// as it was found.
pub fn load_function(
    source: &str,
    entry: &str,
    stream: *mut c_void,
    opts: &CudaCompileOptions,
) -> Result<Arc<CudaFunction>, RuntimeError> {
    catch_panic("loading a CUDA kernel", || {
        driver::init()?;
        // SAFETY: XLA passes a live stream (null means the current context's default stream).
        let ctx = unsafe { driver::stream_context(stream.cast()) }?;
        // SAFETY: as above.
        let _relaxed = unsafe { driver::RelaxedCapture::enter(stream.cast()) }?;
        module_cache::function(source, entry, ctx, opts)
    })
}

/// Like [`load_function`], for callers that can name the source without building it: `key` must
/// determine `source()` completely (e.g. the FFI `key` attribute, the hash of the model spec).
/// When `(context, key, entry, opts)` was loaded before and is still loaded, `source` is not
/// called and nothing is hashed but the key. A miss goes through [`load_function`], whose caches are keyed by the source
/// itself, so a stale key can never pick up code from an older code generator on disk.
pub fn load_function_keyed(
    key: &str,
    entry: &str,
    stream: *mut c_void,
    opts: &CudaCompileOptions,
    source: impl FnOnce() -> String,
) -> Result<Arc<CudaFunction>, RuntimeError> {
    static ALIASES: LazyLock<Aliases> = LazyLock::new(Aliases::new);
    catch_panic("loading a CUDA kernel", || {
        driver::init()?;
        // SAFETY: as in `load_function`.
        let ctx = unsafe { driver::stream_context(stream.cast()) }?;
        let alias = format!("{ctx:p}\0{key}\0{entry}\0{opts:?}");
        if let Some(f) = ALIASES.resolve(&alias, &module_cache::FUNCTIONS) {
            return Ok(f);
        }
        // SAFETY: as above.
        let _relaxed = unsafe { driver::RelaxedCapture::enter(stream.cast()) }?;
        let f = module_cache::function(&source(), entry, ctx, opts)?;
        ALIASES.record(&alias, &f.cache_key);
        Ok(f)
    })
}

/// Enqueues `f` on XLA's `stream` with `grid` x `block` threads and `shared_mem` bytes of dynamic
/// shared memory, without synchronising. Above 48 KiB of shared memory the kernel's limit is
/// raised first (once per size). Only launch errors are reported; errors while the kernel runs
/// surface in XLA's next synchronisation.
///
/// # Safety
/// `stream` must belong to `f`'s context; `params` must hold, for each kernel parameter in order,
/// a pointer to a value of that parameter's type; the device buffers must stay valid until the
/// kernel has run (true for XLA's buffers during the custom call).
pub unsafe fn launch(
    f: &CudaFunction,
    grid: (u32, u32, u32),
    block: (u32, u32, u32),
    shared_mem: u32,
    stream: *mut c_void,
    params: &mut [*mut c_void],
) -> Result<(), RuntimeError> {
    let shape = LaunchShape {
        grid,
        block,
        shared_mem,
        cooperative: false,
    };
    // SAFETY: forwarded to the caller.
    unsafe { launch_shaped(f, shape, stream, params) }
}

/// A launch's shape: grid, block, dynamic shared memory, and whether it is cooperative (every
/// block of the grid resident at once, which the driver checks: a grid larger than the device
/// holds is an error, not a hang).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LaunchShape {
    pub grid: (u32, u32, u32),
    pub block: (u32, u32, u32),
    pub shared_mem: u32,
    pub cooperative: bool,
}

/// [`launch`] with a [`LaunchShape`] (for cooperative launches).
///
/// # Safety
/// As [`launch`].
pub unsafe fn launch_shaped(
    f: &CudaFunction,
    shape: LaunchShape,
    stream: *mut c_void,
    params: &mut [*mut c_void],
) -> Result<(), RuntimeError> {
    catch_panic("launching a CUDA kernel", || {
        // SAFETY: the context is alive while XLA runs work on its stream.
        let _current = unsafe { driver::CurrentContext::enter(f.ctx) }?;
        if shape.shared_mem > f.dynamic_shared_limit.load(Ordering::Relaxed) {
            set_max_dynamic_shared_mem_current(f, shape.shared_mem)?;
        }
        let LaunchShape {
            grid,
            block,
            shared_mem,
            cooperative,
        } = shape;
        // SAFETY: forwarded to the caller.
        unsafe {
            driver::launch_kernel(
                f.func,
                grid,
                block,
                shared_mem,
                stream.cast(),
                params,
                cooperative,
            )
        }
    })
}

/// [`launch`] as thread-block clusters of `cluster` blocks along x (compute capability 9.0; see
/// [`cluster_width`]); `shape.cooperative` is ignored (a cluster's blocks are co-scheduled).
///
/// # Safety
/// As [`launch`].
pub unsafe fn launch_clustered(
    f: &CudaFunction,
    shape: LaunchShape,
    cluster: u32,
    stream: *mut c_void,
    params: &mut [*mut c_void],
) -> Result<(), RuntimeError> {
    catch_panic("launching a CUDA kernel as clusters", || {
        // SAFETY: the context is alive while XLA runs work on its stream.
        let _current = unsafe { driver::CurrentContext::enter(f.ctx) }?;
        if shape.shared_mem > f.dynamic_shared_limit.load(Ordering::Relaxed) {
            set_max_dynamic_shared_mem_current(f, shape.shared_mem)?;
        }
        // SAFETY: forwarded to the caller.
        unsafe {
            driver::launch_kernel_clustered(
                f.func,
                shape.grid,
                shape.block,
                shape.shared_mem,
                stream.cast(),
                params,
                cluster,
            )
        }
    })
}

/// The widest cluster, a power of two of at most `most` blocks, of `f` (of `block` threads and
/// `shared_mem` bytes of dynamic shared memory) that the device runs: 0 where it has no
/// clusters (compute capability below 9.0, or no cluster launch). Above 8 blocks (the portable
/// size) the function is first allowed non-portable sizes (H100 and H200 run 16).
pub fn cluster_width(
    f: &CudaFunction,
    block: u32,
    shared_mem: u32,
    most: u32,
) -> Result<u32, RuntimeError> {
    catch_panic("querying a kernel's clusters", || {
        if f.arch.0 < 9
            || device_attribute(
                f.device,
                CUdevice_attribute::CU_DEVICE_ATTRIBUTE_CLUSTER_LAUNCH,
            )? == 0
        {
            return Ok(0);
        }
        // SAFETY: `f.ctx` is alive as long as `f` is usable.
        let _current = unsafe { driver::CurrentContext::enter(f.ctx) }?;
        if shared_mem > f.dynamic_shared_limit.load(Ordering::Relaxed) {
            set_max_dynamic_shared_mem_current(f, shared_mem)?;
        }
        if most > 8 {
            // SAFETY: `f.func` is alive; its context is current.
            unsafe {
                driver::set_function_attribute(
                    f.func,
                    CUfunction_attribute::CU_FUNC_ATTRIBUTE_NON_PORTABLE_CLUSTER_SIZE_ALLOWED,
                    1,
                )
            }?;
        }
        let mut width = most.max(1).next_power_of_two();
        while width > 1 {
            // SAFETY: `f.func` is alive; its context is current.
            if unsafe { driver::max_active_clusters(f.func, width, block, shared_mem) }? > 0 {
                return Ok(width);
            }
            width /= 2;
        }
        Ok(width)
    })
}

/// How many blocks of `f` (of `block` threads and `shared_mem` bytes of dynamic shared memory)
/// the device holds at once, over all its multiprocessors: the largest cooperative grid; 0 when
/// the device cannot launch cooperatively.
pub fn resident_blocks(f: &CudaFunction, block: u32, shared_mem: u32) -> Result<u32, RuntimeError> {
    catch_panic("querying a kernel's occupancy", || {
        let cooperative = device_attribute(
            f.device,
            CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COOPERATIVE_LAUNCH,
        )?;
        if cooperative == 0 {
            return Ok(0);
        }
        // SAFETY: `f.ctx` is alive as long as `f` is usable.
        let _current = unsafe { driver::CurrentContext::enter(f.ctx) }?;
        if shared_mem > f.dynamic_shared_limit.load(Ordering::Relaxed) {
            set_max_dynamic_shared_mem_current(f, shared_mem)?;
        }
        // SAFETY: `f.func` is alive; its context is current.
        let per_sm = unsafe { driver::occupancy_blocks_per_sm(f.func, block, shared_mem) }?;
        Ok(per_sm * f.multiprocessor_count)
    })
}

/// Fills device memory with a byte pattern on XLA's stream (no synchronisation): used to poison
/// outputs in tests so that an element a kernel fails to write is caught.
///
/// # Safety
/// `ptr` must be device memory of at least `bytes` bytes in the context of `stream`.
pub unsafe fn memset_async(
    ptr: *mut c_void,
    value: u8,
    bytes: usize,
    stream: *mut c_void,
) -> Result<(), RuntimeError> {
    catch_panic("filling device memory", || {
        driver::init()?;
        // SAFETY: XLA passes a live stream.
        let ctx = unsafe { driver::stream_context(stream.cast()) }?;
        // SAFETY: the context is alive while XLA runs work on its stream.
        let _current = unsafe { driver::CurrentContext::enter(ctx) }?;
        // SAFETY: forwarded to the caller.
        unsafe { driver::memset_d8_async(ptr, value, bytes, stream.cast()) }
    })
}

/// Copies device memory on XLA's stream (no synchronisation): a network run starts from its
/// input state this way.
///
/// # Safety
/// `dst` and `src` must be device memory of at least `bytes` bytes in the context of `stream`,
/// not overlapping.
pub unsafe fn memcpy_async(
    dst: *mut c_void,
    src: *const c_void,
    bytes: usize,
    stream: *mut c_void,
) -> Result<(), RuntimeError> {
    catch_panic("copying device memory", || {
        driver::init()?;
        // SAFETY: XLA passes a live stream.
        let ctx = unsafe { driver::stream_context(stream.cast()) }?;
        // SAFETY: the context is alive while XLA runs work on its stream.
        let _current = unsafe { driver::CurrentContext::enter(ctx) }?;
        // SAFETY: forwarded to the caller.
        unsafe { driver::memcpy_dtod_async(dst, src, bytes, stream.cast()) }
    })
}

/// Allows `f` to be launched with up to `bytes` of dynamic shared memory (needed above 48 KiB;
/// [`launch`] does it by itself when asked for more).
pub fn set_max_dynamic_shared_mem(f: &CudaFunction, bytes: u32) -> Result<(), RuntimeError> {
    catch_panic("setting a kernel's shared memory limit", || {
        // SAFETY: `f.ctx` is alive as long as `f` is usable.
        let _current = unsafe { driver::CurrentContext::enter(f.ctx) }?;
        set_max_dynamic_shared_mem_current(f, bytes)
    })
}

fn set_max_dynamic_shared_mem_current(f: &CudaFunction, bytes: u32) -> Result<(), RuntimeError> {
    // SAFETY: `f.func` is alive; its context is current.
    unsafe {
        driver::set_function_attribute(
            f.func,
            CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
            bytes as i32,
        )
    }?;
    f.dynamic_shared_limit.fetch_max(bytes, Ordering::Relaxed);
    Ok(())
}

/// The largest block `f` can be launched with, asked of the driver
/// (`CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK`; also cached in
/// [`CudaFunction::max_threads_per_block`]).
pub fn function_max_threads(f: &CudaFunction) -> Result<u32, RuntimeError> {
    function_attribute_of(
        f,
        CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK,
    )
}

/// The static shared memory of `f` in bytes, asked of the driver
/// (`CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES`): what a launch's dynamic shared memory adds to.
pub fn function_static_shared(f: &CudaFunction) -> Result<u32, RuntimeError> {
    function_attribute_of(f, CUfunction_attribute::CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES)
}

/// The local memory of one thread of `f` in bytes, asked of the driver
/// (`CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES`): more than none where ptxas spilled registers, or a
/// local array could not live in registers.
pub fn function_local_bytes(f: &CudaFunction) -> Result<u32, RuntimeError> {
    function_attribute_of(f, CUfunction_attribute::CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES)
}

/// A (non-negative) attribute of `f`, asked of the driver in `f`'s context.
fn function_attribute_of(
    f: &CudaFunction,
    attribute: CUfunction_attribute,
) -> Result<u32, RuntimeError> {
    catch_panic("querying a kernel attribute", || {
        // SAFETY: `f.ctx` is alive as long as `f` is usable.
        let _current = unsafe { driver::CurrentContext::enter(f.ctx) }?;
        // SAFETY: `f.func` is alive; its context is current.
        let v = unsafe { driver::function_attribute(f.func, attribute) }?;
        Ok(v as u32)
    })
}

/// The device XLA's `stream` runs on (for [`device_attribute`] before any kernel is loaded).
pub fn stream_device(stream: *mut c_void) -> Result<CUdevice, RuntimeError> {
    catch_panic("querying a stream's device", || {
        driver::init()?;
        // SAFETY: XLA passes a live stream.
        let ctx = unsafe { driver::stream_context(stream.cast()) }?;
        // SAFETY: the context of a live stream.
        let _current = unsafe { driver::CurrentContext::enter(ctx) }?;
        driver::current_device()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_driver_loading_fails_cleanly() {
        // On a machine without libcuda (CI), every GPU entry point reports the missing driver.
        if !matches!(driver::init(), Err(RuntimeError::CudaDriverNotFound)) {
            eprintln!("SKIPPED without_a_driver_loading_fails_cleanly: a CUDA driver is present");
            return;
        }
        let err = load_function(
            "",
            "k",
            std::ptr::null_mut(),
            &CudaCompileOptions::default(),
        )
        .unwrap_err();
        assert!(matches!(err, RuntimeError::CudaDriverNotFound), "{err:?}");
        assert!(matches!(
            stream_device(std::ptr::null_mut()),
            Err(RuntimeError::CudaDriverNotFound)
        ));
    }
}
