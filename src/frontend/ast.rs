//! Syntax trees produced by the text front ends, before names are resolved.

use crate::diagnostics::Span;

#[derive(Clone, Debug, PartialEq)]
pub enum Ast {
    Num(f64, Span),
    Bool(bool, Span),
    Name(String, Span),
    Unary(UnaryOp, Box<Ast>, Span),
    Binary(BinaryOp, Box<Ast>, Box<Ast>, Span),
    Call(String, Vec<Ast>, Span),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnaryOp {
    Neg,
    Not,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
    And,
    Or,
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
