//! Sealed notes: the free text of an operation (why a hospital asks for access, why a doctor
//! breaks the glass) encrypted for its readers before it goes on the chain, so that no node
//! ever holds it in clear.
//!
//! A note is sealed under a fresh random key (AES-256-GCM, used once, so its nonce is zero;
//! associated data `medchain-ehr/note/v1`), and that key is wrapped for each reader as a
//! document key is ([`crate::wrap_key`], context `note`). Layout, in bytes:
//!
//! | offset | length | what |
//! |---|---|---|
//! | 0 | 1 | version: 1 |
//! | 1 | 1 | readers, 1 to [`NOTE_READERS_MAX`] |
//! | 2 | 112 per reader | reader key (32), ephemeral X25519 key (32), sealed key (48) |
//! | then | the rest | the ciphertext: text (UTF-8, at most [`NOTE_TEXT_MAX`] bytes) and 16-byte tag |
//!
//! Stored in a record's text field, a note is [`SEALED_PREFIX`] followed by its bytes in hex.

use crate::keywrap::{unwrap_key, wrap_key, WrappedKey};
use crate::vault::{DocKey, VaultError};
use medchain_types::{PublicKey, SecretKey};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use serde::{Deserialize, Serialize};

/// Most readers of one note.
pub const NOTE_READERS_MAX: usize = 4;
/// Most bytes of a note's text.
pub const NOTE_TEXT_MAX: usize = 2048;
/// What a sealed note stored in a text field starts with.
pub const SEALED_PREFIX: &str = "sealed:";

const VERSION: u8 = 1;
const READER_LEN: usize = 32 + 32 + 48;
const TAG_LEN: usize = 16;
const AAD: &[u8] = b"medchain-ehr/note/v1";
const CONTEXT: &[u8] = b"note";

/// A note sealed for its readers (see the module docs for the layout). JSON: hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "NoteRepr", into = "NoteRepr")]
pub struct SealedNote(Vec<u8>);

#[derive(Serialize, Deserialize)]
#[serde(transparent)]
struct NoteRepr(#[serde(with = "medchain_types::serde_bytes")] Vec<u8>);

impl TryFrom<NoteRepr> for SealedNote {
    type Error = String;
    fn try_from(r: NoteRepr) -> Result<SealedNote, String> {
        SealedNote::from_bytes(r.0)
    }
}

impl From<SealedNote> for NoteRepr {
    fn from(n: SealedNote) -> NoteRepr {
        NoteRepr(n.0)
    }
}

fn aead(key: &DocKey) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key.0).expect("32-byte AES-256 key"))
}

