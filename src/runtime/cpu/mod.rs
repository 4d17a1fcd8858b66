//! CPU back end: generated C -> the system C compiler -> a shared library loaded with `dlopen`.
//!
//! A library is built once per machine and kept in the disk cache as a checksummed blob
//! (`<cache>/cpu/<key>.so`, next to the `<key>.c` it came from); a process loads the verified
//! bytes from a private copy ([`library`]), never the file in the cache. Loaded libraries are
//! kept in a bounded [`Lru`]: the least recently used is unloaded when no call holds it any more.
//! Later [`load`]s of a loaded source hash it and look it up.

mod compiler;
mod deadline;
#[cfg(test)]
mod hardening_tests;
mod library;
mod memfd;
mod parallel;

pub use parallel::{parallel_chunks, CHUNK_ALIGN};

use super::cache::{self, Aliases, Lru};
use super::error::{catch_panic, RuntimeError};
use super::settings;
use compiler::Compiler;
use library::Library;
use std::ffi::c_void;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

/// How to compile generated C.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct CpuCompileOptions {
    /// Add `-ffast-math` (the model spec's `fast_math`).
    pub fast_math: bool,
    /// More compiler flags, appended after the standard ones.
    pub extra_flags: Vec<String>,
}

impl CpuCompileOptions {
    /// The full flag list. `-fno-math-errno` always: errno is never read and setting it stops
    /// GCC from vectorising `sqrt`/`exp` calls; `-fopenmp-simd` honours `#pragma omp simd`
    /// without pulling in the OpenMP runtime; `-fno-trapping-math`: kernels never enable
    /// floating-point traps, and without it GCC keeps `floor`/`ceil` as library calls and will
    /// not speculate arithmetic into vector selects. Neither changes any result.
    pub fn flags(&self) -> Vec<String> {
        let mut f: Vec<String> = [
            "-O3",
            "-march=native",
            "-fPIC",
            "-shared",
            "-std=c11",
            "-fno-math-errno",
            "-fno-trapping-math",
            "-fopenmp-simd",
        ]
        .map(String::from)
        .into();
        if self.fast_math {
            f.push("-ffast-math".into());
        }
        f.extend(self.extra_flags.iter().cloned());
        f
    }
}

/// A compiled, loaded C library and the address of its entry point. The library is unloaded when
/// the last `Arc` to it goes (see [`load`]): hold one for as long as any address from it is used.
pub struct CpuModule {
    // Field order: `entry` points into `lib`, which must outlive every use of it.
    entry: *const c_void,
    entry_name: String,
    path: PathBuf,
    /// Its key in [`LOADED`].
    loaded_key: String,
    lib: Library,
}

// SAFETY: `entry` is the address of code in `lib`, which is immutable and stays mapped for as long
// as this value exists; a loaded library may be used from any thread.
unsafe impl Send for CpuModule {}
unsafe impl Sync for CpuModule {}

impl std::fmt::Debug for CpuModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuModule")
            .field("entry", &self.entry_name)
            .field("path", &self.path)
            .finish()
    }
}

impl CpuModule {
    /// The entry point resolved by [`load`], as a function pointer of type `F`.
    ///
    /// # Safety
    /// `F` must be an `extern "C"` function pointer type matching the C definition.
    pub unsafe fn entry<F: Copy>(&self) -> F {
        assert_eq!(
            std::mem::size_of::<F>(),
            std::mem::size_of::<*const c_void>(),
            "CpuModule::entry: F must be a function pointer type"
        );
        // SAFETY: same size checked above; the caller vouches for the signature.
        unsafe { std::mem::transmute_copy::<*const c_void, F>(&self.entry) }
    }

    /// The address of the entry point resolved by [`load`].
    pub fn entry_ptr(&self) -> *const c_void {
        self.entry
    }

    /// The name of the entry point resolved by [`load`].
    pub fn entry_name(&self) -> &str {
        &self.entry_name
    }

