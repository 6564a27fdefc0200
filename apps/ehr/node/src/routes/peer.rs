//! Routes for the other members only (signed with their node keys): `GET /peer/blobs/{blob}`
//! and `GET /peer/keys/{id}`, how a node that lacks a record gets it.

use crate::keystore;
use crate::state::EhrNode;
use crate::stream;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use medchain_app::{ApiError, ApiResult};
use medchain_ehr::records;
use medchain_types::Hash;
use std::sync::Arc;

/// Refuses a caller that is not a member.
fn peer_only(node: &EhrNode, headers: &HeaderMap, path: &str) -> Result<(), ApiError> {
    node.peer_caller(headers, path).map(|_| ())
}

/// `GET /peer/blobs/{blob}`: a blob, for a member that lacks it.
pub async fn blob(
    State(node): State<Arc<EhrNode>>,
    Path(blob): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    peer_only(&node, &headers, &format!("/api/v1/ehr/peer/blobs/{blob}"))?;
    let blob: Hash = blob
        .parse()
        .map_err(|_| ApiError::bad_request("the blob address is 64 hex characters"))?;
    if node.is_erased(&blob.to_hex()) {
        return Err(ApiError::gone("erased"));
    }
    stream::blob_response(&node.vault()?, blob)
}

/// `GET /peer/keys/{id}`: a record's wrapped keys, for a member that lacks them.
pub async fn keys(
    State(node): State<Arc<EhrNode>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    peer_only(&node, &headers, &format!("/api/v1/ehr/peer/keys/{id}"))?;
    if !records::is_valid(&id) {
        return Err(ApiError::bad_request("not a document or profile id"));
    }
    if node.is_erased(&id) {
        return Err(ApiError::gone("erased"));
    }
    let keys = keystore::raw(&node, &id)
        .map_err(|_| ApiError::not_found("no keys for that document here"))?;
    Ok((StatusCode::OK, [("content-type", "application/json")], keys).into_response())
}
