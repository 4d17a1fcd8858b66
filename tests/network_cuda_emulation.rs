//! Runs the generated CUDA network kernels on the CPU, without a GPU, and compares them with the
//! C kernels (tests/network_c.rs checks those against float64 references). The CUDA source is
//! compiled as C++ with a shim: one `std::thread` per CUDA thread, a `std::barrier` per block for
//! `__syncthreads` and per warp for the warp intrinsics (`__ballot_sync`, `__shfl_sync`), real
//! atomics (`std::atomic_ref`), blocks one at a time (so `__shared__` is a function-local static
//! and an ordered compaction's look-back finds its predecessors done). The host side launches as
//! `spikeforge_network_run` does: per step the update, delivery and after-delivery kernels, from
//! buffers started by `handlers::network_run::starts`. This checks the CUDA-only logic the C
//! dialect does not have: warp-aggregated and look-back compaction across warps and blocks, the
//! delivery kernel's segment prefix and work items, monitors by warps, counted arrivals.
//!
//! The persistent kernel runs here too, as one block and as a grid of blocks that all run at
//! once (each block's `__shared__` variables its own: the kernel becomes a function template
//! instantiated once per block), with its real grid barrier (atomics, fences, volatile loads),
//! launched in chunks of steps as the handler may launch it; and so does the resident kernel
//! (one block per member, the state in its dynamic shared memory).
//!
//! Needs `g++` with C++20; skipped without one, unless `SPIKEFORGE_REQUIRE_GXX=1`.

#[path = "common/cuda_emulation.rs"]
mod cuda_emulation;
#[path = "common/network_harness.rs"]
mod harness;

use std::path::{Path, PathBuf};
use std::process::Command;

use harness::{compile, spikes, Buf, Compiled, Results, State};
use serde_json::json;
use spikeforge::codegen::network_kernel::{
    closing_launches, cluster_counts_arrivals, cluster_mode, cluster_shape, generate, kernel_shape,
    resident_layout, step_launches, StepGrid, CLUSTER_ENTRY, DELIVER_BLOCK,
    PERSISTENT_BALANCED_ENTRY, PERSISTENT_BLOCK, PERSISTENT_ENTRY, RESIDENT_ENTRY,
};
use spikeforge::codegen::network_layout::UPDATE_BLOCK;
use spikeforge::codegen::Dialect;
use spikeforge::step::network::plan;

const SHIM: &str = r#"
#include <atomic>
#include <cmath>
#include <cstring>
#include <barrier>
#include <chrono>
#include <fstream>
#include <memory>
#include <thread>
struct sf_dim3 { unsigned x, y; };
static thread_local sf_dim3 threadIdx, blockIdx;
static sf_dim3 blockDim, gridDim;
static thread_local std::barrier<>* sf_bar;
/* The cluster kernel's cluster (a member's blocks): its barrier, and each block's accumulators
   (`sf_acc`, a static of the block's instantiation) by block, for `mapa`. */
static thread_local std::barrier<>* sf_cluster_bar;
static char* sf_cluster_base[64];
/* ... and each block's tracking words (`sf_track`: mbarriers, agreement, bytes sent). */
static char* sf_cluster_track[64];
static size_t sf_cluster_track_bytes;
static char* sf_mapa(char* p, unsigned rank) {
    const unsigned me = blockIdx.y * gridDim.x + blockIdx.x, to = blockIdx.y * gridDim.x + rank;
    char* const track = sf_cluster_track[me];
    if (track != nullptr && p >= track && p < track + sf_cluster_track_bytes) return sf_cluster_track[to] + (p - track);
    return sf_cluster_base[to] + (p - sf_cluster_base[me]);
}
/* An mbarrier in one 64-bit word: pending arrivals (bits 0-19), expected arrivals (20-39), the
   phase's transaction bytes + 2^22 (40-62), the phase (63). A phase completes when its pending
   arrivals and bytes are both zero; the bytes must stay within 2^20 - 1 either way (PTX). */
static void sf_emu_mbarrier_init(unsigned long long* b, unsigned n) {
    std::atomic_ref<unsigned long long>(*b).store((unsigned long long) n | (unsigned long long) n << 20 | (unsigned long long) (1u << 22) << 40);
}
static void sf_emu_mbarrier_update(unsigned long long* b, unsigned arrivals, long long bytes) {
    std::atomic_ref<unsigned long long> a(*b);
    unsigned long long old = a.load(), next;
    do {
        unsigned long long pending = old & 0xfffffu, expected = (old >> 20) & 0xfffffu;
        const long long tx = (long long) ((old >> 40) & 0x7fffffu) + bytes - (1ll << 22);
        unsigned long long phase = old >> 63;
        if (tx >= (1ll << 20) || tx <= -(1ll << 20) || arrivals > pending) std::abort();
        pending -= arrivals;
        if (pending == 0 && tx == 0) { pending = expected; phase ^= 1u; }
        next = pending | expected << 20 | (unsigned long long) (tx + (1ll << 22)) << 40 | phase << 63;
    } while (!a.compare_exchange_weak(old, next));
}
static void sf_emu_mbarrier_wait(unsigned long long* b, unsigned parity) {
    while ((std::atomic_ref<unsigned long long>(*b).load() >> 63) == parity) std::this_thread::yield();
}
struct sf_warp { std::barrier<> bar{32}; unsigned long long slot[32]; };
static thread_local sf_warp* sf_warps;
static void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
static long long clock64() { return (long long) std::chrono::steady_clock::now().time_since_epoch().count(); }
static void __trap() { std::abort(); }
static void __syncthreads() { sf_bar->arrive_and_wait(); }
static unsigned sf_this_lane() { return threadIdx.x & 31u; }
template <class T> static T sf_exchange(T v, int src) {
    sf_warp& w = sf_warps[threadIdx.x >> 5];
    std::memcpy(&w.slot[sf_this_lane()], &v, sizeof(T));
    w.bar.arrive_and_wait();
    T r;
    std::memcpy(&r, &w.slot[src], sizeof(T));
    w.bar.arrive_and_wait();
    return r;
}
static unsigned __ballot_sync(unsigned, bool p) {
    unsigned b = 0;
    for (int l = 0; l < 32; ++l) b |= (sf_exchange<unsigned long long>(p ? 1ull : 0ull, l) ? 1u : 0u) << l;
    return b;
}
template <class T> static T __shfl_sync(unsigned, T v, int src) { return sf_exchange(v, src); }
template <class T> static T __shfl_down_sync(unsigned, T v, unsigned d) {
    const int src = (int) (sf_this_lane() + d);
    return sf_exchange(v, src < 32 ? src : (int) sf_this_lane());
}
template <class T> static T __shfl_xor_sync(unsigned, T v, int m) { return sf_exchange(v, (int) sf_this_lane() ^ m); }
template <class T> static T __shfl_up_sync(unsigned, T v, unsigned d) {
    const int src = (int) sf_this_lane() - (int) d;
    return sf_exchange(v, src >= 0 ? src : (int) sf_this_lane());
}
static unsigned __match_any_sync(unsigned, int v) {
    unsigned m = 0;
    for (int l = 0; l < 32; ++l) m |= (sf_exchange<int>(v, l) == v ? 1u : 0u) << l;
    return m;
}
static void __syncwarp() { sf_warps[threadIdx.x >> 5].bar.arrive_and_wait(); }
static int __popc(unsigned x) { return __builtin_popcount(x); }
static int __ffs(int x) { return __builtin_ffs(x); }
static int __clz(int x) { return x == 0 ? 32 : __builtin_clz((unsigned) x); }
template <class T> static T atomicAdd(T* p, T v) { return std::atomic_ref<T>(*p).fetch_add(v); }
static unsigned long long atomicMax(unsigned long long* p, unsigned long long v) {
    std::atomic_ref<unsigned long long> a(*p);
    unsigned long long old = a.load();
    while (old < v && !a.compare_exchange_weak(old, v)) {}
    return old;
}
template <class T> static T atomicAnd(T* p, T v) { return std::atomic_ref<T>(*p).fetch_and(v); }
static unsigned long long atomicExch(unsigned long long* p, unsigned long long v) {
    return std::atomic_ref<unsigned long long>(*p).exchange(v);
}
static float __int_as_float(int b) { float f; std::memcpy(&f, &b, 4); return f; }
static int __float_as_int(float f) { int b; std::memcpy(&b, &f, 4); return b; }
#define __fmul_rn(a, b) ((a) * (b))
#define __fadd_rn(a, b) ((a) + (b))
#define __fmaf_rn(a, b, c) fmaf(a, b, c)
#define __fdiv_rn(a, b) ((a) / (b))
#define __fsqrt_rn(a) sqrtf(a)
#define __dmul_rn(a, b) ((a) * (b))
#define __dadd_rn(a, b) ((a) + (b))
#define __ddiv_rn(a, b) ((a) / (b))
#define __shared__ static
"#;

