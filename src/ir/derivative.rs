//! Symbolic differentiation of DAG nodes: `d expr / d var`, built through the arena's own
//! constructors, so that constants fold and shared subterms stay shared.
//!
//! The integrators use it to split a derivative `f` into `A + B x` (exponential Euler: `B =
//! df/dx` must not depend on `x`) and to read off the matrix of a linear system (exact
//! integration: every `df_i/dx_j` must fold to a constant). The result is exact where the
//! expression is differentiable; at the kinks of `abs`, `min`, `max` and `floor` it takes one side.

use std::collections::HashMap;

use super::expr::{post_order, BinOp, ExprArena, ExprId, Func, Node, VarId};

/// `d root / d var`, simplified as far as the arena's constructors fold.
pub fn derivative(arena: &mut ExprArena, root: ExprId, var: VarId) -> ExprId {
    let mut memo = HashMap::new();
    let zero = arena.constant(0.0);
    post_order(arena, root, &mut memo, differentiated, |arena, id, memo| {
        diff(arena, id, var, zero, memo)
    })
}

/// The nodes whose derivatives the derivative of `id` is built from.
fn differentiated(arena: &ExprArena, id: ExprId) -> Vec<ExprId> {
    match *arena.node(id) {
        Node::Const(_) | Node::Bool(_) | Node::Not(_) | Node::Var(_) => vec![],
        Node::Bin(op, _, _) if op.is_comparison() || op.is_logical() => vec![],
        Node::Neg(a) | Node::Call(_, a) => vec![a],
        Node::Bin(_, a, b) | Node::Select(_, a, b) => vec![a, b],
    }
}

fn is_zero(arena: &ExprArena, id: ExprId) -> bool {
    arena.as_const(id) == Some(0.0)
}

/// `a * b` that knows `0 * x = 0` (the arena keeps `0 * x`, which is NaN for infinite `x`; a
/// derivative term that is structurally zero must vanish for the linearity checks to see it).
fn mul(arena: &mut ExprArena, a: ExprId, b: ExprId) -> ExprId {
    if is_zero(arena, a) || is_zero(arena, b) {
        return arena.constant(0.0);
    }
    arena.mul(a, b)
}

fn div(arena: &mut ExprArena, a: ExprId, b: ExprId) -> ExprId {
    if is_zero(arena, a) {
        return arena.constant(0.0);
    }
    arena.div(a, b)
}

/// The derivative of `id`, from those of its [`differentiated`] nodes in `memo`.
fn diff(
    arena: &mut ExprArena,
    id: ExprId,
    var: VarId,
    zero: ExprId,
    memo: &HashMap<ExprId, ExprId>,
) -> ExprId {
    let d = |x: ExprId| memo[&x];
    match arena.node(id).clone() {
        // Truth values have no derivative: a condition switches between branches, whose
        // derivatives are taken separately (see `Select`).
        Node::Const(_) | Node::Bool(_) | Node::Not(_) => zero,
        Node::Var(v) => arena.constant(if v == var { 1.0 } else { 0.0 }),
        Node::Neg(a) => arena.neg(d(a)),
        Node::Call(f, a) => {
            let da = d(a);
            if is_zero(arena, da) {
                zero
            } else {
                let outer = outer_derivative(arena, f, a, id);
                mul(arena, outer, da)
            }
        }
        Node::Select(c, a, b) => arena.select(c, d(a), d(b)),
        Node::Bin(op, _, _) if op.is_comparison() || op.is_logical() => zero,
        Node::Bin(op, a, b) => binary(arena, op, a, b, d(a), d(b)),
    }
}

