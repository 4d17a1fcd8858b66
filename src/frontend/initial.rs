//! Initial values given as expressions, as Brian2 users set them (`G.v = 'v_r + rand()*(v_t -
//! v_r)'`, here `init_state(n, v='v_r + rand()*(v_t - v_r)')`): Brian2-syntax expressions,
//! lowered against the names of a group and evaluated by the IR's interpreter
//! ([`crate::ir::eval`]) over its elements; never by Python.
//!
//! Statements run in order, each seeing the values set before it (Brian2's sequential
//! assignments). An expression may read the group's variables (their values so far), its
//! constants, its subexpressions, `i`, `N`, `t` (0: a new state), `lastspike` (`-inf`),
//! `not_refractory` (true), units, `pi`, `e` and every function; `rand()` / `randn()` draw from
//! the initial-value stream of [`crate::random`] (keyed by the state's seed; counted by element,
//! statement and call), so the same seed gives the same values on any platform. `dt` has no value
//! yet (a state is made before any run) and is an error.

use std::collections::HashMap;

use super::brian::expr::{common_name, unknown_name, Place, Scope};
use crate::diagnostics::Diagnostic;
use crate::frontend::syntax::parser::parse_expression;
use crate::ir::eval::{evaluate, Column};
use crate::ir::{Draw, ExprArena, ExprId, GroupIr, SymbolKind, Ty, ValueType, VarId};
use crate::random;
use crate::spec::limits::{MAX_NAMES, MAX_TEXT_BYTES};
use crate::spec::ModelSpec;
use crate::types::ElemType;

/// One assignment of an initial value: `target = code`.
#[derive(Clone, Debug, PartialEq)]
pub struct Statement {
    pub target: String,
    pub code: String,
}

/// The values of the statements' targets after running them in order over `n` elements of the
/// group of `spec` whose variables start at `given` (a column per variable: states, parameters,
/// per-element constants; a missing one starts at 0), drawing with `seed`. Integers are
/// truncated toward zero, truth values are 1 or 0.
pub fn initial_values(
    spec: &ModelSpec,
    n: usize,
    seed: u32,
    given: HashMap<String, Column>,
    statements: &[Statement],
) -> Result<Vec<(String, Vec<f64>)>, Diagnostic> {
    if statements.len() > MAX_NAMES {
        return Err(Diagnostic::new(
            "init_state",
            format!(
                "{} initial values given as expressions; at most {MAX_NAMES}",
                statements.len()
            ),
        ));
    }
    if let Some(st) = statements.iter().find(|st| st.code.len() > MAX_TEXT_BYTES) {
        return Err(Diagnostic::new(
            &format!("init_state: {}", st.target),
            format!(
                "the text is {} bytes; a field holds at most {MAX_TEXT_BYTES}",
                st.code.len()
            ),
        ));
    }
    // Lowering the statements recurses as a model's lowering does: on a stack of its own.
    super::stack::on_own_stack(|| run_statements(spec, n, seed, given, statements))
}

