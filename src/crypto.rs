//! Keys, signatures and digests (L1).
//!
//! * Every digest is blake3 in key-derivation mode with a context string per
//!   [`Domain`], and every signed digest also covers the network id (the genesis
//!   hash): a signature made for one message kind, or for another network, never
//!   verifies as anything else (TESTING.md S5).
//! * Signatures are ed25519. Replica messages are checked with `verify_strict`;
//!   client transactions with the rule of [`txsig`] (cofactored, canonical,
//!   no small-order points), which can be checked in batches with exactly the
//!   single check's answer. Either way every correct replica accepts exactly
//!   the same set of signatures.
//! * Trust is a type: bytes off the wire become a [`Signed<T>`]; only this module
//!   turns one into a [`Verified<T>`], after the signature is checked over the
//!   exact received bytes and the payload has been validated. Protocol handlers
//!   accept only `Verified<T>`.

pub mod merkle;
pub mod txsig;

use crate::codec::{self, CodecError};
use crate::types::ReplicaId;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use rkyv::{Archive, Deserialize, Serialize};
use std::fmt;
use std::marker::PhantomData;

/// A 32-byte blake3 digest.
#[derive(
    Archive, Serialize, Deserialize, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default,
)]
#[rkyv(derive(Debug, PartialEq, Eq))]
pub struct Digest(pub [u8; 32]);

impl Digest {
    pub const ZERO: Digest = Digest([0; 32]);
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
    pub fn from_hex(s: &str) -> Option<Digest> {
        let bytes = hex::decode(s).ok()?;
        Some(Digest(bytes.try_into().ok()?))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", &self.to_hex()[..12])
    }
}
impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_hex())
    }
}

/// The network a message belongs to: the hash of its genesis.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct NetworkId(pub Digest);

/// What a digest is of. Each kind has its own blake3 derive-key context.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Domain {
    PrePrepare,
    Prepare,
    Commit,
    Checkpoint,
    ViewChange,
    NewView,
    Suspect,
    ReplyRoot,
    ReplyLeaf,
    Transaction,
    TxId,
    Batch,
    BlockHeader,
    MerkleLeaf,
    MerkleNode,
    State,
    CheckpointState,
    Genesis,
}

impl Domain {
    pub fn context(self) -> &'static str {
        match self {
            Domain::PrePrepare => "pbft-ledger v1 pre-prepare",
            Domain::Prepare => "pbft-ledger v1 prepare",
            Domain::Commit => "pbft-ledger v1 commit",
            Domain::Checkpoint => "pbft-ledger v1 checkpoint",
            Domain::ViewChange => "pbft-ledger v1 view-change",
            Domain::NewView => "pbft-ledger v1 new-view",
            Domain::Suspect => "pbft-ledger v1 suspect",
            Domain::ReplyRoot => "pbft-ledger v1 reply root",
            Domain::ReplyLeaf => "pbft-ledger v1 reply leaf",
            Domain::Transaction => "pbft-ledger v1 transaction",
            Domain::TxId => "pbft-ledger v1 transaction id",
            Domain::Batch => "pbft-ledger v1 batch",
            Domain::BlockHeader => "pbft-ledger v1 block header",
            Domain::MerkleLeaf => "pbft-ledger v1 merkle leaf",
            Domain::MerkleNode => "pbft-ledger v1 merkle node",
            Domain::State => "pbft-ledger v1 state",
            Domain::CheckpointState => "pbft-ledger v1 checkpoint state",
            Domain::Genesis => "pbft-ledger v1 genesis",
        }
    }
}

impl Domain {
    /// The context without its version prefix: `"pre-prepare"`, ... (a
    /// label for counters).
    pub fn name(self) -> &'static str {
        let context = self.context();
        context.strip_prefix("pbft-ledger v1 ").unwrap_or(context)
    }

    /// Every domain, in declaration order (`ALL[d as usize] == d`).
    const ALL: [Domain; 18] = [
        Domain::PrePrepare,
        Domain::Prepare,
        Domain::Commit,
        Domain::Checkpoint,
        Domain::ViewChange,
        Domain::NewView,
        Domain::Suspect,
        Domain::ReplyRoot,
        Domain::ReplyLeaf,
        Domain::Transaction,
        Domain::TxId,
        Domain::Batch,
        Domain::BlockHeader,
        Domain::MerkleLeaf,
        Domain::MerkleNode,
        Domain::State,
        Domain::CheckpointState,
        Domain::Genesis,
    ];

    /// A blake3 hasher in this domain's derive-key mode: the same as
    /// `Hasher::new_derive_key(self.context())`, but the context string is
    /// hashed once per process instead of once per digest (for the small
    /// inputs hashed most — merkle nodes, transaction ids — that was half
    /// of the work).
    pub fn hasher(self) -> blake3::Hasher {
        static PREPARED: std::sync::OnceLock<Vec<blake3::Hasher>> = std::sync::OnceLock::new();
        PREPARED.get_or_init(|| {
            Domain::ALL
                .iter()
                .map(|d| blake3::Hasher::new_derive_key(d.context()))
                .collect()
        })[self as usize]
            .clone()
    }
}

