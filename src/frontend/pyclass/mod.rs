//! The model-class front end (`neural` / NeuroDriver style): a class's `ode()` method, in the
//! Python subset `parse` reads, with the events given beside the class, -> a
//! [`GroupIr`](crate::ir::GroupIr) whose dynamics are explicit updates (`lower`).

pub mod lower;
pub mod parse;

pub use lower::lower;
