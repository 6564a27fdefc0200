//! The consensus contract: an [`Engine`] is a deterministic state machine that turns [`Event`]s
//! into [`Action`]s. It never does I/O, never reads a clock, never sleeps and never draws
//! unseeded randomness: time comes in with every call and randomness from seeds in its
//! configuration. The same engine value runs in the node (over QUIC and RocksDB) and in the
//! simulator (over a simulated network and an in-memory ledger).
//!
//! The runtime executes a call's actions in order. [`Action::Persist`] (and
//! [`Action::PersistCandidate`]) is a barrier: nothing after it is sent until it is durable
//! (raft-rs's rule), so a restarted replica never votes twice. [`Action::Commit`] means
//! *final*: the ledger only ever sees final blocks.

pub mod conformance;
mod validators;

pub use validators::{ValidatorSet, ValidatorSetError};

use medchain_types::{Block, BlockError, Certificate, Hash, Header, SecretKey, Transaction};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Proof-of-work hash of a header template with a nonce: double SHA-256 of the header's encoding
/// followed by the nonce (little-endian). The node's miners, the simulator and the engine's
/// checks all use this one function.
pub fn work_hash(header: &Header, nonce: u64) -> Hash {
    let mut bytes = medchain_types::codec::encode(header);
    bytes.extend_from_slice(&nonce.to_le_bytes());
    medchain_types::sha256(medchain_types::sha256(&bytes).as_bytes())
}

/// Milliseconds: since the Unix epoch in the node, since an arbitrary origin in the simulator.
pub type Time = u64;

/// An engine-chosen timer identity. Setting a timer whose id is already set replaces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimerId(pub u64);

/// What happens to an engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A message from another validator (authenticated by the transport).
    Message {
        /// The sender's node key.
        from: medchain_types::PublicKey,
        /// The engine's own encoding.
        bytes: Vec<u8>,
    },
    /// A timer set by [`Action::SetTimer`] expired. May arrive after it was replaced or
    /// cancelled (the runtime is asynchronous); engines check their own deadlines.
    TimerFired(TimerId),
    /// The runtime's answer to [`Action::NeedTransactions`]: verified, not yet committed
    /// transactions, oldest first (possibly none). They stay in the mempool until committed.
    Transactions {
        /// The transactions.
        txs: Vec<Transaction>,
        /// Their hashes, in the same order: the runtime learnt them at admission, so an engine
        /// builds its block with [`Block::build_hashed`] instead of hashing every transaction
        /// again.
        hashes: Vec<Hash>,
    },
    /// The runtime executed the final block at `height`; `state_root` is the state after it.
    BlockExecuted {
        /// The block's height.
        height: u64,
        /// The state root after executing it.
        state_root: Hash,
    },
    /// Proof-of-work search found a nonce for the header given in [`Action::StartWork`].
    WorkFound {
        /// Hash of the header the work was for.
        header_hash: Hash,
        /// The nonce.
        nonce: u64,
    },
    /// A block the runtime fetched for [`Action::NeedBlocks`], with the certificate it was
    /// stored with. The engine checks the certificate before committing it.
    SyncedBlock {
        /// The block.
        block: Block,
        /// Its certificate.
        certificate: Certificate,
    },
}

/// What an engine asks its runtime to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send a message to one validator.
    Send {
        /// The recipient's node key.
        to: medchain_types::PublicKey,
        /// The engine's encoding.
        msg: Vec<u8>,
    },
    /// Send a message to every other validator.
    Broadcast(Vec<u8>),
    /// Fire [`Event::TimerFired`] after `after`.
    SetTimer {
        /// Which timer.
        id: TimerId,
        /// Delay.
        after: Duration,
    },
    /// Cancel a timer.
    CancelTimer(TimerId),
    /// Store a record durably (`None` deletes it) before executing any later action.
    Persist {
        /// Engine-chosen key.
        key: Vec<u8>,
        /// New value, or `None` to delete.
        value: Option<Vec<u8>>,
    },
    /// Like [`Action::Persist`] (a barrier), and in the same atomic write: store `block`, the
    /// candidate for the next height (the ledger's tip + 1), replacing any earlier candidate.
    /// A record that needs a not-yet-final block (a PBFT prepared proof) names it by hash
    /// instead of holding a copy, so the block is written once: when the same block becomes
    /// final, [`Action::Commit`] keeps the stored copy. After a restart the candidate comes
    /// back in [`EngineContext::candidate`].
    PersistCandidate {
        /// Engine-chosen key.
        key: Vec<u8>,
        /// New value.
        value: Vec<u8>,
        /// The block, at the ledger's tip height + 1. Shared: the engine keeps it too (a
        /// block of a saturated cluster is megabytes and thousands of allocations to copy).
        block: Arc<Block>,
    },
    /// A block is final: execute it and append it to the ledger, then report
    /// [`Event::BlockExecuted`]. Blocks are committed in height order, each exactly once.
    Commit {
        /// The block.
        block: Block,
        /// The proof of finality stored with it.
        certificate: Certificate,
    },
    /// Start searching nonces for `header` (proof of work), replacing any current search.
    StartWork {
        /// The header to seal.
        header: Header,
        /// The hash must be at most this.
        target: Hash,
    },
    /// Stop searching.
    StopWork,
    /// Ask for up to `max` transactions (answered with [`Event::Transactions`]).
    NeedTransactions {
        /// Most transactions wanted.
        max: usize,
    },
    /// Fetch final blocks from `from_height` up to the peer's tip, preferably from `peer`, and
    /// deliver them as [`Event::SyncedBlock`] in height order. A peer with nothing newer sends
    /// nothing.
    NeedBlocks {
        /// First height wanted.
        from_height: u64,
        /// A peer known to have them.
        peer: Option<medchain_types::PublicKey>,
    },
}

