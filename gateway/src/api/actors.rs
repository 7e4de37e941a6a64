//! The actors API: create, get-or-create, list (by ids or name and key), names, destroy,
//! sleep and reschedule. Creation and lookup are shared with the gateway's query routes.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::extract::{Json as Body, Path, Query};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};

use super::meta::NsQuery;
use crate::actor::{Msg, Status};
use crate::cluster;
use crate::error::{ApiError, ApiResult};
use crate::names::NameLookup;
use crate::state::{Gateway, DATACENTER_LABEL, DATACENTER_NAME, DEFAULT_NAMESPACE};
use crate::store::{ActorRecord, CrashPolicy, Namespace, StoreError};
use crate::util::now_ms;

/// Longest actor name.
pub const MAX_NAME_LEN: usize = 64;
/// Largest creation input, in bytes (CBOR).
pub const MAX_INPUT_BYTES: usize = 4 * 1024 * 1024;
/// Most ids in one list request.
pub const MAX_LIST_IDS: usize = 32;

/// Finds a namespace by name (`default` when none is given).
pub async fn resolve_namespace(gw: &Gateway, name: Option<&str>) -> Result<Namespace, ApiError> {
    let name = name.unwrap_or(DEFAULT_NAMESPACE);
    if let Some(ns) = gw.names.namespace(name) {
        return Ok(ns);
    }
    let ns = gw
        .store
        .get_namespace(name)
        .await?
        .ok_or_else(ApiError::namespace_not_found)?;
    gw.names.put_namespace(&ns);
    Ok(ns)
}

/// The record as this node sees it live. An actor that runs here is published to its
/// waiting requests a moment before its record says so (the write follows), so a reader
/// after a successful request must not see it asleep: while the supervisor here reports it
/// running, the record shows it connectable.
pub fn live_record(gw: &Gateway, mut a: ActorRecord) -> ActorRecord {
    if a.connectable_ts.is_some() || a.destroy_ts.is_some() {
        return a;
    }
    let running = gw.actors.get(&a.actor_id).is_some_and(|handle| {
        matches!(
            *handle.watch().borrow(),
            crate::actor::Status::Running { .. }
        )
    });
    if running {
        let now = crate::util::now_ms();
        a.start_ts.get_or_insert(now);
        a.connectable_ts = Some(now);
        a.sleep_ts = None;
        a.pending_allocation_ts = None;
        a.reschedule_ts = None;
    }
    a
}

/// The JSON form of an actor.
pub fn actor_json(a: &ActorRecord) -> Value {
    let mut v = json!({
        "actor_id": a.actor_id,
        "name": a.name,
        "key": a.key,
        "namespace_id": a.namespace_id,
        "datacenter": DATACENTER_NAME,
        "runner_name_selector": a.runner_name_selector,
        "crash_policy": a.crash_policy,
        "create_ts": a.create_ts,
        "start_ts": a.start_ts,
        "pending_allocation_ts": a.pending_allocation_ts,
        "connectable_ts": a.connectable_ts,
        "sleep_ts": a.sleep_ts,
        "reschedule_ts": a.reschedule_ts,
        "destroy_ts": a.destroy_ts,
    });
    if let Some(err) = &a.error {
        v["error"] = err.clone();
    }
    v
}

/// What is needed to create an actor.
#[derive(Debug, Clone)]
pub struct CreateSpec {
    /// Actor name.
    pub name: String,
    /// Serialized key.
    pub key: Option<String>,
    /// CBOR input.
    pub input: Option<Vec<u8>>,
    /// Pool.
    pub runner_name_selector: String,
    /// Crash policy.
    pub crash_policy: CrashPolicy,
}

fn validate(spec: &CreateSpec) -> Result<(), ApiError> {
    if spec.name.is_empty() || spec.name.len() > MAX_NAME_LEN {
        return Err(ApiError::new(
            "actor",
            "invalid_name",
            format!("Actor names are 1 to {MAX_NAME_LEN} characters."),
        ));
    }
    if let Some(key) = &spec.key {
        if key.len() > rivulet_wire::key::MAX_KEY_BYTES {
            return Err(ApiError::key_too_large(key));
        }
        let parts =
            rivulet_wire::key::deserialize(key).map_err(|e| ApiError::invalid_key(key, &e))?;
        rivulet_wire::key::serialize(&parts).map_err(|e| ApiError::invalid_key(key, &e))?;
    }
    if spec
        .input
        .as_ref()
        .is_some_and(|i| i.len() > MAX_INPUT_BYTES)
    {
        return Err(ApiError::new(
            "actor",
            "input_too_large",
            format!("Actor input is limited to {MAX_INPUT_BYTES} bytes."),
        ));
    }
    Ok(())
}

