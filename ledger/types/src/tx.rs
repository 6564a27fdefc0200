//! Client transactions: a signed call of one chaincode.

use crate::codec;
use crate::crypto::{signing_prefix, Domain, PublicKey, SecretKey, Signature, SignatureError};
use crate::hash::{sha256, Hash};
use crate::limits::{CHAINCODE_NAME_LEN_MAX, CHAIN_ID_LEN_MAX, TX_PAYLOAD_MAX};
use serde::{Deserialize, Serialize};

/// A signed call of `chaincode` with `payload`, by `sender`.
///
/// `nonce` makes otherwise identical calls distinct; replays are stopped by the ledger, which
/// executes one transaction hash at most once. The signature covers every other field (as the
/// SHA-256 of their encoding, [`Transaction::body_digest`]) under [`Domain::TRANSACTION`] and
/// the transaction's own chain id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    /// The chain this transaction is for.
    pub chain_id: String,
    /// Name of the chaincode to call.
    pub chaincode: String,
    /// The chaincode's input, in the chaincode's own encoding.
    #[serde(with = "serde_bytes_compat")]
    pub payload: Vec<u8>,
    /// Who sends (and signs) it.
    pub sender: PublicKey,
    /// Any number; distinct nonces make otherwise identical transactions distinct.
    pub nonce: u64,
    /// The sender's signature.
    pub signature: Signature,
}

/// Why a transaction was refused before execution.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    /// The transaction names another chain.
    #[error("transaction is for chain {found:?}, this is {expected:?}")]
    WrongChain {
        /// This chain.
        expected: String,
        /// The transaction's.
        found: String,
    },
    /// A field is out of bounds or malformed.
    #[error("invalid transaction: {0}")]
    Invalid(String),
    /// The signature does not verify.
    #[error("bad transaction signature: {0}")]
    Signature(#[from] SignatureError),
}

/// Names of chains and chaincodes: 1 to 64 characters of `a-z 0-9 - _ .`.
pub fn is_valid_name(name: &str, len_max: usize) -> bool {
    !name.is_empty()
        && name.len() <= len_max
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        })
}

#[derive(Serialize)]
struct Body<'a> {
    chain_id: &'a str,
    chaincode: &'a str,
    #[serde(with = "serde_bytes_compat")]
    payload: &'a [u8],
    sender: &'a PublicKey,
    nonce: u64,
}

impl Transaction {
    /// Builds and signs a transaction.
    pub fn signed(
        chain_id: &str,
        chaincode: &str,
        payload: Vec<u8>,
        nonce: u64,
        key: &SecretKey,
    ) -> Self {
        let mut tx = Transaction {
            chain_id: chain_id.to_owned(),
            chaincode: chaincode.to_owned(),
            payload,
            sender: key.public(),
            nonce,
            signature: Signature([0; 64]),
        };
        tx.signature = key.sign(Domain::TRANSACTION, chain_id, &tx.body_digest().0);
        tx
    }

    fn body(&self) -> Body<'_> {
        Body {
            chain_id: &self.chain_id,
            chaincode: &self.chaincode,
            payload: &self.payload,
            sender: &self.sender,
            nonce: self.nonce,
        }
    }

    /// An upper bound of the encoding's length (variable-length integers at their longest), so
    /// that encoding allocates once instead of growing its buffer.
    fn encoded_len_max(&self) -> usize {
        1 + (10 + self.chain_id.len())
            + (10 + self.chaincode.len())
            + (10 + self.payload.len())
            + 32
            + 10
            + 64
    }

    /// The message a sender signs: SHA-256 of the canonical encoding of every field but the
    /// signature. Signing the digest instead of the body keeps ed25519's own SHA-512 pass short
    /// (two blocks instead of one per 128 bytes of payload) on every node that checks the
    /// signature; SHA-256 is the chain's hash already, and collisions in it would break
    /// transaction identity anyway.
    pub fn body_digest(&self) -> Hash {
        sha256(&codec::encode_into(
            &self.body(),
            codec::version_prefix(self.encoded_len_max()),
        ))
    }

    /// The exact bytes the sender signed (for batch verification):
    /// `signing_bytes(TRANSACTION, chain_id, body_digest)`.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let digest = self.body_digest();
        let mut out = signing_prefix(Domain::TRANSACTION, &self.chain_id, digest.0.len());
        out.extend_from_slice(&digest.0);
        out
    }

    /// The transaction's identity: SHA-256 of its canonical encoding, signature included.
    pub fn hash(&self) -> Hash {
        sha256(&codec::encode_into(
            self,
            codec::version_prefix(self.encoded_len_max()),
        ))
    }

    /// Checks bounds and names without touching the signature (cheap).
    pub fn check_well_formed(&self) -> Result<(), TxError> {
        if !is_valid_name(&self.chain_id, CHAIN_ID_LEN_MAX) {
            return Err(TxError::Invalid(format!(
                "chain id {:?} is not a valid name",
                self.chain_id
            )));
        }
        if !is_valid_name(&self.chaincode, CHAINCODE_NAME_LEN_MAX) {
            return Err(TxError::Invalid(format!(
                "chaincode name {:?} is not a valid name",
                self.chaincode
            )));
        }
        if self.payload.len() > TX_PAYLOAD_MAX {
            return Err(TxError::Invalid(format!(
                "payload of {} bytes exceeds TX_PAYLOAD_MAX ({TX_PAYLOAD_MAX})",
                self.payload.len()
            )));
        }
        Ok(())
    }

    /// Full check for chain `chain_id`: bounds, chain and signature (the rule of
    /// [`crate::batch_verify`], which checks transactions in batches the same way).
    pub fn verify(&self, chain_id: &str) -> Result<(), TxError> {
        self.check_well_formed()?;
        if self.chain_id != chain_id {
            return Err(TxError::WrongChain {
                expected: chain_id.to_owned(),
                found: self.chain_id.clone(),
            });
        }
        crate::batch_verify(&[(self.sender, self.signing_bytes(), self.signature)])
            .map_err(|(_, e)| TxError::Signature(e))?;
        Ok(())
    }
}

