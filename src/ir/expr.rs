//! The expression DAG that every front end lowers to and every back end prints.
//!
//! Nodes are hash-consed: building the same node twice returns the same id, so a subexpression
//! that occurs several times (within one derivative, across the stages of RK4, in threshold and
//! reset) exists once and the printer computes it once. Construction also folds constants and
//! applies a few exact simplifications (`x*1`, `x+0`, small integer powers as multiplications,
//! division by a constant as multiplication by its reciprocal).

use std::collections::HashMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExprId(pub u32);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    /// Python's `%`: the result has the sign of the divisor.
    Mod,
    Pow,
    Min,
    Max,
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
    And,
    Or,
}

impl BinOp {
    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge | BinOp::Eq | BinOp::Ne
        )
    }
    pub fn is_logical(self) -> bool {
        matches!(self, BinOp::And | BinOp::Or)
    }
    fn commutes(self) -> bool {
        matches!(
            self,
            BinOp::Add
                | BinOp::Mul
                | BinOp::Min
                | BinOp::Max
                | BinOp::Eq
                | BinOp::Ne
                | BinOp::And
                | BinOp::Or
        )
    }
}

/// Elementary functions of one argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Func {
    Exp,
    /// `2**x`: what GPUs evaluate natively; produced by fast-math rewrites.
    Exp2,
    Log,
    Log10,
    Sqrt,
    Cbrt,
    Abs,
    Sin,
    Cos,
    Tan,
    Tanh,
    Sinh,
    Cosh,
    Floor,
    Ceil,
    /// Truncation toward zero (Brian2's `int()` of a number).
    Trunc,
    /// `1 / x`, which a kernel may evaluate approximately: the CUDA float32 kernels print it
    /// as one hardware reciprocal (`rcp.approx.ftz.f32`: within an ulp or two, subnormal
    /// results flushed to zero), every other dialect and precision as the exact division.
    /// Only a surrogate's derivative uses it (`step::adjoint`), never a value that a step
    /// computes, so the forward step and its recomputation in the adjoint are the same.
    Recip,
    /// Row `x` (truncated to an integer) of a network's table `k`: the values of a TimedArray,
    /// read where the front end computed the index (`crate::frontend::brian::tables`). Never
    /// folded: its values are data.
    Table(u16),
}

impl Func {
    pub fn from_name(name: &str) -> Option<Func> {
        Some(match name {
            "exp" => Func::Exp,
            "exp2" => Func::Exp2,
            "log" => Func::Log,
            "log10" => Func::Log10,
            "sqrt" => Func::Sqrt,
            "cbrt" => Func::Cbrt,
            "abs" | "fabs" => Func::Abs,
            "sin" => Func::Sin,
            "cos" => Func::Cos,
            "tan" => Func::Tan,
            "tanh" => Func::Tanh,
            "sinh" => Func::Sinh,
            "cosh" => Func::Cosh,
            "floor" => Func::Floor,
            "ceil" => Func::Ceil,
            "trunc" => Func::Trunc,
            _ => return None,
        })
    }

    pub fn c_name(self) -> &'static str {
        match self {
            Func::Exp => "exp",
            Func::Exp2 => "exp2",
            Func::Log => "log",
            Func::Log10 => "log10",
            Func::Sqrt => "sqrt",
            Func::Cbrt => "cbrt",
            Func::Abs => "fabs",
            Func::Sin => "sin",
            Func::Cos => "cos",
            Func::Tan => "tan",
            Func::Tanh => "tanh",
            Func::Sinh => "sinh",
            Func::Cosh => "cosh",
            Func::Floor => "floor",
            Func::Ceil => "ceil",
            Func::Trunc => "trunc",
            Func::Recip => "sf_rcp",
            Func::Table(_) => "sf_table",
        }
    }

    pub fn eval(self, x: f64) -> f64 {
        match self {
            Func::Exp => x.exp(),
            Func::Exp2 => x.exp2(),
            Func::Log => x.ln(),
            Func::Log10 => x.log10(),
            Func::Sqrt => x.sqrt(),
            Func::Cbrt => x.cbrt(),
            Func::Abs => x.abs(),
            Func::Sin => x.sin(),
            Func::Cos => x.cos(),
            Func::Tan => x.tan(),
            Func::Tanh => x.tanh(),
            Func::Sinh => x.sinh(),
            Func::Cosh => x.cosh(),
            Func::Floor => x.floor(),
            Func::Ceil => x.ceil(),
            Func::Trunc => x.trunc(),
            Func::Recip => 1.0 / x,
            Func::Table(_) => f64::NAN,
        }
    }
}

