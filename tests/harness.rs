//! Self-test of the shared test harness in `tests/support`: a real etcd that
//! starts, keeps its data across stop/kill and restart, and goes away on
//! drop; and, when a Docker engine answers, the local busybox test image and
//! a container guard.

mod support;

use std::path::PathBuf;

use support::docker::{self, Container};
use support::etcd::{Etcd, EtcdOptions};

// base64 of "harness-key" and "harness-value", for the v3 JSON gateway.
const KEY_B64: &str = "aGFybmVzcy1rZXk=";
const VALUE_B64: &str = "aGFybmVzcy12YWx1ZQ==";

fn put(etcd: &Etcd) {
    let (status, body) = etcd
        .http_post(
            "/v3/kv/put",
            &format!(r#"{{"key":"{KEY_B64}","value":"{VALUE_B64}"}}"#),
        )
        .expect("put through the v3 gateway");
    assert_eq!(status, 200, "put answered {status}: {body}");
}

fn value_is_there(etcd: &Etcd) -> bool {
    let (status, body) = etcd
        .http_post("/v3/kv/range", &format!(r#"{{"key":"{KEY_B64}"}}"#))
        .expect("range through the v3 gateway");
    assert_eq!(status, 200, "range answered {status}: {body}");
    body.contains(VALUE_B64)
}

#[test]
fn etcd_starts_healthy_on_loopback() {
    let mut etcd = Etcd::start();
    assert!(etcd.endpoint().starts_with("http://127.0.0.1:"));
    assert!(etcd.is_running());
    assert!(etcd.is_healthy());
    let (status, body) = etcd.http_get("/health").expect("GET /health");
    assert_eq!(status, 200);
    assert!(body.contains("true"), "health: {body}");
    assert!(etcd.pid() > 0);
    assert!(etcd.data_dir().exists());
}

#[test]
fn etcd_keeps_data_across_stop_kill_and_restart() {
    let mut etcd = Etcd::start();
    let endpoint = etcd.endpoint();
    let first_pid = etcd.pid();
    put(&etcd);
    assert!(value_is_there(&etcd));

    etcd.stop();
    assert!(!etcd.is_running());
    assert!(!etcd.is_healthy());
    etcd.restart();
    assert_eq!(etcd.endpoint(), endpoint, "restart keeps the ports");
    assert_ne!(etcd.pid(), first_pid);
    assert!(value_is_there(&etcd), "data survives stop + restart");

    etcd.kill();
    assert!(!etcd.is_running());
    etcd.restart();
    assert!(etcd.is_healthy());
    assert!(value_is_there(&etcd), "data survives SIGKILL + restart");
}

#[test]
fn etcd_pause_and_resume() {
    let etcd = Etcd::start();
    etcd.pause();
    assert!(!etcd.is_healthy(), "a paused etcd does not answer");
    etcd.resume();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !etcd.is_healthy() {
        assert!(
            std::time::Instant::now() < deadline,
            "etcd did not answer after SIGCONT"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn etcd_options_reach_the_command_line() {
    let v2 = Etcd::start_with(EtcdOptions {
        enable_v2: true,
        extra_args: vec!["--max-txn-ops=7".to_string()],
    });
    let (status, body) = v2.http_get("/v2/keys/").expect("GET /v2/keys/");
    assert_eq!(status, 200, "v2 enabled: {body}");

    let v3_only = Etcd::start();
    let (status, _) = v3_only.http_get("/v2/keys/").expect("GET /v2/keys/");
    assert_eq!(status, 404, "v2 is off by default");
}

#[test]
fn etcd_drop_kills_the_process_and_removes_the_directory() {
    let etcd = Etcd::start();
    let pid = nix::unistd::Pid::from_raw(etcd.pid() as i32);
    let dir: PathBuf = etcd.data_dir().parent().expect("temp dir").to_path_buf();
    drop(etcd);
    // Reaped, so the PID no longer names our process.
    assert!(
        nix::sys::signal::kill(pid, None).is_err(),
        "etcd still alive"
    );
    assert!(!dir.exists(), "temp dir left behind: {}", dir.display());
}

#[test]
fn docker_image_runs_busybox() {
    require_docker!();
    let image = docker::test_image();
    assert_eq!(image, docker::TEST_IMAGE);
    // Idempotent: the second call neither fails nor rebuilds.
    assert_eq!(docker::test_image(), image);
    let out = docker::docker_ok(&["run", "--rm", "--network", "none", &image, "echo", "hi"]);
    assert_eq!(out, "hi");
}

#[test]
fn docker_container_guard_removes_on_drop() {
    require_docker!();
    let image = docker::test_image();
    let container = Container::run(&[&image, "sleep", "100"]);
    let id = container.id().to_string();
    assert!(container.is_running());
    assert!(!container.ip().is_empty(), "a bridge network address");
    let out = container.exec(&["cat", "/proc/1/cmdline"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("sleep"));
    container.stop();
    assert!(!container.is_running());
    drop(container);
    assert!(
        !docker::docker(&["inspect", &id]).status.success(),
        "container {id} left behind"
    );
}
