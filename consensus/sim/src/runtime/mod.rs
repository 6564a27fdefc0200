//! One simulated run: the world (virtual clock, event queue, network, fault schedule), the
//! nodes (engine, in-memory ledger, executor, mempool, persisted records), and the invariants.
//!
//! Each node gets the same runtime services as in the real node: messages, timers, durable
//! records, execution of committed blocks, transactions from its mempool, and block fetching
//! from peers (over the simulated network, so it suffers the same faults).

mod actions;
mod deliver;
use medchain_chaincode::builtin::{Kv, KvOp};
use medchain_consensus::conformance::{genesis, validator_key, CHAIN};
use medchain_consensus::{
    Action, ChainTip, Engine, EngineContext, Event, TimerId, ValidatorSet, VerifyAll,
};
use medchain_ledger::{Executor, Ledger};
use medchain_pbft::{Pbft, PbftConfig};
use medchain_pos::{Pos, PosConfig};
use medchain_pow::{Pow, PowConfig};
use medchain_types::{Block, Certificate, Hash, PublicKey, SecretKey, Transaction, TxStatus};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

/// Which engine to simulate, with its parameters.
#[derive(Debug, Clone)]
pub enum EngineKind {
    /// PBFT.
    Pbft(PbftConfig),
    /// Proof of work.
    Pow(PowConfig),
    /// Proof of stake.
    Pos(PosConfig),
}

