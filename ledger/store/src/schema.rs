//! The ledger's schema: its column families and their tuning, the `meta` keys and format
//! markers, and how heights and positions are keyed.

use rocksdb::{BlockBasedOptions, ColumnFamilyDescriptor, Options};
use std::path::Path;

pub(crate) const CF_BLOCKS: &str = "blocks";
pub(crate) const CF_CERTS: &str = "certs";
pub(crate) const CF_BLOCK_HASHES: &str = "block_hashes";
pub(crate) const CF_TX_INDEX: &str = "tx_index";
pub(crate) const CF_RECEIPTS: &str = "receipts";
pub(crate) const CF_STATE: &str = "state";
pub(crate) const CF_DIFFS: &str = "diffs";
pub(crate) const CF_ROOTS: &str = "roots";
pub(crate) const CF_ENGINE: &str = "engine";
pub(crate) const CF_META: &str = "meta";
pub(crate) const COLUMN_FAMILIES: [&str; 10] = [
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

pub(crate) const META_FORMAT: &[u8] = b"format";
pub(crate) const META_CHAIN_ID: &[u8] = b"chain_id";
pub(crate) const META_TIP: &[u8] = b"tip";
/// The first height whose `tx_index` entries the column family may lack, then the value this
/// one replaced (u64 BE each); opening the ledger reads them from the receipts of the heights
/// from there (a read-only open: from the replaced value). A ledger without it was written
/// before the index was written in runs, with every entry in the column.
pub(crate) const META_TX_INDEXED: &[u8] = b"tx_indexed";
/// Written once at creation; a directory without it is not a medchain ledger. Format 1 keeps
/// blocks in the `blocks` column; format 2 (every ledger created on disk now) keeps
/// them in block files and their locations in that column. Both are read and written.
pub(crate) const FORMAT_1: &[u8] = b"medchain-ledger/1";
pub(crate) const FORMAT_2: &[u8] = b"medchain-ledger/2";

pub(crate) fn be_u64(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

pub(crate) fn position_key(height: u64, index: u32) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..8].copy_from_slice(&height.to_be_bytes());
    k[8..].copy_from_slice(&index.to_be_bytes());
    k
}

pub(crate) fn parse_position(bytes: &[u8]) -> Option<(u64, u32)> {
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
pub(crate) fn column_families() -> Vec<ColumnFamilyDescriptor> {
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

pub(crate) fn db_options() -> Options {
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
/// `benches/RESULTS.md`, "Where a node's CPU goes"). Look-ups still read tables through the page cache; a table
/// written this way is read from the device the first time. The write-ahead log stays buffered.
pub(crate) fn direct_io_works(dir: &Path) -> bool {
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
