//! Serving: builds the router, makes sure the default namespace exists, serves a bound
//! listener until the shutdown token fires, then drains with a deadline.

use std::sync::Arc;
use std::time::Duration;

use axum::routing::{any, get};
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::error::ApiError;
use crate::state::{Gateway, DATACENTER_LABEL, DEFAULT_NAMESPACE};
use crate::store::{Namespace, Store, StoreError};
use crate::util::now_ms;

/// How long in-flight work may take to finish after shutdown starts.
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// The full HTTP application.
pub fn app(gw: Gateway) -> Router {
    Router::new()
        .route("/envoys/connect", get(crate::envoy::connect))
        .route("/gateway/{*rest}", any(crate::routing::handle))
        .merge(crate::api::router(gw.clone()))
        .fallback(|| async { ApiError::route_not_found() })
        .layer(axum::middleware::map_response_with_state(
            gw.clone(),
            count_errors,
        ))
        .with_state(gw)
}

/// Counts every error response by its code (`rivulet_errors_total`).
async fn count_errors(
    axum::extract::State(gw): axum::extract::State<Gateway>,
    resp: axum::response::Response,
) -> axum::response::Response {
    if let Some(e) = resp.extensions().get::<crate::error::ErrorCode>() {
        gw.metrics.error(e.group, e.code);
    }
    resp
}

/// Creates the `default` namespace if it does not exist.
pub async fn ensure_default_namespace(store: &dyn Store) -> Result<(), StoreError> {
    if store.get_namespace(DEFAULT_NAMESPACE).await?.is_some() {
        return Ok(());
    }
    let ns = Namespace {
        namespace_id: rivulet_wire::id::generate(DATACENTER_LABEL),
        name: DEFAULT_NAMESPACE.to_string(),
        display_name: "Default".to_string(),
        create_ts: now_ms(),
    };
    match store.create_namespace(ns).await {
        Ok(()) | Err(StoreError::AlreadyExists { .. }) => Ok(()),
        Err(err) => Err(err),
    }
}

/// Serves `listener` until `shutdown` fires: stop accepting, let in-flight requests and tasks
/// finish for up to [`DRAIN_DEADLINE`], then return.
pub async fn run(
    listener: TcpListener,
    config: Config,
    store: Arc<dyn Store>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let store: Arc<dyn Store> = Arc::new(crate::store::deadline::DeadlineStore::new(
        store,
        Duration::from_millis(config.store_timeout_ms),
        metrics.clone(),
    ));
    ensure_default_namespace(store.as_ref()).await?;
    let addr = listener.local_addr()?;
    let node = crate::cluster::Node::new(&config, addr);
    let gw = Gateway::new(config, store, node, shutdown.clone(), metrics);
    // Actor leases refer to this registration: it exists before the first request.
    let registration = crate::cluster::heartbeat::register(&gw).await?;
    gw.tasks.spawn(crate::cluster::heartbeat::run(
        gw.clone(),
        Some(registration),
    ));
    gw.tasks.spawn(crate::scheduler::run(gw.clone()));
    gw.tasks.spawn(crate::pool::poller::run(gw.clone()));
    crate::pool::declared::apply(&gw).await;
    tracing::info!(%addr, node_id = %gw.node.id, node_url = %gw.node.url, "rivulet gateway listening");
    let listener = crate::quickack::QuickAckListener(listener);
    let head_timeout = Duration::from_millis(gw.config.gateway.request_head_timeout_ms);
    let serve = crate::listen::serve(listener, app(gw.clone()), shutdown.clone(), head_timeout);
    // Phase 1: once `shutdown` fires, stop accepting and let in-flight requests finish,
    // with runner connections still open so their replies can arrive.
    let mut serving = tokio::spawn(serve);
    tokio::select! {
        _ = shutdown.cancelled() => {}
        // The server ended on its own (a listener failure): shut down the rest too.
        _ = &mut serving => {}
    }
    tracing::info!("shutting down: no longer accepting, draining requests");
    // Parked client sockets wait on their routes, not on the token: wake them to close.
    gw.routes.wake_all();
    let deadline = tokio::time::Instant::now() + DRAIN_DEADLINE;
    if !serving.is_finished() {
        match tokio::time::timeout_at(deadline, &mut serving).await {
            Ok(Ok(())) => {}
            Ok(Err(join)) => tracing::error!(error = %join, "server task failed"),
            Err(_) => {
                tracing::warn!("drain deadline passed; ending the remaining requests");
                serving.abort();
            }
        }
    }
    // Phase 2: runners, supervisors and background tasks stop, bounded by what is left of
    // the deadline (at least one second for them to say goodbye).
    gw.stopping.cancel();
    gw.tasks.close();
    let rest = deadline.max(tokio::time::Instant::now() + Duration::from_secs(1));
    if tokio::time::timeout_at(rest, gw.tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("background tasks did not stop in time; exiting anyway");
    }
    Ok(())
}
