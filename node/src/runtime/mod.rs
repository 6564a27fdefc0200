//! The node runtime: drives a consensus engine over the QUIC transport and the RocksDB ledger.
//!
//! One dedicated thread owns the engine and executes its actions in order (so `Persist` is a
//! barrier: the synced write returns before anything after it is sent). Commits are executed and
//! written there too, then reported back to the engine. Around it, async tasks: the transport's
//! event loop (consensus messages go to the engine thread; transaction gossip is verified into
//! the mempool; block requests are served from the ledger), a gossip task that batches newly
//! admitted transactions to every peer, and the HTTP API; and a thread that hands committed
//! blocks to the apps' hooks.
//!
//! | module | concern |
//! |---|---|
//! | `engine` | the engine thread: actions in order, commits, timers, fatal storage errors |
//! | `admission` | client and gossiped transactions into the mempool; what a leader holds back |
//! | `waiters` | clients waiting for their transactions' commits |
//! | `network` | the transport's events, gossip, block sync |
//! | `hashes` | transaction hashes known from checks, reused at execution |
//! | `hooks` | committed blocks to the apps, off the engine thread, at least once |
//! | `host` | what the node gives its apps (`medchain_app::Host`) |

mod admission;
mod engine;
mod hashes;
mod hooks;
mod host;
mod network;
mod waiters;

pub use admission::{AdmitError, Admitted, FinalRead};
pub use hooks::MountedApp;
pub use waiters::{CommitWait, Committed, WaitError};

use crate::config::NodeConfig;
use crate::genesis::Genesis;
use crate::mempool::Mempool;
use crate::verify::VerifyOnce;
use anyhow::{bail, Context, Result};
use bytes::Bytes;
use hashes::{BlockTxHashes, MempoolVerifier};
use medchain_app::App;
use medchain_consensus::{ChainTip, Engine, EngineContext, EngineStatus, TimerId};
use medchain_ledger::{Executor, Ledger};
use medchain_network::{Network, NetworkConfig};
use medchain_pbft::Pbft;
use medchain_types::{codec, Block, Certificate, Hash, PublicKey, SecretKey, Transaction};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use waiters::Waiters;

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

/// State shared by the engine thread, the network tasks and the HTTP API.
pub struct Shared {
    /// The configuration.
    pub config: NodeConfig,
    /// The genesis document.
    pub genesis: Genesis,
    /// This node's key.
    pub me: PublicKey,
    /// This node's key (signs requests to other members for the apps).
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
    /// The highest height peers' block responses showed the chain has (one past a full batch:
    /// there is more); until the ledger reaches it, the node is catching up.
    pub chain_seen: AtomicU64,
    /// The exclusive lock of the data directory, held while the node runs.
    _data_lock: nix::fcntl::Flock<std::fs::File>,
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
    /// Committed blocks for the apps' hooks.
    hooks: hooks::HookSender,
    /// Why the node stopped on its own (a storage failure it cannot go on from), once it has.
    failure: tokio::sync::watch::Sender<Option<String>>,
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

    /// Milliseconds since the node started (monotonic: the hold clock must not jump with the
    /// wall clock).
    fn mono_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Stops the node for good: the engine thread returns after this, and whoever awaits
    /// [`Node::failure`] learns why. For a failure the node cannot go on from (a write of its
    /// ledger or engine records failed, or the ledger refused a final block): continuing could
    /// make a replica vote twice or diverge.
    fn fail(&self, why: String) {
        tracing::error!(error = %why, "stopping the node");
        self.failure.send_if_modified(|f| {
            if f.is_none() {
                *f = Some(why);
                true
            } else {
                false
            }
        });
    }
}

/// A running node.
pub struct Node {
    /// Shared state (for the HTTP API and tests).
    pub shared: Arc<Shared>,
    /// Its apps, started.
    pub apps: Vec<MountedApp>,
    engine_thread: Option<std::thread::JoinHandle<()>>,
    hook_thread: Option<hooks::HookThread>,
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

/// The data directory's lock file.
const LOCK_FILE: &str = "node.lock";

/// Creates the data directory if need be and takes its exclusive lock (released when the
/// process ends, however it ends): a second node on the same directory is refused at once.
fn lock_data_dir(dir: &std::path::Path) -> Result<nix::fcntl::Flock<std::fs::File>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|(_, e)| {
        match e {
            nix::errno::Errno::EWOULDBLOCK => anyhow::anyhow!(
                "another process is using the data directory {} (it holds {LOCK_FILE})",
                dir.display()
            ),
            e => anyhow::anyhow!("cannot lock {}: {e}", path.display()),
        }
    })
}

