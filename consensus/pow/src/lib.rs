//! Proof of work: Nakamoto consensus (Nakamoto, "Bitcoin: A Peer-to-Peer Electronic Cash
//! System", 2008) as a sans-IO medchain engine.
//!
//! - **Seal.** A block's header seal is `target (32 bytes) || nonce (8 bytes, little-endian)`.
//!   The work hash is the double SHA-256 of the header *template* (the header whose seal is the
//!   target alone) followed by the nonce ([`medchain_consensus::work_hash`]); it must be at most
//!   the target (§4 of the paper).
//! - **Retargeting.** Every block's target is a function of its ancestors: LWMA over the last
//!   `lwma_window` solve times toward `block_interval` ([`target::lwma`]). A block with any
//!   other target is invalid.
//! - **Fork choice.** The valid chain with the most cumulative work (the sum over its blocks of
//!   `2^256 / (target + 1)`), the first seen among equals (§5, "longest chain" as work).
//! - **Finality.** A block is final once `confirmations` blocks (default 6) are built on it in
//!   the heaviest chain (§11's probabilistic argument); only then does it reach the ledger as
//!   [`Action::Commit`], with the headers of those confirmations as its certificate. A final
//!   block is never reverted: a heavier chain that does not contain it is refused. This is the
//!   engine's promise and its limit: an attacker with more than half of the hash power can
//!   build such a chain (see the simulator's attack scenario), and a network partition longer
//!   than about `confirmations × block_interval` can let both sides finalize.
//! - **Orphans** (blocks whose parent is unknown) wait in a bounded pool while the parent is
//!   fetched from the peer that sent them; blocks the node misses are found through periodic
//!   tip announcements and fetched (`GetBlocks`), final ones from the peer's ledger
//!   ([`Action::NeedBlocks`]).
//! - **Mining** is [`Action::StartWork`] on a template over the heaviest tip; the runtime
//!   searches nonces (worker threads in the node, seeded exponential solve times in the
//!   simulator) and answers [`Event::WorkFound`]. A new tip replaces the template at once.
//!
//! Execution is deferred as in the other engines: a header claims the state root at the last
//! height its miner executed; the claim is checked on arrival when the height is known, and
//! always before the block is committed (a block with a false claim is dropped with its
//! descendants).

mod mining;
mod sync;
mod target;
mod tree;

pub use target::{difficulty, for_hashes, lwma, work};

use medchain_consensus::{
    work_hash, Action, Engine, EngineContext, EngineStatus, Event, Time, TimerId, TxVerifier,
    ValidatorSet,
};
use medchain_types::{codec, Block, Certificate, Hash, Header, PublicKey, Transaction};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

/// The persisted record of the last final blocks' times, targets and state roots (retargeting
/// and state-claim checks need them after a restart; the ledger's tip alone is not enough).
/// Written after each final block is executed.
pub const RECORD_WINDOW: &[u8] = b"pow/final-window";
const TIMER_POLL: TimerId = TimerId(1);
const TIMER_ANNOUNCE: TimerId = TimerId(2);
const SEAL_LEN: usize = 40;
/// Most blocks in one `Blocks` answer.
const SYNC_BLOCKS_MAX: usize = 32;
/// Most transaction bytes in one `Blocks` answer (estimated).
const SYNC_BYTES_MAX: usize = 8 << 20;
/// Final blocks kept in memory to serve peers that are a little behind.
const SERVE_FINAL: u64 = 8;
/// How far below its block a state claim may point (deterministic, so every node agrees on
/// validity; an honest miner's claim is about `confirmations + 2` below).
const CLAIM_DEPTH_MAX: u64 = 64;
/// Executed state roots remembered and persisted (more than any valid claim reaches back).
const EXECUTED_WINDOW: usize = 2 * CLAIM_DEPTH_MAX as usize;
/// Least time between two sync requests to one peer.
const SYNC_INTERVAL_MS: u64 = 500;
/// Blocks remembered as invalid (so a rebroadcast cannot make them best again).
const INVALID_MAX: usize = 1024;
/// Most bytes of blocks waiting in the orphan pool.
const ORPHAN_BYTES_MAX: usize = 64 << 20;
/// Ancestors whose transactions a miner leaves out of its template.
const TEMPLATE_DEPTH_MAX: usize = 64;