impl EngineKind {
    /// The engine's name.
    pub fn name(&self) -> &'static str {
        match self {
            EngineKind::Pbft(_) => "pbft",
            EngineKind::Pow(_) => "pow",
            EngineKind::Pos(_) => "pos",
        }
    }

    /// A one-line description of an engine message, for traces.
    fn describe(&self, bytes: &[u8]) -> String {
        match self {
            EngineKind::Pbft(_) => match medchain_pbft::Wire::decode(bytes) {
                Some(medchain_pbft::Wire::PrePrepare { vote, block }) => {
                    format!(
                        "PrePrepare v{} n{} {} txs={}",
                        vote.body.view,
                        vote.body.seq,
                        short(&vote.body.digest),
                        block.txs.len()
                    )
                }
                Some(medchain_pbft::Wire::Prepare(v)) => format!(
                    "Prepare v{} n{} {}",
                    v.body.view,
                    v.body.seq,
                    short(&v.body.digest)
                ),
                Some(medchain_pbft::Wire::Commit(v)) => format!(
                    "Commit v{} n{} {}",
                    v.body.view,
                    v.body.seq,
                    short(&v.body.digest)
                ),
                Some(medchain_pbft::Wire::Checkpoint(c)) => format!("Checkpoint n{}", c.body.seq),
                Some(medchain_pbft::Wire::ViewChange { view_change, .. }) => format!(
                    "ViewChange to v{} committed {} prepared {:?}",
                    view_change.body.view,
                    view_change.body.committed.header.height,
                    view_change.body.prepared.as_ref().map(|p| (
                        p.pre_prepare.body.view,
                        p.pre_prepare.body.seq,
                        short(&p.pre_prepare.body.digest)
                    ))
                ),
                Some(medchain_pbft::Wire::NewView { new_view, .. }) => format!(
                    "NewView v{} vcs={} pp={:?}",
                    new_view.body.view,
                    new_view.body.view_changes.len(),
                    new_view
                        .body
                        .pre_prepare
                        .as_ref()
                        .map(|p| (p.body.seq, short(&p.body.digest)))
                ),
                None => "garbage".into(),
            },
            EngineKind::Pow(_) => match medchain_pow::Wire::decode(bytes) {
                Some(medchain_pow::Wire::Block(b)) => format!(
                    "Block n{} {} parent {} txs={}",
                    b.header.height,
                    short(&b.hash()),
                    short(&b.header.parent),
                    b.txs.len()
                ),
                Some(medchain_pow::Wire::Blocks(bs)) => format!(
                    "Blocks {:?}",
                    bs.iter().map(|b| b.header.height).collect::<Vec<_>>()
                ),
                Some(medchain_pow::Wire::GetBlocks { from_height }) => {
                    format!("GetBlocks from {from_height}")
                }
                Some(medchain_pow::Wire::Tip { height, hash }) => {
                    format!("Tip n{height} {}", short(&hash))
                }
                None => "garbage".into(),
            },
            EngineKind::Pos(_) => match medchain_pos::Wire::decode(bytes) {
                Some(medchain_pos::Wire::Proposal { proposal, block }) => format!(
                    "Proposal h{} r{} vr{:?} {} txs={}",
                    proposal.body.height,
                    proposal.body.round,
                    proposal.body.valid_round,
                    short(&proposal.body.block),
                    block.txs.len()
                ),
                Some(medchain_pos::Wire::Vote(v)) => format!(
                    "{:?} h{} r{} {}",
                    v.body.kind,
                    v.body.height,
                    v.body.round,
                    v.body.value.as_ref().map_or("nil".into(), short)
                ),
                None => "garbage".into(),
            },
        }
    }

    fn build(&self, ctx: EngineContext) -> Box<dyn Engine> {
        match self {
            EngineKind::Pbft(cfg) => Box::new(Pbft::new(ctx, cfg.clone())),
            EngineKind::Pow(cfg) => Box::new(Pow::new(ctx, cfg.clone())),
            EngineKind::Pos(cfg) => Box::new(Pos::new(ctx, cfg.clone())),
        }
    }

    /// The engine with the parameters the simulator uses by default.
    pub fn by_name(name: &str) -> Result<EngineKind, String> {
        match name {
            "pbft" => Ok(EngineKind::Pbft(PbftConfig {
                batch_poll: Duration::from_millis(20),
                timeout_view_change: Duration::from_secs(1),
                timeout_view_change_max: Duration::from_secs(4),
                ..PbftConfig::default()
            })),
            // Two-second blocks, six confirmations: finality takes longer than the simulator's
            // longest partition (6 s), as a deployment's k × interval must exceed its outages.
            // The target is easy because the simulator finds real nonces by brute force; solve
            // *times* come from each node's share of the hash power (see `SimConfig`).
            "pow" => Ok(EngineKind::Pow(PowConfig {
                block_interval: Duration::from_secs(2),
                initial_target: PowConfig::target_for_hashes(256),
                max_target: PowConfig::target_for_hashes(16),
                announce: Duration::from_secs(1),
                ..PowConfig::default()
            })),
            // Short slots and 8-height epochs, so a run sees rounds, epochs and stake changes.
            "pos" => Ok(EngineKind::Pos(PosConfig {
                epoch_length: 8,
                timeout_propose: Duration::from_millis(1000),
                timeout_prevote: Duration::from_millis(500),
                timeout_precommit: Duration::from_millis(500),
                timeout_delta: Duration::from_millis(250),
                empty_block_delay: Duration::from_millis(300),
                poll_txs: Duration::from_millis(20),
                rebroadcast: Duration::from_millis(500),
                ..PosConfig::default()
            })),
            other => Err(format!("unknown engine {other:?} (known: pbft, pow, pos)")),
        }
    }
}

fn short(h: &Hash) -> String {
    h.to_hex()[..8].to_owned()
}

fn tracing_enabled() -> bool {
    std::env::var_os("MEDCHAIN_SIM_TRACE").is_some()
}

/// Which faults a run injects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Faults {
    /// Crash nodes (at most f at a time) and restart them.
    pub crash: bool,
    /// Partition the network, sometimes one way.
    pub partition: bool,
    /// Drop messages.
    pub drop: bool,
    /// Duplicate messages.
    pub dup: bool,
    /// Delay some messages further, reordering them.
    pub reorder: bool,
}

impl Faults {
    /// Every fault.
    pub fn all() -> Faults {
        Faults {
            crash: true,
            partition: true,
            drop: true,
            dup: true,
            reorder: true,
        }
    }

    /// Parses `crash,partition,drop,dup,reorder` (any subset, or `none`).
    pub fn parse(list: &str) -> Result<Faults, String> {
        let mut f = Faults::default();
        for word in list.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            match word {
                "crash" => f.crash = true,
                "partition" => f.partition = true,
                "drop" => f.drop = true,
                "dup" => f.dup = true,
                "reorder" => f.reorder = true,
                "all" => f = Faults::all(),
                "none" => {}
                other => return Err(format!("unknown fault {other:?} (known: crash, partition, drop, dup, reorder, all, none)")),
            }
        }
        Ok(f)
    }
}

