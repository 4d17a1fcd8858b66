//! spikeforge: spiking-neuron models written as equations, compiled to CUDA and C kernels and
//! exposed to JAX as XLA FFI custom calls.
//!
//! The crate is laid out by stage, in the order a model travels through it:
//!
//! * [`frontend`]: Brian2-style equation strings -> syntax trees, with located diagnostics.
//! * [`ir`]: one expression DAG (hash-consed, so common subexpressions exist once) and the model
//!   description every front end lowers to.
//! * [`integrators`]: numerical schemes that turn derivatives into one time step of the DAG.
//! * [`codegen`]: one printer with a CUDA C and a C dialect, and the fused neuron kernel.
//! * [`runtime`]: turning generated source into something callable (NVRTC + CUDA driver, cc + dlopen).
//! * [`xla`]: the XLA FFI bridge (bindgen `sys` -> checked `result` -> `safe` types).
//! * [`handlers`]: the FFI handlers XLA calls; [`capi`]: the C ABI the Python shim calls.

// Model errors carry their location and source line (about 150 bytes); they are returned only on
// the cold path of parsing a model, where boxing would buy nothing but noise.
#![allow(clippy::result_large_err)]

pub mod capi;
pub mod codegen;
pub mod diagnostics;
pub mod frontend;
pub mod fuzzing;
pub mod handlers;
pub mod integrators;
pub mod ir;
pub mod runtime;
pub mod spec;
pub mod step;
pub mod types;
pub mod xla;
