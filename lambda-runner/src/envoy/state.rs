//! Everything the envoy remembers across connections, as plain data behind one short-held
//! lock: the actor generations it runs with their numbered event history, the command
//! checkpoints it has seen, KV requests awaiting answers, and the outbox the writer drains.
//! No I/O happens here; the connection and the public API call in and act on the results,
//! so every rule is unit-tested without sockets (`tests.rs`).
//!
//! Delivery rules:
//! - Events are numbered from 0 per (actor, generation) and kept until the gateway
//!   acknowledges them. Each connection starts with a replay of everything kept, so the
//!   outbox holds events only for the live connection and drops them when it ends.
//! - Commands are deduplicated by checkpoint index per (actor, generation) and acknowledged
//!   after each batch, duplicates included (a replay means our earlier ack was lost).
//! - KV requests stay in the table until answered, failed or timed out; each connection
//!   (re)sends all of them after init, in the order they were made.
//! - Tunnel messages queue in the outbox across reconnects, up to a bound.

use std::collections::{BTreeMap, HashMap, VecDeque};

use rivulet_wire::envoy::{
    ActorCheckpoint, ActorState, ActorStateStopped, Command, CommandWrapper, Event,
    EventActorStateUpdate, EventWrapper, KvRequestData, KvResponseData, StopActorReason, StopCode,
    ToRivet, ToRivetAckCommands, ToRivetKvRequest, ToRivetTunnelMessage, ToRivetTunnelMessageKind,
};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::error::EnvoyError;
use super::handler::ActorStart;

/// Events kept per generation; past it the oldest are dropped (the gateway acknowledges
/// every 250, so only a gateway that never acknowledges gets here).
pub(crate) const HISTORY_PER_GENERATION: usize = 1024;
/// Stopped generations whose history is kept for replay. Their stop must reach a gateway
/// that restarts before storing it, and the gateway never acknowledges short histories.
pub(crate) const RETIRED_GENERATIONS: usize = 1024;
/// Non-tunnel frames (events, acks, KV requests) the outbox holds before the connection
/// counts as stuck and is replaced; everything in them is regenerated on reconnect.
pub(crate) const QUEUED_CONTROL_FRAMES: usize = 4096;
/// Events per replay frame, so one reconnect never builds an unbounded frame.
pub(crate) const REPLAY_CHUNK: usize = 1024;
/// Commands queued per generation for the handler (a start and a stop in practice).
pub(crate) const LANE_QUEUE: usize = 4;

/// A command for the handler, delivered in order per generation.
#[derive(Debug)]
pub(crate) enum LaneCmd {
    Start(Box<ActorStart>),
    Stop(StopActorReason),
}

/// A generation the caller must start a lane task for.
#[derive(Debug)]
pub(crate) struct NewLane {
    pub actor_id: String,
    pub generation: u32,
    pub rx: mpsc::Receiver<LaneCmd>,
}

/// The connection that has completed init and carries traffic.
#[derive(Debug, Clone)]
pub(crate) struct LiveConn {
    pub id: u64,
    /// Ends the connection (a reconnect follows).
    pub cancel: CancellationToken,
}

/// Configurable bounds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub in_flight_kv: usize,
    pub queued_tunnel: usize,
}

type KvReply = oneshot::Sender<Result<KvResponseData, EnvoyError>>;

struct KvPending {
    seq: u64,
    actor_id: String,
    generation: Option<u32>,
    data: KvRequestData,
    reply: KvReply,
}

#[derive(Debug)]
struct Generation {
    next_event: i64,
    history: VecDeque<EventWrapper>,
    last_command: i64,
    stop_delivered: bool,
    stopped: bool,
    lost: bool,
    lane: Option<mpsc::Sender<LaneCmd>>,
    warned_history_full: bool,
}

impl Generation {
    fn live(&self) -> bool {
        !self.stopped
    }
}

#[derive(Debug)]
enum Out {
    Event(EventWrapper),
    Ack(Vec<ActorCheckpoint>),
    Kv(u32),
    Tunnel(ToRivetTunnelMessage),
    Stopping,
}

/// The envoy's memory; see the module doc.
pub(crate) struct State {
    conn: Option<LiveConn>,
    actors: HashMap<String, BTreeMap<u32, Generation>>,
    retired: VecDeque<(String, u32)>,
    kv: HashMap<u32, KvPending>,
    next_kv_id: u32,
    next_kv_seq: u64,
    outbox: VecDeque<Out>,
    queued_tunnel: usize,
    /// Batches taken by the writer and not yet written.
    writing: usize,
    shutting_down: bool,
    closed: Option<EnvoyError>,
    limits: Limits,
}

