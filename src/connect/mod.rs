//! Connectivity built on the device from a seed: the synapses of a projection, chosen by a rule
//! (Brian2's `connect(condition, p, n)`, a fixed out- or in-degree), stored as CSR by
//! presynaptic neuron.
//!
//! Why on the device and from a seed: a network of 400 k neurons with p = 0.02 has 3.2e9
//! candidate pairs and 32 M synapses; drawing them in Python would take minutes and shipping them
//! to the GPU hundreds of megabytes. Here the rule becomes a generated kernel (C or CUDA,
//! `crate::codegen::connect_kernel`) with one row of the connectivity per thread, and every
//! random number is a pure function of (seed, stream, row, draw), so the same seed gives the same
//! synapses on the CPU and the GPU, whatever the thread layout.
//!
//! # Two passes
//! The count pass gives each row's number of synapses (or a negative error code: see
//! [`ErrorCode`]); the caller (Python, outside `jit`, when the network's state is built) adds
//! them up into row offsets and allocates the targets; the fill pass recomputes the same draws
//! and writes each row's targets into its slice. Both passes run the same row function, so they
//! cannot disagree.
//!
//! # The random stream
//! Philox4x32-10 (`crate::codegen::random::philox_source`), key = (seed, stream), counter =
//! (row, draw low word, draw high word, [`COUNTER_TAG`]). The stream tells projections (and
//! successive `connect` calls of one projection) apart; the tag tells this use from the noise
//! stream's. A draw's 64 bits are `w = c0 << 32 | c1`. What each rule draws:
//!
//! * pairs, `0 < p < 1` constant: geometric skipping over the row's candidates, so the work is
//!   O(synapses), not O(N_pre N_post): draw `d = 0, 1, ...` gives `u = ((w >> 11) + 1) 2^-53` in
//!   (0, 1] and the gap `floor(ln u / ln(1 - p))` before the next candidate; the candidates
//!   passing the condition are connected. `ln` is a float64 logarithm written with correctly
//!   rounded operations only (both dialects give the same bits), `ln(1 - p)` is computed once in
//!   Rust and printed into the kernel.
//! * pairs, `p` an expression: every pair `(i, j)` that passes the condition draws `d = j` and
//!   is connected when `(w >> 11) 2^-53 < p(i, j)`.
//! * fixed degree `k`: draw `t = 0..k` gives an integer below a bound `b` as `floor(w b / 2^64)`
//!   (no modulo bias worth the name: at most `b / 2^64`). With replacement, the `k` draws are the
//!   targets, in order; without, Floyd's algorithm (draw `t` below `m - k + t + 1`) gives a
//!   uniform `k`-subset, kept sorted. Excluding self-connections draws from the `m = N - 1`
//!   others and shifts the indices at and above the row's own neuron by one.

pub mod abi;
pub mod lower;
pub mod spec;

pub use lower::{lower, ConnectIr, DegreeIr, Multiplicity, PairsIr, Probability, RuleIr, Value};
pub use spec::{ConnectSpec, NumberOrExpr, Rows, Rule};

/// The fourth counter word of every connectivity draw ("CONN").
pub const COUNTER_TAG: u32 = 0x434F_4E4E;

/// `self_offset` when the two groups differ: no pair is a self-connection (the row's own
/// neuron, `row + self_offset`, is never in range).
pub const NO_SELF: i64 = -(1 << 62);

/// Why a row could not be built: the count pass writes these (negative) instead of a count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i64)]
pub enum ErrorCode {
    /// `n` evaluated to a value that is not an integer in 0..=2^31-1 for a pair of the row.
    BadMultiplicity = -1,
    /// `p` evaluated to a value outside [0, 1] (or NaN) for a pair of the row.
    BadProbability = -2,
    /// A fixed degree with no neuron to draw from (an empty population, or only the row's own
    /// neuron with self-connections excluded).
    NothingToDraw = -3,
    /// A fixed degree without replacement larger than the neurons there are to draw from.
    DegreeTooLarge = -4,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 4] = [
        ErrorCode::BadMultiplicity,
        ErrorCode::BadProbability,
        ErrorCode::NothingToDraw,
        ErrorCode::DegreeTooLarge,
    ];

    pub fn code(self) -> i64 {
        self as i64
    }

    /// The name Python reads the code by.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::BadMultiplicity => "bad_multiplicity",
            ErrorCode::BadProbability => "bad_probability",
            ErrorCode::NothingToDraw => "nothing_to_draw",
            ErrorCode::DegreeTooLarge => "degree_too_large",
        }
    }
}
