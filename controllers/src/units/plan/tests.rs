use super::*;
use crate::fleet::{RenderOptions, render};
use crate::spec::{self, Unit};

const TIMEOUT: Duration = Duration::from_secs(60);

fn unit(replicas: Option<u32>, image: &str) -> Unit {
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
    spec::from_json(&doc.to_string(), "t").unwrap()
}

fn rendered(u: &Unit) -> Rendered {
    render(u, "", &RenderOptions::default())
}

/// Fleet units as they would be observed after being created and run.
fn running(r: &Rendered, replicas: &[u32]) -> Vec<ObservedJob> {
    r.units
        .iter()
        .filter(|u| replicas.contains(&u.name.replica))
        .map(|u| ObservedJob {
            name: u.name.clone(),
            unit_hash: u.hash,
            running_on: 1,
            age: Duration::from_secs(600),
            running_for: Some(Duration::from_secs(600)),
            stopped: false,
        })
        .collect()
}

fn present(r: &Rendered) -> Desired<'_> {
    Desired::Present {
        rendered: r,
        startup_delay: Duration::ZERO,
    }
}

fn names(units: &[FleetUnit]) -> Vec<u32> {
    units.iter().map(|u| u.name.replica).collect()
}

#[test]
fn cold_start_creates_every_replica() {
    let r = rendered(&unit(Some(4), "a"));
    let p = plan(present(&r), &[], TIMEOUT);
    assert_eq!(names(&p.create), [1, 2, 3, 4]);
    assert!(p.destroy.is_empty());
    assert_eq!(p.phase, Phase::Creating);
}

#[test]
fn a_converged_unit_plans_nothing() {
    let r = rendered(&unit(Some(4), "a"));
    let p = plan(present(&r), &running(&r, &[1, 2, 3, 4]), TIMEOUT);
    assert!(p.is_empty());
    assert_eq!(p.phase, Phase::Converged);
    assert_eq!(p.requeue_after, None);
}

#[test]
fn scaling_touches_only_the_difference() {
    let four = rendered(&unit(Some(4), "a"));
    let six = rendered(&unit(Some(6), "a"));
    let p = plan(present(&six), &running(&four, &[1, 2, 3, 4]), TIMEOUT);
    assert_eq!(names(&p.create), [5, 6]);
    assert!(p.destroy.is_empty());
    assert_eq!(p.phase, Phase::Scaling);

    let three = rendered(&unit(Some(3), "a"));
    let p = plan(
        present(&three),
        &running(&six, &[1, 2, 3, 4, 5, 6]),
        TIMEOUT,
    );
    assert!(p.create.is_empty());
    let gone: Vec<String> = six.units[3..].iter().map(|u| u.name.to_name()).collect();
    assert_eq!(p.destroy, gone);
}

#[test]
fn an_update_surges_one_new_unit_then_waits_for_it() {
    let old = rendered(&unit(Some(3), "a"));
    let new = rendered(&unit(Some(3), "b"));
    let mut observed = running(&old, &[1, 2, 3]);
    let p = plan(present(&new), &observed, TIMEOUT);
    assert_eq!(names(&p.create), [1]);
    assert!(p.destroy.is_empty(), "never fewer running than asked");
    assert_eq!(p.phase, Phase::RollingUpdate);

    // Created, not running yet: wait (until the start timeout at most).
    observed.push(ObservedJob {
        running_on: 0,
        age: Duration::from_secs(5),
        running_for: None,
        ..running(&new, &[1]).remove(0)
    });
    let p = plan(present(&new), &observed, TIMEOUT);
    assert!(p.is_empty());
    assert_eq!(p.requeue_after, Some(Duration::from_secs(55)));
    assert_eq!(p.waiting_for, Some(new.units[0].name.to_name()));

    // Running: one old unit goes, the highest replica first.
    let last = observed.len() - 1;
    observed[last].running_on = 1;
    observed[last].running_for = Some(Duration::ZERO);
    let p = plan(present(&new), &observed, TIMEOUT);
    assert!(p.create.is_empty());
    assert_eq!(p.destroy, [old.units[2].name.to_name()]);

    // With the old one gone, the next new one comes.
    observed.retain(|o| o.name != old.units[2].name);
    let p = plan(present(&new), &observed, TIMEOUT);
    assert_eq!(names(&p.create), [2]);
    assert!(p.destroy.is_empty());
}

#[test]
fn stopped_old_units_are_replaced_first() {
    let old = rendered(&unit(Some(3), "a"));
    let new = rendered(&unit(Some(3), "b"));
    let mut observed = running(&old, &[1, 2, 3]);
    observed[0].running_on = 0;
    observed.extend(running(&new, &[1]));
    let p = plan(present(&new), &observed, TIMEOUT);
    assert_eq!(p.destroy, [old.units[0].name.to_name()]);
}

