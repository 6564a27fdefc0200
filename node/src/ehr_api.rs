//! The health-record app's HTTP routes under `/api/v1/ehr/` (queries and verification; writes
//! are signed `ehr` transactions sent to `POST /api/v1/txs`).
//!
//! | route | answer |
//! |---|---|
//! | `POST /api/v1/ehr/query` | a JSON `EhrQuery` (for example `{"Hospitals":{"search":"cardio","pending":false}}`), answered as JSON |
//! | `GET /api/v1/ehr/hospitals?search=TEXT` | approved hospitals whose name or treatments match |
//! | `GET /api/v1/ehr/docs/{id}` | a document's anchor (hashes, kind, issuer, patient pseudonym, time) |
//! | `GET /api/v1/ehr/verify/{sha256}[?doc=ID]` | `{"verdict": "authentic" \| "tampered" \| "unknown", "document": ...}` |
//!
//! None of these returns personal data: the chain holds none.

use crate::runtime::Shared;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use medchain_ehr::{EhrQuery, Verdict};
use medchain_types::Hash;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

fn err(code: StatusCode, msg: impl Into<String>) -> Response {
    (code, Json(json!({ "error": msg.into() }))).into_response()
}

/// The routes (merged into the node's router).
pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/api/v1/ehr/query", post(query))
        .route("/api/v1/ehr/hospitals", get(hospitals))
        .route("/api/v1/ehr/docs/{id}", get(document))
        .route("/api/v1/ehr/verify/{sha256}", get(verify))
        .route("/api/v1/ehr/tx/unsigned", post(unsigned_tx))
        .route("/portal", get(|| async { Redirect::permanent("/portal/") }))
        .route("/portal/", get(|| portal_asset(Path("index.html".into()))))
        .route("/portal/{file}", get(portal_asset))
        .route("/", get(|| async { Redirect::temporary("/portal/") }))
}

async fn portal_asset(Path(file): Path<String>) -> Response {
    match medchain_ehr::portal::asset(&file) {
        Some((content_type, body)) => (
            [
                (header::CONTENT_TYPE, content_type),
                (header::CACHE_CONTROL, "no-cache"),
                (
                    header::CONTENT_SECURITY_POLICY,
                    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self' blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
                ),
                (
                    header::X_CONTENT_TYPE_OPTIONS,
                    "nosniff",
                ),
                (header::REFERRER_POLICY, "no-referrer"),
            ],
            body,
        )
            .into_response(),
        None => err(StatusCode::NOT_FOUND, format!("no portal file {file:?}")),
    }
}

#[derive(Deserialize)]
struct UnsignedTx {
    sender: medchain_types::PublicKey,
    op: medchain_ehr::EhrOp,
    nonce: Option<u64>,
}

/// An `ehr` transaction for `sender` to sign, and the exact bytes to sign (for clients without
/// the canonical encoding, such as the portal: it signs them with WebCrypto and posts the
/// transaction to `/api/v1/txs`). The signature is checked on submission as for any other.
async fn unsigned_tx(State(s): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    let u: UnsignedTx = match serde_json::from_slice(&body) {
        Ok(u) => u,
        Err(e) => {
            return err(
                StatusCode::BAD_REQUEST,
                format!("expected {{\"sender\", \"op\", \"nonce\"?}}: {e}"),
            )
        }
    };
    let tx = medchain_types::Transaction {
        chain_id: s.genesis.chain_id.clone(),
        chaincode: medchain_ehr::chaincode::NAME.to_owned(),
        payload: medchain_ehr::Ehr::payload(&u.op),
        sender: u.sender,
        // At most 2^53 - 1, so that JavaScript numbers carry it exactly.
        nonce: u
            .nonce
            .unwrap_or_else(|| rand::RngCore::next_u64(&mut rand::rngs::OsRng) >> 11),
        signature: medchain_types::Signature([0; 64]),
    };
    Json(json!({
        "tx": tx,
        "signing_bytes": hex::encode(tx.signing_bytes()),
    }))
    .into_response()
}

fn run(s: &Shared, q: &EhrQuery) -> Response {
    let cc = medchain_ehr::Ehr::new(s.genesis.ehr.admins.iter().copied());
    match cc.query_json(&s.ledger.view(medchain_ehr::chaincode::NAME), q) {
        Ok(v) => Json(v).into_response(),
        Err(medchain_chaincode::ChaincodeError::Storage(e)) => {
            err(StatusCode::INTERNAL_SERVER_ERROR, format!("storage: {e}"))
        }
        Err(e) => err(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

async fn query(State(s): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    match serde_json::from_slice::<EhrQuery>(&body) {
        Ok(q) => run(&s, &q),
        Err(e) => err(StatusCode::BAD_REQUEST, format!("not an EhrQuery: {e}")),
    }
}

#[derive(Deserialize)]
struct Search {
    #[serde(default)]
    search: String,
}

async fn hospitals(
    State(s): State<Arc<Shared>>,
    q: Result<Query<Search>, QueryRejection>,
) -> Response {
    let search = match q {
        Ok(Query(q)) => q.search,
        Err(e) => return err(StatusCode::BAD_REQUEST, e.body_text()),
    };
    run(
        &s,
        &EhrQuery::Hospitals {
            search,
            pending: false,
        },
    )
}

async fn document(State(s): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let cc = medchain_ehr::Ehr::new(s.genesis.ehr.admins.iter().copied());
    match cc.query_json(
        &s.ledger.view(medchain_ehr::chaincode::NAME),
        &EhrQuery::Document(id.clone()),
    ) {
        Ok(Value::Null) => err(StatusCode::NOT_FOUND, format!("no document {id:?}")),
        Ok(v) => Json(v).into_response(),
        Err(e) => err(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

#[derive(Deserialize)]
struct DocParam {
    doc: Option<String>,
}

async fn verify(
    State(s): State<Arc<Shared>>,
    Path(sha): Path<String>,
    q: Result<Query<DocParam>, QueryRejection>,
) -> Response {
    let Ok(sha256) = sha.parse::<Hash>() else {
        return err(
            StatusCode::BAD_REQUEST,
            "the path must be a SHA-256 in 64 hex characters",
        );
    };
    let doc_id = match q {
        Ok(Query(p)) => p.doc,
        Err(e) => return err(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let view = s.ledger.view(medchain_ehr::chaincode::NAME);
    match medchain_ehr::Ehr::verify(&view, &sha256, doc_id.as_deref()) {
        Ok(Verdict::Authentic(d)) => Json(json!({
            "verdict": "authentic",
            "sha256": sha256,
            "document": *d,
            "erased": d.erased_ms.is_some(),
            "superseded_by": d.superseded_by,
        }))
        .into_response(),
        Ok(Verdict::Tampered {
            anchored,
            presented,
        }) => Json(json!({
            "verdict": "tampered",
            "sha256": presented,
            "document": *anchored,
        }))
        .into_response(),
        Ok(Verdict::Unknown) => Json(json!({
            "verdict": "unknown",
            "sha256": sha256,
            "doc": doc_id,
        }))
        .into_response(),
        Err(e) => err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
