//! Streaming between HTTP bodies and the vault's blocking file I/O: a request body read as a
//! `BufRead` on a blocking thread (bounded), and a blob file served as a response body.

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use medchain_app::ApiError;
use medchain_ehr::Vault;
use medchain_types::Hash;
use std::io::Read;

/// Largest blob a node stores (from the consortium's staff, or fetched from another member).
pub const BLOB_MAX: u64 = 4 << 30;

/// Pieces of a body in flight between the async side and the blocking side.
pub const PIECES_IN_FLIGHT: usize = 16;

/// A blocking reader over a body whose pieces arrive through a channel; fails once more than
/// `limit` bytes arrived.
#[derive(Debug)]
pub struct BodyReader {
    rx: tokio::sync::mpsc::Receiver<Result<Bytes, String>>,
    cur: Bytes,
    total: u64,
    limit: u64,
}

impl BodyReader {
    /// A reader of at most `limit` bytes, and the sender that feeds it.
    pub fn new(limit: u64) -> (BodyReader, tokio::sync::mpsc::Sender<Result<Bytes, String>>) {
        let (tx, rx) = tokio::sync::mpsc::channel(PIECES_IN_FLIGHT);
        (
            BodyReader {
                rx,
                cur: Bytes::new(),
                total: 0,
                limit,
            },
            tx,
        )
    }
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let piece = std::io::BufRead::fill_buf(self)?;
        let n = buf.len().min(piece.len());
        buf[..n].copy_from_slice(&piece[..n]);
        std::io::BufRead::consume(self, n);
        Ok(n)
    }
}

/// The body's own pieces, lent without a copy.
impl std::io::BufRead for BodyReader {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                None => return Ok(&[]),
                Some(Ok(b)) => {
                    self.total += b.len() as u64;
                    if self.total > self.limit {
                        return Err(std::io::Error::other(format!(
                            "blob larger than this caller's maximum ({} bytes)",
                            self.limit
                        )));
                    }
                    self.cur = b;
                }
                Some(Err(e)) => return Err(std::io::Error::other(e)),
            }
        }
        Ok(&self.cur)
    }

    fn consume(&mut self, n: usize) {
        self.cur = self.cur.slice(n..);
    }
}

/// Feeds a request body into `tx` until it ends, fails, or the reader stops reading.
pub async fn feed(body: Body, tx: tokio::sync::mpsc::Sender<Result<Bytes, String>>) {
    use http_body_util::BodyExt;
    let mut body = body;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Ok(data) = f.into_data() {
                    if tx.send(Ok(data)).await.is_err() {
                        break;
                    }
                }
            }
            Err(e) => {
                let _ = tx.send(Err(e.to_string())).await;
                break;
            }
        }
    }
}

/// A response body fed by a blocking file reader.
struct ChannelBody(tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|o| o.map(|r| r.map(http_body::Frame::data)))
    }
}

/// Streams blob `blob` from `vault` (read past the page cache, 1 MiB at a time).
pub fn blob_response(vault: &Vault, blob: Hash) -> Result<Response, ApiError> {
    let size = std::fs::metadata(vault.path(&blob))
        .map_err(|_| ApiError::not_found("this node does not hold the blob"))?
        .len();
    let mut reader = vault
        .open_blob(&blob)
        .map_err(|e| ApiError::not_found(e.to_string()))?;
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tokio::task::spawn_blocking(move || loop {
        match reader.next_chunk() {
            Ok([]) => return,
            Ok(chunk) => {
                if tx.blocking_send(Ok(Bytes::copy_from_slice(chunk))).is_err() {
                    return;
                }
            }
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/octet-stream")
        .header("content-length", size)
        .header("x-medchain-blob", blob.to_hex())
        .body(Body::new(ChannelBody(rx)))
        .map_err(ApiError::internal)
}
