//! Proof of work and proof of stake consortia of real processes: they commit, and a killed node
//! catches up.

mod common;

use common::*;
use medchain_types::SecretKey;
use serde_json::Value;
use std::process::Command;

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
