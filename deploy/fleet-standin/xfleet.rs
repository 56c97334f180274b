//! A unit's `[X-Fleet]` requirements, read as fleet v1.0.0's `job` package
//! reads them (deprecated `X-`/`X-Condition` spellings included).

use crate::systemd::UnitFile;
use std::collections::{BTreeMap, BTreeSet};

/// Where a unit may be scheduled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requirements {
    /// `MachineID=`: only this machine (or its 8-character short id).
    pub machine_id: Option<String>,
    /// `MachineMetadata=key=value`: every key must match one of its values.
    pub metadata: BTreeMap<String, BTreeSet<String>>,
    /// `MachineOf=`: units that must be scheduled on the same machine.
    pub peers: Vec<String>,
    /// `Conflicts=`: globs over unit names that cannot share a machine.
    pub conflicts: Vec<String>,
    /// `Global=true`: every matching machine runs it.
    pub global: bool,
}

impl Requirements {
    /// The `[X-Fleet]` section of `unit`, named `name`.
    pub fn of(name: &str, unit: &UnitFile) -> Requirements {
        let values = |key: &str| -> Vec<String> {
            unit.get("X-Fleet", key)
                .map(|o| unit_printf(&o.value, name))
                .collect()
        };
        let machine_id = [
            "MachineID",
            "X-ConditionMachineID",
            "X-ConditionMachineBootID",
        ]
        .into_iter()
        .find_map(|k| values(k).into_iter().next());
        let mut metadata: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for key in ["X-ConditionMachineMetadata", "MachineMetadata"] {
            for pair in values(key) {
                // fleet splits on every `=` and keeps only exact pairs.
                let parts: Vec<&str> = pair.split('=').collect();
                if let [k, v] = parts[..]
                    && !k.is_empty()
                    && !v.is_empty()
                {
                    metadata
                        .entry(k.to_string())
                        .or_default()
                        .insert(v.to_string());
                }
            }
        }
        let mut peers = values("X-ConditionMachineOf");
        peers.extend(values("MachineOf"));
        let conflicts = ["X-Conflicts", "Conflicts"]
            .into_iter()
            .flat_map(values)
            .flat_map(|v| v.split_whitespace().map(str::to_string).collect::<Vec<_>>())
            .collect();
        // The last `Global=` wins; fleet's truthy spellings.
        let global = values("Global").last().is_some_and(|v| {
            matches!(v.to_lowercase().as_str(), "true" | "yes" | "1" | "on" | "t")
        });
        Requirements {
            machine_id,
            metadata,
            peers,
            conflicts,
            global,
        }
    }

    /// Whether a machine with this id and metadata meets `MachineID=` and
    /// `MachineMetadata=`.
    pub fn fits_machine(&self, id: &str, metadata: &BTreeMap<String, String>) -> bool {
        if let Some(want) = &self.machine_id
            && !(id == want || short_id(id) == want)
        {
            return false;
        }
        self.metadata_matches(metadata)
    }

    /// `MachineMetadata=` alone (what global units are placed by).
    pub fn metadata_matches(&self, metadata: &BTreeMap<String, String>) -> bool {
        self.metadata
            .iter()
            .all(|(k, values)| metadata.get(k).is_some_and(|v| values.contains(v)))
    }
}

/// fleet's short machine id: the first 8 characters.
fn short_id(id: &str) -> &str {
    match id.char_indices().nth(8) {
        Some((i, _)) => &id[..i],
        None => id,
    }
}

/// fleet's `unitPrintf`: `%n` the full name, `%N` without the suffix, `%p`
/// the prefix (before `@`), `%i` the instance — replaced in that order,
/// without systemd's `%%` (fleet does not know it either).
fn unit_printf(value: &str, name: &str) -> String {
    let Some((base, _suffix)) = name.rsplit_once('.') else {
        return value.to_string();
    };
    let (prefix, instance) = match base.split_once('@') {
        Some((p, i)) => (p, i),
        None => (base, ""),
    };
    value
        .replace("%n", name)
        .replace("%N", base)
        .replace("%p", prefix)
        .replace("%i", instance)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::systemd;

    fn reqs(xfleet: &str) -> Requirements {
        let text = format!("[Service]\nExecStart=/bin/true\n\n[X-Fleet]\n{xfleet}\n");
        Requirements::of("k:a:1:2:3.service", &systemd::parse(&text))
    }

    #[test]
    fn reads_kaylee_requirements() {
        let r = reqs(
            "MachineMetadata=ssd=true\nMachineMetadata=ssd=maybe\nMachineMetadata=region=eu-west-1\n\
             Conflicts=k:a:1:2:*.service\nConflicts=k:b:*.service other.service",
        );
        assert_eq!(r.metadata["ssd"].len(), 2);
        assert_eq!(
            r.conflicts,
            ["k:a:1:2:*.service", "k:b:*.service", "other.service"]
        );
        assert!(!r.global);
        let md = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(r.fits_machine("m", &md(&[("ssd", "maybe"), ("region", "eu-west-1")])));
        assert!(!r.fits_machine("m", &md(&[("ssd", "true")])));
        assert!(!r.fits_machine("m", &md(&[("ssd", "false"), ("region", "eu-west-1")])));
    }

    #[test]
    fn machine_id_global_and_odd_values() {
        let r = reqs("MachineID=0123456789abcdef\nGlobal=true\nMachineMetadata=a=b=c");
        assert!(r.global);
        assert!(r.metadata.is_empty(), "a=b=c is not a pair for fleet");
        assert!(r.fits_machine("0123456789abcdef", &BTreeMap::new()));
        assert!(!r.fits_machine("0123456789abcdee", &BTreeMap::new()));
        assert!(reqs("MachineID=01234567").fits_machine("0123456789abcdef", &BTreeMap::new()));
        assert!(!reqs("Global=false\nX-ConditionMachineOf=%p-db.service").global);
        assert_eq!(
            reqs("X-ConditionMachineOf=%p-db.service").peers,
            ["k:a:1:2:3-db.service"]
        );
    }
}
