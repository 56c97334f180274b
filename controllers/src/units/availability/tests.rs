use super::*;
use crate::units::cluster::MachineInfo;
use std::collections::{BTreeMap, BTreeSet};

const GRACE: Duration = Duration::from_secs(10);

fn cluster(machines: &[&str], registrators: &[&str]) -> Cluster {
    Cluster {
        machines: machines
            .iter()
            .map(|m| {
                let ssd = if *m == "m1" { "true" } else { "false" };
                (
                    m.to_string(),
                    MachineInfo {
                        metadata: BTreeMap::from([("ssd".to_string(), ssd.to_string())]),
                        public_ip: String::new(),
                    },
                )
            })
            .collect(),
        registrators: registrators
            .iter()
            .map(|m| m.to_string())
            .collect::<BTreeSet<_>>(),
    }
}

fn job(target: Option<&str>, placements: Vec<Placement>) -> ObservedJob {
    ObservedJob {
        name: FleetName {
            prefix: "k".into(),
            unit: "web".into(),
            spec_hash: "aaaaaa".into(),
            group: "bbbbbb".into(),
            replica: 1,
        },
        unit_hash: [1; 20],
        stopped: false,
        age: Duration::from_secs(60),
        target: target.map(str::to_string),
        placements,
    }
}

/// A healthy replica on `machine`, ready for a minute.
fn serving(machine: &str) -> Placement {
    Placement {
        machine: machine.into(),
        active: "active".into(),
        sub: "running".into(),
        current_text: true,
        live: true,
        registration: Registration::Registered(Health::None),
        ready_for: Some(Duration::from_secs(60)),
    }
}

fn state(machine: &str, active: &str, sub: &str) -> Placement {
    Placement {
        active: active.into(),
        sub: sub.into(),
        ready_for: None,
        ..serving(machine)
    }
}

fn replicated<'a>() -> Constraints<'a> {
    Constraints {
        layout: Layout::Replicated {
            replicas: 3,
            groups: Some(2),
        },
        metadata: &[],
        machine_id: None,
        conflicts: true,
        network_unit: "flanneld.service",
    }
}

fn judging(min_ready: u64) -> Judging {
    Judging {
        min_ready: Duration::from_secs(min_ready),
        schedule_grace: GRACE,
    }
}

/// The one reason of a job that is not available.
fn reason(job: &ObservedJob, cluster: &Cluster, c: &Constraints<'_>) -> (String, String) {
    let a = assess(job, cluster, c, &judging(0));
    assert_eq!(a.available, 0, "{a:?}");
    assert_eq!(a.unavailable.len(), 1, "{a:?}");
    let u = &a.unavailable[0];
    (u.machine.clone(), u.reason.clone())
}

#[test]
fn a_running_registered_replica_on_a_live_machine_is_available() {
    let c = cluster(&["m1", "m2"], &["m1", "m2"]);
    let a = assess(
        &job(Some("m1"), vec![serving("m1")]),
        &c,
        &replicated(),
        &judging(0),
    );
    assert_eq!(a.available, 1);
    assert_eq!(a.running, 1);
    assert!(a.unavailable.is_empty());
}

/// Each row: a job as observed, and the reason an operator reads.
#[test]
fn every_way_of_not_serving_has_a_reason() {
    let c = cluster(&["m1", "m2"], &["m1", "m2"]);
    let rows: Vec<(ObservedJob, (&str, &str))> = vec![
        (
            job(
                Some("m3"),
                vec![Placement {
                    live: false,
                    ..serving("m3")
                }],
            ),
            ("m3", "machine m3 is gone"),
        ),
        (
            job(Some("m1"), vec![state("m1", "failed", "failed")]),
            ("m1", "failed on m1"),
        ),
        (
            job(Some("m1"), vec![state("m1", "activating", "auto-restart")]),
            ("m1", "activating/auto-restart on m1"),
        ),
        (
            job(Some("m1"), vec![state("m1", "inactive", "dead")]),
            (
                "m1",
                "inactive/dead on m1 (does m1 have flanneld.service, which it requires?)",
            ),
        ),
        (job(Some("m1"), vec![]), ("m1", "no state reported yet")),
        (
            job(
                Some("m1"),
                vec![Placement {
                    registration: Registration::Missing,
                    ready_for: None,
                    ..serving("m1")
                }],
            ),
            ("m1", "not registered on m1"),
        ),
        (
            job(
                Some("m1"),
                vec![Placement {
                    registration: Registration::Registered(Health::Unhealthy),
                    ready_for: None,
                    ..serving("m1")
                }],
            ),
            ("m1", "unhealthy on m1"),
        ),
        (
            job(
                Some("m1"),
                vec![Placement {
                    registration: Registration::Registered(Health::Starting),
                    ready_for: None,
                    ..serving("m1")
                }],
            ),
            ("m1", "health: starting on m1"),
        ),
        (
            job(
                Some("m1"),
                vec![Placement {
                    current_text: false,
                    ready_for: None,
                    ..serving("m1")
                }],
            ),
            ("m1", "running another unit text on m1"),
        ),
        (
            ObservedJob {
                stopped: true,
                ..job(Some("m1"), vec![serving("m1")])
            },
            (
                "",
                "stopped outside Kaylee (target-state not launched); launching it again",
            ),
        ),
        (
            job(None, vec![]),
            (
                "",
                "not scheduled: no machine fits (conflicts on all 2 matching machines)",
            ),
        ),
    ];
    for (j, (machine, why)) in rows {
        assert_eq!(
            reason(&j, &c, &replicated()),
            (machine.to_string(), why.to_string()),
            "{j:?}"
        );
    }
}

