//! Client routes to actors: `/gateway/{actor_id}[@token]/rest` (direct) and
//! `/gateway/{name}/rest?rvt-method=get|getOrCreate&rvt-key=…` (query form, which resolves or
//! creates the actor by name and key). The remaining path and non-`rvt-` query travel to the
//! actor unchanged, over HTTP (`http`) or WebSocket (`ws`).
//!
//! # Layout
//! - `target`: parsing the path and `rvt-*` parameters (pure, unit-tested).
//! - `http`: one HTTP request through the tunnel.
//! - `ws`: one client WebSocket through the tunnel, hibernating while its actor sleeps.

mod client_ws;
mod http;
mod parking;
pub mod target;
mod upgrade;
mod ws;
mod ws_io;

use axum::body::Body;
use axum::extract::State;
use axum::http::Request;
use axum::response::{IntoResponse, Response};

use crate::actor::{ActorHandle, Ready, Status};
use crate::api::actors::{get_or_create, resolve_namespace, CreateSpec};
use crate::error::ApiError;
use crate::state::Gateway;
use crate::store::ActorRecord;
use target::{Method, Target};

/// Any method on `/gateway/*`.
pub async fn handle(State(gw): State<Gateway>, req: Request<Body>) -> Response {
    let target = match target::parse(req.uri()) {
        Ok(t) => t,
        Err(err) => return err.into_response(),
    };
    // Actor traffic is public, as on the Rivet engine (actors authorise their clients
    // themselves, e.g. in onBeforeConnect); but a token a client does present must be the
    // gateway's, so a wrong one is never silently taken for none.
    if let (Some(expected), Some(given)) = (&gw.config.auth_token, &target.token) {
        if !crate::util::constant_time_eq(given.as_bytes(), expected.as_bytes()) {
            return ApiError::forbidden_token().into_response();
        }
    }
    let is_upgrade = req
        .headers()
        .get("upgrade")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if is_upgrade {
        let (parts, _body) = req.into_parts();
        ws::serve(gw, target, parts)
    } else {
        match http::serve(gw, target, req).await {
            Ok(resp) => resp,
            Err(err) => err.into_response(),
        }
    }
}

/// Finds (or creates) the actor a request addresses and returns its supervisor. An actor
/// this node serves awake is found without reading the store (see `names`).
pub async fn resolve(gw: &Gateway, target: &Target) -> Result<ActorHandle, ApiError> {
    let actor_id = match &target.method {
        Method::Direct { actor_id } => actor_id.clone(),
        Method::Get {
            namespace,
            name,
            key,
        } => {
            let ns = resolve_namespace(gw, Some(namespace)).await?;
            if let Some(handle) = awake_here(gw, &ns.namespace_id, name, key) {
                return Ok(handle);
            }
            let record = gw
                .store
                .get_actor_by_key(&ns.namespace_id, name, key)
                .await?
                .ok_or_else(ApiError::actor_not_found)?;
            gw.names
                .put_actor_id(&ns.namespace_id, name, key, &record.actor_id);
            return loaded_from(gw, record);
        }
        Method::GetOrCreate {
            namespace,
            name,
            key,
            pool,
            input,
            crash_policy,
        } => {
            let ns = resolve_namespace(gw, Some(namespace)).await?;
            if let Some(handle) = awake_here(gw, &ns.namespace_id, name, key) {
                return Ok(handle);
            }
            let spec = CreateSpec {
                name: name.clone(),
                key: Some(key.clone()),
                input: input.clone(),
                runner_name_selector: pool.clone(),
                crash_policy: *crash_policy,
            };
            let record = get_or_create(gw, &ns, spec).await?.0;
            gw.names
                .put_actor_id(&ns.namespace_id, name, key, &record.actor_id);
            return loaded_from(gw, record);
        }
    };
    gw.actors
        .ensure(gw, &actor_id)
        .await?
        .ok_or_else(ApiError::actor_not_found)
}

/// The supervisor of an actor whose record was just read or written: the loaded one if
/// there is one, else one started from this record (no second read).
fn loaded_from(gw: &Gateway, record: ActorRecord) -> Result<ActorHandle, ApiError> {
    if record.is_destroyed() {
        return Err(ApiError::actor_not_found());
    }
    Ok(gw.actors.spawn(gw, record))
}

/// The supervisor of the actor holding a key, if this node serves it awake: only then is the
/// cached id certain to be the key's current actor.
fn awake_here(gw: &Gateway, namespace_id: &str, name: &str, key: &str) -> Option<ActorHandle> {
    let actor_id = gw.names.actor_id(namespace_id, name, key)?;
    let handle = gw.actors.get(&actor_id)?;
    match handle.status() {
        Status::Running { .. } | Status::Waking => Some(handle),
        Status::Sleeping
        | Status::Stopping
        | Status::Destroyed
        | Status::Elsewhere { .. }
        | Status::Unavailable { .. }
        | Status::Failed { .. } => None,
    }
}

/// Where a request for `actor` goes: to a runner here (waking the actor if needed), or to
/// the node holding its lease. Bounded by `deadline`.
pub async fn place(
    gw: &Gateway,
    actor: &ActorHandle,
    deadline: tokio::time::Instant,
) -> Result<Ready, ApiError> {
    if let Some(lease) = crate::cluster::remote_owner(gw, actor).await? {
        return Ok(Ready::Remote(lease));
    }
    let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
    actor.ready(gw, remaining).await
}
