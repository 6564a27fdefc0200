//! The medchain node (`medchain-node`): configuration, the runtime that drives a consensus
//! engine over the network and the ledger, the mempool, the HTTP API, metrics, the key
//! ceremony's genesis commands, local consortia, the load generator, and the command line. It knows no app: the `medchain` binary hands it
//! its list of apps, which it drives through `medchain-app`'s boundary.

pub mod api;
pub mod ceremony;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod genesis;

pub mod load;
pub mod mempool;
pub mod miner;
pub mod runtime;
pub mod verify;

/// The commit this node was built from (`unknown` outside a git checkout).
pub const BUILD_COMMIT: &str = env!("MEDCHAIN_COMMIT");
