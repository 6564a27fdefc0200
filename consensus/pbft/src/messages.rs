//! PBFT's messages (Castro and Liskov 1999, §4) and how they are signed.
//!
//! Every message body is signed by its sender under the `pbft` signature domain and the chain
//! id. Blocks travel beside the signed bodies (a signature covers the block's hash, the digest),
//! so large blocks are hashed once, not signed.

use medchain_consensus::ValidatorSet;
use medchain_types::{
    codec, Block, Certificate, Domain, Hash, Header, PublicKey, SecretKey, Signature,
};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// The signature domain of PBFT messages.
pub const DOMAIN: Domain = Domain("pbft");

/// The three phases of the normal-case protocol (§4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Phase {
    /// The primary assigns sequence number `seq` to the block with hash `digest` in `view`.
    PrePrepare,
    /// A backup agrees with the pre-prepare.
    Prepare,
    /// A replica is prepared and commits.
    Commit,
}

/// A vote: one replica's statement about `(view, seq, digest)` in one phase. The sequence
/// number is the block height.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    /// Which phase.
    pub phase: Phase,
    /// The view.
    pub view: u64,
    /// The sequence number (block height).
    pub seq: u64,
    /// The block hash.
    pub digest: Hash,
}

/// A body with its signer and signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signed<T> {
    /// What is signed.
    pub body: T,
    /// Who signed.
    pub signer: PublicKey,
    /// The signature over the body's canonical encoding.
    pub signature: Signature,
}

impl<T: Serialize> Signed<T> {
    /// Signs `body`.
    pub fn sign(body: T, key: &SecretKey, chain_id: &str) -> Signed<T> {
        let signature = key.sign(DOMAIN, chain_id, &codec::encode(&body));
        Signed {
            body,
            signer: key.public(),
            signature,
        }
    }

    /// True if the signature is valid and the signer is a validator.
    pub fn verify(&self, chain_id: &str, validators: &ValidatorSet) -> bool {
        validators.contains(&self.signer)
            && self
                .signer
                .verify(
                    DOMAIN,
                    chain_id,
                    &codec::encode(&self.body),
                    &self.signature,
                )
                .is_ok()
    }
}

/// Checkpoint (§4.3): after executing `seq`, the block hash and the state root there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointBody {
    /// The height.
    pub seq: u64,
    /// The block hash at `seq`.
    pub block: Hash,
    /// The state root after executing `seq`.
    pub state_root: Hash,
}

/// Proof that a block was prepared (§4.4): the primary's pre-prepare and a quorum − 1 of
/// matching prepares from other replicas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreparedProof {
    /// The pre-prepare vote.
    pub pre_prepare: Signed<Vote>,
    /// The prepares.
    pub prepares: Vec<Signed<Vote>>,
}

/// The last block a replica committed, with its commit certificate: proves the height.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedProof {
    /// The header.
    pub header: Header,
    /// Its certificate (empty for genesis).
    pub certificate: Certificate,
}

/// View change (§4.5.2), simplified for a chain with one block in flight: a replica's last
/// committed block with its certificate replaces the stable-checkpoint proof and the prepared
/// set holds at most the block after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewChangeBody {
    /// The view the replica moves to.
    pub view: u64,
    /// Its last committed block.
    pub committed: CommittedProof,
    /// Its highest-view prepared proof for the next height, if any.
    pub prepared: Option<PreparedProof>,
}

/// New view (§4.5.2): a quorum of view changes and, if one of them carried a prepared block for
/// the height after the highest committed one, the pre-prepare re-proposing it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewViewBody {
    /// The new view.
    pub view: u64,
    /// A quorum of view changes for it.
    pub view_changes: Vec<Signed<ViewChangeBody>>,
    /// The re-proposal, if any.
    pub pre_prepare: Option<Signed<Vote>>,
}

