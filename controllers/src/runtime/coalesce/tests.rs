use super::*;

/// A commit's failure as the tests' writers report it.
#[derive(Debug, Clone, PartialEq)]
enum TestError {
    Fenced,
    Failed(String),
    Stopped,
}

impl From<WriterStopped> for TestError {
    fn from(_: WriterStopped) -> TestError {
        TestError::Stopped
    }
}
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[tokio::test]
async fn concurrent_requests_share_batches_within_the_limit() {
    let commits: Arc<Mutex<Vec<Vec<u32>>>> = Arc::default();
    let seen = commits.clone();
    let c = Arc::new(Coalescer::spawn(
        10,
        |_| 3,
        |items| items,
        move |items: Vec<u32>| {
            let seen = seen.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                seen.lock()
                    .map(|mut s| s.push(items))
                    .map_err(|_| TestError::Fenced)
            }
        },
    ));
    let tasks: Vec<_> = (0..7u32)
        .map(|i| {
            let c = c.clone();
            tokio::spawn(async move { c.submit(vec![i]).await })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.ok(), Some(Ok(())));
    }
    let commits = commits.lock().map(|c| c.clone()).unwrap_or_default();
    let mut all: Vec<u32> = commits.iter().flatten().copied().collect();
    all.sort();
    assert_eq!(all, (0..7).collect::<Vec<_>>(), "every item written once");
    assert!(commits.iter().all(|b| b.len() * 3 <= 10), "{commits:?}");
    assert!(
        commits.len() < 7,
        "requests shared transactions: {commits:?}"
    );
}

#[tokio::test]
async fn every_waiter_sees_the_shared_outcome() {
    let c = Coalescer::spawn(
        100,
        |_| 1,
        |i| i,
        |_: Vec<u8>| async { Err(TestError::Fenced) },
    );
    assert_eq!(c.submit(vec![1]).await, Err(TestError::Fenced));
    assert_eq!(
        c.submit(vec![]).await,
        Ok(()),
        "nothing to write is no write"
    );
}

type Commits = Arc<Mutex<Vec<Vec<u32>>>>;

/// A coalescer of weight-1 items whose batches are recorded as they
/// are prepared and as they are committed; commits wait until the gate
/// is open (so requests queue behind them) and the first `failures`
/// fail.
fn recording(max: usize, failures: usize) -> Recording {
    let (commits, prepared): (Commits, Commits) = Default::default();
    let seen = commits.clone();
    let (gate, open) = tokio::sync::watch::channel(false);
    let calls = Arc::new(Mutex::new(0usize));
    let log = prepared.clone();
    let c = Coalescer::spawn(
        max,
        |_| 1,
        move |items: Vec<u32>| {
            if let Ok(mut l) = log.lock() {
                l.push(items.clone());
            }
            items
        },
        move |items: Vec<u32>| {
            let (seen, calls, mut open) = (seen.clone(), calls.clone(), open.clone());
            async move {
                let call = calls
                    .lock()
                    .map(|mut n| {
                        *n += 1;
                        *n
                    })
                    .ok();
                let _ = open.wait_for(|o| *o).await;
                if call.is_none_or(|n| n <= failures) {
                    return Err(TestError::Failed("refused".into()));
                }
                seen.lock()
                    .map(|mut s| s.push(items))
                    .map_err(|_| TestError::Fenced)
            }
        },
    );
    Recording {
        c: Arc::new(c),
        commits,
        prepared,
        gate,
    }
}

struct Recording {
    c: Arc<Coalescer<u32, TestError>>,
    commits: Commits,
    prepared: Commits,
    gate: tokio::sync::watch::Sender<bool>,
}

fn recorded(commits: &Commits) -> Vec<Vec<u32>> {
    commits.lock().map(|c| c.clone()).unwrap_or_default()
}

