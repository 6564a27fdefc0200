//! Small records (a profile, a case): encrypted in memory under a fresh key, stored as one
//! blob, read back and checked against the chain.

use super::common::{log_read, ok_or_error, scratch_dir, wrapped_key};
use anyhow::{bail, Result};
use medchain_app::client::Client;
use medchain_types::SecretKey;

/// Encrypts a small record (a profile, a case) under a fresh key and stores the ciphertext on
/// the node as `signer`. Returns the key and where it is stored.
pub async fn store_small(
    client: &Client,
    chain: &str,
    signer: &SecretKey,
    plain: &[u8],
    what: &str,
) -> Result<(medchain_ehr::DocKey, medchain_ehr::Stored)> {
    let (key, stored, bytes) = seal_small(plain)?;
    upload_small(client, chain, signer, &stored.blob, bytes, what).await?;
    Ok((key, stored))
}

/// Encrypts a small record under a fresh key: the key, the blob's address and hashes, and the
/// blob's bytes.
pub fn seal_small(plain: &[u8]) -> Result<(medchain_ehr::DocKey, medchain_ehr::Stored, Vec<u8>)> {
    let key = medchain_ehr::DocKey::generate();
    let mut bytes = Vec::new();
    let stored = medchain_ehr::encrypt(plain, &key, &mut bytes, &|_| {})?;
    Ok((key, stored, bytes))
}

/// Stores a small blob on the node as `signer` (checked there against its address).
pub async fn upload_small(
    client: &Client,
    chain: &str,
    signer: &SecretKey,
    blob: &medchain_types::Hash,
    bytes: Vec<u8>,
    what: &str,
) -> Result<()> {
    let path = format!("/api/v1/ehr/blobs/{blob}");
    let r = client
        .signed(reqwest::Method::PUT, &path, signer, chain)
        .header("content-type", "application/octet-stream")
        .body(bytes)
        .send()
        .await?;
    ok_or_error(r, &format!("storing {what}")).await?;
    Ok(())
}

/// A small record's place: what the read is logged as, its routes and anchors.
pub struct SmallRecord<'a> {
    pub patient: medchain_types::PublicKey,
    /// `profile` or `case/<id>` (the `LogRead` object).
    pub object: String,
    /// The route prefix (`…/key` and `…/blob` under it).
    pub base: String,
    /// The key-wrapping context (the record id).
    pub context: String,
    pub blob: medchain_types::Hash,
    pub sha256: medchain_types::Hash,
    pub what: &'a str,
}

/// Reads a small record as `reader`: logs the read (unless the reader is the patient),
/// fetches the reader's wrapped key and the ciphertext, checks the ciphertext's address and the
/// plaintext's SHA-256 against the chain. Returns the key and the plaintext.
pub async fn fetch_small(
    client: &Client,
    chain: &str,
    reader: &SecretKey,
    rec: &SmallRecord<'_>,
) -> Result<(medchain_ehr::DocKey, Vec<u8>)> {
    use medchain_ehr::{unwrap_key, Vault};
    let what = rec.what;
    if reader.public() != rec.patient {
        log_read(client, chain, reader, &rec.patient, &rec.object).await?;
    }
    let key_path = format!("{}/key", rec.base);
    let wrapped = wrapped_key(
        client,
        chain,
        reader,
        &key_path,
        &format!("the key of {what}"),
    )
    .await?;
    let key = unwrap_key(&wrapped, reader, rec.context.as_bytes())?;
    let r = client
        .signed(
            reqwest::Method::GET,
            &format!("{}/blob", rec.base),
            reader,
            chain,
        )
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("{what}: HTTP {}", r.status());
    }
    let bytes = r.bytes().await?;
    let scratch = scratch_dir();
    let result = (|| -> Result<Vec<u8>> {
        let vault = Vault::open(&scratch)?;
        vault.import(&bytes[..], &rec.blob)?;
        let mut plain = Vec::new();
        let sha = vault.get(&rec.blob, &key, &mut plain, &|_| {})?;
        if sha != rec.sha256 {
            bail!("{what} does not match its SHA-256 on the chain");
        }
        Ok(plain)
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    Ok((key, result?))
}
