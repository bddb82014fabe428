//! TLS identities and key-pinning certificate verifiers.
//!
//! There is no CA. Every process turns its own ed25519 [`KeyPair`] into a
//! self-signed X.509 certificate (rcgen, `PKCS_ED25519`) at startup, and each
//! side of a connection checks the *other* side's certificate by comparing the
//! ed25519 key inside it with a key it already trusts ("pinning"):
//!
//! * replica ↔ replica: the dialer expects exactly the genesis key of the
//!   replica it dialled ([`Pin::One`]); the acceptor accepts any genesis key
//!   ([`Pin::Set`]) and later learns the peer's `ReplicaId` from that key;
//! * client → replica: the client pins the replica's genesis key; the replica
//!   accepts any well-formed ed25519 certificate ([`Pin::Any`]), because
//!   clients are authenticated by the signatures on their transactions.
//!
//! Pinning alone would prove nothing, so the TLS 1.3 `CertificateVerify`
//! signature over the handshake transcript is still checked with the ring
//! provider: only the holder of the pinned private key can complete the
//! handshake. Intermediates are refused and TLS 1.2 is never negotiated.
//! Every config is built with `builder_with_provider(ring)`, so no
//! process-level `CryptoProvider` is needed (and none can be missing).

use super::NetError;
use crate::crypto::{KeyPair, PublicKey};
use ed25519_dalek::pkcs8::EncodePrivateKey;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls13_signature, CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

/// ALPN of the replica mesh.
pub(crate) const ALPN_REPLICA: &[u8] = b"pbft/1";
/// ALPN of the client endpoint.
pub(crate) const ALPN_CLIENT: &[u8] = b"pbft-client/2";

/// DER prefix of an ed25519 `SubjectPublicKeyInfo`:
/// `SEQUENCE(42) { SEQUENCE(5) { OID 1.3.101.112 }, BIT STRING(33) { 0 unused bits, key } }`.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// The one crypto provider (ring) used by every config and verifier.
fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// Binds a QUIC endpoint that serves `server` on `listen` and whose
/// stateless-reset key is derived from our own `key` (RFC 9000 §10.3).
///
/// quinn's default key is random per process, so after a `kill -9` and a
/// restart on the same port, the new process could not prove that the old
/// connections are gone: a peer holding one kept sending into it until its
/// idle timeout (10 s) and, when it was the side that dials, only then dialled
/// again. Meanwhile the restarted replica heard nothing from it (a kill-9
/// loop on real processes: replica 0 cut off from each restarted peer for
/// 9–10 s). With the key derived from the replica's secret, the new process
/// recognises the old connection IDs (their key is derived too) and answers
/// a packet of an old connection with a reset the peer accepts, and the peer
/// reconnects at once. `purpose` keeps the keys of the mesh and the
/// client endpoint apart.
pub(crate) fn bind_endpoint(
    listen: std::net::SocketAddr,
    server: quinn::ServerConfig,
    key: &KeyPair,
    purpose: &str,
) -> std::io::Result<quinn::Endpoint> {
    let derive = |what: &str| {
        let context = format!("pbft-ledger 2026-12 QUIC {what}, {purpose}");
        blake3::derive_key(&context, &key.seed())
    };
    let mut config = quinn::EndpointConfig::new(Arc::new(ResetKey(derive("stateless reset key"))));
    // The new process must also recognise the old connection IDs as its
    // own, or it drops their packets without answering ("invalid CID").
    let cid_key = u64::from_le_bytes(
        derive("connection ID key")[..8]
            .try_into()
            .unwrap_or_default(),
    );
    config.cid_generator(move || {
        Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
    });
    let socket = std::net::UdpSocket::bind(listen)?;
    let runtime = quinn::default_runtime()
        .ok_or_else(|| std::io::Error::other("no async runtime for the endpoint"))?;
    quinn::Endpoint::new(config, Some(server), socket, runtime)
}

/// A keyed blake3 MAC: the HMAC quinn computes stateless-reset tokens with.
struct ResetKey([u8; 32]);

impl quinn::crypto::HmacKey for ResetKey {
    fn sign(&self, data: &[u8], signature_out: &mut [u8]) {
        let mac = blake3::keyed_hash(&self.0, data);
        let n = signature_out.len().min(blake3::OUT_LEN);
        signature_out[..n].copy_from_slice(&mac.as_bytes()[..n]);
    }

    fn signature_len(&self) -> usize {
        blake3::OUT_LEN
    }

