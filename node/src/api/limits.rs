//! What one client, or all of them, may take of a node's API: at most `[api] requests_max`
//! requests served at once, at most `[api] requests_per_client_max` of them from one address (a
//! response's body included, so streamed downloads count until their last byte; more get 429 at
//! once instead of queueing). The operations routes (`/healthz`, `/metrics`) are outside these caps.

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use medchain_app::ApiError;
use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

/// The request slots of a node.
#[derive(Debug)]
pub struct Limits {
    global: Arc<tokio::sync::Semaphore>,
    per_client: Mutex<HashMap<IpAddr, usize>>,
    per_client_max: usize,
}

impl Limits {
    /// `max` requests at once, at most `per_client_max` from one address.
    pub fn new(max: usize, per_client_max: usize) -> Arc<Limits> {
        Arc::new(Limits {
            global: Arc::new(tokio::sync::Semaphore::new(max)),
            per_client: Mutex::new(HashMap::new()),
            per_client_max,
        })
    }

    /// A slot for a request from `client`, if one is free.
    fn take(self: &Arc<Self>, client: Option<IpAddr>) -> Result<Slot, ApiError> {
        if let Some(ip) = client {
            let mut clients = self.per_client.lock().unwrap_or_else(|e| e.into_inner());
            let n = clients.entry(ip).or_insert(0);
            if *n >= self.per_client_max {
                return Err(ApiError::too_many(
                    "too many requests in flight from this client; retry shortly",
                ));
            }
            *n += 1;
        }
        let client_slot = ClientSlot {
            limits: self.clone(),
            client,
        };
        let Ok(permit) = self.global.clone().try_acquire_owned() else {
            return Err(ApiError::too_many(
                "too many requests in flight on this node; retry shortly",
            ));
        };
        Ok(Slot {
            _permit: permit,
            _client: client_slot,
        })
    }
}

/// A client's share of its cap, given back when dropped.
#[derive(Debug)]
struct ClientSlot {
    limits: Arc<Limits>,
    client: Option<IpAddr>,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        if let Some(ip) = self.client {
            let mut clients = self
                .limits
                .per_client
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(n) = clients.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    clients.remove(&ip);
                }
            }
        }
    }
}

/// A request's slot, held until its response is done.
#[derive(Debug)]
struct Slot {
    _permit: tokio::sync::OwnedSemaphorePermit,
    _client: ClientSlot,
}

/// Serves a request only while it fits the caps (see the module docs); otherwise 429 at once.
pub async fn limit_requests(
    State(limits): State<Arc<Limits>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let client = super::serve::client_of(&req).map(|a| a.ip());
    let slot = match limits.take(client) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let (parts, body) = next.run(req).await.into_parts();
    Response::from_parts(
        parts,
        axum::body::Body::new(Held {
            inner: body,
            _slot: slot,
        }),
    )
}

/// A response body that holds a request slot until it is done.
struct Held {
    inner: axum::body::Body,
    _slot: Slot,
}

impl http_body::Body for Held {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::{get, post};
    use axum::Router;
    use std::time::Duration;

    async fn start(app: Router) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let timeouts = super::super::serve::Timeouts {
            header: Duration::from_secs(1),
            body_idle: Duration::from_millis(500),
        };
        let server = tokio::spawn(async move {
            super::super::serve::serve(listener, app, timeouts, None, std::future::pending())
                .await
                .unwrap();
        });
        (addr, server)
    }

    /// Requests beyond the caps get 429, a streamed body holds its slot until its last byte,
    /// and one client cannot take every slot.
    #[tokio::test]
    async fn requests_beyond_the_caps_get_429_and_a_streamed_body_holds_its_slot() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
        let rx = Arc::new(Mutex::new(Some(rx)));
        let limits = Limits::new(2, 1);
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
            .layer(axum::middleware::from_fn_with_state(limits, limit_requests));
        let (addr, server) = start(app).await;
        let http = medchain_app::client::http_builder(None)
            .unwrap()
            .build()
            .unwrap();
        let streaming = http
            .get(format!("http://{addr}/stream"))
            .send()
            .await
            .unwrap();
        // The download's headers are out, its body is not: this client's one slot is taken.
        let r = http
            .get(format!("http://{addr}/quick"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 429);
        assert!(r.text().await.unwrap().contains("from this client"));
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

    /// A connection that sends half a request head is closed after the header timeout, and a
    /// body that stops moving fails after the idle timeout.
    #[tokio::test]
    async fn slow_heads_and_stalled_bodies_are_cut_off() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let app = Router::new().route(
            "/upload",
            post(
                |body: Result<Bytes, axum::extract::rejection::BytesRejection>| async move {
                    match body {
                        Ok(b) => format!("got {}", b.len()),
                        Err(e) => format!("refused: {}", e.body_text()),
                    }
                },
            ),
        );
        let (addr, server) = start(app).await;
        let started = std::time::Instant::now();
        let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET /upload HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "the server closed the connection");
        assert!(started.elapsed() >= Duration::from_millis(900));

        let mut stalled = tokio::net::TcpStream::connect(addr).await.unwrap();
        stalled
            .write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nhalf")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), stalled.read_to_end(&mut answer))
            .await
            .expect("answered and closed");
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.contains("refused"), "{answer}");
        server.abort();
    }
}