#[tokio::test]
async fn requests_are_split_so_batches_go_out_full_and_in_order() {
    let Recording {
        c, commits, gate, ..
    } = recording(10, 0);
    let submit = |r: u32| {
        let c = c.clone();
        let items: Vec<u32> = (r * 4..r * 4 + 4).collect();
        tokio::spawn(async move {
            let outcome = c.submit(items.clone()).await;
            (items, outcome)
        })
    };
    let mut tasks = vec![submit(0)];
    // The first request goes out alone, nothing else being queued;
    // the other five queue in order (this runtime polls tasks in the
    // order spawned) while it waits at the gate.
    tokio::time::sleep(Duration::from_millis(10)).await;
    tasks.extend((1..6).map(submit));
    tokio::time::sleep(Duration::from_millis(10)).await;
    let _ = gate.send(true);
    for t in tasks {
        let (items, outcome) = t.await.expect("task");
        assert_eq!(outcome, Ok(()));
        let written: Vec<u32> = recorded(&commits).concat();
        assert!(
            items.iter().all(|i| written.contains(i)),
            "a waiter hears back only when all its items are written"
        );
    }
    let batches = recorded(&commits);
    assert_eq!(
        batches.concat(),
        (0..24).collect::<Vec<_>>(),
        "in order, once"
    );
    assert_eq!(
        batches.iter().map(Vec::len).collect::<Vec<_>>(),
        [4, 10, 10]
    );
}

#[tokio::test]
async fn the_rest_of_a_request_whose_first_part_failed_is_not_written() {
    let Recording {
        c, commits, gate, ..
    } = recording(4, 1);
    let _ = gate.send(true);
    assert_eq!(
        c.submit((1..=6).collect()).await,
        Err(TestError::Failed("refused".into()))
    );
    assert_eq!(c.submit(vec![7]).await, Ok(()));
    assert_eq!(recorded(&commits), [vec![7]], "5 and 6 were dropped");
}

#[tokio::test]
async fn a_single_item_heavier_than_a_batch_goes_alone() {
    let commits: Commits = Arc::default();
    let seen = commits.clone();
    let c = Coalescer::spawn(
        2,
        |n: &u32| *n as usize,
        |items| items,
        move |items: Vec<u32>| {
            let seen = seen.clone();
            async move {
                seen.lock()
                    .map(|mut s| s.push(items))
                    .map_err(|_| TestError::Fenced)
            }
        },
    );
    assert_eq!(c.submit(vec![1, 5, 1]).await, Ok(()));
    assert_eq!(recorded(&commits), [vec![1], vec![5], vec![1]]);
}

/// Submits each of `requests` from its own task, in order (this
/// runtime polls tasks in the order spawned).
fn submit_all(
    c: &Arc<Coalescer<u32, TestError>>,
    requests: &[Vec<u32>],
) -> Vec<tokio::task::JoinHandle<Result<(), TestError>>> {
    requests
        .iter()
        .map(|r| {
            let (c, r) = (c.clone(), r.clone());
            tokio::spawn(async move { c.submit(r).await })
        })
        .collect()
}

#[tokio::test]
async fn the_next_batch_is_prepared_while_one_is_in_flight() {
    let r = recording(1, 0);
    let tasks = submit_all(&r.c, &[vec![1], vec![2], vec![3]]);
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(recorded(&r.prepared), [vec![1], vec![2]]);
    assert!(recorded(&r.commits).is_empty(), "1 is still in flight");
    let _ = r.gate.send(true);
    for t in tasks {
        assert_eq!(t.await.ok(), Some(Ok(())));
    }
    assert_eq!(recorded(&r.commits), [vec![1], vec![2], vec![3]]);
}

#[tokio::test]
async fn a_failed_commit_fails_the_batch_prepared_behind_it() {
    let r = recording(1, 1);
    let tasks = submit_all(&r.c, &[vec![1], vec![2]]);
    tokio::time::sleep(Duration::from_millis(10)).await;
    let _ = r.gate.send(true);
    for t in tasks {
        assert_eq!(t.await.ok(), Some(Err(TestError::Failed("refused".into()))));
    }
    assert_eq!(r.c.submit(vec![3]).await, Ok(()));
    assert_eq!(recorded(&r.commits), [vec![3]], "2 was never sent");
}

#[tokio::test]
async fn a_writer_that_dies_answers_stopped() {
    let c = Coalescer::spawn(
        100,
        |_| 1,
        |i| i,
        |_: Vec<u8>| async {
            panic!("the commit dies (test)");
            #[allow(unreachable_code)]
            Ok::<(), TestError>(())
        },
    );
    assert_eq!(c.submit(vec![1]).await, Err(TestError::Stopped));
    assert_eq!(
        c.submit(vec![2]).await,
        Err(TestError::Stopped),
        "and so does every later submit"
    );
}