#[test]
fn a_dead_machines_lingering_state_does_not_count() {
    // The job moved to m2; m3 died and its state lingers until its TTL.
    let c = cluster(&["m1", "m2"], &["m1", "m2"]);
    let gone = Placement {
        live: false,
        ready_for: None,
        ..serving("m3")
    };
    let a = assess(
        &job(
            Some("m2"),
            vec![gone.clone(), state("m2", "activating", "start-pre")],
        ),
        &c,
        &replicated(),
        &judging(0),
    );
    assert_eq!((a.available, a.running), (0, 0));
    assert_eq!(a.unavailable[0].reason, "activating/start-pre on m2");
    let (m, why) = reason(&job(None, vec![gone]), &c, &replicated());
    assert_eq!(
        (m.as_str(), why.as_str()),
        (
            "",
            "not scheduled: no machine fits (conflicts on all 2 matching machines)"
        )
    );
}

#[test]
fn a_machine_without_a_registrator_is_judged_by_fleet_alone() {
    let c = cluster(&["m1"], &[]);
    let unwatched = Placement {
        registration: Registration::Unwatched,
        ..serving("m1")
    };
    let a = assess(
        &job(Some("m1"), vec![unwatched]),
        &c,
        &replicated(),
        &judging(0),
    );
    assert_eq!(a.available, 1);
}

#[test]
fn min_ready_seconds_hold_availability_back_and_say_when_to_look_again() {
    let c = cluster(&["m1"], &["m1"]);
    let young = Placement {
        ready_for: Some(Duration::from_secs(4)),
        ..serving("m1")
    };
    let a = assess(
        &job(Some("m1"), vec![young]),
        &c,
        &replicated(),
        &judging(10),
    );
    assert_eq!(a.available, 0);
    assert_eq!(a.recheck, Some(Duration::from_secs(6)));
    assert_eq!(
        a.unavailable[0].reason,
        "ready, counting minReadySeconds (10s)"
    );
}

#[test]
fn an_unscheduled_job_waits_for_the_grace_then_says_nothing_fits() {
    let c = cluster(&["m1", "m2"], &[]);
    let young = ObservedJob {
        age: Duration::from_secs(3),
        ..job(None, vec![])
    };
    let a = assess(&young, &c, &replicated(), &judging(0));
    assert_eq!(a.recheck, Some(GRACE - Duration::from_secs(3)));
    assert_eq!(a.unavailable[0].reason, "waiting for fleet to schedule it");

    let ssd = ["ssd=maybe".to_string()];
    let constrained = Constraints {
        metadata: &ssd,
        ..replicated()
    };
    assert_eq!(
        reason(&job(None, vec![]), &c, &constrained).1,
        "not scheduled: no machine fits (metadata ssd=maybe)"
    );
    let none = cluster(&[], &[]);
    assert_eq!(
        reason(&job(None, vec![]), &none, &replicated()).1,
        "no fleet machine is registered in this cluster"
    );
}

#[test]
fn a_global_job_counts_one_replica_per_matching_machine() {
    let c = cluster(&["m1", "m2", "m3"], &["m1", "m2", "m3"]);
    let global = Constraints {
        layout: Layout::Global,
        conflicts: false,
        ..replicated()
    };
    let all = job(
        None,
        vec![
            serving("m1"),
            serving("m2"),
            state("m3", "failed", "failed"),
        ],
    );
    let a = assess(&all, &c, &global, &judging(0));
    assert_eq!((a.expected, a.available, a.running), (3, 2, 2));
    assert_eq!(a.unavailable[0].reason, "failed on m3");

    // m3 left fleet: its state lingers, it no longer counts either way.
    let two = cluster(&["m1", "m2"], &["m1", "m2"]);
    let a = assess(&all, &two, &global, &judging(0));
    assert_eq!((a.expected, a.available), (2, 2));
    assert!(a.unavailable.is_empty());

    let ssd = ["ssd=true".to_string()];
    let only_ssd = Constraints {
        metadata: &ssd,
        ..global
    };
    let a = assess(&all, &c, &only_ssd, &judging(0));
    assert_eq!((a.expected, a.available), (1, 1));
    let nothing = ["ssd=maybe".to_string()];
    let a = assess(
        &all,
        &c,
        &Constraints {
            metadata: &nothing,
            ..global
        },
        &judging(0),
    );
    assert_eq!(a.expected, 0);
    assert_eq!(
        a.unavailable[0].reason,
        "no machine fits (metadata ssd=maybe)"
    );
}
