//! Proof of stake: Tendermint consensus weighted by stake (Buchman, Kwon and Milosevic, "The
//! latest gossip on BFT consensus", 2018; Algorithm 1 is cited by line as "TM l.N"), with
//! stake-weighted proposers drawn from unbiasable randomness, epochs, and slashing.
//!
//! - **Slots.** Each height is decided in rounds; every (height, round) is one *slot* with its
//!   own proposer and timeouts that grow with the round (TM l.57–67). A block's seal carries
//!   its round and its slot number (the parent's slot + round + 1), so slots are counted on
//!   chain.
//! - **Proposers.** The proposer of (h, r) is drawn with probability proportional to stake
//!   from `SHA-256(randomness || h || r)`. The epoch's randomness is a hash chain of the
//!   proposers' *reveals* (each block carries its proposer's deterministic ed25519 signature
//!   over the height, which no one else can predict and the proposer cannot choose), fixed at
//!   the end of the previous epoch; the last proposer of an epoch can only withhold its block
//!   (and lose it) to change the randomness, never pick it.
//! - **Fork choice** before finality is Tendermint's locking rule: a validator that precommitted
//!   a block (after 2/3 prevotes for it) prevotes only that block until it sees 2/3 prevotes for
//!   another in a later round, and a proposer re-proposes its latest polka block (TM l.11–28).
//! - **Finality:** a block is final when validators holding more than 2/3 of the stake
//!   precommit it (TM l.49); the precommits are its certificate.
//! - **Stake** changes come from the `staking` chaincode's operations in final blocks and take
//!   effect at the next epoch boundary (every `epoch_length` heights). Equivocation (two
//!   proposals for one slot, two votes of one kind in one round) found by any validator becomes
//!   evidence that the next proposer includes as a `staking` transaction; it slashes the
//!   offender's whole stake and removes it from the set.
//! - **Never twice:** every vote and proposal is persisted before it is sent; after a restart a
//!   validator re-sends what it signed and refuses to sign anything else for that slot.

use medchain_consensus::{
    Action, Engine, EngineContext, EngineStatus, Event, Time, TimerId, TxVerifier,
};
use medchain_types::staking::{
    Evidence, ProposalBody, SignedProposal, SignedVote, StakeOp, StakeTable, VoteBody, VoteKind,
    DOMAIN_REVEAL, STAKING_CHAINCODE,
};
use medchain_types::{
    codec, sha256, Block, Certificate, Hash, Header, PublicKey, SecretKey, Signature, Transaction,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

/// Persisted: this validator's signed votes and proposals at the current height, and its lock.
pub const RECORD_VOTES: &[u8] = b"pos/votes";
/// Persisted: the blocks a validator may have to propose again at the current height.
pub const RECORD_BLOCKS: &[u8] = b"pos/blocks";
/// Persisted: stake tables and randomness by epoch, and the pending stake operations.
pub const RECORD_TABLE: &[u8] = b"pos/table";

const TIMER_PROPOSE: TimerId = TimerId(1);
const TIMER_PREVOTE: TimerId = TimerId(2);
const TIMER_PRECOMMIT: TimerId = TimerId(3);
const TIMER_POLL: TimerId = TimerId(4);
const TIMER_REBROADCAST: TimerId = TimerId(5);
/// Messages for the next height kept until it starts.
const FUTURE_MAX: usize = 4096;
/// Synced blocks kept until their turn.
const SYNCED_MAX: usize = 256;
/// Rounds ahead of this validator's for which messages are kept.
const ROUND_AHEAD_MAX: u32 = 64;
/// Least time between two block requests.
const SYNC_INTERVAL_MS: u64 = 1_000;

/// One validator's initial stake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StakeEntry {
    /// The validator.
    pub key: PublicKey,
    /// Its stake.
    pub stake: u64,
}

/// Proof-of-stake parameters (from genesis).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PosConfig {
    /// Heights per epoch (stake changes and new randomness apply at epoch boundaries).
    pub epoch_length: u64,
    /// Initial stakes (empty: every validator stakes 100).
    pub stakes: Vec<StakeEntry>,
    /// Round 0 wait for a proposal (TM `timeoutPropose`).
    pub timeout_propose: Duration,
    /// Round 0 wait after 2/3 prevotes of mixed values (TM `timeoutPrevote`).
    pub timeout_prevote: Duration,
    /// Round 0 wait after 2/3 precommits of mixed values (TM `timeoutPrecommit`).
    pub timeout_precommit: Duration,
    /// Added to each timeout per round.
    pub timeout_delta: Duration,
    /// How long a proposer with an empty mempool waits before proposing an empty block.
    pub empty_block_delay: Duration,
    /// How often an idle proposer looks at the mempool again.
    pub poll_txs: Duration,
    /// How often a validator re-sends its votes of the current round (lossy links).
    pub rebroadcast: Duration,
    /// Most transactions in a block.
    pub block_txs_max: usize,
    /// Most transaction bytes in a block.
    pub block_bytes_max: usize,
    /// How far ahead of a validator's clock a block time may be.
    pub clock_skew_max: Duration,
    /// Test only: this validator signs conflicting prevotes, so tests can watch it be slashed.
    #[doc(hidden)]
    pub unsafe_equivocate: bool,
}

