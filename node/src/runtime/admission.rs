//! Admission: client transactions (and gossiped ones, already verified) into the mempool, and
//! what a leader keeps back from the gossip because it proposes them itself.

use super::{Shared, GOSSIP_RELEASE_BYTES};
use medchain_types::{Hash, Transaction, TxError};
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::Arc;
use std::time::Duration;

/// Whether a primary gossips its held transactions now (see [`Shared::admit_verified`]): when
/// it is no longer the primary, or when the oldest has waited `hold_max` and no block it
/// proposed was committed in that time (so that a new primary can propose them, and the
/// backups' view-change timers, which run while their mempools hold work, run against a
/// primary that stalled). Times in ms since the node started; `held_since` is when the set of
/// marks last became non-empty, `last_own_commit` when a block this node proposed was last
/// written. Once due, the release goes on tick after tick until nothing is held or a block of
/// this node's commits.
fn release_due(
    leading: bool,
    held_since: u64,
    last_own_commit: u64,
    now: u64,
    hold_max: Duration,
) -> bool {
    let waited = now.saturating_sub(held_since.max(last_own_commit));
    !leading || u128::from(waited) >= hold_max.as_millis()
}

/// Verifies signatures of `txs` (bounds and chain first), at most once per node (see
/// [`crate::verify`]), after their chaincodes' admission policy (`Chaincode::screen`); returns
/// the index of a bad one.
pub(super) fn verify_once(
    shared: &Shared,
    txs: &[Transaction],
    hashes: &[Hash],
) -> Result<(), (usize, TxError)> {
    for (i, tx) in txs.iter().enumerate() {
        shared
            .executor
            .screen(tx)
            .map_err(|e| (i, TxError::Invalid(e)))?;
    }
    let checked = shared
        .verifier
        .verify(&shared.mempool, &shared.genesis.chain_id, txs, hashes)?;
    shared
        .metrics
        .signatures_verified
        .fetch_add(checked as u64, Relaxed);
    Ok(())
}

/// Transactions admitted: their hashes, in request order, and what admission read of the ledger.
#[derive(Debug)]
pub struct Admitted {
    /// One per transaction, in request order.
    pub hashes: Vec<Hash>,
    /// For [`Shared::wait_for`].
    pub read: FinalRead,
}

/// Which of some transactions were final when admission read the ledger, and the commit count
/// read just before that read: as long as no commit has been counted since, it is still exact.
#[derive(Debug, Clone, Default)]
pub struct FinalRead {
    /// `commits_written` before the read; `None` if the read failed (nothing to reuse).
    pub(super) commits: Option<u64>,
    /// The final ones, sorted.
    pub(super) known: Vec<Hash>,
}

/// Why a client's transaction was not admitted.
#[derive(Debug)]
pub enum AdmitError {
    /// Malformed, wrong chain, or bad signature.
    Invalid(usize, TxError),
    /// The mempool is full; retry later.
    Full,
    /// The sender has as many transactions waiting as one sender may; retry once some are
    /// committed.
    SenderFull,
    /// The node is shutting down.
    Stopping,
}

impl std::fmt::Display for AdmitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdmitError::Invalid(i, e) => write!(f, "transaction {i}: {e}"),
            AdmitError::Full => f.write_str("mempool is full, retry later"),
            AdmitError::SenderFull => f.write_str(
                "this sender has as many transactions waiting as one sender may, retry once some are committed",
            ),
            AdmitError::Stopping => f.write_str("the node is shutting down"),
        }
    }
}

impl Shared {
    /// Checks client transactions (bounds, chain, signatures in batches) and admits the valid
    /// ones to the mempool and the gossip. All or nothing for invalid input; `Full` and
    /// `SenderFull` may leave a prefix admitted (admission is idempotent, so a retry is safe). `client_waits`: the client
    /// waits for the commits (`?wait=commit`), so it learns if this node fails before them.
    pub fn admit(&self, txs: &[Transaction], client_waits: bool) -> Result<Admitted, AdmitError> {
        let hashes: Vec<Hash> = txs.iter().map(Transaction::hash).collect();
        if let Err((i, e)) = verify_once(self, txs, &hashes) {
            self.metrics.txs_refused.fetch_add(1, Relaxed);
            return Err(AdmitError::Invalid(i, e));
        }
        self.admit_verified(txs.to_vec(), hashes, true, client_waits)
    }

