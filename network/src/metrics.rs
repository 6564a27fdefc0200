//! Transport counters: bytes and frames per peer, connects and disconnects, drops, and rejects by
//! reason. Counters are atomics updated on the hot path; [`Metrics::snapshot`] copies them into a
//! plain struct that the node publishes (Prometheus) and tests inspect.

use medchain_types::PublicKey;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

/// Live counters for one peer.
#[derive(Debug, Default)]
pub struct PeerCounters {
    pub(crate) bytes_sent: AtomicU64,
    pub(crate) frames_sent: AtomicU64,
    pub(crate) bytes_received: AtomicU64,
    pub(crate) frames_received: AtomicU64,
    pub(crate) frames_dropped: AtomicU64,
    pub(crate) connects: AtomicU64,
    pub(crate) disconnects: AtomicU64,
    pub(crate) queued_frames: AtomicU64,
    pub(crate) queued_bytes: AtomicU64,
}

/// A copy of one peer's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerStats {
    /// Payload bytes written to the peer's stream.
    pub bytes_sent: u64,
    /// Frames written.
    pub frames_sent: u64,
    /// Payload bytes received.
    pub bytes_received: u64,
    /// Frames received.
    pub frames_received: u64,
    /// Frames refused because the peer's send queue was full.
    pub frames_dropped: u64,
    /// Times the peer became connected.
    pub connects: u64,
    /// Times it became disconnected.
    pub disconnects: u64,
    /// Frames waiting in the send queue now.
    pub queued_frames: u64,
    /// Payload bytes waiting in the send queue now.
    pub queued_bytes: u64,
    /// QUIC's view of the path, for the connection open now (`None` while disconnected).
    pub path: Option<PathStats>,
}

/// QUIC's statistics of one connection's path. Counts start at zero with every new connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PathStats {
    /// Smoothed round-trip time, in microseconds.
    pub rtt_us: u64,
    /// Largest UDP payload the path carries, as MTU discovery found it (starts at 1,200 bytes).
    pub mtu: u16,
    /// Congestion window, in bytes.
    pub cwnd: u64,
    /// Times the congestion controller reacted to loss.
    pub congestion_events: u64,
    /// Packets sent.
    pub sent_packets: u64,
    /// Packets declared lost (each is retransmitted).
    pub lost_packets: u64,
    /// UDP datagrams sent (one may carry several packets).
    pub datagrams_sent: u64,
    /// UDP datagrams received.
    pub datagrams_received: u64,
}

/// All counters of one transport.
#[derive(Debug, Default)]
pub struct Metrics {
    peers: BTreeMap<PublicKey, PeerCounters>,
    rejects: Mutex<BTreeMap<&'static str, u64>>,
}

/// A copy of all counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// Per peer.
    pub peers: BTreeMap<PublicKey, PeerStats>,
    /// Refused handshakes, frames and connections by reason: `unknown_key`, `bad_certificate`,
    /// `oversize_frame`, `malformed_frame`, `bad_hello` (wrong magic or timeout), `hello_failed`
    /// (connection lost during the hello), `duplicate_connection`, `stale_connection`,
    /// `dial_failed`.
    pub rejects: BTreeMap<&'static str, u64>,
}

impl MetricsSnapshot {
    /// The count for one reject reason (0 if never seen).
    pub fn rejected(&self, reason: &str) -> u64 {
        self.rejects.get(reason).copied().unwrap_or(0)
    }

    /// One peer's stats (zeroes for an unknown peer).
    pub fn peer(&self, peer: &PublicKey) -> PeerStats {
        self.peers.get(peer).copied().unwrap_or_default()
    }
}

impl Metrics {
    pub(crate) fn new(peers: impl IntoIterator<Item = PublicKey>) -> Metrics {
        Metrics {
            peers: peers
                .into_iter()
                .map(|p| (p, PeerCounters::default()))
                .collect(),
            rejects: Mutex::new(BTreeMap::new()),
        }
    }

    pub(crate) fn peer(&self, peer: &PublicKey) -> Option<&PeerCounters> {
        self.peers.get(peer)
    }

    /// Counts one refusal.
    pub(crate) fn reject(&self, reason: &'static str) {
        *self
            .rejects
            .lock()
            .expect("metrics lock poisoned")
            .entry(reason)
            .or_default() += 1;
    }

    /// Copies every counter.
    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            peers: self
                .peers
                .iter()
                .map(|(k, c)| {
                    (
                        *k,
                        PeerStats {
                            bytes_sent: c.bytes_sent.load(Relaxed),
                            frames_sent: c.frames_sent.load(Relaxed),
                            bytes_received: c.bytes_received.load(Relaxed),
                            frames_received: c.frames_received.load(Relaxed),
                            frames_dropped: c.frames_dropped.load(Relaxed),
                            connects: c.connects.load(Relaxed),
                            disconnects: c.disconnects.load(Relaxed),
                            queued_frames: c.queued_frames.load(Relaxed),
                            queued_bytes: c.queued_bytes.load(Relaxed),
                            path: None,
                        },
                    )
                })
                .collect(),
            rejects: self.rejects.lock().expect("metrics lock poisoned").clone(),
        }
    }
}
