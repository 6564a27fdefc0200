//! The executor: failed transactions are discarded while the block commits, duplicates run
//! once, panics are contained, and scans see pending writes.

mod common;

use common::*;
use medchain_chaincode::{Chaincode, ChaincodeError, StateView, Stub};
use medchain_ledger::{Executor, Ledger};
use medchain_types::{codec, Transaction, TxStatus};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::sync::Arc;

fn kv_get(ledger: &Ledger, key: &str) -> Option<Vec<u8>> {
    use medchain_chaincode::builtin::{Kv, KvQuery};
    let exec = Executor::with_builtins(CHAIN);
    Kv::decode_get(
        &exec
            .query(
                ledger,
                "kv",
                &Kv::request(&KvQuery::Get {
                    key: key.as_bytes().to_vec(),
                }),
            )
            .unwrap(),
    )
    .unwrap()
}

/// Hashes known from the block's structure check give the same result as hashing again; a
/// list of the wrong length is refused before anything is written.
#[test]
fn apply_with_known_hashes_matches_apply_and_refuses_a_wrong_list() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (
        Ledger::open(dir_a.path(), CHAIN).unwrap(),
        Ledger::open(dir_b.path(), CHAIN).unwrap(),
    );
    let exec = Executor::with_builtins(CHAIN);
    let cert = medchain_types::Certificate(vec![1, 2, 3]);
    let txs = vec![put("k", "v", 1), put("k", "w", 2), delete("k", 3)];
    let block = next_block(&a, txs);
    let hashes = block.check_structure().unwrap();
    let short = exec.apply_hashed(&b, &block, &hashes[..2], &cert);
    assert!(
        matches!(
            short,
            Err(medchain_ledger::LedgerError::BadExecution { .. })
        ),
        "{short:?}"
    );
    assert!(b.tip().is_none(), "nothing written");
    let (tip_a, receipts_a) = exec.apply(&a, &block, &cert).unwrap();
    let (tip_b, receipts_b) = exec.apply_hashed(&b, &block, &hashes, &cert).unwrap();
    assert_eq!(tip_a, tip_b);
    assert_eq!(receipts_a, receipts_b);
}

#[test]
fn a_failed_transaction_is_discarded_and_the_block_still_commits() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path(), CHAIN).unwrap();
    let exec = Executor::with_builtins(CHAIN);
    let wrong_chain = Transaction::signed("other-chain", "kv", vec![], 9, &client());
    let receipts = apply(
        &ledger,
        &exec,
        vec![
            put("a", "1", 1),
            delete("missing", 2), // kv refuses to delete an absent key
            Transaction::signed(CHAIN, "kv", vec![1, 2, 3], 3, &client()), // undecodable payload
            Transaction::signed(CHAIN, "nosuch", vec![], 4, &client()),
            wrong_chain,
            put("b", "2", 5),
        ],
    );
    let statuses: Vec<_> = receipts.iter().map(|r| &r.status).collect();
    assert_eq!(statuses[0], &TxStatus::Success);
    assert!(matches!(statuses[1], TxStatus::Failed(m) if m.contains("not found")));
    assert!(matches!(statuses[2], TxStatus::Failed(m) if m.contains("bad request")));
    assert!(matches!(statuses[3], TxStatus::Failed(m) if m.contains("no chaincode")));
    assert!(matches!(statuses[4], TxStatus::Failed(m) if m.contains("chain")));
    assert_eq!(statuses[5], &TxStatus::Success);
    assert_eq!(ledger.tip().unwrap().height, 0);
    assert_eq!(kv_get(&ledger, "a"), Some(b"1".to_vec()));
    assert_eq!(kv_get(&ledger, "b"), Some(b"2".to_vec()));
    // The failed transactions are still indexed with their receipts.
    let rec = ledger.transaction(&receipts[1].tx_hash).unwrap().unwrap();
    assert!(matches!(rec.receipt.status, TxStatus::Failed(_)));
}

