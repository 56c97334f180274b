//! Writing the desired units straight into `/kaylee/units`, as CI would with
//! `etcdctl put`, before any server runs.

use crate::specs::BenchUnit;
use anyhow::Result;
use etcd_client::{Client, Txn, TxnOp};

const PUTS_PER_TXN: usize = 128;

pub const UNITS_PREFIX: &str = "/kaylee/units/";

pub async fn units(client: &Client, units: &[BenchUnit]) -> Result<()> {
    let mut kv = client.kv_client();
    for chunk in units.chunks(PUTS_PER_TXN) {
        let ops: Vec<TxnOp> = chunk
            .iter()
            .map(|u| TxnOp::put(format!("{UNITS_PREFIX}{}", u.name), u.json.clone(), None))
            .collect();
        kv.txn(Txn::new().and_then(ops)).await?;
    }
    Ok(())
}

/// One unit's new spec, as `kaylee run` would store it.
pub async fn put_unit(client: &Client, unit: &BenchUnit) -> Result<()> {
    let mut kv = client.kv_client();
    kv.put(
        format!("{UNITS_PREFIX}{}", unit.name),
        unit.json.clone(),
        None,
    )
    .await?;
    Ok(())
}