/// A variable the DAG reads: the index of a symbol in whoever built the DAG (the group's symbol
/// table), so the DAG itself stays independent of models.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VarId(pub u32);

impl VarId {
    /// The position of the symbol in its table.
    pub fn index(self) -> usize {
        self.0 as usize
    }

    /// The id of the symbol at `index` in its table.
    pub fn at(index: usize) -> VarId {
        VarId(u32::try_from(index).expect("fewer than 2^32 symbols"))
    }
}

impl std::fmt::Display for VarId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Node {
    /// An f64 constant, stored by bit pattern so that nodes can be hashed.
    Const(u64),
    Bool(bool),
    Var(VarId),
    Neg(ExprId),
    Not(ExprId),
    Call(Func, ExprId),
    Bin(BinOp, ExprId, ExprId),
    /// `cond ? a : b`
    Select(ExprId, ExprId, ExprId),
}

/// Whether a node computes a number or a truth value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ty {
    Real,
    Bool,
}

#[derive(Default, Clone, Debug)]
pub struct ExprArena {
    nodes: Vec<Node>,
    interned: HashMap<Node, ExprId>,
}

impl ExprArena {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn node(&self, id: ExprId) -> &Node {
        &self.nodes[id.0 as usize]
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    fn intern(&mut self, node: Node) -> ExprId {
        if let Some(id) = self.interned.get(&node) {
            return *id;
        }
        let id = ExprId(self.nodes.len() as u32);
        self.nodes.push(node.clone());
        self.interned.insert(node, id);
        id
    }

    pub fn constant(&mut self, v: f64) -> ExprId {
        // -0.0 and 0.0 print and behave alike in everything we generate; keep one node.
        let v = if v == 0.0 { 0.0 } else { v };
        self.intern(Node::Const(v.to_bits()))
    }

    pub fn boolean(&mut self, b: bool) -> ExprId {
        self.intern(Node::Bool(b))
    }

    pub fn var(&mut self, v: VarId) -> ExprId {
        self.intern(Node::Var(v))
    }

    pub fn as_const(&self, id: ExprId) -> Option<f64> {
        match self.node(id) {
            Node::Const(bits) => Some(f64::from_bits(*bits)),
            _ => None,
        }
    }

