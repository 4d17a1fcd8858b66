//! Front ends: user text -> syntax trees with located diagnostics.
//!
//! Every front end ends in the same place, the IR (`crate::ir`); this folder only parses.

pub mod ast;
pub mod brian;
pub mod lexer;
pub mod parser;
pub mod python_ode;
pub mod units;
