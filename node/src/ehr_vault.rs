//! The health-record vault behind the node's API: encrypted blobs and wrapped document keys,
//! with signed requests, access checks against the chain, audit-before-read, and erasure.
//!
//! | route | who | what |
//! |---|---|---|
//! | `PUT /api/v1/ehr/blobs/{blob}` | a registered doctor or hospital (signed request) | stores a ciphertext blob, streamed; refused unless its bytes hash (BLAKE3) to `{blob}` |
//! | `PUT /api/v1/ehr/docs/{id}/keys` | the document's issuer (signed) | the document key wrapped for each reader (JSON list of `WrappedKey`) |
//! | `GET /api/v1/ehr/docs/{id}/key` | a reader with access (signed) | that reader's wrapped key |
//! | `GET /api/v1/ehr/docs/{id}/blob` | a reader with access (signed) | the ciphertext, streamed |
//!
//! | `PUT /api/v1/ehr/profiles/{patient}/keys` | the patient (signed) | its profile key wrapped for itself and the hospitals it shares with |
//! | `GET /api/v1/ehr/profiles/{patient}/key`, `.../blob` | the patient, or a reader with a profile grant that logged the read (signed) | the reader's wrapped key; the encrypted profile |
//! | `GET /api/v1/ehr/vault-audit` | anyone (a verifier) | every anchored record re-hashed against its anchor: `intact`, `tampered`, `missing` (not on this node) or `erased` |
//! | `GET /api/v1/ehr/peer/blobs/{blob}` | another validator node (signed with its node key) | a blob, for a node that lacks it |
//! | `GET /api/v1/ehr/peer/keys/{id}` | another validator node | a document's wrapped keys |
//!
//! A node asked for a document it does not hold fetches the blob and the wrapped keys from the
//! other validators, checks the blob against its address (BLAKE3) as it arrives, keeps them, and
//! serves them: a document uploaded through one node can be read through any other.
//!
//! A reader other than the patient must first commit a `LogRead` of `doc/{id}` (within the
//! last 10 minutes): every read of personal data is on the chain before the data leaves the
//! node. An erased document answers 410 on every node: the runtime destroys the blob and the
//! wrapped keys when the `Erase` transaction commits (crypto-shredding).
//!
//! **Signed requests.** Headers `x-medchain-key` (the caller's ed25519 key, hex),
//! `x-medchain-created` (milliseconds since the Unix epoch), `x-medchain-nonce` (16 random
//! bytes, hex) and `x-medchain-signature` over `METHOD \n PATH \n created \n nonce \n NODE \n
//! BODY` (NODE: the key of the node the request is for, hex; BODY: the SHA-256 of the body, hex,
//! on the wrapped-key routes, empty elsewhere; domain `http-request`, the chain id).
//! Requests more than 5 minutes old or ahead, any nonce seen before, and requests for another
//! node are refused.

// Handlers refuse with a ready HTTP response; the error path is cold, so its size is fine.
#![allow(clippy::result_large_err)]

use crate::runtime::Shared;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use bytes::Bytes;
use medchain_ehr::chaincode::{AuditEvent, DocumentAnchor, NAME};
use medchain_ehr::{Ehr, EhrQuery, Vault, WrappedKey};
use medchain_types::{Domain, Hash, PublicKey, Signature};
use serde_json::json;
use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex, OnceLock};

/// Signature domain of signed HTTP requests.
pub const DOMAIN_REQUEST: Domain = Domain("http-request");
/// How far a signed request's time may be from the node's.
const REQUEST_SKEW_MS: u64 = 5 * 60 * 1000;
/// Nonces remembered (per node; older than the skew window are forgotten first).
const NONCES_MAX: usize = 100_000;
/// How recent the reader's `LogRead` must be.
const AUDIT_FRESH_MS: u64 = 10 * 60 * 1000;
/// Largest blob accepted from the consortium's staff.
const BLOB_MAX: u64 = 4 << 30;
/// Largest blob accepted from anyone else (an encrypted profile).
const PROFILE_BLOB_MAX: u64 = 1 << 20;

fn err(code: StatusCode, msg: impl Into<String>) -> Response {
    (code, Json(json!({ "error": msg.into() }))).into_response()
}

/// The routes (merged into the node's router; no body limit: blobs stream).
pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/api/v1/ehr/blobs", post(post_blob))
        .route("/api/v1/ehr/blobs/{blob}", put(put_blob))
        .route("/api/v1/ehr/docs/{id}/keys", put(put_keys))
        .route("/api/v1/ehr/docs/{id}/key", get(get_key))
        .route("/api/v1/ehr/docs/{id}/blob", get(get_blob))
        .route("/api/v1/ehr/vault-audit", get(vault_audit))
        .route("/api/v1/ehr/profiles/{patient}/keys", put(put_profile_keys))
        .route("/api/v1/ehr/profiles/{patient}/key", get(get_profile_key))
        .route("/api/v1/ehr/profiles/{patient}/blob", get(get_profile_blob))
        .route(
            "/api/v1/ehr/cases/{patient}/{case}/keys",
            put(put_case_keys),
        )
        .route("/api/v1/ehr/cases/{patient}/{case}/key", get(get_case_key))
        .route(
            "/api/v1/ehr/cases/{patient}/{case}/blob",
            get(get_case_blob),
        )
        .route("/api/v1/ehr/peer/blobs/{blob}", get(peer_blob))
        .route("/api/v1/ehr/peer/keys/{id}", get(peer_keys))
        .layer(axum::extract::DefaultBodyLimit::disable())
}

