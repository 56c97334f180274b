//! Availability end to end: Kaylee servers against fleet played by the
//! fleet stand-in, which runs every unit's commands on the local Docker
//! engine (images built FROM scratch; nothing can be pulled here, which is
//! how a broken image fails for real). Every scenario runs through etcd's
//! v2 API (what real fleet reads) and v3: `v2::…` and `v3::…`. Without a
//! Docker engine the Docker scenarios are skipped, loudly.

mod support;

#[path = "availability/world.rs"]
mod world;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use support::docker::test_image;
use support::fleet::{Api, spec_hash_of};
use support::standin::Standin;
use world::{SLEEPER, World};

const WAIT: Duration = Duration::from_secs(90);
/// What a `--wait` may take beyond a progress deadline: the leader's
/// reconcile, the status write and the CLI's poll, on a busy machine.
const SLACK: Duration = Duration::from_secs(12);

/// A replicated unit of `image` that needs no pull (the image is local or,
/// for the broken version, absent).
fn spec(replicas: u32, image: &str, extra: &str) -> String {
    format!("  replicas: {replicas}\n  image: {image}\n  pull: never\n  cmd: {SLEEPER:?}\n{extra}")
}

/// An image no engine here has: its unit's start fails at its image check,
/// over and over, as a mistyped tag does on a real cluster.
fn absent_image() -> String {
    format!("kaylee-test-absent-{}:1", std::process::id())
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A world with one machine, m1 (fleet's engine too), whose Kaylee server
/// registers its containers.
async fn one_machine(api: Api, test: &str) -> (World, Standin) {
    let mut world = World::new(api, test).await;
    let fleet = world.machines(&["m1"], true, &[]);
    world.server("s1", Some("m1"));
    (world, fleet)
}

/// The rows of `kaylee history` (its header left out).
fn history_rows(w: &World) -> Vec<String> {
    text(&w.kaylee(&["history", &w.unit]).stdout)
        .lines()
        .skip(1)
        .map(str::to_string)
        .collect()
}

/// Runs `file` with `--wait` and asserts it rolls out; the status then.
/// Where fleet scheduled each of the unit's jobs, in name order.
async fn fleet_targets(w: &World) -> Vec<Option<String>> {
    let snap = w.fleet.snapshot().await;
    snap.jobs_of(&w.unit)
        .values()
        .map(|j| j.target.clone())
        .collect()
}

async fn roll_out(w: &World, file: &str, available: u32) -> serde_json::Value {
    let (out, _) = w.kaylee_within(&["run", "--wait", "--timeout", "90s", file], WAIT);
    assert!(
        out.status.success(),
        "run --wait failed:\n{}\n{}\nstatus: {:?}",
        text(&out.stdout),
        text(&out.stderr),
        w.status().await
    );
    assert!(
        text(&out.stdout).contains(&format!("rolled out, {available}/{available} available")),
        "{}",
        text(&out.stdout)
    );
    w.status().await.expect("a status")
}

/// Samples how many replicas of spec `hash` fleet reports running on live
/// machines, until stopped; the fewest seen.
struct Floor {
    stop: Arc<AtomicBool>,
    fewest: Arc<AtomicUsize>,
    samples: Arc<AtomicUsize>,
}

impl Floor {
    fn watch(w: &Arc<World>, hash: &str) -> Floor {
        let (stop, fewest, samples) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicUsize::new(usize::MAX)),
            Arc::new(AtomicUsize::new(0)),
        );
        let (w, hash) = (w.clone(), hash.to_string());
        let (s, f, n) = (stop.clone(), fewest.clone(), samples.clone());
        tokio::spawn(async move {
            while !s.load(Ordering::SeqCst) {
                let running = w.running_by_spec().await.get(&hash).copied().unwrap_or(0);
                f.fetch_min(running, Ordering::SeqCst);
                n.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        Floor {
            stop,
            fewest,
            samples,
        }
    }

    fn end(self) -> (usize, usize) {
        self.stop.store(true, Ordering::SeqCst);
        (
            self.fewest.load(Ordering::SeqCst),
            self.samples.load(Ordering::SeqCst),
        )
    }
}

/// Rolls `good` out (3 replicas), then runs `bad` with `--wait`, which
/// must exit 1: the good spec's hash, the floor watching its replicas, the
/// CLI's stderr and how long it took.
async fn break_a_good_rollout(
    w: &Arc<World>,
    good: &str,
    bad: &str,
) -> (String, Floor, String, Duration) {
    let before = roll_out(w, good, 3).await;
    let good_hash = before["specHash"].as_str().expect("spec hash").to_string();
    let floor = Floor::watch(w, &good_hash);
    let (out, took) = w.kaylee_within(&["run", "--wait", "--timeout", "90s", bad], WAIT);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let stdout = text(&out.stdout);
    assert!(
        !stdout.contains(": failed: ") && !stdout.contains(": rolled back: "),
        "the failure goes to stderr only, once: {stdout}"
    );
    (good_hash, floor, stderr, took)
}

async fn a_broken_version_never_takes_the_service_down(api: Api) {
    require_docker!();
    let (world, _fleet) = one_machine(api, "broken").await;
    let good = world.unit_file("good", &spec(3, &test_image(), ""));
    let bad = world.unit_file("bad", &spec(3, &absent_image(), "  progressDeadline: 8s\n"));
    let w = Arc::new(world);
    let (good_hash, floor, stderr, took) = break_a_good_rollout(&w, &good, &bad).await;
    assert!(stderr.contains("failed: 3/3 available"), "{stderr}");
    assert!(
        stderr.contains("activating/auto-restart on m1"),
        "the new replica's reason is printed: {stderr}"
    );
    assert!(
        took < Duration::from_secs(8) + SLACK,
        "run --wait took {took:?} for an 8 s progress deadline"
    );
    // The rollout stays stopped: nothing more is destroyed or created.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (fewest, samples) = floor.end();
    assert!(samples > 10, "{samples} samples");
    assert_eq!(fewest, 3, "the old replicas kept running throughout");

    let status = w.status().await.expect("a status");
    assert_eq!(status["condition"], "failed", "{status:#}");
    assert_eq!(status["available"], 3, "{status:#}");
    assert_eq!(status["phase"], "rolling-update", "{status:#}");
    let snap = w.fleet.snapshot().await;
    let jobs = snap.jobs_of(&w.unit);
    let old = jobs.keys().filter(|n| spec_hash_of(n) == good_hash).count();
    assert_eq!((old, jobs.len()), (3, 4), "3 old and one new: {jobs:#?}");

    let ls = text(&w.kaylee(&["ls"]).stdout);
    let line = ls
        .lines()
        .find(|l| l.starts_with(&w.unit))
        .unwrap_or_else(|| panic!("{ls}"));
    assert!(line.contains("3/3") && line.contains("failed"), "{line}");
    assert!(line.contains("activating/auto-restart"), "{line}");
    let status_out = text(
        &w.kaylee(&["status", &w.unit, "--fleet-etcd-api", api.flag()])
            .stdout,
    );
    assert!(
        status_out.contains("Available:   3/3 (failed"),
        "{status_out}"
    );
    assert!(
        status_out.contains("activating/auto-restart on m1"),
        "{status_out}"
    );
    let revisions = history_rows(&w);
    let history = revisions.join("\n");
    assert_eq!(revisions.len(), 2, "{history}");
    assert!(
        revisions[0].contains("yes,"),
        "revision 1 served: {history}"
    );
    assert!(
        revisions[1].contains("never") && revisions[1].contains("current"),
        "{history}"
    );
}

async fn a_failed_rollout_rolls_back_when_the_unit_asks(api: Api) {
    require_docker!();
    let (world, _fleet) = one_machine(api, "rollback").await;
    let good = world.unit_file("good", &spec(3, &test_image(), ""));
    let bad = world.unit_file(
        "bad",
        &spec(
            3,
            &absent_image(),
            "  progressDeadline: 8s\n  onFailure: rollback\n",
        ),
    );
    let w = Arc::new(world);
    let (good_hash, floor, stderr, took) = break_a_good_rollout(&w, &good, &bad).await;
    assert!(
        stderr.contains("rolled back: revision 2 failed and revision 1 was put back"),
        "{stderr}"
    );
    assert!(took < Duration::from_secs(8) + SLACK, "took {took:?}");
    let back = w
        .wait_status("the good spec available again", WAIT, |s| {
            s["specHash"] == good_hash.as_str()
                && s["condition"] == "available"
                && s["phase"] == "converged"
        })
        .await;
    let (fewest, _) = floor.end();
    assert_eq!(fewest, 3, "the old replicas kept running throughout");
    assert_eq!(back["available"], 3);
    assert_eq!(back["rolledBack"]["fromRevision"], 2, "{back:#}");
    assert_eq!(back["rolledBack"]["toRevision"], 1, "{back:#}");
    assert_eq!(
        w.fleet.snapshot().await.jobs_of(&w.unit).len(),
        3,
        "the broken replica is gone"
    );
    let revisions = history_rows(&w);
    let history = revisions.join("\n");
    assert_eq!(revisions.len(), 3, "{history}");
    assert!(revisions[1].contains("never"), "{history}");
    assert!(
        revisions[2].contains("rollback after revision 2 failed")
            && revisions[2].contains("current"),
        "{history}"
    );
    let ls = text(&w.kaylee(&["ls"]).stdout);
    assert!(
        ls.contains(&test_image()),
        "the unit is on the good image: {ls}"
    );
}

async fn a_healthcheck_holds_availability_back(api: Api) {
    require_docker!();
    let (world, _fleet) = one_machine(api, "health").await;
    // Healthy once /tmp/ok exists, five seconds after it starts.
    let slow = "sh -c \"sleep 5; touch /tmp/ok; trap 'exit 0' TERM; while true; do sleep 1; done\"";
    let file = world.unit_file(
        "checked",
        &format!(
            "  replicas: 1\n  image: {}\n  pull: never\n  cmd: {slow:?}\n  dockerArgs: ['--health-cmd \"test -f /tmp/ok\" --health-interval 1s --health-retries 1']\n",
            test_image()
        ),
    );
    let out = world.kaylee(&["run", &file]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let gated = world
        .wait_status(
            "the running replica held back by its healthcheck",
            WAIT,
            |s| {
                s["running"] == 1
                    && s["available"] == 0
                    && s["unavailable"][0]["reason"].as_str().is_some_and(|r| {
                        r.starts_with("unhealthy on m1") || r.starts_with("health: starting on m1")
                    })
            },
        )
        .await;
    assert_eq!(gated["condition"], "progressing", "{gated:#}");
    let served = world
        .wait_status("the healthy replica available", WAIT, |s| {
            s["condition"] == "available"
        })
        .await;
    assert_eq!(served["available"], 1);
    let mut kv = world.fleet.client().kv_client();
    let health = kv
        .get(
            format!("/kaylee/health/m1/{}/", world.unit),
            Some(etcd_client::GetOptions::new().with_prefix()),
        )
        .await
        .expect("reading health");
    let values: Vec<String> = health.kvs().iter().map(|k| text(k.value())).collect();
    assert_eq!(values, ["healthy"]);
}

async fn a_lost_machine_no_longer_counts(api: Api) {
    require_docker!();
    let mut world = World::new(api, "lost").await;
    let _m1 = world.machines(&["m1"], true, &[]);
    // m2's states outlive its machine entry, as a dead fleet agent's do.
    let mut m2 = world.machines(&["m2"], false, &["--state-ttl", "60s"]);
    world.server("s1", Some("m1"));
    world.server("s2", Some("m2"));
    let file = world.unit_file("web", &spec(2, &test_image(), ""));
    roll_out(&world, &file, 2).await;
    let targets = fleet_targets(&world).await;
    assert!(
        targets.contains(&Some("m2".into())),
        "one replica runs on m2: {targets:?}"
    );

    // The host dies: its fleet agent and its Kaylee server with it.
    let lost = world.revision().await;
    m2.sigkill();
    world.servers[1].sigkill();
    let deadline = std::time::Instant::now() + WAIT;
    while world.live_machines().await.contains(&"m2".to_string()) {
        assert!(std::time::Instant::now() < deadline, "m2 never left fleet");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The status written before the loss already said 2 available: first
    // Kaylee must have seen the replica gone, so what follows is news.
    world
        .status_written_since(lost, "m2's replica no longer available", WAIT, |s| {
            s["available"].as_u64() < Some(2)
        })
        .await;
    let healed = world
        .wait_status("both replicas available again", WAIT, |s| {
            s["condition"] == "available" && s["available"] == 2
        })
        .await;
    let targets = fleet_targets(&world).await;
    assert_eq!(
        targets,
        [Some("m1".to_string()), Some("m1".to_string())],
        "fleet moved m2's replica to m1"
    );
    assert_eq!(
        healed["running"], 2,
        "the dead machine's state is not counted: {healed:#}"
    );
    let lingering: Vec<String> = world
        .fleet
        .tree(&format!("{}states/", support::fleet::FLEET))
        .await
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| k.contains(&world.unit) && k.ends_with("/m2"))
        .collect();
    assert!(
        !lingering.is_empty(),
        "m2's state lingers until its TTL, and does not count"
    );
    let status_out = text(
        &world
            .kaylee(&["status", &world.unit, "--fleet-etcd-api", api.flag()])
            .stdout,
    );
    assert!(
        status_out.contains("machine m2 is gone (its state lingers"),
        "{status_out}"
    );
}

async fn a_global_unit_counts_its_machines(api: Api) {
    require_docker!();
    let mut world = World::new(api, "global").await;
    let _m12 = world.machines(&["m1", "m2"], true, &[]);
    let mut m3 = world.machines(&["m3"], false, &["--state-ttl", "60s"]);
    world.server("s1", Some("m1"));
    let file = world.unit_file(
        "agent",
        &format!(
            "  global: true\n  image: {}\n  pull: never\n  cmd: {SLEEPER:?}\n",
            test_image()
        ),
    );
    let status = roll_out(&world, &file, 3).await;
    assert_eq!(
        (status["desired"].clone(), status["available"].clone()),
        (3.into(), 3.into())
    );
    let ls = text(&world.kaylee(&["ls"]).stdout);
    assert!(
        ls.lines()
            .any(|l| l.starts_with(&world.unit) && l.contains("3/3") && l.contains("available")),
        "{ls}"
    );

    m3.sigkill();
    let after = world
        .wait_status("m3 gone from the count", WAIT, |s| {
            s["desired"] == 2 && s["available"] == 2
        })
        .await;
    assert_eq!(after["condition"], "available", "{after:#}");
    assert_eq!(after["running"], 2, "{after:#}");
    let states: Vec<String> = world
        .fleet
        .tree(&format!("{}states/", support::fleet::FLEET))
        .await
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| k.contains(&world.unit))
        .collect();
    assert!(
        states.iter().any(|k| k.ends_with("/m3")),
        "m3's state lingers, uncounted: {states:?}"
    );
}

async fn stop_first_never_puts_more_than_the_limit_on_a_host(api: Api) {
    let mut world = World::new(api, "limit").await;
    // Simulated units: scheduling is what is checked here, and fleet's
    // engine is what keeps the limit.
    let _fleet = world.machines(
        &["m1", "m2"],
        true,
        &["--simulate", "--start-delay", "300ms"],
    );
    world.server("s1", None);
    let v1 = world.unit_file(
        "v1",
        "  replicas: 4\n  maxReplicasPerHost: 2\n  updateOrder: stop-first\n  image: app:1\n",
    );
    let v2 = world.unit_file(
        "v2",
        "  replicas: 4\n  maxReplicasPerHost: 2\n  updateOrder: stop-first\n  image: app:2\n",
    );
    roll_out(&world, &v1, 4).await;

    let world = Arc::new(world);
    let (stop, most, samples) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let sampler = {
        let (w, stop, most, samples) = (world.clone(), stop.clone(), most.clone(), samples.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                if let Some(snap) = w.fleet.try_live().await {
                    let mut per_host: BTreeMap<String, usize> = BTreeMap::new();
                    for job in snap.jobs_of(&w.unit).values() {
                        if let Some(m) = &job.target {
                            *per_host.entry(m.clone()).or_default() += 1;
                        }
                    }
                    let top = per_host.values().copied().max().unwrap_or(0);
                    most.fetch_max(top, Ordering::SeqCst);
                    samples.fetch_add(1, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let after = roll_out(&world, &v2, 4).await;
    stop.store(true, Ordering::SeqCst);
    let _ = sampler.await;
    assert_ne!(after["specHash"], serde_json::Value::Null);
    assert!(samples.load(Ordering::SeqCst) > 20, "too few samples");
    assert_eq!(
        most.load(Ordering::SeqCst),
        2,
        "a host held more replicas than maxReplicasPerHost mid-rollout"
    );
}

for_each_api!(
    a_broken_version_never_takes_the_service_down,
    a_failed_rollout_rolls_back_when_the_unit_asks,
    a_healthcheck_holds_availability_back,
    a_lost_machine_no_longer_counts,
    a_global_unit_counts_its_machines,
    stop_first_never_puts_more_than_the_limit_on_a_host,
);
