//! Recursive-descent parser for Python-like expressions and assignment statements: Brian2's
//! fields (equation right-hand sides, threshold, reset, refractory). The precedence levels it
//! shares with the `ode()` parser are written once, in `ExpressionLevels`.
//!
//! Precedence, lowest first: `or`, `and`, `not`, comparisons, `+ -`, `* / %`, unary `- +`, `**`
//! (right-associative, binding tighter than unary minus on its left: `-x**2 == -(x**2)`).
//!
//! Both parsers, and every pass over the trees they build (lowering, the scheme's term locator,
//! dropping a tree), recurse; two limits keep them within a small stack whatever the input:
//! an expression nests at most [`MAX_NESTING`] levels (parentheses, calls, unary operators,
//! powers, `not`, conditional expressions), and its tree is at most [`MAX_HEIGHT`] nodes tall
//! (a chain `a + b + c + ...` is one level per operator). Past either, the error is located at
//! the token where the limit was crossed.

use super::ast::{AssignOp, Assignment, Ast, UnaryOp};
use super::lexer::{Tok, Token};
use crate::diagnostics::{Diagnostic, Span};
use crate::ir::BinOp;

/// The deepest an expression may nest (Python's own parser stops at 200 nested parentheses).
pub const MAX_NESTING: usize = 200;

/// The tallest syntax tree of one expression, in nodes from the root to the deepest leaf.
pub const MAX_HEIGHT: usize = 1000;

/// What a parser tracks for the limits: how deeply it is nested now, and the height of the tree
/// it built last (each parsing function leaves the height of the tree it returns here).
#[derive(Debug, Default)]
pub(crate) struct Depth {
    nesting: usize,
    pub(crate) height: usize,
}

/// The precedence levels that the shared expression language's two recursive-descent parsers
/// (this one and the `ode()` parser) have in common, written once: `or`, `and`, `not` and the
/// left-associative binary levels, and the limits on nesting and height. A parser says how it
/// eats an operator or keyword, builds its nodes, parses a comparison and locates an error.
pub(crate) trait ExpressionLevels: Sized {
    type Tree;

    /// The parser's [`Depth`].
    fn depth(&mut self) -> &mut Depth;

    /// The place of the next token (or of the end of the text).
    fn next_span(&self) -> Span;

    /// An error at `span`.
    fn error_at(&self, span: Span, message: String) -> Diagnostic;

    /// Runs `parse` one nesting level deeper: an error at the next token past [`MAX_NESTING`].
    fn nested<T>(
        &mut self,
        parse: impl FnOnce(&mut Self) -> Result<T, Diagnostic>,
    ) -> Result<T, Diagnostic> {
        if self.depth().nesting >= MAX_NESTING {
            return Err(self.error_at(
                self.next_span(),
                format!(
                    "this expression nests more than {MAX_NESTING} levels deep (parentheses, calls, unary operators, powers)"
                ),
            ));
        }
        self.depth().nesting += 1;
        let out = parse(self);
        self.depth().nesting -= 1;
        out
    }

    /// Records the height of the tree just built (1 for a leaf): an error at `at` (its
    /// operator) past [`MAX_HEIGHT`].
    fn built(&mut self, height: usize, at: Span) -> Result<(), Diagnostic> {
        if height > MAX_HEIGHT {
            return Err(self
                .error_at(
                    at,
                    format!(
                        "this expression is more than {MAX_HEIGHT} operations deep (each operator of a chain like 'a + b + c' is one level)"
                    ),
                )
                .suggest("split it into parts: subexpressions in equations, local variables in ode()"));
        }
        self.depth().height = height;
        Ok(())
    }

    /// The height of the tree built last.
    fn last_height(&mut self) -> usize {
        self.depth().height
    }

    /// Consumes `word` (an operator such as `+`, or a keyword such as `and`) if it comes next.
    fn eat_word(&mut self, word: &str) -> Option<Span>;

    fn binary(op: BinOp, lhs: Self::Tree, rhs: Self::Tree, span: Span) -> Self::Tree;

    fn unary(op: UnaryOp, inner: Self::Tree, span: Span) -> Self::Tree;

    /// The level below `not`.
    fn comparison(&mut self) -> Result<Self::Tree, Diagnostic>;

    fn or_expr(&mut self) -> Result<Self::Tree, Diagnostic> {
        self.left_assoc(&[("or", BinOp::Or)], Self::and_expr)
    }

    fn and_expr(&mut self) -> Result<Self::Tree, Diagnostic> {
        self.left_assoc(&[("and", BinOp::And)], Self::not_expr)
    }