/// The node's vault.
pub fn vault(s: &Shared) -> Result<Vault, Response> {
    Vault::open(s.config.node.data_dir.join("vault"))
        .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

fn keys_path(s: &Shared, doc: &str) -> std::path::PathBuf {
    s.config
        .node
        .data_dir
        .join("vault-keys")
        .join(format!("{doc}.json"))
}

/// The bytes a request signature covers: the method, the path, the time, the nonce, the node
/// the request is for (its key, from `/api/v1/status`), so that a request captured on its way
/// to one node is refused by every other (each node remembers only its own nonces), and the
/// SHA-256 of the body (hex) for the routes whose body is a small JSON document (the wrapped
/// keys), empty otherwise (no body, or a streamed blob, which its address binds).
pub fn request_bytes(
    method: &str,
    path: &str,
    created: u64,
    nonce: &str,
    node: &PublicKey,
    body_sha256: &str,
) -> Vec<u8> {
    format!(
        "{method}\n{path}\n{created}\n{nonce}\n{}\n{body_sha256}",
        node.to_hex()
    )
    .into_bytes()
}

/// The body digest a signature covers (see [`request_bytes`]).
pub fn body_digest(body: &[u8]) -> String {
    medchain_types::sha256(body).to_hex()
}

/// Checks a signed request; returns the caller.
fn authenticate(
    s: &Shared,
    headers: &HeaderMap,
    method: &Method,
    path: &str,
) -> Result<PublicKey, Response> {
    authenticate_body(s, headers, method, path, None)
}

/// As [`authenticate`], for a route whose signature also covers its (small) body.
fn authenticate_body(
    s: &Shared,
    headers: &HeaderMap,
    method: &Method,
    path: &str,
    body: Option<&[u8]>,
) -> Result<PublicKey, Response> {
    let h = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| err(StatusCode::UNAUTHORIZED, format!("missing header {name}")))
    };
    let key: PublicKey = h("x-medchain-key")?
        .parse()
        .map_err(|_| err(StatusCode::UNAUTHORIZED, "x-medchain-key: not a key"))?;
    let created: u64 = h("x-medchain-created")?
        .parse()
        .map_err(|_| err(StatusCode::UNAUTHORIZED, "x-medchain-created: not a number"))?;
    let nonce = h("x-medchain-nonce")?;
    if nonce.len() != 32 || hex::decode(nonce).is_err() {
        return Err(err(
            StatusCode::UNAUTHORIZED,
            "x-medchain-nonce: 32 hex characters",
        ));
    }
    let sig: Signature = h("x-medchain-signature")?.parse().map_err(|_| {
        err(
            StatusCode::UNAUTHORIZED,
            "x-medchain-signature: not a signature",
        )
    })?;
    let now = crate::runtime::now_ms();
    if created.abs_diff(now) > REQUEST_SKEW_MS {
        return Err(err(
            StatusCode::UNAUTHORIZED,
            "stale request (more than 5 minutes from the node's clock)",
        ));
    }
    key.verify(
        DOMAIN_REQUEST,
        &s.genesis.chain_id,
        &request_bytes(
            method.as_str(),
            path,
            created,
            nonce,
            &s.me,
            &body.map(body_digest).unwrap_or_default(),
        ),
        &sig,
    )
    .map_err(|_| err(StatusCode::UNAUTHORIZED, "bad request signature"))?;
    static SEEN: OnceLock<Mutex<HashMap<(PublicKey, String), u64>>> = OnceLock::new();
    let mut seen = SEEN
        .get_or_init(Default::default)
        .lock()
        .expect("nonce lock");
    if seen.len() >= NONCES_MAX {
        seen.retain(|_, t| t.abs_diff(now) <= REQUEST_SKEW_MS);
        if seen.len() >= NONCES_MAX {
            return Err(err(
                StatusCode::TOO_MANY_REQUESTS,
                "too many signed requests; retry later",
            ));
        }
    }
    if seen.insert((key, nonce.to_owned()), created).is_some() {
        return Err(err(
            StatusCode::UNAUTHORIZED,
            "replayed request (nonce seen before)",
        ));
    }
    Ok(key)
}

fn ehr(s: &Shared) -> Ehr {
    Ehr::new(s.genesis.ehr.admins.iter().copied())
}

fn anchor(s: &Shared, id: &str) -> Result<DocumentAnchor, Response> {
    let v = s.ledger.view(NAME);
    let bytes = ehr(s)
        .query_json(&v, &EhrQuery::Document(id.to_owned()))
        .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let d: Option<DocumentAnchor> = serde_json::from_value(bytes)
        .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let d = d.ok_or_else(|| err(StatusCode::NOT_FOUND, format!("no document {id:?}")))?;
    if d.erased_ms.is_some() {
        return Err(err(
            StatusCode::GONE,
            format!("document {id} was erased at the patient's request"),
        ));
    }
    Ok(d)
}

/// The reader may read document `d` now, and (unless it is the patient) logged the read.
fn may_read(s: &Shared, reader: &PublicKey, d: &DocumentAnchor) -> Result<(), Response> {
    may_read_object(s, reader, &d.patient, &format!("doc/{}", d.doc_id))
}

