//! Deep or long models (issue 8, item 11): before, each of these killed the process with a stack
//! overflow (SIGSEGV, no message) in the parser, the lowering, a pass over the DAG or the
//! printer. Now what passes a limit is a located error, and what stays within the limits works,
//! called from a thread with a small stack ([`STACK`]): lowering runs on a stack of its own, the
//! passes after it walk the DAG with explicit stacks and the printer nests a bounded depth.

// Model errors are returned on the cold path only, as in the library.
#![allow(clippy::result_large_err)]

use spikeforge::codegen::{generate_from_spec, Dialect};
use spikeforge::diagnostics::Diagnostic;
use spikeforge::spec::{Method, ModelClassSpec, ModelSpec};

/// The stack each case runs with: an eighth of a main thread's usual 8 MiB.
const STACK: usize = 1 << 20;

/// Runs `f` on a thread with a [`STACK`]-byte stack.
fn small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(STACK)
        .spawn(f)
        .unwrap()
        .join()
        .expect("the case ran within its stack")
}

/// Lowers and generates both dialects (with RK4 and fast math too) on a small stack.
fn compile(spec: ModelSpec) -> Result<usize, Diagnostic> {
    small_stack(move || {
        let mut size = 0;
        for (method, fast) in [(spec.method, false), (Some(Method::Rk4), true)] {
            let mut spec = spec.clone();
            spec.method = method;
            spec.fast_math = fast;
            for dialect in [Dialect::C, Dialect::Cuda] {
                size = generate_from_spec(&spec, dialect)?.source.len();
            }
        }
        Ok(size)
    })
}

fn equations(text: String) -> ModelSpec {
    ModelSpec::from_equations(text, 0.1).method(Method::Euler)
}

fn refused(spec: ModelSpec, message: &str) -> Diagnostic {
    let d = compile(spec).expect_err("refused");
    assert!(d.message.contains(message), "{}", d.render());
    d
}

#[test]
fn nested_parentheses() {
    let d = refused(
        equations(format!(
            "dv/dt = {}-v{} : 1",
            "(".repeat(2600),
            ")".repeat(2600)
        )),
        "nests more than 200 levels deep",
    );
    assert_eq!(d.field, "equations");
    assert_eq!(d.span.map(|s| (s.line, s.col)), Some((1, 209)));
    compile(equations(format!(
        "dv/dt = {}-v{} : 1",
        "(".repeat(190),
        ")".repeat(190)
    )))
    .unwrap();
}

#[test]
fn unary_operators_powers_and_not() {
    refused(
        equations(format!("dv/dt = {}v : 1", "-".repeat(5000))),
        "nests more than 200",
    );
    refused(
        equations(format!("dv/dt = v{} : 1", "**1".repeat(5000))),
        "nests more than 200",
    );
    let mut spec = equations("dv/dt = -v : 1".into());
    spec.threshold = Some(format!("{}v > 1", "not ".repeat(5000)));
    refused(spec, "nests more than 200");
    compile(equations(format!("dv/dt = {}v : 1", "- ".repeat(150)))).unwrap();
}

#[test]
fn a_flat_sum_of_many_terms() {
    let sum = |n: usize| {
        (0..n)
            .map(|k| format!("{}*v", k % 7 + 1))
            .collect::<Vec<_>>()
            .join(" + ")
    };
    let d = refused(
        equations(format!("dv/dt = -({}) : 1", sum(30_000))),
        "more than 1000 operations deep",
    );
    assert_eq!(d.span.map(|s| s.line), Some(1));
    assert!(d.suggestion.unwrap().contains("subexpressions"));
    compile(equations(format!("dv/dt = -({}) * 1e-4 : 1", sum(900)))).unwrap();
}

#[test]
fn chained_subexpressions() {
    let chain = |n: usize| {
        let mut text = String::from("dv/dt = -v + a0 * 1e-6 : 1\n");
        for k in 0..n {
            text.push_str(&format!("a{k} = a{} * 0.5 + v : 1\n", k + 1));
        }
        text.push_str(&format!("a{n} = v : 1\n"));
        text
    };
    let d = refused(
        equations(chain(6000)),
        "with its subexpressions substituted, this expression is more than 2000 operations deep",
    );
    assert_eq!(d.field, "equations");
    assert!(d.span.is_some());
    compile(equations(chain(600))).unwrap();
}

#[test]
fn long_reset_and_model_class_bodies() {
    // Every statement builds on the one before: DAGs thousands of nodes deep, which the passes
    // over the DAG walk with explicit stacks and the printer cuts into temporaries.
    let mut spec = equations("dv/dt = -v : 1\nw : 1".into());
    spec.threshold = Some("v > 1".into());
    spec.reset = Some("w = w * 0.5 + v\n".repeat(3000));
    let size = compile(spec).unwrap();
    assert!(size > 3000 * 10);

    let mut source = String::from("def ode(self):\n    x = self.v\n");
    for _ in 0..1500 {
        source.push_str("    x = x * 0.999 + 0.001\n");
    }
    source.push_str("    self.d_v = x - self.v\n");
    let class = ModelClassSpec::new("Long", source).state("v", None, None);
    compile(ModelSpec::from_class(class, 0.1).method(Method::Euler)).unwrap();
}

