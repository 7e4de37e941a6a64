//! Serving: builds the router, makes sure the default namespace exists, serves a bound
//! listener until the shutdown token fires, then drains with a deadline.

use std::sync::Arc;
use std::time::Duration;

use axum::routing::{any, get};
use axum::serve::ListenerExt;
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
        .with_state(gw)
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
    let store: Arc<dyn Store> = Arc::new(crate::store::deadline::DeadlineStore::new(
        store,
        Duration::from_millis(config.store_timeout_ms),
    ));
    ensure_default_namespace(store.as_ref()).await?;
    let gw = Gateway::new(config, store, shutdown.clone());
    gw.tasks.spawn(crate::scheduler::run(gw.clone()));
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "rivulet gateway listening");
    // Actions are small request/response exchanges: without TCP_NODELAY, Nagle's algorithm
    // and delayed ACKs add ~40 ms to every WebSocket round trip.
    let listener = listener.tap_io(|tcp| {
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::debug!(error = %err, "cannot set TCP_NODELAY");
        }
    });
    let serve = axum::serve(listener, app(gw.clone()))
        .with_graceful_shutdown(shutdown.clone().cancelled_owned());
    serve.await?;
    tracing::info!("no longer accepting; draining");
    gw.tasks.close();
    if tokio::time::timeout(DRAIN_DEADLINE, gw.tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("drain deadline passed; stopping with tasks still running");
    }
    Ok(())
}
