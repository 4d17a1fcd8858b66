//! How a model's names are spelled in generated code: [`ident`], an injective map from the
//! names a model may have to C identifiers that cannot mean anything else in either dialect.
//!
//! A name reaches generated code as a local (`v`, or the lane array `v[SF_LANES]`), inside the
//! names derived from it (`in_v`, `out_v`, `sf_next_v`, `sf_rec_v`, ...), and nowhere else (the
//! front ends fold constants, units and `dt` into literals). Lowering checks that every such
//! name is an identifier of the model language ([`crate::spec::names`]: ASCII letters, digits
//! and `_`, not starting with a digit, at most 64 characters). Such a name is
//! printed as itself when it is *plain*, and as `sf_u_<name>` otherwise:
//!
//! * a keyword of C (C89 to C23, GNU), C++ (to C++20, with the alternative tokens `and`, `xor`,
//!   ...) or CUDA; a type the kernels or their headers name (`int32_t`, `float4`, `dim3`, ...);
//!   a macro of the headers the kernels include or of the compilers (`NAN`, `INFINITY`,
//!   `INT32_MAX`, `isnan`, `true`, `linux`, ...); a function of the math library in any
//!   precision (`exp`, `expf`, `powf`, `j0`, `rsqrt`, ...); CUDA's built-in variables
//!   (`threadIdx`, ...);
//! * a name with a prefix the generated code uses for its own names or derives from others:
//!   `sf_`, `SF_` (the kernel's own locals, helpers and macros), `in_`, `out_` (every buffer
//!   argument is `in_<ident>` / `out_<ident>`, so a user's `in_v` would be the argument of `v`),
//!   `_` (reserved to the implementation in C and C++).
//!
//! Why this cannot collide: a plain name never starts with `sf_`, so it differs from every
//! mangled name (all of which start with `sf_u_`) and from every name the kernel makes for
//! itself (all of which start with `sf_`, `SF_`, `in_` or `out_`, none with `sf_u_` or
//! `sf_x_`); two mangled names differ because their suffixes do. Mangling keeps
//! `exp` and `exp_` apart (`sf_u_exp`, `exp_`), where the old suffix scheme gave both `exp_`.
//! The names derived from an identifier (`sf_next_<ident>`, ...) differ from each other and from
//! the kernel's own names by their prefixes, which the printers keep distinct.
//!
//! A name that is not an identifier at all cannot reach this point; if one did (a bug in
//! validation), [`ident`] would still print only `[A-Za-z0-9_]`: `sf_x_` and the hexadecimal
//! bytes of the name.

use std::collections::HashSet;
use std::sync::LazyLock;

use crate::spec::names::is_identifier;

/// The prefix of a user's name that is not plain.
pub const MANGLED_PREFIX: &str = "sf_u_";

/// The prefix of the (never expected) escaped form of a string that is not an identifier.
const ESCAPED_PREFIX: &str = "sf_x_";

/// Prefixes of names the generated code makes for itself or derives from a model's names.
const RESERVED_PREFIXES: &[&str] = &["sf_", "SF_", "in_", "out_", "_"];

/// Keywords of C (C89 to C23, with GNU's), C++ (to C++20, alternative tokens and contextual
/// keywords included) and CUDA that do not start with an underscore (those are covered by the
/// `_` prefix).
#[rustfmt::skip]
const KEYWORDS: &[&str] = &[
    // C
    "alignas", "alignof", "asm", "auto", "bool", "break", "case", "char", "const", "constexpr",
    "continue", "default", "do", "double", "else", "enum", "extern", "false", "float", "for",
    "fortran", "goto", "if", "inline", "int", "long", "nullptr", "register", "restrict",
    "return", "short", "signed", "sizeof", "static", "static_assert", "struct", "switch",
    "thread_local", "true", "typedef", "typeof", "typeof_unqual", "union", "unsigned", "void",
    "volatile", "while",
    // C++
    "and", "and_eq", "atomic_cancel", "atomic_commit", "atomic_noexcept", "bitand", "bitor",
    "catch", "char8_t", "char16_t", "char32_t", "class", "compl", "concept", "consteval",
    "constinit", "const_cast", "co_await", "co_return", "co_yield", "decltype", "delete",
    "dynamic_cast", "explicit", "export", "final", "friend", "import", "module", "mutable",
    "namespace", "new", "noexcept", "not", "not_eq", "operator", "or", "or_eq", "override",
    "private", "protected", "public", "reflexpr", "reinterpret_cast", "requires",
    "static_cast", "synchronized", "template", "this", "throw", "transaction_safe",
    "transaction_safe_dynamic", "try", "typeid", "typename", "using", "virtual", "wchar_t",
    "xor", "xor_eq",
];

