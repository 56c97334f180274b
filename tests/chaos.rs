//! Chaos: three `kaylee server`s under a stream of random spec changes on
//! 24 units, written straight into etcd, while the leader is SIGKILLed,
//! SIGTERMed or frozen (SIGSTOP past its lease) at random and replaced,
//! etcd is restarted once and its history compacted once, and a fake fleet
//! agent runs every job. Invariants, checked at every sample and at the
//! end (each module says how):
//!
//! * a. convergence — afterwards fleet holds exactly the rendered units
//!   ([`converge`]);
//! * b. foreign fleet units are never written or deleted ([`sampler`]);
//! * c. never two leaders writing: each fleet write comes from the server
//!   whose leader key leads at its revision — v3 only, where every fleet
//!   write is a fenced transaction ([`fence`]);
//! * d. rolling updates never run fewer replicas than asked ([`sampler`]).
//!
//! Each runs with fleet's registry through v3 and through v2 (`chaos_v3`,
//! `chaos_v2`). Short by default, as part of `cargo test` (about 30 s for
//! both); `KAYLEE_CHAOS_KILLS=100` is the long run (`deploy/chaos.sh`);
//! `KAYLEE_CHAOS_SEED` replays a run's choices.

mod support;

#[path = "chaos/cluster.rs"]
mod cluster;
#[path = "chaos/converge.rs"]
mod converge;
#[path = "chaos/fence.rs"]
mod fence;
#[path = "chaos/report.rs"]
mod report;
#[path = "chaos/rng.rs"]
mod rng;
#[path = "chaos/sampler.rs"]
mod sampler;
#[path = "chaos/units.rs"]
mod units;

use cluster::Cluster;
use etcd_client::Client;
use fence::Outage;
use report::{Counters, Report, bump};
use rng::Rng;
use sampler::{Baseline, Sampler};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::agent::spawn_agent;
use support::etcd::Etcd;
use support::fleet::{Api, FleetView};
use tokio_util::sync::CancellationToken;
use units::{Changer, Model};

/// Short enough that a SIGKILLed leader is replaced within seconds.
const LEASE_TTL: &str = "2s";
const START_TIMEOUT: Duration = Duration::from_secs(5);
/// Far below the start timeout: a rollout may then never count a replica
/// as ready that is not running (invariant d).
const AGENT_DELAY: Duration = Duration::from_millis(200);
const CONVERGE_LIMIT: Duration = Duration::from_secs(60);
const LEADER_LIMIT: Duration = Duration::from_secs(30);
/// Kills in the short (CI) mode.
const SHORT_KILLS: usize = 6;

struct Mode {
    kills: usize,
    pauses: usize,
}