    fn not_expr(&mut self) -> Result<Self::Tree, Diagnostic> {
        if let Some(sp) = self.eat_word("not") {
            let inner = self.nested(Self::not_expr)?;
            let height = self.last_height() + 1;
            self.built(height, sp)?;
            return Ok(Self::unary(UnaryOp::Not, inner, sp));
        }
        self.comparison()
    }

    /// `next (op next)*`, grouped to the left, for the operators of one level.
    fn left_assoc(
        &mut self,
        ops: &[(&str, BinOp)],
        next: fn(&mut Self) -> Result<Self::Tree, Diagnostic>,
    ) -> Result<Self::Tree, Diagnostic> {
        let mut lhs = next(self)?;
        let mut height = self.last_height();
        loop {
            let found = ops
                .iter()
                .find_map(|(word, op)| self.eat_word(word).map(|sp| (*op, sp)));
            let Some((op, span)) = found else {
                self.depth().height = height;
                return Ok(lhs);
            };
            let rhs = next(self)?;
            height = height.max(self.last_height()) + 1;
            self.built(height, span)?;
            lhs = Self::binary(op, lhs, rhs, span);
        }
    }
}

impl ExpressionLevels for Parser<'_> {
    type Tree = Ast;

    fn depth(&mut self) -> &mut Depth {
        &mut self.depth
    }

    fn next_span(&self) -> Span {
        self.here()
    }

    fn error_at(&self, span: Span, message: String) -> Diagnostic {
        self.error(span, message)
    }

    fn eat_word(&mut self, word: &str) -> Option<Span> {
        if word.starts_with(char::is_alphabetic) {
            self.eat_keyword(word)
        } else {
            self.eat_op(word)
        }
    }

    fn binary(op: BinOp, lhs: Ast, rhs: Ast, span: Span) -> Ast {
        Ast::Binary(op, Box::new(lhs), Box::new(rhs), span)
    }

    fn unary(op: UnaryOp, inner: Ast, span: Span) -> Ast {
        Ast::Unary(op, Box::new(inner), span)
    }

    fn comparison(&mut self) -> Result<Ast, Diagnostic> {
        let lhs = self.additive()?;
        let lhs_height = self.last_height();
        let ops = [
            ("<", BinOp::Lt),
            ("<=", BinOp::Le),
            (">", BinOp::Gt),
            (">=", BinOp::Ge),
            ("==", BinOp::Eq),
            ("!=", BinOp::Ne),
        ];
        for (s, op) in ops {
            if let Some(sp) = self.eat_op(s) {
                let rhs = self.additive()?;
                let height = lhs_height.max(self.last_height()) + 1;
                self.built(height, sp)?;
                if let Some(Token {
                    tok: Tok::Op(o),
                    span,
                }) = self.peek()
                {
                    if ["<", "<=", ">", ">=", "==", "!="].contains(o) {
                        return Err(
                            self.error(*span, "chained comparisons are not supported; use 'and'")
                        );
                    }
                }
                return Ok(Ast::Binary(op, Box::new(lhs), Box::new(rhs), sp));
            }
        }
        Ok(lhs)
    }
}

pub struct Parser<'a> {
    toks: &'a [Token],
    pos: usize,
    src: &'a str,
    field: &'a str,
    depth: Depth,
}

impl<'a> Parser<'a> {
    pub fn new(toks: &'a [Token], src: &'a str, field: &'a str) -> Self {
        Parser {
            toks,
            pos: 0,
            src,
            field,
            depth: Depth::default(),
        }
    }

