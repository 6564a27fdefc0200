//! What the tests of real consortia share: free ports, a consortium of `medchain node`
//! processes on 127.0.0.1 (started, signalled, killed, restarted, read through the HTTP API, and
//! stopped when dropped), signed transactions, chain verification.

// Each test binary uses part of this.
#![allow(dead_code)]

use medchain_types::{codec, SecretKey, Transaction};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_medchain");

/// Tests of one binary run one at a time: they pick ports and would share two cores.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `n` consecutive free UDP and TCP ports from a pseudo-random base (distinct per call), below
/// Linux's ephemeral range (32768 and up): a port found free there could be taken by another
/// test's outgoing connection before the node binds it (seen once in CI: "Address already in
/// use").
pub fn free_ports(n: u16) -> (u16, u16) {
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let seed = std::process::id() as u64 * 7919 + nanos + call * 4_093;
    for attempt in 0..200u64 {
        let p2p = 10_000 + ((seed + attempt * 977) % 10_000) as u16;
        let api = p2p + 10_000;
        let ok = (0..n).all(|i| {
            std::net::UdpSocket::bind(("127.0.0.1", p2p + i)).is_ok()
                && std::net::TcpListener::bind(("127.0.0.1", api + i)).is_ok()
        });
        if ok {
            return (p2p, api);
        }
    }
    panic!("no free ports");
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub nodes: Vec<Option<Child>>,
    pub apis: Vec<String>,
    pub http: reqwest::Client,
}

impl Cluster {
    pub fn start(n: usize) -> Cluster {
        Cluster::start_with(n, &[])
    }

    /// `n` nodes, with extra `medchain testnet` arguments (engine, interval).
    pub fn start_with(n: usize, extra: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let (p2p, api) = free_ports(n as u16);
        let out = Command::new(BIN)
            .args(["testnet", "--nodes", &n.to_string(), "--out"])
            .arg(dir.path())
            .args(extra)
            .args([
                "--p2p-port",
                &p2p.to_string(),
                "--api-port",
                &api.to_string(),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut c = Cluster {
            dir,
            nodes: (0..n).map(|_| None).collect(),
            apis: (0..n)
                .map(|i| format!("http://127.0.0.1:{}", api + i as u16))
                .collect(),
            http: medchain_app::client::http_builder(None)
                .unwrap()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        };
        for i in 0..n {
            c.spawn(i);
        }
        c
    }

    /// A single-validator consortium, once its API answers.
    pub async fn serving_single() -> Cluster {
        let c = Cluster::start(1);
        c.wait("the node serves its API", 60, async |c: &Cluster| {
            c.status(0).await.is_some()
        })
        .await;
        c
    }

    pub fn node_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("node{i}"))
    }

