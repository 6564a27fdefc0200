//! Client commands over the HTTP API: `medchain status`, `medchain kv put|get`, `medchain ehr`, and the load
//! generator `medchain load`.

use anyhow::{bail, Context, Result};
use medchain_chaincode::builtin::{Kv, KvOp};
use medchain_types::{codec, Receipt, SecretKey, Transaction};
use rand::RngCore;
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A transaction for `chaincode`, signed by `signer`, with a random nonce.
pub fn signed_tx(
    chain: &str,
    chaincode: &str,
    payload: Vec<u8>,
    signer: &SecretKey,
) -> Transaction {
    Transaction::signed(
        chain,
        chaincode,
        payload,
        rand::rngs::OsRng.next_u64(),
        signer,
    )
}

/// The longest a document upload or download may take (the default request timeout is for
/// small requests).
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(3600);

/// A node's API.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
    /// The node's key, learnt with the chain id (signed requests name the node they are for).
    node: Arc<std::sync::OnceLock<medchain_types::PublicKey>>,
}

impl Client {
    /// A client of the node at `url` (e.g. `http://127.0.0.1:8001`).
    pub fn new(url: &str) -> Result<Client> {
        let base = url.trim_end_matches('/').to_owned();
        if !base.starts_with("http://") {
            bail!("--node must be an http:// URL, got {url:?}");
        }
        Ok(Client {
            base,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .pool_max_idle_per_host(512)
                .build()?,
            node: Arc::default(),
        })
    }

    async fn get(&self, path: &str) -> Result<(reqwest::StatusCode, Value)> {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.base))?;
        let status = r.status();
        Ok((status, r.json().await.unwrap_or(Value::Null)))
    }

    /// `GET /api/v1/status`.
    pub async fn status(&self) -> Result<Value> {
        let (code, v) = self.get("/api/v1/status").await?;
        if !code.is_success() {
            bail!("status: HTTP {code}: {v}");
        }
        Ok(v)
    }

    /// The chain id the node serves (and, remembered for signed requests, the node's key).
    pub async fn chain_id(&self) -> Result<String> {
        let status = self.status().await?;
        if let Ok(node) = serde_json::from_value(status["node_id"].clone()) {
            let _ = self.node.set(node);
        }
        Ok(status["chain_id"]
            .as_str()
            .context("status has no chain_id")?
            .to_owned())
    }

    /// POSTs `txs` canonical-encoded to `/api/v1/txs`, with `?wait=commit` if `wait`, asking
    /// for canonical-encoded receipts if `binary_receipts`.
    async fn post_txs(
        &self,
        txs: &[Transaction],
        wait: bool,
        binary_receipts: bool,
    ) -> Result<reqwest::Response> {
        let url = format!(
            "{}/api/v1/txs{}",
            self.base,
            if wait { "?wait=commit" } else { "" }
        );
        let mut request = self
            .http
            .post(url)
            .header("content-type", "application/octet-stream");
        if binary_receipts {
            request = request.header("accept", "application/octet-stream");
        }
        request
            .body(codec::encode(txs))
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.base))
    }

    /// Submits transactions in canonical encoding; with `wait`, returns when all are committed.
    pub async fn submit(
        &self,
        txs: &[Transaction],
        wait: bool,
    ) -> Result<(reqwest::StatusCode, Value)> {
        let r = self.post_txs(txs, wait, false).await?;
        let status = r.status();
        Ok((status, r.json().await.unwrap_or(Value::Null)))
    }

    /// Submits `txs` with `?wait=commit` and asks for the receipts canonical-encoded, one per
    /// transaction in order (`None` for one the node could not report). `Ok(Err(status))` when
    /// the node answers anything but 200 (not committed in time, refused, busy).
    pub async fn submit_for_receipts(
        &self,
        txs: &[Transaction],
    ) -> Result<std::result::Result<Vec<Option<Receipt>>, reqwest::StatusCode>> {
        let r = self.post_txs(txs, true, true).await?;
        let status = r.status();
        if status != reqwest::StatusCode::OK {
            return Ok(Err(status));
        }
        let body = r.bytes().await.context("reading the receipts")?;
        let receipts: Vec<Option<Receipt>> =
            codec::decode(&body).context("the receipts are not canonical-encoded")?;
        if receipts.len() != txs.len() {
            bail!("{} receipts for {} transactions", receipts.len(), txs.len());
        }
        Ok(Ok(receipts))
    }
}

/// `medchain status`.
pub async fn status(node: &str) -> Result<()> {
    let v = Client::new(node)?.status().await?;
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}

/// `medchain kv put`.
/// `medchain stake add|remove`.
pub async fn stake(
    node: &str,
    key_file: &std::path::Path,
    op: medchain_types::staking::StakeOp,
) -> Result<()> {
    let signer = crate::keyfile::read(key_file)?;
    let client = Client::new(node)?;
    let status = client.status().await?;
    if status["engine"] != "pos" {
        bail!(
            "{node} runs engine {}; stake operations apply to proof of stake only",
            status["engine"]
        );
    }
    let chain = client.chain_id().await?;
    let tx = signed_tx(
        &chain,
        medchain_types::staking::STAKING_CHAINCODE,
        codec::encode(&op),
        &signer,
    );
    let r = &client.commit_one(tx).await?;
    let epoch_length = status["engine_status"]["epoch_length"]
        .as_str()
        .unwrap_or("?");
    println!(
        "committed: tx {} at height {} ({}); the stake table changes at the next epoch boundary (every {epoch_length} heights) if the operation is allowed",
        r["tx_hash"].as_str().unwrap_or("?"),
        r["height"],
        r["status"]
    );
    Ok(())
}

pub async fn kv_put(node: &str, key_file: &std::path::Path, key: &str, value: &str) -> Result<()> {
    let signer = crate::keyfile::read(key_file)?;
    let client = Client::new(node)?;
    let chain = client.chain_id().await?;
    let op = KvOp::Put {
        key: key.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
    };
    let tx = signed_tx(&chain, "kv", Kv::payload(&op), &signer);
    let (code, v) = client.submit(&[tx], true).await?;
    if !code.is_success() {
        bail!(
            "HTTP {code}: {}",
            v["error"].as_str().unwrap_or(&v.to_string())
        );
    }
    let r = &v["receipts"][0];
    if r.is_null() {
        bail!("not committed yet: {v}");
    }
    println!(
        "committed: tx {} at height {} ({})",
        r["tx_hash"].as_str().unwrap_or("?"),
        r["height"],
        r["status"]
    );
    Ok(())
}