    pub fn peek(&self) -> Option<&'a Token> {
        self.toks.get(self.pos)
    }

    pub fn peek_tok(&self) -> Option<&'a Tok> {
        self.peek().map(|t| &t.tok)
    }

    /// The token `k` places after the current one.
    pub fn toks_at(&self, k: usize) -> Option<&'a Tok> {
        self.toks.get(self.pos + k).map(|t| &t.tok)
    }

    pub fn advance(&mut self) -> Option<&'a Token> {
        let t = self.toks.get(self.pos);
        if t.is_some() {
            self.pos += 1;
        }
        t
    }

    pub fn at_end_of_line(&self) -> bool {
        matches!(
            self.peek_tok(),
            None | Some(Tok::Newline) | Some(Tok::Semicolon)
        )
    }

    /// The span of the current token, or the end of the text.
    pub fn here(&self) -> Span {
        self.peek()
            .map(|t| t.span)
            .or_else(|| self.toks.last().map(|t| t.span))
            .unwrap_or(Span::new(1, 1, 1))
    }

    pub fn error(&self, span: Span, msg: impl Into<String>) -> Diagnostic {
        Diagnostic::new(self.field, msg).at(self.src, span)
    }

    fn describe(tok: Option<&Token>) -> String {
        match tok.map(|t| &t.tok) {
            None | Some(Tok::Newline) => "end of line".into(),
            Some(Tok::Num(v)) => format!("number {v}"),
            Some(Tok::Name(n)) => format!("name '{n}'"),
            Some(Tok::Op(o)) => format!("'{o}'"),
            Some(Tok::LParen) => "'('".into(),
            Some(Tok::RParen) => "')'".into(),
            Some(Tok::Comma) => "','".into(),
            Some(Tok::Colon) => "':'".into(),
            Some(Tok::Semicolon) => "';'".into(),
        }
    }

    pub fn expect(&mut self, want: &Tok, what: &str) -> Result<Span, Diagnostic> {
        match self.peek() {
            Some(t) if &t.tok == want => {
                self.pos += 1;
                Ok(t.span)
            }
            other => Err(self.error(
                self.here(),
                format!("expected {what}, found {}", Self::describe(other)),
            )),
        }
    }

    pub fn eat_op(&mut self, op: &str) -> Option<Span> {
        match self.peek() {
            Some(Token {
                tok: Tok::Op(o),
                span,
            }) if *o == op => {
                self.pos += 1;
                Some(*span)
            }
            _ => None,
        }
    }

    fn eat_keyword(&mut self, kw: &str) -> Option<Span> {
        match self.peek() {
            Some(Token {
                tok: Tok::Name(n),
                span,
            }) if n == kw => {
                self.pos += 1;
                Some(*span)
            }
            _ => None,
        }
    }

    pub fn expression(&mut self) -> Result<Ast, Diagnostic> {
        self.nested(Self::or_expr)
    }

    fn additive(&mut self) -> Result<Ast, Diagnostic> {
        self.left_assoc(
            &[("+", BinOp::Add), ("-", BinOp::Sub)],
            Self::multiplicative,
        )
    }

    fn multiplicative(&mut self) -> Result<Ast, Diagnostic> {
        let ops = [("*", BinOp::Mul), ("/", BinOp::Div), ("%", BinOp::Mod)];
        self.left_assoc(&ops, Self::unary)
    }

    fn unary(&mut self) -> Result<Ast, Diagnostic> {
        if let Some(sp) = self.eat_op("-") {
            let inner = self.nested(Self::unary)?;
            let height = self.last_height() + 1;
            self.built(height, sp)?;
            return Ok(Ast::Unary(UnaryOp::Neg, Box::new(inner), sp));
        }
        if self.eat_op("+").is_some() {
            return self.nested(Self::unary);
        }
        self.power()
    }

    fn power(&mut self) -> Result<Ast, Diagnostic> {
        let base = self.atom()?;
        if let Some(sp) = self.eat_op("**") {
            let base_height = self.last_height();
            let exp = self.nested(Self::unary)?;
            let height = base_height.max(self.last_height()) + 1;
            self.built(height, sp)?;
            return Ok(Ast::Binary(BinOp::Pow, Box::new(base), Box::new(exp), sp));
        }
        Ok(base)
    }

    fn atom(&mut self) -> Result<Ast, Diagnostic> {
        let tok = self.peek();
        match tok.map(|t| &t.tok) {
            Some(Tok::Num(v)) => {
                let sp = tok.unwrap().span;
                self.pos += 1;
                self.built(1, sp)?;
                Ok(Ast::Num(*v, sp))
            }
            Some(Tok::Name(n)) => {
                let sp = tok.unwrap().span;
                self.pos += 1;
                self.built(1, sp)?;
                match n.as_str() {
                    "True" | "true" => return Ok(Ast::Bool(true, sp)),
                    "False" | "false" => return Ok(Ast::Bool(false, sp)),
                    "and" | "or" | "not" => {
                        return Err(self.error(sp, format!("'{n}' needs an operand before it")));
                    }
                    _ => {}
                }
                if matches!(self.peek_tok(), Some(Tok::LParen)) {
                    self.pos += 1;
                    let mut args = Vec::new();
                    let mut height = 0;
                    if !matches!(self.peek_tok(), Some(Tok::RParen)) {
                        loop {
                            args.push(self.expression()?);
                            height = height.max(self.last_height());
                            if matches!(self.peek_tok(), Some(Tok::Comma)) {
                                self.pos += 1;
                                continue;
                            }
                            break;
                        }
                    }
                    self.expect(&Tok::RParen, "')' to close the call")?;
                    self.built(height + 1, sp)?;
                    return Ok(Ast::Call(n.clone(), args, sp));
                }
                Ok(Ast::Name(n.clone(), sp))
            }
            Some(Tok::LParen) => {
                self.pos += 1;
                let e = self.expression()?;
                self.expect(&Tok::RParen, "')'")?;
                Ok(e)
            }
            _ => Err(self.error(
                self.here(),
                format!("expected a value, found {}", Self::describe(tok)),
            )),
        }
    }

    /// Skips blank lines and statement separators.
    pub fn skip_separators(&mut self) {
        while matches!(self.peek_tok(), Some(Tok::Newline) | Some(Tok::Semicolon)) {
            self.pos += 1;
        }
    }

    /// Requires the end of the current statement.
    pub fn end_statement(&mut self) -> Result<(), Diagnostic> {
        if self.at_end_of_line() {
            return Ok(());
        }
        Err(self.error(
            self.here(),
            format!(
                "unexpected {} after the end of the statement",
                Self::describe(self.peek())
            ),
        ))
    }
}

