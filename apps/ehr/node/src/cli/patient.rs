//! Patients: `medchain ehr patient register`, `profile` and `share`.

use super::common::{commit_ehr, ehr_json_as, put_keys};
use super::small::{fetch_small, seal_small, upload_small, SmallRecord};
use anyhow::{bail, Context, Result};
use medchain_app::client::Client;
use medchain_ehr::records;
use medchain_types::SecretKey;
use rand::RngCore;

/// A patient's profile: personal data, only ever stored encrypted in the vault. The random
/// salt makes the on-chain commitment (the SHA-256 of this document) unguessable.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Profile {
    /// Random, hex.
    pub salt: String,
    /// Full name.
    pub name: String,
    /// Email.
    pub email: String,
    /// Date of birth (YYYY-MM-DD).
    pub date_of_birth: String,
    /// Gender.
    pub gender: String,
    /// Blood group.
    pub blood_group: String,
    /// Height in centimetres.
    pub height_cm: Option<u32>,
    /// Phone or other contact.
    pub contact: String,
    /// Postal address.
    pub address: String,
    /// A photo, as a `data:image/png;base64,…` or `data:image/jpeg;base64,…` URL (see
    /// [`photo_data_url`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub photo: Option<String>,
}

/// The largest photo a profile holds, in bytes (the whole encrypted profile is at most 1 MiB).
pub const PHOTO_MAX: u64 = 512 * 1024;

/// Reads a PNG or JPEG file as a `data:` URL for [`Profile::photo`]; refuses anything else and
/// anything over [`PHOTO_MAX`].
pub fn photo_data_url(path: &std::path::Path) -> Result<String> {
    use base64::Engine;
    let size = std::fs::metadata(path)
        .with_context(|| format!("the photo {}", path.display()))?
        .len();
    if size > PHOTO_MAX {
        bail!(
            "the photo {} is {size} bytes; at most {PHOTO_MAX} fit in a profile",
            path.display()
        );
    }
    let bytes = std::fs::read(path).with_context(|| format!("the photo {}", path.display()))?;
    let kind = if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        "png"
    } else if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        "jpeg"
    } else {
        bail!("the photo {} is neither a PNG nor a JPEG", path.display());
    };
    Ok(format!(
        "data:image/{kind};base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    ))
}

/// `medchain ehr patient register`: encrypts the profile locally, stores it in the vault, and
/// registers the pseudonym with the profile's salted commitment.
pub async fn ehr_patient_register(
    node: &str,
    key_file: &std::path::Path,
    mut profile: Profile,
) -> Result<()> {
    use medchain_ehr::wrap_key;
    let signer = medchain_app::keyfile::read(key_file)?;
    let client = Client::new(node)?;
    let chain = client.chain_id().await?;
    let mut salt = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    profile.salt = hex::encode(salt);
    let plain = serde_json::to_vec(&profile)?;
    // The chain first: nodes store a patient's blob only once it is anchored for that patient.
    let (key, stored, bytes) = seal_small(&plain)?;
    {
        let op = medchain_ehr::EhrOp::RegisterPatient {
            profile_commitment: stored.plaintext_sha256,
            profile_blob: Some(stored.blob),
        };
        let receipt = commit_ehr(&client, &chain, &signer, &op).await?;
        upload_small(&client, &chain, &signer, &stored.blob, bytes, "the profile").await?;
        let id = records::profile_id(&signer.public());
        let wrapped = wrap_key(&key, &signer.public(), id.as_bytes())?;
        put_keys(
            &client,
            &signer,
            &chain,
            &format!("/api/v1/ehr/profiles/{}/keys", signer.public()),
            &[wrapped],
        )
        .await?;
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "patient": signer.public(),
                "profile_commitment": stored.plaintext_sha256,
                "profile_blob": stored.blob,
                "height": receipt["height"],
            }))?
        );
        Ok(())
    }
}

/// Fetches and decrypts a patient's profile as `reader` (logging the read unless the reader is
/// the patient) and checks it against the on-chain commitment.
pub async fn fetch_profile(
    client: &Client,
    chain: &str,
    reader: &SecretKey,
    patient: &medchain_types::PublicKey,
) -> Result<(medchain_ehr::DocKey, Profile)> {
    let record = ehr_json_as(
        client,
        chain,
        reader,
        &medchain_ehr::EhrQuery::Patient(*patient),
    )
    .await?;
    let commitment: medchain_types::Hash =
        serde_json::from_value(record["profile_commitment"].clone()).context("no such patient")?;
    let blob: medchain_types::Hash = serde_json::from_value(record["profile_blob"].clone())
        .context("the patient registered no profile")?;
    let rec = SmallRecord {
        patient: *patient,
        object: "profile".into(),
        base: format!("/api/v1/ehr/profiles/{patient}"),
        context: records::profile_id(patient),
        blob,
        sha256: commitment,
        what: "the profile",
    };
    let (key, plain) = fetch_small(client, chain, reader, &rec).await?;
    Ok((key, serde_json::from_slice(&plain)?))
}

/// `medchain ehr patient profile`: prints a patient's profile (checked against the chain); its
/// photo, if any, goes to `photo_out` (decoded) or is only described.
pub async fn ehr_patient_profile(
    node: &str,
    key_file: &std::path::Path,
    patient: &str,
    photo_out: Option<&std::path::Path>,
) -> Result<()> {
    use base64::Engine;
    let patient: medchain_types::PublicKey = patient
        .parse()
        .map_err(|e| anyhow::anyhow!("patient: {e}"))?;
    let reader = medchain_app::keyfile::read(key_file)?;
    let client = Client::new(node)?;
    let chain = client.chain_id().await?;
    let (_, mut profile) = fetch_profile(&client, &chain, &reader, &patient).await?;
    if let Some(url) = profile.photo.take() {
        let (kind, data) = url
            .strip_prefix("data:image/")
            .and_then(|rest| rest.split_once(";base64,"))
            .context("the profile's photo is not a base64 data: URL")?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data)
            .context("the profile's photo is not valid base64")?;
        profile.photo = Some(match photo_out {
            Some(path) => {
                std::fs::write(path, &bytes)
                    .with_context(|| format!("writing the photo to {}", path.display()))?;
                path.display().to_string()
            }
            None => format!(
                "image/{kind}, {} bytes (save it with --photo-out FILE)",
                bytes.len()
            ),
        });
    }
    println!("{}", serde_json::to_string_pretty(&profile)?);
    Ok(())
}

/// `medchain ehr patient share`: the patient wraps its profile key for a hospital (which also
/// needs a `Profile` grant to read it).
pub async fn ehr_patient_share(node: &str, key_file: &std::path::Path, with: &str) -> Result<()> {
    let with: medchain_types::PublicKey =
        with.parse().map_err(|e| anyhow::anyhow!("--with: {e}"))?;
    let me = medchain_app::keyfile::read(key_file)?;
    let client = Client::new(node)?;
    let chain = client.chain_id().await?;
    let (key, _) = fetch_profile(&client, &chain, &me, &me.public()).await?;
    let id = records::profile_id(&me.public());
    let wrapped = medchain_ehr::wrap_key(&key, &with, id.as_bytes())?;
    put_keys(
        &client,
        &me,
        &chain,
        &format!("/api/v1/ehr/profiles/{}/keys", me.public()),
        &[wrapped],
    )
    .await?;
    println!("profile key shared with {with}");
    Ok(())
}
