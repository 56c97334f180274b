//! The availability tests' world: a real etcd on the fleet API under test,
//! fleet played by `fleet-standin` (its engine and agents, running units
//! on the local Docker engine), Kaylee servers that register their
//! machine's containers, unit files, and what the tests read back.

use crate::support::docker::docker_ok;
use crate::support::etcd::Etcd;
use crate::support::fleet::{Api, FleetView};
use crate::support::kaylee::{BIN, Server, cli};
use crate::support::standin::Standin;
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// What a test container runs: busybox's sh as PID 1 exits on SIGTERM at
/// once, so a `docker stop` is quick.
pub const SLEEPER: &str = "sh -c \"trap 'exit 0' TERM; while true; do sleep 1; done\"";

pub struct World {
    pub etcd: Etcd,
    pub fleet: FleetView,
    pub api: Api,
    /// This test's unit name: its fleet units and containers are its own.
    pub unit: String,
    dir: TempDir,
    pub servers: Vec<Server>,
}

impl World {
    /// `test` names the unit (with the process id and API, so parallel
    /// tests never share a container).
    pub async fn new(api: Api, test: &str) -> World {
        let etcd = api.etcd();
        let fleet = FleetView::connect_on(&etcd.endpoint(), api).await;
        World {
            unit: format!("{test}{}{}", std::process::id(), api.flag()),
            etcd,
            fleet,
            api,
            dir: tempfile::tempdir().expect("temp dir for unit files"),
            servers: Vec::new(),
        }
    }

    pub fn endpoint(&self) -> String {
        self.etcd.endpoint()
    }

    /// A fleet stand-in process for `machines` (and the engine, when
    /// `engine`), running units on Docker, retrying a failed start every
    /// second.
    pub fn machines(&self, machines: &[&str], engine: bool, extra: &[&str]) -> Standin {
        let mut args: Vec<&str> = Vec::new();
        for m in machines {
            args.extend(["--machine", m]);
        }
        if engine {
            args.push("--engine");
        }
        args.extend(["--restart-sec", "1s"]);
        args.extend_from_slice(extra);
        Standin::start(&self.endpoint(), self.api, &args)
    }

    /// A Kaylee server on `machine` (registering its containers, or not
    /// when `machine` is `None`), with no network unit, short deadlines.
    pub fn server(&mut self, name: &str, machine: Option<&str>) {
        let mut args = vec![
            "--network-unit",
            "",
            "--schedule-grace",
            "3s",
            "--start-timeout",
            "30s",
        ];
        if let Some(m) = machine {
            args.extend(["--machine-id", m]);
        }
        let server = Server::start_on(&self.endpoint(), name, self.api, &args);
        // The first one leads; the others stand by (and register).
        let ready = match (self.servers.is_empty(), machine) {
            (true, _) => "caches synced",
            (false, Some(_)) => "resynced registrations",
            (false, None) => "fleet registry",
        };
        server.wait_log(ready, Duration::from_secs(30));
        self.servers.push(server);
    }

    /// Writes a unit file of this test's unit with `spec` (YAML lines under
    /// `spec:`), named `file`.
    pub fn unit_file(&self, file: &str, spec: &str) -> String {
        let path: PathBuf = self.dir.path().join(format!("{file}.yaml"));
        let text = format!("name: {}\nspec:\n{spec}", self.unit);
        std::fs::write(&path, text).expect("writing a unit file");
        path.to_string_lossy().into_owned()
    }

    /// Runs the CLI; its output.
    pub fn kaylee(&self, args: &[&str]) -> Output {
        cli(&self.endpoint(), args)
    }

    /// Runs the CLI with a deadline of its own (for `--wait`).
    pub fn kaylee_within(&self, args: &[&str], limit: Duration) -> (Output, Duration) {
        let mut cmd = Command::new(BIN);
        cmd.arg("--etcd-endpoints").arg(self.endpoint()).args(args);
        let started = Instant::now();
        let out = crate::support::output_with_timeout(&mut cmd, limit)
            .unwrap_or_else(|| panic!("kaylee {args:?} did not finish within {limit:?}"));
        (out, started.elapsed())
    }

