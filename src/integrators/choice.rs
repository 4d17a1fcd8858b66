//! Which scheme integrates a group: the one its spec names, checked, or Brian2's choice when it
//! names none; and, when a named scheme does not apply, why (a [`MethodError`], which the front
//! end turns into a diagnostic located in the text it lowered).
//!
//! The decision is made on the IR, by symbolic derivatives ([`super::linear`]), before the group
//! is finished: front ends call [`resolve`] with the parts they built.

use std::fmt;

use super::noise::{self, NoiseKind};
use super::{linear, NotIntegrable, Ode, Problem};
use crate::ir::group::{integrated, lookup, vars_of_kind};
use crate::ir::{Dynamics, ExprArena, Symbol, SymbolKind, VarId};
use crate::spec::Method;

/// Brian2's default for equations without noise: `method=('exact', 'euler', 'heun')`, the first
/// that applies. Euler applies to every deterministic system, so heun is never reached here.
pub const AUTOMATIC_ORDER: &[Method] = &[Method::Exact, Method::Euler, Method::Heun];

/// Why the requested scheme does not integrate a group.
#[derive(Clone, Debug, PartialEq)]
pub enum MethodError {
    /// The scheme's structural requirement fails (see [`NotIntegrable`]).
    NotApplicable { method: Method, why: NotIntegrable },
    /// `euler` for multiplicative noise (Brian2 refuses it too): the coefficient of `of`'s
    /// noise reads `reads`, a state variable or the time.
    EulerWithMultiplicativeNoise { of: VarId, reads: VarId },
    /// A scheme other than `euler` or `heun` for stochastic equations.
    NotForNoise(Method),
    /// `rand()` / `randn()` in the derivative of `of`, which draws once per step, with a scheme
    /// of several stages (Brian2 would draw again in every stage) or exact integration (which
    /// needs terms constant over a step, as Brian2 says).
    DrawsInDerivative { method: Method, of: VarId },
}

impl fmt::Display for MethodError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MethodError::NotApplicable { method, why } => {
                write!(f, "{}: {why:?}", requirement(*method))
            }
            MethodError::EulerWithMultiplicativeNoise { .. } => f.write_str(
                "'euler' integrates additive noise only (as in Brian2), and this noise is multiplicative",
            ),
            MethodError::NotForNoise(_) => f.write_str(
                "stochastic equations (with xi) are integrated with 'euler' (additive noise) or 'heun'",
            ),
            MethodError::DrawsInDerivative {
                method: Method::Exact,
                ..
            } => f.write_str(
                "'exact' cannot integrate rand() or randn(): a drawn number is not constant over a time step",
            ),
            MethodError::DrawsInDerivative { method, .. } => write!(
                f,
                "rand() and randn() in a differential equation draw once per step, which is what 'euler' and 'exponential_euler' do; with '{}' Brian2 would draw again in every stage",
                method.name()
            ),
        }
    }
}

impl std::error::Error for MethodError {}

/// What a scheme that uses the structure of the equations requires of them.
pub fn requirement(method: Method) -> &'static str {
    match method {
        Method::ExponentialEuler => {
            "'exponential_euler' needs every equation to be linear in its own variable"
        }
        _ => "'exact' needs linear equations with constant coefficients",
    }
}

/// What to do instead when `method` does not apply.
pub fn alternatives(method: Method) -> &'static str {
    match method {
        Method::ExponentialEuler => {
            "use method='rk4' (or 'euler', 'rk2', 'heun'), or leave method out to let spikeforge choose"
        }
        _ => {
            "use method='exponential_euler' if each equation is linear in its own variable, \
              or 'rk4', or leave method out to let spikeforge choose"
        }
    }
}

impl NotIntegrable {
    /// The equation at fault and what is wrong with it, in words (`name` spells a variable).
    pub fn describe(
        &self,
        method: Method,
        dt: f64,
        name: impl Fn(VarId) -> String,
    ) -> (VarId, String) {
        match self {
            // Exact integration needs linearity in all the variables at once; which variable's
            // coefficient the IR tripped on first says little about the term the user sees.
            NotIntegrable::NotLinear { of, .. } if method == Method::Exact => {
                (*of, "is not linear in the state variables".to_string())
            }
            NotIntegrable::NotLinear { of, var } => {
                (*of, format!("is not linear in {}", name(*var)))
            }
            NotIntegrable::CoefficientNotConstant { of, var, reads } => {
                let names: Vec<String> = reads.iter().map(|v| format!("'{}'", name(*v))).collect();
                (
                    *of,
                    format!(
                        "gives {} a coefficient that is not constant (it reads {})",
                        name(*var),
                        names.join(", ")
                    ),
                )
            }
            NotIntegrable::TimeDependent { of } => (*of, "depends on the time t".to_string()),
            NotIntegrable::Overflow { of } => (
                *of,
                format!("grows beyond the range of f64 within one step of dt = {dt}"),
            ),
        }
    }
}

/// What the choice looks at: the equations a scheme would integrate and the variables with a
/// role in them.
struct System<'a> {
    arena: &'a ExprArena,
    odes: Vec<Ode>,
    time: Option<VarId>,
    switch: Option<VarId>,
    noise: &'a [VarId],
    symbols: &'a [Symbol],
    dt: f64,
}

