//! The transport's side of the node: consensus messages to the engine thread, gossiped
//! transactions verified into the mempool (on a task of their own, bounded), block requests
//! served from the ledger, and the gossip of newly admitted transactions.

use super::admission::verify_once;
use super::{
    Input, NodeWire, Shared, GOSSIP_BATCH_MAX, GOSSIP_INTERVAL, SYNC_BATCH_MAX, SYNC_BYTES_MAX,
};
use medchain_network::NetEvent;
use medchain_types::{codec, Hash, PublicKey, Transaction};
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Verifies gossiped transactions in arrival order (batched, off the async threads) and admits
/// the valid ones; they are never re-gossiped.
async fn gossip_verifier(shared: Arc<Shared>, mut queue: mpsc::UnboundedReceiver<GossipBatch>) {
    while let Some((from, txs, share)) = queue.recv().await {
        let s = shared.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let _share = share;
            let mut seen = foldhash::HashSet::default();
            let (txs, hashes): (Vec<Transaction>, Vec<Hash>) = txs
                .into_iter()
                .map(|t| (t.hash(), t))
                .filter(|(h, _)| seen.insert(*h))
                .map(|(h, t)| (t, h))
                .unzip();
            match verify_once(&s, &txs, &hashes) {
                Ok(()) => {
                    let _ = s.admit_verified(txs, hashes, false, false);
                }
                Err((i, e)) => tracing::warn!(
                    peer = %from,
                    index = i,
                    error = %e,
                    "gossiped transactions failed verification"
                ),
            }
        })
        .await;
    }
}

/// Gossiped transactions received and not yet verified, at most this many KiB. Beyond it the
/// network loop waits (back-pressure on the peers' streams) instead of queueing more.
const GOSSIP_QUEUE_KIB: usize = 64 * 1024;

/// A batch of gossiped transactions waiting for verification, holding its share of the queue.
type GossipBatch = (
    PublicKey,
    Vec<Transaction>,
    tokio::sync::OwnedSemaphorePermit,
);

