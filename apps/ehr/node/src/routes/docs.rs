//! A document's wrapped keys and ciphertext: `PUT /docs/{id}/keys` (its issuer or patient),
//! `GET /docs/{id}/key` and `GET /docs/{id}/blob` (a reader with access who logged the read).

use crate::access;
use crate::fetch;
use crate::keystore;
use crate::state::EhrNode;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use medchain_app::{ApiError, ApiResult};
use medchain_ehr::chaincode::{DocumentAnchor, ShareRecord};
use medchain_ehr::EhrQuery;
use medchain_types::PublicKey;
use serde_json::json;
use std::sync::Arc;

/// `PUT /docs/{id}/keys` (signed, body covered): the document key wrapped for readers.
pub async fn put_keys(
    State(node): State<Arc<EhrNode>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let path = format!("/api/v1/ehr/docs/{id}/keys");
    let (caller, body) = node
        .caller_with_body(&headers, &Method::PUT, &path, body, keystore::KEYS_BODY_MAX)
        .await?;
    let d = node.anchor(&id)?;
    if d.issuer != caller && d.patient != caller {
        return Err(ApiError::forbidden(
            "only the document's issuer or its patient stores its keys",
        ));
    }
    let keys = keystore::parse_keys(&body)?;
    // Keys of share links that were revoked or have expired make room for new readers.
    let now = medchain_app::now_ms();
    let dead_links: Vec<PublicKey> = node
        .query_as::<Vec<ShareRecord>>(&EhrQuery::Shares(id.clone()))
        .unwrap_or_default()
        .into_iter()
        .filter(|l| l.revoked_ms.is_some() || l.expires_ms <= now)
        .map(|l| l.holder)
        .collect();
    let n = keystore::merge(&node, &id, keys, &d.patient, &caller, &dead_links)?;
    Ok((StatusCode::CREATED, Json(json!({ "doc": id, "keys": n }))).into_response())
}

/// The signed caller of `GET /docs/{id}/{what}` and the document's anchor, if the caller may
/// read the document now (access and audit checked).
fn reader(
    node: &EhrNode,
    headers: &HeaderMap,
    id: &str,
    what: &str,
) -> Result<(PublicKey, DocumentAnchor), ApiError> {
    let path = format!("/api/v1/ehr/docs/{id}/{what}");
    let reader = node.caller(headers, &Method::GET, &path, None)?;
    let d = node.anchor(id)?;
    access::may_read_document(node, &reader, &d)?;
    Ok((reader, d))
}

/// `GET /docs/{id}/key` (signed): the caller's wrapped key.
pub async fn get_key(
    State(node): State<Arc<EhrNode>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    let (reader, _) = reader(&node, &headers, &id, "key")?;
    Ok(Json(fetch::key_for(&node, &id, &reader).await?).into_response())
}

/// `GET /docs/{id}/blob` (signed): the ciphertext, streamed.
pub async fn get_blob(
    State(node): State<Arc<EhrNode>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    let (_, d) = reader(&node, &headers, &id, "blob")?;
    fetch::serve_blob(&node, d.blob, "the blob").await
}
