//! Documents: `medchain ehr doc upload`, `get`, `share` and `open` (encrypted and decrypted
//! here, streamed both ways; the node never sees a plaintext).

use super::common::{
    commit_ehr, doc_anchor_as, ehr_json, log_read, ok_or_error, progress_printer, put_keys,
    wrapped_key, TRANSFER_TIMEOUT,
};
use anyhow::{bail, Context, Result};
use medchain_app::client::{error_text, Client};
use medchain_types::SecretKey;
use serde_json::Value;

/// What `ehr_doc_upload` uploads.
#[derive(Debug, Clone)]
pub struct DocUpload {
    /// The file.
    pub file: std::path::PathBuf,
    /// The document id.
    pub doc_id: String,
    /// The patient's pseudonym (hex).
    pub patient: String,
    /// Its kind.
    pub kind: medchain_ehr::chaincode::DocKind,
    /// The document it replaces.
    pub supersedes: Option<String>,
}

/// `medchain ehr doc upload`: encrypts FILE locally under a fresh key (the node never sees the
/// plaintext), stores the ciphertext on the node, anchors the document (SHA-256 of the
/// plaintext, blob address, kind, issuer, patient) and leaves the key wrapped for the patient,
/// the issuer and the issuer's hospital.
pub async fn ehr_doc_upload(
    node: &str,
    key_file: &std::path::Path,
    doc: DocUpload,
    quiet: bool,
) -> Result<()> {
    use medchain_ehr::{wrap_key, DocKey};
    let DocUpload {
        file,
        doc_id,
        patient,
        kind,
        supersedes,
    } = doc;
    let (file, doc_id, patient) = (file.as_path(), doc_id.as_str(), patient.as_str());
    let patient: medchain_types::PublicKey = patient
        .parse()
        .map_err(|e| anyhow::anyhow!("--patient: {e}"))?;
    let signer = medchain_app::keyfile::read(key_file)?;
    let client = Client::new(node)?;
    let chain = client.chain_id().await?;
    let doctor = ehr_json(&client, &medchain_ehr::EhrQuery::Doctor(signer.public())).await?;
    let hospital: medchain_types::PublicKey = serde_json::from_value(doctor["hospital"].clone())
        .context("the key file's key is not a registered doctor")?;
    let size = std::fs::metadata(file)
        .with_context(|| format!("cannot read {}", file.display()))?
        .len();
    let key = DocKey::generate();
    // Encrypted while it is sent: the ciphertext goes straight into the request body (no copy
    // on the client's disk); the node computes the blob's address, which must match ours.
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(8);
    let encryptor = {
        let (file, key) = (file.to_owned(), key.clone());
        tokio::task::spawn_blocking(move || -> Result<medchain_ehr::Stored> {
            let f = std::fs::File::open(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let show = progress_printer("upload", size);
            let noop = |_: u64| {};
            let progress: &(dyn Fn(u64) + Sync) = if quiet { &noop } else { &show };
            let mut out = ChannelWriter::new(tx);
            match medchain_ehr::encrypt(f, &key, &mut out, progress) {
                Ok(stored) => {
                    std::io::Write::flush(&mut out)?;
                    Ok(stored)
                }
                Err(e) => {
                    // Abort the request (the node then discards what it received) rather than
                    // end the body cleanly, which would store a truncated blob.
                    out.abort(&e);
                    Err(e.into())
                }
            }
        })
    };
    {
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|chunk| (chunk, rx))
        });
        let sent = client
            .signed(reqwest::Method::POST, "/api/v1/ehr/blobs", &signer, &chain)
            .timeout(TRANSFER_TIMEOUT)
            .header("content-type", "application/octet-stream")
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await;
        let encrypted = encryptor.await?;
        let r = sent.with_context(|| format!("cannot reach {node}"))?;
        let stored = encrypted?;
        let code = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        if !code.is_success() {
            bail!("storing the blob: HTTP {code}: {}", error_text(&v));
        }
        if v["blob"].as_str() != Some(stored.blob.to_hex().as_str()) {
            bail!(
                "the node stored blob {} but we sent {}",
                v["blob"],
                stored.blob
            );
        }
        if !quiet {
            eprintln!("stored blob {} ({} bytes)", stored.blob, stored.blob_size);
        }
        // The anchor.
        let op = medchain_ehr::EhrOp::IssueDocument {
            doc_id: doc_id.to_owned(),
            patient,
            kind,
            plaintext_sha256: stored.plaintext_sha256,
            blob: stored.blob,
            supersedes,
        };
        let receipt = commit_ehr(&client, &chain, &signer, &op).await?;
        // The key, for the patient, the issuer and its hospital.
        let mut readers = vec![patient, signer.public(), hospital];
        readers.dedup();
        let wrapped = readers
            .iter()
            .map(|r| wrap_key(&key, r, doc_id.as_bytes()))
            .collect::<Result<Vec<_>, _>>()?;
        let path = format!("/api/v1/ehr/docs/{doc_id}/keys");
        put_keys(&client, &signer, &chain, &path, &wrapped).await?;
        if quiet {
            return Ok(());
        }
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "doc": doc_id,
                "sha256": stored.plaintext_sha256,
                "blob": stored.blob,
                "size": stored.size,
                "height": receipt["height"],
                "tx": receipt["tx_hash"],
            }))?
        );
        Ok(())
    }
}

