//! The one conversion between spikeforge's element types ([`ElemType`]) and XLA's
//! ([`DataType`]), which XLA's list (31 types) covers.

use super::safe::DataType;
use crate::types::ElemType;

impl From<ElemType> for DataType {
    fn from(t: ElemType) -> DataType {
        match t {
            ElemType::Bool => DataType::Pred,
            ElemType::U8 => DataType::U8,
            ElemType::I32 => DataType::S32,
            ElemType::I64 => DataType::S64,
            ElemType::F16 => DataType::F16,
            ElemType::BF16 => DataType::BF16,
            ElemType::F32 => DataType::F32,
            ElemType::F64 => DataType::F64,
        }
    }
}

/// The element type of an XLA buffer, when spikeforge has one for it (else the XLA type back).
impl TryFrom<DataType> for ElemType {
    type Error = DataType;

    fn try_from(d: DataType) -> Result<ElemType, DataType> {
        ElemType::ALL
            .into_iter()
            .find(|t| DataType::from(*t) == d)
            .ok_or(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_agree_on_names_and_sizes() {
        for t in ElemType::ALL {
            let d = DataType::from(t);
            assert_eq!((d.name(), d.size_bytes()), (t.name(), t.size()));
            assert_eq!(ElemType::try_from(d), Ok(t));
        }
        assert_eq!(ElemType::try_from(DataType::U16), Err(DataType::U16));
    }
}
