//! The checks behind the fuzz targets, shared by `fuzz/` (libFuzzer, on
//! nightly) and `tests/fuzz_targets.rs` (proptest, on stable), so both run
//! exactly the same code on their inputs.

use super::systemd;
use super::unitfile::deserialize;
use super::words::{LINE_LIMIT, expected_word};
use kaylee_controllers::fleet::unitfile::serialize;
use kaylee_controllers::fleet::{RenderOptions, render};
use kaylee_controllers::spec::{self, Unit};

/// Any bytes as a YAML unit file: an error or a unit, never a panic; a
/// unit's canonical JSON parses back to the same unit.
pub fn spec_yaml(data: &[u8]) -> Option<Unit> {
    let text = std::str::from_utf8(data).ok()?;
    let unit = spec::from_yaml(text, "fuzz.yaml").ok()?;
    round_trip(&unit);
    Some(unit)
}

/// Any bytes as the JSON form stored in etcd.
pub fn spec_json(data: &[u8]) -> Option<Unit> {
    let unit = spec::from_json_bytes(data, "/kaylee/units/fuzz").ok()?;
    round_trip(&unit);
    Some(unit)
}

fn round_trip(unit: &Unit) {
    let again = spec::from_json(&unit.to_json(), "canonical");
    assert_eq!(again.as_ref().ok(), Some(unit), "canonical JSON round trip");
}

/// Parse (YAML, else JSON), render, and read every unit back as systemd and
/// fleet would: no problem reported, no line over systemd's limit, and the
/// go-systemd round trip keeps the bytes.
pub fn render_split(data: &[u8]) {
    let Some(unit) = spec_yaml(data).or_else(|| spec_json(data)) else {
        return;
    };
    for u in render(&unit, "fuzz", &RenderOptions::default()).units {
        let read = systemd::parse(&u.text);
        assert!(read.problems.is_empty(), "{:?}\n{}", read.problems, u.text);
        assert!(u.text.lines().all(|l| l.len() <= LINE_LIMIT), "{}", u.text);
        let options = deserialize(&u.text).expect("fleet reads what Kaylee writes");
        assert_eq!(serialize(&options), u.text);
        let exec = read
            .get("Service", "ExecStart")
            .next()
            .expect("one ExecStart");
        let argv = &exec.commands[0].argv;
        let last = match unit.cmd_args().last() {
            Some(word) => expected_word(word),
            None => unit.spec.image.clone(),
        };
        assert_eq!(argv.last(), Some(&last));
    }
}
