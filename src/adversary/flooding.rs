//! Floods and malformed input: messages far beyond the window, frames that
//! must be refused undecoded, votes that each cost a signature check, and
//! fetches whose answers are never read.

use super::{pass, random_digest, vote, Ctx, Send, Strategy, Wire};
use crate::consensus::messages::{Checkpoint, Message, Prepare, Suspect};
use crate::crypto::Digest;
use crate::types::{ReplicaId, Seq, View};
use rand::Rng;

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
