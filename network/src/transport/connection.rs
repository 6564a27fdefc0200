//! Connections: the accept loop, one dial loop per peer (capped exponential backoff), the hello
//! exchange and the decision which connection a pair keeps, and per connection a writer (the
//! peer's send queue, coalesced) and a reader (frames to the application, bounded).

use super::*;

pub(super) async fn accept_loop(shared: Arc<Shared>, endpoint: Endpoint) {
    loop {
        let incoming = tokio::select! {
            biased;
            () = shared.shut_down() => return,
            i = endpoint.accept() => i,
        };
        let Some(incoming) = incoming else { return };
        let shared = shared.clone();
        tokio::spawn(async move {
            let conn = match tokio::time::timeout(shared.config.handshake_timeout, incoming).await {
                Ok(Ok(conn)) => conn,
                // Unknown keys are counted by the TLS verifier; others are transport failures.
                Ok(Err(e)) => return tracing::debug!(error = %e, "inbound handshake failed"),
                Err(_) => return tracing::debug!("inbound handshake timed out"),
            };
            let Some(peer) = peer_of(&conn).filter(|p| shared.peers.contains_key(p)) else {
                shared.metrics.reject("unknown_key");
                conn.close(VarInt::from_u32(CODE_PROTOCOL), b"not a member");
                return;
            };
            run_connection(shared, peer, conn, peer).await;
        });
    }
}

pub(super) fn peer_of(conn: &Connection) -> Option<PublicKey> {
    let identity = conn.peer_identity()?;
    let certs = identity
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .ok()?;
    tls::peer_key(certs.first()?.as_ref())
}

pub(super) async fn dial_loop(shared: Arc<Shared>, endpoint: Endpoint, peer_key: PublicKey) {
    let peer = &shared.peers[&peer_key];
    let mut connected = peer.connected.subscribe();
    let mut backoff = shared.config.reconnect_backoff_min;
    loop {
        // Wait until the peer is unreachable.
        tokio::select! {
            biased;
            () = shared.shut_down() => return,
            r = connected.wait_for(|c| !*c) => if r.is_err() { return },
        }
        let attempt = async {
            // Resolved at each attempt: a name may point elsewhere since the last one (a
            // container or pod that restarted).
            let addr = tokio::time::timeout(
                shared.config.handshake_timeout,
                resolve(&peer.addr, &endpoint),
            )
            .await
            .map_err(|_| format!("resolving {} timed out", peer.addr))??;
            let connecting = endpoint
                .connect_with(peer.client_config.clone(), addr, tls::SERVER_NAME)
                .map_err(|e| e.to_string())?;
            match tokio::time::timeout(shared.config.handshake_timeout, connecting).await {
                Ok(Ok(conn)) => Ok(conn),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("handshake timed out".to_owned()),
            }
        };
        let outcome = tokio::select! {
            biased;
            () = shared.shut_down() => return,
            o = attempt => o,
        };
        let served = match outcome {
            // Runs until this connection ends, or returns at once if it was refused.
            Ok(conn) => {
                run_connection(shared.clone(), peer_key, conn, shared.me).await == Outcome::Served
            }
            Err(error) => {
                shared.metrics.reject("dial_failed");
                tracing::debug!(peer = %peer_key, %error, ?backoff, "dial failed");
                false
            }
        };
        if served {
            backoff = shared.config.reconnect_backoff_min;
        } else {
            tokio::select! {
                biased;
                () = shared.shut_down() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(shared.config.reconnect_backoff_max);
        }
    }
}

/// The socket address to dial for `addr` (`HOST:PORT`, HOST an IP address or a DNS name): an
/// address as it is; a name's addresses, those of the endpoint's own family first.
async fn resolve(addr: &str, endpoint: &Endpoint) -> Result<SocketAddr, String> {
    if let Ok(a) = addr.parse::<SocketAddr>() {
        return Ok(a);
    }
    let found: Vec<SocketAddr> = tokio::net::lookup_host(addr)
        .await
        .map_err(|e| format!("cannot resolve {addr}: {e}"))?
        .collect();
    let ipv4 = endpoint.local_addr().map_or(true, |a| a.is_ipv4());
    found
        .iter()
        .find(|a| a.is_ipv4() == ipv4)
        .or(found.first())
        .copied()
        .ok_or_else(|| format!("{addr} resolves to no address"))
}

/// Whether the decider keeps a new connection over the current one (see the module docs).
pub(super) fn decide(
    old: Option<&Active>,
    new_dialer: PublicKey,
    new_incarnation: u64,
) -> Result<(), &'static str> {
    let Some(old) = old else { return Ok(()) };
    if new_incarnation > old.incarnation {
        Ok(()) // the peer restarted: the old connection is stale
    } else if new_incarnation < old.incarnation {
        Err("stale_connection")
    } else if new_dialer == old.dialer {
        Ok(()) // the dialler redialled, so it saw the old connection die
    } else {
        Err("duplicate_connection") // both dialled at once: the first accepted one stays
    }
}

