//! The container registrator against a real etcd (spawned per test) and the
//! real Docker engine of this machine.
//!
//! Every test starts its own etcd and uses container names that include
//! the test process id and the test's name. The registrators of tests
//! running in parallel all see every labelled container on the engine, so
//! assertions only look at keys for this test's own containers.
//!
//! With no Docker engine, the Docker tests print a loud SKIPPED line to
//! stderr and return.

use etcd_client::{Client, GetOptions, PutOptions};
use kaylee_controllers::etcd::{EtcdConfig, Session};
use kaylee_controllers::registrator::{
    Docker, Registrator, RegistratorError, connect_docker, docker_host,
};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, timeout};
use tokio_util::sync::CancellationToken;

/// How long a key may take to follow a container.
const SETTLE: Duration = Duration::from_secs(10);
const IMAGE: &str = "kaylee-test-busybox:latest";

// ---------------------------------------------------------------- etcd ---

mod etcd {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    use std::fs::File;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};
    use tempfile::TempDir;

    /// A single-member etcd on free loopback ports, killed on drop.
    pub struct Etcd {
        child: Child,
        dir: TempDir,
        pub endpoint: String,
    }

    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free loopback port")
    }

    impl Etcd {
        pub fn start() -> Etcd {
            let mut failures = Vec::new();
            // The free ports may be taken by someone else before etcd binds
            // them; try again with new ones.
            for _ in 0..5 {
                let dir = tempfile::tempdir().expect("temp dir");
                let (client, peer) = (free_port(), free_port());
                let log = File::create(dir.path().join("etcd.log")).expect("etcd log file");
                let client_url = format!("http://127.0.0.1:{client}");
                let peer_url = format!("http://127.0.0.1:{peer}");
                let child = Command::new("/usr/bin/etcd")
                    .arg("--name=test")
                    .arg(format!("--data-dir={}", dir.path().join("data").display()))
                    .arg(format!("--listen-client-urls={client_url}"))
                    .arg(format!("--advertise-client-urls={client_url}"))
                    .arg(format!("--listen-peer-urls={peer_url}"))
                    .arg(format!("--initial-advertise-peer-urls={peer_url}"))
                    .arg(format!("--initial-cluster=test={peer_url}"))
                    .arg("--initial-cluster-state=new")
                    .arg("--logger=zap")
                    .arg("--log-level=warn")
                    .stdin(Stdio::null())
                    .stdout(log.try_clone().expect("etcd log file"))
                    .stderr(log)
                    .spawn()
                    .expect("spawn /usr/bin/etcd");
                let mut etcd = Etcd {
                    child,
                    dir,
                    endpoint: client_url,
                };
                match etcd.wait_healthy(client) {
                    Ok(()) => return etcd,
                    Err(e) => failures.push(format!("{e}\n{}", etcd.log())),
                }
            }
            panic!("etcd did not start:\n{}", failures.join("\n---\n"));
        }

        fn wait_healthy(&mut self, port: u16) -> Result<(), String> {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if let Ok(Some(status)) = self.child.try_wait() {
                    return Err(format!("etcd exited: {status}"));
                }
                if health(port) {
                    return Ok(());
                }
                if Instant::now() > deadline {
                    return Err("etcd not healthy within 20 s".into());
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }

        fn log(&self) -> String {
            std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default()
        }
    }

    /// Whether etcd's `/health` says it is healthy.
    fn health(port: u16) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        if s.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .is_err()
        {
            return false;
        }
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        answer.contains("\"health\":\"true\"")
    }

    impl Drop for Etcd {
        fn drop(&mut self) {
            if let Ok(pid) = i32::try_from(self.child.id()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            let _ = self.child.wait();
        }
    }
}

// -------------------------------------------------------------- docker ---

mod docker {
    use super::IMAGE;
    use std::process::{Command, Stdio};
    use std::sync::OnceLock;