fn new_record(ns: &Namespace, spec: CreateSpec) -> ActorRecord {
    ActorRecord {
        actor_id: rivulet_wire::id::generate(DATACENTER_LABEL),
        namespace_id: ns.namespace_id.clone(),
        name: spec.name,
        key: spec.key,
        runner_name_selector: spec.runner_name_selector,
        crash_policy: spec.crash_policy,
        input: spec.input,
        create_ts: now_ms(),
        start_ts: None,
        pending_allocation_ts: None,
        connectable_ts: None,
        sleep_ts: Some(now_ms()),
        reschedule_ts: None,
        destroy_ts: None,
        error: None,
        generation: 0,
        envoy_key: None,
        envoy_instance: None,
        alarm_ts: None,
        revision: 0,
    }
}

/// Refuses a name no runner in the namespace registered, so that a typo or a probe creates no
/// record and starts nothing. A namespace where no runner has registered any name yet (a
/// serverless pool not yet invoked, a runner still starting) accepts every name: the actor
/// waits for its runner.
async fn check_name(gw: &Gateway, ns: &Namespace, name: &str) -> Result<(), ApiError> {
    let registered = match gw.names.lookup_name(&ns.namespace_id, name) {
        NameLookup::Registered => return Ok(()),
        NameLookup::Unknown(registered) => registered,
        NameLookup::Stale => {
            let listed: Vec<String> = gw
                .store
                .list_actor_names(&ns.namespace_id)
                .await?
                .into_iter()
                .map(|(name, _)| name)
                .collect();
            gw.names
                .put_registered(&ns.namespace_id, listed.iter().cloned(), true);
            if listed.iter().any(|n| n == name) {
                return Ok(());
            }
            listed
        }
    };
    if registered.is_empty() {
        return Ok(());
    }
    Err(ApiError::name_not_registered(&ns.name, name, &registered))
}

/// Creates an actor; fails with `actor.duplicate_key` if the key is held.
pub async fn create_actor(
    gw: &Gateway,
    ns: &Namespace,
    spec: CreateSpec,
) -> Result<ActorRecord, ApiError> {
    validate(&spec)?;
    check_name(gw, ns, &spec.name).await?;
    let key = spec.key.clone();
    let record = new_record(ns, spec);
    match gw.store.create_actor(record.clone()).await {
        Ok(()) => {
            tracing::info!(actor_id = %record.actor_id, name = %record.name, "actor created");
            Ok(record)
        }
        Err(StoreError::KeyTaken { existing_actor_id }) => Err(ApiError::duplicate_key(
            key.as_deref().unwrap_or(""),
            &existing_actor_id,
        )),
        Err(err) => Err(err.into()),
    }
}

/// Returns the live actor with the spec's key, creating it if there is none; the flag says
/// whether it was created.
pub async fn get_or_create(
    gw: &Gateway,
    ns: &Namespace,
    spec: CreateSpec,
) -> Result<(ActorRecord, bool), ApiError> {
    validate(&spec)?;
    let key = spec
        .key
        .clone()
        .ok_or_else(|| ApiError::bad_request("get-or-create needs a key"))?;
    // Two rounds: a concurrent creator may win the key between our lookup and our insert;
    // we then return its actor.
    for round in 0..2 {
        if let Some(existing) = gw
            .store
            .get_actor_by_key(&ns.namespace_id, &spec.name, &key)
            .await?
        {
            return Ok((existing, false));
        }
        if round == 0 {
            check_name(gw, ns, &spec.name).await?;
        }
        let record = new_record(ns, spec.clone());
        match gw.store.create_actor(record.clone()).await {
            Ok(()) => {
                tracing::info!(actor_id = %record.actor_id, name = %record.name, "actor created");
                return Ok((record, true));
            }
            Err(StoreError::KeyTaken { .. }) => continue,
            Err(err) => return Err(err.into()),
        }
    }
    Err(StoreError::Conflict {
        what: "actor key".into(),
    }
    .into())
}

/// Body of `POST /actors` and `PUT /actors`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    #[serde(default)]
    datacenter: Option<String>,
    name: String,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    input: Option<String>,
    runner_name_selector: String,
    #[serde(default)]
    crash_policy: CrashPolicy,
}

impl CreateBody {
    fn into_spec(self) -> Result<CreateSpec, ApiError> {
        let _ = self.datacenter; // one datacenter: every choice lands here
        let input = match self.input {
            Some(b64) => Some(
                base64::engine::general_purpose::STANDARD
                    .decode(&b64)
                    .map_err(|_| ApiError::bad_request("input is not base64"))?,
            ),
            None => None,
        };
        Ok(CreateSpec {
            name: self.name,
            key: self.key,
            input,
            runner_name_selector: self.runner_name_selector,
            crash_policy: self.crash_policy,
        })
    }
}

