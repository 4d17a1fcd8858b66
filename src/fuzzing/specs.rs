//! Whole specs from fuzz input (structure-aware). The bytes choose every part of a spec: most
//! choices are ordinary, so that most inputs reach code generation, and each choice is hostile
//! with a small chance, so that the rest reach every check on the way. Hostile names: reserved in
//! C or CUDA, prefixed like generated code, built in, Unicode, empty, too long, or code (a
//! payload that closes a statement, a comment). Hostile numbers: beyond float32, subnormal, NaN,
//! infinite, malformed. Expressions are typed trees (numbers and conditions) of every operator
//! and function over the names in scope, now and then mistyped or calling an unknown function.
//! Equations have every line kind, unit and flag; model classes have states, internals,
//! parameters, `ode()` arguments, locals and `if` blocks; then events, constants given per
//! neuron or per step, recorded names, every scheme, sub-step count, dtype, storage, fast math.

use arbitrary::Unstructured;

use crate::spec::{Dynamics, Method, ModelClassSpec, ModelSpec, Refractory};
use crate::types::ElemType;

const STATE_NAMES: &[&str] = &["v", "w", "u", "x1", "g_Na", "m", "h"];
const PARAM_NAMES: &[&str] = &["I", "p", "g", "E_L"];
const CONSTANT_NAMES: &[&str] = &["tau", "c", "E", "k2", "theta"];
const LOCAL_NAMES: &[&str] = &["a", "b", "rate", "tmp"];

/// Names a model should not be able to turn into anything but a clean error or a plain,
/// mangled identifier.
const HOSTILE_NAMES: &[&str] = &[
    "exp",
    "exp_",
    "NAN",
    "INFINITY",
    "int32_t",
    "SF_LANES",
    "powf",
    "xor",
    "throw",
    "nullptr",
    "typename",
    "in_v",
    "out_v",
    "sf_t",
    "sf_u_v",
    "sf_x_41",
    "_x",
    "y0",
    "linux",
    "float4",
    "t",
    "dt",
    "i",
    "N",
    "lastspike",
    "not_refractory",
    "xi",
    "xi_1",
    "mV",
    "ms",
    "true",
    "and",
    "v\u{e9}",
    "v\u{200b}",
    "",
    "2v",
    "a b",
    "v\n",
    "y; extern int system(const char*); system(\"echo INJECTED\"); //",
    "*/ int evil; /*",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
];

const LITERALS: &[&str] = &["0", "1", "2.5", "65", "0.1", "10", "3*mV", "2*ms", "0.04"];
const HOSTILE_LITERALS: &[&str] = &[
    "1e39", "1e-300", "1e-39", "3.4e38", "1e308", "1e400", "5e-324", "0x10", "1_0", ".5", "1e",
    "nan", "inf", "1e-45",
];

const VALUES: &[f64] = &[1.0, 10.0, -65.0, 0.1, 0.5, 2.0];
const HOSTILE_VALUES: &[f64] = &[
    0.0,
    -0.0,
    1e39,
    -1e39,
    1e-300,
    1e-39,
    3.4e38,
    f64::MAX,
    f64::MIN_POSITIVE,
    5e-324,
    f64::NAN,
    f64::INFINITY,
];

const UNITS: &[&str] = &["1", "volt", "mV", "amp", "siemens", "volt/second"];
const HOSTILE_UNITS: &[&str] = &["boolean", "integer", "second**-0.5", "bogus", ""];

const FLAGS: &[&str] = &["", "", "", "", "", " (unless refractory)", " (constant)"];
const HOSTILE_FLAGS: &[&str] = &[
    " (constant over dt)",
    " (shared)",
    " (bogus)",
    " (unless refractory, constant)",
];

/// Functions of numbers, with their number of arguments.
const FUNCTIONS: &[(&str, usize)] = &[
    ("exp", 1),
    ("log", 1),
    ("sqrt", 1),
    ("abs", 1),
    ("sin", 1),
    ("tanh", 1),
    ("floor", 1),
    ("pow", 2),
    ("min", 2),
    ("max", 2),
    ("clip", 3),
    ("exprel", 1),
];
const HOSTILE_FUNCTIONS: &[(&str, usize)] = &[("unknown", 1), ("exp", 2), ("system", 1)];

