//! What every unit's availability depends on beyond its own jobs: the
//! machines fleet's agents keep alive in `machines/<id>/object`, and the
//! machines whose Kaylee server registers containers.

use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};

/// One live fleet machine, as its agent describes itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MachineInfo {
    /// fleet's machine metadata (`--metadata` of fleetd), matched against a
    /// unit's `MachineMetadata=`.
    pub metadata: BTreeMap<String, String>,
    /// The address fleet knows the machine by (may be empty).
    pub public_ip: String,
}

/// The cluster as the leader last saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cluster {
    /// Machines present in fleet's `machines/` (their entries carry a TTL:
    /// a dead machine's disappears, while its `states/` may linger).
    pub machines: BTreeMap<String, MachineInfo>,
    /// Machines where a Kaylee server registers containers
    /// (`<prefix>/registrators/<machine>`). Elsewhere fleet's word that a
    /// unit runs is all there is.
    pub registrators: BTreeSet<String>,
}

/// `machines/<id>/object` as fleet v1.0.0 writes it (`machine.MachineState`:
/// `{"ID":…,"PublicIP":…,"Metadata":{…},"Capabilities":…,"Version":…}`).
#[derive(Deserialize)]
struct MachineObject {
    #[serde(rename = "PublicIP", default)]
    public_ip: Option<String>,
    #[serde(rename = "Metadata", default)]
    metadata: Option<BTreeMap<String, String>>,
}

/// Reads a machine object; `None` when it is not one.
pub fn parse_machine(value: &[u8]) -> Option<MachineInfo> {
    let m: MachineObject = serde_json::from_slice(value).ok()?;
    Some(MachineInfo {
        metadata: m.metadata.unwrap_or_default(),
        public_ip: m.public_ip.unwrap_or_default(),
    })
}

impl Cluster {
    /// Whether `machine` (a fleet machine id) is in fleet's `machines/`,
    /// i.e. its agent is alive.
    pub fn is_live(&self, machine: &str) -> bool {
        self.machines.contains_key(machine)
    }

    /// Whether containers on `machine` are registered by a Kaylee server.
    pub fn registers(&self, machine: &str) -> bool {
        self.registrators.contains(machine)
    }

    /// The live machines a unit with these constraints may run on, as
    /// fleet's scheduler decides it: every `key=value` of `metadata` must
    /// hold, several values of one key being alternatives (fleet's
    /// `MachineMetadata`), and `machine_id`, when given, names the machine.
    pub fn matching<'a>(&'a self, metadata: &[String], machine_id: Option<&str>) -> Vec<&'a str> {
        let mut wanted: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for m in metadata {
            if let Some((k, v)) = m.split_once('=') {
                wanted.entry(k).or_default().push(v);
            }
        }
        self.machines
            .iter()
            .filter(|(id, _)| machine_id.is_none_or(|want| want == id.as_str()))
            .filter(|(_, info)| {
                wanted.iter().all(|(k, values)| {
                    info.metadata
                        .get(*k)
                        .is_some_and(|have| values.contains(&have.as_str()))
                })
            })
            .map(|(id, _)| id.as_str())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> Cluster {
        let machine = |pairs: &[(&str, &str)]| MachineInfo {
            metadata: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            public_ip: String::new(),
        };
        Cluster {
            machines: BTreeMap::from([
                ("m1".into(), machine(&[("ssd", "true"), ("zone", "a")])),
                ("m2".into(), machine(&[("ssd", "false"), ("zone", "b")])),
                ("m3".into(), machine(&[])),
            ]),
            registrators: BTreeSet::new(),
        }
    }

    #[test]
    fn metadata_matches_like_fleet() {
        let c = cluster();
        assert_eq!(c.matching(&[], None), ["m1", "m2", "m3"]);
        assert_eq!(c.matching(&["ssd=true".into()], None), ["m1"]);
        assert_eq!(
            c.matching(&["zone=a".into(), "zone=b".into()], None),
            ["m1", "m2"],
            "values of one key are alternatives"
        );
        assert!(
            c.matching(&["ssd=true".into(), "zone=b".into()], None)
                .is_empty(),
            "every key must hold"
        );
        assert_eq!(c.matching(&[], Some("m3")), ["m3"]);
        assert!(c.matching(&[], Some("gone")).is_empty());
    }

    #[test]
    fn machine_objects_parse_as_fleet_writes_them() {
        let m = parse_machine(
            br#"{"ID":"m1","PublicIP":"10.0.0.5","Metadata":{"ssd":"true"},"Capabilities":null,"Version":"1.0.0"}"#,
        )
        .expect("a machine");
        assert_eq!(m.public_ip, "10.0.0.5");
        assert_eq!(m.metadata.get("ssd").map(String::as_str), Some("true"));
        let bare = parse_machine(br#"{"ID":"m2","Metadata":null}"#).expect("a machine");
        assert!(bare.metadata.is_empty());
        assert!(parse_machine(b"not json").is_none());
    }
}
