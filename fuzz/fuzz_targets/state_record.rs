//! The quarantine state topic's decoder on arbitrary record values (the topic is shared by
//! every sidecar and writable by anyone with access): never panics; a value that decodes
//! encodes to one that decodes and encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quarantine_fuzz::state::reencode_state_message;

fuzz_target!(|data: &[u8]| {
    if let Ok(once) = reencode_state_message(data) {
        let twice = reencode_state_message(&once).expect("an encoded state message decodes");
        assert_eq!(once, twice, "decode → encode → decode → encode");
    }
});
