//! Practical Byzantine Fault Tolerance (Castro and Liskov, "Practical Byzantine Fault
//! Tolerance", OSDI 1999) as a sans-IO [`Engine`]. Section numbers in comments refer to that
//! paper.
//!
//! Adaptation to a blockchain:
//! - a request batch is a [`Block`]; its sequence number is its height and its digest its hash;
//! - one block is in flight at a time: the primary proposes height n + 1 once n is committed, so
//!   every block's parent is final when it is proposed and a view change concerns one height;
//! - a view change carries the replica's last committed block with its commit certificate (in
//!   place of the stable-checkpoint proof) and its prepared proof for the next height, if any;
//! - checkpoints (§4.3) every `checkpoint_interval` blocks carry the state root: a quorum of
//!   equal checkpoints makes it stable, moves the low watermark and garbage-collects the log, and
//!   a replica whose own root differs from a stable checkpoint has diverged (an assertion);
//! - a replica that is behind fetches final blocks with their certificates ([`Action::NeedBlocks`])
//!   and checks each certificate before committing.
//!
//! Before it votes, a replica persists what it voted for ([`Action::Persist`] is a barrier), so a
//! restarted replica never sends conflicting votes for a view and height: the accepted
//! pre-prepare before its prepare, the prepared proof (with the block) before its commit, and the
//! view before its view change.

mod messages;

pub use messages::{
    verify_certificate, CheckpointBody, CommittedProof, NewViewBody, PbftCertificate, Phase,
    PreparedProof, Signed, ViewChangeBody, Vote, Wire,
};

use medchain_consensus::{
    Action, Engine, EngineContext, EngineStatus, Event, Time, TimerId, TxVerifier, ValidatorSet,
};
use medchain_types::{codec, Block, Certificate, Hash, Header, PublicKey, SecretKey, Transaction};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

const TIMER_BATCH: TimerId = TimerId(1);
const TIMER_PROGRESS: TimerId = TimerId(2);
const TIMER_VIEW_CHANGE: TimerId = TimerId(3);
const TIMER_SYNC: TimerId = TimerId(4);
const TIMER_POLL: TimerId = TimerId(5);

const RECORD_VIEW: &[u8] = b"pbft/view";
const RECORD_ACCEPTED: &[u8] = b"pbft/accepted";
/// The prepared proof for the next height; its block is the ledger's candidate
/// ([`Action::PersistCandidate`]), written in the same atomic write.
const RECORD_PREPARED_PROOF: &[u8] = b"pbft/prepared-proof";
/// Written by earlier versions: the prepared proof with a copy of its block ([`PreparedRecord`]).
/// Still read after an upgrade, so a replica restarted mid-height keeps what it prepared.
const RECORD_PREPARED: &[u8] = b"pbft/prepared";
/// The new-view message that started the current view, for relaying after a restart.
const RECORD_NEW_VIEW: &[u8] = b"pbft/new_view";

/// Most deferred pre-prepares kept (each holds a block).
const FUTURE_MAX: usize = 8;

/// How many executed state roots are kept for checking proposals' state claims.
const EXECUTED_WINDOW: u64 = 1024;

/// PBFT parameters (from genesis).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PbftConfig {
    /// Most transactions in a block.
    pub batch_txs_max: usize,
    /// Most transaction bytes in a block.
    pub batch_bytes_max: usize,
    /// How long an idle primary waits before asking for transactions again.
    pub batch_poll: Duration,
    /// How long a replica waits for progress on pending work before starting a view change
    /// (doubles with each consecutive view change, up to `timeout_view_change_max`).
    pub timeout_view_change: Duration,
    /// Cap of the doubling.
    pub timeout_view_change_max: Duration,
    /// How often a backup checks whether transactions are pending.
    pub poll_pending: Duration,
    /// Checkpoint interval K (§4.3).
    pub checkpoint_interval: u64,
    /// Watermark window L: messages for heights beyond committed + L are dropped (§4.2).
    pub watermark_window: u64,
    /// How far ahead of a replica's clock a block time may be.
    pub clock_skew_max: Duration,
    /// How long to wait for requested blocks before asking another peer.
    pub sync_retry: Duration,
    /// Test only: a deliberately wrong quorum size, to show that the simulator's safety checker
    /// catches a broken engine. Never set it outside tests.
    #[doc(hidden)]
    pub unsafe_quorum_override: Option<usize>,
}

