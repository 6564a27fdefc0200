//! The RocksDB block store: column families, atomic commit, recovery and reads.
//!
//! | column family | key | value |
//! |---|---|---|
//! | `blocks` | height (u64 BE) | where the block is in the block files (format 2, see `block_files.rs`), or the encoded [`Block`] itself (format 1, and in memory); at tip + 1, the engine's candidate (see [`Ledger::put_candidate`]) |
//! | `certs` | height | encoded [`Certificate`] |
//! | `block_hashes` | block hash | height |
//! | `tx_index` | tx hash | height, index (u64 BE, u32 BE); written in sorted runs, the newest entries held in memory (see `tx_index.rs`) |
//! | `receipts` | height | encoded `Vec<Receipt>` of the block |
//! | `state` | namespace `0x00` key | value |
//! | `diffs` | height | encoded [`WriteSet`] of that block |
//! | `roots` | height | state root after that block |
//! | `engine` | engine-chosen key | engine record |
//! | `meta` | `format`, `chain_id`, `tip`, `tx_indexed` (the first height whose `tx_index` entries may be missing from the column) | ... |

mod reads;
mod verify;

use crate::block_files::{BlockFiles, Location};
use crate::error::LedgerError;
use crate::schema::*;
use crate::state::{next_state_root, state_key, BlockWrites, WriteSet};
use crate::tx_index::{decode_indexed, encode_indexed, RunSink, TxIndex, RUN_FILE, TAIL_MAX};
use medchain_chaincode::{ChaincodeError, Entries, StateView, SCAN_LIMIT_MAX};
use medchain_types::{
    codec, Block, Certificate, Hash, Header, MerkleProof, Receipt, Transaction, TxStatus,
};
pub use reads::NamespaceView;
use rocksdb::{ColumnFamily, IteratorMode, Options, WriteBatch, WriteOptions, DB};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
pub use verify::VerifyReport;

/// The last committed block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tip {
    /// Its height.
    pub height: u64,
    /// Its hash.
    pub hash: Hash,
    /// The state root after executing it.
    pub state_root: Hash,
}

/// A committed transaction with everything needed to check it without trusting the node: the
/// block header, the Merkle proof of inclusion and the block's finality certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxRecord {
    /// The transaction.
    pub tx: Transaction,
    /// Its receipt.
    pub receipt: Receipt,
    /// Header of its block.
    pub header: Header,
    /// Proof that its hash is in `header.tx_root`.
    pub proof: MerkleProof,
    /// The block's finality certificate.
    pub certificate: Certificate,
}

/// One node's ledger. Reads may run concurrently; commits are serialised.
pub struct Ledger {
    db: Arc<DB>,
    path: PathBuf,
    chain_id: String,
    read_only: bool,
    /// Where blocks are: `None` in the `blocks` column (format 1), else in these files.
    block_files: Option<BlockFiles>,
    /// The tip; the lock also serialises commits.
    tip: Mutex<Option<Tip>>,
    /// Height and hash of the candidate block stored at tip + 1 by [`Ledger::put_candidate`],
    /// if any (locked after `tip`, never before).
    candidate: Mutex<Option<(u64, Hash)>>,
    /// The newest `tx_index` entries, and the writer of its runs.
    tx_index: TxIndex,
    /// Where runs of `tx_index` go.
    run_sink: RunSink,
}

impl Drop for Ledger {
    fn drop(&mut self) {
        // A run being written finishes first; one that fails is read again from the receipts at
        // the next open.
        let _ = self.tx_index.wait();
    }
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("path", &self.path)
            .field("chain_id", &self.chain_id)
            .field("tip", &self.tip())
            .finish()
    }
}

