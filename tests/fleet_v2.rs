//! Real fleet compatibility: what Kaylee leaves in etcd's v2 keys API (the
//! only place real fleet reads) is byte for byte what fleet's own client
//! writes, and a server whose etcd does not serve v2 says so at start-up.

mod support;

use kaylee_controllers::etcd::election::{Election, Fence};
use kaylee_controllers::etcd::{EtcdConfig, Session};
use kaylee_controllers::keys::FleetKeys;
use kaylee_controllers::registry::{AnyRegistry, FleetApi, FleetRegistry, Write};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use support::etcd::Etcd;
use support::fleet::{Api, FLEET, FleetView};
use support::kaylee::{BIN, Server, cli_ok, rendered_records};
use support::v2;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(20);
const GOLDEN: &str = include_str!("fixtures/fleet-golden.json");

fn config(etcd: &Etcd) -> EtcdConfig {
    EtcdConfig {
        endpoints: vec![etcd.endpoint()],
        ..EtcdConfig::default()
    }
}

/// A v2 registry and a leadership to write under.
async fn leading_registry(etcd: &Etcd) -> (AnyRegistry, Fence, Session) {
    let cfg = config(etcd);
    let client = cfg.connect().await.expect("connect");
    let session = Session::start(&cfg, &client, Duration::from_secs(30))
        .await
        .expect("lease");
    let fence = Election::new(client.clone(), cfg.clone(), "/kaylee/leader/")
        .campaign(&session, "test", &CancellationToken::new())
        .await
        .expect("leads");
    let registry =
        AnyRegistry::connect(FleetApi::V2, client, &cfg, FleetKeys::new(FLEET, "k"), 128)
            .await
            .expect("v2 registry");
    (registry, fence, session)
}

fn text(g: &Value, field: &str) -> String {
    g[field]
        .as_str()
        .unwrap_or_else(|| panic!("golden field {field}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_written_through_v2_equal_fleets_golden_records() {
    let etcd = Api::V2.etcd();
    let port = etcd.client_port();
    let (registry, fence, _session) = leading_registry(&etcd).await;
    let golden: BTreeMap<String, Value> = serde_json::from_str(GOLDEN).expect("golden JSON");
    assert_eq!(golden.len(), 3);
    let mut ops = Vec::new();
    for (name, g) in &golden {
        let unit: Value = serde_json::from_str(&text(g, "unit_value")).expect("unit JSON");
        let raw = unit["Raw"].as_str().expect("Raw").to_string();
        ops.push(Write::create(name, &raw));
    }
    registry.apply(ops, &fence).await.expect("apply");

    for (name, g) in &golden {
        // Read back raw over HTTP, as fleet would.
        assert_eq!(
            v2::get(port, &text(g, "unit_key")).await,
            Some(text(g, "unit_value")),
            "{name}: unit record"
        );
        assert_eq!(
            v2::get(port, &text(g, "job_object_key")).await,
            Some(text(g, "job_object_value")),
            "{name}: job object"
        );
        assert_eq!(
            v2::get(port, &format!("{FLEET}job/{name}/target-state")).await,
            Some("launched".to_string()),
            "{name}: started, as `fleetctl start` leaves it"
        );
    }

    let (name, g) = golden.iter().next().expect("a golden record");
    registry
        .apply(vec![Write::Destroy { name: name.clone() }], &fence)
        .await
        .expect("destroy");
    assert!(
        v2::tree(port, &format!("{FLEET}job/{name}"))
            .await
            .is_empty(),
        "the job directory is gone"
    );
    assert_eq!(
        v2::get(port, &text(g, "unit_key")).await,
        Some(text(g, "unit_value")),
        "unit/<sha1> stays, as with fleet's own destroy"
    );
    registry
        .apply(vec![Write::Destroy { name: name.clone() }], &fence)
        .await
        .expect("destroying a destroyed job is a no-op");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_default_server_leaves_exactly_fleets_records_in_v2() {
    let etcd = Api::V2.etcd();
    let endpoint = etcd.endpoint();
    let server = Server::start_default_api(&endpoint, "s1", &[]);
    server.wait_log("leading", WAIT);
    assert!(server.log().contains("api=v2"), "{}", server.log());
    cli_ok(&endpoint, &["run", "deploy/examples/countly.yaml"]);
    let expected = rendered_records(&endpoint, "deploy/examples/countly.yaml");
    assert_eq!(expected.len(), 12, "4 units: unit, object, target-state");

    let fleet = FleetView::connect_on(&endpoint, Api::V2).await;
    fleet
        .wait_for("4 countly jobs", WAIT, |s| s.jobs_of("countly").len() == 4)
        .await;
    // Every key under fleet's prefix, with nothing else beside them.
    let stored: BTreeMap<String, String> = v2::tree(etcd.client_port(), FLEET)
        .await
        .into_iter()
        .map(|(k, v, _)| (k, v))
        .collect();
    assert_eq!(stored, expected);

    // Invisible to fleet would be wrong: nothing went to v3 keys.
    let v3 = FleetView::connect_on(&endpoint, Api::V3).await;
    assert!(v3.snapshot().await.keys.is_empty(), "no fleet keys in v3");

    // `kaylee status` reads fleet's view through v2 as well (its default).
    let status: Value =
        serde_json::from_str(&cli_ok(&endpoint, &["status", "countly", "-o", "json"]))
            .expect("status JSON");
    let units = status["fleetUnits"].as_array().expect("fleetUnits");
    assert_eq!(units.len(), 4, "{status}");
    assert!(units.iter().all(|u| u.to_string().contains("launched")));
}

#[test]
fn a_server_exits_at_start_up_when_etcd_does_not_serve_v2() {
    let etcd = Etcd::start(); // v3 only, as etcd 3.4 is by default
    let mut cmd = std::process::Command::new(BIN);
    cmd.args([
        "--etcd-endpoints",
        &etcd.endpoint(),
        "server",
        "--no-registrator",
    ])
    .env_remove("KAYLEE_FLEET_ETCD_API");
    let started = Instant::now();
    let out = support::output_with_timeout(&mut cmd, Duration::from_secs(20))
        .expect("kaylee server exits by itself");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "does not serve the v2 keys API",
        "--enable-v2=true",
        "--fleet-etcd-api v3",
    ] {
        assert!(
            stderr.contains(needle),
            "{needle:?} missing from:\n{stderr}"
        );
    }

    // The same etcd serves a server that keeps fleet's registry in v3.
    let server = Server::start_on(&etcd.endpoint(), "s1", Api::V3, &[]);
    server.wait_log("leading", WAIT);
}
