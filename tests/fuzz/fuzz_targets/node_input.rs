//! A whole node (core, ledger, in-memory store) fed arbitrary frames from
//! a peer: the first byte picks the sender (a peer, itself, or an id
//! outside the cluster) and the time step, the rest is the frame. Unsigned
//! paths (NEW-VIEW requests, fetches, catch-up batches) and every check in
//! front of a signature see extreme values (issue 24, defect 11). The node
//! is rebuilt every 4,096 inputs so its state stays small.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pbft_ledger::consensus::messages::Message;
use pbft_ledger::consensus::Config;
use pbft_ledger::crypto::KeyPair;
use pbft_ledger::genesis;
use pbft_ledger::node::{Node, NodeInput};
use pbft_ledger::storage::memory::MemoryStore;
use pbft_ledger::types::{ReplicaId, Time};
use std::cell::RefCell;

struct Harness {
    node: Node<MemoryStore>,
    now: Time,
    inputs: u32,
}

fn harness() -> Harness {
    let keys: Vec<KeyPair> = (0..4)
        .map(|i| KeyPair::from_label(&format!("fuzz-{i}")))
        .collect();
    let addrs: Vec<(String, String)> = (0..4).map(|_| ("sim".into(), "sim".into())).collect();
    let client = KeyPair::from_label("fuzz-client");
    let g = genesis::build(
        "fuzz",
        &keys.iter().map(|k| k.public()).collect::<Vec<_>>(),
        &addrs,
        &[(client.public(), 1_000)],
        Config::default(),
    )
    .expect("fuzz genesis");
    let node = Node::open(&g, ReplicaId(1), keys[1].clone(), MemoryStore::new()).expect("opens");
    Harness {
        node,
        now: Time::from_millis(1_000),
        inputs: 0,
    }
}

thread_local! {
    static NODE: RefCell<Option<Harness>> = const { RefCell::new(None) };
}

fuzz_target!(|data: &[u8]| {
    let Some((&head, frame)) = data.split_first() else {
        return;
    };
    let Ok(message) = Message::from_frame(frame, pbft_ledger::codec::FRAME_BYTES_MAX) else {
        return;
    };
    NODE.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|h| h.inputs >= 4_096) {
            *slot = Some(harness());
        }
        let h = slot.as_mut().expect("just set");
        h.inputs += 1;
        h.now = h.now.plus_millis(u64::from(head >> 3) * 37);
        let from = ReplicaId(u32::from(head & 7));
        let input = match message {
            Message::Request(tx) => NodeInput::Request(tx),
            message => NodeInput::Message { from, message },
        };
        if h.node.handle(h.now, input).is_err() {
            // A node error (a store refusal) ends this node; start afresh.
            *slot = None;
            return;
        }
        while h.node.pop_outgoing().is_some() {}
    });
});
