//! An outsider against a node of the consortium: huge unsigned bodies on every vault route, and
//! huge signed key uploads, are refused without the node reading them into memory; a flood of
//! pending hospital registrations neither hides an approved hospital from the public search nor
//! delays what an approval or a suspension changes.

#[path = "../../../node/cli/tests/common/mod.rs"]
mod cluster;

mod common;

use common::*;
use medchain_ehr::chaincode::HospitalProfile;
use medchain_ehr::{Ehr, EhrOp};
use medchain_types::{SecretKey, Transaction};
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
        ("GET", "/api/v1/ehr/vault-audit".into()),
    ];
    runtime().block_on(async {
        let http = medchain_app::client::http_builder(None)
            .unwrap()
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
    let (code, body) = signed(&n0, &stranger, "PUT", path, b"[]".to_vec());
    assert_eq!(
        code, 403,
        "a small one is read, then its key has no role: {body}"
    );
    assert!(body.contains("no role"), "{body}");
}

/// A patient with 2,000 logged reads: a granted hospital still reads the profile (its fresh
/// read is found however long the log), and the patient lists every event, newest first.
#[test]
fn a_long_audit_trail_neither_locks_the_record_nor_hides_events() {
    use medchain_ehr::{Ehr, EhrOp};
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let u = up();
    let d = u.dir.path();
    let n0 = u.apis[0].clone();
    let admin = d.join("net/admin.json");
    let (hosp, hosp_key) = keygen(d, "hospital");
    let (pat, pat_key) = keygen(d, "patient");
    assert!(tx(
        &n0,
        &hosp,
        r#"{"RegisterHospital":{"name":"Long Log","address":"1 Road","contact":"-","treatments":["Tests"]}}"#
    ));
    assert!(tx(
        &n0,
        &admin,
        &format!(r#"{{"ApproveHospital":{{"hospital":"{hosp_key}"}}}}"#)
    ));
    cli_as(
        &[
            "ehr", "patient", "register", "--node", &n0, "--name", "Ada Long",
        ],
        &pat,
    );
    assert!(tx(
        &n0,
        &pat,
        &format!(
            r#"{{"Grant":{{"grantee":"{hosp_key}","scopes":["Profile"],"write":false,"expires_ms":{}}}}}"#,
            now_ms() + 86_400_000
        )
    ));
    cli_as(
        &[
            "ehr", "patient", "share", "--node", &n0, "--with", &hosp_key,
        ],
        &pat,
    );
    // 2,000 reads logged by the hospital, in requests of 500.
    let signer = {
        let kf: serde_json::Value = serde_json::from_slice(&std::fs::read(&hosp).unwrap()).unwrap();
        let seed: [u8; 32] = hex::decode(kf["secret_key"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        SecretKey::from_seed(seed)
    };
    let patient: medchain_types::PublicKey = pat_key.parse().unwrap();
    runtime().block_on(async {
        let http = medchain_app::client::http_builder(None)
            .unwrap()
            .build()
            .unwrap();
        let status: serde_json::Value = http
            .get(format!("{n0}/api/v1/status"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let chain = status["chain_id"].as_str().unwrap().to_owned();
        for batch in 0..4u64 {
            let txs: Vec<Transaction> = (0..500u64)
                .map(|i| {
                    let op = EhrOp::LogRead {
                        patient,
                        object: "profile".into(),
                    };
                    Transaction::signed(
                        &chain,
                        "ehr",
                        Ehr::payload(&op),
                        batch * 1_000 + i,
                        &signer,
                    )
                })
                .collect();
            let r = http
                .post(format!("{n0}/api/v1/txs?wait=commit"))
                .header("content-type", "application/octet-stream")
                .body(medchain_types::codec::encode(&txs))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let v: serde_json::Value = r.json().await.unwrap();
            assert!(
                v["receipts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|r| r["status"] == "success"),
                "{v}"
            );
        }
    });
    // The hospital reads (its CLI logs one more read first).
    let profile = cli_as(
        &["ehr", "patient", "profile", &pat_key, "--node", &n0],
        &hosp,
    );
    assert!(profile.contains("Ada Long"), "{profile}");
    // The patient pages through all 2,001 events, newest first.
    let mut count = 0;
    let mut before = serde_json::Value::Null;
    let mut last_at = u64::MAX;
    loop {
        let q =
            serde_json::json!({"AuditPage": {"patient": pat_key, "before": before, "limit": 700}});
        let page = query_as(&n0, &q.to_string(), &pat);
        for e in page["events"].as_array().unwrap() {
            let at = e["at_ms"].as_u64().unwrap();
            assert!(at <= last_at, "newest first");
            last_at = at;
            count += 1;
        }
        if page["next"].is_null() {
            break;
        }
        before = page["next"].clone();
    }
    assert_eq!(count, 2_001);

    // A new registration replaces the profile: every node deletes the old blob.
    let old = query_as(&n0, &format!(r#"{{"Patient":"{pat_key}"}}"#), &pat)["profile_blob"]
        .as_str()
        .unwrap()
        .to_owned();
    let stored = u.dir.path().join("net/node0/data/vault").join(&old);
    assert!(stored.exists());
    cli_as(
        &[
            "ehr",
            "patient",
            "register",
            "--node",
            &n0,
            "--name",
            "Ada Renamed",
        ],
        &pat,
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while stored.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!stored.exists(), "the replaced profile left the vault");
}

/// Anyone may register a hospital (pending until an administrator approves it), so the
/// directory can hold any number of pending registrations. With 10,000 of them, all named like
/// the real hospital: the public search lists the approved one only, as soon as its approval's
/// commit is acknowledged, drops it as soon as a suspension's is, and finds it again after the
/// node restarts (the index is read from state at start).
#[test]
fn the_hospital_search_sees_each_approval_at_once_among_ten_thousand_pending() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    runtime().block_on(the_hospital_search_among_pending());
}

async fn the_hospital_search_among_pending() {
    let mut c = cluster::Cluster::serving_single().await;
    let n0 = c.apis[0].clone();
    let chain = c.status(0).await.unwrap()["chain_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let admin = medchain_app::keyfile::read(&c.dir.path().join("admin.json")).unwrap();
    let register = |key: &SecretKey, name: String| {
        let op = EhrOp::RegisterHospital(HospitalProfile {
            name,
            address: "1 River Road".into(),
            contact: "-".into(),
            treatments: vec!["Cardiology".into()],
        });
        Transaction::signed(&chain, "ehr", Ehr::payload(&op), 1, key)
    };
    let pending: Vec<Transaction> = (0..10_000u32)
        .map(|i| {
            let mut seed = [0x5a; 32];
            seed[..4].copy_from_slice(&i.to_le_bytes());
            register(
                &SecretKey::from_seed(seed),
                format!("Riverside Cardiology {i}"),
            )
        })
        .collect();
    for chunk in pending.chunks(2_000) {
        c.submit_waiting(0, chunk).await;
    }
    let real = SecretKey::from_seed([0xa5; 32]);
    let admin_op = |nonce: u64, op: EhrOp| {
        Transaction::signed(&chain, "ehr", Ehr::payload(&op), nonce, &admin)
    };
    let search = async |c: &cluster::Cluster| -> Vec<String> {
        let v = c
            .get(0, "/api/v1/ehr/hospitals?search=riverside")
            .await
            .expect("the search answers");
        v.as_array()
            .unwrap()
            .iter()
            .map(|h| h["key"].as_str().unwrap().to_owned())
            .collect()
    };
    c.submit_waiting(0, &[register(&real, "Riverside Cardiology".into())])
        .await;
    assert!(
        search(&c).await.is_empty(),
        "pending hospitals are not listed"
    );
    let approve = EhrOp::ApproveHospital {
        hospital: real.public(),
    };
    let suspend = EhrOp::SuspendHospital {
        hospital: real.public(),
    };
    c.submit_waiting(0, &[admin_op(1, approve.clone())]).await;
    assert_eq!(search(&c).await, vec![real.public().to_hex()], "at once");
    c.submit_waiting(0, &[admin_op(2, suspend)]).await;
    assert!(search(&c).await.is_empty(), "a suspension, at once");
    c.submit_waiting(0, &[admin_op(3, approve)]).await;
    assert_eq!(search(&c).await, vec![real.public().to_hex()]);

    // After a restart the index comes from state.
    c.kill9(0);
    c.spawn(0);
    c.wait(
        "the node serves its API again",
        60,
        async |c: &cluster::Cluster| c.status(0).await.is_some(),
    )
    .await;
    assert_eq!(search(&c).await, vec![real.public().to_hex()]);
    // The administrator still sees every pending registration, a page at a time.
    let q = r#"{"Page":{"query":{"Hospitals":{"search":"riverside","pending":true}},"after":null,"limit":1000}}"#;
    let page = query_as(&n0, q, &c.dir.path().join("admin.json"));
    assert_eq!(page["items"].as_array().unwrap().len(), 1000, "{page}");
    assert!(page["next"].is_string());
}