/// [`initial_values`] once the sizes are checked, on the calling thread's stack.
fn run_statements(
    spec: &ModelSpec,
    n: usize,
    seed: u32,
    given: HashMap<String, Column>,
    statements: &[Statement],
) -> Result<Vec<(String, Vec<f64>)>, Diagnostic> {
    let ir = super::lower(spec)?;
    let mut values: HashMap<VarId, Column> = HashMap::new();
    for (name, column) in given {
        let v = settable(&ir, &name).ok_or_else(|| {
            Diagnostic::new(
                "init_state",
                format!("'{name}' is not a variable of the model"),
            )
        })?;
        if let Column::Values(x) = &column {
            if x.len() != n {
                return Err(Diagnostic::new(
                    "init_state",
                    format!("'{name}' has {} values for {n} elements", x.len()),
                ));
            }
        }
        values.insert(v, column);
    }
    let mut out: Vec<(String, Vec<f64>)> = Vec::new();
    for (k, st) in statements.iter().enumerate() {
        let field = format!("init_state: {}", st.target);
        let target = settable(&ir, &st.target).ok_or_else(|| {
            Diagnostic::new(
                &field,
                format!(
                    "cannot set '{}' from an expression: it is not a state variable, a parameter or a constant given per element",
                    st.target
                ),
            )
        })?;
        let statement = u32::try_from(k)
            .map_err(|_| Diagnostic::new(&field, "more than 2^32 initial-value statements"))?;
        let mut scope = InitialScope {
            arena: ir.arena.clone(),
            ir: &ir,
            spec,
            draws: Vec::new(),
            depth: 0,
        };
        let ast = parse_expression(&st.code, &field)?;
        let (root, ty) = scope.expr(&ast, &field, &st.code)?;
        let root = scope.without_held(root);
        match (ir.symbol(target).value, ty) {
            (ValueType::Boolean, Ty::Real) => {
                return Err(Diagnostic::new(
                    &field,
                    format!("'{}' is boolean: give it a condition", st.target),
                )
                .at(&st.code, ast.span())
                .suggest("e.g. 'rand() < 0.5'"))
            }
            (ValueType::Real | ValueType::Integer, Ty::Bool) => {
                return Err(Diagnostic::new(
                    &field,
                    "a condition is used where a number is expected",
                )
                .at(&st.code, ast.span())
                .suggest("use int(condition) or where(condition, a, b)"))
            }
            _ => {}
        }
        if let Some(v) = scope
            .arena
            .vars_of(root)
            .into_iter()
            .find(|v| v.index() < ir.symbols.len() && is_drawn_in_steps(&ir, *v))
        {
            return Err(Diagnostic::new(
                &field,
                format!(
                    "'{}' draws its value in every step of a run, so it has none when the state is made",
                    ir.symbol(v).name
                ),
            ));
        }
        let base = ir.symbols.len();
        let draws = scope.draws.clone();
        let column = |v: VarId| -> Column {
            if v.index() >= base {
                let call = u32::try_from(v.index() - base).expect("fewer than 2^32 calls");
                let draw = draws[v.index() - base];
                return Column::Values(
                    (0..n)
                        .map(|e| {
                            let w = random::initial_words(seed, e as u32, statement, call);
                            match draw {
                                Draw::Uniform => random::uniform_f64(w),
                                Draw::Normal => f64::from(random::normal(w)),
                            }
                        })
                        .collect(),
                );
            }
            builtin(&ir, v, n)
                .unwrap_or_else(|| values.get(&v).cloned().unwrap_or(Column::Scalar(0.0)))
        };
        let mut result = evaluate(&scope.arena, &[root], n, &column).remove(0);
        if ir.symbol(target).value == ValueType::Integer {
            result = Column::Values(result.into_values(n).into_iter().map(f64::trunc).collect());
        }
        values.insert(target, result.clone());
        out.retain(|(name, _)| name != &st.target);
        out.push((st.target.clone(), result.into_values(n)));
    }
    Ok(out)
}

/// The variable a statement may set: a state, a parameter or a constant given per element.
fn settable(ir: &GroupIr, name: &str) -> Option<VarId> {
    let v = ir.lookup(name)?;
    matches!(
        ir.symbol(v).kind,
        SymbolKind::State | SymbolKind::Param | SymbolKind::PerNeuronConstant
    )
    .then_some(v)
}

/// Noise and the step's draws: values of a run, none before it.
fn is_drawn_in_steps(ir: &GroupIr, v: VarId) -> bool {
    matches!(ir.symbol(v).kind, SymbolKind::Noise | SymbolKind::Random(_))
}

/// The value of a name with a meaning in every group, in a new state.
fn builtin(ir: &GroupIr, v: VarId, n: usize) -> Option<Column> {
    Some(match ir.symbol(v).kind {
        SymbolKind::Time => Column::Scalar(0.0),
        SymbolKind::LastSpike => Column::Scalar(f64::NEG_INFINITY),
        SymbolKind::NotRefractory => Column::Scalar(1.0),
        SymbolKind::Index(_) => Column::Values((0..n).map(|i| i as f64).collect()),
        SymbolKind::Count(_) => Column::Scalar(n as f64),
        _ => return None,
    })
}

/// How names resolve in an initial value: the group's symbols, its subexpressions and
/// constants, then the names of every group; `rand()` / `randn()` are new variables past the
/// group's symbols (`draws[k]` is the k-th call).
struct InitialScope<'a> {
    arena: ExprArena,
    ir: &'a GroupIr,
    spec: &'a ModelSpec,
    draws: Vec<Draw>,
    /// How deep lowering recurses now (`Scope::depth`).
    depth: usize,
}

impl InitialScope<'_> {
    /// `root` with every `constant over dt` subexpression replaced by its expression (held
    /// values nest in dependency order, so a few passes resolve them).
    fn without_held(&mut self, root: ExprId) -> ExprId {
        let held: HashMap<VarId, ExprId> = self.ir.held.iter().copied().collect();
        let mut e = root;
        for _ in 0..=held.len() {
            e = self.arena.substitute(e, &held);
        }
        e
    }
}

