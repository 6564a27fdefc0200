//! `medchain testnet` (write a local consortium: keys, genesis, one config per node) and
//! `medchain up` (start every node of a consortium as a child process, print the URLs, stop them
//! all cleanly on Ctrl-C or SIGTERM; run again, it resumes from disk).

use crate::config::{
    ApiSection, LogSection, MempoolSection, NetworkSection, NodeConfig, NodeSection,
};
use crate::genesis::{PeerAddr, Validator};
use anyhow::{bail, Context, Result};
use medchain_app::App;
use medchain_types::SecretKey;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Ports and names of a local testnet.
#[derive(Debug, Clone)]
pub struct TestnetSpec {
    /// Validators.
    pub nodes: usize,
    /// Engine name.
    pub engine: String,
    /// First QUIC port (node i uses base + i).
    pub p2p_base: u16,
    /// First HTTP port.
    pub api_base: u16,
    /// Chain id.
    pub chain_id: String,
    /// Block interval of proof of work (the engine's default if `None`).
    pub block_interval: Option<Duration>,
}

impl TestnetSpec {
    /// A spec from the command-line arguments.
    pub fn new(
        nodes: usize,
        engine: String,
        p2p_base: u16,
        api_base: u16,
        chain_id: String,
    ) -> TestnetSpec {
        TestnetSpec {
            nodes,
            engine,
            p2p_base,
            api_base,
            chain_id,
            block_interval: None,
        }
    }
}

/// Writes a testnet into `dir`. Refuses a directory that already holds one unless `force`.
pub fn testnet(spec: &TestnetSpec, dir: &Path, force: bool, apps: &[Arc<dyn App>]) -> Result<()> {
    if spec.nodes == 0 || spec.nodes > 100 {
        bail!("--nodes must be 1 to 100");
    }
    if !crate::genesis::ENGINES.contains(&spec.engine.as_str()) {
        bail!(
            "engine {:?} is not available (this build supports: {})",
            spec.engine,
            crate::genesis::ENGINES.join(", ")
        );
    }
    let genesis_path = dir.join("genesis.toml");
    if genesis_path.exists() && !force {
        bail!("{} already holds a testnet (genesis.toml exists); use --force to overwrite it or choose another directory", dir.display());
    }
    if usize::from(spec.p2p_base) + spec.nodes > 65_535
        || usize::from(spec.api_base) + spec.nodes > 65_535
    {
        bail!("ports out of range");
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // Nodes are numbered in the validator set's order (sorted by key), so node i is the PBFT
    // primary of view i: node 0 leads first, as the printed URLs and benchmarks assume.
    let mut keys: Vec<SecretKey> = (0..spec.nodes)
        .map(|_| SecretKey::generate(&mut rand::rngs::OsRng))
        .collect();
    keys.sort_by_key(SecretKey::public);
    let mut validators = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let node_dir = dir.join(format!("node{i}"));
        std::fs::create_dir_all(&node_dir)?;
        medchain_app::keyfile::write(&node_dir.join("node.json"), key, force)?;
        validators.push(Validator {
            name: format!("node{i}"),
            key: key.public(),
            p2p: PeerAddr::Ip(format!("127.0.0.1:{}", spec.p2p_base + i as u16).parse()?),
            api: format!("http://127.0.0.1:{}", spec.api_base + i as u16),
        });
    }
    // The key ceremony's steps, on one host.
    let mut genesis = crate::ceremony::new_draft(&crate::ceremony::NewChain {
        chain_id: spec.chain_id.clone(),
        engine: spec.engine.clone(),
        block_interval: spec.block_interval,
        confirmations: None,
        epoch_length: None,
    })?;
    for v in &validators {
        crate::ceremony::add_validator(&mut genesis, v.clone(), None)?;
    }
    // Each app's part: its files in the directory, its genesis section.
    let mut notes = Vec::new();
    for app in apps {
        let part = app
            .testnet(dir, force)
            .with_context(|| format!("the {} app", app.name()))?;
        if let Some(section) = part.section {
            genesis.apps.insert(app.name().to_owned(), section);
        }
        notes.extend(part.notes);
    }
    genesis.seal(apps)?;
    genesis.save(&genesis_path)?;
    for (i, v) in validators.iter().enumerate() {
        let cfg = NodeConfig {
            node: NodeSection {
                data_dir: PathBuf::from("data"),
                key_file: PathBuf::from("node.json"),
                genesis: PathBuf::from("../genesis.toml"),
            },
            network: NetworkSection {
                listen: format!("127.0.0.1:{}", v.p2p.port()).parse()?,
                frame_max: medchain_network::FRAME_MAX_DEFAULT,
                // Every node of a testnet is on this host's loopback.
                udp_payload_max: medchain_network::UDP_PAYLOAD_MAX_LOOPBACK,
            },
            api: ApiSection {
                listen: format!("127.0.0.1:{}", spec.api_base + i as u16).parse()?,
                body_max: 16 << 20,
                wait_commit_secs: 60,
                requests_max: 2048,
                requests_per_client_max: 1024,
                header_timeout_secs: 30,
                body_idle_secs: 30,
                shutdown_grace_secs: 20,
                tls_cert: None,
                tls_key: None,
                ca_file: None,
            },
            mempool: MempoolSection::default(),
            log: LogSection::default(),
            mining: Default::default(),
        };
        cfg.save(&dir.join(format!("node{i}/node.toml")))?;
    }
    let client = SecretKey::generate(&mut rand::rngs::OsRng);
    medchain_app::keyfile::write(&dir.join("client.json"), &client, force)?;
    println!(
        "testnet in {}: chain {}, engine {}, {} validators",
        dir.display(),
        spec.chain_id,
        spec.engine,
        spec.nodes
    );
    for v in &validators {
        println!("  {}  api {}  p2p {}  key {}", v.name, v.api, v.p2p, v.key);
    }
    println!("client key: {}", dir.join("client.json").display());
    for note in notes {
        println!("{note}");
    }
    Ok(())
}

