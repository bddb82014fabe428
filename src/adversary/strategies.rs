//! The catalogue of Byzantine behaviours (TESTING.md, "Faults to inject").
//!
//! Each strategy only uses what a malicious replica has: its own key, the
//! messages it receives and sends, and (for colluders) what other Byzantine
//! replicas tell it. Messages it attributes to others carry signatures it
//! cannot make, so they are either replays of real ones or forgeries.

use super::{Ctx, Send, Strategy, Wire};
use crate::client::proto::{ClientRequest, ClientResponse};
use crate::consensus::messages::{
    Checkpoint, Commit, CommittedBatch, Message, NewView, PrePrepare, Prepare, PreparedProof,
    Suspect, ViewChange,
};
use crate::crypto::{Digest, Payload, Signed};
use crate::tx::{batch_digest, Batch, Transaction, NONCE_AHEAD_MAX};
use crate::types::{ReplicaId, Seq, View};
use rand::Rng;
use std::collections::{BTreeMap, VecDeque};

/// The adversaries `pbft-sim` knows, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Equivocate,
    DoubleVote,
    Silent,
    Slow,
    Omit,
    Mutate,
    Replay,
    SigReuse,
    Forge,
    BadTxs,
    BadCheckpoint,
    ForgedViewChange,
    BadNewView,
    ViewChangeStorm,
    FarFlood,
    Malformed,
    Censor,
    SigFlood,
    LyingAnswers,
    FetchNeverRead,
    Clients,
    Twins,
}

/// Name, kind and one-line description of every adversary.
pub const CATALOGUE: &[(&str, Kind, &str)] = &[
    ("equivocate", Kind::Equivocate, "primary sends conflicting PRE-PREPAREs for each seq to two groups of replicas; colluders vote for both sides"),
    ("double-vote", Kind::DoubleVote, "signs a second PREPARE and COMMIT for another digest in every slot, sent to part of the replicas"),
    ("silent", Kind::Silent, "sends nothing while it is the primary (but keeps receiving)"),
    ("slow", Kind::Slow, "primary holds every PRE-PREPARE back for 90% of the request timeout"),
    ("omit", Kind::Omit, "selective omission: nothing reaches one honest replica, no COMMIT reaches another"),
    ("mutate", Kind::Mutate, "ByzzFuzz small-scope mutation: re-signs messages with view, seq or digest nudged, or drops them, per recipient"),
    ("replay", Kind::Replay, "re-sends old messages (its own and others') to random replicas"),
    ("sig-reuse", Kind::SigReuse, "re-labels signed votes as another phase or view without re-signing, its own and others'"),
    ("forge", Kind::Forge, "votes, checkpoints and catch-up batches with forged signatures or signers, and bit-flipped signatures"),
    ("bad-txs", Kind::BadTxs, "primary puts a badly signed transaction into every batch"),
    ("bad-checkpoint", Kind::BadCheckpoint, "CHECKPOINTs with wrong digests, and claims of checkpoints it never reached"),
    ("forged-view-change", Kind::ForgedViewChange, "VIEW-CHANGEs carrying fake prepared certificates (duplicate, forged or thousands of one signer's PREPAREs) for committed seqs, and checkpoint proofs of one CHECKPOINT repeated"),
    ("bad-new-view", Kind::BadNewView, "as new primary, sends a NEW-VIEW whose O-set replaces prepared requests with null requests"),
    ("view-change-storm", Kind::ViewChangeStorm, "valid SUSPECTs and VIEW-CHANGEs for ever-higher views, all the time"),
    ("far-flood", Kind::FarFlood, "floods votes, checkpoints and fetches for seqs and views far beyond the window"),
    ("malformed", Kind::Malformed, "garbage, truncated, corrupted and oversized frames"),
    ("censor", Kind::Censor, "primary keeps the chain moving with stale, already executed transactions only, and never proposes a pending request"),
    ("sig-flood", Kind::SigFlood, "floods every replica with frames that each cost a signature check and bring nothing: its votes with broken signatures, and validly signed votes of past views"),
    ("lying-answers", Kind::LyingAnswers, "answers clients' balance queries with lies: nonces of u64::MAX - 1, u64::MAX, beyond the bank's nonce jump, zero or stale; balances inflated or zero"),
    ("fetch-and-never-read", Kind::FetchNeverRead, "keeps asking every replica for catch-up batches, faster than they serve, and never reads anything they send it"),
    ("clients", Kind::Clients, "Byzantine clients: bad signatures, replayed and conflicting nonces, request floods"),
    ("twins", Kind::Twins, "two instances of one replica share its key, each talking to part of the network"),
];

