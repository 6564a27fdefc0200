//! What this node gives its apps: the [`Host`] of the app boundary.

use super::{AdmitError, Shared};
use medchain_app::signed::{headers_signed_by, DOMAIN_REQUEST};
use medchain_app::{BoxFuture, Host, Member, SubmitError};
use medchain_chaincode::StateView;
use medchain_types::{Domain, PublicKey, Receipt, Signature, Transaction};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The node, as its apps see it.
pub struct NodeHost {
    shared: Arc<Shared>,
    members: Vec<Member>,
    /// For requests to other members (one connection pool for all apps).
    http: reqwest::Client,
}

impl std::fmt::Debug for NodeHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NodeHost({})", self.shared.me)
    }
}

impl NodeHost {
    /// The host of the node `shared` (its calls to other members trust `[api] ca_file`, else
    /// the system's roots, for https:// members).
    pub fn new(shared: Arc<Shared>) -> anyhow::Result<NodeHost> {
        let members = shared
            .genesis
            .validators
            .iter()
            .map(|v| Member {
                name: v.name.clone(),
                key: v.key,
                api: v.api.trim_end_matches('/').to_owned(),
            })
            .collect();
        let http =
            medchain_app::client::http_builder(shared.config.api.ca_file.as_deref())?.build()?;
        Ok(NodeHost {
            shared,
            members,
            http,
        })
    }
}

impl Host for NodeHost {
    fn chain_id(&self) -> &str {
        &self.shared.genesis.chain_id
    }

    fn node_id(&self) -> PublicKey {
        self.shared.me
    }

    fn sign(&self, domain: Domain, message: &[u8]) -> Signature {
        self.shared.node_key.sign(domain, self.chain_id(), message)
    }

    fn members(&self) -> &[Member] {
        &self.members
    }

    fn data_dir(&self) -> &Path {
        &self.shared.config.node.data_dir
    }

    fn state(&self, namespace: &str) -> Box<dyn StateView + '_> {
        Box::new(self.shared.ledger.view(namespace))
    }

    fn submit(&self, txs: Vec<Transaction>) -> BoxFuture<'_, Result<Vec<Receipt>, SubmitError>> {
        Box::pin(async move {
            let admitted = self
                .shared
                .admit_async(txs, true)
                .await
                .map_err(|e| match e {
                    AdmitError::Invalid(..) => SubmitError::Invalid(e.to_string()),
                    AdmitError::Full | AdmitError::SenderFull | AdmitError::Stopping => {
                        SubmitError::Busy(e.to_string())
                    }
                })?;
            let limit = Duration::from_secs(self.shared.config.api.wait_commit_secs);
            let committed = self
                .shared
                .wait_committed(admitted.hashes, admitted.read, limit)
                .await
                .map_err(|e| SubmitError::Busy(e.to_string()))?
                .ok_or(SubmitError::Timeout(limit))?;
            Ok(committed
                .slots()
                .into_iter()
                .map(|i| {
                    committed.receipts[i]
                        .clone()
                        .expect("a complete wait has every receipt")
                })
                .collect())
        })
    }

    fn hooks_caught_up(&self, limit: Duration) -> BoxFuture<'_, bool> {
        Box::pin(self.shared.hooks.caught_up(limit))
    }

    fn peer_get<'a>(
        &'a self,
        peer: &'a Member,
        path: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<reqwest::Response, String>> {
        Box::pin(async move {
            let headers = headers_signed_by(
                self.shared.me,
                |bytes| self.sign(DOMAIN_REQUEST, bytes),
                &peer.key,
                "GET",
                path,
                None,
            );
            let mut req = self
                .http
                .get(format!("{}{path}", peer.api))
                .timeout(timeout);
            for (k, v) in headers {
                req = req.header(k, v);
            }
            req.send().await.map_err(|e| e.to_string())
        })
    }
}