const ARITHMETIC: &[&str] = &["+", "-", "*", "/", "%", "**"];
const COMPARISONS: &[&str] = &["<", ">", "<=", ">=", "==", "!="];

const METHODS: &[Option<Method>] = &[
    None,
    Some(Method::Euler),
    Some(Method::Rk2),
    Some(Method::Heun),
    Some(Method::Rk4),
    Some(Method::ExponentialEuler),
    Some(Method::Exact),
];

const SUBSTEPS: &[u32] = &[1, 1, 1, 2, 4, 5, 8];
const HOSTILE_SUBSTEPS: &[u32] = &[0, 1_000_000, i32::MAX as u32, u32::MAX];

const STEPS: &[f64] = &[0.1, 0.5, 0.025, 0.2];
const HOSTILE_STEPS: &[f64] = &[1e-300, 1e-30, 1e39, 0.0, -1.0, f64::NAN, f64::INFINITY];

/// The bytes' choices.
struct Choices<'u, 'a> {
    u: &'u mut Unstructured<'a>,
}

impl Choices<'_, '_> {
    fn below(&mut self, n: usize) -> usize {
        self.u.int_in_range(0..=n.max(1) - 1).unwrap_or(0)
    }

    /// True `percent` times in 100; false once the bytes run out (they read as 0), so that a
    /// short input is an ordinary spec.
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) >= 100 - percent
    }

    /// Hostile, now and then.
    fn hostile(&mut self) -> bool {
        self.chance(4)
    }

    fn pick<'x, T>(&mut self, xs: &'x [T]) -> &'x T {
        &xs[self.below(xs.len())]
    }

    /// From `ordinary`, or now and then from `hostile`.
    fn either<'x, T>(&mut self, ordinary: &'x [T], hostile: &'x [T]) -> &'x T {
        if self.hostile() {
            self.pick(hostile)
        } else {
            self.pick(ordinary)
        }
    }

    fn name(&mut self, pool: &[&str]) -> String {
        self.either(pool, HOSTILE_NAMES).to_string()
    }

    /// Up to `max` distinct names (at least `min`).
    fn names(&mut self, pool: &[&str], min: usize, max: usize) -> Vec<String> {
        let n = min + self.below(max - min + 1);
        let mut out: Vec<String> = Vec::new();
        for _ in 0..n {
            let name = self.name(pool);
            if !out.contains(&name) {
                out.push(name);
            }
        }
        out
    }
}

/// How an expression spells what it reads: Brian2 syntax, or `ode()`'s Python (`self.x` for
/// what the class stores or reads as a parameter, `np.` functions).
struct Syntax<'a> {
    /// Names read bare (Brian2: everything; Python: locals and arguments).
    names: &'a [String],
    /// Names read as `self.x` (Python).
    attributes: &'a [String],
    python: bool,
}

fn number(c: &mut Choices, s: &Syntax, depth: u32) -> String {
    if depth > 0 && c.chance(1) {
        return condition(c, s, depth - 1);
    }
    if depth == 0 || c.chance(35) {
        if c.chance(40) {
            let literal = c.either(LITERALS, HOSTILE_LITERALS);
            // ode() is Python: no unit names.
            return if s.python {
                literal.replace("*mV", "").replace("*ms", "")
            } else {
                literal.to_string()
            };
        }
        if s.python && !s.attributes.is_empty() && c.chance(60) {
            return format!("self.{}", c.pick(s.attributes));
        }
        if !s.names.is_empty() && !c.hostile() {
            return c.pick(s.names).clone();
        }
        return c.pick(HOSTILE_NAMES).to_string();
    }
    let d = depth - 1;
    match c.below(6) {
        0 => format!("-{}", number(c, s, d)),
        1 | 2 => {
            let (f, arity) = *c.either(FUNCTIONS, HOSTILE_FUNCTIONS);
            let args: Vec<String> = (0..arity).map(|_| number(c, s, d)).collect();
            let f = match (s.python, f) {
                (false, f) | (true, f @ ("abs" | "min" | "max")) => f.to_string(),
                (true, "pow") => "np.power".into(),
                (true, "exprel") => "np.exp".into(),
                (true, f) => format!("np.{f}"),
            };
            format!("{f}({})", args.join(", "))
        }
        3 if !s.python => format!(
            "where({}, {}, {})",
            condition(c, s, d),
            number(c, s, d),
            number(c, s, d)
        ),
        3 => format!(
            "{} if {} else {}",
            number(c, s, d),
            condition(c, s, d),
            number(c, s, d)
        ),
        4 => format!("({})", number(c, s, d)),
        _ => {
            let op = c.pick(ARITHMETIC);
            format!("{} {op} {}", number(c, s, d), number(c, s, d))
        }
    }
}

