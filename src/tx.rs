//! Client transactions and the batches a primary proposes (L1).
//!
//! A client is identified by its ed25519 public key, which is also its bank
//! account. A transaction's `nonce` is the client's PBFT timestamp: it increases
//! strictly per client, which gives exactly-once execution (a replayed or older
//! nonce is ordered but executes as a failed receipt) and keys the reply cache.
//!
//! The signed bytes of a transaction are a fixed little-endian layout
//! (`from || to || amount || nonce`), so there is exactly one encoding to sign
//! and verify and nothing is re-serialised in between.

use crate::codec::CodecError;
use crate::crypto::{self, Digest, Domain, KeyPair, NetworkId, PublicKey};
use rkyv::{Archive, Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// Length of the canonical signed body of a transaction.
pub const TX_BODY_BYTES: usize = 32 + 32 + 8 + 8;

/// A transfer of `amount` from `from` to `to`, signed by `from`.
#[derive(Archive, Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
#[rkyv(derive(Debug))]
pub struct Transaction {
    pub from: PublicKey,
    pub to: PublicKey,
    pub amount: u64,
    /// The client's timestamp: strictly increasing per `from`.
    pub nonce: u64,
    pub signature: [u8; 64],
}

impl Transaction {
    /// Builds and signs a transfer.
    pub fn transfer(
        network: NetworkId,
        key: &KeyPair,
        to: PublicKey,
        amount: u64,
        nonce: u64,
    ) -> Transaction {
        let mut tx = Transaction {
            from: key.public(),
            to,
            amount,
            nonce,
            signature: [0; 64],
        };
        tx.signature = key.sign_digest(&tx.signing_digest(network));
        tx
    }

    pub fn body(&self) -> [u8; TX_BODY_BYTES] {
        let mut b = [0u8; TX_BODY_BYTES];
        b[..32].copy_from_slice(&self.from.0);
        b[32..64].copy_from_slice(&self.to.0);
        b[64..72].copy_from_slice(&self.amount.to_le_bytes());
        b[72..80].copy_from_slice(&self.nonce.to_le_bytes());
        b
    }

    pub fn signing_digest(&self, network: NetworkId) -> Digest {
        crypto::signing_digest(Domain::Transaction, network, &self.body())
    }

    /// The transaction's id: a digest of its signed body.
    pub fn id(&self) -> Digest {
        crypto::digest(Domain::TxId, &[&self.body()])
    }

    /// Checks the signature against the sender's key (the transaction
    /// rule of [`crypto::txsig`]).
    pub fn verify(&self, network: NetworkId) -> bool {
        crypto::count_signature_checks(Domain::Transaction, 1);
        self.from
            .verify_digest(&self.signing_digest(network), &self.signature)
    }

    /// Checks many signatures in one batch: `result[i]` is exactly
    /// `txs[i].verify(network)`, at about half the cost per signature in
    /// batches of dozens.
    pub fn verify_all(txs: &[&Transaction], network: NetworkId) -> Vec<bool> {
        crypto::count_signature_checks(Domain::Transaction, txs.len());
        let digests: Vec<Digest> = txs.iter().map(|tx| tx.signing_digest(network)).collect();
        let items: Vec<crypto::txsig::Item<'_>> = txs
            .iter()
            .zip(&digests)
            .map(|(tx, msg)| crypto::txsig::Item {
                key: &tx.from,
                msg,
                signature: &tx.signature,
            })
            .collect();
        crypto::txsig::verify_all(&items)
    }
}

/// A transaction whose signature [`Transaction::verify`] accepted for one
/// network. Only [`VerifiedTx::check`] makes one, so a holder never needs to
/// check it again: a replica's client endpoint checks each submission once
/// and hands the core this type.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct VerifiedTx(Transaction);

impl VerifiedTx {
    /// Checks `tx`'s signature for `network`.
    pub fn check(tx: Transaction, network: NetworkId) -> Option<VerifiedTx> {
        tx.verify(network).then_some(VerifiedTx(tx))
    }
    /// Checks many at once ([`Transaction::verify_all`]): `result[i]` is
    /// `check(txs[i])`.
    pub fn check_all(txs: Vec<Transaction>, network: NetworkId) -> Vec<Option<VerifiedTx>> {
        let refs: Vec<&Transaction> = txs.iter().collect();
        let ok = Transaction::verify_all(&refs, network);
        txs.into_iter()
            .zip(ok)
            .map(|(tx, ok)| ok.then_some(VerifiedTx(tx)))
            .collect()
    }
    pub fn into_inner(self) -> Transaction {
        self.0
    }
}

/// The transactions whose signatures were checked most recently, so that one
/// arriving twice is checked once: a backup sees each transfer in the
/// primary's PRE-PREPARE and, often later, from the client itself (which
/// sends to every replica). Holds at most `max`; the oldest is forgotten
/// first. A lookup matches only the identical transaction, signature
/// included, so nothing unchecked ever comes out of it.
#[derive(Clone, Debug)]
pub struct VerifiedCache {
    by_key: BTreeMap<(PublicKey, u64), VerifiedTx>,
    /// Insertion order of the keys in `by_key`; each key once.
    order: VecDeque<(PublicKey, u64)>,
    max: usize,
}

impl VerifiedCache {
    pub fn new(max: usize) -> VerifiedCache {
        VerifiedCache {
            by_key: BTreeMap::new(),
            order: VecDeque::new(),
            max,
        }
    }

    /// Remembers `tx`; it replaces an earlier one with its sender and nonce.
    pub fn insert(&mut self, tx: VerifiedTx) {
        if self.max == 0 {
            return;
        }
        let key = (tx.from, tx.nonce);
        if self.by_key.insert(key, tx).is_none() {
            self.order.push_back(key);
            if self.order.len() > self.max {
                if let Some(old) = self.order.pop_front() {
                    self.by_key.remove(&old);
                }
            }
        }
    }

    /// The remembered transaction identical to `tx` (every field,
    /// signature included).
    fn find(&self, tx: &Transaction) -> Option<&VerifiedTx> {
        self.by_key.get(&(tx.from, tx.nonce)).filter(|v| v.0 == *tx)
    }

    /// Whether exactly `tx` was checked.
    pub fn contains(&self, tx: &Transaction) -> bool {
        self.find(tx).is_some()
    }

    /// The checked transaction identical to `tx`, if it is remembered.
    pub fn get(&self, tx: &Transaction) -> Option<VerifiedTx> {
        self.find(tx).cloned()
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

impl std::ops::Deref for VerifiedTx {
    type Target = Transaction;
    fn deref(&self) -> &Transaction {
        &self.0
    }
}

/// What a primary proposes for one sequence number: a timestamp and an ordered
/// list of transactions. An empty batch with timestamp 0 is the *null request*
/// that fills a gap in a new view.
#[derive(Archive, Serialize, Deserialize, Clone, PartialEq, Eq, Debug, Default)]
#[rkyv(derive(Debug))]
pub struct Batch {
    /// The primary's clock in milliseconds when it formed the batch.
    pub timestamp_ms: u64,
    pub txs: Vec<Transaction>,
}

/// Most transactions one batch may hold; a PRE-PREPARE carrying more is ignored.
pub const BATCH_TXS_MAX: usize = 4096;
/// Largest encoded batch accepted from a peer.
pub const BATCH_BYTES_MAX: usize = batch_bytes_max(BATCH_TXS_MAX);

/// An upper bound on the encoded size of a batch of `txs` transactions.
pub const fn batch_bytes_max(txs: usize) -> usize {
    1024 + txs * 256
}

impl Batch {
    pub fn null() -> Batch {
        Batch::default()
    }
    pub fn is_null(&self) -> bool {
        self.timestamp_ms == 0 && self.txs.is_empty()
    }
    pub fn encode(&self) -> Vec<u8> {
        crate::codec::encode(self)
    }
    pub fn decode(bytes: &[u8]) -> Result<Batch, CodecError> {
        crate::codec::decode(bytes, BATCH_BYTES_MAX)
    }
}

/// Digest of a batch's exact encoded bytes; this is what PRE-PREPARE, PREPARE
/// and COMMIT sign.
pub fn batch_digest(bytes: &[u8]) -> Digest {
    crypto::digest(Domain::Batch, &[bytes])
}

/// Outcome of executing one transaction. Every receipt but the two
/// refusals ([`Receipt::StaleNonce`], [`Receipt::NonceTooFar`]) consumes
/// the transaction's nonce, so it is final: the same signed transaction
/// never executes with another outcome. A stale nonce stays stale; a nonce
/// too far ahead executed nothing and may execute once the account's nonce
/// comes within [`NONCE_AHEAD_MAX`] of it.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug, Hash)]
#[rkyv(derive(Debug, PartialEq, Eq))]
pub enum Receipt {
    /// The transfer was applied.
    Ok,
    /// The sender's balance was below the amount; nothing changed.
    InsufficientFunds,
    /// The nonce was not above the sender's last nonce (a replay); nothing changed.
    StaleNonce,
    /// The sender had no account: it now has one of no funds with this
    /// nonce (so the receipt is final), and nothing else changed.
    UnknownAccount,
    /// The amount was zero or the sender paid itself; nothing changed.
    Invalid,
    /// The nonce was more than [`NONCE_AHEAD_MAX`] above the sender's last
    /// nonce; nothing changed (the account's nonce stays where it was, so a
    /// client tricked into signing a huge nonce does not freeze its account).
    NonceTooFar,
}

impl Receipt {
    /// The receipt's number: in the transaction index on disk and as the
    /// client prints it (`receipt-code`). Never renumber.
    pub fn code(self) -> u8 {
        match self {
            Receipt::Ok => 0,
            Receipt::InsufficientFunds => 1,
            Receipt::StaleNonce => 2,
            Receipt::UnknownAccount => 3,
            Receipt::Invalid => 4,
            Receipt::NonceTooFar => 5,
        }
    }

    /// The receipt numbered `code` ([`Receipt::code`]), if any.
    pub fn from_code(code: u8) -> Option<Receipt> {
        Some(match code {
            0 => Receipt::Ok,
            1 => Receipt::InsufficientFunds,
            2 => Receipt::StaleNonce,
            3 => Receipt::UnknownAccount,
            4 => Receipt::Invalid,
            5 => Receipt::NonceTooFar,
            _ => return None,
        })
    }
}

/// How far above an account's last nonce a transfer's nonce may be. A
/// client keeps at most a few thousand transfers in flight, so a correct
/// one never comes near it; a nonce beyond it executes as
/// [`Receipt::NonceTooFar`] and changes nothing.
pub const NONCE_AHEAD_MAX: u64 = 1 << 20;

impl Receipt {
    pub fn is_ok(self) -> bool {
        self == Receipt::Ok
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Receipt::Ok => "ok",
            Receipt::InsufficientFunds => "insufficient funds",
            Receipt::StaleNonce => "stale nonce",
            Receipt::UnknownAccount => "unknown account",
            Receipt::Invalid => "invalid transfer",
            Receipt::NonceTooFar => "nonce too far ahead",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfer_signature_binds_every_field_and_network() {
        let net = NetworkId(Digest([1; 32]));
        let a = KeyPair::from_label("a");
        let b = KeyPair::from_label("b");
        let tx = Transaction::transfer(net, &a, b.public(), 10, 1);
        assert!(tx.verify(net));
        assert!(!tx.verify(NetworkId(Digest([2; 32]))));
        for mutate in [
            |t: &mut Transaction| t.amount += 1,
            |t: &mut Transaction| t.nonce += 1,
            |t: &mut Transaction| t.to.0[0] ^= 1,
            |t: &mut Transaction| t.signature[3] ^= 1,
        ] {
            let mut t = tx.clone();
            mutate(&mut t);
            assert!(!t.verify(net));
        }
        let mut forged = tx.clone();
        forged.from = b.public();
        assert!(!forged.verify(net));
    }

    /// The cache vouches only for the identical transaction (any field or
    /// the signature changed: not), holds at most `max` (the oldest goes
    /// first), and a second transaction with one sender and nonce replaces
    /// the first without growing it.
    #[test]
    fn verified_cache_matches_whole_transactions_and_stays_bounded() {
        let net = NetworkId(Digest([1; 32]));
        let a = KeyPair::from_label("a");
        let b = KeyPair::from_label("b");
        let checked = |tx: &Transaction| VerifiedTx::check(tx.clone(), net).unwrap();
        let mut cache = VerifiedCache::new(3);
        let tx1 = Transaction::transfer(net, &a, b.public(), 10, 1);
        cache.insert(checked(&tx1));
        assert_eq!(
            cache.get(&tx1).map(VerifiedTx::into_inner),
            Some(tx1.clone())
        );
        for mutate in [
            |t: &mut Transaction| t.amount += 1,
            |t: &mut Transaction| t.to.0[0] ^= 1,
            |t: &mut Transaction| t.signature[3] ^= 1,
        ] {
            let mut t = tx1.clone();
            mutate(&mut t);
            assert!(!cache.contains(&t) && cache.get(&t).is_none());
        }
        let other = Transaction::transfer(net, &a, a.public(), 7, 1);
        cache.insert(checked(&other));
        assert_eq!(cache.len(), 1);
        assert!(cache.contains(&other) && !cache.contains(&tx1));
        let txs: Vec<Transaction> = (2..=4)
            .map(|n| Transaction::transfer(net, &a, b.public(), 1, n))
            .collect();
        for tx in &txs {
            cache.insert(checked(tx));
        }
        assert_eq!(cache.len(), 3);
        assert!(!cache.contains(&other), "the oldest was forgotten");
        assert!(txs.iter().all(|tx| cache.contains(tx)));
        let mut off = VerifiedCache::new(0);
        off.insert(checked(&tx1));
        assert!(off.is_empty());
    }

    #[test]
    fn batch_round_trip_and_null() {
        let net = NetworkId(Digest([1; 32]));
        let a = KeyPair::from_label("a");
        let batch = Batch {
            timestamp_ms: 5,
            txs: vec![Transaction::transfer(net, &a, a.public(), 1, 1)],
        };
        let bytes = batch.encode();
        assert_eq!(Batch::decode(&bytes).unwrap(), batch);
        assert!(Batch::null().is_null());
        assert_ne!(batch_digest(&bytes), batch_digest(&Batch::null().encode()));
    }
}
