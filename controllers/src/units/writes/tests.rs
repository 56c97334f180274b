use super::{
    Condition, Statuses, Stored, UnitStatus, WriteError, hash_of, newly_failed, newly_invalid,
    writer,
};
use crate::etcd::EtcdConfig;
use crate::etcd::EtcdError;
use crate::etcd::election::Fence;
use crate::registry::ApplyError;
use crate::registry::Write;
use crate::registry::memory::{MemoryRegistry, Outcome};
use std::sync::Arc;

#[test]
fn an_invalid_unit_is_logged_once_per_distinct_error() {
    let invalid = |error: &str, running: u32| UnitStatus {
        error: Some(error.to_string()),
        running,
        ..UnitStatus::default()
    };
    assert!(newly_invalid(None, "bad"));
    assert!(newly_invalid(Some(&UnitStatus::default()), "bad"));
    assert!(!newly_invalid(Some(&invalid("bad", 1)), "bad"));
    assert!(newly_invalid(Some(&invalid("bad", 1)), "worse"));
}

#[test]
fn a_failure_is_logged_once_per_template() {
    let failed = UnitStatus {
        spec_hash: "a".into(),
        condition: Some(Condition::Failed),
        ..UnitStatus::default()
    };
    assert!(newly_failed(None, &failed));
    let progressing = UnitStatus {
        condition: Some(Condition::Progressing),
        ..failed.clone()
    };
    assert!(newly_failed(Some(&progressing), &failed));
    let again = UnitStatus {
        available: 1,
        ..failed.clone()
    };
    assert!(!newly_failed(Some(&failed), &again));
    let other = UnitStatus {
        spec_hash: "b".into(),
        ..failed.clone()
    };
    assert!(newly_failed(Some(&failed), &other));
    assert!(!newly_failed(None, &progressing));
}

#[test]
fn a_stored_status_keeps_what_reconciles_read_back_not_its_list() {
    let s = UnitStatus {
        spec_revision: 7,
        unavailable: vec![crate::units::availability::Unavailable {
            unit: "k:web:1.service".into(),
            machine: String::new(),
            reason: "no fleet machine is registered in this cluster".into(),
        }],
        ..UnitStatus::default()
    };
    let json = s.to_json();
    let stored = Stored::of(&json, &s);
    assert_eq!(stored.hash, hash_of(&json));
    assert_eq!(stored.summary().spec_revision, 7);
    assert!(stored.summary().unavailable.is_empty());
}

/// The status writer over an in-memory registry, as a leader's is.
fn statuses() -> (Statuses, MemoryRegistry) {
    let registry = MemoryRegistry::new();
    let fence = Fence {
        key: "/kaylee/leader/1".into(),
        create_revision: 1,
    };
    let writes = writer(Arc::new(registry.clone()), fence, 128);
    (Statuses::new(&EtcdConfig::default(), writes), registry)
}

fn status(available: u32) -> UnitStatus {
    UnitStatus {
        spec_hash: "abcdef".into(),
        spec_revision: 3,
        desired: 2,
        available,
        condition: Some(if available == 2 {
            Condition::Available
        } else {
            Condition::Progressing
        }),
        ..UnitStatus::default()
    }
}

fn status_ops(batch: &[Write]) -> Vec<&Write> {
    batch
        .iter()
        .filter(|op| matches!(op, Write::Kaylee { .. }))
        .collect()
}

#[tokio::test]
async fn a_status_is_written_after_its_fleet_writes_and_only_when_it_changed() {
    let (s, registry) = statuses();
    let destroy = Write::Destroy {
        name: "k:web:aaaaaa:bbbbbb:1.service".into(),
    };
    s.publish("web", Some(status(1)), vec![destroy.clone()])
        .await
        .expect("written");
    s.publish("web", Some(status(1)), Vec::new())
        .await
        .expect("nothing to write");
    s.publish("web", Some(status(2)), Vec::new())
        .await
        .expect("written");
    let batches = registry.committed();
    let ops: Vec<Write> = batches.concat();
    assert_eq!(ops.len(), 3, "{ops:?}");
    assert_eq!(ops[0], destroy, "fleet writes come first");
    assert!(
        matches!(&ops[1], Write::Kaylee { key, value: Some(v) } if key == "/kaylee/status/web" && v.contains("\"available\":1")),
        "{ops:?}"
    );
    assert!(
        matches!(&ops[2], Write::Kaylee { value: Some(v), .. } if v.contains("\"available\":2")),
        "the unchanged status was not written again: {ops:?}"
    );
    assert_eq!(
        s.get("web").and_then(|x| x.condition),
        Some(Condition::Available)
    );
}

#[tokio::test]
async fn a_failed_write_is_retried_in_full_and_a_refused_one_says_fenced() {
    let (s, registry) = statuses();
    registry.next(Outcome::Fail);
    let failed = s.publish("web", Some(status(1)), Vec::new()).await;
    let cause = match &failed {
        Err(WriteError::Apply(e)) => &**e,
        other => panic!("expected the registry's error, got {other:?}"),
    };
    assert!(
        matches!(cause, ApplyError::Etcd(EtcdError::Unreachable(_))),
        "the registry's cause reaches the reconcile: {cause:?}"
    );
    assert!(!failed.as_ref().is_err_and(WriteError::is_fenced));
    assert!(
        s.get("web").is_none(),
        "an unwritten status is not remembered"
    );
    registry.next(Outcome::Commit);
    s.publish("web", Some(status(1)), Vec::new())
        .await
        .expect("written on the retry");
    assert_eq!(status_ops(&registry.committed().concat()).len(), 1);
    registry.next(Outcome::Fence);
    let fenced = s.publish("web", Some(status(2)), Vec::new()).await;
    assert!(fenced.is_err_and(|e| e.is_fenced()), "fenced");
}

#[tokio::test]
async fn a_deleted_unit_loses_its_status() {
    let (s, registry) = statuses();
    s.publish("web", Some(status(2)), Vec::new())
        .await
        .expect("written");
    s.publish("web", None, Vec::new()).await.expect("deleted");
    let ops = registry.committed().concat();
    assert!(
        matches!(ops.last(), Some(Write::Kaylee { key, value: None }) if key == "/kaylee/status/web"),
        "{ops:?}"
    );
    assert!(s.get("web").is_none());
    s.publish("web", None, Vec::new())
        .await
        .expect("nothing to delete");
    assert_eq!(registry.committed().concat().len(), ops.len());
}
