//! Sub-steps past `step::substeps::UNROLLED_SUBSTEPS`, printed as loops
//! ([`crate::step::SubstepLoop`]): the same text in the group kernel and in a network's step
//! ([`super::step_body`]), so that a model runs the same alone and in a network.

use std::fmt::{self, Write};

use super::printer::literal;
use super::writer::SourceWriter;
use crate::ir::{ExprId, VarId};
use crate::step::StepDag;
use crate::types::ElemType;

/// How a block of the DAG is printed: roots, the prefix of its temporaries, the writer; the
/// text of each root.
pub type PrintBlock<'a> =
    dyn Fn(&[ExprId], &str, &mut SourceWriter) -> Result<Vec<String>, fmt::Error> + 'a;

/// How a loop's variable is spelled (`sf_sub<k>_<i>`, its time `sf_sub<k>_t`), when `v` is one.
pub fn loop_var_name(dag: &StepDag, v: VarId) -> Option<String> {
    dag.loop_var(v).map(|(k, carried)| match carried {
        Some(i) => format!("sf_sub{k}_{i}"),
        None => format!("sf_sub{k}_t"),
    })
}

/// Every loop of `dag`, in order: the carried variables `sf_sub<k>_<i>` start at their values
/// before the loop, and each iteration computes every next value before it assigns any. `time`
/// spells the time at the start of the step; `dtype` is the kernel's precision.
pub fn write_loops(
    dag: &StepDag,
    dtype: ElemType,
    time: &str,
    print_block: &PrintBlock,
    w: &mut SourceWriter,
) -> fmt::Result {
    let real = dtype.c_type();
    for (k, l) in dag.loops.iter().enumerate() {
        let starts: Vec<ExprId> = l.carried.iter().map(|c| c.start).collect();
        let starts = print_block(&starts, &format!("sf_sub{k}_s"), w)?;
        for (i, start) in starts.iter().enumerate() {
            writeln!(w, "{real} sf_sub{k}_{i} = {start};")?;
        }
        let head = format!(
            "for (int32_t sf_sub{k}_k = 0; sf_sub{k}_k < {}; ++sf_sub{k}_k)",
            l.count
        );
        w.block(head, |w| {
            if l.time.is_some() {
                writeln!(
                    w,
                    "const {real} sf_sub{k}_t = {time} + ({real}) sf_sub{k}_k * {};",
                    literal(l.h, dtype)
                )?;
            }
            let next: Vec<ExprId> = l.carried.iter().map(|c| c.next).collect();
            let next = print_block(&next, &format!("sf_sub{k}_e"), w)?;
            for (i, text) in next.iter().enumerate() {
                writeln!(w, "const {real} sf_sub{k}_n{i} = {text};")?;
            }
            for i in 0..next.len() {
                writeln!(w, "sf_sub{k}_{i} = sf_sub{k}_n{i};")?;
            }
            Ok(())
        })?;
    }
    Ok(())
}
