//! Erasure always completes: a node that was down when a patient's `Erase` committed destroys its
//! copy of the blob and the wrapped keys once it is back and has caught up (its commit hook
//! reads the blocks it missed).

#[path = "../../../node/cli/tests/common/mod.rs"]
mod cluster;

mod common;

use cluster::Cluster;
use common::{cli, keygen};
use std::path::Path;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_down_at_the_erasure_shreds_its_copy_when_it_is_back() {
    let mut c = Cluster::start(4);
    c.wait("the nodes serve their APIs", 60, async |c: &Cluster| {
        let mut up = true;
        for i in 0..4 {
            up &= c.status(i).await.is_some();
        }
        up
    })
    .await;
    let d = c.dir.path().to_owned();
    let (n0, n1) = (c.apis[0].clone(), c.apis[1].clone());
    let admin = d.join("admin.json");
    let (hosp, hosp_key) = keygen(&d, "hospital");
    let (doctor, doctor_key) = keygen(&d, "doctor");
    let (pat, pat_key) = keygen(&d, "patient");
    let tx = |node: &str, key: &Path, op: String| {
        cli(&["ehr", "tx", &op, "--node", node], Some(key));
    };
    tx(&n0, &hosp, r#"{"RegisterHospital":{"name":"Shred Clinic","address":"1 Road","contact":"-","treatments":["Tests"]}}"#.into());
    tx(
        &n0,
        &admin,
        format!(r#"{{"ApproveHospital":{{"hospital":"{hosp_key}"}}}}"#),
    );
    tx(
        &n0,
        &hosp,
        format!(
            r#"{{"RegisterDoctor":{{"doctor":"{doctor_key}","profile_commitment":"{}"}}}}"#,
            "7".repeat(64)
        ),
    );
    tx(&n0, &pat, r#"{"RegisterPatient":{"profile_commitment":"0000000000000000000000000000000000000000000000000000000000000001","profile_blob":null}}"#.into());
    tx(
        &n0,
        &pat,
        format!(
            r#"{{"Grant":{{"grantee":"{hosp_key}","scopes":["Documents"],"write":true,"expires_ms":{}}}}}"#,
            4_000_000_000_000u64
        ),
    );
    let file = d.join("scan.bin");
    std::fs::write(&file, vec![7u8; 300_000]).unwrap();
    let upload = cli(
        &[
            "ehr",
            "doc",
            "upload",
            file.to_str().unwrap(),
            "--patient",
            &pat_key,
            "--node",
            &n0,
        ],
        Some(&doctor),
    );
    let upload: serde_json::Value = serde_json::from_str(&upload).unwrap();
    let blob = upload["blob"].as_str().unwrap().to_owned();
    let doc_id = upload["doc"].as_str().unwrap().to_owned();
    // The patient reads through node 1, which fetches the blob and the keys and keeps them.
    let out = d.join("back.bin");
    cli(
        &[
            "ehr",
            "doc",
            "get",
            &doc_id,
            "--out",
            out.to_str().unwrap(),
            "--node",
            &n1,
        ],
        Some(&pat),
    );
    let copy = c.node_dir(1).join("data/vault").join(&blob);
    let keys = c.node_dir(1).join(format!("data/vault-keys/{doc_id}.json"));
    assert!(copy.exists() && keys.exists(), "node 1 holds a copy");

    // Node 1 is down while the erasure commits.
    c.kill9(1);
    tx(&n0, &pat, format!(r#"{{"Erase":{{"doc_id":"{doc_id}"}}}}"#));
    let original = c.node_dir(0).join("data/vault").join(&blob);
    let deadline = Instant::now() + Duration::from_secs(20);
    while original.exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!original.exists(), "node 0 shredded its copy");
    assert!(copy.exists(), "node 1, down, still has its copy");

    // Back, it catches up and shreds.
    c.spawn(1);
    let deadline = Instant::now() + Duration::from_secs(60);
    while (copy.exists() || keys.exists()) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!copy.exists(), "node 1 shredded its copy after catching up");
    assert!(!keys.exists(), "and the wrapped keys");
    assert!(
        c.node_dir(1).join("data/vault-erased").join(&blob).exists(),
        "and marked the blob erased"
    );
}
