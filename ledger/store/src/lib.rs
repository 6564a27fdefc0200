//! The medchain ledger: one RocksDB database per node holding final blocks, their certificates,
//! indexes, receipts, the world state and the engine's persisted records ([`Ledger`]); and the
//! [`Executor`] that runs chaincode over each committed block.
//!
//! Only final blocks reach the ledger (forks live inside the consensus engine), so execution is
//! never rolled back. A block, its state writes, its receipts and the new tip go to disk in one
//! synced `WriteBatch`: after a crash the ledger holds a prefix of the committed chain, whole.
//! The transaction index is derived from the receipts and written in sorted runs (`tx_index.rs`).

mod block_files;
mod error;
mod executor;
mod schema;
mod state;
mod store;
mod tx_index;

pub use error::LedgerError;
pub use executor::{Executor, QueryError};
pub use state::{next_state_root, BlockWrites, WriteSet};
pub use store::{Ledger, NamespaceView, Tip, TxRecord, VerifyReport};
