//! The vault's upload (hash + encrypt + store, synced) and retrieval (decrypt + re-hash) by file
//! size, with `openssl dgst -sha256` of the same file timed in the same run as the reference.
//! Medians of `MEDCHAIN_VAULT_RUNS` runs (default 5). Sizes from `MEDCHAIN_VAULT_SIZES_MB`
//! (default `1,10,100,500`). Run: `cargo bench -p medchain-bench --bench vault`.
//!
//! This is the vault alone: the chain anchor and the HTTP transfer of `medchain bench docs`
//! come on top.

use medchain_ehr::{DocKey, Vault};
use std::io::Write;
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let runs: usize = std::env::var("MEDCHAIN_VAULT_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let sizes: Vec<u64> = std::env::var("MEDCHAIN_VAULT_SIZES_MB")
        .unwrap_or_else(|_| "1,10,100,500".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let dir = tempfile::tempdir().expect("temp dir");
    let vault = Vault::open(dir.path().join("vault")).expect("vault");
    println!(
        "| size | openssl dgst -sha256 | vault upload | ratio | vault retrieval + verify | ratio |"
    );
    println!("|---|---|---|---|---|---|");
    for mb in sizes {
        let path = dir.path().join(format!("doc-{mb}MB"));
        {
            let mut f = std::fs::File::create(&path).expect("create");
            let mut block = vec![0u8; 1 << 20];
            for i in 0..mb {
                for (j, b) in block.iter_mut().enumerate() {
                    *b = (j as u64 ^ i.wrapping_mul(0x9e37_79b9)) as u8;
                }
                f.write_all(&block).expect("write");
            }
            f.sync_all().expect("sync");
        }
        let (mut reference, mut up, mut down) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..runs {
            let t = Instant::now();
            let out = std::process::Command::new("openssl")
                .args(["dgst", "-sha256"])
                .arg(&path)
                .output()
                .expect("openssl is installed (scripts/install-deps.sh)");
            assert!(out.status.success());
            reference.push(t.elapsed().as_secs_f64());

            let key = DocKey::generate();
            let t = Instant::now();
            let file = std::fs::File::open(&path).expect("open");
            let stored = vault.put(file, &key, &|_| {}).expect("put");
            up.push(t.elapsed().as_secs_f64());

            let t = Instant::now();
            let h = vault
                .get(&stored.blob, &key, std::io::sink(), &|_| {})
                .expect("get");
            assert_eq!(h, stored.plaintext_sha256);
            down.push(t.elapsed().as_secs_f64());
            vault.erase(&stored.blob).expect("erase");
        }
        let (r, u, d) = (median(reference), median(up), median(down));
        println!(
            "| {mb} MB | {:.1} ms | {:.1} ms | {:.2}× | {:.1} ms | {:.2}× |",
            r * 1e3,
            u * 1e3,
            u / r,
            d * 1e3,
            d / r
        );
        std::fs::remove_file(&path).ok();
    }
}
