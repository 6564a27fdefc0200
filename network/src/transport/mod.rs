//! The transport: one QUIC endpoint per node, one connection per peer, one unidirectional stream
//! per direction carrying length-prefixed frames.
//!
//! Every node dials every peer it is not connected to (with capped exponential backoff) and
//! accepts connections from members. Each side opens its stream with a hello carrying its
//! *incarnation* (a number that grows across restarts). Of each pair of nodes, the one with the
//! smaller key *decides* which connection the pair keeps and tells the other with an accept byte;
//! the other side registers a connection only once accepted, so the two never disagree and no
//! frame is written to a connection that is about to be refused. The decider keeps a new
//! connection over the current one when:
//! - it comes from a newer incarnation of the peer (the peer restarted; the old one is stale);
//! - or both were dialled by the same side (the dialler redials only after seeing the old die).
//!
//! When both sides dial at once, the first connection accepted stays and the other is closed.
//!
//! Bounds: frames (`frame_max`), per-peer send queues (frames and bytes), received data waiting
//! for the application (`inbound_bytes_max`), and QUIC's stream and connection receive windows
//! (set explicitly; quinn's connection window is unlimited by default).

mod connection;

use crate::frame::{self, Decoder, FrameError, HELLO_LEN};
use crate::metrics::{Metrics, MetricsSnapshot, PeerCounters};
use crate::queue::SendQueue;
use crate::tls::{self, Identity};
use bytes::{Bytes, BytesMut};
use connection::{accept_loop, dial_loop};
use medchain_types::{PublicKey, SecretKey};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{
    AsyncUdpSocket, Connection, Endpoint, EndpointConfig, MtuDiscoveryConfig, Runtime,
    TransportConfig, VarInt,
};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

/// Default hard maximum of one frame.
pub const FRAME_MAX_DEFAULT: usize = 16 << 20;

const CODE_SHUTDOWN: u32 = 0;
const CODE_PROTOCOL: u32 = 1;
const CODE_DUPLICATE: u32 = 2;
const CODE_REPLACED: u32 = 3;
/// Bytes the writer takes from the queue per stream write.
const WRITE_BATCH_BYTES: usize = 256 << 10;
/// Frames smaller than this are copied into one buffer per write; larger ones go zero-copy.
const COALESCE_BELOW: usize = 16 << 10;
/// Largest chunk read from a stream at once.
const READ_CHUNK_MAX: usize = 256 << 10;

/// Default [`NetworkConfig::udp_payload_max`]: quinn's, which fits an Ethernet path (1,500
/// bytes) under IPv4 and IPv6 headers.
pub const UDP_PAYLOAD_MAX_DEFAULT: u16 = 1452;
/// The largest UDP payload an IPv4 datagram carries (65,535 less the IP and UDP headers), and
/// what an IPv4 loopback path (MTU 65,536) takes.
pub const UDP_PAYLOAD_MAX_LOOPBACK: u16 = 65_507;
/// quinn 0.11 hands the socket up to 10 packets at a time for one segmentation-offload (GSO)
/// send (its private `MAX_TRANSMIT_SEGMENTS`). The kernel refuses a GSO send of more than one
/// datagram's worth (65,507 bytes) with `EMSGSIZE`, which quinn-udp takes for a lost MTU probe
/// and drops silently: above `65,507 / 10` bytes per packet, offload is turned off (each packet
/// is then its own send, which at such sizes costs little).
const GSO_SEGMENTS_MAX: usize = 10;

