//! Where a scheme that does not apply is stopped, in the equations as the user wrote them: a
//! conservative classification of each term of the syntax tree (a number, free of the
//! variables, linear in them, or not linear) finds the innermost term that breaks linearity, and
//! the caret goes under it ([`EquationTerms`], the equation front end's
//! [`Explain`](crate::frontend::method::Explain)).

use std::collections::{HashMap, HashSet};

use super::equations::{EquationLine, LineKind};
use crate::diagnostics::Span;
use crate::frontend::method::{Explain, Term};
use crate::frontend::syntax::ast::{Ast, UnaryOp};
use crate::ir::{BinOp, Dynamics, Symbol, VarId};
use crate::spec::{Method, ModelSpec};

/// The equations of a model being lowered, as the term locator reads them.
pub(crate) struct EquationTerms<'a> {
    pub spec: &'a ModelSpec,
    pub equations: &'a str,
    pub lines: &'a [EquationLine],
    pub symbols: &'a [Symbol],
    pub states: &'a Dynamics,
}

impl Explain for EquationTerms<'_> {
    fn derivative_name(&self, x: &str) -> String {
        format!("d{x}/dt")
    }

    fn locate_term(&self, of: VarId, method: Method) -> Option<Term> {
        let name = |v: VarId| self.symbols[v.index()].name.clone();
        let of = name(of);
        let strict = method == Method::Exact;
        let linear: HashSet<String> = if strict {
            crate::ir::group::integrated(self.states)
                .into_iter()
                .map(|(v, _)| name(v))
                .collect()
        } else {
            [of.clone()].into_iter().collect()
        };
        let spec = self.spec;
        let mut numbers: HashSet<String> = spec
            .constants
            .keys()
            .filter(|k| !spec.per_neuron.contains(k) && !spec.per_step.contains(k))
            .cloned()
            .collect();
        numbers.insert("dt".into());
        let mut loc = Locator {
            src: self.equations,
            lines: self.lines,
            linear,
            numbers,
            strict,
            memo: HashMap::new(),
        };
        let line = self
            .lines
            .iter()
            .find(|l| l.name == of && l.kind == LineKind::Differential)?;
        match loc.class(line.expr.as_ref()?) {
            Class::Bad(span) => Some(Term::new("equations", self.equations, loc.balanced(span))),
            _ => None,
        }
    }
}

/// How a term depends on the variables that must appear linearly.
#[derive(Clone, Debug)]
enum Class {
    /// A number after constant folding.
    Number,
    /// Free of the linear variables, but not a number (parameters, other states, inputs).
    Free,
    /// Linear in the variables.
    Linear,
    /// Not allowed; the innermost offending term.
    Bad(Span),
}

struct Locator<'a> {
    src: &'a str,
    lines: &'a [EquationLine],
    /// Names that must appear linearly.
    linear: HashSet<String>,
    /// Names folded to numbers (constants not given per neuron or per step, `dt`).
    numbers: HashSet<String>,
    /// Exact integration: coefficients must be numbers and `t` may not occur.
    strict: bool,
    memo: HashMap<String, Class>,
}

/// The span of a whole term: the parser records only the operator (or the name) of a node.
fn extent(ast: &Ast) -> Span {
    match ast {
        Ast::Num(_, s) | Ast::Bool(_, s) | Ast::Name(_, s) => *s,
        Ast::Unary(_, inner, s) => s.to(extent(inner)),
        Ast::Binary(_, l, r, _) => extent(l).to(extent(r)),
        Ast::Call(_, args, s) => match args.last() {
            Some(a) => s.to(extent(a)),
            None => *s,
        },
    }
}

