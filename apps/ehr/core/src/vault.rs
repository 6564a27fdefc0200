//! The off-chain document vault: content-addressed ciphertext on disk, one random key per
//! document, encrypted in 64 KiB chunks, streamed in constant memory.
//!
//! **Blob format.** `"MCV1" || chunk size (u32 BE) || nonce prefix (8 random bytes)`, then the
//! chunks, each `AES-256-GCM(chunk) || tag (16)`. A chunk's nonce is `prefix[..7] || index (u32
//! BE) || last (1 byte: 1 for the final chunk)` and its associated data is the header, so chunks
//! cannot be reordered, dropped, truncated at a chunk boundary or moved between blobs (the STREAM
//! construction of Hoang, Reyhanitabar, Rogaway and Vizár, "Online authenticated-encryption and
//! its nonce-reuse misuse-resistance", CRYPTO 2015). An empty document is one empty final chunk.
//!
//! **Addresses.** A blob is named by the BLAKE3 hash of its bytes (the "ciphertext hash" the
//! chain anchors); the plaintext's SHA-256 (what anyone re-hashing the file compares) is
//! computed in the same pass. BLAKE3 for the address because it costs a fifth of SHA-256 per
//! byte and the address is never compared with anything outside medchain.
//!
//! **Speed.** Upload is a pipeline on two threads: one reads and hashes the plaintext
//! (SHA-256), the other encrypts (AES-GCM with AES-NI through `ring`), hashes the ciphertext and
//! writes. Wall time is about one SHA-256 pass over the file.
//!
//! **Keys.** The document key is wrapped for each reader (the patient, each grantee, the issuer)
//! with X25519 from the reader's ed25519 key, HKDF-SHA256 and AES-256-GCM (`keywrap.rs`).
//! Destroying every wrapped key and the blob is crypto-shredding: no copy of the key is left.

use medchain_types::Hash;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// Plaintext bytes per chunk.
pub const CHUNK: usize = 64 * 1024;
const TAG: usize = 16;
const MAGIC: &[u8; 4] = b"MCV1";
const HEADER: usize = 16;
/// Chunks in flight between the two pipeline threads (bounds memory: about 256 KiB).
const PIPELINE_DEPTH: usize = 4;
/// Bytes buffered before a write to a blob file.
const WRITE_BUFFER: usize = 1 << 20;

/// Why a vault operation failed.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// Reading or writing failed.
    #[error("vault I/O: {0}")]
    Io(#[from] std::io::Error),
    /// No blob with this address.
    #[error("no blob {0} in the vault")]
    NotFound(Hash),
    /// The blob's bytes do not hash to its address.
    #[error("blob {0} is corrupted: its bytes do not hash to its address")]
    Corrupted(Hash),
    /// A chunk failed authentication, or the stream was cut or reordered.
    #[error("blob {0} does not decrypt with this key (wrong key, or tampered ciphertext)")]
    Undecryptable(Hash),
    /// The blob is not in the vault format.
    #[error("blob {0} is not a medchain vault blob")]
    Format(Hash),
    /// A wrapped key could not be opened.
    #[error("the wrapped key is not for this key, or was altered")]
    Unwrap,
}

/// A document key (random, one per document).
#[derive(Clone, PartialEq, Eq)]
pub struct DocKey(pub [u8; 32]);

impl std::fmt::Debug for DocKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DocKey(…)")
    }
}

impl DocKey {
    /// A fresh random key.
    pub fn generate() -> DocKey {
        let mut k = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut k);
        DocKey(k)
    }

    fn aead(&self) -> LessSafeKey {
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &self.0).expect("32-byte AES-256 key"))
    }
}

/// What [`Vault::put`] stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    /// The blob's address: BLAKE3 of its bytes.
    pub blob: Hash,
    /// SHA-256 of the plaintext.
    pub plaintext_sha256: Hash,
    /// Plaintext bytes.
    pub size: u64,
    /// Blob bytes on disk.
    pub blob_size: u64,
}

