//! What the actor task does with each piece of work: HTTP routes, `/connect` and raw sockets,
//! connections and their hooks, scheduled actions, and the stop sequence. Everything here runs
//! on the actor task, one item at a time, except the answers that need no actor
//! ([`answer_without_actor`], [`refusal`]).

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Weak};
use std::time::Duration;

use ciborium::Value;
use futures_util::future::FutureExt;

use super::conn::{send_to_client, Conn, ConnLinks, ConnOwner, Hibernation, RawSocket, Transport};
use super::context::{Ctx, Shared, SocketEntry};
use super::def::{unit_as, ActorInfo, ActorState, ActorVars, ConnParams, ConnState};
use super::error::{ActorError, RuntimeError};
use super::hibernate::{conn_key, ConnRecord};
use super::host::{header_value, HttpRequest, HttpResponse, SocketId, StopReason};
use super::runtime::Command;
use super::wire;
use crate::protocol::{
    self, ActorSpecifier, Encoding, ErrorBody, Frame, ProtocolError, ToClient, ToServer,
};

const HEADER_ENCODING: &str = "x-rivet-encoding";
const HEADER_CONN_PARAMS: &str = "x-rivet-conn-params";
const HEADER_PROTOCOLS: &str = "sec-websocket-protocol";

// === answers that need no actor ===

pub(crate) fn specifier(info: &ActorInfo) -> ActorSpecifier {
    ActorSpecifier {
        actor_id: info.actor_id.clone(),
        generation: u64::from(info.generation),
        key: info.key.clone(),
    }
}

/// Adds the headers RivetKit puts on every actor response.
fn with_actor_headers(mut response: HttpResponse, actor: &ActorSpecifier) -> HttpResponse {
    response
        .headers
        .insert("x-rivet-actor".to_owned(), actor.actor_id.clone());
    response.headers.insert(
        "x-rivet-actor-generation".to_owned(),
        actor.generation.to_string(),
    );
    if let Some(key) = &actor.key {
        // A key with a line break cannot be a header value; RivetKit leaves it out too.
        if !key.contains(['\r', '\n']) {
            response
                .headers
                .insert("x-rivet-actor-key".to_owned(), key.clone());
        }
    }
    response
}

fn request_encoding(request: &HttpRequest) -> Encoding {
    protocol::parse_encoding(request.header(HEADER_ENCODING)).unwrap_or(Encoding::Json)
}

/// An error answer in the request's encoding, with the actor's headers.
fn error_response(
    actor: &ActorSpecifier,
    encoding: Encoding,
    mut body: ErrorBody,
    status: Option<u16>,
) -> HttpResponse {
    body.actor = Some(actor.clone());
    let status = status.unwrap_or_else(|| protocol::http_status_for(&body));
    let response = HttpResponse::new(
        status,
        protocol::content_type(encoding),
        wire::encode_error_body(encoding, &body),
    );
    with_actor_headers(response, actor)
}

fn plain_error(group: &str, code: &str, message: String) -> ErrorBody {
    ErrorBody {
        group: group.to_owned(),
        code: code.to_owned(),
        message,
        metadata: None,
        action_id: None,
        actor: None,
    }
}

/// The answer to a request the actor did not take: 503 `actor.overloaded` or
/// `actor.stopping`.
pub(crate) fn refusal(
    actor: &ActorSpecifier,
    request: &HttpRequest,
    error: RuntimeError,
) -> HttpResponse {
    let body = match error {
        RuntimeError::Overloaded => {
            plain_error("actor", "overloaded", "Actor is overloaded.".to_owned())
        }
        RuntimeError::Stopped | RuntimeError::Save(_) => {
            plain_error("actor", "stopping", "Actor is stopping.".to_owned())
        }
    };
    error_response(actor, request_encoding(request), body, Some(503))
}

enum Route {
    Action(String),
    Raw(String),
    Health,
    Metadata,
    Root,
    NotFound,
}

/// `/request`, `/request/x?y` and `/request?y` are the raw handler's; it sees `/`, `/x?y`
/// and `/?y`.
fn raw_request_path(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/request")?;
    match rest.as_bytes().first() {
        None => Some("/".to_owned()),
        Some(b'/') => Some(rest.to_owned()),
        Some(b'?') => Some(format!("/{rest}")),
        Some(_) => None,
    }
}

