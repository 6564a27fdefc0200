//! The load generator `medchain load`: signs a workload up front, offers it at a fixed rate in
//! batches, waits for every commit, and reports throughput and latency (optionally beside the
//! signature-check reference measured on the same machine).

use anyhow::{bail, Context, Result};
use medchain_app::client::Client;
use medchain_chaincode::builtin::{Kv, KvOp};
use medchain_types::{Receipt, SecretKey, Transaction};
use rand::RngCore;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Settings of `medchain load`.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Node URL.
    pub node: String,
    /// Offered transactions per second.
    pub rate: u64,
    /// Seconds of offered load.
    pub duration: u64,
    /// Payload bytes per transaction.
    pub size: usize,
    /// `noop` or `kv`.
    pub chaincode: String,
    /// Transactions per HTTP request.
    pub batch: usize,
    /// Distinct signing keys (transaction i is signed by key i mod senders).
    pub senders: usize,
    /// Most requests in flight.
    pub in_flight_max: usize,
    /// Measure this machine's signature-check rate first (see [`Reference`]).
    pub reference: bool,
    /// Print the report as JSON too.
    pub json: bool,
}

/// What a load run is compared with, measured on the same machine just before it: the rate at
/// which all cores check these transactions' signatures (batches of 256, the reference
/// size, with [`medchain_types::batch_verify`], the nodes' rule), divided by the
/// number of nodes, each of which checks every signature once. For a consortium on this
/// machine, that is the most transactions per second it could commit if its nodes did nothing
/// else.
#[derive(Debug, Clone, Copy)]
pub struct Reference {
    /// Signature checks per second, all cores together.
    pub checks_per_s: f64,
    /// Threads used (one per core).
    pub cores: usize,
    /// Nodes in the consortium (each checks every signature).
    pub nodes: usize,
}

impl Reference {
    /// Transactions per second at which the nodes' signature checks alone fill the cores.
    pub fn ceiling(&self) -> f64 {
        self.checks_per_s / self.nodes.max(1) as f64
    }
}