impl Default for PosConfig {
    fn default() -> Self {
        PosConfig {
            epoch_length: 32,
            stakes: Vec::new(),
            timeout_propose: Duration::from_secs(3),
            timeout_prevote: Duration::from_secs(1),
            timeout_precommit: Duration::from_secs(1),
            timeout_delta: Duration::from_millis(500),
            empty_block_delay: Duration::from_secs(1),
            poll_txs: Duration::from_millis(5),
            rebroadcast: Duration::from_secs(1),
            block_txs_max: 4000,
            block_bytes_max: 4 << 20,
            clock_skew_max: Duration::from_secs(10),
            unsafe_equivocate: false,
        }
    }
}

/// Proof-of-stake messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Wire {
    /// A proposal with its block.
    Proposal {
        /// The signed proposal.
        proposal: SignedProposal,
        /// The block it names.
        block: Box<Block>,
    },
    /// A prevote or precommit.
    Vote(SignedVote),
}

impl Wire {
    /// Decodes a message (`None` for anything malformed).
    pub fn decode(bytes: &[u8]) -> Option<Wire> {
        codec::decode(bytes).ok()
    }

    fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }
}

/// A PoS block's seal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seal {
    /// The round the block was first proposed in.
    pub round: u32,
    /// Its slot number.
    pub slot: u64,
    /// The proposer's reveal: its signature over the height (domain `pos-reveal`).
    pub reveal: Signature,
}

impl Seal {
    /// Reads a header's seal.
    pub fn of(h: &Header) -> Option<Seal> {
        codec::decode(&h.seal).ok()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct VoteRecord {
    height: u64,
    round: u32,
    locked: Option<(u32, Hash)>,
    valid: Option<(u32, Hash)>,
    votes: Vec<VoteBody>,
    proposals: Vec<ProposalBody>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct TableRecord {
    /// Last height whose stake operations are included.
    applied: u64,
    /// Stake table and randomness by epoch (the current and the next).
    tables: BTreeMap<u64, (StakeTable, Hash)>,
    pending: Vec<(Hash, PublicKey, StakeOp)>,
    accum: Hash,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Propose,
    Prevote,
    Precommit,
}

/// The proof-of-stake engine.
pub struct Pos {
    cfg: PosConfig,
    chain_id: String,
    key: SecretKey,
    me: PublicKey,
    verifier: Arc<dyn TxVerifier>,
    members: BTreeSet<PublicKey>,
    stakes: TableRecord,
    tip: Header,
    tip_root: Hash,
    // The current height.
    height: u64,
    round: u32,
    step: Step,
    round_started: Time,
    locked: Option<(u32, Hash)>,
    valid: Option<(u32, Hash)>,
    proposals: BTreeMap<u32, SignedProposal>,
    blocks: BTreeMap<Hash, Block>,
    validity: BTreeMap<Hash, bool>,
    votes: BTreeMap<(u32, VoteKind), BTreeMap<PublicKey, SignedVote>>,
    mine: VoteRecord,
    polka_seen: BTreeSet<u32>,
    prevote_timer: BTreeSet<u32>,
    precommit_timer: BTreeSet<u32>,
    timers: BTreeMap<TimerId, (u64, u32)>,
    deciding: bool,
    /// The header of the block being committed (the next tip).
    decided_header: Option<Header>,
    awaiting_txs: bool,
    future: Vec<(PublicKey, Wire)>,
    synced: BTreeMap<u64, (Block, Certificate)>,
    last_sync: Option<Time>,
    evidence: Vec<Evidence>,
    reported: BTreeSet<PublicKey>,
    counters: BTreeMap<String, u64>,
}

impl std::fmt::Debug for Pos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pos({} h{} r{})", self.me, self.height, self.round)
    }
}

fn epoch_of(height: u64, len: u64) -> u64 {
    height.saturating_sub(1) / len.max(1)
}

impl Pos {
    /// An engine resuming from `ctx.tip` and its persisted records.
    pub fn new(ctx: EngineContext, cfg: PosConfig) -> Pos {
        let me = ctx.key.public();
        let members: BTreeSet<PublicKey> = ctx.validators.iter().copied().collect();
        let tip = ctx.tip.header;
        let height = tip.height + 1;
        let mut counters = BTreeMap::new();
        let record: Option<TableRecord> = ctx
            .records
            .get(RECORD_TABLE)
            .and_then(|b| codec::decode(b).ok());
        let stakes = match record {
            // The record is written before each commit: it may include the block after the tip.
            Some(r) if r.applied >= tip.height && r.applied <= height => r,
            _ => {
                if tip.height > 0 {
                    counters.insert("table_rebuilt".to_owned(), 1);
                }
                let mut table = StakeTable::default();
                for m in &members {
                    table.stakes.insert(*m, 100);
                }
                if !cfg.stakes.is_empty() {
                    for m in &members {
                        table.stakes.insert(*m, 0);
                    }
                    for e in &cfg.stakes {
                        if members.contains(&e.key) {
                            table.stakes.insert(e.key, e.stake);
                        }
                    }
                }
                let seed = sha256(&[b"medchain-pos".as_slice(), tip.hash().as_bytes()].concat());
                TableRecord {
                    applied: tip.height,
                    tables: BTreeMap::from([(epoch_of(height, cfg.epoch_length), (table, seed))]),
                    pending: Vec::new(),
                    accum: seed,
                }
            }
        };
        let saved: Vec<Block> = ctx
            .records
            .get(RECORD_BLOCKS)
            .and_then(|b| codec::decode::<(u64, Vec<Block>)>(b).ok())
            .filter(|(h, _)| *h == height)
            .map(|(_, blocks)| blocks)
            .unwrap_or_default();
        let mine: VoteRecord = ctx
            .records
            .get(RECORD_VOTES)
            .and_then(|b| codec::decode::<VoteRecord>(b).ok())
            .filter(|r| r.height == height)
            .unwrap_or(VoteRecord {
                height,
                ..VoteRecord::default()
            });
        Pos {
            chain_id: ctx.chain_id,
            key: ctx.key,
            me,
            verifier: ctx.verifier,
            members,
            stakes,
            tip_root: ctx.tip.state_root,
            tip,
            height,
            round: mine.round,
            step: Step::Propose,
            round_started: 0,
            locked: mine.locked,
            valid: mine.valid,
            proposals: BTreeMap::new(),
            blocks: saved.into_iter().map(|b| (b.hash(), b)).collect(),
            validity: BTreeMap::new(),
            votes: BTreeMap::new(),
            mine,
            polka_seen: BTreeSet::new(),
            prevote_timer: BTreeSet::new(),
            precommit_timer: BTreeSet::new(),
            timers: BTreeMap::new(),
            deciding: false,
            decided_header: None,
            awaiting_txs: false,
            future: Vec::new(),
            synced: BTreeMap::new(),
            last_sync: None,
            evidence: Vec::new(),
            reported: BTreeSet::new(),
            counters,
            cfg,
        }
    }

