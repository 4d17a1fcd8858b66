//! The surrogate spike: which smooth function stands in for the threshold's derivative when a
//! run is differentiated (`crate::step::adjoint`), and whether the reset is differentiated.
//!
//! A spike is a step function of the threshold's argument, whose derivative is 0 almost
//! everywhere: gradient descent through it learns nothing. Surrogate-gradient training keeps the
//! forward pass exact (the same spikes) and replaces `H'(z)` by a bump `s(z)` of chosen width in
//! the backward pass only. The functions are snnTorch's (`z` is the threshold's argument, e.g.
//! `v - v_th` for `v > v_th`; `k` the slope):
//!
//! | kind               | `s(z)`                                        | area   |
//! |--------------------|-----------------------------------------------|--------|
//! | `fast_sigmoid`     | `1 / (1 + k |z|)^2` (SuperSpike)              | `2/k`  |
//! | `sigmoid`          | `k σ(kz) (1 - σ(kz))`, `σ(x) = 1/(1+e^-x)`     | 1      |
//! | `arctan`           | `(k/2) / (1 + (π k z / 2)^2)`                 | 1      |
//! | `piecewise_linear` | `max(0, k (1 - k |z|))` (the triangle)        | 1      |
//!
//! `detach_reset`: the reset `x' = spike ? r(x) : x` has, besides the derivatives of its two
//! branches, a term `(r(x) - x) s(z) dz` through the spike. Differentiated (the default) it is
//! kept; detached it is dropped, as snnTorch always does (its reset signal is `detach()`ed) and
//! SpikingJelly does with `detach_reset=True`. The spec is data: the kind is one of four names
//! and the slope a positive number of the model's precision, printed as a literal.

use serde::{Deserialize, Serialize};

/// A surrogate function (see the module documentation for the formulas).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SurrogateKind {
    FastSigmoid,
    Sigmoid,
    Arctan,
    /// The triangle; also read as `triangle`.
    #[serde(alias = "triangle")]
    PiecewiseLinear,
}

impl SurrogateKind {
    pub fn name(self) -> &'static str {
        match self {
            SurrogateKind::FastSigmoid => "fast_sigmoid",
            SurrogateKind::Sigmoid => "sigmoid",
            SurrogateKind::Arctan => "arctan",
            SurrogateKind::PiecewiseLinear => "piecewise_linear",
        }
    }

    /// `s(z)` in f64: the reference the generated expressions are tested against.
    pub fn eval(self, slope: f64, z: f64) -> f64 {
        match self {
            SurrogateKind::FastSigmoid => 1.0 / (1.0 + slope * z.abs()).powi(2),
            SurrogateKind::Sigmoid => {
                let s = 1.0 / (1.0 + (-slope * z).exp());
                slope * s * (1.0 - s)
            }
            SurrogateKind::Arctan => {
                let a = std::f64::consts::FRAC_PI_2 * slope * z;
                0.5 * slope / (1.0 + a * a)
            }
            SurrogateKind::PiecewiseLinear => (slope * (1.0 - slope * z.abs())).max(0.0),
        }
    }
}

/// The spec's `surrogate`: `{"kind": "fast_sigmoid", "slope": 25.0, "detach_reset": false}`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Surrogate {
    pub kind: SurrogateKind,
    pub slope: f64,
    /// Drop the reset's term through the spike (see the module documentation).
    #[serde(default)]
    pub detach_reset: bool,
}

impl Surrogate {
    pub fn new(kind: SurrogateKind, slope: f64) -> Surrogate {
        Surrogate {
            kind,
            slope,
            detach_reset: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each surrogate is a bump of the documented area (the ones normalised to 1 integrate to
    /// 1, SuperSpike's to 2/k), largest at 0.
    #[test]
    fn surrogates_have_their_documented_areas() {
        for (kind, area) in [
            (SurrogateKind::FastSigmoid, 2.0 / 4.0),
            (SurrogateKind::Sigmoid, 1.0),
            (SurrogateKind::Arctan, 1.0),
            (SurrogateKind::PiecewiseLinear, 1.0),
        ] {
            let k = 4.0;
            // Trapezoids on [-L, L] (h = 1e-3: within 1e-5 at the cusp of the |z| ones) plus
            // the analytic tails where they are not negligible.
            let (l, n) = (2000.0, 4_000_000);
            let h = 2.0 * l / n as f64;
            let integral: f64 = (0..=n)
                .map(|i| {
                    let w = if i == 0 || i == n { 0.5 } else { 1.0 };
                    w * kind.eval(k, -l + i as f64 * h)
                })
                .sum::<f64>()
                * h;
            let tail = match kind {
                SurrogateKind::FastSigmoid => 2.0 / (k * (1.0 + k * l)),
                SurrogateKind::Arctan => {
                    1.0 - 2.0 / std::f64::consts::PI * (std::f64::consts::FRAC_PI_2 * k * l).atan()
                }
                _ => 0.0,
            };
            assert!(
                (integral + tail - area).abs() < 1e-5,
                "{kind:?}: {integral} + {tail} vs {area}"
            );
            assert!(kind.eval(k, 0.0) >= kind.eval(k, 0.1));
        }
    }

    #[test]
    fn reads_names_and_refuses_unknown_fields() {
        let s: Surrogate = serde_json::from_str(r#"{"kind": "triangle", "slope": 2}"#).unwrap();
        assert_eq!(s.kind, SurrogateKind::PiecewiseLinear);
        assert!(!s.detach_reset);
        assert!(serde_json::from_str::<Surrogate>(r#"{"kind": "exp", "slope": 2}"#).is_err());
        assert!(serde_json::from_str::<Surrogate>(
            r#"{"kind": "sigmoid", "slope": 2, "code": ""}"#
        )
        .is_err());
    }
}
