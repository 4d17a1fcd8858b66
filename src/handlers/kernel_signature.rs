//! The declared parameters of a user's CUDA kernel, read from its source, so that a plan can be
//! checked against them before anything runs: a `float32` buffer handed to a kernel declared
//! `const unsigned char*` is an error naming the parameter, the buffer and both types, not a
//! kernel reading garbage.
//!
//! This is a small scanner, not a C++ parser: it finds `NAME(` in the source with comments,
//! strings and preprocessor lines blanked out, preceded within its declaration by `__global__`,
//! and splits the text between the parentheses at top-level commas. A kernel it cannot find (a
//! name spelled by a macro, say) is not checked; a parameter type it does not know (`void*`, a
//! typedef, a template parameter, a vector type) accepts any buffer.

use crate::xla::DataType;

/// One parameter as declared: its text and, for a pointer, the dtypes it may receive
/// (`None`: a pointer to a type this module does not know, so anything goes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Param {
    /// The declaration as written, whitespace collapsed: `const unsigned char* spikes`.
    pub text: String,
    pub pointer: Option<Option<&'static [DataType]>>,
}

impl Param {
    pub fn is_pointer(&self) -> bool {
        self.pointer.is_some()
    }

    /// Whether a buffer of `dtype` may be passed (always, for a pointer to an unknown type).
    pub fn accepts(&self, dtype: DataType) -> bool {
        match self.pointer {
            Some(Some(types)) => types.contains(&dtype),
            _ => true,
        }
    }
}

