//! Operations against a real etcd and a real `kaylee server` process:
//! `/metrics` (parsed as Prometheus text), `/healthz`, `/readyz`, and
//! `kaylee run --wait` timing out and converging.
//!
//! No fleet agent runs here: the leader writes fleet's registry, but nothing
//! starts the units, so they never become running unless a test writes the
//! `states/` entries fleet's agent would.

mod support;

use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use etcd_client::{Client, GetOptions};
use prometheus_parse::{Scrape, Value};
use support::etcd::{Etcd, http_request};
use support::kaylee::Server;
use support::output_with_timeout;

const KAYLEE: &str = env!("CARGO_BIN_EXE_kaylee");
const FLEET_JOBS: &str = "/_coreos.com/fleet/job/k:countly:";
const FLEET_STATES: &str = "/_coreos.com/fleet/states/";

fn countly() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/examples/countly.yaml")
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Polls `f` every 100 ms until it returns `Some`, for at most `timeout`.
fn eventually<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A `kaylee server` (the shared harness's, killed on drop) and the port
/// its endpoints listen on.
struct Endpoints {
    server: Server,
    port: u16,
}

impl Endpoints {
    fn start(etcd: &Etcd, name: &str) -> Endpoints {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let server = Server::start(&etcd.endpoint(), name, &["--listen", &listen]);
        Endpoints { server, port }
    }

    fn log(&self) -> String {
        self.server.log()
    }

    fn get(&self, path: &str) -> Option<(u16, String)> {
        http_request(self.port, "GET", path, None, Duration::from_secs(5)).ok()
    }

    /// Waits until `/readyz` answers 200 with the given leadership.
    fn await_ready(&self, leader: bool) -> String {
        let want = format!("\"leader\":{leader}");
        eventually(Duration::from_secs(20), || {
            self.get("/readyz")
                .filter(|(status, body)| *status == 200 && body.contains(&want))
                .map(|(_, body)| body)
        })
        .unwrap_or_else(|| {
            panic!(
                "server on port {} not ready with leader={leader}; log:\n{}",
                self.port,
                self.log()
            )
        })
    }

    fn scrape(&self) -> Scrape {
        let (status, body) = self.get("/metrics").expect("GET /metrics");
        assert_eq!(status, 200, "/metrics answered {status}: {body}");
        Scrape::parse(body.lines().map(|l| Ok(l.to_string())))
            .unwrap_or_else(|e| panic!("/metrics is not Prometheus text ({e}):\n{body}"))
    }
}

/// The value of the sample `metric` whose labels include `labels`.
fn sample(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .find_map(|s| match s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(v),
            _ => None,
        })
}

