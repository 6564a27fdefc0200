//! The transaction index: where each executed transaction was first executed, by its hash.
//!
//! It is written in sorted runs instead of through RocksDB's memtable. Every block adds up to
//! 1,000 random 32-byte keys; in a memtable they must be sorted, either on insert (a skip list:
//! too slow for a 5 ms commit of 1,000 transactions) or when the memtable is flushed (a
//! hash-bucketed memtable: its flush re-inserts every entry into a skip list, up to a quarter of
//! a node's CPU while it runs; `benches/RESULTS.md`, "Ledger commit cost" and "Where a node's
//! CPU goes").
//!
//! Here a commit adds its block's entries to an in-memory map, the *tail*. When the tail holds
//! [`TAIL_MAX`] entries it is frozen, and a background thread sorts it once, writes it as one
//! table file and ingests that file into the `tx_index` column family, then records in `meta`
//! the first height whose entries the column family may lack (`tx_indexed`, with the value it
//! replaces). Look-ups read the tail, then the frozen tail, then the column family (whose Bloom
//! filters answer most misses).
//!
//! A run that fails (a full disk) is merged back into the tail and written again with the next
//! one; its error is kept for the node to report ([`TxIndex::take_error`]). Only when the tail
//! has grown to four runs' worth does a commit fail with it, which bounds the memory.
//!
//! The tail is derived data. Each block's receipts, written in its commit batch, name every
//! transaction's hash and whether it was a duplicate; opening the ledger rebuilds the tail from
//! the receipts of the heights from `tx_indexed` to the tip. A crash therefore loses nothing, and
//! a run ingested again after a crash (before `tx_indexed` was recorded) holds equal entries.
//! A read-only open beside a running node starts from the value `tx_indexed` replaced: RocksDB
//! may show it the record of a run whose file it does not see yet (it reads its manifest, then
//! its log), and that window is far shorter than the time between two runs.

use crate::error::LedgerError;
use medchain_types::Hash;
use rocksdb::{IngestExternalFileOptions, Options, SstFileWriter, WriteBatch, DB};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

/// Where a transaction was first executed: block height and index in the block.
pub(crate) type Position = (u64, u32);

/// Keyed by hashes that anyone can grind, so the hasher is seeded at random per process.
type Map = HashMap<Hash, Position, foldhash::fast::RandomState>;

/// Entries the tail holds before it is frozen and written as a run: about 13 s of a node's
/// commits at 20,000 transactions per second, 12 MB as a table file. The tail and a frozen
/// tail together take about 50 MB; up to four runs' worth while runs fail.
pub(crate) const TAIL_MAX: usize = 1 << 18;

/// The name of a run's table file while it is written, in the ledger's directory; ingestion
/// moves it into RocksDB, and opening the ledger removes one a crash left behind.
pub(crate) const RUN_FILE: &str = "tx-index-run.sst";

/// Where runs go.
#[derive(Clone)]
pub(crate) enum RunSink {
    /// Written as a table file in this directory and ingested (`direct`: with `O_DIRECT`).
    Ingest { dir: PathBuf, direct: bool },
    /// Written through a write batch: RocksDB's in-memory environment, whose files the process
    /// cannot write itself.
    Batch,
}

#[derive(Default)]
struct Tail {
    /// Entries of the blocks committed since the last run was frozen.
    active: Map,
    /// Entries being written as a run, readable until the column family has them.
    frozen: Option<Arc<Map>>,
}

/// The transaction index of one ledger (see the module's documentation).
pub(crate) struct TxIndex {
    tail: Arc<RwLock<Tail>>,
    worker: Mutex<Option<JoinHandle<Result<(), LedgerError>>>>,
    tail_max: AtomicUsize,
    /// The `tx_indexed` value on disk (what the next run's record replaces).
    indexed: Arc<AtomicU64>,
    /// The error of the last run that failed, until the node takes it.
    error: Mutex<Option<LedgerError>>,
}

