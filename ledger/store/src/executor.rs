//! Runs the transactions of a committed block through their chaincodes.
//!
//! Transactions run in block order. Each sees the writes of the earlier successful ones; a
//! transaction that fails (chaincode error, unknown chaincode, wrong chain, duplicate, even a
//! chaincode panic) gets a failed receipt and its writes are discarded, and the block still
//! commits. Only a storage failure aborts the block: it is not deterministic, so recording it as
//! a failed receipt would make nodes diverge.

use crate::error::storage_error;
use crate::error::LedgerError;
use crate::state::{state_key, BlockWrites, WriteSet};
use crate::store::{Ledger, Tip};
use medchain_chaincode::{
    builtin, check_entry, Chaincode, ChaincodeError, Entries, StateView, Stub, SCAN_LIMIT_MAX,
    TX_EVENTS_MAX, TX_WRITES_MAX,
};
use medchain_types::{
    is_valid_name, Block, Certificate, ChainEvent, Hash, PublicKey, Receipt, TxStatus,
};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

/// Why a query failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// No chaincode by that name is installed.
    #[error("no chaincode named {0:?}")]
    UnknownChaincode(String),
    /// The chaincode refused the request.
    #[error(transparent)]
    Chaincode(#[from] ChaincodeError),
}

/// The installed chaincodes and the rules for running them.
#[derive(Clone)]
pub struct Executor {
    chain_id: String,
    chaincodes: BTreeMap<String, Arc<dyn Chaincode>>,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("chain_id", &self.chain_id)
            .field("chaincodes", &self.chaincodes.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Executor {
    /// An executor for `chain_id` with no chaincode installed.
    pub fn new(chain_id: &str) -> Executor {
        Executor {
            chain_id: chain_id.to_owned(),
            chaincodes: BTreeMap::new(),
        }
    }

    /// An executor with the built-in `noop` and `kv` chaincodes.
    pub fn with_builtins(chain_id: &str) -> Executor {
        let mut e = Executor::new(chain_id);
        e.install(Arc::new(builtin::Noop))
            .expect("built-in names are valid and distinct");
        e.install(Arc::new(builtin::Kv))
            .expect("built-in names are valid and distinct");
        e.install(Arc::new(builtin::Staking))
            .expect("built-in names are valid and distinct");
        e
    }

    /// Installs a chaincode under its name. Refuses an invalid or already installed name.
    pub fn install(&mut self, chaincode: Arc<dyn Chaincode>) -> Result<(), String> {
        let name = chaincode.name().to_owned();
        if !is_valid_name(&name, medchain_types::limits::CHAINCODE_NAME_LEN_MAX) {
            return Err(format!("invalid chaincode name {name:?}"));
        }
        if self.chaincodes.contains_key(&name) {
            return Err(format!("a chaincode named {name:?} is already installed"));
        }
        self.chaincodes.insert(name, chaincode);
        Ok(())
    }

    /// Names of the installed chaincodes.
    pub fn chaincode_names(&self) -> impl Iterator<Item = &str> {
        self.chaincodes.keys().map(String::as_str)
    }

    /// Whether chaincode `name` is installed and private (see `Chaincode::private`).
    pub fn is_private(&self, name: &str) -> bool {
        self.chaincodes.get(name).is_some_and(|c| c.private())
    }

    /// The installed chaincode's admission policy for `tx` (see `Chaincode::screen`); a
    /// transaction for a chaincode not installed passes (it fails at execution).
    pub fn screen(&self, tx: &medchain_types::Transaction) -> Result<(), String> {
        match self.chaincodes.get(&tx.chaincode) {
            Some(c) => c.screen(&tx.payload).map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }

    /// Runs a read-only query against committed state.
    pub fn query(
        &self,
        ledger: &Ledger,
        chaincode: &str,
        request: &[u8],
    ) -> Result<Vec<u8>, QueryError> {
        let cc = self
            .chaincodes
            .get(chaincode)
            .ok_or_else(|| QueryError::UnknownChaincode(chaincode.to_owned()))?;
        Ok(cc.query(&ledger.view(chaincode), request)?)
    }

    /// Executes `block` on top of `ledger`'s current state without writing anything.
    pub fn execute(&self, ledger: &Ledger, block: &Block) -> Result<BlockWrites, LedgerError> {
        self.execute_hashed(ledger, block, &block.tx_hashes())
    }

    /// [`Executor::execute`] with the block's transaction hashes already known (`tx_hashes`
    /// must be `block.tx_hashes()`, for instance as returned by `Block::check_structure`).
    pub fn execute_hashed(
        &self,
        ledger: &Ledger,
        block: &Block,
        hashes: &[Hash],
    ) -> Result<BlockWrites, LedgerError> {
        if hashes.len() != block.txs.len() {
            return Err(LedgerError::BadExecution {
                height: block.header.height,
                reason: format!(
                    "{} transaction hashes for {} transactions",
                    hashes.len(),
                    block.txs.len()
                ),
            });
        }
        debug_assert_eq!(hashes, block.tx_hashes(), "hashes of another block");
        let height = block.header.height;
        let mut block_writes = WriteSet::new();
        let mut receipts = Vec::with_capacity(block.txs.len());
        let mut seen = BTreeSet::new();
        let executed = ledger.txs_known(hashes)?;
        for (i, (tx, (&tx_hash, executed))) in block
            .txs
            .iter()
            .zip(hashes.iter().zip(executed))
            .enumerate()
        {
            let mut receipt = Receipt {
                tx_hash,
                height,
                index: i as u32,
                status: TxStatus::Success,
                response: Vec::new(),
                events: Vec::new(),
            };
            let fresh = seen.insert(tx_hash);
            if !fresh || executed {
                receipt.status = TxStatus::Duplicate;
            } else if tx.chain_id != self.chain_id {
                receipt.status =
                    TxStatus::Failed(format!("transaction is for chain {:?}", tx.chain_id));
            } else if let Some(cc) = self.chaincodes.get(&tx.chaincode) {
                let mut stub = TxStub {
                    ledger,
                    block_writes: &block_writes,
                    writes: WriteSet::new(),
                    events: Vec::new(),
                    namespace: &tx.chaincode,
                    caller: tx.sender,
                    tx_hash,
                    height,
                    time_ms: block.header.time_ms,
                    storage_failure: RefCell::new(None),
                };
                let outcome = catch_unwind(AssertUnwindSafe(|| cc.execute(&mut stub, &tx.payload)));
                if let Some(e) = stub.storage_failure.take() {
                    return Err(LedgerError::BadExecution {
                        height,
                        reason: format!("storage failed while executing transaction {i}: {e}"),
                    });
                }
                match outcome {
                    Ok(Ok(response)) => {
                        receipt.response = response;
                        receipt.events = stub.events;
                        block_writes.extend(stub.writes);
                    }
                    Ok(Err(ChaincodeError::Storage(e))) => {
                        return Err(LedgerError::BadExecution {
                            height,
                            reason: format!("storage failed while executing transaction {i}: {e}"),
                        })
                    }
                    Ok(Err(e)) => receipt.status = TxStatus::Failed(e.to_string()),
                    Err(_) => {
                        receipt.status =
                            TxStatus::Failed(format!("chaincode {:?} panicked", tx.chaincode))
                    }
                }
            } else {
                receipt.status = TxStatus::Failed(format!("no chaincode named {:?}", tx.chaincode));
            }
            receipts.push(receipt);
        }
        Ok(BlockWrites {
            writes: block_writes,
            receipts,
        })
    }

    /// Executes a final block and commits it with its certificate: the one call a node makes per
    /// final block. Returns the new tip and the receipts.
    pub fn apply(
        &self,
        ledger: &Ledger,
        block: &Block,
        certificate: &Certificate,
    ) -> Result<(Tip, Vec<Receipt>), LedgerError> {
        self.apply_hashed(ledger, block, &block.tx_hashes(), certificate)
    }

    /// [`Executor::apply`] with the block's transaction hashes already known (see
    /// [`Executor::execute_hashed`]): saves hashing every transaction once more.
    pub fn apply_hashed(
        &self,
        ledger: &Ledger,
        block: &Block,
        tx_hashes: &[Hash],
        certificate: &Certificate,
    ) -> Result<(Tip, Vec<Receipt>), LedgerError> {
        let out = self.execute_hashed(ledger, block, tx_hashes)?;
        let tip = ledger.commit(block, certificate, &out)?;
        Ok((tip, out.receipts))
    }
}

/// The [`Stub`] of one transaction: reads go through its own writes, then the block's earlier
/// writes, then the ledger.
struct TxStub<'a> {
    ledger: &'a Ledger,
    block_writes: &'a WriteSet,
    writes: WriteSet,
    events: Vec<ChainEvent>,
    namespace: &'a str,
    caller: PublicKey,
    tx_hash: Hash,
    height: u64,
    time_ms: u64,
    /// Set when the ledger failed under a read, even if the chaincode swallowed the error.
    storage_failure: RefCell<Option<String>>,
}

impl TxStub<'_> {
    fn storage(&self, e: LedgerError) -> ChaincodeError {
        let err = storage_error(e);
        *self.storage_failure.borrow_mut() = Some(err.to_string());
        err
    }
}

impl StateView for TxStub<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ChaincodeError> {
        let full = state_key(self.namespace, key);
        if let Some(v) = self
            .writes
            .get(&full)
            .or_else(|| self.block_writes.get(&full))
        {
            return Ok(v.clone());
        }
        self.ledger.state_get(&full).map_err(|e| self.storage(e))
    }

