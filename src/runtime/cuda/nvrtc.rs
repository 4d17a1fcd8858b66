//! NVRTC: CUDA C++ source -> CUBIN (or PTX). Needs `libnvrtc.so.13` (and its companion
//! `libnvrtc-builtins.so.13.*`) but no GPU and no driver, so CI can compile-check kernels.
//!
//! NVRTC compiles inside this process, so it cannot be killed like the C compiler. A compile with
//! a time limit (`SPIKEFORGE_COMPILE_TIMEOUT`) runs on a thread of its own: the caller waits for
//! it until the limit and then returns [`RuntimeError::CompileTimedOut`]. The compile itself is
//! cancelled through NVRTC's flow callback (`nvrtcSetFlowCallback`, NVRTC 12.8+), which NVRTC
//! only calls between pieces of work: on a huge source the thread can go on for tens of seconds
//! past the limit (gaps of 34 s were seen in NVRTC 13.5) before it stops and frees the program.

use super::CudaCompileOptions;
use crate::runtime::cache;
use crate::runtime::error::{catch_panic, RuntimeError};
use crate::runtime::settings;
use cudarc::nvrtc::sys;
use std::ffi::{c_char, c_int, c_void, CString};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Checks that libnvrtc can be loaded before anything calls into cudarc, which would panic
/// instead of returning an error. Only success is remembered: a library the Python layer
/// preloads later is then still picked up.
pub(crate) fn ensure_loadable() -> Result<(), RuntimeError> {
    static PRESENT: AtomicBool = AtomicBool::new(false);
    if PRESENT.load(Ordering::Acquire) {
        return Ok(());
    }
    // SAFETY: only dlopens (and closes) the library; runs no code of ours in it.
    if unsafe { sys::is_culib_present() } {
        PRESENT.store(true, Ordering::Release);
        Ok(())
    } else {
        Err(RuntimeError::NvrtcNotFound)
    }
}

fn check(call: &'static str, r: sys::nvrtcResult) -> Result<(), RuntimeError> {
    if r == sys::nvrtcResult::NVRTC_SUCCESS {
        Ok(())
    } else {
        Err(RuntimeError::NvrtcCall {
            call,
            result: format!("{r:?}"),
        })
    }
}

/// The version of the loaded NVRTC, e.g. `(13, 0)`.
pub fn nvrtc_version() -> Result<(i32, i32), RuntimeError> {
    static VERSION: OnceLock<(i32, i32)> = OnceLock::new();
    if let Some(v) = VERSION.get() {
        return Ok(*v);
    }
    catch_panic("querying the NVRTC version", || {
        ensure_loadable()?;
        let (mut major, mut minor) = (0, 0);
        // SAFETY: two valid out-pointers.
        check("nvrtcVersion", unsafe {
            sys::nvrtcVersion(&mut major, &mut minor)
        })?;
        Ok(*VERSION.get_or_init(|| (major, minor)))
    })
}

/// The real architectures NVRTC can emit CUBIN for, as `10 * major + minor` (75, 80, ..., 120).
pub(crate) fn supported_archs() -> Result<&'static [u32], RuntimeError> {
    static ARCHS: OnceLock<Vec<u32>> = OnceLock::new();
    if let Some(v) = ARCHS.get() {
        return Ok(v);
    }
    catch_panic("querying NVRTC's architectures", || {
        ensure_loadable()?;
        let mut n: c_int = 0;
        // SAFETY: valid out-pointer.
        check("nvrtcGetNumSupportedArchs", unsafe {
            sys::nvrtcGetNumSupportedArchs(&mut n)
        })?;
        let mut archs = vec![0 as c_int; n.max(0) as usize];
        // SAFETY: the buffer holds the `n` entries NVRTC writes.
        check("nvrtcGetSupportedArchs", unsafe {
            sys::nvrtcGetSupportedArchs(archs.as_mut_ptr())
        })?;
        Ok(ARCHS
            .get_or_init(|| archs.into_iter().map(|a| a as u32).collect())
            .as_slice())
    })
}

/// What NVRTC should produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// Machine code for exactly this architecture (`sm_XY`), loaded as is.
    Cubin(u32, u32),
    /// PTX for a virtual architecture (`compute_XY`): the driver compiles it at load time for any
    /// newer GPU. Used when the GPU is newer than NVRTC.
    Ptx(u32, u32),
}

