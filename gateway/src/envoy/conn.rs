//! One runner connection. The reader loop decodes frames and dispatches them; a writer task
//! drains the bounded outbound queue and sends pings. The first of the two to end cancels
//! the other. When the connection ends, in-flight tunnel requests are told only after the
//! lost threshold passes without the runner reconnecting, because a reconnecting runner
//! keeps its actors and requests.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use rivulet_wire::codec::{decode_to_rivet, encode_to_envoy, CodecError};
use rivulet_wire::envoy::{
    ActorCheckpoint, ProtocolMetadata, ToEnvoy, ToEnvoyAckEvents, ToEnvoyInit, ToEnvoyPing, ToRivet,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::registry::{EnvoyHandle, EnvoyIdentity, Outbound};
use super::storage::{self, StorageRequest};
use super::{close_with, ConnectParams, Refusal};
use crate::actor::{DeliverError, Msg};
use crate::state::Gateway;
use crate::util::now_ms;

/// Serves one connection until it closes.
pub(super) async fn serve(gw: Gateway, params: ConnectParams, socket: WebSocket) {
    let namespace = match gw.store.get_namespace(&params.namespace).await {
        Ok(Some(ns)) => ns,
        Ok(None) => {
            let refusal = Refusal {
                code: "namespace.not_found",
                detail: format!("namespace {} does not exist", params.namespace),
            };
            return close_with(socket, &refusal).await;
        }
        Err(err) => {
            let refusal = Refusal {
                code: "core.internal_error",
                detail: format!("store: {err}"),
            };
            return close_with(socket, &refusal).await;
        }
    };
    // A standby request the gateway gave up before its runner connected: told so at once, so
    // that the request ends now instead of waiting, unused, until its deadline.
    if params
        .envoy_key
        .starts_with(rivulet_wire::STANDBY_KEY_PREFIX)
        && gw.envoys.standby_for(&params.envoy_key).is_none()
    {
        let refusal = Refusal {
            code: rivulet_wire::STANDBY_NOT_NEEDED,
            detail: "the move went ahead without this standby".into(),
        };
        return close_with(socket, &refusal).await;
    }
    let reg = gw.envoys.register(
        EnvoyIdentity {
            key: params.envoy_key.clone(),
            namespace_id: namespace.namespace_id,
            pool_name: params.pool_name.clone(),
            version: params.version,
            instance: params.instance.clone(),
        },
        &gw.stopping,
    );
    let handle = reg.handle;
    if let Some(orphaned) = &reg.orphaned {
        lose_actors(
            &gw,
            &handle.key,
            orphaned,
            "runner restarted under the same envoy_key",
        );
    }
    let span = tracing::info_span!(
        "envoy",
        envoy_key = %handle.key,
        pool = %handle.pool_name,
        conn = handle.conn_id
    );
    async move {
        tracing::info!(replayed_commands = reg.replay.len(), "runner connected");
        if let Some(actor_id) = gw.envoys.standby_for(&handle.key) {
            if let Some(actor) = gw.actors.get(&actor_id) {
                let _ = actor.send(Msg::StandbyReady {
                    envoy: handle.key.clone(),
                });
            }
        }
        let init = ToEnvoy::ToEnvoyInit(ToEnvoyInit {
            metadata: ProtocolMetadata {
                envoy_lost_threshold: gw.config.envoy.lost_threshold_ms,
                actor_stop_threshold: gw.config.envoy.actor_stop_threshold_ms,
                max_response_payload_size: gw.config.envoy.max_response_payload_bytes,
            },
        });
        let (mut sink, mut stream) = socket.split();
        let cancel = handle.cancel.clone();
        // Init and replay go out before anything queued, in this order.
        let mut first = vec![init];
        if !reg.replay.is_empty() {
            first.push(ToEnvoy::ToEnvoyCommands(reg.replay));
        }
        let writer = {
            let cancel = cancel.clone();
            let ping_every = Duration::from_millis(gw.config.envoy.ping_interval_ms);
            let mut rx = reg.rx;
            let handle = handle.clone();
            async move {
                let ended_by_us = write_loop(&mut sink, first, &mut rx, ping_every, &cancel).await;
                cancel.cancel();
                if ended_by_us {
                    let reason = handle.close_reason();
                    let _ = sink
                        .send(Message::Close(Some(axum::extract::ws::CloseFrame {
                            code: reason.0,
                            reason: reason.1.into(),
                        })))
                        .await;
                }
                let _ = sink.close().await;
            }
        };
        let writer = tokio::spawn(writer.in_current_span());
        let mut reader = Reader {
            gw: gw.clone(),
            handle: handle.clone(),
            workers: HashMap::new(),
            workers_swept_at: 0,
            unacked_events: HashMap::new(),
        };
        reader.run(&mut stream, &cancel).await;
        cancel.cancel();
        let _ = writer.await;
        drop(reader);
        on_disconnect(gw, handle).await;
    }
    .instrument(span)
    .await
}

/// Sends init, replayed commands, queued frames and pings; returns whether the gateway ended
/// the connection (and so owes the runner a close frame).
async fn write_loop<S>(
    sink: &mut S,
    first: Vec<ToEnvoy>,
    rx: &mut mpsc::Receiver<Outbound>,
    ping_every: Duration,
    cancel: &CancellationToken,
) -> bool
where
    S: futures_util::Sink<Message> + Unpin,
{
    for msg in first {
        if sink.send(binary(&msg)).await.is_err() {
            return false;
        }
    }
    let mut ping = tokio::time::interval(ping_every);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return true,
            out = rx.recv() => match out {
                Some(out) => {
                    if sink.send(binary(&out.msg)).await.is_err() {
                        return false;
                    }
                    // A tunnel frame's slot frees here, once the socket has it.
                    drop(out);
                }
                None => return false,
            },
            _ = ping.tick() => {
                let msg = ToEnvoy::ToEnvoyPing(ToEnvoyPing { ts: now_ms() });
                if sink.send(binary(&msg)).await.is_err() {
                    return false;
                }
            }
        }
    }
}

