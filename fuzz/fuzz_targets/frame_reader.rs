//! The frame reader on arbitrary socket bytes: never panics, never hands out a frame
//! larger than its limit, and the frames it hands out are the input's prefix, in order,
//! each exactly as long as its size prefix says.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quarantine_fuzz::block_on;
use quarantine_fuzz::frame::FrameReader;

/// Small, so that the "too large" path is reached as often as the good one.
const MAX: usize = 256;

fuzz_target!(|data: &[u8]| {
    block_on(async {
        let mut reader = FrameReader::new(data, MAX);
        let mut consumed = 0usize;
        loop {
            match reader.read_frame().await {
                Ok(Some(frame)) => {
                    assert!(frame.len() >= 4 && frame.len() - 4 <= MAX);
                    let size = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
                    assert_eq!(size as usize + 4, frame.len(), "frame length = prefix + 4");
                    assert_eq!(&data[consumed..consumed + frame.len()], &frame[..]);
                    consumed += frame.len();
                }
                Ok(None) => {
                    assert_eq!(consumed, data.len(), "clean end only after whole frames");
                    break;
                }
                Err(_) => break,
            }
        }
    });
});
