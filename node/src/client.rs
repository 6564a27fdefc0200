//! Client commands over the HTTP API: `medchain status`, `medchain kv put|get`, and the load
//! generator `medchain load`.

use anyhow::{bail, Context, Result};
use medchain_chaincode::builtin::{Kv, KvOp};
use medchain_types::{codec, SecretKey, Transaction};
use rand::RngCore;
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A node's API.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
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

    /// The chain id the node serves.
    pub async fn chain_id(&self) -> Result<String> {
        Ok(self.status().await?["chain_id"]
            .as_str()
            .context("status has no chain_id")?
            .to_owned())
    }

    /// Submits transactions in canonical encoding; with `wait`, returns when all are committed.
    pub async fn submit(
        &self,
        txs: &[Transaction],
        wait: bool,
    ) -> Result<(reqwest::StatusCode, Value)> {
        let url = format!(
            "{}/api/v1/txs{}",
            self.base,
            if wait { "?wait=commit" } else { "" }
        );
        let r = self
            .http
            .post(url)
            .header("content-type", "application/octet-stream")
            .body(codec::encode(&txs.to_vec()))
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.base))?;
        let status = r.status();
        Ok((status, r.json().await.unwrap_or(Value::Null)))
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
    let tx = Transaction::signed(
        &chain,
        medchain_types::staking::STAKING_CHAINCODE,
        codec::encode(&op),
        rand::rngs::OsRng.next_u64(),
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
    if r.is_null() {
        bail!("not committed yet: {v}");
    }
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
    let tx = Transaction::signed(
        &chain,
        "kv",
        Kv::payload(&op),
        rand::rngs::OsRng.next_u64(),
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
    /// Most requests in flight.
    pub in_flight_max: usize,
    /// Print the report as JSON too.
    pub json: bool,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// `medchain load`: offers signed transactions at a fixed rate, waits for their commits, and
/// reports throughput and commit latency.
pub async fn load(spec: &LoadSpec) -> Result<()> {
    if spec.rate == 0 || spec.duration == 0 || spec.batch == 0 {
        bail!("--rate, --duration and --batch must be positive");
    }
    if !["noop", "kv"].contains(&spec.chaincode.as_str()) {
        bail!("--chaincode must be noop or kv");
    }
    let client = Client::new(&spec.node)?;
    let chain = client.chain_id().await?;
    let total = (spec.rate * spec.duration) as usize;
    eprintln!(
        "signing {total} transactions of {} payload bytes ({} chaincode)...",
        spec.size, spec.chaincode
    );
    let key = SecretKey::generate(&mut rand::rngs::OsRng);
    let base_nonce = rand::rngs::OsRng.next_u64() >> 16;
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let chunks: Vec<Vec<Transaction>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (key, chain, spec) = (&key, &chain, &spec);
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
    // Interleave the threads' outputs back into one sequence.
    let mut txs = Vec::with_capacity(total);
    let mut iters: Vec<_> = chunks.into_iter().map(|c| c.into_iter()).collect();
    'outer: loop {
        for it in iters.iter_mut() {
            match it.next() {
                Some(t) => txs.push(t),
                None => break 'outer,
            }
        }
    }
    let batches: Vec<Vec<Transaction>> = txs
        .chunks(spec.batch)
        .map(<[Transaction]>::to_vec)
        .collect();
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
            match client.submit(&batch, true).await {
                Ok((code, v)) if code.as_u16() == 200 => {
                    let took = t0.elapsed().as_secs_f64();
                    let receipts = v["receipts"].as_array().cloned().unwrap_or_default();
                    let ok = receipts.iter().filter(|r| r["status"] == "success").count() as u64;
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
        "offered     {} tx/s for {} s ({} transactions, {} B payload, {} per request)",
        spec.rate, spec.duration, total, spec.size, spec.batch
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
    if spec.json {
        println!(
            "{}",
            serde_json::json!({
                "offered_rate": spec.rate, "duration_s": spec.duration, "size": spec.size,
                "sent": sent.load(Relaxed), "not_sent": skipped, "committed": c, "failed": failed.load(Relaxed),
                "throughput": c as f64 / span,
                "latency_ms": {"p50": ms(percentile(&lat, 0.5)), "p90": ms(percentile(&lat, 0.9)), "p99": ms(percentile(&lat, 0.99)), "max": ms(lat.last().copied().unwrap_or(f64::NAN))}
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
    let tx = Transaction::signed(
        &chain,
        medchain_ehr::chaincode::NAME,
        medchain_ehr::Ehr::payload(&op),
        rand::rngs::OsRng.next_u64(),
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
