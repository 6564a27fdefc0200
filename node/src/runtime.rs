//! The node runtime: drives a consensus engine over the QUIC transport and the RocksDB ledger.
//!
//! One dedicated thread owns the engine and executes its actions in order (so `Persist` is a
//! barrier: the synced write returns before anything after it is sent). Commits are executed and
//! written there too, then reported back to the engine. Around it, async tasks: the transport's
//! event loop (consensus messages go to the engine thread; transaction gossip is verified into
//! the mempool; block requests are served from the ledger), a gossip task that batches newly
//! admitted transactions to every peer, and the HTTP API.

use crate::config::NodeConfig;
use crate::genesis::Genesis;
use crate::mempool::Mempool;
use crate::verify::VerifyOnce;
use anyhow::{bail, Context, Result};
use bytes::Bytes;
use medchain_consensus::{
    Action, ChainTip, Engine, EngineContext, EngineStatus, Event, TimerId, TxVerifier,
};
use medchain_ledger::{Executor, Ledger};
use medchain_network::{NetEvent, Network, NetworkConfig};
use medchain_pbft::Pbft;
use medchain_types::{
    codec, Block, BlockError, Certificate, Hash, PublicKey, Receipt, SecretKey, Transaction,
    TxError,
};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{
    AtomicU64, AtomicUsize,
    Ordering::{Relaxed, SeqCst},
};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

/// Most inputs waiting for the engine thread.
pub const INBOX_MAX: usize = 16_384;
/// Most block requests served at once.
pub const SYNC_SERVERS_MAX: usize = 2;
/// Most blocks in one sync response.
pub const SYNC_BATCH_MAX: usize = 64;
/// Most bytes of blocks in one sync response.
pub const SYNC_BYTES_MAX: usize = 8 << 20;
/// Most transactions in one gossip message.
pub const GOSSIP_BATCH_MAX: usize = 2_000;
/// How often admitted transactions are gossiped.
pub const GOSSIP_INTERVAL: Duration = Duration::from_millis(20);
/// Most bytes of held transactions a primary releases to the gossip per tick (see
/// [`Shared::release_held`]): 200 MB/s, far above what clients send, yet a whole backlog
/// released at once would not fit the transport's send queues.
pub const GOSSIP_RELEASE_BYTES: usize = 4 << 20;
/// Most blocks whose transaction hashes are kept for their execution (more than the blocks a
/// replica has accepted and not yet executed: PBFT's watermark window is 64 by default).
pub const BLOCK_TX_HASHES_MAX: usize = 256;
/// Most transactions with someone waiting for their commit.
pub const WAITERS_MAX: usize = 200_000;

/// What travels between nodes (the engine's messages are one kind of it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeWire {
    /// An engine message.
    Consensus(#[serde(with = "medchain_types::serde_bytes")] Vec<u8>),
    /// Verified transactions admitted by the sender.
    Txs(Vec<Transaction>),
    /// Final blocks from this height on, please.
    BlockRequest {
        /// First height wanted.
        from_height: u64,
    },
    /// Final blocks with their certificates, in height order.
    BlockResponse(Vec<(Block, Certificate)>),
}

impl NodeWire {
    fn kind(&self) -> usize {
        match self {
            NodeWire::Consensus(_) => 0,
            NodeWire::Txs(_) => 1,
            NodeWire::BlockRequest { .. } => 2,
            NodeWire::BlockResponse(_) => 3,
        }
    }
}

/// Names of [`NodeWire`] kinds, for metrics.
pub const WIRE_KINDS: [&str; 4] = ["consensus", "txs", "block_request", "block_response"];

enum Input {
    Consensus { from: PublicKey, bytes: Vec<u8> },
    Timer { id: TimerId, token: u64 },
    Synced(Vec<(Block, Certificate)>),
    WorkFound { header_hash: Hash, nonce: u64 },
    Shutdown,
}

/// Node counters (Prometheus names in `api::metrics`).
#[derive(Debug, Default)]
pub struct NodeMetrics {
    /// Blocks committed.
    pub commits: AtomicU64,
    /// Transactions committed successfully.
    pub txs_committed: AtomicU64,
    /// Transactions committed with a failed or duplicate receipt.
    pub txs_failed: AtomicU64,
    /// Transactions admitted to the mempool from clients.
    pub txs_admitted: AtomicU64,
    /// Transactions refused at admission.
    pub txs_refused: AtomicU64,
    /// Transaction signatures this node checked (each at most once, whatever path it came by).
    pub signatures_verified: AtomicU64,
    /// Messages received, by kind.
    pub messages_in: [AtomicU64; 4],
    /// Bytes received, by kind.
    pub bytes_in: [AtomicU64; 4],
    /// Messages sent, by kind.
    pub messages_out: [AtomicU64; 4],
    /// Bytes sent, by kind.
    pub bytes_out: [AtomicU64; 4],
    /// Messages the transport refused (queue full).
    pub send_refused: AtomicU64,
    /// Client transactions a primary held from gossip and then gossiped (it stopped being the
    /// primary, or stalled).
    pub txs_held_released: AtomicU64,
    /// Milliseconds spent executing and writing blocks.
    pub commit_ms: AtomicU64,
}

/// One request waiting for the commits of its transactions: their receipts, by position in
/// the request's sorted distinct hashes, filled in as commits come. One per request, not a
/// channel per transaction: a request of `medchain load` names 200, and a saturated primary
/// serves about a hundred such requests a second.
#[derive(Debug)]
pub struct CommitWait {
    receipts: Mutex<Vec<Option<Receipt>>>,
    missing: AtomicUsize,
    done: tokio::sync::Notify,
}

impl CommitWait {
    fn new(n: usize) -> CommitWait {
        CommitWait {
            receipts: Mutex::new(vec![None; n]),
            missing: AtomicUsize::new(n),
            done: tokio::sync::Notify::new(),
        }
    }

