//! Brian2-syntax expressions -> IR nodes. How a name resolves depends on the group (an equation
//! model's parameters and subexpressions, a model class's states and internals): each lowering
//! context says it through [`Scope`]; the operators, the functions, the truth-value rules
//! (booleans and numbers are kept apart) and the names every group knows (`dt`, units) are here.

use super::tables::{lower_call, TableRef};
use crate::diagnostics::{nearest_names, Diagnostic, Span};
use crate::frontend::builder::MATH_CONSTANTS;
use crate::frontend::syntax::ast::{Ast, UnaryOp};
use crate::frontend::syntax::units::unit_value;
use crate::ir::{BinOp, Draw, ExprArena, ExprId, Func, Ty};
use crate::spec::numbers;
use crate::types::ElemType;

/// The deepest lowering may recurse: the height of an expression's syntax tree with the trees of
/// the subexpressions it uses substituted for their names (each syntax tree alone is at most
/// `MAX_HEIGHT` tall; a chain of subexpressions, each using the next, adds up).
pub const MAX_SUBSTITUTED_DEPTH: usize = 2000;

/// The functions Brian2-syntax expressions may call.
pub const FUNCTIONS: &[&str] = &[
    "exp", "log", "log10", "sqrt", "cbrt", "abs", "fabs", "sin", "cos", "tan", "tanh", "sinh",
    "cosh", "floor", "ceil", "pow", "min", "max", "clip", "where", "exprel", "int", "sign", "rand",
    "randn",
];

/// Where a piece of text was written: its span in `src`, the whole text of `field`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Place<'a> {
    pub field: &'a str,
    pub src: &'a str,
    pub span: Span,
}

impl Place<'_> {
    /// An error located here.
    pub fn error(&self, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(self.field, message).at(self.src, self.span)
    }
}

/// A place where Brian2-syntax expressions are lowered: the arena the nodes go to and what the
/// names mean there.
pub(crate) trait Scope {
    fn arena(&mut self) -> &mut ExprArena;

    /// The value of `name`, written `at`, and whether it is a number or a truth value; else an
    /// error that says what the name could have been.
    fn name(&mut self, name: &str, at: Place) -> Result<(ExprId, Ty), Diagnostic>;

    /// A new draw of `rand()` / `randn()` (a call written `at`), or why this place cannot draw:
    /// by default, it cannot (a place with a random stream of its own says how it draws).
    fn draw(&mut self, draw: Draw, at: Place) -> Result<ExprId, Diagnostic> {
        let name = match draw {
            Draw::Uniform => "rand",
            Draw::Normal => "randn",
        };
        Err(at.error(format!("{name}() cannot be used here")))
    }

    /// How deep [`Scope::expr`] is recursing now (through subexpressions too).
    fn depth(&mut self) -> &mut usize;

    /// The precision the kernel computes in: every number the text writes must fit it.
    fn precision(&self) -> ElemType;

    /// Lowers `ast` (written in `src`, the text of `field`): an error at `ast` past
    /// [`MAX_SUBSTITUTED_DEPTH`].
    fn expr(&mut self, ast: &Ast, field: &str, src: &str) -> Result<(ExprId, Ty), Diagnostic> {
        if *self.depth() >= MAX_SUBSTITUTED_DEPTH {
            return Err(Diagnostic::new(
                field,
                format!(
                    "with its subexpressions substituted, this expression is more than {MAX_SUBSTITUTED_DEPTH} operations deep"
                ),
            )
            .at(src, ast.span())
            .suggest("fewer subexpressions that each use the next"));
        }
        *self.depth() += 1;
        let out = self.expr_node(ast, field, src);
        *self.depth() -= 1;
        out
    }

