//! Code generation: printers only. The step DAG (`crate::step`) printed as a fused group kernel
//! ([`group_kernel`]) in either [`Dialect`], with its argument layout ([`layout`]); the
//! expression printer and helpers every file shares ([`printer`]); how a model's names are spelled
//! in generated code ([`identifiers`]); what one kernel may hold ([`bounds`]); the clock helpers
//! ([`clock`]); the random streams' source ([`random`]); the reduction kernels ([`reduction`]);
//! the connectivity kernels ([`connect_kernel`]). All of them write through one
//! [`writer::SourceWriter`].

pub mod adjoint_kernel;
pub mod bounds;
pub mod clock;
pub mod connect_kernel;
pub mod dialect;
pub mod group_kernel;
pub mod identifiers;
pub mod layout;
pub mod network_adjoint_kernel;
pub mod network_kernel;
pub mod network_layout;
pub mod printer;
pub mod random;
pub mod reduction;
pub mod step_body;
pub mod substep_loop;
pub mod writer;

pub use dialect::Dialect;
pub use group_kernel::{generate, GeneratedKernel, ENTRY};
pub use layout::{Arg, Layout, Role, ShapeKind};

use crate::diagnostics::Diagnostic;
use crate::ir::network::NetworkIr;
use crate::ir::GroupIr;
use crate::spec::network::NetworkSpec;
use crate::spec::ModelSpec;

/// Lowers a spec and checks what its kernel will hold ([`bounds`]): the group and its argument
/// layout, or the first error. What validates here generates and compiles.
pub fn prepare(spec: &ModelSpec) -> Result<(GroupIr, Layout), Diagnostic> {
    let ir = crate::frontend::lower(spec)?;
    let layout = layout::layout(&ir, spec);
    bounds::check(&ir, spec, &layout)?;
    Ok((ir, layout))
}

/// Lowers a network spec and checks what its kernels will hold ([`bounds::check_network`]):
/// what `sf_network_compile` and the network handler both go through, as [`prepare`] for a
/// model.
pub fn prepare_network(spec: &NetworkSpec) -> Result<NetworkIr, Diagnostic> {
    let net = crate::frontend::network::lower(spec)?;
    bounds::check_network(&net)?;
    Ok(net)
}

/// Parses, lowers, checks and generates the kernel for one dialect: the whole path from spec to
/// source.
pub fn generate_from_spec(
    spec: &ModelSpec,
    dialect: Dialect,
) -> Result<GeneratedKernel, Diagnostic> {
    let (ir, _) = prepare(spec)?;
    Ok(generate(&ir, spec, dialect))
}
