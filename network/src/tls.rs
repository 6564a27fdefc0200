//! TLS identities and peer authentication.
//!
//! A node's TLS certificate is self-signed with its ed25519 node key (rcgen), so there is no
//! certificate authority and nothing to manage beyond the key. Both sides of every connection
//! present a certificate; each side extracts the ed25519 key from the peer's certificate and
//! admits it only if it is a consortium member (the server side) or exactly the member it dialled
//! (the client side). The TLS 1.3 `CertificateVerify` signature, checked by rustls/webpki against
//! the same certificate, proves the peer holds that key. Certificate dates and names are not
//! checked: membership is the whole trust decision.

use crate::metrics::Metrics;
use medchain_types::{PublicKey, SecretKey};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{
    verify_tls12_signature, verify_tls13_signature, CryptoProvider, WebPkiSupportedAlgorithms,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use std::collections::BTreeSet;
use std::sync::Arc;

/// The ALPN protocol id of medchain's transport.
pub const ALPN: &[u8] = b"medchain/1";
/// The TLS server name every node uses (identity is the key, not the name).
pub const SERVER_NAME: &str = "medchain";

/// PKCS#8 v1 wrapping of an ed25519 seed (RFC 8410 §7): this prefix, then the 32-byte seed.
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];
/// SubjectPublicKeyInfo of an ed25519 key (RFC 8410 §4): this prefix, then the 32-byte key.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// A node's TLS credentials, derived from its node key.
pub struct Identity {
    /// The node's public key.
    pub public: PublicKey,
    cert: CertificateDer<'static>,
    pkcs8: Vec<u8>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identity({})", self.public)
    }
}

impl Identity {
    /// Builds the self-signed certificate for `key`.
    pub fn new(key: &SecretKey) -> Result<Identity, rcgen::Error> {
        let mut pkcs8 = ED25519_PKCS8_PREFIX.to_vec();
        pkcs8.extend_from_slice(&key.seed());
        let der = PrivatePkcs8KeyDer::from(pkcs8.clone());
        let key_pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&der, &rcgen::PKCS_ED25519)?;
        let mut params = rcgen::CertificateParams::new(vec![SERVER_NAME.to_owned()])?;
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("medchain node {}", key.public()),
        );
        let cert = params.self_signed(&key_pair)?;
        let identity = Identity {
            public: key.public(),
            cert: cert.der().clone(),
            pkcs8,
        };
        debug_assert_eq!(peer_key(&identity.cert), Some(identity.public));
        Ok(identity)
    }

    fn chain_and_key(&self) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        (
            vec![self.cert.clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.pkcs8.clone())),
        )
    }
}

/// One DER tag-length-value.
struct Tlv<'a> {
    tag: u8,
    /// The value bytes.
    content: &'a [u8],
    /// What follows it.
    rest: &'a [u8],
    /// Tag, length and content.
    whole: &'a [u8],
}

/// Reads one TLV with a definite length of up to 4 bytes.
fn der_tlv(input: &[u8]) -> Option<Tlv<'_>> {
    let (&tag, after_tag) = input.split_first()?;
    let (&first, mut after_len) = after_tag.split_first()?;
    let len = if first < 0x80 {
        first as usize
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || after_len.len() < n {
            return None;
        }
        let mut len = 0usize;
        for &b in &after_len[..n] {
            len = (len << 8) | b as usize;
        }
        after_len = &after_len[n..];
        len
    };
    if after_len.len() < len {
        return None;
    }
    let header = input.len() - after_len.len();
    Some(Tlv {
        tag,
        content: &after_len[..len],
        rest: &after_len[len..],
        whole: &input[..header + len],
    })
}

