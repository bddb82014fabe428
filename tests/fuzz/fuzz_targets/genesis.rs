//! A genesis file as an operator (or a mistake) could write it: parsing and
//! every check, with extreme numbers, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pbft_ledger::genesis::{Genesis, GenesisFile};

fuzz_target!(|data: &[u8]| {
    if let Ok(file) = serde_json::from_slice::<GenesisFile>(data) {
        let _ = Genesis::from_file(file);
    }
});
