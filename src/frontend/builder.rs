//! The parts of a group both front ends build the same way while lowering: the arena, the
//! symbol table (with the names every group has: `not_refractory`, `lastspike`, `t`, `i`, `N`;
//! the calls of `rand()` / `randn()`) and the span table, finished into a [`GroupIr`] once the
//! front end has the dynamics and the events and the scheme is resolved. Finishing also decides
//! the bookkeeping the group keeps, from every place that reads it.

use std::collections::{BTreeMap, HashMap};

use crate::diagnostics::Diagnostic;
use crate::ir::{
    Bookkeeping, Draw, Dynamics, Events, ExprArena, ExprId, GroupIr, IndexOf, RefractoryIr,
    SpanTable, Symbol, SymbolKind, Ty, ValueType, VarId,
};
use crate::spec::Method;

/// Names with a built-in meaning in every group.
pub const BUILTIN_NAMES: &[&str] = &["t", "dt", "i", "N", "not_refractory", "lastspike", "xi"];

/// The mathematical constants of Brian2's language (`DEFAULT_CONSTANTS`): names a model may not
/// define.
pub const MATH_CONSTANTS: &[(&str, f64)] =
    &[("pi", std::f64::consts::PI), ("e", std::f64::consts::E)];

#[derive(Default)]
pub(crate) struct GroupBuilder {
    pub arena: ExprArena,
    pub symbols: Vec<Symbol>,
    pub names: HashMap<String, VarId>,
    pub spans: SpanTable,
}

/// What a front end adds to the parts above to make a group.
pub(crate) struct Lowered {
    pub dynamics: Dynamics,
    pub events: Events,
    pub subexpressions: BTreeMap<String, ExprId>,
    pub held: Vec<(VarId, ExprId)>,
    pub noise: Vec<VarId>,
}

impl GroupBuilder {
    pub fn add_symbol(&mut self, name: &str, kind: SymbolKind, unit: &str) -> VarId {
        let id = VarId::at(self.symbols.len());
        self.symbols.push(Symbol {
            name: name.to_string(),
            kind,
            unit: unit.to_string(),
            value: ValueType::of_unit(unit),
            shared: false,
        });
        self.names.insert(name.to_string(), id);
        id
    }

    /// `not_refractory`, `lastspike`, `t`, `i` and `N`, after the group's own symbols.
    pub fn add_builtins(&mut self) {
        self.add_symbol("not_refractory", SymbolKind::NotRefractory, "boolean");
        self.add_symbol("lastspike", SymbolKind::LastSpike, "second");
        self.add_symbol("t", SymbolKind::Time, "second");
        self.add_symbol("i", SymbolKind::Index(IndexOf::Element), "integer");
        self.add_symbol("N", SymbolKind::Count(IndexOf::Element), "integer");
    }

    pub fn kind(&self, v: VarId) -> &SymbolKind {
        &self.symbols[v.index()].kind
    }

    /// The value of the symbol called `name`, if there is one (`not_refractory` and boolean
    /// parameters are truth values, every other symbol a number).
    pub fn symbol_value(&mut self, name: &str) -> Option<(ExprId, Ty)> {
        let v = *self.names.get(name)?;
        let ty = match self.symbols[v.index()].value {
            ValueType::Boolean => Ty::Bool,
            ValueType::Real | ValueType::Integer => Ty::Real,
        };
        Some((self.arena.var(v), ty))
    }

    /// A new call of `rand()` / `randn()`: its own symbol, so that two calls draw two numbers.
    pub fn draw(&mut self, draw: Draw) -> ExprId {
        let k = self
            .symbols
            .iter()
            .filter(|s| matches!(s.kind, SymbolKind::Random(_)))
            .count();
        let name = match draw {
            Draw::Uniform => format!("sf_rand{k}"),
            Draw::Normal => format!("sf_randn{k}"),
        };
        let v = self.add_symbol(&name, SymbolKind::Random(draw), "1");
        self.arena.var(v)
    }

    /// The bookkeeping of `lastspike`: kept, as in Brian2, when the group has a refractory
    /// period, and besides whenever the model reads it (the dynamics, a subexpression, the
    /// events). What the state holds does not depend on the variant (recorded variables, inputs):
    /// one state serves every run. The kernel keeps the value itself (not only the step count)
    /// when the model or the record list reads it.
    fn bookkeeping(&self, lowered: &Lowered, record: &[String]) -> Bookkeeping {
        let Some(&lastspike) = self.names.get("lastspike") else {
            return Bookkeeping::default();
        };
        let events = &lowered.events;
        let dynamics: Vec<ExprId> = match &lowered.dynamics {
            Dynamics::Odes(odes) => odes.iter().map(|s| s.derivative).collect(),
            Dynamics::Updates(updates) => updates
                .iter()
                .flat_map(|u| u.derivative.into_iter().chain([u.end_value]))
                .collect(),
        };
        let refractory = match events.refractory {
            RefractoryIr::None => None,
            RefractoryIr::Duration(e) | RefractoryIr::Condition(e) => Some(e),
        };
        let reads = dynamics
            .into_iter()
            .chain(lowered.held.iter().map(|(_, e)| *e))
            .chain(lowered.subexpressions.values().copied())
            .chain(events.threshold)
            .chain(events.reset.iter().map(|(_, e)| *e))
            .chain(refractory)
            .any(|root| self.arena.vars_of(root).contains(&lastspike));
        let kept = reads || refractory.is_some();
        Bookkeeping {
            lastspike: kept,
            lastspike_value: reads || (kept && record.iter().any(|r| r == "lastspike")),
        }
    }

    /// The group, or why the record list cannot be recorded (`lastspike` in a group that
    /// does not keep it).
    pub fn finish(
        self,
        lowered: Lowered,
        method: Method,
        substeps: u32,
        dt: f64,
        record: &[String],
    ) -> Result<GroupIr, Diagnostic> {
        let bookkeeping = self.bookkeeping(&lowered, record);
        if !bookkeeping.lastspike && record.iter().any(|r| r == "lastspike") {
            return Err(Diagnostic::new(
                "record",
                "cannot record 'lastspike': this group keeps no time of the last spike (it has no refractory period and no expression reads lastspike)",
            )
            .suggest("give the group a refractory period (refractory=0 keeps lastspike without making it refractory)"));
        }
        let draws = self
            .symbols
            .iter()
            .enumerate()
            .filter(|(_, s)| matches!(s.kind, SymbolKind::Random(_)))
            .map(|(k, _)| VarId::at(k))
            .collect();
        Ok(GroupIr {
            arena: self.arena,
            symbols: self.symbols,
            dynamics: lowered.dynamics,
            events: lowered.events,
            method,
            substeps,
            dt,
            subexpressions: lowered.subexpressions,
            held: lowered.held,
            noise: lowered.noise,
            draws,
            bookkeeping,
            spans: self.spans,
        })
    }
}
