//! Fleet ops as etcd v3 transaction operations: the v3 registry's every
//! write, and the v2 registry's status keys (which live in v3).

use super::Write;
use crate::keys::FleetKeys;
use etcd_client::{DeleteOptions, TxnOp};

/// One etcd operation of a transaction.
pub(super) enum EtcdOp {
    Put(String, String),
    Delete(String),
    DeletePrefix(String),
}

impl EtcdOp {
    pub(super) fn key(&self) -> &str {
        match self {
            EtcdOp::Put(k, _) | EtcdOp::Delete(k) | EtcdOp::DeletePrefix(k) => k,
        }
    }

    pub(super) fn size(&self) -> usize {
        match self {
            EtcdOp::Put(k, v) => k.len() + v.len(),
            EtcdOp::Delete(k) | EtcdOp::DeletePrefix(k) => k.len(),
        }
    }

    pub(super) fn into_op(self) -> TxnOp {
        match self {
            EtcdOp::Put(k, v) => TxnOp::put(k, v, None),
            EtcdOp::Delete(k) => TxnOp::delete(k, None),
            EtcdOp::DeletePrefix(k) => TxnOp::delete(k, Some(DeleteOptions::new().with_prefix())),
        }
    }
}

/// One op's etcd operations, which must land in the same transaction.
pub(super) fn txn_ops(keys: &FleetKeys, op: Write) -> Vec<EtcdOp> {
    match op {
        Write::Create { records, .. } => records
            .into_iter()
            .map(|r| EtcdOp::Put(keys.absolute(&r.key), r.value))
            .collect(),
        Write::Destroy { name } => vec![EtcdOp::DeletePrefix(keys.job(&name))],
        Write::Kaylee {
            key,
            value: Some(v),
        } => vec![EtcdOp::Put(key, v)],
        Write::Kaylee { key, value: None } => vec![EtcdOp::Delete(key)],
    }
}
