//! The machines' presence: `machines/<id>/object` written with the TTL and
//! kept alive, and every other key with a TTL (states, job-states) kept
//! alive, in a task of its own so a slow registry read never delays a beat.

use crate::cli::Settings;
use crate::problems::Problems;
use crate::records::{machine_key, machine_value};
use crate::store::{Store, Ttl};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Registers the machines, then keeps their entries and the other TTL keys
/// alive (every third of their TTL) until `stop`.
pub async fn run(
    store: Arc<Store>,
    settings: Arc<Settings>,
    problems: Arc<Problems>,
    stop: CancellationToken,
) {
    for m in &settings.machines {
        let value = machine_value(&m.id, &settings.public_ip, &m.metadata, settings.engine);
        // Remembered even when etcd does not answer: the refresh writes it.
        let put = store
            .put_ttl(Ttl::Machine, &machine_key(&m.id), &value, None)
            .await;
        problems.outcome("etcd: machine heartbeat", put);
    }
    let every = |ttl: Duration| (ttl / 3).max(Duration::from_millis(100));
    let (machine_every, state_every) = (every(settings.ttl), every(settings.state_ttl));
    let mut next_machine = Instant::now() + machine_every;
    let mut next_state = Instant::now() + state_every;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep_until(next_machine) => {
                let beat = store.refresh(Ttl::Machine).await;
                problems.outcome("etcd: machine heartbeat", beat);
                next_machine = Instant::now() + machine_every;
            }
            _ = tokio::time::sleep_until(next_state) => {
                let beat = store.refresh(Ttl::State).await;
                problems.outcome("etcd: unit state refresh", beat);
                next_state = Instant::now() + state_every;
            }
        }
    }
}

/// Deletes the machines' entries (a clean shutdown, as fleet's).
pub async fn clear(store: &Store, settings: &Settings, problems: &Problems) {
    for m in &settings.machines {
        let removed = store.remove(Ttl::Machine, &machine_key(&m.id)).await;
        problems.outcome("etcd: machine heartbeat", removed);
    }
}