/// Types the kernels use or their headers (C's `<stdint.h>`, `<stddef.h>`; NVRTC's built-ins)
/// declare, besides CUDA's vector types (see [`is_cuda_vector_type`]).
#[rustfmt::skip]
const TYPES: &[&str] = &[
    "int8_t", "int16_t", "int32_t", "int64_t", "uint8_t", "uint16_t", "uint32_t", "uint64_t",
    "int_least8_t", "int_least16_t", "int_least32_t", "int_least64_t", "uint_least8_t",
    "uint_least16_t", "uint_least32_t", "uint_least64_t", "int_fast8_t", "int_fast16_t",
    "int_fast32_t", "int_fast64_t", "uint_fast8_t", "uint_fast16_t", "uint_fast32_t",
    "uint_fast64_t", "intptr_t", "uintptr_t", "intmax_t", "uintmax_t", "size_t", "ssize_t",
    "ptrdiff_t", "max_align_t", "nullptr_t", "wint_t", "float_t", "double_t", "dim3", "half",
    "half2", "nv_bfloat16", "nv_bfloat162", "cudaError_t", "cudaStream_t", "std",
];

/// Macros of the headers the kernels include (`<math.h>`, `<stdint.h>`, `<stdbool.h>`), of the
/// compilers in their GNU modes, of the generated code, and a few common ones of other
/// headers (a user's `CC` or flags may pull more in).
#[rustfmt::skip]
const MACROS: &[&str] = &[
    "NAN", "INFINITY", "HUGE_VAL", "HUGE_VALF", "HUGE_VALL", "FP_NAN", "FP_INFINITE", "FP_ZERO",
    "FP_SUBNORMAL", "FP_NORMAL", "FP_FAST_FMA", "FP_FAST_FMAF", "FP_FAST_FMAL", "FP_ILOGB0",
    "FP_ILOGBNAN", "MATH_ERRNO", "MATH_ERREXCEPT", "math_errhandling", "fpclassify",
    "isfinite", "isinf", "isnan", "isnormal", "signbit", "isgreater", "isgreaterequal",
    "isless", "islessequal", "islessgreater", "isunordered", "issignaling", "iscanonical",
    "issubnormal", "iszero", "M_E", "M_LOG2E", "M_LOG10E", "M_LN2", "M_LN10", "M_PI", "M_PI_2",
    "M_PI_4", "M_1_PI", "M_2_PI", "M_2_SQRTPI", "M_SQRT2", "M_SQRT1_2", "INT8_MIN", "INT8_MAX",
    "INT16_MIN", "INT16_MAX", "INT32_MIN", "INT32_MAX", "INT64_MIN", "INT64_MAX", "UINT8_MAX",
    "UINT16_MAX", "UINT32_MAX", "UINT64_MAX", "INT8_C", "INT16_C", "INT32_C", "INT64_C",
    "UINT8_C", "UINT16_C", "UINT32_C", "UINT64_C", "INTMAX_C", "UINTMAX_C", "INTMAX_MIN",
    "INTMAX_MAX", "UINTMAX_MAX", "INTPTR_MIN", "INTPTR_MAX", "UINTPTR_MAX", "PTRDIFF_MIN",
    "PTRDIFF_MAX", "SIZE_MAX", "SIG_ATOMIC_MIN", "SIG_ATOMIC_MAX", "WCHAR_MIN", "WCHAR_MAX",
    "WINT_MIN", "WINT_MAX", "INT_LEAST8_MIN", "INT_LEAST8_MAX", "INT_LEAST16_MIN",
    "INT_LEAST16_MAX", "INT_LEAST32_MIN", "INT_LEAST32_MAX", "INT_LEAST64_MIN",
    "INT_LEAST64_MAX", "UINT_LEAST8_MAX", "UINT_LEAST16_MAX", "UINT_LEAST32_MAX",
    "UINT_LEAST64_MAX", "INT_FAST8_MIN", "INT_FAST8_MAX", "INT_FAST16_MIN", "INT_FAST16_MAX",
    "INT_FAST32_MIN", "INT_FAST32_MAX", "INT_FAST64_MIN", "INT_FAST64_MAX", "UINT_FAST8_MAX",
    "UINT_FAST16_MAX", "UINT_FAST32_MAX", "UINT_FAST64_MAX", "CHAR_BIT", "CHAR_MIN",
    "CHAR_MAX", "SCHAR_MIN", "SCHAR_MAX", "UCHAR_MAX", "SHRT_MIN", "SHRT_MAX", "USHRT_MAX",
    "INT_MIN", "INT_MAX", "UINT_MAX", "LONG_MIN", "LONG_MAX", "ULONG_MAX", "LLONG_MIN",
    "LLONG_MAX", "ULLONG_MAX", "FLT_MIN", "FLT_MAX", "FLT_EPSILON", "DBL_MIN", "DBL_MAX",
    "DBL_EPSILON", "NULL", "EOF", "errno", "assert", "offsetof", "stdin", "stdout", "stderr",
    "linux", "unix", "i386", "noreturn", "complex", "imaginary",
];

