//! The health-record app through the CLI and the portal against a running 4-node consortium
//! (`medchain up`): registration and approval, a doctor, a patient, an access request and grant,
//! a document anchored by the doctor and verified by anyone from another node (authentic,
//! tampered, unknown), with the refusals (wrong role, no grant, another patient's record),
//! signed requests, erasure, expiry, break-glass, supersession and share links.

mod browser;
mod common;

use common::*;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// A signed request is accepted once; the same request again (same nonce), one signed 10
/// minutes ago, and the same request sent to another node (`other`) are refused.
fn signed_requests_refuse_replays_and_stale_times(
    node: &str,
    other: &str,
    key_file: &Path,
    doc: &str,
) {
    let signer = RequestSigner::new(node, key_file);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let http = medchain_app::client::http_builder(None)
            .unwrap()
            .build()
            .unwrap();
        let path = format!("/api/v1/ehr/docs/{doc}/key");
        let send_to = |to: &str, created: u64, nonce: &str| {
            signer
                .request(
                    &http,
                    "GET",
                    format!("{to}{path}"),
                    &path,
                    created,
                    nonce,
                    "",
                )
                .send()
        };
        let send = |created: u64, nonce: &str| send_to(node, created, nonce);
        let now = now_ms();
        let nonce = "0123456789abcdef0123456789abcdef";
        assert_eq!(send(now, nonce).await.unwrap().status().as_u16(), 200);
        // Captured on its way to `node` and replayed at another node, which has not seen the
        // nonce: refused, because the signature names `node`.
        let elsewhere = send_to(other, now, nonce).await.unwrap();
        assert_eq!(elsewhere.status().as_u16(), 401);
        assert!(elsewhere.text().await.unwrap().contains("signature"));
        let replay = send(now, nonce).await.unwrap();
        assert_eq!(replay.status().as_u16(), 401);
        assert!(replay.text().await.unwrap().contains("replayed"));
        let stale = send(now - 10 * 60 * 1000, "fedcba9876543210fedcba9876543210")
            .await
            .unwrap();
        assert_eq!(stale.status().as_u16(), 401);
        assert!(stale.text().await.unwrap().contains("stale"));
    });
}

/// Sends a request signed with the key in `key_file`; returns the status and body.

