//! What several integration tests share: a small deterministic generator and the NVRTC probe.
// Each test uses a part of it.
#![allow(dead_code)]

use spikeforge::runtime::cuda::nvrtc_version;

/// A small deterministic generator (xorshift64*), so failures reproduce from the seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// Whether NVRTC loads; without it a test is skipped, unless CI requires it
/// (`SPIKEFORGE_REQUIRE_NVRTC=1`), where that is a failure.
pub fn nvrtc_available() -> bool {
    match nvrtc_version() {
        Ok(_) => true,
        Err(e) => {
            assert!(
                std::env::var("SPIKEFORGE_REQUIRE_NVRTC").is_err(),
                "NVRTC required but not loadable: {e}"
            );
            eprintln!("SKIPPED: {e}");
            false
        }
    }
}