    /// Records the receipt of the transaction at `slot` (once; a second one is ignored).
    fn fill(&self, slot: usize, receipt: &Receipt) {
        let mut receipts = self.receipts.lock().expect("commit wait lock");
        if receipts[slot].is_none() {
            receipts[slot] = Some(receipt.clone());
            drop(receipts);
            if self.missing.fetch_sub(1, SeqCst) == 1 {
                // Stores a permit if nobody waits yet, so the wake-up is never lost.
                self.done.notify_one();
            }
        }
    }

    /// Returns when every receipt is in.
    pub async fn all_committed(&self) {
        while self.missing.load(SeqCst) > 0 {
            self.done.notified().await;
        }
    }

    /// The receipts, by slot (`None` for those not committed).
    pub fn receipts(&self) -> Vec<Option<Receipt>> {
        self.receipts.lock().expect("commit wait lock").clone()
    }
}

/// Requests waiting for commits, by transaction hash (with the slot each gave it), with their
/// total count kept so that the limit check does not walk the map.
#[derive(Debug, Default)]
struct Waiters {
    map: foldhash::HashMap<Hash, Vec<(Arc<CommitWait>, usize)>>,
    count: usize,
}

impl Waiters {
    fn add(&mut self, h: Hash, w: Arc<CommitWait>, slot: usize) {
        self.map.entry(h).or_default().push((w, slot));
        self.count += 1;
    }

    /// Gives `receipt` to every request waiting for its transaction.
    fn resolve(&mut self, receipt: &Receipt) {
        if let Some(v) = self.map.remove(&receipt.tx_hash) {
            self.count -= v.len();
            for (w, slot) in v {
                w.fill(slot, receipt);
            }
        }
    }

    /// Drops `wait`'s registration for `h`.
    fn forget(&mut self, h: &Hash, wait: &Arc<CommitWait>) {
        if let Some(v) = self.map.get_mut(h) {
            let before = v.len();
            v.retain(|(w, _)| !Arc::ptr_eq(w, wait));
            self.count -= before - v.len();
            if v.is_empty() {
                self.map.remove(h);
            }
        }
    }
}

/// Whether a primary gossips its held transactions now (see [`Shared::admit_verified`]): when
/// it is no longer the primary, or when the oldest has waited `hold_max` and no block it
/// proposed was committed in that time (so that a new primary can propose them, and the
/// backups' view-change timers, which run while their mempools hold work, run against a
/// primary that stalled). Times in ms since the node started; `held_since` is when the set of
/// marks last became non-empty, `last_own_commit` when a block this node proposed was last
/// written. Once due, the release goes on tick after tick until nothing is held or a block of
/// this node's commits.
fn release_due(
    leading: bool,
    held_since: u64,
    last_own_commit: u64,
    now: u64,
    hold_max: Duration,
) -> bool {
    let waited = now.saturating_sub(held_since.max(last_own_commit));
    !leading || u128::from(waited) >= hold_max.as_millis()
}

/// Verifies signatures of `txs` (bounds and chain first), at most once per node (see
/// [`crate::verify`]); returns the index of a bad one.
fn verify_once(
    shared: &Shared,
    txs: &[Transaction],
    hashes: &[Hash],
) -> Result<(), (usize, TxError)> {
    let checked = shared
        .verifier
        .verify(&shared.mempool, &shared.genesis.chain_id, txs, hashes)?;
    shared
        .metrics
        .signatures_verified
        .fetch_add(checked as u64, Relaxed);
    Ok(())
}

/// State shared by the engine thread, the network tasks and the HTTP API.
pub struct Shared {
    /// The configuration.
    pub config: NodeConfig,
    /// The genesis document.
    pub genesis: Genesis,
    /// This node's key.
    pub me: PublicKey,
    /// This node's key (signs node-to-node vault requests).
    pub node_key: SecretKey,
    /// The ledger.
    pub ledger: Arc<Ledger>,
    /// The chaincodes.
    pub executor: Executor,
    /// Verified transactions waiting.
    pub mempool: Mutex<Mempool>,
    /// Blocks whose ledger write has finished, counted before their transactions leave the
    /// mempool (see `admit_verified`).
    commits_written: AtomicU64,
    /// When (ms since `started`) the last block this node proposed was written.
    last_own_commit_ms: AtomicU64,
    /// Signature checks, once per transaction.
    verifier: VerifyOnce,
    /// Transaction hashes of blocks whose structure the engine checked, so that executing
    /// them does not hash every transaction again.
    block_tx_hashes: BlockTxHashes,
    /// The transport.
    pub network: Network,
    /// The engine's last reported status.
    pub status: RwLock<EngineStatus>,
    /// Clients waiting for a transaction's commit.
    waiters: Mutex<Waiters>,
    /// Counters.
    pub metrics: NodeMetrics,
    gossip: Mutex<Vec<Transaction>>,
    /// Signalled when the gossip queue stops being empty.
    gossip_ready: tokio::sync::Notify,
    /// A block request made while no peer was connected: sent to the first peer that connects.
    pending_sync: Mutex<Option<u64>>,
    /// Limits concurrent block-request serving.
    sync_servers: Arc<tokio::sync::Semaphore>,
    /// Client batches being verified at once: one per core. Without it, hundreds of requests in
    /// flight each verify on a blocking thread of their own (tokio allows 512), which costs
    /// threads and memory and gains nothing on a saturated CPU (measured: same throughput).
    pub admit_slots: tokio::sync::Semaphore,
    inbox: mpsc::Sender<Input>,
    /// Proof-of-work search threads (none under the other engines).
    pub miner: crate::miner::Miner,
    /// When the node started.
    pub started: Instant,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Shared({})", self.me)
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Transactions admitted: their hashes, in request order, and what admission read of the ledger.
#[derive(Debug)]
pub struct Admitted {
    /// One per transaction, in request order.
    pub hashes: Vec<Hash>,
    /// For [`Shared::wait_for`].
    pub read: FinalRead,
}

/// Which of some transactions were final when admission read the ledger, and the commit count
/// read just before that read: as long as no commit has been counted since, it is still exact.
#[derive(Debug, Clone, Default)]
pub struct FinalRead {
    /// `commits_written` before the read; `None` if the read failed (nothing to reuse).
    commits: Option<u64>,
    /// The final ones, sorted.
    known: Vec<Hash>,
}

/// Why a client's transaction was not admitted.
#[derive(Debug)]
pub enum AdmitError {
    /// Malformed, wrong chain, or bad signature.
    Invalid(usize, TxError),
    /// The mempool is full; retry later.
    Full,
}

impl std::fmt::Display for AdmitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdmitError::Invalid(i, e) => write!(f, "transaction {i}: {e}"),
            AdmitError::Full => f.write_str("mempool is full, retry later"),
        }
    }
}