/// Transport settings. [`NetworkConfig::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// Address to bind (when the transport binds its own socket).
    pub listen: SocketAddr,
    /// Every consortium member's key and address, `HOST:PORT` with HOST an IP address or a DNS
    /// name (resolved at each connection attempt). The node's own entry, if present, is ignored.
    pub peers: BTreeMap<PublicKey, String>,
    /// Identifies this run of the process: must grow across restarts (the node uses the start
    /// time in microseconds). Lets peers tell a restarted node's connection from a stale one.
    pub incarnation: u64,
    /// Hard maximum of one frame, in bytes (default 16 MiB).
    pub frame_max: usize,
    /// Most frames waiting for one peer (default 8,192).
    pub send_queue_frames_max: usize,
    /// Most bytes waiting for one peer (default 64 MiB).
    pub send_queue_bytes_max: usize,
    /// Most received bytes waiting for the application (default 64 MiB, at least `frame_max`).
    pub inbound_bytes_max: usize,
    /// QUIC per-stream receive window (default 8 MiB).
    pub stream_receive_window: u32,
    /// QUIC per-connection receive window (default 16 MiB).
    pub connection_receive_window: u32,
    /// Kernel receive and send buffer asked for the UDP socket (default 4 MiB, below 2 GiB).
    /// Linux grants at most `net.core.rmem_max` / `wmem_max` (often 208 KiB); the node logs a
    /// warning when it gets less, and the host's limits should then be raised.
    pub socket_buffer_bytes: usize,
    /// Largest UDP payload that QUIC's path MTU discovery may grow packets to (default
    /// [`UDP_PAYLOAD_MAX_DEFAULT`], 1,200–65,527). Connections start at 1,200 bytes and probe
    /// upward; a path that cannot carry a probe only costs the probe. Larger packets mean fewer
    /// of them per byte, and QUIC's cost is mostly per packet: between two nodes on loopback, a
    /// 1 MiB message stream ran at about twice the rate with 65,507 as with 1,452
    /// (`cargo bench -p medchain-bench --bench net`). Raise it only where every path between
    /// the nodes carries such datagrams unfragmented, such as a consortium on one host's
    /// loopback ([`UDP_PAYLOAD_MAX_LOOPBACK`]).
    pub udp_payload_max: u16,
    /// First reconnect delay (default 100 ms); doubles per failure.
    pub reconnect_backoff_min: Duration,
    /// Largest reconnect delay (default 5 s).
    pub reconnect_backoff_max: Duration,
    /// Give up a dial or a hello exchange after this long (default 5 s).
    pub handshake_timeout: Duration,
    /// Close a connection silent for this long (default 10 s).
    pub idle_timeout: Duration,
    /// Send keep-alives this often (default 2 s).
    pub keep_alive: Duration,
    /// Seed for QUIC's internal randomness (connection ids); `Some` in deterministic tests.
    pub rng_seed: Option<[u8; 32]>,
}

impl NetworkConfig {
    /// Defaults for a node listening on `listen` in a consortium of `peers`.
    pub fn new(
        listen: SocketAddr,
        peers: BTreeMap<PublicKey, String>,
        incarnation: u64,
    ) -> NetworkConfig {
        NetworkConfig {
            listen,
            peers,
            incarnation,
            frame_max: FRAME_MAX_DEFAULT,
            send_queue_frames_max: 8192,
            send_queue_bytes_max: 64 << 20,
            inbound_bytes_max: 64 << 20,
            stream_receive_window: 8 << 20,
            connection_receive_window: 16 << 20,
            socket_buffer_bytes: 4 << 20,
            udp_payload_max: UDP_PAYLOAD_MAX_DEFAULT,
            reconnect_backoff_min: Duration::from_millis(100),
            reconnect_backoff_max: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(10),
            keep_alive: Duration::from_secs(2),
            rng_seed: None,
        }
    }

    fn validate(&self) -> Result<(), NetError> {
        let bad = |m: String| Err(NetError::Config(m));
        if self.frame_max == 0 || self.frame_max > u32::MAX as usize {
            return bad(format!("frame_max {} must be 1..=4 GiB", self.frame_max));
        }
        if self.inbound_bytes_max < self.frame_max || self.inbound_bytes_max > u32::MAX as usize {
            return bad(format!(
                "inbound_bytes_max {} must be at least frame_max ({}) and below 4 GiB",
                self.inbound_bytes_max, self.frame_max
            ));
        }
        if self.send_queue_frames_max == 0 || self.send_queue_bytes_max < self.frame_max {
            return bad("send queues must hold at least one frame of frame_max bytes".into());
        }
        if self.socket_buffer_bytes == 0 || self.socket_buffer_bytes > i32::MAX as usize {
            return bad(format!(
                "socket_buffer_bytes {} must be 1..2 GiB",
                self.socket_buffer_bytes
            ));
        }
        if !(1200..=65_527).contains(&self.udp_payload_max) {
            return bad(format!(
                "udp_payload_max {} must be 1200..=65527 (QUIC's minimum to the largest UDP payload)",
                self.udp_payload_max
            ));
        }
        if self.reconnect_backoff_min.is_zero()
            || self.reconnect_backoff_max < self.reconnect_backoff_min
        {
            return bad("reconnect backoff must satisfy 0 < min <= max".into());
        }
        Ok(())
    }
}

