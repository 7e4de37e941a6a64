//! `GET /metrics`: the gateway's families in the Prometheus text format. The ones recorded as
//! things happen come from the registry in `crate::metrics`; the ones read at scrape time
//! (backend store requests, open sockets, runners, loaded actors) are written here. Labels stay
//! bounded (no actor ids).

use std::fmt::Write;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::state::Gateway;

/// The exposition.
pub async fn metrics(State(gw): State<Gateway>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        render(&gw),
    )
}

fn render(gw: &Gateway) -> String {
    let mut out = gw.metrics.render();
    let max = gw.config.gateway.max_client_sockets;
    let open = max.saturating_sub(gw.client_sockets.available_permits());
    let _ = writeln!(
        out,
        "# HELP rivulet_client_sockets Client WebSockets on this node: open (all), hibernating (held while their actor has no instance), and parked (idle, codec and buffers put down)."
    );
    let _ = writeln!(out, "# TYPE rivulet_client_sockets gauge");
    let _ = writeln!(out, "rivulet_client_sockets{{state=\"open\"}} {open}");
    let _ = writeln!(
        out,
        "rivulet_client_sockets{{state=\"hibernating\"}} {}",
        gw.metrics.hibernating_sockets.get()
    );
    let _ = writeln!(
        out,
        "rivulet_client_sockets{{state=\"parked\"}} {}",
        gw.metrics.parked_sockets.get()
    );
    let _ = writeln!(
        out,
        "# HELP rivulet_store_requests_total Requests sent to the store (DynamoDB: per operation, retries included; embedded: read and write transactions)."
    );
    let _ = writeln!(out, "# TYPE rivulet_store_requests_total counter");
    for (kind, count) in gw.store.request_counts().snapshot() {
        let _ = writeln!(
            out,
            "rivulet_store_requests_total{{operation=\"{kind}\"}} {count}"
        );
    }
    let gauges = [
        (
            "rivulet_actors_loaded",
            "Actor supervisors in memory on this node.",
            gw.actors.len(),
        ),
        (
            "rivulet_runners_connected",
            "Runner (envoy) connections to this node.",
            gw.envoys.list().len(),
        ),
        (
            "rivulet_alarms_in_memory",
            "Alarms of unloaded actors this node fires from memory.",
            gw.alarms.len(),
        ),
        (
            "rivulet_tunnel_requests",
            "Client requests and sockets in flight through the tunnel.",
            gw.routes.len(),
        ),
    ];
    for (name, help, value) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        let _ = writeln!(out, "{name} {value}");
    }
    out
}