/// Proof-of-work parameters (from genesis).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PowConfig {
    /// The block interval retargeting aims at.
    pub block_interval: Duration,
    /// The target of the first blocks (before there are solve times to retarget from).
    pub initial_target: Hash,
    /// The easiest target any block may have.
    pub max_target: Hash,
    /// Solve times LWMA averages over.
    pub lwma_window: usize,
    /// Blocks built on a block before it is final (k).
    pub confirmations: u64,
    /// Most transactions in a block.
    pub block_txs_max: usize,
    /// Most transaction bytes in a block.
    pub block_bytes_max: usize,
    /// How often a miner refreshes its template with newly arrived transactions.
    pub poll_txs: Duration,
    /// How often a node announces its tip (peers that lack it fetch it).
    pub announce: Duration,
    /// How far ahead of a node's clock a block time may be.
    pub clock_skew_max: Duration,
    /// Most blocks waiting for their parent.
    pub orphans_max: usize,
}

impl PowConfig {
    /// The target at which one hash in `hashes` succeeds on average.
    pub fn target_for_hashes(hashes: u64) -> Hash {
        for_hashes(hashes)
    }
}

impl Default for PowConfig {
    fn default() -> Self {
        PowConfig {
            block_interval: Duration::from_secs(3),
            // About a second of one SHA-NI core; retargeting finds the cluster's real rate.
            initial_target: for_hashes(2 << 20),
            max_target: for_hashes(1 << 12),
            lwma_window: 30,
            confirmations: 6,
            block_txs_max: 2000,
            block_bytes_max: 2 << 20,
            poll_txs: Duration::from_millis(500),
            announce: Duration::from_secs(2),
            clock_skew_max: Duration::from_secs(15),
            orphans_max: 256,
        }
    }
}

/// Proof-of-work messages between nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Wire {
    /// A new block (mined or relayed).
    Block(Block),
    /// Asks for the sender's heaviest chain from a height.
    GetBlocks {
        /// First height wanted.
        from_height: u64,
    },
    /// Answer to `GetBlocks`: consecutive blocks of the heaviest chain, oldest first.
    Blocks(Vec<Block>),
    /// The sender's heaviest tip.
    Tip {
        /// Its height.
        height: u64,
        /// Its hash.
        hash: Hash,
    },
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

/// The target and nonce of a sealed header.
pub fn parse_seal(h: &Header) -> Option<(Hash, u64)> {
    if h.seal.len() != SEAL_LEN {
        return None;
    }
    let target = Hash(h.seal[..32].try_into().ok()?);
    let nonce = u64::from_le_bytes(h.seal[32..].try_into().ok()?);
    Some((target, nonce))
}

/// Estimated bytes of a block (for memory budgets).
fn block_bytes(b: &Block) -> usize {
    b.txs.iter().map(|t| t.payload.len() + 200).sum::<usize>() + 300
}

/// The template a sealed header was mined from (its seal without the nonce).
pub fn template_of(h: &Header) -> Header {
    let mut t = h.clone();
    t.seal.truncate(32);
    t
}

/// What [`RECORD_WINDOW`] holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct FinalRecord {
    window: Vec<WindowEntry>,
    roots: Vec<(u64, Hash)>,
}

/// One final block's retargeting inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct WindowEntry {
    height: u64,
    hash: Hash,
    time_ms: u64,
    target: Hash,
}

/// A known valid block.
#[derive(Debug, Clone)]
struct Entry {
    block: Block,
    /// False for the ledger tip the engine started from (its transactions are not in memory).
    complete: bool,
    target: Hash,
    /// Cumulative work from the block the engine started from.
    work: u128,
    /// Arrival order (the tie-break of fork choice: first seen wins).
    seq: u64,
    /// Sorted transaction hashes.
    tx_hashes: Vec<Hash>,
}

impl Entry {
    fn height(&self) -> u64 {
        self.block.header.height
    }
    fn parent(&self) -> Hash {
        self.block.header.parent
    }
}

/// The block being mined.
#[derive(Debug, Clone)]
struct Template {
    hash: Hash,
    block: Block,
    target: Hash,
}

/// What became of a block offered to [`Pow::accept`].
enum Accepted {
    New(Hash),
    Orphan,
    Refused,
}

/// The proof-of-work engine.
pub struct Pow {
    cfg: PowConfig,
    me: PublicKey,
    validators: ValidatorSet,
    verifier: Arc<dyn TxVerifier>,
    blocks: BTreeMap<Hash, Entry>,
    orphans: BTreeMap<Hash, (Block, bool)>,
    orphan_order: VecDeque<Hash>,
    orphans_by_parent: BTreeMap<Hash, Vec<Hash>>,
    orphan_bytes: usize,
    invalid: BTreeSet<Hash>,
    invalid_order: VecDeque<Hash>,
    final_height: u64,
    final_hash: Hash,
    window: Vec<WindowEntry>,
    best: Hash,
    executed: BTreeMap<u64, Hash>,
    committing: Option<u64>,
    template: Option<Template>,
    awaiting_txs: bool,
    last_sync: BTreeMap<PublicKey, Time>,
    last_need_blocks: Option<Time>,
    seq: u64,
    counters: BTreeMap<String, u64>,
}

