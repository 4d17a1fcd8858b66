//! The expression DAG evaluated in f64 over many elements at once: every node once, as a column
//! of `n` values (or one value when it is the same for every element). What the library uses to
//! evaluate expressions outside a kernel (initial values given as expressions), with the
//! semantics of [`ExprArena::eval`], node by node.

use std::collections::HashMap;

use super::expr::{apply_bin, ExprArena, ExprId, Node, VarId};

/// The values of a node, or of a variable, for every element.
#[derive(Clone, Debug, PartialEq)]
pub enum Column {
    /// The same value for every element.
    Scalar(f64),
    /// One value per element.
    Values(Vec<f64>),
}

impl Column {
    /// The value of element `i`.
    pub fn at(&self, i: usize) -> f64 {
        match self {
            Column::Scalar(x) => *x,
            Column::Values(v) => v[i],
        }
    }

    /// `n` values.
    pub fn into_values(self, n: usize) -> Vec<f64> {
        match self {
            Column::Scalar(x) => vec![x; n],
            Column::Values(v) => v,
        }
    }

    fn map(&self, n: usize, f: impl Fn(f64) -> f64) -> Column {
        match self {
            Column::Scalar(x) => Column::Scalar(f(*x)),
            Column::Values(v) => Column::Values(v[..n].iter().map(|x| f(*x)).collect()),
        }
    }

    fn zip(a: &Column, b: &Column, n: usize, f: impl Fn(f64, f64) -> f64) -> Column {
        match (a, b) {
            (Column::Scalar(x), Column::Scalar(y)) => Column::Scalar(f(*x, *y)),
            _ => Column::Values((0..n).map(|i| f(a.at(i), b.at(i))).collect()),
        }
    }
}

/// The columns of `roots` over `n` elements, with `vars` giving the column of each variable
/// they read (a column of values must hold `n` of them).
pub fn evaluate(
    arena: &ExprArena,
    roots: &[ExprId],
    n: usize,
    vars: &dyn Fn(VarId) -> Column,
) -> Vec<Column> {
    // Children first, each node once; a column is dropped after its last use.
    let mut order: Vec<ExprId> = Vec::new();
    let mut uses: HashMap<ExprId, usize> = HashMap::new();
    let mut seen: std::collections::HashSet<ExprId> = std::collections::HashSet::new();
    for &root in roots {
        *uses.entry(root).or_default() += 1;
        let mut stack = vec![(root, false)];
        while let Some((id, expanded)) = stack.pop() {
            if expanded {
                order.push(id);
                continue;
            }
            if !seen.insert(id) {
                continue;
            }
            stack.push((id, true));
            for c in arena.children(id) {
                *uses.entry(c).or_default() += 1;
                stack.push((c, false));
            }
        }
    }
    let mut columns: HashMap<ExprId, Column> = HashMap::new();
    for id in order {
        let children = arena.children(id);
        let col = {
            let get = |c: &ExprId| &columns[c];
            match arena.node(id) {
                Node::Const(bits) => Column::Scalar(f64::from_bits(*bits)),
                Node::Bool(b) => Column::Scalar(f64::from(u8::from(*b))),
                Node::Var(v) => vars(*v),
                Node::Neg(a) => get(a).map(n, |x| -x),
                Node::Not(a) => get(a).map(n, |x| f64::from(u8::from(x == 0.0))),
                Node::Call(f, a) => get(a).map(n, |x| f.eval(x)),
                Node::Bin(op, a, b) => Column::zip(get(a), get(b), n, |x, y| apply_bin(*op, x, y)),
                Node::Select(c, a, b) => {
                    let (c, a, b) = (get(c), get(a), get(b));
                    let pick = |i: usize| if c.at(i) != 0.0 { a.at(i) } else { b.at(i) };
                    match (c, a, b) {
                        (Column::Scalar(_), Column::Scalar(_), Column::Scalar(_)) => {
                            Column::Scalar(pick(0))
                        }
                        _ => Column::Values((0..n).map(pick).collect()),
                    }
                }
            }
        };
        for c in children {
            let u = uses.get_mut(&c).expect("counted");
            *u -= 1;
            if *u == 0 {
                columns.remove(&c);
            }
        }
        columns.insert(id, col);
    }
    roots.iter().map(|r| columns[r].clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{BinOp, Func};

    #[test]
    fn columns_agree_with_the_scalar_interpreter() {
        let mut a = ExprArena::new();
        let (x, y) = (a.var(VarId(0)), a.var(VarId(1)));
        let e = a.call(Func::Exp, x);
        let p = a.mul(e, y);
        let c = a.bin(BinOp::Gt, x, y);
        let s = a.select(c, p, x);
        let m = a.bin(BinOp::Mod, s, y);
        let xs = vec![-1.5, 0.0, 0.25, 2.0];
        let vars = |v: VarId| {
            if v == VarId(0) {
                Column::Values(xs.clone())
            } else {
                Column::Scalar(0.75)
            }
        };
        let got = evaluate(&a, &[m, p, c], 4, &vars);
        for (i, &xv) in xs.iter().enumerate() {
            let scalar = |root| a.eval(root, &|v| if v == VarId(0) { xv } else { 0.75 });
            assert_eq!(got[0].at(i), scalar(m));
            assert_eq!(got[1].at(i), scalar(p));
            assert_eq!(got[2].at(i), scalar(c));
        }
        // Scalars stay scalars.
        let k = a.constant(3.0);
        let q = a.mul(k, y);
        assert_eq!(evaluate(&a, &[q], 4, &vars), vec![Column::Scalar(2.25)]);
    }
}
