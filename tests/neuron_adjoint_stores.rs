//! The neuron adjoint kernel (`codegen::adjoint_kernel`) keeps a segment's recomputed start
//! values in registers (`SegmentStore::Registers`, local arrays, both walks unrolled) or in the
//! two-half scratch in global memory (`SegmentStore::Scratch`). For one segment length `k` both
//! stores walk the same steps with the same printed arithmetic, so their adjoints and gradients
//! must agree bit for bit: checked here on random inputs (checkpoints around the threshold, so
//! that neurons spike and sit out refractory periods), in both dialects, the CUDA kernels run on
//! the CPU (compiled as C++ with a shim, one call per emulated thread). Segment lengths that
//! divide the run and ones that leave a shorter last segment (whose steps past the run's end the
//! register walk computes from clamped rows and must not commit); a batch of two members; with
//! and without a spike train's cotangent. The numbers themselves are checked from Python
//! (tests/python/test_gradients.py: against `jax.grad` of an independent `lax.scan` and finite
//! differences), which runs both stores through the handlers.
//!
//! The forward pass under differentiation (the run's kernel with checkpoints, whose CUDA walks
//! segments between them) is checked the same way: CUDA run on the CPU against C, bit for bit.
//!
//! Needs `gcc` / `g++` (C++20); skipped without them, unless `SPIKEFORGE_REQUIRE_GXX=1`.

mod common;
#[path = "common/cuda_emulation.rs"]
mod cuda_emulation;

use std::path::Path;

use common::Rng;
use spikeforge::codegen::adjoint_kernel::{
    generate_adjoint, generate_adjoint_in, generate_adjoint_tuned, AdjointArg, AdjointRole,
    AdjointShape, AdjointTuning, GeneratedAdjoint, SegmentStore,
};
use spikeforge::codegen::{prepare, Dialect};
use spikeforge::spec::{Method, ModelSpec, Surrogate, SurrogateKind};
use spikeforge::types::ElemType;

const STEPS: usize = 23;
const N_INNER: usize = 5;
const BATCH: usize = 2;
const RECORD_EVERY: usize = 3;

/// A LIF with a refractory period, a per-step input and a per-neuron constant, its trace
/// recorded.
fn lif(dtype: ElemType) -> ModelSpec {
    ModelSpec::from_equations(
        "dv/dt = (v_rest - v + I) / tau : 1 (unless refractory)\nI : 1",
        0.1,
    )
    .threshold("v > v_th")
    .reset("v = v_r")
    .refractory(0.4)
    .constants([("v_rest", 0.0), ("tau", 10.0), ("v_th", 1.0), ("v_r", 0.0)])
    .per_neuron(["tau"])
    .per_step(["I"])
    .record(["v"])
    .method(Method::Euler)
    .surrogate(Surrogate::new(SurrogateKind::FastSigmoid, 4.0))
    .dtype(dtype)
}

/// Two stored variables (an adaptation current), no refractory period, a shared parameter.
fn adaptive() -> ModelSpec {
    ModelSpec::from_equations(
        "dv/dt = (I - v - w) / tau : 1\ndw/dt = (a * v - w) / tau_w : 1\nI : 1\na : 1 (shared)",
        0.1,
    )
    .threshold("v > 1")
    .reset("v = 0; w += 0.2")
    .constants([("tau", 8.0), ("tau_w", 30.0)])
    .per_step(["I"])
    .record(["w"])
    .method(Method::Euler)
    .surrogate(Surrogate::new(SurrogateKind::Sigmoid, 3.0))
    .dtype(ElemType::F64)
}

/// The elements a buffer of `shape` holds in a call of `k` steps between checkpoints.
fn count(shape: AdjointShape, k: usize, store: SegmentStore, spike_train: bool) -> usize {
    let n = BATCH * N_INNER;
    match shape {
        AdjointShape::Neuron => n,
        AdjointShape::Batch => BATCH,
        AdjointShape::PerStep => n * STEPS,
        AdjointShape::OptionalPerStep => usize::from(spike_train) * n * STEPS,
        AdjointShape::PerRecord => n * STEPS.div_ceil(RECORD_EVERY),
        AdjointShape::PerSegment => n * STEPS.div_ceil(k),
        AdjointShape::SegmentStep => match store {
            SegmentStore::Registers(_) => 0,
            SegmentStore::Scratch => n * 2 * k,
        },
        AdjointShape::BatchWords => BATCH * 2,
    }
}

