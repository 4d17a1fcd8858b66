//! Where the pieces of a group were written: a table from the IR's equations and events to the
//! field and place of their source text, so that a diagnostic about a lowered group (a scheme
//! that does not apply to an equation, ...) points at the text without parsing it again.

use super::expr::VarId;
use crate::diagnostics::{Diagnostic, Span};

/// A piece of a group that came from source text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Site {
    /// What defines a stored variable's change: its equation `dx/dt = ...` (the span covers
    /// `x`), or a model class's assignment `self.d_x = ...`.
    Dynamics(VarId),
    Threshold,
    /// The reset statement at this position (the span covers its target).
    Reset(usize),
    Refractory,
}

/// A place in the text of one field of the spec, with the line it is on (for the caret).
#[derive(Clone, Debug, PartialEq)]
pub struct SourceSpan {
    /// The field of the spec: `equations`, `threshold`, `reset`, `refractory`, `ode`.
    pub field: &'static str,
    pub span: Span,
    pub line: String,
}

impl SourceSpan {
    /// An error located here.
    pub fn diagnostic(&self, message: impl Into<String>) -> Diagnostic {
        let mut d = Diagnostic::new(self.field, message);
        d.span = Some(self.span);
        d.source_line = Some(self.line.clone());
        d
    }
}

#[derive(Clone, Debug, Default)]
pub struct SpanTable {
    entries: Vec<(Site, SourceSpan)>,
}

impl SpanTable {
    /// Records that `site` was written at `span` of `text`, the whole text of `field`.
    pub fn insert(&mut self, site: Site, field: &'static str, text: &str, span: Span) {
        let line = text
            .lines()
            .nth(span.line.saturating_sub(1))
            .unwrap_or("")
            .to_string();
        self.entries.push((site, SourceSpan { field, span, line }));
    }

    pub fn get(&self, site: &Site) -> Option<&SourceSpan> {
        self.entries
            .iter()
            .find(|(s, _)| s == site)
            .map(|(_, at)| at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_site_gives_a_located_diagnostic() {
        let mut t = SpanTable::default();
        let text = "dv/dt = -v : 1\ndw/dt = v**2 : 1";
        t.insert(
            Site::Dynamics(VarId(1)),
            "equations",
            text,
            Span::new(2, 2, 1),
        );
        assert!(t.get(&Site::Dynamics(VarId(0))).is_none());
        let d = t
            .get(&Site::Dynamics(VarId(1)))
            .unwrap()
            .diagnostic("not linear");
        assert_eq!(
            d.render(),
            "in equations, line 2, column 2: not linear\n    dw/dt = v**2 : 1\n     ^"
        );
    }
}
