//! The grammar generated source must stay inside, whatever the spec: a small tokenizer over a
//! kernel's source that accepts only what the printers write.
//!
//! The fixed parts of a kernel (the helper functions, the noise generator, the 16-bit storage
//! conversions, the includes and typedefs) do not depend on the spec: they are removed first,
//! by exact match. What remains is read token by token: comments, the two pragmas the printers
//! write, the string `"C"` of `extern "C"`, numbers, the operators and punctuation of C, and
//! identifiers, each of which must be
//!
//! * a word of C or CUDA the kernel printer writes ([`C_WORDS`]) or a math function it calls;
//! * a name the generated code makes for itself: `sf_` and more (never `sf_x_`, the escape of a
//!   name that is no identifier), `SF_LANES`;
//! * a name of the lowered group, as the printers spell it: the name itself where it is plain,
//!   and only then, or `sf_u_` and the name where it is reserved; with `in_` / `out_` in front
//!   for a buffer.
//!
//! Anything else (a keyword or macro that a name became, a character of a payload, `inf` from a
//! literal) is an error naming the token and its line.

use std::collections::HashSet;

use crate::codegen::clock::clock_source;
use crate::codegen::identifiers::{is_reserved, MANGLED_PREFIX};
use crate::codegen::printer::{int32_conversion, math_fn, prelude, storage_conversions};
use crate::codegen::random::stream_source;
use crate::codegen::Dialect;
use crate::frontend::brian::expr::FUNCTIONS;
use crate::ir::{Func, GroupIr};
use crate::spec::ModelSpec;
use crate::types::ElemType;

/// Words of C and CUDA the kernel printer writes.
pub const C_WORDS: &[&str] = &[
    "const",
    "float",
    "double",
    "int",
    "int32_t",
    "int64_t",
    "uint16_t",
    "uint32_t",
    "uint64_t",
    "bool",
    "true",
    "false",
    "for",
    "if",
    "return",
    "void",
    "extern",
    "restrict",
    "__restrict__",
    "__global__",
    "blockIdx",
    "blockDim",
    "threadIdx",
    "x",
    "else",
    "SF_NEVER",
    "__atomic_fetch_add",
    "__ATOMIC_RELAXED",
    "unsigned",
    "long",
    "atomicAdd",
    "SF_LANES",
];

/// Lines the printers write that start with `#`, outside the fixed parts.
const DIRECTIVES: &[&str] = &[
    "#pragma omp simd",
    "#pragma omp simd reduction(+:sf_n_spiked)",
    "#pragma unroll 4",
    "#pragma unroll 8",
];

/// The math functions the printers may call, in both precisions.
fn math_functions() -> HashSet<String> {
    let mut out = HashSet::new();
    let names = FUNCTIONS
        .iter()
        .filter_map(|f| Func::from_name(f))
        .map(Func::c_name)
        .chain(["pow", "fmin", "fmax", "fabs", "exp2", "floor"]);
    for name in names {
        for precision in [ElemType::F32, ElemType::F64] {
            out.insert(math_fn(name, precision));
        }
    }
    out
}

/// The parts of a kernel that do not depend on its names (functions of the dialect, the
/// precision, `dt` and the storage type only), removed before the check: the helpers the
/// group kernel's printer may write before its entry point, as `group_kernel` writes them.
fn fixed_parts(spec: &ModelSpec, dialect: Dialect) -> Vec<String> {
    let mut parts = vec![
        prelude(dialect, spec.dtype),
        int32_conversion(dialect, spec.dtype),
        clock_source(dialect, spec.dt, spec.dtype),
        stream_source(dialect, spec.dt, spec.dtype),
    ];
    if let Some(storage) = spec.storage {
        parts.push(storage_conversions(dialect, storage));
    }
    parts.push(crate::codegen::group_kernel::includes(dialect));
    parts
}

