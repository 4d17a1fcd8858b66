//! The one writer of generated source. Every printer (the group kernel and its expression
//! blocks, the reductions) writes through it with `write!`/`writeln!` and `?`, as to any
//! `fmt::Write`, and it indents each line by the depth of the block being written, so that no
//! printer counts spaces and no write result is thrown away.

use std::fmt::{self, Write};

/// One level of indentation.
const INDENT: &str = "    ";

pub struct SourceWriter {
    text: String,
    depth: usize,
    at_line_start: bool,
}

impl SourceWriter {
    pub fn new() -> SourceWriter {
        SourceWriter {
            text: String::new(),
            depth: 0,
            at_line_start: true,
        }
    }

    /// Writes what `body` writes one level deeper.
    pub fn indented(&mut self, body: impl FnOnce(&mut SourceWriter) -> fmt::Result) -> fmt::Result {
        self.depth += 1;
        let result = body(self);
        self.depth -= 1;
        result
    }

    /// `head {`, then `body` one level deeper, then `}`.
    pub fn block(
        &mut self,
        head: impl fmt::Display,
        body: impl FnOnce(&mut SourceWriter) -> fmt::Result,
    ) -> fmt::Result {
        writeln!(self, "{head} {{")?;
        self.indented(body)?;
        writeln!(self, "}}")
    }

    pub fn finish(self) -> String {
        self.text
    }
}

impl Default for SourceWriter {
    fn default() -> SourceWriter {
        SourceWriter::new()
    }
}

impl Write for SourceWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for piece in s.split_inclusive('\n') {
            // Empty lines stay empty: no trailing whitespace.
            if self.at_line_start && piece != "\n" {
                for _ in 0..self.depth {
                    self.text.push_str(INDENT);
                }
            }
            self.text.push_str(piece);
            self.at_line_start = piece.ends_with('\n');
        }
        Ok(())
    }
}

/// The text `print` writes. Writing to a string cannot fail; a printer that returns an error
/// anyway is a bug, reported as one.
pub fn render(print: impl FnOnce(&mut SourceWriter) -> fmt::Result) -> String {
    let mut w = SourceWriter::new();
    print(&mut w).expect("writing generated source to a string does not fail");
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_indent_every_line_they_write() {
        let text = render(|w| {
            w.block("for (;;)", |w| {
                writeln!(w, "a += 1;\n\nif (a) break;")?;
                w.block("if (b)", |w| writeln!(w, "c();"))
            })?;
            write!(w, "/* end */")
        });
        assert_eq!(
            text,
            "for (;;) {\n    a += 1;\n\n    if (a) break;\n    if (b) {\n        c();\n    }\n}\n/* end */"
        );
    }
}
