//! The Fetch response reader the proxy streams broker bytes through, on arbitrary bytes
//! arriving in arbitrary pieces: it errors or finishes, never panics, always makes progress,
//! and forwards exactly the bytes it was given (same length, in order).
#![no_main]

use libfuzzer_sys::fuzz_target;
use quarantine_fuzz::fetch_scan::{FetchScanner, Step, MAX_VERSION, MIN_VERSION};

fuzz_target!(|data: &[u8]| {
    let [v, c, body @ ..] = data else { return };
    let version = MIN_VERSION + (*v as i16 % (MAX_VERSION - MIN_VERSION + 1));
    let chunk = usize::from(*c % 64) + 1;
    let mut scanner = FetchScanner::new(version).expect("a version it reads");
    let mut out = 0usize;
    let mut pos = 0usize;
    let mut arrived = chunk.min(body.len());
    for _ in 0..1_000_000 {
        match scanner.step(&body[pos..arrived]) {
            Ok(Step::Pass(n)) => {
                assert!(pos + n <= arrived, "passes only bytes it has");
                pos += n;
                out += n;
            }
            Ok(Step::Replace(bytes)) => {
                assert!(pos + bytes.len() <= arrived, "replaces only bytes it has");
                pos += bytes.len();
                out += bytes.len();
            }
            Ok(Step::Skip(n)) => {
                if pos + n > body.len() {
                    return; // the proxy reports a response that runs past its length
                }
                pos += n;
                out += n;
                arrived = arrived.max(pos);
            }
            Ok(Step::Need(n)) => {
                assert!(n > arrived - pos, "asks for more than it has");
                if pos + n > body.len() {
                    return; // the proxy reports a response that ends mid-field
                }
                arrived = (arrived + chunk).min(body.len()).max(pos + n);
            }
            Ok(Step::Done) => {
                assert_eq!(out, pos);
                return;
            }
            Err(_) => return,
        }
    }
    panic!("no progress after a million steps");
});
