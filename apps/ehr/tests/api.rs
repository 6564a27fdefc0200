//! Every route of the OpenAPI document a node serves, asked once as it should be and once as it
//! should not: each answer's status must be one the document lists for that route, the good
//! request's a success and the bad request's a client error. The table below must cover every
//! documented operation, so a new route cannot go untested.

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A request: `(method, path, signer, body)`; `signer` `None` sends it unsigned.
struct Req {
    method: &'static str,
    path: String,
    signer: Option<PathBuf>,
    body: Vec<u8>,
}

fn req(method: &'static str, path: impl Into<String>) -> Req {
    Req {
        method,
        path: path.into(),
        signer: None,
        body: Vec::new(),
    }
}

impl Req {
    fn signed(mut self, key: &Path) -> Req {
        self.signer = Some(key.to_owned());
        self
    }
    fn body(mut self, body: impl Into<Vec<u8>>) -> Req {
        self.body = body.into();
        self
    }
    /// The status the node answers (redirects not followed).
    fn status(&self, node: &str) -> u16 {
        if let Some(key) = &self.signer {
            return signed(node, key, self.method, &self.path, self.body.clone()).0;
        }
        let http = medchain_app::client::http_builder(None)
            .unwrap()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let request = http
            .request(self.method.parse().unwrap(), format!("{node}{}", self.path))
            .header("content-type", "application/json")
            .body(self.body.clone());
        runtime().block_on(async { request.send().await.unwrap().status().as_u16() })
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn every_documented_route_answers_a_good_and_a_bad_request_as_documented() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let u = up();
    let d = u.dir.path();
    let n0 = u.apis[0].as_str();
    let admin = d.join("net/admin.json");
    let client = d.join("net/client.json");
    let node1 = d.join("net/node1/node.json");
    // Actors: an approved hospital with a doctor, a patient with a profile who granted the
    // hospital everything, a document and a case.
    let (hosp, hosp_key) = keygen(d, "hospital");
    let (doctor, doctor_key) = keygen(d, "doctor");
    let (pat, pat_key) = keygen(d, "patient");
    let (stranger, _) = keygen(d, "stranger");
    assert!(tx(
        n0,
        &hosp,
        r#"{"RegisterHospital":{"name":"Api Clinic","address":"1 Road","contact":"-","treatments":["Tests"]}}"#
    ));
    assert!(tx(
        n0,
        &admin,
        &format!(r#"{{"ApproveHospital":{{"hospital":"{hosp_key}"}}}}"#)
    ));
    let commitment = hex::encode([7u8; 32]);
    assert!(tx(
        n0,
        &hosp,
        &format!(
            r#"{{"RegisterDoctor":{{"doctor":"{doctor_key}","profile_commitment":"{commitment}"}}}}"#
        )
    ));
    cli(
        &[
            "ehr", "patient", "register", "--node", n0, "--name", "Ada Api",
        ],
        Some(&pat),
    );
    assert!(tx(
        n0,
        &pat,
        &format!(
            r#"{{"Grant":{{"grantee":"{hosp_key}","scopes":["Profile","Cases","Documents"],"write":true,"expires_ms":{}}}}}"#,
            now_ms() + 86_400_000
        )
    ));
    cli(
        &["ehr", "patient", "share", "--node", n0, "--with", &hosp_key],
        Some(&pat),
    );
    let file = d.join("report.txt");
    std::fs::write(&file, b"a report of the api test").unwrap();
    let upload = cli(
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
        Some(&doctor),
    );
    let upload: Value = serde_json::from_str(&upload).unwrap();
    let (doc_id, sha, blob) = (
        upload["doc"].as_str().unwrap().to_owned(),
        upload["sha256"].as_str().unwrap().to_owned(),
        upload["blob"].as_str().unwrap().to_owned(),
    );
    let recorded = cli(
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
        Some(&hosp),
    );
    let recorded: Value = serde_json::from_str(&recorded).unwrap();
    let case_id = recorded["case"].as_str().unwrap().to_owned();
    cli(
        &["kv", "put", "hello", "world", "--node", n0],
        Some(&client),
    );
    let latest = get_json(&format!("{n0}/api/v1/blocks/latest"));
    let a_tx = latest["tx_hashes"][0].as_str().unwrap().to_owned();
    // The keys the patient holds, to store them again (a reader may replace its own key).
    let own_key = |path: &str| signed(n0, &pat, "GET", path, vec![]).1;
    let doc_keys = format!("[{}]", own_key(&format!("/api/v1/ehr/docs/{doc_id}/key")));
    let profile_keys = format!(
        "[{}]",
        own_key(&format!("/api/v1/ehr/profiles/{pat_key}/key"))
    );
    let case_keys = format!(
        "[{}]",
        own_key(&format!("/api/v1/ehr/cases/{pat_key}/{case_id}/key"))
    );
    let garbage = b"not a vault blob, stored by its address".to_vec();
    let garbage_blob = blake3::hash(&garbage).to_hex().to_string();
    let unsigned_tx =
        json!({"sender": pat_key, "op": {"LogRead": {"patient": pat_key, "object": "profile"}}})
            .to_string();
    let noop = {
        let out = Command::new(BIN)
            .args(["status", "--node", n0])
            .output()
            .unwrap();
        let s: Value = serde_json::from_slice(&out.stdout).unwrap();
        let key = medchain_types::SecretKey::from_seed([9; 32]);
        let t = medchain_types::Transaction::signed(
            s["chain_id"].as_str().unwrap(),
            "noop",
            vec![1],
            1,
            &key,
        );
        serde_json::to_string(&t).unwrap()
    };

    // (method, documented path) -> (good, bad); `None`: the route takes no input to get wrong.
    let p = &pat_key;
    let table: Vec<(&str, &str, Req, Option<Req>)> = vec![
        ("get", "/healthz", req("GET", "/healthz"), None),
        ("get", "/readyz", req("GET", "/readyz"), None),
        ("get", "/api/v1/status", req("GET", "/api/v1/status"), None),
        (
            "get",
            "/api/v1/openapi.json",
            req("GET", "/api/v1/openapi.json"),
            None,
        ),
        ("get", "/metrics", req("GET", "/metrics"), None),
        (
            "post",
            "/api/v1/txs",
            req("POST", "/api/v1/txs").body(noop),
            Some(req("POST", "/api/v1/txs").body("{not json")),
        ),
        (
            "get",
            "/api/v1/txs/{hash}",
            req("GET", format!("/api/v1/txs/{a_tx}")),
            Some(req("GET", "/api/v1/txs/nothex")),
        ),
        (
            "get",
            "/api/v1/blocks/{id}",
            req("GET", "/api/v1/blocks/latest"),
            Some(req("GET", "/api/v1/blocks/first")),
        ),
        (
            "get",
            "/api/v1/state/{chaincode}/{key}",
            req("GET", "/api/v1/state/kv/hello"),
            Some(req("GET", "/api/v1/state/kv/0xzz")),
        ),
        ("get", "/", req("GET", "/"), None),
        ("get", "/portal", req("GET", "/portal"), None),
        ("get", "/portal/", req("GET", "/portal/"), None),
        (
            "get",
            "/portal/{file}",
            req("GET", "/portal/app.js"),
            Some(req("GET", "/portal/nothing.js")),
        ),
        (
            "get",
            "/api/v1/kv/{key}",
            req("GET", "/api/v1/kv/hello"),
            Some(req("GET", "/api/v1/kv/0xzz")),
        ),
        (
            "post",
            "/api/v1/ehr/query",
            req("POST", "/api/v1/ehr/query").body(r#"{"Hospitals":{"search":"","pending":false}}"#),
            Some(req("POST", "/api/v1/ehr/query").body("{}")),
        ),
        (
            "get",
            "/api/v1/ehr/hospitals",
            req("GET", "/api/v1/ehr/hospitals?search=api"),
            Some(req("GET", "/api/v1/ehr/hospitals?search=a&search=b")),
        ),
        (
            "get",
            "/api/v1/ehr/docs/{id}",
            req("GET", format!("/api/v1/ehr/docs/{doc_id}")),
            Some(req("GET", "/api/v1/ehr/docs/no-such-doc")),
        ),
        (
            "get",
            "/api/v1/ehr/verify/{sha256}",
            req("GET", format!("/api/v1/ehr/verify/{sha}")),
            Some(req("GET", "/api/v1/ehr/verify/zz")),
        ),
        (
            "post",
            "/api/v1/ehr/tx/unsigned",
            req("POST", "/api/v1/ehr/tx/unsigned").body(unsigned_tx),
            Some(req("POST", "/api/v1/ehr/tx/unsigned").body("{}")),
        ),
        (
            "post",
            "/api/v1/ehr/blobs",
            req("POST", "/api/v1/ehr/blobs")
                .signed(&doctor)
                .body(b"bytes of a new blob".to_vec()),
            Some(req("POST", "/api/v1/ehr/blobs").body(b"x".to_vec())),
        ),
        (
            "put",
            "/api/v1/ehr/blobs/{blob}",
            req("PUT", format!("/api/v1/ehr/blobs/{garbage_blob}"))
                .signed(&doctor)
                .body(garbage),
            Some(req("PUT", "/api/v1/ehr/blobs/zz").signed(&doctor)),
        ),
        (
            "put",
            "/api/v1/ehr/docs/{id}/keys",
            req("PUT", format!("/api/v1/ehr/docs/{doc_id}/keys"))
                .signed(&pat)
                .body(doc_keys),
            Some(
                req("PUT", format!("/api/v1/ehr/docs/{doc_id}/keys"))
                    .signed(&stranger)
                    .body("[]"),
            ),
        ),
        (
            "get",
            "/api/v1/ehr/docs/{id}/key",
            req("GET", format!("/api/v1/ehr/docs/{doc_id}/key")).signed(&pat),
            Some(req("GET", format!("/api/v1/ehr/docs/{doc_id}/key"))),
        ),
        (
            "get",
            "/api/v1/ehr/docs/{id}/blob",
            req("GET", format!("/api/v1/ehr/docs/{doc_id}/blob")).signed(&pat),
            Some(req("GET", format!("/api/v1/ehr/docs/{doc_id}/blob")).signed(&stranger)),
        ),
        (
            "get",
            "/api/v1/ehr/vault-audit",
            req("GET", "/api/v1/ehr/vault-audit").signed(&admin),
            Some(req("GET", "/api/v1/ehr/vault-audit")),
        ),
        (
            "put",
            "/api/v1/ehr/profiles/{patient}/keys",
            req("PUT", format!("/api/v1/ehr/profiles/{p}/keys"))
                .signed(&pat)
                .body(profile_keys),
            Some(
                req("PUT", format!("/api/v1/ehr/profiles/{p}/keys"))
                    .signed(&hosp)
                    .body("[]"),
            ),
        ),
        (
            "get",
            "/api/v1/ehr/profiles/{patient}/key",
            req("GET", format!("/api/v1/ehr/profiles/{p}/key")).signed(&pat),
            Some(req("GET", format!("/api/v1/ehr/profiles/{p}/key"))),
        ),
        (
            "get",
            "/api/v1/ehr/profiles/{patient}/blob",
            req("GET", format!("/api/v1/ehr/profiles/{p}/blob")).signed(&pat),
            Some(req("GET", format!("/api/v1/ehr/profiles/{p}/blob")).signed(&hosp)),
        ),
        (
            "put",
            "/api/v1/ehr/cases/{patient}/{case}/keys",
            req("PUT", format!("/api/v1/ehr/cases/{p}/{case_id}/keys"))
                .signed(&pat)
                .body(case_keys),
            Some(
                req("PUT", format!("/api/v1/ehr/cases/{p}/{case_id}/keys"))
                    .signed(&stranger)
                    .body("[]"),
            ),
        ),
        (
            "get",
            "/api/v1/ehr/cases/{patient}/{case}/key",
            req("GET", format!("/api/v1/ehr/cases/{p}/{case_id}/key")).signed(&pat),
            Some(req("GET", format!("/api/v1/ehr/cases/{p}/{case_id}/key"))),
        ),
        (
            "get",
            "/api/v1/ehr/cases/{patient}/{case}/blob",
            req("GET", format!("/api/v1/ehr/cases/{p}/{case_id}/blob")).signed(&pat),
            Some(req("GET", format!("/api/v1/ehr/cases/zz/{case_id}/blob")).signed(&pat)),
        ),
        (
            "get",
            "/api/v1/ehr/peer/blobs/{blob}",
            req("GET", format!("/api/v1/ehr/peer/blobs/{blob}")).signed(&node1),
            Some(req("GET", format!("/api/v1/ehr/peer/blobs/{blob}")).signed(&stranger)),
        ),
        (
            "get",
            "/api/v1/ehr/peer/keys/{id}",
            req("GET", format!("/api/v1/ehr/peer/keys/{doc_id}")).signed(&node1),
            Some(req("GET", "/api/v1/ehr/peer/keys/Not-An-Id").signed(&node1)),
        ),
    ];
    let doc = get_json(&format!("{n0}/api/v1/openapi.json"));
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.insert((method.clone(), path.clone()));
        }
    }
    let tested: BTreeSet<(String, String)> = table
        .iter()
        .map(|(m, p, _, _)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(
        tested, documented,
        "the table covers exactly the documented operations"
    );
    let mut wrong = Vec::new();
    for (method, path, good, bad) in &table {
        let listed: BTreeSet<u16> = doc["paths"][*path][*method]["responses"]
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.parse().unwrap())
            .collect();
        let g = good.status(n0);
        if !(200..400).contains(&g) || !listed.contains(&g) {
            wrong.push(format!(
                "{method} {path}: the good request got {g}; documented {listed:?}"
            ));
        }
        if let Some(bad) = bad {
            let b = bad.status(n0);
            if !(400..500).contains(&b) || !listed.contains(&b) {
                wrong.push(format!(
                    "{method} {path}: the bad request got {b}; documented {listed:?}"
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "answers that the document does not list:\n{}",
        wrong.join("\n")
    );
}
