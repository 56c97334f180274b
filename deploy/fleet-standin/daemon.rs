//! The process: the heartbeat task, a round every `--interval` (read the
//! registry, the engine's turn, the agents' turn), and the shutdown on
//! SIGTERM/SIGINT.

use crate::agent::Agents;
use crate::cli::{Api, Settings};
use crate::engine::Engine;
use crate::heartbeat;
use crate::problems::Problems;
use crate::registry::Registry;
use crate::store::Store;
use std::process::ExitCode;
use std::sync::Arc;
use tokio::signal::unix::{SignalKind, signal};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

/// Runs until a signal; the exit code of the process.
pub async fn run(settings: Settings) -> ExitCode {
    let settings = Arc::new(settings);
    let problems = Arc::new(Problems::default());
    let store = match Store::new(&settings).await {
        Ok(s) => Arc::new(s),
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(2);
        }
    };
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!("cannot handle signals: {e}");
            return ExitCode::from(1);
        }
    };
    let machines: Vec<&str> = settings.machines.iter().map(|m| m.id.as_str()).collect();
    tracing::info!(
        machines = ?machines,
        api = match settings.api { Api::V2 => "v2", Api::V3 => "v3" },
        prefix = %settings.prefix,
        engine = settings.engine,
        simulate = settings.simulate.is_some(),
        "fleet-standin started"
    );

    let stop_heart = CancellationToken::new();
    let heart = tokio::spawn(heartbeat::run(
        store.clone(),
        settings.clone(),
        problems.clone(),
        stop_heart.clone(),
    ));
    let mut registry = Registry::new(store.clone(), problems.clone());
    let mut engine = settings.engine.then(|| {
        Engine::new(
            store.clone(),
            problems.clone(),
            &settings.machines[0].id,
            settings.interval,
        )
    });
    let mut agents = Agents::new(settings.clone(), store.clone(), problems.clone());
    let mut ticker = tokio::time::interval(settings.interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);

    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
        let read = registry.read(engine.is_some()).await;
        let mut snapshot = problems.outcome("etcd: read registry", read);
        if let (Some(engine), Some(snapshot)) = (engine.as_mut(), snapshot.as_mut()) {
            engine.round(snapshot).await;
        }
        agents.round(snapshot.as_ref()).await;
    }

    tracing::info!("shutting down: stopping every unit (a second signal exits at once)");
    let shutdown = async {
        agents.shutdown().await;
        if let Some(engine) = &engine {
            engine.release().await;
        }
        stop_heart.cancel();
        let _ = heart.await;
        heartbeat::clear(&store, &settings, &problems).await;
    };
    tokio::select! {
        _ = shutdown => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        _ = term.recv() => ExitCode::from(1),
        _ = int.recv() => ExitCode::from(1),
    }
}
