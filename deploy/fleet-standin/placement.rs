//! What one machine holds and whether it can take a unit: fleet's
//! `AgentState` (`HasConflict`, `AbleToRun`), used by the engine to
//! schedule and by the agents to pick what they run.

use crate::glob::path_match;
use crate::xfleet::Requirements;
use std::collections::BTreeMap;

/// A machine and the units placed on it.
#[derive(Debug, Clone)]
pub struct AgentState<'a> {
    pub id: &'a str,
    pub metadata: &'a BTreeMap<String, String>,
    /// Unit name → its requirements (for its `Conflicts=`).
    pub units: BTreeMap<&'a str, &'a Requirements>,
}

impl<'a> AgentState<'a> {
    /// A machine with nothing on it.
    pub fn new(id: &'a str, metadata: &'a BTreeMap<String, String>) -> Self {
        AgentState {
            id,
            metadata,
            units: BTreeMap::new(),
        }
    }

    /// Whether a unit `name` with `conflicts` clashes with one already here:
    /// either side's `Conflicts=` glob matches the other's name.
    pub fn has_conflict(&self, name: &str, conflicts: &[String]) -> bool {
        self.units.iter().any(|(&other, req)| {
            other != name
                && (req.conflicts.iter().any(|g| path_match(g, name))
                    || conflicts.iter().any(|g| path_match(g, other)))
        })
    }

    /// fleet's `AbleToRun`: machine id, metadata, `MachineOf=` peers here,
    /// no conflict.
    pub fn able_to_run(&self, name: &str, req: &Requirements) -> bool {
        req.fits_machine(self.id, self.metadata)
            && req
                .peers
                .iter()
                .all(|p| self.units.contains_key(p.as_str()))
            && !self.has_conflict(name, &req.conflicts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conflicting(globs: &[&str]) -> Requirements {
        Requirements {
            conflicts: globs.iter().map(|g| g.to_string()).collect(),
            ..Requirements::default()
        }
    }

    #[test]
    fn conflicts_apply_both_ways() {
        let md = BTreeMap::new();
        let holder = conflicting(&["k:a:*.service"]);
        let mut agent = AgentState::new("m1", &md);
        agent.units.insert("k:a:1.service", &holder);
        // Its glob names the newcomer.
        assert!(agent.has_conflict("k:a:2.service", &[]));
        // The newcomer's glob names it.
        assert!(agent.has_conflict("other.service", &["k:a:1.*".into()]));
        assert!(!agent.has_conflict("k:b:1.service", &["k:b:*".into()]));
        // A unit never conflicts with itself.
        assert!(!agent.has_conflict("k:a:1.service", &["k:a:*.service".into()]));
    }

    #[test]
    fn peers_must_be_here() {
        let md = BTreeMap::new();
        let free = Requirements::default();
        let mut agent = AgentState::new("m1", &md);
        let needs_db = Requirements {
            peers: vec!["db.service".into()],
            ..Requirements::default()
        };
        assert!(!agent.able_to_run("app.service", &needs_db));
        agent.units.insert("db.service", &free);
        assert!(agent.able_to_run("app.service", &needs_db));
    }
}
