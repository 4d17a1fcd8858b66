//! What one kernel may hold, checked when a model is validated so that a model that validates
//! also compiles in reasonable time (issue 8: 10,000 state variables never finished compiling):
//!
//! * at most `frontend::MAX_STORED` stored variables (checked by the front ends, before a
//!   scheme is chosen: choosing one for 10,000 variables would take long itself);
//! * at most [`MAX_BUFFERS`] buffers (inputs and outputs): each is a pointer parameter of the
//!   CUDA kernel, whose parameters must fit 4 KiB on the oldest drivers the project supports;
//! * at most [`MAX_STEP_SIZE`] operations in one step, as printed (the test models have at most
//!   about 420); sub-steps past `step::substeps::UNROLLED_SUBSTEPS` are a loop, so they do not
//!   count more than once.

use super::layout::Layout;
use crate::diagnostics::Diagnostic;
use crate::ir::network::{NetGroupKind, NetworkIr};
use crate::ir::GroupIr;
use crate::spec::names::describe;
use crate::spec::{Dynamics, ModelSpec};
use crate::step::{self, FastMath};

pub const MAX_BUFFERS: usize = 500;
pub const MAX_STEP_SIZE: usize = 20_000;

/// The bounds above, for the group `ir` of `spec` laid out as `layout`: the step is built as
/// each dialect builds it.
pub fn check(ir: &GroupIr, spec: &ModelSpec, layout: &Layout) -> Result<(), Diagnostic> {
    let field = match spec.dynamics {
        Dynamics::Equations(_) => "equations",
        Dynamics::ModelClass(_) => "model_class",
    };
    let buffers = layout.inputs.len() + layout.outputs.len();
    if buffers > MAX_BUFFERS {
        return Err(Diagnostic::new(
            field,
            format!(
                "the kernel would take {buffers} arrays (states, parameters, inputs, traces); at most {MAX_BUFFERS} fit the parameters of a CUDA kernel"
            ),
        )
        .suggest("fold parameters that do not vary between neurons into constants"));
    }
    check_step(ir, spec, field)
}

/// At most [`MAX_STEP_SIZE`] operations in one step of the group `ir` of `spec` (a model alone
/// or a network's neuron group), built as each dialect builds it; the error is in `field`.
pub fn check_step(ir: &GroupIr, spec: &ModelSpec, field: &str) -> Result<(), Diagnostic> {
    let modes = if spec.fast_math {
        vec![FastMath::On { exp2: false }, FastMath::On { exp2: true }]
    } else {
        vec![FastMath::Off]
    };
    for fast_math in modes {
        let size = step::build(ir, &spec.record, fast_math).size();
        if size > MAX_STEP_SIZE {
            return Err(Diagnostic::new(
                field,
                format!(
                    "one step of the model is {size} operations; a kernel holds at most {MAX_STEP_SIZE}"
                ),
            )
            .suggest("a simpler scheme, or fewer sub-steps (more than 4 run as a loop and count once)"));
        }
    }
    Ok(())
}

/// [`check_step`] for every neuron group of the network `net`; the error names the group.
pub fn check_network(net: &NetworkIr) -> Result<(), Diagnostic> {
    for g in &net.groups {
        if let NetGroupKind::Neuron { spec, ir } = &g.kind {
            check_step(ir, spec, "equations").map_err(|mut d| {
                d.field = format!("{}, {}", describe("NeuronGroup", &g.name), d.field);
                d
            })?;
        }
    }
    Ok(())
}
