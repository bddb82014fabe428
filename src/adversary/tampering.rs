//! Tampering with real messages: small-scope mutation (ByzzFuzz), replays,
//! and valid signatures moved onto other message kinds and views.

use super::{own_vote, pass, random_digest, vote, Ctx, Send, Strategy};
use crate::consensus::messages::{
    Checkpoint, Commit, Message, PrePrepare, Prepare, Suspect, ViewChange,
};
use crate::crypto::{Payload, Signed};
use crate::tx::Batch;
use crate::types::{ReplicaId, Seq, View};
use rand::Rng;
use std::collections::VecDeque;

// ----- mutation (ByzzFuzz) --------------------------------------------------------

/// Small-scope mutation: each (message, recipient) is, with probability
/// 0.3, dropped or re-signed with one field nudged.
pub struct Mutate;

fn nudge_view(ctx: &mut Ctx, v: View) -> View {
    if ctx.rng.gen_bool(0.5) {
        View(v.0 + 1)
    } else {
        View(v.0.saturating_sub(1))
    }
}
fn nudge_seq(ctx: &mut Ctx, s: Seq) -> Seq {
    if ctx.rng.gen_bool(0.5) {
        Seq(s.0 + 1)
    } else {
        Seq(s.0.saturating_sub(1))
    }
}

impl Strategy for Mutate {
    fn outgoing(&mut self, ctx: &mut Ctx, to: ReplicaId, message: Message) -> Vec<Send> {
        if !ctx.rng.gen_bool(0.3) {
            return pass(to, message);
        }
        let field = ctx.rng.gen_range(0..4);
        if field == 0 {
            return Vec::new();
        }
        let mutated = match &message {
            Message::PrePrepare { pre_prepare, batch } if pre_prepare.signer == ctx.me => {
                let Ok(mut pp) = PrePrepare::decode(&pre_prepare.payload) else {
                    return pass(to, message);
                };
                match field {
                    1 => pp.view = nudge_view(ctx, pp.view),
                    2 => pp.seq = nudge_seq(ctx, pp.seq),
                    _ => pp.digest = random_digest(ctx),
                }
                Message::PrePrepare {
                    pre_prepare: ctx.sign(pp),
                    batch: batch.clone(),
                }
            }
            Message::Prepare(_) | Message::Commit(_) => {
                let Some((kind, mut view, mut seq, mut digest)) = own_vote(ctx, &message) else {
                    return pass(to, message);
                };
                match field {
                    1 => view = nudge_view(ctx, view),
                    2 => seq = nudge_seq(ctx, seq),
                    _ => digest = random_digest(ctx),
                }
                vote(ctx, kind, view, seq, digest)
            }
            Message::Checkpoint(c) if c.signer == ctx.me => {
                let Ok(mut cp) = Checkpoint::decode(&c.payload) else {
                    return pass(to, message);
                };
                if field == 2 {
                    cp.seq = nudge_seq(ctx, cp.seq);
                } else {
                    cp.digest = random_digest(ctx);
                }
                Message::Checkpoint(ctx.sign(cp))
            }
            Message::Suspect(s) if s.signer == ctx.me => {
                let Ok(sus) = Suspect::decode(&s.payload) else {
                    return pass(to, message);
                };
                let view = nudge_view(ctx, sus.view);
                Message::Suspect(ctx.sign(Suspect { view }))
            }
            Message::ViewChange(v) if v.signer == ctx.me => {
                let Ok(mut vc) = ViewChange::decode(&v.payload) else {
                    return pass(to, message);
                };
                match field {
                    1 => vc.new_view = nudge_view(ctx, vc.new_view),
                    2 => vc.stable_seq = nudge_seq(ctx, vc.stable_seq),
                    _ => {
                        vc.prepared.pop();
                    }
                }
                Message::ViewChange(ctx.sign(vc))
            }
            _ => return pass(to, message),
        };
        pass(to, mutated)
    }
}

// ----- replay and signature reuse -------------------------------------------------

/// Keeps the last messages it saw or sent and re-sends random ones.
#[derive(Default)]
pub struct Replay {
    seen: VecDeque<Message>,
}

const REMEMBERED_MAX: usize = 512;

fn remember(seen: &mut VecDeque<Message>, message: &Message) {
    if matches!(message, Message::Request(_) | Message::Reply(_)) {
        return;
    }
    if seen.len() == REMEMBERED_MAX {
        seen.pop_front();
    }
    seen.push_back(message.clone());
}

