//! The random streams of `crate::random`, printed for the kernels: Philox4x32-10 keyed by the
//! seed and the run's `dt`, counted by (element, step, draw index), and the uniform and normal
//! transforms, operation for operation as `crate::random` computes them in Rust.
//!
//! A counter-based generator needs no state: the number an element draws at a step is a pure
//! function of (seed, dt, element, step, k), so CPU and GPU runs, batch layouts and split runs
//! all see the same numbers. The uniforms are exact, and the Box-Muller transform uses only
//! correctly rounded operations (multiply, add, divide, square root, fused multiply-add) through
//! macros that forbid contraction, with its own logarithm and sine/cosine polynomials, so the
//! normals are bit-identical on the CPU and the GPU and to `crate::random::normal` (outside fast
//! math, which may reassociate).

use super::dialect::Dialect;
use crate::ir::{Draw, GroupIr, SymbolKind, VarId};
use crate::random::{step_key, STEP_DOMAIN};
use crate::types::ElemType;

/// The printed function and the draw index (`GroupIr::stream_draws`) of the random number `v`
/// of a group's step (a noise symbol or a call of `rand()` / `randn()`): what the group kernel
/// and the network's step printer call with their own element and step.
pub fn draw_parts(ir: &GroupIr, v: VarId) -> (&'static str, u32) {
    let k = ir
        .stream_draws()
        .into_iter()
        .find(|(d, _)| *d == v)
        .map(|(_, k)| k)
        .expect("a draw of the group");
    let function = match ir.symbol(v).kind {
        SymbolKind::Random(Draw::Uniform) => "sf_uniform",
        _ => "sf_normal",
    };
    (function, k)
}

/// Philox4x32-10 for one dialect: `sf_philox(c, k0, k1)` turns the counter `c` into four
/// random words in place. Every stream of the library (noise here, connectivity in
/// `connect_kernel`) calls this one function, with its own key and counter layout.
pub fn philox_source(dialect: Dialect) -> String {
    let q = dialect.inline_fn();
    let unroll = match dialect {
        Dialect::Cuda => "#pragma unroll",
        Dialect::C => "#pragma GCC unroll 10",
    };
    format!(
        r#"{q} uint32_t sf_mulhilo(uint32_t a, uint32_t b, uint32_t* hi) {{
    const uint64_t p = (uint64_t) a * (uint64_t) b;
    *hi = (uint32_t) (p >> 32);
    return (uint32_t) p;
}}
{q} void sf_philox(uint32_t c[4], uint32_t k0, uint32_t k1) {{
    {unroll}
    for (int r = 0; r < 10; ++r) {{
        uint32_t hi0, hi1;
        const uint32_t lo0 = sf_mulhilo(0xD2511F53u, c[0], &hi0);
        const uint32_t lo1 = sf_mulhilo(0xCD9E8D57u, c[2], &hi1);
        const uint32_t n0 = hi1 ^ c[1] ^ k0, n2 = hi0 ^ c[3] ^ k1;
        c[0] = n0; c[1] = lo1; c[2] = n2; c[3] = lo0;
        k0 += 0x9E3779B9u; k1 += 0xBB67AE85u;
    }}
}}
"#
    )
}

