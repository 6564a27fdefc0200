//! `GET /vault-audit`: the verifier's audit, every anchored record of this node's vault
//! re-hashed against its anchor.

use crate::state::EhrNode;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::Json;
use medchain_app::{ApiError, ApiResult};
use medchain_ehr::chaincode::AnchoredBlob;
use medchain_ehr::{EhrQuery, VaultError};
use serde_json::json;
use std::sync::Arc;

/// Each record `intact`, `tampered`, `missing` (not on this node), `erased` or `unreadable`,
/// with the counts.
pub async fn vault_audit(State(node): State<Arc<EhrNode>>) -> ApiResult {
    let anchors: Vec<AnchoredBlob> = node.query_as(&EhrQuery::Anchors)?;
    let vault = node.vault()?;
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
        "records": records,
    }))
    .into_response())
}
