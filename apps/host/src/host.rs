//! What the node gives an app: [`Host`].

use crate::BoxFuture;
use medchain_chaincode::StateView;
use medchain_types::{Domain, PublicKey, Receipt, Signature, Transaction};
use std::path::Path;
use std::time::Duration;

/// A member of the consortium: a validator listed in genesis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its label (`node0`, `st-mary-hospital`).
    pub name: String,
    /// Its node key.
    pub key: PublicKey,
    /// Its HTTP API base URL.
    pub api: String,
}

/// Why [`Host::submit`] did not return receipts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// A transaction is malformed, for another chain, or badly signed.
    #[error("refused: {0}")]
    Invalid(String),
    /// The node cannot take more now (mempool full, too many waiting); retry later.
    #[error("busy: {0}")]
    Busy(String),
    /// Admitted, but not committed within the node's wait (`[api] wait_commit_secs`).
    #[error("not committed within {0:?}")]
    Timeout(Duration),
}

/// The node, as its apps see it. One per running node; apps hold it as `Arc<dyn Host>`.
pub trait Host: Send + Sync + 'static {
    /// The chain id (the domain of every signature on this chain).
    fn chain_id(&self) -> &str;

    /// This node's key.
    fn node_id(&self) -> PublicKey;

    /// Signs `message` with this node's key, under `domain` and the chain id (see
    /// `medchain_types::SecretKey::sign`). The key itself never leaves the node.
    fn sign(&self, domain: Domain, message: &[u8]) -> Signature;

    /// The consortium's members (genesis validators), this node among them.
    fn members(&self) -> &[Member];

    /// The node's data directory. An app keeps its files in it beside the ledger (`ledger/`),
    /// under names of its own.
    fn data_dir(&self) -> &Path;

    /// A read view of chaincode `namespace`'s committed state (what its queries see).
    fn state(&self, namespace: &str) -> Box<dyn StateView + '_>;

    /// Admits signed transactions as `POST /api/v1/txs?wait=commit` would and waits for their
    /// commits; returns their receipts in order.
    fn submit(&self, txs: Vec<Transaction>) -> BoxFuture<'_, Result<Vec<Receipt>, SubmitError>>;

    /// Waits until the apps' commit hooks ([`crate::AppNode::committed`]) have run for every
    /// block holding app transactions that was committed when it was called: `true`, or
    /// `false` once `limit` passed first. An app whose reads rest on what its hook keeps (an
    /// index) calls it so that a read right after a commit sees that commit.
    fn hooks_caught_up(&self, limit: Duration) -> BoxFuture<'_, bool>;

    /// `GET path` at another member's API, signed as this node (see [`crate::signed`]), with
    /// `timeout` for the whole response. The member's answer whatever its status; `Err` only
    /// when it could not be reached.
    fn peer_get<'a>(
        &'a self,
        peer: &'a Member,
        path: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<reqwest::Response, String>>;
}