    fn count(&mut self, what: &str) {
        *self.counters.entry(what.to_owned()).or_default() += 1;
    }

    /// The stake table and randomness that govern `height`.
    fn table(&self, height: u64) -> Option<&(StakeTable, Hash)> {
        self.stakes
            .tables
            .get(&epoch_of(height, self.cfg.epoch_length))
    }

    fn current_table(&self) -> &StakeTable {
        &self
            .table(self.height)
            .expect("the current epoch's table is always known")
            .0
    }

    /// The proposer of slot (height, round): drawn by stake from the epoch's randomness.
    pub fn proposer(&self, height: u64, round: u32) -> PublicKey {
        let Some((table, randomness)) = self.table(height) else {
            return self.me;
        };
        let total = table.total();
        let active = table.stakes.iter().filter(|(_, s)| **s > 0);
        if total == 0 {
            return *table.stakes.keys().next().unwrap_or(&self.me);
        }
        let seed = sha256(
            &[
                randomness.as_bytes().as_slice(),
                &height.to_le_bytes(),
                &round.to_le_bytes(),
            ]
            .concat(),
        );
        let mut x = u128::from_le_bytes(seed.0[..16].try_into().expect("16 bytes")) % total;
        for (k, s) in active {
            let s = u128::from(*s);
            if x < s {
                return *k;
            }
            x -= s;
        }
        unreachable!("x < total")
    }

    fn timeout(&self, base: Duration, round: u32) -> Duration {
        base + self.cfg.timeout_delta * round
    }

    fn set_timer(&mut self, id: TimerId, after: Duration, out: &mut Vec<Action>) {
        self.timers.insert(id, (self.height, self.round));
        out.push(Action::SetTimer { id, after });
    }

    /// Persists the blocks this validator may have to propose again after a restart: its
    /// valid (polka) block, its lock, and its own proposals at this height.
    fn persist_blocks(&self, out: &mut Vec<Action>) {
        let mut hashes: Vec<Hash> = self
            .valid
            .iter()
            .chain(self.locked.iter())
            .map(|(_, h)| *h)
            .chain(self.mine.proposals.iter().map(|p| p.block))
            .collect();
        hashes.sort_unstable();
        hashes.dedup();
        let blocks: Vec<&Block> = hashes.iter().filter_map(|h| self.blocks.get(h)).collect();
        out.push(Action::Persist {
            key: RECORD_BLOCKS.to_vec(),
            value: Some(codec::encode(&(self.height, blocks))),
        });
    }

    fn persist_mine(&self, out: &mut Vec<Action>) {
        out.push(Action::Persist {
            key: RECORD_VOTES.to_vec(),
            value: Some(codec::encode(&self.mine)),
        });
    }

    // TM l.10: StartRound.
    fn start_round(&mut self, now: Time, round: u32, out: &mut Vec<Action>) {
        self.round = round;
        self.step = Step::Propose;
        self.round_started = now;
        if self.mine.round != round {
            self.mine.round = round;
            self.persist_mine(out);
        }
        self.set_timer(
            TIMER_PROPOSE,
            self.timeout(self.cfg.timeout_propose, round),
            out,
        );
        if self.proposer(self.height, round) == self.me {
            if let Some((vr, v)) = self.valid {
                // TM l.14: re-propose the latest polka block.
                if let Some(block) = self.blocks.get(&v).cloned() {
                    self.propose(block, Some(vr), out);
                }
            } else if let Some(p) = self.mine.proposals.iter().find(|p| p.round == round) {
                // Restarted after proposing in this slot: only that block may be proposed.
                let hash = p.block;
                if let Some(block) = self.blocks.get(&hash).cloned() {
                    self.propose(block, p.valid_round, out);
                }
            } else {
                self.request_txs(out);
            }
        }
        self.replay_own_votes(out);
        self.progress(now, out);
    }

