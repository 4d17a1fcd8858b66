//! Compiled images and loaded CUDA modules, cached so each source is compiled once per machine
//! and loaded once per context while it is in use.
//!
//! Three levels, each an [`Lru`] (bounded by `SPIKEFORGE_MAX_LOADED_MODULES`):
//! * images (CUBIN/PTX bytes) by image key = sha256(source, target, NVRTC version, options),
//!   backed by checksummed blobs `<cache>/cuda/<key>.cubin|.ptx` on disk;
//! * modules by (context, image key);
//! * functions by (context, source key, entry): the only level a warm call touches.
//!
//! A module is unloaded when the last function of it goes (evicted, and no caller holding it).
//! Measured on an H200 (driver 580, `probe_module_costs` in `gpu_tests`): a loaded module costs
//! the process no memory mapping, and device memory about its size (1000 modules of a 6.4 KB
//! CUBIN took 2 MB), so the bound matters less than for CPU libraries; but images, modules and
//! tables grew with every model. `cuModuleUnload` waits for the module's kernels that are still
//! running (it returned when a 2 s kernel had finished, which completed normally), so unloading
//! never pulls code from under the GPU. A load while XLA captures its stream into a CUDA graph can
//! evict and so unload another module: a plain `cuModuleUnload` there fails and invalidates the
//! capture (seen on the H200), so the unload relaxes the thread's capture mode
//! ([`driver::unload_module`]). Anything that keeps a kernel beyond a call (a CUDA graph captured
//! with it) must hold its `Arc<CudaFunction>` as long.

use super::driver::{self, CurrentContext};
use super::nvrtc::{self, Target};
use super::{CudaCompileOptions, CudaFunction};
use crate::runtime::cache::{self, Lru};
use crate::runtime::error::{catch_panic, RuntimeError};
use cudarc::driver::sys;
use std::ffi::CString;
use std::sync::{Arc, LazyLock};

/// A module loaded into one context; unloaded on drop.
struct LoadedModule {
    module: sys::CUmodule,
    ctx: sys::CUcontext,
}

// SAFETY: a module handle is an immutable driver object usable from any thread (with its context
// current, which every user here arranges).
unsafe impl Send for LoadedModule {}
unsafe impl Sync for LoadedModule {}

/// How many modules are loaded, for tests.
#[cfg(test)]
pub(crate) static LIVE_MODULES: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(0);

impl LoadedModule {
    fn load(image: &[u8], ctx: sys::CUcontext) -> Result<Self, RuntimeError> {
        let module = driver::load_module(image)?;
        #[cfg(test)]
        LIVE_MODULES.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(LoadedModule { module, ctx })
    }
}

impl Drop for LoadedModule {
    fn drop(&mut self) {
        #[cfg(test)]
        LIVE_MODULES.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        // Best effort: a module that cannot be unloaded (its context gone) is only leaked.
        let _ = catch_panic("unloading a CUDA module", || {
            // SAFETY: XLA keeps its contexts for the whole process.
            let _current = unsafe { CurrentContext::enter(self.ctx) }?;
            // SAFETY: loaded by `LoadedModule::load` in this context, unloaded once, here;
            // nothing refers to its functions any more (every `CudaFunction` holds its module).
            unsafe { driver::unload_module(self.module) }
        });
    }
}

static IMAGES: LazyLock<Lru<Vec<u8>>> = LazyLock::new(Lru::new);
static MODULES: LazyLock<Lru<LoadedModule>> = LazyLock::new(Lru::new);
pub(crate) static FUNCTIONS: LazyLock<Lru<CudaFunction>> = LazyLock::new(Lru::new);

/// See [`super::load_function`].
pub(crate) fn function(
    source: &str,
    entry: &str,
    ctx: sys::CUcontext,
    opts: &CudaCompileOptions,
) -> Result<Arc<CudaFunction>, RuntimeError> {
    let source_key = cache::key(&[source.as_bytes(), format!("{opts:?}").as_bytes()]);
    // The context address identifies the context: XLA keeps its contexts for the whole process.
    let cache_key = format!("{:p}\0{source_key}\0{entry}", ctx);
    FUNCTIONS.get_or_try_insert(&cache_key, || {
        // Checked on every load (a hit implies an earlier successful load).
        crate::runtime::settings::max_loaded_modules()?;
        let mut f = build_function(source, entry, ctx, opts)?;
        f.cache_key = cache_key.clone();
        Ok(Arc::new(f))
    })
}

