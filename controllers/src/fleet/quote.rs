//! Writing argv words so that systemd reads back exactly the intended bytes.
//!
//! systemd reads an `ExecStart=` line by (1) joining continuation lines,
//! (2) splitting words on whitespace, honouring `"…"` quotes with C escapes
//! inside, (3) expanding `%` specifiers and (4) at exec time expanding `$VAR`.
//! A word made only of "safe" characters passes all four unchanged; any
//! other word is double-quoted with every special byte escaped, so that no
//! value can end a word early, start a new line, option or section, or be
//! expanded. The one expansion let through is a `${NAME}` reference in the
//! values that allow it ([`exec_word_expanding`], see `reference.rs`).

use super::reference::{self, Piece};
use std::fmt::Write;

/// The longest physical line of a unit, in bytes, its newline not counted.
/// The systemd of fleet's era reads a unit file a line at a time with
/// fgets(3) into a `LINE_MAX` (2048-byte) buffer that also holds the
/// newline and a NUL, so a longer line is cut in two (systemd's
/// `config_parse`); fleet's own reader (go-systemd's `SYSTEMD_LINE_MAX`,
/// 2048 with the newline) drops a unit with a longer line altogether.
pub const MAX_LINE_BYTES: usize = 2046;
/// The longest word once escaped: it may sit alone on a continuation line,
/// two spaces before it and ` \` after.
pub const MAX_WORD_BYTES: usize = MAX_LINE_BYTES - 4;

fn is_safe(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_./:=,@+-".contains(c)
}

/// One argv word in systemd command-line syntax, every byte literal. NUL
/// cannot be carried by systemd at all; validation refuses it before
/// rendering.
pub fn exec_word(word: &str) -> String {
    if !word.is_empty() && word.chars().all(is_safe) {
        return word.to_string();
    }
    let mut out = String::with_capacity(word.len() + 2);
    out.push('"');
    escape_into(&mut out, word);
    out.push('"');
    out
}

/// One argv word in which each `${NAME}` is a reference systemd expands
/// when it runs the command, and everything else is literal (`$${NAME}`
/// stands for the text `${NAME}`): for env values, `dockerArgs` and `cmd`.
pub fn exec_word_expanding(word: &str) -> String {
    let pieces = reference::pieces(word);
    if !pieces.iter().any(|p| matches!(p, Piece::Reference(_))) {
        // Only literals (`$${NAME}` escapes among them): the plain text.
        return exec_word(&reference::display(word));
    }
    // `$`, `{` and `}` are not safe characters: the word is quoted anyway,
    // and systemd expands references inside quotes too.
    let mut out = String::with_capacity(word.len() + 2);
    out.push('"');
    for p in pieces {
        match p {
            Piece::Literal(text) => escape_into(&mut out, text),
            Piece::Reference(name) => {
                out.push_str("${");
                out.push_str(name);
                out.push('}');
            }
        }
    }
    out.push('"');
    out
}

/// The inside of a double-quoted word: C escapes for quotes, backslashes
/// and control characters, `%%` and `$$` for literal `%` and `$`.
fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            // Specifiers are expanded after unquoting, so `%` needs `%%`
            // even inside quotes; likewise `$` for environment expansion.
            '%' => out.push_str("%%"),
            '$' => out.push_str("$$"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_ascii_control() => {
                // Writing to a String cannot fail.
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// `%` is a specifier in every systemd value, not only in command lines.
pub fn escape_specifiers(value: &str) -> String {
    value.replace('%', "%%")
}

/// Joins already-escaped words into the value of option `key`, continuing on
/// a new line (trailing ` \`, two leading spaces) before any line would pass
/// [`MAX_LINE_BYTES`]. systemd turns the continuation into whitespace, which
/// only ever falls between words. Words longer than [`MAX_WORD_BYTES`] are
/// refused by validation.
pub fn wrap_words(key: &str, words: &[String]) -> String {
    let mut value = String::new();
    let mut line = key.len() + 1;
    for (i, w) in words.iter().enumerate() {
        if i > 0 {
            if line + 1 + w.len() + 2 > MAX_LINE_BYTES {
                value.push_str(" \\\n  ");
                line = 2;
            } else {
                value.push(' ');
                line += 1;
            }
        }
        value.push_str(w);
        line += w.len();
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_words_stay_bare() {
        assert_eq!(exec_word("kaylee.name=demo"), "kaylee.name=demo");
        assert_eq!(
            exec_word("--security-opt=label:disable"),
            "--security-opt=label:disable"
        );
    }

    #[test]
    fn special_words_are_quoted_and_escaped() {
        assert_eq!(exec_word("A=b c"), "\"A=b c\"");
        assert_eq!(exec_word("X=50% off $HOME"), "\"X=50%% off $$HOME\"");
        assert_eq!(exec_word("a\"b\\c\nd"), "\"a\\\"b\\\\c\\nd\"");
        assert_eq!(exec_word(""), "\"\"");
        assert_eq!(exec_word(";"), "\";\"");
        assert_eq!(exec_word("#x"), "\"#x\"");
        assert_eq!(exec_word("\u{1}\u{7f}"), "\"\\x01\\x7f\"");
        assert_eq!(exec_word("T=<é>"), "\"T=<é>\"");
    }

    #[test]
    fn references_stay_references_and_everything_else_is_literal() {
        assert_eq!(exec_word_expanding("${IP}:80:80"), "\"${IP}:80:80\"");
        assert_eq!(
            exec_word_expanding("A=${X} $HOME 50% \"q\""),
            "\"A=${X} $$HOME 50%% \\\"q\\\"\""
        );
        // The escape writes the literal text, as `exec_word` would.
        assert_eq!(exec_word_expanding("$${X}"), exec_word("${X}"));
        assert_eq!(exec_word_expanding("$${X}"), "\"$${X}\"");
        assert_eq!(exec_word_expanding("plain"), "plain");
        assert_eq!(exec_word_expanding("${1}"), "\"$${1}\"");
    }

    #[test]
    fn wrapping_keeps_every_line_short() {
        let words: Vec<String> = (0..100)
            .map(|i| format!("word-{i}-{}", "x".repeat(90)))
            .collect();
        let value = wrap_words("ExecStart", &words);
        let text = format!("ExecStart={value}");
        assert!(text.lines().count() > 1);
        for line in text.lines() {
            assert!(line.len() <= MAX_LINE_BYTES, "{}", line.len());
        }
        let rejoined: Vec<&str> = text["ExecStart=".len()..]
            .split(" \\\n  ")
            .flat_map(|l| l.split(' '))
            .collect();
        assert_eq!(rejoined, words);
    }

    #[test]
    fn a_maximal_word_fits_on_its_own_line() {
        let words = vec!["/usr/bin/docker".to_string(), "y".repeat(MAX_WORD_BYTES)];
        let text = format!("ExecStart={}", wrap_words("ExecStart", &words));
        assert!(text.lines().all(|l| l.len() <= MAX_LINE_BYTES));
    }
}