impl Target {
    pub(crate) fn arch_option(self) -> String {
        match self {
            Target::Cubin(major, minor) => format!("--gpu-architecture=sm_{major}{minor}"),
            Target::Ptx(major, minor) => format!("--gpu-architecture=compute_{major}{minor}"),
        }
    }
}

/// The full NVRTC option list for `target`.
pub(crate) fn options(target: Target, opts: &CudaCompileOptions) -> Vec<String> {
    let mut o = vec![target.arch_option(), "-std=c++17".to_owned()];
    if opts.fast_math {
        o.push("--use_fast_math".to_owned());
    }
    o.extend(opts.extra.iter().cloned());
    o
}

/// Compiles `source` to a CUBIN for the real architecture `arch` (e.g. `(9, 0)` for H100).
/// On a compile error the message carries NVRTC's log and the path of the kept source.
pub fn compile_cubin(
    source: &str,
    arch: (u32, u32),
    opts: &CudaCompileOptions,
) -> Result<Vec<u8>, RuntimeError> {
    compile(source, Target::Cubin(arch.0, arch.1), opts)
}

/// [`compile_cubin`] with ptxas's report (`--ptxas-options=-v`): the CUBIN and NVRTC's log,
/// which gives each kernel's registers, stack frame and spills (for tests of register
/// pressure). No time limit.
pub fn compile_cubin_report(
    source: &str,
    arch: (u32, u32),
    opts: &CudaCompileOptions,
) -> Result<(Vec<u8>, String), RuntimeError> {
    ensure_loadable()?;
    catch_panic("compiling CUDA code with NVRTC", || {
        let mut options = options(Target::Cubin(arch.0, arch.1), opts);
        options.push("--ptxas-options=-v".to_owned());
        let program = Program::new(source)?;
        program.compile(&options, None)?;
        Ok((program.cubin()?, program.log()?))
    })
}

/// Compiles `source` to PTX for the virtual architecture `compute_XY` of `arch`.
pub fn compile_ptx(
    source: &str,
    arch: (u32, u32),
    opts: &CudaCompileOptions,
) -> Result<String, RuntimeError> {
    let mut ptx = compile(source, Target::Ptx(arch.0, arch.1), opts)?;
    if ptx.last() == Some(&0) {
        ptx.pop();
    }
    String::from_utf8(ptx).map_err(|e| RuntimeError::Panic {
        during: "reading NVRTC's PTX",
        message: e.to_string(),
    })
}

/// Compiles `source` for `target`: the CUBIN, or the PTX with its terminating NUL (what
/// `cuModuleLoadData` expects). Stopped after `SPIKEFORGE_COMPILE_TIMEOUT`.
pub(crate) fn compile(
    source: &str,
    target: Target,
    opts: &CudaCompileOptions,
) -> Result<Vec<u8>, RuntimeError> {
    compile_within(source, target, opts, settings::compile_timeout()?)
}

/// [`compile`] with an explicit time limit (`None`: none): on a thread of its own, which the
/// caller stops waiting for when the time is up.
fn compile_within(
    source: &str,
    target: Target,
    opts: &CudaCompileOptions,
    timeout: Option<Duration>,
) -> Result<Vec<u8>, RuntimeError> {
    ensure_loadable()?;
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    let (Some(timeout), Some(deadline)) = (timeout, deadline) else {
        return compile_now(source, target, opts, None);
    };
    let (done, result) = std::sync::mpsc::channel();
    let (owned_source, opts) = (source.to_owned(), opts.clone());
    std::thread::Builder::new()
        .name("spikeforge-nvrtc".to_owned())
        .spawn(move || {
            let _ = done.send(compile_now(&owned_source, target, &opts, Some(deadline)));
        })
        .map_err(|e| RuntimeError::Panic {
            during: "starting a thread for NVRTC",
            message: e.to_string(),
        })?;
    match result.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        Ok(Err(RuntimeError::NvrtcCall { result, .. })) if result == "NVRTC_ERROR_CANCELLED" => {}
        Ok(r) => return r,
        // The thread goes on until NVRTC next calls the flow callback, which then cancels.
        Err(_) => {}
    }
    Err(RuntimeError::CompileTimedOut {
        compiler: "NVRTC".to_owned(),
        seconds: timeout.as_secs_f64(),
        source_path: keep_failed_source(source),
    })
}