impl Shared {
    fn send(&self, to: &PublicKey, wire: &NodeWire) {
        let bytes = codec::encode(wire);
        let k = wire.kind();
        self.metrics.messages_out[k].fetch_add(1, Relaxed);
        self.metrics.bytes_out[k].fetch_add(bytes.len() as u64, Relaxed);
        if self.network.send(to, Bytes::from(bytes)).is_err() {
            self.metrics.send_refused.fetch_add(1, Relaxed);
        }
    }

    fn broadcast(&self, wire: &NodeWire) {
        let bytes = Bytes::from(codec::encode(wire));
        let k = wire.kind();
        for peer in self.network.peers() {
            self.metrics.messages_out[k].fetch_add(1, Relaxed);
            self.metrics.bytes_out[k].fetch_add(bytes.len() as u64, Relaxed);
            if self.network.send(peer, bytes.clone()).is_err() {
                self.metrics.send_refused.fetch_add(1, Relaxed);
            }
        }
    }

    /// Checks client transactions (bounds, chain, signatures in batches) and admits the valid
    /// ones to the mempool and the gossip. All or nothing for invalid input; `Full` may leave a
    /// prefix admitted (admission is idempotent, so a retry is safe). `client_waits`: the client
    /// waits for the commits (`?wait=commit`), so it learns if this node fails before them.
    pub fn admit(&self, txs: &[Transaction], client_waits: bool) -> Result<Admitted, AdmitError> {
        let hashes: Vec<Hash> = txs.iter().map(Transaction::hash).collect();
        if let Err((i, e)) = verify_once(self, txs, &hashes) {
            self.metrics.txs_refused.fetch_add(1, Relaxed);
            return Err(AdmitError::Invalid(i, e));
        }
        self.admit_verified(txs.to_vec(), hashes, true, client_waits)
    }

    /// Milliseconds since the node started (monotonic: the hold clock must not jump with the
    /// wall clock).
    fn mono_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Is this node the PBFT primary of its view, in normal operation?
    fn leading_pbft(&self) -> bool {
        let status = self.status.read().expect("status lock");
        status.engine == "pbft"
            && status.leader == Some(self.me)
            && status.extra.get("mode").is_some_and(|m| m == "normal")
    }

    /// Adds already verified transactions; gossips the new ones if `gossip`.
    ///
    /// Except at a PBFT primary, for clients that wait for the commits: clients send their
    /// requests to the primary, which puts them in its next pre-prepare (Castro and Liskov,
    /// §4.1–4.2), so the backups get them once, with the block, instead of twice (gossip, then
    /// the block). The primary marks them held instead of gossiping them, and
    /// [`Shared::release_held`] gossips them after all if it stops being the primary or stalls.
    /// A primary that crashes loses what it held; the clients were waiting on connections to it,
    /// which break, so they know to resubmit. A client that does not wait has its transactions
    /// gossiped at once, as at any other node: its 202 means that every node will have them.
    fn admit_verified(
        &self,
        txs: Vec<Transaction>,
        hashes: Vec<Hash>,
        gossip: bool,
        client_waits: bool,
    ) -> Result<Admitted, AdmitError> {
        // Never keep a final transaction: a backup's mempool drives its view-change timer, so a
        // stale entry would make it time out alone. The ledger is read outside the mempool lock
        // (commits need that lock). A commit writes the ledger, then counts itself in
        // `commits_written`, then takes the lock to remove its transactions. So a commit that
        // this check misses either has not counted itself when the count is read again after
        // the insert (its removal comes later and takes the new entries out), or it has, and
        // the changed count calls for a re-check of what was inserted. Under load the count
        // rarely changes within one admission, which saves a ledger read per transaction.
        let commits_before = self.commits_written.load(SeqCst);
        // A failed read counts as not final, as a failed single read did.
        let (pending, read_ok): (Vec<bool>, bool) = match self.ledger.txs_known(&hashes) {
            Ok(known) => (known.into_iter().map(|k| !k).collect(), true),
            Err(_) => (vec![true; hashes.len()], false),
        };
        let mut final_before: Vec<Hash> = hashes
            .iter()
            .zip(&pending)
            .filter_map(|(h, pending)| (!pending).then_some(*h))
            .collect();
        final_before.sort_unstable();
        let hold = gossip && client_waits && self.leading_pbft();
        let gossip = gossip && !hold;
        let now = self.mono_ms();
        // Hashes inserted now (for the re-check) and, when gossiping, the transactions to send.
        let mut inserted: Vec<Hash> = Vec::new();
        let mut fresh = Vec::new();
        let mut full = false;
        {
            let mut pool = self.mempool.lock().expect("mempool lock");
            for ((tx, hash), pending) in txs.into_iter().zip(&hashes).zip(pending) {
                if !pending {
                    continue;
                }
                let copy = gossip.then(|| tx.clone());
                let added = if hold {
                    pool.insert_held(*hash, tx, now)
                } else {
                    pool.insert(*hash, tx)
                };
                match added {
                    Ok(()) => {
                        inserted.push(*hash);
                        fresh.extend(copy);
                    }
                    // Held at this primary for a client that waited, now sent by one that does
                    // not: gossiped now, as that client's 202 promises.
                    Err(crate::mempool::Refused::Known) => {
                        if gossip {
                            fresh.extend(pool.unhold(hash));
                        }
                    }
                    Err(crate::mempool::Refused::Full) => {
                        full = true;
                        break;
                    }
                }
            }
        }
        let admitted = inserted.len() as u64;
        let committed_meanwhile: Vec<Hash> = if self.commits_written.load(SeqCst) == commits_before
        {
            Vec::new()
        } else {
            let known = self.ledger.txs_known(&inserted).unwrap_or_default();
            inserted
                .into_iter()
                .zip(known)
                .filter_map(|(h, k)| k.then_some(h))
                .collect()
        };
        if !committed_meanwhile.is_empty() {
            self.mempool
                .lock()
                .expect("mempool lock")
                .remove(&committed_meanwhile);
        }
        if hold || gossip {
            // From a client (`fresh` may also hold transactions admitted before, un-held).
            self.metrics.txs_admitted.fetch_add(admitted, Relaxed);
        }
        if gossip {
            self.queue_gossip(fresh);
        }
        if full {
            return Err(AdmitError::Full);
        }
        Ok(Admitted {
            hashes,
            read: FinalRead {
                commits: read_ok.then_some(commits_before),
                known: final_before,
            },
        })
    }

