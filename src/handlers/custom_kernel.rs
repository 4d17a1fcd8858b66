//! `spikeforge_custom_call`: user kernels from source, one or several launches in order.
//!
//! Attributes: `plan` (JSON, see [`super::kernel_plan`]) and `key` (the SHA-256 of `plan`, hex).
//! Instantiation (once per call site) checks the key against the plan, then parses and checks
//! the plan; the kernels are compiled (NVRTC for CUDA, the system C compiler for the C twins) and
//! loaded by the first execution (once per stream on CUDA), so a later execution is buffer
//! checks and the launches. No Python runs at launch time.
//!
//! The call's results are the plan's outputs, then its temps: XLA allocates the temporary
//! buffers with the others and Python drops them, so an execution allocates nothing and launches
//! the same kernels every time (on CUDA it may be captured into a CUDA graph). An output declared
//! in place (`input_output_aliases` in Python) arrives as its input's buffer: it is not poisoned.

use std::ffi::c_void;
use std::sync::Arc;

use super::buffers::{self, Expected};
use super::kernel_plan::{check_device_limits, DeviceLimits, Plan, Resolved};
use super::loaded_kernels::LoadedKernels;
use super::poison;
use crate::runtime::cache::sha256_hex;
use crate::runtime::{cpu, cuda, RuntimeError};
use crate::xla::{CallFrame, FfiError, Handler, HandlerTraits, Instance};

/// The loaded CUDA kernels of a plan, one a step.
type CudaKernels = Arc<Vec<Arc<cuda::CudaFunction>>>;

/// One call site of `spikeforge_custom_call`: the checked plan and the kernels it loaded.
pub struct CustomCall {
    key: String,
    plan: Plan,
    /// Every buffer, numbered as the plan numbers them: inputs, outputs, temps.
    buffers: Vec<Resolved>,
    /// For each step, the element counts of its buffers (the `sizes` the kernels receive).
    step_sizes: Vec<Vec<i64>>,
    kernels: LoadedKernels<CpuProgram, CudaKernels>,
}

impl Instance for CustomCall {
    fn instantiate(call: &CallFrame) -> Result<CustomCall, FfiError> {
        let attrs = call.attrs()?;
        let key = attrs.get_str("key")?;
        let text = attrs.get_str("plan")?;
        // A key that lied would pick up another plan's kernels from the caches keyed by it.
        if sha256_hex(text) != key {
            return Err(FfiError::invalid_argument(
                "attribute 'key' is not the SHA-256 of attribute 'plan'",
            ));
        }
        let plan = Plan::from_json(text)?;
        let buffers = plan.resolve()?;
        let step_sizes = plan
            .steps
            .iter()
            .map(|step| step.args.iter().map(|&a| buffers[a].count).collect())
            .collect();
        Ok(CustomCall {
            key: key.to_owned(),
            plan,
            buffers,
            step_sizes,
            kernels: LoadedKernels::new(),
        })
    }
}

impl CustomCall {
    /// The data pointers of the call's buffers in the plan's numbering (arguments, then the
    /// results: outputs and temps), each checked against the plan, and the results' byte sizes.
    fn call_buffers<'a>(&self, call: &CallFrame<'a>) -> Result<buffers::Checked<'a>, FfiError> {
        let expected: Vec<Expected> = self
            .buffers
            .iter()
            .map(|b| Expected {
                name: &b.name,
                dtype: b.dtype,
                dims: &b.dims,
            })
            .collect();
        let (args, rets) = expected.split_at(self.plan.inputs.len());
        buffers::check(call, args, rets)
    }
}

/// The results that are not also arguments: what poisoning fills. An output the caller declared
/// in place (`input_output_aliases`) is its input's buffer, which the kernel still has to read.
fn fresh_results<'c, 'a>(
    checked: &'c buffers::Checked<'a>,
) -> impl Iterator<Item = &'c crate::xla::Buffer<'a>> + 'c {
    checked
        .rets
        .iter()
        .filter(|r| !checked.args.contains(&r.data))
}

