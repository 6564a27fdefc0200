//! A client of a node's HTTP API, for CLI commands (the node's and the apps'): status, chain id,
//! transaction submission with or without waiting for the commits, and signed requests; over
//! http:// or https://, trusting the system's roots or the CA certificates of `--ca-file`.

use anyhow::{bail, Context, Result};
use medchain_types::{codec, PublicKey, Receipt, SecretKey, Transaction};
use rand::RngCore;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The CA certificates this process trusts for https:// nodes instead of the system's roots
/// (`--ca-file`), once set.
static CA_FILE: OnceLock<PathBuf> = OnceLock::new();

/// Trusts only the CA certificates in `path` (PEM) for https:// nodes, for the rest of the
/// process (the `--ca-file` flag). Checked at once: a file without a certificate is an error.
pub fn set_ca_file(path: &Path) -> Result<()> {
    ca_certificates(path)?;
    CA_FILE
        .set(path.to_owned())
        .map_err(|_| anyhow::anyhow!("--ca-file is given once"))
}

/// The certificates of a PEM file.
fn ca_certificates(path: &Path) -> Result<Vec<reqwest::Certificate>> {
    let pem = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .with_context(|| format!("{} is not a PEM certificate bundle", path.display()))?;
    if certs.is_empty() {
        bail!("{} holds no certificate", path.display());
    }
    Ok(certs)
}

/// Makes ring the process's TLS provider (reqwest is built without one; so is the transport).
pub fn install_tls_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // An error means one is installed already, which is all that is needed.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// An HTTP client builder for https:// as well as http:// URLs: trusting the CA certificates of
/// `ca_file`, else those of the process's `--ca-file`, else the system's roots.
pub fn http_builder(ca_file: Option<&Path>) -> Result<reqwest::ClientBuilder> {
    install_tls_provider();
    let builder = reqwest::Client::builder();
    Ok(match ca_file.or(CA_FILE.get().map(PathBuf::as_path)) {
        Some(path) => builder.tls_certs_only(ca_certificates(path)?),
        None => builder,
    })
}

/// A transaction for `chaincode`, signed by `signer`, with a random nonce.
pub fn signed_tx(
    chain: &str,
    chaincode: &str,
    payload: Vec<u8>,
    signer: &SecretKey,
) -> Transaction {
    Transaction::signed(
        chain,
        chaincode,
        payload,
        rand::rngs::OsRng.next_u64(),
        signer,
    )
}

/// The message of an error answer (`{"error": ...}`), or the whole body if it has none.
pub fn error_text(v: &Value) -> String {
    v["error"]
        .as_str()
        .map_or_else(|| v.to_string(), str::to_owned)
}

/// `GET url` with a client of [`http_builder`] (for tests and one-off reads).
pub async fn http_get(url: impl reqwest::IntoUrl) -> reqwest::Result<reqwest::Response> {
    // A client builder fails only on a bad --ca-file, which `set_ca_file` refused already.
    let client = http_builder(None).unwrap_or_else(|_| reqwest::Client::builder());
    client.build()?.get(url).send().await
}

/// A node's API.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
    /// The node's key, learnt with the chain id (signed requests name the node they are for).
    node: Arc<OnceLock<PublicKey>>,
}

impl Client {
    /// A client of the node at `url` (e.g. `http://127.0.0.1:8001`).
    pub fn new(url: &str) -> Result<Client> {
        let base = url.trim_end_matches('/').to_owned();
        if !base.starts_with("http://") && !base.starts_with("https://") {
            bail!("--node must be an http:// or https:// URL, got {url:?}");
        }
        Ok(Client {
            base,
            http: http_builder(None)?
                .timeout(Duration::from_secs(120))
                .pool_max_idle_per_host(512)
                .build()?,
            node: Arc::default(),
        })
    }

