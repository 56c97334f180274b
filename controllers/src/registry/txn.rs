//! Fleet ops as etcd v3 transaction operations: the v3 registry's every
//! write, and the v2 registry's status keys (which live in v3).

use super::FleetOp;
use crate::keys::FleetKeys;
use etcd_client::{DeleteOptions, TxnOp};

/// One etcd operation of a transaction.
pub(super) enum Write {
    Put(String, String),
    Delete(String),
    DeletePrefix(String),
}

impl Write {
    pub(super) fn key(&self) -> &str {
        match self {
            Write::Put(k, _) | Write::Delete(k) | Write::DeletePrefix(k) => k,
        }
    }

    pub(super) fn size(&self) -> usize {
        match self {
            Write::Put(k, v) => k.len() + v.len(),
            Write::Delete(k) | Write::DeletePrefix(k) => k.len(),
        }
    }

    pub(super) fn into_op(self) -> TxnOp {
        match self {
            Write::Put(k, v) => TxnOp::put(k, v, None),
            Write::Delete(k) => TxnOp::delete(k, None),
            Write::DeletePrefix(k) => TxnOp::delete(k, Some(DeleteOptions::new().with_prefix())),
        }
    }
}

/// One op's etcd operations, which must land in the same transaction.
pub(super) fn txn_ops(keys: &FleetKeys, op: FleetOp) -> Vec<Write> {
    match op {
        FleetOp::Create { records, .. } => records
            .into_iter()
            .map(|r| Write::Put(keys.absolute(&r.key), r.value))
            .collect(),
        FleetOp::Destroy { name } => vec![Write::DeletePrefix(keys.job(&name))],
        FleetOp::Kaylee {
            key,
            value: Some(v),
        } => vec![Write::Put(key, v)],
        FleetOp::Kaylee { key, value: None } => vec![Write::Delete(key)],
    }
}