/// Compiles on the calling thread; NVRTC cancels at its first flow callback after `deadline`.
fn compile_now(
    source: &str,
    target: Target,
    opts: &CudaCompileOptions,
    deadline: Option<Instant>,
) -> Result<Vec<u8>, RuntimeError> {
    catch_panic("compiling CUDA code with NVRTC", || {
        let options = options(target, opts);
        let program = Program::new(source)?;
        if let Err(e) = program.compile(&options, deadline) {
            let RuntimeError::NvrtcCall { result, .. } = &e else {
                return Err(e);
            };
            // Rejected source or options: NVRTC's log says what is wrong. Anything else (out of
            // memory, builtins missing) is reported as the failed call.
            let source_path = match result.as_str() {
                "NVRTC_ERROR_COMPILATION" => keep_failed_source(source),
                "NVRTC_ERROR_INVALID_OPTION" => None,
                _ => return Err(e),
            };
            return Err(RuntimeError::NvrtcCompile {
                log: program.log().unwrap_or_else(|e| format!("(no log: {e})")),
                source_path,
                options,
            });
        }
        match target {
            Target::Cubin(..) => program.cubin(),
            Target::Ptx(..) => program.ptx(),
        }
    })
}

/// Saves source NVRTC rejected under `<cache>/cuda/failed/`, so the error can point at it.
/// Best effort: the error is worth reporting even if the file cannot be written.
fn keep_failed_source(source: &str) -> Option<std::path::PathBuf> {
    let dir = cache::subdir(&cache::root().ok()?, "cuda/failed").ok()?;
    let path = dir.join(format!("{}.cu", cache::key(&[source.as_bytes()])));
    cache::write_atomic(&path, source.as_bytes()).ok()?;
    Some(path)
}

/// An NVRTC program, destroyed on drop.
struct Program(sys::nvrtcProgram);

impl Program {
    fn new(source: &str) -> Result<Self, RuntimeError> {
        let src = CString::new(source).map_err(|_| RuntimeError::InvalidSource {
            what: "CUDA source",
        })?;
        let mut prog: sys::nvrtcProgram = std::ptr::null_mut();
        // SAFETY: valid NUL-terminated strings; no headers.
        check("nvrtcCreateProgram", unsafe {
            sys::nvrtcCreateProgram(
                &mut prog,
                src.as_ptr(),
                c"spikeforge_kernel.cu".as_ptr(),
                0,
                std::ptr::null(),
                std::ptr::null(),
            )
        })?;
        Ok(Program(prog))
    }

    /// Compiles with `options`; cancelled (`NVRTC_ERROR_CANCELLED`) at the first flow callback
    /// after `deadline`, where NVRTC supports cancelling.
    fn compile(&self, options: &[String], deadline: Option<Instant>) -> Result<(), RuntimeError> {
        // Read by `past_deadline` during the compile, and outlives it.
        if let (Some(deadline), Some(set_flow_callback)) = (&deadline, flow_callback_setter()) {
            // SAFETY: a live program; `deadline` outlives the compile below, the only time NVRTC
            // calls the callback.
            check("nvrtcSetFlowCallback", unsafe {
                set_flow_callback(
                    self.0,
                    Some(past_deadline),
                    (deadline as *const Instant).cast_mut().cast(),
                )
            })?;
        }
        let owned: Vec<CString> = options
            .iter()
            .map(|o| CString::new(o.as_str()))
            .collect::<Result<_, _>>()
            .map_err(|_| RuntimeError::InvalidSource {
                what: "NVRTC option",
            })?;
        let ptrs: Vec<*const c_char> = owned.iter().map(|o| o.as_ptr()).collect();
        // SAFETY: `ptrs` holds `len` valid strings that outlive the call.
        check("nvrtcCompileProgram", unsafe {
            sys::nvrtcCompileProgram(self.0, ptrs.len() as c_int, ptrs.as_ptr())
        })
    }

    /// Reads one of NVRTC's outputs through its `size` + `get` pair.
    fn output(
        &self,
        names: (&'static str, &'static str),
        size: unsafe fn(sys::nvrtcProgram, *mut usize) -> sys::nvrtcResult,
        get: unsafe fn(sys::nvrtcProgram, *mut c_char) -> sys::nvrtcResult,
    ) -> Result<Vec<u8>, RuntimeError> {
        let mut n = 0usize;
        // SAFETY: valid program and out-pointer.
        check(names.0, unsafe { size(self.0, &mut n) })?;
        let mut buf = vec![0u8; n];
        // SAFETY: the buffer holds the `n` bytes NVRTC writes.
        check(names.1, unsafe { get(self.0, buf.as_mut_ptr().cast()) })?;
        Ok(buf)
    }

