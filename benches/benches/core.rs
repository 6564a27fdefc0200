//! Micro-benchmarks of the foundation: hashing, signatures, Merkle roots, block encoding and the
//! synced ledger commit, each next to a raw reference measured in the same run where one exists
//! (a bare RocksDB synced `WriteBatch` for the ledger commit).
//!
//! Run: `cargo bench -p medchain-bench --bench core`. Results: `benches/RESULTS.md`.

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use medchain_bench::{block_with, signed_txs};
use medchain_ledger::{BlockWrites, Executor, Ledger};
use medchain_types::{
    batch_verify, codec, merkle_root, sha256, Block, Certificate, Domain, Hash, SecretKey,
};
use std::time::Duration;

fn hashing(c: &mut Criterion) {
    let mut g = c.benchmark_group("sha256");
    for (label, size) in [
        ("1KiB", 1usize << 10),
        ("64KiB", 64 << 10),
        ("1MiB", 1 << 20),
        ("64MiB", 64 << 20),
    ] {
        let data = vec![0xa5u8; size];
        g.throughput(Throughput::Bytes(size as u64));
        if size >= 1 << 20 {
            g.sample_size(20);
        }
        g.bench_with_input(BenchmarkId::from_parameter(label), &data, |b, d| {
            b.iter(|| sha256(d))
        });
    }
    g.finish();
}

fn signatures(c: &mut Criterion) {
    let mut g = c.benchmark_group("ed25519");
    let key = SecretKey::from_seed([1; 32]);
    let msg = [7u8; 256];
    let sig = key.sign(Domain::TRANSACTION, "bench", &msg);
    let pk = key.public();
    g.throughput(Throughput::Elements(1));
    g.bench_function("sign", |b| {
        b.iter(|| key.sign(Domain::TRANSACTION, "bench", &msg))
    });
    g.bench_function("verify_strict", |b| {
        b.iter(|| pk.verify(Domain::TRANSACTION, "bench", &msg, &sig).unwrap())
    });
    let items: Vec<_> = signed_txs(256, 64, 0)
        .into_iter()
        .map(|tx| (tx.sender, tx.signing_bytes(), tx.signature))
        .collect();
    g.throughput(Throughput::Elements(items.len() as u64));
    g.bench_function("batch_verify_256", |b| {
        b.iter(|| batch_verify(&items).unwrap())
    });
    g.finish();
}

/// Batch verification by batch size, with one sender for all (as `medchain load` signs) and a
/// sender per signature, and on every core at once: the ceiling of a cluster whose replicas all
/// check every signature is what the cores verify together, not one core times their number.
fn batch_sizes(c: &mut Criterion) {
    let distinct = |n: usize| -> Vec<_> {
        (0..n)
            .map(|i| {
                let mut seed = [0u8; 32];
                seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
                let tx = medchain_types::Transaction::signed(
                    medchain_bench::BENCH_CHAIN,
                    "noop",
                    vec![i as u8; 512],
                    i as u64,
                    &SecretKey::from_seed(seed),
                );
                (tx.sender, tx.signing_bytes(), tx.signature)
            })
            .collect()
    };
    let one_sender = |n: usize| -> Vec<_> {
        signed_txs(n, 512, 0)
            .into_iter()
            .map(|tx| (tx.sender, tx.signing_bytes(), tx.signature))
            .collect()
    };
    let mut g = c.benchmark_group("ed25519_batch");
    g.sample_size(20);
    for n in [64usize, 256, 1024] {
        g.throughput(Throughput::Elements(n as u64));
        let items = one_sender(n);
        g.bench_function(BenchmarkId::new("one_sender", n), |b| {
            b.iter(|| batch_verify(&items).unwrap())
        });
        // The reference: ed25519-dalek's own batch check of the same signatures.
        let reference = |items: &[(
            medchain_types::PublicKey,
            Vec<u8>,
            medchain_types::Signature,
        )]| {
            let keys: Vec<_> = items
                .iter()
                .map(|(pk, _, _)| ed25519_dalek::VerifyingKey::from_bytes(&pk.0).unwrap())
                .collect();
            let sigs: Vec<_> = items
                .iter()
                .map(|(_, _, s)| ed25519_dalek::Signature::from_bytes(&s.0))
                .collect();
            (keys, sigs)
        };
        let (keys, sigs) = reference(&items);
        g.bench_function(BenchmarkId::new("one_sender_dalek_verify_batch", n), |b| {
            b.iter(|| {
                let msgs: Vec<&[u8]> = items.iter().map(|(_, m, _)| m.as_slice()).collect();
                ed25519_dalek::verify_batch(&msgs, &sigs, &keys).unwrap()
            })
        });
        let items = distinct(n);
        g.bench_function(BenchmarkId::new("distinct_senders", n), |b| {
            b.iter(|| batch_verify(&items).unwrap())
        });
        let (keys, sigs) = reference(&items);
        g.bench_function(
            BenchmarkId::new("distinct_senders_dalek_verify_batch", n),
            |b| {
                b.iter(|| {
                    let msgs: Vec<&[u8]> = items.iter().map(|(_, m, _)| m.as_slice()).collect();
                    ed25519_dalek::verify_batch(&msgs, &sigs, &keys).unwrap()
                })
            },
        );
    }
    // Every core verifying its own batches of 256 (distinct senders) at the same time.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_thread: Vec<_> = (0..cores).map(|_| distinct(256)).collect();
    g.throughput(Throughput::Elements((cores * 256 * 4) as u64));
    g.bench_function(BenchmarkId::new("all_cores_distinct_senders", 256), |b| {
        b.iter(|| {
            std::thread::scope(|s| {
                for items in &per_thread {
                    s.spawn(move || {
                        for _ in 0..4 {
                            batch_verify(items).unwrap();
                        }
                    });
                }
            })
        })
    });
    g.finish();
}

