//! The model spec: the one serialisable description of a compiled kernel (see docs/DESIGN.md).
//!
//! Python sends it as JSON when a model is defined (validation and argument layout) and as a
//! string attribute on every XLA call, so an XLA executable carries everything needed to rebuild
//! its kernel in a fresh process. The dynamics are a sum type ([`Dynamics`]: Brian2 equations or
//! a model class); the JSON stays flat (`"equations": ...` or `"model_class": {...}` beside the
//! other fields, `wire`). In Rust a spec is built with [`ModelSpec::from_equations`] /
//! [`ModelSpec::from_class`] and the chained setters below.

pub mod limits;
mod model_class;
pub mod names;
pub mod network;
pub mod numbers;
pub mod surrogate;
mod wire;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

pub use model_class::{ClassState, ModelClassSpec};
pub use network::{NetworkSpec, Strategy};
pub use surrogate::{Surrogate, SurrogateKind};

use crate::types::ElemType;

/// What makes the state evolve between events.
#[derive(Clone, Debug, PartialEq)]
pub enum Dynamics {
    /// Brian2-style equations (`dv/dt = ... : unit (flags)` lines, subexpressions, parameters).
    Equations(String),
    /// A model class (`neural` / NeuroDriver style) with an `ode()` method.
    ModelClass(ModelClassSpec),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Refractory {
    /// A duration in the model's time unit (ms in the README's convention).
    Duration(f64),
    /// An expression: a duration, or a condition (Brian2: refractory while it holds after a spike).
    Code(String),
}

impl From<f64> for Refractory {
    fn from(duration: f64) -> Refractory {
        Refractory::Duration(duration)
    }
}

impl From<&str> for Refractory {
    fn from(code: &str) -> Refractory {
        Refractory::Code(code.to_string())
    }
}

impl From<String> for Refractory {
    fn from(code: String) -> Refractory {
        Refractory::Code(code)
    }
}

/// Integration schemes, named as in Brian2 (see `crate::integrators`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    #[default]
    Euler,
    /// Second-order Runge-Kutta, midpoint rule.
    Rk2,
    /// Second-order Runge-Kutta, trapezoidal rule (Heun's method).
    Heun,
    Rk4,
    /// Exponential Euler for conditionally linear equations.
    ExponentialEuler,
    /// Exact integration of linear equations with constant coefficients (Brian2's `linear` too).
    #[serde(alias = "linear")]
    Exact,
}

impl Method {
    /// The name Brian2 (and the spec's JSON) use.
    pub fn name(self) -> &'static str {
        match self {
            Method::Euler => "euler",
            Method::Rk2 => "rk2",
            Method::Heun => "heun",
            Method::Rk4 => "rk4",
            Method::ExponentialEuler => "exponential_euler",
            Method::Exact => "exact",
        }
    }
}

/// One model variant: dynamics, events, constants and the choices that shape its kernel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "wire::SpecJson", into = "wire::SpecJson")]
pub struct ModelSpec {
    pub dynamics: Dynamics,
    /// A condition; the group spikes where it holds after the state update.
    pub threshold: Option<String>,
    /// Statements run in order on the elements that spiked.
    pub reset: Option<String>,
    pub refractory: Option<Refractory>,
    /// Folded into the kernel, unless named in `per_neuron` or `per_step`.
    pub constants: BTreeMap<String, f64>,
    /// The integration scheme; `None` chooses one the way Brian2 does (`integrators::choice`).
    pub method: Option<Method>,
    /// Integration steps of `dt / substeps` per step of `dt` (threshold and reset once per `dt`).
    pub substeps: u32,
    pub dt: f64,
    /// The precision the kernel computes in: float32 or float64.
    pub dtype: ElemType,
    /// Constants given as `(n,)` arrays instead of folded numbers.
    pub per_neuron: Vec<String>,
    /// Parameters or constants given as `(batch, steps, n_inner)` arrays.
    pub per_step: Vec<String>,
    /// Variables whose traces the kernel writes.
    pub record: Vec<String>,
    /// The kernel writes each spike as (element, step) into a buffer of a capacity given per
    /// call (`codegen::layout`, the spike record).
    pub record_spikes: bool,
    /// The kernel writes the spike train: the spikes of each element in each window of
    /// `record_every` steps (`codegen::layout`, shaped like a trace).
    pub record_spike_train: bool,
    /// The kernel also writes each stored variable (and a constant refractory period's
    /// bookkeeping) at the start of every `checkpoint_every`-th step, a number given per call:
    /// the checkpoints the adjoint kernel (`codegen::adjoint_kernel`) recomputes the run from.
    pub checkpoint: bool,
    pub fast_math: bool,
    /// Store real buffers as float16 / bfloat16 (the kernel computes in `dtype`, float32).
    pub storage: Option<ElemType>,
    /// The threshold's derivative when a run is differentiated (`None`: 0, the exact derivative
    /// almost everywhere); no effect on the forward kernel.
    pub surrogate: Option<Surrogate>,
}

