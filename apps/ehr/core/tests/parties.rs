//! Privacy of the `ehr` chaincode: free text sealed for its readers, queries answered to their
//! parties only, every list paged to its end, and the admission policy for new transactions.

mod common;

use common::*;
use medchain_chaincode::{Chaincode, ChaincodeError, Entries, StateView};
use medchain_ehr::chaincode::{AccessRequest, AuditEvent, DocKind, Hospital, Roles, Scope};
use medchain_ehr::{Ehr, EhrOp, EhrQuery, SealedNote};
use medchain_types::{sha256, PublicKey, SecretKey};
use serde_json::Value;

/// A consortium: an administrator, two approved hospitals each with a doctor, two patients,
/// a stranger; the first patient grants the first hospital its documents, and that hospital's
/// doctor issued one of them.
struct Fixture {
    t: T,
    admin: SecretKey,
    hosp: SecretKey,
    hosp2: SecretKey,
    doc: SecretKey,
    pat: SecretKey,
    pat2: SecretKey,
    stranger: SecretKey,
}

fn fixture() -> Fixture {
    let (admin, hosp, hosp2, doc, doc2, pat, pat2, stranger) =
        (k(1), k(2), k(3), k(4), k(5), k(6), k(7), k(8));
    let mut t = T::new(&admin);
    for (h, name, d) in [(&hosp, "St Mary", &doc), (&hosp2, "General", &doc2)] {
        t.approved_hospital(&admin, h, name);
        t.doctor(h, d);
    }
    for p in [&pat, &pat2] {
        t.tx(
            p,
            EhrOp::RegisterPatient {
                profile_commitment: sha256(b"p"),
                profile_blob: None,
            },
        )
        .unwrap();
    }
    for h in [&hosp, &hosp2] {
        t.tx(
            &pat,
            EhrOp::Grant {
                grantee: h.public(),
                scopes: vec![Scope::Documents],
                write: true,
                expires_ms: 10_000_000_000,
            },
        )
        .unwrap();
    }
    t.tx(
        &doc,
        EhrOp::IssueDocument {
            doc_id: "rx-1".into(),
            patient: pat.public(),
            kind: DocKind::Prescription,
            plaintext_sha256: sha256(b"rx-1"),
            blob: sha256(b"blob rx-1"),
            supersedes: None,
        },
    )
    .unwrap();
    Fixture {
        t,
        admin,
        hosp,
        hosp2,
        doc,
        pat,
        pat2,
        stranger,
    }
}

impl Fixture {
    fn ask(&self, caller: Option<&SecretKey>, q: EhrQuery) -> Result<Value, ChaincodeError> {
        let caller = caller.map(SecretKey::public);
        self.t
            .cc
            .query_for(&self.t.w, caller.as_ref(), &q, self.t.w.time_ms)
    }
}

fn refused(r: Result<Value, ChaincodeError>) -> bool {
    matches!(r, Err(ChaincodeError::Forbidden(_)))
}

