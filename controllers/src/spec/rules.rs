//! What each field may hold. Every value ends up in a systemd unit, a fleet
//! X-Fleet option, a container name or an etcd key, so the rules are strict
//! where a value is not quoted and length-checked where it is.
//!
//! Each rule returns `Ok(())` or `Err` with why the value is refused, worded
//! to follow the field path (`spec.image: ` + the reason) in a
//! [`SpecError`](crate::spec::SpecError). Lengths are in bytes of UTF-8.

use super::model::Unit;
use crate::fleet::quote;
use std::collections::HashSet;

type Rule = Result<(), String>;

fn chars_ok(s: &str, extra: &str) -> bool {
    s.chars()
        .all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
}

fn starts_alnum(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
}

fn non_empty_max(s: &str, max: usize) -> Rule {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > max {
        return Err(format!("is {} bytes long; the limit is {max}", s.len()));
    }
    Ok(())
}

/// `^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`: it lands in fleet unit names (where
/// `:` separates fields), container names and etcd keys (where `/` nests).
pub fn unit_name(s: &str) -> Rule {
    non_empty_max(s, 63)?;
    if !starts_alnum(s) || !chars_ok(s, "_.-") {
        return Err(format!(
            "`{}` is not a valid unit name: use letters, digits, `_`, `.`, `-`, starting with a letter or digit",
            s.escape_debug()
        ));
    }
    Ok(())
}

/// `spec.image`: a docker image reference, 1 to 512 bytes of letters,
/// digits and `._:/@-`, starting with a letter or digit. Only the
/// characters are checked, not the reference's grammar: docker says the
/// rest when it pulls.
pub fn image(s: &str) -> Rule {
    non_empty_max(s, 512)?;
    // A leading `-` would turn the image into a `docker run` flag.
    if !starts_alnum(s) || !chars_ok(s, "._:/@-") {
        return Err(format!(
            "`{}` is not a docker image reference",
            s.escape_debug()
        ));
    }
    Ok(())
}

/// One argv word, every byte literal: any text without NUL (checked when
/// decoding) that fits on one unit-file line once escaped.
pub fn argv_word(s: &str) -> Rule {
    fits(quote::exec_word(s).len())
}

/// One argv word in which `${NAME}` is a reference systemd expands (env
/// values, `dockerArgs` and `cmd` words), measured as it is written.
pub fn argv_word_expanding(s: &str) -> Rule {
    fits(quote::exec_word_expanding(s).len())
}

fn fits(escaped: usize) -> Rule {
    if escaped > quote::MAX_WORD_BYTES {
        return Err(format!(
            "is {escaped} bytes once escaped for systemd; the limit is {} bytes, so that every unit-file line stays within the {} bytes systemd and fleet read",
            quote::MAX_WORD_BYTES,
            quote::MAX_LINE_BYTES
        ));
    }
    Ok(())
}

/// Text split into words like a POSIX shell would (quotes group words,
/// backslashes escape, no expansion), each checked as an argv word.
fn shell_words(s: &str) -> Result<Vec<String>, String> {
    if starts_comment(s) {
        return Err(
            "has a `#` at the start of a word, which a shell reads as a comment that drops the rest: quote it (`'#…'`)"
                .into(),
        );
    }
    let words = shlex::split(s).ok_or_else(|| {
        "cannot be split into words: unbalanced quote or trailing backslash".to_string()
    })?;
    for w in &words {
        argv_word_expanding(w)?;
    }
    Ok(words)
}

