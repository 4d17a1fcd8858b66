//! Raw bindings to the XLA FFI C API (`xla/ffi/api/c_api.h`). Everything here is as C declares it;
//! nothing is checked.
//!
//! The bindings are committed (`sys/c_api.rs`, bindgen's output), as cudarc commits its CUDA
//! bindings, so that building needs neither libclang nor jaxlib. They are generated from the
//! header of the oldest supported jaxlib, 0.10.2 (XLA FFI API 0.3): the version the handlers
//! announce, whose every struct and function-table entry newer XLA keeps at the same offset (XLA
//! FFI structs only grow at their end, and callers pass `struct_size`). Newer headers renamed a
//! few items without changing their layout (`XLA_FFI_Extension_Base` is `XLA_FFI_InternalExtension`
//! from API 0.4, `XLA_FFI_Error_GetMessage` is `XLA_FFI_Error_GetDetails`); the names here are
//! API 0.3's.
//!
//! `tests/xla_ffi_bindings.rs` checks the file against every installed jaxlib's header: exactly
//! equal to bindgen's output for a 0.3 header, a compatible prefix of a newer one.
//! `scripts/regen_xla_ffi_bindings.sh` regenerates it.

#![allow(
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    dead_code,
    unsafe_op_in_unsafe_fn,
    clippy::all,
    clippy::pedantic
)]

include!("sys/c_api.rs");
