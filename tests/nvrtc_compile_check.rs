//! Compile-checks the generated CUDA of every test model with NVRTC (no GPU needed).
//!
//! NVRTC is loaded dynamically; without it the test says so and passes, unless
//! `SPIKEFORGE_REQUIRE_NVRTC=1` (CI sets it, with the NVRTC wheel from PyPI on LD_LIBRARY_PATH).

use std::path::Path;

mod common;
use common::nvrtc_available;

use spikeforge::codegen::{generate_from_spec, Dialect};
use spikeforge::runtime::cuda::{compile_cubin, compile_cubin_report, CudaCompileOptions};
use spikeforge::spec::ModelSpec;

fn models() -> Vec<(String, ModelSpec)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/models");
    let mut out: Vec<(String, ModelSpec)> = std::fs::read_dir(&dir)
        .expect("tests/models")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (
                p.file_stem().unwrap().to_string_lossy().into_owned(),
                ModelSpec::from_json(&text).unwrap(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn every_generated_cuda_kernel_compiles_for_sm90() {
    if !nvrtc_available() {
        return;
    }
    let models = models();
    assert!(models.len() >= 8);
    for (name, spec) in models {
        let kernel =
            generate_from_spec(&spec, Dialect::Cuda).unwrap_or_else(|d| panic!("{name}: {d}"));
        for fast_math in [false, true] {
            let opts = CudaCompileOptions {
                fast_math,
                ..Default::default()
            };
            let cubin = compile_cubin(&kernel.source, (9, 0), &opts)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(&cubin[..4], b"\x7fELF", "{name}: not a CUBIN");
        }
    }
}

/// With the spike train written (`record_spike_train`), every test model that has a threshold
/// still compiles; those without one are refused.
#[test]
fn every_spike_train_kernel_compiles_for_sm90() {
    if !nvrtc_available() {
        return;
    }
    let mut compiled = 0;
    for (name, spec) in models() {
        let has_threshold = spec.threshold.is_some();
        let spec = spec.record_spike_train(true);
        let kernel = match generate_from_spec(&spec, Dialect::Cuda) {
            Ok(kernel) => kernel,
            Err(d) if !has_threshold => {
                assert_eq!(d.field, "record_spike_train", "{name}: {d}");
                continue;
            }
            Err(d) => panic!("{name}: {d}"),
        };
        assert!(kernel.source.contains("out_sf_spike_train"), "{name}");
        let cubin = compile_cubin(&kernel.source, (9, 0), &CudaCompileOptions::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(&cubin[..4], b"\x7fELF", "{name}: not a CUBIN");
        compiled += 1;
    }
    assert!(compiled >= 3);
}

/// The adjoint (backward) kernel of every differentiable test model, with each surrogate,
/// compiles for sm_90, and so does its forward kernel that keeps the checkpoints
/// (`spec.checkpoint`); the others are refused with a reason.
#[test]
fn every_adjoint_kernel_compiles_for_sm90() {
    use spikeforge::codegen::adjoint_kernel::generate_adjoint;
    use spikeforge::spec::{Surrogate, SurrogateKind};
    if !nvrtc_available() {
        return;
    }
    let kinds = [
        SurrogateKind::FastSigmoid,
        SurrogateKind::Sigmoid,
        SurrogateKind::Arctan,
        SurrogateKind::PiecewiseLinear,
    ];
    let mut compiled = 0;
    for (k, (name, spec)) in models().into_iter().enumerate() {
        let spec = spec.surrogate(Surrogate::new(kinds[k % kinds.len()], 3.0));
        let (ir, _) = spikeforge::codegen::prepare(&spec).unwrap();
        let kernel = match generate_adjoint(&ir, &spec, Dialect::Cuda, 1) {
            Ok(kernel) => kernel,
            Err(e) => {
                assert!(e.to_string().contains("not differentiable"), "{name}: {e}");
                continue;
            }
        };
        // The segment in registers (the longest the model keeps there; none for a model whose
        // step keeps too many values or is too long) and in the scratch.
        let longest = kernel.register_segment;
        let segments = if longest > 0 {
            vec![longest, longest + 1]
        } else {
            vec![64]
        };
        for k in segments {
            let kernel = generate_adjoint(&ir, &spec, Dialect::Cuda, k).unwrap();
            let (cubin, report) =
                compile_cubin_report(&kernel.source, (9, 0), &CudaCompileOptions::default())
                    .unwrap_or_else(|e| panic!("{name} (segment {k}): {e}"));
            assert_eq!(&cubin[..4], b"\x7fELF", "{name}: not a CUBIN");
            // A segment in registers stays there: no stack frame, so no spills.
            if k <= longest {
                assert!(
                    report.contains(" 0 bytes stack frame, 0 bytes spill stores"),
                    "{name} (segment {k} in registers) spills:\n{report}"
                );
            }
        }
        let forward =
            spikeforge::codegen::generate_from_spec(&spec.checkpoint(true), Dialect::Cuda)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(forward.source.contains("sf_ckpt_every"), "{name}");
        compile_cubin(&forward.source, (9, 0), &CudaCompileOptions::default())
            .unwrap_or_else(|e| panic!("{name} (checkpoints): {e}"));
        compiled += 1;
    }
    assert!(compiled >= 10, "only {compiled} adjoint kernels");
}

/// Every reduction kernel (each op, input and output type) compiles for sm_90.
#[test]
fn every_reduction_kernel_compiles_for_sm90() {
    use spikeforge::codegen::reduction::{generate, ReduceKernel, ReduceOp};
    use spikeforge::types::ElemType;
    if !nvrtc_available() {
        return;
    }
    let mut compiled = 0;
    for op in ReduceOp::ALL {
        for input in ElemType::ALL {
            for output in ElemType::ALL {
                let Ok(k) = ReduceKernel::new(op, input, output) else {
                    continue;
                };
                let source = generate(&k, Dialect::Cuda);
                let cubin = compile_cubin(&source, (9, 0), &CudaCompileOptions::default())
                    .unwrap_or_else(|e| panic!("{}: {e}", k.key()));
                assert_eq!(&cubin[..4], b"\x7fELF", "{}: not a CUBIN", k.key());
                compiled += 1;
            }
        }
    }
    assert!(compiled >= 30, "only {compiled} reduction kernels");
}

/// The fast path of pass 1 (and of the one-pass kernel) keeps its 32 elements per thread in
/// registers (fully unrolled, no local memory) and reads them through the read-only path: what
/// makes the reduction run at the copy bandwidth.
#[test]
fn reduction_tile_loads_are_unrolled_into_registers() {
    use spikeforge::codegen::reduction::{generate, ReduceKernel, ReduceOp, CUDA_ITEMS};
    use spikeforge::runtime::cuda::compile_ptx;
    use spikeforge::types::ElemType;
    if !nvrtc_available() {
        return;
    }
    let k = ReduceKernel::new(ReduceOp::Sum, ElemType::F32, ElemType::F32).unwrap();
    let ptx = compile_ptx(
        &generate(&k, Dialect::Cuda),
        (9, 0),
        &CudaCompileOptions::default(),
    )
    .unwrap();
    if std::env::var("SPIKEFORGE_SHOW_PTX").is_ok() {
        eprintln!("{ptx}");
    }
    assert!(!ptx.contains(".local"), "pass 1 spills to local memory");
    // Pass 1 and the one-pass kernel each inline the tile's loads.
    let loads = ptx.matches("ld.global.nc.f32").count();
    assert!(
        loads >= 2 * CUDA_ITEMS,
        "{loads} read-only f32 loads, expected at least {}",
        2 * CUDA_ITEMS
    );
}

/// Every test network's CUDA kernels (tests/networks/) compile for sm_90, with and without fast
/// math, and define the entries the handler launches, the persistent kernel among them.
#[test]
fn every_network_kernel_compiles_for_sm90() {
    use spikeforge::codegen::network_kernel::generate_from_spec;
    use spikeforge::spec::NetworkSpec;
    if !nvrtc_available() {
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/networks");
    let mut compiled = 0;
    for entry in std::fs::read_dir(&dir).expect("tests/networks") {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let mut spec = NetworkSpec::from_json(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for fast_math in [false, true] {
            spec.fast_math = fast_math;
            let kernel =
                generate_from_spec(&spec, Dialect::Cuda).unwrap_or_else(|d| panic!("{name}: {d}"));
            // the cluster kernel where the network has one, in its default mode (compiled only
            // where its mode is named: `cluster_kernel_uses_the_cluster_barrier_and_...`)
            let mode = spikeforge::codegen::network_kernel::cluster_mode(true, false, false, false);
            let opts = CudaCompileOptions {
                fast_math,
                extra: vec![format!("-DSF_CLUSTER_MODE={mode}")],
            };
            let ptx = spikeforge::runtime::cuda::compile_ptx(&kernel.source, (9, 0), &opts)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            // The per-step kernels and the persistent kernels (issue 10) of every network.
            for persistent in [
                spikeforge::codegen::network_kernel::PERSISTENT_ENTRY,
                spikeforge::codegen::network_kernel::RESIDENT_ENTRY,
            ] {
                assert!(
                    kernel.entries.contains(&persistent),
                    "{name}: no {persistent}"
                );
            }
            for entry in &kernel.entries {
                assert!(
                    ptx.contains(&format!(".entry {entry}(")),
                    "{name}: no {entry}"
                );
            }
            let cubin = compile_cubin(&kernel.source, (9, 0), &opts)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(&cubin[..4], b"\x7fELF", "{name}: not a CUBIN");
            compiled += 1;
        }
    }
    assert!(compiled >= 8, "only {compiled} network variants");
}

/// The CUDA source of tests/networks/coba_one_barrier.json (the one-barrier kernel's network).
fn one_barrier_source() -> spikeforge::codegen::network_kernel::GeneratedNetwork {
    use spikeforge::spec::NetworkSpec;
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/networks/coba_one_barrier.json");
    let spec = NetworkSpec::from_json(&std::fs::read_to_string(&path).unwrap()).unwrap();
    spikeforge::codegen::network_kernel::generate_from_spec(&spec, Dialect::Cuda).unwrap()
}

/// The PTX (sm_90) of `entry` in `source`, and the bytes of local memory it declares.
fn entry_ptx(source: &str, entry: &str) -> (String, usize) {
    entry_ptx_with(source, entry, &CudaCompileOptions::default())
}

/// [`entry_ptx`] compiled with `opts`.
fn entry_ptx_with(source: &str, entry: &str, opts: &CudaCompileOptions) -> (String, usize) {
    let ptx = spikeforge::runtime::cuda::compile_ptx(source, (9, 0), opts).unwrap();
    let start = ptx
        .find(&format!(".entry {entry}("))
        .unwrap_or_else(|| panic!("no {entry}"));
    let body = &ptx[start..];
    let body = &body[..body[1..].find(".entry ").map_or(body.len(), |e| e + 1)];
    if std::env::var("SPIKEFORGE_SHOW_PTX").is_ok() {
        eprintln!("{body}");
    }
    let local: usize = body
        .lines()
        .filter(|l| l.contains(".local") && l.contains("__local_depot"))
        .map(|l| {
            let open = l.rfind('[').unwrap();
            let close = l.rfind(']').unwrap();
            l[open + 1..close].parse::<usize>().unwrap()
        })
        .sum();
    (body.to_owned(), local)
}

/// The one-barrier grid kernel's register slots (codegen::network_kernel::grid::registers) are
/// registers: its PTX keeps no more local memory than the grid barrier's `printf` arguments (8
/// bytes), so the slot arrays were unrolled away, not spilled to a stack frame; the same for
/// its variant with balanced deliveries (codegen::network_kernel::grid::balanced).
#[test]
fn one_barrier_register_slots_are_not_local_memory() {
    use spikeforge::codegen::network_kernel::{PERSISTENT_BALANCED_ENTRY, PERSISTENT_ENTRY};
    if !nvrtc_available() {
        return;
    }
    let kernel = one_barrier_source();
    assert!(
        kernel.source.contains("#define SF_SLOTS 4"),
        "register slots"
    );
    assert!(kernel.entries.contains(&PERSISTENT_BALANCED_ENTRY));
    let (_, report) =
        compile_cubin_report(&kernel.source, (9, 0), &CudaCompileOptions::default()).unwrap();
    for entry in [PERSISTENT_ENTRY, PERSISTENT_BALANCED_ENTRY] {
        let (_, local) = entry_ptx(&kernel.source, entry);
        assert!(local <= 8, "{local} bytes of local memory in {entry}");
        // And ptxas spills nothing of it (the per-step latency work keeps more values in
        // flight: prefetched arrivals, the firing lanes' rows, a lane's targets before their
        // atomics).
        let at = report
            .find(&format!("'{entry}'"))
            .expect("ptxas's report of the persistent entry");
        let own = &report[at..];
        let own = &own[..own.find("ptxas info    : Compiling").unwrap_or(own.len())];
        if std::env::var("SPIKEFORGE_SHOW_PTX").is_ok() {
            eprintln!("{own}");
        }
        assert!(
            own.contains(" 0 bytes spill stores, 0 bytes spill loads"),
            "{entry} spills:\n{own}"
        );
    }
}

/// The one-barrier kernel as one thread-block cluster (codegen::network_kernel::grid::cluster),
/// compiled for each mode the handler launches (`-DSF_CLUSTER_MODE`, and absent without it):
/// on sm_90 its PTX has the cluster barrier and `mapa` (the deliveries' distributed shared
/// memory), or where its arrivals are tracked the mbarriers' reductions, arrivals and waits
/// instead of a barrier a step; ptxas reports no spills for it, and its slots are registers (no
/// local memory beyond `printf`'s arguments); on sm_80 the same source compiles, the kernel's
/// body compiled out.
#[test]
fn cluster_kernel_uses_the_cluster_barrier_and_keeps_its_slots_in_registers() {
    use spikeforge::codegen::network_kernel::{cluster_mode, CLUSTER_ENTRY};
    if !nvrtc_available() {
        return;
    }
    let kernel = one_barrier_source();
    assert!(kernel.entries.contains(&CLUSTER_ENTRY));
    let plain = spikeforge::runtime::cuda::compile_ptx(
        &kernel.source,
        (9, 0),
        &CudaCompileOptions::default(),
    )
    .unwrap();
    assert!(
        !plain.contains(&format!(".entry {CLUSTER_ENTRY}(")),
        "the cluster kernel compiled without its mode"
    );
    let barrier = [
        "barrier.cluster.arrive.release",
        "barrier.cluster.wait.acquire",
    ];
    // the tracked arrivals (grid::cluster's `sf_tracked`): asynchronous reductions that the
    // target's mbarrier counts, relaxed arrivals (NVRTC 12.8 and newer), the waits
    let tracked = [
        "red.async.relaxed.cluster.shared::cluster.mbarrier::complete_tx::bytes.add.u32",
        "mbarrier.arrive.expect_tx.relaxed.cluster.shared::cluster.b64",
        "mbarrier.try_wait.parity.acquire.cluster",
    ];
    // (by the warp, added, tracked)
    for (by_warp, added, track) in [
        (true, false, false),
        (false, false, false),
        (true, false, true),
        (false, true, false),
    ] {
        let mode = cluster_mode(by_warp, added, false, track);
        let opts = CudaCompileOptions {
            extra: vec![format!("-DSF_CLUSTER_MODE={mode}")],
            ..Default::default()
        };
        let (body, local) = entry_ptx_with(&kernel.source, CLUSTER_ENTRY, &opts);
        assert!(
            body.contains("mapa"),
            "mode {mode}: no distributed shared memory"
        );
        // the barrier before the first step and after the last
        assert!(body.contains(barrier[0]), "mode {mode}: no cluster barrier");
        for text in tracked {
            assert_eq!(body.contains(text), track, "mode {mode}: {text}");
        }
        assert!(
            local <= 8,
            "mode {mode}: {local} bytes of local memory in {CLUSTER_ENTRY}"
        );
        let (cubin, report) = compile_cubin_report(&kernel.source, (9, 0), &opts).unwrap();
        assert_eq!(&cubin[..4], b"\x7fELF");
        let at = report
            .find(&format!("'{CLUSTER_ENTRY}'"))
            .unwrap_or_else(|| panic!("no report of {CLUSTER_ENTRY}:\n{report}"));
        let mine = &report[at..];
        let mine = &mine[..mine[1..]
            .find("Compiling entry")
            .map_or(mine.len(), |e| e + 1)];
        if std::env::var("SPIKEFORGE_SHOW_PTX").is_ok() {
            eprintln!("{report}");
        }
        assert!(
            mine.contains(" 0 bytes spill stores, 0 bytes spill loads"),
            "mode {mode}: {CLUSTER_ENTRY} spills:\n{mine}"
        );
        if mode == cluster_mode(true, false, false, false) {
            let old = compile_cubin(&kernel.source, (8, 0), &opts).unwrap();
            assert_eq!(&old[..4], b"\x7fELF");
        }
    }
}

/// The checkpointed network run's copy kernel (`handlers::network_checkpoints`) compiles.
#[test]
fn the_network_checkpoint_copy_kernel_compiles_for_sm90() {
    if !nvrtc_available() {
        return;
    }
    let source = spikeforge::handlers::network_checkpoints::COPY_SOURCE;
    let cubin = compile_cubin(source, (9, 0), &CudaCompileOptions::default())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(&cubin[..4], b"\x7fELF", "not a CUBIN");
}
