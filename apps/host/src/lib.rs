//! The app boundary: what an application gives a medchain node, and what the node gives it.
//!
//! An app is a value implementing [`App`]. The `medchain` binary lists its apps once; the node
//! crate knows none of them by name and drives them only through this crate:
//!
//! - **before any node runs** ([`App`]): its genesis section (checked, and sealed into block 0),
//!   its chaincodes, its part of `medchain testnet`, its OpenAPI part, its static pages and its
//!   CLI commands;
//! - **on a running node** ([`App::start`] gives an [`AppNode`]): its HTTP routes, mounted under
//!   `/api/v1/<name>/`, and a hook on committed blocks, which runs on a thread of its own (never
//!   the engine's), in height order, at least once per block (replayed after a restart);
//! - **from the node** ([`Host`]): chain id, node identity and signatures with its key, the
//!   consortium's members, the data directory, read views of committed state, submit-and-wait,
//!   and signed requests to other members.
//!
//! Shared by apps and the node: [`ApiError`] (every route's error type: a status and
//! `{"error": ...}`), [`signed`] (signed HTTP requests), [`keyfile`] and [`client`] (a node's
//! HTTP API, for CLI commands).

mod app;
pub mod client;
mod error;
mod host;
pub mod keyfile;
pub mod openapi;
pub mod signed;

pub use app::{App, AppCommand, AppNode, Asset, CommittedBlock, Pages, TestnetPart};
pub use error::{ApiError, ApiResult};
pub use host::{Host, Member, SubmitError};

use std::future::Future;
use std::pin::Pin;

/// A boxed future, for the [`Host`] methods an app awaits through a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Milliseconds since the Unix epoch (the wall clock, which node sides and CLI commands may
/// read; chaincode never does).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Runs `future` to completion on a new multi-threaded tokio runtime: how a CLI command that
/// talks to a node over HTTP runs.
pub fn block_on<F: Future>(future: F) -> anyhow::Result<F::Output> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(future))
}