/// How a connection ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    /// It was registered and served until it closed.
    Served,
    /// It was refused or failed before it was registered.
    Refused,
}

/// Exchanges hellos, lets the decider (the smaller key of the pair) keep or refuse the
/// connection, registers it, and runs its writer and reader until it ends.
pub(super) async fn run_connection(
    shared: Arc<Shared>,
    peer_key: PublicKey,
    conn: Connection,
    dialer: PublicKey,
) -> Outcome {
    let i_decide = shared.me < peer_key;
    let hello = async {
        let mut send = conn.open_uni().await.map_err(|e| (false, e.to_string()))?;
        send.write_all(&frame::hello(shared.config.incarnation))
            .await
            .map_err(|e| (false, e.to_string()))?;
        let mut recv = conn
            .accept_uni()
            .await
            .map_err(|e| (false, e.to_string()))?;
        let mut h = [0u8; HELLO_LEN];
        recv.read_exact(&mut h)
            .await
            .map_err(|e| (false, e.to_string()))?;
        let incarnation = frame::parse_hello(&h).ok_or((true, "bad hello magic".to_owned()))?;
        Ok::<_, (bool, String)>((send, recv, incarnation))
    };
    let (mut send, mut recv, incarnation) =
        match tokio::time::timeout(shared.config.handshake_timeout, hello).await {
            Ok(Ok(x)) => x,
            outcome => {
                let (protocol_violation, reason) = match outcome {
                    Ok(Err(e)) => e,
                    _ => (true, "hello timed out".to_owned()),
                };
                shared.metrics.reject(if protocol_violation {
                    "bad_hello"
                } else {
                    "hello_failed"
                });
                tracing::debug!(peer = %peer_key, %reason, "connection dropped before hello");
                conn.close(VarInt::from_u32(CODE_PROTOCOL), b"bad hello");
                return Outcome::Refused;
            }
        };

    let peer = &shared.peers[&peer_key];
    let id = shared.next_conn_id.fetch_add(1, Relaxed);
    let active = Active {
        id,
        conn: conn.clone(),
        dialer,
        incarnation,
    };
    let replaced = if i_decide {
        let replaced = {
            let mut slot = peer.slot.lock().expect("peer slot lock poisoned");
            if let Err(reason) = decide(slot.as_ref(), dialer, incarnation) {
                drop(slot);
                shared.metrics.reject(reason);
                conn.close(VarInt::from_u32(CODE_DUPLICATE), reason.as_bytes());
                return Outcome::Refused;
            }
            slot.replace(active)
        };
        // Tell the follower; if this fails the connection is dead and the reader ends at once.
        let _ = send.write_all(&[frame::ACCEPT]).await;
        replaced
    } else {
        let mut accept = [0u8; 1];
        match tokio::time::timeout(
            shared.config.handshake_timeout,
            recv.read_exact(&mut accept),
        )
        .await
        {
            Ok(Ok(())) if accept[0] == frame::ACCEPT => {}
            _ => {
                // The decider kept another connection (or went away).
                conn.close(VarInt::from_u32(CODE_DUPLICATE), b"not accepted");
                return Outcome::Refused;
            }
        }
        peer.slot
            .lock()
            .expect("peer slot lock poisoned")
            .replace(active)
    };
    let newly_connected = replaced.is_none();
    if let Some(old) = replaced {
        old.conn.close(VarInt::from_u32(CODE_REPLACED), b"replaced");
    }
    if newly_connected {
        shared.counters(&peer_key).connects.fetch_add(1, Relaxed);
        peer.connected.send_replace(true);
        tracing::debug!(peer = %peer_key, "peer connected");
        let _ = shared.events.send(Inbound::Connected(peer_key)).await;
    }
    // A writer of a replaced connection may hold the wake-up; make sure this one drains.
    peer.queue.ready.notify_one();

    let writer = tokio::spawn(writer(shared.clone(), peer_key, id, conn.clone(), send));
    reader(&shared, peer_key, &conn, recv).await;
    writer.abort();

    let still_current = {
        let mut slot = peer.slot.lock().expect("peer slot lock poisoned");
        if slot.as_ref().is_some_and(|a| a.id == id) {
            *slot = None;
            true
        } else {
            false
        }
    };
    conn.close(VarInt::from_u32(CODE_PROTOCOL), b"closed");
    if still_current {
        shared.counters(&peer_key).disconnects.fetch_add(1, Relaxed);
        peer.connected.send_replace(false);
        tracing::debug!(peer = %peer_key, "peer disconnected");
        if !shared.is_shut_down() {
            let _ = shared.events.send(Inbound::Disconnected(peer_key)).await;
        }
    }
    Outcome::Served
}

