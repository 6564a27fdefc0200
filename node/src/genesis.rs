//! The genesis document: the consortium's chain id, engine and parameters, and its validators
//! (node keys with their peer and API addresses). Every node of a consortium has the same file;
//! its canonical encoding is sealed into block 0, so nodes with different genesis files cannot
//! share a chain.

use anyhow::{bail, Context, Result};
use medchain_consensus::ValidatorSet;
use medchain_pbft::PbftConfig;
use medchain_pos::PosConfig;
use medchain_pow::PowConfig;
use medchain_types::{codec, is_valid_name, limits::CHAIN_ID_LEN_MAX, Block, Hash, PublicKey};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::Path;

/// Engines this build runs.
pub const ENGINES: &[&str] = &["pbft", "pow", "pos"];

/// One validator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validator {
    /// A label for humans (`node0`, `st-mary-hospital`).
    pub name: String,
    /// Its node key.
    pub key: PublicKey,
    /// Where peers reach it (QUIC).
    pub p2p: SocketAddr,
    /// Its HTTP API base URL.
    pub api: String,
}

/// The genesis document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Genesis {
    /// The chain id (1 to 64 of `a-z 0-9 - _ .`).
    pub chain_id: String,
    /// `pbft` (`pow` and `pos` come with their engines).
    pub engine: String,
    /// Genesis time, milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// The validators.
    pub validators: Vec<Validator>,
    /// PBFT parameters (used when `engine = "pbft"`).
    #[serde(default)]
    pub pbft: PbftConfig,
    /// Proof-of-work parameters (used when `engine = "pow"`).
    #[serde(default)]
    pub pow: PowConfig,
    /// Proof-of-stake parameters (used when `engine = "pos"`).
    #[serde(default)]
    pub pos: PosConfig,
    /// The health-record app's settings.
    #[serde(default)]
    pub ehr: EhrGenesis,
}

/// The health-record app's consortium settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EhrGenesis {
    /// Consortium administrators (they approve hospitals).
    #[serde(default)]
    pub admins: Vec<PublicKey>,
}

impl Genesis {
    /// Reads and checks a genesis file.
    pub fn load(path: &Path) -> Result<Genesis> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read genesis file {}", path.display()))?;
        let g: Genesis = toml::from_str(&text)
            .with_context(|| format!("{} is not a valid genesis file", path.display()))?;
        g.check()
            .with_context(|| format!("genesis file {}", path.display()))?;
        Ok(g)
    }

    /// Writes the genesis file.
    pub fn save(&self, path: &Path) -> Result<()> {
        std::fs::write(path, toml::to_string_pretty(self)?)
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

    /// Block 0: no transactions; its seal is this document's canonical encoding.
    pub fn block(&self) -> Block {
        Block::build(
            0,
            Hash::ZERO,
            0,
            Hash::ZERO,
            self.time_ms,
            PublicKey([0; 32]),
            codec::encode(self),
            vec![],
        )
    }
}
