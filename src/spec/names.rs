//! What a name in a model may be: an identifier of the model language, ASCII letters, digits and
//! `_`, not starting with a digit, at most [`MAX_NAME_LEN`] characters.
//!
//! Names are the one part of a model that reaches generated code as text (constants, units and
//! `dt` become literals), so the rule is checked on every name a spec lists here
//! ([`ModelSpec::check_names`], when the spec is lowered: at definition and again in the FFI
//! handler, which lowers the spec it is sent) and by the front ends on every name the model's
//! text defines (with its place). The printers then spell a valid name as itself or, when C, C++,
//! CUDA or the generated code already use it, with a prefix (`crate::codegen::identifiers`).

use super::network::{GroupSpec, MonitorSpec, NetworkSpec};
use super::{Dynamics, ModelSpec};
use crate::diagnostics::Diagnostic;

/// The longest name a model may use (C guarantees 63 significant characters in an internal
/// identifier; the prefixes the printers add stay well within what GCC and NVRTC read).
pub const MAX_NAME_LEN: usize = 64;

/// Whether `name` is an identifier of the model language.
pub fn is_identifier(name: &str) -> bool {
    problem(name).is_none()
}

/// Why `name` is not a name of the model language; `None` when it is one.
pub fn problem(name: &str) -> Option<String> {
    let Some(first) = name.chars().next() else {
        return Some("a name cannot be empty".into());
    };
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_'))
    {
        return Some(format!(
            "{} is not allowed in a name (ASCII letters, digits and '_' only)",
            describe_char(c)
        ));
    }
    if first.is_ascii_digit() {
        return Some("a name cannot start with a digit".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Some(format!(
            "a name has at most {MAX_NAME_LEN} characters, this one has {}",
            name.len()
        ));
    }
    None
}

/// `'x' is not a valid name: <why>`, or `None` for a valid name.
pub fn invalid(name: &str) -> Option<String> {
    problem(name).map(|why| format!("{} is not a valid name: {why}", shown(name)))
}

/// A name as a message shows it: quoted, with control and invisible characters escaped (quotes
/// and backslashes are kept as they are), cut after 120 characters.
pub fn shown(name: &str) -> String {
    const SHOWN: usize = 200;
    let escaped: String = name
        .chars()
        .map(|c| match c {
            '"' | '\'' | '\\' => c.to_string(),
            c => c.escape_debug().to_string(),
        })
        .collect();
    match escaped.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("'{}...' ({} bytes)", &escaped[..cut], name.len()),
        None => format!("'{escaped}'"),
    }
}

/// A character as a message shows it: `'x'`, or escaped with its code point when it is not
/// visible ASCII (`'\u{200b}' (U+200B)`).
pub fn describe_char(c: char) -> String {
    if c == ' ' {
        "a space".into()
    } else if c.is_ascii_graphic() {
        format!("'{c}'")
    } else {
        format!("'{}' (U+{:04X})", c.escape_debug(), u32::from(c))
    }
}

impl ModelSpec {
    /// Every name the spec lists besides its text is a name of the model language: the
    /// constants, the per-neuron and per-step inputs, the recorded variables, and a model
    /// class's states, internals and parameters. The error names the field and the name.
    pub fn check_names(&self) -> Result<(), Diagnostic> {
        let mut lists: Vec<(&str, &str, Vec<&str>)> = vec![
            (
                "constants",
                "constants",
                self.constants.keys().map(String::as_str).collect(),
            ),
            (
                "inputs",
                "per_neuron",
                self.per_neuron.iter().map(String::as_str).collect(),
            ),
            (
                "inputs",
                "per_step",
                self.per_step.iter().map(String::as_str).collect(),
            ),
            (
                "record",
                "record",
                self.record.iter().map(String::as_str).collect(),
            ),
        ];
        if let Dynamics::ModelClass(class) = &self.dynamics {
            lists.extend([
                (
                    "model_class",
                    "Default_States",
                    class.states.iter().map(|s| s.name.as_str()).collect(),
                ),
                (
                    "model_class",
                    "Default_Inters",
                    class.internals.iter().map(String::as_str).collect(),
                ),
                (
                    "model_class",
                    "Default_Params",
                    class.params.iter().map(String::as_str).collect(),
                ),
            ]);
        }
        for (field, list, names) in lists {
            if let Some(message) = names.into_iter().find_map(invalid) {
                let message = if list == field {
                    message
                } else {
                    format!("{list}: {message}")
                };
                return Err(Diagnostic::new(field, message));
            }
        }
        Ok(())
    }
}

