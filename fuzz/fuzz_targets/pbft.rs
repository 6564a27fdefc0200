//! PBFT: a validator's engine driven by messages from validators and strangers, blocks with
//! certificates from a peer, timers and time (see `medchain_fuzz::drive`); every message that
//! decodes re-encodes to itself. The first byte picks which validator the engine is.
#![no_main]

use libfuzzer_sys::fuzz_target;
use medchain_pbft::{Pbft, PbftConfig, Wire};
use medchain_types::codec;

fuzz_target!(|data: &[u8]| {
    let Some((&me, events)) = data.split_first() else {
        return;
    };
    let mut engine = Pbft::new(
        medchain_fuzz::engine_context(usize::from(me)),
        PbftConfig::default(),
    );
    medchain_fuzz::drive(&mut engine, events, |bytes| {
        if let Some(wire) = Wire::decode(bytes) {
            assert_eq!(Wire::decode(&codec::encode(&wire)), Some(wire));
        }
    });
});
