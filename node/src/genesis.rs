//! The genesis document: the consortium's chain id, engine and parameters, its validators
//! (node keys with their peer and API addresses), and one section per app that has settings
//! (`[ehr]`, say). Every node of a consortium has the same file; its canonical encoding is
//! sealed into block 0, so nodes with different genesis files cannot share a chain.
//!
//! The seal is the node's own fields in canonical encoding, followed by each app's bytes (see
//! `App::genesis_seal`) in the order the binary lists the apps.

use anyhow::{bail, Context, Result};
use medchain_app::App;
use medchain_consensus::ValidatorSet;
use medchain_pbft::PbftConfig;
use medchain_pos::PosConfig;
use medchain_pow::PowConfig;
use medchain_types::{codec, is_valid_name, limits::CHAIN_ID_LEN_MAX, Block, Hash, PublicKey};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

/// Engines this build runs.
pub const ENGINES: &[&str] = &["pbft", "pow", "pos"];

/// The top-level keys of the node's own fields; every other top-level table is an app's.
const OWN_KEYS: [&str; 7] = [
    "chain_id",
    "engine",
    "time_ms",
    "validators",
    "pbft",
    "pow",
    "pos",
];

/// Where peers reach a validator: `HOST:PORT`, HOST an IP address or a DNS name (resolved at
/// each connection attempt, so a member's machine may change its address).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PeerAddr {
    /// An IP address and port (sealed as before names were allowed).
    Ip(SocketAddr),
    /// A DNS name and port.
    Name(String),
}

impl PeerAddr {
    /// Parses `HOST:PORT`: an IP address, or a DNS name (letters, digits, `-` and `.`, at
    /// most 253 characters) with a port from 1 to 65,535.
    pub fn parse(s: &str) -> Result<PeerAddr> {
        if let Ok(a) = s.parse::<SocketAddr>() {
            return Ok(PeerAddr::Ip(a));
        }
        let Some((host, port)) = s.rsplit_once(':') else {
            bail!("{s:?} is not HOST:PORT");
        };
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        if host.is_empty() || host.len() > 253 || !host.split('.').all(label_ok) {
            bail!("{host:?} in {s:?} is neither an IP address nor a DNS name");
        }
        match port.parse::<u16>() {
            Ok(p) if p > 0 => Ok(PeerAddr::Name(s.to_ascii_lowercase())),
            _ => bail!("the port in {s:?} must be 1 to 65535"),
        }
    }

    /// The port.
    pub fn port(&self) -> u16 {
        match self {
            PeerAddr::Ip(a) => a.port(),
            PeerAddr::Name(n) => n
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse().ok())
                .unwrap_or(0),
        }
    }

    /// The host (an IP address or a name), without the port.
    pub fn host(&self) -> String {
        match self {
            PeerAddr::Ip(a) => a.ip().to_string(),
            PeerAddr::Name(n) => n.rsplit_once(':').map_or(n.clone(), |(h, _)| h.to_owned()),
        }
    }
}

impl std::fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerAddr::Ip(a) => write!(f, "{a}"),
            PeerAddr::Name(n) => f.write_str(n),
        }
    }
}

/// One validator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validator {
    /// A label for humans (`node0`, `st-mary-hospital`).
    pub name: String,
    /// Its node key.
    pub key: PublicKey,
    /// Where peers reach it (QUIC over UDP).
    pub p2p: PeerAddr,
    /// Its HTTP API base URL.
    pub api: String,
}

/// The node's own fields of the genesis document, in the order they are sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Own {
    chain_id: String,
    engine: String,
    time_ms: u64,
    validators: Vec<Validator>,
    #[serde(default)]
    pbft: PbftConfig,
    #[serde(default)]
    pow: PowConfig,
    #[serde(default)]
    pos: PosConfig,
}

/// The genesis document.
#[derive(Debug, Clone, PartialEq)]
pub struct Genesis {
    /// The chain id (1 to 64 of `a-z 0-9 - _ .`).
    pub chain_id: String,
    /// `pbft`, `pow` or `pos`.
    pub engine: String,
    /// Genesis time, milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// The validators.
    pub validators: Vec<Validator>,
    /// PBFT parameters (used when `engine = "pbft"`).
    pub pbft: PbftConfig,
    /// Proof-of-work parameters (used when `engine = "pow"`).
    pub pow: PowConfig,
    /// Proof-of-stake parameters (used when `engine = "pos"`).
    pub pos: PosConfig,
    /// The apps' sections, by app name (only apps with settings have one).
    pub apps: BTreeMap<String, toml::Value>,
    /// The bytes block 0 seals: the node's fields and each app's, as checked by the apps.
    seal: Vec<u8>,
}

