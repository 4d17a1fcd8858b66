//! The random streams: every random number a model uses (white noise `xi`, `rand()`, `randn()`,
//! in the step and in initial values) is a pure function of where it is used, so CPU and GPU
//! runs, batch layouts, split runs and the Rust evaluator of initial values all see the same
//! numbers. This module defines the streams and computes them in Rust; `codegen::random` prints
//! the same computation for the kernels, operation for operation (the tests compare them bit
//! for bit).
//!
//! Generator: Philox4x32-10 (Salmon et al., SC'11), a bijection of a 128-bit counter under a
//! 64-bit key. One evaluation gives four 32-bit words; a draw uses one evaluation.
//!
//! | draw                    | key `(k0, k1)`               | counter `(c0, c1, c2, c3)`                                   |
//! |-------------------------|------------------------------|--------------------------------------------------------------|
//! | in a step               | `(seed, step_key(dt))`       | `(element, step lo, k, STEP_DOMAIN ^ step hi)`               |
//! | in an initial value     | `(seed, INITIAL_KEY)`        | `(element, statement, k, INITIAL_DOMAIN)`                    |
//!
//! * `seed`: the state's `rng_seed` (one per batch member); `element`: the element's index
//!   within its batch member (the low 32 bits).
//! * `step`: the 64-bit step counter on the grid of the run's `dt` (low and high words). The key
//!   mixes in `dt` ([`step_key`]), so that steps of runs with different `dt` (a run that
//!   continues with another `dt` counts steps on another grid) draw independent numbers.
//! * `k`: the draw's index in the step: the noise symbols first (in order of first use), then
//!   the calls of `rand()` / `randn()` (`GroupIr::stream_draws`). In an initial value, `k`
//!   numbers the calls within the statement, and `statement` numbers the statements.
//!
//! Transforms (exact, or correctly rounded operations only, so that the result does not depend
//! on the compiler or the platform outside fast math):
//! * uniform, float32 (`rand()` in a float32 kernel): `(w0 >> 8) * 2^-24`, in [0, 1);
//! * uniform, float64 (float64 kernels, initial values): `((w0 >> 5) * 2^26 + (w1 >> 6)) *
//!   2^-53`, in [0, 1);
//! * normal (`xi`, `randn()`): Box-Muller in float32, `sqrt(-2 ln u1) cos(2 pi u2)` with `u1 =
//!   ((w0 >> 8) + 0.5) 2^-24`, `u2 = (w1 >> 8) 2^-24`, the logarithm and the cosine by fixed
//!   polynomials ([`normal`]); a float32 value in float64 kernels too.

/// Philox's second key word for draws in a step, before `dt` is mixed in.
pub const STEP_KEY: u32 = 0x5F0F_5F0F;
/// The last counter word of draws in a step (with the step's high word xored in).
pub const STEP_DOMAIN: u32 = 0x5350_4B46;
/// Philox's second key word for draws in initial values.
pub const INITIAL_KEY: u32 = 0x5F0F_5F0F;
/// The last counter word of draws in initial values.
pub const INITIAL_DOMAIN: u32 = 0x494E_4954;

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

/// Philox4x32-10 of `counter` under `key`.
pub fn philox(mut c: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let (mut k0, mut k1) = (key[0], key[1]);
    for _ in 0..10 {
        let p0 = u64::from(M0) * u64::from(c[0]);
        let p1 = u64::from(M1) * u64::from(c[2]);
        let (hi0, lo0) = ((p0 >> 32) as u32, p0 as u32);
        let (hi1, lo1) = ((p1 >> 32) as u32, p1 as u32);
        c = [hi1 ^ c[1] ^ k0, lo1, hi0 ^ c[3] ^ k1, lo0];
        k0 = k0.wrapping_add(W0);
        k1 = k1.wrapping_add(W1);
    }
    c
}

/// The key word that separates the steps of runs with different `dt`: [`STEP_KEY`] xor a mix
/// of `dt`'s bits (the finaliser of SplitMix64, folded to 32 bits).
pub fn step_key(dt: f64) -> u32 {
    let mut z = dt.to_bits();
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    STEP_KEY ^ (z as u32) ^ ((z >> 32) as u32)
}

/// The words of draw `k` of `element` at `step` of a run with step `dt`.
pub fn step_words(seed: u32, dt: f64, element: u32, step: i64, k: u32) -> [u32; 4] {
    let (lo, hi) = (step as u32, ((step as u64) >> 32) as u32);
    philox([element, lo, k, STEP_DOMAIN ^ hi], [seed, step_key(dt)])
}

/// The words of draw `k` of `element` in initial-value statement `statement`.
pub fn initial_words(seed: u32, element: u32, statement: u32, k: u32) -> [u32; 4] {
    philox([element, statement, k, INITIAL_DOMAIN], [seed, INITIAL_KEY])
}

