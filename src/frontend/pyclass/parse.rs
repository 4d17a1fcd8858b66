//! The Python subset of a model class's `ode()` method (the `neural` / NeuroDriver style).
//!
//! The Python shim sends the method's source (`inspect.getsource` + `textwrap.dedent`): a `def`
//! line and an indented body. This module tokenizes it (indentation-aware, with Python's implicit
//! line joining inside brackets) and parses the supported subset into a small syntax tree:
//!
//! * statements: `x = e`, `self.x = e`, `self.d_x = e`, augmented `+= -= *= /=`, `if/elif/else`,
//!   `pass`, and a docstring;
//! * expressions: numbers, `True`/`False`, locals, the `ode()` arguments, `self.x`, arithmetic
//!   (`+ - * / % **`), comparisons (chained too), `and/or/not`, `a if c else b`, and calls of
//!   `abs`, `min`, `max` and `np.` / `numpy.` / `math.` functions from [`CALLABLE`].
//!
//! Anything else (loops, nested functions, imports, comprehensions, subscripts, strings, calls to
//! other functions, attribute access other than `self.x` / `np.f`) is reported with its place and
//! the name of the construct, rather than guessed at.

use crate::diagnostics::{nearest_names, Diagnostic, Span};
use crate::frontend::syntax::lexer::{scan_word, Word};
use crate::frontend::syntax::parser::{Depth, ExpressionLevels};
use crate::spec::names::describe_char;

pub use crate::frontend::syntax::ast::{AssignOp, UnaryOp};
pub use crate::ir::BinOp;

/// The diagnostics field of every error in the method.
pub const FIELD: &str = "ode";

/// Functions `ode()` may call, as written after `np.` (or bare, for the builtins `abs`, `min`,
/// `max`), with the number of arguments they take.
pub const CALLABLE: &[(&str, usize)] = &[
    ("exp", 1),
    ("log", 1),
    ("log10", 1),
    ("sqrt", 1),
    ("cbrt", 1),
    ("abs", 1),
    ("fabs", 1),
    ("absolute", 1),
    ("sin", 1),
    ("cos", 1),
    ("tan", 1),
    ("tanh", 1),
    ("sinh", 1),
    ("cosh", 1),
    ("floor", 1),
    ("ceil", 1),
    ("power", 2),
    ("minimum", 2),
    ("maximum", 2),
    ("fmin", 2),
    ("fmax", 2),
    ("clip", 3),
    ("where", 3),
];

/// Builtins callable without a module prefix.
const BUILTINS: &[&str] = &["abs", "min", "max"];

/// Module names whose functions are the math functions above.
const MODULES: &[&str] = &["np", "numpy", "math"];

#[derive(Clone, Debug, PartialEq)]
pub enum PyExpr {
    Num(f64, Span),
    Bool(bool, Span),
    /// A local variable or an `ode()` argument.
    Name(String, Span),
    /// `self.x` (the span covers `self.x`).
    SelfAttr(String, Span),
    Unary(UnaryOp, Box<PyExpr>, Span),
    Binary(BinOp, Box<PyExpr>, Box<PyExpr>, Span),
    /// A call of a function of [`CALLABLE`] (canonical name: `min`/`max` become
    /// `minimum`/`maximum`, `abs`/`fabs`/`absolute` become `abs`).
    Call(String, Vec<PyExpr>, Span),
    /// `a if cond else b`: (cond, a, b).
    IfElse(Box<PyExpr>, Box<PyExpr>, Box<PyExpr>, Span),
}

impl PyExpr {
    pub fn span(&self) -> Span {
        match self {
            PyExpr::Num(_, s)
            | PyExpr::Bool(_, s)
            | PyExpr::Name(_, s)
            | PyExpr::SelfAttr(_, s)
            | PyExpr::Unary(_, _, s)
            | PyExpr::Binary(_, _, _, s)
            | PyExpr::Call(_, _, s)
            | PyExpr::IfElse(_, _, _, s) => *s,
        }
    }
}

/// The left side of an assignment.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    Local(String),
    /// `self.x` or `self.d_x` (the attribute name as written).
    SelfAttr(String),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Stmt {
    Assign {
        target: Target,
        span: Span,
        op: AssignOp,
        value: PyExpr,
    },
    /// `if c1: b1 elif c2: b2 ... else: orelse`
    If {
        branches: Vec<(PyExpr, Vec<Stmt>)>,
        orelse: Vec<Stmt>,
    },
}

