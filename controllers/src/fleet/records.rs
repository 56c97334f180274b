//! fleet's registry records, byte for byte as fleet's Go client writes them
//! (docs/fleet-registry.md): `unit/<sha1>` → `{"Raw":…}`,
//! `job/<name>/object` → `{"Name":…,"UnitHash":[…]}`,
//! `job/<name>/target-state` → `launched`.

use serde::Deserialize;
use sha1::{Digest, Sha1};
use std::fmt::Write;

/// SHA-1 of a unit text (the `Raw` bytes), as fleet hashes it: the name of
/// its `unit/<hex>` record and the `UnitHash` of a job object, 20 raw bytes.
pub type UnitHash = [u8; 20];

/// A key relative to the fleet prefix, and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Relative to the fleet prefix, no leading `/`: `unit/<hex>`,
    /// `job/<name>/object` or `job/<name>/target-state`.
    pub key: String,
    /// The value exactly as fleet's Go client writes it (JSON or a bare word).
    pub value: String,
}

/// The [`UnitHash`] of a unit text: SHA-1 over its UTF-8 bytes, as fleet
/// computes it over the go-systemd serialized form (see [`super::unitfile`]).
pub fn unit_hash(text: &str) -> UnitHash {
    Sha1::digest(text.as_bytes()).into()
}

/// A string as Go's `encoding/json` (as fleet v1.0.0 was built) writes it:
/// HTML-safe escapes for `<`, `>`, `&`, `\u2028`/`\u2029`, short escapes only
/// for `\n`, `\r`, `\t`, other control bytes as `\u00XX`.
pub fn go_json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8 + 2);
    out.push('"');
    // Copy runs of characters that need no escape in one go.
    let mut rest = s;
    while let Some(at) = rest.find(|c: char| needs_escape(c)) {
        out.push_str(&rest[..at]);
        let c = rest[at..].chars().next().unwrap_or('\0');
        rest = &rest[at + c.len_utf8()..];
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
        }
    }
    out.push_str(rest);
    out.push('"');
    out
}

fn needs_escape(c: char) -> bool {
    matches!(c, '"' | '\\' | '<' | '>' | '&' | '\u{2028}' | '\u{2029}') || (c as u32) < 0x20
}

/// `unit/<sha1 hex>` of a unit text's hash (the key is [`crate::keys`]').
pub fn unit_key(hash: &UnitHash) -> String {
    crate::keys::unit_record(hash)
}

/// The `unit/<hex>` value: `{"Raw":"<text>"}`, the text as a
/// [`go_json_string`] so the bytes match what fleetctl writes.
pub fn unit_value(text: &str) -> String {
    format!("{{\"Raw\":{}}}", go_json_string(text))
}

/// The `job/<name>/object` value: `{"Name":"<name>","UnitHash":[…]}`, the
/// hash as 20 decimal bytes (Go's `encoding/json` form of a `[20]byte`).
pub fn job_object_value(name: &str, hash: &UnitHash) -> String {
    let bytes: Vec<String> = hash.iter().map(u8::to_string).collect();
    format!(
        "{{\"Name\":{},\"UnitHash\":[{}]}}",
        go_json_string(name),
        bytes.join(",")
    )
}

/// The `job/<name>/target-state` value that asks fleet to schedule and start
/// the job (`fleetctl start`); the others are `loaded` and `inactive`, which
/// Kaylee never writes.
pub const TARGET_STATE_LAUNCHED: &str = "launched";

/// What creating (and starting) one fleet unit writes, in fleet's order.
pub fn create_records(name: &str, text: &str) -> [Record; 3] {
    let hash = unit_hash(text);
    [
        Record {
            key: unit_key(&hash),
            value: unit_value(text),
        },
        Record {
            key: crate::keys::job_object(name),
            value: job_object_value(name, &hash),
        },
        Record {
            key: crate::keys::job_target_state(name),
            value: TARGET_STATE_LAUNCHED.to_string(),
        },
    ]
}

#[derive(Debug, Deserialize)]
struct JobObject {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "UnitHash")]
    unit_hash: UnitHash,
}

/// Reads a `job/<name>/object` value (any valid JSON form, not only Go's).
pub fn parse_job_object(value: &[u8]) -> Option<(String, UnitHash)> {
    let o: JobObject = serde_json::from_slice(value).ok()?;
    Some((o.name, o.unit_hash))
}

/// What a fleet agent reports in `states/<name>/<machine>` (fleet's
/// `unitStateModel`: `loadState`, `activeState`, `subState`, `machineState`,
/// `unitHash`), the parts Kaylee reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct UnitState {
    /// systemd's `ActiveState`: `active`, `activating`, `failed`, `inactive`…
    #[serde(rename = "activeState", default)]
    pub active: String,
    /// systemd's `SubState`: `running`, `auto-restart`, `dead`…
    #[serde(rename = "subState", default)]
    pub sub: String,
    /// Hex SHA-1 of the unit text the agent runs; empty when not reported.
    #[serde(rename = "unitHash", default)]
    pub unit_hash: String,
}

impl UnitState {
    /// `activeState` `active` and `subState` `running`.
    pub fn is_running(&self) -> bool {
        self.active == "active" && self.sub == "running"
    }

    /// The reported unit hash, when there is a valid one.
    pub fn hash(&self) -> Option<UnitHash> {
        let mut out = [0u8; 20];
        hex::decode_to_slice(&self.unit_hash, &mut out).ok()?;
        Some(out)
    }
}

/// Reads a `states/<name>/<machine>` value; `None` when it is not JSON.
pub fn parse_unit_state(value: &[u8]) -> Option<UnitState> {
    serde_json::from_slice(value).ok()
}

/// Whether a `states/<name>/<machine>` value says the unit runs.
pub fn state_is_running(value: &[u8]) -> bool {
    parse_unit_state(value).is_some_and(|s| s.is_running())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_json_escapes_html_and_controls() {
        assert_eq!(go_json_string("a<b>&c"), "\"a\\u003cb\\u003e\\u0026c\"");
        assert_eq!(go_json_string("é\u{2028}"), "\"é\\u2028\"");
        assert_eq!(go_json_string("\u{8}\u{c}\n"), "\"\\u0008\\u000c\\n\"");
    }

    #[test]
    fn job_objects_parse_in_either_json_form() {
        let hash = unit_hash("x");
        let value = job_object_value("k:a:b:c:1.service", &hash);
        assert_eq!(
            parse_job_object(value.as_bytes()),
            Some(("k:a:b:c:1.service".to_string(), hash))
        );
        assert!(parse_job_object(b"{\"Name\":\"x\"}").is_none());
    }

    #[test]
    fn running_needs_active_and_running() {
        assert!(state_is_running(
            br#"{"activeState":"active","subState":"running"}"#
        ));
        assert!(!state_is_running(
            br#"{"activeState":"activating","subState":"start"}"#
        ));
        assert!(!state_is_running(b"garbage"));
        let s = parse_unit_state(
            br#"{"loadState":"loaded","activeState":"active","subState":"running","machineState":{"ID":"m1"},"unitHash":"0a0b0c0d0e0f101112131415161718191a1b1c1d"}"#,
        )
        .expect("a state");
        assert_eq!(s.hash().map(|h| h[0]), Some(10));
        assert_eq!(UnitState::default().hash(), None);
    }
}
