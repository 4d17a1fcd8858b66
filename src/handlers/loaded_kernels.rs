//! The kernels one call site has loaded, kept in its instance so that an execution after the
//! first is a lookup: the CPU kernel once, the CUDA kernel once per XLA stream (a stream belongs
//! to one context for its whole life, and a module is loaded per context).
//!
//! The loaders behind these caches are themselves cached by key in the runtime, so two call
//! sites of one model compile it once; this cache only saves the key hashing and map lookups.

use std::ffi::c_void;
use std::sync::{Arc, Mutex, OnceLock};

use super::poison;
use crate::runtime::cpu::{self, CpuCompileOptions, CpuModule};
use crate::runtime::cuda::{self, CudaCompileOptions, CudaFunction};
use crate::xla::{Buffer, FfiError};

/// A call site's loaded kernels: `C` for the CPU, `G` per CUDA stream.
pub struct LoadedKernels<C, G> {
    cpu: OnceLock<C>,
    cuda: Mutex<Vec<(usize, G)>>,
}

impl<C, G: Clone> LoadedKernels<C, G> {
    pub fn new() -> Self {
        LoadedKernels {
            cpu: OnceLock::new(),
            cuda: Mutex::new(Vec::new()),
        }
    }

    /// The CPU kernel, loaded by `load` the first time. Two first calls racing may both load; the
    /// runtime's own cache makes the second load a lookup, and one result is kept.
    pub fn cpu(&self, load: impl FnOnce() -> Result<C, FfiError>) -> Result<&C, FfiError> {
        if let Some(loaded) = self.cpu.get() {
            return Ok(loaded);
        }
        let loaded = load()?;
        Ok(self.cpu.get_or_init(|| loaded))
    }

    /// The CUDA kernel for `stream`, loaded by `load` the first time on that stream.
    pub fn cuda(
        &self,
        stream: *mut c_void,
        load: impl FnOnce() -> Result<G, FfiError>,
    ) -> Result<G, FfiError> {
        // A poisoned lock only means a panic elsewhere; the list itself is always consistent.
        let mut loaded = self.cuda.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, kernel)) = loaded.iter().find(|(s, _)| *s == stream as usize) {
            return Ok(kernel.clone());
        }
        let kernel = load()?;
        loaded.push((stream as usize, kernel.clone()));
        Ok(kernel)
    }
}

/// A loaded C kernel: its entry point `E` (a function pointer type), valid while the module is.
#[derive(Clone)]
pub struct CpuKernel<E> {
    pub entry: E,
    _module: Arc<CpuModule>,
}

impl<E: Copy, G: Clone> LoadedKernels<CpuKernel<E>, G> {
    /// The call site's generated C kernel `entry`: compiled from `source` once per `key` (the
    /// runtime's cache), loaded the first time.
    ///
    /// # Safety
    /// `E` must be the exact signature of the generated entry point `entry`.
    pub unsafe fn cpu_keyed(
        &self,
        key: &str,
        entry: &str,
        opts: &CpuCompileOptions,
        source: impl FnOnce() -> String,
    ) -> Result<&CpuKernel<E>, FfiError> {
        self.cpu(|| {
            let module = cpu::load_keyed(key, entry, opts, source)?;
            // SAFETY: forwarded to the caller, who vouches for the signature.
            let entry = unsafe { module.entry::<E>() };
            Ok(CpuKernel {
                entry,
                _module: module,
            })
        })
    }
}

impl<C> LoadedKernels<C, Arc<CudaFunction>> {
    /// A call's generated CUDA kernel `entry` on `stream`: compiled from `source` once per `key`
    /// (the runtime's cache) and loaded once per stream (this one); the call's results `rets`
    /// are poisoned first when poisoning is on (`SPIKEFORGE_POISON_OUTPUTS`), so that an element
    /// the kernel leaves unwritten shows.
    pub fn cuda_for_call(
        &self,
        stream: *mut c_void,
        key: &str,
        entry: &str,
        opts: &CudaCompileOptions,
        source: impl FnOnce() -> String,
        rets: &[Buffer<'_>],
    ) -> Result<Arc<CudaFunction>, FfiError> {
        self.cuda_loaded_for_call(stream, rets, || {
            Ok(cuda::load_function_keyed(key, entry, stream, opts, source)?)
        })
    }

    /// [`Self::cuda_for_call`] with the first load on `stream` done by `load` (a handler that
    /// chooses between compilations of its kernel).
    pub fn cuda_loaded_for_call(
        &self,
        stream: *mut c_void,
        rets: &[Buffer<'_>],
        load: impl FnOnce() -> Result<Arc<CudaFunction>, FfiError>,
    ) -> Result<Arc<CudaFunction>, FfiError> {
        let f = self.cuda(stream, load)?;
        if poison::enabled() {
            // SAFETY: the call's result buffers, device memory of these sizes, on XLA's stream.
            unsafe { poison::device(rets, stream) }?;
        }
        Ok(f)
    }
}

impl<C, G: Clone> Default for LoadedKernels<C, G> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_once_on_the_cpu_and_once_per_stream() {
        let kernels: LoadedKernels<u32, u32> = LoadedKernels::new();
        let mut loads = 0;
        for _ in 0..3 {
            let k = kernels.cpu(|| {
                loads += 1;
                Ok(7)
            });
            assert_eq!(k.copied(), Ok(7));
        }
        assert_eq!(loads, 1);
        let (a, b) = (0x10 as *mut c_void, 0x20 as *mut c_void);
        let mut loads = Vec::new();
        for stream in [a, b, a, b, a] {
            let k = kernels.cuda(stream, || {
                loads.push(stream as usize);
                Ok(stream as u32)
            });
            assert_eq!(k, Ok(stream as u32));
        }
        assert_eq!(loads, vec![0x10, 0x20]);
        // A failed load is not kept: the next call tries again.
        let empty: LoadedKernels<u32, u32> = LoadedKernels::new();
        assert!(empty
            .cpu(|| Err(FfiError::internal("no compiler")))
            .is_err());
        assert_eq!(empty.cpu(|| Ok(1)).copied(), Ok(1));
    }
}