#[test]
fn free_text_is_sealed_for_the_patient_and_clear_text_is_not_admitted() {
    let mut f = fixture();
    let (pat, hosp, doc, stranger) = (
        f.pat.clone(),
        f.hosp.clone(),
        f.doc.clone(),
        f.stranger.clone(),
    );
    let sealed = |text: &str, readers: &[PublicKey]| SealedNote::seal(text, readers).unwrap();
    // A purpose sealed for the hospital alone is refused: the patient must be able to read it.
    assert!(matches!(
        f.t.tx(
            &hosp,
            EhrOp::RequestAccessSealed {
                patient: pat.public(),
                purpose: sealed("cardiology follow-up", &[hosp.public()]),
                scopes: vec![Scope::Cases],
            }
        ),
        Err(ChaincodeError::BadRequest(_))
    ));
    f.t.tx(
        &hosp,
        EhrOp::RequestAccessSealed {
            patient: pat.public(),
            purpose: sealed("cardiology follow-up", &[pat.public(), hosp.public()]),
            scopes: vec![Scope::Cases],
        },
    )
    .unwrap();
    let requests: Vec<AccessRequest> = f.t.q(EhrQuery::Requests(pat.public()));
    let stored = &requests[0].purpose;
    assert!(!stored.contains("cardiology"), "{stored}");
    let note = SealedNote::from_field(stored).expect("a sealed note");
    assert_eq!(note.open(&pat).unwrap(), "cardiology follow-up");
    assert_eq!(note.open(&hosp).unwrap(), "cardiology follow-up");
    assert!(note.open(&stranger).is_err());

    f.t.tx(
        &doc,
        EhrOp::BreakGlassSealed {
            patient: pat.public(),
            reason: sealed("unconscious in A&E", &[pat.public(), doc.public()]),
        },
    )
    .unwrap();
    let log: Vec<AuditEvent> = f.t.q(EhrQuery::Audit(pat.public()));
    let glass = log.iter().find(|e| e.object == "break-glass").unwrap();
    assert!(glass.flagged && !glass.note.contains("A&E"));
    assert_eq!(
        SealedNote::from_field(&glass.note)
            .unwrap()
            .open(&pat)
            .unwrap(),
        "unconscious in A&E"
    );

    // The admission policy: no clear text, nothing that is not an operation; the old forms
    // still execute (old blocks replay), as the chaincode tests of them show.
    let cc = &f.t.cc;
    assert!(cc.private(), "the raw chain routes serve none of it");
    let screen = |op: &EhrOp| cc.screen(&Ehr::payload(op));
    assert!(screen(&EhrOp::RequestAccess {
        patient: pat.public(),
        purpose: "in clear".into(),
        scopes: vec![Scope::Cases],
    })
    .is_err());
    assert!(screen(&EhrOp::RequestAccess {
        patient: pat.public(),
        purpose: String::new(),
        scopes: vec![Scope::Cases],
    })
    .is_ok());
    assert!(screen(&EhrOp::BreakGlass {
        patient: pat.public(),
        reason: "in clear".into(),
    })
    .is_err());
    assert!(screen(&EhrOp::BreakGlassSealed {
        patient: pat.public(),
        reason: sealed("x", &[pat.public()]),
    })
    .is_ok());
    assert!(cc.screen(b"\x01garbage").is_err());

    // New case and document ids are opaque: 128 random bits in hex, nothing a person wrote.
    let case = |id: &str| EhrOp::RecordCase {
        patient: pat.public(),
        case_id: id.into(),
        blob: sha256(b"blob"),
        content_sha256: sha256(b"content"),
    };
    let doc = |id: &str| EhrOp::IssueDocument {
        doc_id: id.into(),
        patient: pat.public(),
        kind: DocKind::Report,
        plaintext_sha256: sha256(b"text"),
        blob: sha256(b"blob"),
        supersedes: Some("an-older-title".into()),
    };
    let new = medchain_ehr::records::new_id();
    assert!(screen(&case(&new)).is_ok() && screen(&doc(&new)).is_ok());
    for named in ["hiv-test-2026", "c1", &new.to_uppercase(), &new[1..]] {
        assert!(screen(&case(named)).is_err(), "{named}");
        assert!(screen(&doc(named)).is_err(), "{named}");
    }
}

/// Reads of a state, counted.
struct Counted<'a> {
    state: &'a dyn StateView,
    reads: std::cell::Cell<usize>,
}

impl StateView for Counted<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ChaincodeError> {
        self.reads.set(self.reads.get() + 1);
        self.state.get(key)
    }
    fn scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, ChaincodeError> {
        let rows = self.state.scan(prefix, after, limit)?;
        self.reads.set(self.reads.get() + rows.len().max(1));
        Ok(rows)
    }
    fn scan_back(
        &self,
        prefix: &[u8],
        before: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, ChaincodeError> {
        let rows = self.state.scan_back(prefix, before, limit)?;
        self.reads.set(self.reads.get() + rows.len().max(1));
        Ok(rows)
    }
}