    pub fn as_bool(&self, id: ExprId) -> Option<bool> {
        match self.node(id) {
            Node::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn ty(&self, id: ExprId) -> Ty {
        let mut id = id;
        loop {
            return match self.node(id) {
                Node::Bool(_) | Node::Not(_) => Ty::Bool,
                Node::Bin(op, _, _) if op.is_comparison() || op.is_logical() => Ty::Bool,
                Node::Select(_, a, _) => {
                    id = *a;
                    continue;
                }
                _ => Ty::Real,
            };
        }
    }

    pub fn neg(&mut self, a: ExprId) -> ExprId {
        if let Some(c) = self.as_const(a) {
            return self.constant(-c);
        }
        if let Node::Neg(inner) = self.node(a) {
            return *inner;
        }
        if let Some((c, inner)) = self.const_factor(a) {
            let k = self.constant(-c);
            return self.bin(BinOp::Mul, k, inner);
        }
        self.intern(Node::Neg(a))
    }

    pub fn not(&mut self, a: ExprId) -> ExprId {
        if let Some(b) = self.as_bool(a) {
            return self.boolean(!b);
        }
        if let Node::Not(inner) = self.node(a) {
            return *inner;
        }
        self.intern(Node::Not(a))
    }

    pub fn call(&mut self, f: Func, a: ExprId) -> ExprId {
        if let (Some(c), false) = (self.as_const(a), matches!(f, Func::Table(_))) {
            return self.constant(f.eval(c));
        }
        self.intern(Node::Call(f, a))
    }

    pub fn select(&mut self, c: ExprId, a: ExprId, b: ExprId) -> ExprId {
        if let Some(cv) = self.as_bool(c) {
            return if cv { a } else { b };
        }
        if a == b {
            return a;
        }
        // Under the same condition an inner select on either side has already been decided.
        if let Node::Select(c2, x, _) = *self.node(a) {
            if c2 == c {
                return self.select(c, x, b);
            }
        }
        if let Node::Select(c2, _, y) = *self.node(b) {
            if c2 == c {
                return self.select(c, a, y);
            }
        }
        self.intern(Node::Select(c, a, b))
    }

    pub fn add(&mut self, a: ExprId, b: ExprId) -> ExprId {
        self.bin(BinOp::Add, a, b)
    }
    pub fn sub(&mut self, a: ExprId, b: ExprId) -> ExprId {
        self.bin(BinOp::Sub, a, b)
    }
    pub fn mul(&mut self, a: ExprId, b: ExprId) -> ExprId {
        self.bin(BinOp::Mul, a, b)
    }
    pub fn div(&mut self, a: ExprId, b: ExprId) -> ExprId {
        self.bin(BinOp::Div, a, b)
    }

    /// Builds `a op b`, folding and simplifying where the result is exactly the same.
    pub fn bin(&mut self, op: BinOp, a: ExprId, b: ExprId) -> ExprId {
        let (ca, cb) = (self.as_const(a), self.as_const(b));
        if let (Some(x), Some(y)) = (ca, cb) {
            return match eval_bin(op, x, y) {
                Value::Real(v) => self.constant(v),
                Value::Bool(v) => self.boolean(v),
            };
        }
        if let (Some(x), Some(y)) = (self.as_bool(a), self.as_bool(b)) {
            match op {
                BinOp::And => return self.boolean(x && y),
                BinOp::Or => return self.boolean(x || y),
                _ => {}
            }
        }
        match op {
            // Canonical forms: subtracting a constant is adding its negation; constant factors
            // gather into one (`c1 * (c2 * x)` -> `(c1 c2) x`, `c * -x` -> `(-c) x`).
            BinOp::Sub if cb.is_some_and(|c| c != 0.0) => {
                let nb = self.constant(-cb.unwrap());
                return self.bin(BinOp::Add, a, nb);
            }
            BinOp::Mul if ca.is_some() || cb.is_some() => {
                let (c, x) = if let Some(c) = ca {
                    (c, b)
                } else {
                    (cb.unwrap(), a)
                };
                if c == 1.0 {
                    return x;
                }
                if c == -1.0 {
                    return self.neg(x);
                }
                if let Some((c2, inner)) = self.const_factor(x) {
                    let k = self.constant(c * c2);
                    return self.bin(BinOp::Mul, k, inner);
                }
                if let Node::Neg(inner) = *self.node(x) {
                    let k = self.constant(-c);
                    return self.bin(BinOp::Mul, k, inner);
                }
                let k = self.constant(c);
                return self.intern(Node::Bin(BinOp::Mul, k, x));
            }
            BinOp::Div if cb.is_none() => {
                if let Some(r) = self.removable_singularity(a, b) {
                    return r;
                }
            }
            BinOp::Add if ca == Some(0.0) => return b,
            BinOp::Add | BinOp::Sub if cb == Some(0.0) => return a,
            BinOp::Sub if ca == Some(0.0) => return self.neg(b),
            BinOp::Mul if ca == Some(1.0) => return b,
            BinOp::Mul | BinOp::Div if cb == Some(1.0) => return a,
            BinOp::Mul if ca == Some(-1.0) => return self.neg(b),
            BinOp::Mul | BinOp::Div if cb == Some(-1.0) => return self.neg(a),
            BinOp::Div => {
                // Division by a constant becomes a multiplication by its reciprocal when the
                // reciprocal is exact in binary (powers of two) or the user accepts rounding
                // anyway: Brian does the same. Keep non-finite cases as divisions.
                if let Some(c) = cb {
                    let r = 1.0 / c;
                    if r.is_finite() && r != 0.0 {
                        let rc = self.constant(r);
                        return self.mul(a, rc);
                    }
                }
            }
            BinOp::Pow => {
                if let Some(e) = cb {
                    if let Some(id) = self.small_power(a, e) {
                        return id;
                    }
                }
            }
            BinOp::And => {
                if self.as_bool(a) == Some(true) {
                    return b;
                }
                if self.as_bool(b) == Some(true) {
                    return a;
                }
                if self.as_bool(a) == Some(false) || self.as_bool(b) == Some(false) {
                    return self.boolean(false);
                }
            }
            BinOp::Or => {
                if self.as_bool(a) == Some(false) {
                    return b;
                }
                if self.as_bool(b) == Some(false) {
                    return a;
                }
                if self.as_bool(a) == Some(true) || self.as_bool(b) == Some(true) {
                    return self.boolean(true);
                }
            }
            _ => {}
        }
        let (a, b) = if op.commutes() && b < a {
            (b, a)
        } else {
            (a, b)
        };
        self.intern(Node::Bin(op, a, b))
    }

    /// `Some((c, x))` when the node is `c * x` with a constant `c`.
    fn const_factor(&self, id: ExprId) -> Option<(f64, ExprId)> {
        match *self.node(id) {
            Node::Bin(BinOp::Mul, a, b) => match (self.as_const(a), self.as_const(b)) {
                (Some(c), None) => Some((c, b)),
                (None, Some(c)) => Some((c, a)),
                _ => None,
            },
            _ => None,
        }
    }

    /// `(c, x)` with `id == c * x` (c = 1 when there is no constant factor).
    fn linear_factor(&self, id: ExprId) -> (f64, ExprId) {
        match *self.node(id) {
            Node::Neg(inner) => {
                let (c, x) = self.linear_factor(inner);
                (-c, x)
            }
            _ => self.const_factor(id).unwrap_or((1.0, id)),
        }
    }

    /// Rate functions like `0.1*(v+40) / (1 - exp(-(v+40)/10))` are 0/0 where the exponent is 0,
    /// a removable singularity a kernel can hit exactly (the seed's NeuroDriver models special-case
    /// it by hand). `num / (1 - exp(z))` and `num / (exp(z) - 1)` with `num = r z` become
    /// `-r B(z)` and `r B(z)`, `B(z) = z / (exp(z) - 1)`, evaluated by its series near 0.
    fn removable_singularity(&mut self, num: ExprId, den: ExprId) -> Option<ExprId> {
        let (sign, z) = match *self.node(den) {
            Node::Bin(BinOp::Add, a, b) => {
                // exp(z) - 1 is stored as exp(z) + (-1).
                let (c, e) = match (self.as_const(a), self.as_const(b)) {
                    (Some(c), None) => (c, b),
                    (None, Some(c)) => (c, a),
                    _ => return None,
                };
                match (c, self.node(e)) {
                    (-1.0, Node::Call(Func::Exp, z)) => (1.0, *z),
                    _ => return None,
                }
            }
            Node::Bin(BinOp::Sub, a, b) => match (self.as_const(a), self.node(b)) {
                (Some(1.0), Node::Call(Func::Exp, z)) => (-1.0, *z),
                _ => return None,
            },
            _ => return None,
        };
        let (cn, xn) = self.linear_factor(num);
        let (cz, xz) = self.linear_factor(z);
        if xn != xz || cz == 0.0 {
            return None;
        }
        let r = sign * cn / cz;
        let b = self.exprel_inverse(z);
        let rc = self.constant(r);
        Some(self.mul(rc, b))
    }

    /// `exprel(z) = (exp(z) - 1) / z` (Brian2's function, 1 at 0): the formula away from 0, the
    /// series `1 + z/2 + z^2/6 + z^3/24 + z^4/120` where |z| < 0.01.
    pub fn exprel(&mut self, z: ExprId) -> ExprId {
        let e = self.call(Func::Exp, z);
        let minus_one = self.constant(-1.0);
        let em1 = self.bin(BinOp::Add, e, minus_one);
        // Interned directly: rebuilding it through `bin` would match the singular pattern.
        let exact = self.intern(Node::Bin(BinOp::Div, em1, z));
        let mut series = self.constant(1.0 / 120.0);
        for c in [1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0] {
            let t = self.mul(z, series);
            let cc = self.constant(c);
            series = self.add(cc, t);
        }
        let small = self.constant(1e-2);
        let az = self.call(Func::Abs, z);
        let near = self.bin(BinOp::Lt, az, small);
        self.select(near, series, exact)
    }

    /// `B(z) = z / (exp(z) - 1)`: the formula away from 0, the series `1 - z/2 + z^2/12`
    /// where |z| < 0.01.
    fn exprel_inverse(&mut self, z: ExprId) -> ExprId {
        let one = self.constant(1.0);
        let minus_one = self.constant(-1.0);
        let e = self.call(Func::Exp, z);
        let em1 = self.bin(BinOp::Add, e, minus_one);
        // Interned directly: rebuilding it through `bin` would match the pattern again.
        let exact = self.intern(Node::Bin(BinOp::Div, z, em1));
        // B has no odd terms past z: `1 - z/2 + z^2/12` is off by at most z^4/720 (1.4e-11
        // relative at |z| = 0.01), two fused multiply-adds.
        let c12 = self.constant(1.0 / 12.0);
        let u = self.mul(z, c12);
        let half = self.constant(-0.5);
        let u = self.add(half, u);
        let w = self.mul(z, u);
        let series = self.add(one, w);
        let small = self.constant(1e-2);
        let az = self.call(Func::Abs, z);
        let near = self.bin(BinOp::Lt, az, small);
        self.select(near, series, exact)
    }

    /// `x**n` for small integers as multiplications (square-and-multiply), `x**0.5` as sqrt.
    fn small_power(&mut self, x: ExprId, e: f64) -> Option<ExprId> {
        if e == 0.5 {
            return Some(self.call(Func::Sqrt, x));
        }
        if e.fract() != 0.0 || e.abs() > 16.0 {
            return None;
        }
        let n = e.abs() as u32;
        if n == 0 {
            return Some(self.constant(1.0));
        }
        let mut result: Option<ExprId> = None;
        let mut base = x;
        let mut k = n;
        while k > 0 {
            if k & 1 == 1 {
                result = Some(match result {
                    None => base,
                    Some(r) => self.mul(r, base),
                });
            }
            k >>= 1;
            if k > 0 {
                base = self.mul(base, base);
            }
        }
        let r = result.unwrap();
        if e < 0.0 {
            let one = self.constant(1.0);
            Some(self.intern(Node::Bin(BinOp::Div, one, r)))
        } else {
            Some(r)
        }
    }

    /// Rebuilds `root` with variables replaced as `map` says (memoised, so shared nodes stay shared).
    pub fn substitute(&mut self, root: ExprId, map: &HashMap<VarId, ExprId>) -> ExprId {
        let mut memo = HashMap::new();
        self.subst_with(root, map, false, &mut memo)
    }

    /// [`Self::substitute`]; with `drop_zero_products`, a product (or a quotient) with a
    /// numerator that became 0 is 0 ([`Self::drop_terms`]). Walks with [`post_order`], so a DAG
    /// of any depth is safe.
    fn subst_with(
        &mut self,
        root: ExprId,
        map: &HashMap<VarId, ExprId>,
        drop_zero_products: bool,
        memo: &mut HashMap<ExprId, ExprId>,
    ) -> ExprId {
        post_order(
            self,
            root,
            memo,
            |arena, id| arena.children(id),
            |arena, id, memo| {
                let m = |x: ExprId| memo[&x];
                match arena.node(id).clone() {
                    Node::Const(_) | Node::Bool(_) => id,
                    Node::Var(v) => map.get(&v).copied().unwrap_or(id),
                    Node::Neg(a) => arena.neg(m(a)),
                    Node::Not(a) => arena.not(m(a)),
                    Node::Call(f, a) => arena.call(f, m(a)),
                    Node::Bin(op, a, b) => {
                        let (a, b) = (m(a), m(b));
                        let zero = |e: ExprId| arena.as_const(e) == Some(0.0);
                        match op {
                            BinOp::Mul if drop_zero_products && (zero(a) || zero(b)) => {
                                arena.constant(0.0)
                            }
                            BinOp::Div if drop_zero_products && zero(a) => arena.constant(0.0),
                            _ => arena.bin(op, a, b),
                        }
                    }
                    Node::Select(c, a, b) => arena.select(m(c), m(a), m(b)),
                }
            },
        )
    }

    /// `root` with the variables `vars` set to 0 and the terms they multiply dropped, as a
    /// symbolic algebra would (`g*xi` vanishes; `substitute` keeps `g*0`, which is NaN for an
    /// infinite `g`). Used to take the drift of a stochastic equation (every `xi` at 0).
    pub fn drop_terms(&mut self, root: ExprId, vars: &[VarId]) -> ExprId {
        let zero = self.constant(0.0);
        let map: HashMap<VarId, ExprId> = vars.iter().map(|v| (*v, zero)).collect();
        let mut memo = HashMap::new();
        self.subst_with(root, &map, true, &mut memo)
    }

    /// Every variable `root` reads.
    pub fn vars_of(&self, root: ExprId) -> Vec<VarId> {
        let mut seen = vec![false; self.nodes.len()];
        let mut stack = vec![root];
        let mut out = Vec::new();
        while let Some(id) = stack.pop() {
            if std::mem::replace(&mut seen[id.0 as usize], true) {
                continue;
            }
            match self.node(id) {
                Node::Var(v) => out.push(*v),
                Node::Const(_) | Node::Bool(_) => {}
                Node::Neg(a) | Node::Not(a) | Node::Call(_, a) => stack.push(*a),
                Node::Bin(_, a, b) => stack.extend([*a, *b]),
                Node::Select(c, a, b) => stack.extend([*c, *a, *b]),
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// Children of a node, in evaluation order.
    pub fn children(&self, id: ExprId) -> Vec<ExprId> {
        match self.node(id) {
            Node::Const(_) | Node::Bool(_) | Node::Var(_) => vec![],
            Node::Neg(a) | Node::Not(a) | Node::Call(_, a) => vec![*a],
            Node::Bin(_, a, b) => vec![*a, *b],
            Node::Select(c, a, b) => vec![*c, *a, *b],
        }
    }

    /// Evaluates in f64 (booleans as 0/1): the reference interpreter for tests and folding.
    pub fn eval(&self, root: ExprId, vars: &dyn Fn(VarId) -> f64) -> f64 {
        let mut memo: HashMap<ExprId, f64> = HashMap::new();
        post_order(
            &mut &*self,
            root,
            &mut memo,
            |arena, id| arena.children(id),
            |arena, id, memo| {
                let m = |x: &ExprId| memo[x];
                match arena.node(id) {
                    Node::Const(bits) => f64::from_bits(*bits),
                    Node::Bool(b) => f64::from(u8::from(*b)),
                    Node::Var(v) => vars(*v),
                    Node::Neg(a) => -m(a),
                    Node::Not(a) => f64::from(u8::from(m(a) == 0.0)),
                    Node::Call(f, a) => f.eval(m(a)),
                    Node::Bin(op, a, b) => apply_bin(*op, m(a), m(b)),
                    Node::Select(c, a, b) => {
                        if m(c) != 0.0 {
                            m(a)
                        } else {
                            m(b)
                        }
                    }
                }
            },
        )
    }
}

/// Computes `value` for `root` and first, children first, for every node it reads through
/// `reads`, each once (kept in `memo`). An explicit stack, not a recursion, so that a DAG of any
/// depth is safe; the nodes come in the order a recursion over `reads` would visit them, so a
/// pass that builds nodes as it goes builds the same nodes in the same order.
pub(crate) fn post_order<C, T: Copy>(
    cx: &mut C,
    root: ExprId,
    memo: &mut HashMap<ExprId, T>,
    reads: impl Fn(&C, ExprId) -> Vec<ExprId>,
    mut value: impl FnMut(&mut C, ExprId, &HashMap<ExprId, T>) -> T,
) -> T {
    let mut stack: Vec<(ExprId, bool)> = vec![(root, false)];
    while let Some((id, ready)) = stack.pop() {
        if memo.contains_key(&id) {
            continue;
        }
        if ready {
            let v = value(cx, id, memo);
            memo.insert(id, v);
            continue;
        }
        stack.push((id, true));
        for c in reads(cx, id).into_iter().rev() {
            if !memo.contains_key(&c) {
                stack.push((c, false));
            }
        }
    }
    memo[&root]
}

enum Value {
    Real(f64),
    Bool(bool),
}

/// `x op y` in f64, a truth value as 1 or 0 (the reference semantics of every operator).
pub fn apply_bin(op: BinOp, x: f64, y: f64) -> f64 {
    match eval_bin(op, x, y) {
        Value::Real(r) => r,
        Value::Bool(b) => f64::from(u8::from(b)),
    }
}

fn eval_bin(op: BinOp, x: f64, y: f64) -> Value {
    use BinOp::*;
    match op {
        Add => Value::Real(x + y),
        Sub => Value::Real(x - y),
        Mul => Value::Real(x * y),
        Div => Value::Real(x / y),
        Mod => Value::Real(x - y * (x / y).floor()),
        Pow => Value::Real(x.powf(y)),
        Min => Value::Real(x.min(y)),
        Max => Value::Real(x.max(y)),
        Lt => Value::Bool(x < y),
        Le => Value::Bool(x <= y),
        Gt => Value::Bool(x > y),
        Ge => Value::Bool(x >= y),
        Eq => Value::Bool(x == y),
        Ne => Value::Bool(x != y),
        And => Value::Bool(x != 0.0 && y != 0.0),
        Or => Value::Bool(x != 0.0 || y != 0.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_subexpressions_share_one_node() {
        let mut a = ExprArena::new();
        let v = a.var(VarId(0));
        let w = a.var(VarId(1));
        let s1 = a.add(v, w);
        let s2 = a.add(w, v);
        assert_eq!(s1, s2, "commutative operands are canonicalised");
        let e1 = a.call(Func::Exp, s1);
        let e2 = a.call(Func::Exp, s2);
        assert_eq!(e1, e2);
    }

    #[test]
    fn folds_constants_and_simplifies() {
        let mut a = ExprArena::new();
        let two = a.constant(2.0);
        let three = a.constant(3.0);
        let six = a.mul(two, three);
        assert_eq!(a.as_const(six), Some(6.0));
        let v = a.var(VarId(0));
        let one = a.constant(1.0);
        assert_eq!(a.mul(v, one), v);
        let d = a.div(v, two);
        assert!(matches!(a.node(d), Node::Bin(BinOp::Mul, _, _)));
        let p = a.bin(BinOp::Pow, v, three);
        assert_eq!(a.eval(p, &|_| 1.5), 1.5f64.powi(3));
        assert!(
            !matches!(a.node(p), Node::Bin(BinOp::Pow, _, _)),
            "x**3 becomes multiplications"
        );
        let m2 = a.constant(-2.0);
        let q = a.bin(BinOp::Pow, v, m2);
        assert!((a.eval(q, &|_| 2.0) - 0.25).abs() < 1e-15);
    }

    #[test]
    fn substitution_rebuilds_and_refolds() {
        let mut a = ExprArena::new();
        let v = a.var(VarId(0));
        let c = a.constant(4.0);
        let e = a.mul(v, c);
        let e = a.call(Func::Sqrt, e);
        let mut map = HashMap::new();
        map.insert(VarId(0), a.constant(4.0));
        let r = a.substitute(e, &map);
        assert_eq!(a.as_const(r), Some(4.0));
    }

    #[test]
    fn python_modulo_has_sign_of_divisor() {
        let mut a = ExprArena::new();
        let x = a.var(VarId(0));
        let y = a.constant(3.0);
        let m = a.bin(BinOp::Mod, x, y);
        assert_eq!(a.eval(m, &|_| -1.0), 2.0);
    }
}
