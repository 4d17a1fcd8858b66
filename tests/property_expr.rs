//! Property test: random well-formed expressions, run through the whole path (parse, lower,
//! simplify, print as C, compile, execute), agree with the f64 interpreter of the IR and with a
//! direct evaluation of the expression tree that never touches the IR.

use std::ffi::c_void;

use spikeforge::codegen::{generate_from_spec, Dialect};
use spikeforge::runtime::cpu::{self, CpuCompileOptions};
use spikeforge::spec::{Method, ModelSpec};
use spikeforge::types::ElemType;

mod common;
use common::Rng;

/// An expression with its text and an independent evaluator (closures over x, y).
struct Gen {
    text: String,
    eval: Box<dyn Fn(f64, f64) -> f64>,
}

fn leaf(rng: &mut Rng) -> Gen {
    match rng.below(3) {
        0 => Gen {
            text: "x".into(),
            eval: Box::new(|x, _| x),
        },
        1 => Gen {
            text: "y".into(),
            eval: Box::new(|_, y| y),
        },
        _ => {
            let c = (rng.uniform(-3.0, 3.0) * 100.0).round() / 100.0;
            Gen {
                // Parenthesised: `-0.65**2` is `-(0.65**2)` in Python.
                text: format!("({c:?})"),
                eval: Box::new(move |_, _| c),
            }
        }
    }
}

/// Values stay finite and away from singular points: divisions by `1 + a*a`, logs of `1 + |a|`,
/// exponents bounded with tanh.
fn expr(rng: &mut Rng, depth: u32) -> Gen {
    if depth == 0 || rng.below(4) == 0 {
        return leaf(rng);
    }
    let a = expr(rng, depth - 1);
    let b = expr(rng, depth - 1);
    let (fa, fb) = (a.eval, b.eval);
    match rng.below(14) {
        0 => Gen {
            text: format!("({} + {})", a.text, b.text),
            eval: Box::new(move |x, y| fa(x, y) + fb(x, y)),
        },
        1 => Gen {
            text: format!("({} - {})", a.text, b.text),
            eval: Box::new(move |x, y| fa(x, y) - fb(x, y)),
        },
        2 => Gen {
            text: format!("({} * {})", a.text, b.text),
            eval: Box::new(move |x, y| fa(x, y) * fb(x, y)),
        },
        3 => Gen {
            text: format!("({} / (1 + ({})**2))", a.text, b.text),
            eval: Box::new(move |x, y| fa(x, y) / (1.0 + fb(x, y).powi(2))),
        },
        4 => Gen {
            text: format!("exp(tanh({}))", a.text),
            eval: Box::new(move |x, y| fa(x, y).tanh().exp()),
        },
        5 => Gen {
            text: format!("log(1 + abs({}))", a.text),
            eval: Box::new(move |x, y| (1.0 + fa(x, y).abs()).ln()),
        },
        6 => Gen {
            text: format!("sqrt(abs({}))", a.text),
            eval: Box::new(move |x, y| fa(x, y).abs().sqrt()),
        },
        7 => Gen {
            text: format!("sin({})", a.text),
            eval: Box::new(move |x, y| fa(x, y).sin()),
        },
        8 => Gen {
            text: format!("cos({})", a.text),
            eval: Box::new(move |x, y| fa(x, y).cos()),
        },
        9 => Gen {
            text: format!("min({}, {})", a.text, b.text),
            eval: Box::new(move |x, y| fa(x, y).min(fb(x, y))),
        },
        10 => Gen {
            text: format!("max({}, {})", a.text, b.text),
            eval: Box::new(move |x, y| fa(x, y).max(fb(x, y))),
        },
        11 => Gen {
            text: format!("where({} > {}, {}, -{})", a.text, b.text, a.text, b.text),
            eval: Box::new(move |x, y| {
                if fa(x, y) > fb(x, y) {
                    fa(x, y)
                } else {
                    -fb(x, y)
                }
            }),
        },
        12 => Gen {
            text: format!("({})**3", a.text),
            eval: Box::new(move |x, y| fa(x, y).powi(3)),
        },
        _ => Gen {
            text: format!("-({})", a.text),
            eval: Box::new(move |x, y| -fa(x, y)),
        },
    }
}

type CEntry = unsafe extern "C" fn(i64, i64, *const i64, *const *mut c_void, *const *mut c_void);

#[test]
fn random_expressions_agree_between_generated_c_and_references() {
    let seed = std::env::var("SPIKEFORGE_PROPERTY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_u64);
    let mut rng = Rng(seed | 1);
    let n = 64usize;
    for case in 0..24 {
        let g = expr(&mut rng, 4);
        // One Euler step of size 1 from v = 0 gives v = expr(x, y).
        let spec = ModelSpec::from_equations(format!("dv/dt = {} : 1\nx : 1\ny : 1", g.text), 1.0)
            .method(Method::Euler)
            .dtype(ElemType::F64);
        let ir = spikeforge::frontend::lower(&spec)
            .unwrap_or_else(|d| panic!("case {case} (seed {seed}): {d}\n{}", g.text));
        let kernel = generate_from_spec(&spec, Dialect::C).unwrap();
        let module = cpu::load(&kernel.source, kernel.entry, &CpuCompileOptions::default())
            .unwrap_or_else(|e| panic!("case {case} (seed {seed}): {e}"));
        let xs: Vec<f64> = (0..n).map(|_| rng.uniform(-2.0, 2.0)).collect();
        let ys: Vec<f64> = (0..n).map(|_| rng.uniform(-2.0, 2.0)).collect();
        let mut v = vec![0.0f64; n];
        // The time of the state, a float64 (as int32 words): 0 at the start, 1 step at the end.
        let mut t = [0f64];
        let mut v_out = vec![f64::NAN; n];
        let mut count = vec![-1i32; n];
        let mut t_out = [f64::NAN];
        let ins: Vec<*mut c_void> = vec![
            v.as_mut_ptr().cast(),
            xs.as_ptr().cast_mut().cast(),
            ys.as_ptr().cast_mut().cast(),
            t.as_mut_ptr().cast(),
        ];
        let outs: Vec<*mut c_void> = vec![
            v_out.as_mut_ptr().cast(),
            count.as_mut_ptr().cast(),
            t_out.as_mut_ptr().cast(),
        ];
        assert_eq!(kernel.layout.inputs.len(), ins.len());
        assert_eq!(kernel.layout.outputs.len(), outs.len());
        let dims = [n as i64, 1, 1, 1];
        // SAFETY: buffers match the layout checked above; the entry has the generated signature.
        unsafe {
            let entry: CEntry = module.entry();
            entry(0, n as i64, dims.as_ptr(), ins.as_ptr(), outs.as_ptr());
        }
        let (x_var, y_var) = (ir.lookup("x").unwrap(), ir.lookup("y").unwrap());
        for k in 0..n {
            let direct = (g.eval)(xs[k], ys[k]);
            let interp = ir.arena.eval(ir.integrated()[0].1, &|var| {
                if var == x_var {
                    xs[k]
                } else if var == y_var {
                    ys[k]
                } else {
                    0.0
                }
            });
            let tol = 1e-9 * (1.0 + direct.abs());
            assert!(
                (v_out[k] - direct).abs() <= tol && (interp - direct).abs() <= tol,
                "case {case} (seed {seed}) at x={}, y={}: C {} interpreter {interp} direct {direct}\n{}",
                xs[k],
                ys[k],
                v_out[k],
                g.text
            );
            assert_eq!(count[k], 0);
        }
        assert_eq!(t_out[0], 1.0);
    }
}