/// `medchain kv get`: prints the value, or exits 1 if the key is not set.
pub async fn kv_get(node: &str, key: &str) -> Result<()> {
    let client = Client::new(node)?;
    let path = format!(
        "/api/v1/state/kv/{}",
        if key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b))
        {
            key.to_owned()
        } else {
            format!("0x{}", hex::encode(key))
        }
    );
    let (code, v) = client.get(&path).await?;
    match code.as_u16() {
        200 => {
            match v["value_utf8"].as_str() {
                Some(s) => println!("{s}"),
                None => println!("0x{}", v["value_hex"].as_str().unwrap_or("")),
            }
            Ok(())
        }
        404 => bail!("{key:?} is not set"),
        _ => bail!("HTTP {code}: {v}"),
    }
}

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
/// which all cores check these transactions' signatures (batches of 256, the issue's reference
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

/// `medchain ehr tx`: signs an `ehr` operation (JSON), submits it and waits for its commit.
/// Fails unless the receipt says success.
pub async fn ehr_tx(node: &str, key_file: &std::path::Path, op_json: &str) -> Result<()> {
    let op: medchain_ehr::EhrOp = serde_json::from_str(op_json)
        .context("the operation is not an EhrOp in JSON (see `medchain ehr tx --help`)")?;
    let signer = crate::keyfile::read(key_file)?;
    let client = Client::new(node)?;
    let chain = client.chain_id().await?;
    let tx = signed_tx(
        &chain,
        medchain_ehr::chaincode::NAME,
        medchain_ehr::Ehr::payload(&op),
        &signer,
    );
    let (code, v) = client.submit(&[tx], true).await?;
    if !code.is_success() {
        bail!(
            "HTTP {code}: {}",
            v["error"].as_str().unwrap_or(&v.to_string())
        );
    }
    let r = &v["receipts"][0];
    println!("{}", serde_json::to_string_pretty(r)?);
    if r["status"] != "success" {
        bail!("the transaction committed but failed: {}", r["status"]);
    }
    Ok(())
}

/// `medchain ehr query`: a JSON `EhrQuery`, answered as JSON.
pub async fn ehr_query(node: &str, query_json: &str) -> Result<()> {
    let _: medchain_ehr::EhrQuery = serde_json::from_str(query_json)
        .context("the query is not an EhrQuery in JSON (see `medchain ehr query --help`)")?;
    let client = Client::new(node)?;
    let r = client
        .http
        .post(format!("{}/api/v1/ehr/query", client.base))
        .header("content-type", "application/json")
        .body(query_json.to_owned())
        .send()
        .await
        .with_context(|| format!("cannot reach {node}"))?;
    let code = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    if !code.is_success() {
        bail!(
            "HTTP {code}: {}",
            v["error"].as_str().unwrap_or(&v.to_string())
        );
    }
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}

fn short(key: &str) -> &str {
    &key[..key.len().min(16)]
}

/// `medchain ehr audit`: the node's vault re-hashed against the chain, a line per record
/// (intact in green, tampered in red on a terminal). `Ok(false)` if anything is tampered.
pub async fn ehr_audit(node: &str, json_out: bool) -> Result<bool> {
    use std::io::IsTerminal;
    let client = Client::new(node)?;
    let (code, v) = client.get("/api/v1/ehr/vault-audit").await?;
    if !code.is_success() {
        bail!(
            "HTTP {code}: {}",
            v["error"].as_str().unwrap_or(&v.to_string())
        );
    }
    if json_out {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let color = std::io::stdout().is_terminal();
        for r in v["records"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let status = r["status"].as_str().unwrap_or("?");
            let paint = match (color, status) {
                (true, "intact") => "\x1b[32m",
                (true, "tampered") => "\x1b[31m",
                (true, _) => "\x1b[33m",
                (false, _) => "",
            };
            let reset = if color { "\x1b[0m" } else { "" };
            println!(
                "{paint}{status:<9}{reset} {:<40} patient {} blob {}",
                r["record"].as_str().unwrap_or("?"),
                short(r["patient"].as_str().unwrap_or("?")),
                r["blob"].as_str().unwrap_or("?"),
            );
        }
        println!(
            "{} intact, {} tampered, {} missing on this node, {} erased",
            v["intact"], v["tampered"], v["missing"], v["erased"]
        );
    }
    Ok(v["tampered"] == 0)
}

/// `medchain ehr doc verify`: re-hashes a file (streaming SHA-256) and asks the chain. Prints
/// the verdict as JSON; `Ok(true)` only for `authentic`.
pub async fn ehr_verify(node: &str, file: &std::path::Path, doc: Option<&str>) -> Result<bool> {
    let path = file.to_owned();
    let sha = tokio::task::spawn_blocking(move || -> Result<medchain_types::Hash> {
        let f = std::fs::File::open(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let mut w = medchain_types::Sha256Writer::new();
        std::io::copy(&mut std::io::BufReader::with_capacity(1 << 20, f), &mut w)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Ok(w.finish())
    })
    .await??;
    let client = Client::new(node)?;
    let q = match doc {
        Some(d) => format!("?doc={d}"),
        None => String::new(),
    };
    let (code, v) = client.get(&format!("/api/v1/ehr/verify/{sha}{q}")).await?;
    if !code.is_success() {
        bail!(
            "HTTP {code}: {}",
            v["error"].as_str().unwrap_or(&v.to_string())
        );
    }
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(v["verdict"] == "authentic")
}

impl Client {
    /// Signs an `ehr` operation with `signer`, submits it and waits for its commit (see
    /// [`Client::commit_one`]).
    pub async fn commit_ehr(
        &self,
        chain: &str,
        signer: &SecretKey,
        op: &medchain_ehr::EhrOp,
    ) -> Result<Value> {
        self.commit_one(signed_tx(
            chain,
            medchain_ehr::chaincode::NAME,
            medchain_ehr::Ehr::payload(op),
            signer,
        ))
        .await
    }

    /// A request signed with `key` (see `ehr_vault` for the scheme). Call after
    /// [`Client::chain_id`], which learns the node's key the signature names (without it the
    /// node refuses the signature).
    fn signed(
        &self,
        method: reqwest::Method,
        path: &str,
        key: &SecretKey,
        chain: &str,
    ) -> reqwest::RequestBuilder {
        self.signed_body(method, path, key, chain, None)
    }

    /// As [`Client::signed`], the signature also covering `body` (for the wrapped-key routes;
    /// the caller sends that body).
    fn signed_body(
        &self,
        method: reqwest::Method,
        path: &str,
        key: &SecretKey,
        chain: &str,
        body: Option<&[u8]>,
    ) -> reqwest::RequestBuilder {
        let node = self
            .node
            .get()
            .copied()
            .unwrap_or(medchain_types::PublicKey([0; 32]));
        let headers =
            crate::ehr_vault::sign_headers(key, chain, &node, method.as_str(), path, body);
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req
    }

    async fn ehr_json(&self, q: &medchain_ehr::EhrQuery) -> Result<Value> {
        let r = self
            .http
            .post(format!("{}/api/v1/ehr/query", self.base))
            .json(q)
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.base))?;
        let code = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        if !code.is_success() {
            bail!(
                "HTTP {code}: {}",
                v["error"].as_str().unwrap_or(&v.to_string())
            );
        }
        Ok(v)
    }

    /// Submits one signed transaction and waits; fails unless its receipt is a success.
    pub async fn commit_one(&self, tx: Transaction) -> Result<Value> {
        let (code, v) = self.submit(&[tx], true).await?;
        if !code.is_success() {
            bail!(
                "HTTP {code}: {}",
                v["error"].as_str().unwrap_or(&v.to_string())
            );
        }
        let r = v["receipts"][0].clone();
        if r["status"] != "success" {
            bail!("the transaction failed: {}", r["status"]);
        }
        Ok(r)
    }
}

