//! The gateway's metrics: one Prometheus registry per gateway process, the families it
//! records as things happen, and the text exposition `GET /metrics` serves (`api::metrics`
//! adds the values it reads at scrape time: backend store requests, open sockets, runners).
//!
//! Labels stay bounded: phases, pool names, invocation outcomes, store calls and error codes,
//! never actor ids or keys. One registry per gateway (not the process-wide default) so that
//! several gateways in one process, as the tests run them, count apart.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

/// Latency buckets from 0.5 ms to 30 s: a store call or a warm wake sits at the low end, a
/// cold serverless start at the high end.
const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Every family the gateway records.
pub struct Metrics {
    registry: Registry,
    /// `rivulet_actors{phase}`: actors held in memory on this node, by the phase they show.
    pub actors: IntGaugeVec,
    /// `rivulet_actor_wakes_total`: sleeping actors started again (their instance running).
    pub wakes: IntCounter,
    /// `rivulet_actor_wake_seconds`: from the wake's claim to the instance running.
    pub wake_seconds: Histogram,
    /// `rivulet_migrations_total{pool}`: actors moved to a new instance while running.
    pub migrations: IntCounterVec,
    /// `rivulet_migration_pause_seconds{pool}`: from the stop of the old instance to the new
    /// one running; no request reaches the actor in between.
    pub migration_pause: HistogramVec,
    /// `rivulet_serverless_invocations_total{pool,outcome}`: requests the gateway started,
    /// counted as each ends.
    pub invocations: IntCounterVec,
    /// `rivulet_serverless_request_seconds_total{pool}`: time requests were open, summed as
    /// each ends (what a per-second platform bills, as the gateway sees it).
    pub request_seconds: prometheus::CounterVec,
    /// Client sockets held while their actor has no instance (asleep, moving or lost).
    pub hibernating_sockets: IntGauge,
    /// Client sockets idle with their codec and buffers put down.
    pub parked_sockets: IntGauge,
    /// `rivulet_replay_buffered_bytes`: client messages kept until their actor acknowledges
    /// them, to be resent after a sleep or a move.
    pub replay_bytes: IntGauge,
    /// `rivulet_store_calls_total{call,result}`: store calls by method and result.
    pub store_calls: IntCounterVec,
    /// `rivulet_store_call_seconds{call}`: store call latency by method.
    pub store_seconds: HistogramVec,
    /// `rivulet_errors_total{code}`: errors answered to clients and runners, by `group.code`.
    pub errors: IntCounterVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every family registered.
    pub fn new() -> Self {
        let registry = Registry::new();
        let m = Metrics {
            actors: IntGaugeVec::new(
                Opts::new(
                    "rivulet_actors",
                    "Actors held in memory on this node, by phase.",
                ),
                &["phase"],
            )
            .expect("valid family"),
            wakes: IntCounter::new(
                "rivulet_actor_wakes_total",
                "Sleeping actors started again.",
            )
            .expect("valid family"),
            wake_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "rivulet_actor_wake_seconds",
                    "Time from a wake's claim to the actor's instance running.",
                )
                .buckets(SECONDS_BUCKETS.to_vec()),
            )
            .expect("valid family"),
            migrations: IntCounterVec::new(
                Opts::new(
                    "rivulet_migrations_total",
                    "Running actors moved to a new instance (a serverless request's deadline, a runner going away).",
                ),
                &["pool"],
            )
            .expect("valid family"),
            migration_pause: HistogramVec::new(
                HistogramOpts::new(
                    "rivulet_migration_pause_seconds",
                    "Time from stopping the old instance to the new one running, during which requests wait.",
                )
                .buckets(SECONDS_BUCKETS.to_vec()),
                &["pool"],
            )
            .expect("valid family"),
            invocations: IntCounterVec::new(
                Opts::new(
                    "rivulet_serverless_invocations_total",
                    "Serverless requests the gateway started, by how they ended.",
                ),
                &["pool", "outcome"],
            )
            .expect("valid family"),
            request_seconds: prometheus::CounterVec::new(
                Opts::new(
                    "rivulet_serverless_request_seconds_total",
                    "Seconds serverless requests were open, summed as each ends.",
                ),
                &["pool"],
            )
            .expect("valid family"),
            hibernating_sockets: IntGauge::new(
                "rivulet_client_sockets_hibernating",
                "Client WebSockets held while their actor has no instance.",
            )
            .expect("valid family"),
            parked_sockets: IntGauge::new(
                "rivulet_client_sockets_parked",
                "Client WebSockets idle with their codec and buffers put down.",
            )
            .expect("valid family"),
            replay_bytes: IntGauge::new(
                "rivulet_replay_buffered_bytes",
                "Bytes of client messages kept until their actor acknowledges them.",
            )
            .expect("valid family"),
            store_calls: IntCounterVec::new(
                Opts::new(
                    "rivulet_store_calls_total",
                    "Store calls by method and result (ok, error, timeout).",
                ),
                &["call", "result"],
            )
            .expect("valid family"),
            store_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "rivulet_store_call_seconds",
                    "Store call latency by method.",
                )
                .buckets(SECONDS_BUCKETS.to_vec()),
                &["call"],
            )
            .expect("valid family"),
            errors: IntCounterVec::new(
                Opts::new(
                    "rivulet_errors_total",
                    "Errors answered to clients (HTTP and WebSocket closes), by group.code.",
                ),
                &["code"],
            )
            .expect("valid family"),
            registry,
        };
        // The socket gauge is rendered with the open count (`api::metrics`), not here.
        let families: [Box<dyn prometheus::core::Collector>; 11] = [
            Box::new(m.actors.clone()),
            Box::new(m.wakes.clone()),
            Box::new(m.wake_seconds.clone()),
            Box::new(m.migrations.clone()),
            Box::new(m.migration_pause.clone()),
            Box::new(m.invocations.clone()),
            Box::new(m.request_seconds.clone()),
            Box::new(m.replay_bytes.clone()),
            Box::new(m.store_calls.clone()),
            Box::new(m.store_seconds.clone()),
            Box::new(m.errors.clone()),
        ];
        for family in families {
            m.registry.register(family).expect("names are unique");
        }
        m
    }

    /// The registered families in the Prometheus text format.
    pub fn render(&self) -> String {
        let encoder = prometheus::TextEncoder::new();
        encoder
            .encode_to_string(&self.registry.gather())
            .unwrap_or_default()
    }

    /// Counts an error answered with `group.code`.
    pub fn error(&self, group: &str, code: &str) {
        self.errors
            .with_label_values(&[&format!("{group}.{code}")])
            .inc();
    }
}

