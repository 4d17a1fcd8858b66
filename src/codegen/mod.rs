//! Code generation: printers only. The step DAG (`crate::step`) printed as a fused group kernel
//! ([`group_kernel`]) in either [`Dialect`], with its argument layout ([`layout`]); the
//! expression printer and helpers every file shares ([`printer`]); the noise generator's source
//! ([`random`]); the reduction kernels ([`reduction`]); the connectivity kernels
//! ([`connect_kernel`]). All of them write through one
//! [`writer::SourceWriter`].

pub mod connect_kernel;
pub mod dialect;
pub mod group_kernel;
pub mod layout;
pub mod network_kernel;
pub mod network_layout;
pub mod printer;
pub mod random;
pub mod reduction;
pub mod step_body;
pub mod writer;

pub use dialect::Dialect;
pub use group_kernel::{generate, GeneratedKernel, ENTRY};
pub use layout::{Arg, Layout, Role, ShapeKind};

use crate::diagnostics::Diagnostic;
use crate::spec::ModelSpec;

/// Parses, lowers and generates the kernel for one dialect: the whole path from spec to source.
pub fn generate_from_spec(
    spec: &ModelSpec,
    dialect: Dialect,
) -> Result<GeneratedKernel, Diagnostic> {
    let ir = crate::frontend::lower(spec)?;
    Ok(generate(&ir, spec, dialect))
}