/// A blocking reader over a request body (chunks arrive through a channel).
struct BodyReader {
    rx: tokio::sync::mpsc::Receiver<Result<Bytes, String>>,
    cur: Bytes,
    total: u64,
    limit: u64,
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let piece = std::io::BufRead::fill_buf(self)?;
        let n = buf.len().min(piece.len());
        buf[..n].copy_from_slice(&piece[..n]);
        std::io::BufRead::consume(self, n);
        Ok(n)
    }
}

/// The body's own pieces, lent without a copy.
impl std::io::BufRead for BodyReader {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                None => return Ok(&[]),
                Some(Ok(b)) => {
                    self.total += b.len() as u64;
                    if self.total > self.limit {
                        return Err(std::io::Error::other(format!(
                            "blob larger than this caller's maximum ({} bytes)",
                            self.limit
                        )));
                    }
                    self.cur = b;
                }
                Some(Err(e)) => return Err(std::io::Error::other(e)),
            }
        }
        Ok(&self.cur)
    }

    fn consume(&mut self, n: usize) {
        self.cur = self.cur.slice(n..);
    }
}

async fn put_blob(
    State(s): State<Arc<Shared>>,
    Path(blob): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let path = format!("/api/v1/ehr/blobs/{blob}");
    let caller = match authenticate(&s, &headers, &Method::PUT, &path) {
        Ok(k) => k,
        Err(r) => return r,
    };
    let Ok(blob) = blob.parse::<Hash>() else {
        return err(
            StatusCode::BAD_REQUEST,
            "the blob address is 64 hex characters",
        );
    };
    receive_blob(&s, &caller, Some(blob), body).await
}

/// `POST /api/v1/ehr/blobs`: a blob whose address the sender learns only at the end (it is
/// encrypted while it is sent); the node computes it, and answers it.
async fn post_blob(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Body) -> Response {
    let caller = match authenticate(&s, &headers, &Method::POST, "/api/v1/ehr/blobs") {
        Ok(k) => k,
        Err(r) => return r,
    };
    receive_blob(&s, &caller, None, body).await
}

/// Whether `caller` is consortium staff (an approved hospital or a doctor), who store blobs up
/// to [`BLOB_MAX`]; anyone else stores only its anchored profile, up to [`PROFILE_BLOB_MAX`].
fn is_staff(s: &Shared, caller: &PublicKey) -> bool {
    let view = s.ledger.view(NAME);
    ehr(s)
        .query_json(&view, &EhrQuery::Doctor(*caller))
        .is_ok_and(|v| !v.is_null())
        || ehr(s)
            .query_json(
                &view,
                &EhrQuery::Hospitals {
                    search: String::new(),
                    pending: false,
                },
            )
            .is_ok_and(|v| {
                v.as_array()
                    .is_some_and(|a| a.iter().any(|h| h["key"] == caller.to_hex()))
            })
}

