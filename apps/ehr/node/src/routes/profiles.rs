//! A patient's encrypted profile: `PUT /profiles/{patient}/keys` (the patient), `GET
//! /profiles/{patient}/key` and `.../blob` (the patient, or a reader with a profile grant who
//! logged the read).

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
use medchain_ehr::{records, EhrQuery};
use medchain_types::{Hash, PublicKey};
use serde_json::json;
use std::sync::Arc;

/// The patient named in a path, and the address of its registered profile.
fn registered_profile(node: &EhrNode, patient: &str) -> Result<(PublicKey, Hash), ApiError> {
    let p: PublicKey = patient
        .parse()
        .map_err(|_| ApiError::bad_request("the patient is 64 hex characters"))?;
    let v = node.query(&EhrQuery::Patient(p))?;
    let blob: Option<Hash> = serde_json::from_value(v["profile_blob"].clone())
        .ok()
        .flatten();
    blob.map(|b| (p, b))
        .ok_or_else(|| ApiError::not_found("no registered profile for that patient"))
}

/// `PUT /profiles/{patient}/keys` (signed, body covered): the profile key wrapped for the
/// patient and the hospitals it shares with.
pub async fn put_keys(
    State(node): State<Arc<EhrNode>>,
    Path(patient): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let path = format!("/api/v1/ehr/profiles/{patient}/keys");
    let (caller, body) = node
        .caller_with_body(&headers, &Method::PUT, &path, body, keystore::KEYS_BODY_MAX)
        .await?;
    let (p, _) = registered_profile(&node, &patient)?;
    if caller != p {
        return Err(ApiError::forbidden(
            "only the patient stores its profile keys",
        ));
    }
    let keys = keystore::parse_keys(&body)?;
    let n = keystore::merge(&node, &records::profile_id(&p), keys, &p, &caller, &[])?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "patient": p, "keys": n })),
    )
        .into_response())
}

/// The signed caller of `GET /profiles/{patient}/{what}`, the patient and its profile blob, if
/// the caller may read the profile now (access and audit checked).
fn reader(
    node: &EhrNode,
    headers: &HeaderMap,
    patient: &str,
    what: &str,
) -> Result<(PublicKey, PublicKey, Hash), ApiError> {
    let path = format!("/api/v1/ehr/profiles/{patient}/{what}");
    let reader = node.caller(headers, &Method::GET, &path, None)?;
    let (p, blob) = registered_profile(node, patient)?;
    access::may_read_object(node, &reader, &p, "profile")?;
    Ok((reader, p, blob))
}

/// `GET /profiles/{patient}/key` (signed): the caller's wrapped profile key.
pub async fn get_key(
    State(node): State<Arc<EhrNode>>,
    Path(patient): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    let (reader, p, _) = reader(&node, &headers, &patient, "key")?;
    let key = fetch::key_for(&node, &records::profile_id(&p), &reader).await?;
    Ok(Json(key).into_response())
}

/// `GET /profiles/{patient}/blob` (signed): the encrypted profile, streamed.
pub async fn get_blob(
    State(node): State<Arc<EhrNode>>,
    Path(patient): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    let (_, _, blob) = reader(&node, &headers, &patient, "blob")?;
    fetch::serve_blob(&node, blob, "the profile").await
}