    fn scan(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, ChaincodeError> {
        let limit = limit.min(SCAN_LIMIT_MAX);
        let full_prefix = state_key(self.namespace, prefix);
        let full_start = start_after.map(|s| state_key(self.namespace, s));
        let lower = match &full_start {
            Some(s) => Bound::Excluded(s.clone()),
            None => Bound::Included(full_prefix.clone()),
        };
        // Pending writes in range; the transaction's own override the block's.
        let mut pending: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
        for layer in [self.block_writes, &self.writes] {
            for (k, v) in layer
                .range((lower.clone(), Bound::Unbounded))
                .take_while(|(k, _)| k.starts_with(&full_prefix))
            {
                pending.insert(k.clone(), v.clone());
            }
        }
        // At most `pending.len()` stored entries can be hidden by pending deletes, so reading that
        // many more than `limit` from the ledger is enough to fill the page.
        let stored = self
            .ledger
            .state_scan(&full_prefix, full_start.as_deref(), limit + pending.len())
            .map_err(|e| self.storage(e))?;
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = stored.into_iter().collect();
        for (k, v) in pending {
            match v {
                Some(v) => merged.insert(k, v),
                None => merged.remove(&k),
            };
        }
        let n = self.namespace.len() + 1;
        Ok(merged
            .into_iter()
            .take(limit)
            .map(|(k, v)| (k[n..].to_vec(), v))
            .collect())
    }

    fn scan_back(
        &self,
        prefix: &[u8],
        start_before: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, ChaincodeError> {
        let limit = limit.min(SCAN_LIMIT_MAX);
        let full_prefix = state_key(self.namespace, prefix);
        let full_start = start_before.map(|s| state_key(self.namespace, s));
        let in_range =
            |k: &Vec<u8>| k.starts_with(&full_prefix) && full_start.as_ref().is_none_or(|s| k < s);
        // Pending writes in range; the transaction's own override the block's.
        let mut pending: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
        for layer in [self.block_writes, &self.writes] {
            for (k, v) in layer
                .range(full_prefix.clone()..)
                .take_while(|(k, _)| k.starts_with(&full_prefix))
            {
                if in_range(k) {
                    pending.insert(k.clone(), v.clone());
                }
            }
        }
        // As in `scan`: pending deletes hide at most `pending.len()` stored entries.
        let stored = self
            .ledger
            .state_scan_back(&full_prefix, full_start.as_deref(), limit + pending.len())
            .map_err(|e| self.storage(e))?;
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = stored.into_iter().collect();
        for (k, v) in pending {
            match v {
                Some(v) => merged.insert(k, v),
                None => merged.remove(&k),
            };
        }
        let n = self.namespace.len() + 1;
        Ok(merged
            .into_iter()
            .rev()
            .take(limit)
            .map(|(k, v)| (k[n..].to_vec(), v))
            .collect())
    }
}

impl Stub for TxStub<'_> {
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), ChaincodeError> {
        check_entry(key, Some(value))?;
        let full = state_key(self.namespace, key);
        if self.writes.len() >= TX_WRITES_MAX && !self.writes.contains_key(&full) {
            return Err(ChaincodeError::Limit(format!(
                "more than TX_WRITES_MAX ({TX_WRITES_MAX}) writes"
            )));
        }
        self.writes.insert(full, Some(value.to_vec()));
        Ok(())
    }

