//! `${NAME}` references: which `$` in a unit's values systemd may expand.
//!
//! Units written for the original (Go) Kaylee rely on systemd expanding
//! variables from `EnvironmentFile=`: on CoreOS, `envFiles:
//! [/etc/environment]` with `value: "${COREOS_PRIVATE_IPV4}"`. So in env
//! values, `dockerArgs` and `cmd` words, `${NAME}` (braces, `NAME` a shell
//! identifier: `[A-Za-z_][A-Za-z0-9_]*`) is a reference that systemd
//! replaces, when it runs the command, with the variable's value from the
//! unit's environment, as exactly one argument however much whitespace the
//! value holds ("Command lines" in systemd.service(5)); an unset variable
//! becomes the empty string. `$${NAME}` writes the literal text `${NAME}`;
//! every other `$` is literal (`$HOME`, `$1`, `${1}`, `$$`, a lone `$`).
//!
//! A reference cannot carry anything systemd reads as syntax: its name is
//! letters, digits and `_`, so it can neither end a word nor start a line,
//! an option, a specifier or another substitution.

/// One run of a value: text that reaches the command as is, or a reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece<'a> {
    /// Literal text (a `$${NAME}` escape is its `${NAME}` here).
    Literal(&'a str),
    /// The variable `NAME` of `${NAME}`.
    Reference(&'a str),
}

/// `NAME` when `s` starts with `{NAME}`, `NAME` a shell identifier.
fn braced_name(s: &str) -> Option<&str> {
    let rest = s.strip_prefix('{')?;
    let end = rest.find('}')?;
    let name = &rest[..end];
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    (first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')).then_some(name)
}

/// Splits `value` into literal text and references, left to right: at each
/// `$`, `${NAME}` is a reference and `$${NAME}` the literal `${NAME}`;
/// anything else is literal.
pub fn pieces(value: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let mut literal_from = 0;
    let mut i = 0;
    while let Some(offset) = value[i..].find('$') {
        let at = i + offset;
        let after = &value[at + 1..];
        if let Some(name) = braced_name(after) {
            push_literal(&mut out, &value[literal_from..at]);
            out.push(Piece::Reference(name));
            // `{` + name + `}` after the `$`.
            i = at + 1 + name.len() + 2;
            literal_from = i;
        } else if let Some(name) = after.strip_prefix('$').and_then(braced_name) {
            push_literal(&mut out, &value[literal_from..at]);
            // The escape's second `$` onwards: `${NAME}`.
            let end = at + 2 + name.len() + 2;
            push_literal(&mut out, &value[at + 1..end]);
            i = end;
            literal_from = i;
        } else {
            i = at + 1;
        }
    }
    push_literal(&mut out, &value[literal_from..]);
    out
}

fn push_literal<'a>(out: &mut Vec<Piece<'a>>, text: &'a str) {
    if !text.is_empty() {
        out.push(Piece::Literal(text));
    }
}

/// The names `value` refers to, in order (repeats included).
pub fn references(value: &str) -> impl Iterator<Item = &str> {
    pieces(value).into_iter().filter_map(|p| match p {
        Piece::Reference(name) => Some(name),
        Piece::Literal(_) => None,
    })
}

/// The word as docker receives it, each reference shown as `${NAME}` (for
/// `kaylee render -o json`; systemd fills them in on the host).
pub fn display(value: &str) -> String {
    pieces(value)
        .into_iter()
        .map(|p| match p {
            Piece::Literal(text) => text.to_string(),
            Piece::Reference(name) => format!("${{{name}}}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::Piece::{Literal as L, Reference as R};
    use super::*;

    #[test]
    fn braced_identifiers_are_references() {
        assert_eq!(pieces("${A}"), [R("A")]);
        assert_eq!(
            pieces("-p ${COREOS_PRIVATE_IPV4}:80:80"),
            [L("-p "), R("COREOS_PRIVATE_IPV4"), L(":80:80")]
        );
        assert_eq!(pieces("${_x1}${Y}"), [R("_x1"), R("Y")]);
        assert_eq!(references("a${B}c${D}").collect::<Vec<_>>(), ["B", "D"]);
    }

    #[test]
    fn every_other_dollar_is_literal() {
        for s in [
            "$HOME", "$1", "${1}", "${}", "${A", "${A-b}", "${A B}", "$", "$$", "a$$b", "$ {A}",
            "${é}",
        ] {
            assert_eq!(pieces(s), [L(s)], "{s}");
        }
        assert_eq!(pieces(""), []);
    }

    #[test]
    fn a_doubled_dollar_before_a_reference_writes_it_literally() {
        assert_eq!(pieces("$${A}"), [L("${A}")]);
        assert_eq!(display("x$${A}y"), "x${A}y");
        assert_eq!(references("$${A}").count(), 0);
        // Left to right: the first `$` is plain, the next two escape.
        assert_eq!(pieces("$$${A}"), [L("$"), L("${A}")]);
        assert_eq!(pieces("$$$${A}"), [L("$$"), L("${A}")]);
    }
}
