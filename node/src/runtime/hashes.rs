//! Transaction hashes known before execution: those a block's check computed (kept by header
//! hash) and those of the batches handed to the engine for this node's own proposals, so a
//! block's transactions are hashed once per node.

use super::admission::verify_once;
use super::{Shared, BLOCK_TX_HASHES_MAX};
use medchain_consensus::TxVerifier;
use medchain_types::{Block, BlockError, Hash};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// Verifies a proposed block's transactions, skipping those the mempool already verified.
pub(super) struct MempoolVerifier {
    pub(super) shared: std::sync::Weak<Shared>,
    pub(super) chain_id: String,
}

impl TxVerifier for MempoolVerifier {
    fn verify_block(&self, block: &Block, tx_hashes: &[Hash]) -> Result<(), BlockError> {
        let Some(shared) = self.shared.upgrade() else {
            return block.verify_signatures(&self.chain_id);
        };
        // The hashes come from the block's structure check (the trait's contract): a wrong hash
        // could make a transaction look verified already.
        debug_assert_eq!(tx_hashes.len(), block.txs.len());
        verify_once(&shared, &block.txs, tx_hashes)
            .map_err(|(index, error)| BlockError::Tx { index, error })?;
        shared.block_tx_hashes.remember(block.hash(), tx_hashes);
        Ok(())
    }
}

/// Transaction hashes of recently checked blocks, by header hash (at most
/// [`BLOCK_TX_HASHES_MAX`] blocks; the oldest is forgotten first). Sound to reuse by header
/// hash: the header commits to the transactions' Merkle root, which the structure check
/// matched against exactly these hashes.
///
/// Also the hashes of the last few batches handed to the engine for a proposal
/// ([`OWN_BATCHES_MAX`]): this node's own blocks are built from a prefix of one, and are not
/// checked here, so their hashes are found by the Merkle root instead.
#[derive(Debug, Default)]
pub(super) struct BlockTxHashes {
    by_block: Mutex<VecDeque<(Hash, Arc<Vec<Hash>>)>>,
    own_batches: Mutex<VecDeque<Vec<Hash>>>,
}

/// Batches of transaction hashes kept for this node's own proposals: more than the engine can
/// have asked for before the block built from the oldest one executes (a PBFT primary proposes
/// one block at a time).
const OWN_BATCHES_MAX: usize = 4;

impl BlockTxHashes {
    /// Keeps the hashes of a batch handed to the engine.
    pub(super) fn remember_batch(&self, hashes: &[Hash]) {
        let mut batches = self.own_batches.lock().expect("block hashes lock");
        if batches.len() >= OWN_BATCHES_MAX {
            batches.pop_front();
        }
        batches.push_back(hashes.to_vec());
    }

    /// The hashes of a block built from a prefix of a remembered batch: the prefix of its
    /// length whose Merkle root is the header's (the root binds the list, given its length).
    fn own_block_hashes(&self, header: &medchain_types::Header) -> Option<Arc<Vec<Hash>>> {
        let n = usize::try_from(header.tx_count).ok()?;
        let batches = self.own_batches.lock().expect("block hashes lock");
        batches
            .iter()
            .rev()
            .filter(|b| b.len() >= n)
            .find(|b| medchain_types::merkle_root(&b[..n]) == header.tx_root)
            .map(|b| Arc::new(b[..n].to_vec()))
    }

    fn remember(&self, block_hash: Hash, tx_hashes: &[Hash]) {
        let mut known = self.by_block.lock().expect("block hashes lock");
        if known.iter().any(|(h, _)| *h == block_hash) {
            return;
        }
        if known.len() >= BLOCK_TX_HASHES_MAX {
            known.pop_front();
        }
        known.push_back((block_hash, Arc::new(tx_hashes.to_vec())));
    }

    /// The hashes remembered for `block_hash`, forgotten here (a block executes once).
    fn take(&self, block_hash: &Hash) -> Option<Arc<Vec<Hash>>> {
        let mut known = self.by_block.lock().expect("block hashes lock");
        let i = known.iter().position(|(h, _)| h == block_hash)?;
        known.remove(i).map(|(_, hashes)| hashes)
    }
}

impl Shared {
    /// The transaction hashes of `block`: remembered from its structure check or, for this
    /// node's own block, from the batch it was built from; else computed.
    pub(super) fn tx_hashes_of(&self, block: &Block) -> Arc<Vec<Hash>> {
        self.block_tx_hashes
            .take(&block.hash())
            .or_else(|| {
                (block.header.proposer == self.me)
                    .then(|| self.block_tx_hashes.own_block_hashes(&block.header))
                    .flatten()
            })
            .unwrap_or_else(|| Arc::new(block.tx_hashes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use medchain_types::{SecretKey, Transaction};

    fn h(i: u64) -> Hash {
        medchain_types::sha256(&i.to_le_bytes())
    }

    #[test]
    fn block_tx_hashes_are_taken_once_and_bounded() {
        let known = BlockTxHashes::default();
        known.remember(h(1), &[h(10), h(11)]);
        known.remember(h(1), &[h(99)]); // the same block checked again keeps the first
        assert_eq!(*known.take(&h(1)).unwrap(), vec![h(10), h(11)]);
        assert!(known.take(&h(1)).is_none(), "taken once");
        for b in 0..BLOCK_TX_HASHES_MAX as u64 + 1 {
            known.remember(h(1_000 + b), &[h(b)]);
        }
        assert!(known.take(&h(1_000)).is_none(), "the oldest is forgotten");
        assert_eq!(*known.take(&h(1_001)).unwrap(), vec![h(1)]);
        assert_eq!(
            known.by_block.lock().unwrap().len(),
            BLOCK_TX_HASHES_MAX - 1
        );
    }

    /// An own block's hashes are found in the batch it was built from, by its length and Merkle
    /// root: a prefix of the batch, not another batch, and not after the batch is forgotten.
    #[test]
    fn own_block_hashes_come_from_the_batch_it_was_built_from() {
        let key = SecretKey::from_seed([7; 32]);
        let txs: Vec<Transaction> = (0..5)
            .map(|i| Transaction::signed("c", "noop", vec![i], u64::from(i), &key))
            .collect();
        let hashes: Vec<Hash> = txs.iter().map(Transaction::hash).collect();
        let block = |n: usize| {
            Block::build(1, h(0), 0, h(0), 0, key.public(), vec![], txs[..n].to_vec()).header
        };
        let known = BlockTxHashes::default();
        known.remember_batch(&hashes);
        known.remember_batch(&[h(1), h(2), h(3)]);
        assert_eq!(
            *known.own_block_hashes(&block(3)).unwrap(),
            hashes[..3].to_vec()
        );
        assert_eq!(*known.own_block_hashes(&block(5)).unwrap(), hashes);
        assert_eq!(known.own_block_hashes(&block(0)).map(|v| v.len()), Some(0));
        let mut other = block(3);
        other.tx_root = h(9);
        assert!(known.own_block_hashes(&other).is_none(), "another root");
        for b in 0..OWN_BATCHES_MAX as u64 {
            known.remember_batch(&[h(b)]);
        }
        assert!(known.own_block_hashes(&block(3)).is_none(), "forgotten");
    }
}
