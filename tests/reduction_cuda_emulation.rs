//! Runs the generated CUDA reduction kernels on the CPU, without a GPU: the CUDA source is
//! compiled as C++ with a small shim (one `std::thread` per CUDA thread, a `std::barrier` for
//! `__syncthreads`, one block at a time so `__shared__` can be a function-local static). This
//! checks what the C dialect's tests cannot: the tile/segment indexing, the full-tile fast path,
//! the shared-memory tree and the second pass, against a sequential fold of the same elements.
//!
//! Needs `g++` with C++20 (`<barrier>`); skipped without one, unless
//! `SPIKEFORGE_REQUIRE_GXX=1`.

#[path = "common/cuda_emulation.rs"]
mod cuda_emulation;

use std::path::Path;
use std::process::Command;

use spikeforge::codegen::reduction::{generate, ReduceKernel, ReduceOp};
use spikeforge::codegen::Dialect;
use spikeforge::types::ElemType;

/// Before the shared head: one thread per CUDA thread, a barrier for `__syncthreads`.
const SHIM_HEAD: &str = r#"
#include <barrier>
#include <cstdint>
#include <cstring>
#include <thread>
struct sf_dim3 { unsigned x; };
static thread_local sf_dim3 threadIdx, blockIdx;
static sf_dim3 blockDim;
static std::barrier<>* sf_bar;
static void __syncthreads() { sf_bar->arrive_and_wait(); }
static float __uint_as_float(uint32_t b) { float f; std::memcpy(&f, &b, 4); return f; }
#define __shared__ static
"#;

const SHIM_TAIL: &str = r#"
template <class F, class... A> static void launch(F f, long grid, unsigned block, A... a) {
    blockDim.x = block;
    for (long b = 0; b < grid; ++b) {
        std::barrier<> bar((std::ptrdiff_t)block);
        sf_bar = &bar;
        std::vector<std::thread> ts;
        for (unsigned t = 0; t < block; ++t)
            ts.emplace_back([=] { threadIdx.x = t; blockIdx.x = (unsigned)b; f(a...); });
        for (auto& th : ts) th.join();
    }
}

int main(int argc, char** argv) {
    unsigned finish_block = (unsigned)std::atol(argv[1]);
    std::vector<long long> lengths;
    for (int i = 2; i < argc; ++i) lengths.push_back(std::atoll(argv[i]));
    long long nseg = (long long)lengths.size(), n = 0, ntiles = 0;
    std::vector<long long> table(2 * (nseg + 1), 0);
    for (long long s = 0; s < nseg; ++s) {
        table[s + 1] = table[s] + lengths[s];
        table[nseg + 1 + s + 1] = table[nseg + 1 + s] + (lengths[s] + SF_TILE - 1) / SF_TILE;
    }
    n = table[nseg];
    ntiles = table[2 * nseg + 1];
    std::vector<in_t> x(n);
    for (long long i = 0; i < n; ++i) { uint64_t h = (uint64_t)i * 2654435761ull; x[i] = (in_t)(SF_FILL); }
    std::vector<acc_t> partials(ntiles > 0 ? ntiles : 1);
    std::vector<out_t> out(nseg);
    std::memset(out.data(), 0xFF, sizeof(out_t) * nseg);
    const sf_i64* tab = (const sf_i64*)table.data();
    if (ntiles > 0)
        launch(sf_reduce_tiles, ntiles, SF_BLOCK, tab, (sf_i64)nseg, (sf_i64)n, (sf_i64)ntiles,
               (const in_t*)x.data(), partials.data());
    launch(sf_reduce_finish, nseg, finish_block, tab, (sf_i64)nseg, (sf_i64)n, (sf_i64)ntiles,
           (const acc_t*)partials.data(), out.data());
    for (long long s = 0; s < nseg; ++s) {
        acc_t acc = SF_IDENTITY;
        for (long long i = table[s]; i < table[s + 1]; ++i) acc = sf_combine(acc, sf_load(x[i]));
        out_t ref = sf_finalize(acc, lengths[s]);
        std::printf("%.17g %.17g\n", (double)out[s], (double)ref);
    }
}
"#;

fn run_emulated(k: &ReduceKernel, fill: &str, finish_block: u32, lengths: &[usize], dir: &Path) {
    let name = k.key().replace(':', "_");
    let code = format!(
        "{SHIM_HEAD}{}\n{}\n{}{SHIM_TAIL}",
        cuda_emulation::head(),
        generate(k, Dialect::Cuda),
        cuda_emulation::tail()
    );
    let fill = format!("-DSF_FILL={fill}");
    let exe = cuda_emulation::compile(&code, dir, &name, &["-std=c++20", "-O1", "-pthread", &fill]);
    let out = Command::new(&exe)
        .arg(finish_block.to_string())
        .args(lengths.iter().map(|l| l.to_string()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{name}: emulation failed");
    let text = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<(f64, f64)> = text
        .lines()
        .map(|l| {
            let mut it = l.split(' ').map(|v| v.parse::<f64>().unwrap());
            (it.next().unwrap(), it.next().unwrap())
        })
        .collect();
    assert_eq!(rows.len(), lengths.len(), "{name}: one value per segment");
    for (s, &(got, want)) in rows.iter().enumerate() {
        let same = if want.is_nan() {
            got.is_nan()
        } else if k.op == ReduceOp::Sum || k.op == ReduceOp::Mean {
            // Tree and sequential double sums differ in the last bits before the final rounding.
            (got - want).abs() <= 1e-6 * want.abs() + 1e-9
        } else {
            got == want
        };
        assert!(
            same,
            "{name}, segment {s} (length {}): {got} vs {want}",
            lengths[s]
        );
    }
}

#[test]
fn cuda_reduction_kernels_emulated_on_the_cpu() {
    let Some(dir) = cuda_emulation::work_dir("reduction_cuda_emulation") else {
        return;
    };
    // Segments: short, empty, several full tiles plus a partial one, one element.
    let lengths = [1000, 0, 3 * 8192 + 17, 1];
    let real = "((double)(h % 1000003) / 1000003.0 - 0.3)";
    let cases: [(ReduceOp, ElemType, ElemType, &str, u32); 7] = [
        (ReduceOp::Sum, ElemType::F32, ElemType::F32, real, 32),
        (ReduceOp::Mean, ElemType::F64, ElemType::F64, real, 64),
        (ReduceOp::Max, ElemType::F32, ElemType::F32, real, 32),
        (
            ReduceOp::Min,
            ElemType::I32,
            ElemType::I32,
            "((long long)(h % 2001) - 1000)",
            32,
        ),
        (
            ReduceOp::Count,
            ElemType::Bool,
            ElemType::I32,
            "(h % 3 == 0)",
            32,
        ),
        (
            ReduceOp::Sum,
            ElemType::F16,
            ElemType::F32,
            "(0x3c00 + (h % 1024))",
            32,
        ),
        (
            ReduceOp::Sum,
            ElemType::I32,
            ElemType::I64,
            "((long long)(h % 2001) - 1000)",
            1024,
        ),
    ];
    for (op, input, output, fill, finish_block) in cases {
        let k = ReduceKernel::new(op, input, output).unwrap();
        run_emulated(&k, fill, finish_block, &lengths, &dir);
    }
}
