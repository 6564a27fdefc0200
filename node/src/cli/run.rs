//! The node's own commands: running a node, consortia, status, stake, load, the simulator, keys,
//! chain verification and the demo.

use super::args::{Cli, Command, GenesisCommand, StakeCommand};
use anyhow::{bail, Context, Result};
use medchain_app::client::{signed_tx, Client};
use medchain_app::App;
use medchain_ledger::Ledger;
use medchain_types::codec;
use std::sync::Arc;

/// A node that stopped on its own (see `Node::failure`): `medchain node` exits with status 2.
#[derive(Debug)]
pub struct NodeFailed(pub String);

impl std::fmt::Display for NodeFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the node stopped: {}", self.0)
    }
}

impl std::error::Error for NodeFailed {}

/// Runs `medchain genesis ...`.
fn genesis(command: GenesisCommand, apps: &[Arc<dyn App>]) -> Result<()> {
    use crate::ceremony;
    match command {
        GenesisCommand::New {
            chain_id,
            engine,
            file,
            force,
            block_interval_ms,
            confirmations,
            epoch_length,
        } => ceremony::cmd_new(
            &ceremony::NewChain {
                chain_id,
                engine,
                block_interval: block_interval_ms.map(std::time::Duration::from_millis),
                confirmations,
                epoch_length,
            },
            &file,
            force,
        ),
        GenesisCommand::AddValidator {
            pubkey,
            p2p,
            api,
            name,
            stake,
            file,
        } => ceremony::cmd_add_validator(
            &file,
            &ceremony::NewValidator {
                pubkey,
                p2p,
                api,
                name,
                stake,
            },
        ),
        GenesisCommand::Show { file } => ceremony::cmd_show(&file, apps),
        GenesisCommand::Hash { file } => ceremony::cmd_hash(&file, apps),
    }
}

/// Runs one of the node's own commands.
pub fn run(cli: Cli, apps: &[Arc<dyn App>]) -> Result<()> {
    match cli.command {
        Command::Keygen { out, force } => {
            let key = medchain_types::SecretKey::generate(&mut rand::rngs::OsRng);
            medchain_app::keyfile::write(&out, &key, force)?;
            println!("{}", key.public());
            Ok(())
        }
        Command::Pubkey { key } => {
            println!("{}", medchain_app::keyfile::read(&key)?.public());
            Ok(())
        }
        Command::VerifyChain { data } => verify_chain(&data),
        Command::Demo { data, blocks, txs } => crate::demo::run(&data, blocks, txs),
        Command::Testnet {
            nodes,
            engine,
            out,
            p2p_port,
            api_port,
            chain_id,
            force,
            block_interval_ms,
        } => {
            let mut spec =
                crate::cluster::TestnetSpec::new(nodes, engine, p2p_port, api_port, chain_id);
            spec.block_interval = block_interval_ms.map(std::time::Duration::from_millis);
            crate::cluster::testnet(&spec, &out, force, apps)
        }
        Command::Up {
            nodes,
            engine,
            dir,
            p2p_port,
            api_port,
        } => medchain_app::block_on(crate::cluster::up(
            &crate::cluster::TestnetSpec::new(
                nodes,
                engine,
                p2p_port,
                api_port,
                "medchain-local".into(),
            ),
            &dir,
            apps,
        ))?,
        // Only reached without an app's subcommand, which `bench` requires.
        Command::Bench => anyhow::bail!("medchain bench: which benchmark? (see --help)"),
        Command::Genesis { command } => genesis(command, apps),
        Command::Node { config } => run_node(&config, apps),
        Command::Status { node } => medchain_app::block_on(status(&node))?,
        Command::Probe { url, timeout_secs } => {
            medchain_app::block_on(probe(&url, std::time::Duration::from_secs(timeout_secs)))?
        }
        Command::Stake { command } => {
            use medchain_types::staking::StakeOp;
            let (op, node, key_file) = match command {
                StakeCommand::Add {
                    amount,
                    node,
                    key_file,
                } => (StakeOp::Stake { amount }, node, key_file),
                StakeCommand::Remove {
                    amount,
                    node,
                    key_file,
                } => (StakeOp::Unstake { amount }, node, key_file),
            };
            medchain_app::block_on(stake(&node, &key_file, op))?
        }
        Command::Load {
            node,
            rate,
            duration,
            size,
            chaincode,
            batch,
            senders,
            in_flight,
            reference,
            json,
        } => medchain_app::block_on(crate::load::load(&crate::load::LoadSpec {
            node,
            rate,
            duration,
            size,
            chaincode,
            batch,
            senders,
            in_flight_max: in_flight,
            reference,
            json,
        }))?,
        Command::Sim {
            engine,
            nodes,
            seeds,
            seed,
            faults,
            txs,
            fault_window,
            threads,
            latency_ms,
        } => simulate(
            &engine,
            nodes,
            seeds,
            seed,
            &faults,
            txs,
            fault_window,
            threads,
            &latency_ms,
        ),
    }
}

