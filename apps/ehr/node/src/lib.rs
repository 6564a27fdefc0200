//! The health-record app as a medchain app (`medchain-ehr-node`): [`EhrApp`] gives the node the
//! `ehr` chaincode (with the consortium's administrators from the genesis section `[ehr]`), its
//! routes under `/api/v1/ehr/` (queries, the hospital search from an index of the approved
//! hospitals, verification, the vault with signed requests, peer fetch, the verifier's audit),
//! its commit hook (the index, erasure), expiry of blobs never anchored, the portal under
//! `/portal/`, its OpenAPI part, and the commands `medchain ehr ...`, `medchain bench docs` and
//! `medchain genesis add-admin`.

mod access;
mod cli;
mod directory;
mod erasure;
mod expiry;
mod fetch;
mod keystore;
mod portal;
mod routes;
mod state;
mod stream;

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches};
use medchain_app::{App, AppCommand, AppNode, CommittedBlock, Host, Pages, TestnetPart};
use medchain_chaincode::Chaincode;
use medchain_ehr::Ehr;
use medchain_types::{PublicKey, SecretKey};
use serde::{Deserialize, Serialize};
use state::EhrNode;
use std::path::Path;
use std::sync::Arc;

/// The app's OpenAPI part (its routes under `/api/v1/ehr/`).
const OPENAPI: &str = include_str!("openapi.json");

/// The genesis section `[ehr]`: the consortium's settings of the app.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EhrGenesis {
    /// Consortium administrators (they approve hospitals).
    #[serde(default)]
    pub admins: Vec<PublicKey>,
}

impl EhrGenesis {
    fn from_section(section: Option<&toml::Value>) -> Result<EhrGenesis, String> {
        section.map_or(Ok(EhrGenesis::default()), |s| {
            s.clone().try_into().map_err(|e| format!("[ehr]: {e}"))
        })
    }
}

/// The health-record app.
#[derive(Debug, Default, Clone, Copy)]
pub struct EhrApp;

impl App for EhrApp {
    fn name(&self) -> &'static str {
        medchain_ehr::chaincode::NAME
    }

    /// The section's canonical encoding; an absent section seals as an empty list of
    /// administrators, as the genesis of a consortium without them always did.
    fn genesis_seal(&self, section: Option<&toml::Value>) -> Result<Vec<u8>, String> {
        let g = EhrGenesis::from_section(section)?;
        Ok(medchain_types::codec::encode_into(&g, Vec::new()))
    }

    fn chaincodes(&self, section: Option<&toml::Value>) -> Result<Vec<Arc<dyn Chaincode>>, String> {
        let g = EhrGenesis::from_section(section)?;
        Ok(vec![Arc::new(Ehr::new(g.admins))])
    }

    /// The consortium administrator's key (`admin.json`, it approves hospitals).
    fn testnet(&self, dir: &Path, force: bool) -> anyhow::Result<TestnetPart> {
        let admin = SecretKey::generate(&mut rand::rngs::OsRng);
        let path = dir.join("admin.json");
        medchain_app::keyfile::write(&path, &admin, force)?;
        let section = toml::Value::try_from(EhrGenesis {
            admins: vec![admin.public()],
        })
        .context("the [ehr] genesis section")?;
        Ok(TestnetPart {
            section: Some(section),
            notes: vec![format!(
                "health-record administrator key: {}",
                path.display()
            )],
        })
    }

    fn openapi(&self) -> serde_json::Value {
        serde_json::from_str(OPENAPI).expect("the ehr OpenAPI part is JSON (a unit test checks it)")
    }

    fn pages(&self) -> Option<Pages> {
        Some(Pages {
            mount: "/portal",
            about:
                "hospitals, document verification, verifier audit, patient records, administrator",
            asset: portal::asset,
        })
    }

    fn commands(&self) -> Vec<AppCommand> {
        vec![
            AppCommand {
                parent: None,
                command: cli::EhrCli::command(),
            },
            AppCommand {
                parent: Some("bench"),
                command: cli::BenchDocs::command(),
            },
            AppCommand {
                parent: Some("genesis"),
                command: cli::GenesisAddAdmin::command(),
            },
        ]
    }

    fn run_command(
        &self,
        parent: Option<&str>,
        name: &str,
        matches: &clap::ArgMatches,
    ) -> anyhow::Result<()> {
        match (parent, name) {
            (None, "ehr") => cli::run(cli::EhrCli::from_arg_matches(matches)?),
            (Some("bench"), "docs") => cli::run_bench(cli::BenchDocs::from_arg_matches(matches)?),
            (Some("genesis"), "add-admin") => {
                cli::run_genesis_add_admin(cli::GenesisAddAdmin::from_arg_matches(matches)?)
            }
            _ => anyhow::bail!("the ehr app has no command {name}"),
        }
    }

    fn start(
        &self,
        host: Arc<dyn Host>,
        section: Option<&toml::Value>,
    ) -> anyhow::Result<Arc<dyn AppNode>> {
        let g = EhrGenesis::from_section(section).map_err(anyhow::Error::msg)?;
        let node = Arc::new(
            EhrNode::new(host, Ehr::new(g.admins))
                .map_err(|e| anyhow::anyhow!("reading the hospitals' directory: {e}"))?,
        );
        expiry::spawn(&node);
        Ok(node)
    }
}

impl AppNode for EhrNode {
    fn routes(self: Arc<Self>) -> axum::Router {
        routes::router(self)
    }

    fn committed(&self, block: &CommittedBlock) {
        erasure::on_committed(self, block);
        self.hospitals.on_committed(self.view().as_ref(), block);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The OpenAPI part documents exactly the routes the router declares.
    #[test]
    fn the_openapi_part_lists_exactly_the_routes() {
        use medchain_app::openapi::{documented, routes_in_source};
        let routed = routes_in_source(include_str!("routes/mod.rs"), "/api/v1/ehr");
        assert!(routed.len() >= 19, "the scan finds the routes: {routed:?}");
        assert_eq!(documented(&EhrApp.openapi()).unwrap(), routed);
    }

    /// Block 0 seals the section exactly as the genesis document's `[ehr]` table always was:
    /// a list of keys in canonical encoding (an empty one when the section is absent).
    #[test]
    fn the_genesis_section_seals_as_a_list_of_administrators() {
        let key = SecretKey::from_seed([5; 32]).public();
        let section = toml::Value::try_from(EhrGenesis { admins: vec![key] }).unwrap();
        let sealed = EhrApp.genesis_seal(Some(&section)).unwrap();
        let mut expected = vec![1u8]; // the list's length
        expected.extend_from_slice(&medchain_types::codec::encode_into(&key, Vec::new()));
        assert_eq!(sealed, expected);
        assert_eq!(EhrApp.genesis_seal(None).unwrap(), vec![0u8]);
        let bad: toml::Value = toml::from_str("admins = [\"not a key\"]").unwrap();
        assert!(EhrApp.genesis_seal(Some(&bad)).is_err());
    }
}