impl SealedNote {
    /// Seals `text` for `readers` (1 to [`NOTE_READERS_MAX`], duplicates dropped).
    pub fn seal(text: &str, readers: &[PublicKey]) -> Result<SealedNote, String> {
        if text.len() > NOTE_TEXT_MAX {
            return Err(format!("a note is at most {NOTE_TEXT_MAX} bytes"));
        }
        let mut unique: Vec<PublicKey> = Vec::new();
        for r in readers {
            if !unique.contains(r) {
                unique.push(*r);
            }
        }
        if unique.is_empty() || unique.len() > NOTE_READERS_MAX {
            return Err(format!("a note has 1 to {NOTE_READERS_MAX} readers"));
        }
        let key = DocKey::generate();
        let mut out = vec![VERSION, unique.len() as u8];
        for r in &unique {
            let w = wrap_key(&key, r, CONTEXT)
                .map_err(|_| format!("{r} is not a key a note can be sealed for"))?;
            out.extend_from_slice(w.reader.as_bytes());
            out.extend_from_slice(&w.ephemeral);
            out.extend_from_slice(&w.sealed);
        }
        let mut body = text.as_bytes().to_vec();
        aead(&key)
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key([0; 12]),
                Aad::from(AAD),
                &mut body,
            )
            .map_err(|_| "sealing failed".to_owned())?;
        out.extend_from_slice(&body);
        Ok(SealedNote(out))
    }

    /// A note from its bytes, checked for form (not opened).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<SealedNote, String> {
        let n = *bytes.get(1).ok_or("a sealed note is cut short")? as usize;
        if bytes[0] != VERSION {
            return Err(format!(
                "sealed note version {} (this build reads 1)",
                bytes[0]
            ));
        }
        if n == 0 || n > NOTE_READERS_MAX {
            return Err(format!("a note has 1 to {NOTE_READERS_MAX} readers"));
        }
        let text = bytes
            .len()
            .checked_sub(2 + n * READER_LEN + TAG_LEN)
            .ok_or("a sealed note is cut short")?;
        if text > NOTE_TEXT_MAX {
            return Err(format!("a note is at most {NOTE_TEXT_MAX} bytes"));
        }
        let note = SealedNote(bytes);
        if note.wrapped().any(|w| w.reader.x25519().is_none()) {
            return Err("a note's reader is not a key".to_owned());
        }
        Ok(note)
    }

    fn wrapped(&self) -> impl Iterator<Item = WrappedKey> + '_ {
        let n = self.0[1] as usize;
        self.0[2..2 + n * READER_LEN]
            .chunks_exact(READER_LEN)
            .map(|c| WrappedKey {
                reader: PublicKey(c[..32].try_into().expect("32 bytes")),
                ephemeral: c[32..64].try_into().expect("32 bytes"),
                sealed: c[64..].to_vec(),
            })
    }

    /// Who can open it.
    pub fn readers(&self) -> Vec<PublicKey> {
        self.wrapped().map(|w| w.reader).collect()
    }

    /// The text, opened with a reader's secret key.
    pub fn open(&self, me: &SecretKey) -> Result<String, VaultError> {
        let w = self
            .wrapped()
            .find(|w| w.reader == me.public())
            .ok_or(VaultError::Unwrap)?;
        let key = unwrap_key(&w, me, CONTEXT)?;
        let n = self.0[1] as usize;
        let mut body = self.0[2 + n * READER_LEN..].to_vec();
        let plain = aead(&key)
            .open_in_place(
                Nonce::assume_unique_for_key([0; 12]),
                Aad::from(AAD),
                &mut body,
            )
            .map_err(|_| VaultError::Unwrap)?;
        String::from_utf8(plain.to_vec()).map_err(|_| VaultError::Unwrap)
    }

    /// As stored in a record's text field: [`SEALED_PREFIX`] and the bytes in hex.
    pub fn to_field(&self) -> String {
        format!("{SEALED_PREFIX}{}", hex::encode(&self.0))
    }

    /// A note stored in a text field, if the field holds one.
    pub fn from_field(field: &str) -> Option<SealedNote> {
        let h = field.strip_prefix(SEALED_PREFIX)?;
        SealedNote::from_bytes(hex::decode(h).ok()?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_its_readers_open_a_note_and_damage_is_refused() {
        let (a, b, c) = (
            SecretKey::from_seed([1; 32]),
            SecretKey::from_seed([2; 32]),
            SecretKey::from_seed([3; 32]),
        );
        let n =
            SealedNote::seal("unconscious in A&E", &[a.public(), b.public(), a.public()]).unwrap();
        assert_eq!(
            n.readers(),
            vec![a.public(), b.public()],
            "duplicates dropped"
        );
        assert_eq!(n.open(&a).unwrap(), "unconscious in A&E");
        assert_eq!(n.open(&b).unwrap(), "unconscious in A&E");
        assert!(n.open(&c).is_err(), "not a reader");
        let field = n.to_field();
        assert!(!field.contains("A&E") && !field.contains(&hex::encode("unconscious")));
        assert_eq!(SealedNote::from_field(&field), Some(n.clone()));
        assert_eq!(SealedNote::from_field("unconscious in A&E"), None);
        let mut bad = n.0.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(SealedNote(bad).open(&a).is_err(), "tampered ciphertext");
        let json = serde_json::to_string(&n).unwrap();
        assert_eq!(serde_json::from_str::<SealedNote>(&json).unwrap(), n);
        for (bytes, why) in [
            (vec![], "empty"),
            (vec![1], "no count"),
            (vec![2, 1], "version"),
            (vec![1, 0], "no reader"),
            (vec![1, 5], "too many readers"),
            (vec![1, 1, 0, 0], "cut short"),
        ] {
            assert!(SealedNote::from_bytes(bytes).is_err(), "{why}");
        }
        assert!(SealedNote::seal(&"x".repeat(NOTE_TEXT_MAX + 1), &[a.public()]).is_err());
        assert!(SealedNote::seal("x", &[]).is_err());
        let long = SealedNote::seal(&"x".repeat(NOTE_TEXT_MAX), &[a.public()]).unwrap();
        assert_eq!(long.open(&a).unwrap().len(), NOTE_TEXT_MAX);
        assert!(SealedNote::from_bytes(long.0.clone()).is_ok());
        let mut longer = long.0;
        longer.push(0);
        assert!(SealedNote::from_bytes(longer).is_err(), "text too long");
    }
}