/// What the transport reports to the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetEvent {
    /// A frame from a peer.
    Message {
        /// The sender, authenticated by the TLS handshake.
        from: PublicKey,
        /// The frame.
        bytes: Bytes,
    },
    /// A peer became reachable.
    Connected(PublicKey),
    /// A peer became unreachable (the transport keeps redialling it).
    Disconnected(PublicKey),
}

/// Why a frame was not queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The key is not a peer of this node.
    #[error("{0} is not a peer")]
    UnknownPeer(PublicKey),
    /// The frame is over `frame_max`.
    #[error("frame of {len} bytes exceeds frame_max ({max})")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// Empty frames are not sent.
    #[error("empty frame")]
    Empty,
    /// The peer's send queue is full; the frame was dropped (and counted).
    #[error("send queue for {0} is full")]
    QueueFull(PublicKey),
    /// The transport is shut down.
    #[error("transport is shut down")]
    Closed,
}

/// Why the transport could not start.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// Binding or using the socket failed.
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    /// The TLS configuration was refused.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// The certificate could not be built.
    #[error("certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    /// A setting is out of range.
    #[error("invalid network configuration: {0}")]
    Config(String),
}

enum Inbound {
    Frames {
        from: PublicKey,
        frames: Vec<Bytes>,
        _budget: OwnedSemaphorePermit,
    },
    Connected(PublicKey),
    Disconnected(PublicKey),
}

/// The stream of [`NetEvent`]s. Not reading it applies back-pressure: once `inbound_bytes_max`
/// bytes wait here, the transport stops reading from peers and QUIC flow control stops them.
pub struct Events {
    rx: mpsc::Receiver<Inbound>,
    pending: VecDeque<NetEvent>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Events({} pending)", self.pending.len())
    }
}

impl Events {
    /// The next event; `None` once the transport has shut down and everything was read.
    pub async fn recv(&mut self) -> Option<NetEvent> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Some(e);
            }
            let inbound = self.rx.recv().await?;
            if let Some(e) = self.unpack(inbound) {
                return Some(e);
            }
        }
    }

    /// The next event if one is ready.
    pub fn try_recv(&mut self) -> Option<NetEvent> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Some(e);
            }
            let inbound = self.rx.try_recv().ok()?;
            if let Some(e) = self.unpack(inbound) {
                return Some(e);
            }
        }
    }

    fn unpack(&mut self, inbound: Inbound) -> Option<NetEvent> {
        match inbound {
            // The budget permit is released here: the frames leave the bounded channel.
            Inbound::Frames { from, frames, .. } => {
                self.pending.extend(
                    frames
                        .into_iter()
                        .map(|bytes| NetEvent::Message { from, bytes }),
                );
                None
            }
            Inbound::Connected(p) => Some(NetEvent::Connected(p)),
            Inbound::Disconnected(p) => Some(NetEvent::Disconnected(p)),
        }
    }
}

struct Active {
    id: u64,
    conn: Connection,
    dialer: PublicKey,
    incarnation: u64,
}

struct Peer {
    key: PublicKey,
    /// `HOST:PORT`.
    addr: String,
    queue: SendQueue,
    slot: Mutex<Option<Active>>,
    connected: watch::Sender<bool>,
    client_config: quinn::ClientConfig,
}

struct Shared {
    me: PublicKey,
    config: NetworkConfig,
    peers: BTreeMap<PublicKey, Peer>,
    metrics: Arc<Metrics>,
    events: mpsc::Sender<Inbound>,
    inbound_budget: Arc<Semaphore>,
    shutdown: watch::Sender<bool>,
    next_conn_id: AtomicU64,
}

impl Shared {
    fn counters(&self, peer: &PublicKey) -> &PeerCounters {
        self.metrics.peer(peer).expect("every peer has counters")
    }

    fn is_shut_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    async fn shut_down(&self) {
        let mut rx = self.shutdown.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }
}

/// A running transport. Dropping it (or [`Network::shutdown`]) closes every connection.
pub struct Network {
    shared: Arc<Shared>,
    endpoint: Endpoint,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Network({})", self.shared.me)
    }
}