/// One argument of `ode()` after `self`.
#[derive(Clone, Debug, PartialEq)]
pub struct OdeArg {
    pub name: String,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct OdeMethod {
    pub args: Vec<OdeArg>,
    pub body: Vec<Stmt>,
}

// -- tokens ------------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Num(f64),
    Name(String),
    Str,
    Op(&'static str),
    Newline,
    Indent,
    Dedent,
}

#[derive(Clone, Debug, PartialEq)]
struct Token {
    tok: Tok,
    span: Span,
}

// Longest first, so that `**=` wins over `**` and `**` over `*`.
const OPERATORS: &[&str] = &[
    "**=", "//=", ">>=", "<<=", "**", "//", "<=", ">=", "==", "!=", "+=", "-=", "*=", "/=", "%=",
    "&=", "|=", "^=", "->", ":=", "<<", ">>", "+", "-", "*", "/", "%", "<", ">", "=", "(", ")",
    "[", "]", "{", "}", ",", ":", ".", ";", "@", "&", "|", "^", "~",
];

fn err(src: &str, span: Span, msg: impl Into<String>) -> Diagnostic {
    Diagnostic::new(FIELD, msg).at(src, span)
}

/// Python's tokenizer, reduced to what the subset needs: INDENT/DEDENT from leading whitespace,
/// NEWLINE only outside brackets, comments, backslash continuation, and strings (skipped as
/// opaque tokens: only a docstring may use one).
fn tokenize(src: &str) -> Result<Vec<Token>, Diagnostic> {
    let lines: Vec<Vec<char>> = src.lines().map(|l| l.chars().collect()).collect();
    let mut out: Vec<Token> = Vec::new();
    let mut indents: Vec<usize> = vec![0];
    let mut depth = 0usize; // bracket nesting: newlines inside brackets are not statement ends
    let mut continued = false; // previous line ended with a backslash
    let mut li = 0usize;
    while li < lines.len() {
        let chars = &lines[li];
        let line_no = li + 1;
        let mut i = 0usize;
        if depth == 0 && !continued {
            while i < chars.len() && (chars[i] == ' ' || chars[i] == '\t') {
                i += 1;
            }
            if i == chars.len() || chars[i] == '#' {
                li += 1;
                continue; // blank or comment-only line
            }
            let width: usize = chars[..i]
                .iter()
                .map(|c| if *c == '\t' { 8 } else { 1 })
                .sum();
            let here = Span::new(line_no, i + 1, 1);
            if width > *indents.last().unwrap() {
                indents.push(width);
                out.push(Token {
                    tok: Tok::Indent,
                    span: here,
                });
            } else {
                while width < *indents.last().unwrap() {
                    indents.pop();
                    out.push(Token {
                        tok: Tok::Dedent,
                        span: here,
                    });
                }
                if width != *indents.last().unwrap() {
                    return Err(err(
                        src,
                        here,
                        "the indentation does not match any outer level",
                    ));
                }
            }
        }
        continued = false;
        while i < chars.len() {
            let c = chars[i];
            let col = i + 1;
            if c == '#' {
                break;
            }
            if c == ' ' || c == '\t' {
                i += 1;
                continue;
            }
            if c == '\\' && i + 1 == chars.len() {
                continued = true;
                i += 1;
                continue;
            }
            if let Some((word, end)) = scan_word(chars, i, Some('_')) {
                let span = Span::new(line_no, col, end - i);
                let tok = match word.map_err(|e| err(src, span, e))? {
                    Word::Number(_) if end < chars.len() && chars[end].is_alphanumeric() => {
                        return Err(err(
                            src,
                            Span::new(line_no, col, end - i + 1),
                            "unsupported number literal (hexadecimal, complex or suffixed numbers)",
                        ));
                    }
                    Word::Number(value) => Some(Tok::Num(value)),
                    // String prefixes (r"", f"", b"", ...) belong to the string that follows.
                    Word::Name(text)
                        if end < chars.len()
                            && (chars[end] == '"' || chars[end] == '\'')
                            && text.len() <= 2
                            && text.chars().all(|p| "rRbBfFuU".contains(p)) =>
                    {
                        None
                    }
                    Word::Name(text) => Some(Tok::Name(text)),
                };
                i = end;
                if let Some(tok) = tok {
                    out.push(Token { tok, span });
                    continue;
                }
            }
            if chars[i] == '"' || chars[i] == '\'' {
                let (end_line, end_i) = skip_string(src, &lines, li, i)?;
                out.push(Token {
                    tok: Tok::Str,
                    span: Span::new(
                        line_no,
                        col,
                        if end_line == li { end_i - col + 1 } else { 1 },
                    ),
                });
                if end_line != li {
                    // A multi-line string: carry on tokenizing after its end.
                    li = end_line;
                    continued = tokenize_rest(src, &lines[li], li, end_i, &mut out, &mut depth)?;
                    break;
                }
                i = end_i;
                continue;
            }
            let rest: String = chars[i..chars.len().min(i + 3)].iter().collect();
            let Some(op) = OPERATORS.iter().find(|op| rest.starts_with(**op)) else {
                return Err(err(
                    src,
                    Span::new(line_no, col, 1),
                    format!("unexpected character {}", describe_char(c)),
                ));
            };
            match *op {
                "(" | "[" | "{" => depth += 1,
                ")" | "]" | "}" => depth = depth.saturating_sub(1),
                _ => {}
            }
            out.push(Token {
                tok: Tok::Op(op),
                span: Span::new(line_no, col, op.len()),
            });
            i += op.len();
        }
        let end_line = li;
        if depth == 0 && !continued {
            let len = lines[end_line].len();
            if !matches!(out.last().map(|t| &t.tok), Some(Tok::Newline) | None) {
                out.push(Token {
                    tok: Tok::Newline,
                    span: Span::new(end_line + 1, len + 1, 1),
                });
            }
        }
        li = end_line + 1;
    }
    let end = Span::new(lines.len().max(1), 1, 1);
    if depth > 0 {
        return Err(err(src, end, "a bracket is not closed"));
    }
    while indents.len() > 1 {
        indents.pop();
        out.push(Token {
            tok: Tok::Dedent,
            span: end,
        });
    }
    Ok(out)
}

/// Tokenizes what follows a multi-line string on its last line (rare: `"""doc""" ; x = 1`).
/// Returns whether the line ends with a backslash continuation.
fn tokenize_rest(
    src: &str,
    chars: &[char],
    li: usize,
    mut i: usize,
    out: &mut Vec<Token>,
    depth: &mut usize,
) -> Result<bool, Diagnostic> {
    while i < chars.len() {
        let c = chars[i];
        if c == '#' {
            break;
        }
        if c == ' ' || c == '\t' {
            i += 1;
            continue;
        }
        let rest: String = chars[i..chars.len().min(i + 3)].iter().collect();
        let Some(op) = OPERATORS.iter().find(|op| rest.starts_with(**op)) else {
            return Err(err(
                src,
                Span::new(li + 1, i + 1, 1),
                "unsupported text after a multi-line string",
            ));
        };
        match *op {
            "(" | "[" | "{" => *depth += 1,
            ")" | "]" | "}" => *depth = depth.saturating_sub(1),
            _ => {}
        }
        out.push(Token {
            tok: Tok::Op(op),
            span: Span::new(li + 1, i + 1, op.len()),
        });
        i += op.len();
    }
    Ok(false)
}

/// Skips a string literal starting at `lines[li][i]` (a quote); returns the line and the index
/// just after its closing quote. Triple-quoted strings may span lines.
fn skip_string(
    src: &str,
    lines: &[Vec<char>],
    li: usize,
    i: usize,
) -> Result<(usize, usize), Diagnostic> {
    let q = lines[li][i];
    let triple = lines[li].get(i + 1) == Some(&q) && lines[li].get(i + 2) == Some(&q);
    let open = Span::new(li + 1, i + 1, if triple { 3 } else { 1 });
    let (mut l, mut j) = (li, i + if triple { 3 } else { 1 });
    loop {
        let chars = &lines[l];
        while j < chars.len() {
            if chars[j] == '\\' {
                j += 2;
                continue;
            }
            if chars[j] == q {
                if !triple {
                    return Ok((l, j + 1));
                }
                if chars.get(j + 1) == Some(&q) && chars.get(j + 2) == Some(&q) {
                    return Ok((l, j + 3));
                }
            }
            j += 1;
        }
        if !triple || l + 1 >= lines.len() {
            return Err(err(src, open, "a string is not closed"));
        }
        l += 1;
        j = 0;
    }
}

// -- parser ------------------------------------------------------------------------------------

struct Parser<'a> {
    toks: &'a [Token],
    pos: usize,
    src: &'a str,
    depth: Depth,
    /// Blocks (`if`, `elif`, `else` bodies) open around the statement being parsed.
    blocks: usize,
}

