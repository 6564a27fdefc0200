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

/// The length of a new case or document id: 128 random bits in lowercase hex.
pub const OPAQUE_ID_LEN: usize = 32;

/// A new case or document id: 128 random bits in lowercase hex. Ids are on the chain in clear,
/// so they say nothing of the record; what a person calls it goes inside its encrypted
/// contents.
pub fn new_id() -> String {
    hex::encode(rand::random::<[u8; OPAQUE_ID_LEN / 2]>())
}

/// Whether `id` is an id as [`new_id`] makes them (the chaincode admits no other for a new
/// case or document).
pub fn is_opaque(id: &str) -> bool {
    id.len() == OPAQUE_ID_LEN && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
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

    #[test]
    fn new_ids_are_opaque_and_nothing_else_is() {
        let (a, b) = (new_id(), new_id());
        assert!(is_opaque(&a) && is_opaque(&b) && is_valid(&a));
        assert_ne!(a, b);
        let upper = a.to_uppercase();
        for bad in [&a[1..], "scan-1", &upper, &format!("{a}0"), &"g".repeat(32)] {
            assert!(!is_opaque(bad), "{bad:?}");
        }
    }
}
