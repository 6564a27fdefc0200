//! Blocks, their headers and the certificates that prove them final.

use crate::codec::{self, DecodeError};
use crate::crypto::{batch_verify, PublicKey};
use crate::hash::{sha256, Hash};
use crate::limits::{BLOCK_BYTES_MAX, BLOCK_TXS_MAX, CERTIFICATE_LEN_MAX, SEAL_LEN_MAX};
use crate::merkle::{merkle_root, MerkleProof};
use crate::tx::{serde_bytes_compat, Transaction, TxError};
use serde::{Deserialize, Serialize};

/// What a block commits to. The block's identity is the SHA-256 of the header's encoding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// 0 for genesis, then one more per block.
    pub height: u64,
    /// Hash of the block at `height - 1` ([`Hash::ZERO`] for genesis).
    pub parent: Hash,
    /// Merkle root of the transaction hashes, in order.
    pub tx_root: Hash,
    /// Number of transactions.
    pub tx_count: u32,
    /// The height whose post-execution state root is `state_root`. Execution follows finality,
    /// so a proposer knows the state only up to its last executed block: `height - 1` under
    /// PBFT, further back under proof of work (k confirmations). Always `< height` (0 for genesis).
    pub state_height: u64,
    /// State root after executing block `state_height` ([`Hash::ZERO`] in genesis).
    pub state_root: Hash,
    /// Proposer's time, milliseconds since the Unix epoch. Chaincode sees this as "now".
    pub time_ms: u64,
    /// Who proposed or mined the block.
    pub proposer: PublicKey,
    /// Engine-specific data covered by the block hash (PoW nonce, PoS slot proof, ...).
    #[serde(with = "serde_bytes_compat")]
    pub seal: Vec<u8>,
}

impl Header {
    /// The block's identity.
    pub fn hash(&self) -> Hash {
        sha256(&codec::encode(self))
    }

    /// True if `proof` shows transaction `tx_hash` in this block: the proof's tree size is the
    /// header's transaction count and the path leads to its transaction root.
    pub fn proves_inclusion(&self, tx_hash: &Hash, proof: &MerkleProof) -> bool {
        proof.size == u64::from(self.tx_count) && proof.verify(tx_hash, &self.tx_root)
    }
}

/// Engine-produced proof that a block is final (PBFT: 2f+1 commit signatures; PoS: finality
/// votes; PoW: empty, finality is depth). Opaque to the ledger, stored beside the block.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certificate(#[serde(with = "serde_bytes_compat")] pub Vec<u8>);

/// A header and its transactions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    /// The header.
    pub header: Header,
    /// The transactions, in execution order.
    pub txs: Vec<Transaction>,
}

/// Why a block was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    /// Bytes could not be decoded.
    #[error("cannot decode block: {0}")]
    Decode(#[from] DecodeError),
    /// Encoded size over [`BLOCK_BYTES_MAX`].
    #[error("block of {0} bytes exceeds BLOCK_BYTES_MAX ({BLOCK_BYTES_MAX})")]
    TooLarge(usize),
    /// A limit on counts or field sizes is broken.
    #[error("block out of bounds: {0}")]
    OutOfBounds(String),
    /// The header's transaction root or count does not match the transactions.
    #[error("transaction root mismatch at height {height}: header says {expected}, transactions give {found}")]
    TxRootMismatch {
        /// Block height.
        height: u64,
        /// Root in the header.
        expected: Hash,
        /// Root computed from the transactions.
        found: Hash,
    },
    /// A transaction is malformed or badly signed.
    #[error("transaction {index} is invalid: {error}")]
    Tx {
        /// Its position.
        index: usize,
        /// Why.
        error: TxError,
    },
}