/// A spec that cannot be read: not JSON, a missing or unknown field, a value of the wrong type,
/// or both kinds of dynamics at once.
#[derive(Debug)]
pub struct SpecError(serde_json::Error);

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid model spec: {}", self.0)
    }
}

impl std::error::Error for SpecError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

impl ModelSpec {
    /// A spec with the given dynamics and step, and everything else at its default: no events,
    /// no constants, Brian2's choice of method, one sub-step, float32, nothing per neuron, per
    /// step or recorded, no fast math, no storage type.
    pub fn new(dynamics: Dynamics, dt: f64) -> ModelSpec {
        ModelSpec {
            dynamics,
            threshold: None,
            reset: None,
            refractory: None,
            constants: BTreeMap::new(),
            method: None,
            substeps: 1,
            dt,
            dtype: ElemType::F32,
            per_neuron: Vec::new(),
            per_step: Vec::new(),
            record: Vec::new(),
            record_spikes: false,
            record_spike_train: false,
            checkpoint: false,
            fast_math: false,
            storage: None,
            surrogate: None,
        }
    }

    pub fn from_equations(equations: impl Into<String>, dt: f64) -> ModelSpec {
        ModelSpec::new(Dynamics::Equations(equations.into()), dt)
    }

    pub fn from_class(class: ModelClassSpec, dt: f64) -> ModelSpec {
        ModelSpec::new(Dynamics::ModelClass(class), dt)
    }

    pub fn threshold(mut self, condition: impl Into<String>) -> Self {
        self.threshold = Some(condition.into());
        self
    }

    pub fn reset(mut self, statements: impl Into<String>) -> Self {
        self.reset = Some(statements.into());
        self
    }

    pub fn refractory(mut self, refractory: impl Into<Refractory>) -> Self {
        self.refractory = Some(refractory.into());
        self
    }

    /// Adds constants (a later value of a name replaces an earlier one).
    pub fn constants<K: Into<String>>(
        mut self,
        values: impl IntoIterator<Item = (K, f64)>,
    ) -> Self {
        self.constants
            .extend(values.into_iter().map(|(k, v)| (k.into(), v)));
        self
    }

    pub fn method(mut self, method: Method) -> Self {
        self.method = Some(method);
        self
    }

    pub fn substeps(mut self, substeps: u32) -> Self {
        self.substeps = substeps;
        self
    }

    pub fn dtype(mut self, dtype: ElemType) -> Self {
        self.dtype = dtype;
        self
    }

    pub fn storage(mut self, storage: ElemType) -> Self {
        self.storage = Some(storage);
        self
    }