impl Default for PbftConfig {
    fn default() -> Self {
        PbftConfig {
            batch_txs_max: 4000,
            batch_bytes_max: 4 << 20,
            batch_poll: Duration::from_millis(5),
            timeout_view_change: Duration::from_secs(2),
            timeout_view_change_max: Duration::from_secs(10),
            poll_pending: Duration::from_millis(250),
            checkpoint_interval: 16,
            watermark_window: 64,
            clock_skew_max: Duration::from_secs(10),
            sync_retry: Duration::from_secs(1),
            unsafe_quorum_override: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Mode {
    /// Normal-case operation in `view`.
    Normal,
    /// Moving to `target` (§4.5.2); `attempt` counts consecutive view changes for the timeout.
    ViewChange { target: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct ViewRecord {
    view: u64,
    mode: Mode,
    /// The highest committed height certified by the new view that started `view`: no block at
    /// or below it may be accepted in this view.
    floor: u64,
}

/// "I accepted this pre-prepare": never accept another digest for the same view and height.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct AcceptedRecord {
    view: u64,
    seq: u64,
    digest: Hash,
}

/// The record under [`RECORD_PREPARED`] (earlier versions).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct PreparedRecord {
    proof: PreparedProof,
    block: Block,
}

/// The PBFT engine of one replica.
pub struct Pbft {
    cfg: PbftConfig,
    chain_id: String,
    key: SecretKey,
    me: PublicKey,
    validators: ValidatorSet,
    quorum: usize,
    verifier: Arc<dyn TxVerifier>,

    /// Last committed header and its certificate.
    committed: Header,
    committed_cert: Certificate,
    /// Recent committed block hashes, by height (for checkpoints).
    hashes: BTreeMap<u64, Hash>,
    /// Recent executed state roots, by height.
    executed: BTreeMap<u64, Hash>,

    view: u64,
    mode: Mode,
    /// See [`ViewRecord::floor`].
    view_floor: u64,
    /// Consecutive view changes without a commit (for the timeout's doubling).
    streak: u32,

    /// The pre-prepare accepted for height committed + 1.
    accepted: Option<(Signed<Vote>, Arc<Block>)>,
    /// The highest-view prepared proof for height committed + 1.
    prepared: Option<(PreparedProof, Arc<Block>)>,
    /// Prepare and commit votes for heights above committed: (phase, view, seq) → signer → vote.
    votes: BTreeMap<(Phase, u64, u64), BTreeMap<PublicKey, Signed<Vote>>>,
    /// Pre-prepares that cannot be processed yet (parent not committed, or state not executed).
    future: BTreeMap<(u64, u64), (Signed<Vote>, Block)>,
    /// The primary asked for transactions and waits for the answer.
    awaiting_txs: bool,

    /// Checkpoint votes: seq → signer → body.
    checkpoints: BTreeMap<u64, BTreeMap<PublicKey, CheckpointBody>>,
    /// Last stable checkpoint (low watermark).
    stable: u64,

    /// Latest view change from each replica, with its prepared block.
    view_changes: BTreeMap<PublicKey, (Signed<ViewChangeBody>, Option<Block>)>,
    /// Views for which this replica, as primary, sent a new view.
    new_view_sent: BTreeSet<u64>,
    /// The encoded new-view message that started the current view (sent or received), relayed
    /// to replicas still asking for this view: it is signed by the primary, so anyone may.
    last_new_view: Option<(u64, Vec<u8>)>,

    /// A pre-prepare accepted before a restart (only its digest survives): refuse conflicts.
    restored_promise: Option<AcceptedRecord>,
    /// Blocks up to this height are known to exist at some peer.
    sync_target: u64,
    sync_peer: Option<PublicKey>,
    sync_deadline: Option<Time>,

    /// A backup learned that transactions are pending.
    pending_work: bool,
    progress_deadline: Option<Time>,
    view_change_deadline: Option<Time>,

    counters: BTreeMap<String, u64>,
}

impl std::fmt::Debug for Pbft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pbft")
            .field("me", &self.me)
            .field("view", &self.view)
            .field("mode", &self.mode)
            .field("committed", &self.committed.height)
            .finish()
    }
}

impl Pbft {
    /// Builds the engine from its context and configuration, restoring persisted records.
    pub fn new(mut ctx: EngineContext, cfg: PbftConfig) -> Pbft {
        let quorum = cfg
            .unsafe_quorum_override
            .unwrap_or_else(|| ctx.validators.quorum());
        let tip = ctx.tip;
        let mut pbft = Pbft {
            me: ctx.key.public(),
            key: ctx.key,
            chain_id: ctx.chain_id,
            validators: ctx.validators,
            quorum,
            verifier: ctx.verifier,
            hashes: BTreeMap::from([(tip.header.height, tip.header.hash())]),
            executed: BTreeMap::from([(tip.header.height, tip.state_root)]),
            committed: tip.header,
            committed_cert: tip.certificate,
            view: 0,
            mode: Mode::Normal,
            view_floor: 0,
            streak: 0,
            accepted: None,
            prepared: None,
            votes: BTreeMap::new(),
            future: BTreeMap::new(),
            awaiting_txs: false,
            checkpoints: BTreeMap::new(),
            stable: 0,
            view_changes: BTreeMap::new(),
            new_view_sent: BTreeSet::new(),
            last_new_view: None,
            restored_promise: None,
            sync_target: 0,
            sync_peer: None,
            sync_deadline: None,
            pending_work: false,
            progress_deadline: None,
            view_change_deadline: None,
            counters: BTreeMap::new(),
            cfg,
        };
        // The committed certificate tells the view the chain was last committed in; the view
        // record what this replica promised. A promise not to vote below a view-change target
        // survives the restart unless a certificate shows the quorum already reached it.
        let cert_view = pbft
            .check_certificate(&pbft.committed.clone(), &pbft.committed_cert.clone())
            .unwrap_or(0);
        pbft.view = cert_view;
        let next = pbft.committed.height + 1;
        if let Some(r) = ctx
            .records
            .get(RECORD_VIEW)
            .and_then(|b| codec::decode::<ViewRecord>(b).ok())
        {
            match r.mode {
                Mode::ViewChange { target } if cert_view < target => {
                    pbft.view = r.view.max(cert_view);
                    pbft.mode = r.mode;
                }
                _ if r.view >= cert_view => {
                    pbft.view = r.view;
                    pbft.mode = r.mode;
                    pbft.view_floor = r.floor;
                }
                _ => {}
            }
        }
        if let Some((view, wire)) = ctx
            .records
            .get(RECORD_NEW_VIEW)
            .and_then(|b| codec::decode::<(u64, Vec<u8>)>(b).ok())
        {
            if view == pbft.view {
                pbft.last_new_view = Some((view, wire));
            }
        }
        // The prepared proof names its block by digest; the block is the ledger's candidate.
        let proof = ctx
            .records
            .get(RECORD_PREPARED_PROOF)
            .and_then(|b| codec::decode::<PreparedProof>(b).ok())
            .filter(|p| p.pre_prepare.body.seq == next);
        let with_block = proof.and_then(|p| {
            ctx.candidate
                .take()
                .filter(|b| b.hash() == p.pre_prepare.body.digest)
                .map(|b| (p, b))
        });
        let legacy = || {
            ctx.records
                .get(RECORD_PREPARED)
                .and_then(|b| codec::decode::<PreparedRecord>(b).ok())
                .filter(|r| r.proof.pre_prepare.body.seq == next)
                .map(|r| (r.proof, r.block))
        };
        pbft.prepared = with_block.or_else(legacy).map(|(p, b)| (p, Arc::new(b)));
        if let Some(r) = ctx
            .records
            .get(RECORD_ACCEPTED)
            .and_then(|b| codec::decode::<AcceptedRecord>(b).ok())
        {
            // Only the promise is restored (not the block): a replay of the same pre-prepare is
            // accepted again, a conflicting one is refused.
            if r.seq == next {
                pbft.restored_promise = Some(r);
            }
        }
        pbft
    }

    fn primary(&self, view: u64) -> PublicKey {
        self.validators.at(view)
    }

    fn is_primary(&self) -> bool {
        self.mode == Mode::Normal && self.primary(self.view) == self.me
    }

    fn count(&mut self, what: &str) {
        *self.counters.entry(what.to_owned()).or_default() += 1;
    }

    fn check_certificate(&self, header: &Header, cert: &Certificate) -> Result<u64, String> {
        if header.height == 0 {
            return Ok(0); // genesis is agreed by configuration
        }
        verify_certificate(&self.chain_id, &self.validators, self.quorum, header, cert)
    }

    fn timeout(&self) -> Duration {
        let base = self.cfg.timeout_view_change;
        base.saturating_mul(1 << self.streak.min(16))
            .min(self.cfg.timeout_view_change_max)
    }

    fn persist<T: Serialize>(&self, key: &[u8], value: &T, out: &mut Vec<Action>) {
        out.push(Action::Persist {
            key: key.to_vec(),
            value: Some(codec::encode(value)),
        });
    }