/// What travels between replicas. Decoded once and dispatched at once, so the size difference
/// between variants costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Wire {
    /// A proposal with its block.
    PrePrepare {
        /// The primary's vote.
        vote: Signed<Vote>,
        /// The block.
        block: Block,
    },
    /// A prepare vote.
    Prepare(Signed<Vote>),
    /// A commit vote.
    Commit(Signed<Vote>),
    /// A checkpoint.
    Checkpoint(Signed<CheckpointBody>),
    /// A view change, with the prepared block if it names one.
    ViewChange {
        /// The signed view change.
        view_change: Signed<ViewChangeBody>,
        /// The prepared block.
        block: Option<Block>,
    },
    /// A new view, with the re-proposed block if any.
    NewView {
        /// The signed new view.
        new_view: Signed<NewViewBody>,
        /// The re-proposed block.
        block: Option<Block>,
    },
}

/// [`Wire`]'s first variant by reference: encodes exactly as [`Wire::PrePrepare`] (same variant
/// index, same fields in the same order), without owning the block.
#[derive(Serialize)]
enum WireRef<'a> {
    PrePrepare {
        vote: &'a Signed<Vote>,
        block: &'a Block,
    },
}

impl Wire {
    /// Canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// The encoding of `Wire::PrePrepare { vote, block }`, from references.
    pub fn encode_pre_prepare(vote: &Signed<Vote>, block: &Block) -> Vec<u8> {
        codec::encode(&WireRef::PrePrepare { vote, block })
    }

    /// Decoding, refusing anything malformed.
    pub fn decode(bytes: &[u8]) -> Option<Wire> {
        codec::decode(bytes).ok()
    }
}

/// The certificate stored with a committed block: a quorum of commit signatures from one view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PbftCertificate {
    /// The view the block was committed in.
    pub view: u64,
    /// `(replica, signature over the commit vote)`, sorted by replica.
    pub commits: Vec<(PublicKey, Signature)>,
}

/// Checks that `certificate` proves `header` final: a quorum of distinct validators signed the
/// commit vote for `(view, header.height, header.hash())`. Anyone holding the validator set can
/// run this without trusting the node that served the block.
pub fn verify_certificate(
    chain_id: &str,
    validators: &ValidatorSet,
    quorum: usize,
    header: &Header,
    certificate: &Certificate,
) -> Result<u64, String> {
    let cert: PbftCertificate =
        decode(&certificate.0).ok_or("certificate is not a PBFT certificate")?;
    let vote = Vote {
        phase: Phase::Commit,
        view: cert.view,
        seq: header.height,
        digest: header.hash(),
    };
    let msg = codec::encode(&vote);
    let mut signers = std::collections::BTreeSet::new();
    for (signer, signature) in &cert.commits {
        if !validators.contains(signer) {
            return Err(format!("{signer} is not a validator"));
        }
        signer
            .verify(DOMAIN, chain_id, &msg, signature)
            .map_err(|_| format!("bad commit signature from {signer}"))?;
        signers.insert(*signer);
    }
    if signers.len() < quorum {
        return Err(format!(
            "{} distinct commit signatures, {quorum} needed",
            signers.len()
        ));
    }
    Ok(cert.view)
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    codec::decode(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use medchain_types::Transaction;

    /// The pre-prepare a primary encodes from references is byte for byte the owned message,
    /// and decodes to it.
    #[test]
    fn a_pre_prepare_encoded_from_references_is_the_owned_message() {
        let key = SecretKey::from_seed([3; 32]);
        let txs = (0..3)
            .map(|i| Transaction::signed("c", "noop", vec![i; 40], u64::from(i), &key))
            .collect();
        let block = Block::build(
            7,
            Hash::ZERO,
            6,
            Hash::ZERO,
            1_000,
            key.public(),
            vec![1],
            txs,
        );
        let vote = Signed::sign(
            Vote {
                phase: Phase::PrePrepare,
                view: 2,
                seq: 7,
                digest: block.hash(),
            },
            &key,
            "c",
        );
        let owned = Wire::PrePrepare {
            vote: vote.clone(),
            block: block.clone(),
        };
        let bytes = Wire::encode_pre_prepare(&vote, &block);
        assert_eq!(bytes, owned.encode());
        assert_eq!(Wire::decode(&bytes), Some(owned));
    }
}
