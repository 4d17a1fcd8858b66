//! Front ends: what the user wrote -> one [`GroupIr`], or the first mistake, located in the text
//! ([`Diagnostic`]).
//!
//! Each front end lowers in its own folder: [`brian`] (Brian2 equation strings) and [`pyclass`]
//! (a model class's `ode()` method); both write their events (threshold, reset, refractory) in
//! Brian2's syntax and share its expression language ([`syntax`]). The integration scheme is
//! resolved once, while lowering, and stored in the group.

pub mod brian;
mod builder;
mod method;
pub mod network;
pub mod pyclass;
pub mod syntax;

pub use brian::tables::TableRef;
pub use builder::BUILTIN_NAMES;

use crate::diagnostics::Diagnostic;
use crate::ir::GroupIr;
use crate::spec::{Dynamics, ModelSpec};
use crate::types::ElemType;

/// Lowers a spec to its group, reporting the first error with its place.
pub fn lower(spec: &ModelSpec) -> Result<GroupIr, Diagnostic> {
    lower_with_tables(spec, &[])
}

/// [`lower`], where Brian2 expressions may also call the TimedArrays `tables` (a network's).
pub fn lower_with_tables(spec: &ModelSpec, tables: &[TableRef]) -> Result<GroupIr, Diagnostic> {
    check_numbers(spec)?;
    match &spec.dynamics {
        Dynamics::Equations(text) => brian::lower_with_tables(spec, text, tables),
        Dynamics::ModelClass(class) => pyclass::lower(spec, class),
    }
}

/// The step and the element types, whatever the dynamics.
fn check_numbers(spec: &ModelSpec) -> Result<(), Diagnostic> {
    if !(spec.dt.is_finite() && spec.dt > 0.0) {
        return Err(Diagnostic::new(
            "dt",
            format!("dt must be a positive number, got {}", spec.dt),
        ));
    }
    if !ElemType::PRECISIONS.contains(&spec.dtype) {
        return Err(Diagnostic::new(
            "dtype",
            format!("dtype must be float32 or float64, got {}", spec.dtype),
        ));
    }
    if let Some(storage) = spec.storage {
        if !ElemType::STORAGES.contains(&storage) {
            return Err(Diagnostic::new(
                "storage",
                format!("storage must be float16 or bfloat16, got {storage}"),
            ));
        }
        if spec.dtype != ElemType::F32 {
            return Err(Diagnostic::new(
                "dtype",
                "float16 / bfloat16 storage computes in float32: use dtype float32",
            ));
        }
    }
    Ok(())
}
