//! The Brian2 front end: equation strings, with the threshold, reset and refractory period
//! beside them, -> [`GroupIr`](crate::ir::GroupIr).
//!
//! [`equations`] parses the equation lines; `expr` lowers Brian2-syntax expressions given how
//! names resolve; `events` lowers the threshold, reset and refractory period (for model
//! classes too); `lower` builds the group; `method` points at the term that stops a scheme.

pub mod equations;
pub(crate) mod events;
pub(crate) mod expr;
pub mod lower;
mod method;
pub mod synapses;
pub mod tables;

pub use lower::{lower, lower_with_tables};
