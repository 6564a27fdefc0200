//! The HTTP API of a running one-node consortium with the apps the `medchain` binary carries,
//! as any client reaches it: a method, a route of the OpenAPI document with fuzzed path
//! parameters (or a raw path), a query string, header lines, a body, and a signature made for
//! the request by nobody, the administrator, an approved hospital, its doctor, a patient who
//! granted the hospital access, or a stranger. No request may get a 5xx answer or panic the node.
//!
//! The node (real RocksDB, real vault, QUIC on 127.0.0.1) starts once per fuzzing process in a
//! temporary folder; the parties are registered by committed transactions before the first
//! input.
#![no_main]

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderName, HeaderValue, Method, Request};
use axum::Router;
use libfuzzer_sys::fuzz_target;
use medchain_app::signed::sign_headers;
use medchain_ehr::chaincode::{HospitalProfile, Scope};
use medchain_ehr::{Ehr, EhrOp};
use medchain_fuzz::{party, Reader};
use medchain_node::cluster::{testnet, TestnetSpec};
use medchain_node::config::NodeConfig;
use medchain_node::runtime::Node;
use medchain_types::{sha256, PublicKey, SecretKey, Transaction};
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;
use tower::ServiceExt;

struct Api {
    rt: tokio::runtime::Runtime,
    router: Router,
    chain: String,
    node_key: PublicKey,
    signers: Vec<SecretKey>,
    routes: Vec<String>,
    _node: Node,
    _dir: tempfile::TempDir,
}

const CHAIN: &str = "fuzz-api";

static API: OnceLock<Api> = OnceLock::new();

fn api() -> &'static Api {
    API.get_or_init(start)
}

fn start() -> Api {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let apps = medchain::apps();
    let (p2p, api_port) = free_ports();
    let spec = TestnetSpec::new(1, "pbft".into(), p2p, api_port, CHAIN.into());
    testnet(&spec, dir.path(), false, &apps).expect("a testnet");
    let config = NodeConfig::load(&dir.path().join("node0/node.toml")).expect("its config");
    let node_key: SecretKey =
        medchain_app::keyfile::read(&dir.path().join("node0/node.json")).expect("node key");
    let admin: SecretKey =
        medchain_app::keyfile::read(&dir.path().join("admin.json")).expect("admin key");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let node = rt
        .block_on(async { Node::start(config, &apps) })
        .expect("the node starts");
    let router = medchain_node::api::router(
        node.shared.clone(),
        &node.apps,
        medchain_node::api::openapi_document(&apps),
    );
    let openapi: serde_json::Value =
        serde_json::from_str(&medchain_node::api::openapi_document(&apps)).expect("JSON");
    let routes: Vec<String> = openapi["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .cloned()
        .chain(["/healthz".into(), "/metrics".into(), "/".into()])
        .collect();
    let (hospital, doctor, patient, stranger) = (party(1), party(2), party(3), party(5));
    let api = Api {
        rt,
        router,
        chain: CHAIN.into(),
        node_key: node_key.public(),
        signers: vec![
            admin.clone(),
            hospital.clone(),
            doctor.clone(),
            patient.clone(),
            stranger,
        ],
        routes,
        _node: node,
        _dir: dir,
    };
    let setup = [
        (
            &hospital,
            EhrOp::RegisterHospital(HospitalProfile {
                name: "St Mary".into(),
                address: "1 High Street".into(),
                contact: "desk@example.invalid".into(),
                treatments: vec!["cardiology".into()],
            }),
        ),
        (
            &admin,
            EhrOp::ApproveHospital {
                hospital: hospital.public(),
            },
        ),
        (
            &hospital,
            EhrOp::RegisterDoctor {
                doctor: doctor.public(),
                profile_commitment: sha256(b"doctor"),
            },
        ),
        (
            &patient,
            EhrOp::RegisterPatient {
                profile_commitment: sha256(b"patient"),
                profile_blob: None,
            },
        ),
        (
            &patient,
            EhrOp::Grant {
                grantee: hospital.public(),
                scopes: vec![Scope::Profile, Scope::Cases, Scope::Documents],
                write: true,
                expires_ms: u64::MAX / 2,
            },
        ),
    ];
    for (i, (key, op)) in setup.into_iter().enumerate() {
        let tx = Transaction::signed(CHAIN, "ehr", Ehr::payload(&op), i as u64, key);
        let req = Request::post("/api/v1/txs?wait=commit")
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(&tx).expect("JSON")))
            .expect("a request");
        let (status, body) = api.rt.block_on(send(&api.router, req));
        assert!(
            status.is_success(),
            "setup transaction {op:?}: {status} {}",
            String::from_utf8_lossy(&body)
        );
    }
    api
}