#[test]
fn the_start_timeout_and_startup_delay_gate_each_step() {
    let old = rendered(&unit(Some(2), "a"));
    let new = rendered(&unit(Some(2), "b"));
    let mut observed = running(&old, &[1, 2]);
    let mut fresh = running(&new, &[1]).remove(0);
    fresh.running_on = 0;
    fresh.running_for = None;
    fresh.age = TIMEOUT + Duration::from_secs(1);
    observed.push(fresh);
    let delayed = Desired::Present {
        rendered: &new,
        startup_delay: Duration::from_secs(10),
    };
    let p = plan(delayed, &observed, TIMEOUT);
    assert!(p.is_empty());
    assert_eq!(
        p.requeue_after,
        Some(Duration::from_secs(9)),
        "timeout passed, delay runs"
    );

    let last = observed.len() - 1;
    observed[last].age = TIMEOUT + Duration::from_secs(10);
    let p = plan(delayed, &observed, TIMEOUT);
    assert_eq!(
        p.destroy.len(),
        1,
        "timed out and delayed: the rollout goes on"
    );

    observed[last].age = Duration::from_secs(1);
    observed[last].running_on = 1;
    observed[last].running_for = Some(Duration::from_secs(4));
    let p = plan(delayed, &observed, TIMEOUT);
    assert!(p.is_empty());
    assert_eq!(p.requeue_after, Some(Duration::from_secs(6)));
}

#[test]
fn a_rollout_ends_with_the_old_units_gone() {
    let old = rendered(&unit(Some(2), "a"));
    let new = rendered(&unit(Some(2), "b"));
    let mut observed = running(&new, &[1, 2]);
    observed.extend(running(&old, &[1]));
    let p = plan(present(&new), &observed, TIMEOUT);
    assert_eq!(p.destroy, [old.units[0].name.to_name()]);
    assert!(p.create.is_empty());
}

#[test]
fn a_singleton_is_destroyed_before_its_replacement_is_created() {
    let old = rendered(&unit(None, "a"));
    let new = rendered(&unit(None, "b"));
    let p = plan(present(&new), &running(&old, &[1]), TIMEOUT);
    assert_eq!(p.destroy, [old.units[0].name.to_name()]);
    assert!(p.create.is_empty());
    assert_eq!(p.phase, Phase::Replacing);
    let p = plan(present(&new), &[], TIMEOUT);
    assert_eq!(names(&p.create), [1]);
}

#[test]
fn a_deleted_unit_loses_every_fleet_unit() {
    let old = rendered(&unit(Some(2), "a"));
    let new = rendered(&unit(Some(2), "b"));
    let mut observed = running(&old, &[1, 2]);
    observed.extend(running(&new, &[1]));
    let p = plan(Desired::Absent, &observed, TIMEOUT);
    assert_eq!(p.destroy.len(), 3);
    assert_eq!(p.phase, Phase::Deleting);
    assert_eq!(plan(Desired::Absent, &[], TIMEOUT).phase, Phase::Deleted);
}

#[test]
fn an_invalid_unit_touches_nothing() {
    let r = rendered(&unit(Some(2), "a"));
    let p = plan(Desired::Invalid, &running(&r, &[1, 2]), TIMEOUT);
    assert!(p.is_empty());
    assert_eq!(p.phase, Phase::Invalid);
}

#[test]
fn a_unit_edited_in_fleet_is_replaced_in_two_steps() {
    let r = rendered(&unit(Some(2), "a"));
    let mut observed = running(&r, &[1, 2]);
    observed[0].unit_hash = [0; 20];
    let p = plan(present(&r), &observed, TIMEOUT);
    assert_eq!(p.destroy, [r.units[0].name.to_name()]);
    assert!(
        p.create.is_empty(),
        "one txn cannot delete and re-put a job"
    );
    let p = plan(present(&r), &observed[1..], TIMEOUT);
    assert_eq!(names(&p.create), [1]);
}

#[test]
fn a_unit_stopped_by_hand_is_launched_again() {
    let r = rendered(&unit(Some(3), "a"));
    let mut observed = running(&r, &[1, 2, 3]);
    observed[1].stopped = true;
    observed[1].running_on = 0;
    let p = plan(present(&r), &observed, TIMEOUT);
    assert_eq!(names(&p.create), [2], "its records written again");
    assert!(p.destroy.is_empty());
    assert_eq!(p.phase, Phase::Relaunching);
    let after = p.applied_to(&observed);
    assert_eq!(after.len(), 3, "relaunching adds no job");
    assert!(after.iter().all(|o| !o.stopped));
    assert!(plan(present(&r), &after, TIMEOUT).is_empty());
}

#[test]
fn a_stopped_unit_of_an_old_template_is_not_launched_again() {
    let old = rendered(&unit(Some(2), "a"));
    let new = rendered(&unit(Some(2), "b"));
    let mut observed = running(&old, &[1, 2]);
    observed[0].stopped = true;
    observed[0].running_on = 0;
    observed[0].running_for = None;
    let p = plan(present(&new), &observed, TIMEOUT);
    assert!(
        p.create.iter().all(|u| u.name.spec_hash == new.spec_hash),
        "only the new template is created: {:?}",
        names(&p.create)
    );
    assert_eq!(p.phase, Phase::RollingUpdate);
}