/// Random input buffers (bytes) for `args`.
fn inputs(args: &[AdjointArg], k: usize, spike_train: bool, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = Rng(seed);
    args.iter()
        .map(|a| {
            let len = count(a.shape, k, SegmentStore::Scratch, spike_train);
            if a.role == AdjointRole::Time {
                // Each member's start time, float64 ms as two int32 words.
                return [0.0f64, 2.5].iter().flat_map(|t| t.to_le_bytes()).collect();
            }
            if a.role == AdjointRole::Checkpoint && a.var.is_none() {
                // The steps an element stays refractory from a segment's first step: none (most
                // often), or up to the shortest model's period (4 steps) less one.
                let left = (0..len).map(|_| [0u8, 0, 1, 2, 3][rng.below(5)]);
                return match a.elem {
                    ElemType::U8 => left.collect(),
                    ElemType::I32 => left.flat_map(|x| i32::from(x).to_le_bytes()).collect(),
                    other => panic!("{}: unexpected {other}", a.name),
                };
            }
            let (lo, hi) = match (a.role, a.name.as_str()) {
                (AdjointRole::Checkpoint, _) => (-0.2, 1.3),
                (_, "tau") => (4.0, 12.0),
                (_, "I") => (0.0, 3.0),
                _ => (-1.0, 1.0),
            };
            let values = (0..len).map(|_| rng.uniform(lo, hi));
            match a.elem {
                ElemType::F64 => values.flat_map(|x| x.to_le_bytes()).collect(),
                ElemType::F32 => values.flat_map(|x| (x as f32).to_le_bytes()).collect(),
                other => panic!("{}: unexpected {other}", a.name),
            }
        })
        .collect()
}

/// The host part both programs share: read the inputs, allocate the outputs, `call`, write
/// the outputs.
fn host(call: &str, n_in: usize, out_bytes: &[usize]) -> String {
    let sizes = out_bytes
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "int main(int argc, char** argv) {{\n    (void) argc;\n    FILE* f = fopen(argv[1], \"rb\");\n    void* ins[{n_in}];\n    for (int k = 0; k < {n_in}; ++k) {{ unsigned long long n; if (fread(&n, 8, 1, f) != 1) return 1; ins[k] = malloc(n + 8); if (fread(ins[k], 1, n, f) != n) return 1; }}\n    fclose(f);\n    const unsigned long long sizes[] = {{ {sizes} }};\n    const int n_out = (int) (sizeof sizes / sizeof sizes[0]);\n    void* outs[64];\n    for (int k = 0; k < n_out; ++k) outs[k] = calloc(sizes[k] + 8, 1);\n    {call}\n    FILE* o = fopen(argv[2], \"wb\");\n    for (int k = 0; k < n_out; ++k) fwrite(outs[k], 1, sizes[k], o);\n    fclose(o);\n    return 0;\n}}\n"
    )
}

/// The CUDA shim's spelling of a buffer element type.
fn cuda_type(e: ElemType) -> &'static str {
    match e.c_type() {
        "int32_t" => "sf_i32",
        "int64_t" => "sf_i64",
        other => other,
    }
}

const SHIM: &str = "#include <cstdio>\n#include <cstring>\nstruct sf_dim3 { unsigned x; };\nstatic sf_dim3 threadIdx, blockIdx, blockDim;\nstatic double __hiloint2double(int hi, int lo) { const unsigned long long b = ((unsigned long long) (unsigned) hi << 32) | (unsigned) lo; double d; std::memcpy(&d, &b, 8); return d; }\nstatic int __double2loint(double d) { unsigned long long b; std::memcpy(&b, &d, 8); return (int) (unsigned) b; }\nstatic int __double2hiint(double d) { unsigned long long b; std::memcpy(&b, &d, 8); return (int) (unsigned) (b >> 32); }\n#define __dmul_rn(a, b) ((a) * (b))\ntemplate <class T> static T __ldcs(const T* p) { return *p; }\ntemplate <class T> static void __stcs(T* p, T v) { *p = v; }\n";

