//! Fuzzes whole specs (see `spikeforge::fuzzing::specs`): JSON (the corpus starts from the test
//! models' specs, which libFuzzer mutates) or a spec built from the bytes; each gives an error or
//! kernels whose every token is inside the grammar of generated code.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = spikeforge::fuzzing::specs(data);
});