/// Keeps one actor counted under the phase it shows; moves it between phases as its status
/// changes, and uncounts it when dropped (the supervisor ended or unloaded).
pub struct PhaseCount {
    gauge: IntGaugeVec,
    current: Option<&'static str>,
}

impl PhaseCount {
    /// Counts nothing yet.
    pub fn new(gauge: IntGaugeVec) -> Self {
        Self {
            gauge,
            current: None,
        }
    }

    /// Counts the actor under `phase` (a no-op when it already is).
    pub fn set(&mut self, phase: &'static str) {
        if self.current == Some(phase) {
            return;
        }
        if let Some(old) = self.current {
            self.gauge.with_label_values(&[old]).dec();
        }
        self.gauge.with_label_values(&[phase]).inc();
        self.current = Some(phase);
    }
}

impl Drop for PhaseCount {
    fn drop(&mut self) {
        if let Some(old) = self.current.take() {
            self.gauge.with_label_values(&[old]).dec();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_phase_count_moves_and_leaves() {
        let m = Metrics::new();
        let mut a = PhaseCount::new(m.actors.clone());
        let mut b = PhaseCount::new(m.actors.clone());
        a.set("sleeping");
        b.set("sleeping");
        a.set("running");
        a.set("running");
        let get = |p: &str| m.actors.with_label_values(&[p]).get();
        assert_eq!((get("sleeping"), get("running")), (1, 1));
        drop(a);
        assert_eq!((get("sleeping"), get("running")), (1, 0));
        drop(b);
        assert_eq!(get("sleeping"), 0);
        let text = m.render();
        assert!(
            text.contains("rivulet_actors{phase=\"sleeping\"} 0"),
            "{text}"
        );
    }
}
