//! The units controller end to end: a real etcd, real `kaylee server`
//! processes, and the test playing fleet's agents. Every scenario runs
//! twice, with fleet's registry through etcd's v2 API (as real fleet reads
//! it) and through v3: `v2::<scenario>` and `v3::<scenario>`.

mod support;

use std::time::Duration;
use support::agent::spawn_agent;
use support::fleet::{Api, FLEET, FleetView, spec_hash_of};
use support::kaylee::{cli, rendered_records};

#[path = "controller/cluster.rs"]
mod cluster;

use cluster::*;

async fn countly_becomes_exactly_the_rendered_fleet_units(api: Api) {
    let c = Cluster::start(api).await;
    let _server = c.server("s1");
    let out = c.kaylee(&["run", "deploy/examples/countly.yaml"]);
    assert_eq!(out, "countly: created\n");
    let records = rendered_records(&c.etcd.endpoint(), "deploy/examples/countly.yaml");
    let snap = c
        .fleet
        .wait_for("4 countly jobs", WAIT, |s| s.jobs_of("countly").len() == 4)
        .await;
    assert_exactly(&snap, "countly", &records);
    assert!(snap.jobs.values().all(|j| j.target_state == "launched"));
    let status = c
        .wait_status("countly", "4 created", |s| s["created"] == 4)
        .await;
    assert_eq!(status["desired"], 4);
    assert_eq!(status["phase"], "converged");
    assert_eq!(
        c.kaylee(&["run", "deploy/examples/countly.yaml"]),
        "countly: unchanged\n"
    );
}

async fn a_raw_json_put_is_picked_up(api: Api) {
    let c = Cluster::start(api).await;
    let _server = c.server("s1");
    let json = std::fs::read_to_string("deploy/examples/countly.json").expect("example");
    c.put("/kaylee/units/countly", json.trim()).await;
    let records = rendered_records(&c.etcd.endpoint(), "deploy/examples/countly.json");
    let snap = c
        .fleet
        .wait_for("4 countly jobs", WAIT, |s| s.jobs_of("countly").len() == 4)
        .await;
    assert_exactly(&snap, "countly", &records);
}

async fn scaling_keeps_untouched_replicas(api: Api) {
    let c = Cluster::start(api).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let _server = c.server("s1");
    c.kaylee(&["run", &unit_file(&dir, "c4", &countly(4, "img:1"))]);
    let four = c
        .fleet
        .wait_for("4 jobs", WAIT, |s| s.jobs_of("countly").len() == 4)
        .await
        .jobs_of("countly");

    c.kaylee(&["run", &unit_file(&dir, "c6", &countly(6, "img:1"))]);
    let six = c
        .fleet
        .wait_for("6 jobs", WAIT, |s| s.jobs_of("countly").len() == 6)
        .await
        .jobs_of("countly");
    for (name, job) in &four {
        assert_eq!(six.get(name), Some(job), "{name} untouched by scaling up");
    }

    c.kaylee(&["run", &unit_file(&dir, "c3", &countly(3, "img:1"))]);
    let three = c
        .fleet
        .wait_for("3 jobs", WAIT, |s| s.jobs_of("countly").len() == 3)
        .await
        .jobs_of("countly");
    for (name, job) in &three {
        assert_eq!(
            four.get(name),
            Some(job),
            "{name} untouched by scaling down"
        );
        let replica: u32 = name
            .trim_end_matches(".service")
            .rsplit(':')
            .next()
            .and_then(|r| r.parse().ok())
            .unwrap_or(0);
        assert!(
            (1..=3).contains(&replica),
            "the highest replicas went: {name}"
        );
    }
}