/// The deepest blocks may nest (CPython's tokenizer allows 100 levels of indentation).
pub const MAX_BLOCKS: usize = 100;

/// Parses the source of an `ode()` method.
pub fn parse_ode(src: &str) -> Result<OdeMethod, Diagnostic> {
    let toks = tokenize(src)?;
    let mut p = Parser {
        toks: &toks,
        pos: 0,
        src,
        depth: Depth::default(),
        blocks: 0,
    };
    p.method()
}

/// Keywords that start a statement the subset does not support, and how to name the construct.
const UNSUPPORTED_STATEMENTS: &[(&str, &str)] = &[
    ("for", "a 'for' loop"),
    ("while", "a 'while' loop"),
    ("def", "a nested function definition"),
    ("class", "a class definition"),
    ("import", "an import"),
    ("from", "an import"),
    ("return", "a 'return' statement"),
    ("with", "a 'with' statement"),
    ("try", "a 'try' statement"),
    ("raise", "a 'raise' statement"),
    ("assert", "an 'assert' statement"),
    ("del", "a 'del' statement"),
    ("global", "a 'global' declaration"),
    ("nonlocal", "a 'nonlocal' declaration"),
    ("yield", "a 'yield' expression"),
    ("lambda", "a lambda"),
    ("async", "an 'async' statement"),
    ("await", "an 'await' expression"),
    ("match", "a 'match' statement"),
    ("print", "a call to print()"),
];