impl State {
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            conn: None,
            actors: HashMap::new(),
            retired: VecDeque::new(),
            kv: HashMap::new(),
            next_kv_id: 0,
            next_kv_seq: 0,
            outbox: VecDeque::new(),
            queued_tunnel: 0,
            writing: 0,
            shutting_down: false,
            closed: None,
            limits,
        }
    }

    // === connection ===

    /// A connection completed init: returns the frames it must send first (event replay,
    /// KV requests awaiting answers, `Stopping` if shutting down). Queued tunnel messages
    /// follow from the outbox.
    pub(crate) fn on_connected(&mut self, conn: LiveConn) -> Vec<ToRivet> {
        self.outbox.retain(|o| matches!(o, Out::Tunnel(_)));
        self.conn = Some(conn);
        let mut frames = Vec::new();
        let events = self.unacked_events();
        for chunk in events.chunks(REPLAY_CHUNK) {
            frames.push(ToRivet::ToRivetEvents(chunk.to_vec()));
        }
        let mut ids: Vec<(u64, u32)> = self.kv.iter().map(|(id, p)| (p.seq, *id)).collect();
        ids.sort_unstable();
        for (_, id) in ids {
            if let Some(frame) = self.kv_frame(id) {
                frames.push(frame);
            }
        }
        if self.shutting_down {
            frames.push(ToRivet::ToRivetStopping);
        }
        frames
    }

    /// The connection ended; frames regenerated at the next init are dropped.
    pub(crate) fn on_disconnected(&mut self, conn_id: u64) {
        if self.conn.as_ref().is_some_and(|c| c.id == conn_id) {
            self.conn = None;
            self.outbox.retain(|o| matches!(o, Out::Tunnel(_)));
        }
    }

    /// Whether a connection carries traffic now.
    pub(crate) fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    /// Every event not yet acknowledged, grouped by actor and generation, in order.
    pub(crate) fn unacked_events(&self) -> Vec<EventWrapper> {
        let mut ids: Vec<&String> = self.actors.keys().collect();
        ids.sort();
        let mut out = Vec::new();
        for id in ids {
            if let Some(gens) = self.actors.get(id) {
                for gen in gens.values() {
                    out.extend(gen.history.iter().cloned());
                }
            }
        }
        out
    }

    fn enqueue(&mut self, out: Out) {
        let Some(conn) = &self.conn else {
            return; // regenerated when the next connection starts
        };
        if self.outbox.len() - self.queued_tunnel >= QUEUED_CONTROL_FRAMES {
            tracing::warn!("envoy outbox full, replacing the connection");
            conn.cancel.cancel();
            return;
        }
        self.outbox.push_back(out);
    }

    /// Takes up to `max` frames for the writer; call [`Self::batch_written`] after writing.
    /// Consecutive events travel in one frame.
    pub(crate) fn take_batch(&mut self, max: usize) -> Vec<ToRivet> {
        let mut frames: Vec<ToRivet> = Vec::new();
        while frames.len() < max {
            let Some(out) = self.outbox.pop_front() else {
                break;
            };
            match out {
                Out::Event(event) => {
                    if let Some(ToRivet::ToRivetEvents(events)) = frames.last_mut() {
                        events.push(event);
                    } else {
                        frames.push(ToRivet::ToRivetEvents(vec![event]));
                    }
                }
                Out::Ack(checkpoints) => {
                    frames.push(ToRivet::ToRivetAckCommands(ToRivetAckCommands {
                        last_command_checkpoints: checkpoints,
                    }))
                }
                Out::Kv(id) => {
                    if let Some(frame) = self.kv_frame(id) {
                        frames.push(frame);
                    }
                }
                Out::Tunnel(msg) => {
                    self.queued_tunnel -= 1;
                    frames.push(ToRivet::ToRivetTunnelMessage(msg));
                }
                Out::Stopping => frames.push(ToRivet::ToRivetStopping),
            }
        }
        if !frames.is_empty() {
            self.writing += 1;
        }
        frames
    }

    /// The writer finished (or abandoned) a batch from [`Self::take_batch`].
    pub(crate) fn batch_written(&mut self) {
        self.writing = self.writing.saturating_sub(1);
    }

    /// Whether everything queued has been written.
    pub(crate) fn is_flushed(&self) -> bool {
        self.outbox.is_empty() && self.writing == 0
    }

    // === actors, commands and events ===

    /// Applies a batch of commands: returns lanes to start for new generations. The batch
    /// is acknowledged with the highest index per (actor, generation).
    pub(crate) fn on_commands(&mut self, commands: Vec<CommandWrapper>) -> Vec<NewLane> {
        let mut acks: BTreeMap<(String, u32), i64> = BTreeMap::new();
        let mut lanes = Vec::new();
        let mut stopped_unknown = Vec::new();
        for cmd in commands {
            let cp = cmd.checkpoint;
            let actor_id = cp.actor_id.to_string();
            let highest = acks
                .entry((actor_id.clone(), cp.generation))
                .or_insert(cp.index);
            *highest = (*highest).max(cp.index);
            match cmd.inner {
                Command::CommandStartActor(start) => {
                    let gens = self.actors.entry(actor_id.clone()).or_default();
                    if let Some(gen) = gens.get_mut(&cp.generation) {
                        gen.last_command = gen.last_command.max(cp.index);
                        tracing::debug!(actor_id = %actor_id, generation = cp.generation, "duplicate start ignored");
                        continue;
                    }
                    if gens.keys().next_back().is_some_and(|&g| g > cp.generation) {
                        tracing::warn!(actor_id = %actor_id, generation = cp.generation, "start of an older generation ignored");
                        continue;
                    }
                    let (tx, rx) = mpsc::channel(LANE_QUEUE);
                    let start = ActorStart::from_wire(actor_id.clone(), cp.generation, start);
                    // A fresh channel always has room.
                    let _ = tx.try_send(LaneCmd::Start(Box::new(start)));
                    gens.insert(
                        cp.generation,
                        Generation {
                            next_event: 0,
                            history: VecDeque::new(),
                            last_command: cp.index,
                            stop_delivered: false,
                            stopped: false,
                            lost: false,
                            lane: Some(tx),
                            warned_history_full: false,
                        },
                    );
                    lanes.push(NewLane {
                        actor_id,
                        generation: cp.generation,
                        rx,
                    });
                }
                Command::CommandStopActor(stop) => {
                    let Some(gen) = self
                        .actors
                        .get_mut(&actor_id)
                        .and_then(|g| g.get_mut(&cp.generation))
                    else {
                        // Not running here (this process started after it was placed, or
                        // it ended long ago): say it is stopped, so the gateway never waits
                        // on an instance that does not exist.
                        tracing::info!(actor_id = %actor_id, generation = cp.generation, "stop for a generation not running here; reporting it stopped");
                        stopped_unknown.push((actor_id, cp.generation, cp.index));
                        continue;
                    };
                    if cp.index <= gen.last_command {
                        continue; // replayed after a reconnect
                    }
                    gen.last_command = cp.index;
                    if gen.stopped || gen.stop_delivered {
                        continue;
                    }
                    gen.stop_delivered = true;
                    if let Some(lane) = &gen.lane {
                        if lane.try_send(LaneCmd::Stop(stop.reason)).is_err() {
                            tracing::warn!(actor_id = %actor_id, "actor command queue full, stop dropped");
                        }
                    }
                }
            }
        }
        for (actor_id, generation, index) in stopped_unknown {
            self.actors.entry(actor_id.clone()).or_default().insert(
                generation,
                Generation {
                    next_event: 0,
                    history: VecDeque::new(),
                    last_command: index,
                    stop_delivered: true,
                    stopped: false,
                    lost: false,
                    lane: None,
                    warned_history_full: false,
                },
            );
            let stopped = Event::EventActorStateUpdate(EventActorStateUpdate {
                state: ActorState::ActorStateStopped(ActorStateStopped {
                    code: StopCode::Ok,
                    message: None,
                }),
            });
            // Only fails once the client is closed, when nothing is sent anyway.
            let _ = self.record_event(&actor_id, generation, stopped);
        }
        if !acks.is_empty() {
            let checkpoints = acks
                .into_iter()
                .map(|((actor_id, generation), index)| ActorCheckpoint {
                    actor_id: actor_id.into(),
                    generation,
                    index,
                })
                .collect();
            self.enqueue(Out::Ack(checkpoints));
        }
        lanes
    }

    /// Records an event of a live generation, numbers it and queues it. A `Stopped` state
    /// ends the generation.
    pub(crate) fn record_event(
        &mut self,
        actor_id: &str,
        generation: u32,
        inner: Event,
    ) -> Result<(), EnvoyError> {
        if let Some(err) = &self.closed {
            return Err(err.clone());
        }
        let stops = matches!(
            &inner,
            Event::EventActorStateUpdate(EventActorStateUpdate {
                state: ActorState::ActorStateStopped(_)
            })
        );
        let gen = self
            .actors
            .get_mut(actor_id)
            .and_then(|g| g.get_mut(&generation))
            .filter(|g| g.live())
            .ok_or_else(|| EnvoyError::ActorNotRunning {
                actor_id: actor_id.to_string(),
                generation,
            })?;
        let event = EventWrapper {
            checkpoint: ActorCheckpoint {
                actor_id: actor_id.to_string().into(),
                generation,
                index: gen.next_event,
            },
            inner,
        };
        gen.next_event += 1;
        if gen.history.len() >= HISTORY_PER_GENERATION {
            gen.history.pop_front();
            if !gen.warned_history_full {
                gen.warned_history_full = true;
                tracing::warn!(actor_id = %actor_id, generation, "gateway does not acknowledge events; dropping the oldest");
            }
        }
        gen.history.push_back(event.clone());
        if stops {
            gen.stopped = true;
            gen.lane = None;
            self.retire(actor_id.to_string(), generation);
        }
        self.enqueue(Out::Event(event));
        Ok(())
    }

    fn retire(&mut self, actor_id: String, generation: u32) {
        self.retired.push_back((actor_id, generation));
        while self.retired.len() > RETIRED_GENERATIONS {
            let Some((id, g)) = self.retired.pop_front() else {
                break;
            };
            if let Some(gens) = self.actors.get_mut(&id) {
                gens.remove(&g);
                if gens.is_empty() {
                    self.actors.remove(&id);
                }
            }
        }
    }

    /// Drops acknowledged events.
    pub(crate) fn on_ack_events(&mut self, checkpoints: &[ActorCheckpoint]) {
        for cp in checkpoints {
            let Some(gen) = self
                .actors
                .get_mut(cp.actor_id.as_str())
                .and_then(|g| g.get_mut(&cp.generation))
            else {
                continue;
            };
            while gen
                .history
                .front()
                .is_some_and(|e| e.checkpoint.index <= cp.index)
            {
                gen.history.pop_front();
            }
        }
    }

    /// Whether a generation runs here (started, not stopped).
    pub(crate) fn is_live(&self, actor_id: &str, generation: Option<u32>) -> bool {
        self.actors
            .get(actor_id)
            .is_some_and(|gens| match generation {
                Some(g) => gens.get(&g).is_some_and(Generation::live),
                None => gens.values().any(Generation::live),
            })
    }

    /// Generations started and not yet reported stopped.
    pub(crate) fn live_count(&self) -> usize {
        self.actors
            .values()
            .flat_map(|g| g.values())
            .filter(|g| g.live())
            .count()
    }

    /// The gateway has given up on this envoy: every live generation gets a `Lost` stop
    /// (unless it already got a stop) and awaiting KV requests fail.
    pub(crate) fn declare_lost(&mut self) {
        self.stop_all(StopActorReason::Lost);
        for gens in self.actors.values_mut() {
            for gen in gens.values_mut().filter(|g| g.live()) {
                gen.lost = true;
            }
        }
        self.fail_all_kv(&EnvoyError::Lost);
    }

    /// Delivers a stop with `reason` to every live generation that has not had one.
    pub(crate) fn stop_all(&mut self, reason: StopActorReason) {
        for (actor_id, gens) in &mut self.actors {
            for gen in gens.values_mut() {
                if !gen.live() || gen.stop_delivered {
                    continue;
                }
                gen.stop_delivered = true;
                if let Some(lane) = &gen.lane {
                    if lane.try_send(LaneCmd::Stop(reason)).is_err() {
                        tracing::warn!(actor_id = %actor_id, "actor command queue full, stop dropped");
                    }
                }
            }
        }
    }

    /// Starts a graceful shutdown: `Stopping` goes out now or after the next init.
    pub(crate) fn begin_shutdown(&mut self) {
        if !self.shutting_down {
            self.shutting_down = true;
            self.enqueue(Out::Stopping);
        }
    }

    /// The client is finished: every later call fails with `err`, and so do awaiting KV
    /// requests.
    pub(crate) fn close(&mut self, err: EnvoyError) {
        if self.closed.is_none() {
            self.fail_all_kv(&err);
            self.closed = Some(err);
        }
    }

    /// Why the client is finished, if it is.
    pub(crate) fn closed(&self) -> Option<&EnvoyError> {
        self.closed.as_ref()
    }

    // === tunnel ===

    /// Queues an outgoing tunnel message (kept across reconnects). The message that ends a
    /// request or socket (a response, an abort, a close) is always taken: dropping it would
    /// leave the client waiting on nothing, and there is at most one per open request, so
    /// the open requests bound them. Other messages count against the queue's bound.
    pub(crate) fn push_tunnel(&mut self, msg: ToRivetTunnelMessage) -> Result<(), EnvoyError> {
        if let Some(err) = &self.closed {
            return Err(err.clone());
        }
        let ends_request = matches!(
            msg.message_kind,
            ToRivetTunnelMessageKind::ToRivetResponseStart(_)
                | ToRivetTunnelMessageKind::ToRivetResponseAbort(_)
                | ToRivetTunnelMessageKind::ToRivetWebSocketClose(_)
        );
        if !ends_request && self.queued_tunnel >= self.limits.queued_tunnel {
            return Err(EnvoyError::Overloaded("outgoing tunnel queue is full"));
        }
        self.queued_tunnel += 1;
        self.outbox.push_back(Out::Tunnel(msg));
        Ok(())
    }

    // === KV ===

    /// Registers a KV request; it is sent now if connected, else after the next init.
    pub(crate) fn kv_insert(
        &mut self,
        actor_id: &str,
        generation: Option<u32>,
        data: KvRequestData,
        reply: KvReply,
    ) -> Result<u32, EnvoyError> {
        if let Some(err) = &self.closed {
            return Err(err.clone());
        }
        if let Some(g) = generation {
            if !self.kv_allowed(actor_id, g) {
                return Err(EnvoyError::ActorNotRunning {
                    actor_id: actor_id.to_string(),
                    generation: g,
                });
            }
        }
        if self.kv.len() >= self.limits.in_flight_kv {
            return Err(EnvoyError::Overloaded("too many KV requests in flight"));
        }
        let mut id = self.next_kv_id;
        while self.kv.contains_key(&id) {
            id = id.wrapping_add(1);
        }
        self.next_kv_id = id.wrapping_add(1);
        let seq = self.next_kv_seq;
        self.next_kv_seq += 1;
        self.kv.insert(
            id,
            KvPending {
                seq,
                actor_id: actor_id.to_string(),
                generation,
                data,
                reply,
            },
        );
        self.enqueue(Out::Kv(id));
        Ok(id)
    }

    fn kv_allowed(&self, actor_id: &str, generation: u32) -> bool {
        self.actors
            .get(actor_id)
            .and_then(|g| g.get(&generation))
            .is_some_and(|g| g.live() && !g.lost)
    }

    /// The frame for a pending request, or `None` (and the request fails) if its
    /// generation has stopped since: a stopped generation must not touch storage.
    fn kv_frame(&mut self, id: u32) -> Option<ToRivet> {
        let pending = self.kv.get(&id)?;
        if let Some(g) = pending.generation {
            if !self.kv_allowed(&pending.actor_id, g) {
                let pending = self.kv.remove(&id)?;
                let _ = pending.reply.send(Err(EnvoyError::ActorNotRunning {
                    actor_id: pending.actor_id,
                    generation: g,
                }));
                return None;
            }
        }
        Some(ToRivet::ToRivetKvRequest(ToRivetKvRequest {
            actor_id: pending.actor_id.clone().into(),
            request_id: id,
            data: pending.data.clone(),
        }))
    }

    /// Delivers the gateway's answer.
    pub(crate) fn kv_complete(&mut self, id: u32, data: KvResponseData) -> bool {
        let Some(pending) = self.kv.remove(&id) else {
            return false;
        };
        let result = match data {
            KvResponseData::KvErrorResponse(e) => Err(EnvoyError::Kv(e.message.to_string())),
            other => Ok(other),
        };
        let _ = pending.reply.send(result);
        true
    }

    /// Forgets a request whose caller stopped waiting.
    pub(crate) fn kv_forget(&mut self, id: u32) {
        self.kv.remove(&id);
    }

    fn fail_all_kv(&mut self, err: &EnvoyError) {
        for (_, pending) in self.kv.drain() {
            let _ = pending.reply.send(Err(err.clone()));
        }
    }

    /// KV requests awaiting an answer.
    pub(crate) fn kv_in_flight(&self) -> usize {
        self.kv.len()
    }
}

#[cfg(test)]
mod tests;
