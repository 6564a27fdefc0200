//! The wrapped keys this node holds, one JSON file per record (a document, a profile, a case)
//! under `vault-keys/`: read, merged under the node's lock, written durably, removed on erasure.

use crate::state::EhrNode;
use medchain_app::ApiError;
use medchain_ehr::WrappedKey;
use medchain_types::PublicKey;
use std::path::PathBuf;

/// Most readers of one record.
pub const READERS_MAX: usize = 64;
/// Largest body of a wrapped-key upload (64 keys are about 13 KiB of JSON).
pub const KEYS_BODY_MAX: usize = 64 << 10;

fn keys_path(node: &EhrNode, id: &str) -> PathBuf {
    node.host
        .data_dir()
        .join("vault-keys")
        .join(format!("{id}.json"))
}

/// A request body that is a list of wrapped keys.
pub fn parse_keys(body: &[u8]) -> Result<Vec<WrappedKey>, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("not a list of wrapped keys: {e}")))
}

/// The wrapped keys of record `id` this node holds, for reading (none if it holds none or its
/// file is unreadable).
pub fn local_keys(node: &EhrNode, id: &str) -> Vec<WrappedKey> {
    read_keys(node, id).unwrap_or_default()
}

/// The raw file of record `id`'s keys, as a peer asks for it.
pub fn raw(node: &EhrNode, id: &str) -> std::io::Result<Vec<u8>> {
    std::fs::read(keys_path(node, id))
}

/// The wrapped keys of record `id` this node holds; an unreadable file is an error (a writer
/// must not take it for an empty list and overwrite it).
fn read_keys(node: &EhrNode, id: &str) -> std::io::Result<Vec<WrappedKey>> {
    match std::fs::read(keys_path(node, id)) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("the wrapped keys of {id} are unreadable: {e}"),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Writes record `id`'s wrapped keys durably (call with the keys lock held).
fn store_keys(node: &EhrNode, id: &str, keys: &[WrappedKey]) -> std::io::Result<()> {
    let p = keys_path(node, id);
    std::fs::create_dir_all(p.parent().expect("a parent"))?;
    let mut token = [0u8; 8];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut token);
    let tmp = p.with_extension(format!("{}.tmp", hex::encode(token)));
    let written = serde_json::to_vec(keys)
        .map_err(std::io::Error::other)
        .and_then(|bytes| std::fs::write(&tmp, bytes))
        .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
        .and_then(|()| std::fs::rename(&tmp, &p));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Adds `keys` to record `id`'s wrapped keys and stores them, as `caller`: one key per reader;
/// a reader's existing key is replaced only by that reader itself (nobody else can spoil it);
/// `dead` readers (dead share links) are removed; the patient's own key must be among them.
/// Returns how many readers hold a key.
pub fn merge(
    node: &EhrNode,
    id: &str,
    keys: Vec<WrappedKey>,
    patient: &PublicKey,
    caller: &PublicKey,
    dead: &[PublicKey],
) -> Result<usize, ApiError> {
    if keys.is_empty() || keys.len() > READERS_MAX {
        return Err(ApiError::bad_request("1 to 64 wrapped keys"));
    }
    let _serial = node.keys_lock.lock().unwrap_or_else(|e| e.into_inner());
    if node.is_erased(id) {
        return Err(ApiError::gone("that record was erased"));
    }
    let mut merged = read_keys(node, id).map_err(ApiError::internal)?;
    merged.retain(|old| !dead.contains(&old.reader));
    for k in keys {
        match merged.iter_mut().find(|m| m.reader == k.reader) {
            Some(m) if k.reader == *caller => *m = k,
            Some(_) => {} // another reader's key stays as it is
            None => merged.push(k),
        }
    }
    if merged.len() > READERS_MAX || !merged.iter().any(|k| k.reader == *patient) {
        return Err(ApiError::bad_request(
            "at most 64 readers, and a key for the patient among them",
        ));
    }
    store_keys(node, id, &merged).map_err(ApiError::internal)?;
    Ok(merged.len())
}

/// Adds keys fetched from other nodes to record `id`'s (readers this node has no key for, up
/// to [`READERS_MAX`]), under the lock with what this node holds now (not what it held before
/// the network round), and never after an erasure. Returns every key held.
pub fn merge_fetched(
    node: &EhrNode,
    id: &str,
    theirs: Vec<WrappedKey>,
) -> Result<Vec<WrappedKey>, String> {
    let _serial = node.keys_lock.lock().unwrap_or_else(|e| e.into_inner());
    if node.is_erased(id) {
        return Err("that record was erased".into());
    }
    let mut merged = read_keys(node, id).map_err(|e| e.to_string())?;
    for k in theirs {
        if !merged.iter().any(|m| m.reader == k.reader) && merged.len() < READERS_MAX {
            merged.push(k);
        }
    }
    if merged.is_empty() {
        return Err("no node holds keys for that record".into());
    }
    store_keys(node, id, &merged).map_err(|e| e.to_string())?;
    Ok(merged)
}

/// Removes record `id`'s keys from this node (no error if it held none).
pub fn remove(node: &EhrNode, id: &str) -> std::io::Result<()> {
    let _serial = node.keys_lock.lock().unwrap_or_else(|e| e.into_inner());
    match std::fs::remove_file(keys_path(node, id)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
