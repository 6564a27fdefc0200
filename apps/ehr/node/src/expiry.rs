//! Expiry of unanchored blobs. Staff store a document's or a case's ciphertext before the
//! transaction that anchors it; a blob that no transaction anchored within [`UNANCHORED_TTL`]
//! of its upload is deleted, so that uploads never anchored cannot fill a node's disk.
//! Anchored blobs stay until an erasure or a replacing registration removes them.

use crate::state::EhrNode;
use medchain_ehr::{EhrQuery, Vault};
use medchain_types::Hash;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

/// How long a blob may stay in the vault without an anchor on the chain.
pub const UNANCHORED_TTL: Duration = Duration::from_secs(24 * 3600);

/// How often the vault is swept.
const SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// Deletes from `vault` every blob stored more than `ttl` before `now` that `anchored` says
/// no record names; returns how many. A blob whose age or anchor cannot be read is kept.
pub fn sweep(
    vault: &Vault,
    now: SystemTime,
    ttl: Duration,
    anchored: impl Fn(&Hash) -> Option<bool>,
) -> std::io::Result<usize> {
    let mut deleted = 0;
    for blob in vault.list().map_err(std::io::Error::other)? {
        let stored = std::fs::metadata(vault.path(&blob)).and_then(|m| m.modified());
        let Ok(stored) = stored else { continue };
        if now.duration_since(stored).unwrap_or_default() < ttl {
            continue;
        }
        if anchored(&blob) != Some(false) {
            continue;
        }
        match vault.erase(&blob) {
            Ok(()) => {
                deleted += 1;
                tracing::info!(%blob, "deleted a blob no record anchored within a day");
            }
            Err(e) => tracing::error!(%blob, error = %e, "could not delete an unanchored blob"),
        }
    }
    Ok(deleted)
}

/// One sweep of `node`'s vault, now.
fn sweep_node(node: &EhrNode) {
    let Ok(vault) = Vault::open(node.vault_dir()) else {
        return;
    };
    let anchored = |blob: &Hash| {
        node.query_as::<Option<String>>(&EhrQuery::BlobRecord(*blob))
            .ok()
            .map(|r| r.is_some())
    };
    if let Err(e) = sweep(&vault, SystemTime::now(), UNANCHORED_TTL, anchored) {
        tracing::error!(error = %e, "could not sweep the vault for unanchored blobs");
    }
}

/// Sweeps `node`'s vault every [`SWEEP_EVERY`] (the first a minute after the start), for as
/// long as the node runs. Call inside the node's runtime.
pub fn spawn(node: &Arc<EhrNode>) {
    let node: Weak<EhrNode> = Arc::downgrade(node);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(60)).await;
        let mut every = tokio::time::interval(SWEEP_EVERY);
        loop {
            every.tick().await;
            let Some(n) = node.upgrade() else { return };
            if tokio::task::spawn_blocking(move || sweep_node(&n))
                .await
                .is_err()
            {
                return;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use medchain_ehr::DocKey;

    fn stored(vault: &Vault, seed: u8) -> Hash {
        let data = vec![seed; 1000];
        vault
            .put(&data[..], &DocKey::generate(), &|_| {})
            .unwrap()
            .blob
    }

    #[test]
    fn only_old_unanchored_blobs_go() {
        let dir = tempfile::tempdir().unwrap();
        let vault = Vault::open(dir.path()).unwrap();
        let (old_loose, old_anchored, young_loose, unknown) = (
            stored(&vault, 1),
            stored(&vault, 2),
            stored(&vault, 3),
            stored(&vault, 4),
        );
        let day_ago = SystemTime::now() - Duration::from_secs(25 * 3600);
        for b in [old_loose, old_anchored, unknown] {
            std::fs::File::options()
                .write(true)
                .open(vault.path(&b))
                .unwrap()
                .set_modified(day_ago)
                .unwrap();
        }
        let anchored = |b: &Hash| {
            if *b == unknown {
                None
            } else {
                Some(*b == old_anchored)
            }
        };
        assert_eq!(
            sweep(&vault, SystemTime::now(), UNANCHORED_TTL, anchored).unwrap(),
            1
        );
        assert!(!vault.contains(&old_loose), "old and never anchored");
        assert!(vault.contains(&old_anchored), "anchored");
        assert!(vault.contains(&young_loose), "not old enough yet");
        assert!(
            vault.contains(&unknown),
            "kept while its anchor cannot be read"
        );
        assert_eq!(
            sweep(&vault, SystemTime::now(), UNANCHORED_TTL, anchored).unwrap(),
            0
        );
    }
}
