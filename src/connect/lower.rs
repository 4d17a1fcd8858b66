//! A connection spec -> [`ConnectIr`]: the rule, with its expressions (`condition`, `p`, `n`)
//! lowered by the Brian2 expression lowering to one DAG, and the spec in canonical form.
//!
//! The names an expression may read are Brian2's for `Synapses.connect`: `i` and `j` (the
//! presynaptic and postsynaptic neuron, each counted within its group), `N_pre` and `N_post`,
//! `x_pre` / `x_post` for the variables the caller provides, named constants and unit names.
//! Everything is computed in float64 (as Brian2 does), so `i`, `j` are exact.
//!
//! The canonical spec keeps only the variables and constants that the expressions read (sorted),
//! so that two rules that differ only in what they could have read share a kernel, and the call
//! passes exactly the variables the kernel reads.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::spec::{ConnectSpec, NumberOrExpr, Rule};
use crate::diagnostics::Diagnostic;
use crate::frontend::brian::expr::{common_name, unknown_name, Place, Scope};
use crate::frontend::syntax::parser::parse_expression;
use crate::ir::{ExprArena, ExprId, IndexOf, Ty, VarId};
use crate::spec::names::is_identifier;
use crate::types::ElemType;

/// The most synapses one pair may get (`n`), and the most draws of a fixed degree (`k`): row
/// counts and indices stay within int32.
pub const MAX_PER_ROW: u64 = i32::MAX as u64;

/// What a variable of the DAG stands for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Value {
    /// `i` (`IndexOf::Pre`) or `j` (`IndexOf::Post`).
    Index(IndexOf),
    /// `N_pre` or `N_post`.
    Count(IndexOf),
    /// A presynaptic group variable, by its position in [`ConnectIr::pre_variables`].
    PreVariable(usize),
    /// A postsynaptic group variable, by its position in [`ConnectIr::post_variables`].
    PostVariable(usize),
}

/// The probability that a candidate pair is connected.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Probability {
    /// Every pair that passes the condition (p = 1).
    Always,
    /// No pair (p = 0, or a condition that is always false).
    Never,
    /// One number strictly between 0 and 1: the candidates are drawn by geometric skipping.
    Constant(f64),
    /// An expression evaluated for each pair, then one uniform draw per pair.
    PerPair(ExprId),
}

/// The number of synapses made for a connected pair.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Multiplicity {
    Constant(u64),
    PerPair(ExprId),
}

/// Brian2's `connect(condition, p, n)` after lowering.
#[derive(Clone, Debug, PartialEq)]
pub struct PairsIr {
    pub condition: Option<ExprId>,
    pub p: Probability,
    pub n: Multiplicity,
    pub allow_self: bool,
}

/// A fixed degree: `k` draws per row, from the other side's population.
#[derive(Clone, Debug, PartialEq)]
pub struct DegreeIr {
    /// Which side the rows are (the draws come from the other).
    pub rows: super::Rows,
    pub k: u64,
    pub replace: bool,
    pub allow_self: bool,
}

/// A rule after lowering.
#[derive(Clone, Debug, PartialEq)]
pub enum RuleIr {
    Pairs(PairsIr),
    Degree(DegreeIr),
}

impl RuleIr {
    /// Which side the rows of the kernels are.
    pub fn rows(&self) -> super::Rows {
        match self {
            RuleIr::Pairs(_) => super::Rows::Pre,
            RuleIr::Degree(d) => d.rows,
        }
    }
}

/// A lowered connection rule.
#[derive(Clone, Debug)]
pub struct ConnectIr {
    pub arena: ExprArena,
    /// What each `VarId` of the arena stands for.
    pub values: Vec<Value>,
    pub rule: RuleIr,
    /// The presynaptic variables the expressions read, in the order the call passes them.
    pub pre_variables: Vec<String>,
    pub post_variables: Vec<String>,
}

impl ConnectIr {
    pub fn value(&self, v: VarId) -> &Value {
        &self.values[v.index()]
    }
}

