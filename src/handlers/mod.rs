//! The XLA FFI handlers: decode the call, find or build the kernel, launch it.
//!
//! Each target (`spikeforge_neuron_run`, `spikeforge_custom_call`, `spikeforge_reduce`,
//! `spikeforge_connect`) is an
//! [`xla::Handler`](crate::xla::Handler) per platform: what does not depend on the buffers is
//! prepared once per call site at instantiation, and an execution checks its buffers and
//! launches. What they share is written once: the registry of exported targets
//! ([`registry`]), buffer checks and the pointer wrapper worker threads share ([`buffers`]),
//! the per-stream kernel cache ([`loaded_kernels`]), output poisoning ([`poison`]) and the
//! conversion of lower layers' errors ([`errors`]).

mod buffers;
pub mod connect;
pub mod custom_kernel;
mod errors;
pub mod kernel_plan;
pub mod kernel_signature;
mod loaded_kernels;
pub mod network_checkpoints;
pub mod network_grad;
pub mod network_path;
pub mod network_run;
pub mod neuron_grad;
pub mod neuron_run;
mod poison;
pub mod reduce;
pub mod registry;
