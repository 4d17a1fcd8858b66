//! The plan of a custom-kernel call: user CUDA (and optionally C) source, the buffers of the
//! call and the launches to make, in order. Python (`spikeforge.kernels`) builds it once per
//! input shape and sends it as the `plan` string attribute; this module parses and checks it so
//! that a bad plan is an error naming the step and the buffer, never a bad launch.
//!
//! Buffers are numbered `[inputs..., outputs..., temps...]`; a step's `args` are such numbers,
//! in the order of the kernel's pointer parameters. With `sizes: true` the kernel receives, after
//! the pointers, one `long long` element count per pointer, in the same order.
//!
//! The C twin of a step is a function `void name(void **args, const int64_t *sizes)`: `args[k]`
//! is the step's k-th buffer and `sizes[k]` its element count. It runs the whole launch (it loops
//! over the elements itself).
//!
//! Checked here, once per call site: buffer sizes (computed with checked arithmetic; a buffer
//! past what can be allocated is an error), buffer numbers, launch shapes, and each step's
//! buffers against the pointer parameters its kernel declares in the CUDA source (count and
//! element type, see [`super::kernel_signature`]). Every failure is a [`PlanError`] naming the
//! step, the buffer or the parameter.

use std::fmt;

use serde::Deserialize;

use super::kernel_signature::{kernel_params, Param};
use crate::xla::{DataType, FfiError};

/// One buffer of the call, as Python described it.
#[derive(Clone, Debug, Deserialize)]
pub struct BufferSpec {
    /// What error messages call it: `x`, `out`, `tmp` (or `input 0`).
    pub name: String,
    /// numpy name: `float32`, `int32`, `bool`, ...
    pub dtype: String,
    pub shape: Vec<i64>,
}

/// One kernel launch.
#[derive(Clone, Debug, Deserialize)]
pub struct Step {
    /// The CUDA kernel (an `extern "C" __global__` function of `cuda_source`).
    pub kernel: String,
    /// The C function of `c_source` that does the same work; defaults to `kernel`.
    #[serde(default)]
    pub c_kernel: Option<String>,
    /// Buffer numbers, in the order of the kernel's pointer parameters.
    pub args: Vec<usize>,
    pub grid: [u32; 3],
    pub block: [u32; 3],
    #[serde(default)]
    pub shared_mem: u32,
}

impl Step {
    pub fn c_name(&self) -> &str {
        self.c_kernel.as_deref().unwrap_or(&self.kernel)
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub cuda_source: String,
    #[serde(default)]
    pub c_source: Option<String>,
    pub inputs: Vec<BufferSpec>,
    pub outputs: Vec<BufferSpec>,
    /// Scratch buffers: results of the call after the outputs (XLA allocates them; Python drops
    /// them), so that no call allocates.
    #[serde(default)]
    pub temps: Vec<BufferSpec>,
    pub steps: Vec<Step>,
    /// Pass element counts (`long long`) after the pointers.
    #[serde(default)]
    pub sizes: bool,
    #[serde(default)]
    pub fast_math: bool,
}

/// What the CUDA programming model allows every launch, whatever the device.
const MAX_THREADS_PER_BLOCK: u64 = 1024;
const MAX_BLOCK: [u32; 3] = [1024, 1024, 64];
const MAX_GRID: [u32; 3] = [i32::MAX as u32, 65535, 65535];

/// The most bytes one buffer may have: what an allocation can be (`isize::MAX`).
const MAX_BUFFER_BYTES: u64 = isize::MAX as u64;

/// A buffer with its decoded dtype and sizes.
#[derive(Clone, Debug)]
pub struct Resolved {
    pub name: String,
    pub dtype: DataType,
    pub dims: Vec<i64>,
    pub count: i64,
    pub bytes: usize,
}

/// Where in a plan a step-level error is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepAt {
    pub step: usize,
    pub kernel: String,
}

impl fmt::Display for StepAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "step {} (kernel '{}')", self.step, self.kernel)
    }
}

