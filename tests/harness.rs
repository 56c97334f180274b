//! Self-test of the shared test harness in `tests/support`: a real etcd that
//! starts, keeps its data across stop/kill and restart, and goes away on
//! drop; and, when a Docker engine answers, the local busybox test image and
//! a container guard. The proxy that cuts connections needs neither.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use support::docker::{self, Container};
use support::etcd::{Etcd, EtcdOptions};
use support::proxy::{Proxy, Upstream};

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

#[test]
fn docker_container_rename_is_followed() {
    require_docker!();
    let image = docker::test_image();
    let name = format!("kaylee-harness-rename-{}", std::process::id());
    let mut container = Container::run(&["--name", &name, &image, "sleep", "100"]);
    assert_eq!(container.name(), name);
    let renamed = format!("{name}-renamed");
    container.rename(&renamed);
    assert_eq!(container.name(), renamed);
    let id = container.id().to_string();
    drop(container);
    assert!(
        !docker::docker(&["inspect", &id]).status.success(),
        "renamed container {id} left behind"
    );
}

/// Serves `stream` by echoing back what it reads.
fn echo<S>(stream: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    tokio::spawn(async move {
        let (mut r, mut w) = tokio::io::split(stream);
        let _ = tokio::io::copy(&mut r, &mut w).await;
    });
}

/// Sends `message` through a connection to the proxy and reads it back.
async fn round_trip(stream: &mut tokio::net::TcpStream, message: &[u8]) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(message).await.expect("write to the proxy");
    let mut back = vec![0; message.len()];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut back))
        .await
        .expect("an echo within 5 s")
        .expect("read from the proxy");
    assert_eq!(back, message);
}

/// Whether the proxy closes `stream` (end of file or reset) within 5 s.
async fn is_closed(stream: &mut tokio::net::TcpStream) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0; 16];
    matches!(
        tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

async fn check_proxy(upstream: Upstream) {
    let proxy = Proxy::start(upstream).await;
    let connect = || tokio::net::TcpStream::connect(proxy.addr());
    let mut open = connect().await.expect("connecting to the proxy");
    round_trip(&mut open, b"before the cut").await;

    proxy.cut();
    assert!(
        is_closed(&mut open).await,
        "an open connection survived the cut"
    );
    let mut refused = connect().await.expect("the listener still accepts");
    assert!(
        is_closed(&mut refused).await,
        "a connection got through a cut"
    );

    proxy.restore();
    let mut again = connect().await.expect("connecting after the restore");
    round_trip(&mut again, b"after the restore").await;
}

#[tokio::test]
async fn proxy_to_tcp_forwards_cuts_and_restores() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("an upstream port");
    let addr = listener.local_addr().expect("upstream address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            echo(stream);
        }
    });
    check_proxy(Upstream::Tcp(addr.to_string())).await;
}

#[tokio::test]
async fn proxy_to_unix_socket_forwards_cuts_and_restores() {
    let dir = tempfile::tempdir().expect("a directory for the socket");
    let path = dir.path().join("upstream.sock");
    let listener = tokio::net::UnixListener::bind(&path).expect("an upstream socket");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            echo(stream);
        }
    });
    check_proxy(Upstream::Unix(path)).await;
}