const LAUNCH: &str = r#"
template <class F, class... A> static void launch(F f, unsigned gx, unsigned gy, unsigned block, A... a) {
    blockDim.x = block; blockDim.y = 1; gridDim.x = gx; gridDim.y = gy;
    for (unsigned by = 0; by < gy; ++by) {
        for (unsigned bx = 0; bx < gx; ++bx) {
            std::barrier<> bar((std::ptrdiff_t) block);
            std::unique_ptr<sf_warp[]> warps(new sf_warp[block / 32]);
            std::barrier<>* b = &bar;
            sf_warp* ws = warps.get();
            std::vector<std::thread> ts;
            for (unsigned t = 0; t < block; ++t)
                ts.emplace_back([=] { sf_bar = b; sf_warps = ws; threadIdx.x = t; threadIdx.y = 0; blockIdx.x = bx; blockIdx.y = by; f(a...); });
            for (auto& th : ts) th.join();
        }
    }
}
/* Every block of the grid at once (a cooperative launch): `f(bx)` runs block bx's thread. */
template <class F> static void launch_grid(unsigned gx, unsigned gy, unsigned block, F f) {
    blockDim.x = block; blockDim.y = 1; gridDim.x = gx; gridDim.y = gy;
    std::vector<std::unique_ptr<std::barrier<>>> bars, clusters;
    std::vector<std::unique_ptr<sf_warp[]>> warps;
    for (unsigned k = 0; k < gx * gy; ++k) {
        bars.emplace_back(new std::barrier<>((std::ptrdiff_t) block));
        warps.emplace_back(new sf_warp[block / 32]);
    }
    for (unsigned k = 0; k < gy; ++k) clusters.emplace_back(new std::barrier<>((std::ptrdiff_t) (gx * block)));
    std::vector<std::thread> ts;
    for (unsigned by = 0; by < gy; ++by)
        for (unsigned bx = 0; bx < gx; ++bx)
            for (unsigned t = 0; t < block; ++t) {
                std::barrier<>* b = bars[by * gx + bx].get();
                std::barrier<>* cb = clusters[by].get();
                sf_warp* ws = warps[by * gx + bx].get();
                ts.emplace_back([=] { sf_bar = b; sf_cluster_bar = cb; sf_warps = ws; threadIdx.x = t; threadIdx.y = 0; blockIdx.x = bx; blockIdx.y = by; f(bx); });
            }
    for (auto& th : ts) th.join();
}
static std::vector<std::vector<unsigned char>> sf_read(const char* path) {
    std::ifstream in(path, std::ios::binary);
    std::vector<std::vector<unsigned char>> out;
    unsigned long long n;
    while (in.read((char*) &n, 8)) {
        std::vector<unsigned char> b(n + 8);
        in.read((char*) b.data(), (std::streamsize) n);
        out.push_back(std::move(b));
    }
    return out;
}
"#;

/// How the emulated host launches the kernels.
#[derive(Clone, Copy, Debug)]
enum Mode {
    /// Per step the update, delivery and after-delivery kernels (the argument: delivery blocks).
    PerStep(usize),
    /// The persistent kernel with this many blocks at once, in launches of `chunk` steps.
    Persistent { blocks: usize, chunk: usize },
    /// The resident kernel (one block, the state in shared memory), in launches of `chunk`
    /// steps.
    Resident { chunk: usize },
    /// The cluster kernel as one cluster of `blocks` blocks (1, 2 or 4), in launches of `chunk`
    /// steps.
    Cluster { blocks: usize, chunk: usize },
}

/// Most blocks a persistent emulation runs (one instantiation of the kernel template each).
const MAX_PERSISTENT_BLOCKS: usize = 4;

/// Words of the cluster kernel's target cache in the emulation: the rows of a block of 128
/// neurons of `cuba`'s random network fit, those of the dense one (300 synapses a row) do not.
const TARGET_CACHE_WORDS: usize = 16384;