fn percent_decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = segment.get(index + 1..index + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            index += 3;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn route(request: &HttpRequest) -> Result<Route, Box<ErrorBody>> {
    if let Some(path) = raw_request_path(&request.path) {
        return Ok(Route::Raw(path));
    }
    let path = request.path_only();
    if let Some(segment) = path.strip_prefix("/action/") {
        if !segment.is_empty() && !segment.contains('/') {
            return percent_decode(segment).map(Route::Action).ok_or_else(|| {
                Box::new(plain_error(
                    "actor",
                    "invalid_request",
                    "Invalid HTTP request path segment: invalid percent escape".to_owned(),
                ))
            });
        }
    }
    Ok(match path {
        "/health" => Route::Health,
        "/metadata" => Route::Metadata,
        "/" => Route::Root,
        _ => Route::NotFound,
    })
}

fn method_not_allowed(actor: &ActorSpecifier, request: &HttpRequest) -> HttpResponse {
    let body = plain_error(
        "actor",
        "method_not_allowed",
        "Method not allowed".to_owned(),
    );
    error_response(actor, request_encoding(request), body, None)
}

/// Answers the routes that do not involve actor code (`/health`, `/metadata`, `/`, unknown
/// paths); `None` for actions and raw requests, which go to the actor task.
pub(crate) fn answer_without_actor(
    actor: &ActorSpecifier,
    request: &HttpRequest,
) -> Option<HttpResponse> {
    let simple = |body: HttpResponse| {
        Some(if request.method.eq_ignore_ascii_case("GET") {
            with_actor_headers(body, actor)
        } else {
            method_not_allowed(actor, request)
        })
    };
    match route(request) {
        Err(body) => Some(error_response(
            actor,
            request_encoding(request),
            *body,
            None,
        )),
        Ok(Route::Action(_) | Route::Raw(_)) => None,
        Ok(Route::Health) => simple(HttpResponse::text(200, "ok")),
        Ok(Route::Metadata) => simple(HttpResponse::json(
            200,
            &serde_json::json!({
                "runtime": "rivetkit",
                "version": env!("CARGO_PKG_VERSION"),
                "type": "local",
            }),
        )),
        Ok(Route::Root) => simple(HttpResponse::text(200, "This is a Rivulet actor.\n")),
        Ok(Route::NotFound) => {
            let body = plain_error(
                "actor",
                "not_found",
                format!("Actor route '{}' was not found.", request.path_only()),
            );
            Some(error_response(actor, request_encoding(request), body, None))
        }
    }
}

// === guarded calls into actor code ===

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(message) = panic.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = panic.downcast_ref::<String>() {
        message.clone()
    } else {
        "unknown panic".to_owned()
    }
}

/// Runs actor code with a time limit, turning a panic into an internal error so that one bad
/// call cannot take the actor task down.
pub(crate) async fn guarded<T>(
    work: impl Future<Output = Result<T, ActorError>>,
    limit: Duration,
    on_timeout: impl FnOnce() -> ActorError,
    what: &str,
) -> Result<T, ActorError> {
    match tokio::time::timeout(limit, AssertUnwindSafe(work).catch_unwind()).await {
        Err(_) => Err(on_timeout()),
        Ok(Err(panic)) => {
            let message = panic_message(&*panic);
            tracing::error!(what, panic = %message, "actor code panicked");
            Err(ActorError::internal(format!("{what} panicked: {message}")))
        }
        Ok(Ok(result)) => result,
    }
}

/// Runs a user hook under [`guarded`], naming it in the timeout error and the log.
async fn run_hook<T>(
    name: &'static str,
    limit: Duration,
    work: impl Future<Output = Result<T, ActorError>>,
) -> Result<T, ActorError> {
    guarded(
        work,
        limit,
        move || ActorError::callback_timed_out(name, limit.as_millis()),
        name,
    )
    .await
}

// === work items ===

pub(crate) async fn command<S, CP, CS, V>(shared: &Arc<Shared<S, CP, CS, V>>, command: Command)
where
    S: ActorState,
    CP: ConnParams,
    CS: ConnState,
    V: ActorVars,
{
    match command {
        Command::Http { request, reply } => {
            let response = http(shared, request).await;
            // The caller may have given up; nothing to do then.
            let _ = reply.send(response);
        }
        Command::WsOpen {
            socket,
            path,
            headers,
            reply,
        } => {
            ws_open(shared, socket, &path, headers).await;
            let _ = reply.send(());
        }
        Command::WsMessage {
            socket,
            index,
            frame,
        } => ws_message(shared, socket, index, frame).await,
    }
}

async fn http<S, CP, CS, V>(
    shared: &Arc<Shared<S, CP, CS, V>>,
    request: HttpRequest,
) -> HttpResponse
where
    S: ActorState,
    CP: ConnParams,
    CS: ConnState,
    V: ActorVars,
{
    let actor = specifier(&shared.info);
    match route(&request) {
        Ok(Route::Action(name)) => http_action(shared, &actor, request, &name).await,
        Ok(Route::Raw(path)) => http_raw(shared, &actor, request, path).await,
        Ok(_) | Err(_) => match answer_without_actor(&actor, &request) {
            Some(response) => response,
            None => HttpResponse::text(500, "unroutable request"),
        },
    }
}