fn merkle(c: &mut Criterion) {
    let hashes: Vec<Hash> = (0u32..1000).map(|i| sha256(&i.to_le_bytes())).collect();
    c.bench_function("merkle_root_1000_txs", |b| b.iter(|| merkle_root(&hashes)));
}

fn encoding(c: &mut Criterion) {
    let block = block_with(1, Hash::ZERO, Hash::ZERO, signed_txs(1000, 512, 0));
    let bytes = block.encode();
    let mut g = c.benchmark_group("block_1000x512B");
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("encode", |b| b.iter(|| block.encode()));
    g.bench_function("decode_unchecked", |b| {
        b.iter(|| codec::decode::<Block>(&bytes).unwrap())
    });
    g.bench_function("decode_checked", |b| {
        b.iter(|| Block::decode(&bytes).unwrap())
    });
    g.bench_function("tx_hashes", |b| b.iter(|| block.tx_hashes()));
    g.finish();
}

fn ledger_commit(c: &mut Criterion) {
    let mut g = c.benchmark_group("ledger_1000x512B_sync");
    g.sample_size(30).measurement_time(Duration::from_secs(8));

    // Reference: the same volume as one bare RocksDB synced WriteBatch (1,000 puts of ~650 B,
    // the size of a signed 512 B transaction), no encoding, no indexes.
    {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = rocksdb::Options::default();
        opts.create_if_missing(true);
        let db = rocksdb::DB::open(&opts, dir.path()).unwrap();
        let value = vec![0x5au8; 650];
        let mut n = 0u64;
        g.bench_function("raw_rocksdb_writebatch_reference", |b| {
            b.iter(|| {
                let mut batch = rocksdb::WriteBatch::default();
                for _ in 0..1000 {
                    n += 1;
                    batch.put(n.to_be_bytes(), &value);
                }
                let mut wo = rocksdb::WriteOptions::default();
                wo.set_sync(true);
                db.write_opt(batch, &wo).unwrap();
            })
        });
    }

    // The ledger's commit: block, certificate, hash index, 1,000 tx index entries and receipts,
    // write set, state root and tip in one synced WriteBatch.
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path(), medchain_bench::BENCH_CHAIN).unwrap();
    let exec = Executor::with_builtins(medchain_bench::BENCH_CHAIN);
    let mut nonce = 0u64;
    let mut next = |ledger: &Ledger| {
        let tip = ledger.tip();
        let height = ledger.next_height();
        nonce += 1000;
        let block = block_with(
            height,
            tip.map_or(Hash::ZERO, |t| t.hash),
            tip.map_or(Hash::ZERO, |t| t.state_root),
            signed_txs(1000, 512, nonce),
        );
        let writes = exec.execute(ledger, &block).unwrap();
        (block, writes)
    };
    g.bench_function("commit", |b| {
        b.iter_batched(
            || next(&ledger),
            |(block, writes): (Block, BlockWrites)| {
                ledger
                    .commit(&block, &Certificate(vec![0; 3 * 96]), &writes)
                    .unwrap()
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("execute_and_commit", |b| {
        b.iter_batched(
            || next(&ledger).0,
            |block| {
                exec.apply(&ledger, &block, &Certificate(vec![0; 3 * 96]))
                    .unwrap()
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(
    benches,
    hashing,
    signatures,
    batch_sizes,
    merkle,
    encoding,
    ledger_commit
);
criterion_main!(benches);