/// Digest of `parts` (concatenated) under `domain`.
pub fn digest(domain: Domain, parts: &[&[u8]]) -> Digest {
    let mut h = domain.hasher();
    for p in parts {
        h.update(p);
    }
    Digest(*h.finalize().as_bytes())
}

/// The 32 bytes that are actually signed: domain, network and payload.
pub fn signing_digest(domain: Domain, network: NetworkId, payload: &[u8]) -> Digest {
    digest(domain, &[&network.0 .0, payload])
}

/// An ed25519 public key: a replica's identity, or a client's account.
#[derive(
    Archive, Serialize, Deserialize, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default,
)]
#[rkyv(derive(Debug, PartialEq, Eq, PartialOrd, Ord))]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
    pub fn from_hex(s: &str) -> Option<PublicKey> {
        let bytes = hex::decode(s.trim()).ok()?;
        Some(PublicKey(bytes.try_into().ok()?))
    }
    /// Parses the key for verification; `None` for bytes that are not a point.
    pub fn verifying_key(&self) -> Option<VerifyingKey> {
        VerifyingKey::from_bytes(&self.0).ok()
    }

    /// Checks a client's signature by this key over `msg` under the
    /// transaction rule ([`txsig`]: cofactored, batchable).
    pub fn verify_digest(&self, msg: &Digest, signature: &[u8; 64]) -> bool {
        txsig::verify(txsig::Item {
            key: self,
            msg,
            signature,
        })
    }

    /// The key as a curve point if it is a canonical encoding of a point of
    /// large order, from a per-thread cache of recent signers.
    pub(crate) fn point(&self) -> Option<curve25519_dalek::EdwardsPoint> {
        KEY_CACHE.with(|cache| {
            let mut cache = cache.borrow_mut();
            if let Some(point) = cache.get(&self.0) {
                return *point;
            }
            if cache.len() >= KEY_CACHE_MAX {
                cache.clear();
            }
            let point = txsig::decode_point(&self.0);
            cache.insert(self.0, point);
            point
        })
    }
}

/// Bound of a thread's cache of decompressed signer keys. Decompressing a
/// key is a square root in the field, about a fifth of a `verify_strict`
/// (perf: serial field arithmetic was a fifth of a replica's CPU under
/// load); clients sign again and again with one key. A full cache is
/// emptied, so a flood of fresh keys costs what it would without a cache
/// and memory stays bounded (≈200 bytes per entry).
const KEY_CACHE_MAX: usize = 8192;

type PointCache = std::collections::HashMap<[u8; 32], Option<curve25519_dalek::EdwardsPoint>>;

thread_local! {
    static KEY_CACHE: std::cell::RefCell<PointCache> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", &self.to_hex()[..10])
    }
}
impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_hex())
    }
}

/// Checks one ed25519 signature over a digest with `verify_strict`.
pub fn verify_digest(key: &VerifyingKey, msg: &Digest, signature: &[u8; 64]) -> bool {
    let sig = Signature::from_bytes(signature);
    key.verify_strict(&msg.0, &sig).is_ok()
}

/// A signing key. Signing is deterministic (RFC 8032), so the core may sign
/// without any randomness.
#[derive(Clone)]
pub struct KeyPair {
    signing: SigningKey,
    public: PublicKey,
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyPair({:?})", self.public)
    }
}

