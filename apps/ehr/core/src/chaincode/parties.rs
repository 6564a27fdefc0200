//! Who is answered what. The `ehr` queries about people are answered to the parties only: a
//! patient's grants, requests, cases, documents and audit log to the patient; what a hospital
//! was granted or asked, to that hospital (and its doctors); a record's contents to those the
//! patient's grants cover; the lists of users to the administrators; the anchors to the
//! verifiers. Anyone may search the approved hospitals, look up a doctor's hospital, and ask
//! whether a file is anchored, by whom and when, without learning whose it is.

use super::*;
use serde_json::Value;

/// What of an answer a caller is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shown {
    /// All of it.
    All,
    /// Of grants and requests, those of this hospital only.
    OwnOf(PublicKey),
    /// Document anchors without the patient's pseudonym.
    WithoutPatient,
}

/// Removes the patient's pseudonym from every document anchor in a JSON answer (an anchor, a
/// verdict, or a list of anchors).
pub fn strip_patient(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if m.contains_key("doc_id") && m.contains_key("plaintext_sha256") {
                m.remove("patient");
            }
            for (_, inner) in m.iter_mut() {
                strip_patient(inner);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(strip_patient),
        _ => {}
    }
}

impl Ehr {
    /// The JSON answer to `q` for `caller` (`None`: an anonymous caller) at `now_ms`, or
    /// `Forbidden` if the caller is not a party to what it asks (see the module docs).
    pub fn query_for(
        &self,
        view: &dyn StateView,
        caller: Option<&PublicKey>,
        q: &EhrQuery,
        now_ms: u64,
    ) -> Result<Value, ChaincodeError> {
        let shown = self.shown(view, caller, q, now_ms)?;
        if let Shown::OwnOf(h) = shown {
            // A patient's grant to a hospital, and a hospital's request to it, are one record
            // each: looked up directly, so that no list (nor a page cursor) shows another's.
            let (what, p) = match inner(q) {
                EhrQuery::Grants(p) => ("grant", p),
                EhrQuery::Requests(p) => ("request", p),
                other => {
                    return Err(ChaincodeError::Storage(format!(
                        "{} is not filtered by hospital",
                        query_name(other)
                    )))
                }
            };
            let k = key(&[what.as_bytes(), hex(p).as_bytes(), hex(&h).as_bytes()]);
            let own: Vec<Value> = match what {
                "grant" => get::<GrantRecord>(view, &k)?.map(serde_json::to_value),
                _ => get::<AccessRequest>(view, &k)?.map(serde_json::to_value),
            }
            .transpose()
            .map_err(|e| ChaincodeError::Storage(e.to_string()))?
            .into_iter()
            .collect();
            return Ok(match q {
                EhrQuery::Page { .. } => serde_json::json!({ "items": own, "next": null }),
                _ => Value::Array(own),
            });
        }
        let mut v = self.query_json(view, q)?;
        if shown == Shown::WithoutPatient {
            strip_patient(&mut v);
        }
        Ok(v)
    }

    /// The hospital `k` acts for: itself if it is an approved hospital, its hospital if it is a
    /// doctor of an approved one.
    fn acting_for(
        view: &dyn StateView,
        k: &PublicKey,
    ) -> Result<Option<PublicKey>, ChaincodeError> {
        let org = Self::doctor(view, k)?.map_or(*k, |d| d.hospital);
        Ok(Self::hospital(view, &org)?
            .filter(|h| h.approved)
            .map(|_| org))
    }

