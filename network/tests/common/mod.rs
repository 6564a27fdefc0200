//! Helpers for the transport tests: keys, pre-bound loopback sockets, bounded waits.
#![allow(dead_code)]

use bytes::Bytes;
use medchain_network::{Events, NetEvent, Network, NetworkConfig};
use medchain_types::{PublicKey, SecretKey};
use std::collections::BTreeMap;
use std::future::Future;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

pub fn key(i: u8) -> SecretKey {
    SecretKey::from_seed([i + 1; 32])
}

/// Binds `n` UDP sockets on 127.0.0.1 with OS-chosen ports.
pub fn sockets(n: usize) -> Vec<UdpSocket> {
    (0..n)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect()
}

pub fn members(keys: &[SecretKey], sockets: &[UdpSocket]) -> BTreeMap<PublicKey, SocketAddr> {
    keys.iter()
        .zip(sockets)
        .map(|(k, s)| (k.public(), s.local_addr().unwrap()))
        .collect()
}

/// Test-friendly timings: fast reconnects and failure detection.
pub fn config(
    listen: SocketAddr,
    peers: BTreeMap<PublicKey, SocketAddr>,
    incarnation: u64,
) -> NetworkConfig {
    let peers = peers.into_iter().map(|(k, a)| (k, a.to_string())).collect();
    let mut c = NetworkConfig::new(listen, peers, incarnation);
    c.reconnect_backoff_min = Duration::from_millis(20);
    c.reconnect_backoff_max = Duration::from_millis(500);
    c.idle_timeout = Duration::from_secs(3);
    c.keep_alive = Duration::from_millis(500);
    c
}

/// Starts `n` nodes that all know each other.
pub fn cluster(n: usize) -> Vec<(Network, Events)> {
    let keys: Vec<_> = (0..n as u8).map(key).collect();
    let socks = sockets(n);
    let peers = members(&keys, &socks);
    keys.iter()
        .zip(socks)
        .map(|(k, s)| {
            let addr = s.local_addr().unwrap();
            Network::with_socket(k, config(addr, peers.clone(), 1), s).unwrap()
        })
        .collect()
}

/// Fails the test instead of hanging.
pub async fn within<T>(secs: u64, what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .unwrap_or_else(|_| panic!("timed out after {secs} s: {what}"))
}

/// Waits for `Connected` from each of `peers`.
pub async fn wait_connected(events: &mut Events, peers: &[PublicKey]) {
    let mut missing: Vec<PublicKey> = peers.to_vec();
    within(20, "peers connect", async {
        while !missing.is_empty() {
            if let Some(NetEvent::Connected(p)) = events.recv().await {
                missing.retain(|m| *m != p);
            }
        }
    })
    .await;
}

/// The next message, skipping connect/disconnect notices.
pub async fn next_message(events: &mut Events) -> (PublicKey, Bytes) {
    loop {
        match events.recv().await.expect("transport still running") {
            NetEvent::Message { from, bytes } => return (from, bytes),
            _ => continue,
        }
    }
}

/// Resident set size of this process, in bytes.
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}