/// `f'(a)`, where `node` is `f(a)` itself (reused by `exp`, `tan`, `tanh`).
fn outer_derivative(arena: &mut ExprArena, f: Func, a: ExprId, node: ExprId) -> ExprId {
    let one = arena.constant(1.0);
    match f {
        Func::Exp => node,
        Func::Exp2 => {
            let ln2 = arena.constant(std::f64::consts::LN_2);
            arena.mul(ln2, node)
        }
        Func::Log => arena.div(one, a),
        Func::Log10 => {
            let ln10 = arena.constant(std::f64::consts::LN_10);
            let den = arena.mul(ln10, a);
            arena.div(one, den)
        }
        Func::Sqrt => {
            let half = arena.constant(0.5);
            arena.div(half, node)
        }
        Func::Cbrt => {
            let third = arena.constant(1.0 / 3.0);
            let sq = arena.mul(node, node);
            arena.div(third, sq)
        }
        Func::Abs => {
            let zero = arena.constant(0.0);
            let neg = arena.bin(BinOp::Lt, a, zero);
            let m1 = arena.constant(-1.0);
            arena.select(neg, m1, one)
        }
        Func::Sin => arena.call(Func::Cos, a),
        Func::Cos => {
            let s = arena.call(Func::Sin, a);
            arena.neg(s)
        }
        Func::Tan => {
            let sq = arena.mul(node, node);
            arena.add(one, sq)
        }
        Func::Tanh => {
            let sq = arena.mul(node, node);
            arena.sub(one, sq)
        }
        Func::Sinh => arena.call(Func::Cosh, a),
        Func::Cosh => arena.call(Func::Sinh, a),
        Func::Recip => {
            let sq = arena.mul(node, node);
            arena.neg(sq)
        }
        // Piecewise constant (a table's rows are held for its sampling interval).
        Func::Floor | Func::Ceil | Func::Trunc | Func::Table(_) => arena.constant(0.0),
    }
}

fn binary(
    arena: &mut ExprArena,
    op: BinOp,
    a: ExprId,
    b: ExprId,
    da: ExprId,
    db: ExprId,
) -> ExprId {
    match op {
        BinOp::Add => arena.add(da, db),
        BinOp::Sub => arena.sub(da, db),
        BinOp::Mul => {
            let l = mul(arena, da, b);
            let r = mul(arena, a, db);
            arena.add(l, r)
        }
        BinOp::Div => {
            // d(a/b) = da/b - a db / b^2
            let l = div(arena, da, b);
            if is_zero(arena, db) {
                return l;
            }
            let b2 = arena.mul(b, b);
            let num = mul(arena, a, db);
            let r = div(arena, num, b2);
            arena.sub(l, r)
        }
        BinOp::Pow => {
            if let Some(e) = arena.as_const(b) {
                // d(a^e) = e a^(e-1) da
                if e == 0.0 || is_zero(arena, da) {
                    return arena.constant(0.0);
                }
                let em1 = arena.constant(e - 1.0);
                let p = arena.bin(BinOp::Pow, a, em1);
                let ec = arena.constant(e);
                let p = arena.mul(ec, p);
                return mul(arena, p, da);
            }
            // d(a^b) = a^b (db ln a + b da / a)
            let node = arena.bin(BinOp::Pow, a, b);
            let ln = arena.call(Func::Log, a);
            let t1 = mul(arena, db, ln);
            let bda = mul(arena, b, da);
            let t2 = div(arena, bda, a);
            let s = arena.add(t1, t2);
            mul(arena, node, s)
        }
        BinOp::Mod => {
            // a % b = a - b floor(a / b): d = da - floor(a / b) db (almost everywhere).
            if is_zero(arena, db) {
                return da;
            }
            let q = arena.div(a, b);
            let fl = arena.call(Func::Floor, q);
            let t = mul(arena, fl, db);
            arena.sub(da, t)
        }
        BinOp::Min => {
            let le = arena.bin(BinOp::Le, a, b);
            arena.select(le, da, db)
        }
        BinOp::Max => {
            let ge = arena.bin(BinOp::Ge, a, b);
            arena.select(ge, da, db)
        }
        _ => arena.constant(0.0),
    }
}

