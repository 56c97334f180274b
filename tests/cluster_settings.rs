//! The settings that shape unit text are the cluster's (`/kaylee/config`):
//! seeded by the first server, used by every later one whatever its flags,
//! and by `kaylee render`; and the note `validate`/`run` give when units
//! would require a network unit nobody runs.

mod support;

use etcd_client::Client;
use std::time::Duration;
use support::etcd::Etcd;
use support::fleet::{Api, FleetView};
use support::kaylee::{Server, cli, cli_ok, rendered_records};

const WAIT: Duration = Duration::from_secs(30);
const NOTE: &str = "note: units require flanneld.service";

async fn get(endpoint: &str, key: &str) -> Option<String> {
    let mut c = Client::connect([endpoint], None).await.expect("connect");
    let resp = c.get(key, None).await.expect("get");
    resp.kvs()
        .first()
        .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
}

async fn put(endpoint: &str, key: &str, value: &str) {
    let mut c = Client::connect([endpoint], None).await.expect("connect");
    c.put(key, value, None).await.expect("put");
}

async fn delete(endpoint: &str, key: &str) {
    let mut c = Client::connect([endpoint], None).await.expect("connect");
    c.delete(key, None).await.expect("delete");
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_server_seeds_the_settings_and_every_other_uses_them() {
    let etcd = Etcd::start();
    let e = etcd.endpoint();
    let mut first = Server::start(&e, "s1", &["--network-unit", ""]);
    first.wait_log("cluster settings written from this server's flags", WAIT);
    assert_eq!(
        get(&e, "/kaylee/config").await.as_deref(),
        Some(r#"{"unitPrefix":"k","networkUnit":""}"#)
    );
    first.wait_log("leading", WAIT);
    cli_ok(&e, &["run", "deploy/examples/countly.yaml"]);
    let fleet = FleetView::connect_on(&e, Api::V3).await;
    let before = fleet
        .wait_for("4 countly jobs", WAIT, |s| s.jobs_of("countly").len() == 4)
        .await;

    // A server with the default flags uses the cluster's and says so.
    let second = Server::start(&e, "s2", &[]);
    second.wait_log("using the cluster's", WAIT);
    let log = second.log();
    assert!(
        log.contains(r#"differences=networkUnit: flag "flanneld.service", cluster """#),
        "{log}"
    );
    // It takes over without replacing a single unit.
    first.sigkill();
    second.wait_log("leading", WAIT);
    second.wait_log("caches synced", WAIT);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = fleet.snapshot().await;
    assert_eq!(
        before.jobs_of("countly").keys().collect::<Vec<_>>(),
        after.jobs_of("countly").keys().collect::<Vec<_>>()
    );

    // `kaylee render` renders what the servers wrote, and says whose
    // settings it used.
    let out = cli(&e, &["render", "deploy/examples/countly.yaml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("Requires="));
    assert!(
        stderr(&out).contains(
            "rendering with the cluster's settings (/kaylee/config), not the flags' \
             (networkUnit: flag \"flanneld.service\", cluster \"\"; --offline to use them): \
             unit prefix `k`, network unit none"
        ),
        "{}",
        stderr(&out)
    );
    let records = rendered_records(&e, "deploy/examples/countly.yaml");
    assert_eq!(records.len(), 12);
    for (key, value) in &records {
        let stored = after.keys.get(key).map(|(v, _)| v);
        assert_eq!(stored, Some(value), "render and the servers agree on {key}");
    }

    // --offline renders with the flags, and says so.
    let out = cli(&e, &["render", "--offline", "deploy/examples/countly.yaml"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("Requires=flanneld.service"));
    assert!(
        stderr(&out).contains("rendering with the flags (--offline)"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_settings_stop_the_server_and_render_naming_the_key() {
    let etcd = Etcd::start();
    let e = etcd.endpoint();
    put(&e, "/kaylee/config", r#"{"unitPrefix":"k"}"#).await;
    let mut server = Server::start(&e, "s1", &[]);
    server.wait_exit(WAIT);
    let expected = "/kaylee/config: networkUnit: is required";
    assert!(server.log().contains(expected), "{}", server.log());
    let out = cli(&e, &["render", "deploy/examples/countly.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(expected), "{}", stderr(&out));
    // Offline, the flags are all there is.
    let out = cli(&e, &["render", "--offline", "deploy/examples/countly.yaml"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_unit_no_host_runs_is_noted_by_validate_and_run() {
    let etcd = Etcd::start();
    let e = etcd.endpoint();
    let file = "deploy/examples/countly.yaml";
    // No flanneld has a lease here (and v2 is off): the default network
    // unit could never start.
    let out = cli(&e, &["validate", file]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out).matches(NOTE).count(), 1, "{}", stderr(&out));
    let out = cli(&e, &["run", file]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains(NOTE), "{}", stderr(&out));
    let out = cli(&e, &["validate", "--offline", file]);
    assert!(!stderr(&out).contains(NOTE), "{}", stderr(&out));

    // A flanneld lease: the network unit runs somewhere.
    let lease = "/coreos.com/network/subnets/10.1.34.0-24";
    put(&e, lease, r#"{"PublicIP":"192.0.2.1"}"#).await;
    let out = cli(&e, &["validate", file]);
    assert!(!stderr(&out).contains(NOTE), "{}", stderr(&out));
    delete(&e, lease).await;

    // A cluster without a network unit needs none.
    put(
        &e,
        "/kaylee/config",
        r#"{"unitPrefix":"k","networkUnit":""}"#,
    )
    .await;
    let out = cli(&e, &["validate", file]);
    assert!(!stderr(&out).contains(NOTE), "{}", stderr(&out));
    let out = cli(&e, &["run", file]);
    assert!(!stderr(&out).contains(NOTE), "{}", stderr(&out));
}