/// A float32 uniform on [0, 1) (24 bits of `w[0]`).
pub fn uniform_f32(w: [u32; 4]) -> f32 {
    (w[0] >> 8) as f32 * 5.960_464_5e-8
}

/// A float64 uniform on [0, 1) (53 bits of `w[0]` and `w[1]`).
pub fn uniform_f64(w: [u32; 4]) -> f64 {
    (f64::from(w[0] >> 5) * 67_108_864.0 + f64::from(w[1] >> 6)) * (1.0 / 9_007_199_254_740_992.0)
}

/// `ln(u)` for `u` in (0, 1]: `u = m 2^e`, `ln m = 2 atanh((m - 1) / (m + 1))` by its series.
fn log(u: f32) -> f32 {
    let w = u.to_bits();
    let e = ((w >> 23) & 0xff) as i32 - 127;
    let m = f32::from_bits((w & 0x007f_ffff) | 0x3f80_0000);
    let s = (m + -1.0) / (m + 1.0);
    let s2 = s * s;
    let mut p = 1.0f32 / 17.0;
    for c in [15.0f32, 13.0, 11.0, 9.0, 7.0, 5.0, 3.0] {
        p = p.mul_add(s2, 1.0 / c);
    }
    p = p.mul_add(s2, 1.0);
    (e as f32).mul_add(std::f32::consts::LN_2, (2.0 * s) * p)
}

/// `cos(2 pi x)` for `x` in [0, 1): the quadrant exactly, then polynomials on [0, pi/2).
fn cos_turns(x: f32) -> f32 {
    let x4 = x * 4.0;
    let quadrant = x4 as i32;
    let f = (x4 + -(quadrant as f32)) * std::f32::consts::FRAC_PI_2;
    let f2 = f * f;
    // Horner's rule with fused multiply-adds, highest coefficient first.
    let horner = |coefficients: &[f32]| {
        coefficients[1..]
            .iter()
            .fold(coefficients[0], |acc, k| acc.mul_add(f2, *k))
    };
    let c = horner(&[
        -1.0 / 87_178_291_200.0,
        1.0 / 479_001_600.0,
        -1.0 / 3_628_800.0,
        1.0 / 40_320.0,
        -1.0 / 720.0,
        1.0 / 24.0,
        -0.5,
        1.0,
    ]);
    let s = horner(&[
        -1.0 / 1_307_674_368_000.0,
        1.0 / 6_227_020_800.0,
        -1.0 / 39_916_800.0,
        1.0 / 362_880.0,
        -1.0 / 5_040.0,
        1.0 / 120.0,
        -1.0 / 6.0,
        1.0,
    ]) * f;
    match quadrant {
        0 => c,
        1 => -s,
        2 => -c,
        _ => s,
    }
}

/// A standard normal from the words of one draw (Box-Muller in float32).
pub fn normal(w: [u32; 4]) -> f32 {
    let u1 = ((w[0] >> 8) as f32 + 0.5) * 5.960_464_5e-8;
    let u2 = (w[1] >> 8) as f32 * 5.960_464_5e-8;
    (-2.0 * log(u1)).sqrt() * cos_turns(u2)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Philox4x32-10's known-answer vectors (Random123's kat_vectors).
    #[test]
    fn philox_matches_the_known_answers() {
        assert_eq!(
            philox([0, 0, 0, 0], [0, 0]),
            [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8]
        );
        assert_eq!(
            philox([u32::MAX; 4], [u32::MAX; 2]),
            [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd]
        );
        assert_eq!(
            philox(
                [0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344],
                [0xa409_3822, 0x299f_31d0]
            ),
            [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1]
        );
    }

    #[test]
    fn transforms_are_in_range_and_have_the_right_moments() {
        let n = 200_000;
        let (mut s1, mut s2, mut u_sum) = (0.0f64, 0.0f64, 0.0f64);
        for e in 0..n {
            let w = step_words(7, 0.1, e, 3, 0);
            let z = f64::from(normal(w));
            s1 += z;
            s2 += z * z;
            let u = uniform_f64(w);
            assert!((0.0..1.0).contains(&u));
            let u32v = uniform_f32(w);
            assert!((0.0..1.0).contains(&u32v));
            u_sum += u;
        }
        let n = f64::from(n);
        assert!((s1 / n).abs() < 4.0 / n.sqrt());
        assert!((s2 / n - 1.0).abs() < 4.0 * (2.0 / n).sqrt());
        assert!((u_sum / n - 0.5).abs() < 4.0 * (1.0 / 12.0 / n).sqrt());
    }

    #[test]
    fn the_step_key_separates_steps_of_different_dt() {
        assert_ne!(step_key(0.1), step_key(0.05));
        assert_ne!(
            step_words(1, 0.1, 0, 400, 0),
            step_words(1, 0.05, 0, 400, 0)
        );
        // The high word of the step counter is part of the counter.
        assert_ne!(
            step_words(1, 0.1, 0, 5, 0),
            step_words(1, 0.1, 0, 5 + (1 << 32), 0)
        );
    }
}
