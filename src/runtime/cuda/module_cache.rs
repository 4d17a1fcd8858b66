//! Compiled images and loaded CUDA modules, cached so each source is compiled once per machine
//! and loaded once per context.
//!
//! Three levels, each a [`Memo`]:
//! * images (CUBIN/PTX bytes) by image key = sha256(source, target, NVRTC version, options),
//!   backed by `<cache>/cuda/<key>.cubin|.ptx` on disk;
//! * modules by (context, image key);
//! * functions by (context, source key, entry): the only level a warm call touches.
//!
//! Modules are never unloaded: a process loads a handful, and they live as long as XLA's context.

use super::driver::{self, CurrentContext};
use super::nvrtc::{self, Target};
use super::{CudaCompileOptions, CudaFunction};
use crate::runtime::cache::{self, Memo};
use crate::runtime::error::RuntimeError;
use cudarc::driver::sys;
use std::ffi::CString;
use std::sync::{Arc, LazyLock};

/// A module loaded into one context.
struct LoadedModule(sys::CUmodule);

// SAFETY: a module handle is an immutable driver object usable from any thread (with its context
// current, which every user here arranges).
unsafe impl Send for LoadedModule {}
unsafe impl Sync for LoadedModule {}

static IMAGES: LazyLock<Memo<Arc<Vec<u8>>>> = LazyLock::new(Memo::new);
static MODULES: LazyLock<Memo<Arc<LoadedModule>>> = LazyLock::new(Memo::new);
static FUNCTIONS: LazyLock<Memo<Arc<CudaFunction>>> = LazyLock::new(Memo::new);

/// See [`super::load_function`].
pub(crate) fn function(
    source: &str,
    entry: &str,
    ctx: sys::CUcontext,
    opts: &CudaCompileOptions,
) -> Result<Arc<CudaFunction>, RuntimeError> {
    let source_key = cache::key(&[source.as_bytes(), format!("{opts:?}").as_bytes()]);
    // The context address identifies the context: XLA keeps its contexts for the whole process.
    let memo_key = format!("{:p}\0{source_key}\0{entry}", ctx);
    FUNCTIONS.get_or_try_insert(&memo_key, || {
        build_function(source, entry, ctx, opts).map(Arc::new)
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
    let (image_key, image) = image(&cache::dir(), source, target, opts)?;

    let module = MODULES.get_or_try_insert(&format!("{:p}\0{image_key}", ctx), || {
        driver::load_module(&image).map(|m| Arc::new(LoadedModule(m)))
    })?;
    let name = CString::new(entry).map_err(|_| RuntimeError::InvalidSource {
        what: "kernel name",
    })?;
    // SAFETY: the module was loaded into `ctx`, which is current.
    let func = unsafe { driver::module_function(module.0, &name) }?;

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
/// `cache_root`), else NVRTC.
fn image(
    cache_root: &std::path::Path,
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
        let path = cache::subdir(cache_root, "cuda")
            .ok()
            .map(|d| d.join(format!("{key}.{ext}")));
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
        let (key, bytes) = image(&root, src, Target::Cubin(9, 0), &opts).unwrap();
        assert_eq!(&bytes[..4], b"\x7fELF");
        let on_disk = cache::read_blob(&root.join("cuda").join(format!("{key}.cubin"))).unwrap();
        assert_eq!(on_disk, *bytes);
        let (key2, again) = image(&root, src, Target::Cubin(9, 0), &opts).unwrap();
        assert_eq!(key, key2);
        assert!(
            Arc::ptr_eq(&bytes, &again),
            "second request is a memory hit"
        );

        let (ptx_key, ptx) = image(&root, src, Target::Ptx(9, 0), &opts).unwrap();
        assert_ne!(key, ptx_key);
        assert_eq!(
            ptx.last(),
            Some(&0),
            "PTX images are NUL-terminated for cuModuleLoadData"
        );
        let _ = std::fs::remove_dir_all(&root);
    }
}
