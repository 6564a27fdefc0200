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
    /// Hashes of the transactions whose operations were applied: a replayed transaction
    /// (the same signed operation in another block) has no effect.
    pub applied: BTreeSet<Hash>,
}

impl StakeTable {
    /// Total active stake (u128: no sum of u64 stakes overflows it).
    pub fn total(&self) -> u128 {
        self.stakes.values().map(|s| u128::from(*s)).sum()
    }

    /// A validator's active stake (0 if not a member or slashed).
    pub fn power(&self, v: &PublicKey) -> u64 {
        self.stakes.get(v).copied().unwrap_or(0)
    }

    /// True if `power` is more than two thirds of the total.
    pub fn is_quorum(&self, power: u128) -> bool {
        power * 3 > self.total() * 2
    }

    /// True if `power` is more than a third of the total (at least one honest validator).
    pub fn is_one_third(&self, power: u128) -> bool {
        power * 3 > self.total()
    }

    /// Applies the operation of transaction `tx` from `sender`; `Err` says why it has no
    /// effect. Stake is a consortium's administrative weight, not a currency, so one rule keeps
    /// it from concentrating: no `Stake` may leave its sender with a third of the total or
    /// more (a single member could then stop finality alone).
    pub fn apply(
        &mut self,
        tx: &Hash,
        sender: &PublicKey,
        op: &StakeOp,
        chain_id: &str,
    ) -> Result<(), String> {
        if self.applied.contains(tx) {
            return Err("a replayed operation".into());
        }
        self.apply_op(sender, op, chain_id)?;
        self.applied.insert(*tx);
        Ok(())
    }

    fn apply_op(&mut self, sender: &PublicKey, op: &StakeOp, chain_id: &str) -> Result<(), String> {
        match op {
            StakeOp::Stake { amount } => {
                if self.slashed.contains(sender) {
                    return Err("slashed validators cannot stake".into());
                }
                let total = self.total();
                let s = self
                    .stakes
                    .get_mut(sender)
                    .ok_or("only consortium members (genesis validators) can stake")?;
                let new = s.checked_add(*amount).ok_or("stake overflows")?;
                let new_total = total + u128::from(*amount);
                if u128::from(new) * 3 >= new_total {
                    return Err(format!(
                        "stake {new} would be a third of the total {new_total} or more"
                    ));
                }
                *s = new;
                Ok(())
            }
            StakeOp::Unstake { amount } => {
                let total = self.total();
                let s = self.stakes.get_mut(sender).ok_or("not a validator")?;
                if *amount > *s {
                    return Err(format!("unstake {amount} exceeds the stake {s}"));
                }
                if u128::from(*amount) == total {
                    return Err("the last stake cannot be withdrawn".into());
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
        let (a, b, c, d) = (key(1), key(2), key(3), key(4));
        let mut t = StakeTable::default();
        for k in [&a, &b, &c, &d] {
            t.stakes.insert(k.public(), 100);
        }
        assert!(t.is_quorum(267) && !t.is_quorum(266));
        let tx = |n: u8| Hash([n; 32]);
        let op = |sender: &SecretKey, op: StakeOp, t: &mut StakeTable, n: u8| {
            t.apply(&tx(n), &sender.public(), &op, "c")
        };
        op(&a, StakeOp::Stake { amount: 10 }, &mut t, 1).unwrap();
        // The same transaction again (a replay in another block) has no effect.
        assert!(op(&a, StakeOp::Stake { amount: 10 }, &mut t, 1).is_err());
        assert_eq!(t.power(&a.public()), 110);
        // No member may reach a third of the total.
        assert!(op(&a, StakeOp::Stake { amount: 100 }, &mut t, 2).is_err());
        assert!(op(&a, StakeOp::Stake { amount: u64::MAX }, &mut t, 3).is_err());
        assert!(op(&a, StakeOp::Unstake { amount: 111 }, &mut t, 4).is_err());
        assert!(op(&key(9), StakeOp::Stake { amount: 1 }, &mut t, 5).is_err());
        let e = Evidence::DoubleVote(vote(&b, Some(Hash([1; 32]))), vote(&b, None));
        op(&a, StakeOp::Evidence(Box::new(e.clone())), &mut t, 6).unwrap();
        assert_eq!(t.power(&b.public()), 0);
        assert!(op(&b, StakeOp::Stake { amount: 5 }, &mut t, 7).is_err());
        assert!(op(&a, StakeOp::Evidence(Box::new(e)), &mut t, 8).is_err());
        assert_eq!(t.total(), 310);
        assert!(op(&c, StakeOp::Unstake { amount: 100 }, &mut t, 9).is_ok());
        assert!(op(&d, StakeOp::Unstake { amount: 100 }, &mut t, 11).is_ok());
        assert!(
            op(&a, StakeOp::Unstake { amount: 110 }, &mut t, 10).is_err(),
            "the last stake"
        );
    }
}