/// `Vec<u8>`/`&[u8]` as one length-prefixed byte string (postcard) or hex (JSON), instead of
/// serde's default sequence of numbers. Use with `#[serde(with = "medchain_types::serde_bytes")]`.
pub mod serde_bytes_compat {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes bytes.
    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&hex::encode(bytes))
        } else {
            s.serialize_bytes(bytes)
        }
    }

    /// Deserializes bytes.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        if d.is_human_readable() {
            let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
            hex::decode(s.as_ref()).map_err(serde::de::Error::custom)
        } else {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = Vec<u8>;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a byte string")
                }
                fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                    Ok(v.to_vec())
                }
                fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                    Ok(v)
                }
            }
            d.deserialize_byte_buf(V)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::signing_bytes;

    /// The allocation-saving encodings give the same bytes as the plain ones: the hash is
    /// SHA-256 of `encode(tx)`, the signed bytes are `signing_bytes` of SHA-256 of
    /// `encode(body)`, and the length bound holds, for short and long fields (one- to
    /// three-byte lengths).
    #[test]
    fn presized_encodings_equal_the_canonical_ones() {
        for (name_len, payload_len, nonce) in [
            (1, 0, 0),
            (10, 127, 1),
            (64, 128, u64::MAX),
            (64, 20_000, 1 << 40),
        ] {
            let key = SecretKey::from_seed([9; 32]);
            let name = "a".repeat(name_len);
            let t = Transaction::signed(&name, &name, vec![5; payload_len], nonce, &key);
            let encoded = codec::encode(&t);
            assert!(encoded.len() <= t.encoded_len_max());
            assert_eq!(t.hash(), sha256(&encoded));
            let digest = sha256(&codec::encode(&t.body()));
            assert_eq!(t.body_digest(), digest);
            assert_eq!(
                t.signing_bytes(),
                signing_bytes(Domain::TRANSACTION, &name, &digest.0)
            );
            assert!(t.verify(&name).is_ok());
        }
    }

    fn tx() -> Transaction {
        Transaction::signed(
            "test-chain",
            "kv",
            b"payload".to_vec(),
            1,
            &SecretKey::from_seed([3; 32]),
        )
    }

    #[test]
    fn signed_transaction_verifies() {
        assert_eq!(tx().verify("test-chain"), Ok(()));
    }

    #[test]
    fn tampering_is_detected() {
        let mut t = tx();
        t.payload.push(1);
        assert!(matches!(t.verify("test-chain"), Err(TxError::Signature(_))));
        let mut t = tx();
        t.nonce += 1;
        assert!(matches!(t.verify("test-chain"), Err(TxError::Signature(_))));
        let mut t = tx();
        t.sender = SecretKey::from_seed([4; 32]).public();
        assert!(matches!(t.verify("test-chain"), Err(TxError::Signature(_))));
        assert!(matches!(
            tx().verify("other-chain"),
            Err(TxError::WrongChain { .. })
        ));
    }

    #[test]
    fn bounds_are_checked() {
        let mut t = tx();
        t.chaincode = "Bad Name".into();
        assert!(matches!(t.verify("test-chain"), Err(TxError::Invalid(_))));
        let mut t = tx();
        t.payload = vec![0; TX_PAYLOAD_MAX + 1];
        assert!(matches!(t.check_well_formed(), Err(TxError::Invalid(_))));
    }

    #[test]
    fn json_form_is_hex() {
        let t = tx();
        let json = serde_json::to_string(&t).unwrap();
        assert!(
            json.contains(&format!("\"payload\":\"{}\"", hex::encode(b"payload"))),
            "{json}"
        );
        let back: Transaction = serde_json::from_str(&json).unwrap();
        assert_eq!(back, t);
        assert_eq!(back.hash(), t.hash());
    }

    #[test]
    fn hash_covers_the_signature() {
        let a = tx();
        let b = Transaction::signed(
            "test-chain",
            "kv",
            b"payload".to_vec(),
            2,
            &SecretKey::from_seed([3; 32]),
        );
        assert_ne!(a.hash(), b.hash());
        assert_eq!(a.hash(), tx().hash(), "ed25519 signing is deterministic");
    }
}
