//! What an app gives the node: [`App`] (known before any node runs) and [`AppNode`] (its side of
//! one running node).

use crate::host::Host;
use medchain_chaincode::Chaincode;
use medchain_types::Receipt;
use std::path::Path;
use std::sync::Arc;

/// An application, as the `medchain` binary composes it. Every method but [`App::name`] has a
/// default that contributes nothing, so a small app implements only what it has.
pub trait App: Send + Sync + 'static {
    /// Its name, 1 to 32 characters of `a-z 0-9 -`: its routes are mounted under
    /// `/api/v1/<name>/`, its genesis section is `[<name>]`.
    fn name(&self) -> &'static str;

    /// Checks the app's genesis section (`None` when the genesis file has none) and returns the
    /// bytes block 0 seals for it: the node seals its own fields, then each app's bytes in the
    /// order the binary lists the apps, so every member with the same genesis file derives the
    /// same block 0. An app without settings returns no bytes.
    fn genesis_seal(&self, section: Option<&toml::Value>) -> Result<Vec<u8>, String> {
        match section {
            None => Ok(Vec::new()),
            Some(_) => Err(format!("the {} app takes no genesis section", self.name())),
        }
    }

    /// The chaincodes the app installs, given its genesis section (already checked by
    /// [`App::genesis_seal`]). Their names must not clash with the built-ins' or another app's.
    fn chaincodes(
        &self,
        _section: Option<&toml::Value>,
    ) -> Result<Vec<Arc<dyn Chaincode>>, String> {
        Ok(Vec::new())
    }

    /// Its part of a consortium that `medchain testnet` writes into `dir`: files it needs there
    /// (keys of its own roles, say) and its genesis section. `force` allows overwriting them.
    fn testnet(&self, _dir: &Path, _force: bool) -> anyhow::Result<TestnetPart> {
        Ok(TestnetPart::default())
    }

    /// Its part of the node's OpenAPI 3.1 document: an object with `paths` (absolute, under
    /// `/api/v1/<name>/`) and optionally `components` and `tags`; merged into the node's own.
    /// Schemas may refer to the node's `#/components/schemas/Error` and `Transaction`.
    fn openapi(&self) -> serde_json::Value {
        serde_json::json!({ "paths": {} })
    }

    /// Static pages the node serves, if any.
    fn pages(&self) -> Option<Pages> {
        None
    }

    /// The subcommands the app adds to `medchain`.
    fn commands(&self) -> Vec<AppCommand> {
        Vec::new()
    }

    /// Runs one of [`App::commands`]: `parent` and `name` say which, `matches` are its own
    /// arguments. Called on the main thread, outside any async runtime.
    fn run_command(
        &self,
        parent: Option<&str>,
        name: &str,
        _matches: &clap::ArgMatches,
    ) -> anyhow::Result<()> {
        anyhow::bail!(
            "the {} app has no command {}{name}",
            self.name(),
            parent.map(|p| format!("{p} ")).unwrap_or_default()
        )
    }

    /// Starts the app's side of a node (its per-node state lives in the value returned). Called
    /// inside the node's tokio runtime, after the ledger is open, before the API listens.
    fn start(
        &self,
        host: Arc<dyn Host>,
        section: Option<&toml::Value>,
    ) -> anyhow::Result<Arc<dyn AppNode>>;
}

/// An app's side of one running node.
pub trait AppNode: Send + Sync + 'static {
    /// Its HTTP routes, relative to `/api/v1/<name>` (so `/query` serves
    /// `/api/v1/<name>/query`), with their state applied. Errors should be [`crate::ApiError`]s.
    /// The node's body limit (`[api] body_max`) applies unless a route lifts it (streams).
    fn routes(self: Arc<Self>) -> axum::Router;

    /// Called for each committed block holding transactions of this app's chaincodes, in height
    /// order, on the node's hook thread (never the engine thread: it may do I/O). Delivery is at
    /// least once: after a crash the blocks since the last delivery recorded on disk come again,
    /// so the hook must be idempotent.
    fn committed(&self, _block: &CommittedBlock) {}
}

/// A committed block, as an app's hook sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedBlock {
    /// Its height.
    pub height: u64,
    /// Its time (milliseconds since the Unix epoch).
    pub time_ms: u64,
    /// The receipts of its transactions that call this app's chaincodes, in block order (each
    /// with its status, response and events).
    pub receipts: Vec<Receipt>,
}

/// A subcommand an app adds to the `medchain` CLI.
#[derive(Debug, Clone)]
pub struct AppCommand {
    /// `None` for a top-level command (`medchain ehr ...`), or the generic command it goes under
    /// (`Some("bench")` for `medchain bench docs`).
    pub parent: Option<&'static str>,
    /// The command, with its arguments and help.
    pub command: clap::Command,
}

/// Static pages an app serves (HTML, CSS, JavaScript), under a content security policy that
/// allows only the node's own origin.
#[derive(Debug, Clone, Copy)]
pub struct Pages {
    /// Where they are served: `/portal` serves `/portal/` (the index) and `/portal/{file}`;
    /// `/portal` itself redirects to `/portal/`.
    pub mount: &'static str,
    /// One line for humans (`medchain up` prints it beside the URL).
    pub about: &'static str,
    /// The file `name` (`""` is the index).
    pub asset: fn(&str) -> Option<Asset>,
}

/// A static file: its content type and bytes.
pub type Asset = (&'static str, &'static [u8]);

/// An app's part of a new consortium (see [`App::testnet`]).
#[derive(Debug, Clone, Default)]
pub struct TestnetPart {
    /// Its genesis section, if it has settings.
    pub section: Option<toml::Value>,
    /// Lines `medchain testnet` prints about what the app wrote (its keys, say).
    pub notes: Vec<String>,
}
