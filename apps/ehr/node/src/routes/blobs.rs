//! Storing ciphertext blobs: `PUT /blobs/{blob}` (the address known in advance) and `POST
//! /blobs` (the node computes it while the sender encrypts), streamed to disk, durable before the
//! answer.

use crate::state::EhrNode;
use crate::stream::{self, BodyReader, BLOB_MAX};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use medchain_app::{ApiError, ApiResult};
use medchain_ehr::{EhrQuery, VaultError};
use medchain_types::{Hash, PublicKey};
use serde_json::json;
use std::sync::Arc;

/// Largest blob accepted from anyone else (an encrypted profile).
const PROFILE_BLOB_MAX: u64 = 1 << 20;

/// `PUT /blobs/{blob}` (signed): a blob whose bytes must hash (BLAKE3) to `{blob}`.
pub async fn put_blob(
    State(node): State<Arc<EhrNode>>,
    Path(blob): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let path = format!("/api/v1/ehr/blobs/{blob}");
    let caller = node.caller(&headers, &Method::PUT, &path, None)?;
    let blob: Hash = blob
        .parse()
        .map_err(|_| ApiError::bad_request("the blob address is 64 hex characters"))?;
    receive(&node, &caller, Some(blob), body).await
}

/// `POST /blobs` (signed): a blob whose address the sender learns only at the end (it is
/// encrypted while it is sent); the node computes it, and answers it.
pub async fn post_blob(
    State(node): State<Arc<EhrNode>>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let caller = node.caller(&headers, &Method::POST, "/api/v1/ehr/blobs", None)?;
    receive(&node, &caller, None, body).await
}

/// Streams a request body into the vault: checked against `expected` when the address is
/// known, refused if it is an erased blob, durable before the answer.
async fn receive(
    node: &EhrNode,
    caller: &PublicKey,
    expected: Option<Hash>,
    body: Body,
) -> ApiResult {
    // Staff store documents and cases before anchoring them. Anyone else stores only its own
    // profile, small, and only once the chain anchors it (`RegisterPatient` first), so that
    // keys nobody registered cannot fill the disk.
    let limit = if node.is_staff(caller) {
        BLOB_MAX
    } else {
        let mine = format!("profile/{}", caller.to_hex());
        let anchored = expected.and_then(|b| {
            node.query(&EhrQuery::BlobRecord(b))
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
        });
        if anchored.as_deref() != Some(mine.as_str()) {
            return Err(ApiError::forbidden(
                "only staff store blobs before they are anchored: register the profile's address \
                 on the chain first (RegisterPatient), then upload it to /api/v1/ehr/blobs/{blob}",
            ));
        }
        PROFILE_BLOB_MAX
    };
    let vault = node.vault()?;
    if let Some(blob) = expected {
        if node.is_erased(&blob.to_hex()) {
            return Err(ApiError::gone(
                "that blob was erased and is never stored again",
            ));
        }
        if vault.contains(&blob) {
            return Ok((
                StatusCode::OK,
                Json(json!({ "blob": blob, "stored": "already" })),
            )
                .into_response());
        }
    }
    let erased_dir = node.erased_dir();
    let (reader, tx) = BodyReader::new(limit);
    let writer = tokio::task::spawn_blocking(move || match expected {
        Some(blob) => vault.import(reader, &blob).map(|n| (blob, n)),
        None => vault.import_new(reader, |blob| {
            if erased_dir.join(blob.to_hex()).exists() {
                Err(VaultError::Io(std::io::Error::other(
                    "that blob was erased and is never stored again",
                )))
            } else {
                Ok(())
            }
        }),
    });
    stream::feed(body, tx).await;
    match writer.await.map_err(ApiError::internal)? {
        Ok((blob, size)) => Ok((
            StatusCode::CREATED,
            Json(json!({ "blob": blob, "bytes": size })),
        )
            .into_response()),
        Err(VaultError::Corrupted(_)) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "the bytes do not hash to the blob address; nothing was stored",
        )),
        Err(e) => Err(ApiError::bad_request(e.to_string())),
    }
}
