//! §4.1 client requests: signed, deduplicated, and the pending set bounded.

use super::*;

/// §4.1 (requests are signed by the client) and the pending bounds (STYLE 9).
///
/// Setup: backup 1, `pending_per_client_max` 3, `pending_requests_max` 5.
/// Expect: a request with a bad client signature is dropped ("bad client
/// signature"); a duplicate is not added again (silently: clients re-send);
/// client 0's fourth pending request is dropped ("too many pending for
/// client") while client 1's are taken, until the sixth pending request in
/// total is dropped ("pending set full"). No request makes a backup act.
#[test]
fn client_requests_are_verified_deduplicated_and_bounded() {
    let net = Net::new(4);
    let mut r1 = net.replica(1);
    let mut forged = net.tx(0, 1);
    forged.amount += 1;
    net.expect_ignored_input(
        &mut r1,
        at(0),
        Input::Request(forged),
        Refusal::RequestBadSignature,
    );
    assert_eq!(r1.pending_requests(), 0);

    assert!(feed(&mut r1, at(0), Input::Request(net.tx(0, 1))).is_empty());
    assert!(feed(&mut r1, at(0), Input::Request(net.tx(0, 1))).is_empty());
    assert_eq!(r1.pending_requests(), 1, "duplicate not re-added");
    let counted: u64 = r1.stats().ignored.values().sum();
    assert_eq!(counted, 1, "a duplicate is not counted as ignored");

    for nonce in [2, 3] {
        assert!(feed(&mut r1, at(0), Input::Request(net.tx(0, nonce))).is_empty());
    }
    net.expect_ignored_input(
        &mut r1,
        at(0),
        Input::Request(net.tx(0, 4)),
        Refusal::RequestClientPendingFull,
    );
    for nonce in [1, 2] {
        assert!(feed(&mut r1, at(0), Input::Request(net.tx(1, nonce))).is_empty());
    }
    assert_eq!(r1.pending_requests(), 5);
    net.expect_ignored_input(
        &mut r1,
        at(0),
        Input::Request(net.tx(2, 1)),
        Refusal::RequestPendingFull,
    );
    assert_eq!(r1.pending_requests(), 5);
}

/// §4.2: the primary assigns one sequence number per request.
///
/// Setup: primary 0 proposed a request at s1.
/// Expect: the same request again (a client re-sending it, directly or via a
/// backup) gives no action: no second PRE-PREPARE.
#[test]
fn primary_does_not_propose_a_duplicate_request_twice() {
    let net = Net::new(4);
    let mut r0 = net.replica(0);
    feed(&mut r0, at(0), Input::Request(net.tx(0, 1)));

    let acts = feed(&mut r0, at(0), Input::Request(net.tx(0, 1)));
    assert_eq!(net.describe(&acts), Vec::<String>::new());
    let acts = deliver(&mut r0, at(0), 2, Message::Request(net.tx(0, 1)));
    assert_eq!(net.describe(&acts), Vec::<String>::new());
    assert_eq!(r0.pending_requests(), 1);
}

/// §4.1 with STYLE 9 ("put a limit on everything"): what a replica keeps per
/// request must stay within `pending_requests_max`.
///
/// Setup: backup 1 receives and then executes 8 requests one after another
/// (`pending_requests_max` is 5); nothing is pending at the end.
/// Expect: its request bookkeeping is empty again. (It once kept every
/// executed request's key in the backup's proposal queue, growing for as long
/// as the view lasted.)
#[test]
fn backup_request_bookkeeping_stays_bounded() {
    let net = Net::new(4);
    let mut r1 = net.replica(1);
    for nonce in 1..=8 {
        assert!(feed(&mut r1, at(0), Input::Request(net.tx(0, nonce))).is_empty());
        let b = net.batch(&format!("B{nonce}"), T0_MS, vec![net.tx(0, nonce)]);
        net.run_to_execute(&mut r1, nonce, &b);
    }
    assert_eq!(r1.pending_requests(), 0);
    assert_eq!(
        r1.requests.pending.unproposed_len(),
        0,
        "the proposal queue holds keys of executed requests"
    );
}
