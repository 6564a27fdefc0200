//! The `ehr` chaincode's queries (`EhrQuery`), in canonical encoding or as JSON, and the
//! verdict on a file's hash.

use super::*;
use medchain_chaincode::{Entries, SCAN_LIMIT_MAX};

fn undecodable<T>(r: Result<T, codec::DecodeError>) -> Result<T, ChaincodeError> {
    r.map_err(|e| ChaincodeError::Storage(format!("undecodable ehr record: {e}")))
}

fn hospital_matches(h: &Hospital, needle: &str) -> bool {
    needle.is_empty()
        || h.profile.name.to_lowercase().contains(needle)
        || h.profile
            .treatments
            .iter()
            .any(|t| t.to_lowercase().contains(needle))
}

/// Every registered hospital, pending ones included, in key order, a page of the directory at
/// a time, until `f` returns false.
fn each_hospital(
    view: &dyn StateView,
    mut f: impl FnMut(Hospital) -> bool,
) -> Result<(), ChaincodeError> {
    let mut after: Option<Vec<u8>> = None;
    loop {
        let rows = view.scan(b"hospital/", after.as_deref(), SCAN_LIMIT_MAX)?;
        let done = rows.len() < SCAN_LIMIT_MAX;
        after = rows.last().map(|(k, _)| k.clone());
        for (_, v) in rows {
            if !f(undecodable(codec::decode(&v))?) {
                return Ok(());
            }
        }
        if done {
            return Ok(());
        }
    }
}

/// The verifiers of rows under `verifier/`.
fn verifiers(rows: Entries) -> Vec<PublicKey> {
    rows.iter()
        .filter_map(|(k, _)| {
            std::str::from_utf8(&k[b"verifier/".len()..])
                .ok()?
                .parse()
                .ok()
        })
        .collect()
}

/// A query's variant name, for messages.
pub fn query_name(q: &EhrQuery) -> String {
    let v = serde_json::to_value(q).unwrap_or_default();
    match v {
        serde_json::Value::String(s) => s,
        serde_json::Value::Object(m) => m.keys().next().cloned().unwrap_or_default(),
        _ => String::new(),
    }
}