async fn http_action<S, CP, CS, V>(
    shared: &Arc<Shared<S, CP, CS, V>>,
    actor: &ActorSpecifier,
    request: HttpRequest,
    name: &str,
) -> HttpResponse
where
    S: ActorState,
    CP: ConnParams,
    CS: ConnState,
    V: ActorVars,
{
    let encoding = match protocol::parse_encoding(request.header(HEADER_ENCODING)) {
        Ok(encoding) => encoding,
        Err(error) => return error_response(actor, Encoding::Json, error.to_error_body(), None),
    };
    if !request.method.eq_ignore_ascii_case("POST") {
        return method_not_allowed(actor, &request);
    }
    let refuse =
        |error: ProtocolError| error_response(actor, encoding, error.to_error_body(), None);
    let args = match protocol::decode_http_action_args(encoding, &request.body) {
        Ok(args) => args,
        Err(error) => return refuse(error),
    };
    let params = match protocol::parse_conn_params_header(request.header(HEADER_CONN_PARAMS)) {
        Ok(params) => params,
        Err(error) => return refuse(error),
    };
    let answer =
        |error: ActorError| error_response(actor, encoding, error.to_error_body(None, None), None);

    // Like RivetKit, an HTTP action runs under a connection of its own, so the connect hooks
    // see (and may reject) its params.
    let conn = match prepare_conn(shared, params, None).await {
        Ok(conn) => conn,
        Err(error) => return answer(error),
    };
    if let Err(error) = finish_conn(shared, &conn).await {
        return answer(error);
    }
    let result = run_action(shared, Some(conn.clone()), name, args).await;
    disconnect_by_id(shared, conn.id(), "http action done").await;

    let output = match result {
        Ok(output) => output,
        Err(error) => return answer(error),
    };
    match protocol::encode_http_action_output(encoding, &output) {
        Ok(body) => with_actor_headers(
            HttpResponse::new(200, protocol::content_type(encoding), body),
            actor,
        ),
        Err(error @ ProtocolError::OutgoingTooLong { .. }) => refuse(error),
        Err(error) => answer(ActorError::internal(format!(
            "encoding action output failed: {error}"
        ))),
    }
}

async fn http_raw<S, CP, CS, V>(
    shared: &Arc<Shared<S, CP, CS, V>>,
    actor: &ActorSpecifier,
    mut request: HttpRequest,
    path: String,
) -> HttpResponse
where
    S: ActorState,
    CP: ConnParams,
    CS: ConnState,
    V: ActorVars,
{
    let encoding = request_encoding(&request);
    let Some(handler) = &shared.def.on_request else {
        let body = plain_error(
            "actor",
            "not_found",
            format!("Actor route '{}' was not found.", request.path_only()),
        );
        return error_response(actor, encoding, body, None);
    };
    request.path = path;
    let limit = shared.def.options.action_timeout;
    let ctx = Ctx::new(Arc::clone(shared), None);
    match run_hook("on_request", limit, handler(ctx, request)).await {
        Ok(response) => with_actor_headers(response, actor),
        Err(error) => error_response(actor, encoding, error.to_error_body(None, None), None),
    }
}

// === connections ===

