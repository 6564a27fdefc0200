//! Signed HTTP requests: how a caller proves its key to a node's routes, and how a node proves
//! itself to another member's.
//!
//! Headers `x-medchain-key` (the caller's ed25519 key, hex), `x-medchain-created` (milliseconds
//! since the Unix epoch), `x-medchain-nonce` (16 random bytes, hex) and `x-medchain-signature`
//! over `METHOD \n PATH \n created \n nonce \n NODE \n BODY` ([`request_bytes`]; NODE: the key of
//! the node the request is for, hex; BODY: the SHA-256 of the body, hex, on routes whose body is
//! a small document, empty elsewhere), in the domain [`DOMAIN_REQUEST`] and the chain id.
//! A node refuses requests more than [`REQUEST_SKEW_MS`] from its clock, any nonce it has seen
//! ([`NonceCache`]) and requests signed for another node, so a request is good once, at one node,
//! for five minutes.

use crate::ApiError;
use axum::http::{HeaderMap, Method};
use medchain_types::{Domain, PublicKey, SecretKey, Signature};
use std::collections::HashMap;
use std::sync::Mutex;

/// Signature domain of signed HTTP requests.
pub const DOMAIN_REQUEST: Domain = Domain("http-request");
/// How far a signed request's time may be from the node's.
pub const REQUEST_SKEW_MS: u64 = 5 * 60 * 1000;
/// Nonces a [`NonceCache`] remembers of one key within the skew window: a key that signs more
/// requests than that in five minutes is refused (429) until its oldest age out; others are not.
pub const NONCES_PER_KEY_MAX: usize = 10_000;
/// Keys a [`NonceCache`] remembers nonces of (those whose nonces all aged out are forgotten
/// first): a node admits only keys with a role (see [`Verifier::check_admitted`]), so this
/// bounds memory, not who may call.
pub const NONCE_KEYS_MAX: usize = 100_000;

/// The header carrying the caller's key.
pub const HEADER_KEY: &str = "x-medchain-key";
/// The header carrying the request's time.
pub const HEADER_CREATED: &str = "x-medchain-created";
/// The header carrying the request's nonce.
pub const HEADER_NONCE: &str = "x-medchain-nonce";
/// The header carrying the signature.
pub const HEADER_SIGNATURE: &str = "x-medchain-signature";

/// The bytes a request signature covers: the method, the path, the time, the nonce, the node
/// the request is for (its key, from `/api/v1/status`), so that a request captured on its way
/// to one node is refused by every other (each node remembers only its own nonces), and the
/// SHA-256 of the body (hex) for routes whose body is a small document, empty otherwise (no
/// body, or a streamed blob that its address binds).
pub fn request_bytes(
    method: &str,
    path: &str,
    created: u64,
    nonce: &str,
    node: &PublicKey,
    body_sha256: &str,
) -> Vec<u8> {
    format!(
        "{method}\n{path}\n{created}\n{nonce}\n{}\n{body_sha256}",
        node.to_hex()
    )
    .into_bytes()
}

/// The body digest a signature covers (see [`request_bytes`]).
pub fn body_digest(body: &[u8]) -> String {
    medchain_types::sha256(body).to_hex()
}

