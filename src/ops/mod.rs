//! Operations: the HTTP endpoints for health, readiness and metrics.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::directory::Directory;

#[derive(Clone)]
pub struct OpsState {
    pub dir: Arc<Directory>,
    pub metrics: Option<PrometheusHandle>,
}

pub fn router(state: OpsState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(state)
}

/// Alive: the process answers.
async fn healthz() -> impl IntoResponse {
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], r#"{"status":"ok"}"#)
}

/// Ready: a snapshot within `max_stale` is loaded, so reads will be answered.
async fn readyz(State(s): State<OpsState>) -> impl IntoResponse {
    let h = s.dir.health();
    let status = if h.loaded && !h.stale { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = serde_json::to_string(&h).unwrap_or_else(|_| "{}".into());
    (status, [(header::CONTENT_TYPE, "application/json")], body)
}

async fn metrics_text(State(s): State<OpsState>) -> impl IntoResponse {
    let h = s.dir.health();
    metrics::gauge!("idgate_cache_age_seconds").set(h.age_seconds.unwrap_or(f64::NAN));
    let body = s.metrics.as_ref().map(|m| m.render()).unwrap_or_default();
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}
