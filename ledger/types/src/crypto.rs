//! ed25519 keys and signatures (`ed25519-dalek`), always over domain-separated bytes.
//!
//! Signed bytes are `"medchain-sig/1" || len(chain_id) || chain_id || len(kind) || kind || msg`,
//! so a signature made for one chain, or for one kind of message (a transaction, a PBFT vote, a
//! share link), is never valid for another. Single signatures are checked with `verify_strict`
//! (rejects small-order keys and non-canonical encodings).

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

crate::bytes::fixed_bytes!(
    /// An ed25519 public key (compressed Edwards point).
    PublicKey,
    32
);

crate::bytes::fixed_bytes!(
    /// An ed25519 signature (R || s).
    Signature,
    64
);

const SIG_PREFIX: &[u8] = b"medchain-sig/1";

/// What a signature is for. Each kind of signed message has its own constant, so signatures
/// cannot be replayed across message kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Domain(pub &'static str);

impl Domain {
    /// A client transaction.
    pub const TRANSACTION: Domain = Domain("tx");
    /// A test-only domain.
    pub const TEST: Domain = Domain("test");
}

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The public key bytes are not a valid curve point.
    #[error("public key is not a valid ed25519 point")]
    BadPublicKey,
    /// The signature does not verify for this key, domain, chain and message.
    #[error("signature does not verify")]
    Invalid,
}

/// Builds the exact bytes that are signed.
pub fn signing_bytes(domain: Domain, chain_id: &str, msg: &[u8]) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(SIG_PREFIX.len() + 2 + chain_id.len() + domain.0.len() + msg.len());
    out.extend_from_slice(SIG_PREFIX);
    // Both variable fields are short and bounded (chain id <= 64 bytes, domains are constants);
    // a length byte each makes the concatenation unambiguous.
    out.push(u8::try_from(chain_id.len()).expect("chain id length is bounded by CHAIN_ID_LEN_MAX"));
    out.extend_from_slice(chain_id.as_bytes());
    out.push(u8::try_from(domain.0.len()).expect("domain names are short constants"));
    out.extend_from_slice(domain.0.as_bytes());
    out.extend_from_slice(msg);
    out
}

/// An ed25519 secret key. Zeroised when dropped (by `ed25519-dalek`).
#[derive(Clone)]
pub struct SecretKey(SigningKey);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey(public {})", self.public())
    }
}

impl SecretKey {
    /// A new key from a cryptographically secure random source.
    pub fn generate<R: rand::CryptoRng + rand::RngCore>(rng: &mut R) -> Self {
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        let key = Self(SigningKey::from_bytes(&seed));
        seed.fill(0);
        key
    }

    /// The key with this 32-byte seed.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self(SigningKey::from_bytes(&seed))
    }

    /// The 32-byte seed (keep it secret).
    pub fn seed(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The matching public key.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes())
    }

    /// The X25519 secret scalar of this key (RFC 7748 form, from the same SHA-512 expansion
    /// ed25519 signs with), so one key per actor both signs and receives encrypted keys.
    /// Keep it secret.
    pub fn x25519_secret(&self) -> [u8; 32] {
        self.0.to_scalar_bytes()
    }

    /// Signs `msg` for `domain` on chain `chain_id`.
    pub fn sign(&self, domain: Domain, chain_id: &str, msg: &[u8]) -> Signature {
        Signature(
            self.0
                .sign(&signing_bytes(domain, chain_id, msg))
                .to_bytes(),
        )
    }
}

impl PublicKey {
    /// The X25519 public key of this ed25519 key (the birational map to Montgomery form), or
    /// `None` if the bytes are not a valid curve point.
    pub fn x25519(&self) -> Option<[u8; 32]> {
        verifying_key(self)
            .ok()
            .map(|k| k.to_montgomery().to_bytes())
    }

