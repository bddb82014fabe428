//! The validity rule for client transaction signatures, checked one at a
//! time or many at once — with the same answer either way.
//!
//! Replica messages are checked with ed25519-dalek's `verify_strict`. Client
//! transactions are the per-transaction cost of the whole system (every
//! replica checks every one), so they are checked in batches (DESIGN §7:
//! ≈ 11 µs per signature in a batch of 100 against ≈ 29 µs alone). A batch
//! check is only safe if it accepts exactly what the single check accepts:
//! otherwise a crafted transaction could pass at the replicas that checked it
//! in one batch and fail at those that checked it in another, and correct
//! replicas would disagree about a correct primary's batch. dalek's
//! `verify_batch` does not match `verify_strict` (it skips the small-order
//! checks, and torsion components can cancel in its cofactorless sum), so
//! this module defines one rule that both paths implement exactly — the
//! cofactored equation, as in ZIP 215, plus canonical-encoding and
//! small-order checks (which ZIP 215 omits):
//!
//! a signature `(R, s)` by key `A` over message `M` is valid iff
//! 1. `s < ℓ` (canonical scalar);
//! 2. `A` and `R` are canonical encodings (y < p) of curve points;
//! 3. neither `A` nor `R` has small order;
//! 4. `[8]([s]B − [k]A − R) = 0` with `k = SHA-512(R ‖ A ‖ M) mod ℓ`.
//!
//! Every signature made by a correct ed25519 signer (RFC 8032) is valid.
//!
//! The batch check sums `z_i · ([s_i]B − [k_i]A_i − R_i)` with 128-bit
//! nonzero coefficients `z_i` derived by hashing the whole batch, and
//! multiplies the sum by the cofactor. After that multiplication every term
//! lies in the prime-order subgroup, so an invalid signature (a nonzero
//! term) can only be cancelled by others if the coefficients were chosen
//! for it — and they are a hash of all the terms (the Fiat–Shamir argument
//! of dalek's own batch check). One invalid signature alone can never pass:
//! `z · P = 0` with `P` of order ℓ needs `ℓ | z`, and `0 < z < 2^128 < ℓ`.
//! A failed batch is split in halves until the invalid signatures are found.

use super::{Digest, PublicKey};
use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use sha2::{Digest as _, Sha512};

/// One signature to check: the signer's key, the signed 32-byte message and
/// the 64-byte signature `R ‖ s`.
#[derive(Clone, Copy, Debug)]
pub struct Item<'a> {
    pub key: &'a PublicKey,
    pub msg: &'a Digest,
    pub signature: &'a [u8; 64],
}

/// A signature whose checks 1–3 passed, ready for equation 4.
struct Prepared {
    a: EdwardsPoint,
    r: EdwardsPoint,
    s: Scalar,
    k: Scalar,
    /// `R ‖ s` and `A` as encoded (the coefficients hash these).
    signature: [u8; 64],
    key: [u8; 32],
}

/// Batches below this size are checked one by one (a batch of one costs
/// what a single check does, and splitting stops here).
const BATCH_MIN: usize = 4;

/// Whether `y` (with the sign bit cleared) is at least p = 2^255 − 19:
/// such an encoding is non-canonical (it names the point of y − p).
fn non_canonical_y(bytes: &[u8; 32]) -> bool {
    // p = 0x7fff…ffed, little endian: byte 0 is 0xed, bytes 1..31 are 0xff,
    // byte 31 is 0x7f. y ≥ p iff bytes 1..30 are all 0xff, byte 31 (without
    // the sign bit) is 0x7f and byte 0 ≥ 0xed.
    bytes[31] & 0x7f == 0x7f && bytes[1..31].iter().all(|b| *b == 0xff) && bytes[0] >= 0xed
}

/// A canonical, not small-order point, or `None`.
pub(super) fn decode_point(bytes: &[u8; 32]) -> Option<EdwardsPoint> {
    if non_canonical_y(bytes) {
        return None;
    }
    let point = CompressedEdwardsY(*bytes).decompress()?;
    (!point.is_small_order()).then_some(point)
}

fn prepare(item: &Item<'_>) -> Option<Prepared> {
    let r_bytes: [u8; 32] = item.signature[..32].try_into().expect("32 bytes");
    let s_bytes: [u8; 32] = item.signature[32..].try_into().expect("32 bytes");
    let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes))?;
    let a = item.key.point()?;
    let r = decode_point(&r_bytes)?;
    let mut h = Sha512::new();
    h.update(r_bytes);
    h.update(item.key.0);
    h.update(item.msg.0);
    let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
    Some(Prepared {
        a,
        r,
        s,
        k,
        signature: *item.signature,
        key: item.key.0,
    })
}

