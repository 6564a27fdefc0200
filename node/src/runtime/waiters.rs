//! Clients waiting for their transactions' commits: one [`CommitWait`] per request, found by
//! transaction hash when a commit comes.

use super::admission::FinalRead;
use super::{Shared, WAITERS_MAX};
use medchain_types::{Hash, Receipt};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request waiting for the commits of its transactions: their receipts, by position in
/// the request's sorted distinct hashes, filled in as commits come. One per request, not a
/// channel per transaction: a request of `medchain load` names 200, and a saturated primary
/// serves about a hundred such requests a second.
#[derive(Debug)]
pub struct CommitWait {
    receipts: Mutex<Vec<Option<Receipt>>>,
    missing: AtomicUsize,
    done: tokio::sync::Notify,
}

impl CommitWait {
    fn new(n: usize) -> CommitWait {
        CommitWait {
            receipts: Mutex::new(vec![None; n]),
            missing: AtomicUsize::new(n),
            done: tokio::sync::Notify::new(),
        }
    }

    /// Records the receipt of the transaction at `slot` (once; a second one is ignored).
    fn fill(&self, slot: usize, receipt: &Receipt) {
        let mut receipts = self.receipts.lock().expect("commit wait lock");
        if receipts[slot].is_none() {
            receipts[slot] = Some(receipt.clone());
            drop(receipts);
            if self.missing.fetch_sub(1, SeqCst) == 1 {
                // Stores a permit if nobody waits yet, so the wake-up is never lost.
                self.done.notify_one();
            }
        }
    }

    /// Returns when every receipt is in.
    pub async fn all_committed(&self) {
        while self.missing.load(SeqCst) > 0 {
            self.done.notified().await;
        }
    }

    /// The receipts, by slot (`None` for those not committed).
    pub fn receipts(&self) -> Vec<Option<Receipt>> {
        self.receipts.lock().expect("commit wait lock").clone()
    }
}

/// Requests waiting for commits, by transaction hash (with the slot each gave it), with their
/// total count kept so that the limit check does not walk the map.
#[derive(Debug, Default)]
pub(super) struct Waiters {
    map: foldhash::HashMap<Hash, Vec<(Arc<CommitWait>, usize)>>,
    count: usize,
}

impl Waiters {
    fn add(&mut self, h: Hash, w: Arc<CommitWait>, slot: usize) {
        self.map.entry(h).or_default().push((w, slot));
        self.count += 1;
    }

    /// Gives `receipt` to every request waiting for its transaction.
    pub(super) fn resolve(&mut self, receipt: &Receipt) {
        if let Some(v) = self.map.remove(&receipt.tx_hash) {
            self.count -= v.len();
            for (w, slot) in v {
                w.fill(slot, receipt);
            }
        }
    }

    /// Drops `wait`'s registration for `h`.
    fn forget(&mut self, h: &Hash, wait: &Arc<CommitWait>) {
        if let Some(v) = self.map.get_mut(h) {
            let before = v.len();
            v.retain(|(w, _)| !Arc::ptr_eq(w, wait));
            self.count -= before - v.len();
            if v.is_empty() {
                self.map.remove(h);
            }
        }
    }
}

/// The receipts of a request's transactions, all committed.
#[derive(Debug)]
pub struct Committed {
    /// The request's transaction hashes, in request order.
    pub hashes: Vec<Hash>,
    /// The same, sorted and distinct: the wait's slots.
    pub unique: Vec<Hash>,
    /// The receipts, by slot.
    pub receipts: Vec<Option<Receipt>>,
}

impl Committed {
    /// The slot of each requested transaction, in request order.
    pub fn slots(&self) -> Vec<usize> {
        self.hashes
            .iter()
            .map(|h| {
                self.unique
                    .binary_search(h)
                    .expect("every requested transaction has a slot")
            })
            .collect()
    }
}

/// Why a wait could not start.
#[derive(Debug)]
pub enum WaitError {
    /// Too many clients are waiting already.
    TooMany(String),
    /// The node failed (a task could not run).
    Internal(String),
}

impl std::fmt::Display for WaitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WaitError::TooMany(m) | WaitError::Internal(m) => f.write_str(m),
        }
    }
}

/// Forgets, when dropped, what is left registered of a request's wait for commits.
struct ForgetOnDrop(Arc<Shared>, Vec<Hash>, Arc<CommitWait>);

impl Drop for ForgetOnDrop {
    fn drop(&mut self) {
        self.0.forget_waiters(&self.1, &self.2);
    }
}

/// Gossips, when dropped, what a leader still holds of a waiting request's transactions (see
/// `Shared::admit_verified`): committed ones are no longer held, and the others lost the
/// client that waited for them.
struct ReleaseOnDrop(Arc<Shared>, Vec<Hash>);

