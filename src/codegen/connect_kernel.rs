//! The connectivity kernels: one lowered connection rule ([`ConnectIr`]) printed as a row
//! function and its two entry points, [`ENTRY_COUNT`] and [`ENTRY_FILL`], in either dialect.
//!
//! One row (a presynaptic neuron; a postsynaptic one for a fixed in-degree) per CUDA thread, or
//! per iteration of the C loop over the rows of a chunk (the handler spreads chunks over the
//! cores). The count pass and the fill pass call the same row function, the first without an
//! output (it returns the row's count, or a negative [`ErrorCode`]), the second with the row's
//! slice of the targets, so both see exactly the same draws and the same candidates. The random
//! stream and what each rule draws are described in [`crate::connect`].
//!
//! Everything is computed in float64 with correctly rounded operations, so the C and CUDA
//! kernels choose the same synapses bit for bit: the CUDA side is compiled without contraction
//! into fused multiply-adds ([`CUDA_OPTIONS`]; ISO C does not contract), and the logarithm of the
//! geometric skipping is written here from `+ - * /` and `fma`. (A rule whose expression calls a
//! transcendental function, `exp(-d**2)`, may still differ where a value lies within an ulp of a
//! decision: libm and CUDA's math library round those differently.)

use std::fmt::{self, Write};

use super::dialect::Dialect;
use super::printer::{literal, prelude, Printer};
use super::random::philox_source;
use super::writer::{render, SourceWriter};
use crate::connect::{
    ConnectIr, DegreeIr, ErrorCode, Multiplicity, PairsIr, Probability, Rows, RuleIr, Value,
    COUNTER_TAG,
};
use crate::ir::IndexOf;
use crate::types::ElemType;

/// Count pass: each row's number of synapses, or a negative [`ErrorCode`].
pub const ENTRY_COUNT: &str = "sf_connect_count";
/// Fill pass: each row's targets, written into its slice of the row offsets.
pub const ENTRY_FILL: &str = "sf_connect_fill";
/// CUDA threads per block (one row each).
pub const CUDA_BLOCK: u32 = 128;
/// NVRTC options the kernels need: no contraction of `a * b + c` into an `fma`, which C does
/// not do either (see the module documentation).
pub const CUDA_OPTIONS: &[&str] = &["--fmad=false"];

/// `ln 2` in two parts: `LN2_HI` has 32 significant bits, so `e * LN2_HI` is exact for every
/// exponent a double has; `LN2_HI + LN2_LO` is `ln 2` to 2^-85.
const LN2_HI: f64 = f64::from_bits(0x3FE6_2E42_FEE0_0000);
const LN2_LO: f64 = f64::from_bits(0x3DEA_39EF_3579_3C76);
/// Terms kept of `R(z) = 2z/3 + 2z^2/5 + ...` (`z = s^2 <= (3 - 2 sqrt(2))^2`): the next one
/// is below 2^-60 of the logarithm.
const LOG_TERMS: u32 = 11;
/// `2^-53`: the spacing of the uniforms.
const TWO_POW_M53: f64 = 1.0 / 9_007_199_254_740_992.0;

/// The generated source of `ir` for `dialect`: both entry points.
pub fn generate(ir: &ConnectIr, dialect: Dialect) -> String {
    render(|w| KernelWriter { ir, dialect }.write(w))
}

struct KernelWriter<'a> {
    ir: &'a ConnectIr,
    dialect: Dialect,
}

