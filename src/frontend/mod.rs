//! Front ends: what the user wrote -> one [`GroupIr`], or the first mistake, located in the text
//! ([`Diagnostic`]).
//!
//! Each front end lowers in its own folder: [`brian`] (Brian2 equation strings) and [`pyclass`]
//! (a model class's `ode()` method); both write their events (threshold, reset, refractory) in
//! Brian2's syntax and share its expression language ([`syntax`]). The integration scheme is
//! resolved once, while lowering, and stored in the group. [`initial`] lowers and evaluates
//! initial values given as expressions against a lowered group; [`network`] lowers a network's
//! groups and projections. Lowering runs on a stack of its own (`stack`), so that the recursions
//! the limits of the language bound fit whatever thread calls.

pub mod brian;
mod builder;
pub mod initial;
mod method;
pub mod network;
pub mod pyclass;
mod stack;
mod synapse_dynamics;
pub mod syntax;

pub use brian::tables::TableRef;
pub use builder::BUILTIN_NAMES;

/// The most variables one model may store (its states; a model class's internals too). Each is
/// a lane array the C kernel keeps across its step loop, and GCC's register allocation time
/// grows steeply with them: about 20 s for 100 on the project's machine, and 300 coupled ones
/// did not finish in 5 minutes.
pub const MAX_STORED: usize = 128;

/// The error for a model with `count` stored variables, past [`MAX_STORED`].
pub(crate) fn too_many_stored(field: &str, count: usize) -> Diagnostic {
    Diagnostic::new(
        field,
        format!("the model has {count} state variables; one kernel holds at most {MAX_STORED}"),
    )
    .suggest("split the population into several models")
}

use crate::diagnostics::Diagnostic;
use crate::ir::GroupIr;
use crate::spec::{names, Dynamics, ModelSpec};
use crate::types::ElemType;

/// Lowers a spec to its group, reporting the first error with its place.
pub fn lower(spec: &ModelSpec) -> Result<GroupIr, Diagnostic> {
    lower_with_tables(spec, &[])
}

/// [`lower`], where Brian2 expressions may also call the TimedArrays `tables` (a network's).
pub fn lower_with_tables(spec: &ModelSpec, tables: &[TableRef]) -> Result<GroupIr, Diagnostic> {
    stack::on_own_stack(|| lower_here(spec, tables))
}

/// [`lower_with_tables`] on the calling thread's stack.
fn lower_here(spec: &ModelSpec, tables: &[TableRef]) -> Result<GroupIr, Diagnostic> {
    spec.check_sizes()?;
    check_numbers(spec)?;
    spec.check_names()?;
    let ir = match &spec.dynamics {
        Dynamics::Equations(text) => brian::lower_with_tables(spec, text, tables)?,
        Dynamics::ModelClass(class) => pyclass::lower(spec, class)?,
    };
    check_symbol_names(&ir)?;
    if spec.record_spikes && ir.events.threshold.is_none() {
        return Err(Diagnostic::new(
            "record_spikes",
            "recording spikes needs a threshold: without one the group never spikes",
        ));
    }
    if spec.record_spike_train && ir.events.threshold.is_none() {
        return Err(Diagnostic::new(
            "record_spike_train",
            "a spike train needs a threshold: without one the group never spikes",
        ));
    }
    Ok(ir)
}

/// Every symbol of a lowered group has a valid name: the front ends check each where it is
/// defined, with its place; this is the net under them, since these names reach generated code.
pub(crate) fn check_symbol_names(ir: &GroupIr) -> Result<(), Diagnostic> {
    match ir.symbols.iter().find_map(|s| names::invalid(&s.name)) {
        Some(message) => Err(Diagnostic::new("model", message)),
        None => Ok(()),
    }
}

/// The step and the element types, whatever the dynamics.
fn check_numbers(spec: &ModelSpec) -> Result<(), Diagnostic> {
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
    spec.check_numbers()
}
