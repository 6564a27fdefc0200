//! Transactions as a client or a peer sends them: the canonical encoding (one, or the list of
//! `POST /api/v1/txs` in binary) and JSON. Whatever decodes re-encodes to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use medchain_types::{codec, Transaction};

fuzz_target!(|data: &[u8]| {
    if let Ok(tx) = codec::decode::<Transaction>(data) {
        let _ = tx.check_well_formed();
        let _ = tx.verify("fuzz");
        let again: Transaction = codec::decode(&codec::encode(&tx)).expect("an encoding decodes");
        assert_eq!(again, tx);
    }
    if let Ok(txs) = codec::decode::<Vec<Transaction>>(data) {
        for tx in &txs {
            let _ = tx.check_well_formed();
        }
    }
    if let Ok(tx) = serde_json::from_slice::<Transaction>(data) {
        let _ = tx.check_well_formed();
        let json = serde_json::to_vec(&tx).expect("a transaction is JSON");
        let again: Transaction = serde_json::from_slice(&json).expect("its JSON decodes");
        assert_eq!(again, tx);
    }
});
