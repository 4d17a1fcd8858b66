//! How the errors of the layers below become the `FfiError` XLA raises in Python: a model that
//! does not lower is the caller's mistake (`INVALID_ARGUMENT`, with the located diagnostic); a
//! kernel that does not build or launch is ours or the machine's (`INTERNAL`, with the runtime's
//! message, which says what to install or where the source was kept).

use crate::diagnostics::Diagnostic;
use crate::runtime::RuntimeError;
use crate::xla::FfiError;

impl From<RuntimeError> for FfiError {
    fn from(e: RuntimeError) -> FfiError {
        FfiError::internal(e.to_string())
    }
}

impl From<Diagnostic> for FfiError {
    fn from(d: Diagnostic) -> FfiError {
        FfiError::invalid_argument(d.render())
    }
}
