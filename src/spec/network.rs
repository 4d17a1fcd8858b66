//! The network spec: neuron groups, spike sources, projections (synapse groups), Poisson inputs,
//! TimedArrays and monitors, with the step, precision and mode they share (docs/NETWORKS.md).
//!
//! Like [`ModelSpec`](super::ModelSpec), it is one JSON document: Python sends it when a network is
//! defined (`sf_network_compile`: validation and argument layout) and as the `spec` attribute of
//! every `spikeforge_network_run` call, so an XLA executable carries all it needs. Unknown fields
//! are errors; this module reads the JSON and checks what needs no model (names, sizes, ranges,
//! numbers); the network front end (`crate::frontend::network`) checks the rest, with every error
//! naming the object and field.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::names::describe;
use super::{wire, ModelSpec};
use crate::types::ElemType;

/// The whole network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    /// The step, in the kernels' time unit (ms).
    pub dt: f64,
    /// float32 or float64, for every group, projection and input.
    #[serde(default = "wire::float32", deserialize_with = "wire::precision")]
    pub dtype: ElemType,
    #[serde(default)]
    pub fast_math: bool,
    /// Bit-identical results from run to run on the GPU (docs/NETWORKS.md says how).
    #[serde(default)]
    pub deterministic: bool,
    /// How a CUDA run is launched (docs/NETWORKS.md, "Launches and limits"); left out of the
    /// canonical JSON when `auto`.
    #[serde(default, skip_serializing_if = "Strategy::is_auto")]
    pub strategy: Strategy,
    /// Neuron groups and spike sources, in order: their index is the group id.
    pub groups: Vec<GroupSpec>,
    /// Synapse groups, in creation order (Brian2 delivers in this order).
    #[serde(default)]
    pub projections: Vec<ProjectionSpec>,
    #[serde(default)]
    pub poisson_inputs: Vec<PoissonInputSpec>,
    /// Tables callable in equations (`I = stim(t, i) : amp`).
    #[serde(default)]
    pub timed_arrays: Vec<TimedArraySpec>,
    #[serde(default)]
    pub monitors: Vec<MonitorSpec>,
}

/// How a network's steps are launched on a GPU (the CPU runs every step in one call whatever it
/// says).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// The persistent kernel as one block for small networks, as a cooperative grid where the
    /// device holds it, else per step (`handlers::network_path`).
    #[default]
    Auto,
    /// Two or three kernel launches a step.
    PerStep,
    /// The persistent kernel as one block per batch member.
    Block,
    /// The persistent kernel as a cooperative grid (an error where the device cannot hold it).
    Grid,
    /// The one-barrier kernel as one thread-block cluster per member (compute capability 9.0;
    /// an error where the network or the device has none, or it does not fit).
    Cluster,
}

impl Strategy {
    pub fn is_auto(&self) -> bool {
        *self == Strategy::Auto
    }

    /// Its name in the spec.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Auto => "auto",
            Strategy::PerStep => "per_step",
            Strategy::Block => "block",
            Strategy::Grid => "grid",
            Strategy::Cluster => "cluster",
        }
    }
}

/// A population of neurons, or of spike sources.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum GroupSpec {
    /// A neuron group of one model: `model` is a model spec (docs/DESIGN.md) without `dt` and
    /// `dtype` (the network's apply; if given they must equal the network's).
    Neuron {
        name: String,
        n: usize,
        model: Value,
    },
    /// Brian2's `PoissonGroup`: spikes where `rand() < rates * dt`. `rates` (in 1/ms) is a
    /// number, an expression of `t`, `i`, `N`, constants and TimedArrays, or null: one rate per
    /// neuron, given in the state.
    Poisson {
        name: String,
        n: usize,
        #[serde(default)]
        rates: Option<Rates>,
        #[serde(default)]
        constants: BTreeMap<String, f64>,
    },
    /// Brian2's `SpikeGeneratorGroup`: `n_spikes` given spikes (indices and times in the
    /// state), repeated every `period` (ms) when one is given.
    SpikeGenerator {
        name: String,
        n: usize,
        n_spikes: usize,
        #[serde(default)]
        period: Option<f64>,
    },
}

impl GroupSpec {
    pub fn name(&self) -> &str {
        match self {
            GroupSpec::Neuron { name, .. }
            | GroupSpec::Poisson { name, .. }
            | GroupSpec::SpikeGenerator { name, .. } => name,
        }
    }

    pub fn n(&self) -> usize {
        match self {
            GroupSpec::Neuron { n, .. }
            | GroupSpec::Poisson { n, .. }
            | GroupSpec::SpikeGenerator { n, .. } => *n,
        }
    }