impl std::fmt::Debug for Pow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pow({} final {})", self.me, self.final_height)
    }
}

impl Pow {
    /// An engine resuming from `ctx.tip` and its persisted records.
    pub fn new(ctx: EngineContext, cfg: PowConfig) -> Pow {
        let me = ctx.key.public();
        let tip = ctx.tip;
        let height = tip.header.height;
        let tip_hash = tip.header.hash();
        let target = parse_seal(&tip.header).map_or(cfg.initial_target, |(t, _)| t);
        let mut counters = BTreeMap::new();
        let record: FinalRecord = ctx
            .records
            .get(RECORD_WINDOW)
            .and_then(|b| codec::decode(b).ok())
            .unwrap_or_default();
        let mut window = record.window;
        window.retain(|e| e.height <= height);
        // The record is written after each block is executed, so it may lack the ledger's tip.
        if height > 0
            && window
                .last()
                .is_some_and(|e| e.height + 1 == height && e.hash == tip.header.parent)
        {
            window.push(WindowEntry {
                height,
                hash: tip_hash,
                time_ms: tip.header.time_ms,
                target,
            });
        }
        let mut executed: BTreeMap<u64, Hash> = record
            .roots
            .into_iter()
            .filter(|(h, _)| *h < height)
            .collect();
        executed.insert(height, tip.state_root);
        if height > 0 && window.last().map(|e| e.hash) != Some(tip_hash) {
            // Lost or foreign record: retargeting restarts from the tip alone (counted, since
            // this node may then disagree with its peers about targets until it resyncs).
            counters.insert("window_rebuilt".to_owned(), 1);
            window = vec![WindowEntry {
                height,
                hash: tip_hash,
                time_ms: tip.header.time_ms,
                target,
            }];
        }
        let entry = Entry {
            block: Block {
                header: tip.header,
                txs: Vec::new(),
            },
            complete: height == 0,
            target,
            work: 0,
            seq: 0,
            tx_hashes: Vec::new(),
        };
        Pow {
            me,
            validators: ctx.validators,
            verifier: ctx.verifier,
            blocks: BTreeMap::from([(tip_hash, entry)]),
            orphans: BTreeMap::new(),
            orphan_order: VecDeque::new(),
            orphans_by_parent: BTreeMap::new(),
            orphan_bytes: 0,
            invalid: BTreeSet::new(),
            invalid_order: VecDeque::new(),
            final_height: height,
            final_hash: tip_hash,
            window,
            best: tip_hash,
            executed,
            committing: None,
            template: None,
            awaiting_txs: false,
            last_sync: BTreeMap::new(),
            last_need_blocks: None,
            seq: 1,
            counters,
            cfg,
        }
    }

    fn count(&mut self, what: &str) {
        *self.counters.entry(what.to_owned()).or_default() += 1;
    }

    fn best_entry(&self) -> &Entry {
        &self.blocks[&self.best]
    }

    /// Hashes from `from` down to the final tip (exclusive), newest first.
    fn chain_from(&self, from: Hash) -> Vec<Hash> {
        let mut out = Vec::new();
        let mut cur = from;
        while cur != self.final_hash {
            let Some(e) = self.blocks.get(&cur) else {
                break;
            };
            out.push(cur);
            cur = e.parent();
        }
        out
    }

    /// Hashes from `from` down through the final blocks still in memory, newest first: the
    /// chain whose transactions a block on `from` must not repeat. (A transaction that left
    /// memory final is kept out by the mempool, which drops committed transactions, and by
    /// the ledger, which records a repeat as a duplicate without executing it.)
    fn recent_chain(&self, from: Hash) -> Vec<Hash> {
        let mut out = Vec::new();
        let mut cur = from;
        while let Some(e) = self.blocks.get(&cur) {
            if out.len() >= TEMPLATE_DEPTH_MAX {
                break;
            }
            out.push(cur);
            if e.height() == 0 {
                break;
            }
            cur = e.parent();
        }
        out
    }

    /// The target a child of `parent` must have.
    fn next_target(&self, parent: &Hash) -> Hash {
        let n = self.cfg.lwma_window.max(1);
        let mut points: Vec<(u64, Hash)> = Vec::with_capacity(n + 1);
        let mut cur = *parent;
        while cur != self.final_hash && points.len() <= n {
            let Some(e) = self.blocks.get(&cur) else {
                break;
            };
            points.push((e.block.header.time_ms, e.target));
            cur = e.parent();
        }
        for w in self.window.iter().rev() {
            if points.len() > n {
                break;
            }
            points.push((w.time_ms, w.target));
        }
        points.reverse();
        lwma(
            &points,
            n,
            self.cfg.block_interval.as_millis() as u64,
            &self.cfg.initial_target,
            &self.cfg.max_target,
        )
    }

