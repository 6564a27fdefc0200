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

mod finality;
mod inbound;
mod round;
mod step;
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
