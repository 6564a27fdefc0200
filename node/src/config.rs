//! Node configuration: a TOML file, with any setting overridable from the environment as
//! `MEDCHAIN__SECTION__KEY` (for example `MEDCHAIN__API__LISTEN=0.0.0.0:8080`).

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// `[node]`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeSection {
    /// Where the ledger lives.
    pub data_dir: PathBuf,
    /// The node key file.
    pub key_file: PathBuf,
    /// The consortium's genesis file.
    pub genesis: PathBuf,
}

/// `[network]`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetworkSection {
    /// QUIC listen address.
    pub listen: SocketAddr,
    /// Hard maximum of one message, bytes.
    #[serde(default = "default_frame_max")]
    pub frame_max: usize,
    /// Largest UDP payload QUIC's path MTU discovery may use (1,200–65,527; default 1,452,
    /// which fits Ethernet). `testnet` and `medchain up`, whose nodes talk over loopback, write
    /// 65,507. Raise it only where every path between the nodes carries such datagrams.
    #[serde(default = "default_udp_payload_max")]
    pub udp_payload_max: u16,
}

fn default_udp_payload_max() -> u16 {
    medchain_network::UDP_PAYLOAD_MAX_DEFAULT
}

/// `[api]`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiSection {
    /// HTTP listen address.
    pub listen: SocketAddr,
    /// Largest request body, bytes.
    #[serde(default = "default_body_max")]
    pub body_max: usize,
    /// How long `?wait=commit` waits, seconds.
    #[serde(default = "default_wait_secs")]
    pub wait_commit_secs: u64,
    /// Most requests served at once (a streamed download counts until its last byte); more get
    /// 429 at once instead of queueing without bound.
    #[serde(default = "default_requests_max")]
    pub requests_max: usize,
    /// Most of them from one client address (behind a proxy every client shares the proxy's
    /// address: raise it there, or set it to `requests_max`).
    #[serde(default = "default_requests_per_client_max")]
    pub requests_per_client_max: usize,
    /// How long a client may take to send a request's head, and stay idle between requests on
    /// a kept-alive connection, seconds.
    #[serde(default = "default_header_timeout_secs")]
    pub header_timeout_secs: u64,
    /// How long a request body may stall between two pieces, seconds.
    #[serde(default = "default_body_idle_secs")]
    pub body_idle_secs: u64,
    /// On SIGTERM or Ctrl-C, how long the requests in flight may take to finish before the node
    /// stops anyway, seconds.
    #[serde(default = "default_shutdown_grace_secs")]
    pub shutdown_grace_secs: u64,
    /// The API's TLS certificate chain (PEM): with `tls_key`, the API is served over https only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of `tls_cert` (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// CA certificates (PEM) this node trusts when it calls other members' https:// APIs
    /// (default: the system's roots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

/// `[mempool]`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MempoolSection {
    /// Most transactions waiting.
    #[serde(default = "default_mempool_txs")]
    pub txs_max: usize,
    /// Most bytes waiting.
    #[serde(default = "default_mempool_bytes")]
    pub bytes_max: usize,
    /// Most transactions waiting from one sender; unset, three quarters of `txs_max`.
    #[serde(default)]
    pub txs_per_sender_max: Option<usize>,
}

impl MempoolSection {
    /// The per-sender bound in force.
    pub fn sender_max(&self) -> usize {
        self.txs_per_sender_max
            .unwrap_or(self.txs_max / 4 * 3)
            .max(1)
    }
}

impl Default for MempoolSection {
    fn default() -> Self {
        MempoolSection {
            txs_max: default_mempool_txs(),
            bytes_max: default_mempool_bytes(),
            txs_per_sender_max: None,
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One line of text per event (colored on a terminal).
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `fields`, `span`...), for log shippers.
    Json,
}

/// `[log]`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogSection {
    /// `tracing` filter, e.g. `info` or `medchain=debug`.
    #[serde(default = "default_log_level")]
    pub level: String,
    /// `text` or `json`.
    #[serde(default)]
    pub format: LogFormat,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            level: default_log_level(),
            format: LogFormat::Text,
        }
    }
}

/// The whole node configuration.
/// `[mining]`: proof of work only.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MiningSection {
    /// Nonce-search threads (0: validate and relay, never mine).
    #[serde(default = "default_mining_threads")]
    pub threads: usize,
}

impl Default for MiningSection {
    fn default() -> Self {
        MiningSection {
            threads: default_mining_threads(),
        }
    }
}

fn default_mining_threads() -> usize {
    1
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeConfig {
    /// `[node]`
    pub node: NodeSection,
    /// `[network]`
    pub network: NetworkSection,
    /// `[api]`
    pub api: ApiSection,
    /// `[mempool]`
    #[serde(default)]
    pub mempool: MempoolSection,
    /// `[log]`
    #[serde(default)]
    pub log: LogSection,
    #[serde(default)]
    pub mining: MiningSection,
}

fn default_frame_max() -> usize {
    medchain_network::FRAME_MAX_DEFAULT
}
fn default_body_max() -> usize {
    16 << 20
}
fn default_wait_secs() -> u64 {
    60
}
fn default_requests_max() -> usize {
    2048
}
fn default_requests_per_client_max() -> usize {
    1024
}
fn default_header_timeout_secs() -> u64 {
    30
}
fn default_body_idle_secs() -> u64 {
    30
}
fn default_shutdown_grace_secs() -> u64 {
    20
}
fn default_mempool_txs() -> usize {
    200_000
}
fn default_mempool_bytes() -> usize {
    256 << 20
}
fn default_log_level() -> String {
    "info".into()
}

impl NodeConfig {
    /// Loads `path`, applies `MEDCHAIN__*` overrides, and resolves relative paths against the
    /// file's directory.
    pub fn load(path: &Path) -> Result<NodeConfig> {
        if !path.is_file() {
            anyhow::bail!("config file {} does not exist", path.display());
        }
        let cfg: NodeConfig = config::Config::builder()
            .add_source(config::File::from(path).format(config::FileFormat::Toml))
            .add_source(
                config::Environment::with_prefix("MEDCHAIN")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true),
            )
            .build()
            .with_context(|| format!("cannot read {}", path.display()))?
            .try_deserialize()
            .with_context(|| format!("{} is not a valid node configuration", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: &PathBuf| {
            if p.is_absolute() {
                p.clone()
            } else {
                base.join(p)
            }
        };
        if cfg.api.tls_cert.is_some() != cfg.api.tls_key.is_some() {
            anyhow::bail!(
                "{}: [api] tls_cert and tls_key go together (https needs both)",
                path.display()
            );
        }
        Ok(NodeConfig {
            node: NodeSection {
                data_dir: resolve(&cfg.node.data_dir),
                key_file: resolve(&cfg.node.key_file),
                genesis: resolve(&cfg.node.genesis),
            },
            api: ApiSection {
                tls_cert: cfg.api.tls_cert.as_ref().map(resolve),
                tls_key: cfg.api.tls_key.as_ref().map(resolve),
                ca_file: cfg.api.ca_file.as_ref().map(resolve),
                ..cfg.api.clone()
            },
            ..cfg
        })
    }

    /// Writes the configuration as TOML.
    pub fn save(&self, path: &Path) -> Result<()> {
        std::fs::write(path, toml::to_string_pretty(self)?)
            .with_context(|| format!("cannot write {}", path.display()))
    }
}