/// A simulation's settings (all times simulated).
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The engine.
    pub engine: EngineKind,
    /// Validators.
    pub nodes: usize,
    /// Faults to inject.
    pub faults: Faults,
    /// Faults happen in `[0, fault_window)`; then everything heals.
    pub fault_window: Duration,
    /// After healing, blocks must be committed again within this long.
    pub liveness: Duration,
    /// Client transactions per run.
    pub txs: usize,
    /// One-way message latency is uniform in this range.
    pub latency_ms: (u64, u64),
    /// Proof of work: each node's share of the hash power (empty: equal shares). A node with
    /// share `s` solves a search for target `t` after an exponentially distributed time with
    /// mean `block_interval × work(t) / work(initial_target) / s`, so the whole network finds
    /// a block every `block_interval` at the initial difficulty.
    pub hash_power: Vec<f64>,
    /// One node that runs another engine configuration (a Byzantine validator in tests).
    pub byzantine: Option<(usize, EngineKind)>,
    /// Proof of work: a private-chain (double-spend) attack.
    pub attack: Option<Attack>,
}

/// A proof-of-work attacker that mines a private chain from `start_ms` on and releases it once
/// it is heavier than the honest chain and the honest nodes have finalized a block it
/// replaces. Its hash power share is its `hash_power` entry. A `late` honest node is down from
/// just before the attack until after the release, as a node that joins or restarts then would
/// be: it sees both chains and follows the heavier one. The attacker's own commits are not
/// judged (it is the adversary); a late node that finalizes a block other than the honest
/// nodes' final block at that height is the violation the attack aims at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attack {
    /// The attacker's node index.
    pub attacker: usize,
    /// The late honest node's index.
    pub late: usize,
    /// When the attacker goes private.
    pub start_ms: u64,
}

impl SimConfig {
    /// Defaults for `engine` with `nodes` validators and every fault.
    pub fn new(engine: EngineKind, nodes: usize) -> SimConfig {
        SimConfig {
            engine,
            nodes,
            faults: Faults::all(),
            fault_window: Duration::from_secs(30),
            liveness: Duration::from_secs(20),
            txs: 60,
            latency_ms: (1, 30),
            hash_power: Vec::new(),
            byzantine: None,
            attack: None,
        }
    }
}

/// A broken invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// When (simulated milliseconds).
    pub time_ms: u64,
    /// What.
    pub what: String,
}

/// The outcome of one seed.
#[derive(Debug, Clone, Default)]
pub struct RunReport {
    /// The seed.
    pub seed: u64,
    /// Broken invariants (empty for a good run).
    pub violations: Vec<Violation>,
    /// Highest final height reached.
    pub height: u64,
    /// Transactions executed successfully on the final chain.
    pub committed_txs: u64,
    /// Simulated time.
    pub simulated_ms: u64,
    /// Events processed.
    pub events: u64,
    /// When blocks were committed again after the faults healed, if they were.
    pub recovered_after_ms: Option<u64>,
    /// Proof of work: blocks mined at or below the final height.
    pub mined_blocks: u64,
    /// Proof of work: of those, blocks not in the final chain (orphaned/stale).
    pub stale_blocks: u64,
    /// Every node's engine status at the end (default for a node that is down).
    pub statuses: Vec<medchain_consensus::EngineStatus>,
    /// Proof-of-work attack: when the attacker released its private chain, if it did.
    pub attack_released_ms: Option<u64>,
}

enum Payload {
    Consensus(Vec<u8>),
    Txs(Vec<Transaction>),
    BlockRequest { from_height: u64 },
    BlockResponse(Vec<(Block, Certificate)>),
}

enum Item {
    Deliver {
        from: usize,
        to: usize,
        payload: Payload,
    },
    Timer {
        node: usize,
        id: TimerId,
        token: u64,
    },
    Submit(Transaction),
    Crash(usize),
    Restart(usize),
    Partition {
        id: u64,
        pairs: Vec<(usize, usize)>,
    },
    Heal(u64),
    EndOfFaults,
    AttackStart,
    AttackCheck,
    WorkFound {
        node: usize,
        token: u64,
        header: Box<medchain_types::Header>,
        nonce: u64,
    },
}

