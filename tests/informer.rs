//! The informer against a real etcd: a watch from a compacted revision is
//! answered with a cancel, and the informer relists and converges.

mod support;

use etcd_client::Client;
use kaylee_controllers::etcd::{EtcdConfig, EtcdPrefix};
use kaylee_controllers::runtime::{
    Cache, EventStream, Keep, Listing, Source, SourceError, informer,
};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::etcd::Etcd;
use tokio_util::sync::CancellationToken;

/// The real source, except that its first listing is an old one: as if the
/// informer had listed, then lost its watch while etcd compacted.
struct StaleFirst {
    real: EtcdPrefix,
    stale: Mutex<Option<Listing>>,
    lists: Arc<AtomicUsize>,
}

impl Source for StaleFirst {
    async fn list_keeping(&self, keep: &Keep<'_>) -> Result<Listing, SourceError> {
        self.lists.fetch_add(1, Ordering::SeqCst);
        let stale = self.stale.lock().map(|mut s| s.take()).unwrap_or(None);
        match stale {
            Some(listing) => Ok(listing),
            None => self.real.list_keeping(keep).await,
        }
    }

    async fn watch(&self, revision: i64) -> Result<EventStream, SourceError> {
        self.real.watch(revision).await
    }
}

fn contents(cache: &Cache, names: &[&str]) -> BTreeMap<String, String> {
    names
        .iter()
        .flat_map(|n| cache.entries_of(n))
        .map(|(k, v)| (k, String::from_utf8_lossy(&v.bytes).into_owned()))
        .collect()
}

async fn connect(etcd: &Etcd) -> (Client, EtcdConfig) {
    let config = EtcdConfig {
        endpoints: vec![etcd.endpoint()],
        ..EtcdConfig::default()
    };
    (config.connect().await.expect("connect"), config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compacted_watch_relists_and_converges() {
    let etcd = Etcd::start();
    let (client, config) = connect(&etcd).await;
    let mut kv = client.kv_client();
    kv.put("/t/a", "1", None).await.expect("put");
    kv.put("/t/b", "2", None).await.expect("put");
    let real = EtcdPrefix::new(client.clone(), config.clone(), "/t/");
    let old = real.list().await.expect("list");

    kv.put("/t/c", "3", None).await.expect("put");
    kv.delete("/t/a", None).await.expect("delete");
    let last = kv.put("/t/b", "22", None).await.expect("put");
    let revision = last.header().map(|h| h.revision()).unwrap_or(0);
    client
        .kv_client()
        .compact(revision, None)
        .await
        .expect("compact");
    assert!(
        real.watch(old.revision).await.is_ok(),
        "opening the watch succeeds; the cancel comes as its first message"
    );

    let lists = Arc::new(AtomicUsize::new(0));
    let source = StaleFirst {
        real,
        stale: Mutex::new(Some(old)),
        lists: lists.clone(),
    };
    let cache = Cache::new(|k| k.strip_prefix("/t/").map(str::to_string));
    let changed = Arc::new(Mutex::new(Vec::new()));
    let seen = changed.clone();
    let stop = CancellationToken::new();
    let task = tokio::spawn(informer::run(
        "test",
        source,
        cache.clone(),
        move |n| {
            if let Ok(mut s) = seen.lock() {
                s.push(n.to_string());
            }
        },
        stop.clone(),
    ));
    let want: BTreeMap<String, String> = [("/t/b", "22"), ("/t/c", "3")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let names = ["a", "b", "c"];
    let converged = cache
        .wait_until(Duration::from_secs(10), |c| contents(c, &names) == want)
        .await;
    assert!(converged, "cache holds {:?}", contents(&cache, &names));
    assert_eq!(lists.load(Ordering::SeqCst), 2, "exactly one relist");
    let changed = changed.lock().map(|c| c.clone()).unwrap_or_default();
    for n in names {
        assert!(
            changed.contains(&n.to_string()),
            "{n} was enqueued: {changed:?}"
        );
    }

    // And it keeps watching after the relist.
    kv.put("/t/d", "4", None).await.expect("put");
    assert!(
        cache
            .wait_until(Duration::from_secs(10), |c| c.get("/t/d").is_some())
            .await
    );
    stop.cancel();
    task.await.expect("informer stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_holds_only_the_keys_its_cache_wants() {
    let etcd = Etcd::start();
    let (client, config) = connect(&etcd).await;
    let mut kv = client.kv_client();
    for key in [
        "/t/a/object",
        "/t/a/target-state",
        "/t/b/object",
        "/u/c/object",
    ] {
        kv.put(key, "x", None).await.expect("put");
    }
    // Like the jobs cache: job objects only.
    let cache = Cache::new(|k| {
        k.strip_prefix("/t/")
            .and_then(|k| k.strip_suffix("/object"))
            .map(str::to_string)
    });
    let source = EtcdPrefix::new(client.clone(), config.clone(), "/t/");
    let keys = |l: &Listing| l.items.iter().map(|i| i.key.clone()).collect::<Vec<_>>();

    let kept = source
        .list_keeping(&|k, v| cache.wants(k, v))
        .await
        .expect("list");
    assert_eq!(keys(&kept), ["/t/a/object", "/t/b/object"]);
    let all = source.list().await.expect("list");
    assert_eq!(
        keys(&all),
        ["/t/a/object", "/t/a/target-state", "/t/b/object"]
    );
    assert_eq!(kept.revision, all.revision, "nothing was written between");
}
