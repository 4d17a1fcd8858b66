//! One printer for expression DAGs, in either dialect, and the helper functions every generated
//! file may call.
//!
//! The two dialects share everything but a few spellings, which [`Dialect`] holds, so the
//! printing logic exists once. Nodes that a block uses more than once become named `const`
//! temporaries; everything else is printed inline with the fewest parentheses that keep the
//! evaluation order of the DAG (floating-point addition is not associative, so `a + (b + c)`
//! keeps its parentheses). An expression nests at most [`MAX_INLINE_DEPTH`] operations: a node
//! deeper than that becomes a temporary too, so that neither this printer's recursion nor the C
//! compilers' see a DAG's full depth (a chain of thousands of subexpressions, a long `ode()`).

use std::collections::HashMap;
use std::fmt::{self, Write};

use super::dialect::Dialect;
use super::writer::SourceWriter;
use crate::ir::{BinOp, ExprArena, ExprId, Func, Node, Ty, VarId};
use crate::types::ElemType;

/// A literal of the kernel's precision: f32 kernels get `f`-suffixed literals so that no
/// arithmetic is silently promoted to double. Any value prints as valid C: the value the
/// precision holds (the model's own numbers are checked to be held exactly,
/// `crate::spec::numbers`; a folded value beyond the precision's range is infinity, as the
/// kernel would compute it), NaN and infinities as quotients.
pub fn literal(v: f64, precision: ElemType) -> String {
    let single = precision == ElemType::F32;
    let suffix = if single { "f" } else { "" };
    let held = if single { f64::from(v as f32) } else { v };
    if held.is_nan() {
        return format!("(0.0{suffix} / 0.0{suffix})");
    }
    if held.is_infinite() {
        let sign = if held < 0.0 { "-" } else { "" };
        return format!("({sign}1.0{suffix} / 0.0{suffix})");
    }
    let text = if single {
        format!("{:?}", v as f32)
    } else {
        format!("{v:?}")
    };
    // Rust prints 1e-7 and 1.5e20: valid C, but give integers-looking values a decimal point.
    let text = if text.contains(['.', 'e', 'E']) {
        text
    } else {
        format!("{text}.0")
    };
    format!("{text}{suffix}")
}

/// The name of a math function for the precision (`expf` for f32, `exp` for f64).
pub fn math_fn(name: &str, precision: ElemType) -> String {
    if precision == ElemType::F32 {
        format!("{name}f")
    } else {
        name.to_string()
    }
}

/// Conversions between float32 and a 16-bit storage type (bit patterns held in `uint16_t`):
/// bfloat16 by bit manipulation (round to nearest even, NaN kept quiet), float16 by the
/// hardware conversion (PTX `cvt`, or GCC's `_Float16`).
pub fn storage_conversions(dialect: Dialect, storage: ElemType) -> String {
    let q = dialect.inline_fn();
    let (as_bits, from_bits) = match dialect {
        Dialect::Cuda => ("__float_as_uint(f)", "__uint_as_float"),
        Dialect::C => ("sf_f32_bits(f)", "sf_bits_f32"),
    };
    let mut out = String::new();
    if dialect == Dialect::C {
        out.push_str(&format!(
            "{q} uint32_t sf_f32_bits(float f) {{ union {{ float f; uint32_t u; }} x; x.f = f; return x.u; }}\n\
             {q} float sf_bits_f32(uint32_t u) {{ union {{ float f; uint32_t u; }} x; x.u = u; return x.f; }}\n"
        ));
    }
    match (storage, dialect) {
        (ElemType::BF16, _) => out.push_str(&format!(
            "{q} float sf_load(uint16_t h) {{ return {from_bits}(((uint32_t) h) << 16); }}\n\
             {q} uint16_t sf_store(float f) {{\n\
             \x20   uint32_t u = {as_bits};\n\
             \x20   if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t) ((u >> 16) | 0x40u);\n\
             \x20   return (uint16_t) ((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);\n\
             }}\n"
        )),
        (ElemType::F16, Dialect::Cuda) => out.push_str(&format!(
            "{q} float sf_load(uint16_t h) {{ float f; asm(\"cvt.f32.f16 %0, %1;\" : \"=f\"(f) : \"h\"(h)); return f; }}\n\
             {q} uint16_t sf_store(float f) {{ uint16_t h; asm(\"cvt.rn.f16.f32 %0, %1;\" : \"=h\"(h) : \"f\"(f)); return h; }}\n"
        )),
        (ElemType::F16, Dialect::C) => out.push_str(&format!(
            "{q} float sf_load(uint16_t h) {{ union {{ _Float16 f; uint16_t u; }} x; x.u = h; return (float) x.f; }}\n\
             {q} uint16_t sf_store(float f) {{ union {{ _Float16 f; uint16_t u; }} x; x.f = (_Float16) f; return x.u; }}\n"
        )),
        (other, _) => unreachable!("{other} is not a storage type (the spec checks it)"),
    }
    out
}

