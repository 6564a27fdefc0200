//! The health-record app's side of one node: what every route and the commit hook share (the
//! node, the chaincode for queries, the nonces of signed requests, the lock of the wrapped-key
//! files), and the reads of the chain they all make.

use crate::directory::{HospitalIndex, HOOK_WAIT};
use axum::http::{HeaderMap, Method, StatusCode};
use bytes::Bytes;
use medchain_app::signed::{NonceCache, SignedHeaders, Verifier};
use medchain_app::{ApiError, Host, Member};
use medchain_chaincode::{ChaincodeError, StateView};
use medchain_ehr::chaincode::{DocumentAnchor, NAME};
use medchain_ehr::{Ehr, EhrQuery, Vault};
use medchain_types::PublicKey;
use serde::de::DeserializeOwned;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The app's state on one node.
pub struct EhrNode {
    /// The node.
    pub host: Arc<dyn Host>,
    /// The node's key (signed requests name it).
    me: PublicKey,
    /// The chaincode, for its queries.
    pub ehr: Ehr,
    /// Nonces of the signed requests this node accepted from keys with a role.
    pub nonces: NonceCache,
    /// Nonces of the requests other members' nodes made (kept apart: no client can crowd
    /// them out).
    pub peer_nonces: NonceCache,
    /// Serializes every read-modify-write of a wrapped-key file on this node.
    pub keys_lock: Mutex<()>,
    /// Held by the vault audit that is running (one at a time: each re-reads whole blobs).
    pub audit_slot: Arc<tokio::sync::Semaphore>,
    /// The approved hospitals, for the public search.
    pub hospitals: HospitalIndex,
}

impl std::fmt::Debug for EhrNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EhrNode({})", self.host.node_id())
    }
}

impl EhrNode {
    /// The app on `host`, with the chaincode `ehr` (built from genesis); reads the directory
    /// of hospitals once, for the index of the approved ones.
    pub fn new(host: Arc<dyn Host>, ehr: Ehr) -> Result<EhrNode, ChaincodeError> {
        let hospitals = HospitalIndex::build(host.state(NAME).as_ref())?;
        tracing::info!(
            approved = hospitals.len(),
            "the index of approved hospitals is built"
        );
        Ok(EhrNode {
            me: host.node_id(),
            host,
            ehr,
            nonces: NonceCache::default(),
            peer_nonces: NonceCache::default(),
            keys_lock: Mutex::new(()),
            audit_slot: Arc::new(tokio::sync::Semaphore::new(1)),
            hospitals,
        })
    }

