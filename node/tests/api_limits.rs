//! A node's API under a client that takes every request slot: the API answers 429 at once, and
//! the operations routes (`/healthz`, `/metrics`) still answer.

mod common;

use medchain_node::cluster::{testnet, TestnetSpec};
use medchain_node::config::NodeConfig;
use medchain_node::runtime::Node;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_routes_answer_when_every_request_slot_is_taken() {
    let dir = tempfile::tempdir().unwrap();
    let (p2p, api) = common::free_port_pair();
    let spec = TestnetSpec::new(1, "pbft".into(), p2p, api, "limits-test".into());
    testnet(&spec, dir.path(), false, &[]).unwrap();
    let mut config = NodeConfig::load(&dir.path().join("node0/node.toml")).unwrap();
    config.api.requests_max = 1;
    config.api.requests_per_client_max = 1;
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
        std::future::pending(),
    ));
    let http = reqwest::Client::new();
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
