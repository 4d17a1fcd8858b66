//! spikeforge: spiking-neuron models written as equations, compiled to CUDA and C kernels and
//! exposed to JAX as XLA FFI custom calls.
//!
//! The crate is laid out by stage, in the order a model travels through it:
//!
//! * [`spec`]: the model spec, the one serialisable description of a kernel (dynamics as a sum
//!   type: Brian2 equations or a model class); [`types`]: the element types of every buffer.
//! * [`frontend`]: what the user wrote -> one [`ir::GroupIr`], with located [`diagnostics`];
//!   each front end lowers in its own folder (`brian`, `pyclass`), and the integration scheme
//!   is resolved there, once.
//! * [`ir`]: one expression DAG (hash-consed, so common subexpressions exist once) and the group
//!   built on it (symbols, dynamics, events, scheme, spans): data and rewrites only.
//! * [`integrators`]: numerical schemes that turn derivatives into one time step of the DAG, and
//!   the choice of a scheme.
//! * [`step`]: the semantics of one step (update, noise, refractoriness, threshold, reset,
//!   traces) as one DAG, for every kind of dynamics.
//! * [`random`]: the random streams (Philox4x32-10 keyed by seed and counted by element, step
//!   and draw), computed in Rust; the kernels print the same computation.
//! * [`codegen`]: printers only: the step DAG as a fused group kernel in CUDA C or C, the
//!   argument layout, the reduction kernels.
//! * [`runtime`]: turning generated source into something callable (NVRTC + CUDA driver, cc + dlopen).
//! * [`xla`]: the XLA FFI bridge (bindgen `sys` -> checked `result` -> `safe` types).
//! * [`handlers`]: the FFI handlers XLA calls; [`capi`]: the C ABI the Python shim calls.
//! * [`connect`]: connectivity (which synapses a projection has) from a rule and a seed, by
//!   generated kernels on the device.
//! * [`fuzzing`]: the entry points of the fuzz targets (fuzz/), replayed by a test.

// Model errors carry their location and source line (about 150 bytes); they are returned only on
// the cold path of parsing a model, where boxing would buy nothing but noise.
#![allow(clippy::result_large_err)]

pub mod capi;
pub mod codegen;
pub mod connect;
pub mod diagnostics;
pub mod frontend;
pub mod fuzzing;
pub mod handlers;
pub mod integrators;
pub mod ir;
pub mod random;
pub mod runtime;
pub mod spec;
pub mod step;
pub mod types;
pub mod xla;
