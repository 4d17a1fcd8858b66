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

/// The IR operator of a syntax tree's binary operator (both front ends share the syntax tree's).
impl From<BinaryOp> for BinOp {
    fn from(op: BinaryOp) -> BinOp {
        match op {
            BinaryOp::Add => BinOp::Add,
            BinaryOp::Sub => BinOp::Sub,
            BinaryOp::Mul => BinOp::Mul,
            BinaryOp::Div => BinOp::Div,
            BinaryOp::Mod => BinOp::Mod,
            BinaryOp::Pow => BinOp::Pow,
            BinaryOp::Lt => BinOp::Lt,
            BinaryOp::Le => BinOp::Le,
            BinaryOp::Gt => BinOp::Gt,
            BinaryOp::Ge => BinOp::Ge,
            BinaryOp::Eq => BinOp::Eq,
            BinaryOp::Ne => BinOp::Ne,
            BinaryOp::And => BinOp::And,
            BinaryOp::Or => BinOp::Or,
        }
    }
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
