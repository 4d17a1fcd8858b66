//! What a number in a model may be: one the kernel's precision holds as itself.
//!
//! Constants, `dt`, a refractory duration, a model class's bounds, and every number and unit a
//! model's text writes become literals of the kernel's precision (`crate::codegen::printer`).
//! A value that precision cannot hold would change the model without a word: `1e39` is
//! infinite in float32, `dt = 1e-300` is 0 there (the state never moves). So every such value
//! must be zero or a normal number of the precision: finite, at most its largest value, at least
//! its smallest normal value (below it, a subnormal has lost digits, and fast math flushes it to
//! 0). NaN and infinities are refused too: as constants they only hide mistakes (no JSON
//! carries them; the Rust builder could). Values computed from these by constant folding are
//! printed as the precision rounds them (an overflow as infinity), as the kernel would compute
//! them.
//!
//! The spec's own numbers are checked here ([`ModelSpec::check_numbers`], when lowering); the
//! front ends check the numbers of the text at their place.

use super::network::{DelaySpec, GroupSpec, NetworkSpec, NumberOrExpr};
use super::{Dynamics, ModelSpec, Refractory};
use crate::diagnostics::Diagnostic;
use crate::types::ElemType;

/// Why `v` cannot be a literal of `precision` (float32 or float64); `None` when it can.
pub fn problem(v: f64, precision: ElemType) -> Option<String> {
    let name = precision.name();
    if v.is_nan() {
        return Some("is not a number (NaN)".into());
    }
    if v.is_infinite() {
        return Some("is infinite".into());
    }
    let (max, min_normal, shown_max, shown_min) = match precision {
        ElemType::F32 => (
            f64::from(f32::MAX),
            f64::from(f32::MIN_POSITIVE),
            format!("{:e}", f32::MAX),
            format!("{:e}", f32::MIN_POSITIVE),
        ),
        _ => (
            f64::MAX,
            f64::MIN_POSITIVE,
            format!("{:e}", f64::MAX),
            format!("{:e}", f64::MIN_POSITIVE),
        ),
    };
    if v.abs() > max {
        return Some(format!(
            "does not fit {name} (its largest value is {shown_max}): the kernel would compute with infinity"
        ));
    }
    if v != 0.0 && v.abs() < min_normal {
        return Some(format!(
            "is too small for {name} (its smallest normal value is {shown_min}): the kernel would compute with a rounded value or 0"
        ));
    }
    None
}

impl ModelSpec {
    /// `dt`, the constants, a refractory duration and a model class's bounds are numbers the
    /// model's precision holds (see the module documentation); `dt` is positive.
    pub fn check_numbers(&self) -> Result<(), Diagnostic> {
        let precision = self.dtype;
        let fix = fix(precision);
        check_dt(self.dt, precision)?;
        if self.substeps > 1 {
            let h = self.dt / f64::from(self.substeps);
            if let Some(why) = problem(h, precision) {
                return Err(Diagnostic::new(
                    "substeps",
                    format!(
                        "a sub-step, dt / substeps = {:e} / {} = {h:e}, {why}",
                        self.dt, self.substeps
                    ),
                )
                .suggest(fix));
            }
        }
        for (name, v) in &self.constants {
            if let Some(why) = problem(*v, precision) {
                return Err(Diagnostic::new(
                    "constants",
                    format!("the constant '{name}' = {v:e} {why}"),
                )
                .suggest(fix));
            }
        }
        if let Some(Refractory::Duration(d)) = self.refractory {
            if let Some(why) = problem(d, precision) {
                return Err(Diagnostic::new(
                    "refractory",
                    format!("the refractory period {d:e} {why}"),
                )
                .suggest(fix));
            }
        }
        if let Some(s) = self.surrogate {
            let why = if s.slope > 0.0 {
                problem(s.slope, precision)
            } else {
                Some("must be positive".to_string())
            };
            if let Some(why) = why {
                return Err(Diagnostic::new(
                    "surrogate",
                    format!("the surrogate's slope {:e} {why}", s.slope),
                )
                .suggest(fix));
            }
        }
        if let Dynamics::ModelClass(class) = &self.dynamics {
            for s in &class.states {
                for (which, bound) in [("min", s.min), ("max", s.max)] {
                    if let Some(why) = bound.and_then(|b| problem(b, precision)) {
                        return Err(Diagnostic::new(
                            "model_class",
                            format!(
                                "Default_States['{}']: the {which} {:e} {why}",
                                s.name,
                                bound.unwrap()
                            ),
                        )
                        .suggest(fix));
                    }
                }
            }
        }
        Ok(())
    }
}

