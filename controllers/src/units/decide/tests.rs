use super::*;
use crate::fleet::{RenderOptions, render};
use crate::spec::{self, Layout, Unit};
use crate::units::availability::{Health, Placement, Registration};
use crate::units::cluster::MachineInfo;
use std::collections::{BTreeMap, BTreeSet};

const DEADLINE: Duration = Duration::from_secs(60);
const GRACE: Duration = Duration::from_secs(10);

fn unit_with(replicas: Option<u32>, image: &str, extra: serde_json::Value) -> Unit {
    let mut doc =
        serde_json::json!({"name": "web", "spec": {"image": image, "maxReplicasPerHost": 2}});
    match replicas {
        Some(n) => doc["spec"]["replicas"] = n.into(),
        None => {
            doc["spec"]
                .as_object_mut()
                .map(|s| s.remove("maxReplicasPerHost"));
        }
    }
    if let (Some(spec), Some(extra)) = (doc["spec"].as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    spec::from_json(&doc.to_string(), "t").unwrap()
}

fn unit(replicas: Option<u32>, image: &str) -> Unit {
    unit_with(replicas, image, serde_json::json!({}))
}

fn rendered(u: &Unit) -> Rendered {
    render(u, "", &RenderOptions::default())
}

fn cluster() -> Cluster {
    Cluster {
        machines: ["m1", "m2", "m3"]
            .iter()
            .map(|m| (m.to_string(), MachineInfo::default()))
            .collect::<BTreeMap<_, _>>(),
        registrators: BTreeSet::new(),
    }
}

/// Fleet units as observed once created and serving for a while.
fn running(r: &Rendered, replicas: &[u32]) -> Vec<ObservedJob> {
    r.units
        .iter()
        .filter(|u| replicas.contains(&u.name.replica))
        .map(|u| ObservedJob {
            name: u.name.clone(),
            unit_hash: u.hash,
            stopped: false,
            age: Duration::from_secs(600),
            target: Some("m1".into()),
            placements: vec![Placement {
                machine: "m1".into(),
                active: "active".into(),
                sub: "running".into(),
                current_text: true,
                live: true,
                registration: Registration::Registered(Health::None),
                ready_for: Some(Duration::from_secs(600)),
            }],
        })
        .collect()
}

/// Like [`running`], but fleet's agent keeps failing to start them.
fn failing(r: &Rendered, replicas: &[u32]) -> Vec<ObservedJob> {
    running(r, replicas)
        .into_iter()
        .map(|mut o| {
            o.placements[0].active = "activating".into();
            o.placements[0].sub = "auto-restart".into();
            o.placements[0].ready_for = None;
            o
        })
        .collect()
}

fn target<'a>(u: &'a Unit, r: &'a Rendered) -> Target<'a> {
    Target {
        rendered: r,
        policy: u.rollout(DEADLINE),
        constraints: Constraints {
            layout: u.layout(),
            metadata: &u.spec.machine,
            machine_id: u.spec.machine_id.as_deref(),
            conflicts: true,
            network_unit: "",
        },
    }
}

fn facts<'a>(jobs: &'a [ObservedJob], cluster: &'a Cluster, progress: Progress) -> Facts<'a> {
    Facts {
        jobs,
        cluster,
        progress,
        schedule_grace: GRACE,
    }
}

/// Decides for `u` on `jobs`, `since` into its rollout, not yet complete.
fn decide_at(u: &Unit, r: &Rendered, jobs: &[ObservedJob], since: Duration) -> Decision {
    let c = cluster();
    let progress = Progress {
        since,
        complete: false,
    };
    decide(Desired::Present(target(u, r)), &facts(jobs, &c, progress))
}

fn now(u: &Unit, r: &Rendered, jobs: &[ObservedJob]) -> Decision {
    decide_at(u, r, jobs, Duration::ZERO)
}

fn replicas(units: &[FleetUnit]) -> Vec<u32> {
    units.iter().map(|u| u.name.replica).collect()
}

fn names_of(r: &Rendered, replicas: &[u32]) -> Vec<FleetName> {
    replicas
        .iter()
        .map(|i| r.units[*i as usize - 1].name.clone())
        .collect()
}

#[test]
fn cold_start_creates_every_replica() {
    let u = unit(Some(4), "a");
    let r = rendered(&u);
    let d = now(&u, &r, &[]);
    assert_eq!(replicas(&d.create), [1, 2, 3, 4]);
    assert!(d.destroy.is_empty());
    assert_eq!(d.phase, Phase::Creating);
    assert_eq!(d.condition, Some(Condition::Progressing));
    assert_eq!(
        d.requeue_after,
        Some(DEADLINE),
        "the deadline is the next look"
    );
}

#[test]
fn a_serving_unit_is_available_and_plans_nothing() {
    let u = unit(Some(4), "a");
    let r = rendered(&u);
    let d = now(&u, &r, &running(&r, &[1, 2, 3, 4]));
    assert!(d.is_empty());
    assert_eq!(d.phase, Phase::Converged);
    assert_eq!(d.condition, Some(Condition::Available));
    assert_eq!((d.desired, d.available, d.running), (4, 4, 4));
    assert!(d.unavailable.is_empty());
    assert_eq!(d.requeue_after, None);
}

#[test]
fn scaling_touches_only_the_difference() {
    let four = unit(Some(4), "a");
    let six = unit(Some(6), "a");
    let (r4, r6) = (rendered(&four), rendered(&six));
    let d = now(&six, &r6, &running(&r4, &[1, 2, 3, 4]));
    assert_eq!(replicas(&d.create), [5, 6]);
    assert!(d.destroy.is_empty());
    assert_eq!(d.phase, Phase::Scaling);

    let three = unit(Some(3), "a");
    let r3 = rendered(&three);
    let d = now(&three, &r3, &running(&r6, &[1, 2, 3, 4, 5, 6]));
    assert!(d.create.is_empty());
    assert_eq!(d.destroy, names_of(&r6, &[4, 5, 6]));
}

#[test]
fn an_update_surges_one_new_unit_and_waits_until_it_is_available() {
    let old_u = unit(Some(3), "a");
    let new_u = unit(Some(3), "b");
    let (old, new) = (rendered(&old_u), rendered(&new_u));
    let mut jobs = running(&old, &[1, 2, 3]);
    let d = now(&new_u, &new, &jobs);
    assert_eq!(replicas(&d.create), [1]);
    assert!(d.destroy.is_empty(), "never fewer available than asked");
    assert_eq!(d.phase, Phase::RollingUpdate);

    // Created and running but not yet registered: still not available.
    let mut fresh = running(&new, &[1]).remove(0);
    fresh.placements[0].registration = Registration::Missing;
    fresh.placements[0].ready_for = None;
    jobs.push(fresh);
    let d = now(&new_u, &new, &jobs);
    assert!(d.is_empty());
    assert_eq!(d.waiting_for, Some(new.units[0].name.to_name()));
    assert_eq!(d.unavailable[0].reason, "not registered on m1");

    // Available: an old unit goes (of the same index, so the same
    // conflict group, first) and the surge moves on to the next new one.
    let last = jobs.len() - 1;
    jobs[last] = running(&new, &[1]).remove(0);
    let d = now(&new_u, &new, &jobs);
    assert_eq!(d.destroy, names_of(&old, &[1]));
    assert_eq!(replicas(&d.create), [2]);
}

#[test]
fn a_broken_version_never_costs_an_old_replica() {
    let old_u = unit(Some(3), "good:1");
    let bad_u = unit(Some(3), "bad:1");
    let (old, bad) = (rendered(&old_u), rendered(&bad_u));
    let mut jobs = running(&old, &[1, 2, 3]);
    jobs.extend(failing(&bad, &[1]));
    for since in [Duration::ZERO, DEADLINE / 2, DEADLINE, DEADLINE * 100] {
        let d = decide_at(&bad_u, &bad, &jobs, since);
        assert!(d.is_empty(), "{since:?}: {d:?}");
        assert_eq!(d.available, 3, "the old replicas still serve");
        let expected = if since < DEADLINE {
            Condition::Progressing
        } else {
            Condition::Failed
        };
        assert_eq!(d.condition, Some(expected), "{since:?}");
        assert!(!d.rollback, "onFailure defaults to pause");
        assert_eq!(
            d.unavailable[0].reason, "activating/auto-restart on m1",
            "{:?}",
            d.unavailable
        );
    }
    let rollback = unit_with(
        Some(3),
        "bad:1",
        serde_json::json!({"onFailure": "rollback"}),
    );
    let d = decide_at(&rollback, &bad, &jobs, DEADLINE);
    assert!(d.rollback);
    assert!(d.is_empty());
}

#[test]
fn a_stopped_rollout_resumes_when_a_new_replica_becomes_available() {
    let old_u = unit(Some(2), "a");
    let new_u = unit(Some(2), "b");
    let (old, new) = (rendered(&old_u), rendered(&new_u));
    let mut jobs = running(&old, &[1, 2]);
    jobs.extend(running(&new, &[1]));
    // The caller resets `since` when a replica becomes available; even a
    // stale clock must not keep an available replica from counting.
    let d = decide_at(&new_u, &new, &jobs, Duration::ZERO);
    assert_eq!(d.destroy, names_of(&old, &[1]));
}

#[test]
fn max_surge_starts_that_many_new_replicas_at_once() {
    let old_u = unit(Some(4), "a");
    let new_u = unit_with(Some(4), "b", serde_json::json!({"maxSurge": 2}));
    let (old, new) = (rendered(&old_u), rendered(&new_u));
    let d = now(&new_u, &new, &running(&old, &[1, 2, 3, 4]));
    assert_eq!(replicas(&d.create), [1, 2]);
    assert!(d.destroy.is_empty());
}

#[test]
fn stop_first_replaces_one_replica_at_a_time_in_place() {
    let old_u = unit(Some(3), "a");
    let new_u = unit_with(
        Some(3),
        "b",
        serde_json::json!({"updateOrder": "stop-first"}),
    );
    let (old, new) = (rendered(&old_u), rendered(&new_u));
    let mut jobs = running(&old, &[1, 2, 3]);
    let d = now(&new_u, &new, &jobs);
    assert_eq!(d.destroy, names_of(&old, &[3]), "an old one goes first");
    assert_eq!(replicas(&d.create), [3], "its replacement, same group");
    assert_eq!(
        old.units[2].name.group, new.units[2].name.group,
        "conflict groups are shared across templates"
    );

    jobs.retain(|o| o.name != old.units[2].name);
    jobs.extend(failing(&new, &[3]));
    let d = now(&new_u, &new, &jobs);
    assert!(d.is_empty(), "the replacement is not available yet: {d:?}");

    let last = jobs.len() - 1;
    jobs[last] = running(&new, &[3]).remove(0);
    let d = now(&new_u, &new, &jobs);
    assert_eq!(d.destroy, names_of(&old, &[2]));
    assert_eq!(replicas(&d.create), [2]);
}

#[test]
fn unavailable_old_replicas_go_before_available_ones() {
    let old_u = unit(Some(3), "a");
    let new_u = unit(Some(3), "b");
    let (old, new) = (rendered(&old_u), rendered(&new_u));
    let mut jobs = running(&old, &[1, 3]);
    jobs.extend(failing(&old, &[2]));
    jobs.extend(running(&new, &[1]));
    let d = now(&new_u, &new, &jobs);
    assert_eq!(d.destroy, names_of(&old, &[2]));
}

#[test]
fn stopped_old_units_are_replaced_first() {
    let old_u = unit(Some(3), "a");
    let new_u = unit(Some(3), "b");
    let (old, new) = (rendered(&old_u), rendered(&new_u));
    let mut jobs = running(&old, &[1, 2, 3]);
    jobs[1].stopped = true;
    jobs.extend(running(&new, &[1]));
    let d = now(&new_u, &new, &jobs);
    assert_eq!(d.destroy, names_of(&old, &[2]));
}

#[test]
fn a_rollout_ends_with_the_old_units_gone() {
    let old_u = unit(Some(2), "a");
    let new_u = unit(Some(2), "b");
    let (old, new) = (rendered(&old_u), rendered(&new_u));
    let mut jobs = running(&new, &[1, 2]);
    jobs.extend(running(&old, &[1]));
    let d = now(&new_u, &new, &jobs);
    assert_eq!(d.destroy, names_of(&old, &[1]));
    assert!(d.create.is_empty());
    let after = d.applied_to(&jobs);
    let done = now(&new_u, &new, &after);
    assert!(done.is_empty());
    assert_eq!(done.condition, Some(Condition::Available));
}

#[test]
fn a_singleton_is_destroyed_before_its_replacement_is_created() {
    let old_u = unit(None, "a");
    let new_u = unit(None, "b");
    let (old, new) = (rendered(&old_u), rendered(&new_u));
    let d = now(&new_u, &new, &running(&old, &[1]));
    assert_eq!(d.destroy, names_of(&old, &[1]));
    assert!(d.create.is_empty());
    assert_eq!(d.phase, Phase::Replacing);
    let d = now(&new_u, &new, &[]);
    assert_eq!(replicas(&d.create), [1]);
}

#[test]
fn a_deleted_unit_loses_every_fleet_unit() {
    let old_u = unit(Some(2), "a");
    let new_u = unit(Some(2), "b");
    let (old, new) = (rendered(&old_u), rendered(&new_u));
    let mut jobs = running(&old, &[1, 2]);
    jobs.extend(running(&new, &[1]));
    let c = cluster();
    let d = decide(Desired::Absent, &facts(&jobs, &c, Progress::default()));
    assert_eq!(d.destroy.len(), 3);
    assert_eq!(d.phase, Phase::Deleting);
    assert_eq!(d.condition, None);
    let d = decide(Desired::Absent, &facts(&[], &c, Progress::default()));
    assert_eq!(d.phase, Phase::Deleted);
}

#[test]
fn an_invalid_unit_touches_nothing() {
    let u = unit(Some(2), "a");
    let r = rendered(&u);
    let jobs = running(&r, &[1, 2]);
    let c = cluster();
    let d = decide(Desired::Invalid, &facts(&jobs, &c, Progress::default()));
    assert!(d.is_empty());
    assert_eq!(d.phase, Phase::Invalid);
}

#[test]
fn a_unit_edited_in_fleet_is_replaced_in_two_steps() {
    let u = unit(Some(2), "a");
    let r = rendered(&u);
    let mut jobs = running(&r, &[1, 2]);
    jobs[0].unit_hash = [0; 20];
    let d = now(&u, &r, &jobs);
    assert_eq!(d.destroy, names_of(&r, &[1]));
    assert!(
        d.create.is_empty(),
        "one txn cannot delete and re-put a job"
    );
    let d = now(&u, &r, &jobs[1..]);
    assert_eq!(replicas(&d.create), [1]);
}

#[test]
fn a_unit_stopped_by_hand_is_launched_again() {
    let u = unit(Some(3), "a");
    let r = rendered(&u);
    let mut jobs = running(&r, &[1, 2, 3]);
    jobs[1].stopped = true;
    let d = now(&u, &r, &jobs);
    assert_eq!(replicas(&d.create), [2], "its records written again");
    assert!(d.destroy.is_empty());
    assert_eq!(d.phase, Phase::Relaunching);
    let after = d.applied_to(&jobs);
    assert_eq!(after.len(), 3, "relaunching adds no job");
    assert!(after.iter().all(|o| !o.stopped));
    assert!(now(&u, &r, &after).is_empty());
}

#[test]
fn a_stopped_unit_of_an_old_template_is_not_launched_again() {
    let old_u = unit(Some(2), "a");
    let new_u = unit(Some(2), "b");
    let (old, new) = (rendered(&old_u), rendered(&new_u));
    let mut jobs = running(&old, &[1, 2]);
    jobs[0].stopped = true;
    let d = now(&new_u, &new, &jobs);
    assert!(
        d.create.iter().all(|u| u.name.spec_hash == new.spec_hash),
        "only the new template is created: {:?}",
        replicas(&d.create)
    );
    assert_eq!(d.phase, Phase::RollingUpdate);
}

#[test]
fn conditions_tell_serving_from_degraded_from_failed() {
    let u = unit(Some(3), "a");
    let r = rendered(&u);
    let c = cluster();
    let complete = Progress {
        since: DEADLINE * 10,
        complete: true,
    };
    let decide_on = |jobs: &[ObservedJob], progress| {
        decide(Desired::Present(target(&u, &r)), &facts(jobs, &c, progress))
    };
    let mut jobs = running(&r, &[1, 2]);
    jobs.extend(failing(&r, &[3]));
    let d = decide_on(&jobs, complete);
    assert_eq!(d.condition, Some(Condition::Degraded));
    assert_eq!(d.unavailable.len(), 1);
    let all_down = failing(&r, &[1, 2, 3]);
    assert_eq!(
        decide_on(&all_down, complete).condition,
        Some(Condition::Failed)
    );
    // Never served: progressing until the deadline, then failed.
    let young = Progress {
        since: Duration::from_secs(5),
        complete: false,
    };
    let d = decide_on(&all_down, young);
    assert_eq!(d.condition, Some(Condition::Progressing));
    assert_eq!(d.requeue_after, Some(DEADLINE - Duration::from_secs(5)));
    let late = Progress {
        since: DEADLINE,
        complete: false,
    };
    assert_eq!(
        decide_on(&all_down, late).condition,
        Some(Condition::Failed)
    );
}

#[test]
fn no_machine_means_no_replica_serves_and_says_why() {
    let u = unit(Some(2), "a");
    let r = rendered(&u);
    let empty = Cluster::default();
    let jobs = Decision {
        create: r.units.clone(),
        ..Decision::default()
    }
    .applied_to(&[]);
    let d = decide(
        Desired::Present(target(&u, &r)),
        &facts(&jobs, &empty, Progress::default()),
    );
    assert_eq!((d.desired, d.available), (2, 0));
    assert_eq!(d.unavailable.len(), 2);
    assert!(
        d.unavailable
            .iter()
            .all(|x| x.reason == "no fleet machine is registered in this cluster")
    );
}

#[test]
fn a_global_unit_wants_one_replica_per_matching_machine() {
    let u = spec::from_json(
        r#"{"name":"agent","spec":{"image":"a","global":true}}"#,
        "t",
    )
    .unwrap();
    assert_eq!(u.layout(), Layout::Global);
    let r = rendered(&u);
    let mut job = running(&r, &[1]).remove(0);
    job.target = None;
    job.placements = ["m1", "m2", "m3"]
        .iter()
        .map(|m| Placement {
            machine: m.to_string(),
            ..job.placements[0].clone()
        })
        .collect();
    let d = now(&u, &r, std::slice::from_ref(&job));
    assert_eq!((d.desired, d.available), (3, 3));
    assert_eq!(d.condition, Some(Condition::Available));

    // m3's entry expired: its lingering state no longer counts.
    let mut two = cluster();
    two.machines.remove("m3");
    job.placements[2].live = false;
    let d = decide(
        Desired::Present(target(&u, &r)),
        &facts(std::slice::from_ref(&job), &two, Progress::default()),
    );
    assert_eq!((d.desired, d.available), (2, 2));
    assert_eq!(d.condition, Some(Condition::Available));
}
