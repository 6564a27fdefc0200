//! The chaincode API: what an application module (a "chaincode", as in Hyperledger Fabric)
//! implements and what it sees of the ledger.
//!
//! A chaincode is deterministic: it reads time only from [`Stub::time_ms`] (the block time),
//! has no randomness, does no I/O, and never iterates a `HashMap` into state. The executor runs
//! it only on committed (final) blocks, so its writes are never rolled back. Keys are namespaced:
//! a chaincode sees only its own keys.

pub mod builtin;
pub mod memory;

use medchain_types::{Hash, PublicKey};

/// Most bytes in one state key.
pub const KEY_LEN_MAX: usize = 1024;
/// Most bytes in one state value.
pub const VALUE_LEN_MAX: usize = 1 << 20;
/// Most state writes one transaction may make.
pub const TX_WRITES_MAX: usize = 10_000;
/// Most events one transaction may emit.
pub const TX_EVENTS_MAX: usize = 256;
/// Most entries one scan may return.
pub const SCAN_LIMIT_MAX: usize = 10_000;

/// Why a chaincode call did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChaincodeError {
    /// The payload or request could not be decoded.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The caller may not do this.
    #[error("permission denied: {0}")]
    Forbidden(String),
    /// The object does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// A business rule refused the call.
    #[error("rejected: {0}")]
    Rejected(String),
    /// A bound on keys, values, writes or events was exceeded.
    #[error("limit exceeded: {0}")]
    Limit(String),
    /// The storage under the state failed. Not the chaincode's fault and not deterministic: the
    /// executor aborts the whole block instead of recording a failed receipt.
    #[error("state storage failed: {0}")]
    Storage(String),
}

/// Key-value pairs returned by a scan, in key order.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// A read-only view of one chaincode's namespace, as of the last committed block.
pub trait StateView {
    /// The value at `key`, if any.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ChaincodeError>;

    /// Up to `limit` (at most [`SCAN_LIMIT_MAX`]) entries whose keys start with `prefix`, in key
    /// order, starting after `start_after` when given (for paging).
    fn scan(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, ChaincodeError>;

    /// As [`StateView::scan`], newest key first: up to `limit` entries whose keys start with
    /// `prefix`, in descending key order, starting before `start_before` when given.
    fn scan_back(
        &self,
        prefix: &[u8],
        start_before: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, ChaincodeError>;
}

/// What a chaincode sees while executing one transaction. Reads see the transaction's own
/// writes and those of earlier successful transactions of the same block.
pub trait Stub: StateView {
    /// Writes `value` at `key`.
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), ChaincodeError>;
    /// Deletes `key` (no error if absent).
    fn delete(&mut self, key: &[u8]) -> Result<(), ChaincodeError>;
    /// Records an event for the receipt and for subscribers.
    fn emit(&mut self, kind: &str, data: &[u8]) -> Result<(), ChaincodeError>;
    /// The transaction's sender, whose signature the node has checked.
    fn caller(&self) -> &PublicKey;
    /// The transaction's hash.
    fn tx_hash(&self) -> &Hash;
    /// Height of the block being executed.
    fn height(&self) -> u64;
    /// The block's time (milliseconds since the Unix epoch): the only clock a chaincode has.
    fn time_ms(&self) -> u64;
}

/// An application module. Implementations must be deterministic (see the crate docs).
pub trait Chaincode: Send + Sync {
    /// The name transactions use to call it: 1 to 64 characters of `a-z 0-9 - _ .`.
    fn name(&self) -> &str;

    /// Executes a transaction's payload. On `Err` the executor discards every write of this
    /// transaction and records a failed receipt; the block still commits.
    fn execute(&self, stub: &mut dyn Stub, payload: &[u8]) -> Result<Vec<u8>, ChaincodeError>;

    /// Answers a read-only request against committed state.
    fn query(&self, view: &dyn StateView, request: &[u8]) -> Result<Vec<u8>, ChaincodeError>;

    /// Whether this chaincode's state, transaction payloads and receipts' responses and events
    /// concern people: a node's raw chain routes then serve none of them (its app answers
    /// through routes that know who asks). Default: public.
    fn private(&self) -> bool {
        false
    }

    /// A node's policy for transactions it admits from now on (from clients and gossip), not a
    /// rule of execution: a block that carries a transaction this refuses still executes it
    /// with [`Chaincode::execute`], so history replays the same whatever the policy. Used to
    /// retire a form of a transaction that the chain must still execute in old blocks.
    /// Default: admit everything.
    fn screen(&self, _payload: &[u8]) -> Result<(), ChaincodeError> {
        Ok(())
    }
}

/// Checks a key and value against [`KEY_LEN_MAX`] and [`VALUE_LEN_MAX`]; stubs call this.
pub fn check_entry(key: &[u8], value: Option<&[u8]>) -> Result<(), ChaincodeError> {
    if key.is_empty() || key.len() > KEY_LEN_MAX {
        return Err(ChaincodeError::Limit(format!(
            "key of {} bytes (must be 1..={KEY_LEN_MAX})",
            key.len()
        )));
    }
    if let Some(v) = value {
        if v.len() > VALUE_LEN_MAX {
            return Err(ChaincodeError::Limit(format!(
                "value of {} bytes exceeds VALUE_LEN_MAX ({VALUE_LEN_MAX})",
                v.len()
            )));
        }
    }
    Ok(())
}
