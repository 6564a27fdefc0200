//! Merkle trees over transaction hashes, as in RFC 6962 / RFC 9162 §2.1 (Certificate
//! Transparency): leaves are `H(0x00 || tx_hash)`, interior nodes `H(0x01 || left || right)`, an
//! unbalanced tree splits at the largest power of two below its size, and the empty tree's root is
//! `H("")`. The distinct prefixes rule out the second-preimage trick that duplicating the last
//! leaf (Bitcoin's CVE-2012-2459) allows.
//!
//! An inclusion proof carries the leaf index, the tree size and the audit path, and verifies on
//! its own against a root (RFC 9162 §2.1.3.2).

use crate::hash::{sha256, Hash};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

fn leaf_hash(item: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(item.0);
    Hash(h.finalize().into())
}

fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left.0);
    h.update(right.0);
    Hash(h.finalize().into())
}

/// Computes the next level up; an unpaired last node is carried up unchanged, which yields
/// exactly RFC 6962's split-at-largest-power-of-two tree.
fn next_level(level: &[Hash]) -> Vec<Hash> {
    level
        .chunks(2)
        .map(|pair| match pair {
            [l, r] => node_hash(l, r),
            [only] => *only,
            _ => unreachable!("chunks(2) yields one or two items"),
        })
        .collect()
}

/// The Merkle root of `items` (transaction hashes, in block order).
pub fn merkle_root(items: &[Hash]) -> Hash {
    if items.is_empty() {
        return sha256(b"");
    }
    let mut level: Vec<Hash> = items.iter().map(leaf_hash).collect();
    while level.len() > 1 {
        level = next_level(&level);
    }
    level[0]
}

/// Proof that one item sits at `index` in a tree of `size` items.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MerkleProof {
    /// Position of the item, from 0.
    pub index: u64,
    /// Number of items in the tree.
    pub size: u64,
    /// Sibling hashes from the leaf up to the root.
    pub path: Vec<Hash>,
}

impl MerkleProof {
    /// Builds the proof for `items[index]`; `None` if `index` is out of range.
    pub fn build(items: &[Hash], index: usize) -> Option<MerkleProof> {
        if index >= items.len() {
            return None;
        }
        let mut path = Vec::new();
        let mut level: Vec<Hash> = items.iter().map(leaf_hash).collect();
        let mut i = index;
        while level.len() > 1 {
            let sibling = i ^ 1;
            if sibling < level.len() {
                path.push(level[sibling]);
            }
            level = next_level(&level);
            i /= 2;
        }
        Some(MerkleProof {
            index: index as u64,
            size: items.len() as u64,
            path,
        })
    }

    /// True if this proof shows `item` at `self.index` in the tree whose root is `root`.
    ///
    /// The root does not bind the tree size: a proof may also verify under a different claimed
    /// size. Check `size` against a trusted count too (see `Header::proves_inclusion`).
    pub fn verify(&self, item: &Hash, root: &Hash) -> bool {
        // RFC 9162 §2.1.3.2, step by step.
        if self.index >= self.size {
            return false;
        }
        let (mut fnode, mut snode) = (self.index, self.size - 1);
        let mut r = leaf_hash(item);
        for p in &self.path {
            if snode == 0 {
                return false;
            }
            if fnode & 1 == 1 || fnode == snode {
                r = node_hash(p, &r);
                if fnode & 1 == 0 {
                    while fnode & 1 == 0 && fnode != 0 {
                        fnode >>= 1;
                        snode >>= 1;
                    }
                }
            } else {
                r = node_hash(&r, p);
            }
            fnode >>= 1;
            snode >>= 1;
        }
        snode == 0 && r == *root
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn items(n: usize) -> Vec<Hash> {
        (0..n as u32).map(|i| sha256(&i.to_le_bytes())).collect()
    }

    /// RFC 6962's recursive definition, written independently of the iterative code above.
    fn reference_root(items: &[Hash]) -> Hash {
        match items.len() {
            0 => sha256(b""),
            1 => leaf_hash(&items[0]),
            n => {
                let k = n.next_power_of_two() / 2;
                node_hash(&reference_root(&items[..k]), &reference_root(&items[k..]))
            }
        }
    }

    #[test]
    fn root_matches_the_recursive_definition() {
        for n in 0..70 {
            let it = items(n);
            assert_eq!(merkle_root(&it), reference_root(&it), "size {n}");
        }
    }

    #[test]
    fn every_proof_verifies_and_tampering_fails() {
        for n in 1..70 {
            let it = items(n);
            let root = merkle_root(&it);
            for i in 0..n {
                let p = MerkleProof::build(&it, i).unwrap();
                assert!(p.verify(&it[i], &root), "size {n} index {i}");
                // Wrong item, wrong index, wrong size, wrong root, truncated or extended path.
                assert!(!p.verify(&sha256(b"other"), &root));
                let other = (i + 1) % n;
                if other != i {
                    assert!(!MerkleProof {
                        index: other as u64,
                        ..p.clone()
                    }
                    .verify(&it[i], &root));
                }
                assert!(!p.verify(&it[i], &sha256(b"root")));
                if !p.path.is_empty() {
                    let mut short = p.clone();
                    short.path.pop();
                    assert!(!short.verify(&it[i], &root));
                }
                let mut long = p.clone();
                long.path.push(root);
                assert!(!long.verify(&it[i], &root));
            }
            assert!(MerkleProof::build(&it, n).is_none());
        }
    }

    #[test]
    fn leaves_and_nodes_are_domain_separated() {
        // A two-leaf tree's root must not verify as a leaf of a one-leaf tree.
        let it = items(2);
        let root = merkle_root(&it);
        let fake = MerkleProof {
            index: 0,
            size: 1,
            path: vec![],
        };
        let concat = node_hash(&leaf_hash(&it[0]), &leaf_hash(&it[1]));
        assert_eq!(concat, root);
        assert!(!fake.verify(&concat, &root));
    }

    proptest! {
        #[test]
        fn proofs_verify_for_random_trees(n in 1usize..600, seed in any::<u64>()) {
            let it: Vec<Hash> = (0..n).map(|i| sha256(&[seed.to_le_bytes(), (i as u64).to_le_bytes()].concat())).collect();
            let root = merkle_root(&it);
            let i = (seed as usize) % n;
            let p = MerkleProof::build(&it, i).unwrap();
            prop_assert!(p.verify(&it[i], &root));
            prop_assert!(p.path.len() <= 64 - (n as u64).leading_zeros() as usize);
        }
    }
}