/// Helper functions every generated file may call.
/// The type of a per-element value inside a kernel (lane arrays, registers): reals in the
/// model's precision `real`, truth values in the dialect's vectorisable boolean type, integers as
/// stored.
pub fn local_type(dialect: Dialect, real: ElemType, e: ElemType) -> &'static str {
    match e {
        ElemType::Bool => dialect.bool_type(),
        e if e.is_float() => real.c_type(),
        e => e.c_type(),
    }
}

pub fn prelude(dialect: Dialect, dtype: ElemType) -> String {
    let t = dtype.c_type();
    let floor = math_fn("floor", dtype);
    let simd = if dialect == Dialect::C {
        SIMD_MATH_DECLARATIONS
    } else {
        ""
    };
    simd.to_string()
        + &format!(
            "/* Python's modulo: the result takes the sign of the divisor. */\n\
         {q} {t} sf_mod({t} a, {t} b) {{ return a - b * {floor}(a / b); }}\n",
            q = dialect.inline_fn()
        )
}

/// `sf_rcp(x)`, the approximate reciprocal that `Func::Recip` is printed as in CUDA float32
/// kernels (the adjoint kernels' surrogate derivatives): one `MUFU.RCP` instead of the IEEE
/// division's Newton step and slow-path branch, within an ulp or two, subnormal results flushed
/// to zero (the surrogates' denominators are >= 1); with `exact`, the IEEE division (to compare
/// on a GPU). Empty for other dialects and precisions, which print the exact division. The CUDA
/// kernels run on the CPU by the tests (compiled as C++, no `__CUDA_ARCH__`) divide exactly, so
/// that they give the C kernels' bits.
pub fn reciprocal(dialect: Dialect, dtype: ElemType, exact: bool) -> &'static str {
    match (dialect, dtype) {
        (Dialect::Cuda, ElemType::F32) if exact => "/* The surrogates' reciprocal, exact (tuning exact_reciprocal). */\n\
static __device__ __forceinline__ float sf_rcp(float x) { return 1.0f / x; }\n",
        (Dialect::Cuda, ElemType::F32) => "/* The surrogates' reciprocal: one approximate hardware instruction (exact off the device). */\n\
static __device__ __forceinline__ float sf_rcp(float x) {\n\
#ifdef __CUDA_ARCH__\n\
    float r;\n\
    asm(\"rcp.approx.ftz.f32 %0, %1;\" : \"=f\"(r) : \"f\"(x));\n\
    return r;\n\
#else\n\
    return 1.0f / x;\n\
#endif\n\
}\n",
        _ => "",
    }
}

/// `sf_int32(x)`: a number of the precision `dtype` stored in an integer variable, truncated
/// toward zero as Brian2's `int()`, clamped to int32, NaN as 0 (a plain cast is undefined there).
pub fn int32_conversion(dialect: Dialect, dtype: ElemType) -> String {
    let t = dtype.c_type();
    let limit = literal(2147483647.0, dtype);
    let low = literal(-2147483648.0, dtype);
    format!(
        "/* A number stored in an integer variable: truncated toward zero, clamped, NaN as 0. */\n\
         {q} int32_t sf_int32({t} x) {{ return x >= {limit} ? 2147483647 : x <= {low} ? (-2147483647 - 1) : x == x ? (int32_t) x : 0; }}\n",
        q = dialect.inline_fn()
    )
}

