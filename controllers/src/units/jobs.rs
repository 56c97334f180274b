//! The jobs cache: fleet's `job/<name>/…` keys of Kaylee's units, kept
//! lean. It holds each job's `object` and `target`, and its `target-state`
//! only while that is not `launched` (stopped or unloaded by hand, to be
//! launched again): caching every job's target-state would double the cache
//! for what is nearly always the value Kaylee wrote. So — and this module
//! is the one place that says so — a cached target-state means *stopped*.

use crate::fleet::records::TARGET_STATE_LAUNCHED;
use crate::keys::{FleetKeys, JobField};
use crate::runtime::Cache;
use std::sync::Arc;

/// A cache of the job keys of Kaylee's units, indexed by unit name.
pub fn cache(fleet: &FleetKeys) -> Arc<Cache> {
    let (names, values) = (fleet.clone(), fleet.clone());
    Cache::keeping(
        move |k| match names.parse_job(k) {
            Some((_, JobField::Object | JobField::TargetState | JobField::Target)) => {
                names.unit_of_key(k).map(str::to_string)
            }
            _ => None,
        },
        move |k, v| {
            !matches!(values.parse_job(k), Some((_, JobField::TargetState)))
                || v != TARGET_STATE_LAUNCHED.as_bytes()
        },
    )
}

/// Whether a job key with `field` that the cache holds says the job is
/// stopped.
pub fn means_stopped(field: JobField) -> bool {
    field == JobField::TargetState
}

/// Whether the cache shows job `fleet_name` launched (its target-state
/// gone from the cache), as writing its records again makes it.
pub fn launched(cache: &Cache, fleet: &FleetKeys, fleet_name: &str) -> bool {
    cache.get(&fleet.target_state_of(fleet_name)).is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_target_state_other_than_launched_is_kept() {
        let fleet = FleetKeys::new("/f/", "k");
        let c = cache(&fleet);
        let name = "k:web:aaaaaa:bbbbbb:1.service";
        assert!(c.wants(&fleet.object_of(name), b"{}"));
        assert!(!c.wants(&fleet.target_state_of(name), b"launched"));
        assert!(c.wants(&fleet.target_state_of(name), b"loaded"));
        assert!(launched(&c, &fleet, name));
        assert!(means_stopped(JobField::TargetState));
        assert!(!means_stopped(JobField::Object));
    }
}
