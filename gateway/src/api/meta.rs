//! Health, metadata, namespaces, datacenters, runner configs and envoys.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::Json;

use super::extract::{Json as Body, Path, Query};
use serde::Deserialize;
use serde_json::{json, Value};

use super::actors::resolve_namespace;
use crate::error::{ApiError, ApiResult};
use crate::pool;
use crate::state::{Gateway, DATACENTER_LABEL, DATACENTER_NAME};
use crate::store::{Namespace, RunnerConfigRecord, StoreError};
use crate::util::now_ms;

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `GET /health`. RivetKit reuses a local endpoint only if `runtime` is `engine`.
pub async fn health() -> Json<Value> {
    Json(json!({"status": "ok", "runtime": "engine", "version": VERSION}))
}

/// `GET /metadata`.
pub async fn metadata() -> Json<Value> {
    Json(json!({
        "runtime": "engine",
        "version": VERSION,
        "git_sha": "rivulet",
        "build_timestamp": null,
        "rustc_version": null,
        "rustc_host": null,
        "cargo_target": null,
        "cargo_profile": if cfg!(debug_assertions) { "debug" } else { "release" },
        "epoxy_protocol_version": 1,
        "envoy_protocol_version": rivulet_wire::ENVOY_PROTOCOL_VERSION,
    }))
}

/// Query with an optional namespace.
#[derive(Debug, Deserialize)]
pub struct NsQuery {
    /// Namespace name.
    pub namespace: Option<String>,
}

fn namespace_json(ns: &Namespace) -> Value {
    json!({
        "namespace_id": ns.namespace_id,
        "name": ns.name,
        "display_name": ns.display_name,
        "create_ts": ns.create_ts,
    })
}

/// `GET /namespaces`.
pub async fn list_namespaces(
    State(gw): State<Gateway>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let all = gw.store.list_namespaces().await?;
    let list: Vec<Value> = all
        .iter()
        .filter(|ns| q.get("name").is_none_or(|n| *n == ns.name))
        .filter(|ns| q.get("namespace_id").is_none_or(|n| *n == ns.namespace_id))
        .map(namespace_json)
        .collect();
    Ok(Json(
        json!({"namespaces": list, "pagination": {"cursor": null}}),
    ))
}

/// Body of `POST /namespaces`.
#[derive(Debug, Deserialize)]
pub struct CreateNamespace {
    name: String,
    display_name: Option<String>,
}

/// `POST /namespaces`.
pub async fn create_namespace(
    State(gw): State<Gateway>,
    Body(body): Body<CreateNamespace>,
) -> ApiResult<Json<Value>> {
    let valid = !body.name.is_empty()
        && body.name.len() <= 32
        && body
            .name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        return Err(ApiError::new(
            "namespace",
            "invalid_name",
            "Namespace names are 1 to 32 characters of a-z, 0-9 and -.",
        ));
    }
    let ns = Namespace {
        namespace_id: rivulet_wire::id::generate(DATACENTER_LABEL),
        display_name: body.display_name.unwrap_or_else(|| body.name.clone()),
        name: body.name,
        create_ts: now_ms(),
    };
    match gw.store.create_namespace(ns.clone()).await {
        Ok(()) => Ok(Json(json!({"namespace": namespace_json(&ns)}))),
        Err(StoreError::AlreadyExists { .. }) => Err(ApiError::new(
            "namespace",
            "name_not_unique",
            "A namespace with this name exists already.",
        )),
        Err(err) => Err(err.into()),
    }
}

/// `GET /datacenters`.
pub async fn datacenters(State(gw): State<Gateway>) -> Json<Value> {
    Json(json!({
        "datacenters": [{"label": DATACENTER_LABEL, "name": DATACENTER_NAME, "url": gw.config.public_url}],
        "pagination": {"cursor": null},
    }))
}

/// `GET /runner-configs`.
pub async fn list_runner_configs(
    State(gw): State<Gateway>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let ns = resolve_namespace(&gw, q.get("namespace").map(String::as_str)).await?;
    let names: Option<Vec<&str>> = q
        .get("runner_name")
        .or_else(|| q.get("runner_names"))
        .map(|v| v.split(',').collect());
    let mut out = serde_json::Map::new();
    for cfg in gw.store.list_runner_configs(&ns.namespace_id).await? {
        if names
            .as_ref()
            .is_some_and(|n| !n.contains(&cfg.name.as_str()))
        {
            continue;
        }
        let mut config = cfg.config.clone();
        // What this node saw of an invoked pool: so an operator finds why actors of a pool
        // do not start without reading logs.
        if let (Some(status), Some(obj)) = (
            gw.pools.status(&ns.namespace_id, &cfg.name),
            config.as_object_mut(),
        ) {
            obj.insert("status".into(), status);
        }
        out.insert(cfg.name.clone(), config);
    }
    Ok(Json(
        json!({"runner_configs": out, "pagination": {"cursor": null}}),
    ))
}