fn mode() -> Mode {
    let kills = std::env::var("KAYLEE_CHAOS_KILLS").ok().map(|k| {
        k.parse::<usize>()
            .unwrap_or_else(|e| panic!("KAYLEE_CHAOS_KILLS={k:?}: {e}"))
    });
    let kills = kills.unwrap_or(SHORT_KILLS);
    Mode {
        kills,
        pauses: (kills / 10).max(1),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chaos_v3() {
    run(Api::V3).await
}

/// Invariant c is not checked through v2: its writes are not transactions
/// and the fence is a check before each batch, with the window the README
/// describes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chaos_v2() {
    run(Api::V2).await
}

/// Fleet records that are not Kaylee's: other fleet units, names close to
/// Kaylee's prefix, a hand-made `k:` unit, each "running" on `m1` already
/// (so the agent leaves them be), and a unit text.
async fn write_foreign(fleet: &FleetView) -> Baseline {
    let hash: Vec<String> = (1..=20).map(|b: u8| b.to_string()).collect();
    for name in [
        "etcd.service",
        "other:x:1.service",
        "kk:web:abcdef:123456:1.service",
        "k:handmade.service",
    ] {
        let object = format!(r#"{{"Name":"{name}","UnitHash":[{}]}}"#, hash.join(","));
        fleet.put(&format!("job/{name}/object"), &object).await;
        fleet
            .put(&format!("job/{name}/target-state"), "launched")
            .await;
        fleet.set_running(name, "m1").await;
    }
    let unit_record = (
        format!("unit/{}", "0102030405060708090a0b0c0d0e0f1011121314"),
        r#"{"Raw":"[Service]\nExecStart=/bin/true\n"}"#.to_string(),
    );
    fleet.put(&unit_record.0, &unit_record.1).await;
    let snap = fleet.try_live().await.expect("reading the foreign records");
    Baseline {
        keys: snap.keys,
        unit_record,
    }
}

enum Event {
    Kill,
    Pause,
    EtcdRestart,
    Compact,
}

/// The chaos itself, one event after another at random intervals; returns
/// when each server could not have written (for invariant c).
async fn drive(
    cluster: &mut Cluster,
    etcd: &mut Etcd,
    client: &Client,
    mode: &Mode,
    mut rng: Rng,
    report: &Report,
) -> Vec<Outage> {
    let mut events: Vec<Event> = (0..mode.kills).map(|_| Event::Kill).collect();
    events.extend((0..mode.pauses).map(|_| Event::Pause));
    events.extend([Event::EtcdRestart, Event::Compact]);
    rng.shuffle(&mut events);
    let mut outages = Vec::new();
    for (n, event) in events.into_iter().enumerate() {
        let dwell = rng.millis(300, 2500);
        if let Event::Kill | Event::Pause = event {
            // Let the new leader lead for a while first, so most blows land
            // mid-term (mid-rollout), not at the moment of takeover.
            cluster.wait_live_leader(LEADER_LIMIT).await;
        }
        tokio::time::sleep(dwell).await;
        if let Event::EtcdRestart = event {
            let down = rng.millis(200, 1500);
            report.note(&format!("restarting etcd ({} ms down)", down.as_millis()));
            tokio::task::block_in_place(|| {
                etcd.stop();
                std::thread::sleep(down);
                etcd.restart();
            });
            bump(&report.counters.etcd_restarts);
            continue;
        }
        if let Event::Compact = event {
            let revision = cluster.revision().await;
            let mut c = client.clone();
            c.compact(revision, None).await.expect("compacting etcd");
            report.note(&format!("compacted etcd at revision {revision}"));
            bump(&report.counters.compactions);
            continue;
        }
        let Some(leader) = cluster.wait_live_leader(LEADER_LIMIT).await else {
            report.violation(
                &format!("leaderless:{n}"),
                format!("no live server held the leader key within {LEADER_LIMIT:?}"),
            );
            continue;
        };
        match event {
            Event::Pause => {
                report.note(&format!("freezing leader {leader}"));
                let hold = Duration::from_millis(3500);
                outages.push(cluster.pause(&leader, hold, report).await);
            }
            _ if rng.percent(60) => {
                report.note(&format!("SIGKILL leader {leader}"));
                outages.push(cluster.sigkill(&leader, report).await);
            }
            _ => {
                report.note(&format!("SIGTERM leader {leader}"));
                outages.push(cluster.sigterm(&leader, report).await);
            }
        }
    }
    outages
}

async fn run(api: Api) {
    let seed = rng::seed();
    let mode = mode();
    let report = Arc::new(Report::new());
    report.note(&format!(
        "api={} seed={seed} kills={} pauses={} (replay with KAYLEE_CHAOS_SEED={seed})",
        api.flag(),
        mode.kills,
        mode.pauses
    ));
    let mut etcd = api.etcd();
    let endpoint = etcd.endpoint();
    let client = Client::connect([endpoint.as_str()], None)
        .await
        .expect("connecting to the test etcd");
    let fleet = FleetView::connect_on(&endpoint, api).await;
    let baseline = write_foreign(&fleet).await;

    let start_timeout = format!("{}s", START_TIMEOUT.as_secs());
    let flags = ["--lease-ttl", LEASE_TTL, "--start-timeout", &start_timeout];
    let mut cluster = Cluster::new(&endpoint, api, &flags, client.clone());
    let watch_from = cluster.revision().await + 1;
    let fence = (api == Api::V3)
        .then(|| tokio::spawn(fence::watch(client.clone(), watch_from, report.clone())));
    let _agent = spawn_agent(&fleet, "m1", AGENT_DELAY);
    let model = Model::default();
    let mut changer = Changer::new(
        client.clone(),
        model.clone(),
        report.clone(),
        Rng::stream(seed, 1),
    );
    changer.create_all().await;
    for _ in 0..3 {
        cluster.spawn();
    }
    let stop_sampling = CancellationToken::new();
    let sampler = Sampler::new(
        fleet.clone(),
        model.clone(),
        report.clone(),
        baseline,
        START_TIMEOUT,
    );
    let sampler = tokio::spawn(sampler.run(stop_sampling.clone()));
    match converge::wait_converged(&fleet, &client, CONVERGE_LIMIT).await {
        Ok(took) => report.note(&format!("cold start converged in {} ms", took.as_millis())),
        Err(left) => report.violation("cold", format!("cold start never converged: {left:?}")),
    }

    let stop_changes = CancellationToken::new();
    let changes = tokio::spawn(changer.run(stop_changes.clone()));
    let outages = drive(
        &mut cluster,
        &mut etcd,
        &client,
        &mode,
        Rng::stream(seed, 2),
        &report,
    )
    .await;
    stop_changes.cancel();
    changes.await.expect("the change stream");
    report.note("chaos over; waiting for convergence");

    let final_ms = match converge::wait_converged(&fleet, &client, CONVERGE_LIMIT).await {
        Ok(took) => took.as_millis() as u64,
        Err(left) => {
            report.violation(
                "final",
                format!("not converged {CONVERGE_LIMIT:?} after the chaos: {left:?}"),
            );
            CONVERGE_LIMIT.as_millis() as u64
        }
    };
    report.record_convergence(final_ms);
    stop_sampling.cancel();
    let mut sampler = sampler.await.expect("the sampler");
    let deadline = Instant::now() + Duration::from_secs(10);
    while sampler.sample(true).await.is_none() && Instant::now() < deadline {}
    end_checks(&fleet, &client, &model, &report).await;

    let fence_writes = match fence {
        Some(task) => {
            let mut kv = client.kv_client();
            kv.put(fence::DONE_KEY, "1", None).await.expect("put");
            let writes = tokio::time::timeout(Duration::from_secs(60), task)
                .await
                .expect("the fence watch caught up")
                .expect("the fence watch");
            Some(writes)
        }
        None => None,
    };
    cluster.finish(&report);
    if let Some(writes) = &fence_writes {
        fence::check(writes, &cluster.commits, &outages, &report);
    }
    let fence_writes = fence_writes.map(|w| w.len());
    for panic in &cluster.panics {
        report.violation(
            &format!("panic:{panic}"),
            format!("a server panicked: {panic}"),
        );
    }
    summary(api, seed, &cluster, &report, final_ms, fence_writes);
}

/// The texts behind the final units, and the test's own bookkeeping
/// against etcd (a disagreement would make the rollout checks wrong).
async fn end_checks(fleet: &FleetView, client: &Client, model: &Model, report: &Report) {
    let desired = converge::desired(client).await.expect("reading the units");
    for problem in converge::check_texts(fleet, &desired).await {
        report.violation(&format!("text:{problem}"), problem);
    }
    let model = model.lock().unwrap().clone();
    for (name, u) in model {
        let mine = units::want(u.json.as_deref(), u.marker.as_deref());
        let theirs = desired.get(&name).cloned().unwrap_or_default();
        if mine.units.keys().ne(theirs.units.keys()) {
            report.violation(
                &format!("model:{name}"),
                format!("the test's model of {name} disagrees with etcd"),
            );
        }
    }
}

fn summary(
    api: Api,
    seed: u64,
    cluster: &Cluster,
    report: &Report,
    final_ms: u64,
    fence_writes: Option<usize>,
) {
    let c = &report.counters;
    let n = Counters::get;
    let fence = match fence_writes {
        Some(_) => format!("fence_checked={}", n(&c.fence_checked)),
        None => "fence_checked=n/a(v2)".to_string(),
    };
    println!(
        "chaos summary: api={} seed={seed} kills={} (sigkill={}, sigterm={}) pauses={} \
         changes={} rollouts_checked={}/{} etcd_restarts={} compactions={} \
         max_convergence_ms={} final_convergence_ms={final_ms} {fence} \
         fenced_writes_refused={} skipped_revisions={} explained_drops={} violations={}",
        api.flag(),
        n(&c.sigkill) + n(&c.sigterm),
        n(&c.sigkill),
        n(&c.sigterm),
        n(&c.pauses),
        n(&c.changes),
        n(&c.rollouts_completed),
        n(&c.rollouts_watched),
        n(&c.etcd_restarts),
        n(&c.compactions),
        n(&c.max_convergence_ms),
        cluster.refused,
        n(&c.skipped_revisions),
        n(&c.explained_drops),
        report.violation_count(),
    );
    println!(
        "chaos details: servers_started={} leader_terms={} unlogged_writes={} samples={} \
         failed_samples={} write_errors={} duration_ms={}",
        cluster.started(),
        cluster.terms,
        n(&c.unlogged_writes),
        n(&c.samples),
        n(&c.failed_samples),
        n(&c.write_errors),
        report.elapsed_ms(),
    );
    let violations = report.violations();
    assert!(
        violations.is_empty(),
        "{} invariant violation(s) (seed {seed}):\n{}",
        report.violation_count(),
        violations.join("\n")
    );
}