    /// The unit's status as the leader last wrote it.
    pub async fn status(&self) -> Option<Value> {
        let mut kv = self.fleet.client().kv_client();
        let resp = kv
            .get(format!("/kaylee/status/{}", self.unit), None)
            .await
            .ok()?;
        let kv = resp.kvs().first()?;
        serde_json::from_slice(kv.value()).ok()
    }

    /// etcd's revision now: where [`World::status_written_since`] starts.
    pub async fn revision(&self) -> i64 {
        let mut kv = self.fleet.client().kv_client();
        let resp = kv.get("/", None).await.expect("reading etcd's revision");
        resp.header().map(|h| h.revision()).unwrap_or_default()
    }

    /// The first status written after `revision` on which `done` holds,
    /// read from etcd's history (a watch from that revision), so one that
    /// a later write replaced at once is not missed as polling could.
    pub async fn status_written_since(
        &self,
        revision: i64,
        what: &str,
        limit: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let key = format!("/kaylee/status/{}", self.unit);
        let options = etcd_client::WatchOptions::new().with_start_revision(revision + 1);
        let mut watch = self.fleet.client().watch_client();
        let mut stream = watch
            .watch(key, Some(options))
            .await
            .expect("watching the status");
        let found = tokio::time::timeout(limit, async {
            while let Ok(Some(resp)) = stream.message().await {
                for event in resp.events() {
                    let status = event
                        .kv()
                        .and_then(|kv| serde_json::from_slice::<Value>(kv.value()).ok());
                    if let Some(s) = status.filter(|s| done(s)) {
                        return Some(s);
                    }
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(s)) => s,
            _ => panic!(
                "no status written after revision {revision} showed {what} within {limit:?}; now: {:#?}",
                self.status().await
            ),
        }
    }

    /// Polls the status until `done` holds on it; panics with the last
    /// status and the servers' logs after `limit`.
    pub async fn wait_status(
        &self,
        what: &str,
        limit: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let status = self.status().await;
            if let Some(s) = status.as_ref().filter(|s| done(s)) {
                return s.clone();
            }
            if Instant::now() > deadline {
                let logs: Vec<String> = self.servers.iter().map(|s| s.log()).collect();
                panic!(
                    "timed out after {limit:?} waiting for {what}; status: {status:#?}\nserver logs:\n{}",
                    logs.join("\n----\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Fleet units of this unit that an agent reports running on a machine
    /// present in fleet, by spec hash.
    pub async fn running_by_spec(&self) -> std::collections::BTreeMap<String, usize> {
        let snap = self.fleet.snapshot().await;
        let machines = self.live_machines().await;
        let mut out = std::collections::BTreeMap::new();
        for (name, _) in snap.jobs_of(&self.unit) {
            let on_live = snap
                .running
                .get(&name)
                .is_some_and(|ms| ms.iter().any(|m| machines.contains(m)));
            if on_live {
                let hash = crate::support::fleet::spec_hash_of(&name).to_string();
                *out.entry(hash).or_default() += 1;
            }
        }
        out
    }

    /// Machines present in fleet's `machines/`.
    pub async fn live_machines(&self) -> Vec<String> {
        let prefix = format!("{}machines/", crate::support::fleet::FLEET);
        self.fleet
            .tree(&prefix)
            .await
            .into_iter()
            .filter_map(|(k, _)| {
                k.strip_prefix(&prefix)?
                    .strip_suffix("/object")
                    .map(str::to_string)
            })
            .collect()
    }
}

impl Drop for World {
    /// The servers go first (they own nothing Docker keeps); the stand-ins
    /// the test holds stop their containers when dropped; whatever a killed
    /// stand-in left running is removed here, by label.
    fn drop(&mut self) {
        self.servers.clear();
        let label = format!("label=kaylee.name={}", self.unit);
        let ids = docker_ok(&["ps", "-aq", "--filter", &label]);
        for id in ids.lines().filter(|l| !l.is_empty()) {
            crate::support::docker::remove_container(id);
        }
    }
}