/// `PUT /runner-configs/{name}`: checks the body (see `pool`), and for a URL pool fetches
/// its `/metadata` first, so a wrong, unreachable or incompatible endpoint is refused with a
/// named error instead of leaving actors that never start.
pub async fn put_runner_config(
    State(gw): State<Gateway>,
    Path(name): Path<String>,
    Query(q): Query<NsQuery>,
    Body(body): Body<Value>,
) -> ApiResult<Json<Value>> {
    let ns = resolve_namespace(&gw, q.namespace.as_deref()).await?;
    if name.is_empty() || name.len() > 128 {
        return Err(ApiError::new(
            "runner_config",
            "invalid",
            "Runner config names are 1 to 128 characters.",
        ));
    }
    let changed = store_runner_config(&gw, &ns.namespace_id, &name, &body).await?;
    Ok(Json(json!({ "endpoint_config_changed": changed })))
}

/// Checks a runner config (see `pool`; a URL pool's `/metadata` is fetched) and stores it;
/// returns whether it changed. The API's `PUT` and the pools declared at start both land here.
pub async fn store_runner_config(
    gw: &Gateway,
    namespace_id: &str,
    name: &str,
    body: &Value,
) -> ApiResult<bool> {
    let allow = pool::Allow {
        process: gw.config.gateway.allow_process_pools,
    };
    let (config, stored) = pool::parse(body, allow)?;
    if let pool::PoolKind::Invoked(pool::Invoked {
        target:
            pool::Target::Http {
                url,
                headers,
                platform,
                ..
            },
        ..
    }) = &config.kind
    {
        let meta = pool::metadata::fetch(&gw.node.http, url, headers, *platform)
            .await
            .map_err(|err| {
                tracing::warn!(pool = %name, error = %err, "runner config refused");
                ApiError::new("runner_config", err.code(), err.to_string())
            })?;
        if !meta.actor_names.is_empty() {
            gw.names.put_registered(
                namespace_id,
                meta.actor_names.iter().map(|(n, _)| n.clone()),
                false,
            );
            gw.store
                .put_actor_names(namespace_id, meta.actor_names)
                .await?;
        }
    }
    let previous = gw
        .store
        .list_runner_configs(namespace_id)
        .await?
        .into_iter()
        .find(|c| c.name == name)
        .map(|c| c.config);
    let changed = previous.as_ref() != Some(&stored);
    gw.store
        .put_runner_config(RunnerConfigRecord {
            namespace_id: namespace_id.to_owned(),
            name: name.to_owned(),
            config: stored,
            update_ts: now_ms(),
        })
        .await?;
    gw.pools.forget(namespace_id, name);
    tracing::info!(pool = %name, changed, "runner config stored");
    Ok(changed)
}

/// `DELETE /runner-configs/{name}`.
pub async fn delete_runner_config(
    State(gw): State<Gateway>,
    Path(name): Path<String>,
    Query(q): Query<NsQuery>,
) -> ApiResult<Json<Value>> {
    let ns = resolve_namespace(&gw, q.namespace.as_deref()).await?;
    if !gw
        .store
        .delete_runner_config(&ns.namespace_id, &name)
        .await?
    {
        return Err(ApiError::runner_config_not_found(&name));
    }
    gw.pools.forget(&ns.namespace_id, &name);
    Ok(Json(json!({})))
}

/// `GET /envoys`.
pub async fn list_envoys(
    State(gw): State<Gateway>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let ns = resolve_namespace(&gw, q.get("namespace").map(String::as_str)).await?;
    let list: Vec<Value> = gw
        .envoys
        .list()
        .into_iter()
        .filter(|e| e.namespace_id == ns.namespace_id)
        .filter(|e| q.get("name").is_none_or(|n| *n == e.pool_name))
        .filter(|e| q.get("envoy_key").is_none_or(|k| *k == e.key))
        .map(|e| {
            let metadata = e
                .metadata
                .lock()
                .as_deref()
                .and_then(|m| serde_json::from_str::<Value>(m).ok());
            json!({
                "envoy_key": e.key,
                "namespace_id": e.namespace_id,
                "datacenter": DATACENTER_NAME,
                "pool_name": e.pool_name,
                "version": e.version,
                "slots": e.assigned.lock().len(),
                "create_ts": e.connected_ts,
                "stop_ts": null,
                "last_ping_ts": e.last_ping_ts.load(Ordering::Relaxed),
                "last_connected_ts": e.connected_ts,
                "last_rtt": e.last_rtt_ms.load(Ordering::Relaxed),
                "metadata": metadata,
            })
        })
        .collect();
    Ok(Json(
        json!({"envoys": list, "pagination": {"cursor": null}}),
    ))
}
