//! The RocksDB ledger through its public API: commit, reads, proofs, recovery, refusals and
//! corruption detection.

mod common;

use common::*;
use medchain_chaincode::builtin::{Kv, KvQuery};
use medchain_ledger::{Executor, Ledger, LedgerError};
use medchain_types::{Certificate, Hash, TxStatus};

#[test]
fn commit_read_back_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let exec = Executor::with_builtins(CHAIN);
    let tx_hash;
    {
        let ledger = Ledger::open(dir.path(), CHAIN).unwrap();
        assert_eq!(ledger.tip(), None);
        apply(&ledger, &exec, vec![]);
        let txs = vec![put("a", "1", 1), put("b", "2", 2), put("c", "3", 3)];
        tx_hash = txs[1].hash();
        let receipts = apply(&ledger, &exec, txs);
        assert!(receipts.iter().all(|r| r.status == TxStatus::Success));
        assert_eq!(ledger.tip().unwrap().height, 1);
    }
    let ledger = Ledger::open(dir.path(), CHAIN).unwrap();
    let tip = ledger.tip().expect("tip recovered on open");
    assert_eq!(tip.height, 1);
    let latest = ledger.latest_block().unwrap().unwrap();
    assert_eq!(latest.hash(), tip.hash);
    assert_eq!(ledger.block_by_hash(&tip.hash).unwrap().unwrap(), latest);
    assert_eq!(
        ledger.certificate(1).unwrap().unwrap(),
        Certificate(vec![1, 2, 3])
    );

    let rec = ledger.transaction(&tx_hash).unwrap().unwrap();
    assert_eq!(rec.tx.hash(), tx_hash);
    assert_eq!((rec.receipt.height, rec.receipt.index), (1, 1));
    assert!(rec.header.proves_inclusion(&tx_hash, &rec.proof));
    assert_eq!(rec.header.hash(), tip.hash);
    assert!(ledger.transaction(&Hash::ZERO).unwrap().is_none());

    let got = exec
        .query(
            &ledger,
            "kv",
            &Kv::request(&KvQuery::Get { key: b"b".to_vec() }),
        )
        .unwrap();
    assert_eq!(Kv::decode_get(&got).unwrap(), Some(b"2".to_vec()));
    let report = ledger.verify_chain(|_, _| {}).unwrap();
    assert_eq!((report.blocks, report.txs), (2, 3));
}

#[test]
fn out_of_order_and_forked_blocks_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let exec = Executor::with_builtins(CHAIN);
    let ledger = Ledger::open(dir.path(), CHAIN).unwrap();
    apply(&ledger, &exec, vec![]);
    let good = next_block(&ledger, vec![put("k", "v", 1)]);

    let mut skip = good.clone();
    skip.header.height = 5;
    let out = exec.execute(&ledger, &skip).unwrap();
    assert!(matches!(
        ledger.commit(&skip, &Certificate::default(), &out),
        Err(LedgerError::WrongHeight {
            expected: 1,
            found: 5
        })
    ));

    let mut fork = good.clone();
    fork.header.parent = Hash([9; 32]);
    let out = exec.execute(&ledger, &fork).unwrap();
    assert!(matches!(
        ledger.commit(&fork, &Certificate::default(), &out),
        Err(LedgerError::WrongParent { .. })
    ));

    let mut lying = good.clone();
    lying.header.state_root = Hash([1; 32]);
    let out = exec.execute(&ledger, &lying).unwrap();
    assert!(matches!(
        ledger.commit(&lying, &Certificate::default(), &out),
        Err(LedgerError::StateRootMismatch { .. })
    ));

    let mut out = exec.execute(&ledger, &good).unwrap();
    out.receipts.clear();
    assert!(matches!(
        ledger.commit(&good, &Certificate::default(), &out),
        Err(LedgerError::BadExecution { .. })
    ));

    // Nothing above was written; the good block still commits.
    assert_eq!(ledger.tip().unwrap().height, 0);
    exec.apply(&ledger, &good, &Certificate::default()).unwrap();
    ledger.verify_chain(|_, _| {}).unwrap();
}

