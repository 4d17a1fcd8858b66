//! Whole-DAG rewrites that are valid but not exact, applied only when the user opts in
//! (`fast_math`).

use std::collections::HashMap;

use super::expr::{BinOp, ExprArena, ExprId, Func, Node};

/// `exp(arg) = factor * exp2(log2(e) * base_arg)`.
#[derive(Clone, Copy)]
struct Replacement {
    factor: f64,
    /// The argument of the group's base exponential, as the user wrote it: keeping `k (x + c)`
    /// rather than expanding it to `k x + k c` avoids a cancellation near `x = -c`.
    base_arg: ExprId,
    use_exp2: bool,
}

impl ExprArena {
    /// `(k, x, b)` with `id == k * x + b` for constants `k` and `b`.
    fn affine(&self, id: ExprId) -> (f64, ExprId, f64) {
        match *self.node(id) {
            Node::Neg(a) => {
                let (k, x, b) = self.affine(a);
                (-k, x, -b)
            }
            Node::Bin(BinOp::Mul, a, b) => match (self.as_const(a), self.as_const(b)) {
                (Some(c), None) | (None, Some(c)) => {
                    let inner = if self.as_const(a).is_some() { b } else { a };
                    let (k, x, off) = self.affine(inner);
                    (c * k, x, c * off)
                }
                _ => (1.0, id, 0.0),
            },
            Node::Bin(BinOp::Add, a, b) => match (self.as_const(a), self.as_const(b)) {
                (Some(c), None) | (None, Some(c)) => {
                    let inner = if self.as_const(a).is_some() { b } else { a };
                    let (k, x, off) = self.affine(inner);
                    (k, x, off + c)
                }
                _ => (1.0, id, 0.0),
            },
            _ => (1.0, id, 0.0),
        }
    }

    /// Fast-math rewrite of every exponential `exp(k x + b)`:
    /// * with `use_exp2` (GPUs), as `exp2(log2(e) * arg)` with `log2(e)` folded into the
    ///   argument's constant factor, so that it is one `ex2` instruction with no extra scaling (a
    ///   CPU's vector `exp` reduces its argument more accurately than a rounded product would);
    /// * exponentials of the same variable with the same slope share one evaluation:
    ///   `exp(k x + b_i) = exp(k x + b_0) * exp(b_i - b_0)`, the factor folded. In the
    ///   Hodgkin-Huxley rates, `exp(-(v+40)/10)`, `exp(-(v+55)/10)` and `exp(-(v+35)/10)` become
    ///   one exponential and two multiplications.
    ///
    /// Costs about one rounding per rewritten term and may overflow or underflow earlier by the
    /// factor `exp(b_i - b_0)`: hence only under `fast_math`, whose accuracy the tests check.
    pub fn share_exponentials(&mut self, roots: &[ExprId], use_exp2: bool) -> Vec<ExprId> {
        let mut groups: HashMap<(u64, ExprId), Vec<(f64, ExprId)>> = HashMap::new();
        let mut seen = vec![false; self.len()];
        let mut stack: Vec<ExprId> = roots.to_vec();
        while let Some(id) = stack.pop() {
            if std::mem::replace(&mut seen[id.0 as usize], true) {
                continue;
            }
            if let Node::Call(Func::Exp, arg) = *self.node(id) {
                let (k, x, b) = self.affine(arg);
                groups.entry((k.to_bits(), x)).or_default().push((b, id));
            }
            stack.extend(self.children(id));
        }
        // Each exponential becomes `factor * exp2(log2(e) * base_arg)`; the base argument is
        // rebuilt first (it may depend on rewritten nodes of earlier RK stages).
        let mut replace: HashMap<ExprId, Replacement> = HashMap::new();
        for members in groups.values_mut().filter(|m| use_exp2 || m.len() > 1) {
            // The base is the member closest to exp(k x): the factors stay near 1.
            members.sort_by(|a, b| a.0.abs().total_cmp(&b.0.abs()).then(a.1.cmp(&b.1)));
            let (b0, base) = members[0];
            let Node::Call(Func::Exp, base_arg) = *self.node(base) else {
                unreachable!()
            };
            for &(b, id) in members.iter() {
                replace.insert(
                    id,
                    Replacement {
                        factor: (b - b0).exp(),
                        base_arg,
                        use_exp2,
                    },
                );
            }
        }
        if replace.is_empty() {
            return roots.to_vec();
        }
        let mut memo = HashMap::new();
        roots
            .iter()
            .map(|r| self.replace_nodes(*r, &replace, &mut memo))
            .collect()
    }

