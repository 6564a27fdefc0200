//! Proof-of-stake data: signed votes and proposals, equivocation evidence, the operations of the
//! built-in `staking` chaincode, and the stake table with its rules. Here because three crates
//! share them (the PoS engine, the `staking` chaincode, and tools that check certificates) and
//! they may all depend on `types` only.

use crate::{codec, Domain, Hash, PublicKey, SecretKey, Signature};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Signature domain of PoS votes.
pub const DOMAIN_VOTE: Domain = Domain("pos-vote");
/// Signature domain of PoS proposals.
pub const DOMAIN_PROPOSAL: Domain = Domain("pos-proposal");
/// Signature domain of proposer reveals (the epoch randomness).
pub const DOMAIN_REVEAL: Domain = Domain("pos-reveal");
/// The chaincode that carries stake operations.
pub const STAKING_CHAINCODE: &str = "staking";

/// Tendermint's two vote kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum VoteKind {
    /// First round of voting on a proposal.
    Prevote,
    /// Second round; 2/3 of the stake precommitting a block makes it final.
    Precommit,
}

/// What a vote says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct VoteBody {
    /// Height voted on.
    pub height: u64,
    /// Round within the height.
    pub round: u32,
    /// Prevote or precommit.
    pub kind: VoteKind,
    /// The block's hash, or `None` (nil).
    pub value: Option<Hash>,
}

/// A vote with its author's signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedVote {
    /// The vote.
    pub body: VoteBody,
    /// Its author.
    pub validator: PublicKey,
    /// Signature over the body's encoding (domain [`DOMAIN_VOTE`]).
    pub signature: Signature,
}

impl SignedVote {
    /// Signs `body`.
    pub fn sign(body: VoteBody, key: &SecretKey, chain_id: &str) -> SignedVote {
        SignedVote {
            signature: key.sign(DOMAIN_VOTE, chain_id, &codec::encode(&body)),
            validator: key.public(),
            body,
        }
    }

    /// True if the signature is the validator's.
    pub fn verify(&self, chain_id: &str) -> bool {
        self.validator
            .verify(
                DOMAIN_VOTE,
                chain_id,
                &codec::encode(&self.body),
                &self.signature,
            )
            .is_ok()
    }
}

/// What a proposal says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposalBody {
    /// Height.
    pub height: u64,
    /// Round.
    pub round: u32,
    /// The round in which the proposer saw 2/3 prevotes for this block, if it re-proposes one.
    pub valid_round: Option<u32>,
    /// The proposed block's hash.
    pub block: Hash,
}

/// A proposal with its proposer's signature (the block travels beside it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedProposal {
    /// The proposal.
    pub body: ProposalBody,
    /// The proposer.
    pub proposer: PublicKey,
    /// Signature over the body's encoding (domain [`DOMAIN_PROPOSAL`]).
    pub signature: Signature,
}

impl SignedProposal {
    /// Signs `body`.
    pub fn sign(body: ProposalBody, key: &SecretKey, chain_id: &str) -> SignedProposal {
        SignedProposal {
            signature: key.sign(DOMAIN_PROPOSAL, chain_id, &codec::encode(&body)),
            proposer: key.public(),
            body,
        }
    }

    /// True if the signature is the proposer's.
    pub fn verify(&self, chain_id: &str) -> bool {
        self.proposer
            .verify(
                DOMAIN_PROPOSAL,
                chain_id,
                &codec::encode(&self.body),
                &self.signature,
            )
            .is_ok()
    }
}

/// Proof that a validator signed two conflicting messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Evidence {
    /// Two votes of one kind, height and round for different values.
    DoubleVote(SignedVote, SignedVote),
    /// Two proposals for one height and round with different blocks.
    DoubleProposal(SignedProposal, SignedProposal),
}

impl Evidence {
    /// The validator it convicts, if the evidence holds.
    pub fn offender(&self, chain_id: &str) -> Option<PublicKey> {
        match self {
            Evidence::DoubleVote(a, b) => {
                let conflict = a.validator == b.validator
                    && a.body.height == b.body.height
                    && a.body.round == b.body.round
                    && a.body.kind == b.body.kind
                    && a.body.value != b.body.value;
                (conflict && a.verify(chain_id) && b.verify(chain_id)).then_some(a.validator)
            }
            Evidence::DoubleProposal(a, b) => {
                let conflict = a.proposer == b.proposer
                    && a.body.height == b.body.height
                    && a.body.round == b.body.round
                    && a.body.block != b.body.block;
                (conflict && a.verify(chain_id) && b.verify(chain_id)).then_some(a.proposer)
            }
        }
    }
}

/// An operation of the `staking` chaincode (the transaction payload).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StakeOp {
    /// Adds to the sender's stake.
    Stake {
        /// How much.
        amount: u64,
    },
    /// Withdraws from the sender's stake (to zero: the sender leaves the active set).
    Unstake {
        /// How much.
        amount: u64,
    },
    /// Equivocation evidence: the offender's whole stake is slashed and it leaves the set.
    Evidence(Box<Evidence>),
}

