//! The authorization matrix of the HTTP API, end to end against a consortium: every documented
//! route, asked by every caller (anonymous, each role, another member's node) on the patient's
//! own objects and on another patient's, answers with the exact status of its row. A documented
//! route without a row fails the test. (The `ehr` operations' matrix is the chaincode's,
//! `apps/ehr/core/tests/matrix.rs`.)

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The callers, in the order of each row's statuses.
const CALLERS: [&str; 14] = [
    "anonymous",
    "administrator",
    "approved hospital",
    "pending hospital",
    "doctor",
    "patient",
    "another patient",
    "stranger",
    "share-link holder",
    "revoked grantee",
    "expired grantee",
    "removed doctor",
    "verifier",
    "member node",
];

/// One request: the documented operation it exercises, the concrete path, and a body made for
/// each caller (its index in `CALLERS`).
struct Row {
    method: &'static str,
    documented: &'static str,
    path: String,
    body: Box<dyn Fn(usize) -> Vec<u8>>,
    /// The expected status of each caller, space-separated.
    want: &'static str,
}

fn row(
    method: &'static str,
    documented: &'static str,
    path: impl Into<String>,
    want: &'static str,
) -> Row {
    Row {
        method,
        documented,
        path: path.into(),
        body: Box::new(|_| Vec::new()),
        want,
    }
}

impl Row {
    fn body(mut self, f: impl Fn(usize) -> Vec<u8> + 'static) -> Row {
        self.body = Box::new(f);
        self
    }
}

/// The status of `method path` with `body`, anonymous (`key` none) or signed; redirects are
/// not followed.
fn status(node: &str, key: Option<&Path>, method: &str, path: &str, body: Vec<u8>) -> u16 {
    match key {
        Some(k) => signed(node, k, method, path, body).0,
        None => tokio::runtime::Runtime::new().unwrap().block_on(async {
            medchain_app::client::http_builder(None)
                .unwrap()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap()
                .request(method.parse().unwrap(), format!("{node}{path}"))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }),
    }
}