/// Prints progress of a long transfer to stderr (at most every 5%).
fn progress_printer(what: &'static str, total: u64) -> impl Fn(u64) + Sync {
    let last = AtomicU64::new(u64::MAX);
    move |done: u64| {
        let pct = done.saturating_mul(100).checked_div(total).unwrap_or(100);
        let step = pct / 5;
        if last.swap(step, Relaxed) != step {
            eprint!("\r{what}: {pct:>3}% ({} of {} MB)", done >> 20, total >> 20);
            if pct >= 100 {
                eprintln!();
            }
        }
    }
}

fn scratch_dir() -> std::path::PathBuf {
    let mut t = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut t);
    std::env::temp_dir().join(format!("medchain-ehr-{}", hex::encode(t)))
}

/// What `ehr_doc_upload` uploads.
#[derive(Debug, Clone)]
pub struct DocUpload {
    /// The file.
    pub file: std::path::PathBuf,
    /// The document id.
    pub doc_id: String,
    /// The patient's pseudonym (hex).
    pub patient: String,
    /// Its kind.
    pub kind: medchain_ehr::chaincode::DocKind,
    /// The document it replaces.
    pub supersedes: Option<String>,
}

/// `medchain ehr doc upload`: encrypts FILE locally under a fresh key (the node never sees the
/// plaintext), stores the ciphertext on the node, anchors the document (SHA-256 of the
/// plaintext, blob address, kind, issuer, patient) and leaves the key wrapped for the patient,
/// the issuer and the issuer's hospital.
pub async fn ehr_doc_upload(
    node: &str,
    key_file: &std::path::Path,
    doc: DocUpload,
    quiet: bool,
) -> Result<()> {
    use medchain_ehr::{wrap_key, DocKey};
    let DocUpload {
        file,
        doc_id,
        patient,
        kind,
        supersedes,
    } = doc;
    let (file, doc_id, patient) = (file.as_path(), doc_id.as_str(), patient.as_str());
    let patient: medchain_types::PublicKey = patient
        .parse()
        .map_err(|e| anyhow::anyhow!("--patient: {e}"))?;
    let signer = crate::keyfile::read(key_file)?;
    let client = Client::new(node)?;
    let chain = client.chain_id().await?;
    let doctor = client
        .ehr_json(&medchain_ehr::EhrQuery::Doctor(signer.public()))
        .await?;
    let hospital: medchain_types::PublicKey = serde_json::from_value(doctor["hospital"].clone())
        .context("the key file's key is not a registered doctor")?;
    let size = std::fs::metadata(file)
        .with_context(|| format!("cannot read {}", file.display()))?
        .len();
    let key = DocKey::generate();
    // Encrypted while it is sent: the ciphertext goes straight into the request body (no copy
    // on the client's disk); the node computes the blob's address, which must match ours.
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(8);
    let encryptor = {
        let (file, key) = (file.to_owned(), key.clone());
        tokio::task::spawn_blocking(move || -> Result<medchain_ehr::Stored> {
            let f = std::fs::File::open(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let show = progress_printer("upload", size);
            let noop = |_: u64| {};
            let progress: &(dyn Fn(u64) + Sync) = if quiet { &noop } else { &show };
            let mut out = ChannelWriter::new(tx);
            match medchain_ehr::encrypt(f, &key, &mut out, progress) {
                Ok(stored) => {
                    std::io::Write::flush(&mut out)?;
                    Ok(stored)
                }
                Err(e) => {
                    // Abort the request (the node then discards what it received) rather than
                    // end the body cleanly, which would store a truncated blob.
                    out.abort(&e);
                    Err(e.into())
                }
            }
        })
    };
    {
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|chunk| (chunk, rx))
        });
        let sent = client
            .signed(reqwest::Method::POST, "/api/v1/ehr/blobs", &signer, &chain)
            .timeout(TRANSFER_TIMEOUT)
            .header("content-type", "application/octet-stream")
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await;
        let encrypted = encryptor.await?;
        let r = sent.with_context(|| format!("cannot reach {node}"))?;
        let stored = encrypted?;
        let code = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        if !code.is_success() {
            bail!(
                "storing the blob: HTTP {code}: {}",
                v["error"].as_str().unwrap_or(&v.to_string())
            );
        }
        if v["blob"].as_str() != Some(stored.blob.to_hex().as_str()) {
            bail!(
                "the node stored blob {} but we sent {}",
                v["blob"],
                stored.blob
            );
        }
        if !quiet {
            eprintln!("stored blob {} ({} bytes)", stored.blob, stored.blob_size);
        }
        // The anchor.
        let op = medchain_ehr::EhrOp::IssueDocument {
            doc_id: doc_id.to_owned(),
            patient,
            kind,
            plaintext_sha256: stored.plaintext_sha256,
            blob: stored.blob,
            supersedes,
        };
        let receipt = client.commit_ehr(&chain, &signer, &op).await?;
        // The key, for the patient, the issuer and its hospital.
        let mut readers = vec![patient, signer.public(), hospital];
        readers.dedup();
        let wrapped = readers
            .iter()
            .map(|r| wrap_key(&key, r, doc_id.as_bytes()))
            .collect::<Result<Vec<_>, _>>()?;
        let path = format!("/api/v1/ehr/docs/{doc_id}/keys");
        put_keys(&client, &signer, &chain, &path, &wrapped).await?;
        if quiet {
            return Ok(());
        }
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "doc": doc_id,
                "sha256": stored.plaintext_sha256,
                "blob": stored.blob,
                "size": stored.size,
                "height": receipt["height"],
                "tx": receipt["tx_hash"],
            }))?
        );
        Ok(())
    }
}

