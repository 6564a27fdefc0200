//! Node and client key files: JSON with the hex public key and the hex 32-byte secret seed,
//! created with mode 0600 and never overwritten unless asked.

use anyhow::{bail, Context, Result};
use medchain_types::{PublicKey, SecretKey};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

#[derive(Serialize, Deserialize)]
struct KeyFile {
    public_key: PublicKey,
    secret_key: String,
}

/// Writes `key` to `path`. Fails if the file exists, unless `overwrite`.
pub fn write(path: &Path, key: &SecretKey, overwrite: bool) -> Result<()> {
    let body = serde_json::to_string_pretty(&KeyFile {
        public_key: key.public(),
        secret_key: hex::encode(key.seed()),
    })?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create directory {}", dir.display()))?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true);
    if overwrite {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            anyhow::anyhow!(
                "{} already exists; pass --force to replace it",
                path.display()
            )
        } else {
            anyhow::anyhow!("cannot create key file {}: {e}", path.display())
        }
    })?;
    f.write_all(body.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    Ok(())
}

/// Reads a key file written by [`write`], checking that its public key matches the secret.
pub fn read(path: &Path) -> Result<SecretKey> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            anyhow::anyhow!(
                "key file {} does not exist (create one with `medchain keygen --out {}`)",
                path.display(),
                path.display()
            )
        } else {
            anyhow::anyhow!("cannot read key file {}: {e}", path.display())
        }
    })?;
    let kf: KeyFile = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a medchain key file", path.display()))?;
    let mut seed = [0u8; 32];
    hex::decode_to_slice(kf.secret_key.trim(), &mut seed)
        .with_context(|| format!("{}: secret_key must be 64 hex characters", path.display()))?;
    let key = SecretKey::from_seed(seed);
    if key.public() != kf.public_key {
        bail!("{}: public_key does not match secret_key", path.display());
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_refuse_overwrite_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.json");
        let key = SecretKey::from_seed([1; 32]);
        write(&p, &key, false).unwrap();
        assert_eq!(read(&p).unwrap().public(), key.public());
        assert!(write(&p, &key, false)
            .unwrap_err()
            .to_string()
            .contains("already exists"));
        write(&p, &SecretKey::from_seed([2; 32]), true).unwrap();
        assert_eq!(
            read(&p).unwrap().public(),
            SecretKey::from_seed([2; 32]).public()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        assert!(read(&dir.path().join("missing"))
            .unwrap_err()
            .to_string()
            .contains("does not exist"));
        std::fs::write(&p, "{}").unwrap();
        assert!(read(&p)
            .unwrap_err()
            .to_string()
            .contains("not a medchain key file"));
        let mismatched = format!(
            "{{\"public_key\":\"{}\",\"secret_key\":\"{}\"}}",
            SecretKey::from_seed([3; 32]).public(),
            hex::encode([4u8; 32])
        );
        std::fs::write(&p, mismatched).unwrap();
        assert!(read(&p).unwrap_err().to_string().contains("does not match"));
    }
}