/// Streams a request body into the vault: checked against `expected` when the address is
/// known, refused if it is an erased blob, durable before the answer.
async fn receive_blob(
    s: &Shared,
    caller: &PublicKey,
    expected: Option<Hash>,
    body: Body,
) -> Response {
    // Staff store documents and cases before anchoring them. Anyone else stores only its own
    // profile, small, and only once the chain anchors it (`RegisterPatient` first), so that
    // keys nobody registered cannot fill the disk.
    let limit = if is_staff(s, caller) {
        BLOB_MAX
    } else {
        let mine = format!("profile/{}", caller.to_hex());
        let anchored = expected.and_then(|b| {
            ehr(s)
                .query_json(&s.ledger.view(NAME), &EhrQuery::BlobRecord(b))
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
        });
        if anchored.as_deref() != Some(mine.as_str()) {
            return err(
                StatusCode::FORBIDDEN,
                "only staff store blobs before they are anchored: register the profile's address \
                 on the chain first (RegisterPatient), then upload it to /api/v1/ehr/blobs/{blob}",
            );
        }
        PROFILE_BLOB_MAX
    };
    let vault = match vault(s) {
        Ok(v) => v,
        Err(r) => return r,
    };
    if let Some(blob) = expected {
        if is_erased(s, &blob.to_hex()) {
            return err(
                StatusCode::GONE,
                "that blob was erased and is never stored again",
            );
        }
        if vault.contains(&blob) {
            return (
                StatusCode::OK,
                Json(json!({ "blob": blob, "stored": "already" })),
            )
                .into_response();
        }
    }
    let erased_dir = erased_dir(s);
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let writer = tokio::task::spawn_blocking(move || {
        let reader = BodyReader {
            rx,
            cur: Bytes::new(),
            total: 0,
            limit,
        };
        match expected {
            Some(blob) => vault.import(reader, &blob).map(|n| (blob, n)),
            None => vault.import_new(reader, |blob| {
                if erased_dir.join(blob.to_hex()).exists() {
                    Err(medchain_ehr::VaultError::Io(std::io::Error::other(
                        "that blob was erased and is never stored again",
                    )))
                } else {
                    Ok(())
                }
            }),
        }
    });
    let mut body = body;
    use http_body_util::BodyExt;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Ok(data) = f.into_data() {
                    if tx.send(Ok(data)).await.is_err() {
                        break;
                    }
                }
            }
            Err(e) => {
                let _ = tx.send(Err(e.to_string())).await;
                break;
            }
        }
    }
    drop(tx);
    match writer.await {
        Ok(Ok((blob, size))) => (
            StatusCode::CREATED,
            Json(json!({ "blob": blob, "bytes": size })),
        )
            .into_response(),
        Ok(Err(medchain_ehr::VaultError::Corrupted(_))) => err(
            StatusCode::UNPROCESSABLE_ENTITY,
            "the bytes do not hash to the blob address; nothing was stored",
        ),
        Ok(Err(e)) => err(StatusCode::BAD_REQUEST, e.to_string()),
        Err(e) => err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn put_keys(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = format!("/api/v1/ehr/docs/{id}/keys");
    let caller = match authenticate_body(&s, &headers, &Method::PUT, &path, Some(&body)) {
        Ok(k) => k,
        Err(r) => return r,
    };
    let d = match anchor(&s, &id) {
        Ok(d) => d,
        Err(r) => return r,
    };
    if d.issuer != caller && d.patient != caller {
        return err(
            StatusCode::FORBIDDEN,
            "only the document's issuer or its patient stores its keys",
        );
    }
    let keys = match parse_keys(&body) {
        Ok(k) => k,
        Err(r) => return r,
    };
    // Keys of share links that were revoked or have expired make room for new readers.
    let now = crate::runtime::now_ms();
    let dead_links: Vec<PublicKey> = ehr(&s)
        .query_json(&s.ledger.view(NAME), &EhrQuery::Shares(id.clone()))
        .ok()
        .and_then(|v| serde_json::from_value::<Vec<medchain_ehr::chaincode::ShareRecord>>(v).ok())
        .unwrap_or_default()
        .into_iter()
        .filter(|l| l.revoked_ms.is_some() || l.expires_ms <= now)
        .map(|l| l.holder)
        .collect();
    match merge_keys(&s, &id, keys, &d.patient, &caller, &dead_links) {
        Ok(n) => (StatusCode::CREATED, Json(json!({ "doc": id, "keys": n }))).into_response(),
        Err(r) => r,
    }
}

/// A request body that is a list of wrapped keys.
fn parse_keys(body: &[u8]) -> Result<Vec<WrappedKey>, Response> {
    serde_json::from_slice(body).map_err(|e| {
        err(
            StatusCode::BAD_REQUEST,
            format!("not a list of wrapped keys: {e}"),
        )
    })
}

/// Serializes every read-modify-write of a wrapped-key file on this node.
static KEYS_LOCK: Mutex<()> = Mutex::new(());

/// Adds `keys` to record `id`'s wrapped keys and stores them, as `caller`: one key per
/// reader; a reader's existing key is replaced only by that reader itself (nobody else can
/// spoil it); `dead` readers (dead share links) are removed; the patient's own key must be
/// among them. Returns how many readers hold a key.
fn merge_keys(
    s: &Shared,
    id: &str,
    keys: Vec<WrappedKey>,
    patient: &PublicKey,
    caller: &PublicKey,
    dead: &[PublicKey],
) -> Result<usize, Response> {
    if keys.is_empty() || keys.len() > 64 {
        return Err(err(StatusCode::BAD_REQUEST, "1 to 64 wrapped keys"));
    }
    let _serial = KEYS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if is_erased(s, id) {
        return Err(err(StatusCode::GONE, "that record was erased"));
    }
    let mut merged =
        read_keys(s, id).map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    merged.retain(|old| !dead.contains(&old.reader));
    for k in keys {
        match merged.iter_mut().find(|m| m.reader == k.reader) {
            Some(m) if k.reader == *caller => *m = k,
            Some(_) => {} // another reader's key stays as it is
            None => merged.push(k),
        }
    }
    if merged.len() > 64 || !merged.iter().any(|k| k.reader == *patient) {
        return Err(err(
            StatusCode::BAD_REQUEST,
            "at most 64 readers, and a key for the patient among them",
        ));
    }
    store_keys(s, id, &merged)
        .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(merged.len())
}

async fn get_key(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (reader, _) = match doc_reader(&s, &headers, &id, "key") {
        Ok(x) => x,
        Err(r) => return r,
    };
    match key_for(&s, &id, &reader).await {
        Ok(k) => Json(k).into_response(),
        Err(r) => r,
    }
}

/// The signed caller of `GET /api/v1/ehr/docs/{id}/{what}` and the document's anchor, if the
/// caller may read the document now (access and audit checked).
fn doc_reader(
    s: &Shared,
    headers: &HeaderMap,
    id: &str,
    what: &str,
) -> Result<(PublicKey, DocumentAnchor), Response> {
    let path = format!("/api/v1/ehr/docs/{id}/{what}");
    let reader = authenticate(s, headers, &Method::GET, &path)?;
    let d = anchor(s, id)?;
    may_read(s, &reader, &d)?;
    Ok((reader, d))
}

/// Streams blob `blob`, fetching it from another node first if this one lacks it.
async fn serve_blob(s: &Shared, blob: Hash, what: &str) -> Response {
    let vault = match vault(s) {
        Ok(v) => v,
        Err(r) => return r,
    };
    if !vault.contains(&blob) {
        if let Err(e) = fetch_blob(s, &vault, blob).await {
            return err(StatusCode::NOT_FOUND, format!("{what}: {e}"));
        }
    }
    stream_file(&vault, blob)
}

/// A response body fed by a blocking file reader.
struct ChannelBody(tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|o| o.map(|r| r.map(http_body::Frame::data)))
    }
}

