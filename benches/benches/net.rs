//! Transport benchmark: throughput and round-trip time between two medchain endpoints on
//! loopback, for 512 B and 1 MiB messages, with the default largest UDP payload (1,452 bytes) and
//! with a testnet's (65,507), next to raw quinn measured in the same run (same TLS configuration,
//! quinn's default packet sizes, one stream, `write_all` per message, no framing, queues or event
//! channel).
//!
//! Run: `cargo bench -p medchain-bench --bench net`. Prints medians over several trials.

use bytes::Bytes;
use medchain_network::{
    NetEvent, Network, NetworkConfig, UDP_PAYLOAD_MAX_DEFAULT, UDP_PAYLOAD_MAX_LOOPBACK,
};
use medchain_types::SecretKey;
use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::sync::Arc;
use std::time::Instant;

const TRIALS: usize = 7;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn pair(
    udp_payload_max: u16,
) -> (
    (Network, medchain_network::Events),
    (Network, medchain_network::Events),
) {
    let keys = [SecretKey::from_seed([1; 32]), SecretKey::from_seed([2; 32])];
    let socks = [
        UdpSocket::bind("127.0.0.1:0").unwrap(),
        UdpSocket::bind("127.0.0.1:0").unwrap(),
    ];
    let peers: BTreeMap<_, _> = keys
        .iter()
        .zip(&socks)
        .map(|(k, s)| (k.public(), s.local_addr().unwrap().to_string()))
        .collect();
    let [s0, s1] = socks;
    let a0 = s0.local_addr().unwrap();
    let a1 = s1.local_addr().unwrap();
    let config = |addr, peers| {
        let mut c = NetworkConfig::new(addr, peers, 1);
        c.udp_payload_max = udp_payload_max;
        c
    };
    (
        Network::with_socket(&keys[0], config(a0, peers.clone()), s0).unwrap(),
        Network::with_socket(&keys[1], config(a1, peers), s1).unwrap(),
    )
}

async fn connected(events: &mut medchain_network::Events) {
    while !matches!(events.recv().await, Some(NetEvent::Connected(_))) {}
}

/// medchain: bytes/s from A to B for `count` messages of `size`.
async fn medchain_throughput(size: usize, count: usize, udp_payload_max: u16) -> f64 {
    let ((a, mut ae), (b, mut be)) = pair(udp_payload_max);
    connected(&mut ae).await;
    connected(&mut be).await;
    let to = b.public_key();
    let payload = Bytes::from(vec![0x5a; size]);
    let receiver = tokio::spawn(async move {
        let mut got = 0;
        while got < count {
            if let Some(NetEvent::Message { .. }) = be.recv().await {
                got += 1;
            }
        }
        Instant::now()
    });
    let start = Instant::now();
    let mut sent = 0;
    while sent < count {
        match a.send(&to, payload.clone()) {
            Ok(()) => sent += 1,
            Err(medchain_network::SendError::QueueFull(_)) => tokio::task::yield_now().await,
            Err(e) => panic!("{e}"),
        }
    }
    let end = receiver.await.unwrap();
    a.shutdown().await;
    b.shutdown().await;
    (size * count) as f64 / (end - start).as_secs_f64()
}

/// medchain: median round trip of `size`-byte messages (B echoes what it gets).
async fn medchain_rtt(size: usize, rounds: usize, udp_payload_max: u16) -> f64 {
    let ((a, mut ae), (b, mut be)) = pair(udp_payload_max);
    connected(&mut ae).await;
    connected(&mut be).await;
    let (ka, kb) = (a.public_key(), b.public_key());
    let b = Arc::new(b);
    let echo = {
        let b = b.clone();
        tokio::spawn(async move {
            while let Some(ev) = be.recv().await {
                if let NetEvent::Message { bytes, .. } = ev {
                    let _ = b.send(&ka, bytes);
                }
            }
        })
    };
    let payload = Bytes::from(vec![1u8; size]);
    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        a.send(&kb, payload.clone()).unwrap();
        loop {
            if let Some(NetEvent::Message { .. }) = ae.recv().await {
                break;
            }
        }
        samples.push(t.elapsed().as_secs_f64());
    }
    echo.abort();
    a.shutdown().await;
    median(samples)
}

/// Raw quinn endpoints with the same TLS configuration as medchain's transport.
fn raw_pair() -> (
    quinn::Endpoint,
    quinn::Endpoint,
    quinn::ClientConfig,
    std::net::SocketAddr,
) {
    let ka = SecretKey::from_seed([1; 32]);
    let kb = SecretKey::from_seed([2; 32]);
    let metrics = Arc::new(medchain_network::Metrics::default());
    let ia = medchain_network::tls::Identity::new(&ka).unwrap();
    let ib = medchain_network::tls::Identity::new(&kb).unwrap();
    let members = Arc::new([ka.public(), kb.public()].into_iter().collect());
    let server_tls = medchain_network::tls::server_config(&ib, members, metrics.clone()).unwrap();
    let client_tls = medchain_network::tls::client_config(&ia, kb.public(), metrics).unwrap();
    let server_cfg = quinn::ServerConfig::with_crypto(Arc::new(
        quinn::crypto::rustls::QuicServerConfig::try_from(server_tls).unwrap(),
    ));
    let client_cfg = quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(client_tls).unwrap(),
    ));
    let server = quinn::Endpoint::server(server_cfg, "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = server.local_addr().unwrap();
    let client = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    (server, client, client_cfg, addr)
}