/// Validators' stakes. Members come from genesis; stake moves only through [`StakeOp`]s.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StakeTable {
    /// Stake by validator (members with zero stake are inactive).
    pub stakes: BTreeMap<PublicKey, u64>,
    /// Validators convicted of equivocation (never active again).
    pub slashed: BTreeSet<PublicKey>,
}

impl StakeTable {
    /// Total active stake.
    pub fn total(&self) -> u64 {
        self.stakes.values().sum()
    }

    /// A validator's active stake (0 if not a member or slashed).
    pub fn power(&self, v: &PublicKey) -> u64 {
        self.stakes.get(v).copied().unwrap_or(0)
    }

    /// True if `power` is more than two thirds of the total.
    pub fn is_quorum(&self, power: u64) -> bool {
        power as u128 * 3 > self.total() as u128 * 2
    }

    /// True if `power` is more than a third of the total (at least one honest validator).
    pub fn is_one_third(&self, power: u64) -> bool {
        power as u128 * 3 > self.total() as u128
    }

    /// Applies one operation from `sender`; `Err` says why it has no effect.
    pub fn apply(
        &mut self,
        sender: &PublicKey,
        op: &StakeOp,
        chain_id: &str,
    ) -> Result<(), String> {
        match op {
            StakeOp::Stake { amount } => {
                if self.slashed.contains(sender) {
                    return Err("slashed validators cannot stake".into());
                }
                let s = self
                    .stakes
                    .get_mut(sender)
                    .ok_or("only consortium members (genesis validators) can stake")?;
                *s = s.checked_add(*amount).ok_or("stake overflows")?;
                Ok(())
            }
            StakeOp::Unstake { amount } => {
                let s = self.stakes.get_mut(sender).ok_or("not a validator")?;
                if *amount > *s {
                    return Err(format!("unstake {amount} exceeds the stake {s}"));
                }
                *s -= amount;
                Ok(())
            }
            StakeOp::Evidence(e) => {
                let offender = e.offender(chain_id).ok_or("the evidence does not hold")?;
                if self.slashed.contains(&offender) {
                    return Err("already slashed".into());
                }
                self.slashed.insert(offender);
                if let Some(s) = self.stakes.get_mut(&offender) {
                    *s = 0;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> SecretKey {
        SecretKey::from_seed([n; 32])
    }

    fn vote(k: &SecretKey, value: Option<Hash>) -> SignedVote {
        SignedVote::sign(
            VoteBody {
                height: 5,
                round: 1,
                kind: VoteKind::Prevote,
                value,
            },
            k,
            "c",
        )
    }

    #[test]
    fn double_votes_convict_their_author_only() {
        let (a, b) = (key(1), key(2));
        let e = Evidence::DoubleVote(vote(&a, Some(Hash([1; 32]))), vote(&a, None));
        assert_eq!(e.offender("c"), Some(a.public()));
        assert_eq!(
            e.offender("other-chain"),
            None,
            "signatures are chain-bound"
        );
        let same = Evidence::DoubleVote(vote(&a, None), vote(&a, None));
        assert_eq!(same.offender("c"), None, "no conflict");
        let two = Evidence::DoubleVote(vote(&a, None), vote(&b, Some(Hash([1; 32]))));
        assert_eq!(two.offender("c"), None, "two authors");
        let mut forged = vote(&a, Some(Hash([2; 32])));
        forged.validator = b.public();
        let framed = Evidence::DoubleVote(vote(&b, None), forged);
        assert_eq!(framed.offender("c"), None, "a forged vote convicts no one");
    }

    #[test]
    fn stake_rules() {
        let (a, b) = (key(1), key(2));
        let mut t = StakeTable::default();
        t.stakes.insert(a.public(), 100);
        t.stakes.insert(b.public(), 50);
        assert!(t.is_quorum(101) && !t.is_quorum(100));
        t.apply(&a.public(), &StakeOp::Stake { amount: 10 }, "c")
            .unwrap();
        assert!(t
            .apply(&a.public(), &StakeOp::Unstake { amount: 111 }, "c")
            .is_err());
        assert!(t
            .apply(&key(9).public(), &StakeOp::Stake { amount: 1 }, "c")
            .is_err());
        let e = Evidence::DoubleVote(vote(&b, Some(Hash([1; 32]))), vote(&b, None));
        t.apply(&a.public(), &StakeOp::Evidence(Box::new(e.clone())), "c")
            .unwrap();
        assert_eq!(t.power(&b.public()), 0);
        assert!(t
            .apply(&b.public(), &StakeOp::Stake { amount: 5 }, "c")
            .is_err());
        assert!(t
            .apply(&a.public(), &StakeOp::Evidence(Box::new(e)), "c")
            .is_err());
        assert_eq!(t.total(), 110);
    }
}
