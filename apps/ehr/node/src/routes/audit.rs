//! `GET /vault-audit[?after=CURSOR&limit=N]`: the verifier's audit, a page of anchored records
//! (profiles, cases, documents) of this node's vault re-hashed against their anchors, to the
//! end of the chain's list page by page. For verifiers and administrators (signed); one audit
//! runs on a node at a time, since each re-reads whole blobs.

use crate::state::EhrNode;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method};
use axum::response::IntoResponse;
use axum::Json;
use medchain_app::{ApiError, ApiResult};
use medchain_ehr::chaincode::{AnchoredBlob, ListPage};
use medchain_ehr::{EhrQuery, VaultError};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

/// Records per page unless the caller asks for another number (at most 1,000).
const PAGE_DEFAULT: u32 = 100;

#[derive(Deserialize)]
pub struct AuditParams {
    after: Option<String>,
    limit: Option<u32>,
}

/// Each record of the page `intact`, `tampered`, `missing` (not on this node), `erased` or
/// `unreadable`, with the page's counts and the cursor of the next page (`null` on the last).
pub async fn vault_audit(
    State(node): State<Arc<EhrNode>>,
    headers: HeaderMap,
    params: Result<Query<AuditParams>, QueryRejection>,
    uri: axum::http::Uri,
) -> ApiResult {
    // The signature covers the path with its query string.
    let path = match uri.query() {
        Some(q) => format!("/api/v1/ehr/vault-audit?{q}"),
        None => "/api/v1/ehr/vault-audit".to_owned(),
    };
    node.verifier_caller(&headers, &Method::GET, &path)?;
    let Query(p) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = p.limit.unwrap_or(PAGE_DEFAULT);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("limit is 1 to 1,000"));
    }
    let _running =
        node.audit_slot.clone().try_acquire_owned().map_err(|_| {
            ApiError::too_many("an audit is running on this node; retry when it ends")
        })?;
    let page: ListPage<AnchoredBlob> = node.query_as(&EhrQuery::Page {
        query: Box::new(EhrQuery::Anchors),
        after: p.after,
        limit,
    })?;
    let vault = node.vault()?;
    let anchors = page.items;
    let records = tokio::task::spawn_blocking(move || {
        anchors
            .into_iter()
            .map(|a| {
                let status = if a.erased {
                    "erased"
                } else {
                    match vault.verify(&a.blob) {
                        Ok(()) => "intact",
                        Err(VaultError::NotFound(_)) => "missing",
                        Err(VaultError::Corrupted(_)) => "tampered",
                        Err(_) => "unreadable",
                    }
                };
                json!({
                    "record": a.record,
                    "patient": a.patient,
                    "blob": a.blob,
                    "status": status,
                })
            })
            .collect::<Vec<_>>()
    })
    .await
    .map_err(ApiError::internal)?;
    let count = |st: &str| records.iter().filter(|r| r["status"] == st).count();
    Ok(Json(json!({
        "node": node.host.node_id(),
        "intact": count("intact"),
        "tampered": count("tampered"),
        "missing": count("missing"),
        "erased": count("erased"),
        "unreadable": count("unreadable"),
        "records": records,
        "next": page.next,
    }))
    .into_response())
}