/// Writes two keys, then fails: neither write may survive.
struct WritesThenFails;
impl Chaincode for WritesThenFails {
    fn name(&self) -> &str {
        "half"
    }
    fn execute(&self, stub: &mut dyn Stub, payload: &[u8]) -> Result<Vec<u8>, ChaincodeError> {
        stub.put(b"x", b"1")?;
        stub.emit("wrote", b"x")?;
        if payload == b"panic" {
            panic!("chaincode bug");
        }
        if payload == b"fail" {
            return Err(ChaincodeError::Rejected("changed my mind".into()));
        }
        Ok(b"ok".to_vec())
    }
    fn query(&self, view: &dyn StateView, _: &[u8]) -> Result<Vec<u8>, ChaincodeError> {
        Ok(view.get(b"x")?.unwrap_or_default())
    }
}

#[test]
fn writes_of_a_failed_or_panicking_transaction_vanish() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path(), CHAIN).unwrap();
    let mut exec = Executor::with_builtins(CHAIN);
    exec.install(Arc::new(WritesThenFails)).unwrap();
    assert!(
        exec.install(Arc::new(WritesThenFails)).is_err(),
        "duplicate names refused"
    );
    let tx = |p: &[u8], n| Transaction::signed(CHAIN, "half", p.to_vec(), n, &client());
    let receipts = apply(&ledger, &exec, vec![tx(b"fail", 1), tx(b"panic", 2)]);
    assert!(matches!(&receipts[0].status, TxStatus::Failed(m) if m.contains("changed my mind")));
    assert!(matches!(&receipts[1].status, TxStatus::Failed(m) if m.contains("panicked")));
    assert!(receipts.iter().all(|r| r.events.is_empty()));
    assert_eq!(exec.query(&ledger, "half", b"").unwrap(), b"");
    let receipts = apply(&ledger, &exec, vec![tx(b"", 3)]);
    assert_eq!(receipts[0].response, b"ok");
    assert_eq!(receipts[0].events.len(), 1);
    assert_eq!(exec.query(&ledger, "half", b"").unwrap(), b"1");
    ledger.verify_chain(|_, _| {}).unwrap();
}

#[test]
fn a_transaction_executes_once() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path(), CHAIN).unwrap();
    let exec = Executor::with_builtins(CHAIN);
    let t = put("a", "1", 1);
    let r1 = apply(&ledger, &exec, vec![t.clone(), t.clone()]);
    assert_eq!(r1[0].status, TxStatus::Success);
    assert_eq!(r1[1].status, TxStatus::Duplicate);
    let r2 = apply(&ledger, &exec, vec![t.clone()]);
    assert_eq!(r2[0].status, TxStatus::Duplicate);
    // The index keeps the first execution.
    assert_eq!(ledger.tx_position(&t.hash()).unwrap(), Some((0, 0)));
    let other = put("b", "1", 2).hash();
    assert_eq!(
        ledger.txs_known(&[other, t.hash(), other]).unwrap(),
        vec![false, true, false]
    );
    assert_eq!(ledger.txs_known(&[]).unwrap(), Vec::<bool>::new());
    ledger.verify_chain(|_, _| {}).unwrap();
}

/// A chaincode whose payload is a list of operations, for checking scans against a model.
struct Script;
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone)]
enum Op {
    Put(u8, u8),
    Del(u8),
    Scan {
        prefix: u8,
        after: Option<u8>,
        limit: u8,
    },
    ScanBack {
        prefix: u8,
        before: Option<u8>,
        limit: u8,
    },
}
impl Chaincode for Script {
    fn name(&self) -> &str {
        "script"
    }
    fn execute(&self, stub: &mut dyn Stub, payload: &[u8]) -> Result<Vec<u8>, ChaincodeError> {
        let ops: Vec<Op> =
            codec::decode(payload).map_err(|e| ChaincodeError::BadRequest(e.to_string()))?;
        let mut scans = Vec::new();
        for op in ops {
            match op {
                Op::Put(k, v) => stub.put(&[k / 16, k], &[v])?,
                Op::Del(k) => stub.delete(&[k / 16, k])?,
                Op::Scan {
                    prefix,
                    after,
                    limit,
                } => {
                    let after = after.map(|a| vec![prefix, a]);
                    scans.push(stub.scan(&[prefix], after.as_deref(), limit as usize)?);
                }
                Op::ScanBack {
                    prefix,
                    before,
                    limit,
                } => {
                    let before = before.map(|b| vec![prefix, b]);
                    scans.push(stub.scan_back(&[prefix], before.as_deref(), limit as usize)?);
                }
            }
        }
        Ok(codec::encode(&scans))
    }
    fn query(&self, _: &dyn StateView, _: &[u8]) -> Result<Vec<u8>, ChaincodeError> {
        Ok(vec![])
    }
}

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

