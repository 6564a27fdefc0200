//! The mempool: verified transactions waiting to be committed, oldest first, deduplicated and
//! bounded in count, bytes and count per sender (so that one key cannot take every place). A
//! transaction is verified once, before it enters; blocks that carry a transaction already here
//! skip its signature check.
//!
//! A PBFT primary marks the client transactions it keeps from gossip as *held* (see
//! `runtime::Shared::admit_verified`); they leave the mark when they leave the mempool, or, oldest
//! first, through [`Mempool::take_held`].

use foldhash::{HashMap, HashMapExt};
use medchain_types::{Hash, PublicKey, Transaction};
use std::collections::BTreeMap;

/// Why a transaction was not added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Already waiting.
    Known,
    /// No room (count or bytes); the client should retry later.
    Full,
    /// Its sender already has as many waiting as one sender may; it should retry once some of
    /// them are committed.
    SenderFull,
}

/// Waiting transactions.
#[derive(Debug)]
pub struct Mempool {
    order: BTreeMap<u64, Hash>,
    txs: HashMap<Hash, Entry>,
    next: u64,
    bytes: usize,
    /// Entries marked held, by arrival, and when (ms) the set of marks last became non-empty.
    held: BTreeMap<u64, Hash>,
    held_since: u64,
    txs_max: usize,
    bytes_max: usize,
    /// Waiting transactions per sender (no entry for none).
    per_sender: HashMap<PublicKey, u32>,
    sender_max: u32,
}

/// Boxed: a map under constant inserts and removals rehashes in place now and then, moving
/// every entry, and a transaction inline is some 200 bytes (measured in a saturated primary's
/// profile: inserts took 4.5% of its CPU inline, 1.9% boxed; `benches/RESULTS.md`,
/// "Where a node's CPU goes").
#[derive(Debug)]
struct Entry {
    seq: u64,
    tx: Box<Transaction>,
}

fn size(tx: &Transaction) -> usize {
    tx.payload.len() + 200
}

impl Mempool {
    /// An empty mempool with these bounds: at most `txs_max` transactions, about `bytes_max`
    /// bytes, and `sender_max` transactions of any one sender.
    pub fn new(txs_max: usize, bytes_max: usize, sender_max: usize) -> Mempool {
        Mempool {
            per_sender: HashMap::new(),
            sender_max: u32::try_from(sender_max).unwrap_or(u32::MAX),
            order: BTreeMap::new(),
            txs: HashMap::new(),
            next: 0,
            bytes: 0,
            held: BTreeMap::new(),
            held_since: 0,
            txs_max,
            bytes_max,
        }
    }

    /// Adds a verified transaction.
    pub fn insert(&mut self, hash: Hash, tx: Transaction) -> Result<(), Refused> {
        self.insert_entry(hash, tx, None)
    }

    /// Adds a verified transaction marked held (at `now`, in ms).
    pub fn insert_held(&mut self, hash: Hash, tx: Transaction, now: u64) -> Result<(), Refused> {
        self.insert_entry(hash, tx, Some(now))
    }

    fn insert_entry(
        &mut self,
        hash: Hash,
        tx: Transaction,
        held_at: Option<u64>,
    ) -> Result<(), Refused> {
        if self.txs.contains_key(&hash) {
            return Err(Refused::Known);
        }
        if self.txs.len() >= self.txs_max || self.bytes + size(&tx) > self.bytes_max {
            return Err(Refused::Full);
        }
        let waiting = self.per_sender.entry(tx.sender).or_insert(0);
        if *waiting >= self.sender_max {
            return Err(Refused::SenderFull);
        }
        *waiting += 1;
        self.next += 1;
        self.bytes += size(&tx);
        self.order.insert(self.next, hash);
        if let Some(now) = held_at {
            if self.held.is_empty() {
                self.held_since = now;
            }
            self.held.insert(self.next, hash);
        }
        self.txs.insert(
            hash,
            Entry {
                seq: self.next,
                tx: Box::new(tx),
            },
        );
        Ok(())
    }