/// The generator and everything the network kernels draw with, for a network of step `dt` and
/// `precision`: the groups' streams (`stream_source`: noise, `rand()`, `randn()`), and the
/// network's own streams, counted by (element, step, draw, stream) under the same key: exact
/// uniforms (24 bits for float32, 53 for float64) and exact binomial counts.
pub fn network_source(dialect: Dialect, dt: f64, precision: ElemType) -> String {
    let q = dialect.inline_fn();
    let key = step_key(dt);
    let dops = match dialect {
        Dialect::Cuda => "#define SF_DMUL(a, b) __dmul_rn(a, b)\n#define SF_DADD(a, b) __dadd_rn(a, b)\n#define SF_DDIV(a, b) __ddiv_rn(a, b)\n",
        Dialect::C => "#define SF_DMUL(a, b) ((a) * (b))\n#define SF_DADD(a, b) ((a) + (b))\n#define SF_DDIV(a, b) ((a) / (b))\n",
    };
    let mut out = stream_source(dialect, dt, precision);
    out.push_str(dops);
    out.push_str(&format!(
        r#"/* Uniforms of stream `stream`: counter (element, step, draw, stream), 24 or 53 exact bits. */
{q} float sf_uniform24(uint32_t seed, uint32_t stream, uint32_t element, uint32_t step, uint32_t draw) {{
    uint32_t c[4] = {{element, step, draw, stream}};
    sf_philox(c, seed, 0x{key:08X}u);
    return (float) (c[0] >> 8) * 5.9604645e-8f;
}}
{q} double sf_uniform53(uint32_t seed, uint32_t stream, uint32_t element, uint32_t step, uint32_t draw) {{
    uint32_t c[4] = {{element, step, draw, stream}};
    sf_philox(c, seed, 0x{key:08X}u);
    return ((double) (c[0] >> 5) * 67108864.0 + (double) (c[1] >> 6)) * 1.1102230246251565e-16;
}}
/* Binomial(n, p), exactly, by inversion in float64 (correctly rounded, uncontracted operations, so
   CPU and GPU agree): n is split into chunks of mean at most 16 events, each drawn from its own
   uniform: P(0) = (1-p)^m by squaring, P(k+1) = P(k) (m-k)/(k+1) p/(1-p). */
{q} uint32_t sf_binomial(uint32_t seed, uint32_t stream, uint32_t element, uint32_t step, uint32_t n, double p) {{
    if (!(p > 0.0) || n == 0u) return 0u;
    if (p >= 1.0) return n;
    const double q = SF_DADD(1.0, -p);
    const double ratio = SF_DDIV(p, q);
    const double most = SF_DDIV(16.0, p);
    const uint32_t chunk = most >= (double) n ? n : (most < 1.0 ? 1u : (uint32_t) most);
    uint32_t total = 0u, draw = 0u;
    for (uint32_t left = n; left > 0u; ++draw) {{
        const uint32_t m = left < chunk ? left : chunk;
        left -= m;
        double pk = 1.0, base = q;
        for (uint32_t e = m; e > 0u; e >>= 1) {{
            if (e & 1u) pk = SF_DMUL(pk, base);
            if (e > 1u) base = SF_DMUL(base, base);
        }}
        const double u = sf_uniform53(seed, stream, element, step, draw);
        double cdf = pk;
        uint32_t k = 0u;
        while (u >= cdf && k < m) {{
            pk = SF_DMUL(pk, SF_DMUL(SF_DDIV((double) (m - k), (double) (k + 1u)), ratio));
            k += 1u;
            cdf = SF_DADD(cdf, pk);
        }}
        total += k;
    }}
    return total;
}}
"#
    ));
    out
}

