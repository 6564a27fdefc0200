//! A real consortium: four `medchain node` processes over QUIC on 127.0.0.1, driven through the
//! HTTP API. Commits 10,000 transactions with every node on the same chain; the primary holds
//! waited-for client transactions from gossip and releases them when it stalls; survives killing
//! the primary (view change); a replica killed with SIGKILL and restarted catches up.

use medchain_types::{codec, Receipt, SecretKey, Transaction};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_medchain");

/// Cluster tests run one at a time: they pick ports and would share two cores.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `n` consecutive free UDP and TCP ports from a pseudo-random base (distinct per call), below
/// Linux's ephemeral range (32768 and up): a port found free there could be taken by another
/// test's outgoing connection before the node binds it (seen once in CI: "Address already in
/// use").
fn free_ports(n: u16) -> (u16, u16) {
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

struct Cluster {
    dir: tempfile::TempDir,
    nodes: Vec<Option<Child>>,
    apis: Vec<String>,
    http: reqwest::Client,
}

impl Cluster {
    fn start(n: usize) -> Cluster {
        Cluster::start_with(n, &[])
    }

    /// `n` nodes, with extra `medchain testnet` arguments (engine, interval).
    fn start_with(n: usize, extra: &[&str]) -> Cluster {
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
            http: reqwest::Client::builder()
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
    async fn serving_single() -> Cluster {
        let c = Cluster::start(1);
        c.wait("the node serves its API", 60, async |c: &Cluster| {
            c.status(0).await.is_some()
        })
        .await;
        c
    }

    fn node_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("node{i}"))
    }

    fn spawn(&mut self, i: usize) {
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
    fn node_of(&self, key: &str) -> usize {
        (0..self.nodes.len())
            .find(|&i| {
                let file = std::fs::read_to_string(self.node_dir(i).join("node.json")).unwrap();
                file.contains(key)
            })
            .expect("the key is a node's")
    }

    /// POSTs `txs` (canonical encoding) to node `i`'s `/api/v1/txs{query}`.
    async fn post_txs(&self, i: usize, query: &str, txs: &[Transaction]) -> reqwest::Response {
        self.http
            .post(format!("{}/api/v1/txs{query}", self.apis[i]))
            .header("content-type", "application/octet-stream")
            .body(codec::encode(&txs.to_vec()))
            .send()
            .await
            .unwrap()
    }

    /// Submits `txs` to node `i` with `?wait=commit` and checks that all commit with success.
    async fn submit_waiting(&self, i: usize, txs: &[Transaction]) {
        let r = self.post_txs(i, "?wait=commit", txs).await;
        assert_eq!(r.status().as_u16(), 200);
        let body: Value = r.json().await.unwrap();
        let receipts = body["receipts"].as_array().expect("receipts");
        assert_eq!(receipts.len(), txs.len());
        assert!(receipts.iter().all(|r| r["status"] == "success"), "{body}");
    }

    /// Waits until every node has committed every transaction of `txs` with success.
    async fn wait_committed(&self, what: &str, secs: u64, txs: &[Transaction]) {
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
    async fn pending(&self, i: usize, tx: &Transaction) -> bool {
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
    async fn same_view_in_normal_mode(&self) {
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
    fn signal(&self, i: usize, sig: &str) {
        let pid = self.nodes[i].as_ref().expect("running").id();
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{sig} {pid}");
    }

    fn kill9(&mut self, i: usize) {
        let mut c = self.nodes[i].take().expect("running");
        c.kill().unwrap(); // SIGKILL
        c.wait().unwrap();
    }

    fn log_tail(&self, i: usize) -> String {
        let text = std::fs::read_to_string(self.node_dir(i).join("node.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    async fn get(&self, i: usize, path: &str) -> Option<Value> {
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

    async fn status(&self, i: usize) -> Option<Value> {
        self.get(i, "/api/v1/status").await
    }

    async fn committed_txs(&self, i: usize) -> u64 {
        self.counter(i, "medchain_txs_committed_total").await
    }

    /// A counter of node `i`'s `/metrics` (0 if unreachable).
    async fn counter(&self, i: usize, name: &str) -> u64 {
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
    async fn has_all(&self, i: usize, txs: &[Transaction]) -> bool {
        // The last ones first: they are committed last.
        for tx in txs.iter().rev() {
            match self.get(i, &format!("/api/v1/txs/{}", tx.hash())).await {
                Some(rec) if rec["receipt"]["status"] == "success" => {}
                _ => return false,
            }
        }
        true
    }

    async fn wait(&self, what: &str, secs: u64, mut cond: impl AsyncFnMut(&Cluster) -> bool) {
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

    async fn submit(&self, i: usize, txs: &[Transaction]) {
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
    async fn converge(&self, live: &[usize], secs: u64) -> (u64, String) {
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

fn txs(client: &SecretKey, chain: &str, from: u64, n: u64) -> Vec<Transaction> {
    (from..from + n)
        .map(|i| Transaction::signed(chain, "noop", i.to_le_bytes().repeat(8), i, client))
        .collect()
}

fn verify_chain(data: &Path) -> String {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_commit_survive_a_dead_primary_and_a_restarted_replica() {
    let _serial = SERIAL.lock().await;
    let mut c = Cluster::start(4);
    c.wait("every node serves its API", 60, async |c: &Cluster| {
        for i in 0..4 {
            if c.status(i).await.is_none() {
                return false;
            }
        }
        true
    })
    .await;
    let status = c.status(0).await.unwrap();
    let chain = status["chain_id"].as_str().unwrap().to_owned();
    let client = SecretKey::from_seed([0xab; 32]);
    // `medchain testnet` numbers nodes in the validator set's order: node 0 leads view 0.
    assert_eq!(status["view"], 0);
    assert_eq!(
        status["leader"], status["node_id"],
        "node 0 is the first primary"
    );

    // 1. 10,000 transactions, submitted to different nodes; every node commits all of them.
    let first = txs(&client, &chain, 0, 10_000);
    for (k, part) in first.chunks(2_500).enumerate() {
        c.submit(k % 4, part).await;
    }
    c.wait(
        "10,000 transactions committed on every node",
        180,
        async |c: &Cluster| {
            for i in 0..4 {
                if c.committed_txs(i).await < 10_000 {
                    return false;
                }
            }
            true
        },
    )
    .await;
    let (height, hash) = c.converge(&[0, 1, 2, 3], 30).await;
    eprintln!("10,000 transactions: all 4 nodes at height {height}, hash {hash}");
    // Every replica checked every signature exactly once, whichever paths a transaction came
    // by (client, gossip, proposal) and however they overlapped in time.
    for i in 0..4 {
        let verified = c.counter(i, "medchain_signatures_verified_total").await;
        assert_eq!(
            verified, 10_000,
            "node {i} verified {verified} signatures for 10,000 transactions"
        );
    }
    // 1b. A primary keeps from gossip the transactions of clients that wait for their commits
    // (it proposes them itself), and gossips them after all when none of its blocks commits for
    // a while; a client that does not wait has its transactions gossiped at once.
    c.same_view_in_normal_mode().await;
    let leader = c.status(0).await.unwrap()["leader"]
        .as_str()
        .unwrap()
        .to_owned();
    let primary = c.node_of(&leader);
    let backups: Vec<usize> = (0..4).filter(|&i| i != primary).collect();
    let released = "medchain_txs_held_released_total";
    let gossip_out = "medchain_messages_total{direction=\"out\",kind=\"txs\"}";
    // Normal operation: 500 waited-for transactions sent to the primary commit without it
    // sending a single gossip message (unless this machine stalled it, which releases them).
    let (released_before, gossip_before) = (
        c.counter(primary, released).await,
        c.counter(primary, gossip_out).await,
    );
    let view = |s: Option<Value>| s.map(|s| s["view"].clone());
    let view_before = view(c.status(primary).await);
    let held = txs(&client, &chain, 20_000, 500);
    c.submit_waiting(primary, &held).await;
    let undisturbed = c.counter(primary, released).await == released_before
        && view(c.status(primary).await) == view_before;
    if undisturbed {
        assert_eq!(
            c.counter(primary, gossip_out).await,
            gossip_before,
            "the primary gossiped transactions it should have held"
        );
    } else {
        eprintln!("the primary released held transactions or changed view meanwhile (a stall)");
    }
    // A client that does not wait: its transaction is gossiped at once, never held.
    let gossip_before = c.counter(primary, gossip_out).await;
    let not_waiting = txs(&client, &chain, 20_500, 1);
    c.submit(primary, &not_waiting).await;
    c.wait(
        "the primary gossips the transaction of a client that does not wait",
        30,
        async |c: &Cluster| c.counter(primary, gossip_out).await > gossip_before,
    )
    .await;
    c.wait_committed("that transaction commits on every node", 60, &not_waiting)
        .await;
    // Two backups stopped: no block can be final. (Kept short: the running backup's 2 s
    // view-change timer starts with the pre-prepare.) The primary releases the one waited-for
    // transaction; the running backup then has it, pending.
    let released_before = c.counter(primary, released).await;
    c.signal(backups[1], "STOP");
    c.signal(backups[2], "STOP");
    let stalled = txs(&client, &chain, 21_000, 1);
    let waiting = {
        let url = format!("{}/api/v1/txs?wait=commit", c.apis[primary]);
        let body = codec::encode(&stalled);
        tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .map_err(|e| e.to_string())?;
            let r = http
                .post(url)
                .header("content-type", "application/octet-stream")
                .body(body)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            Ok::<u16, String>(r.status().as_u16())
        })
    };
    c.wait(
        "the stalled primary gossips the transaction it held",
        30,
        async |c: &Cluster| c.counter(primary, released).await > released_before,
    )
    .await;
    c.wait(
        "the running backup has the released transaction, pending",
        30,
        async |c: &Cluster| c.pending(backups[0], &stalled[0]).await,
    )
    .await;
    assert_eq!(
        c.counter(primary, released).await,
        released_before + 1,
        "exactly the one held transaction was released"
    );
    c.signal(backups[1], "CONT");
    c.signal(backups[2], "CONT");
    assert_eq!(
        waiting.await.unwrap(),
        Ok(200),
        "the waiting client got its receipt"
    );
    c.wait_committed(
        "the held transaction commits on every node once the backups run again",
        120,
        &stalled,
    )
    .await;
    c.converge(&[0, 1, 2, 3], 60).await;

    // QUIC's path statistics of every connection are published: node 0 reports one RTT, MTU and
    // packet counts per peer, and carried the 10,000 transactions in many packets.
    let metrics = c
        .http
        .get(format!("{}/metrics", c.apis[0]))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for family in [
        "medchain_peer_rtt_seconds{",
        "medchain_peer_mtu_bytes{",
        "medchain_peer_packets_sent_total{",
        "medchain_peer_packets_lost_total{",
    ] {
        let n = metrics.lines().filter(|l| l.starts_with(family)).count();
        assert_eq!(n, 3, "{family}: one line per peer\n{metrics}");
    }
    let sent: u64 = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("medchain_peer_packets_sent_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum();
    // Packets of up to 65,507 bytes (a testnet's `udp_payload_max`, which loopback paths
    // reach), counted since each connection opened (two backups reconnected after a stop).
    assert!(sent > 100, "node 0 sent {sent} QUIC packets");
    let mtu_max = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("medchain_peer_mtu_bytes{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(0.0, f64::max);
    assert!(
        mtu_max > 1452.0,
        "a testnet's packets grow past Ethernet's size on loopback: {mtu_max}"
    );
    // Same chain, block by block.
    for h in (1..=height).step_by(1.max(height as usize / 10)) {
        let hashes: Vec<Value> = futures_all(&c, &format!("/api/v1/blocks/{h}"))
            .await
            .into_iter()
            .map(|b| b["hash"].clone())
            .collect();
        assert!(
            hashes.windows(2).all(|w| w[0] == w[1]),
            "block {h} differs: {hashes:?}"
        );
    }
    // Any transaction can be fetched with its proof from any node.
    let probe = first[1234].hash();
    let rec = c
        .get(3, &format!("/api/v1/txs/{probe}"))
        .await
        .expect("tx found");
    assert_eq!(rec["receipt"]["status"], "success");

    // 2. Kill the primary: a view change follows and commits continue on the other three.
    let leader = c.status(0).await.unwrap()["leader"]
        .as_str()
        .unwrap()
        .to_owned();
    let primary = c.node_of(&leader);
    let view_before = c.status(primary).await.unwrap()["view"].as_u64().unwrap();
    c.kill9(primary);
    let live: Vec<usize> = (0..4).filter(|&i| i != primary).collect();
    let second = txs(&client, &chain, 10_000, 1_000);
    c.submit(live[0], &second).await;
    c.wait(
        "the 3 survivors commit 1,000 more after the primary died",
        120,
        async |c: &Cluster| {
            for &i in &live {
                if !c.has_all(i, &second).await {
                    return false;
                }
            }
            true
        },
    )
    .await;
    let view_after = c.status(live[0]).await.unwrap()["view"].as_u64().unwrap();
    assert!(
        view_after > view_before,
        "a view change happened ({view_before} -> {view_after})"
    );
    eprintln!(
        "primary node{primary} killed: view {view_before} -> {view_after}, commits continued"
    );
    c.spawn(primary);

    // 3. Kill a replica with SIGKILL, commit without it, restart it: it catches up.
    c.converge(&[0, 1, 2, 3], 60).await;
    let replica = (0..4).find(|&i| i != primary && i != live[0]).unwrap();
    c.kill9(replica);
    let third = txs(&client, &chain, 11_000, 1_000);
    let others: Vec<usize> = (0..4).filter(|&i| i != replica).collect();
    c.submit(others[0], &third).await;
    c.wait(
        "the others commit 1,000 more without the replica",
        120,
        async |c: &Cluster| {
            for &i in &others {
                if !c.has_all(i, &third).await {
                    return false;
                }
            }
            true
        },
    )
    .await;
    c.spawn(replica);
    let (height, hash) = c.converge(&[0, 1, 2, 3], 60).await;
    eprintln!("replica node{replica} restarted and caught up: all at height {height}, hash {hash}");
    let rec = c
        .get(replica, &format!("/api/v1/txs/{}", third[999].hash()))
        .await
        .expect("the restarted replica has the late transactions");
    assert_eq!(rec["receipt"]["status"], "success");

    // Stop everything cleanly and verify every ledger from disk.
    for i in 0..4 {
        if let Some(child) = c.nodes[i].take() {
            nix_term(child);
        }
    }
    for i in 0..4 {
        let out = verify_chain(&c.node_dir(i).join("data/ledger"));
        assert!(
            out.contains(&format!("tip height {height} hash {hash}")),
            "node{i}: {out}"
        );
    }
}

/// Proof of work over QUIC: 2,000 transactions final on every node (same chain), a node killed
/// with SIGKILL catches up after a restart, every ledger verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proof_of_work_cluster_commits_and_a_killed_node_catches_up() {
    let _serial = SERIAL.lock().await;
    engine_cluster(
        &["--engine", "pow", "--block-interval-ms", "1000"],
        |engine| {
            let number = |k: &str| engine[k].as_str().unwrap().parse::<f64>().unwrap();
            assert!(number("difficulty") > 0.0);
            assert!(number("hash_rate") > 0.0);
            assert_eq!(engine["confirmations"], "6");
        },
    )
    .await;
}

/// Proof of stake over QUIC: the same, with the stake table, epoch and slot on the status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proof_of_stake_cluster_commits_and_a_killed_node_catches_up() {
    let _serial = SERIAL.lock().await;
    engine_cluster(&["--engine", "pos"], |engine| {
        assert_eq!(engine["total_stake"], "400");
        assert_eq!(engine["stakes"].as_str().unwrap().split(',').count(), 4);
        assert!(engine["slot"].as_str().unwrap().parse::<u64>().unwrap() > 0);
        assert!(engine["epoch"].as_str().is_some());
    })
    .await;
}

/// 2,000 transactions on 4 nodes of an engine, the chains compared block by block, one node
/// killed with SIGKILL and restarted, every ledger verified from disk.
async fn engine_cluster(testnet_args: &[&str], check_status: impl Fn(&Value)) {
    let mut c = Cluster::start_with(4, testnet_args);
    let engine_name = testnet_args[1];
    c.wait("every node serves its API", 60, async |c: &Cluster| {
        for i in 0..4 {
            if c.status(i).await.is_none() {
                return false;
            }
        }
        true
    })
    .await;
    let status = c.status(0).await.unwrap();
    assert_eq!(status["engine"], engine_name);
    let chain = status["chain_id"].as_str().unwrap().to_owned();
    let client = SecretKey::from_seed([0xcd; 32]);

    let first = txs(&client, &chain, 0, 2_000);
    for (k, part) in first.chunks(500).enumerate() {
        c.submit(k % 4, part).await;
    }
    c.wait(
        "2,000 transactions final on every node",
        240,
        async |c: &Cluster| {
            for i in 0..4 {
                if c.committed_txs(i).await < 2_000 {
                    return false;
                }
            }
            true
        },
    )
    .await;
    let (height, hash) = c.converge(&[0, 1, 2, 3], 60).await;
    eprintln!(
        "{engine_name}: 2,000 transactions final on all 4 nodes at height {height}, hash {hash}"
    );
    for h in 1..=height {
        let hashes: Vec<Value> = futures_all(&c, &format!("/api/v1/blocks/{h}"))
            .await
            .into_iter()
            .map(|b| b["hash"].clone())
            .collect();
        assert!(
            hashes.windows(2).all(|w| w[0] == w[1]),
            "block {h} differs: {hashes:?}"
        );
    }
    let st = c.status(1).await.unwrap();
    check_status(&st["engine_status"]);
    if engine_name == "pos" {
        // A stake operation through the CLI, signed with a validator's node key.
        let out = Command::new(BIN)
            .args(["stake", "remove", "10", "--node", &c.apis[0], "--key-file"])
            .arg(c.node_dir(0).join("node.json"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("committed") && text.contains("success"),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // SIGKILL one node; the others keep finalizing; the restarted node catches up.
    c.kill9(2);
    let second = txs(&client, &chain, 2_000, 300);
    c.submit(0, &second).await;
    c.wait(
        "the other three finalize 300 more",
        180,
        async |c: &Cluster| {
            for i in [0, 1, 3] {
                if !c.has_all(i, &second).await {
                    return false;
                }
            }
            true
        },
    )
    .await;
    c.spawn(2);
    c.wait(
        "the restarted node has the late transactions",
        180,
        async |c: &Cluster| c.has_all(2, &second).await,
    )
    .await;
    let (height, hash) = c.converge(&[0, 1, 2, 3], 60).await;
    eprintln!("{engine_name}: node2 restarted and caught up: all at height {height}, hash {hash}");
    for i in 0..4 {
        if let Some(child) = c.nodes[i].take() {
            nix_term(child);
        }
    }
    for i in 0..4 {
        verify_chain(&c.node_dir(i).join("data/ledger"));
    }
}

async fn futures_all(c: &Cluster, path: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for i in 0..c.nodes.len() {
        out.push(c.get(i, path).await.unwrap_or(Value::Null));
    }
    out
}

/// SIGTERM, then wait for a clean exit.
fn nix_term(mut child: Child) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_refuses_bad_requests_with_json_errors() {
    let _serial = SERIAL.lock().await;
    let c = Cluster::serving_single().await;
    let chain = c.status(0).await.unwrap()["chain_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let base = &c.apis[0];
    let good = Transaction::signed(
        &chain,
        "noop",
        b"x".to_vec(),
        1,
        &SecretKey::from_seed([1; 32]),
    );
    let mut forged = good.clone();
    forged.nonce = 2;
    let wrong_chain = Transaction::signed(
        "other-chain",
        "noop",
        b"x".to_vec(),
        1,
        &SecretKey::from_seed([1; 32]),
    );
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (
            c.http.post(format!("{base}/api/v1/txs")).body("{not json"),
            400,
            "not JSON",
        ),
        (
            c.http.post(format!("{base}/api/v1/txs")).body("{\"a\":1}"),
            400,
            "not a transaction",
        ),
        (
            c.http.post(format!("{base}/api/v1/txs")).body("[]"),
            400,
            "no transactions",
        ),
        (
            c.http
                .post(format!("{base}/api/v1/txs"))
                .header("content-type", "application/octet-stream")
                .body(vec![9u8, 1, 2]),
            400,
            "canonical",
        ),
        (
            c.http.post(format!("{base}/api/v1/txs")).json(&forged),
            422,
            "signature",
        ),
        (
            c.http.post(format!("{base}/api/v1/txs")).json(&wrong_chain),
            422,
            "chain",
        ),
        (
            c.http
                .post(format!("{base}/api/v1/txs?wait=forever"))
                .json(&good),
            400,
            "wait",
        ),
        (
            // The server answers before reading the whole body and then closes the connection:
            // `Connection: close` keeps the client from reusing it for the next request (which
            // then failed now and then with a broken pipe).
            c.http
                .post(format!("{base}/api/v1/txs"))
                .header("connection", "close")
                .body(vec![b'['; 17 << 20]),
            413,
            "",
        ),
        (c.http.get(format!("{base}/api/v1/txs/nothex")), 400, "hex"),
        (
            c.http.get(format!("{base}/api/v1/txs/{}", "00".repeat(32))),
            404,
            "no such transaction",
        ),
        (
            c.http.get(format!("{base}/api/v1/blocks/abc")),
            400,
            "neither a height",
        ),
        (
            c.http.get(format!("{base}/api/v1/blocks/999999")),
            404,
            "no block",
        ),
        (
            c.http.get(format!("{base}/api/v1/state/nosuch/k")),
            404,
            "no chaincode",
        ),
        (
            c.http.get(format!("{base}/api/v1/state/kv/0xzz")),
            400,
            "bad hex",
        ),
        (
            c.http.get(format!("{base}/api/v1/txs")),
            405,
            "method not allowed",
        ),
        (
            c.http.get(format!("{base}/nowhere")),
            404,
            "no such endpoint",
        ),
    ];
    for (req, status, needle) in cases {
        let r = req.send().await.unwrap();
        let code = r.status().as_u16();
        let text = r.text().await.unwrap();
        assert_eq!(code, status, "{text}");
        if status != 413 {
            let v: Value =
                serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
            assert!(
                v["error"].as_str().unwrap().contains(needle),
                "{status}: {text}"
            );
        }
    }
    // And a good transaction commits on a single-validator consortium.
    let r = c
        .http
        .post(format!("{base}/api/v1/txs?wait=commit"))
        .json(&good)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "success");
    assert!(c
        .http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .contains("medchain_height 1"));
    // Receipts in request order, a transaction named twice answered twice: as JSON, and
    // canonical-encoded for a client that accepts only that.
    let key = SecretKey::from_seed([2; 32]);
    let (a, b) = (
        Transaction::signed(&chain, "noop", b"a".to_vec(), 7, &key),
        Transaction::signed(&chain, "noop", b"b".to_vec(), 8, &key),
    );
    let r = c
        .post_txs(0, "?wait=commit", &[a.clone(), b.clone(), a.clone()])
        .await;
    assert_eq!(r.status().as_u16(), 200);
    let v: Value = r.json().await.unwrap();
    let hashes: Vec<String> = [&a, &b, &a].iter().map(|t| t.hash().to_string()).collect();
    let json_hashes: Vec<String> = v["receipts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["tx_hash"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(json_hashes, hashes, "{v}");
    let r = c
        .http
        .post(format!("{base}/api/v1/txs?wait=commit"))
        .header("content-type", "application/octet-stream")
        .header("accept", "application/octet-stream")
        .body(codec::encode(&[b.clone(), a.clone(), b.clone()][..]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["content-type"], "application/octet-stream");
    let receipts: Vec<Option<Receipt>> = codec::decode(&r.bytes().await.unwrap()).unwrap();
    let receipts: Vec<Receipt> = receipts.into_iter().map(Option::unwrap).collect();
    assert_eq!(
        receipts.iter().map(|r| r.tx_hash).collect::<Vec<_>>(),
        vec![b.hash(), a.hash(), b.hash()]
    );
    assert!(receipts.iter().all(Receipt::is_success));
    assert_eq!(receipts[0], receipts[2]);
    assert_eq!(
        serde_json::to_value(&receipts[1]).unwrap()["height"],
        v["receipts"][0]["height"],
        "the same receipt either way"
    );
}

/// `medchain load` end to end: every offered transaction commits, the JSON report adds up, and
/// `--senders 3` really signs with three keys in turn (read back from the committed blocks).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_commits_what_it_offers_signed_by_each_sender() {
    let _serial = SERIAL.lock().await;
    let c = Cluster::serving_single().await;
    let run = |senders: &str, extra: &[&str]| {
        Command::new(BIN)
            .args(["load", "--node", &c.apis[0], "--rate", "150", "--duration"])
            .args([
                "2",
                "--batch",
                "25",
                "--size",
                "64",
                "--json",
                "--senders",
                senders,
            ])
            .args(extra)
            .output()
            .unwrap()
    };
    let refused = run("0", &[]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--senders must be positive"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let out = run("3", &["--reference"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("3 senders"), "{text}");
    let report: Value = text
        .lines()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no JSON report in {text}"));
    assert_eq!(report["senders"], 3);
    assert_eq!(report["sent"], 300);
    assert_eq!(report["committed"], 300);
    assert_eq!(report["failed"], 0);
    assert!(report["latency_ms"]["p50"].as_f64().unwrap() > 0.0);
    // The reference was measured on this machine's cores for the one node of this consortium.
    let reference = &report["reference"];
    let checks = reference["signature_checks_per_s"].as_f64().unwrap();
    assert!(checks > 1_000.0, "{reference}");
    assert_eq!(reference["nodes"], 1, "{reference}");
    assert!(reference["cores"].as_u64().unwrap() >= 1, "{reference}");
    assert_eq!(reference["ceiling_tx_per_s"].as_f64().unwrap(), checks);
    assert!(text.contains("reference "), "{text}");
    // The committed blocks hold 300 noop transactions from exactly three senders, 100 each.
    let height = c.status(0).await.unwrap()["height"].as_u64().unwrap();
    let mut by_sender = std::collections::BTreeMap::<String, u32>::new();
    for h in 1..=height {
        let block = c.get(0, &format!("/api/v1/blocks/{h}")).await.unwrap();
        for tx in block["txs"].as_array().unwrap() {
            if tx["chaincode"] == "noop" {
                *by_sender.entry(tx["sender"].to_string()).or_default() += 1;
            }
        }
    }
    assert_eq!(
        by_sender.values().copied().collect::<Vec<_>>(),
        vec![100, 100, 100],
        "{by_sender:?}"
    );
}
