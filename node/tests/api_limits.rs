//! A node's API under a client that takes every request slot: the API answers 429 at once, and
//! the operations routes (`/healthz`, `/metrics`) still answer. One sender's flood of
//! transactions takes at most its share of the mempool.

mod common;

use medchain_node::cluster::{testnet, TestnetSpec};
use medchain_node::config::NodeConfig;
use medchain_node::runtime::Node;
use std::time::Duration;

/// The tests of this file start a node each on ports they pick: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A one-node consortium of chain `chain` whose configuration `tweak` adjusts, serving its API
/// on a free port: the node, the API's address, and the server's task.
async fn serve_node(
    dir: &std::path::Path,
    chain: &str,
    tweak: impl FnOnce(&mut NodeConfig),
) -> (
    Node,
    std::net::SocketAddr,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let (p2p, api) = common::free_port_pair();
    let spec = TestnetSpec::new(1, "pbft".into(), p2p, api, chain.into());
    testnet(&spec, dir, false, &[]).unwrap();
    let mut config = NodeConfig::load(&dir.join("node0/node.toml")).unwrap();
    tweak(&mut config);
    let node = Node::start(config, &[]).unwrap();
    let router = medchain_node::api::router(
        node.shared.clone(),
        &node.apps,
        medchain_node::api::openapi_document(&[]),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let timeouts = medchain_node::api::serve::Timeouts {
        header: Duration::from_secs(30),
        body_idle: Duration::from_secs(30),
    };
    let server = tokio::spawn(medchain_node::api::serve::serve(
        listener,
        router,
        timeouts,
        None,
        std::future::pending(),
    ));
    (node, addr, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_routes_answer_when_every_request_slot_is_taken() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let (node, addr, server) = serve_node(dir.path(), "limits-test", |c| {
        c.api.requests_max = 1;
        c.api.requests_per_client_max = 1;
    })
    .await;
    let http = medchain_app::client::http_builder(None)
        .unwrap()
        .build()
        .unwrap();
    let get = |path: &'static str| {
        let http = http.clone();
        async move {
            http.get(format!("http://{addr}{path}"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(get("/api/v1/status").await, 200);
    // A submission whose body never ends holds the one slot.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(1);
    tx.send(Ok(bytes::Bytes::from_static(b"["))).await.unwrap();
    let body = reqwest::Body::wrap_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|c| (c, rx))
    }));
    let slow = tokio::spawn({
        let http = http.clone();
        async move {
            http.post(format!("http://{addr}/api/v1/txs"))
                .body(body)
                .send()
                .await
                .map(|r| r.status().as_u16())
        }
    });
    let mut refused = 0;
    for _ in 0..100 {
        refused = get("/api/v1/status").await;
        if refused == 429 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(refused, 429, "the API is full");
    assert_eq!(get("/healthz").await, 200);
    assert_eq!(get("/metrics").await, 200);
    // The slow request ends (a malformed body): its slot comes back.
    tx.send(Ok(bytes::Bytes::from_static(b"]"))).await.unwrap();
    drop(tx);
    assert_eq!(slow.await.unwrap().unwrap(), 400);
    let mut status = 0;
    for _ in 0..100 {
        status = get("/api/v1/status").await;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status, 200);
    server.abort();
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_sender_cannot_take_every_place_in_the_mempool() {
    let _serial = SERIAL.lock().await;
    use medchain_types::{SecretKey, Transaction};
    let dir = tempfile::tempdir().unwrap();
    let (node, addr, server) = serve_node(dir.path(), "sender-cap", |c| {
        c.mempool.txs_per_sender_max = Some(5);
    })
    .await;
    let http = medchain_app::client::http_builder(None)
        .unwrap()
        .build()
        .unwrap();
    let txs = |seed: u8, n: u64| -> Vec<Transaction> {
        let key = SecretKey::from_seed([seed; 32]);
        (0..n)
            .map(|i| Transaction::signed("sender-cap", "noop", vec![seed], i, &key))
            .collect()
    };
    let post = |txs: Vec<Transaction>| {
        let http = http.clone();
        async move {
            let r = http
                .post(format!("http://{addr}/api/v1/txs"))
                .json(&txs)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    // Ten in one request: admitted under one lock, so no commit frees a place in between.
    let (status, body) = post(txs(1, 10)).await;
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("this sender"), "{body}");
    let (status, body) = post(txs(2, 3)).await;
    assert_eq!(status, 202, "another sender is admitted: {body}");
    // The first five of the flood are committed like any others, and free the sender's places.
    let mut committed = false;
    for _ in 0..200 {
        let s: serde_json::Value = http
            .get(format!("http://{addr}/api/v1/status"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if s["mempool"]["txs"] == 0 && s["height"].as_u64().unwrap_or(0) > 0 {
            committed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(committed, "the admitted transactions commit");
    let (status, body) = post(txs(1, 15).split_off(10)).await;
    assert_eq!(status, 202, "{body}");
    server.abort();
    node.stop().await;
}
