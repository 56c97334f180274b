//! The container registrator against a real etcd (spawned per test) and the
//! real Docker engine of this machine, through the shared harness in
//! `tests/support`.
//!
//! Every test starts its own etcd and uses container names that include
//! the test process id and the test's name. The registrators of tests
//! running in parallel all see every labelled container on the engine, so
//! assertions only look at keys for this test's own containers.
//!
//! With no Docker engine, the Docker tests print a loud SKIPPED notice to
//! stderr and return (or fail, with `KAYLEE_REQUIRE_DOCKER=1`).

mod support;

use etcd_client::PutOptions;
use kaylee_controllers::etcd::Session;
use kaylee_controllers::registrator::{RegistratorError, connect_docker, docker_host};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;
use support::docker::skip_docker_test;
use support::proxy::{Proxy, Upstream};
use tokio::time::sleep;

/// How long a key may take to follow a container.
const SETTLE: Duration = Duration::from_secs(10);

#[path = "registrator/world.rs"]
mod world;

use world::*;

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
    require_docker!();
    init_logs();
    let w = world(local_docker().await, "events").await;
    let containers = Containers::new("events");
    let lease = grant(&w, 60).await;
    let running = start(&w.registrator, lease);

    // Unlabelled and badly labelled containers first: once the good one
    // shows up, their events have been handled too.
    let plain = containers.run("plain", None);
    let bad = containers.run("bad", Some("bad/unit"));
    let bad2 = containers.run("bad2", Some("-dash"));
    // Labelled by hand, as one debugs: not a fleet unit's container.
    let debug = crate::support::docker::Container::run(&[
        "--name",
        &format!("{}-debug-web", containers.prefix),
        "--label",
        "kaylee.name=web",
        &containers.image,
        "sleep",
        "3600",
    ]);
    let mut web = containers.run("web", Some("web"));
    let web_name = web.name();
    assert_eq!(web_name, containers.name("web", "web"));
    let ip = ip_of(&web);
    let web_key = w.registrator.instance_key("web", &web_name);
    assert_eq!(
        web_key,
        format!("/kaylee/instances/{}/web/{web_name}", w.machine_id)
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
    for other in [&plain, &bad, &bad2, &debug] {
        let other = other.name();
        assert!(
            !everything.keys().any(|k| k.contains(other.as_str())),
            "{other} must not be registered: {everything:?}"
        );
    }

    // A rename moves the key.
    web.rename(&containers.name("web-renamed", "web"));
    let renamed = web.name();
    assert_eq!(renamed, containers.name("web-renamed", "web"));
    let want = BTreeMap::from([(w.registrator.instance_key("web", &renamed), ip.clone())]);
    expect_keys(
        &w,
        &containers,
        &want,
        lease,
        "renamed container re-registered",
    )
    .await;

    web.stop();
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
    require_docker!();
    init_logs();
    let w = world(local_docker().await, "resync").await;
    let containers = Containers::new("resync");
    let lease = grant(&w, 60).await;

    // Running before the registrator: found by the initial resync.
    let a = containers.run("a", Some("api"));
    let running = start(&w.registrator, lease);
    let b = containers.run("b", Some("api"));
    let c = containers.run("c", Some("worker"));
    let want = BTreeMap::from([
        (w.registrator.instance_key("api", &a.name()), ip_of(&a)),
        (w.registrator.instance_key("api", &b.name()), ip_of(&b)),
        (w.registrator.instance_key("worker", &c.name()), ip_of(&c)),
    ]);
    expect_keys(&w, &containers, &want, lease, "initial registrations").await;
    running.stop().await;

    // While nobody watches: a container stops, another starts, a stale key
    // appears under this machine and a key under another machine.
    a.stop();
    let d = containers.run("d", Some("worker"));
    let ghost = containers.name("ghost", "api");
    let stale = w.registrator.instance_key("api", &ghost);
    let foreign = format!("/kaylee/instances/other-machine/api/{ghost}");
    let mut kv = w.client.kv_client();
    for key in [&stale, &foreign] {
        if let Err(e) = w.config.timed(kv.put(key.as_str(), "10.9.9.9", None)).await {
            panic!("put {key}: {e}");
        }
    }
    // b's key holds a wrong IP on no lease.
    let b_key = w.registrator.instance_key("api", &b.name());
    if let Err(e) = w
        .config
        .timed(kv.put(b_key.as_str(), "10.8.8.8", Some(PutOptions::new())))
        .await
    {
        panic!("put {b_key}: {e}");
    }

    let running = start(&w.registrator, lease);
    let want = BTreeMap::from([
        (b_key.clone(), ip_of(&b)),
        (w.registrator.instance_key("worker", &c.name()), ip_of(&c)),
        (w.registrator.instance_key("worker", &d.name()), ip_of(&d)),
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
    require_docker!();
    init_logs();
    let w = world(local_docker().await, "lease").await;
    let containers = Containers::new("lease");
    let a = containers.run("a", Some("api"));
    let a_key = w.registrator.instance_key("api", &a.name());
    let a_ip = ip_of(&a);

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
    let b = containers.run("b", Some("api"));
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
        (w.registrator.instance_key("api", &b.name()), ip_of(&b)),
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
    require_docker!();
    // The registrator reaches Docker through a proxy that can cut it off.
    let host = docker_host(None);
    let upstream = if let Some(path) = host.strip_prefix("unix://") {
        Upstream::Unix(path.into())
    } else if host.starts_with('/') {
        Upstream::Unix(host.clone().into())
    } else if let Some(addr) = host.strip_prefix("tcp://") {
        Upstream::Tcp(addr.to_string())
    } else {
        skip_docker_test(
            &format!("the Docker host {host} cannot be proxied"),
            "Point DOCKER_HOST at a unix:// or tcp:// engine to run it",
        );
        return;
    };
    init_logs();
    let proxy = Proxy::start(upstream).await;
    let docker = match connect_docker(Some(&format!("tcp://{}", proxy.addr()))).await {
        Ok(d) => d,
        Err(e) => panic!("Docker through the proxy: {e}"),
    };
    let w = world(docker, "reconnect").await;
    let containers = Containers::new("reconnect");
    let lease = grant(&w, 60).await;
    let running = start(&w.registrator, lease);
    let a = containers.run("a", Some("api"));
    let want = BTreeMap::from([(w.registrator.instance_key("api", &a.name()), ip_of(&a))]);
    expect_keys(&w, &containers, &want, lease, "registered before the cut").await;
    let resyncs = w.registrator.stats().resyncs.load(Ordering::Relaxed);

    // The stream breaks; while the registrator cannot reach Docker, one
    // container stops and another starts. Stay down past the replay window
    // so only the resync can put things right.
    proxy.cut();
    a.stop();
    let b = containers.run("b", Some("api"));
    sleep(Duration::from_secs(3)).await;
    proxy.restore();

    let want = BTreeMap::from([(w.registrator.instance_key("api", &b.name()), ip_of(&b))]);
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
    b.stop();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_presence_and_networks_are_registered_as_they_are() {
    require_docker!();
    init_logs();
    let w = world(local_docker().await, "health").await;
    let containers = Containers::new("health");
    // fleet's object for this machine: where `--net=host` containers are.
    let mut kv = w.client.kv_client();
    let object = format!("{}machines/{}/object", support::fleet::FLEET, w.machine_id);
    let machine = format!(
        r#"{{"ID":"{}","PublicIP":"10.1.2.3","Metadata":{{}},"Version":"1.0.0"}}"#,
        w.machine_id
    );
    if let Err(e) = w.config.timed(kv.put(object, machine, None)).await {
        panic!("put the machine object: {e}");
    }
    let lease = grant(&w, 60).await;
    let running = start(&w.registrator, lease);
    let checked = containers.run_with(
        "checked",
        Some("web"),
        &[
            "--health-cmd",
            "test -f /tmp/ok",
            "--health-interval",
            "1s",
            "--health-retries",
            "1",
        ],
    );
    let host = containers.run_with("host", Some("web"), &["--net", "host"]);
    let none = containers.run_with("none", Some("web"), &["--net", "none"]);
    let checked_key = w.registrator.instance_key("web", &checked.name());
    let health_key = checked_key.replacen("/kaylee/instances/", "/kaylee/health/", 1);
    let host_key = w.registrator.instance_key("web", &host.name());
    let want = BTreeMap::from([
        (checked_key.clone(), ip_of(&checked)),
        (host_key.clone(), "10.1.2.3".to_string()),
    ]);
    expect_keys(
        &w,
        &containers,
        &want,
        lease,
        "bridge and host containers registered, none left out",
    )
    .await;
    let none_name = none.name();
    for (want, what) in [
        ("unhealthy", "the failing healthcheck reported unhealthy"),
        ("healthy", "the healthcheck reported healthy"),
    ] {
        if want == "healthy" {
            let touched = checked.exec(&["touch", "/tmp/ok"]);
            assert!(touched.status.success(), "{touched:?}");
        }
        let (w, key) = (&w, &health_key);
        eventually(what, || async move {
            match keys(w, key).await.get(key).map(|(v, _)| v.as_str()) {
                Some(h) if h == want => Ok(()),
                other => Err(format!("health {other:?}")),
            }
        })
        .await;
    }
    let everything = keys(&w, "/kaylee/").await;
    assert!(
        !everything.keys().any(|k| k.contains(none_name.as_str())),
        "--net=none has nothing to register: {everything:?}"
    );
    let presence = everything
        .get(&w.registrator.presence_key())
        .expect("the machine says it registers");
    assert_eq!(presence.1, lease, "presence lives on the lease");
    assert_eq!(
        everything.get(&health_key).map(|(_, l)| *l),
        Some(lease),
        "health lives on the lease"
    );
    running.stop().await;
}
