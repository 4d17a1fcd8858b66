//! Element types: the one list of the scalar types spikeforge computes in, stores and exchanges.
//!
//! A model computes in `float32` or `float64` ([`ElemType::F32`], [`ElemType::F64`]) and may store
//! its real buffers in 16 bits ([`ElemType::F16`], [`ElemType::BF16`]); kernel buffers also hold
//! `int32` counters, `bool` flags and `uint8` counts (the refractory steps left at a gradient's
//! checkpoint); reductions read and write all but `uint8` and read all but `int64`. Each type knows its
//! name as numpy spells it (the spelling of the spec's JSON and of the Python side), its C
//! spelling in generated code and its size. XLA's own list, `crate::xla::DataType`, converts to
//! and from this one in `crate::xla` (written once).

use std::fmt;

use serde::{Deserialize, Serialize};

/// The type of one element of an array, or of a value in a kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ElemType {
    #[serde(rename = "bool")]
    Bool,
    #[serde(rename = "uint8")]
    U8,
    #[serde(rename = "int32")]
    I32,
    #[serde(rename = "int64")]
    I64,
    #[serde(rename = "float16")]
    F16,
    #[serde(rename = "bfloat16")]
    BF16,
    #[serde(rename = "float32")]
    F32,
    #[serde(rename = "float64")]
    F64,
}

impl ElemType {
    pub const ALL: [ElemType; 8] = [
        ElemType::Bool,
        ElemType::U8,
        ElemType::I32,
        ElemType::I64,
        ElemType::F16,
        ElemType::BF16,
        ElemType::F32,
        ElemType::F64,
    ];

    /// The types a model computes in (the spec's `dtype`).
    pub const PRECISIONS: [ElemType; 2] = [ElemType::F32, ElemType::F64];

    /// The 16-bit types real buffers may be stored in (the spec's `storage`); arithmetic on
    /// them is float32.
    pub const STORAGES: [ElemType; 2] = [ElemType::F16, ElemType::BF16];

    /// The name as numpy spells it (`float32`, `bfloat16`, ...).
    pub fn name(self) -> &'static str {
        match self {
            ElemType::Bool => "bool",
            ElemType::U8 => "uint8",
            ElemType::I32 => "int32",
            ElemType::I64 => "int64",
            ElemType::F16 => "float16",
            ElemType::BF16 => "bfloat16",
            ElemType::F32 => "float32",
            ElemType::F64 => "float64",
        }
    }

    pub fn from_name(name: &str) -> Option<ElemType> {
        ElemType::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            ElemType::Bool | ElemType::U8 => 1,
            ElemType::F16 | ElemType::BF16 => 2,
            ElemType::I32 | ElemType::F32 => 4,
            ElemType::I64 | ElemType::F64 => 8,
        }
    }

    pub fn is_float(self) -> bool {
        matches!(
            self,
            ElemType::F16 | ElemType::BF16 | ElemType::F32 | ElemType::F64
        )
    }

    /// The C type of a buffer element in generated code (both dialects). The 16-bit floats are
    /// their bit patterns (`uint16_t`), converted by the kernel's own helpers: no headers.
    pub fn c_type(self) -> &'static str {
        match self {
            ElemType::Bool => "bool",
            ElemType::U8 => "uint8_t",
            ElemType::I32 => "int32_t",
            ElemType::I64 => "int64_t",
            ElemType::F16 | ElemType::BF16 => "uint16_t",
            ElemType::F32 => "float",
            ElemType::F64 => "double",
        }
    }
}

impl fmt::Display for ElemType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sizes_and_json_agree() {
        for t in ElemType::ALL {
            assert_eq!(ElemType::from_name(t.name()), Some(t));
            assert_eq!(
                serde_json::to_string(&t).unwrap(),
                format!("\"{}\"", t.name())
            );
            assert_eq!(t.to_string(), t.name());
        }
        assert_eq!(ElemType::BF16.size(), 2);
        assert_eq!(ElemType::F64.c_type(), "double");
        assert!(ElemType::PRECISIONS.iter().all(|t| t.is_float()));
        assert_eq!(ElemType::from_name("float65"), None);
    }
}
