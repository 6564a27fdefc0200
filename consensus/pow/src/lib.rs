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

mod target;

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

    /// Checks a block against everything but its parent's presence; inserts it if valid.
    fn accept(
        &mut self,
        now: Time,
        block: Block,
        from: Option<PublicKey>,
        relay: bool,
        out: &mut Vec<Action>,
    ) -> Accepted {
        let hash = block.hash();
        if self.blocks.contains_key(&hash) || self.orphans.contains_key(&hash) {
            self.count("duplicate_blocks");
            return Accepted::Refused;
        }
        let h = &block.header;
        if h.height <= self.final_height {
            self.count("stale_blocks_received");
            return Accepted::Refused;
        }
        if self.invalid.contains(&hash) || self.invalid.contains(&h.parent) {
            // Known bad, or built on a block found bad (its false state claim, at finality).
            self.remember_invalid(hash);
            self.count("rejected_invalid_ancestry");
            return Accepted::Refused;
        }
        if !self.validators.contains(&h.proposer) {
            self.count("rejected_proposer");
            return Accepted::Refused;
        }
        let Some((target, nonce)) = parse_seal(h) else {
            self.count("rejected_seal");
            return Accepted::Refused;
        };
        // Work first: it is cheap and keeps unsealed junk out of the orphan pool.
        if target > self.cfg.max_target || work_hash(&template_of(h), nonce) > target {
            self.count("rejected_work");
            return Accepted::Refused;
        }
        let Ok(tx_hashes) = block.check_structure() else {
            self.count("rejected_structure");
            return Accepted::Refused;
        };
        let tx_bytes: usize = block.txs.iter().map(|t| t.payload.len() + 200).sum();
        if block.txs.len() > self.cfg.block_txs_max || tx_bytes > self.cfg.block_bytes_max + 200 {
            self.count("rejected_size");
            return Accepted::Refused;
        }
        let Some(parent) = self.blocks.get(&h.parent) else {
            self.add_orphan(now, hash, block, from, relay, out);
            return Accepted::Orphan;
        };
        if h.height != parent.height() + 1 {
            self.count("rejected_height");
            return Accepted::Refused;
        }
        if h.time_ms < parent.block.header.time_ms
            || h.time_ms > now + self.cfg.clock_skew_max.as_millis() as u64
        {
            self.count("rejected_time");
            return Accepted::Refused;
        }
        let parent_work = parent.work;
        if target != self.next_target(&h.parent) {
            self.count("rejected_target");
            return Accepted::Refused;
        }
        let claim_reach = h.state_height.saturating_add(CLAIM_DEPTH_MAX) >= h.height;
        match self.executed.get(&h.state_height) {
            Some(root) if claim_reach && *root == h.state_root => {}
            None if claim_reach && h.state_height > self.last_executed().0 => {} // checked before commit
            _ => {
                self.count("rejected_state");
                return Accepted::Refused;
            }
        }
        // Validity must be a function of the block and its ancestors alone, never of what a
        // node happens to hold in memory: a transaction repeated from an ancestor is therefore
        // not a reason to refuse a block (miners avoid it; the ledger records a repeat as a
        // duplicate without executing it), only a repeat inside the block is.
        let mut sorted = tx_hashes.clone();
        sorted.sort_unstable();
        if sorted.windows(2).any(|w| w[0] == w[1]) {
            self.count("rejected_duplicate_tx");
            return Accepted::Refused;
        }
        if self.verifier.verify_block(&block, &tx_hashes).is_err() {
            self.count("rejected_txs");
            return Accepted::Refused;
        }
        if relay {
            out.push(Action::Broadcast(Wire::Block(block.clone()).encode()));
        }
        self.seq += 1;
        self.blocks.insert(
            hash,
            Entry {
                block,
                complete: true,
                target,
                work: parent_work.saturating_add(work(&target)),
                seq: self.seq,
                tx_hashes,
            },
        );
        Accepted::New(hash)
    }

    fn add_orphan(
        &mut self,
        now: Time,
        hash: Hash,
        block: Block,
        from: Option<PublicKey>,
        relay: bool,
        out: &mut Vec<Action>,
    ) {
        // Orphans are local policy (not validity): keep only those with at least a quarter of
        // the work a block on the current tip needs, within a count and a byte budget.
        let best_target = self.next_target(&self.best);
        let (target, _) = parse_seal(&block.header).expect("checked before");
        if work(&target).saturating_mul(4) < work(&best_target) {
            return self.count("rejected_orphan_work");
        }
        let size = block_bytes(&block);
        self.count("orphans_received");
        while self.orphans.len() >= self.cfg.orphans_max.max(1)
            || self.orphan_bytes + size > ORPHAN_BYTES_MAX
        {
            let Some(old) = self.orphan_order.pop_front() else {
                break;
            };
            self.forget_orphan(&old);
        }
        self.orphans_by_parent
            .entry(block.header.parent)
            .or_default()
            .push(hash);
        self.orphan_bytes += size;
        self.orphans.insert(hash, (block, relay));
        self.orphan_order.push_back(hash);
        if let Some(peer) = from {
            self.request_sync(now, peer, out);
        }
    }

    fn forget_orphan(&mut self, hash: &Hash) {
        if let Some((b, _)) = self.orphans.remove(hash) {
            self.orphan_bytes = self.orphan_bytes.saturating_sub(block_bytes(&b));
            if let Some(v) = self.orphans_by_parent.get_mut(&b.header.parent) {
                v.retain(|h| h != hash);
                if v.is_empty() {
                    self.orphans_by_parent.remove(&b.header.parent);
                }
            }
        }
    }

    /// Offers a block and every orphan it connects; then updates the fork choice.
    fn on_block(
        &mut self,
        now: Time,
        block: Block,
        from: Option<PublicKey>,
        relay: bool,
        out: &mut Vec<Action>,
    ) {
        let old_best = self.best;
        let mut queue = VecDeque::from([(block, relay)]);
        while let Some((block, relay)) = queue.pop_front() {
            if let Accepted::New(hash) = self.accept(now, block, from, relay, out) {
                self.count("blocks_accepted");
                let e = &self.blocks[&hash];
                let best = self.best_entry();
                if e.work > best.work {
                    self.best = hash;
                }
                for child in self.orphans_by_parent.remove(&hash).unwrap_or_default() {
                    self.orphan_order.retain(|h| *h != child);
                    if let Some((b, r)) = self.orphans.remove(&child) {
                        self.orphan_bytes = self.orphan_bytes.saturating_sub(block_bytes(&b));
                        queue.push_back((b, r));
                    }
                }
            }
        }
        if self.best != old_best {
            self.on_new_best(old_best, out);
        }
    }

    fn on_new_best(&mut self, old_best: Hash, out: &mut Vec<Action>) {
        let old_height = self.blocks.get(&old_best).map(Entry::height);
        let extends = match old_height {
            Some(h) => {
                let mut cur = self.best;
                while self.blocks.get(&cur).is_some_and(|e| e.height() > h) {
                    cur = self.blocks[&cur].parent();
                }
                cur == old_best
            }
            None => true,
        };
        if !extends {
            self.count("reorgs");
        }
        self.request_template(out);
        self.try_finalize(out);
    }

    /// Commits the next block once it has `confirmations` blocks on it in the heaviest chain.
    fn try_finalize(&mut self, out: &mut Vec<Action>) {
        let k = self.cfg.confirmations as usize;
        while self.committing.is_none() {
            let chain = self.chain_from(self.best);
            if chain.len() < k + 1 {
                return;
            }
            let next = chain[chain.len() - 1];
            let e = &self.blocks[&next];
            let claim_ok =
                self.executed.get(&e.block.header.state_height) == Some(&e.block.header.state_root);
            if !claim_ok {
                self.count("invalidated_state_claim");
                self.invalidate(next, out);
                continue;
            }
            let confirmations: Vec<Header> = chain[chain.len() - 1 - k..chain.len() - 1]
                .iter()
                .rev()
                .map(|h| self.blocks[h].block.header.clone())
                .collect();
            let block = e.block.clone();
            let height = block.header.height;
            self.window.push(WindowEntry {
                height,
                hash: next,
                time_ms: block.header.time_ms,
                target: e.target,
            });
            let keep = self.cfg.lwma_window + 16;
            if self.window.len() > keep {
                self.window.drain(..self.window.len() - keep);
            }
            out.push(Action::Commit {
                block,
                certificate: Certificate(codec::encode(&confirmations)),
            });
            self.final_height = height;
            self.final_hash = next;
            self.committing = Some(height);
            // Branches that do not contain the new final block are dead from now on.
            self.prune();
        }
    }

    fn remember_invalid(&mut self, hash: Hash) {
        if self.invalid.insert(hash) {
            self.invalid_order.push_back(hash);
            while self.invalid_order.len() > INVALID_MAX {
                if let Some(old) = self.invalid_order.pop_front() {
                    self.invalid.remove(&old);
                }
            }
        }
    }

    /// Drops `root` and its descendants (a block found invalid late) and re-chooses the tip.
    fn invalidate(&mut self, root: Hash, out: &mut Vec<Action>) {
        let mut dead = BTreeSet::from([root]);
        // Parents precede children in height order.
        let mut by_height: Vec<(u64, Hash, Hash)> = self
            .blocks
            .iter()
            .map(|(h, e)| (e.height(), *h, e.parent()))
            .collect();
        by_height.sort_unstable();
        for (_, h, parent) in by_height {
            if dead.contains(&parent) {
                dead.insert(h);
            }
        }
        for h in &dead {
            self.blocks.remove(h);
            self.remember_invalid(*h);
        }
        let old = self.best;
        if dead.contains(&old) {
            self.best = self.choose_best();
            self.on_new_best(old, out);
        }
    }

    fn choose_best(&self) -> Hash {
        self.blocks
            .iter()
            .max_by(|a, b| a.1.work.cmp(&b.1.work).then(b.1.seq.cmp(&a.1.seq)))
            .map(|(h, _)| *h)
            .unwrap_or(self.final_hash)
    }

    /// Forgets blocks that can no longer matter: side branches below the final tip, blocks
    /// that do not descend from it, and final blocks older than the serving window.
    fn prune(&mut self) {
        let mut keep_final = BTreeSet::new();
        let mut cur = self.final_hash;
        for _ in 0..=SERVE_FINAL {
            keep_final.insert(cur);
            match self.blocks.get(&cur) {
                Some(e) if e.height() > 0 => cur = e.parent(),
                _ => break,
            }
        }
        let mut descends: BTreeMap<Hash, bool> = BTreeMap::new();
        let mut by_height: Vec<(u64, Hash, Hash)> = self
            .blocks
            .iter()
            .filter(|(_, e)| e.height() > self.final_height)
            .map(|(h, e)| (e.height(), *h, e.parent()))
            .collect();
        by_height.sort_unstable();
        for (_, h, parent) in by_height {
            let ok = parent == self.final_hash || descends.get(&parent).copied().unwrap_or(false);
            descends.insert(h, ok);
        }
        let final_height = self.final_height;
        self.blocks.retain(|h, e| {
            if e.height() <= final_height {
                keep_final.contains(h)
            } else {
                descends.get(h).copied().unwrap_or(false)
            }
        });
        if !self.blocks.contains_key(&self.best) {
            // Cannot happen (the final block is chosen on the best chain); stay safe anyway.
            self.best = self.choose_best();
        }
        let stale: Vec<Hash> = self
            .orphans
            .iter()
            .filter(|(_, (b, _))| b.header.height <= final_height)
            .map(|(h, _)| *h)
            .collect();
        for h in stale {
            self.forget_orphan(&h);
            self.orphan_order.retain(|o| *o != h);
        }
    }

    fn request_sync(&mut self, now: Time, peer: PublicKey, out: &mut Vec<Action>) {
        if peer == self.me {
            return;
        }
        if let Some(t) = self.last_sync.get(&peer) {
            if now < t + SYNC_INTERVAL_MS {
                return;
            }
        }
        self.last_sync.insert(peer, now);
        out.push(Action::Send {
            to: peer,
            msg: Wire::GetBlocks {
                from_height: self.final_height + 1,
            }
            .encode(),
        });
    }

    /// Answers `GetBlocks` from the heaviest chain in memory.
    fn serve(&mut self, to: PublicKey, from_height: u64, out: &mut Vec<Action>) {
        let mut chain = Vec::new();
        let mut cur = self.best;
        while let Some(e) = self.blocks.get(&cur) {
            if e.height() < from_height || !e.complete {
                break;
            }
            chain.push(cur);
            if e.height() == 0 {
                break;
            }
            cur = e.parent();
        }
        chain.reverse();
        let mut blocks = Vec::new();
        let mut bytes = 0;
        for h in chain.into_iter().take(SYNC_BLOCKS_MAX) {
            let b = &self.blocks[&h].block;
            bytes += b.txs.iter().map(|t| t.payload.len() + 200).sum::<usize>() + 300;
            if !blocks.is_empty() && bytes > SYNC_BYTES_MAX {
                break;
            }
            blocks.push(b.clone());
        }
        if blocks.is_empty() {
            return;
        }
        self.count("sync_served");
        out.push(Action::Send {
            to,
            msg: Wire::Blocks(blocks).encode(),
        });
    }

    fn on_blocks(&mut self, now: Time, from: PublicKey, blocks: Vec<Block>, out: &mut Vec<Action>) {
        if blocks.len() > SYNC_BLOCKS_MAX {
            self.count("rejected_sync_size");
            return;
        }
        let Some(first) = blocks.first() else {
            return;
        };
        // The peer's memory starts above what this node has: fetch final blocks from its ledger.
        if first.header.height > self.final_height + 1
            && !self.blocks.contains_key(&first.header.parent)
            && self.last_need_blocks.is_none_or(|t| now >= t + 1_000)
        {
            self.last_need_blocks = Some(now);
            self.count("ledger_sync_requests");
            out.push(Action::NeedBlocks {
                from_height: self.final_height + 1,
                peer: Some(from),
            });
        }
        for b in blocks {
            self.on_block(now, b, Some(from), false, out);
        }
    }

    fn request_template(&mut self, out: &mut Vec<Action>) {
        if self.awaiting_txs {
            return;
        }
        self.awaiting_txs = true;
        let in_chain: usize = self
            .recent_chain(self.best)
            .iter()
            .map(|h| self.blocks[h].tx_hashes.len())
            .sum();
        out.push(Action::NeedTransactions {
            max: self.cfg.block_txs_max + in_chain,
        });
    }

    fn on_transactions(&mut self, now: Time, txs: Vec<Transaction>, out: &mut Vec<Action>) {
        self.awaiting_txs = false;
        let chain = self.recent_chain(self.best);
        let in_chain: BTreeSet<Hash> = chain
            .iter()
            .flat_map(|h| self.blocks[h].tx_hashes.iter().copied())
            .collect();
        let mut chosen = Vec::new();
        let mut seen = BTreeSet::new();
        let mut bytes = 0;
        for tx in txs {
            if chosen.len() >= self.cfg.block_txs_max {
                break;
            }
            let h = tx.hash();
            if in_chain.contains(&h) || !seen.insert(h) {
                continue;
            }
            bytes += tx.payload.len() + 200;
            if bytes > self.cfg.block_bytes_max {
                break;
            }
            chosen.push(tx);
        }
        let parent = self.best_entry();
        if let Some(t) = &self.template {
            let same = t.block.header.parent == self.best
                && t.block.txs.len() == chosen.len()
                && t.block.txs.iter().zip(&chosen).all(|(a, b)| a == b);
            if same {
                return;
            }
        }
        let height = parent.height() + 1;
        let time_ms = now.max(parent.block.header.time_ms);
        let target = self.next_target(&self.best);
        let (state_height, state_root) = self.last_executed();
        let block = Block::build(
            height,
            self.best,
            state_height.min(height - 1),
            state_root,
            time_ms,
            self.me,
            target.0.to_vec(),
            chosen,
        );
        let header = block.header.clone();
        self.template = Some(Template {
            hash: header.hash(),
            block,
            target,
        });
        out.push(Action::StartWork { header, target });
    }

    fn on_work_found(&mut self, now: Time, header_hash: Hash, nonce: u64, out: &mut Vec<Action>) {
        let Some(t) = self.template.take_if(|t| t.hash == header_hash) else {
            self.count("work_found_stale");
            return;
        };
        let mut block = t.block;
        if work_hash(&block.header, nonce) > t.target {
            self.count("work_found_invalid");
            self.request_template(out);
            return;
        }
        block.header.seal.extend_from_slice(&nonce.to_le_bytes());
        self.count("blocks_mined");
        let best = self.best;
        self.on_block(now, block, None, true, out);
        if self.best == best {
            self.request_template(out);
        }
    }

    fn on_executed(&mut self, height: u64, state_root: Hash, out: &mut Vec<Action>) {
        self.executed.insert(height, state_root);
        while self.executed.len() > EXECUTED_WINDOW {
            self.executed.pop_first();
        }
        if self.committing == Some(height) {
            self.committing = None;
            let record = FinalRecord {
                window: self.window.clone(),
                roots: self.executed.iter().map(|(h, r)| (*h, *r)).collect(),
            };
            out.push(Action::Persist {
                key: RECORD_WINDOW.to_vec(),
                value: Some(codec::encode(&record)),
            });
            self.prune();
            self.try_finalize(out);
        }
    }

    /// Hash rate of the heaviest chain's recent blocks (expected hashes per second).
    fn hash_rate(&self) -> f64 {
        let mut points = Vec::new();
        let mut cur = self.best;
        while let Some(e) = self.blocks.get(&cur) {
            if points.len() > self.cfg.lwma_window || e.height() == 0 {
                break;
            }
            points.push((e.block.header.time_ms, e.target));
            cur = e.parent();
        }
        for w in self.window.iter().rev() {
            if points.len() > self.cfg.lwma_window {
                break;
            }
            if w.height < self.blocks.get(&cur).map_or(u64::MAX, Entry::height) {
                points.push((w.time_ms, w.target));
            }
        }
        if points.len() < 2 {
            return 0.0;
        }
        let span_ms = points[0]
            .0
            .saturating_sub(points[points.len() - 1].0)
            .max(1);
        let total: f64 = points[..points.len() - 1]
            .iter()
            .map(|(_, t)| work(t) as f64)
            .sum();
        total / (span_ms as f64 / 1000.0)
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
