//! Length-prefixed frames on a QUIC stream: a 4-byte big-endian length, then that many bytes.
//!
//! The decoder checks a length against the hard maximum before it reserves any memory for the
//! frame, so a peer cannot make a node allocate by announcing a huge frame.

use bytes::{Buf, Bytes, BytesMut};

/// Bytes of the length prefix.
pub const HEADER_LEN: usize = 4;

/// The first bytes each side writes on its stream: a magic and the writer's incarnation.
pub const HELLO_MAGIC: &[u8; 4] = b"MCN1";
/// Length of the hello.
pub const HELLO_LEN: usize = 12;
/// The byte the deciding side writes after its hello to accept a connection.
pub const ACCEPT: u8 = 0xac;

/// Why a stream was cut.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A frame announced more bytes than the maximum.
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    Oversize {
        /// Announced length.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// A zero-length frame (never sent by a correct peer).
    #[error("empty frame")]
    Empty,
}

/// Encodes a hello.
pub fn hello(incarnation: u64) -> [u8; HELLO_LEN] {
    let mut out = [0u8; HELLO_LEN];
    out[..4].copy_from_slice(HELLO_MAGIC);
    out[4..].copy_from_slice(&incarnation.to_be_bytes());
    out
}

/// Decodes a hello; `None` if the magic is wrong.
pub fn parse_hello(bytes: &[u8; HELLO_LEN]) -> Option<u64> {
    (&bytes[..4] == HELLO_MAGIC)
        .then(|| u64::from_be_bytes(bytes[4..].try_into().expect("8 bytes")))
}

/// Incremental frame decoder over stream chunks.
#[derive(Debug)]
pub struct Decoder {
    buf: BytesMut,
    max: usize,
}

impl Decoder {
    /// A decoder refusing frames longer than `max`.
    pub fn new(max: usize) -> Decoder {
        Decoder {
            buf: BytesMut::new(),
            max,
        }
    }

    /// Feeds a chunk and appends every complete frame to `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<Bytes>) -> Result<(), FrameError> {
        self.buf.extend_from_slice(chunk);
        loop {
            if self.buf.len() < HEADER_LEN {
                return Ok(());
            }
            let len =
                u32::from_be_bytes(self.buf[..HEADER_LEN].try_into().expect("4 bytes")) as usize;
            if len > self.max {
                return Err(FrameError::Oversize { len, max: self.max });
            }
            if len == 0 {
                return Err(FrameError::Empty);
            }
            if self.buf.len() < HEADER_LEN + len {
                // Safe to reserve now: `len` is within the maximum.
                self.buf.reserve(HEADER_LEN + len - self.buf.len());
                return Ok(());
            }
            self.buf.advance(HEADER_LEN);
            out.push(self.buf.split_to(len).freeze());
        }
    }

    /// Bytes buffered for an incomplete frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

/// Appends the frame header for a payload of `len` bytes.
pub fn put_header(out: &mut BytesMut, len: usize) {
    out.extend_from_slice(
        &(u32::try_from(len).expect("frame length checked against the maximum")).to_be_bytes(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(frames: &[&[u8]]) -> Vec<u8> {
        let mut out = BytesMut::new();
        for f in frames {
            put_header(&mut out, f.len());
            out.extend_from_slice(f);
        }
        out.to_vec()
    }

    #[test]
    fn frames_survive_any_chunking() {
        let frames: Vec<Vec<u8>> = (1..40).map(|i| vec![i as u8; i * 7]).collect();
        let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        let wire = encode(&refs);
        for chunk in [1, 2, 3, 5, 64, 1000, wire.len()] {
            let mut d = Decoder::new(1 << 20);
            let mut out = Vec::new();
            for c in wire.chunks(chunk) {
                d.feed(c, &mut out).unwrap();
            }
            assert_eq!(
                out.iter().map(|b| b.to_vec()).collect::<Vec<_>>(),
                frames,
                "chunk {chunk}"
            );
            assert_eq!(d.buffered(), 0);
        }
    }

    #[test]
    fn oversize_is_refused_before_allocation() {
        let mut d = Decoder::new(1024);
        let mut out = Vec::new();
        let err = d.feed(&[0xff, 0xff, 0xff, 0xff], &mut out).unwrap_err();
        assert_eq!(
            err,
            FrameError::Oversize {
                len: u32::MAX as usize,
                max: 1024
            }
        );
        assert!(
            d.buf.capacity() < 1024,
            "nothing reserved for the announced frame"
        );
        let mut d = Decoder::new(1024);
        assert_eq!(
            d.feed(&encode(&[&[0u8; 1025]]), &mut out),
            Err(FrameError::Oversize {
                len: 1025,
                max: 1024
            })
        );
        assert_eq!(
            Decoder::new(10).feed(&[0, 0, 0, 0], &mut out),
            Err(FrameError::Empty)
        );
    }

    #[test]
    fn hello_round_trip() {
        assert_eq!(parse_hello(&hello(42)), Some(42));
        let mut h = hello(42);
        h[0] = b'X';
        assert_eq!(parse_hello(&h), None);
    }
}
