//! The parts of a group both front ends build the same way while lowering: the arena, the
//! symbol table (with the names every group has: `not_refractory`, `lastspike`, `t`, `i`, `N`)
//! and the span table, finished into a [`GroupIr`] once the front end has the dynamics and the
//! events and the scheme is resolved.

use std::collections::{BTreeMap, HashMap};

use crate::ir::{
    Dynamics, Events, ExprArena, ExprId, GroupIr, IndexOf, SpanTable, Symbol, SymbolKind, Ty, VarId,
};
use crate::spec::Method;

/// Names with a built-in meaning in every group.
pub const BUILTIN_NAMES: &[&str] = &["t", "dt", "i", "N", "not_refractory", "lastspike", "xi"];

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

    /// The value of the symbol called `name`, if there is one (`not_refractory` is a truth
    /// value, every other symbol a number).
    pub fn symbol_value(&mut self, name: &str) -> Option<(ExprId, Ty)> {
        let v = *self.names.get(name)?;
        let ty = match self.kind(v) {
            SymbolKind::NotRefractory => Ty::Bool,
            _ => Ty::Real,
        };
        Some((self.arena.var(v), ty))
    }

    pub fn finish(self, lowered: Lowered, method: Method, substeps: u32, dt: f64) -> GroupIr {
        GroupIr {
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
            spans: self.spans,
        }
    }
}