/// A free UDP port for the node's transport and a TCP port for its (unused) listener, below
/// Linux's ephemeral range as in the project's tests.
fn free_ports() -> (u16, u16) {
    let seed = u64::from(std::process::id()) * 7919;
    (0..200u64)
        .map(|attempt| 10_000 + ((seed + attempt * 977) % 10_000) as u16)
        .find(|p2p| {
            std::net::UdpSocket::bind(("127.0.0.1", *p2p)).is_ok()
                && std::net::TcpListener::bind(("127.0.0.1", p2p + 10_000)).is_ok()
        })
        .map(|p2p| (p2p, p2p + 10_000))
        .expect("a free pair of ports")
}

/// Sends `req` through the router and reads the whole answer (at most 64 MiB of it, in at most
/// 30 s: a route that streams longer is cut there).
async fn send(router: &Router, mut req: Request<Body>) -> (axum::http::StatusCode, Vec<u8>) {
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40_000))));
    let work = async {
        let res = router.clone().oneshot(req).await.expect("infallible");
        let status = res.status();
        let body = axum::body::to_bytes(res.into_body(), 64 << 20)
            .await
            .map(|b| b.to_vec())
            .unwrap_or_default();
        (status, body)
    };
    tokio::time::timeout(Duration::from_secs(30), work)
        .await
        .unwrap_or((axum::http::StatusCode::REQUEST_TIMEOUT, Vec::new()))
}

/// `s` with every byte but the unreserved ones percent-encoded.
fn escape(s: &[u8]) -> String {
    s.iter()
        .map(|&b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The path (as a route sees it, decoded) and the URI path (escaped) of template `route` with
/// its `{parameters}` taken from `r`.
fn fill(route: &str, r: &mut Reader<'_>) -> (String, String) {
    let (mut plain, mut uri) = (String::new(), String::new());
    let mut rest = route;
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}').map_or(rest.len(), |c| open + c + 1);
        plain.push_str(&rest[..open]);
        uri.push_str(&rest[..open]);
        let value = r.bytes();
        plain.push_str(&String::from_utf8_lossy(value));
        uri.push_str(&escape(value));
        rest = &rest[close..];
    }
    plain.push_str(rest);
    uri.push_str(rest);
    (plain, uri)
}

const METHODS: [Method; 7] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::HEAD,
    Method::PATCH,
    Method::OPTIONS,
];

fuzz_target!(|data: &[u8]| {
    let api = api();
    let mut r = Reader::new(data);
    let method = METHODS[usize::from(r.u8()) % METHODS.len()].clone();
    let pick = r.u8();
    let (plain, mut uri) = if pick < 240 {
        fill(&api.routes[usize::from(pick) % api.routes.len()], &mut r)
    } else {
        let raw = String::from_utf8_lossy(r.bytes()).into_owned();
        (raw.clone(), raw)
    };
    let query = r.bytes();
    if !query.is_empty() {
        uri.push('?');
        uri.push_str(&String::from_utf8_lossy(query));
    }
    let signer = usize::from(r.u8());
    let sign_body = r.u8() & 1 == 1;
    let header_lines = r.bytes();
    let body = r.rest();
    let mut builder = Request::builder().method(method.clone()).uri(&uri);
    if let Some(key) = api.signers.get(signer % (api.signers.len() + 1)) {
        let headers = sign_headers(
            key,
            &api.chain,
            &api.node_key,
            method.as_str(),
            &plain,
            sign_body.then_some(body),
        );
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
    }
    for line in header_lines.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) {
            builder = builder.header(name, value);
        }
    }
    let Ok(req) = builder.body(Body::from(body.to_vec())) else {
        return;
    };
    let (status, answer) = api.rt.block_on(send(&api.router, req));
    assert!(
        !status.is_server_error(),
        "{method} {uri}: {status} {}",
        String::from_utf8_lossy(&answer[..answer.len().min(512)])
    );
});
