//! The node's HTTP API (axum). Every error is a JSON body `{"error": ...}` with a 4xx status
//! for bad requests; request bodies are size-limited.
//!
//! | method and path | what |
//! |---|---|
//! | `GET /healthz` | `ok` while the node runs |
//! | `GET /api/v1/status` | node id, engine, height, last hash, view, leader, peers, mempool |
//! | `POST /api/v1/txs[?wait=commit]` | submit one signed transaction (JSON object), many (JSON array), or a canonical-encoded list (`application/octet-stream`); with `wait=commit` and `Accept: application/octet-stream`, the receipts come back canonical-encoded too |
//! | `GET /api/v1/txs/{hash}` | receipt, inclusion proof, block header and certificate |
//! | `GET /api/v1/blocks/{height\|latest}` | a block with its hash and certificate |
//! | `GET /api/v1/state/{chaincode}/{key}` | a state value (`key` as text, or `0x` + hex) |
//! | `GET /metrics` | Prometheus text |

use crate::runtime::{AdmitError, Admitted, CommitWait, Shared, WIRE_KINDS};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use medchain_chaincode::StateView;
use medchain_types::{codec, Hash, Receipt, Transaction};
use serde::Deserialize;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

/// A JSON error response.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

fn not_found(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::NOT_FOUND, msg.into())
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "internal error serving a request");
    ApiError(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("internal error: {e}"),
    )
}

type ApiResult = Result<Response, ApiError>;

/// The router.
/// The OpenAPI 3.1 description of every route (served at `/api/v1/openapi.json`).
pub const OPENAPI: &str = include_str!("openapi.json");

pub fn router(shared: Arc<Shared>) -> Router {
    let body_max = shared.config.api.body_max;
    let slots = Arc::new(tokio::sync::Semaphore::new(shared.config.api.requests_max));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/api/v1/status", get(status))
        .route("/api/v1/txs", post(submit))
        .route("/api/v1/txs/{hash}", get(transaction))
        .route("/api/v1/blocks/{id}", get(block))
        .route("/api/v1/state/{chaincode}/{key}", get(state))
        .route("/metrics", get(metrics))
        .route(
            "/api/v1/openapi.json",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }),
        )
        .merge(crate::ehr_api::routes())
        .merge(crate::ehr_vault::routes())
        .fallback(|| async { not_found("no such endpoint; see /api/v1/status") })
        .method_not_allowed_fallback(|| async {
            ApiError(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this endpoint".into(),
            )
        })
        .layer(DefaultBodyLimit::max(body_max))
        .with_state(shared)
        .layer(axum::middleware::from_fn_with_state(slots, limit_requests))
}

/// Serves a request only while fewer than `api.requests_max` are being served (a response's
/// body included, so streamed downloads count until their last byte); otherwise 429 at once.
async fn limit_requests(
    State(slots): State<Arc<tokio::sync::Semaphore>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Ok(permit) = slots.try_acquire_owned() else {
        return ApiError(
            StatusCode::TOO_MANY_REQUESTS,
            "too many requests in flight on this node; retry shortly".into(),
        )
        .into_response();
    };
    let (parts, body) = next.run(req).await.into_parts();
    Response::from_parts(
        parts,
        axum::body::Body::new(Held {
            inner: body,
            _permit: permit,
        }),
    )
}