async fn get_blob(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    match doc_reader(&s, &headers, &id, "blob") {
        Ok((_, d)) => serve_blob(&s, d.blob, "the blob").await,
        Err(r) => r,
    }
}

/// Signed-request headers for `method path` to node `node` with `key`; `body` for the routes
/// whose signature covers it.
pub fn sign_headers(
    key: &medchain_types::SecretKey,
    chain: &str,
    node: &PublicKey,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> [(&'static str, String); 4] {
    let created = crate::runtime::now_ms();
    let mut nonce = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut nonce);
    let nonce = hex::encode(nonce);
    let sig = key.sign(
        DOMAIN_REQUEST,
        chain,
        &request_bytes(
            method,
            path,
            created,
            &nonce,
            node,
            &body.map(body_digest).unwrap_or_default(),
        ),
    );
    [
        ("x-medchain-key", key.public().to_hex()),
        ("x-medchain-created", created.to_string()),
        ("x-medchain-nonce", nonce),
        ("x-medchain-signature", sig.to_hex()),
    ]
}

fn peer_only(s: &Shared, headers: &HeaderMap, path: &str) -> Result<(), Response> {
    let caller = authenticate(s, headers, &Method::GET, path)?;
    if s.genesis.validator(&caller).is_none() {
        return Err(err(
            StatusCode::FORBIDDEN,
            "only consortium nodes use peer routes",
        ));
    }
    Ok(())
}

async fn peer_blob(
    State(s): State<Arc<Shared>>,
    Path(blob): Path<String>,
    headers: HeaderMap,
) -> Response {
    let path = format!("/api/v1/ehr/peer/blobs/{blob}");
    if let Err(r) = peer_only(&s, &headers, &path) {
        return r;
    }
    let Ok(blob) = blob.parse::<Hash>() else {
        return err(
            StatusCode::BAD_REQUEST,
            "the blob address is 64 hex characters",
        );
    };
    if is_erased(&s, &blob.to_hex()) {
        return err(StatusCode::GONE, "erased");
    }
    let vault = match vault(&s) {
        Ok(v) => v,
        Err(r) => return r,
    };
    stream_file(&vault, blob)
}

async fn peer_keys(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let path = format!("/api/v1/ehr/peer/keys/{id}");
    if let Err(r) = peer_only(&s, &headers, &path) {
        return r;
    }
    if !valid_record_id(&id) {
        return err(StatusCode::BAD_REQUEST, "not a document or profile id");
    }
    if is_erased(&s, &id) {
        return err(StatusCode::GONE, "erased");
    }
    match std::fs::read(keys_path(&s, &id)) {
        Ok(b) => (StatusCode::OK, [("content-type", "application/json")], b).into_response(),
        Err(_) => err(StatusCode::NOT_FOUND, "no keys for that document here"),
    }
}

/// A document id (a chaincode-validated name) or `profile-<64 hex>`: never a path.
fn valid_record_id(id: &str) -> bool {
    let pseudonym = |k: &str| k.len() == 64 && k.bytes().all(|b| b.is_ascii_hexdigit());
    medchain_types::is_valid_name(id, 64)
        || id.strip_prefix("profile-").is_some_and(pseudonym)
        || id.strip_prefix("case-").is_some_and(|rest| {
            rest.split_once('-')
                .is_some_and(|(p, c)| pseudonym(p) && medchain_types::is_valid_name(c, 64))
        })
}

/// The record id under which a case's wrapped keys are kept.
pub fn case_record_id(patient: &PublicKey, case_id: &str) -> String {
    format!("case-{}-{case_id}", patient.to_hex())
}

/// The patient and the case `case_id` recorded for it.
fn case_record(
    s: &Shared,
    patient: &str,
    case_id: &str,
) -> Result<(PublicKey, medchain_ehr::chaincode::CaseRecord), Response> {
    let p: PublicKey = patient
        .parse()
        .map_err(|_| err(StatusCode::BAD_REQUEST, "the patient is 64 hex characters"))?;
    let v = ehr(s)
        .query_json(
            &s.ledger.view(NAME),
            &EhrQuery::Case {
                patient: p,
                case_id: case_id.to_owned(),
            },
        )
        .map_err(|e| err(StatusCode::BAD_REQUEST, e.to_string()))?;
    let c: Option<medchain_ehr::chaincode::CaseRecord> = serde_json::from_value(v)
        .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    c.map(|c| (p, c)).ok_or_else(|| {
        err(
            StatusCode::NOT_FOUND,
            format!("no case {case_id:?} of that patient"),
        )
    })
}

async fn put_case_keys(
    State(s): State<Arc<Shared>>,
    Path((patient, case_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = format!("/api/v1/ehr/cases/{patient}/{case_id}/keys");
    let caller = match authenticate_body(&s, &headers, &Method::PUT, &path, Some(&body)) {
        Ok(k) => k,
        Err(r) => return r,
    };
    let (p, c) = match case_record(&s, &patient, &case_id) {
        Ok(x) => x,
        Err(r) => return r,
    };
    if caller != c.author && caller != c.hospital && caller != p {
        return err(
            StatusCode::FORBIDDEN,
            "only the case's author, its hospital or the patient stores its keys",
        );
    }
    let keys = match parse_keys(&body) {
        Ok(k) => k,
        Err(r) => return r,
    };
    match merge_keys(&s, &case_record_id(&p, &case_id), keys, &p, &caller, &[]) {
        Ok(n) => (
            StatusCode::CREATED,
            Json(json!({ "case": case_id, "keys": n })),
        )
            .into_response(),
        Err(r) => r,
    }
}

/// The signed caller of `GET /api/v1/ehr/cases/{patient}/{case}/{what}`, the patient and the
/// case, if the caller may read the case now (access and audit checked).
fn case_reader(
    s: &Shared,
    headers: &HeaderMap,
    patient: &str,
    case_id: &str,
    what: &str,
) -> Result<(PublicKey, PublicKey, medchain_ehr::chaincode::CaseRecord), Response> {
    let path = format!("/api/v1/ehr/cases/{patient}/{case_id}/{what}");
    let reader = authenticate(s, headers, &Method::GET, &path)?;
    let (p, c) = case_record(s, patient, case_id)?;
    may_read_object(s, &reader, &p, &format!("case/{case_id}"))?;
    Ok((reader, p, c))
}

async fn get_case_key(
    State(s): State<Arc<Shared>>,
    Path((patient, case_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let (reader, p, _) = match case_reader(&s, &headers, &patient, &case_id, "key") {
        Ok(x) => x,
        Err(r) => return r,
    };
    match key_for(&s, &case_record_id(&p, &case_id), &reader).await {
        Ok(k) => Json(k).into_response(),
        Err(r) => r,
    }
}

async fn get_case_blob(
    State(s): State<Arc<Shared>>,
    Path((patient, case_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    match case_reader(&s, &headers, &patient, &case_id, "blob") {
        Ok((_, _, c)) => serve_blob(&s, c.blob, "the case").await,
        Err(r) => r,
    }
}

/// Marks `name` (a blob address or a record id) erased on this node, for good.
fn mark_erased(s: &Shared, name: &str) -> std::io::Result<()> {
    let dir = erased_dir(s);
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join(name), b"")
}

/// True if `name` was erased here: its blob or keys must never be stored or served again.
fn is_erased(s: &Shared, name: &str) -> bool {
    erased_dir(s).join(name).exists()
}

/// Where this node's erasure markers are (one empty file per erased blob or record).
fn erased_dir(s: &Shared) -> std::path::PathBuf {
    s.config.node.data_dir.join("vault-erased")
}

/// Asks the other validators for `path` until one answers 200.
async fn from_peers(s: &Shared, path: &str) -> Option<reqwest::Response> {
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(600))
        .build()
        .ok()?;
    for v in s.genesis.validators.iter().filter(|v| v.key != s.me) {
        let mut req = http.get(format!("{}{path}", v.api.trim_end_matches('/')));
        for (k, val) in sign_headers(&s.node_key, &s.genesis.chain_id, &v.key, "GET", path, None) {
            req = req.header(k, val);
        }
        if let Ok(r) = req.send().await {
            if r.status().is_success() {
                return Some(r);
            }
        }
    }
    None
}

/// Fetches a blob this node lacks from another node, checking it on arrival.
async fn fetch_blob(s: &Shared, vault: &Vault, blob: Hash) -> Result<(), String> {
    let mut r = from_peers(s, &format!("/api/v1/ehr/peer/blobs/{blob}"))
        .await
        .ok_or("no other node holds the blob")?;
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let v = vault.clone();
    let writer = tokio::task::spawn_blocking(move || {
        v.import(
            BodyReader {
                rx,
                cur: Bytes::new(),
                total: 0,
                limit: BLOB_MAX,
            },
            &blob,
        )
    });
    loop {
        match r.chunk().await {
            Ok(Some(c)) => {
                if tx.send(Ok(c)).await.is_err() {
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                let _ = tx.send(Err(e.to_string())).await;
                break;
            }
        }
    }
    drop(tx);
    writer
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// Collects a document's (or profile's) wrapped keys from every other node, merges them with
/// this node's (one per reader) and keeps the result. Nodes can hold different subsets: keys are
/// stored where they were put and shared later through any node.
async fn fetch_keys(s: &Shared, id: &str) -> Result<Vec<WrappedKey>, String> {
    let path = format!("/api/v1/ehr/peer/keys/{id}");
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())?;
    let mut theirs_all = Vec::new();
    for v in s.genesis.validators.iter().filter(|v| v.key != s.me) {
        let mut req = http.get(format!("{}{path}", v.api.trim_end_matches('/')));
        for (k, val) in sign_headers(&s.node_key, &s.genesis.chain_id, &v.key, "GET", &path, None) {
            req = req.header(k, val);
        }
        let Ok(r) = req.send().await else { continue };
        if !r.status().is_success() {
            continue;
        }
        if let Ok(theirs) = r.json::<Vec<WrappedKey>>().await {
            theirs_all.extend(theirs);
        }
    }
    // Merged under the lock with what this node holds now (not what it held before the
    // network round), and never after an erasure.
    let _serial = KEYS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if is_erased(s, id) {
        return Err("that record was erased".into());
    }
    let mut merged = read_keys(s, id).map_err(|e| e.to_string())?;
    for k in theirs_all {
        if !merged.iter().any(|m| m.reader == k.reader) && merged.len() < 64 {
            merged.push(k);
        }
    }
    if merged.is_empty() {
        return Err("no node holds keys for that record".into());
    }
    store_keys(s, id, &merged).map_err(|e| e.to_string())?;
    Ok(merged)
}

/// The reader's wrapped key for record `id`, from this node or, failing that, the others.
async fn key_for(s: &Shared, id: &str, reader: &PublicKey) -> Result<WrappedKey, Response> {
    let local = local_keys(s, id);
    if let Some(k) = local.into_iter().find(|k| k.reader == *reader) {
        return Ok(k);
    }
    let all = fetch_keys(s, id)
        .await
        .map_err(|e| err(StatusCode::NOT_FOUND, e))?;
    all.into_iter()
        .find(|k| k.reader == *reader)
        .ok_or_else(|| {
            err(
                StatusCode::NOT_FOUND,
                "no key is wrapped for this reader (ask the patient to share)",
            )
        })
}

/// Streams blob `blob` from `vault` (read past the page cache, 1 MiB at a time).
fn stream_file(vault: &Vault, blob: Hash) -> Response {
    let size = match std::fs::metadata(vault.path(&blob)) {
        Ok(m) => m.len(),
        Err(_) => return err(StatusCode::NOT_FOUND, "this node does not hold the blob"),
    };
    let mut reader = match vault.open_blob(&blob) {
        Ok(r) => r,
        Err(e) => return err(StatusCode::NOT_FOUND, e.to_string()),
    };
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tokio::task::spawn_blocking(move || loop {
        match reader.next_chunk() {
            Ok([]) => return,
            Ok(chunk) => {
                if tx.blocking_send(Ok(Bytes::copy_from_slice(chunk))).is_err() {
                    return;
                }
            }
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/octet-stream")
        .header("content-length", size)
        .header("x-medchain-blob", blob.to_hex())
        .body(Body::new(ChannelBody(rx)))
        .unwrap_or_else(|e| err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

fn profile_id(patient: &PublicKey) -> String {
    format!("profile-{}", patient.to_hex())
}

fn registered_profile(s: &Shared, patient: &str) -> Result<(PublicKey, Hash), Response> {
    let p: PublicKey = patient
        .parse()
        .map_err(|_| err(StatusCode::BAD_REQUEST, "the patient is 64 hex characters"))?;
    let v = ehr(s)
        .query_json(&s.ledger.view(NAME), &EhrQuery::Patient(p))
        .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let blob: Option<Hash> = serde_json::from_value(v["profile_blob"].clone())
        .ok()
        .flatten();
    match blob {
        Some(b) => Ok((p, b)),
        None => Err(err(
            StatusCode::NOT_FOUND,
            "no registered profile for that patient",
        )),
    }
}

/// The reader may read the patient's `object` now, and logged it if not the patient.
fn may_read_object(
    s: &Shared,
    reader: &PublicKey,
    patient: &PublicKey,
    object: &str,
) -> Result<(), Response> {
    let view = s.ledger.view(NAME);
    let now = crate::runtime::now_ms();
    let basis = Ehr::access_object(&view, patient, reader, object, now)
        .map_err(|e| err(StatusCode::FORBIDDEN, e.to_string()))?;
    if basis == medchain_ehr::chaincode::Basis::Owner {
        return Ok(());
    }
    let audit: Vec<AuditEvent> = serde_json::from_value(
        ehr(s)
            .query_json(&view, &EhrQuery::Audit(*patient))
            .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?,
    )
    .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let logged = audit
        .iter()
        .any(|e| e.reader == *reader && e.object == object && e.at_ms + AUDIT_FRESH_MS >= now);
    if !logged {
        return Err(err(
            StatusCode::PRECONDITION_REQUIRED,
            format!("commit a LogRead of {object} first (every read of personal data is audited)"),
        ));
    }
    Ok(())
}

async fn put_profile_keys(
    State(s): State<Arc<Shared>>,
    Path(patient): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = format!("/api/v1/ehr/profiles/{patient}/keys");
    let caller = match authenticate_body(&s, &headers, &Method::PUT, &path, Some(&body)) {
        Ok(k) => k,
        Err(r) => return r,
    };
    let (p, _) = match registered_profile(&s, &patient) {
        Ok(x) => x,
        Err(r) => return r,
    };
    if caller != p {
        return err(
            StatusCode::FORBIDDEN,
            "only the patient stores its profile keys",
        );
    }
    let keys = match parse_keys(&body) {
        Ok(k) => k,
        Err(r) => return r,
    };
    match merge_keys(&s, &profile_id(&p), keys, &p, &caller, &[]) {
        Ok(n) => (
            StatusCode::CREATED,
            Json(json!({ "patient": p, "keys": n })),
        )
            .into_response(),
        Err(r) => r,
    }
}

/// The wrapped keys of record `id` this node holds, for reading (none if it holds none or
/// its file is unreadable).
fn local_keys(s: &Shared, id: &str) -> Vec<WrappedKey> {
    read_keys(s, id).unwrap_or_default()
}

/// The wrapped keys of record `id` this node holds; an unreadable file is an error (a writer
/// must not take it for an empty list and overwrite it).
fn read_keys(s: &Shared, id: &str) -> std::io::Result<Vec<WrappedKey>> {
    match std::fs::read(keys_path(s, id)) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("the wrapped keys of {id} are unreadable: {e}"),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Writes record `id`'s wrapped keys durably (call with [`KEYS_LOCK`] held).
fn store_keys(s: &Shared, id: &str, keys: &[WrappedKey]) -> std::io::Result<()> {
    let p = keys_path(s, id);
    std::fs::create_dir_all(p.parent().expect("a parent"))?;
    let mut token = [0u8; 8];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut token);
    let tmp = p.with_extension(format!("{}.tmp", hex::encode(token)));
    let written = serde_json::to_vec(keys)
        .map_err(std::io::Error::other)
        .and_then(|bytes| std::fs::write(&tmp, bytes))
        .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
        .and_then(|()| std::fs::rename(&tmp, &p));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

async fn get_profile_key(
    State(s): State<Arc<Shared>>,
    Path(patient): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (reader, p, _) = match profile_reader(&s, &headers, &patient, "key") {
        Ok(x) => x,
        Err(r) => return r,
    };
    match key_for(&s, &profile_id(&p), &reader).await {
        Ok(k) => Json(k).into_response(),
        Err(r) => r,
    }
}

/// The signed caller of `GET /api/v1/ehr/profiles/{patient}/{what}`, the patient and its
/// profile blob, if the caller may read the profile now (access and audit checked).
fn profile_reader(
    s: &Shared,
    headers: &HeaderMap,
    patient: &str,
    what: &str,
) -> Result<(PublicKey, PublicKey, Hash), Response> {
    let path = format!("/api/v1/ehr/profiles/{patient}/{what}");
    let reader = authenticate(s, headers, &Method::GET, &path)?;
    let (p, blob) = registered_profile(s, patient)?;
    may_read_object(s, &reader, &p, "profile")?;
    Ok((reader, p, blob))
}

async fn get_profile_blob(
    State(s): State<Arc<Shared>>,
    Path(patient): Path<String>,
    headers: HeaderMap,
) -> Response {
    match profile_reader(&s, &headers, &patient, "blob") {
        Ok((_, _, blob)) => serve_blob(&s, blob, "the profile").await,
        Err(r) => r,
    }
}

/// The verifier's audit: every anchored record of this node's vault re-hashed.
async fn vault_audit(State(s): State<Arc<Shared>>) -> Response {
    let anchors = match ehr(&s).query_json(&s.ledger.view(NAME), &EhrQuery::Anchors) {
        Ok(v) => v,
        Err(e) => return err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let anchors: Vec<medchain_ehr::chaincode::AnchoredBlob> = match serde_json::from_value(anchors)
    {
        Ok(a) => a,
        Err(e) => return err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let vault = match vault(&s) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let checked = tokio::task::spawn_blocking(move || {
        anchors
            .into_iter()
            .map(|a| {
                let status = if a.erased {
                    "erased"
                } else {
                    match vault.verify(&a.blob) {
                        Ok(()) => "intact",
                        Err(medchain_ehr::VaultError::NotFound(_)) => "missing",
                        Err(medchain_ehr::VaultError::Corrupted(_)) => "tampered",
                        Err(_) => "unreadable",
                    }
                };
                json!({
                    "record": a.record,
                    "patient": a.patient,
                    "blob": a.blob,
                    "status": status,
                })
            })
            .collect::<Vec<_>>()
    })
    .await;
    let records = match checked {
        Ok(r) => r,
        Err(e) => return err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let count = |st: &str| records.iter().filter(|r| r["status"] == st).count();
    Json(json!({
        "node": s.me,
        "intact": count("intact"),
        "tampered": count("tampered"),
        "missing": count("missing"),
        "erased": count("erased"),
        "records": records,
    }))
    .into_response()
}

/// Crypto-shredding after an `Erase` commits: the blob and every wrapped key go.
pub fn on_erased(s: &Shared, doc_id: &str) {
    let v = s.ledger.view(NAME);
    let blob = ehr(s)
        .query_json(&v, &EhrQuery::Document(doc_id.to_owned()))
        .ok()
        .and_then(|j| {
            serde_json::from_value::<Option<DocumentAnchor>>(j)
                .ok()
                .flatten()
        })
        .map(|d| d.blob);
    // Markers first: a fetch or upload racing with the erasure cannot bring the data back.
    for name in blob.iter().map(Hash::to_hex).chain([doc_id.to_owned()]) {
        if let Err(e) = mark_erased(s, &name) {
            tracing::error!(doc = doc_id, error = %e, "could not record an erasure");
        }
    }
    if let Some(blob) = blob {
        if let Ok(vault) = Vault::open(s.config.node.data_dir.join("vault")) {
            if let Err(e) = vault.erase(&blob) {
                tracing::error!(doc = doc_id, error = %e, "could not erase a blob");
            }
        }
    }
    let p = keys_path(s, doc_id);
    let _serial = KEYS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(e) = std::fs::remove_file(&p) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::error!(doc = doc_id, error = %e, "could not erase wrapped keys");
        }
    }
    tracing::info!(
        doc = doc_id,
        "document erased (blob and wrapped keys destroyed)"
    );
}
