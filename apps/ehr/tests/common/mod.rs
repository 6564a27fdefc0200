//! What the health-record app's end-to-end tests share: a 4-node consortium started with
//! `medchain up` (stopped when dropped), keys, `ehr` transactions and queries through the CLI,
//! signed HTTP requests, verification.

// Each test binary uses part of this.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_medchain");

/// The tests of this file start a consortium each: one at a time on two cores.
pub static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub struct Up {
    pub child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub apis: Vec<String>,
}

impl Drop for Up {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn free_base() -> (u16, u16) {
    let seed = std::process::id() as u64 * 7919
        + std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos() as u64;
    for attempt in 0..200u64 {
        // Below Linux's ephemeral range, as in `cluster.rs`'s `free_ports`.
        let p2p = 10_000 + ((seed + attempt * 977) % 10_000) as u16;
        let api = p2p + 10_000;
        if (0..4).all(|i| {
            std::net::UdpSocket::bind(("127.0.0.1", p2p + i)).is_ok()
                && std::net::TcpListener::bind(("127.0.0.1", api + i)).is_ok()
        }) {
            return (p2p, api);
        }
    }
    panic!("no free ports")
}

pub fn up() -> Up {
    let dir = tempfile::tempdir().unwrap();
    let (p2p, api) = free_base();
    let child = Command::new(BIN)
        .args(["up", "--nodes", "4", "--dir"])
        .arg(dir.path().join("net"))
        .args([
            "--p2p-port",
            &p2p.to_string(),
            "--api-port",
            &api.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let u = Up {
        child: Some(child),
        dir,
        apis: (0..4)
            .map(|i| format!("http://127.0.0.1:{}", api + i))
            .collect(),
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let ready = u.apis.iter().all(|a| {
            Command::new(BIN)
                .args(["status", "--node", a])
                .output()
                .is_ok_and(|o| o.status.success())
        });
        if ready {
            return u;
        }
        assert!(Instant::now() < deadline, "the consortium did not come up");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Runs `medchain ARGS [--key-file KEY]`; its standard output (a failure fails the test).
pub fn cli(args: &[&str], key: Option<&Path>) -> String {
    let mut c = Command::new(BIN);
    c.args(args);
    if let Some(k) = key {
        c.arg("--key-file").arg(k);
    }
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// [`cli`] signing with `key`.
pub fn cli_as(args: &[&str], key: &Path) -> String {
    cli(args, Some(key))
}

pub fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let path = dir.join(format!("{name}.json"));
    let out = Command::new(BIN)
        .arg("keygen")
        .arg("--out")
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success());
    (
        path,
        String::from_utf8(out.stdout).unwrap().trim().to_owned(),
    )
}

pub fn pubkey(path: &Path) -> String {
    let out = Command::new(BIN)
        .arg("pubkey")
        .arg("--key")
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Runs `medchain ehr tx`; returns whether it succeeded (committed with success).
pub fn tx(node: &str, key: &Path, op: &str) -> bool {
    let out = Command::new(BIN)
        .args(["ehr", "tx", op, "--node", node, "--key-file"])
        .arg(key)
        .output()
        .unwrap();
    out.status.success()
}

/// Runs `medchain ehr query` anonymously (the public queries).
pub fn query(node: &str, q: &str) -> serde_json::Value {
    let out = Command::new(BIN)
        .args(["ehr", "query", q, "--node", node])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Runs `medchain ehr query` signed with `key` (sealed notes it can open come opened).
pub fn query_as(node: &str, q: &str, key: &Path) -> serde_json::Value {
    let out = Command::new(BIN)
        .args(["ehr", "query", q, "--node", node, "--key-file"])
        .arg(key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `POST /api/v1/ehr/query` without a signature: the status and the body.
pub fn anonymous_query(node: &str, q: &str) -> (u16, String) {
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let r = medchain_app::client::http_builder(None)
            .unwrap()
            .build()
            .unwrap()
            .post(format!("{node}/api/v1/ehr/query"))
            .header("content-type", "application/json")
            .body(q.to_owned())
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    })
}

/// A key file's key, and the chain and node (from the node's status) its requests are for.
pub struct RequestSigner {
    key: medchain_types::SecretKey,
    chain: String,
    target: String,
}

impl RequestSigner {
    pub fn new(node: &str, key_file: &Path) -> RequestSigner {
        let kf: serde_json::Value =
            serde_json::from_slice(&std::fs::read(key_file).unwrap()).unwrap();
        let seed: [u8; 32] = hex::decode(kf["secret_key"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let status: serde_json::Value = tokio::runtime::Runtime::new().unwrap().block_on(async {
            medchain_app::client::http_get(format!("{node}/api/v1/status"))
                .await
                .unwrap()
                .json()
                .await
                .unwrap()
        });
        RequestSigner {
            key: medchain_types::SecretKey::from_seed(seed),
            chain: status["chain_id"].as_str().unwrap().to_owned(),
            target: status["node_id"].as_str().unwrap().to_owned(),
        }
    }

    /// `method url`, signed over `path` (what the node sees after decoding), `created`,
    /// `nonce`, this signer's node and `body_sha256` (hex, or empty: see `request_bytes`).
    #[allow(clippy::too_many_arguments)]
    pub fn request(
        &self,
        http: &reqwest::Client,
        method: &str,
        url: String,
        path: &str,
        created: u64,
        nonce: &str,
        body_sha256: &str,
    ) -> reqwest::RequestBuilder {
        let target = &self.target;
        let sig = self.key.sign(
            medchain_types::Domain("http-request"),
            &self.chain,
            format!("{method}\n{path}\n{created}\n{nonce}\n{target}\n{body_sha256}").as_bytes(),
        );
        http.request(method.parse().unwrap(), url)
            .header("x-medchain-key", self.key.public().to_hex())
            .header("x-medchain-created", created.to_string())
            .header("x-medchain-nonce", nonce.to_owned())
            .header("x-medchain-signature", sig.to_hex())
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

pub fn signed(
    node: &str,
    key_file: &Path,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> (u16, String) {
    signed_as(node, key_file, method, path, path, body)
}

/// Like `signed`, with the signature over `signed_path` (what the node sees after decoding).
pub fn signed_as(
    node: &str,
    key_file: &Path,
    method: &str,
    url_path: &str,
    path: &str,
    body: Vec<u8>,
) -> (u16, String) {
    let signer = RequestSigner::new(node, key_file);
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let http = medchain_app::client::http_builder(None)
            .unwrap()
            .build()
            .unwrap();
        let nonce = hex::encode(rand::random::<[u8; 16]>());
        // The wrapped-key routes' signatures cover their body; blobs are bound by address.
        let body_sha256 = if path.ends_with("/keys") || path == "/api/v1/ehr/query" {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(&body))
        } else {
            String::new()
        };
        let r = signer
            .request(
                &http,
                method,
                format!("{node}{url_path}"),
                path,
                now_ms(),
                &nonce,
                &body_sha256,
            )
            .body(body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    })
}

/// A key that has no role anywhere.
pub fn doc2_placeholder(d: &Path) -> PathBuf {
    keygen(d, "nobody").0
}

pub fn verify(node: &str, file: &Path, doc: Option<&str>) -> (bool, serde_json::Value) {
    let mut c = Command::new(BIN);
    c.args(["ehr", "doc", "verify"])
        .arg(file)
        .args(["--node", node]);
    if let Some(d) = doc {
        c.args(["--doc", d]);
    }
    let out = c.output().unwrap();
    (
        out.status.success(),
        serde_json::from_slice(&out.stdout).unwrap(),
    )
}

/// The public key of a share link's secret.
pub fn v_holder(link: &str) -> String {
    let seed: [u8; 32] = hex::decode(&link[link.len() - 64..])
        .unwrap()
        .try_into()
        .unwrap();
    medchain_types::SecretKey::from_seed(seed).public().to_hex()
}

/// The opaque id (32 hex characters, as the CLI makes them) that a test calls `name`.
pub fn opaque(name: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(name.as_bytes())[..16])
}

/// `GET url` as JSON.
pub fn get_json(url: &str) -> serde_json::Value {
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        medchain_app::client::http_get(url)
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    })
}
