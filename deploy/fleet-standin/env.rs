//! A unit's environment: `EnvironmentFile=` contents (systemd's format)
//! and the `$NAME`/`${NAME}` substitution systemd does in command lines at
//! exec time (systemd.service(5), "Command lines").

use crate::service::EnvFile;
use std::collections::BTreeMap;

/// The variables of `files`, in order (a later file overrides); `Err` names
/// a required file that cannot be read.
pub fn load(files: &[EnvFile]) -> Result<BTreeMap<String, String>, String> {
    let mut env = BTreeMap::new();
    for f in files {
        match std::fs::read_to_string(&f.path) {
            Ok(text) => env.extend(parse_file(&text)),
            Err(e) if f.optional && e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("EnvironmentFile={}: {e}", f.path)),
        }
    }
    Ok(env)
}

/// systemd's environment file syntax: `KEY=VALUE` lines, `#`/`;` comments,
/// values in `"…"` (backslash escapes `"`, `\`, `` ` ``, `$` and newlines)
/// or `'…'` (literal), unquoted values trimmed, a backslash at a line end
/// continuing the value. Lines that are not assignments of a valid name are
/// ignored, as systemd ignores them.
pub fn parse_file(text: &str) -> Vec<(String, String)> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        // Skip blank space before a key; a comment runs to the line end.
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        if i >= chars.len() {
            break;
        }
        if chars[i] == '#' || chars[i] == ';' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        let start = i;
        while i < chars.len() && chars[i] != '=' && chars[i] != '\n' {
            i += 1;
        }
        let key: String = chars[start..i]
            .iter()
            .collect::<String>()
            .trim()
            .to_string();
        if i >= chars.len() || chars[i] == '\n' {
            continue;
        }
        i += 1; // '='
        let value = read_value(&chars, &mut i);
        if valid_name(&key) {
            out.push((key, value));
        }
    }
    out
}

/// One value from `chars[*i]` to the end of its (logical) line.
fn read_value(chars: &[char], i: &mut usize) -> String {
    while *i < chars.len() && (chars[*i] == ' ' || chars[*i] == '\t') {
        *i += 1;
    }
    let mut value = String::new();
    // Where unquoted text ends, so trailing blanks can be dropped.
    let mut keep = 0;
    while *i < chars.len() && chars[*i] != '\n' {
        let c = chars[*i];
        *i += 1;
        match c {
            '\'' => {
                while *i < chars.len() && chars[*i] != '\'' {
                    value.push(chars[*i]);
                    *i += 1;
                }
                *i += 1;
                keep = value.len();
            }
            '"' => {
                while *i < chars.len() && chars[*i] != '"' {
                    if chars[*i] == '\\' && *i + 1 < chars.len() {
                        let n = chars[*i + 1];
                        *i += 2;
                        match n {
                            '\n' => {}
                            '"' | '\\' | '`' | '$' => value.push(n),
                            other => {
                                value.push('\\');
                                value.push(other);
                            }
                        }
                        continue;
                    }
                    value.push(chars[*i]);
                    *i += 1;
                }
                *i += 1;
                keep = value.len();
            }
            '\\' if *i < chars.len() => {
                let n = chars[*i];
                *i += 1;
                if n != '\n' {
                    value.push(n);
                }
                keep = value.len();
            }
            c => {
                value.push(c);
                if !c.is_whitespace() {
                    keep = value.len();
                }
            }
        }
    }
    value.truncate(keep);
    value
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The argv of a command from its words (unquoted, before `$`
/// substitution): a word that is `$NAME` alone becomes the variable's value
/// split on whitespace (no word when unset); `${NAME}` anywhere becomes its
/// value as is (empty when unset); `$$` becomes `$`.
pub fn substitute(words: &[String], env: &BTreeMap<String, String>) -> Vec<String> {
    let mut argv = Vec::with_capacity(words.len());
    for w in words {
        if let Some(name) = w.strip_prefix('$')
            && !name.starts_with(['{', '$'])
            && !name.is_empty()
        {
            if let Some(v) = env.get(name) {
                argv.extend(v.split_whitespace().map(str::to_string));
            }
            continue;
        }
        argv.push(replace(w, env));
    }
    argv
}

/// `${NAME}` and `$$` within one word.
fn replace(word: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(word.len());
    let mut rest = word;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{')
            && let Some(end) = body.find('}')
        {
            if let Some(v) = env.get(&body[..end]) {
                out.push_str(v);
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn words(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn environment_files_as_systemd_reads_them() {
        let text = "# comment\n; also\nCOREOS_PUBLIC_IPV4=10.0.0.1\n  SPACED = padded value  \n\
                    QUOTED=\"a \\\"b\\\" $c\"\nSINGLE='x \\n y'\nCONT=one\\\ntwo\n\
                    not a line\n9BAD=x\nEMPTY=\n";
        let got: BTreeMap<String, String> = parse_file(text).into_iter().collect();
        assert_eq!(
            got,
            env(&[
                ("COREOS_PUBLIC_IPV4", "10.0.0.1"),
                ("SPACED", "padded value"),
                ("QUOTED", "a \"b\" $c"),
                ("SINGLE", "x \\n y"),
                ("CONT", "onetwo"),
                ("EMPTY", ""),
            ])
        );
    }

    #[test]
    fn substitution_follows_systemd() {
        let e = env(&[("A", "x y"), ("IP", "10.0.0.1")]);
        assert_eq!(
            substitute(
                &words(&[
                    "/bin/run",
                    "$A",
                    "-e",
                    "ADDR=${IP}:80",
                    "$$HOME",
                    "${A}",
                    "$MISSING",
                    "50$"
                ]),
                &e
            ),
            [
                "/bin/run",
                "x",
                "y",
                "-e",
                "ADDR=10.0.0.1:80",
                "$HOME",
                "x y",
                "50$"
            ]
        );
        assert_eq!(
            substitute(&words(&["${NOPE}x", "$$$${IP}"]), &e),
            ["x", "$${IP}"]
        );
    }

    #[test]
    fn optional_files_may_be_missing() {
        let missing = EnvFile {
            path: "/nonexistent/fleet-standin.env".into(),
            optional: true,
        };
        assert_eq!(load(std::slice::from_ref(&missing)), Ok(BTreeMap::new()));
        let required = EnvFile {
            optional: false,
            ..missing
        };
        assert!(load(&[required]).is_err());
    }
}