impl Ehr {
    pub(super) fn answer(
        &self,
        view: &dyn StateView,
        q: EhrQuery,
    ) -> Result<Vec<u8>, ChaincodeError> {
        Ok(match q {
            EhrQuery::Hospitals { search, pending } => {
                // Every registered hospital is looked at, so pending registrations (anyone may
                // register) cannot push the approved out of the answer; at most LIST_MAX hits.
                let needle = search.to_lowercase();
                let mut hits: Vec<Hospital> = Vec::new();
                each_hospital(view, |h| {
                    if (pending || h.approved) && hospital_matches(&h, &needle) {
                        hits.push(h);
                    }
                    hits.len() < LIST_MAX
                })?;
                codec::encode(&hits)
            }
            EhrQuery::Doctor(k) => codec::encode(&Self::doctor(view, &k)?),
            EhrQuery::Patient(k) => codec::encode(&Self::patient(view, &k).ok()),
            EhrQuery::Grants(p) => codec::encode(&list::<GrantRecord>(
                view,
                &key(&[b"grant", hex(&p).as_bytes(), b""]),
            )?),
            EhrQuery::Requests(p) => codec::encode(&list::<AccessRequest>(
                view,
                &key(&[b"request", hex(&p).as_bytes(), b""]),
            )?),
            EhrQuery::Cases(p) => codec::encode(&list::<CaseRecord>(
                view,
                &key(&[b"case", hex(&p).as_bytes(), b""]),
            )?),
            EhrQuery::Documents(p) => {
                let ids = view.scan(
                    &key(&[b"patientdoc", hex(&p).as_bytes(), b""]),
                    None,
                    LIST_MAX,
                )?;
                let mut docs = Vec::new();
                for (_, id) in ids {
                    if let Some(d) = get::<DocumentAnchor>(view, &key(&[b"doc", &id]))? {
                        docs.push(d);
                    }
                }
                codec::encode(&docs)
            }
            EhrQuery::Document(id) => codec::encode(&get::<DocumentAnchor>(
                view,
                &key(&[b"doc", id.as_bytes()]),
            )?),
            EhrQuery::Verify { sha256, doc_id } => {
                codec::encode(&Self::verify(view, &sha256, doc_id.as_deref())?)
            }
            EhrQuery::Audit(p) => codec::encode(&list::<AuditEvent>(
                view,
                &key(&[b"audit", hex(&p).as_bytes(), b""]),
            )?),
            EhrQuery::Anchors => {
                let docs: Vec<DocumentAnchor> = list(view, b"doc/")?;
                let cases: Vec<CaseRecord> = list(view, b"case/")?;
                let mut out: Vec<AnchoredBlob> = docs
                    .into_iter()
                    .map(|d| AnchoredBlob {
                        record: format!("doc/{}", d.doc_id),
                        patient: d.patient,
                        blob: d.blob,
                        erased: d.erased_ms.is_some(),
                    })
                    .collect();
                out.extend(cases.into_iter().map(|c| AnchoredBlob {
                    record: format!("case/{}", c.case_id),
                    patient: c.patient,
                    blob: c.blob,
                    erased: false,
                }));
                codec::encode(&out)
            }
            EhrQuery::Case { patient, case_id } => codec::encode(&get::<CaseRecord>(
                view,
                &key(&[b"case", hex(&patient).as_bytes(), case_id.as_bytes()]),
            )?),
            EhrQuery::BlobRecord(blob) => codec::encode(
                &view
                    .get(&key(&[b"blob", blob.to_hex().as_bytes()]))?
                    .map(|r| String::from_utf8_lossy(&r).into_owned()),
            ),
            EhrQuery::LastRead {
                patient,
                reader,
                object,
            } => codec::encode(&get::<u64>(
                view,
                &last_read_key(&patient, &reader, &object),
            )?),
            EhrQuery::AuditPage {
                patient,
                before,
                limit,
            } => {
                let prefix = key(&[b"audit", hex(&patient).as_bytes(), b""]);
                let start = before.map(|b| [prefix.as_slice(), b.as_bytes()].concat());
                let limit = (limit as usize).clamp(1, LIST_MAX);
                let rows = view.scan_back(&prefix, start.as_deref(), limit)?;
                let next = (rows.len() == limit)
                    .then(|| rows.last())
                    .flatten()
                    .map(|(k, _)| String::from_utf8_lossy(&k[prefix.len()..]).into_owned());
                let events = rows
                    .iter()
                    .map(|(_, v)| {
                        codec::decode(v).map_err(|e| {
                            ChaincodeError::Storage(format!("undecodable ehr record: {e}"))
                        })
                    })
                    .collect::<Result<_, _>>()?;
                codec::encode(&AuditPage { events, next })
            }
            EhrQuery::Shares(id) => codec::encode(&list::<ShareRecord>(
                view,
                &key(&[b"share", id.as_bytes(), b""]),
            )?),
            EhrQuery::Users => codec::encode(&Users {
                hospitals: list(view, b"hospital/")?,
                doctors: list(view, b"doctor/")?,
                patients: list(view, b"patient/")?,
            }),
            EhrQuery::Access {
                patient,
                actor,
                scope,
                write,
                now_ms,
            } => codec::encode(&Self::access(view, &patient, &actor, scope, write, now_ms).is_ok()),
            EhrQuery::Hospital(k) => codec::encode(&Self::hospital(view, &k)?),
            EhrQuery::Roles(k) => codec::encode(&self.roles(view, &k)?),
            EhrQuery::Doctors => codec::encode(&list::<Doctor>(view, b"doctor/")?),
            EhrQuery::Patients => codec::encode(&list::<Patient>(view, b"patient/")?),
            EhrQuery::Verifiers => {
                codec::encode(&verifiers(view.scan(b"verifier/", None, LIST_MAX)?))
            }
            EhrQuery::Page {
                query,
                after,
                limit,
            } => self.page(view, *query, after, limit)?,
        })
    }

