//! `kaylee server` publishes its machine's containers (docs/design.md §7), checked
//! end to end with the real Docker engine and a local image built from
//! scratch.

mod support;

use std::time::{Duration, Instant};
use support::docker::{Container, test_image};
use support::etcd::Etcd;
use support::fleet::FleetView;
use support::kaylee::Server;

const SETTLE: Duration = Duration::from_secs(10);

async fn value(view: &FleetView, key: &str) -> Option<String> {
    let mut kv = view.client().kv_client();
    let resp = kv.get(key, None).await.expect("get");
    resp.kvs()
        .first()
        .map(|k| String::from_utf8_lossy(k.value()).into_owned())
}

async fn wait_value(view: &FleetView, key: &str, want: Option<&str>, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let got = value(view, key).await;
        if got.as_deref() == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "{key} is {got:?}, expected {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_registers_labelled_containers_and_their_keys_die_with_it() {
    require_docker!();
    let image = test_image();
    let etcd = Etcd::start();
    let view = FleetView::connect(&etcd.endpoint()).await;
    let machine = format!("m{}", std::process::id());
    let mut server = Server::start(&etcd.endpoint(), "s1", &["--machine-id", &machine]);
    server.wait_log("registering this machine's containers", SETTLE);

    // A fleet unit's container name: only those are Kaylee's.
    let name = format!("k_api_abcdef_123456_{}", std::process::id());
    let labelled = Container::run(&[
        "-l",
        "kaylee.name=api",
        "--name",
        &name,
        &image,
        "sleep",
        "100",
    ]);
    let key = format!("/kaylee/instances/{machine}/api/{name}");
    let ip = labelled.ip();
    assert!(!ip.is_empty(), "the container has an IP");
    wait_value(&view, &key, Some(&ip), SETTLE).await;
    let presence = format!("/kaylee/registrators/{machine}");
    assert!(
        value(&view, &presence).await.is_some(),
        "the server says this machine's containers are registered"
    );

    let plain = Container::run(&[
        "--name",
        &format!("plain_{}", std::process::id()),
        &image,
        "sleep",
        "100",
    ]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut kv = view.client().kv_client();
    let all = kv
        .get(
            format!("/kaylee/instances/{machine}/"),
            Some(etcd_client::GetOptions::new().with_prefix()),
        )
        .await
        .expect("list");
    assert!(
        all.kvs()
            .iter()
            .all(|k| !String::from_utf8_lossy(k.key()).contains("plain_")),
        "an unlabelled container is never registered"
    );
    drop(plain);

    labelled.stop();
    wait_value(&view, &key, None, SETTLE).await;

    // Registered again, then the server dies: the key goes with its lease.
    labelled.start();
    wait_value(&view, &key, Some(&labelled.ip()), SETTLE).await;
    server.sigkill();
    wait_value(&view, &key, None, Duration::from_secs(10)).await;
    wait_value(&view, &presence, None, Duration::from_secs(10)).await;
}
