//! TLS (CA and client certificate) and `--etcd-user` reach etcd's v2 API
//! as they reach v3: the server keeps fleet's registry through v2 on an
//! etcd that wants them, and says so when v2 refuses its credentials.

mod support;

use kaylee_controllers::etcd::EtcdConfig;
use kaylee_controllers::etcd::v2::V2Client;
use serde_json::Value;
use std::time::{Duration, Instant};
use support::fleet::{Api, FLEET, FleetView};
use support::kaylee::{BIN, Server, cli, cli_ok};
use support::tls::{Pki, TlsEtcd};
use support::v2;

const WAIT: Duration = Duration::from_secs(20);

/// Waits until `kaylee status <unit>` (with `flags`) lists `n` launched
/// fleet units.
fn wait_fleet_units(endpoint: &str, flags: &[&str], unit: &str, n: usize) {
    let mut args = flags.to_vec();
    args.extend(["status", unit, "-o", "json"]);
    let deadline = Instant::now() + WAIT;
    loop {
        let out = cli(endpoint, &args);
        let status: Option<Value> = serde_json::from_slice(&out.stdout).ok();
        let launched = status
            .as_ref()
            .and_then(|s| s["fleetUnits"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter(|u| u.to_string().contains("launched"))
            .count();
        if launched == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "kaylee status never showed {n} fleet units: {status:?}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_settings_reach_the_v2_api() {
    let pki = Pki::new();
    let etcd = TlsEtcd::start(&pki);
    let (ca, cert, key) = pki.client_files();
    let flags = pki.client_flags();
    let tls: Vec<&str> = flags.iter().map(String::as_str).collect();
    let server = Server::start_on(&etcd.endpoint, "s1", Api::V2, &tls);
    server.wait_log("leading", WAIT);
    let mut run = tls.to_vec();
    run.extend(["run", "deploy/examples/api.yaml"]);
    cli_ok(&etcd.endpoint, &run);
    wait_fleet_units(&etcd.endpoint, &tls, "api", 2);

    // Through v2 itself: with the client certificate the jobs are there;
    // without it etcd refuses the connection.
    let config = EtcdConfig {
        endpoints: vec![etcd.endpoint.clone()],
        ca_cert: Some(ca.clone().into()),
        cert: Some(cert.clone().into()),
        key: Some(key.clone().into()),
        ..EtcdConfig::default()
    };
    let jobs = V2Client::new(&config)
        .expect("client")
        .get(&format!("{FLEET}job"), true)
        .await
        .expect("a v2 read with the client certificate");
    assert_eq!(jobs.node.leaves().len(), 4, "2 jobs: object, target-state");
    let anonymous = V2Client::new(&EtcdConfig {
        cert: None,
        key: None,
        ..config
    })
    .expect("client");
    assert!(anonymous.get("/", false).await.is_err());
}

/// Turns on etcd's v2 auth (root:`password`; guests may read, not write)
/// and v3 auth (root:pw).
async fn enable_auth(endpoint: &str, port: u16, v2_password: &str) {
    let user = format!(r#"{{"user":"root","password":"{v2_password}"}}"#);
    let json = |body: &str| Some(("application/json", body.to_string()));
    for (method, path, body) in [
        ("PUT", "/v2/auth/users/root", json(&user)),
        ("PUT", "/v2/auth/enable", None),
        (
            "PUT",
            "/v2/auth/roles/guest",
            json(r#"{"role":"guest","revoke":{"kv":{"write":["/*"]}}}"#),
        ),
    ] {
        let auth = format!("root:{v2_password}");
        let body = body.as_ref().map(|(t, b)| (*t, b.as_str()));
        let (status, answer) = v2::request_as(port, Some(&auth), method, path, body).await;
        assert!(status < 300, "{method} {path}: {status} {answer}");
    }
    let (status, body) = v2::request(port, "PUT", "/v2/keys/x", Some("value=1")).await;
    assert_eq!(status, 401, "guests may no longer write: {body}");

    let mut client = etcd_client::Client::connect([endpoint], None)
        .await
        .expect("connect");
    client.user_add("root", "pw", None).await.expect("user");
    client
        .user_grant_role("root", "root")
        .await
        .expect("grant root");
    client.auth_enable().await.expect("v3 auth");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_reach_the_v2_api() {
    let etcd = Api::V2.etcd();
    let endpoint = etcd.endpoint();
    enable_auth(&endpoint, etcd.client_port(), "pw").await;
    let user = ["--etcd-user", "root:pw"];
    let server = Server::start_on(&endpoint, "s1", Api::V2, &user);
    server.wait_log("leading", WAIT);
    cli_ok(
        &endpoint,
        &["--etcd-user", "root:pw", "run", "deploy/examples/api.yaml"],
    );
    // Guests may read: the test reads what Kaylee could only write as root.
    FleetView::connect_on(&endpoint, Api::V2)
        .await
        .wait_for("2 api jobs", WAIT, |s| s.jobs_of("api").len() == 2)
        .await;
    wait_fleet_units(&endpoint, &user, "api", 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_whose_v2_credentials_are_refused_says_so() {
    let etcd = Api::V2.etcd();
    let endpoint = etcd.endpoint();
    // v3 accepts root:pw, v2 knows root with another password.
    enable_auth(&endpoint, etcd.client_port(), "other").await;
    let mut cmd = std::process::Command::new(BIN);
    cmd.args([
        "--etcd-endpoints",
        &endpoint,
        "--etcd-user",
        "root:pw",
        "server",
        "--no-registrator",
        "--fleet-etcd-api",
        "v2",
    ]);
    let out = support::output_with_timeout(&mut cmd, WAIT).expect("the server exits by itself");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("refused our credentials"), "{stderr}");
}