/// The scheme that integrates a group with these parts: `requested` after checking that it
/// applies, or the first of [`AUTOMATIC_ORDER`] that applies when the spec names none.
pub fn resolve(
    arena: &ExprArena,
    dynamics: &Dynamics,
    symbols: &[Symbol],
    noise: &[VarId],
    dt: f64,
    requested: Option<Method>,
) -> Result<Method, MethodError> {
    let system = System {
        arena,
        odes: integrated(dynamics)
            .into_iter()
            .map(|(var, derivative)| Ode { var, derivative })
            .collect(),
        time: vars_of_kind(symbols, &SymbolKind::Time).first().copied(),
        switch: lookup(symbols, "not_refractory"),
        noise,
        symbols,
        dt,
    };
    // rand() / randn() in a derivative draws once per step: single-stage schemes only, as in
    // Brian2 (whose multi-stage schemes draw again in every stage); exact integration does not
    // apply.
    if let Some(of) = system.draws_in() {
        let one_stage = |m: Method| matches!(m, Method::Euler | Method::ExponentialEuler);
        match requested {
            Some(method) if !one_stage(method) => {
                return Err(MethodError::DrawsInDerivative { method, of })
            }
            None if noise.is_empty() => {
                return Ok(if system.applies(Method::Euler).is_ok() {
                    Method::Euler
                } else {
                    Method::ExponentialEuler
                })
            }
            _ => {}
        }
    }
    // Stochastic equations (Brian2's rules): Euler-Maruyama for additive noise, Stratonovich
    // Heun for multiplicative noise (a noise coefficient that reads a state variable or t).
    if !noise.is_empty() {
        let kind = system.noise_kind();
        return match (requested, kind) {
            (None | Some(Method::Euler), NoiseKind::Additive) => Ok(Method::Euler),
            (None | Some(Method::Heun), _) => match system.draws_in() {
                Some(of) => Err(MethodError::DrawsInDerivative {
                    method: Method::Heun,
                    of,
                }),
                None => Ok(Method::Heun),
            },
            (Some(Method::Euler), NoiseKind::Multiplicative { of, reads }) => {
                Err(MethodError::EulerWithMultiplicativeNoise { of, reads })
            }
            (Some(m), _) => Err(MethodError::NotForNoise(m)),
        };
    }
    match requested {
        Some(method) => system
            .applies(method)
            .map(|_| method)
            .map_err(|why| MethodError::NotApplicable { method, why }),
        None => Ok(AUTOMATIC_ORDER
            .iter()
            .copied()
            .find(|m| system.applies(*m).is_ok())
            .unwrap_or(Method::Euler)),
    }
}

impl System<'_> {
    /// The first variable whose derivative calls `rand()` or `randn()`.
    fn draws_in(&self) -> Option<VarId> {
        self.odes
            .iter()
            .find(|o| {
                self.arena
                    .vars_of(o.derivative)
                    .iter()
                    .any(|v| matches!(self.symbols[v.index()].kind, SymbolKind::Random(_)))
            })
            .map(|o| o.var)
    }

    /// Brian2's classification of the noise (the lowering checked that it enters linearly).
    fn noise_kind(&self) -> NoiseKind {
        let mut arena = self.arena.clone();
        let states: Vec<VarId> = self.odes.iter().map(|o| o.var).collect();
        let splits = noise::split(&mut arena, &self.odes, self.noise)
            .expect("the lowering checked that every xi enters linearly");
        noise::kind(&arena, &splits, &states, self.time)
    }

    /// Whether `method` can integrate the equations (as written, before the refractory clamp,
    /// which keeps every scheme's structure).
    fn applies(&self, method: Method) -> Result<(), NotIntegrable> {
        let mut arena = self.arena.clone();
        let problem = Problem {
            odes: &self.odes,
            time: self.time,
            switch: self.switch,
        };
        match method {
            Method::ExponentialEuler => {
                linear::self_coefficients(&mut arena, &self.odes).map(|_| ())
            }
            Method::Exact => linear::exact(&mut arena, &problem, self.dt).map(|_| ()),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::ExprId;

    fn symbol(name: &str, kind: SymbolKind) -> Symbol {
        Symbol {
            name: name.into(),
            kind,
            unit: String::new(),
            value: crate::ir::ValueType::Real,
            shared: false,
        }
    }

    /// dx/dt = f(x, p), as the parts `resolve` reads.
    fn choose(
        f: impl Fn(&mut ExprArena, ExprId, ExprId) -> ExprId,
        requested: Option<Method>,
    ) -> Result<Method, MethodError> {
        let mut arena = ExprArena::new();
        let (x, p) = (arena.var(VarId(0)), arena.var(VarId(1)));
        let derivative = f(&mut arena, x, p);
        let dynamics = Dynamics::Odes(vec![crate::ir::StateEq {
            var: VarId(0),
            derivative,
            unless_refractory: false,
        }]);
        let symbols = [
            symbol("x", SymbolKind::State),
            symbol("p", SymbolKind::Param),
        ];
        resolve(&arena, &dynamics, &symbols, &[], 0.1, requested)
    }

    #[test]
    fn the_first_scheme_that_applies_is_chosen_and_a_named_one_is_checked() {
        let decay = |a: &mut ExprArena, x, _| a.neg(x);
        assert_eq!(choose(decay, None), Ok(Method::Exact));
        let per_neuron = |a: &mut ExprArena, x, p| a.mul(p, x);
        assert_eq!(choose(per_neuron, None), Ok(Method::Euler));
        assert_eq!(
            choose(per_neuron, Some(Method::ExponentialEuler)),
            Ok(Method::ExponentialEuler)
        );
        let square = |a: &mut ExprArena, x, _| a.mul(x, x);
        assert_eq!(
            choose(square, Some(Method::ExponentialEuler)),
            Err(MethodError::NotApplicable {
                method: Method::ExponentialEuler,
                why: NotIntegrable::NotLinear {
                    of: VarId(0),
                    var: VarId(0)
                }
            })
        );
        assert_eq!(choose(square, Some(Method::Rk2)), Ok(Method::Rk2));
    }
}
