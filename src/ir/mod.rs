//! The intermediate representation shared by every front end and back end.

pub mod derivative;
pub mod expr;
pub mod model;
pub mod python_model;
pub mod rewrite;

pub use expr::{BinOp, ExprArena, ExprId, Func, Node, Ty, VarId};
pub use model::{lower, NeuronIr, RefractoryIr, StateEq, Symbol, SymbolKind};