struct Node {
    key: SecretKey,
    ledger: Ledger,
    engine: Option<Box<dyn Engine>>,
    records: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Verified transactions not yet committed, by arrival.
    mempool: BTreeMap<u64, Transaction>,
    in_mempool: BTreeSet<Hash>,
    timers: BTreeMap<TimerId, u64>,
    /// The current proof-of-work search (its token).
    work: Option<u64>,
    up: bool,
    /// Set when the engine panicked: the node stays down.
    dead: bool,
    committed_height: u64,
}

struct World<'c> {
    cfg: &'c SimConfig,
    rng: ChaCha8Rng,
    now: u64,
    seq: u64,
    queue: BTreeMap<(u64, u64), Item>,
    nodes: Vec<Node>,
    keys: Vec<PublicKey>,
    validators: ValidatorSet,
    executor: Executor,
    blocked: BTreeMap<(usize, usize), u32>,
    partitions: BTreeMap<u64, Vec<(usize, usize)>>,
    faulty: bool,
    drop_rate: f64,
    // Invariants.
    finals: BTreeMap<u64, Hash>,
    roots: BTreeMap<u64, Hash>,
    executed_once: BTreeMap<Hash, u64>,
    violations: Vec<Violation>,
    events: u64,
    healed_at: Option<u64>,
    height_at_heal: u64,
    recovered_after: Option<u64>,
    trace: bool,
    /// Proof of work: every block mined, by height.
    mined: Vec<(u64, Hash)>,
    /// The heaviest tip's height when the attack started (the fork point).
    attack_base: Option<u64>,
    attack_released: Option<u64>,
}

/// Runs one seed.
pub fn run_seed(cfg: &SimConfig, seed: u64) -> RunReport {
    let mut w = World::new(cfg, seed);
    w.schedule_faults_and_clients();
    let end = (cfg.fault_window + cfg.liveness).as_millis() as u64;
    while let Some(((t, _), item)) = w.queue.pop_first() {
        if t > end {
            break;
        }
        w.now = t;
        w.events += 1;
        w.handle(item);
        if !w.violations.is_empty() {
            break; // the first violation is what replays matter for
        }
        if let (Some(healed), None) = (w.healed_at, w.recovered_after) {
            let top = w.finals.keys().next_back().copied().unwrap_or(0);
            if top > w.height_at_heal {
                w.recovered_after = Some(w.now - healed);
            }
        }
    }
    if w.violations.is_empty() && w.recovered_after.is_none() {
        w.violations.push(Violation {
            time_ms: end,
            what: format!(
                "liveness: no block committed within {} s after the faults healed (height stayed {})",
                cfg.liveness.as_secs(),
                w.height_at_heal
            ),
        });
    }
    let top = w.finals.keys().next_back().copied().unwrap_or(0);
    let settled: Vec<&(u64, Hash)> = w.mined.iter().filter(|(h, _)| *h <= top).collect();
    let stale = settled
        .iter()
        .filter(|(h, hash)| w.finals.get(h) != Some(hash))
        .count() as u64;
    let statuses = w
        .nodes
        .iter()
        .map(|n| n.engine.as_ref().map(|e| e.status()).unwrap_or_default())
        .collect();
    RunReport {
        seed,
        statuses,
        attack_released_ms: w.attack_released,
        mined_blocks: settled.len() as u64,
        stale_blocks: stale,
        height: w.finals.keys().next_back().copied().unwrap_or(0),
        committed_txs: w.executed_once.len() as u64,
        simulated_ms: w.now,
        events: w.events,
        recovered_after_ms: w.recovered_after,
        violations: w.violations,
    }
}

