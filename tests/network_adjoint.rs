//! The network adjoint (`step::network_adjoint`, `codegen::network_adjoint_kernel`): what is out
//! of scope is refused with an error naming the construct, and the kernel of a network in scope
//! is generated in both dialects (the CUDA one compiled by NVRTC where it is available). Its
//! numbers are checked from Python (tests/python/test_network_gradients.py, against `jax.grad`
//! of an independent `lax.scan` network).

mod common;
use common::nvrtc_available;

use serde_json::{json, Value};
use spikeforge::codegen::network_adjoint_kernel::{
    generate_network_adjoint, generate_network_adjoint_variant, FAST_DELIVERIES, FAST_VARIANTS,
    FAST_WALK,
};
use spikeforge::codegen::{prepare_network, Dialect};
use spikeforge::runtime::cuda::{compile_cubin, CudaCompileOptions};
use spikeforge::spec::network::NetworkSpec;

const EQS: &str = "dv/dt = (ge - gi - v + I) / tau : 1\ndge/dt = -ge / tau_e : 1\ndgi/dt = -gi / tau_i : 1\nI : 1";

fn lif(name: &str, n: usize) -> Value {
    json!({"kind": "neuron", "name": name, "n": n, "model": {
        "equations": EQS, "threshold": "v > v_th", "reset": "v = 0", "refractory": 0.3,
        "method": "euler", "surrogate": {"kind": "fast_sigmoid", "slope": 5.0},
        "constants": {"tau": 10.0, "tau_e": 5.0, "tau_i": 8.0, "v_th": 1.0}}})
}

/// An E/I network in scope: a per-synapse delay, a shared weight, a second group.
fn network(dtype: &str) -> Value {
    json!({
        "dt": 0.1, "dtype": dtype,
        "groups": [lif("P", 30), lif("Q", 10)],
        "projections": [
            {"name": "E", "source": "P", "source_range": [0, 20], "target": "P",
             "model": "w : 1\nd : second", "on_pre": "ge += w", "delay": "d", "max_delay": 0.5},
            {"name": "I", "source": "P", "source_range": [20, 30], "target": "P",
             "model": "wi : 1 (shared)", "on_pre": "v_post -= 2*wi"},
            {"name": "F", "source": "P", "target": "Q", "model": "w : 1", "on_pre": "ge += w; gi += 0.5*w",
             "delay": 0.2}
        ],
        "monitors": [{"kind": "state", "name": "vm", "source": "P", "variables": ["v"], "record": true},
                     {"kind": "rate", "name": "rate", "source": "Q"}]
    })
}

