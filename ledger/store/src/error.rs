//! Errors of the ledger.

use medchain_chaincode::ChaincodeError;
use medchain_types::{BlockError, DecodeError, Hash};
use std::path::PathBuf;

/// Why a ledger operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// RocksDB reported an error (disk full, permissions, corruption it detected itself).
    #[error("storage error: {0}")]
    Storage(#[from] rocksdb::Error),
    /// The directory is not a medchain ledger (absent, not RocksDB, or RocksDB of another kind).
    #[error("{path} is not a medchain ledger: {reason}")]
    NotALedger {
        /// The directory.
        path: PathBuf,
        /// What was missing or wrong.
        reason: String,
    },
    /// The ledger belongs to another chain.
    #[error("ledger is for chain {found:?}, expected {expected:?}")]
    WrongChain {
        /// The chain asked for.
        expected: String,
        /// The chain on disk.
        found: String,
    },
    /// A block was offered out of order.
    #[error("expected block at height {expected}, got height {found}")]
    WrongHeight {
        /// The next height.
        expected: u64,
        /// The offered block's height.
        found: u64,
    },
    /// A block does not extend the tip.
    #[error("block {height} has parent {found}, but the tip is {expected}")]
    WrongParent {
        /// The offered block's height.
        height: u64,
        /// The tip's hash.
        expected: Hash,
        /// The offered block's parent.
        found: Hash,
    },
    /// A header claims a state root that the ledger did not compute.
    #[error("block {height} claims state root {claimed} at height {state_height}, the ledger has {actual}")]
    StateRootMismatch {
        /// The block's height.
        height: u64,
        /// The height the claim is about.
        state_height: u64,
        /// The header's claim.
        claimed: Hash,
        /// What the ledger computed.
        actual: Hash,
    },
    /// The receipts do not match the block's transactions.
    #[error("block {height}: {reason}")]
    BadExecution {
        /// The block's height.
        height: u64,
        /// What did not match.
        reason: String,
    },
    /// Stored data failed a check: a record cannot be decoded, a link or root does not match.
    #[error("ledger corrupted at height {height}: {what}")]
    Corrupt {
        /// Where.
        height: u64,
        /// What.
        what: String,
    },
    /// A block failed its structural checks.
    #[error(transparent)]
    Block(#[from] BlockError),
    /// Metadata could not be decoded.
    #[error("cannot decode ledger metadata: {0}")]
    Decode(#[from] DecodeError),
    /// A block file could not be created, written or synced (disk full, permissions).
    #[error("block file {path}: {source}")]
    BlockFile {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The transaction index's writer could not run (see `tx_index.rs`).
    #[error("transaction index: {0}")]
    TxIndex(String),
    /// The ledger was opened read-only.
    #[error("ledger is open read-only")]
    ReadOnly,
}

/// A ledger failure under a chaincode: the storage's fault, not the transaction's.
pub(crate) fn storage_error(e: LedgerError) -> ChaincodeError {
    ChaincodeError::Storage(e.to_string())
}
