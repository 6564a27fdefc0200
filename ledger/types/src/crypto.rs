//! ed25519 keys and signatures (`ed25519-dalek`), always over domain-separated bytes.
//!
//! Signed bytes are `"medchain-sig/1" || len(chain_id) || chain_id || len(kind) || kind || msg`,
//! so a signature made for one chain, or for one kind of message (a transaction, a PBFT vote, a
//! share link), is never valid for another. Single signatures are checked with `verify_strict`
//! (rejects small-order keys and non-canonical encodings); transactions, alone or in batches,
//! with [`batch_verify`]'s cofactored rule, so that every node decides alike.

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
    let mut out = signing_prefix(domain, chain_id, msg.len());
    out.extend_from_slice(msg);
    out
}

/// The bytes [`signing_bytes`] puts before the message, in a buffer with room for `msg_len` more
/// (for callers that encode the message straight after them).
pub fn signing_prefix(domain: Domain, chain_id: &str, msg_len: usize) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(SIG_PREFIX.len() + 2 + chain_id.len() + domain.0.len() + msg_len);
    out.extend_from_slice(SIG_PREFIX);
    // Both variable fields are short and bounded (chain id <= 64 bytes, domains are constants);
    // a length byte each makes the concatenation unambiguous.
    out.push(u8::try_from(chain_id.len()).expect("chain id length is bounded by CHAIN_ID_LEN_MAX"));
    out.extend_from_slice(chain_id.as_bytes());
    out.push(u8::try_from(domain.0.len()).expect("domain names are short constants"));
    out.extend_from_slice(domain.0.as_bytes());
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
    cached_key(pk).map(|(key, _)| key)
}

