//! The engine thread: executes the engine's actions in order (`Persist` is a barrier: the
//! synced write returns before anything after it), executes and writes committed blocks, runs
//! timers, and stops the node when a write it cannot do without fails.

use super::{Input, NodeWire, Shared};
use medchain_consensus::{Action, Engine, Event, TimerId};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// A failure the node cannot go on from (see `Shared::fail`).
struct Fatal(String);

/// The engine thread's loop, until shutdown or a fatal failure.
pub(super) fn run(
    mut engine: Box<dyn Engine>,
    mut inbox: mpsc::Receiver<Input>,
    shared: Arc<Shared>,
    rt: tokio::runtime::Handle,
) {
    let mut timers: HashMap<TimerId, u64> = HashMap::new();
    let mut next_token = 0u64;
    let mut local: VecDeque<Event> = VecDeque::new();
    let mut out = Vec::new();
    let mut last_status = Instant::now();
    let mut commits_seen = 0;
    engine.start(super::now_ms(), &mut out);
    let mut pending = std::mem::take(&mut out);
    loop {
        for action in pending.drain(..) {
            if let Err(Fatal(why)) = execute(
                action,
                &shared,
                &rt,
                &mut timers,
                &mut next_token,
                &mut local,
            ) {
                // Nothing after a failed write may happen: no vote, no further commit.
                shared.fail(why);
                *shared.status.write().expect("status lock") = engine.status();
                return;
            }
        }
        if let Some(ev) = local.pop_front() {
            engine.handle(super::now_ms(), ev, &mut out);
            pending.append(&mut out);
            continue;
        }
        // Refresh the status for the API at most every 20 ms, and after every commit.
        let commits = shared.metrics.commits.load(Relaxed);
        if commits != commits_seen || last_status.elapsed() > Duration::from_millis(20) {
            let status = engine.status();
            let old = shared.status.read().expect("status lock").clone();
            if status.counters != old.counters {
                tracing::debug!(counters = ?status.counters, height = status.height, view = status.view, "engine counters");
            }
            if status.view != old.view || status.leads != old.leads {
                tracing::info!(
                    view = status.view,
                    leads = status.leads,
                    leader = ?status.leader,
                    height = status.height,
                    engine_status = ?status.extra,
                    "consensus state changed"
                );
            }
            *shared.status.write().expect("status lock") = status;
            last_status = Instant::now();
            commits_seen = commits;
        }
        let Some(input) = inbox.blocking_recv() else {
            break;
        };
        match input {
            Input::Consensus { from, bytes } => local.push_back(Event::Message { from, bytes }),
            Input::Timer { id, token } => {
                if timers.get(&id) == Some(&token) {
                    timers.remove(&id);
                    local.push_back(Event::TimerFired(id));
                }
            }
            Input::Synced(blocks) => local.extend(
                blocks
                    .into_iter()
                    .map(|(block, certificate)| Event::SyncedBlock { block, certificate }),
            ),
            Input::WorkFound { header_hash, nonce } => {
                local.push_back(Event::WorkFound { header_hash, nonce })
            }
            Input::Shutdown => break,
        }
    }
    *shared.status.write().expect("status lock") = engine.status();
}

