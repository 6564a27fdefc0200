//! The health-record app's decoders and rules, as any key holder reaches them: operations
//! (canonical-encoded transaction payloads, screened as a node admits them, then executed in
//! order against one state, by six parties, the administrator among them), queries (canonical
//! and JSON, anonymous and signed), sealed notes and wrapped-key lists (JSON) opened with a
//! party's key, and the key-value chaincode. The input is a sequence of steps (see `step`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use medchain_chaincode::memory::MemState;
use medchain_chaincode::{builtin::Kv, Chaincode};
use medchain_ehr::{unwrap_key, Ehr, EhrQuery, SealedNote, WrappedKey};
use medchain_fuzz::{party, Reader, PARTIES};
use medchain_types::sha256;

fuzz_target!(|data: &[u8]| {
    let ehr = Ehr::new([party(0).public()]);
    let mut state = MemState {
        time_ms: 1_800_000_000_000,
        ..MemState::default()
    };
    let mut r = Reader::new(data);
    let mut steps = 0;
    while !r.is_empty() && steps < 64 {
        steps += 1;
        step(&ehr, &mut state, &mut r);
    }
});

fn step(ehr: &Ehr, state: &mut MemState, r: &mut Reader<'_>) {
    let who = party(r.u8() % PARTIES);
    match r.u8() % 8 {
        0 | 1 => {
            let payload = r.bytes();
            let _ = ehr.screen(payload);
            let _ = state.execute(ehr, who.public(), sha256(payload), payload);
            state.height += 1;
        }
        2 => {
            let _ = ehr.query(state, r.bytes());
        }
        3 => {
            if let Ok(q) = serde_json::from_slice::<EhrQuery>(r.bytes()) {
                let now = state.time_ms;
                let _ = ehr.query_for(state, Some(&who.public()), &q, now);
                let _ = ehr.query_for(state, None, &q, now);
            }
        }
        4 => state.time_ms += u64::from(r.u16()) * 60_000,
        5 => {
            let bytes = r.bytes();
            if let Ok(note) = SealedNote::from_bytes(bytes.to_vec()) {
                let _ = note.readers();
                let _ = note.open(&who);
                assert_eq!(
                    SealedNote::from_field(&note.to_field()).as_ref(),
                    Some(&note)
                );
            }
            if let Ok(field) = std::str::from_utf8(bytes) {
                let _ = SealedNote::from_field(field);
            }
            let _ = serde_json::from_slice::<SealedNote>(bytes);
        }
        6 => {
            let (list, context) = (r.bytes(), r.bytes());
            if let Ok(keys) = serde_json::from_slice::<Vec<WrappedKey>>(list) {
                for w in &keys {
                    let _ = unwrap_key(w, &who, context);
                }
            }
        }
        _ => {
            let payload = r.bytes();
            let _ = state.execute(&Kv, who.public(), sha256(payload), payload);
        }
    }
}