impl Scope for InitialScope<'_> {
    fn depth(&mut self) -> &mut usize {
        &mut self.depth
    }

    fn precision(&self) -> ElemType {
        // Initial values are computed in float64.
        ElemType::F64
    }

    fn arena(&mut self) -> &mut ExprArena {
        &mut self.arena
    }

    fn draw(&mut self, draw: Draw, _at: Place) -> Result<ExprId, Diagnostic> {
        let v = VarId::at(self.ir.symbols.len() + self.draws.len());
        self.draws.push(draw);
        Ok(self.arena.var(v))
    }

    fn name(&mut self, name: &str, at: Place) -> Result<(ExprId, Ty), Diagnostic> {
        if name == "dt" {
            return Err(at
                .error("'dt' has no value when a state is made: the state is made before any run")
                .suggest("write the value itself, or set the variable in a reset or an equation"));
        }
        if let Some(&e) = self.ir.subexpressions.get(name) {
            return Ok((e, self.arena.ty(e)));
        }
        if let Some(v) = self.ir.lookup(name) {
            let sym = self.ir.symbol(v);
            let usable = !matches!(
                sym.kind,
                SymbolKind::PerStep | SymbolKind::Noise | SymbolKind::Random(_)
            );
            if usable && !name.starts_with("sf_") {
                let ty = match sym.value {
                    ValueType::Boolean => Ty::Bool,
                    _ => Ty::Real,
                };
                return Ok((self.arena.var(v), ty));
            }
        }
        if let Some(c) = self.spec.constants.get(name) {
            return Ok((self.arena.constant(*c), Ty::Real));
        }
        if let Some(found) = common_name(&mut self.arena, self.spec.dt, name, at) {
            return found;
        }
        let known = self
            .ir
            .symbols
            .iter()
            .map(|s| s.name.as_str())
            .filter(|n| !n.starts_with("sf_"))
            .chain(self.spec.constants.keys().map(String::as_str))
            .chain(self.ir.subexpressions.keys().map(String::as_str));
        Err(unknown_name(
            name,
            at,
            known,
            "use a variable, a constant or a subexpression of the model",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statements(list: &[(&str, &str)]) -> Vec<Statement> {
        list.iter()
            .map(|(t, c)| Statement {
                target: t.to_string(),
                code: c.to_string(),
            })
            .collect()
    }

    fn spec() -> ModelSpec {
        ModelSpec::from_equations(
            "dv/dt = (v_r - v)/tau : volt\nw : 1\nk : integer\nup : boolean",
            0.1,
        )
        .constants([("v_r", -70.0), ("v_t", -50.0), ("tau", 10.0)])
    }

    #[test]
    fn statements_run_in_order_over_the_elements() {
        let given = HashMap::from([("w".to_string(), Column::Values(vec![1.0, 2.0, 3.0]))]);
        let got = initial_values(
            &spec(),
            3,
            7,
            given,
            &statements(&[
                ("v", "v_r + (v_t - v_r) * i / (N - 1)"),
                ("w", "w * 2 + v / mV"),
                ("k", "w / 4"),
                ("up", "k > 2 or i == 0"),
            ]),
        )
        .unwrap();
        let get = |name: &str| got.iter().find(|(n, _)| n == name).unwrap().1.clone();
        assert_eq!(get("v"), vec![-70.0, -60.0, -50.0]);
        assert_eq!(get("w"), vec![-68.0, -56.0, -44.0]);
        assert_eq!(get("k"), vec![-17.0, -14.0, -11.0]);
        assert_eq!(get("up"), vec![1.0, 0.0, 0.0]);
    }

    #[test]
    fn rand_draws_from_the_initial_value_stream() {
        let run = |seed| {
            initial_values(
                &spec(),
                1000,
                seed,
                HashMap::new(),
                &statements(&[("v", "v_r + rand()*(v_t - v_r)"), ("w", "randn()")]),
            )
            .unwrap()
        };
        let a = run(3);
        assert_eq!(a, run(3));
        assert_ne!(a, run(4));
        let v = &a[0].1;
        assert!(v.iter().all(|x| (-70.0..-50.0).contains(x)));
        let w = random::initial_words(3, 5, 0, 0);
        assert_eq!(v[5], -70.0 + random::uniform_f64(w) * 20.0);
        let z = random::initial_words(3, 9, 1, 0);
        assert_eq!(a[1].1[9], f64::from(random::normal(z)));
    }

    #[test]
    fn mistakes_are_located() {
        let bad = |code: &str| {
            initial_values(&spec(), 2, 0, HashMap::new(), &statements(&[("v", code)])).unwrap_err()
        };
        let d = bad("v_rr + 1");
        assert_eq!(d.field, "init_state: v");
        assert!(d.render().contains("did you mean 'v_r'"), "{}", d.render());
        assert!(bad("dt * 2").message.contains("'dt' has no value"));
        assert!(bad("v > 1").message.contains("condition is used"));
        let d =
            initial_values(&spec(), 2, 0, HashMap::new(), &statements(&[("up", "1")])).unwrap_err();
        assert!(d.message.contains("'up' is boolean"), "{}", d.message);
        let d = initial_values(&spec(), 2, 0, HashMap::new(), &statements(&[("tau", "1")]))
            .unwrap_err();
        assert!(d.message.contains("cannot set 'tau'"), "{}", d.message);
    }
}
