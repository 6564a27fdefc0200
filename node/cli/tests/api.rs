//! The HTTP API of a real node: bad requests get JSON errors with the right status, the load
//! generator commits what it offers.

mod common;

use common::*;
use medchain_types::{codec, Receipt, SecretKey, Transaction};
use serde_json::Value;
use std::process::Command;

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

/// The `kv` app, mounted through the app boundary: its route answers over HTTP next to the
/// node's own and the health-record app's, and the OpenAPI document lists all three.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_app_is_mounted_through_the_boundary() {
    let _serial = SERIAL.lock().await;
    let c = Cluster::serving_single().await;
    let base = &c.apis[0];
    let client = c.dir.path().join("client.json");
    let o = Command::new(BIN)
        .args([
            "kv",
            "put",
            "greeting",
            "hello there",
            "--node",
            base,
            "--key-file",
        ])
        .arg(&client)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let get = |path: String| {
        let http = c.http.clone();
        async move {
            let r = http.get(path).send().await.unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (code, v) = get(format!("{base}/api/v1/kv/greeting")).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["value_utf8"], "hello there");
    assert_eq!(v["value_hex"], hex::encode("hello there"));
    let (code, v) = get(format!("{base}/api/v1/kv/0x{}", hex::encode("greeting"))).await;
    assert_eq!((code, &v["value_utf8"]), (200, &Value::from("hello there")));
    let (code, v) = get(format!("{base}/api/v1/kv/nothing-here")).await;
    assert_eq!(code, 404, "{v}");
    assert!(v["error"].as_str().unwrap().contains("no value"));
    let (code, v) = get(format!("{base}/api/v1/kv/0xzz")).await;
    assert_eq!(code, 400, "{v}");
    // The app's routes are under its prefix only.
    let (code, _) = get(format!("{base}/api/v1/kvx/greeting")).await;
    assert_eq!(code, 404);
    let (code, doc) = get(format!("{base}/api/v1/openapi.json")).await;
    assert_eq!(code, 200);
    for path in [
        "/api/v1/kv/{key}",
        "/api/v1/ehr/query",
        "/api/v1/txs",
        "/portal/",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} is documented");
    }
}