/// `r` if it succeeded; otherwise an error with the node's message, naming `what`.
async fn ok_or_error(r: reqwest::Response, what: &str) -> Result<reqwest::Response> {
    if r.status().is_success() {
        return Ok(r);
    }
    let code = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    bail!(
        "{what}: HTTP {code}: {}",
        v["error"].as_str().unwrap_or(&v.to_string())
    )
}

/// Records on the chain that `reader` reads `object` of `patient` (every read of personal data
/// is logged before the node serves it).
async fn log_read(
    client: &Client,
    chain: &str,
    reader: &SecretKey,
    patient: &medchain_types::PublicKey,
    object: &str,
) -> Result<()> {
    let op = medchain_ehr::EhrOp::LogRead {
        patient: *patient,
        object: object.to_owned(),
    };
    client
        .commit_ehr(chain, reader, &op)
        .await
        .with_context(|| format!("logging the read of {object} (is there a valid grant?)"))?;
    Ok(())
}

/// `reader`'s wrapped key at `path` (a signed GET); `what` names it in errors.
async fn wrapped_key(
    client: &Client,
    chain: &str,
    reader: &SecretKey,
    path: &str,
    what: &str,
) -> Result<medchain_ehr::WrappedKey> {
    let r = client
        .signed(reqwest::Method::GET, path, reader, chain)
        .send()
        .await?;
    let code = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    if !code.is_success() {
        bail!(
            "{what}: HTTP {code}: {}",
            v["error"].as_str().unwrap_or(&v.to_string())
        );
    }
    Ok(serde_json::from_value(v)?)
}

/// A blocking writer into a channel (a request body being streamed): what is written is
/// gathered into pieces of [`ChannelWriter::PIECE`] bytes, each handed on without another copy.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<std::io::Result<bytes::Bytes>>,
    buf: bytes::BytesMut,
}

impl ChannelWriter {
    const PIECE: usize = 1 << 20;

    fn new(tx: tokio::sync::mpsc::Sender<std::io::Result<bytes::Bytes>>) -> ChannelWriter {
        ChannelWriter {
            tx,
            buf: bytes::BytesMut::with_capacity(Self::PIECE),
        }
    }

    fn send(&mut self) -> std::io::Result<()> {
        let piece = self.buf.split().freeze();
        self.buf.reserve(Self::PIECE);
        self.tx
            .blocking_send(Ok(piece))
            .map_err(|_| std::io::Error::other("the upload stopped"))
    }

    /// Ends the body with an error, so that the receiver discards what it got (rather than
    /// store a truncated blob).
    fn abort(self, e: &dyn std::fmt::Display) {
        let _ = self
            .tx
            .blocking_send(Err(std::io::Error::other(e.to_string())));
    }
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        // A piece goes before it would outgrow its buffer (growing it would copy it).
        if !self.buf.is_empty() && self.buf.len() + data.len() > Self::PIECE {
            self.send()?;
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            self.send()
        }
    }
}

/// `medchain ehr doc get`: logs the read on the chain (unless the reader is the patient),
/// fetches the reader's wrapped key and the ciphertext, decrypts into OUT (authenticating every
/// chunk) and checks the plaintext against the anchored SHA-256.
pub async fn ehr_doc_get(
    node: &str,
    key_file: &std::path::Path,
    doc_id: &str,
    out: &std::path::Path,
    quiet: bool,
) -> Result<()> {
    let signer = crate::keyfile::read(key_file)?;
    let anchor = doc_get_as(node, &signer, doc_id, out, quiet).await?;
    if !quiet {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "doc": doc_id,
                "out": out.display().to_string(),
                "sha256": anchor.plaintext_sha256,
                "verified": true,
            }))?
        );
    }
    Ok(())
}

