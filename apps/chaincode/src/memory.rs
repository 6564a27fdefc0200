//! An in-memory chain state for running chaincodes outside a node (their tests, the fuzz
//! targets): each operation runs as the node's executor runs it, its writes and events kept
//! only if it succeeds, every write checked against the limits.

use crate::{check_entry, Chaincode, ChaincodeError, Entries, StateView, Stub};
use medchain_types::{Hash, PublicKey};
use std::collections::BTreeMap;

/// One chaincode's state, with the block height and time the next operation sees and the
/// events of the operations that succeeded.
#[derive(Debug, Default, Clone)]
pub struct MemState {
    /// The entries, by key.
    pub entries: BTreeMap<Vec<u8>, Vec<u8>>,
    /// The height the next operation sees.
    pub height: u64,
    /// The block time the next operation sees (milliseconds since the Unix epoch).
    pub time_ms: u64,
    /// The kinds of the events emitted so far, in order.
    pub events: Vec<String>,
}

/// An operation's view: the state under its own writes, which are kept apart until it ends.
struct Overlay<'a> {
    base: &'a MemState,
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    events: Vec<String>,
    caller: PublicKey,
    tx: Hash,
}

/// Up to `limit` entries under `prefix` strictly after `after` (forwards) or before it
/// (backwards), with `writes` laid over `base`.
fn merged(
    base: &BTreeMap<Vec<u8>, Vec<u8>>,
    writes: &BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    prefix: &[u8],
    bound: Option<&[u8]>,
    limit: usize,
    backwards: bool,
) -> Entries {
    let beyond = |k: &[u8]| match (bound, backwards) {
        (None, _) => true,
        (Some(b), false) => k > b,
        (Some(b), true) => k < b,
    };
    let mut rows: BTreeMap<&[u8], &[u8]> = base
        .range(prefix.to_vec()..)
        .take_while(|(k, _)| k.starts_with(prefix))
        .filter(|(k, _)| beyond(k))
        .map(|(k, v)| (k.as_slice(), v.as_slice()))
        .collect();
    for (k, v) in writes.range(prefix.to_vec()..) {
        if !k.starts_with(prefix) {
            break;
        }
        if beyond(k) {
            match v {
                Some(v) => rows.insert(k, v),
                None => rows.remove(k.as_slice()),
            };
        }
    }
    let owned = |(k, v): (&[u8], &[u8])| (k.to_vec(), v.to_vec());
    if backwards {
        rows.into_iter().rev().take(limit).map(owned).collect()
    } else {
        rows.into_iter().take(limit).map(owned).collect()
    }
}

impl StateView for MemState {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ChaincodeError> {
        Ok(self.entries.get(key).cloned())
    }
    fn scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, ChaincodeError> {
        Ok(merged(
            &self.entries,
            &BTreeMap::new(),
            prefix,
            after,
            limit,
            false,
        ))
    }
    fn scan_back(
        &self,
        prefix: &[u8],
        before: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, ChaincodeError> {
        Ok(merged(
            &self.entries,
            &BTreeMap::new(),
            prefix,
            before,
            limit,
            true,
        ))
    }
}

impl StateView for Overlay<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ChaincodeError> {
        match self.writes.get(key) {
            Some(v) => Ok(v.clone()),
            None => self.base.get(key),
        }
    }
    fn scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, ChaincodeError> {
        let base = &self.base.entries;
        Ok(merged(base, &self.writes, prefix, after, limit, false))
    }
    fn scan_back(
        &self,
        prefix: &[u8],
        before: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, ChaincodeError> {
        let base = &self.base.entries;
        Ok(merged(base, &self.writes, prefix, before, limit, true))
    }
}

impl Stub for Overlay<'_> {
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), ChaincodeError> {
        check_entry(key, Some(value))?;
        self.writes.insert(key.to_vec(), Some(value.to_vec()));
        Ok(())
    }
    fn delete(&mut self, key: &[u8]) -> Result<(), ChaincodeError> {
        check_entry(key, None)?;
        self.writes.insert(key.to_vec(), None);
        Ok(())
    }
    fn emit(&mut self, kind: &str, _data: &[u8]) -> Result<(), ChaincodeError> {
        self.events.push(kind.to_owned());
        Ok(())
    }
    fn caller(&self) -> &PublicKey {
        &self.caller
    }
    fn tx_hash(&self) -> &Hash {
        &self.tx
    }
    fn height(&self) -> u64 {
        self.base.height
    }
    fn time_ms(&self) -> u64 {
        self.base.time_ms
    }
}

impl MemState {
    /// Runs `payload` from `caller` in transaction `tx` with `chaincode`; its writes and events
    /// are kept only if it succeeds.
    pub fn execute(
        &mut self,
        chaincode: &dyn Chaincode,
        caller: PublicKey,
        tx: Hash,
        payload: &[u8],
    ) -> Result<Vec<u8>, ChaincodeError> {
        let mut overlay = Overlay {
            base: self,
            writes: BTreeMap::new(),
            events: Vec::new(),
            caller,
            tx,
        };
        let out = chaincode.execute(&mut overlay, payload)?;
        let (writes, events) = (overlay.writes, overlay.events);
        for (k, v) in writes {
            match v {
                Some(v) => self.entries.insert(k, v),
                None => self.entries.remove(&k),
            };
        }
        self.events.extend(events);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builtin::{Kv, KvOp};

    #[test]
    fn an_operation_that_fails_leaves_nothing_and_scans_see_pending_writes() {
        let mut s = MemState::default();
        let me = PublicKey([1; 32]);
        let put = Kv::payload(&KvOp::Put {
            key: b"a".to_vec(),
            value: b"1".to_vec(),
        });
        s.execute(&Kv, me, Hash::ZERO, &put).unwrap();
        assert_eq!(s.events, ["put"]);
        assert!(s.execute(&Kv, me, Hash::ZERO, b"\x01garbage").is_err());
        assert_eq!(s.entries.len(), 1);
        assert_eq!(s.scan(b"", None, 10).unwrap().len(), 1);
        assert_eq!(s.scan_back(b"", Some(b"b"), 10).unwrap().len(), 1);
        assert!(s.scan(b"", Some(b"a"), 10).unwrap().is_empty());
    }
}