/// The `tx_indexed` record: the first height whose entries the column may lack, then the value
/// it replaced.
pub(crate) fn encode_indexed(until: u64, replaced: u64) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&until.to_be_bytes());
    b[8..].copy_from_slice(&replaced.to_be_bytes());
    b
}

/// The inverse of [`encode_indexed`].
pub(crate) fn decode_indexed(b: &[u8]) -> Option<(u64, u64)> {
    let b: [u8; 16] = b.try_into().ok()?;
    Some((
        u64::from_be_bytes(b[..8].try_into().ok()?),
        u64::from_be_bytes(b[8..].try_into().ok()?),
    ))
}

impl TxIndex {
    /// An empty tail, which the ledger fills with [`TxIndex::add`] from the receipts of the
    /// heights its column family may lack; a run is written once it holds `tail_max` entries.
    /// `indexed`: the `tx_indexed` value on disk.
    pub(crate) fn new(tail_max: usize, indexed: u64) -> TxIndex {
        TxIndex {
            tail: Arc::new(RwLock::new(Tail::default())),
            worker: Mutex::new(None),
            tail_max: AtomicUsize::new(tail_max.max(1)),
            indexed: Arc::new(AtomicU64::new(indexed)),
            error: Mutex::new(None),
        }
    }

    /// Sets the `tx_indexed` value read at open.
    pub(crate) fn set_indexed(&self, indexed: u64) {
        self.indexed.store(indexed, Ordering::Relaxed);
    }

    /// The error of the last run that failed since the last call, if any (its entries are
    /// still in memory, to be written with the next run).
    pub(crate) fn take_error(&self) -> Option<LedgerError> {
        self.error.lock().expect("tx index error lock").take()
    }

    /// Sets the number of entries that makes a run (at least 1).
    pub(crate) fn set_tail_max(&self, tail_max: usize) {
        self.tail_max.store(tail_max.max(1), Ordering::Relaxed);
    }

    /// Adds the entries of one committed block. A hash already present keeps its first
    /// position (a later execution of it was a duplicate).
    pub(crate) fn add(&self, entries: impl IntoIterator<Item = (Hash, Position)>) {
        let mut tail = self.tail.write().expect("tx index lock");
        for (hash, position) in entries {
            tail.active.entry(hash).or_insert(position);
        }
    }

    /// Where `hash` was first executed, if the tail knows; `None` means: ask the column family.
    pub(crate) fn get(&self, hash: &Hash) -> Option<Position> {
        let tail = self.tail.read().expect("tx index lock");
        tail.active
            .get(hash)
            .or_else(|| tail.frozen.as_ref().and_then(|f| f.get(hash)))
            .copied()
    }

    /// For each hash, whether the tail knows it.
    pub(crate) fn known(&self, hashes: &[Hash]) -> Vec<bool> {
        let tail = self.tail.read().expect("tx index lock");
        hashes
            .iter()
            .map(|h| {
                tail.active.contains_key(h)
                    || tail.frozen.as_ref().is_some_and(|f| f.contains_key(h))
            })
            .collect()
    }

