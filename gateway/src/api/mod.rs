//! The public HTTP API that RivetKit's client and runners call, in the Rivet engine's paths
//! and JSON shapes: health and metadata, namespaces, datacenters, runner configs, envoys and
//! actors. Every route but health, metadata and metrics requires the admin token when one is set.

pub mod actors;
mod extract;
pub(crate) mod meta;
mod metrics;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::Router;

use crate::error::ApiError;
use crate::state::Gateway;

/// The API routes.
pub fn router(gw: Gateway) -> Router<Gateway> {
    let authed = Router::new()
        .route(
            "/namespaces",
            get(meta::list_namespaces).post(meta::create_namespace),
        )
        .route("/datacenters", get(meta::datacenters))
        .route("/runner-configs", get(meta::list_runner_configs))
        .route(
            "/runner-configs/{name}",
            put(meta::put_runner_config).delete(meta::delete_runner_config),
        )
        .route("/envoys", get(meta::list_envoys))
        .route(
            "/actors",
            get(actors::list)
                .post(actors::create)
                .put(actors::get_or_create_route),
        )
        .route("/actors/names", get(actors::names))
        .route("/actors/{id}", delete(actors::destroy))
        .route("/actors/{id}/sleep", post(actors::sleep))
        .route("/actors/{id}/reschedule", post(actors::reschedule))
        .route_layer(axum::middleware::from_fn_with_state(gw, require_token));
    Router::new()
        .route("/health", get(meta::health))
        .route("/metadata", get(meta::metadata))
        .route("/metrics", get(metrics::metrics))
        .merge(authed)
}

async fn require_token(State(gw): State<Gateway>, req: Request, next: Next) -> Response {
    let Some(expected) = &gw.config.auth_token else {
        return next.run(req).await;
    };
    let given = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| {
            req.headers()
                .get("x-rivet-token")
                .and_then(|v| v.to_str().ok())
        });
    if given.is_some_and(|g| crate::util::constant_time_eq(g.as_bytes(), expected.as_bytes())) {
        next.run(req).await
    } else {
        ApiError::unauthorized().into_response()
    }
}