    /// Runs the docker CLI, returning trimmed stdout or the failure.
    pub async fn cli(args: &[&str]) -> Result<String, String> {
        let out = tokio::process::Command::new("docker")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| format!("docker {args:?}: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(format!(
                "docker {args:?}: {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// Builds the test image from the host's static busybox, once per test
    /// binary and only if it is missing. Nothing is ever pulled.
    pub fn ensure_image() {
        static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
        if let Err(e) = BUILT.get_or_init(build_image) {
            panic!("cannot build {IMAGE}: {e}");
        }
    }

    fn build_image() -> Result<(), String> {
        let exists = Command::new("docker")
            .args(["image", "inspect", IMAGE])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| e.to_string())?;
        if exists.success() {
            return Ok(());
        }
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        std::fs::copy("/bin/busybox", dir.path().join("busybox"))
            .map_err(|e| format!("copy /bin/busybox (Debian busybox-static): {e}"))?;
        std::fs::write(
            dir.path().join("Dockerfile"),
            "FROM scratch\n\
             COPY busybox /bin/busybox\n\
             RUN [\"/bin/busybox\",\"--install\",\"-s\",\"/bin\"]\n\
             ENV PATH=/bin\n",
        )
        .map_err(|e| e.to_string())?;
        let out = Command::new("docker")
            .args(["build", "--pull=false", "-t", IMAGE, "."])
            .env("DOCKER_BUILDKIT", "0")
            .current_dir(dir.path())
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// This test's containers, removed with `docker rm -f` on drop.
    pub struct Containers {
        prefix: String,
        names: Vec<String>,
    }

    impl Containers {
        pub fn new(test: &str) -> Containers {
            Containers {
                prefix: format!("krt-{}-{test}", std::process::id()),
                names: Vec::new(),
            }
        }

        /// The container name for `n`, registered for removal.
        pub fn name(&mut self, n: &str) -> String {
            let name = format!("{}-{n}", self.prefix);
            if !self.names.contains(&name) {
                self.names.push(name.clone());
            }
            name
        }

        /// Whether `container` is one of this test's.
        pub fn owns(&self, container: &str) -> bool {
            container.starts_with(&format!("{}-", self.prefix))
        }

        /// Starts a container from the test image, labelled
        /// `kaylee.name=<unit>` if `unit` is given. Returns its name.
        pub async fn run(&mut self, n: &str, unit: Option<&str>) -> String {
            let name = self.name(n);
            let label = unit.map(|u| format!("kaylee.name={u}"));
            let mut args = vec!["run", "-d", "--name", &name];
            if let Some(label) = &label {
                args.extend(["--label", label]);
            }
            args.extend([IMAGE, "sleep", "3600"]);
            if let Err(e) = cli(&args).await {
                panic!("{e}");
            }
            name
        }

        pub async fn stop(&self, name: &str) {
            if let Err(e) = cli(&["stop", "-t", "0", name]).await {
                panic!("{e}");
            }
        }

        pub async fn rename(&mut self, name: &str, n: &str) -> String {
            let new = self.name(n);
            if let Err(e) = cli(&["rename", name, &new]).await {
                panic!("{e}");
            }
            new
        }

        /// The IP `docker inspect` reports.
        pub async fn ip(&self, name: &str) -> String {
            match cli(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", name]).await {
                Ok(ip) if !ip.is_empty() => ip,
                Ok(_) => panic!("{name} has no IP"),
                Err(e) => panic!("{e}"),
            }
        }
    }

    impl Drop for Containers {
        fn drop(&mut self) {
            if self.names.is_empty() {
                return;
            }
            let _ = Command::new("docker")
                .args(["rm", "-f"])
                .args(&self.names)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

// --------------------------------------------------------------- proxy ---

mod proxy {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use tokio::net::{TcpListener, UnixStream};
    use tokio::task::JoinHandle;
    use tokio_util::sync::CancellationToken;

    /// A TCP front for the Docker socket that can drop every connection and
    /// refuse new ones for a while, to make the event stream break.
    pub struct DockerProxy {
        pub host: String,
        up: Arc<AtomicBool>,
        connections: Arc<Mutex<CancellationToken>>,
        task: JoinHandle<()>,
    }

    impl DockerProxy {
        pub async fn start(socket: String) -> DockerProxy {
            let listener = match TcpListener::bind("127.0.0.1:0").await {
                Ok(l) => l,
                Err(e) => panic!("proxy listen: {e}"),
            };
            let port = match listener.local_addr() {
                Ok(a) => a.port(),
                Err(e) => panic!("proxy address: {e}"),
            };
            let up = Arc::new(AtomicBool::new(true));
            let connections = Arc::new(Mutex::new(CancellationToken::new()));
            let (up2, connections2) = (up.clone(), connections.clone());
            let task = tokio::spawn(async move {
                while let Ok((mut tcp, _)) = listener.accept().await {
                    if !up2.load(Ordering::SeqCst) {
                        continue; // dropped: closed at once
                    }
                    let cut = match connections2.lock() {
                        Ok(t) => t.clone(),
                        Err(_) => return,
                    };
                    let socket = socket.clone();
                    tokio::spawn(async move {
                        let Ok(mut unix) = UnixStream::connect(&socket).await else {
                            return;
                        };
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut tcp, &mut unix) => {}
                            _ = cut.cancelled() => {}
                        }
                    });
                }
            });
            DockerProxy {
                host: format!("tcp://127.0.0.1:{port}"),
                up,
                connections,
                task,
            }
        }

        /// Drops every open connection and refuses new ones.
        pub fn cut(&self) {
            self.up.store(false, Ordering::SeqCst);
            if let Ok(mut t) = self.connections.lock() {
                std::mem::take(&mut *t).cancel();
            }
        }

        pub fn restore(&self) {
            self.up.store(true, Ordering::SeqCst);
        }
    }

    impl Drop for DockerProxy {
        fn drop(&mut self) {
            self.cut();
            self.task.abort();
        }
    }
}

use docker::Containers;
use etcd::Etcd;

// ------------------------------------------------------------- helpers ---

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "kaylee_controllers=debug".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Prints past the test harness's output capture, so a skip is seen even
/// when the test "passes".
fn loud(message: &str) {
    use std::io::Write;
    let bar = "#".repeat(66);
    let text = format!("\n{bar}\n### {message}\n{bar}\n\n");
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// The Docker client, or `None` after a loud SKIPPED message.
async fn docker_or_skip(test: &str) -> Option<Docker> {
    match connect_docker(None).await {
        Ok(d) => Some(d),
        Err(e) => {
            loud(&format!(
                "SKIPPED: no Docker engine — {test} did NOT run\n### {e}"
            ));
            None
        }
    }
}

struct World {
    /// Kept for its drop: etcd is killed with the world.
    _etcd: Etcd,
    config: EtcdConfig,
    client: Client,
    machine_id: String,
    registrator: Arc<Registrator>,
}

async fn world(docker: Docker, test: &str) -> World {
    let etcd = Etcd::start();
    let config = EtcdConfig {
        endpoints: vec![etcd.endpoint.clone()],
        ..EtcdConfig::default()
    };
    let client = match config.connect().await {
        Ok(c) => c,
        Err(e) => panic!("connect to test etcd: {e}"),
    };
    let machine_id = format!("machine-{}-{test}", std::process::id());
    let registrator =
        match Registrator::new(docker, client.clone(), config.clone(), machine_id.clone()) {
            Ok(r) => Arc::new(r),
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
struct Running {
    stop: CancellationToken,
    task: Option<JoinHandle<Result<(), RegistratorError>>>,
}

fn start(registrator: &Arc<Registrator>, lease: i64) -> Running {
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
    async fn finished(mut self) -> Result<(), RegistratorError> {
        let task = self.task.take().expect("task");
        match timeout(SETTLE, task).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => panic!("registrator task panicked: {e}"),
            Err(_) => panic!("registrator did not return within {SETTLE:?}"),
        }
    }

    /// Cancels and waits: `run` must return `Ok`.
    async fn stop(self) {
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
async fn keys(w: &World, prefix: &str) -> BTreeMap<String, (String, i64)> {
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
async fn own_keys(w: &World, containers: &Containers) -> BTreeMap<String, (String, i64)> {
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
async fn eventually<F, Fut>(what: &str, mut check: F)
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
async fn expect_keys(
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

async fn grant(w: &World, ttl: i64) -> i64 {
    let mut lease = w.client.lease_client();
    match w.config.timed(lease.grant(ttl, None)).await {
        Ok(r) => r.id(),
        Err(e) => panic!("lease grant: {e}"),
    }
}

// --------------------------------------------------------------- tests ---

#[tokio::test]
async fn no_docker_engine_is_a_clear_error() {
    let host = "unix:///nonexistent/kaylee-test/docker.sock";
    match connect_docker(Some(host)).await {
        Ok(_) => panic!("connected to {host}"),
        Err(e) => {
            let msg = e.to_string();
            assert!(
                matches!(e, RegistratorError::NoDockerEngine { .. }),
                "{e:?}"
            );
            assert!(msg.contains("no Docker engine"), "{msg}");
            assert!(msg.contains(host), "{msg}");
        }
    }
    match connect_docker(Some("gopher://nowhere")).await {
        Ok(_) => panic!("connected to gopher://"),
        Err(e) => assert!(e.to_string().contains("gopher://nowhere"), "{e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_are_registered_and_deregistered() {
    let Some(docker) = docker_or_skip("containers_are_registered_and_deregistered").await else {
        return;
    };
    init_logs();
    docker::ensure_image();
    let w = world(docker, "events").await;
    let mut containers = Containers::new("events");
    let lease = grant(&w, 60).await;
    let running = start(&w.registrator, lease);

    // Unlabelled and badly labelled containers first: once the good one
    // shows up, their events have been handled too.
    let plain = containers.run("plain", None).await;
    let bad = containers.run("bad", Some("bad/unit")).await;
    let bad2 = containers.run("bad2", Some("-dash")).await;
    let web = containers.run("web", Some("web")).await;
    let ip = containers.ip(&web).await;
    let web_key = w.registrator.instance_key("web", &web);
    assert_eq!(
        web_key,
        format!("/kaylee/instances/{}/web/{web}", w.machine_id)
    );
    let want = BTreeMap::from([(web_key.clone(), ip.clone())]);
    expect_keys(
        &w,
        &containers,
        &want,
        lease,
        "started container registered",
    )
    .await;
    let everything = keys(&w, "/kaylee/").await;
    for other in [&plain, &bad, &bad2] {
        assert!(
            !everything.keys().any(|k| k.contains(other.as_str())),
            "{other} must not be registered: {everything:?}"
        );
    }

    // A rename moves the key.
    let renamed = containers.rename(&web, "web-renamed").await;
    let want = BTreeMap::from([(w.registrator.instance_key("web", &renamed), ip.clone())]);
    expect_keys(
        &w,
        &containers,
        &want,
        lease,
        "renamed container re-registered",
    )
    .await;

    containers.stop(&renamed).await;
    expect_keys(
        &w,
        &containers,
        &BTreeMap::new(),
        lease,
        "stopped container deregistered",
    )
    .await;

    let stats = w.registrator.stats();
    assert!(stats.registrations.load(Ordering::Relaxed) >= 2);
    assert!(stats.deregistrations.load(Ordering::Relaxed) >= 2);
    assert!(stats.registration_errors.load(Ordering::Relaxed) >= 2);
    assert!(stats.resyncs.load(Ordering::Relaxed) >= 1);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_resyncs_to_reality() {
    let Some(docker) = docker_or_skip("restart_resyncs_to_reality").await else {
        return;
    };
    init_logs();
    docker::ensure_image();
    let w = world(docker, "resync").await;
    let mut containers = Containers::new("resync");
    let lease = grant(&w, 60).await;

    // Running before the registrator: found by the initial resync.
    let a = containers.run("a", Some("api")).await;
    let running = start(&w.registrator, lease);
    let b = containers.run("b", Some("api")).await;
    let c = containers.run("c", Some("worker")).await;
    let want = BTreeMap::from([
        (
            w.registrator.instance_key("api", &a),
            containers.ip(&a).await,
        ),
        (
            w.registrator.instance_key("api", &b),
            containers.ip(&b).await,
        ),
        (
            w.registrator.instance_key("worker", &c),
            containers.ip(&c).await,
        ),
    ]);
    expect_keys(&w, &containers, &want, lease, "initial registrations").await;
    running.stop().await;

    // While nobody watches: a container stops, another starts, a stale key
    // appears under this machine and a key under another machine.
    containers.stop(&a).await;
    let d = containers.run("d", Some("worker")).await;
    let ghost = containers.name("ghost");
    let stale = w.registrator.instance_key("api", &ghost);
    let foreign = format!("/kaylee/instances/other-machine/api/{ghost}");
    let mut kv = w.client.kv_client();
    for key in [&stale, &foreign] {
        if let Err(e) = w.config.timed(kv.put(key.as_str(), "10.9.9.9", None)).await {
            panic!("put {key}: {e}");
        }
    }
    // b's key holds a wrong IP on no lease.
    let b_key = w.registrator.instance_key("api", &b);
    if let Err(e) = w
        .config
        .timed(kv.put(b_key.as_str(), "10.8.8.8", Some(PutOptions::new())))
        .await
    {
        panic!("put {b_key}: {e}");
    }

    let running = start(&w.registrator, lease);
    let want = BTreeMap::from([
        (b_key.clone(), containers.ip(&b).await),
        (
            w.registrator.instance_key("worker", &c),
            containers.ip(&c).await,
        ),
        (
            w.registrator.instance_key("worker", &d),
            containers.ip(&d).await,
        ),
    ]);
    expect_keys(&w, &containers, &want, lease, "resynced to reality").await;
    let all = keys(&w, "/kaylee/instances/other-machine/").await;
    assert_eq!(
        all.get(&foreign),
        Some(&("10.9.9.9".to_string(), 0)),
        "another machine's key is left alone"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_live_and_die_with_the_lease() {
    let Some(docker) = docker_or_skip("keys_live_and_die_with_the_lease").await else {
        return;
    };
    init_logs();
    docker::ensure_image();
    let w = world(docker, "lease").await;
    let mut containers = Containers::new("lease");
    let a = containers.run("a", Some("api")).await;
    let a_key = w.registrator.instance_key("api", &a);
    let a_ip = containers.ip(&a).await;

    // A 2 s lease kept alive, then left to expire.
    let session = match Session::start(&w.config, &w.client, Duration::from_secs(2)).await {
        Ok(s) => s,
        Err(e) => panic!("session: {e}"),
    };
    let first = session.lease_id();
    let running = start(&w.registrator, first);
    let want = BTreeMap::from([(a_key.clone(), a_ip.clone())]);
    expect_keys(
        &w,
        &containers,
        &want,
        first,
        "registered on the first lease",
    )
    .await;
    drop(session); // stops the keep-alive; the lease expires within 2 s
    expect_keys(
        &w,
        &containers,
        &BTreeMap::new(),
        first,
        "keys gone with the lease",
    )
    .await;

    // The next registration finds the lease gone, and `run` says so.
    let b = containers.run("b", Some("api")).await;
    match running.finished().await {
        Err(RegistratorError::LeaseGone(id)) => assert_eq!(id, first),
        other => panic!("expected LeaseGone, got {other:?}"),
    }

    // Run again on a new lease: everything comes back on it.
    let session = match Session::start(&w.config, &w.client, Duration::from_secs(2)).await {
        Ok(s) => s,
        Err(e) => panic!("session: {e}"),
    };
    let second = session.lease_id();
    assert_ne!(first, second);
    let running = start(&w.registrator, second);
    let want = BTreeMap::from([
        (a_key.clone(), a_ip.clone()),
        (
            w.registrator.instance_key("api", &b),
            containers.ip(&b).await,
        ),
    ]);
    expect_keys(
        &w,
        &containers,
        &want,
        second,
        "re-registered on the new lease",
    )
    .await;

    // A graceful stop: the registrator first (any event after the revoke
    // would make it return LeaseGone), then the lease, which takes the keys
    // with it at once.
    running.stop().await;
    if let Err(e) = session.revoke().await {
        panic!("revoke: {e}");
    }
    let have = own_keys(&w, &containers).await;
    assert!(have.is_empty(), "keys left after revoke: {have:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_stream_reconnect_resyncs() {
    let test = "event_stream_reconnect_resyncs";
    if docker_or_skip(test).await.is_none() {
        return;
    }
    let host = docker_host(None);
    let Some(socket) = host.strip_prefix("unix://") else {
        loud(&format!(
            "SKIPPED: {test} needs a unix-socket Docker host, not {host}"
        ));
        return;
    };
    init_logs();
    docker::ensure_image();
    let proxy = proxy::DockerProxy::start(socket.to_string()).await;
    let docker = match connect_docker(Some(&proxy.host)).await {
        Ok(d) => d,
        Err(e) => panic!("Docker through the proxy: {e}"),
    };
    let w = world(docker, "reconnect").await;
    let mut containers = Containers::new("reconnect");
    let lease = grant(&w, 60).await;
    let running = start(&w.registrator, lease);
    let a = containers.run("a", Some("api")).await;
    let want = BTreeMap::from([(
        w.registrator.instance_key("api", &a),
        containers.ip(&a).await,
    )]);
    expect_keys(&w, &containers, &want, lease, "registered before the cut").await;
    let resyncs = w.registrator.stats().resyncs.load(Ordering::Relaxed);

    // The stream breaks; while the registrator cannot reach Docker, one
    // container stops and another starts. Stay down past the replay window
    // so only the resync can put things right.
    proxy.cut();
    containers.stop(&a).await;
    let b = containers.run("b", Some("api")).await;
    sleep(Duration::from_secs(3)).await;
    proxy.restore();

    let want = BTreeMap::from([(
        w.registrator.instance_key("api", &b),
        containers.ip(&b).await,
    )]);
    expect_keys(
        &w,
        &containers,
        &want,
        lease,
        "resynced after the reconnect",
    )
    .await;
    assert!(w.registrator.stats().resyncs.load(Ordering::Relaxed) > resyncs);

    // And events flow again.
    containers.stop(&b).await;
    expect_keys(
        &w,
        &containers,
        &BTreeMap::new(),
        lease,
        "events after the reconnect",
    )
    .await;
    running.stop().await;
}
