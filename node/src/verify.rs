//! Signature checks, once per transaction per node, whatever path a transaction comes by (a
//! client, gossip from a peer, a proposed block) and however those paths overlap in time.
//!
//! Under load a backup receives most transactions twice at nearly the same moment when clients
//! send them to a backup: gossiped by the node a client used, and inside the primary's
//! proposal. (Those sent to the primary by clients that wait come only in the proposal: see
//! `runtime::Shared::admit_verified`.) The gossip is checked on a blocking
//! thread while the engine thread checks the proposal. Without coordination both check the
//! transactions that neither has finished yet (measured: backups checked up to 25% more
//! signatures than there were transactions, at 5k tx/s and at saturation alike). So a check
//! first *claims* the transactions it will verify; a transaction another check has claimed is
//! waited for instead, and checked again only if that other check did not verify it (its batch
//! failed: the claim is released as soon as the batch equation fails, before the one-by-one
//! search for the bad signature).
//!
//! A check of more than one batch spreads its batches over every core: a PBFT backup checks a
//! proposed block's signatures on its engine thread (its clients' transactions come to it in the
//! block, not by gossip, when they were sent to the primary), and its votes wait for that.

use crate::mempool::Mempool;
use foldhash::HashSet;
use medchain_types::{batch_holds, verify_each, Hash, SignatureError, Transaction, TxError};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};

/// Most hashes [`VerifyOnce`] remembers as verified.
pub const VERIFIED_CACHE_MAX: usize = 400_000;

/// Shortest batch worth a thread of its own: a batch check pays most from a few hundred
/// signatures on.
const BATCH_MIN: usize = 256;
/// Longest batch. A batch check's cost per signature still falls past 256 (its multiscalar
/// multiplication shares more work): by about 7% at 1,024 (`benches/RESULTS.md`, "Signature
/// verification"). Longer batches would gain little more and lose more when one fails.
const BATCH_MAX: usize = 1024;

/// How many signatures each batch of a check of `n` holds on `cores` cores: batches as long as
/// [`BATCH_MAX`] allows, but one per core when each can still hold [`BATCH_MIN`], and of equal
/// lengths, in a multiple of `cores` when there are more than `cores`, so the cores finish
/// together. A block of 2,000 on 2 cores: two batches of 1,000; of 600: two of 300; of 300:
/// one.
fn batch_len(n: usize, cores: usize) -> usize {
    let cores = cores.max(1);
    let mut batches = n.div_ceil(BATCH_MAX).max(cores.min(n / BATCH_MIN)).max(1);
    if batches > cores {
        batches = batches.div_ceil(cores) * cores;
    }
    n.div_ceil(batches).max(1)
}

/// This machine's cores (asked once).
fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, usize::from))
}

/// Recently verified transaction hashes (bounded: oldest forgotten first) and those being
/// verified right now. Hashed with foldhash (seeded per process), not SipHash: the keys are
/// SHA-256 digests, which a sender cannot aim at a bucket without knowing the seed and grinding.
#[derive(Debug, Default)]
struct VerifiedCache {
    set: HashSet<Hash>,
    order: VecDeque<Hash>,
    in_flight: HashSet<Hash>,
}

impl VerifiedCache {
    fn insert_all<'a>(&mut self, hashes: impl IntoIterator<Item = &'a Hash>) {
        for h in hashes {
            if self.set.insert(*h) {
                self.order.push_back(*h);
            }
        }
        while self.order.len() > VERIFIED_CACHE_MAX {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
    }
}

/// Checks transaction signatures at most once per node (see the module's documentation).
#[derive(Debug, Default)]
pub struct VerifyOnce {
    cache: Mutex<VerifiedCache>,
    /// Signalled whenever claims are released.
    released: Condvar,
}

/// Transactions one call claimed; released when dropped (recorded as verified if `verified`),
/// so that a claim never outlives its check, whatever way the check ends.
struct Claim<'a> {
    owner: &'a VerifyOnce,
    hashes: Vec<Hash>,
    verified: bool,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let mut cache = self.owner.lock();
        for h in &self.hashes {
            cache.in_flight.remove(h);
        }
        if self.verified {
            cache.insert_all(&self.hashes);
        }
        drop(cache);
        self.owner.released.notify_all();
    }
}