/// Lowers `spec`, returning the rule and the spec in canonical form, or the first error (with
/// its place in the field that holds it: `condition`, `p`, `n`, `k`, ...).
pub fn lower(spec: &ConnectSpec) -> Result<(ConnectIr, ConnectSpec), Diagnostic> {
    check_names(spec)?;
    let mut cx = ConnectScope::new(spec);
    let rule = match &spec.rule {
        Rule::Pairs {
            condition,
            p,
            n,
            allow_self,
        } => {
            let condition = condition
                .as_ref()
                .map(|text| cx.lower_field("condition", text, Ty::Bool))
                .transpose()?;
            let mut p = cx.probability(p)?;
            // A condition that folds to a truth value is no condition, or no synapse.
            if condition.is_some_and(|c| cx.arena.as_bool(c) == Some(false)) {
                p = Probability::Never;
            }
            let condition = condition.filter(|c| cx.arena.as_bool(*c).is_none());
            let n = cx.multiplicity(n)?;
            RuleIr::Pairs(PairsIr {
                condition,
                p,
                n,
                allow_self: *allow_self,
            })
        }
        Rule::FixedOutDegree {
            k,
            replace,
            allow_self,
        }
        | Rule::FixedInDegree {
            k,
            replace,
            allow_self,
        } => {
            if *k > MAX_PER_ROW {
                return Err(Diagnostic::new(
                    "k",
                    format!("a degree of {k} is more than 2^31 - 1 synapses per neuron"),
                ));
            }
            RuleIr::Degree(DegreeIr {
                rows: spec.rows(),
                k: *k,
                replace: *replace,
                allow_self: *allow_self,
            })
        }
    };
    Ok(cx.finish(spec, rule))
}

/// The variable and constant names the spec declares: identifiers, each once, none that
/// shadows a name with a meaning while connecting.
fn check_names(spec: &ConnectSpec) -> Result<(), Diagnostic> {
    let mut seen: HashMap<(&str, &str), ()> = HashMap::new();
    let groups = [
        ("pre_variables", &spec.pre_variables),
        ("post_variables", &spec.post_variables),
    ];
    for (field, names) in groups {
        for name in names.iter() {
            if !is_identifier(name) {
                return Err(Diagnostic::new(
                    field,
                    format!("{name:?} is not a variable name"),
                ));
            }
            if seen.insert((field, name), ()).is_some() {
                return Err(Diagnostic::new(field, format!("'{name}' is given twice")));
            }
        }
    }
    for (name, value) in &spec.constants {
        if !is_identifier(name) || RESERVED.contains(&name.as_str()) {
            return Err(Diagnostic::new(
                "constants",
                format!("'{name}' cannot be a constant's name"),
            ));
        }
        if !value.is_finite() {
            return Err(Diagnostic::new(
                "constants",
                format!("constant '{name}' is {value}, not a finite number"),
            ));
        }
    }
    Ok(())
}

/// Names with a meaning in every connection rule.
const RESERVED: &[&str] = &["i", "j", "N_pre", "N_post"];

/// How names resolve while lowering a rule's expressions.
struct ConnectScope<'a> {
    spec: &'a ConnectSpec,
    arena: ExprArena,
    values: Vec<Value>,
    ids: HashMap<Value, VarId>,
    /// The variables and constants read, by name.
    pre_read: BTreeSet<String>,
    post_read: BTreeSet<String>,
    constants_read: BTreeSet<String>,
    /// How deep lowering recurses now (`Scope::depth`).
    depth: usize,
}

impl<'a> ConnectScope<'a> {
    fn new(spec: &'a ConnectSpec) -> Self {
        ConnectScope {
            spec,
            arena: ExprArena::new(),
            values: Vec::new(),
            ids: HashMap::new(),
            pre_read: BTreeSet::new(),
            post_read: BTreeSet::new(),
            constants_read: BTreeSet::new(),
            depth: 0,
        }
    }

    /// The DAG variable of `value` (one per value).
    fn var(&mut self, value: Value) -> ExprId {
        let id = match self.ids.get(&value) {
            Some(id) => *id,
            None => {
                let id = VarId::at(self.values.len());
                self.values.push(value.clone());
                self.ids.insert(value, id);
                id
            }
        };
        self.arena.var(id)
    }