impl<'c> World<'c> {
    fn new(cfg: &'c SimConfig, seed: u64) -> World<'c> {
        let keys: Vec<SecretKey> = (0..cfg.nodes).map(validator_key).collect();
        let validators =
            ValidatorSet::new(keys.iter().map(SecretKey::public)).expect("distinct keys");
        let executor = Executor::with_builtins(CHAIN);
        let g = genesis(&validators);
        let nodes = keys
            .iter()
            .map(|k| {
                let ledger = Ledger::open_in_memory(CHAIN).expect("in-memory ledger");
                executor
                    .apply(&ledger, &g, &Certificate::default())
                    .expect("genesis commits");
                Node {
                    key: k.clone(),
                    ledger,
                    engine: None,
                    records: BTreeMap::new(),
                    mempool: BTreeMap::new(),
                    in_mempool: BTreeSet::new(),
                    timers: BTreeMap::new(),
                    work: None,
                    up: false,
                    dead: false,
                    committed_height: 0,
                }
            })
            .collect();
        let mut w = World {
            cfg,
            rng: ChaCha8Rng::seed_from_u64(seed),
            now: 0,
            seq: 0,
            queue: BTreeMap::new(),
            nodes,
            keys: keys.iter().map(SecretKey::public).collect(),
            validators,
            executor,
            blocked: BTreeMap::new(),
            partitions: BTreeMap::new(),
            faulty: true,
            drop_rate: 0.0,
            finals: BTreeMap::from([(0, g.hash())]),
            roots: BTreeMap::new(),
            executed_once: BTreeMap::new(),
            violations: Vec::new(),
            events: 0,
            healed_at: None,
            height_at_heal: 0,
            recovered_after: None,
            trace: tracing_enabled(),
            mined: Vec::new(),
            attack_base: None,
            attack_released: None,
        };
        for i in 0..cfg.nodes {
            w.boot(i);
        }
        w
    }

    fn violation(&mut self, what: String) {
        self.violations.push(Violation {
            time_ms: self.now,
            what,
        });
    }

    fn schedule(&mut self, at: u64, item: Item) {
        self.seq += 1;
        self.queue.insert((at, self.seq), item);
    }

    fn schedule_faults_and_clients(&mut self) {
        let window = self.cfg.fault_window.as_millis() as u64;
        let f = self.cfg.faults;
        let n = self.cfg.nodes;
        if f.drop {
            self.drop_rate = self.rng.gen_range(0.01..0.15);
        }
        if f.partition {
            for id in 0..self.rng.gen_range(1..4u64) {
                let at = self
                    .rng
                    .gen_range(1_000..window.saturating_sub(2_000).max(1_001));
                let len = self.rng.gen_range(500..6_000);
                let side: Vec<bool> = (0..n).map(|_| self.rng.gen_bool(0.5)).collect();
                let one_way = self.rng.gen_bool(0.3);
                let mut pairs = Vec::new();
                for a in 0..n {
                    for b in 0..n {
                        if side[a] && !side[b] {
                            pairs.push((a, b));
                            if !one_way {
                                pairs.push((b, a));
                            }
                        }
                    }
                }
                self.schedule(at, Item::Partition { id, pairs });
                self.schedule((at + len).min(window), Item::Heal(id));
            }
        }
        if f.crash {
            for _ in 0..self.rng.gen_range(1..4) {
                let at = self
                    .rng
                    .gen_range(1_000..window.saturating_sub(1_000).max(1_001));
                let node = self.rng.gen_range(0..n);
                let down = self.rng.gen_range(500..8_000);
                self.schedule(at, Item::Crash(node));
                self.schedule((at + down).min(window), Item::Restart(node));
            }
        }
        self.schedule(window, Item::EndOfFaults);
        if let Some(a) = self.cfg.attack {
            self.schedule(a.start_ms, Item::AttackStart);
        }
        // Clients: most transactions during the faults, the rest just after they heal.
        let client = SecretKey::from_seed([0xc1; 32]);
        for i in 0..self.cfg.txs as u64 {
            let at = if i % 10 < 7 {
                self.rng.gen_range(0..window)
            } else {
                self.rng.gen_range(window..window + 5_000)
            };
            let op = KvOp::Put {
                key: format!("k{}", i % 17).into_bytes(),
                value: format!("v{i}").into_bytes(),
            };
            let tx = Transaction::signed(CHAIN, "kv", Kv::payload(&op), i, &client);
            self.schedule(at, Item::Submit(tx));
        }
    }

    /// Builds node `i`'s engine from its ledger and records, and starts it.
    fn boot(&mut self, i: usize) {
        let node = &self.nodes[i];
        let tip = node.ledger.tip().expect("genesis is committed");
        let header = node
            .ledger
            .header(tip.height)
            .ok()
            .flatten()
            .expect("tip block");
        let certificate = node
            .ledger
            .certificate(tip.height)
            .ok()
            .flatten()
            .unwrap_or_default();
        // A candidate that cannot be read would silently cost the replica its prepared proof.
        let (candidate, unreadable) = match node.ledger.candidate() {
            Ok(c) => (c, None),
            Err(e) => (
                None,
                Some(format!("node {i}: its candidate block is unreadable: {e}")),
            ),
        };
        let reverted = (tip.height < node.committed_height).then(|| {
            format!(
                "node {i} restarted at height {} after committing {}",
                tip.height, node.committed_height
            )
        });
        let ctx = EngineContext {
            chain_id: CHAIN.into(),
            key: node.key.clone(),
            validators: self.validators.clone(),
            tip: ChainTip {
                header,
                certificate,
                state_root: tip.state_root,
            },
            records: node.records.clone(),
            candidate,
            verifier: Arc::new(VerifyAll {
                chain_id: CHAIN.into(),
            }),
        };
        for what in [reverted, unreadable].into_iter().flatten() {
            self.violation(what);
        }
        let engine = match &self.cfg.byzantine {
            Some((b, kind)) if *b == i => kind.build(ctx),
            _ => self.cfg.engine.build(ctx),
        };
        let node = &mut self.nodes[i];
        node.engine = Some(engine);
        node.up = true;
        node.committed_height = tip.height;
        let mut out = Vec::new();
        if let Some(e) = self.nodes[i].engine.as_mut() {
            e.start(self.now, &mut out);
        }
        for event in self.run_actions(i, out) {
            self.engine_event(i, event);
        }
    }

    /// Puts a verified transaction in node `i`'s mempool; false if refused or known.
    fn admit(&mut self, i: usize, tx: Transaction) -> bool {
        let hash = tx.hash();
        let node = &mut self.nodes[i];
        if node.in_mempool.contains(&hash)
            || tx.verify(CHAIN).is_err()
            || node.ledger.tx_position(&hash).ok().flatten().is_some()
        {
            return false;
        }
        self.seq += 1;
        node.mempool.insert(self.seq, tx);
        node.in_mempool.insert(hash);
        true
    }

    fn send(&mut self, from: usize, to: usize, payload: Payload) {
        if from == to || self.blocked.contains_key(&(from, to)) {
            return;
        }
        if self.faulty && self.cfg.faults.drop && self.rng.gen_bool(self.drop_rate) {
            return;
        }
        let (lo, hi) = self.cfg.latency_ms;
        let mut delay = self.rng.gen_range(lo..=hi);
        if self.faulty && self.cfg.faults.reorder && self.rng.gen_bool(0.1) {
            delay += self.rng.gen_range(0..300);
        }
        let duplicate = self.faulty && self.cfg.faults.dup && self.rng.gen_bool(0.05);
        if duplicate {
            let copy = match &payload {
                Payload::Consensus(b) => Payload::Consensus(b.clone()),
                Payload::Txs(t) => Payload::Txs(t.clone()),
                Payload::BlockRequest { from_height } => Payload::BlockRequest {
                    from_height: *from_height,
                },
                Payload::BlockResponse(b) => Payload::BlockResponse(b.clone()),
            };
            let d2 = self.rng.gen_range(lo..=hi + 50);
            self.schedule(
                self.now + d2,
                Item::Deliver {
                    from,
                    to,
                    payload: copy,
                },
            );
        }
        self.schedule(self.now + delay, Item::Deliver { from, to, payload });
    }

    /// Feeds an event to node `i`'s engine, then everything its actions produce locally.
    fn engine_event(&mut self, i: usize, event: Event) {
        let mut local = VecDeque::from([event]);
        while let Some(ev) = local.pop_front() {
            let Some(engine) = self.nodes[i].engine.as_mut() else {
                return;
            };
            let now = self.now;
            let mut out = Vec::new();
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| engine.handle(now, ev, &mut out)))
            {
                let msg = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                self.violation(format!("node {i} panicked: {msg}"));
                let node = &mut self.nodes[i];
                node.up = false;
                node.dead = true;
                node.engine = None;
                return;
            }
            local.extend(self.run_actions(i, out));
        }
    }
}