#[test]
fn a_directory_that_is_not_a_ledger_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let err = Ledger::open_read_only(&missing).unwrap_err();
    assert!(err.to_string().contains("no such directory"), "{err}");

    let file = dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    assert!(Ledger::open_read_only(&file)
        .unwrap_err()
        .to_string()
        .contains("not a directory"));

    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("notes.txt"), "hello").unwrap();
    let err = Ledger::open(&other, CHAIN).unwrap_err();
    assert!(matches!(err, LedgerError::NotALedger { .. }), "{err}");
    assert!(err.to_string().contains("no CURRENT file"), "{err}");
    assert_eq!(
        std::fs::read_dir(&other).unwrap().count(),
        1,
        "nothing written into a foreign directory"
    );

    // A RocksDB database of some other program.
    let foreign = dir.path().join("foreign");
    {
        let mut opts = rocksdb::Options::default();
        opts.create_if_missing(true);
        let db = rocksdb::DB::open(&opts, &foreign).unwrap();
        db.put(b"k", b"v").unwrap();
    }
    let err = Ledger::open(&foreign, CHAIN).unwrap_err();
    assert!(
        err.to_string().contains("is not a medchain ledger"),
        "{err}"
    );

    let ledger_dir = dir.path().join("ledger");
    drop(Ledger::open(&ledger_dir, CHAIN).unwrap());
    let err = Ledger::open(&ledger_dir, "another-chain").unwrap_err();
    assert!(matches!(err, LedgerError::WrongChain { .. }), "{err}");
}

#[test]
fn read_only_open_refuses_writes_and_works_beside_a_writer() {
    let dir = tempfile::tempdir().unwrap();
    let exec = Executor::with_builtins(CHAIN);
    let ledger = Ledger::open(dir.path(), CHAIN).unwrap();
    apply(&ledger, &exec, vec![put("a", "1", 1)]);
    let ro = Ledger::open_read_only(dir.path()).unwrap();
    assert_eq!(ro.tip(), ledger.tip());
    assert_eq!(ro.verify_chain(|_, _| {}).unwrap().blocks, 1);
    let block = next_block(&ro, vec![]);
    assert!(matches!(
        exec.apply(&ro, &block, &Certificate::default()),
        Err(LedgerError::ReadOnly)
    ));
    assert!(matches!(
        ro.put_engine_record(b"k", b"v"),
        Err(LedgerError::ReadOnly)
    ));
}

#[test]
fn engine_records_persist() {
    let dir = tempfile::tempdir().unwrap();
    {
        let ledger = Ledger::open(dir.path(), CHAIN).unwrap();
        ledger.put_engine_record(b"view", b"3").unwrap();
        ledger.put_engine_record(b"vote/7", b"x").unwrap();
        ledger.put_engine_record(b"view", b"4").unwrap();
    }
    let ledger = Ledger::open(dir.path(), CHAIN).unwrap();
    assert_eq!(
        ledger.engine_records().unwrap(),
        vec![
            (b"view".to_vec(), b"4".to_vec()),
            (b"vote/7".to_vec(), b"x".to_vec())
        ]
    );
}

/// Opens the ledger's RocksDB directly, as a disk fault or an attacker with file access would.
fn tamper(path: &std::path::Path, cf: &str, key: &[u8], value: Option<&[u8]>) {
    let cfs = rocksdb::DB::list_cf(&rocksdb::Options::default(), path).unwrap();
    let db = rocksdb::DB::open_cf(&rocksdb::Options::default(), path, &cfs).unwrap();
    let handle = db.cf_handle(cf).unwrap();
    match value {
        Some(v) => db.put_cf(handle, key, v).unwrap(),
        None => db.delete_cf(handle, key).unwrap(),
    }
}

