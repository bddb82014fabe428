//! Equivocation: the primary proposes two batches for one slot, and
//! replicas vote for two digests in one slot.

use super::{in_second_group, own_vote, pass, random_digest, vote, Ctx, Send, Strategy};
use crate::consensus::messages::{Message, PrePrepare};
use crate::crypto::{Payload, Signed};
use crate::tx::{batch_digest, Batch};
use crate::types::{ReplicaId, Seq, View};
use rand::Rng;
use std::collections::BTreeMap;

/// The primary shows batch A to the first group and a different, equally
/// valid batch B (same transactions, reordered, other timestamp) to the
/// second; colluding backups vote A to the first group and B to the second.
#[derive(Default)]
pub struct Equivocate {
    alternatives: BTreeMap<(View, Seq), (Signed<PrePrepare>, Vec<u8>)>,
}

impl Strategy for Equivocate {
    fn outgoing(&mut self, ctx: &mut Ctx, to: ReplicaId, message: Message) -> Vec<Send> {
        match &message {
            Message::PrePrepare { pre_prepare, batch } if pre_prepare.signer == ctx.me => {
                let (Ok(pp), Ok(b)) = (
                    PrePrepare::decode(&pre_prepare.payload),
                    Batch::decode(batch),
                ) else {
                    return pass(to, message);
                };
                if !in_second_group(ctx, to) {
                    return pass(to, message);
                }
                self.alternatives
                    .entry((pp.view, pp.seq))
                    .or_insert_with(|| {
                        let mut txs = b.txs.clone();
                        txs.reverse();
                        let alt = Batch {
                            timestamp_ms: b.timestamp_ms + 1,
                            txs,
                        };
                        let bytes = alt.encode();
                        let digest = batch_digest(&bytes);
                        let signed = ctx.sign(PrePrepare {
                            view: pp.view,
                            seq: pp.seq,
                            digest,
                        });
                        ctx.collusion
                            .equivocations
                            .insert((pp.view, pp.seq), (pp.digest, digest));
                        (signed, bytes)
                    });
                if self.alternatives.len() > 256 {
                    self.alternatives.pop_first();
                }
                let alt = self.alternatives.get(&(pp.view, pp.seq)).cloned();
                match alt {
                    Some((pre_prepare, batch)) => {
                        pass(to, Message::PrePrepare { pre_prepare, batch })
                    }
                    None => pass(to, message),
                }
            }
            _ => {
                // Votes: whatever the first group saw, the second group gets
                // the same vote for the alternative.
                if let Some((kind, view, seq, digest)) = own_vote(ctx, &message) {
                    if let Some((a, b)) = ctx.collusion.equivocations.get(&(view, seq)).copied() {
                        if digest == a && in_second_group(ctx, to) {
                            return pass(to, vote(ctx, kind, view, seq, b));
                        }
                    }
                }
                pass(to, message)
            }
        }
    }
}

/// For every vote it casts, part of the replicas get a vote for another
/// digest instead, and sometimes both.
pub struct DoubleVote;

impl Strategy for DoubleVote {
    fn outgoing(&mut self, ctx: &mut Ctx, to: ReplicaId, message: Message) -> Vec<Send> {
        let Some((kind, view, seq, _)) = own_vote(ctx, &message) else {
            return pass(to, message);
        };
        let digest = random_digest(ctx);
        let other = vote(ctx, kind, view, seq, digest);
        if in_second_group(ctx, to) {
            pass(to, other)
        } else if ctx.rng.gen_bool(0.5) {
            vec![Send::now(to, message), Send::now(to, other)]
        } else {
            vec![Send::now(to, other), Send::now(to, message)]
        }
    }
}