    /// What the object is called in messages (`NeuronGroup 'P'`).
    pub fn describe(&self) -> String {
        let kind = match self {
            GroupSpec::Neuron { .. } => "NeuronGroup",
            GroupSpec::Poisson { .. } => "PoissonGroup",
            GroupSpec::SpikeGenerator { .. } => "SpikeGeneratorGroup",
        };
        describe(kind, self.name())
    }

    /// The model spec of a neuron group, with the network's `dt`, `dtype` and `fast_math` filled
    /// in; an error when the model gives a different `dt` or `dtype`, or is not a model spec.
    pub fn model_spec(&self, net: &NetworkSpec) -> Option<Result<ModelSpec, String>> {
        let GroupSpec::Neuron { model, .. } = self else {
            return None;
        };
        Some(model_spec(model, net))
    }
}

fn model_spec(model: &Value, net: &NetworkSpec) -> Result<ModelSpec, String> {
    let Value::Object(fields) = model else {
        return Err("model must be a model spec (a JSON object)".into());
    };
    let mut fields = fields.clone();
    for (key, value) in [
        ("dt", Value::from(net.dt)),
        ("dtype", Value::from(net.dtype.name())),
    ] {
        match fields.get(key) {
            Some(given) if given != &value => {
                return Err(format!(
                    "the model's {key} ({given}) differs from the network's ({value}): a network has one {key}"
                ))
            }
            _ => {
                fields.insert(key.into(), value);
            }
        }
    }
    fields
        .entry("fast_math")
        .or_insert(Value::Bool(net.fast_math));
    ModelSpec::from_json(&Value::Object(fields).to_string()).map_err(|e| e.to_string())
}

/// A rate or a weight: a number, or an expression.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Rates {
    Number(f64),
    Expression(String),
}

/// A value given as a number or as an expression (a delay, a weight).
pub type NumberOrExpr = Rates;

/// The statements of a synapse group's pathways of one kind (Brian2's `on_pre` / `on_post`):
/// one text, the pathway named `pre` (or `post`), or texts by pathway name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PathwayCode {
    One(String),
    Named(BTreeMap<String, String>),
}

impl Default for PathwayCode {
    fn default() -> Self {
        PathwayCode::One(String::new())
    }
}

impl PathwayCode {
    /// Every pathway as (name, statements), by name; `default` names a single text's pathway
    /// (`pre` or `post`).
    pub fn pathways<'a>(&'a self, default: &'a str) -> Vec<(&'a str, &'a str)> {
        match self {
            PathwayCode::One(code) => vec![(default, code.as_str())],
            PathwayCode::Named(map) => map.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
        }
    }
}

/// A projection's delays: one (the `pre` pathway's, Brian2's `delay=2*ms`) or one per pathway
/// name (`delay={'up': 0*ms, 'down': 5*ms}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DelaySpec {
    One(NumberOrExpr),
    Named(BTreeMap<String, NumberOrExpr>),
}

impl DelaySpec {
    /// Every delay given, with the pathway it is for (a single value is the `pre` pathway's).
    pub fn by_pathway(&self) -> Vec<(&str, &NumberOrExpr)> {
        match self {
            DelaySpec::One(d) => vec![("pre", d)],
            DelaySpec::Named(map) => map.iter().map(|(k, v)| (k.as_str(), v)).collect(),
        }
    }
}

/// A synapse group between two (sub)groups.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectionSpec {
    pub name: String,
    /// The source group's name, and the range of its neurons (`P[:3200]`: `[0, 3200]`; the
    /// whole group when absent).
    pub source: String,
    #[serde(default)]
    pub source_range: Option<[usize; 2]>,
    pub target: String,
    #[serde(default)]
    pub target_range: Option<[usize; 2]>,
    /// The synapse model: per-synapse parameters (`w : 1`), `(shared)` ones, subexpressions.
    #[serde(default)]
    pub model: String,
    /// Statements run once per (spike, synapse) when the spike arrives (`ge_post += w`): the
    /// pathway `pre`, or named pathways (`{"up": "x += w", "down": "y += w"}`), Brian2's.
    #[serde(default)]
    pub on_pre: PathwayCode,
    /// Statements run once per synapse onto a target neuron when it spikes: the pathway `post`,
    /// or named pathways. None: no postsynaptic pathway.
    #[serde(default)]
    pub on_post: Option<PathwayCode>,
    /// The delays of the pathways: one value (the `pre` pathway's) or one per pathway name
    /// (`{"up": 0, "down": 5}`; pathways left out have no delay). Each is None (0), a duration
    /// (ms), a constant expression, or the name of a per-synapse variable of the model
    /// (heterogeneous delays, which need `max_delay`).
    #[serde(default)]
    pub delay: Option<DelaySpec>,
    /// The longest per-synapse delay (ms) the spike queue holds.
    #[serde(default)]
    pub max_delay: Option<f64>,
    #[serde(default)]
    pub constants: BTreeMap<String, f64>,
    /// The integration scheme of the `(clock-driven)` variables (Brian2's choice when absent:
    /// exact, euler, heun, the first that applies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<crate::spec::Method>,
}