    /// The roles of `k`.
    pub fn roles(&self, view: &dyn StateView, k: &PublicKey) -> Result<Roles, ChaincodeError> {
        Ok(Roles {
            administrator: self.admins.contains(k),
            verifier: view.get(&key_of_verifier(k))?.is_some(),
            hospital: Self::hospital(view, k)?.map(|h| h.approved),
            doctor: Self::doctor(view, k)?.map(|d| d.hospital),
            patient: view.get(&key_of_patient(k))?.is_some(),
        })
    }

    /// A page of a list query (see [`EhrQuery::Page`]).
    fn page(
        &self,
        view: &dyn StateView,
        query: EhrQuery,
        after: Option<String>,
        limit: u32,
    ) -> Result<Vec<u8>, ChaincodeError> {
        let limit = (limit as usize).clamp(1, LIST_MAX);
        let after = match after {
            Some(a) => Some(
                hex::decode(&a)
                    .map_err(|_| ChaincodeError::BadRequest("a page cursor is hex".into()))?,
            ),
            None => None,
        };
        // The rows after the cursor under `prefix`, and the next cursor (the last row's key
        // without the prefix, in hex) when the page is full.
        let rows = |prefix: &[u8]| -> Result<(Entries, Option<String>), ChaincodeError> {
            let start = after.as_ref().map(|a| [prefix, a.as_slice()].concat());
            let rows = view.scan(prefix, start.as_deref(), limit)?;
            let next = (rows.len() == limit)
                .then(|| rows.last())
                .flatten()
                .map(|(k, _)| hex::encode(&k[prefix.len()..]));
            Ok((rows, next))
        };
        fn decoded<T: serde::de::DeserializeOwned>(
            rows: Entries,
        ) -> Result<Vec<T>, ChaincodeError> {
            rows.iter()
                .map(|(_, v)| undecodable(codec::decode(v)))
                .collect()
        }
        fn out<T: Serialize>(items: Vec<T>, next: Option<String>) -> Vec<u8> {
            codec::encode(&ListPage { items, next })
        }
        let per_patient = |what: &[u8], p: &PublicKey| key(&[what, hex(p).as_bytes(), b""]);
        Ok(match query {
            EhrQuery::Hospitals { search, pending } => {
                let needle = search.to_lowercase();
                let (rows, next) = rows(b"hospital/")?;
                let hits: Vec<Hospital> = decoded::<Hospital>(rows)?
                    .into_iter()
                    .filter(|h| (pending || h.approved) && hospital_matches(h, &needle))
                    .collect();
                out(hits, next)
            }
            EhrQuery::Doctors => {
                let (rows, next) = rows(b"doctor/")?;
                out(decoded::<Doctor>(rows)?, next)
            }
            EhrQuery::Patients => {
                let (rows, next) = rows(b"patient/")?;
                out(decoded::<Patient>(rows)?, next)
            }
            EhrQuery::Verifiers => {
                let (rows, next) = rows(b"verifier/")?;
                out(verifiers(rows), next)
            }
            EhrQuery::Grants(p) => {
                let (rows, next) = rows(&per_patient(b"grant", &p))?;
                out(decoded::<GrantRecord>(rows)?, next)
            }
            EhrQuery::Requests(p) => {
                let (rows, next) = rows(&per_patient(b"request", &p))?;
                out(decoded::<AccessRequest>(rows)?, next)
            }
            EhrQuery::Cases(p) => {
                let (rows, next) = rows(&per_patient(b"case", &p))?;
                out(decoded::<CaseRecord>(rows)?, next)
            }
            EhrQuery::Audit(p) => {
                let (rows, next) = rows(&per_patient(b"audit", &p))?;
                out(decoded::<AuditEvent>(rows)?, next)
            }
            EhrQuery::Shares(id) => {
                let (rows, next) = rows(&key(&[b"share", id.as_bytes(), b""]))?;
                out(decoded::<ShareRecord>(rows)?, next)
            }
            EhrQuery::Documents(p) => {
                let (rows, next) = rows(&per_patient(b"patientdoc", &p))?;
                let mut docs = Vec::new();
                for (_, id) in rows {
                    docs.extend(get::<DocumentAnchor>(view, &key(&[b"doc", &id]))?);
                }
                out(docs, next)
            }
            EhrQuery::Anchors => {
                let (rows, next) = rows(b"blob/")?;
                let mut anchors = Vec::new();
                for (k, record) in rows {
                    let blob = std::str::from_utf8(&k[b"blob/".len()..])
                        .ok()
                        .and_then(|h| h.parse::<Hash>().ok());
                    let record = String::from_utf8_lossy(&record).into_owned();
                    let Some(blob) = blob else { continue };
                    anchors.extend(Self::anchored(view, blob, record)?);
                }
                out(anchors, next)
            }
            other => {
                return Err(ChaincodeError::BadRequest(format!(
                    "{} is not a list query",
                    query_name(&other)
                )))
            }
        })
    }