    /// Called every gossip tick: gossips the oldest held transactions, at most
    /// [`GOSSIP_RELEASE_BYTES`] of them per tick, while [`release_due`] says so (see
    /// [`Shared::admit_verified`]).
    fn release_held(&self) {
        // Read before the mempool lock: nothing holds the mempool while taking the status.
        let leading = self.leading_pbft();
        let mut pool = self.mempool.lock().expect("mempool lock");
        let (count, since) = pool.held();
        if count == 0 {
            return;
        }
        let hold_max = self.genesis.pbft.timeout_view_change / 4;
        let due = release_due(
            leading,
            since,
            self.last_own_commit_ms.load(Relaxed),
            self.mono_ms(),
            hold_max,
        );
        if !due {
            return;
        }
        let txs = pool.take_held(GOSSIP_RELEASE_BYTES);
        drop(pool);
        self.metrics
            .txs_held_released
            .fetch_add(txs.len() as u64, Relaxed);
        self.queue_gossip(txs);
    }

    /// Gossips those of `hashes` that this node still holds: called when the clients who waited
    /// for them stop waiting (their request timed out or was dropped), so that a primary that
    /// commits its own blocks but leaves some transactions out cannot keep them from the backups'
    /// timers.
    pub fn release_hashes(&self, hashes: &[Hash]) {
        let txs: Vec<Transaction> = {
            let mut pool = self.mempool.lock().expect("mempool lock");
            if pool.held().0 == 0 {
                return;
            }
            hashes.iter().filter_map(|h| pool.unhold(h)).collect()
        };
        self.metrics
            .txs_held_released
            .fetch_add(txs.len() as u64, Relaxed);
        self.queue_gossip(txs);
    }

    fn queue_gossip(&self, txs: Vec<Transaction>) {
        if !txs.is_empty() {
            let mut queue = self.gossip.lock().expect("gossip lock");
            let was_empty = queue.is_empty();
            queue.extend(txs);
            drop(queue);
            if was_empty {
                self.gossip_ready.notify_one();
            }
        }
    }

    /// Registers interest in transactions' commits (call after admission, with what it read).
    /// Already committed ones resolve at once. Returns the sorted distinct hashes (the wait's
    /// slots) and the wait.
    pub fn wait_for(
        &self,
        hashes: &[Hash],
        read: &FinalRead,
    ) -> Result<(Vec<Hash>, Arc<CommitWait>), String> {
        let mut unique: Vec<Hash> = hashes.to_vec();
        unique.sort_unstable();
        unique.dedup();
        // Ledger reads happen before taking the lock (commits need it to resolve waiters).
        // Admission's read is still exact if no commit has been counted since it: then only the
        // transactions it found final have receipts to read (under load, usually none).
        let commits_before = self.commits_written.load(SeqCst);
        let committed = if read.commits == Some(commits_before) {
            unique
                .iter()
                .map(|h| {
                    read.known
                        .binary_search(h)
                        .ok()
                        .and_then(|_| self.ledger.receipt(h).ok().flatten())
                })
                .collect()
        } else {
            self.receipts_if_final(&unique)
        };
        let mut waiters = self.waiters.lock().expect("waiters lock");
        if waiters.count + unique.len() > WAITERS_MAX {
            return Err(
                "too many clients are waiting for commits; retry without ?wait=commit".into(),
            );
        }
        let wait = Arc::new(CommitWait::new(unique.len()));
        let mut registered = Vec::new();
        for (slot, (h, receipt)) in unique.iter().zip(committed).enumerate() {
            match receipt {
                Some(r) => wait.fill(slot, &r),
                None => {
                    waiters.add(*h, wait.clone(), slot);
                    registered.push(*h);
                }
            }
        }
        drop(waiters);
        // A commit between the ledger read above and the registration has already looked for
        // waiters; resolve those here. Only a commit counted since the read can be one: a commit
        // writes the ledger, then counts itself, then takes the lock, so one counted before
        // `commits_before` was read is in the ledger read, and one not counted by now takes the
        // lock after the registration and finds the waiters.
        if self.commits_written.load(SeqCst) == commits_before {
            return Ok((unique, wait));
        }
        for receipt in self.receipts_if_final(&registered).into_iter().flatten() {
            self.waiters.lock().expect("waiters lock").resolve(&receipt);
        }
        Ok((unique, wait))
    }

    /// The receipts of those of `hashes` that are final: one batched index read for all, then
    /// a receipt read for each final one only (at submission, usually none). If the batched
    /// read fails, each hash is read on its own instead; a failed receipt read counts as not
    /// final yet (the commit resolves the waiter).
    fn receipts_if_final(&self, hashes: &[Hash]) -> Vec<Option<Receipt>> {
        let known = self
            .ledger
            .txs_known(hashes)
            .unwrap_or_else(|_| vec![true; hashes.len()]);
        hashes
            .iter()
            .zip(known)
            .map(|(h, k)| k.then(|| self.ledger.receipt(h).ok().flatten()).flatten())
            .collect()
    }