/// Brian2's `PoissonInput`: each step, `Binomial(n, rate * dt)` events, each adding `weight` to
/// `variable` of every target neuron.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoissonInputSpec {
    pub name: String,
    pub target: String,
    #[serde(default)]
    pub target_range: Option<[usize; 2]>,
    pub variable: String,
    /// Independent sources per target neuron.
    pub n: u64,
    /// Rate of each source, in 1/ms (a number or a constant expression).
    pub rate: NumberOrExpr,
    /// What each event adds: a number, or an expression of the target's variables and constants.
    pub weight: NumberOrExpr,
    #[serde(default)]
    pub constants: BTreeMap<String, f64>,
}

/// Brian2's `TimedArray`: values sampled every `dt` (ms), `shape` `[T]` (`f(t)`) or `[T, C]`
/// (`f(t, i)`); the values are in the state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimedArraySpec {
    pub name: String,
    pub dt: f64,
    pub shape: Vec<usize>,
}

/// Which elements of a group a state monitor records.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Record {
    /// `true`: every element.
    All(bool),
    Indices(Vec<usize>),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum MonitorSpec {
    /// Spike indices and steps, up to `capacity` per run; more are counted as dropped.
    Spike {
        name: String,
        source: String,
        #[serde(default)]
        range: Option<[usize; 2]>,
        capacity: usize,
    },
    /// Values of `variables` of the `record`ed elements at the start of every `every`-th step.
    State {
        name: String,
        source: String,
        variables: Vec<String>,
        record: Record,
        #[serde(default = "one")]
        every: u32,
    },
    /// Spikes per step of the (sub)group, divided by its size and dt (1/ms).
    Rate {
        name: String,
        source: String,
        #[serde(default)]
        range: Option<[usize; 2]>,
    },
}

impl MonitorSpec {
    pub fn name(&self) -> &str {
        match self {
            MonitorSpec::Spike { name, .. }
            | MonitorSpec::State { name, .. }
            | MonitorSpec::Rate { name, .. } => name,
        }
    }

    pub fn source(&self) -> &str {
        match self {
            MonitorSpec::Spike { source, .. }
            | MonitorSpec::State { source, .. }
            | MonitorSpec::Rate { source, .. } => source,
        }
    }

    pub fn describe(&self) -> String {
        let kind = match self {
            MonitorSpec::Spike { .. } => "SpikeMonitor",
            MonitorSpec::State { .. } => "StateMonitor",
            MonitorSpec::Rate { .. } => "PopulationRateMonitor",
        };
        describe(kind, self.name())
    }
}

fn one() -> u32 {
    1
}

/// A network spec that cannot be read (not JSON, a missing or unknown field, a value of the
/// wrong type).
#[derive(Debug)]
pub struct NetworkSpecError(serde_json::Error);

impl fmt::Display for NetworkSpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid network spec: {}", self.0)
    }
}

impl std::error::Error for NetworkSpecError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

impl NetworkSpec {
    pub fn from_json(s: &str) -> Result<Self, NetworkSpecError> {
        serde_json::from_str(s).map_err(NetworkSpecError)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a network spec always serialises")
    }

    /// The sha256 of the canonical JSON: the key of every cache and of the FFI call.
    pub fn key(&self) -> String {
        crate::runtime::cache::sha256_hex(&self.to_json())
    }