    fn request_txs(&mut self, out: &mut Vec<Action>) {
        if !self.awaiting_txs {
            self.awaiting_txs = true;
            out.push(Action::NeedTransactions {
                max: self.cfg.block_txs_max,
            });
        }
    }

    fn on_transactions(&mut self, now: Time, txs: Vec<Transaction>, out: &mut Vec<Action>) {
        self.awaiting_txs = false;
        let round = self.round;
        if self.deciding
            || self.step != Step::Propose
            || self.proposer(self.height, round) != self.me
            || self.proposals.contains_key(&round)
            || self.valid.is_some()
            || self.mine.proposals.iter().any(|p| p.round == round)
        {
            return;
        }
        if txs.is_empty()
            && self.evidence.is_empty()
            && now < self.round_started + self.cfg.empty_block_delay.as_millis() as u64
        {
            self.set_timer(TIMER_POLL, self.cfg.poll_txs, out);
            return;
        }
        let mut bytes = 0;
        let mut chosen: Vec<Transaction> = Vec::new();
        for e in &self.evidence {
            chosen.push(Transaction::signed(
                &self.chain_id,
                STAKING_CHAINCODE,
                codec::encode(&StakeOp::Evidence(Box::new(e.clone()))),
                self.height,
                &self.key,
            ));
        }
        for tx in txs {
            if chosen.len() >= self.cfg.block_txs_max {
                break;
            }
            bytes += tx.payload.len() + 200;
            if bytes > self.cfg.block_bytes_max {
                break;
            }
            chosen.push(tx);
        }
        let seal = Seal {
            round,
            slot: self.tip_slot() + u64::from(round) + 1,
            reveal: self
                .key
                .sign(DOMAIN_REVEAL, &self.chain_id, &self.height.to_le_bytes()),
        };
        let block = Block::build(
            self.height,
            self.tip.hash(),
            self.tip.height,
            self.tip_root,
            now.max(self.tip.time_ms),
            self.me,
            codec::encode(&seal),
            chosen,
        );
        self.propose(block, None, out);
        self.progress(now, out);
    }

    fn tip_slot(&self) -> u64 {
        Seal::of(&self.tip).map_or(0, |s| s.slot)
    }

    fn propose(&mut self, block: Block, valid_round: Option<u32>, out: &mut Vec<Action>) {
        let body = ProposalBody {
            height: self.height,
            round: self.round,
            valid_round,
            block: block.hash(),
        };
        if let Some(p) = self.mine.proposals.iter().find(|p| p.round == self.round) {
            if p.block != body.block {
                return self.count("refused_second_proposal");
            }
        } else {
            self.mine.proposals.push(body);
            self.blocks.insert(body.block, block.clone());
            self.persist_blocks(out);
            self.persist_mine(out);
        }
        let proposal = SignedProposal::sign(body, &self.key, &self.chain_id);
        self.blocks.insert(body.block, block.clone());
        self.proposals.insert(self.round, proposal.clone());
        out.push(Action::Broadcast(
            Wire::Proposal {
                proposal,
                block: Box::new(block),
            }
            .encode(),
        ));
        self.count("proposals");
    }

    /// Signs and sends a vote; never a second value for one (round, kind).
    fn vote(&mut self, kind: VoteKind, value: Option<Hash>, out: &mut Vec<Action>) {
        let body = VoteBody {
            height: self.height,
            round: self.round,
            kind,
            value,
        };
        match self
            .mine
            .votes
            .iter()
            .find(|v| v.round == body.round && v.kind == kind)
        {
            Some(prev) if prev.value != value => return self.count("refused_double_vote"),
            Some(_) => {}
            None => {
                self.mine.votes.push(body);
                self.persist_mine(out);
            }
        }
        let signed = SignedVote::sign(body, &self.key, &self.chain_id);
        self.votes
            .entry((body.round, kind))
            .or_default()
            .insert(self.me, signed.clone());
        out.push(Action::Broadcast(Wire::Vote(signed).encode()));
        if self.cfg.unsafe_equivocate && kind == VoteKind::Prevote {
            // Test only: a second, conflicting prevote for the same slot.
            let other = VoteBody {
                value: if value.is_some() {
                    None
                } else {
                    Some(Hash([0xee; 32]))
                },
                ..body
            };
            out.push(Action::Broadcast(
                Wire::Vote(SignedVote::sign(other, &self.key, &self.chain_id)).encode(),
            ));
        }
    }

    /// Re-sends everything this validator signed at this height, every round: Tendermint's
    /// liveness assumes every message a correct validator sent eventually reaches every correct
    /// validator, and a lost prevote of an earlier round can be what a later re-proposal's
    /// polka needs (TM l.28).
    fn gossip_own(&mut self, out: &mut Vec<Action>) {
        for body in self.mine.votes.clone() {
            let signed = SignedVote::sign(body, &self.key, &self.chain_id);
            out.push(Action::Broadcast(Wire::Vote(signed).encode()));
        }
        let own: Vec<SignedProposal> = self
            .proposals
            .values()
            .filter(|p| p.proposer == self.me)
            .cloned()
            .collect();
        for proposal in own {
            if let Some(block) = self.blocks.get(&proposal.body.block).cloned() {
                out.push(Action::Broadcast(
                    Wire::Proposal {
                        proposal,
                        block: Box::new(block),
                    }
                    .encode(),
                ));
            }
        }
    }

