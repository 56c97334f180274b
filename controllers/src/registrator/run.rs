//! The registrator's loop: open Docker's event stream, resync, follow the
//! events; on any failure back off, reconnect and start over with a resync.

use super::{Registrator, RegistratorError, UNIT_LABEL};
use crate::runtime::backoff::Backoff;
use bollard::query_parameters::EventsOptions;
use futures::StreamExt;
use std::collections::HashMap;
use std::convert::Infallible;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// How far back the event stream asks Docker to replay from, to cover the
/// moment between opening the stream and Docker subscribing it.
const EVENT_REPLAY: Duration = Duration::from_secs(2);

/// Reconnects wait 200 ms, then 1.5 times longer each time up to 15 s,
/// each ±50%, until a resync succeeds.
fn reconnect_backoff() -> Backoff {
    Backoff::new(
        Duration::from_millis(200),
        1.5,
        Duration::from_secs(15),
        0.5,
    )
}

impl Registrator {
    /// Registers the local containers on `lease_id` until `stop` is
    /// cancelled. Docker and etcd failures are logged and retried with
    /// backoff (each retry starting with a resync). Returns `Ok` once
    /// stopped, or [`RegistratorError::LeaseGone`] when etcd reports that
    /// the lease no longer exists: call `run` again with a new lease.
    pub async fn run(
        &self,
        lease_id: i64,
        stop: CancellationToken,
    ) -> Result<(), RegistratorError> {
        let mut backoff = reconnect_backoff();
        info!(
            machine_id = %self.machine_id,
            lease = %format_args!("{lease_id:x}"),
            "registrator starting"
        );
        loop {
            let outcome = tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                r = self.watch(lease_id, &mut backoff) => r,
            };
            let Err(e) = outcome;
            if matches!(e, RegistratorError::LeaseGone(_)) {
                warn!(error = %e, "registrator stopping");
                return Err(e);
            }
            let delay = backoff.next_wait();
            warn!(error = %e, retry_in = ?delay, "registrator: will reconnect and resync");
            tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(delay) => {}
            }
        }
        info!(machine_id = %self.machine_id, "registrator stopped");
        Ok(())
    }

    /// One connection: open the event stream, resync, then follow events
    /// until something fails.
    async fn watch(
        &self,
        lease: i64,
        backoff: &mut Backoff,
    ) -> Result<Infallible, RegistratorError> {
        let mut events = self.docker.events(Some(EventsOptions {
            since: Some(replay_since()),
            until: None,
            filters: Some(HashMap::from([
                ("type".to_string(), vec!["container".to_string()]),
                ("label".to_string(), vec![UNIT_LABEL.to_string()]),
                // `health_status` matches Docker's `health_status: <status>`
                // actions (moby's event filter matches the action's prefix).
                (
                    "event".to_string(),
                    vec![
                        "start".into(),
                        "die".into(),
                        "rename".into(),
                        "health_status".into(),
                    ],
                ),
            ])),
        }));
        // Subscribe before listing: the stream is polled (so its request
        // goes out) while the list runs, and what it delivers meanwhile is
        // kept to apply after the resync.
        let mut early = Vec::new();
        let desired = {
            let list = self.desired();
            tokio::pin!(list);
            loop {
                tokio::select! {
                    biased;
                    ev = events.next() => match ev {
                        Some(ev) => early.push(ev?),
                        None => return Err(RegistratorError::EventStreamEnded),
                    },
                    desired = &mut list => break desired?,
                }
            }
        };
        self.resync(lease, &desired).await?;
        *backoff = reconnect_backoff();
        for ev in early {
            self.on_event(lease, ev).await?;
        }
        while let Some(ev) = events.next().await {
            self.on_event(lease, ev?).await?;
        }
        Err(RegistratorError::EventStreamEnded)
    }
}

/// Docker's `since` for a stream opened now: a little in the past.
fn replay_since() -> String {
    let t = SystemTime::now()
        .checked_sub(EVENT_REPLAY)
        .unwrap_or(UNIX_EPOCH)
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:09}", t.as_secs(), t.subsec_nanos())
}
