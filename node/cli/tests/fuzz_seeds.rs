//! The fuzz targets' seed corpus (`fuzz/seeds/<target>/`) is what this test makes: valid
//! transactions, blocks, each engine's messages and synced blocks from conformance runs, peer
//! frames, signed-request headers, health-record operations and queries, and requests to every
//! route of the API, each in its target's input format (see `fuzz/fuzz_targets/`). The test
//! fails when the checked-in corpus differs from what the encodings give now; run it with
//! `MEDCHAIN_BLESS=1` to write the corpus again.

use medchain_app::signed::{body_digest, request_bytes, DOMAIN_REQUEST};
use medchain_consensus::conformance::{self, Harness};
use medchain_ehr::chaincode::{DocKind, HospitalProfile, Scope};
use medchain_ehr::{Ehr, EhrOp, EhrQuery, SealedNote, WrappedKey};
use medchain_node::runtime::NodeWire;
use medchain_types::{codec, sha256, Block, Certificate, SecretKey, Transaction};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

type Corpus = BTreeMap<(&'static str, String), Vec<u8>>;

fn field(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u16::try_from(bytes.len()).expect("a seed field under 64 KiB");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

/// Party `i` of the chaincode targets (`medchain_fuzz::party`).
fn party(i: u8) -> SecretKey {
    SecretKey::from_seed([0xa0 + i; 32])
}

/// Runs `h` until every validator has two blocks past genesis, of three transactions each.
fn two_blocks(h: &mut Harness<'_>) {
    for wave in 1..=2u64 {
        h.submit((3 * wave..3 * wave + 3).map(conformance::test_tx));
        let past_genesis = wave as usize;
        assert!(
            h.run_until(60_000, |h| (0..4).all(|i| h.chain(i).len() > past_genesis)),
            "block {wave}"
        );
    }
}

fn engine_seeds(corpus: &mut Corpus, name: &'static str, factory: conformance::Factory<'_>) {
    let mut h = Harness::new(4, factory);
    h.record_messages();
    two_blocks(&mut h);
    let index = |k| {
        (0..4)
            .position(|i| conformance::validator_key(i).public() == k)
            .expect("a validator") as u8
    };
    // One message per seed for the first of each kind, then the first messages in order.
    let mut kinds = BTreeMap::new();
    for (from, bytes) in h.messages() {
        kinds
            .entry(bytes.first().copied())
            .or_insert((*from, bytes));
    }
    for (me, (kind, (from, bytes))) in kinds.into_iter().enumerate() {
        let mut seed = vec![me as u8 % 4, 0, 10, 0, index(from)];
        field(&mut seed, bytes);
        corpus.insert((name, format!("message-{}", kind.unwrap_or(0))), seed);
    }
    for me in 0..4u8 {
        let mut seed = vec![me];
        for (from, bytes) in h
            .messages()
            .iter()
            .filter(|(f, _)| index(*f) != me)
            .take(24)
        {
            seed.extend_from_slice(&[0, 5, 0, index(*from)]);
            field(&mut seed, bytes);
        }
        corpus.insert((name, format!("round-{me}")), seed);
    }
    let mut synced = vec![1];
    for (block, cert) in h.chain(0).iter().skip(1).take(3) {
        synced.extend_from_slice(&[0, 5, 1]);
        field(&mut synced, &codec::encode(block));
        field(&mut synced, &cert.0);
    }
    corpus.insert((name, "synced".into()), synced);
}

fn chain_of_pbft() -> Vec<(Block, Certificate)> {
    let factory = |ctx| -> Box<dyn medchain_consensus::Engine> {
        Box::new(medchain_pbft::Pbft::new(ctx, Default::default()))
    };
    let mut h = Harness::new(4, &factory);
    two_blocks(&mut h);
    h.chain(0).to_vec()
}

/// The text of the seeds' sealed note, for the patient (party 3) and the hospital (party 1).
const NOTE: &str = "follow-up of a fracture";

/// A checked-in seed of the `ehr` target: its bytes after the `[party, step]` prefix and the
/// length of its first field.
fn checked_in(name: &str) -> Option<Vec<u8>> {
    let bytes = std::fs::read(seeds_dir().join("ehr").join(name)).ok()?;
    Some(bytes.get(4..)?.to_vec())
}

/// The seeds' sealed note: the checked-in one while it opens (sealing is randomized, so a new
/// one would change every seed that carries it), else a new one.
fn note() -> SealedNote {
    let stored = checked_in("note")
        .and_then(|json| serde_json::from_slice::<SealedNote>(&json).ok())
        .filter(|n| n.open(&party(3)).ok().as_deref() == Some(NOTE));
    stored.unwrap_or_else(|| {
        SealedNote::seal(NOTE, &[party(3).public(), party(1).public()]).expect("a note")
    })
}

/// The seeds' wrapped key list and its context, the checked-in one while it unwraps.
fn wrapped_keys() -> (Vec<u8>, &'static [u8]) {
    const CONTEXT: &[u8] = b"doc/d1";
    let stored = checked_in("keys").and_then(|rest| {
        let json = rest
            .get(..rest.len().checked_sub(2 + CONTEXT.len())?)?
            .to_vec();
        let keys: Vec<WrappedKey> = serde_json::from_slice(&json).ok()?;
        let key = keys.first()?;
        medchain_ehr::unwrap_key(key, &party(1), CONTEXT).ok()?;
        Some(json)
    });
    let json = stored.unwrap_or_else(|| {
        let key = medchain_ehr::DocKey::generate();
        let wrapped = medchain_ehr::wrap_key(&key, &party(1).public(), CONTEXT).expect("wrapped");
        serde_json::to_vec(&[wrapped]).expect("JSON")
    });
    (json, CONTEXT)
}

/// The seeds' case and document ids (opaque, as nodes admit them for new records).
const CASE_ID: &str = "c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1";
const DOC_ID: &str = "d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1";

fn ehr_ops() -> Vec<(u8, EhrOp)> {
    let p = |i| party(i).public();
    let note = note();
    let doc = sha256(b"report");
    vec![
        (
            1,
            EhrOp::RegisterHospital(HospitalProfile {
                name: "St Mary".into(),
                address: "1 High Street".into(),
                contact: "desk".into(),
                treatments: vec!["cardiology".into()],
            }),
        ),
        (0, EhrOp::ApproveHospital { hospital: p(1) }),
        (
            1,
            EhrOp::RegisterDoctor {
                doctor: p(2),
                profile_commitment: sha256(b"doctor"),
            },
        ),
        (
            3,
            EhrOp::RegisterPatient {
                profile_commitment: sha256(b"patient"),
                profile_blob: Some(sha256(b"profile")),
            },
        ),
        (
            1,
            EhrOp::RequestAccessSealed {
                patient: p(3),
                purpose: note.clone(),
                scopes: vec![Scope::Cases],
            },
        ),
        (
            3,
            EhrOp::Grant {
                grantee: p(1),
                scopes: vec![Scope::Profile, Scope::Cases, Scope::Documents],
                write: true,
                expires_ms: 1_900_000_000_000,
            },
        ),
        (
            1,
            EhrOp::RecordCase {
                patient: p(3),
                case_id: CASE_ID.into(),
                blob: sha256(b"case"),
                content_sha256: sha256(b"case content"),
            },
        ),
        (
            2,
            EhrOp::IssueDocument {
                doc_id: DOC_ID.into(),
                patient: p(3),
                kind: DocKind::Report,
                plaintext_sha256: doc,
                blob: sha256(b"doc blob"),
                supersedes: None,
            },
        ),
        (
            2,
            EhrOp::ShareDocument {
                doc_id: DOC_ID.into(),
                holder: p(4),
                expires_ms: 1_900_000_000_000,
            },
        ),
        (
            2,
            EhrOp::LogRead {
                patient: p(3),
                object: format!("doc/{DOC_ID}"),
            },
        ),
        (
            2,
            EhrOp::BreakGlassSealed {
                patient: p(3),
                reason: note,
            },
        ),
        (0, EhrOp::AddVerifier { verifier: p(5) }),
        (3, EhrOp::Revoke { grantee: p(1) }),
        (1, EhrOp::RemoveDoctor { doctor: p(2) }),
        (0, EhrOp::SuspendHospital { hospital: p(1) }),
        (
            3,
            EhrOp::Erase {
                doc_id: DOC_ID.into(),
            },
        ),
    ]
}

fn ehr_queries() -> Vec<EhrQuery> {
    let p = |i| party(i).public();
    vec![
        EhrQuery::Grants(p(3)),
        EhrQuery::Audit(p(3)),
        EhrQuery::Requests(p(3)),
        EhrQuery::Documents(p(3)),
        EhrQuery::Users,
        EhrQuery::Roles(p(2)),
        EhrQuery::Document(DOC_ID.into()),
        EhrQuery::Verify {
            doc_id: Some(DOC_ID.into()),
            sha256: sha256(b"report"),
        },
        EhrQuery::Page {
            query: Box::new(EhrQuery::Patients),
            after: None,
            limit: 2,
        },
    ]
}

fn ehr_seeds(corpus: &mut Corpus) {
    let mut all = Vec::new();
    for (i, (who, op)) in ehr_ops().into_iter().enumerate() {
        let mut one = vec![who, 0];
        field(&mut one, &Ehr::payload(&op));
        all.extend_from_slice(&one);
        corpus.insert(("ehr", format!("op-{i:02}")), one);
    }
    corpus.insert(("ehr", "ops".into()), all.clone());
    for (i, q) in ehr_queries().iter().enumerate() {
        let mut seed = all.clone();
        seed.extend_from_slice(&[3, 3]);
        field(&mut seed, &serde_json::to_vec(q).expect("JSON"));
        seed.extend_from_slice(&[1, 2]);
        field(&mut seed, &Ehr::request(q));
        corpus.insert(("ehr", format!("query-{i}")), seed);
    }
    let mut seed = vec![3, 5];
    field(&mut seed, &serde_json::to_vec(&note()).expect("JSON"));
    corpus.insert(("ehr", "note".into()), seed);
    let (keys, context) = wrapped_keys();
    let mut seed = vec![1, 6];
    field(&mut seed, &keys);
    field(&mut seed, context);
    corpus.insert(("ehr", "keys".into()), seed);
}

fn signed_header_lines(
    key: &SecretKey,
    chain: &str,
    node: &medchain_types::PublicKey,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    created: u64,
) -> String {
    let nonce = hex::encode(sha256(path.as_bytes()).0)[..32].to_owned();
    let digest = body.map(body_digest).unwrap_or_default();
    let sig = key.sign(
        DOMAIN_REQUEST,
        chain,
        &request_bytes(method, path, created, &nonce, node, &digest),
    );
    format!(
        "x-medchain-key: {}\nx-medchain-created: {created}\nx-medchain-nonce: {nonce}\nx-medchain-signature: {}\n",
        key.public().to_hex(),
        sig.to_hex()
    )
}

fn signed_headers_seeds(corpus: &mut Corpus) {
    let node = SecretKey::from_seed([0x4e; 32]).public();
    let created = 1_800_000_000_000;
    for (name, method, path, body, covered) in [
        ("get", 0u8, "/api/v1/ehr/docs/d1/key", &b""[..], false),
        (
            "post",
            1,
            "/api/v1/ehr/query",
            &b"{\"Users\":null}"[..],
            true,
        ),
    ] {
        let m = ["GET", "POST", "PUT", "DELETE"][usize::from(method)];
        let mut seed = vec![method];
        field(&mut seed, path.as_bytes());
        field(&mut seed, body);
        let lines = signed_header_lines(
            &party(3),
            "fuzz",
            &node,
            m,
            path,
            covered.then_some(body),
            created,
        );
        seed.extend_from_slice(lines.as_bytes());
        corpus.insert(("signed_headers", name.into()), seed);
    }
}

fn api_seeds(corpus: &mut Corpus) {
    let apps = medchain::apps();
    let openapi: serde_json::Value =
        serde_json::from_str(&medchain_node::api::openapi_document(&apps)).expect("JSON");
    let paths = openapi["paths"].as_object().expect("paths");
    let mut routes: Vec<(String, String)> = paths
        .iter()
        .map(|(p, ops)| {
            let method = ops.as_object().and_then(|o| o.keys().next().cloned());
            (p.clone(), method.unwrap_or_else(|| "get".into()))
        })
        .collect();
    routes.extend(["/healthz", "/metrics", "/"].map(|p| (p.into(), "get".into())));
    let patient = party(3).public().to_hex();
    for (i, (route, method)) in routes.iter().enumerate() {
        let m = ["get", "post", "put", "delete"]
            .iter()
            .position(|x| x == method)
            .expect("a method") as u8;
        let mut seed = vec![m, i as u8];
        let mut rest = route.as_str();
        while let Some(open) = rest.find('{') {
            let close = rest[open..].find('}').expect("a closing brace") + open;
            let value = match &rest[open + 1..close] {
                "patient" | "key" => patient.clone(),
                "sha256" | "blob" | "hash" => sha256(b"report").to_hex(),
                "chaincode" => "ehr".into(),
                "height" | "id" if route.contains("/blocks/") => "1".into(),
                "case" => CASE_ID.into(),
                _ => DOC_ID.into(),
            };
            field(&mut seed, value.as_bytes());
            rest = &rest[close + 1..];
        }
        let query = if route.ends_with("/txs") {
            "wait=commit"
        } else {
            ""
        };
        field(&mut seed, query.as_bytes());
        // The patient signs (signer 3: the fuzz target's admin, hospital, doctor, patient, ...).
        seed.extend_from_slice(&[3, u8::from(route.ends_with("/query"))]);
        field(&mut seed, b"content-type: application/json");
        if route.ends_with("/query") {
            seed.extend_from_slice(
                &serde_json::to_vec(&EhrQuery::Grants(party(3).public())).expect("JSON"),
            );
        } else if route.ends_with("/unsigned") {
            seed.extend_from_slice(
                serde_json::json!({"sender": patient, "op": EhrOp::Revoke { grantee: party(1).public() }})
                    .to_string()
                    .as_bytes(),
            );
        } else if route.ends_with("/txs") {
            let tx = Transaction::signed("fuzz-api", "noop", vec![1], 7, &party(5));
            seed.extend_from_slice(&serde_json::to_vec(&tx).expect("JSON"));
        } else if method == "put" {
            seed.extend_from_slice(b"[]");
        }
        corpus.insert(("api", format!("route-{i:02}")), seed);
    }
}

fn corpus() -> Corpus {
    let mut corpus = Corpus::new();
    let chain = chain_of_pbft();
    let client = SecretKey::from_seed([0xc1; 32]);
    let ehr_tx = Transaction::signed("fuzz", "ehr", Ehr::payload(&ehr_ops()[0].1), 1, &party(1));
    let noop = Transaction::signed("fuzz", "noop", vec![1, 2, 3], 1, &client);
    corpus.insert(("tx", "noop".into()), codec::encode(&noop));
    corpus.insert(("tx", "ehr".into()), codec::encode(&ehr_tx));
    corpus.insert(
        ("tx", "list".into()),
        codec::encode(&vec![noop.clone(), ehr_tx.clone()]),
    );
    corpus.insert(
        ("tx", "json".into()),
        serde_json::to_vec(&noop).expect("JSON"),
    );
    for (block, _) in chain.iter().take(3) {
        corpus.insert(
            ("block", format!("height-{}", block.header.height)),
            block.encode(),
        );
    }
    engine_seeds(&mut corpus, "pbft", &|ctx| {
        Box::new(medchain_pbft::Pbft::new(ctx, Default::default()))
    });
    engine_seeds(&mut corpus, "pos", &|ctx| {
        Box::new(medchain_pos::Pos::new(ctx, Default::default()))
    });
    let pow = medchain_pow::PowConfig {
        block_interval: std::time::Duration::from_millis(50),
        initial_target: medchain_pow::PowConfig::target_for_hashes(16),
        max_target: medchain_pow::PowConfig::target_for_hashes(8),
        ..medchain_pow::PowConfig::default()
    };
    engine_seeds(&mut corpus, "pow", &|ctx| {
        Box::new(medchain_pow::Pow::new(ctx, pow.clone()))
    });
    let wires = [
        NodeWire::Consensus(vec![0, 1, 2]),
        NodeWire::Txs(vec![noop, ehr_tx]),
        NodeWire::BlockRequest { from_height: 1 },
        NodeWire::BlockResponse(chain[1..3].to_vec()),
    ];
    for (i, wire) in wires.iter().enumerate() {
        let payload = codec::encode(wire);
        let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&payload);
        let mut seed = Vec::new();
        let (a, b) = frame.split_at(frame.len() / 2);
        field(&mut seed, a);
        field(&mut seed, b);
        corpus.insert(("peer", format!("frame-{i}")), seed);
        corpus.insert(("peer", format!("wire-{i}")), payload);
    }
    signed_headers_seeds(&mut corpus);
    ehr_seeds(&mut corpus);
    api_seeds(&mut corpus);
    corpus
}

fn seeds_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds")
}

