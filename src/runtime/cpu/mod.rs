//! CPU back end: generated C -> the system C compiler -> a shared library loaded with `dlopen`.
//!
//! A library is built once per machine (cached on disk under `<cache>/cpu/<key>.so`, next to the
//! `<key>.c` it came from) and loaded once per process (cached in memory); later [`load`]s of the
//! same source hash it and look it up.

mod compiler;
mod parallel;

pub use parallel::{parallel_chunks, CHUNK_ALIGN};

use super::cache::{self, Memo};
use super::error::{catch_panic, RuntimeError};
use compiler::Compiler;
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

/// A compiled, loaded C library and the address of its entry point.
pub struct CpuModule {
    // Field order: `entry` points into `lib`, which must outlive every use of it.
    entry: *const c_void,
    entry_name: String,
    path: PathBuf,
    lib: libloading::Library,
}

// SAFETY: `entry` is the address of code in `lib`, which is immutable and stays mapped for as long
// as this value exists; `libloading::Library` is itself Send + Sync.
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

    /// Where the shared library lives in the cache.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Compiles `source` (C11) with `$CC` (else `cc`) into a shared library, loads it and resolves
/// `entry`. Cached on disk (keyed by the source, the flags, the compiler's `--version` and the
/// host CPU) and in memory (keyed by the same plus `entry`): repeated calls return the same
/// `Arc` without running the compiler or touching the disk.
pub fn load(
    source: &str,
    entry: &str,
    opts: &CpuCompileOptions,
) -> Result<Arc<CpuModule>, RuntimeError> {
    catch_panic("loading a CPU kernel", || {
        load_with(source, entry, opts, &Compiler::from_env(), &cache::dir())
    })
}

/// Like [`load`], for callers that can name the source without building it: `key` must
/// determine `source()` completely (e.g. the hash of the model spec). When `(key, entry, opts)`
/// has been loaded before in this process, `source` is not called at all; otherwise the source
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

fn by_key(
    key: &str,
    entry: &str,
    opts: &CpuCompileOptions,
    load: impl FnOnce() -> Result<Arc<CpuModule>, RuntimeError>,
) -> Result<Arc<CpuModule>, RuntimeError> {
    static BY_KEY: LazyLock<Memo<Arc<CpuModule>>> = LazyLock::new(Memo::new);
    let memo_key = format!("{key}\0{entry}\0{opts:?}");
    BY_KEY.get_or_try_insert(&memo_key, load)
}

/// Libraries loaded by this process, by disk key + entry + cache folder.
static LOADED: LazyLock<Memo<Arc<CpuModule>>> = LazyLock::new(Memo::new);

fn load_with(
    source: &str,
    entry: &str,
    opts: &CpuCompileOptions,
    compiler: &Compiler,
    cache_root: &Path,
) -> Result<Arc<CpuModule>, RuntimeError> {
    let flags = opts.flags();
    let key = disk_key(source, &flags, compiler)?;
    let memo_key = format!("{key}\0{entry}\0{}", cache_root.display());
    LOADED.get_or_try_insert(&memo_key, || {
        build_and_open(source, entry, &flags, compiler, &key, cache_root)
            .map(|(module, _)| Arc::new(module))
    })
}

fn disk_key(source: &str, flags: &[String], compiler: &Compiler) -> Result<String, RuntimeError> {
    let fingerprint = compiler.fingerprint()?;
    Ok(cache::key(&[
        b"spikeforge-cpu-v1",
        source.as_bytes(),
        flags.join("\0").as_bytes(),
        fingerprint.as_bytes(),
    ]))
}

/// Opens `<cache>/cpu/<key>.so`, compiling it first if it is not there (or is unloadable).
/// Also says whether the compiler ran (false: the library came from the disk cache).
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
    if so_path.exists() {
        match open(&so_path, entry) {
            Ok(module) => return Ok((module, false)),
            // Damaged entry (e.g. the disk filled up while it was written): rebuild it.
            Err(RuntimeError::LoadFailed { .. }) => {
                let _ = std::fs::remove_file(&so_path);
            }
            Err(e) => return Err(e),
        }
    }
    // The source is kept next to the library: it is what a failed compile reports, and what
    // one looks at when profiling the library.
    let c_path = dir.join(format!("{key}.c"));
    cache::write_atomic(&c_path, source.as_bytes())?;
    let tmp = cache::temp_path(&so_path);
    compiler.compile_shared(&c_path, &tmp, flags)?;
    cache::commit(&tmp, &so_path)?;
    Ok((open(&so_path, entry)?, true))
}

fn open(path: &Path, entry: &str) -> Result<CpuModule, RuntimeError> {
    let load_failed = |e: libloading::Error| RuntimeError::LoadFailed {
        path: path.to_owned(),
        message: error_chain(&e),
    };
    // RTLD_NOW: resolve every symbol now, so a missing one is an error here rather than the
    // dynamic linker killing the process at the first call.
    #[cfg(unix)]
    let lib: libloading::Library = {
        use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};
        // SAFETY: the library is generated C with no initialisers.
        unsafe { Library::open(Some(path), RTLD_NOW | RTLD_LOCAL) }
            .map_err(load_failed)?
            .into()
    };
    #[cfg(not(unix))]
    // SAFETY: as above.
    let lib = unsafe { libloading::Library::new(path) }.map_err(load_failed)?;

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
        lib,
    })
}

/// `e` and its causes, joined: libloading's own message is only "dlopen failed".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
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

        // A damaged library left by another process is rebuilt, not loaded. (A fresh source:
        // dlopen matches paths this process already loaded by name, without reading the file.)
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

    /// `CC=/nonexistent` in the environment: checked in a child process (this test binary
    /// again, running only `child_with_cc_env`), since changing the environment of a
    /// multi-threaded test process is racy.
    #[test]
    fn cc_from_environment_is_used() {
        let root = cache::test_dir("cpu-env");
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "runtime::cpu::tests::child_with_cc_env",
                "--ignored",
                "--nocapture",
            ])
            .env("CC", "/nonexistent")
            .env("SPIKEFORGE_CACHE_DIR", &root)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("1 passed"), "child test did not run: {text}");
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