/// The generator and the transforms, for one dialect, for the steps of a run with step `dt`:
/// `sf_normal(seed, element, step, k)` and `sf_uniform(...)` in the kernel's `precision` (a
/// float32 kernel gets no double arithmetic).
pub fn stream_source(dialect: Dialect, dt: f64, precision: ElemType) -> String {
    let q = dialect.inline_fn();
    let ops = match dialect {
        // Intrinsics with explicit rounding are never contracted into other operations.
        Dialect::Cuda => "#define SF_MUL(a, b) __fmul_rn(a, b)\n#define SF_ADD(a, b) __fadd_rn(a, b)\n#define SF_FMA(a, b, c) __fmaf_rn(a, b, c)\n#define SF_DIV(a, b) __fdiv_rn(a, b)\n#define SF_SQRT(a) __fsqrt_rn(a)\n",
        // ISO C mode (-std=c11) does not contract across statements or expressions.
        Dialect::C => "#define SF_MUL(a, b) ((a) * (b))\n#define SF_ADD(a, b) ((a) + (b))\n#define SF_FMA(a, b, c) fmaf(a, b, c)\n#define SF_DIV(a, b) ((a) / (b))\n#define SF_SQRT(a) sqrtf(a)\n",
    };
    let bits = match dialect {
        Dialect::Cuda => "__int_as_float((int) u)",
        Dialect::C => "sf_rng_bits(u)",
    };
    let bits_helper = match dialect {
        Dialect::Cuda => String::new(),
        Dialect::C => format!(
            "{q} float sf_rng_bits(uint32_t u) {{ union {{ float f; uint32_t u; }} x; x.u = u; return x.f; }}\n\
             {q} uint32_t sf_rng_ubits(float f) {{ union {{ float f; uint32_t u; }} x; x.f = f; return x.u; }}\n"
        ),
    };
    let ubits = match dialect {
        Dialect::Cuda => "(uint32_t) __float_as_int(m)",
        Dialect::C => "sf_rng_ubits(m)",
    };
    format!(
        r#"/* Random numbers: Philox4x32-10 keyed by (seed, dt), counted by (element, step, k); see src/random.rs. */
{ops}{bits_helper}{philox}/* ln(u) for u in (0, 1]: u = m 2^e, m in [1, 2); ln m = 2 atanh((m-1)/(m+1)). */
{q} float sf_rng_log(float u) {{
    const uint32_t w = {ubits_u};
    const int e = (int) ((w >> 23) & 0xffu) - 127;
    const float m = {bits_m};
    const float s = SF_DIV(SF_ADD(m, -1.0f), SF_ADD(m, 1.0f));
    const float s2 = SF_MUL(s, s);
    float p = 1.0f / 17.0f;
    p = SF_FMA(p, s2, 1.0f / 15.0f); p = SF_FMA(p, s2, 1.0f / 13.0f); p = SF_FMA(p, s2, 1.0f / 11.0f);
    p = SF_FMA(p, s2, 1.0f / 9.0f); p = SF_FMA(p, s2, 1.0f / 7.0f); p = SF_FMA(p, s2, 1.0f / 5.0f);
    p = SF_FMA(p, s2, 1.0f / 3.0f); p = SF_FMA(p, s2, 1.0f);
    return SF_FMA((float) e, 0.69314718f, SF_MUL(SF_MUL(2.0f, s), p));
}}
/* cos(2 pi x) for x in [0, 1): the quadrant exactly, then polynomials on [0, pi/2). */
{q} float sf_rng_cos_turns(float x) {{
    const float x4 = SF_MUL(x, 4.0f);
    const int quadrant = (int) x4;
    const float f = SF_MUL(SF_ADD(x4, -(float) quadrant), 1.57079637f);
    const float f2 = SF_MUL(f, f);
    float c = -1.0f / 87178291200.0f;
    c = SF_FMA(c, f2, 1.0f / 479001600.0f); c = SF_FMA(c, f2, -1.0f / 3628800.0f); c = SF_FMA(c, f2, 1.0f / 40320.0f);
    c = SF_FMA(c, f2, -1.0f / 720.0f); c = SF_FMA(c, f2, 1.0f / 24.0f); c = SF_FMA(c, f2, -0.5f); c = SF_FMA(c, f2, 1.0f);
    float s = -1.0f / 1307674368000.0f;
    s = SF_FMA(s, f2, 1.0f / 6227020800.0f); s = SF_FMA(s, f2, -1.0f / 39916800.0f); s = SF_FMA(s, f2, 1.0f / 362880.0f);
    s = SF_FMA(s, f2, -1.0f / 5040.0f); s = SF_FMA(s, f2, 1.0f / 120.0f); s = SF_FMA(s, f2, -1.0f / 6.0f); s = SF_FMA(s, f2, 1.0f);
    s = SF_MUL(s, f);
    return quadrant == 0 ? c : quadrant == 1 ? -s : quadrant == 2 ? -c : s;
}}
/* The words of draw k of `element` at `step` (the step's high word xored into the domain). */
{q} void sf_step_words(uint32_t c[4], uint32_t seed, uint32_t element, int64_t step, uint32_t k) {{
    c[0] = element; c[1] = (uint32_t) step; c[2] = k;
    c[3] = 0x{domain:08X}u ^ (uint32_t) ((uint64_t) step >> 32);
    sf_philox(c, seed, 0x{key:08X}u);
}}
/* Draw k of `element` at `step`: a standard normal (Box-Muller), a float32 or float64 uniform on [0, 1). */
{q} float sf_normal(uint32_t seed, uint32_t element, int64_t step, uint32_t k) {{
    uint32_t c[4];
    sf_step_words(c, seed, element, step, k);
    const float u1 = SF_MUL(SF_ADD((float) (c[0] >> 8), 0.5f), 5.9604645e-8f);
    const float u2 = SF_MUL((float) (c[1] >> 8), 5.9604645e-8f);
    return SF_MUL(SF_SQRT(SF_MUL(-2.0f, sf_rng_log(u1))), sf_rng_cos_turns(u2));
}}
{q} {real} sf_uniform(uint32_t seed, uint32_t element, int64_t step, uint32_t k) {{
    uint32_t c[4];
    sf_step_words(c, seed, element, step, k);
    return {uniform};
}}
"#,
        real = precision.c_type(),
        uniform = match precision {
            ElemType::F64 => "((double) (c[0] >> 5) * 67108864.0 + (double) (c[1] >> 6)) * (1.0 / 9007199254740992.0)",
            _ => "(float) (c[0] >> 8) * 5.9604645e-8f",
        },
        domain = STEP_DOMAIN,
        key = step_key(dt),
        philox = philox_source(dialect),
        ubits_u = ubits.replace('m', "u"),
        bits_m = bits.replace('u', "((w & 0x007fffffu) | 0x3f800000u)"),
    )
}