/// Runs `change`, then samples fleet's registry until the unit has
/// `replicas` running jobs on a template other than `old_hash`, asserting
/// at every sample that running jobs never drop below `replicas` and that at
/// most one extra job exists (surge one).
async fn assert_rolls_one_at_a_time(
    c: &Cluster,
    replicas: usize,
    old_hash: &str,
    change: impl FnOnce(),
) {
    change();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut samples = 0;
    loop {
        let snap = c.fleet.snapshot().await;
        let jobs = snap.jobs_of("countly");
        let running = snap.running_of("countly");
        assert!(
            running >= replicas,
            "only {running} running during the rollout: {jobs:#?}"
        );
        assert!(
            jobs.len() <= replicas + 1,
            "more than one surge unit: {jobs:#?}"
        );
        samples += 1;
        let done = jobs.len() == replicas
            && running == replicas
            && jobs.keys().all(|n| spec_hash_of(n) != old_hash);
        if done {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "rollout did not finish: {jobs:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(samples > 5, "the rollout was observed while it happened");
}

async fn converge_running(c: &Cluster, replicas: usize) -> String {
    let snap = c
        .fleet
        .wait_for("all running", WAIT, |s| {
            s.jobs_of("countly").len() == replicas && s.running_of("countly") == replicas
        })
        .await;
    let name = snap
        .jobs_of("countly")
        .keys()
        .next()
        .cloned()
        .unwrap_or_default();
    spec_hash_of(&name).to_string()
}

async fn an_image_change_rolls_one_replica_at_a_time(api: Api) {
    let c = Cluster::start(api).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let _agent = spawn_agent(&c.fleet, "m1", Duration::from_millis(300));
    let _server = c.server("s1");
    c.kaylee(&["run", &unit_file(&dir, "a", &countly(4, "img:1"))]);
    let old = converge_running(&c, 4).await;
    let file = unit_file(&dir, "b", &countly(4, "img:2"));
    assert_rolls_one_at_a_time(&c, 4, &old, || {
        c.kaylee(&["run", &file]);
    })
    .await;
    let status = c
        .wait_status("countly", "converged", |s| {
            s["phase"] == "converged" && s["running"] == 4
        })
        .await;
    assert_ne!(status["specHash"], old);
}

async fn restart_rolls_every_replica(api: Api) {
    let c = Cluster::start(api).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let _agent = spawn_agent(&c.fleet, "m1", Duration::from_millis(300));
    let _server = c.server("s1");
    c.kaylee(&["run", &unit_file(&dir, "a", &countly(3, "img:1"))]);
    let old = converge_running(&c, 3).await;
    assert_rolls_one_at_a_time(&c, 3, &old, || {
        c.kaylee(&["restart", "countly"]);
    })
    .await;
    let missing = cli(&c.etcd.endpoint(), &["restart", "nope"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no unit named `nope`"));
}

async fn rm_removes_every_fleet_unit(api: Api) {
    let c = Cluster::start(api).await;
    let _server = c.server("s1");
    c.run_examples().await;
    assert_eq!(
        c.kaylee(&["rm", "countly"]),
        "countly: removed (its history is kept: `kaylee history countly`)\n"
    );
    let snap = c
        .fleet
        .wait_for("countly gone", WAIT, |s| s.jobs_of("countly").is_empty())
        .await;
    assert_eq!(snap.jobs_of("api").len(), 2, "other units stay");
    assert!(
        snap.keys.keys().any(|k| k.contains("/unit/")),
        "fleet keeps unit/<sha1> records, as fleet's own destroy does"
    );
    let deadline = std::time::Instant::now() + WAIT;
    while c.status("countly").await.is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "status of a removed unit stays"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let missing = cli(&c.etcd.endpoint(), &["rm", "countly"]);
    assert_eq!(missing.status.code(), Some(1));
}

async fn a_malformed_unit_is_reported_and_the_rest_is_served(api: Api) {
    let c = Cluster::start(api).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let _server = c.server("s1");
    let web = "name: web\nspec:\n  replicas: 2\n  image: nginx:1\n";
    c.kaylee(&["run", &unit_file(&dir, "web", web)]);
    let before = c
        .fleet
        .wait_for("2 web jobs", WAIT, |s| s.jobs_of("web").len() == 2)
        .await
        .jobs_of("web");

    c.put("/kaylee/units/bad", "{\"name\": \"bad\", \"spec\": ")
        .await;
    c.put(
        "/kaylee/units/web",
        r#"{"name":"web","spec":{"replicas":0,"image":"nginx:2"}}"#,
    )
    .await;
    c.kaylee(&["run", "deploy/examples/countly.yaml"]);
    c.fleet
        .wait_for("countly served", WAIT, |s| s.jobs_of("countly").len() == 4)
        .await;
    let bad = c
        .wait_status("bad", "an error", |s| s["error"].is_string())
        .await;
    let error = bad["error"].as_str().unwrap_or("");
    assert!(
        error.starts_with("/kaylee/units/bad:1:24: invalid JSON"),
        "{bad}"
    );
    assert_eq!(bad["phase"], "invalid");
    let web_status = c
        .wait_status("web", "an error", |s| s["error"].is_string())
        .await;
    assert!(
        web_status["error"]
            .as_str()
            .unwrap_or("")
            .contains("spec.replicas"),
        "{web_status}"
    );
    assert_eq!(web_status["created"], 2);

    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = c.fleet.snapshot().await.jobs_of("web");
    assert_eq!(
        after, before,
        "an invalid unit's fleet units are left alone"
    );
    let ls = c.kaylee(&["ls"]);
    assert!(
        ls.lines().any(|l| l.starts_with("bad ")
            && l.contains("invalid")
            && l.contains("/kaylee/units/bad")),
        "{ls}"
    );
    assert!(
        ls.lines()
            .any(|l| l.starts_with("countly ") && l.contains("converged")),
        "{ls}"
    );
}

async fn foreign_fleet_units_are_never_touched(api: Api) {
    let c = Cluster::start(api).await;
    let foreign = [
        (
            "job/etcd.service/object",
            r#"{"Name":"etcd.service","UnitHash":[1]}"#,
        ),
        ("job/etcd.service/target-state", "launched"),
        ("job/kk:countly:aaaaaa:bbbbbb:1.service/object", "{}"),
        ("job/other:countly:aaaaaa:bbbbbb:1.service/object", "{}"),
        ("job/k:handmade.service/object", "{}"),
        ("job/k:countly.service/object", "{}"),
        ("states/etcd.service/m1", "{}"),
    ];
    for (key, value) in foreign {
        c.fleet.put(key, value).await;
    }
    // Ours, from an older template: this one must go.
    c.fleet
        .put("job/k:countly:aaaaaa:bbbbbb:9.service/object", "{}")
        .await;
    let before = c.fleet.snapshot().await;
    let server = c.server("s1");
    c.kaylee(&["run", "deploy/examples/countly.yaml"]);
    // The old one goes once new ones serve (no agent here would touch the
    // foreign units: the test runs the new ones by hand).
    let created = c
        .fleet
        .wait_for("4 new countly jobs", WAIT, |s| {
            s.jobs_of("countly")
                .keys()
                .filter(|n| !n.contains(":aaaaaa:"))
                .count()
                == 4
        })
        .await;
    assert!(c.fleet.try_add_machine("m1").await);
    for name in created
        .jobs_of("countly")
        .keys()
        .filter(|n| !n.contains(":aaaaaa:"))
    {
        c.fleet.set_running(name, "m1").await;
    }
    c.fleet
        .wait_for("countly converged", WAIT, |s| {
            s.jobs_of("countly").len() == 4
                && !s.jobs.contains_key("k:countly:aaaaaa:bbbbbb:9.service")
        })
        .await;
    c.kaylee(&["rm", "countly"]);
    let after = c
        .fleet
        .wait_for("countly gone", WAIT, |s| s.jobs_of("countly").is_empty())
        .await;
    for (key, _) in foreign {
        let key = format!("{FLEET}{key}");
        assert_eq!(
            after.keys.get(&key),
            before.keys.get(&key),
            "{key} untouched"
        );
    }
    assert!(
        !server.log().contains("kk:countly"),
        "foreign names never even enter the caches"
    );
}

async fn units_stopped_by_hand_are_launched_again(api: Api) {
    let c = Cluster::start(api).await;
    let server = c.server("s1");
    c.kaylee(&["run", "deploy/examples/countly.yaml"]);
    let records = rendered_records(&c.etcd.endpoint(), "deploy/examples/countly.yaml");
    let snap = c
        .fleet
        .wait_for("4 countly jobs", WAIT, |s| s.jobs_of("countly").len() == 4)
        .await;
    // As `fleetctl stop` and `fleetctl unload` leave them.
    let names: Vec<String> = snap.jobs_of("countly").into_keys().collect();
    c.fleet
        .put(&format!("job/{}/target-state", names[0]), "loaded")
        .await;
    c.fleet
        .put(&format!("job/{}/target-state", names[2]), "inactive")
        .await;
    server.wait_log("Relaunching", WAIT);
    let snap = c
        .fleet
        .wait_for("every countly job launched", WAIT, |s| {
            let jobs = s.jobs_of("countly");
            jobs.len() == 4 && jobs.values().all(|j| j.target_state == "launched")
        })
        .await;
    assert_exactly(&snap, "countly", &records);
    c.wait_status("countly", "converged", |s| s["phase"] == "converged")
        .await;
}

async fn an_etcd_restart_makes_informers_relist_and_converge(api: Api) {
    let mut c = Cluster::start(api).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let server = c.server("s1");
    c.kaylee(&["run", &unit_file(&dir, "a", &countly(2, "img:1"))]);
    c.fleet
        .wait_for("2 jobs", WAIT, |s| s.jobs_of("countly").len() == 2)
        .await;
    c.etcd.restart();
    c.fleet = FleetView::connect_on(&c.etcd.endpoint(), api).await;
    c.kaylee(&["run", &unit_file(&dir, "b", &countly(5, "img:1"))]);
    c.fleet
        .wait_for("5 jobs after the restart", Duration::from_secs(40), |s| {
            s.jobs_of("countly").len() == 5
        })
        .await;
    assert!(server.log().contains("relisting") || server.log().contains("leading"));
}

async fn a_fresh_server_plans_nothing_for_a_converged_cluster(api: Api) {
    let c = Cluster::start(api).await;
    let mut first = c.server("s1");
    c.run_examples().await;
    c.wait_status("countly", "created", |s| s["created"] == 4)
        .await;
    c.wait_status("api", "created", |s| s["created"] == 2).await;
    first.signal(nix::sys::signal::Signal::SIGTERM);
    first.wait_exit(WAIT);
    let before = c.fleet.snapshot().await;
    let statuses = (c.status("countly").await, c.status("api").await);

    let second = c.server("s2");
    second.wait_log("caches synced", WAIT);
    // Let it reconcile every unit (a resync would change nothing either).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = c.fleet.snapshot().await;
    assert_eq!(after.keys, before.keys, "no fleet key was rewritten");
    assert_eq!((c.status("countly").await, c.status("api").await), statuses);
    assert!(
        !second.log().contains("reconciled unit"),
        "{}",
        second.log()
    );
}

async fn history_rollback_and_diff(api: Api) {
    let c = Cluster::start(api).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let _server = c.server("s1");
    let _agent = spawn_agent(&c.fleet, "m1", Duration::from_millis(100));
    let v1 = unit_file(&dir, "v1", &countly(2, "img:1"));
    let v2 = unit_file(&dir, "v2", &countly(2, "img:2"));
    let wait = ["--wait", "--timeout", "60s"];
    let out = c.kaylee(&[&["run", v1.as_str()][..], &wait].concat());
    assert!(out.contains("rolled out, 2/2 available"), "{out}");
    let first = c.status("countly").await.expect("a status");

    // diff writes nothing and tells what run would change.
    let api_flag = ["--fleet-etcd-api", api.flag()];
    let diff = c.kaylee(&[&["diff", v2.as_str()][..], &api_flag].concat());
    assert!(diff.contains("spec.image: \"img:1\" → \"img:2\""), "{diff}");
    assert_eq!(diff.matches("  + k:countly:").count(), 2, "{diff}");
    assert_eq!(diff.matches("  - k:countly:").count(), 2, "{diff}");
    assert_eq!(
        c.status("countly").await,
        Some(first.clone()),
        "diff wrote nothing"
    );

    c.kaylee(&[&["run", v2.as_str()][..], &wait].concat());
    let history = c.kaylee(&["history", "countly"]);
    let rows: Vec<&str> = history.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{history}");
    assert!(rows.iter().all(|r| r.contains("yes,")), "{history}");
    assert!(
        rows[0].contains("img:1") && rows[1].contains("img:2 "),
        "{history}"
    );

    let out = c.kaylee(&[&["rollback", "countly"][..], &wait].concat());
    assert!(
        out.contains("countly: rolling back to revision 1 (img:1)")
            && out.contains("rolled out, 2/2 available"),
        "{out}"
    );
    let back = c.status("countly").await.expect("a status");
    assert_eq!(back["specHash"], first["specHash"], "the first spec again");
    assert_eq!(back["revision"], 3);
    let diff = c.kaylee(&[&["diff", v1.as_str()][..], &api_flag].concat());
    assert!(diff.contains("countly: spec unchanged"), "{diff}");
    assert_eq!(diff.matches("  = k:countly:").count(), 2, "{diff}");
    let history = c.kaylee(&["history", "countly", "-o", "json"]);
    let revisions: serde_json::Value = serde_json::from_str(&history).expect("JSON");
    assert_eq!(revisions.as_array().map(Vec::len), Some(3), "{history}");

    let to = cli(
        &c.etcd.endpoint(),
        &["rollback", "countly", "--to-revision", "9"],
    );
    assert_eq!(to.status.code(), Some(2), "no such revision is bad input");
    // A plain rm keeps the history; a purge after it deletes it.
    let out = c.kaylee(&["rm", "countly"]);
    assert!(out.contains("its history is kept"), "{out}");
    let kept = c.kaylee(&["history", "countly"]);
    assert_eq!(kept.lines().skip(1).count(), 3, "{kept}");
    let out = c.kaylee(&["rm", "countly", "--purge"]);
    assert!(
        out.contains("countly: was already removed; its history is deleted"),
        "{out}"
    );
    let gone = cli(&c.etcd.endpoint(), &["history", "countly"]);
    assert_eq!(gone.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&gone.stderr).contains("no history for `countly`"));
    let again = cli(&c.etcd.endpoint(), &["rm", "countly", "--purge"]);
    assert_eq!(again.status.code(), Some(1), "nothing left to remove");
    assert!(String::from_utf8_lossy(&again.stderr).contains("no unit named `countly`"));
}

for_each_api!(
    countly_becomes_exactly_the_rendered_fleet_units,
    a_raw_json_put_is_picked_up,
    scaling_keeps_untouched_replicas,
    an_image_change_rolls_one_replica_at_a_time,
    restart_rolls_every_replica,
    rm_removes_every_fleet_unit,
    a_malformed_unit_is_reported_and_the_rest_is_served,
    foreign_fleet_units_are_never_touched,
    units_stopped_by_hand_are_launched_again,
    an_etcd_restart_makes_informers_relist_and_converge,
    a_fresh_server_plans_nothing_for_a_converged_cluster,
    history_rollback_and_diff,
);
