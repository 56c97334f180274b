//! The controller tests' cluster: a real etcd with fleet's registry on the
//! API under test, `kaylee` servers and CLI against it, and what they wait on.

use crate::support::etcd::Etcd;
use crate::support::fleet::{Api, FLEET, FleetView, Snapshot};
use crate::support::kaylee::{Server, cli_ok};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

pub const WAIT: Duration = Duration::from_secs(20);

pub struct Cluster {
    pub etcd: Etcd,
    pub fleet: FleetView,
    pub api: Api,
}

impl Cluster {
    pub async fn start(api: Api) -> Cluster {
        let etcd = api.etcd();
        let fleet = FleetView::connect_on(&etcd.endpoint(), api).await;
        Cluster { etcd, fleet, api }
    }

    pub fn server(&self, name: &str) -> Server {
        let server = Server::start_on(&self.etcd.endpoint(), name, self.api, &[]);
        server.wait_log("leading", WAIT);
        server
    }

    pub fn kaylee(&self, args: &[&str]) -> String {
        cli_ok(&self.etcd.endpoint(), args)
    }

    pub async fn put(&self, key: &str, value: &str) {
        let mut kv = self.fleet.client().kv_client();
        kv.put(key, value, None).await.expect("put");
    }

    pub async fn get(&self, key: &str) -> Option<String> {
        let mut kv = self.fleet.client().kv_client();
        let resp = kv.get(key, None).await.expect("get");
        resp.kvs()
            .first()
            .map(|k| String::from_utf8_lossy(k.value()).into_owned())
    }

    /// countly (4 replicas) and api (2), converged in fleet's registry.
    pub async fn run_examples(&self) -> Snapshot {
        self.kaylee(&[
            "run",
            "deploy/examples/countly.yaml",
            "deploy/examples/api.yaml",
        ]);
        self.fleet
            .wait_for("6 jobs", WAIT, |s| s.jobs.len() == 6)
            .await
    }

    pub async fn status(&self, unit: &str) -> Option<Value> {
        let text = self.get(&format!("/kaylee/status/{unit}")).await?;
        serde_json::from_str(&text).ok()
    }

    pub async fn wait_status(
        &self,
        unit: &str,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            if let Some(s) = self.status(unit).await
                && done(&s)
            {
                return s;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "status of {unit} never showed {what}: {:?}",
                self.status(unit).await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub fn unit_file(dir: &tempfile::TempDir, name: &str, yaml: &str) -> String {
    let path = dir.path().join(format!("{name}.yaml"));
    std::fs::write(&path, yaml).expect("writing a unit file");
    path.display().to_string()
}

pub fn countly(replicas: u32, image: &str) -> String {
    format!(
        "name: countly\nspec:\n  replicas: {replicas}\n  maxReplicasPerHost: 2\n  image: {image}\n  \
         env:\n  - name: MONGO_URL\n    value: mongodb://mongo-1.k.lan,mongo-2.k.lan,mongo-3.k.lan/countly?replicaSet=main\n  \
         machine:\n  - 'ssd=false'\n"
    )
}

/// Asserts the fleet registry holds exactly `records` for `unit`'s jobs.
pub fn assert_exactly(snap: &Snapshot, unit: &str, records: &BTreeMap<String, String>) {
    for (key, value) in records {
        assert_eq!(
            snap.keys.get(key).map(|(v, _)| v),
            Some(value),
            "record {key}"
        );
    }
    let job_keys: Vec<&String> = snap
        .keys
        .keys()
        .filter(|k| k.starts_with(&format!("{FLEET}job/k:{unit}:")))
        .collect();
    let expected: Vec<&String> = records.keys().filter(|k| k.contains("/job/")).collect();
    assert_eq!(job_keys, expected, "no other job keys");
}