/// The four headers of a request `method path` to node `node`, signed with `key`; `body` for
/// the routes whose signature covers it.
pub fn sign_headers(
    key: &SecretKey,
    chain: &str,
    node: &PublicKey,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> [(&'static str, String); 4] {
    headers_signed_by(
        key.public(),
        |bytes| key.sign(DOMAIN_REQUEST, chain, bytes),
        node,
        method,
        path,
        body,
    )
}

/// As [`sign_headers`], with the signature made by `sign` over the request bytes (in the domain
/// [`DOMAIN_REQUEST`] and the chain id): for a signer that does not hand out its key, such as a
/// node signing a request to another member.
pub fn headers_signed_by(
    signer: PublicKey,
    sign: impl FnOnce(&[u8]) -> Signature,
    node: &PublicKey,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> [(&'static str, String); 4] {
    let created = crate::now_ms();
    let mut nonce = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut nonce);
    let nonce = hex::encode(nonce);
    let sig = sign(&request_bytes(
        method,
        path,
        created,
        &nonce,
        node,
        &body.map(body_digest).unwrap_or_default(),
    ));
    [
        (HEADER_KEY, signer.to_hex()),
        (HEADER_CREATED, created.to_string()),
        (HEADER_NONCE, nonce),
        (HEADER_SIGNATURE, sig.to_hex()),
    ]
}

/// The nonces of signed requests a node has accepted within the skew window, per key: one
/// key's requests cannot crowd out another's. Owned by whoever checks the requests.
#[derive(Debug, Default)]
pub struct NonceCache {
    seen: Mutex<HashMap<PublicKey, HashMap<String, u64>>>,
}

impl NonceCache {
    /// Records `nonce` of `key` made at `created`; `Err` if it was seen before, or this key (or
    /// the cache) is full of nonces still within the window.
    fn insert(&self, key: PublicKey, nonce: &str, created: u64, now: u64) -> Result<(), ApiError> {
        let fresh = |t: &u64| t.abs_diff(now) <= REQUEST_SKEW_MS;
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if !seen.contains_key(&key) && seen.len() >= NONCE_KEYS_MAX {
            seen.retain(|_, nonces| {
                nonces.retain(|_, t| fresh(t));
                !nonces.is_empty()
            });
            if seen.len() >= NONCE_KEYS_MAX {
                return Err(ApiError::too_many("too many signed requests; retry later"));
            }
        }
        let nonces = seen.entry(key).or_default();
        if nonces.len() >= NONCES_PER_KEY_MAX {
            nonces.retain(|_, t| fresh(t));
            if nonces.len() >= NONCES_PER_KEY_MAX {
                return Err(ApiError::too_many(
                    "too many signed requests from this key; retry later",
                ));
            }
        }
        if nonces.insert(nonce.to_owned(), created).is_some() {
            return Err(ApiError::unauthorized(
                "replayed request (nonce seen before)",
            ));
        }
        Ok(())
    }
}

/// What a node checks a signed request against.
#[derive(Debug, Clone, Copy)]
pub struct Verifier<'a> {
    /// The chain id (the signature's domain).
    pub chain_id: &'a str,
    /// The node's own key: a request signed for another node is refused.
    pub node: &'a PublicKey,
    /// The node's nonces.
    pub nonces: &'a NonceCache,
}

/// The headers of a signed request, checked for form and time but not yet for the signature
/// (which may cover a body not read yet): what a route checks before it reads a body.
#[derive(Debug, Clone)]
pub struct SignedHeaders {
    /// The caller's key, as claimed.
    pub key: PublicKey,
    created: u64,
    nonce: String,
    sig: Signature,
}

impl SignedHeaders {
    /// The signed-request headers of `headers`: 401 if one is missing or malformed, or the
    /// request is more than [`REQUEST_SKEW_MS`] from this node's clock.
    pub fn parse(headers: &HeaderMap) -> Result<SignedHeaders, ApiError> {
        SignedHeaders::parse_at(headers, crate::now_ms())
    }

    /// As [`SignedHeaders::parse`], with the node's clock reading `now` (Unix ms).
    pub fn parse_at(headers: &HeaderMap, now: u64) -> Result<SignedHeaders, ApiError> {
        let h = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| ApiError::unauthorized(format!("missing header {name}")))
        };
        let key: PublicKey = h(HEADER_KEY)?
            .parse()
            .map_err(|_| ApiError::unauthorized("x-medchain-key: not a key"))?;
        let created: u64 = h(HEADER_CREATED)?
            .parse()
            .map_err(|_| ApiError::unauthorized("x-medchain-created: not a number"))?;
        let nonce = h(HEADER_NONCE)?;
        if nonce.len() != 32 || hex::decode(nonce).is_err() {
            return Err(ApiError::unauthorized(
                "x-medchain-nonce: 32 hex characters",
            ));
        }
        let sig: Signature = h(HEADER_SIGNATURE)?
            .parse()
            .map_err(|_| ApiError::unauthorized("x-medchain-signature: not a signature"))?;
        if created.abs_diff(now) > REQUEST_SKEW_MS {
            return Err(ApiError::unauthorized(
                "stale request (more than 5 minutes from the node's clock)",
            ));
        }
        Ok(SignedHeaders {
            key,
            created,
            nonce: nonce.to_owned(),
            sig,
        })
    }
}

