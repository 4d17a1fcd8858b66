//! Syntax trees of the expression language (Python-like operators) that Brian2's fields and a
//! model class's `ode()` share, before names are resolved.

use crate::diagnostics::Span;
use crate::ir::BinOp;

#[derive(Clone, Debug, PartialEq)]
pub enum Ast {
    Num(f64, Span),
    Bool(bool, Span),
    Name(String, Span),
    Unary(UnaryOp, Box<Ast>, Span),
    /// A binary operator, as the IR names it (the syntax has no operator the IR lacks).
    Binary(BinOp, Box<Ast>, Box<Ast>, Span),
    Call(String, Vec<Ast>, Span),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnaryOp {
    Neg,
    Not,
}

impl Ast {
    pub fn span(&self) -> Span {
        match self {
            Ast::Num(_, s) | Ast::Bool(_, s) | Ast::Name(_, s) => *s,
            Ast::Unary(_, _, s) | Ast::Binary(_, _, _, s) | Ast::Call(_, _, s) => *s,
        }
    }
}

/// How an assignment statement combines with the old value: `=`, `+=`, `-=`, `*=`, `/=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AssignOp {
    Set,
    Add,
    Sub,
    Mul,
    Div,
}

/// One statement of reset code: `target op value`.
#[derive(Clone, Debug, PartialEq)]
pub struct Assignment {
    pub target: String,
    pub target_span: Span,
    pub op: AssignOp,
    pub value: Ast,
}
