//! What the rendered unit must give systemd, from the README's rules alone
//! (never from the library): the line limit and the `${NAME}` rule. No
//! dependencies beyond the oracle, so `fuzz/` shares it.

use super::systemd;

/// The longest physical line systemd of fleet's era reads whole: fgets(3)
/// into a 2048-byte buffer (`LINE_MAX`) that also holds the newline and a
/// NUL. fleet's go-systemd allows one byte more.
pub const LINE_LIMIT: usize = 2046;

/// The argv word systemd passes for `value` from an env value, a docker
/// arg or a cmd word: `${NAME}` (NAME a shell identifier) is a reference,
/// `$${NAME}` the text `${NAME}`, everything else literal. Written from the
/// README's rule, not from the library.
pub fn expected_word(value: &str) -> String {
    fn braced(chars: &[char]) -> Option<(String, usize)> {
        if chars.first() != Some(&'{') {
            return None;
        }
        let close = chars.iter().position(|c| *c == '}')?;
        let name: String = chars[1..close].iter().collect();
        let first = name.chars().next()?;
        let ok = (first.is_ascii_alphabetic() || first == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        ok.then_some((name, close + 1))
    }
    let chars: Vec<char> = value.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '$' {
            if let Some((name, len)) = braced(&chars[i + 1..]) {
                out.push_str(&systemd::reference(&name));
                i += 1 + len;
                continue;
            }
            if chars.get(i + 1) == Some(&'$')
                && let Some((name, len)) = braced(&chars[i + 2..])
            {
                out.push_str(&format!("${{{name}}}"));
                i += 2 + len;
                continue;
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}