/// The ed25519 key in an X.509 certificate's SubjectPublicKeyInfo, found by walking the
/// structure field by field (RFC 5280 §4.1), never by searching for bytes: a key planted in
/// another field (a name, an extension) is never taken for the certificate's key.
pub fn peer_key(cert: &[u8]) -> Option<PublicKey> {
    const SEQUENCE: u8 = 0x30;
    let outer = der_tlv(cert)?;
    if outer.tag != SEQUENCE || !outer.rest.is_empty() {
        return None;
    }
    let tbs = der_tlv(outer.content)?;
    if tbs.tag != SEQUENCE {
        return None;
    }
    let mut fields = tbs.content;
    // version [0] EXPLICIT, optional
    if fields.first() == Some(&0xa0) {
        fields = der_tlv(fields)?.rest;
    }
    // serialNumber INTEGER, signature AlgorithmIdentifier, issuer Name, validity, subject Name
    for expected in [0x02, SEQUENCE, SEQUENCE, SEQUENCE, SEQUENCE] {
        let field = der_tlv(fields)?;
        if field.tag != expected {
            return None;
        }
        fields = field.rest;
    }
    let spki = der_tlv(fields)?;
    if spki.tag != SEQUENCE
        || spki.whole.len() != ED25519_SPKI_PREFIX.len() + 32
        || !spki.whole.starts_with(&ED25519_SPKI_PREFIX)
    {
        return None;
    }
    PublicKey::from_slice(&spki.whole[ED25519_SPKI_PREFIX.len()..])
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Who the verifier admits.
#[derive(Debug)]
enum Admit {
    /// Any member (server side: whoever dials in).
    AnyOf(Arc<BTreeSet<PublicKey>>),
    /// Exactly this key (client side: the member we dialled).
    Exactly(PublicKey),
}

/// Checks peer certificates against the consortium's keys.
#[derive(Debug)]
struct MemberVerifier {
    admit: Admit,
    algorithms: WebPkiSupportedAlgorithms,
    metrics: Arc<Metrics>,
}

impl MemberVerifier {
    fn check(&self, cert: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        let Some(key) = peer_key(cert) else {
            self.metrics.reject("bad_certificate");
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::BadEncoding,
            ));
        };
        let admitted = match &self.admit {
            Admit::AnyOf(members) => members.contains(&key),
            Admit::Exactly(expected) => *expected == key,
        };
        if admitted {
            Ok(())
        } else {
            self.metrics.reject("unknown_key");
            tracing::warn!(peer = %key, "refused a TLS handshake from a key that is not a consortium member");
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }
}

impl ServerCertVerifier for MemberVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity)
            .map(|()| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

impl ClientCertVerifier for MemberVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity)
            .map(|()| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

/// The rustls server configuration: TLS 1.3 only, client certificates required and checked
/// against `members`.
pub fn server_config(
    identity: &Identity,
    members: Arc<BTreeSet<PublicKey>>,
    metrics: Arc<Metrics>,
) -> Result<rustls::ServerConfig, rustls::Error> {
    let provider = provider();
    let verifier = MemberVerifier {
        admit: Admit::AnyOf(members),
        algorithms: provider.signature_verification_algorithms,
        metrics,
    };
    let (chain, key) = identity.chain_and_key();
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(config)
}

/// The rustls client configuration for dialling exactly `peer`.
pub fn client_config(
    identity: &Identity,
    peer: PublicKey,
    metrics: Arc<Metrics>,
) -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = provider();
    let verifier = MemberVerifier {
        admit: Admit::Exactly(peer),
        algorithms: provider.signature_verification_algorithms,
        metrics,
    };
    let (chain, key) = identity.chain_and_key();
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_auth_cert(chain, key)?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_certificate_carries_the_node_key() {
        for seed in 0..8u8 {
            let key = SecretKey::from_seed([seed; 32]);
            let id = Identity::new(&key).unwrap();
            assert_eq!(peer_key(&id.cert), Some(key.public()));
        }
    }

    #[test]
    fn a_key_planted_in_the_subject_is_not_taken() {
        // A certificate for key A whose subject name contains key B's SPKI bytes: a byte search
        // would find B first; the structural walk finds A.
        let a = SecretKey::from_seed([1; 32]);
        let b = SecretKey::from_seed([2; 32]);
        let mut planted = ED25519_SPKI_PREFIX.to_vec();
        planted.extend_from_slice(b.public().as_bytes());
        let pkcs8 = [ED25519_PKCS8_PREFIX.as_slice(), &a.seed()].concat();
        let kp = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
            &PrivatePkcs8KeyDer::from(pkcs8),
            &rcgen::PKCS_ED25519,
        )
        .unwrap();
        let mut params = rcgen::CertificateParams::new(vec![SERVER_NAME.to_owned()]).unwrap();
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            rcgen::DnValue::PrintableString(rcgen::string::PrintableString::try_from("x").unwrap()),
        );
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&planted));
        let cert = params.self_signed(&kp).unwrap();
        let der = cert.der().as_ref();
        assert!(
            der.windows(planted.len()).any(|w| w == planted.as_slice()),
            "the planted bytes are in the certificate"
        );
        assert_eq!(peer_key(der), Some(a.public()));
    }

    #[test]
    fn malformed_certificates_yield_no_key() {
        let id = Identity::new(&SecretKey::from_seed([3; 32])).unwrap();
        let der = id.cert.as_ref();
        for cut in [0, 1, 2, 10, der.len() / 2, der.len() - 1] {
            assert_eq!(peer_key(&der[..cut]), None, "truncated at {cut}");
        }
        let mut longer = der.to_vec();
        longer.push(0);
        assert_eq!(peer_key(&longer), None, "trailing bytes");
        assert_eq!(
            peer_key(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]),
            None,
            "huge length"
        );
    }
}