#[test]
fn every_route_by_every_caller_on_own_and_another_patients_objects() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let u = up();
    let d = u.dir.path();
    let n0 = u.apis[0].as_str();
    let admin = d.join("net/admin.json");
    let node1 = d.join("net/node1/node.json");
    let (hosp, hosp_key) = keygen(d, "hospital");
    let (pend, _) = keygen(d, "pending");
    let (doc, doc_key) = keygen(d, "doctor");
    let (pat, pat_key) = keygen(d, "patient");
    let (pat2, pat2_key) = keygen(d, "patient2");
    let (stranger, _) = keygen(d, "stranger");
    let (rev, rev_key) = keygen(d, "revoked");
    let (exp, exp_key) = keygen(d, "expired");
    let (removed, removed_key) = keygen(d, "removed");
    let (ver, ver_key) = keygen(d, "verifier");
    for (h, name) in [
        (&hosp, "Matrix"),
        (&pend, "Pending"),
        (&rev, "Revoked"),
        (&exp, "Expired"),
    ] {
        assert!(tx(
            n0,
            h,
            &format!(
                r#"{{"RegisterHospital":{{"name":"{name}","address":"-","contact":"-","treatments":["Tests"]}}}}"#
            )
        ));
    }
    for h in [&hosp_key, &rev_key, &exp_key] {
        assert!(tx(
            n0,
            &admin,
            &format!(r#"{{"ApproveHospital":{{"hospital":"{h}"}}}}"#)
        ));
    }
    let commitment = "33".repeat(32);
    for dk in [&doc_key, &removed_key] {
        assert!(tx(
            n0,
            &hosp,
            &format!(
                r#"{{"RegisterDoctor":{{"doctor":"{dk}","profile_commitment":"{commitment}"}}}}"#
            )
        ));
    }
    assert!(tx(
        n0,
        &hosp,
        &format!(r#"{{"RemoveDoctor":{{"doctor":"{removed_key}"}}}}"#)
    ));
    assert!(tx(
        n0,
        &admin,
        &format!(r#"{{"AddVerifier":{{"verifier":"{ver_key}"}}}}"#)
    ));
    for (p, name) in [(&pat, "Ada Matrix"), (&pat2, "Bo Matrix")] {
        cli_as(
            &["ehr", "patient", "register", "--node", n0, "--name", name],
            p,
        );
    }
    let grant = |h: &str, expires: u64| {
        format!(
            r#"{{"Grant":{{"grantee":"{h}","scopes":["Profile","Cases","Documents"],"write":true,"expires_ms":{expires}}}}}"#
        )
    };
    let far = now_ms() + 86_400_000;
    assert!(tx(n0, &pat, &grant(&hosp_key, far)));
    assert!(tx(n0, &pat, &grant(&rev_key, far)));
    assert!(tx(
        n0,
        &pat,
        &format!(r#"{{"Revoke":{{"grantee":"{rev_key}"}}}}"#)
    ));
    let soon = now_ms() + 3_000;
    assert!(tx(n0, &pat, &grant(&exp_key, soon)));
    cli_as(
        &["ehr", "patient", "share", "--node", n0, "--with", &hosp_key],
        &pat,
    );
    let file = d.join("matrix.txt");
    std::fs::write(&file, b"a document of the matrix test").unwrap();
    let upload: Value = serde_json::from_str(&cli_as(
        &[
            "ehr",
            "doc",
            "upload",
            file.to_str().unwrap(),
            "--patient",
            &pat_key,
            "--node",
            n0,
        ],
        &doc,
    ))
    .unwrap();
    let (doc_a, sha, blob) = (
        upload["doc"].as_str().unwrap().to_owned(),
        upload["sha256"].as_str().unwrap().to_owned(),
        upload["blob"].as_str().unwrap().to_owned(),
    );
    let recorded: Value = serde_json::from_str(&cli_as(
        &[
            "ehr",
            "case",
            "record",
            "--patient",
            &pat_key,
            "--problem",
            "cough",
            "--systolic",
            "120",
            "--diastolic",
            "80",
            "--glucose",
            "5.4",
            "--node",
            n0,
        ],
        &hosp,
    ))
    .unwrap();
    let case_a = recorded["case"].as_str().unwrap().to_owned();
    let shared: Value = serde_json::from_str(&cli_as(
        &["ehr", "doc", "share", &doc_a, "--hours", "1", "--node", n0],
        &pat,
    ))
    .unwrap();
    let secret = shared["link"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let link: PathBuf = d.join("link.json");
    std::fs::write(
        &link,
        serde_json::json!({"public_key": shared["holder"], "secret_key": secret}).to_string(),
    )
    .unwrap();
    while now_ms() <= soon + 500 {
        std::thread::sleep(Duration::from_millis(200));
    }
    let callers: [Option<&Path>; 14] = [
        None,
        Some(&admin),
        Some(&hosp),
        Some(&pend),
        Some(&doc),
        Some(&pat),
        Some(&pat2),
        Some(&stranger),
        Some(&link),
        Some(&rev),
        Some(&exp),
        Some(&removed),
        Some(&ver),
        Some(&node1),
    ];
    let noop = {
        let s: Value = serde_json::from_str(&String::from_utf8_lossy(
            &Command::new(BIN)
                .args(["status", "--node", n0])
                .output()
                .unwrap()
                .stdout,
        ))
        .unwrap();
        let chain = s["chain_id"].as_str().unwrap().to_owned();
        move |i: usize| {
            let key = medchain_types::SecretKey::from_seed([i as u8 + 1; 32]);
            let t = medchain_types::Transaction::signed(&chain, "noop", vec![1], 1, &key);
            serde_json::to_vec(&t).unwrap()
        }
    };
    let latest = get_json(&format!("{n0}/api/v1/blocks/latest"));
    let a_tx = latest["tx_hashes"][0].as_str().unwrap().to_owned();
    // A blob of each caller's own (so that no caller finds another's already stored).
    let own_blob = |i: usize| format!("a blob of caller {i}").into_bytes();
    let put_blob = |i: usize| format!("a blob of caller {i}, by its address").into_bytes();
    let put_address = |i: usize| blake3::hash(&put_blob(i)).to_hex().to_string();
    // A wrapped-key list naming the caller (refused before it is read, or stored as the
    // caller's own key by those who may).
    let pubkeys: Vec<String> = callers
        .iter()
        .map(|k| k.map(pubkey).unwrap_or_else(|| "00".repeat(32)))
        .collect();
    let keys_body = move |i: usize| {
        format!(
            r#"[{{"reader":"{}","ephemeral":[{}],"sealed":"{}"}}]"#,
            pubkeys[i],
            ["9"; 32].join(","),
            "00".repeat(48)
        )
        .into_bytes()
    };
    let q = |q: String| move |_: usize| q.clone().into_bytes();
    let (p, p2) = (pat_key.as_str(), pat2_key.as_str());
    // Statuses in the order of CALLERS:
    //            anon adm  hosp pend doc  pat  pat2 strg link rev  exp  rmdr ver  node
    let rows = vec![
        row(
            "get",
            "/healthz",
            "/healthz",
            "200 200 200 200 200 200 200 200 200 200 200 200 200 200",
        ),
        row(
            "get",
            "/readyz",
            "/readyz",
            "200 200 200 200 200 200 200 200 200 200 200 200 200 200",
        ),
        row(
            "get",
            "/api/v1/status",
            "/api/v1/status",
            "200 200 200 200 200 200 200 200 200 200 200 200 200 200",
        ),
        row(
            "get",
            "/api/v1/openapi.json",
            "/api/v1/openapi.json",
            "200 200 200 200 200 200 200 200 200 200 200 200 200 200",
        ),
        row(
            "get",
            "/metrics",
            "/metrics",
            "200 200 200 200 200 200 200 200 200 200 200 200 200 200",
        ),
        row(
            "post",
            "/api/v1/txs",
            "/api/v1/txs",
            "202 202 202 202 202 202 202 202 202 202 202 202 202 202",
        )
        .body(noop),
        row(
            "get",
            "/api/v1/txs/{hash}",
            format!("/api/v1/txs/{a_tx}"),
            "200 200 200 200 200 200 200 200 200 200 200 200 200 200",
        ),
        row(
            "get",
            "/api/v1/blocks/{id}",
            "/api/v1/blocks/latest",
            "200 200 200 200 200 200 200 200 200 200 200 200 200 200",
        ),
        row(
            "get",
            "/api/v1/state/{chaincode}/{key}",
            format!("/api/v1/state/ehr/patient%2F{p}"),
            "403 403 403 403 403 403 403 403 403 403 403 403 403 403",
        ),
        row(
            "get",
            "/",
            "/",
            "307 307 307 307 307 307 307 307 307 307 307 307 307 307",
        ),
        row(
            "get",
            "/portal",
            "/portal",
            "308 308 308 308 308 308 308 308 308 308 308 308 308 308",
        ),
        row(
            "get",
            "/portal/",
            "/portal/",
            "200 200 200 200 200 200 200 200 200 200 200 200 200 200",
        ),
        row(
            "get",
            "/portal/{file}",
            "/portal/app.js",
            "200 200 200 200 200 200 200 200 200 200 200 200 200 200",
        ),
        row(
            "get",
            "/api/v1/kv/{key}",
            "/api/v1/kv/nothing-here",
            "404 404 404 404 404 404 404 404 404 404 404 404 404 404",
        ),
        // Queries: the public ones to anyone (a signer without a role is told to sign
        // nothing), those about people to their parties.
        row(
            "post",
            "/api/v1/ehr/query",
            "/api/v1/ehr/query",
            "200 200 200 200 200 200 200 403 403 200 200 403 200 403",
        )
        .body(q(r#"{"Hospitals":{"search":"","pending":false}}"#.into())),
        row(
            "post",
            "/api/v1/ehr/query",
            "/api/v1/ehr/query",
            "401 200 403 403 403 403 403 403 403 403 403 403 403 403",
        )
        .body(q(r#"{"Hospitals":{"search":"","pending":true}}"#.into())),
        row(
            "post",
            "/api/v1/ehr/query",
            "/api/v1/ehr/query",
            "401 403 200 403 200 200 403 403 403 200 200 403 403 403",
        )
        .body(q(format!(r#"{{"Grants":"{p}"}}"#))),
        row(
            "post",
            "/api/v1/ehr/query",
            "/api/v1/ehr/query",
            "401 403 200 403 200 403 200 403 403 200 200 403 403 403",
        )
        .body(q(format!(r#"{{"Grants":"{p2}"}}"#))),
        row(
            "post",
            "/api/v1/ehr/query",
            "/api/v1/ehr/query",
            "401 403 200 403 200 200 403 403 403 200 200 403 403 403",
        )
        .body(q(format!(r#"{{"Requests":"{p}"}}"#))),
        row(
            "post",
            "/api/v1/ehr/query",
            "/api/v1/ehr/query",
            "401 403 403 403 403 200 403 403 403 403 403 403 403 403",
        )
        .body(q(format!(r#"{{"Audit":"{p}"}}"#))),
        row(
            "post",
            "/api/v1/ehr/query",
            "/api/v1/ehr/query",
            "401 403 403 403 403 403 200 403 403 403 403 403 403 403",
        )
        .body(q(format!(
            r#"{{"AuditPage":{{"patient":"{p2}","before":null,"limit":10}}}}"#
        ))),
        row(
            "post",
            "/api/v1/ehr/query",
            "/api/v1/ehr/query",
            "401 200 200 403 200 200 403 403 403 403 403 403 403 403",
        )
        .body(q(format!(r#"{{"Patient":"{p}"}}"#))),
        row(
            "post",
            "/api/v1/ehr/query",
            "/api/v1/ehr/query",
            "401 403 200 403 200 200 403 403 403 403 403 403 403 403",
        )
        .body(q(format!(r#"{{"Documents":"{p}"}}"#))),
        row(
            "post",
            "/api/v1/ehr/query",
            "/api/v1/ehr/query",
            "401 403 200 403 200 200 403 403 403 403 403 403 403 403",
        )
        .body(q(format!(
            r#"{{"Page":{{"query":{{"Cases":"{p}"}},"after":null,"limit":10}}}}"#
        ))),
        row(
            "post",
            "/api/v1/ehr/query",
            "/api/v1/ehr/query",
            "401 403 403 403 403 403 200 403 403 403 403 403 403 403",
        )
        .body(q(format!(r#"{{"Cases":"{p2}"}}"#))),
        row(
            "post",
            "/api/v1/ehr/query",
            "/api/v1/ehr/query",
            "401 403 200 403 200 200 403 403 403 403 403 403 403 403",
        )
        .body(q(format!(r#"{{"Shares":"{doc_a}"}}"#))),
        row(
            "post",
            "/api/v1/ehr/query",
            "/api/v1/ehr/query",
            "401 200 403 403 403 403 403 403 403 403 403 403 403 403",
        )
        .body(q(r#""Users""#.into())),
        row(
            "post",
            "/api/v1/ehr/query",
            "/api/v1/ehr/query",
            "401 200 403 403 403 403 403 403 403 403 403 403 200 403",
        )
        .body(q(r#""Anchors""#.into())),
        row(
            "post",
            "/api/v1/ehr/query",
            "/api/v1/ehr/query",
            "401 200 200 403 403 403 403 403 403 403 403 403 403 403",
        )
        .body(q(format!(r#"{{"Roles":"{hosp_key}"}}"#))),
        row(
            "get",
            "/api/v1/ehr/hospitals",
            "/api/v1/ehr/hospitals?search=matrix",
            "200 200 200 200 200 200 200 200 200 200 200 200 200 200",
        ),
        // A document's anchor: anyone, its patient to the parties; signers need a role.
        row(
            "get",
            "/api/v1/ehr/docs/{id}",
            format!("/api/v1/ehr/docs/{doc_a}"),
            "200 403 200 200 200 200 200 403 200 200 200 403 403 403",
        ),
        row(
            "get",
            "/api/v1/ehr/verify/{sha256}",
            format!("/api/v1/ehr/verify/{sha}"),
            "200 200 200 200 200 200 200 200 200 200 200 200 200 200",
        ),
        row(
            "post",
            "/api/v1/ehr/tx/unsigned",
            "/api/v1/ehr/tx/unsigned",
            "200 200 200 200 200 200 200 200 200 200 200 200 200 200",
        )
        .body(q(format!(
            r#"{{"sender":"{p}","op":{{"LogRead":{{"patient":"{p}","object":"profile"}}}}}}"#
        ))),
        // The vault: staff store blobs; readers with access who logged the read get keys and
        // blobs (428 until they log it); the patient and the issuer store a document's keys.
        row(
            "post",
            "/api/v1/ehr/blobs",
            "/api/v1/ehr/blobs",
            "401 403 201 403 201 403 403 403 403 201 201 403 403 403",
        )
        .body(own_blob),
        row(
            "put",
            "/api/v1/ehr/docs/{id}/keys",
            format!("/api/v1/ehr/docs/{doc_a}/keys"),
            "401 403 403 403 201 201 403 403 403 403 403 403 403 403",
        )
        .body(keys_body.clone()),
        row(
            "get",
            "/api/v1/ehr/docs/{id}/key",
            format!("/api/v1/ehr/docs/{doc_a}/key"),
            "401 403 428 403 428 200 403 403 428 403 403 403 403 403",
        ),
        row(
            "get",
            "/api/v1/ehr/docs/{id}/blob",
            format!("/api/v1/ehr/docs/{doc_a}/blob"),
            "401 403 428 403 428 200 403 403 428 403 403 403 403 403",
        ),
        row(
            "get",
            "/api/v1/ehr/vault-audit",
            "/api/v1/ehr/vault-audit",
            "401 200 403 403 403 403 403 403 403 403 403 403 200 403",
        ),
        row(
            "put",
            "/api/v1/ehr/profiles/{patient}/keys",
            format!("/api/v1/ehr/profiles/{p}/keys"),
            "401 403 403 403 403 201 403 403 403 403 403 403 403 403",
        )
        .body(keys_body.clone()),
        row(
            "put",
            "/api/v1/ehr/profiles/{patient}/keys",
            format!("/api/v1/ehr/profiles/{p2}/keys"),
            "401 403 403 403 403 403 201 403 403 403 403 403 403 403",
        )
        .body(keys_body.clone()),
        row(
            "get",
            "/api/v1/ehr/profiles/{patient}/key",
            format!("/api/v1/ehr/profiles/{p}/key"),
            "401 403 428 403 428 200 403 403 403 403 403 403 403 403",
        ),
        row(
            "get",
            "/api/v1/ehr/profiles/{patient}/key",
            format!("/api/v1/ehr/profiles/{p2}/key"),
            "401 403 403 403 403 403 200 403 403 403 403 403 403 403",
        ),
        row(
            "get",
            "/api/v1/ehr/profiles/{patient}/blob",
            format!("/api/v1/ehr/profiles/{p}/blob"),
            "401 403 428 403 428 200 403 403 403 403 403 403 403 403",
        ),
        row(
            "get",
            "/api/v1/ehr/profiles/{patient}/blob",
            format!("/api/v1/ehr/profiles/{p2}/blob"),
            "401 403 403 403 403 403 200 403 403 403 403 403 403 403",
        ),
        row(
            "put",
            "/api/v1/ehr/cases/{patient}/{case}/keys",
            format!("/api/v1/ehr/cases/{p}/{case_a}/keys"),
            "401 403 201 403 403 201 403 403 403 403 403 403 403 403",
        )
        .body(keys_body.clone()),
        row(
            "get",
            "/api/v1/ehr/cases/{patient}/{case}/key",
            format!("/api/v1/ehr/cases/{p}/{case_a}/key"),
            "401 403 428 403 428 200 403 403 403 403 403 403 403 403",
        ),
        row(
            "get",
            "/api/v1/ehr/cases/{patient}/{case}/blob",
            format!("/api/v1/ehr/cases/{p}/{case_a}/blob"),
            "401 403 428 403 428 200 403 403 403 403 403 403 403 403",
        ),
        row(
            "get",
            "/api/v1/ehr/peer/blobs/{blob}",
            format!("/api/v1/ehr/peer/blobs/{blob}"),
            "401 403 403 403 403 403 403 403 403 403 403 403 403 200",
        ),
        row(
            "get",
            "/api/v1/ehr/peer/keys/{id}",
            format!("/api/v1/ehr/peer/keys/{doc_a}"),
            "401 403 403 403 403 403 403 403 403 403 403 403 403 200",
        ),
    ];
    // PUT /blobs/{blob}: each caller its own blob at its own address.
    let put_blob_want = "401 403 201 403 201 403 403 403 403 201 201 403 403 403";
    let doc_json = get_json(&format!("{n0}/api/v1/openapi.json"));
    let mut documented = BTreeSet::new();
    for (path, item) in doc_json["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.insert((method.clone(), path.clone()));
        }
    }
    let mut covered: BTreeSet<(String, String)> = rows
        .iter()
        .map(|r| (r.method.to_owned(), r.documented.to_owned()))
        .collect();
    covered.insert(("put".into(), "/api/v1/ehr/blobs/{blob}".into()));
    assert_eq!(covered, documented, "every documented route has a row");

    let mut wrong = Vec::new();
    let mut check = |label: String, want: &str, got: Vec<u16>| {
        let want: Vec<u16> = want
            .split_whitespace()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(want.len(), CALLERS.len(), "{label}");
        let diff: Vec<String> = CALLERS
            .iter()
            .zip(want.iter().zip(&got))
            .filter(|(_, (w, g))| w != g)
            .map(|(c, (w, g))| format!("{c}: {g}, expected {w}"))
            .collect();
        if !diff.is_empty() {
            wrong.push(format!("{label}: {}", diff.join("; ")));
        }
    };
    for r in &rows {
        let method = r.method.to_uppercase();
        let got = callers
            .iter()
            .enumerate()
            .map(|(i, k)| {
                // The redirects to the pages are the same for everyone, and the signing
                // client follows them: asked without a signature.
                let k = if matches!(r.documented, "/" | "/portal") {
                    None
                } else {
                    *k
                };
                status(n0, k, &method, &r.path, (r.body)(i))
            })
            .collect();
        let label = format!(
            "{method} {} {}",
            r.path,
            String::from_utf8_lossy(&(r.body)(0))
                .chars()
                .take(60)
                .collect::<String>()
        );
        check(label, r.want, got);
    }
    let got = callers
        .iter()
        .enumerate()
        .map(|(i, k)| {
            status(
                n0,
                *k,
                "PUT",
                &format!("/api/v1/ehr/blobs/{}", put_address(i)),
                put_blob(i),
            )
        })
        .collect();
    check("PUT /api/v1/ehr/blobs/{blob}".into(), put_blob_want, got);
    assert!(
        wrong.is_empty(),
        "statuses that differ:\n{}",
        wrong.join("\n")
    );
}