impl Block {
    /// Assembles a block, filling `tx_root` and `tx_count` from `txs`.
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        height: u64,
        parent: Hash,
        state_height: u64,
        state_root: Hash,
        time_ms: u64,
        proposer: PublicKey,
        seal: Vec<u8>,
        txs: Vec<Transaction>,
    ) -> Block {
        let hashes: Vec<Hash> = txs.iter().map(Transaction::hash).collect();
        Block::build_hashed(
            height,
            parent,
            state_height,
            state_root,
            time_ms,
            proposer,
            seal,
            txs,
            &hashes,
        )
    }

    /// [`Block::build`] with the transactions' hashes already known (`tx_hashes[i]` must be
    /// `txs[i].hash()`; else the block's `tx_root` does not match its transactions and every
    /// structure check refuses it).
    #[allow(clippy::too_many_arguments)]
    pub fn build_hashed(
        height: u64,
        parent: Hash,
        state_height: u64,
        state_root: Hash,
        time_ms: u64,
        proposer: PublicKey,
        seal: Vec<u8>,
        txs: Vec<Transaction>,
        tx_hashes: &[Hash],
    ) -> Block {
        debug_assert_eq!(txs.len(), tx_hashes.len());
        Block {
            header: Header {
                height,
                parent,
                tx_root: merkle_root(tx_hashes),
                tx_count: u32::try_from(txs.len()).expect("BLOCK_TXS_MAX fits in u32"),
                state_height,
                state_root,
                time_ms,
                proposer,
                seal,
            },
            txs,
        }
    }

    /// The block's identity (its header's hash).
    pub fn hash(&self) -> Hash {
        self.header.hash()
    }

    /// Hashes of the transactions, in order.
    pub fn tx_hashes(&self) -> Vec<Hash> {
        self.txs.iter().map(Transaction::hash).collect()
    }

    /// Canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Decodes and checks structure ([`Block::check_structure`]); signatures are not checked.
    pub fn decode(bytes: &[u8]) -> Result<Block, BlockError> {
        if bytes.len() > BLOCK_BYTES_MAX {
            return Err(BlockError::TooLarge(bytes.len()));
        }
        let block: Block = codec::decode(bytes)?;
        block.check_structure()?;
        Ok(block)
    }

    /// Checks bounds, transaction well-formedness and the transaction root. Returns the
    /// transaction hashes, which callers usually need next.
    pub fn check_structure(&self) -> Result<Vec<Hash>, BlockError> {
        let h = &self.header;
        if self.txs.len() > BLOCK_TXS_MAX {
            return Err(BlockError::OutOfBounds(format!(
                "{} transactions exceed BLOCK_TXS_MAX ({BLOCK_TXS_MAX})",
                self.txs.len()
            )));
        }
        if h.seal.len() > SEAL_LEN_MAX {
            return Err(BlockError::OutOfBounds(format!(
                "seal of {} bytes",
                h.seal.len()
            )));
        }
        if h.height > 0 && h.state_height >= h.height {
            return Err(BlockError::OutOfBounds(format!(
                "state height {} is not below block height {}",
                h.state_height, h.height
            )));
        }
        for (index, tx) in self.txs.iter().enumerate() {
            tx.check_well_formed()
                .map_err(|error| BlockError::Tx { index, error })?;
        }
        let hashes = self.tx_hashes();
        let found = merkle_root(&hashes);
        if found != h.tx_root || h.tx_count as usize != self.txs.len() {
            return Err(BlockError::TxRootMismatch {
                height: h.height,
                expected: h.tx_root,
                found,
            });
        }
        Ok(hashes)
    }

    /// Checks every transaction's chain id and signature, in batches.
    pub fn verify_signatures(&self, chain_id: &str) -> Result<(), BlockError> {
        const BATCH: usize = 256;
        for (chunk_index, chunk) in self.txs.chunks(BATCH).enumerate() {
            for (i, tx) in chunk.iter().enumerate() {
                if tx.chain_id != chain_id {
                    return Err(BlockError::Tx {
                        index: chunk_index * BATCH + i,
                        error: TxError::WrongChain {
                            expected: chain_id.to_owned(),
                            found: tx.chain_id.clone(),
                        },
                    });
                }
            }
            let items: Vec<_> = chunk
                .iter()
                .map(|tx| (tx.sender, tx.signing_bytes(), tx.signature))
                .collect();
            batch_verify(&items).map_err(|(i, e)| BlockError::Tx {
                index: chunk_index * BATCH + i,
                error: TxError::Signature(e),
            })?;
        }
        Ok(())
    }
}