/// Functions of the math library (C99 to C23 and GNU's), named without a precision suffix:
/// `exp` stands for `exp`, `expf` and `expl` (see [`is_math_function`]). With CUDA's device
/// functions and a few other functions kernels may call.
#[rustfmt::skip]
const MATH_FUNCTIONS: &[&str] = &[
    "acos", "acosh", "acospi", "asin", "asinh", "asinpi", "atan", "atan2", "atan2pi", "atanh",
    "atanpi", "cbrt", "ceil", "compound", "copysign", "cos", "cosh", "cospi", "drem", "erf",
    "erfc", "erfcinv", "erfcx", "erfinv", "exp", "exp10", "exp10m1", "exp2", "exp2m1", "expm1",
    "fabs", "fdim", "fdivide", "finite", "floor", "fma", "fmax", "fmaximum", "fmaximum_mag",
    "fmaximum_num", "fmin", "fminimum", "fminimum_mag", "fminimum_num", "fmod", "frexp",
    "fromfp", "gamma", "hypot", "ilogb", "j0", "j1", "jn", "ldexp", "lgamma", "llogb", "llrint",
    "llround", "log", "log10", "log10p1", "log1p", "log2", "log2p1", "logb", "logp1", "lrint",
    "lround", "modf", "nan", "nearbyint", "nextafter", "nextdown", "nexttoward", "nextup",
    "norm", "norm3d", "norm4d", "normcdf", "normcdfinv", "pow", "pow10", "pown", "powr",
    "rcbrt", "remainder", "remquo", "rhypot", "rint", "rnorm", "rnorm3d", "rnorm4d", "rootn",
    "round", "roundeven", "rsqrt", "scalb", "scalbln", "scalbn", "significand", "sin",
    "sincos", "sincospi", "sinh", "sinpi", "sqrt", "tan", "tanh", "tanpi", "tgamma", "trunc",
    "ufromfp", "y0", "y1", "yn", "abs", "labs", "llabs", "min", "max", "umin", "umax", "llmin",
    "llmax", "ullmin", "ullmax", "saturate", "printf", "malloc", "free", "memcpy", "memset",
    "cyl_bessel_i0", "cyl_bessel_i1",
];

/// CUDA's built-in variables.
const CUDA_BUILTINS: &[&str] = &["threadIdx", "blockIdx", "blockDim", "gridDim", "warpSize"];

static RESERVED: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    [KEYWORDS, TYPES, MACROS, CUDA_BUILTINS]
        .into_iter()
        .flatten()
        .copied()
        .collect()
});

/// `exp`, `expf`, `expl` and the like, and the `f`/`l` forms of the `M_` constants.
fn is_math_function(name: &str) -> bool {
    let base = |n: &str| MATH_FUNCTIONS.contains(&n) || MACROS.contains(&n);
    base(name) || name.strip_suffix(['f', 'l']).is_some_and(base)
}

