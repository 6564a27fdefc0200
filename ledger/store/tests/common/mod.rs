//! Helpers shared by the ledger's integration tests.
#![allow(dead_code)]

use medchain_chaincode::builtin::{Kv, KvOp};
use medchain_ledger::{Executor, Ledger};
use medchain_types::{Block, Certificate, Hash, Receipt, SecretKey, Transaction};

pub const CHAIN: &str = "test-chain";

pub fn client() -> SecretKey {
    SecretKey::from_seed([11; 32])
}

pub fn put(key: &str, value: &str, nonce: u64) -> Transaction {
    let op = KvOp::Put {
        key: key.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
    };
    Transaction::signed(CHAIN, "kv", Kv::payload(&op), nonce, &client())
}

pub fn delete(key: &str, nonce: u64) -> Transaction {
    let op = KvOp::Delete {
        key: key.as_bytes().to_vec(),
    };
    Transaction::signed(CHAIN, "kv", Kv::payload(&op), nonce, &client())
}

/// The next block on `ledger`'s tip with `txs`, claiming the tip's state root.
pub fn next_block(ledger: &Ledger, txs: Vec<Transaction>) -> Block {
    let tip = ledger.tip();
    let height = ledger.next_height();
    Block::build(
        height,
        tip.map_or(Hash::ZERO, |t| t.hash),
        height.saturating_sub(1),
        tip.map_or(Hash::ZERO, |t| t.state_root),
        1_700_000_000_000 + height,
        SecretKey::from_seed([12; 32]).public(),
        vec![],
        txs,
    )
}

/// Executes and commits the next block.
pub fn apply(ledger: &Ledger, exec: &Executor, txs: Vec<Transaction>) -> Vec<Receipt> {
    let block = next_block(ledger, txs);
    exec.apply(ledger, &block, &Certificate(vec![1, 2, 3]))
        .unwrap()
        .1
}
