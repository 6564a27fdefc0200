//! Document keys wrapped per reader: ECIES with X25519 keys derived from the readers' ed25519
//! keys, HKDF-SHA256 bound to both public keys and the record, and AES-256-GCM. Destroying every
//! wrapped key and the blob is crypto-shredding: no copy of the key is left.

use crate::vault::{DocKey, VaultError};
use medchain_types::{PublicKey, SecretKey};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use serde::{Deserialize, Serialize};

/// A document key sealed for one reader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrappedKey {
    /// The reader (its ed25519 key; the X25519 key is derived from it).
    pub reader: PublicKey,
    /// The sender's ephemeral X25519 public key.
    pub ephemeral: [u8; 32],
    /// AES-256-GCM of the document key (32 bytes + 16-byte tag).
    #[serde(with = "medchain_types::serde_bytes")]
    pub sealed: Vec<u8>,
}

fn kek(shared: &[u8; 32], ephemeral: &[u8; 32], reader: &[u8; 32], context: &[u8]) -> LessSafeKey {
    let salt = ring::hkdf::Salt::new(
        ring::hkdf::HKDF_SHA256,
        &[&ephemeral[..], &reader[..]].concat(),
    );
    let prk = salt.extract(shared);
    let info = [b"medchain-ehr/wrap/v1".as_slice(), context];
    let okm = prk
        .expand(&info, &AES_256_GCM)
        .expect("AES-256 key length is a valid HKDF output");
    LessSafeKey::new(UnboundKey::from(okm))
}

/// Seals `key` for `reader` (ECIES: ephemeral X25519, HKDF-SHA256 bound to both public keys and
/// `context`, AES-256-GCM). `context` binds the wrap to one document (its id).
pub fn wrap_key(
    key: &DocKey,
    reader: &PublicKey,
    context: &[u8],
) -> Result<WrappedKey, VaultError> {
    let reader_x = reader.x25519().ok_or(VaultError::Unwrap)?;
    let mut eph_secret = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut eph_secret);
    let eph = x25519_dalek::StaticSecret::from(eph_secret);
    eph_secret.fill(0);
    let eph_pub = x25519_dalek::PublicKey::from(&eph).to_bytes();
    let shared = eph.diffie_hellman(&x25519_dalek::PublicKey::from(reader_x));
    if !shared.was_contributory() {
        return Err(VaultError::Unwrap);
    }
    let mut sealed = key.0.to_vec();
    kek(shared.as_bytes(), &eph_pub, &reader_x, context)
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key([0; 12]),
            Aad::from(reader.as_bytes()),
            &mut sealed,
        )
        .map_err(|_| VaultError::Unwrap)?;
    Ok(WrappedKey {
        reader: *reader,
        ephemeral: eph_pub,
        sealed,
    })
}

/// Opens a wrapped key with the reader's secret key.
pub fn unwrap_key(w: &WrappedKey, me: &SecretKey, context: &[u8]) -> Result<DocKey, VaultError> {
    if w.reader != me.public() {
        return Err(VaultError::Unwrap);
    }
    let secret = x25519_dalek::StaticSecret::from(me.x25519_secret());
    let reader_x = x25519_dalek::PublicKey::from(&secret).to_bytes();
    let shared = secret.diffie_hellman(&x25519_dalek::PublicKey::from(w.ephemeral));
    if !shared.was_contributory() {
        return Err(VaultError::Unwrap);
    }
    let mut buf = w.sealed.clone();
    let plain = kek(shared.as_bytes(), &w.ephemeral, &reader_x, context)
        .open_in_place(
            Nonce::assume_unique_for_key([0; 12]),
            Aad::from(w.reader.as_bytes()),
            &mut buf,
        )
        .map_err(|_| VaultError::Unwrap)?;
    let key: [u8; 32] = plain.try_into().map_err(|_| VaultError::Unwrap)?;
    Ok(DocKey(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_wrapped_for_one_reader_and_one_document() {
        let patient = SecretKey::from_seed([1; 32]);
        let other = SecretKey::from_seed([2; 32]);
        let key = DocKey::generate();
        let w = wrap_key(&key, &patient.public(), b"doc-1").unwrap();
        assert_eq!(unwrap_key(&w, &patient, b"doc-1").unwrap(), key);
        assert!(unwrap_key(&w, &other, b"doc-1").is_err(), "another reader");
        assert!(
            unwrap_key(&w, &patient, b"doc-2").is_err(),
            "another document"
        );
        let mut forged = w.clone();
        forged.reader = other.public();
        assert!(unwrap_key(&forged, &other, b"doc-1").is_err());
        let mut altered = w;
        altered.sealed[3] ^= 1;
        assert!(unwrap_key(&altered, &patient, b"doc-1").is_err());
    }
}