impl Certificate {
    /// Checks the size bound.
    pub fn check_bounds(&self) -> Result<(), BlockError> {
        if self.0.len() > CERTIFICATE_LEN_MAX {
            return Err(BlockError::OutOfBounds(format!(
                "certificate of {} bytes",
                self.0.len()
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SecretKey;
    use proptest::prelude::*;

    fn sample_block(n: usize) -> Block {
        let key = SecretKey::from_seed([5; 32]);
        let txs = (0..n)
            .map(|i| Transaction::signed("c", "kv", vec![i as u8; 10], i as u64, &key))
            .collect();
        Block::build(
            3,
            sha256(b"p"),
            2,
            sha256(b"s"),
            1_700_000_000_000,
            key.public(),
            vec![1, 2],
            txs,
        )
    }

    #[test]
    fn encode_decode_and_structure() {
        let b = sample_block(10);
        let bytes = b.encode();
        assert_eq!(Block::decode(&bytes).unwrap(), b);
        b.verify_signatures("c").unwrap();
    }

    #[test]
    fn inclusion_is_checked_against_the_header_count() {
        let b = sample_block(3);
        let hashes = b.tx_hashes();
        let proof = MerkleProof::build(&hashes, 0).unwrap();
        assert!(b.header.proves_inclusion(&hashes[0], &proof));
        assert!(!b.header.proves_inclusion(&hashes[1], &proof));
        // The same path under a claimed size of 4 reaches the same root; the header refuses it.
        let resized = MerkleProof { size: 4, ..proof };
        assert!(resized.verify(&hashes[0], &b.header.tx_root));
        assert!(!b.header.proves_inclusion(&hashes[0], &resized));
    }

    #[test]
    fn truncated_and_corrupted_blocks_are_refused() {
        let b = sample_block(10);
        let bytes = b.encode();
        for cut in [1, 2, 50, bytes.len() / 2, bytes.len() - 1] {
            assert!(Block::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        // Flip one byte inside a transaction payload: still decodes, but the root no longer matches.
        let mut tx_changed = b.clone();
        tx_changed.txs[4].payload[0] ^= 0xff;
        let err = Block::decode(&tx_changed.encode()).unwrap_err();
        assert!(
            matches!(err, BlockError::TxRootMismatch { height: 3, .. }),
            "{err}"
        );
        // A transaction removed.
        let mut removed = b.clone();
        removed.txs.pop();
        assert!(matches!(
            Block::decode(&removed.encode()),
            Err(BlockError::TxRootMismatch { .. })
        ));
    }

    #[test]
    fn a_wrong_signature_is_named() {
        let mut b = sample_block(300);
        b.txs[261].signature.0[5] ^= 1;
        let err = b.verify_signatures("c").unwrap_err();
        assert!(matches!(err, BlockError::Tx { index: 261, .. }), "{err}");
        assert!(matches!(
            sample_block(2).verify_signatures("d"),
            Err(BlockError::Tx {
                index: 0,
                error: TxError::WrongChain { .. }
            })
        ));
    }

    fn arb_tx() -> impl Strategy<Value = Transaction> {
        (
            "[a-z0-9-]{1,20}",
            "[a-z]{1,10}",
            proptest::collection::vec(any::<u8>(), 0..200),
            any::<u64>(),
            any::<[u8; 32]>(),
            any::<[u8; 32]>(),
            proptest::collection::vec(any::<u8>(), 64),
        )
            .prop_map(
                |(chain_id, chaincode, payload, nonce, sender, _seed, sig)| Transaction {
                    chain_id,
                    chaincode,
                    payload,
                    sender: PublicKey(sender),
                    nonce,
                    signature: crate::Signature(sig.try_into().unwrap()),
                },
            )
    }

    fn arb_block() -> impl Strategy<Value = Block> {
        (
            any::<u64>(),
            any::<[u8; 32]>(),
            any::<u64>(),
            any::<[u8; 32]>(),
            any::<u64>(),
            any::<[u8; 32]>(),
            proptest::collection::vec(any::<u8>(), 0..100),
            proptest::collection::vec(arb_tx(), 0..8),
        )
            .prop_map(|(height, parent, sh, sr, time, proposer, seal, txs)| {
                Block::build(
                    height,
                    Hash(parent),
                    sh,
                    Hash(sr),
                    time,
                    PublicKey(proposer),
                    seal,
                    txs,
                )
            })
    }

    proptest! {
        #[test]
        fn encoding_is_canonical(block in arb_block()) {
            let a = block.encode();
            let b = block.clone().encode();
            prop_assert_eq!(&a, &b, "same value, same bytes");
            let back: Block = codec::decode(&a).unwrap();
            prop_assert_eq!(&back, &block);
            prop_assert_eq!(back.encode(), a, "re-encoding the decoded value gives the same bytes");
            prop_assert_eq!(back.hash(), block.hash());
        }

        #[test]
        fn transaction_encoding_is_canonical(tx in arb_tx()) {
            let bytes = codec::encode(&tx);
            let back: Transaction = codec::decode(&bytes).unwrap();
            prop_assert_eq!(codec::encode(&back), bytes);
            prop_assert_eq!(back, tx);
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = Block::decode(&bytes);
            let _ = codec::decode::<Transaction>(&bytes);
        }
    }
}