fn holds_alone(p: &Prepared) -> bool {
    // [k](−A) + [s]B − R, times the cofactor.
    let sb_minus_ka = EdwardsPoint::vartime_double_scalar_mul_basepoint(&p.k, &-p.a, &p.s);
    (sb_minus_ka - p.r).mul_by_cofactor().is_identity()
}

/// The coefficients of one batch: 128-bit, nonzero, a hash of every term.
fn coefficients(batch: &[&Prepared]) -> Vec<Scalar> {
    let mut h = blake3::Hasher::new_derive_key("pbft-ledger v1 batch verification coefficients");
    for p in batch {
        h.update(&p.signature);
        h.update(&p.key);
        h.update(p.k.as_bytes());
    }
    let mut xof = h.finalize_xof();
    batch
        .iter()
        .map(|_| {
            let mut z = [0u8; 16];
            xof.fill(&mut z);
            z[0] |= 1;
            Scalar::from(u128::from_le_bytes(z))
        })
        .collect()
}

fn holds_together(batch: &[&Prepared]) -> bool {
    let z = coefficients(batch);
    let b_coefficient: Scalar = batch.iter().zip(&z).map(|(p, z)| z * p.s).sum();
    let scalars = std::iter::once(-b_coefficient)
        .chain(z.iter().copied())
        .chain(batch.iter().zip(&z).map(|(p, z)| z * p.k));
    let points = std::iter::once(ED25519_BASEPOINT_POINT)
        .chain(batch.iter().map(|p| p.r))
        .chain(batch.iter().map(|p| p.a));
    // −[Σ z s]B + Σ z R + Σ z k A = −Σ z (sB − kA − R).
    EdwardsPoint::vartime_multiscalar_mul(scalars, points)
        .mul_by_cofactor()
        .is_identity()
}

/// A signature by `key` over `msg` whose R carries the 8-torsion point
/// `EIGHT_TORSION[t]` (t in 1..8): valid under this module's rule, refused
/// by `verify_strict`. What a malicious client can make with its own key;
/// for adversaries and tests.
pub fn sign_torsioned(key: &super::KeyPair, msg: &Digest, t: usize) -> [u8; 64] {
    use curve25519_dalek::constants::EIGHT_TORSION;
    let mut wide = [0u8; 64];
    let mut nonce_hash = blake3::Hasher::new_derive_key("pbft-ledger v1 torsioned nonce");
    nonce_hash.update(&key.seed());
    nonce_hash.update(&msg.0);
    nonce_hash.finalize_xof().fill(&mut wide);
    let nonce = Scalar::from_bytes_mod_order_wide(&wide);
    let r_point = ED25519_BASEPOINT_POINT * nonce + EIGHT_TORSION[t % 8];
    let r_bytes = r_point.compress().to_bytes();
    let mut h = Sha512::new();
    h.update(r_bytes);
    h.update(key.public().0);
    h.update(msg.0);
    let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
    let s = nonce + k * key.signing_key().to_scalar();
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&r_bytes);
    sig[32..].copy_from_slice(s.as_bytes());
    sig
}

/// `signature` with its scalar s replaced by s + ℓ: the same equation, a
/// non-canonical encoding, refused by every check. For adversaries and tests.
pub fn with_non_canonical_s(signature: &[u8; 64]) -> [u8; 64] {
    // ℓ = 2^252 + 27742317777372353535851937790883648493, little endian.
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut out = *signature;
    let mut carry = 0u16;
    for i in 0..32 {
        let v = signature[32 + i] as u16 + L[i] as u16 + carry;
        out[32 + i] = v as u8;
        carry = v >> 8;
    }
    out
}

/// Checks one signature under the rule above.
pub fn verify(item: Item<'_>) -> bool {
    prepare(&item).is_some_and(|p| holds_alone(&p))
}

