//! Every decoder of bytes from outside: replica frames (and that a decoded
//! message encodes and decodes to itself), client requests and responses,
//! batches, block headers, stored blocks and chain tips. None may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pbft_ledger::client::proto::{ClientRequest, ClientResponse};
use pbft_ledger::codec::FRAME_BYTES_MAX;
use pbft_ledger::consensus::messages::Message;
use pbft_ledger::ledger::BlockHeader;
use pbft_ledger::node::persist::{self, StoredBlock};
use pbft_ledger::tx::Batch;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Message::from_frame(data, FRAME_BYTES_MAX) {
        let again = Message::from_frame(&m.to_frame(), FRAME_BYTES_MAX)
            .expect("a decoded message encodes to a frame that decodes");
        assert_eq!(again.to_frame(), m.to_frame(), "the round trip changed it");
    }
    let _ = ClientRequest::from_frame(data);
    let _ = ClientResponse::from_frame(data);
    let _ = Batch::decode(data);
    let _ = BlockHeader::from_bytes(data);
    let _ = StoredBlock::decode(data);
    let _ = persist::decode_tip(data);
});