    /// The transaction hashes of `block`: remembered from its structure check or, for this
    /// node's own block, from the batch it was built from; else computed.
    fn tx_hashes_of(&self, block: &Block) -> Arc<Vec<Hash>> {
        self.block_tx_hashes
            .take(&block.hash())
            .or_else(|| {
                (block.header.proposer == self.me)
                    .then(|| self.block_tx_hashes.own_block_hashes(&block.header))
                    .flatten()
            })
            .unwrap_or_else(|| Arc::new(block.tx_hashes()))
    }

    /// Drops what is left registered of a wait (its client got its receipts or gave up).
    pub fn forget_waiters(&self, hashes: &[Hash], wait: &Arc<CommitWait>) {
        let mut waiters = self.waiters.lock().expect("waiters lock");
        for h in hashes {
            waiters.forget(h, wait);
        }
    }
}

/// Verifies a proposed block's transactions, skipping those the mempool already verified.
struct MempoolVerifier {
    shared: std::sync::Weak<Shared>,
    chain_id: String,
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
struct BlockTxHashes {
    by_block: Mutex<VecDeque<(Hash, Arc<Vec<Hash>>)>>,
    own_batches: Mutex<VecDeque<Vec<Hash>>>,
}

/// Batches of transaction hashes kept for this node's own proposals: more than the engine can
/// have asked for before the block built from the oldest one executes (a PBFT primary proposes
/// one block at a time).
const OWN_BATCHES_MAX: usize = 4;

impl BlockTxHashes {
    /// Keeps the hashes of a batch handed to the engine.
    fn remember_batch(&self, hashes: &[Hash]) {
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

/// A running node.
pub struct Node {
    /// Shared state (for the HTTP API and tests).
    pub shared: Arc<Shared>,
    engine_thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Node({})", self.shared.me)
    }
}

fn build_engine(genesis: &Genesis, ctx: EngineContext) -> Box<dyn Engine> {
    match genesis.engine.as_str() {
        "pbft" => Box::new(Pbft::new(ctx, genesis.pbft.clone())),
        "pow" => Box::new(medchain_pow::Pow::new(ctx, genesis.pow.clone())),
        "pos" => Box::new(medchain_pos::Pos::new(ctx, genesis.pos.clone())),
        other => unreachable!("genesis check refuses engine {other:?}"),
    }
}

impl Node {
    /// Opens the ledger (writing genesis on first start), starts the transport, the engine
    /// thread and the network tasks. Must run inside a tokio runtime.
    pub fn start(config: NodeConfig) -> Result<Node> {
        let genesis = Genesis::load(&config.node.genesis)?;
        let key: SecretKey = crate::keyfile::read(&config.node.key_file)?;
        let me = key.public();
        if genesis.validator(&me).is_none() {
            bail!(
                "this node's key {me} is not a validator in {}",
                config.node.genesis.display()
            );
        }
        let ledger_dir = config.node.data_dir.join("ledger");
        let ledger = Arc::new(
            Ledger::open(&ledger_dir, &genesis.chain_id)
                .with_context(|| format!("cannot open the ledger in {}", ledger_dir.display()))?,
        );
        let mut executor = Executor::with_builtins(&genesis.chain_id);
        executor
            .install(Arc::new(medchain_ehr::Ehr::new(
                genesis.ehr.admins.iter().copied(),
            )))
            .map_err(anyhow::Error::msg)?;
        let g = genesis.block();
        match ledger.block(0)? {
            None => {
                executor.apply(&ledger, &g, &Certificate::default())?;
            }
            Some(b) if b.hash() != g.hash() => bail!(
                "{} holds a chain of another genesis (block 0 is {}, this genesis gives {}); use another data_dir",
                ledger_dir.display(),
                b.hash(),
                g.hash()
            ),
            Some(_) => {}
        }
        let tip = ledger.tip().expect("genesis is committed");
        let header = ledger.header(tip.height)?.context("tip block is missing")?;
        let certificate = ledger.certificate(tip.height)?.unwrap_or_default();
        let records = ledger.engine_records()?.into_iter().collect();
        let candidate = ledger.candidate()?;

        let peers = genesis.validators.iter().map(|v| (v.key, v.p2p)).collect();
        let incarnation = SystemTime::now().duration_since(UNIX_EPOCH)?.as_micros() as u64;
        let mut net_cfg = NetworkConfig::new(config.network.listen, peers, incarnation);
        net_cfg.frame_max = config.network.frame_max;
        net_cfg.udp_payload_max = config.network.udp_payload_max;
        net_cfg.send_queue_bytes_max = net_cfg
            .send_queue_bytes_max
            .max(2 * config.network.frame_max);
        net_cfg.inbound_bytes_max = net_cfg.inbound_bytes_max.max(2 * config.network.frame_max);
        let (network, events) = Network::bind(&key, net_cfg)
            .with_context(|| format!("cannot listen on {}", config.network.listen))?;

        let (inbox, inbox_rx) = mpsc::channel(INBOX_MAX);
        let found = inbox.clone();
        let miner = crate::miner::Miner::start(
            if genesis.engine == "pow" {
                config.mining.threads
            } else {
                0
            },
            move |header_hash, nonce| {
                let _ = found.blocking_send(Input::WorkFound { header_hash, nonce });
            },
        );
        let shared = Arc::new(Shared {
            mempool: Mutex::new(Mempool::new(
                config.mempool.txs_max,
                config.mempool.bytes_max,
            )),
            verifier: VerifyOnce::default(),
            block_tx_hashes: BlockTxHashes::default(),
            commits_written: AtomicU64::new(0),
            last_own_commit_ms: AtomicU64::new(0),
            config,
            me,
            node_key: key.clone(),
            ledger: ledger.clone(),
            executor,
            network,
            status: RwLock::new(EngineStatus::default()),
            waiters: Mutex::new(Waiters::default()),
            metrics: NodeMetrics::default(),
            gossip: Mutex::new(Vec::new()),
            gossip_ready: tokio::sync::Notify::new(),
            pending_sync: Mutex::new(None),
            sync_servers: Arc::new(tokio::sync::Semaphore::new(SYNC_SERVERS_MAX)),
            admit_slots: tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, usize::from),
            ),
            inbox,
            miner,
            started: Instant::now(),
            genesis: genesis.clone(),
        });
        let engine = build_engine(
            &genesis,
            EngineContext {
                chain_id: genesis.chain_id.clone(),
                key,
                validators: genesis.validator_set()?,
                tip: ChainTip {
                    header,
                    certificate,
                    state_root: tip.state_root,
                },
                records,
                candidate,
                verifier: Arc::new(MempoolVerifier {
                    shared: Arc::downgrade(&shared),
                    chain_id: genesis.chain_id.clone(),
                }),
            },
        );
        *shared.status.write().expect("status lock") = engine.status();
        let rt = tokio::runtime::Handle::current();
        let thread_shared = shared.clone();
        let engine_thread = std::thread::Builder::new()
            .name("engine".into())
            .spawn(move || engine_loop(engine, inbox_rx, thread_shared, rt))?;
        tokio::spawn(network_loop(shared.clone(), events));
        tokio::spawn(gossip_loop(shared.clone()));
        tracing::info!(node = %me, chain = %genesis.chain_id, engine = %genesis.engine, height = tip.height, "node started");
        Ok(Node {
            shared,
            engine_thread: Some(engine_thread),
        })
    }

