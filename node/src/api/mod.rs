//! The node's HTTP API (axum): the node's own routes, each app's routes mounted under
//! `/api/v1/<app>/`, the apps' static pages, and the OpenAPI document of all of them. Every
//! error is a JSON body `{"error": ...}` (`medchain_app::ApiError`) with a 4xx status for bad
//! requests; request bodies are size-limited (an app's streaming routes lift the limit); at
//! most `[api] requests_max` requests are served at once.
//!
//! | method and path | what |
//! |---|---|
//! | `GET /healthz` | `ok` while the node runs |
//! | `GET /api/v1/status` | node id, engine, height, last hash, view, leader, peers, mempool |
//! | `POST /api/v1/txs[?wait=commit]` | submit one signed transaction (JSON object), many (JSON array), or a canonical-encoded list (`application/octet-stream`); with `wait=commit` and `Accept: application/octet-stream`, the receipts come back canonical-encoded too |
//! | `GET /api/v1/txs/{hash}` | receipt, inclusion proof, block header and certificate |
//! | `GET /api/v1/blocks/{height\|latest}` | a block with its hash and certificate |
//! | `GET /api/v1/state/{chaincode}/{key}` | a state value (`key` as text, or `0x` + hex) |
//! | `GET /api/v1/openapi.json` | the OpenAPI document |
//! | `GET /metrics` | Prometheus text |

mod chain;
mod metrics;
mod openapi;
mod pages;
mod txs;

use crate::runtime::{MountedApp, Shared};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use medchain_app::{ApiError, Pages};
use std::sync::Arc;

/// The router of a node with its started apps; `openapi` is the document to serve (see
/// [`openapi_document`]).
pub fn router(shared: Arc<Shared>, apps: &[MountedApp], openapi: String) -> Router {
    let body_max = shared.config.api.body_max;
    let slots = Arc::new(tokio::sync::Semaphore::new(shared.config.api.requests_max));
    let mut router = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/api/v1/status", get(chain::status))
        .route("/api/v1/txs", post(txs::submit))
        .route("/api/v1/txs/{hash}", get(chain::transaction))
        .route("/api/v1/blocks/{id}", get(chain::block))
        .route("/api/v1/state/{chaincode}/{key}", get(chain::state))
        .route("/metrics", get(metrics::metrics))
        .route(
            "/api/v1/openapi.json",
            get(move || async move { ([(header::CONTENT_TYPE, "application/json")], openapi) }),
        )
        .with_state(shared);
    for app in apps {
        router = router.nest(&format!("/api/v1/{}", app.name), app.node.clone().routes());
    }
    let pages: Vec<Pages> = apps.iter().filter_map(|a| a.pages).collect();
    pages::mount(router, &pages)
        .fallback(|| async { ApiError::not_found("no such endpoint; see /api/v1/status") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this endpoint",
            )
        })
        .layer(DefaultBodyLimit::max(body_max))
        .layer(axum::middleware::from_fn_with_state(slots, limit_requests))
}

/// The OpenAPI document of a node with these apps.
pub fn openapi_document(apps: &[Arc<dyn medchain_app::App>]) -> String {
    let parts: Vec<_> = apps
        .iter()
        .map(|a| (a.name(), a.openapi(), a.pages()))
        .collect();
    openapi::document(&parts).to_string()
}

/// Serves a request only while fewer than `api.requests_max` are being served (a response's
/// body included, so streamed downloads count until their last byte); otherwise 429 at once.
async fn limit_requests(
    State(slots): State<Arc<tokio::sync::Semaphore>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Ok(permit) = slots.try_acquire_owned() else {
        return ApiError::too_many("too many requests in flight on this node; retry shortly")
            .into_response();
    };
    let (parts, body) = next.run(req).await.into_parts();
    Response::from_parts(
        parts,
        axum::body::Body::new(Held {
            inner: body,
            _permit: permit,
        }),
    )
}

/// A response body that holds a request slot until it is done.
struct Held {
    inner: axum::body::Body,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl http_body::Body for Held {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod limit_tests {
    use super::*;
    use axum::routing::get;
    use std::time::Duration;

    #[tokio::test]
    async fn requests_beyond_the_limit_get_429_and_a_streamed_body_holds_its_slot() {
        let slots = Arc::new(tokio::sync::Semaphore::new(1));
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
        let rx = Arc::new(std::sync::Mutex::new(Some(rx)));
        let app = Router::new()
            .route(
                "/stream",
                get(move || {
                    let rx = rx.lock().unwrap().take().expect("one download");
                    async move {
                        axum::body::Body::from_stream(futures_util::stream::unfold(
                            rx,
                            |mut rx| async move { rx.recv().await.map(|c| (c, rx)) },
                        ))
                    }
                }),
            )
            .route("/quick", get(|| async { "ok" }))
            .layer(axum::middleware::from_fn_with_state(slots, limit_requests));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let http = reqwest::Client::new();
        let streaming = http
            .get(format!("http://{addr}/stream"))
            .send()
            .await
            .unwrap();
        // The download's headers are out, its body is not: the one slot is taken.
        let r = http
            .get(format!("http://{addr}/quick"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 429);
        assert!(r.text().await.unwrap().contains("too many requests"));
        tx.send(Ok(Bytes::from_static(b"done"))).await.unwrap();
        drop(tx);
        assert_eq!(streaming.bytes().await.unwrap(), "done");
        // The slot comes back once the body is done (the server may take a moment to drop it).
        let mut status = 0;
        for _ in 0..100 {
            status = http
                .get(format!("http://{addr}/quick"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16();
            if status == 200 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(status, 200);
        server.abort();
    }
}
