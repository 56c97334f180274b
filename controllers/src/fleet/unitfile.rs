//! Unit files as fleet stores them. fleet deserializes every unit file with
//! go-systemd and stores what go-systemd's serializer writes back, hashing
//! those bytes; so Kaylee writes that exact form and the hash it computes is
//! the one fleet computes.

use super::quote::MAX_LINE_BYTES;
use std::borrow::Cow;

/// Section and option names are the renderer's constants (borrowed, no
/// allocation per unit) or, when read back from text, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitOption {
    pub section: Cow<'static, str>,
    pub name: Cow<'static, str>,
    pub value: String,
}

impl UnitOption {
    pub fn new(
        section: impl Into<Cow<'static, str>>,
        name: impl Into<Cow<'static, str>>,
        value: impl Into<String>,
    ) -> Self {
        UnitOption {
            section: section.into(),
            name: name.into(),
            value: value.into(),
        }
    }
}

/// go-systemd's `unit.Serialize`: sections in first-seen order, each
/// `[Name]` then `Key=Value` lines in the given order, one empty line between
/// sections and none at the end.
pub fn serialize(options: &[UnitOption]) -> String {
    let mut sections: Vec<&str> = Vec::new();
    for o in options {
        if !sections.contains(&o.section.as_ref()) {
            sections.push(&o.section);
        }
    }
    let size: usize = options
        .iter()
        .map(|o| o.name.len() + o.value.len() + 2)
        .sum::<usize>()
        + sections.iter().map(|s| s.len() + 4).sum::<usize>();
    let mut out = String::with_capacity(size);
    for (i, section) in sections.iter().enumerate() {
        out.push('[');
        out.push_str(section);
        out.push_str("]\n");
        for o in options.iter().filter(|o| o.section == *section) {
            out.push_str(&o.name);
            out.push('=');
            out.push_str(&o.value);
            out.push('\n');
        }
        if i + 1 < sections.len() {
            out.push('\n');
        }
    }
    out
}

/// Reads unit text the way fleet's go-systemd does: comments and blank lines
/// skipped, `Key=Value` trimmed, a trailing `\` continues the value onto the
/// next line verbatim (backslash and newline kept).
pub fn deserialize(text: &str) -> Result<Vec<UnitOption>, String> {
    let mut options = Vec::new();
    let mut section: Option<String> = None;
    let mut lines = text.split('\n').enumerate().peekable();
    while let Some((n, raw)) = lines.next() {
        let line = raw.trim_end_matches('\r');
        if line.len() > MAX_LINE_BYTES {
            return Err(format!(
                "line {}: longer than {MAX_LINE_BYTES} bytes",
                n + 1
            ));
        }
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        if let Some(name) = trimmed.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            section = Some(name.to_string());
            continue;
        }
        let Some(current) = section.clone() else {
            return Err(format!("line {}: option outside of any section", n + 1));
        };
        let Some((name, first)) = line.split_once('=') else {
            return Err(format!("line {}: expected Key=Value", n + 1));
        };
        let mut value = first.to_string();
        while value.ends_with('\\') {
            let Some((_, next)) = lines.next() else { break };
            value.push('\n');
            value.push_str(next.trim_end_matches('\r'));
        }
        options.push(UnitOption {
            section: Cow::Owned(current),
            name: Cow::Owned(name.trim().to_string()),
            value: value.trim().to_string(),
        });
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializer_groups_sections_in_first_seen_order() {
        let opts = vec![
            UnitOption::new("Unit", "Description", "x"),
            UnitOption::new("Service", "ExecStart", "/bin/true"),
            UnitOption::new("Unit", "After", "y.service"),
        ];
        assert_eq!(
            serialize(&opts),
            "[Unit]\nDescription=x\nAfter=y.service\n\n[Service]\nExecStart=/bin/true\n"
        );
        assert_eq!(serialize(&[]), "");
    }

    #[test]
    fn continuation_is_kept_verbatim() {
        let text = "[Service]\nExecStart=/a \\\n  b\nRestart=always\n";
        let opts = deserialize(text).unwrap();
        assert_eq!(opts[0].value, "/a \\\n  b");
        assert_eq!(opts[1].name, "Restart");
    }
}