    fn delete(&mut self, key: &[u8]) -> Result<(), ChaincodeError> {
        check_entry(key, None)?;
        let full = state_key(self.namespace, key);
        if self.writes.len() >= TX_WRITES_MAX && !self.writes.contains_key(&full) {
            return Err(ChaincodeError::Limit(format!(
                "more than TX_WRITES_MAX ({TX_WRITES_MAX}) writes"
            )));
        }
        // Recorded even if the key is absent: the write set stays a function of the calls made.
        self.writes.insert(full, None);
        Ok(())
    }

    fn emit(&mut self, kind: &str, data: &[u8]) -> Result<(), ChaincodeError> {
        if self.events.len() >= TX_EVENTS_MAX {
            return Err(ChaincodeError::Limit(format!(
                "more than TX_EVENTS_MAX ({TX_EVENTS_MAX}) events"
            )));
        }
        if kind.is_empty() || kind.len() > 64 || data.len() > medchain_chaincode::VALUE_LEN_MAX {
            return Err(ChaincodeError::Limit(
                "event kind must be 1..=64 bytes, data at most VALUE_LEN_MAX".into(),
            ));
        }
        self.events.push(ChainEvent {
            chaincode: self.namespace.to_owned(),
            kind: kind.to_owned(),
            data: data.to_vec(),
        });
        Ok(())
    }

    fn caller(&self) -> &PublicKey {
        &self.caller
    }

    fn tx_hash(&self) -> &Hash {
        &self.tx_hash
    }

    fn height(&self) -> u64 {
        self.height
    }

    fn time_ms(&self) -> u64 {
        self.time_ms
    }
}