    /// Any symbol of the library. `T` is the symbol's type: a function pointer type for
    /// functions, `*mut U` for data.
    ///
    /// # Safety
    /// `T` must match the symbol's actual definition.
    pub unsafe fn symbol<T>(&self, name: &str) -> Result<libloading::Symbol<'_, T>, RuntimeError> {
        // SAFETY: forwarded to the caller.
        unsafe { self.lib.get::<T>(name) }.map_err(|_| RuntimeError::KernelNotFound {
            name: name.to_owned(),
            module: self.path.display().to_string(),
        })
    }

    /// Where the shared library is kept in the cache (as a checksummed blob; the loaded copy is
    /// private to the process).
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Compiles `source` (C11) with `$CC` (else `cc`) into a shared library, loads it and resolves
/// `entry`. Cached on disk (keyed by the source, the flags, the compiler's `--version` and the
/// host CPU) and in memory (keyed by the same plus `entry`): repeated calls return the same
/// `Arc` without running the compiler or touching the disk, while the library stays loaded. It
/// stays loaded while anyone holds the `Arc`, and while it is among the most recently used
/// `SPIKEFORGE_MAX_LOADED_MODULES` (default 1024) libraries.
pub fn load(
    source: &str,
    entry: &str,
    opts: &CpuCompileOptions,
) -> Result<Arc<CpuModule>, RuntimeError> {
    catch_panic("loading a CPU kernel", || {
        load_with(source, entry, opts, &Compiler::from_env()?, &cache::root()?)
    })
}

/// Like [`load`], for callers that can name the source without building it: `key` must
/// determine `source()` completely (e.g. the hash of the model spec). When `(key, entry, opts)`
/// was loaded before and is still loaded, `source` is not called at all; otherwise the source
/// is built and goes through [`load`] (so the disk cache is keyed by the source itself, and a
/// stale `key` can never pick up code from an older code generator).
pub fn load_keyed(
    key: &str,
    entry: &str,
    opts: &CpuCompileOptions,
    source: impl FnOnce() -> String,
) -> Result<Arc<CpuModule>, RuntimeError> {
    by_key(key, entry, opts, || load(&source(), entry, opts))
}

/// Libraries loaded by this process, by disk key + entry + cache folder.
static LOADED: LazyLock<Lru<CpuModule>> = LazyLock::new(Lru::new);

fn by_key(
    key: &str,
    entry: &str,
    opts: &CpuCompileOptions,
    load: impl FnOnce() -> Result<Arc<CpuModule>, RuntimeError>,
) -> Result<Arc<CpuModule>, RuntimeError> {
    static ALIASES: LazyLock<Aliases> = LazyLock::new(Aliases::new);
    let alias = format!("{key}\0{entry}\0{opts:?}");
    if let Some(module) = ALIASES.resolve(&alias, &LOADED) {
        return Ok(module);
    }
    let module = load()?;
    ALIASES.record(&alias, &module.loaded_key);
    Ok(module)
}

fn load_with(
    source: &str,
    entry: &str,
    opts: &CpuCompileOptions,
    compiler: &Compiler,
    cache_root: &Path,
) -> Result<Arc<CpuModule>, RuntimeError> {
    let flags = opts.flags();
    let key = disk_key(source, &flags, compiler)?;
    let loaded_key = format!("{key}\0{entry}\0{}", cache_root.display());
    LOADED.get_or_try_insert(&loaded_key, || {
        // Checked on every load (a hit implies an earlier successful load).
        settings::max_loaded_modules()?;
        let (mut module, _) = build_and_open(source, entry, &flags, compiler, &key, cache_root)?;
        module.loaded_key.clone_from(&loaded_key);
        Ok(Arc::new(module))
    })
}

fn disk_key(source: &str, flags: &[String], compiler: &Compiler) -> Result<String, RuntimeError> {
    let fingerprint = compiler.fingerprint()?;
    Ok(cache::key(&[
        // v2: entries are checksummed blobs (v1 were bare libraries).
        b"spikeforge-cpu-v2",
        source.as_bytes(),
        flags.join("\0").as_bytes(),
        fingerprint.as_bytes(),
    ]))
}