/// `POST /actors`.
pub async fn create(
    State(gw): State<Gateway>,
    Query(q): Query<NsQuery>,
    Body(body): Body<CreateBody>,
) -> ApiResult<Json<Value>> {
    let ns = resolve_namespace(&gw, q.namespace.as_deref()).await?;
    let record = create_actor(&gw, &ns, body.into_spec()?).await?;
    Ok(Json(json!({"actor": actor_json(&record)})))
}

/// `PUT /actors`.
pub async fn get_or_create_route(
    State(gw): State<Gateway>,
    Query(q): Query<NsQuery>,
    Body(body): Body<CreateBody>,
) -> ApiResult<Json<Value>> {
    let ns = resolve_namespace(&gw, q.namespace.as_deref()).await?;
    let (record, created) = get_or_create(&gw, &ns, body.into_spec()?).await?;
    Ok(Json(
        json!({"actor": actor_json(&live_record(&gw, record)), "created": created}),
    ))
}

/// `GET /actors`.
pub async fn list(
    State(gw): State<Gateway>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    const KNOWN: &[&str] = &[
        "namespace",
        "name",
        "key",
        "actor_id",
        "actor_ids",
        "include_destroyed",
        "limit",
        "cursor",
    ];
    if let Some(unknown) = q.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(ApiError::bad_request(format!(
            "unknown query parameter {unknown}"
        )));
    }
    let ns = resolve_namespace(&gw, q.get("namespace").map(String::as_str)).await?;
    let include_destroyed = q.get("include_destroyed").is_some_and(|v| v == "true");
    let limit = match q.get("limit") {
        Some(l) => l
            .parse::<usize>()
            .map_err(|_| ApiError::bad_request("limit is not a number"))?,
        None => 100,
    };
    // Ids that cannot be ids are dropped, as the engine does.
    let mut ids: Vec<String> = Vec::new();
    for param in ["actor_id", "actor_ids"] {
        if let Some(csv) = q.get(param) {
            ids.extend(
                csv.split(',')
                    .filter(|s| rivulet_wire::id::parse(s).is_some())
                    .map(str::to_string),
            );
        }
    }
    let mut out = Vec::new();
    if !ids.is_empty() {
        if q.contains_key("key") {
            return Err(ApiError::bad_request(
                "actor_ids cannot be combined with key",
            ));
        }
        if ids.len() > MAX_LIST_IDS {
            return Err(ApiError::bad_request(format!(
                "at most {MAX_LIST_IDS} actor ids per request"
            )));
        }
        for id in ids {
            if let Some(a) = gw.store.get_actor(&id).await? {
                // Lookups by id show destroyed actors too, as the engine does: a client
                // that holds an id learns it was destroyed instead of "not found".
                let visible =
                    a.namespace_id == ns.namespace_id && q.get("name").is_none_or(|n| *n == a.name);
                if visible {
                    out.push(actor_json(&live_record(&gw, a)));
                }
            }
        }
    } else if let Some(key) = q.get("key") {
        let name = q
            .get("name")
            .ok_or_else(|| ApiError::invalid_input("Name is required when key is provided."))?;
        if let Some(a) = gw
            .store
            .get_actor_by_key(&ns.namespace_id, name, key)
            .await?
        {
            out.push(actor_json(&live_record(&gw, a)));
        }
    } else {
        let name = q.get("name").map(String::as_str);
        if name.is_none() {
            return Err(ApiError::invalid_input(
                "Name is required when not using actor_ids.",
            ));
        }
        for a in gw
            .store
            .list_actors(&ns.namespace_id, name, include_destroyed, limit)
            .await?
        {
            out.push(actor_json(&live_record(&gw, a)));
        }
    }
    Ok(Json(json!({"actors": out, "pagination": {"cursor": null}})))
}

/// `GET /actors/names`.
pub async fn names(State(gw): State<Gateway>, Query(q): Query<NsQuery>) -> ApiResult<Json<Value>> {
    let ns = resolve_namespace(&gw, q.namespace.as_deref()).await?;
    let mut out = serde_json::Map::new();
    for (name, metadata) in gw.store.list_actor_names(&ns.namespace_id).await? {
        let metadata: Value = serde_json::from_str(&metadata).unwrap_or_else(|_| json!({}));
        out.insert(name, json!({"metadata": metadata}));
    }
    Ok(Json(json!({"names": out, "pagination": {"cursor": null}})))
}