/// Declares glibc's vector math (libmvec) so that GCC vectorises loops calling these functions
/// (math.h only does so under -ffast-math). Limited to the functions every libmvec has since
/// glibc 2.22, and those added in 2.35 behind a version check: a declared variant that the
/// library lacks would be an unresolved symbol when the kernel is loaded.
const SIMD_MATH_DECLARATIONS: &str = "\
#if defined(__GNUC__) && defined(__x86_64__) && defined(__GLIBC__) && !defined(__FAST_MATH__)
#define SF_SIMD __attribute__((simd(\"notinbranch\")))
SF_SIMD float expf(float); SF_SIMD double exp(double);
SF_SIMD float logf(float); SF_SIMD double log(double);
SF_SIMD float sinf(float); SF_SIMD double sin(double);
SF_SIMD float cosf(float); SF_SIMD double cos(double);
SF_SIMD float powf(float, float); SF_SIMD double pow(double, double);
#if __GLIBC_PREREQ(2, 35)
SF_SIMD float tanhf(float); SF_SIMD double tanh(double);
SF_SIMD float tanf(float); SF_SIMD double tan(double);
SF_SIMD float cbrtf(float); SF_SIMD double cbrt(double);
SF_SIMD float log10f(float); SF_SIMD double log10(double);
SF_SIMD float sinhf(float); SF_SIMD double sinh(double);
SF_SIMD float coshf(float); SF_SIMD double cosh(double);
SF_SIMD float expm1f(float); SF_SIMD double expm1(double);
SF_SIMD float exp2f(float); SF_SIMD double exp2(double);
#endif
#endif
";

/// The deepest an expression is printed inline (every generated kernel of the test models stays
/// well below it, so none of them changes).
pub const MAX_INLINE_DEPTH: usize = 64;

// Binding strength, higher binds tighter.
const P_ATOM: u8 = 100;
const P_UNARY: u8 = 90;
const P_MUL: u8 = 80;
const P_ADD: u8 = 70;
const P_REL: u8 = 60;
const P_EQ: u8 = 55;
const P_AND: u8 = 40;
const P_OR: u8 = 35;
const P_SELECT: u8 = 20;

pub struct Printer<'a> {
    pub arena: &'a ExprArena,
    /// The precision the DAG is computed in (float32 or float64).
    pub dtype: ElemType,
    pub dialect: Dialect,
    /// How a variable of the DAG is spelled at this place of the kernel.
    pub var_name: &'a dyn Fn(VarId) -> String,
}

