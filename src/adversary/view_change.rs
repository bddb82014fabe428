//! View-change attacks: fake prepared certificates, a NEW-VIEW that drops
//! prepared requests, and a storm of valid view changes.

use super::{pass, random_signature, Ctx, Send, Strategy};
use crate::consensus::messages::{
    Message, NewView, PrePrepare, Prepare, PreparedProof, Suspect, ViewChange,
};
use crate::crypto::{Payload, Signed};
use crate::tx::{batch_digest, Batch, Transaction};
use crate::types::{ReplicaId, Seq, View};
use rand::Rng;
use std::collections::VecDeque;

/// Replaces its VIEW-CHANGEs with ones whose prepared certificates are fake:
/// for the seqs just above its stable checkpoint (already committed by the
/// honest replicas), a batch that never prepared, "proved" by its own PREPARE
/// repeated 2f times or by PREPAREs forged in others' names.
#[derive(Default)]
pub struct ForgedViewChange {
    requests: VecDeque<Transaction>,
}

/// Signatures in an oversize certificate: one signer's, repeated.
const OVERSIZE_PROOF: usize = 4_000;

impl ForgedViewChange {
    fn fake_proof(&self, ctx: &mut Ctx, view: View, seq: Seq) -> PreparedProof {
        let txs: Vec<Transaction> = self.requests.iter().take(2).cloned().collect();
        let batch = Batch {
            timestamp_ms: ctx.now.as_millis().max(1) + 7,
            txs,
        }
        .encode();
        let digest = batch_digest(&batch);
        let primary = ctx.cluster.primary(view);
        let pre_prepare = if primary == ctx.me {
            ctx.sign(PrePrepare { view, seq, digest })
        } else {
            let sig = random_signature(ctx);
            Signed::from_parts(PrePrepare { view, seq, digest }.encode(), primary, sig)
        };
        let quorum = ctx.cluster.quorum();
        let shape = ctx.rng.gen_range(0..3);
        let prepares = if shape == 0 {
            let own = ctx.sign(Prepare { view, seq, digest });
            vec![own; quorum - 1]
        } else if shape == 1 {
            // Oversize: far more PREPAREs than there are replicas, all one
            // signer (issue 17, defect 8: refused before any is checked).
            let own = ctx.sign(Prepare { view, seq, digest });
            vec![own; OVERSIZE_PROOF]
        } else {
            let mut v = vec![ctx.sign(Prepare { view, seq, digest })];
            for r in ctx.others().into_iter().filter(|r| *r != primary) {
                if v.len() == quorum - 1 {
                    break;
                }
                let sig = random_signature(ctx);
                v.push(Signed::from_parts(
                    Prepare { view, seq, digest }.encode(),
                    r,
                    sig,
                ));
            }
            v
        };
        PreparedProof {
            pre_prepare,
            prepares,
            batch,
        }
    }
}

impl Strategy for ForgedViewChange {
    fn outgoing(&mut self, ctx: &mut Ctx, to: ReplicaId, message: Message) -> Vec<Send> {
        let Message::ViewChange(s) = &message else {
            return pass(to, message);
        };
        if s.signer != ctx.me {
            return pass(to, message);
        }
        let Ok(mut vc) = ViewChange::decode(&s.payload) else {
            return pass(to, message);
        };
        let claimed = View(vc.new_view.0.saturating_sub(1));
        let first = vc.stable_seq.0 + 1;
        vc.prepared.clear();
        for seq in first..first + 2 {
            let proof = self.fake_proof(ctx, claimed, Seq(seq));
            vc.prepared.push(proof);
        }
        if let Some(first) = vc.checkpoint_proof.first().cloned() {
            if ctx.rng.gen_bool(0.3) {
                // Its stable checkpoint "proved" by one CHECKPOINT repeated.
                vc.checkpoint_proof = vec![first; OVERSIZE_PROOF];
            }
        }
        pass(to, Message::ViewChange(ctx.sign(vc)))
    }
    fn incoming(&mut self, _ctx: &mut Ctx, _from: ReplicaId, message: &Message) {
        if let Message::PrePrepare { batch, .. } = message {
            if let Ok(b) = Batch::decode(batch) {
                for tx in b.txs {
                    if self.requests.len() == 16 {
                        self.requests.pop_front();
                    }
                    self.requests.push_back(tx);
                }
            }
        }
    }
}

/// As the new primary, re-signs its NEW-VIEW with every re-proposed batch
/// replaced by a null request: prepared (possibly committed) requests dropped.
pub struct BadNewView;

impl Strategy for BadNewView {
    fn outgoing(&mut self, ctx: &mut Ctx, to: ReplicaId, message: Message) -> Vec<Send> {
        let Message::NewView(s) = &message else {
            return pass(to, message);
        };
        let Ok(mut nv) = NewView::decode(&s.payload) else {
            return pass(to, message);
        };
        let null = batch_digest(&Batch::null().encode());
        for pp in &mut nv.pre_prepares {
            if let Ok(mut p) = PrePrepare::decode(&pp.payload) {
                p.digest = null;
                *pp = ctx.sign(p);
            }
        }
        pass(to, Message::NewView(ctx.sign(nv)))
    }
}

/// Valid SUSPECTs and VIEW-CHANGEs (genesis checkpoint, no prepared
/// certificates) for the next views, every tick.
pub struct ViewChangeStorm;

impl Strategy for ViewChangeStorm {
    fn tick(&mut self, ctx: &mut Ctx) -> Vec<Send> {
        let mut out = Vec::new();
        let target = View(ctx.view.0 + ctx.rng.gen_range(1..4));
        let suspect = ctx.sign(Suspect { view: ctx.view });
        let vc = ctx.sign(ViewChange {
            new_view: target,
            stable_seq: Seq(0),
            checkpoint_proof: Vec::new(),
            prepared: Vec::new(),
        });
        for to in ctx.others() {
            out.push(Send::now(to, Message::Suspect(suspect.clone())));
            out.push(Send::now(to, Message::ViewChange(vc.clone())));
        }
        out
    }
    fn outgoing(&mut self, _ctx: &mut Ctx, to: ReplicaId, message: Message) -> Vec<Send> {
        pass(to, message)
    }
}
