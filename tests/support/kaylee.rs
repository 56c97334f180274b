//! `kaylee` processes for integration tests: servers run as real child
//! processes (so they can be SIGKILLed), killed by PID on drop.

use super::fleet::Api;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

pub const BIN: &str = env!("CARGO_BIN_EXE_kaylee");

/// Runs one CLI command against `etcd` and returns its output.
pub fn cli(etcd: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("--etcd-endpoints").arg(etcd).args(args);
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"));
    super::output_with_timeout(&mut cmd, Duration::from_secs(60))
        .unwrap_or_else(|| panic!("kaylee {args:?} did not finish"))
}

/// Like [`cli`], panicking with stderr unless it succeeds; returns stdout.
pub fn cli_ok(etcd: &str, args: &[&str]) -> String {
    let out = cli(etcd, args);
    assert!(
        out.status.success(),
        "kaylee {args:?} failed ({:?}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub struct Server {
    child: Option<Child>,
    pub name: String,
    log: PathBuf,
    _dir: TempDir,
}

impl Server {
    /// [`Server::start_on`] with fleet's registry in v3 keys, for tests
    /// that are not about fleet's registry (a v3-only etcd suffices).
    pub fn start(etcd: &str, name: &str, extra: &[&str]) -> Server {
        Server::start_on(etcd, name, Api::V3, extra)
    }

    /// Starts `kaylee server` named `name` (stored in the leader key) with
    /// fleet's registry through `api`, a short lease and `extra` flags;
    /// without `--machine-id` among them it runs no container registrator.
    pub fn start_on(etcd: &str, name: &str, api: Api, extra: &[&str]) -> Server {
        Server::spawn(etcd, name, Some(api), extra)
    }

    /// Like [`Server::start_on`], leaving the fleet API to the binary's
    /// default.
    pub fn start_default_api(etcd: &str, name: &str, extra: &[&str]) -> Server {
        Server::spawn(etcd, name, None, extra)
    }

    fn spawn(etcd: &str, name: &str, api: Option<Api>, extra: &[&str]) -> Server {
        let dir = tempfile::Builder::new()
            .prefix("kaylee-test-server-")
            .tempdir()
            .expect("temp dir for a server log");
        let log = dir.path().join("server.log");
        let out = File::create(&log).expect("server log file");
        let err = out.try_clone().expect("server log file");
        let mut args: Vec<&str> = vec!["--etcd-endpoints", etcd, "server", "--name", name];
        if let Some(api) = api {
            args.extend(["--fleet-etcd-api", api.flag()]);
        }
        // Defaults for tests, unless the test sets them itself.
        // Port 0: parallel tests each get their own metrics port.
        let defaults = [
            ("--lease-ttl", "3s"),
            ("--start-timeout", "60s"),
            ("--listen", "127.0.0.1:0"),
        ];
        for (flag, value) in defaults {
            if !extra.contains(&flag) {
                args.extend([flag, value]);
            }
        }
        // Only tests about registration (which name a machine) talk to Docker.
        if !extra.contains(&"--machine-id") {
            args.push("--no-registrator");
        }
        args.extend_from_slice(extra);
        let child = Command::new(BIN)
            .args(&args)
            .env("RUST_LOG", "info,kaylee_controllers=debug")
            .env("NO_COLOR", "1")
            .env_remove("KAYLEE_FLEET_ETCD_API")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawning kaylee server");
        Server {
            child: Some(child),
            name: name.to_string(),
            log,
            _dir: dir,
        }
    }

    pub fn pid(&self) -> Pid {
        let child = self.child.as_ref().expect("server is running");
        Pid::from_raw(child.id() as i32)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, signal: Signal) {
        let _ = kill(self.pid(), signal);
    }

    /// Waits for the process to exit after a signal; panics after `limit`.
    pub fn wait_exit(&mut self, limit: Duration) {
        if !self.try_wait_exit(limit) {
            panic!(
                "server {} did not exit within {limit:?}:\n{}",
                self.name,
                self.log()
            );
        }
    }

    /// Like [`Server::wait_exit`], but a server still running after `limit`
    /// is killed and reported with `false` instead of a panic.
    pub fn try_wait_exit(&mut self, limit: Duration) -> bool {
        let mut child = self.child.take().expect("server is running");
        if super::wait_timeout(&mut child, limit).is_none() {
            let _ = child.kill();
            let _ = child.wait();
            return false;
        }
        true
    }

    /// Whether the process has exited (or was already waited for).
    pub fn exited(&mut self) -> bool {
        match self.child.as_mut() {
            None => true,
            Some(child) => !matches!(child.try_wait(), Ok(None)),
        }
    }

    pub fn sigkill(&mut self) {
        self.signal(Signal::SIGKILL);
        self.wait_exit(Duration::from_secs(10));
    }

    /// Waits until the log contains `needle`.
    pub fn wait_log(&self, needle: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.log().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "server {} never logged {needle:?} within {limit:?}:\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The records `kaylee render -o json` says `file` becomes, keyed by their
/// absolute etcd key under fleet's default prefix.
pub fn rendered_records(etcd: &str, file: &str) -> std::collections::BTreeMap<String, String> {
    let out = cli_ok(etcd, &["render", file, "-o", "json"]);
    let units: serde_json::Value = serde_json::from_str(&out).expect("render JSON");
    let mut records = std::collections::BTreeMap::new();
    for u in units.as_array().expect("array") {
        for r in u["records"].as_array().expect("records") {
            records.insert(
                format!("{}{}", super::fleet::FLEET, r["key"].as_str().expect("key")),
                r["value"].as_str().expect("value").to_string(),
            );
        }
    }
    records
}
