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

use crate::block_files::{BlockFiles, Location};
use crate::error::LedgerError;
use crate::state::{next_state_root, state_key, WriteSet};
use crate::tx_index::{decode_indexed, encode_indexed, RunSink, TxIndex, RUN_FILE, TAIL_MAX};
use medchain_chaincode::{ChaincodeError, Entries, StateView, SCAN_LIMIT_MAX};
use medchain_types::{
    codec, Block, Certificate, Hash, Header, MerkleProof, Receipt, Transaction, TxStatus,
};
use rocksdb::{
    BlockBasedOptions, ColumnFamily, ColumnFamilyDescriptor, IteratorMode, Options, WriteBatch,
    WriteOptions, DB,
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const CF_BLOCKS: &str = "blocks";
const CF_CERTS: &str = "certs";
const CF_BLOCK_HASHES: &str = "block_hashes";
pub(crate) const CF_TX_INDEX: &str = "tx_index";
const CF_RECEIPTS: &str = "receipts";
const CF_STATE: &str = "state";
const CF_DIFFS: &str = "diffs";
const CF_ROOTS: &str = "roots";
const CF_ENGINE: &str = "engine";
pub(crate) const CF_META: &str = "meta";
const COLUMN_FAMILIES: [&str; 10] = [
    CF_BLOCKS,
    CF_CERTS,
    CF_BLOCK_HASHES,
    CF_TX_INDEX,
    CF_RECEIPTS,
    CF_STATE,
    CF_DIFFS,
    CF_ROOTS,
    CF_ENGINE,
    CF_META,
];

const META_FORMAT: &[u8] = b"format";
const META_CHAIN_ID: &[u8] = b"chain_id";
const META_TIP: &[u8] = b"tip";
/// The first height whose `tx_index` entries the column family may lack, then the value this
/// one replaced (u64 BE each); opening the ledger reads them from the receipts of the heights
/// from there (a read-only open: from the replaced value). A ledger without it was written
/// before the index was written in runs, with every entry in the column.
pub(crate) const META_TX_INDEXED: &[u8] = b"tx_indexed";
/// Written once at creation; a directory without it is not a medchain ledger. Format 1 keeps
/// blocks in the `blocks` column; format 2 (every ledger created on disk since session 17) keeps
/// them in block files and their locations in that column. Both are read and written.
const FORMAT_1: &[u8] = b"medchain-ledger/1";
const FORMAT_2: &[u8] = b"medchain-ledger/2";

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

/// What [`Ledger::verify_chain`] checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Blocks checked (tip height + 1, or 0 for an empty ledger).
    pub blocks: u64,
    /// Transactions checked.
    pub txs: u64,
    /// The tip, if any block exists.
    pub tip: Option<Tip>,
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

fn be_u64(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

pub(crate) fn position_key(height: u64, index: u32) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..8].copy_from_slice(&height.to_be_bytes());
    k[8..].copy_from_slice(&index.to_be_bytes());
    k
}

fn parse_position(bytes: &[u8]) -> Option<(u64, u32)> {
    let b: [u8; 12] = bytes.try_into().ok()?;
    Some((
        u64::from_be_bytes(b[..8].try_into().ok()?),
        u32::from_be_bytes(b[8..].try_into().ok()?),
    ))
}

/// The options of the `tx_index` column family, also those of the table files its runs are
/// written as. It is only ever read by exact key (every executed transaction is looked up for
/// the duplicate check, mostly a miss): a Bloom filter answers misses without reading data
/// blocks.
pub(crate) fn tx_index_options() -> Options {
    let mut opts = Options::default();
    opts.set_compression_type(rocksdb::DBCompressionType::None);
    let mut table = BlockBasedOptions::default();
    table.set_bloom_filter(10.0, false);
    opts.set_block_based_table_factory(&table);
    opts
}

