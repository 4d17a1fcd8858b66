//! Unit names, as Brian2 spells them, and their value in the kernels' unit system.
//!
//! Kernels compute in one consistent system of "neuro" units: ms, mV, nA, uS, nF, MOhm, um, mM
//! (I = g V: uS * mV = nA; C dV/dt = I: nF * mV / ms = nA; V = R I: MOhm * nA = mV). A unit name in
//! an expression is that unit's value in this system, so `-50*mV` is -50, `5*ms` is 5,
//! `1*second` is 1000 and `10*nS` is 0.01. Numbers written without units are taken as already in
//! this system. Dimensions are not checked: units are scale factors and annotations.

/// SI base and derived units: the names Brian2 accepts for each and the value of one of them in
/// the kernels' system.
const BASES: &[(&[&str], &[&str], f64)] = &[
    // (full names, abbreviations usable only with a prefix or alone where Brian allows, value)
    (&["second"], &["s"], 1e3),
    (&["volt"], &["V"], 1e3),
    (&["amp", "ampere"], &["A"], 1e9),
    (&["siemens"], &["S"], 1e6),
    (&["farad"], &["F"], 1e9),
    (&["ohm"], &["ohm", "Ohm"], 1e-6),
    (&["hertz"], &["Hz"], 1e-3),
    (&["metre", "meter"], &["m"], 1e6),
    (&["molar"], &["M"], 1e3),
    (&["coulomb"], &["C"], 1e12),
    (&["liter", "litre"], &["l", "L"], 1e15),
];

const PREFIXES: &[(&str, f64)] = &[
    ("y", 1e-24),
    ("z", 1e-21),
    ("a", 1e-18),
    ("f", 1e-15),
    ("p", 1e-12),
    ("n", 1e-9),
    ("u", 1e-6),
    ("µ", 1e-6),
    ("m", 1e-3),
    ("c", 1e-2),
    ("d", 1e-1),
    ("k", 1e3),
    ("M", 1e6),
    ("G", 1e9),
    ("T", 1e12),
];

/// Abbreviations Brian2 also accepts without a prefix (single letters such as `m`, `s` or `V`
/// are not units there: they are common variable names).
const BARE_ABBREVIATIONS: &[&str] = &["Hz", "ohm", "Ohm"];

/// The value of a unit name (`mV`, `msecond`, `nS`, `cm2`, `Hz`, `metre`, ...) in the kernels'
/// system, or `None` if it is not a unit.
pub fn unit_value(name: &str) -> Option<f64> {
    // A trailing 2 or 3 is Brian's shorthand for a square or cube: `cm2`, `umetre3`.
    let (stem, power) = match name.strip_suffix('2').or_else(|| name.strip_suffix('3')) {
        Some(stem) if !stem.is_empty() => (stem, if name.ends_with('2') { 2 } else { 3 }),
        _ => (name, 1),
    };
    simple_unit(stem).map(|v| v.powi(power))
}

fn simple_unit(name: &str) -> Option<f64> {
    for (full, abbrev, value) in BASES {
        if full.contains(&name) || (BARE_ABBREVIATIONS.contains(&name) && abbrev.contains(&name)) {
            return Some(*value);
        }
        for (prefix, scale) in PREFIXES {
            let Some(rest) = name.strip_prefix(prefix) else {
                continue;
            };
            if full.contains(&rest) || abbrev.contains(&rest) {
                return Some(scale * value);
            }
        }
    }
    None
}

/// Checks a unit annotation (`volt`, `amp/meter**2`, `1`, `boolean`, `siemens*cm**-2`); returns
/// the first name that is not a unit.
pub fn unknown_unit_name(annotation: &str) -> Option<String> {
    if ["1", "boolean", "integer"].contains(&annotation.trim()) {
        return None;
    }
    annotation
        .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == 'µ'))
        .filter(|w| !w.is_empty() && !w.chars().next().unwrap().is_ascii_digit())
        .find(|w| {
            unit_value(w).is_none()
                && !["radian", "steradian", "kilogram", "gram", "mole", "mol"].contains(w)
        })
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() <= 1e-12 * b.abs())
    }

    #[test]
    fn brian_unit_names_scale_to_the_kernel_system() {
        assert!(close(unit_value("mV"), 1.0));
        assert!(close(unit_value("mvolt"), 1.0));
        assert!(close(unit_value("volt"), 1000.0));
        assert!(close(unit_value("ms"), 1.0));
        assert!(close(unit_value("second"), 1000.0));
        assert!(close(unit_value("nS"), 1e-3));
        assert!(close(unit_value("pF"), 1e-3));
        assert!(close(unit_value("nA"), 1.0));
        assert!(close(unit_value("MOhm"), 1.0));
        assert!(close(unit_value("Hz"), 1e-3));
        assert!(close(unit_value("kHz"), 1.0));
        assert!(close(unit_value("um"), 1.0));
        assert!(close(unit_value("cm2"), 1e8));
        assert!(close(unit_value("umetre2"), 1.0));
        assert!(close(unit_value("mM"), 1.0));
        // Consistency of the system: a current through a conductance and a capacitor.
        let g = unit_value("nS").unwrap();
        let v = unit_value("mV").unwrap();
        let i = unit_value("pA").unwrap();
        assert!((g * v - i).abs() < 1e-15);
        for not_units in ["m", "s", "v", "tau", "V", "A", "h", "n"] {
            assert_eq!(unit_value(not_units), None, "{not_units}");
        }
    }

    #[test]
    fn annotations_are_checked() {
        assert_eq!(unknown_unit_name("volt"), None);
        assert_eq!(unknown_unit_name("amp/meter**2"), None);
        assert_eq!(unknown_unit_name("siemens*cm**-2"), None);
        assert_eq!(unknown_unit_name("1"), None);
        assert_eq!(unknown_unit_name("boolean"), None);
        assert_eq!(unknown_unit_name("vlot").as_deref(), Some("vlot"));
    }
}