/// Asks for larger kernel buffers than the default (~200 KiB): a proposal arrives as hundreds of
/// datagrams at once, and a full receive buffer drops them, which QUIC reads as congestion.
/// Best effort: the kernel grants at most `net.core.rmem_max` / `wmem_max`, and a refusal or a
/// smaller grant is logged, not fatal (the node still works, with more loss under bursts).
/// Returns the sizes the kernel reports (Linux reports twice what it granted).
fn set_socket_buffers(socket: &std::net::UdpSocket, bytes: usize) -> (usize, usize) {
    let sock = socket2::SockRef::from(socket);
    let granted = |what: &str, sysctl: &str, result: std::io::Result<usize>| match result {
        Ok(n) => {
            if n < bytes {
                tracing::warn!(
                    asked = bytes,
                    got = n,
                    "the UDP {what} buffer is smaller than asked; raise {sysctl} to avoid \
                     dropped datagrams under load"
                );
            }
            n
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot size the UDP {what} buffer");
            0
        }
    };
    let recv = sock
        .set_recv_buffer_size(bytes)
        .and_then(|()| sock.recv_buffer_size());
    let send = sock
        .set_send_buffer_size(bytes)
        .and_then(|()| sock.send_buffer_size());
    (
        granted("receive", "net.core.rmem_max", recv),
        granted("send", "net.core.wmem_max", send),
    )
}

fn transport_config(config: &NetworkConfig) -> Result<TransportConfig, NetError> {
    let mut t = TransportConfig::default();
    let mut mtu_discovery = MtuDiscoveryConfig::default();
    mtu_discovery.upper_bound(config.udp_payload_max);
    t.stream_receive_window(VarInt::from_u32(config.stream_receive_window))
        .receive_window(VarInt::from_u32(config.connection_receive_window))
        .send_window(u64::from(config.connection_receive_window))
        .max_concurrent_bidi_streams(VarInt::from_u32(0))
        .max_concurrent_uni_streams(VarInt::from_u32(4))
        .mtu_discovery_config(Some(mtu_discovery))
        .enable_segmentation_offload(
            usize::from(config.udp_payload_max) * GSO_SEGMENTS_MAX
                <= usize::from(UDP_PAYLOAD_MAX_LOOPBACK),
        )
        .keep_alive_interval(Some(config.keep_alive))
        .max_idle_timeout(Some(
            config
                .idle_timeout
                .try_into()
                .map_err(|_| NetError::Config("idle_timeout is too long".into()))?,
        ));
    Ok(t)
}

impl Network {
    /// Binds a UDP socket at `config.listen` and starts the transport (inside a tokio runtime).
    pub fn bind(key: &SecretKey, config: NetworkConfig) -> Result<(Network, Events), NetError> {
        let socket = std::net::UdpSocket::bind(config.listen)?;
        Self::with_socket(key, config, socket)
    }

    /// Starts the transport on an already bound UDP socket.
    pub fn with_socket(
        key: &SecretKey,
        config: NetworkConfig,
        socket: std::net::UdpSocket,
    ) -> Result<(Network, Events), NetError> {
        config.validate()?;
        set_socket_buffers(&socket, config.socket_buffer_bytes);
        let runtime: Arc<dyn Runtime> = Arc::new(quinn::TokioRuntime);
        let socket = runtime.wrap_udp_socket(socket)?;
        Self::start(key, config, socket, runtime)
    }

