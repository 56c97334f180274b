//! High availability: one leader among servers, failover on SIGKILL (after
//! the lease) and SIGTERM (at once), and fenced writes — each with fleet's
//! registry through etcd's v2 API and through v3 (`v2::…`, `v3::…`).

mod support;

use kaylee_controllers::etcd::election::Election;
use kaylee_controllers::etcd::{EtcdConfig, Session};
use kaylee_controllers::keys::FleetKeys;
use kaylee_controllers::registry::{AnyRegistry, ApplyError, FleetRegistry, Write};
use nix::sys::signal::Signal;
use std::time::{Duration, Instant};
use support::etcd::Etcd;
use support::fleet::{Api, FleetView};
use support::kaylee::{Server, cli_ok};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(20);

fn leads(s: &Server) -> bool {
    s.log().contains("leading")
}

/// Waits until exactly one of `servers` leads, and returns its index.
fn wait_single_leader(servers: &[&Server], limit: Duration) -> usize {
    let deadline = Instant::now() + limit;
    loop {
        let leading: Vec<usize> = (0..servers.len()).filter(|i| leads(servers[*i])).collect();
        if leading.len() == 1 {
            return leading[0];
        }
        assert!(leading.len() <= 1, "two leaders: {leading:?}");
        assert!(Instant::now() < deadline, "no leader within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

async fn exactly_one_server_leads_and_sigkill_fails_over_after_the_lease(api: Api) {
    let etcd = api.etcd();
    let fleet = FleetView::connect_on(&etcd.endpoint(), api).await;
    let mut servers = [
        Server::start_on(&etcd.endpoint(), "s1", api, &[]),
        Server::start_on(&etcd.endpoint(), "s2", api, &[]),
    ];
    let leader = wait_single_leader(&[&servers[0], &servers[1]], WAIT);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        wait_single_leader(&[&servers[0], &servers[1]], WAIT),
        leader,
        "still one"
    );
    cli_ok(&etcd.endpoint(), &["run", "deploy/examples/api.yaml"]);
    fleet
        .wait_for("api", WAIT, |s| s.jobs_of("api").len() == 2)
        .await;

    let killed = Instant::now();
    servers[leader].sigkill();
    let standby = &servers[1 - leader];
    standby.wait_log("leading", WAIT);
    // The dead leader's lease (3 s) has to run out first.
    assert!(
        killed.elapsed() >= Duration::from_secs(1),
        "{:?}",
        killed.elapsed()
    );
    cli_ok(&etcd.endpoint(), &["run", "deploy/examples/countly.yaml"]);
    fleet
        .wait_for("the new leader converges a change", WAIT, |s| {
            s.jobs_of("countly").len() == 4
        })
        .await;
}

async fn sigterm_hands_over_without_waiting_for_the_lease(api: Api) {
    let etcd = api.etcd();
    let fleet = FleetView::connect_on(&etcd.endpoint(), api).await;
    // A 30 s lease: a takeover within a few seconds can only be a resign.
    let long = ["--lease-ttl", "30s"];
    let mut a = Server::start_on(&etcd.endpoint(), "a", api, &long);
    a.wait_log("leading", WAIT);
    let b = Server::start_on(&etcd.endpoint(), "b", api, &long);
    std::thread::sleep(Duration::from_millis(500));
    assert!(!leads(&b));

    a.signal(Signal::SIGTERM);
    let signalled = Instant::now();
    b.wait_log("leading", Duration::from_secs(10));
    assert!(signalled.elapsed() < Duration::from_secs(10));
    a.wait_exit(WAIT);
    assert!(a.log().contains("resigned leadership"), "{}", a.log());
    cli_ok(&etcd.endpoint(), &["run", "deploy/examples/api.yaml"]);
    fleet
        .wait_for("b serves", WAIT, |s| s.jobs_of("api").len() == 2)
        .await;
}

fn config(etcd: &Etcd) -> EtcdConfig {
    EtcdConfig {
        endpoints: vec![etcd.endpoint()],
        ..EtcdConfig::default()
    }
}

fn create(name: &str) -> Write {
    Write::create(name, &format!("[Service]\nExecStart=/bin/echo {name}\n"))
}

async fn a_deposed_leaders_writes_are_refused_by_the_fence(api: Api) {
    let etcd = api.etcd();
    let cfg = config(&etcd);
    let client = cfg.connect().await.expect("connect");
    let election = Election::new(client.clone(), cfg.clone(), "/kaylee/leader/");
    let stop = CancellationToken::new();
    let registry = AnyRegistry::connect(
        api.registry_api(),
        client.clone(),
        &cfg,
        FleetKeys::new("/_coreos.com/fleet/", "k"),
        128,
    )
    .await
    .expect("registry");

    let first = Session::start(&cfg, &client, Duration::from_secs(30))
        .await
        .expect("lease");
    let fence = election
        .campaign(&first, "first", &stop)
        .await
        .expect("leads");
    registry
        .apply(vec![create("k:a:aaaaaa:bbbbbb:1.service")], &fence)
        .await
        .expect("the leader may write");

    // A second candidate waits; the first one's lease is revoked (as if it
    // expired while the process hung), and the second one leads.
    let second = Session::start(&cfg, &client, Duration::from_secs(30))
        .await
        .expect("lease");
    let candidate = tokio::spawn({
        let election = Election::new(client.clone(), cfg.clone(), "/kaylee/leader/");
        let stop = stop.clone();
        async move {
            election
                .campaign(&second, "second", &stop)
                .await
                .map(|f| (f, second))
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!candidate.is_finished(), "only one leader at a time");
    first.revoke().await.expect("revoke");
    let (new_fence, _second) = tokio::time::timeout(WAIT, candidate)
        .await
        .expect("the standby leads")
        .expect("task")
        .expect("campaign");
    assert_eq!(
        election.leader().await.expect("leader").as_deref(),
        Some("second")
    );

    let fleet = FleetView::connect_on(&etcd.endpoint(), api).await;
    let before = fleet.snapshot().await;
    assert!(before.jobs.contains_key("k:a:aaaaaa:bbbbbb:1.service"));
    let refused = registry
        .apply(
            vec![
                Write::Destroy {
                    name: "k:a:aaaaaa:bbbbbb:1.service".into(),
                },
                create("k:a:aaaaaa:bbbbbb:2.service"),
            ],
            &fence,
        )
        .await;
    assert!(matches!(refused, Err(ApplyError::Fenced)), "{refused:?}");
    let after = fleet.snapshot().await;
    assert_eq!(after.keys, before.keys, "nothing written, not even unit/");
    registry
        .apply(vec![create("k:a:aaaaaa:bbbbbb:2.service")], &new_fence)
        .await
        .expect("the new leader may write");
    let written = fleet.snapshot().await;
    assert!(written.jobs.contains_key("k:a:aaaaaa:bbbbbb:2.service"));
}

for_each_api!(
    exactly_one_server_leads_and_sigkill_fails_over_after_the_lease,
    sigterm_hands_over_without_waiting_for_the_lease,
    a_deposed_leaders_writes_are_refused_by_the_fence,
);