#[test]
fn model_class_nesting() {
    let class = |body: String| {
        let source = format!("def ode(self):\n{body}");
        ModelSpec::from_class(
            ModelClassSpec::new("Deep", source).state("v", None, None),
            0.1,
        )
        .method(Method::Euler)
    };
    refused(
        class(format!(
            "    self.d_v = {}-self.v{}\n",
            "(".repeat(3000),
            ")".repeat(3000)
        )),
        "nests more than 200",
    );
    let chain = (0..5000)
        .map(|k| format!("{k} if self.v > {k} else "))
        .collect::<String>();
    refused(
        class(format!("    self.d_v = {chain}0\n")),
        "nests more than 200",
    );
    let mut nested = String::new();
    for depth in 0..150 {
        nested.push_str(&format!(
            "{}if self.v > {depth}:\n",
            "    ".repeat(depth + 1)
        ));
    }
    nested.push_str(&format!("{}self.d_v = -self.v\n", "    ".repeat(151)));
    refused(class(nested), "blocks nest more than 100 levels deep");
    // A long elif chain is a loop, not a recursion.
    let mut elifs = String::from("    if self.v > 0:\n        self.d_v = 0.0\n");
    for k in 1..1500 {
        elifs.push_str(&format!(
            "    elif self.v > {k}:\n        self.d_v = -{k}.0\n"
        ));
    }
    elifs.push_str("    else:\n        self.d_v = -self.v\n");
    compile(class(elifs)).unwrap();
}

/// Sub-steps past four are a loop in the kernel, not unrolled: `substeps=10**6` used to make a
/// DAG, a source and a C compilation that never finished.
#[test]
fn a_million_sub_steps_are_a_loop() {
    for method in [Method::Euler, Method::Rk4, Method::ExponentialEuler] {
        let spec = ModelSpec::from_equations("dv/dt = (-v + cos(t/ms)) / (10*ms) : 1", 0.1)
            .method(method)
            .substeps(1_000_000);
        let source = small_stack(move || generate_from_spec(&spec, Dialect::C))
            .unwrap()
            .source;
        assert!(
            source.contains("for (int32_t sf_sub0_k = 0; sf_sub0_k < 1000000; ++sf_sub0_k)"),
            "{source}"
        );
        assert!(source.len() < 20_000, "{method:?}: {} bytes", source.len());
    }
    // A sub-step must be a number of the precision too: 5e-40 is not one of float32's.
    let tiny = || {
        let mut spec = equations("dv/dt = -v/(10*ms) : 1".into()).substeps(2_000_000_000);
        spec.dt = 1e-30;
        spec
    };
    let d = refused(
        tiny(),
        "dt / substeps = 1e-30 / 2000000000 = 5.0000000000000005e-40, is too small for float32",
    );
    assert_eq!(d.field, "substeps");
    compile(tiny().dtype(spikeforge::types::ElemType::F64)).unwrap();
}

/// The kernel's bounds, each a clear error at definition: stored variables (10,000 used to hang
/// the C compiler), buffers (CUDA's kernel parameters), operations per step.
#[test]
fn what_one_kernel_holds_is_bounded() {
    let states = |n: usize| {
        (0..n)
            .map(|k| format!("dv{k}/dt = -v{k}/(10*ms) : 1\n"))
            .collect::<String>()
    };
    let started = std::time::Instant::now();
    let d = refused(
        equations(states(10_000)),
        "the model has 10000 state variables; one kernel holds at most 128",
    );
    assert_eq!(d.span.map(|s| s.line), Some(129));
    assert!(started.elapsed().as_secs() < 10, "{:?}", started.elapsed());
    compile(equations(states(128))).unwrap();

    let params = (0..600).map(|k| format!("p{k} : 1\n")).collect::<String>();
    refused(
        equations(format!("dv/dt = -v/(10*ms) : 1\n{params}")),
        "arrays (states, parameters, inputs, traces); at most 500",
    );

    let sum = (0..800)
        .map(|k| format!("exp(v{} * {k}e-3)", k % 30))
        .collect::<Vec<_>>()
        .join(" + ");
    let big = (0..30)
        .map(|k| format!("dv{k}/dt = -v{k}/(10*ms) + ({sum}) * 1e-9 / ms : 1\n"))
        .collect::<String>();
    refused(
        equations(big).method(Method::Rk4).substeps(4),
        "operations; a kernel holds at most 20000",
    );
}