fn build_function(
    source: &str,
    entry: &str,
    ctx: sys::CUcontext,
    opts: &CudaCompileOptions,
) -> Result<CudaFunction, RuntimeError> {
    // SAFETY: `ctx` came from a live stream.
    let _current = unsafe { CurrentContext::enter(ctx) }?;
    let device = driver::current_device()?;
    let arch = driver::compute_capability(device)?;
    let target = choose_target(arch)?;
    // A cache folder that cannot be made only costs recompiles; one that others could have
    // written to is refused.
    let cache_root = match cache::root() {
        Ok(root) => Some(root),
        Err(e @ RuntimeError::UnsafeCache { .. }) => return Err(e),
        Err(_) => None,
    };
    let (image_key, image) = image(cache_root.as_deref(), source, target, opts)?;

    let module = MODULES.get_or_try_insert(&format!("{:p}\0{image_key}", ctx), || {
        LoadedModule::load(&image, ctx).map(Arc::new)
    })?;
    let name = CString::new(entry).map_err(|_| RuntimeError::InvalidSource {
        what: "kernel name",
    })?;
    // SAFETY: the module was loaded into `ctx`, which is current.
    let func = unsafe { driver::module_function(module.module, &name) }?;

    use sys::CUdevice_attribute::*;
    // SAFETY: `func` was just obtained.
    let max_threads = unsafe {
        driver::function_attribute(
            func,
            sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK,
        )
    }?;
    Ok(CudaFunction {
        func,
        ctx,
        device,
        arch,
        name: entry.to_owned(),
        max_threads_per_block: max_threads as u32,
        multiprocessor_count: driver::device_attribute(
            device,
            CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT,
        )? as u32,
        max_shared_mem_optin: driver::device_attribute(
            device,
            CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN,
        )? as u32,
        dynamic_shared_limit: std::sync::atomic::AtomicU32::new(
            super::DEFAULT_DYNAMIC_SHARED_LIMIT,
        ),
        cache_key: String::new(),
        _module: module,
    })
}

/// CUBIN for the device's own architecture when NVRTC knows it; otherwise (a GPU newer than
/// NVRTC) PTX for the newest architecture NVRTC has, which the driver compiles at load time.
fn choose_target((major, minor): (u32, u32)) -> Result<Target, RuntimeError> {
    let wanted = major * 10 + minor;
    let archs = nvrtc::supported_archs()?;
    if archs.contains(&wanted) {
        return Ok(Target::Cubin(major, minor));
    }
    match archs.iter().copied().filter(|&a| a < wanted).max() {
        Some(a) => Ok(Target::Ptx(a / 10, a % 10)),
        // Older than anything NVRTC supports: let NVRTC's own error say so.
        None => Ok(Target::Cubin(major, minor)),
    }
}

/// The compiled image for `(source, target, opts)`: from memory, else disk (under
/// `cache_root`, if any), else NVRTC.
fn image(
    cache_root: Option<&std::path::Path>,
    source: &str,
    target: Target,
    opts: &CudaCompileOptions,
) -> Result<(String, Arc<Vec<u8>>), RuntimeError> {
    let (nv_major, nv_minor) = nvrtc::nvrtc_version()?;
    let options = nvrtc::options(target, opts);
    let key = cache::key(&[
        b"spikeforge-cuda-v1",
        source.as_bytes(),
        format!("nvrtc {nv_major}.{nv_minor}").as_bytes(),
        options.join("\0").as_bytes(),
    ]);
    let bytes = IMAGES.get_or_try_insert(&key, || {
        let ext = match target {
            Target::Cubin(..) => "cubin",
            Target::Ptx(..) => "ptx",
        };
        let path = match cache_root.map(|root| cache::subdir(root, "cuda")) {
            Some(Ok(dir)) => Some(dir.join(format!("{key}.{ext}"))),
            Some(Err(e @ RuntimeError::UnsafeCache { .. })) => return Err(e),
            _ => None,
        };
        if let Some(bytes) = path.as_deref().and_then(cache::read_blob) {
            return Ok(Arc::new(bytes));
        }
        let bytes = nvrtc::compile(source, target, opts)?;
        // A cache that cannot be written only costs a recompile in the next process.
        if let Some(p) = &path {
            let _ = cache::write_blob(p, &bytes);
        }
        Ok(Arc::new(bytes))
    })?;
    Ok((key, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nvrtc_or_skip(test: &str) -> bool {
        match nvrtc::ensure_loadable() {
            Ok(()) => true,
            Err(e) => {
                eprintln!("SKIPPED {test}: {e}");
                false
            }
        }
    }

    #[test]
    fn cubin_for_known_archs_ptx_for_newer_ones() {
        if !nvrtc_or_skip("cubin_for_known_archs_ptx_for_newer_ones") {
            return;
        }
        assert_eq!(choose_target((9, 0)).unwrap(), Target::Cubin(9, 0));
        let newest = *nvrtc::supported_archs().unwrap().iter().max().unwrap();
        assert_eq!(
            choose_target((99, 9)).unwrap(),
            Target::Ptx(newest / 10, newest % 10)
        );
    }

    #[test]
    fn images_are_cached_on_disk() {
        if !nvrtc_or_skip("images_are_cached_on_disk") {
            return;
        }
        let root = cache::test_dir("cuda-image");
        let src = "extern \"C\" __global__ void k(float* x) { x[threadIdx.x] *= 2.0f; }";
        let opts = CudaCompileOptions::default();
        let (key, bytes) = image(Some(&root), src, Target::Cubin(9, 0), &opts).unwrap();
        assert_eq!(&bytes[..4], b"\x7fELF");
        let on_disk = cache::read_blob(&root.join("cuda").join(format!("{key}.cubin"))).unwrap();
        assert_eq!(on_disk, *bytes);
        let (key2, again) = image(Some(&root), src, Target::Cubin(9, 0), &opts).unwrap();
        assert_eq!(key, key2);
        assert!(
            Arc::ptr_eq(&bytes, &again),
            "second request is a memory hit"
        );

        let (ptx_key, ptx) = image(Some(&root), src, Target::Ptx(9, 0), &opts).unwrap();
        assert_ne!(key, ptx_key);
        assert_eq!(
            ptx.last(),
            Some(&0),
            "PTX images are NUL-terminated for cuModuleLoadData"
        );
        let _ = std::fs::remove_dir_all(&root);
    }
}