    /// The approved hospitals among `candidates` whose name or treatments contain `search`
    /// (case-insensitive), each read again from `view`, in key order, at most [`LIST_MAX`]:
    /// the answer to `Hospitals { pending: false }`, at the cost of the candidates alone. A
    /// node keeps the candidates (every approved hospital, see
    /// [`Ehr::approved_hospitals`]) so that a search does not read the pending registrations
    /// anyone may add.
    pub fn search_hospitals<'a>(
        view: &dyn StateView,
        candidates: impl IntoIterator<Item = &'a PublicKey>,
        search: &str,
    ) -> Result<Vec<Hospital>, ChaincodeError> {
        let needle = search.to_lowercase();
        let mut keys: Vec<&PublicKey> = candidates.into_iter().collect();
        keys.sort_unstable();
        keys.dedup();
        let mut hits = Vec::new();
        for k in keys {
            if hits.len() >= LIST_MAX {
                break;
            }
            match Self::hospital(view, k)? {
                Some(h) if h.approved && hospital_matches(&h, &needle) => hits.push(h),
                _ => {}
            }
        }
        Ok(hits)
    }

    /// The keys of every approved hospital (one scan of the whole directory, pending
    /// registrations included: for building an index once, not per request).
    pub fn approved_hospitals(view: &dyn StateView) -> Result<Vec<PublicKey>, ChaincodeError> {
        let mut keys = Vec::new();
        each_hospital(view, |h| {
            if h.approved {
                keys.push(h.key);
            }
            true
        })?;
        Ok(keys)
    }

    /// The anchored blob `blob` of `record` (`profile/<patient>`, `case/<patient>/<id>`,
    /// `doc/<id>`), with its patient and whether it was erased.
    fn anchored(
        view: &dyn StateView,
        blob: Hash,
        record: String,
    ) -> Result<Option<AnchoredBlob>, ChaincodeError> {
        let mut parts = record.splitn(3, '/');
        let (kind, first) = (parts.next(), parts.next());
        let patient = |h: Option<&str>| h.and_then(|h| h.parse::<PublicKey>().ok());
        Ok(match kind {
            Some("profile") | Some("case") => patient(first).map(|patient| AnchoredBlob {
                record: record.clone(),
                patient,
                blob,
                erased: false,
            }),
            Some("doc") => first
                .map(|id| get::<DocumentAnchor>(view, &key(&[b"doc", id.as_bytes()])))
                .transpose()?
                .flatten()
                .map(|d| AnchoredBlob {
                    record: record.clone(),
                    patient: d.patient,
                    blob,
                    erased: d.erased_ms.is_some(),
                }),
            _ => None,
        })
    }

    /// Answers a query as JSON (for the HTTP API and the CLI).
    pub fn query_json(
        &self,
        view: &dyn StateView,
        q: &EhrQuery,
    ) -> Result<serde_json::Value, ChaincodeError> {
        fn j<T: serde::de::DeserializeOwned + Serialize>(
            b: &[u8],
        ) -> Result<serde_json::Value, ChaincodeError> {
            let v: T = codec::decode(b).map_err(|e| ChaincodeError::Storage(e.to_string()))?;
            serde_json::to_value(v).map_err(|e| ChaincodeError::Storage(e.to_string()))
        }
        let b = self.answer(view, q.clone())?;
        match q {
            EhrQuery::Hospitals { .. } => j::<Vec<Hospital>>(&b),
            EhrQuery::Doctor(_) => j::<Option<Doctor>>(&b),
            EhrQuery::Patient(_) => j::<Option<Patient>>(&b),
            EhrQuery::Grants(_) => j::<Vec<GrantRecord>>(&b),
            EhrQuery::Requests(_) => j::<Vec<AccessRequest>>(&b),
            EhrQuery::Cases(_) => j::<Vec<CaseRecord>>(&b),
            EhrQuery::Documents(_) => j::<Vec<DocumentAnchor>>(&b),
            EhrQuery::Document(_) => j::<Option<DocumentAnchor>>(&b),
            EhrQuery::Verify { .. } => j::<Verdict>(&b),
            EhrQuery::Audit(_) => j::<Vec<AuditEvent>>(&b),
            EhrQuery::Users => j::<Users>(&b),
            EhrQuery::Shares(_) => j::<Vec<ShareRecord>>(&b),
            EhrQuery::Case { .. } => j::<Option<CaseRecord>>(&b),
            EhrQuery::BlobRecord(_) => j::<Option<String>>(&b),
            EhrQuery::LastRead { .. } => j::<Option<u64>>(&b),
            EhrQuery::AuditPage { .. } => j::<AuditPage>(&b),
            EhrQuery::Anchors => j::<Vec<AnchoredBlob>>(&b),
            EhrQuery::Access { .. } => j::<bool>(&b),
            EhrQuery::Hospital(_) => j::<Option<Hospital>>(&b),
            EhrQuery::Roles(_) => j::<Roles>(&b),
            EhrQuery::Doctors => j::<Vec<Doctor>>(&b),
            EhrQuery::Patients => j::<Vec<Patient>>(&b),
            EhrQuery::Verifiers => j::<Vec<PublicKey>>(&b),
            EhrQuery::Page { query, .. } => match query.as_ref() {
                EhrQuery::Hospitals { .. } => j::<ListPage<Hospital>>(&b),
                EhrQuery::Doctors => j::<ListPage<Doctor>>(&b),
                EhrQuery::Patients => j::<ListPage<Patient>>(&b),
                EhrQuery::Verifiers => j::<ListPage<PublicKey>>(&b),
                EhrQuery::Grants(_) => j::<ListPage<GrantRecord>>(&b),
                EhrQuery::Requests(_) => j::<ListPage<AccessRequest>>(&b),
                EhrQuery::Cases(_) => j::<ListPage<CaseRecord>>(&b),
                EhrQuery::Audit(_) => j::<ListPage<AuditEvent>>(&b),
                EhrQuery::Shares(_) => j::<ListPage<ShareRecord>>(&b),
                EhrQuery::Documents(_) => j::<ListPage<DocumentAnchor>>(&b),
                _ => j::<ListPage<AnchoredBlob>>(&b),
            },
        }
    }

    /// The verdict on a file hash (and the document it claims to be).
    pub fn verify(
        view: &dyn StateView,
        sha256: &Hash,
        doc_id: Option<&str>,
    ) -> Result<Verdict, ChaincodeError> {
        if let Some(id) = doc_id {
            return Ok(
                match get::<DocumentAnchor>(view, &key(&[b"doc", id.as_bytes()]))? {
                    None => Verdict::Unknown,
                    Some(d) if d.plaintext_sha256 == *sha256 => Verdict::Authentic(Box::new(d)),
                    Some(d) => Verdict::Tampered {
                        anchored: Box::new(d),
                        presented: *sha256,
                    },
                },
            );
        }
        let hits = view.scan(
            &key(&[b"dochash", sha256.to_hex().as_bytes(), b""]),
            None,
            1,
        )?;
        match hits.first() {
            Some((_, id)) => match get::<DocumentAnchor>(view, &key(&[b"doc", id]))? {
                Some(d) => Ok(Verdict::Authentic(Box::new(d))),
                None => Ok(Verdict::Unknown),
            },
            None => Ok(Verdict::Unknown),
        }
    }
}
