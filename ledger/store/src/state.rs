//! World-state keys, write sets and the state root.
//!
//! The state root at height `h` is a hash chain over every block's write set:
//! `root(h) = SHA-256("medchain-state/1" || root(h-1) || h || encode(writes(h)))`, with
//! `root(-1) = ZERO`. Nodes that executed the same blocks the same way have equal roots at equal
//! heights (the simulator's invariant), a root commits to the whole history of writes, and
//! computing it costs one pass over the block's writes rather than a tree update per key.

use medchain_types::{codec, Hash, Receipt, Sha256Writer};
use std::collections::BTreeMap;

/// The writes of a block (or a transaction): full state key → new value (`None` = deleted).
/// A `BTreeMap`, so that its encoding, and so the state root, is canonical.
pub type WriteSet = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// The state root after applying `writes` at `height` on top of `prev`.
pub fn next_state_root(prev: &Hash, height: u64, writes: &WriteSet) -> Hash {
    let mut h = Sha256Writer::new();
    h.update(b"medchain-state/1")
        .update(prev.as_bytes())
        .update(&height.to_be_bytes())
        .update(&codec::encode(writes));
    h.finish()
}

/// The state key of `key` in chaincode `namespace`: `namespace || 0x00 || key`. Chaincode names
/// never contain a zero byte, so namespaces cannot overlap.
pub fn state_key(namespace: &str, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(namespace.len() + 1 + key.len());
    out.extend_from_slice(namespace.as_bytes());
    out.push(0);
    out.extend_from_slice(key);
    out
}

/// The output of executing a block: what `Ledger::commit` writes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockWrites {
    /// Merged writes of the successful transactions.
    pub writes: WriteSet,
    /// One receipt per transaction, in order.
    pub receipts: Vec<Receipt>,
}