    /// Stops the engine thread and closes the transport.
    pub async fn stop(mut self) {
        self.shared.miner.stop();
        let _ = self.shared.inbox.send(Input::Shutdown).await;
        if let Some(t) = self.engine_thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
        self.shared.network.close().await;
        tracing::info!("node stopped");
    }
}

fn engine_loop(
    mut engine: Box<dyn Engine>,
    mut inbox: mpsc::Receiver<Input>,
    shared: Arc<Shared>,
    rt: tokio::runtime::Handle,
) {
    let mut timers: HashMap<TimerId, u64> = HashMap::new();
    let mut next_token = 0u64;
    let mut local: VecDeque<Event> = VecDeque::new();
    let mut out = Vec::new();
    let mut last_status = Instant::now();
    let mut commits_seen = 0;
    engine.start(now_ms(), &mut out);
    let mut pending = std::mem::take(&mut out);
    loop {
        for action in pending.drain(..) {
            execute(
                action,
                &shared,
                &rt,
                &mut timers,
                &mut next_token,
                &mut local,
            );
        }
        if let Some(ev) = local.pop_front() {
            engine.handle(now_ms(), ev, &mut out);
            pending.append(&mut out);
            continue;
        }
        // Refresh the status for the API at most every 20 ms, and after every commit.
        let commits = shared.metrics.commits.load(Relaxed);
        if commits != commits_seen || last_status.elapsed() > Duration::from_millis(20) {
            let status = engine.status();
            let old = shared.status.read().expect("status lock").clone();
            if status.counters != old.counters {
                tracing::debug!(counters = ?status.counters, height = status.height, view = status.view, "engine counters");
            }
            if status.view != old.view || status.extra.get("mode") != old.extra.get("mode") {
                tracing::info!(
                    view = status.view,
                    mode = status.extra.get("mode").map(String::as_str).unwrap_or(""),
                    leader = ?status.leader,
                    height = status.height,
                    "consensus state changed"
                );
            }
            *shared.status.write().expect("status lock") = status;
            last_status = Instant::now();
            commits_seen = commits;
        }
        let Some(input) = inbox.blocking_recv() else {
            break;
        };
        match input {
            Input::Consensus { from, bytes } => local.push_back(Event::Message { from, bytes }),
            Input::Timer { id, token } => {
                if timers.get(&id) == Some(&token) {
                    timers.remove(&id);
                    local.push_back(Event::TimerFired(id));
                }
            }
            Input::Synced(blocks) => local.extend(
                blocks
                    .into_iter()
                    .map(|(block, certificate)| Event::SyncedBlock { block, certificate }),
            ),
            Input::WorkFound { header_hash, nonce } => {
                local.push_back(Event::WorkFound { header_hash, nonce })
            }
            Input::Shutdown => break,
        }
    }
    *shared.status.write().expect("status lock") = engine.status();
}

