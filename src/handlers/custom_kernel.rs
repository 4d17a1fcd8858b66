//! `spikeforge_custom_call`: user kernels from source, one or several launches in order.
//!
//! Attributes: `plan` (JSON, see [`super::kernel_plan`]) and `key` (the SHA-256 of `plan`, hex).
//! The first call for a key parses and checks the plan; the kernels are compiled (NVRTC for CUDA,
//! the system C compiler for the C twins) and loaded once per key (and per stream on CUDA), so a
//! later call is a map lookup, buffer checks and the launches. No Python runs at launch time.
//!
//! Temporary buffers come from XLA's scratch allocator on CUDA (`XLA_FFI_DeviceMemory_Allocate`)
//! and are returned when the call ends. Returning them while the kernels may still be running is
//! what XLA's own custom calls do: the allocator hands memory out in the order of XLA's stream,
//! and every later user of that memory is queued behind our kernels on that stream.

use std::alloc::{self, Layout};
use std::ffi::c_void;
use std::sync::{Arc, LazyLock, Mutex, OnceLock};

use crate::runtime::cache::sha256_hex;

use super::kernel_plan::{check_device_limits, DeviceLimits, Plan, Resolved};
use crate::runtime::cache::Lru;
use crate::runtime::{cpu, cuda, RuntimeError};
use crate::xla::{Attrs, CallFrame, FfiError};

/// The loaded CUDA kernels of a plan, one a step.
type CudaKernels = Arc<Vec<Arc<cuda::CudaFunction>>>;

/// A plan resolved once per process, with the kernels it loaded.
struct Prepared {
    plan: Plan,
    buffers: Vec<Resolved>,
    cpu: OnceLock<Arc<CpuProgram>>,
    /// Per XLA stream (a stream belongs to one context for its whole life): one kernel a step.
    cuda: Mutex<Vec<(usize, CudaKernels)>>,
}

static PREPARED: LazyLock<Lru<Prepared>> = LazyLock::new(Lru::new);

fn prepared(attrs: &Attrs, key: &str) -> Result<Arc<Prepared>, FfiError> {
    PREPARED.get_or_try_insert(key, || {
        let text = attrs.get_str("plan")?;
        // Checked once per key: a key that lied would pick up another call's kernels.
        if sha256_hex(text) != key {
            return Err(FfiError::invalid_argument(
                "attribute 'key' is not the SHA-256 of attribute 'plan'",
            ));
        }
        let plan = Plan::from_json(text).map_err(FfiError::invalid_argument)?;
        let buffers = plan.resolve().map_err(FfiError::invalid_argument)?;
        Ok(Arc::new(Prepared {
            plan,
            buffers,
            cpu: OnceLock::new(),
            cuda: Mutex::new(Vec::new()),
        }))
    })
}

/// The data pointers of the call's arguments and results, checked against the plan.
fn call_buffers(call: &CallFrame, p: &Prepared) -> Result<Vec<*mut c_void>, FfiError> {
    let (n_in, n_out) = (p.plan.inputs.len(), p.plan.outputs.len());
    if call.num_args() != n_in || call.num_rets() != n_out {
        return Err(FfiError::invalid_argument(format!(
            "the kernel was planned for {n_in} inputs and {n_out} outputs, the call has {} and {}",
            call.num_args(),
            call.num_rets()
        )));
    }
    let mut ptrs = Vec::with_capacity(p.buffers.len());
    for (k, want) in p.buffers[..n_in].iter().enumerate() {
        let b = call.arg(k)?;
        b.expect(&want.name, want.dtype, &want.dims)?;
        ptrs.push(b.data);
    }
    for (k, want) in p.buffers[n_in..n_in + n_out].iter().enumerate() {
        let b = call.ret(k)?;
        b.expect(&want.name, want.dtype, &want.dims)?;
        ptrs.push(b.data);
    }
    Ok(ptrs)
}

/// `SPIKEFORGE_POISON_OUTPUTS=1`: outputs and temps are filled with 0xFF bytes before the first
/// launch, so a test catches an element no kernel wrote (or a temp read before it was written).
static POISON_OUTPUTS: LazyLock<bool> = LazyLock::new(|| {
    std::env::var("SPIKEFORGE_POISON_OUTPUTS").is_ok_and(|v| !v.is_empty() && v != "0")
});

fn runtime_error(e: RuntimeError) -> FfiError {
    FfiError::internal(e.to_string())
}

// ---------------------------------------------------------------------------------------------
// CPU: the C twins

