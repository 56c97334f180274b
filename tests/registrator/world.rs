//! The registrator tests' world: an etcd, a Docker client, this test's
//! containers, a running registrator, and waits on the keys it writes.

use super::SETTLE;
use crate::support::docker::{Container, test_image};
use crate::support::etcd::Etcd;
use crate::support::fleet::FLEET;
use etcd_client::{Client, GetOptions};
use kaylee_controllers::etcd::EtcdConfig;
use kaylee_controllers::etcd::EtcdPrefix;
use kaylee_controllers::registrator::{Docker, Registrator, RegistratorError, connect_docker};
use kaylee_controllers::registry::AnySource;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, timeout};
use tokio_util::sync::CancellationToken;

/// This test's containers: named as fleet units of this test's own unit
/// prefix (`krt<pid><test>_<unit>_<hash>_aaaaaa_1`, the only names the
/// registrator takes for Kaylee's) and run from the harness's test image.
/// Each is a harness [`Container`], removed on drop.
pub struct Containers {
    /// The unit prefix the test's registrator runs with.
    pub prefix: String,
    pub image: String,
}

impl Containers {
    pub fn new(test: &str) -> Containers {
        Containers {
            prefix: unit_prefix(test),
            image: test_image(),
        }
    }

    /// The name of container `n` of `unit`: a fleet unit's container name.
    pub fn name(&self, n: &str, unit: &str) -> String {
        let hash: u32 = n
            .bytes()
            .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
        // A label Docker would not take in a name (`bad/unit`) still names
        // a container, just not one the registrator may take.
        let unit: String = unit
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        format!("{}_{unit}_{:06x}_aaaaaa_1", self.prefix, hash & 0xff_ffff)
    }

    /// Whether `container` is one of this test's.
    pub fn owns(&self, container: &str) -> bool {
        container.starts_with(&format!("{}_", self.prefix))
    }

    /// Starts container `n` from the test image, labelled
    /// `kaylee.name=<unit>` if `unit` is given, with `extra` docker run
    /// arguments.
    pub fn run_with(&self, n: &str, unit: Option<&str>, extra: &[&str]) -> Container {
        let name = self.name(n, unit.unwrap_or("none"));
        let label = unit.map(|u| format!("kaylee.name={u}"));
        let mut args = vec!["--name", name.as_str()];
        if let Some(label) = &label {
            args.extend(["--label", label.as_str()]);
        }
        args.extend(extra);
        args.extend([self.image.as_str(), "sleep", "3600"]);
        Container::run(&args)
    }

    pub fn run(&self, n: &str, unit: Option<&str>) -> Container {
        self.run_with(n, unit, &[])
    }
}

/// A unit prefix of this test's own, so parallel tests never take each
/// other's containers for theirs.
pub fn unit_prefix(test: &str) -> String {
    format!("krt{}{test}", std::process::id())
}

/// The IP `docker inspect` reports for a container, which must have one.
pub fn ip_of(container: &Container) -> String {
    let ip = container.ip();
    assert!(!ip.is_empty(), "{} has no IP", container.name());
    ip
}

/// A client for the engine that `require_docker!` found answering.
pub async fn local_docker() -> Docker {
    match connect_docker(None).await {
        Ok(d) => d,
        Err(e) => panic!("the docker CLI reaches an engine but the registrator cannot: {e}"),
    }
}

pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "kaylee_controllers=debug".into()),
        )
        .with_test_writer()
        .try_init();
}

pub struct World {
    /// Kept for its drop: etcd is killed with the world.
    pub _etcd: Etcd,
    pub config: EtcdConfig,
    pub client: Client,
    pub machine_id: String,
    pub registrator: Arc<Registrator>,
}