impl Genesis {
    /// A genesis document; `seal` it with the apps before use.
    pub fn new(
        chain_id: String,
        engine: String,
        time_ms: u64,
        validators: Vec<Validator>,
    ) -> Genesis {
        Genesis {
            chain_id,
            engine,
            time_ms,
            validators,
            pbft: PbftConfig::default(),
            pow: PowConfig::default(),
            pos: PosConfig::default(),
            apps: BTreeMap::new(),
            seal: Vec::new(),
        }
    }

    /// Reads a genesis file, checks it, and seals it with `apps` (which check their sections).
    pub fn load(path: &Path, apps: &[Arc<dyn App>]) -> Result<Genesis> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read genesis file {}", path.display()))?;
        let g = Genesis::parse(&text, apps)
            .with_context(|| format!("genesis file {}", path.display()))?;
        Ok(g)
    }

    /// Parses a genesis document, checks it, and seals it with `apps`.
    pub fn parse(text: &str, apps: &[Arc<dyn App>]) -> Result<Genesis> {
        let mut g = Genesis::parse_draft(text)?;
        g.seal(apps)?;
        Ok(g)
    }

    /// Parses a genesis document that may still be incomplete (the key ceremony's draft, with no
    /// validators yet): neither checked nor sealed.
    pub fn parse_draft(text: &str) -> Result<Genesis> {
        let mut table: toml::Table = toml::from_str(text).context("not a valid genesis file")?;
        let mut own = toml::Table::new();
        for key in OWN_KEYS {
            if let Some(v) = table.remove(key) {
                own.insert(key.to_owned(), v);
            }
        }
        let own: Own = own.try_into().context("not a valid genesis file")?;
        Ok(Genesis {
            chain_id: own.chain_id,
            engine: own.engine,
            time_ms: own.time_ms,
            validators: own.validators,
            pbft: own.pbft,
            pow: own.pow,
            pos: own.pos,
            apps: table.into_iter().collect(),
            seal: Vec::new(),
        })
    }

    /// Checks the document and computes the bytes block 0 seals: the node's fields, then each
    /// app's section as the app encodes it. A section no app of this build knows is not sealed
    /// (with a warning).
    pub fn seal(&mut self, apps: &[Arc<dyn App>]) -> Result<()> {
        self.check()?;
        for unknown in self
            .apps
            .keys()
            .filter(|k| !apps.iter().any(|a| a.name() == k.as_str()))
        {
            // Not sealed: a member whose build has that app seals it, derives another block 0,
            // and so cannot join this node's chain by mistake.
            tracing::warn!(
                section = %unknown,
                "a genesis section no app of this build knows is ignored"
            );
        }
        let mut seal = codec::encode(&self.own());
        for app in apps {
            let bytes = app
                .genesis_seal(self.app_section(app.name()))
                .map_err(|e| anyhow::anyhow!("the {} app's section: {e}", app.name()))?;
            seal.extend_from_slice(&bytes);
        }
        self.seal = seal;
        Ok(())
    }

    fn own(&self) -> Own {
        Own {
            chain_id: self.chain_id.clone(),
            engine: self.engine.clone(),
            time_ms: self.time_ms,
            validators: self.validators.clone(),
            pbft: self.pbft.clone(),
            pow: self.pow.clone(),
            pos: self.pos.clone(),
        }
    }

    /// The section of app `name`, if the document has one.
    pub fn app_section(&self, name: &str) -> Option<&toml::Value> {
        self.apps.get(name)
    }

    /// The document as TOML: the node's fields, then the apps' sections.
    pub fn to_toml(&self) -> Result<String> {
        let mut text = toml::to_string_pretty(&self.own())?;
        if !self.apps.is_empty() {
            let apps: toml::Table = self.apps.clone().into_iter().collect();
            text.push('\n');
            text.push_str(&toml::to_string_pretty(&apps)?);
        }
        Ok(text)
    }

    /// Writes the genesis file.
    pub fn save(&self, path: &Path) -> Result<()> {
        std::fs::write(path, self.to_toml()?)
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// Checks names, engine and validators.
    pub fn check(&self) -> Result<()> {
        if !is_valid_name(&self.chain_id, CHAIN_ID_LEN_MAX) {
            bail!(
                "chain_id {:?} must be 1 to 64 characters of a-z 0-9 - _ .",
                self.chain_id
            );
        }
        if !ENGINES.contains(&self.engine.as_str()) {
            bail!(
                "engine {:?} is not available (this build supports: {})",
                self.engine,
                ENGINES.join(", ")
            );
        }
        self.validator_set()?;
        for v in &self.validators {
            if let PeerAddr::Name(n) = &v.p2p {
                PeerAddr::parse(n).with_context(|| format!("validator {:?}: p2p", v.name))?;
            }
        }
        Ok(())
    }

    /// The validator set.
    pub fn validator_set(&self) -> Result<ValidatorSet> {
        ValidatorSet::new(self.validators.iter().map(|v| v.key))
            .map_err(|e| anyhow::anyhow!("validators: {e}"))
    }

    /// The validator with this key.
    pub fn validator(&self, key: &PublicKey) -> Option<&Validator> {
        self.validators.iter().find(|v| v.key == *key)
    }

    /// Block 0: no transactions; its seal is the document's canonical encoding (see
    /// [`Genesis::seal`], which must have run).
    pub fn block(&self) -> Block {
        assert!(
            !self.seal.is_empty(),
            "the genesis document is sealed before use"
        );
        Block::build(
            0,
            Hash::ZERO,
            0,
            Hash::ZERO,
            self.time_ms,
            PublicKey([0; 32]),
            self.seal.clone(),
            vec![],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for an app with a section: seals it as a list of keys.
    struct Listed;

    impl App for Listed {
        fn name(&self) -> &'static str {
            "listed"
        }
        fn genesis_seal(&self, section: Option<&toml::Value>) -> Result<Vec<u8>, String> {
            let keys: Vec<PublicKey> = match section {
                None => Vec::new(),
                Some(s) => s
                    .get("keys")
                    .cloned()
                    .ok_or("no keys")?
                    .try_into()
                    .map_err(|e: toml::de::Error| e.to_string())?,
            };
            Ok(codec::encode_into(&keys, Vec::new()))
        }
        fn start(
            &self,
            _host: Arc<dyn medchain_app::Host>,
            _section: Option<&toml::Value>,
        ) -> Result<Arc<dyn medchain_app::AppNode>> {
            anyhow::bail!("not started in these tests")
        }
    }

    fn document(with_section: bool) -> String {
        let mut g = Genesis::new(
            "gen-test".into(),
            "pbft".into(),
            1_700_000_000_000,
            vec![Validator {
                name: "node0".into(),
                key: medchain_types::SecretKey::from_seed([1; 32]).public(),
                p2p: PeerAddr::parse("127.0.0.1:7700").unwrap(),
                api: "http://127.0.0.1:8700".into(),
            }],
        );
        if with_section {
            let key = medchain_types::SecretKey::from_seed([2; 32]).public();
            let section: toml::Value = toml::from_str(&format!("keys = [\"{key}\"]")).unwrap();
            g.apps.insert("listed".into(), section);
        }
        g.to_toml().unwrap()
    }

    /// The seal is the node's fields followed by the app's bytes, the same after a round trip
    /// through the file; an unknown section is refused.
    #[test]
    fn apps_sections_round_trip_and_are_sealed_after_the_node_fields() {
        let apps: Vec<Arc<dyn App>> = vec![Arc::new(Listed)];
        let text = document(true);
        let g = Genesis::parse(&text, &apps).unwrap();
        let again = Genesis::parse(&g.to_toml().unwrap(), &apps).unwrap();
        assert_eq!(g, again);
        let mut expected = codec::encode(&g.own());
        expected.extend(Listed.genesis_seal(g.app_section("listed")).unwrap());
        assert_eq!(g.block().header.seal, expected);
        // Without the section, the app seals its default.
        let plain = Genesis::parse(&document(false), &apps).unwrap();
        assert_eq!(plain.block().header.seal.last(), Some(&0u8));
        assert_ne!(plain.block().hash(), g.block().hash());
        // A section no app of the build knows is not sealed: the seal is the node's fields only.
        let alone = Genesis::parse(&text, &[]).unwrap();
        assert_eq!(alone.block().header.seal, codec::encode(&g.own()));
    }
}