fn model_scan(m: &Model, prefix: u8, after: Option<u8>, limit: u8) -> Vec<(Vec<u8>, Vec<u8>)> {
    m.iter()
        .filter(|(k, _)| {
            k[0] == prefix && after.is_none_or(|a| k.as_slice() > [prefix, a].as_slice())
        })
        .take(limit as usize)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn model_scan_back(
    m: &Model,
    prefix: u8,
    before: Option<u8>,
    limit: u8,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    m.iter()
        .rev()
        .filter(|(k, _)| {
            k[0] == prefix && before.is_none_or(|b| k.as_slice() < [prefix, b].as_slice())
        })
        .take(limit as usize)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..64, any::<u8>()).prop_map(|(k, v)| Op::Put(k, v)),
        (0u8..64).prop_map(Op::Del),
        (0u8..4, proptest::option::of(0u8..64), 0u8..10).prop_map(|(prefix, after, limit)| {
            Op::Scan {
                prefix,
                after,
                limit,
            }
        }),
        (0u8..4, proptest::option::of(0u8..64), 0u8..10).prop_map(|(prefix, before, limit)| {
            Op::ScanBack {
                prefix,
                before,
                limit,
            }
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]
    #[test]
    fn scans_merge_pending_writes_like_a_model(blocks in proptest::collection::vec(proptest::collection::vec(proptest::collection::vec(arb_op(), 1..12), 1..4), 1..4)) {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path(), CHAIN).unwrap();
        let mut exec = Executor::new(CHAIN);
        exec.install(Arc::new(Script)).unwrap();
        let mut model = Model::new();
        let mut nonce = 0;
        for block in blocks {
            let mut txs = Vec::new();
            let mut expected = Vec::new();
            for ops in block {
                nonce += 1;
                let mut scans = Vec::new();
                for op in &ops {
                    match *op {
                        Op::Put(k, v) => { model.insert(vec![k / 16, k], vec![v]); }
                        Op::Del(k) => { model.remove(&vec![k / 16, k]); }
                        Op::Scan { prefix, after, limit } => scans.push(model_scan(&model, prefix, after, limit)),
                        Op::ScanBack { prefix, before, limit } => scans.push(model_scan_back(&model, prefix, before, limit)),
                    }
                }
                expected.push(codec::encode(&scans));
                txs.push(Transaction::signed(CHAIN, "script", codec::encode(&ops), nonce, &client()));
            }
            let receipts = apply(&ledger, &exec, txs);
            for (r, e) in receipts.iter().zip(expected) {
                prop_assert_eq!(&r.status, &TxStatus::Success);
                prop_assert_eq!(&r.response, &e);
            }
        }
        let view = ledger.view("script");
        let stored: Model = view.scan(b"", None, 10_000).unwrap().into_iter().collect();
        prop_assert_eq!(&stored, &model);
        // The committed state, newest key first, by prefix and from every start.
        for prefix in 0u8..4 {
            for before in [None, Some(0u8), Some(17), Some(40), Some(63)] {
                let start = before.map(|b| vec![prefix, b]);
                let got = view.scan_back(&[prefix], start.as_deref(), 7).unwrap();
                prop_assert_eq!(got, model_scan_back(&model, prefix, before, 7));
            }
        }
    }
}