impl Strategy for Replay {
    fn outgoing(&mut self, _ctx: &mut Ctx, to: ReplicaId, message: Message) -> Vec<Send> {
        remember(&mut self.seen, &message);
        pass(to, message)
    }
    fn incoming(&mut self, _ctx: &mut Ctx, _from: ReplicaId, message: &Message) {
        remember(&mut self.seen, message);
    }
    fn tick(&mut self, ctx: &mut Ctx) -> Vec<Send> {
        let mut out = Vec::new();
        let others = ctx.others();
        for _ in 0..4 {
            if self.seen.is_empty() {
                break;
            }
            // Bias towards old messages: they are the interesting replays.
            let i = ctx.rng.gen_range(0..self.seen.len().div_ceil(2));
            let to = others[ctx.rng.gen_range(0..others.len())];
            out.push(Send::now(to, self.seen[i].clone()));
        }
        out
    }
}

/// Moves valid signatures onto other message kinds and views: a PREPARE's
/// signature presented as a COMMIT (its payload bytes are identical), a vote
/// presented for the next view, a CHECKPOINT's as a SUSPECT. Works on its
/// own votes and on votes it received from honest replicas.
#[derive(Default)]
pub struct SigReuse {
    received: VecDeque<Message>,
}

fn relabel(message: &Message) -> Vec<Message> {
    match message {
        Message::Prepare(p) => {
            let mut out = vec![Message::Commit(Signed::from_parts(
                p.payload.clone(),
                p.signer,
                p.signature,
            ))];
            if let Ok(mut v) = Prepare::decode(&p.payload) {
                v.view = View(v.view.0 + 1);
                out.push(Message::Prepare(Signed::from_parts(
                    v.encode(),
                    p.signer,
                    p.signature,
                )));
            }
            out
        }
        Message::Commit(c) => {
            let mut out = vec![Message::Prepare(Signed::from_parts(
                c.payload.clone(),
                c.signer,
                c.signature,
            ))];
            if let Ok(mut v) = Commit::decode(&c.payload) {
                v.seq = Seq(v.seq.0 + 1);
                out.push(Message::Commit(Signed::from_parts(
                    v.encode(),
                    c.signer,
                    c.signature,
                )));
            }
            out
        }
        Message::PrePrepare { pre_prepare, batch } => vec![
            Message::Prepare(Signed::from_parts(
                pre_prepare.payload.clone(),
                pre_prepare.signer,
                pre_prepare.signature,
            )),
            Message::Commit(Signed::from_parts(
                pre_prepare.payload.clone(),
                pre_prepare.signer,
                pre_prepare.signature,
            )),
            // The PRE-PREPARE with another batch under the same signature.
            Message::PrePrepare {
                pre_prepare: pre_prepare.clone(),
                batch: {
                    let mut b = Batch::decode(batch).unwrap_or_default();
                    b.timestamp_ms += 1;
                    b.encode()
                },
            },
        ],
        Message::Checkpoint(c) => vec![Message::Suspect(Signed::from_parts(
            c.payload.clone(),
            c.signer,
            c.signature,
        ))],
        _ => Vec::new(),
    }
}

impl Strategy for SigReuse {
    fn outgoing(&mut self, ctx: &mut Ctx, to: ReplicaId, message: Message) -> Vec<Send> {
        let mut out = pass(to, message.clone());
        if ctx.rng.gen_bool(0.5) {
            out.extend(relabel(&message).into_iter().map(|m| Send::now(to, m)));
        }
        out
    }
    fn incoming(&mut self, _ctx: &mut Ctx, _from: ReplicaId, message: &Message) {
        if matches!(
            message,
            Message::Prepare(_) | Message::Commit(_) | Message::PrePrepare { .. }
        ) {
            if self.received.len() == 64 {
                self.received.pop_front();
            }
            self.received.push_back(message.clone());
        }
    }
    fn tick(&mut self, ctx: &mut Ctx) -> Vec<Send> {
        let others = ctx.others();
        let mut out = Vec::new();
        if let Some(m) = self.received.pop_front() {
            for relabelled in relabel(&m) {
                let to = others[ctx.rng.gen_range(0..others.len())];
                out.push(Send::now(to, relabelled));
            }
        }
        out
    }
}