    fn last_executed(&self) -> (u64, Hash) {
        let (h, r) = self
            .executed
            .iter()
            .next_back()
            .expect("the start tip's root is known");
        (*h, *r)
    }
}

impl Engine for Pow {
    fn start(&mut self, _now: Time, out: &mut Vec<Action>) {
        out.push(Action::SetTimer {
            id: TIMER_POLL,
            after: self.cfg.poll_txs,
        });
        out.push(Action::SetTimer {
            id: TIMER_ANNOUNCE,
            after: self.cfg.announce,
        });
        out.push(Action::Broadcast(
            Wire::GetBlocks {
                from_height: self.final_height + 1,
            }
            .encode(),
        ));
        self.request_template(out);
    }

    fn handle(&mut self, now: Time, event: Event, out: &mut Vec<Action>) {
        match event {
            Event::Message { from, bytes } => {
                if !self.validators.contains(&from) || from == self.me {
                    return self.count("rejected_stranger");
                }
                match Wire::decode(&bytes) {
                    None => self.count("rejected_garbage"),
                    Some(Wire::Block(b)) => self.on_block(now, b, Some(from), true, out),
                    Some(Wire::Blocks(bs)) => self.on_blocks(now, from, bs, out),
                    Some(Wire::GetBlocks { from_height }) => self.serve(from, from_height, out),
                    Some(Wire::Tip { height, hash }) => {
                        if height > self.final_height
                            && !self.blocks.contains_key(&hash)
                            && !self.orphans.contains_key(&hash)
                        {
                            self.request_sync(now, from, out);
                        }
                    }
                }
            }
            Event::TimerFired(TIMER_POLL) => {
                self.request_template(out);
                out.push(Action::SetTimer {
                    id: TIMER_POLL,
                    after: self.cfg.poll_txs,
                });
            }
            Event::TimerFired(TIMER_ANNOUNCE) => {
                let best = self.best_entry();
                out.push(Action::Broadcast(
                    Wire::Tip {
                        height: best.height(),
                        hash: self.best,
                    }
                    .encode(),
                ));
                out.push(Action::SetTimer {
                    id: TIMER_ANNOUNCE,
                    after: self.cfg.announce,
                });
            }
            Event::TimerFired(_) => {}
            Event::Transactions { txs, .. } => self.on_transactions(now, txs, out),
            Event::BlockExecuted { height, state_root } => {
                self.on_executed(height, state_root, out)
            }
            Event::WorkFound { header_hash, nonce } => {
                self.on_work_found(now, header_hash, nonce, out)
            }
            Event::SyncedBlock { block, .. } => self.on_block(now, block, None, false, out),
        }
    }

    fn status(&self) -> EngineStatus {
        let best = self.best_entry();
        let target = self
            .template
            .as_ref()
            .map_or_else(|| self.next_target(&self.best), |t| t.target);
        let mut extra = BTreeMap::new();
        extra.insert("best_height".into(), best.height().to_string());
        extra.insert("best_hash".into(), self.best.to_hex());
        // Cumulative work of the heaviest chain since this engine started (comparable between
        // nodes that started from the same block).
        extra.insert("best_work".into(), best.work.to_string());
        extra.insert("confirmations".into(), self.cfg.confirmations.to_string());
        extra.insert("target".into(), target.to_hex());
        extra.insert(
            "difficulty".into(),
            format!("{:.3}", difficulty(&target, &self.cfg.max_target)),
        );
        extra.insert("hash_rate".into(), format!("{:.0}", self.hash_rate()));
        extra.insert(
            "block_interval_ms".into(),
            self.cfg.block_interval.as_millis().to_string(),
        );
        extra.insert("orphans".into(), self.orphans.len().to_string());
        extra.insert("tree".into(), self.blocks.len().to_string());
        EngineStatus {
            engine: "pow",
            height: self.final_height,
            view: 0,
            leader: None,
            extra,
            leads: false,
            counters: self.counters.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_parsing_refuses_other_lengths() {
        let mut h = Header {
            height: 1,
            parent: Hash::ZERO,
            tx_root: Hash::ZERO,
            tx_count: 0,
            state_height: 0,
            state_root: Hash::ZERO,
            time_ms: 0,
            proposer: PublicKey([0; 32]),
            seal: vec![7; 40],
        };
        let (t, n) = parse_seal(&h).expect("40 bytes");
        assert_eq!(t, Hash([7; 32]));
        assert_eq!(n, u64::from_le_bytes([7; 8]));
        assert_eq!(template_of(&h).seal.len(), 32);
        h.seal.push(0);
        assert!(parse_seal(&h).is_none());
    }
}
