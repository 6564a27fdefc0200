//! The key ceremony end to end, as four hospitals run it: each makes its key in a directory of
//! its own, a coordinator builds genesis from their public keys and addresses alone (peers by
//! DNS name), every node starts from it and reports the same genesis hash, they commit, and no
//! private key is anywhere but in its own member's directory. Also the operations side of a
//! member's node: readiness, JSON logs, one process per data directory, and the API, the CLI and
//! the portal over https.

#[path = "../../../apps/ehr/tests/browser/mod.rs"]
mod browser;
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

async fn reqwest_text(url: &str) -> String {
    medchain_app::client::http_get(url)
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn get(url: &str) -> Option<(u16, Value)> {
    let r = medchain_app::client::http_builder(None)
        .unwrap()
        .build()
        .unwrap()
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
    // The alert rules in deploy/monitoring name metrics a node exports.
    let metrics = reqwest_text(&url(0, "/metrics")).await;
    let rules = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/monitoring/alerts.yml"),
    )
    .unwrap();
    let named: std::collections::BTreeSet<&str> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("medchain_"))
        .collect();
    assert!(named.len() >= 6, "{named:?}");
    for name in named {
        assert!(
            metrics.lines().any(|l| l.starts_with(name)),
            "deploy/monitoring/alerts.yml names {name}, which /metrics lacks"
        );
    }
    assert!(metrics.contains("\nmedchain_ready 1"), "{metrics}");
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

/// A consortium's own certificate authority and a certificate for 127.0.0.1 signed by it, as
/// PEM files in `dir`: (CA certificate, server certificate, server key, the server key's SPKI
/// SHA-256 in base64 for Chromium).
fn tls_files(dir: &Path) -> (PathBuf, PathBuf, PathBuf, String) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, PublicKeyData,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "consortium test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("api.pem"),
        dir.join("api-key.pem"),
    );
    std::fs::write(&paths.0, ca_cert.pem()).unwrap();
    std::fs::write(&paths.1, server.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    let spki = {
        use base64::Engine;
        use sha2::Digest;
        base64::engine::general_purpose::STANDARD
            .encode(sha2::Sha256::digest(key.subject_public_key_info()))
    };
    (paths.0, paths.1, paths.2, spki)
}

/// The client API over https: the CLI trusts the consortium's CA with `--ca-file` and refuses
/// the node without it; plain http to the TLS port gets nothing; the portal works in Chromium
/// over https (a secure context: WebCrypto hashes a file there).
#[test]
fn the_api_the_cli_and_the_portal_over_https() {
    let root = tempfile::tempdir().unwrap();
    let d = root.path();
    let (p2p, api) = free_ports(1);
    ok(medchain(
        d,
        &[
            "testnet",
            "--nodes",
            "1",
            "--out",
            "net",
            "--p2p-port",
            &p2p.to_string(),
            "--api-port",
            &api.to_string(),
        ],
    ));
    let (ca, cert, key, spki) = tls_files(d);
    let log = std::fs::File::create(d.join("node.log")).unwrap();
    let node = Nodes(vec![Command::new(BIN)
        .args(["node", "--config"])
        .arg(d.join("net/node0/node.toml"))
        .env("MEDCHAIN__API__TLS_CERT", &cert)
        .env("MEDCHAIN__API__TLS_KEY", &key)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()]);
    let https = format!("https://127.0.0.1:{api}");
    let status = |extra: &[&str]| {
        let mut args = vec!["status", "--node", https.as_str()];
        args.extend_from_slice(extra);
        medchain(d, &args)
    };
    let ca_arg = ca.to_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !status(&["--ca-file", ca_arg]).status.success() {
        assert!(Instant::now() < deadline, "the https API never answered");
        std::thread::sleep(Duration::from_millis(200));
    }
    let v: Value = serde_json::from_str(&ok(status(&["--ca-file", ca_arg]))).unwrap();
    assert_eq!(v["engine"], "pbft");
    let untrusted = status(&[]);
    assert!(
        !untrusted.status.success(),
        "the system's roots do not know this CA"
    );
    ok(medchain(
        d,
        &["probe", &format!("{https}/readyz"), "--ca-file", ca_arg],
    ));
    let plain = medchain(d, &["probe", &format!("http://127.0.0.1:{api}/healthz")]);
    assert!(!plain.status.success(), "plain http to the TLS port");
    ok(medchain(
        d,
        &[
            "kv",
            "put",
            "over",
            "tls",
            "--node",
            &https,
            "--ca-file",
            ca_arg,
            "--key-file",
            "net/client.json",
        ],
    ));

    // The portal, in Chromium, trusting the API's key as an operator's CA would be trusted.
    let spki_arg = format!("--ignore-certificate-errors-spki-list={spki}");
    let web = browser::Browser::start_with(&[spki_arg.as_str()]);
    web.goto(&format!("{https}/portal/#verify"));
    let secure = web.eval(
        "return [window.isSecureContext, typeof crypto.subtle, location.protocol];",
        serde_json::json!([]),
    );
    assert_eq!(secure, serde_json::json!([true, "object", "https:"]));
    let file = d.join("letter.txt");
    std::fs::write(&file, b"a letter no chain knows").unwrap();
    web.fill("#verify-file", file.to_str().unwrap());
    web.click("#verify-form button");
    web.wait_text("#verify-result", "Unknown");
    node.stop();
}