/// Batch-verifies batches of 256 from `txs` (repeated when there are fewer) on `cores`
/// threads for about `secs` seconds.
fn measure_checks(txs: &[Transaction], cores: usize, secs: f64) -> f64 {
    const BATCH: usize = 256;
    if txs.is_empty() || cores == 0 {
        return 0.0;
    }
    let items: Vec<_> = txs
        .iter()
        .cycle()
        .take(BATCH * cores)
        .map(|t| (t.sender, t.signing_bytes(), t.signature))
        .collect();
    let chunks: Vec<&[_]> = items.chunks(BATCH).collect();
    let start = Instant::now();
    let checked: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..cores)
            .map(|t| {
                let chunk = chunks[t % chunks.len()];
                s.spawn(move || {
                    let mut n = 0;
                    while start.elapsed().as_secs_f64() < secs {
                        // The transactions were signed here; a failure would be a bug, and it
                        // would not make the check cheaper.
                        let _ = medchain_types::batch_verify(chunk);
                        n += chunk.len();
                    }
                    n
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("reference thread"))
            .sum()
    });
    checked as f64 / start.elapsed().as_secs_f64()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Bytes a signed transaction takes in memory beyond its payload while `medchain load` prepares
/// it: the struct in two vectors for a moment (the signing thread's and its request's), its two
/// names, allocator slack.
const LOAD_TX_OVERHEAD: u64 = 512;
/// Most bytes of pre-signed transactions `medchain load` holds.
const LOAD_BYTES_MAX: u64 = 8 << 30;
/// Most distinct signing keys (each is generated before the run; 100,000 take about 2 s).
const LOAD_SENDERS_MAX: usize = 100_000;

/// `medchain load`: offers signed transactions at a fixed rate, waits for their commits, and
/// reports throughput and commit latency.
pub async fn load(spec: &LoadSpec) -> Result<()> {
    if spec.rate == 0 || spec.duration == 0 || spec.batch == 0 || spec.senders == 0 {
        bail!("--rate, --duration, --batch and --senders must be positive");
    }
    if !["noop", "kv"].contains(&spec.chaincode.as_str()) {
        bail!("--chaincode must be noop or kv");
    }
    if spec.senders > LOAD_SENDERS_MAX {
        bail!("--senders {} is more than {LOAD_SENDERS_MAX}", spec.senders);
    }
    // Every transaction is signed before the clock starts and held in memory until the end.
    let per_tx = (spec.size as u64).saturating_add(LOAD_TX_OVERHEAD);
    let total = spec
        .rate
        .checked_mul(spec.duration)
        .filter(|&n| n.saturating_mul(per_tx) <= LOAD_BYTES_MAX)
        .and_then(|n| usize::try_from(n).ok())
        .with_context(|| {
            format!(
                "--rate x --duration transactions of --size bytes would hold more than {} GiB \
                 of signed transactions in memory; offer fewer or smaller ones",
                LOAD_BYTES_MAX >> 30
            )
        })?;
    let client = Client::new(&spec.node)?;
    let chain = client.chain_id().await?;
    // More keys than transactions would only be generated for nothing.
    let senders = spec.senders.min(total.max(1));
    eprintln!(
        "signing {total} transactions of {} payload bytes ({} chaincode, {senders} sender{})...",
        spec.size,
        spec.chaincode,
        if senders == 1 { "" } else { "s" }
    );
    let keys: Vec<SecretKey> = (0..senders)
        .map(|_| SecretKey::generate(&mut rand::rngs::OsRng))
        .collect();
    let base_nonce = rand::rngs::OsRng.next_u64() >> 16;
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let chunks: Vec<Vec<Transaction>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (keys, chain, spec) = (&keys, &chain, &spec);
                s.spawn(move || {
                    (t..total)
                        .step_by(threads)
                        .map(|i| {
                            let nonce = base_nonce + i as u64;
                            let mut payload = vec![0u8; spec.size];
                            payload[..8.min(spec.size)]
                                .copy_from_slice(&nonce.to_le_bytes()[..8.min(spec.size)]);
                            let payload = if spec.chaincode == "kv" {
                                Kv::payload(&KvOp::Put {
                                    key: format!("load-{}", i % 10_000).into_bytes(),
                                    value: payload,
                                })
                            } else {
                                payload
                            };
                            let key = &keys[i % keys.len()];
                            Transaction::signed(chain, &spec.chaincode, payload, nonce, key)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("signing thread"))
            .collect()
    });
    // Back into one sequence (transaction i is in thread i mod threads' output), cut into
    // requests. Moved, not copied: the transactions are most of this command's memory.
    let mut signed: Vec<_> = chunks.into_iter().map(Vec::into_iter).collect();
    let mut batches: Vec<Vec<Transaction>> = Vec::with_capacity(total.div_ceil(spec.batch));
    let mut batch = Vec::with_capacity(spec.batch.min(total));
    for i in 0..total {
        batch.extend(signed[i % threads].next());
        if batch.len() == spec.batch {
            batches.push(std::mem::replace(
                &mut batch,
                Vec::with_capacity(spec.batch.min(total)),
            ));
        }
    }
    if !batch.is_empty() {
        batches.push(batch);
    }
    drop(signed);
    let reference = if spec.reference {
        let nodes = client.status().await?["peers"]["total"]
            .as_u64()
            .context("status has no peers.total")? as usize
            + 1;
        eprintln!("measuring the reference: signature checks on {threads} cores for 3 s...");
        let sample: Vec<Transaction> = batches
            .iter()
            .flatten()
            .take(256 * threads)
            .cloned()
            .collect();
        let checks_per_s =
            tokio::task::spawn_blocking(move || measure_checks(&sample, threads, 3.0))
                .await
                .context("reference measurement failed")?;
        Some(Reference {
            checks_per_s,
            cores: threads,
            nodes,
        })
    } else {
        None
    };
    eprintln!(
        "offering {} tx/s for {} s to {} in batches of {}",
        spec.rate, spec.duration, spec.node, spec.batch
    );

    let sent = Arc::new(AtomicU64::new(0));
    let committed = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(total)));
    let last_commit = Arc::new(Mutex::new(None::<Instant>));
    let slots = Arc::new(tokio::sync::Semaphore::new(spec.in_flight_max));
    let start = Instant::now();
    let interval = Duration::from_secs_f64(spec.batch as f64 / spec.rate as f64);
    let mut tasks = tokio::task::JoinSet::new();
    let mut skipped = 0u64;
    for (i, batch) in batches.into_iter().enumerate() {
        let due = start + interval.mul_f64(i as f64);
        tokio::time::sleep_until(due.into()).await;
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            // The node is saturated beyond the in-flight limit: the offered load is not met.
            skipped += batch.len() as u64;
            continue;
        };
        let (client, sent, committed, failed, latencies, last_commit) = (
            client.clone(),
            sent.clone(),
            committed.clone(),
            failed.clone(),
            latencies.clone(),
            last_commit.clone(),
        );
        tasks.spawn(async move {
            let _permit = permit;
            let t0 = Instant::now();
            let n = batch.len() as u64;
            sent.fetch_add(n, Relaxed);
            match client.submit_for_receipts(&batch).await {
                Ok(Ok(receipts)) => {
                    let took = t0.elapsed().as_secs_f64();
                    let ok = receipts
                        .iter()
                        .filter(|r| r.as_ref().is_some_and(Receipt::is_success))
                        .count() as u64;
                    committed.fetch_add(ok, Relaxed);
                    failed.fetch_add(n - ok, Relaxed);
                    latencies
                        .lock()
                        .expect("latencies")
                        .extend(std::iter::repeat_n(took, ok as usize));
                    *last_commit.lock().expect("last") = Some(Instant::now());
                }
                _ => {
                    failed.fetch_add(n, Relaxed);
                }
            }
        });
    }
    let offered_secs = start.elapsed().as_secs_f64();
    eprintln!("offered for {offered_secs:.1} s; waiting for the last commits...");
    while tasks.join_next().await.is_some() {}
    let mut lat = std::mem::take(&mut *latencies.lock().expect("latencies"));
    lat.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    let end = last_commit
        .lock()
        .expect("last")
        .unwrap_or_else(Instant::now);
    let span = (end - start).as_secs_f64().max(1e-9);
    let c = committed.load(Relaxed);
    let ms = |x: f64| x * 1000.0;
    println!(
        "offered     {} tx/s for {} s ({} transactions, {} B payload, {} per request, {} sender{})",
        spec.rate,
        spec.duration,
        total,
        spec.size,
        spec.batch,
        keys.len(),
        if keys.len() == 1 { "" } else { "s" }
    );
    println!("sent        {}", sent.load(Relaxed));
    println!(
        "not sent    {skipped} (more than {} requests in flight)",
        spec.in_flight_max
    );
    println!("committed   {c}");
    println!("failed      {}", failed.load(Relaxed));
    println!(
        "throughput  {:.0} tx/s (committed / time from first send to last commit, {span:.2} s)",
        c as f64 / span
    );
    println!(
        "latency     p50 {:.1} ms   p90 {:.1} ms   p99 {:.1} ms   max {:.1} ms (submit to commit)",
        ms(percentile(&lat, 0.5)),
        ms(percentile(&lat, 0.9)),
        ms(percentile(&lat, 0.99)),
        ms(lat.last().copied().unwrap_or(f64::NAN))
    );
    if let Some(r) = reference {
        println!(
            "reference   {:.0} tx/s: {:.0} signature checks/s on {} cores / {} nodes, the most \
             a consortium on this machine could commit if its nodes only checked signatures; \
             throughput is {:.1}% of it",
            r.ceiling(),
            r.checks_per_s,
            r.cores,
            r.nodes,
            100.0 * c as f64 / span / r.ceiling()
        );
    }
    if spec.json {
        println!(
            "{}",
            serde_json::json!({
                "offered_rate": spec.rate, "duration_s": spec.duration, "size": spec.size, "senders": keys.len(),
                "sent": sent.load(Relaxed), "not_sent": skipped, "committed": c, "failed": failed.load(Relaxed),
                "throughput": c as f64 / span,
                "latency_ms": {"p50": ms(percentile(&lat, 0.5)), "p90": ms(percentile(&lat, 0.9)), "p99": ms(percentile(&lat, 0.99)), "max": ms(lat.last().copied().unwrap_or(f64::NAN))},
                "reference": reference.map(|r| serde_json::json!({
                    "signature_checks_per_s": r.checks_per_s, "cores": r.cores, "nodes": r.nodes, "ceiling_tx_per_s": r.ceiling()
                }))
            })
        );
    }
    if c == 0 {
        bail!("no transaction was committed");
    }
    Ok(())
}
