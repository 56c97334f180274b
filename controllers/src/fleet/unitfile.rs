//! Unit files as fleet stores them. fleet deserializes every unit file with
//! go-systemd and stores what go-systemd's serializer writes back, hashing
//! those bytes; so Kaylee writes that exact form and the hash it computes is
//! the one fleet computes.

use std::borrow::Cow;

/// One `Key=Value` line of a unit file and the section it belongs to.
///
/// Section and option names are the renderer's constants (borrowed, no
/// allocation per unit) or, when the tests read text back, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitOption {
    /// The section without brackets: `Unit`, `Service`, `X-Fleet`.
    pub section: Cow<'static, str>,
    /// The option name, e.g. `ExecStart`; may repeat within a section.
    pub name: Cow<'static, str>,
    /// The value written after `=`, already quoted and escaped as systemd
    /// reads it; may hold `\`-newline continuations, kept verbatim.
    pub value: String,
}

impl UnitOption {
    /// An option from its section, name and value, taken as given (no
    /// checks, no quoting).
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
}