/// A blocking writer into a channel (a request body being streamed): what is written is
/// gathered into pieces of [`ChannelWriter::PIECE`] bytes, each handed on without another copy.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<std::io::Result<bytes::Bytes>>,
    buf: bytes::BytesMut,
}

impl ChannelWriter {
    const PIECE: usize = 1 << 20;

    fn new(tx: tokio::sync::mpsc::Sender<std::io::Result<bytes::Bytes>>) -> ChannelWriter {
        ChannelWriter {
            tx,
            buf: bytes::BytesMut::with_capacity(Self::PIECE),
        }
    }

    fn send(&mut self) -> std::io::Result<()> {
        let piece = self.buf.split().freeze();
        self.buf.reserve(Self::PIECE);
        self.tx
            .blocking_send(Ok(piece))
            .map_err(|_| std::io::Error::other("the upload stopped"))
    }

    /// Ends the body with an error, so that the receiver discards what it got (rather than
    /// store a truncated blob).
    fn abort(self, e: &dyn std::fmt::Display) {
        let _ = self
            .tx
            .blocking_send(Err(std::io::Error::other(e.to_string())));
    }
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        // A piece goes before it would outgrow its buffer (growing it would copy it).
        if !self.buf.is_empty() && self.buf.len() + data.len() > Self::PIECE {
            self.send()?;
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            self.send()
        }
    }
}

/// `medchain ehr doc get`: logs the read on the chain (unless the reader is the patient),
/// fetches the reader's wrapped key and the ciphertext, decrypts into OUT (authenticating every
/// chunk) and checks the plaintext against the anchored SHA-256.
pub async fn ehr_doc_get(
    node: &str,
    key_file: &std::path::Path,
    doc_id: &str,
    out: &std::path::Path,
    quiet: bool,
) -> Result<()> {
    let signer = medchain_app::keyfile::read(key_file)?;
    let anchor = doc_get_as(node, &signer, doc_id, out, quiet).await?;
    if !quiet {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "doc": doc_id,
                "out": out.display().to_string(),
                "sha256": anchor.plaintext_sha256,
                "verified": true,
            }))?
        );
    }
    Ok(())
}