/// Anyone may register a hospital, so the directory may hold any number of pending ones. The
/// search over an index of the approved hospitals answers exactly as the query over the whole
/// directory, reading the candidates only: 10,000 pending registrations cost it nothing.
#[test]
fn the_hospital_search_from_an_index_reads_the_approved_only() {
    let admin = k(1);
    let mut t = T::new(&admin);
    for i in 0..10_000u32 {
        let mut seed = [0x77; 32];
        seed[..4].copy_from_slice(&i.to_le_bytes());
        let name = format!("Pending Cardiology {i}");
        t.tx(
            &SecretKey::from_seed(seed),
            EhrOp::RegisterHospital(profile(&name)),
        )
        .unwrap();
    }
    let (a, b, gone) = (k(2), k(3), k(4));
    t.approved_hospital(&admin, &a, "Riverside Cardiology");
    t.approved_hospital(&admin, &b, "Hillside Paediatrics");
    t.approved_hospital(&admin, &gone, "Closed Cardiology");
    t.tx(
        &admin,
        EhrOp::SuspendHospital {
            hospital: gone.public(),
        },
    )
    .unwrap();
    let index = Ehr::approved_hospitals(&t.w).unwrap();
    assert_eq!(index.len(), 2);
    // A stale candidate (suspended since it was indexed) is read again and left out.
    let candidates: Vec<PublicKey> = index.iter().copied().chain([gone.public()]).collect();
    for search in ["", "cardio", "PAEDIATRICS", "nothing"] {
        let whole: Vec<Hospital> = t.q(EhrQuery::Hospitals {
            search: search.into(),
            pending: false,
        });
        let counted = Counted {
            state: &t.w,
            reads: std::cell::Cell::new(0),
        };
        let hits = Ehr::search_hospitals(&counted, &candidates, search).unwrap();
        assert_eq!(hits, whole, "{search:?}");
        assert_eq!(counted.reads.get(), candidates.len(), "{search:?}");
    }
}

#[test]
fn queries_are_answered_to_their_parties_only() {
    let mut f = fixture();
    let (admin, hosp, hosp2, doc, pat, pat2, stranger) = (
        f.admin.clone(),
        f.hosp.clone(),
        f.hosp2.clone(),
        f.doc.clone(),
        f.pat.clone(),
        f.pat2.clone(),
        f.stranger.clone(),
    );
    let p = pat.public();
    // Anonymous: the directory and the anchors without their patient, nothing about people.
    for q in [
        EhrQuery::Grants(p),
        EhrQuery::Requests(p),
        EhrQuery::Audit(p),
        EhrQuery::Users,
        EhrQuery::Patient(p),
        EhrQuery::Documents(p),
        EhrQuery::Anchors,
        EhrQuery::Roles(p),
    ] {
        assert!(refused(f.ask(None, q.clone())), "{q:?}");
        assert!(refused(f.ask(Some(&stranger), q.clone())), "{q:?}");
    }
    assert!(f
        .ask(
            None,
            EhrQuery::Hospitals {
                search: String::new(),
                pending: false
            }
        )
        .is_ok());
    assert!(refused(f.ask(
        None,
        EhrQuery::Hospitals {
            search: String::new(),
            pending: true
        }
    )));
    let anon = f.ask(None, EhrQuery::Document("rx-1".into())).unwrap();
    assert!(anon.get("patient").is_none() && anon["issuer"] == doc.public().to_hex());
    let verdict = f
        .ask(
            None,
            EhrQuery::Verify {
                sha256: sha256(b"rx-1"),
                doc_id: None,
            },
        )
        .unwrap();
    assert!(!verdict.to_string().contains(&p.to_hex()), "{verdict}");
    assert!(verdict["Authentic"]["issuer"].is_string());
    // Parties.
    let issuer = f
        .ask(Some(&doc), EhrQuery::Document("rx-1".into()))
        .unwrap();
    assert_eq!(issuer["patient"], p.to_hex());
    let grants = f.ask(Some(&pat), EhrQuery::Grants(p)).unwrap();
    assert_eq!(grants.as_array().unwrap().len(), 2, "the patient sees all");
    for who in [&hosp, &doc] {
        let own = f.ask(Some(who), EhrQuery::Grants(p)).unwrap();
        let own = own.as_array().unwrap();
        assert_eq!(
            own.len(),
            1,
            "a hospital (and its doctor) sees its own grant only"
        );
        assert_eq!(own[0]["grantee"], hosp.public().to_hex());
    }
    assert!(f.ask(Some(&doc), EhrQuery::Documents(p)).is_ok());
    assert!(refused(
        f.ask(Some(&doc), EhrQuery::Documents(pat2.public()))
    ));
    assert!(refused(f.ask(Some(&pat2), EhrQuery::Documents(p))));
    assert!(refused(f.ask(Some(&hosp), EhrQuery::Audit(p))));
    assert!(f.ask(Some(&pat), EhrQuery::Audit(p)).is_ok());
    assert!(refused(f.ask(Some(&pat), EhrQuery::Users)));
    assert!(f.ask(Some(&admin), EhrQuery::Users).is_ok());
    // A revoked grant ends the hospital's view of the documents.
    f.t.tx(
        &pat,
        EhrOp::Revoke {
            grantee: hosp.public(),
        },
    )
    .unwrap();
    assert!(refused(f.ask(Some(&doc), EhrQuery::Documents(p))));
    assert!(f.ask(Some(&hosp2), EhrQuery::Documents(p)).is_ok());

    // Verifiers: appointed and dismissed by administrators; they list the anchors.
    let verifier = k(30);
    assert!(forbidden(f.t.tx(
        &hosp,
        EhrOp::AddVerifier {
            verifier: verifier.public()
        }
    )));
    assert!(refused(f.ask(Some(&verifier), EhrQuery::Anchors)));
    f.t.tx(
        &admin,
        EhrOp::AddVerifier {
            verifier: verifier.public(),
        },
    )
    .unwrap();
    let anchors = f.ask(Some(&verifier), EhrQuery::Anchors).unwrap();
    assert_eq!(anchors.as_array().unwrap().len(), 1);
    let roles: Roles = f.t.q(EhrQuery::Roles(verifier.public()));
    assert!(roles.verifier && !roles.administrator);
    f.t.tx(
        &admin,
        EhrOp::RemoveVerifier {
            verifier: verifier.public(),
        },
    )
    .unwrap();
    assert!(refused(f.ask(Some(&verifier), EhrQuery::Anchors)));
}