impl ExpressionLevels for Parser<'_> {
    type Tree = PyExpr;

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
            self.eat_name(word)
        } else {
            self.eat_op(word)
        }
    }

    fn binary(op: BinOp, lhs: PyExpr, rhs: PyExpr, span: Span) -> PyExpr {
        PyExpr::Binary(op, Box::new(lhs), Box::new(rhs), span)
    }

    fn unary(op: UnaryOp, inner: PyExpr, span: Span) -> PyExpr {
        PyExpr::Unary(op, Box::new(inner), span)
    }

    /// Comparisons chain as in Python: `a < b < c` is `a < b and b < c`.
    fn comparison(&mut self) -> Result<PyExpr, Diagnostic> {
        let first = self.bitwise()?;
        let first_height = self.last_height();
        let mut result: Option<(PyExpr, usize)> = None;
        let mut left = first.clone();
        let mut left_height = first_height;
        loop {
            let op = match self.peek_tok() {
                Some(Tok::Op("<")) => BinOp::Lt,
                Some(Tok::Op("<=")) => BinOp::Le,
                Some(Tok::Op(">")) => BinOp::Gt,
                Some(Tok::Op(">=")) => BinOp::Ge,
                Some(Tok::Op("==")) => BinOp::Eq,
                Some(Tok::Op("!=")) => BinOp::Ne,
                Some(Tok::Name(n)) if n == "is" || n == "in" => {
                    return Err(self.error(
                        self.here(),
                        format!("unsupported construct: the '{n}' operator (compare numbers with ==, <, ...)"),
                    ))
                }
                Some(Tok::Name(n)) if n == "not" && matches!(self.peek_at(1), Some(Tok::Name(m)) if m == "in") => {
                    return Err(self.error(self.here(), "unsupported construct: the 'not in' operator"))
                }
                _ => break,
            };
            let sp = self.advance().unwrap().span;
            let right = self.bitwise()?;
            let right_height = self.last_height();
            let cmp = PyExpr::Binary(op, Box::new(left), Box::new(right.clone()), sp);
            let cmp_height = left_height.max(right_height) + 1;
            result = Some(match result {
                None => (cmp, cmp_height),
                Some((prev, prev_height)) => (
                    PyExpr::Binary(BinOp::And, Box::new(prev), Box::new(cmp), sp),
                    prev_height.max(cmp_height) + 1,
                ),
            });
            self.built(result.as_ref().unwrap().1, sp)?;
            left = right;
            left_height = right_height;
        }
        match result {
            Some((tree, height)) => {
                self.depth().height = height;
                Ok(tree)
            }
            None => {
                self.depth().height = first_height;
                Ok(first)
            }
        }
    }
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<&'a Token> {
        self.toks.get(self.pos)
    }

    fn peek_tok(&self) -> Option<&'a Tok> {
        self.peek().map(|t| &t.tok)
    }

    fn peek_at(&self, k: usize) -> Option<&'a Tok> {
        self.toks.get(self.pos + k).map(|t| &t.tok)
    }

    fn advance(&mut self) -> Option<&'a Token> {
        let t = self.toks.get(self.pos);
        if t.is_some() {
            self.pos += 1;
        }
        t
    }

    fn here(&self) -> Span {
        self.peek()
            .map(|t| t.span)
            .or_else(|| self.toks.last().map(|t| t.span))
            .unwrap_or(Span::new(1, 1, 1))
    }

    fn error(&self, span: Span, msg: impl Into<String>) -> Diagnostic {
        err(self.src, span, msg)
    }

    fn is_op(&self, op: &str) -> bool {
        matches!(self.peek_tok(), Some(Tok::Op(o)) if *o == op)
    }

    fn is_name(&self, name: &str) -> bool {
        matches!(self.peek_tok(), Some(Tok::Name(n)) if n == name)
    }

    /// An error at the next token when it is `op`, a construct outside the subset.
    fn refuse(&self, op: &str, message: &str) -> Result<(), Diagnostic> {
        if self.is_op(op) {
            return Err(self.error(self.here(), message));
        }
        Ok(())
    }

    fn eat_op(&mut self, op: &str) -> Option<Span> {
        if self.is_op(op) {
            return self.advance().map(|t| t.span);
        }
        None
    }

    fn eat_name(&mut self, name: &str) -> Option<Span> {
        if self.is_name(name) {
            return self.advance().map(|t| t.span);
        }
        None
    }

    fn describe(tok: Option<&Tok>) -> String {
        match tok {
            None => "the end of the method".into(),
            Some(Tok::Newline) => "the end of the line".into(),
            Some(Tok::Indent) => "an indented block".into(),
            Some(Tok::Dedent) => "the end of the block".into(),
            Some(Tok::Num(v)) => format!("number {v}"),
            Some(Tok::Name(n)) => format!("'{n}'"),
            Some(Tok::Str) => "a string".into(),
            Some(Tok::Op(o)) => format!("'{o}'"),
        }
    }

    fn expect_op(&mut self, op: &str, what: &str) -> Result<Span, Diagnostic> {
        self.eat_op(op).ok_or_else(|| {
            self.error(
                self.here(),
                format!("expected {what}, found {}", Self::describe(self.peek_tok())),
            )
        })
    }

    fn expect_name(&mut self) -> Result<(String, Span), Diagnostic> {
        match self.peek() {
            Some(Token {
                tok: Tok::Name(n),
                span,
            }) => {
                self.pos += 1;
                Ok((n.clone(), *span))
            }
            other => Err(self.error(
                self.here(),
                format!(
                    "expected a name, found {}",
                    Self::describe(other.map(|t| &t.tok))
                ),
            )),
        }
    }

    fn expect_newline(&mut self) -> Result<(), Diagnostic> {
        match self.peek_tok() {
            Some(Tok::Newline) => {
                self.pos += 1;
                Ok(())
            }
            None | Some(Tok::Dedent) => Ok(()),
            Some(Tok::Op(";")) => Err(self.error(
                self.here(),
                "unsupported construct: several statements on one line (';'); put each on its own line",
            )),
            other => Err(self.error(
                self.here(),
                format!("expected the end of the statement, found {}", Self::describe(other)),
            )),
        }
    }

    /// `def ode(self, a=1., b=0):` and its indented body.
    fn method(&mut self) -> Result<OdeMethod, Diagnostic> {
        self.refuse(
            "@",
            "unsupported construct: a decorator on ode(); define it as a plain method",
        )?;
        let Some(def) = self.eat_name("def") else {
            return Err(self.error(
                self.here(),
                "expected the method to start with 'def ode(self, ...):'",
            ));
        };
        let (name, name_span) = self.expect_name()?;
        if name != "ode" {
            return Err(self.error(
                name_span,
                format!("expected the method 'ode', found '{name}'"),
            ));
        }
        self.expect_op("(", "'(' after 'def ode'")?;
        let (first, first_span) = self
            .expect_name()
            .map_err(|_| self.error(self.here(), "ode() must take 'self' as its first argument"))?;
        if first != "self" {
            return Err(self.error(first_span, "ode() must take 'self' as its first argument"));
        }
        let mut args: Vec<OdeArg> = Vec::new();
        while self.eat_op(",").is_some() {
            if self.is_op(")") {
                break;
            }
            if self.is_op("*") || self.is_op("**") || self.is_op("/") {
                return Err(self.error(
                    self.here(),
                    "unsupported construct: '*args', '**kwargs' or positional markers in ode()'s arguments",
                ));
            }
            let (arg, span) = self.expect_name()?;
            if args.iter().any(|a| a.name == arg) || arg == "self" {
                return Err(self.error(span, format!("the argument '{arg}' is given twice")));
            }
            if self.eat_op(":").is_some() {
                // An annotation: skip one expression.
                self.expression()?;
            }
            if self.eat_op("=").is_some() {
                // The default's value travels in the spec's constants; here it only has to parse.
                self.expression()?;
            }
            args.push(OdeArg { name: arg, span });
        }
        self.expect_op(")", "')' to close ode()'s arguments")?;
        if self.eat_op("->").is_some() {
            self.expression()?;
        }
        self.expect_op(":", "':' after ode()'s arguments")?;
        let body = self.block(def)?;
        if let Some(t) = self.peek() {
            return Err(self.error(
                t.span,
                "unexpected text after the end of ode() (send only the method's source)",
            ));
        }
        Ok(OdeMethod { args, body })
    }

    /// NEWLINE INDENT statement+ DEDENT, after a `:`.
    fn block(&mut self, owner: Span) -> Result<Vec<Stmt>, Diagnostic> {
        if self.blocks >= MAX_BLOCKS {
            return Err(self.error(
                owner,
                format!("blocks nest more than {MAX_BLOCKS} levels deep here"),
            ));
        }
        self.blocks += 1;
        let body = self.block_body(owner);
        self.blocks -= 1;
        body
    }

    fn block_body(&mut self, owner: Span) -> Result<Vec<Stmt>, Diagnostic> {
        if !matches!(self.peek_tok(), Some(Tok::Newline)) {
            return Err(self.error(
                self.here(),
                "unsupported construct: a statement on the same line as its ':'; start the block on the next line",
            ));
        }
        self.pos += 1;
        if !matches!(self.peek_tok(), Some(Tok::Indent)) {
            return Err(self.error(
                self.here(),
                format!("expected an indented block after line {}", owner.line),
            ));
        }
        self.pos += 1;
        let mut body = Vec::new();
        loop {
            match self.peek_tok() {
                None => break,
                Some(Tok::Dedent) => {
                    self.pos += 1;
                    break;
                }
                _ => {
                    if let Some(s) = self.statement()? {
                        body.push(s);
                    }
                }
            }
        }
        Ok(body)
    }

    fn statement(&mut self) -> Result<Option<Stmt>, Diagnostic> {
        let t = self.peek().expect("statement() is called before the end");
        match &t.tok {
            Tok::Str => {
                // A docstring (or any bare string): no effect.
                self.pos += 1;
                self.expect_newline()?;
                return Ok(None);
            }
            Tok::Indent => return Err(self.error(t.span, "unexpected indentation")),
            Tok::Name(kw) => {
                if kw == "pass" {
                    self.pos += 1;
                    self.expect_newline()?;
                    return Ok(None);
                }
                if kw == "if" {
                    return self.if_statement().map(Some);
                }
                if kw == "elif" || kw == "else" {
                    return Err(self.error(t.span, format!("'{kw}' without a matching 'if'")));
                }
                if let Some((_, what)) = UNSUPPORTED_STATEMENTS.iter().find(|(k, _)| k == kw) {
                    return Err(self
                        .error(t.span, format!("unsupported construct in ode(): {what}"))
                        .suggest(
                            "ode() may use assignments, if/elif/else, arithmetic, comparisons and np.* math functions",
                        ));
                }
            }
            _ => {}
        }
        self.assignment().map(Some)
    }

    fn if_statement(&mut self) -> Result<Stmt, Diagnostic> {
        let kw = self.eat_name("if").unwrap();
        let cond = self.expression()?;
        self.expect_op(":", "':' after the condition")?;
        let mut branches = vec![(cond, self.block(kw)?)];
        let mut orelse = Vec::new();
        loop {
            if let Some(kw) = self.eat_name("elif") {
                let cond = self.expression()?;
                self.expect_op(":", "':' after the condition")?;
                branches.push((cond, self.block(kw)?));
                continue;
            }
            if let Some(kw) = self.eat_name("else") {
                self.expect_op(":", "':' after 'else'")?;
                orelse = self.block(kw)?;
            }
            break;
        }
        Ok(Stmt::If { branches, orelse })
    }

    fn assignment(&mut self) -> Result<Stmt, Diagnostic> {
        let lhs = self.expression()?;
        let op = match self.peek_tok() {
            Some(Tok::Op("=")) => AssignOp::Set,
            Some(Tok::Op("+=")) => AssignOp::Add,
            Some(Tok::Op("-=")) => AssignOp::Sub,
            Some(Tok::Op("*=")) => AssignOp::Mul,
            Some(Tok::Op("/=")) => AssignOp::Div,
            Some(Tok::Op(o @ ("**=" | "//=" | "%=" | "&=" | "|=" | "^=" | ">>=" | "<<="))) => {
                return Err(self.error(
                    self.here(),
                    format!("unsupported construct: the augmented assignment '{o}' (use 'x = x ... y')"),
                ))
            }
            Some(Tok::Op(",")) => {
                return Err(self.error(
                    self.here(),
                    "unsupported construct: a tuple (several values separated by ','); assign one value per statement",
                ))
            }
            Some(Tok::Newline) | None | Some(Tok::Dedent) => {
                return Err(self.error(
                    lhs.span(),
                    "unsupported construct: an expression statement with no effect (ode() only assigns)",
                ))
            }
            other => {
                return Err(self.error(
                    self.here(),
                    format!("expected '=' or an end of statement, found {}", Self::describe(other)),
                ))
            }
        };
        self.pos += 1;
        let target =
            match &lhs {
                PyExpr::Name(n, _) => Target::Local(n.clone()),
                PyExpr::SelfAttr(a, _) => Target::SelfAttr(a.clone()),
                other => return Err(self.error(
                    other.span(),
                    "cannot assign to this: ode() assigns to local names and 'self.x' attributes",
                )),
            };
        let span = lhs.span();
        let value = self.expression()?;
        self.refuse("=", "unsupported construct: a chained assignment ('a = b = value'); assign each name separately")?;
        self.refuse(",", "unsupported construct: a tuple (several values separated by ','); assign one value per statement")?;
        self.expect_newline()?;
        Ok(Stmt::Assign {
            target,
            span,
            op,
            value,
        })
    }

    // Expressions, lowest precedence first (Python's grammar).

    fn expression(&mut self) -> Result<PyExpr, Diagnostic> {
        self.nested(Self::conditional)
    }

    /// `body if cond else orelse`, or just `body`.
    fn conditional(&mut self) -> Result<PyExpr, Diagnostic> {
        if let Some(sp) = self.eat_name("lambda") {
            return Err(self.error(sp, "unsupported construct in ode(): a lambda"));
        }
        let body = self.or_expr()?;
        if let Some(sp) = self.eat_name("if") {
            let body_height = self.last_height();
            let cond = self.or_expr()?;
            let cond_height = self.last_height();
            if self.eat_name("else").is_none() {
                return Err(self.error(self.here(), "expected 'else' in a conditional expression"));
            }
            let orelse = self.expression()?;
            let height = body_height.max(cond_height).max(self.last_height()) + 1;
            self.built(height, sp)?;
            return Ok(PyExpr::IfElse(
                Box::new(cond),
                Box::new(body),
                Box::new(orelse),
                sp,
            ));
        }
        Ok(body)
    }

    fn bitwise(&mut self) -> Result<PyExpr, Diagnostic> {
        let e = self.additive()?;
        for op in ["&", "|", "^", "<<", ">>", "@"] {
            if self.is_op(op) {
                let hint = match op {
                    "&" => " (for conditions use 'and')",
                    "|" => " (for conditions use 'or')",
                    _ => "",
                };
                return Err(self.error(
                    self.here(),
                    format!("unsupported construct: the operator '{op}'{hint}"),
                ));
            }
        }
        Ok(e)
    }

    fn additive(&mut self) -> Result<PyExpr, Diagnostic> {
        self.left_assoc(
            &[("+", BinOp::Add), ("-", BinOp::Sub)],
            Self::multiplicative,
        )
    }

    fn multiplicative(&mut self) -> Result<PyExpr, Diagnostic> {
        let ops = [("*", BinOp::Mul), ("/", BinOp::Div), ("%", BinOp::Mod)];
        let e = self.left_assoc(&ops, Self::unary)?;
        self.refuse(
            "//",
            "unsupported construct: floor division '//' (use np.floor(a / b))",
        )?;
        Ok(e)
    }

    fn unary(&mut self) -> Result<PyExpr, Diagnostic> {
        if let Some(sp) = self.eat_op("-") {
            let inner = self.nested(Self::unary)?;
            let height = self.last_height() + 1;
            self.built(height, sp)?;
            return Ok(PyExpr::Unary(UnaryOp::Neg, Box::new(inner), sp));
        }
        if self.eat_op("+").is_some() {
            return self.nested(Self::unary);
        }
        self.refuse(
            "~",
            "unsupported construct: the operator '~' (for conditions use 'not')",
        )?;
        self.power()
    }

    fn power(&mut self) -> Result<PyExpr, Diagnostic> {
        let base = self.primary()?;
        if let Some(sp) = self.eat_op("**") {
            let base_height = self.last_height();
            let exp = self.nested(Self::unary)?; // right-associative; `2**-1` is allowed
            let height = base_height.max(self.last_height()) + 1;
            self.built(height, sp)?;
            return Ok(PyExpr::Binary(
                BinOp::Pow,
                Box::new(base),
                Box::new(exp),
                sp,
            ));
        }
        Ok(base)
    }

    /// An atom with its trailers: `self.x`, `np.exp(...)`, `abs(...)`, `(e)`, numbers, names.
    fn primary(&mut self) -> Result<PyExpr, Diagnostic> {
        let Some(t) = self.advance() else {
            return Err(self.error(self.here(), "expected a value, found the end of the method"));
        };
        // A leaf, unless a parenthesis, a call or `self.x` below says otherwise.
        self.built(1, t.span)?;
        let e = match &t.tok {
            Tok::Num(v) => PyExpr::Num(*v, t.span),
            Tok::Str => {
                return Err(self.error(t.span, "unsupported construct: a string in an expression"))
            }
            Tok::Op("(") => {
                if self.is_op(")") {
                    return Err(self.error(t.span, "unsupported construct: an empty tuple '()'"));
                }
                let inner = self.expression()?;
                if self.is_op(",") {
                    return Err(self.error(self.here(), "unsupported construct: a tuple"));
                }
                if let Some(sp) = self.eat_name("for") {
                    return Err(self.error(sp, "unsupported construct: a generator expression"));
                }
                self.expect_op(")", "')'")?;
                inner
            }
            Tok::Op("[") => {
                let msg = if self.list_has_for() {
                    "unsupported construct in ode(): a list comprehension"
                } else {
                    "unsupported construct in ode(): a list"
                };
                return Err(self.error(t.span, msg));
            }
            Tok::Op("{") => {
                return Err(self.error(t.span, "unsupported construct in ode(): a dict or set"))
            }
            Tok::Name(n) => match n.as_str() {
                "True" => PyExpr::Bool(true, t.span),
                "False" => PyExpr::Bool(false, t.span),
                "None" => {
                    return Err(self.error(t.span, "unsupported construct: None (ode() computes numbers)"))
                }
                "self" => self.self_attribute(t.span)?,
                m if MODULES.contains(&m) && self.is_op(".") => self.module_call(m, t.span)?,
                _ if self.is_op("(") => self.builtin_call(n, t.span)?,
                _ if self.is_op(".") => {
                    return Err(self.error(
                        self.here(),
                        format!("unsupported construct: attribute access on '{n}' (ode() reads 'self.x' and calls 'np.f(...)')"),
                    ))
                }
                kw if UNSUPPORTED_STATEMENTS.iter().any(|(k, _)| *k == kw) => {
                    let what = UNSUPPORTED_STATEMENTS.iter().find(|(k, _)| *k == kw).unwrap().1;
                    return Err(self.error(t.span, format!("unsupported construct in ode(): {what}")));
                }
                _ => PyExpr::Name(n.clone(), t.span),
            },
            other => {
                return Err(self.error(
                    t.span,
                    format!("expected a value, found {}", Self::describe(Some(other))),
                ))
            }
        };
        self.refuse(
            "[",
            "unsupported construct in ode(): a subscript ('x[...]')",
        )?;
        self.refuse(
            "(",
            "unsupported construct: calling a value that is not a function",
        )?;
        self.refuse(".", "unsupported construct: attribute access on a value (ode() reads 'self.x' and calls 'np.f(...)')")?;
        Ok(e)
    }

    /// Whether the `[` just consumed opens a comprehension (a `for` before its `]`).
    fn list_has_for(&self) -> bool {
        let mut depth = 1usize;
        for t in &self.toks[self.pos..] {
            match &t.tok {
                Tok::Op("[" | "(" | "{") => depth += 1,
                Tok::Op("]" | ")" | "}") => {
                    depth -= 1;
                    if depth == 0 {
                        return false;
                    }
                }
                Tok::Name(n) if n == "for" => return true,
                _ => {}
            }
        }
        false
    }

    fn self_attribute(&mut self, self_span: Span) -> Result<PyExpr, Diagnostic> {
        if self.eat_op(".").is_none() {
            return Err(self.error(
                self_span,
                "unsupported construct: 'self' used as a value (read an attribute, 'self.x')",
            ));
        }
        let (attr, span) = self.expect_name()?;
        let whole = self_span.to(span);
        if self.is_op("(") {
            return Err(self.error(
                whole,
                format!("unsupported construct: a method call 'self.{attr}(...)' (only ode() itself is compiled)"),
            ));
        }
        if self.is_op(".") {
            return Err(self.error(
                self.here(),
                format!("unsupported construct: attribute access on 'self.{attr}'"),
            ));
        }
        Ok(PyExpr::SelfAttr(attr, whole))
    }

    fn module_call(&mut self, module: &str, start: Span) -> Result<PyExpr, Diagnostic> {
        self.advance(); // '.'
        let (f, span) = self.expect_name()?;
        let whole = start.to(span);
        if self.is_op(".") {
            // `np.random.rand(...)`, `np.linalg.norm(...)`: a submodule.
            let mut path = format!("{module}.{f}");
            let mut end = span;
            while self.eat_op(".").is_some() {
                let (part, sp) = self.expect_name()?;
                path = format!("{path}.{part}");
                end = sp;
            }
            let what = if self.is_op("(") {
                format!("a call to '{path}'")
            } else {
                format!("'{path}'")
            };
            return Err(self
                .error(start.to(end), format!("unsupported construct: {what} (ode() may call numpy's math functions, e.g. np.exp)"))
                .suggest("random numbers and other library calls cannot run inside the generated kernel"));
        }
        if !self.is_op("(") {
            if f == "pi" || f == "e" {
                let v = if f == "pi" {
                    std::f64::consts::PI
                } else {
                    std::f64::consts::E
                };
                return Ok(PyExpr::Num(v, whole));
            }
            return Err(self.error(
                whole,
                format!("unsupported construct: '{module}.{f}' used as a value (call functions, e.g. np.exp(x))"),
            ));
        }
        if !CALLABLE.iter().any(|(n, _)| *n == f) {
            let near = nearest_names(&f, CALLABLE.iter().map(|(n, _)| *n));
            let mut d = self.error(
                whole,
                format!("unsupported construct: a call to the unknown function '{module}.{f}'"),
            );
            d = d.suggest(if near.is_empty() {
                format!(
                    "ode() may call abs, min, max and np.{}",
                    CALLABLE
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", np.")
                )
            } else {
                format!(
                    "did you mean {}?",
                    near.iter()
                        .map(|n| format!("'{module}.{n}'"))
                        .collect::<Vec<_>>()
                        .join(" or ")
                )
            });
            return Err(d);
        }
        self.call_args(canonical(&f), whole)
    }

    fn builtin_call(&mut self, f: &str, span: Span) -> Result<PyExpr, Diagnostic> {
        if !BUILTINS.contains(&f) {
            let mut d = self.error(
                span,
                format!("unsupported construct: a call to the unknown function '{f}'"),
            );
            if CALLABLE.iter().any(|(n, _)| *n == f) {
                d = d.suggest(format!("write it as np.{f}(...)"));
            } else {
                d = d.suggest("ode() may call abs, min, max and np.exp, np.power, np.cbrt, np.sqrt, np.log, ...");
            }
            return Err(d);
        }
        self.call_args(canonical(f), span)
    }

    fn call_args(&mut self, f: &str, span: Span) -> Result<PyExpr, Diagnostic> {
        self.advance(); // '('
        let mut args = Vec::new();
        let mut height = 0;
        while !self.is_op(")") {
            if matches!(self.peek_tok(), Some(Tok::Name(_)))
                && matches!(self.peek_at(1), Some(Tok::Op("=")))
            {
                return Err(self.error(
                    self.here(),
                    "unsupported construct: a keyword argument in a call",
                ));
            }
            if self.is_op("*") || self.is_op("**") {
                return Err(self.error(
                    self.here(),
                    "unsupported construct: argument unpacking in a call",
                ));
            }
            args.push(self.expression()?);
            height = height.max(self.last_height());
            if self.eat_op(",").is_none() {
                break;
            }
        }
        let close = self.expect_op(")", "')' to close the call")?;
        self.built(height + 1, span)?;
        let arity = CALLABLE
            .iter()
            .find(|(n, _)| *n == f)
            .map(|(_, a)| *a)
            .unwrap_or(1);
        if args.len() != arity {
            return Err(self.error(
                span.to(close),
                format!("{f}() takes {arity} argument(s) here, got {}", args.len()),
            ));
        }
        Ok(PyExpr::Call(f.to_string(), args, span))
    }
}