/// The emulation program of a network: the shim, the CUDA source, and a host that launches
/// `steps` steps the way the handler does, per step or persistent.
fn program(c: &Compiled, persistent: bool) -> String {
    let net = spikeforge::frontend::network::lower(&c.spec).unwrap();
    let plan = plan(&net);
    let shape = kernel_shape(&net, &plan);
    let generated = generate(&net, &plan, &c.layout, Dialect::Cuda);
    // Dynamic shared memory: the delivery's segment prefix, the resident kernel's state.
    let resident = resident_layout(&c.layout, shape.segments);
    let mut source = generated
        .source
        .replace(
            "extern __shared__ long long sf_seg[];",
            &format!("static long long sf_seg[{}];", shape.segments + 1),
        )
        .replace(
            "extern __shared__ long long sf_dynamic[];",
            &format!("static long long sf_dynamic[{}];", resident.bytes / 8),
        );
    // The release barrier's PTX, as C++ atomics.
    source = source
        .replace(
            spikeforge::codegen::network_kernel::ARRIVE_RELEASE,
            "std::atomic_ref<unsigned long long>(*sf_word).fetch_add(1ull, std::memory_order_release);",
        )
        .replace(
            spikeforge::codegen::network_kernel::FENCE_ACQUIRE,
            "std::atomic_thread_fence(std::memory_order_acquire);",
        )
        .replace(
            spikeforge::codegen::network_kernel::POLL_ACQUIRE,
            "return std::atomic_ref<unsigned long long>(*sf_word).load(std::memory_order_acquire);",
        );
    // The cluster kernel's barrier: the member's std::barrier; `mapa`: through each block's
    // accumulators (registered by the block).
    source = source
        .replace(
            "asm volatile(\"barrier.cluster.arrive.release;\\n\\tbarrier.cluster.wait.acquire;\" ::: \"memory\");",
            "sf_cluster_bar->arrive_and_wait();",
        )
        .replace(
            "asm(\"mapa.u64 %0, %1, %2;\" : \"=l\"(sf_q) : \"l\"((uint64_t) sf_p), \"r\"(sf_rank));",
            "sf_q = (uint64_t) sf_mapa((char*) sf_p, sf_rank);",
        );
    for (t, ptx, constraint) in [("float", "f32", "f"), ("double", "f64", "d")] {
        source = source.replace(
            &format!("asm volatile(\"red.add.{ptx} [%0], %1;\" :: \"l\"(sf_a.sf_p), \"{constraint}\"(sf_v));"),
            &format!("std::atomic_ref<{t}>(*sf_a.sf_p).fetch_add(sf_v);"),
        );
    }
    // The cluster kernel's counted arrivals (an integer reduction on the distributed shared
    // memory), as a C++ atomic on the count's 32 bits.
    source = source.replace(
        spikeforge::codegen::network_kernel::COUNT_ARRIVAL,
        "std::atomic_ref<uint32_t>(*(uint32_t*) sf_a.sf_p).fetch_add(1u);",
    );
    // The cluster kernel's tracked arrivals: the emulated mbarriers (above), the reduction as a
    // C++ atomic and then its 4 bytes completed at the target block's mbarrier.
    for (line, emulated) in [
        (
            spikeforge::codegen::network_kernel::MBARRIER_INIT,
            "sf_emu_mbarrier_init(sf_bar, sf_count);",
        ),
        (spikeforge::codegen::network_kernel::MBARRIER_INIT_FENCE, ""),
        (
            spikeforge::codegen::network_kernel::MBARRIER_WAIT,
            "sf_emu_mbarrier_wait(sf_bar, sf_parity);",
        ),
        (
            spikeforge::codegen::network_kernel::MBARRIER_ARRIVE,
            "sf_emu_mbarrier_update((uint64_t*) sf_mapa((char*) sf_bar, sf_rank), 1u, (long long) sf_bytes);",
        ),
        (
            spikeforge::codegen::network_kernel::COUNT_ARRIVAL_TRACKED,
            "std::atomic_ref<uint32_t>(*(uint32_t*) sf_a.sf_p).fetch_add(1u); sf_emu_mbarrier_update((uint64_t*) sf_mapa((char*) sf_bar, sf_a.sf_r), 0u, -4ll);",
        ),
    ] {
        source = source.replace(line, emulated);
    }
    if let Some(at) = source.find(" sf_track[3 + ") {
        let end = at + source[at..].find('\n').unwrap();
        source.insert_str(
            end,
            " sf_cluster_track[blockIdx.y * gridDim.x + blockIdx.x] = (char*) sf_track; sf_cluster_track_bytes = sizeof(sf_track);",
        );
    }
    // The cluster kernel's target cache: a static array of TARGET_CACHE_WORDS in place of the
    // dynamic shared memory, so that some blocks' targets fit and others' do not.
    source = source
        .replace(
            "extern __shared__ int32_t sf_tgt[];",
            &format!("__shared__ int32_t sf_tgt[{TARGET_CACHE_WORDS}];"),
        )
        .replace(
            spikeforge::codegen::network_kernel::TARGET_CACHE_BYTES,
            &format!("sf_tgt_bytes = {};", 4 * TARGET_CACHE_WORDS),
        );
    if let Some(at) = source.find(" sf_acc[2 * ") {
        let end = at + source[at..].find('\n').unwrap();
        source.insert_str(
            end,
            " sf_cluster_base[blockIdx.y * gridDim.x + blockIdx.x] = (char*) sf_acc;",
        );
    }
    if persistent {
        // The cluster kernel (compiled where its mode is named): one program for every mode,
        // the mode read from the launch's `sf_group_blocks` as the handler passes it.
        source.insert_str(0, "#define SF_CLUSTER_MODE sf_group_blocks\n");
        // One instantiation per block: each block's `__shared__` (function statics) its own
        // (the launch bounds may give a minimum of blocks a multiprocessor too).
        // (The one-barrier kernel with balanced deliveries too, where the network has one.)
        for name in [PERSISTENT_ENTRY, PERSISTENT_BALANCED_ENTRY] {
            let entry = format!(") {name}(");
            let head = format!("extern \"C\" __global__ void __launch_bounds__({PERSISTENT_BLOCK}");
            if let Some(end) = source.find(&entry) {
                let start = source[..end]
                    .rfind(&head)
                    .expect("the persistent entry's head");
                source.replace_range(
                    start..end + entry.len(),
                    &format!("template <int SF_BX> static void {name}("),
                );
            }
        }
        // At most 2 register slots in the one-barrier kernel, so that a grid of one block
        // (3 virtual blocks in the tests' networks) runs virtual blocks beyond its slots too.
        if let Some(at) = source.find("#define SF_SLOTS ") {
            let end = at + source[at..].find('\n').unwrap();
            let slots: usize = source[at + 17..end].parse().unwrap();
            source.replace_range(at..end, &format!("#define SF_SLOTS {}", slots.min(2)));
        }
        // The cluster kernel (where the network has one): one instantiation per block too.
        if let Some(shape) = cluster_shape(&net, &plan) {
            source = source.replace(
                &format!(
                    "extern \"C\" __global__ void __launch_bounds__({}, 1) {CLUSTER_ENTRY}(",
                    shape.block
                ),
                &format!("template <int SF_BX> static void {CLUSTER_ENTRY}("),
            );
        }
        // Waits give the CPU to the threads they wait for (2 cores, hundreds of threads).
        for wait in [
            "while (*(volatile unsigned long long*) sf_arrived < sf_target) {",
            "while (sf_poll_acquire(sf_arrived) < sf_target) {",
            "if (sf_sum >= sf_target) break;",
        ] {
            source = source.replace(wait, &format!("{wait} std::this_thread::yield();"));
        }
        source = source.replace(
            "== 0ull) continue;",
            "== 0ull) { std::this_thread::yield(); continue; }",
        );
    }
    let n_in = c.layout.inputs.len();
    let mut args = Vec::new();
    for p in 0..net.projections.len() {
        args.push(format!("(sf_i64) std::atoll(argv[{}])", 6 + p));
    }
    for (k, a) in c.layout.inputs.iter().enumerate() {
        args.push(format!("(const {}*) bufs[{k}].data()", a.elem.c_type()));
    }
    for (k, a) in c.layout.outputs.iter().enumerate() {
        args.push(format!("({}*) bufs[{}].data()", a.elem.c_type(), n_in + k));
    }
    args.push(format!(
        "(int32_t*) bufs[{}].data()",
        n_in + c.layout.outputs.len()
    ));
    let args = args.join(", ");
    let launches = if persistent {
        // SF_CLUSTER=1 in the environment: the cluster kernel; SF_BALANCED=1: the one-barrier
        // kernel with balanced deliveries.
        let mut entry = format!("{PERSISTENT_ENTRY}<SF_B>");
        if generated.entries.contains(&PERSISTENT_BALANCED_ENTRY) {
            entry = format!("(balanced ? {PERSISTENT_BALANCED_ENTRY}<SF_B> : {entry})");
        }
        if generated.entries.contains(&CLUSTER_ENTRY) {
            entry = format!("(cluster ? {CLUSTER_ENTRY}<SF_B> : {entry})");
        }
        let cases: String = (0..MAX_PERSISTENT_BLOCKS)
            .map(|b| {
                let entry = entry.replace("SF_B", &b.to_string());
                format!("case {b}: {entry}((sf_i32) c0, (sf_i32) c1, (sf_i32) steps, group_blocks, {args}); break; ")
            })
            .collect();
        // `blocks` 0: the resident kernel.
        format!(
            "for (int c0 = 0; c0 < steps; c0 += chunk) {{\n        const int c1 = c0 + chunk < steps ? c0 + chunk : steps;\n        if (blocks == 0) launch({RESIDENT_ENTRY}, 1, nb, {block}, (sf_i32) c0, (sf_i32) c1, (sf_i32) steps, {args});\n        else launch_grid(blocks, nb, {PERSISTENT_BLOCK}, [&](unsigned bx) {{ switch (bx) {{ {cases}}} }});\n    }}\n",
            block = shape.resident_block
        )
    } else {
        let launch = |entry: &str, grid: StepGrid, s: &str| {
            let (blocks, threads) = match grid {
                StepGrid::Update => (shape.update_blocks.to_string(), UPDATE_BLOCK),
                StepGrid::Deliver => ("blocks".to_string(), DELIVER_BLOCK),
            };
            format!("        launch({entry}, {blocks}, nb, {threads}, (sf_i32) {s}, (sf_i32) steps, {args});\n")
        };
        let mut l = "for (int s = 0; s < steps; ++s) {\n".to_string();
        for (entry, grid) in step_launches(&plan) {
            l.push_str(&launch(entry, grid, "s"));
        }
        l.push_str("    }\n    if (steps > 0) {\n");
        for (entry, grid) in closing_launches(&plan) {
            l.push_str(&launch(entry, grid, "(steps - 1)"));
        }
        l.push_str("    }\n");
        l
    };
    format!(
        "{SHIM}\n{}\n{source}\n{}\n{LAUNCH}\nint main(int argc, char** argv) {{\n    auto bufs = sf_read(argv[1]);\n    const int steps = std::atoi(argv[2]);\n    const unsigned nb = (unsigned) std::atoi(argv[3]);\n    const unsigned blocks = (unsigned) std::atoi(argv[4]);\n    const int chunk = std::atoi(argv[5]);\n    (void) chunk;\n    /* The grid barrier's arrival groups: of 2 blocks unless SF_GROUP_BLOCKS says (0: flat), so that the emulated grids (at most MAX_PERSISTENT_BLOCKS blocks) arrive in groups and through the top counter too. */\n    const char* sf_gb = std::getenv(\"SF_GROUP_BLOCKS\");\n    const sf_i32 group_blocks = sf_gb ? (sf_i32) std::atoi(sf_gb) : 2;\n    (void) group_blocks;\n    const bool cluster = std::getenv(\"SF_CLUSTER\") != nullptr;\n    (void) cluster;\n    const bool balanced = std::getenv(\"SF_BALANCED\") != nullptr;\n    (void) balanced;\n    {launches}    std::ofstream out(argv[argc - 1], std::ios::binary);\n    for (size_t k = {n_in}; k < bufs.size(); ++k) out.write((const char*) bufs[k].data(), (std::streamsize) bufs[k].size() - 8);\n    return 0;\n}}\n",
        cuda_emulation::head(),
        cuda_emulation::tail()
    )
}

/// The emulations of a network: per step, and persistent.
struct Programs {
    per_step: PathBuf,
    persistent: PathBuf,
}

/// Builds the emulations of a network once.
fn build(c: &Compiled, name: &str, dir: &Path) -> Programs {
    let flags = ["-std=c++20", "-O1", "-ffp-contract=off", "-pthread", "-w"];
    Programs {
        per_step: cuda_emulation::compile(&program(c, false), dir, name, &flags),
        persistent: cuda_emulation::compile(
            &program(c, true),
            dir,
            &format!("{name}_persistent"),
            &flags,
        ),
    }
}

/// Runs `steps` steps of the emulated CUDA kernels, launched as `mode` says.
fn emulate(
    c: &Compiled,
    exe: &Programs,
    state: &State,
    steps: usize,
    mode: Mode,
) -> (State, Results) {
    emulate_with(c, exe, state, steps, mode, &[])
}

