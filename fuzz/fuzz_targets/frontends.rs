//! Fuzzes the front ends end to end (see `spikeforge::fuzzing::frontends`): any text must give a
//! model or a located error, never a panic, a hang or unbounded memory.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| spikeforge::fuzzing::frontends(data));