impl VerifyOnce {
    fn lock(&self) -> MutexGuard<'_, VerifiedCache> {
        self.cache.lock().expect("verified cache lock")
    }

    /// Checks bounds, chain and signatures of `txs` (`hashes[i]` is `txs[i]`'s hash), skipping
    /// those verified before (remembered here, or waiting in `pool`, which holds only verified
    /// transactions). Returns how many signatures this call checked, or the index of a bad
    /// transaction (the first bad one of its batch). Records the newly verified.
    ///
    /// Lock order: `pool`, then this cache (nothing else takes both).
    pub fn verify(
        &self,
        pool: &Mutex<Mempool>,
        chain_id: &str,
        txs: &[Transaction],
        hashes: &[Hash],
    ) -> Result<usize, (usize, TxError)> {
        debug_assert_eq!(txs.len(), hashes.len());
        let unknown: Vec<usize> = {
            let pool = pool.lock().expect("mempool lock");
            let cache = self.lock();
            (0..txs.len())
                .filter(|&i| !pool.contains(&hashes[i]) && !cache.set.contains(&hashes[i]))
                .collect()
        };
        for &i in &unknown {
            txs[i].check_well_formed().map_err(|e| (i, e))?;
            if txs[i].chain_id != chain_id {
                return Err((
                    i,
                    TxError::WrongChain {
                        expected: chain_id.to_owned(),
                        found: txs[i].chain_id.clone(),
                    },
                ));
            }
        }
        let mut checked = 0;
        let mut todo = unknown;
        loop {
            // Claimed by another call: wait for it after checking our own.
            let (n, mut theirs) = self.check_chunks(pool, txs, hashes, &todo)?;
            checked += n;
            if theirs.is_empty() {
                return Ok(checked);
            }
            // Every claim of this call is released by now, so two calls never wait for each
            // other.
            let mut cache = self.lock();
            while theirs.iter().any(|&i| cache.in_flight.contains(&hashes[i])) {
                cache = self
                    .released
                    .wait(cache)
                    .expect("verified cache lock (wait)");
            }
            drop(cache);
            // Whatever the other call did not verify is checked again (or claimed again by
            // yet another call, and waited for again).
            theirs.sort_unstable();
            todo = theirs;
        }
    }

    /// Checks `todo` (indexes into `txs`) in batches of [`batch_len`], on every core when there
    /// is more than one batch: a backup checks a whole proposed block on its engine thread, and
    /// the block's votes wait for that check. Returns how many it checked and those another
    /// call had claimed. The error is that of the first failing batch, as if the batches were
    /// checked one after the other: batches are taken in order, so every batch before a failing
    /// one was taken before it and is checked to the end (a worker stops taking batches once it
    /// sees a failure).
    fn check_chunks(
        &self,
        pool: &Mutex<Mempool>,
        txs: &[Transaction],
        hashes: &[Hash],
        todo: &[usize],
    ) -> Result<(usize, Vec<usize>), (usize, TxError)> {
        let cores = cores();
        let chunks: Vec<&[usize]> = todo.chunks(batch_len(todo.len(), cores)).collect();
        let threads = cores.min(chunks.len());
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        // One worker's share: (checked, claimed by others, first failure as (batch, error)).
        let work = || {
            let mut checked = 0;
            let mut theirs = Vec::new();
            let mut failure = None;
            while !failed.load(Relaxed) {
                let k = next.fetch_add(1, Relaxed);
                let Some(chunk) = chunks.get(k) else {
                    break;
                };
                match self.check_chunk(pool, txs, hashes, chunk, &mut theirs) {
                    Ok(n) => checked += n,
                    Err(e) => {
                        failed.store(true, Relaxed);
                        failure = Some((k, e));
                    }
                }
            }
            (checked, theirs, failure)
        };
        let shares: Vec<_> = if threads <= 1 {
            vec![work()]
        } else {
            std::thread::scope(|scope| {
                // A thread that cannot be started leaves its share to the others.
                let helpers: Vec<_> = (1..threads)
                    .filter_map(|_| {
                        std::thread::Builder::new()
                            .name("sig-check".into())
                            .spawn_scoped(scope, work)
                            .ok()
                    })
                    .collect();
                let mut shares = vec![work()];
                shares.extend(
                    helpers
                        .into_iter()
                        .map(|h| h.join().expect("a signature-check thread panicked")),
                );
                shares
            })
        };
        let mut checked = 0;
        let mut theirs = Vec::new();
        let mut first: Option<(usize, (usize, TxError))> = None;
        for (n, t, failure) in shares {
            checked += n;
            theirs.extend(t);
            if let Some((k, e)) = failure {
                if first.as_ref().is_none_or(|(f, _)| k < *f) {
                    first = Some((k, e));
                }
            }
        }
        match first {
            Some((_, e)) => Err(e),
            None => Ok((checked, theirs)),
        }
    }

    /// Claims and checks the transactions of `chunk` that nobody verified or is verifying;
    /// pushes those another call is verifying onto `theirs`. Returns how many it checked.
    fn check_chunk(
        &self,
        pool: &Mutex<Mempool>,
        txs: &[Transaction],
        hashes: &[Hash],
        chunk: &[usize],
        theirs: &mut Vec<usize>,
    ) -> Result<usize, (usize, TxError)> {
        let mut mine = Vec::with_capacity(chunk.len());
        let mut claim = Claim {
            owner: self,
            hashes: Vec::with_capacity(chunk.len()),
            verified: false,
        };
        {
            let pool = pool.lock().expect("mempool lock");
            let mut cache = self.lock();
            for &i in chunk {
                let h = hashes[i];
                if pool.contains(&h) || cache.set.contains(&h) {
                    continue;
                }
                if cache.in_flight.insert(h) {
                    mine.push(i);
                    claim.hashes.push(h);
                } else {
                    theirs.push(i);
                }
            }
        }
        if mine.is_empty() {
            return Ok(0);
        }
        let items: Vec<_> = mine
            .iter()
            .map(|&i| (txs[i].sender, txs[i].signing_bytes(), txs[i].signature))
            .collect();
        let bad = |(j, e): (usize, SignatureError)| (mine[j], TxError::Signature(e));
        if items.len() == 1 {
            // One signature: checked under the claim, like a batch.
            verify_each(&items).map_err(bad)?;
        } else if !batch_holds(&items).map_err(bad)? {
            // A failed batch: some item is bad. Release the claim first, so that a check
            // waiting for these (the engine thread, perhaps) does not wait through the
            // one-by-one search as well; it checks them itself.
            drop(claim);
            verify_each(&items).map_err(bad)?;
            // Not expected (a failed cofactored batch always has a bad item); if every item
            // passed alone all the same, they are valid: remember them.
            self.lock().insert_all(mine.iter().map(|&i| &hashes[i]));
            self.released.notify_all();
            return Ok(mine.len());
        }
        claim.verified = true;
        Ok(mine.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use medchain_types::{SecretKey, Signature};
    use std::sync::{Arc, Barrier};

    fn txs(n: u64) -> (Vec<Transaction>, Vec<Hash>) {
        let txs: Vec<Transaction> = (0..n)
            .map(|i| {
                let key = SecretKey::from_seed([(i % 7) as u8 + 1; 32]);
                Transaction::signed("c", "noop", vec![1; 64], i, &key)
            })
            .collect();
        let hashes = txs.iter().map(Transaction::hash).collect();
        (txs, hashes)
    }

    fn pool() -> Mutex<Mempool> {
        Mutex::new(Mempool::new(10_000, 1 << 30, 10_000))
    }

    /// Two checks of the same transactions at the same moment: each signature is checked once
    /// in all (a check that did not claim would check all of them twice).
    #[test]
    fn concurrent_checks_of_the_same_transactions_check_each_signature_once() {
        let (txs, hashes) = txs(1_000);
        let gate = Arc::new(VerifyOnce::default());
        let pool = Arc::new(pool());
        let start = Arc::new(Barrier::new(2));
        let run = |txs: Vec<Transaction>, hashes: Vec<Hash>| {
            let (gate, pool, start) = (gate.clone(), pool.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                gate.verify(&pool, "c", &txs, &hashes)
            })
        };
        // The second in another order, as a proposal and a gossip batch would be.
        let a = run(txs.clone(), hashes.clone());
        let b = run(
            txs.iter().rev().cloned().collect(),
            hashes.iter().rev().copied().collect(),
        );
        let (a, b) = (a.join().unwrap().unwrap(), b.join().unwrap().unwrap());
        assert_eq!(a + b, 1_000, "checked {a} + {b} signatures for 1,000");
        // Remembered: a third check verifies nothing.
        assert_eq!(gate.verify(&pool, "c", &txs, &hashes).unwrap(), 0);
        assert!(gate.lock().in_flight.is_empty());
    }

    /// A bad signature is found by every check that meets it, also by one that waited for
    /// another check of it; nothing bad is remembered as verified.
    #[test]
    fn a_bad_signature_is_refused_by_every_check_and_never_remembered() {
        let (mut txs, mut hashes) = txs(600);
        txs[300].signature = Signature([7; 64]);
        hashes[300] = txs[300].hash();
        let gate = Arc::new(VerifyOnce::default());
        let pool = Arc::new(pool());
        let start = Arc::new(Barrier::new(2));
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let (gate, pool, start) = (gate.clone(), pool.clone(), start.clone());
                let (txs, hashes) = (txs.clone(), hashes.clone());
                std::thread::spawn(move || {
                    start.wait();
                    gate.verify(&pool, "c", &txs, &hashes)
                })
            })
            .collect();
        for h in handles {
            let (index, error) = h.join().unwrap().unwrap_err();
            assert_eq!(index, 300);
            assert!(matches!(error, TxError::Signature(_)), "{error:?}");
        }
        assert!(gate.lock().in_flight.is_empty());
        assert!(!gate.lock().set.contains(&hashes[300]));
        assert_eq!(gate.verify(&pool, "c", &txs, &hashes).unwrap_err().0, 300);
        // The good ones alone pass.
        txs.remove(300);
        hashes.remove(300);
        assert!(gate.verify(&pool, "c", &txs, &hashes).is_ok());
    }

    /// A check of several batches runs on every core, and reports what checking the batches
    /// one after the other would: the first bad batch's first bad transaction, with every
    /// earlier batch checked and remembered.
    #[test]
    fn several_batches_report_the_first_bad_batch_whatever_thread_checks_it() {
        let n = 3_000;
        // At least 3 batches on any number of cores (1,000 on one, 750 on two, ...).
        let len = batch_len(n, cores());
        assert!(n.div_ceil(len) >= 3, "{len}");
        for _ in 0..5 {
            let (mut txs, mut hashes) = txs(n as u64);
            for i in [n - 1, 2 * len + 50, len + 50] {
                txs[i].signature = Signature([7; 64]);
                hashes[i] = txs[i].hash();
            }
            let gate = VerifyOnce::default();
            assert_eq!(
                gate.verify(&pool(), "c", &txs, &hashes).unwrap_err().0,
                len + 50
            );
            let cache = gate.lock();
            assert!(cache.in_flight.is_empty());
            assert!(hashes[..len].iter().all(|h| cache.set.contains(h)));
            assert!(!cache.set.contains(&hashes[len + 50]));
        }
        // Two batches fail (on two threads, given two cores): the first one's failure is reported.
        for _ in 0..5 {
            let (mut txs, mut hashes) = txs(n as u64);
            for i in [len + 10, 10] {
                txs[i].signature = Signature([7; 64]);
                hashes[i] = txs[i].hash();
            }
            let gate = VerifyOnce::default();
            assert_eq!(gate.verify(&pool(), "c", &txs, &hashes).unwrap_err().0, 10);
        }
        let (txs, hashes) = txs(n as u64);
        let gate = VerifyOnce::default();
        assert_eq!(gate.verify(&pool(), "c", &txs, &hashes), Ok(n));
        assert_eq!(gate.verify(&pool(), "c", &txs, &hashes), Ok(0));
    }

    /// Batches are as long as allowed, one per core when each can hold the minimum, equal, and
    /// never longer than the maximum nor (when there are several) shorter than the minimum.
    #[test]
    fn batch_lengths_fill_the_cores_with_long_equal_batches() {
        for (n, cores, len) in [
            (2_000, 2, 1_000),
            (600, 2, 300),
            (511, 2, 511),
            (300, 2, 300),
            (100, 2, 100),
            (1, 2, 1),
            (0, 2, 1),
            (5_000, 2, 834),
            (3_000, 1, 1_000),
            (1_200, 4, 300),
            (2_000, 0, 1_000),
        ] {
            assert_eq!(batch_len(n, cores), len, "{n} on {cores} cores");
        }
        for cores in 1..=16 {
            for n in 1..20_000 {
                let len = batch_len(n, cores);
                let batches = n.div_ceil(len);
                assert!(len <= BATCH_MAX, "{n} on {cores}: {len}");
                if batches > 1 {
                    assert!(len >= BATCH_MIN, "{n} on {cores}: {len}");
                }
                if batches > cores {
                    assert!(batches >= 2 * cores, "{n} on {cores}: {batches} batches");
                } else if n >= cores * BATCH_MIN {
                    assert_eq!(batches, cores, "{n} on {cores}");
                }
            }
        }
    }

    /// Bounds and chain are checked for every transaction before any signature: a bad
    /// signature at index 0 is not what is reported when index 2 is for another chain or
    /// malformed, and nothing is claimed or remembered.
    #[test]
    fn wrong_chain_and_malformed_are_refused_before_any_signature() {
        let gate = VerifyOnce::default();
        let (mut txs, _) = txs(3);
        txs[0].signature = Signature([7; 64]);
        let key = SecretKey::from_seed([1; 32]);
        txs[2] = Transaction::signed("d", "noop", vec![], 2, &key);
        let hashes: Vec<Hash> = txs.iter().map(Transaction::hash).collect();
        let (index, error) = gate.verify(&pool(), "c", &txs, &hashes).unwrap_err();
        assert_eq!(index, 2);
        assert!(matches!(error, TxError::WrongChain { .. }), "{error:?}");
        txs[2] = Transaction::signed("c", "Not A Name", vec![], 2, &key);
        let hashes: Vec<Hash> = txs.iter().map(Transaction::hash).collect();
        let (index, error) = gate.verify(&pool(), "c", &txs, &hashes).unwrap_err();
        assert_eq!(index, 2);
        assert!(matches!(error, TxError::Invalid(_)), "{error:?}");
        let cache = gate.lock();
        assert!(cache.in_flight.is_empty() && cache.set.is_empty());
    }

    /// A check that meets another's claim waits until it is released, then takes the other
    /// check's result if it verified them, or checks them itself if it did not. Driven by
    /// hand, so it does not depend on two threads overlapping.
    #[test]
    fn a_claimed_transaction_is_waited_for_then_taken_or_checked_again() {
        for other_verified in [true, false] {
            let (txs, hashes) = txs(3);
            let gate = Arc::new(VerifyOnce::default());
            let pool = Arc::new(pool());
            // Another check holds a claim on transaction 1.
            gate.lock().in_flight.insert(hashes[1]);
            let waiter = {
                let (gate, pool, txs, hashes) =
                    (gate.clone(), pool.clone(), txs.clone(), hashes.clone());
                std::thread::spawn(move || gate.verify(&pool, "c", &txs, &hashes))
            };
            std::thread::sleep(std::time::Duration::from_millis(300));
            assert!(!waiter.is_finished(), "returned while a claim was held");
            {
                let cache = gate.lock();
                assert!(cache.set.contains(&hashes[0]) && cache.set.contains(&hashes[2]));
            }
            drop(Claim {
                owner: &gate,
                hashes: vec![hashes[1]],
                verified: other_verified,
            });
            let checked = waiter.join().unwrap().unwrap();
            assert_eq!(checked, if other_verified { 2 } else { 3 });
            let cache = gate.lock();
            assert!(cache.in_flight.is_empty());
            assert!(hashes.iter().all(|h| cache.set.contains(h)));
        }
    }

    #[test]
    fn transactions_waiting_in_the_mempool_are_not_checked_again() {
        let (txs, hashes) = txs(10);
        let pool = pool();
        pool.lock()
            .unwrap()
            .insert(hashes[0], txs[0].clone())
            .unwrap();
        let gate = VerifyOnce::default();
        assert_eq!(gate.verify(&pool, "c", &txs, &hashes).unwrap(), 9);
    }

    #[test]
    fn the_cache_is_bounded() {
        let mut c = VerifiedCache::default();
        let hashes: Vec<Hash> = (0..VERIFIED_CACHE_MAX as u64 + 10)
            .map(|i| medchain_types::sha256(&i.to_le_bytes()))
            .collect();
        c.insert_all(&hashes);
        assert_eq!(c.set.len(), VERIFIED_CACHE_MAX);
        assert!(!c.set.contains(&hashes[0]));
        assert!(c.set.contains(hashes.last().unwrap()));
    }
}
