//! `medchain demo`: writes a chain of signed `kv` transactions through the executor into a
//! RocksDB ledger, verifies the whole chain, and checks one transaction's inclusion proof: the
//! ledger and the executor alone, in one process, without consensus or network.

use anyhow::{bail, Context, Result};
use medchain_chaincode::builtin::{Kv, KvOp, KvQuery};
use medchain_ledger::{Executor, Ledger};
use medchain_types::{Block, Certificate, SecretKey, Transaction};
use std::path::Path;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

const CHAIN_ID: &str = "medchain-demo";

pub fn run(data: &Path, blocks: u64, txs_per_block: usize) -> Result<()> {
    if txs_per_block > medchain_types::limits::BLOCK_TXS_MAX {
        bail!(
            "--txs must be at most {}",
            medchain_types::limits::BLOCK_TXS_MAX
        );
    }
    let ledger = Ledger::open(data, CHAIN_ID)
        .with_context(|| format!("cannot open ledger in {}", data.display()))?;
    let executor = Executor::with_builtins(CHAIN_ID);
    // A fixed demo key: the demo's transactions are reproducible; real clients use `keygen`.
    let client = SecretKey::from_seed([7; 32]);
    let proposer = SecretKey::from_seed([8; 32]).public();
    println!(
        "ledger {} (chain {CHAIN_ID}), starting at height {}",
        data.display(),
        ledger.next_height()
    );

    let started = Instant::now();
    let mut committed_txs = 0u64;
    let mut last_tx = None;
    for _ in 0..blocks {
        let height = ledger.next_height();
        let tip = ledger.tip();
        let txs: Vec<Transaction> = (0..txs_per_block)
            .map(|i| {
                let op = KvOp::Put {
                    key: format!("record-{}", i % 50).into_bytes(),
                    value: format!("value written at height {height}, tx {i}").into_bytes(),
                };
                Transaction::signed(
                    CHAIN_ID,
                    "kv",
                    Kv::payload(&op),
                    height * 1_000_000 + i as u64,
                    &client,
                )
            })
            .collect();
        last_tx = txs.last().map(Transaction::hash).or(last_tx);
        let time_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64;
        let block = Block::build(
            height,
            tip.map_or(medchain_types::Hash::ZERO, |t| t.hash),
            height.saturating_sub(1),
            tip.map_or(medchain_types::Hash::ZERO, |t| t.state_root),
            time_ms,
            proposer,
            Vec::new(),
            txs,
        );
        block.verify_signatures(CHAIN_ID)?;
        let (_, receipts) = executor.apply(&ledger, &block, &Certificate::default())?;
        committed_txs += receipts.len() as u64;
        if (height + 1) % 20 == 0 {
            println!(
                "committed block {height} ({} transactions so far)",
                committed_txs
            );
        }
    }
    let elapsed = started.elapsed();
    println!(
        "committed {blocks} blocks, {committed_txs} transactions in {:.2?} ({:.0} tx/s, each block one synced RocksDB write)",
        elapsed,
        committed_txs as f64 / elapsed.as_secs_f64().max(1e-9)
    );

    let report = ledger.verify_chain(|_, _| {})?;
    println!(
        "verify-chain: OK, {} blocks, {} transactions",
        report.blocks, report.txs
    );
    if let Some(hash) = last_tx {
        let rec = ledger
            .transaction(&hash)?
            .context("last transaction is not indexed")?;
        let ok = rec.header.proves_inclusion(&hash, &rec.proof);
        println!(
            "transaction {hash}: block {} index {} status {:?}, Merkle proof {}",
            rec.receipt.height,
            rec.receipt.index,
            rec.receipt.status,
            if ok { "verifies" } else { "FAILS" }
        );
        if !ok {
            bail!("inclusion proof failed");
        }
    }
    let value = executor.query(
        &ledger,
        "kv",
        &Kv::request(&KvQuery::Get {
            key: b"record-0".to_vec(),
        }),
    )?;
    if let Some(v) = Kv::decode_get(&value)? {
        println!("kv get record-0 = {:?}", String::from_utf8_lossy(&v));
    }
    println!(
        "check it any time with: medchain verify-chain --data {}",
        data.display()
    );
    Ok(())
}
