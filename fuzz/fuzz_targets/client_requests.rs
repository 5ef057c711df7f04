//! The request header and every client request the proxy looks into (Fetch positions,
//! OffsetCommit, JoinGroup/SyncGroup/Heartbeat/LeaveGroup/OffsetFetch and
//! ConsumerGroupHeartbeat group ids, consumer-protocol assignments), on arbitrary bytes,
//! at every version the proxy accepts: errors, never panics, never an allocation larger
//! than the input can describe.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quarantine_fuzz::requests::{
    consumer_assignment, decode, fetch_positions, group_request, offset_commit, request_head,
    ConsumerApi,
};

const GROUP_APIS: [ConsumerApi; 8] = [
    ConsumerApi::JoinGroup,
    ConsumerApi::SyncGroup,
    ConsumerApi::Heartbeat,
    ConsumerApi::LeaveGroup,
    ConsumerApi::OffsetFetch,
    ConsumerApi::ConsumerGroupHeartbeat,
    ConsumerApi::OffsetCommit,
    ConsumerApi::Fetch,
];

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let (which, body) = (data[0], &data[1..]);
    let version = i16::from(which & 0x0f);
    // The header of a whole frame (prefix included), as the connection reads it.
    if let Ok(head) = request_head(body) {
        if let Some(at) = head.body_offset {
            assert!(at <= body.len(), "body offset inside the frame");
        }
    }
    match which >> 4 {
        0 => {
            if let Ok(view) = fetch_positions(body, version) {
                let _ = view;
            }
        }
        1 => {
            let _ = offset_commit(body, version);
        }
        2 => {
            let _ = consumer_assignment(body);
        }
        n => {
            let api = GROUP_APIS[usize::from(n) % GROUP_APIS.len()];
            let _ = group_request(api, body, version);
            let _ = decode(api, body, version);
        }
    }
});
