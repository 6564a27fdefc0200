//! An outsider against a node of the consortium: huge unsigned bodies on every vault route, and
//! huge signed key uploads, are refused without the node reading them into memory.

mod common;

use common::*;
use std::time::Duration;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The node's resident memory, from its metrics.
async fn rss(http: &reqwest::Client, node: &str) -> u64 {
    let text = http
        .get(format!("{node}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("medchain_process_resident_bytes "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the node reports its memory")
}

/// A body of `len` zero bytes, produced as it is sent.
fn zeros(len: u64) -> reqwest::Body {
    const PIECE: usize = 1 << 20;
    let piece = bytes::Bytes::from(vec![0u8; PIECE]);
    let pieces = len.div_ceil(PIECE as u64);
    reqwest::Body::wrap_stream(futures_util::stream::iter(
        (0..pieces).map(move |_| Ok::<_, std::io::Error>(piece.clone())),
    ))
}

#[test]
fn huge_bodies_are_refused_without_being_read_into_memory() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let u = up();
    let d = u.dir.path();
    let n0 = u.apis[0].clone();
    let (stranger, _) = keygen(d, "stranger");
    let patient = "a".repeat(64);
    let blob = "b".repeat(64);
    let routes: Vec<(&str, String)> = vec![
        ("POST", "/api/v1/ehr/blobs".into()),
        ("PUT", format!("/api/v1/ehr/blobs/{blob}")),
        ("PUT", "/api/v1/ehr/docs/some-doc/keys".into()),
        ("GET", "/api/v1/ehr/docs/some-doc/key".into()),
        ("GET", "/api/v1/ehr/docs/some-doc/blob".into()),
        ("PUT", format!("/api/v1/ehr/profiles/{patient}/keys")),
        ("GET", format!("/api/v1/ehr/profiles/{patient}/blob")),
        ("PUT", format!("/api/v1/ehr/cases/{patient}/c1/keys")),
        ("GET", format!("/api/v1/ehr/cases/{patient}/c1/blob")),
        ("GET", format!("/api/v1/ehr/peer/blobs/{blob}")),
        ("GET", "/api/v1/ehr/peer/keys/some-doc".into()),
        ("POST", "/api/v1/ehr/query".into()),
        ("POST", "/api/v1/ehr/tx/unsigned".into()),
    ];
    runtime().block_on(async {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap();
        let idle = rss(&http, &n0).await;
        for (method, path) in &routes {
            let sent = http
                .request(method.parse().unwrap(), format!("{n0}{path}"))
                .header("content-type", "application/octet-stream")
                .body(zeros(2 << 30))
                .send()
                .await;
            // Refused before the body was read: a 4xx, or the node closed the connection while
            // the client was still sending.
            if let Ok(r) = sent {
                let code = r.status().as_u16();
                assert!((400..500).contains(&code), "{method} {path}: {code}");
            }
            let now = rss(&http, &n0).await;
            assert!(
                now < idle + (16 << 20),
                "{method} {path}: resident memory grew from {idle} to {now} bytes"
            );
        }
    });
    // A signed key upload far over its limit is refused once the limit is read.
    let path = "/api/v1/ehr/docs/some-doc/keys";
    let (code, body) = signed(&n0, &stranger, "PUT", path, vec![b' '; 1 << 20]);
    assert_eq!(code, 413, "{body}");
    let (code, _) = signed(&n0, &stranger, "PUT", path, b"[]".to_vec());
    assert_eq!(code, 404, "a small one gets as far as the document");
}
