//! Proof of work passes the engine conformance suite.

use medchain_consensus::conformance;
use medchain_pow::{Pow, PowConfig};
use std::time::Duration;

#[test]
fn pow_passes_the_conformance_suite() {
    // The harness solves each search by brute force and advances 50 ms per solution: an easy
    // target and a 50 ms interval keep the difficulty where the harness can afford it.
    let cfg = PowConfig {
        block_interval: Duration::from_millis(50),
        initial_target: PowConfig::target_for_hashes(16),
        max_target: PowConfig::target_for_hashes(8),
        ..PowConfig::default()
    };
    conformance::check_engine(&|ctx| Box::new(Pow::new(ctx, cfg.clone())));
}