impl Ledger {
    /// Opens the ledger at `path` for chain `chain_id`, creating it if the directory is absent or
    /// empty. Refuses a directory holding something else, or a ledger of another chain.
    pub fn open(path: impl AsRef<Path>, chain_id: &str) -> Result<Ledger, LedgerError> {
        let path = path.as_ref().to_path_buf();
        let fresh = !path.exists()
            || std::fs::read_dir(&path)
                .map(|mut d| d.next().is_none())
                .unwrap_or(false);
        if !fresh {
            // Refuse anything that is not already a medchain ledger before RocksDB writes to it.
            Self::check_is_ledger(&path)?;
        }
        // Created here for the probe, parents included, as the `rocksdb` crate would when it
        // opens (a failure is left for it to report).
        let _ = std::fs::create_dir_all(&path);
        let mut opts = db_options();
        let direct = direct_io_works(&path);
        if direct {
            opts.set_use_direct_io_for_flush_and_compaction(true);
        }
        let db = DB::open_cf_descriptors(&opts, &path, column_families())?;
        let meta = db.cf_handle(CF_META).expect("column family created above");
        if fresh {
            let mut batch = WriteBatch::default();
            batch.put_cf(meta, META_FORMAT, FORMAT_2);
            batch.put_cf(meta, META_CHAIN_ID, chain_id.as_bytes());
            let mut wo = WriteOptions::default();
            wo.set_sync(true);
            db.write_opt(batch, &wo)?;
        }
        let found = db
            .get_cf(meta, META_CHAIN_ID)?
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .unwrap_or_default();
        if found != chain_id {
            return Err(LedgerError::WrongChain {
                expected: chain_id.to_owned(),
                found,
            });
        }
        let block_files = match db.get_cf(meta, META_FORMAT)?.as_deref() {
            Some(FORMAT_2) => Some(BlockFiles::open(&path, direct, true)?),
            _ => None,
        };
        // A run's file left by a crash before it was ingested: its entries are read again.
        let _ = std::fs::remove_file(path.join(RUN_FILE));
        let sink = RunSink::Ingest {
            dir: path.clone(),
            direct,
        };
        Self::finish_open(db, path, found, false, block_files, sink)
    }

    /// A ledger held in memory (RocksDB's in-memory environment): the same code as on disk, in
    /// format 1 (blocks inside RocksDB: the in-memory environment has no files of its own), for
    /// the simulator and tests. It lives as long as the value.
    pub fn open_in_memory(chain_id: &str) -> Result<Ledger, LedgerError> {
        let env = rocksdb::Env::mem_env()?;
        let mut opts = db_options();
        opts.set_env(&env);
        let path = PathBuf::from("/medchain-in-memory");
        let db = DB::open_cf_descriptors(&opts, &path, column_families())?;
        let meta = db.cf_handle(CF_META).expect("column family created above");
        db.put_cf(meta, META_FORMAT, FORMAT_1)?;
        db.put_cf(meta, META_CHAIN_ID, chain_id.as_bytes())?;
        Self::finish_open(db, path, chain_id.to_owned(), false, None, RunSink::Batch)
    }

