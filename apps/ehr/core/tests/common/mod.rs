//! An in-memory state and stub for the `ehr` chaincode's tests: transactions written only on
//! success, as the executor does.
#![allow(dead_code)]

use medchain_chaincode::{Chaincode, ChaincodeError, Entries, StateView, Stub};
use medchain_ehr::chaincode::HospitalProfile;
use medchain_ehr::{Ehr, EhrOp, EhrQuery};
use medchain_types::{codec, sha256, Hash, PublicKey, SecretKey};
use std::collections::BTreeMap;

#[derive(Default, Clone)]
pub struct World {
    pub state: BTreeMap<Vec<u8>, Vec<u8>>,
    pub time: u64,
    pub height: u64,
    pub events: Vec<String>,
}

pub struct MemStub<'a> {
    pub w: &'a mut World,
    pub writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    pub caller: PublicKey,
    pub tx: Hash,
    pub events: Vec<String>,
}

impl StateView for World {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ChaincodeError> {
        Ok(self.state.get(key).cloned())
    }
    fn scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, ChaincodeError> {
        Ok(self
            .state
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter(|(k, _)| after.is_none_or(|a| k.as_slice() > a))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
    fn scan_back(
        &self,
        prefix: &[u8],
        before: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, ChaincodeError> {
        let mut rows: Entries = self
            .state
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter(|(k, _)| before.is_none_or(|b| k.as_slice() < b))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        rows.reverse();
        rows.truncate(limit);
        Ok(rows)
    }
}

impl StateView for MemStub<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ChaincodeError> {
        match self.writes.get(key) {
            Some(v) => Ok(v.clone()),
            None => self.w.get(key),
        }
    }
    fn scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, ChaincodeError> {
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = self
            .w
            .scan(prefix, after, usize::MAX)?
            .into_iter()
            .collect();
        for (k, v) in &self.writes {
            if k.starts_with(prefix) && after.is_none_or(|a| k.as_slice() > a) {
                match v {
                    Some(v) => merged.insert(k.clone(), v.clone()),
                    None => merged.remove(k),
                };
            }
        }
        Ok(merged.into_iter().take(limit).collect())
    }
    fn scan_back(
        &self,
        prefix: &[u8],
        before: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, ChaincodeError> {
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = self
            .w
            .scan_back(prefix, before, usize::MAX)?
            .into_iter()
            .collect();
        for (k, v) in &self.writes {
            if k.starts_with(prefix) && before.is_none_or(|b| k.as_slice() < b) {
                match v {
                    Some(v) => merged.insert(k.clone(), v.clone()),
                    None => merged.remove(k),
                };
            }
        }
        Ok(merged.into_iter().rev().take(limit).collect())
    }
}

impl Stub for MemStub<'_> {
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), ChaincodeError> {
        self.writes.insert(key.to_vec(), Some(value.to_vec()));
        Ok(())
    }
    fn delete(&mut self, key: &[u8]) -> Result<(), ChaincodeError> {
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
        self.w.height
    }
    fn time_ms(&self) -> u64 {
        self.w.time
    }
}

pub struct T {
    pub cc: Ehr,
    pub w: World,
}

impl T {
    pub fn new(admin: &SecretKey) -> T {
        T {
            cc: Ehr::new([admin.public()]),
            w: World {
                time: 1_000_000,
                ..World::default()
            },
        }
    }

    /// Runs one transaction; like the executor, writes only on success.
    pub fn tx(&mut self, from: &SecretKey, op: EhrOp) -> Result<(), ChaincodeError> {
        self.w.height += 1;
        self.w.time += 1_000;
        let tx = sha256(&self.w.height.to_le_bytes());
        let mut stub = MemStub {
            caller: from.public(),
            tx,
            writes: BTreeMap::new(),
            events: Vec::new(),
            w: &mut self.w,
        };
        let r = self.cc.execute(&mut stub, &Ehr::payload(&op));
        let (writes, events) = (stub.writes, stub.events);
        if r.is_ok() {
            for (k, v) in writes {
                match v {
                    Some(v) => self.w.state.insert(k, v),
                    None => self.w.state.remove(&k),
                };
            }
            self.w.events.extend(events);
        }
        r.map(|_| ())
    }

    pub fn q<R: serde::de::DeserializeOwned>(&self, q: EhrQuery) -> R {
        codec::decode(&self.cc.query(&self.w, &Ehr::request(&q)).unwrap()).unwrap()
    }
}

pub fn k(n: u8) -> SecretKey {
    SecretKey::from_seed([n; 32])
}

pub fn forbidden(r: Result<(), ChaincodeError>) -> bool {
    matches!(r, Err(ChaincodeError::Forbidden(_)))
}

pub fn profile(name: &str) -> HospitalProfile {
    HospitalProfile {
        name: name.into(),
        address: "1 Main St".into(),
        contact: "+1 555 0100".into(),
        treatments: vec!["Cardiology".into(), "Diabetes care".into()],
    }
}