/// A response body that holds a request slot until it is done.
struct Held {
    inner: axum::body::Body,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl http_body::Body for Held {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

async fn status(State(s): State<Arc<Shared>>) -> ApiResult {
    let st = s.status.read().expect("status lock").clone();
    let tip = s.ledger.tip();
    let (txs, bytes, held) = {
        let m = s.mempool.lock().expect("mempool lock");
        (m.len(), m.bytes(), m.held().0)
    };
    let name = s
        .genesis
        .validator(&s.me)
        .map(|v| v.name.clone())
        .unwrap_or_default();
    Ok(Json(json!({
        "node_id": s.me,
        "name": name,
        "chain_id": s.genesis.chain_id,
        "engine": s.genesis.engine,
        "height": tip.map_or(0, |t| t.height),
        "last_hash": tip.map(|t| t.hash),
        "state_root": tip.map(|t| t.state_root),
        "view": st.view,
        "leader": st.leader,
        "engine_height": st.height,
        "engine_status": st.extra,
        "engine_counters": st.counters,
        "peers": {
            "connected": s.network.connected_peers(),
            "total": s.network.peers().count(),
        },
        "mempool": { "txs": txs, "bytes": bytes, "held": held },
        "uptime_s": s.started.elapsed().as_secs(),
    }))
    .into_response())
}

#[derive(Debug, Deserialize)]
struct SubmitQuery {
    wait: Option<String>,
}

fn receipt_json(r: &Receipt) -> Value {
    json!({
        "tx_hash": r.tx_hash,
        "height": r.height,
        "index": r.index,
        "status": r.status,
        "response": hex::encode(&r.response),
        "events": r.events,
    })
}

async fn submit(
    State(s): State<Arc<Shared>>,
    q: Result<Query<SubmitQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let body = body.map_err(|e| ApiError(e.status(), e.body_text()))?;
    let Query(q) = q.map_err(|e| bad(e.body_text()))?;
    let wait = match q.wait.as_deref() {
        None => false,
        Some("commit") => true,
        Some(other) => {
            return Err(bad(format!(
                "wait={other:?} is not supported (use wait=commit)"
            )))
        }
    };
    let binary = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/octet-stream"));
    // A client that accepts only the canonical encoding gets its receipts that way (with
    // wait=commit, once committed); every other answer stays JSON.
    let binary_reply = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() == "application/octet-stream");
    let (txs, single): (Vec<Transaction>, bool) = if binary {
        (
            codec::decode(&body).map_err(|e| {
                bad(format!(
                    "body is not a canonical-encoded transaction list: {e}"
                ))
            })?,
            false,
        )
    } else {
        let v: Value =
            serde_json::from_slice(&body).map_err(|e| bad(format!("body is not JSON: {e}")))?;
        if v.is_array() {
            (
                serde_json::from_value(v)
                    .map_err(|e| bad(format!("not a list of transactions: {e}")))?,
                false,
            )
        } else {
            (
                vec![serde_json::from_value(v)
                    .map_err(|e| bad(format!("not a transaction: {e}")))?],
                true,
            )
        }
    };
    if txs.is_empty() {
        return Err(bad("no transactions"));
    }
    let s2 = s.clone();
    let slot = s.admit_slots.acquire().await.map_err(internal)?;
    let admitted = tokio::task::spawn_blocking(move || s2.admit(&txs, wait))
        .await
        .map_err(internal)?;
    drop(slot);
    let Admitted { hashes, read } = admitted.map_err(|e| match e {
        AdmitError::Invalid(..) => ApiError(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
        AdmitError::Full => ApiError(StatusCode::TOO_MANY_REQUESTS, e.to_string()),
    })?;
    if !wait {
        let body = if single {
            json!({ "tx_hash": hashes[0] })
        } else {
            json!({ "accepted": hashes.len(), "tx_hashes": hashes })
        };
        return Ok((StatusCode::ACCEPTED, Json(body)).into_response());
    }
    // However the wait ends (committed, timed out, or the client gone), what this node still
    // holds of these transactions is gossiped: nobody waits for them any more.
    let _release = ReleaseOnDrop(s.clone(), hashes.clone());
    // Registered after admission: a commit in between is caught by wait_for's own checks.
    let s3 = s.clone();
    let hs = hashes.clone();
    let (unique, wait) = tokio::task::spawn_blocking(move || s3.wait_for(&hs, &read))
        .await
        .map_err(internal)?
        .map_err(|e| ApiError(StatusCode::TOO_MANY_REQUESTS, e))?;
    let limit = Duration::from_secs(s.config.api.wait_commit_secs);
    // Done, timed out, or the client gone (this future dropped): whatever is left registered is
    // forgotten when the guard goes.
    let _forget = ForgetOnDrop(s.clone(), unique.clone(), wait.clone());
    let outcome = tokio::time::timeout(limit, wait.all_committed()).await;
    match outcome {
        Ok(()) => {
            let receipts = wait.receipts();
            // `unique` is sorted (see `wait_for`): each requested hash finds its receipt there.
            let slots: Vec<usize> = hashes
                .iter()
                .map(|h| unique.binary_search(h))
                .collect::<Result<_, _>>()
                .map_err(|_| internal("a requested transaction was not waited for"))?;
            if binary_reply {
                let ordered: Vec<Option<&Receipt>> =
                    slots.iter().map(|&i| receipts[i].as_ref()).collect();
                return Ok((
                    [(header::CONTENT_TYPE, "application/octet-stream")],
                    codec::encode(&ordered),
                )
                    .into_response());
            }
            // Each receipt is rendered once and moved into place; a transaction named twice in
            // the request gets a second rendering.
            let mut rendered: Vec<Option<Value>> = receipts
                .iter()
                .map(|r| Some(r.as_ref().map_or(Value::Null, receipt_json)))
                .collect();
            let mut receipts_json: Vec<Value> = slots
                .iter()
                .map(|&i| {
                    rendered[i].take().unwrap_or_else(|| {
                        receipts[i].as_ref().map_or(Value::Null, receipt_json)
                    })
                })
                .collect();
            let body = if single {
                receipts_json.swap_remove(0)
            } else {
                json!({ "receipts": receipts_json })
            };
            Ok(Json(body).into_response())
        }
        Err(_) => Ok((
            StatusCode::ACCEPTED,
            Json(json!({
                "committed": false,
                "tx_hashes": hashes,
                "message": format!("not committed within {} s; poll GET /api/v1/txs/{{hash}}", limit.as_secs()),
            })),
        )
            .into_response()),
    }
}

/// Forgets, when dropped, what is left registered of a request's wait for commits.
struct ForgetOnDrop(Arc<Shared>, Vec<Hash>, Arc<CommitWait>);

impl Drop for ForgetOnDrop {
    fn drop(&mut self) {
        self.0.forget_waiters(&self.1, &self.2);
    }
}

/// Gossips, when dropped, what a PBFT primary still holds of a waiting request's transactions
/// (see `Shared::admit_verified`): committed ones are no longer held, and the others lost the
/// client that waited for them.
struct ReleaseOnDrop(Arc<Shared>, Vec<Hash>);

impl Drop for ReleaseOnDrop {
    fn drop(&mut self) {
        self.0.release_hashes(&self.1);
    }
}

fn parse_hash(s: &str) -> Result<Hash, ApiError> {
    s.parse().map_err(|e: String| bad(e))
}

async fn transaction(
    State(s): State<Arc<Shared>>,
    hash: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let Path(hash) = hash.map_err(|e| bad(e.body_text()))?;
    let hash = parse_hash(&hash)?;
    let rec = s
        .ledger
        .transaction(&hash)
        .map_err(internal)?
        .ok_or_else(|| {
            let pending = s.mempool.lock().expect("mempool lock").contains(&hash);
            not_found(if pending {
                "transaction is pending (in the mempool, not yet committed)"
            } else {
                "no such transaction"
            })
        })?;
    Ok(Json(json!({
        "tx": rec.tx,
        "receipt": receipt_json(&rec.receipt),
        "block_hash": rec.header.hash(),
        "header": rec.header,
        "proof": rec.proof,
        "certificate": rec.certificate,
    }))
    .into_response())
}

async fn block(State(s): State<Arc<Shared>>, id: Result<Path<String>, PathRejection>) -> ApiResult {
    let Path(id) = id.map_err(|e| bad(e.body_text()))?;
    let height = if id == "latest" {
        s.ledger.tip().map_or(0, |t| t.height)
    } else {
        id.parse::<u64>()
            .map_err(|_| bad(format!("{id:?} is neither a height nor \"latest\"")))?
    };
    let b = s
        .ledger
        .block(height)
        .map_err(internal)?
        .ok_or_else(|| not_found(format!("no block at height {height}")))?;
    let cert = s
        .ledger
        .certificate(height)
        .map_err(internal)?
        .unwrap_or_default();
    Ok(Json(json!({
        "hash": b.hash(),
        "header": b.header,
        "tx_hashes": b.tx_hashes(),
        "txs": b.txs,
        "certificate": cert,
    }))
    .into_response())
}

async fn state(
    State(s): State<Arc<Shared>>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult {
    let Path((chaincode, key)) = path.map_err(|e| bad(e.body_text()))?;
    if !s.executor.chaincode_names().any(|n| n == chaincode) {
        return Err(not_found(format!("no chaincode named {chaincode:?}")));
    }
    let raw = match key.strip_prefix("0x") {
        Some(h) => hex::decode(h).map_err(|e| bad(format!("key: bad hex: {e}")))?,
        None => key.as_bytes().to_vec(),
    };
    let value = s
        .ledger
        .view(&chaincode)
        .get(&raw)
        .map_err(internal)?
        .ok_or_else(|| not_found("no value at that key"))?;
    Ok(Json(json!({
        "chaincode": chaincode,
        "key": key,
        "value_hex": hex::encode(&value),
        "value_utf8": std::str::from_utf8(&value).ok(),
    }))
    .into_response())
}

async fn metrics(State(s): State<Arc<Shared>>) -> ApiResult {
    let mut out = String::new();
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

#[cfg(test)]
mod openapi_tests {
    use std::collections::BTreeSet;

    /// `(method, path)` of every `.route("PATH", method(...))` in the router's source files.
    fn routes_in_source() -> BTreeSet<(String, String)> {
        let mut out = BTreeSet::new();
        for src in [
            include_str!("api.rs"),
            include_str!("ehr_api.rs"),
            include_str!("ehr_vault.rs"),
        ] {
            // The router's code only: not the tests' own small routers.
            let src = src.split("#[cfg(test)]").next().unwrap_or(src);
            // Joined into one line, so a route split by rustfmt is still one match.
            let flat: String = src.split_whitespace().collect::<Vec<_>>().join(" ");
            for part in flat.split(".route(").skip(1) {
                // Only string literals that are paths (not this scanner's own text).
                let Some(rest) = part.trim_start().strip_prefix('"') else {
                    continue;
                };
                if !rest.starts_with('/') {
                    continue;
                }
                let Some((path, after)) = rest.split_once('"') else {
                    continue;
                };
                let after = after.trim_start_matches(',').trim_start();
                let method: String = after
                    .chars()
                    .take_while(|c| c.is_ascii_alphabetic())
                    .collect();
                out.insert((method, path.to_owned()));
            }
        }
        out
    }

    #[test]
    fn the_openapi_document_lists_exactly_the_routes() {
        let doc: serde_json::Value = serde_json::from_str(super::OPENAPI).expect("valid JSON");
        assert_eq!(doc["openapi"], "3.1.0");
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("path item") {
                assert!(
                    op["summary"].is_string() && op["responses"].is_object(),
                    "{method} {path} needs a summary and responses"
                );
                documented.insert((method.clone(), path.clone()));
            }
        }
        let routed = routes_in_source();
        assert!(
            routed.len() >= 25,
            "the source scan finds the routes: {routed:?}"
        );
        let undocumented: Vec<_> = routed.difference(&documented).collect();
        let stale: Vec<_> = documented.difference(&routed).collect();
        assert!(
            undocumented.is_empty() && stale.is_empty(),
            "routes missing from openapi.json: {undocumented:?}; documented but not routed: {stale:?}"
        );
    }
}

#[cfg(test)]
mod limit_tests {
    use super::*;

    #[tokio::test]
    async fn requests_beyond_the_limit_get_429_and_a_streamed_body_holds_its_slot() {
        let slots = Arc::new(tokio::sync::Semaphore::new(1));
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
        let rx = Arc::new(std::sync::Mutex::new(Some(rx)));
        let app = Router::new()
            .route(
                "/stream",
                get(move || {
                    let rx = rx.lock().unwrap().take().expect("one download");
                    async move {
                        axum::body::Body::from_stream(futures_util::stream::unfold(
                            rx,
                            |mut rx| async move { rx.recv().await.map(|c| (c, rx)) },
                        ))
                    }
                }),
            )
            .route("/quick", get(|| async { "ok" }))
            .layer(axum::middleware::from_fn_with_state(slots, limit_requests));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let http = reqwest::Client::new();
        let streaming = http
            .get(format!("http://{addr}/stream"))
            .send()
            .await
            .unwrap();
        // The download's headers are out, its body is not: the one slot is taken.
        let r = http
            .get(format!("http://{addr}/quick"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 429);
        assert!(r.text().await.unwrap().contains("too many requests"));
        tx.send(Ok(Bytes::from_static(b"done"))).await.unwrap();
        drop(tx);
        assert_eq!(streaming.bytes().await.unwrap(), "done");
        // The slot comes back once the body is done (the server may take a moment to drop it).
        let mut status = 0;
        for _ in 0..100 {
            status = http
                .get(format!("http://{addr}/quick"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16();
            if status == 200 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(status, 200);
        server.abort();
    }
}
