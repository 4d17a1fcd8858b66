//! The C kernels' speed rests on GCC vectorising the per-step `omp simd` loop across neurons;
//! a construct that blocks it (a branch GCC will not if-convert, a call without a vector
//! variant) costs 5-10x silently. This compiles every test model's C kernel with the runtime's
//! own flags and checks GCC's vectorisation report for that loop.

use std::path::Path;
use std::process::Command;

use spikeforge::codegen::{generate_from_spec, Dialect};
use spikeforge::runtime::cpu::CpuCompileOptions;
use spikeforge::spec::ModelSpec;

/// Whether this machine's CPU reports `flag` in /proc/cpuinfo (false where there is none).
fn cpu_has(flag: &str) -> bool {
    std::fs::read_to_string("/proc/cpuinfo")
        .map(|t| t.split_whitespace().any(|w| w == flag))
        .unwrap_or(false)
}

#[test]
fn the_per_step_loop_of_every_c_kernel_is_vectorised() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/models");
    let out = std::env::temp_dir().join(format!("sf-vec-{}", std::process::id()));
    std::fs::create_dir_all(&out).unwrap();
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let mut spec = ModelSpec::from_json(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for fast_math in [false, true] {
            spec.fast_math = fast_math;
            let src = generate_from_spec(&spec, Dialect::C).unwrap().source;
            // GCC names the loop by its `for` line or its first statement.
            let pragma = src
                .lines()
                .position(|l| l.contains("#pragma omp simd"))
                .unwrap()
                + 1;
            // A refractory period given as an expression converts its duration to an int64 step
            // count every step (`sf_refractory_steps`), which x86 vectorises only with
            // AVX-512DQ: on AVX2 machines (GCC 12, znver3) that loop stays scalar. Known, and
            // skipped there rather than failed; checked wherever the CPU has AVX-512DQ.
            let in_loop = src
                .lines()
                .skip(pragma)
                .any(|l| l.contains("sf_refractory_steps("));
            if in_loop && !cpu_has("avx512dq") {
                eprintln!("{name}: skipped (refractory expression, no AVX-512DQ on this CPU)");
                continue;
            }
            let file = out.join(format!("{name}-{fast_math}.c"));
            std::fs::write(&file, &src).unwrap();
            let opts = CpuCompileOptions {
                fast_math,
                ..Default::default()
            };
            let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
            let report = Command::new(cc)
                .args(opts.flags())
                .arg("-fopt-info-vec-optimized")
                .arg("-o")
                .arg(file.with_extension("so"))
                .arg(&file)
                .arg("-lm")
                .output()
                .expect("run cc");
            assert!(
                report.status.success(),
                "{name}: {}",
                String::from_utf8_lossy(&report.stderr)
            );
            let text = String::from_utf8_lossy(&report.stderr);
            let reported = |line: usize| {
                let needle = format!("{}:{line}:", file.display());
                text.lines()
                    .any(|l| l.starts_with(&needle) && l.contains("loop vectorized"))
            };
            assert!(
                reported(pragma + 1) || reported(pragma + 2),
                "{name} (fast_math={fast_math}): the omp simd loop after line {pragma} was not vectorised\n{text}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 16);
    let _ = std::fs::remove_dir_all(&out);
}
