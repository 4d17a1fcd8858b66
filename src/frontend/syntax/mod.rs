//! The expression language both front ends share: Python-like tokens ([`lexer`]), a
//! recursive-descent parser of expressions and assignment statements ([`parser`]), their syntax
//! trees ([`ast`], whose operators the `ode()` parser uses too) and unit names ([`units`]).
//! Brian2's fields are written in it (equation right-hand sides, threshold, reset, refractory),
//! and so are the events given beside a model class.

pub mod ast;
pub mod lexer;
pub mod parser;
pub mod units;
