//! The health-record app's commands: `medchain ehr ...` (signed operations, queries, documents,
//! patients, cases, the verifier's audit) and `medchain bench docs`.

mod bench;
mod case;
mod chain;
mod common;
mod docs;
mod genesis;
mod patient;
mod small;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::future::Future;
use std::path::PathBuf;

/// The health-record app: signed operations, queries and document verification.
#[derive(Parser, Debug)]
#[command(name = "ehr")]
pub struct EhrCli {
    #[command(subcommand)]
    command: EhrCommand,
}

#[derive(Subcommand, Debug)]
enum EhrCommand {
    /// Sign and submit an `ehr` operation given as JSON; waits for the commit and fails unless
    /// it succeeded. Operations: RegisterHospital, ApproveHospital, SuspendHospital,
    /// RegisterDoctor, RemoveDoctor, AddVerifier, RemoveVerifier, RegisterPatient, Grant,
    /// Revoke, RecordCase, IssueDocument, LogRead, Erase, ShareDocument, Unshare (a request for
    /// access and break-glass carry sealed text: `ehr request`, `ehr break-glass`). Keys and
    /// hashes are 64 hex characters; a new case or document id is 32 random lowercase hex
    /// characters (`ehr case record` and `ehr doc upload` make one). Example:
    /// `{"Grant":{"grantee":"<hospital key>","scopes":["Cases"],"write":true,"expires_ms":1900000000000}}`
    Tx {
        /// The operation (JSON).
        op: String,
        /// The sender's key file.
        #[arg(long)]
        key_file: PathBuf,
        /// A node's API URL.
        #[arg(long, default_value = "http://127.0.0.1:8700")]
        node: String,
    },
    /// Answer a query given as JSON. Anyone: Hospitals (approved), Hospital, Doctor, Verify,
    /// Document (without its patient). Signed with --key-file, to their parties only:
    /// Patient, Grants and Requests (the patient; a hospital sees its own), Cases, Case,
    /// Documents (the patient and those its grants cover), Audit, AuditPage (the patient;
    /// newest first, paged: `{"AuditPage":{"patient":"<key>","before":null,"limit":100}}`,
    /// then `before` = the page's `next`), Shares, LastRead, Access, Roles; Users, Doctors,
    /// Patients, Hospitals with pending (administrators); Anchors, Verifiers (verifiers). Any
    /// list a page at a time: `{"Page":{"query":{"Grants":"<key>"},"after":null,"limit":100}}`,
    /// then `after` = the page's `next`. Sealed notes the key can open are shown opened.
    /// Example: `{"Hospitals":{"search":"cardio","pending":false}}`
    Query {
        /// The query (JSON).
        query: String,
        /// Sign the query with this key file.
        #[arg(long)]
        key_file: Option<PathBuf>,
        /// A node's API URL.
        #[arg(long, default_value = "http://127.0.0.1:8700")]
        node: String,
    },
    /// As an approved hospital, ask a patient for access. The purpose is sealed for the patient
    /// and the hospital: no node holds it in clear.
    Request {
        /// The patient's pseudonym (64 hex).
        #[arg(long)]
        patient: String,
        /// Why (at most 2,048 bytes).
        #[arg(long)]
        purpose: String,
        /// What: profile, cases, documents (repeat the option for several).
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// The hospital's key file.
        #[arg(long)]
        key_file: PathBuf,
        /// A node's API URL.
        #[arg(long, default_value = "http://127.0.0.1:8700")]
        node: String,
    },
    /// As a doctor of an approved hospital, take emergency read access to a patient's record
    /// for 24 hours, flagged to the patient. The reason is sealed for the patient and the
    /// doctor.
    BreakGlass {
        /// The patient's pseudonym (64 hex).
        #[arg(long)]
        patient: String,
        /// Why (at most 2,048 bytes).
        #[arg(long)]
        reason: String,
        /// The doctor's key file.
        #[arg(long)]
        key_file: PathBuf,
        /// A node's API URL.
        #[arg(long, default_value = "http://127.0.0.1:8700")]
        node: String,
    },
    /// Documents.
    Doc {
        #[command(subcommand)]
        command: EhrDocCommand,
    },
    /// Patients: registration with an encrypted profile, reading and sharing it.
    Patient {
        #[command(subcommand)]
        command: EhrPatientCommand,
    },
    /// Cases (problem, blood pressure, blood glucose, notes): recorded encrypted by a hospital
    /// with a write grant, read by the patient or a granted hospital.
    Case {
        #[command(subcommand)]
        command: EhrCaseCommand,
    },
    /// The verifier's audit: re-hash every anchored record in the node's vault and compare with
    /// the chain, a page at a time; prints intact (green) or tampered (red) per record, and
    /// exits 1 if any record is tampered. For verifiers and administrators.
    Audit {
        /// The verifier's or administrator's key file.
        #[arg(long)]
        key_file: PathBuf,
        /// A node's API URL.
        #[arg(long, default_value = "http://127.0.0.1:8700")]
        node: String,
        /// Print a JSON object per record, then one with the counts (JSON Lines).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum EhrCaseCommand {
    /// Encrypt the case locally, store it in the vault and record it on the chain (its address
    /// and SHA-256 only, under a new random id, printed as `case`); the key is wrapped for the
    /// patient, you and your hospital.
    Record {
        /// The patient's pseudonym (64 hex).
        #[arg(long)]
        patient: String,
        /// A title for people (kept encrypted with the rest; the chain sees only the random id).
        #[arg(long, default_value = "")]
        title: String,
        /// The presenting problem.
        #[arg(long)]
        problem: String,
        /// Systolic blood pressure, mmHg.
        #[arg(long)]
        systolic: u16,
        /// Diastolic blood pressure, mmHg.
        #[arg(long)]
        diastolic: u16,
        /// Blood glucose, mmol/L.
        #[arg(long)]
        glucose: f64,
        /// Free notes.
        #[arg(long, default_value = "")]
        notes: String,
        /// The hospital's or doctor's key file.
        #[arg(long)]
        key_file: PathBuf,
        /// A node's API URL.
        #[arg(long, default_value = "http://127.0.0.1:8700")]
        node: String,
    },
    /// Print a case's contents (the read is logged on the chain unless you are the patient),
    /// checked against its SHA-256 on the chain.
    Get {
        /// The patient's pseudonym (64 hex).
        #[arg(long)]
        patient: String,
        /// The case's id.
        id: String,
        /// The reader's key file (the patient, or a hospital or doctor with a Cases grant).
        #[arg(long)]
        key_file: PathBuf,
        /// A node's API URL.
        #[arg(long, default_value = "http://127.0.0.1:8700")]
        node: String,
    },
}

#[derive(Subcommand, Debug)]
enum EhrPatientCommand {
    /// Register the key file's key as a patient pseudonym. The profile is encrypted locally and
    /// stored in the vault; the chain gets only its salted commitment and the blob address.
    Register {
        /// The patient's key file (its pseudonym for life).
        #[arg(long)]
        key_file: PathBuf,
        /// Full name.
        #[arg(long)]
        name: String,
        /// Email.
        #[arg(long, default_value = "")]
        email: String,
        /// Date of birth (YYYY-MM-DD).
        #[arg(long, default_value = "")]
        date_of_birth: String,
        /// Gender.
        #[arg(long, default_value = "")]
        gender: String,
        /// Blood group.
        #[arg(long, default_value = "")]
        blood_group: String,
        /// Height in centimetres.
        #[arg(long)]
        height_cm: Option<u32>,
        /// Phone or other contact.
        #[arg(long, default_value = "")]
        contact: String,
        /// Postal address.
        #[arg(long, default_value = "")]
        address: String,
        /// A photo: a PNG or JPEG file of at most 512 KiB (encrypted with the rest).
        #[arg(long)]
        photo: Option<PathBuf>,
        /// A node's API URL.
        #[arg(long, default_value = "http://127.0.0.1:8700")]
        node: String,
    },
    /// Print a patient's profile (the patient, or a hospital with a Profile grant and the shared
    /// key; the read is logged on the chain first). Checked against the on-chain commitment.
    Profile {
        /// The patient's pseudonym (64 hex characters).
        patient: String,
        /// The reader's key file.
        #[arg(long)]
        key_file: PathBuf,
        /// Save the profile's photo (if it has one) to this file; without it the photo is only
        /// described.
        #[arg(long)]
        photo_out: Option<PathBuf>,
        /// A node's API URL.
        #[arg(long, default_value = "http://127.0.0.1:8700")]
        node: String,
    },
    /// Wrap the patient's profile key for a hospital (give it a Profile grant too).
    Share {
        /// The hospital's key (64 hex characters).
        #[arg(long)]
        with: String,
        /// The patient's key file.
        #[arg(long)]
        key_file: PathBuf,
        /// A node's API URL.
        #[arg(long, default_value = "http://127.0.0.1:8700")]
        node: String,
    },
}

#[derive(Subcommand, Debug)]
enum EhrDocCommand {
    /// Encrypt FILE locally (the node never sees the plaintext), store the ciphertext on the
    /// node, anchor its SHA-256 on the chain (signed by the doctor) under a new random id
    /// (printed as `doc`) and leave the key wrapped for the patient, the doctor and its
    /// hospital. Shows progress on stderr.
    Upload {
        /// The document.
        file: PathBuf,
        /// The patient's pseudonym (its key, 64 hex characters).
        #[arg(long)]
        patient: String,
        /// report, certificate or prescription.
        #[arg(long = "type", default_value = "report")]
        kind: String,
        /// An earlier document of the patient this one replaces.
        #[arg(long)]
        supersedes: Option<String>,
        /// The doctor's key file.
        #[arg(long)]
        key_file: PathBuf,
        /// A node's API URL.
        #[arg(long, default_value = "http://127.0.0.1:8700")]
        node: String,
    },
    /// Fetch document ID into OUT: logs the read on the chain (unless you are the patient),
    /// fetches your wrapped key and the ciphertext, checks both against the chain, decrypts.
    Get {
        /// The document's id.
        id: String,
        /// Where to write the document.
        #[arg(long)]
        out: PathBuf,
        /// The reader's key file (the patient, the doctor, or a hospital with a grant).
        #[arg(long)]
        key_file: PathBuf,
        /// A node's API URL.
        #[arg(long, default_value = "http://127.0.0.1:8700")]
        node: String,
    },
    /// Re-hash FILE and ask the chain: prints the verdict (authentic: anchored, by whom, when,
    /// for which document; tampered: --doc names a document whose anchored hash differs;
    /// unknown) as JSON. Exits 0 only for authentic.
    Verify {
        /// The file.
        file: PathBuf,
        /// The document it claims to be.
        #[arg(long)]
        doc: Option<String>,
        /// A node's API URL.
        #[arg(long, default_value = "http://127.0.0.1:8700")]
        node: String,
    },
    /// Share document ID (as its patient or issuing doctor). With --with KEY, wrap its key for
    /// that reader (e.g. a hospital granted access after the upload). Without, make a share
    /// link: a `ShareDocument` capability on the chain for a fresh key, valid --hours; prints
    /// the link (its secret is after `#`), which `ehr doc open` or the portal opens.
    Share {
        /// The document's id.
        id: String,
        /// Wrap the key for this reader (64 hex) instead of making a link.
        #[arg(long)]
        with: Option<String>,
        /// How long the link is valid (1 to 720 hours).
        #[arg(long, default_value_t = 24)]
        hours: u64,
        /// The patient's or issuer's key file.
        #[arg(long)]
        key_file: PathBuf,
        /// A node's API URL.
        #[arg(long, default_value = "http://127.0.0.1:8700")]
        node: String,
    },
    /// Open a share link: download the document with the link's key (the read is logged on
    /// the chain), decrypt, re-hash and check it against its anchor; prints the verdict as
    /// JSON and writes OUT only if the document is authentic.
    Open {
        /// The link (`http://NODE/portal/#share/DOC/SECRET`).
        link: String,
        /// Where to write the document.
        #[arg(long)]
        out: PathBuf,
        /// Use this node instead of the link's.
        #[arg(long)]
        node: Option<String>,
    },
}

/// Runs a command's future on a runtime of its own.
fn run_async<T>(future: impl Future<Output = Result<T>>) -> Result<T> {
    medchain_app::block_on(future)?
}

/// Runs `medchain ehr ...`.
pub fn run(cli: EhrCli) -> Result<()> {
    match cli.command {
        EhrCommand::Tx { op, key_file, node } => run_async(chain::ehr_tx(&node, &key_file, &op)),
        EhrCommand::Case { command } => match command {
            EhrCaseCommand::Record {
                patient,
                title,
                problem,
                systolic,
                diastolic,
                glucose,
                notes,
                key_file,
                node,
            } => run_async(case::ehr_case_record(
                &node,
                &key_file,
                &patient,
                case::CaseContent {
                    salt: String::new(),
                    case_id: medchain_ehr::records::new_id(),
                    title,
                    problem,
                    systolic_mmhg: systolic,
                    diastolic_mmhg: diastolic,
                    glucose_mmol_l: glucose,
                    notes,
                },
            )),
            EhrCaseCommand::Get {
                patient,
                id,
                key_file,
                node,
            } => run_async(case::ehr_case_get(&node, &key_file, &patient, &id)),
        },
        EhrCommand::Patient { command } => match command {
            EhrPatientCommand::Register {
                key_file,
                name,
                email,
                date_of_birth,
                gender,
                blood_group,
                height_cm,
                contact,
                address,
                photo,
                node,
            } => {
                let photo = photo.as_deref().map(patient::photo_data_url).transpose()?;
                run_async(patient::ehr_patient_register(
                    &node,
                    &key_file,
                    patient::Profile {
                        salt: String::new(),
                        name,
                        email,
                        date_of_birth,
                        gender,
                        blood_group,
                        height_cm,
                        contact,
                        address,
                        photo,
                    },
                ))
            }
            EhrPatientCommand::Profile {
                patient,
                key_file,
                photo_out,
                node,
            } => run_async(patient::ehr_patient_profile(
                &node,
                &key_file,
                &patient,
                photo_out.as_deref(),
            )),
            EhrPatientCommand::Share {
                with,
                key_file,
                node,
            } => run_async(patient::ehr_patient_share(&node, &key_file, &with)),
        },
        EhrCommand::Audit {
            key_file,
            node,
            json,
        } => {
            if !run_async(chain::ehr_audit(&node, &key_file, json))? {
                anyhow::bail!("tampered records found (see above)");
            }
            Ok(())
        }
        EhrCommand::Query {
            query,
            key_file,
            node,
        } => run_async(chain::ehr_query(&node, &query, key_file.as_deref())),
        EhrCommand::Request {
            patient,
            purpose,
            scopes,
            key_file,
            node,
        } => run_async(chain::ehr_request(
            &node, &key_file, &patient, &purpose, &scopes,
        )),
        EhrCommand::BreakGlass {
            patient,
            reason,
            key_file,
            node,
        } => run_async(chain::ehr_break_glass(&node, &key_file, &patient, &reason)),
        EhrCommand::Doc {
            command:
                EhrDocCommand::Upload {
                    file,
                    patient,
                    kind,
                    supersedes,
                    key_file,
                    node,
                },
        } => {
            use medchain_ehr::chaincode::DocKind;
            let kind = match kind.as_str() {
                "report" => DocKind::Report,
                "certificate" => DocKind::Certificate,
                "prescription" => DocKind::Prescription,
                other => {
                    anyhow::bail!("--type {other:?}: one of report, certificate, prescription")
                }
            };
            run_async(docs::ehr_doc_upload(
                &node,
                &key_file,
                docs::DocUpload {
                    file,
                    doc_id: medchain_ehr::records::new_id(),
                    patient,
                    kind,
                    supersedes,
                },
                false,
            ))
        }
        EhrCommand::Doc {
            command:
                EhrDocCommand::Get {
                    id,
                    out,
                    key_file,
                    node,
                },
        } => run_async(docs::ehr_doc_get(&node, &key_file, &id, &out, false)),
        EhrCommand::Doc {
            command:
                EhrDocCommand::Share {
                    id,
                    with,
                    hours,
                    key_file,
                    node,
                },
        } => run_async(docs::ehr_doc_share(
            &node,
            &key_file,
            &id,
            with.as_deref(),
            hours,
        )),
        EhrCommand::Doc {
            command: EhrDocCommand::Open { link, out, node },
        } => run_async(docs::ehr_doc_open(&link, node.as_deref(), &out, false)),
        EhrCommand::Doc {
            command: EhrDocCommand::Verify { file, doc, node },
        } => {
            let authentic = run_async(chain::ehr_verify(&node, &file, doc.as_deref()))?;
            if !authentic {
                anyhow::bail!("the file is not authentic (verdict above)");
            }
            Ok(())
        }
    }
}

pub use bench::{run_cli as run_bench, BenchDocs};
pub use genesis::{run as run_genesis_add_admin, GenesisAddAdmin};