    /// Before the commit of the block at `next_height`: when the tail is full, waits for the
    /// previous run to be written (the back-pressure that bounds memory), then freezes the tail
    /// and starts writing it as a run. A failed previous run is kept for [`TxIndex::take_error`]
    /// and its entries are written with this one; the error is returned only when the tail holds
    /// four runs' worth.
    pub(crate) fn maybe_write_run(
        &self,
        db: &Arc<DB>,
        sink: &RunSink,
        next_height: u64,
    ) -> Result<(), LedgerError> {
        let tail_max = self.tail_max.load(Ordering::Relaxed);
        if self.tail.read().expect("tx index lock").active.len() < tail_max {
            return Ok(());
        }
        if let Err(e) = self.wait() {
            if self.tail.read().expect("tx index lock").active.len() >= 4 * tail_max {
                return Err(e);
            }
            *self.error.lock().expect("tx index error lock") = Some(e);
        }
        let run = {
            let mut tail = self.tail.write().expect("tx index lock");
            let run = Arc::new(std::mem::take(&mut tail.active));
            tail.frozen = Some(Arc::clone(&run));
            run
        };
        let (db, tail, indexed) = (
            Arc::clone(db),
            Arc::clone(&self.tail),
            Arc::clone(&self.indexed),
        );
        let sink = sink.clone();
        let handle = std::thread::Builder::new()
            .name("tx-index-run".into())
            .spawn(move || {
                let replaced = indexed.load(Ordering::Relaxed);
                let written = write_run(&db, &sink, &run, next_height, replaced);
                if written.is_ok() {
                    indexed.store(next_height, Ordering::Relaxed);
                }
                let mut tail = tail.write().expect("tx index lock");
                tail.frozen = None;
                if written.is_err() {
                    // Back into the tail: readable, and written with the next run.
                    for (hash, position) in run.iter() {
                        tail.active.entry(*hash).or_insert(*position);
                    }
                }
                written
            })
            .map_err(|e| {
                // Nothing will write the frozen entries: back into the tail.
                let mut tail = self.tail.write().expect("tx index lock");
                if let Some(run) = tail.frozen.take() {
                    tail.active = Arc::unwrap_or_clone(run);
                }
                LedgerError::TxIndex(format!("cannot start its writer: {e}"))
            })?;
        *self.worker.lock().expect("tx index worker lock") = Some(handle);
        Ok(())
    }

    /// Waits for the run being written, if any, and returns its result.
    pub(crate) fn wait(&self) -> Result<(), LedgerError> {
        let handle = self.worker.lock().expect("tx index worker lock").take();
        match handle {
            None => Ok(()),
            Some(h) => h.join().unwrap_or_else(|_| {
                // The writer died before clearing its run: back into the tail.
                let mut tail = self.tail.write().unwrap_or_else(|e| e.into_inner());
                if let Some(run) = tail.frozen.take() {
                    for (hash, position) in run.iter() {
                        tail.active.entry(*hash).or_insert(*position);
                    }
                }
                Err(LedgerError::TxIndex("its writer panicked".into()))
            }),
        }
    }
}

/// Sorts `run`, writes it to the `tx_index` column family and records `until` as the first
/// height the column family may lack, with `replaced`, the value it replaces.
fn write_run(
    db: &DB,
    sink: &RunSink,
    run: &Map,
    until: u64,
    replaced: u64,
) -> Result<(), LedgerError> {
    let cf = db
        .cf_handle(crate::schema::CF_TX_INDEX)
        .expect("every column family is opened");
    match sink {
        RunSink::Ingest { dir, direct } => {
            let mut entries: Vec<(&Hash, &Position)> = run.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            let mut opts: Options = crate::schema::tx_index_options();
            opts.set_use_direct_io_for_flush_and_compaction(*direct);
            let file = dir.join(RUN_FILE);
            let mut writer = SstFileWriter::create(&opts);
            writer.open(&file)?;
            for (hash, &(height, index)) in entries {
                writer.put(hash.as_bytes(), crate::schema::position_key(height, index))?;
            }
            writer.finish()?;
            let mut ingest = IngestExternalFileOptions::default();
            ingest.set_move_files(true);
            let ingested = db.ingest_external_file_cf_opts(cf, &ingest, vec![&file]);
            // Moved (hard-linked, then unlinked here) when ingested; removed when refused.
            let _ = std::fs::remove_file(&file);
            ingested?;
        }
        RunSink::Batch => {
            let mut batch = WriteBatch::default();
            for (hash, &(height, index)) in run {
                batch.put_cf(
                    cf,
                    hash.as_bytes(),
                    crate::schema::position_key(height, index),
                );
            }
            db.write(batch)?;
        }
    }
    let meta = db
        .cf_handle(crate::schema::CF_META)
        .expect("every column family is opened");
    db.put_cf(
        meta,
        crate::schema::META_TX_INDEXED,
        encode_indexed(until, replaced),
    )?;
    Ok(())
}