/// [`emulate`] with the program's environment variables `env` (`SF_GROUP_BLOCKS`: the grid
/// barrier's groups, 0 for the flat barrier).
fn emulate_with(
    c: &Compiled,
    exe: &Programs,
    state: &State,
    steps: usize,
    mode: Mode,
    env: &[(&str, &str)],
) -> (State, Results) {
    let (exe, blocks, chunk) = match mode {
        Mode::PerStep(blocks) => (&exe.per_step, blocks, steps),
        Mode::Persistent { blocks, chunk } => {
            assert!((1..=MAX_PERSISTENT_BLOCKS).contains(&blocks));
            (&exe.persistent, blocks, chunk)
        }
        Mode::Resident { chunk } => (&exe.persistent, 0, chunk),
        Mode::Cluster { blocks, chunk } => {
            assert!([1, 2, 4].contains(&blocks), "a power-of-two cluster");
            (&exe.persistent, blocks, chunk)
        }
    };
    let cluster_env = [("SF_CLUSTER", "1")];
    let env: Vec<(&str, &str)> = match mode {
        Mode::Cluster { .. } => env.iter().chain(&cluster_env).copied().collect(),
        _ => env.to_vec(),
    };
    let prepared = c.prepare(state, steps);
    let dir = exe.parent().unwrap();
    let input = dir.join(format!("{}.in", exe.file_name().unwrap().to_string_lossy()));
    let output = dir.join(format!(
        "{}.out",
        exe.file_name().unwrap().to_string_lossy()
    ));
    let mut bytes = Vec::new();
    for b in prepared.inputs.iter().chain(&prepared.outs) {
        let data = b.as_bytes();
        bytes.extend((data.len() as u64).to_ne_bytes());
        bytes.extend(data);
    }
    std::fs::write(&input, bytes).unwrap();
    let mut cmd = Command::new(exe);
    cmd.arg(&input)
        .arg(steps.to_string())
        .arg(state.nb.to_string())
        .arg(blocks.to_string())
        .arg(chunk.to_string());
    for n in &prepared.dims[1..] {
        cmd.arg(n.to_string());
    }
    let out = cmd.arg(&output).envs(env).output().unwrap();
    assert!(
        out.status.success(),
        "the emulation failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let data = std::fs::read(&output).unwrap();
    let mut at = 0;
    let mut outs: Vec<Buf> = prepared.outs;
    for b in &mut outs {
        let n = b.as_bytes().len();
        b.set_bytes(&data[at..at + n]);
        at += n;
    }
    assert_eq!(at, data.len());
    c.finish(state, steps, outs)
}

/// A random current-based network of `n` neurons (E: the first 80%) with per-synapse or one
/// shared weight; `named`: E's synapses have two named pathways with their own delays (the
/// second also inhibits, later).
fn cuba(
    n: usize,
    deterministic: bool,
    shared_weight: bool,
    named: bool,
    seed: u64,
) -> (serde_json::Value, Vec<(&'static str, Vec<f64>)>) {
    let n_e = n * 4 / 5;
    let mut next = harness::uniforms(seed);
    let mut state: Vec<(&'static str, Vec<f64>)> = Vec::new();
    for (name, range) in [("Ce", 0..n_e), ("Ci", n_e..n)] {
        let (mut off, mut t, mut w) = (vec![0.0], vec![], vec![]);
        for _ in range {
            for j in 0..n {
                if next() < 0.1 {
                    t.push(j as f64);
                    w.push(if name == "Ce" {
                        1.0 + next()
                    } else {
                        -3.0 - 3.0 * next()
                    });
                    if next() < 0.05 {
                        t.push(j as f64); // a multapse
                        w.push(0.5);
                    }
                }
            }
            off.push(t.len() as f64);
        }
        let (ko, kt, kw): (&'static str, &'static str, &'static str) = if name == "Ce" {
            ("Ce.row_offsets", "Ce.targets", "Ce.w")
        } else {
            ("Ci.row_offsets", "Ci.targets", "Ci.w")
        };
        state.push((ko, off));
        state.push((kt, t));
        if !shared_weight {
            state.push((kw, w));
        }
    }
    state.push(("P.v", (0..n).map(|_| -60.0 + 12.0 * next()).collect()));
    let (model, e_pre, i_pre) = if shared_weight {
        ("", "ge += 1.25", "gi -= 4.5")
    } else {
        ("w : volt", "ge += w", "gi += w")
    };
    let (e_pre, e_delay) = if named {
        let late = if shared_weight {
            "gi -= 0.5"
        } else {
            "gi -= 0.4*w"
        };
        (
            json!({"now": e_pre, "late": late}),
            json!({"now": 0.1, "late": 0.35}),
        )
    } else {
        (json!(e_pre), json!(0.1))
    };
    let spec = json!({
        "dt": 0.1, "dtype": "float64", "deterministic": deterministic,
        "groups": [{"kind": "neuron", "name": "P", "n": n,
            "model": {"equations": "dv/dt = (ge + gi - (v + 49))/(20*ms) : volt (unless refractory)\ndge/dt = -ge/(5*ms) : volt\ndgi/dt = -gi/(10*ms) : volt",
                      "threshold": "v > -50", "reset": "v = -60", "refractory": 2.0, "method": "euler"}}],
        "projections": [
            {"name": "Ce", "source": "P", "source_range": [0, n_e], "target": "P", "model": model, "on_pre": e_pre, "delay": e_delay},
            {"name": "Ci", "source": "P", "source_range": [n_e, n], "target": "P", "model": model, "on_pre": i_pre}
        ],
        "monitors": [{"kind": "spike", "name": "sp", "source": "P", "capacity": 100000},
                     {"kind": "rate", "name": "rate", "source": "P", "range": [0, n_e]},
                     {"kind": "state", "name": "vm", "source": "P", "variables": ["v"], "record": [7, 3, 200 % n], "every": 4}]
    });
    (spec, state)
}

fn assert_close(a: &[f64], b: &[f64], tol: f64, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}");
    for (k, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= tol, "{what}[{k}]: {x} vs {y}");
    }
}

#[test]
fn emulated_cuda_kernels_give_the_c_kernels_results() {
    let Some(dir) = cuda_emulation::work_dir("network_cuda_emulation") else {
        return;
    };
    let steps = 100;
    for (name, n, deterministic, shared, named) in [
        ("atomic", 300usize, false, false, false),
        ("ordered", 300, true, false, false),
        ("counted", 300, true, true, false),
        // Two named pathways of one projection, with their own delays: parallel segments of
        // both pathways, ordered (row-parallel) and counted deliveries of each.
        ("named_atomic", 300, false, false, true),
        ("named_ordered", 300, true, false, true),
        ("named_counted", 300, true, true, true),
    ] {
        let (spec, values) = cuba(n, deterministic, shared, named, 5);
        let c = compile(&spec.to_string());
        let exe = build(&c, name, &dir);
        let state = c.state(1, &values);
        let (cs, cr) = c.run(&state, steps);
        let (gs, gr) = emulate(&c, &exe, &state, steps, Mode::PerStep(3));
        let want = spikes(&cr, "sp", 100000, 0);
        assert!(want.len() > 30, "{name}: {} spikes", want.len());
        assert_eq!(spikes(&gr, "sp", 100000, 0), want, "{name}");
        assert_eq!(gr.get("rate.rate"), cr.get("rate.rate"), "{name}");
        assert_eq!(gr.get("P.spike_count"), cr.get("P.spike_count"), "{name}");
        for key in ["P.lastspike_step", "P.spike_queue_counts"] {
            assert_eq!(gs.get(key), cs.get(key), "{name}: {key}");
        }
        let exact = name.ends_with("ordered");
        let tol = if exact { 0.0 } else { 1e-9 };
        for key in ["P.v", "P.ge", "P.gi"] {
            assert_close(&gs.get(key), &cs.get(key), tol, &format!("{name}: {key}"));
        }
        assert_close(&gr.get("vm.v"), &cr.get("vm.v"), tol, name);
        if deterministic {
            // In deterministic mode the spikes are compacted in order: the queue itself, the
            // monitor's buffer and a second run are identical.
            assert_eq!(gs.get("P.spike_queue"), cs.get("P.spike_queue"), "{name}");
            assert_eq!(gr.get("sp.i"), cr.get("sp.i"), "{name}");
            let (gs2, _) = emulate(&c, &exe, &state, steps, Mode::PerStep(2));
            for key in ["P.v", "P.ge", "P.gi"] {
                assert_eq!(gs.get(key), gs2.get(key), "{name}: {key} from run to run");
            }
        }
        // Split runs on the GPU path too.
        let (half, _) = emulate(&c, &exe, &state, steps / 2, Mode::PerStep(3));
        let (twice, _) = emulate(&c, &exe, &half, steps - steps / 2, Mode::PerStep(3));
        assert_eq!(
            twice.get("P.lastspike_step"),
            gs.get("P.lastspike_step"),
            "{name}"
        );
        // The persistent kernel, as one block and as grids (in chunks of steps), gives the
        // per-step kernels' results: the same spikes, and in deterministic mode the same bits.
        let modes = [(1, steps), (3, 37), (2, 1)]
            .map(|(blocks, chunk)| Mode::Persistent { blocks, chunk })
            .into_iter()
            .chain([
                Mode::Resident { chunk: steps },
                Mode::Resident { chunk: 41 },
            ]);
        for mode in modes {
            let what = format!("{name} {mode:?}");
            let (ps, pr) = emulate(&c, &exe, &state, steps, mode);
            assert_eq!(spikes(&pr, "sp", 100000, 0), want, "{what}");
            assert_eq!(pr.get("rate.rate"), cr.get("rate.rate"), "{what}");
            assert_eq!(pr.get("P.spike_count"), cr.get("P.spike_count"), "{what}");
            for key in ["P.lastspike_step", "P.spike_queue_counts"] {
                assert_eq!(ps.get(key), cs.get(key), "{what}: {key}");
            }
            for key in ["P.v", "P.ge", "P.gi"] {
                assert_close(&ps.get(key), &cs.get(key), tol, &format!("{what}: {key}"));
            }
            assert_close(&pr.get("vm.v"), &cr.get("vm.v"), tol, &what);
            if deterministic {
                for key in ["P.v", "P.ge", "P.gi", "P.spike_queue"] {
                    assert_eq!(ps.get(key), gs.get(key), "{what}: {key}");
                }
                assert_eq!(pr.get("sp.i"), gr.get("sp.i"), "{what}");
                assert_eq!(pr.get("vm.v"), gr.get("vm.v"), "{what}");
            }
        }
        // Two persistent half runs are one run.
        let grid = Mode::Persistent {
            blocks: 3,
            chunk: 20,
        };
        let (full, _) = emulate(&c, &exe, &state, steps, grid);
        let (half, _) = emulate(&c, &exe, &state, steps / 2, grid);
        let (twice, _) = emulate(&c, &exe, &half, steps - steps / 2, grid);
        for key in ["P.lastspike_step", "P.spike_queue_counts"] {
            assert_eq!(twice.get(key), full.get(key), "{name}: {key}");
        }
        if deterministic {
            for key in ["P.v", "P.ge", "P.gi"] {
                assert_eq!(twice.get(key), full.get(key), "{name}: {key} split");
            }
        }
    }
}

#[test]
fn emulated_inputs_delays_generators_and_late_resets_match_c() {
    let Some(dir) = cuda_emulation::work_dir("network_cuda_emulation") else {
        return;
    };
    for deterministic in [false, true] {
        inputs_delays_generators(&dir, deterministic);
    }
}

/// A network of every input (Poisson group, generator with a period, Poisson input,
/// TimedArray), per-synapse delays and a late reset, emulated per step and persistent, against
/// the C kernels: float32 with float atomics, or float64 in deterministic mode (where every
/// path gives the same bits).
fn inputs_delays_generators(dir: &Path, deterministic: bool) {
    let dtype = if deterministic { "float64" } else { "float32" };
    let spec = json!({
        "dt": 0.1, "dtype": dtype, "deterministic": deterministic,
        "timed_arrays": [{"name": "stim", "dt": 1.0, "shape": [4, 2]}],
        "groups": [
            {"kind": "neuron", "name": "P", "n": 150,
             "model": {"equations": "dv/dt = (ge - (v + 49) + stim(t, i % 2))/(20*ms) : volt (unless refractory)\ndge/dt = -ge/(5*ms) : volt",
                       "threshold": "v > -50", "reset": "v = -60", "refractory": 1.0, "method": "euler"}},
            {"kind": "poisson", "name": "pg", "n": 40, "rates": 0.2},
            {"kind": "spike_generator", "name": "sg", "n": 3, "n_spikes": 4, "period": 1.0}
        ],
        "projections": [
            {"name": "In", "source": "pg", "target": "P", "model": "w : 1\nd : second",
             "on_pre": "v_post += w", "delay": "d", "max_delay": 0.5},
            {"name": "Gen", "source": "sg", "target": "P", "target_range": [10, 20], "on_pre": "ge += 3"}
        ],
        "poisson_inputs": [{"name": "bg", "target": "P", "target_range": [0, 100], "variable": "ge", "n": 30, "rate": 0.05, "weight": 0.4}],
        "monitors": [{"kind": "spike", "name": "sp", "source": "P", "range": [0, 120], "capacity": 50},
                     {"kind": "spike", "name": "gsp", "source": "sg", "capacity": 100},
                     {"kind": "state", "name": "m", "source": "P", "variables": ["v", "ge"], "record": true, "every": 7}]
    });
    let c = compile(&spec.to_string());
    // Poisson group -> P: 40 rows of 6 synapses with delays of 0..5 steps, sorted, in buckets.
    let (mut off, mut t, mut w, mut d, mut buckets) = (vec![0.0], vec![], vec![], vec![], vec![]);
    for r in 0..40usize {
        let start = t.len();
        let delays: Vec<usize> = (0..6).map(|k| (r * 7 + k * 3) % 6).collect();
        let mut sorted = delays.clone();
        sorted.sort_unstable();
        for step in 0..6usize {
            buckets.push((start + sorted.iter().filter(|x| **x < step).count()) as f64);
        }
        for (k, s) in sorted.iter().enumerate() {
            t.push(((r * 11 + k * 29) % 150) as f64);
            w.push(0.5 + (k as f64) * 0.25);
            d.push(*s as f64 * 0.1);
        }
        off.push(t.len() as f64);
    }
    buckets.push(t.len() as f64);
    let values = vec![
        ("rng_seed", vec![7.0]),
        ("stim.values", vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]),
        ("P.v", (0..150).map(|i| -60.0 + (i % 11) as f64).collect()),
        ("In.row_offsets", off),
        ("In.targets", t),
        ("In.w", w),
        ("In.d", d),
        ("In.delay_buckets", buckets),
        ("sg.indices", vec![0.0, 2.0, 1.0, 2.0]),
        ("sg.steps", vec![0.0, 0.0, 4.0, 9.0]),
        ("Gen.row_offsets", vec![0.0, 2.0, 3.0, 5.0]),
        ("Gen.targets", vec![0.0, 9.0, 4.0, 4.0, 5.0]),
    ];
    let state = c.state(1, &values);
    let exe = build(&c, &format!("inputs_{deterministic}"), dir);
    let steps = 120;
    let (cs, cr) = c.run(&state, steps);
    let (gs, gr) = emulate(&c, &exe, &state, steps, Mode::PerStep(2));
    assert_eq!(spikes(&gr, "gsp", 100, 0), spikes(&cr, "gsp", 100, 0));
    assert_eq!(gr.get("pg.spike_count"), cr.get("pg.spike_count"));
    assert_eq!(gs.get("sg.cursor"), cs.get("sg.cursor"));
    assert_eq!(gr.get("sp.count"), [50.0]);
    assert_eq!(gr.get("sp.dropped"), cr.get("sp.dropped"));
    assert_eq!(gr.get("P.spike_count"), cr.get("P.spike_count"));
    assert_eq!(gs.get("P.lastspike_step"), cs.get("P.lastspike_step"));
    // float32 with float atomics in a different order: values agree to rounding.
    assert_close(&gs.get("P.v"), &cs.get("P.v"), 1e-3, "P.v");
    assert_close(&gr.get("m.ge"), &cr.get("m.ge"), 1e-3, "m.ge");
    // One block for the whole run; three blocks (one of them with two virtual blocks of the
    // update) in two launches.
    let modes = [(1, steps), (3, steps / 2)]
        .map(|(blocks, chunk)| Mode::Persistent { blocks, chunk })
        .into_iter()
        .chain([Mode::Resident { chunk: steps / 3 }]);
    for mode in modes {
        let what = format!("deterministic {deterministic}, {mode:?}");
        let (ps, pr) = emulate(&c, &exe, &state, steps, mode);
        assert_eq!(
            spikes(&pr, "gsp", 100, 0),
            spikes(&cr, "gsp", 100, 0),
            "{what}"
        );
        assert_eq!(spikes(&pr, "sp", 50, 0), spikes(&gr, "sp", 50, 0), "{what}");
        for key in ["pg.spike_count", "P.spike_count", "sp.dropped"] {
            assert_eq!(pr.get(key), cr.get(key), "{what}: {key}");
        }
        for key in ["sg.cursor", "P.lastspike_step"] {
            assert_eq!(ps.get(key), cs.get(key), "{what}: {key}");
        }
        assert_close(&ps.get("P.v"), &cs.get("P.v"), 1e-3, &what);
        assert_close(&pr.get("m.ge"), &cr.get("m.ge"), 1e-3, &what);
        if deterministic {
            for key in ["P.v", "P.ge", "P.spike_queue"] {
                assert_eq!(ps.get(key), gs.get(key), "{what}: {key}");
            }
            for key in ["m.v", "m.ge", "sp.i"] {
                assert_eq!(pr.get(key), gr.get(key), "{what}: {key}");
            }
        }
    }
}