/// Checks `source`, generated for `spec` (lowered to `ir`) in `dialect`, against the grammar
/// above: the first token outside it, with its line.
pub fn check_source(
    source: &str,
    ir: &GroupIr,
    spec: &ModelSpec,
    dialect: Dialect,
) -> Result<(), String> {
    if let Some(c) = source
        .chars()
        .find(|c| !(c.is_ascii_graphic() || c.is_ascii_whitespace()))
    {
        return Err(format!("a character outside printable ASCII: {c:?}"));
    }
    let mut text = source.to_string();
    for part in fixed_parts(spec, dialect) {
        if !part.is_empty() {
            text = text.replacen(&part, "\n", 1);
        }
    }
    let math = math_functions();
    // The group's names as the user wrote them.
    let raw: HashSet<&str> = ir
        .symbols
        .iter()
        .map(|s| s.name.as_str())
        .chain(spec.record.iter().map(String::as_str))
        .collect();
    let allowed = |word: &str| -> bool {
        if C_WORDS.contains(&word) || math.contains(word) {
            return true;
        }
        let bare = word
            .strip_prefix("in_")
            .or_else(|| word.strip_prefix("out_"))
            .unwrap_or(word);
        if bare.starts_with("sf_x_") {
            return false;
        }
        if let Some(name) = bare.strip_prefix(MANGLED_PREFIX) {
            return raw.contains(name) && is_reserved(name);
        }
        // The generated code's own names, and those it derives from the group's.
        bare.starts_with("sf_") || (raw.contains(bare) && !is_reserved(bare))
    };
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut line = 1;
    let mut at_line_start = true;
    while i < bytes.len() {
        let c = bytes[i] as char;
        if c == '\n' {
            line += 1;
            at_line_start = true;
            i += 1;
            continue;
        }
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let rest = &text[i..];
        if rest.starts_with("/*") {
            let end = rest
                .find("*/")
                .ok_or(format!("line {line}: an unclosed comment"))?;
            line += rest[..end].matches('\n').count();
            i += end + 2;
            continue;
        }
        if c == '#' {
            if !at_line_start {
                return Err(format!("line {line}: '#' inside a line"));
            }
            let end = rest.find('\n').unwrap_or(rest.len());
            let directive = rest[..end].trim_end();
            if !DIRECTIVES.contains(&directive) {
                return Err(format!("line {line}: the directive {directive:?}"));
            }
            i += end;
            continue;
        }
        at_line_start = false;
        if c == '"' {
            if rest.starts_with("\"C\"") {
                i += 3;
                continue;
            }
            return Err(format!(
                "line {line}: a string: {}",
                &rest[..rest.len().min(40)]
            ));
        }
        if c.is_ascii_alphabetic() || c == '_' {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            let word = &rest[..end];
            if !allowed(word) {
                return Err(format!("line {line}: the identifier '{word}'"));
            }
            i += end;
            continue;
        }
        if c.is_ascii_digit() || (c == '.' && rest[1..].starts_with(|d: char| d.is_ascii_digit())) {
            let end = number_end(rest).ok_or(format!(
                "line {line}: a malformed number: {}",
                &rest[..rest.len().min(30)]
            ))?;
            i += end;
            continue;
        }
        if "{}()[];,=+-*/%<>!&|?:.~^".contains(c) {
            i += 1;
            continue;
        }
        return Err(format!("line {line}: the character {c:?}"));
    }
    Ok(())
}

/// The length of the number at the start of `s` (decimal with an optional fraction, exponent
/// and `f`; an integer with an optional `u`, `LL` or `ull`; hexadecimal with an optional `u`), or
/// `None`.
fn number_end(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    if s.starts_with("0x") {
        i = 2;
        while i < b.len() && b[i].is_ascii_hexdigit() {
            i += 1;
        }
        if i < b.len() && b[i] == b'u' {
            i += 1;
        }
    } else {
        let digits = |i: &mut usize| {
            let start = *i;
            while *i < b.len() && b[*i].is_ascii_digit() {
                *i += 1;
            }
            *i > start
        };
        let int = digits(&mut i);
        let mut frac = false;
        if i < b.len() && b[i] == b'.' {
            i += 1;
            frac = digits(&mut i);
        }
        if !(int || frac) {
            return None;
        }
        if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
            i += 1;
            if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
                i += 1;
            }
            if !digits(&mut i) {
                return None;
            }
        }
        // A 64-bit integer literal (the clock's step counts, atomic increments).
        let long = ["LL", "ull"].iter().find(|x| s[i..].starts_with(**x));
        if let (Some(suffix), true, false) = (long, int, frac) {
            i += suffix.len();
        } else if i < b.len() && (b[i] == b'f' || b[i] == b'u') {
            i += 1;
        }
    }
    // A number runs into no identifier character.
    if i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
        return None;
    }
    Some(i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codegen::{generate, prepare};

    fn check(spec: &ModelSpec) -> Result<(), String> {
        let (ir, _) = prepare(spec).unwrap();
        for dialect in [Dialect::C, Dialect::Cuda] {
            check_source(&generate(&ir, spec, dialect).source, &ir, spec, dialect)?;
        }
        Ok(())
    }

    #[test]
    fn every_test_model_is_inside_the_grammar() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/models");
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let mut spec = ModelSpec::from_json(&std::fs::read_to_string(&path).unwrap()).unwrap();
            check(&spec).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            spec.fast_math = !spec.fast_math;
            check(&spec).unwrap_or_else(|e| panic!("{} (fast math): {e}", path.display()));
        }
    }

    #[test]
    fn what_a_payload_or_a_bad_literal_would_print_is_outside() {
        let spec = ModelSpec::from_equations("dv/dt = -v : 1", 0.1);
        let (ir, _) = prepare(&spec).unwrap();
        let ok = generate(&ir, &spec, Dialect::C).source;
        let bad = [
            ("sf_next_v =", "sf_next_v = system(\"x\") +"),
            ("* v[sf_l]", "* v[sf_l] * NAN"),
            ("0.1f", "inf.0f"),
            ("sf_next_v", "sf_x_3b"),
            ("sf_next_v =", "sf_next_v = 1; } int evil(void) { float a ="),
            ("v[sf_l] = sf_next_v", "v[sf_l] = sf_u_w"),
        ];
        for (from, to) in bad {
            let source = ok.replacen(from, to, 1);
            assert_ne!(source, ok, "{from}");
            let e = check_source(&source, &ir, &spec, Dialect::C).unwrap_err();
            assert!(e.starts_with("line "), "{e}");
        }
        check_source(&ok, &ir, &spec, Dialect::C).unwrap();
    }
}
