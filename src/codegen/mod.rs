//! Code generation: printers only. The step DAG (`crate::step`) printed as a fused group kernel
//! ([`group_kernel`]) in either [`Dialect`], with its argument layout ([`layout`]); the
//! expression printer and helpers every file shares ([`printer`]); how a model's names are spelled
//! in generated code ([`identifiers`]); what one kernel may hold ([`bounds`]); the noise
//! generator's source ([`random`]); the reduction kernels ([`reduction`]). All of them write
//! through one [`writer::SourceWriter`].

pub mod bounds;
pub mod dialect;
pub mod group_kernel;
pub mod identifiers;
pub mod layout;
pub mod printer;
pub mod random;
pub mod reduction;
pub mod writer;

pub use dialect::Dialect;
pub use group_kernel::{generate, GeneratedKernel, ENTRY};
pub use layout::{Arg, Layout, Role, ShapeKind};

use crate::diagnostics::Diagnostic;
use crate::ir::GroupIr;
use crate::spec::ModelSpec;

/// Lowers a spec and checks what its kernel will hold ([`bounds`]): the group and its argument
/// layout, or the first error. What validates here generates and compiles.
pub fn prepare(spec: &ModelSpec) -> Result<(GroupIr, Layout), Diagnostic> {
    let ir = crate::frontend::lower(spec)?;
    let layout = layout::layout(&ir, spec);
    bounds::check(&ir, spec, &layout)?;
    Ok((ir, layout))
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
