//! Code generation: the IR printed as CUDA C or C, and the kernels built from it.

pub mod layout;
pub mod neuron_kernel;
pub mod printer;
pub mod random;
pub mod reduction;

pub use layout::{Arg, Layout, Role, ShapeKind};
pub use neuron_kernel::{generate, GeneratedKernel, ENTRY};
pub use printer::Dialect;

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