/// Column families with their tuning.
///
/// `tx_index` takes 1,000 random 32-byte keys per block; they reach it in sorted runs, not
/// through its memtable (`tx_index.rs`), with [`tx_index_options`].
///
/// `blocks` holds values of up to 16 MiB: they go to blob files, so compaction moves pointers
/// instead of rewriting whole blocks.
fn column_families() -> Vec<ColumnFamilyDescriptor> {
    COLUMN_FAMILIES
        .iter()
        .map(|&name| {
            let mut opts = match name {
                CF_TX_INDEX => tx_index_options(),
                _ => Options::default(),
            };
            // No compression: the ledger is hashes, signatures and opaque payloads (Snappy
            // gains little), and an uncompressed ledger can be audited byte for byte (the
            // privacy test scans every node's ledger files for personal data).
            opts.set_compression_type(rocksdb::DBCompressionType::None);
            opts.set_blob_compression_type(rocksdb::DBCompressionType::None);
            if name == CF_BLOCKS {
                opts.set_enable_blob_files(true);
                opts.set_min_blob_size(4096);
            }
            ColumnFamilyDescriptor::new(name, opts)
        })
        .collect()
}

fn db_options() -> Options {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    // Commits are serialised by the tip lock, so there is one writer.
    opts.set_allow_concurrent_memtable_write(false);
    // Keep RocksDB's own logs small: a node can run for months.
    opts.set_keep_log_file_num(4);
    opts.set_max_log_file_size(8 << 20);
    opts
}

