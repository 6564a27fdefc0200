//! Public reads of the chain (queries, hospitals, document anchors, verification) and the
//! unsigned-transaction helper. None of these returns personal data: the chain holds none.

use crate::state::EhrNode;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use axum::Json;
use medchain_app::{ApiError, ApiResult};
use medchain_ehr::{Ehr, EhrQuery, Verdict};
use medchain_types::Hash;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

/// `POST /query`: a JSON `EhrQuery`, answered as JSON.
pub async fn query(State(node): State<Arc<EhrNode>>, body: Bytes) -> ApiResult {
    let q: EhrQuery = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("not an EhrQuery: {e}")))?;
    Ok(Json(node.query(&q)?).into_response())
}

#[derive(Deserialize)]
pub struct Search {
    #[serde(default)]
    search: String,
}

/// `GET /hospitals?search=TEXT`: approved hospitals whose name or treatments match.
pub async fn hospitals(
    State(node): State<Arc<EhrNode>>,
    q: Result<Query<Search>, QueryRejection>,
) -> ApiResult {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let answer = node.query(&EhrQuery::Hospitals {
        search: q.search,
        pending: false,
    })?;
    Ok(Json(answer).into_response())
}

/// `GET /docs/{id}`: a document's anchor.
pub async fn document(State(node): State<Arc<EhrNode>>, Path(id): Path<String>) -> ApiResult {
    let v = node
        .ehr
        .query_json(node.view().as_ref(), &EhrQuery::Document(id.clone()))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    if v.is_null() {
        return Err(ApiError::not_found(format!("no document {id:?}")));
    }
    Ok(Json(v).into_response())
}

#[derive(Deserialize)]
pub struct DocParam {
    doc: Option<String>,
}

/// `GET /verify/{sha256}[?doc=ID]`: authentic, tampered or unknown.
pub async fn verify(
    State(node): State<Arc<EhrNode>>,
    Path(sha): Path<String>,
    q: Result<Query<DocParam>, QueryRejection>,
) -> ApiResult {
    let sha256: Hash = sha
        .parse()
        .map_err(|_| ApiError::bad_request("the path must be a SHA-256 in 64 hex characters"))?;
    let Query(DocParam { doc: doc_id }) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let verdict = Ehr::verify(node.view().as_ref(), &sha256, doc_id.as_deref())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(match verdict {
        Verdict::Authentic(d) => json!({
            "verdict": "authentic",
            "sha256": sha256,
            "document": *d,
            "erased": d.erased_ms.is_some(),
            "superseded_by": d.superseded_by,
        }),
        Verdict::Tampered {
            anchored,
            presented,
        } => json!({
            "verdict": "tampered",
            "sha256": presented,
            "document": *anchored,
        }),
        Verdict::Unknown => json!({
            "verdict": "unknown",
            "sha256": sha256,
            "doc": doc_id,
        }),
    })
    .into_response())
}

#[derive(Deserialize)]
struct UnsignedTx {
    sender: medchain_types::PublicKey,
    op: medchain_ehr::EhrOp,
    nonce: Option<u64>,
}

/// `POST /tx/unsigned`: an `ehr` transaction for `sender` to sign, and the exact bytes to sign
/// (for clients without the canonical encoding, such as the portal: it signs them with
/// WebCrypto and posts the transaction to `/api/v1/txs`). The signature is checked on
/// submission as for any other.
pub async fn unsigned_tx(State(node): State<Arc<EhrNode>>, body: Bytes) -> ApiResult {
    let u: UnsignedTx = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!("expected {{\"sender\", \"op\", \"nonce\"?}}: {e}"))
    })?;
    let tx = medchain_types::Transaction {
        chain_id: node.host.chain_id().to_owned(),
        chaincode: medchain_ehr::chaincode::NAME.to_owned(),
        payload: Ehr::payload(&u.op),
        sender: u.sender,
        // At most 2^53 - 1, so that JavaScript numbers carry it exactly.
        nonce: u
            .nonce
            .unwrap_or_else(|| rand::RngCore::next_u64(&mut rand::rngs::OsRng) >> 11),
        signature: medchain_types::Signature([0; 64]),
    };
    Ok(Json(json!({
        "tx": tx,
        "signing_bytes": hex::encode(tx.signing_bytes()),
    }))
    .into_response())
}