    /// After a restart: re-sends what was signed in the current round.
    fn replay_own_votes(&mut self, out: &mut Vec<Action>) {
        let mine: Vec<VoteBody> = self
            .mine
            .votes
            .iter()
            .filter(|v| v.round == self.round && v.height == self.height)
            .copied()
            .collect();
        for body in mine {
            let signed = SignedVote::sign(body, &self.key, &self.chain_id);
            self.votes
                .entry((body.round, body.kind))
                .or_default()
                .insert(self.me, signed.clone());
            out.push(Action::Broadcast(Wire::Vote(signed).encode()));
            if body.kind == VoteKind::Prevote && self.step == Step::Propose {
                self.step = Step::Prevote;
            }
            if body.kind == VoteKind::Precommit {
                self.step = Step::Precommit;
            }
        }
    }

    fn power_for(&self, round: u32, kind: VoteKind, value: Option<Option<Hash>>) -> u128 {
        let table = self.current_table();
        self.votes.get(&(round, kind)).map_or(0, |m| {
            m.values()
                .filter(|v| value.is_none_or(|x| v.body.value == x))
                .map(|v| u128::from(table.power(&v.validator)))
                .sum()
        })
    }

    fn is_valid(&mut self, now: Time, hash: &Hash) -> bool {
        if let Some(v) = self.validity.get(hash) {
            return *v;
        }
        let Some(block) = self.blocks.get(hash) else {
            return false;
        };
        let ok = self.check_block(now, block);
        // A block a little ahead of this validator's clock becomes valid later: not cached.
        let early = block.header.time_ms > now + self.cfg.clock_skew_max.as_millis() as u64;
        if !ok {
            self.count("rejected_block");
        }
        if ok || !early {
            self.validity.insert(*hash, ok);
        }
        ok
    }

    fn check_block(&self, now: Time, block: &Block) -> bool {
        let h = &block.header;
        let Some(seal) = Seal::of(h) else {
            return false;
        };
        let table = self.current_table();
        h.height == self.height
            && h.parent == self.tip.hash()
            && h.time_ms >= self.tip.time_ms
            && h.time_ms <= now + self.cfg.clock_skew_max.as_millis() as u64
            && h.state_height == self.tip.height
            && h.state_root == self.tip_root
            && seal.slot == self.tip_slot() + u64::from(seal.round) + 1
            && table.power(&h.proposer) > 0
            // The block's proposer is its slot's: nobody can reuse another's public reveal.
            && h.proposer == self.proposer(h.height, seal.round)
            && h.proposer
                .verify(
                    DOMAIN_REVEAL,
                    &self.chain_id,
                    &h.height.to_le_bytes(),
                    &seal.reveal,
                )
                .is_ok()
            && block.txs.len() <= self.cfg.block_txs_max
            && block.check_structure().is_ok_and(|hashes| {
                let mut sorted = hashes.clone();
                sorted.sort_unstable();
                sorted.windows(2).all(|w| w[0] != w[1])
                    && self.verifier.verify_block(block, &hashes).is_ok()
            })
    }

    /// Evaluates Tendermint's upon-rules until none fires.
    fn progress(&mut self, now: Time, out: &mut Vec<Action>) {
        for _ in 0..64 {
            if self.deciding || !self.step_once(now, out) {
                return;
            }
        }
    }