/// What is wrong with a plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlanError {
    /// The JSON does not parse as a plan.
    Json(String),
    NoSteps,
    UnknownDtype {
        buffer: String,
        dtype: String,
    },
    NegativeDimension {
        buffer: String,
        shape: Vec<i64>,
    },
    /// More elements or bytes than one allocation can hold.
    TooLarge {
        buffer: String,
        shape: Vec<i64>,
        dtype: DataType,
    },
    InvalidKernelName(StepAt),
    NoBuffers(StepAt),
    ArgumentOutOfRange {
        at: StepAt,
        arg: usize,
        buffers: usize,
    },
    /// Grid and block outside CUDA's limits (`reason` says which).
    LaunchShape {
        at: StepAt,
        reason: String,
    },
    OutputNotWritten {
        output: String,
    },
    /// The kernel declares another number of pointer parameters than the step passes buffers.
    PointerCount {
        at: StepAt,
        declared: usize,
        passed: usize,
    },
    /// A buffer whose dtype the kernel's parameter does not take.
    ParameterType {
        at: StepAt,
        param: usize,
        declared: String,
        buffer: String,
        dtype: DataType,
        accepts: Vec<DataType>,
    },
    /// The loaded kernel cannot be launched as the step asks on this device.
    DeviceLimit {
        kernel: String,
        reason: String,
    },
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use PlanError::*;
        match self {
            Json(e) => write!(f, "attribute 'plan': {e}"),
            NoSteps => f.write_str("the plan has no steps"),
            UnknownDtype { buffer, dtype } => {
                write!(f, "buffer '{buffer}': unknown dtype '{dtype}'")
            }
            NegativeDimension { buffer, shape } => {
                write!(f, "buffer '{buffer}': negative dimension in {shape:?}")
            }
            TooLarge {
                buffer,
                shape,
                dtype,
            } => write!(
                f,
                "buffer '{buffer}': {dtype}{shape:?} is larger than any allocation can be \
                 ({MAX_BUFFER_BYTES} bytes at most)"
            ),
            InvalidKernelName(at) => write!(f, "{at}: empty or invalid kernel name"),
            NoBuffers(at) => write!(f, "{at}: a kernel needs at least one buffer argument"),
            ArgumentOutOfRange { at, arg, buffers } => write!(
                f,
                "{at}: argument {arg} out of range (the call has {buffers} buffers)"
            ),
            LaunchShape { at, reason } => write!(f, "{at}: {reason}"),
            OutputNotWritten { output } => {
                write!(f, "output '{output}' is not an argument of any step")
            }
            PointerCount {
                at,
                declared,
                passed,
            } => write!(
                f,
                "{at}: the kernel declares {declared} pointer parameters but the step passes \
                 {passed} buffers (one pointer per buffer, in order)"
            ),
            ParameterType {
                at,
                param,
                declared,
                buffer,
                dtype,
                accepts,
            } => {
                let accepts: Vec<&str> = accepts.iter().map(|d| d.name()).collect();
                write!(
                    f,
                    "{at}: parameter {param} (`{declared}`) takes {}, but buffer '{buffer}' is \
                     {dtype}",
                    accepts.join(" or ")
                )
            }
            DeviceLimit { kernel, reason } => write!(f, "kernel '{kernel}': {reason}"),
        }
    }
}

impl std::error::Error for PlanError {}

impl From<PlanError> for FfiError {
    fn from(e: PlanError) -> FfiError {
        FfiError::invalid_argument(e.to_string())
    }
}

impl Plan {
    /// Parses and checks a plan (see the module documentation for what is checked).
    pub fn from_json(text: &str) -> Result<Plan, PlanError> {
        let plan: Plan = serde_json::from_str(text).map_err(|e| PlanError::Json(e.to_string()))?;
        plan.check()?;
        Ok(plan)
    }

    /// Every buffer in numbering order: inputs, outputs, temps.
    pub fn buffers(&self) -> impl Iterator<Item = &BufferSpec> {
        self.inputs.iter().chain(&self.outputs).chain(&self.temps)
    }

    /// Decoded dtypes and sizes of every buffer, in numbering order.
    pub fn resolve(&self) -> Result<Vec<Resolved>, PlanError> {
        self.buffers().map(resolve).collect()
    }

