//! The connectivity kernels of every test rule (`tests/connect_rules/*.json`) without a GPU:
//!
//! * the C kernels, loaded through the CPU runtime, give consistent passes (the fill writes
//!   exactly the counted synapses, each row in range);
//! * the CUDA source, compiled as C++ with a small shim (blocks and threads run one after the
//!   other: the kernels share nothing between threads) and launched with several grid sizes,
//!   gives the C kernels' counts and targets bit for bit: the same synapses on both platforms,
//!   as far as the source decides it;
//! * NVRTC compiles the CUDA source with the options the handler uses;
//! * the float64 logarithm of the geometric skipping is within an ulp of libm's.
//!
//! The emulation needs `g++` (skipped without it unless `SPIKEFORGE_REQUIRE_GXX=1`); NVRTC is
//! loaded dynamically (skipped without it unless `SPIKEFORGE_REQUIRE_NVRTC=1`).

#[path = "common/cuda_emulation.rs"]
mod cuda_emulation;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use spikeforge::codegen::connect_kernel::{self, CUDA_OPTIONS, ENTRY_COUNT, ENTRY_FILL};
use spikeforge::codegen::Dialect;
use spikeforge::connect::{self, ConnectIr, ConnectSpec, Rows, NO_SELF};
use spikeforge::runtime::cpu;

