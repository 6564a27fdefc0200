//! Data of an earlier release: a one-node PBFT consortium (`fixtures/ledger-v1-pbft`) whose
//! genesis, key files and ledger were written by the binary that ran the health-record app
//! inside the node (block 0 sealing the `[ehr]` section with the node's fields, three blocks:
//! a `kv` put, a hospital registered, the hospital approved). This build must derive the same
//! block 0, serve the same state through the apps, extend the chain, and verify it.

mod common;

use common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ledger-v1-pbft");
    let status = Command::new("cp")
        .arg("-r")
        .arg(src.join("."))
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    dir
}

fn medchain(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).output().unwrap()
}

#[test]
fn a_ledger_of_the_earlier_release_opens_serves_grows_and_verifies() {
    let dir = fixture();
    let ledger = dir.path().join("node0/data/ledger");
    let before = medchain(&["verify-chain", "--data", ledger.to_str().unwrap()]);
    assert!(
        before.status.success(),
        "{}",
        String::from_utf8_lossy(&before.stderr)
    );
    assert!(String::from_utf8_lossy(&before.stdout).contains("4 blocks, 3 transactions"));

    let (p2p, api) = free_ports(1);
    let node = Command::new(BIN)
        .args(["node", "--config"])
        .arg(dir.path().join("node0/node.toml"))
        .env("MEDCHAIN__API__LISTEN", format!("127.0.0.1:{api}"))
        .env("MEDCHAIN__NETWORK__LISTEN", format!("127.0.0.1:{p2p}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{api}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let o = medchain(&["status", "--node", &url]);
        if o.status.success() {
            break serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "the node did not start on the old data"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(status["height"], 3, "{status}");
    assert_eq!(status["chain_id"], "medchain-fixture");

    // The state, through both apps' routes and commands.
    let o = medchain(&["kv", "get", "hello", "--node", &url]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "world");
    let o = medchain(&[
        "ehr",
        "query",
        r#"{"Hospitals":{"search":"","pending":false}}"#,
        "--node",
        &url,
    ]);
    assert!(o.status.success());
    let hospitals: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(hospitals[0]["profile"]["name"], "St Mary", "{hospitals}");
    assert_eq!(hospitals[0]["approved"], true);

    // The chain grows.
    let client = dir.path().join("client.json");
    let o = medchain(&[
        "kv",
        "put",
        "again",
        "yes",
        "--node",
        &url,
        "--key-file",
        client.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = medchain(&["kv", "get", "again", "--node", &url]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "yes");
    nix_term(node);

    let after = medchain(&["verify-chain", "--data", ledger.to_str().unwrap()]);
    assert!(
        after.status.success(),
        "{}",
        String::from_utf8_lossy(&after.stderr)
    );
    assert!(
        String::from_utf8_lossy(&after.stdout).contains("5 blocks, 4 transactions"),
        "{}",
        String::from_utf8_lossy(&after.stdout)
    );
    // The hooks recorded how far they got, for the next start.
    let cursor = std::fs::read_to_string(dir.path().join("node0/data/app-hooks.height")).unwrap();
    assert_eq!(cursor.trim(), "4");
}
