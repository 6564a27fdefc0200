//! No personal data in clear anywhere on a node: patients registered through the CLI and the
//! portal, their profiles read back by the patient and a granted hospital through another node,
//! then every byte of every node's directory scanned.

mod browser;
mod common;

use common::*;
use std::path::Path;
use std::process::Command;

/// Patients registered with known personal data: the data is readable by the patient and, after
/// a grant and a shared key, by the hospital (through another node); and no byte of it is in
/// any node's directory (ledger, vault, keys, logs, configuration) in clear.
#[test]
fn personal_data_never_reaches_a_ledger_or_the_vault_in_clear() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let u = up();
    let d = u.dir.path();
    let n = |i: usize| u.apis[i].as_str();
    let admin = d.join("net/admin.json");
    let (hosp, hosp_key) = keygen(d, "hospital");
    let register = r#"{"RegisterHospital":{"name":"Riverside Clinic","address":"2 River Rd","contact":"+1 555 0199","treatments":["General practice"]}}"#;
    assert!(tx(n(0), &hosp, register));
    assert!(tx(
        n(0),
        &admin,
        &format!(r#"{{"ApproveHospital":{{"hospital":"{hosp_key}"}}}}"#)
    ));
    let people = [
        (
            "Zelda Quintanilla-Okonkwo",
            "zelda.q.okonkwo@example.org",
            "1987-03-14",
            "+44 7700 900123",
            "77 Larkspur Crescent, Dunwich",
        ),
        (
            "Bartholomew Ngata-Fairweather",
            "b.fairweather@example.net",
            "1952-11-02",
            "+61 491 570 156",
            "12 Wattle Grove, Ballarat",
        ),
        // Registers in the portal (below).
        (
            "Ignatius Vasquez-Halloran",
            "iggy.halloran@example.com",
            "1979-06-30",
            "+353 85 555 0147",
            "9 Foxglove Terrace, Kilkenny",
        ),
    ];
    // Photos, encrypted with the profiles: a JPEG through the CLI, a PNG through the portal.
    let picture = |magic: &[u8], seed: u32| -> Vec<u8> {
        let mut b = magic.to_vec();
        b.extend((0..40_000u32).map(|i| (i.wrapping_mul(seed) >> 3) as u8));
        b
    };
    let jpeg = picture(&[0xff, 0xd8, 0xff, 0xe0], 2_654_435_761);
    let png = picture(b"\x89PNG\r\n\x1a\n", 40_503);
    std::fs::write(d.join("face.jpg"), &jpeg).unwrap();
    std::fs::write(d.join("face.png"), &png).unwrap();
    std::fs::write(d.join("not-a-photo.png"), b"GIF89a...").unwrap();
    let mut patients = Vec::new();
    for (i, (name, email, dob, phone, address)) in people[..2].iter().enumerate() {
        let (key, pk) = keygen(d, &format!("patient{i}"));
        let mut register = Command::new(BIN);
        register
            .args(["ehr", "patient", "register", "--node", n(i), "--key-file"])
            .arg(&key)
            .args([
                "--name",
                name,
                "--email",
                email,
                "--date-of-birth",
                dob,
                "--gender",
                "F",
            ])
            .args([
                "--blood-group",
                "AB-",
                "--height-cm",
                "171",
                "--contact",
                phone,
                "--address",
                address,
            ]);
        if i == 1 {
            register.args(["--photo", "face.jpg"]);
        }
        let out = register.current_dir(d).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        patients.push((key, pk));
    }
    // A photo that is not a PNG or JPEG is refused before anything is sent.
    let (odd, _) = keygen(d, "odd");
    let out = Command::new(BIN)
        .args(["ehr", "patient", "register", "--node", n(0), "--name", "X"])
        .args(["--photo", "not-a-photo.png", "--key-file"])
        .arg(&odd)
        .current_dir(d)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("neither a PNG nor a JPEG"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The third registers in the portal: the profile and its photo are encrypted in the
    // browser (its own AES-GCM chunks, BLAKE3 address and key wrap), and the CLI reads it back.
    let web = browser::Browser::start();
    web.goto(&format!("{}/portal/#account", n(2)));
    portal_hashes_match_rust(&web);
    let (name, email, dob, phone, address) = people[2];
    let (web_key, web_pk) = keygen(d, "patient-web");
    web.fill("#account-file", web_key.to_str().unwrap());
    web.wait_text("#account-role", "not registered");
    web.fill("#pr-name", name);
    web.fill("#pr-email", email);
    web.eval(
        "document.querySelector('#pr-dob').value = arguments[0]; document.querySelector('#pr-blood').value = 'O-';",
        serde_json::json!([dob]),
    );
    web.fill("#pr-gender", "M");
    web.fill("#pr-height", "183");
    web.fill("#pr-contact", phone);
    web.fill("#pr-address", address);
    web.fill("#pr-photo", d.join("face.png").to_str().unwrap());
    web.click("#patient-register-form button");
    web.wait_text("#account-status", "Registered as a patient");
    web.wait_text("#account-role", "patient");
    web.click("#profile-show");
    let shown = web.wait_text("#account-profile", name);
    assert!(
        shown.contains(address) && shown.contains("O-") && shown.contains("183 cm"),
        "{shown}"
    );
    let src = web.eval(
        "return document.querySelector('#profile-photo').getAttribute('src');",
        serde_json::json!([]),
    );
    let want_src = {
        use base64::Engine;
        format!(
            "data:image/png;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(&png)
        )
    };
    assert!(
        src == want_src.as_str(),
        "the photo shown is the one registered"
    );
    // Another key opened on the same page does not see the first one's profile.
    let (other, _) = keygen(d, "other-web");
    web.fill("#account-file", other.to_str().unwrap());
    web.wait_text("#account-role", "not registered");
    let left = web.eval(
        "return document.querySelector('#account-profile').textContent;",
        serde_json::json!([]),
    );
    assert_eq!(left, "", "a previous key's profile is cleared");
    patients.push((web_key, web_pk));
    // The patient reads its own profile back; the hospital cannot until granted and shared.
    let profile = |reader: &Path, patient: &str, node: &str| {
        Command::new(BIN)
            .args([
                "ehr",
                "patient",
                "profile",
                patient,
                "--node",
                node,
                "--key-file",
            ])
            .arg(reader)
            .output()
            .unwrap()
    };
    // A key nobody registered stores nothing: not a small blob by address, not a streamed one.
    let (nobody, _) = keygen(d, "nobody");
    let junk = vec![7u8; 1000];
    let address = blake3::hash(&junk).to_hex().to_string();
    let (code, body) = signed(
        n(0),
        &nobody,
        "PUT",
        &format!("/api/v1/ehr/blobs/{address}"),
        junk.clone(),
    );
    assert_eq!(code, 403, "{body}");
    let (code, body) = signed(n(0), &nobody, "POST", "/api/v1/ehr/blobs", junk);
    assert_eq!(code, 403, "{body}");
    // A patient's own anchored profile is stored only up to 1 MiB.
    let (big, _) = keygen(d, "big-profile");
    let huge = vec![5u8; (1 << 20) + 1];
    let address = blake3::hash(&huge).to_hex().to_string();
    assert!(tx(
        n(0),
        &big,
        &format!(
            r#"{{"RegisterPatient":{{"profile_commitment":"{address}","profile_blob":"{address}"}}}}"#
        )
    ));
    let (code, body) = signed(
        n(0),
        &big,
        "PUT",
        &format!("/api/v1/ehr/blobs/{address}"),
        huge,
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("maximum (1048576 bytes)"), "{body}");
    let o = profile(&patients[0].0, &patients[0].1, n(3));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains(people[0].0));
    // Each photo comes back as it went in, whether the CLI or the browser encrypted it.
    for (i, want) in [(1, &jpeg), (2, &png)] {
        let out = d.join(format!("photo-{i}"));
        let o = Command::new(BIN)
            .args(["ehr", "patient", "profile", &patients[i].1, "--node", n(3)])
            .arg("--photo-out")
            .arg(&out)
            .arg("--key-file")
            .arg(&patients[i].0)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["name"], people[i].0, "{v}");
        assert_eq!(v["email"], people[i].1, "{v}");
        assert_eq!(v["date_of_birth"], people[i].2, "{v}");
        assert_eq!(&std::fs::read(&out).unwrap(), want, "photo {i}");
    }
    let o = profile(&patients[1].0, &patients[1].1, n(0));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("image/jpeg, 40004 bytes"), "{text}");
    assert!(
        !profile(&hosp, &patients[0].1, n(3)).status.success(),
        "no grant"
    );
    assert!(tx(
        n(1),
        &patients[0].0,
        &format!(
            r#"{{"Grant":{{"grantee":"{hosp_key}","scopes":["Profile"],"write":false,"expires_ms":4102444800000}}}}"#
        )
    ));
    let share = Command::new(BIN)
        .args([
            "ehr",
            "patient",
            "share",
            "--with",
            &hosp_key,
            "--node",
            n(1),
            "--key-file",
        ])
        .arg(&patients[0].0)
        .output()
        .unwrap();
    assert!(
        share.status.success(),
        "{}",
        String::from_utf8_lossy(&share.stderr)
    );
    let o = profile(&hosp, &patients[0].1, n(2));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        text.contains(people[0].1) && text.contains(people[0].4),
        "{text}"
    );
    assert!(
        !profile(&hosp, &patients[1].1, n(2)).status.success(),
        "another patient"
    );

    // A case with its contents: refused without a write grant on cases, recorded encrypted
    // with one, read back by the patient and the hospital through other nodes.
    let problem = "Recurrent syncope after Xylocaine-Ferrand trial";
    let title = "Syncope, first visit";
    let record = |node: &str, systolic: &str| {
        Command::new(BIN)
            .args([
                "ehr",
                "case",
                "record",
                "--patient",
                &patients[0].1,
                "--title",
                title,
            ])
            .args([
                "--problem",
                problem,
                "--systolic",
                systolic,
                "--diastolic",
                "87",
            ])
            .args([
                "--glucose",
                "6.8",
                "--notes",
                "refer to cardiology",
                "--node",
                node,
            ])
            .arg("--key-file")
            .arg(&hosp)
            .output()
            .unwrap()
    };
    let o = record(n(0), "142");
    assert!(!o.status.success(), "only a read grant on the profile");
    assert!(tx(
        n(1),
        &patients[0].0,
        &format!(
            r#"{{"Grant":{{"grantee":"{hosp_key}","scopes":["Profile","Cases"],"write":true,"expires_ms":4102444800000}}}}"#
        )
    ));
    let o = record(n(0), "1420");
    assert!(!o.status.success(), "a systolic pressure of 1420 is a typo");
    assert!(String::from_utf8_lossy(&o.stderr).contains("--systolic"));
    let o = record(n(0), "142");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let recorded: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let case_id = recorded["case"].as_str().unwrap().to_owned();
    assert!(
        medchain_ehr::records::is_opaque(&case_id),
        "a random id, not the title: {recorded}"
    );
    let case = |reader: &Path, node: &str| {
        Command::new(BIN)
            .args(["ehr", "case", "get", &case_id, "--patient", &patients[0].1])
            .args(["--node", node, "--key-file"])
            .arg(reader)
            .output()
            .unwrap()
    };
    for (reader, node) in [(&patients[0].0, n(2)), (&hosp, n(3))] {
        let o = case(reader, node);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["problem"], problem);
        assert_eq!(v["title"], title);
        assert_eq!(v["systolic_mmhg"], 142);
        assert_eq!(v["glucose_mmol_l"], 6.8);
    }
    assert!(
        !case(&patients[1].0, n(1)).status.success(),
        "another patient cannot read it"
    );
    let audit_q = format!(r#"{{"Audit":"{}"}}"#, patients[0].1);
    let audit = query_as(n(0), &audit_q, &patients[0].0);
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["reader"] == hosp_key.as_str()
                && e["object"] == format!("case/{case_id}").as_str()),
        "{audit}"
    );

    // Free text: a purpose sent by the CLI and one sent by the portal, and a break-glass
    // reason, each sealed for the patient; it reads them, and no node holds them in clear.
    let purpose = "Suspected Quillfeather-Marchetti syndrome";
    let portal_purpose = "Portal follow-up for Ostrander-Vey panel";
    let reason = "Anaphylaxis after Vantablack-Orinoco sting";
    let o = Command::new(BIN)
        .args([
            "ehr",
            "request",
            "--patient",
            &patients[1].1,
            "--purpose",
            purpose,
        ])
        .args(["--scope", "cases", "--node", n(1), "--key-file"])
        .arg(&hosp)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    web.goto(&format!("{}/portal/#account", n(3)));
    web.fill("#account-file", hosp.to_str().unwrap());
    web.wait_text("#account-role", "hospital (approved)");
    web.fill("#request-patient", &patients[2].1);
    web.fill("#request-purpose", portal_purpose);
    web.click("#request-form button");
    web.wait_text("#account-status", "Request sent");
    web.fill("#account-file", patients[2].0.to_str().unwrap());
    web.wait_text("#account-requests", portal_purpose);
    let requests = query_as(
        n(2),
        &format!(r#"{{"Requests":"{}"}}"#, patients[2].1),
        &patients[2].0,
    );
    assert_eq!(
        requests[0]["purpose"], portal_purpose,
        "sealed in the browser, opened by the CLI"
    );
    let (doctor, doctor_key) = keygen(d, "doctor");
    assert!(tx(
        n(0),
        &hosp,
        &format!(
            r#"{{"RegisterDoctor":{{"doctor":"{doctor_key}","profile_commitment":"{}"}}}}"#,
            "22".repeat(32)
        )
    ));
    let o = Command::new(BIN)
        .args([
            "ehr",
            "break-glass",
            "--patient",
            &patients[1].1,
            "--reason",
            reason,
        ])
        .args(["--node", n(2), "--key-file"])
        .arg(&doctor)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let log = query_as(
        n(3),
        &format!(r#"{{"Audit":"{}"}}"#, patients[1].1),
        &patients[1].0,
    );
    assert!(
        log.as_array()
            .unwrap()
            .iter()
            .any(|e| e["flagged"] == true && e["note"] == reason),
        "{log}"
    );
    let requests = query_as(
        n(3),
        &format!(r#"{{"Requests":"{}"}}"#, patients[1].1),
        &patients[1].0,
    );
    assert_eq!(requests[0]["purpose"], purpose);
    // Anonymous callers, and signers who are not parties, are told nothing about people.
    let (stranger, _) = keygen(d, "stranger");
    for q in [
        format!(r#"{{"Grants":"{}"}}"#, patients[0].1),
        audit_q.clone(),
        format!(r#"{{"Requests":"{}"}}"#, patients[1].1),
        r#""Users""#.to_owned(),
    ] {
        let (code, body) = anonymous_query(n(0), &q);
        assert_eq!(code, 401, "{q}: {body}");
        let (code, body) = signed(
            n(0),
            &patients[1].0,
            "POST",
            "/api/v1/ehr/query",
            q.clone().into_bytes(),
        );
        let party = if q.contains(&patients[1].1) { 200 } else { 403 };
        assert_eq!(code, party, "{q}: {body}");
        let (code, _) = signed(
            n(0),
            &stranger,
            "POST",
            "/api/v1/ehr/query",
            q.clone().into_bytes(),
        );
        assert_eq!(code, 403, "{q}: a key with no role");
    }

    // The raw chain routes serve none of the app's transactions, receipts or state.
    let get = |path: &str| -> (u16, serde_json::Value) {
        tokio::runtime::Runtime::new().unwrap().block_on(async {
            let r = medchain_app::client::http_get(format!("{}{path}", n(1)))
                .await
                .unwrap();
            (r.status().as_u16(), r.json().await.unwrap_or_default())
        })
    };
    let (_, latest) = get("/api/v1/blocks/latest");
    let mut ehr_txs = 0;
    for h in 1..=latest["header"]["height"].as_u64().unwrap() {
        let (code, block) = get(&format!("/api/v1/blocks/{h}"));
        assert_eq!(code, 200);
        for (i, t) in block["txs"].as_array().unwrap().iter().enumerate() {
            if t["chaincode"] != "ehr" {
                continue;
            }
            ehr_txs += 1;
            assert_eq!(
                t,
                &serde_json::json!({"chaincode": "ehr", "redacted": true})
            );
            let hash = block["tx_hashes"][i].as_str().unwrap();
            let (code, one) = get(&format!("/api/v1/txs/{hash}"));
            assert_eq!(code, 200);
            assert_eq!(one["tx"]["redacted"], true, "{one}");
            assert!(
                one["receipt"].get("events").is_none() && one["proof"].is_object(),
                "{one}"
            );
        }
    }
    assert!(ehr_txs > 10, "{ehr_txs} ehr transactions seen");
    let (code, _) = get(&format!("/api/v1/state/ehr/patient%2F{}", patients[0].1));
    assert_eq!(code, 403, "the app's state");

    // Every byte of every node's directory: none of the personal data in clear.
    let mut files = Vec::new();
    let mut stack = vec![d.join("net")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    let ledger_files = files
        .iter()
        .filter(|p| p.to_string_lossy().contains("/ledger/"))
        .count();
    let vault_files = files
        .iter()
        .filter(|p| p.to_string_lossy().contains("/vault/"))
        .count();
    assert!(
        ledger_files >= 4 * 3 && vault_files >= 4,
        "{ledger_files} ledger files, {vault_files} vault files"
    );
    let mut scanned = 0u64;
    for f in &files {
        let bytes = std::fs::read(f).unwrap_or_default();
        scanned += bytes.len() as u64;
        for (name, email, dob, phone, address) in &people {
            for needle in [
                name,
                email,
                dob,
                phone,
                address,
                &problem,
                &purpose,
                &portal_purpose,
                &reason,
            ] {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                    "{needle:?} found in clear in {}",
                    f.display()
                );
            }
        }
        // A photo would leak raw (a copied file) or as base64 (a profile in clear): a window
        // of each form, the base64 one cut at a 3-byte boundary so it encodes the same way
        // inside the whole photo's encoding.
        for photo in [&jpeg, &png] {
            use base64::Engine;
            let b64 = base64::engine::general_purpose::STANDARD.encode(&photo[999..1062]);
            for needle in [&photo[1000..1064], b64.as_bytes()] {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle),
                    "a photo found in clear in {}",
                    f.display()
                );
            }
        }
    }
    eprintln!(
        "scanned {} files ({scanned} bytes): no personal data in clear",
        files.len()
    );
}

/// The portal's own SHA-256 (fed in uneven pieces) and BLAKE3 give what the Rust crates the
/// node uses give, at lengths around their block, chunk and tree boundaries.
fn portal_hashes_match_rust(web: &browser::Browser) {
    let lens = [
        0usize, 1, 55, 56, 63, 64, 65, 1023, 1024, 1025, 2048, 2049, 3073, 4096, 9000, 65_553,
        300_001,
    ];
    let got = web.eval(
        "const hex = (x) => [...x].map((v) => v.toString(16).padStart(2, '0')).join('');
         return arguments[0].map((n) => {
           const b = new Uint8Array(n);
           for (let i = 0; i < n; i++) b[i] = (i * 31 + 7) & 255;
           const sha = new Sha256();
           for (let at = 0, step = 1; at < n; at += step, step = step * 3 + 1) sha.update(b.subarray(at, at + step));
           return [hex(sha.digest()), hex(blake3(b))];
         });",
        serde_json::json!([lens]),
    );
    for (i, n) in lens.iter().enumerate() {
        use sha2::Digest;
        let b: Vec<u8> = (0..*n).map(|i| (i * 31 + 7) as u8).collect();
        assert_eq!(
            got[i][0],
            hex::encode(sha2::Sha256::digest(&b)).as_str(),
            "SHA-256 of {n} bytes"
        );
        assert_eq!(
            got[i][1],
            blake3::hash(&b).to_hex().as_str(),
            "BLAKE3 of {n} bytes"
        );
    }
}
