//! Reads of the chain (queries, hospitals, document anchors, verification) and the
//! unsigned-transaction helper. Queries about people are answered to their parties only (a
//! signed query; see `Ehr::query_for`); anyone may search hospitals and check whether a file is
//! anchored, by whom and when, without learning whose it is.

use super::QUERY_BODY_MAX;
use crate::state::{read_body, EhrNode};
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method};
use axum::response::IntoResponse;
use axum::Json;
use medchain_app::signed::{SignedHeaders, HEADER_KEY};
use medchain_app::{ApiError, ApiResult};
use medchain_ehr::chaincode::strip_patient;
use medchain_ehr::{Ehr, EhrQuery, Verdict};
use medchain_types::Hash;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

/// `POST /query`: a JSON `EhrQuery`, answered as JSON to whoever may see it: anonymously for
/// the public ones, otherwise signed (the signature covering the body) by a party.
pub async fn query(State(node): State<Arc<EhrNode>>, headers: HeaderMap, body: Body) -> ApiResult {
    // The signed headers are checked for form before the body is read.
    let signed = match headers.contains_key(HEADER_KEY) {
        true => Some(SignedHeaders::parse(&headers)?),
        false => None,
    };
    let body = read_body(body, QUERY_BODY_MAX).await?;
    let q: EhrQuery = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("not an EhrQuery: {e}")))?;
    if let EhrQuery::Hospitals { pending: false, .. } = q {
        node.hospital_index_caught_up().await;
    }
    let answer = match signed {
        None => node.query_for(None, &q)?,
        Some(signed) => {
            // Answered (or refused) before the nonce is recorded: only parties take room.
            let mut answer = None;
            node.check_signed(
                &signed,
                &Method::POST,
                "/api/v1/ehr/query",
                Some(&body),
                |k| {
                    node.has_role(k)?;
                    answer = Some(node.query_for(Some(k), &q)?);
                    Ok(())
                },
            )?;
            answer.ok_or_else(|| ApiError::internal("a checked query without its answer"))?
        }
    };
    Ok(Json(answer).into_response())
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
    node.hospital_index_caught_up().await;
    let answer = node.query(&EhrQuery::Hospitals {
        search: q.search,
        pending: false,
    })?;
    Ok(Json(answer).into_response())
}

/// `GET /docs/{id}`: a document's anchor; its patient's pseudonym only for a signed request
/// from a party (the patient, the issuer or its hospital, a reader its grants cover, a
/// share-link holder).
pub async fn document(
    State(node): State<Arc<EhrNode>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    let q = EhrQuery::Document(id.clone());
    let path = format!("/api/v1/ehr/docs/{id}");
    let caller = node.optional_caller(&headers, &Method::GET, &path, None, |k| {
        node.admit(k, &path)
    })?;
    let v = node.query_for(caller.as_ref(), &q)?;
    if v.is_null() {
        return Err(ApiError::not_found(format!("no document {id:?}")));
    }
    Ok(Json(v).into_response())
}

#[derive(Deserialize)]
pub struct DocParam {
    doc: Option<String>,
}

/// `GET /verify/{sha256}[?doc=ID]`: authentic, tampered or unknown, with the anchor (who
/// anchored it and when), never the patient's pseudonym.
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
    let mut answer = match verdict {
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
    };
    // Whose document it is stays with its parties.
    strip_patient(&mut answer);
    Ok(Json(answer).into_response())
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