/// Whether files in `dir` can be written with `O_DIRECT`: some filesystems refuse it at open
/// (tmpfs before Linux 6.6) or at the first write (some FUSE ones), and RocksDB would then fail
/// its first flush and stop writing. The probe writes and syncs one aligned block to an unnamed
/// temporary file, so that a crash leaves nothing in the directory; a filesystem without
/// `O_TMPFILE` gets buffered writes.
///
/// Flushes and compactions write with `O_DIRECT` where it works (compactions then read their
/// input that way too). Each flush writes what the memtables hold (every block once more, in blob
/// files), and through the page cache each such write is a copy into freshly allocated pages
/// (measured: 7.5% of a saturated 4-node cluster's CPU in the flush threads' page-cache copies;
/// `benches/RESULTS.md`, session 14). Look-ups still read tables through the page cache; a table
/// written this way is read from the device the first time. The write-ahead log stays buffered.
fn direct_io_works(dir: &Path) -> bool {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    const BLOCK: usize = 4096;
    let Ok(mut file) = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_TMPFILE | libc::O_DIRECT)
        .open(dir)
    else {
        return false;
    };
    // O_DIRECT wants the buffer aligned as well as the length.
    let raw = vec![0u8; 2 * BLOCK];
    let off = raw.as_ptr().align_offset(BLOCK);
    off < BLOCK && file.write_all(&raw[off..off + BLOCK]).is_ok() && file.sync_all().is_ok()
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
        exec: &crate::BlockWrites,
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

    fn decode_at<T: serde::de::DeserializeOwned>(
        height: u64,
        what: &str,
        bytes: &[u8],
    ) -> Result<T, LedgerError> {
        codec::decode(bytes).map_err(|e| LedgerError::Corrupt {
            height,
            what: format!("{what}: {e}"),
        })
    }

    /// The block at `height`, if it is final (at or below the tip).
    pub fn block(&self, height: u64) -> Result<Option<Block>, LedgerError> {
        if height >= self.next_height() {
            return Ok(None);
        }
        self.block_at(height)
    }

    /// What the `blocks` column holds at `height`: a final block, or above the tip a candidate.
    fn block_at(&self, height: u64) -> Result<Option<Block>, LedgerError> {
        match self.block_bytes(height)? {
            None => Ok(None),
            Some(b) => Ok(Some(Self::decode_at(height, "block", &b)?)),
        }
    }

    /// The encoding of the block the `blocks` column holds at `height`: its value in format 1,
    /// the record its value points at in format 2.
    fn block_bytes(&self, height: u64) -> Result<Option<Vec<u8>>, LedgerError> {
        let Some(value) = self.db.get_cf(self.cf(CF_BLOCKS), be_u64(height))? else {
            return Ok(None);
        };
        let Some(files) = &self.block_files else {
            return Ok(Some(value));
        };
        let loc = Self::location(height, &value)?;
        files.read(height, &loc).map(Some)
    }

    fn location(height: u64, value: &[u8]) -> Result<Location, LedgerError> {
        Location::decode(value).ok_or_else(|| LedgerError::Corrupt {
            height,
            what: format!(
                "block location: {} bytes that are not a location in the block files",
                value.len()
            ),
        })
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

    /// The header of the block at `height`.
    pub fn header(&self, height: u64) -> Result<Option<Header>, LedgerError> {
        Ok(self.block(height)?.map(|b| b.header))
    }

    /// The height of the block with this hash.
    pub fn height_of(&self, hash: &Hash) -> Result<Option<u64>, LedgerError> {
        match self.db.get_cf(self.cf(CF_BLOCK_HASHES), hash.as_bytes())? {
            None => Ok(None),
            Some(b) => Ok(Some(u64::from_be_bytes(b.as_slice().try_into().map_err(
                |_| LedgerError::Corrupt {
                    height: 0,
                    what: format!("hash index entry for {hash}"),
                },
            )?))),
        }
    }

    /// The block with this hash.
    pub fn block_by_hash(&self, hash: &Hash) -> Result<Option<Block>, LedgerError> {
        match self.height_of(hash)? {
            None => Ok(None),
            Some(h) => self.block(h),
        }
    }

    /// The last committed block.
    pub fn latest_block(&self) -> Result<Option<Block>, LedgerError> {
        match self.tip() {
            None => Ok(None),
            Some(t) => self.block(t.height),
        }
    }

    /// The finality certificate of the block at `height`.
    pub fn certificate(&self, height: u64) -> Result<Option<Certificate>, LedgerError> {
        match self.db.get_cf(self.cf(CF_CERTS), be_u64(height))? {
            None => Ok(None),
            Some(b) => Ok(Some(Self::decode_at(height, "certificate", &b)?)),
        }
    }

    /// The receipts of the block at `height`, in transaction order.
    pub fn receipts(&self, height: u64) -> Result<Option<Vec<Receipt>>, LedgerError> {
        match self.db.get_cf(self.cf(CF_RECEIPTS), be_u64(height))? {
            None => Ok(None),
            Some(b) => Ok(Some(Self::decode_at(height, "receipts", &b)?)),
        }
    }

    /// The receipt of the transaction at `(height, index)`.
    pub fn receipt_at(&self, height: u64, index: u32) -> Result<Option<Receipt>, LedgerError> {
        Ok(self.receipts(height)?.and_then(|mut r| {
            let i = index as usize;
            (i < r.len()).then(|| r.swap_remove(i))
        }))
    }

    /// Where a transaction was first executed.
    pub fn tx_position(&self, tx_hash: &Hash) -> Result<Option<(u64, u32)>, LedgerError> {
        if let Some(position) = self.tx_index.get(tx_hash) {
            return Ok(Some(position));
        }
        match self.db.get_cf(self.cf(CF_TX_INDEX), tx_hash.as_bytes())? {
            None => Ok(None),
            Some(b) => parse_position(&b)
                .map(Some)
                .ok_or_else(|| LedgerError::Corrupt {
                    height: 0,
                    what: format!("tx index entry for {tx_hash}"),
                }),
        }
    }

    /// Which of `tx_hashes` were executed already, in one batched index read (RocksDB
    /// MultiGet: about one lookup's cost per key less than [`Ledger::tx_position`] one by one).
    pub fn txs_known(&self, tx_hashes: &[Hash]) -> Result<Vec<bool>, LedgerError> {
        let mut known = self.tx_index.known(tx_hashes);
        let (missed, asked): (Vec<usize>, Vec<&[u8]>) = known
            .iter()
            .zip(tx_hashes)
            .enumerate()
            .filter(|(_, (k, _))| !**k)
            .map(|(i, (_, h))| (i, &h.as_bytes()[..]))
            .unzip();
        if asked.is_empty() {
            return Ok(known);
        }
        let found = self
            .db
            .batched_multi_get_cf(self.cf(CF_TX_INDEX), asked, false);
        for (i, r) in missed.into_iter().zip(found) {
            known[i] = r?.is_some();
        }
        Ok(known)
    }

    /// The receipt of a committed transaction (reads the index and that block's receipts only).
    pub fn receipt(&self, tx_hash: &Hash) -> Result<Option<Receipt>, LedgerError> {
        let Some((height, index)) = self.tx_position(tx_hash)? else {
            return Ok(None);
        };
        self.receipt_at(height, index)?
            .map(Some)
            .ok_or_else(|| LedgerError::Corrupt {
                height,
                what: format!("receipt of indexed transaction {tx_hash} is missing"),
            })
    }

    /// A committed transaction with its receipt, header, inclusion proof and certificate.
    pub fn transaction(&self, tx_hash: &Hash) -> Result<Option<TxRecord>, LedgerError> {
        let Some((height, index)) = self.tx_position(tx_hash)? else {
            return Ok(None);
        };
        let corrupt = |what: &str| LedgerError::Corrupt {
            height,
            what: what.to_owned(),
        };
        let block = self
            .block(height)?
            .ok_or_else(|| corrupt("indexed block is missing"))?;
        let hashes = block.tx_hashes();
        let proof = MerkleProof::build(&hashes, index as usize)
            .ok_or_else(|| corrupt("indexed position is past the block's end"))?;
        if hashes[index as usize] != *tx_hash {
            return Err(corrupt("tx index points at another transaction"));
        }
        let receipt = self
            .receipt_at(height, index)?
            .ok_or_else(|| corrupt("receipt is missing"))?;
        let certificate = self.certificate(height)?.unwrap_or_default();
        let Block { header, mut txs } = block;
        Ok(Some(TxRecord {
            tx: txs.swap_remove(index as usize),
            receipt,
            header,
            proof,
            certificate,
        }))
    }

    /// The value of a full state key.
    pub fn state_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, LedgerError> {
        Ok(self.db.get_cf(self.cf(CF_STATE), key)?)
    }

    /// Up to `limit` state entries whose full key starts with `prefix`, after `start_after`.
    pub fn state_scan(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, LedgerError> {
        let from = start_after.unwrap_or(prefix);
        let iter = self.db.iterator_cf(
            self.cf(CF_STATE),
            IteratorMode::From(from, rocksdb::Direction::Forward),
        );
        let mut out = Vec::new();
        for item in iter {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item?;
            if !k.starts_with(prefix) {
                break;
            }
            if Some(&*k) == start_after {
                continue;
            }
            out.push((k.into_vec(), v.into_vec()));
        }
        Ok(out)
    }

    /// A read-only view of one chaincode's namespace at the tip.
    pub fn view<'a>(&'a self, namespace: &str) -> NamespaceView<'a> {
        NamespaceView {
            ledger: self,
            prefix: state_key(namespace, b""),
        }
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

    /// Walks every block from genesis and checks the hash links, heights, transaction roots,
    /// indexes, receipts and state roots, and that the tip is the last block. `progress` is
    /// called with `(checked, total)` every 1,000 blocks and at the end.
    pub fn verify_chain(
        &self,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<VerifyReport, LedgerError> {
        let tip = self.tip();
        let total = tip.map_or(0, |t| t.height + 1);
        let mut prev_hash = Hash::ZERO;
        let mut prev_root = Hash::ZERO;
        let mut txs = 0u64;
        for height in 0..total {
            let corrupt = |what: String| LedgerError::Corrupt { height, what };
            let bytes = self
                .block_bytes(height)?
                .ok_or_else(|| corrupt("block is missing".into()))?;
            let block = Block::decode(&bytes).map_err(|e| corrupt(format!("block: {e}")))?;
            let tx_hashes = block.tx_hashes();
            let h = &block.header;
            if h.height != height {
                return Err(corrupt(format!("block records height {}", h.height)));
            }
            if h.parent != prev_hash {
                return Err(corrupt(format!(
                    "parent is {}, previous block is {prev_hash}",
                    h.parent
                )));
            }
            let hash = h.hash();
            if self.height_of(&hash)? != Some(height) {
                return Err(corrupt("block hash index does not point here".into()));
            }
            self.certificate(height)?
                .ok_or_else(|| corrupt("certificate is missing".into()))?;
            let writes: WriteSet = match self.db.get_cf(self.cf(CF_DIFFS), be_u64(height))? {
                Some(b) => Self::decode_at(height, "write set", &b)?,
                None => return Err(corrupt("write set is missing".into())),
            };
            let root = next_state_root(&prev_root, height, &writes);
            if self.state_root_at(height)? != Some(root) {
                return Err(corrupt(
                    "stored state root differs from the one recomputed from the writes".into(),
                ));
            }
            self.check_state_claim(h)
                .map_err(|e| corrupt(e.to_string()))?;
            let receipts = self
                .receipts(height)?
                .ok_or_else(|| corrupt("receipts are missing".into()))?;
            if receipts.len() != tx_hashes.len() {
                return Err(corrupt(format!(
                    "{} receipts for {} transactions",
                    receipts.len(),
                    tx_hashes.len()
                )));
            }
            for (i, (tx_hash, receipt)) in tx_hashes.iter().zip(&receipts).enumerate() {
                let index = i as u32;
                if receipt.tx_hash != *tx_hash || receipt.height != height || receipt.index != index
                {
                    return Err(corrupt(format!(
                        "receipt {i} describes another transaction"
                    )));
                }
                match self.tx_position(tx_hash)? {
                    Some(pos) if pos == (height, index) => {}
                    Some(pos) if receipt.status == TxStatus::Duplicate && pos < (height, index) => {
                    }
                    other => {
                        return Err(corrupt(format!(
                            "tx index for transaction {i} is {other:?}"
                        )))
                    }
                }
            }
            txs += tx_hashes.len() as u64;
            prev_hash = hash;
            prev_root = root;
            if (height + 1) % 1000 == 0 {
                progress(height + 1, total);
            }
        }
        if let Some(t) = tip {
            if t.hash != prev_hash || t.state_root != prev_root {
                return Err(LedgerError::Corrupt {
                    height: t.height,
                    what: "tip record does not match the last block".into(),
                });
            }
        }
        // Above the tip, only a candidate for the next height may be stored.
        if let Some(bytes) = self.block_bytes(total)? {
            let corrupt = |what: String| LedgerError::Corrupt {
                height: total,
                what,
            };
            let block = Block::decode(&bytes)
                .map_err(|e| corrupt(format!("candidate block above the tip: {e}")))?;
            if block.header.height != total || block.header.parent != prev_hash {
                return Err(corrupt(format!(
                    "the block above the tip is not a candidate for height {total}: it records \
                     height {} and parent {}",
                    block.header.height, block.header.parent
                )));
            }
        }
        if self
            .db
            .get_cf(self.cf(CF_BLOCKS), be_u64(total + 1))?
            .is_some()
        {
            return Err(LedgerError::Corrupt {
                height: total + 1,
                what: "a block exists above the tip and its candidate".into(),
            });
        }
        progress(total, total);
        Ok(VerifyReport {
            blocks: total,
            txs,
            tip,
        })
    }
}

/// One chaincode's namespace, read-only, at the ledger's tip.
#[derive(Debug)]
pub struct NamespaceView<'a> {
    ledger: &'a Ledger,
    prefix: Vec<u8>,
}

pub(crate) fn storage_error(e: LedgerError) -> ChaincodeError {
    ChaincodeError::Storage(e.to_string())
}

impl StateView for NamespaceView<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ChaincodeError> {
        let mut full = self.prefix.clone();
        full.extend_from_slice(key);
        self.ledger.state_get(&full).map_err(storage_error)
    }

    fn scan(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, ChaincodeError> {
        let full_prefix = [self.prefix.as_slice(), prefix].concat();
        let full_start = start_after.map(|s| [self.prefix.as_slice(), s].concat());
        let rows = self
            .ledger
            .state_scan(
                &full_prefix,
                full_start.as_deref(),
                limit.min(SCAN_LIMIT_MAX),
            )
            .map_err(storage_error)?;
        let n = self.prefix.len();
        Ok(rows
            .into_iter()
            .map(|(k, v)| (k[n..].to_vec(), v))
            .collect())
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