fn kaylee(etcd: &Etcd, args: &[&str], timeout: Duration) -> Output {
    let mut cmd = Command::new(KAYLEE);
    cmd.args(["--etcd-endpoints", &etcd.endpoint()]).args(args);
    output_with_timeout(&mut cmd, timeout).unwrap_or_else(|| panic!("kaylee {args:?} hung"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn metrics_health_and_readiness_of_a_leader_and_a_standby() {
    let etcd = Etcd::start();
    let leader = Endpoints::start(&etcd, "leader");
    let body = leader.await_ready(true);
    assert!(body.contains("\"etcd\":true") && body.contains("\"synced\":true"));
    assert_eq!(leader.get("/healthz").map(|r| r.0), Some(200));

    let standby = Endpoints::start(&etcd, "standby");
    standby.await_ready(false);
    assert_eq!(
        sample(&standby.scrape(), "kaylee_is_leader", &[]),
        Some(0.0),
        "a standby reports kaylee_is_leader 0 from start-up"
    );

    let before = leader.scrape();
    assert_eq!(sample(&before, "kaylee_is_leader", &[]), Some(1.0));
    let ok = |s: &Scrape| sample(s, "kaylee_reconcile_total", &[("result", "ok")]).unwrap_or(0.0);
    let ok_before = ok(&before);

    let countly = countly();
    let out = kaylee(
        &etcd,
        &["run", countly.to_str().expect("utf-8 path")],
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "kaylee run: {}", text(&out.stderr));

    let after = eventually(Duration::from_secs(15), || {
        Some(leader.scrape()).filter(|s| ok(s) > ok_before)
    })
    .unwrap_or_else(|| {
        panic!(
            "kaylee_reconcile_total{{result=\"ok\"}} stayed at {ok_before}; log:\n{}",
            leader.log()
        )
    });
    assert_eq!(
        sample(&after, "kaylee_fleet_writes_total", &[("op", "create")]),
        Some(4.0)
    );
    assert!(
        after
            .samples
            .iter()
            .any(|s| s.metric == "kaylee_reconcile_duration_seconds"),
        "the reconcile histogram is exported"
    );
}

#[test]
fn run_wait_times_out_when_nothing_runs_the_units() {
    let etcd = Etcd::start();
    let server = Endpoints::start(&etcd, "leader");
    server.await_ready(true);
    let countly = countly();
    // No fleet agent: the units are written but never reported running.
    let out = kaylee(
        &etcd,
        &[
            "run",
            "--wait",
            "--timeout",
            "5s",
            countly.to_str().expect("utf-8 path"),
        ],
        Duration::from_secs(60),
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains("timed out after 5s waiting for countly: 0/4 available, progressing")
            && stderr.contains("no fleet machine is registered in this cluster"),
        "stderr: {stderr}"
    );
}

/// What fleet's agent on machine `m1` would report for every job of
/// countly: its machine, and each job loaded, active, running. Returns how
/// many jobs it wrote.
async fn report_running(client: &mut Client) -> usize {
    client
        .put(
            "/_coreos.com/fleet/machines/m1/object",
            r#"{"ID":"m1","PublicIP":"127.0.0.1","Metadata":{},"Version":"1.0.0"}"#,
            None,
        )
        .await
        .expect("announcing machine m1");
    let jobs = client
        .get(FLEET_JOBS, Some(GetOptions::new().with_prefix()))
        .await
        .expect("listing fleet jobs");
    let mut written = 0;
    for kv in jobs.kvs() {
        let key = kv.key_str().expect("utf-8 key");
        let Some(name) = key
            .strip_prefix("/_coreos.com/fleet/job/")
            .and_then(|k| k.strip_suffix("/object"))
        else {
            continue;
        };
        let object: serde_json::Value = serde_json::from_slice(kv.value()).expect("job object");
        let hash: String = object["UnitHash"]
            .as_array()
            .expect("UnitHash bytes")
            .iter()
            .map(|b| format!("{:02x}", b.as_u64().unwrap_or(0)))
            .collect();
        let state = serde_json::json!({
            "loadState": "loaded",
            "activeState": "active",
            "subState": "running",
            "machineState": {"ID": "m1"},
            "unitHash": hash,
        });
        client
            .put(format!("{FLEET_STATES}{name}/m1"), state.to_string(), None)
            .await
            .expect("writing a fleet state");
        written += 1;
    }
    written
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_wait_succeeds_once_fleet_reports_every_replica_running() {
    let etcd = Etcd::start();
    let server = Endpoints::start(&etcd, "leader");
    tokio::task::block_in_place(|| server.await_ready(true));

    let countly = countly();
    let mut cmd = Command::new(KAYLEE);
    cmd.args(["--etcd-endpoints", &etcd.endpoint()])
        .args(["run", "--wait", "--timeout", "60s"])
        .arg(&countly);
    let waiting = tokio::task::spawn_blocking(move || {
        output_with_timeout(&mut cmd, Duration::from_secs(90)).expect("kaylee run --wait hung")
    });

    // Play fleet's agent once the leader has written all four jobs.
    let mut client = Client::connect([etcd.endpoint()], None)
        .await
        .expect("connecting to etcd");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if report_running(&mut client).await == 4 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the leader did not write 4 fleet jobs; log:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let out = waiting.await.expect("the waiting task");
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "kaylee run --wait failed; stdout: {stdout}\nstderr: {}\nserver log:\n{}",
        text(&out.stderr),
        server.log()
    );
    assert!(
        stdout.contains("countly: rolled out, 4/4 available"),
        "stdout: {stdout}"
    );
}
