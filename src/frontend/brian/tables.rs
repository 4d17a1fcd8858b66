//! TimedArrays called in expressions (`I = stim(t) : amp`, `stim(t, i)`), with Brian2's
//! semantics: the row is `int((t/eps + 0.5) / K)` with `eps = dt_array / K` and `K` the power of
//! two Brian2 chooses (at least 8 sub-samples per step of the group, so that a time a scheme
//! evaluates inside a step never rounds into the wrong row), clamped to the first and last
//! rows; a 2-D array's column is the second argument, and a column outside the array gives NaN.
//!
//! The row and column arithmetic is ordinary IR; the read itself is [`Func::Table`], whose
//! argument is the element index within the array. Because the lookup is a function of its time
//! argument, the integration schemes evaluate it at each stage's time, as Brian2 does.

use crate::diagnostics::{Diagnostic, Span};
use crate::ir::{BinOp, ExprArena, ExprId, Func};
use crate::types::ElemType;

/// A table an expression may call: what the network declares about it.
#[derive(Clone, Debug, PartialEq)]
pub struct TableRef {
    /// Its position in the network's list of tables ([`Func::Table`]'s number).
    pub id: u16,
    pub name: String,
    /// The sampling interval of the values.
    pub dt: f64,
    pub rows: usize,
    /// `None` for a 1-D array (`f(t)`), else the number of columns (`f(t, i)`).
    pub columns: Option<usize>,
}

/// Brian2's `_find_K`: the smallest power of two that is at least 8 times the ratio of the
/// table's interval to the group's step (and at least 1).
pub fn upsampling(group_dt: f64, table_dt: f64) -> f64 {
    let k = (8.0 / group_dt * table_dt).log2().ceil().exp2();
    k.floor().max(1.0)
}

/// The largest element index a precision can compute exactly (the index is computed in the
/// kernel's precision).
pub fn max_elements(dtype: ElemType) -> usize {
    match dtype {
        ElemType::F64 => 1 << 53,
        _ => 1 << 24,
    }
}

/// `table(args)`, lowered: the checked arguments (`args` already lowered, numbers), at `span`
/// of `src` in `field`.
pub(crate) fn lower_call(
    arena: &mut ExprArena,
    table: &TableRef,
    group_dt: f64,
    args: &[ExprId],
    at: (&str, &str, Span),
) -> Result<ExprId, Diagnostic> {
    let (field, src, span) = at;
    let want = if table.columns.is_some() { 2 } else { 1 };
    if args.len() != want {
        let form = if want == 2 { "(t, i)" } else { "(t)" };
        return Err(Diagnostic::new(
            field,
            format!(
                "the TimedArray '{}' takes {want} argument(s) {form}, got {}",
                table.name,
                args.len()
            ),
        )
        .at(src, span));
    }
    let k = upsampling(group_dt, table.dt);
    let eps = table.dt / k;
    // int((t / eps + 0.5) / K), clamped to [0, rows - 1] (a negative row clamps to 0 either way,
    // so truncation and floor agree).
    let eps_c = arena.constant(eps);
    let scaled = arena.div(args[0], eps_c);
    let half = arena.constant(0.5);
    let shifted = arena.add(scaled, half);
    let inv_k = arena.constant(1.0 / k);
    let q = arena.mul(shifted, inv_k);
    let row = arena.call(Func::Floor, q);
    let zero = arena.constant(0.0);
    let last = arena.constant(table.rows.saturating_sub(1) as f64);
    let row = arena.bin(BinOp::Max, row, zero);
    let row = arena.bin(BinOp::Min, row, last);
    let id = Func::Table(table.id);
    let Some(columns) = table.columns else {
        return Ok(arena.call(id, row));
    };
    // The column read is clamped too, so that the element read is always inside the array
    // (generated C may evaluate both sides of a select); outside, the value is NaN.
    let col = args[1];
    let cols = arena.constant(columns as f64);
    let last_col = arena.constant(columns.saturating_sub(1) as f64);
    let col_floor = arena.call(Func::Floor, col);
    let clamped = arena.bin(BinOp::Max, col_floor, zero);
    let clamped = arena.bin(BinOp::Min, clamped, last_col);
    let base = arena.mul(row, cols);
    let index = arena.add(base, clamped);
    let value = arena.call(id, index);
    let ge = arena.bin(BinOp::Ge, col, zero);
    let lt = arena.bin(BinOp::Lt, col, cols);
    let inside = arena.bin(BinOp::And, ge, lt);
    let nan = arena.constant(f64::NAN);
    Ok(arena.select(inside, value, nan))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{Node, VarId};

    #[test]
    fn upsampling_is_brians() {
        // dt_array 1 ms, group dt 0.1 ms: 8 * 10 = 80 -> 128.
        assert_eq!(upsampling(0.1, 1.0), 128.0);
        assert_eq!(upsampling(0.1, 0.1), 8.0);
        assert_eq!(upsampling(1.0, 0.01), 1.0);
    }

    /// The row a time falls in, as the IR computes it, against Brian2's formula in f64.
    #[test]
    fn rows_follow_brians_rounding_and_clamp() {
        let mut a = ExprArena::new();
        let t = a.var(VarId(0));
        let table = TableRef {
            id: 3,
            name: "stim".into(),
            dt: 0.3,
            rows: 5,
            columns: None,
        };
        let e = lower_call(&mut a, &table, 0.1, &[t], ("f", "", Span::default())).unwrap();
        let Node::Call(Func::Table(3), row) = *a.node(e) else {
            panic!("a table read");
        };
        let k = upsampling(0.1, 0.3);
        for step in -3..40 {
            let time = step as f64 * 0.1;
            let brian = (((time / (0.3 / k) + 0.5) / k) as i64).clamp(0, 4) as f64;
            assert_eq!(a.eval(row, &|_| time), brian, "t = {time}");
        }
    }

    #[test]
    fn a_two_dimensional_table_gives_nan_outside_its_columns() {
        let mut a = ExprArena::new();
        let t = a.var(VarId(0));
        let i = a.var(VarId(1));
        let table = TableRef {
            id: 0,
            name: "stim".into(),
            dt: 1.0,
            rows: 2,
            columns: Some(3),
        };
        let e = lower_call(&mut a, &table, 0.1, &[t, i], ("f", "", Span::default())).unwrap();
        // The table reads as NaN in the reference interpreter: inside, the result is the read.
        let at = |col: f64| a.eval(e, &|v| if v == VarId(0) { 1.0 } else { col });
        assert!(at(1.0).is_nan());
        assert!(at(-1.0).is_nan() && at(3.0).is_nan());
        let err = lower_call(&mut a, &table, 0.1, &[t], ("f", "", Span::default())).unwrap_err();
        assert!(
            err.message.contains("takes 2 argument(s) (t, i)"),
            "{}",
            err.message
        );
    }
}
