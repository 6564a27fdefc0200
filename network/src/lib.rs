//! medchain's transport: moves `(peer, bytes)` between consortium members over QUIC (`quinn` +
//! `rustls` with the `ring` provider), and knows nothing about consensus.
//!
//! - **Identity**: a node's TLS certificate is derived from its ed25519 node key; both sides of a
//!   connection must be consortium members (keys from genesis), or the handshake fails ([`tls`]).
//! - **API**: [`Network::send`], [`Network::broadcast`], and [`Events`], a stream of
//!   [`NetEvent`]s (messages, connects, disconnects).
//! - **Bounds**: length-prefixed frames with a hard maximum checked before allocation
//!   ([`frame`]); bounded per-peer send queues that refuse the newest frame when full
//!   ([`queue`]); bounded inbound buffering; explicit QUIC flow-control windows.
//! - **Robustness**: reconnection with capped exponential backoff, one connection per pair of
//!   nodes even when both dial at once, clean shutdown.
//! - **Delivery**: frames to one peer arrive in order and intact while a connection lasts; frames
//!   queued while a peer is unreachable wait (bounded) for the next connection; frames in flight
//!   when a connection drops may be lost. Protocols above retransmit on their own timers.
//! - **Simulation**: with feature `sim`, [`sim`] runs the same transport over turmoil's
//!   simulated network for deterministic tests.
//! - **Metrics**: [`Metrics`] counts bytes, frames, connects and rejects.

pub mod frame;
mod metrics;
pub mod queue;
#[cfg(feature = "sim")]
pub mod sim;
pub mod tls;
mod transport;

pub use metrics::{Metrics, MetricsSnapshot, PathStats, PeerStats};
pub use transport::{
    Events, NetError, NetEvent, Network, NetworkConfig, SendError, FRAME_MAX_DEFAULT,
    UDP_PAYLOAD_MAX_DEFAULT, UDP_PAYLOAD_MAX_LOOPBACK,
};