    /// The `ehr` chaincode's committed state.
    pub fn view(&self) -> Box<dyn StateView + '_> {
        self.host.state(NAME)
    }

    /// A query's JSON answer: 400 for a bad query, 500 if the state cannot be read.
    pub fn query(&self, q: &EhrQuery) -> Result<serde_json::Value, ApiError> {
        if let EhrQuery::Hospitals {
            search,
            pending: false,
        } = q
        {
            let hits = self
                .hospitals
                .search(self.view().as_ref(), search)
                .map_err(chaincode_error)?;
            return serde_json::to_value(hits).map_err(ApiError::internal);
        }
        self.ehr
            .query_json(self.view().as_ref(), q)
            .map_err(chaincode_error)
    }

    /// A query's answer as `T`.
    pub fn query_as<T: DeserializeOwned>(&self, q: &EhrQuery) -> Result<T, ApiError> {
        serde_json::from_value(self.query(q)?).map_err(ApiError::internal)
    }

    /// A query's JSON answer for `caller` (`None`: anonymous), as its parties see it (see
    /// `Ehr::query_for`): 401 for an anonymous caller that must sign, 403 for a signer that is
    /// not a party.
    pub fn query_for(
        &self,
        caller: Option<&PublicKey>,
        q: &EhrQuery,
    ) -> Result<serde_json::Value, ApiError> {
        if let EhrQuery::Hospitals { pending: false, .. } = q {
            // Public: the same answer for everyone.
            return self.query(q);
        }
        self.ehr
            .query_for(self.view().as_ref(), caller, q, medchain_app::now_ms())
            .map_err(|e| match (e, caller) {
                (ChaincodeError::Forbidden(m), None) => ApiError::unauthorized(m),
                (ChaincodeError::Forbidden(m), Some(_)) => ApiError::forbidden(m),
                (e, _) => chaincode_error(e),
            })
    }

    /// The caller of a request that may be signed: `None` without the signed-request headers;
    /// otherwise the checked signer, `admit` deciding (before its nonce is recorded) whether
    /// this node serves it at all.
    pub fn optional_caller(
        &self,
        headers: &HeaderMap,
        method: &Method,
        path: &str,
        body: Option<&[u8]>,
        admit: impl FnOnce(&PublicKey) -> Result<(), ApiError>,
    ) -> Result<Option<PublicKey>, ApiError> {
        if !headers.contains_key(medchain_app::signed::HEADER_KEY) {
            return Ok(None);
        }
        let signed = SignedHeaders::parse(headers)?;
        self.verifier(&self.nonces)
            .check_admitted(&signed, method, path, body, admit)
            .map(Some)
    }

    /// `Ok` if `k` has any role in the consortium (an administrator, a verifier, a hospital, a
    /// doctor, a patient); 403 otherwise.
    pub fn has_role(&self, k: &PublicKey) -> Result<(), ApiError> {
        let r = self
            .ehr
            .roles(self.view().as_ref(), k)
            .map_err(chaincode_error)?;
        if r.administrator || r.verifier || r.hospital.is_some() || r.doctor.is_some() || r.patient
        {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "this key has no role in the consortium: send public queries unsigned",
            ))
        }
    }

    /// Checks a signed request from an administrator or an appointed verifier.
    pub fn verifier_caller(
        &self,
        headers: &HeaderMap,
        method: &Method,
        path: &str,
    ) -> Result<PublicKey, ApiError> {
        let signed = SignedHeaders::parse(headers)?;
        self.verifier(&self.nonces)
            .check_admitted(&signed, method, path, None, |k| {
                let roles = self
                    .ehr
                    .roles(self.view().as_ref(), k)
                    .map_err(chaincode_error)?;
                if roles.administrator || roles.verifier {
                    Ok(())
                } else {
                    Err(ApiError::forbidden(
                        "the vault audit is for verifiers and administrators",
                    ))
                }
            })
    }

    /// Checks a signed request to this node from a key with a role on the chain (see
    /// [`EhrNode::admit`]); returns the caller (see [`medchain_app::signed`]).
    pub fn caller(
        &self,
        headers: &HeaderMap,
        method: &Method,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<PublicKey, ApiError> {
        let signed = SignedHeaders::parse(headers)?;
        self.verifier(&self.nonces)
            .check_admitted(&signed, method, path, body, |k| self.admit(k, path))
    }

    /// Checks a signed request from another member's node (its own nonces, apart from the
    /// clients'): 403 for any other key.
    pub fn peer_caller(&self, headers: &HeaderMap, path: &str) -> Result<PublicKey, ApiError> {
        let signed = SignedHeaders::parse(headers)?;
        self.verifier(&self.peer_nonces)
            .check_admitted(&signed, &Method::GET, path, None, |k| {
                if self.member(k).is_some() {
                    Ok(())
                } else {
                    Err(ApiError::forbidden("only consortium nodes use peer routes"))
                }
            })
    }

    /// Checks the signature of headers already parsed, asking `admit` about the caller
    /// before its nonce is recorded (see `Verifier::check_admitted`).
    pub fn check_signed(
        &self,
        signed: &SignedHeaders,
        method: &Method,
        path: &str,
        body: Option<&[u8]>,
        admit: impl FnOnce(&PublicKey) -> Result<(), ApiError>,
    ) -> Result<PublicKey, ApiError> {
        self.verifier(&self.nonces)
            .check_admitted(signed, method, path, body, admit)
    }

    fn verifier<'a>(&'a self, nonces: &'a NonceCache) -> Verifier<'a> {
        Verifier {
            chain_id: self.host.chain_id(),
            node: &self.me,
            nonces,
        }
    }

    /// Whether an authentic caller may use the vault at all: a hospital, a doctor, a patient,
    /// or, on a document's routes, the holder of a share link on it. Anyone else is refused
    /// before this node remembers anything of its request.
    pub fn admit(&self, caller: &PublicKey, path: &str) -> Result<(), ApiError> {
        let view = self.view();
        let roles = self
            .ehr
            .roles(view.as_ref(), caller)
            .map_err(chaincode_error)?;
        if roles.hospital.is_some() || roles.doctor.is_some() || roles.patient {
            return Ok(());
        }
        let doc = path
            .strip_prefix("/api/v1/ehr/docs/")
            .and_then(|rest| rest.split('/').next());
        if let Some(doc) = doc {
            if Ehr::is_share_holder(view.as_ref(), doc, caller).map_err(chaincode_error)? {
                return Ok(());
            }
        }
        Err(ApiError::forbidden(
            "this key has no role in the consortium (register first)",
        ))
    }

    /// A signed request whose signature covers its small body: the headers are checked first
    /// (a request without them is refused before its body is read), then at most `limit` bytes
    /// of body are read (413 beyond), then the signature over them. Returns the caller and the
    /// body.
    pub async fn caller_with_body(
        &self,
        headers: &HeaderMap,
        method: &Method,
        path: &str,
        body: axum::body::Body,
        limit: usize,
    ) -> Result<(PublicKey, Bytes), ApiError> {
        let signed = SignedHeaders::parse(headers)?;
        let body = read_body(body, limit).await?;
        let caller = self.verifier(&self.nonces).check_admitted(
            &signed,
            method,
            path,
            Some(&body),
            |k| self.admit(k, path),
        )?;
        Ok((caller, body))
    }

    /// The consortium member with this key.
    pub fn member(&self, key: &PublicKey) -> Option<&Member> {
        self.host.members().iter().find(|m| m.key == *key)
    }

    /// The other members, to ask for what this node lacks.
    pub fn others(&self) -> impl Iterator<Item = &Member> {
        let me = self.host.node_id();
        self.host.members().iter().filter(move |m| m.key != me)
    }

    /// This node's vault.
    pub fn vault(&self) -> Result<Vault, ApiError> {
        Vault::open(self.vault_dir()).map_err(ApiError::internal)
    }

    /// Where this node's vault blobs are.
    pub fn vault_dir(&self) -> PathBuf {
        self.host.data_dir().join("vault")
    }

    /// Where this node's erasure markers are (one empty file per erased blob or record).
    pub fn erased_dir(&self) -> PathBuf {
        self.host.data_dir().join("vault-erased")
    }

    /// True if `name` (a blob address or a record id) was erased here: its blob or keys must
    /// never be stored or served again.
    pub fn is_erased(&self, name: &str) -> bool {
        self.erased_dir().join(name).exists()
    }

    /// Document `id`'s anchor: 404 if there is none, 410 once erased.
    pub fn anchor(&self, id: &str) -> Result<DocumentAnchor, ApiError> {
        let d: Option<DocumentAnchor> = self.query_as(&EhrQuery::Document(id.to_owned()))?;
        let d = d.ok_or_else(|| ApiError::not_found(format!("no document {id:?}")))?;
        if d.erased_ms.is_some() {
            return Err(ApiError::gone(format!(
                "document {id} was erased at the patient's request"
            )));
        }
        Ok(d)
    }

    /// Waits (at most [`HOOK_WAIT`]) until the index of approved hospitals holds what was
    /// committed before the call.
    pub async fn hospital_index_caught_up(&self) {
        /// When it was last said that the hooks are behind (ms), to say it once a minute.
        static SAID_MS: AtomicU64 = AtomicU64::new(0);
        if !self.host.hooks_caught_up(HOOK_WAIT).await {
            let now = medchain_app::now_ms();
            let said = SAID_MS.load(Ordering::Relaxed);
            if now.saturating_sub(said) >= 60_000
                && SAID_MS
                    .compare_exchange(said, now, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                tracing::warn!(
                    "the commit hooks are behind: hospital searches answer from the index as it is"
                );
            }
        }
    }

    /// Whether `caller` is consortium staff (an approved hospital, or a doctor of one).
    pub fn is_staff(&self, caller: &PublicKey) -> bool {
        Ehr::is_staff(self.view().as_ref(), caller).unwrap_or(false)
    }
}

/// At most `limit` bytes of `body`: 413 beyond.
pub async fn read_body(body: axum::body::Body, limit: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        if std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
        {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is larger than {limit} bytes"),
            )
        } else {
            ApiError::bad_request(format!("cannot read the body: {e}"))
        }
    })
}

/// A chaincode's refusal as an HTTP error: the state's failure is the node's (500), the rest
/// the request's (400).
pub fn chaincode_error(e: ChaincodeError) -> ApiError {
    match e {
        ChaincodeError::Storage(_) => {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
        e => ApiError::bad_request(e.to_string()),
    }
}
