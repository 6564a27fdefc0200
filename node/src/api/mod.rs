//! The node's HTTP API (axum): the node's own routes, each app's routes mounted under
//! `/api/v1/<app>/`, the apps' static pages, and the OpenAPI document of all of them. Every
//! error is a JSON body `{"error": ...}` (`medchain_app::ApiError`) with a 4xx status for bad
//! requests; request bodies are size-limited (an app's streaming routes lift the limit) and
//! must keep moving; requests are capped in all and per client ([`limits`]), the operations
//! routes aside; connections are served by [`serve`] (header and idle timeouts).
//!
//! | method and path | what |
//! |---|---|
//! | `GET /healthz` | `ok` while the node runs |
//! | `GET /readyz` | 200 once connected to a quorum and caught up with what the engine learned, 503 with the reason before |
//! | `GET /api/v1/status` | node id, engine, height, last hash, view, leader, peers, mempool |
//! | `POST /api/v1/txs[?wait=commit]` | submit one signed transaction (JSON object), many (JSON array), or a canonical-encoded list (`application/octet-stream`); with `wait=commit` and `Accept: application/octet-stream`, the receipts come back canonical-encoded too |
//! | `GET /api/v1/txs/{hash}` | receipt, inclusion proof, block header and certificate |
//! | `GET /api/v1/blocks/{height\|latest}` | a block with its hash and certificate |
//! | `GET /api/v1/state/{chaincode}/{key}` | a state value (`key` as text, or `0x` + hex) |
//! | `GET /api/v1/openapi.json` | the OpenAPI document |
//! | `GET /metrics` | Prometheus text |

mod chain;
mod limits;
mod metrics;
mod openapi;
mod pages;
pub mod serve;
mod txs;

use crate::runtime::{MountedApp, Shared};
use axum::extract::DefaultBodyLimit;
use axum::http::{header, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use medchain_app::{ApiError, Pages};
use std::sync::Arc;

/// The router of a node with its started apps; `openapi` is the document to serve (see
/// [`openapi_document`]).
pub fn router(shared: Arc<Shared>, apps: &[MountedApp], openapi: String) -> Router {
    let api = &shared.config.api;
    let body_max = api.body_max;
    let limits = limits::Limits::new(api.requests_max, api.requests_per_client_max);
    // Operations routes: outside the request caps, so a saturated node still answers them.
    let ops = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(chain::ready))
        .route("/metrics", get(metrics::metrics))
        .with_state(shared.clone());
    let mut router = Router::new()
        .route("/api/v1/status", get(chain::status))
        .route("/api/v1/txs", post(txs::submit))
        .route("/api/v1/txs/{hash}", get(chain::transaction))
        .route("/api/v1/blocks/{id}", get(chain::block))
        .route("/api/v1/state/{chaincode}/{key}", get(chain::state))
        .route(
            "/api/v1/openapi.json",
            get(move || async move { ([(header::CONTENT_TYPE, "application/json")], openapi) }),
        )
        .with_state(shared);
    for app in apps {
        router = router.nest(&format!("/api/v1/{}", app.name), app.node.clone().routes());
    }
    let pages: Vec<Pages> = apps.iter().filter_map(|a| a.pages).collect();
    let limited = pages::mount(router, &pages)
        .fallback(|| async { ApiError::not_found("no such endpoint; see /api/v1/status") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this endpoint",
            )
        })
        .layer(DefaultBodyLimit::max(body_max))
        .layer(axum::middleware::from_fn_with_state(
            limits,
            limits::limit_requests,
        ));
    ops.merge(limited)
}

/// The OpenAPI document of a node with these apps.
pub fn openapi_document(apps: &[Arc<dyn medchain_app::App>]) -> String {
    let parts: Vec<_> = apps
        .iter()
        .map(|a| (a.name(), a.openapi(), a.pages()))
        .collect();
    openapi::document(&parts).to_string()
}