/// `void name(void **args, const int64_t *sizes)`.
type CStep = unsafe extern "C" fn(*const *mut c_void, *const i64);

struct CpuProgram {
    /// One entry a step; the addresses stay valid while `_module` is alive.
    entries: Vec<CStep>,
    _module: Arc<cpu::CpuModule>,
}

/// Declarations every C twin may use without including them; `#line` keeps the compiler's line
/// numbers those of the user's source.
const C_PRELUDE: &str =
    "#include <stdint.h>\n#include <stddef.h>\n#include <stdbool.h>\n#include <math.h>\n#line 1 \"c_source\"\n";

fn cpu_program(p: &Prepared, key: &str) -> Result<Arc<CpuProgram>, FfiError> {
    if let Some(prog) = p.cpu.get() {
        return Ok(Arc::clone(prog));
    }
    let Some(c_source) = &p.plan.c_source else {
        return Err(FfiError::unimplemented(
            "this kernel has no C source, so it cannot run on the CPU: pass c_source= with a C \
             twin of each kernel (`void name(void **args, const int64_t *sizes)`)",
        ));
    };
    let opts = cpu::CpuCompileOptions {
        fast_math: p.plan.fast_math,
        extra_flags: vec![],
    };
    let first = p.plan.steps[0].c_name();
    let module = cpu::load_keyed(key, first, &opts, || format!("{C_PRELUDE}{c_source}"))
        .map_err(runtime_error)?;
    let mut entries = Vec::with_capacity(p.plan.steps.len());
    for step in &p.plan.steps {
        // SAFETY: the documented C convention; a wrong user signature is the user's contract.
        let symbol = unsafe { module.symbol::<CStep>(step.c_name()) }.map_err(runtime_error)?;
        entries.push(*symbol);
    }
    let prog = Arc::new(CpuProgram {
        entries,
        _module: module,
    });
    Ok(Arc::clone(p.cpu.get_or_init(|| prog)))
}

/// Host memory for the temps of a CPU call, 64-byte aligned, freed on drop.
struct HostTemp {
    ptr: *mut u8,
    layout: Layout,
}

impl HostTemp {
    fn new(bytes: usize) -> Result<Self, FfiError> {
        let layout = Layout::from_size_align(bytes.max(1), 64)
            .map_err(|e| FfiError::resource_exhausted(format!("temp of {bytes} bytes: {e}")))?;
        // SAFETY: non-zero size.
        let ptr = unsafe { alloc::alloc_zeroed(layout) };
        if ptr.is_null() {
            return Err(FfiError::resource_exhausted(format!(
                "could not allocate a temp of {bytes} bytes"
            )));
        }
        Ok(HostTemp { ptr, layout })
    }
}

impl Drop for HostTemp {
    fn drop(&mut self) {
        // SAFETY: allocated with this layout in `new`.
        unsafe { alloc::dealloc(self.ptr, self.layout) };
    }
}

pub fn run_cpu(call: &CallFrame) -> Result<(), FfiError> {
    let attrs = call.attrs()?;
    let key = attrs.get_str("key")?;
    let p = prepared(&attrs, key)?;
    let mut ptrs = call_buffers(call, &p)?;
    let prog = cpu_program(&p, key)?;
    let n_fixed = ptrs.len();
    let temps = p.buffers[n_fixed..]
        .iter()
        .map(|t| HostTemp::new(t.bytes))
        .collect::<Result<Vec<_>, _>>()?;
    ptrs.extend(temps.iter().map(|t| t.ptr.cast::<c_void>()));
    if *POISON_OUTPUTS {
        let first_output = p.plan.inputs.len();
        for (ptr, b) in ptrs.iter().zip(&p.buffers).skip(first_output) {
            // SAFETY: an output (XLA's, `bytes` long) or one of our temps.
            unsafe { std::ptr::write_bytes(ptr.cast::<u8>(), 0xFF, b.bytes) };
        }
    }
    for (step, entry) in p.plan.steps.iter().zip(&prog.entries) {
        let args: Vec<*mut c_void> = step.args.iter().map(|&a| ptrs[a]).collect();
        let sizes: Vec<i64> = step.args.iter().map(|&a| p.buffers[a].count).collect();
        // SAFETY: buffers were checked against the plan; the C twin follows the convention.
        unsafe { entry(args.as_ptr(), sizes.as_ptr()) };
    }
    drop(temps);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// CUDA

fn cuda_functions(p: &Prepared, key: &str, stream: *mut c_void) -> Result<CudaKernels, FfiError> {
    let mut loaded = p.cuda.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, f)) = loaded.iter().find(|(s, _)| *s == stream as usize) {
        return Ok(Arc::clone(f));
    }
    let opts = cuda::CudaCompileOptions {
        fast_math: p.plan.fast_math,
        ..Default::default()
    };
    let mut functions = Vec::with_capacity(p.plan.steps.len());
    for step in &p.plan.steps {
        let f = cuda::load_function_keyed(key, &step.kernel, stream, &opts, || {
            p.plan.cuda_source.clone()
        })
        .map_err(runtime_error)?;
        let limits = DeviceLimits {
            max_threads_per_block: f.max_threads_per_block(),
            max_shared_mem: f.max_shared_mem_per_block(),
        };
        check_device_limits(step, limits).map_err(FfiError::invalid_argument)?;
        functions.push(f);
    }
    let functions = Arc::new(functions);
    loaded.push((stream as usize, Arc::clone(&functions)));
    Ok(functions)
}