    fn broadcast(&self, wire: Wire, out: &mut Vec<Action>) {
        out.push(Action::Broadcast(wire.encode()));
    }

    fn vote(&self, phase: Phase, view: u64, seq: u64, digest: Hash) -> Signed<Vote> {
        Signed::sign(
            Vote {
                phase,
                view,
                seq,
                digest,
            },
            &self.key,
            &self.chain_id,
        )
    }

    // ----- proposing (§4.2, the primary) -------------------------------------------------------

    fn maybe_propose(&mut self, out: &mut Vec<Action>) {
        // Not below the new view's certified height (catch up first), and never a second block
        // for a height this primary already proposed in this view before a restart.
        let promised = self
            .restored_promise
            .is_some_and(|p| p.view == self.view && p.seq == self.committed.height + 1);
        if self.is_primary()
            && self.accepted.is_none()
            && !self.awaiting_txs
            && self.committed.height >= self.view_floor
            && !promised
        {
            self.awaiting_txs = true;
            out.push(Action::NeedTransactions {
                max: self.cfg.batch_txs_max,
            });
        }
    }

    fn propose(
        &mut self,
        now: Time,
        mut txs: Vec<Transaction>,
        hashes: &[Hash],
        out: &mut Vec<Action>,
    ) {
        // A runtime that broke the event's contract costs the hashing, not a wrong block.
        let hashed = hashes.len() == txs.len();
        let mut bytes = 0;
        let fit = txs
            .iter()
            .take_while(|t| {
                bytes += t.payload.len() + 200;
                bytes <= self.cfg.batch_bytes_max
            })
            .count();
        txs.truncate(fit);
        let (&state_height, &state_root) = self
            .executed
            .iter()
            .next_back()
            .expect("the tip's root is always known");
        let height = self.committed.height + 1;
        let computed: Vec<Hash>;
        let tx_hashes = if hashed {
            &hashes[..fit]
        } else {
            computed = txs.iter().map(Transaction::hash).collect();
            &computed
        };
        let block = Block::build_hashed(
            height,
            self.committed.hash(),
            state_height.min(height - 1),
            state_root,
            now.max(self.committed.time_ms),
            self.me,
            self.view.to_be_bytes().to_vec(),
            txs,
            tx_hashes,
        );
        let vote = self.vote(Phase::PrePrepare, self.view, height, block.hash());
        self.persist(
            RECORD_ACCEPTED,
            &AcceptedRecord {
                view: self.view,
                seq: height,
                digest: vote.body.digest,
            },
            out,
        );
        // Encoded from references: a block of a saturated cluster is megabytes and thousands of
        // allocations to copy.
        out.push(Action::Broadcast(Wire::encode_pre_prepare(&vote, &block)));
        self.accepted = Some((vote, Arc::new(block)));
        self.count("proposed");
        self.check_prepared(out);
    }

    // ----- normal case (§4.2) ------------------------------------------------------------------

    fn on_pre_prepare(
        &mut self,
        now: Time,
        from: PublicKey,
        vote: Signed<Vote>,
        block: Block,
        out: &mut Vec<Action>,
    ) {
        let v = vote.body;
        if v.phase != Phase::PrePrepare || vote.signer != from || from != self.primary(v.view) {
            return self.count("rejected_pre_prepare_sender");
        }
        if !vote.verify(&self.chain_id, &self.validators)
            || block.hash() != v.digest
            || block.header.height != v.seq
        {
            return self.count("rejected_pre_prepare_signature");
        }
        if v.seq <= self.committed.height {
            return; // already final
        }
        if v.seq > self.committed.height + self.cfg.watermark_window {
            return self.count("rejected_beyond_watermark");
        }
        if v.view < self.view {
            return;
        }
        if v.view > self.view + self.cfg.watermark_window {
            return self.count("rejected_beyond_watermark");
        }
        if v.seq > self.committed.height + 1 {
            self.request_sync(now, v.seq - 1, Some(from), out);
        }
        if v.view > self.view || self.mode != Mode::Normal || v.seq > self.committed.height + 1 {
            // A view not entered yet (its new view may arrive after this pre-prepare), or a
            // height whose parent is not final here yet: keep it for later.
            self.defer(vote, block);
            return;
        }
        self.try_accept(now, vote, block, out);
    }

    /// Validates a pre-prepare for height committed + 1 in the current view and, if valid,
    /// accepts it and sends a prepare. Defers it if the state it claims is not executed yet.
    fn try_accept(&mut self, now: Time, vote: Signed<Vote>, block: Block, out: &mut Vec<Action>) {
        let v = vote.body;
        if let Some((a, _)) = &self.accepted {
            if a.body.view == v.view && a.body.seq == v.seq {
                if a.body.digest != v.digest {
                    self.count("rejected_equivocation");
                }
                return;
            }
        }
        if let Some(p) = &self.restored_promise {
            if p.view == v.view && p.seq == v.seq && p.digest != v.digest {
                return self.count("rejected_equivocation");
            }
        }
        if v.view == self.view && v.seq <= self.view_floor {
            // The new view certified a committed block at this height: nothing else goes here.
            return self.count("rejected_below_new_view");
        }
        let h = &block.header;
        // A block re-proposed by a new view keeps its original proposer; the pre-prepare's
        // signature is what authenticates the proposal.
        if h.parent != self.committed.hash() || !self.validators.contains(&h.proposer) {
            return self.count("rejected_pre_prepare_parent");
        }
        if h.time_ms < self.committed.time_ms
            || h.time_ms > now + self.cfg.clock_skew_max.as_millis() as u64
        {
            return self.count("rejected_pre_prepare_time");
        }
        // The state claim: the proposer's root at state_height must equal ours.
        match self.executed.get(&h.state_height) {
            Some(root) if *root == h.state_root => {}
            Some(_) => return self.count("rejected_pre_prepare_state"),
            None if h.state_height > self.last_executed() => {
                // Not executed here yet: try again after BlockExecuted.
                self.defer(vote, block);
                return;
            }
            None => return self.count("rejected_pre_prepare_state"),
        }
        let tx_bytes: usize = block.txs.iter().map(|t| t.payload.len() + 200).sum();
        if block.txs.len() > self.cfg.batch_txs_max || tx_bytes > self.cfg.batch_bytes_max + 200 {
            return self.count("rejected_pre_prepare_size");
        }
        let Ok(tx_hashes) = block.check_structure() else {
            return self.count("rejected_pre_prepare_txs");
        };
        if self.verifier.verify_block(&block, &tx_hashes).is_err() {
            return self.count("rejected_pre_prepare_txs");
        }
        self.persist(
            RECORD_ACCEPTED,
            &AcceptedRecord {
                view: v.view,
                seq: v.seq,
                digest: v.digest,
            },
            out,
        );
        self.restored_promise = None;
        let prepare = self.vote(Phase::Prepare, v.view, v.seq, v.digest);
        self.broadcast(Wire::Prepare(prepare.clone()), out);
        self.accepted = Some((vote, Arc::new(block)));
        self.record_vote(prepare);
        self.arm_progress(now, out);
        self.check_prepared(out);
    }