fn rules() -> Vec<(String, ConnectSpec)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/connect_rules");
    let mut out: Vec<(String, ConnectSpec)> = std::fs::read_dir(&dir)
        .expect("tests/connect_rules")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (
                p.file_stem().unwrap().to_string_lossy().into_owned(),
                ConnectSpec::from_json(&text).unwrap(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(out.len() >= 5);
    out
}

fn lowered(spec: &ConnectSpec) -> ConnectIr {
    connect::lower(spec).unwrap().0
}

/// The sizes each rule is run at: both sides in one group (self_offset 0), and a subgroup of
/// another size onto a group (no self-connections possible).
const CASES: [(i64, i64, i64, u32, u32); 2] = [(157, 157, 0, 12, 3), (90, 211, NO_SELF, 7, 0)];

/// A group variable's value, the same formula in Rust and in the emulation's C++.
fn value(k: usize, i: i64) -> f64 {
    ((i * 7919 + k as i64 * 104_729) % 1000) as f64 / 100.0
}
const VALUE_CPP: &str = "(double)((i * 7919 + k * 104729) % 1000) / 100.0";

type CCount =
    unsafe extern "C" fn(i64, i64, *const i64, *const u32, *const f64, *const f64, *mut i64);
type CFill = unsafe extern "C" fn(
    i64,
    i64,
    *const i64,
    *const u32,
    *const f64,
    *const f64,
    *const i64,
    *mut i32,
);

struct Synapses {
    counts: Vec<i64>,
    targets: Vec<i32>,
}

/// Count, offsets, fill with the C kernels, as the handler runs them (all rows in one chunk).
fn run_c(
    module: &Arc<cpu::CpuModule>,
    ir: &ConnectIr,
    case: (i64, i64, i64, u32, u32),
) -> Synapses {
    let (n_pre, n_post, self_offset, seed, stream) = case;
    // SAFETY: the generated entry points have these signatures.
    let count: CCount = unsafe { module.entry::<CCount>() };
    let fill: CFill = unsafe { *module.symbol::<CFill>(ENTRY_FILL).unwrap() };
    let rows = match ir.rule.rows() {
        Rows::Post => n_post,
        Rows::Pre => n_pre,
    };
    let pre: Vec<f64> = (0..ir.pre_variables.len())
        .flat_map(|k| (0..n_pre).map(move |i| value(k, i)))
        .collect();
    let post: Vec<f64> = (0..ir.post_variables.len())
        .flat_map(|k| (0..n_post).map(move |i| value(k, i)))
        .collect();
    let sizes = [n_pre, n_post, self_offset];
    let key = [seed, stream];
    let mut counts = vec![-99i64; rows as usize];
    // SAFETY: buffers sized for the rows and variables.
    unsafe {
        count(
            0,
            rows,
            sizes.as_ptr(),
            key.as_ptr(),
            pre.as_ptr(),
            post.as_ptr(),
            counts.as_mut_ptr(),
        )
    };
    assert!(counts.iter().all(|&c| c >= 0), "{counts:?}");
    let mut offsets = vec![0i64];
    for c in &counts {
        offsets.push(offsets.last().unwrap() + c);
    }
    let n_syn = *offsets.last().unwrap() as usize;
    let mut targets = vec![-1i32; n_syn];
    // SAFETY: offsets consistent with targets.
    unsafe {
        fill(
            0,
            rows,
            sizes.as_ptr(),
            key.as_ptr(),
            pre.as_ptr(),
            post.as_ptr(),
            offsets.as_ptr(),
            targets.as_mut_ptr(),
        )
    };
    Synapses { counts, targets }
}

fn c_module(ir: &ConnectIr) -> Arc<cpu::CpuModule> {
    cpu::load(
        &connect_kernel::generate(ir, Dialect::C),
        ENTRY_COUNT,
        &cpu::CpuCompileOptions::default(),
    )
    .expect("a C compiler")
}

#[test]
fn c_passes_agree_and_stay_in_range() {
    for (name, spec) in rules() {
        let ir = lowered(&spec);
        let module = c_module(&ir);
        for case in CASES {
            let s = run_c(&module, &ir, case);
            let bound = match ir.rule.rows() {
                Rows::Post => case.0,
                Rows::Pre => case.1,
            };
            assert!(
                s.targets.iter().all(|&t| t >= 0 && i64::from(t) < bound),
                "{name}: a target out of range"
            );
            assert!(s.counts.iter().sum::<i64>() > 0, "{name}: no synapse");
            // Running again gives the same synapses (nothing but the counter decides a draw).
            let again = run_c(&module, &ir, case);
            assert_eq!(again.targets, s.targets, "{name}");
        }
    }
}

/// Before the shared head: the kernels' names for the thread indices and math functions, and
/// the bit cast the logarithm uses.
const SHIM_HEAD: &str = r#"
#include <cmath>
#include <cstring>
using std::exp; using std::fabs; using std::floor; using std::fma; using std::pow; using std::log;
struct sf_dim3 { unsigned x; };
static sf_dim3 threadIdx, blockIdx, blockDim, gridDim;
static long long __double_as_longlong(double d) { long long b; std::memcpy(&b, &d, 8); return b; }
"#;

const SHIM_TAIL: &str = r#"
/* Every thread of every block, one after the other (the kernels share nothing between threads). */
template <class F, class... A> static void launch(F f, unsigned grid, unsigned block, A... a) {
    blockDim.x = block;
    gridDim.x = grid;
    for (unsigned b = 0; b < grid; ++b)
        for (unsigned t = 0; t < block; ++t) { blockIdx.x = b; threadIdx.x = t; f(a...); }
}

int main(int argc, char** argv) {
    const long long n_pre = std::atoll(argv[1]), n_post = std::atoll(argv[2]);
    const long long self_offset = std::atoll(argv[3]), rows = std::atoll(argv[6]);
    const uint32_t key[2] = {(uint32_t)std::atoll(argv[4]), (uint32_t)std::atoll(argv[5])};
    const unsigned grid = (unsigned)std::atoll(argv[7]), block = 128;
    std::vector<double> pre(N_PRE_VARIABLES * n_pre + 1), post(N_POST_VARIABLES * n_post + 1);
    for (long long k = 0; k < N_PRE_VARIABLES; ++k)
        for (long long i = 0; i < n_pre; ++i) pre[k * n_pre + i] = VALUE;
    for (long long k = 0; k < N_POST_VARIABLES; ++k)
        for (long long i = 0; i < n_post; ++i) post[k * n_post + i] = VALUE;
    std::vector<long long> counts(rows, -99), offsets(rows + 1, 0);
    launch(sf_connect_count, grid, block, (sf_i64)rows, (sf_i64)n_pre, (sf_i64)n_post,
           (sf_i64)self_offset, (const sf_u32*)key, pre.data(), post.data(), (sf_i64*)counts.data());
    for (long long r = 0; r < rows; ++r) offsets[r + 1] = offsets[r] + counts[r];
    std::vector<sf_i32> targets(offsets[rows] + 1, -1);
    launch(sf_connect_fill, grid, block, (sf_i64)rows, (sf_i64)n_pre, (sf_i64)n_post,
           (sf_i64)self_offset, (sf_i64)offsets[rows], (const sf_u32*)key, pre.data(), post.data(),
           (const sf_i64*)offsets.data(), targets.data());
    for (long long r = 0; r < rows; ++r) std::printf("%lld ", counts[r]);
    std::printf("\n");
    for (long long s = 0; s < offsets[rows]; ++s) std::printf("%d ", (int)targets[s]);
    std::printf("\n");
}
"#;

fn numbers<T: std::str::FromStr>(line: &str) -> Vec<T>
where
    T::Err: std::fmt::Debug,
{
    line.split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect()
}

#[test]
fn cuda_source_emulated_on_the_cpu_gives_the_c_synapses() {
    let Some(dir) = cuda_emulation::work_dir("connect_cuda_emulation") else {
        return;
    };
    for (name, spec) in rules() {
        let ir = lowered(&spec);
        let code = format!(
            "{SHIM_HEAD}{}\n{}\n{}#define N_PRE_VARIABLES {}\n#define N_POST_VARIABLES {}\n#define VALUE {VALUE_CPP}\n{SHIM_TAIL}",
            cuda_emulation::head(),
            connect_kernel::generate(&ir, Dialect::Cuda),
            cuda_emulation::tail(),
            ir.pre_variables.len(),
            ir.post_variables.len(),
        );
        // No contraction into fused multiply-adds, as NVRTC is told (`CUDA_OPTIONS`).
        let flags = ["-std=c++17", "-O2", "-ffp-contract=off"];
        let exe = cuda_emulation::compile(&code, &dir, &name, &flags);
        let module = c_module(&ir);
        for case in CASES {
            let want = run_c(&module, &ir, case);
            let rows = want.counts.len() as i64;
            // One thread per row, and a grid too small for the rows (the grid-stride loop).
            for grid in [(rows as u64).div_ceil(128), 1] {
                let (n_pre, n_post, self_offset, seed, stream) = case;
                let out = Command::new(&exe)
                    .args(
                        [
                            n_pre,
                            n_post,
                            self_offset,
                            i64::from(seed),
                            i64::from(stream),
                            rows,
                        ]
                        .map(|v| v.to_string()),
                    )
                    .arg(grid.to_string())
                    .output()
                    .unwrap();
                assert!(out.status.success(), "{name}: emulation failed");
                let text = String::from_utf8(out.stdout).unwrap();
                let mut lines = text.lines();
                let counts: Vec<i64> = numbers(lines.next().unwrap());
                let targets: Vec<i32> = numbers(lines.next().unwrap_or(""));
                assert_eq!(counts, want.counts, "{name} {case:?} grid {grid}: counts");
                assert_eq!(
                    targets, want.targets,
                    "{name} {case:?} grid {grid}: targets"
                );
            }
        }
    }
}

#[test]
fn every_rule_compiles_with_nvrtc() {
    use spikeforge::runtime::cuda::{compile_cubin, nvrtc_version, CudaCompileOptions};
    if let Err(e) = nvrtc_version() {
        assert!(
            std::env::var("SPIKEFORGE_REQUIRE_NVRTC").is_err(),
            "NVRTC required but not loadable: {e}"
        );
        eprintln!("SKIPPED: {e}");
        return;
    }
    let opts = CudaCompileOptions {
        fast_math: false,
        extra: CUDA_OPTIONS.iter().map(|o| o.to_string()).collect(),
    };
    for (name, spec) in rules() {
        let source = connect_kernel::generate(&lowered(&spec), Dialect::Cuda);
        let cubin = compile_cubin(&source, (9, 0), &opts).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(&cubin[..4], b"\x7fELF", "{name}: not a CUBIN");
    }
}

/// `sf_ln` (used for the gaps of geometric skipping) against the system's `log`: within one ulp
/// over (0, 1], exact at 1, monotone where libm is.
#[test]
fn the_float64_logarithm_is_within_an_ulp() {
    let (_, spec) = rules().into_iter().find(|(n, _)| n == "coba_p002").unwrap();
    let source = connect_kernel::generate(&lowered(&spec), Dialect::C)
        + "\ndouble sf_test_ln(double u) { return sf_ln(u); }\n";
    let module =
        cpu::load(&source, "sf_test_ln", &cpu::CpuCompileOptions::default()).expect("a C compiler");
    type Ln = unsafe extern "C" fn(f64) -> f64;
    // SAFETY: the wrapper has this signature.
    let ln: Ln = unsafe { module.entry::<Ln>() };
    let ulps = |a: f64, b: f64| (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs();
    let mut worst = 0;
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut check = |u: f64| {
        // SAFETY: a pure function of a double.
        let got = unsafe { ln(u) };
        let want = u.ln();
        let d = if want == 0.0 {
            u64::from(got != 0.0)
        } else {
            ulps(got, want)
        };
        assert!(d <= 1, "ln({u:e}) = {got:e}, libm {want:e}");
        worst = worst.max(d);
    };
    for _ in 0..200_000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        // Every uniform the kernels draw: ((w >> 11) + 1) 2^-53.
        check(((state >> 11) + 1) as f64 * 2f64.powi(-53));
    }
    for k in 0..=53 {
        let p = 2f64.powi(-k);
        for u in [
            p,
            p * std::f64::consts::SQRT_2,
            p * 0.75,
            p * (1.0 - 1e-16),
            p * 1.5,
        ] {
            if u > 0.0 && u <= 1.0 {
                check(u);
            }
        }
    }
    check(1.0);
    check(1.0 - f64::EPSILON / 2.0);
    // SAFETY: as above.
    assert_eq!(unsafe { ln(1.0) }, 0.0);
    eprintln!("worst difference from libm: {worst} ulp");
}