/// Reads document `doc_id` as `signer` into `out`: logs the read on the chain (unless the
/// signer is the patient), fetches the signer's wrapped key and the ciphertext, and writes the
/// plaintext only if every chunk authenticates and the plaintext matches its anchored
/// SHA-256. Returns the anchor.
async fn doc_get_as(
    node: &str,
    signer: &SecretKey,
    doc_id: &str,
    out: &std::path::Path,
    quiet: bool,
) -> Result<medchain_ehr::chaincode::DocumentAnchor> {
    use medchain_ehr::unwrap_key;
    let signer = signer.clone();
    let client = Client::new(node)?;
    let chain = client.chain_id().await?;
    let anchor = doc_anchor(&client, doc_id).await?;
    if anchor.erased_ms.is_some() {
        bail!("document {doc_id} was erased at the patient's request");
    }
    if anchor.patient != signer.public() {
        log_read(
            &client,
            &chain,
            &signer,
            &anchor.patient,
            &format!("doc/{doc_id}"),
        )
        .await?;
    }
    let path = format!("/api/v1/ehr/docs/{doc_id}/key");
    let wrapped = wrapped_key(&client, &chain, &signer, &path, "the key").await?;
    let key = unwrap_key(&wrapped, &signer, doc_id.as_bytes())?;
    let path = format!("/api/v1/ehr/docs/{doc_id}/blob");
    let r = client
        .signed(reqwest::Method::GET, &path, &signer, &chain)
        .timeout(TRANSFER_TIMEOUT)
        .send()
        .await?;
    let mut r = ok_or_error(r, "the blob").await?;
    let total = r.content_length().unwrap_or(0);
    // One pass: every chunk is authenticated and decrypted while it arrives, and the
    // plaintext's SHA-256 compared with the anchor (which makes re-hashing the ciphertext
    // against its address redundant: see `decrypt_chunks`); the output appears only if
    // everything matches.
    let tmp_out = out.with_extension("medchain-part");
    let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(16);
    let (tmp, blob, expected) = (tmp_out.clone(), anchor.blob, anchor.plaintext_sha256);
    let decryptor = tokio::task::spawn_blocking(move || -> Result<()> {
        let input = ChunkReader {
            rx,
            cur: bytes::Bytes::new(),
        };
        // The plaintext goes to disk past the page cache (as the vault writes blobs), on a
        // thread of its own so that the synchronous writes do not hold up decryption.
        let _ = std::fs::remove_file(&tmp);
        let file = medchain_ehr::direct::DirectWriter::create(&tmp)?;
        // Written chunks go back to the decryptor to be filled again (no allocation and no
        // fresh pages per chunk).
        let (chunks, queue) = std::sync::mpsc::sync_channel::<Vec<u8>>(32);
        let (back, recycle) = std::sync::mpsc::sync_channel::<Vec<u8>>(40);
        let writer = std::thread::spawn(move || -> std::io::Result<u64> {
            let mut file = file;
            for chunk in queue {
                std::io::Write::write_all(&mut file, &chunk)?;
                let _ = back.try_send(chunk);
            }
            file.finish()
        });
        let decrypted = medchain_ehr::decrypt_chunks(input, &blob, &key, chunks, recycle, &|_| {});
        let written = writer
            .join()
            .map_err(|_| anyhow::anyhow!("the writer thread failed"))?;
        let sha = decrypted?;
        written?;
        if sha != expected {
            bail!("the decrypted document's SHA-256 {sha} differs from the anchored {expected}");
        }
        Ok(())
    });
    let show = progress_printer("download", total);
    let mut done = 0u64;
    let mut fetch_error = None;
    loop {
        match r.chunk().await {
            Ok(Some(chunk)) => {
                done += chunk.len() as u64;
                if !quiet {
                    show(done);
                }
                if tx.send(chunk).await.is_err() {
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                fetch_error = Some(e);
                break;
            }
        }
    }
    drop(tx);
    let decrypted = decryptor.await?;
    if let Some(e) = fetch_error {
        let _ = std::fs::remove_file(&tmp_out);
        return Err(e.into());
    }
    if let Err(e) = decrypted {
        let _ = std::fs::remove_file(&tmp_out);
        return Err(e);
    }
    std::fs::rename(&tmp_out, out)?;
    Ok(anchor)
}

/// The chain's anchor of document `doc_id`.
async fn doc_anchor(
    client: &Client,
    doc_id: &str,
) -> Result<medchain_ehr::chaincode::DocumentAnchor> {
    let (code, anchor) = client.get(&format!("/api/v1/ehr/docs/{doc_id}")).await?;
    if !code.is_success() {
        bail!(
            "document {doc_id}: HTTP {code}: {}",
            anchor["error"].as_str().unwrap_or(&anchor.to_string())
        );
    }
    Ok(serde_json::from_value(anchor)?)
}

/// The document key of `doc_id`, as `me` (its patient or issuer) unwraps it; logs the read
/// first when `me` is not the patient.
async fn own_doc_key(
    client: &Client,
    chain: &str,
    me: &SecretKey,
    doc_id: &str,
) -> Result<(
    medchain_ehr::DocKey,
    medchain_ehr::chaincode::DocumentAnchor,
)> {
    let anchor = doc_anchor(client, doc_id).await?;
    if anchor.patient != me.public() && anchor.issuer != me.public() {
        bail!("only the document's patient or its issuing doctor shares it");
    }
    if anchor.patient != me.public() {
        log_read(client, chain, me, &anchor.patient, &format!("doc/{doc_id}")).await?;
    }
    let path = format!("/api/v1/ehr/docs/{doc_id}/key");
    let wrapped = wrapped_key(client, chain, me, &path, "the key").await?;
    Ok((
        medchain_ehr::unwrap_key(&wrapped, me, doc_id.as_bytes())?,
        anchor,
    ))
}

/// `medchain ehr doc share`: the patient or the issuer wraps the document key for another
/// reader (`with`, e.g. a hospital granted access after the upload), or, without `with`,
/// makes a share link: a fresh key that the chain lets read this one document until the
/// expiry (a `ShareDocument` transaction), with the document key wrapped for it. The link
/// carries that key's secret after `#`, which browsers do not send to servers.
pub async fn ehr_doc_share(
    node: &str,
    key_file: &std::path::Path,
    doc_id: &str,
    with: Option<&str>,
    hours: u64,
) -> Result<()> {
    let me = crate::keyfile::read(key_file)?;
    let client = Client::new(node)?;
    let chain = client.chain_id().await?;
    let (key, anchor) = own_doc_key(&client, &chain, &me, doc_id).await?;
    let keys_path = format!("/api/v1/ehr/docs/{doc_id}/keys");
    if let Some(with) = with {
        let with: medchain_types::PublicKey =
            with.parse().map_err(|e| anyhow::anyhow!("--with: {e}"))?;
        let wrapped = medchain_ehr::wrap_key(&key, &with, doc_id.as_bytes())?;
        put_keys(&client, &me, &chain, &keys_path, &[wrapped]).await?;
        println!("key of document {doc_id} wrapped for {with}");
        return Ok(());
    }
    if hours == 0 || hours > 30 * 24 {
        bail!("--hours must be 1 to 720 (30 days)");
    }
    let link_key = SecretKey::generate(&mut rand::rngs::OsRng);
    // Five minutes short of the asked time, so that 720 h stays within the chain's 30-day
    // limit even when this machine's clock is a little ahead of the block time.
    let expires_ms = crate::runtime::now_ms() + hours * 3600 * 1000 - 5 * 60 * 1000;
    let op = medchain_ehr::EhrOp::ShareDocument {
        doc_id: doc_id.to_owned(),
        holder: link_key.public(),
        expires_ms,
    };
    client
        .commit_ehr(&chain, &me, &op)
        .await
        .context("recording the share link")?;
    let wrapped = medchain_ehr::wrap_key(&key, &link_key.public(), doc_id.as_bytes())?;
    put_keys(&client, &me, &chain, &keys_path, &[wrapped]).await?;
    let link = format!(
        "{}/portal/#share/{doc_id}/{}",
        node.trim_end_matches('/'),
        hex::encode(link_key.seed())
    );
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({
            "doc": doc_id,
            "patient": anchor.patient,
            "link": link,
            "holder": link_key.public(),
            "expires_ms": expires_ms,
        }))?
    );
    Ok(())
}