/// Loads the library `<cache>/cpu/<key>.so`, compiling it first if it is not there, fails its
/// checksum, or fails to load. Also says whether the compiler ran (false: the library came from
/// the disk cache).
fn build_and_open(
    source: &str,
    entry: &str,
    flags: &[String],
    compiler: &Compiler,
    key: &str,
    cache_root: &Path,
) -> Result<(CpuModule, bool), RuntimeError> {
    let dir = cache::subdir(cache_root, "cpu")?;
    let so_path = dir.join(format!("{key}.so"));
    if let Some(bytes) = cache::read_blob(&so_path) {
        match open(&bytes, &so_path, entry) {
            Ok(module) => return Ok((module, false)),
            // Intact but unloadable (built against another C library, say): rebuild it.
            Err(RuntimeError::LoadFailed { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    // The source is kept next to the library: it is what a failed compile reports, and what
    // one looks at when profiling the library.
    let c_path = dir.join(format!("{key}.c"));
    cache::write_atomic(&c_path, source.as_bytes())?;
    let scratch = cache::Scratch::new(cache_root)?;
    let out = scratch.path().join(format!("{key}.so"));
    compiler.compile_shared(&c_path, &out, flags)?;
    let bytes =
        std::fs::read(&out).map_err(|e| RuntimeError::io("read the compiled library", &out, e))?;
    drop(scratch);
    cache::write_blob(&so_path, &bytes)?;
    Ok((open(&bytes, &so_path, entry)?, true))
}

/// Loads the verified library `bytes` (kept in the cache at `path`) and resolves `entry`.
fn open(bytes: &[u8], path: &Path, entry: &str) -> Result<CpuModule, RuntimeError> {
    let label = path
        .file_name()
        .map(|n| format!("spikeforge-{}", n.to_string_lossy()))
        .unwrap_or_else(|| "spikeforge".to_owned());
    let lib = Library::load(bytes, &label).map_err(|message| RuntimeError::LoadFailed {
        path: path.to_owned(),
        message,
    })?;
    // SAFETY: reading a symbol's address as a data pointer is valid for any symbol.
    let entry_ptr = match unsafe { lib.get::<*mut c_void>(entry) } {
        Ok(sym) => *sym as *const c_void,
        Err(_) => {
            return Err(RuntimeError::KernelNotFound {
                name: entry.to_owned(),
                module: path.display().to_string(),
            })
        }
    };
    Ok(CpuModule {
        entry: entry_ptr,
        entry_name: entry.to_owned(),
        path: path.to_owned(),
        loaded_key: String::new(),
        lib,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A loop GCC vectorises (with libmvec calls for `expf` under -ffast-math).
    const SAXPY_EXP: &str = r#"
        #include <math.h>
        #include <stddef.h>
        void saxpy_exp(size_t n, float a, const float *restrict x, float *restrict y) {
            #pragma omp simd
            for (size_t i = 0; i < n; i++) y[i] = a * x[i] + expf(-x[i] * x[i]);
        }
        int answer(void) { return 42; }
    "#;

    type SaxpyFn = unsafe extern "C" fn(usize, f32, *const f32, *mut f32);

    fn gcc() -> Compiler {
        Compiler::new("cc")
    }

    fn check_saxpy(m: &CpuModule, tag: u32) {
        let n = 1003; // not a multiple of any vector width: exercises the loop tail
        let mut state = 0x9e37_79b9_u32 ^ tag;
        let x: Vec<f32> = (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                (state as f32 / u32::MAX as f32) * 6.0 - 3.0
            })
            .collect();
        let mut y = vec![0f32; n];
        // SAFETY: matches the C signature; buffers hold n elements.
        unsafe { m.entry::<SaxpyFn>()(n, 1.5, x.as_ptr(), y.as_mut_ptr()) };
        for (xi, yi) in x.iter().zip(&y) {
            let want = 1.5 * xi + (-xi * xi).exp();
            assert!(
                (yi - want).abs() <= 1e-5 * want.abs().max(1.0),
                "{yi} vs {want}"
            );
        }
    }

    #[test]
    fn compiles_loads_and_computes() {
        let root = cache::test_dir("cpu-ok");
        for fast_math in [false, true] {
            let opts = CpuCompileOptions {
                fast_math,
                ..Default::default()
            };
            let m = load_with(SAXPY_EXP, "saxpy_exp", &opts, &gcc(), &root).unwrap();
            check_saxpy(&m, fast_math as u32);
            // SAFETY: `int answer(void)`.
            let answer = unsafe { m.symbol::<unsafe extern "C" fn() -> i32>("answer") }.unwrap();
            assert_eq!(unsafe { answer() }, 42);
            assert!(matches!(
                unsafe { m.symbol::<unsafe extern "C" fn()>("nope") },
                Err(RuntimeError::KernelNotFound { .. })
            ));
        }
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn second_load_is_a_cache_hit() {
        let root = cache::test_dir("cpu-hit");
        let opts = CpuCompileOptions::default();
        let src = format!("{SAXPY_EXP}\n/* hit test */\n");

        let t = std::time::Instant::now();
        let a = load_with(&src, "saxpy_exp", &opts, &gcc(), &root).unwrap();
        let first = t.elapsed();
        let t = std::time::Instant::now();
        let b = load_with(&src, "saxpy_exp", &opts, &gcc(), &root).unwrap();
        let second = t.elapsed();
        assert!(Arc::ptr_eq(&a, &b), "in-memory hit returns the same module");
        assert!(
            second < first / 10,
            "hit took {second:?}, compile {first:?}"
        );

        // A new process (simulated by skipping the memo) finds the library on disk.
        let flags = opts.flags();
        let key = disk_key(&src, &flags, &gcc()).unwrap();
        let (module, compiled) =
            build_and_open(&src, "saxpy_exp", &flags, &gcc(), &key, &root).unwrap();
        assert!(!compiled, "disk hit must not run the compiler");
        check_saxpy(&module, 7);

        // A damaged library left by another process is rebuilt, not loaded.
        let src = format!("{SAXPY_EXP}\n/* damaged test */\n");
        let key = disk_key(&src, &flags, &gcc()).unwrap();
        let so_path = cache::subdir(&root, "cpu")
            .unwrap()
            .join(format!("{key}.so"));
        cache::write_atomic(&so_path, b"not an ELF file").unwrap();
        let (module, compiled) =
            build_and_open(&src, "saxpy_exp", &flags, &gcc(), &key, &root).unwrap();
        assert!(compiled, "a damaged library must be rebuilt");
        check_saxpy(&module, 8);
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn keyed_load_skips_codegen_on_hit() {
        let root = cache::test_dir("cpu-keyed");
        let opts = CpuCompileOptions::default();
        let key = format!("keyed-test-{}", std::process::id());
        let a = by_key(&key, "answer", &opts, || {
            load_with(
                "int answer(void) { return 7; }",
                "answer",
                &opts,
                &gcc(),
                &root,
            )
        })
        .unwrap();
        let b = by_key(&key, "answer", &opts, || panic!("source rebuilt on a hit")).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        let _ = std::fs::remove_dir_all(&root);
    }

    /// `CC=/nonexistent` in the environment: checked in a child process.
    #[test]
    fn cc_from_environment_is_used() {
        let root = cache::test_dir("cpu-env");
        crate::runtime::run_test_child(
            "runtime::cpu::tests::child_with_cc_env",
            &[
                ("CC", "/nonexistent".as_ref()),
                ("SPIKEFORGE_CACHE_DIR", root.as_os_str()),
            ],
        );
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    #[ignore = "run by cc_from_environment_is_used with CC=/nonexistent"]
    fn child_with_cc_env() {
        assert_eq!(std::env::var("CC").as_deref(), Ok("/nonexistent"));
        let err = load("int f(void){return 1;}", "f", &CpuCompileOptions::default()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("could not run `/nonexistent`"), "{msg}");
        assert!(
            msg.contains("install gcc: apt-get install gcc, or set CC"),
            "{msg}"
        );
    }

    #[test]
    fn syntax_error_reports_compiler_output_and_keeps_source() {
        let root = cache::test_dir("cpu-bad");
        let src = "void broken(void) { int x = ; }\n";
        let err =
            load_with(src, "broken", &CpuCompileOptions::default(), &gcc(), &root).unwrap_err();
        let msg = err.to_string();
        match &err {
            RuntimeError::CompileFailed {
                stderr,
                source_path,
                ..
            } => {
                assert!(stderr.contains("error"), "{stderr}");
                assert_eq!(std::fs::read_to_string(source_path).unwrap(), src);
                assert!(msg.contains(&source_path.display().to_string()));
                assert!(msg.contains(stderr.trim_end()));
            }
            other => panic!("expected CompileFailed, got {other:?}"),
        }
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn missing_entry_is_reported() {
        let root = cache::test_dir("cpu-entry");
        let err = load_with(
            "int f(void){return 1;}",
            "g",
            &CpuCompileOptions::default(),
            &gcc(),
            &root,
        )
        .unwrap_err();
        assert!(
            matches!(err, RuntimeError::KernelNotFound { ref name, .. } if name == "g"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn missing_compiler_says_install_gcc() {
        let root = cache::test_dir("cpu-nocc");
        let err = load_with(
            "int f(void){return 1;}",
            "f",
            &CpuCompileOptions::default(),
            &Compiler::new("/nonexistent"),
            &root,
        )
        .unwrap_err();
        assert!(matches!(err, RuntimeError::NoCCompiler { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("/nonexistent"), "{msg}");
        assert!(
            msg.contains("install gcc: apt-get install gcc, or set CC"),
            "{msg}"
        );
        let _ = std::fs::remove_dir_all(&root);
    }
}