impl Drop for ReleaseOnDrop {
    fn drop(&mut self) {
        self.0.release_hashes(&self.1);
    }
}

impl Shared {
    /// Waits at most `limit` for the commits of admitted transactions (`hashes`, in request
    /// order, with what admission read); `Ok(None)` when time runs out. However the wait ends
    /// (committed, timed out, or this future dropped because the client went away), what is
    /// left registered is forgotten, and what this node still holds of the transactions is
    /// gossiped: nobody waits for them any more.
    pub async fn wait_committed(
        self: &Arc<Self>,
        hashes: Vec<Hash>,
        read: FinalRead,
        limit: Duration,
    ) -> Result<Option<Committed>, WaitError> {
        let _release = ReleaseOnDrop(self.clone(), hashes.clone());
        // Registered after admission: a commit in between is caught by wait_for's own checks.
        let s = self.clone();
        let hs = hashes.clone();
        let (unique, wait) = tokio::task::spawn_blocking(move || s.wait_for(&hs, &read))
            .await
            .map_err(|e| WaitError::Internal(e.to_string()))?
            .map_err(WaitError::TooMany)?;
        let _forget = ForgetOnDrop(self.clone(), unique.clone(), wait.clone());
        if tokio::time::timeout(limit, wait.all_committed())
            .await
            .is_err()
        {
            return Ok(None);
        }
        Ok(Some(Committed {
            hashes,
            unique,
            receipts: wait.receipts(),
        }))
    }

    /// Registers interest in transactions' commits (call after admission, with what it read).
    /// Already committed ones resolve at once. Returns the sorted distinct hashes (the wait's
    /// slots) and the wait.
    fn wait_for(
        &self,
        hashes: &[Hash],
        read: &FinalRead,
    ) -> Result<(Vec<Hash>, Arc<CommitWait>), String> {
        let mut unique: Vec<Hash> = hashes.to_vec();
        unique.sort_unstable();
        unique.dedup();
        // Ledger reads happen before taking the lock (commits need it to resolve waiters).
        // Admission's read is still exact if no commit has been counted since it: then only the
        // transactions it found final have receipts to read (under load, usually none).
        let commits_before = self.commits_written.load(SeqCst);
        let committed = if read.commits == Some(commits_before) {
            unique
                .iter()
                .map(|h| {
                    read.known
                        .binary_search(h)
                        .ok()
                        .and_then(|_| self.ledger.receipt(h).ok().flatten())
                })
                .collect()
        } else {
            self.receipts_if_final(&unique)
        };
        let mut waiters = self.waiters.lock().expect("waiters lock");
        if waiters.count + unique.len() > WAITERS_MAX {
            return Err(
                "too many clients are waiting for commits; retry without ?wait=commit".into(),
            );
        }
        let wait = Arc::new(CommitWait::new(unique.len()));
        let mut registered = Vec::new();
        for (slot, (h, receipt)) in unique.iter().zip(committed).enumerate() {
            match receipt {
                Some(r) => wait.fill(slot, &r),
                None => {
                    waiters.add(*h, wait.clone(), slot);
                    registered.push(*h);
                }
            }
        }
        drop(waiters);
        // A commit between the ledger read above and the registration has already looked for
        // waiters; resolve those here. Only a commit counted since the read can be one: a commit
        // writes the ledger, then counts itself, then takes the lock, so one counted before
        // `commits_before` was read is in the ledger read, and one not counted by now takes the
        // lock after the registration and finds the waiters.
        if self.commits_written.load(SeqCst) == commits_before {
            return Ok((unique, wait));
        }
        for receipt in self.receipts_if_final(&registered).into_iter().flatten() {
            self.waiters.lock().expect("waiters lock").resolve(&receipt);
        }
        Ok((unique, wait))
    }

    /// The receipts of those of `hashes` that are final: one batched index read for all, then
    /// a receipt read for each final one only (at submission, usually none). If the batched
    /// read fails, each hash is read on its own instead; a failed receipt read counts as not
    /// final yet (the commit resolves the waiter).
    fn receipts_if_final(&self, hashes: &[Hash]) -> Vec<Option<Receipt>> {
        let known = self
            .ledger
            .txs_known(hashes)
            .unwrap_or_else(|_| vec![true; hashes.len()]);
        hashes
            .iter()
            .zip(known)
            .map(|(h, k)| k.then(|| self.ledger.receipt(h).ok().flatten()).flatten())
            .collect()
    }

    /// Drops what is left registered of a wait (its client got its receipts or gave up).
    fn forget_waiters(&self, hashes: &[Hash], wait: &Arc<CommitWait>) {
        let mut waiters = self.waiters.lock().expect("waiters lock");
        for h in hashes {
            waiters.forget(h, wait);
        }
    }
}