/// The by-post index of a CSR (`rows`, `targets`) with `n_post` targets: `post_offsets`,
/// `post_synapses` (ascending synapse ids per target), `sources`.
fn by_post(rows: &[f64], targets: &[f64], n_post: usize) -> [Vec<f64>; 3] {
    let mut offsets = vec![0.0; n_post + 1];
    for t in targets {
        offsets[*t as usize + 1] += 1.0;
    }
    for j in 0..n_post {
        offsets[j + 1] += offsets[j];
    }
    let mut ids: Vec<usize> = (0..targets.len()).collect();
    ids.sort_by_key(|s| (targets[*s] as usize, *s));
    let mut sources = vec![0.0; targets.len()];
    for (r, bounds) in rows.windows(2).enumerate() {
        sources[bounds[0] as usize..bounds[1] as usize].fill(r as f64);
    }
    [offsets, ids.iter().map(|s| *s as f64).collect(), sources]
}

/// The spec of a test network (tests/networks/<name>.json).
fn test_network(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/networks/{name}.json"));
    std::fs::read_to_string(path).unwrap()
}

/// Per step, and persistent as one block and as a grid of 3 blocks in chunks of a third.
fn every_path(steps: usize) -> [Mode; 4] {
    [
        Mode::PerStep(2),
        Mode::Persistent {
            blocks: 1,
            chunk: steps,
        },
        Mode::Persistent {
            blocks: 3,
            chunk: steps / 3,
        },
        Mode::Resident { chunk: steps / 2 },
    ]
}

#[test]
fn emulated_plastic_synapses_match_c() {
    // tests/networks/stdp.json: a generator of 50 inputs (the first 20 spike) -> 2 neurons with Brian2's STDP
    // (on_pre, on_post, (event-driven) traces), and a recurrent projection with an on_post.
    in_both_modes("stdp.json", stdp_network_matches_c);
}

