//! The body of one step of one element of a network's neuron group, printed from its
//! [`StepDag`]: the step's random draws, held subexpressions, refractoriness, the update, the
//! threshold, the reset, the refractory bookkeeping and the spike count, in either dialect.
//! The network counts steps in int32 with each element's last spike as a step
//! (`sf_lastspike_step`, [`NEVER_SPIKED`] for none); a single-group run has its own clock
//! (`codegen::clock`, in `group_kernel`).

use std::fmt::{self, Write};

use super::dialect::Dialect;
use super::printer::{literal, math_fn, Printer};
use super::random::draw_parts;
use super::substep_loop::{loop_var_name, write_loops};
use super::writer::SourceWriter;
use crate::ir::{ExprId, GroupIr, RefractoryIr, SymbolKind, VarId};
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
    /// The element counter of the random streams (noise, `rand()`, `randn()`).
    pub noise_element: &'a str,
    /// Whether the group keeps the step of each element's last spike (`sf_lastspike_step`).
    pub lastspike: bool,
}

/// A step counter at or below this means "never spiked" (the start value of `lastspike_step`).
pub const NEVER_SPIKED: i64 = -1_000_000_000;

impl StepBody<'_> {
    /// Writes temporaries for the nodes `roots` share and returns the text of each root.
    pub fn print_block(
        &self,
        roots: &[ExprId],
        temp_prefix: &str,
        w: &mut SourceWriter,
    ) -> Result<Vec<String>, fmt::Error> {
        let names = |v: VarId| loop_var_name(self.dag, v).unwrap_or_else(|| (self.var_name)(v));
        Printer {
            arena: &self.dag.arena,
            dtype: self.dtype,
            dialect: self.dialect,
            var_name: &names,
        }
        .block(roots, temp_prefix, w)
    }

    /// Draw `v` of the step (a noise symbol or a call of `rand()` / `randn()`): the streams of
    /// `codegen::random::stream_source`, counted by (element, step, k) as a group run alone
    /// counts them.
    pub fn draw_call(&self, v: VarId) -> String {
        let (function, k) = draw_parts(self.ir, v);
        format!(
            "(({}) {function}(sf_seed, {}, (int64_t) sf_t_step, {k}u))",
            self.dtype.c_type(),
            self.noise_element
        )
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
        // The step's random numbers, from the counter-based streams (seed, element, step, k):
        // a standard normal per noise symbol, a number per call of rand() / randn().
        for (v, _) in self.ir.stream_draws() {
            writeln!(
                w,
                "const {real} {} = {};",
                (self.var_name)(v),
                self.draw_call(v)
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
                    "const {b} sf_not_refractory = sf_lastspike_step{lane} <= {NEVER_SPIKED} {or} sf_lastspike_step{lane} <= sf_t_step - ({steps});",
                    b = self.dialect.bool_type(),
                    or = self.dialect.or(),
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
        let time = match self.ir.vars_of_kind(&SymbolKind::Time).first() {
            Some(t) => (self.var_name)(*t),
            None => "0".into(),
        };
        let print = |roots: &[ExprId], prefix: &str, w: &mut SourceWriter| {
            self.print_block(roots, prefix, w)
        };
        write_loops(self.dag, self.dtype, &time, &print, w)?;
        let texts = self.print_block(&self.dag.roots(), "sf_", w)?;
        let assigned = self.dag.assigned(self.ir);
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
            if self.lastspike {
                writeln!(
                    w,
                    "sf_lastspike_step{lane} = sf_spike ? sf_t_step : sf_lastspike_step{lane};"
                )?;
            }
            if let RefractoryIr::Condition(_) = self.dag.refractory {
                writeln!(
                    w,
                    "sf_not_refractory{lane} = sf_not_refractory{lane} {} !sf_spike;",
                    self.dialect.and()
                )?;
            }
            writeln!(w, "sf_spike_count{lane} += sf_spike ? 1 : 0;")?;
        }
        Ok(())
    }
}