/// A parsed share link: the node's URL, the document id and the link's key.
pub fn parse_share_link(link: &str) -> Result<(String, String, SecretKey)> {
    let (base, frag) = link
        .split_once("/portal/#share/")
        .ok_or_else(|| anyhow::anyhow!("not a share link (…/portal/#share/DOC/SECRET)"))?;
    let (doc, secret) = frag
        .split_once('/')
        .ok_or_else(|| anyhow::anyhow!("not a share link: no secret after the document id"))?;
    let seed: [u8; 32] = hex::decode(secret)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| anyhow::anyhow!("the link's secret is not 64 hex characters"))?;
    if !medchain_types::is_valid_name(doc, 64) {
        bail!("the link's document id {doc:?} is malformed");
    }
    Ok((base.to_owned(), doc.to_owned(), SecretKey::from_seed(seed)))
}

/// `medchain ehr doc open LINK --out FILE`: downloads the shared document with the link's
/// key (the read is logged on the chain under the link), decrypts it, re-hashes it and checks
/// it against its anchor; prints the verdict. `node` overrides the link's node.
pub async fn ehr_doc_open(
    link: &str,
    node: Option<&str>,
    out: &std::path::Path,
    quiet: bool,
) -> Result<()> {
    let (base, doc_id, key) = parse_share_link(link)?;
    let node = node.unwrap_or(&base);
    let anchor = doc_get_as(node, &key, &doc_id, out, quiet).await?;
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({
            "verdict": "authentic",
            "doc": doc_id,
            "out": out.display().to_string(),
            "sha256": anchor.plaintext_sha256,
            "issuer": anchor.issuer,
            "hospital": anchor.hospital,
            "kind": anchor.kind,
            "anchored_at_ms": anchor.at_ms,
            "height": anchor.height,
        }))?
    );
    Ok(())
}

/// A blocking reader over chunks arriving through a channel.
struct ChunkReader {
    rx: tokio::sync::mpsc::Receiver<bytes::Bytes>,
    cur: bytes::Bytes,
}

impl std::io::Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(b) => self.cur = b,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        self.cur = self.cur.slice(n..);
        Ok(n)
    }
}

/// A patient's profile: personal data, only ever stored encrypted in the vault. The random
/// salt makes the on-chain commitment (the SHA-256 of this document) unguessable.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Profile {
    /// Random, hex.
    pub salt: String,
    /// Full name.
    pub name: String,
    /// Email.
    pub email: String,
    /// Date of birth (YYYY-MM-DD).
    pub date_of_birth: String,
    /// Gender.
    pub gender: String,
    /// Blood group.
    pub blood_group: String,
    /// Height in centimetres.
    pub height_cm: Option<u32>,
    /// Phone or other contact.
    pub contact: String,
    /// Postal address.
    pub address: String,
    /// A photo, as a `data:image/png;base64,…` or `data:image/jpeg;base64,…` URL (see
    /// [`photo_data_url`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub photo: Option<String>,
}

/// The largest photo a profile holds, in bytes (the whole encrypted profile is at most 1 MiB).
pub const PHOTO_MAX: u64 = 512 * 1024;

/// Reads a PNG or JPEG file as a `data:` URL for [`Profile::photo`]; refuses anything else and
/// anything over [`PHOTO_MAX`].
pub fn photo_data_url(path: &std::path::Path) -> Result<String> {
    use base64::Engine;
    let size = std::fs::metadata(path)
        .with_context(|| format!("the photo {}", path.display()))?
        .len();
    if size > PHOTO_MAX {
        bail!(
            "the photo {} is {size} bytes; at most {PHOTO_MAX} fit in a profile",
            path.display()
        );
    }
    let bytes = std::fs::read(path).with_context(|| format!("the photo {}", path.display()))?;
    let kind = if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        "png"
    } else if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        "jpeg"
    } else {
        bail!("the photo {} is neither a PNG nor a JPEG", path.display());
    };
    Ok(format!(
        "data:image/{kind};base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    ))
}

async fn put_keys(
    client: &Client,
    signer: &SecretKey,
    chain: &str,
    path: &str,
    keys: &[medchain_ehr::WrappedKey],
) -> Result<()> {
    let body = serde_json::to_vec(keys)?;
    let r = client
        .signed_body(reqwest::Method::PUT, path, signer, chain, Some(&body))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await?;
    ok_or_error(r, "storing keys").await?;
    Ok(())
}

/// `medchain ehr patient register`: encrypts the profile locally, stores it in the vault, and
/// registers the pseudonym with the profile's salted commitment.
pub async fn ehr_patient_register(
    node: &str,
    key_file: &std::path::Path,
    mut profile: Profile,
) -> Result<()> {
    use medchain_ehr::wrap_key;
    let signer = crate::keyfile::read(key_file)?;
    let client = Client::new(node)?;
    let chain = client.chain_id().await?;
    let mut salt = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    profile.salt = hex::encode(salt);
    let plain = serde_json::to_vec(&profile)?;
    // The chain first: nodes store a patient's blob only once it is anchored for that patient.
    let (key, stored, bytes) = seal_small(&plain)?;
    {
        let op = medchain_ehr::EhrOp::RegisterPatient {
            profile_commitment: stored.plaintext_sha256,
            profile_blob: Some(stored.blob),
        };
        let receipt = client.commit_ehr(&chain, &signer, &op).await?;
        upload_small(&client, &chain, &signer, &stored.blob, bytes, "the profile").await?;
        let id = format!("profile-{}", signer.public().to_hex());
        let wrapped = wrap_key(&key, &signer.public(), id.as_bytes())?;
        put_keys(
            &client,
            &signer,
            &chain,
            &format!("/api/v1/ehr/profiles/{}/keys", signer.public()),
            &[wrapped],
        )
        .await?;
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "patient": signer.public(),
                "profile_commitment": stored.plaintext_sha256,
                "profile_blob": stored.blob,
                "height": receipt["height"],
            }))?
        );
        Ok(())
    }
}

/// Encrypts a small record (a profile, a case) under a fresh key and stores the ciphertext on
/// the node as `signer`. Returns the key and where it is stored.
async fn store_small(
    client: &Client,
    chain: &str,
    signer: &SecretKey,
    plain: &[u8],
    what: &str,
) -> Result<(medchain_ehr::DocKey, medchain_ehr::Stored)> {
    let (key, stored, bytes) = seal_small(plain)?;
    upload_small(client, chain, signer, &stored.blob, bytes, what).await?;
    Ok((key, stored))
}

