//! Lies to clients' queries: query answers are unsigned, so a Byzantine
//! replica may answer anything.

use super::{pass, Ctx, Send, Strategy};
use crate::client::proto::{ClientRequest, ClientResponse};
use crate::consensus::messages::Message;
use crate::tx::NONCE_AHEAD_MAX;
use crate::types::ReplicaId;
use rand::Rng;

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
