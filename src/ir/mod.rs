//! The intermediate representation every front end lowers to and every back end reads: one
//! hash-consed expression DAG ([`expr`]) and the group built on it ([`group`]); a synapse group
//! ([`synapses`]) and a network of groups and projections ([`network`]) built from groups; with
//! the rewrites that act on them ([`derivative`], [`rewrite`]), an evaluator over many elements
//! ([`eval`]) and the way back to the source text ([`spans`]). Data and rewrites only: no
//! parsing (`crate::frontend`), no step semantics (`crate::step`), no printing
//! (`crate::codegen`).

pub mod derivative;
pub mod eval;
pub mod expr;
pub mod group;
pub mod network;
pub mod rewrite;
pub mod spans;
pub mod synapses;

pub use expr::{BinOp, ExprArena, ExprId, Func, Node, Ty, VarId};
pub use group::{
    Bookkeeping, Draw, Dynamics, Events, GroupIr, IndexOf, RefractoryIr, StateEq, Symbol,
    SymbolKind, Update, ValueType,
};
pub use spans::{Site, SourceSpan, SpanTable};
