//! Brian2-style equation strings.
//!
//! One definition per line:
//! * `dx/dt = expr : unit (flags)`: a differential equation (an integrated state variable);
//! * `x = expr : unit (flags)`: a subexpression, substituted where it is used;
//! * `x : unit (flags)`: a parameter, a per-neuron value the kernel reads but does not integrate.
//!
//! Units are accepted and kept as text (the kernels compute in the numbers the user wrote, see the
//! README's unit convention). Flags are checked against the ones spikeforge understands.

use crate::diagnostics::{Diagnostic, Span};
use crate::frontend::syntax::ast::Ast;
use crate::frontend::syntax::lexer::{tokenize, Tok};
use crate::frontend::syntax::parser::Parser;
use crate::frontend::syntax::units::unknown_unit_name;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineKind {
    Differential,
    Subexpression,
    Parameter,
}

#[derive(Clone, Debug, PartialEq)]
pub struct EquationLine {
    pub kind: LineKind,
    pub name: String,
    pub name_span: Span,
    pub expr: Option<Ast>,
    pub unit: String,
    pub flags: Vec<(String, Span)>,
}

impl EquationLine {
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|(f, _)| f == flag)
    }
}

const KNOWN_FLAGS: &[&str] = &[
    "unless refractory",
    "constant",
    "constant over dt",
    "shared",
];

/// The error for the subexpression `name`, reached again while it is being lowered
/// (`in_progress` is the chain being lowered, its definition at `span` of `src` in `field`), or
/// `None` when it is not in the chain.
pub(crate) fn subexpression_cycle(
    in_progress: &[String],
    name: &str,
    field: &str,
    src: &str,
    span: Span,
) -> Option<Diagnostic> {
    let pos = in_progress.iter().position(|n| n == name)?;
    let mut cycle: Vec<String> = in_progress[pos..].to_vec();
    cycle.push(name.to_string());
    Some(
        Diagnostic::new(
            field,
            format!("cyclic subexpressions: {}", cycle.join(" -> ")),
        )
        .at(src, span),
    )
}

/// Parses every line of an equations string.
pub fn parse_equations(src: &str) -> Result<Vec<EquationLine>, Diagnostic> {
    parse_equations_with_flags(src, &[])
}

/// Parses every line of an equations string that may also carry the flags `extra` (a synapse
/// model's, as one word each: `event_driven`).
pub fn parse_equations_with_flags(
    src: &str,
    extra: &[&str],
) -> Result<Vec<EquationLine>, Diagnostic> {
    const FIELD: &str = "equations";
    let toks = tokenize(src, FIELD)?;
    let mut p = Parser::new(&toks, src, FIELD);
    let mut lines: Vec<EquationLine> = Vec::new();
    loop {
        while matches!(p.peek_tok(), Some(Tok::Newline)) {
            p.advance();
        }
        let Some(first) = p.advance() else { break };
        let Tok::Name(first_name) = &first.tok else {
            return Err(p.error(
                first.span,
                "an equation line starts with 'dx/dt', a name, or 'name : unit'",
            ));
        };
        // `dx/dt = ...`: a name starting with d, then `/ dt`.
        let is_diff = first_name.len() > 1
            && first_name.starts_with('d')
            && matches!(p.peek_tok(), Some(Tok::Op("/")))
            && matches!(p.toks_at(1), Some(Tok::Name(n)) if n == "dt");
        let (kind, name, name_span, expr) = if is_diff {
            p.advance();
            p.advance();
            p.expect(&Tok::Op("="), "'=' after 'd/dt'")?;
            let name = first_name[1..].to_string();
            let span = Span::new(first.span.line, first.span.col + 1, name.chars().count());
            (LineKind::Differential, name, span, Some(p.expression()?))
        } else if p.eat_op("=").is_some() {
            (
                LineKind::Subexpression,
                first_name.clone(),
                first.span,
                Some(p.expression()?),
            )
        } else if matches!(p.peek_tok(), Some(Tok::Colon)) {
            (LineKind::Parameter, first_name.clone(), first.span, None)
        } else {
            return Err(p.error(
                p.here(),
                format!("expected '=' or ':' after '{first_name}'"),
            ));
        };
        let colon = p.expect(
            &Tok::Colon,
            "':' and a unit (use ': 1' for a dimensionless value)",
        )?;
        let (unit, flags) = unit_and_flags(&mut p, src, colon, extra)?;
        if let Some(prev) = lines.iter().find(|l| l.name == name) {
            return Err(p.error(
                name_span,
                format!(
                    "'{name}' is defined twice (first on line {})",
                    prev.name_span.line
                ),
            ));
        }
        lines.push(EquationLine {
            kind,
            name,
            name_span,
            expr,
            unit,
            flags,
        });
    }
    if lines.is_empty() {
        return Err(Diagnostic::new(FIELD, "no equations given"));
    }
    Ok(lines)
}