    fn verify(&self, data: &[u8], signature: &[u8]) -> Result<(), quinn::crypto::CryptoError> {
        // `blake3::Hash` compares in constant time.
        match <[u8; blake3::OUT_LEN]>::try_from(signature) {
            Ok(sig) if blake3::keyed_hash(&self.0, data) == blake3::Hash::from_bytes(sig) => Ok(()),
            _ => Err(quinn::crypto::CryptoError),
        }
    }
}

/// Our certificate and its private key, ready for rustls.
pub(crate) struct Identity {
    cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
}

impl Identity {
    /// Builds a self-signed certificate around `key`.
    pub(crate) fn new(key: &KeyPair) -> Result<Identity, NetError> {
        let pkcs8 = key
            .signing_key()
            .to_pkcs8_der()
            .map_err(|e| NetError::Tls(format!("encode pkcs8: {e}")))?;
        let der = PrivatePkcs8KeyDer::from(pkcs8.as_bytes().to_vec());
        let rc_key = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&der, &rcgen::PKCS_ED25519)
            .map_err(|e| NetError::Tls(format!("load key into rcgen: {e}")))?;
        let params = rcgen::CertificateParams::new(vec!["pbft-ledger".to_string()])
            .map_err(|e| NetError::Tls(format!("certificate params: {e}")))?;
        let cert = params
            .self_signed(&rc_key)
            .map_err(|e| NetError::Tls(format!("self-sign certificate: {e}")))?;
        Ok(Identity {
            cert: cert.der().clone(),
            key: der,
        })
    }

    fn chain(&self) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        (
            vec![self.cert.clone()],
            PrivateKeyDer::Pkcs8(self.key.clone_key()),
        )
    }
}

/// Which peer keys a verifier accepts.
#[derive(Debug, Clone)]
pub(crate) enum Pin {
    /// Exactly this key (dialing a known replica).
    One(PublicKey),
    /// Any of these keys (the genesis set, when accepting replicas).
    Set(Arc<HashSet<PublicKey>>),
    /// Any ed25519 key (clients).
    Any,
}

impl Pin {
    fn allows(&self, key: &PublicKey) -> bool {
        match self {
            Pin::One(k) => k == key,
            Pin::Set(keys) => keys.contains(key),
            Pin::Any => true,
        }
    }
}

/// Reads one DER TLV: returns (tag, content, rest). `None` on any malformation.
fn der_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// Extracts the ed25519 public key from a DER certificate with a minimal DER
/// walk: `Certificate → tbsCertificate → [version] serial sigAlg issuer
/// validity subject subjectPublicKeyInfo`, and the SPKI must be exactly the
/// 12-byte ed25519 prefix followed by the 32-byte key. Anything else
/// (another algorithm, trailing bytes, bad lengths) gives `None`.
pub(crate) fn ed25519_key_of(cert: &[u8]) -> Option<PublicKey> {
    const SEQUENCE: u8 = 0x30;
    let (tag, certificate, _) = der_tlv(cert)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, mut tbs, _) = der_tlv(certificate)?;
    if tag != SEQUENCE {
        return None;
    }
    // Optional explicit [0] version.
    if tbs.first() == Some(&0xa0) {
        tbs = der_tlv(tbs)?.2;
    }
    // serial, signature algorithm, issuer, validity, subject.
    for expected in [0x02, SEQUENCE, SEQUENCE, SEQUENCE, SEQUENCE] {
        let (tag, _, rest) = der_tlv(tbs)?;
        if tag != expected {
            return None;
        }
        tbs = rest;
    }
    let (tag, _, rest) = der_tlv(tbs)?;
    let spki = &tbs[..tbs.len() - rest.len()];
    if tag != SEQUENCE || spki.len() != 44 || spki[..12] != ED25519_SPKI_PREFIX {
        return None;
    }
    let key: [u8; 32] = spki[12..].try_into().ok()?;
    Some(PublicKey(key))
}

/// The ed25519 key of the peer of an established connection.
pub(crate) fn peer_key(conn: &quinn::Connection) -> Option<PublicKey> {
    let identity = conn.peer_identity()?;
    let certs = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    ed25519_key_of(certs.first()?.as_ref())
}

/// A server- and client-certificate verifier that pins ed25519 keys.
#[derive(Debug)]
pub(crate) struct PinnedVerifier {
    pin: Pin,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedVerifier {
    pub(crate) fn new(pin: Pin) -> Arc<PinnedVerifier> {
        Arc::new(PinnedVerifier {
            pin,
            algorithms: provider().signature_verification_algorithms,
        })
    }

    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
    ) -> Result<(), rustls::Error> {
        if !intermediates.is_empty() {
            tracing::warn!(
                target: "pbft::net",
                count = intermediates.len(),
                "rejected certificate chain with intermediates"
            );
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ));
        }
        let Some(key) = ed25519_key_of(end_entity.as_ref()) else {
            tracing::warn!(target: "pbft::net", "rejected certificate without an ed25519 key");
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::BadEncoding,
            ));
        };
        if !self.pin.allows(&key) {
            tracing::warn!(target: "pbft::net", key = ?key, "rejected certificate with an unpinned key");
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ));
        }
        Ok(())
    }

    fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }
}