impl Verifier<'_> {
    /// Checks the signed request `method path` (and `body`, on routes whose signature covers
    /// it); returns the caller's key. 401 for a missing or bad header, a stale time, a bad
    /// signature or a replay; 429 when too many requests are within the window.
    pub fn caller(
        &self,
        headers: &HeaderMap,
        method: &Method,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<PublicKey, ApiError> {
        self.check(&SignedHeaders::parse(headers)?, method, path, body)
    }

    /// Checks the signature of headers already parsed (see [`SignedHeaders::parse`]) over
    /// `method path` and `body`, then records the nonce; returns the caller's key.
    pub fn check(
        &self,
        signed: &SignedHeaders,
        method: &Method,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<PublicKey, ApiError> {
        self.check_admitted(signed, method, path, body, |_| Ok(()))
    }

    /// As [`Verifier::check`], asking `admit` about the (authentic) caller before its nonce is
    /// recorded: a node refuses keys without a role there, so they take no room in its cache.
    pub fn check_admitted(
        &self,
        signed: &SignedHeaders,
        method: &Method,
        path: &str,
        body: Option<&[u8]>,
        admit: impl FnOnce(&PublicKey) -> Result<(), ApiError>,
    ) -> Result<PublicKey, ApiError> {
        signed
            .key
            .verify(
                DOMAIN_REQUEST,
                self.chain_id,
                &request_bytes(
                    method.as_str(),
                    path,
                    signed.created,
                    &signed.nonce,
                    self.node,
                    &body.map(body_digest).unwrap_or_default(),
                ),
                &signed.sig,
            )
            .map_err(|_| ApiError::unauthorized("bad request signature"))?;
        admit(&signed.key)?;
        self.nonces
            .insert(signed.key, &signed.nonce, signed.created, crate::now_ms())?;
        Ok(signed.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderName, HeaderValue, StatusCode};

    fn headers(pairs: [(&'static str, String); 4]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                HeaderName::from_static(k),
                HeaderValue::from_str(&v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn a_signed_request_is_good_once_at_its_node_only() {
        let caller = SecretKey::from_seed([1; 32]);
        let node = SecretKey::from_seed([2; 32]).public();
        let other = SecretKey::from_seed([3; 32]).public();
        let nonces = NonceCache::default();
        let v = Verifier {
            chain_id: "c",
            node: &node,
            nonces: &nonces,
        };
        let h = headers(sign_headers(&caller, "c", &node, "GET", "/x", None));
        assert_eq!(v.caller(&h, &Method::GET, "/x", None), Ok(caller.public()));
        let replay = v.caller(&h, &Method::GET, "/x", None).unwrap_err();
        assert!(replay.message.contains("replayed"), "{replay}");
        // For another node, another path, another method, another chain: refused.
        let h = headers(sign_headers(&caller, "c", &other, "GET", "/x", None));
        assert_eq!(
            v.caller(&h, &Method::GET, "/x", None).unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
        let h = headers(sign_headers(&caller, "c", &node, "GET", "/x", None));
        assert!(v.caller(&h, &Method::GET, "/y", None).is_err());
        assert!(v.caller(&h, &Method::PUT, "/x", None).is_err());
        let h = headers(sign_headers(&caller, "d", &node, "GET", "/x", None));
        assert!(v.caller(&h, &Method::GET, "/x", None).is_err());
        // A body the signature covers must be the one sent.
        let h = headers(sign_headers(&caller, "c", &node, "PUT", "/k", Some(b"[1]")));
        assert!(v.caller(&h, &Method::PUT, "/k", Some(b"[2]")).is_err());
        let h = headers(sign_headers(&caller, "c", &node, "PUT", "/k", Some(b"[1]")));
        assert!(v.caller(&h, &Method::PUT, "/k", Some(b"[1]")).is_ok());
        // A stale time.
        let mut h = headers(sign_headers(&caller, "c", &node, "GET", "/x", None));
        let old = (crate::now_ms() - REQUEST_SKEW_MS - 1_000).to_string();
        h.insert(HEADER_CREATED, HeaderValue::from_str(&old).unwrap());
        let e = v.caller(&h, &Method::GET, "/x", None).unwrap_err();
        assert!(e.message.contains("stale"), "{e}");
        // One key's flood does not refuse another's requests.
        let flooder = SecretKey::from_seed([9; 32]);
        for _ in 0..NONCES_PER_KEY_MAX {
            let h = headers(sign_headers(&flooder, "c", &node, "GET", "/x", None));
            v.caller(&h, &Method::GET, "/x", None).unwrap();
        }
        let h = headers(sign_headers(&flooder, "c", &node, "GET", "/x", None));
        let e = v.caller(&h, &Method::GET, "/x", None).unwrap_err();
        assert_eq!(e.status, StatusCode::TOO_MANY_REQUESTS);
        let h = headers(sign_headers(&caller, "c", &node, "GET", "/x", None));
        assert!(
            v.caller(&h, &Method::GET, "/x", None).is_ok(),
            "another key still gets in"
        );
        // A key the node does not admit takes no room.
        let h = headers(sign_headers(&caller, "c", &node, "GET", "/x", None));
        let refused = v.check_admitted(
            &SignedHeaders::parse(&h).unwrap(),
            &Method::GET,
            "/x",
            None,
            |_| Err(ApiError::forbidden("no role")),
        );
        assert_eq!(refused.unwrap_err().status, StatusCode::FORBIDDEN);
        assert_eq!(
            v.caller(&h, &Method::GET, "/x", None),
            Ok(caller.public()),
            "not recorded"
        );
        // A missing header.
        let mut h = headers(sign_headers(&caller, "c", &node, "GET", "/x", None));
        h.remove(HEADER_NONCE);
        let e = v.caller(&h, &Method::GET, "/x", None).unwrap_err();
        assert!(e.message.contains("missing header"), "{e}");
    }
}