    /// Parses and lowers one field, which must be of type `want`.
    fn lower_field(&mut self, field: &str, text: &str, want: Ty) -> Result<ExprId, Diagnostic> {
        let ast = parse_expression(text, field)?;
        let (e, ty) = self.expr(&ast, field, text)?;
        if ty != want {
            let message = match want {
                Ty::Bool => format!(
                    "the {field} must be a truth value (e.g. 'i != j'), but this is a number"
                ),
                Ty::Real => format!("{field} must be a number, but this is a condition"),
            };
            // The whole expression is what has the wrong type.
            let d = Diagnostic::new(field, message).at(text, whole(text));
            return Err(match want {
                Ty::Bool => d.suggest("compare it explicitly, e.g. 'x_pre > 0'"),
                Ty::Real => {
                    d.suggest("use where(condition, a, b) to turn a condition into a number")
                }
            });
        }
        Ok(e)
    }

    /// A number, or an expression: folded to a number where it can be (with its text, which an
    /// error about the value points into), else its DAG.
    fn number_or_expr<'t>(
        &mut self,
        field: &str,
        value: &'t NumberOrExpr,
    ) -> Result<Folded<'t>, Diagnostic> {
        Ok(match value {
            NumberOrExpr::Number(v) => Folded::Number(*v, None),
            NumberOrExpr::Expr(text) => {
                let e = self.lower_field(field, text, Ty::Real)?;
                match self.arena.as_const(e) {
                    Some(v) => Folded::Number(v, Some(text)),
                    None => Folded::Expr(e),
                }
            }
        })
    }

    fn probability(&mut self, p: &NumberOrExpr) -> Result<Probability, Diagnostic> {
        let (value, text) = match self.number_or_expr("p", p)? {
            Folded::Number(value, text) => (value, text),
            Folded::Expr(e) => return Ok(Probability::PerPair(e)),
        };
        if !(0.0..=1.0).contains(&value) {
            let message = format!("the probability p must be in [0, 1], got {value}");
            return Err(value_error("p", message, text));
        }
        Ok(if value == 0.0 {
            Probability::Never
        } else if value == 1.0 {
            Probability::Always
        } else {
            Probability::Constant(value)
        })
    }

    fn multiplicity(&mut self, n: &NumberOrExpr) -> Result<Multiplicity, Diagnostic> {
        let (value, text) = match self.number_or_expr("n", n)? {
            Folded::Number(value, text) => (value, text),
            Folded::Expr(e) => return Ok(Multiplicity::PerPair(e)),
        };
        if !(value >= 0.0 && value.fract() == 0.0 && value <= MAX_PER_ROW as f64) {
            let message = format!(
                "the number of synapses per pair n must be an integer in 0..=2^31-1, got {value}"
            );
            return Err(value_error("n", message, text));
        }
        Ok(Multiplicity::Constant(value as u64))
    }

    /// The IR and the canonical spec: the variables renumbered in sorted order of the names
    /// read, the constants cut to those read.
    fn finish(self, spec: &ConnectSpec, rule: RuleIr) -> (ConnectIr, ConnectSpec) {
        let pre_variables: Vec<String> = self.pre_read.into_iter().collect();
        let post_variables: Vec<String> = self.post_read.into_iter().collect();
        // While lowering, a variable's value holds its position in the spec's list; now its
        // position among the variables read.
        let renumber = |names: &[String], read: &[String], k: usize| {
            read.iter()
                .position(|n| *n == names[k])
                .expect("a variable that was read is in the read list")
        };
        let values = self
            .values
            .into_iter()
            .map(|v| match v {
                Value::PreVariable(k) => {
                    Value::PreVariable(renumber(&spec.pre_variables, &pre_variables, k))
                }
                Value::PostVariable(k) => {
                    Value::PostVariable(renumber(&spec.post_variables, &post_variables, k))
                }
                other => other,
            })
            .collect();
        let constants: BTreeMap<String, f64> = spec
            .constants
            .iter()
            .filter(|(name, _)| self.constants_read.contains(*name))
            .map(|(name, v)| (name.clone(), *v))
            .collect();
        let canonical = ConnectSpec {
            rule: spec.rule.clone(),
            pre_variables: pre_variables.clone(),
            post_variables: post_variables.clone(),
            constants,
        };
        let ir = ConnectIr {
            arena: self.arena,
            values,
            rule,
            pre_variables,
            post_variables,
        };
        (ir, canonical)
    }
}

