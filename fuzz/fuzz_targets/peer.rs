//! What a peer sends on a stream: the hello, then length-prefixed frames arriving in chunks of
//! any size, each frame a node message (consensus bytes, gossiped transactions, a block request
//! or a response of blocks with certificates). Whatever decodes re-encodes to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use medchain_network::frame::{parse_hello, Decoder, HELLO_LEN};
use medchain_node::runtime::NodeWire;
use medchain_types::codec;

/// The frame maximum of the fuzzed decoder (small, so that the fuzzer meets it).
const FRAME_MAX: usize = 1 << 16;

fuzz_target!(|data: &[u8]| {
    if let Some(hello) = data.get(..HELLO_LEN) {
        let _ = parse_hello(hello.try_into().expect("HELLO_LEN bytes"));
    }
    let mut r = medchain_fuzz::Reader::new(data);
    let mut decoder = Decoder::new(FRAME_MAX);
    let mut frames = Vec::new();
    while !r.is_empty() {
        let chunk = r.bytes();
        if decoder.feed(chunk, &mut frames).is_err() {
            break;
        }
        assert!(decoder.buffered() <= FRAME_MAX + 4 + chunk.len());
    }
    for frame in frames {
        assert!(!frame.is_empty() && frame.len() <= FRAME_MAX);
        if let Ok(wire) = codec::decode::<NodeWire>(&frame) {
            let again: NodeWire =
                codec::decode(&codec::encode(&wire)).expect("an encoding decodes");
            assert_eq!(again, wire);
        }
    }
    if let Ok(wire) = codec::decode::<NodeWire>(data) {
        let again: NodeWire = codec::decode(&codec::encode(&wire)).expect("an encoding decodes");
        assert_eq!(again, wire);
    }
});