impl KeyPair {
    pub fn from_seed(seed: [u8; 32]) -> KeyPair {
        let signing = SigningKey::from_bytes(&seed);
        let public = PublicKey(signing.verifying_key().to_bytes());
        KeyPair { signing, public }
    }
    /// A fresh key from the operating system's RNG (binaries only).
    pub fn generate() -> KeyPair {
        let mut seed = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed);
        KeyPair::from_seed(seed)
    }
    /// A key derived from a label, for simulations and tests.
    pub fn from_label(label: &str) -> KeyPair {
        KeyPair::from_seed(*blake3::hash(label.as_bytes()).as_bytes())
    }
    pub fn seed(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }
    pub fn public(&self) -> PublicKey {
        self.public
    }
    pub fn signing_key(&self) -> &SigningKey {
        &self.signing
    }
    pub fn sign_digest(&self, msg: &Digest) -> [u8; 64] {
        self.signing.sign(&msg.0).to_bytes()
    }
    /// Signs a payload as replica `signer`; our own message is trusted, so the
    /// result is already [`Verified`].
    pub fn sign<T: Payload>(&self, network: NetworkId, signer: ReplicaId, value: T) -> Verified<T> {
        let payload = value.encode();
        let signature = self.sign_digest(&signing_digest(T::DOMAIN, network, &payload));
        Verified {
            value,
            signed: Signed {
                payload,
                signer,
                signature,
                _kind: PhantomData,
            },
        }
    }
}

/// A message kind that can be signed: it names its domain and knows its codec.
pub trait Payload: Sized {
    const DOMAIN: Domain;
    /// Size cap checked before the payload is parsed.
    const BYTES_MAX: usize = codec::FRAME_BYTES_MAX;
    fn encode(&self) -> Vec<u8>;
    fn decode(bytes: &[u8]) -> Result<Self, CodecError>;
}

/// Implements [`Payload`] for an rkyv type.
#[macro_export]
macro_rules! impl_payload {
    ($ty:ty, $domain:expr) => {
        impl $crate::crypto::Payload for $ty {
            const DOMAIN: $crate::crypto::Domain = $domain;
            fn encode(&self) -> Vec<u8> {
                $crate::codec::encode(self)
            }
            fn decode(bytes: &[u8]) -> Result<Self, $crate::codec::CodecError> {
                $crate::codec::decode(bytes, <Self as $crate::crypto::Payload>::BYTES_MAX)
            }
        }
    };
}

/// A payload as it travelled: its exact bytes, the claimed signer and the
/// signature. Nothing about it has been checked.
#[derive(Archive, Serialize, Deserialize)]
pub struct Signed<T> {
    pub payload: Vec<u8>,
    pub signer: ReplicaId,
    pub signature: [u8; 64],
    _kind: PhantomData<T>,
}

impl<T> Clone for Signed<T> {
    fn clone(&self) -> Self {
        Signed {
            payload: self.payload.clone(),
            signer: self.signer,
            signature: self.signature,
            _kind: PhantomData,
        }
    }
}
impl<T> PartialEq for Signed<T> {
    fn eq(&self, other: &Self) -> bool {
        self.payload == other.payload
            && self.signer == other.signer
            && self.signature == other.signature
    }
}
impl<T> Eq for Signed<T> {}

impl<T> fmt::Debug for Signed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Signed<{}>(by {:?}, {} bytes)",
            std::any::type_name::<T>()
                .rsplit("::")
                .next()
                .unwrap_or("?"),
            self.signer,
            self.payload.len()
        )
    }
}

impl<T> Signed<T> {
    /// Builds an envelope from raw parts (used by adversaries and tests that
    /// must be able to send anything a Byzantine replica could send).
    pub fn from_parts(payload: Vec<u8>, signer: ReplicaId, signature: [u8; 64]) -> Signed<T> {
        Signed {
            payload,
            signer,
            signature,
            _kind: PhantomData,
        }
    }
}

/// A payload whose signature was checked and whose bytes were validated.
/// Only [`Verifier`] and [`KeyPair::sign`] construct one.
#[derive(Clone, PartialEq, Eq)]
pub struct Verified<T> {
    value: T,
    signed: Signed<T>,
}

impl<T: fmt::Debug> fmt::Debug for Verified<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}@{:?}", self.value, self.signed.signer)
    }
}

impl<T> Verified<T> {
    pub fn value(&self) -> &T {
        &self.value
    }
    pub fn signer(&self) -> ReplicaId {
        self.signed.signer
    }
    /// The exact signed bytes, to forward or to keep as proof.
    pub fn signed(&self) -> &Signed<T> {
        &self.signed
    }
    pub fn into_signed(self) -> Signed<T> {
        self.signed
    }
}

impl<T> std::ops::Deref for Verified<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

/// Why a signed message was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The claimed signer is not a member of the network.
    #[error("unknown signer")]
    UnknownSigner,
    /// The signature does not verify strictly over the payload.
    #[error("bad signature")]
    BadSignature,
    /// The payload bytes are not a valid archive of the expected kind.
    #[error("malformed payload")]
    Malformed,
    /// The payload is larger than its kind allows.
    #[error("payload too large")]
    TooLarge,
}