/// Whether `s` holds a shell comment: a `#` that starts a word outside
/// quotes. The original Kaylee let systemd split these values, for which
/// `#` is an ordinary character; shlex would drop the rest of the value
/// without a word, so such a value is refused rather than changed.
fn starts_comment(s: &str) -> bool {
    let mut word_start = true;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => {
                word_start = true;
                continue;
            }
            '#' if word_start => return true,
            '\\' => {
                chars.next();
            }
            '\'' => {
                for q in chars.by_ref() {
                    if q == '\'' {
                        break;
                    }
                }
            }
            '"' => {
                while let Some(q) = chars.next() {
                    match q {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
        word_start = false;
    }
    false
}

/// `spec.cmd`: split into words like a POSIX shell would (quotes group,
/// backslashes escape, no expansion), each checked by
/// [`argv_word_expanding`]. Refused: an unbalanced quote, a trailing
/// backslash, and a `#` that starts a word (a shell comment).
pub fn cmd(s: &str) -> Rule {
    shell_words(s).map(|_| ())
}

/// One `dockerArgs` item: split into words like `cmd`, so `-p 8080:80` is
/// two arguments as it was when the original Kaylee let systemd split it.
pub fn docker_arg(s: &str) -> Rule {
    if shell_words(s)?.is_empty() {
        return Err(
            "is no argument at all once split into words (write `''` for an empty one)".into(),
        );
    }
    Ok(())
}

/// `spec.env[].name`: a shell identifier, `[A-Za-z_][A-Za-z0-9_]*`, at most
/// 255 bytes: what a `${NAME}` reference can name.
pub fn env_name(s: &str) -> Rule {
    non_empty_max(s, 255)?;
    let first_ok = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok || !chars_ok(s, "_") {
        return Err(format!(
            "`{}` is not a valid environment variable name (letters, digits and `_`, not starting with a digit)",
            s.escape_debug()
        ));
    }
    Ok(())
}

/// `EnvironmentFile=` takes the rest of the line as the path, so whitespace,
/// quotes and a trailing backslash (a line continuation) cannot be carried.
pub fn env_file(s: &str) -> Rule {
    non_empty_max(s, 1024)?;
    let path = s.strip_prefix('-').unwrap_or(s);
    if !path.starts_with('/') {
        return Err("must be an absolute path (optionally prefixed with `-`)".into());
    }
    if s.chars()
        .any(|c| c.is_whitespace() || c.is_control() || "\\\"'".contains(c))
    {
        return Err(
            "must not contain whitespace, quotes, backslashes or control characters".into(),
        );
    }
    Ok(())
}

/// `spec.volumes[].id`: a docker volume name, 1 to 128 bytes of letters,
/// digits and `_.-`, starting with a letter or digit: the characters
/// docker's `local` driver accepts in a volume name.
pub fn volume_id(s: &str) -> Rule {
    non_empty_max(s, 128)?;
    if !starts_alnum(s) || !chars_ok(s, "_.-") {
        return Err(format!(
            "`{}` is not a valid docker volume name (letters, digits, `_`, `.`, `-`)",
            s.escape_debug()
        ));
    }
    Ok(())
}

/// `spec.volumes[].driver`: a volume plugin name, 1 to 128 bytes of letters,
/// digits and `_.:/-` (a plugin may be `registry/name:tag`), starting with
/// a letter or digit.
pub fn volume_driver(s: &str) -> Rule {
    non_empty_max(s, 128)?;
    if !starts_alnum(s) || !chars_ok(s, "_.:/-") {
        return Err(format!(
            "`{}` is not a valid volume driver name",
            s.escape_debug()
        ));
    }
    Ok(())
}

/// `spec.volumes[].path`: an absolute path inside the container, at most
/// 1024 bytes, without control characters, `:` or `,` (which separate the
/// fields of docker's `-v`).
pub fn volume_path(s: &str) -> Rule {
    non_empty_max(s, 1024)?;
    if !s.starts_with('/') {
        return Err("must be an absolute path inside the container".into());
    }
    // `:` and `,` separate fields of docker's `-v` argument.
    if s.chars().any(|c| c.is_control() || c == ':' || c == ',') {
        return Err("must not contain `:`, `,` or control characters".into());
    }
    Ok(())
}

/// `key=value` for fleet's `MachineMetadata=`; fleet splits on whitespace
/// and reads quotes, so only plain characters are allowed.
pub fn machine_metadata(s: &str) -> Rule {
    non_empty_max(s, 255)?;
    let ok = s.split_once('=').is_some_and(|(k, v)| {
        !k.is_empty() && !v.is_empty() && chars_ok(k, "_.-") && chars_ok(v, "_.:/@+-")
    });
    if !ok {
        return Err(format!(
            "`{}` must be `key=value` (key: letters, digits, `_.-`; value: letters, digits, `_.:/@+-`)",
            s.escape_debug()
        ));
    }
    Ok(())
}

/// `spec.machineId`: a fleet machine id, 1 to 64 letters and digits (fleet
/// uses systemd's `/etc/machine-id`, 32 lowercase hex digits).
pub fn machine_id(s: &str) -> Rule {
    non_empty_max(s, 64)?;
    if !chars_ok(s, "") {
        return Err(format!(
            "`{}` is not a fleet machine id (letters and digits)",
            s.escape_debug()
        ));
    }
    Ok(())
}

/// A Kaylee unit name, or a fleet glob passed as is.
pub fn conflict(s: &str) -> Rule {
    if unit_name(s).is_ok() && !s.ends_with(".service") {
        return Ok(());
    }
    non_empty_max(s, 255)?;
    let glob_like = s.ends_with(".service") || s.contains('*');
    if !glob_like || !chars_ok(s, "_.:@*?-") {
        return Err(format!(
            "`{}` must be a Kaylee unit name, or a fleet unit glob that ends in `.service` or contains `*` (letters, digits, `_.:@*?-`)",
            s.escape_debug()
        ));
    }
    Ok(())
}

/// Rules that involve more than one field.
pub fn check_unit(unit: &Unit, report: &mut dyn FnMut(&str, String)) {
    let s = &unit.spec;
    if s.global && s.machine_id.is_some() {
        report(
            "spec.global",
            "cannot be combined with spec.machineId".into(),
        );
    }
    if s.max_replicas_per_host.is_some()
        && s.replicas.is_none()
        && !s.global
        && s.machine_id.is_none()
    {
        report(
            "spec.maxReplicasPerHost",
            "needs spec.replicas (a unit without replicas is a singleton)".into(),
        );
    }
    let mut names = HashSet::new();
    for (i, e) in s.env.iter().enumerate() {
        if !names.insert(e.name.as_str()) {
            report(
                &format!("spec.env[{i}].name"),
                format!("duplicate variable `{}`", e.name),
            );
        }
        if let Err(why) = argv_word_expanding(&format!("{}={}", e.name, e.value)) {
            report(&format!("spec.env[{i}].value"), why);
        }
    }
    let mut ids = HashSet::new();
    for (i, v) in s.volumes.iter().enumerate() {
        if !ids.insert(v.id.as_str()) {
            report(
                &format!("spec.volumes[{i}].id"),
                format!("duplicate volume `{}`", v.id),
            );
        }
        if let Err(why) = argv_word(&format!("{}:{}", v.id, v.path)) {
            report(&format!("spec.volumes[{i}].path"), why);
        }
        // Rendered as one `docker volume create` word with its flag, so the
        // flag counts towards the line limit too.
        if !v.options.is_empty()
            && let Err(why) = argv_word(&format!("--opt={}", v.options))
        {
            report(
                &format!("spec.volumes[{i}].options"),
                format!("{why} (counting the `--opt=` it is passed with)"),
            );
        }
    }
}