/// A plastic test network's state from `values` (one batch member: the emulation shares a
/// block's `__shared__` words between batch members of the persistent kernel, one instantiation
/// per blockIdx.x, as the other tests here), its emulation programs, and its C run's final
/// state, checked to mean something: every target spikes, the weights move.
fn plastic_run(
    c: &Compiled,
    values: &[(&str, Vec<f64>)],
    name: &str,
    dir: &Path,
    steps: usize,
) -> (State, Programs, State) {
    let state = c.state(1, values);
    let exe = build(c, name, dir);
    let (cs, cr) = c.run(&state, steps);
    let post_spikes = cr.get("post.spike_count");
    assert!(
        post_spikes.iter().all(|n| *n > 10.0),
        "{name}: the targets must spike: {post_spikes:?}"
    );
    let w0 = state.get("S.w");
    assert!(
        cs.get("S.w")
            .iter()
            .zip(&w0)
            .any(|(a, b)| (a - b).abs() > 1e-5),
        "{name}: weights moved"
    );
    (state, exe, cs)
}

/// tests/networks/`file` in the default and the deterministic mode, checked by `check(dir, spec,
/// deterministic)`.
fn in_both_modes(file: &str, check: fn(&Path, &str, bool)) {
    let Some(dir) = cuda_emulation::work_dir("network_cuda_emulation") else {
        return;
    };
    let spec = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/networks")
            .join(file),
    )
    .unwrap();
    for deterministic in [false, true] {
        check(&dir, &with_mode(&spec, deterministic), deterministic);
    }
}

/// The network spec `spec` with `"deterministic"` set.
fn with_mode(spec: &str, deterministic: bool) -> String {
    let mut v: serde_json::Value = serde_json::from_str(spec).unwrap();
    v["deterministic"] = json!(deterministic);
    v.to_string()
}

/// Compares the emulated CUDA kernels' `keys` with the C kernels': the same bits in
/// deterministic mode (ordered deliveries, postsynaptic pathways on the targets' threads: the
/// C kernels' order of additions); in the default mode the presynaptic pathways of the plastic
/// projections add to the targets with float atomics, in any order: the same spikes, the
/// state to 1e-9.
fn assert_matches_c(got: &State, want: &State, keys: &[&str], deterministic: bool, what: &str) {
    for key in keys {
        if deterministic {
            assert_eq!(got.get(key), want.get(key), "{what}: {key}");
        } else {
            assert_close(
                &got.get(key),
                &want.get(key),
                1e-9,
                &format!("{what}: {key}"),
            );
        }
    }
}

/// The spikes of tests/networks/stdp.json's and pathways.json's generator: input i spikes in
/// the steps s of the 0.5 ms period with i = s (mod 2), 50 spikes, sorted by step then index
/// (n_spikes <= n: every_test_network_builds_and_runs_in_c puts them all in step 0, and a
/// generator's queue slot holds n spikes).
fn generator_spikes() -> Vec<(f64, f64)> {
    let spikes_at: Vec<(f64, f64)> = (0..5)
        .flat_map(|s| {
            (0..20)
                .filter(move |i| i % 2 == s % 2)
                .map(move |i| (i as f64, s as f64))
        })
        .collect();
    assert_eq!(spikes_at.len(), 50);
    spikes_at
}

/// The per-step kernels and the persistent kernel as one block and as a grid in chunks against
/// the C kernels: the same spikes, `keys` as [`assert_matches_c`] says.
fn every_path_matches_c(
    c: &Compiled,
    exe: &Programs,
    state: &State,
    steps: usize,
    keys: &[&str],
    deterministic: bool,
) {
    let (cs, cr) = c.run(state, steps);
    for mode in [
        Mode::PerStep(2),
        Mode::Persistent {
            blocks: 1,
            chunk: steps,
        },
        Mode::Persistent {
            blocks: 3,
            chunk: steps / 3,
        },
        Mode::Resident { chunk: steps / 2 },
    ] {
        let (gs, gr) = emulate(c, exe, state, steps, mode);
        let what = format!("deterministic {deterministic}, {mode:?}");
        assert_matches_c(&gs, &cs, keys, deterministic, &what);
        assert_eq!(
            gr.get("post.spike_count"),
            cr.get("post.spike_count"),
            "{what}"
        );
        assert_eq!(
            spikes(&gr, "sp", 1000, 0),
            spikes(&cr, "sp", 1000, 0),
            "{what}"
        );
    }
}

fn stdp_network_matches_c(dir: &Path, spec: &str, deterministic: bool) {
    let c = compile(spec);
    let spikes_at = generator_spikes();
    let s_rows: Vec<f64> = (0..=50).map(|r| (2 * r).min(40) as f64).collect();
    let s_targets: Vec<f64> = (0..40).map(|s| (s % 2) as f64).collect();
    let [s_po, s_ps, s_src] = by_post(&s_rows, &s_targets, 2);
    let b_rows = vec![0.0, 1.0, 3.0];
    let b_targets = vec![1.0, 0.0, 1.0];
    let [b_po, b_ps, b_src] = by_post(&b_rows, &b_targets, 2);
    let values = vec![
        ("inp.indices", spikes_at.iter().map(|x| x.0).collect()),
        ("inp.steps", spikes_at.iter().map(|x| x.1).collect()),
        ("post.v", vec![-60.0, -56.0]),
        ("S.row_offsets", s_rows),
        ("S.targets", s_targets),
        ("S.post_offsets", s_po),
        ("S.post_synapses", s_ps),
        ("S.sources", s_src),
        (
            "S.w",
            (0..40)
                .map(|s| 0.01 * ((s * 37) % 40) as f64 / 40.0)
                .collect(),
        ),
        ("Back.row_offsets", b_rows),
        ("Back.targets", b_targets),
        ("Back.post_offsets", b_po),
        ("Back.post_synapses", b_ps),
        ("Back.sources", b_src),
    ];
    let steps = 600;
    let (state, exe, cs) = plastic_run(&c, &values, &format!("stdp_{deterministic}"), dir, steps);
    assert!(
        cs.get("Back.w2").iter().all(|x| *x > 1.0),
        "Back's on_post ran"
    );
    let keys = [
        "S.w",
        "S.Apre",
        "S.Apost",
        "S.lastupdate",
        "Back.w2",
        "post.v",
        "post.ge",
    ];
    every_path_matches_c(&c, &exe, &state, steps, &keys, deterministic);
}

#[test]
fn emulated_named_pathways_match_c() {
    // tests/networks/pathways.json: a generator of 50 inputs -> 2 neurons through two named
    // presynaptic pathways ('up' 3 steps late; 'down' with per-synapse delays of 0 to 9 steps,
    // in buckets) and a postsynaptic one 7 steps late, with an (event-driven) trace; and a
    // recurrent projection with a delayed presynaptic pathway and two postsynaptic ones ('q'
    // one step late).
    in_both_modes("pathways.json", pathways_network_matches_c);
}

fn pathways_network_matches_c(dir: &Path, spec: &str, deterministic: bool) {
    let c = compile(spec);
    let spikes_at = generator_spikes();
    // Rows of 2 synapses (inputs 0..20), sorted by delay step: delay steps (s * 7) % 10.
    let steps_of = |s: usize| ((s * 7) % 10) as f64;
    let mut s_targets = Vec::new();
    let mut s_delays = Vec::new();
    for r in 0..20 {
        let mut row: Vec<(f64, f64)> = (0..2).map(|j| (steps_of(2 * r + j), j as f64)).collect();
        row.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
        for (d, j) in row {
            s_targets.push(j);
            s_delays.push(d);
        }
    }
    let s_rows: Vec<f64> = (0..=50).map(|r| (2 * r).min(40) as f64).collect();
    // Delay buckets: B = 11 entries a row (max_steps 10), first synapse with delay >= D.
    let mut buckets = Vec::new();
    for r in 0..50usize {
        let (lo, hi) = (s_rows[r] as usize, s_rows[r + 1] as usize);
        for d in 0..11 {
            let first = (lo..hi).find(|k| s_delays[*k] >= d as f64).unwrap_or(hi);
            buckets.push(first as f64);
        }
    }
    buckets.push(40.0);
    let [s_po, s_ps, s_src] = by_post(&s_rows, &s_targets, 2);
    let l_rows = vec![0.0, 1.0, 3.0];
    let l_targets = vec![1.0, 0.0, 1.0];
    let [l_po, l_ps, l_src] = by_post(&l_rows, &l_targets, 2);
    let values = vec![
        ("inp.indices", spikes_at.iter().map(|x| x.0).collect()),
        ("inp.steps", spikes_at.iter().map(|x| x.1).collect()),
        ("post.v", vec![-60.0, -56.0]),
        ("S.row_offsets", s_rows),
        ("S.targets", s_targets),
        ("S.delay_buckets", buckets),
        ("S.post_offsets", s_po),
        ("S.post_synapses", s_ps),
        ("S.sources", s_src),
        ("S.d", s_delays.iter().map(|d| d * 0.1).collect()),
        (
            "S.w",
            (0..40)
                .map(|s| 0.02 * ((s * 37) % 40) as f64 / 40.0)
                .collect(),
        ),
        ("Loop.row_offsets", l_rows),
        ("Loop.targets", l_targets),
        ("Loop.post_offsets", l_po),
        ("Loop.post_synapses", l_ps),
        ("Loop.sources", l_src),
    ];
    let steps = 600;
    let (state, exe, cs) = plastic_run(
        &c,
        &values,
        &format!("pathways_{deterministic}"),
        dir,
        steps,
    );
    assert!(
        cs.get("Loop.c").iter().all(|x| *x > 2.0),
        "Loop's on_post ran"
    );
    let keys = [
        "S.w",
        "S.Apre",
        "S.lastupdate",
        "Loop.c",
        "post.v",
        "post.ge",
        "post.gi",
    ];
    every_path_matches_c(&c, &exe, &state, steps, &keys, deterministic);
}

