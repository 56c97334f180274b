//! A lease kept alive for as long as this server lives: the leader key and
//! the registered container instances hang on it, so when the server dies
//! they vanish after one TTL, and a graceful stop revokes them at once.

use super::config::{EtcdConfig, EtcdError};
use etcd_client::{Client, LeaseKeepAliveStream, LeaseKeeper};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tokio_util::sync::CancellationToken;

/// One etcd lease and the background task that renews it every third of the
/// requested TTL (never more often than every 200 ms). Dropping the session
/// stops the renewals and cancels [`Session::lost`], leaving the lease to
/// expire; [`Session::revoke`] ends it at once.
pub struct Session {
    client: Client,
    config: EtcdConfig,
    lease_id: i64,
    lost: CancellationToken,
    keeper: JoinHandle<()>,
}

impl Session {
    /// Grants a lease of `ttl` and keeps it alive in the background.
    ///
    /// etcd lease TTLs are whole seconds: `ttl` is rounded down, to at
    /// least 1 s, and etcd may grant more (its minimum, 1.5 election
    /// timeouts rounded up: 2 s with its default settings). Fails when the
    /// grant fails or times out.
    pub async fn start(
        config: &EtcdConfig,
        client: &Client,
        ttl: Duration,
    ) -> Result<Session, EtcdError> {
        let ttl_secs = i64::try_from(ttl.as_secs().max(1)).unwrap_or(i64::MAX);
        let mut lease = client.lease_client();
        let sent = Instant::now();
        let grant = config.timed(lease.grant(ttl_secs, None)).await?;
        let lease_id = grant.id();
        let lost = CancellationToken::new();
        let keeper = tokio::spawn(keep_alive(
            client.clone(),
            config.clone(),
            lease_id,
            sent + Duration::from_secs(u64::try_from(grant.ttl()).unwrap_or(0)),
            ttl,
            lost.clone(),
        ));
        Ok(Session {
            client: client.clone(),
            config: config.clone(),
            lease_id,
            lost,
            keeper,
        })
    }

    /// The lease's id, as etcd granted it: what keys are put with
    /// (`PutOptions::with_lease`) to vanish with the session.
    pub fn lease_id(&self) -> i64 {
        self.lease_id
    }

    /// Cancelled as soon as the lease is gone, or could not be renewed before
    /// its TTL ran out (so holders must assume it is gone).
    pub fn lost(&self) -> CancellationToken {
        self.lost.clone()
    }

    /// Ends the session now: every key on the lease is deleted by etcd.
    pub async fn revoke(self) -> Result<(), EtcdError> {
        self.keeper.abort();
        self.lost.cancel();
        let mut lease = self.client.lease_client();
        self.config.timed(lease.revoke(self.lease_id)).await?;
        Ok(())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.keeper.abort();
        self.lost.cancel();
    }
}

async fn keep_alive(
    client: Client,
    config: EtcdConfig,
    id: i64,
    mut deadline: Instant,
    ttl: Duration,
    lost: CancellationToken,
) {
    let period = (ttl / 3).max(Duration::from_millis(200));
    let mut lease = client.lease_client();
    loop {
        // Open (or reopen) the keep-alive stream; retry until the lease
        // would have expired anyway.
        let opened = tokio::select! {
            r = timeout(config.request_timeout, lease.keep_alive(id)) => r,
            _ = sleep_until(deadline) => { lost.cancel(); return; }
            _ = lost.cancelled() => return,
        };
        let (keeper, stream) = match opened {
            Ok(Ok(pair)) => pair,
            _ => {
                tokio::select! {
                    _ = sleep(Duration::from_millis(200)) => continue,
                    _ = sleep_until(deadline) => { lost.cancel(); return; }
                    _ = lost.cancelled() => return,
                }
            }
        };
        match renew(keeper, stream, period, &mut deadline, &lost).await {
            Renewal::Expired => {
                lost.cancel();
                return;
            }
            Renewal::Stopped => return,
            Renewal::StreamBroken => continue,
        }
    }
}

enum Renewal {
    Expired,
    Stopped,
    StreamBroken,
}

async fn renew(
    mut keeper: LeaseKeeper,
    mut stream: LeaseKeepAliveStream,
    period: Duration,
    deadline: &mut Instant,
    lost: &CancellationToken,
) -> Renewal {
    let mut sent = Instant::now();
    if keeper.keep_alive().await.is_err() {
        return Renewal::StreamBroken;
    }
    loop {
        tokio::select! {
            msg = stream.message() => match msg {
                Ok(Some(r)) if r.ttl() > 0 => {
                    // The server restarts the TTL when it receives the
                    // request, so measure from when it was sent.
                    *deadline = sent + Duration::from_secs(u64::try_from(r.ttl()).unwrap_or(0));
                }
                Ok(Some(_)) => return Renewal::Expired,
                Ok(None) | Err(_) => return Renewal::StreamBroken,
            },
            _ = sleep(period) => {
                sent = Instant::now();
                if keeper.keep_alive().await.is_err() {
                    return Renewal::StreamBroken;
                }
            }
            _ = sleep_until(*deadline) => return Renewal::Expired,
            _ = lost.cancelled() => return Renewal::Stopped,
        }
    }
}