/// Every buffer pointer of a call, in the plan's numbering.
fn all_pointers(checked: &buffers::Checked) -> Vec<*mut c_void> {
    checked
        .args
        .iter()
        .copied()
        .chain(checked.ret_ptrs())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// CPU: the C twins

/// `void name(void **args, const int64_t *sizes)`.
type CStep = unsafe extern "C" fn(*const *mut c_void, *const i64);

#[derive(Clone)]
struct CpuProgram {
    /// One entry a step; the addresses stay valid while `_module` is alive.
    entries: Vec<CStep>,
    _module: Arc<cpu::CpuModule>,
}

/// Declarations every C twin may use without including them; `#line` keeps the compiler's line
/// numbers those of the user's source.
const C_PRELUDE: &str =
    "#include <stdint.h>\n#include <stddef.h>\n#include <stdbool.h>\n#include <math.h>\n#line 1 \"c_source\"\n";

fn cpu_program(site: &CustomCall) -> Result<CpuProgram, FfiError> {
    let plan = &site.plan;
    let Some(c_source) = &plan.c_source else {
        return Err(FfiError::unimplemented(
            "this kernel has no C source, so it cannot run on the CPU: pass c_source= with a C \
             twin of each kernel (`void name(void **args, const int64_t *sizes)`)",
        ));
    };
    let opts = cpu::CpuCompileOptions {
        fast_math: plan.fast_math,
        extra_flags: vec![],
    };
    let first = plan.steps[0].c_name();
    let module = cpu::load_keyed(&site.key, first, &opts, || format!("{C_PRELUDE}{c_source}"))?;
    let entries = plan
        .steps
        .iter()
        .map(|step| {
            // SAFETY: the documented C convention; a wrong user signature is the user's contract.
            let symbol = unsafe { module.symbol::<CStep>(step.c_name()) }?;
            Ok(*symbol)
        })
        .collect::<Result<Vec<_>, RuntimeError>>()?;
    Ok(CpuProgram {
        entries,
        _module: module,
    })
}

/// `spikeforge_custom_call` on the CPU: the C twins, in order, on the calling thread.
pub struct CustomCallCpu;

impl Handler for CustomCallCpu {
    type Instance = CustomCall;
    const TRAITS: HandlerTraits = HandlerTraits::NONE;

    fn execute(call: &CallFrame<'_>, site: &CustomCall) -> Result<(), FfiError> {
        let checked = site.call_buffers(call)?;
        let program = site.kernels.cpu(|| cpu_program(site))?;
        if poison::enabled() {
            // SAFETY: XLA's host buffers of these sizes, for this call.
            unsafe { poison::host(fresh_results(&checked)) };
        }
        let ptrs = all_pointers(&checked);
        for ((step, entry), sizes) in site
            .plan
            .steps
            .iter()
            .zip(&program.entries)
            .zip(&site.step_sizes)
        {
            let args: Vec<*mut c_void> = step.args.iter().map(|&a| ptrs[a]).collect();
            // SAFETY: the buffers were checked against the plan; the C twin follows the
            // convention.
            unsafe { entry(args.as_ptr(), sizes.as_ptr()) };
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// CUDA

fn cuda_kernels(site: &CustomCall, stream: *mut c_void) -> Result<CudaKernels, FfiError> {
    let opts = cuda::CudaCompileOptions {
        fast_math: site.plan.fast_math,
        ..Default::default()
    };
    let mut functions = Vec::with_capacity(site.plan.steps.len());
    for step in &site.plan.steps {
        let f = cuda::load_function_keyed(&site.key, &step.kernel, stream, &opts, || {
            site.plan.cuda_source.clone()
        })?;
        let limits = DeviceLimits {
            max_threads_per_block: f.max_threads_per_block(),
            max_shared_mem: f.max_shared_mem_per_block(),
        };
        check_device_limits(step, limits)?;
        functions.push(f);
    }
    Ok(Arc::new(functions))
}

/// `spikeforge_custom_call` on CUDA: the kernels in order on XLA's stream. The same launches
/// every execution (temps are XLA's buffers), so XLA may capture them into a CUDA graph.
pub struct CustomCallCuda;

impl Handler for CustomCallCuda {
    type Instance = CustomCall;
    const TRAITS: HandlerTraits = HandlerTraits::COMMAND_BUFFER_COMPATIBLE;

    fn execute(call: &CallFrame<'_>, site: &CustomCall) -> Result<(), FfiError> {
        let checked = site.call_buffers(call)?;
        let stream = call.stream()?;
        let functions = site.kernels.cuda(stream, || cuda_kernels(site, stream))?;
        if poison::enabled() {
            // SAFETY: device buffers of these sizes on XLA's stream for this call.
            unsafe { poison::device(fresh_results(&checked), stream) }?;
        }
        let ptrs = all_pointers(&checked);
        for ((step, f), sizes) in site
            .plan
            .steps
            .iter()
            .zip(functions.iter())
            .zip(&site.step_sizes)
        {
            let mut args: Vec<*mut c_void> = step.args.iter().map(|&a| ptrs[a]).collect();
            let mut sizes = sizes.clone();
            let mut params: Vec<*mut c_void> = args
                .iter_mut()
                .map(|a| (a as *mut *mut c_void).cast::<c_void>())
                .collect();
            if site.plan.sizes {
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
        Ok(())
    }
}

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
