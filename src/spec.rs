//! The model spec: the one serialisable description of a compiled kernel (see docs/DESIGN.md).
//!
//! Python sends it as JSON when a model is defined (validation and argument layout) and as a
//! string attribute on every XLA call, so an XLA executable carries everything needed to rebuild
//! its kernel in a fresh process.

use serde::{de::Error as _, Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;

use crate::types::ElemType;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Refractory {
    /// A duration in the model's time unit (ms in the README's convention).
    Duration(f64),
    /// An expression: a duration, or a condition (Brian2: refractory while it holds after a spike).
    Code(String),
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

fn float32() -> ElemType {
    ElemType::F32
}

/// `dtype`: one of [`ElemType::PRECISIONS`].
fn precision<'de, D: Deserializer<'de>>(d: D) -> Result<ElemType, D::Error> {
    let t = ElemType::deserialize(d)?;
    if ElemType::PRECISIONS.contains(&t) {
        Ok(t)
    } else {
        Err(D::Error::custom(format!(
            "dtype must be float32 or float64, got {t}"
        )))
    }
}

/// `storage`: null or one of [`ElemType::STORAGES`].
fn storage<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ElemType>, D::Error> {
    match Option::<ElemType>::deserialize(d)? {
        Some(t) if !ElemType::STORAGES.contains(&t) => Err(D::Error::custom(format!(
            "storage must be float16 or bfloat16, got {t}"
        ))),
        t => Ok(t),
    }
}

fn one_substep() -> u32 {
    1
}

fn is_one_substep(k: &u32) -> bool {
    *k == 1
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Brian2-style equations; empty when the model is a `python_model`.
    #[serde(default)]
    pub equations: String,
    /// A model class (`neural` / NeuroDriver style) instead of equations: see [`PythonModelSpec`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python_model: Option<PythonModelSpec>,
    #[serde(default)]
    pub threshold: Option<String>,
    #[serde(default)]
    pub reset: Option<String>,
    #[serde(default)]
    pub refractory: Option<Refractory>,
    #[serde(default)]
    pub constants: BTreeMap<String, f64>,
    /// The integration scheme; `None` chooses one the way Brian2 does (`integrators::resolve_method`).
    #[serde(default)]
    pub method: Option<Method>,
    /// Integration steps of `dt / substeps` per step of `dt` (threshold and reset once per `dt`).
    /// Left out of the JSON when 1, so that specs (and cache keys) without it are unchanged.
    #[serde(default = "one_substep", skip_serializing_if = "is_one_substep")]
    pub substeps: u32,
    pub dt: f64,
    /// The precision the kernel computes in: float32 or float64.
    #[serde(default = "float32", deserialize_with = "precision")]
    pub dtype: ElemType,
    #[serde(default)]
    pub per_neuron: Vec<String>,
    #[serde(default)]
    pub per_step: Vec<String>,
    #[serde(default)]
    pub record: Vec<String>,
    #[serde(default)]
    pub fast_math: bool,
    /// Store real buffers as float16 / bfloat16 (the kernel computes in `dtype`, float32).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "storage"
    )]
    pub storage: Option<ElemType>,
}

/// A model class with `Default_States`, `Default_Params`, `Default_Inters` and an `ode()`
/// method (docs/DESIGN.md, "Python model classes"). The values of the parameters and the
/// defaults of `ode()`'s keyword arguments are in the spec's `constants`, so that, like any
/// constant, they can be given per neuron or per step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PythonModelSpec {
    /// The class name, for messages.
    #[serde(default)]
    pub class_name: String,
    /// The dedented source of `ode()`, from its `def` line.
    pub source: String,
    /// `Default_States`, in the class's order, with their bounds.
    pub states: Vec<PythonState>,
    /// `Default_Inters`: per-neuron values written inside `ode()` and not integrated.
    #[serde(default)]
    pub internals: Vec<String>,
    /// `Default_Params`: the names `self.x` may read; their values are in `constants`.
    #[serde(default)]
    pub params: Vec<String>,
}

/// One entry of `Default_States`: `(initial, min, max)` gives the bounds (the initial value
/// stays with the Python class: it does not change the kernel).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PythonState {
    pub name: String,
    #[serde(default)]
    pub min: Option<f64>,
    #[serde(default)]
    pub max: Option<f64>,
}

impl ModelSpec {
    pub fn from_json(s: &str) -> Result<Self, String> {
        serde_json::from_str(s).map_err(|e| format!("invalid model spec: {e}"))
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a spec always serialises")
    }
}

impl ModelSpec {
    /// The element type of the real buffers: the storage type when there is one, else `dtype`.
    pub fn buffer_real(&self) -> ElemType {
        self.storage.unwrap_or(self.dtype)
    }

    /// A stable identity of the spec (sha256 of its canonical JSON), the key of every cache.
    pub fn key(&self) -> String {
        crate::runtime::cache::sha256_hex(&self.to_json())
    }
}
