//! Forgery and bad content under its own valid signature: forged and
//! bit-flipped signatures, badly signed transactions in its batches, and
//! wrong checkpoints.

use super::{own_vote, pass, random_digest, random_signature, Ctx, Send, Strategy};
use crate::consensus::messages::{
    Checkpoint, Commit, CommittedBatch, Message, PrePrepare, Prepare,
};
use crate::crypto::{Payload, Signed};
use crate::tx::{batch_digest, Batch, Transaction};
use crate::types::{ReplicaId, Seq, View};
use rand::Rng;
use std::collections::BTreeMap;

/// Sends, next to each of its messages, forged ones: a random signature
/// claiming another replica, a bit-flipped copy of its own signature; and on
/// its timer, catch-up batches with forged commit certificates.
pub struct Forge;

impl Strategy for Forge {
    fn outgoing(&mut self, ctx: &mut Ctx, to: ReplicaId, message: Message) -> Vec<Send> {
        let mut out = pass(to, message.clone());
        let Some((kind, view, seq, _)) = own_vote(ctx, &message) else {
            return out;
        };
        let others = ctx.others();
        let victim = others[ctx.rng.gen_range(0..others.len())];
        let digest = random_digest(ctx);
        let payload = if kind == 1 {
            Prepare { view, seq, digest }.encode()
        } else {
            Commit { view, seq, digest }.encode()
        };
        let forged_sig = random_signature(ctx);
        let mut flipped = match &message {
            Message::Prepare(p) => p.signature,
            Message::Commit(c) => c.signature,
            _ => unreachable!("own_vote matched a vote"),
        };
        let bit = ctx.rng.gen_range(0..512);
        flipped[bit / 8] ^= 1 << (bit % 8);
        let own_payload = match &message {
            Message::Prepare(p) => p.payload.clone(),
            Message::Commit(c) => c.payload.clone(),
            _ => unreachable!("own_vote matched a vote"),
        };
        let forged = |payload: Vec<u8>, signer, sig| {
            if kind == 1 {
                Message::Prepare(Signed::from_parts(payload, signer, sig))
            } else {
                Message::Commit(Signed::from_parts(payload, signer, sig))
            }
        };
        out.push(Send::now(to, forged(payload, victim, forged_sig)));
        out.push(Send::now(to, forged(own_payload, ctx.me, flipped)));
        out
    }

    fn tick(&mut self, ctx: &mut Ctx) -> Vec<Send> {
        // A made-up next block, offered twice: "certified" by our own COMMIT
        // repeated 2f+1 times (no forgery at all: only counting distinct
        // signers refuses it), then by our own COMMIT repeated and COMMITs
        // forged in the others' names.
        let seq = Seq(ctx.height.0 + 1);
        let batch = Batch {
            timestamp_ms: ctx.now.as_millis().max(1),
            txs: Vec::new(),
        }
        .encode();
        let digest = batch_digest(&batch);
        let view = ctx.view;
        let own = ctx.sign(Commit { view, seq, digest });
        let repeated = CommittedBatch {
            seq,
            batch: batch.clone(),
            certificate: vec![own.clone(); ctx.cluster.quorum()],
        };
        let mut certificate = vec![own.clone(), own];
        for r in ctx.others() {
            let sig = random_signature(ctx);
            certificate.push(Signed::from_parts(
                Commit { view, seq, digest }.encode(),
                r,
                sig,
            ));
        }
        let to = ctx.others()[ctx.rng.gen_range(0..ctx.others().len())];
        vec![Send::now(
            to,
            Message::Batches(vec![
                repeated,
                CommittedBatch {
                    seq,
                    batch,
                    certificate,
                },
            ]),
        )]
    }
}

/// The primary adds a transaction whose signature does not verify (a real
/// one with its amount changed) to every batch, and signs the result.
#[derive(Default)]
pub struct BadTxs {
    rewritten: BTreeMap<(View, Seq), (Signed<PrePrepare>, Vec<u8>)>,
}

impl Strategy for BadTxs {
    fn outgoing(&mut self, ctx: &mut Ctx, to: ReplicaId, message: Message) -> Vec<Send> {
        let Message::PrePrepare { pre_prepare, batch } = &message else {
            return pass(to, message);
        };
        if pre_prepare.signer != ctx.me {
            return pass(to, message);
        }
        let (Ok(pp), Ok(mut b)) = (
            PrePrepare::decode(&pre_prepare.payload),
            Batch::decode(batch),
        ) else {
            return pass(to, message);
        };
        let Some(first) = b.txs.first().cloned() else {
            return pass(to, message);
        };
        let (pre_prepare, batch) = self
            .rewritten
            .entry((pp.view, pp.seq))
            .or_insert_with(|| {
                b.txs.push(Transaction {
                    amount: first.amount.wrapping_add(1_000),
                    ..first
                });
                let bytes = b.encode();
                let digest = batch_digest(&bytes);
                let signed = ctx.sign(PrePrepare {
                    view: pp.view,
                    seq: pp.seq,
                    digest,
                });
                (signed, bytes)
            })
            .clone();
        if self.rewritten.len() > 256 {
            self.rewritten.pop_first();
        }
        pass(to, Message::PrePrepare { pre_prepare, batch })
    }
}

/// Wrong checkpoint digests, and checkpoints claimed far ahead.
pub struct BadCheckpoint;

impl Strategy for BadCheckpoint {
    fn outgoing(&mut self, ctx: &mut Ctx, to: ReplicaId, message: Message) -> Vec<Send> {
        match &message {
            Message::Checkpoint(c) if c.signer == ctx.me => {
                let Ok(cp) = Checkpoint::decode(&c.payload) else {
                    return pass(to, message);
                };
                let digest = random_digest(ctx);
                pass(
                    to,
                    Message::Checkpoint(ctx.sign(Checkpoint {
                        seq: cp.seq,
                        digest,
                    })),
                )
            }
            _ => pass(to, message),
        }
    }
    fn tick(&mut self, ctx: &mut Ctx) -> Vec<Send> {
        let ahead = ctx.rng.gen_range(1..64);
        let seq = Seq(ctx.height.0 + ahead);
        let digest = random_digest(ctx);
        let cp = ctx.sign(Checkpoint { seq, digest });
        ctx.others()
            .into_iter()
            .map(|to| Send::now(to, Message::Checkpoint(cp.clone())))
            .collect()
    }
}
