//! The conformance suite every engine passes: a lockstep harness over a perfect network (no
//! faults; the simulator does faults) and the checks of the engine contract.
//!
//! An engine crate calls [`check_engine`] from a test with a factory that builds its engine from
//! an [`EngineContext`]. The harness executes blocks with a stand-in executor whose state root is
//! `SHA-256(previous root || block hash)`, answers transaction and block requests from a shared
//! pool and the longest chain, and solves proof-of-work by brute force with [`work_hash`].

use crate::{
    Action, ChainTip, Engine, EngineContext, Event, Time, TimerId, ValidatorSet, VerifyAll,
};
use medchain_types::{sha256, Block, Certificate, Hash, PublicKey, SecretKey, Transaction};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

/// Builds an engine for one validator.
pub type Factory<'a> = &'a dyn Fn(EngineContext) -> Box<dyn Engine>;

/// The chain id of conformance runs.
pub const CHAIN: &str = "conformance";

pub use crate::work_hash;

/// The genesis block every run starts from.
pub fn genesis(validators: &ValidatorSet) -> Block {
    let seal = medchain_types::codec::encode(&validators.iter().collect::<Vec<_>>());
    Block::build(
        0,
        Hash::ZERO,
        0,
        Hash::ZERO,
        0,
        PublicKey([0; 32]),
        seal,
        vec![],
    )
}

/// Keys of validator `i` in conformance and simulation runs.
pub fn validator_key(i: usize) -> SecretKey {
    SecretKey::from_seed(sha256(format!("medchain validator {i}").as_bytes()).0)
}

/// A signed `noop` transaction numbered `i`.
pub fn test_tx(i: u64) -> Transaction {
    let client = SecretKey::from_seed([0xc1; 32]);
    Transaction::signed(CHAIN, "noop", i.to_le_bytes().to_vec(), i, &client)
}

struct Node {
    key: PublicKey,
    engine: Box<dyn Engine>,
    chain: Vec<(Block, Certificate)>,
    root: Hash,
    records: BTreeMap<Vec<u8>, Vec<u8>>,
    /// The block of the last [`Action::PersistCandidate`] (kept, like a ledger, over crashes).
    candidate: Option<Block>,
    timers: BTreeMap<TimerId, Time>,
    work: Option<(medchain_types::Header, Hash)>,
    up: bool,
}

/// Lockstep harness: instant delivery, virtual time that jumps to the next timer.
pub struct Harness<'a> {
    factory: Factory<'a>,
    validators: ValidatorSet,
    keys: Vec<SecretKey>,
    nodes: Vec<Node>,
    now: Time,
    queue: VecDeque<(usize, Event)>,
    pool: Vec<Transaction>,
    /// Every action of every node, in order, for determinism checks.
    pub trace: Vec<String>,
    /// Every message sent (with its sender), in order, once [`Harness::record_messages`] asked
    /// for them.
    messages: Option<Vec<(PublicKey, Vec<u8>)>>,
}

impl std::fmt::Debug for Harness<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Harness({} nodes at t={})", self.nodes.len(), self.now)
    }
}

