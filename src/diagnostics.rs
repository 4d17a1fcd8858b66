//! Errors about a user's model, located in the text the user wrote.
//!
//! Every model error carries the field it came from (`equations`, `threshold`, ...), the line and
//! column (1-based), the length of the offending piece and the source line, so that it can be
//! rendered with a caret under the place, the way a compiler would.

use std::fmt;

/// A place in one field of the model: 1-based line and column, and a length in characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Span {
    pub line: usize,
    pub col: usize,
    pub len: usize,
}

impl Span {
    pub fn new(line: usize, col: usize, len: usize) -> Self {
        Span { line, col, len }
    }

    /// The smallest span covering both (assumed on the same line when they differ, else `self`).
    pub fn to(self, other: Span) -> Span {
        if other.line != self.line || other.col < self.col {
            return self;
        }
        Span {
            line: self.line,
            col: self.col,
            len: (other.col + other.len).saturating_sub(self.col).max(1),
        }
    }
}

/// A model error with its location and, where it helps, a suggestion.
#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    /// Which field of the model the error is in: "equations", "threshold", "reset", ...
    pub field: String,
    pub message: String,
    pub span: Option<Span>,
    /// The full text of the line the span points into (for the caret rendering).
    pub source_line: Option<String>,
    pub suggestion: Option<String>,
}

impl Diagnostic {
    pub fn new(field: &str, message: impl Into<String>) -> Self {
        Diagnostic {
            field: field.to_string(),
            message: message.into(),
            span: None,
            source_line: None,
            suggestion: None,
        }
    }

    /// Attaches a location inside `source` (the whole text of the field).
    pub fn at(mut self, source: &str, span: Span) -> Self {
        self.source_line = source
            .lines()
            .nth(span.line.saturating_sub(1))
            .map(str::to_string);
        self.span = Some(span);
        self
    }

    pub fn suggest(mut self, s: impl Into<String>) -> Self {
        self.suggestion = Some(s.into());
        self
    }

    /// Renders as `field, line L, column C: message`, the source line, and a caret line.
    pub fn render(&self) -> String {
        let mut out = String::new();
        match self.span {
            Some(s) => out.push_str(&format!(
                "in {}, line {}, column {}: {}",
                self.field, s.line, s.col, self.message
            )),
            None => out.push_str(&format!("in {}: {}", self.field, self.message)),
        }
        if let (Some(s), Some(line)) = (self.span, &self.source_line) {
            out.push_str(&format!(
                "\n    {}\n    {}{}",
                line,
                " ".repeat(s.col.saturating_sub(1)),
                "^".repeat(s.len.max(1))
            ));
        }
        if let Some(sug) = &self.suggestion {
            out.push_str(&format!("\n{}", sug));
        }
        out
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

impl std::error::Error for Diagnostic {}

/// The known names closest to `name` by edit distance, for "did you mean" suggestions.
pub fn nearest_names<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut scored: Vec<(usize, &str)> = known
        .into_iter()
        .map(|k| (edit_distance(name, k), k))
        .filter(|(d, k)| *d <= (name.len().max(k.len()) / 2).max(1))
        .collect();
    scored.sort();
    scored.dedup();
    scored
        .into_iter()
        .take(3)
        .map(|(_, k)| k.to_string())
        .collect()
}

/// Optimal-string-alignment distance: edits, with a swap of neighbours counting as one
/// (`tua` is one edit from `tau`).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_caret_under_the_span() {
        let src = "dv/dt = -v/tauu : volt";
        let d = Diagnostic::new("equations", "unknown name 'tauu'").at(src, Span::new(1, 12, 4));
        let r = d.render();
        assert!(
            r.starts_with("in equations, line 1, column 12: unknown name 'tauu'"),
            "{r}"
        );
        let lines: Vec<&str> = r.lines().collect();
        assert_eq!(lines[2].find('^').unwrap() - 4, 11);
        assert_eq!(lines[2].trim(), "^^^^");
    }

    #[test]
    fn nearest_names_ranks_by_distance() {
        let n = nearest_names("tauu", ["tau", "v", "v_rest", "taus"]);
        assert_eq!(n[0], "tau");
        assert!(nearest_names("zzzzzz", ["v"]).is_empty());
        assert_eq!(nearest_names("tua", ["tau", "v"]), vec!["tau".to_string()]);
    }
}
