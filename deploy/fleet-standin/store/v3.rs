//! The same layout as flat v3 keys (Kaylee's `--fleet-etcd-api v3`): TTLs
//! are leases, v2's conditions are transactions.

use super::StoreError;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, PutOptions, Txn, TxnOp,
    TxnOpResponse,
};
use std::future::Future;
use std::time::Duration;

/// A v3 client; every call has the request deadline.
pub struct V3 {
    client: Client,
    timeout: Duration,
}

impl V3 {
    /// Connects lazily: an etcd that is down now is retried by each call.
    pub async fn new(endpoints: &[String], timeout: Duration) -> Result<V3, String> {
        let options = ConnectOptions::new()
            .with_connect_timeout(timeout)
            .with_timeout(timeout)
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
        let connect = Client::connect(endpoints, Some(options));
        let client = match tokio::time::timeout(timeout, connect).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(format!("--etcd-endpoints: {e}")),
            Err(_) => return Err(format!("connecting to {endpoints:?} took over {timeout:?}")),
        };
        Ok(V3 { client, timeout })
    }

    async fn timed<T, F>(&self, what: &str, call: F) -> Result<T, StoreError>
    where
        F: Future<Output = Result<T, etcd_client::Error>>,
    {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(StoreError::Unreachable(format!("etcd v3 {what}: {e}"))),
            Err(_) => Err(StoreError::Unreachable(format!(
                "etcd v3 {what}: no answer within {:?}",
                self.timeout
            ))),
        }
    }

    /// Every key with this prefix, with its value.
    pub async fn list(&self, prefix: &str) -> Result<Vec<(String, String)>, StoreError> {
        let mut kv = self.client.kv_client();
        let resp = self
            .timed(
                &format!("list {prefix}"),
                kv.get(prefix, Some(GetOptions::new().with_prefix())),
            )
            .await?;
        Ok(resp
            .kvs()
            .iter()
            .filter_map(|kv| {
                Some((
                    kv.key_str().ok()?.to_string(),
                    String::from_utf8_lossy(kv.value()).into_owned(),
                ))
            })
            .collect())
    }

    /// The value of `key` and the lease it is attached to (0: none).
    pub async fn get(&self, key: &str) -> Result<Option<(String, i64)>, StoreError> {
        let mut kv = self.client.kv_client();
        let resp = self.timed(&format!("get {key}"), kv.get(key, None)).await?;
        Ok(resp
            .kvs()
            .first()
            .map(|kv| (String::from_utf8_lossy(kv.value()).into_owned(), kv.lease())))
    }

    /// Puts `key` (on `lease` unless 0) when every compare holds; whether
    /// they did.
    pub async fn put_when(
        &self,
        key: &str,
        value: &str,
        lease: i64,
        when: Vec<Compare>,
    ) -> Result<bool, StoreError> {
        let options = (lease != 0).then(|| PutOptions::new().with_lease(lease));
        let txn = Txn::new()
            .when(when)
            .and_then([TxnOp::put(key, value, options)]);
        let mut kv = self.client.kv_client();
        let resp = self.timed(&format!("put {key}"), kv.txn(txn)).await?;
        Ok(resp.succeeded())
    }

    /// Creates `key` on `lease` unless it exists; otherwise its value and
    /// lease.
    pub async fn create_or_get(
        &self,
        key: &str,
        value: &str,
        lease: i64,
    ) -> Result<Option<(String, i64)>, StoreError> {
        let options = (lease != 0).then(|| PutOptions::new().with_lease(lease));
        let txn = Txn::new()
            .when([absent(key)])
            .and_then([TxnOp::put(key, value, options)])
            .or_else([TxnOp::get(key, None)]);
        let mut kv = self.client.kv_client();
        let resp = self.timed(&format!("create {key}"), kv.txn(txn)).await?;
        if resp.succeeded() {
            return Ok(None);
        }
        for op in resp.op_responses() {
            if let TxnOpResponse::Get(get) = op
                && let Some(kv) = get.kvs().first()
            {
                return Ok(Some((
                    String::from_utf8_lossy(kv.value()).into_owned(),
                    kv.lease(),
                )));
            }
        }
        // Deleted between the compare and the read: nobody holds it.
        Ok(Some((String::new(), 0)))
    }

    /// Deletes `key` when every compare holds; whether they did.
    pub async fn delete_when(&self, key: &str, when: Vec<Compare>) -> Result<bool, StoreError> {
        let txn = Txn::new().when(when).and_then([TxnOp::delete(key, None)]);
        let mut kv = self.client.kv_client();
        let resp = self.timed(&format!("delete {key}"), kv.txn(txn)).await?;
        Ok(resp.succeeded())
    }

    /// Deletes `key` (a missing one is fine).
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let mut kv = self.client.kv_client();
        self.timed(
            &format!("delete {key}"),
            kv.delete(key, None::<DeleteOptions>),
        )
        .await?;
        Ok(())
    }

    /// A new lease of `ttl` (whole seconds, rounded up).
    pub async fn grant(&self, ttl: Duration) -> Result<i64, StoreError> {
        let secs = i64::try_from(super::v2::whole_seconds(ttl)).unwrap_or(i64::MAX);
        let mut lease = self.client.lease_client();
        let resp = self.timed("lease grant", lease.grant(secs, None)).await?;
        Ok(resp.id())
    }

    /// Renews `lease` once; false when etcd no longer has it (expired).
    pub async fn keep_alive(&self, lease: i64) -> Result<bool, StoreError> {
        let mut client = self.client.lease_client();
        let renewed = self
            .timed("lease keep-alive", async {
                let (mut keeper, mut stream) = client.keep_alive(lease).await?;
                keeper.keep_alive().await?;
                Ok(stream.message().await?.is_some_and(|r| r.ttl() > 0))
            })
            .await?;
        Ok(renewed)
    }

    /// Revokes `lease`, deleting its keys.
    pub async fn revoke(&self, lease: i64) -> Result<(), StoreError> {
        let mut client = self.client.lease_client();
        self.timed("lease revoke", client.revoke(lease)).await?;
        Ok(())
    }
}

/// `key` does not exist (v2's `prevExist=false`).
pub fn absent(key: &str) -> Compare {
    Compare::create_revision(key, CompareOp::Equal, 0)
}

/// `key` exists.
pub fn present(key: &str) -> Compare {
    Compare::version(key, CompareOp::Greater, 0)
}

/// `key` holds `value` (v2's `prevValue`).
pub fn holds(key: &str, value: &str) -> Compare {
    Compare::value(key, CompareOp::Equal, value)
}
