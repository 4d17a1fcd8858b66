//! Golden kernels: the generated source of every test model, of every reduction kernel and of
//! every test connection rule (`tests/connect_rules/x.json` gives `connect_x.cu.snap`, ...), in
//! both dialects, committed under `tests/kernels/`. Any change to code generation shows up here as
//! a diff of generated code, to be read in review and explained in the commit.
//!
//! Re-bless after an intended change (writes the files, then the test passes):
//!
//! ```sh
//! SPIKEFORGE_BLESS=1 cargo test --release --test golden_kernels
//! ```
//!
//! (`scripts/bless_kernels.sh` runs exactly that.) A model in `tests/models/` named `x.json` gives
//! `tests/kernels/x.cu.snap` and `tests/kernels/x.c.snap`; with `"fast_math": false` in the spec, the
//! fast-math variant is printed too (`x.fast.cu.snap`, ...), since that rewrite changes the DAG. A
//! network in `tests/networks/` named `x.json` gives `tests/kernels/network_x.cu.snap` and
//! `network_x.c.snap`. The adjoint kernels of the models in `ADJOINT_MODELS`, with a fast-sigmoid
//! surrogate, give `adjoint_x.cu.snap` and `adjoint_x.c.snap` (the segment in registers, the
//! longest the model keeps there) and, for the first, `adjoint_x_scratch.*` (a longer segment,
//! in the scratch).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use spikeforge::codegen::adjoint_kernel::generate_adjoint;
use spikeforge::codegen::connect_kernel;
use spikeforge::codegen::reduction::{self, ReduceKernel, ReduceOp};
use spikeforge::codegen::{generate_from_spec, network_kernel, prepare, Dialect};
use spikeforge::connect::{self, ConnectSpec};
use spikeforge::spec::{ModelSpec, NetworkSpec, Surrogate, SurrogateKind};
use spikeforge::types::ElemType;

/// The test models whose adjoint kernels are golden too.
const ADJOINT_MODELS: &[&str] = &[
    "lif_32",
    "adaptive_lif_exponential_euler_64",
    "seed000_alpha",
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// Golden files end in `.snap` after the dialect's extension (`x.cu.snap`, `x.c.snap`): they are
/// reference data, not sources of the project (tools that scan the tree for code skip them).
fn extension(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Cuda => "cu.snap",
        Dialect::C => "c.snap",
    }
}