    /// [`Scope::expr`] without the depth check.
    fn expr_node(&mut self, ast: &Ast, field: &str, src: &str) -> Result<(ExprId, Ty), Diagnostic> {
        Ok(match ast {
            Ast::Num(v, span) => {
                if let Some(why) = numbers::problem(*v, self.precision()) {
                    return Err(
                        Diagnostic::new(field, format!("the number {v:e} {why}")).at(src, *span)
                    );
                }
                (self.arena().constant(*v), Ty::Real)
            }
            Ast::Bool(b, _) => (self.arena().boolean(*b), Ty::Bool),
            Ast::Name(name, span) => {
                let at = Place {
                    field,
                    src,
                    span: *span,
                };
                let (e, ty) = self.name(name, at)?;
                // A unit, `dt` or a constant: a number of the text too.
                if let Some(v) = self.arena().as_const(e) {
                    if let Some(why) = numbers::problem(v, self.precision()) {
                        return Err(at.error(format!("'{name}' stands for {v:e}, which {why}")));
                    }
                }
                (e, ty)
            }
            Ast::Unary(UnaryOp::Neg, inner, _) => {
                let (e, ty) = self.expr(inner, field, src)?;
                require_real(ty, inner, field, src)?;
                (self.arena().neg(e), Ty::Real)
            }
            Ast::Unary(UnaryOp::Not, inner, _) => {
                let (e, ty) = self.expr(inner, field, src)?;
                require_bool(ty, inner, "not", field, src)?;
                (self.arena().not(e), Ty::Bool)
            }
            Ast::Binary(op, l, r, _) => {
                let (a, ta) = self.expr(l, field, src)?;
                let (b, tb) = self.expr(r, field, src)?;
                let bop = *op;
                if bop.is_logical() {
                    let word = if bop == BinOp::And { "and" } else { "or" };
                    require_bool(ta, l, word, field, src)?;
                    require_bool(tb, r, word, field, src)?;
                } else {
                    require_real(ta, l, field, src)?;
                    require_real(tb, r, field, src)?;
                }
                let e = self.arena().bin(bop, a, b);
                let ty = if bop.is_comparison() || bop.is_logical() {
                    Ty::Bool
                } else {
                    Ty::Real
                };
                (e, ty)
            }
            Ast::Call(fname, args, span) => self.call(fname, args, *span, field, src)?,
        })
    }

    /// The TimedArray called `name`, if this place knows one, with the step of the group the
    /// expression belongs to.
    fn table(&self, _name: &str) -> Option<(TableRef, f64)> {
        None
    }

    fn call(
        &mut self,
        fname: &str,
        args: &[Ast],
        span: Span,
        field: &str,
        src: &str,
    ) -> Result<(ExprId, Ty), Diagnostic> {
        if let Some((table, group_dt)) = self.table(fname) {
            let mut vals = Vec::new();
            for a in args {
                let (e, ty) = self.expr(a, field, src)?;
                require_real(ty, a, field, src)?;
                vals.push(e);
            }
            let e = lower_call(self.arena(), &table, group_dt, &vals, (field, src, span))?;
            return Ok((e, Ty::Real));
        }
        let arity = match fname {
            "rand" | "randn" => 0,
            "pow" | "min" | "max" => 2,
            "clip" | "where" => 3,
            "exprel" | "int" | "sign" => 1,
            _ if Func::from_name(fname).is_some() => 1,
            _ => {
                let near = nearest_names(fname, FUNCTIONS.iter().copied());
                let mut d =
                    Diagnostic::new(field, format!("unknown function '{fname}'")).at(src, span);
                if !near.is_empty() {
                    d = d.suggest(format!("did you mean {}?", quote_list(&near)));
                }
                return Err(d);
            }
        };
        if args.len() != arity {
            return Err(Diagnostic::new(
                field,
                format!("{fname}() takes {arity} argument(s), got {}", args.len()),
            )
            .at(src, span));
        }
        if fname == "rand" || fname == "randn" {
            let draw = if fname == "rand" {
                Draw::Uniform
            } else {
                Draw::Normal
            };
            let at = Place { field, src, span };
            return Ok((self.draw(draw, at)?, Ty::Real));
        }
        if fname == "int" {
            // Brian2's int(): truncation toward zero; of a condition, 1 or 0.
            let (e, ty) = self.expr(&args[0], field, src)?;
            let arena = self.arena();
            let e = match ty {
                Ty::Bool => {
                    let (one, zero) = (arena.constant(1.0), arena.constant(0.0));
                    arena.select(e, one, zero)
                }
                Ty::Real => arena.call(Func::Trunc, e),
            };
            return Ok((e, Ty::Real));
        }
        let mut vals = Vec::new();
        for (k, a) in args.iter().enumerate() {
            let (e, ty) = self.expr(a, field, src)?;
            if fname == "where" && k == 0 {
                require_bool(ty, a, "where", field, src)?;
            } else {
                require_real(ty, a, field, src)?;
            }
            vals.push(e);
        }
        let arena = self.arena();
        let e = match fname {
            "pow" => arena.bin(BinOp::Pow, vals[0], vals[1]),
            "min" => arena.bin(BinOp::Min, vals[0], vals[1]),
            "max" => arena.bin(BinOp::Max, vals[0], vals[1]),
            "clip" => {
                let lo = arena.bin(BinOp::Max, vals[0], vals[1]);
                arena.bin(BinOp::Min, lo, vals[2])
            }
            "where" => arena.select(vals[0], vals[1], vals[2]),
            "exprel" => arena.exprel(vals[0]),
            "sign" => {
                // -1, 0 or 1 (the argument itself when it is 0 or NaN, as numpy's sign).
                let x = vals[0];
                let zero = arena.constant(0.0);
                let (one, minus_one) = (arena.constant(1.0), arena.constant(-1.0));
                let negative = arena.bin(BinOp::Lt, x, zero);
                let positive = arena.bin(BinOp::Gt, x, zero);
                let rest = arena.select(negative, minus_one, x);
                arena.select(positive, one, rest)
            }
            _ => arena.call(Func::from_name(fname).unwrap(), vals[0]),
        };
        Ok((e, Ty::Real))
    }
}

