//! What this node lacks, fetched from the other members: a blob (checked against its address
//! as it arrives) and wrapped keys (merged with this node's). A document uploaded through one
//! node can so be read through any other.

use crate::keystore;
use crate::state::EhrNode;
use crate::stream::{self, BodyReader, BLOB_MAX};
use medchain_app::ApiError;
use medchain_ehr::{Vault, WrappedKey};
use medchain_types::{Hash, PublicKey};
use std::time::Duration;

/// How long a blob fetch may take.
const BLOB_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a key fetch may take.
const KEYS_TIMEOUT: Duration = Duration::from_secs(30);

/// Asks the other members for `path` until one answers 200.
async fn from_peers(node: &EhrNode, path: &str, timeout: Duration) -> Option<reqwest::Response> {
    for member in node.others() {
        if let Ok(r) = node.host.peer_get(member, path, timeout).await {
            if r.status().is_success() {
                return Some(r);
            }
        }
    }
    None
}

/// Fetches a blob this node lacks from another member into `vault`, checking it on arrival.
pub async fn blob(node: &EhrNode, vault: &Vault, blob: Hash) -> Result<(), String> {
    let mut r = from_peers(
        node,
        &format!("/api/v1/ehr/peer/blobs/{blob}"),
        BLOB_TIMEOUT,
    )
    .await
    .ok_or("no other node holds the blob")?;
    let (reader, tx) = BodyReader::new(BLOB_MAX);
    let v = vault.clone();
    let writer = tokio::task::spawn_blocking(move || v.import(reader, &blob));
    loop {
        match r.chunk().await {
            Ok(Some(c)) => {
                if tx.send(Ok(c)).await.is_err() {
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                let _ = tx.send(Err(e.to_string())).await;
                break;
            }
        }
    }
    drop(tx);
    writer
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// Collects a record's wrapped keys from every other member, merges them with this node's (one
/// per reader) and keeps the result. Nodes can hold different subsets: keys are stored where
/// they were put and shared later through any node.
async fn keys(node: &EhrNode, id: &str) -> Result<Vec<WrappedKey>, String> {
    let path = format!("/api/v1/ehr/peer/keys/{id}");
    let mut theirs = Vec::new();
    for member in node.others() {
        let Ok(r) = node.host.peer_get(member, &path, KEYS_TIMEOUT).await else {
            continue;
        };
        if !r.status().is_success() {
            continue;
        }
        if let Ok(keys) = r.json::<Vec<WrappedKey>>().await {
            theirs.extend(keys);
        }
    }
    keystore::merge_fetched(node, id, theirs)
}

/// The reader's wrapped key for record `id`, from this node or, failing that, the others.
pub async fn key_for(node: &EhrNode, id: &str, reader: &PublicKey) -> Result<WrappedKey, ApiError> {
    if let Some(k) = keystore::local_keys(node, id)
        .into_iter()
        .find(|k| k.reader == *reader)
    {
        return Ok(k);
    }
    let all = keys(node, id).await.map_err(ApiError::not_found)?;
    all.into_iter()
        .find(|k| k.reader == *reader)
        .ok_or_else(|| {
            ApiError::not_found("no key is wrapped for this reader (ask the patient to share)")
        })
}

/// Streams blob `blob`, fetching it from another member first if this node lacks it.
pub async fn serve_blob(
    node: &EhrNode,
    blob: Hash,
    what: &str,
) -> Result<axum::response::Response, ApiError> {
    let vault = node.vault()?;
    if !vault.contains(&blob) {
        self::blob(node, &vault, blob)
            .await
            .map_err(|e| ApiError::not_found(format!("{what}: {e}")))?;
    }
    stream::blob_response(&vault, blob)
}