impl NetworkSpec {
    /// Every name the network spec gives is a name of the model language: its objects' (groups,
    /// projections, Poisson inputs, TimedArrays, monitors), the constants of Poisson groups,
    /// projections and Poisson inputs, and the variables state monitors record. A neuron group's
    /// model is checked as a model ([`ModelSpec::check_names`]) when it is lowered; a synapse
    /// model's names where its text defines them. The error names the object, the field and the
    /// name.
    pub fn check_names(&self) -> Result<(), Diagnostic> {
        for (what, name) in self.objects() {
            if let Some(message) = invalid(name) {
                return Err(Diagnostic::new("name", format!("{what}: {message}")));
            }
        }
        let mut lists: Vec<(String, &str, Vec<&str>)> = Vec::new();
        for g in &self.groups {
            if let GroupSpec::Poisson { constants, .. } = g {
                lists.push((g.describe(), "constants", keys(constants)));
            }
        }
        for p in &self.projections {
            lists.push((
                describe("Synapses", &p.name),
                "constants",
                keys(&p.constants),
            ));
        }
        for p in &self.poisson_inputs {
            let what = describe("PoissonInput", &p.name);
            lists.push((what.clone(), "constants", keys(&p.constants)));
            lists.push((what, "variable", vec![&p.variable]));
        }
        for m in &self.monitors {
            if let MonitorSpec::State { variables, .. } = m {
                let names = variables.iter().map(String::as_str).collect();
                lists.push((m.describe(), "variables", names));
            }
        }
        for (what, field, names) in lists {
            if let Some(message) = names.into_iter().find_map(invalid) {
                return Err(Diagnostic::new(field, format!("{what}: {message}")));
            }
        }
        Ok(())
    }
}

/// `Kind 'name'`, as messages name an object.
pub fn describe(kind: &str, name: &str) -> String {
    format!("{kind} {}", shown(name))
}

fn keys(map: &std::collections::BTreeMap<String, f64>) -> Vec<&str> {
    map.keys().map(String::as_str).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::ModelClassSpec;

    #[test]
    fn names_are_ascii_identifiers_of_bounded_length() {
        for ok in ["v", "_x", "tau_w", "N0", "a__b", &"a".repeat(MAX_NAME_LEN)] {
            assert!(is_identifier(ok), "{ok}");
        }
        let why = |n: &str| problem(n).unwrap();
        assert!(why("").contains("empty"));
        assert!(why("2v").contains("cannot start with a digit"));
        assert!(why("v é").contains("a space"));
        assert!(why("vé").contains("'é' (U+00E9)"), "{}", why("vé"));
        assert!(why("v\u{200b}").contains("U+200B"), "{}", why("v\u{200b}"));
        assert!(why("v;").contains("';'"));
        assert!(why(&"a".repeat(MAX_NAME_LEN + 1)).contains("at most 64"));
    }

    #[test]
    fn messages_show_the_name_escaped_and_cut() {
        let payload = r#"y; extern int system(const char*); system("echo INJECTED >> f"); //"#;
        let m = invalid(payload).unwrap();
        assert!(
            m.starts_with(&format!("'{payload}' is not a valid name")),
            "{m}"
        );
        assert!(invalid("a\nb").unwrap().starts_with("'a\\nb'"));
        let long = "x".repeat(1000);
        assert!(invalid(&long).unwrap().contains("...' (1000 bytes)"));
    }

    #[test]
    fn every_list_of_a_spec_is_checked() {
        let spec = ModelSpec::from_equations("dv/dt = -v : 1", 0.1);
        assert!(spec.check_names().is_ok());
        let bad = "y; //";
        let cases = [
            (spec.clone().constants([(bad, 1.0)]), "constants"),
            (spec.clone().per_neuron([bad]), "inputs"),
            (spec.clone().per_step([bad]), "inputs"),
            (spec.clone().record([bad]), "record"),
            (
                ModelSpec::from_class(
                    ModelClassSpec::new("C", "def ode(self):\n    pass\n").internals([bad]),
                    0.1,
                ),
                "model_class",
            ),
        ];
        for (spec, field) in cases {
            let d = spec.check_names().unwrap_err();
            assert_eq!(d.field, field);
            assert!(
                d.message.contains("'y; //' is not a valid name"),
                "{}",
                d.message
            );
        }
    }
}
