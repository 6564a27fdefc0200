//! The chain and the node: `GET /api/v1/status`, `/api/v1/txs/{hash}`, `/api/v1/blocks/{id}`,
//! `/api/v1/state/{chaincode}/{key}`. What a private chaincode's transactions carry, and its
//! state, are not served here (see `Chaincode::private`).

use crate::api::txs::receipt_json;
use crate::runtime::Shared;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use medchain_app::{ApiError, ApiResult};
use medchain_chaincode::StateView;
use medchain_types::{Hash, Transaction};
use serde_json::{json, Value};
use std::sync::Arc;

/// `GET /api/v1/status`.
pub async fn status(State(s): State<Arc<Shared>>) -> ApiResult {
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
        "genesis_hash": s.genesis.block().hash(),
        "engine": s.genesis.engine,
        "height": tip.map_or(0, |t| t.height),
        "last_hash": tip.map(|t| t.hash),
        "state_root": tip.map(|t| t.state_root),
        "view": st.view,
        "leader": st.leader,
        "engine_height": st.height,
        "leads": st.leads,
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

/// Whether a node is ready to serve clients (see [`ready`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readiness {
    /// `ready`, `connecting` (no quorum of validators reachable) or `catching up`.
    pub state: &'static str,
    /// Validators reachable, this node among them.
    pub reachable: usize,
    /// Validators needed for a quorum.
    pub quorum: usize,
    /// This node's height.
    pub height: u64,
    /// The highest height its peers' block responses showed.
    pub seen: u64,
}

/// The node's readiness now.
pub fn readiness(s: &Shared) -> Readiness {
    let quorum = s.genesis.validator_set().map_or(1, |v| v.quorum());
    let reachable = s.network.connected_peers().len() + 1;
    let height = s.ledger.tip().map_or(0, |t| t.height);
    let seen = s.chain_seen.load(std::sync::atomic::Ordering::SeqCst);
    let state = if reachable < quorum {
        "connecting"
    } else if height < seen {
        "catching up"
    } else {
        "ready"
    };
    Readiness {
        state,
        reachable,
        quorum,
        height,
        seen,
    }
}

/// `GET /readyz`: 200 once this node is connected to a quorum of the validators (itself among
/// them) and holds every block its peers' block responses showed the chain has; 503 with the
/// reason until then. For load balancers and orchestrators (outside the request caps, as
/// `/healthz`).
pub async fn ready(State(s): State<Arc<Shared>>) -> Response {
    let r = readiness(&s);
    let code = if r.state == "ready" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "ready": code == StatusCode::OK,
        "state": r.state,
        "validators_reachable": r.reachable,
        "quorum": r.quorum,
        "height": r.height,
        "height_seen": r.seen,
    });
    (code, Json(body)).into_response()
}

fn parse_hash(s: &str) -> Result<Hash, ApiError> {
    s.parse().map_err(|e: String| ApiError::bad_request(e))
}

/// A transaction of a private chaincode (see `Chaincode::private`) as the raw routes show it:
/// its chaincode only. Its hash is in the block's list, and its inclusion proof checks against
/// the header; its sender, payload, and receipt's response and events stay with the app.
fn redacted(tx: &Transaction) -> Value {
    json!({ "chaincode": tx.chaincode, "redacted": true })
}

/// `GET /api/v1/txs/{hash}`: the transaction with everything needed to check it (for a
/// private chaincode's, the proof of its hash only; see [`redacted`]).
pub async fn transaction(
    State(s): State<Arc<Shared>>,
    hash: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let Path(hash) = hash.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let hash = parse_hash(&hash)?;
    let rec = s
        .ledger
        .transaction(&hash)
        .map_err(ApiError::internal)?
        .ok_or_else(|| {
            let pending = s.mempool.lock().expect("mempool lock").contains(&hash);
            ApiError::not_found(if pending {
                "transaction is pending (in the mempool, not yet committed)"
            } else {
                "no such transaction"
            })
        })?;
    let private = s.executor.is_private(&rec.tx.chaincode);
    let (tx, receipt) = if private {
        (
            redacted(&rec.tx),
            json!({
                "tx_hash": rec.receipt.tx_hash,
                "height": rec.receipt.height,
                "index": rec.receipt.index,
                "status": rec.receipt.status,
            }),
        )
    } else {
        (json!(rec.tx), receipt_json(&rec.receipt))
    };
    Ok(Json(json!({
        "tx": tx,
        "receipt": receipt,
        "block_hash": rec.header.hash(),
        "header": rec.header,
        "proof": rec.proof,
        "certificate": rec.certificate,
    }))
    .into_response())
}

/// `GET /api/v1/blocks/{height|latest}`.
pub async fn block(
    State(s): State<Arc<Shared>>,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let Path(id) = id.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let height = if id == "latest" {
        s.ledger.tip().map_or(0, |t| t.height)
    } else {
        id.parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!("{id:?} is neither a height nor \"latest\""))
        })?
    };
    let b = s
        .ledger
        .block(height)
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found(format!("no block at height {height}")))?;
    let cert = s
        .ledger
        .certificate(height)
        .map_err(ApiError::internal)?
        .unwrap_or_default();
    Ok(Json(json!({
        "hash": b.hash(),
        "header": b.header,
        "tx_hashes": b.tx_hashes(),
        "txs": b.txs.iter().map(|tx| if s.executor.is_private(&tx.chaincode) {
            redacted(tx)
        } else {
            json!(tx)
        }).collect::<Vec<_>>(),
        "certificate": cert,
    }))
    .into_response())
}

/// `GET /api/v1/state/{chaincode}/{key}`.
pub async fn state(
    State(s): State<Arc<Shared>>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult {
    let Path((chaincode, key)) = path.map_err(|e| ApiError::bad_request(e.body_text()))?;
    if !s.executor.chaincode_names().any(|n| n == chaincode) {
        return Err(ApiError::not_found(format!(
            "no chaincode named {chaincode:?}"
        )));
    }
    if s.executor.is_private(&chaincode) {
        return Err(ApiError::forbidden(format!(
            "the {chaincode} chaincode's state concerns people: its app's routes answer, to those \
             entitled"
        )));
    }
    let raw = match key.strip_prefix("0x") {
        Some(h) => {
            hex::decode(h).map_err(|e| ApiError::bad_request(format!("key: bad hex: {e}")))?
        }
        None => key.as_bytes().to_vec(),
    };
    let value = s
        .ledger
        .view(&chaincode)
        .get(&raw)
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("no value at that key"))?;
    Ok(Json(json!({
        "chaincode": chaincode,
        "key": key,
        "value_hex": hex::encode(&value),
        "value_utf8": std::str::from_utf8(&value).ok(),
    }))
    .into_response())
}
