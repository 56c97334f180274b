use super::*;
use crate::registry::UnitInfo;
use crate::systemd;
use crate::xfleet::Requirements;
use std::sync::Arc;

fn job(name: &str, xfleet: &str, state: TargetState, target: Option<&str>) -> (String, Job) {
    let text = format!("[Service]\nExecStart=/bin/true\n\n[X-Fleet]\n{xfleet}\n");
    let file = systemd::parse(&text);
    let req = Requirements::of(name, &file);
    let unit = Arc::new(UnitInfo {
        hash_hex: "00".into(),
        file,
    });
    (
        name.to_string(),
        Job {
            name: name.to_string(),
            unit,
            req,
            target_state: state,
            target: target.map(str::to_string),
        },
    )
}

fn launched(name: &str, xfleet: &str) -> (String, Job) {
    job(name, xfleet, TargetState::Launched, None)
}

fn machines(list: &[(&str, &[(&str, &str)])]) -> BTreeMap<String, MachineEntry> {
    list.iter()
        .map(|(id, md)| {
            let metadata = md
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            (id.to_string(), MachineEntry { metadata })
        })
        .collect()
}

fn scheduled(tasks: &[Task]) -> BTreeMap<String, String> {
    tasks
        .iter()
        .filter_map(|t| match t {
            Task::Schedule { job, machine } => Some((job.clone(), machine.clone())),
            Task::Unschedule { .. } => None,
        })
        .collect()
}

#[test]
fn metadata_machine_id_and_least_loaded() {
    let ms = machines(&[
        ("m1", &[("ssd", "true")]),
        ("m2", &[("ssd", "false")]),
        ("m3", &[("ssd", "false")]),
    ]);
    let jobs = BTreeMap::from([
        launched("a.service", "MachineMetadata=ssd=true"),
        launched("b.service", "MachineID=m3"),
        launched("c.service", ""),
        launched("d.service", ""),
        launched("e.service", "MachineMetadata=ssd=maybe"),
    ]);
    let got = scheduled(&plan(&jobs, &ms));
    assert_eq!(got["a.service"], "m1");
    assert_eq!(got["b.service"], "m3");
    // m1 and m3 hold one each: c goes to m2; then all hold one: d to m1.
    assert_eq!(got["c.service"], "m2");
    assert_eq!(got["d.service"], "m1");
    assert!(!got.contains_key("e.service"), "no machine has ssd=maybe");
}

#[test]
fn conflicts_spread_a_group_and_leave_the_rest_unscheduled() {
    let ms = machines(&[("m1", &[]), ("m2", &[])]);
    let conflicts = "Conflicts=k:api:h:g:*.service";
    let jobs = BTreeMap::from([
        launched("k:api:h:g:1.service", conflicts),
        launched("k:api:h:g:2.service", conflicts),
        launched("k:api:h:g:3.service", conflicts),
    ]);
    let got = scheduled(&plan(&jobs, &ms));
    assert_eq!(got.len(), 2, "{got:?}");
    assert_ne!(got["k:api:h:g:1.service"], got["k:api:h:g:2.service"]);
}

#[test]
fn conflicts_hold_against_units_already_placed() {
    let ms = machines(&[("m1", &[]), ("m2", &[])]);
    let jobs = BTreeMap::from([
        job("db.service", "", TargetState::Launched, Some("m1")),
        launched("app.service", "Conflicts=db.service"),
    ]);
    assert_eq!(scheduled(&plan(&jobs, &ms))["app.service"], "m2");
}

#[test]
fn inactive_and_orphaned_jobs_are_unscheduled_and_moved() {
    let ms = machines(&[("m2", &[])]);
    let jobs = BTreeMap::from([
        job("gone.service", "", TargetState::Launched, Some("m1")),
        job("off.service", "", TargetState::Inactive, Some("m2")),
        job("kept.service", "", TargetState::Loaded, Some("m2")),
    ]);
    let tasks = plan(&jobs, &ms);
    assert_eq!(
        tasks,
        [
            Task::Unschedule {
                job: "gone.service".into(),
                machine: "m1".into(),
                reason: "target Machine(m1) went away".into(),
            },
            Task::Unschedule {
                job: "off.service".into(),
                machine: "m2".into(),
                reason: "target state inactive".into(),
            },
            Task::Schedule {
                job: "gone.service".into(),
                machine: "m2".into(),
            },
        ]
    );
}

#[test]
fn global_units_get_no_target_but_count_as_load() {
    let ms = machines(&[("m1", &[("role", "worker")]), ("m2", &[])]);
    let jobs = BTreeMap::from([
        launched("agent.service", "Global=true\nMachineMetadata=role=worker"),
        launched("x.service", ""),
    ]);
    let tasks = plan(&jobs, &ms);
    // m1 runs the global unit, so the least loaded is m2.
    assert_eq!(
        tasks,
        [Task::Schedule {
            job: "x.service".into(),
            machine: "m2".into()
        }]
    );
}

#[test]
fn nothing_fits_nothing_is_written() {
    let jobs = BTreeMap::from([launched("x.service", "MachineID=nowhere")]);
    assert!(plan(&jobs, &machines(&[("m1", &[])])).is_empty());
    assert!(plan(&jobs, &BTreeMap::new()).is_empty());
}
