//! The key ceremony's genesis commands (`medchain genesis ...`): each member makes its node key
//! on its own machine (`medchain keygen`; the private key never leaves it) and hands over its
//! public key and addresses; a coordinator assembles the genesis document from that public data
//! alone (`genesis new`, `genesis add-validator`, and what the apps add, such as the health
//! record app's `genesis add-admin`), and every member checks the result by its hash (`genesis
//! hash`, printed by every node at start and in `/api/v1/status`). `medchain testnet` builds
//! its one-host consortia with the same functions.

use crate::genesis::{Genesis, PeerAddr, Validator, ENGINES};
use anyhow::{bail, Context, Result};
use medchain_app::App;
use medchain_pos::StakeEntry;
use medchain_types::PublicKey;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The stake a validator gets under proof of stake when none is given.
pub const STAKE_DEFAULT: u64 = 100;

/// The settings of a new consortium.
#[derive(Debug, Clone)]
pub struct NewChain {
    /// Its chain id.
    pub chain_id: String,
    /// `pbft`, `pos` or `pow`.
    pub engine: String,
    /// Proof of work: the block interval difficulty aims at.
    pub block_interval: Option<Duration>,
    /// Proof of work: blocks on top of a block before it is final.
    pub confirmations: Option<u64>,
    /// Proof of stake: heights per epoch.
    pub epoch_length: Option<u64>,
}

/// A genesis document with no validators yet, its time now.
pub fn new_draft(spec: &NewChain) -> Result<Genesis> {
    if !ENGINES.contains(&spec.engine.as_str()) {
        bail!(
            "engine {:?} is not available (this build supports: {})",
            spec.engine,
            ENGINES.join(", ")
        );
    }
    let only = |set: bool, flag: &str, engine: &str| -> Result<()> {
        if set && spec.engine != engine {
            bail!("{flag} applies to the {engine} engine only");
        }
        Ok(())
    };
    only(spec.block_interval.is_some(), "--block-interval-ms", "pow")?;
    only(spec.confirmations.is_some(), "--confirmations", "pow")?;
    only(spec.epoch_length.is_some(), "--epoch-length", "pos")?;
    let mut g = Genesis::new(
        spec.chain_id.clone(),
        spec.engine.clone(),
        medchain_app::now_ms(),
        Vec::new(),
    );
    if let Some(interval) = spec.block_interval {
        if interval.is_zero() {
            bail!("--block-interval-ms must be positive");
        }
        g.pow.block_interval = interval;
    }
    if let Some(k) = spec.confirmations {
        if k == 0 {
            bail!("--confirmations must be at least 1");
        }
        g.pow.confirmations = k;
    }
    if let Some(n) = spec.epoch_length {
        if n == 0 {
            bail!("--epoch-length must be at least 1");
        }
        g.pos.epoch_length = n;
    }
    // The chain id is checked as the node checks it.
    let mut probe = g.clone();
    probe.validators.push(Validator {
        name: "probe".into(),
        key: PublicKey([1; 32]),
        p2p: PeerAddr::parse("127.0.0.1:1")?,
        api: "http://127.0.0.1:1".into(),
    });
    probe.check()?;
    Ok(g)
}

/// Adds validator `v` to `g` (with `stake` under proof of stake: [`STAKE_DEFAULT`] when none is
/// given; refused for the other engines). Refuses a key, name or peer address already listed.
pub fn add_validator(g: &mut Genesis, v: Validator, stake: Option<u64>) -> Result<()> {
    if v.name.trim().is_empty() || v.name.len() > 64 {
        bail!("--name: 1 to 64 characters");
    }
    if !(v.api.starts_with("http://") || v.api.starts_with("https://")) {
        bail!("--api {:?}: an http:// or https:// URL", v.api);
    }
    if let Some(other) = g
        .validators
        .iter()
        .find(|o| o.key == v.key || o.name == v.name || o.p2p.to_string() == v.p2p.to_string())
    {
        bail!(
            "validator {:?} already has this key, name or peer address",
            other.name
        );
    }
    match (g.engine.as_str(), stake) {
        ("pos", stake) => {
            let stake = stake.unwrap_or(STAKE_DEFAULT);
            if stake == 0 {
                bail!("--stake must be positive (a validator without stake never votes)");
            }
            g.pos.stakes.push(StakeEntry { key: v.key, stake });
        }
        (engine, Some(_)) => bail!("--stake applies to proof of stake, not {engine}"),
        _ => {}
    }
    g.validators.push(v);
    Ok(())
}

/// Reads a draft genesis file (see [`Genesis::parse_draft`]).
pub fn load_draft(path: &Path) -> Result<Genesis> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read genesis file {}", path.display()))?;
    Genesis::parse_draft(&text).with_context(|| format!("genesis file {}", path.display()))
}

/// `medchain genesis new`: writes a draft to `path` (refusing to replace one unless `force`).
pub fn cmd_new(spec: &NewChain, path: &Path, force: bool) -> Result<()> {
    if path.exists() && !force {
        bail!("{} exists; use --force to start a new one", path.display());
    }
    let g = new_draft(spec)?;
    g.save(path)?;
    println!(
        "{}: chain {}, engine {}; add the validators next (genesis add-validator)",
        path.display(),
        g.chain_id,
        g.engine
    );
    Ok(())
}

/// What `genesis add-validator` is given.
#[derive(Debug, Clone)]
pub struct NewValidator {
    /// Its public key (hex).
    pub pubkey: String,
    /// `HOST:PORT` where peers reach it.
    pub p2p: String,
    /// Its API URL (`http://HOST:8700` when none).
    pub api: Option<String>,
    /// Its name (`node<i>` when none).
    pub name: Option<String>,
    /// Its stake (proof of stake).
    pub stake: Option<u64>,
}

