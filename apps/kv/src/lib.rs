//! The built-in `kv` chaincode as an app (`medchain-kv-app`): its query route `GET
//! /api/v1/kv/{key}` and the commands `medchain kv put|get`. The chaincode itself is a built-in
//! of every executor (`medchain_chaincode::builtin::Kv`), so this app installs none; it shows
//! the smallest use of the app boundary: a route over a state view, an OpenAPI part, commands.

use anyhow::{bail, Result};
use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use medchain_app::client::{error_text, signed_tx, Client};
use medchain_app::{ApiError, ApiResult, App, AppCommand, AppNode, Host};
use medchain_chaincode::builtin::{Kv, KvOp, KvQuery};
use medchain_chaincode::{Chaincode, ChaincodeError};
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;

/// The `kv` app.
#[derive(Debug, Default, Clone, Copy)]
pub struct KvApp;

/// Use the built-in key-value chaincode.
#[derive(Parser, Debug)]
#[command(name = "kv")]
struct KvCli {
    #[command(subcommand)]
    command: KvCommand,
}

#[derive(Subcommand, Debug)]
enum KvCommand {
    /// Store VALUE at KEY (a signed `kv` transaction; waits for its commit).
    Put {
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// A node's API URL.
        #[arg(long, default_value = "http://127.0.0.1:8700")]
        node: String,
        /// The signing key file (`medchain keygen`; `medchain up` writes client.json).
        #[arg(long)]
        key_file: PathBuf,
    },
    /// Print the value at KEY (exit 1 if it is not set).
    Get {
        /// The key.
        key: String,
        /// A node's API URL.
        #[arg(long, default_value = "http://127.0.0.1:8700")]
        node: String,
    },
}

impl App for KvApp {
    fn name(&self) -> &'static str {
        "kv"
    }

    fn openapi(&self) -> serde_json::Value {
        json!({
            "paths": {
                "/api/v1/kv/{key}": {
                    "get": {
                        "tags": ["kv"],
                        "summary": "The value the kv chaincode holds at a key",
                        "parameters": [{
                            "name": "key",
                            "in": "path",
                            "required": true,
                            "description": "the key as text, or `0x` and its bytes in hex",
                            "schema": { "type": "string" }
                        }],
                        "responses": {
                            "200": {
                                "description": "the value",
                                "content": { "application/json": { "schema": {
                                    "type": "object",
                                    "required": ["key", "value_hex"],
                                    "properties": {
                                        "key": { "type": "string" },
                                        "value_hex": { "type": "string" },
                                        "value_utf8": { "type": ["string", "null"] }
                                    }
                                } } }
                            },
                            "400": { "description": "the key is not valid hex after `0x`", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } },
                            "404": { "description": "no value at that key", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } }
                        }
                    }
                }
            },
            "tags": [{ "name": "kv", "description": "the built-in key-value chaincode" }]
        })
    }

    fn commands(&self) -> Vec<AppCommand> {
        vec![AppCommand {
            parent: None,
            command: KvCli::command(),
        }]
    }

    fn run_command(
        &self,
        _parent: Option<&str>,
        _name: &str,
        matches: &clap::ArgMatches,
    ) -> Result<()> {
        match KvCli::from_arg_matches(matches)?.command {
            KvCommand::Put {
                key,
                value,
                node,
                key_file,
            } => medchain_app::block_on(put(&node, &key_file, &key, &value))?,
            KvCommand::Get { key, node } => medchain_app::block_on(get_value(&node, &key))?,
        }
    }

    fn start(
        &self,
        host: Arc<dyn Host>,
        _section: Option<&toml::Value>,
    ) -> Result<Arc<dyn AppNode>> {
        Ok(Arc::new(KvNode { host }))
    }
}

/// The app on one node.
struct KvNode {
    host: Arc<dyn Host>,
}

impl AppNode for KvNode {
    fn routes(self: Arc<Self>) -> Router {
        Router::new().route("/{key}", get(value)).with_state(self)
    }
}

/// A key in a path: text, or `0x` and hex.
fn key_bytes(key: &str) -> Result<Vec<u8>, ApiError> {
    match key.strip_prefix("0x") {
        Some(h) => hex::decode(h).map_err(|e| ApiError::bad_request(format!("key: bad hex: {e}"))),
        None => Ok(key.as_bytes().to_vec()),
    }
}

/// `GET /api/v1/kv/{key}`: the chaincode's own `Get` query over its committed state.
async fn value(State(node): State<Arc<KvNode>>, Path(key): Path<String>) -> ApiResult {
    let raw = key_bytes(&key)?;
    let view = node.host.state("kv");
    let answer = Kv
        .query(view.as_ref(), &Kv::request(&KvQuery::Get { key: raw }))
        .and_then(|r| Kv::decode_get(&r))
        .map_err(|e| match e {
            ChaincodeError::Storage(_) => ApiError::internal(e),
            e => ApiError::bad_request(e.to_string()),
        })?;
    let value = answer.ok_or_else(|| ApiError::not_found("no value at that key"))?;
    Ok(Json(json!({
        "key": key,
        "value_hex": hex::encode(&value),
        "value_utf8": std::str::from_utf8(&value).ok(),
    }))
    .into_response())
}

/// `medchain kv put`.
async fn put(node: &str, key_file: &std::path::Path, key: &str, value: &str) -> Result<()> {
    let signer = medchain_app::keyfile::read(key_file)?;
    let client = Client::new(node)?;
    let chain = client.chain_id().await?;
    let op = KvOp::Put {
        key: key.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
    };
    let tx = signed_tx(&chain, "kv", Kv::payload(&op), &signer);
    let (code, v) = client.submit(&[tx], true).await?;
    if !code.is_success() {
        bail!("HTTP {code}: {}", error_text(&v));
    }
    let r = &v["receipts"][0];
    if r.is_null() {
        bail!("not committed yet: {v}");
    }
    println!(
        "committed: tx {} at height {} ({})",
        r["tx_hash"].as_str().unwrap_or("?"),
        r["height"],
        r["status"]
    );
    Ok(())
}

/// `medchain kv get`: prints the value, or fails if the key is not set.
async fn get_value(node: &str, key: &str) -> Result<()> {
    let client = Client::new(node)?;
    let path = format!(
        "/api/v1/kv/{}",
        if key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b))
        {
            key.to_owned()
        } else {
            format!("0x{}", hex::encode(key))
        }
    );
    let (code, v) = client.get(&path).await?;
    match code.as_u16() {
        200 => {
            match v["value_utf8"].as_str() {
                Some(s) => println!("{s}"),
                None => println!("0x{}", v["value_hex"].as_str().unwrap_or("")),
            }
            Ok(())
        }
        // The route's own 404 (a node without this app answers "no such endpoint").
        404 if error_text(&v).contains("no value") => bail!("{key:?} is not set"),
        _ => bail!("HTTP {code}: {}", error_text(&v)),
    }
}
