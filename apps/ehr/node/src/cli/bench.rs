//! `medchain bench docs`: document upload (hash + encrypt + store + anchor, until committed) and
//! retrieval (fetch + decrypt + re-hash + check against the chain) by file size, against a
//! running consortium, beside the seed system's figures and `openssl dgst -sha256` of the same
//! file timed in the same run. Writes CSV and JSON.
//!
//! It sets up its own actors on the chain first (a hospital approved with the administrator's
//! key, a doctor, a patient, a grant), so it needs the consortium's `admin.json`.

use super::docs::{ehr_doc_get, ehr_doc_upload, DocUpload};
use anyhow::{bail, Context, Result};
use medchain_app::client::{signed_tx, Client};
use medchain_ehr::chaincode::{DocKind, HospitalProfile, Scope};
use medchain_ehr::EhrOp;
use medchain_types::{sha256, SecretKey};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Document upload (hash + encrypt + store + anchor, until committed) and retrieval (fetch +
/// decrypt + re-hash + check against the chain) by size, against a running consortium, with
/// `openssl dgst -sha256` of each file as the reference and the seed system's figures beside
/// ours. Each run reads the document twice (right after the upload, and again at once) and
/// times a synced copy of the file on this machine's disk as a second reference. Prints a
/// table (medians) and writes docs.csv and docs.json.
#[derive(clap::Parser, Debug)]
#[command(name = "docs")]
pub struct BenchDocs {
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
}

/// Runs `medchain bench docs`.
pub fn run_cli(args: BenchDocs) -> Result<()> {
    let sizes = parse_sizes(&args.sizes)?;
    medchain_app::block_on(docs(
        &args.node,
        &args.admin_key,
        &sizes,
        args.runs,
        &args.out_dir,
    ))?
}

/// The seed system's figures (seconds): size in MB, upload (hash + anchor), retrieval.
const SEED: [(u64, f64, f64); 8] = [
    (1, 2.18, 2.12),
    (2, 2.75, 2.33),
    (5, 3.24, 2.16),
    (10, 3.67, 2.59),
    (20, 3.88, 2.71),
    (50, 4.12, 2.79),
    (100, 4.35, 2.86),
    (500, 5.14, 2.97),
];

/// Parses `1MB,2MB,500MB` (MB = 2^20 bytes).
pub fn parse_sizes(list: &str) -> Result<Vec<u64>> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            let n = s
                .strip_suffix("MB")
                .or_else(|| s.strip_suffix("mb"))
                .unwrap_or(s);
            let mb: u64 = n
                .parse()
                .with_context(|| format!("--sizes: {s:?} is not a size like 5MB"))?;
            if mb == 0 || mb > 4096 {
                bail!("--sizes: {s} must be 1MB to 4096MB");
            }
            Ok(mb)
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn write_file(path: &Path, mb: u64) -> Result<()> {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut block = vec![0u8; 1 << 20];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ mb;
    for _ in 0..mb {
        for chunk in block.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
        f.write_all(&block)?;
    }
    f.flush()?;
    f.get_ref().sync_all()?;
    Ok(())
}

async fn peak_rss(node: &str) -> Option<(u64, u64)> {
    let text = medchain_app::client::http_builder(None)
        .ok()?
        .build()
        .ok()?
        .get(format!("{node}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let get = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    Some((
        get("medchain_process_resident_bytes ")?,
        get("medchain_process_peak_resident_bytes ")?,
    ))
}

/// Runs the benchmark.
pub async fn docs(
    node: &str,
    admin_key: &Path,
    sizes: &[u64],
    runs: usize,
    out_dir: &Path,
) -> Result<()> {
    let runs = runs.max(1);
    let admin = medchain_app::keyfile::read(admin_key).with_context(|| {
        format!(
            "the consortium administrator's key ({})",
            admin_key.display()
        )
    })?;
    let client = Client::new(node)?;
    let chain = client.chain_id().await?;
    let scratch = std::env::temp_dir().join(format!("medchain-bench-docs-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let result = run(
        &client, node, &chain, &admin, sizes, runs, out_dir, &scratch,
    )
    .await;
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

#[allow(clippy::too_many_arguments)]
async fn run(
    client: &Client,
    node: &str,
    chain: &str,
    admin: &SecretKey,
    sizes: &[u64],
    runs: usize,
    out_dir: &Path,
    scratch: &Path,
) -> Result<()> {
    let (hospital, doctor, patient) = (
        SecretKey::generate(&mut rand::rngs::OsRng),
        SecretKey::generate(&mut rand::rngs::OsRng),
        SecretKey::generate(&mut rand::rngs::OsRng),
    );
    let doctor_file = scratch.join("doctor.json");
    let patient_file = scratch.join("patient.json");
    medchain_app::keyfile::write(&doctor_file, &doctor, true)?;
    medchain_app::keyfile::write(&patient_file, &patient, true)?;
    let tx = |key: &SecretKey, op: EhrOp| {
        signed_tx(
            chain,
            medchain_ehr::chaincode::NAME,
            medchain_ehr::Ehr::payload(&op),
            key,
        )
    };
    eprintln!("setting up a hospital, a doctor, a patient and a grant...");
    let steps = [
        (
            &hospital,
            EhrOp::RegisterHospital(HospitalProfile {
                name: "Benchmark Hospital".into(),
                address: "-".into(),
                contact: "-".into(),
                treatments: vec![],
            }),
        ),
        (
            admin,
            EhrOp::ApproveHospital {
                hospital: hospital.public(),
            },
        ),
        (
            &hospital,
            EhrOp::RegisterDoctor {
                doctor: doctor.public(),
                profile_commitment: sha256(b"benchmark doctor"),
            },
        ),
        (
            &patient,
            EhrOp::RegisterPatient {
                profile_commitment: sha256(&rand::random::<[u8; 32]>()),
                profile_blob: None,
            },
        ),
        (
            &patient,
            EhrOp::Grant {
                grantee: hospital.public(),
                scopes: vec![Scope::Documents],
                write: true,
                expires_ms: medchain_app::now_ms() + 24 * 3600 * 1000,
            },
        ),
    ];
    for (key, op) in steps {
        client.commit_one(tx(key, op)).await?;
    }
    let idle = peak_rss(node).await;
    let mut rows = Vec::new();
    println!("| size | seed upload | upload | openssl dgst -sha256 | upload / reference | synced copy | seed retrieval | retrieval + verify | retrieval / reference | read again | again / reference |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for &mb in sizes {
        let file = scratch.join(format!("doc-{mb}MB.bin"));
        write_file(&file, mb)?;
        let (mut reference, mut up, mut down, mut again, mut synced) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..runs {
            let t = Instant::now();
            let out = std::process::Command::new("openssl")
                .args(["dgst", "-sha256"])
                .arg(&file)
                .output()
                .context("openssl is needed for the reference (scripts/install-deps.sh)")?;
            if !out.status.success() {
                bail!("openssl dgst failed");
            }
            reference.push(t.elapsed().as_secs_f64());
            let id = medchain_ehr::records::new_id();
            let t = Instant::now();
            ehr_doc_upload(
                node,
                &doctor_file,
                DocUpload {
                    file: file.clone(),
                    doc_id: id.clone(),
                    patient: patient.public().to_hex(),
                    kind: DocKind::Report,
                    supersedes: None,
                },
                true,
            )
            .await?;
            up.push(t.elapsed().as_secs_f64());
            let back = scratch.join("back.bin");
            let t = Instant::now();
            ehr_doc_get(node, &patient_file, &id, &back, true).await?;
            down.push(t.elapsed().as_secs_f64());
            std::fs::remove_file(&back).ok();
            // The same document read again at once: the node dropped the pages it served, so
            // this read comes from its disk, which may still be writing the upload.
            let t = Instant::now();
            ehr_doc_get(node, &patient_file, &id, &back, true).await?;
            again.push(t.elapsed().as_secs_f64());
            std::fs::remove_file(&back).ok();
            // A second reference: copying the file and syncing it on this machine's disk, the
            // durable write that an upload includes and `openssl dgst` does not.
            let copy = scratch.join("synced.bin");
            let t = Instant::now();
            std::io::copy(
                &mut std::fs::File::open(&file)?,
                &mut std::fs::File::create(&copy)?,
            )?;
            std::fs::File::open(&copy)?.sync_all()?;
            synced.push(t.elapsed().as_secs_f64());
            std::fs::remove_file(&copy).ok();
        }
        std::fs::remove_file(&file).ok();
        let (r, u, d, a, w) = (
            median(reference),
            median(up),
            median(down),
            median(again),
            median(synced),
        );
        let seed = SEED.iter().find(|s| s.0 == mb);
        let fmt_seed = |v: Option<f64>| v.map_or("—".to_owned(), |v| format!("{v:.2} s"));
        println!(
            "| {mb} MB | {} | {:.1} ms | {:.1} ms | {:.2}× | {:.1} ms | {} | {:.1} ms | {:.2}× | {:.1} ms | {:.2}× |",
            fmt_seed(seed.map(|s| s.1)),
            u * 1e3,
            r * 1e3,
            u / r,
            w * 1e3,
            fmt_seed(seed.map(|s| s.2)),
            d * 1e3,
            d / r,
            a * 1e3,
            a / r
        );
        rows.push(serde_json::json!({
            "size_mb": mb,
            "runs": runs,
            "upload_ms": u * 1e3,
            "retrieval_ms": d * 1e3,
            "openssl_sha256_ms": r * 1e3,
            "upload_over_reference": u / r,
            "retrieval_over_reference": d / r,
            "retrieval_repeat_ms": a * 1e3,
            "retrieval_repeat_over_reference": a / r,
            "synced_copy_ms": w * 1e3,
            "seed_upload_s": seed.map(|s| s.1),
            "seed_retrieval_s": seed.map(|s| s.2),
        }));
    }
    let after = peak_rss(node).await;
    let memory = match (idle, after) {
        (Some((rss, _)), Some((_, peak))) => {
            let above = peak.saturating_sub(rss);
            println!(
                "node memory: idle {} MiB, peak {} MiB ({} MiB above idle; the peak is over the node's life)",
                rss >> 20,
                peak >> 20,
                above >> 20
            );
            Some(above)
        }
        _ => None,
    };
    std::fs::create_dir_all(out_dir)?;
    let json =
        serde_json::json!({ "node": node, "rows": rows, "node_peak_above_idle_bytes": memory });
    std::fs::write(out_dir.join("docs.json"), serde_json::to_vec_pretty(&json)?)?;
    let mut csv = String::from(
        "size_mb,runs,upload_ms,retrieval_ms,retrieval_repeat_ms,openssl_sha256_ms,synced_copy_ms,seed_upload_s,seed_retrieval_s\n",
    );
    for r in &rows {
        csv.push_str(&format!(
            "{},{},{:.3},{:.3},{:.3},{:.3},{:.3},{},{}\n",
            r["size_mb"],
            r["runs"],
            r["upload_ms"].as_f64().unwrap_or(0.0),
            r["retrieval_ms"].as_f64().unwrap_or(0.0),
            r["retrieval_repeat_ms"].as_f64().unwrap_or(0.0),
            r["openssl_sha256_ms"].as_f64().unwrap_or(0.0),
            r["synced_copy_ms"].as_f64().unwrap_or(0.0),
            r["seed_upload_s"],
            r["seed_retrieval_s"]
        ));
    }
    std::fs::write(out_dir.join("docs.csv"), csv)?;
    eprintln!(
        "wrote {} and {}",
        out_dir.join("docs.csv").display(),
        out_dir.join("docs.json").display()
    );
    Ok(())
}