    pub fn per_neuron<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.per_neuron.extend(names.into_iter().map(Into::into));
        self
    }

    pub fn per_step<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.per_step.extend(names.into_iter().map(Into::into));
        self
    }

    pub fn record<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.record.extend(names.into_iter().map(Into::into));
        self
    }

    pub fn record_spikes(mut self, on: bool) -> Self {
        self.record_spikes = on;
        self
    }

    pub fn record_spike_train(mut self, on: bool) -> Self {
        self.record_spike_train = on;
        self
    }

    pub fn checkpoint(mut self, on: bool) -> Self {
        self.checkpoint = on;
        self
    }

    pub fn surrogate(mut self, surrogate: Surrogate) -> Self {
        self.surrogate = Some(surrogate);
        self
    }

    pub fn fast_math(mut self, on: bool) -> Self {
        self.fast_math = on;
        self
    }

    pub fn from_json(s: &str) -> Result<Self, SpecError> {
        serde_json::from_str(s).map_err(SpecError)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a spec always serialises")
    }

    /// The element type of the real buffers: the storage type when there is one, else `dtype`.
    pub fn buffer_real(&self) -> ElemType {
        self.storage.unwrap_or(self.dtype)
    }

    /// A stable identity of the spec (sha256 of its canonical JSON), the key of every cache.
    pub fn key(&self) -> String {
        crate::runtime::cache::sha256_hex(&self.to_json())
    }
}

/// The seed's Oizumi class (`tests/models/seed000_oizumi.json`: internals, direct jumps in
/// `ode()`, a docstring), for the tests of every stage.
#[cfg(test)]
pub(crate) fn seed000_oizumi() -> ModelSpec {
    ModelSpec::from_json(include_str!("../../tests/models/seed000_oizumi.json"))
        .expect("the test model reads")
}

/// The source of [`seed000_oizumi`]'s `ode()`.
#[cfg(test)]
pub(crate) fn seed000_oizumi_source() -> String {
    match seed000_oizumi().dynamics {
        Dynamics::ModelClass(class) => class.source,
        Dynamics::Equations(_) => unreachable!("a model class"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_flat_and_round_trips() {
        let spec = ModelSpec::from_equations("dv/dt = -v / tau : 1", 0.1)
            .threshold("v > 1")
            .refractory(2.0)
            .constants([("tau", 10.0)])
            .record(["v"]);
        let json = spec.to_json();
        assert!(
            json.starts_with(r#"{"equations":"dv/dt = -v / tau : 1","threshold":"v > 1""#),
            "{json}"
        );
        assert!(
            !json.contains("substeps") && !json.contains("storage"),
            "{json}"
        );
        assert_eq!(ModelSpec::from_json(&json).unwrap(), spec);

        let class = ModelClassSpec::new("Decay", "def ode(self):\n    self.d_v = -self.v\n").state(
            "v",
            Some(0.0),
            None,
        );
        let spec = ModelSpec::from_class(class, 0.1).method(Method::Rk4);
        let json = spec.to_json();
        assert!(
            json.starts_with(r#"{"model_class":{"class_name":"Decay""#),
            "{json}"
        );
        assert!(!json.contains("equations"), "{json}");
        assert_eq!(ModelSpec::from_json(&json).unwrap(), spec);
    }

    #[test]
    fn reading_errors_are_typed_and_say_what_is_wrong() {
        let e = ModelSpec::from_json(r#"{"equations": "x : 1", "dt": 0.1, "tua": 1}"#)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("invalid model spec: unknown field `tua`"),
            "{e}"
        );
        let e = ModelSpec::from_json(r#"{"equations": "x : 1", "dt": 0.1, "dtype": "int32"}"#)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("dtype must be float32 or float64, got int32"),
            "{e}"
        );
        let both =
            r#"{"equations": "x : 1", "model_class": {"source": "", "states": []}, "dt": 0.1}"#;
        let e = ModelSpec::from_json(both).unwrap_err().to_string();
        assert!(e.contains("either equations or a model_class"), "{e}");
        let e = ModelSpec::from_json(r#"{"python_model": {}, "dt": 0.1}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `python_model`"), "{e}");
    }
}