#[test]
fn emulated_synapse_dynamics_match_c() {
    let Some(dir) = cuda_emulation::work_dir("network_cuda_emulation") else {
        return;
    };
    // tests/networks/synapse_dynamics.json: a generator of 20 inputs -> 150 neurons through S
    // (a clock-driven s, summed onto the target: gsyn_post = w*s) and the neurons onto themselves
    // through T (a clock-driven g read from v_pre and v_post with rk4, summed onto the source:
    // fb_pre = g + 0.5*v_post). The sums phase and the clock-driven phase run on two blocks per
    // step (150 neurons), as their own kernels per step and between the persistent kernel's
    // barriers.
    let spec = test_network("synapse_dynamics");
    let c = compile(&spec);
    let n = 150usize;
    // Input i spikes at step i mod 10 of each 1 ms period.
    let mut spikes_at: Vec<(f64, f64)> = (0..20).map(|i| (i as f64, (i % 10) as f64)).collect();
    spikes_at.sort_by(|a, b| (a.1, a.0).partial_cmp(&(b.1, b.0)).unwrap());
    let rows = |n_pre: usize, per_row: &dyn Fn(usize) -> Vec<usize>| {
        let mut offsets = vec![0.0];
        let mut targets = Vec::new();
        for r in 0..n_pre {
            targets.extend(per_row(r).into_iter().map(|j| j as f64));
            offsets.push(targets.len() as f64);
        }
        (offsets, targets)
    };
    let (s_rows, s_targets) = rows(20, &|i| {
        let mut t: Vec<usize> = (0..10).map(|k| (i * 7 + k * 13) % n).collect();
        t.push(t[0]); // a multapse
        t
    });
    let (t_rows, t_targets) = rows(n, &|i| vec![(i + 1) % n, (i * 3 + 5) % n]);
    let [s_po, s_ps, s_src] = by_post(&s_rows, &s_targets, n);
    let [t_po, t_ps, t_src] = by_post(&t_rows, &t_targets, n);
    let values = vec![
        ("inp.indices", spikes_at.iter().map(|x| x.0).collect()),
        ("inp.steps", spikes_at.iter().map(|x| x.1).collect()),
        (
            "P.v",
            (0..n)
                .map(|i| -60.0 + 9.5 * ((i * 17) % n) as f64 / n as f64)
                .collect(),
        ),
        (
            "S.w",
            (0..s_targets.len())
                .map(|s| 0.05 + 0.1 * ((s * 37) % 40) as f64 / 40.0)
                .collect(),
        ),
        ("S.row_offsets", s_rows),
        ("S.targets", s_targets),
        ("S.post_offsets", s_po),
        ("S.post_synapses", s_ps),
        ("S.sources", s_src),
        ("T.row_offsets", t_rows),
        ("T.targets", t_targets),
        ("T.post_offsets", t_po),
        ("T.post_synapses", t_ps),
        ("T.sources", t_src),
    ];
    let state = c.state(1, &values);
    let exe = build(&c, "synapse_dynamics", &dir);
    let steps = 300;
    let (cs, cr) = c.run(&state, steps);
    let counts = cr.get("P.spike_count");
    assert!(
        counts.iter().filter(|n| **n > 0.0).count() > 20,
        "the neurons must spike: {counts:?}"
    );
    assert!(cs.get("P.gsyn").iter().any(|x| *x > 0.1), "the sums ran");
    assert!(cs.get("T.g").iter().any(|x| x.abs() > 1.0), "g integrated");
    // The sums are gathered in a fixed order and the clock-driven steps are per synapse: every
    // path gives the C kernels' bits.
    for mode in every_path(steps) {
        let (gs, gr) = emulate(&c, &exe, &state, steps, mode);
        for key in ["S.s", "T.g", "P.v", "P.gsyn", "P.fb"] {
            assert_eq!(gs.get(key), cs.get(key), "{mode:?}: {key}");
        }
        for key in ["m.gsyn", "m.fb", "m.v", "P.spike_count"] {
            assert_eq!(gr.get(key), cr.get(key), "{mode:?}: {key}");
        }
    }
}

/// Rows of a projection with per-synapse delays, as `init_state` builds them: about `per_row`
/// synapses a row onto `n_post` targets, delays of 0..=`max_steps` steps, each row sorted by
/// delay, and the delay buckets (`n_pre * (max_steps + 1) + 1` entries). Returns the state
/// entries of projection `name` with weights `weight(next)`.
fn delayed_rows(
    name: &str,
    n_pre: usize,
    n_post: usize,
    per_row: usize,
    max_steps: usize,
    next: &mut impl FnMut() -> f64,
    weight: impl Fn(&mut dyn FnMut() -> f64) -> f64,
) -> Vec<(String, Vec<f64>)> {
    let (mut off, mut t, mut w, mut d, mut buckets) = (vec![0.0], vec![], vec![], vec![], vec![]);
    for _ in 0..n_pre {
        let start = t.len();
        let mut row: Vec<(usize, f64, f64)> = (0..per_row)
            .map(|_| {
                let j = (next() * n_post as f64) as usize;
                let steps = (next() * (max_steps + 1) as f64) as usize;
                (steps, j as f64, weight(&mut *next))
            })
            .collect();
        row.sort_by_key(|(s, _, _)| *s);
        for step in 0..=max_steps {
            buckets.push((start + row.iter().filter(|(s, _, _)| *s < step).count()) as f64);
        }
        for (s, j, x) in row {
            t.push(j);
            w.push(x);
            d.push(s as f64 * 0.1);
        }
        off.push(t.len() as f64);
    }
    buckets.push(t.len() as f64);
    [
        ("row_offsets", off),
        ("targets", t),
        ("w", w),
        ("d", d),
        ("delay_buckets", buckets),
    ]
    .into_iter()
    .map(|(k, v)| (format!("{name}.{k}"), v))
    .collect()
}

/// tests/networks/ring_delays.json: recurrent projections from subgroups of one group with
/// per-synapse delays of 0 to 10 steps (one onto a target range, one with a shared parameter
/// and the postsynaptic index in its increment), a Poisson group's projection with two
/// pathways onto two variables (the rings of `ge` and `gi` each take two projections' arrivals,
/// of different longest delays), and an ordered projection beside them (onto `v`, whose reset
/// then runs after the arrivals are taken). In the default mode
/// the CUDA kernels deliver the per-synapse-delay pathways at emission into ring buffers
/// (checked in the plan); in float64 every path (per step, persistent grid in chunks, one
/// block, resident; runs split into two calls, whose second call rebuilds the arrivals still
/// on their way from the spike queue) gives the C kernels' spikes and their state to 1e-9
/// (sums in another order). Deterministic mode delivers at arrival, bit for bit.
#[test]
fn emulated_delivery_at_emission_matches_c() {
    let Some(dir) = cuda_emulation::work_dir("network_cuda_emulation") else {
        return;
    };
    let spec = test_network("ring_delays");
    let mut next = harness::uniforms(11);
    let mut values: Vec<(String, Vec<f64>)> = Vec::new();
    values.extend(delayed_rows("EE", 160, 200, 24, 10, &mut next, |r| {
        0.4 + 0.6 * r()
    }));
    values.extend(delayed_rows("IE", 40, 160, 30, 5, &mut next, |r| 1.0 + r()));
    values.extend(delayed_rows("Ex", 30, 120, 20, 3, &mut next, |r| 1.5 + r()));
    values.push((
        "Lp.row_offsets".into(),
        (0..=40).map(|r| r as f64).collect(),
    ));
    values.push((
        "Lp.targets".into(),
        (0..40).map(|r| ((r * 7) % 40) as f64).collect(),
    ));
    values.push(("IE.k".into(), vec![1.5]));
    values.push(("rng_seed".into(), vec![3.0]));
    // Two members with their own start (per step only: the persistent emulation shares a
    // block's `__shared__` words between members).
    let v0: Vec<f64> = (0..400).map(|_| -53.0 + 3.5 * next()).collect();
    let given = |v: &[f64]| -> Vec<(&str, Vec<f64>)> {
        let mut out: Vec<(&str, Vec<f64>)> = values
            .iter()
            .map(|(k, x)| (k.as_str(), x.clone()))
            .collect();
        out.push(("P.v", v.to_vec()));
        out
    };
    let steps = 90;
    for deterministic in [false, true] {
        let c = compile(&with_mode(&spec, deterministic));
        let net = spikeforge::frontend::network::lower(&c.spec).unwrap();
        let p = plan(&net);
        let emitted: Vec<Vec<bool>> = p
            .projections
            .iter()
            .map(|x| x.at_emission.clone())
            .collect();
        let want_emitted = if deterministic {
            vec![vec![false], vec![false], vec![false, false], vec![false]]
        } else {
            vec![vec![true], vec![true], vec![true, true], vec![false]]
        };
        assert_eq!(emitted, want_emitted, "deterministic {deterministic}");
        let exe = build(&c, &format!("ring_{deterministic}"), &dir);
        let keys = ["P.v", "P.ge", "P.gi"];
        let check = |got: &(State, Results), want: &(State, Results), what: &str| {
            let b = got.0.nb;
            for m in 0..b {
                assert_eq!(
                    spikes(&got.1, "sp", 100000, m),
                    spikes(&want.1, "sp", 100000, m),
                    "{what}: member {m}"
                );
            }
            assert_eq!(
                got.1.get("P.spike_count"),
                want.1.get("P.spike_count"),
                "{what}"
            );
            assert_matches_c(&got.0, &want.0, &keys, deterministic, what);
            for key in ["m.v", "m.ge", "m.gi"] {
                let (g, w) = (got.1.get(key), want.1.get(key));
                if deterministic {
                    assert_eq!(g, w, "{what}: {key}");
                } else {
                    assert_close(&g, &w, 1e-9, &format!("{what}: {key}"));
                }
            }
        };
        // Two members, per step, in one call and in two.
        let state = c.state(2, &given(&v0));
        let want = c.run(&state, steps);
        let count = spikes(&want.1, "sp", 100000, 0).len();
        assert!(count > 100, "{count} spikes");
        let what = format!("deterministic {deterministic}, two members per step");
        check(
            &emulate(&c, &exe, &state, steps, Mode::PerStep(3)),
            &want,
            &what,
        );
        let (half, _) = emulate(&c, &exe, &state, 37, Mode::PerStep(2));
        let rest = emulate(&c, &exe, &half, steps - 37, Mode::PerStep(2));
        let want_rest = c.run(&c.run(&state, 37).0, steps - 37);
        check(&rest, &want_rest, &format!("{what}, split"));
        // One member, every path, and split runs of the persistent grid and the resident kernel.
        let state = c.state(1, &given(&v0[..200]));
        let want = c.run(&state, steps);
        for mode in every_path(steps) {
            let what = format!("deterministic {deterministic}, {mode:?}");
            check(&emulate(&c, &exe, &state, steps, mode), &want, &what);
        }
        let want_rest = c.run(&c.run(&state, 41).0, steps - 41);
        for mode in [
            Mode::Persistent {
                blocks: 2,
                chunk: 16,
            },
            Mode::Resident { chunk: 30 },
        ] {
            let (half, _) = emulate(&c, &exe, &state, 41, mode);
            let rest = emulate(&c, &exe, &half, steps - 41, mode);
            check(
                &rest,
                &want_rest,
                &format!("deterministic {deterministic}, {mode:?}, split"),
            );
        }
    }
}

