//! Tokens of the shared expression language (Python-like operators), with their places.

use crate::diagnostics::{Diagnostic, Span};
use crate::spec::names::describe_char;

#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    Num(f64),
    Name(String),
    Op(&'static str),
    LParen,
    RParen,
    Comma,
    Colon,
    Semicolon,
    Newline,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Token {
    pub tok: Tok,
    pub span: Span,
}

// Longest operators first so that `**` wins over `*` and `<=` over `<`.
const OPERATORS: &[&str] = &[
    "**", "<=", ">=", "==", "!=", "+=", "-=", "*=", "/=", "+", "-", "*", "/", "<", ">", "=", "%",
];

/// A number or a name, as both languages spell them.
pub(crate) enum Word {
    Number(f64),
    Name(String),
}

/// The number or name that starts at `chars[start]`, with its end: a number is digits and points
/// (and the `separator`, Python's `_`, where the language has one), then an exponent
/// `e[+-]digits` when one follows; a malformed number is the message that says so. `None` when
/// neither starts there.
pub(crate) fn scan_word(
    chars: &[char],
    start: usize,
    separator: Option<char>,
) -> Option<(Result<Word, String>, usize)> {
    let c = chars[start];
    let mut i = start;
    if c.is_alphabetic() || c == '_' {
        while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
            i += 1;
        }
        return Some((Ok(Word::Name(chars[start..i].iter().collect())), i));
    }
    if !(c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()))) {
        return None;
    }
    while i < chars.len()
        && (chars[i].is_ascii_digit() || chars[i] == '.' || Some(chars[i]) == separator)
    {
        i += 1;
    }
    if i < chars.len() && (chars[i] == 'e' || chars[i] == 'E') {
        let mut j = i + 1;
        if j < chars.len() && (chars[j] == '+' || chars[j] == '-') {
            j += 1;
        }
        if j < chars.len() && chars[j].is_ascii_digit() {
            i = j;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
        }
    }
    let text: String = chars[start..i].iter().filter(|c| **c != '_').collect();
    let value = text
        .parse()
        .map(Word::Number)
        .map_err(|_| format!("malformed number '{text}'"));
    Some((value, i))
}

/// Splits `src` into tokens; `field` names the model field for error messages.
/// `#` starts a comment that runs to the end of the line.
/// Inside parentheses a line break continues the expression (as in Python and Brian2), so no
/// `Newline` token is emitted there.
pub fn tokenize(src: &str, field: &str) -> Result<Vec<Token>, Diagnostic> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    for (li, line) in src.lines().enumerate() {
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            let col = i + 1;
            let span1 = Span::new(li + 1, col, 1);
            if c == '#' {
                break;
            }
            if c.is_whitespace() {
                i += 1;
                continue;
            }
            if let Some((word, end)) = scan_word(&chars, i, None) {
                let span = Span::new(li + 1, col, end - i);
                let tok = match word.map_err(|e| Diagnostic::new(field, e).at(src, span))? {
                    Word::Number(v) => Tok::Num(v),
                    Word::Name(name) => Tok::Name(name),
                };
                out.push(Token { tok, span });
                i = end;
                continue;
            }
            let simple = match c {
                '(' => Some(Tok::LParen),
                ')' => Some(Tok::RParen),
                ',' => Some(Tok::Comma),
                ':' => Some(Tok::Colon),
                ';' => Some(Tok::Semicolon),
                _ => None,
            };
            if let Some(tok) = simple {
                match tok {
                    Tok::LParen => depth += 1,
                    Tok::RParen => depth = depth.saturating_sub(1),
                    _ => {}
                }
                out.push(Token { tok, span: span1 });
                i += 1;
                continue;
            }
            let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
            if let Some(op) = OPERATORS.iter().find(|op| rest.starts_with(**op)) {
                out.push(Token {
                    tok: Tok::Op(op),
                    span: Span::new(li + 1, col, op.len()),
                });
                i += op.len();
                continue;
            }
            return Err(Diagnostic::new(
                field,
                format!("unexpected character {}", describe_char(c)),
            )
            .at(src, span1));
        }
        if depth == 0 {
            out.push(Token {
                tok: Tok::Newline,
                span: Span::new(li + 1, chars.len() + 1, 1),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizes_numbers_names_and_operators() {
        let t = tokenize("dv/dt = -v**2 + 1.5e-3 # comment", "equations").unwrap();
        let toks: Vec<Tok> = t.into_iter().map(|t| t.tok).collect();
        assert_eq!(
            toks,
            vec![
                Tok::Name("dv".into()),
                Tok::Op("/"),
                Tok::Name("dt".into()),
                Tok::Op("="),
                Tok::Op("-"),
                Tok::Name("v".into()),
                Tok::Op("**"),
                Tok::Num(2.0),
                Tok::Op("+"),
                Tok::Num(1.5e-3),
                Tok::Newline
            ]
        );
    }

    #[test]
    fn line_breaks_inside_parentheses_continue_the_expression() {
        let t = tokenize("dv/dt = (a -\n b)/tau : volt\nx : 1", "equations").unwrap();
        let newlines = t.iter().filter(|t| t.tok == Tok::Newline).count();
        assert_eq!(newlines, 2);
        let b = t.iter().find(|t| t.tok == Tok::Name("b".into())).unwrap();
        assert_eq!((b.span.line, b.span.col), (2, 2));
    }

    #[test]
    fn bad_character_is_located() {
        let e = tokenize("x = 1\ny = 2 $ 3", "equations").unwrap_err();
        assert_eq!(e.span, Some(Span::new(2, 7, 1)));
    }
}