/// The value the `blocks` column holds at `height` (in format 2, the block's location).
fn raw_block_value(path: &std::path::Path, height: u64) -> Vec<u8> {
    let cfs = rocksdb::DB::list_cf(&rocksdb::Options::default(), path).unwrap();
    let db = rocksdb::DB::open_cf_for_read_only(&rocksdb::Options::default(), path, &cfs, false)
        .unwrap();
    db.get_cf(db.cf_handle("blocks").unwrap(), height.to_be_bytes())
        .unwrap()
        .unwrap()
}

const FILE_0: &str = "block-files/00000000.blk";

/// Appends a well-formed record holding `body` to the first block file, as someone with write
/// access to the disk could (the layout is documented in `block_files.rs`), and returns the
/// location value that points at it.
fn forge_record(path: &std::path::Path, height: u64, body: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let file = path.join(FILE_0);
    let offset = std::fs::metadata(&file).unwrap().len();
    assert_eq!(offset % 4096, 0);
    let mut record = b"MCBLK\0\0\x01".to_vec();
    record.extend(height.to_be_bytes());
    record.extend((body.len() as u64).to_be_bytes());
    record.extend([0; 8]);
    record.extend(body);
    record.resize(record.len().div_ceil(4096) * 4096, 0);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .unwrap();
    f.write_all(&record).unwrap();
    let mut location = 0u32.to_be_bytes().to_vec();
    location.extend(offset.to_be_bytes());
    location.extend((body.len() as u32).to_be_bytes());
    location.extend(blake3::hash(body).as_bytes());
    location
}

fn build_chain(path: &std::path::Path, blocks: u64) {
    let exec = Executor::with_builtins(CHAIN);
    let ledger = Ledger::open(path, CHAIN).unwrap();
    for h in 0..blocks {
        apply(
            &ledger,
            &exec,
            vec![put("k", &format!("v{h}"), h), put(&format!("x{h}"), "y", h)],
        );
    }
}

fn verify_fails_at(path: &std::path::Path, height: u64, needle: &str) {
    let ledger = Ledger::open_read_only(path).unwrap();
    let err = ledger.verify_chain(|_, _| {}).unwrap_err();
    match &err {
        LedgerError::Corrupt { height: h, what } => {
            assert_eq!(*h, height, "{err}");
            assert!(what.contains(needle), "{err}");
        }
        other => panic!("expected corruption at {height}, got {other}"),
    }
}

