//! A case's wrapped keys and ciphertext: `PUT /cases/{patient}/{case}/keys` (its author, its
//! hospital or the patient), `GET .../key` and `.../blob` (a reader with a cases grant who logged
//! the read).

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
use medchain_ehr::chaincode::CaseRecord;
use medchain_ehr::{records, EhrQuery};
use medchain_types::PublicKey;
use serde_json::json;
use std::sync::Arc;

/// The patient and the case `case_id` recorded for it.
fn case_record(
    node: &EhrNode,
    patient: &str,
    case_id: &str,
) -> Result<(PublicKey, CaseRecord), ApiError> {
    let p: PublicKey = patient
        .parse()
        .map_err(|_| ApiError::bad_request("the patient is 64 hex characters"))?;
    let c: Option<CaseRecord> = node.query_as(&EhrQuery::Case {
        patient: p,
        case_id: case_id.to_owned(),
    })?;
    c.map(|c| (p, c))
        .ok_or_else(|| ApiError::not_found(format!("no case {case_id:?} of that patient")))
}

/// `PUT /cases/{patient}/{case}/keys` (signed, body covered): the case key wrapped for readers.
pub async fn put_keys(
    State(node): State<Arc<EhrNode>>,
    Path((patient, case_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let path = format!("/api/v1/ehr/cases/{patient}/{case_id}/keys");
    let (caller, body) = node
        .caller_with_body(&headers, &Method::PUT, &path, body, keystore::KEYS_BODY_MAX)
        .await?;
    let (p, c) = case_record(&node, &patient, &case_id)?;
    if caller != c.author && caller != c.hospital && caller != p {
        return Err(ApiError::forbidden(
            "only the case's author, its hospital or the patient stores its keys",
        ));
    }
    let keys = keystore::parse_keys(&body)?;
    let n = keystore::merge(
        &node,
        &records::case_id(&p, &case_id),
        keys,
        &p,
        &caller,
        &[],
    )?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "case": case_id, "keys": n })),
    )
        .into_response())
}

/// The signed caller of `GET /cases/{patient}/{case}/{what}`, the patient and the case, if the
/// caller may read the case now (access and audit checked).
fn reader(
    node: &EhrNode,
    headers: &HeaderMap,
    patient: &str,
    case_id: &str,
    what: &str,
) -> Result<(PublicKey, PublicKey, CaseRecord), ApiError> {
    let path = format!("/api/v1/ehr/cases/{patient}/{case_id}/{what}");
    let reader = node.caller(headers, &Method::GET, &path, None)?;
    let (p, c) = case_record(node, patient, case_id)?;
    access::may_read_object(node, &reader, &p, &format!("case/{case_id}"))?;
    Ok((reader, p, c))
}

/// `GET /cases/{patient}/{case}/key` (signed): the caller's wrapped case key.
pub async fn get_key(
    State(node): State<Arc<EhrNode>>,
    Path((patient, case_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult {
    let (reader, p, _) = reader(&node, &headers, &patient, &case_id, "key")?;
    let key = fetch::key_for(&node, &records::case_id(&p, &case_id), &reader).await?;
    Ok(Json(key).into_response())
}

/// `GET /cases/{patient}/{case}/blob` (signed): the encrypted case, streamed.
pub async fn get_blob(
    State(node): State<Arc<EhrNode>>,
    Path((patient, case_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult {
    let (_, _, c) = reader(&node, &headers, &patient, &case_id, "blob")?;
    fetch::serve_blob(&node, c.blob, "the case").await
}
