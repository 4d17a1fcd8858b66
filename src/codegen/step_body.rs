//! The body of one step of one element of a group, printed from its [`StepDag`]: noise draws,
//! held subexpressions, refractoriness, the update, the threshold, the reset, the refractory
//! bookkeeping and the spike count. The single-group kernel and the network's update kernel both
//! print it, each naming the variables its own way (lanes of a C block, registers of a thread).

use std::fmt::{self, Write};

use super::dialect::Dialect;
use super::printer::{literal, math_fn, Printer};
use super::writer::SourceWriter;
use crate::ir::{ExprId, GroupIr, RefractoryIr, VarId};
use crate::step::{self, StepDag};
use crate::types::ElemType;

/// How one kernel spells a group's step (see the module documentation). The bookkeeping values
/// are `sf_lastspike_step`, `sf_not_refractory` and `sf_spike_count` followed by `lane`, the
/// step counter `sf_t_step` and the noise seed `sf_seed`; the step defines `sf_spike`.
pub struct StepBody<'a> {
    pub ir: &'a GroupIr,
    pub dag: &'a StepDag,
    pub dt: f64,
    pub dtype: ElemType,
    pub dialect: Dialect,
    /// How a variable of the DAG is spelled; a stored variable's spelling is also assigned.
    pub var_name: &'a dyn Fn(VarId) -> String,
    /// The local holding a variable's new value before the assignments.
    pub next_name: &'a dyn Fn(VarId) -> String,
    /// `[sf_l]` for a lane of a C block, empty for a thread's registers.
    pub lane: &'a str,
    /// The element counter of the noise stream.
    pub noise_element: &'a str,
}

impl StepBody<'_> {
    /// Writes temporaries for the nodes `roots` share and returns the text of each root.
    pub fn print_block(
        &self,
        roots: &[ExprId],
        temp_prefix: &str,
        w: &mut SourceWriter,
    ) -> Result<Vec<String>, fmt::Error> {
        Printer {
            arena: &self.dag.arena,
            dtype: self.dtype,
            dialect: self.dialect,
            var_name: self.var_name,
        }
        .block(roots, temp_prefix, w)
    }

    /// The refractory period in steps, when it is a duration (written as an expression when it
    /// depends on per-element values).
    fn refractory_steps(&self, w: &mut SourceWriter) -> Result<Option<String>, fmt::Error> {
        let RefractoryIr::Duration(d) = self.dag.refractory else {
            return Ok(None);
        };
        if let Some(c) = self.dag.arena.as_const(d) {
            return Ok(Some(step::timestep(c, self.dt).to_string()));
        }
        let e = self.print_block(&[d], "sf_r", w)?.remove(0);
        let dt = literal(self.dt, self.dtype);
        let floor = math_fn("floor", self.dtype);
        Ok(Some(format!(
            "(int32_t) {floor}(({e} + {dt} * {}) / {dt})",
            literal(1e-3, self.dtype)
        )))
    }

    /// The body of one step for one element; assigns the new values.
    pub fn write(&self, w: &mut SourceWriter) -> fmt::Result {
        let lane = self.lane;
        let real = self.dtype.c_type();
        // One standard normal per noise symbol, from the counter-based stream (seed, element,
        // step).
        for (k, v) in self.ir.noise.iter().enumerate() {
            writeln!(
                w,
                "const {real} {} = ({real}) sf_normal((uint32_t) sf_seed, {}, (uint32_t) sf_t_step, {k}u);",
                (self.var_name)(*v),
                self.noise_element,
            )?;
        }
        // `constant over dt` subexpressions: computed once from the values at the step's start.
        for (v, e) in &self.ir.held {
            let text = self.print_block(&[*e], &format!("sf_h{v}_"), w)?.remove(0);
            writeln!(w, "const {real} {} = {text};", (self.var_name)(*v))?;
        }
        // Refractoriness first: it is decided by the values at the start of the step.
        match self.dag.refractory {
            RefractoryIr::None => {}
            RefractoryIr::Duration(_) => {
                let steps = self.refractory_steps(w)?.expect("a duration");
                writeln!(
                    w,
                    "const {b} sf_not_refractory = sf_lastspike_step{lane} <= sf_t_step - ({steps});",
                    b = self.dialect.bool_type()
                )?;
            }
            RefractoryIr::Condition(c) => {
                let cond = self.print_block(&[c], "sf_c", w)?.remove(0);
                writeln!(
                    w,
                    "sf_not_refractory{lane} = sf_not_refractory{lane} {or} !({cond});",
                    or = self.dialect.or()
                )?;
            }
        }
        let mut roots: Vec<ExprId> = self.dag.next_state.clone();
        roots.extend(self.dag.next_params.iter().map(|(_, e)| *e));
        roots.extend(self.dag.spike);
        let texts = self.print_block(&roots, "sf_", w)?;
        let assigned: Vec<VarId> = self
            .ir
            .stored()
            .into_iter()
            .chain(self.dag.next_params.iter().map(|(v, _)| *v))
            .collect();
        for (var, text) in assigned.iter().zip(&texts) {
            writeln!(w, "const {real} {} = {text};", (self.next_name)(*var))?;
        }
        if self.dag.spike.is_some() {
            writeln!(
                w,
                "const {} sf_spike = {};",
                self.dialect.bool_type(),
                texts.last().expect("the spike is the last root")
            )?;
        }
        for v in assigned {
            writeln!(w, "{} = {};", (self.var_name)(v), (self.next_name)(v))?;
        }
        if self.dag.spike.is_some() {
            match self.dag.refractory {
                RefractoryIr::Duration(_) => writeln!(
                    w,
                    "sf_lastspike_step{lane} = sf_spike ? sf_t_step : sf_lastspike_step{lane};"
                )?,
                RefractoryIr::Condition(_) => writeln!(
                    w,
                    "sf_not_refractory{lane} = sf_not_refractory{lane} {} !sf_spike;",
                    self.dialect.and()
                )?,
                RefractoryIr::None => {}
            }
            writeln!(w, "sf_spike_count{lane} += sf_spike ? 1 : 0;")?;
        }
        Ok(())
    }
}