    /// Every object of the network, as messages name it, with its name: groups, projections,
    /// Poisson inputs, TimedArrays, monitors.
    pub fn objects(&self) -> impl Iterator<Item = (String, &str)> {
        fn named<'a>(kind: &str, name: &'a str) -> (String, &'a str) {
            (describe(kind, name), name)
        }
        let groups = self.groups.iter().map(|g| (g.describe(), g.name()));
        let projections = self.projections.iter().map(|p| named("Synapses", &p.name));
        let inputs = self
            .poisson_inputs
            .iter()
            .map(|p| named("PoissonInput", &p.name));
        let tables = self
            .timed_arrays
            .iter()
            .map(|t| named("TimedArray", &t.name));
        let monitors = self.monitors.iter().map(|m| (m.describe(), m.name()));
        groups
            .chain(projections)
            .chain(inputs)
            .chain(tables)
            .chain(monitors)
    }

    /// The group called `name`, with its id.
    pub fn group(&self, name: &str) -> Option<(usize, &GroupSpec)> {
        self.groups
            .iter()
            .enumerate()
            .find(|(_, g)| g.name() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: &str = r#"{
        "dt": 0.1,
        "groups": [
            {"kind": "neuron", "name": "P", "n": 10,
             "model": {"equations": "dv/dt = -v/(10*ms) : 1", "threshold": "v > 1", "reset": "v = 0"}},
            {"kind": "poisson", "name": "pg", "n": 5, "rates": 0.015},
            {"kind": "spike_generator", "name": "sg", "n": 3, "n_spikes": 4, "period": 10.0}
        ],
        "projections": [
            {"name": "S", "source": "pg", "target": "P", "target_range": [0, 5],
             "model": "w : 1", "on_pre": "v_post += w", "delay": 1.5}
        ],
        "monitors": [{"kind": "spike", "name": "spikes", "source": "P", "capacity": 100},
                     {"kind": "state", "name": "vm", "source": "P", "variables": ["v"], "record": [0, 3]}]
    }"#;

    #[test]
    fn strategy_is_validated_and_auto_stays_out_of_the_canonical_spec() {
        let spec = NetworkSpec::from_json(SMALL).unwrap();
        assert_eq!(spec.strategy, Strategy::Auto);
        assert!(!spec.to_json().contains("strategy"));
        for (name, want) in [
            ("auto", Strategy::Auto),
            ("per_step", Strategy::PerStep),
            ("block", Strategy::Block),
            ("grid", Strategy::Grid),
            ("cluster", Strategy::Cluster),
        ] {
            let text = SMALL.replacen(
                "\"dt\": 0.1,",
                &format!("\"dt\": 0.1, \"strategy\": \"{name}\","),
                1,
            );
            let spec = NetworkSpec::from_json(&text).unwrap();
            assert_eq!(spec.strategy, want);
            assert_eq!(want.name(), name);
            assert_eq!(spec.to_json().contains("strategy"), want != Strategy::Auto);
        }
        let bad = SMALL.replacen("\"dt\": 0.1,", "\"dt\": 0.1, \"strategy\": \"fast\",", 1);
        let err = NetworkSpec::from_json(&bad).unwrap_err().to_string();
        assert!(
            err.contains("unknown variant `fast`") && err.contains("per_step"),
            "{err}"
        );
    }

    #[test]
    fn reads_a_network_and_round_trips() {
        let spec = NetworkSpec::from_json(SMALL).unwrap();
        assert_eq!(spec.groups.len(), 3);
        assert_eq!(spec.dtype, ElemType::F32);
        assert_eq!(spec.group("pg").unwrap().0, 1);
        assert_eq!(
            spec.projections[0].delay,
            Some(DelaySpec::One(NumberOrExpr::Number(1.5)))
        );
        match &spec.monitors[1] {
            MonitorSpec::State { record, every, .. } => {
                assert_eq!(record, &Record::Indices(vec![0, 3]));
                assert_eq!(*every, 1);
            }
            other => panic!("{other:?}"),
        }
        let again = NetworkSpec::from_json(&spec.to_json()).unwrap();
        assert_eq!(again, spec);
        assert_eq!(again.key(), spec.key());
        let model = spec.groups[0].model_spec(&spec).unwrap().unwrap();
        assert_eq!(model.dt, 0.1);
        assert_eq!(model.threshold.as_deref(), Some("v > 1"));
    }

    #[test]
    fn unknown_fields_and_conflicting_steps_are_errors() {
        let bad = SMALL.replace("\"capacity\": 100", "\"capacity\": 100, \"capacty\": 1");
        let e = NetworkSpec::from_json(&bad).unwrap_err().to_string();
        assert!(e.contains("unknown field `capacty`"), "{e}");
        let bad = SMALL.replace(r#""reset": "v = 0""#, r#""reset": "v = 0", "dt": 0.2"#);
        let spec = NetworkSpec::from_json(&bad).unwrap();
        let e = spec.groups[0].model_spec(&spec).unwrap().unwrap_err();
        assert!(e.contains("differs from the network's"), "{e}");
    }
}