async fn raw_throughput(size: usize, count: usize) -> f64 {
    let (server, client, cfg, addr) = raw_pair();
    let receiver = tokio::spawn(async move {
        let conn = server.accept().await.unwrap().await.unwrap();
        let mut recv = conn.accept_uni().await.unwrap();
        let mut got = 0usize;
        while got < size * count {
            match recv.read_chunk(1 << 20, true).await.unwrap() {
                Some(c) => got += c.bytes.len(),
                None => break,
            }
        }
        (Instant::now(), conn)
    });
    let conn = client
        .connect_with(cfg, addr, "medchain")
        .unwrap()
        .await
        .unwrap();
    let mut send = conn.open_uni().await.unwrap();
    let payload = Bytes::from(vec![0x5a; size]);
    let start = Instant::now();
    for _ in 0..count {
        send.write_all(&payload).await.unwrap();
    }
    let (end, _server_conn) = receiver.await.unwrap();
    conn.close(0u32.into(), b"");
    (size * count) as f64 / (end - start).as_secs_f64()
}

async fn raw_rtt(size: usize, rounds: usize) -> f64 {
    let (server, client, cfg, addr) = raw_pair();
    tokio::spawn(async move {
        let conn = server.accept().await.unwrap().await.unwrap();
        let (mut send, mut recv) = conn.accept_bi().await.unwrap();
        let mut buf = vec![0u8; size];
        while recv.read_exact(&mut buf).await.is_ok() {
            if send.write_all(&buf).await.is_err() {
                break;
            }
        }
    });
    let conn = client
        .connect_with(cfg, addr, "medchain")
        .unwrap()
        .await
        .unwrap();
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let payload = vec![1u8; size];
    let mut buf = vec![0u8; size];
    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        send.write_all(&payload).await.unwrap();
        recv.read_exact(&mut buf).await.unwrap();
        samples.push(t.elapsed().as_secs_f64());
    }
    conn.close(0u32.into(), b"");
    median(samples)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: run a quick smoke then.
    let full = std::env::args().any(|a| a == "--bench");
    let (trials, scale) = if full { (TRIALS, 1) } else { (1, 64) };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // Warm-up (page faults, allocator, CPU frequency).
        medchain_throughput(512, 100_000 / scale, UDP_PAYLOAD_MAX_DEFAULT).await;
        let mut rows = Vec::new();
        for (label, size, count) in [
            ("512 B", 512usize, 400_000 / scale),
            ("1 MiB", 1 << 20, 512 / scale.min(64)),
        ] {
            let mut ours = Vec::new();
            let mut loopback = Vec::new();
            let mut raw = Vec::new();
            for _ in 0..trials {
                // Alternate so that drift in machine load hits all equally.
                ours.push(medchain_throughput(size, count, UDP_PAYLOAD_MAX_DEFAULT).await);
                loopback.push(medchain_throughput(size, count, UDP_PAYLOAD_MAX_LOOPBACK).await);
                raw.push(raw_throughput(size, count).await);
            }
            rows.push(format!(
                "| throughput, {label} messages | {:.0} MB/s | {:.0} MB/s | {:.0} MB/s |",
                median(ours) / 1e6,
                median(loopback) / 1e6,
                median(raw) / 1e6
            ));
        }
        for (label, size) in [("512 B", 512usize), ("1 MiB", 1 << 20)] {
            let rounds = if size == 512 {
                5000 / scale
            } else {
                200 / scale.min(50)
            };
            let mut ours = Vec::new();
            let mut loopback = Vec::new();
            let mut raw = Vec::new();
            for _ in 0..trials.min(3) {
                ours.push(medchain_rtt(size, rounds, UDP_PAYLOAD_MAX_DEFAULT).await);
                loopback.push(medchain_rtt(size, rounds, UDP_PAYLOAD_MAX_LOOPBACK).await);
                raw.push(raw_rtt(size, rounds).await);
            }
            rows.push(format!(
                "| median round trip, {label} | {:.1} µs | {:.1} µs | {:.1} µs |",
                median(ours) * 1e6,
                median(loopback) * 1e6,
                median(raw) * 1e6
            ));
        }
        println!(
            "| measure (median of {trials} trials) | medchain transport | medchain, `udp_payload_max` 65,507 (a testnet's) | raw quinn, same TLS |"
        );
        println!("|---|---|---|---|");
        for r in rows {
            println!("{r}");
        }
    });
}