#[test]
fn verify_chain_finds_corruption() {
    struct Case {
        cf: &'static str,
        key: Vec<u8>,
        value: Option<Vec<u8>>,
        height: u64,
        needle: &'static str,
    }
    let at = |h: u64| h.to_be_bytes().to_vec();
    let empty_writes = medchain_types::codec::encode(&medchain_ledger::WriteSet::new());
    let receipts_of_block_1 = {
        let dir = tempfile::tempdir().unwrap();
        build_chain(dir.path(), 3);
        let ledger = Ledger::open_read_only(dir.path()).unwrap();
        medchain_types::codec::encode(&ledger.receipts(1).unwrap().unwrap())
    };
    // Chains built alike are alike, block files included: block 2's location in another chain.
    let block_2_location = {
        let dir = tempfile::tempdir().unwrap();
        build_chain(dir.path(), 6);
        raw_block_value(dir.path(), 2)
    };
    let cases = [
        // A truncated block location.
        Case {
            cf: "blocks",
            key: at(3),
            value: Some(vec![1, 0, 0]),
            height: 3,
            needle: "block location: 3 bytes",
        },
        // A location past the end of the block file.
        Case {
            cf: "blocks",
            key: at(2),
            value: Some({
                let mut l = block_2_location.clone();
                l[4..12].copy_from_slice(&(1u64 << 20).to_be_bytes());
                l
            }),
            height: 2,
            needle: "cannot be read",
        },
        // A location with another record's digest.
        Case {
            cf: "blocks",
            key: at(2),
            value: Some({
                let mut l = block_2_location.clone();
                l[16] ^= 1;
                l
            }),
            height: 2,
            needle: "does not match its digest",
        },
        // A missing block.
        Case {
            cf: "blocks",
            key: at(4),
            value: None,
            height: 4,
            needle: "block is missing",
        },
        // A changed state write.
        Case {
            cf: "diffs",
            key: at(1),
            value: Some(empty_writes),
            height: 1,
            needle: "state root",
        },
        // A block's receipts removed.
        Case {
            cf: "receipts",
            key: at(2),
            value: None,
            height: 2,
            needle: "receipts are missing",
        },
        // Above the tip (5), only a candidate for height 6 may be stored.
        Case {
            cf: "blocks",
            key: at(7),
            value: Some(vec![1, 0, 0]),
            height: 7,
            needle: "above the tip and its candidate",
        },
        Case {
            cf: "blocks",
            key: at(6),
            value: Some(block_2_location),
            height: 6,
            needle: "not a candidate for height 6",
        },
        // A block's receipts replaced by those of another block.
        Case {
            cf: "receipts",
            key: at(3),
            value: Some(receipts_of_block_1),
            height: 3,
            needle: "receipt 0 describes another transaction",
        },
    ];
    for c in cases {
        let dir = tempfile::tempdir().unwrap();
        build_chain(dir.path(), 6);
        tamper(dir.path(), c.cf, &c.key, c.value.as_deref());
        verify_fails_at(dir.path(), c.height, c.needle);
    }

    // A block replaced by a well-formed block with different content, record and location
    // both forged: the next block's parent link no longer matches.
    let dir = tempfile::tempdir().unwrap();
    build_chain(dir.path(), 6);
    let forged = {
        let ledger = Ledger::open_read_only(dir.path()).unwrap();
        let mut b = ledger.block(2).unwrap().unwrap();
        b.header.time_ms += 1;
        b.encode()
    };
    let location = forge_record(dir.path(), 2, &forged);
    tamper(dir.path(), "blocks", &2u64.to_be_bytes(), Some(&location));
    verify_fails_at(dir.path(), 2, "hash index");

    // A byte of a block changed on disk, the location left as it was.
    let dir = tempfile::tempdir().unwrap();
    build_chain(dir.path(), 6);
    let location = raw_block_value(dir.path(), 4);
    let offset = u64::from_be_bytes(location[4..12].try_into().unwrap());
    let file = dir.path().join(FILE_0);
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[offset as usize + 100] ^= 0x20;
    std::fs::write(&file, bytes).unwrap();
    verify_fails_at(dir.path(), 4, "does not match its digest");
    // A block file lost: even the tip's block is gone, which opening checks.
    std::fs::remove_file(&file).unwrap();
    let err = Ledger::open_read_only(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("height 5") && err.contains("cannot be opened"),
        "{err}"
    );
}

