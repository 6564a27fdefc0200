//! The health-record app's HTTP routes, relative to `/api/v1/ehr` (the node mounts them there).
//!
//! | route | who | what |
//! |---|---|---|
//! | `POST /query` | anyone for the public queries; the parties, signed, for the rest | a JSON `EhrQuery`, answered as JSON (see `Ehr::query_for`) |
//! | `GET /hospitals?search=TEXT` | anyone | approved hospitals whose name or treatments match |
//! | `GET /docs/{id}` | anyone; its patient's pseudonym to a party (signed) | a document's anchor (hashes, kind, issuer, hospital, time) |
//! | `GET /verify/{sha256}[?doc=ID]` | anyone | `authentic`, `tampered` or `unknown`, with the anchor (never its patient) |
//! | `POST /tx/unsigned` | anyone | an `ehr` transaction for a sender to sign, and the bytes to sign |
//! | `POST /blobs`, `PUT /blobs/{blob}` | staff, or a patient for its anchored profile (signed) | a ciphertext blob, streamed |
//! | `PUT /docs/{id}/keys` | the document's issuer or patient (signed) | the document key wrapped per reader |
//! | `GET /docs/{id}/key`, `.../blob` | a reader with access who logged the read (signed) | its wrapped key; the ciphertext |
//! | `PUT /profiles/{patient}/keys`, `GET .../key`, `.../blob` | the patient; a reader with a profile grant | as for documents |
//! | `PUT /cases/{patient}/{case}/keys`, `GET .../key`, `.../blob` | the case's author, hospital or patient; a reader with a cases grant | as for documents |
//! | `GET /vault-audit[?after&limit]` | verifiers and administrators (signed) | a page of anchored records re-hashed: intact, tampered, missing, erased |
//! | `GET /peer/blobs/{blob}`, `/peer/keys/{id}` | another member's node (signed with its node key) | what a node lacks |
//!
//! Writes to the chain are signed `ehr` transactions posted to the node's `/api/v1/txs`. Signed
//! requests follow [`medchain_app::signed`]. A node asked for a record it does not hold fetches
//! it from the other members ([`crate::fetch`]). An erased document answers 410 on every node.

mod audit;
mod blobs;
mod cases;
mod docs;
mod peer;
mod profiles;
mod queries;

use crate::state::EhrNode;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};
use axum::Router;
use std::sync::Arc;

/// Largest body of a query or an unsigned transaction.
pub const QUERY_BODY_MAX: usize = 64 << 10;

/// The routes, with their state.
pub fn router(node: Arc<EhrNode>) -> Router {
    // Blobs stream in and out (each caller's own limit applies as they arrive); the key
    // uploads read at most `KEYS_BODY_MAX` themselves, after checking the signed headers.
    let vault = Router::new()
        .route("/blobs", post(blobs::post_blob))
        .route("/blobs/{blob}", put(blobs::put_blob))
        .route("/docs/{id}/keys", put(docs::put_keys))
        .route("/docs/{id}/key", get(docs::get_key))
        .route("/docs/{id}/blob", get(docs::get_blob))
        .route("/vault-audit", get(audit::vault_audit))
        .route("/profiles/{patient}/keys", put(profiles::put_keys))
        .route("/profiles/{patient}/key", get(profiles::get_key))
        .route("/profiles/{patient}/blob", get(profiles::get_blob))
        .route("/cases/{patient}/{case}/keys", put(cases::put_keys))
        .route("/cases/{patient}/{case}/key", get(cases::get_key))
        .route("/cases/{patient}/{case}/blob", get(cases::get_blob))
        .route("/peer/blobs/{blob}", get(peer::blob))
        .route("/peer/keys/{id}", get(peer::keys))
        .layer(DefaultBodyLimit::disable());
    // Queries and unsigned transactions are small JSON documents.
    Router::new()
        .route("/query", post(queries::query))
        .route("/hospitals", get(queries::hospitals))
        .route("/docs/{id}", get(queries::document))
        .route("/verify/{sha256}", get(queries::verify))
        .route("/tx/unsigned", post(queries::unsigned_tx))
        .layer(DefaultBodyLimit::max(QUERY_BODY_MAX))
        .merge(vault)
        .with_state(node)
}