    /// [`Shared::admit`] on a blocking thread, at most one batch per core at a time (see
    /// `admit_slots`).
    pub async fn admit_async(
        self: &Arc<Self>,
        txs: Vec<Transaction>,
        client_waits: bool,
    ) -> Result<Admitted, AdmitError> {
        let slot = self
            .admit_slots
            .acquire()
            .await
            .map_err(|_| AdmitError::Stopping)?;
        let s = self.clone();
        let admitted = tokio::task::spawn_blocking(move || s.admit(&txs, client_waits))
            .await
            .map_err(|_| AdmitError::Stopping)?;
        drop(slot);
        admitted
    }

    /// Is this node a stable leader in normal operation (see `EngineStatus::leads`)?
    fn leading(&self) -> bool {
        self.status.read().expect("status lock").leads
    }

    /// Adds already verified transactions; gossips the new ones if `gossip`.
    ///
    /// Except at a PBFT primary, for clients that wait for the commits: clients send their
    /// requests to the primary, which puts them in its next pre-prepare (Castro and Liskov,
    /// §4.1–4.2), so the backups get them once, with the block, instead of twice (gossip, then
    /// the block). The primary marks them held instead of gossiping them, and
    /// [`Shared::release_held`] gossips them after all if it stops being the primary or stalls.
    /// A primary that crashes loses what it held; the clients were waiting on connections to it,
    /// which break, so they know to resubmit. A client that does not wait has its transactions
    /// gossiped at once, as at any other node: its 202 means that every node will have them.
    pub(super) fn admit_verified(
        &self,
        txs: Vec<Transaction>,
        hashes: Vec<Hash>,
        gossip: bool,
        client_waits: bool,
    ) -> Result<Admitted, AdmitError> {
        // Never keep a final transaction: a backup's mempool drives its view-change timer, so a
        // stale entry would make it time out alone. The ledger is read outside the mempool lock
        // (commits need that lock). A commit writes the ledger, then counts itself in
        // `commits_written`, then takes the lock to remove its transactions. So a commit that
        // this check misses either has not counted itself when the count is read again after
        // the insert (its removal comes later and takes the new entries out), or it has, and
        // the changed count calls for a re-check of what was inserted. Under load the count
        // rarely changes within one admission, which saves a ledger read per transaction.
        let commits_before = self.commits_written.load(SeqCst);
        // A failed read counts as not final, as a failed single read did.
        let (pending, read_ok): (Vec<bool>, bool) = match self.ledger.txs_known(&hashes) {
            Ok(known) => (known.into_iter().map(|k| !k).collect(), true),
            Err(_) => (vec![true; hashes.len()], false),
        };
        let mut final_before: Vec<Hash> = hashes
            .iter()
            .zip(&pending)
            .filter_map(|(h, pending)| (!pending).then_some(*h))
            .collect();
        final_before.sort_unstable();
        let hold = gossip && client_waits && self.leading();
        let gossip = gossip && !hold;
        let now = self.mono_ms();
        // Hashes inserted now (for the re-check) and, when gossiping, the transactions to send.
        let mut inserted: Vec<Hash> = Vec::new();
        let mut fresh = Vec::new();
        let mut full = None;
        {
            let mut pool = self.mempool.lock().expect("mempool lock");
            for ((tx, hash), pending) in txs.into_iter().zip(&hashes).zip(pending) {
                if !pending {
                    continue;
                }
                let copy = gossip.then(|| tx.clone());
                let added = if hold {
                    pool.insert_held(*hash, tx, now)
                } else {
                    pool.insert(*hash, tx)
                };
                match added {
                    Ok(()) => {
                        inserted.push(*hash);
                        fresh.extend(copy);
                    }
                    // Held at this primary for a client that waited, now sent by one that does
                    // not: gossiped now, as that client's 202 promises.
                    Err(crate::mempool::Refused::Known) => {
                        if gossip {
                            fresh.extend(pool.unhold(hash));
                        }
                    }
                    Err(crate::mempool::Refused::Full) => {
                        full = Some(AdmitError::Full);
                        break;
                    }
                    Err(crate::mempool::Refused::SenderFull) => {
                        full = Some(AdmitError::SenderFull);
                        break;
                    }
                }
            }
        }
        let admitted = inserted.len() as u64;
        let committed_meanwhile: Vec<Hash> = if self.commits_written.load(SeqCst) == commits_before
        {
            Vec::new()
        } else {
            let known = self.ledger.txs_known(&inserted).unwrap_or_default();
            inserted
                .into_iter()
                .zip(known)
                .filter_map(|(h, k)| k.then_some(h))
                .collect()
        };
        if !committed_meanwhile.is_empty() {
            self.mempool
                .lock()
                .expect("mempool lock")
                .remove(&committed_meanwhile);
        }
        if hold || gossip {
            // From a client (`fresh` may also hold transactions admitted before, un-held).
            self.metrics.txs_admitted.fetch_add(admitted, Relaxed);
        }
        if gossip {
            self.queue_gossip(fresh);
        }
        if let Some(e) = full {
            return Err(e);
        }
        Ok(Admitted {
            hashes,
            read: FinalRead {
                commits: read_ok.then_some(commits_before),
                known: final_before,
            },
        })
    }