/// Blocks live in block files (format 2): a reopened ledger appends after the last block its
/// `blocks` column points at, over whatever a crash left past it, and a writer that cannot
/// write its block files refuses the commit with the file named, leaving the ledger as it was.
#[test]
fn block_files_survive_reopen_leftovers_and_write_failures() {
    let dir = tempfile::tempdir().unwrap();
    build_chain(dir.path(), 3);
    let file = dir.path().join(FILE_0);
    let end = std::fs::metadata(&file).unwrap().len();
    // What a crash between a record's write and its batch leaves: a record nothing points at.
    forge_record(dir.path(), 3, b"left over by a crash");
    assert!(std::fs::metadata(&file).unwrap().len() > end);
    build_chain(dir.path(), 2);
    let next = raw_block_value(dir.path(), 3);
    assert_eq!(
        u64::from_be_bytes(next[4..12].try_into().unwrap()),
        end,
        "the leftover record is overwritten"
    );
    let ledger = Ledger::open(dir.path(), CHAIN).unwrap();
    let report = ledger.verify_chain(|_, _| {}).unwrap();
    assert_eq!(report.blocks, 5);

    // The block files cannot be written (their directory is gone: permissions would not stop
    // root): the commit fails with the file named, nothing of it is stored, and the same
    // ledger commits again once the directory is back.
    let exec = Executor::with_builtins(CHAIN);
    let files_dir = dir.path().join("block-files");
    let moved = dir.path().join("moved");
    std::fs::rename(&files_dir, &moved).unwrap();
    std::fs::write(&files_dir, b"not a directory").unwrap();
    let block = next_block(&ledger, vec![put("z", "1", 99)]);
    let err = exec
        .apply(&ledger, &block, &Certificate(vec![1]))
        .unwrap_err();
    assert!(
        matches!(err, LedgerError::BlockFile { .. }) && err.to_string().contains("block-files"),
        "{err}"
    );
    assert_eq!(ledger.tip().unwrap().height, 4, "nothing committed");
    std::fs::remove_file(&files_dir).unwrap();
    std::fs::rename(&moved, &files_dir).unwrap();
    exec.apply(&ledger, &block, &Certificate(vec![1])).unwrap();
    drop(ledger);
    build_chain(dir.path(), 1);
    let ledger = Ledger::open_read_only(dir.path()).unwrap();
    assert_eq!(ledger.verify_chain(|_, _| {}).unwrap().blocks, 7);
}

/// A ledger of format 1 (blocks in the `blocks` column) opens, reads, verifies and grows in that
/// format.
#[test]
fn a_format_1_ledger_keeps_its_blocks_in_rocksdb() {
    let dir = tempfile::tempdir().unwrap();
    build_chain(dir.path(), 3);
    // Rewrite it as format 1: blocks inline, no block files.
    let blocks: Vec<Vec<u8>> = {
        let ledger = Ledger::open_read_only(dir.path()).unwrap();
        (0..3)
            .map(|h| ledger.block(h).unwrap().unwrap().encode())
            .collect()
    };
    for (h, b) in blocks.iter().enumerate() {
        tamper(dir.path(), "blocks", &(h as u64).to_be_bytes(), Some(b));
    }
    tamper(dir.path(), "meta", b"format", Some(b"medchain-ledger/1"));
    std::fs::remove_dir_all(dir.path().join("block-files")).unwrap();
    build_chain(dir.path(), 2);
    assert!(!dir.path().join("block-files").exists());
    let ledger = Ledger::open_read_only(dir.path()).unwrap();
    assert_eq!(ledger.verify_chain(|_, _| {}).unwrap().blocks, 5);
    assert_eq!(
        raw_block_value(dir.path(), 4),
        ledger.block(4).unwrap().unwrap().encode()
    );
}

