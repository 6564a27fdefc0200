//! Shared workload generation for the medchain benchmarks: deterministic signed transactions
//! and blocks of a given size, so every benchmark and every engine sees the same input.

use medchain_types::{Block, Hash, SecretKey, Transaction};

/// The chain id used by benchmark workloads.
pub const BENCH_CHAIN: &str = "medchain-bench";

/// `count` signed `noop` transactions with `payload_len`-byte payloads; nonces start at
/// `first_nonce`, so successive calls with distinct ranges give distinct transactions.
pub fn signed_txs(count: usize, payload_len: usize, first_nonce: u64) -> Vec<Transaction> {
    let key = SecretKey::from_seed([42; 32]);
    (0..count as u64)
        .map(|i| {
            let nonce = first_nonce + i;
            let mut payload = vec![0u8; payload_len];
            for (j, b) in payload.iter_mut().enumerate() {
                *b = (nonce as usize).wrapping_mul(31).wrapping_add(j) as u8;
            }
            Transaction::signed(BENCH_CHAIN, "noop", payload, nonce, &key)
        })
        .collect()
}

/// A block at `height` over `parent` holding `txs`.
pub fn block_with(height: u64, parent: Hash, state_root: Hash, txs: Vec<Transaction>) -> Block {
    Block::build(
        height,
        parent,
        height.saturating_sub(1),
        state_root,
        1_700_000_000_000 + height,
        SecretKey::from_seed([43; 32]).public(),
        Vec::new(),
        txs,
    )
}
