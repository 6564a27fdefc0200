//! The headers of a signed request (key, time, nonce, signature) as any client sends them,
//! parsed at a fixed clock, then checked against the method, path and body that came with
//! them. The input: a method byte, the path, the body (each a length-prefixed field), then
//! `name: value` header lines.
#![no_main]

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method};
use libfuzzer_sys::fuzz_target;
use medchain_app::signed::{NonceCache, SignedHeaders, Verifier};
use medchain_types::SecretKey;

/// The node's clock in every run (the seeds are signed for it).
pub const NOW_MS: u64 = 1_800_000_000_000;

fuzz_target!(|data: &[u8]| {
    let mut r = medchain_fuzz::Reader::new(data);
    let method =
        [Method::GET, Method::POST, Method::PUT, Method::DELETE][usize::from(r.u8() % 4)].clone();
    let path = String::from_utf8_lossy(r.bytes()).into_owned();
    let body = r.bytes();
    let mut headers = HeaderMap::new();
    for line in r.rest().split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let value = line[colon + 1..].trim_ascii();
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(value),
        ) {
            headers.append(name, value);
        }
    }
    let Ok(signed) = SignedHeaders::parse_at(&headers, NOW_MS) else {
        return;
    };
    let node = SecretKey::from_seed([0x4e; 32]).public();
    let check = |body: Option<&[u8]>| {
        let nonces = NonceCache::default();
        let verifier = Verifier {
            chain_id: "fuzz",
            node: &node,
            nonces: &nonces,
        };
        let first = verifier.check(&signed, &method, &path, body);
        // A nonce is accepted once.
        if first.is_ok() {
            assert!(verifier.check(&signed, &method, &path, body).is_err());
        }
        first
    };
    // One signature covers the body or not: it never passes both ways.
    assert!(check(Some(body)).is_err() || check(None).is_err());
});
