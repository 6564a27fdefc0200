//! `GET /metrics`: Prometheus text.

use crate::runtime::{Shared, WIRE_KINDS};
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use medchain_app::ApiResult;
use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

/// `GET /metrics`.
pub async fn metrics(State(s): State<Arc<Shared>>) -> ApiResult {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP medchain_build_info The build and chain this node runs (the value is always 1).\n\
         # TYPE medchain_build_info gauge\n\
         medchain_build_info{{version=\"{}\",commit=\"{}\",engine=\"{}\",chain_id=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION"),
        crate::BUILD_COMMIT,
        s.genesis.engine,
        s.genesis.chain_id,
    );
    let st = s.status.read().expect("status lock").clone();
    let m = &s.metrics;
    let mut gauge = |name: &str, help: &str, kind: &str, value: u64| {
        let _ = writeln!(
            out,
            "# HELP medchain_{name} {help}\n# TYPE medchain_{name} {kind}\nmedchain_{name} {value}"
        );
    };
    gauge(
        "height",
        "Height of the last committed block.",
        "gauge",
        s.ledger.tip().map_or(0, |t| t.height),
    );
    gauge("view", "Consensus view (PBFT) or epoch.", "gauge", st.view);
    // The node process's memory (Linux), for the document benchmark's peak-memory figure.
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = |field: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    gauge(
        "process_resident_bytes",
        "Resident memory of the node process.",
        "gauge",
        kib("VmRSS:") * 1024,
    );
    gauge(
        "process_peak_resident_bytes",
        "Peak resident memory of the node process since it started.",
        "gauge",
        kib("VmHWM:") * 1024,
    );
    gauge(
        "pow_hashes_total",
        "Proof-of-work hashes tried by this node's miners.",
        "counter",
        s.miner.hashes.load(Relaxed),
    );
    gauge(
        "commits_total",
        "Blocks committed by this node.",
        "counter",
        m.commits.load(Relaxed),
    );
    gauge(
        "txs_committed_total",
        "Transactions committed with success.",
        "counter",
        m.txs_committed.load(Relaxed),
    );
    gauge(
        "txs_failed_total",
        "Transactions committed with a failed or duplicate receipt.",
        "counter",
        m.txs_failed.load(Relaxed),
    );
    gauge(
        "txs_admitted_total",
        "Client transactions admitted to the mempool.",
        "counter",
        m.txs_admitted.load(Relaxed),
    );
    gauge(
        "txs_refused_total",
        "Client transactions refused at admission.",
        "counter",
        m.txs_refused.load(Relaxed),
    );
    gauge(
        "signatures_verified_total",
        "Transaction signatures checked by this node (from clients, gossip and proposals).",
        "counter",
        m.signatures_verified.load(Relaxed),
    );
    let (mempool_txs, mempool_held) = {
        let m = s.mempool.lock().expect("mempool lock");
        (m.len() as u64, m.held().0 as u64)
    };
    gauge(
        "mempool_txs",
        "Transactions waiting in the mempool.",
        "gauge",
        mempool_txs,
    );
    gauge(
        "mempool_held_txs",
        "Client transactions in the mempool that this PBFT primary keeps from gossip (it proposes them itself).",
        "gauge",
        mempool_held,
    );
    gauge(
        "txs_held_released_total",
        "Held client transactions gossiped after all (this node stopped being the primary, none of its blocks was committed for a quarter of the view-change timeout, or their clients stopped waiting).",
        "counter",
        m.txs_held_released.load(Relaxed),
    );
    gauge(
        "ready",
        "1 while /readyz answers 200 (a quorum reachable, caught up), else 0.",
        "gauge",
        u64::from(super::chain::readiness(&s).state == "ready"),
    );
    gauge(
        "peers_connected",
        "Peers connected now.",
        "gauge",
        s.network.connected_peers().len() as u64,
    );
    gauge(
        "view_changes_total",
        "View changes started by this node.",
        "counter",
        st.counters.get("view_changes").copied().unwrap_or(0),
    );
    gauge(
        "commit_seconds_total",
        "Time spent executing and writing blocks.",
        "counter",
        m.commit_ms.load(Relaxed) / 1000,
    );
    gauge(
        "send_refused_total",
        "Messages the transport refused (queue full).",
        "counter",
        m.send_refused.load(Relaxed),
    );
    let _ = writeln!(out, "# HELP medchain_messages_total Messages by direction and kind.\n# TYPE medchain_messages_total counter");
    for (i, kind) in WIRE_KINDS.iter().enumerate() {
        let _ = writeln!(
            out,
            "medchain_messages_total{{direction=\"in\",kind=\"{kind}\"}} {}",
            m.messages_in[i].load(Relaxed)
        );
        let _ = writeln!(
            out,
            "medchain_messages_total{{direction=\"out\",kind=\"{kind}\"}} {}",
            m.messages_out[i].load(Relaxed)
        );
    }
    let _ = writeln!(out, "# HELP medchain_message_bytes_total Message bytes by direction and kind.\n# TYPE medchain_message_bytes_total counter");
    for (i, kind) in WIRE_KINDS.iter().enumerate() {
        let _ = writeln!(
            out,
            "medchain_message_bytes_total{{direction=\"in\",kind=\"{kind}\"}} {}",
            m.bytes_in[i].load(Relaxed)
        );
        let _ = writeln!(
            out,
            "medchain_message_bytes_total{{direction=\"out\",kind=\"{kind}\"}} {}",
            m.bytes_out[i].load(Relaxed)
        );
    }
    let net = s.network.metrics();
    let _ = writeln!(out, "# HELP medchain_peer_bytes_total Transport payload bytes by peer and direction.\n# TYPE medchain_peer_bytes_total counter");
    for (peer, p) in &net.peers {
        let _ = writeln!(
            out,
            "medchain_peer_bytes_total{{peer=\"{peer}\",direction=\"out\"}} {}",
            p.bytes_sent
        );
        let _ = writeln!(
            out,
            "medchain_peer_bytes_total{{peer=\"{peer}\",direction=\"in\"}} {}",
            p.bytes_received
        );
    }
    use medchain_network::PathStats;
    // QUIC's view of each open connection's path (counts restart with every connection).
    let paths: Vec<_> = net
        .peers
        .iter()
        .filter_map(|(peer, p)| Some((peer, p.path?)))
        .collect();
    type Family = (
        &'static str,
        &'static str,
        &'static str,
        fn(&PathStats) -> String,
    );
    let families: [Family; 8] = [
        (
            "rtt_seconds",
            "gauge",
            "Smoothed QUIC round-trip time.",
            |q| (q.rtt_us as f64 / 1e6).to_string(),
        ),
        (
            "mtu_bytes",
            "gauge",
            "Largest UDP payload found by MTU discovery.",
            |q| q.mtu.to_string(),
        ),
        (
            "congestion_window_bytes",
            "gauge",
            "QUIC congestion window.",
            |q| q.cwnd.to_string(),
        ),
        (
            "congestion_events_total",
            "counter",
            "Congestion controller reactions to loss.",
            |q| q.congestion_events.to_string(),
        ),
        ("packets_sent_total", "counter", "QUIC packets sent.", |q| {
            q.sent_packets.to_string()
        }),
        (
            "packets_lost_total",
            "counter",
            "QUIC packets declared lost.",
            |q| q.lost_packets.to_string(),
        ),
        (
            "datagrams_sent_total",
            "counter",
            "UDP datagrams sent.",
            |q| q.datagrams_sent.to_string(),
        ),
        (
            "datagrams_received_total",
            "counter",
            "UDP datagrams received.",
            |q| q.datagrams_received.to_string(),
        ),
    ];
    for (name, kind, help, value) in families {
        // A counter covers the connection open now: it restarts at 0 when a new one replaces it.
        let scope = if kind == "counter" {
            " Current connection; restarts at 0 with a new one."
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "# HELP medchain_peer_{name} {help}{scope}\n# TYPE medchain_peer_{name} {kind}"
        );
        for (peer, q) in &paths {
            let _ = writeln!(out, "medchain_peer_{name}{{peer=\"{peer}\"}} {}", value(q));
        }
    }
    let _ = writeln!(out, "# HELP medchain_transport_rejects_total Refused handshakes, frames and connections by reason.\n# TYPE medchain_transport_rejects_total counter");
    for (reason, n) in &net.rejects {
        let _ = writeln!(
            out,
            "medchain_transport_rejects_total{{reason=\"{reason}\"}} {n}"
        );
    }
    let _ = writeln!(out, "# HELP medchain_engine_events_total Engine counters.\n# TYPE medchain_engine_events_total counter");
    for (name, n) in &st.counters {
        let _ = writeln!(out, "medchain_engine_events_total{{event=\"{name}\"}} {n}");
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response())
}
