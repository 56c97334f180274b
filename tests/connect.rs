//! Reaching etcd: a clear error when no endpoint answers, and a dead
//! endpoint among live ones is skipped rather than failing requests.

mod support;

use std::time::{Duration, Instant};
use support::etcd::Etcd;
use support::kaylee::{Server, cli};

fn dead_endpoint() -> String {
    // Bound, then closed: nothing listens there now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    format!("http://127.0.0.1:{port}")
}

#[test]
fn no_live_endpoint_is_a_clear_error_within_seconds() {
    let (a, b) = (dead_endpoint(), dead_endpoint());
    let started = Instant::now();
    let out = cli(&format!("{a},{b}"), &["ls"]);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot reach etcd"), "{err}");
    assert!(
        err.contains(&a) && err.contains(&b),
        "names every endpoint: {err}"
    );
    assert!(err.contains("Connection refused"), "says why: {err}");
}

#[test]
fn a_dead_endpoint_among_live_ones_is_skipped() {
    let etcd = Etcd::start();
    let endpoints = format!("{},{}", dead_endpoint(), etcd.endpoint());
    for _ in 0..5 {
        let out = cli(&endpoints, &["ls"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let server = Server::start(&endpoints, "s1", &[]);
    server.wait_log("leading", Duration::from_secs(20));
}
