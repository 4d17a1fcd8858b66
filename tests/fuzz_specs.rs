//! The whole-spec fuzz target (`spikeforge::fuzzing::specs`, fuzz/fuzz_targets/specs.rs) run
//! from a fixed seed in CI: specs built from random bytes, and the test models' specs with
//! random mutations of their JSON, each of which must give an error that renders or kernels
//! inside the grammar of generated code (`spikeforge::fuzzing::grammar`). Also replays the
//! corpus the fuzzer kept (fuzz/corpus/specs).

use std::path::Path;

use spikeforge::fuzzing::Outcome;

mod common;
use common::Rng;

fn run(data: &[u8]) -> Outcome {
    match std::panic::catch_unwind(|| spikeforge::fuzzing::specs(data)) {
        Ok(outcome) => outcome,
        Err(p) => {
            let message = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("input {data:?} failed: {message}");
        }
    }
}

/// How many of `outcomes` generated kernels: the run must reach the printers often, not only
/// the checks before them.
fn generated(outcomes: &[Outcome]) -> usize {
    outcomes
        .iter()
        .filter(|o| **o == Outcome::Generated)
        .count()
}

#[test]
fn specs_built_from_random_bytes() {
    let mut rng = Rng(0x005E_ED0F_5EC5);
    let started = std::time::Instant::now();
    let cases = 10_000;
    let outcomes: Vec<Outcome> = (0..cases)
        .map(|_| {
            let len = 8 + rng.below(400);
            let mut data = rng.bytes(len);
            if data[0] == b'{' {
                data[0] = 0;
            }
            run(&data)
        })
        .collect();
    let generated = generated(&outcomes);
    eprintln!(
        "{cases} specs in {:?}: {generated} generated kernels",
        started.elapsed()
    );
    assert!(
        generated * 10 >= cases,
        "only {generated} of {cases} specs generated kernels"
    );
}

/// Text a mutation pastes into a field of the spec: hostile names and numbers, noise, deep
/// nesting, the characters of a payload.
const TEXT: &[&str] = &[
    "NAN",
    "int32_t",
    "SF_LANES",
    "xor",
    "1e39",
    "1e-300",
    " + 0.1*xi",
    "((((((((((",
    "v\u{e9}",
    "; system(1)",
    "*/",
    "\n",
    " * lastspike",
    " + t",
    "exp(",
    " and ",
    "2**",
];

/// Names and numbers a mutation adds to a list or map, or sets a number to.
const NAMES: &[&str] = &[
    "tau",
    "v",
    "NAN",
    "throw",
    "in_v",
    "sf_t",
    "y; system(1); //",
    "v\u{e9}",
    "",
];
const NUMBERS: &[f64] = &[0.0, 1.0, -1.0, 1e39, 1e-300, 0.5, 4.0, 1e6];

/// A structural mutation of a spec's JSON: a string field edited, a list or map grown, a number
/// or a choice replaced.
fn mutate(spec: &mut serde_json::Value, rng: &mut Rng) {
    use serde_json::Value;
    let Value::Object(fields) = spec else { return };
    let keys: Vec<String> = fields.keys().cloned().collect();
    let key = keys[rng.below(keys.len())].clone();
    let value = fields.get_mut(&key).unwrap();
    match value {
        Value::String(text) => {
            let at = (0..=text.len())
                .filter(|i| text.is_char_boundary(*i))
                .nth(rng.below(text.chars().count() + 1))
                .unwrap_or(0);
            text.insert_str(at, TEXT[rng.below(TEXT.len())]);
        }
        Value::Array(items) => items.push(NAMES[rng.below(NAMES.len())].into()),
        Value::Object(map) if key == "constants" => {
            let name = NAMES[rng.below(NAMES.len())];
            map.insert(name.into(), NUMBERS[rng.below(NUMBERS.len())].into());
        }
        Value::Object(map) => {
            // A model class: its source, or a list of names.
            let inner: Vec<String> = map.keys().cloned().collect();
            let k = &inner[rng.below(inner.len())];
            match map.get_mut(k).unwrap() {
                Value::String(text) => text.push_str(TEXT[rng.below(TEXT.len())]),
                Value::Array(items) if k == "states" => {
                    items.push(serde_json::json!({"name": NAMES[rng.below(NAMES.len())]}))
                }
                Value::Array(items) => items.push(NAMES[rng.below(NAMES.len())].into()),
                _ => {}
            }
        }
        Value::Number(_) | Value::Null | Value::Bool(_) => {
            *value = match key.as_str() {
                "method" => {
                    ["euler", "rk4", "exact", "exponential_euler", "heun"][rng.below(5)].into()
                }
                "dtype" => ["float32", "float64"][rng.below(2)].into(),
                "fast_math" => (rng.below(2) == 1).into(),
                "substeps" => [1u64, 4, 5, 1000, 1_000_000][rng.below(5)].into(),
                _ => NUMBERS[rng.below(NUMBERS.len())].into(),
            }
        }
    }
}

#[test]
fn mutated_test_model_specs() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/models");
    let mut specs: Vec<(String, serde_json::Value)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            (
                path.display().to_string(),
                serde_json::from_str(&text).unwrap(),
            )
        })
        .collect();
    specs.sort_by(|a, b| a.0.cmp(&b.0));
    let mut rng = Rng(0xC0FF_EE00_1234);
    let mut outcomes = Vec::new();
    for _ in 0..2_000 {
        let mut spec = specs[rng.below(specs.len())].1.clone();
        for _ in 0..1 + rng.below(3) {
            mutate(&mut spec, &mut rng);
        }
        outcomes.push(run(spec.to_string().as_bytes()));
    }
    let generated = generated(&outcomes);
    eprintln!("2000 mutated specs: {generated} generated kernels");
    assert!(
        generated >= 150,
        "only {generated} mutated specs generated kernels"
    );
}

#[test]
fn every_corpus_input_of_the_specs_target() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/specs");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        panic!("no corpus at {}", dir.display());
    };
    let mut count = 0;
    for entry in entries {
        run(&std::fs::read(entry.unwrap().path()).unwrap());
        count += 1;
    }
    assert!(count >= 28, "the corpus holds {count} inputs");
}
