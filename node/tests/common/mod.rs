//! What the node's in-process tests share.

/// A free UDP port for QUIC and a free TCP port for the API, below Linux's ephemeral range.
pub fn free_port_pair() -> (u16, u16) {
    let seed = std::process::id() as u64 * 7919;
    for attempt in 0..200u64 {
        let p2p = 10_000 + ((seed + attempt * 977) % 10_000) as u16;
        let api = p2p + 10_000;
        if std::net::UdpSocket::bind(("127.0.0.1", p2p)).is_ok()
            && std::net::TcpListener::bind(("127.0.0.1", api)).is_ok()
        {
            return (p2p, api);
        }
    }
    panic!("no free ports");
}