    /// The node's base URL (without a trailing `/`).
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The HTTP client (for requests the methods here do not cover).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// `GET path`: the status and the JSON body (`null` if the body is not JSON).
    pub async fn get(&self, path: &str) -> Result<(reqwest::StatusCode, Value)> {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.base))?;
        let status = r.status();
        Ok((status, r.json().await.unwrap_or(Value::Null)))
    }

    /// `POST path` with a JSON body; the JSON answer, or an error naming the status and the
    /// node's message.
    pub async fn post_json(&self, path: &str, body: &impl serde::Serialize) -> Result<Value> {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.base))?;
        let code = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        if !code.is_success() {
            bail!("HTTP {code}: {}", error_text(&v));
        }
        Ok(v)
    }

    /// `GET /api/v1/status`.
    pub async fn status(&self) -> Result<Value> {
        let (code, v) = self.get("/api/v1/status").await?;
        if !code.is_success() {
            bail!("status: HTTP {code}: {v}");
        }
        Ok(v)
    }

    /// The chain id the node serves (and, remembered for signed requests, the node's key).
    pub async fn chain_id(&self) -> Result<String> {
        let status = self.status().await?;
        if let Ok(node) = serde_json::from_value(status["node_id"].clone()) {
            let _ = self.node.set(node);
        }
        Ok(status["chain_id"]
            .as_str()
            .context("status has no chain_id")?
            .to_owned())
    }

    /// POSTs `txs` canonical-encoded to `/api/v1/txs`, with `?wait=commit` if `wait`, asking
    /// for canonical-encoded receipts if `binary_receipts`.
    async fn post_txs(
        &self,
        txs: &[Transaction],
        wait: bool,
        binary_receipts: bool,
    ) -> Result<reqwest::Response> {
        let url = format!(
            "{}/api/v1/txs{}",
            self.base,
            if wait { "?wait=commit" } else { "" }
        );
        let mut request = self
            .http
            .post(url)
            .header("content-type", "application/octet-stream");
        if binary_receipts {
            request = request.header("accept", "application/octet-stream");
        }
        request
            .body(codec::encode(txs))
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.base))
    }

    /// Submits transactions in canonical encoding; with `wait`, returns when all are committed.
    pub async fn submit(
        &self,
        txs: &[Transaction],
        wait: bool,
    ) -> Result<(reqwest::StatusCode, Value)> {
        let r = self.post_txs(txs, wait, false).await?;
        let status = r.status();
        Ok((status, r.json().await.unwrap_or(Value::Null)))
    }

    /// Submits `txs` with `?wait=commit` and asks for the receipts canonical-encoded, one per
    /// transaction in order (`None` for one the node could not report). `Ok(Err(status))` when
    /// the node answers anything but 200 (not committed in time, refused, busy).
    pub async fn submit_for_receipts(
        &self,
        txs: &[Transaction],
    ) -> Result<std::result::Result<Vec<Option<Receipt>>, reqwest::StatusCode>> {
        let r = self.post_txs(txs, true, true).await?;
        let status = r.status();
        if status != reqwest::StatusCode::OK {
            return Ok(Err(status));
        }
        let body = r.bytes().await.context("reading the receipts")?;
        let receipts: Vec<Option<Receipt>> =
            codec::decode(&body).context("the receipts are not canonical-encoded")?;
        if receipts.len() != txs.len() {
            bail!("{} receipts for {} transactions", receipts.len(), txs.len());
        }
        Ok(Ok(receipts))
    }

    /// Submits one signed transaction and waits; fails unless its receipt is a success.
    pub async fn commit_one(&self, tx: Transaction) -> Result<Value> {
        let (code, v) = self.submit(&[tx], true).await?;
        if !code.is_success() {
            bail!("HTTP {code}: {}", error_text(&v));
        }
        let r = v["receipts"][0].clone();
        if r["status"] != "success" {
            bail!("the transaction failed: {}", r["status"]);
        }
        Ok(r)
    }

    /// A request signed with `key` (see [`crate::signed`]). Call after [`Client::chain_id`],
    /// which learns the node's key the signature names (without it the node refuses the
    /// signature).
    pub fn signed(
        &self,
        method: reqwest::Method,
        path: &str,
        key: &SecretKey,
        chain: &str,
    ) -> reqwest::RequestBuilder {
        self.signed_body(method, path, key, chain, None)
    }

    /// As [`Client::signed`], the signature also covering `body` (for routes whose signature
    /// covers their body; the caller sends that body).
    pub fn signed_body(
        &self,
        method: reqwest::Method,
        path: &str,
        key: &SecretKey,
        chain: &str,
        body: Option<&[u8]>,
    ) -> reqwest::RequestBuilder {
        let node = self.node.get().copied().unwrap_or(PublicKey([0; 32]));
        let headers = crate::signed::sign_headers(key, chain, &node, method.as_str(), path, body);
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req
    }
}