/// Checks every signature; `result[i]` is exactly what `verify(items[i])`
/// returns.
pub fn verify_all(items: &[Item<'_>]) -> Vec<bool> {
    let prepared: Vec<Option<Prepared>> = items.iter().map(prepare).collect();
    let mut result = vec![false; items.len()];
    let candidates: Vec<usize> = (0..items.len())
        .filter(|i| prepared[*i].is_some())
        .collect();
    settle(&prepared, &candidates, &mut result);
    result
}

/// Decides the signatures at `indices` (all prepared) into `result`.
fn settle(prepared: &[Option<Prepared>], indices: &[usize], result: &mut [bool]) {
    let get = |i: &usize| prepared[*i].as_ref().expect("only prepared indices");
    if indices.len() < BATCH_MIN {
        for i in indices {
            result[*i] = holds_alone(get(i));
        }
        return;
    }
    let batch: Vec<&Prepared> = indices.iter().map(get).collect();
    if holds_together(&batch) {
        for i in indices {
            result[*i] = true;
        }
        return;
    }
    let (left, right) = indices.split_at(indices.len() / 2);
    settle(prepared, left, result);
    settle(prepared, right, result);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::KeyPair;
    use curve25519_dalek::constants::EIGHT_TORSION;

    fn msg(i: usize) -> Digest {
        Digest(*blake3::hash(&(i as u64).to_le_bytes()).as_bytes())
    }

    struct Case {
        key: PublicKey,
        msg: Digest,
        sig: [u8; 64],
    }

    fn honest(n: usize) -> Vec<Case> {
        (0..n)
            .map(|i| {
                let k = KeyPair::from_label(&format!("txsig-{}", i % 5));
                let m = msg(i);
                Case {
                    key: k.public(),
                    msg: m,
                    sig: k.sign_digest(&m),
                }
            })
            .collect()
    }

    fn items(cases: &[Case]) -> Vec<Item<'_>> {
        cases
            .iter()
            .map(|c| Item {
                key: &c.key,
                msg: &c.msg,
                signature: &c.sig,
            })
            .collect()
    }

    #[test]
    fn honest_signatures_hold_alone_and_together() {
        let cases = honest(40);
        let items = items(&cases);
        assert!(items.iter().all(|i| verify(*i)));
        assert!(verify_all(&items).iter().all(|ok| *ok));
        // And what verify_strict accepts, this rule accepts.
        for c in &cases {
            assert!(c
                .key
                .verifying_key()
                .is_some_and(|k| crate::crypto::verify_digest(&k, &c.msg, &c.sig)));
        }
    }

    #[test]
    fn the_batch_answer_is_the_single_answer_for_every_kind_of_bad_signature() {
        let signer = KeyPair::from_label("txsig-torsion");
        let mut cases = honest(37);
        // Wrong message, flipped s bit, flipped R bit, another key.
        cases[3].msg = msg(1000);
        cases[8].sig[40] ^= 1;
        cases[12].sig[1] ^= 1;
        cases[20].key = KeyPair::from_label("someone else").public();
        // Non-canonical s (s + ℓ).
        cases[25].sig = with_non_canonical_s(&cases[25].sig);
        // A small-order R (the identity) and a small-order key.
        cases[30].sig[..32].copy_from_slice(EIGHT_TORSION[0].compress().as_bytes());
        cases[31].key = PublicKey(EIGHT_TORSION[1].compress().to_bytes());
        // Torsioned signatures: valid under this rule (not under
        // verify_strict), and the same answer alone and in a batch.
        for (j, t) in [(33usize, 1usize), (34, 4), (35, 6)] {
            let m = msg(2000 + j);
            cases[j] = Case {
                key: signer.public(),
                msg: m,
                sig: sign_torsioned(&signer, &m, t),
            };
        }
        let items = items(&cases);
        let alone: Vec<bool> = items.iter().map(|i| verify(*i)).collect();
        let bad = [3, 8, 12, 20, 25, 30, 31];
        for (i, ok) in alone.iter().enumerate() {
            assert_eq!(*ok, !bad.contains(&i), "signature {i} alone");
        }
        for j in [33, 34, 35] {
            let strict = cases[j]
                .key
                .verifying_key()
                .is_some_and(|k| crate::crypto::verify_digest(&k, &cases[j].msg, &cases[j].sig));
            assert!(!strict, "verify_strict rejects the torsioned signature {j}");
        }
        assert_eq!(verify_all(&items), alone);
        // Every sub-batch (different company, different coefficients) agrees.
        for start in 0..items.len() {
            for len in [1, 2, 4, 5, 9, 16] {
                let end = (start + len).min(items.len());
                assert_eq!(verify_all(&items[start..end]), alone[start..end].to_vec());
            }
        }
    }

    #[test]
    fn non_canonical_points_are_refused() {
        let mut p = [0xffu8; 32];
        p[31] = 0x7f;
        p[0] = 0xed;
        assert!(non_canonical_y(&p), "p itself");
        p[0] = 0xec;
        assert!(!non_canonical_y(&p), "p − 1");
        let mut with_sign = [0xffu8; 32];
        with_sign[0] = 0xee;
        with_sign[31] = 0xff;
        assert!(non_canonical_y(&with_sign), "p + 1 with the sign bit set");
        // y = p + 1 names the same point as y = 1 (a small-order point, but
        // the encoding is refused before that is even looked at).
        assert!(decode_point(&with_sign).is_none());
    }
}