pub(super) fn is_current(peer: &Peer, id: u64) -> bool {
    peer.slot
        .lock()
        .expect("peer slot lock poisoned")
        .as_ref()
        .is_some_and(|a| a.id == id)
}

pub(super) async fn writer(
    shared: Arc<Shared>,
    peer_key: PublicKey,
    id: u64,
    conn: Connection,
    mut send: quinn::SendStream,
) {
    let peer = &shared.peers[&peer_key];
    let counters = shared.counters(&peer_key);
    let mut batch = Vec::new();
    let mut chunks: Vec<Bytes> = Vec::new();
    loop {
        if peer.queue.is_empty() {
            tokio::select! {
                biased;
                _ = conn.closed() => return,
                () = peer.queue.ready.notified() => {}
            }
            continue;
        }
        if !is_current(peer, id) {
            // Hand the wake-up to the connection that replaced this one.
            peer.queue.ready.notify_one();
            return;
        }
        peer.queue
            .pop_batch(WRITE_BATCH_BYTES, &mut batch, counters);
        let (frames, bytes) = (
            batch.len() as u64,
            batch.iter().map(Bytes::len).sum::<usize>() as u64,
        );
        let mut small = BytesMut::new();
        for f in batch.drain(..) {
            if f.len() < COALESCE_BELOW {
                frame::put_header(&mut small, f.len());
                small.extend_from_slice(&f);
            } else {
                frame::put_header(&mut small, f.len());
                chunks.push(small.split().freeze());
                chunks.push(f);
            }
        }
        if !small.is_empty() {
            chunks.push(small.freeze());
        }
        if let Err(e) = send.write_all_chunks(&mut chunks).await {
            tracing::debug!(peer = %peer_key, error = %e, "stream write failed");
            return;
        }
        chunks.clear();
        counters.frames_sent.fetch_add(frames, Relaxed);
        counters.bytes_sent.fetch_add(bytes, Relaxed);
    }
}

pub(super) async fn reader(
    shared: &Shared,
    peer_key: PublicKey,
    conn: &Connection,
    mut recv: quinn::RecvStream,
) {
    let counters = shared.counters(&peer_key);
    let mut decoder = Decoder::new(shared.config.frame_max);
    let mut frames = Vec::new();
    loop {
        let chunk = tokio::select! {
            biased;
            () = shared.shut_down() => return,
            c = recv.read_chunk(READ_CHUNK_MAX, true) => c,
        };
        let chunk = match chunk {
            Ok(Some(chunk)) => chunk,
            Ok(None) => return,
            Err(e) => return tracing::debug!(peer = %peer_key, error = %e, "stream read ended"),
        };
        if let Err(e) = decoder.feed(&chunk.bytes, &mut frames) {
            let reason = match e {
                FrameError::Oversize { .. } => "oversize_frame",
                FrameError::Empty => "malformed_frame",
            };
            shared.metrics.reject(reason);
            tracing::warn!(peer = %peer_key, error = %e, "disconnecting a peer that broke the framing");
            conn.close(VarInt::from_u32(CODE_PROTOCOL), reason.as_bytes());
            return;
        }
        if frames.is_empty() {
            continue;
        }
        let bytes: usize = frames.iter().map(Bytes::len).sum();
        let permits = u32::try_from(bytes.min(shared.config.inbound_bytes_max))
            .expect("inbound_bytes_max < 4 GiB");
        let budget = tokio::select! {
            biased;
            () = shared.shut_down() => return,
            p = shared.inbound_budget.clone().acquire_many_owned(permits) => p.expect("budget semaphore is never closed"),
        };
        counters
            .frames_received
            .fetch_add(frames.len() as u64, Relaxed);
        counters.bytes_received.fetch_add(bytes as u64, Relaxed);
        let batch = Inbound::Frames {
            from: peer_key,
            frames: std::mem::take(&mut frames),
            _budget: budget,
        };
        if shared.events.send(batch).await.is_err() {
            return; // the application dropped its Events
        }
    }
}