/// Reads document `doc_id` as `signer` into `out`: logs the read on the chain (unless the
/// signer is the patient), fetches the signer's wrapped key and the ciphertext, and writes the
/// plaintext only if every chunk authenticates and the plaintext matches its anchored
/// SHA-256. Returns the anchor.
async fn doc_get_as(
    node: &str,
    signer: &SecretKey,
    doc_id: &str,
    out: &std::path::Path,
    quiet: bool,
) -> Result<medchain_ehr::chaincode::DocumentAnchor> {
    use medchain_ehr::unwrap_key;
    let signer = signer.clone();
    let client = Client::new(node)?;
    let chain = client.chain_id().await?;
    let anchor = doc_anchor_as(&client, &chain, &signer, doc_id).await?;
    if anchor.erased_ms.is_some() {
        bail!("document {doc_id} was erased at the patient's request");
    }
    if anchor.patient != signer.public() {
        log_read(
            &client,
            &chain,
            &signer,
            &anchor.patient,
            &format!("doc/{doc_id}"),
        )
        .await?;
    }
    let path = format!("/api/v1/ehr/docs/{doc_id}/key");
    let wrapped = wrapped_key(&client, &chain, &signer, &path, "the key").await?;
    let key = unwrap_key(&wrapped, &signer, doc_id.as_bytes())?;
    let path = format!("/api/v1/ehr/docs/{doc_id}/blob");
    let r = client
        .signed(reqwest::Method::GET, &path, &signer, &chain)
        .timeout(TRANSFER_TIMEOUT)
        .send()
        .await?;
    let mut r = ok_or_error(r, "the blob").await?;
    let total = r.content_length().unwrap_or(0);
    // One pass: every chunk is authenticated and decrypted while it arrives, and the
    // plaintext's SHA-256 compared with the anchor (which makes re-hashing the ciphertext
    // against its address redundant: see `decrypt_chunks`); the output appears only if
    // everything matches.
    let tmp_out = out.with_extension("medchain-part");
    let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(16);
    let (tmp, blob, expected) = (tmp_out.clone(), anchor.blob, anchor.plaintext_sha256);
    let decryptor = tokio::task::spawn_blocking(move || -> Result<()> {
        let input = ChunkReader {
            rx,
            cur: bytes::Bytes::new(),
        };
        // The plaintext goes to disk past the page cache (as the vault writes blobs), on a
        // thread of its own so that the synchronous writes do not hold up decryption.
        let _ = std::fs::remove_file(&tmp);
        let file = medchain_ehr::direct::DirectWriter::create(&tmp)?;
        // Written chunks go back to the decryptor to be filled again (no allocation and no
        // fresh pages per chunk).
        let (chunks, queue) = std::sync::mpsc::sync_channel::<Vec<u8>>(32);
        let (back, recycle) = std::sync::mpsc::sync_channel::<Vec<u8>>(40);
        let writer = std::thread::spawn(move || -> std::io::Result<u64> {
            let mut file = file;
            for chunk in queue {
                std::io::Write::write_all(&mut file, &chunk)?;
                let _ = back.try_send(chunk);
            }
            file.finish()
        });
        let decrypted = medchain_ehr::decrypt_chunks(input, &blob, &key, chunks, recycle, &|_| {});
        let written = writer
            .join()
            .map_err(|_| anyhow::anyhow!("the writer thread failed"))?;
        let sha = decrypted?;
        written?;
        if sha != expected {
            bail!("the decrypted document's SHA-256 {sha} differs from the anchored {expected}");
        }
        Ok(())
    });
    let show = progress_printer("download", total);
    let mut done = 0u64;
    let mut fetch_error = None;
    loop {
        match r.chunk().await {
            Ok(Some(chunk)) => {
                done += chunk.len() as u64;
                if !quiet {
                    show(done);
                }
                if tx.send(chunk).await.is_err() {
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                fetch_error = Some(e);
                break;
            }
        }
    }
    drop(tx);
    let decrypted = decryptor.await?;
    if let Some(e) = fetch_error {
        let _ = std::fs::remove_file(&tmp_out);
        return Err(e.into());
    }
    if let Err(e) = decrypted {
        let _ = std::fs::remove_file(&tmp_out);
        return Err(e);
    }
    std::fs::rename(&tmp_out, out)?;
    Ok(anchor)
}

/// The document key of `doc_id`, as `me` (its patient or issuer) unwraps it; logs the read
/// first when `me` is not the patient.
async fn own_doc_key(
    client: &Client,
    chain: &str,
    me: &SecretKey,
    doc_id: &str,
) -> Result<(
    medchain_ehr::DocKey,
    medchain_ehr::chaincode::DocumentAnchor,
)> {
    let anchor = doc_anchor_as(client, chain, me, doc_id).await?;
    if anchor.patient != me.public() && anchor.issuer != me.public() {
        bail!("only the document's patient or its issuing doctor shares it");
    }
    if anchor.patient != me.public() {
        log_read(client, chain, me, &anchor.patient, &format!("doc/{doc_id}")).await?;
    }
    let path = format!("/api/v1/ehr/docs/{doc_id}/key");
    let wrapped = wrapped_key(client, chain, me, &path, "the key").await?;
    Ok((
        medchain_ehr::unwrap_key(&wrapped, me, doc_id.as_bytes())?,
        anchor,
    ))
}

/// `medchain ehr doc share`: the patient or the issuer wraps the document key for another
/// reader (`with`, e.g. a hospital granted access after the upload), or, without `with`,
/// makes a share link: a fresh key that the chain lets read this one document until the
/// expiry (a `ShareDocument` transaction), with the document key wrapped for it. The link
/// carries that key's secret after `#`, which browsers do not send to servers.
pub async fn ehr_doc_share(
    node: &str,
    key_file: &std::path::Path,
    doc_id: &str,
    with: Option<&str>,
    hours: u64,
) -> Result<()> {
    let me = medchain_app::keyfile::read(key_file)?;
    let client = Client::new(node)?;
    let chain = client.chain_id().await?;
    let (key, anchor) = own_doc_key(&client, &chain, &me, doc_id).await?;
    let keys_path = format!("/api/v1/ehr/docs/{doc_id}/keys");
    if let Some(with) = with {
        let with: medchain_types::PublicKey =
            with.parse().map_err(|e| anyhow::anyhow!("--with: {e}"))?;
        let wrapped = medchain_ehr::wrap_key(&key, &with, doc_id.as_bytes())?;
        put_keys(&client, &me, &chain, &keys_path, &[wrapped]).await?;
        println!("key of document {doc_id} wrapped for {with}");
        return Ok(());
    }
    if hours == 0 || hours > 30 * 24 {
        bail!("--hours must be 1 to 720 (30 days)");
    }
    let link_key = SecretKey::generate(&mut rand::rngs::OsRng);
    // Five minutes short of the asked time, so that 720 h stays within the chain's 30-day
    // limit even when this machine's clock is a little ahead of the block time.
    let expires_ms = medchain_app::now_ms() + hours * 3600 * 1000 - 5 * 60 * 1000;
    let op = medchain_ehr::EhrOp::ShareDocument {
        doc_id: doc_id.to_owned(),
        holder: link_key.public(),
        expires_ms,
    };
    commit_ehr(&client, &chain, &me, &op)
        .await
        .context("recording the share link")?;
    let wrapped = medchain_ehr::wrap_key(&key, &link_key.public(), doc_id.as_bytes())?;
    put_keys(&client, &me, &chain, &keys_path, &[wrapped]).await?;
    let link = format!(
        "{}/portal/#share/{doc_id}/{}",
        node.trim_end_matches('/'),
        hex::encode(link_key.seed())
    );
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({
            "doc": doc_id,
            "patient": anchor.patient,
            "link": link,
            "holder": link_key.public(),
            "expires_ms": expires_ms,
        }))?
    );
    Ok(())
}