fn execute(
    action: Action,
    shared: &Arc<Shared>,
    rt: &tokio::runtime::Handle,
    timers: &mut HashMap<TimerId, u64>,
    next_token: &mut u64,
    local: &mut VecDeque<Event>,
) {
    match action {
        Action::Send { to, msg } => shared.send(&to, &NodeWire::Consensus(msg)),
        Action::Broadcast(msg) => shared.broadcast(&NodeWire::Consensus(msg)),
        Action::SetTimer { id, after } => {
            *next_token += 1;
            let token = *next_token;
            timers.insert(id, token);
            let inbox = shared.inbox.clone();
            rt.spawn(async move {
                tokio::time::sleep(after).await;
                let _ = inbox.send(Input::Timer { id, token }).await;
            });
        }
        Action::CancelTimer(id) => {
            timers.remove(&id);
        }
        Action::Persist { key, value } => {
            let result = match &value {
                Some(v) => shared.ledger.put_engine_record(&key, v),
                None => shared.ledger.delete_engine_record(&key),
            };
            if let Err(e) = result {
                // Continuing could make this replica vote twice after a restart.
                tracing::error!(error = %e, "cannot persist an engine record; stopping");
                std::process::exit(2);
            }
        }
        Action::PersistCandidate { key, value, block } => {
            if let Err(e) = shared.ledger.put_candidate(&block, &key, &value) {
                tracing::error!(error = %e, "cannot persist an engine record; stopping");
                std::process::exit(2);
            }
        }
        Action::Commit { block, certificate } => {
            let started = Instant::now();
            let height = block.header.height;
            let tx_hashes = shared.tx_hashes_of(&block);
            match shared
                .executor
                .apply_hashed(&shared.ledger, &block, &tx_hashes, &certificate)
            {
                Ok((tip, receipts)) => {
                    // Counted after the ledger write and before the removal from the mempool
                    // (the order `admit_verified` relies on).
                    shared.commits_written.fetch_add(1, SeqCst);
                    if let Some(e) = shared.ledger.take_tx_index_error() {
                        tracing::warn!(
                            error = %e,
                            "writing a run of the transaction index failed; its entries stay in \
                             memory and are written with the next run"
                        );
                    }
                    if block.header.proposer == shared.me {
                        shared.last_own_commit_ms.store(shared.mono_ms(), Relaxed);
                    }
                    let m = &shared.metrics;
                    m.commits.fetch_add(1, Relaxed);
                    let ok = receipts.iter().filter(|r| r.is_success()).count() as u64;
                    m.txs_committed.fetch_add(ok, Relaxed);
                    m.txs_failed.fetch_add(receipts.len() as u64 - ok, Relaxed);
                    shared
                        .mempool
                        .lock()
                        .expect("mempool lock")
                        .remove(receipts.iter().map(|r| &r.tx_hash));
                    {
                        let mut waiters = shared.waiters.lock().expect("waiters lock");
                        for r in &receipts {
                            waiters.resolve(r);
                        }
                    }
                    // Crypto-shredding: an erasure destroys this node's copy at once.
                    for r in &receipts {
                        for e in &r.events {
                            if e.chaincode == medchain_ehr::chaincode::NAME && e.kind == "erased" {
                                if let Ok(doc) = std::str::from_utf8(&e.data) {
                                    crate::ehr_vault::on_erased(shared, doc);
                                }
                            }
                        }
                    }
                    m.commit_ms
                        .fetch_add(started.elapsed().as_millis() as u64, Relaxed);
                    tracing::debug!(height, txs = receipts.len(), "committed");
                    local.push_back(Event::BlockExecuted {
                        height,
                        state_root: tip.state_root,
                    });
                }
                Err(e) => {
                    // A final block the ledger refuses means this node diverged: stop, loudly.
                    tracing::error!(height, error = %e, "the ledger refused a final block; stopping");
                    std::process::exit(2);
                }
            }
        }
        Action::NeedTransactions { max } => {
            let (txs, hashes) = shared.mempool.lock().expect("mempool lock").batch(max);
            if !hashes.is_empty() {
                shared.block_tx_hashes.remember_batch(&hashes);
            }
            local.push_back(Event::Transactions { txs, hashes });
        }
        Action::NeedBlocks { from_height, peer } => {
            let connected = shared.network.connected_peers();
            let target = peer.filter(|p| connected.contains(p)).or_else(|| {
                // Spread requests over connected peers.
                connected
                    .get((from_height as usize) % connected.len().max(1))
                    .copied()
            });
            match target {
                Some(p) => shared.send(&p, &NodeWire::BlockRequest { from_height }),
                // Typical right after a restart: ask the first peer that connects.
                None => *shared.pending_sync.lock().expect("sync lock") = Some(from_height),
            }
        }
        Action::StartWork { header, target } => shared.miner.work(header, target),
        Action::StopWork => shared.miner.idle(),
    }
}

/// Verifies gossiped transactions in arrival order (batched, off the async threads) and admits
/// the valid ones; they are never re-gossiped.
async fn gossip_verifier(shared: Arc<Shared>, mut queue: mpsc::UnboundedReceiver<GossipBatch>) {
    while let Some((from, txs, share)) = queue.recv().await {
        let s = shared.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let _share = share;
            let mut seen = foldhash::HashSet::default();
            let (txs, hashes): (Vec<Transaction>, Vec<Hash>) = txs
                .into_iter()
                .map(|t| (t.hash(), t))
                .filter(|(h, _)| seen.insert(*h))
                .map(|(h, t)| (t, h))
                .unzip();
            match verify_once(&s, &txs, &hashes) {
                Ok(()) => {
                    let _ = s.admit_verified(txs, hashes, false, false);
                }
                Err((i, e)) => tracing::warn!(
                    peer = %from,
                    index = i,
                    error = %e,
                    "gossiped transactions failed verification"
                ),
            }
        })
        .await;
    }
}

/// Gossiped transactions received and not yet verified, at most this many KiB. Beyond it the
/// network loop waits (back-pressure on the peers' streams) instead of queueing more.
const GOSSIP_QUEUE_KIB: usize = 64 * 1024;

/// A batch of gossiped transactions waiting for verification, holding its share of the queue.
type GossipBatch = (
    PublicKey,
    Vec<Transaction>,
    tokio::sync::OwnedSemaphorePermit,
);