/// Encrypts a small record under a fresh key: the key, the blob's address and hashes, and the
/// blob's bytes.
fn seal_small(plain: &[u8]) -> Result<(medchain_ehr::DocKey, medchain_ehr::Stored, Vec<u8>)> {
    let key = medchain_ehr::DocKey::generate();
    let mut bytes = Vec::new();
    let stored = medchain_ehr::encrypt(plain, &key, &mut bytes, &|_| {})?;
    Ok((key, stored, bytes))
}

/// Stores a small blob on the node as `signer` (checked there against its address).
async fn upload_small(
    client: &Client,
    chain: &str,
    signer: &SecretKey,
    blob: &medchain_types::Hash,
    bytes: Vec<u8>,
    what: &str,
) -> Result<()> {
    let path = format!("/api/v1/ehr/blobs/{blob}");
    let r = client
        .signed(reqwest::Method::PUT, &path, signer, chain)
        .header("content-type", "application/octet-stream")
        .body(bytes)
        .send()
        .await?;
    ok_or_error(r, &format!("storing {what}")).await?;
    Ok(())
}

/// A small record's place: what the read is logged as, its routes and anchors.
struct SmallRecord<'a> {
    patient: medchain_types::PublicKey,
    /// `profile` or `case/<id>` (the `LogRead` object).
    object: String,
    /// The route prefix (`…/key` and `…/blob` under it).
    base: String,
    /// The key-wrapping context (the record id).
    context: String,
    blob: medchain_types::Hash,
    sha256: medchain_types::Hash,
    what: &'a str,
}

/// Reads a small record as `reader`: logs the read (unless the reader is the patient),
/// fetches the reader's wrapped key and the ciphertext, checks the ciphertext's address and the
/// plaintext's SHA-256 against the chain. Returns the key and the plaintext.
async fn fetch_small(
    client: &Client,
    chain: &str,
    reader: &SecretKey,
    rec: &SmallRecord<'_>,
) -> Result<(medchain_ehr::DocKey, Vec<u8>)> {
    use medchain_ehr::{unwrap_key, Vault};
    let what = rec.what;
    if reader.public() != rec.patient {
        log_read(client, chain, reader, &rec.patient, &rec.object).await?;
    }
    let key_path = format!("{}/key", rec.base);
    let wrapped = wrapped_key(
        client,
        chain,
        reader,
        &key_path,
        &format!("the key of {what}"),
    )
    .await?;
    let key = unwrap_key(&wrapped, reader, rec.context.as_bytes())?;
    let r = client
        .signed(
            reqwest::Method::GET,
            &format!("{}/blob", rec.base),
            reader,
            chain,
        )
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("{what}: HTTP {}", r.status());
    }
    let bytes = r.bytes().await?;
    let scratch = scratch_dir();
    let result = (|| -> Result<Vec<u8>> {
        let vault = Vault::open(&scratch)?;
        vault.import(&bytes[..], &rec.blob)?;
        let mut plain = Vec::new();
        let sha = vault.get(&rec.blob, &key, &mut plain, &|_| {})?;
        if sha != rec.sha256 {
            bail!("{what} does not match its SHA-256 on the chain");
        }
        Ok(plain)
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    Ok((key, result?))
}

/// Fetches and decrypts a patient's profile as `reader` (logging the read unless the reader is
/// the patient) and checks it against the on-chain commitment.
async fn fetch_profile(
    client: &Client,
    chain: &str,
    reader: &SecretKey,
    patient: &medchain_types::PublicKey,
) -> Result<(medchain_ehr::DocKey, Profile)> {
    let record = client
        .ehr_json(&medchain_ehr::EhrQuery::Patient(*patient))
        .await?;
    let commitment: medchain_types::Hash =
        serde_json::from_value(record["profile_commitment"].clone()).context("no such patient")?;
    let blob: medchain_types::Hash = serde_json::from_value(record["profile_blob"].clone())
        .context("the patient registered no profile")?;
    let rec = SmallRecord {
        patient: *patient,
        object: "profile".into(),
        base: format!("/api/v1/ehr/profiles/{patient}"),
        context: format!("profile-{}", patient.to_hex()),
        blob,
        sha256: commitment,
        what: "the profile",
    };
    let (key, plain) = fetch_small(client, chain, reader, &rec).await?;
    Ok((key, serde_json::from_slice(&plain)?))
}

/// `medchain ehr patient profile`: prints a patient's profile (checked against the chain); its
/// photo, if any, goes to `photo_out` (decoded) or is only described.
pub async fn ehr_patient_profile(
    node: &str,
    key_file: &std::path::Path,
    patient: &str,
    photo_out: Option<&std::path::Path>,
) -> Result<()> {
    use base64::Engine;
    let patient: medchain_types::PublicKey = patient
        .parse()
        .map_err(|e| anyhow::anyhow!("patient: {e}"))?;
    let reader = crate::keyfile::read(key_file)?;
    let client = Client::new(node)?;
    let chain = client.chain_id().await?;
    let (_, mut profile) = fetch_profile(&client, &chain, &reader, &patient).await?;
    if let Some(url) = profile.photo.take() {
        let (kind, data) = url
            .strip_prefix("data:image/")
            .and_then(|rest| rest.split_once(";base64,"))
            .context("the profile's photo is not a base64 data: URL")?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data)
            .context("the profile's photo is not valid base64")?;
        profile.photo = Some(match photo_out {
            Some(path) => {
                std::fs::write(path, &bytes)
                    .with_context(|| format!("writing the photo to {}", path.display()))?;
                path.display().to_string()
            }
            None => format!(
                "image/{kind}, {} bytes (save it with --photo-out FILE)",
                bytes.len()
            ),
        });
    }
    println!("{}", serde_json::to_string_pretty(&profile)?);
    Ok(())
}

/// `medchain ehr patient share`: the patient wraps its profile key for a hospital (which also
/// needs a `Profile` grant to read it).
pub async fn ehr_patient_share(node: &str, key_file: &std::path::Path, with: &str) -> Result<()> {
    let with: medchain_types::PublicKey =
        with.parse().map_err(|e| anyhow::anyhow!("--with: {e}"))?;
    let me = crate::keyfile::read(key_file)?;
    let client = Client::new(node)?;
    let chain = client.chain_id().await?;
    let (key, _) = fetch_profile(&client, &chain, &me, &me.public()).await?;
    let id = format!("profile-{}", me.public().to_hex());
    let wrapped = medchain_ehr::wrap_key(&key, &with, id.as_bytes())?;
    put_keys(
        &client,
        &me,
        &chain,
        &format!("/api/v1/ehr/profiles/{}/keys", me.public()),
        &[wrapped],
    )
    .await?;
    println!("profile key shared with {with}");
    Ok(())
}

