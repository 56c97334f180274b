//! Leader election on a key prefix, after etcd's concurrency package: each
//! candidate puts `<prefix><lease-id>` on its own lease; the key with the
//! lowest create revision leads; the others each wait for the deletion of
//! the key just before theirs. A leader's writes are fenced by a compare on
//! its key's create revision, so a deposed leader cannot write.

use crate::etcd::{EtcdConfig, EtcdError, Session};
use etcd_client::{
    Client, Compare, CompareOp, EventType, GetOptions, SortOrder, SortTarget, Txn, TxnOp,
    WatchOptions,
};
use tokio_util::sync::CancellationToken;

/// Proof of leadership: writes made under it carry [`Fence::compare`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// This leader's candidate key, `<election prefix><lease id in hex>`.
    pub key: String,
    /// The etcd revision at which `key` was created: a key put again after
    /// a deletion has another, so a deposed leader's writes fail even if
    /// its key reappears.
    pub create_revision: i64,
}

impl Fence {
    /// Holds only while this leader's key exists, unchanged since its creation.
    pub fn compare(&self) -> Compare {
        Compare::create_revision(self.key.clone(), CompareOp::Equal, self.create_revision)
    }
}

/// Why [`Election::campaign`] returned without leadership.
#[derive(Debug, thiserror::Error)]
pub enum ElectionError {
    /// An etcd call failed or timed out; campaign again on a new session.
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    /// The session's lease expired or could not be renewed while waiting,
    /// so the candidate key is (or must be assumed) gone.
    #[error("the session's lease was lost")]
    SessionLost,
    /// The `stop` token was cancelled (the server is shutting down).
    #[error("stopped")]
    Stopped,
}

/// One election: the candidates are the keys under a prefix
/// (`<etcd-prefix>/leader/` for Kaylee's servers), one per session.
pub struct Election {
    client: Client,
    config: EtcdConfig,
    prefix: String,
}

impl Election {
    /// An election among the keys under `prefix`, which should end in `/`
    /// so that no other key shares it. Nothing is sent until a call.
    pub fn new(client: Client, config: EtcdConfig, prefix: impl Into<String>) -> Self {
        Election {
            client,
            config,
            prefix: prefix.into(),
        }
    }

    /// Waits until this session leads. `value` (e.g. the server's name) is
    /// stored in the leader key for operators.
    pub async fn campaign(
        &self,
        session: &Session,
        value: &str,
        stop: &CancellationToken,
    ) -> Result<Fence, ElectionError> {
        let key = format!("{}{:x}", self.prefix, session.lease_id());
        let mut kv = self.client.kv_client();
        let absent = Compare::create_revision(key.clone(), CompareOp::Equal, 0);
        let txn = Txn::new()
            .when([absent])
            .and_then([TxnOp::put(
                key.clone(),
                value,
                Some(etcd_client::PutOptions::new().with_lease(session.lease_id())),
            )])
            .or_else([TxnOp::get(key.clone(), None)]);
        let resp = self.config.timed(kv.txn(txn)).await?;
        let create_revision = if resp.succeeded() {
            resp.header().map(|h| h.revision()).unwrap_or(0)
        } else {
            existing_create_revision(&resp).unwrap_or(0)
        };
        let fence = Fence {
            key,
            create_revision,
        };
        let lost = session.lost();
        loop {
            let before = self.predecessor(&fence).await?;
            let Some((pred, revision)) = before else {
                return Ok(fence);
            };
            tokio::select! {
                r = self.wait_deleted(&pred, revision) => r?,
                _ = lost.cancelled() => return Err(ElectionError::SessionLost),
                _ = stop.cancelled() => return Err(ElectionError::Stopped),
            }
        }
    }

    /// The candidate key created just before ours, if any, and the revision
    /// it was read at.
    async fn predecessor(&self, fence: &Fence) -> Result<Option<(String, i64)>, ElectionError> {
        let mut kv = self.client.kv_client();
        let opts = GetOptions::new()
            .with_prefix()
            .with_sort(SortTarget::Create, SortOrder::Descend)
            .with_max_create_revision(fence.create_revision - 1)
            .with_limit(1);
        let resp = self
            .config
            .timed(kv.get(self.prefix.clone(), Some(opts)))
            .await?;
        let revision = resp.header().map(|h| h.revision()).unwrap_or(0);
        Ok(resp
            .kvs()
            .first()
            .and_then(|k| k.key_str().ok())
            .map(|k| (k.to_string(), revision)))
    }