impl KernelWriter<'_> {
    fn write(&self, w: &mut SourceWriter) -> fmt::Result {
        let cuda = self.dialect == Dialect::Cuda;
        writeln!(
            w,
            "/* spikeforge connectivity ({} dialect): {}. Generated; see src/codegen/connect_kernel.rs. */",
            if cuda { "CUDA" } else { "C" },
            self.summary()
        )?;
        if cuda {
            w.write_str(
                &self
                    .dialect
                    .integer_typedefs(&["int32_t", "uint32_t", "int64_t", "uint64_t"]),
            )?;
        } else {
            w.write_str(
                "#include <math.h>\n#include <stdbool.h>\n#include <stdint.h>\n#include <string.h>\n",
            )?;
        }
        w.write_str(&prelude(self.dialect, ElemType::F64))?;
        w.write_str(&philox_source(self.dialect))?;
        self.write_stream(w)?;
        self.write_row(w)?;
        self.write_entries(w)
    }

    /// What the rule is, for the header comment.
    fn summary(&self) -> String {
        match &self.ir.rule {
            RuleIr::Pairs(PairsIr {
                condition,
                p,
                n,
                allow_self,
            }) => {
                let p = match p {
                    Probability::Always => "p = 1".to_string(),
                    Probability::Never => "p = 0".to_string(),
                    Probability::Constant(p) => format!("p = {p} (geometric skipping)"),
                    Probability::PerPair(_) => "p per pair".to_string(),
                };
                let n = match n {
                    Multiplicity::Constant(n) => format!("n = {n}"),
                    Multiplicity::PerPair(_) => "n per pair".to_string(),
                };
                format!(
                    "pairs{}, {p}, {n}{}",
                    if condition.is_some() {
                        " with a condition"
                    } else {
                        ""
                    },
                    if *allow_self {
                        ""
                    } else {
                        ", no self-connections"
                    }
                )
            }
            RuleIr::Degree(DegreeIr {
                rows,
                k,
                replace,
                allow_self,
            }) => format!(
                "fixed {}-degree {k}, {}{}",
                if *rows == Rows::Pre { "out" } else { "in" },
                if *replace {
                    "with replacement"
                } else {
                    "without replacement"
                },
                if *allow_self {
                    ""
                } else {
                    ", no self-connections"
                }
            ),
        }
    }

    /// The draws (see `crate::connect`) and the float64 logarithm of the skipping.
    fn write_stream(&self, w: &mut SourceWriter) -> fmt::Result {
        let q = self.dialect.inline_fn();
        let (to_bits, from_bits) = match self.dialect {
            Dialect::Cuda => (
                "const uint64_t w0 = (uint64_t) __double_as_longlong(u);",
                "double m = __longlong_as_double((long long) ((w0 & 0x000fffffffffffffull) | 0x3ff0000000000000ull));",
            ),
            Dialect::C => (
                "uint64_t w0;\n    memcpy(&w0, &u, 8);",
                "const uint64_t wm = (w0 & 0x000fffffffffffffull) | 0x3ff0000000000000ull;\n    double m;\n    memcpy(&m, &wm, 8);",
            ),
        };
        let spacing = literal(TWO_POW_M53, ElemType::F64);
        writeln!(
            w,
            "/* Draw d of row: 64 random bits of Philox4x32-10, key (seed, stream), counter (row, d, tag). */
{q} uint64_t sf_bits(uint32_t k0, uint32_t k1, int64_t row, uint64_t d) {{
    uint32_t c[4] = {{(uint32_t) row, (uint32_t) d, (uint32_t) (d >> 32), {COUNTER_TAG:#010X}u}};
    sf_philox(c, k0, k1);
    return ((uint64_t) c[0] << 32) | c[1];
}}
/* Uniform in [0, 1) and in (0, 1], from 53 of the bits. */
{q} double sf_uniform(uint64_t w) {{ return (double) (w >> 11) * {spacing}; }}
{q} double sf_uniform_open(uint64_t w) {{ return (double) ((w >> 11) + 1) * {spacing}; }}
/* floor(w * bound / 2^64), for bound < 2^32: an integer in [0, bound). */
{q} uint64_t sf_below(uint64_t w, uint64_t bound) {{
    return ((w >> 32) * bound + (((w & 0xffffffffull) * bound) >> 32)) >> 32;
}}
/* ln(u) for u in (0, 1] from correctly rounded operations only: u = (1 + f) 2^e with 1 + f in
   (sqrt(1/2), sqrt(2)], s = f / (2 + f), ln(1 + f) = 2 atanh(s) = f - f^2/2 + s (f^2/2 + R(s^2)),
   summed so that the error stays within an ulp. */
{q} double sf_ln(double u) {{
    {to_bits}
    int e = (int) ((w0 >> 52) & 0x7ff) - 1023;
    {from_bits}
    if (m > {sqrt2}) {{
        m = m * 0.5;
        e += 1;
    }}
    const double f = m - 1.0;
    const double s = f / (2.0 + f);
    const double z = s * s;
    double r = {last};",
            sqrt2 = literal(std::f64::consts::SQRT_2, ElemType::F64),
            last = literal(2.0 / f64::from(2 * LOG_TERMS + 1), ElemType::F64),
        )?;
        w.indented(|w| {
            for k in (1..LOG_TERMS).rev() {
                let c = literal(2.0 / f64::from(2 * k + 1), ElemType::F64);
                writeln!(w, "r = fma(r, z, {c});")?;
            }
            writeln!(w, "r = r * z;")?;
            writeln!(w, "const double hfsq = 0.5 * (f * f);")?;
            writeln!(w, "const double de = (double) e;")?;
            writeln!(
                w,
                "return de * {} - ((hfsq - (s * (hfsq + r) + de * {})) - f);",
                literal(LN2_HI, ElemType::F64),
                literal(LN2_LO, ElemType::F64)
            )
        })?;
        writeln!(w, "}}")
    }

    /// `sf_connect_row`: the row's count, and its targets written to `out[pos..end)` when `out`
    /// is not null.
    fn write_row(&self, w: &mut SourceWriter) -> fmt::Result {
        writeln!(
            w,
            "/* Row `row`: returns its number of synapses (or a negative error code) and, when out is not\n   null, writes its targets to out[pos..end). */"
        )?;
        let head = format!(
            "{} int64_t sf_connect_row(int64_t row, int64_t n_pre, int64_t n_post, int64_t self_offset,\n    uint32_t k0, uint32_t k1, const double* pre, const double* post, int32_t* out, int64_t pos,\n    int64_t end)",
            self.dialect.inline_fn()
        );
        w.block(head, |w| match &self.ir.rule {
            RuleIr::Pairs(pairs) => self.write_pairs(w, pairs),
            RuleIr::Degree(degree) => self.write_degree(w, degree),
        })
    }

    fn write_pairs(&self, w: &mut SourceWriter, pairs: &PairsIr) -> fmt::Result {
        let PairsIr { p, allow_self, .. } = *pairs;
        writeln!(
            w,
            "(void) n_pre; (void) self_offset; (void) pre; (void) post;"
        )?;
        if p == Probability::Never {
            writeln!(w, "(void) row; (void) n_post; (void) k0; (void) k1; (void) out; (void) pos; (void) end;")?;
            return writeln!(w, "return 0;");
        }
        writeln!(w, "const double sf_i = (double) row;")?;
        writeln!(
            w,
            "const double sf_n_pre = (double) n_pre, sf_n_post = (double) n_post;"
        )?;
        writeln!(w, "(void) sf_i; (void) sf_n_pre;")?;
        for k in 0..self.ir.pre_variables.len() {
            writeln!(w, "const double sf_pre{k} = pre[{k} * n_pre + row];")?;
        }
        if !allow_self {
            writeln!(w, "const int64_t self_j = row + self_offset;")?;
        }
        writeln!(w, "int64_t count = 0;")?;
        let body = |w: &mut SourceWriter| self.write_pair_body(w, pairs);
        match p {
            Probability::Constant(p) => {
                let log_q = literal((-p).ln_1p(), ElemType::F64);
                writeln!(
                    w,
                    "/* Geometric skipping: the gap before the next candidate is floor(ln u / ln(1 - p)). */"
                )?;
                writeln!(w, "double sf_at = -1.0;")?;
                w.block("for (uint64_t d = 0;; ++d)", |w| {
                    writeln!(
                        w,
                        "sf_at += floor(sf_ln(sf_uniform_open(sf_bits(k0, k1, row, d))) / {log_q}) + 1.0;"
                    )?;
                    writeln!(w, "if (!(sf_at < sf_n_post)) break;")?;
                    writeln!(w, "const int64_t j = (int64_t) sf_at;")?;
                    body(w)
                })?;
            }
            _ => {
                writeln!(w, "(void) k0; (void) k1;")?;
                w.block("for (int64_t j = 0; j < n_post; ++j)", body)?;
            }
        }
        writeln!(w, "return count;")
    }

    /// One candidate pair `(row, j)`: condition, probability, multiplicity, emit.
    fn write_pair_body(&self, w: &mut SourceWriter, pairs: &PairsIr) -> fmt::Result {
        let PairsIr {
            condition,
            p,
            n,
            allow_self,
        } = *pairs;
        if !allow_self {
            writeln!(w, "if (j == self_j) continue;")?;
        }
        writeln!(w, "const double sf_j = (double) j;")?;
        writeln!(w, "(void) sf_j;")?;
        for k in 0..self.ir.post_variables.len() {
            writeln!(w, "const double sf_post{k} = post[{k} * n_post + j];")?;
        }
        let mut roots = Vec::new();
        roots.extend(condition);
        if let Probability::PerPair(e) = p {
            roots.push(e);
        }
        if let Multiplicity::PerPair(e) = n {
            roots.push(e);
        }
        let names = |v: crate::ir::VarId| match self.ir.value(v) {
            Value::Index(IndexOf::Pre) => "sf_i".to_string(),
            Value::Index(IndexOf::Post) => "sf_j".to_string(),
            Value::Count(IndexOf::Pre) => "sf_n_pre".to_string(),
            Value::Count(IndexOf::Post) => "sf_n_post".to_string(),
            Value::PreVariable(k) => format!("sf_pre{k}"),
            Value::PostVariable(k) => format!("sf_post{k}"),
            other => unreachable!("{other:?} is not read while connecting"),
        };
        let printer = Printer {
            arena: &self.ir.arena,
            dtype: ElemType::F64,
            dialect: self.dialect,
            var_name: &names,
        };
        let mut texts = printer.block(&roots, "sf_t", w)?.into_iter();
        if condition.is_some() {
            let text = texts.next().expect("one text per root");
            writeln!(w, "if (!({text})) continue;")?;
        }
        if let Probability::PerPair(_) = p {
            let text = texts.next().expect("one text per root");
            writeln!(w, "const double sf_p = {text};")?;
            writeln!(
                w,
                "if (!(sf_p >= 0.0 && sf_p <= 1.0)) return {};",
                ErrorCode::BadProbability.code()
            )?;
            writeln!(
                w,
                "if (sf_p < 1.0 && !(sf_uniform(sf_bits(k0, k1, row, (uint64_t) j)) < sf_p)) continue;"
            )?;
        }
        match n {
            Multiplicity::Constant(n) => writeln!(w, "const int64_t sf_k = {n};")?,
            Multiplicity::PerPair(_) => {
                let text = texts.next().expect("one text per root");
                writeln!(w, "const double sf_n = {text};")?;
                writeln!(
                    w,
                    "if (!(sf_n >= 0.0 && sf_n <= {} && sf_n == floor(sf_n))) return {};",
                    literal(crate::connect::lower::MAX_PER_ROW as f64, ElemType::F64),
                    ErrorCode::BadMultiplicity.code()
                )?;
                writeln!(w, "const int64_t sf_k = (int64_t) sf_n;")?;
            }
        }
        writeln!(
            w,
            "if (out) for (int64_t c = 0; c < sf_k && pos < end; ++c) out[pos++] = (int32_t) j;"
        )?;
        writeln!(w, "count += sf_k;")
    }

    fn write_degree(&self, w: &mut SourceWriter, degree: &DegreeIr) -> fmt::Result {
        let DegreeIr {
            rows,
            k,
            replace,
            allow_self,
        } = *degree;
        let (population, own) = match rows {
            Rows::Pre => ("n_post", "row + self_offset"),
            Rows::Post => ("n_pre", "row - self_offset"),
        };
        writeln!(w, "(void) pre; (void) post;")?;
        writeln!(
            w,
            "/* {k} draws from the {population} neurons of the other side. */"
        )?;
        writeln!(w, "const int64_t population = {population};")?;
        if allow_self {
            writeln!(w, "(void) self_offset;")?;
            writeln!(w, "const int64_t own = -1, excluded = 0;")?;
        } else {
            writeln!(
                w,
                "/* The row's own neuron, excluded from the draws when it is there. */"
            )?;
            writeln!(w, "const int64_t own = {own};")?;
            writeln!(
                w,
                "const int64_t excluded = own >= 0 && own < population ? 1 : 0;"
            )?;
        }
        writeln!(w, "const int64_t m = population - excluded;")?;
        writeln!(w, "const int64_t k = {k};")?;
        if k > 0 {
            writeln!(w, "if (m <= 0) return {};", ErrorCode::NothingToDraw.code())?;
        }
        if !replace {
            writeln!(w, "if (k > m) return {};", ErrorCode::DegreeTooLarge.code())?;
        }
        writeln!(w, "if (!out || end - pos < k) return k;")?;
        writeln!(w, "int32_t* s = out + pos;")?;
        if replace {
            w.block("for (int64_t t = 0; t < k; ++t)", |w| {
                writeln!(
                    w,
                    "const int64_t v = (int64_t) sf_below(sf_bits(k0, k1, row, (uint64_t) t), (uint64_t) m);"
                )?;
                writeln!(w, "s[t] = (int32_t) (excluded && v >= own ? v + 1 : v);")
            })?;
        } else {
            writeln!(
                w,
                "/* Floyd's algorithm: draw t is below top + 1 = m - k + t + 1; s[0..t) stays sorted. */"
            )?;
            w.block("for (int64_t t = 0; t < k; ++t)", |w| {
                writeln!(w, "const int64_t top = m - k + t;")?;
                writeln!(
                    w,
                    "const int64_t r = (int64_t) sf_below(sf_bits(k0, k1, row, (uint64_t) t), (uint64_t) (top + 1));"
                )?;
                writeln!(w, "int64_t lo = 0, hi = t;")?;
                w.block("while (lo < hi)", |w| {
                    writeln!(w, "const int64_t mid = lo + (hi - lo) / 2;")?;
                    writeln!(w, "if (s[mid] < r) lo = mid + 1; else hi = mid;")
                })?;
                w.block("if (lo < t && s[lo] == r)", |w| {
                    writeln!(w, "s[t] = (int32_t) top; /* above every value drawn so far */")
                })?;
                w.block("else", |w| {
                    writeln!(w, "for (int64_t q = t; q > lo; --q) s[q] = s[q - 1];")?;
                    writeln!(w, "s[lo] = (int32_t) r;")
                })
            })?;
            if !allow_self {
                writeln!(
                    w,
                    "if (excluded) for (int64_t t = 0; t < k; ++t) if (s[t] >= own) s[t] += 1;"
                )?;
            }
        }
        writeln!(w, "return k;")
    }

    fn write_entries(&self, w: &mut SourceWriter) -> fmt::Result {
        let r = self.dialect.restrict();
        match self.dialect {
            Dialect::C => write!(
                w,
                "
/* Rows [r0, r1); sizes = (n_pre, n_post, self_offset). */
void {ENTRY_COUNT}(int64_t r0, int64_t r1, const int64_t* sizes, const uint32_t* key,
                      const double* pre, const double* post, int64_t* {r} counts) {{
    for (int64_t row = r0; row < r1; ++row)
        counts[row] = sf_connect_row(row, sizes[0], sizes[1], sizes[2], key[0], key[1], pre, post,
                                     (int32_t*) 0, 0, 0);
}}

/* Rows [r0, r1), each into targets[offsets[row]..offsets[row + 1]) (offsets checked by the caller). */
void {ENTRY_FILL}(int64_t r0, int64_t r1, const int64_t* sizes, const uint32_t* key,
                     const double* pre, const double* post, const int64_t* offsets,
                     int32_t* targets) {{
    for (int64_t row = r0; row < r1; ++row)
        (void) sf_connect_row(row, sizes[0], sizes[1], sizes[2], key[0], key[1], pre, post,
                              targets, offsets[row], offsets[row + 1]);
}}
"
            ),
            Dialect::Cuda => write!(
                w,
                "
static __device__ __forceinline__ int64_t sf_clamp(int64_t v, int64_t lo, int64_t hi) {{
    return v < lo ? lo : (v > hi ? hi : v);
}}

/* One thread per row (a grid-stride loop). */
extern \"C\" __global__ void __launch_bounds__({CUDA_BLOCK}) {ENTRY_COUNT}(
    int64_t n_rows, int64_t n_pre, int64_t n_post, int64_t self_offset,
    const uint32_t* {r} key, const double* {r} pre, const double* {r} post,
    int64_t* {r} counts) {{
    const uint32_t k0 = key[0], k1 = key[1];
    for (int64_t row = (int64_t) blockIdx.x * blockDim.x + threadIdx.x; row < n_rows;
         row += (int64_t) gridDim.x * blockDim.x)
        counts[row] = sf_connect_row(row, n_pre, n_post, self_offset, k0, k1, pre, post,
                                     (int32_t*) 0, 0, 0);
}}

/* Each row into its slice of targets; offsets are clamped to [0, n_syn], so even corrupt
   offsets cannot make a thread write outside targets. */
extern \"C\" __global__ void __launch_bounds__({CUDA_BLOCK}) {ENTRY_FILL}(
    int64_t n_rows, int64_t n_pre, int64_t n_post, int64_t self_offset, int64_t n_syn,
    const uint32_t* {r} key, const double* {r} pre, const double* {r} post,
    const int64_t* {r} offsets, int32_t* {r} targets) {{
    const uint32_t k0 = key[0], k1 = key[1];
    for (int64_t row = (int64_t) blockIdx.x * blockDim.x + threadIdx.x; row < n_rows;
         row += (int64_t) gridDim.x * blockDim.x) {{
        const int64_t begin = sf_clamp(offsets[row], 0, n_syn);
        const int64_t end = sf_clamp(offsets[row + 1], begin, n_syn);
        (void) sf_connect_row(row, n_pre, n_post, self_offset, k0, k1, pre, post, targets,
                              begin, end);
    }}
}}
"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connect::{lower, ConnectSpec};

    fn source(json: &str, dialect: Dialect) -> String {
        let (ir, _) = lower(&ConnectSpec::from_json(json).unwrap()).unwrap();
        generate(&ir, dialect)
    }

    #[test]
    fn every_rule_generates_both_entries_in_both_dialects() {
        for json in [
            r#"{"rule": {"kind": "pairs", "p": 0.02}}"#,
            r#"{"rule": {"kind": "pairs", "condition": "i != j", "p": "exp(-abs(x_pre - x_post))", "n": "1 + i % 2"}, "pre_variables": ["x"], "post_variables": ["x"]}"#,
            r#"{"rule": {"kind": "pairs", "p": 0}}"#,
            r#"{"rule": {"kind": "fixed_out_degree", "k": 80, "allow_self": false}}"#,
            r#"{"rule": {"kind": "fixed_in_degree", "k": 5, "replace": false}}"#,
        ] {
            for dialect in [Dialect::C, Dialect::Cuda] {
                let src = source(json, dialect);
                assert!(
                    src.contains(ENTRY_COUNT) && src.contains(ENTRY_FILL),
                    "{json}"
                );
                assert!(src.contains("sf_philox"), "{json}");
            }
        }
    }

    #[test]
    fn ln2_splits_exactly() {
        assert_eq!(LN2_HI.to_bits() & 0x1F_FFFF, 0, "21 trailing zero bits");
        assert_eq!(LN2_HI + LN2_LO, std::f64::consts::LN_2);
    }

    #[test]
    fn constant_p_skips_and_an_expression_draws_per_pair() {
        let src = source(r#"{"rule": {"kind": "pairs", "p": 0.25}}"#, Dialect::C);
        assert!(src.contains("sf_at += floor(sf_ln("), "{src}");
        // ln(1 - 0.25), printed exactly.
        assert!(src.contains(&literal((-0.25f64).ln_1p(), ElemType::F64)));
        let src = source(
            r#"{"rule": {"kind": "pairs", "p": "j / N_post"}}"#,
            Dialect::C,
        );
        assert!(
            src.contains("for (int64_t j = 0; j < n_post; ++j)"),
            "{src}"
        );
        assert!(src.contains("sf_uniform(sf_bits(k0, k1, row, (uint64_t) j)) < sf_p"));
    }
}