    fn log(&self) -> Result<String, RuntimeError> {
        let mut log = self.output(
            ("nvrtcGetProgramLogSize", "nvrtcGetProgramLog"),
            sys::nvrtcGetProgramLogSize,
            sys::nvrtcGetProgramLog,
        )?;
        while log.last() == Some(&0) {
            log.pop();
        }
        Ok(String::from_utf8_lossy(&log).into_owned())
    }

    fn cubin(&self) -> Result<Vec<u8>, RuntimeError> {
        self.output(
            ("nvrtcGetCUBINSize", "nvrtcGetCUBIN"),
            sys::nvrtcGetCUBINSize,
            sys::nvrtcGetCUBIN,
        )
    }

    fn ptx(&self) -> Result<Vec<u8>, RuntimeError> {
        self.output(
            ("nvrtcGetPTXSize", "nvrtcGetPTX"),
            sys::nvrtcGetPTXSize,
            sys::nvrtcGetPTX,
        )
    }
}

/// `nvrtcSetFlowCallback(prog, callback, payload)`.
type SetFlowCallback = unsafe extern "C" fn(
    sys::nvrtcProgram,
    Option<unsafe extern "C" fn(*mut c_void, *mut c_void) -> c_int>,
    *mut c_void,
) -> sys::nvrtcResult;

/// NVRTC's `nvrtcSetFlowCallback`, if this NVRTC has it (12.8 and later). cudarc does not bind it,
/// so it is looked up in the library cudarc loaded.
fn flow_callback_setter() -> Option<SetFlowCallback> {
    static SETTER: OnceLock<Option<SetFlowCallback>> = OnceLock::new();
    *SETTER.get_or_init(|| {
        // SAFETY: callers have checked `ensure_loadable`, so `culib` does not panic; the symbol's
        // type is NVRTC's documented signature.
        unsafe { sys::culib().get::<SetFlowCallback>(b"nvrtcSetFlowCallback") }
            .ok()
            .map(|f| *f)
    })
}

/// The flow callback: 1 (cancel) once the deadline `payload` points to has passed, else 0. Time
/// only moves forward, so once it cancels it keeps cancelling, as NVRTC requires; it is
/// thread-safe and calls no NVRTC function.
unsafe extern "C" fn past_deadline(payload: *mut c_void, _reserved: *mut c_void) -> c_int {
    // SAFETY: `payload` is the `Instant` registered in `Program::compile`, alive during the
    // compile.
    let deadline = unsafe { *payload.cast::<Instant>() };
    c_int::from(Instant::now() >= deadline)
}