/// Looks an adversary up by name.
pub fn by_name(name: &str) -> Option<Kind> {
    CATALOGUE
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, k, _)| *k)
}

impl Kind {
    pub fn name(self) -> &'static str {
        CATALOGUE
            .iter()
            .find(|(_, k, _)| *k == self)
            .map(|(n, _, _)| *n)
            .expect("every kind is catalogued")
    }

    /// Whether the Byzantine replica should be the primary of view 0 (the
    /// behaviour only shows in a primary).
    pub fn wants_primary(self) -> bool {
        matches!(
            self,
            Kind::Equivocate | Kind::Silent | Kind::Slow | Kind::BadTxs | Kind::Censor
        )
    }

    /// Whether the behaviour only shows during a view change, so the
    /// scenario must force one (the Byzantine replica is then the primary
    /// of view 1, and the primary of view 0 crashes for a while).
    pub fn wants_view_change(self) -> bool {
        matches!(self, Kind::BadNewView | Kind::ForgedViewChange)
    }

    /// Whether the Byzantine replica never reads what other replicas send
    /// it: their frames for it stay in their outbound queues.
    pub fn never_reads(self) -> bool {
        self == Kind::FetchNeverRead
    }

    /// The strategy a Byzantine replica runs (`None` for adversaries that
    /// are not replica strategies: clients and twins).
    pub fn strategy(self) -> Option<Box<dyn Strategy>> {
        Some(match self {
            Kind::Equivocate => Box::new(Equivocate::default()),
            Kind::DoubleVote => Box::new(DoubleVote),
            Kind::Silent => Box::new(Silent),
            Kind::Slow => Box::new(Slow),
            Kind::Omit => Box::new(Omit),
            Kind::Mutate => Box::new(Mutate),
            Kind::Replay => Box::new(Replay::default()),
            Kind::SigReuse => Box::new(SigReuse::default()),
            Kind::Forge => Box::new(Forge),
            Kind::BadTxs => Box::new(BadTxs::default()),
            Kind::BadCheckpoint => Box::new(BadCheckpoint),
            Kind::ForgedViewChange => Box::new(ForgedViewChange::default()),
            Kind::BadNewView => Box::new(BadNewView),
            Kind::ViewChangeStorm => Box::new(ViewChangeStorm),
            Kind::FarFlood => Box::new(FarFlood),
            Kind::Malformed => Box::new(Malformed),
            Kind::Censor => Box::new(Censor::default()),
            Kind::SigFlood => Box::new(SigFlood),
            Kind::LyingAnswers => Box::new(LyingAnswers),
            Kind::FetchNeverRead => Box::new(FetchNeverRead::default()),
            Kind::Clients | Kind::Twins => return None,
        })
    }
}

fn pass(to: ReplicaId, message: Message) -> Vec<Send> {
    vec![Send::now(to, message)]
}

fn random_digest(ctx: &mut Ctx) -> Digest {
    Digest(ctx.rng.gen())
}

/// Honest replicas split in two: the first (larger) group and the second.
fn in_second_group(ctx: &Ctx, to: ReplicaId) -> bool {
    let honest = ctx.honest();
    let split = honest.len().div_ceil(2);
    honest[split..].contains(&to)
}

/// Our own vote as (view, seq, digest), if `message` is one.
fn own_vote(ctx: &Ctx, message: &Message) -> Option<(u8, View, Seq, Digest)> {
    match message {
        Message::Prepare(p) if p.signer == ctx.me => Prepare::decode(&p.payload)
            .ok()
            .map(|p| (1, p.view, p.seq, p.digest)),
        Message::Commit(c) if c.signer == ctx.me => Commit::decode(&c.payload)
            .ok()
            .map(|c| (2, c.view, c.seq, c.digest)),
        _ => None,
    }
}

/// Re-signs one of our votes with other fields.
fn vote(ctx: &Ctx, kind: u8, view: View, seq: Seq, digest: Digest) -> Message {
    if kind == 1 {
        Message::Prepare(ctx.sign(Prepare { view, seq, digest }))
    } else {
        Message::Commit(ctx.sign(Commit { view, seq, digest }))
    }
}

// ----- equivocation -----------------------------------------------------------

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

// ----- omission and timing ------------------------------------------------------

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

// ----- forgery ------------------------------------------------------------------

/// Sends, next to each of its messages, forged ones: a random signature
/// claiming another replica, a bit-flipped copy of its own signature; and on
/// its timer, catch-up batches with forged commit certificates.
pub struct Forge;

