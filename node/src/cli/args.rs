//! The `medchain` command line's own commands (clap definitions); the apps add theirs (see
//! [`super::command`]).

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// medchain: a blockchain framework with swappable consensus engines (PBFT, proof of stake, proof
/// of work) and applications as modules.
#[derive(Parser, Debug)]
#[command(name = "medchain", version, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// CA certificates (PEM) to trust for https:// nodes instead of the system's roots (a
    /// consortium's own certificate authority, say).
    #[arg(long, global = true, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum StakeCommand {
    /// Add AMOUNT to the signer's stake (proof of stake; effective at the next epoch).
    Add {
        /// How much.
        amount: u64,
        /// A node's API URL.
        #[arg(long, default_value = "http://127.0.0.1:8700")]
        node: String,
        /// The validator's node key file (`nodeI/node.json`).
        #[arg(long)]
        key_file: PathBuf,
    },
    /// Withdraw AMOUNT from the signer's stake (to zero: it leaves the active set).
    Remove {
        /// How much.
        amount: u64,
        /// A node's API URL.
        #[arg(long, default_value = "http://127.0.0.1:8700")]
        node: String,
        /// The validator's node key file (`nodeI/node.json`).
        #[arg(long)]
        key_file: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum GenesisCommand {
    /// Start a genesis document (no validators yet) for a new consortium.
    New {
        /// Chain id (1 to 64 of a-z 0-9 - _ .).
        #[arg(long)]
        chain_id: String,
        /// Consensus engine: pbft, pos or pow.
        #[arg(long)]
        engine: String,
        /// The genesis file.
        #[arg(long, default_value = "genesis.toml")]
        file: PathBuf,
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
        /// Proof of work: the block interval difficulty aims at, in milliseconds.
        #[arg(long)]
        block_interval_ms: Option<u64>,
        /// Proof of work: blocks on top of a block before it is final.
        #[arg(long)]
        confirmations: Option<u64>,
        /// Proof of stake: heights per epoch.
        #[arg(long)]
        epoch_length: Option<u64>,
    },
    /// Add a member's validator from its public data: the public key it printed with `medchain
    /// keygen` on its own machine, and where peers and clients reach it.
    AddValidator {
        /// Its public key (64 hex characters).
        #[arg(long)]
        pubkey: String,
        /// Where peers reach it over QUIC (UDP): HOST:PORT, HOST an IP address or a DNS name
        /// (resolved at each connection attempt).
        #[arg(long)]
        p2p: String,
        /// Its API's URL, for the other members' nodes (default: http://HOST:8700).
        #[arg(long)]
        api: Option<String>,
        /// A name for people, such as "St Mary" (default: node<N>).
        #[arg(long)]
        name: Option<String>,
        /// Proof of stake: its stake (default 100).
        #[arg(long)]
        stake: Option<u64>,
        /// The genesis file.
        #[arg(long, default_value = "genesis.toml")]
        file: PathBuf,
    },
    /// Print the document as every node will read it, with its hash (fails while incomplete).
    Show {
        /// The genesis file.
        #[arg(long, default_value = "genesis.toml")]
        file: PathBuf,
    },
    /// Print the genesis hash (block 0's), which the members compare out of band; every node
    /// prints it at start and in /api/v1/status.
    Hash {
        /// The genesis file.
        #[arg(long, default_value = "genesis.toml")]
        file: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Start a local consortium (creating it in DIR if absent), print the URLs, and stop every
    /// node cleanly on Ctrl-C or SIGTERM. Run again to resume from disk.
    Up {
        /// Validators (when creating).
        #[arg(long, default_value_t = 4)]
        nodes: usize,
        /// Consensus engine (when creating).
        #[arg(long, default_value = "pbft")]
        engine: String,
        /// Where the consortium lives.
        #[arg(long, default_value = "data/local")]
        dir: PathBuf,
        /// First QUIC port (node i uses port + i).
        #[arg(long, default_value_t = 7700)]
        p2p_port: u16,
        /// First HTTP port (node i uses port + i).
        #[arg(long, default_value_t = 8700)]
        api_port: u16,
    },
    /// Write a local consortium: node keys, genesis.toml, one node.toml per node, a client key.
    Testnet {
        /// Validators.
        #[arg(long, default_value_t = 4)]
        nodes: usize,
        /// Consensus engine.
        #[arg(long, default_value = "pbft")]
        engine: String,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// First QUIC port (node i uses port + i).
        #[arg(long, default_value_t = 7700)]
        p2p_port: u16,
        /// First HTTP port (node i uses port + i).
        #[arg(long, default_value_t = 8700)]
        api_port: u16,
        /// Chain id.
        #[arg(long, default_value = "medchain-local")]
        chain_id: String,
        /// Overwrite an existing testnet in the directory.
        #[arg(long)]
        force: bool,
        /// Proof of work: the block interval difficulty aims at, in milliseconds (default 3000).
        #[arg(long)]
        block_interval_ms: Option<u64>,
    },
    /// Build a consortium's genesis document from its members' public data (the key
    /// ceremony); the apps add their own steps (`genesis add-admin`).
    #[command(subcommand_required = true, arg_required_else_help = true)]
    Genesis {
        #[command(subcommand)]
        command: GenesisCommand,
    },
    /// Run one node. Settings come from the TOML file and `MEDCHAIN__SECTION__KEY` variables.
    Node {
        /// The node's configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// GET a node's URL (such as http://127.0.0.1:8700/readyz) and exit 0 only for a 2xx
    /// answer: a health check for images without curl (the Docker image's HEALTHCHECK).
    Probe {
        /// The URL.
        url: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 3)]
        timeout_secs: u64,
    },
    /// Print a node's status (engine, height, view, peers, mempool) as JSON.
    Status {
        /// A node's API URL.
        #[arg(long, default_value = "http://127.0.0.1:8700")]
        node: String,
    },
    /// Benchmarks against a running consortium (the apps add their own).
    #[command(subcommand_required = true, arg_required_else_help = true)]
    Bench,
    /// Proof of stake: stake or unstake a validator's weight (a `staking` transaction signed
    /// with its node key; waits for the commit). The engine applies it at the next epoch
    /// boundary; `medchain status` shows the stakes.
    Stake {
        #[command(subcommand)]
        command: StakeCommand,
    },
    /// Offer signed transactions at a fixed rate and report throughput and commit latency.
    Load {
        /// A node's API URL.
        #[arg(long, default_value = "http://127.0.0.1:8700")]
        node: String,
        /// Transactions per second offered.
        #[arg(long, default_value_t = 1000)]
        rate: u64,
        /// Seconds of load.
        #[arg(long, default_value_t = 10)]
        duration: u64,
        /// Payload bytes per transaction.
        #[arg(long, default_value_t = 512)]
        size: usize,
        /// `noop` or `kv`.
        #[arg(long, default_value = "noop")]
        chaincode: String,
        /// Transactions per HTTP request.
        #[arg(long, default_value_t = 100)]
        batch: usize,
        /// Distinct signing keys, used in turn (transaction i is signed by key i mod N). One
        /// sender lets a batch signature check fold all its signatures' key terms into one
        /// point; many senders measure the general case, where every signature costs its own
        /// (at most 100,000).
        #[arg(long, default_value_t = 1)]
        senders: usize,
        /// Most requests waiting for their commit at once.
        #[arg(long, default_value_t = 512)]
        in_flight: usize,
        /// Before offering, measure the reference: how many of these transactions' signatures
        /// this machine checks per second on all its cores (the nodes' rule, in batches of 256),
        /// and so the most transactions per second the consortium could commit if its nodes
        /// shared these cores and did nothing but check each signature once each (meaningful
        /// for a local consortium such as `medchain up`'s).
        #[arg(long)]
        reference: bool,
        /// Also print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run the deterministic simulator: many seeds, injected faults, invariant checks. Exits 1
    /// if any seed breaks an invariant, printing the command that replays it.
    Sim {
        /// Consensus engine.
        #[arg(long, default_value = "pbft")]
        engine: String,
        /// Validators.
        #[arg(long, default_value_t = 4)]
        nodes: usize,
        /// Seeds to run (from --seed on).
        #[arg(long, default_value_t = 100)]
        seeds: u64,
        /// First seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Faults: any of crash,partition,drop,dup,reorder, or all, or none.
        #[arg(long, default_value = "all")]
        faults: String,
        /// Client transactions per run.
        #[arg(long, default_value_t = 60)]
        txs: usize,
        /// Seconds of faults (simulated) before everything heals.
        #[arg(long, default_value_t = 30)]
        fault_window: u64,
        /// Worker threads.
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// One-way message latency in milliseconds: `MS` or `LO..HI` (uniform).
        #[arg(long, default_value = "1..30")]
        latency_ms: String,
    },
    /// Generate an ed25519 key file (mode 0600) and print its public key.
    Keygen {
        /// Where to write the key file.
        #[arg(long)]
        out: PathBuf,
        /// Replace the file if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Print the public key of a key file (checks that the file is a valid medchain key).
    Pubkey {
        /// The key file.
        #[arg(long)]
        key: PathBuf,
    },
    /// Check a ledger: hash links, transaction Merkle roots, indexes, receipts and state roots.
    ///
    /// Opens the ledger read-only, so it can run beside a node that is using it. Exits non-zero
    /// and names the first bad height if anything does not check out.
    VerifyChain {
        /// The ledger directory (a node's `data/ledger`).
        #[arg(long)]
        data: PathBuf,
    },
    /// Write a chain of signed `kv` transactions to a local ledger (no network), then verify it
    /// and prove one transaction's inclusion.
    Demo {
        /// The ledger directory (created if absent).
        #[arg(long, default_value = "data/demo")]
        data: PathBuf,
        /// Blocks to add.
        #[arg(long, default_value_t = 100)]
        blocks: u64,
        /// Transactions per block.
        #[arg(long, default_value_t = 200)]
        txs: usize,
    },
}