/// Signature checks this process made, by domain (process-wide relaxed
/// atomics: one increment per check, read by the operations endpoint's
/// `pbft_signature_checks_total{kind}`). Replica messages count in
/// [`Verifier::verify`], client transactions in `tx::Transaction::verify`
/// and `verify_all`.
static SIGNATURE_CHECKS: [std::sync::atomic::AtomicU64; Domain::ALL.len()] =
    [const { std::sync::atomic::AtomicU64::new(0) }; Domain::ALL.len()];

/// Counts `n` signature checks in `domain`.
pub fn count_signature_checks(domain: Domain, n: usize) {
    SIGNATURE_CHECKS[domain as usize].fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
}

/// The signature checks counted so far, by domain name (`"prepare"`,
/// `"transaction"`, ...), domains never checked left out.
pub fn signature_checks() -> Vec<(&'static str, u64)> {
    Domain::ALL
        .iter()
        .map(|d| {
            let n = SIGNATURE_CHECKS[*d as usize].load(std::sync::atomic::Ordering::Relaxed);
            (d.name(), n)
        })
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// Verifies replica signatures for one network.
#[derive(Clone, Debug)]
pub struct Verifier {
    network: NetworkId,
    keys: Vec<VerifyingKey>,
}

impl Verifier {
    /// `keys[i]` is replica `i`'s key. Fails if a key is not a valid point.
    pub fn new(network: NetworkId, keys: &[PublicKey]) -> Option<Verifier> {
        let keys = keys
            .iter()
            .map(|k| k.verifying_key())
            .collect::<Option<Vec<_>>>()?;
        Some(Verifier { network, keys })
    }
    pub fn network(&self) -> NetworkId {
        self.network
    }
    pub fn replica_count(&self) -> usize {
        self.keys.len()
    }

    /// Checks the signature over the exact bytes, then validates the payload.
    pub fn verify<T: Payload>(&self, signed: &Signed<T>) -> Result<Verified<T>, VerifyError> {
        let key = self
            .keys
            .get(signed.signer.index())
            .ok_or(VerifyError::UnknownSigner)?;
        if signed.payload.len() > T::BYTES_MAX {
            return Err(VerifyError::TooLarge);
        }
        let msg = signing_digest(T::DOMAIN, self.network, &signed.payload);
        count_signature_checks(T::DOMAIN, 1);
        if !verify_digest(key, &msg, &signed.signature) {
            return Err(VerifyError::BadSignature);
        }
        let value = T::decode(&signed.payload).map_err(|e| match e {
            CodecError::TooLarge { .. } => VerifyError::TooLarge,
            _ => VerifyError::Malformed,
        })?;
        Ok(Verified {
            value,
            signed: signed.clone(),
        })
    }

    /// Tooth `commit-signature-not-checked`: while it is active, a
    /// `Verified` whose signature was never checked (broken on purpose);
    /// otherwise, and in every build without the feature `teeth`, exactly
    /// [`Verifier::verify`].
    pub fn decode_unverified<T: Payload>(
        &self,
        signed: &Signed<T>,
    ) -> Result<Verified<T>, VerifyError> {
        if !crate::teeth::signature_unchecked() {
            return self.verify(signed);
        }
        if signed.signer.index() >= self.keys.len() {
            return Err(VerifyError::UnknownSigner);
        }
        let value = T::decode(&signed.payload).map_err(|_| VerifyError::Malformed)?;
        Ok(Verified {
            value,
            signed: signed.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
    struct Ping(u64);
    impl_payload!(Ping, Domain::Prepare);

    #[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
    struct Pong(u64);
    impl_payload!(Pong, Domain::Commit);

    /// The prepared hashers give exactly blake3's derive-key output for
    /// every domain (the table is in declaration order and the contexts
    /// are distinct), for empty, one-block and multi-chunk inputs.
    #[test]
    fn prepared_domain_hashers_match_derive_key() {
        let contexts: std::collections::BTreeSet<_> =
            Domain::ALL.iter().map(|d| d.context()).collect();
        assert_eq!(contexts.len(), Domain::ALL.len());
        let long = vec![7u8; 3000];
        for (i, d) in Domain::ALL.iter().enumerate() {
            assert_eq!(*d as usize, i);
            for input in [&[][..], &b"abc"[..], &long[..]] {
                let expected = blake3::derive_key(d.context(), input);
                assert_eq!(digest(*d, &[input]).0, expected, "{d:?}");
                let mut h = d.hasher();
                h.update(input);
                assert_eq!(*h.finalize().as_bytes(), expected, "{d:?}");
            }
        }
    }

    fn setup() -> (Vec<KeyPair>, Verifier) {
        let keys: Vec<_> = (0..4)
            .map(|i| KeyPair::from_label(&format!("k{i}")))
            .collect();
        let pubs: Vec<_> = keys.iter().map(|k| k.public()).collect();
        let net = NetworkId(digest(Domain::Genesis, &[b"test"]));
        (keys, Verifier::new(net, &pubs).unwrap())
    }

    #[test]
    fn sign_then_verify() {
        let (keys, v) = setup();
        let s = keys[1].sign(v.network(), ReplicaId(1), Ping(5));
        let ok = v.verify(s.signed()).unwrap();
        assert_eq!(ok.value(), &Ping(5));
        assert_eq!(ok.signer(), ReplicaId(1));
    }

    #[test]
    fn rejects_wrong_signer_kind_network_and_tampering() {
        let (keys, v) = setup();
        let s = keys[1]
            .sign(v.network(), ReplicaId(1), Ping(5))
            .into_signed();
        // Claimed by another replica.
        let other = Signed::<Ping>::from_parts(s.payload.clone(), ReplicaId(2), s.signature);
        assert_eq!(v.verify(&other).unwrap_err(), VerifyError::BadSignature);
        // Unknown replica.
        let unknown = Signed::<Ping>::from_parts(s.payload.clone(), ReplicaId(9), s.signature);
        assert_eq!(v.verify(&unknown).unwrap_err(), VerifyError::UnknownSigner);
        // Reused as another message kind with identical bytes.
        let as_pong = Signed::<Pong>::from_parts(s.payload.clone(), ReplicaId(1), s.signature);
        assert_eq!(v.verify(&as_pong).unwrap_err(), VerifyError::BadSignature);
        // Another network.
        let pubs: Vec<_> = keys.iter().map(|k| k.public()).collect();
        let other_net = Verifier::new(NetworkId(Digest([7; 32])), &pubs).unwrap();
        assert_eq!(other_net.verify(&s).unwrap_err(), VerifyError::BadSignature);
        // A flipped payload bit.
        let mut tampered = s.clone();
        tampered.payload[0] ^= 1;
        assert_eq!(v.verify(&tampered).unwrap_err(), VerifyError::BadSignature);
    }

    #[test]
    fn cached_key_verification_agrees_and_the_cache_stays_bounded() {
        let k = KeyPair::from_label("cache");
        let msg = digest(Domain::TxId, &[b"m"]);
        let sig = k.sign_digest(&msg);
        for _ in 0..2 {
            assert!(k.public().verify_digest(&msg, &sig));
            let mut bad = sig;
            bad[5] ^= 1;
            assert!(!k.public().verify_digest(&msg, &bad));
        }
        // Bytes that are not a point never verify, cached or not.
        let not_a_point = (0u8..=255)
            .map(|b| PublicKey([b; 32]))
            .find(|p| p.verifying_key().is_none())
            .expect("some byte pattern is not a point");
        for _ in 0..2 {
            assert!(!not_a_point.verify_digest(&msg, &sig));
        }
        for i in 0..KEY_CACHE_MAX as u32 + 10 {
            let mut key = [0u8; 32];
            key[..4].copy_from_slice(&i.to_le_bytes());
            PublicKey(key).verify_digest(&msg, &sig);
            assert!(KEY_CACHE.with(|c| c.borrow().len()) <= KEY_CACHE_MAX);
        }
        assert!(k.public().verify_digest(&msg, &sig));
    }

    #[test]
    fn rejects_malleated_signature() {
        // Adding the group order L to s gives a signature that non-strict
        // verifiers may accept; verify_strict must not.
        let (keys, v) = setup();
        let s = keys[0]
            .sign(v.network(), ReplicaId(0), Ping(1))
            .into_signed();
        let mut sig = s.signature;
        const L: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut carry = 0u16;
        for i in 0..32 {
            let sum = sig[32 + i] as u16 + L[i] as u16 + carry;
            sig[32 + i] = sum as u8;
            carry = sum >> 8;
        }
        let bad = Signed::<Ping>::from_parts(s.payload.clone(), ReplicaId(0), sig);
        assert_eq!(v.verify(&bad).unwrap_err(), VerifyError::BadSignature);
    }
}