    /// Starts the transport on any socket and runtime, for example the simulated network of
    /// [`crate::sim`].
    pub fn start(
        key: &SecretKey,
        config: NetworkConfig,
        socket: Arc<dyn AsyncUdpSocket>,
        runtime: Arc<dyn Runtime>,
    ) -> Result<(Network, Events), NetError> {
        config.validate()?;
        let me = key.public();
        let identity = Identity::new(key)?;
        let members: BTreeSet<PublicKey> =
            config.peers.keys().copied().filter(|k| *k != me).collect();
        let metrics = Arc::new(Metrics::new(members.iter().copied()));
        let transport = Arc::new(transport_config(&config)?);

        let mut server = quinn::ServerConfig::with_crypto(Arc::new(
            QuicServerConfig::try_from(tls::server_config(
                &identity,
                Arc::new(members.clone()),
                metrics.clone(),
            )?)
            .map_err(|e| NetError::Config(e.to_string()))?,
        ));
        server.transport_config(transport.clone());

        // Stateless-reset key derived from the node key: after a restart the node can reset the
        // connections its peers still hold to its previous run, so they notice at once.
        let reset_seed =
            medchain_types::sha256(&[b"medchain-quic-reset".as_slice(), &key.seed()].concat());
        let mut endpoint_config = EndpointConfig::new(Arc::new(ring::hmac::Key::new(
            ring::hmac::HMAC_SHA256,
            reset_seed.as_bytes(),
        )));
        endpoint_config.rng_seed(config.rng_seed);
        // What this endpoint accepts (a transport parameter: peers send nothing larger), at
        // least quinn's default of 1,472.
        endpoint_config
            .max_udp_payload_size(config.udp_payload_max.max(1472))
            .map_err(|e| NetError::Config(format!("udp_payload_max: {e}")))?;
        let endpoint =
            Endpoint::new_with_abstract_socket(endpoint_config, Some(server), socket, runtime)?;

        let mut peers = BTreeMap::new();
        for &peer in &members {
            let mut client = quinn::ClientConfig::new(Arc::new(
                QuicClientConfig::try_from(tls::client_config(&identity, peer, metrics.clone())?)
                    .map_err(|e| NetError::Config(e.to_string()))?,
            ));
            client.transport_config(transport.clone());
            peers.insert(
                peer,
                Peer {
                    key: peer,
                    addr: config.peers[&peer].clone(),
                    queue: SendQueue::new(
                        config.send_queue_frames_max,
                        config.send_queue_bytes_max,
                    ),
                    slot: Mutex::new(None),
                    connected: watch::Sender::new(false),
                    client_config: client,
                },
            );
        }
        // Events channel: bounded in bytes by the budget semaphore; the slot count only needs to
        // exceed the number of peers for connect/disconnect notices.
        let (tx, rx) = mpsc::channel(1024 + 4 * peers.len());
        let shared = Arc::new(Shared {
            me,
            inbound_budget: Arc::new(Semaphore::new(config.inbound_bytes_max)),
            config,
            peers,
            metrics,
            events: tx,
            shutdown: watch::Sender::new(false),
            next_conn_id: AtomicU64::new(1),
        });
        tokio::spawn(accept_loop(shared.clone(), endpoint.clone()));
        for peer in shared.peers.keys() {
            tokio::spawn(dial_loop(shared.clone(), endpoint.clone(), *peer));
        }
        tracing::info!(node = %me, addr = ?endpoint.local_addr().ok(), peers = shared.peers.len(), "transport started");
        Ok((
            Network { shared, endpoint },
            Events {
                rx,
                pending: VecDeque::new(),
            },
        ))
    }