/// A directory of encrypted blobs.
#[derive(Debug, Clone)]
pub struct Vault {
    dir: PathBuf,
}

fn nonce(prefix: &[u8; 8], index: u32, last: bool) -> Nonce {
    let mut n = [0u8; 12];
    n[..7].copy_from_slice(&prefix[..7]);
    n[7..11].copy_from_slice(&index.to_be_bytes());
    n[11] = last as u8;
    Nonce::assume_unique_for_key(n)
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn fill(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

impl Vault {
    /// Opens (creating) a vault directory.
    pub fn open(dir: impl AsRef<Path>) -> Result<Vault, VaultError> {
        std::fs::create_dir_all(dir.as_ref())?;
        Ok(Vault {
            dir: dir.as_ref().to_owned(),
        })
    }

    /// Where blob `blob` lives.
    pub fn path(&self, blob: &Hash) -> PathBuf {
        self.dir.join(blob.to_hex())
    }

    /// Reads blob `blob` in chunks, past the page cache (for serving and auditing it).
    pub fn open_blob(&self, blob: &Hash) -> Result<crate::direct::BlobReader, VaultError> {
        crate::direct::BlobReader::open(&self.path(blob)).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => VaultError::NotFound(*blob),
            _ => e.into(),
        })
    }

    /// True if the vault holds `blob`.
    pub fn contains(&self, blob: &Hash) -> bool {
        self.path(blob).is_file()
    }

    /// Every blob address in the vault.
    pub fn list(&self) -> Result<Vec<Hash>, VaultError> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.dir)? {
            let name = e?.file_name();
            if let Some(h) = name.to_str().and_then(|n| n.parse::<Hash>().ok()) {
                out.push(h);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Encrypts `plaintext` under `key` into a new blob; `progress` sees the plaintext bytes
    /// done. The blob is durable (synced) when this returns.
    pub fn put(
        &self,
        plaintext: impl Read + Send,
        key: &DocKey,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<Stored, VaultError> {
        let mut prefix = [0u8; 8];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut prefix);
        let header = header(&prefix);
        let tmp = self
            .dir
            .join(format!(".upload-{}", hex_token(&mut rand::rngs::OsRng)));
        let result = self.put_to(plaintext, key, &header, &prefix, &tmp, progress);
        match result {
            Ok(stored) => {
                std::fs::rename(&tmp, self.path(&stored.blob))?;
                File::open(&self.dir)?.sync_all()?;
                Ok(stored)
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    fn put_to(
        &self,
        plaintext: impl Read + Send,
        key: &DocKey,
        header: &[u8; HEADER],
        prefix: &[u8; 8],
        tmp: &Path,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<Stored, VaultError> {
        let file = File::create(tmp)?;
        let mut out = BufWriter::with_capacity(WRITE_BUFFER, &file);
        let stored = encrypt_with(plaintext, key, header, prefix, &mut out, progress)?;
        out.flush()?;
        drop(out);
        file.sync_all()?;
        Ok(stored)
    }

    /// Decrypts blob `blob` with `key` into `out`, authenticating every chunk; returns the
    /// plaintext's SHA-256 (the caller compares it with the anchored hash). `progress` sees the
    /// plaintext bytes written.
    pub fn get(
        &self,
        blob: &Hash,
        key: &DocKey,
        mut out: impl Write,
        progress: &dyn Fn(u64),
    ) -> Result<Hash, VaultError> {
        let file = File::open(self.path(blob)).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => VaultError::NotFound(*blob),
            _ => e.into(),
        })?;
        decrypt(
            BufReader::with_capacity(4 * CHUNK, file),
            blob,
            key,
            Sink::Writer(&mut out),
            progress,
        )
    }
}

/// Encrypts `plaintext` under `key` as a blob written to `out` (a file, a request body), in
/// constant memory, on two threads; returns its address and the plaintext's SHA-256.
pub fn encrypt(
    plaintext: impl Read + Send,
    key: &DocKey,
    out: &mut (impl Write + Send),
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Stored, VaultError> {
    let mut prefix = [0u8; 8];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut prefix);
    let header = header(&prefix);
    encrypt_with(plaintext, key, &header, &prefix, out, progress)
}

fn header(prefix: &[u8; 8]) -> [u8; HEADER] {
    let mut header = [0u8; HEADER];
    header[..4].copy_from_slice(MAGIC);
    header[4..8].copy_from_slice(&(CHUNK as u32).to_be_bytes());
    header[8..].copy_from_slice(prefix);
    header
}

/// The upload pipeline: this thread encrypts, hashes (BLAKE3) and writes each chunk in order;
/// a reader thread reads ahead (to know which chunk is last) and hashes the plaintext.
fn encrypt_with(
    mut plaintext: impl Read + Send,
    key: &DocKey,
    header: &[u8; HEADER],
    prefix: &[u8; 8],
    out: &mut (impl Write + Send),
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Stored, VaultError> {
    let aead = key.aead();
    out.write_all(header)?;
    let mut blob_hash = blake3::Hasher::new();
    blob_hash.update(header);
    let mut blob_size = HEADER as u64;
    let (tx, rx) = std::sync::mpsc::sync_channel::<(Vec<u8>, bool)>(PIPELINE_DEPTH);
    // Written chunks go back to the reader to be filled again (no allocation, zeroing or fresh
    // pages per chunk).
    let (back, recycle) = std::sync::mpsc::sync_channel::<Vec<u8>>(PIPELINE_DEPTH + 2);
    let (plain_hash, size) = std::thread::scope(|s| -> Result<(Hash, u64), VaultError> {
        let reader = s.spawn(move || -> std::io::Result<(Hash, u64)> {
            let buffer = || {
                let mut b = recycle.try_recv().unwrap_or_default();
                b.resize(CHUNK, 0);
                b
            };
            let mut sha = Sha256::new();
            let mut size = 0u64;
            let mut cur = buffer();
            let mut n = fill(&mut plaintext, &mut cur)?;
            loop {
                let mut next = buffer();
                let m = if n == CHUNK {
                    fill(&mut plaintext, &mut next)?
                } else {
                    0
                };
                cur.truncate(n);
                sha.update(&cur);
                size += n as u64;
                progress(size);
                let last = m == 0;
                if tx.send((cur, last)).is_err() || last {
                    break;
                }
                cur = next;
                n = m;
            }
            Ok((Hash(sha.finalize().into()), size))
        });
        let mut index: u32 = 0;
        let mut failed = None;
        for (mut chunk, last) in rx.iter() {
            let tag = match aead.seal_in_place_separate_tag(
                nonce(prefix, index, last),
                Aad::from(&header[..]),
                &mut chunk,
            ) {
                Ok(t) => t,
                Err(_) => {
                    failed = Some(VaultError::Undecryptable(Hash::ZERO));
                    break;
                }
            };
            blob_hash.update(&chunk);
            blob_hash.update(tag.as_ref());
            if let Err(e) = out
                .write_all(&chunk)
                .and_then(|()| out.write_all(tag.as_ref()))
            {
                failed = Some(e.into());
                break;
            }
            blob_size += (chunk.len() + TAG) as u64;
            let _ = back.try_send(chunk);
            index = match index.checked_add(1) {
                Some(i) => i,
                None => {
                    failed = Some(VaultError::Io(std::io::Error::other(
                        "document too large for one blob (2^32 chunks)",
                    )));
                    break;
                }
            };
        }
        drop(rx);
        let read = reader.join().expect("reader thread")?;
        match failed {
            Some(e) => Err(e),
            None => Ok(read),
        }
    })?;
    out.flush()?;
    Ok(Stored {
        blob: Hash(*blob_hash.finalize().as_bytes()),
        plaintext_sha256: plain_hash,
        size,
        blob_size,
    })
}

/// Decrypts a blob for a reader that compares the plaintext's SHA-256 (returned) with its
/// anchor, as a client's download does; the plaintext is handed over as owned chunks, in order
/// and without a copy, for a writer on another thread, which may send the buffers back on
/// `recycle` to be filled again. The caller must discard the chunks on error.
///
/// The ciphertext's address (BLAKE3) is not re-hashed here: with the plaintext's SHA-256
/// checked against the chain it proves nothing more. AES-GCM authenticates every chunk and the
/// STREAM nonces pin each chunk's place and the end, so any change to the blob fails to
/// decrypt, and a blob made under the same key for other content fails the SHA-256 check.
/// Where a blob is *stored* (a node receiving an upload or fetching from a peer, the audit),
/// its address is checked.
pub fn decrypt_chunks(
    input: impl Read,
    blob: &Hash,
    key: &DocKey,
    chunks: std::sync::mpsc::SyncSender<Vec<u8>>,
    recycle: std::sync::mpsc::Receiver<Vec<u8>>,
    progress: &dyn Fn(u64),
) -> Result<Hash, VaultError> {
    decrypt(input, blob, key, Sink::Chunks(chunks, recycle), progress)
}

/// Where decrypted chunks go.
enum Sink<'a> {
    /// Written in order on the decrypting thread.
    Writer(&'a mut dyn Write),
    /// Handed over, after hashing, as owned buffers; buffers that come back are reused.
    Chunks(
        std::sync::mpsc::SyncSender<Vec<u8>>,
        std::sync::mpsc::Receiver<Vec<u8>>,
    ),
}

/// A buffer for one ciphertext chunk: a recycled one if any came back (its stale bytes are
/// overwritten by the next read), else a new one.
fn chunk_buffer(recycle: Option<&std::sync::mpsc::Receiver<Vec<u8>>>) -> Vec<u8> {
    let mut buf = recycle.and_then(|r| r.try_recv().ok()).unwrap_or_default();
    buf.resize(CHUNK + TAG, 0);
    buf
}

/// Decrypts a blob from `r` into `out`, authenticating every chunk; returns the plaintext's
/// SHA-256. `blob` only names the blob in errors.
fn decrypt(
    mut r: impl Read,
    blob: &Hash,
    key: &DocKey,
    out: Sink<'_>,
    progress: &dyn Fn(u64),
) -> Result<Hash, VaultError> {
    {
        let mut header = [0u8; HEADER];
        if fill(&mut r, &mut header)? != HEADER
            || &header[..4] != MAGIC
            || u32::from_be_bytes(header[4..8].try_into().expect("4 bytes")) as usize != CHUNK
        {
            return Err(VaultError::Format(*blob));
        }
        let prefix: [u8; 8] = header[8..].try_into().expect("8 bytes");
        let aead = key.aead();
        // Two threads: this one reads, decrypts and writes; a helper hashes the plaintext (and
        // hands it on when the sink takes chunks).
        let (mut writer, forward, recycle) = match out {
            Sink::Writer(w) => (Some(w), None, None),
            Sink::Chunks(c, r) => (None, Some(c), Some(r)),
        };
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(PIPELINE_DEPTH);
        std::thread::scope(|s| -> Result<Hash, VaultError> {
            let hasher = s.spawn(move || {
                let mut sha = Sha256::new();
                for chunk in rx.iter() {
                    sha.update(&chunk);
                    if let Some(f) = &forward {
                        if f.send(chunk).is_err() {
                            break; // the writer stopped; its error is reported by the caller
                        }
                    }
                }
                Hash(sha.finalize().into())
            });
            let mut done = 0u64;
            let mut cur = chunk_buffer(recycle.as_ref());
            let mut n = fill(&mut r, &mut cur)?;
            let mut index: u32 = 0;
            loop {
                if n < TAG {
                    return Err(VaultError::Undecryptable(*blob));
                }
                let mut next = chunk_buffer(recycle.as_ref());
                let m = if n == CHUNK + TAG {
                    fill(&mut r, &mut next)?
                } else {
                    0
                };
                let last = m == 0;
                cur.truncate(n);
                let plain = aead
                    .open_in_place(
                        nonce(&prefix, index, last),
                        Aad::from(&header[..]),
                        &mut cur,
                    )
                    .map_err(|_| VaultError::Undecryptable(*blob))?;
                if let Some(w) = writer.as_mut() {
                    w.write_all(plain)?;
                }
                let len = plain.len();
                done += len as u64;
                progress(done);
                cur.truncate(len);
                if tx.send(cur).is_err() {
                    break;
                }
                if last {
                    break;
                }
                cur = next;
                n = m;
                index = index
                    .checked_add(1)
                    .ok_or(VaultError::Undecryptable(*blob))?;
            }
            drop(tx);
            if let Some(w) = writer.as_mut() {
                w.flush()?;
            }
            Ok(hasher.join().expect("hashing thread"))
        })
    }
}

impl Vault {
    /// Re-hashes a blob and compares with its address (the verifier's audit needs no key).
    pub fn verify(&self, blob: &Hash) -> Result<(), VaultError> {
        let mut r = self.open_blob(blob)?;
        let mut h = blake3::Hasher::new();
        loop {
            let chunk = r.next_chunk()?;
            if chunk.is_empty() {
                break;
            }
            h.update(chunk);
        }
        if Hash(*h.finalize().as_bytes()) == *blob {
            Ok(())
        } else {
            Err(VaultError::Corrupted(*blob))
        }
    }

    /// Stores a blob fetched from another node, checking on arrival that its bytes hash to
    /// `expected`; nothing is kept if they do not.
    pub fn import(&self, bytes: impl BufRead, expected: &Hash) -> Result<u64, VaultError> {
        let (tmp, result) = self.receive(bytes);
        match result {
            Ok((hash, size)) if hash == *expected => {
                std::fs::rename(&tmp, self.path(expected))?;
                File::open(&self.dir)?.sync_all()?;
                Ok(size)
            }
            Ok(_) => {
                let _ = std::fs::remove_file(&tmp);
                Err(VaultError::Corrupted(*expected))
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// Stores a blob whose address is not known in advance (an upload streamed while it is
    /// being encrypted); returns its address (BLAKE3 of the bytes) and size. `keep` sees the
    /// address first and may refuse it (say, an erased blob); nothing is stored then.
    pub fn import_new(
        &self,
        bytes: impl BufRead,
        keep: impl FnOnce(&Hash) -> Result<(), VaultError>,
    ) -> Result<(Hash, u64), VaultError> {
        let (tmp, result) = self.receive(bytes);
        let done = result.and_then(|(hash, size)| {
            keep(&hash)?;
            std::fs::rename(&tmp, self.path(&hash))?;
            File::open(&self.dir)?.sync_all()?;
            Ok((hash, size))
        });
        if done.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        done
    }

    /// Writes `bytes` to a new temporary file, durably and past the page cache (direct I/O),
    /// hashing them; returns the file and (address, size). The bytes are hashed and written
    /// where the reader holds them (a request body's own buffers), not copied out first.
    fn receive(&self, mut bytes: impl BufRead) -> (PathBuf, Result<(Hash, u64), VaultError>) {
        let tmp = self
            .dir
            .join(format!(".import-{}", hex_token(&mut rand::rngs::OsRng)));
        let result = (|| -> Result<(Hash, u64), VaultError> {
            let mut out = crate::direct::DirectWriter::create(&tmp)?;
            let mut h = blake3::Hasher::new();
            loop {
                let piece = match bytes.fill_buf() {
                    Ok(p) => p,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e.into()),
                };
                if piece.is_empty() {
                    break;
                }
                h.update(piece);
                out.write_all(piece)?;
                let n = piece.len();
                bytes.consume(n);
            }
            let size = out.finish()?;
            Ok((Hash(*h.finalize().as_bytes()), size))
        })();
        (tmp, result)
    }

    /// Destroys a blob (part of crypto-shredding; the wrapped keys go with the chain record).
    pub fn erase(&self, blob: &Hash) -> Result<(), VaultError> {
        match std::fs::remove_file(self.path(blob)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

fn hex_token(rng: &mut impl rand::RngCore) -> String {
    let mut b = [0u8; 12];
    rng.fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, seed: u8) -> Vec<u8> {
        (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect()
    }

    #[test]
    fn round_trips_at_chunk_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let v = Vault::open(dir.path()).unwrap();
        for n in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 7] {
            let plain = data(n, 7);
            let key = DocKey::generate();
            let s = v.put(&plain[..], &key, &|_| {}).unwrap();
            assert_eq!(s.size, n as u64);
            assert_eq!(s.plaintext_sha256, medchain_types::sha256(&plain));
            v.verify(&s.blob).unwrap();
            let mut out = Vec::new();
            let h = v.get(&s.blob, &key, &mut out, &|_| {}).unwrap();
            assert_eq!(out, plain, "n = {n}");
            assert_eq!(h, s.plaintext_sha256);
            // No plaintext on disk: a 64-byte window of the document is nowhere in the blob.
            if n >= 64 {
                let blob = std::fs::read(v.path(&s.blob)).unwrap();
                assert!(!blob.windows(64).any(|w| w == &plain[n / 2..n / 2 + 64]));
            }
        }
    }

    #[test]
    fn tampering_truncation_and_wrong_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let v = Vault::open(dir.path()).unwrap();
        let plain = data(3 * CHUNK + 100, 1);
        let key = DocKey::generate();
        let s = v.put(&plain[..], &key, &|_| {}).unwrap();
        let path = v.path(&s.blob);
        let orig = std::fs::read(&path).unwrap();
        let wrong = DocKey::generate();
        assert!(matches!(
            v.get(&s.blob, &wrong, std::io::sink(), &|_| {}),
            Err(VaultError::Undecryptable(_))
        ));
        // One flipped byte: the audit sees it and decryption refuses it.
        let mut bad = orig.clone();
        bad[HEADER + CHUNK + 5] ^= 1;
        std::fs::write(&path, &bad).unwrap();
        assert!(matches!(v.verify(&s.blob), Err(VaultError::Corrupted(_))));
        assert!(v.get(&s.blob, &key, std::io::sink(), &|_| {}).is_err());
        // Cut at a chunk boundary: the missing final flag is caught.
        std::fs::write(&path, &orig[..HEADER + 2 * (CHUNK + TAG)]).unwrap();
        assert!(v.get(&s.blob, &key, std::io::sink(), &|_| {}).is_err());
        // Two chunks swapped.
        let mut swapped = orig.clone();
        let (a, b) = (HEADER, HEADER + CHUNK + TAG);
        let first = orig[a..b].to_vec();
        swapped[a..b].copy_from_slice(&orig[b..b + CHUNK + TAG]);
        swapped[b..b + CHUNK + TAG].copy_from_slice(&first);
        std::fs::write(&path, &swapped).unwrap();
        assert!(v.get(&s.blob, &key, std::io::sink(), &|_| {}).is_err());
        // Missing blob.
        assert!(matches!(
            v.get(&Hash([9; 32]), &key, std::io::sink(), &|_| {}),
            Err(VaultError::NotFound(_))
        ));
    }

    #[test]
    fn import_checks_the_address_and_erase_removes() {
        let dir = tempfile::tempdir().unwrap();
        let a = Vault::open(dir.path().join("a")).unwrap();
        let b = Vault::open(dir.path().join("b")).unwrap();
        let key = DocKey::generate();
        let s = a.put(&data(100_000, 3)[..], &key, &|_| {}).unwrap();
        let bytes = std::fs::read(a.path(&s.blob)).unwrap();
        let mut bad = bytes.clone();
        bad[100] ^= 0x80;
        assert!(b.import(&bad[..], &s.blob).is_err());
        assert!(!b.contains(&s.blob));
        b.import(&bytes[..], &s.blob).unwrap();
        assert_eq!(b.list().unwrap(), vec![s.blob]);
        a.erase(&s.blob).unwrap();
        assert!(!a.contains(&s.blob));
        assert!(matches!(
            a.get(&s.blob, &key, std::io::sink(), &|_| {}),
            Err(VaultError::NotFound(_))
        ));
    }

    /// Runs [`decrypt_chunks`] with a collector that sends every buffer back for reuse.
    fn decrypt_collecting(
        bytes: &[u8],
        blob: &Hash,
        key: &DocKey,
    ) -> (Result<Hash, VaultError>, Vec<u8>) {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(2);
        let (back, recycle) = std::sync::mpsc::sync_channel(8);
        let collector = std::thread::spawn(move || {
            let mut all = Vec::new();
            for chunk in rx {
                all.extend_from_slice(&chunk);
                let _ = back.try_send(chunk);
            }
            all
        });
        let sha = decrypt_chunks(bytes, blob, key, tx, recycle, &|_| {});
        (sha, collector.join().unwrap())
    }

    #[test]
    fn a_download_handed_over_in_recycled_chunks_is_the_document_and_tampering_fails() {
        let dir = tempfile::tempdir().unwrap();
        let v = Vault::open(dir.path()).unwrap();
        let key = DocKey::generate();
        for n in [0, 9, CHUNK, 2 * CHUNK + 9, 5 * CHUNK] {
            let plain = data(n, 6);
            let s = v.put(&plain[..], &key, &|_| {}).unwrap();
            let bytes = std::fs::read(v.path(&s.blob)).unwrap();
            let (sha, out) = decrypt_collecting(&bytes, &s.blob, &key);
            assert_eq!((sha.unwrap(), out), (s.plaintext_sha256, plain), "n = {n}");
            // Each change to the blob fails: a flipped bit, a byte more, a chunk less, a cut
            // inside a chunk, two chunks swapped, another key.
            let mut altered = vec![];
            let mut flipped = bytes.clone();
            flipped[HEADER + 5] ^= 1;
            altered.push(("a flipped bit", flipped));
            let mut longer = bytes.clone();
            longer.push(0);
            altered.push(("a byte more", longer));
            altered.push(("a cut inside a chunk", bytes[..bytes.len() - 1].to_vec()));
            let sealed = CHUNK + TAG;
            if n >= 2 * CHUNK {
                altered.push((
                    "the last chunk dropped",
                    bytes[..HEADER + 2 * sealed].to_vec(),
                ));
                let mut swapped = bytes.clone();
                swapped[HEADER..HEADER + sealed]
                    .copy_from_slice(&bytes[HEADER + sealed..HEADER + 2 * sealed]);
                swapped[HEADER + sealed..HEADER + 2 * sealed]
                    .copy_from_slice(&bytes[HEADER..HEADER + sealed]);
                altered.push(("two chunks swapped", swapped));
            }
            for (what, b) in altered {
                let (sha, out) = decrypt_collecting(&b, &s.blob, &key);
                assert!(sha.is_err(), "{what} (n = {n})");
                // Chunks before the damage may have been handed over; the caller discards them.
                assert!(out.len() <= plain_len_before_damage(&b, &bytes), "{what}");
            }
            let (sha, _) = decrypt_collecting(&bytes, &s.blob, &DocKey::generate());
            assert!(sha.is_err(), "another key (n = {n})");
        }
    }

    /// The plaintext bytes of the whole chunks that `altered` and `original` share.
    fn plain_len_before_damage(altered: &[u8], original: &[u8]) -> usize {
        let same = altered
            .iter()
            .zip(original)
            .skip(HEADER)
            .take_while(|(a, b)| a == b)
            .count();
        same / (CHUNK + TAG) * CHUNK
    }
}
