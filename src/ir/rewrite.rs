//! Whole-DAG rewrites that are valid but not exact, applied only when the user opts in
//! (`fast_math`).

use std::collections::HashMap;

use super::expr::{post_order, BinOp, ExprArena, ExprId, Func, Node};

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
    /// `(k, x, b)` with `id == k * x + b` for constants `k` and `b`: the chain of negations,
    /// constant factors and constant offsets above `x` is read top down into a list, then folded
    /// from `x` up (the arithmetic of a recursion, without its depth).
    fn affine(&self, id: ExprId) -> (f64, ExprId, f64) {
        enum Step {
            Neg,
            Mul(f64),
            Add(f64),
        }
        let constant_and_other = |a: ExprId, b: ExprId| match (self.as_const(a), self.as_const(b)) {
            (Some(c), None) => Some((c, b)),
            (None, Some(c)) => Some((c, a)),
            _ => None,
        };
        let mut steps = Vec::new();
        let mut x = id;
        loop {
            let (step, inner) = match *self.node(x) {
                Node::Neg(a) => (Step::Neg, a),
                Node::Bin(BinOp::Mul, a, b) => match constant_and_other(a, b) {
                    Some((c, inner)) => (Step::Mul(c), inner),
                    None => break,
                },
                Node::Bin(BinOp::Add, a, b) => match constant_and_other(a, b) {
                    Some((c, inner)) => (Step::Add(c), inner),
                    None => break,
                },
                _ => break,
            };
            steps.push(step);
            x = inner;
        }
        steps
            .into_iter()
            .rev()
            .fold((1.0, x, 0.0), |(k, x, off), step| match step {
                Step::Neg => (-k, x, -off),
                Step::Mul(c) => (c * k, x, c * off),
                Step::Add(c) => (k, x, off + c),
            })
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
        let reads = |arena: &ExprArena, id: ExprId| match replace.get(&id) {
            Some(r) => vec![r.base_arg],
            None => arena.children(id),
        };
        post_order(self, id, memo, reads, |arena, id, memo| {
            let m = |x: ExprId| memo[&x];
            if let Some(r) = replace.get(&id) {
                let arg = m(r.base_arg);
                let e = if r.use_exp2 {
                    let log2e = arena.constant(std::f64::consts::LOG2_E);
                    let arg = arena.mul(log2e, arg);
                    arena.call(Func::Exp2, arg)
                } else {
                    arena.call(Func::Exp, arg)
                };
                let f = arena.constant(r.factor);
                return arena.mul(f, e);
            }
            match arena.node(id).clone() {
                Node::Const(_) | Node::Bool(_) | Node::Var(_) => id,
                Node::Neg(a) => arena.neg(m(a)),
                Node::Not(a) => arena.not(m(a)),
                Node::Call(f, a) => arena.call(f, m(a)),
                Node::Bin(op, a, b) => arena.bin(op, m(a), m(b)),
                Node::Select(c, a, b) => arena.select(m(c), m(a), m(b)),
            }
        })
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