/// The outputs (adjoints and gradients: the scratch is not a result) of `kernel` on `ins`,
/// as one byte string per output.
fn run(
    kernel: &GeneratedAdjoint,
    dialect: Dialect,
    k: usize,
    spike_train: bool,
    ins: &[Vec<u8>],
    dir: &Path,
    name: &str,
) -> Vec<Vec<u8>> {
    let layout = &kernel.layout;
    let out_bytes: Vec<usize> = layout
        .outputs
        .iter()
        .map(|a| count(a.shape, k, kernel.store, spike_train) * a.elem.size())
        .collect();
    let n = BATCH * N_INNER;
    let dims = format!(
        "{N_INNER}, {STEPS}, {k}, {RECORD_EVERY}, {}",
        u8::from(spike_train)
    );
    let types = |args: &[AdjointArg]| args.iter().map(|a| a.elem).collect::<Vec<_>>();
    let buffers = (types(&layout.inputs), types(&layout.outputs));
    let (program, flags) = program(
        dialect,
        &kernel.source,
        kernel.entry,
        &dims,
        &format!("{n}, {dims}"),
        &buffers,
        &out_bytes,
    );
    let bytes = execute(&program, flags, ins, dir, name);
    let mut at = 0;
    let mut outputs = Vec::new();
    for (a, len) in layout.outputs.iter().zip(&out_bytes) {
        if matches!(a.role, AdjointRole::Adjoint | AdjointRole::Grad) {
            outputs.push(bytes[at..at + len].to_vec());
        }
        at += len;
    }
    outputs
}

/// The program that calls `entry` of `source` on the elements `0..BATCH * N_INNER`, and its
/// g++ flags: in C with the dimensions `c_dims`; in CUDA (run on the CPU, blocks of 4 threads,
/// the last with threads past the elements) with the scalar parameters `cuda_scalars` before
/// the buffers, of the element types `buffers` (inputs, outputs).
fn program(
    dialect: Dialect,
    source: &str,
    entry: &str,
    c_dims: &str,
    cuda_scalars: &str,
    buffers: &(Vec<ElemType>, Vec<ElemType>),
    out_bytes: &[usize],
) -> (String, &'static [&'static str]) {
    let n = BATCH * N_INNER;
    let n_in = buffers.0.len();
    match dialect {
        Dialect::C => (
            format!(
                "#include <stdio.h>\n#include <stdlib.h>\n{source}\n{}",
                host(
                    &format!("const long long dims[] = {{ {c_dims} }};\n    {entry}(0, {n}, (const int64_t*) dims, ins, outs);"),
                    n_in,
                    out_bytes
                )
            ),
            // -lm comes before the source here: kept even so.
            &["-x", "c", "-O1", "-ffp-contract=off", "-Wl,--no-as-needed", "-lm"],
        ),
        Dialect::Cuda => {
            let mut args = vec![cuda_scalars.to_string()];
            for (types, array) in [(&buffers.0, "ins"), (&buffers.1, "outs")] {
                args.extend(
                    types
                        .iter()
                        .enumerate()
                        .map(|(i, e)| format!("({}*) {array}[{i}]", cuda_type(*e))),
                );
            }
            let launch = format!(
                "blockDim.x = 4;\n    for (unsigned b = 0; b < {}; ++b) for (unsigned t = 0; t < 4; ++t) {{ blockIdx.x = b; threadIdx.x = t; {entry}({}); }}",
                n.div_ceil(4),
                args.join(", ")
            );
            (
                format!(
                    "{SHIM}{}{}{}{}",
                    cuda_emulation::head(),
                    source.replace("extern \"C\" ", ""),
                    cuda_emulation::tail(),
                    host(&launch, n_in, out_bytes)
                ),
                &["-std=c++20", "-O1", "-ffp-contract=off", "-w"],
            )
        }
    }
}

/// Compiles `program` (its `main` from [`host`]) with `g++ flags`, runs it on the inputs `ins`
/// and returns the outputs' bytes, one after the other.
fn execute(program: &str, flags: &[&str], ins: &[Vec<u8>], dir: &Path, name: &str) -> Vec<u8> {
    let exe = cuda_emulation::compile(program, dir, name, flags);
    let input_file = dir.join(format!("{name}.in"));
    let mut file = Vec::new();
    for b in ins {
        file.extend((b.len() as u64).to_le_bytes());
        file.extend(b);
    }
    std::fs::write(&input_file, file).unwrap();
    let output_file = dir.join(format!("{name}.out"));
    let status = std::process::Command::new(&exe)
        .arg(&input_file)
        .arg(&output_file)
        .status()
        .unwrap();
    assert!(status.success(), "{name}");
    std::fs::read(output_file).unwrap()
}