    fn shown(
        &self,
        view: &dyn StateView,
        caller: Option<&PublicKey>,
        q: &EhrQuery,
        now: u64,
    ) -> Result<Shown, ChaincodeError> {
        use EhrQuery as Q;
        let paged = matches!(q, Q::Page { .. });
        let q = inner(q);
        if matches!(q, Q::Page { .. }) {
            return Err(ChaincodeError::BadRequest("a page of a page".into()));
        }
        // A page's cursor is the key of the last row it scanned, pending hospitals included:
        // the directory is paged by administrators only (anyone searches it with `Hospitals`).
        if paged && matches!(q, Q::Hospitals { .. }) {
            let admin = caller.is_some_and(|c| self.admins.contains(c));
            if !admin {
                return Err(forbidden(
                    "pages of the hospital directory are for administrators: search it with \
                     Hospitals",
                ));
            }
        }
        // Public: the hospital directory, doctors' hospitals, and anchors without their patient.
        match q {
            Q::Hospitals { pending: false, .. } | Q::Hospital(_) | Q::Doctor(_) => {
                return Ok(Shown::All)
            }
            Q::Verify { .. } => return Ok(Shown::WithoutPatient),
            _ => {}
        }
        let Some(me) = caller else {
            if matches!(q, Q::Document(_)) {
                return Ok(Shown::WithoutPatient);
            }
            return Err(forbidden(format!(
                "{} is answered to its parties only: sign the query",
                query_name(q)
            )));
        };
        let me = *me;
        let admin = self.admins.contains(&me);
        let verifier = || -> Result<bool, ChaincodeError> {
            Ok(admin || view.get(&key_of_verifier(&me))?.is_some())
        };
        let reads =
            |p: &PublicKey, scope: Scope| Self::access(view, p, &me, scope, false, now).is_ok();
        let allowed = |ok: bool, who: &str| {
            if ok {
                Ok(Shown::All)
            } else {
                Err(forbidden(format!(
                    "{} is answered to {who} only",
                    query_name(q)
                )))
            }
        };
        match q {
            Q::Hospitals { .. } | Q::Doctors | Q::Patients | Q::Users => {
                allowed(admin, "administrators")
            }
            Q::Roles(k) => allowed(*k == me || admin, "the key itself and administrators"),
            Q::Verifiers | Q::Anchors | Q::BlobRecord(_) => {
                allowed(verifier()?, "verifiers and administrators")
            }
            Q::Patient(p) => allowed(
                *p == me
                    || admin
                    || [Scope::Profile, Scope::Cases, Scope::Documents]
                        .into_iter()
                        .any(|s| reads(p, s)),
                "the patient, administrators and those it granted access",
            ),
            Q::Grants(p) | Q::Requests(p) => {
                if *p == me {
                    return Ok(Shown::All);
                }
                match Self::acting_for(view, &me)? {
                    Some(h) => Ok(Shown::OwnOf(h)),
                    None => allowed(false, "the patient and the hospitals concerned"),
                }
            }
            Q::Cases(p) => allowed(
                *p == me || reads(p, Scope::Cases),
                "the patient and those its grants cover",
            ),
            Q::Documents(p) => allowed(
                *p == me || reads(p, Scope::Documents),
                "the patient and those its grants cover",
            ),
            Q::Case { patient, case_id } => {
                let case: Option<CaseRecord> = get(
                    view,
                    &key(&[b"case", hex(patient).as_bytes(), case_id.as_bytes()]),
                )?;
                let org = Self::acting_for(view, &me)?;
                let author = case.is_some_and(|c| c.author == me || Some(c.hospital) == org);
                allowed(
                    *patient == me || author || reads(patient, Scope::Cases),
                    "the patient, the case's hospital and those its grants cover",
                )
            }
            Q::Document(id) => {
                let d: Option<DocumentAnchor> = get(view, &key(&[b"doc", id.as_bytes()]))?;
                let Some(d) = d else { return Ok(Shown::All) };
                // A share-link holder while its link lives (as for reading the document).
                let party = d.patient == me
                    || d.issuer == me
                    || Self::acting_for(view, &me)? == Some(d.hospital)
                    || Self::access_object(view, &d.patient, &me, &format!("doc/{id}"), now)
                        .is_ok();
                Ok(if party {
                    Shown::All
                } else {
                    Shown::WithoutPatient
                })
            }
            Q::Shares(id) => {
                let d: Option<DocumentAnchor> = get(view, &key(&[b"doc", id.as_bytes()]))?;
                let party = match d {
                    Some(d) => {
                        d.patient == me
                            || d.issuer == me
                            || Self::acting_for(view, &me)? == Some(d.hospital)
                    }
                    None => false,
                };
                allowed(party, "the document's patient, issuer and hospital")
            }
            Q::Audit(p) | Q::AuditPage { patient: p, .. } => allowed(*p == me, "the patient"),
            Q::LastRead {
                patient, reader, ..
            } => allowed(
                *patient == me || *reader == me,
                "the patient and the reader",
            ),
            Q::Access { patient, actor, .. } => allowed(
                *patient == me || *actor == me || admin,
                "the patient, the actor and administrators",
            ),
            // Answered above.
            Q::Hospital(_) | Q::Doctor(_) | Q::Verify { .. } | Q::Page { .. } => Ok(Shown::All),
        }
    }
}

/// The list a page is of, or the query itself.
fn inner(q: &EhrQuery) -> &EhrQuery {
    match q {
        EhrQuery::Page { query, .. } => query,
        q => q,
    }
}