fn new_conn_id() -> String {
    // A random (version 4) UUID, the form RivetKit's connection ids take.
    let mut bytes = rand::random::<u128>().to_be_bytes();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Validates a new connection and builds it (`on_before_connect`, `conn_state`), then
/// registers it so broadcasts reach it.
async fn prepare_conn<S, CP, CS, V>(
    shared: &Arc<Shared<S, CP, CS, V>>,
    params: Option<serde_json::Value>,
    transport: Option<Transport>,
) -> Result<Conn<CP, CS>, ActorError>
where
    S: ActorState,
    CP: ConnParams,
    CS: ConnState,
    V: ActorVars,
{
    let params_json = params.clone().filter(|value| !value.is_null());
    let params: Option<CP> = match params {
        None | Some(serde_json::Value::Null) => None,
        Some(value) => Some(
            serde_json::from_value(value)
                .map_err(|error| ActorError::validation("connection params", error.to_string()))?,
        ),
    };
    let def = &shared.def;
    let limit = def.options.hook_timeout;
    let ctx = Ctx::new(Arc::clone(shared), None);
    if let Some(hook) = &def.on_before_connect {
        run_hook(
            "on_before_connect",
            limit,
            hook(ctx.clone(), params.clone()),
        )
        .await?;
    }
    let state = match &def.create_conn_state {
        Some(create) => run_hook("conn_state", limit, create(ctx, params.clone())).await?,
        None => unit_as::<CS>().ok_or_else(|| {
            ActorError::internal(
                "the actor declares a connection state type but no `conn_state` closure",
            )
        })?,
    };
    let owner: Weak<dyn ConnOwner> = shared.weak.clone();
    // Only a `/connect` socket can hibernate; the actor may opt a connection out.
    let hibernation = transport
        .filter(|_| {
            def.can_hibernate
                .as_ref()
                .is_none_or(|can| can(params.as_ref()))
        })
        .map(|_| Hibernation {
            params_json: params_json.map(|json| json.to_string()),
            last_in: None,
        });
    let conn = Conn::new(
        new_conn_id(),
        params,
        state,
        transport,
        ConnLinks {
            host: Arc::clone(&shared.host),
            control: Arc::clone(&shared.control),
            owner,
        },
        hibernation,
    );
    let mut table = shared.conns.lock();
    table.by_id.insert(conn.id().to_owned(), conn.clone());
    if let Some(transport) = transport {
        table
            .sockets
            .insert(transport.socket, SocketEntry::Connect(conn.clone()));
    }
    Ok(conn)
}

/// Runs `on_connect`; a failure unregisters the connection (without `on_disconnect`, as in
/// RivetKit).
async fn finish_conn<S, CP, CS, V>(
    shared: &Arc<Shared<S, CP, CS, V>>,
    conn: &Conn<CP, CS>,
) -> Result<(), ActorError>
where
    S: ActorState,
    CP: ConnParams,
    CS: ConnState,
    V: ActorVars,
{
    let Some(hook) = &shared.def.on_connect else {
        return Ok(());
    };
    let limit = shared.def.options.hook_timeout;
    let ctx = Ctx::new(Arc::clone(shared), Some(conn.clone()));
    let result = run_hook("on_connect", limit, hook(ctx, conn.clone())).await;
    if result.is_err() {
        let mut table = shared.conns.lock();
        table.by_id.remove(conn.id());
        if let Some(transport) = conn.transport() {
            table.sockets.remove(&transport.socket);
        }
    }
    result
}

async fn run_on_disconnect<S, CP, CS, V>(shared: &Arc<Shared<S, CP, CS, V>>, conn: Conn<CP, CS>)
where
    S: ActorState,
    CP: ConnParams,
    CS: ConnState,
    V: ActorVars,
{
    let Some(hook) = &shared.def.on_disconnect else {
        return;
    };
    let limit = shared.def.options.hook_timeout;
    let ctx = Ctx::new(Arc::clone(shared), Some(conn.clone()));
    if let Err(error) = run_hook("on_disconnect", limit, hook(ctx, conn)).await {
        tracing::warn!(%error, "on_disconnect failed");
    }
}

/// Removes a connection the actor ends (an HTTP action's, or `conn.disconnect`): closes its
/// socket, if any, and runs `on_disconnect`.
pub(crate) async fn disconnect_by_id<S, CP, CS, V>(
    shared: &Arc<Shared<S, CP, CS, V>>,
    conn_id: &str,
    reason: &str,
) where
    S: ActorState,
    CP: ConnParams,
    CS: ConnState,
    V: ActorVars,
{
    let conn = {
        let mut table = shared.conns.lock();
        let conn = table.by_id.remove(conn_id);
        if let Some(transport) = conn.as_ref().and_then(Conn::transport) {
            table.sockets.remove(&transport.socket);
        }
        conn
    };
    let Some(conn) = conn else {
        return;
    };
    if let Some(transport) = conn.transport() {
        shared.control.forget_socket(transport.socket);
        shared
            .host
            .ws_close(transport.socket, 1000, reason.to_owned());
    }
    forget_record(shared, &conn).await;
    run_on_disconnect(shared, conn).await;
}

/// Deletes the stored record of a hibernatable connection that ended for good.
async fn forget_record<S, CP, CS, V>(shared: &Arc<Shared<S, CP, CS, V>>, conn: &Conn<CP, CS>)
where
    S: ActorState,
    CP: ConnParams,
    CS: ConnState,
    V: ActorVars,
{
    if !conn.is_hibernatable() {
        return;
    }
    if let Err(error) = shared.host.kv_delete(vec![conn_key(conn.id())]).await {
        // Harmless: the next instance finds its socket gone and drops it then.
        tracing::debug!(conn_id = %conn.id(), %error, "deleting a connection record failed");
    }
}

/// The glue reported a socket gone: forget it and run its close hook.
pub(crate) async fn socket_closed<S, CP, CS, V>(
    shared: &Arc<Shared<S, CP, CS, V>>,
    socket: SocketId,
) where
    S: ActorState,
    CP: ConnParams,
    CS: ConnState,
    V: ActorVars,
{
    let entry = {
        let mut table = shared.conns.lock();
        let entry = table.sockets.remove(&socket);
        if let Some(SocketEntry::Connect(conn)) = &entry {
            table.by_id.remove(conn.id());
        }
        entry
    };
    match entry {
        None => {}
        Some(SocketEntry::Connect(conn)) => {
            forget_record(shared, &conn).await;
            run_on_disconnect(shared, conn).await;
        }
        Some(SocketEntry::Raw(raw)) => run_raw_close(shared, raw).await,
    }
}

async fn run_raw_close<S, CP, CS, V>(shared: &Arc<Shared<S, CP, CS, V>>, raw: RawSocket)
where
    S: ActorState,
    CP: ConnParams,
    CS: ConnState,
    V: ActorVars,
{
    let Some(hook) = &shared.def.on_websocket_close else {
        return;
    };
    let limit = shared.def.options.action_timeout;
    let ctx = Ctx::new(Arc::clone(shared), None);
    if let Err(error) = run_hook("on_websocket_close", limit, hook(ctx, raw)).await {
        tracing::warn!(%error, "on_websocket_close failed");
    }
}

/// Closes a socket from the actor's side and runs its close hook.
async fn close_socket<S, CP, CS, V>(
    shared: &Arc<Shared<S, CP, CS, V>>,
    socket: SocketId,
    code: u16,
    reason: &str,
) where
    S: ActorState,
    CP: ConnParams,
    CS: ConnState,
    V: ActorVars,
{
    shared.control.forget_socket(socket);
    shared.host.ws_close(socket, code, reason.to_owned());
    socket_closed(shared, socket).await;
}

fn close_reason(body: &ErrorBody) -> String {
    format!("{}.{}", body.group, body.code)
}

// === sockets ===

async fn ws_open<S, CP, CS, V>(
    shared: &Arc<Shared<S, CP, CS, V>>,
    socket: SocketId,
    path: &str,
    headers: HashMap<String, String>,
) where
    S: ActorState,
    CP: ConnParams,
    CS: ConnState,
    V: ActorVars,
{
    if !shared.control.socket_open(socket) {
        // Closed while it waited in the queue.
        return;
    }
    let path_only = path.split_once('?').map_or(path, |(path, _)| path);
    if path_only == "/connect" {
        connect_socket(shared, socket, headers).await;
    } else if let Some(rest) = path
        .strip_prefix("/websocket")
        .filter(|rest| rest.is_empty() || rest.starts_with('/') || rest.starts_with('?'))
    {
        let raw_path = if rest.starts_with('/') {
            rest.to_owned()
        } else {
            format!("/{rest}")
        };
        raw_open(shared, socket, raw_path, headers).await;
    } else {
        shared.control.forget_socket(socket);
        shared
            .host
            .ws_close(socket, 1011, "actor.not_found".to_owned());
    }
}

async fn connect_socket<S, CP, CS, V>(
    shared: &Arc<Shared<S, CP, CS, V>>,
    socket: SocketId,
    headers: HashMap<String, String>,
) where
    S: ActorState,
    CP: ConnParams,
    CS: ConnState,
    V: ActorVars,
{
    let request = match protocol::parse_connect_protocols(header_value(&headers, HEADER_PROTOCOLS))
    {
        Ok(request) => request,
        Err(error) => {
            tracing::debug!(%error, "refusing connect socket");
            shared.control.forget_socket(socket);
            shared
                .host
                .ws_close(socket, error.close_code(), error.close_reason());
            return;
        }
    };
    let transport = Transport {
        socket,
        encoding: request.encoding,
    };
    let actor = specifier(&shared.info);
    // RivetKit accepts the socket and then reports a rejected connection as an `Error`
    // message followed by a close, so the client can show the actor's error.
    let reject = |error: ActorError| {
        let body = error.to_error_body(Some(actor.clone()), None);
        shared.control.forget_socket(socket);
        shared.host.ws_accept(socket, false);
        send_to_client(
            &*shared.host,
            &shared.control,
            transport,
            &ToClient::Error(body.clone()),
        );
        shared.host.ws_close(socket, 1011, close_reason(&body));
    };
    let conn = match prepare_conn(shared, request.conn_params, Some(transport)).await {
        Ok(conn) => conn,
        Err(error) => return reject(error),
    };
    shared.host.ws_accept(socket, conn.is_hibernatable());
    send_to_client(
        &*shared.host,
        &shared.control,
        transport,
        &ToClient::Init {
            actor_id: shared.info.actor_id.clone(),
            connection_id: conn.id().to_owned(),
        },
    );
    match finish_conn(shared, &conn).await {
        // Written with the next save (within the save interval, or at the stop).
        Ok(()) => conn.touch(),
        Err(error) => {
            let body = error.to_error_body(Some(actor.clone()), None);
            send_to_client(
                &*shared.host,
                &shared.control,
                transport,
                &ToClient::Error(body.clone()),
            );
            shared.control.forget_socket(socket);
            shared.host.ws_close(socket, 1011, close_reason(&body));
        }
    }
}

async fn raw_open<S, CP, CS, V>(
    shared: &Arc<Shared<S, CP, CS, V>>,
    socket: SocketId,
    path: String,
    headers: HashMap<String, String>,
) where
    S: ActorState,
    CP: ConnParams,
    CS: ConnState,
    V: ActorVars,
{
    let Some(handler) = &shared.def.on_websocket else {
        shared.control.forget_socket(socket);
        shared
            .host
            .ws_close(socket, 1011, "actor.not_found".to_owned());
        return;
    };
    let raw = RawSocket::new(
        socket,
        &path,
        Arc::clone(&shared.host),
        Arc::clone(&shared.control),
    );
    shared
        .conns
        .lock()
        .sockets
        .insert(socket, SocketEntry::Raw(raw.clone()));
    shared.host.ws_accept(socket, false);
    let request = HttpRequest {
        method: "GET".to_owned(),
        path,
        headers,
        body: Vec::new(),
    };
    let limit = shared.def.options.action_timeout;
    let ctx = Ctx::new(Arc::clone(shared), None);
    if let Err(error) = run_hook("on_websocket", limit, handler(ctx, raw, request)).await {
        let body = error.to_error_body(None, None);
        close_socket(shared, socket, 1011, &close_reason(&body)).await;
    }
}

async fn ws_message<S, CP, CS, V>(
    shared: &Arc<Shared<S, CP, CS, V>>,
    socket: SocketId,
    index: u16,
    frame: Frame,
) where
    S: ActorState,
    CP: ConnParams,
    CS: ConnState,
    V: ActorVars,
{
    let entry = match shared.conns.lock().sockets.get(&socket) {
        None => None,
        Some(SocketEntry::Connect(conn)) => Some(SocketEntry::Connect(conn.clone())),
        Some(SocketEntry::Raw(raw)) => Some(SocketEntry::Raw(raw.clone())),
    };
    match entry {
        None => tracing::debug!(?socket, "message for an unknown socket dropped"),
        Some(SocketEntry::Connect(conn)) => {
            let hibernatable = conn.is_hibernatable();
            if conn.take_message(index) {
                connect_message(shared, conn, frame).await;
            } else {
                tracing::debug!(
                    ?socket,
                    index,
                    "client message taken before the restore; dropped"
                );
            }
            // Applied: a state change it made is saved by now (an action replies only then),
            // in the same put as the record holding this index, so the gateway may forget it.
            if hibernatable && shared.control.socket_open(socket) {
                shared.host.ws_ack(socket, index);
            }
        }
        Some(SocketEntry::Raw(raw)) => {
            let Some(handler) = &shared.def.on_websocket_message else {
                return;
            };
            let limit = shared.def.options.action_timeout;
            let ctx = Ctx::new(Arc::clone(shared), None);
            if let Err(error) =
                run_hook("on_websocket_message", limit, handler(ctx, raw, frame)).await
            {
                let body = error.to_error_body(None, None);
                close_socket(shared, socket, 1011, &close_reason(&body)).await;
            }
        }
    }
}

async fn connect_message<S, CP, CS, V>(
    shared: &Arc<Shared<S, CP, CS, V>>,
    conn: Conn<CP, CS>,
    frame: Frame,
) where
    S: ActorState,
    CP: ConnParams,
    CS: ConnState,
    V: ActorVars,
{
    let Some(transport) = conn.transport() else {
        return;
    };
    let message = match protocol::decode_to_server(transport.encoding, &frame) {
        Ok(message) => message,
        Err(error) => {
            tracing::debug!(%error, "unusable client message; closing socket");
            close_socket(
                shared,
                transport.socket,
                error.close_code(),
                &error.close_reason(),
            )
            .await;
            return;
        }
    };
    match message {
        ToServer::SubscriptionRequest {
            event_name,
            subscribe,
        } => {
            if subscribe {
                conn.subscribe(event_name);
            } else {
                conn.unsubscribe(&event_name);
            }
        }
        ToServer::ActionRequest { id, name, args } => {
            let args = match args {
                Value::Array(args) => args,
                Value::Null => Vec::new(),
                other => vec![other],
            };
            let result = run_action(shared, Some(conn.clone()), &name, args).await;
            if !shared.control.socket_open(transport.socket) {
                // The action closed its own connection; nobody is left to answer.
                return;
            }
            let actor = specifier(&shared.info);
            let response = match result {
                Ok(output) => ToClient::ActionResponse { id, output },
                Err(error) => ToClient::Error(error.to_error_body(Some(actor.clone()), Some(id))),
            };
            respond(
                &*shared.host,
                &shared.control,
                transport,
                response,
                id,
                &actor,
            );
        }
    }
}

/// Sends an action's answer; one over the outgoing limit is replaced by RivetKit's
/// `message.outgoing_too_long` error for that action.
fn respond(
    host: &dyn super::host::Host,
    control: &super::runtime::Control,
    transport: Transport,
    response: ToClient,
    id: u64,
    actor: &ActorSpecifier,
) {
    match protocol::encode_to_client(transport.encoding, &response) {
        Ok(frame) => host.ws_send(transport.socket, frame),
        Err(error @ ProtocolError::OutgoingTooLong { .. }) => {
            let mut body = error.to_error_body();
            body.action_id = Some(id);
            body.actor = Some(actor.clone());
            send_to_client(host, control, transport, &ToClient::Error(body));
        }
        Err(error) => {
            tracing::error!(%error, "encoding an action response failed");
            let body = ActorError::internal(error).to_error_body(Some(actor.clone()), Some(id));
            send_to_client(host, control, transport, &ToClient::Error(body));
        }
    }
}

// === actions and schedules ===

pub(crate) async fn run_action<S, CP, CS, V>(
    shared: &Arc<Shared<S, CP, CS, V>>,
    conn: Option<Conn<CP, CS>>,
    name: &str,
    args: Vec<Value>,
) -> Result<Value, ActorError>
where
    S: ActorState,
    CP: ConnParams,
    CS: ConnState,
    V: ActorVars,
{
    let Some(action) = shared.def.actions.get(name) else {
        return Err(ActorError::action_not_found(name));
    };
    let ctx = Ctx::new(Arc::clone(shared), conn);
    let before = shared.saver.version();
    let output = guarded(
        action(ctx, args),
        shared.def.options.action_timeout,
        ActorError::action_timed_out,
        "action",
    )
    .await?;
    // The reply says the action happened: if it changed the state, that change must be
    // saved first (an `action_unsaved` opted out of this).
    let after = shared.saver.version();
    if after != before && !shared.def.unsaved_actions.contains(name) {
        shared
            .save_through(after)
            .await
            .map_err(ActorError::state_not_saved)?;
    }
    Ok(output)
}

/// Runs every scheduled action that is due.
pub(crate) async fn fire_due<S, CP, CS, V>(shared: &Arc<Shared<S, CP, CS, V>>)
where
    S: ActorState,
    CP: ConnParams,
    CS: ConnState,
    V: ActorVars,
{
    while let Some(event) = shared
        .schedule
        .claim_due(&*shared.host, shared.host.now_ms())
        .await
    {
        tracing::debug!(action = %event.action, schedule_id = %event.id, "running scheduled action");
        if let Err(error) = run_action(shared, None, &event.action, event.args).await {
            tracing::warn!(action = %event.action, schedule_id = %event.id, %error, "scheduled action failed");
        }
    }
}

// === stop ===

/// The stop sequence: hook and disconnects within the grace period, then the final save.
/// For a sleep or a move, hibernatable connections are not disconnected: their records go in
/// the final save, and only then are their sockets handed to the carrier to hold, so the
/// next instance finds them stored with every message they took.
pub(crate) async fn stop<S, CP, CS, V>(
    shared: &Arc<Shared<S, CP, CS, V>>,
    reason: StopReason,
) -> Result<(), RuntimeError>
where
    S: ActorState,
    CP: ConnParams,
    CS: ConnState,
    V: ActorVars,
{
    let def = &shared.def;
    let grace = def.options.sleep_grace_period;
    let keeps = |entry: &SocketEntry<CP, CS>| {
        reason != StopReason::Destroy
            && matches!(entry, SocketEntry::Connect(conn)
                if conn.is_hibernatable() && !conn.record().unstorable)
    };
    let graceful = async {
        let (hook, name) = match reason {
            StopReason::Destroy => (&def.on_destroy, "on_destroy"),
            StopReason::Sleep | StopReason::GoingAway => (&def.on_sleep, "on_sleep"),
        };
        if let Some(hook) = hook {
            let ctx = Ctx::new(Arc::clone(shared), None);
            if let Err(error) = run_hook(name, grace, hook(ctx)).await {
                tracing::warn!(hook = name, %error, "stop hook failed");
            }
        }
        let sockets: Vec<SocketId> = shared
            .conns
            .lock()
            .sockets
            .iter()
            .filter(|(_, entry)| !keeps(entry))
            .map(|(socket, _)| *socket)
            .collect();
        for socket in sockets {
            close_socket(shared, socket, 1000, "actor.stopping").await;
        }
    };
    if tokio::time::timeout(grace, graceful).await.is_err() {
        tracing::warn!(
            grace_ms = grace.as_millis(),
            "graceful stop ran out of time; saving anyway"
        );
        // Whatever the hooks did not get to is closed without them.
        let leftover: Vec<SocketId> = {
            let mut table = shared.conns.lock();
            let gone: Vec<SocketId> = table
                .sockets
                .iter()
                .filter(|(_, entry)| !keeps(entry))
                .map(|(socket, _)| *socket)
                .collect();
            for socket in &gone {
                if let Some(SocketEntry::Connect(conn)) = table.sockets.remove(socket) {
                    table.by_id.remove(conn.id());
                }
            }
            table.by_id.retain(|_, conn| conn.is_hibernatable());
            gone
        };
        for socket in leftover {
            shared.control.forget_socket(socket);
            shared
                .host
                .ws_close(socket, 1000, "actor.stopping".to_owned());
        }
    }
    let kept: Vec<SocketId> = shared
        .conns
        .lock()
        .sockets
        .iter()
        .filter(|(_, entry)| keeps(entry))
        .map(|(socket, _)| *socket)
        .collect();
    if !kept.is_empty() {
        // Make sure the final save runs and carries every kept record that changed.
        shared.saver.mark_dirty();
    }
    let mut saved = shared.save_now().await;
    // One put carries a bounded number of connection records: many kept connections that
    // changed since the last save take several saves, and every one must be written before
    // its socket is handed to the gateway (a held socket without a record is closed at the
    // next start). Each save writes at least one record, so this ends.
    for _ in 0..kept.len() {
        if saved.is_err() || !shared.conn_records_pending() {
            break;
        }
        saved = shared.save_now().await;
    }
    let saved = saved.map_err(RuntimeError::Save);
    for socket in kept {
        shared.control.forget_socket(socket);
        shared.host.ws_hibernate(socket);
    }
    {
        let mut table = shared.conns.lock();
        table.sockets.clear();
        table.by_id.clear();
    }
    saved
}

// === restore ===

/// Takes back, at start, the hibernatable connections stored for this actor whose sockets
/// the carrier still holds (`hibernating`), and accepts those sockets again. Returns the
/// stored connections whose sockets are gone, for `on_disconnect` once the actor is up
/// (their records are deleted). A held socket with no usable record is closed.
pub(crate) async fn restore_conns<S, CP, CS, V>(
    shared: &Arc<Shared<S, CP, CS, V>>,
    records: Vec<(Vec<u8>, Vec<u8>)>,
    hibernating: &[SocketId],
) -> Vec<Conn<CP, CS>>
where
    S: ActorState,
    CP: ConnParams,
    CS: ConnState,
    V: ActorVars,
{
    let held: std::collections::HashSet<SocketId> = hibernating.iter().copied().collect();
    let mut restored = std::collections::HashSet::new();
    let mut gone = Vec::new();
    let mut dead_keys = Vec::new();
    for (key, bytes) in records {
        let conn = ConnRecord::decode(&bytes).and_then(|record| rebuild_conn(shared, &record));
        let conn = match conn {
            Ok(conn) => conn,
            Err(error) => {
                tracing::warn!(%error, "stored connection unusable; dropped");
                dead_keys.push(key);
                continue;
            }
        };
        let Some(transport) = conn.transport() else {
            dead_keys.push(key);
            continue;
        };
        if !held.contains(&transport.socket) || !shared.control.offer_socket(transport.socket) {
            dead_keys.push(key);
            gone.push(conn);
            continue;
        }
        {
            let mut table = shared.conns.lock();
            table.by_id.insert(conn.id().to_owned(), conn.clone());
            table
                .sockets
                .insert(transport.socket, SocketEntry::Connect(conn.clone()));
        }
        restored.insert(transport.socket);
        shared.host.ws_accept(transport.socket, true);
        tracing::debug!(conn_id = %conn.id(), "connection restored");
    }
    for socket in hibernating {
        if !restored.contains(socket) {
            tracing::debug!(?socket, "held socket without a stored connection; closing");
            shared
                .host
                .ws_close(*socket, 1011, "ws.stale_metadata".to_owned());
        }
    }
    if !dead_keys.is_empty() {
        if let Err(error) = shared.host.kv_delete(dead_keys).await {
            tracing::debug!(%error, "deleting stale connection records failed");
        }
    }
    if !restored.is_empty() {
        tracing::info!(
            connections = restored.len(),
            "hibernated connections restored"
        );
    }
    gone
}

fn rebuild_conn<S, CP, CS, V>(
    shared: &Arc<Shared<S, CP, CS, V>>,
    record: &ConnRecord,
) -> Result<Conn<CP, CS>, String>
where
    S: ActorState,
    CP: ConnParams,
    CS: ConnState,
    V: ActorVars,
{
    let encoding = record
        .encoding()
        .ok_or_else(|| format!("unknown encoding {}", record.encoding))?;
    let params: Option<CP> = match &record.params {
        None => None,
        Some(text) => {
            Some(serde_json::from_str(text).map_err(|e| format!("connection params: {e}"))?)
        }
    };
    let state: CS = ciborium::from_reader(record.state.as_slice())
        .map_err(|e| format!("connection state: {e}"))?;
    let owner: Weak<dyn ConnOwner> = shared.weak.clone();
    let conn = Conn::with_id(
        record.id.clone(),
        params,
        state,
        Some(Transport {
            socket: SocketId(record.socket),
            encoding,
        }),
        ConnLinks {
            host: Arc::clone(&shared.host),
            control: Arc::clone(&shared.control),
            owner,
        },
        Hibernation {
            params_json: record.params.clone(),
            last_in: record.last_in,
        },
        record.subscriptions.clone(),
    );
    Ok(conn)
}

/// Runs `on_disconnect` for stored connections whose clients left while no instance ran.
pub(crate) async fn disconnect_gone<S, CP, CS, V>(
    shared: &Arc<Shared<S, CP, CS, V>>,
    gone: Vec<Conn<CP, CS>>,
) where
    S: ActorState,
    CP: ConnParams,
    CS: ConnState,
    V: ActorVars,
{
    for conn in gone {
        run_on_disconnect(shared, conn).await;
    }
}