fn condition(c: &mut Choices, s: &Syntax, depth: u32) -> String {
    let d = depth.saturating_sub(1);
    match c.below(6) {
        0 if depth > 0 => format!("not {}", condition(c, s, d)),
        1 if depth > 0 => {
            let op = c.pick(&["and", "or"]);
            format!("{} {op} {}", condition(c, s, d), condition(c, s, d))
        }
        2 if !s.python && c.chance(30) => "not_refractory".into(),
        3 if c.hostile() => c.pick(&["True", "false"]).to_string(),
        _ => {
            let op = c.pick(COMPARISONS);
            format!("{} {op} {}", number(c, s, d), number(c, s, d))
        }
    }
}

fn equations(c: &mut Choices, scope: &mut Vec<String>) -> String {
    let states = c.names(STATE_NAMES, 1, 3);
    let params = c.names(PARAM_NAMES, 0, 2);
    let subexpressions = if c.chance(30) {
        c.names(LOCAL_NAMES, 1, 2)
    } else {
        Vec::new()
    };
    scope.extend(states.iter().chain(&params).cloned());
    // Subexpressions read the states and parameters (a subexpression that reads another, or
    // itself, comes from a hostile name now and then).
    let inner: Vec<String> = scope.clone();
    scope.extend(subexpressions.iter().cloned());
    let s = Syntax {
        names: scope,
        attributes: &[],
        python: false,
    };
    let sub = Syntax {
        names: &inner,
        attributes: &[],
        python: false,
    };
    let line = |c: &mut Choices, head: String| {
        let unit = c.either(UNITS, HOSTILE_UNITS);
        let flags = c.either(FLAGS, HOSTILE_FLAGS);
        format!("{head} : {unit}{flags}")
    };
    let mut lines = Vec::new();
    for name in &states {
        let rhs = number(c, &s, 4);
        let noise = if c.chance(10) { " + 0.1*xi" } else { "" };
        lines.push(line(c, format!("d{name}/dt = {rhs}{noise}")));
    }
    for name in &subexpressions {
        let rhs = number(c, &sub, 3);
        lines.push(line(c, format!("{name} = {rhs}")));
    }
    for name in &params {
        lines.push(line(c, name.clone()));
    }
    lines.join("\n")
}

fn model_class(c: &mut Choices, scope: &mut Vec<String>) -> ModelClassSpec {
    let states = c.names(STATE_NAMES, 1, 3);
    let internals = if c.chance(40) {
        c.names(&["q", "r"], 1, 2)
    } else {
        Vec::new()
    };
    let params = c.names(CONSTANT_NAMES, 0, 2);
    let args = c.names(PARAM_NAMES, 0, 2);
    let attributes: Vec<String> = states
        .iter()
        .chain(&internals)
        .chain(&params)
        .cloned()
        .collect();
    let stored: Vec<String> = states.iter().chain(&internals).cloned().collect();
    let mut locals: Vec<String> = args.clone();
    let mut body = Vec::new();
    for _ in 0..1 + c.below(5) {
        let s = Syntax {
            names: &locals,
            attributes: &attributes,
            python: true,
        };
        let value = number(c, &s, 3);
        let statement = match c.below(5) {
            0 | 1 => format!("self.d_{} = {value}", c.pick(&states)),
            2 => format!("self.{} {} {value}", c.pick(&stored), c.pick(&["=", "+="])),
            3 => {
                let cond = condition(c, &s, 2);
                let target = c.pick(&states).clone();
                format!("if {cond}:\n        self.d_{target} = {value}\n    else:\n        self.d_{target} = 0.0")
            }
            _ => {
                let local = c.name(LOCAL_NAMES);
                locals.push(local.clone());
                format!("{local} = {value}")
            }
        };
        body.push(format!("    {statement}"));
    }
    let args_text: String = args.iter().map(|a| format!(", {a}=0.0")).collect();
    let source = format!("def ode(self{args_text}):\n{}\n", body.join("\n"));
    let mut class = ModelClassSpec::new("Fuzzed", source)
        .internals(internals.iter().cloned())
        .params(params.iter().cloned());
    for s in &states {
        let bound = |c: &mut Choices| {
            c.chance(40)
                .then(|| *c.either(&[-100.0, 0.0, 100.0, 1.0], HOSTILE_VALUES))
        };
        let (lo, hi) = (bound(c), bound(c));
        class = class.state(s.clone(), lo, hi);
    }
    // Events beside a class read its states and internals bare, its parameters and arguments
    // as constants.
    scope.extend(stored);
    scope.extend(params);
    scope.extend(args);
    class
}