    /// Opens an existing ledger without writing to it (for `verify-chain` and inspection). Works
    /// while a node has the ledger open.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Ledger, LedgerError> {
        let path = path.as_ref().to_path_buf();
        Self::check_is_ledger(&path)?;
        let db = DB::open_cf_descriptors_read_only(
            &Options::default(),
            &path,
            column_families(),
            false,
        )?;
        let meta = db.cf_handle(CF_META).expect("checked by check_is_ledger");
        let chain_id = db
            .get_cf(meta, META_CHAIN_ID)?
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .unwrap_or_default();
        let block_files = match db.get_cf(meta, META_FORMAT)?.as_deref() {
            Some(FORMAT_2) => Some(BlockFiles::open(&path, false, false)?),
            _ => None,
        };
        Self::finish_open(db, path, chain_id, true, block_files, RunSink::Batch)
    }

    fn check_is_ledger(path: &Path) -> Result<(), LedgerError> {
        let not = |reason: String| LedgerError::NotALedger {
            path: path.to_path_buf(),
            reason,
        };
        if !path.is_dir() {
            return Err(not(if path.exists() {
                "it is not a directory".into()
            } else {
                "no such directory".into()
            }));
        }
        if !path.join("CURRENT").is_file() {
            return Err(not("it holds no RocksDB database (no CURRENT file)".into()));
        }
        let cfs = DB::list_cf(&Options::default(), path)
            .map_err(|e| not(format!("RocksDB cannot read it: {e}")))?;
        for cf in COLUMN_FAMILIES {
            if !cfs.iter().any(|c| c == cf) {
                return Err(not(format!("column family {cf:?} is missing")));
            }
        }
        let db = DB::open_cf_descriptors_read_only(&db_options(), path, column_families(), false)
            .map_err(|e| not(format!("RocksDB cannot open it: {e}")))?;
        let meta = db.cf_handle(CF_META).expect("listed above");
        match db.get_cf(meta, META_FORMAT) {
            Ok(Some(v)) if v == FORMAT_1 || v == FORMAT_2 => Ok(()),
            Ok(Some(v)) => Err(not(format!(
                "unknown format {:?}",
                String::from_utf8_lossy(&v)
            ))),
            Ok(None) => Err(not("no format marker".into())),
            Err(e) => Err(not(format!("cannot read metadata: {e}"))),
        }
    }

    fn finish_open(
        db: DB,
        path: PathBuf,
        chain_id: String,
        read_only: bool,
        block_files: Option<BlockFiles>,
        run_sink: RunSink,
    ) -> Result<Ledger, LedgerError> {
        let ledger = Ledger {
            db: Arc::new(db),
            path,
            chain_id,
            read_only,
            block_files,
            tip: Mutex::new(None),
            candidate: Mutex::new(None),
            tx_index: TxIndex::new(TAIL_MAX, 0),
            run_sink,
        };
        let tip = ledger.read_tip()?;
        if let Some(tip) = tip {
            // The tip and its block are written in one batch; both or neither exist.
            let header = ledger
                .block_at(tip.height)?
                .map(|b| b.header)
                .ok_or_else(|| LedgerError::Corrupt {
                    height: tip.height,
                    what: "the tip's block is missing".into(),
                })?;
            if header.hash() != tip.hash {
                return Err(LedgerError::Corrupt {
                    height: tip.height,
                    what: "the tip's hash does not match its block".into(),
                });
            }
        }
        *ledger.tip.lock().expect("tip lock poisoned") = tip;
        ledger.load_tx_index_tail(tip)?;
        Ok(ledger)
    }

    /// Fills the `tx_index` tail from the receipts of the heights the column family may lack.
    fn load_tx_index_tail(&self, tip: Option<Tip>) -> Result<(), LedgerError> {
        let next = tip.map_or(0, |t| t.height + 1);
        let meta = self.cf(CF_META);
        let (indexed, replaced) = match self.db.get_cf(meta, META_TX_INDEXED)? {
            Some(b) => decode_indexed(&b).ok_or_else(|| LedgerError::Corrupt {
                height: 0,
                what: format!("tx_indexed record: {} bytes", b.len()),
            })?,
            None => {
                // A ledger from before runs (every entry in the column), or a new one.
                if !self.read_only {
                    self.db
                        .put_cf(meta, META_TX_INDEXED, encode_indexed(next, next))?;
                }
                (next, next)
            }
        };
        self.tx_index.set_indexed(indexed);
        // Beside a running node, RocksDB may show a read-only open the record of a run whose
        // file it does not see: start from the value that record replaced.
        let from = if self.read_only { replaced } else { indexed };
        for height in from.min(next)..next {
            let receipts = match self.receipts(height) {
                Ok(Some(r)) => r,
                // A read-only open is how a damaged ledger is inspected: `verify_chain` then
                // names what is missing. A node refuses to run on it (its duplicate check
                // would miss these transactions).
                _ if self.read_only => continue,
                Ok(None) => {
                    return Err(LedgerError::Corrupt {
                        height,
                        what: "receipts are missing".into(),
                    })
                }
                Err(e) => return Err(e),
            };
            self.tx_index.add(
                receipts
                    .iter()
                    .filter(|r| r.status != TxStatus::Duplicate)
                    .map(|r| (r.tx_hash, (r.height, r.index))),
            );
        }
        Ok(())
    }

    /// Sets how many `tx_index` entries are held in memory before they are written to the
    /// column family as one sorted run (default 262,144, about 13 s of commits at 20,000
    /// transactions per second). For tests and measurements.
    pub fn set_tx_index_run_entries(&self, entries: usize) {
        self.tx_index.set_tail_max(entries);
    }

    /// The error of the last write of a `tx_index` run that failed since the last call (its
    /// entries stay in memory and are written with the next run; commits fail with it only once
    /// four runs' worth are held). For the node to report.
    pub fn take_tx_index_error(&self) -> Option<LedgerError> {
        self.tx_index.take_error()
    }

    fn cf(&self, name: &str) -> &ColumnFamily {
        self.db
            .cf_handle(name)
            .expect("every column family is opened")
    }

    fn read_tip(&self) -> Result<Option<Tip>, LedgerError> {
        match self.db.get_cf(self.cf(CF_META), META_TIP)? {
            None => Ok(None),
            Some(bytes) => Ok(Some(codec::decode(&bytes).map_err(|e| {
                LedgerError::Corrupt {
                    height: 0,
                    what: format!("tip record: {e}"),
                }
            })?)),
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The chain this ledger belongs to.
    pub fn chain_id(&self) -> &str {
        &self.chain_id
    }

    /// The last committed block, if any.
    pub fn tip(&self) -> Option<Tip> {
        *self.tip.lock().expect("tip lock poisoned")
    }

    /// The height the next block must have.
    pub fn next_height(&self) -> u64 {
        self.tip().map_or(0, |t| t.height + 1)
    }

    /// The state root after block `height` (the current root for the tip).
    pub fn state_root_at(&self, height: u64) -> Result<Option<Hash>, LedgerError> {
        match self.db.get_cf(self.cf(CF_ROOTS), be_u64(height))? {
            None => Ok(None),
            Some(b) => Hash::from_slice(&b)
                .map(Some)
                .ok_or_else(|| LedgerError::Corrupt {
                    height,
                    what: "state root record has the wrong length".into(),
                }),
        }
    }

    /// Commits a final block with its certificate and the executor's output, in one synced
    /// write. Checks that the block extends the tip, that the receipts match its transactions,
    /// and that the header's state claim matches the ledger's own roots.
    pub fn commit(
        &self,
        block: &Block,
        certificate: &Certificate,
        exec: &BlockWrites,
    ) -> Result<Tip, LedgerError> {
        if self.read_only {
            return Err(LedgerError::ReadOnly);
        }
        let mut tip_guard = self.tip.lock().expect("tip lock poisoned");
        let tip = *tip_guard;
        let h = &block.header;
        let expected_height = tip.map_or(0, |t| t.height + 1);
        if h.height != expected_height {
            return Err(LedgerError::WrongHeight {
                expected: expected_height,
                found: h.height,
            });
        }
        let expected_parent = tip.map_or(Hash::ZERO, |t| t.hash);
        if h.parent != expected_parent {
            return Err(LedgerError::WrongParent {
                height: h.height,
                expected: expected_parent,
                found: h.parent,
            });
        }
        self.check_state_claim(h)?;
        certificate.check_bounds()?;
        // Before anything is written: when failed runs have left four runs' worth in memory,
        // this commit fails with their error (see `tx_index.rs`).
        self.tx_index
            .maybe_write_run(&self.db, &self.run_sink, expected_height)?;
        if exec.receipts.len() != block.txs.len() {
            return Err(LedgerError::BadExecution {
                height: h.height,
                reason: format!(
                    "{} receipts for {} transactions",
                    exec.receipts.len(),
                    block.txs.len()
                ),
            });
        }

        let prev_root = tip.map_or(Hash::ZERO, |t| t.state_root);
        let state_root = next_state_root(&prev_root, h.height, &exec.writes);
        let block_hash = block.hash();
        let height_key = be_u64(h.height);

        let mut candidate = self.candidate.lock().expect("candidate lock poisoned");
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_CERTS), height_key, codec::encode(certificate));
        batch.put_cf(self.cf(CF_BLOCK_HASHES), block_hash.as_bytes(), height_key);
        let mut index_entries = Vec::with_capacity(exec.receipts.len());
        for (i, receipt) in exec.receipts.iter().enumerate() {
            let index = u32::try_from(i).expect("BLOCK_TXS_MAX fits in u32");
            if receipt.index != index || receipt.height != h.height {
                return Err(LedgerError::BadExecution {
                    height: h.height,
                    reason: format!(
                        "receipt {i} is for position {}/{}",
                        receipt.height, receipt.index
                    ),
                });
            }
            debug_assert_eq!(
                receipt.tx_hash,
                block.txs[i].hash(),
                "receipt {i} names another transaction"
            );
            // A duplicate keeps the index entry of its first execution.
            if receipt.status != TxStatus::Duplicate {
                index_entries.push((receipt.tx_hash, (h.height, index)));
            }
        }
        // One value per block: a receipt is read together with its block (for the inclusion
        // proof) anyway. The receipts are also where the index's newest entries are read from
        // after a restart.
        batch.put_cf(
            self.cf(CF_RECEIPTS),
            height_key,
            codec::encode(&exec.receipts),
        );
        let cf_state = self.cf(CF_STATE);
        for (key, value) in &exec.writes {
            match value {
                Some(v) => batch.put_cf(cf_state, key, v),
                None => batch.delete_cf(cf_state, key),
            }
        }
        batch.put_cf(self.cf(CF_DIFFS), height_key, codec::encode(&exec.writes));
        batch.put_cf(self.cf(CF_ROOTS), height_key, state_root.as_bytes());
        let new_tip = Tip {
            height: h.height,
            hash: block_hash,
            state_root,
        };
        batch.put_cf(self.cf(CF_META), META_TIP, codec::encode(&new_tip));
        // A block stored as the candidate for this height is kept, not written again. Written
        // last: nothing goes to the block files for a commit refused above.
        if *candidate != Some((h.height, block_hash)) {
            batch.put_cf(
                self.cf(CF_BLOCKS),
                height_key,
                self.store_block(h.height, block)?,
            );
        }

        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db.write_opt(batch, &wo)?;
        // Indexed before the new tip is visible: whoever sees the block sees its transactions.
        self.tx_index.add(index_entries);
        *tip_guard = Some(new_tip);
        *candidate = None;
        Ok(new_tip)
    }

    /// Stores `block`, the candidate for the next height (tip + 1), and the engine record
    /// `key = value` in one synced write, replacing any earlier candidate. The candidate is not
    /// part of the chain: reads by height stop at the tip. When the same block is committed,
    /// [`Ledger::commit`] keeps this copy instead of writing the block again.
    pub fn put_candidate(
        &self,
        block: &Block,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), LedgerError> {
        if self.read_only {
            return Err(LedgerError::ReadOnly);
        }
        let tip_guard = self.tip.lock().expect("tip lock poisoned");
        let next = tip_guard.map_or(0, |t| t.height + 1);
        if block.header.height != next {
            return Err(LedgerError::WrongHeight {
                expected: next,
                found: block.header.height,
            });
        }
        let mut candidate = self.candidate.lock().expect("candidate lock poisoned");
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_ENGINE), key, value);
        batch.put_cf(
            self.cf(CF_BLOCKS),
            be_u64(next),
            self.store_block(next, block)?,
        );
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db.write_opt(batch, &wo)?;
        *candidate = Some((next, block.hash()));
        Ok(())
    }

    /// The block last stored by [`Ledger::put_candidate`], while it is for the next height.
    /// After a restart, a runtime reads it once (for its engine); from then on a commit of the
    /// same block keeps the stored copy.
    pub fn candidate(&self) -> Result<Option<Block>, LedgerError> {
        // Under the tip lock: no commit can make the block at `next` final meanwhile.
        let tip_guard = self.tip.lock().expect("tip lock poisoned");
        let next = tip_guard.map_or(0, |t| t.height + 1);
        let block = self.block_at(next)?;
        *self.candidate.lock().expect("candidate lock poisoned") =
            block.as_ref().map(|b| (next, b.hash()));
        Ok(block)
    }

    fn check_state_claim(&self, h: &Header) -> Result<(), LedgerError> {
        let actual = if h.height == 0 {
            (h.state_height == 0).then_some(Hash::ZERO)
        } else if h.state_height >= h.height {
            None
        } else {
            self.state_root_at(h.state_height)?
        };
        match actual {
            Some(actual) if actual == h.state_root => Ok(()),
            actual => Err(LedgerError::StateRootMismatch {
                height: h.height,
                state_height: h.state_height,
                claimed: h.state_root,
                actual: actual.unwrap_or(Hash::ZERO),
            }),
        }
    }

    /// What the `blocks` column is to hold for `block`: its encoding (format 1), or its
    /// location once it is written and synced to the block files (format 2). Called with the
    /// tip lock held, as every append is for the next height.
    fn store_block(&self, height: u64, block: &Block) -> Result<Vec<u8>, LedgerError> {
        let Some(files) = &self.block_files else {
            return Ok(block.encode());
        };
        let last = || {
            let mut it = self.db.iterator_cf(self.cf(CF_BLOCKS), IteratorMode::End);
            match it.next().transpose()? {
                None => Ok(None),
                Some((key, value)) => {
                    let at = <[u8; 8]>::try_from(&key[..]).map_or(u64::MAX, u64::from_be_bytes);
                    Self::location(at, &value).map(Some)
                }
            }
        };
        Ok(files
            .append(height, &block.encode(), last)?
            .encode()
            .to_vec())
    }

    /// Stores an engine record (view number, last vote, ...) durably. The consensus runtime
    /// calls this for `Persist` actions and sends nothing until it returns.
    pub fn put_engine_record(&self, key: &[u8], value: &[u8]) -> Result<(), LedgerError> {
        if self.read_only {
            return Err(LedgerError::ReadOnly);
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db.put_cf_opt(self.cf(CF_ENGINE), key, value, &wo)?;
        Ok(())
    }

    /// Deletes an engine record durably.
    pub fn delete_engine_record(&self, key: &[u8]) -> Result<(), LedgerError> {
        if self.read_only {
            return Err(LedgerError::ReadOnly);
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db.delete_cf_opt(self.cf(CF_ENGINE), key, &wo)?;
        Ok(())
    }

    /// Every engine record, in key order.
    pub fn engine_records(&self) -> Result<Entries, LedgerError> {
        self.db
            .iterator_cf(self.cf(CF_ENGINE), IteratorMode::Start)
            .map(|item| {
                item.map(|(k, v)| (k.into_vec(), v.into_vec()))
                    .map_err(LedgerError::from)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A block committed after it was stored as the candidate is not written a second time
    /// (the `blocks` memtable gains one entry for it, not two); without a candidate, commit
    /// writes the block.
    #[test]
    fn a_committed_candidate_is_not_written_again() {
        let ledger = Ledger::open_in_memory("c").unwrap();
        let exec = crate::Executor::with_builtins("c");
        let cert = Certificate(vec![1]);
        let next = |ledger: &Ledger| {
            let tip = ledger.tip();
            let height = ledger.next_height();
            Block::build(
                height,
                tip.map_or(Hash::ZERO, |t| t.hash),
                height.saturating_sub(1),
                tip.map_or(Hash::ZERO, |t| t.state_root),
                1_000 + height,
                medchain_types::PublicKey([0; 32]),
                vec![],
                vec![],
            )
        };
        exec.apply(&ledger, &next(&ledger), &cert).unwrap();
        let entries = || {
            ledger
                .db
                .property_int_value_cf(ledger.cf(CF_BLOCKS), "rocksdb.num-entries-active-mem-table")
                .unwrap()
                .unwrap()
        };
        let before = entries();
        let b1 = next(&ledger);
        ledger.put_candidate(&b1, b"k", b"v").unwrap();
        assert_eq!(entries(), before + 1);
        exec.apply(&ledger, &b1, &cert).unwrap();
        assert_eq!(entries(), before + 1, "the candidate was written again");
        assert_eq!(ledger.block(1).unwrap(), Some(b1));
        exec.apply(&ledger, &next(&ledger), &cert).unwrap();
        assert_eq!(entries(), before + 2);
    }

    /// Flushed and compacted tables and blob files are written with `O_DIRECT` where the
    /// directory's filesystem allows it (the repository's own directory must: CI clones it
    /// onto a disk), and a ledger written that way reopens with its data; `/dev/shm` too.
    #[test]
    fn a_ledger_flushed_and_compacted_past_the_page_cache_reopens_intact() {
        let here = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        assert!(
            direct_io_works(here.path()),
            "{} refuses O_DIRECT: the direct-I/O path goes untested",
            here.path().display()
        );
        let mut dirs = vec![here];
        if let Ok(shm) = tempfile::tempdir_in("/dev/shm") {
            dirs.push(shm);
        }
        let record: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 251) as u8).collect();
        // Large enough for a blob file (`min_blob_size` is 4,096).
        let blocks: Vec<Vec<u8>> = (0..3u8).map(|k| vec![k; 100_000]).collect();
        for dir in &dirs {
            // A node's layout: neither directory exists yet.
            let path = dir.path().join("data").join("ledger");
            {
                let ledger = Ledger::open(&path, "c").unwrap();
                ledger.put_engine_record(b"k", &record).unwrap();
                for (k, block) in blocks.iter().enumerate() {
                    // One flush per value: several tables for the compaction to merge.
                    let cf = ledger.cf(CF_BLOCKS);
                    ledger.db.put_cf(cf, be_u64(k as u64), block).unwrap();
                    ledger.db.flush_cf(cf).unwrap();
                }
                ledger.db.flush_cf(ledger.cf(CF_ENGINE)).unwrap();
                let cf = ledger.cf(CF_BLOCKS);
                ledger.db.compact_range_cf(cf, None::<&[u8]>, None::<&[u8]>);
            }
            // RocksDB took the probe's answer (its log lists the options it opened with).
            let log = std::fs::read_to_string(path.join("LOG")).unwrap();
            let expected = format!(
                "Options.use_direct_io_for_flush_and_compaction: {}",
                u8::from(direct_io_works(&path))
            );
            assert!(
                log.contains(&expected),
                "{}: no {expected:?}",
                path.display()
            );
            let ledger = Ledger::open(&path, "c").unwrap();
            assert_eq!(
                ledger.engine_records().unwrap(),
                vec![(b"k".to_vec(), record.clone())],
                "{}",
                path.display()
            );
            for (k, block) in blocks.iter().enumerate() {
                let cf = ledger.cf(CF_BLOCKS);
                let read = ledger.db.get_cf(cf, be_u64(k as u64)).unwrap();
                assert_eq!(read.as_deref(), Some(&block[..]), "{}", path.display());
            }
        }
    }
}
