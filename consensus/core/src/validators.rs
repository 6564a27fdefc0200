//! The validator set: who votes, and how many votes make a quorum.

use medchain_types::PublicKey;
use std::collections::BTreeMap;

/// An ordered set of validators (sorted by key, so every node numbers them alike).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatorSet {
    members: Vec<PublicKey>,
    index: BTreeMap<PublicKey, usize>,
}

/// Why a validator set was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidatorSetError {
    /// No validators.
    #[error("a validator set needs at least one member")]
    Empty,
    /// A key appears twice.
    #[error("validator {0} appears twice")]
    Duplicate(PublicKey),
}

impl ValidatorSet {
    /// Builds a set from keys in any order.
    pub fn new(
        keys: impl IntoIterator<Item = PublicKey>,
    ) -> Result<ValidatorSet, ValidatorSetError> {
        let mut members: Vec<PublicKey> = keys.into_iter().collect();
        members.sort();
        if members.is_empty() {
            return Err(ValidatorSetError::Empty);
        }
        if let Some(w) = members.windows(2).find(|w| w[0] == w[1]) {
            return Err(ValidatorSetError::Duplicate(w[0]));
        }
        let index = members.iter().enumerate().map(|(i, k)| (*k, i)).collect();
        Ok(ValidatorSet { members, index })
    }

    /// Number of validators, n.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Always false (a set has at least one member).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Faults tolerated: f = ⌊(n − 1) / 3⌋.
    pub fn f(&self) -> usize {
        (self.len() - 1) / 3
    }

    /// Votes needed so that any two quorums share at least f + 1 validators (one honest):
    /// ⌊(n + f) / 2⌋ + 1, which is 2f + 1 when n = 3f + 1.
    pub fn quorum(&self) -> usize {
        (self.len() + self.f()) / 2 + 1
    }

    /// Is `key` a validator?
    pub fn contains(&self, key: &PublicKey) -> bool {
        self.index.contains_key(key)
    }

    /// Position of `key` in the order.
    pub fn index_of(&self, key: &PublicKey) -> Option<usize> {
        self.index.get(key).copied()
    }

    /// The validator at position `i mod n`.
    pub fn at(&self, i: u64) -> PublicKey {
        self.members[(i % self.len() as u64) as usize]
    }

    /// All validators, in order.
    pub fn iter(&self) -> impl Iterator<Item = &PublicKey> {
        self.members.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use medchain_types::SecretKey;

    fn set(n: u8) -> ValidatorSet {
        ValidatorSet::new((0..n).map(|i| SecretKey::from_seed([i; 32]).public())).unwrap()
    }

    #[test]
    fn quorums_intersect_in_an_honest_validator() {
        for n in 1..=40u8 {
            let v = set(n);
            let (n, f, q) = (v.len(), v.f(), v.quorum());
            assert!(n > 3 * f, "n = {n}: n >= 3f + 1");
            assert!(2 * q > n + f, "n={n}: two quorums share f + 1");
            assert!(q <= n - f, "n={n}: a quorum is reachable with f silent");
            if n == 3 * f + 1 {
                assert_eq!(q, 2 * f + 1);
            }
        }
    }

    #[test]
    fn refusals() {
        assert_eq!(ValidatorSet::new([]), Err(ValidatorSetError::Empty));
        let k = SecretKey::from_seed([1; 32]).public();
        assert_eq!(
            ValidatorSet::new([k, k]),
            Err(ValidatorSetError::Duplicate(k))
        );
        let v = set(4);
        assert_eq!(v.at(5), v.at(1));
        assert_eq!(v.index_of(&v.at(2)), Some(2));
    }
}