/// A candidate block (PBFT's prepared block) is stored above the tip together with an engine
/// record: reads by height do not see it, a reopen returns it, and it becomes final when the
/// same block commits; a later candidate or a different final block replaces it.
#[test]
fn a_candidate_block_waits_above_the_tip_until_it_is_final() {
    let dir = tempfile::tempdir().unwrap();
    let exec = Executor::with_builtins(CHAIN);
    let cert = Certificate(vec![1, 2, 3]);
    let b2 = {
        let ledger = Ledger::open(dir.path(), CHAIN).unwrap();
        apply(&ledger, &exec, vec![]);
        apply(&ledger, &exec, vec![put("a", "1", 1)]);
        let b2 = next_block(&ledger, vec![put("b", "2", 2)]);
        let mut too_high = next_block(&ledger, vec![]);
        too_high.header.height = 3;
        assert!(matches!(
            ledger.put_candidate(&too_high, b"rec", b"x"),
            Err(LedgerError::WrongHeight {
                expected: 2,
                found: 3
            })
        ));
        ledger.put_candidate(&b2, b"rec", b"v").unwrap();
        assert_eq!(ledger.candidate().unwrap().as_ref(), Some(&b2));
        assert_eq!(ledger.block(2).unwrap(), None);
        assert_eq!(ledger.latest_block().unwrap().unwrap().header.height, 1);
        assert_eq!(ledger.block_by_hash(&b2.hash()).unwrap(), None);
        assert_eq!(
            ledger.engine_records().unwrap(),
            vec![(b"rec".to_vec(), b"v".to_vec())]
        );
        assert_eq!(ledger.verify_chain(|_, _| {}).unwrap().blocks, 2);
        b2
    };
    let ledger = Ledger::open(dir.path(), CHAIN).unwrap();
    assert_eq!(ledger.candidate().unwrap().as_ref(), Some(&b2));
    assert_eq!(ledger.block(2).unwrap(), None);
    exec.apply(&ledger, &b2, &cert).unwrap();
    assert_eq!(ledger.block(2).unwrap().as_ref(), Some(&b2));
    assert_eq!(ledger.candidate().unwrap(), None);
    let tx = ledger.transaction(&b2.txs[0].hash()).unwrap().unwrap();
    assert_eq!(tx.receipt.height, 2);

    // Replaced by a later candidate, then by a different final block (caught up from peers).
    let first = next_block(&ledger, vec![put("c", "3", 3)]);
    let second = next_block(&ledger, vec![put("c", "4", 4)]);
    let final_3 = next_block(&ledger, vec![put("c", "5", 5)]);
    ledger.put_candidate(&first, b"rec", b"1").unwrap();
    ledger.put_candidate(&second, b"rec", b"2").unwrap();
    assert_eq!(ledger.candidate().unwrap().as_ref(), Some(&second));
    exec.apply(&ledger, &final_3, &cert).unwrap();
    assert_eq!(ledger.block(3).unwrap().as_ref(), Some(&final_3));
    assert_eq!(ledger.candidate().unwrap(), None);
    drop(ledger);
    let ledger = Ledger::open(dir.path(), CHAIN).unwrap();
    assert_eq!(ledger.block(3).unwrap().as_ref(), Some(&final_3));
    assert_eq!(ledger.candidate().unwrap(), None);
    assert_eq!(ledger.verify_chain(|_, _| {}).unwrap().blocks, 4);
}

#[test]
fn a_corrupted_tip_record_is_reported_on_open() {
    let dir = tempfile::tempdir().unwrap();
    build_chain(dir.path(), 3);
    tamper(dir.path(), "meta", b"tip", Some(b"\x01garbage"));
    let err = Ledger::open(dir.path(), CHAIN).unwrap_err();
    assert!(matches!(err, LedgerError::Corrupt { .. }), "{err}");
}

#[test]
fn in_memory_ledgers_are_separate_and_verify() {
    let exec = Executor::with_builtins(CHAIN);
    let a = Ledger::open_in_memory(CHAIN).unwrap();
    let b = Ledger::open_in_memory(CHAIN).unwrap();
    apply(&a, &exec, vec![put("k", "v", 1)]);
    apply(&a, &exec, vec![put("k", "w", 2)]);
    assert_eq!(a.tip().unwrap().height, 1);
    assert_eq!(
        b.tip(),
        None,
        "each in-memory ledger has its own environment"
    );
    assert_eq!(a.verify_chain(|_, _| {}).unwrap().txs, 2);
}

/// The `tx_indexed` record's height: the first whose index entries the column may lack.
fn raw_tx_indexed(path: &std::path::Path) -> u64 {
    let cfs = rocksdb::DB::list_cf(&rocksdb::Options::default(), path).unwrap();
    let db = rocksdb::DB::open_cf_for_read_only(&rocksdb::Options::default(), path, &cfs, false)
        .unwrap();
    let v = db
        .get_cf(db.cf_handle("meta").unwrap(), b"tx_indexed")
        .unwrap()
        .unwrap();
    assert_eq!(v.len(), 16, "the height, then the value it replaced");
    u64::from_be_bytes(v[..8].try_into().unwrap())
}