fn binary(msg: &ToEnvoy) -> Message {
    Message::Binary(encode_to_envoy(msg).into())
}

struct Reader {
    gw: Gateway,
    handle: Arc<EnvoyHandle>,
    /// One storage worker per actor, so each actor's requests apply in order while actors
    /// proceed independently.
    workers: HashMap<String, mpsc::Sender<StorageRequest>>,
    /// Size of `workers` after its last sweep of ended workers.
    workers_swept_at: usize,
    /// Events received per actor since the last acknowledgement.
    unacked_events: HashMap<String, usize>,
}

/// Events per actor acknowledged at once, as the engine does. Until acknowledged, a runner
/// replays an actor's events after every reconnect; a gateway that restarted learns from
/// that replay which actors the runner still runs, and adopts them.
const EVENT_ACK_BATCH: usize = 250;

impl Reader {
    async fn run<S>(&mut self, stream: &mut S, cancel: &CancellationToken)
    where
        S: futures_util::Stream<Item = Result<Message, axum::Error>> + Unpin,
    {
        let timeout = Duration::from_millis(self.gw.config.envoy.ping_timeout_ms);
        let mut liveness = tokio::time::interval(timeout / 4);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = liveness.tick() => {
                    let last = self.handle.last_ping_ts.load(Ordering::Relaxed);
                    if now_ms() - last > i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX) {
                        tracing::warn!("runner missed pings, closing connection");
                        self.handle.close(1011, "ws.timed_out#no pong within the ping timeout");
                        return;
                    }
                }
                frame = stream.next() => match frame {
                    Some(Ok(Message::Binary(bytes))) => {
                        if let Err(err) = self.on_frame(bytes).await {
                            tracing::warn!(error = %err, "malformed frame from runner, closing");
                            self.handle.send_close(&err);
                            return;
                        }
                    }
                    Some(Ok(Message::Text(_))) => {
                        tracing::warn!("text frame from runner, closing");
                        self.handle.send_close(&CodecError::Invalid("text frames are not part of the envoy protocol".into()));
                        return;
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(Message::Close(frame))) => {
                        tracing::info!(?frame, "runner closed connection");
                        return;
                    }
                    Some(Err(err)) => {
                        tracing::info!(error = %err, "runner connection failed");
                        return;
                    }
                    None => return,
                },
            }
        }
    }

    async fn on_frame(&mut self, bytes: bytes::Bytes) -> Result<(), CodecError> {
        let msg = decode_to_rivet(bytes)?;
        match msg {
            ToRivet::ToRivetMetadata(meta) => {
                if let Some(metadata) = meta.metadata {
                    *self.handle.metadata.lock() = Some(metadata.to_string());
                }
                if let Some(names) = meta.prepopulate_actor_names {
                    let names: Vec<(String, String)> = names
                        .into_iter()
                        .map(|(name, n)| (name.to_string(), n.metadata.to_string()))
                        .collect();
                    self.gw.names.put_registered(
                        &self.handle.namespace_id,
                        names.iter().map(|(name, _)| name.clone()),
                        false,
                    );
                    if let Err(err) = self
                        .gw
                        .store
                        .put_actor_names(&self.handle.namespace_id, names)
                        .await
                    {
                        tracing::error!(error = %err, "failed to store actor names");
                    }
                }
            }
            ToRivet::ToRivetEvents(events) => self.on_events(events).await,
            ToRivet::ToRivetAckCommands(ack) => {
                for cp in &ack.last_command_checkpoints {
                    self.claim_if_awaited(&cp.actor_id, Some(cp.generation));
                }
                self.gw
                    .envoys
                    .ack_commands(&self.handle.key, &ack.last_command_checkpoints);
            }
            ToRivet::ToRivetStopping => {
                tracing::info!("runner is stopping; moving its actors");
                self.handle.stopping.store(true, Ordering::Relaxed);
                let actors: Vec<String> = self.handle.assigned.lock().keys().cloned().collect();
                for actor_id in actors {
                    if let Some(actor) = self.gw.actors.get(&actor_id) {
                        let _ = actor.send(Msg::RunnerStopping(self.handle.key.clone()));
                    }
                }
            }
            ToRivet::ToRivetPong(pong) => {
                let now = now_ms();
                self.handle.last_ping_ts.store(now, Ordering::Relaxed);
                self.handle
                    .last_rtt_ms
                    .store(now.saturating_sub(pong.ts), Ordering::Relaxed);
            }
            ToRivet::ToRivetTunnelMessage(msg) => {
                let id = msg.message_id;
                if !self.gw.routes.deliver(
                    &self.handle.key,
                    id.request_id,
                    id.message_index,
                    msg.message_kind,
                ) {
                    tracing::debug!("tunnel message for an unknown or closed request");
                }
            }
            ToRivet::ToRivetKvRequest(req) => {
                let actor_id = req.actor_id.to_string();
                self.dispatch(actor_id, StorageRequest::Kv(req));
            }
            ToRivet::ToRivetSqliteGetPagesRequest(req) => {
                let actor_id = req.data.actor_id.to_string();
                self.dispatch(actor_id, StorageRequest::GetPages(req));
            }
            ToRivet::ToRivetSqliteCommitRequest(req) => {
                let actor_id = req.data.actor_id.to_string();
                self.dispatch(actor_id, StorageRequest::Commit(req));
            }
            ToRivet::ToRivetSqliteCommitStageBeginRequest(req) => {
                let actor_id = req.data.actor_id.to_string();
                self.dispatch(actor_id, StorageRequest::StageBegin(req));
            }
            ToRivet::ToRivetSqliteCommitStageSegmentRequest(req) => {
                let actor_id = req.data.actor_id.to_string();
                self.dispatch(actor_id, StorageRequest::StageSegment(req));
            }
            ToRivet::ToRivetSqliteCommitFinalizeRequest(req) => {
                let actor_id = req.data.actor_id.to_string();
                self.dispatch(actor_id, StorageRequest::Finalize(req));
            }
            ToRivet::ToRivetSqliteExecRequest(req) => {
                self.handle
                    .send(storage::exec_unsupported(req.request_id, 0));
            }
            ToRivet::ToRivetSqliteExecuteRequest(req) => {
                self.handle
                    .send(storage::exec_unsupported(req.request_id, 1));
            }
            ToRivet::ToRivetSqliteExecuteBatchRequest(req) => {
                self.handle
                    .send(storage::exec_unsupported(req.request_id, 2));
            }
        }
        Ok(())
    }

    async fn on_events(&mut self, events: Vec<rivulet_wire::envoy::EventWrapper>) {
        let mut ack: Vec<ActorCheckpoint> = Vec::new();
        for event in events {
            let actor_id = event.checkpoint.actor_id.to_string();
            self.claim_if_awaited(&actor_id, Some(event.checkpoint.generation));
            // A stopped actor needs no adoption: acknowledge its events at once and forget
            // it, so the map holds only actors this runner still runs.
            let stopped = matches!(
                &event.inner,
                rivulet_wire::envoy::Event::EventActorStateUpdate(u)
                    if matches!(u.state, rivulet_wire::envoy::ActorState::ActorStateStopped(_))
            );
            if stopped {
                self.unacked_events.remove(&actor_id);
                ack.push(event.checkpoint.clone());
            } else {
                let count = self.unacked_events.entry(actor_id.clone()).or_insert(0);
                *count += 1;
                if *count >= EVENT_ACK_BATCH {
                    *count = 0;
                    ack.push(event.checkpoint.clone());
                }
            }
            match self
                .gw
                .actors
                .deliver(&self.gw, &actor_id, Msg::Event(event))
                .await
            {
                Ok(Some(_)) => {}
                Ok(None) => {
                    tracing::debug!(actor_id = %actor_id, "event for an unknown or destroyed actor");
                }
                Err(DeliverError::Api(err)) => {
                    tracing::warn!(actor_id = %actor_id, error = %err.message, "cannot route event");
                }
                Err(DeliverError::TooManyEvents) => {
                    // More unapplied events for one actor than the protocol can produce: the
                    // runner is broken. Its connection ends; it reconnects and replays.
                    tracing::warn!(actor_id = %actor_id, "runner sent too many events for one actor");
                    self.handle.close(
                        1008,
                        "ws.too_many_events#more lifecycle events than the protocol allows",
                    );
                    return;
                }
            }
        }
        // Replays after a reconnect repeat events already applied; the supervisor filters
        // them by generation and index.
        if !ack.is_empty() {
            self.handle
                .send(ToEnvoy::ToEnvoyAckEvents(ToEnvoyAckEvents {
                    last_event_checkpoints: ack,
                }));
        }
    }

    /// A serverless runner claims the actor it was started for the first time it mentions
    /// it (see `Registry::claim`); its supervisor learns which runner that is.
    fn claim_if_awaited(&self, actor_id: &str, generation: Option<u32>) {
        if !self.gw.envoys.claims_waiting() {
            return;
        }
        if let Some(generation) = self.gw.envoys.claim(&self.handle, actor_id, generation) {
            tracing::info!(%actor_id, generation, "runner claimed a serverless start");
            if let Some(actor) = self.gw.actors.get(actor_id) {
                let _ = actor.send(Msg::Claimed {
                    envoy: self.handle.key.clone(),
                    generation,
                });
            }
        }
    }

    fn dispatch(&mut self, actor_id: String, req: StorageRequest) {
        self.claim_if_awaited(&actor_id, None);
        if self.workers.get(&actor_id).is_some_and(|w| w.is_closed()) {
            self.workers.remove(&actor_id);
        }
        // Workers end when idle; their entries go once the map has doubled since the last
        // sweep, so sweeping costs O(1) per request on average.
        if self.workers.len() >= self.workers_swept_at.saturating_mul(2).max(64) {
            self.workers.retain(|_, w| !w.is_closed());
            self.workers_swept_at = self.workers.len();
        }
        let worker = self.workers.entry(actor_id.clone()).or_insert_with(|| {
            storage::spawn_worker(self.gw.clone(), self.handle.clone(), actor_id)
        });
        if let Err(err) = worker.try_send(req) {
            let req = match err {
                mpsc::error::TrySendError::Full(req) | mpsc::error::TrySendError::Closed(req) => {
                    req
                }
            };
            // Answer at once instead of stalling the whole connection behind one actor.
            self.handle.send(storage::overloaded(req));
        }
    }
}

