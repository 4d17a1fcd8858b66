//! The XLA FFI handlers: decode the call, find or build the kernel, launch it.

pub mod custom_kernel;
pub mod kernel_plan;
pub mod neuron_run;
pub mod reduce;