/// The transaction index is written in sorted runs (here every 50 entries, against 262,144 by
/// default), its newest entries held in memory: every position reads back while runs are
/// written, after a reopen (the tail read again from the receipts), and through a read-only
/// open beside the writer; a transaction executed again is a duplicate whether its first
/// execution is in memory or in a run.
#[test]
fn the_transaction_index_is_written_in_runs_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let exec = Executor::with_builtins(CHAIN);
    let block_txs = |h: u64| -> Vec<medchain_types::Transaction> {
        (0..20)
            .map(|i| put(&format!("k{i}"), "v", h * 100 + i))
            .collect()
    };
    let check = |ledger: &Ledger, blocks: u64| {
        for h in 0..blocks {
            let hashes: Vec<Hash> = block_txs(h).iter().map(|t| t.hash()).collect();
            for (i, hash) in hashes.iter().enumerate() {
                assert_eq!(
                    ledger.tx_position(hash).unwrap(),
                    Some((h, i as u32)),
                    "block {h} transaction {i}"
                );
            }
            let mut asked = hashes.clone();
            asked.insert(3, Hash::ZERO);
            let mut expected = vec![true; hashes.len() + 1];
            expected[3] = false;
            assert_eq!(ledger.txs_known(&asked).unwrap(), expected, "block {h}");
        }
    };
    {
        let ledger = Ledger::open(dir.path(), CHAIN).unwrap();
        ledger.set_tx_index_run_entries(50);
        for h in 0..12 {
            apply(&ledger, &exec, block_txs(h));
            check(&ledger, h + 1);
        }
        // Block 0's first transaction again: found in a run, so a duplicate.
        let again = apply(
            &ledger,
            &exec,
            vec![block_txs(0)[0].clone(), put("z", "z", 7)],
        );
        assert_eq!(again[0].status, TxStatus::Duplicate);
        assert_eq!(again[1].status, TxStatus::Success);
        let beside = Ledger::open_read_only(dir.path()).unwrap();
        check(&beside, 12);
    }
    let indexed = raw_tx_indexed(dir.path());
    assert!(
        (3..13).contains(&indexed),
        "runs were written up to height {indexed}"
    );
    let ledger = Ledger::open(dir.path(), CHAIN).unwrap();
    check(&ledger, 12);
    assert_eq!(
        ledger.tx_position(&put("z", "z", 7).hash()).unwrap(),
        Some((12, 1))
    );
    let again = apply(&ledger, &exec, vec![block_txs(11)[19].clone()]);
    assert_eq!(again[0].status, TxStatus::Duplicate);
    ledger.verify_chain(|_, _| {}).unwrap();
}

/// A ledger written before the index was written in runs has every entry in the column and no
/// `tx_indexed` record: opening it records the tip, and nothing is read again.
#[test]
fn a_ledger_without_a_tx_indexed_record_has_its_whole_index_in_the_column() {
    let dir = tempfile::tempdir().unwrap();
    let exec = Executor::with_builtins(CHAIN);
    let txs: Vec<_> = (0..5).map(|i| put("k", "v", i)).collect();
    {
        let ledger = Ledger::open(dir.path(), CHAIN).unwrap();
        // Written as a ledger before runs would have it.
        ledger.set_tx_index_run_entries(1);
        apply(&ledger, &exec, txs.clone());
        apply(&ledger, &exec, vec![]);
        apply(&ledger, &exec, vec![]);
    }
    assert_eq!(
        raw_tx_indexed(dir.path()),
        1,
        "block 0 went to the column in a run"
    );
    tamper(dir.path(), "meta", b"tx_indexed", None);
    let ledger = Ledger::open(dir.path(), CHAIN).unwrap();
    drop(ledger);
    assert_eq!(raw_tx_indexed(dir.path()), 3);
    let ledger = Ledger::open(dir.path(), CHAIN).unwrap();
    for (i, t) in txs.iter().enumerate() {
        assert_eq!(ledger.tx_position(&t.hash()).unwrap(), Some((0, i as u32)));
    }
    // A damaged record is reported, not read as some height.
    drop(ledger);
    tamper(dir.path(), "meta", b"tx_indexed", Some(&[1, 2, 3]));
    let err = Ledger::open(dir.path(), CHAIN).unwrap_err().to_string();
    assert!(err.contains("tx_indexed record: 3 bytes"), "{err}");
}