/// Reads the unit text up to an opening parenthesis or the end of the line, then the flags.
fn unit_and_flags(
    p: &mut Parser,
    src: &str,
    colon: Span,
    extra: &[&str],
) -> Result<(String, Vec<(String, Span)>), Diagnostic> {
    let line_text = src.lines().nth(colon.line - 1).unwrap_or("");
    let mut unit_start: Option<Span> = None;
    let mut unit_end: Option<Span> = None;
    while !matches!(p.peek_tok(), None | Some(Tok::Newline) | Some(Tok::LParen)) {
        let t = p.advance().unwrap();
        match &t.tok {
            Tok::Name(_)
            | Tok::Num(_)
            | Tok::Op("*")
            | Tok::Op("/")
            | Tok::Op("**")
            | Tok::Op("-") => {}
            _ => return Err(p.error(t.span, "unexpected text in the unit")),
        }
        unit_start.get_or_insert(t.span);
        unit_end = Some(t.span);
    }
    let unit = match (unit_start, unit_end) {
        (Some(a), Some(b)) => line_text
            .chars()
            .skip(a.col - 1)
            .take(b.col + b.len - a.col)
            .collect::<String>(),
        _ => {
            return Err(p.error(
                p.here(),
                "missing unit after ':' (use ': 1' for a dimensionless value)",
            ))
        }
    };
    if let (Some(bad), Some(start)) = (unknown_unit_name(&unit), unit_start) {
        let offset = unit.find(&bad).unwrap_or(0);
        let span = Span::new(
            start.line,
            start.col + unit[..offset].chars().count(),
            bad.chars().count(),
        );
        return Err(p
            .error(span, format!("unknown unit '{bad}'"))
            .suggest("use SI names with prefixes (mV, ms, nS, pF, volt, amp/meter**2), '1', 'boolean' or 'integer'"));
    }
    let mut flags = Vec::new();
    if matches!(p.peek_tok(), Some(Tok::LParen)) {
        p.advance();
        loop {
            let mut words = Vec::new();
            let mut span: Option<Span> = None;
            while let Some(Tok::Name(w)) = p.peek_tok() {
                let t = p.advance().unwrap();
                span = Some(span.map_or(t.span, |s| s.to(t.span)));
                words.push(w.clone());
            }
            let Some(span) = span else {
                return Err(p.error(p.here(), "expected a flag name"));
            };
            let flag = words.join(" ");
            if !KNOWN_FLAGS.contains(&flag.as_str()) && !extra.contains(&flag.as_str()) {
                let known: Vec<&str> = KNOWN_FLAGS.iter().chain(extra).copied().collect();
                return Err(p
                    .error(span, format!("unknown flag '{flag}'"))
                    .suggest(format!("known flags: {}", known.join(", "))));
            }
            flags.push((flag, span));
            if matches!(p.peek_tok(), Some(Tok::Comma)) {
                p.advance();
                continue;
            }
            p.expect(&Tok::RParen, "')' to close the flags")?;
            break;
        }
    }
    if !matches!(p.peek_tok(), None | Some(Tok::Newline)) {
        return Err(p.error(p.here(), "unexpected text at the end of the equation"));
    }
    Ok((unit, flags))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_line_forms() {
        let eqs = parse_equations(
            "
            dv/dt = (v_rest - v + R*I) / tau : volt (unless refractory)
            I : amp
            g_tot = ge + gi : siemens  # comment
            ",
        )
        .unwrap();
        assert_eq!(eqs.len(), 3);
        assert_eq!(eqs[0].kind, LineKind::Differential);
        assert_eq!(eqs[0].name, "v");
        assert!(eqs[0].has_flag("unless refractory"));
        assert_eq!(eqs[1].kind, LineKind::Parameter);
        assert_eq!(eqs[1].unit, "amp");
        assert_eq!(eqs[2].kind, LineKind::Subexpression);
        assert_eq!(eqs[2].unit, "siemens");
    }

    #[test]
    fn units_may_be_compound() {
        let eqs = parse_equations("dv/dt = -v/tau : volt/second\nx : 1\ny : metre**2").unwrap();
        assert_eq!(eqs[0].unit, "volt/second");
        assert_eq!(eqs[1].unit, "1");
        assert_eq!(eqs[2].unit, "metre**2");
    }

    #[test]
    fn errors_are_located() {
        let e = parse_equations("dv/dt = -v/tau").unwrap_err();
        assert!(e.message.contains("expected ':'"), "{}", e.message);
        let e = parse_equations("dv/dt = -v/tau : volt (unles refractory)").unwrap_err();
        assert!(e.message.contains("unknown flag"));
        assert_eq!(e.span.unwrap().col, 24);
        let e = parse_equations("dv/dt = -v : 1\ndv/dt = v : 1").unwrap_err();
        assert!(e.message.contains("defined twice"));
        let e = parse_equations("dv/dt = -v : vlot").unwrap_err();
        assert!(e.message.contains("unknown unit 'vlot'"), "{}", e.message);
        assert_eq!(e.span.unwrap().col, 14);
        let e = parse_equations("dv/dt = (-v : 1").unwrap_err();
        assert_eq!(e.span.unwrap().line, 1);
    }
}