/// Every golden file's name and expected contents, as the current code generates them.
fn generated() -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let dir = root().join("tests/models");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/models")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 20, "expected the test models in {dir:?}");
    for path in paths {
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        let spec = ModelSpec::from_json(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{stem}: {e}"));
        let mut variants = vec![(stem.clone(), spec.clone())];
        if !spec.fast_math {
            let mut fast = spec;
            fast.fast_math = true;
            variants.push((format!("{stem}.fast"), fast));
        }
        for (name, spec) in variants {
            for dialect in [Dialect::Cuda, Dialect::C] {
                let kernel = generate_from_spec(&spec, dialect)
                    .unwrap_or_else(|d| panic!("{name}: {}", d.render()));
                out.insert(format!("{name}.{}", extension(dialect)), kernel.source);
            }
        }
    }
    // Networks: `tests/networks/x.json` gives `network_x.cu.snap` and `network_x.c.snap`.
    let dir = root().join("tests/networks");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/networks")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 4, "expected the test networks in {dir:?}");
    for path in paths {
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        let spec = NetworkSpec::from_json(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{stem}: {e}"));
        for dialect in [Dialect::Cuda, Dialect::C] {
            let kernel = network_kernel::generate_from_spec(&spec, dialect)
                .unwrap_or_else(|d| panic!("{stem}: {}", d.render()));
            out.insert(
                format!("network_{stem}.{}", extension(dialect)),
                kernel.source,
            );
        }
    }
    for op in ReduceOp::ALL {
        for input in ElemType::ALL {
            for output in reduction::allowed_outputs(op, input) {
                let Ok(k) = ReduceKernel::new(op, input, output) else {
                    continue;
                };
                for dialect in [Dialect::Cuda, Dialect::C] {
                    let name = format!(
                        "reduce_{}_{}_{}.{}",
                        op.name(),
                        input.name(),
                        output.name(),
                        extension(dialect)
                    );
                    out.insert(name, reduction::generate(&k, dialect));
                }
            }
        }
    }
    // Adjoint (backward) kernels of a few differentiable test models, with a surrogate:
    // `tests/models/x.json` gives `adjoint_x.cu.snap` and `adjoint_x.c.snap`.
    for stem in ADJOINT_MODELS {
        let path = root().join(format!("tests/models/{stem}.json"));
        let spec = ModelSpec::from_json(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{stem}: {e}"))
            .surrogate(Surrogate::new(SurrogateKind::FastSigmoid, 4.0));
        let (ir, _) = prepare(&spec).unwrap_or_else(|d| panic!("{stem}: {}", d.render()));
        for dialect in [Dialect::Cuda, Dialect::C] {
            let adjoint = |k| {
                generate_adjoint(&ir, &spec, dialect, k).unwrap_or_else(|e| panic!("{stem}: {e}"))
            };
            // The longest segment kept in registers (the default), and, for the first model,
            // a longer one: the scratch.
            let longest = adjoint(1).register_segment;
            assert!(longest > 0, "{stem}: no segment in registers");
            out.insert(
                format!("adjoint_{stem}.{}", extension(dialect)),
                adjoint(longest).source,
            );
            if *stem == ADJOINT_MODELS[0] {
                out.insert(
                    format!("adjoint_{stem}_scratch.{}", extension(dialect)),
                    adjoint(longest + 1).source,
                );
            }
        }
    }
    for (stem, spec) in connect_rules() {
        let (ir, _) = connect::lower(&spec).unwrap_or_else(|d| panic!("{stem}: {}", d.render()));
        for dialect in [Dialect::Cuda, Dialect::C] {
            let name = format!("connect_{stem}.{}", extension(dialect));
            out.insert(name, connect_kernel::generate(&ir, dialect));
        }
    }
    out
}

/// The test connection rules, `tests/connect_rules/*.json`, by file stem.
fn connect_rules() -> Vec<(String, ConnectSpec)> {
    let dir = root().join("tests/connect_rules");
    let mut rules: Vec<(String, ConnectSpec)> = std::fs::read_dir(&dir)
        .expect("tests/connect_rules")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
            let spec = ConnectSpec::from_json(&std::fs::read_to_string(&p).unwrap())
                .unwrap_or_else(|e| panic!("{stem}: {e}"));
            (stem, spec)
        })
        .collect();
    rules.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(rules.len() >= 5, "expected the test rules in {dir:?}");
    rules
}

/// The first line where two texts differ, with a few lines of context from each.
fn first_difference(want: &str, got: &str) -> String {
    let (w, g): (Vec<&str>, Vec<&str>) = (want.lines().collect(), got.lines().collect());
    let k = w
        .iter()
        .zip(&g)
        .position(|(a, b)| a != b)
        .unwrap_or(w.len().min(g.len()));
    let show = |lines: &[&str]| lines[k.min(lines.len())..(k + 3).min(lines.len())].join("\n");
    format!(
        "first difference at line {}:\n--- committed\n{}\n--- generated\n{}",
        k + 1,
        show(&w),
        show(&g)
    )
}

#[test]
fn generated_kernels_match_the_committed_golden_files() {
    let dir = root().join("tests/kernels");
    let generated = generated();
    if std::env::var_os("SPIKEFORGE_BLESS").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if !generated.contains_key(&name) {
                std::fs::remove_file(&path).unwrap();
            }
        }
        for (name, text) in &generated {
            std::fs::write(dir.join(name), text).unwrap();
        }
        eprintln!("blessed {} golden kernels in {dir:?}", generated.len());
        return;
    }
    let mut problems = Vec::new();
    for (name, text) in &generated {
        match std::fs::read_to_string(dir.join(name)) {
            Err(_) => problems.push(format!("{name}: not committed")),
            Ok(want) if &want != text => {
                problems.push(format!("{name}: {}", first_difference(&want, text)))
            }
            Ok(_) => {}
        }
    }
    for entry in std::fs::read_dir(&dir).expect("tests/kernels") {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if !generated.contains_key(&name) {
            problems.push(format!("{name}: committed but no longer generated"));
        }
    }
    assert!(
        problems.is_empty(),
        "{} golden kernel(s) differ; if the change is intended, run \
         `SPIKEFORGE_BLESS=1 cargo test --release --test golden_kernels` and explain it in the \
         commit:\n\n{}",
        problems.len(),
        problems.join("\n\n")
    );
}