/// The newest index entries are read from the receipts at open: a node refuses a ledger whose
/// receipts it needs are gone (its duplicate check would miss those transactions), while a
/// read-only open still lets `verify_chain` name the damage.
#[test]
fn a_node_refuses_a_ledger_missing_the_receipts_its_index_needs() {
    let dir = tempfile::tempdir().unwrap();
    build_chain(dir.path(), 3);
    tamper(dir.path(), "receipts", &1u64.to_be_bytes(), None);
    match Ledger::open(dir.path(), CHAIN) {
        Err(LedgerError::Corrupt { height: 1, what }) => {
            assert_eq!(what, "receipts are missing")
        }
        other => panic!("expected the missing receipts of block 1, got {other:?}"),
    }
    verify_fails_at(dir.path(), 1, "receipts are missing");
}

/// A run that cannot be written (here its file's path is taken by a directory) is kept in
/// memory, its error handed to the node, and written with the next run; commits go on until four
/// runs' worth are held, then fail with the error before writing anything; once the disk
/// accepts runs again, the next commit writes them all.
#[test]
fn a_failed_run_is_kept_in_memory_and_written_with_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let exec = Executor::with_builtins(CHAIN);
    let ledger = Ledger::open(dir.path(), CHAIN).unwrap();
    ledger.set_tx_index_run_entries(20);
    let block_txs = |h: u64| -> Vec<medchain_types::Transaction> {
        (0..20).map(|i| put("k", "v", h * 100 + i)).collect()
    };
    let blocker = dir.path().join("tx-index-run.sst");
    std::fs::create_dir(&blocker).unwrap();
    // Block 1 freezes block 0's entries; blocks 2 and 3 find the run failed and retry with more.
    for h in 0..4 {
        apply(&ledger, &exec, block_txs(h));
    }
    let err = ledger
        .take_tx_index_error()
        .expect("the failed run is reported");
    assert!(err.to_string().contains("storage error"), "{err}");
    assert!(ledger.take_tx_index_error().is_none(), "reported once");
    // Block 4 finds 80 entries held after a third failure: refused, nothing written.
    let block = next_block(&ledger, block_txs(4));
    let refused = exec
        .apply(&ledger, &block, &Certificate(vec![1]))
        .unwrap_err()
        .to_string();
    assert!(refused.contains("storage error"), "{refused}");
    assert_eq!(ledger.next_height(), 4);
    for h in 0..4 {
        for (i, t) in block_txs(h).iter().enumerate() {
            assert_eq!(ledger.tx_position(&t.hash()).unwrap(), Some((h, i as u32)));
        }
    }
    std::fs::remove_dir(&blocker).unwrap();
    apply(&ledger, &exec, block_txs(4));
    drop(ledger);
    assert_eq!(
        raw_tx_indexed(dir.path()),
        4,
        "blocks 0 to 3 went to the column in one run"
    );
    let ledger = Ledger::open(dir.path(), CHAIN).unwrap();
    for h in 0..5 {
        for (i, t) in block_txs(h).iter().enumerate() {
            assert_eq!(ledger.tx_position(&t.hash()).unwrap(), Some((h, i as u32)));
        }
    }
    ledger.verify_chain(|_, _| {}).unwrap();
}