    /// Returns once `key` is deleted (watching from just after `revision`).
    async fn wait_deleted(&self, key: &str, revision: i64) -> Result<(), ElectionError> {
        let mut client = self.client.clone();
        let opts = WatchOptions::new().with_start_revision(revision + 1);
        let mut stream = self.config.timed(client.watch(key, Some(opts))).await?;
        loop {
            match stream.message().await {
                Ok(Some(resp)) => {
                    if resp.canceled()
                        || resp
                            .events()
                            .iter()
                            .any(|e| e.event_type() == EventType::Delete)
                    {
                        return Ok(());
                    }
                }
                // A broken watch: re-check from the top.
                Ok(None) | Err(_) => return Ok(()),
            }
        }
    }

    /// Returns a token cancelled as soon as this leadership ends: the key is
    /// deleted (lease expired, resigned, removed by hand) or the session is
    /// lost.
    pub fn monitor(&self, fence: &Fence, session: &Session) -> CancellationToken {
        let ended = CancellationToken::new();
        let token = ended.clone();
        let lost = session.lost();
        let client = self.client.clone();
        let config = self.config.clone();
        let fence = fence.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = watch_key_gone(client, config, fence) => {}
                _ = lost.cancelled() => {}
                _ = token.cancelled() => {}
            }
            token.cancel();
        });
        ended
    }

    /// Gives leadership up at once so a standby takes over without waiting
    /// for the lease to expire.
    pub async fn resign(&self, fence: &Fence) -> Result<(), EtcdError> {
        let mut kv = self.client.kv_client();
        let txn = Txn::new()
            .when([fence.compare()])
            .and_then([TxnOp::delete(fence.key.clone(), None)]);
        self.config.timed(kv.txn(txn)).await?;
        Ok(())
    }

    /// The current leader's stored value, if any server leads.
    pub async fn leader(&self) -> Result<Option<String>, EtcdError> {
        let mut kv = self.client.kv_client();
        let opts = GetOptions::new()
            .with_prefix()
            .with_sort(SortTarget::Create, SortOrder::Ascend)
            .with_limit(1);
        let resp = self
            .config
            .timed(kv.get(self.prefix.clone(), Some(opts)))
            .await?;
        Ok(resp
            .kvs()
            .first()
            .map(|k| String::from_utf8_lossy(k.value()).into_owned()))
    }
}

fn existing_create_revision(resp: &etcd_client::TxnResponse) -> Option<i64> {
    resp.op_responses().into_iter().find_map(|op| match op {
        etcd_client::TxnOpResponse::Get(g) => g.kvs().first().map(|k| k.create_revision()),
        _ => None,
    })
}

/// Ends when the fence key no longer exists with its create revision.
async fn watch_key_gone(client: Client, config: EtcdConfig, fence: Fence) {
    let mut backoff = std::time::Duration::from_millis(100);
    loop {
        let mut kv = client.kv_client();
        // When etcd is unreachable the session's own deadline decides when
        // the lease must be assumed gone; keep checking meanwhile.
        if let Ok(resp) = config.timed(kv.get(fence.key.clone(), None)).await {
            let current = resp.kvs().first().map(|k| k.create_revision());
            if current != Some(fence.create_revision) {
                return;
            }
            let revision = resp.header().map(|h| h.revision()).unwrap_or(0);
            let mut c = client.clone();
            let opts = WatchOptions::new().with_start_revision(revision + 1);
            if let Ok(mut stream) = config.timed(c.watch(fence.key.clone(), Some(opts))).await {
                while let Ok(Some(resp)) = stream.message().await {
                    if resp.canceled() {
                        break;
                    }
                    if resp
                        .events()
                        .iter()
                        .any(|e| e.event_type() == EventType::Delete)
                    {
                        return;
                    }
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(std::time::Duration::from_secs(2));
    }
}