/// The last block in the ledger when the engine starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainTip {
    /// The header.
    pub header: Header,
    /// Its certificate.
    pub certificate: Certificate,
    /// The state root after executing it.
    pub state_root: Hash,
}

/// Checks the transactions of a proposed block (signatures, chain id). The node's verifier skips
/// transactions its mempool already verified; the result must not depend on that.
pub trait TxVerifier: Send + Sync {
    /// `Ok` if every transaction may be included. `tx_hashes` are the block's transaction
    /// hashes in order, as [`Block::check_structure`] returned them (so they are not computed
    /// twice).
    fn verify_block(&self, block: &Block, tx_hashes: &[Hash]) -> Result<(), BlockError>;
}

/// Verifies every signature of the block (batched).
#[derive(Debug, Clone)]
pub struct VerifyAll {
    /// The chain id transactions must carry.
    pub chain_id: String,
}

impl TxVerifier for VerifyAll {
    fn verify_block(&self, block: &Block, _tx_hashes: &[Hash]) -> Result<(), BlockError> {
        block.verify_signatures(&self.chain_id)
    }
}

/// What every engine is built from.
#[derive(Clone)]
pub struct EngineContext {
    /// The chain id (signatures are domain-separated by it).
    pub chain_id: String,
    /// This node's key (engines sign their messages with it).
    pub key: SecretKey,
    /// The validators.
    pub validators: ValidatorSet,
    /// The ledger's last block (the genesis block at least).
    pub tip: ChainTip,
    /// Every record the engine persisted before a restart, by key.
    pub records: BTreeMap<Vec<u8>, Vec<u8>>,
    /// The last block stored by [`Action::PersistCandidate`], if it is for `tip` + 1.
    pub candidate: Option<Block>,
    /// Checks transactions in proposed blocks.
    pub verifier: Arc<dyn TxVerifier>,
}

impl std::fmt::Debug for EngineContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineContext")
            .field("chain_id", &self.chain_id)
            .field("me", &self.key.public())
            .field("validators", &self.validators.len())
            .field("tip", &self.tip.header.height)
            .finish()
    }
}

/// An engine's view of itself, for status pages and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineStatus {
    /// `pbft`, `pow` or `pos`.
    pub engine: &'static str,
    /// Last final height.
    pub height: u64,
    /// View (PBFT), epoch (PoS) or 0.
    pub view: u64,
    /// Who proposes next, if known.
    pub leader: Option<medchain_types::PublicKey>,
    /// This node is a stable leader in normal operation: it proposes every block until the
    /// engine changes leader (a PBFT primary outside a view change). A node runtime may then
    /// keep its own clients' transactions for its proposals instead of gossiping them first.
    /// Never true for rotating proposers (proof of stake) or miners (proof of work).
    pub leads: bool,
    /// Engine-specific figures (difficulty, slot, stable checkpoint, ...).
    pub extra: BTreeMap<String, String>,
    /// Counters: view changes, rejected messages by reason, ...
    pub counters: BTreeMap<String, u64>,
}

/// A consensus engine (see the crate docs for the contract).
pub trait Engine: Send {
    /// Called once, before any event.
    fn start(&mut self, now: Time, out: &mut Vec<Action>);
    /// Handles one event.
    fn handle(&mut self, now: Time, event: Event, out: &mut Vec<Action>);
    /// The engine's view of itself.
    fn status(&self) -> EngineStatus;
}