    /// This node's key.
    pub fn public_key(&self) -> PublicKey {
        self.shared.me
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// Every peer (consortium members other than this node).
    pub fn peers(&self) -> impl Iterator<Item = &PublicKey> {
        self.shared.peers.keys()
    }

    /// Peers connected now.
    pub fn connected_peers(&self) -> Vec<PublicKey> {
        self.shared
            .peers
            .values()
            .filter(|p| *p.connected.borrow())
            .map(|p| p.key)
            .collect()
    }

    /// Queues a frame for `to`. Frames to one peer arrive in order; a frame queued while the peer
    /// is unreachable is sent when it reconnects, as long as the queue has room.
    pub fn send(&self, to: &PublicKey, bytes: Bytes) -> Result<(), SendError> {
        if self.shared.is_shut_down() {
            return Err(SendError::Closed);
        }
        let peer = self
            .shared
            .peers
            .get(to)
            .ok_or(SendError::UnknownPeer(*to))?;
        if bytes.is_empty() {
            return Err(SendError::Empty);
        }
        let max = self.shared.config.frame_max;
        if bytes.len() > max {
            return Err(SendError::TooLarge {
                len: bytes.len(),
                max,
            });
        }
        if peer.queue.push(bytes, self.shared.counters(to)) {
            Ok(())
        } else {
            Err(SendError::QueueFull(*to))
        }
    }

    /// Queues a frame for every peer; returns the peers whose queue refused it.
    pub fn broadcast(&self, bytes: Bytes) -> Vec<(PublicKey, SendError)> {
        self.shared
            .peers
            .keys()
            .filter_map(|p| self.send(p, bytes.clone()).err().map(|e| (*p, e)))
            .collect()
    }

    /// A copy of the counters, with QUIC's path statistics of each open connection.
    pub fn metrics(&self) -> MetricsSnapshot {
        let mut snapshot = self.shared.metrics.snapshot();
        for (key, peer) in &self.shared.peers {
            let conn = peer
                .slot
                .lock()
                .expect("peer slot lock poisoned")
                .as_ref()
                .map(|a| a.conn.clone());
            if let (Some(conn), Some(stats)) = (conn, snapshot.peers.get_mut(key)) {
                let q = conn.stats();
                stats.path = Some(crate::metrics::PathStats {
                    rtt_us: u64::try_from(q.path.rtt.as_micros()).unwrap_or(u64::MAX),
                    mtu: q.path.current_mtu,
                    cwnd: q.path.cwnd,
                    congestion_events: q.path.congestion_events,
                    sent_packets: q.path.sent_packets,
                    lost_packets: q.path.lost_packets,
                    datagrams_sent: q.udp_tx.datagrams,
                    datagrams_received: q.udp_rx.datagrams,
                });
            }
        }
        snapshot
    }

    /// Closes every connection and stops every task; waits up to 2 s for peers to acknowledge.
    pub async fn shutdown(self) {
        self.close().await;
    }

    /// Like [`Network::shutdown`], for a transport shared behind a reference.
    pub async fn close(&self) {
        self.shared.shutdown.send_replace(true);
        self.endpoint
            .close(VarInt::from_u32(CODE_SHUTDOWN), b"shutdown");
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        self.shared.shutdown.send_replace(true);
        self.endpoint
            .close(VarInt::from_u32(CODE_SHUTDOWN), b"shutdown");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The socket gets the buffers asked for, up to the kernel's cap (Linux reports twice the
    /// granted size, for its bookkeeping); a zero or oversized request is a configuration error.
    #[test]
    fn socket_buffers_are_raised_up_to_the_kernels_cap() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let sock = socket2::SockRef::from(&socket);
        let before = sock.recv_buffer_size().unwrap();
        let want = 4 << 20;
        let (recv, send) = set_socket_buffers(&socket, want);
        let cap = |name: &str| {
            std::fs::read_to_string(format!("/proc/sys/net/core/{name}"))
                .ok()
                .and_then(|s| s.trim().parse::<usize>().ok())
                .unwrap_or(want)
        };
        assert_eq!(recv, sock.recv_buffer_size().unwrap());
        assert_eq!(send, sock.send_buffer_size().unwrap());
        assert!(recv >= want.min(cap("rmem_max")), "receive {recv}");
        assert!(send >= want.min(cap("wmem_max")), "send {send}");
        assert!(recv > before || before >= want, "{before} -> {recv}");
        let addr = socket.local_addr().unwrap();
        for bad in [0, 1 << 31] {
            let mut config = NetworkConfig::new(addr, BTreeMap::new(), 1);
            config.socket_buffer_bytes = bad;
            assert!(
                matches!(config.validate(), Err(NetError::Config(m)) if m.contains("socket_buffer_bytes")),
                "{bad}"
            );
        }
    }

    /// `udp_payload_max` must lie between QUIC's minimum datagram and the largest UDP payload.
    #[test]
    fn udp_payload_max_is_checked() {
        let addr = "127.0.0.1:1".parse().unwrap();
        let mut config = NetworkConfig::new(addr, BTreeMap::new(), 1);
        for good in [
            1200,
            UDP_PAYLOAD_MAX_DEFAULT,
            UDP_PAYLOAD_MAX_LOOPBACK,
            65_527,
        ] {
            config.udp_payload_max = good;
            assert!(config.validate().is_ok(), "{good}");
            assert!(transport_config(&config).is_ok(), "{good}");
        }
        for bad in [0, 1199, 65_528] {
            config.udp_payload_max = bad;
            assert!(
                matches!(config.validate(), Err(NetError::Config(m)) if m.contains("udp_payload_max")),
                "{bad}"
            );
        }
    }
}
