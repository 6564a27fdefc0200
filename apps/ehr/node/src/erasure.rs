//! Erasure on this node: markers that keep erased data from coming back, and crypto-shredding
//! when an `Erase` commits (the blob and every wrapped key destroyed); and the deletion of a
//! profile blob a new registration replaced.
//!
//! The commit hook runs off the engine thread, at least once per block (again after a crash),
//! so everything here is idempotent: a marker written twice, a file already gone, are fine.

use crate::keystore;
use crate::state::EhrNode;
use medchain_app::CommittedBlock;
use medchain_ehr::chaincode::{DocumentAnchor, ERASED, NAME, PROFILE_REPLACED};
use medchain_ehr::{EhrQuery, Vault};
use medchain_types::Hash;

/// Marks `name` erased on this node, for good (see [`EhrNode::is_erased`]).
fn mark_erased(node: &EhrNode, name: &str) -> std::io::Result<()> {
    let dir = node.erased_dir();
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join(name), b"")
}

/// The commit hook: every document an `Erase` in `block` erased is destroyed on this node, and
/// every profile blob a registration replaced is deleted.
pub fn on_committed(node: &EhrNode, block: &CommittedBlock) {
    for r in &block.receipts {
        for e in r.events.iter().filter(|e| e.chaincode == NAME) {
            let data = std::str::from_utf8(&e.data);
            match (e.kind.as_str(), data) {
                (ERASED, Ok(doc)) => erase_document(node, doc),
                (PROFILE_REPLACED, Ok(blob)) => delete_replaced(node, blob),
                (ERASED | PROFILE_REPLACED, Err(_)) => {
                    tracing::error!(height = block.height, kind = %e.kind, "an event without its name");
                }
                _ => {}
            }
        }
    }
}

/// Deletes a profile blob that a new registration replaced (no longer anchored, so its
/// patient cannot store it again).
fn delete_replaced(node: &EhrNode, blob: &str) {
    let Ok(blob) = blob.parse::<Hash>() else {
        tracing::error!(blob, "a replaced profile's address is not a hash");
        return;
    };
    if let Ok(vault) = Vault::open(node.vault_dir()) {
        if let Err(e) = vault.erase(&blob) {
            tracing::error!(%blob, error = %e, "could not delete a replaced profile");
        }
    }
}

/// Crypto-shredding of document `doc_id`: markers first (a fetch or upload racing with the
/// erasure cannot bring the data back), then the blob and every wrapped key.
fn erase_document(node: &EhrNode, doc_id: &str) {
    let blob: Option<Hash> = node
        .query_as::<Option<DocumentAnchor>>(&EhrQuery::Document(doc_id.to_owned()))
        .ok()
        .flatten()
        .map(|d| d.blob);
    for name in blob.iter().map(Hash::to_hex).chain([doc_id.to_owned()]) {
        if let Err(e) = mark_erased(node, &name) {
            tracing::error!(doc = doc_id, error = %e, "could not record an erasure");
        }
    }
    if let Some(blob) = blob {
        if let Ok(vault) = Vault::open(node.vault_dir()) {
            if let Err(e) = vault.erase(&blob) {
                tracing::error!(doc = doc_id, error = %e, "could not erase a blob");
            }
        }
    }
    if let Err(e) = keystore::remove(node, doc_id) {
        tracing::error!(doc = doc_id, error = %e, "could not erase wrapped keys");
    }
    tracing::info!(
        doc = doc_id,
        "document erased (blob and wrapped keys destroyed)"
    );
}
