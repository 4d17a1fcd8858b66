//! The part of a spec that describes a model class (`neural` / NeuroDriver style): the class's
//! `ode()` source and the names of its states, internals and parameters (docs/DESIGN.md, "Model
//! classes"). The Python shim reads them off the class (`python_shim/spikeforge/model_class.py`).

use serde::{Deserialize, Serialize};

/// A model class with `Default_States`, `Default_Params`, `Default_Inters` and an `ode()`
/// method. The values of the parameters and the defaults of `ode()`'s keyword arguments are in
/// the spec's `constants`, so that, like any constant, they can be given per neuron or per step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelClassSpec {
    /// The class name, for messages.
    #[serde(default)]
    pub class_name: String,
    /// The dedented source of `ode()`, from its `def` line.
    pub source: String,
    /// `Default_States`, in the class's order, with their bounds.
    pub states: Vec<ClassState>,
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
pub struct ClassState {
    pub name: String,
    #[serde(default)]
    pub min: Option<f64>,
    #[serde(default)]
    pub max: Option<f64>,
}

impl ModelClassSpec {
    /// A class with no states, internals or parameters yet.
    pub fn new(class_name: impl Into<String>, ode_source: impl Into<String>) -> ModelClassSpec {
        ModelClassSpec {
            class_name: class_name.into(),
            source: ode_source.into(),
            states: Vec::new(),
            internals: Vec::new(),
            params: Vec::new(),
        }
    }

    /// Adds an entry of `Default_States` with its bounds.
    pub fn state(mut self, name: impl Into<String>, min: Option<f64>, max: Option<f64>) -> Self {
        self.states.push(ClassState {
            name: name.into(),
            min,
            max,
        });
        self
    }

    pub fn internals<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.internals.extend(names.into_iter().map(Into::into));
        self
    }

    pub fn params<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.params.extend(names.into_iter().map(Into::into));
        self
    }
}