impl Node {
    /// Opens the ledger (writing genesis on first start), starts the transport, the engine
    /// thread, the network tasks and `apps` (the binary's list). Must run inside a tokio
    /// runtime.
    pub fn start(config: NodeConfig, apps: &[Arc<dyn App>]) -> Result<Node> {
        let genesis = Genesis::load(&config.node.genesis, apps)?;
        let key: SecretKey = medchain_app::keyfile::read(&config.node.key_file)?;
        let me = key.public();
        if genesis.validator(&me).is_none() {
            bail!(
                "this node's key {me} is not a validator in {}",
                config.node.genesis.display()
            );
        }
        let data_lock = lock_data_dir(&config.node.data_dir)?;
        let ledger_dir = config.node.data_dir.join("ledger");
        let ledger = Arc::new(
            Ledger::open(&ledger_dir, &genesis.chain_id)
                .with_context(|| format!("cannot open the ledger in {}", ledger_dir.display()))?,
        );
        let mut executor = Executor::with_builtins(&genesis.chain_id);
        let mut app_chaincodes = Vec::new();
        for app in apps {
            let chaincodes = app
                .chaincodes(genesis.app_section(app.name()))
                .map_err(|e| anyhow::anyhow!("the {} app: {e}", app.name()))?;
            let names: Vec<String> = chaincodes.iter().map(|c| c.name().to_owned()).collect();
            for c in chaincodes {
                executor
                    .install(c)
                    .map_err(|e| anyhow::anyhow!("the {} app: {e}", app.name()))?;
            }
            app_chaincodes.push(names);
        }
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

        let peers = genesis
            .validators
            .iter()
            .map(|v| (v.key, v.p2p.to_string()))
            .collect();
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
        let (hook_sender, hook_receiver) =
            hooks::channel(&app_chaincodes, &config.node.data_dir, tip.height)?;
        let shared = Arc::new(Shared {
            mempool: Mutex::new(Mempool::new(
                config.mempool.txs_max,
                config.mempool.bytes_max,
                config.mempool.sender_max(),
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
            chain_seen: AtomicU64::new(0),
            _data_lock: data_lock,
            sync_servers: Arc::new(tokio::sync::Semaphore::new(SYNC_SERVERS_MAX)),
            admit_slots: tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, usize::from),
            ),
            inbox,
            miner,
            started: Instant::now(),
            genesis: genesis.clone(),
            hooks: hook_sender,
            failure: tokio::sync::watch::Sender::new(None),
        });
        let host: Arc<dyn medchain_app::Host> = Arc::new(host::NodeHost::new(shared.clone())?);
        let mut mounted = Vec::new();
        for (app, chaincodes) in apps.iter().zip(app_chaincodes) {
            let node = app
                .start(host.clone(), genesis.app_section(app.name()))
                .with_context(|| format!("starting the {} app", app.name()))?;
            mounted.push(MountedApp {
                name: app.name(),
                node,
                chaincodes,
                pages: app.pages(),
            });
        }
        let hook_thread = hook_receiver.start(&mounted, ledger.clone())?;
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
            .spawn(move || engine::run(engine, inbox_rx, thread_shared, rt))?;
        tokio::spawn(network::network_loop(shared.clone(), events));
        tokio::spawn(network::gossip_loop(shared.clone()));
        tracing::info!(node = %me, chain = %genesis.chain_id, genesis = %genesis.block().hash(), engine = %genesis.engine, version = env!("CARGO_PKG_VERSION"), commit = crate::BUILD_COMMIT, height = tip.height, "node started");
        Ok(Node {
            shared,
            apps: mounted,
            engine_thread: Some(engine_thread),
            hook_thread: Some(hook_thread),
        })
    }

    /// Resolves when the node stopped on its own, with why (see [`Shared::fail`]); never while
    /// it runs.
    pub fn failure(&self) -> impl std::future::Future<Output = String> + Send + 'static {
        let mut rx = self.shared.failure.subscribe();
        async move {
            let why = rx.wait_for(Option::is_some).await.map(|f| f.clone());
            match why {
                Ok(why) => why.unwrap_or_default(),
                Err(_) => std::future::pending().await,
            }
        }
    }

    /// Stops the engine thread, hands what is left to the apps' hooks, and closes the
    /// transport.
    pub async fn stop(mut self) {
        self.shared.miner.stop();
        let _ = self.shared.inbox.send(Input::Shutdown).await;
        if let Some(t) = self.engine_thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
        if let Some(h) = self.hook_thread.take() {
            let _ = tokio::task::spawn_blocking(move || h.stop()).await;
        }
        self.shared.network.close().await;
        tracing::info!("node stopped");
    }
}