/// Handles the transport's events until it closes.
pub(super) async fn network_loop(shared: Arc<Shared>, mut events: medchain_network::Events) {
    // Gossip is verified by a task of its own: verifying a batch takes milliseconds, and under
    // load the batches queue up; consensus messages must not wait behind them (a backup that
    // sees the pre-prepare seconds late times out and starts a view change).
    let budget = Arc::new(tokio::sync::Semaphore::new(GOSSIP_QUEUE_KIB));
    let (to_verify, verify_queue) = mpsc::unbounded_channel::<GossipBatch>();
    tokio::spawn(gossip_verifier(shared.clone(), verify_queue));
    while let Some(ev) = events.recv().await {
        let (from, bytes) = match ev {
            NetEvent::Message { from, bytes } => (from, bytes),
            NetEvent::Connected(p) => {
                tracing::info!(peer = %p, "peer connected");
                let pending = shared.pending_sync.lock().expect("sync lock").take();
                if let Some(from_height) = pending {
                    shared.send(&p, &NodeWire::BlockRequest { from_height });
                }
                continue;
            }
            NetEvent::Disconnected(p) => {
                tracing::warn!(peer = %p, "peer disconnected");
                continue;
            }
        };
        let Ok(wire) = codec::decode::<NodeWire>(&bytes) else {
            tracing::warn!(peer = %from, "undecodable message");
            continue;
        };
        let k = wire.kind();
        shared.metrics.messages_in[k].fetch_add(1, Relaxed);
        shared.metrics.bytes_in[k].fetch_add(bytes.len() as u64, Relaxed);
        match wire {
            NodeWire::Consensus(bytes) => {
                if shared
                    .inbox
                    .send(Input::Consensus { from, bytes })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            NodeWire::Txs(txs) => {
                // Queued for `gossip_verifier`; the loop goes on to the next message.
                if txs.len() > GOSSIP_BATCH_MAX {
                    tracing::warn!(peer = %from, count = txs.len(), "oversized gossip batch refused");
                    continue;
                }
                let kib = (bytes.len() / 1024 + 1).min(GOSSIP_QUEUE_KIB) as u32;
                let Ok(share) = budget.clone().acquire_many_owned(kib).await else {
                    return;
                };
                if to_verify.send((from, txs, share)).is_err() {
                    return;
                }
            }
            NodeWire::BlockRequest { from_height } => {
                // At most SYNC_SERVERS_MAX requests are served at once; the rest are dropped
                // (the requester retries), so a flood of requests cannot pile up work.
                let Ok(permit) = shared.sync_servers.clone().try_acquire_owned() else {
                    tracing::debug!(peer = %from, "busy serving blocks; request dropped");
                    continue;
                };
                let s = shared.clone();
                tokio::task::spawn_blocking(move || {
                    let _permit = permit;
                    let tip = s.ledger.tip().map_or(0, |t| t.height);
                    let mut blocks = Vec::new();
                    let mut size = 0;
                    for h in from_height..=tip {
                        let (Ok(Some(b)), Ok(Some(c))) =
                            (s.ledger.block(h), s.ledger.certificate(h))
                        else {
                            break;
                        };
                        // Bounded before adding: the response must fit one frame.
                        let len = b.txs.iter().map(|t| t.payload.len() + 256).sum::<usize>()
                            + c.0.len()
                            + 1024;
                        if !blocks.is_empty() && size + len > SYNC_BYTES_MAX {
                            break;
                        }
                        size += len;
                        blocks.push((b, c));
                        if blocks.len() >= SYNC_BATCH_MAX {
                            break;
                        }
                    }
                    if !blocks.is_empty() {
                        s.send(&from, &NodeWire::BlockResponse(blocks));
                    }
                });
            }
            NodeWire::BlockResponse(blocks) => {
                let full = blocks.len() >= SYNC_BATCH_MAX;
                let next = blocks
                    .last()
                    .and_then(|(b, _)| b.header.height.checked_add(1));
                if let Some((last, _)) = blocks.last() {
                    let seen = if full { next } else { Some(last.header.height) };
                    shared
                        .chain_seen
                        .fetch_max(seen.unwrap_or(u64::MAX), SeqCst);
                }
                if shared.inbox.send(Input::Synced(blocks)).await.is_err() {
                    return;
                }
                // The peer had more: keep fetching without waiting for the engine's retry.
                if let (true, Some(from_height)) = (full, next) {
                    shared.send(&from, &NodeWire::BlockRequest { from_height });
                }
            }
        }
    }
}

/// Sends admitted transactions to the other validators: a lone transaction at once (so that a
/// client of a node that is not the leader does not wait for a tick), and under load in
/// batches at most every [`GOSSIP_INTERVAL`].
pub(super) async fn gossip_loop(shared: Arc<Shared>) {
    // Chunks must fit a frame: by count and by encoded bytes (with room for the envelope).
    let bytes_max = shared.config.network.frame_max.saturating_sub(1024).max(1);
    let mut last = tokio::time::Instant::now();
    loop {
        tokio::select! {
            () = shared.gossip_ready.notified() => {}
            () = tokio::time::sleep(GOSSIP_INTERVAL) => {}
        }
        shared.release_held();
        if shared.gossip.lock().expect("gossip lock").is_empty() {
            if Arc::strong_count(&shared) == 1 {
                return;
            }
            continue;
        }
        let since = last.elapsed();
        if since < GOSSIP_INTERVAL {
            tokio::time::sleep(GOSSIP_INTERVAL - since).await;
        }
        last = tokio::time::Instant::now();
        let batch = std::mem::take(&mut *shared.gossip.lock().expect("gossip lock"));
        let mut chunk = Vec::new();
        let mut size = 0;
        for tx in batch {
            let len = tx.payload.len() + 256;
            if !chunk.is_empty() && (chunk.len() >= GOSSIP_BATCH_MAX || size + len > bytes_max) {
                shared.broadcast(&NodeWire::Txs(std::mem::take(&mut chunk)));
                size = 0;
            }
            size += len;
            chunk.push(tx);
        }
        if !chunk.is_empty() {
            shared.broadcast(&NodeWire::Txs(chunk));
        }
        if Arc::strong_count(&shared) == 1 {
            return;
        }
    }
}
