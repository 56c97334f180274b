//! Fleet unit names: `<prefix>:<name>:<spec-hash>:<group>:<replica>.service`.
//! The name alone tells which Kaylee unit, which version of its template and
//! which conflict group a fleet unit belongs to, so the planner needs nothing
//! else to compare desired and observed sets.

use crate::spec::{Spec, Unit};
use serde::Serialize;
use sha1::{Digest, Sha1};

/// Bumped whenever rendering changes, so every unit rolls onto the new text
/// instead of two texts sharing one fleet name. 2: pull policies and their
/// bounded pull, a finite `TimeoutStartSec=`, `SuccessExitStatus=`,
/// `${NAME}` references, `dockerArgs` split into words, and conflict groups
/// of a per-host limit shared by every template of a unit.
const RENDER_FORMAT: u32 = 2;

/// A fleet unit name taken apart:
/// `<prefix>:<unit>:<spec_hash>:<group>:<replica>.service`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FleetName {
    /// The server's unit prefix (`--unit-prefix`, `k` by default); letters,
    /// digits and `_.-`, never `:`, so names of other prefixes are not ours.
    pub prefix: String,
    /// The Kaylee unit's name (a valid unit name per `spec::rules`).
    pub unit: String,
    /// [`spec_hash`]: 6 lowercase hex digits naming the template version.
    pub spec_hash: String,
    /// [`group_id`]: 6 lowercase hex digits naming the conflict group; units
    /// of one group never share a machine.
    pub group: String,
    /// 1-based replica number, written without leading zeros; 1 for
    /// singleton, global and pinned units.
    pub replica: u32,
}

impl FleetName {
    /// The full fleet unit name, ending in `.service`; [`FleetName::parse`]
    /// reads it back.
    pub fn to_name(&self) -> String {
        format!(
            "{}:{}:{}:{}:{}.service",
            self.prefix, self.unit, self.spec_hash, self.group, self.replica
        )
    }

    /// Parses a fleet unit name written by Kaylee with this `prefix`; any other
    /// name (other prefixes, hand-made units) is `None` and never touched.
    pub fn parse(name: &str, prefix: &str) -> Option<FleetName> {
        let rest = name.strip_prefix(prefix)?.strip_prefix(':')?;
        let rest = rest.strip_suffix(".service")?;
        let mut parts = rest.split(':');
        let (unit, spec_hash, group, replica) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some()
            || crate::spec::rules::unit_name(unit).is_err()
            || !is_hex6(spec_hash)
            || !is_hex6(group)
            || replica.starts_with('0')
        {
            return None;
        }
        Some(FleetName {
            prefix: prefix.to_string(),
            unit: unit.to_string(),
            spec_hash: spec_hash.to_string(),
            group: group.to_string(),
            replica: replica.parse().ok()?,
        })
    }
}

fn is_hex6(s: &str) -> bool {
    s.len() == 6 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The Kaylee unit a fleet name belongs to, if it is one of ours; cheap
/// enough for every watch event.
pub fn unit_of<'a>(fleet_name: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = fleet_name.strip_prefix(prefix)?.strip_prefix(':')?;
    let unit = rest.split(':').next()?;
    (!unit.is_empty() && unit.len() < rest.len()).then_some(unit)
}

/// `k:countly:4f9a1c:dc608f:3.service` → `k_countly_4f9a1c_dc608f_3`.
pub fn container_name(fleet_name: &str) -> String {
    let base = fleet_name.strip_suffix(".service").unwrap_or(fleet_name);
    base.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[derive(Serialize)]
struct HashInput<'a> {
    format: u32,
    name: &'a str,
    /// Scaling must not restart anything, so the count is left out; whether
    /// it was given at all (singleton or not) changes the layout and stays.
    replicated: bool,
    spec: &'a Spec,
    restart: &'a str,
    network_unit: &'a str,
}

/// 6 hex of SHA-1 over everything that shapes a replica's unit text except
/// the replica count: the spec, the restart marker and the network unit.
pub fn spec_hash(unit: &Unit, restart_marker: &str, network_unit: &str) -> String {
    let spec = unit.template();
    let input = HashInput {
        format: RENDER_FORMAT,
        name: &unit.name,
        replicated: unit.spec.replicas.is_some(),
        spec: &spec,
        restart: restart_marker,
        network_unit,
    };
    // Serializing strings, numbers and booleans cannot fail.
    let json = serde_json::to_vec(&input).unwrap_or_default();
    hex6(&json)
}

/// Deterministic conflict-group id for group `index` of `scope`: a unit
/// name (groups shared by every template of a unit with a per-host limit)
/// or a spec hash (one template's).
pub fn group_id(scope: &str, index: u32) -> String {
    hex6(format!("{scope}/{index}").as_bytes())
}

fn hex6(bytes: &[u8]) -> String {
    hex::encode(&Sha1::digest(bytes)[..3])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_foreign_names_are_refused() {
        let n = FleetName {
            prefix: "k".into(),
            unit: "countly".into(),
            spec_hash: "4f9a1c".into(),
            group: "dc608f".into(),
            replica: 3,
        };
        assert_eq!(n.to_name(), "k:countly:4f9a1c:dc608f:3.service");
        assert_eq!(FleetName::parse(&n.to_name(), "k"), Some(n));
        for foreign in [
            "k:countly:4f9a1c:dc608f:3.service.bak",
            "kk:countly:4f9a1c:dc608f:3.service",
            "x:countly:4f9a1c:dc608f:3.service",
            "k:countly:4F9A1C:dc608f:3.service",
            "k:countly:4f9a1c:dc608f:03.service",
            "k:countly:4f9a1c:dc608f:3:4.service",
            "k:countly.service",
            "etcd.service",
        ] {
            assert_eq!(FleetName::parse(foreign, "k"), None, "{foreign}");
        }
        assert_eq!(
            unit_of("k:countly:4f9a1c:dc608f:3.service", "k"),
            Some("countly")
        );
        assert_eq!(unit_of("kk:countly:x", "k"), None);
        assert_eq!(unit_of("k:countly.service", "k"), None);
    }

    #[test]
    fn container_names_are_docker_safe() {
        assert_eq!(
            container_name("k:countly:4f9a1c:dc608f:3.service"),
            "k_countly_4f9a1c_dc608f_3"
        );
    }
}
