//! The fleet stand-in's tests' world: an etcd serving one fleet API, fleet
//! records written as Kaylee writes them, states and keys read back, and
//! unit texts in the form Kaylee renders (written by hand, so these tests
//! do not depend on the renderer).

use crate::support::etcd::Etcd;
use crate::support::fleet::{Api, FLEET, FleetView};
use crate::support::v2;
use etcd_client::DeleteOptions;
use kaylee_controllers::fleet::records::{create_records, unit_hash, unit_key};
use std::future::Future;
use std::time::{Duration, Instant};

/// Long enough for a loaded 2-core machine; each wait ends as soon as its
/// condition holds.
pub const WAIT: Duration = Duration::from_secs(20);

/// A unit state as fleet's agents publish it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitState {
    pub active: String,
    pub sub: String,
    pub unit_hash: String,
    pub machine: String,
}

impl UnitState {
    /// `active/sub`.
    pub fn pair(&self) -> String {
        format!("{}/{}", self.active, self.sub)
    }
}

/// An etcd for one fleet API and a view of fleet's registry in it.
pub struct World {
    pub api: Api,
    pub etcd: Etcd,
    pub view: FleetView,
}

impl World {
    pub async fn new(api: Api) -> World {
        let etcd = api.etcd();
        let view = FleetView::connect_on(&etcd.endpoint(), api).await;
        World { api, etcd, view }
    }

    pub fn endpoint(&self) -> String {
        self.etcd.endpoint()
    }

    /// Creates and launches fleet unit `name` (Kaylee's three records).
    pub async fn submit(&self, name: &str, text: &str) {
        for record in create_records(name, text) {
            self.view.put(&record.key, &record.value).await;
        }
    }

    /// Destroys fleet unit `name`, as Kaylee and fleetctl do: the whole
    /// `job/<name>/` directory.
    pub async fn destroy(&self, name: &str) {
        let dir = format!("{FLEET}job/{name}");
        match self.api {
            Api::V2 => v2::delete_all(self.etcd.client_port(), &dir).await,
            Api::V3 => {
                let mut kv = self.view.client().kv_client();
                kv.delete(format!("{dir}/"), Some(DeleteOptions::new().with_prefix()))
                    .await
                    .expect("deleting a job");
            }
        }
    }

    /// A key under the fleet prefix (`None` when missing or etcd is down).
    pub async fn key(&self, relative: &str) -> Option<String> {
        self.view.try_get(relative).await.flatten()
    }

    /// `states/<name>/<machine>`.
    pub async fn state(&self, name: &str, machine: &str) -> Option<UnitState> {
        let value = self.key(&format!("states/{name}/{machine}")).await?;
        let v: serde_json::Value = serde_json::from_str(&value).expect("state JSON");
        let text = |f: &str| v[f].as_str().unwrap_or_default().to_string();
        Some(UnitState {
            active: text("activeState"),
            sub: text("subState"),
            unit_hash: text("unitHash"),
            machine: v["machineState"]["ID"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        })
    }

    /// Sets `job/<name>/target-state` (`fleetctl stop` writes `loaded`).
    pub async fn set_target_state(&self, name: &str, state: &str) {
        self.view
            .put(&format!("job/{name}/target-state"), state)
            .await;
    }

    /// Waits until `machine` reports unit `name` as `pair` (e.g.
    /// `active/running`).
    pub async fn wait_state(
        &self,
        name: &str,
        machine: &str,
        pair: &str,
        context: impl Fn() -> String,
    ) -> UnitState {
        let what = format!("{name} {pair} on {machine}");
        self.wait(&what, WAIT, context, || async move {
            self.state(name, machine).await.filter(|s| s.pair() == pair)
        })
        .await
    }

    /// Waits until the key under the fleet prefix is gone.
    pub async fn wait_gone(&self, relative: &str, context: impl Fn() -> String) {
        let what = format!("{relative} to be gone");
        self.wait(&what, WAIT, context, || async move {
            self.key(relative).await.is_none().then_some(())
        })
        .await
    }

    /// `job/<name>/target`.
    pub async fn target(&self, name: &str) -> Option<String> {
        self.key(&format!("job/{name}/target")).await
    }

    /// Polls `check` until it gives a value; panics naming `what` (and the
    /// stand-in logs `context` gives) after `limit`.
    pub async fn wait<T, F, Fut>(
        &self,
        what: &str,
        limit: Duration,
        context: impl Fn() -> String,
        mut check: F,
    ) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(v) = check().await {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "[{}] timed out after {limit:?} waiting for {what}\n{}",
                self.api.flag(),
                context()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The hex SHA-1 of a unit text: its `unit/` key and its states' unitHash.
pub fn hash_hex(text: &str) -> String {
    unit_key(&unit_hash(text))
        .trim_start_matches("unit/")
        .to_string()
}

/// How a hand-written Kaylee unit differs from the plainest one.
#[derive(Debug, Clone, Default)]
pub struct Shape<'a> {
    /// `Requires=`/`After=` (Kaylee's `--network-unit`).
    pub network_unit: Option<&'a str>,
    pub env_files: &'a [&'a str],
    /// Words between the label and the image, as written in the unit.
    pub run_args: &'a str,
    /// The command after the image, as written in the unit.
    pub cmd: &'a str,
    pub xfleet: &'a [&'a str],
}

/// A unit in the form `kaylee render` gives (README, "What a unit becomes
/// in fleet") for fleet unit `fleet_name` of Kaylee unit `unit`.
pub fn kaylee_unit(fleet_name: &str, unit: &str, image: &str, shape: &Shape<'_>) -> String {
    let c = kaylee_controllers::fleet::container_name(fleet_name);
    let mut text = format!("[Unit]\nDescription=Kaylee unit {unit} (replica 1)\n");
    if let Some(net) = shape.network_unit {
        text.push_str(&format!("Requires={net}\nAfter={net}\n"));
    }
    text.push_str("\n[Service]\n");
    for f in shape.env_files {
        text.push_str(&format!("EnvironmentFile={f}\n"));
    }
    let mut run = format!("--rm --name {c} -l kaylee.name={unit}");
    if !shape.run_args.is_empty() {
        run = format!("{run} {}", shape.run_args);
    }
    let cmd = if shape.cmd.is_empty() {
        String::new()
    } else {
        format!(" {}", shape.cmd)
    };
    text.push_str(&format!(
        "TimeoutStartSec=0\n\
         ExecStartPre=/usr/bin/docker pull {image}\n\
         ExecStartPre=-/usr/bin/docker kill {c}\n\
         ExecStartPre=-/usr/bin/docker rm {c}\n\
         ExecStart=/usr/bin/docker run {run} {image}{cmd}\n\
         ExecStop=-/usr/bin/docker stop {c}\n\
         Restart=always\n\
         RestartSec=30\n"
    ));
    if !shape.xfleet.is_empty() {
        text.push_str("\n[X-Fleet]\n");
        for line in shape.xfleet {
            text.push_str(line);
            text.push('\n');
        }
    }
    text
}
