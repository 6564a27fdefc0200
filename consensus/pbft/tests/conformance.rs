//! PBFT passes the engine conformance suite.

use medchain_consensus::conformance;
use medchain_pbft::{Pbft, PbftConfig};

#[test]
fn pbft_passes_the_conformance_suite() {
    conformance::check_engine(&|ctx| Box::new(Pbft::new(ctx, PbftConfig::default())));
}