#[test]
fn register_grant_anchor_and_verify_across_nodes() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let u = up();
    let d = u.dir.path();
    let admin = d.join("net/admin.json");
    let (hosp, hosp_key) = keygen(d, "hospital");
    let (doc, doc_key) = keygen(d, "doctor");
    let (pat, pat_key) = keygen(d, "patient");
    let (pat2, pat2_key) = keygen(d, "patient2");
    let (stranger, _) = keygen(d, "stranger");
    assert_eq!(pubkey(&admin).len(), 64);
    let n = |i: usize| u.apis[i].as_str();

    let register = r#"{"RegisterHospital":{"name":"St Mary Cardiac Centre","address":"1 Main St","contact":"+1 555 0100","treatments":["Cardiology","Diabetes care"]}}"#;
    assert!(tx(n(0), &hosp, register));
    let approve = format!(r#"{{"ApproveHospital":{{"hospital":"{hosp_key}"}}}}"#);
    assert!(
        !tx(n(1), &stranger, &approve),
        "only administrators approve"
    );
    assert!(tx(n(1), &admin, &approve));
    let commitment = "11".repeat(32);
    assert!(tx(
        n(2),
        &hosp,
        &format!(
            r#"{{"RegisterDoctor":{{"doctor":"{doc_key}","profile_commitment":"{commitment}"}}}}"#
        )
    ));
    for p in [&pat, &pat2] {
        assert!(tx(
            n(3),
            p,
            &format!(
                r#"{{"RegisterPatient":{{"profile_commitment":"{commitment}","profile_blob":null}}}}"#
            )
        ));
    }
    let found = query(n(2), r#"{"Hospitals":{"search":"cardio","pending":false}}"#);
    assert_eq!(found[0]["key"], hosp_key.as_str(), "{found}");
    // The portal, in a real browser: hospital search and the administrator's overview.
    let web = browser::Browser::start();
    web.goto(&format!("{}/", n(1)));
    assert!(web.wait_text("#status", "height").contains("pbft"));
    web.goto(&format!("{}/portal/#hospitals", n(1)));
    web.fill("#hospital-search", "CARDIO");
    web.click("#hospital-form button");
    let cards = web.wait_text("#hospital-results", "St Mary Cardiac Centre");
    assert!(cards.contains("Diabetes care"), "{cards}");
    web.fill("#hospital-search", "dermatology");
    web.click("#hospital-form button");
    web.wait_text("#hospital-results", "No approved hospital matches");
    // The lists of users are the administrators': refused without a key, shown with one.
    web.goto(&format!("{}/portal/#admin", n(2)));
    web.wait_text("#error", "administrators");
    web.goto(&format!("{}/portal/#account", n(2)));
    web.fill("#account-file", admin.to_str().unwrap());
    web.wait_text("#account-role", "administrator");
    web.click("#nav-admin");
    let admin_page = web.wait_text("#admin-result", "Patients (2");
    assert!(
        admin_page.contains("St Mary Cardiac Centre") && admin_page.contains("approved"),
        "{admin_page}"
    );

    // A document: refused without a grant, anchored with one.
    let file = d.join("report.txt");
    std::fs::write(
        &file,
        b"Medical report: blood pressure 120/80, glucose 5.4 mmol/L",
    )
    .unwrap();
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(std::fs::read(&file).unwrap()))
    };
    // Each document its own (made-up) blob address: a blob belongs to one record.
    let issue = |name: &str, patient: &str| {
        use sha2::Digest;
        let id = opaque(name);
        format!(
            r#"{{"IssueDocument":{{"doc_id":"{id}","patient":"{patient}","kind":"Report","plaintext_sha256":"{sha}","blob":"{}","supersedes":null}}}}"#,
            hex::encode(sha2::Sha256::digest(id.as_bytes()))
        )
    };
    assert!(!tx(n(0), &doc, &issue("rep-1", &pat_key)), "no grant yet");
    // A purpose in clear is refused at admission; sealed, it is on the chain for the patient.
    assert!(!tx(
        n(0),
        &hosp,
        &format!(
            r#"{{"RequestAccess":{{"patient":"{pat_key}","purpose":"cardiology follow-up","scopes":["Documents"]}}}}"#
        )
    ));
    let o = Command::new(BIN)
        .args([
            "ehr",
            "request",
            "--patient",
            &pat_key,
            "--purpose",
            "cardiology follow-up",
        ])
        .args(["--scope", "documents", "--node", n(0), "--key-file"])
        .arg(&hosp)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let requests_q = format!(r#"{{"Requests":"{pat_key}"}}"#);
    let requests = query_as(n(1), &requests_q, &pat);
    assert_eq!(
        requests[0]["purpose"], "cardiology follow-up",
        "opened for the patient"
    );
    let sealed = query_as(n(1), &requests_q, &hosp);
    assert_eq!(
        sealed[0]["purpose"], "cardiology follow-up",
        "and for the hospital"
    );
    for who in [None, Some(&stranger), Some(&pat2)] {
        let mut c = Command::new(BIN);
        c.args(["ehr", "query", &requests_q, "--node", n(1)]);
        if let Some(k) = who {
            c.arg("--key-file").arg(k);
        }
        let o = c.output().unwrap();
        assert!(!o.status.success(), "refused to {who:?}");
    }
    assert!(tx(
        n(1),
        &pat,
        &format!(
            r#"{{"Grant":{{"grantee":"{hosp_key}","scopes":["Documents"],"write":true,"expires_ms":4102444800000}}}}"#
        )
    ));
    assert!(
        !tx(n(0), &doc, &issue("rep-x", &pat2_key)),
        "another patient's record"
    );
    assert!(tx(n(0), &doc, &issue("rep-1", &pat_key)));

    // Anyone re-hashes the file through another node.
    let (ok, v) = verify(n(3), &file, None);
    assert!(ok, "{v}");
    assert_eq!(v["verdict"], "authentic");
    assert_eq!(v["document"]["issuer"], doc_key.as_str());
    assert!(
        v["document"].get("patient").is_none(),
        "whose document it is stays with its parties: {v}"
    );
    let forged = d.join("forged.txt");
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[20] ^= 1;
    std::fs::write(&forged, &bytes).unwrap();
    let (ok, v) = verify(n(2), &forged, Some(&opaque("rep-1")));
    assert!(!ok);
    assert_eq!(v["verdict"], "tampered");
    let (ok, v) = verify(n(1), &forged, None);
    assert!(!ok);
    assert_eq!(v["verdict"], "unknown");
    // The same three verdicts in the portal, the file hashed by the browser.
    web.goto(&format!("{}/portal/#verify", n(3)));
    let rep1 = opaque("rep-1");
    for (f, doc, verdict) in [
        (&file, "", "Authentic"),
        (&forged, rep1.as_str(), "Tampered"),
        (&forged, "", "Unknown"),
    ] {
        web.fill("#verify-file", f.to_str().unwrap());
        web.fill("#verify-doc", doc);
        web.eval("document.querySelector('#verify-result').hidden = true; document.querySelector('#verify-result').textContent = '';", serde_json::json!([]));
        web.click("#verify-form button");
        let shown = web.wait_text("#verify-result", verdict);
        assert!(shown.contains(&sha) || verdict != "Authentic", "{shown}");
        let class = web.eval(
            "return document.querySelector('#verify-result').className;",
            serde_json::json!([]),
        );
        assert!(
            class.as_str().unwrap().contains(&verdict.to_lowercase()),
            "{class}"
        );
    }

    // A document through the vault: encrypted by the doctor's CLI, read back by the patient and
    // by the granted hospital (after its read is on the chain), refused to a stranger, refused
    // when the stored ciphertext is altered, and gone after erasure.
    let scan = d.join("scan.bin");
    let content: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&scan, &content).unwrap();
    let out = Command::new(BIN)
        .args(["ehr", "doc", "upload"])
        .arg(&scan)
        .args([
            "--patient",
            &pat_key,
            "--type",
            "report",
            "--node",
            n(0),
            "--key-file",
        ])
        .arg(&doc)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let up: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let blob = up["blob"].as_str().unwrap().to_owned();
    let scan = up["doc"].as_str().unwrap().to_owned();
    let scan_object = format!("doc/{scan}");
    let get = |key: &Path, out: &Path| {
        Command::new(BIN)
            .args(["ehr", "doc", "get", scan.as_str(), "--node", n(0), "--out"])
            .arg(out)
            .arg("--key-file")
            .arg(key)
            .output()
            .unwrap()
    };
    let mine = d.join("mine.bin");
    let o = get(&pat, &mine);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read(&mine).unwrap(), content);
    signed_requests_refuse_replays_and_stale_times(n(0), n(1), &pat, &scan);
    let theirs = d.join("theirs.bin");
    let o = get(&hosp, &theirs);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read(&theirs).unwrap(), content);
    assert!(
        !get(&stranger, &d.join("x.bin")).status.success(),
        "a stranger"
    );
    // The issuer cannot spoil the patient's wrapped key: a reader's key is replaced only by
    // that reader.
    let junk = format!(
        r#"[{{"reader":"{pat_key}","ephemeral":[{}],"sealed":"{}"}}]"#,
        ["9"; 32].join(","),
        "00".repeat(48)
    );
    let (code, body) = signed(
        n(0),
        &doc,
        "PUT",
        &format!("/api/v1/ehr/docs/{scan}/keys"),
        junk.clone().into_bytes(),
    );
    assert_eq!(code, 201, "{body}");
    let o = get(&pat, &d.join("again.bin"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // A key list's signature covers the list: the same signed request with another body is
    // refused.
    let signer = RequestSigner::new(n(0), &doc);
    let code = tokio::runtime::Runtime::new().unwrap().block_on(async {
        use sha2::Digest;
        let path = format!("/api/v1/ehr/docs/{scan}/keys");
        let path = path.as_str();
        let signed_for = hex::encode(sha2::Sha256::digest(b"[]"));
        signer
            .request(
                &medchain_app::client::http_builder(None)
                    .unwrap()
                    .build()
                    .unwrap(),
                "PUT",
                format!("{}{path}", n(0)),
                path,
                now_ms(),
                &hex::encode(rand::random::<[u8; 16]>()),
                &signed_for,
            )
            .body(junk.clone())
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    assert_eq!(code, 401, "a body the signature does not cover");
    // Through another node, which does not hold the blob yet: it fetches and checks it.
    let elsewhere = d.join("elsewhere.bin");
    let o = Command::new(BIN)
        .args(["ehr", "doc", "get", scan.as_str(), "--node", n(2), "--out"])
        .arg(&elsewhere)
        .arg("--key-file")
        .arg(&hosp)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read(&elsewhere).unwrap(), content);
    let copy = d.join("net/node2/data/vault").join(&blob);
    assert!(copy.exists(), "node2 keeps the fetched blob");
    share_links_and_later_readers(&u, &web, &pat, &pat_key, &pat2, &scan, &content);
    assert!(
        !get(&doc2_placeholder(d), &d.join("x.bin")).status.success(),
        "an unregistered key"
    );
    let stored = d.join("net/node0/data/vault").join(&blob);
    let original = std::fs::read(&stored).unwrap();
    assert!(
        !original.windows(64).any(|w| w == &content[1000..1064]),
        "no plaintext in the vault"
    );
    let audit_as = |key: &Path| {
        Command::new(BIN)
            .args(["ehr", "audit", "--node", n(0), "--key-file"])
            .arg(key)
            .output()
            .unwrap()
    };
    let o = audit_as(&hosp);
    assert!(
        !o.status.success() && String::from_utf8_lossy(&o.stderr).contains("verifiers"),
        "the audit is for verifiers: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let audit_run = || audit_as(&admin);
    let o = audit_run();
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success() && text.contains("intact") && text.contains(scan_object.as_str()),
        "{text}"
    );
    let mut altered = original.clone();
    altered[5000] ^= 1;
    std::fs::write(&stored, &altered).unwrap();
    let o = audit_run();
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        !o.status.success(),
        "the audit fails on a tampered blob: {text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("tampered") && l.contains(scan_object.as_str())),
        "{text}"
    );
    // The verifier's audit in the portal: the altered record red, among the intact.
    web.goto(&format!("{}/portal/#account", n(0)));
    web.fill("#account-file", admin.to_str().unwrap());
    web.wait_text("#account-role", "administrator");
    web.click("#nav-audit");
    web.click("#audit-run");
    web.wait_text("#audit-summary", "1 tampered");
    let row = web.eval(
        "return [...document.querySelectorAll('#audit-table tbody tr')].map(r => [r.className, r.cells[1].innerText, getComputedStyle(r.cells[0]).color]);",
        serde_json::json!([]),
    );
    assert!(
        row.as_array().unwrap().iter().any(|r| r[0] == "tampered"
            && r[1] == scan_object.as_str()
            && r[2] == "rgb(179, 38, 30)"),
        "{row}"
    );
    let o = get(&pat, &d.join("y.bin"));
    assert!(!o.status.success(), "an altered blob is refused");
    std::fs::write(&stored, &original).unwrap();
    let audit = query_as(n(3), &format!(r#"{{"Audit":"{pat_key}"}}"#), &pat);
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["reader"] == hosp_key.as_str() && e["object"] == scan_object.as_str()),
        "{audit}"
    );
    assert!(tx(
        n(1),
        &pat,
        &format!(r#"{{"Erase":{{"doc_id":"{scan}"}}}}"#)
    ));
    let deadline = Instant::now() + Duration::from_secs(10);
    while stored.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!stored.exists(), "the blob is destroyed on erasure");
    while copy.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!copy.exists(), "every node's copy is destroyed");
    assert!(
        !get(&pat, &d.join("z.bin")).status.success(),
        "erased: nobody gets it"
    );
    // An erased blob is never stored again, and no node hands it out.
    let (code, body) = signed(
        n(0),
        &doc,
        "PUT",
        &format!("/api/v1/ehr/blobs/{blob}"),
        original.clone(),
    );
    assert_eq!(code, 410, "{body}");
    let node1 = d.join("net/node1/node.json");
    let (code, _) = signed(
        n(2),
        &node1,
        "GET",
        &format!("/api/v1/ehr/peer/blobs/{blob}"),
        vec![],
    );
    assert_eq!(code, 410);
    // Peer routes take record ids, never paths.
    let (code, _) = signed_as(
        n(2),
        &node1,
        "GET",
        "/api/v1/ehr/peer/keys/..%2F..%2Fnode",
        "/api/v1/ehr/peer/keys/../../node",
        vec![],
    );
    assert_eq!(code, 400);

    // Revocation ends the doctor's writes; the patient sees the audit of the issuance.
    assert!(tx(
        n(2),
        &pat,
        &format!(r#"{{"Revoke":{{"grantee":"{hosp_key}"}}}}"#)
    ));
    assert!(!tx(n(0), &doc, &issue("rep-2", &pat_key)), "revoked");
    let audit = query_as(n(3), &format!(r#"{{"Audit":"{pat_key}"}}"#), &pat);
    assert_eq!(audit[0]["object"], format!("doc/{rep1}"), "{audit}");

    // The same flows in the portal, each key opened in the browser and every transaction
    // signed there: the hospital asks again, the patient grants with write access (the doctor
    // can issue again), then revokes (it cannot).
    web.goto(&format!("{}/portal/#account", n(2)));
    web.fill("#account-file", hosp.to_str().unwrap());
    web.wait_text("#account-role", "hospital (approved)");
    let (_, doc3_key) = keygen(d, "doctor3");
    web.fill("#doctor-key", &doc3_key);
    web.fill("#doctor-profile", "Dr A. Osei, cardiology");
    web.click("#doctor-form button");
    web.wait_text("#account-status", "Doctor registered");
    let v = query(n(3), &format!(r#"{{"Doctor":"{doc3_key}"}}"#));
    assert_eq!(v["hospital"], hosp_key.as_str(), "{v}");
    web.fill("#request-patient", &pat_key);
    web.fill("#request-purpose", "second opinion");
    web.click("#request-form button");
    web.wait_text("#account-status", "Request sent");
    web.fill("#account-file", pat.to_str().unwrap());
    web.wait_text("#account-role", "patient");
    web.wait_text("#account-requests", "second opinion");
    web.click("#grant-write");
    web.click(&format!("#grant-{hosp_key}"));
    web.wait_text("#account-status", "Grant: committed");
    assert!(
        tx(n(0), &doc, &issue("rep-3", &pat_key)),
        "granted in the portal"
    );
    web.click(&format!("#revoke-{hosp_key}"));
    web.wait_text("#account-status", "Revoke: committed");
    assert!(
        !tx(n(0), &doc, &issue("rep-4", &pat_key)),
        "revoked in the portal"
    );
    // A key made in the browser registers a hospital; the administrator approves it there.
    web.click("#account-new");
    web.wait_text("#account-role", "not registered");
    assert!(web.visible("#account-download"), "the new key can be saved");
    web.fill("#register-name", "Hillside Paediatrics");
    web.fill("#register-treatments", "Paediatrics, Vaccination");
    web.click("#register-form button");
    web.wait_text("#account-role", "waiting for approval");
    web.fill("#account-file", admin.to_str().unwrap());
    web.wait_text("#account-pending", "Hillside Paediatrics");
    web.eval(
        "document.querySelector('#account-pending button').click();",
        serde_json::json!([]),
    );
    web.wait_text("#account-status", "Approve: committed");
    let found = query(
        n(1),
        r#"{"Hospitals":{"search":"paediatrics","pending":false}}"#,
    );
    assert_eq!(
        found[0]["profile"]["name"], "Hillside Paediatrics",
        "{found}"
    );

    expiry_break_glass_and_supersession(&u, &hosp, &hosp_key, &doc, &pat2, &pat2_key);
}

/// A grant that expires ends the hospital's writes and reads; break-glass lets the doctor read
/// anyway, flagged to the patient; a document superseded by a newer one says so.
fn expiry_break_glass_and_supersession(
    u: &Up,
    hosp: &Path,
    hosp_key: &str,
    doc: &Path,
    pat2: &Path,
    pat2_key: &str,
) {
    let n = |i: usize| u.apis[i].as_str();
    let issue = |name: &str, supersedes: &str| {
        use sha2::Digest;
        let id = opaque(name);
        let h = |x: &str| hex::encode(sha2::Sha256::digest(x.as_bytes()));
        format!(
            r#"{{"IssueDocument":{{"doc_id":"{id}","patient":"{pat2_key}","kind":"Certificate","plaintext_sha256":"{}","blob":"{}","supersedes":{supersedes}}}}}"#,
            h(&format!("text of {id}")),
            h(&format!("blob of {id}"))
        )
    };
    let expires = now_ms() + 4_000;
    assert!(tx(
        n(1),
        pat2,
        &format!(
            r#"{{"Grant":{{"grantee":"{hosp_key}","scopes":["Documents"],"write":true,"expires_ms":{expires}}}}}"#
        )
    ));
    assert!(tx(n(0), doc, &issue("cert-1", "null")), "within the grant");
    assert!(
        tx(
            n(2),
            doc,
            &issue("cert-2", &format!("{:?}", opaque("cert-1")))
        ),
        "a newer one"
    );
    let cert1 = format!(r#"{{"Document":"{}"}}"#, opaque("cert-1"));
    let v = query(n(3), &cert1);
    assert_eq!(v["superseded_by"], opaque("cert-2"), "{v}");
    assert!(v.get("patient").is_none(), "anonymous: no patient");
    let v = query_as(n(3), &cert1, pat2);
    assert_eq!(v["patient"], pat2_key, "its patient: {v}");
    let cert1_object = format!("doc/{}", opaque("cert-1"));
    let read = format!(r#"{{"LogRead":{{"patient":"{pat2_key}","object":"{cert1_object}"}}}}"#);
    assert!(tx(n(1), hosp, &read), "a read under the grant");
    while now_ms() <= expires + 500 {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        !tx(n(0), doc, &issue("cert-3", "null")),
        "expired: no write"
    );
    assert!(!tx(n(1), hosp, &read), "expired: no read");
    // Break-glass: the doctor reads anyway, and the patient sees it flagged, with the reason
    // sealed for it (a reason in clear is refused).
    let glass =
        format!(r#"{{"BreakGlass":{{"patient":"{pat2_key}","reason":"unconscious in A&E"}}}}"#);
    assert!(!tx(n(2), doc, &glass), "a reason in clear");
    let break_glass = |key: &Path| {
        Command::new(BIN)
            .args(["ehr", "break-glass", "--patient", pat2_key])
            .args([
                "--reason",
                "unconscious in A&E",
                "--node",
                n(2),
                "--key-file",
            ])
            .arg(key)
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(!break_glass(hosp), "only doctors break the glass");
    assert!(break_glass(doc));
    assert!(tx(n(3), doc, &read), "a read under break-glass");
    let audit = query_as(n(0), &format!(r#"{{"Audit":"{pat2_key}"}}"#), pat2);
    let events = audit.as_array().unwrap();
    assert!(
        events.iter().any(|e| e["object"] == "break-glass"
            && e["flagged"] == true
            && e["note"] == "unconscious in A&E"),
        "{audit}"
    );
    assert!(
        events.iter().any(|e| e["object"] == cert1_object.as_str()
            && e["basis"] == "break-glass"
            && e["flagged"] == true),
        "{audit}"
    );
}

/// The patient makes a share link for document `scan`; its holder downloads, decrypts and verifies
/// the document through another node (the read is audited under the link); a forged secret
/// and an unshared link are refused. A key wrapped later for another reader does not by
/// itself give access.
fn share_links_and_later_readers(
    u: &Up,
    web: &browser::Browser,
    pat: &Path,
    pat_key: &str,
    pat2: &Path,
    scan: &str,
    content: &[u8],
) {
    let scan_object = format!("doc/{scan}");
    let d = u.dir.path();
    let n = |i: usize| u.apis[i].as_str();
    let o = Command::new(BIN)
        .args(["ehr", "doc", "share", scan, "--hours", "1", "--node", n(1)])
        .arg("--key-file")
        .arg(pat)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let link = v["link"].as_str().unwrap().to_owned();
    assert!(
        link.starts_with(&format!("{}/portal/#share/{scan}/", n(1))),
        "{link}"
    );
    let open = |link: &str, out: &Path| {
        Command::new(BIN)
            .args(["ehr", "doc", "open", link, "--node", n(3), "--out"])
            .arg(out)
            .output()
            .unwrap()
    };
    let shared = d.join("shared.bin");
    let o = open(&link, &shared);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["verdict"], "authentic", "{v}");
    assert_eq!(std::fs::read(&shared).unwrap(), content);
    let holder = v_holder(&link);
    let audit = query_as(n(0), &format!(r#"{{"Audit":"{pat_key}"}}"#), pat);
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["reader"] == holder.as_str()
                && e["basis"] == "share-link"
                && e["object"] == scan_object.as_str()),
        "{audit}"
    );
    // The same link in the portal: the browser logs the read, unwraps the key, decrypts,
    // re-hashes, and offers the file.
    web.goto(&link);
    web.wait_text("#share-anchor", scan);
    web.click("#share-open");
    let shown = web.wait_text("#share-result", "Authentic");
    assert!(shown.contains(scan), "{shown}");
    let got = web.eval_async(
        "const done = arguments[arguments.length - 1];
         fetch(document.querySelector('#share-download').href).then(r => r.arrayBuffer())
           .then(b => crypto.subtle.digest('SHA-256', b))
           .then(h => done([...new Uint8Array(h)].map(x => x.toString(16).padStart(2, '0')).join('')))
           .catch(e => done('error: ' + e));",
        serde_json::json!([]),
    );
    let want = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(content))
    };
    assert_eq!(got, want.as_str(), "the browser's download is the document");
    // The patient's own record in the portal, under its key.
    web.goto(&format!("{}/portal/#account", n(2)));
    web.fill("#account-file", pat.to_str().unwrap());
    web.wait_text("#account-role", "patient");
    web.goto(&format!("{}/portal/#patient/{pat_key}", n(2)));
    let record = web.wait_text("#patient-result", "share-link");
    assert!(record.contains(scan_object.as_str()), "{record}");
    let forged = format!("{}{}", &link[..link.len() - 64], "ab".repeat(32));
    assert!(
        !open(&forged, &d.join("f.bin")).status.success(),
        "a forged link"
    );
    assert!(tx(
        n(2),
        pat,
        &format!(r#"{{"Unshare":{{"doc_id":"{scan}","holder":"{holder}"}}}}"#)
    ));
    let o = open(&link, &d.join("g.bin"));
    assert!(!o.status.success(), "an unshared link");
    assert!(!d.join("g.bin").exists());
    // A key wrapped for another patient: stored, but no grant, so no read.
    let o = Command::new(BIN)
        .args([
            "ehr",
            "doc",
            "share",
            scan,
            "--with",
            &pubkey(pat2),
            "--node",
            n(0),
        ])
        .arg("--key-file")
        .arg(pat)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = Command::new(BIN)
        .args(["ehr", "doc", "get", scan, "--node", n(0), "--out"])
        .arg(d.join("h.bin"))
        .arg("--key-file")
        .arg(pat2)
        .output()
        .unwrap();
    assert!(!o.status.success(), "a key without a grant");
}