fn refusal(spec: &Value) -> String {
    let spec = NetworkSpec::from_json(&spec.to_string()).expect("the spec reads");
    let net = prepare_network(&spec).expect("the network lowers");
    match generate_network_adjoint(&net, Dialect::C) {
        Ok(_) => panic!("expected a refusal"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_network_in_scope_generates_in_both_dialects() {
    for dtype in ["float32", "float64"] {
        let spec = NetworkSpec::from_json(&network(dtype).to_string()).unwrap();
        let net = prepare_network(&spec).unwrap();
        let c = generate_network_adjoint(&net, Dialect::C).unwrap();
        let cuda = generate_network_adjoint(&net, Dialect::Cuda).unwrap();
        assert_eq!(c.layout, cuda.layout);
        // Per-synapse and shared weights get gradients; the delay does not.
        let grads: Vec<String> = c
            .layout
            .outputs
            .iter()
            .filter(|a| a.role == "grad")
            .map(|a| format!("{}/{}", a.owner, a.name))
            .collect();
        for g in ["P/grad:I", "Q/grad:I", "E/grad:w", "I/grad:wi", "F/grad:w"] {
            assert!(grads.contains(&g.to_string()), "{g} in {grads:?}");
        }
        assert!(!grads.iter().any(|g| g.ends_with("grad:d")), "{grads:?}");
        assert!(
            cuda.source.contains("atomicAdd"),
            "shared additions are atomic on CUDA"
        );
        // The warp-a-neuron variant: the same layout, the held walk back (two groups, a
        // delivery with per-synapse delays gathered from its row).
        let fast = generate_network_adjoint_variant(&net, Dialect::Cuda, FAST_VARIANTS).unwrap();
        assert_eq!(fast.layout, cuda.layout);
        assert!(fast.source.contains("sf_tgt_") && !cuda.source.contains("sf_tgt_"));
        // Its barrier-free walk (FAST_P2P, in FAST_VARIANTS) waits for values instead.
        let barriers =
            generate_network_adjoint_variant(&net, Dialect::Cuda, FAST_WALK | FAST_DELIVERIES)
                .unwrap();
        assert!(fast.source.contains("sf_wait(") && !barriers.source.contains("sf_wait("));
        if nvrtc_available() {
            for source in [&cuda.source, &fast.source] {
                let cubin = compile_cubin(source, (9, 0), &CudaCompileOptions::default())
                    .unwrap_or_else(|e| panic!("{dtype}: {e}\n{source}"));
                assert_eq!(&cubin[..4], b"\x7fELF");
            }
        }
    }
}

/// COBA (tests/networks/coba_one_barrier.json with a surrogate threshold and trainable weights:
/// bench/bench_network_gradients.py's network) in float32: the CUDA kernel and its warp-a-neuron
/// variant compile for sm_90 without spills, the held walk back's registers (each lane's first
/// synapses, the neuron's adjoints) included, under the 1024-thread blocks' 64 registers a
/// thread. (In float64 it spills, as the grid-stride kernel does a little: the handler takes it
/// there only when asked.)
#[test]
fn the_coba_adjoint_kernel_does_not_spill() {
    use spikeforge::codegen::network_adjoint_kernel::NETWORK_ADJOINT_ENTRY;
    use spikeforge::runtime::cuda::compile_cubin_report;
    if !nvrtc_available() {
        return;
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/networks/coba_one_barrier.json");
    let mut coba: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    coba["groups"][0]["model"]["surrogate"] =
        json!({"kind": "fast_sigmoid", "slope": 1.0, "detach_reset": true});
    for (p, model, on_pre) in [(0, "w : 1", "ge += w"), (1, "wi : 1 (shared)", "gi += wi")] {
        let proj = coba["projections"][p].as_object_mut().unwrap();
        proj.remove("constants");
        proj.insert("model".into(), json!(model));
        proj.insert("on_pre".into(), json!(on_pre));
    }
    let dtype = "float32";
    coba["dtype"] = json!(dtype);
    let spec = NetworkSpec::from_json(&coba.to_string()).unwrap();
    let net = prepare_network(&spec).unwrap();
    for fast in [0, FAST_WALK | FAST_DELIVERIES, FAST_VARIANTS] {
        let cuda = generate_network_adjoint_variant(&net, Dialect::Cuda, fast).unwrap();
        assert_eq!(
            cuda.source.contains("sf_tgt_g0_0"),
            fast != 0,
            "the held walk back"
        );
        let (_, report) =
            compile_cubin_report(&cuda.source, (9, 0), &CudaCompileOptions::default())
                .unwrap_or_else(|e| panic!("{dtype}: {e}"));
        let at = report
            .find(&format!("'{NETWORK_ADJOINT_ENTRY}'"))
            .expect("ptxas's report of the entry");
        let own = &report[at..];
        if std::env::var("SPIKEFORGE_SHOW_PTX").is_ok() {
            eprintln!("{dtype} variant {fast}: {own}");
        }
        assert!(
            own.contains(" 0 bytes spill stores, 0 bytes spill loads"),
            "{dtype} variant {fast}: {NETWORK_ADJOINT_ENTRY} spills:\n{own}"
        );
    }
}

#[test]
fn what_is_out_of_scope_is_named() {
    let with_projection = |p: Value| {
        let mut spec = network("float64");
        spec["projections"] = json!([p]);
        spec
    };
    // (synapse model, on_pre, on_post, what the refusal names).
    let cases = [
        (
            "w : 1",
            "ge += w; w = clip(w + 0.1, 0, 1)",
            None,
            "synaptic variable 'w'",
        ),
        ("w : 1", "ge += w", Some("w += 0.1"), "on_post"),
        (
            "w : 1\ndA/dt = -A/(10*ms) : 1 (event-driven)",
            "ge += w; A += 1",
            None,
            "(event-driven) variable 'A'",
        ),
        (
            "dg/dt = -g/(5*ms) : 1 (clock-driven)\nw : 1",
            "ge += w",
            None,
            "(clock-driven) variable 'g'",
        ),
        ("w : 1", "ge = w", None, "assign 'ge'"),
        ("w : 1", "ge += w * v_post", None, "reads 'v_post'"),
        ("w : 1", "I += w", None, "not a state variable"),
        ("w : 1", "v_pre += w", None, "presynaptic variable 'v'"),
    ];
    let cases = cases.map(|(model, on_pre, on_post, needle)| {
        let mut p =
            json!({"name": "S", "source": "P", "target": "P", "model": model, "on_pre": on_pre});
        if let Some(post) = on_post {
            p["on_post"] = json!(post);
        }
        (with_projection(p), needle)
    });
    for (spec, needle) in cases {
        let e = refusal(&spec);
        assert!(e.contains(needle), "{needle:?} not in {e:?}");
        assert!(e.contains("'S'"), "the projection is named: {e}");
    }
    let mut poisson = network("float64");
    poisson["groups"]
        .as_array_mut()
        .unwrap()
        .push(json!({"kind": "poisson", "name": "pg", "n": 5, "rates": 0.01}));
    assert!(refusal(&poisson).contains("PoissonGroup 'pg'"));
    let mut input = network("float64");
    input["poisson_inputs"] = json!([{"name": "inp", "target": "P", "variable": "ge", "n": 10,
        "rate": 0.01, "weight": 0.1}]);
    assert!(refusal(&input).contains("PoissonInput 'inp'"));
    let mut noisy = network("float64");
    noisy["groups"][1]["model"]["equations"] =
        json!(format!("{EQS}\ndn/dt = -n/(1*ms) + xi/sqrt(ms) : 1"));
    let e = refusal(&noisy);
    assert!(
        e.contains("NeuronGroup 'Q'") && e.contains("random numbers"),
        "{e}"
    );
    let mut monitor = network("float64");
    monitor["monitors"] =
        json!([{"kind": "state", "name": "im", "source": "P", "variables": ["I"], "record": true}]);
    assert!(refusal(&monitor).contains("StateMonitor 'im' records 'I'"));
}

#[path = "common/cuda_emulation.rs"]
mod cuda_emulation;

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * ((self.next() >> 11) as f64 / (1u64 << 53) as f64)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A projection's connectivity: CSR rows sorted by delay step, delay buckets of width `b`.
struct Csr {
    offsets: Vec<i32>,
    targets: Vec<i32>,
    buckets: Vec<i32>,
}

/// `hub`: that many of the synapses from the first row (a row longer than the others).
fn random_csr(
    rng: &mut Rng,
    n_pre: usize,
    n_post: usize,
    n_syn: usize,
    b: usize,
    hub: usize,
) -> Csr {
    let mut syn: Vec<(usize, usize, usize)> = (0..n_syn)
        .map(|k| {
            let pre = if k < hub { 0 } else { rng.below(n_pre) };
            (pre, rng.below(b), rng.below(n_post))
        })
        .collect();
    syn.sort();
    let mut offsets = vec![0i32; n_pre + 1];
    for (pre, _, _) in &syn {
        offsets[pre + 1] += 1;
    }
    for r in 0..n_pre {
        offsets[r + 1] += offsets[r];
    }
    let mut buckets = Vec::with_capacity(n_pre * b + 1);
    for r in 0..n_pre {
        for d in 0..b {
            let first = syn
                .iter()
                .filter(|(p, dd, _)| *p < r || (*p == r && *dd < d))
                .count();
            buckets.push(first as i32);
        }
    }
    buckets.push(n_syn as i32);
    Csr {
        offsets,
        targets: syn.iter().map(|(_, _, j)| *j as i32).collect(),
        buckets,
    }
}

/// The CUDA kernel, run by emulated grids (1 block of 64 threads, 5 of 32, 3 of 64: grid-stride
/// shares, warps of rows across blocks, the grid barrier), gives the C kernel's outputs (to
/// the last bits that atomic additions in another order change) on random inputs: every phase's
/// block-stride share, barrier and atomic addition.
#[test]
fn the_cuda_kernel_matches_the_c_kernel_in_emulation() {
    emulate(6, "network_adjoint_emulation");
}

/// As above, with a segment of 3 steps, no longer than the refractory period: the record mode
/// (the segment's spikes from `lastspike_after`, delivered at once; each neuron's steps alone).
#[test]
fn the_cuda_kernels_record_mode_matches_the_c_kernels_in_emulation() {
    emulate(3, "network_adjoint_emulation_record");
}

fn emulate(steps: usize, name: &str) {
    let Some(dir) = cuda_emulation::work_dir(name) else {
        return;
    };
    let spec = NetworkSpec::from_json(&network("float64").to_string()).unwrap();
    let net = prepare_network(&spec).unwrap();
    let c = generate_network_adjoint(&net, Dialect::C).unwrap();
    assert!(c.source.contains("if (sf_steps <= 3)"), "the record mode");
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    // F's first row has 80 synapses: past the 64 that the warp-a-neuron variant's lanes hold in
    // registers (2 slots each: F and I, both from P, overlap), the rest loaded at each step.
    let n_syn: Vec<usize> = vec![120, 40, 140];
    let csrs: Vec<Csr> = net
        .projections
        .iter()
        .zip(&n_syn)
        .map(|(p, n)| {
            let b = p.synapses.row_delay().map_or(1, |(_, m)| m as usize + 1);
            let hub = if p.name == "F" { 80 } else { 0 };
            random_csr(&mut rng, p.n_pre(), p.n_post(), *n, b, hub)
        })
        .collect();
    let projection = |owner: &str| net.projections.iter().position(|p| p.name == owner);
    // Every input buffer, as bytes.
    let mut buffers: Vec<Vec<u8>> = Vec::new();
    for a in &c.layout.inputs {
        let count: usize = a
            .shape
            .iter()
            .map(|d| match serde_json::to_value(d).unwrap() {
                Value::Number(n) => n.as_u64().unwrap() as usize,
                Value::String(s) if s == "steps" => steps,
                _ => n_syn[projection(&a.owner).unwrap()],
            })
            .product();
        let ints: Option<Vec<i32>> = match a.name.as_str() {
            "t_step" => Some(vec![7]),
            "lastspike_step" => Some(
                (0..count)
                    .map(|_| [-1_000_000_000, 6, 5, 3][rng.below(4)])
                    .collect(),
            ),
            "spike_queue_counts" => Some((0..count).map(|_| rng.below(8) as i32).collect()),
            // Last spikes in the segment (steps 7..7 + steps), before it, or never.
            "lastspike_after" => Some(
                (0..count)
                    .map(|_| match rng.below(4) {
                        0 => -1_000_000_000,
                        1 => 5,
                        _ => 7 + rng.below(steps) as i32,
                    })
                    .collect(),
            ),
            "spike_queue" => Some((0..count).map(|_| rng.below(30) as i32).collect()),
            "row_offsets" => Some(csrs[projection(&a.owner).unwrap()].offsets.clone()),
            "targets" => Some(csrs[projection(&a.owner).unwrap()].targets.clone()),
            "delay_buckets" => Some(csrs[projection(&a.owner).unwrap()].buckets.clone()),
            _ => None,
        };
        let bytes: Vec<u8> = match ints {
            Some(v) => {
                assert_eq!(v.len(), count, "{}/{}", a.owner, a.name);
                v.iter().flat_map(|x| x.to_le_bytes()).collect()
            }
            None => {
                // States around the threshold (1.0), so that some neurons spike.
                let (lo, hi) = if a.name.starts_with("checkpoint:") {
                    (0.0, 1.3)
                } else {
                    (-1.0, 1.0)
                };
                (0..count)
                    .flat_map(|_| rng.uniform(lo, hi).to_le_bytes())
                    .collect()
            }
        };
        buffers.push(bytes);
    }
    let input_file = dir.join("inputs.bin");
    let mut file = Vec::new();
    for b in &buffers {
        file.extend((b.len() as u64).to_le_bytes());
        file.extend(b);
    }
    std::fs::write(&input_file, file).unwrap();
    let out_sizes: Vec<usize> = c
        .layout
        .outputs
        .iter()
        .map(|a| {
            let count: usize = a
                .shape
                .iter()
                .map(|d| match serde_json::to_value(d).unwrap() {
                    Value::Number(n) => n.as_u64().unwrap() as usize,
                    Value::String(s) if s == "steps" => steps,
                    _ => n_syn[projection(&a.owner).unwrap()],
                })
                .product();
            count * if a.elem.is_float() { 8 } else { 4 }
        })
        .collect();
    let sizes = out_sizes
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let n_in = c.layout.inputs.len();
    let dims = std::iter::once(steps)
        .chain(n_syn.iter().copied())
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    // The host part both programs share: read the inputs, allocate the outputs, write them.
    let host = |call: &str| {
        format!(
            "int main(int argc, char** argv) {{\n    (void) argc;\n    FILE* f = fopen(argv[1], \"rb\");\n    void* ins[{n_in}];\n    for (int k = 0; k < {n_in}; ++k) {{ unsigned long long n; if (fread(&n, 8, 1, f) != 1) return 1; ins[k] = malloc(n + 8); if (fread(ins[k], 1, n, f) != n) return 1; }}\n    fclose(f);\n    const unsigned long long sizes[] = {{ {sizes} }};\n    const int n_out = (int) (sizeof sizes / sizeof sizes[0]);\n    void* outs[64];\n    for (int k = 0; k < n_out; ++k) outs[k] = calloc(sizes[k] + 8, 1);\n    const long long dims[] = {{ {dims} }};\n    (void) dims;\n    {call}\n    FILE* o = fopen(argv[2], \"wb\");\n    for (int k = 0; k < n_out; ++k) fwrite(outs[k], 1, sizes[k], o);\n    fclose(o);\n    return 0;\n}}\n"
        )
    };
    let c_program = format!(
        "#include <stdio.h>\n#include <stdlib.h>\n{}\n{}",
        c.source,
        host("sf_network_adjoint(0, 1, (const int64_t*) dims, ins, outs);")
    );
    let mut args = vec!["(sf_i64) dims[0]".to_string()];
    args.extend((0..n_syn.len()).map(|p| format!("(sf_i64) dims[{}]", p + 1)));
    args.push("(int32_t) 1".to_string()); // the barrier's kind (fences stand in off the GPU)
    args.extend(
        c.layout
            .inputs
            .iter()
            .enumerate()
            .map(|(k, a)| format!("({}*) ins[{k}]", cuda_type(a.elem))),
    );
    args.extend(
        c.layout
            .outputs
            .iter()
            .enumerate()
            .map(|(k, a)| format!("({}*) outs[{k}]", cuda_type(a.elem))),
    );
    // Every thread of the grid is a host thread: blocks of `threads`, a barrier per block
    // (`__syncthreads`) and per warp (the shuffles), the kernel's own grid barrier on atomics.
    let launch = |blocks: usize, threads: usize| {
        format!(
            "blockDim.x = {threads}; gridDim.x = {blocks};\n    std::vector<std::barrier<>*> bars, warps;\n    for (unsigned b = 0; b < {blocks}; ++b) bars.push_back(new std::barrier<>({threads}));\n    for (unsigned q = 0; q < {blocks} * {threads} / 32; ++q) warps.push_back(new std::barrier<>(32));\n    std::vector<double> slots({blocks} * {threads});\n    std::vector<std::thread> ts;\n    for (unsigned t = 0; t < {blocks} * {threads}; ++t) ts.emplace_back([&, t] {{ sf_bar = bars[t / {threads}]; sf_warp = warps[t / 32]; sf_slots = &slots[t / 32 * 32]; blockIdx.x = t / {threads}; threadIdx.x = t % {threads}; sf_network_adjoint({}); }});\n    for (auto& th : ts) th.join();",
            args.join(", ")
        )
    };
    let shim = "#include <atomic>\n#include <cstring>\n#include <barrier>\n#include <thread>\n#include <cstdio>\nstruct sf_dim3 { unsigned x; };\nstatic thread_local sf_dim3 threadIdx, blockIdx;\nstatic sf_dim3 blockDim, gridDim;\nstatic thread_local std::barrier<>* sf_bar;\nstatic thread_local std::barrier<>* sf_warp;\nstatic thread_local double* sf_slots;\nstatic void __syncthreads() { sf_bar->arrive_and_wait(); }\nstatic void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }\nstatic long long clock64() { std::this_thread::yield(); return 0; }\nstatic unsigned __float_as_uint(float x) { unsigned b; std::memcpy(&b, &x, 4); return b; }\nstatic float __uint_as_float(unsigned b) { float x; std::memcpy(&x, &b, 4); return x; }\nstatic long long __double_as_longlong(double x) { long long b; std::memcpy(&b, &x, 8); return b; }\nstatic void __trap() { std::abort(); }\ntemplate <class T> static T atomicAdd(T* p, T v) { return std::atomic_ref<T>(*p).fetch_add(v); }\ntemplate <class T> static T __shfl_down_sync(unsigned, T v, int d) { static_assert(sizeof(T) <= sizeof(double)); const unsigned lane = threadIdx.x & 31u; std::memcpy(&sf_slots[lane], &v, sizeof(T)); sf_warp->arrive_and_wait(); T r = v; if (lane + d < 32u) std::memcpy(&r, &sf_slots[lane + d], sizeof(T)); sf_warp->arrive_and_wait(); return r; }\ntemplate <class T> static T __shfl_xor_sync(unsigned, T v, int d) { const unsigned lane = threadIdx.x & 31u; std::memcpy(&sf_slots[lane], &v, sizeof(T)); sf_warp->arrive_and_wait(); T r; std::memcpy(&r, &sf_slots[lane ^ d], sizeof(T)); sf_warp->arrive_and_wait(); return r; }\nstatic void __syncwarp() { sf_warp->arrive_and_wait(); }\nstatic unsigned __ballot_sync(unsigned, bool p) { const unsigned lane = threadIdx.x & 31u; sf_slots[lane] = p ? 1.0 : 0.0; sf_warp->arrive_and_wait(); unsigned b = 0; for (unsigned l = 0; l < 32u; ++l) b |= (sf_slots[l] != 0.0 ? 1u : 0u) << l; sf_warp->arrive_and_wait(); return b; }\nstatic int __ffs(int x) { return __builtin_ffs(x); }\ntemplate <class T> static T __shfl_sync(unsigned, T v, int src) { static_assert(sizeof(T) <= sizeof(double)); const unsigned lane = threadIdx.x & 31u; std::memcpy(&sf_slots[lane], &v, sizeof(T)); sf_warp->arrive_and_wait(); T r; std::memcpy(&r, &sf_slots[src & 31], sizeof(T)); sf_warp->arrive_and_wait(); return r; }\n";
    let cuda_program = |blocks: usize, threads: usize, fast: i32| {
        let cuda = generate_network_adjoint_variant(&net, Dialect::Cuda, fast).unwrap();
        format!(
            "{shim}{}{}{}{}",
            cuda_emulation::head(),
            cuda.source.replace("extern \"C\" ", ""),
            cuda_emulation::tail(),
            host(&launch(blocks, threads))
        )
    };
    let c_exe = cuda_emulation::compile(
        &c_program,
        &dir,
        "c_kernel",
        &["-x", "c", "-O1", "-ffp-contract=off", "-lm"],
    );
    let run = |exe: &std::path::Path, out: &str| -> Vec<u8> {
        let path = dir.join(out);
        let status = std::process::Command::new(exe)
            .arg(&input_file)
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success(), "{}", exe.display());
        std::fs::read(path).unwrap()
    };
    let from_c = run(&c_exe, "c.bin");
    // The grid-stride kernel on one block; blocks of one warp (rows and neurons across many
    // blocks); 3 blocks of 2 warps (a grid-stride share that wraps, chunk boundaries inside the
    // populations); 8 blocks of 4 warps (a warp for each neuron). The warp-a-neuron variant
    // (the held walk back, record mode's deliveries a warp a spike) on 8 blocks of 4 warps, a
    // warp for each of the largest group's 30 neurons and two to spare, with its barrier a step
    // and without (FAST_VARIANTS: the barrier-free walk's waits).
    for (blocks, threads, fast) in [
        (1usize, 64usize, 0),
        (5, 32, 0),
        (3, 64, 0),
        (8, 128, 0),
        (8, 128, FAST_WALK | FAST_DELIVERIES),
        (8, 128, FAST_VARIANTS),
    ] {
        let name = format!("cuda_kernel_{blocks}x{threads}_fast{fast}");
        let cuda_exe = cuda_emulation::compile(
            &cuda_program(blocks, threads, fast),
            &dir,
            &name,
            &["-std=c++20", "-O1", "-ffp-contract=off", "-pthread", "-w"],
        );
        let from_cuda = run(&cuda_exe, &format!("{name}.bin"));
        compare_outputs(&c.layout.outputs, &out_sizes, &from_c, &from_cuda, &name);
    }
}

/// The C kernel's outputs against the emulated CUDA kernel's: floats to 1e-12 of each buffer's
/// largest value (atomic additions in another order), integers equal, and some spikes.
fn compare_outputs(
    outputs: &[spikeforge::codegen::network_adjoint_kernel::NetAdjointArg],
    out_sizes: &[usize],
    from_c: &[u8],
    from_cuda: &[u8],
    name: &str,
) {
    assert_eq!(from_c.len(), from_cuda.len());
    let mut at = 0;
    let mut spiked = 0;
    for (a, size) in outputs.iter().zip(out_sizes) {
        let (x, y) = (&from_c[at..at + size], &from_cuda[at..at + size]);
        at += size;
        // (the barrier-free walk's slots: only its kernel writes them)
        if a.name == "grid_barrier" || a.name.starts_with("walk:") {
            continue;
        }
        if a.elem.is_float() {
            let xs: Vec<f64> = x
                .chunks(8)
                .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
                .collect();
            let ys: Vec<f64> = y
                .chunks(8)
                .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
                .collect();
            let scale = xs.iter().fold(1e-300f64, |m, v| m.max(v.abs()));
            for (k, (u, v)) in xs.iter().zip(&ys).enumerate() {
                assert!(
                    (u - v).abs() <= 1e-12 * scale,
                    "{name}: {}/{}[{k}]: C {u}, CUDA {v}",
                    a.owner,
                    a.name
                );
            }
        } else {
            assert_eq!(x, y, "{name}: {}/{}", a.owner, a.name);
            if a.name == "spikes" {
                spiked += x.chunks(4).filter(|b| b != &[0, 0, 0, 0]).count();
            }
        }
    }
    assert!(
        spiked > 5,
        "the random states should make neurons spike ({spiked})"
    );
}

fn cuda_type(e: spikeforge::types::ElemType) -> &'static str {
    match e.c_type() {
        "int32_t" => "sf_i32",
        "int64_t" => "sf_i64",
        other => other,
    }
}