pub fn run_cuda(call: &CallFrame) -> Result<(), FfiError> {
    let attrs = call.attrs()?;
    let key = attrs.get_str("key")?;
    let p = prepared(&attrs, key)?;
    let mut ptrs = call_buffers(call, &p)?;
    let stream = call.stream()?;
    let functions = cuda_functions(&p, key, stream)?;
    let n_fixed = ptrs.len();
    // XLA refuses alignments above 16 (`kMaxAlignment` in its FFI API); its allocator hands out
    // blocks aligned far more than that anyway (the BFC allocator: 256 bytes).
    let temps = p.buffers[n_fixed..]
        .iter()
        .map(|t| {
            call.scratch(t.bytes.max(1), 16)
                .map_err(|e| e.context(format!("temp '{}'", t.name)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    ptrs.extend(temps.iter().map(|t| t.data()));
    if *POISON_OUTPUTS {
        let first_output = p.plan.inputs.len();
        for (ptr, b) in ptrs.iter().zip(&p.buffers).skip(first_output) {
            if b.bytes == 0 {
                continue;
            }
            // SAFETY: device memory of `bytes` bytes on XLA's stream for this call.
            unsafe { cuda::memset_async(*ptr, 0xFF, b.bytes, stream) }.map_err(runtime_error)?;
        }
    }
    for (step, f) in p.plan.steps.iter().zip(functions.iter()) {
        let mut args: Vec<*mut c_void> = step.args.iter().map(|&a| ptrs[a]).collect();
        let mut sizes: Vec<i64> = step.args.iter().map(|&a| p.buffers[a].count).collect();
        let mut params: Vec<*mut c_void> = args
            .iter_mut()
            .map(|a| (a as *mut *mut c_void).cast::<c_void>())
            .collect();
        if p.plan.sizes {
            params.extend(sizes.iter_mut().map(|s| (s as *mut i64).cast::<c_void>()));
        }
        let (g, b) = (step.grid, step.block);
        // SAFETY: the parameters are the documented convention (pointers, then `long long`
        // counts when `sizes`); the buffers live on XLA's stream for the call.
        unsafe {
            cuda::launch(
                f,
                (g[0], g[1], g[2]),
                (b[0], b[1], b[2]),
                step.shared_mem,
                stream,
                &mut params,
            )
        }
        .map_err(|e| FfiError::internal(format!("kernel '{}': {e}", step.kernel)))?;
    }
    drop(temps);
    Ok(())
}

crate::xla_ffi_handler!(pub fn sf_custom_call_cpu => run_cpu);
crate::xla_ffi_handler!(pub fn sf_custom_call_cuda => run_cuda);

// ---------------------------------------------------------------------------------------------
// Compile check (C ABI): NVRTC without a GPU

/// Compiles CUDA source with NVRTC to PTX for `arch` and checks that each named kernel is an
/// entry of it. Argument and answer are JSON (see `ffi/spikeforge.h`):
/// `{"source": str, "kernels": [str], "arch": [9, 0], "fast_math": bool}` ->
/// `{"ok": true, "ptx": str}` or `{"ok": false, "error": {"kind", "message"}}`, where `kind` is
/// `nvrtc_missing`, `compile` (the message carries NVRTC's log) or `kernel_not_found`.
///
/// # Safety
/// `request` must be a valid NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn sf_cuda_compile_check(
    request: *const std::ffi::c_char,
) -> *mut std::ffi::c_char {
    crate::capi::answer(request, |text| {
        #[derive(serde::Deserialize)]
        struct Request {
            source: String,
            #[serde(default)]
            kernels: Vec<String>,
            #[serde(default = "default_arch")]
            arch: (u32, u32),
            #[serde(default)]
            fast_math: bool,
        }
        fn default_arch() -> (u32, u32) {
            (9, 0)
        }
        let req: Request = match serde_json::from_str(text) {
            Ok(r) => r,
            Err(e) => return crate::capi::error_json("usage", e.to_string()),
        };
        let opts = cuda::CudaCompileOptions {
            fast_math: req.fast_math,
            ..Default::default()
        };
        match cuda::compile_ptx(&req.source, req.arch, &opts) {
            Err(e @ RuntimeError::NvrtcNotFound) => {
                crate::capi::error_json("nvrtc_missing", e.to_string())
            }
            Err(e) => crate::capi::error_json("compile", e.to_string()),
            Ok(ptx) => match missing_entry(&ptx, &req.kernels) {
                Some(name) => crate::capi::error_json(
                    "kernel_not_found",
                    format!(
                        "kernel `{name}` is not in the compiled source (is it declared \
                         extern \"C\" __global__ and spelled the same?)"
                    ),
                ),
                None => serde_json::json!({"ok": true, "ptx": ptx}),
            },
        }
    })
}

/// The first of `kernels` that is not an `.entry` of `ptx`.
fn missing_entry<'a>(ptx: &str, kernels: &'a [String]) -> Option<&'a str> {
    kernels
        .iter()
        .find(|k| !ptx.contains(&format!(".entry {k}(")))
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_found_by_exact_name() {
        let ptx = ".visible .entry relu(\n.param .u64 relu_param_0\n)";
        assert_eq!(missing_entry(ptx, &["relu".into()]), None);
        assert_eq!(missing_entry(ptx, &["rel".into()]), Some("rel"));
        assert_eq!(
            missing_entry(ptx, &["relu".into(), "sig".into()]),
            Some("sig")
        );
    }

    /// The C ABI answer for `request`, parsed.
    fn compile_check(request: serde_json::Value) -> serde_json::Value {
        let arg = std::ffi::CString::new(request.to_string()).unwrap();
        // SAFETY: a valid NUL-terminated string; the answer is freed below.
        let answer = unsafe { sf_cuda_compile_check(arg.as_ptr()) };
        assert!(!answer.is_null());
        // SAFETY: Rust-owned NUL-terminated JSON from `answer`.
        let text = unsafe { std::ffi::CStr::from_ptr(answer) }
            .to_string_lossy()
            .into_owned();
        // SAFETY: returned by the C ABI, freed once.
        unsafe { crate::capi::sf_string_free(answer) };
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn compile_check_reports_nvrtc_log_and_missing_kernels() {
        let good = r#"extern "C" __global__ void relu(const float* x, float* y) {
            y[threadIdx.x] = fmaxf(x[threadIdx.x], 0.0f); }"#;
        let answer = compile_check(serde_json::json!({"source": good, "kernels": ["relu"]}));
        if answer["error"]["kind"] == "nvrtc_missing" {
            assert!(
                std::env::var("SPIKEFORGE_REQUIRE_NVRTC").is_err(),
                "NVRTC required: {answer}"
            );
            eprintln!("SKIPPED compile_check_reports_nvrtc_log_and_missing_kernels: {answer}");
            return;
        }
        assert_eq!(answer["ok"], true, "{answer}");
        assert!(answer["ptx"].as_str().unwrap().contains(".entry relu("));

        let missing =
            compile_check(serde_json::json!({"source": good, "kernels": ["relu", "gelu"]}));
        assert_eq!(missing["error"]["kind"], "kernel_not_found", "{missing}");
        assert!(missing["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`gelu`"));

        let bad = good.replace("fmaxf", "fmax_f");
        let broken = compile_check(serde_json::json!({"source": bad, "kernels": ["relu"]}));
        assert_eq!(broken["error"]["kind"], "compile", "{broken}");
        let message = broken["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("identifier \"fmax_f\" is undefined"),
            "{message}"
        );

        let usage = compile_check(serde_json::json!({"kernels": []}));
        assert_eq!(usage["error"]["kind"], "usage", "{usage}");
    }

    #[test]
    fn key_is_the_sha256_of_the_plan() {
        // The value Python's hashlib.sha256(b"abc").hexdigest() gives.
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
