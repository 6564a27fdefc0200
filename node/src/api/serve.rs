//! Serving the API over HTTP/1.1, held against slow and greedy clients: a connection that does
//! not send a whole request head within `[api] header_timeout_secs` (also the idle time allowed
//! between requests) is closed; a request body that stalls for `[api] body_idle_secs` fails;
//! each request carries its client's address (for the per-client caps); a request body must keep
//! moving ([`IdleBody`]); on shutdown, the connections finish what they serve (HTTP keep-alive ends).
//! With a certificate (`[api] tls_cert`, `tls_key`), every connection is TLS (rustls on ring,
//! TLS 1.2 and 1.3), its handshake bounded by the header timeout.

use anyhow::Context as _;
use axum::body::Bytes;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::server::graceful::Watcher;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tower::ServiceExt;

/// The TLS settings of the API from a certificate chain and its key (PEM files).
pub fn tls_acceptor(cert: &Path, key: &Path) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("cannot read the certificate {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("{} is not a PEM certificate chain", cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!("{} holds no certificate", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("{} is not a PEM private key", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the API's certificate and key do not go together")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// The server's timeouts.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// For a request's head (and between requests on a kept-alive connection).
    pub header: Duration,
    /// For each piece of a request body.
    pub body_idle: Duration,
}

/// Accepts connections on `listener` (over TLS with `tls`) and serves `router` until `shutdown`
/// resolves, then lets the connections finish their requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    timeouts: Timeouts,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, say: back off instead of spinning.
                    tracing::warn!(error = %e, "accepting an API connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Without TCP_NODELAY, a response's last small write (a body's tail, a chunked body's
        // end) can wait for the client's delayed ACK: 40 ms on Linux.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!("TCP_NODELAY on an API connection: {e}");
        }
        let service =
            router
                .clone()
                .map_request(move |req: hyper::Request<hyper::body::Incoming>| {
                    let body_idle = timeouts.body_idle;
                    let mut req = req.map(|body| {
                        axum::body::Body::new(IdleBody::new(axum::body::Body::new(body), body_idle))
                    });
                    req.extensions_mut().insert(ConnectInfo(remote));
                    req
                });
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            let Some(acceptor) = tls else {
                return serve_connection(stream, service, timeouts, watcher, remote).await;
            };
            match tokio::time::timeout(timeouts.header, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => {
                    serve_connection(stream, service, timeouts, watcher, remote).await
                }
                Ok(Err(e)) => tracing::debug!(client = %remote, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(client = %remote, "TLS handshake timed out"),
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Serves one connection (plain or after its TLS handshake) under the shutdown `watcher`.
async fn serve_connection<S, T>(
    stream: T,
    service: S,
    timeouts: Timeouts,
    watcher: Watcher,
    remote: SocketAddr,
) where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: tower::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(timeouts.header)
        .keep_alive(true);
    let conn = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(client = %remote, error = %e, "API connection ended");
    }
}

/// The address of a connection's client, as [`serve`] records it (absent for requests that
/// did not come through it, such as tests of a bare router).
pub fn client_of(req: &axum::extract::Request) -> Option<SocketAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
}

/// A request body that fails when no piece of it arrives for `idle` (a client that opens an
/// upload and stops would otherwise hold its slot, and a handler, for ever).
pub struct IdleBody {
    inner: axum::body::Body,
    idle: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl std::fmt::Debug for IdleBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IdleBody({:?})", self.idle)
    }
}

impl IdleBody {
    /// `body`, failing after `idle` without a piece.
    pub fn new(body: axum::body::Body, idle: Duration) -> IdleBody {
        IdleBody {
            inner: body,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
        }
    }
}

impl http_body::Body for IdleBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                let next = tokio::time::Instant::now() + this.idle;
                this.deadline.as_mut().reset(next);
                Poll::Ready(frame)
            }
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(axum::Error::new(format!(
                    "the request body stalled for {} s",
                    this.idle.as_secs()
                ))))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