/// [`verifying_key`] with whether the key is weak (of small order), cached with it: the check
/// is three point doublings, worth skipping for every signature of a known sender. The cache is
/// keyed by bytes anyone can choose, so it keeps std's SipHash with its random keys.
fn cached_key(pk: &PublicKey) -> Result<(VerifyingKey, bool), SignatureError> {
    const CACHE_MAX: usize = 8192;
    type Cache = Mutex<HashMap<[u8; 32], (VerifyingKey, bool)>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(k) = cache.lock().expect("key cache lock").get(&pk.0) {
        return Ok(*k);
    }
    let key = VerifyingKey::from_bytes(&pk.0).map_err(|_| SignatureError::BadPublicKey)?;
    let entry = (key, key.is_weak());
    let mut c = cache.lock().expect("key cache lock");
    if c.len() >= CACHE_MAX {
        c.clear();
    }
    c.insert(pk.0, entry);
    Ok(entry)
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

/// Verifies many signatures at once; two to three times as fast per signature as one by one
/// for batches of a few hundred. `items` are `(key, signing_bytes, signature)` where the bytes
/// come from [`signing_bytes`]. This is the rule for transactions, whatever path they come by
/// (`Transaction::verify` checks a batch of one).
///
/// The rule is the cofactored equation `[8][s]B = [8]R + [8][k]A`, `k = SHA-512(R || A || M)`,
/// the choice ZIP 215 made for a consensus system: a batch passes exactly when every item
/// passes on its own, so whether a transaction is valid never depends on which other
/// transactions share its batch, nor on the batch's random coefficients, and every node decides
/// alike. (The cofactorless equation of `verify_strict` and of `ed25519_dalek::verify_batch`
/// lets an `R` with a small-order component pass a random batch about half the time.) On top,
/// keys and `R` of small order, and an `s` not below the group order, are refused, as
/// `verify_strict` refuses them.
///
/// A batch checks `[8]([-Σ zᵢsᵢ]B + Σ [zᵢ]Rᵢ + Σ [zᵢkᵢ]Aᵢ) = 0` with random odd 128-bit `zᵢ`
/// from the thread's CSPRNG (Bernstein et al., "High-speed high-security signatures", §5), one
/// multiscalar multiplication. The terms of one key are summed into one point, `[Σ zᵢkᵢ]A`: the
/// same sum with fewer points, so a batch from a few senders costs about half the
/// multiplication of one from as many senders as signatures. When a batch fails, each item is
/// checked alone to name the first bad one.
pub fn batch_verify(
    items: &[(PublicKey, Vec<u8>, Signature)],
) -> Result<(), (usize, SignatureError)> {
    if items.len() > 1 && batch_holds(items)? {
        return Ok(());
    }
    verify_each(items)
}

/// The batch equation of [`batch_verify`] alone: `Ok(true)` exactly when every item passes
/// (then [`batch_verify`] would return `Ok`), `Ok(false)` when some item fails (find it with
/// [`verify_each`]), `Err` for an item that cannot be a signature at all.
pub fn batch_holds(
    items: &[(PublicKey, Vec<u8>, Signature)],
) -> Result<bool, (usize, SignatureError)> {
    cofactored(items, true)
}

/// [`batch_verify`]'s rule applied to each item alone, in order: `Err` names the first bad one.
pub fn verify_each(
    items: &[(PublicKey, Vec<u8>, Signature)],
) -> Result<(), (usize, SignatureError)> {
    for (i, item) in items.iter().enumerate() {
        if !cofactored(std::slice::from_ref(item), false).map_err(|(_, e)| (i, e))? {
            return Err((i, SignatureError::Invalid));
        }
    }
    Ok(())
}

/// The cofactored batch equation over `items`, with random coefficients if `random` (else all
/// 1, for a single item). `Err` for an item that cannot be a signature at all.
fn cofactored(
    items: &[(PublicKey, Vec<u8>, Signature)],
    random: bool,
) -> Result<bool, (usize, SignatureError)> {
    use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
    use curve25519_dalek::scalar::Scalar;
    use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
    use rand::RngCore;
    use sha2::{Digest, Sha512};

    let small = small_order_encodings();
    let mut rng = rand::thread_rng();
    // Points: B, then each R, then each distinct key; scalars in the same order.
    let mut points = Vec::with_capacity(2 * items.len() + 1);
    let mut scalars = Vec::with_capacity(2 * items.len() + 1);
    points.push(curve25519_dalek::constants::ED25519_BASEPOINT_POINT);
    scalars.push(Scalar::ZERO);
    let mut b_coefficient = Scalar::ZERO;
    // Each distinct key once: its point and the sum of its coefficients. A key is resolved (and
    // refused if weak) on its first appearance only.
    let mut keys: Vec<(EdwardsPoint, Scalar)> = Vec::new();
    let mut key_slot: HashMap<[u8; 32], usize> = HashMap::new();
    for (i, (pk, msg, sig)) in items.iter().enumerate() {
        let slot = match key_slot.get(&pk.0) {
            Some(&slot) => slot,
            None => {
                let (key, weak) = cached_key(pk).map_err(|e| (i, e))?;
                if weak {
                    return Err((i, SignatureError::Invalid));
                }
                keys.push((key.to_edwards(), Scalar::ZERO));
                key_slot.insert(pk.0, keys.len() - 1);
                keys.len() - 1
            }
        };
        let r_bytes: [u8; 32] = sig.0[..32].try_into().expect("64-byte signature");
        let s_bytes: [u8; 32] = sig.0[32..].try_into().expect("64-byte signature");
        if small.binary_search(&r_bytes).is_ok() {
            return Err((i, SignatureError::Invalid));
        }
        let (Some(s), Some(r)) = (
            Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes)),
            CompressedEdwardsY(r_bytes).decompress(),
        ) else {
            return Err((i, SignatureError::Invalid));
        };
        let k = Scalar::from_bytes_mod_order_wide(
            &Sha512::new()
                .chain_update(r_bytes)
                .chain_update(pk.0)
                .chain_update(msg)
                .finalize()
                .into(),
        );
        let z = if random {
            let mut z_bytes = [0u8; 32];
            rng.fill_bytes(&mut z_bytes[..16]);
            // Odd, so never zero: a zero coefficient would drop its item from the check.
            z_bytes[0] |= 1;
            Scalar::from_bytes_mod_order(z_bytes)
        } else {
            Scalar::ONE
        };
        b_coefficient += z * s;
        points.push(r);
        scalars.push(z);
        keys[slot].1 += z * k;
    }
    scalars[0] = -b_coefficient;
    for (point, coefficient) in keys {
        points.push(point);
        scalars.push(coefficient);
    }
    Ok(EdwardsPoint::vartime_multiscalar_mul(&scalars, &points)
        .mul_by_cofactor()
        .is_identity())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngCore, SeedableRng};

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

    /// A small-order key is refused at its index, among few senders or many, although the
    /// batch checks each sender's key for small order on its first appearance only.
    #[test]
    fn small_order_key_is_refused_in_batches_of_few_and_many_senders() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(5);
        // The identity as key with R = [s]B: a forgery that the equation alone accepts.
        let mut id = [0u8; 32];
        id[0] = 1;
        let s = curve25519_dalek::Scalar::from(12_345u64);
        let r = (curve25519_dalek::constants::ED25519_BASEPOINT_POINT * s).compress();
        let mut forged = [0u8; 64];
        forged[..32].copy_from_slice(r.as_bytes());
        forged[32..].copy_from_slice(s.as_bytes());
        let weak = (
            PublicKey(id),
            signing_bytes(Domain::TEST, "c", b"m"),
            Signature(forged),
        );
        for senders in [2, 20] {
            let keys: Vec<SecretKey> = (0..senders)
                .map(|_| SecretKey::generate(&mut rng))
                .collect();
            let mut items: Vec<_> = (0..30)
                .map(|i| {
                    let k = &keys[i % senders];
                    let body = [i as u8];
                    (
                        k.public(),
                        signing_bytes(Domain::TEST, "c", &body),
                        k.sign(Domain::TEST, "c", &body),
                    )
                })
                .collect();
            // The batch equation itself holds (batch_verify would fall back to one by one).
            assert_eq!(batch_holds(&items), Ok(true), "{senders} senders");
            items[25] = weak.clone();
            assert_eq!(cofactored(&items, true), Err((25, SignatureError::Invalid)));
            assert_eq!(
                batch_verify(&items),
                Err((25, SignatureError::Invalid)),
                "{senders} senders"
            );
        }
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

    /// The batch check against each item checked alone, `verify_strict` and
    /// `ed25519_dalek::verify_batch`, on many random batches of honest points (where the
    /// cofactored and cofactorless rules agree): few and many senders, valid and with one item
    /// broken in each way a signature can be wrong, including two signatures of one sender
    /// swapped (the case where summing a sender's terms must not let errors cancel).
    #[test]
    fn batch_agrees_with_one_by_one_and_with_dalek() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(11);
        let mut swapped_same_sender = 0;
        for round in 0..90u64 {
            let senders: Vec<SecretKey> = (0..[1, 3, 40][(round / 6) as usize % 3])
                .map(|_| SecretKey::generate(&mut rng))
                .collect();
            let n = 2 + (rng.next_u32() % 90) as usize;
            let mut items: Vec<(PublicKey, Vec<u8>, Signature)> = (0..n)
                .map(|i| {
                    let k = &senders[i % senders.len()];
                    let body = [round as u8, i as u8, 7];
                    (
                        k.public(),
                        signing_bytes(Domain::TEST, "c", &body),
                        k.sign(Domain::TEST, "c", &body),
                    )
                })
                .collect();
            let bad = (rng.next_u32() as usize) % n;
            let broken = round % 6;
            match broken {
                0 => {}
                1 => items[bad].1.push(1),
                2 => items[bad].2 .0[40] ^= 4,
                3 => items[bad].2 .0[2] ^= 1,
                4 => {
                    // s + l: the same value mod l, not canonical (malleability).
                    let l: [u8; 32] = hex::decode(
                        "edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010",
                    )
                    .unwrap()
                    .try_into()
                    .unwrap();
                    let s: [u8; 32] = items[bad].2 .0[32..].try_into().unwrap();
                    let mut sum = [0u8; 32];
                    let mut carry = 0u16;
                    for j in 0..32 {
                        let v = u16::from(s[j]) + u16::from(l[j]) + carry;
                        sum[j] = v as u8;
                        carry = v >> 8;
                    }
                    items[bad].2 .0[32..].copy_from_slice(&sum);
                }
                _ => {
                    // Another signature of the same sender (items i and i ± senders).
                    let m = senders.len();
                    let other = if bad + m < n {
                        bad + m
                    } else if bad >= m {
                        bad - m
                    } else {
                        bad
                    };
                    if other != bad {
                        swapped_same_sender += 1;
                        let sig = items[other].2;
                        items[other].2 = items[bad].2;
                        items[bad].2 = sig;
                    } else {
                        items[bad].1.push(2);
                    }
                }
            }
            let first_bad = items.iter().position(|(pk, msg, sig)| {
                verifying_key(pk)
                    .unwrap()
                    .verify_strict(msg, &ed25519_dalek::Signature::from_bytes(&sig.0))
                    .is_err()
            });
            let alone = items
                .iter()
                .position(|item| batch_verify(std::slice::from_ref(item)).is_err());
            assert_eq!(alone, first_bad, "round {round}, broken {broken}");
            let keys: Vec<_> = items
                .iter()
                .map(|(pk, _, _)| verifying_key(pk).unwrap())
                .collect();
            let msgs: Vec<&[u8]> = items.iter().map(|(_, m, _)| m.as_slice()).collect();
            let sigs: Vec<_> = items
                .iter()
                .map(|(_, _, s)| ed25519_dalek::Signature::from_bytes(&s.0))
                .collect();
            let dalek = ed25519_dalek::verify_batch(&msgs, &sigs, &keys).is_ok();
            let ours = batch_verify(&items);
            assert_eq!(ours.is_ok(), dalek, "round {round}, broken {broken}");
            // The batch equation itself, not only its result after the item-by-item fallback
            // (which would hide a batch path that refuses good batches).
            assert_eq!(
                cofactored(&items, true).unwrap_or(false),
                first_bad.is_none(),
                "round {round}, broken {broken}"
            );
            assert_eq!(
                ours.is_ok(),
                first_bad.is_none(),
                "round {round}, broken {broken}"
            );
            if let Some(i) = first_bad {
                assert_eq!(ours, Err((i, SignatureError::Invalid)), "round {round}");
                assert_ne!(broken, 0);
            }
        }
        assert!(
            swapped_same_sender >= 10,
            "{swapped_same_sender} same-sender swaps"
        );
    }

    /// A signature whose `R` has a small-order component: `R = [r]B + T` with `T` of order 2 and
    /// `s = r + k·a`. The cofactorless equation leaves `T` over, so a random batch would pass
    /// it about half the time and nodes would disagree. The cofactored rule decides the same
    /// every time, alone or in any batch; a wrong `s` with the same `R` always fails.
    #[test]
    fn an_r_with_a_torsion_component_is_decided_alike_every_time() {
        use curve25519_dalek::scalar::Scalar;
        use sha2::{Digest, Sha512};
        let key = key(5);
        // The signing scalar: SHA-512 of the seed's first half, clamped (RFC 8032 §5.1.5).
        let mut a_bytes = key.x25519_secret();
        a_bytes[0] &= 248;
        a_bytes[31] &= 127;
        a_bytes[31] |= 64;
        let a = Scalar::from_bytes_mod_order(a_bytes);
        assert_eq!(
            (curve25519_dalek::constants::ED25519_BASEPOINT_POINT * a)
                .compress()
                .to_bytes(),
            key.public().0
        );
        let msg = signing_bytes(Domain::TEST, "c", b"torsion");
        let r = Scalar::from_bytes_mod_order([9; 32]);
        let big_r = curve25519_dalek::constants::ED25519_BASEPOINT_POINT * r
            + curve25519_dalek::constants::EIGHT_TORSION[4];
        let r_bytes = big_r.compress().to_bytes();
        let k = Scalar::from_bytes_mod_order_wide(
            &Sha512::new()
                .chain_update(r_bytes)
                .chain_update(key.public().0)
                .chain_update(&msg)
                .finalize()
                .into(),
        );
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&r_bytes);
        sig[32..].copy_from_slice((r + k * a).as_bytes());
        let item = (key.public(), msg.clone(), Signature(sig));
        // verify_strict refuses it; the cofactored rule accepts it, every time.
        assert!(key
            .public()
            .verify(Domain::TEST, "c", b"torsion", &Signature(sig))
            .is_err());
        let honest: Vec<_> = (0..40u8)
            .map(|i| {
                let k = SecretKey::from_seed([i; 32]);
                (
                    k.public(),
                    signing_bytes(Domain::TEST, "c", &[i]),
                    k.sign(Domain::TEST, "c", &[i]),
                )
            })
            .collect();
        for round in 0..64 {
            assert_eq!(batch_verify(std::slice::from_ref(&item)), Ok(()));
            let mut batch = honest.clone();
            batch.insert(round % honest.len(), item.clone());
            assert_eq!(batch_verify(&batch), Ok(()), "round {round}");
        }
        // The same R with an s that does not match: refused every time, at its index.
        let mut wrong = item.clone();
        wrong.2 .0[32..].copy_from_slice((r + k * a + Scalar::ONE).as_bytes());
        for round in 0..64 {
            let mut batch = honest.clone();
            let at = round % honest.len();
            batch.insert(at, wrong.clone());
            assert_eq!(batch_verify(&batch), Err((at, SignatureError::Invalid)));
        }
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