pub async fn world(docker: Docker, test: &str) -> World {
    let etcd = Etcd::start();
    let config = EtcdConfig {
        endpoints: vec![etcd.endpoint()],
        ..EtcdConfig::default()
    };
    let client = match config.connect().await {
        Ok(c) => c,
        Err(e) => panic!("connect to test etcd: {e}"),
    };
    let machine_id = format!("machine-{}-{test}", std::process::id());
    let fleet_machine = EtcdPrefix::new(
        client.clone(),
        config.clone(),
        format!("{FLEET}machines/{machine_id}/object"),
    );
    let registrator =
        match Registrator::new(docker, client.clone(), config.clone(), machine_id.clone()) {
            Ok(r) => Arc::new(
                r.with_unit_prefix(&unit_prefix(test))
                    .with_machine_object(AnySource::V3(Box::new(fleet_machine))),
            ),
            Err(e) => panic!("{e}"),
        };
    World {
        _etcd: etcd,
        config,
        client,
        machine_id,
        registrator,
    }
}

/// A registrator `run` in a task, cancelled on drop.
pub struct Running {
    pub stop: CancellationToken,
    pub task: Option<JoinHandle<Result<(), RegistratorError>>>,
}

pub fn start(registrator: &Arc<Registrator>, lease: i64) -> Running {
    let stop = CancellationToken::new();
    let r = registrator.clone();
    let s = stop.clone();
    Running {
        stop,
        task: Some(tokio::spawn(async move { r.run(lease, s).await })),
    }
}

impl Running {
    /// Waits for `run` to return by itself.
    pub async fn finished(mut self) -> Result<(), RegistratorError> {
        let task = self.task.take().expect("task");
        match timeout(SETTLE, task).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => panic!("registrator task panicked: {e}"),
            Err(_) => panic!("registrator did not return within {SETTLE:?}"),
        }
    }

    /// Cancels and waits: `run` must return `Ok`.
    pub async fn stop(self) {
        self.stop.cancel();
        if let Err(e) = self.finished().await {
            panic!("registrator stopped with an error: {e}");
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Key → (value, lease) for every key under `prefix`.
pub async fn keys(w: &World, prefix: &str) -> BTreeMap<String, (String, i64)> {
    let mut kv = w.client.kv_client();
    let r = match w
        .config
        .timed(kv.get(prefix, Some(GetOptions::new().with_prefix())))
        .await
    {
        Ok(r) => r,
        Err(e) => panic!("etcd get {prefix}: {e}"),
    };
    r.kvs()
        .iter()
        .map(|kv| {
            (
                String::from_utf8_lossy(kv.key()).into_owned(),
                (String::from_utf8_lossy(kv.value()).into_owned(), kv.lease()),
            )
        })
        .collect()
}

/// This test's keys under this machine: key → (IP, lease).
pub async fn own_keys(w: &World, containers: &Containers) -> BTreeMap<String, (String, i64)> {
    let prefix = w.registrator.instances_prefix();
    keys(w, &prefix)
        .await
        .into_iter()
        .filter(|(k, _)| {
            k.rsplit('/')
                .next()
                .is_some_and(|container| containers.owns(container))
        })
        .collect()
}

/// Polls `check` until it returns `Ok`, panicking with its last complaint
/// after [`SETTLE`].
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + SETTLE;
    loop {
        match check().await {
            Ok(()) => return,
            Err(e) if Instant::now() > deadline => {
                panic!("{what}: not so after {SETTLE:?}: {e}")
            }
            Err(_) => sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Waits until this test's keys are exactly `want` (key → IP), all on
/// `lease`.
pub async fn expect_keys(
    w: &World,
    containers: &Containers,
    want: &BTreeMap<String, String>,
    lease: i64,
    what: &str,
) {
    eventually(what, || async move {
        let have = own_keys(w, containers).await;
        let want_with_lease: BTreeMap<String, (String, i64)> = want
            .iter()
            .map(|(k, ip)| (k.clone(), (ip.clone(), lease)))
            .collect();
        if have == want_with_lease {
            Ok(())
        } else {
            Err(format!("have {have:?}, want {want_with_lease:?}"))
        }
    })
    .await;
}

pub async fn grant(w: &World, ttl: i64) -> i64 {
    let mut lease = w.client.lease_client();
    match w.config.timed(lease.grant(ttl, None)).await {
        Ok(r) => r.id(),
        Err(e) => panic!("lease grant: {e}"),
    }
}