#[test]
fn emulated_one_barrier_grid_and_cluster_match_c() {
    // The random network of `cuba`, with every delivery in the spike's own step and no spike or
    // rate monitor: the persistent grid kernel runs one barrier a step, its deliveries into
    // accumulators (codegen::network_kernel::grid). Per-synapse weights and one shared weight.
    let Some(dir) = cuda_emulation::work_dir("network_cuda_emulation") else {
        return;
    };
    let steps = 100;
    // `dense`: every excitatory neuron reaches every neuron (rows of 300 synapses, weak), so
    // that a row takes several rounds of a lane's PUSH_UNROLL targets; the first step's spikes
    // (a sixth of the neurons start above threshold) put several in one warp, so spikes are
    // delivered two at a time too.
    for (name, shared, dense) in [
        ("one_barrier", false, false),
        ("one_barrier_shared", true, false),
        ("one_barrier_dense", false, true),
    ] {
        let (mut spec, mut values) = cuba(300, false, shared, false, 7);
        if dense {
            let n_e = 240;
            for (key, column) in [
                (
                    "Ce.row_offsets",
                    (0..=n_e).map(|r| (r * 300) as f64).collect::<Vec<_>>(),
                ),
                (
                    "Ce.targets",
                    (0..n_e * 300).map(|k| (k % 300) as f64).collect(),
                ),
                (
                    "Ce.w",
                    (0..n_e * 300)
                        .map(|k| 0.004 + 0.0001 * (k % 37) as f64)
                        .collect(),
                ),
            ] {
                values.iter_mut().find(|(k, _)| *k == key).unwrap().1 = column;
            }
        }
        spec["projections"][0]
            .as_object_mut()
            .unwrap()
            .remove("delay");
        let monitors = spec["monitors"].as_array().unwrap();
        spec["monitors"] = json!([monitors[2].clone()]);
        let c = compile(&spec.to_string());
        let net = spikeforge::frontend::network::lower(&c.spec).unwrap();
        assert!(
            spikeforge::codegen::network_kernel::one_barrier(&net, &plan(&net)),
            "{name}: a one-barrier network"
        );
        let source = generate(&net, &plan(&net), &c.layout, Dialect::Cuda).source;
        assert!(source.contains("One grid barrier a step"), "{name}");
        let exe = build(&c, name, &dir);
        let state = c.state(1, &values);
        let (cs, cr) = c.run(&state, steps);
        let counts = cr.get("P.spike_count");
        assert!(counts.iter().sum::<f64>() > 30.0, "{name}: {counts:?}");
        assert!(
            source.contains("#define SF_SLOTS 3"),
            "{name}: register slots"
        );
        // (blocks, chunk, barrier groups of this many blocks; 0: flat, -1: release, i32::MAX:
        // split); one block runs its third virtual block beyond its 2 register slots (see
        // `program`).
        // -2: acquire, -3: spread. The kernel with balanced deliveries (codegen::network_kernel::
        // grid::balanced) under several of them: `true` in the fourth place.
        let split = i32::MAX as i64;
        let modes = [
            (1, steps, 2, false),
            (3, 37, 2, false),
            (2, 1, 0, false),
            (4, steps, 0, false),
            (3, steps, 0, false),
            (3, 37, -1, false),
            (4, 37, split, false),
            (3, 37, -2, false),
            (4, 37, -3, false),
            (1, steps, 0, true),
            (3, steps, -3, true),
            (3, 37, -2, true),
            (4, steps, 0, true),
            (2, 1, 2, true),
            (3, steps, -1, true),
        ]
        .map(|(blocks, chunk, groups, balanced)| {
            (Mode::Persistent { blocks, chunk }, groups, balanced)
        });
        assert!(
            source.contains(PERSISTENT_BALANCED_ENTRY),
            "{name}: the balanced kernel"
        );
        // The cluster kernel (codegen::network_kernel::grid::cluster): 3 virtual blocks of 128
        // neurons, a slot a block, in a cluster of 4 blocks (deliveries to every block's shared
        // memory, a block with no virtual block), in one launch, in chunks, a step a launch;
        // its deliveries by the block (`sf_group_blocks` 0), and by the warp (1); where it
        // counts the arrivals (the shared weight), with them added as floats too (2, 3).
        assert!(source.contains(CLUSTER_ENTRY), "{name}: the cluster kernel");
        let shape = cluster_shape(&net, &plan(&net)).unwrap();
        assert_eq!((shape.block, shape.slots, shape.vblocks), (128, 1, 3));
        let counting = cluster_counts_arrivals(&net, &plan(&net));
        assert_eq!(
            counting, shared,
            "{name}: the cluster counts the shared weight's arrivals"
        );
        let clusters = [
            (4, steps, cluster_mode(false, false, false, false)),
            (4, 37, cluster_mode(false, false, false, false)),
            (4, 1, cluster_mode(false, false, false, false)),
            (4, steps, cluster_mode(true, false, false, false)),
            (4, 37, cluster_mode(false, true, false, false)),
            (4, steps, cluster_mode(true, true, false, false)),
            // arrivals tracked by mbarriers (where every arrival is counted; else the kernel
            // keeps the barrier), by the warp and by the block, in chunks too
            (4, steps, cluster_mode(true, false, false, true)),
            (4, 37, cluster_mode(false, false, false, true)),
            (4, 1, cluster_mode(true, false, false, true)),
        ]
        .map(|(blocks, chunk, mode)| (blocks, chunk, i64::from(mode)))
        .map(|(blocks, chunk, by_warp)| (Mode::Cluster { blocks, chunk }, by_warp, false));
        for (mode, groups, balanced) in
            modes
                .into_iter()
                .chain(clusters)
                .chain([(Mode::PerStep(2), 2, false)])
        {
            let what = format!("{name} {mode:?}, barrier groups {groups}, balanced {balanced}");
            let groups = groups.to_string();
            let mut env = vec![("SF_GROUP_BLOCKS", groups.as_str())];
            if balanced {
                env.push(("SF_BALANCED", "1"));
            }
            let (ps, pr) = emulate_with(&c, &exe, &state, steps, mode, &env);
            assert_eq!(pr.get("P.spike_count"), counts, "{what}");
            for key in ["P.lastspike_step", "P.spike_queue_counts"] {
                assert_eq!(ps.get(key), cs.get(key), "{what}: {key}");
            }
            for key in ["P.v", "P.ge", "P.gi"] {
                assert_close(&ps.get(key), &cs.get(key), 1e-9, &format!("{what}: {key}"));
            }
            assert_close(&pr.get("vm.v"), &cr.get("vm.v"), 1e-9, &what);
        }
    }
}
