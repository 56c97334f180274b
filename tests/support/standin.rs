//! `fleet-standin` processes for integration tests: fleet's engine and
//! agents as a real child process (so a test can SIGKILL a machine), its
//! log in a temporary file, stopped by PID on drop.
//!
//! ```ignore
//! let etcd = Api::V2.etcd();
//! let fleet = Standin::start(&etcd.endpoint(), Api::V2, &[
//!     "--machine", "m1", "--metadata", "m1:ssd=true", "--engine", "--simulate",
//! ]);
//! // write records with kaylee_controllers::fleet::records::create_records,
//! // then read states/<name>/m1 …
//! fleet.wait_log("active/running", Duration::from_secs(10));
//! ```

use super::fleet::Api;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

pub const BIN: &str = env!("CARGO_BIN_EXE_fleet-standin");

/// How long a stand-in gets to stop its units after SIGTERM on drop.
const DROP_GRACE: Duration = Duration::from_secs(30);

/// A running `fleet-standin`.
pub struct Standin {
    child: Option<Child>,
    log: PathBuf,
    _dir: TempDir,
}

impl Standin {
    /// Starts `fleet-standin` against `etcd` with fleet's registry through
    /// `api`, and `args` (machines, `--engine`, …). Test defaults unless
    /// `args` set them: `--interval 200ms`, `--ttl 3s`.
    pub fn start(etcd: &str, api: Api, args: &[&str]) -> Standin {
        let dir = tempfile::Builder::new()
            .prefix("kaylee-test-standin-")
            .tempdir()
            .expect("temp dir for a stand-in log");
        let log = dir.path().join("standin.log");
        let out = File::create(&log).expect("stand-in log file");
        let err = out.try_clone().expect("stand-in log file");
        let mut full: Vec<&str> = vec!["--etcd-endpoints", etcd, "--fleet-etcd-api", api.flag()];
        for (flag, value) in [("--interval", "200ms"), ("--ttl", "3s")] {
            if !args.contains(&flag) {
                full.extend([flag, value]);
            }
        }
        full.extend_from_slice(args);
        let child = Command::new(BIN)
            .args(&full)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .env_remove("ETCDCTL_ENDPOINTS")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawning fleet-standin");
        Standin {
            child: Some(child),
            log,
            _dir: dir,
        }
    }

    /// The process id.
    pub fn pid(&self) -> Pid {
        let child = self.child.as_ref().expect("stand-in is running");
        Pid::from_raw(child.id() as i32)
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `needle`; panics with the log after
    /// `limit`.
    pub fn wait_log(&self, needle: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.log().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "fleet-standin never logged {needle:?} within {limit:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        match self.child.as_mut() {
            None => false,
            Some(child) => matches!(child.try_wait(), Ok(None)),
        }
    }

    /// SIGKILL, as a machine dies: nothing is cleaned up.
    pub fn sigkill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.wait();
        }
    }

    /// SIGTERM (stop every unit, clean up, exit); its exit status, or a
    /// panic with the log when it takes longer than `limit`.
    pub fn sigterm(&mut self, limit: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("stand-in is running");
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        match super::wait_timeout(&mut child, limit) {
            Some(status) => status,
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "fleet-standin did not stop within {limit:?} of SIGTERM:\n{}",
                    self.log()
                );
            }
        }
    }
}

impl Drop for Standin {
    fn drop(&mut self) {
        // SIGTERM first, so the units' containers are stopped too.
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            if super::wait_timeout(&mut child, DROP_GRACE).is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
