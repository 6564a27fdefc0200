//! The mempool: verified transactions waiting to be committed, oldest first, deduplicated and
//! bounded in count and bytes. A transaction is verified once, before it enters; blocks that
//! carry a transaction already here skip its signature check.

use medchain_types::{Hash, Transaction};
use std::collections::{BTreeMap, HashMap};

/// Why a transaction was not added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Already waiting.
    Known,
    /// No room (count or bytes); the client should retry later.
    Full,
}

/// Waiting transactions.
#[derive(Debug)]
pub struct Mempool {
    order: BTreeMap<u64, Hash>,
    txs: HashMap<Hash, (u64, Transaction)>,
    next: u64,
    bytes: usize,
    txs_max: usize,
    bytes_max: usize,
}

fn size(tx: &Transaction) -> usize {
    tx.payload.len() + 200
}

impl Mempool {
    /// An empty mempool with these bounds.
    pub fn new(txs_max: usize, bytes_max: usize) -> Mempool {
        Mempool {
            order: BTreeMap::new(),
            txs: HashMap::new(),
            next: 0,
            bytes: 0,
            txs_max,
            bytes_max,
        }
    }

    /// Adds a verified transaction.
    pub fn insert(&mut self, hash: Hash, tx: Transaction) -> Result<(), Refused> {
        if self.txs.contains_key(&hash) {
            return Err(Refused::Known);
        }
        if self.txs.len() >= self.txs_max || self.bytes + size(&tx) > self.bytes_max {
            return Err(Refused::Full);
        }
        self.next += 1;
        self.bytes += size(&tx);
        self.order.insert(self.next, hash);
        self.txs.insert(hash, (self.next, tx));
        Ok(())
    }

    /// Is this transaction waiting?
    pub fn contains(&self, hash: &Hash) -> bool {
        self.txs.contains_key(hash)
    }

    /// Up to `max` transactions, oldest first. They stay until [`Mempool::remove`].
    pub fn batch(&self, max: usize) -> Vec<Transaction> {
        self.order
            .values()
            .take(max)
            .map(|h| self.txs[h].1.clone())
            .collect()
    }

    /// Removes committed transactions.
    pub fn remove<'a>(&mut self, hashes: impl IntoIterator<Item = &'a Hash>) {
        for h in hashes {
            if let Some((seq, tx)) = self.txs.remove(h) {
                self.order.remove(&seq);
                self.bytes -= size(&tx);
            }
        }
    }

    /// Number waiting.
    pub fn len(&self) -> usize {
        self.txs.len()
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
        let mut m = Mempool::new(3, 10_000);
        for i in 0..3 {
            m.insert(tx(i).hash(), tx(i)).unwrap();
        }
        assert_eq!(m.insert(tx(0).hash(), tx(0)), Err(Refused::Known));
        assert_eq!(m.insert(tx(9).hash(), tx(9)), Err(Refused::Full));
        assert_eq!(m.batch(2), vec![tx(0), tx(1)]);
        m.remove([&tx(0).hash()]);
        assert_eq!(m.batch(5), vec![tx(1), tx(2)]);
        assert_eq!(m.bytes(), 600);
        let mut small = Mempool::new(100, 700);
        small.insert(tx(1).hash(), tx(1)).unwrap();
        small.insert(tx(2).hash(), tx(2)).unwrap();
        assert_eq!(
            small.insert(tx(3).hash(), tx(3)),
            Err(Refused::Full),
            "bytes bound"
        );
    }
}
