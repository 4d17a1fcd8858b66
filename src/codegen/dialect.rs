//! The two dialects generated code is written in, and every spelling in which they differ
//! (qualifiers, `restrict`, truth values and their operators, the CUDA side's integer types), in
//! one place: the printers ask the dialect, they do not test it.

use crate::types::ElemType;

/// CUDA C (compiled by NVRTC, one thread per element) or C (compiled by the system compiler,
/// vectorised across elements).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Cuda,
    C,
}

impl Dialect {
    pub fn restrict(self) -> &'static str {
        match self {
            Dialect::Cuda => "__restrict__",
            Dialect::C => "restrict",
        }
    }

    /// The type of a truth value inside kernels. C uses `int32_t`: GCC does not vectorise loops
    /// over `_Bool`, which has no vector type.
    pub fn bool_type(self) -> &'static str {
        match self {
            Dialect::Cuda => "bool",
            Dialect::C => "int32_t",
        }
    }

    /// Logical and of truth values. On 0/1 values C's `&` equals `&&` and needs no branch, so
    /// the loop stays vectorisable.
    pub fn and(self) -> &'static str {
        match self {
            Dialect::Cuda => "&&",
            Dialect::C => "&",
        }
    }

    /// Logical or of truth values (`|` in C, as [`Dialect::and`]).
    pub fn or(self) -> &'static str {
        match self {
            Dialect::Cuda => "||",
            Dialect::C => "|",
        }
    }

    /// A kernel's pointer parameter: `const T* restrict name` for an input (`writable` false),
    /// `T* restrict name` for an output.
    pub fn pointer_param(self, elem: ElemType, name: &str, writable: bool) -> String {
        let konst = if writable { "" } else { "const " };
        format!("{konst}{}* {} {name}", elem.c_type(), self.restrict())
    }

    /// Qualifiers for a small helper function in the generated file.
    pub fn inline_fn(self) -> &'static str {
        match self {
            Dialect::Cuda => "static __device__ __forceinline__",
            Dialect::C => "static inline",
        }
    }

    /// `typedef` lines for the fixed-width integer types `names` (`int32_t`, ...): NVRTC has no
    /// `<stdint.h>`. Nothing in C, whose files include it.
    pub fn integer_typedefs(self, names: &[&str]) -> String {
        if self == Dialect::C {
            return String::new();
        }
        names
            .iter()
            .map(|name| {
                let base = match *name {
                    "int8_t" => "signed char",
                    "uint8_t" => "unsigned char",
                    "uint16_t" => "unsigned short",
                    "int32_t" => "int",
                    "uint32_t" => "unsigned int",
                    "int64_t" => "long long",
                    "uint64_t" => "unsigned long long",
                    other => unreachable!("no typedef for {other}"),
                };
                format!("typedef {base} {name};\n")
            })
            .collect()
    }
}