/// Parses a whole field as one expression (threshold, refractory).
pub fn parse_expression(src: &str, field: &str) -> Result<Ast, Diagnostic> {
    let toks = super::lexer::tokenize(src, field)?;
    let mut p = Parser::new(&toks, src, field);
    p.skip_separators();
    if p.peek().is_none() {
        return Err(Diagnostic::new(field, "empty expression"));
    }
    let e = p.expression()?;
    p.skip_separators();
    if p.peek().is_some() {
        return Err(p.error(p.here(), "unexpected text after the expression"));
    }
    Ok(e)
}

/// Parses statements `x = expr`, `x += expr`, ... separated by newlines or `;` (reset code).
pub fn parse_statements(src: &str, field: &str) -> Result<Vec<Assignment>, Diagnostic> {
    let toks = super::lexer::tokenize(src, field)?;
    let mut p = Parser::new(&toks, src, field);
    let mut out = Vec::new();
    loop {
        p.skip_separators();
        let Some(t) = p.advance() else { break };
        let Tok::Name(target) = &t.tok else {
            return Err(p.error(
                t.span,
                "a statement must start with the name of the variable it assigns",
            ));
        };
        let op = [
            ("=", AssignOp::Set),
            ("+=", AssignOp::Add),
            ("-=", AssignOp::Sub),
            ("*=", AssignOp::Mul),
            ("/=", AssignOp::Div),
        ]
        .into_iter()
        .find_map(|(s, op)| p.eat_op(s).map(|_| op));
        let Some(op) = op else {
            return Err(p.error(
                p.here(),
                format!("expected '=', '+=', '-=', '*=' or '/=' after '{target}'"),
            ));
        };
        let value = p.expression()?;
        p.end_statement()?;
        out.push(Assignment {
            target: target.clone(),
            target_span: t.span,
            op,
            value,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(a: &Ast) -> String {
        match a {
            Ast::Num(v, _) => format!("{v}"),
            Ast::Bool(b, _) => format!("{b}"),
            Ast::Name(n, _) => n.clone(),
            Ast::Unary(op, e, _) => format!("({op:?} {})", show(e)),
            Ast::Binary(op, l, r, _) => format!("({op:?} {} {})", show(l), show(r)),
            Ast::Call(f, args, _) => format!(
                "{f}({})",
                args.iter().map(show).collect::<Vec<_>>().join(", ")
            ),
        }
    }

    #[test]
    fn precedence_matches_python() {
        let e = parse_expression("-x**2 + 3*y/z - 1", "t").unwrap();
        assert_eq!(show(&e), "(Sub (Add (Neg (Pow x 2)) (Div (Mul 3 y) z)) 1)");
        let e = parse_expression("a > 1 and not b < 2 or c == 3", "t").unwrap();
        assert_eq!(show(&e), "(Or (And (Gt a 1) (Not (Lt b 2))) (Eq c 3))");
        let e = parse_expression("2**-x**2", "t").unwrap();
        assert_eq!(show(&e), "(Pow 2 (Neg (Pow x 2)))");
        let e = parse_expression("clip(v, -1, max(a, b))", "t").unwrap();
        assert_eq!(show(&e), "clip(v, (Neg 1), max(a, b))");
    }

    #[test]
    fn statements_split_on_newlines_and_semicolons() {
        let s = parse_statements("v = v_reset; w += b\nx *= 2", "reset").unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s[1].op, AssignOp::Add);
        assert_eq!(s[2].target, "x");
    }

    #[test]
    fn errors_point_at_the_problem() {
        let e = parse_expression("v > (1 + ", "threshold").unwrap_err();
        assert!(e.message.contains("expected a value"), "{}", e.message);
        let e = parse_expression("v > 1 2", "threshold").unwrap_err();
        assert_eq!(e.span.unwrap().col, 7);
        let e = parse_statements("v == 3", "reset").unwrap_err();
        assert!(e.message.contains("expected '='"), "{}", e.message);
    }
}