#[test]
fn every_list_pages_to_its_end() {
    let mut f = fixture();
    let admin = f.admin.clone();
    for i in 0..2_500u32 {
        let mut seed = [9u8; 32];
        seed[..4].copy_from_slice(&i.to_le_bytes());
        f.t.tx(
            &SecretKey::from_seed(seed),
            EhrOp::RegisterPatient {
                profile_commitment: sha256(b"p"),
                profile_blob: None,
            },
        )
        .unwrap();
    }
    let page = |f: &Fixture, after: Option<String>| {
        f.ask(
            Some(&admin),
            EhrQuery::Page {
                query: Box::new(EhrQuery::Patients),
                after,
                limit: 1000,
            },
        )
        .unwrap()
    };
    let mut seen = std::collections::BTreeSet::new();
    let mut after = None;
    let mut pages = 0;
    loop {
        let p = page(&f, after);
        pages += 1;
        for item in p["items"].as_array().unwrap() {
            assert!(seen.insert(item["key"].as_str().unwrap().to_owned()));
        }
        match p["next"].as_str() {
            Some(n) => after = Some(n.to_owned()),
            None => break,
        }
    }
    assert_eq!((seen.len(), pages), (2_502, 3));
    // A hospital's page of grants shows its own, however the page falls.
    let hosp = f.hosp.clone();
    let pat = f.pat.public();
    let own = f
        .ask(
            Some(&hosp),
            EhrQuery::Page {
                query: Box::new(EhrQuery::Grants(pat)),
                after: None,
                limit: 5,
            },
        )
        .unwrap();
    assert_eq!(own["items"].as_array().unwrap().len(), 1);
    for bad in [
        EhrQuery::Page {
            query: Box::new(EhrQuery::Users),
            after: None,
            limit: 5,
        },
        EhrQuery::Page {
            query: Box::new(EhrQuery::Patients),
            after: Some("not hex".into()),
            limit: 5,
        },
    ] {
        assert!(matches!(
            f.ask(Some(&admin), bad),
            Err(ChaincodeError::BadRequest(_))
        ));
    }
    assert!(matches!(
        f.ask(
            Some(&admin),
            EhrQuery::Page {
                query: Box::new(EhrQuery::Page {
                    query: Box::new(EhrQuery::Patients),
                    after: None,
                    limit: 5
                }),
                after: None,
                limit: 5,
            }
        ),
        Err(ChaincodeError::BadRequest(_))
    ));
}