    /// Keeps a pre-prepare that cannot be processed yet; per height, the one of the highest view.
    fn defer(&mut self, vote: Signed<Vote>, block: Block) {
        self.future
            .insert((vote.body.seq, vote.body.view), (vote, block));
        // Bounded: blocks are large. The lowest heights are the ones needed next.
        while self.future.len() > FUTURE_MAX {
            self.future.pop_last();
        }
    }

    fn last_executed(&self) -> u64 {
        self.executed.keys().next_back().copied().unwrap_or(0)
    }

    fn record_vote(&mut self, vote: Signed<Vote>) {
        let b = vote.body;
        self.votes
            .entry((b.phase, b.view, b.seq))
            .or_default()
            .entry(vote.signer)
            .or_insert(vote);
    }

    fn on_vote(&mut self, now: Time, from: PublicKey, vote: Signed<Vote>, out: &mut Vec<Action>) {
        let b = vote.body;
        if vote.signer != from || !matches!(b.phase, Phase::Prepare | Phase::Commit) {
            return self.count("rejected_vote_sender");
        }
        // Votes of older views can no longer matter (and would pile up).
        if b.seq <= self.committed.height || b.view < self.view {
            return;
        }
        if b.seq > self.committed.height + self.cfg.watermark_window
            || b.view > self.view + self.cfg.watermark_window
        {
            return self.count("rejected_beyond_watermark");
        }
        if !vote.verify(&self.chain_id, &self.validators) {
            return self.count("rejected_vote_signature");
        }
        if b.view > self.view || b.seq > self.committed.height + 1 {
            // Others are ahead (a later view, or a later height): fetch what they committed.
            self.request_sync(now, b.seq - 1, Some(from), out);
        }
        self.record_vote(vote);
        self.check_prepared(out);
    }