/// Only ed25519 keys are ever pinned, so only ed25519 signatures are offered.
fn schemes() -> Vec<SignatureScheme> {
    vec![SignatureScheme::ED25519]
}

fn tls12_refused() -> rustls::Error {
    rustls::Error::PeerIncompatible(rustls::PeerIncompatible::Tls13RequiredForQuic)
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity, intermediates)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(tls12_refused())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        schemes()
    }
}

impl ClientCertVerifier for PinnedVerifier {
    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity, intermediates)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(tls12_refused())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        schemes()
    }
}

fn tls_err(what: &str) -> impl FnOnce(rustls::Error) -> NetError + '_ {
    move |e| NetError::Tls(format!("{what}: {e}"))
}

/// A QUIC server config: TLS 1.3 only, mandatory client certificates checked
/// against `pin`, our certificate from `id`.
pub(crate) fn server_config(
    id: &Identity,
    pin: Pin,
    alpn: &[u8],
    transport: Arc<quinn::TransportConfig>,
) -> Result<quinn::ServerConfig, NetError> {
    let (chain, key) = id.chain();
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_err("server protocol versions"))?
        .with_client_cert_verifier(PinnedVerifier::new(pin))
        .with_single_cert(chain, key)
        .map_err(tls_err("server certificate"))?;
    tls.alpn_protocols = vec![alpn.to_vec()];
    let quic = QuicServerConfig::try_from(tls)
        .map_err(|e| NetError::Tls(format!("quic server config: {e}")))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(quic));
    config.transport_config(transport);
    Ok(config)
}

/// A QUIC client config: TLS 1.3 only, the server's certificate checked
/// against `pin`, our certificate from `id` offered for client auth.
pub(crate) fn client_config(
    id: &Identity,
    pin: Pin,
    alpn: &[u8],
    transport: Arc<quinn::TransportConfig>,
) -> Result<quinn::ClientConfig, NetError> {
    let (chain, key) = id.chain();
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_err("client protocol versions"))?
        .dangerous()
        .with_custom_certificate_verifier(PinnedVerifier::new(pin))
        .with_client_auth_cert(chain, key)
        .map_err(tls_err("client certificate"))?;
    tls.alpn_protocols = vec![alpn.to_vec()];
    let quic = QuicClientConfig::try_from(tls)
        .map_err(|e| NetError::Tls(format!("quic client config: {e}")))?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    config.transport_config(transport);
    Ok(config)
}

/// True if a connection failed because a certificate was refused (by us or by
/// the peer): QUIC carries TLS alerts as transport error codes `0x100..=0x1ff`.
pub(crate) fn is_handshake_rejection(e: &quinn::ConnectionError) -> bool {
    let code = match e {
        quinn::ConnectionError::TransportError(t) => t.code,
        quinn::ConnectionError::ConnectionClosed(c) => c.error_code,
        _ => return false,
    };
    (u64::from(code) & !0xff) == 0x100
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_the_key_from_our_own_certificate() {
        let key = KeyPair::from_label("tls-test");
        let id = Identity::new(&key).unwrap();
        assert_eq!(ed25519_key_of(id.cert.as_ref()), Some(key.public()));
    }

    #[test]
    fn garbage_and_truncations_give_none() {
        let key = KeyPair::from_label("tls-test");
        let id = Identity::new(&key).unwrap();
        let der = id.cert.as_ref();
        for len in 0..der.len() {
            // A truncated certificate must never panic; most prefixes fail.
            let _ = ed25519_key_of(&der[..len]);
        }
        assert_eq!(ed25519_key_of(&[]), None);
        assert_eq!(ed25519_key_of(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(ed25519_key_of(&[0x30, 0x80]), None);
    }

    #[test]
    fn pins() {
        let a = KeyPair::from_label("a").public();
        let b = KeyPair::from_label("b").public();
        assert!(Pin::One(a).allows(&a));
        assert!(!Pin::One(a).allows(&b));
        let set = Pin::Set(Arc::new([a].into_iter().collect()));
        assert!(set.allows(&a) && !set.allows(&b));
        assert!(Pin::Any.allows(&b));
    }
}
