//! Proof of work: a validator's engine driven by messages from validators and strangers, blocks with
//! certificates from a peer, timers and time (see `medchain_fuzz::drive`); every message that
//! decodes re-encodes to itself. The first byte picks which validator the engine is.
#![no_main]

use libfuzzer_sys::fuzz_target;
use medchain_pow::{Pow, PowConfig, Wire};
use medchain_types::codec;
use std::time::Duration;

fuzz_target!(|data: &[u8]| {
    let Some((&me, events)) = data.split_first() else {
        return;
    };
    // The conformance suite's easy target (the seeds' blocks were mined for it).
    let cfg = PowConfig {
        block_interval: Duration::from_millis(50),
        initial_target: PowConfig::target_for_hashes(16),
        max_target: PowConfig::target_for_hashes(8),
        ..PowConfig::default()
    };
    let mut engine = Pow::new(medchain_fuzz::engine_context(usize::from(me)), cfg);
    medchain_fuzz::drive(&mut engine, events, |bytes| {
        if let Some(wire) = Wire::decode(bytes) {
            assert_eq!(Wire::decode(&codec::encode(&wire)), Some(wire));
        }
    });
});