fn tail(path: &Path, lines: usize) -> String {
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(16 << 10)));
    let mut s = String::new();
    let _ = f.read_to_string(&mut s);
    let all: Vec<&str> = s.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn terminate(children: &mut [(String, Child, PathBuf)]) {
    for (_, c, _) in children.iter_mut() {
        // SIGTERM: each node stops its HTTP server, engine and transport cleanly.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(c.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    for (name, c, _) in children.iter_mut() {
        loop {
            match c.try_wait() {
                Ok(Some(_)) => break,
                _ if Instant::now() > deadline => {
                    eprintln!("{name} did not stop within 15 s; killing it");
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

/// Starts every node of the testnet in `dir` (creating it first if absent) and supervises them
/// until Ctrl-C or SIGTERM.
pub async fn up(spec: &TestnetSpec, dir: &Path, apps: &[Arc<dyn App>]) -> Result<()> {
    let genesis_path = dir.join("genesis.toml");
    if !genesis_path.exists() {
        testnet(spec, dir, false, apps)?;
    } else {
        println!(
            "resuming the consortium in {} (delete the directory to start afresh)",
            dir.display()
        );
    }
    let genesis = crate::genesis::Genesis::load(&genesis_path, apps)?;
    let exe = std::env::current_exe()?;
    let mut children: Vec<(String, Child, PathBuf)> = Vec::new();
    for (i, v) in genesis.validators.iter().enumerate() {
        let node_dir = dir.join(format!("node{i}"));
        let log_path = node_dir.join("node.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)?;
        let child = Command::new(&exe)
            .arg("node")
            .arg("--config")
            .arg(node_dir.join("node.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", v.name))?;
        children.push((v.name.clone(), child, log_path));
    }
    // Wait for every API to answer.
    let http = medchain_app::client::http_builder(None)?
        .timeout(Duration::from_secs(2))
        .build()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    for (i, v) in genesis.validators.iter().enumerate() {
        loop {
            if let Some(status) = children[i].1.try_wait()? {
                let log = tail(&children[i].2, 20);
                terminate(&mut children);
                bail!(
                    "{} exited during start-up ({status}); last lines of {}:\n{log}",
                    v.name,
                    children[i].2.display()
                );
            }
            if http
                .get(format!("{}/healthz", v.api))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                break;
            }
            if Instant::now() > deadline {
                terminate(&mut children);
                bail!("{} did not answer on {} within 60 s", v.name, v.api);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    println!(
        "consortium {} is up: {} nodes, engine {}",
        genesis.chain_id,
        genesis.validators.len(),
        genesis.engine
    );
    for (i, v) in genesis.validators.iter().enumerate() {
        println!(
            "  {:<8} {}   (log {})",
            v.name,
            v.api,
            children[i].2.display()
        );
    }
    let first = &genesis.validators[0].api;
    let client = dir.join("client.json");
    for pages in apps.iter().filter_map(|a| a.pages()) {
        println!(
            "{}: {}{}/ ({})",
            pages.mount.trim_start_matches('/'),
            first.trim_end_matches('/'),
            pages.mount,
            pages.about
        );
    }
    println!("try:");
    println!("  medchain status --node {first}");
    println!(
        "  medchain kv put hello world --node {first} --key-file {}",
        client.display()
    );
    println!("  medchain kv get hello --node {first}");
    println!("  medchain load --node {first} --rate 1000 --duration 10");
    println!("Ctrl-C stops every node; run the same command again to resume.");

    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let outcome = loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break Ok(()),
            _ = sigterm.recv() => break Ok(()),
            _ = tick.tick() => {
                if let Some(i) = children.iter_mut().position(|(_, c, _)| matches!(c.try_wait(), Ok(Some(_)))) {
                    let (name, c, log) = &mut children[i];
                    let status = c.try_wait().ok().flatten().map(|s| s.to_string()).unwrap_or_default();
                    break Err(anyhow::anyhow!("{name} stopped unexpectedly ({status}); last lines of {}:\n{}", log.display(), tail(log, 20)));
                }
            }
        }
    };
    println!("stopping {} nodes...", children.len());
    terminate(&mut children);
    println!("stopped; the ledgers are in {}", dir.display());
    outcome
}