/// A field's value: a number (given, or folded from an expression whose text is kept), or an
/// expression that depends on the pair.
enum Folded<'t> {
    Number(f64, Option<&'t str>),
    Expr(ExprId),
}

/// An error about the value of a field, under the whole expression when it was one.
fn value_error(field: &str, message: String, text: Option<&str>) -> Diagnostic {
    let d = Diagnostic::new(field, message);
    match text {
        Some(text) => d.at(text, whole(text)),
        None => d,
    }
}

/// A span covering the first line of `text` (for errors about a whole expression's value).
fn whole(text: &str) -> crate::diagnostics::Span {
    let first = text.lines().next().unwrap_or("");
    let start = first.len() - first.trim_start().len();
    crate::diagnostics::Span::new(1, start + 1, first.trim().chars().count().max(1))
}

impl Scope for ConnectScope<'_> {
    fn depth(&mut self) -> &mut usize {
        &mut self.depth
    }

    fn precision(&self) -> ElemType {
        ElemType::F64
    }

    fn arena(&mut self) -> &mut ExprArena {
        &mut self.arena
    }

    fn name(&mut self, name: &str, at: Place) -> Result<(ExprId, Ty), Diagnostic> {
        let value = match name {
            "i" => Some(Value::Index(IndexOf::Pre)),
            "j" => Some(Value::Index(IndexOf::Post)),
            "N_pre" => Some(Value::Count(IndexOf::Pre)),
            "N_post" => Some(Value::Count(IndexOf::Post)),
            _ => None,
        };
        if let Some(value) = value {
            return Ok((self.var(value), Ty::Real));
        }
        let sides = [
            ("_pre", &self.spec.pre_variables),
            ("_post", &self.spec.post_variables),
        ];
        for (suffix, names) in sides {
            if let Some(stem) = name.strip_suffix(suffix) {
                if let Some(k) = names.iter().position(|n| n == stem) {
                    let value = if suffix == "_pre" {
                        self.pre_read.insert(stem.to_string());
                        Value::PreVariable(k)
                    } else {
                        self.post_read.insert(stem.to_string());
                        Value::PostVariable(k)
                    };
                    return Ok((self.var(value), Ty::Real));
                }
            }
        }
        if let Some(c) = self.spec.constants.get(name) {
            self.constants_read.insert(name.to_string());
            return Ok((self.arena.constant(*c), Ty::Real));
        }
        if matches!(name, "t" | "dt" | "lastspike" | "not_refractory") {
            return Err(at.error(format!(
                "'{name}' has no value while synapses are created (before the network runs)"
            )));
        }
        // `dt` is refused above, so the value passed here is never read.
        if let Some(found) = common_name(&mut self.arena, f64::NAN, name, at) {
            return found;
        }
        let mut known: Vec<String> = RESERVED.iter().map(|s| s.to_string()).collect();
        known.extend(self.spec.pre_variables.iter().map(|v| format!("{v}_pre")));
        known.extend(self.spec.post_variables.iter().map(|v| format!("{v}_post")));
        known.extend(self.spec.constants.keys().cloned());
        let bare = self
            .spec
            .pre_variables
            .iter()
            .chain(&self.spec.post_variables)
            .any(|v| v == name);
        if bare {
            return Err(at.error(format!("unknown name '{name}'")).suggest(format!(
                "a group's variable is read with its side: '{name}_pre' or '{name}_post'"
            )));
        }
        Err(unknown_name(
            name,
            at,
            known.iter().map(String::as_str),
            "connection rules read i, j, N_pre, N_post, the groups' variables as x_pre / x_post \
             (given with pre_values= / post_values=) and constants",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> ConnectSpec {
        ConnectSpec::from_json(json).unwrap()
    }

    fn error(json: &str) -> String {
        lower(&spec(json)).unwrap_err().render()
    }

    #[test]
    fn pairs_lower_to_their_parts() {
        let (ir, canonical) = lower(&spec(
            r#"{"rule": {"kind": "pairs", "condition": "abs(x_pre - x_post) < w", "p": 0.25},
                "pre_variables": ["y", "x"], "post_variables": ["x"], "constants": {"w": 2, "unused": 1}}"#,
        ))
        .unwrap();
        let RuleIr::Pairs(PairsIr {
            condition, p, n, ..
        }) = ir.rule
        else {
            panic!("{:?}", ir.rule)
        };
        assert_eq!(p, Probability::Constant(0.25));
        assert_eq!(n, Multiplicity::Constant(1));
        assert_eq!(ir.pre_variables, ["x"]);
        assert_eq!(ir.post_variables, ["x"]);
        assert_eq!(canonical.pre_variables, ["x"]);
        assert_eq!(canonical.constants.keys().collect::<Vec<_>>(), ["w"]);
        // `x_pre` renumbered to position 0 among the variables read.
        assert!(ir.values.contains(&Value::PreVariable(0)));
        let c = condition.unwrap();
        let eval = |x_pre: f64, x_post: f64| {
            ir.arena.eval(c, &|v| match ir.value(v) {
                Value::PreVariable(_) => x_pre,
                Value::PostVariable(_) => x_post,
                other => panic!("{other:?}"),
            })
        };
        assert_eq!(eval(1.0, 2.5), 1.0);
        assert_eq!(eval(1.0, 3.5), 0.0);
    }

    #[test]
    fn constant_parts_fold() {
        let (ir, _) = lower(&spec(
            r#"{"rule": {"kind": "pairs", "condition": "1 > 2", "p": "0.5 * 0.5", "n": "2"}}"#,
        ))
        .unwrap();
        assert_eq!(
            ir.rule,
            RuleIr::Pairs(PairsIr {
                condition: None,
                p: Probability::Never,
                n: Multiplicity::Constant(2),
                allow_self: true
            })
        );
        let (ir, _) = lower(&spec(r#"{"rule": {"kind": "pairs", "p": "i / N_pre"}}"#)).unwrap();
        assert!(matches!(
            ir.rule,
            RuleIr::Pairs(PairsIr {
                p: Probability::PerPair(_),
                ..
            })
        ));
    }

    #[test]
    fn mistakes_are_located() {
        let e = error(r#"{"rule": {"kind": "pairs", "condition": "i + j"}}"#);
        assert!(
            e.contains("in condition, line 1, column 1: the condition must be a truth value"),
            "{e}"
        );
        assert!(e.contains("^^^^^"), "{e}");
        let e = error(
            r#"{"rule": {"kind": "pairs", "condition": "abs(i - jj) < 3"}, "post_variables": ["x"]}"#,
        );
        assert!(e.contains("column 9: unknown name 'jj'"), "{e}");
        assert!(e.contains("did you mean 'j'"), "{e}");
        let e =
            error(r#"{"rule": {"kind": "pairs", "condition": "x > 0"}, "pre_variables": ["x"]}"#);
        assert!(e.contains("'x_pre' or 'x_post'"), "{e}");
        let e = error(r#"{"rule": {"kind": "pairs", "p": 1.5}}"#);
        assert!(e.contains("p must be in [0, 1], got 1.5"), "{e}");
        let e = error(r#"{"rule": {"kind": "pairs", "p": "2 * 0.75"}}"#);
        assert!(e.contains("in p, line 1, column 1"), "{e}");
        let e = error(r#"{"rule": {"kind": "pairs", "p": "i > 2"}}"#);
        assert!(
            e.contains("p must be a number, but this is a condition"),
            "{e}"
        );
        let e = error(r#"{"rule": {"kind": "pairs", "n": 1.5}}"#);
        assert!(e.contains("must be an integer"), "{e}");
        let e = error(r#"{"rule": {"kind": "pairs", "n": -1}}"#);
        assert!(e.contains("got -1"), "{e}");
        let e = error(r#"{"rule": {"kind": "pairs", "condition": "t > 0"}}"#);
        assert!(e.contains("no value while synapses are created"), "{e}");
        let e = error(r#"{"rule": {"kind": "fixed_out_degree", "k": 3000000000}}"#);
        assert!(e.contains("in k:"), "{e}");
        let e = error(r#"{"rule": {"kind": "pairs"}, "constants": {"i": 1}}"#);
        assert!(e.contains("'i' cannot be a constant's name"), "{e}");
        let e = error(r#"{"rule": {"kind": "pairs"}, "pre_variables": ["x", "x"]}"#);
        assert!(e.contains("given twice"), "{e}");
    }
}