async fn existing_actor(gw: &Gateway, ns: &Namespace, id: &str) -> Result<ActorRecord, ApiError> {
    gw.store
        .get_actor(id)
        .await?
        .filter(|a| a.namespace_id == ns.namespace_id)
        .ok_or_else(ApiError::actor_not_found)
}

async fn live_actor(
    gw: &Gateway,
    ns: &Namespace,
    id: &str,
) -> Result<crate::actor::ActorHandle, ApiError> {
    let record = gw
        .store
        .get_actor(id)
        .await?
        .filter(|a| a.namespace_id == ns.namespace_id && !a.is_destroyed())
        .ok_or_else(ApiError::actor_not_found)?;
    gw.actors
        .ensure(gw, &record.actor_id)
        .await?
        .ok_or_else(ApiError::actor_not_found)
}

/// `DELETE /actors/{id}`: asks the actor to stop for good and waits briefly for it.
pub async fn destroy(
    State(gw): State<Gateway>,
    Path(id): Path<String>,
    Query(q): Query<NsQuery>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let ns = resolve_namespace(&gw, q.namespace.as_deref()).await?;
    if rivulet_wire::id::parse(&id).is_none() {
        return Err(ApiError::bad_request(format!(
            "Request is invalid: Invalid URL: {id:?} is not an actor id"
        )));
    }
    // The engine answers an unknown id with 400 here (404 through the gateway), and a
    // repeated destroy with success.
    let record = existing_actor(&gw, &ns, &id)
        .await
        .map_err(|e| e.with_status(axum::http::StatusCode::BAD_REQUEST))?;
    if record.is_destroyed() {
        return Ok(Json(json!({})).into_response());
    }
    let actor = live_actor(&gw, &ns, &id).await?;
    if let Some(resp) = cluster::forward_api_call(&gw, &actor, &method, &uri, &headers).await? {
        return Ok(resp);
    }
    let actor = gw
        .actors
        .deliver(&gw, &actor.actor_id, Msg::Destroy)
        .await?
        .ok_or_else(ApiError::actor_not_found)?;
    let mut status = actor.watch();
    // The key is released once the runner confirms; wait for that, bounded, so a client
    // that destroys and recreates sees a consistent result.
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let now = status.borrow_and_update().clone();
            if matches!(
                now,
                Status::Destroyed | Status::Elsewhere { .. } | Status::Unavailable { .. }
            ) {
                break;
            }
            if status.changed().await.is_err() {
                break;
            }
        }
    })
    .await;
    match actor.status() {
        // Another node took the actor between the check above and the destroy: it decides.
        Status::Elsewhere { .. } => {
            if let Some(resp) =
                cluster::forward_api_call(&gw, &actor, &method, &uri, &headers).await?
            {
                return Ok(resp);
            }
            Err(ApiError::new(
                "guard",
                "owner_moved",
                "The actor moved between gateway nodes during the destroy; retry.",
            )
            .with_status(axum::http::StatusCode::SERVICE_UNAVAILABLE))
        }
        Status::Unavailable { .. } => Err(ApiError::store_unavailable(" to the destroy")),
        _ => Ok(Json(json!({})).into_response()),
    }
}

/// `POST /actors/{id}/sleep`.
pub async fn sleep(
    State(gw): State<Gateway>,
    Path(id): Path<String>,
    Query(q): Query<NsQuery>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let call = Call {
        method,
        uri,
        headers,
    };
    signal(&gw, &id, q, Msg::Sleep, call).await
}

/// `POST /actors/{id}/reschedule`: wakes it (a no-op when it runs).
pub async fn reschedule(
    State(gw): State<Gateway>,
    Path(id): Path<String>,
    Query(q): Query<NsQuery>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let call = Call {
        method,
        uri,
        headers,
    };
    signal(&gw, &id, q, Msg::Wake, call).await
}

/// The request an API call came in, kept so it can be forwarded to the owning node.
struct Call {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
}

/// Hands a lifecycle input to a live actor's supervisor, on the node that serves it.
async fn signal(gw: &Gateway, id: &str, q: NsQuery, msg: Msg, call: Call) -> ApiResult<Response> {
    let ns = resolve_namespace(gw, q.namespace.as_deref()).await?;
    let actor = live_actor(gw, &ns, id).await?;
    if let Some(resp) =
        cluster::forward_api_call(gw, &actor, &call.method, &call.uri, &call.headers).await?
    {
        return Ok(resp);
    }
    gw.actors
        .deliver(gw, &actor.actor_id, msg)
        .await?
        .ok_or_else(ApiError::actor_not_found)?;
    Ok(Json(json!({})).into_response())
}
