//! Blocks as a peer sends them: decoded with the structure checks, then every signature
//! checked. Whatever decodes re-encodes to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use medchain_types::Block;

fuzz_target!(|data: &[u8]| {
    if let Ok(block) = Block::decode(data) {
        let _ = block.verify_signatures("fuzz");
        let _ = block.hash();
        let again = Block::decode(&block.encode()).expect("an encoding decodes");
        assert_eq!(again, block);
    }
});