/// `medchain genesis add-validator`.
pub fn cmd_add_validator(path: &Path, nv: &NewValidator) -> Result<()> {
    let mut g = load_draft(path)?;
    let key: PublicKey = nv
        .pubkey
        .parse()
        .map_err(|e| anyhow::anyhow!("--pubkey: {e}"))?;
    let p2p = PeerAddr::parse(&nv.p2p).context("--p2p")?;
    let api = nv
        .api
        .clone()
        .unwrap_or_else(|| format!("http://{}:8700", p2p.host()));
    let name = nv
        .name
        .clone()
        .unwrap_or_else(|| format!("node{}", g.validators.len()));
    let v = Validator {
        name,
        key,
        p2p,
        api,
    };
    add_validator(&mut g, v.clone(), nv.stake)?;
    g.save(path)?;
    println!(
        "{}: validator {} added ({} in all): key {}, p2p {}, api {}",
        path.display(),
        v.name,
        g.validators.len(),
        v.key,
        v.p2p,
        v.api
    );
    Ok(())
}

/// `medchain genesis show`: the document, checked and sealed as a node would, with its hash.
pub fn cmd_show(path: &Path, apps: &[Arc<dyn App>]) -> Result<()> {
    let g = complete(path, apps)?;
    print!("{}", g.to_toml()?);
    println!("# genesis hash: {}", g.block().hash());
    Ok(())
}

/// `medchain genesis hash`: the hash of block 0, which every member compares out of band.
pub fn cmd_hash(path: &Path, apps: &[Arc<dyn App>]) -> Result<()> {
    println!("{}", complete(path, apps)?.block().hash());
    Ok(())
}

/// The document at `path`, checked and sealed (an error names what a draft still lacks).
fn complete(path: &Path, apps: &[Arc<dyn App>]) -> Result<Genesis> {
    let mut g = load_draft(path)?;
    if g.validators.is_empty() {
        bail!(
            "{} has no validators yet (genesis add-validator)",
            path.display()
        );
    }
    g.seal(apps)
        .with_context(|| format!("genesis file {}", path.display()))?;
    Ok(g)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(engine: &str) -> NewChain {
        NewChain {
            chain_id: "ceremony".into(),
            engine: engine.into(),
            block_interval: None,
            confirmations: None,
            epoch_length: None,
        }
    }

    fn validator(i: u8, p2p: &str) -> Validator {
        Validator {
            name: format!("hospital-{i}"),
            key: medchain_types::SecretKey::from_seed([i; 32]).public(),
            p2p: PeerAddr::parse(p2p).unwrap(),
            api: format!("https://h{i}.example:8700"),
        }
    }

    /// A draft takes validators by DNS name or address, each once; stakes only under proof of
    /// stake; the result seals like any genesis and survives a round trip through the file.
    #[test]
    fn a_draft_grows_into_a_genesis_from_public_data() {
        let mut g = new_draft(&spec("pos")).unwrap();
        add_validator(&mut g, validator(1, "st-mary.example:7700"), Some(300)).unwrap();
        add_validator(&mut g, validator(2, "10.0.0.2:7700"), None).unwrap();
        assert!(add_validator(&mut g, validator(1, "other:7700"), None).is_err());
        let mut same_addr = validator(3, "st-mary.example:7700");
        same_addr.name = "another".into();
        assert!(add_validator(&mut g, same_addr, None).is_err());
        assert!(add_validator(&mut g, validator(4, "h4:7700"), Some(0)).is_err());
        assert_eq!(
            g.pos.stakes.iter().map(|e| e.stake).collect::<Vec<_>>(),
            [300, STAKE_DEFAULT]
        );
        let text = g.to_toml().unwrap();
        let sealed = Genesis::parse(&text, &[]).unwrap();
        assert_eq!(
            Genesis::parse(&sealed.to_toml().unwrap(), &[]).unwrap(),
            sealed
        );
        assert_eq!(sealed.validators[0].p2p.to_string(), "st-mary.example:7700");

        let mut pbft = new_draft(&spec("pbft")).unwrap();
        assert!(add_validator(&mut pbft, validator(1, "a:7700"), Some(5)).is_err());
        let mut bad = spec("pbft");
        bad.epoch_length = Some(10);
        assert!(
            new_draft(&bad).is_err(),
            "an engine's parameter for another"
        );
        assert!(new_draft(&spec("raft")).is_err());
        let mut id = spec("pbft");
        id.chain_id = "Not An Id".into();
        assert!(new_draft(&id).is_err());
    }

    /// Peer addresses: IP addresses as before (sealed the same), DNS names, nothing else.
    #[test]
    fn peer_addresses_are_addresses_or_dns_names() {
        for good in [
            "st-mary:7700",
            "node-0.peers.medchain.svc.cluster.local:7700",
            "a:1",
        ] {
            assert!(
                matches!(PeerAddr::parse(good), Ok(PeerAddr::Name(_))),
                "{good}"
            );
        }
        let ip = PeerAddr::parse("10.1.2.3:7700").unwrap();
        assert!(matches!(ip, PeerAddr::Ip(_)));
        let bare: std::net::SocketAddr = "10.1.2.3:7700".parse().unwrap();
        assert_eq!(
            medchain_types::codec::encode(&ip),
            medchain_types::codec::encode(&bare),
            "an address seals as it always did"
        );
        for bad in [
            "st-mary",
            "st_mary:7700",
            "-a:7700",
            "a:0",
            "a:70000",
            ":7700",
            "a..b:1",
        ] {
            assert!(PeerAddr::parse(bad).is_err(), "{bad}");
        }
    }
}