#[test]
fn both_stores_give_the_same_gradients_bit_for_bit_in_both_dialects() {
    let Some(dir) = cuda_emulation::work_dir("neuron_adjoint_stores") else {
        return;
    };
    // The LIF's period of 4 steps keeps its steps left in uint8; one of 300 steps in int32.
    let models = [
        ("lif64", lif(ElemType::F64), true),
        ("lif32", lif(ElemType::F32), false),
        ("lif32_long", lif(ElemType::F32).refractory(30.0), false),
        ("adaptive", adaptive(), false),
    ];
    let mut compared = 0;
    for (m, (label, spec, spike_train)) in models.into_iter().enumerate() {
        let (ir, _) = prepare(&spec).unwrap_or_else(|d| panic!("{label}: {}", d.render()));
        let limit = generate_adjoint(&ir, &spec, Dialect::C, 1)
            .unwrap()
            .register_segment;
        assert!(limit >= 8, "{label}: register_segment {limit}");
        // 1, a divisor of 23 steps (none but 1 and 23), segments that leave 3 and 7 steps last,
        // the whole run.
        for k in [1, 5, 8, STEPS] {
            let ins = {
                let kernel = generate_adjoint(&ir, &spec, Dialect::C, k).unwrap();
                inputs(&kernel.layout.inputs, k, spike_train, 0x5eed + m as u64)
            };
            let mut results = Vec::new();
            // The CUDA kernels also with their memory traffic tuned (the next segment loaded
            // ahead, streaming hints) and with the exact reciprocal (off the device, the
            // approximate one divides exactly too): the same arithmetic, so the same bits.
            let tunings = [
                AdjointTuning::default(),
                AdjointTuning::parse("prefetch,streaming").unwrap(),
                AdjointTuning::parse("prefetch").unwrap(),
                AdjointTuning::parse("exact_reciprocal").unwrap(),
            ];
            for dialect in [Dialect::C, Dialect::Cuda] {
                for store in [SegmentStore::Scratch, SegmentStore::Registers(k)] {
                    let tuned: &[AdjointTuning] = match dialect {
                        Dialect::C => &tunings[..1],
                        Dialect::Cuda => &tunings,
                    };
                    for tuning in tuned {
                        let kernel =
                            generate_adjoint_in(&ir, &spec, dialect, store, *tuning).unwrap();
                        if tuning.prefetch && store != SegmentStore::Scratch {
                            assert!(kernel.source.contains("sf_next_"), "{label}: no prefetch");
                        }
                        if tuning.streaming {
                            assert!(kernel.source.contains("__stcs("), "{label}: no hints");
                        }
                        let name = format!(
                            "{label}_k{k}_{dialect:?}_{store:?}_{}",
                            tuning.name().replace(',', "_")
                        )
                        .replace(['(', ')'], "");
                        let outputs = run(&kernel, dialect, k, spike_train, &ins, &dir, &name);
                        results.push((name, outputs));
                    }
                }
                // The source for calls that say whether they pass a spike train (a constant of
                // the source, as the handler compiles it), its store chosen by k.
                let kernel = generate_adjoint_tuned(
                    &ir,
                    &spec,
                    dialect,
                    k,
                    AdjointTuning::default(),
                    Some(spike_train),
                )
                .unwrap();
                let branch = ["sf_spike_train ?", "sf_spike_train &&"];
                assert!(!branch.iter().any(|b| kernel.source.contains(b)), "{label}");
                let name = format!("{label}_k{k}_{dialect:?}_for_call");
                let outputs = run(&kernel, dialect, k, spike_train, &ins, &dir, &name);
                results.push((name, outputs));
            }
            let (first, want) = &results[0];
            assert!(want.iter().flatten().any(|b| *b != 0), "{first}: all zero");
            for (name, got) in &results[1..] {
                for (o, (g, w)) in got.iter().zip(want).enumerate() {
                    let at = g.iter().zip(w).position(|(a, b)| a != b);
                    assert!(
                        at.is_none() && g.len() == w.len(),
                        "{name} differs from {first}: output {o}, byte {at:?}"
                    );
                }
                compared += 1;
            }
        }
    }
    // Per model and k: C in both stores and for the call, CUDA in both stores with four
    // tunings and for the call, against the first.
    assert_eq!(compared, 4 * 4 * 11);
}