/// A parsed share link: the node's URL, the document id and the link's key.
pub fn parse_share_link(link: &str) -> Result<(String, String, SecretKey)> {
    let (base, frag) = link
        .split_once("/portal/#share/")
        .ok_or_else(|| anyhow::anyhow!("not a share link (…/portal/#share/DOC/SECRET)"))?;
    let (doc, secret) = frag
        .split_once('/')
        .ok_or_else(|| anyhow::anyhow!("not a share link: no secret after the document id"))?;
    let seed: [u8; 32] = hex::decode(secret)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| anyhow::anyhow!("the link's secret is not 64 hex characters"))?;
    if !medchain_types::is_valid_name(doc, 64) {
        bail!("the link's document id {doc:?} is malformed");
    }
    Ok((base.to_owned(), doc.to_owned(), SecretKey::from_seed(seed)))
}

/// `medchain ehr doc open LINK --out FILE`: downloads the shared document with the link's
/// key (the read is logged on the chain under the link), decrypts it, re-hashes it and checks
/// it against its anchor; prints the verdict. `node` overrides the link's node.
pub async fn ehr_doc_open(
    link: &str,
    node: Option<&str>,
    out: &std::path::Path,
    quiet: bool,
) -> Result<()> {
    let (base, doc_id, key) = parse_share_link(link)?;
    let node = node.unwrap_or(&base);
    let anchor = doc_get_as(node, &key, &doc_id, out, quiet).await?;
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({
            "verdict": "authentic",
            "doc": doc_id,
            "out": out.display().to_string(),
            "sha256": anchor.plaintext_sha256,
            "issuer": anchor.issuer,
            "hospital": anchor.hospital,
            "kind": anchor.kind,
            "anchored_at_ms": anchor.at_ms,
            "height": anchor.height,
        }))?
    );
    Ok(())
}

/// A blocking reader over chunks arriving through a channel.
struct ChunkReader {
    rx: tokio::sync::mpsc::Receiver<bytes::Bytes>,
    cur: bytes::Bytes,
}

impl std::io::Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(b) => self.cur = b,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        self.cur = self.cur.slice(n..);
        Ok(n)
    }
}
