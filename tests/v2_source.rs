//! The v2 informer source against a real etcd: only keys under its prefix,
//! a deleted job directory empties the cache, an idle watch polls again,
//! and a watch whose index v2 has already cleared from its 1000-event
//! history relists and converges, while one idle through writes elsewhere
//! does not.

mod support;

use futures::StreamExt;
use kaylee_controllers::etcd::EtcdConfig;
use kaylee_controllers::etcd::v2::V2Prefix;
use kaylee_controllers::etcd::v2::{Streamed, V2Client};
use kaylee_controllers::runtime::{
    Cache, EventStream, Keep, Listing, Source, SourceError, WatchEvent, informer,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::fleet::{Api, FLEET};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(20);

/// A v2 client whose first endpoint refuses connections, so every test
/// here also goes through the move to the next endpoint.
fn client(endpoint: &str) -> V2Client {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    V2Client::new(&EtcdConfig {
        endpoints: vec![format!("http://{dead}"), endpoint.to_string()],
        ..EtcdConfig::default()
    })
    .expect("v2 client")
}

fn jobs() -> String {
    format!("{FLEET}job/k:")
}

fn job_key(name: &str, field: &str) -> String {
    format!("{FLEET}job/{name}/{field}")
}

/// Caches every key (the unit name is the key itself).
fn cache() -> Arc<Cache> {
    Cache::new(|k| Some(k.to_string()))
}

/// Whether `cache` holds exactly `listing`.
fn holds(cache: &Cache, listing: &Listing) -> bool {
    cache.len() == listing.items.len()
        && listing
            .items
            .iter()
            .all(|i| cache.get(&i.key).is_some_and(|v| *v.bytes == *i.value))
}

/// Puts `n` keys from 8 writers at once; `put(i)` is the `i`-th key and
/// its value.
async fn put_concurrently(v2: &V2Client, n: usize, put: fn(usize) -> (String, String)) {
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..8 {
        let v2 = v2.clone();
        writers.spawn(async move {
            for i in (w..n).step_by(8) {
                let (key, value) = put(i);
                v2.set(&key, &value, None).await.expect("put");
            }
        });
    }
    while let Some(done) = writers.join_next().await {
        done.expect("writer");
    }
}

fn run_informer(source: impl Source, cache: &Arc<Cache>, stop: &CancellationToken) {
    tokio::spawn(informer::run(
        "test",
        source,
        cache.clone(),
        |_| {},
        stop.clone(),
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_keys_under_the_prefix_and_whole_directories_go() {
    let etcd = Api::V2.etcd();
    let v2 = client(&etcd.endpoint());
    let source = V2Prefix::new(v2.clone(), jobs());
    let empty = source
        .list()
        .await
        .expect("a missing directory lists empty");
    assert!(empty.items.is_empty());
    assert!(empty.revision > 0);

    for (name, field) in [
        ("k:a:1:2:1.service", "object"),
        ("k:a:1:2:1.service", "target-state"),
        ("etcd.service", "object"),
        ("kk:a:1:2:1.service", "object"),
    ] {
        v2.set(&job_key(name, field), "x", None).await.expect("put");
    }
    let listed: Vec<String> = source
        .list()
        .await
        .expect("list")
        .items
        .into_iter()
        .map(|i| i.key)
        .collect();
    assert_eq!(
        listed,
        [
            job_key("k:a:1:2:1.service", "object"),
            job_key("k:a:1:2:1.service", "target-state")
        ]
    );
    let objects = source
        .list_keeping(&|k, _| k.ends_with("/object"))
        .await
        .expect("list");
    assert_eq!(
        objects.items.iter().map(|i| &i.key).collect::<Vec<_>>(),
        [&job_key("k:a:1:2:1.service", "object")],
        "a listing keeps only what its cache wants"
    );

    let cache = cache();
    let stop = CancellationToken::new();
    run_informer(source.clone(), &cache, &stop);
    cache.wait_synced().await;
    assert_eq!(cache.len(), 2);
    // Foreign changes never reach the cache; ours do.
    v2.set(&job_key("etcd.service", "target"), "m1", None)
        .await
        .expect("put");
    v2.set(&job_key("k:b:1:2:1.service", "object"), "y", None)
        .await
        .expect("put");
    assert!(cache.wait_until(WAIT, |c| c.len() == 3).await);
    assert!(cache.get(&job_key("etcd.service", "target")).is_none());

    // fleet's destroy: one recursive delete of the job's directory.
    v2.delete(&format!("{FLEET}job/k:a:1:2:1.service"), true)
        .await
        .expect("delete");
    assert!(
        cache
            .wait_until(WAIT, |c| c.len() == 1
                && c.get(&job_key("k:b:1:2:1.service", "object")).is_some())
            .await,
        "both keys of the deleted directory left the cache"
    );
    // And the whole registry at once.
    v2.delete("/_coreos.com", true).await.expect("delete");
    assert!(cache.wait_until(WAIT, |c| c.is_empty()).await);
    stop.cancel();
}

/// Hands out one old listing first, as an informer that listed long ago
/// would hold, then the real ones.
#[derive(Clone)]
struct ListedLongAgo {
    inner: V2Prefix,
    old: Arc<Mutex<Option<Listing>>>,
    lists: Arc<AtomicUsize>,
}

impl Source for ListedLongAgo {
    async fn list_keeping(&self, keep: &Keep<'_>) -> Result<Listing, SourceError> {
        self.lists.fetch_add(1, Ordering::SeqCst);
        let old = self.old.lock().expect("lock").take();
        match old {
            Some(listing) => Ok(listing),
            None => self.inner.list_keeping(keep).await,
        }
    }

    async fn watch(&self, revision: i64) -> Result<EventStream, SourceError> {
        self.inner.watch(revision).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_cleared_from_v2_history_relists_and_converges() {
    let etcd = Api::V2.etcd();
    let v2 = client(&etcd.endpoint());
    let source = V2Prefix::new(v2.clone(), jobs());
    for n in 0..10 {
        let key = job_key(&format!("k:t:0:0:{n}.service"), "object");
        v2.set(&key, "old", None).await.expect("put");
    }
    let old = source.list().await.expect("list");
    assert_eq!(old.items.len(), 10);

    // etcd v2 keeps the last 1000 events; make more, in and out of the
    // prefix, then drop a job the old listing still has.
    put_concurrently(&v2, 1100, |i| {
        let name = if i % 2 == 0 {
            format!("k:t:0:0:{}.service", (i / 2) % 40)
        } else {
            "etcd.service".to_string()
        };
        (job_key(&name, "object"), i.to_string())
    })
    .await;
    v2.delete(&format!("{FLEET}job/k:t:0:0:3.service"), true)
        .await
        .expect("delete");

    let mut stream = source.watch(old.revision).await.expect("watch");
    let first = tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("the watch answers at once");
    assert!(
        matches!(first, Some(Err(SourceError::Compacted))),
        "{first:?}"
    );

    let lists = Arc::new(AtomicUsize::new(0));
    let stale = ListedLongAgo {
        inner: source.clone(),
        old: Arc::new(Mutex::new(Some(old))),
        lists: lists.clone(),
    };
    let cache = cache();
    let stop = CancellationToken::new();
    run_informer(stale, &cache, &stop);
    let now = source.list().await.expect("list");
    assert_eq!(now.items.len(), 39, "40 jobs written, one destroyed");
    assert!(
        cache.wait_until(WAIT, |c| holds(c, &now)).await,
        "the cache converged to etcd's content ({} keys cached)",
        cache.len()
    );
    assert!(lists.load(Ordering::SeqCst) >= 2, "it relisted");

    // And it watches on from there.
    v2.set(&job_key("k:t:0:0:3.service", "object"), "back", None)
        .await
        .expect("put");
    assert!(
        cache
            .wait_until(WAIT, |c| c
                .get(&job_key("k:t:0:0:3.service", "object"))
                .is_some_and(|v| &*v.bytes == b"back"))
            .await
    );
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_watch_polls_again_and_sees_later_changes() {
    let etcd = Api::V2.etcd();
    let v2 = client(&etcd.endpoint());
    let source = V2Prefix::new(v2.clone(), jobs()).with_poll_window(Duration::from_millis(200));
    let listing = source.list().await.expect("list");
    let mut stream = source.watch(listing.revision).await.expect("watch");
    // Changes elsewhere in the registry while the polls come back empty.
    for i in 0..20 {
        let key = format!("{FLEET}machines/m1/object");
        v2.set(&key, &i.to_string(), None).await.expect("put");
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let key = job_key("k:a:1:2:1.service", "object");
    v2.set(&key, "x", None).await.expect("put");
    let next = tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("the change arrives");
    match next {
        Some(Ok(events)) => assert_eq!(events.len(), 1, "{events:?}"),
        other => panic!("{other:?}"),
    }
}

/// etcd answers a long poll from an index its 1000-event history no longer
/// holds with "event index cleared", whatever lay under the key polled. A
/// watch idle through more writes elsewhere than that must not take them
/// for a gap of its own (and relist): once a probe found nothing missed, a
/// silent stream is only asked whether etcd answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_watch_outlives_v2_history_spent_on_other_keys() {
    let etcd = Api::V2.etcd();
    let v2 = client(&etcd.endpoint());
    let source = V2Prefix::new(v2.clone(), jobs());
    let listing = source.list().await.expect("list");
    let mut stream = source.watch(listing.revision).await.expect("watch");
    // Read as an informer reads: all along.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        while let Some(next) = stream.next().await {
            if tx.send(next).is_err() {
                break;
            }
        }
    });
    // Long enough for the probes to space out (up to POLL_WINDOW, 5 s).
    tokio::time::sleep(Duration::from_secs(8)).await;
    put_concurrently(&v2, 2500, |i| {
        (format!("{FLEET}machines/m{}/object", i % 50), i.to_string())
    })
    .await;
    // Past the next probes, which the old index would have failed.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let key = job_key("k:a:1:2:1.service", "object");
    v2.set(&key, "x", None).await.expect("put");
    let next = tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("the change arrives");
    reader.abort();
    match next {
        Some(Ok(events)) => assert_eq!(events.len(), 1, "{events:?}"),
        other => panic!("the watch ended instead: {other:?}"),
    }
}

/// etcd drops a v2 watcher, silently, once 100 events for it wait unsent,
/// and they wait as soon as its writes to the connection block on a reader
/// that leaves the socket full. A stream is read by a thread of its own as
/// its bytes arrive, however long its owner takes to ask for the next
/// event: here 16 MiB of events arrive while nobody asks, and every one is
/// there afterwards, in order, from the one stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_nobody_reads_for_a_while_is_not_dropped() {
    let etcd = Api::V2.etcd();
    let v2 = client(&etcd.endpoint());
    let dir = format!("{FLEET}job");
    let start = v2.get("/", false).await.expect("index").etcd_index;
    let mut stream = v2.stream(&dir, Some(start + 1)).await.expect("stream");
    put_concurrently(&v2, 1000, |i| {
        (
            job_key(&format!("k:t:0:0:{i}.service"), "object"),
            "x".repeat(16 * 1024),
        )
    })
    .await;
    let mut last = start;
    for n in 0..1000 {
        match stream.next(Duration::from_secs(5)).await {
            Ok(Streamed::Event(answer)) => {
                let index = answer.node.modified_index;
                assert!(index > last, "event {n}: index {index} after {last}");
                last = index;
            }
            other => panic!("event {n} of 1000 never came: {other:?}"),
        }
    }
}

/// A stream opens live at etcd's next index; what happened between the
/// index the watch was asked to start at and that one comes first, from
/// etcd's history, in order, and then what the stream brings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_from_the_past_brings_history_then_the_live_stream() {
    let etcd = Api::V2.etcd();
    let v2 = client(&etcd.endpoint());
    let source = V2Prefix::new(v2.clone(), jobs());
    let listing = source.list().await.expect("list");
    // Before the watch: 30 changes under the prefix and 30 elsewhere.
    for i in 0..30 {
        v2.set(
            &job_key(&format!("k:t:0:0:{i}.service"), "object"),
            "old",
            None,
        )
        .await
        .expect("put");
        v2.set(&format!("{FLEET}machines/m{i}/object"), "m", None)
            .await
            .expect("put");
    }
    let mut stream = source.watch(listing.revision).await.expect("watch");
    let mut seen = Vec::new();
    while seen.len() < 30 {
        match tokio::time::timeout(WAIT, stream.next()).await {
            Ok(Some(Ok(events))) => seen.extend(events),
            other => panic!("after {} events: {other:?}", seen.len()),
        }
    }
    // Then a change made now, through the stream.
    v2.set(&job_key("k:t:0:0:0.service", "object"), "new", None)
        .await
        .expect("put");
    match tokio::time::timeout(WAIT, stream.next()).await {
        Ok(Some(Ok(events))) => seen.extend(events),
        other => panic!("the live change: {other:?}"),
    }
    let keys: Vec<(String, Vec<u8>)> = seen
        .into_iter()
        .map(|e| match e {
            WatchEvent::Put { key, value, .. } => (key, value),
            other => panic!("{other:?}"),
        })
        .collect();
    let mut expected: Vec<(String, Vec<u8>)> = (0..30)
        .map(|i| {
            (
                job_key(&format!("k:t:0:0:{i}.service"), "object"),
                b"old".to_vec(),
            )
        })
        .collect();
    expected.push((job_key("k:t:0:0:0.service", "object"), b"new".to_vec()));
    assert_eq!(keys, expected);
}