impl Printer<'_> {
    /// Writes temporaries for the nodes the roots share (one statement per line), and returns
    /// the text of each root expression.
    pub fn block(
        &self,
        roots: &[ExprId],
        temp_prefix: &str,
        w: &mut SourceWriter,
    ) -> Result<Vec<String>, fmt::Error> {
        let mut uses: HashMap<ExprId, usize> = HashMap::new();
        let mut order: Vec<ExprId> = Vec::new();
        for &r in roots {
            *uses.entry(r).or_default() += 1;
            self.count_uses(r, &mut uses, &mut order);
        }
        if self.dialect == Dialect::C {
            // Both sides of a select become named temporaries, computed unconditionally: GCC
            // will not if-convert (and so not vectorise) a conditional expression whose branch
            // holds loads or arithmetic it cannot prove safe to speculate.
            for &id in &order {
                if let Node::Select(_, a, b) = *self.arena.node(id) {
                    for side in [a, b] {
                        let u = uses.entry(side).or_default();
                        *u = (*u).max(2);
                    }
                }
            }
        }
        let mut names: HashMap<ExprId, String> = HashMap::new();
        // How many operations deep each node would print inline (0 for a name or a leaf).
        let mut depth: HashMap<ExprId, usize> = HashMap::new();
        for &id in &order {
            let shared = uses[&id] > 1;
            let leaf = matches!(
                self.arena.node(id),
                Node::Const(_) | Node::Bool(_) | Node::Var(_)
            );
            let inline = if leaf {
                0
            } else {
                1 + self
                    .arena
                    .children(id)
                    .iter()
                    .map(|c| depth[c])
                    .max()
                    .unwrap_or(0)
            };
            depth.insert(id, inline);
            if (shared || inline > MAX_INLINE_DEPTH) && !leaf {
                depth.insert(id, 0);
                let (text, _) = self.expr(id, &names);
                let ty = match self.arena.ty(id) {
                    Ty::Bool => self.dialect.bool_type(),
                    Ty::Real => self.dtype.c_type(),
                };
                let name = format!("{temp_prefix}{}", names.len());
                writeln!(w, "const {ty} {name} = {text};")?;
                names.insert(id, name);
            }
        }
        Ok(roots.iter().map(|r| self.expr(*r, &names).0).collect())
    }

    /// Counts, for every node reachable from `id`, how many parents use it; `order` receives the
    /// nodes children-first, so that temporaries are declared before use.
    fn count_uses(&self, id: ExprId, uses: &mut HashMap<ExprId, usize>, order: &mut Vec<ExprId>) {
        // Iterative post-order: deep RK4 DAGs would otherwise recurse thousands of levels.
        let mut stack: Vec<(ExprId, bool)> = vec![(id, false)];
        let mut visited: std::collections::HashSet<ExprId> = order.iter().copied().collect();
        while let Some((n, expanded)) = stack.pop() {
            if expanded {
                order.push(n);
                continue;
            }
            if visited.contains(&n) {
                continue;
            }
            visited.insert(n);
            stack.push((n, true));
            for c in self.arena.children(n).into_iter().rev() {
                *uses.entry(c).or_default() += 1;
                if !visited.contains(&c) {
                    stack.push((c, false));
                }
            }
        }
    }

    fn expr(&self, id: ExprId, names: &HashMap<ExprId, String>) -> (String, u8) {
        if let Some(n) = names.get(&id) {
            return (n.clone(), P_ATOM);
        }
        let dt = self.dtype;
        match self.arena.node(id) {
            Node::Const(bits) => {
                let v = f64::from_bits(*bits);
                (literal(v, dt), if v < 0.0 { P_UNARY } else { P_ATOM })
            }
            Node::Bool(b) => ((if *b { "true" } else { "false" }).to_string(), P_ATOM),
            Node::Var(v) => ((self.var_name)(*v), P_ATOM),
            Node::Neg(a) => (
                format!("-{}", self.operand(*a, P_UNARY + 1, names)),
                P_UNARY,
            ),
            Node::Not(a) => (
                format!("!{}", self.operand(*a, P_UNARY + 1, names)),
                P_UNARY,
            ),
            // The CUDA float32 kernels' approximate reciprocal (`RECIPROCAL`); elsewhere the
            // exact division, printed as a division always was.
            Node::Call(Func::Recip, a)
                if !(self.dialect == Dialect::Cuda && dt == ElemType::F32) =>
            {
                (
                    format!(
                        "({} / {})",
                        literal(1.0, dt),
                        self.operand(*a, P_MUL + 1, names)
                    ),
                    P_ATOM,
                )
            }
            Node::Call(f, a) => {
                let arg = self.expr(*a, names).0;
                let name = match f {
                    Func::Abs => math_fn("fabs", dt),
                    Func::Recip => "sf_rcp".to_string(),
                    // A table is read by a macro the network kernel defines.
                    Func::Table(k) => format!("SF_TABLE{k}"),
                    f => math_fn(f.c_name(), dt),
                };
                (format!("{name}({arg})"), P_ATOM)
            }
            Node::Select(c, a, b) => (
                format!(
                    "{} ? {} : {}",
                    self.operand(*c, P_SELECT + 1, names),
                    self.operand(*a, P_SELECT + 1, names),
                    self.operand(*b, P_SELECT, names)
                ),
                P_SELECT,
            ),
            Node::Bin(op, a, b) => {
                let call2 = |name: &str| {
                    (
                        format!(
                            "{name}({}, {})",
                            self.expr(*a, names).0,
                            self.expr(*b, names).0
                        ),
                        P_ATOM,
                    )
                };
                let (sym, p) = match op {
                    BinOp::Add => ("+", P_ADD),
                    BinOp::Sub => ("-", P_ADD),
                    BinOp::Mul => ("*", P_MUL),
                    BinOp::Div => ("/", P_MUL),
                    BinOp::Lt => ("<", P_REL),
                    BinOp::Le => ("<=", P_REL),
                    BinOp::Gt => (">", P_REL),
                    BinOp::Ge => (">=", P_REL),
                    BinOp::Eq => ("==", P_EQ),
                    BinOp::Ne => ("!=", P_EQ),
                    BinOp::And => (self.dialect.and(), P_AND),
                    BinOp::Or => (self.dialect.or(), P_OR),
                    BinOp::Pow => return call2(&math_fn("pow", dt)),
                    BinOp::Min => return call2(&math_fn("fmin", dt)),
                    BinOp::Max => return call2(&math_fn("fmax", dt)),
                    BinOp::Mod => return call2("sf_mod"),
                };
                if *op == BinOp::Add {
                    if let Some(text) = self.as_subtraction(*a, *b, names) {
                        return (text, P_ADD);
                    }
                }
                // Left operand may bind equally (left-associative); the right one must bind
                // tighter, so `a - (b - c)` and `a + (b + c)` keep their grouping.
                (
                    format!(
                        "{} {sym} {}",
                        self.operand(*a, p, names),
                        self.operand(*b, p + 1, names)
                    ),
                    p,
                )
            }
        }
    }

    /// `x + (-c)` and `x + (-c) * y` (canonical forms in the IR) read as `x - c` and
    /// `x - c * y`; the values are identical since negation is exact.
    fn as_subtraction(
        &self,
        a: ExprId,
        b: ExprId,
        names: &HashMap<ExprId, String>,
    ) -> Option<String> {
        let negated = |id: ExprId| -> Option<String> {
            if names.contains_key(&id) {
                return None;
            }
            if let Some(c) = self.arena.as_const(id).filter(|c| *c < 0.0) {
                return Some(literal(-c, self.dtype));
            }
            if let Node::Bin(BinOp::Mul, x, y) = *self.arena.node(id) {
                let (c, other) = match (self.arena.as_const(x), self.arena.as_const(y)) {
                    (Some(c), None) => (c, y),
                    (None, Some(c)) => (c, x),
                    _ => return None,
                };
                if c < 0.0 {
                    return Some(format!(
                        "{} * {}",
                        literal(-c, self.dtype),
                        self.operand(other, P_MUL + 1, names)
                    ));
                }
            }
            None
        };
        if let Some(rhs) = negated(b) {
            return Some(format!("{} - {rhs}", self.operand(a, P_ADD, names)));
        }
        if let Some(rhs) = negated(a) {
            return Some(format!("{} - {rhs}", self.operand(b, P_ADD, names)));
        }
        None
    }

    fn operand(&self, id: ExprId, min_prec: u8, names: &HashMap<ExprId, String>) -> String {
        let (text, p) = self.expr(id, names);
        if p < min_prec {
            format!("({text})")
        } else {
            text
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f32_literals_are_suffixed() {
        assert_eq!(literal(0.1, ElemType::F32), "0.1f");
        assert_eq!(literal(-65.0, ElemType::F32), "-65.0f");
        assert_eq!(literal(1e-7, ElemType::F32), "1e-7f");
        assert_eq!(literal(0.1, ElemType::F64), "0.1");
        assert_eq!(literal(3.0, ElemType::F64), "3.0");
    }

    #[test]
    fn every_value_prints_as_valid_c() {
        // Before: 1e39 printed as `inf.0f` in a float32 kernel.
        assert_eq!(literal(1e39, ElemType::F32), "(1.0f / 0.0f)");
        assert_eq!(literal(-1e39, ElemType::F32), "(-1.0f / 0.0f)");
        assert_eq!(literal(1e39, ElemType::F64), "1e39");
        assert_eq!(literal(f64::NAN, ElemType::F64), "(0.0 / 0.0)");
        assert_eq!(literal(f64::INFINITY, ElemType::F64), "(1.0 / 0.0)");
        assert_eq!(literal(1e-50, ElemType::F32), "0.0f");
        assert_eq!(literal(1e-45, ElemType::F32), "1e-45f");
        assert_eq!(
            literal(f64::MIN_POSITIVE / 4.0, ElemType::F64),
            "5.562684646268003e-309"
        );
    }

    #[test]
    fn shared_nodes_become_temporaries_and_grouping_is_kept() {
        let mut a = ExprArena::new();
        let v = a.var(VarId(0));
        let w = a.var(VarId(1));
        let s = a.sub(v, w);
        let e = a.call(Func::Exp, s);
        let r1 = a.mul(e, v);
        let r2 = a.add(e, w);
        let bw = a.sub(w, v);
        let r3 = a.sub(v, bw);
        let names = |x: VarId| {
            if x == VarId(0) {
                "v".to_string()
            } else {
                "w".to_string()
            }
        };
        let p = Printer {
            arena: &a,
            dtype: ElemType::F32,
            dialect: Dialect::Cuda,
            var_name: &names,
        };
        let mut w = SourceWriter::new();
        let mut roots = Vec::new();
        w.indented(|w| {
            roots = p.block(&[r1, r2, r3], "_t", w)?;
            Ok(())
        })
        .unwrap();
        assert_eq!(w.finish(), "    const float _t0 = expf(v - w);\n");
        assert_eq!(roots[0], "v * _t0");
        assert_eq!(roots[1], "w + _t0");
        assert_eq!(roots[2], "v - (w - v)");
    }
}