/// A spec built from `u` (see the module documentation).
pub fn spec(u: &mut Unstructured) -> ModelSpec {
    let c = &mut Choices { u };
    let mut scope: Vec<String> = Vec::new();
    let class = c.chance(25);
    let dynamics = if class {
        Dynamics::ModelClass(model_class(c, &mut scope))
    } else {
        Dynamics::Equations(equations(c, &mut scope))
    };
    // What a reset may assign and a trace record.
    let variables: Vec<String> = match &dynamics {
        Dynamics::ModelClass(class) => class
            .states
            .iter()
            .map(|s| s.name.clone())
            .chain(class.internals.iter().cloned())
            .collect(),
        Dynamics::Equations(_) => scope.clone(),
    };
    let mut spec = ModelSpec::new(dynamics, *c.either(STEPS, HOSTILE_STEPS));
    if let Dynamics::ModelClass(class) = &spec.dynamics {
        // A class's parameters and ode() arguments take their values from the constants.
        let defaults: Vec<String> = class.params.clone();
        for name in defaults.into_iter().chain(scope.iter().cloned()) {
            if PARAM_NAMES.contains(&name.as_str()) || class.params.contains(&name) {
                let v = *c.either(VALUES, HOSTILE_VALUES);
                spec.constants.insert(name, v);
            }
        }
    }
    if !class {
        for name in c.names(CONSTANT_NAMES, 0, 3) {
            let v = *c.either(VALUES, HOSTILE_VALUES);
            spec.constants.insert(name, v);
        }
        scope.extend(spec.constants.keys().cloned());
    }
    let s = Syntax {
        names: &scope,
        attributes: &[],
        python: false,
    };
    if c.chance(60) {
        spec.threshold = Some(condition(c, &s, 3));
    }
    if c.chance(50) {
        let statements: Vec<String> = (0..1 + c.below(2))
            .map(|_| {
                let target = if c.hostile() {
                    c.pick(&scope).clone()
                } else {
                    c.pick(&variables).clone()
                };
                let op = c.pick(&["=", "+=", "-=", "*=", "/="]);
                format!("{target} {op} {}", number(c, &s, 2))
            })
            .collect();
        let separator = if c.chance(50) { "; " } else { "\n" };
        spec.reset = Some(statements.join(separator));
    }
    spec.refractory = match c.below(4) {
        0 => Some(Refractory::Duration(
            *c.either(&[2.0, 0.5, 0.0], HOSTILE_VALUES),
        )),
        1 => Some(Refractory::Code(number(c, &s, 2))),
        2 => Some(Refractory::Code(condition(c, &s, 2))),
        _ => None,
    };
    for name in spec.constants.keys().cloned().collect::<Vec<_>>() {
        match c.below(4) {
            0 => spec.per_neuron.push(name),
            1 => spec.per_step.push(name),
            _ => {}
        }
    }
    if c.hostile() {
        let name = c.pick(&scope).clone();
        spec.per_step.push(name);
    }
    for name in &variables {
        if c.chance(25) {
            spec.record.push(name.clone());
        }
    }
    if c.hostile() {
        spec.record.push(c.pick(HOSTILE_NAMES).to_string());
    }
    spec.method = *c.pick(METHODS);
    spec.substeps = *c.either(SUBSTEPS, HOSTILE_SUBSTEPS);
    spec.dtype = if c.chance(70) {
        ElemType::F32
    } else {
        ElemType::F64
    };
    if spec.dtype == ElemType::F32 || c.hostile() {
        spec.storage = match c.below(8) {
            0 => Some(ElemType::F16),
            1 => Some(ElemType::BF16),
            _ => None,
        };
    }
    spec.fast_math = c.chance(30);
    spec
}