/// A case's contents: personal data, only ever stored encrypted in the vault (the chain holds
/// its SHA-256; the random salt makes that hash unguessable).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CaseContent {
    /// Random, hex.
    pub salt: String,
    /// The case's id.
    pub case_id: String,
    /// The presenting problem.
    pub problem: String,
    /// Systolic blood pressure (mmHg).
    pub systolic_mmhg: u16,
    /// Diastolic blood pressure (mmHg).
    pub diastolic_mmhg: u16,
    /// Blood glucose (mmol/L).
    pub glucose_mmol_l: f64,
    /// Free notes.
    pub notes: String,
}

impl CaseContent {
    /// Refuses values no measurement gives (typos such as 1200 for 120).
    pub fn check(&self) -> Result<()> {
        if self.problem.trim().is_empty() || self.problem.len() > 2000 {
            bail!("--problem: 1 to 2000 bytes");
        }
        if !(40..=300).contains(&self.systolic_mmhg) {
            bail!("--systolic {}: expected 40 to 300 mmHg", self.systolic_mmhg);
        }
        if !(20..=200).contains(&self.diastolic_mmhg) || self.diastolic_mmhg >= self.systolic_mmhg {
            bail!(
                "--diastolic {}: expected 20 to 200 mmHg and below the systolic",
                self.diastolic_mmhg
            );
        }
        if !(self.glucose_mmol_l > 0.0 && self.glucose_mmol_l <= 100.0) {
            bail!(
                "--glucose {}: expected 0 to 100 mmol/L",
                self.glucose_mmol_l
            );
        }
        if self.notes.len() > 20_000 {
            bail!("--notes: at most 20000 bytes");
        }
        Ok(())
    }
}

/// `medchain ehr case record`: a hospital (or its doctor) with a write grant on the patient's
/// cases encrypts the case locally, stores the ciphertext, records the case on the chain (its
/// blob address and SHA-256 only) and leaves the key wrapped for the patient, the author and
/// the author's hospital.
pub async fn ehr_case_record(
    node: &str,
    key_file: &std::path::Path,
    patient: &str,
    mut content: CaseContent,
) -> Result<()> {
    let patient: medchain_types::PublicKey = patient
        .parse()
        .map_err(|e| anyhow::anyhow!("--patient: {e}"))?;
    if !medchain_types::is_valid_name(&content.case_id, 64) {
        bail!("--id: 1 to 64 characters of a-z 0-9 - _ .");
    }
    content.check()?;
    let signer = crate::keyfile::read(key_file)?;
    let client = Client::new(node)?;
    let chain = client.chain_id().await?;
    let mut salt = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    content.salt = hex::encode(salt);
    let plain = serde_json::to_vec(&content)?;
    let (key, stored) = store_small(&client, &chain, &signer, &plain, "the case").await?;
    let op = medchain_ehr::EhrOp::RecordCase {
        patient,
        case_id: content.case_id.clone(),
        blob: stored.blob,
        content_sha256: stored.plaintext_sha256,
    };
    let receipt = client
        .commit_ehr(&chain, &signer, &op)
        .await
        .context("recording the case (is there a write grant on cases?)")?;
    let mut readers = vec![patient, signer.public()];
    let doctor = client
        .ehr_json(&medchain_ehr::EhrQuery::Doctor(signer.public()))
        .await?;
    if let Ok(h) = serde_json::from_value::<medchain_types::PublicKey>(doctor["hospital"].clone()) {
        readers.push(h);
    }
    readers.dedup();
    let id = crate::ehr_vault::case_record_id(&patient, &content.case_id);
    let keys = readers
        .iter()
        .map(|r| medchain_ehr::wrap_key(&key, r, id.as_bytes()))
        .collect::<Result<Vec<_>, _>>()?;
    put_keys(
        &client,
        &signer,
        &chain,
        &format!("/api/v1/ehr/cases/{patient}/{}/keys", content.case_id),
        &keys,
    )
    .await?;
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({
            "patient": patient,
            "case": content.case_id,
            "blob": stored.blob,
            "content_sha256": stored.plaintext_sha256,
            "height": receipt["height"],
        }))?
    );
    Ok(())
}

/// `medchain ehr case get`: the case's contents, for the patient or a reader with a `Cases`
/// grant (the read is logged first), checked against the chain.
pub async fn ehr_case_get(
    node: &str,
    key_file: &std::path::Path,
    patient: &str,
    case_id: &str,
) -> Result<()> {
    let patient: medchain_types::PublicKey = patient
        .parse()
        .map_err(|e| anyhow::anyhow!("--patient: {e}"))?;
    let reader = crate::keyfile::read(key_file)?;
    let client = Client::new(node)?;
    let chain = client.chain_id().await?;
    let case = client
        .ehr_json(&medchain_ehr::EhrQuery::Case {
            patient,
            case_id: case_id.to_owned(),
        })
        .await?;
    let case: Option<medchain_ehr::chaincode::CaseRecord> = serde_json::from_value(case)?;
    let case = case.ok_or_else(|| anyhow::anyhow!("no case {case_id:?} of patient {patient}"))?;
    let rec = SmallRecord {
        patient,
        object: format!("case/{case_id}"),
        base: format!("/api/v1/ehr/cases/{patient}/{case_id}"),
        context: crate::ehr_vault::case_record_id(&patient, case_id),
        blob: case.blob,
        sha256: case.content_sha256,
        what: "the case",
    };
    let (_, plain) = fetch_small(&client, &chain, &reader, &rec).await?;
    let content: CaseContent = serde_json::from_slice(&plain)?;
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({
            "case": case_id,
            "patient": patient,
            "hospital": case.hospital,
            "author": case.author,
            "recorded_ms": case.at_ms,
            "problem": content.problem,
            "systolic_mmhg": content.systolic_mmhg,
            "diastolic_mmhg": content.diastolic_mmhg,
            "glucose_mmol_l": content.glucose_mmol_l,
            "notes": content.notes,
            "verified": true,
        }))?
    );
    Ok(())
}