    /// Checks `sig` over `msg` for `domain` on chain `chain_id`, with `verify_strict`.
    pub fn verify(
        &self,
        domain: Domain,
        chain_id: &str,
        msg: &[u8],
        sig: &Signature,
    ) -> Result<(), SignatureError> {
        let key = verifying_key(self)?;
        let sig = ed25519_dalek::Signature::from_bytes(&sig.0);
        key.verify_strict(&signing_bytes(domain, chain_id, msg), &sig)
            .map_err(|_| SignatureError::Invalid)
    }
}

/// Decompressed public keys, cached: decompression is a field square root, a large share of a
/// signature check, and the same senders sign many transactions. Bounded; cleared when full.
fn verifying_key(pk: &PublicKey) -> Result<VerifyingKey, SignatureError> {
    const CACHE_MAX: usize = 8192;
    static CACHE: OnceLock<Mutex<HashMap<[u8; 32], VerifyingKey>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(k) = cache.lock().expect("key cache lock").get(&pk.0) {
        return Ok(*k);
    }
    let key = VerifyingKey::from_bytes(&pk.0).map_err(|_| SignatureError::BadPublicKey)?;
    let mut c = cache.lock().expect("key cache lock");
    if c.len() >= CACHE_MAX {
        c.clear();
    }
    c.insert(pk.0, key);
    Ok(key)
}