/// One name per function: builtins and numpy aliases map to the [`CALLABLE`] names.
fn canonical(f: &str) -> &str {
    match f {
        "min" | "fmin" => "minimum",
        "max" | "fmax" => "maximum",
        "fabs" | "absolute" => "abs",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_oizumi() {
        let m = parse_ode(&crate::spec::seed000_oizumi_source()).unwrap();
        assert_eq!(
            m.args.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(),
            ["input", "f"]
        );
        assert_eq!(m.body.len(), 4);
        let Stmt::If { branches, orelse } = &m.body[3] else {
            panic!("{:?}", m.body[3])
        };
        assert_eq!(branches.len(), 1);
        assert_eq!(branches[0].1.len(), 3);
        assert_eq!(orelse.len(), 1);
        assert!(matches!(
            &branches[0].1[1],
            Stmt::Assign { target: Target::SelfAttr(a), op: AssignOp::Add, .. } if a == "g"
        ));
    }

    #[test]
    fn elif_chains_and_implicit_line_joining() {
        let src = "def ode(self, x=0.):\n    if x > 1:\n        y = (1 +\n             2)\n    elif x > 0:  # c\n        y = 2\n    else:\n        y = 3\n    self.d_v = y if x else -y\n";
        let m = parse_ode(src).unwrap();
        let Stmt::If { branches, orelse } = &m.body[0] else {
            panic!()
        };
        assert_eq!(branches.len(), 2);
        assert_eq!(orelse.len(), 1);
        assert!(matches!(
            &m.body[1],
            Stmt::Assign {
                value: PyExpr::IfElse(..),
                ..
            }
        ));
    }

    #[test]
    fn chained_comparison_becomes_and() {
        let m = parse_ode("def ode(self):\n    self.d_v = 0 < self.v < 1\n").unwrap();
        let Stmt::Assign { value, .. } = &m.body[0] else {
            panic!()
        };
        assert!(matches!(value, PyExpr::Binary(BinOp::And, ..)));
    }

    fn error_of(body: &str) -> Diagnostic {
        parse_ode(&format!("def ode(self, x=0.):\n{body}")).unwrap_err()
    }

    #[test]
    fn unsupported_constructs_are_named_and_located() {
        let cases: &[(&str, &str, usize, usize)] = &[
            (
                "    for k in range(3):\n        pass\n",
                "a 'for' loop",
                2,
                5,
            ),
            ("    while x:\n        pass\n", "a 'while' loop", 2, 5),
            (
                "    def g():\n        pass\n",
                "nested function definition",
                2,
                5,
            ),
            ("    import math\n", "an import", 2, 5),
            ("    y = [a for a in b]\n", "list comprehension", 2, 9),
            (
                "    y = np.random(1)\n",
                "unknown function 'np.random'",
                2,
                9,
            ),
            ("    y = foo(1)\n", "unknown function 'foo'", 2, 9),
            ("    y = self.a.b\n", "attribute access on 'self.a'", 2, 15),
            ("    y = x.real\n", "attribute access on 'x'", 2, 10),
            (
                "    y = self.helper(1)\n",
                "method call 'self.helper(...)'",
                2,
                9,
            ),
            ("    y = z[0]\n", "a subscript", 2, 10),
            ("    y = 'a'\n", "a string in an expression", 2, 9),
            ("    y = lambda: 1\n", "a lambda", 2, 9),
            ("    return 1\n", "a 'return' statement", 2, 5),
        ];
        for (body, needle, line, col) in cases {
            let e = error_of(body);
            assert!(e.message.contains(needle), "{body:?}: {}", e.render());
            let s = e.span.unwrap();
            assert_eq!((s.line, s.col), (*line, *col), "{body:?}: {}", e.render());
        }
    }

    #[test]
    fn bad_indentation_is_reported() {
        let e = parse_ode("def ode(self):\n    y = 1\n  z = 2\n").unwrap_err();
        assert!(e.message.contains("indentation"), "{}", e.render());
        assert_eq!(e.span.unwrap().line, 3);
    }
}
