//! `/kaylee/status/<name>`: what the leader last saw of a unit, for `ls`,
//! `status` and `--wait`. No timestamps or counters of time, so an
//! unchanged unit never causes a write.

use super::availability::{ObservedJob, Unavailable};
use super::decide::{Condition, Decision, Phase};
use serde::{Deserialize, Serialize};

/// At most this many unavailable replicas are listed (the rest are
/// counted in `moreUnavailable`): a status must stay a small value.
pub const MAX_UNAVAILABLE_LISTED: usize = 20;

/// The JSON value of `/kaylee/status/<name>` (camelCase fields; the
/// optional ones are left out while empty, zero or false): written by the
/// leader through the same fenced writer as the unit's fleet writes, and
/// only when it changed; read by the CLI.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnitStatus {
    /// Template hash the unit is rolling to (empty while invalid).
    pub spec_hash: String,
    /// Revision of `/kaylee/units/<name>` this status answers.
    pub spec_revision: i64,
    /// Revision of `/kaylee/restarts/<name>` this status answers (0: never
    /// restarted), so `kaylee restart --wait` can tell an old status apart.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub restart_revision: i64,
    /// The history revision (`kaylee history`) of the spec; 0 while not
    /// recorded.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub revision: u64,
    /// Replicas asked for (a global unit: live machines that match).
    pub desired: u32,
    /// Fleet units that exist, of any template.
    pub created: u32,
    /// Of those, on the current template.
    pub updated: u32,
    /// Replicas fleet reports running on live machines.
    pub running: u32,
    /// Replicas that serve (see the README's "Availability").
    #[serde(default)]
    pub available: u32,
    /// Whether the unit serves; absent for an invalid unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<Condition>,
    /// The current revision has been fully available at least once.
    #[serde(default, skip_serializing_if = "is_false")]
    pub complete: bool,
    /// What Kaylee is writing.
    #[serde(default)]
    pub phase: Phase,
    /// During a rolling update, the lowest-numbered new fleet unit that is
    /// not available yet: what the next step waits for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<String>,
    /// Replicas that do not serve, with why (at most
    /// [`MAX_UNAVAILABLE_LISTED`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unavailable: Vec<Unavailable>,
    /// Unavailable replicas left off the list.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub more_unavailable: u32,
    /// Set while the spec is one the leader put back after a failed
    /// rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back: Option<RolledBack>,
    /// Why `/kaylee/units/<name>` does not parse or validate (the unit is
    /// then [`Phase::Invalid`] and nothing is written to fleet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A rollback the leader made (`onFailure: rollback`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolledBack {
    /// The history revision whose rollout failed.
    pub from_revision: u64,
    /// The history revision put back.
    pub to_revision: u64,
    /// `/kaylee/units/<name>`'s etcd revision that failed (what `run
    /// --wait` waited for).
    pub failed_spec_revision: i64,
    /// The etcd revision of the rollback's own write of
    /// `/kaylee/units/<name>`.
    pub spec_revision: i64,
    /// Why the rollout failed, with its unavailable replicas.
    pub reason: String,
}

impl UnitStatus {
    /// The status of a unit whose template hash is `spec_hash` (empty
    /// when invalid), with `jobs` as the decision's writes leave them.
    pub fn new(spec_hash: &str, spec_revision: i64, jobs: &[ObservedJob], d: &Decision) -> Self {
        let mut unavailable = d.unavailable.clone();
        let more = unavailable.len().saturating_sub(MAX_UNAVAILABLE_LISTED);
        unavailable.truncate(MAX_UNAVAILABLE_LISTED);
        UnitStatus {
            spec_hash: spec_hash.to_string(),
            spec_revision,
            restart_revision: 0,
            revision: 0,
            desired: d.desired,
            created: jobs.len() as u32,
            updated: jobs
                .iter()
                .filter(|o| !spec_hash.is_empty() && o.name.spec_hash == spec_hash)
                .count() as u32,
            running: d.running,
            available: d.available,
            condition: d.condition,
            complete: false,
            phase: d.phase,
            waiting_for: d.waiting_for.clone(),
            unavailable,
            more_unavailable: more as u32,
            rolled_back: None,
            error: None,
        }
    }

    /// The value as stored: compact JSON, one line.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The current revision serves every desired replica and nothing is
    /// left to write: what `--wait` waits for.
    pub fn is_done(&self) -> bool {
        self.condition == Some(Condition::Available) && self.phase == Phase::Converged
    }
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The word a phase is written as (`rolling-update`).
pub fn phase_name(phase: Phase) -> String {
    serde_json::to_value(phase)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The word a condition is written as (`available`).
pub fn condition_name(condition: Condition) -> String {
    serde_json::to_value(condition)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}