/// Every byte string that decompresses to a point of small order (the eight torsion points):
/// their canonical encodings, the same with the sign bit flipped (equal when x = 0), and the
/// non-canonical encodings y + p of those with y < 19 (y = 0 and y = 1). Comparing R's bytes
/// against this list replaces a decompression per signature.
fn small_order_encodings() -> &'static [[u8; 32]] {
    static LIST: OnceLock<Vec<[u8; 32]>> = OnceLock::new();
    LIST.get_or_init(|| {
        let mut out = Vec::new();
        // p = 2^255 - 19, little-endian.
        let mut p = [0xffu8; 32];
        p[0] = 0xed;
        p[31] = 0x7f;
        for point in curve25519_dalek::constants::EIGHT_TORSION.iter() {
            let enc = point.compress().to_bytes();
            let mut flipped = enc;
            flipped[31] ^= 0x80;
            out.push(enc);
            out.push(flipped);
            // y in {0, 1}: also encodable as y + p.
            let mut y = enc;
            y[31] &= 0x7f;
            if y[1..].iter().all(|b| *b == 0) && y[0] < 19 {
                let mut alt = p;
                alt[0] += y[0];
                out.push(alt);
                let mut alt_flipped = alt;
                alt_flipped[31] |= 0x80;
                out.push(alt_flipped);
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    })
}

/// Verifies many signatures at once; about twice as fast per signature as one by one for
/// batches of a few hundred. `items` are `(key, signing_bytes, signature)` where the bytes come
/// from [`signing_bytes`].
///
/// Returns `Ok` only if every signature is valid. Keys and `R` points of small order are refused
/// up front, as `verify_strict` refuses them; a batch that fails is re-checked item by item with
/// `verify_strict` to name the first bad index.
pub fn batch_verify(
    items: &[(PublicKey, Vec<u8>, Signature)],
) -> Result<(), (usize, SignatureError)> {
    let mut keys = Vec::with_capacity(items.len());
    let mut sigs = Vec::with_capacity(items.len());
    let small = small_order_encodings();
    for (i, (pk, _, sig)) in items.iter().enumerate() {
        let key = verifying_key(pk).map_err(|e| (i, e))?;
        let r: [u8; 32] = sig.0[..32].try_into().expect("64-byte signature");
        if key.is_weak() || small.binary_search(&r).is_ok() {
            return Err((i, SignatureError::Invalid));
        }
        keys.push(key);
        sigs.push(ed25519_dalek::Signature::from_bytes(&sig.0));
    }
    let msgs: Vec<&[u8]> = items.iter().map(|(_, m, _)| m.as_slice()).collect();
    if ed25519_dalek::verify_batch(&msgs, &sigs, &keys).is_ok() {
        return Ok(());
    }
    for (i, ((key, msg), sig)) in keys.iter().zip(&msgs).zip(&sigs).enumerate() {
        key.verify_strict(msg, sig)
            .map_err(|_| (i, SignatureError::Invalid))?;
    }
    // The batch failed but every item passes strictly: only possible for crafted mixed-order
    // points; refuse the whole batch rather than accept something the batch equation rejects.
    Err((0, SignatureError::Invalid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn key(n: u8) -> SecretKey {
        SecretKey::from_seed([n; 32])
    }

    #[test]
    fn sign_and_verify_with_domain_separation() {
        let k = key(1);
        let sig = k.sign(Domain::TRANSACTION, "chain-a", b"hello");
        let pk = k.public();
        assert_eq!(
            pk.verify(Domain::TRANSACTION, "chain-a", b"hello", &sig),
            Ok(())
        );
        // Another chain, another kind, another message, another key: all refused.
        assert_eq!(
            pk.verify(Domain::TRANSACTION, "chain-b", b"hello", &sig),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            pk.verify(Domain::TEST, "chain-a", b"hello", &sig),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            pk.verify(Domain::TRANSACTION, "chain-a", b"hellO", &sig),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            key(2)
                .public()
                .verify(Domain::TRANSACTION, "chain-a", b"hello", &sig),
            Err(SignatureError::Invalid)
        );
    }

    #[test]
    fn ambiguous_concatenations_are_distinct() {
        // "ab" + kind "c" must not equal "a" + kind "bc".
        assert_ne!(
            signing_bytes(Domain("c"), "ab", b""),
            signing_bytes(Domain("bc"), "a", b"")
        );
    }

    #[test]
    fn small_order_key_is_refused() {
        // The identity point: a small-order key for which naive verification accepts forgeries.
        let mut id = [0u8; 32];
        id[0] = 1;
        let pk = PublicKey(id);
        let sig = Signature([0; 64]);
        assert!(pk.verify(Domain::TEST, "c", b"m", &sig).is_err());
        assert!(batch_verify(&[(pk, signing_bytes(Domain::TEST, "c", b"m"), sig)]).is_err());
    }

    #[test]
    fn batch_finds_the_bad_item() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
        let mut items: Vec<_> = (0..64)
            .map(|i| {
                let k = SecretKey::generate(&mut rng);
                let msg = signing_bytes(Domain::TEST, "c", &[i as u8]);
                let sig = k.sign(Domain::TEST, "c", &[i as u8]);
                (k.public(), msg, sig)
            })
            .collect();
        assert_eq!(batch_verify(&items), Ok(()));
        items[17].1.push(0);
        assert_eq!(batch_verify(&items), Err((17, SignatureError::Invalid)));
    }

    #[test]
    fn the_small_order_list_is_exactly_what_decompresses_to_small_order() {
        let list = small_order_encodings();
        for enc in list {
            let point = curve25519_dalek::edwards::CompressedEdwardsY(*enc).decompress();
            assert!(
                point.is_some_and(|p| p.is_small_order()),
                "{} is listed",
                hex::encode(enc)
            );
        }
        // Every torsion point's canonical encoding is there, and ordinary R values are not.
        for t in curve25519_dalek::constants::EIGHT_TORSION.iter() {
            assert!(list.binary_search(&t.compress().to_bytes()).is_ok());
        }
        let sig = key(3).sign(Domain::TEST, "c", b"m");
        let r: [u8; 32] = sig.0[..32].try_into().unwrap();
        assert!(list.binary_search(&r).is_err());
        // A signature whose R is the identity is refused by the batch path as by verify_strict.
        let mut forged = sig;
        forged.0[..32].copy_from_slice(
            &curve25519_dalek::edwards::EdwardsPoint::default()
                .compress()
                .to_bytes(),
        );
        let pk = key(3).public();
        assert!(pk.verify(Domain::TEST, "c", b"m", &forged).is_err());
        assert!(batch_verify(&[(pk, signing_bytes(Domain::TEST, "c", b"m"), forged)]).is_err());
    }

    #[test]
    fn seed_round_trip() {
        let k = key(9);
        assert_eq!(SecretKey::from_seed(k.seed()).public(), k.public());
    }
}
