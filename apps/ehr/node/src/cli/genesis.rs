//! `medchain genesis add-admin`: the health-record app's step of the key ceremony, naming a
//! consortium administrator (who approves hospitals) in the genesis section `[ehr]`.

use crate::EhrGenesis;
use anyhow::{bail, Context, Result};
use medchain_types::PublicKey;
use std::path::PathBuf;

/// Add a consortium administrator of the health-record app (it approves and suspends
/// hospitals and appoints verifiers) to the genesis document, by its public key (`medchain
/// keygen` on the administrator's own machine).
#[derive(clap::Parser, Debug)]
#[command(name = "add-admin")]
pub struct GenesisAddAdmin {
    /// The administrator's public key (64 hex characters).
    #[arg(long)]
    pubkey: String,
    /// The genesis file.
    #[arg(long, default_value = "genesis.toml")]
    file: PathBuf,
}

/// Runs `medchain genesis add-admin`: edits the `[ehr]` section, leaving the rest as it is.
pub fn run(args: GenesisAddAdmin) -> Result<()> {
    let key: PublicKey = args
        .pubkey
        .parse()
        .map_err(|e| anyhow::anyhow!("--pubkey: {e}"))?;
    let path = &args.file;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read genesis file {}", path.display()))?;
    let mut doc: toml::Table = toml::from_str(&text)
        .with_context(|| format!("genesis file {} is not TOML", path.display()))?;
    let mut section = EhrGenesis::from_section(doc.get(medchain_ehr::chaincode::NAME))
        .map_err(anyhow::Error::msg)?;
    if section.admins.contains(&key) {
        bail!("{key} is already an administrator");
    }
    section.admins.push(key);
    doc.insert(
        medchain_ehr::chaincode::NAME.to_owned(),
        toml::Value::try_from(&section).context("the [ehr] section")?,
    );
    let out = toml::to_string_pretty(&doc).context("the genesis document")?;
    std::fs::write(path, out).with_context(|| format!("cannot write {}", path.display()))?;
    println!(
        "{}: administrator {key} added ({} in all)",
        path.display(),
        section.admins.len()
    );
    Ok(())
}
