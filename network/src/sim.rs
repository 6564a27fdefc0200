//! The transport over turmoil's simulated network, for deterministic tests.
//!
//! [`TurmoilSocket`] adapts a turmoil UDP socket to quinn's `AsyncUdpSocket`, and [`SimRuntime`]
//! gives quinn the simulation's virtual clock (quinn's default runtime reads the real clock).
//! Inside a turmoil host, start the transport with [`start`]; partitions, repairs, latency and
//! loss are then turmoil calls, and a run is a function of the turmoil seed and the transport's
//! `rng_seed`.

use crate::{Events, NetError, Network, NetworkConfig};
use medchain_types::SecretKey;
use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncTimer, AsyncUdpSocket, Runtime, UdpPoller};
use std::future::Future;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

type Readable = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

/// A turmoil UDP socket as a quinn socket.
pub struct TurmoilSocket {
    inner: Arc<turmoil::net::UdpSocket>,
    readable: Mutex<Option<Readable>>,
}

impl std::fmt::Debug for TurmoilSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TurmoilSocket({:?})", self.inner.local_addr().ok())
    }
}

impl TurmoilSocket {
    /// Binds `0.0.0.0:port` on the current turmoil host.
    pub async fn bind(port: u16) -> io::Result<TurmoilSocket> {
        let inner = turmoil::net::UdpSocket::bind(("0.0.0.0", port)).await?;
        Ok(TurmoilSocket {
            inner: Arc::new(inner),
            readable: Mutex::new(None),
        })
    }
}

/// turmoil's UDP has no send-side back-pressure: always writable.
#[derive(Debug)]
struct AlwaysWritable;

impl UdpPoller for AlwaysWritable {
    fn poll_writable(self: Pin<&mut Self>, _cx: &mut Context) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl AsyncUdpSocket for TurmoilSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(AlwaysWritable)
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        self.inner
            .try_send_to(transmit.contents, transmit.destination)
            .map(|_| ())
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        loop {
            match self.inner.try_recv_from(&mut bufs[0]) {
                Ok((len, addr)) => {
                    meta[0] = RecvMeta {
                        addr,
                        len,
                        stride: len,
                        ecn: None,
                        dst_ip: None,
                    };
                    return Poll::Ready(Ok(1));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let mut slot = self.readable.lock().expect("readable lock poisoned");
                    let fut = slot.get_or_insert_with(|| {
                        let socket = self.inner.clone();
                        Box::pin(async move { socket.readable().await })
                    });
                    match fut.as_mut().poll(cx) {
                        Poll::Ready(r) => {
                            *slot = None;
                            r?;
                        }
                        Poll::Pending => return Poll::Pending,
                    }
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// quinn's tokio runtime with the clock taken from tokio (virtual under turmoil).
#[derive(Debug)]
pub struct SimRuntime;

impl Runtime for SimRuntime {
    fn new_timer(&self, t: Instant) -> Pin<Box<dyn AsyncTimer>> {
        Box::pin(tokio::time::sleep_until(t.into()))
    }

    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) {
        tokio::spawn(future);
    }

    fn wrap_udp_socket(&self, _socket: std::net::UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "the simulated runtime has no real sockets",
        ))
    }

    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }
}

/// Starts the transport on the current turmoil host, on `port`.
pub async fn start(
    key: &SecretKey,
    config: NetworkConfig,
    port: u16,
) -> Result<(Network, Events), NetError> {
    let socket = TurmoilSocket::bind(port).await?;
    Network::start(key, config, Arc::new(socket), Arc::new(SimRuntime))
}