    pub fn spawn(&mut self, i: usize) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.node_dir(i).join("node.log"))
            .unwrap();
        let child = Command::new(BIN)
            .arg("node")
            .arg("--config")
            .arg(self.node_dir(i).join("node.toml"))
            .env("MEDCHAIN__LOG__LEVEL", "info,medchain=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.nodes[i] = Some(child);
    }

    /// The node whose key is `key` (hex).
    pub fn node_of(&self, key: &str) -> usize {
        (0..self.nodes.len())
            .find(|&i| {
                let file = std::fs::read_to_string(self.node_dir(i).join("node.json")).unwrap();
                file.contains(key)
            })
            .expect("the key is a node's")
    }

    /// POSTs `txs` (canonical encoding) to node `i`'s `/api/v1/txs{query}`.
    pub async fn post_txs(&self, i: usize, query: &str, txs: &[Transaction]) -> reqwest::Response {
        self.http
            .post(format!("{}/api/v1/txs{query}", self.apis[i]))
            .header("content-type", "application/octet-stream")
            .body(codec::encode(&txs.to_vec()))
            .send()
            .await
            .unwrap()
    }

    /// Submits `txs` to node `i` with `?wait=commit` and checks that all commit with success.
    pub async fn submit_waiting(&self, i: usize, txs: &[Transaction]) {
        let r = self.post_txs(i, "?wait=commit", txs).await;
        assert_eq!(r.status().as_u16(), 200);
        let body: Value = r.json().await.unwrap();
        let receipts = body["receipts"].as_array().expect("receipts");
        assert_eq!(receipts.len(), txs.len());
        assert!(receipts.iter().all(|r| r["status"] == "success"), "{body}");
    }

    /// Waits until every node has committed every transaction of `txs` with success.
    pub async fn wait_committed(&self, what: &str, secs: u64, txs: &[Transaction]) {
        self.wait(what, secs, async |c: &Cluster| {
            for i in 0..c.nodes.len() {
                if !c.has_all(i, txs).await {
                    return false;
                }
            }
            true
        })
        .await;
    }

    /// Is `tx` waiting in node `i`'s mempool?
    pub async fn pending(&self, i: usize, tx: &Transaction) -> bool {
        let Ok(r) = self
            .http
            .get(format!("{}/api/v1/txs/{}", self.apis[i], tx.hash()))
            .send()
            .await
        else {
            return false;
        };
        r.status().as_u16() == 404 && r.text().await.is_ok_and(|t| t.contains("pending"))
    }

    /// Waits until every running node reports the same view, in normal mode.
    pub async fn same_view_in_normal_mode(&self) {
        self.wait(
            "every node in the same view, in normal mode",
            60,
            async |c: &Cluster| {
                let mut views = Vec::new();
                for i in 0..c.nodes.len() {
                    if c.nodes[i].is_none() {
                        continue;
                    }
                    match c.status(i).await {
                        Some(s) if s["engine_status"]["mode"] == "normal" => {
                            views.push(s["view"].clone())
                        }
                        _ => return false,
                    }
                }
                views.windows(2).all(|w| w[0] == w[1])
            },
        )
        .await;
    }

    /// Sends a signal (`STOP`, `CONT`, ...) to node `i`.
    pub fn signal(&self, i: usize, sig: &str) {
        let pid = self.nodes[i].as_ref().expect("running").id();
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{sig} {pid}");
    }

    pub fn kill9(&mut self, i: usize) {
        let mut c = self.nodes[i].take().expect("running");
        c.kill().unwrap(); // SIGKILL
        c.wait().unwrap();
    }

    pub fn log_tail(&self, i: usize) -> String {
        let text = std::fs::read_to_string(self.node_dir(i).join("node.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    pub async fn get(&self, i: usize, path: &str) -> Option<Value> {
        let r = self
            .http
            .get(format!("{}{path}", self.apis[i]))
            .send()
            .await
            .ok()?;
        if !r.status().is_success() {
            return None;
        }
        r.json().await.ok()
    }

    pub async fn status(&self, i: usize) -> Option<Value> {
        self.get(i, "/api/v1/status").await
    }

    pub async fn committed_txs(&self, i: usize) -> u64 {
        self.counter(i, "medchain_txs_committed_total").await
    }

    /// A counter of node `i`'s `/metrics` (0 if unreachable).
    pub async fn counter(&self, i: usize, name: &str) -> u64 {
        let Ok(r) = self
            .http
            .get(format!("{}/metrics", self.apis[i]))
            .send()
            .await
        else {
            return 0;
        };
        let text = r.text().await.unwrap_or_default();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// True if every transaction in `txs` is committed with success at node `i`.
    pub async fn has_all(&self, i: usize, txs: &[Transaction]) -> bool {
        // The last ones first: they are committed last.
        for tx in txs.iter().rev() {
            match self.get(i, &format!("/api/v1/txs/{}", tx.hash())).await {
                Some(rec) if rec["receipt"]["status"] == "success" => {}
                _ => return false,
            }
        }
        true
    }

    pub async fn wait(&self, what: &str, secs: u64, mut cond: impl AsyncFnMut(&Cluster) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if cond(self).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let logs: Vec<String> = (0..self.nodes.len())
            .map(|i| format!("--- node{i}\n{}", self.log_tail(i)))
            .collect();
        panic!(
            "timed out after {secs} s waiting for: {what}\n{}",
            logs.join("\n")
        );
    }

    pub async fn submit(&self, i: usize, txs: &[Transaction]) {
        for chunk in txs.chunks(500) {
            let r = self.post_txs(i, "", chunk).await;
            assert_eq!(
                r.status().as_u16(),
                202,
                "submit: {}",
                r.text().await.unwrap()
            );
        }
    }

    /// Waits until the live nodes report the same height and hash, and returns them.
    pub async fn converge(&self, live: &[usize], secs: u64) -> (u64, String) {
        let mut result = (0, String::new());
        self.wait(
            "live nodes agree on height and hash",
            secs,
            async |c: &Cluster| {
                let mut seen = Vec::new();
                for &i in live {
                    match c.status(i).await {
                        Some(s) => seen.push((
                            s["height"].as_u64().unwrap_or(0),
                            s["last_hash"].as_str().unwrap_or("").to_owned(),
                        )),
                        None => return false,
                    }
                }
                let same = seen.windows(2).all(|w| w[0] == w[1]);
                if same {
                    result = seen[0].clone();
                }
                same
            },
        )
        .await;
        result
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::env::var_os("MEDCHAIN_KEEP_CLUSTER").is_some() {
            let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
            eprintln!("cluster kept in {}", dir.keep().display());
        }
        for c in self.nodes.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn txs(client: &SecretKey, chain: &str, from: u64, n: u64) -> Vec<Transaction> {
    (from..from + n)
        .map(|i| Transaction::signed(chain, "noop", i.to_le_bytes().repeat(8), i, client))
        .collect()
}

pub fn verify_chain(data: &Path) -> String {
    let out = Command::new(BIN)
        .arg("verify-chain")
        .arg("--data")
        .arg(data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "verify-chain {}: {}",
        data.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub async fn futures_all(c: &Cluster, path: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for i in 0..c.nodes.len() {
        out.push(c.get(i, path).await.unwrap_or(Value::Null));
    }
    out
}

/// SIGTERM, then wait for a clean exit.
pub fn nix_term(mut child: Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            assert!(status.success(), "a node exited with {status} on SIGTERM");
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("a node did not stop within 20 s of SIGTERM");
}
