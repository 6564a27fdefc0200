//! `medchain`: the node and command-line tool. Every subcommand has `--help`.

mod api;
mod bench_docs;
mod client;
mod cluster;
mod config;
mod demo;
mod ehr_api;
mod ehr_vault;
mod genesis;
mod keyfile;
mod mempool;
mod miner;
mod runtime;
mod verify;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use medchain_ledger::Ledger;
use std::path::PathBuf;
use std::process::ExitCode;

/// medchain: a blockchain framework with swappable consensus and a health-record application.
#[derive(Parser, Debug)]
#[command(name = "medchain", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum KvCommand {
    /// Store VALUE at KEY (a signed `kv` transaction; waits for its commit).
    Put {
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// A node's API URL.
        #[arg(long, default_value = "http://127.0.0.1:8700")]
        node: String,
        /// The signing key file (`medchain keygen`; `medchain up` writes client.json).
        #[arg(long)]
        key_file: PathBuf,
    },
    /// Print the value at KEY (exit 1 if it is not set).
    Get {
        /// The key.
        key: String,
        /// A node's API URL.
        #[arg(long, default_value = "http://127.0.0.1:8700")]
        node: String,
    },
}

#[derive(Subcommand, Debug)]
enum EhrCommand {
    /// Sign and submit an `ehr` operation given as JSON; waits for the commit and fails unless
    /// it succeeded. Operations: RegisterHospital, ApproveHospital, RegisterDoctor,
    /// RegisterPatient, RequestAccess, Grant, Revoke, RecordCase, IssueDocument, LogRead,
    /// BreakGlass, Erase. Keys and hashes are 64 hex characters. Example:
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
    /// Answer a query given as JSON: Hospitals, Doctor, Patient, Grants, Requests, Cases,
    /// Documents, Document, Verify, Audit, Users, Access. Example:
    /// `{"Hospitals":{"search":"cardio","pending":false}}`
    Query {
        /// The query (JSON).
        query: String,
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
    /// the chain; prints intact (green) or tampered (red) per record, and exits 1 if any record
    /// is tampered.
    Audit {
        /// A node's API URL.
        #[arg(long, default_value = "http://127.0.0.1:8700")]
        node: String,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum EhrCaseCommand {
    /// Encrypt the case locally, store it in the vault and record it on the chain (its address
    /// and SHA-256 only); the key is wrapped for the patient, you and your hospital.
    Record {
        /// The patient's pseudonym (64 hex).
        #[arg(long)]
        patient: String,
        /// The case's id (1 to 64 of a-z 0-9 - _ .; unique per patient).
        #[arg(long)]
        id: String,
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
    /// node, anchor its SHA-256 on the chain (signed by the doctor) and leave the key wrapped
    /// for the patient, the doctor and its hospital. Shows progress on stderr.
    Upload {
        /// The document.
        file: PathBuf,
        /// Its id (1 to 64 of a-z 0-9 - _ .).
        #[arg(long)]
        id: String,
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

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// Document upload (hash + encrypt + store + anchor, until committed) and retrieval (fetch +
    /// decrypt + re-hash + check against the chain) by size, against a running consortium, with
    /// `openssl dgst -sha256` of each file as the reference and the seed system's figures beside
    /// ours. Each run reads the document twice (right after the upload, and again at once) and
    /// times a synced copy of the file on this machine's disk as a second reference. Prints a
    /// table (medians) and writes docs.csv and docs.json.
    Docs {
        /// Sizes (MB = 2^20 bytes).
        #[arg(long, default_value = "1MB,2MB,5MB,10MB,20MB,50MB,100MB,500MB")]
        sizes: String,
        /// A node's API URL.
        #[arg(long, default_value = "http://127.0.0.1:8700")]
        node: String,
        /// The consortium administrator's key (to approve the benchmark's hospital).
        #[arg(long, default_value = "data/local/admin.json")]
        admin_key: PathBuf,
        /// Runs per size (the median is reported).
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Where docs.csv and docs.json go.
        #[arg(long, default_value = "bench-results")]
        out_dir: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum StakeCommand {
    /// Add AMOUNT to the signer's stake (proof of stake; effective at the next epoch).
    Add {
        /// How much.
        amount: u64,
        /// A node's API URL.
        #[arg(long, default_value = "http://127.0.0.1:8700")]
        node: String,
        /// The validator's node key file (`nodeI/node.json`).
        #[arg(long)]
        key_file: PathBuf,
    },
    /// Withdraw AMOUNT from the signer's stake (to zero: it leaves the active set).
    Remove {
        /// How much.
        amount: u64,
        /// A node's API URL.
        #[arg(long, default_value = "http://127.0.0.1:8700")]
        node: String,
        /// The validator's node key file (`nodeI/node.json`).
        #[arg(long)]
        key_file: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start a local consortium (creating it in DIR if absent), print the URLs, and stop every
    /// node cleanly on Ctrl-C or SIGTERM. Run again to resume from disk.
    Up {
        /// Validators (when creating).
        #[arg(long, default_value_t = 4)]
        nodes: usize,
        /// Consensus engine (when creating).
        #[arg(long, default_value = "pbft")]
        engine: String,
        /// Where the consortium lives.
        #[arg(long, default_value = "data/local")]
        dir: PathBuf,
        /// First QUIC port (node i uses port + i).
        #[arg(long, default_value_t = 7700)]
        p2p_port: u16,
        /// First HTTP port (node i uses port + i).
        #[arg(long, default_value_t = 8700)]
        api_port: u16,
    },
    /// Write a local consortium: node keys, genesis.toml, one node.toml per node, a client key.
    Testnet {
        /// Validators.
        #[arg(long, default_value_t = 4)]
        nodes: usize,
        /// Consensus engine.
        #[arg(long, default_value = "pbft")]
        engine: String,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// First QUIC port (node i uses port + i).
        #[arg(long, default_value_t = 7700)]
        p2p_port: u16,
        /// First HTTP port (node i uses port + i).
        #[arg(long, default_value_t = 8700)]
        api_port: u16,
        /// Chain id.
        #[arg(long, default_value = "medchain-local")]
        chain_id: String,
        /// Overwrite an existing testnet in the directory.
        #[arg(long)]
        force: bool,
        /// Proof of work: the block interval difficulty aims at, in milliseconds (default 3000).
        #[arg(long)]
        block_interval_ms: Option<u64>,
    },
    /// Run one node. Settings come from the TOML file and `MEDCHAIN__SECTION__KEY` variables.
    Node {
        /// The node's configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Print a node's status (engine, height, view, peers, mempool) as JSON.
    Status {
        /// A node's API URL.
        #[arg(long, default_value = "http://127.0.0.1:8700")]
        node: String,
    },
    /// Use the built-in key-value chaincode.
    Kv {
        #[command(subcommand)]
        command: KvCommand,
    },
    /// Benchmarks against a running consortium.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// The health-record app: signed operations, queries and document verification.
    Ehr {
        #[command(subcommand)]
        command: EhrCommand,
    },
    /// Proof of stake: stake or unstake a validator's weight (a `staking` transaction signed
    /// with its node key; waits for the commit). The engine applies it at the next epoch
    /// boundary; `medchain status` shows the stakes.
    Stake {
        #[command(subcommand)]
        command: StakeCommand,
    },
    /// Offer signed transactions at a fixed rate and report throughput and commit latency.
    Load {
        /// A node's API URL.
        #[arg(long, default_value = "http://127.0.0.1:8700")]
        node: String,
        /// Transactions per second offered.
        #[arg(long, default_value_t = 1000)]
        rate: u64,
        /// Seconds of load.
        #[arg(long, default_value_t = 10)]
        duration: u64,
        /// Payload bytes per transaction.
        #[arg(long, default_value_t = 512)]
        size: usize,
        /// `noop` or `kv`.
        #[arg(long, default_value = "noop")]
        chaincode: String,
        /// Transactions per HTTP request.
        #[arg(long, default_value_t = 100)]
        batch: usize,
        /// Distinct signing keys, used in turn (transaction i is signed by key i mod N). One
        /// sender lets a batch signature check fold all its signatures' key terms into one
        /// point; many senders measure the general case, where every signature costs its own
        /// (at most 100,000).
        #[arg(long, default_value_t = 1)]
        senders: usize,
        /// Most requests waiting for their commit at once.
        #[arg(long, default_value_t = 512)]
        in_flight: usize,
        /// Before offering, measure the reference: how many of these transactions' signatures
        /// this machine checks per second on all its cores (the nodes' rule, in batches of 256),
        /// and so the most transactions per second the consortium could commit if its nodes
        /// shared these cores and did nothing but check each signature once each (meaningful
        /// for a local consortium such as `medchain up`'s).
        #[arg(long)]
        reference: bool,
        /// Also print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run the deterministic simulator: many seeds, injected faults, invariant checks. Exits 1
    /// if any seed breaks an invariant, printing the command that replays it.
    Sim {
        /// Consensus engine.
        #[arg(long, default_value = "pbft")]
        engine: String,
        /// Validators.
        #[arg(long, default_value_t = 4)]
        nodes: usize,
        /// Seeds to run (from --seed on).
        #[arg(long, default_value_t = 100)]
        seeds: u64,
        /// First seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Faults: any of crash,partition,drop,dup,reorder, or all, or none.
        #[arg(long, default_value = "all")]
        faults: String,
        /// Client transactions per run.
        #[arg(long, default_value_t = 60)]
        txs: usize,
        /// Seconds of faults (simulated) before everything heals.
        #[arg(long, default_value_t = 30)]
        fault_window: u64,
        /// Worker threads.
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// One-way message latency in milliseconds: `MS` or `LO..HI` (uniform).
        #[arg(long, default_value = "1..30")]
        latency_ms: String,
    },
    /// Generate an ed25519 key file (mode 0600) and print its public key.
    Keygen {
        /// Where to write the key file.
        #[arg(long)]
        out: PathBuf,
        /// Replace the file if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Print the public key of a key file (checks that the file is a valid medchain key).
    Pubkey {
        /// The key file.
        #[arg(long)]
        key: PathBuf,
    },
    /// Check a ledger: hash links, transaction Merkle roots, indexes, receipts and state roots.
    ///
    /// Opens the ledger read-only, so it can run beside a node that is using it. Exits non-zero
    /// and names the first bad height if anything does not check out.
    VerifyChain {
        /// The ledger directory (a node's `data/ledger`).
        #[arg(long)]
        data: PathBuf,
    },
    /// Write a chain of signed `kv` transactions to a local ledger (no network), then verify it
    /// and prove one transaction's inclusion.
    Demo {
        /// The ledger directory (created if absent).
        #[arg(long, default_value = "data/demo")]
        data: PathBuf,
        /// Blocks to add.
        #[arg(long, default_value_t = 100)]
        blocks: u64,
        /// Transactions per block.
        #[arg(long, default_value_t = 200)]
        txs: usize,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn tokio_runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Keygen { out, force } => {
            let key = medchain_types::SecretKey::generate(&mut rand::rngs::OsRng);
            keyfile::write(&out, &key, force)?;
            println!("{}", key.public());
            Ok(())
        }
        Command::Pubkey { key } => {
            println!("{}", keyfile::read(&key)?.public());
            Ok(())
        }
        Command::VerifyChain { data } => verify_chain(&data),
        Command::Demo { data, blocks, txs } => demo::run(&data, blocks, txs),
        Command::Testnet {
            nodes,
            engine,
            out,
            p2p_port,
            api_port,
            chain_id,
            force,
            block_interval_ms,
        } => {
            let mut spec = cluster::TestnetSpec::new(nodes, engine, p2p_port, api_port, chain_id);
            spec.block_interval = block_interval_ms.map(std::time::Duration::from_millis);
            cluster::testnet(&spec, &out, force)
        }
        Command::Up {
            nodes,
            engine,
            dir,
            p2p_port,
            api_port,
        } => tokio_runtime()?.block_on(cluster::up(
            &cluster::TestnetSpec::new(nodes, engine, p2p_port, api_port, "medchain-local".into()),
            &dir,
        )),
        Command::Node { config } => run_node(&config),
        Command::Status { node } => tokio_runtime()?.block_on(client::status(&node)),
        Command::Kv { command } => match command {
            KvCommand::Put {
                key,
                value,
                node,
                key_file,
            } => tokio_runtime()?.block_on(client::kv_put(&node, &key_file, &key, &value)),
            KvCommand::Get { key, node } => tokio_runtime()?.block_on(client::kv_get(&node, &key)),
        },
        Command::Bench {
            command:
                BenchCommand::Docs {
                    sizes,
                    node,
                    admin_key,
                    runs,
                    out_dir,
                },
        } => {
            let sizes = bench_docs::parse_sizes(&sizes)?;
            tokio_runtime()?.block_on(bench_docs::docs(&node, &admin_key, &sizes, runs, &out_dir))
        }
        Command::Ehr { command } => match command {
            EhrCommand::Tx { op, key_file, node } => {
                tokio_runtime()?.block_on(client::ehr_tx(&node, &key_file, &op))
            }
            EhrCommand::Case { command } => match command {
                EhrCaseCommand::Record {
                    patient,
                    id,
                    problem,
                    systolic,
                    diastolic,
                    glucose,
                    notes,
                    key_file,
                    node,
                } => tokio_runtime()?.block_on(client::ehr_case_record(
                    &node,
                    &key_file,
                    &patient,
                    client::CaseContent {
                        salt: String::new(),
                        case_id: id,
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
                } => {
                    tokio_runtime()?.block_on(client::ehr_case_get(&node, &key_file, &patient, &id))
                }
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
                    let photo = photo.as_deref().map(client::photo_data_url).transpose()?;
                    tokio_runtime()?.block_on(client::ehr_patient_register(
                        &node,
                        &key_file,
                        client::Profile {
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
                } => tokio_runtime()?.block_on(client::ehr_patient_profile(
                    &node,
                    &key_file,
                    &patient,
                    photo_out.as_deref(),
                )),
                EhrPatientCommand::Share {
                    with,
                    key_file,
                    node,
                } => tokio_runtime()?.block_on(client::ehr_patient_share(&node, &key_file, &with)),
            },
            EhrCommand::Audit { node, json } => {
                if !tokio_runtime()?.block_on(client::ehr_audit(&node, json))? {
                    anyhow::bail!("tampered records found (see above)");
                }
                Ok(())
            }
            EhrCommand::Query { query, node } => {
                tokio_runtime()?.block_on(client::ehr_query(&node, &query))
            }
            EhrCommand::Doc {
                command:
                    EhrDocCommand::Upload {
                        file,
                        id,
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
                tokio_runtime()?.block_on(client::ehr_doc_upload(
                    &node,
                    &key_file,
                    client::DocUpload {
                        file,
                        doc_id: id,
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
            } => tokio_runtime()?.block_on(client::ehr_doc_get(&node, &key_file, &id, &out, false)),
            EhrCommand::Doc {
                command:
                    EhrDocCommand::Share {
                        id,
                        with,
                        hours,
                        key_file,
                        node,
                    },
            } => tokio_runtime()?.block_on(client::ehr_doc_share(
                &node,
                &key_file,
                &id,
                with.as_deref(),
                hours,
            )),
            EhrCommand::Doc {
                command: EhrDocCommand::Open { link, out, node },
            } => {
                tokio_runtime()?.block_on(client::ehr_doc_open(&link, node.as_deref(), &out, false))
            }
            EhrCommand::Doc {
                command: EhrDocCommand::Verify { file, doc, node },
            } => {
                let authentic =
                    tokio_runtime()?.block_on(client::ehr_verify(&node, &file, doc.as_deref()))?;
                if !authentic {
                    anyhow::bail!("the file is not authentic (verdict above)");
                }
                Ok(())
            }
        },
        Command::Stake { command } => {
            use medchain_types::staking::StakeOp;
            let (op, node, key_file) = match command {
                StakeCommand::Add {
                    amount,
                    node,
                    key_file,
                } => (StakeOp::Stake { amount }, node, key_file),
                StakeCommand::Remove {
                    amount,
                    node,
                    key_file,
                } => (StakeOp::Unstake { amount }, node, key_file),
            };
            tokio_runtime()?.block_on(client::stake(&node, &key_file, op))
        }
        Command::Load {
            node,
            rate,
            duration,
            size,
            chaincode,
            batch,
            senders,
            in_flight,
            reference,
            json,
        } => tokio_runtime()?.block_on(client::load(&client::LoadSpec {
            node,
            rate,
            duration,
            size,
            chaincode,
            batch,
            senders,
            in_flight_max: in_flight,
            reference,
            json,
        })),
        Command::Sim {
            engine,
            nodes,
            seeds,
            seed,
            faults,
            txs,
            fault_window,
            threads,
            latency_ms,
        } => simulate(
            &engine,
            nodes,
            seeds,
            seed,
            &faults,
            txs,
            fault_window,
            threads,
            &latency_ms,
        ),
    }
}

fn run_node(config_path: &std::path::Path) -> Result<()> {
    let config = config::NodeConfig::load(config_path)?;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&config.log.level)
                .context("invalid [log] level")?,
        )
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    tokio_runtime()?.block_on(async move {
        use axum::serve::ListenerExt;
        let listen = config.api.listen;
        let node = runtime::Node::start(config)?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?
            // Without TCP_NODELAY, a response's last small write (a body's tail, a chunked
            // body's end) can wait for the client's delayed ACK: 40 ms on Linux.
            .tap_io(|stream: &mut tokio::net::TcpStream| {
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!("TCP_NODELAY on an API connection: {e}");
                }
            });
        tracing::info!(api = %listen, "HTTP API listening");
        let mut sigterm =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        axum::serve(listener, api::router(node.shared.clone()))
            .with_graceful_shutdown(async move {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = sigterm.recv() => {}
                }
                tracing::info!("shutting down");
            })
            .await?;
        node.stop().await;
        Ok(())
    })
}

#[allow(clippy::too_many_arguments)]
fn simulate(
    engine: &str,
    nodes: usize,
    seeds: u64,
    first: u64,
    faults: &str,
    txs: usize,
    fault_window: u64,
    threads: usize,
    latency: &str,
) -> Result<()> {
    use medchain_sim::{run_many, EngineKind, Faults, SimConfig};
    if nodes == 0 || nodes > 64 {
        anyhow::bail!("--nodes must be 1 to 64");
    }
    let mut cfg = SimConfig::new(
        EngineKind::by_name(engine).map_err(anyhow::Error::msg)?,
        nodes,
    );
    cfg.faults = Faults::parse(faults).map_err(anyhow::Error::msg)?;
    cfg.txs = txs;
    cfg.fault_window = std::time::Duration::from_secs(fault_window);
    let parse = |s: &str| {
        s.trim()
            .parse::<u64>()
            .with_context(|| format!("--latency-ms {latency:?}: expected MS or LO..HI"))
    };
    cfg.latency_ms = match latency.split_once("..") {
        Some((lo, hi)) => (parse(lo)?, parse(hi)?),
        None => (parse(latency)?, parse(latency)?),
    };
    if cfg.latency_ms.0 > cfg.latency_ms.1 {
        anyhow::bail!("--latency-ms {latency:?}: LO must not exceed HI");
    }
    eprintln!(
        "simulating {engine} with {nodes} validators, seeds {first}..{}, faults: {faults}",
        first + seeds
    );
    let done = std::sync::atomic::AtomicU64::new(0);
    let summary = run_many(&cfg, first, seeds, threads, &|r| {
        let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        if !r.violations.is_empty() {
            eprintln!("seed {} VIOLATION: {}", r.seed, r.violations[0].what);
        }
        if n % 50 == 0 || n == seeds {
            eprintln!("{n}/{seeds} runs");
        }
    });
    println!("engine          {engine}");
    println!("validators      {nodes}");
    println!("faults          {faults}");
    println!("runs            {}", summary.runs);
    println!("violations      {}", summary.failures.len());
    println!(
        "blocks          {} (final heights summed over runs)",
        summary.blocks
    );
    println!("transactions    {}", summary.committed_txs);
    println!(
        "simulated time  {:.1} min",
        summary.simulated_ms as f64 / 60_000.0
    );
    println!("real time       {:.1} s", summary.real_ms as f64 / 1000.0);
    if summary.mined_blocks > 0 {
        println!(
            "stale blocks    {} of {} mined ({:.2}%; blocks not in the final chain)",
            summary.stale_blocks,
            summary.mined_blocks,
            100.0 * summary.stale_blocks as f64 / summary.mined_blocks as f64
        );
    }
    if let Some(f) = summary.failures.first() {
        for r in &summary.failures {
            println!(
                "seed {}: {} (at {} ms)",
                r.seed, r.violations[0].what, r.violations[0].time_ms
            );
        }
        anyhow::bail!(
            "{} seeds broke an invariant; replay one with: medchain sim --engine {engine} --nodes {nodes} --faults {faults} --txs {txs} --fault-window {fault_window} --latency-ms {latency} --seeds 1 --seed {}",
            summary.failures.len(),
            f.seed
        );
    }
    Ok(())
}

fn verify_chain(data: &std::path::Path) -> Result<()> {
    let ledger = Ledger::open_read_only(data)?;
    let started = std::time::Instant::now();
    let report = ledger
        .verify_chain(|done, total| {
            if total >= 1000 {
                eprintln!("verified {done}/{total} blocks");
            }
        })
        .with_context(|| format!("chain in {} does not verify", data.display()))?;
    match report.tip {
        None => println!("chain {}: empty ledger, nothing to verify", ledger.chain_id()),
        Some(tip) => println!(
            "chain {}: OK, {} blocks, {} transactions, tip height {} hash {} state root {} ({:.2?})",
            ledger.chain_id(),
            report.blocks,
            report.txs,
            tip.height,
            tip.hash,
            tip.state_root,
            started.elapsed()
        ),
    }
    Ok(())
}
