//! What the app's commands share: signing and committing `ehr` operations, queries, logged
//! reads, wrapped keys, progress on long transfers.

use anyhow::{bail, Context, Result};
use medchain_app::client::{error_text, signed_tx, Client};
use medchain_types::SecretKey;
use rand::RngCore;
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// The longest a document upload or download may take (the default request timeout is for
/// small requests).
pub const TRANSFER_TIMEOUT: Duration = Duration::from_secs(3600);

/// Signs an `ehr` operation with `signer`, submits it and waits for its commit; fails unless
/// its receipt is a success.
pub async fn commit_ehr(
    client: &Client,
    chain: &str,
    signer: &SecretKey,
    op: &medchain_ehr::EhrOp,
) -> Result<Value> {
    client
        .commit_one(signed_tx(
            chain,
            medchain_ehr::chaincode::NAME,
            medchain_ehr::Ehr::payload(op),
            signer,
        ))
        .await
}

/// The JSON answer to a public `ehr` query (asked anonymously).
pub async fn ehr_json(client: &Client, q: &medchain_ehr::EhrQuery) -> Result<Value> {
    client.post_json("/api/v1/ehr/query", q).await
}

/// The JSON answer to an `ehr` query signed by `signer` (answered if it is a party to it).
/// Call after [`Client::chain_id`].
pub async fn ehr_json_as(
    client: &Client,
    chain: &str,
    signer: &SecretKey,
    q: &medchain_ehr::EhrQuery,
) -> Result<Value> {
    let body = serde_json::to_vec(q)?;
    let r = client
        .signed_body(
            reqwest::Method::POST,
            "/api/v1/ehr/query",
            signer,
            chain,
            Some(&body),
        )
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .with_context(|| format!("cannot reach {}", client.base()))?;
    let r = ok_or_error(r, "the query").await?;
    Ok(r.json().await?)
}

/// Replaces every sealed note in `v` (a text field holding one, see
/// `medchain_ehr::SealedNote`) that `me` can open by its text.
pub fn open_notes(v: &mut Value, me: &SecretKey) {
    match v {
        Value::String(s) => {
            if let Some(text) =
                medchain_ehr::SealedNote::from_field(s).and_then(|n| n.open(me).ok())
            {
                *s = text;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| open_notes(i, me)),
        Value::Object(m) => m.values_mut().for_each(|i| open_notes(i, me)),
        _ => {}
    }
}

/// Document `doc_id`'s anchor as `signer` sees it (with the patient's pseudonym if it is a
/// party to the document). Call after [`Client::chain_id`].
pub async fn doc_anchor_as(
    client: &Client,
    chain: &str,
    signer: &SecretKey,
    doc_id: &str,
) -> Result<medchain_ehr::chaincode::DocumentAnchor> {
    let path = format!("/api/v1/ehr/docs/{doc_id}");
    let r = client
        .signed(reqwest::Method::GET, &path, signer, chain)
        .send()
        .await
        .with_context(|| format!("cannot reach {}", client.base()))?;
    let r = ok_or_error(r, &format!("document {doc_id}")).await?;
    let v: Value = r.json().await?;
    serde_json::from_value(v).with_context(|| {
        format!("document {doc_id}: this key is not a party to it (its anchor has no patient)")
    })
}

/// Prints progress of a long transfer to stderr (at most every 5%).
pub fn progress_printer(what: &'static str, total: u64) -> impl Fn(u64) + Sync {
    let last = AtomicU64::new(u64::MAX);
    move |done: u64| {
        let pct = done.saturating_mul(100).checked_div(total).unwrap_or(100);
        let step = pct / 5;
        if last.swap(step, Relaxed) != step {
            eprint!("\r{what}: {pct:>3}% ({} of {} MB)", done >> 20, total >> 20);
            if pct >= 100 {
                eprintln!();
            }
        }
    }
}

pub fn scratch_dir() -> std::path::PathBuf {
    let mut t = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut t);
    std::env::temp_dir().join(format!("medchain-ehr-{}", hex::encode(t)))
}

/// `r` if it succeeded; otherwise an error with the node's message, naming `what`.
pub async fn ok_or_error(r: reqwest::Response, what: &str) -> Result<reqwest::Response> {
    if r.status().is_success() {
        return Ok(r);
    }
    let code = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    bail!("{what}: HTTP {code}: {}", error_text(&v))
}

/// Records on the chain that `reader` reads `object` of `patient` (every read of personal data
/// is logged before the node serves it).
pub async fn log_read(
    client: &Client,
    chain: &str,
    reader: &SecretKey,
    patient: &medchain_types::PublicKey,
    object: &str,
) -> Result<()> {
    let op = medchain_ehr::EhrOp::LogRead {
        patient: *patient,
        object: object.to_owned(),
    };
    commit_ehr(client, chain, reader, &op)
        .await
        .with_context(|| format!("logging the read of {object} (is there a valid grant?)"))?;
    Ok(())
}

/// `reader`'s wrapped key at `path` (a signed GET); `what` names it in errors.
pub async fn wrapped_key(
    client: &Client,
    chain: &str,
    reader: &SecretKey,
    path: &str,
    what: &str,
) -> Result<medchain_ehr::WrappedKey> {
    let r = client
        .signed(reqwest::Method::GET, path, reader, chain)
        .send()
        .await?;
    let code = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    if !code.is_success() {
        bail!("{what}: HTTP {code}: {}", error_text(&v));
    }
    Ok(serde_json::from_value(v)?)
}

pub async fn put_keys(
    client: &Client,
    signer: &SecretKey,
    chain: &str,
    path: &str,
    keys: &[medchain_ehr::WrappedKey],
) -> Result<()> {
    let body = serde_json::to_vec(keys)?;
    let r = client
        .signed_body(reqwest::Method::PUT, path, signer, chain, Some(&body))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await?;
    ok_or_error(r, "storing keys").await?;
    Ok(())
}
