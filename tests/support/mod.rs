//! Shared harness for the root package's integration tests.
//!
//! Each `tests/*.rs` file does `mod support;` and uses what it needs:
//!
//! * [`etcd::Etcd`]: a real `etcd` (Debian's `etcd-server`) per test, on
//!   free loopback ports with a temporary data directory, killed on drop.
//! * [`docker`]: a real Docker engine; `require_docker!()` skips a test
//!   loudly when none answers, [`docker::test_image`] builds a local
//!   busybox image from scratch (never pulls), and [`docker::Container`]
//!   removes its container on drop.
//! * [`proxy::Proxy`]: a TCP front for a Unix socket or TCP server that a
//!   test can cut off (open connections dropped, new ones refused) and
//!   restore.
//! * [`standin::Standin`]: a `fleet-standin` process (fleet's engine and
//!   agents, running units on the local Docker engine or simulated), killed
//!   by PID on drop.
//!
//! Not every test file uses everything, hence the `dead_code` allowance.
#![allow(dead_code)]
#![allow(unused_macros)]

pub mod agent;
pub mod docker;
pub mod etcd;
pub mod fleet;
pub mod kaylee;
pub mod proxy;
pub mod standin;
pub mod tls;
pub mod v2;

/// Generates, for each `async fn scenario(api: Api)` named, one test per
/// fleet etcd API: `v2::scenario` and `v3::scenario`. The scenario bodies
/// (and their assertions) are shared; only the API differs.
#[macro_export]
macro_rules! for_each_api {
    ($($scenario:ident),+ $(,)?) => {
        mod v2 {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario($crate::support::fleet::Api::V2).await
                }
            )+
        }
        mod v3 {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario($crate::support::fleet::Api::V3).await
                }
            )+
        }
    };
}

use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Waits for `child` to exit for at most `timeout`; `None` if it is still
/// running then.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => {}
            Err(e) => panic!("waiting for process {}: {e}", child.id()),
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `cmd` to completion with captured output, killing it (by PID) if it
/// has not finished within `timeout`. `None` when it could not be spawned or
/// timed out.
pub fn output_with_timeout(cmd: &mut Command, timeout: Duration) -> Option<Output> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().ok()?;
    // Drain the pipes on threads so a chatty child cannot block on a full pipe.
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out = thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stdout, &mut buf);
        buf
    });
    let err = thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stderr, &mut buf);
        buf
    });
    match wait_timeout(&mut child, timeout) {
        Some(status) => Some(Output {
            status,
            stdout: out.join().unwrap_or_default(),
            stderr: err.join().unwrap_or_default(),
        }),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            None
        }
    }
}

/// The last `max_lines` lines of a text file, or a note that it could not
/// be read.
pub fn file_tail(path: &Path, max_lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(max_lines);
            lines[start..].join("\n")
        }
        Err(e) => format!("<could not read {}: {e}>", path.display()),
    }
}