impl Locator<'_> {
    fn line_chars(&self, span: Span) -> Vec<char> {
        self.src
            .lines()
            .nth(span.line.saturating_sub(1))
            .map(|l| l.chars().collect())
            .unwrap_or_default()
    }

    /// Widens a term's span over the parentheses it opens or closes (syntax trees keep none),
    /// so that the caret covers `(E - v) / tau` and `exp(v / 10)`, not half of them.
    fn balanced(&self, span: Span) -> Span {
        let chars = self.line_chars(span);
        let (mut start, mut end) = (span.col - 1, span.col - 1 + span.len);
        if end > chars.len() {
            return span;
        }
        let mut depth = 0i32;
        let mut unopened = 0;
        for c in &chars[start..end] {
            match c {
                '(' => depth += 1,
                ')' if depth > 0 => depth -= 1,
                ')' => unopened += 1,
                _ => {}
            }
        }
        while unopened > 0 && start > 0 {
            start -= 1;
            match chars[start] {
                '(' => unopened -= 1,
                c if c.is_whitespace() => {}
                _ => return span,
            }
        }
        while depth > 0 && end < chars.len() {
            match chars[end] {
                ')' => depth -= 1,
                c if c.is_whitespace() => {}
                _ => return span,
            }
            end += 1;
        }
        Span::new(span.line, start + 1, end - start)
    }

    fn name(&mut self, name: &str, span: Span) -> Class {
        if self.linear.contains(name) {
            return Class::Linear;
        }
        if self.numbers.contains(name) {
            return Class::Number;
        }
        if name == "t" && self.strict {
            return Class::Bad(span);
        }
        if let Some(c) = self.memo.get(name) {
            return c.clone();
        }
        let lines = self.lines;
        if let Some(line) = lines
            .iter()
            .find(|l| l.name == name && l.kind == LineKind::Subexpression)
        {
            // Cycles were rejected when lowering; mark it while in progress anyway.
            self.memo.insert(name.to_string(), Class::Free);
            let c = match line.expr.as_ref() {
                Some(e) => self.class(e),
                None => Class::Free,
            };
            self.memo.insert(name.to_string(), c.clone());
            return c;
        }
        Class::Free
    }

    /// The sum of two classes (also the class of `where`'s branches).
    fn join(a: Class, b: Class) -> Class {
        match (a, b) {
            (Class::Bad(s), _) | (_, Class::Bad(s)) => Class::Bad(s),
            (Class::Linear, _) | (_, Class::Linear) => Class::Linear,
            (Class::Free, _) | (_, Class::Free) => Class::Free,
            _ => Class::Number,
        }
    }

    /// Anything but a number or a free term inside makes the whole term non-linear.
    fn opaque(&mut self, parts: &[&Ast], span: Span) -> Class {
        let mut out = Class::Number;
        for p in parts {
            match self.class(p) {
                Class::Bad(s) => return Class::Bad(s),
                Class::Linear => return Class::Bad(span),
                c => out = Self::join(out, c),
            }
        }
        out
    }

    fn class(&mut self, ast: &Ast) -> Class {
        match ast {
            Ast::Num(..) | Ast::Bool(..) => Class::Number,
            Ast::Name(n, span) => self.name(n, *span),
            Ast::Unary(UnaryOp::Neg, inner, _) => self.class(inner),
            Ast::Unary(UnaryOp::Not, inner, _) => self.opaque(&[inner.as_ref()], extent(ast)),
            Ast::Binary(op, l, r, _) => {
                let span = extent(ast);
                match op {
                    BinOp::Add | BinOp::Sub => {
                        let a = self.class(l);
                        let b = self.class(r);
                        Self::join(a, b)
                    }
                    BinOp::Mul => {
                        let a = self.class(l);
                        let b = self.class(r);
                        match (a, b) {
                            (Class::Bad(s), _) | (_, Class::Bad(s)) => Class::Bad(s),
                            (Class::Linear, Class::Linear) => Class::Bad(span),
                            (Class::Linear, Class::Free) | (Class::Free, Class::Linear)
                                if self.strict =>
                            {
                                Class::Bad(span)
                            }
                            (a, b) => Self::join(a, b),
                        }
                    }
                    BinOp::Div => {
                        let a = self.class(l);
                        let b = self.class(r);
                        match (a, b) {
                            (Class::Bad(s), _) | (_, Class::Bad(s)) => Class::Bad(s),
                            (_, Class::Linear) => Class::Bad(span),
                            (Class::Linear, Class::Free) if self.strict => Class::Bad(span),
                            (a, b) => Self::join(a, b),
                        }
                    }
                    BinOp::Pow => {
                        let base = self.class(l);
                        let exp = self.class(r);
                        match (base, exp) {
                            (Class::Bad(s), _) | (_, Class::Bad(s)) => Class::Bad(s),
                            (_, Class::Linear) => Class::Bad(span),
                            (Class::Linear, _) if matches!(**r, Ast::Num(e, _) if e == 1.0) => {
                                Class::Linear
                            }
                            (Class::Linear, _) => Class::Bad(span),
                            (a, b) => Self::join(a, b),
                        }
                    }
                    _ => self.opaque(&[l.as_ref(), r.as_ref()], span),
                }
            }
            Ast::Call(f, args, _) => {
                let span = &extent(ast);
                if f == "where" && args.len() == 3 {
                    if let Class::Bad(s) = self.opaque(&[&args[0]], *span) {
                        return Class::Bad(s);
                    }
                    let a = self.class(&args[1]);
                    let b = self.class(&args[2]);
                    return Self::join(a, b);
                }
                let parts: Vec<&Ast> = args.iter().collect();
                self.opaque(&parts, *span)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostics::Diagnostic;
    use crate::spec::Refractory;

    fn spec(equations: &str, method: Option<Method>) -> ModelSpec {
        let spec =
            ModelSpec::from_equations(equations, 0.1).constants([("tau", 10.0), ("E", -65.0)]);
        match method {
            Some(m) => spec.method(m),
            None => spec,
        }
    }

    /// Lowering resolves the scheme: the group's method, or the error that explains it.
    fn resolve(s: &ModelSpec) -> Result<Method, Diagnostic> {
        crate::frontend::lower(s).map(|ir| ir.method)
    }

    #[test]
    fn automatic_choice_follows_brian2() {
        let lif = spec("dv/dt = (E - v + I) / tau : volt\nI : amp", None);
        assert_eq!(resolve(&lif).unwrap(), Method::Exact);
        let osc = spec("dx/dt = v : 1\ndv/dt = -4*x - 0.1*v : 1", None);
        assert_eq!(resolve(&osc).unwrap(), Method::Exact);
        // Non-linear, or a per-neuron coefficient: Brian2 falls back to euler.
        let quad = spec("dv/dt = v**2 / tau : 1", None);
        assert_eq!(resolve(&quad).unwrap(), Method::Euler);
        let mut per_neuron = lif.clone();
        per_neuron.per_neuron = vec!["tau".into()];
        assert_eq!(resolve(&per_neuron).unwrap(), Method::Euler);
        let timed = spec("dv/dt = (sin(t) - v) / tau : 1", None);
        assert_eq!(resolve(&timed).unwrap(), Method::Euler);
    }

    #[test]
    fn exponential_euler_names_the_nonlinear_term() {
        let s = spec(
            "dv/dt = (E - v) / tau + w * v**2 : volt\ndw/dt = -w / tau : 1",
            Some(Method::ExponentialEuler),
        );
        let d = resolve(&s).unwrap_err();
        assert_eq!(d.field, "equations");
        assert!(
            d.message
                .contains("the term 'v**2' in dv/dt is not linear in v"),
            "{}",
            d.render()
        );
        let span = d.span.unwrap();
        assert_eq!(
            (span.line, span.col, span.len),
            (1, 29, 4),
            "{}",
            d.render()
        );
        assert!(d.suggestion.unwrap().contains("rk4"));
        // Linear in its own variable with coefficients in another: fine.
        let s = spec(
            "dv/dt = (E - v) / tau + w * v : volt\ndw/dt = -w / tau : 1",
            Some(Method::ExponentialEuler),
        );
        assert_eq!(resolve(&s).unwrap(), Method::ExponentialEuler);
    }

    #[test]
    fn nonlinear_term_in_a_subexpression_is_located_there() {
        let s = spec(
            "dv/dt = (E - v) / tau + g : volt\ng = exp(v / 10) : 1",
            Some(Method::ExponentialEuler),
        );
        let d = resolve(&s).unwrap_err();
        let span = d.span.unwrap();
        assert_eq!(span.line, 2, "{}", d.render());
        assert!(d.message.contains("'exp(v / 10)'"), "{}", d.render());
    }

    #[test]
    fn exact_explains_coefficients_that_are_not_constant() {
        let s = spec(
            "dv/dt = (E - v) / tau + w * v : volt\ndw/dt = -w / tau : 1",
            Some(Method::Exact),
        );
        let d = resolve(&s).unwrap_err();
        assert!(
            d.message.contains("'exact' needs linear equations"),
            "{}",
            d.render()
        );
        assert!(
            d.message
                .contains("the term 'w * v' in dv/dt is not linear in the state variables"),
            "{}",
            d.render()
        );
        let mut s = spec("dv/dt = (E - v) / tau : volt", Some(Method::Exact));
        s.per_neuron = vec!["tau".into()];
        let d = resolve(&s).unwrap_err();
        assert!(d.message.contains("not constant"), "{}", d.render());
        assert!(
            d.message.contains("the term '(E - v) / tau' in dv/dt gives v a coefficient that is not constant (it reads 'tau')"),
            "{}",
            d.render()
        );
        let s = spec("dv/dt = (sin(t) - v) / tau : 1", Some(Method::Exact));
        let d = resolve(&s).unwrap_err();
        assert!(d.message.contains("'t'"), "{}", d.render());
    }

    #[test]
    fn refractory_clamp_keeps_exact_applicable() {
        let mut s = spec(
            "dv/dt = (E - v) / tau : volt (unless refractory)",
            Some(Method::Exact),
        );
        s.refractory = Some(Refractory::Duration(2.0));
        s.threshold = Some("v > -50".into());
        assert_eq!(resolve(&s).unwrap(), Method::Exact);
    }

    #[test]
    fn zero_substeps_is_an_error() {
        let mut s = spec("dv/dt = -v / tau : 1", None);
        s.substeps = 0;
        assert_eq!(resolve(&s).unwrap_err().field, "substeps");
    }
}