/// Whether `root` reads `var` (after the arena's simplifications).
pub fn depends_on(arena: &ExprArena, root: ExprId, var: VarId) -> bool {
    arena.vars_of(root).contains(&var)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks d/dx against a central difference at a few points.
    fn check(build: impl Fn(&mut ExprArena, ExprId, ExprId) -> ExprId, points: &[(f64, f64)]) {
        let mut a = ExprArena::new();
        let x = a.var(VarId(0));
        let y = a.var(VarId(1));
        let e = build(&mut a, x, y);
        let d = derivative(&mut a, e, VarId(0));
        for &(px, py) in points {
            let h = 1e-6 * px.abs().max(1.0);
            let at = |xv: f64| a.eval(e, &|v| if v == VarId(0) { xv } else { py });
            let fd = (at(px + h) - at(px - h)) / (2.0 * h);
            let sym = a.eval(d, &|v| if v == VarId(0) { px } else { py });
            assert!(
                (fd - sym).abs() <= 1e-6 * fd.abs().max(1.0),
                "at ({px}, {py}): symbolic {sym}, finite difference {fd}"
            );
        }
    }

    #[test]
    fn derivatives_match_finite_differences() {
        let pts = [(0.3, 1.7), (1.9, -0.4), (2.5, 0.8)];
        check(|a, x, y| a.mul(x, y), &pts);
        check(|a, x, y| a.div(y, x), &pts);
        check(
            |a, x, y| {
                let e = a.call(Func::Exp, x);
                let s = a.call(Func::Sin, x);
                let p = a.mul(e, s);
                a.add(p, y)
            },
            &pts,
        );
        for f in [
            Func::Log,
            Func::Log10,
            Func::Sqrt,
            Func::Cbrt,
            Func::Abs,
            Func::Cos,
            Func::Tan,
            Func::Tanh,
            Func::Sinh,
            Func::Cosh,
            Func::Exp2,
        ] {
            check(|a, x, _| a.call(f, x), &pts);
        }
        check(
            |a, x, _| {
                let c = a.constant(3.0);
                a.bin(BinOp::Pow, x, c)
            },
            &pts,
        );
        check(
            |a, x, _| {
                let c = a.constant(1.5);
                a.bin(BinOp::Pow, x, c)
            },
            &pts,
        );
        check(|a, x, y| a.bin(BinOp::Pow, x, y), &pts);
        check(|a, x, y| a.bin(BinOp::Pow, y, x), &[(0.3, 1.7), (2.5, 0.8)]);
        check(|a, x, y| a.bin(BinOp::Min, x, y), &pts);
        check(|a, x, y| a.bin(BinOp::Max, x, y), &pts);
        check(
            |a, x, _| {
                let c = a.constant(0.7);
                a.bin(BinOp::Mod, x, c)
            },
            &pts,
        );
        check(
            |a, x, y| {
                let c = a.bin(BinOp::Gt, x, y);
                let sq = a.mul(x, x);
                let n = a.neg(x);
                a.select(c, sq, n)
            },
            &pts,
        );
    }

    #[test]
    fn linear_terms_have_derivatives_free_of_the_variable() {
        // HH gating: alpha(v) (1 - m) - beta(v) m is linear in m.
        let mut a = ExprArena::new();
        let m = a.var(VarId(0));
        let v = a.var(VarId(1));
        let k = a.constant(0.1);
        let kv = a.mul(k, v);
        let alpha = a.call(Func::Exp, kv);
        let beta = a.call(Func::Cosh, v);
        let one = a.constant(1.0);
        let om = a.sub(one, m);
        let t1 = a.mul(alpha, om);
        let t2 = a.mul(beta, m);
        let f = a.sub(t1, t2);
        let d = derivative(&mut a, f, VarId(0));
        assert!(!depends_on(&a, d, VarId(0)));
        assert!(depends_on(&a, d, VarId(1)));
        // ... and m^2 is not.
        let sq = a.mul(m, m);
        let g = a.add(f, sq);
        let d = derivative(&mut a, g, VarId(0));
        assert!(depends_on(&a, d, VarId(0)));
        // Constant coefficients fold to constants: d/dv (-(v - 3) / 10) = -0.1.
        let three = a.constant(3.0);
        let ten = a.constant(10.0);
        let s = a.sub(v, three);
        let s = a.neg(s);
        let q = a.div(s, ten);
        let d = derivative(&mut a, q, VarId(1));
        assert_eq!(a.as_const(d), Some(-0.1));
        // A variable that does not occur has derivative 0, exactly.
        let d = derivative(&mut a, f, VarId(7));
        assert_eq!(a.as_const(d), Some(0.0));
    }
}