/// The forward pass under differentiation (the run's kernel with `spec.checkpoint`: CUDA walks
/// segments of `checkpoint_every` steps, each starting with its checkpoint, per-step inputs
/// loaded 8 steps ahead)
/// gives the C kernel's final state, bookkeeping, spike counts, trace and checkpoints bit for bit,
/// the CUDA kernel run on the CPU: checkpoint spacings that divide the run and ones that leave a
/// shorter last segment, a batch of two members that start at different times, elements that
/// start inside a refractory period.
#[test]
fn the_forward_under_differentiation_gives_the_c_kernels_checkpoints_in_cuda() {
    use spikeforge::codegen::{generate_from_spec, ShapeKind};
    let Some(dir) = cuda_emulation::work_dir("neuron_checkpoints") else {
        return;
    };
    let n = BATCH * N_INNER;
    let mut compared = 0;
    // The steps left of the refractory period checkpointed as uint8 (4 steps) and int32 (300).
    let specs = [
        lif(ElemType::F32),
        lif(ElemType::F64),
        lif(ElemType::F32).refractory(30.0),
    ];
    for (m, spec) in specs.into_iter().enumerate() {
        let spec = spec.checkpoint(true);
        // 23 steps, and 5: fewer than the CUDA kernel's queue of inputs loaded ahead.
        for (steps, k) in [
            (STEPS, 1),
            (STEPS, 4),
            (STEPS, 8),
            (STEPS, STEPS),
            (5, 2),
            (5, 5),
        ] {
            let n_ckpt = steps.div_ceil(k);
            let n_rec = steps.div_ceil(RECORD_EVERY);
            let rows = |shape: ShapeKind| match shape {
                ShapeKind::Neuron => n,
                ShapeKind::PerStep => n * steps,
                ShapeKind::Batch => BATCH,
                ShapeKind::Trace => n * n_rec,
                ShapeKind::Checkpoint => n * n_ckpt,
                ShapeKind::Spikes => 0,
            };
            let mut results: Vec<Vec<u8>> = Vec::new();
            for dialect in [Dialect::C, Dialect::Cuda] {
                let kernel = generate_from_spec(&spec, dialect).unwrap();
                let layout = &kernel.layout;
                let left = layout
                    .outputs
                    .iter()
                    .find(|a| a.name == "checkpoint:refractory_left")
                    .expect("a checkpoint of the refractory period's steps left");
                let want = if m < 2 { ElemType::U8 } else { ElemType::I32 };
                assert_eq!(left.elem, want, "model {m}");
                let mut rng = Rng(0x5eed + m as u64);
                let ins: Vec<Vec<u8>> = layout
                    .inputs
                    .iter()
                    .map(|a| {
                        let len = rows(a.shape);
                        if a.words.is_some() {
                            // Times as float64 words: each member's start (0 and 2.5 ms), each
                            // element's last spike (never, or within the refractory period).
                            let times: Vec<f64> = match a.shape {
                                ShapeKind::Batch => vec![0.0, 2.5],
                                _ => (0..len)
                                    .map(|_| [f64::NEG_INFINITY, -0.1, -0.3, 2.2][rng.below(4)])
                                    .collect(),
                            };
                            return times.iter().flat_map(|t| t.to_le_bytes()).collect();
                        }
                        let (lo, hi) = match a.name.as_str() {
                            "tau" => (4.0, 12.0),
                            "I" => (0.0, 3.0),
                            _ => (-0.2, 1.3),
                        };
                        let values = (0..len).map(|_| rng.uniform(lo, hi));
                        match a.elem {
                            ElemType::F64 => values.flat_map(|x| x.to_le_bytes()).collect(),
                            ElemType::F32 => {
                                values.flat_map(|x| (x as f32).to_le_bytes()).collect()
                            }
                            other => panic!("{}: unexpected {other}", a.name),
                        }
                    })
                    .collect();
                let out_bytes: Vec<usize> = layout
                    .outputs
                    .iter()
                    .map(|a| rows(a.shape) * a.elem.size() * if a.words.is_some() { 2 } else { 1 })
                    .collect();
                let name = format!("forward{m}_{}_s{steps}_k{k}_{dialect:?}", spec.dtype.name());
                let types = |args: &[spikeforge::codegen::Arg]| {
                    args.iter().map(|a| a.elem).collect::<Vec<_>>()
                };
                let (program, flags) = program(
                    dialect,
                    &kernel.source,
                    kernel.entry,
                    &format!("{N_INNER}, {steps}, {RECORD_EVERY}, {n_rec}, 0, {k}"),
                    &format!("{n}, {N_INNER}, {steps}, {RECORD_EVERY}, {n_rec}, {k}"),
                    &(types(&layout.inputs), types(&layout.outputs)),
                    &out_bytes,
                );
                if dialect == Dialect::Cuda {
                    assert!(
                        kernel.source.contains("sf_ckpt_every"),
                        "{name}: no checkpoint loop"
                    );
                }
                results.push(execute(&program, flags, &ins, &dir, &name));
            }
            assert!(
                results[0].iter().any(|b| *b != 0),
                "{m} {steps} steps k {k}: all zero"
            );
            let at = results[0].iter().zip(&results[1]).position(|(a, b)| a != b);
            assert!(
                at.is_none() && results[0].len() == results[1].len(),
                "{m} {steps} steps k {k}: CUDA differs from C at byte {at:?}"
            );
            compared += 1;
        }
    }
    assert_eq!(compared, 3 * 6);
}