    fn step_once(&mut self, now: Time, out: &mut Vec<Action>) -> bool {
        // TM l.49: a proposal with 2/3 precommits for it, in any round, decides.
        let rounds: Vec<(u32, Hash)> = self
            .proposals
            .iter()
            .map(|(r, p)| (*r, p.body.block))
            .collect();
        for (r, v) in &rounds {
            let power = self.power_for(*r, VoteKind::Precommit, Some(Some(*v)));
            if self.current_table().is_quorum(power) && self.is_valid(now, v) {
                self.decide(*r, *v, out);
                return false;
            }
        }
        // TM l.55: f+1 (more than 1/3 of the stake) in a later round: skip to it.
        let later: BTreeSet<u32> = self
            .votes
            .keys()
            .map(|(r, _)| *r)
            .filter(|r| *r > self.round)
            .collect();
        for r in later.into_iter().rev() {
            let table = self.current_table();
            let voters: BTreeSet<PublicKey> = self
                .votes
                .iter()
                .filter(|((vr, _), _)| *vr == r)
                .flat_map(|(_, m)| m.keys().copied())
                .collect();
            let power: u128 = voters.iter().map(|v| u128::from(table.power(v))).sum();
            if table.is_one_third(power) {
                self.count("round_skips");
                self.start_round(now, r, out);
                return true;
            }
        }
        let round = self.round;
        let proposal = self.proposals.get(&round).cloned();
        if self.step == Step::Propose {
            if let Some(p) = &proposal {
                let v = p.body.block;
                match p.body.valid_round {
                    // TM l.22.
                    None => {
                        let ok =
                            self.is_valid(now, &v) && self.locked.is_none_or(|(_, lv)| lv == v);
                        self.vote(VoteKind::Prevote, ok.then_some(v), out);
                        self.step = Step::Prevote;
                        return true;
                    }
                    // TM l.28.
                    Some(vr) if vr < round => {
                        let polka = self.power_for(vr, VoteKind::Prevote, Some(Some(v)));
                        if self.current_table().is_quorum(polka) {
                            let ok = self.is_valid(now, &v)
                                && self.locked.is_none_or(|(lr, lv)| lr <= vr || lv == v);
                            self.vote(VoteKind::Prevote, ok.then_some(v), out);
                            self.step = Step::Prevote;
                            return true;
                        }
                    }
                    Some(_) => {}
                }
            }
        }
        // TM l.34: 2/3 prevotes of any values: start the prevote timeout once.
        if self.step == Step::Prevote
            && !self.prevote_timer.contains(&round)
            && self
                .current_table()
                .is_quorum(self.power_for(round, VoteKind::Prevote, None))
        {
            self.prevote_timer.insert(round);
            self.set_timer(
                TIMER_PREVOTE,
                self.timeout(self.cfg.timeout_prevote, round),
                out,
            );
        }
        // TM l.36: a proposal with 2/3 prevotes for it: lock and precommit it.
        if let Some(p) = &proposal {
            let v = p.body.block;
            if self.step >= Step::Prevote
                && !self.polka_seen.contains(&round)
                && self.current_table().is_quorum(self.power_for(
                    round,
                    VoteKind::Prevote,
                    Some(Some(v)),
                ))
                && self.is_valid(now, &v)
            {
                self.polka_seen.insert(round);
                self.valid = Some((round, v));
                self.mine.valid = self.valid;
                let lock = self.step == Step::Prevote;
                if lock {
                    self.locked = Some((round, v));
                    self.mine.locked = self.locked;
                }
                // The block itself first: after a restart of every validator, the polka block
                // must still exist somewhere to be re-proposed (TM l.14).
                self.persist_blocks(out);
                if lock {
                    self.vote(VoteKind::Precommit, Some(v), out);
                    self.step = Step::Precommit;
                }
                self.persist_mine(out);
                return true;
            }
        }
        // TM l.44: 2/3 prevotes for nil: precommit nil.
        if self.step == Step::Prevote
            && self
                .current_table()
                .is_quorum(self.power_for(round, VoteKind::Prevote, Some(None)))
        {
            self.vote(VoteKind::Precommit, None, out);
            self.step = Step::Precommit;
            return true;
        }
        // TM l.47: 2/3 precommits of any values: start the precommit timeout once.
        if !self.precommit_timer.contains(&round)
            && self
                .current_table()
                .is_quorum(self.power_for(round, VoteKind::Precommit, None))
        {
            self.precommit_timer.insert(round);
            self.set_timer(
                TIMER_PRECOMMIT,
                self.timeout(self.cfg.timeout_precommit, round),
                out,
            );
        }
        false
    }

