//! Proof of stake passes the engine conformance suite.

use medchain_consensus::conformance;
use medchain_pos::{Pos, PosConfig};

#[test]
fn pos_passes_the_conformance_suite() {
    conformance::check_engine(&|ctx| Box::new(Pos::new(ctx, PosConfig::default())));
}