/// CUDA's vector types: `char1` .. `ulonglong4`, `float1` .. `double4`.
fn is_cuda_vector_type(name: &str) -> bool {
    let Some(stem) = name.strip_suffix(['1', '2', '3', '4']) else {
        return false;
    };
    let stem = stem.strip_prefix('u').unwrap_or(stem);
    [
        "char", "short", "int", "long", "longlong", "float", "double",
    ]
    .contains(&stem)
}

/// Whether `name` (an identifier) must be mangled: see the module documentation.
pub fn is_reserved(name: &str) -> bool {
    RESERVED.contains(name)
        || RESERVED_PREFIXES.iter().any(|p| name.starts_with(p))
        || is_math_function(name)
        || is_cuda_vector_type(name)
}

/// The identifier a model's name gets in generated code: the name itself when it is plain,
/// `sf_u_<name>` when it is reserved (see the module documentation).
pub fn ident(name: &str) -> String {
    if !is_identifier(name) {
        // Validation refuses such names; should one slip through, it still prints as an
        // identifier that cannot mean anything else.
        let hex: String = name.bytes().map(|b| format!("{b:02x}")).collect();
        return format!("{ESCAPED_PREFIX}{hex}");
    }
    if is_reserved(name) {
        format!("{MANGLED_PREFIX}{name}")
    } else {
        name.to_string()
    }
}

/// Every name [`is_reserved`] lists one by one (keywords, types, macros, math functions in
/// each precision, CUDA's built-ins and vector types), for tests that compile them all.
pub fn listed_reserved_names() -> Vec<String> {
    let mut out: Vec<String> = RESERVED.iter().map(|s| s.to_string()).collect();
    for f in MATH_FUNCTIONS {
        out.extend([f.to_string(), format!("{f}f"), format!("{f}l")]);
    }
    for stem in [
        "char", "short", "int", "long", "longlong", "float", "double",
    ] {
        for k in 1..=4 {
            out.push(format!("{stem}{k}"));
            if !["float", "double"].contains(&stem) {
                out.push(format!("u{stem}{k}"));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_print_as_themselves() {
        for name in [
            "v", "I", "tau_w", "g_Na", "v_t", "N0", "expo", "x2", "a__b", "input",
        ] {
            assert_eq!(ident(name), name);
        }
    }

    #[test]
    fn reserved_names_are_prefixed_and_never_collide() {
        assert_eq!(ident("exp"), "sf_u_exp");
        assert_eq!(ident("exp_"), "exp_");
        for name in [
            "NAN",
            "INFINITY",
            "int32_t",
            "SF_LANES",
            "powf",
            "xor",
            "throw",
            "nullptr",
            "typename",
            "virtual",
            "float4",
            "ulonglong2",
            "threadIdx",
            "linux",
            "in_v",
            "out_v",
            "sf_t",
            "_x",
            "__global__",
            "expm1l",
            "M_PIf",
        ] {
            assert!(is_reserved(name), "{name}");
            assert_eq!(ident(name), format!("sf_u_{name}"));
        }
        let mut names = listed_reserved_names();
        names.extend(["exp_", "u_exp", "sf_u_exp", "sfu_exp", "v", "sf_v"].map(String::from));
        let idents: HashSet<String> = names.iter().map(|n| ident(n)).collect();
        assert_eq!(idents.len(), names.len(), "mangling is injective");
        for (name, id) in names.iter().zip(names.iter().map(|n| ident(n))) {
            // Plain names never start with the generated code's prefix; mangled ones do.
            assert_eq!(id.starts_with("sf_"), is_reserved(name), "{name} -> {id}");
        }
    }

    #[test]
    fn what_is_not_an_identifier_is_escaped() {
        for bad in [
            "y; extern int system(const char*); //",
            "vé",
            "2v",
            "",
            "a\nb",
        ] {
            let id = ident(bad);
            assert!(id.starts_with("sf_x_"), "{id}");
            assert!(id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        }
        assert_ne!(ident("a;"), ident("sf_x_613b"));
    }
}