/// The parameters of the `__global__` function `name` in `source`, if it is declared there in a
/// form this scanner reads.
pub fn kernel_params(source: &str, name: &str) -> Option<Vec<Param>> {
    let code = blank_comments_strings_and_directives(source);
    let bytes = code.as_bytes();
    let mut from = 0;
    while let Some(found) = code[from..].find(name) {
        let start = from + found;
        let end = start + name.len();
        from = end;
        let before_ok = start == 0 || !is_ident(bytes[start - 1]);
        let after = code[end..].trim_start();
        if !before_ok || !after.starts_with('(') || code[end..].starts_with(is_ident_char) {
            continue;
        }
        // The declaration starts after the previous `;`, `{` or `}`.
        let head_start = code[..start].rfind([';', '{', '}']).map_or(0, |i| i + 1);
        let head = &code[head_start..start];
        if !head
            .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
            .any(|w| w == "__global__")
        {
            continue;
        }
        let open = end + (code[end..].len() - after.len());
        let close = matching_paren(bytes, open)?;
        return Some(split_params(&code[open + 1..close]));
    }
    None
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The index of the `)` closing the `(` at `open`.
fn matching_paren(bytes: &[u8], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, &b) in bytes.iter().enumerate().skip(open) {
        match b {
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// Splits a parameter list at commas outside parentheses, brackets and angle brackets.
fn split_params(list: &str) -> Vec<Param> {
    let mut params = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in list.char_indices() {
        match c {
            '(' | '[' | '<' => depth += 1,
            ')' | ']' | '>' => depth -= 1,
            ',' if depth == 0 => {
                params.push(param(&list[start..i]));
                start = i + 1;
            }
            _ => {}
        }
    }
    let last = &list[start..];
    if !(params.is_empty() && (last.trim().is_empty() || last.trim() == "void")) {
        params.push(param(last));
    }
    params
}

/// Words that qualify a type without changing what it points to.
const QUALIFIERS: [&str; 7] = [
    "const",
    "volatile",
    "__restrict__",
    "restrict",
    "__restrict",
    "struct",
    "__grid_constant__",
];

fn param(text: &str) -> Param {
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let pointer = text.find('*').map(|star| {
        let words: Vec<&str> = text[..star]
            .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
            .filter(|w| !w.is_empty() && !QUALIFIERS.contains(w))
            .collect();
        element_types(&words.join(" "))
    });
    Param { text, pointer }
}

/// The dtypes a pointer to `ty` may receive, for the C and CUDA types that name one (LP64).
fn element_types(ty: &str) -> Option<&'static [DataType]> {
    use DataType::*;
    Some(match ty {
        "float" => &[F32],
        "double" => &[F64],
        "__half" | "half" => &[F16],
        "__nv_bfloat16" | "nv_bfloat16" => &[BF16],
        "bool" => &[Pred, U8],
        // Byte buffers: JAX's bool is one byte holding 0 or 1.
        "unsigned char" | "uint8_t" => &[U8, Pred],
        "char" => &[S8, U8, Pred],
        "signed char" | "int8_t" => &[S8],
        "short" | "short int" | "signed short" | "signed short int" | "int16_t" => &[S16],
        "unsigned short" | "unsigned short int" | "uint16_t" => &[U16],
        "int" | "signed" | "signed int" | "int32_t" => &[S32],
        "unsigned" | "unsigned int" | "uint32_t" => &[U32],
        "long"
        | "long int"
        | "signed long"
        | "long long"
        | "long long int"
        | "signed long long"
        | "signed long long int"
        | "int64_t"
        | "ptrdiff_t" => &[S64],
        "unsigned long"
        | "unsigned long int"
        | "unsigned long long"
        | "unsigned long long int"
        | "uint64_t"
        | "size_t" => &[U64],
        _ => return None,
    })
}

/// The source with comments, string and character literals and preprocessor lines replaced by
/// spaces (byte offsets and newlines kept), so that the scanner only sees code.
fn blank_comments_strings_and_directives(source: &str) -> String {
    let b = source.as_bytes();
    let mut out = b.to_vec();
    let mut i = 0;
    let mut line_start = true;
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for c in &mut out[from..to] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    while i < b.len() {
        let c = b[i];
        if line_start && c == b'#' {
            // A directive runs to the end of the line, continued by backslash-newlines.
            let mut j = i;
            while j < b.len() && !(b[j] == b'\n' && (j == 0 || b[j - 1] != b'\\')) {
                j += 1;
            }
            blank(&mut out, i, j);
            i = j;
            continue;
        }
        if c == b'\n' {
            line_start = true;
            i += 1;
            continue;
        }
        if !c.is_ascii_whitespace() {
            line_start = false;
        }
        if c == b'/' && b.get(i + 1) == Some(&b'/') {
            let j = b[i..]
                .iter()
                .position(|&c| c == b'\n')
                .map_or(b.len(), |p| i + p);
            blank(&mut out, i, j);
            i = j;
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let j = source[i + 2..]
                .find("*/")
                .map_or(b.len(), |p| i + 2 + p + 2);
            blank(&mut out, i, j);
            i = j;
        } else if c == b'"' || c == b'\'' {
            let mut j = i + 1;
            while j < b.len() && b[j] != c && b[j] != b'\n' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            let j = (j + 1).min(b.len());
            // `extern "C"` keeps its meaning without the quotes' contents.
            blank(&mut out, i, j);
            i = j;
        } else {
            i += 1;
        }
    }
    String::from_utf8(out).expect("only ASCII bytes were replaced, by ASCII spaces")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_global_kernels_and_types_their_pointers() {
        let src = r#"
            // void decoy(float* x);  a comment
            #define N 3
            __device__ float helper(const float* p) { return p[0]; }
            extern "C" __global__ void __launch_bounds__(256) count(
                const unsigned char* __restrict__ spikes,   /* one byte each */
                float *out, void* anything, const my_t* custom, long long n) {
                out[0] = helper((const float*)anything) + spikes[0];
            }
        "#;
        let params = kernel_params(src, "count").expect("found");
        assert_eq!(params.len(), 5);
        assert_eq!(params[0].text, "const unsigned char* __restrict__ spikes");
        assert!(params[0].accepts(DataType::U8) && params[0].accepts(DataType::Pred));
        assert!(!params[0].accepts(DataType::F32));
        assert!(params[1].accepts(DataType::F32) && !params[1].accepts(DataType::F64));
        assert!(params[2].accepts(DataType::F64), "void* accepts anything");
        assert!(
            params[3].accepts(DataType::S8),
            "an unknown typedef accepts anything"
        );
        assert!(!params[4].is_pointer());
        assert_eq!(kernel_params(src, "helper"), None, "not __global__");
        assert_eq!(kernel_params(src, "decoy"), None, "commented out");
        assert_eq!(kernel_params(src, "coun"), None, "whole names only");
    }

    #[test]
    fn integer_spellings_map_to_their_widths() {
        let cases = [
            ("int", DataType::S32),
            ("unsigned int", DataType::U32),
            ("long long", DataType::S64),
            ("unsigned long long", DataType::U64),
            ("int64_t", DataType::S64),
            ("short", DataType::S16),
            ("double", DataType::F64),
            ("__half", DataType::F16),
            ("__nv_bfloat16", DataType::BF16),
            ("bool", DataType::Pred),
        ];
        for (ty, dtype) in cases {
            let src = format!("extern \"C\" __global__ void k(const {ty} *x) {{}}");
            let params = kernel_params(&src, "k").unwrap();
            assert!(params[0].accepts(dtype), "{ty}");
            assert!(!params[0].accepts(DataType::C64), "{ty}");
        }
        assert_eq!(
            kernel_params("extern \"C\" __global__ void k(void) {}", "k"),
            Some(vec![])
        );
    }
}