/// `medchain probe`: `GET url`; fails unless the answer is 2xx.
async fn probe(url: &str, timeout: std::time::Duration) -> Result<()> {
    let r = medchain_app::client::http_builder(None)?
        .build()?
        .get(url)
        .timeout(timeout)
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let code = r.status();
    let body = r.text().await.unwrap_or_default();
    let first = body
        .lines()
        .next()
        .unwrap_or("")
        .chars()
        .take(200)
        .collect::<String>();
    if !code.is_success() {
        bail!("{url}: HTTP {code}: {first}");
    }
    println!("{url}: HTTP {code}: {first}");
    Ok(())
}

/// How long a node that stopped on its own waits for the requests in flight.
const FAILED_SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// `medchain node`: runs one node with `apps` until Ctrl-C or SIGTERM (a clean stop), or until it
/// stops on its own ([`NodeFailed`]).
fn run_node(config_path: &std::path::Path, apps: &[Arc<dyn App>]) -> Result<()> {
    let config = crate::config::NodeConfig::load(config_path)?;
    let filter =
        tracing_subscriber::EnvFilter::try_new(&config.log.level).context("invalid [log] level")?;
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr);
    match config.log.format {
        crate::config::LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        crate::config::LogFormat::Json => logs.json().with_ansi(false).init(),
    }
    medchain_app::block_on(async move {
        let listen = config.api.listen;
        let tls = match (&config.api.tls_cert, &config.api.tls_key) {
            (Some(cert), Some(key)) => Some(crate::api::serve::tls_acceptor(cert, key)?),
            _ => None,
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let grace = std::time::Duration::from_secs(config.api.shutdown_grace_secs);
        let timeouts = crate::api::serve::Timeouts {
            header: std::time::Duration::from_secs(config.api.header_timeout_secs.max(1)),
            body_idle: std::time::Duration::from_secs(config.api.body_idle_secs.max(1)),
        };
        let node = crate::runtime::Node::start(config, apps)?;
        let router = crate::api::router(
            node.shared.clone(),
            &node.apps,
            crate::api::openapi_document(apps),
        );
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        tracing::info!(api = %listen, scheme, "HTTP API listening");
        let mut sigterm =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let failed = Arc::new(std::sync::Mutex::new(None));
        let failure = node.failure();
        let record = failed.clone();
        // How long the requests in flight may take once the node stops (a streamed download
        // may take an hour): `[api] shutdown_grace_secs`, or less for a node that failed,
        // since nothing it serves is trustworthy any more.
        let (stopping_tx, stopping) = tokio::sync::watch::channel(None);
        let server = crate::api::serve::serve(listener, router, timeouts, tls, async move {
            let grace = tokio::select! {
                _ = tokio::signal::ctrl_c() => grace,
                _ = sigterm.recv() => grace,
                why = failure => {
                    *record.lock().expect("failure lock") = Some(why);
                    FAILED_SHUTDOWN_GRACE.min(grace)
                }
            };
            tracing::info!(grace_s = grace.as_secs(), "shutting down");
            let _ = stopping_tx.send(Some(grace));
        });
        let deadline = async move {
            let mut stopping = stopping;
            match stopping.wait_for(Option::is_some).await.map(|g| *g) {
                Ok(Some(grace)) => tokio::time::sleep(grace).await,
                _ => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            served = server => served?,
            () = deadline => tracing::warn!("requests still in flight abandoned"),
        }
        node.stop().await;
        let why = failed.lock().expect("failure lock").take();
        match why {
            Some(why) => Err(NodeFailed(why).into()),
            None => Ok(()),
        }
    })?
}

#[allow(clippy::too_many_arguments)]
fn simulate(
    engine: &str,
    nodes: usize,
    seeds: u64,
    first: u64,
    faults: &str,
    txs: usize,
    fault_window: u64,
    threads: usize,
    latency: &str,
) -> Result<()> {
    use medchain_sim::{run_many, EngineKind, Faults, SimConfig};
    if nodes == 0 || nodes > 64 {
        anyhow::bail!("--nodes must be 1 to 64");
    }
    let mut cfg = SimConfig::new(
        EngineKind::by_name(engine).map_err(anyhow::Error::msg)?,
        nodes,
    );
    cfg.faults = Faults::parse(faults).map_err(anyhow::Error::msg)?;
    cfg.txs = txs;
    cfg.fault_window = std::time::Duration::from_secs(fault_window);
    let parse = |s: &str| {
        s.trim()
            .parse::<u64>()
            .with_context(|| format!("--latency-ms {latency:?}: expected MS or LO..HI"))
    };
    cfg.latency_ms = match latency.split_once("..") {
        Some((lo, hi)) => (parse(lo)?, parse(hi)?),
        None => (parse(latency)?, parse(latency)?),
    };
    if cfg.latency_ms.0 > cfg.latency_ms.1 {
        anyhow::bail!("--latency-ms {latency:?}: LO must not exceed HI");
    }
    eprintln!(
        "simulating {engine} with {nodes} validators, seeds {first}..{}, faults: {faults}",
        first + seeds
    );
    let done = std::sync::atomic::AtomicU64::new(0);
    let summary = run_many(&cfg, first, seeds, threads, &|r| {
        let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        if !r.violations.is_empty() {
            eprintln!("seed {} VIOLATION: {}", r.seed, r.violations[0].what);
        }
        if n % 50 == 0 || n == seeds {
            eprintln!("{n}/{seeds} runs");
        }
    });
    println!("engine          {engine}");
    println!("validators      {nodes}");
    println!("faults          {faults}");
    println!("runs            {}", summary.runs);
    println!("violations      {}", summary.failures.len());
    println!(
        "blocks          {} (final heights summed over runs)",
        summary.blocks
    );
    println!("transactions    {}", summary.committed_txs);
    println!(
        "simulated time  {:.1} min",
        summary.simulated_ms as f64 / 60_000.0
    );
    println!("real time       {:.1} s", summary.real_ms as f64 / 1000.0);
    if summary.mined_blocks > 0 {
        println!(
            "stale blocks    {} of {} mined ({:.2}%; blocks not in the final chain)",
            summary.stale_blocks,
            summary.mined_blocks,
            100.0 * summary.stale_blocks as f64 / summary.mined_blocks as f64
        );
    }
    if let Some(f) = summary.failures.first() {
        for r in &summary.failures {
            println!(
                "seed {}: {} (at {} ms)",
                r.seed, r.violations[0].what, r.violations[0].time_ms
            );
        }
        anyhow::bail!(
            "{} seeds broke an invariant; replay one with: medchain sim --engine {engine} --nodes {nodes} --faults {faults} --txs {txs} --fault-window {fault_window} --latency-ms {latency} --seeds 1 --seed {}",
            summary.failures.len(),
            f.seed
        );
    }
    Ok(())
}

fn verify_chain(data: &std::path::Path) -> Result<()> {
    let ledger = Ledger::open_read_only(data)?;
    let started = std::time::Instant::now();
    let report = ledger
        .verify_chain(|done, total| {
            if total >= 1000 {
                eprintln!("verified {done}/{total} blocks");
            }
        })
        .with_context(|| format!("chain in {} does not verify", data.display()))?;
    match report.tip {
        None => println!("chain {}: empty ledger, nothing to verify", ledger.chain_id()),
        Some(tip) => println!(
            "chain {}: OK, {} blocks, {} transactions, tip height {} hash {} state root {} ({:.2?})",
            ledger.chain_id(),
            report.blocks,
            report.txs,
            tip.height,
            tip.hash,
            tip.state_root,
            started.elapsed()
        ),
    }
    Ok(())
}

/// `medchain status`.
pub async fn status(node: &str) -> Result<()> {
    let v = Client::new(node)?.status().await?;
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}

/// `medchain stake add|remove`.
pub async fn stake(
    node: &str,
    key_file: &std::path::Path,
    op: medchain_types::staking::StakeOp,
) -> Result<()> {
    let signer = medchain_app::keyfile::read(key_file)?;
    let client = Client::new(node)?;
    let status = client.status().await?;
    if status["engine"] != "pos" {
        bail!(
            "{node} runs engine {}; stake operations apply to proof of stake only",
            status["engine"]
        );
    }
    let chain = client.chain_id().await?;
    let tx = signed_tx(
        &chain,
        medchain_types::staking::STAKING_CHAINCODE,
        codec::encode(&op),
        &signer,
    );
    let r = &client.commit_one(tx).await?;
    let epoch_length = status["engine_status"]["epoch_length"]
        .as_str()
        .unwrap_or("?");
    println!(
        "committed: tx {} at height {} ({}); the stake table changes at the next epoch boundary (every {epoch_length} heights) if the operation is allowed",
        r["tx_hash"].as_str().unwrap_or("?"),
        r["height"],
        r["status"]
    );
    Ok(())
}