    /// How many waiting transactions are marked held, and when (ms) the set of marks last
    /// became non-empty (some have been marked ever since).
    pub fn held(&self) -> (usize, u64) {
        (self.held.len(), self.held_since)
    }

    /// Removes `hash`'s held mark, if it has one, and returns the transaction.
    pub fn unhold(&mut self, hash: &Hash) -> Option<Transaction> {
        let e = self.txs.get(hash)?;
        self.held.remove(&e.seq)?;
        Some((*e.tx).clone())
    }

    /// The oldest waiting transactions marked held, at least one if any and as many as fit in
    /// `bytes_max` (approximate sizes, as for the bound), with their marks removed.
    pub fn take_held(&mut self, bytes_max: usize) -> Vec<Transaction> {
        let mut out = Vec::new();
        let mut bytes = 0;
        while let Some(entry) = self.held.first_entry() {
            let tx = &self.txs[entry.get()].tx;
            if !out.is_empty() && bytes + size(tx) > bytes_max {
                break;
            }
            bytes += size(tx);
            out.push((**tx).clone());
            entry.remove();
        }
        out
    }

    /// Is this transaction waiting?
    pub fn contains(&self, hash: &Hash) -> bool {
        self.txs.contains_key(hash)
    }

    /// Up to `max` transactions, oldest first, and their hashes. They stay until
    /// [`Mempool::remove`].
    pub fn batch(&self, max: usize) -> (Vec<Transaction>, Vec<Hash>) {
        self.order
            .values()
            .take(max)
            .map(|h| ((*self.txs[h].tx).clone(), *h))
            .unzip()
    }

