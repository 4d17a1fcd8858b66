//! The spec's JSON: one flat object whose dynamics are either `equations` or `model_class`,
//! unknown fields refused. [`SpecJson`] is that object field for field; [`ModelSpec`] reads and
//! writes itself through it, so the sum type stays a Rust matter and the JSON (and so every spec
//! key) stays as Python writes it.

use std::collections::BTreeMap;

use serde::{de::Error as _, Deserialize, Deserializer, Serialize};

use super::{Dynamics, Method, ModelClassSpec, ModelSpec, Refractory, Surrogate};
use crate::types::ElemType;

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SpecJson {
    /// Brian2-style equations (absent for a model class).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    equations: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    model_class: Option<ModelClassSpec>,
    #[serde(default)]
    threshold: Option<String>,
    #[serde(default)]
    reset: Option<String>,
    #[serde(default)]
    refractory: Option<Refractory>,
    #[serde(default)]
    constants: BTreeMap<String, f64>,
    #[serde(default)]
    method: Option<Method>,
    /// Left out of the JSON when 1, so that specs (and cache keys) without it are unchanged.
    #[serde(default = "one_substep", skip_serializing_if = "is_one_substep")]
    substeps: u32,
    dt: f64,
    #[serde(default = "float32", deserialize_with = "precision")]
    dtype: ElemType,
    #[serde(default)]
    per_neuron: Vec<String>,
    #[serde(default)]
    per_step: Vec<String>,
    #[serde(default)]
    record: Vec<String>,
    /// Left out of the JSON when false, so that specs (and cache keys) without it are unchanged.
    #[serde(default, skip_serializing_if = "is_false")]
    record_spikes: bool,
    /// Left out of the JSON when false, so that specs (and cache keys) without it are unchanged.
    #[serde(default, skip_serializing_if = "is_false")]
    record_spike_train: bool,
    /// Left out of the JSON when false, so that specs (and cache keys) without it are unchanged.
    #[serde(default, skip_serializing_if = "is_false")]
    checkpoint: bool,
    #[serde(default)]
    fast_math: bool,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "storage"
    )]
    storage: Option<ElemType>,
    /// Left out of the JSON when absent, so that specs (and cache keys) without it are unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    surrogate: Option<Surrogate>,
}

fn one_substep() -> u32 {
    1
}

fn is_one_substep(k: &u32) -> bool {
    *k == 1
}

fn is_false(b: &bool) -> bool {
    !*b
}

pub(super) fn float32() -> ElemType {
    ElemType::F32
}

/// `dtype`: one of [`ElemType::PRECISIONS`].
pub(super) fn precision<'de, D: Deserializer<'de>>(d: D) -> Result<ElemType, D::Error> {
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

/// A spec that gives both kinds of dynamics.
#[derive(Debug)]
pub(super) struct BothDynamics;

impl std::fmt::Display for BothDynamics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("give either equations or a model_class, not both")
    }
}

impl TryFrom<SpecJson> for ModelSpec {
    type Error = BothDynamics;

    fn try_from(j: SpecJson) -> Result<ModelSpec, BothDynamics> {
        let dynamics = match (j.equations, j.model_class) {
            (Some(eq), Some(_)) if !eq.trim().is_empty() => return Err(BothDynamics),
            (_, Some(class)) => Dynamics::ModelClass(class),
            // No dynamics at all reads as empty equations, which lowering reports as a model
            // error in the field `equations`.
            (eq, None) => Dynamics::Equations(eq.unwrap_or_default()),
        };
        Ok(ModelSpec {
            dynamics,
            threshold: j.threshold,
            reset: j.reset,
            refractory: j.refractory,
            constants: j.constants,
            method: j.method,
            substeps: j.substeps,
            dt: j.dt,
            dtype: j.dtype,
            per_neuron: j.per_neuron,
            per_step: j.per_step,
            record: j.record,
            record_spikes: j.record_spikes,
            record_spike_train: j.record_spike_train,
            checkpoint: j.checkpoint,
            fast_math: j.fast_math,
            storage: j.storage,
            surrogate: j.surrogate,
        })
    }
}

impl From<ModelSpec> for SpecJson {
    fn from(s: ModelSpec) -> SpecJson {
        let (equations, model_class) = match s.dynamics {
            Dynamics::Equations(eq) => (Some(eq), None),
            Dynamics::ModelClass(class) => (None, Some(class)),
        };
        SpecJson {
            equations,
            model_class,
            threshold: s.threshold,
            reset: s.reset,
            refractory: s.refractory,
            constants: s.constants,
            method: s.method,
            substeps: s.substeps,
            dt: s.dt,
            dtype: s.dtype,
            per_neuron: s.per_neuron,
            per_step: s.per_step,
            record: s.record,
            record_spikes: s.record_spikes,
            record_spike_train: s.record_spike_train,
            checkpoint: s.checkpoint,
            fast_math: s.fast_math,
            storage: s.storage,
            surrogate: s.surrogate,
        }
    }
}