impl EnvoyHandle {
    /// Ends the connection because of a malformed frame.
    fn send_close(&self, err: &CodecError) {
        tracing::warn!(error = %err, "closing runner connection: invalid packet");
        self.close(1011, format!("ws.invalid_packet#{err}"));
    }
}

async fn on_disconnect(gw: Gateway, handle: Arc<EnvoyHandle>) {
    if !gw.envoys.unregister(&handle) {
        return; // replaced by a newer connection that carries on
    }
    tracing::info!("runner disconnected");
    // A standby that leaves before it was used is gone for its actor at once: it ran nothing.
    if let Some(actor_id) = gw.envoys.standby_for(&handle.key) {
        gw.envoys.forget_standby(&handle.key);
        if let Some(actor) = gw.actors.get(&actor_id) {
            let _ = actor.send(Msg::RunnerLost(handle.key.clone()));
        }
    }
    // A runner that announced its shutdown and then closed will not answer what it still
    // had: its requests end now (hibernatable sockets are held for the next instance)
    // instead of after the lost threshold.
    if handle.stopping.load(Ordering::Relaxed) {
        gw.routes.runner_lost(&handle.key);
    }
    let lost_after =
        Duration::from_millis(u64::try_from(gw.config.envoy.lost_threshold_ms).unwrap_or(0));
    let shutdown = gw.stopping.clone();
    let tasks = gw.tasks.clone();
    tasks.spawn(async move {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(lost_after) => {}
        }
        // None: it came back, and a reconnect of the same process keeps its actors (one of
        // another process already lost them at once).
        if let Some(actors) = gw.envoys.unpark(&handle) {
            lose_actors(&gw, &handle.key, &actors, "runner lost");
        }
    });
}

/// Tells the requests and actors a runner process served that it is gone.
fn lose_actors(gw: &Gateway, envoy_key: &str, actors: &[String], why: &str) {
    tracing::warn!(envoy_key = %envoy_key, actors = actors.len(), "{why}");
    gw.routes.runner_lost(envoy_key);
    for actor_id in actors {
        if let Some(actor) = gw.actors.get(actor_id) {
            let _ = actor.send(Msg::RunnerLost(envoy_key.to_string()));
        }
    }
}