#[test]
fn the_checked_in_seed_corpus_is_what_the_encodings_give() {
    let corpus = corpus();
    let dir = seeds_dir();
    if std::env::var_os("MEDCHAIN_BLESS").is_some() {
        let _ = std::fs::remove_dir_all(&dir);
        for ((target, name), bytes) in &corpus {
            std::fs::create_dir_all(dir.join(target)).expect("a seed folder");
            std::fs::write(dir.join(target).join(name), bytes).expect("a seed");
        }
    }
    let mut on_disk = Corpus::new();
    for target in [
        "tx",
        "block",
        "pbft",
        "pos",
        "pow",
        "peer",
        "signed_headers",
        "ehr",
        "api",
    ] {
        for entry in std::fs::read_dir(dir.join(target)).expect("a seed folder per target") {
            let entry = entry.expect("an entry");
            on_disk.insert(
                (target, entry.file_name().to_string_lossy().into_owned()),
                std::fs::read(entry.path()).expect("a seed"),
            );
        }
    }
    let differ: std::collections::BTreeSet<_> = corpus
        .keys()
        .chain(on_disk.keys())
        .filter(|k| corpus.get(*k) != on_disk.get(*k))
        .collect();
    assert!(
        differ.is_empty(),
        "fuzz/seeds differs from the encodings at {differ:?}: run this test with MEDCHAIN_BLESS=1"
    );
}