impl<'a> Harness<'a> {
    /// `n` validators running engines from `factory`.
    pub fn new(n: usize, factory: Factory<'a>) -> Harness<'a> {
        let keys: Vec<SecretKey> = (0..n).map(validator_key).collect();
        let validators =
            ValidatorSet::new(keys.iter().map(SecretKey::public)).expect("distinct keys");
        let g = genesis(&validators);
        let mut h = Harness {
            factory,
            validators,
            keys,
            nodes: Vec::new(),
            now: 1_000,
            queue: VecDeque::new(),
            pool: Vec::new(),
            trace: Vec::new(),
            messages: None,
        };
        for i in 0..n {
            let node = Node {
                key: h.keys[i].public(),
                engine: h.build(
                    i,
                    &[(g.clone(), Certificate::default())],
                    BTreeMap::new(),
                    None,
                ),
                chain: vec![(g.clone(), Certificate::default())],
                root: Hash::ZERO,
                records: BTreeMap::new(),
                candidate: None,
                timers: BTreeMap::new(),
                work: None,
                up: true,
            };
            h.nodes.push(node);
        }
        for i in 0..n {
            h.start(i);
        }
        h
    }

    fn build(
        &self,
        i: usize,
        chain: &[(Block, Certificate)],
        records: BTreeMap<Vec<u8>, Vec<u8>>,
        candidate: Option<Block>,
    ) -> Box<dyn Engine> {
        let (block, cert) = chain.last().expect("genesis at least");
        // As a ledger: the candidate is returned only while it is for the next height.
        let candidate = candidate.filter(|c| c.header.height == block.header.height + 1);
        let root = chain
            .iter()
            .skip(1)
            .fold(Hash::ZERO, |r, (b, _)| next_root(&r, &b.hash()));
        (self.factory)(EngineContext {
            chain_id: CHAIN.into(),
            key: self.keys[i].clone(),
            validators: self.validators.clone(),
            tip: ChainTip {
                header: block.header.clone(),
                certificate: cert.clone(),
                state_root: root,
            },
            records,
            candidate,
            verifier: Arc::new(VerifyAll {
                chain_id: CHAIN.into(),
            }),
        })
    }

    fn start(&mut self, i: usize) {
        let mut out = Vec::new();
        self.nodes[i].engine.start(self.now, &mut out);
        self.apply(i, out);
    }

    /// Adds transactions to the shared pool.
    pub fn submit(&mut self, txs: impl IntoIterator<Item = Transaction>) {
        self.pool.extend(txs);
    }

    /// Delivers a raw message to node `to`, as if `from` sent it.
    pub fn inject(&mut self, to: usize, from: PublicKey, bytes: Vec<u8>) {
        self.queue.push_back((to, Event::Message { from, bytes }));
    }

    /// Node `i`'s engine status.
    pub fn status(&self, i: usize) -> crate::EngineStatus {
        self.nodes[i].engine.status()
    }

    /// The committed chain of node `i` (genesis first).
    pub fn chain(&self, i: usize) -> &[(Block, Certificate)] {
        &self.nodes[i].chain
    }

    /// Stops node `i` (its ledger and persisted records survive).
    pub fn crash(&mut self, i: usize) {
        self.nodes[i].up = false;
        self.nodes[i].timers.clear();
        self.nodes[i].work = None;
        self.queue.retain(|(to, _)| *to != i);
    }

    /// Restarts node `i` from its ledger and persisted records.
    pub fn restart(&mut self, i: usize) {
        let engine = self.build(
            i,
            &self.nodes[i].chain.clone(),
            self.nodes[i].records.clone(),
            self.nodes[i].candidate.clone(),
        );
        self.nodes[i].engine = engine;
        self.nodes[i].up = true;
        self.start(i);
    }

    /// Records every message sent from now on (the engines' encodings, for a fuzzer's seeds).
    pub fn record_messages(&mut self) {
        self.messages.get_or_insert_with(Vec::new);
    }

    /// The messages recorded since [`Harness::record_messages`] with their senders, in the
    /// order they were sent.
    pub fn messages(&self) -> &[(PublicKey, Vec<u8>)] {
        self.messages.as_deref().unwrap_or_default()
    }

    fn apply(&mut self, i: usize, actions: Vec<Action>) {
        for a in actions {
            self.trace.push(format!("{i} {a:?}"));
            if let (Some(m), Action::Send { msg, .. } | Action::Broadcast(msg)) =
                (self.messages.as_mut(), &a)
            {
                m.push((self.nodes[i].key, msg.clone()));
            }
            match a {
                Action::Send { to, msg } => {
                    if let Some(j) = self.index(&to) {
                        if self.nodes[j].up {
                            self.queue.push_back((
                                j,
                                Event::Message {
                                    from: self.nodes[i].key,
                                    bytes: msg,
                                },
                            ));
                        }
                    }
                }
                Action::Broadcast(msg) => {
                    for j in 0..self.nodes.len() {
                        if j != i && self.nodes[j].up {
                            self.queue.push_back((
                                j,
                                Event::Message {
                                    from: self.nodes[i].key,
                                    bytes: msg.clone(),
                                },
                            ));
                        }
                    }
                }
                Action::SetTimer { id, after } => {
                    self.nodes[i]
                        .timers
                        .insert(id, self.now + after.as_millis() as u64);
                }
                Action::CancelTimer(id) => {
                    self.nodes[i].timers.remove(&id);
                }
                Action::Persist { key, value } => match value {
                    Some(v) => {
                        self.nodes[i].records.insert(key, v);
                    }
                    None => {
                        self.nodes[i].records.remove(&key);
                    }
                },
                Action::PersistCandidate { key, value, block } => {
                    let node = &mut self.nodes[i];
                    let tip = &node.chain.last().expect("genesis").0;
                    assert_eq!(
                        block.header.height,
                        tip.header.height + 1,
                        "node {i} stored a candidate that is not for the next height"
                    );
                    node.records.insert(key, value);
                    node.candidate = Some(Arc::unwrap_or_clone(block));
                }
                Action::Commit { block, certificate } => {
                    let node = &mut self.nodes[i];
                    let tip = &node.chain.last().expect("genesis").0;
                    assert_eq!(
                        block.header.height,
                        tip.header.height + 1,
                        "node {i} committed out of order"
                    );
                    assert_eq!(
                        block.header.parent,
                        tip.hash(),
                        "node {i} committed a block that does not extend its chain"
                    );
                    node.root = next_root(&node.root, &block.hash());
                    let height = block.header.height;
                    let committed: BTreeSet<Hash> =
                        block.txs.iter().map(Transaction::hash).collect();
                    node.chain.push((block, certificate));
                    self.pool.retain(|t| !committed.contains(&t.hash()));
                    let root = self.nodes[i].root;
                    self.queue.push_back((
                        i,
                        Event::BlockExecuted {
                            height,
                            state_root: root,
                        },
                    ));
                }
                Action::StartWork { header, target } => self.nodes[i].work = Some((header, target)),
                Action::StopWork => self.nodes[i].work = None,
                Action::NeedTransactions { max } => {
                    let txs: Vec<Transaction> = self.pool.iter().take(max).cloned().collect();
                    let hashes = txs.iter().map(Transaction::hash).collect();
                    self.queue
                        .push_back((i, Event::Transactions { txs, hashes }));
                }
                Action::NeedBlocks { from_height, .. } => {
                    let best = (0..self.nodes.len())
                        .max_by_key(|&j| self.nodes[j].chain.len())
                        .expect("nodes");
                    for (b, c) in self.nodes[best].chain.iter().skip(from_height as usize) {
                        self.queue.push_back((
                            i,
                            Event::SyncedBlock {
                                block: b.clone(),
                                certificate: c.clone(),
                            },
                        ));
                    }
                }
            }
        }
    }

    fn index(&self, key: &PublicKey) -> Option<usize> {
        self.nodes.iter().position(|n| n.key == *key)
    }

    /// Runs until `done` holds or `limit_ms` of virtual time pass; returns whether `done` held.
    pub fn run_until(&mut self, limit_ms: Time, mut done: impl FnMut(&Harness) -> bool) -> bool {
        let deadline = self.now + limit_ms;
        let mut steps = 0u64;
        while self.now <= deadline {
            if done(self) {
                return true;
            }
            steps += 1;
            assert!(steps < 5_000_000, "harness livelock: too many steps");
            if let Some((i, ev)) = self.queue.pop_front() {
                if self.nodes[i].up {
                    let mut out = Vec::new();
                    self.nodes[i].engine.handle(self.now, ev, &mut out);
                    self.apply(i, out);
                }
                continue;
            }
            // Proof of work: solve the first search by brute force, one at a time.
            if let Some(i) =
                (0..self.nodes.len()).find(|&i| self.nodes[i].up && self.nodes[i].work.is_some())
            {
                let (header, target) = self.nodes[i].work.take().expect("checked");
                let nonce = (0u64..)
                    .find(|n| work_hash(&header, *n) <= target)
                    .expect("a nonce exists");
                self.now += 50;
                self.queue.push_back((
                    i,
                    Event::WorkFound {
                        header_hash: header.hash(),
                        nonce,
                    },
                ));
                continue;
            }
            // Advance to the next timer.
            let next = self
                .nodes
                .iter()
                .enumerate()
                .filter(|(_, n)| n.up)
                .flat_map(|(i, n)| n.timers.iter().map(move |(id, t)| (*t, i, *id)))
                .min();
            match next {
                Some((t, i, id)) => {
                    self.now = self.now.max(t);
                    self.nodes[i].timers.remove(&id);
                    self.queue.push_back((i, Event::TimerFired(id)));
                }
                None => return done(self),
            }
        }
        done(self)
    }
}

fn next_root(prev: &Hash, block: &Hash) -> Hash {
    sha256(&[prev.as_bytes().as_slice(), block.as_bytes()].concat())
}

fn committed_txs(chain: &[(Block, Certificate)]) -> Vec<Hash> {
    chain
        .iter()
        .flat_map(|(b, _)| b.txs.iter().map(Transaction::hash))
        .collect()
}

/// Number of transactions in a chain (cheap: no hashing).
fn tx_count(chain: &[(Block, Certificate)]) -> usize {
    chain.iter().map(|(b, _)| b.txs.len()).sum()
}

/// Checks that all nodes' chains agree where they overlap, link up, and that `expected` are each
/// committed exactly once.
pub fn check_agreement(h: &Harness, expected: &[Transaction]) {
    let longest = (0..h.nodes.len())
        .max_by_key(|&i| h.chain(i).len())
        .expect("nodes");
    for i in 0..h.nodes.len() {
        let (a, b) = (h.chain(i), h.chain(longest));
        for (height, ((ba, _), (bb, _))) in a.iter().zip(b).enumerate() {
            assert_eq!(
                ba.hash(),
                bb.hash(),
                "nodes {i} and {longest} disagree at height {height}"
            );
        }
        for w in a.windows(2) {
            assert_eq!(
                w[1].0.header.parent,
                w[0].0.hash(),
                "node {i}: broken hash chain"
            );
        }
    }
    let txs = committed_txs(h.chain(longest));
    let unique: BTreeSet<&Hash> = txs.iter().collect();
    assert_eq!(unique.len(), txs.len(), "a transaction was committed twice");
    for t in expected {
        assert!(
            unique.contains(&t.hash()),
            "transaction {} was never committed",
            t.hash()
        );
    }
}

/// Submits `txs` in waves of `wave`, running until each wave is committed at `node`.
fn feed(h: &mut Harness, txs: &[Transaction], wave: usize, node: usize, what: &str) {
    let base = tx_count(h.chain(node));
    for (k, chunk) in txs.chunks(wave).enumerate() {
        h.submit(chunk.to_vec());
        let want = base + ((k + 1) * wave).min(txs.len());
        assert!(
            h.run_until(60_000, |h| tx_count(h.chain(node)) >= want),
            "{what}: wave {k} was not committed at node {node} within 60 s"
        );
    }
}

/// Runs the whole suite against an engine. Panics with a description of the first failure.
pub fn check_engine(factory: Factory<'_>) {
    let txs: Vec<Transaction> = (0..120).map(test_tx).collect();
    let all_in = |h: &Harness| (0..4).all(|i| tx_count(h.chain(i)) >= txs.len());

    // 1. Four validators commit every transaction exactly once and agree (20 waves: 20+ blocks).
    let mut h = Harness::new(4, factory);
    feed(&mut h, &txs, 6, 0, "agreement");
    assert!(
        h.run_until(60_000, all_in),
        "every validator commits every block"
    );
    check_agreement(&h, &txs);
    assert!(h.chain(0).len() > 20, "waves make separate blocks");
    let trace_a = std::mem::take(&mut h.trace);

    // 2. Determinism: the same inputs give the same actions.
    let mut h2 = Harness::new(4, factory);
    feed(&mut h2, &txs, 6, 0, "determinism");
    assert!(h2.run_until(60_000, all_in));
    assert!(
        trace_a == h2.trace,
        "the engine is not deterministic: two identical runs produced different actions"
    );

    // 3. Garbage from validators and strangers is harmless.
    let mut h3 = Harness::new(4, factory);
    let stranger = SecretKey::from_seed([0xee; 32]).public();
    let mut rng_state = 0x9e3779b97f4a7c15u64;
    for k in 0..400 {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        let len = (rng_state % 300) as usize;
        let bytes: Vec<u8> = (0..len)
            .map(|j| (rng_state >> (j % 56)) as u8 ^ j as u8)
            .collect();
        let from = if k % 3 == 0 {
            stranger
        } else {
            h3.nodes[k % 4].key
        };
        h3.inject(k % 4, from, bytes);
    }
    feed(&mut h3, &txs, 6, 0, "garbage");
    assert!(
        h3.run_until(60_000, all_in),
        "garbage messages stopped progress"
    );
    check_agreement(&h3, &txs);

    // 4. A validator that restarts from its ledger and persisted records rejoins and catches up.
    let mut h4 = Harness::new(4, factory);
    feed(&mut h4, &txs[..40], 5, 0, "before the crash");
    h4.crash(3);
    feed(&mut h4, &txs[40..80], 5, 0, "3 of 4 validators");
    h4.restart(3);
    feed(&mut h4, &txs[80..], 5, 0, "after the restart");
    assert!(
        h4.run_until(60_000, all_in),
        "the restarted validator caught up and everyone committed everything"
    );
    check_agreement(&h4, &txs);
}