    /// Called every gossip tick: gossips the oldest held transactions, at most
    /// [`GOSSIP_RELEASE_BYTES`] of them per tick, while [`release_due`] says so (see
    /// [`Shared::admit_verified`]).
    pub(super) fn release_held(&self) {
        // Read before the mempool lock: nothing holds the mempool while taking the status.
        let leading = self.leading();
        let mut pool = self.mempool.lock().expect("mempool lock");
        let (count, since) = pool.held();
        if count == 0 {
            return;
        }
        let hold_max = self.genesis.pbft.timeout_view_change / 4;
        let due = release_due(
            leading,
            since,
            self.last_own_commit_ms.load(Relaxed),
            self.mono_ms(),
            hold_max,
        );
        if !due {
            return;
        }
        let txs = pool.take_held(GOSSIP_RELEASE_BYTES);
        drop(pool);
        self.metrics
            .txs_held_released
            .fetch_add(txs.len() as u64, Relaxed);
        self.queue_gossip(txs);
    }

    /// Gossips those of `hashes` that this node still holds: called when the clients who waited
    /// for them stop waiting (their request timed out or was dropped), so that a primary that
    /// commits its own blocks but leaves some transactions out cannot keep them from the backups'
    /// timers.
    pub fn release_hashes(&self, hashes: &[Hash]) {
        let txs: Vec<Transaction> = {
            let mut pool = self.mempool.lock().expect("mempool lock");
            if pool.held().0 == 0 {
                return;
            }
            hashes.iter().filter_map(|h| pool.unhold(h)).collect()
        };
        self.metrics
            .txs_held_released
            .fetch_add(txs.len() as u64, Relaxed);
        self.queue_gossip(txs);
    }

    fn queue_gossip(&self, txs: Vec<Transaction>) {
        if !txs.is_empty() {
            let mut queue = self.gossip.lock().expect("gossip lock");
            let was_empty = queue.is_empty();
            queue.extend(txs);
            drop(queue);
            if was_empty {
                self.gossip_ready.notify_one();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_transactions_are_released_when_the_node_stops_leading_or_its_blocks_stall() {
        let max = Duration::from_millis(500);
        // Leading, and its own blocks commit: held, however old the first mark.
        assert!(!release_due(true, 1_000, 1_400, 1_800, max));
        assert!(!release_due(true, 1_000, 10_000, 10_499, max));
        // Leading, nothing of its own committed for `max` since the first mark or last commit.
        assert!(release_due(true, 1_000, 0, 1_500, max));
        assert!(release_due(true, 1_000, 1_200, 1_700, max));
        assert!(!release_due(true, 1_000, 1_200, 1_699, max));
        // Not leading: released at once.
        assert!(release_due(false, 1_000, 1_000, 1_000, max));
        // A clock reading before the marks (not expected: monotonic) does not release.
        assert!(!release_due(true, 1_000, 0, 900, max));
    }
}