impl Drop for Program {
    fn drop(&mut self) {
        // SAFETY: created by nvrtcCreateProgram, destroyed once. A failure here would only leak.
        let _ = unsafe { sys::nvrtcDestroyProgram(&mut self.0) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAXPY: &str = r#"
        extern "C" __global__ void saxpy(int n, float a, const float* x, float* y) {
            int i = blockIdx.x * blockDim.x + threadIdx.x;
            if (i < n) y[i] = a * x[i] + expf(y[i]);
        }
    "#;

    /// NVRTC tests need libnvrtc (LD_LIBRARY_PATH=.../site-packages/nvidia/cu13/lib) but no GPU;
    /// without it they print a note and pass.
    fn nvrtc_or_skip(test: &str) -> bool {
        match ensure_loadable() {
            Ok(()) => true,
            Err(e) => {
                eprintln!("SKIPPED {test}: {e}");
                false
            }
        }
    }

    #[test]
    fn version_is_13() {
        if !nvrtc_or_skip("version_is_13") {
            return;
        }
        let (major, _) = nvrtc_version().unwrap();
        assert!(major >= 13, "{major}");
        assert!(supported_archs().unwrap().contains(&90));
    }

    #[test]
    fn compiles_cubin_for_sm90() {
        if !nvrtc_or_skip("compiles_cubin_for_sm90") {
            return;
        }
        for fast_math in [false, true] {
            let opts = CudaCompileOptions {
                fast_math,
                ..Default::default()
            };
            let cubin = compile_cubin(SAXPY, (9, 0), &opts).unwrap();
            assert_eq!(&cubin[..4], b"\x7fELF");
        }
        let ptx = compile_ptx(SAXPY, (9, 0), &CudaCompileOptions::default()).unwrap();
        assert!(ptx.contains(".entry saxpy"), "{ptx}");
        assert!(ptx.contains(".target sm_90"), "{ptx}");
    }

    #[test]
    fn syntax_error_returns_the_log() {
        if !nvrtc_or_skip("syntax_error_returns_the_log") {
            return;
        }
        let bad = "extern \"C\" __global__ void k(float* x) { x[0] = undefined_name; }";
        let err = compile_cubin(bad, (9, 0), &CudaCompileOptions::default()).unwrap_err();
        match &err {
            RuntimeError::NvrtcCompile {
                log, source_path, ..
            } => {
                assert!(log.contains("undefined_name"), "{log}");
                if let Some(p) = source_path {
                    assert_eq!(std::fs::read_to_string(p).unwrap(), bad);
                }
            }
            other => panic!("expected NvrtcCompile, got {other:?}"),
        }
        assert!(err.to_string().contains("undefined_name"));
    }

    #[test]
    fn bad_option_is_an_error_not_a_panic() {
        if !nvrtc_or_skip("bad_option_is_an_error_not_a_panic") {
            return;
        }
        let opts = CudaCompileOptions {
            extra: vec!["--no-such-option".into()],
            ..Default::default()
        };
        let err = compile_cubin(SAXPY, (9, 0), &opts).unwrap_err();
        assert!(matches!(err, RuntimeError::NvrtcCompile { .. }), "{err:?}");
        assert!(err.to_string().contains("--no-such-option"), "{err}");
    }

    /// NVRTC runs in this process and cannot be killed: past its time limit the caller gets an
    /// error at once, and the compile (on its own thread) is cancelled at NVRTC's next flow
    /// callback. In a child process, to see that thread end.
    #[test]
    fn a_compile_past_its_time_is_abandoned_then_cancelled() {
        if !nvrtc_or_skip("a_compile_past_its_time_is_abandoned_then_cancelled") {
            return;
        }
        let out = crate::runtime::run_test_child(
            "runtime::cuda::nvrtc::tests::child_compiles_too_long",
            &[],
        );
        assert!(out.contains("THREAD ENDED"), "{out}");
    }

    /// The threads of this process named like the compile thread.
    fn nvrtc_threads() -> usize {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .filter(|name| name.trim() == "spikeforge-nvrt") // comm keeps 15 bytes
            .count()
    }

    #[test]
    #[ignore = "run by a_compile_past_its_time_is_abandoned_then_cancelled"]
    fn child_compiles_too_long() {
        // 300 chained sinf calls: NVRTC 13.5 needs about 20 s for this (it inlines and
        // optimises every call).
        let mut heavy = String::from("extern \"C\" __global__ void g(float* x) {\n");
        heavy.push_str("    float v = x[threadIdx.x];\n");
        for i in 0..300 {
            heavy.push_str(&format!("    v = v * 1.0001f + sinf(v + {i}.0f);\n"));
        }
        heavy.push_str("    x[threadIdx.x] = v;\n}\n");
        let t = Instant::now();
        let err = compile_within(
            &heavy,
            Target::Cubin(9, 0),
            &CudaCompileOptions::default(),
            Some(Duration::from_millis(500)),
        )
        .unwrap_err();
        let took = t.elapsed();
        let msg = err.to_string();
        assert!(
            matches!(err, RuntimeError::CompileTimedOut { .. }),
            "{err:?}"
        );
        assert!(
            msg.contains("took longer than 0.5 s, so NVRTC was stopped"),
            "{msg}"
        );
        assert!(msg.contains("SPIKEFORGE_COMPILE_TIMEOUT"), "{msg}");
        assert!(took < Duration::from_secs(3), "the caller waited {took:?}");
        // The abandoned compile is cancelled at NVRTC's next flow callback.
        while nvrtc_threads() > 0 {
            assert!(t.elapsed() < Duration::from_secs(60), "NVRTC never stopped");
            std::thread::sleep(Duration::from_millis(50));
        }
        println!(
            "THREAD ENDED after {:?} (caller released after {took:?})",
            t.elapsed()
        );
        // The same path lets an ordinary compile through.
        compile_within(
            SAXPY,
            Target::Cubin(9, 0),
            &CudaCompileOptions::default(),
            Some(Duration::from_secs(60)),
        )
        .unwrap();
    }

    #[test]
    fn missing_library_is_a_clear_error() {
        // Whichever way this machine is set up, the answer is consistent and never a panic.
        match (ensure_loadable(), nvrtc_version()) {
            (Ok(()), Ok(_)) => {}
            (Err(RuntimeError::NvrtcNotFound), Err(e)) => {
                assert!(e
                    .to_string()
                    .starts_with("libnvrtc.so.13 not found: pip install"));
            }
            other => panic!("inconsistent: {other:?}"),
        }
    }
}
