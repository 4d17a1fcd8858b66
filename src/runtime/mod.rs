//! Runtime: turning generated source into something callable.
//!
//! * [`cpu`]: C source -> the system C compiler -> a shared library loaded with `dlopen`.
//! * [`cuda`]: CUDA C++ source -> NVRTC -> CUBIN -> a CUDA module in XLA's context, launched on
//!   XLA's stream.
//! * [`cache`]: the on-disk cache both share (and the in-memory memo in front of it).
//! * [`error`]: [`RuntimeError`], whose messages say what to install or where to look.
//!
//! Both back ends compile a given source once per process (and once per machine, through the
//! disk cache); later requests are hash-map lookups.

pub mod cache;
pub mod cpu;
pub mod cuda;
pub mod error;

pub use error::RuntimeError;
