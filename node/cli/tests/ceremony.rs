//! The key ceremony end to end, as four hospitals run it: each makes its key in a directory of
//! its own, a coordinator builds genesis from their public keys and addresses alone (peers by
//! DNS name), every node starts from it and reports the same genesis hash, they commit, and no
//! private key is anywhere but in its own member's directory. Also the operations side of a
//! member's node: readiness, JSON logs, and one process per data directory.

mod common;

use common::{free_ports, nix_term};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_medchain");

fn medchain(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// The nodes: stopped with SIGTERM (each must exit cleanly), or killed if the test fails first.
struct Nodes(Vec<Child>);

impl Nodes {
    fn stop(mut self) {
        for c in self.0.drain(..) {
            nix_term(c);
        }
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

async fn get(url: &str) -> Option<(u16, Value)> {
    let r = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    Some((r.status().as_u16(), r.json().await.ok()?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_members_build_genesis_from_public_keys_and_run_it() {
    let root = tempfile::tempdir().unwrap();
    let names = ["st-mary", "riverside", "hillside", "northgate"];
    let (p2p, api) = free_ports(4);
    // Each member, on its own machine: a key, of which only the public half leaves.
    let member = |n: &str| root.path().join(n);
    let mut pubkeys = Vec::new();
    for n in names {
        std::fs::create_dir(member(n)).unwrap();
        let out = ok(medchain(&member(n), &["keygen", "--out", "node.json"]));
        pubkeys.push(out.trim().to_owned());
    }
    let coordinator = root.path().join("coordinator");
    std::fs::create_dir(&coordinator).unwrap();
    let admin = ok(medchain(
        &member(names[0]),
        &["keygen", "--out", "admin.json"],
    ));
    // The coordinator: public data only.
    ok(medchain(
        &coordinator,
        &[
            "genesis",
            "new",
            "--chain-id",
            "ceremony",
            "--engine",
            "pbft",
        ],
    ));
    let refused = medchain(&coordinator, &["genesis", "hash"]);
    assert!(!refused.status.success(), "no validators yet");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("no validators"));
    for (i, n) in names.iter().enumerate() {
        let p2p = format!("localhost:{}", p2p + i as u16);
        let api = format!("http://127.0.0.1:{}", api + i as u16);
        ok(medchain(
            &coordinator,
            &[
                "genesis",
                "add-validator",
                "--pubkey",
                &pubkeys[i],
                "--p2p",
                &p2p,
                "--api",
                &api,
                "--name",
                n,
            ],
        ));
    }
    let again = medchain(
        &coordinator,
        &[
            "genesis",
            "add-validator",
            "--pubkey",
            &pubkeys[0],
            "--p2p",
            "x:1",
        ],
    );
    assert!(!again.status.success(), "a key once");
    ok(medchain(
        &coordinator,
        &["genesis", "add-admin", "--pubkey", admin.trim()],
    ));
    let hash = ok(medchain(&coordinator, &["genesis", "hash"]))
        .trim()
        .to_owned();
    let shown = ok(medchain(&coordinator, &["genesis", "show"]));
    assert!(
        shown.contains(&format!("# genesis hash: {hash}")),
        "{shown}"
    );
    let genesis = std::fs::read_to_string(coordinator.join("genesis.toml")).unwrap();

    // Each member gets the genesis file and starts its node.
    let mut nodes = Nodes(Vec::new());
    for (i, n) in names.iter().enumerate() {
        let dir = member(n);
        std::fs::write(dir.join("genesis.toml"), &genesis).unwrap();
        std::fs::write(
            dir.join("node.toml"),
            format!(
                "[node]\ndata_dir = \"data\"\nkey_file = \"node.json\"\ngenesis = \"genesis.toml\"\n\
                 [network]\nlisten = \"127.0.0.1:{}\"\n[api]\nlisten = \"127.0.0.1:{}\"\n\
                 [log]\nformat = \"json\"\n",
                p2p + i as u16,
                api + i as u16
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("node.log")).unwrap();
        nodes.0.push(
            Command::new(BIN)
                .args(["node", "--config"])
                .arg(dir.join("node.toml"))
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
    }
    let url = |i: usize, path: &str| format!("http://127.0.0.1:{}{path}", api + i as u16);
    // Every node ready (a quorum of peers reached by name), with the same genesis hash.
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in 0..4 {
        loop {
            if let Some((200, v)) = get(&url(i, "/readyz")).await {
                assert_eq!(v["state"], "ready");
                break;
            }
            assert!(Instant::now() < deadline, "node {i} never got ready");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let (_, status) = get(&url(i, "/api/v1/status")).await.unwrap();
        assert_eq!(status["genesis_hash"], hash.as_str(), "{status}");
    }
    // They commit.
    let client = root.path().join("client.json");
    ok(medchain(root.path(), &["keygen", "--out", path(&client)]));
    for i in 0..4 {
        ok(medchain(
            root.path(),
            &[
                "kv",
                "put",
                &format!("k{i}"),
                "v",
                "--node",
                &url(i, ""),
                "--key-file",
                path(&client),
            ],
        ));
    }
    // A second process on a member's data directory is refused at once.
    let second = medchain(&member(names[1]), &["node", "--config", "node.toml"]);
    assert!(!second.status.success());
    assert!(
        String::from_utf8_lossy(&second.stderr)
            .contains("another process is using the data directory"),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    // The logs are JSON lines, and name the genesis hash at start.
    let log = std::fs::read_to_string(member(names[2]).join("node.log")).unwrap();
    let started = log
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .find(|v| v["fields"]["message"] == "node started")
        .expect("a start line");
    assert_eq!(started["fields"]["genesis"], hash.as_str());
    // Two of four down: the others have no quorum, and say so.
    for mut gone in nodes.0.drain(2..) {
        gone.kill().unwrap();
        gone.wait().unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match get(&url(0, "/readyz")).await {
            Some((503, v)) if v["state"] == "connecting" => break,
            other => assert!(Instant::now() < deadline, "still {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    nodes.stop();

    // No private key but in its own member's directory.
    let secrets: Vec<(String, String)> = names
        .iter()
        .map(|n| {
            let key = member(n).join("node.json");
            let v: Value = serde_json::from_str(&std::fs::read_to_string(&key).unwrap()).unwrap();
            (
                n.to_string(),
                v["secret_key"]
                    .as_str()
                    .expect("a secret key field")
                    .to_owned(),
            )
        })
        .collect();
    assert!(!genesis.contains("secret"));
    assert!(secrets.iter().all(|(_, s)| s.len() == 64));
    for (owner, secret) in &secrets {
        for file in files(root.path()) {
            let mine = file.starts_with(member(owner));
            let bytes = std::fs::read(&file).unwrap();
            let found = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
            assert!(
                !found || mine,
                "{owner}'s private key in {}",
                file.display()
            );
        }
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Every file under `dir`.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}
