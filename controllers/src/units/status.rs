//! `/kaylee/status/<name>`: what the leader last saw of a unit, for `ls`,
//! `status` and `--wait`. No timestamps, so an unchanged unit never causes a
//! write.

use super::plan::{ObservedJob, Phase, Plan};
use serde::{Deserialize, Serialize};

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
    pub desired: u32,
    /// Fleet units that exist, of any template.
    pub created: u32,
    /// Of those, on the current template.
    pub updated: u32,
    /// Fleet units reported running (a global unit counts machines).
    pub running: u32,
    pub phase: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl UnitStatus {
    pub fn new(
        spec_hash: &str,
        spec_revision: i64,
        desired: u32,
        observed: &[ObservedJob],
        plan: &Plan,
    ) -> Self {
        let count =
            |f: &dyn Fn(&ObservedJob) -> bool| observed.iter().filter(|o| f(o)).count() as u32;
        UnitStatus {
            spec_hash: spec_hash.to_string(),
            spec_revision,
            restart_revision: 0,
            desired,
            created: observed.len() as u32,
            updated: count(&|o| o.name.spec_hash == spec_hash),
            running: observed.iter().map(|o| o.running_on).sum(),
            phase: phase_name(plan.phase),
            waiting_for: plan.waiting_for.clone(),
            error: None,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Converged and every replica running: what `--wait` waits for.
    pub fn is_done(&self) -> bool {
        self.phase == phase_name(Phase::Converged)
            && self.running >= self.desired
            && self.created == self.desired
    }
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

pub fn phase_name(phase: Phase) -> String {
    serde_json::to_value(phase)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}