fn random_signature(ctx: &mut Ctx) -> [u8; 64] {
    let mut s = [0u8; 64];
    ctx.rng.fill(&mut s[..]);
    s
}

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

// ----- view change ----------------------------------------------------------------

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

// ----- floods and malformed input -------------------------------------------------

/// Messages for seqs and views far beyond anything real, and huge fetches.
pub struct FarFlood;

impl Strategy for FarFlood {
    fn outgoing(&mut self, _ctx: &mut Ctx, to: ReplicaId, message: Message) -> Vec<Send> {
        pass(to, message)
    }
    fn tick(&mut self, ctx: &mut Ctx) -> Vec<Send> {
        let mut out = Vec::new();
        let others = ctx.others();
        for _ in 0..16 {
            let to = others[ctx.rng.gen_range(0..others.len())];
            let far_seq = Seq(ctx.height.0 + ctx.rng.gen_range(1_000..u64::MAX / 4));
            let far_view = View(ctx.view.0 + ctx.rng.gen_range(1..u64::MAX / 4));
            let near_view = View(ctx.view.0 + ctx.rng.gen_range(1..8));
            let digest = random_digest(ctx);
            let m = match ctx.rng.gen_range(0..8) {
                0 => vote(ctx, 1, ctx.view, far_seq, digest),
                1 => vote(ctx, 2, ctx.view, far_seq, digest),
                2 => vote(ctx, 1, far_view, Seq(ctx.height.0 + 1), digest),
                3 => vote(ctx, 2, near_view, Seq(ctx.height.0 + 1), digest),
                4 => Message::Checkpoint(ctx.sign(Checkpoint {
                    seq: far_seq,
                    digest,
                })),
                5 => Message::Suspect(ctx.sign(Suspect { view: far_view })),
                6 => Message::NewViewRequest { view: far_view },
                _ => Message::Fetch {
                    from: Seq(1),
                    to: Seq(u64::MAX),
                },
            };
            out.push(Send::now(to, m));
        }
        // A burst for a near-future view, which correct replicas must buffer
        // (bounded): enough to fill the sender's share of their buffer within
        // seconds, so the eviction is exercised (and its absence is seen).
        let burst = vote(
            ctx,
            2,
            View(ctx.view.0 + 2),
            Seq(ctx.height.0 + 1),
            Digest([0xf1; 32]),
        );
        for to in others {
            for _ in 0..FAR_FLOOD_BURST {
                out.push(Send::now(to, burst.clone()));
            }
        }
        out
    }
}

/// Copies of one near-future vote `FarFlood` sends each replica per tick.
const FAR_FLOOD_BURST: usize = 4;

/// Frames that must be refused before anything trusts them.
pub struct Malformed;

impl Strategy for Malformed {
    fn outgoing(&mut self, _ctx: &mut Ctx, to: ReplicaId, message: Message) -> Vec<Send> {
        pass(to, message)
    }
    fn tick(&mut self, ctx: &mut Ctx) -> Vec<Send> {
        let others = ctx.others();
        let to = others[ctx.rng.gen_range(0..others.len())];
        let real = Message::Suspect(ctx.sign(Suspect { view: ctx.view })).to_frame();
        let frame = match ctx.rng.gen_range(0..40) {
            0..=9 => {
                let len = ctx.rng.gen_range(0..512);
                (0..len).map(|_| ctx.rng.gen()).collect()
            }
            10..=19 => real[..ctx.rng.gen_range(0..real.len())].to_vec(),
            20..=36 => {
                let mut f = real;
                let i = ctx.rng.gen_range(0..f.len());
                f[i] ^= 1 << ctx.rng.gen_range(0..8);
                f
            }
            37 => {
                // Rarely (16 MiB): refused on the size cap alone.
                let mut f = real;
                f.resize(crate::codec::FRAME_BYTES_MAX + 1, 0);
                f
            }
            _ => Vec::new(),
        };
        vec![Send {
            to,
            wire: Wire::Frame(frame),
            delay_ms: 0,
        }]
    }
}

// ----- signature-check flood ----------------------------------------------------

/// Sends each other replica `ctx.flood_per_tick` votes per tick that each
/// cost the receiver a signature check and bring it nothing: seven in
/// eight carry one of our real votes with a signature bit flipped (never
/// the same bytes twice, so nothing can be recognised unchecked), the rest
/// are validly signed votes of a past view (refused after their check).
/// Honest traffic passes unchanged.
pub struct SigFlood;