/// The names with one meaning in every group, after its own: `dt` (folded), `pi` and `e`, a unit
/// name (its value in the kernels' unit system: `-50*mV` is -50), and a function named without a
/// call (an error). `None` for any other name.
pub(crate) fn common_name(
    arena: &mut ExprArena,
    dt: f64,
    name: &str,
    at: Place,
) -> Option<Result<(ExprId, Ty), Diagnostic>> {
    if name == "dt" {
        return Some(Ok((arena.constant(dt), Ty::Real)));
    }
    if let Some((_, value)) = MATH_CONSTANTS.iter().find(|(c, _)| *c == name) {
        return Some(Ok((arena.constant(*value), Ty::Real)));
    }
    if let Some(scale) = unit_value(name) {
        return Some(Ok((arena.constant(scale), Ty::Real)));
    }
    if FUNCTIONS.contains(&name) {
        return Some(Err(at.error(format!(
            "'{name}' is a function: call it with arguments, e.g. {name}(x)"
        ))));
    }
    None
}

pub(crate) fn require_real(ty: Ty, ast: &Ast, field: &str, src: &str) -> Result<(), Diagnostic> {
    if ty == Ty::Bool {
        return Err(
            Diagnostic::new(field, "a condition is used where a number is expected")
                .at(src, ast.span())
                .suggest("use where(condition, a, b) to turn a condition into a number"),
        );
    }
    Ok(())
}

pub(crate) fn require_bool(
    ty: Ty,
    ast: &Ast,
    op: &str,
    field: &str,
    src: &str,
) -> Result<(), Diagnostic> {
    if ty != Ty::Bool {
        return Err(Diagnostic::new(
            field,
            format!("'{op}' needs a condition, but this is a number"),
        )
        .at(src, ast.span())
        .suggest("compare it explicitly, e.g. 'x != 0'"));
    }
    Ok(())
}

/// `'a' or 'b'`, for "did you mean" suggestions.
pub(crate) fn quote_list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(" or ")
}

/// The "unknown name" error, with the nearest of `known` as a suggestion, else `otherwise`.
pub(crate) fn unknown_name<'a>(
    name: &str,
    at: Place,
    known: impl IntoIterator<Item = &'a str>,
    otherwise: &str,
) -> Diagnostic {
    let near = nearest_names(name, known);
    let d = at.error(format!("unknown name '{name}'"));
    if near.is_empty() {
        d.suggest(otherwise)
    } else {
        d.suggest(format!("did you mean {}?", quote_list(&near)))
    }
}
