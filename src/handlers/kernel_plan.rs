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

use serde::Deserialize;

use crate::xla::DataType;

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

/// A buffer with its decoded dtype and sizes.
#[derive(Clone, Debug)]
pub struct Resolved {
    pub name: String,
    pub dtype: DataType,
    pub dims: Vec<i64>,
    pub count: i64,
    pub bytes: usize,
}

impl Plan {
    pub fn from_json(text: &str) -> Result<Plan, String> {
        let plan: Plan =
            serde_json::from_str(text).map_err(|e| format!("attribute 'plan': {e}"))?;
        plan.check()?;
        Ok(plan)
    }

    /// Every buffer in numbering order: inputs, outputs, temps.
    pub fn buffers(&self) -> impl Iterator<Item = &BufferSpec> {
        self.inputs.iter().chain(&self.outputs).chain(&self.temps)
    }

    /// Decoded dtypes and sizes of every buffer, in numbering order.
    pub fn resolve(&self) -> Result<Vec<Resolved>, String> {
        self.buffers()
            .map(|b| {
                let dtype = DataType::all()
                    .find(|d| d.name() == b.dtype)
                    .ok_or_else(|| format!("buffer '{}': unknown dtype '{}'", b.name, b.dtype))?;
                if b.shape.iter().any(|&d| d < 0) {
                    return Err(format!(
                        "buffer '{}': negative dimension in {:?}",
                        b.name, b.shape
                    ));
                }
                let count = b
                    .shape
                    .iter()
                    .try_fold(1i64, |acc, &d| acc.checked_mul(d))
                    .ok_or_else(|| format!("buffer '{}': shape {:?} overflows", b.name, b.shape))?;
                Ok(Resolved {
                    name: b.name.clone(),
                    dtype,
                    dims: b.shape.clone(),
                    count,
                    bytes: count as usize * dtype.size_bytes(),
                })
            })
            .collect()
    }

    /// Checks what does not depend on the device: buffer numbers, launch shapes within CUDA's
    /// limits, every output written by some step, a C twin for every step when there is C.
    fn check(&self) -> Result<(), String> {
        if self.steps.is_empty() {
            return Err("the plan has no steps".into());
        }
        self.resolve()?;
        let n_buffers = self.inputs.len() + self.outputs.len() + self.temps.len();
        let mut written = vec![false; n_buffers];
        for (s, step) in self.steps.iter().enumerate() {
            let at = || format!("step {s} (kernel '{}')", step.kernel);
            if step.kernel.is_empty() || step.kernel.contains('\0') {
                return Err(format!("{}: empty or invalid kernel name", at()));
            }
            if step.args.is_empty() {
                return Err(format!(
                    "{}: a kernel needs at least one buffer argument",
                    at()
                ));
            }
            for &a in &step.args {
                if a >= n_buffers {
                    return Err(format!(
                        "{}: argument {a} out of range (the call has {n_buffers} buffers)",
                        at()
                    ));
                }
                written[a] = true;
            }
            check_launch_shape(step.grid, step.block).map_err(|e| format!("{}: {e}", at()))?;
        }
        let first_output = self.inputs.len();
        for (k, out) in self.outputs.iter().enumerate() {
            if !written[first_output + k] {
                return Err(format!(
                    "output '{}' is not an argument of any step",
                    out.name
                ));
            }
        }
        Ok(())
    }
}

/// Grid and block within CUDA's architectural limits (no zero, at most 1024 threads a block).
pub fn check_launch_shape(grid: [u32; 3], block: [u32; 3]) -> Result<(), String> {
    if grid.contains(&0) || block.contains(&0) {
        return Err(format!(
            "grid {grid:?} and block {block:?} must have no zero dimension (zero threads)"
        ));
    }
    let threads: u64 = block.iter().map(|&b| u64::from(b)).product();
    if threads > MAX_THREADS_PER_BLOCK {
        return Err(format!(
            "block {block:?} has {threads} threads, more than CUDA's {MAX_THREADS_PER_BLOCK}"
        ));
    }
    for axis in 0..3 {
        if block[axis] > MAX_BLOCK[axis] || grid[axis] > MAX_GRID[axis] {
            return Err(format!(
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
pub fn check_device_limits(step: &Step, limits: DeviceLimits) -> Result<(), String> {
    let threads: u64 = step.block.iter().map(|&b| u64::from(b)).product();
    if threads > u64::from(limits.max_threads_per_block) {
        return Err(format!(
            "kernel '{}': block {:?} has {threads} threads; this kernel can be launched with at \
             most {} on this device",
            step.kernel, step.block, limits.max_threads_per_block
        ));
    }
    if step.shared_mem > limits.max_shared_mem {
        return Err(format!(
            "kernel '{}': shared_mem={} bytes is more than the {} bytes of shared memory a block \
             may use on this device",
            step.kernel, step.shared_mem, limits.max_shared_mem
        ));
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
            let err = Plan::from_json(&plan(steps)).unwrap_err();
            assert!(err.contains(want), "{steps}: {err}");
        }
        let valid = r#"[{"kernel": "k", "args": [0, 1], "grid": [1,1,1], "block": [4,1,1]}]"#;
        let err = Plan::from_json(&plan(valid).replace("float64", "float65")).unwrap_err();
        assert!(err.contains("unknown dtype 'float65'"), "{err}");
        let err = Plan::from_json("{}").unwrap_err();
        assert!(err.starts_with("attribute 'plan'"), "{err}");
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
        .unwrap_err();
        assert!(err.contains("at most 256"), "{err}");
        let err = check_device_limits(
            &step,
            DeviceLimits {
                max_shared_mem: 49_152,
                ..roomy
            },
        )
        .unwrap_err();
        assert!(err.contains("shared_mem=100000"), "{err}");
    }
}
