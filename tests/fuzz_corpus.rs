//! Replays every input the fuzzer kept (fuzz/corpus/frontends) through the fuzz target's checks,
//! so CI re-verifies them on every change without running the fuzzer itself.

use std::path::Path;

#[test]
fn every_corpus_input_gives_a_model_or_an_error() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/frontends");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).expect("fuzz/corpus/frontends") {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| spikeforge::fuzzing::frontends(&data));
        assert!(outcome.is_ok(), "{} panicked", path.display());
        count += 1;
    }
    assert!(count > 100, "the corpus holds {count} inputs");
}