fn execute(
    action: Action,
    shared: &Arc<Shared>,
    rt: &tokio::runtime::Handle,
    timers: &mut HashMap<TimerId, u64>,
    next_token: &mut u64,
    local: &mut VecDeque<Event>,
) -> Result<(), Fatal> {
    match action {
        Action::Send { to, msg } => shared.send(&to, &NodeWire::Consensus(msg)),
        Action::Broadcast(msg) => shared.broadcast(&NodeWire::Consensus(msg)),
        Action::SetTimer { id, after } => {
            *next_token += 1;
            let token = *next_token;
            timers.insert(id, token);
            let inbox = shared.inbox.clone();
            rt.spawn(async move {
                tokio::time::sleep(after).await;
                let _ = inbox.send(Input::Timer { id, token }).await;
            });
        }
        Action::CancelTimer(id) => {
            timers.remove(&id);
        }
        Action::Persist { key, value } => {
            let result = match &value {
                Some(v) => shared.ledger.put_engine_record(&key, v),
                None => shared.ledger.delete_engine_record(&key),
            };
            if let Err(e) = result {
                // Continuing could make this replica vote twice after a restart.
                return Err(Fatal(format!("cannot persist an engine record: {e}")));
            }
        }
        Action::PersistCandidate { key, value, block } => {
            if let Err(e) = shared.ledger.put_candidate(&block, &key, &value) {
                return Err(Fatal(format!("cannot persist an engine record: {e}")));
            }
        }
        Action::Commit { block, certificate } => {
            let started = Instant::now();
            let height = block.header.height;
            let tx_hashes = shared.tx_hashes_of(&block);
            match shared
                .executor
                .apply_hashed(&shared.ledger, &block, &tx_hashes, &certificate)
            {
                Ok((tip, receipts)) => {
                    // Counted after the ledger write and before the removal from the mempool
                    // (the order `admit_verified` relies on).
                    shared.commits_written.fetch_add(1, SeqCst);
                    if let Some(e) = shared.ledger.take_tx_index_error() {
                        tracing::warn!(
                            error = %e,
                            "writing a run of the transaction index failed; its entries stay in \
                             memory and are written with the next run"
                        );
                    }
                    if block.header.proposer == shared.me {
                        shared.last_own_commit_ms.store(shared.mono_ms(), Relaxed);
                    }
                    let m = &shared.metrics;
                    m.commits.fetch_add(1, Relaxed);
                    let ok = receipts.iter().filter(|r| r.is_success()).count() as u64;
                    m.txs_committed.fetch_add(ok, Relaxed);
                    m.txs_failed.fetch_add(receipts.len() as u64 - ok, Relaxed);
                    shared
                        .mempool
                        .lock()
                        .expect("mempool lock")
                        .remove(receipts.iter().map(|r| &r.tx_hash));
                    // The apps' hooks run on their own thread: nothing here waits for them.
                    // Handed over before any client learns of the commit, so that a read that
                    // waits for the hooks (`Host::hooks_caught_up`) after an acknowledged
                    // commit waits for this block.
                    shared.hooks.committed(&block, &receipts);
                    {
                        let mut waiters = shared.waiters.lock().expect("waiters lock");
                        for r in &receipts {
                            waiters.resolve(r);
                        }
                    }
                    m.commit_ms
                        .fetch_add(started.elapsed().as_millis() as u64, Relaxed);
                    tracing::debug!(height, txs = receipts.len(), "committed");
                    local.push_back(Event::BlockExecuted {
                        height,
                        state_root: tip.state_root,
                    });
                }
                Err(e) => {
                    // A final block the ledger refuses means this node diverged: stop, loudly.
                    return Err(Fatal(format!(
                        "the ledger refused the final block at height {height}: {e}"
                    )));
                }
            }
        }
        Action::NeedTransactions { max } => {
            let (txs, hashes) = shared.mempool.lock().expect("mempool lock").batch(max);
            if !hashes.is_empty() {
                shared.block_tx_hashes.remember_batch(&hashes);
            }
            local.push_back(Event::Transactions { txs, hashes });
        }
        Action::NeedBlocks { from_height, peer } => {
            let connected = shared.network.connected_peers();
            let target = peer.filter(|p| connected.contains(p)).or_else(|| {
                // Spread requests over connected peers.
                connected
                    .get((from_height as usize) % connected.len().max(1))
                    .copied()
            });
            match target {
                Some(p) => shared.send(&p, &NodeWire::BlockRequest { from_height }),
                // Typical right after a restart: ask the first peer that connects.
                None => *shared.pending_sync.lock().expect("sync lock") = Some(from_height),
            }
        }
        Action::StartWork { header, target } => shared.miner.work(header, target),
        Action::StopWork => shared.miner.idle(),
    }
    Ok(())
}