impl Strategy for SigFlood {
    fn outgoing(&mut self, _ctx: &mut Ctx, to: ReplicaId, message: Message) -> Vec<Send> {
        pass(to, message)
    }
    fn tick(&mut self, ctx: &mut Ctx) -> Vec<Send> {
        let mut out = Vec::new();
        let seq = Seq(ctx.height.0 + 1);
        let digest = random_digest(ctx);
        let template = ctx.sign(Prepare {
            view: ctx.view,
            seq,
            digest,
        });
        // Past-view votes exist once there is a past view; before that the
        // flood is all broken signatures.
        let past = (ctx.view.0 > 0).then(|| View(ctx.view.0 - 1));
        for to in ctx.others() {
            for i in 0..ctx.flood_per_tick {
                let m = match past {
                    Some(view) if i % 8 == 7 => {
                        let digest = random_digest(ctx);
                        vote(ctx, 1 + (i / 8 % 2) as u8, view, seq, digest)
                    }
                    _ => {
                        let mut bad = template.clone();
                        let bit = ctx.rng.gen_range(0..512usize);
                        bad.signature[bit / 8] ^= 1 << (bit % 8);
                        Message::Prepare(bad)
                    }
                };
                out.push(Send::now(to, m));
            }
        }
        out
    }
}

// ----- lies to clients' queries ------------------------------------------------

/// An otherwise honest replica that answers clients' balance queries with
/// lies — a last nonce of `u64::MAX - 1` (a client taking the highest answer
/// would sign `u64::MAX`) or `u64::MAX` (its successor overflows), just
/// beyond the bank's nonce jump, zero or a few behind; balances inflated or
/// zero — and with the truth one time in eight, so a lie is not simply the
/// odd one out. Its protocol messages pass unchanged.
pub struct LyingAnswers;

impl Strategy for LyingAnswers {
    fn outgoing(&mut self, _ctx: &mut Ctx, to: ReplicaId, message: Message) -> Vec<Send> {
        pass(to, message)
    }
    fn answer_query(
        &mut self,
        ctx: &mut Ctx,
        _request: &ClientRequest,
        honest: ClientResponse,
    ) -> ClientResponse {
        let ClientResponse::Balance(truth) = honest else {
            return honest;
        };
        let mut lie = truth;
        match ctx.rng.gen_range(0..8) {
            0 => lie.nonce = u64::MAX - 1,
            1 => lie.nonce = u64::MAX,
            2 => lie.nonce = truth.nonce.saturating_add(NONCE_AHEAD_MAX + 1),
            3 => {
                lie.exists = false;
                lie.balance = 0;
                lie.nonce = 0;
            }
            4 => lie.nonce = truth.nonce.saturating_sub(ctx.rng.gen_range(1..=3)),
            5 => {
                lie.balance = u64::MAX;
                lie.nonce = u64::MAX - 1;
                lie.height = truth.height.saturating_add(1_000_000);
            }
            6 => lie.balance = truth.balance.saturating_mul(1_000).max(1_000_000),
            _ => {}
        }
        ClientResponse::Balance(lie)
    }
}

// ----- fetches whose answers are never read -------------------------------------

/// Keeps asking every other replica for catch-up batches — mostly the chain
/// from seq 1, sometimes from a random seq — at a pace drawn once per run (1
/// to 8 per replica per tick; the fetch pacer serves about 2.5), and never
/// reads anything the others send it ([`Kind::never_reads`]): the simulator
/// keeps their frames for it in their bounded outbound queues, as a QUIC
/// peer that never reads makes the transport keep them. Its own protocol
/// messages pass (its core, hearing nothing, soon falls silent).
#[derive(Default)]
pub struct FetchNeverRead {
    per_tick: usize,
}

impl Strategy for FetchNeverRead {
    fn outgoing(&mut self, _ctx: &mut Ctx, to: ReplicaId, message: Message) -> Vec<Send> {
        pass(to, message)
    }
    fn tick(&mut self, ctx: &mut Ctx) -> Vec<Send> {
        if self.per_tick == 0 {
            self.per_tick = [1, 2, 4, 8][ctx.rng.gen_range(0..4)];
        }
        let mut out = Vec::new();
        for to in ctx.others() {
            for _ in 0..self.per_tick {
                let from = if ctx.rng.gen_bool(0.75) {
                    1
                } else {
                    ctx.rng.gen_range(1..=64)
                };
                out.push(Send::now(
                    to,
                    Message::Fetch {
                        from: Seq(from),
                        to: Seq(u64::MAX),
                    },
                ));
            }
        }
        out
    }
}
