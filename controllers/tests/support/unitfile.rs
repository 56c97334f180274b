//! fleet's reader of unit text (go-systemd's `unit.Deserialize`), for the
//! tests only: Kaylee never reads a unit back, but its tests check that
//! what it writes reads back as it was meant (the golden records, the
//! render properties, the fuzz checks). See docs/fleet-registry.md, "The
//! unit text".

use kaylee_controllers::fleet::quote::MAX_LINE_BYTES;
use kaylee_controllers::fleet::unitfile::UnitOption;
use std::borrow::Cow;

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
