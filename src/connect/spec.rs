//! The connection spec: the one serialisable description of a connectivity kernel.
//!
//! Python sends it as JSON to validate a rule (`sf_connect_compile`, which answers with the
//! canonical spec and its key) and as the `spec` string attribute of every `spikeforge_connect`
//! call, as the model spec travels with a neuron run. The sizes of the populations, the seed and
//! the stream are not part of it: they are arguments of the call, so one compiled kernel serves
//! every size and seed.
//!
//! ```json
//! {"rule": {"kind": "pairs", "condition": "i != j", "p": 0.02, "n": 1, "allow_self": true},
//!  "pre_variables": ["x"], "post_variables": ["x"], "constants": {"sigma": 2.0}}
//! {"rule": {"kind": "fixed_out_degree", "k": 80, "replace": true, "allow_self": false}}
//! ```

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A number, or an expression of `i`, `j` and the groups' variables (Brian2 accepts both for
/// `p` and `n`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum NumberOrExpr {
    Number(f64),
    Expr(String),
}

/// How synapses are chosen.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Rule {
    /// Brian2's `connect(condition, p, n)`: every pair `(i, j)` for which `condition` holds is
    /// connected with probability `p`, by `n` synapses.
    Pairs {
        #[serde(default)]
        condition: Option<String>,
        #[serde(default = "one")]
        p: NumberOrExpr,
        #[serde(default = "one")]
        n: NumberOrExpr,
        /// `false`: never the pair whose postsynaptic neuron is the presynaptic one itself
        /// (which pair that is, the call's `self_offset` says).
        #[serde(default = "yes")]
        allow_self: bool,
    },
    /// `k` postsynaptic targets drawn for every presynaptic neuron.
    FixedOutDegree {
        k: u64,
        /// Draw with replacement (multapses possible; targets in the order drawn) or without
        /// (distinct targets, in increasing order).
        #[serde(default = "yes")]
        replace: bool,
        #[serde(default = "yes")]
        allow_self: bool,
    },
    /// `k` presynaptic sources drawn for every postsynaptic neuron (then stored by pre).
    FixedInDegree {
        k: u64,
        #[serde(default = "yes")]
        replace: bool,
        #[serde(default = "yes")]
        allow_self: bool,
    },
}

fn one() -> NumberOrExpr {
    NumberOrExpr::Number(1.0)
}

fn yes() -> bool {
    true
}

/// A connection rule with the names its expressions may read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectSpec {
    pub rule: Rule,
    /// Variables of the presynaptic group, read as `x_pre` (values given with the call).
    #[serde(default)]
    pub pre_variables: Vec<String>,
    /// Variables of the postsynaptic group, read as `x_post`.
    #[serde(default)]
    pub post_variables: Vec<String>,
    /// Named numbers, folded into the kernel.
    #[serde(default)]
    pub constants: BTreeMap<String, f64>,
}

/// A spec that cannot be read (not JSON, a missing or unknown field, a value of the wrong type).
#[derive(Debug)]
pub struct ConnectSpecError(serde_json::Error);

impl fmt::Display for ConnectSpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid connection spec: {}", self.0)
    }
}

impl std::error::Error for ConnectSpecError {}

/// Which neurons the kernels' rows are: one row per presynaptic neuron, except for a fixed
/// in-degree, whose rows are the postsynaptic neurons (transposed to rows by pre afterwards).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rows {
    Pre,
    Post,
}

impl Rows {
    pub fn name(self) -> &'static str {
        match self {
            Rows::Pre => "pre",
            Rows::Post => "post",
        }
    }
}

impl ConnectSpec {
    pub fn from_json(text: &str) -> Result<ConnectSpec, ConnectSpecError> {
        serde_json::from_str(text).map_err(ConnectSpecError)
    }

    /// The canonical JSON (fields in declaration order, constants sorted).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a connection spec serialises")
    }

    /// A stable identity of the spec: the key of every kernel cache.
    pub fn key(&self) -> String {
        crate::runtime::cache::sha256_hex(&format!("sf-connect-v1\0{}", self.to_json()))
    }

    pub fn rows(&self) -> Rows {
        match self.rule {
            Rule::FixedInDegree { .. } => Rows::Post,
            _ => Rows::Pre,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_rule_with_defaults() {
        let s = ConnectSpec::from_json(r#"{"rule": {"kind": "pairs", "p": 0.1}}"#).unwrap();
        assert_eq!(
            s.rule,
            Rule::Pairs {
                condition: None,
                p: NumberOrExpr::Number(0.1),
                n: NumberOrExpr::Number(1.0),
                allow_self: true
            }
        );
        let s = ConnectSpec::from_json(
            r#"{"rule": {"kind": "fixed_in_degree", "k": 3, "replace": false}}"#,
        )
        .unwrap();
        assert_eq!(s.rows(), Rows::Post);
        let s = ConnectSpec::from_json(r#"{"rule": {"kind": "pairs", "n": "i + 1"}}"#).unwrap();
        assert!(matches!(
            s.rule,
            Rule::Pairs {
                n: NumberOrExpr::Expr(_),
                ..
            }
        ));
        // The canonical form reads back to the same spec, and the key follows it.
        assert_eq!(ConnectSpec::from_json(&s.to_json()).unwrap(), s);
        assert_eq!(s.key().len(), 64);
    }

    #[test]
    fn unknown_fields_and_kinds_are_refused() {
        for bad in [
            r#"{"rule": {"kind": "pairs", "q": 0.1}}"#,
            r#"{"rule": {"kind": "all_to_all"}}"#,
            r#"{"rule": {"kind": "fixed_out_degree"}}"#,
            r#"{"rule": {"kind": "fixed_out_degree", "k": -1}}"#,
            r#"{"rule": {"kind": "pairs"}, "seed": 3}"#,
        ] {
            let e = ConnectSpec::from_json(bad).unwrap_err().to_string();
            assert!(e.starts_with("invalid connection spec"), "{bad}: {e}");
        }
    }
}