    /// Checks what does not depend on the device: buffer sizes and numbers, launch shapes within
    /// CUDA's limits, every output written by some step, each step's buffers against its
    /// kernel's declared pointer parameters.
    fn check(&self) -> Result<(), PlanError> {
        if self.steps.is_empty() {
            return Err(PlanError::NoSteps);
        }
        let buffers = self.resolve()?;
        let mut written = vec![false; buffers.len()];
        for (s, step) in self.steps.iter().enumerate() {
            let at = || StepAt {
                step: s,
                kernel: step.kernel.clone(),
            };
            if step.kernel.is_empty() || step.kernel.contains('\0') {
                return Err(PlanError::InvalidKernelName(at()));
            }
            if step.args.is_empty() {
                return Err(PlanError::NoBuffers(at()));
            }
            for &a in &step.args {
                if a >= buffers.len() {
                    return Err(PlanError::ArgumentOutOfRange {
                        at: at(),
                        arg: a,
                        buffers: buffers.len(),
                    });
                }
                written[a] = true;
            }
            check_launch_shape(step.grid, step.block, at)?;
            if let Some(params) = kernel_params(&self.cuda_source, &step.kernel) {
                check_parameters(&params, step, &buffers, at)?;
            }
        }
        let first_output = self.inputs.len();
        for (k, out) in self.outputs.iter().enumerate() {
            if !written[first_output + k] {
                return Err(PlanError::OutputNotWritten {
                    output: out.name.clone(),
                });
            }
        }
        Ok(())
    }
}

fn resolve(b: &BufferSpec) -> Result<Resolved, PlanError> {
    let dtype = DataType::all()
        .find(|d| d.name() == b.dtype)
        .ok_or_else(|| PlanError::UnknownDtype {
            buffer: b.name.clone(),
            dtype: b.dtype.clone(),
        })?;
    if b.shape.iter().any(|&d| d < 0) {
        return Err(PlanError::NegativeDimension {
            buffer: b.name.clone(),
            shape: b.shape.clone(),
        });
    }
    let too_large = || PlanError::TooLarge {
        buffer: b.name.clone(),
        shape: b.shape.clone(),
        dtype,
    };
    let count = b
        .shape
        .iter()
        .try_fold(1i64, |acc, &d| acc.checked_mul(d))
        .ok_or_else(too_large)?;
    let bytes = u64::try_from(count)
        .ok()
        .and_then(|c| c.checked_mul(dtype.size_bytes() as u64))
        .filter(|&bytes| bytes <= MAX_BUFFER_BYTES)
        .ok_or_else(too_large)?;
    Ok(Resolved {
        name: b.name.clone(),
        dtype,
        dims: b.shape.clone(),
        count,
        bytes: usize::try_from(bytes).map_err(|_| too_large())?,
    })
}

/// A step's buffers against its kernel's declared parameters: one pointer per buffer, each of a
/// type that takes the buffer's dtype. (With `sizes`, the `long long` counts follow the
/// pointers; they are not pointers, so they are not counted.)
fn check_parameters(
    params: &[Param],
    step: &Step,
    buffers: &[Resolved],
    at: impl Fn() -> StepAt,
) -> Result<(), PlanError> {
    let pointers: Vec<&Param> = params.iter().filter(|p| p.is_pointer()).collect();
    if pointers.len() != step.args.len() {
        return Err(PlanError::PointerCount {
            at: at(),
            declared: pointers.len(),
            passed: step.args.len(),
        });
    }
    for (k, (param, &a)) in pointers.iter().zip(&step.args).enumerate() {
        let buffer = &buffers[a];
        if !param.accepts(buffer.dtype) {
            return Err(PlanError::ParameterType {
                at: at(),
                param: k,
                declared: param.text.clone(),
                buffer: buffer.name.clone(),
                dtype: buffer.dtype,
                accepts: DataType::all().filter(|&d| param.accepts(d)).collect(),
            });
        }
    }
    Ok(())
}

/// Grid and block within CUDA's architectural limits (no zero, at most 1024 threads a block).
fn check_launch_shape(
    grid: [u32; 3],
    block: [u32; 3],
    at: impl Fn() -> StepAt,
) -> Result<(), PlanError> {
    let fail = |reason: String| Err(PlanError::LaunchShape { at: at(), reason });
    if grid.contains(&0) || block.contains(&0) {
        return fail(format!(
            "grid {grid:?} and block {block:?} must have no zero dimension (zero threads)"
        ));
    }
    let threads: u64 = block.iter().map(|&b| u64::from(b)).product();
    if threads > MAX_THREADS_PER_BLOCK {
        return fail(format!(
            "block {block:?} has {threads} threads, more than CUDA's {MAX_THREADS_PER_BLOCK}"
        ));
    }
    for axis in 0..3 {
        if block[axis] > MAX_BLOCK[axis] || grid[axis] > MAX_GRID[axis] {
            return fail(format!(
                "grid {grid:?} / block {block:?} exceed CUDA's limits (grid {MAX_GRID:?}, block \
                 {MAX_BLOCK:?})"
            ));
        }
    }
    Ok(())
}

