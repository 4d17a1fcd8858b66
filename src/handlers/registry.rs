//! The one list of the XLA FFI targets this library exports.
//!
//! [`FFI_TARGETS`] and the exported handler symbols are both generated from the table at the
//! bottom of this file, so they cannot disagree; the library reports the table through the C ABI
//! (`sf_ffi_targets`, see `ffi/spikeforge.h`) and the Python shim registers exactly what it
//! reports. A test checks the header against this table and the C ABI.

use std::ffi::{c_char, CString};
use std::sync::LazyLock;

use serde_json::json;

use super::{connect, custom_kernel, network_grad, network_run, neuron_grad, neuron_run, reduce};
use crate::xla::{Handler, HandlerTraits, REPORTED_API_VERSION};

/// The platform a handler runs on, as `jax.ffi.register_ffi_target` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Platform {
    Cpu,
    Cuda,
}

impl Platform {
    pub fn name(self) -> &'static str {
        match self {
            Platform::Cpu => "cpu",
            Platform::Cuda => "CUDA",
        }
    }
}

/// One exported handler: the target name JAX calls it by, its platform, its symbol.
#[derive(Clone, Copy, Debug)]
pub struct FfiTarget {
    pub name: &'static str,
    pub platform: Platform,
    pub symbol: &'static str,
    pub traits: HandlerTraits,
}

/// Declares every exported handler (through [`xla_ffi_handler!`](crate::xla_ffi_handler)) and
/// lists it in [`FFI_TARGETS`].
macro_rules! ffi_targets {
    ($($target:literal { $($platform:ident: $symbol:ident => $handler:ty),+ $(,)? })+) => {
        $($(crate::xla_ffi_handler!(pub fn $symbol => $handler);)+)+

        /// Every XLA FFI handler the library exports.
        pub const FFI_TARGETS: &[FfiTarget] = &[$($(FfiTarget {
            name: $target,
            platform: Platform::$platform,
            symbol: stringify!($symbol),
            traits: <$handler as Handler>::TRAITS,
        },)+)+];
    };
}

ffi_targets! {
    "spikeforge_neuron_run" {
        Cpu: sf_neuron_run_cpu => neuron_run::NeuronRunCpu,
        Cuda: sf_neuron_run_cuda => neuron_run::NeuronRunCuda,
    }
    "spikeforge_neuron_grad" {
        Cpu: sf_neuron_grad_cpu => neuron_grad::NeuronGradCpu,
        Cuda: sf_neuron_grad_cuda => neuron_grad::NeuronGradCuda,
    }
    "spikeforge_network_grad" {
        Cpu: sf_network_grad_cpu => network_grad::NetworkGradCpu,
        Cuda: sf_network_grad_cuda => network_grad::NetworkGradCuda,
    }
    "spikeforge_custom_call" {
        Cpu: sf_custom_call_cpu => custom_kernel::CustomCallCpu,
        Cuda: sf_custom_call_cuda => custom_kernel::CustomCallCuda,
    }
    "spikeforge_reduce" {
        Cpu: sf_reduce_cpu => reduce::ReduceCpu,
        Cuda: sf_reduce_cuda => reduce::ReduceCuda,
    }
    "spikeforge_connect" {
        Cpu: sf_connect_cpu => connect::ConnectCpu,
        Cuda: sf_connect_cuda => connect::ConnectCuda,
    }
    "spikeforge_network_run" {
        Cpu: sf_network_run_cpu => network_run::NetworkRunCpu,
        Cuda: sf_network_run_cuda => network_run::NetworkRunCuda,
    }
}

/// The execution stages every handler is registered for (one symbol serves both; see
/// [`crate::xla::instance`]).
pub const STAGES: [&str; 2] = ["instantiate", "execute"];

/// What `sf_ffi_targets` returns: the FFI API version the handlers announce and the table.
pub fn targets_json() -> serde_json::Value {
    let targets: Vec<_> = FFI_TARGETS
        .iter()
        .map(|t| {
            json!({
                "name": t.name,
                "platform": t.platform.name(),
                "symbol": t.symbol,
                "stages": STAGES,
                "command_buffer_compatible": t.traits.command_buffer_compatible,
            })
        })
        .collect();
    json!({
        "api_version": [REPORTED_API_VERSION.0, REPORTED_API_VERSION.1],
        "targets": targets,
    })
}

/// [`targets_json`] as a C string that lives as long as the library.
pub fn targets_c_string() -> *const c_char {
    static TEXT: LazyLock<CString> = LazyLock::new(|| {
        CString::new(targets_json().to_string()).expect("JSON text has no NUL bytes")
    });
    TEXT.as_ptr()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_has_a_cpu_and_a_cuda_handler_and_unique_symbols() {
        let mut symbols: Vec<&str> = FFI_TARGETS.iter().map(|t| t.symbol).collect();
        symbols.sort_unstable();
        symbols.dedup();
        assert_eq!(symbols.len(), FFI_TARGETS.len());
        for t in FFI_TARGETS {
            for platform in [Platform::Cpu, Platform::Cuda] {
                assert!(
                    FFI_TARGETS
                        .iter()
                        .any(|u| u.name == t.name && u.platform == platform),
                    "{} has no {platform:?} handler",
                    t.name
                );
            }
            // Command buffers exist on GPUs only.
            if t.platform == Platform::Cpu {
                assert!(!t.traits.command_buffer_compatible, "{}", t.symbol);
            }
        }
        let json = targets_json();
        assert_eq!(json["targets"].as_array().unwrap().len(), FFI_TARGETS.len());
        assert_eq!(json["targets"][0]["stages"][0], "instantiate");
    }
}
