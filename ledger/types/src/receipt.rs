//! The outcome of executing one transaction.

use crate::hash::Hash;
use crate::tx::serde_bytes_compat;
use serde::{Deserialize, Serialize};

/// Did the transaction take effect?
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxStatus {
    /// Executed; its writes are in the state.
    Success,
    /// Refused (by the chaincode or the executor); none of its writes were kept.
    Failed(String),
    /// The same transaction was already executed (earlier in this block or in an earlier block);
    /// it was not executed again and the transaction index keeps its first position.
    Duplicate,
}

/// An event emitted by a chaincode during a successful transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainEvent {
    /// The chaincode that emitted it.
    pub chaincode: String,
    /// The chaincode's name for the event.
    pub kind: String,
    /// The chaincode's data.
    #[serde(with = "serde_bytes_compat")]
    pub data: Vec<u8>,
}

/// What happened to a committed transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The transaction.
    pub tx_hash: Hash,
    /// Height of its block.
    pub height: u64,
    /// Its position in the block.
    pub index: u32,
    /// Success or the reason for failure.
    pub status: TxStatus,
    /// The chaincode's response (empty on failure).
    #[serde(with = "serde_bytes_compat")]
    pub response: Vec<u8>,
    /// Events emitted (none on failure).
    pub events: Vec<ChainEvent>,
}

impl Receipt {
    /// True if the transaction took effect.
    pub fn is_success(&self) -> bool {
        self.status == TxStatus::Success
    }
}