/// What one loaded kernel allows on its device.
#[derive(Clone, Copy, Debug)]
pub struct DeviceLimits {
    pub max_threads_per_block: u32,
    pub max_shared_mem: u32,
}

/// Checks a step against the loaded kernel's limits (its register use bounds the block size; the
/// device bounds dynamic shared memory).
pub fn check_device_limits(step: &Step, limits: DeviceLimits) -> Result<(), PlanError> {
    let limit = |reason: String| PlanError::DeviceLimit {
        kernel: step.kernel.clone(),
        reason,
    };
    let threads: u64 = step.block.iter().map(|&b| u64::from(b)).product();
    if threads > u64::from(limits.max_threads_per_block) {
        return Err(limit(format!(
            "block {:?} has {threads} threads; this kernel can be launched with at most {} on \
             this device",
            step.block, limits.max_threads_per_block
        )));
    }
    if step.shared_mem > limits.max_shared_mem {
        return Err(limit(format!(
            "shared_mem={} bytes is more than the {} bytes of shared memory a block may use on \
             this device",
            step.shared_mem, limits.max_shared_mem
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(steps: &str) -> String {
        format!(
            r#"{{"cuda_source": "", "inputs": [{{"name": "x", "dtype": "float32", "shape": [4]}}],
                "outputs": [{{"name": "out", "dtype": "float32", "shape": [4]}}],
                "temps": [{{"name": "tmp", "dtype": "float64", "shape": [2, 2]}}],
                "steps": {steps}}}"#
        )
    }

    #[test]
    fn a_valid_plan_resolves_its_buffers() {
        let p = Plan::from_json(&plan(
            r#"[{"kernel": "sq", "args": [0, 2], "grid": [1,1,1], "block": [4,1,1]},
                {"kernel": "root", "c_kernel": "root_c", "args": [2, 1], "grid": [1,1,1], "block": [4,1,1]}]"#,
        ))
        .unwrap();
        let r = p.resolve().unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!((r[2].dtype, r[2].count, r[2].bytes), (DataType::F64, 4, 32));
        assert_eq!(p.steps[0].c_name(), "sq");
        assert_eq!(p.steps[1].c_name(), "root_c");
    }

    #[test]
    fn bad_plans_are_errors_naming_the_fault() {
        let cases = [
            (r#"[]"#, "no steps"),
            (
                r#"[{"kernel": "k", "args": [0, 5], "grid": [1,1,1], "block": [4,1,1]}]"#,
                "argument 5 out of range",
            ),
            (
                r#"[{"kernel": "k", "args": [0], "grid": [1,1,1], "block": [4,1,1]}]"#,
                "output 'out' is not an argument",
            ),
            (
                r#"[{"kernel": "k", "args": [0, 1], "grid": [1,1,1], "block": [0,1,1]}]"#,
                "zero threads",
            ),
            (
                r#"[{"kernel": "k", "args": [0, 1], "grid": [1,1,1], "block": [2048,1,1]}]"#,
                "2048 threads",
            ),
            (
                r#"[{"kernel": "k", "args": [0, 1], "grid": [1,70000,1], "block": [32,1,1]}]"#,
                "exceed CUDA's limits",
            ),
            (
                r#"[{"kernel": "", "args": [0, 1], "grid": [1,1,1], "block": [4,1,1]}]"#,
                "empty or invalid kernel name",
            ),
        ];
        for (steps, want) in cases {
            let err = Plan::from_json(&plan(steps)).unwrap_err().to_string();
            assert!(err.contains(want), "{steps}: {err}");
        }
        let valid = r#"[{"kernel": "k", "args": [0, 1], "grid": [1,1,1], "block": [4,1,1]}]"#;
        let err = Plan::from_json(&plan(valid).replace("float64", "float65")).unwrap_err();
        assert_eq!(
            err,
            PlanError::UnknownDtype {
                buffer: "tmp".into(),
                dtype: "float65".into()
            }
        );
        assert!(err.to_string().contains("unknown dtype 'float65'"), "{err}");
        let err = Plan::from_json("{}").unwrap_err();
        assert!(matches!(err, PlanError::Json(_)), "{err:?}");
        assert!(err.to_string().starts_with("attribute 'plan'"), "{err}");
    }

    /// Issue 8 item 11: a temp of f64[2^62] made 2^65 bytes, which wrapped to 0 (1 byte was
    /// allocated, then written past); f64[2^61] wrapped to 0 as well. Every size is checked.
    #[test]
    fn buffers_past_what_can_be_allocated_are_refused() {
        let valid = r#"[{"kernel": "k", "args": [0, 1], "grid": [1,1,1], "block": [4,1,1]}]"#;
        for shape in [
            "[4611686018427387904]",    // 2^62 elements: 2^65 bytes
            "[2305843009213693952]",    // 2^61: 2^64 bytes, 0 when wrapped
            "[1152921504606846976]",    // 2^60: 2^63 bytes, one more than isize::MAX
            "[4294967296, 4294967296]", // 2^64 elements: the count itself overflows
            "[3037000500, 3037000500, 3037000500]",
        ] {
            let text = plan(valid).replace("[2, 2]", shape);
            let err = Plan::from_json(&text).unwrap_err();
            assert!(
                matches!(&err, PlanError::TooLarge { buffer, .. } if buffer == "tmp"),
                "{shape}: {err:?}"
            );
            assert!(
                err.to_string().contains("larger than any allocation"),
                "{err}"
            );
        }
        // Just under the limit is a size, not an error (allocating it is XLA's business).
        let text = plan(valid).replace("[2, 2]", "[576460752303423487]");
        let r = Plan::from_json(&text).unwrap().resolve().unwrap();
        assert_eq!(r[2].bytes, 576460752303423487 * 8);
        // A zero dimension makes an empty buffer, whatever the others.
        let text = plan(valid).replace("[2, 2]", "[0, 9223372036854775807]");
        let r = Plan::from_json(&text).unwrap().resolve().unwrap();
        assert_eq!(r[2].bytes, 0);
    }

    /// Issue 8 item 7: float32 spikes passed to a kernel declared `const unsigned char*` ran and
    /// returned garbage. Each step's buffers are checked against its kernel's declared pointers.
    #[test]
    fn buffers_must_fit_the_declared_pointer_types() {
        let with_source = |source: &str, args: &str| {
            let steps = format!(
                r#"[{{"kernel": "count", "args": {args}, "grid": [1,1,1], "block": [4,1,1]}}]"#
            );
            let mut value: serde_json::Value = serde_json::from_str(&plan(&steps)).unwrap();
            value["cuda_source"] = source.into();
            Plan::from_json(&value.to_string())
        };
        let bytes =
            r#"extern "C" __global__ void count(const unsigned char* spikes, float* out) {}"#;
        let err = with_source(bytes, "[0, 1]").unwrap_err();
        assert_eq!(
            err,
            PlanError::ParameterType {
                at: StepAt {
                    step: 0,
                    kernel: "count".into()
                },
                param: 0,
                declared: "const unsigned char* spikes".into(),
                buffer: "x".into(),
                dtype: DataType::F32,
                accepts: vec![DataType::Pred, DataType::U8],
            }
        );
        let message = err.to_string();
        assert!(
            message.contains("parameter 0 (`const unsigned char* spikes`) takes bool or uint8")
                && message.contains("buffer 'x' is float32"),
            "{message}"
        );
        let floats =
            r#"extern "C" __global__ void count(const float* x, float* out, long long n) {}"#;
        assert!(with_source(floats, "[0, 1]").is_ok());
        let err = with_source(floats, "[0, 1, 2]").unwrap_err();
        assert!(
            matches!(
                err,
                PlanError::PointerCount {
                    declared: 2,
                    passed: 3,
                    ..
                }
            ),
            "{err:?}"
        );
        // void*, unknown typedefs and kernels the scanner cannot find are not checked.
        let untyped = r#"extern "C" __global__ void count(const void* x, my_t* out) {}"#;
        assert!(with_source(untyped, "[2, 1]").is_ok());
        assert!(with_source("#define K count\nK", "[0, 1]").is_ok());
    }

    #[test]
    fn device_limits_bound_threads_and_shared_memory() {
        let step = Step {
            kernel: "k".into(),
            c_kernel: None,
            args: vec![0],
            grid: [1, 1, 1],
            block: [512, 1, 1],
            shared_mem: 100_000,
        };
        let roomy = DeviceLimits {
            max_threads_per_block: 1024,
            max_shared_mem: 232_448,
        };
        assert!(check_device_limits(&step, roomy).is_ok());
        let err = check_device_limits(
            &step,
            DeviceLimits {
                max_threads_per_block: 256,
                ..roomy
            },
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("at most 256"), "{err}");
        let err = check_device_limits(
            &step,
            DeviceLimits {
                max_shared_mem: 49_152,
                ..roomy
            },
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("shared_mem=100000"), "{err}");
    }
}
