//! The server's HTTP endpoints on `--listen`: `/metrics` (Prometheus text),
//! `/healthz` (the process answers) and `/readyz` (etcd reachable and caches
//! synced; the body says whether this server leads).

use crate::exporter;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use kaylee_controllers::server::ServerState;
use metrics_exporter_prometheus::PrometheusHandle;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
struct Endpoints {
    metrics: PrometheusHandle,
    state: Arc<ServerState>,
}

/// Binds before anything else starts, so a taken port fails start-up.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    metrics: PrometheusHandle,
    state: Arc<ServerState>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(render_metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(Endpoints { metrics, state });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

async fn render_metrics(State(e): State<Endpoints>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        exporter::render(&e.metrics),
    )
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(e): State<Endpoints>) -> impl IntoResponse {
    let (status, body) = readiness(&e.state);
    (status, [(header::CONTENT_TYPE, "application/json")], body)
}

fn readiness(state: &ServerState) -> (StatusCode, String) {
    let leader = state.leader.load(Ordering::SeqCst);
    let etcd = state.etcd_ok.load(Ordering::SeqCst);
    let synced = state.synced.load(Ordering::SeqCst);
    let status = if etcd && synced {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({ "leader": leader, "etcd": etcd, "synced": synced });
    (status, format!("{body}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_with_etcd_and_synced_caches() {
        let state = ServerState::default();
        assert_eq!(readiness(&state).0, StatusCode::SERVICE_UNAVAILABLE);
        state.etcd_ok.store(true, Ordering::SeqCst);
        assert_eq!(readiness(&state).0, StatusCode::SERVICE_UNAVAILABLE);
        state.synced.store(true, Ordering::SeqCst);
        state.leader.store(true, Ordering::SeqCst);
        let (status, body) = readiness(&state);
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "{\"leader\":true,\"etcd\":true,\"synced\":true}\n");
    }
}
