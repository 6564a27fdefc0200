//! A real consortium: four `medchain node` processes over QUIC on 127.0.0.1, driven through the
//! HTTP API. Commits 10,000 transactions with every node on the same chain; the primary holds
//! waited-for client transactions from gossip and releases them when it stalls; survives killing
//! the primary (view change); a replica killed with SIGKILL and restarted catches up.

mod common;

use common::*;
use medchain_types::{codec, SecretKey};
use serde_json::Value;
use std::time::Duration;

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
            let http = medchain_app::client::http_builder(None)
                .unwrap()
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
