//! Omission and timing: silence while primary, a primary that holds its
//! proposals back, selective omission, and censorship of pending requests.

use super::{pass, Ctx, Send, Strategy, Wire};
use crate::consensus::messages::{Message, PrePrepare};
use crate::crypto::{Payload, Signed};
use crate::tx::{batch_digest, Batch, Transaction};
use crate::types::{ReplicaId, Seq, View};
use std::collections::{BTreeMap, VecDeque};

pub struct Silent;

impl Strategy for Silent {
    fn outgoing(&mut self, ctx: &mut Ctx, to: ReplicaId, message: Message) -> Vec<Send> {
        if ctx.is_primary() {
            Vec::new()
        } else {
            pass(to, message)
        }
    }
    fn replies_to_clients(&self) -> bool {
        false
    }
}

pub struct Slow;

impl Strategy for Slow {
    fn outgoing(&mut self, ctx: &mut Ctx, to: ReplicaId, message: Message) -> Vec<Send> {
        let delay_ms = match &message {
            Message::PrePrepare { .. } if ctx.is_primary() => ctx.request_timeout_ms * 9 / 10,
            _ => 0,
        };
        vec![Send {
            to,
            wire: Wire::Message(message),
            delay_ms,
        }]
    }
}

pub struct Omit;

impl Strategy for Omit {
    fn outgoing(&mut self, ctx: &mut Ctx, to: ReplicaId, message: Message) -> Vec<Send> {
        let honest = ctx.honest();
        if honest.first() == Some(&to) {
            return Vec::new();
        }
        if honest.get(1) == Some(&to) && matches!(message, Message::Commit(_)) {
            return Vec::new();
        }
        pass(to, message)
    }
}

/// Censorship (issue 17, defect 3): the primary lets its first batch
/// through, then replaces every batch it proposes with one transaction of
/// an earlier batch — validly signed by its client, already executed, so it
/// executes again as a stale nonce. Blocks keep coming, but no pending
/// request is ever ordered; only a request timer that waits for a pending
/// request (not for any execution) unmasks it.
#[derive(Default)]
pub struct Censor {
    /// Transactions of batches it proposed (the stale material).
    seen: VecDeque<Transaction>,
    rewritten: BTreeMap<(View, Seq), (Signed<PrePrepare>, Vec<u8>)>,
    /// Highest seq it proposed on its own, and when.
    injected: Seq,
    last_injection: Option<crate::types::Time>,
}

impl Censor {
    /// The PRE-PREPARE (and its batch) it shows everyone for `(view, seq)`:
    /// one stale transaction, signed once and kept, so it never equivocates.
    fn stale_proposal(
        &mut self,
        ctx: &Ctx,
        view: View,
        seq: Seq,
        timestamp_ms: u64,
    ) -> Option<(Signed<PrePrepare>, Vec<u8>)> {
        if let Some(done) = self.rewritten.get(&(view, seq)) {
            return Some(done.clone());
        }
        let stale = self.seen.front().cloned()?;
        let bytes = Batch {
            timestamp_ms,
            txs: vec![stale],
        }
        .encode();
        let signed = ctx.sign(PrePrepare {
            view,
            seq,
            digest: batch_digest(&bytes),
        });
        self.rewritten
            .insert((view, seq), (signed.clone(), bytes.clone()));
        if self.rewritten.len() > 256 {
            self.rewritten.pop_first();
        }
        Some((signed, bytes))
    }
}

impl Strategy for Censor {
    fn outgoing(&mut self, ctx: &mut Ctx, to: ReplicaId, message: Message) -> Vec<Send> {
        let Message::PrePrepare { pre_prepare, batch } = &message else {
            return pass(to, message);
        };
        if pre_prepare.signer != ctx.me {
            return pass(to, message);
        }
        let (Ok(pp), Ok(b)) = (
            PrePrepare::decode(&pre_prepare.payload),
            Batch::decode(batch),
        ) else {
            return pass(to, message);
        };
        let first = self.seen.is_empty() && !self.rewritten.contains_key(&(pp.view, pp.seq));
        for tx in &b.txs {
            if self.seen.len() < 64 && !self.seen.contains(tx) {
                self.seen.push_back(tx.clone());
            }
        }
        if first {
            // The first batch goes through: it makes the stale material.
            return pass(to, message);
        }
        match self.stale_proposal(ctx, pp.view, pp.seq, b.timestamp_ms) {
            Some((pre_prepare, batch)) => pass(to, Message::PrePrepare { pre_prepare, batch }),
            None => pass(to, message),
        }
    }

    /// Keeps blocks coming on its own: a stale batch at the next seq every
    /// 60 % of the request timeout, while it leads the view.
    fn tick(&mut self, ctx: &mut Ctx) -> Vec<Send> {
        if !ctx.is_primary() || self.seen.is_empty() {
            return Vec::new();
        }
        let due = self
            .last_injection
            .is_none_or(|t| ctx.now >= t.plus_millis(ctx.request_timeout_ms * 6 / 10));
        if !due {
            return Vec::new();
        }
        self.last_injection = Some(ctx.now);
        let seq = self.injected.max(ctx.height).next();
        self.injected = seq;
        let Some((pre_prepare, batch)) =
            self.stale_proposal(ctx, ctx.view, seq, ctx.now.as_millis().max(1))
        else {
            return Vec::new();
        };
        ctx.others()
            .into_iter()
            .map(|to| {
                Send::now(
                    to,
                    Message::PrePrepare {
                        pre_prepare: pre_prepare.clone(),
                        batch: batch.clone(),
                    },
                )
            })
            .collect()
    }
}