    /// Rebuilds `id` with each node of `replace` swapped for `factor * base`.
    fn replace_nodes(
        &mut self,
        id: ExprId,
        replace: &HashMap<ExprId, Replacement>,
        memo: &mut HashMap<ExprId, ExprId>,
    ) -> ExprId {
        if let Some(r) = memo.get(&id) {
            return *r;
        }
        let r = match self.node(id).clone() {
            _ if replace.contains_key(&id) => {
                let r = replace[&id];
                let arg = self.replace_nodes(r.base_arg, replace, memo);
                let e = if r.use_exp2 {
                    let log2e = self.constant(std::f64::consts::LOG2_E);
                    let arg = self.mul(log2e, arg);
                    self.call(Func::Exp2, arg)
                } else {
                    self.call(Func::Exp, arg)
                };
                let f = self.constant(r.factor);
                self.mul(f, e)
            }
            Node::Const(_) | Node::Bool(_) | Node::Var(_) => id,
            Node::Neg(a) => {
                let a = self.replace_nodes(a, replace, memo);
                self.neg(a)
            }
            Node::Not(a) => {
                let a = self.replace_nodes(a, replace, memo);
                self.not(a)
            }
            Node::Call(f, a) => {
                let a = self.replace_nodes(a, replace, memo);
                self.call(f, a)
            }
            Node::Bin(op, a, b) => {
                let a = self.replace_nodes(a, replace, memo);
                let b = self.replace_nodes(b, replace, memo);
                self.bin(op, a, b)
            }
            Node::Select(c, a, b) => {
                let c = self.replace_nodes(c, replace, memo);
                let a = self.replace_nodes(a, replace, memo);
                let b = self.replace_nodes(b, replace, memo);
                self.select(c, a, b)
            }
        };
        memo.insert(id, r);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::VarId;

    #[test]
    fn exponentials_with_one_slope_share_one_evaluation() {
        let mut a = ExprArena::new();
        let v = a.var(VarId(0));
        let mut roots = Vec::new();
        for off in [40.0, 55.0, 35.0] {
            let c = a.constant(off);
            let s = a.add(v, c);
            let k = a.constant(-0.1);
            let arg = a.mul(k, s);
            roots.push(a.call(Func::Exp, arg));
        }
        let shared = a.share_exponentials(&roots, true);
        let count_exps = |a: &ExprArena, roots: &[ExprId]| {
            let mut seen = std::collections::HashSet::new();
            let mut stack = roots.to_vec();
            while let Some(id) = stack.pop() {
                if seen.insert(id) {
                    stack.extend(a.children(id));
                }
            }
            seen.iter()
                .filter(|id| matches!(a.node(**id), Node::Call(Func::Exp | Func::Exp2, _)))
                .count()
        };
        assert_eq!(count_exps(&a, &roots), 3);
        assert_eq!(count_exps(&a, &shared), 1);
        for v in [-80.0, -40.0, 0.0, 30.0] {
            for (r, s) in roots.iter().zip(&shared) {
                let (x, y) = (a.eval(*r, &|_| v), a.eval(*s, &|_| v));
                assert!((x - y).abs() <= 1e-14 * x.abs(), "{x} vs {y}");
            }
        }
    }
}