impl NetworkSpec {
    /// The numbers a network spec gives besides its groups' models (which are checked as models
    /// when they are lowered): `dt` (positive), the constants of Poisson groups, projections and
    /// Poisson inputs, rates, weights, delays, the longest delay, periods and TimedArrays' steps,
    /// each a number the network's precision holds. The error names the object and field.
    pub fn check_numbers(&self) -> Result<(), Diagnostic> {
        let precision = self.dtype;
        let fix = fix(precision);
        check_dt(self.dt, precision)?;
        // (object, field, what the number is, value)
        let mut numbers: Vec<(String, &str, String, f64)> = Vec::new();
        let constants = |what: &str, map: &std::collections::BTreeMap<String, f64>| {
            map.iter()
                .map(|(k, v)| {
                    (
                        what.to_string(),
                        "constants",
                        format!("the constant '{k}'"),
                        *v,
                    )
                })
                .collect::<Vec<_>>()
        };
        let given = |what: &str, field: &'static str, v: &Option<NumberOrExpr>| match v {
            Some(NumberOrExpr::Number(x)) => vec![(what.to_string(), field, field.to_string(), *x)],
            _ => Vec::new(),
        };
        for g in &self.groups {
            let what = g.describe();
            match g {
                GroupSpec::Poisson {
                    rates,
                    constants: c,
                    ..
                } => {
                    numbers.extend(constants(&what, c));
                    numbers.extend(given(&what, "rates", rates));
                }
                GroupSpec::SpikeGenerator {
                    period: Some(p), ..
                } => numbers.push((what, "period", "the period".into(), *p)),
                _ => {}
            }
        }
        for p in &self.projections {
            let what = super::names::describe("Synapses", &p.name);
            numbers.extend(constants(&what, &p.constants));
            for (_, d) in p.delay.iter().flat_map(DelaySpec::by_pathway) {
                numbers.extend(given(&what, "delay", &Some(d.clone())));
            }
            if let Some(m) = p.max_delay {
                numbers.push((what, "max_delay", "max_delay".into(), m));
            }
        }
        for p in &self.poisson_inputs {
            let what = super::names::describe("PoissonInput", &p.name);
            numbers.extend(constants(&what, &p.constants));
            numbers.extend(given(&what, "rate", &Some(p.rate.clone())));
            numbers.extend(given(&what, "weight", &Some(p.weight.clone())));
        }
        for t in &self.timed_arrays {
            let what = super::names::describe("TimedArray", &t.name);
            numbers.push((what, "dt", "dt".into(), t.dt));
        }
        for (what, field, name, v) in numbers {
            if let Some(why) = problem(v, precision) {
                return Err(
                    Diagnostic::new(field, format!("{what}: {name} = {v:e} {why}")).suggest(fix),
                );
            }
        }
        Ok(())
    }
}

/// The suggestion of every error here.
fn fix(precision: ElemType) -> String {
    format!(
        "use numbers {} can hold (check the units), or dtype float64",
        precision.name()
    )
}

/// `dt` is a positive number `precision` holds.
fn check_dt(dt: f64, precision: ElemType) -> Result<(), Diagnostic> {
    let why = match problem(dt, precision) {
        None if dt <= 0.0 => "is not positive".to_string(),
        None => return Ok(()),
        Some(why) => why,
    };
    Err(Diagnostic::new(
        "dt",
        format!("dt must be a positive number, got {dt}, which {why}"),
    )
    .suggest(fix(precision)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::ModelClassSpec;

    #[test]
    fn values_must_be_zero_or_normal_numbers_of_the_precision() {
        for ok in [0.0, 1.0, -65.0, 1e-30, 3e38, -3e38] {
            assert_eq!(problem(ok, ElemType::F32), None, "{ok}");
        }
        for ok in [1e39, 1e-300, f64::MAX] {
            assert_eq!(problem(ok, ElemType::F64), None, "{ok}");
        }
        assert!(problem(1e39, ElemType::F32)
            .unwrap()
            .contains("does not fit float32"));
        assert!(problem(1e-39, ElemType::F32)
            .unwrap()
            .contains("too small for float32"));
        assert!(problem(1e-310, ElemType::F64)
            .unwrap()
            .contains("too small for float64"));
        assert!(problem(f64::NAN, ElemType::F64).unwrap().contains("NaN"));
        assert!(problem(f64::NEG_INFINITY, ElemType::F32)
            .unwrap()
            .contains("infinite"));
    }

    #[test]
    fn every_number_of_a_spec_is_checked() {
        let spec = ModelSpec::from_equations("dv/dt = -v : 1", 0.1);
        assert!(spec.check_numbers().is_ok());
        let field = |s: ModelSpec| s.check_numbers().unwrap_err();
        let d = field(ModelSpec::from_equations("dv/dt = -v : 1", 1e-300));
        assert_eq!(d.field, "dt");
        assert!(d.message.contains("too small for float32"), "{}", d.message);
        assert!(field(spec.clone().constants([("c", 1e39)]))
            .message
            .contains("the constant 'c' = 1e39 does not fit float32"));
        assert!(field(spec.clone().constants([("c", f64::NAN)]))
            .message
            .contains("NaN"));
        assert_eq!(field(spec.clone().refractory(1e40)).field, "refractory");
        let class =
            ModelClassSpec::new("C", "def ode(self):\n    pass\n").state("v", Some(-1e39), None);
        let d = field(ModelSpec::from_class(class, 0.1));
        assert!(
            d.message.contains("Default_States['v']: the min -1e39"),
            "{}",
            d.message
        );
        // The same values fit float64.
        let f64_spec = spec.dtype(ElemType::F64).constants([("c", 1e39)]);
        assert!(f64_spec.check_numbers().is_ok());
    }
}
