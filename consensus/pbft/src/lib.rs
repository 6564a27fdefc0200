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

mod checkpoints;
mod messages;
mod normal;
mod sync;
mod view_change;

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

    /// `leads` (the fact a node runtime holds client transactions by) is true for the primary
    /// of the view in normal operation only: not for backups, not once the primary starts a
    /// view change, and for the next primary once it enters the next view.
    #[test]
    fn only_the_primary_in_normal_operation_leads() {
        let keys: Vec<SecretKey> = (0..4).map(validator_key).collect();
        let validators = ValidatorSet::new(keys.iter().map(SecretKey::public)).unwrap();
        let g = genesis(&validators);
        let engine = |key: &SecretKey| {
            Pbft::new(
                EngineContext {
                    chain_id: CHAIN.into(),
                    key: key.clone(),
                    validators: validators.clone(),
                    tip: ChainTip {
                        header: g.header.clone(),
                        certificate: Certificate::default(),
                        state_root: Hash::ZERO,
                    },
                    records: BTreeMap::new(),
                    candidate: None,
                    verifier: Arc::new(VerifyAll {
                        chain_id: CHAIN.into(),
                    }),
                },
                PbftConfig::default(),
            )
        };
        let key_of = |pk: PublicKey| keys.iter().find(|k| k.public() == pk).unwrap();
        let mut primary = engine(key_of(validators.at(0)));
        let backup = engine(key_of(validators.at(1)));
        assert!(primary.status().leads);
        assert!(!backup.status().leads);
        let mut out = Vec::new();
        primary.start_view_change(0, 1, &mut out);
        assert!(
            !primary.status().leads,
            "a primary changing views does not lead"
        );
        let mut next = engine(key_of(validators.at(1)));
        next.enter_view(1, 0, &mut out);
        assert!(next.status().leads, "the primary of the new view leads");
        let mut other = engine(key_of(validators.at(2)));
        other.enter_view(1, 0, &mut out);
        assert!(!other.status().leads);
    }
}
