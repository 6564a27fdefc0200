//! `POST /api/v1/txs[?wait=commit]`: signed transactions in (JSON or canonical encoding),
//! hashes or receipts out.

use crate::runtime::{AdmitError, Admitted, Shared};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use medchain_app::{ApiError, ApiResult};
use medchain_types::{codec, Receipt, Transaction};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Deserialize)]
pub struct SubmitQuery {
    wait: Option<String>,
}

/// A receipt as JSON (the response bytes in hex).
pub fn receipt_json(r: &Receipt) -> Value {
    json!({
        "tx_hash": r.tx_hash,
        "height": r.height,
        "index": r.index,
        "status": r.status,
        "response": hex::encode(&r.response),
        "events": r.events,
    })
}

/// The transactions of a request body: a canonical-encoded list (`application/octet-stream`), a
/// JSON array, or one JSON object (`single`).
fn parse_body(body: &[u8], binary: bool) -> Result<(Vec<Transaction>, bool), ApiError> {
    if binary {
        let txs = codec::decode(body).map_err(|e| {
            ApiError::bad_request(format!(
                "body is not a canonical-encoded transaction list: {e}"
            ))
        })?;
        return Ok((txs, false));
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("body is not JSON: {e}")))?;
    if v.is_array() {
        let txs = serde_json::from_value(v)
            .map_err(|e| ApiError::bad_request(format!("not a list of transactions: {e}")))?;
        Ok((txs, false))
    } else {
        let tx = serde_json::from_value(v)
            .map_err(|e| ApiError::bad_request(format!("not a transaction: {e}")))?;
        Ok((vec![tx], true))
    }
}

fn header_is(headers: &HeaderMap, name: header::HeaderName, f: impl Fn(&str) -> bool) -> bool {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .is_some_and(f)
}

/// `POST /api/v1/txs[?wait=commit]`.
pub async fn submit(
    State(s): State<Arc<Shared>>,
    q: Result<Query<SubmitQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let body = body.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let wait = match q.wait.as_deref() {
        None => false,
        Some("commit") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "wait={other:?} is not supported (use wait=commit)"
            )))
        }
    };
    let binary = header_is(&headers, header::CONTENT_TYPE, |v| {
        v.starts_with("application/octet-stream")
    });
    // A client that accepts only the canonical encoding gets its receipts that way (with
    // wait=commit, once committed); every other answer stays JSON.
    let binary_reply = header_is(&headers, header::ACCEPT, |v| {
        v.trim() == "application/octet-stream"
    });
    let (txs, single) = parse_body(&body, binary)?;
    if txs.is_empty() {
        return Err(ApiError::bad_request("no transactions"));
    }
    let Admitted { hashes, read } = s.admit_async(txs, wait).await.map_err(|e| match e {
        AdmitError::Invalid(..) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
        AdmitError::Full | AdmitError::SenderFull => ApiError::too_many(e.to_string()),
        AdmitError::Stopping => ApiError::internal(e),
    })?;
    if !wait {
        let body = if single {
            json!({ "tx_hash": hashes[0] })
        } else {
            json!({ "accepted": hashes.len(), "tx_hashes": hashes })
        };
        return Ok((StatusCode::ACCEPTED, Json(body)).into_response());
    }
    let limit = Duration::from_secs(s.config.api.wait_commit_secs);
    let committed = s
        .wait_committed(hashes.clone(), read, limit)
        .await
        .map_err(|e| match e {
            crate::runtime::WaitError::TooMany(m) => ApiError::too_many(m),
            crate::runtime::WaitError::Internal(m) => ApiError::internal(m),
        })?;
    let Some(c) = committed else {
        return Ok((
            StatusCode::ACCEPTED,
            Json(json!({
                "committed": false,
                "tx_hashes": hashes,
                "message": format!("not committed within {} s; poll GET /api/v1/txs/{{hash}}", limit.as_secs()),
            })),
        )
            .into_response());
    };
    let slots = c.slots();
    if binary_reply {
        let ordered: Vec<Option<&Receipt>> =
            slots.iter().map(|&i| c.receipts[i].as_ref()).collect();
        return Ok((
            [(header::CONTENT_TYPE, "application/octet-stream")],
            codec::encode(&ordered),
        )
            .into_response());
    }
    // Each receipt is rendered once and moved into place; a transaction named twice in the
    // request gets a second rendering.
    let mut rendered: Vec<Option<Value>> = c
        .receipts
        .iter()
        .map(|r| Some(r.as_ref().map_or(Value::Null, receipt_json)))
        .collect();
    let mut receipts_json: Vec<Value> = slots
        .iter()
        .map(|&i| {
            rendered[i]
                .take()
                .unwrap_or_else(|| c.receipts[i].as_ref().map_or(Value::Null, receipt_json))
        })
        .collect();
    let body = if single {
        receipts_json.swap_remove(0)
    } else {
        json!({ "receipts": receipts_json })
    };
    Ok(Json(body).into_response())
}