    fn matching(&self, phase: Phase, view: u64, seq: u64, digest: Hash) -> Vec<Signed<Vote>> {
        self.votes
            .get(&(phase, view, seq))
            .map(|m| {
                m.values()
                    .filter(|v| v.body.digest == digest)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// prepared(m, v, n, i) (§4.2): the pre-prepare plus quorum − 1 matching prepares from other
    /// replicas; then send a commit. committed-local: prepared plus a quorum of commits.
    fn check_prepared(&mut self, out: &mut Vec<Action>) {
        // Called on every vote: copy the pre-prepare, never the block (megabytes under load).
        let Some(pp) = self.accepted.as_ref().map(|(pp, _)| pp.clone()) else {
            return;
        };
        let (view, seq, digest) = (pp.body.view, pp.body.seq, pp.body.digest);
        let primary = self.primary(view);
        let already = self.prepared.as_ref().is_some_and(|(p, _)| {
            p.pre_prepare.body.view == view && p.pre_prepare.body.digest == digest
        });
        // After sending a view change a replica no longer votes in older views (§4.5.2); it may
        // still commit from a quorum of others' commits, which is a valid certificate.
        if !already && self.mode == Mode::Normal && view == self.view {
            let prepares: Vec<_> = self
                .matching(Phase::Prepare, view, seq, digest)
                .into_iter()
                .filter(|v| v.signer != primary)
                .collect();
            if prepares.len() + 1 < self.quorum {
                return;
            }
            let proof = PreparedProof {
                pre_prepare: pp.clone(),
                prepares: prepares.into_iter().take(self.quorum - 1).collect(),
            };
            let Some((_, block)) = &self.accepted else {
                return;
            };
            // The block is written once: as the ledger's candidate now, kept when it is final.
            out.push(Action::PersistCandidate {
                key: RECORD_PREPARED_PROOF.to_vec(),
                value: codec::encode(&proof),
                block: block.clone(),
            });
            self.prepared = Some((proof, block.clone()));
            let commit = self.vote(Phase::Commit, view, seq, digest);
            self.broadcast(Wire::Commit(commit.clone()), out);
            self.record_vote(commit);
        }
        let commits = self.matching(Phase::Commit, view, seq, digest);
        let prepared_here = self.prepared.as_ref().is_some_and(|(p, _)| {
            p.pre_prepare.body.view == view && p.pre_prepare.body.digest == digest
        });
        if commits.len() >= self.quorum && (prepared_here || self.mode != Mode::Normal) {
            let mut sigs: Vec<(PublicKey, medchain_types::Signature)> =
                commits.iter().map(|v| (v.signer, v.signature)).collect();
            sigs.sort_by_key(|(k, _)| *k);
            sigs.truncate(self.quorum);
            let cert = Certificate(codec::encode(&PbftCertificate {
                view,
                commits: sigs,
            }));
            // `commit` clears `accepted` and `prepared` anyway: move the block out of them (the
            // runtime dropped its share when it stored the candidate, so nothing is copied).
            if let Some((_, block)) = self.accepted.take() {
                self.prepared = None;
                self.commit(Arc::unwrap_or_clone(block), cert, out);
            }
        }
    }

    /// A block is final here: hand it to the runtime and move to the next height.
    fn commit(&mut self, block: Block, cert: Certificate, out: &mut Vec<Action>) {
        let height = block.header.height;
        debug_assert_eq!(height, self.committed.height + 1);
        self.committed = block.header.clone();
        self.committed_cert = cert.clone();
        self.hashes.insert(height, block.hash());
        while self.hashes.len() as u64 > EXECUTED_WINDOW {
            self.hashes.pop_first();
        }
        out.push(Action::Commit {
            block,
            certificate: cert,
        });
        self.count("committed");
        self.accepted = None;
        self.prepared = None;
        self.restored_promise = None;
        self.streak = 0;
        self.awaiting_txs = false;
        self.votes = self.votes.split_off(&(Phase::PrePrepare, 0, 0));
        self.votes.retain(|(_, _, seq), _| *seq > height);
        self.future.retain(|(seq, _), _| *seq > height);
        self.progress_deadline = None;
        out.push(Action::CancelTimer(TIMER_PROGRESS));
    }

    fn after_progress(&mut self, now: Time, out: &mut Vec<Action>) {
        // Work seen before this commit may have been in it; the next poll says again.
        self.pending_work = false;
        // A buffered pre-prepare for the next height may now be acceptable.
        let next = self.committed.height + 1;
        let view = self.view;
        self.future.retain(|(seq, v), _| *seq >= next && *v >= view);
        if self.mode == Mode::Normal {
            if let Some((vote, block)) = self.future.remove(&(next, view)) {
                self.try_accept(now, vote, block, out);
            }
        }
        if self.pending_work || self.accepted.is_some() {
            self.arm_progress(now, out);
        }
        self.maybe_propose(out);
    }

    /// Starts the view-change timer if it is not running (§4.5.2: a backup waiting for a request
    /// to execute).
    fn arm_progress(&mut self, now: Time, out: &mut Vec<Action>) {
        if self.progress_deadline.is_none() && self.mode == Mode::Normal && !self.is_primary() {
            let t = self.timeout();
            self.progress_deadline = Some(now + t.as_millis() as u64);
            out.push(Action::SetTimer {
                id: TIMER_PROGRESS,
                after: t,
            });
        }
    }

    // ----- checkpoints (§4.3) ------------------------------------------------------------------

    fn on_executed(&mut self, now: Time, height: u64, state_root: Hash, out: &mut Vec<Action>) {
        self.executed.insert(height, state_root);
        while self.executed.len() as u64 > EXECUTED_WINDOW {
            self.executed.pop_first();
        }
        if height > 0 && height % self.cfg.checkpoint_interval == 0 {
            if let Some(block) = self.hashes.get(&height).copied() {
                let body = CheckpointBody {
                    seq: height,
                    block,
                    state_root,
                };
                let signed = Signed::sign(body, &self.key, &self.chain_id);
                self.broadcast(Wire::Checkpoint(signed), out);
                self.record_checkpoint(self.me, body);
            }
        }
        self.after_progress(now, out);
    }

    fn on_checkpoint(
        &mut self,
        now: Time,
        from: PublicKey,
        cp: Signed<CheckpointBody>,
        out: &mut Vec<Action>,
    ) {
        if cp.signer != from || !cp.verify(&self.chain_id, &self.validators) {
            return self.count("rejected_checkpoint");
        }
        if cp.body.seq <= self.stable || cp.body.seq % self.cfg.checkpoint_interval != 0 {
            return;
        }
        if cp.body.seq
            > self.committed.height
                + self
                    .cfg
                    .watermark_window
                    .max(4 * self.cfg.checkpoint_interval)
        {
            // Far ahead: catch up first; the checkpoint will come again.
            self.request_sync(now, cp.body.seq, Some(from), out);
            return;
        }
        if cp.body.seq > self.committed.height {
            self.request_sync(now, cp.body.seq, Some(from), out);
        }
        self.record_checkpoint(from, cp.body);
    }

    fn record_checkpoint(&mut self, from: PublicKey, body: CheckpointBody) {
        let seq = body.seq;
        self.checkpoints.entry(seq).or_default().insert(from, body);
        let agreeing = self.checkpoints[&seq]
            .values()
            .filter(|b| **b == body)
            .count();
        if agreeing >= self.quorum && seq > self.stable {
            // Stable: a quorum executed to the same state. Our own root must match.
            if let Some(mine) = self.executed.get(&seq) {
                assert_eq!(
                    *mine, body.state_root,
                    "state divergence at height {seq}: a quorum has state root {}, this replica {mine}",
                    body.state_root
                );
            }
            self.stable = seq;
            self.checkpoints = self.checkpoints.split_off(&(seq + 1));
            self.count("stable_checkpoints");
        }
    }

    // ----- catching up ---------------------------------------------------------------------------

    fn request_sync(
        &mut self,
        now: Time,
        target: u64,
        peer: Option<PublicKey>,
        out: &mut Vec<Action>,
    ) {
        if target <= self.committed.height {
            return;
        }
        self.sync_target = self.sync_target.max(target);
        if self.sync_deadline.is_some_and(|d| now < d) {
            return; // a request is outstanding
        }
        self.sync_peer = peer.or(self.sync_peer);
        self.sync_deadline = Some(now + self.cfg.sync_retry.as_millis() as u64);
        out.push(Action::NeedBlocks {
            from_height: self.committed.height + 1,
            peer: self.sync_peer,
        });
        out.push(Action::SetTimer {
            id: TIMER_SYNC,
            after: self.cfg.sync_retry,
        });
        self.count("sync_requests");
    }

    fn on_synced(&mut self, now: Time, block: Block, cert: Certificate, out: &mut Vec<Action>) {
        let h = &block.header;
        if h.height != self.committed.height + 1 {
            return;
        }
        if h.parent != self.committed.hash() || block.check_structure().is_err() {
            return self.count("rejected_synced_block");
        }
        let Ok(view) = self.check_certificate(&block.header.clone(), &cert) else {
            return self.count("rejected_synced_certificate");
        };
        // A certificate from a later view proves a quorum is there, past that view's re-proposal:
        // a replica that missed the new view joins it. One that is changing views may join too
        // if the certificate's view is not below its target (it promised nothing about those).
        let may_join = match self.mode {
            Mode::Normal => true,
            Mode::ViewChange { target } => target <= view,
        };
        if view > self.view && may_join {
            // Heights up to this certified one are final here, so the floor adds nothing.
            self.enter_view(view, 0, out);
        }
        self.commit(block, cert, out);
        if self.committed.height >= self.sync_target {
            self.sync_deadline = None;
        }
        self.after_progress(now, out);
    }

    // ----- view changes (§4.5.2) ---------------------------------------------------------------

    fn start_view_change(&mut self, now: Time, target: u64, out: &mut Vec<Action>) {
        if target <= self.view || matches!(self.mode, Mode::ViewChange { target: t } if t >= target)
        {
            return;
        }
        self.mode = Mode::ViewChange { target };
        self.streak += 1;
        self.count("view_changes");
        self.persist(
            RECORD_VIEW,
            &ViewRecord {
                view: self.view,
                mode: self.mode,
                floor: self.view_floor,
            },
            out,
        );
        self.progress_deadline = None;
        out.push(Action::CancelTimer(TIMER_PROGRESS));
        out.push(Action::CancelTimer(TIMER_BATCH));
        let prepared = self.prepared.clone();
        let body = ViewChangeBody {
            view: target,
            committed: CommittedProof {
                header: self.committed.clone(),
                certificate: self.committed_cert.clone(),
            },
            prepared: prepared.as_ref().map(|(p, _)| p.clone()),
        };
        let signed = Signed::sign(body, &self.key, &self.chain_id);
        let block = prepared.map(|(_, b)| Arc::unwrap_or_clone(b));
        self.broadcast(
            Wire::ViewChange {
                view_change: signed.clone(),
                block: block.clone(),
            },
            out,
        );
        self.view_changes.insert(self.me, (signed, block));
        let t = self.timeout();
        self.view_change_deadline = Some(now + t.as_millis() as u64);
        out.push(Action::SetTimer {
            id: TIMER_VIEW_CHANGE,
            after: t,
        });
        self.check_new_view(now, target, out);
    }

    /// Checks a view change's proofs. Returns the height it proves committed.
    fn valid_view_change(&self, vc: &Signed<ViewChangeBody>, block: Option<&Block>) -> Option<u64> {
        if !vc.verify(&self.chain_id, &self.validators) {
            return None;
        }
        let c = &vc.body.committed;
        self.check_certificate(&c.header, &c.certificate).ok()?;
        if let Some(p) = &vc.body.prepared {
            if !self.valid_prepared(p, c.header.height + 1) {
                return None;
            }
            if block.is_some_and(|b| b.hash() != p.pre_prepare.body.digest) {
                return None;
            }
        }
        Some(c.header.height)
    }

    fn valid_prepared(&self, p: &PreparedProof, seq: u64) -> bool {
        let pp = &p.pre_prepare;
        let primary = self.primary(pp.body.view);
        if pp.body.phase != Phase::PrePrepare || pp.body.seq != seq || pp.signer != primary {
            return false;
        }
        if !pp.verify(&self.chain_id, &self.validators) {
            return false;
        }
        let mut signers = BTreeSet::new();
        for v in &p.prepares {
            let b = v.body;
            if b.phase != Phase::Prepare
                || b.view != pp.body.view
                || b.seq != seq
                || b.digest != pp.body.digest
            {
                return false;
            }
            if v.signer == primary || !v.verify(&self.chain_id, &self.validators) {
                return false;
            }
            signers.insert(v.signer);
        }
        signers.len() + 1 >= self.quorum
    }

    fn on_view_change(
        &mut self,
        now: Time,
        from: PublicKey,
        vc: Signed<ViewChangeBody>,
        block: Option<Block>,
        out: &mut Vec<Action>,
    ) {
        if vc.signer != from {
            return;
        }
        if vc.body.view == self.view && self.mode == Mode::Normal {
            // Someone is still trying to reach the view this replica is in: the new view that
            // started it was lost on the way there. Send it again (§4.5.2 retransmission).
            if let Some((view, wire)) = &self.last_new_view {
                if *view == self.view {
                    out.push(Action::Send {
                        to: from,
                        msg: wire.clone(),
                    });
                }
            }
            return;
        }
        if vc.body.view <= self.view {
            return;
        }
        if vc.body.view > self.view + self.cfg.watermark_window {
            return self.count("rejected_beyond_watermark");
        }
        // A prepared proof must travel with its block, or no new primary could re-propose it.
        if vc.body.prepared.is_some() != block.is_some() {
            return self.count("rejected_view_change");
        }
        let Some(height) = self.valid_view_change(&vc, block.as_ref()) else {
            return self.count("rejected_view_change");
        };
        if height > self.committed.height {
            self.request_sync(now, height, Some(from), out);
        }
        let view = vc.body.view;
        let newer = self
            .view_changes
            .get(&from)
            .is_none_or(|(old, _)| old.body.view < view);
        if newer {
            self.view_changes.insert(from, (vc, block));
        }
        // Liveness (§4.5.2): f + 1 replicas want a later view, so at least one correct replica
        // timed out; join the smallest of their views.
        let current = match self.mode {
            Mode::Normal => self.view,
            Mode::ViewChange { target } => target,
        };
        let mut later: Vec<u64> = self
            .view_changes
            .iter()
            .filter(|(k, (v, _))| **k != self.me && v.body.view > current)
            .map(|(_, (v, _))| v.body.view)
            .collect();
        if later.len() > self.validators.f() {
            later.sort_unstable();
            let smallest = later[later.len() - self.validators.f() - 1];
            self.start_view_change(now, smallest, out);
        }
        self.check_new_view(now, view, out);
    }

    /// For each view change in `vcs`: the highest committed height H, and the prepared block with
    /// the highest view for H + 1 (the new view must re-propose it).
    fn choose(
        &self,
        vcs: &[(Signed<ViewChangeBody>, Option<Block>)],
    ) -> (u64, Option<(PreparedProof, Option<Block>)>) {
        let h = vcs
            .iter()
            .map(|(v, _)| v.body.committed.header.height)
            .max()
            .unwrap_or(0);
        let chosen = vcs
            .iter()
            .filter(|(v, _)| v.body.committed.header.height == h)
            .filter_map(|(v, b)| v.body.prepared.clone().map(|p| (p, b.clone())))
            .max_by_key(|(p, b)| (p.pre_prepare.body.view, b.is_some()));
        (h, chosen)
    }

    fn check_new_view(&mut self, now: Time, view: u64, out: &mut Vec<Action>) {
        if self.primary(view) != self.me
            || self.mode != (Mode::ViewChange { target: view })
            || self.new_view_sent.contains(&view)
        {
            return;
        }
        let vcs: Vec<(Signed<ViewChangeBody>, Option<Block>)> = self
            .view_changes
            .values()
            .filter(|(v, _)| v.body.view == view)
            .take(self.quorum)
            .cloned()
            .collect();
        if vcs.len() < self.quorum {
            return;
        }
        let (h, chosen) = self.choose(&vcs);
        let (pre_prepare, block) = match chosen {
            Some((proof, Some(block))) => (
                Some(self.vote(
                    Phase::PrePrepare,
                    view,
                    h + 1,
                    proof.pre_prepare.body.digest,
                )),
                Some(block),
            ),
            // A prepared proof without its block cannot be re-proposed; wait for more view
            // changes (one that carries the block) or the next view.
            Some((_, None)) => return,
            None => (None, None),
        };
        let body = NewViewBody {
            view,
            view_changes: vcs.into_iter().map(|(v, _)| v).collect(),
            pre_prepare: pre_prepare.clone(),
        };
        let signed = Signed::sign(body, &self.key, &self.chain_id);
        self.new_view_sent.insert(view);
        // Persist the view (and the re-proposal below) before the new view goes out.
        self.enter_view(view, h, out);
        if let (Some(vote), Some(b)) = (pre_prepare.clone(), block.clone()) {
            self.adopt_re_proposal(now, vote, b, out);
        }
        let wire = Wire::NewView {
            new_view: signed,
            block,
        }
        .encode();
        self.remember_new_view(view, wire.clone(), out);
        out.push(Action::Broadcast(wire));
        if h > self.committed.height {
            self.request_sync(now, h, None, out);
        }
        if pre_prepare.is_none() {
            self.maybe_propose(out);
        }
    }

    /// The new primary's own re-proposal, or a backup's copy from the new view.
    fn adopt_re_proposal(
        &mut self,
        now: Time,
        vote: Signed<Vote>,
        block: Block,
        out: &mut Vec<Action>,
    ) {
        if vote.body.seq == self.committed.height + 1 {
            if self.primary(vote.body.view) == self.me {
                self.persist(
                    RECORD_ACCEPTED,
                    &AcceptedRecord {
                        view: vote.body.view,
                        seq: vote.body.seq,
                        digest: vote.body.digest,
                    },
                    out,
                );
                self.accepted = Some((vote, Arc::new(block)));
                self.check_prepared(out);
            } else {
                self.try_accept(now, vote, block, out);
            }
        } else if vote.body.seq > self.committed.height + 1 {
            self.defer(vote, block);
        }
    }

    fn on_new_view(
        &mut self,
        now: Time,
        from: PublicKey,
        nv: Signed<NewViewBody>,
        block: Option<Block>,
        out: &mut Vec<Action>,
    ) {
        let view = nv.body.view;
        // Any validator may relay a new view; its signer must be the view's primary.
        if nv.signer != self.primary(view) || view <= self.view {
            return;
        }
        // A replica changing views promised not to vote below its target (§4.5.2).
        if matches!(self.mode, Mode::ViewChange { target } if view < target) {
            return;
        }
        if !nv.verify(&self.chain_id, &self.validators) {
            return self.count("rejected_new_view");
        }
        let mut signers = BTreeSet::new();
        let mut vcs = Vec::new();
        for vc in &nv.body.view_changes {
            // The prepared blocks travel once, beside the new view; proofs are checked here.
            if vc.body.view != view || self.valid_view_change(vc, None).is_none() {
                return self.count("rejected_new_view");
            }
            signers.insert(vc.signer);
            vcs.push((vc.clone(), None));
        }
        if signers.len() < self.quorum {
            return self.count("rejected_new_view");
        }
        let (h, chosen) = self.choose(&vcs);
        let consistent = match (&chosen, &nv.body.pre_prepare, &block) {
            (None, None, None) => true,
            (Some((proof, _)), Some(pp), Some(b)) => {
                pp.body
                    == Vote {
                        phase: Phase::PrePrepare,
                        view,
                        seq: h + 1,
                        digest: proof.pre_prepare.body.digest,
                    }
                    && pp.signer == nv.signer
                    && b.hash() == pp.body.digest
            }
            _ => false,
        };
        if !consistent {
            return self.count("rejected_new_view");
        }
        let relay = Wire::NewView {
            new_view: nv.clone(),
            block: block.clone(),
        }
        .encode();
        self.remember_new_view(view, relay, out);
        self.enter_view(view, h, out);
        if h > self.committed.height {
            self.request_sync(now, h, Some(from), out);
        }
        if let (Some(pp), Some(b)) = (nv.body.pre_prepare, block) {
            self.adopt_re_proposal(now, pp, b, out);
        }
        self.after_progress(now, out);
    }

    /// Keeps (durably) the new view that started `view`, to relay it to late replicas.
    fn remember_new_view(&mut self, view: u64, wire: Vec<u8>, out: &mut Vec<Action>) {
        out.push(Action::Persist {
            key: RECORD_NEW_VIEW.to_vec(),
            value: Some(codec::encode(&(view, wire.clone()))),
        });
        self.last_new_view = Some((view, wire));
    }

    fn enter_view(&mut self, view: u64, floor: u64, out: &mut Vec<Action>) {
        self.view = view;
        self.mode = Mode::Normal;
        self.view_floor = floor;
        self.persist(
            RECORD_VIEW,
            &ViewRecord {
                view,
                mode: self.mode,
                floor,
            },
            out,
        );
        self.accepted = None;
        self.awaiting_txs = false;
        self.future.retain(|(_, v), _| *v >= view);
        self.view_changes.retain(|_, (v, _)| v.body.view > view);
        self.new_view_sent.retain(|v| *v > view);
        self.votes.retain(|(_, v, _), _| *v >= view);
        self.view_change_deadline = None;
        self.progress_deadline = None;
        out.push(Action::CancelTimer(TIMER_VIEW_CHANGE));
        out.push(Action::CancelTimer(TIMER_PROGRESS));
        self.count("views_entered");
    }

    // ----- events --------------------------------------------------------------------------------

    fn on_timer(&mut self, now: Time, id: TimerId, out: &mut Vec<Action>) {
        match id {
            TIMER_BATCH => self.maybe_propose(out),
            TIMER_POLL => {
                if !self.is_primary() {
                    out.push(Action::NeedTransactions { max: 1 });
                }
                out.push(Action::SetTimer {
                    id: TIMER_POLL,
                    after: self.cfg.poll_pending,
                });
            }
            TIMER_PROGRESS
                if self.progress_deadline.is_some_and(|d| now >= d)
                    && self.mode == Mode::Normal =>
            {
                self.progress_deadline = None;
                // Only work that is still waiting justifies suspecting the primary.
                if self.pending_work || self.accepted.is_some() {
                    self.start_view_change(now, self.view + 1, out);
                }
            }
            TIMER_VIEW_CHANGE if self.view_change_deadline.is_some_and(|d| now >= d) => {
                if let Mode::ViewChange { target } = self.mode {
                    let joined = self
                        .view_changes
                        .values()
                        .filter(|(v, _)| v.body.view == target)
                        .count();
                    if joined >= self.quorum {
                        // A quorum moved but the new view did not come: try the next (§4.5.2).
                        self.start_view_change(now, target + 1, out);
                    } else {
                        // Alone so far: say it again (messages may be lost) rather than drift to
                        // ever later views that nobody else will reach.
                        if let Some((vc, block)) = self.view_changes.get(&self.me).cloned() {
                            self.broadcast(
                                Wire::ViewChange {
                                    view_change: vc,
                                    block,
                                },
                                out,
                            );
                        }
                        let t = self.timeout();
                        self.view_change_deadline = Some(now + t.as_millis() as u64);
                        out.push(Action::SetTimer {
                            id: TIMER_VIEW_CHANGE,
                            after: t,
                        });
                    }
                }
            }
            TIMER_SYNC if self.sync_deadline.is_some_and(|d| now >= d) => {
                self.sync_deadline = None;
                if self.committed.height < self.sync_target {
                    // Ask someone else this time.
                    let next = self
                        .sync_peer
                        .and_then(|p| self.validators.index_of(&p))
                        .map(|i| self.validators.at(i as u64 + 1))
                        .filter(|p| *p != self.me)
                        .or_else(|| self.validators.iter().find(|p| **p != self.me).copied());
                    self.sync_peer = next;
                    self.request_sync(now, self.sync_target, None, out);
                }
            }
            _ => {}
        }
    }
}

impl Engine for Pbft {
    fn start(&mut self, now: Time, out: &mut Vec<Action>) {
        out.push(Action::SetTimer {
            id: TIMER_POLL,
            after: self.cfg.poll_pending,
        });
        // After a restart, peers may have committed more while this replica was down.
        out.push(Action::NeedBlocks {
            from_height: self.committed.height + 1,
            peer: None,
        });
        if let Mode::ViewChange { target } = self.mode {
            // Restarted during a view change: announce it again.
            self.mode = Mode::Normal;
            self.streak = self.streak.saturating_sub(1);
            self.start_view_change(now, target, out);
        } else {
            self.maybe_propose(out);
        }
    }

    fn handle(&mut self, now: Time, event: Event, out: &mut Vec<Action>) {
        match event {
            Event::Message { from, bytes } => {
                if !self.validators.contains(&from) {
                    return self.count("rejected_not_validator");
                }
                let Some(wire) = Wire::decode(&bytes) else {
                    return self.count("rejected_malformed");
                };
                match wire {
                    Wire::PrePrepare { vote, block } => {
                        self.on_pre_prepare(now, from, vote, block, out)
                    }
                    Wire::Prepare(v) | Wire::Commit(v) => self.on_vote(now, from, v, out),
                    Wire::Checkpoint(c) => self.on_checkpoint(now, from, c, out),
                    Wire::ViewChange { view_change, block } => {
                        self.on_view_change(now, from, view_change, block, out)
                    }
                    Wire::NewView { new_view, block } => {
                        self.on_new_view(now, from, new_view, block, out)
                    }
                }
            }
            Event::TimerFired(id) => self.on_timer(now, id, out),
            Event::Transactions { txs, hashes } => {
                if self.is_primary() {
                    self.awaiting_txs = false;
                    if self.accepted.is_some() {
                        return;
                    }
                    if txs.is_empty() {
                        out.push(Action::SetTimer {
                            id: TIMER_BATCH,
                            after: self.cfg.batch_poll,
                        });
                    } else {
                        self.propose(now, txs, &hashes, out);
                    }
                } else {
                    self.pending_work = !txs.is_empty();
                    if self.pending_work {
                        self.arm_progress(now, out);
                    } else if self.accepted.is_none() && self.progress_deadline.take().is_some() {
                        // Nothing is waiting any more: no reason to suspect the primary.
                        out.push(Action::CancelTimer(TIMER_PROGRESS));
                    }
                }
            }
            Event::BlockExecuted { height, state_root } => {
                self.on_executed(now, height, state_root, out)
            }
            Event::SyncedBlock { block, certificate } => {
                self.on_synced(now, block, certificate, out)
            }
            Event::WorkFound { .. } => {}
        }
    }

    fn status(&self) -> EngineStatus {
        let mut extra = BTreeMap::new();
        extra.insert(
            "mode".to_owned(),
            match self.mode {
                Mode::Normal => "normal".to_owned(),
                Mode::ViewChange { target } => format!("view-change to {target}"),
            },
        );
        extra.insert("stable_checkpoint".to_owned(), self.stable.to_string());
        extra.insert("quorum".to_owned(), self.quorum.to_string());
        EngineStatus {
            engine: "pbft",
            height: self.committed.height,
            view: self.view,
            leader: Some(self.primary(self.view)),
            leads: self.is_primary(),
            extra,
            counters: self.counters.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use medchain_consensus::conformance::{genesis, validator_key, CHAIN};
    use medchain_consensus::{ChainTip, VerifyAll};

    /// A replica restarted after it prepared gets its prepared proof back with the block: from
    /// the proof record and the ledger's candidate (written together), or from the record of
    /// earlier versions that held the block itself; never with a block other than the proof's.
    #[test]
    fn a_restarted_replica_restores_its_prepared_proof_with_the_candidate_block() {
        let keys: Vec<SecretKey> = (0..4).map(validator_key).collect();
        let validators = ValidatorSet::new(keys.iter().map(SecretKey::public)).unwrap();
        let g = genesis(&validators);
        let block_with = |n: u64| {
            let client = SecretKey::from_seed([9; 32]);
            let tx = Transaction::signed(CHAIN, "noop", vec![n as u8; 40], n, &client);
            Block::build(
                1,
                g.hash(),
                0,
                Hash::ZERO,
                1_000,
                validators.at(0),
                vec![],
                vec![tx],
            )
        };
        let (block, other) = (block_with(1), block_with(2));
        let vote = |phase, i: usize, seq| {
            let body = Vote {
                phase,
                view: 0,
                seq,
                digest: block.hash(),
            };
            Signed::sign(body, &keys[i], CHAIN)
        };
        let proof_for = |seq| PreparedProof {
            pre_prepare: vote(Phase::PrePrepare, 0, seq),
            prepares: vec![vote(Phase::Prepare, 1, seq), vote(Phase::Prepare, 2, seq)],
        };
        let restored = |records: Vec<(&[u8], Vec<u8>)>, candidate: Option<Block>| {
            let ctx = EngineContext {
                chain_id: CHAIN.into(),
                key: keys[3].clone(),
                validators: validators.clone(),
                tip: ChainTip {
                    header: g.header.clone(),
                    certificate: Certificate::default(),
                    state_root: Hash::ZERO,
                },
                records: records.into_iter().map(|(k, v)| (k.to_vec(), v)).collect(),
                candidate,
                verifier: Arc::new(VerifyAll {
                    chain_id: CHAIN.into(),
                }),
            };
            Pbft::new(ctx, PbftConfig::default()).prepared
        };
        let proof = proof_for(1);
        let record = (RECORD_PREPARED_PROOF, codec::encode(&proof));
        assert_eq!(
            restored(vec![record.clone()], Some(block.clone())),
            Some((proof.clone(), Arc::new(block.clone())))
        );
        // A candidate other than the proof's block is not taken for it.
        assert_eq!(restored(vec![record.clone()], Some(other)), None);
        assert_eq!(restored(vec![record], None), None);
        // A proof for another height is stale.
        let stale = (RECORD_PREPARED_PROOF, codec::encode(&proof_for(2)));
        assert_eq!(restored(vec![stale], Some(block.clone())), None);
        // The record of earlier versions, block included.
        let legacy = PreparedRecord {
            proof: proof.clone(),
            block: block.clone(),
        };
        assert_eq!(
            restored(vec![(RECORD_PREPARED, codec::encode(&legacy))], None),
            Some((proof, Arc::new(block)))
        );
    }
}
