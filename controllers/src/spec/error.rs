//! Errors in unit documents: every one names where the document came from,
//! the field, and (for YAML) the line and column, so an operator can fix the
//! file without guessing.

use std::fmt;

/// A 1-based line and column in the source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    /// Line number, the first line being 1.
    pub line: usize,
    /// Column number, the first column of a line being 1.
    pub col: usize,
}

/// One problem in one unit document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    /// The file path or etcd key the document came from.
    pub source: String,
    /// Dotted field path (`spec.env[0].value`); empty for the document itself.
    pub field: String,
    /// Where in the source text the value (or the mapping missing a field)
    /// starts. `None` when there is none to give: values read from JSON
    /// (only a JSON syntax error has a position) and the rules checked
    /// across fields after decoding.
    pub pos: Option<Pos>,
    /// Why the value is refused, worded to follow the field path
    /// (`must be between 1 and 1000, got 0`).
    pub message: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.source)?;
        if let Some(pos) = self.pos {
            write!(f, ":{}:{}", pos.line, pos.col)?;
        }
        if self.field.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": {}: {}", self.field, self.message)
        }
    }
}

/// Every problem found in one document (never empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecErrors(pub Vec<SpecError>);

impl SpecErrors {
    /// One error alone: `source`, `field` and `pos` as in [`SpecError`].
    pub fn single(source: &str, field: &str, pos: Option<Pos>, message: impl Into<String>) -> Self {
        SpecErrors(vec![SpecError {
            source: source.to_string(),
            field: field.to_string(),
            pos,
            message: message.into(),
        }])
    }

    /// The errors in the order they were found (document order, then the
    /// rules across fields).
    pub fn iter(&self) -> impl Iterator<Item = &SpecError> {
        self.0.iter()
    }
}

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecErrors {}