    /// Removes committed transactions.
    pub fn remove<'a>(&mut self, hashes: impl IntoIterator<Item = &'a Hash>) {
        for h in hashes {
            if let Some(e) = self.txs.remove(h) {
                self.order.remove(&e.seq);
                self.bytes -= size(&e.tx);
                self.held.remove(&e.seq);
                if let std::collections::hash_map::Entry::Occupied(mut n) =
                    self.per_sender.entry(e.tx.sender)
                {
                    *n.get_mut() -= 1;
                    if *n.get() == 0 {
                        n.remove();
                    }
                }
            }
        }
    }

    /// Number waiting.
    pub fn len(&self) -> usize {
        self.txs.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }

    /// Bytes waiting (approximate).
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use medchain_types::SecretKey;

    fn tx(i: u64) -> Transaction {
        Transaction::signed("c", "noop", vec![0; 100], i, &SecretKey::from_seed([1; 32]))
    }

    #[test]
    fn order_dedup_bounds_and_removal() {
        let mut m = Mempool::new(3, 10_000, 10);
        for i in 0..3 {
            m.insert(tx(i).hash(), tx(i)).unwrap();
        }
        assert_eq!(m.insert(tx(0).hash(), tx(0)), Err(Refused::Known));
        assert_eq!(m.insert(tx(9).hash(), tx(9)), Err(Refused::Full));
        assert_eq!(
            m.batch(2),
            (vec![tx(0), tx(1)], vec![tx(0).hash(), tx(1).hash()])
        );
        m.remove([&tx(0).hash()]);
        assert_eq!(m.batch(5).0, vec![tx(1), tx(2)]);
        assert_eq!(m.bytes(), 600);
        let mut small = Mempool::new(100, 700, 10);
        small.insert(tx(1).hash(), tx(1)).unwrap();
        small.insert(tx(2).hash(), tx(2)).unwrap();
        assert_eq!(
            small.insert(tx(3).hash(), tx(3)),
            Err(Refused::Full),
            "bytes bound"
        );
    }

    #[test]
    fn held_marks_leave_with_their_transactions_or_oldest_first_when_taken() {
        let mut m = Mempool::new(10, 100_000, 10);
        m.insert(tx(0).hash(), tx(0)).unwrap();
        m.insert_held(tx(1).hash(), tx(1), 50).unwrap();
        m.insert_held(tx(2).hash(), tx(2), 60).unwrap();
        m.insert_held(tx(3).hash(), tx(3), 70).unwrap();
        assert_eq!(m.insert_held(tx(3).hash(), tx(3), 80), Err(Refused::Known));
        assert_eq!(m.held(), (3, 50), "counted from the first mark");
        m.remove([&tx(2).hash(), &tx(0).hash()]);
        assert_eq!(m.held(), (2, 50), "a committed one leaves with its mark");
        assert_eq!(m.take_held(1), vec![tx(1)], "oldest first, at least one");
        assert_eq!(m.held(), (1, 50));
        assert_eq!(m.take_held(usize::MAX), vec![tx(3)]);
        assert_eq!(m.held().0, 0);
        assert_eq!(m.take_held(usize::MAX), Vec::<Transaction>::new());
        assert_eq!(
            m.batch(5),
            (vec![tx(1), tx(3)], vec![tx(1).hash(), tx(3).hash()]),
            "taken marks, not transactions"
        );
        m.remove([&tx(1).hash()]);
        assert_eq!(m.held().0, 0, "no mark counted twice");
        m.insert_held(tx(4).hash(), tx(4), 90).unwrap();
        assert_eq!(m.held(), (1, 90), "a new first mark restarts the clock");
        assert_eq!(m.unhold(&tx(4).hash()), Some(tx(4)));
        assert_eq!(m.unhold(&tx(4).hash()), None, "no mark left");
        assert_eq!(m.unhold(&tx(0).hash()), None, "never marked");
        assert_eq!(m.held().0, 0);
        assert_eq!(m.take_held(usize::MAX), Vec::<Transaction>::new());
        m.remove([&tx(4).hash()]);
        assert_eq!(m.held().0, 0);
        m.insert_held(tx(4).hash(), tx(4), 90).unwrap();
        m.insert_held(tx(5).hash(), tx(5), 95).unwrap();
        m.insert_held(tx(6).hash(), tx(6), 96).unwrap();
        // 300 bytes each (100 of payload): two fit in 600.
        assert_eq!(m.take_held(600), vec![tx(4), tx(5)], "as many as fit");
        let mut full = Mempool::new(1, 100_000, 10);
        full.insert(tx(7).hash(), tx(7)).unwrap();
        assert_eq!(full.insert_held(tx(8).hash(), tx(8), 1), Err(Refused::Full));
        assert_eq!(full.held().0, 0, "a refused transaction is not marked");
    }

    #[test]
    fn one_sender_holds_at_most_its_share_and_gets_it_back_as_its_transactions_leave() {
        let other = |i: u64| {
            Transaction::signed("c", "noop", vec![0; 100], i, &SecretKey::from_seed([2; 32]))
        };
        let mut m = Mempool::new(10, 100_000, 3);
        for i in 0..3 {
            m.insert(tx(i).hash(), tx(i)).unwrap();
        }
        assert_eq!(m.insert(tx(3).hash(), tx(3)), Err(Refused::SenderFull));
        assert_eq!(
            m.insert_held(tx(3).hash(), tx(3), 1),
            Err(Refused::SenderFull),
            "held or not"
        );
        assert_eq!(m.insert(tx(0).hash(), tx(0)), Err(Refused::Known));
        m.insert(other(0).hash(), other(0))
            .expect("another sender still has room");
        m.remove([&tx(1).hash(), &tx(1).hash()]);
        m.insert(tx(3).hash(), tx(3))
            .expect("a committed transaction frees its sender's place, once");
        assert_eq!(m.insert(tx(4).hash(), tx(4)), Err(Refused::SenderFull));
        m.remove([
            &tx(0).hash(),
            &tx(2).hash(),
            &tx(3).hash(),
            &other(0).hash(),
        ]);
        assert!(m.is_empty());
        assert!(m.per_sender.is_empty(), "no count left behind");
    }
}