async fn network_loop(shared: Arc<Shared>, mut events: medchain_network::Events) {
    // Gossip is verified by a task of its own: verifying a batch takes milliseconds, and under
    // load the batches queue up; consensus messages must not wait behind them (a backup that
    // sees the pre-prepare seconds late times out and starts a view change).
    let budget = Arc::new(tokio::sync::Semaphore::new(GOSSIP_QUEUE_KIB));
    let (to_verify, verify_queue) = mpsc::unbounded_channel::<GossipBatch>();
    tokio::spawn(gossip_verifier(shared.clone(), verify_queue));
    while let Some(ev) = events.recv().await {
        let (from, bytes) = match ev {
            NetEvent::Message { from, bytes } => (from, bytes),
            NetEvent::Connected(p) => {
                tracing::info!(peer = %p, "peer connected");
                let pending = shared.pending_sync.lock().expect("sync lock").take();
                if let Some(from_height) = pending {
                    shared.send(&p, &NodeWire::BlockRequest { from_height });
                }
                continue;
            }
            NetEvent::Disconnected(p) => {
                tracing::warn!(peer = %p, "peer disconnected");
                continue;
            }
        };
        let Ok(wire) = codec::decode::<NodeWire>(&bytes) else {
            tracing::warn!(peer = %from, "undecodable message");
            continue;
        };
        let k = wire.kind();
        shared.metrics.messages_in[k].fetch_add(1, Relaxed);
        shared.metrics.bytes_in[k].fetch_add(bytes.len() as u64, Relaxed);
        match wire {
            NodeWire::Consensus(bytes) => {
                if shared
                    .inbox
                    .send(Input::Consensus { from, bytes })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            NodeWire::Txs(txs) => {
                // Queued for `gossip_verifier`; the loop goes on to the next message.
                if txs.len() > GOSSIP_BATCH_MAX {
                    tracing::warn!(peer = %from, count = txs.len(), "oversized gossip batch refused");
                    continue;
                }
                let kib = (bytes.len() / 1024 + 1).min(GOSSIP_QUEUE_KIB) as u32;
                let Ok(share) = budget.clone().acquire_many_owned(kib).await else {
                    return;
                };
                if to_verify.send((from, txs, share)).is_err() {
                    return;
                }
            }
            NodeWire::BlockRequest { from_height } => {
                // At most SYNC_SERVERS_MAX requests are served at once; the rest are dropped
                // (the requester retries), so a flood of requests cannot pile up work.
                let Ok(permit) = shared.sync_servers.clone().try_acquire_owned() else {
                    tracing::debug!(peer = %from, "busy serving blocks; request dropped");
                    continue;
                };
                let s = shared.clone();
                tokio::task::spawn_blocking(move || {
                    let _permit = permit;
                    let tip = s.ledger.tip().map_or(0, |t| t.height);
                    let mut blocks = Vec::new();
                    let mut size = 0;
                    for h in from_height..=tip {
                        let (Ok(Some(b)), Ok(Some(c))) =
                            (s.ledger.block(h), s.ledger.certificate(h))
                        else {
                            break;
                        };
                        // Bounded before adding: the response must fit one frame.
                        let len = b.txs.iter().map(|t| t.payload.len() + 256).sum::<usize>()
                            + c.0.len()
                            + 1024;
                        if !blocks.is_empty() && size + len > SYNC_BYTES_MAX {
                            break;
                        }
                        size += len;
                        blocks.push((b, c));
                        if blocks.len() >= SYNC_BATCH_MAX {
                            break;
                        }
                    }
                    if !blocks.is_empty() {
                        s.send(&from, &NodeWire::BlockResponse(blocks));
                    }
                });
            }
            NodeWire::BlockResponse(blocks) => {
                let full = blocks.len() >= SYNC_BATCH_MAX;
                let next = blocks
                    .last()
                    .and_then(|(b, _)| b.header.height.checked_add(1));
                if shared.inbox.send(Input::Synced(blocks)).await.is_err() {
                    return;
                }
                // The peer had more: keep fetching without waiting for the engine's retry.
                if let (true, Some(from_height)) = (full, next) {
                    shared.send(&from, &NodeWire::BlockRequest { from_height });
                }
            }
        }
    }
}

/// Sends admitted transactions to the other validators: a lone transaction at once (so that a
/// client of a node that is not the leader does not wait for a tick), and under load in
/// batches at most every [`GOSSIP_INTERVAL`].
async fn gossip_loop(shared: Arc<Shared>) {
    // Chunks must fit a frame: by count and by encoded bytes (with room for the envelope).
    let bytes_max = shared.config.network.frame_max.saturating_sub(1024).max(1);
    let mut last = tokio::time::Instant::now();
    loop {
        tokio::select! {
            () = shared.gossip_ready.notified() => {}
            () = tokio::time::sleep(GOSSIP_INTERVAL) => {}
        }
        shared.release_held();
        if shared.gossip.lock().expect("gossip lock").is_empty() {
            if Arc::strong_count(&shared) == 1 {
                return;
            }
            continue;
        }
        let since = last.elapsed();
        if since < GOSSIP_INTERVAL {
            tokio::time::sleep(GOSSIP_INTERVAL - since).await;
        }
        last = tokio::time::Instant::now();
        let batch = std::mem::take(&mut *shared.gossip.lock().expect("gossip lock"));
        let mut chunk = Vec::new();
        let mut size = 0;
        for tx in batch {
            let len = tx.payload.len() + 256;
            if !chunk.is_empty() && (chunk.len() >= GOSSIP_BATCH_MAX || size + len > bytes_max) {
                shared.broadcast(&NodeWire::Txs(std::mem::take(&mut chunk)));
                size = 0;
            }
            size += len;
            chunk.push(tx);
        }
        if !chunk.is_empty() {
            shared.broadcast(&NodeWire::Txs(chunk));
        }
        if Arc::strong_count(&shared) == 1 {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(i: u64) -> Hash {
        medchain_types::sha256(&i.to_le_bytes())
    }

    #[test]
    fn held_transactions_are_released_when_the_node_stops_leading_or_its_blocks_stall() {
        let max = Duration::from_millis(500);
        // Leading, and its own blocks commit: held, however old the first mark.
        assert!(!release_due(true, 1_000, 1_400, 1_800, max));
        assert!(!release_due(true, 1_000, 10_000, 10_499, max));
        // Leading, nothing of its own committed for `max` since the first mark or last commit.
        assert!(release_due(true, 1_000, 0, 1_500, max));
        assert!(release_due(true, 1_000, 1_200, 1_700, max));
        assert!(!release_due(true, 1_000, 1_200, 1_699, max));
        // Not leading: released at once.
        assert!(release_due(false, 1_000, 1_000, 1_000, max));
        // A clock reading before the marks (not expected: monotonic) does not release.
        assert!(!release_due(true, 1_000, 0, 900, max));
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
