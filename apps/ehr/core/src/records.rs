//! Names of the vault's records: under which id a node keeps the wrapped keys of a document, a
//! profile or a case, and which also binds each wrapped key to its record (the wrapping's
//! context), so a key wrapped for one record cannot be passed off as another's.

use medchain_types::{is_valid_name, PublicKey};

/// The record id of a patient's profile.
pub fn profile_id(patient: &PublicKey) -> String {
    format!("profile-{}", patient.to_hex())
}

/// The record id of case `case_id` of `patient`.
pub fn case_id(patient: &PublicKey, case_id: &str) -> String {
    format!("case-{}-{case_id}", patient.to_hex())
}

/// Whether `id` is a record id: a document id (a chaincode-validated name), `profile-<64 hex>`
/// or `case-<64 hex>-<name>`. Never a path.
pub fn is_valid(id: &str) -> bool {
    let pseudonym = |k: &str| k.len() == 64 && k.bytes().all(|b| b.is_ascii_hexdigit());
    is_valid_name(id, 64)
        || id.strip_prefix("profile-").is_some_and(pseudonym)
        || id.strip_prefix("case-").is_some_and(|rest| {
            rest.split_once('-')
                .is_some_and(|(p, c)| pseudonym(p) && is_valid_name(c, 64))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_ids_are_names_never_paths() {
        let p = PublicKey([7; 32]);
        assert!(is_valid(&profile_id(&p)));
        assert!(is_valid(&case_id(&p, "visit-1")));
        assert!(is_valid("scan-1"));
        let long = format!("case-{}-{}", p.to_hex(), "c".repeat(64));
        assert!(is_valid(&long), "a case id is longer than a name");
        for bad in ["../../node", "", "a/b", "Scan-1", &"x".repeat(65)] {
            assert!(!is_valid(bad), "{bad:?}");
        }
    }
}