    /// A block is final: apply its stake operations, persist, commit.
    fn decide(&mut self, round: u32, value: Hash, out: &mut Vec<Action>) {
        let block = self.blocks[&value].clone();
        let precommits: Vec<SignedVote> = self
            .votes
            .get(&(round, VoteKind::Precommit))
            .map(|m| {
                m.values()
                    .filter(|v| v.body.value == Some(value))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        self.finalize(block, Certificate(codec::encode(&precommits)), out);
    }

    fn finalize(&mut self, block: Block, certificate: Certificate, out: &mut Vec<Action>) {
        let height = block.header.height;
        if height > self.stakes.applied {
            for tx in &block.txs {
                if tx.chaincode == STAKING_CHAINCODE {
                    if let Ok(op) = codec::decode::<StakeOp>(&tx.payload) {
                        self.stakes.pending.push((tx.hash(), tx.sender, op));
                    }
                }
            }
            if let Some(seal) = Seal::of(&block.header) {
                self.stakes.accum =
                    sha256(&[self.stakes.accum.as_bytes().as_slice(), &seal.reveal.0].concat());
            }
            let len = self.cfg.epoch_length.max(1);
            if height % len == 0 {
                let epoch = epoch_of(height, len);
                let mut table = self.stakes.tables[&epoch].0.clone();
                for (tx, sender, op) in std::mem::take(&mut self.stakes.pending) {
                    if let Err(why) = table.apply(&tx, &sender, &op, &self.chain_id) {
                        *self
                            .counters
                            .entry(format!("stake_op_refused: {why}"))
                            .or_default() += 1;
                    }
                }
                // A set with no stake left could never decide again: keep the old one.
                if table.total() == 0 {
                    table = self.stakes.tables[&epoch].0.clone();
                }
                self.stakes
                    .tables
                    .insert(epoch + 1, (table, self.stakes.accum));
                self.stakes.tables.retain(|e, _| *e >= epoch);
            }
            self.stakes.applied = height;
            out.push(Action::Persist {
                key: RECORD_TABLE.to_vec(),
                value: Some(codec::encode(&self.stakes)),
            });
        }
        let convicted: BTreeSet<PublicKey> = block
            .txs
            .iter()
            .filter(|t| t.chaincode == STAKING_CHAINCODE)
            .filter_map(|t| match codec::decode::<StakeOp>(&t.payload) {
                Ok(StakeOp::Evidence(e)) => e.offender(&self.chain_id),
                _ => None,
            })
            .collect();
        self.evidence.retain(|e| {
            e.offender(&self.chain_id)
                .is_none_or(|o| !convicted.contains(&o))
        });
        self.deciding = true;
        self.decided_header = Some(block.header.clone());
        self.count("decisions");
        out.push(Action::Commit { block, certificate });
    }

    fn on_executed(&mut self, now: Time, height: u64, root: Hash, out: &mut Vec<Action>) {
        if !self.deciding || height != self.height {
            return;
        }
        if let Some(h) = self.decided_header.take() {
            self.tip = h;
        }
        self.tip_root = root;
        self.height = height + 1;
        self.reset_height();
        self.synced.retain(|h, _| *h > height);
        let future = std::mem::take(&mut self.future);
        self.start_round(now, 0, out);
        for (from, wire) in future {
            self.on_wire(now, from, wire, out);
        }
        self.apply_synced(now, out);
    }

    fn reset_height(&mut self) {
        self.round = 0;
        self.step = Step::Propose;
        self.locked = None;
        self.valid = None;
        self.proposals.clear();
        self.blocks.clear();
        self.validity.clear();
        self.votes.clear();
        self.polka_seen.clear();
        self.prevote_timer.clear();
        self.precommit_timer.clear();
        self.deciding = false;
        self.mine = VoteRecord {
            height: self.height,
            ..VoteRecord::default()
        };
    }

    fn report(&mut self, e: Evidence) {
        let Some(offender) = e.offender(&self.chain_id) else {
            return;
        };
        if self.reported.insert(offender) {
            self.count("equivocations_detected");
            self.evidence.push(e);
        }
    }

    fn ask_blocks(&mut self, now: Time, peer: PublicKey, out: &mut Vec<Action>) {
        if self.last_sync.is_some_and(|t| now < t + SYNC_INTERVAL_MS) {
            return;
        }
        self.last_sync = Some(now);
        self.count("sync_requests");
        out.push(Action::NeedBlocks {
            from_height: self.height,
            peer: Some(peer),
        });
    }

    fn on_wire(&mut self, now: Time, from: PublicKey, wire: Wire, out: &mut Vec<Action>) {
        let height = match &wire {
            Wire::Proposal { proposal, .. } => proposal.body.height,
            Wire::Vote(v) => v.body.height,
        };
        if height < self.height {
            return;
        }
        let round = match &wire {
            Wire::Proposal { proposal, .. } => proposal.body.round,
            Wire::Vote(v) => v.body.round,
        };
        if round > self.round.saturating_add(ROUND_AHEAD_MAX) {
            // Memory per height stays bounded; an honest validator is never this far ahead.
            return self.count("rejected_round_too_far");
        }
        if height > self.height || self.deciding {
            if height == self.height + 1 && self.future.len() < FUTURE_MAX {
                self.future.push((from, wire));
            }
            // Others decided heights this validator has not: fetch them with certificates.
            if height > self.height + 1 || (height == self.height + 1 && !self.deciding) {
                self.ask_blocks(now, from, out);
            }
            return;
        }
        match wire {
            Wire::Proposal { proposal, block } => self.on_proposal(now, proposal, *block, out),
            Wire::Vote(v) => self.on_vote(now, v, out),
        }
    }

    fn on_proposal(
        &mut self,
        now: Time,
        proposal: SignedProposal,
        block: Block,
        out: &mut Vec<Action>,
    ) {
        let r = proposal.body.round;
        if proposal.proposer != self.proposer(self.height, r)
            || block.hash() != proposal.body.block
            || !proposal.verify(&self.chain_id)
        {
            return self.count("rejected_proposal");
        }
        if let Some(prev) = self.proposals.get(&r) {
            if prev.body.block != proposal.body.block {
                let e = Evidence::DoubleProposal(prev.clone(), proposal);
                self.report(e);
            }
            return;
        }
        self.blocks.insert(proposal.body.block, block);
        self.proposals.insert(r, proposal);
        self.progress(now, out);
    }

    fn on_vote(&mut self, now: Time, v: SignedVote, out: &mut Vec<Action>) {
        if self.current_table().power(&v.validator) == 0 || !v.verify(&self.chain_id) {
            return self.count("rejected_vote");
        }
        let slot = self.votes.entry((v.body.round, v.body.kind)).or_default();
        if let Some(prev) = slot.get(&v.validator) {
            if prev.body.value != v.body.value {
                let e = Evidence::DoubleVote(prev.clone(), v);
                self.report(e);
            }
            return;
        }
        slot.insert(v.validator, v);
        self.progress(now, out);
    }

    fn on_synced(
        &mut self,
        now: Time,
        block: Block,
        certificate: Certificate,
        out: &mut Vec<Action>,
    ) {
        let h = block.header.height;
        if h < self.height || (h == self.height && self.deciding) {
            return;
        }
        if self.synced.len() >= SYNCED_MAX {
            // Keep the lowest heights: they are needed first (junk far ahead cannot crowd
            // out the block this validator is waiting for).
            match self.synced.last_key_value() {
                Some((top, _)) if *top > h => {
                    let top = *top;
                    self.synced.remove(&top);
                }
                _ => return,
            }
        }
        // A second copy for one height replaces the first only if the first fails its checks
        // (apply_synced removes what it refuses).
        self.synced.entry(h).or_insert((block, certificate));
        self.apply_synced(now, out);
    }

    /// Commits the synced block for the current height if its certificate holds.
    fn apply_synced(&mut self, now: Time, out: &mut Vec<Action>) {
        if self.deciding {
            return;
        }
        let Some((block, certificate)) = self.synced.remove(&self.height) else {
            return;
        };
        let hash = block.hash();
        let Ok(precommits) = codec::decode::<Vec<SignedVote>>(&certificate.0) else {
            return self.count("rejected_certificate");
        };
        let table = self.current_table().clone();
        let mut signers = BTreeSet::new();
        let mut power: u128 = 0;
        let round = precommits.first().map(|v| v.body.round);
        for v in &precommits {
            let ok = v.body.height == self.height
                && Some(v.body.round) == round
                && v.body.kind == VoteKind::Precommit
                && v.body.value == Some(hash)
                && signers.insert(v.validator)
                && v.verify(&self.chain_id);
            if !ok {
                return self.count("rejected_certificate");
            }
            power += u128::from(table.power(&v.validator));
        }
        if !table.is_quorum(power) || !self.check_block(now, &block) {
            return self.count("rejected_certificate");
        }
        self.count("synced_blocks");
        self.finalize(block, certificate, out);
    }
}

impl Engine for Pos {
    fn start(&mut self, now: Time, out: &mut Vec<Action>) {
        out.push(Action::SetTimer {
            id: TIMER_REBROADCAST,
            after: self.cfg.rebroadcast,
        });
        // A restarted validator resumes the round it had reached, re-sending what it signed.
        let round = self.round;
        self.start_round(now, round, out);
    }

    fn handle(&mut self, now: Time, event: Event, out: &mut Vec<Action>) {
        match event {
            Event::Message { from, bytes } => {
                if !self.members.contains(&from) || from == self.me {
                    return self.count("rejected_stranger");
                }
                match Wire::decode(&bytes) {
                    Some(w) => self.on_wire(now, from, w, out),
                    None => self.count("rejected_garbage"),
                }
            }
            Event::TimerFired(TIMER_REBROADCAST) => {
                out.push(Action::SetTimer {
                    id: TIMER_REBROADCAST,
                    after: self.cfg.rebroadcast,
                });
                if !self.deciding {
                    self.gossip_own(out);
                }
            }
            Event::TimerFired(id) => {
                let Some(at) = self.timers.remove(&id) else {
                    return;
                };
                if at != (self.height, self.round) || self.deciding {
                    return;
                }
                match id {
                    // TM l.57.
                    TIMER_PROPOSE if self.step == Step::Propose => {
                        self.vote(VoteKind::Prevote, None, out);
                        self.step = Step::Prevote;
                        self.progress(now, out);
                    }
                    // TM l.61.
                    TIMER_PREVOTE if self.step == Step::Prevote => {
                        self.vote(VoteKind::Precommit, None, out);
                        self.step = Step::Precommit;
                        self.progress(now, out);
                    }
                    // TM l.65.
                    TIMER_PRECOMMIT => {
                        let next = self.round + 1;
                        self.start_round(now, next, out);
                    }
                    TIMER_POLL => self.request_txs(out),
                    _ => {}
                }
            }
            Event::Transactions { txs, .. } => self.on_transactions(now, txs, out),
            Event::BlockExecuted { height, state_root } => {
                self.on_executed(now, height, state_root, out)
            }
            Event::WorkFound { .. } => {}
            Event::SyncedBlock { block, certificate } => {
                self.on_synced(now, block, certificate, out)
            }
        }
    }

    fn status(&self) -> EngineStatus {
        let epoch = epoch_of(self.height, self.cfg.epoch_length);
        let mut extra = BTreeMap::new();
        extra.insert("epoch".into(), epoch.to_string());
        extra.insert(
            "slot".into(),
            (self.tip_slot() + u64::from(self.round) + 1).to_string(),
        );
        extra.insert("round".into(), self.round.to_string());
        extra.insert("step".into(), format!("{:?}", self.step).to_lowercase());
        extra.insert("finalized_height".into(), self.tip.height.to_string());
        extra.insert("epoch_length".into(), self.cfg.epoch_length.to_string());
        if let Some((table, randomness)) = self.table(self.height) {
            extra.insert(
                "stakes".into(),
                table
                    .stakes
                    .iter()
                    .map(|(k, s)| format!("{}:{s}", &k.to_hex()[..16]))
                    .collect::<Vec<_>>()
                    .join(","),
            );
            extra.insert("total_stake".into(), table.total().to_string());
            extra.insert(
                "slashed".into(),
                table
                    .slashed
                    .iter()
                    .map(|k| k.to_hex()[..16].to_owned())
                    .collect::<Vec<_>>()
                    .join(","),
            );
            extra.insert("randomness".into(), randomness.to_hex());
        }
        EngineStatus {
            engine: "pos",
            height: self.tip.height,
            view: epoch,
            leader: Some(self.proposer(self.height, self.round)),
            extra,
            leads: false,
            counters: self.counters.clone(),
        }
    }
}
